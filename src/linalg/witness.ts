import type { Tensor } from '../ir/tensor.js';
import { norm2, Random } from './random.js';
import { ModelRunner } from './runner.js';
import type { RuntimeOptions } from './runtime.js';

/** The best pair found: ratio ‖f(x)−f(x')‖/‖x−x'‖ (ℓ2 or ℓ∞), which lower-bounds the Lipschitz constant. */
export interface Witness {
  readonly ratio: number;
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  readonly pairs: number;
}

function normOf(v: ArrayLike<number>, inf: boolean): number {
  if (!inf) return norm2(v);
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

/**
 * A witnessed lower bound (ALGORITHMS.md §3): evaluates the ORIGINAL model in onnxruntime on pairs (x, x + h·d) for
 * random x and directions d (random, plus the given hints such as the first operator's top singular vector), and
 * keeps the largest ratio. Exact float64 differences of the float32 inputs actually fed are used, so the ratio is
 * that of a real pair.
 */
export async function witnessLowerBound(
  bytes: Uint8Array, inputName: string, outputName: string, shape: readonly number[], runtime: RuntimeOptions,
  options: { seed: number; pairs: number; inf: boolean; hints: readonly Float64Array[]; budgetMs: number; feeds?: Record<string, Tensor> },
): Promise<Witness> {
  const runner = await ModelRunner.create(bytes, runtime, 'the model (witness)');
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new Random(options.seed ^ 0x5bd1e995);
  const t0 = performance.now();
  let best: Witness = { ratio: 0, x: new Float32Array(n), xPrime: new Float32Array(n), pairs: 0 };
  const run = async (x: Float32Array) => (await runner.run({ ...(options.feeds ?? {}), [inputName]: { dtype: 'float32', dims: shape, data: x } }, [outputName])).get(outputName)!.data as Float32Array;
  try {
    for (let k = 0; k < options.pairs; k++) {
      if (k > 0 && performance.now() - t0 > options.budgetMs) break;
      const x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = rng.normal();
      const d = k < options.hints.length ? options.hints[k] : rng.unitVector(n);
      const h = 1e-2 * (1 + rng.next());
      const xp = new Float32Array(n);
      for (let i = 0; i < n; i++) xp[i] = x[i] + h * d[i];
      const dx = new Float64Array(n);
      for (let i = 0; i < n; i++) dx[i] = xp[i] - x[i];
      const den = normOf(dx, options.inf);
      if (den === 0) continue;
      const [fx, fxp] = [await run(x), await run(xp)];
      const dy = new Float64Array(fx.length);
      for (let i = 0; i < fx.length; i++) dy[i] = fxp[i] - fx[i];
      const ratio = normOf(dy, options.inf) / den;
      if (Number.isFinite(ratio) && ratio > best.ratio) best = { ratio, x, xPrime: xp, pairs: 0 };
      best = { ...best, pairs: k + 1 };
    }
  } finally {
    await runner.release();
  }
  return best;
}
