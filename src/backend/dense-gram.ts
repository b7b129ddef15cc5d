/**
 * The float64 Gram matrix A·Aᵀ of a dense matrix through onnxruntime's float64 Gemm (OperatorBackend.denseGram): the
 * product behind every certified σ_max of a dense matrix (linalg/dense.ts denseSpectralNormBoundWith), which in
 * JavaScript ran at about 1.6·10⁹ multiply-adds per second and in onnxruntime's float64 Gemm (MLAS) at 19–30·10⁹ on one
 * thread of this VM. ResNet-50's 36 pointwise convolutions need 3.2·10⁹ of them.
 *
 * Why the certificate stays valid: Gemm on float64 tensors computes each entry as a float64 dot product in some order
 * (blocked, with fused multiply-adds), which is all the certificate's margin assumes (GramKernel in linalg/dense.ts).
 * The work is split over the output's rows and columns, never along the inner dimension, so the result does not
 * depend on the thread count (checked by test/unit/backend/dense-gram.test.ts for 1 and 2 threads).
 *
 * One session per thread count, made once (the model has symbolic dims and no weights) and kept for the process, on a
 * session worker thread where there are workers (ort-pool.ts), else on the calling thread; on the CPU whatever the
 * device (float64 kernels).
 */
import { LipcheckError } from '../errors.js';
import type { GramKernel } from '../linalg/dense.js';
import { encodeGraph } from '../onnx/writer.js';
import { ortIntraThreads, ortWorkersFor, workerGram64 } from './ort-pool.js';
import { Session, sessionOptions, type RuntimeOptions } from './runtime.js';

/**
 * Smaller products stay in JavaScript: below this many multiply-adds (~10 ms of the JS product) the session's creation
 * (5–10 ms, once per process) is not surely repaid (the shared models' 1×1 convs are all below it: no session).
 */
export const DENSE_GRAM_MIN_MACS = 1e7;

const sessions = new Map<number, Promise<Session>>();

function gemmModel(): Uint8Array {
  return encodeGraph({
    opset: 13,
    inputs: [{ name: 'a', dtype: 'float64', dims: ['m', 'n'] }],
    outputs: [{ name: 'g', dtype: 'float64', dims: ['m', 'm'] }],
    nodes: [{ opType: 'Gemm', inputs: ['a', 'a'], outputs: ['g'], attrs: { transB: { i: 1 } } }],
  });
}

/**
 * The Gram kernel of `runtime`'s CPU threads (GramKernel's contract; it may take `a` over), or null for a product too
 * small to pay. Where sessions run on worker threads (ort-pool.ts) the product runs there, the main thread staying
 * free for other operators' Lanczos bookkeeping; else on the calling thread.
 */
export function denseGramKernel(runtime: RuntimeOptions): GramKernel {
  const threads = runtime.threads ?? 0;
  return async (a: Float64Array, m: number, n: number, handOver = false) => {
    if (m * m * n < DENSE_GRAM_MIN_MACS) return null;
    if (a.length !== m * n) throw new LipcheckError('INTERNAL', `denseGram: a ${m}×${n} matrix needs ${m * n} values, got ${a.length}.`);
    // on a worker only where a product is large enough to pay for the hand-off and the worker's start (WORKER_MIN_FLOP)
    const workers = ortWorkersFor({ ...runtime, device: 'cpu' }, 2 * m * m * n);
    if (workers > 0) return workerGram64(gemmModel, sessionOptions('cpu', { device: 'cpu', threads }, ortIntraThreads(runtime)), workers, handOver ? a : a.slice(), m, n);
    let s = sessions.get(threads);
    if (!s) {
      s = Session.create(gemmModel(), { device: 'cpu', threads }, 'the float64 Gram product');
      sessions.set(threads, s);
      s.catch(() => sessions.delete(threads));
    }
    const out = await (await s).run({ a: { dtype: 'float64', dims: [m, n], data: a } }, ['g'], 'the float64 Gram product');
    return out.get('g')!.data as Float64Array;
  };
}
