import type { ModelEvaluator } from '../ir/operator.js';
import type { Tensor } from '../ir/tensor.js';
import { norm2, Random } from './random.js';

/** The best pair found: ratio ‖f(x)−f(x')‖/‖x−x'‖ (ℓ2 or ℓ∞), which lower-bounds the Lipschitz constant. */
export interface Witness {
  readonly ratio: number;
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  readonly pairs: number;
  /** Evaluations whose output was not finite (float32 overflow in the model): their pairs were skipped. */
  readonly nonFinite: number;
}

/**
 * Relative float32 rounding allowed in each output of the model: onnxruntime evaluates f in float32, so the raw
 * ratio of a pair can exceed the exact function's constant by rounding alone (seen: 3.0000041 against a certified
 * 2.99999998 on a single Gemm). 64 units in the last place of the outputs' norm covers the accumulations measured on
 * the fixtures and shared models; it is deducted, so the lower bound errs low.
 */
export const OUTPUT_ROUNDING = 64 * 2 ** -24;

/** The witnessed ratio of a pair: (‖f(x′) − f(x)‖ − allowance)/‖x′ − x‖, in ℓ2 or ℓ∞, never negative. */
export function pairRatio(fx: ArrayLike<number>, fxPrime: ArrayLike<number>, x: ArrayLike<number>, xPrime: ArrayLike<number>, inf: boolean): number {
  const dx = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) dx[i] = xPrime[i] - x[i];
  const den = normOf(dx, inf);
  if (den === 0) return 0;
  const dy = new Float64Array(fx.length);
  for (let i = 0; i < fx.length; i++) dy[i] = fxPrime[i] - fx[i];
  const allowance = OUTPUT_ROUNDING * (normOf(fx, inf) + normOf(fxPrime, inf));
  const r = Math.max(0, normOf(dy, inf) - allowance) / den;
  return Number.isFinite(r) ? r : 0;
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
 * keeps the largest ratio (pairRatio: exact float64 differences of the float32 inputs actually fed, less the float32
 * output-rounding allowance). Exactly `pairs` pairs are tried, so the work is the same on every run; a pair with a
 * non-finite output is skipped and counted. The caller owns (and releases) the evaluator.
 */
export async function witnessLowerBound(
  runner: ModelEvaluator, inputName: string, outputName: string, shape: readonly number[],
  options: { seed: number; pairs: number; inf: boolean; hints: readonly Float64Array[]; feeds?: Record<string, Tensor> },
): Promise<Witness> {
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new Random(options.seed ^ 0x5bd1e995);
  let best: Witness = { ratio: 0, x: new Float32Array(n), xPrime: new Float32Array(n), pairs: 0, nonFinite: 0 };
  let nonFinite = 0;
  const run = async (x: Float32Array) => (await runner.run({ ...(options.feeds ?? {}), [inputName]: { dtype: 'float32', dims: shape, data: x } }, [outputName])).get(outputName)!.data as Float32Array;
  {
    for (let k = 0; k < options.pairs; k++) {
      const x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = rng.normal();
      const d = k < options.hints.length ? options.hints[k] : rng.unitVector(n);
      const h = 1e-2 * (1 + rng.next());
      const xp = new Float32Array(n);
      for (let i = 0; i < n; i++) xp[i] = x[i] + h * d[i];
      if (xp.every((v, i) => v === x[i])) continue;
      const [fx, fxp] = [await run(x), await run(xp)];
      const finite = (v: Float32Array) => v.every(Number.isFinite);
      if (!finite(fx) || !finite(fxp)) nonFinite += (finite(fx) ? 0 : 1) + (finite(fxp) ? 0 : 1);
      else {
        const ratio = pairRatio(fx, fxp, x, xp, options.inf);
        if (Number.isFinite(ratio) && ratio > best.ratio) best = { ratio, x, xPrime: xp, pairs: 0, nonFinite: 0 };
      }
      best = { ...best, pairs: k + 1, nonFinite };
    }
  }
  return best;
}
