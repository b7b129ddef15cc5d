/**
 * Region workers (issue 15 item 3): threads that measure whole operators, each with its own onnxruntime sessions and
 * its own WebAssembly heap, so the Lanczos bookkeeping, the reorthogonalisation and the certificates of independent
 * operators run on separate cores instead of all on the main thread (which bounded every run from below however many
 * cores there were: bench/README.md, "The main thread is the floor on many cores").
 *
 * A worker runs measureRegion (or CP's productLanczos) on a structured-clone copy of the region with the same
 * settings, index (and product errors), on a backend of the same provider (the CPU), so it returns the numbers the main thread
 * would: every kernel involved gives the
 * same bits for any intra-op thread count (convolution weights baked in, ort-pool.ts; MLAS Gemm splits no sum) and
 * the reorthogonalisation's split over a second thread is exact too (lanczos-threads.ts). Tested against in-process runs.
 *
 * Workers are started from an eval'd CommonJS bootstrap that imports the entry module (region-worker.ts or .js):
 * under the TypeScript sources (tests, `tsx`) it first registers tsx's loader for the thread, only then.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { LipcheckError, type ErrorCode } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import type { GramFactor, OperatorNorm, PlainNormSettings, ProductError, ProductRun, RegionOffload } from '../estimators/operator-norm.js';
import type { ScaledPowerRequest, ScaledPowerResult } from '../estimators/scaled-power.js';
import type { RuntimeOptions } from '../backend/runtime.js';
import { threadsOf, WORKER_MIN_FLOP } from '../backend/ort-pool.js';
import { regionFlop } from '../linalg/work.js';

const FROM_SOURCE = import.meta.url.endsWith('.ts');
const ENTRY = new URL(FROM_SOURCE ? './region-worker.ts' : './region-worker.js', import.meta.url).href;

const BOOT = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})().catch((e) => parentPort.postMessage({ id: 0, error: { code: null, message: String((e && e.message) || e), details: [] } }));
`;

interface Reply { id: number; result?: OperatorNorm | ProductRun | GramFactor | ScaledPowerResult | null; error?: { code: ErrorCode | null; message: string; details: string[] } }

/**
 * `value` with every typed array that views part of a larger buffer replaced by a copy of just its elements: a
 * structured clone copies a view's whole buffer, and decoded weights view the model file's bytes (100 MB for one
 * 1 MB conv). Everything else is rebuilt as plain objects and arrays, the same fields and values. The copies' buffers
 * are pushed to `fresh`: nothing else holds them, so a message may move them instead of cloning them again.
 */
export function compact<T>(value: T, fresh: ArrayBuffer[] = []): T {
  if (ArrayBuffer.isView(value)) {
    const v = value as unknown as { byteLength: number; buffer: ArrayBufferLike; slice(): T & { buffer: ArrayBuffer } };
    if (v.byteLength === v.buffer.byteLength && !(v.buffer instanceof SharedArrayBuffer)) return value;
    const copy = v.slice();
    fresh.push(copy.buffer);
    return copy;
  }
  if (Array.isArray(value)) return value.map((x) => compact(x, fresh)) as T;
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, compact(x, fresh)])) as T;
  return value;
}

/** One worker thread; requests are answered in the order they finish. */
class RegionWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: any) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private dead: Error | null = null;
  /** Whether the thread failed or exited (its requests were rejected; the pool replaces it). */
  get failed(): boolean {
    return this.dead !== null;
  }
  /** Requests sent and not yet answered. */
  get load(): number {
    return this.pending.size;
  }

  constructor(runtime: RuntimeOptions) {
    this.worker = new Worker(BOOT, {
      eval: true,
      // no loader flags of the parent: the bootstrap registers what the entry needs
      execArgv: [],
      workerData: { entry: ENTRY, tsx: FROM_SOURCE ? import.meta.resolve('tsx/esm/api') : null, runtime },
    });
    this.worker.on('message', (r: Reply) => {
      if (r.id === 0) {
        if (r.error) this.fail(new LipcheckError('INTERNAL', `A region worker could not start: ${r.error.message}`));
        return;
      }
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) this.worker.unref();
      if (r.error) p.reject(r.error.code ? new LipcheckError(r.error.code, r.error.message, { details: r.error.details }) : new LipcheckError('INTERNAL', `A region worker failed: ${r.error.message}`));
      else p.resolve(r.result!);
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new LipcheckError('INTERNAL', `A region worker thread exited (code ${code}) while measuring an operator.`)));
    // an idle worker must not keep the process alive
    this.worker.unref();
  }

  private fail(e: Error): void {
    this.dead = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  request<R>(task: 'measure' | 'product', region: LinearRegion, settings: PlainNormSettings, index: number, margins: readonly ProductError[] = []): Promise<R> {
    const fresh: ArrayBuffer[] = [];
    return this.send<R>({ task, region: compact(region, fresh), settings, index, margins }, fresh);
  }

  /** gramFactor (product-fold.ts) of the c×n matrix m, sent as a copy of its own elements. */
  factor(m: Float64Array, c: number, n: number, relErr: number): Promise<GramFactor | null> {
    const copy = Float64Array.from(m);
    return this.send<GramFactor | null>({ task: 'factor', m: copy, c, n, relErr }, [copy.buffer]);
  }

  /** Builds the operator of a scaling descent's map on this thread, kept under `key` until scaledClose. */
  scaledOpen(key: string, region: LinearRegion): Promise<null> {
    const fresh: ArrayBuffer[] = [];
    return this.send<null>({ task: 'scaled-open', key, region: compact(region, fresh) }, fresh);
  }

  /** scaledPower (scaled-power.ts) on the map open under `key`, with its warm vector kept on this thread. */
  scaledStep(key: string, req: ScaledPowerRequest): Promise<ScaledPowerResult> {
    return this.send<ScaledPowerResult>({ task: 'scaled-step', key, req }, []);
  }

  /** Disposes the maps open under `keys`. */
  scaledClose(keys: readonly string[]): Promise<null> {
    return this.send<null>({ task: 'scaled-close', keys }, []);
  }

  private send<R>(message: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<R> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...message }, transfer);
    });
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/**
 * Switch for tests and benchmarks: 'auto' by the rules below, 'on' every operator and product on a worker (where there
 * are workers), 'off' none; `count` overrides regionWorkerCount's rule (benchmarks on fewer cores than the target).
 */
export type RegionWorkerMode = 'auto' | 'on' | 'off';
let mode: RegionWorkerMode = 'auto';
let countOverride = 0;

export function setRegionWorkers(m: RegionWorkerMode, count = 0): void {
  mode = m;
  countOverride = count;
}

/**
 * Most region workers, whatever --threads says: each thread costs tens of MB before its first operator (a V8 isolate,
 * the modules, onnxruntime's environment) and its largest operator's Lanczos basis after, so `--threads 1024` must
 * not start a thousand of them; beyond the machine's cores they would only take turns.
 */
export const MAX_REGION_WORKERS = 64;

/**
 * Region workers for `runtime` by a rule on thread counts (never timed): one per thread allowed, at most one per core
 * and MAX_REGION_WORKERS, none on one thread. The count changes no number (each operator's result is the same on
 * any thread), only how many run at once.
 */
export function regionWorkerCount(runtime: RuntimeOptions, cores = availableParallelism()): number {
  if (mode === 'off') return 0;
  if (countOverride > 0) return countOverride;
  const t = threadsOf(runtime, cores);
  return t <= 1 ? 0 : Math.min(t, cores, MAX_REGION_WORKERS);
}

let pool: RegionWorker[] = [];
let poolKey = '';
let requests = 0;
// scaling descents handed to the workers (RegionOffload.scaledMaps): their maps' keys are unique in the process
let descents = 0;
// requests in flight over time (benchmarks: how many operators the estimators keep going at once; decides nothing)
let inFlight = 0, since = 0, inFlightMs = 0, anyInFlightMs = 0;

function track(delta: number): void {
  const now = performance.now();
  if (inFlight > 0) {
    inFlightMs += inFlight * (now - since);
    anyInFlightMs += now - since;
  }
  inFlight += delta;
  since = now;
}

/**
 * Region workers started, requests sent to them and scaling descents run on them so far (tests, benchmarks), and the milliseconds with at least one
 * request in flight and the integral of the number in flight over time: their ratio is the mean number of operators
 * at work while any is, the parallelism a machine with that many cores could use (timings only).
 */
export function regionWorkerStats(): { workers: number; requests: number; descents: number; inFlightMs: number; anyInFlightMs: number } {
  return { workers: pool.length, requests, descents, inFlightMs, anyInFlightMs };
}

/** `p`, counted in flight until it settles. */
function tracked<T>(p: Promise<T>): Promise<T> {
  track(1);
  return p.finally(() => track(-1));
}

/** The pool for `runtime`'s worker settings, emptied when they change. */
function poolFor(runtime: RuntimeOptions): RuntimeOptions {
  // one thread: one-thread sessions, and the reorthogonalisation on the worker's own thread (the backend's `parallel`
  // is false) while the other cores run other workers
  const workerRuntime: RuntimeOptions = { device: 'cpu', threads: 1, spin: runtime.spin };
  const key = JSON.stringify(workerRuntime);
  if (key !== poolKey) {
    for (const w of pool) void w.terminate();
    pool = [];
    poolKey = key;
  }
  return workerRuntime;
}

/** Fills the pool up to `count` live threads. */
function fill(count: number, workerRuntime: RuntimeOptions): void {
  // a thread that failed is left to its rejected requests; later ones get a fresh thread
  pool = pool.filter((w) => !w.failed);
  while (pool.length < count) pool.push(new RegionWorker(workerRuntime));
}

/**
 * Starts the region workers `runtime` will use before their first request (the IR build calls it for a model with a
 * large product, BuildOptions.onLargeProducts): each thread's start (loading the modules and onnxruntime) then
 * overlaps the build. The same threads would start on first use; results are unchanged.
 */
export function prestartRegionWorkers(runtime: RuntimeOptions): void {
  const count = regionWorkerCount(runtime);
  if (count > 0) fill(count, poolFor(runtime));
}

/**
 * The offload of measureRegion to region workers under `runtime` (CPU provider only: the caller checks), or undefined
 * where there are none. Workers start on first use and stay, idle and unreferenced, for later analyses in the process.
 */
export function regionOffload(runtime: RuntimeOptions): RegionOffload | undefined {
  const count = regionWorkerCount(runtime);
  if (count === 0) return undefined;
  const workerRuntime = poolFor(runtime);
  // operators whose forward product is below the session workers' threshold (ort-pool.ts WORKER_MIN_FLOP, about 20 ms
  // of onnxruntime work on the reference machine; it also decides when the build starts workers early) stay on the
  // calling thread: a worker pays a copy of the region and two messages, and their runs are short of work for a whole
  // thread. No shared model's operator reaches it; 52 of the generated ResNet-50's 54 do
  const wanted = (region: LinearRegion) => mode === 'on' || regionFlop(region) >= WORKER_MIN_FLOP;
  // the worker with the fewest requests waiting (the pool grows to `count`)
  const pick = () => {
    requests++;
    fill(count, workerRuntime);
    let best = pool[0];
    for (const w of pool.slice(0, count)) if (w.load < best.load) best = w;
    return best;
  };
  return {
    width: count,
    takes: wanted,
    measure(region, settings, index) {
      return wanted(region) ? tracked(pick().request<OperatorNorm>('measure', region, settings, index)) : null;
    },
    product(region, settings, index, margins) {
      return wanted(region) ? tracked(pick().request<ProductRun>('product', region, settings, index, margins)) : null;
    },
    // a CP fold's Cholesky factor (product-fold.ts): the same rule, on the Gram product's flop
    factor(m, c, n, relErr) {
      return mode === 'on' || 2 * c * c * n >= WORKER_MIN_FLOP ? tracked(pick().factor(m, c, n, relErr)) : null;
    },
    // a scaling descent's maps: where one evaluation of them all is a worker's threshold of work, each map on one
    // worker for the whole descent (its session built once there), the maps dealt by flop to the least loaded
    scaledMaps(regions, perEvaluation) {
      if (mode !== 'on' && perEvaluation < WORKER_MIN_FLOP) return null;
      fill(count, workerRuntime);
      const workers = pool.slice(0, count);
      const id = ++descents;
      const key = (i: number) => `${id}:${i}`;
      const home = new Array<RegionWorker | null>(regions.length).fill(null);
      const loads = new Array<number>(workers.length).fill(0);
      const order = regions.flatMap((r, i) => (r ? [{ r, i, flop: regionFlop(r) }] : [])).sort((a, b) => b.flop - a.flop || a.i - b.i);
      const opened = new Map<number, Promise<null>>();
      for (const { r, i, flop } of order) {
        let k = 0;
        for (let j = 1; j < workers.length; j++) if (loads[j] < loads[k]) k = j;
        loads[k] += flop;
        home[i] = workers[k];
        opened.set(i, workers[k].scaledOpen(key(i), r));
      }
      return {
        async step(i, req) {
          const w = home[i];
          if (!w) throw new LipcheckError('INTERNAL', `Scaling descent: map ${i} has no region to run on a worker.`);
          await opened.get(i);
          requests++;
          return tracked(w.scaledStep(key(i), req));
        },
        async close() {
          // every map's operator is released, also after a failed step (a dead worker's maps went with it)
          await Promise.allSettled([...opened.values()]);
          await Promise.allSettled(workers.map((w) => w.scaledClose(home.flatMap((h, i) => (h === w ? [key(i)] : [])))));
        },
      };
    },
  };
}

/** Stops every region worker (tests). */
export async function stopRegionWorkers(): Promise<void> {
  const p = pool;
  pool = [];
  await Promise.all(p.map((w) => w.terminate()));
}
