/**
 * A second thread for Lanczos's reorthogonalisation, which is memory-bound: on this project's 2-core VM one thread
 * streams ~11 GB/s and two ~29 GB/s. The main thread posts a job (project or subtract on the upper half of the index
 * range) through a shared control block, does the lower half itself and waits (Atomics) for the worker: a few µs of
 * hand-off per call, no message per step. The basis chunks are SharedArrayBuffers registered with the worker once.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { LipcheckError } from '../errors.js';
import { CHUNK, projectRange, subtractRange } from './lanczos-kernels.js';

/** Slots of the Int32 control block. */
export const CTRL = { seq: 0, done: 1, op: 2, count: 3, n: 4, w: 5, wOffset: 6, lo: 7, hi: 8, ready: 9, failed: 10, chunks: 11 } as const;
export const OP = { project: 1, subtract: 2 } as const;

/**
 * The worker's loop: waits on the control block, runs projectRange or subtractRange on its range, signals completion.
 * Buffers arrive (and are dropped) as messages on `port`, drained synchronously when a job starts. It runs as an
 * eval'd script built from these functions' source (workerSource), so it needs no file of its own (and no TypeScript
 * loader under tests).
 */
function workerMain(data: { ctrl: SharedArrayBuffer; coef: SharedArrayBuffer; part: SharedArrayBuffer; port: MessagePort }, receive: (port: MessagePort) => { message: unknown } | undefined): void {
  const ctrl = new Int32Array(data.ctrl);
  const coef = new Float64Array(data.coef);
  const part = new Float64Array(data.part);
  const buffers = new Map<number, Float64Array>();
  let seen = 0;
  Atomics.store(ctrl, CTRL.ready, 1);
  Atomics.notify(ctrl, CTRL.ready);
  for (;;) {
    Atomics.wait(ctrl, CTRL.seq, seen);
    const seq = Atomics.load(ctrl, CTRL.seq);
    if (seq === seen) continue;
    seen = seq;
    for (let m = receive(data.port); m; m = receive(data.port)) {
      const msg = m.message as { id: number; buffer?: SharedArrayBuffer };
      if (msg.buffer) buffers.set(msg.id, new Float64Array(msg.buffer));
      else buffers.delete(msg.id);
    }
    const op = ctrl[CTRL.op];
    try {
      const count = ctrl[CTRL.count], n = ctrl[CTRL.n], lo = ctrl[CTRL.lo], hi = ctrl[CTRL.hi];
      const chunks: Float64Array[] = [];
      for (let c = 0; c < Math.ceil(count / CHUNK); c++) chunks.push(buffers.get(ctrl[CTRL.chunks + c])!);
      const w = buffers.get(ctrl[CTRL.w])!.subarray(ctrl[CTRL.wOffset], ctrl[CTRL.wOffset] + n);
      if (op === OP.project) projectRange(chunks, count, n, w, part, lo, hi);
      else subtractRange(chunks, count, n, w, coef, lo, hi);
    } catch {
      Atomics.store(ctrl, CTRL.failed, 1);
    }
    Atomics.store(ctrl, CTRL.done, seq);
    Atomics.notify(ctrl, CTRL.done);
  }
}

function workerSource(): string {
  return [
    "const { workerData, receiveMessageOnPort } = require('node:worker_threads');",
    `const CHUNK = ${CHUNK}, CTRL = ${JSON.stringify(CTRL)}, OP = ${JSON.stringify(OP)};`,
    projectRange.toString(),
    subtractRange.toString(),
    `(${workerMain.toString()})(workerData, receiveMessageOnPort);`,
  ].join('\n');
}

/** Largest basis (vectors) the shared coefficient arrays hold; larger runs stay on one thread. */
const MAX_COUNT = 4096;

/** A job the worker has not finished after this long means it is gone. */
const JOB_TIMEOUT_MS = 60_000;

class KernelThread {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(4 * (CTRL.chunks + MAX_COUNT / CHUNK + 1)));
  readonly coef = new Float64Array(new SharedArrayBuffer(8 * MAX_COUNT));
  readonly part = new Float64Array(new SharedArrayBuffer(8 * MAX_COUNT));
  private readonly ids = new WeakMap<ArrayBufferLike, number>();
  private nextId = 1;
  private seq = 0;
  /** Jobs run by the worker so far (for tests and benchmarks). */
  jobs = 0;
  private readonly port: MessagePort;
  private readonly worker: Worker;

  constructor() {
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.worker = new Worker(workerSource(), {
      eval: true,
      // plain CommonJS: a parent's --input-type=module or loader would change how the script is read
      execArgv: [],
      workerData: { ctrl: this.ctrl.buffer, coef: this.coef.buffer, part: this.part.buffer, port: channel.port2 },
      transferList: [channel.port2],
    });
    this.worker.on('error', () => { Atomics.store(this.ctrl, CTRL.failed, 1); });
    this.worker.unref();
    this.port.unref();
  }

  private idOf(buffer: ArrayBufferLike): number {
    let id = this.ids.get(buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(buffer, id);
      this.port.postMessage({ id, buffer });
    }
    return id;
  }

  /** Forgets a buffer the pool no longer keeps, so the worker does not hold it alive. */
  drop(buffer: ArrayBufferLike): void {
    const id = this.ids.get(buffer);
    if (id === undefined) return;
    this.ids.delete(buffer);
    this.port.postMessage({ id });
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

  /** Starts `op` on [lo, hi) in the worker; false (nothing started) when the operands cannot be shared. */
  start(op: number, chunks: readonly Float64Array[], count: number, w: Float64Array, lo: number, hi: number): boolean {
    if (count > MAX_COUNT || !(w.buffer instanceof SharedArrayBuffer)) return false;
    const full = Math.ceil(count / CHUNK);
    for (let c = 0; c < full; c++) if (!(chunks[c].buffer instanceof SharedArrayBuffer) || chunks[c].byteOffset !== 0) return false;
    const ctrl = this.ctrl;
    for (let c = 0; c < full; c++) ctrl[CTRL.chunks + c] = this.idOf(chunks[c].buffer);
    ctrl[CTRL.w] = this.idOf(w.buffer);
    ctrl[CTRL.wOffset] = w.byteOffset / 8;
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
      thread = availableParallelism() > 1 ? new KernelThread() : null;
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

/** The kernel thread if one was ever started (for the pool to drop buffers), without starting one. */
export function existingKernelThread(): KernelThread | null {
  return thread ?? null;
}
