/**
 * A second thread for Lanczos's reorthogonalisation, which is memory-bound: the main thread posts a job (project or
 * subtract on the upper half of the index range) through a shared control block, does the lower half itself and waits
 * (Atomics) for the worker: a few µs of hand-off per call, no message per step. Both threads run the WebAssembly kernels
 * (lanczos-kernels.ts) on the same shared WebAssembly memory, so a job is a handful of byte offsets.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { LipcheckError } from '../errors.js';
import { CHUNK, heapAddresses, projectRangeWasm, subtractRangeWasm, wasmHeap } from './lanczos-kernels.js';

/** Slots of the Int32 control block; addresses are stored as float64 indices (byte offset / 8) to fit an Int32. */
export const CTRL = { seq: 0, done: 1, op: 2, count: 3, n: 4, w: 5, lo: 6, hi: 7, ready: 8, failed: 9, coef: 10, part: 11, chunks: 12 } as const;
export const OP = { project: 1, subtract: 2 } as const;

/**
 * The worker's loop: waits on the control block, runs the WebAssembly projection or subtraction on its range, signals
 * completion. It runs as an eval'd script built from these functions' source (workerSource), so it needs no file of
 * its own (and no TypeScript loader under tests).
 */
function workerMain(data: { ctrl: SharedArrayBuffer; module: WebAssembly.Module; memory: WebAssembly.Memory }): void {
  const ctrl = new Int32Array(data.ctrl);
  const k = new WebAssembly.Instance(data.module, { env: { memory: data.memory } }).exports as any;
  let f64 = new Float64Array(data.memory.buffer);
  let seen = 0;
  Atomics.store(ctrl, CTRL.ready, 1);
  Atomics.notify(ctrl, CTRL.ready);
  for (;;) {
    Atomics.wait(ctrl, CTRL.seq, seen);
    const seq = Atomics.load(ctrl, CTRL.seq);
    if (seq === seen) continue;
    seen = seq;
    try {
      if (f64.byteLength !== data.memory.buffer.byteLength) f64 = new Float64Array(data.memory.buffer);
      const count = ctrl[CTRL.count], n = ctrl[CTRL.n], lo = ctrl[CTRL.lo], hi = ctrl[CTRL.hi];
      const at: number[] = [];
      for (let c = 0; c < Math.ceil(count / CHUNK); c++) at.push(8 * ctrl[CTRL.chunks + c]);
      if (ctrl[CTRL.op] === OP.project) projectRangeWasm(k, f64, at, count, n, 8 * ctrl[CTRL.w], 8 * ctrl[CTRL.part], lo, hi);
      else subtractRangeWasm(k, f64, at, count, n, 8 * ctrl[CTRL.w], 8 * ctrl[CTRL.coef], lo, hi);
    } catch {
      Atomics.store(ctrl, CTRL.failed, 1);
    }
    Atomics.store(ctrl, CTRL.done, seq);
    Atomics.notify(ctrl, CTRL.done);
  }
}

function workerSource(): string {
  return [
    "const { workerData } = require('node:worker_threads');",
    `const CHUNK = ${CHUNK}, CTRL = ${JSON.stringify(CTRL)}, OP = ${JSON.stringify(OP)};`,
    projectRangeWasm.toString(),
    subtractRangeWasm.toString(),
    `(${workerMain.toString()})(workerData);`,
  ].join('\n');
}

/** Largest basis (vectors) the coefficient areas hold; larger runs stay on one thread. */
const MAX_COUNT = 4096;

/** A job the worker has not finished after this long means it is gone. */
const JOB_TIMEOUT_MS = 60_000;

class KernelThread {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(4 * (CTRL.chunks + MAX_COUNT / CHUNK + 1)));
  /** The subtraction's coefficients (written by the main thread) and the projection's upper-half sums (by the worker), in the heap. */
  readonly coef: Float64Array;
  readonly part: Float64Array;
  private seq = 0;
  /** Jobs run by the worker so far (for tests and benchmarks). */
  jobs = 0;
  private readonly worker: Worker;

  constructor(heap: NonNullable<ReturnType<typeof wasmHeap>>) {
    const coef = heap.alloc(MAX_COUNT), part = heap.alloc(MAX_COUNT);
    if (!coef || !part) throw new Error('no room in the WebAssembly heap');
    this.coef = coef;
    this.part = part;
    this.ctrl[CTRL.coef] = coef.byteOffset / 8;
    this.ctrl[CTRL.part] = part.byteOffset / 8;
    this.worker = new Worker(workerSource(), {
      eval: true,
      // plain CommonJS: a parent's --input-type=module or loader would change how the script is read
      execArgv: [],
      workerData: { ctrl: this.ctrl.buffer, module: heap.module, memory: heap.memory },
    });
    this.worker.on('error', () => { Atomics.store(this.ctrl, CTRL.failed, 1); });
    this.worker.unref();
  }

  /** True once the worker runs; with `wait`, waits for it up to 10 s (a worker that cannot start by then is given up). */
  ready(wait = true): boolean {
    if (Atomics.load(this.ctrl, CTRL.ready) === 1) return true;
    if (!wait) return false;
    Atomics.wait(this.ctrl, CTRL.ready, 0, 10_000);
    return Atomics.load(this.ctrl, CTRL.ready) === 1;
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  /** Starts `op` on [lo, hi) in the worker; false (nothing started) unless the chunks and w live in the WebAssembly heap. */
  start(op: number, chunks: readonly Float64Array[], count: number, w: Float64Array, lo: number, hi: number): boolean {
    if (count > MAX_COUNT) return false;
    const at = heapAddresses(chunks, count, w);
    if (!at) return false;
    const ctrl = this.ctrl;
    for (let c = 0; c < at.length; c++) ctrl[CTRL.chunks + c] = at[c] / 8;
    ctrl[CTRL.w] = w.byteOffset / 8;
    ctrl[CTRL.op] = op;
    ctrl[CTRL.count] = count;
    ctrl[CTRL.n] = w.length;
    ctrl[CTRL.lo] = lo;
    ctrl[CTRL.hi] = hi;
    this.seq = (this.seq + 1) | 0;
    this.jobs++;
    Atomics.store(ctrl, CTRL.seq, this.seq);
    Atomics.notify(ctrl, CTRL.seq);
    return true;
  }

  /**
   * Blocks until the started job is done; throws if the worker failed on it or went silent (a job is a few passes
   * over memory, milliseconds; the worker's 'error' event cannot be seen while this thread blocks).
   */
  wait(): void {
    const t0 = performance.now();
    for (let done = Atomics.load(this.ctrl, CTRL.done); done !== this.seq; done = Atomics.load(this.ctrl, CTRL.done)) {
      if (performance.now() - t0 > JOB_TIMEOUT_MS) Atomics.store(this.ctrl, CTRL.failed, 1);
      if (Atomics.load(this.ctrl, CTRL.failed) !== 0) break;
      Atomics.wait(this.ctrl, CTRL.done, done, 1000);
    }
    if (Atomics.load(this.ctrl, CTRL.failed) !== 0) throw new LipcheckError('RUNTIME', 'The second thread of the Lanczos reorthogonalisation failed or stopped responding. Rerun with --threads 1 to keep that work on one thread.');
  }
}

let thread: KernelThread | null | undefined;
/** When the thread was started (a start that does not answer within 10 s is given up). */
let startedAt = 0;

/**
 * The shared kernel thread, started on first use; null on a single core or where workers cannot start. Under
 * `wait: false` it is also null while the thread is still starting (~70 ms of the main thread otherwise spent
 * waiting): callers then do the work on their own thread, which gives the same numbers.
 */
export function kernelThread(options: { readonly wait?: boolean } = {}): KernelThread | null {
  const wait = options.wait ?? true;
  if (thread === undefined) {
    try {
      const heap = wasmHeap();
      thread = availableParallelism() > 1 && heap ? new KernelThread(heap) : null;
      startedAt = performance.now();
    } catch {
      thread = null;
    }
  }
  if (thread && !thread.ready(false)) {
    // a failure to start is only declared by a waiting call or after 10 s (never a budget: the work is the same either way)
    if (!wait && performance.now() - startedAt < 10_000) return null;
    if (!thread.ready()) { void thread.terminate(); thread = null; }
  }
  return thread;
}
