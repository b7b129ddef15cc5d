import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { dot, norm2 } from './random.js';

/** A symmetric positive semi-definite operator on R^n (here AᵀA), applied in float64 bookkeeping. */
export interface SymmetricOperator {
  readonly n: number;
  apply(v: Float64Array): Promise<Float64Array>;
}

/** What Lanczos found: the top Ritz value θ (≤ λ_max in exact arithmetic), its vector, and the steps taken. */
export interface LanczosResult {
  readonly theta: number;
  readonly ritzVector: Float64Array;
  readonly steps: number;
  /** True when the Krylov space became invariant (θ is then an eigenvalue of the operator). */
  readonly invariant: boolean;
  readonly history: readonly number[];
}

/** Thrown when the operator returns NaN or ±Infinity (a float32 overflow, usually from enormous weights). */
export class NonFiniteError extends Error {}

/** Options: a unit start vector, step limits and a stopping rule called after each step. */
export interface LanczosOptions {
  readonly start: Float64Array;
  readonly maxSteps: number;
  readonly stop: (theta: number, steps: number, previous: number) => boolean;
}

function topEigen(alpha: number[], beta: number[]): { value: number; vector: number[] } {
  const k = alpha.length;
  if (k === 1) return { value: alpha[0], vector: [1] };
  const t = Matrix.zeros(k, k);
  for (let i = 0; i < k; i++) {
    t.set(i, i, alpha[i]);
    if (i + 1 < k) { t.set(i, i + 1, beta[i]); t.set(i + 1, i, beta[i]); }
  }
  const e = new EigenvalueDecomposition(t, { assumeSymmetric: true });
  const vals = e.realEigenvalues;
  let best = 0;
  for (let i = 1; i < vals.length; i++) if (vals[i] > vals[best]) best = i;
  return { value: vals[best], vector: e.eigenvectorMatrix.getColumn(best) };
}

/**
 * Lanczos on a symmetric PSD operator with full reorthogonalisation (classical Gram–Schmidt, a second pass when the
 * first cancels most of the vector; basis kept in float64). Returns the largest Ritz value: an estimate of λ_max from below (ALGORITHMS.md §2), which the
 * Kuczyński–Woźniakowski bound turns into a probabilistic upper bound when the start is uniform on the sphere.
 */
export async function lanczosTop(op: SymmetricOperator, options: LanczosOptions): Promise<LanczosResult> {
  const n = op.n;
  const basis: Float64Array[] = [Float64Array.from(options.start)];
  const alpha: number[] = [];
  const beta: number[] = [];
  const history: number[] = [];
  let theta = 0;
  let vec: number[] = [1];
  let invariant = false;
  const maxSteps = Math.min(options.maxSteps, n);
  for (let j = 0; j < maxSteps; j++) {
    const v = basis[j];
    const w = await op.apply(v);
    const a = dot(w, v);
    if (!Number.isFinite(a) || !Number.isFinite(norm2(w))) throw new NonFiniteError(`step ${j + 1} produced non-finite values`);
    alpha.push(a);
    // classical Gram–Schmidt against the whole basis, repeated only when it cancelled most of w
    // (Daniel, Gragg, Kaufman & Stewart 1976: "twice is enough")
    let before = norm2(w);
    for (let pass = 0; pass < 2; pass++) {
      const coeffs = basis.map((q) => dot(w, q));
      for (let b = 0; b < basis.length; b++) {
        const q = basis[b], c = coeffs[b];
        for (let i = 0; i < n; i++) w[i] -= c * q[i];
      }
      const after = norm2(w);
      if (after > 0.7 * before) break;
      before = after;
    }
    const previous = theta;
    ({ value: theta, vector: vec } = topEigen(alpha, beta));
    history.push(theta);
    const b = norm2(w);
    const scale = Math.max(Math.abs(a), ...beta.map(Math.abs), 1e-300);
    if (b <= 1e-12 * scale) { invariant = true; break; }
    if (options.stop(theta, j + 1, previous)) break;
    if (j + 1 >= maxSteps) break;
    beta.push(b);
    for (let i = 0; i < n; i++) w[i] /= b;
    basis.push(w);
  }
  const ritz = new Float64Array(n);
  for (let j = 0; j < vec.length; j++) {
    const c = vec[j];
    const q = basis[j];
    for (let i = 0; i < n; i++) ritz[i] += c * q[i];
  }
  const r = norm2(ritz);
  if (r > 0) for (let i = 0; i < n; i++) ritz[i] /= r;
  return { theta: Math.max(theta, 0), ritzVector: ritz, steps: alpha.length, invariant, history };
}
