/**
 * onnxruntime sessions on worker threads (issue 15 item 3). onnxruntime-node runs a session synchronously on the
 * thread that calls it, so on the main thread every product blocks the Lanczos bookkeeping (reorthogonalisation,
 * recurrence) of every other operator. A Gram map whose session lives in a worker instead leaves the main thread free
 * while it runs: with several operators measured at once (OperatorBackend.concurrency), the main thread
 * reorthogonalises one operator's basis while the workers run the others' products, and session creation
 * (OnnxruntimeSessionHandler, synchronous too) moves off the main thread as well.
 *
 * Results are the same as in-process: the same model bytes, the same float32 kernels (ortIntraThreads intra-op
 * threads per worker session; convolution weights stay baked in, so outputs do not depend on the thread count: graphs.ts feedWeights),
 * the float64 vector rounded to float32 and the float32 result widened exactly, as in operators.ts. Vectors in
 * SharedArrayBuffers (Lanczos's basis) are read and written in place; others are copied through a shared buffer.
 *
 * The worker is an eval'd CommonJS script (like lanczos-threads.ts), so it needs no file of its own and no TypeScript
 * loader under tests; it requires onnxruntime-node by the path this module resolves.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { LipcheckError } from '../errors.js';
import type { GramOperator } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { countRun, countSession, type RuntimeOptions } from './runtime.js';

const require = createRequire(import.meta.url);

/** What a worker is asked: create a session, run one, release one. */
type Request =
  | { type: 'create'; id: number; sid: number; bytes: Uint8Array; options: Record<string, unknown>; feeds: Record<string, Tensor> }
  | { type: 'buffer'; id: number; bid: number; buffer?: SharedArrayBuffer }
  | { type: 'run'; id: number; sid: number; input: string; dims: readonly number[]; output: string; v: number; vOffset: number; n: number; out: number; outOffset: number; outLength: number }
  | { type: 'gram64'; id: number; sid: number; a: Float64Array; m: number; n: number }
  | { type: 'release'; id: number; sid: number };

/** A request before its id is given (Omit over each member of the union). */
type Unsent<T> = T extends unknown ? Omit<T, 'id'> : never;

/** The worker's reply: the time onnxruntime took (for runtimeStats), or the first line of its error; a gram64's matrix. */
interface Reply { id: number; ms?: number; error?: string; length?: number; g?: Float64Array }

/** The worker's loop (run as an eval'd script: it may use only what it requires itself). */
function workerMain(data: { ortPath: string }, load: (id: string) => any): void {
  const { parentPort } = load('node:worker_threads');
  const ort = load(data.ortPath);
  ort.env.logLevel = 'fatal';
  // per session: its fed weights, the input vector, and each output's tensor after its first run (onnxruntime writes
  // later runs' results into it: no fresh output buffer per run, ~0.2 ms per MB of output on this VM)
  const sessions = new Map<number, { s: any; feeds: Record<string, unknown>; vin: Float32Array | null; outs: Map<string, any> }>();
  // shared buffers, sent once each and named by id in runs (posting a SharedArrayBuffer costs far more than a number)
  const buffers = new Map<number, SharedArrayBuffer>();
  parentPort.on('message', async (m: any) => {
    if (m.type === 'buffer') {
      if (m.buffer) buffers.set(m.bid, m.buffer);
      else buffers.delete(m.bid);
      return;
    }
    try {
      if (m.type === 'create') {
        const t0 = performance.now();
        const s = await ort.InferenceSession.create(m.bytes, m.options);
        const feeds: Record<string, unknown> = {};
        for (const [k, t] of Object.entries(m.feeds as Record<string, { dtype: string; dims: number[]; data: unknown }>)) feeds[k] = new ort.Tensor(t.dtype, t.data, t.dims);
        sessions.set(m.sid, { s, feeds, vin: null, outs: new Map() });
        parentPort.postMessage({ id: m.id, ms: performance.now() - t0 });
      } else if (m.type === 'run') {
        const e = sessions.get(m.sid)!;
        if (!e.vin || e.vin.length !== m.n) e.vin = new Float32Array(m.n);
        e.vin.set(new Float64Array(buffers.get(m.v)!, m.vOffset, m.n));
        const t0 = performance.now();
        const pre = e.outs.get(m.output);
        const res = await e.s.run({ ...e.feeds, [m.input]: new ort.Tensor('float32', e.vin, m.dims) }, pre ? { [m.output]: pre } : [m.output]);
        const ms = performance.now() - t0;
        const y = (pre ? pre.data : res[m.output].data) as Float32Array;
        if (y.length > m.outLength) throw new Error(`output of ${y.length} values, ${m.outLength} expected`);
        new Float64Array(buffers.get(m.out)!, m.outOffset, y.length).set(y);
        if (!pre) e.outs.set(m.output, new ort.Tensor('float32', new Float32Array(y.length), res[m.output].dims));
        res[m.output].dispose?.();
        parentPort.postMessage({ id: m.id, ms, length: y.length });
      } else if (m.type === 'gram64') {
        // a float64 Gram product (dense-gram.ts): the matrix arrives transferred, the result leaves transferred
        const e = sessions.get(m.sid)!;
        const t0 = performance.now();
        const res = await e.s.run({ a: new ort.Tensor('float64', m.a, [m.m, m.n]) }, ['g']);
        const ms = performance.now() - t0;
        const d = res.g.data as Float64Array;
        // onnxruntime-node returns each output in memory of its own: moved as it is (a copy would be m² fresh
        // float64, ~4.5 ms per MB of page faults on the reference VM), copied only if it cannot be transferred
        let sent = false;
        if (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) {
          try {
            parentPort.postMessage({ id: m.id, ms, g: d }, [d.buffer]);
            sent = true;
          } catch {
            // not transferable (external memory): the copy below
          }
        }
        if (!sent) {
          const g = Float64Array.from(d);
          parentPort.postMessage({ id: m.id, ms, g }, [g.buffer]);
        }
        res.g.dispose?.();
      } else {
        const e = sessions.get(m.sid);
        sessions.delete(m.sid);
        await e?.s.release?.();
        parentPort.postMessage({ id: m.id });
      }
    } catch (err) {
      parentPort.postMessage({ id: m.id, error: String((err as Error)?.message ?? err).split('\n')[0] });
    }
  });
}

/** One worker thread holding sessions; requests are answered in the order they finish. */
class OrtWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** Sessions living in this worker (to spread new ones over the pool). */
  sessions = 0;
  private dead: Error | null = null;

  constructor() {
    const source = `(${workerMain.toString()})(require('node:worker_threads').workerData, require);`;
    // no execArgv: the script is plain CommonJS (a parent's --input-type=module or loader would change how it is read)
    this.worker = new Worker(source, { eval: true, execArgv: [], workerData: { ortPath: require.resolve('onnxruntime-node') } });
    this.worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) this.worker.unref();
      p.resolve(r);
    });
    const fail = (e: Error) => {
      this.dead = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the onnxruntime worker thread exited (code ${code})`)));
    // after the listeners, which ref the worker's port: an idle worker must not keep the process alive
    this.worker.unref();
  }

  private readonly bufferIds = new WeakMap<SharedArrayBuffer, number>();
  private nextBuffer = 1;
  private readonly registry = new FinalizationRegistry<number>((bid) => { if (!this.dead) this.worker.postMessage({ type: 'buffer', id: 0, bid }); });

  /** The id of a shared buffer in this worker, sending it there on first use (forgotten there once collected here). */
  bufferId(buffer: SharedArrayBuffer): number {
    let bid = this.bufferIds.get(buffer);
    if (bid === undefined) {
      bid = this.nextBuffer++;
      this.bufferIds.set(buffer, bid);
      this.registry.register(buffer, bid);
      this.worker.postMessage({ type: 'buffer', id: 0, bid, buffer });
    }
    return bid;
  }

  /** Sends a request (ids are filled in here) and waits for its reply; the worker keeps the process alive meanwhile. */
  request(req: Unsent<Request>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id }, transfer);
    });
  }
}

let pool: OrtWorker[] = [];
let nextSession = 1;

/** The threads lipcheck may use: --threads, or one per core (0) of a machine with `cores` cores (also src/workers/). */
export function threadsOf(runtime: RuntimeOptions, cores = availableParallelism()): number {
  return runtime.threads && runtime.threads > 0 ? runtime.threads : cores;
}

/**
 * How many worker threads run sessions for `runtime`, by a rule on thread counts (never timed): none under --threads 1
 * or on one core (sessions stay on the main thread); otherwise one per two threads allowed, each session with two
 * intra-op threads (ortIntraThreads). Two per worker, because phases that measure one operator at a time (CP's
 * longest products, SeqLip) would otherwise run each product on a single thread where the main-thread session used
 * both cores; while several operators are measured at once, the main thread's reorthogonalisation and the sessions
 * share the cores. Results are the same for every count.
 */
export function ortWorkerCount(runtime: RuntimeOptions): number {
  const cores = threadsOf(runtime);
  return cores <= 1 ? 0 : Math.max(1, Math.floor(cores / 2));
}

/** Intra-op threads of each worker session: the threads allowed shared among the workers, at least one. */
export function ortIntraThreads(runtime: RuntimeOptions): number {
  return Math.max(1, Math.floor(threadsOf(runtime) / Math.max(1, ortWorkerCount(runtime))));
}

/**
 * Gram maps whose forward product is cheaper than this (flop, linalg/work.ts: about 20 ms of onnxruntime work on the
 * reference machine) keep their session on the main thread under 'auto': a worker's hand-off (two messages, ~0.1 ms)
 * and its start (~0.2 s of CPU, once) pay only on larger ones, and sessions on workers measured 15–25 % more CPU in
 * all (contention of the extra threads on 2 cores). On the shared models no map reaches it (operators 2.4e5 to
 * 1.3e7 flop, tiny_yolo's graph-CP maps up to 7.4e7; with every map on a worker the defaults of sri_resnet_b and
 * tiny_yolo took 20–25 % more CPU, load 7–10); 52 of the generated ResNet-50's 54 operators (1e8 and more) go to workers.
 */
export const WORKER_MIN_FLOP = 8e7;

/**
 * Switch for tests and benchmarks: 'auto' follows ortWorkerCount for Gram maps of WORKER_MIN_FLOP or more, 'on' puts
 * every Gram map on a worker (where there are workers), 'off' keeps every session on the main thread.
 */
export type WorkerMode = 'auto' | 'on' | 'off';
let mode: WorkerMode = 'auto';

/** Sets whether Gram sessions may run on worker threads (default 'auto'). */
export function setOrtWorkers(m: WorkerMode): void {
  mode = m;
}

/**
 * The number of worker threads Gram sessions use under `runtime` now (0: on the main thread); with `flop` (one forward
 * product's work), 0 for a map below WORKER_MIN_FLOP under 'auto'.
 */
export function ortWorkersFor(runtime: RuntimeOptions, flop = Infinity): number {
  if (mode === 'off' || (mode === 'auto' && flop < WORKER_MIN_FLOP)) return 0;
  return ortWorkerCount(runtime);
}

/**
 * Starts the worker threads Gram sessions under `runtime` will use, before their first session: a worker's start
 * (a thread, onnxruntime's native module and environment: ~0.25 s) then overlaps the caller's work instead of delaying
 * the first operator. Called by the IR build for models with a product of WORKER_MIN_FLOP or more; nothing under
 * 'off', on one thread or off the CPU provider (the caller checks the provider). Results are unchanged: the same
 * workers would start on first use.
 */
export function prestartOrtWorkers(runtime: RuntimeOptions): void {
  const count = ortWorkersFor(runtime);
  while (pool.length < count) pool.push(new OrtWorker());
}

/** The worker a new session goes to: the one holding the fewest sessions (the pool grows to `count`). */
function workerFor(count: number): OrtWorker {
  while (pool.length < count) pool.push(new OrtWorker());
  let best = pool[0];
  for (const w of pool.slice(0, count)) if (w.sessions < best.sessions) best = w;
  return best;
}

/** Worker threads started so far and the sessions they hold now (tests, benchmarks). */
export function ortWorkerStats(): { workers: number; sessions: number } {
  return { workers: pool.length, sessions: pool.reduce((a, w) => a + w.sessions, 0) };
}

/** Ends the worker threads (tests); later sessions start new ones. */
export async function closeOrtWorkers(): Promise<void> {
  const old = pool;
  pool = [];
  gramSessions.clear();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  await Promise.all(old.map((w) => (w as any).worker.terminate()));
}

/**
 * A GramOperator whose session (model 'v' → 'u' = B v → 'z' = Bᵀu, chainGraphs) lives on a worker thread, created
 * with `options` (runtime.ts sessionOptions). Same contract and same numbers as createOrtGram. `model` is handed over
 * (its buffer moves to the worker where it owns it): do not use it afterwards.
 */
export async function createWorkerGram(model: Uint8Array, dims: readonly number[], halfLength: number, options: Record<string, unknown>, count: number, name: string, feeds?: Readonly<Record<string, Tensor>>): Promise<GramOperator> {
  const worker = workerFor(count);
  const sid = nextSession++;
  const n = sizeOf(dims);
  const fail = (what: string, r: Reply) => new LipcheckError('RUNTIME', `onnxruntime ${what} '${name}' on a worker thread: ${r.error}. Rerun with --threads 1 to keep onnxruntime on the main thread.`);
  // the model bytes move to the worker when they own their buffer (the caller made them for this session), else a copy
  const own = model.buffer instanceof ArrayBuffer && model.byteOffset === 0 && model.byteLength === model.buffer.byteLength;
  // a fed weight may be a view into a larger buffer (the model file's, onnx/tensor.ts): posting it would copy that whole
  // buffer, so such weights are sent as copies of their own bytes
  const sent: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(feeds ?? {})) {
    const d = t.data;
    sent[k] = ArrayBuffer.isView(d) && d.byteLength !== d.buffer.byteLength ? { ...t, data: d.slice() as Tensor['data'] } : t;
  }
  const created = await worker.request({ type: 'create', sid, bytes: model, options, feeds: sent }, own ? [model.buffer as ArrayBuffer] : []);
  if (created.error) throw fail('could not load the operator', created);
  // the worker's own time for the creation (waiting behind other sessions' runs is not creation)
  countSession(created.ms ?? 0);
  worker.sessions++;
  // vectors not already in shared memory pass through these
  const vin = new Float64Array(new SharedArrayBuffer(8 * n));
  const outLength = Math.max(n, halfLength);
  let out: Float64Array | null = null;
  const shared = (a: Float64Array) => a.buffer instanceof SharedArrayBuffer;
  const run = async (v: Float64Array, output: 'u' | 'z', into: Float64Array | null): Promise<Float64Array> => {
    const src = shared(v) ? v : (vin.set(v), vin);
    const dst = into && shared(into) ? into : (out ??= new Float64Array(new SharedArrayBuffer(8 * outLength)));
    const r = await worker.request({ type: 'run', sid, input: 'v', dims, output, v: worker.bufferId(src.buffer as SharedArrayBuffer), vOffset: src.byteOffset, n, out: worker.bufferId(dst.buffer as SharedArrayBuffer), outOffset: dst.byteOffset, outLength: dst.length });
    if (r.error) throw fail('failed while evaluating the operator', r);
    countRun(r.ms ?? 0);
    const result = dst.subarray(0, r.length);
    if (into && result !== into) into.set(result);
    return result;
  };
  return {
    n,
    async applyInto(v, target) {
      await run(v, 'z', target);
    },
    async apply(v) {
      return Float64Array.from(await run(v, 'z', null));
    },
    async half(v) {
      return Float64Array.from(await run(v, 'u', null));
    },
    async dispose() {
      worker.sessions--;
      await worker.request({ type: 'release', sid });
    },
  };
}

/** The float64 Gram sessions on workers (one per session options), created on first use. */
const gramSessions = new Map<string, Promise<{ worker: OrtWorker; sid: number }>>();

/**
 * The float64 Gram product A·Aᵀ of a row-major m×n matrix (dense-gram.ts: input 'a', output 'g') run by a session on
 * a worker thread, created once from `model` with `options`: the main thread stays free meanwhile. `a` is transferred
 * to the worker (detached here afterwards: pass a copy to keep it); the result is transferred back. Same model and kernels as on the main
 * thread, so the same numbers (the float64 Gemm does not depend on the thread count: dense-gram's test).
 */
export async function workerGram64(model: () => Uint8Array, options: Record<string, unknown>, count: number, a: Float64Array, m: number, n: number): Promise<Float64Array> {
  const key = JSON.stringify(options);
  let entry = gramSessions.get(key);
  if (!entry) {
    entry = (async () => {
      const worker = workerFor(count);
      const sid = nextSession++;
      const created = await worker.request({ type: 'create', sid, bytes: model(), options, feeds: {} });
      if (created.error) throw new LipcheckError('RUNTIME', `onnxruntime could not load the float64 Gram product on a worker thread: ${created.error}. Rerun with --threads 1 to keep onnxruntime on the main thread.`);
      countSession(created.ms ?? 0);
      return { worker, sid };
    })();
    gramSessions.set(key, entry);
    entry.catch(() => gramSessions.delete(key));
  }
  const { worker, sid } = await entry;
  // a copy that owns its buffer when `a` is a view, so that the transfer moves exactly the matrix
  const own = a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer ? a : a.slice();
  const r = await worker.request({ type: 'gram64', sid, a: own, m, n }, [own.buffer as ArrayBuffer]);
  if (r.error || !r.g) throw new LipcheckError('RUNTIME', `onnxruntime failed on the float64 Gram product of a ${m}×${n} matrix on a worker thread: ${r.error ?? 'no result'}. Rerun with --threads 1 to keep onnxruntime on the main thread.`);
  countRun(r.ms ?? 0);
  return r.g;
}
