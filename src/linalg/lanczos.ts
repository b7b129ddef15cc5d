import type { GramLanczosOptions, GramLanczosResult } from '../ir/operator.js';
import { tridiagonalLargestEigenvalue } from './dense.js';
import { CHUNK, dotAndSquares, projectRange, recurrence, scaleBy, subtractRange, sumSquares, wasmHeap } from './lanczos-kernels.js';
import { kernelThread, OP } from './lanczos-threads.js';
import { norm2 } from './random.js';

/** A symmetric positive semi-definite operator on R^n (here AᵀA), applied in float64 bookkeeping. */
export interface SymmetricOperator {
  readonly n: number;
  apply(v: Float64Array): Promise<Float64Array>;
  /** Optional: the same product written into `out` (length n), so Lanczos can keep its basis in reused buffers. */
  applyInto?(v: Float64Array, out: Float64Array): Promise<void>;
  /**
   * Optional: the whole iteration by the operator's backend, several steps per run (GramOperator.lanczos,
   * src/backend/fused-lanczos.ts); used when the caller gives `expectedSteps`; null declines (then one product a step).
   */
  lanczos?(options: GramLanczosOptions): Promise<GramLanczosResult | null>;
}

/** What Lanczos found: the top Ritz value θ (≤ λ_max in exact arithmetic), its vector, and the steps taken. */
export type LanczosResult = GramLanczosResult;

/** Thrown when the operator returns NaN or ±Infinity (a float32 overflow, usually from enormous weights). */
export class NonFiniteError extends Error {}

/** Options: a unit start vector, step limits and a stopping rule called after each step. */
export interface LanczosOptions {
  readonly start: Float64Array;
  readonly maxSteps: number;
  readonly stop: (theta: number, steps: number, previous: number) => boolean;
  /** Whether the reorthogonalisation may use the kernel thread (default true; same results either way). */
  readonly parallel?: boolean;
  /** The steps the stop rule is expected to need (the KW count): lets a backend that fuses steps size its runs. */
  readonly expectedSteps?: number;
}

/**
 * The unit eigenvector of the symmetric tridiagonal matrix (diagonal `alpha`, off-diagonal `beta`) for its eigenvalue
 * `theta` (accurate to rounding), by inverse iteration: LU of T − θI with partial pivoting (LAPACK dgttrf/dgttrs),
 * zero pivots nudged to the rounding level. Sign: largest component positive.
 */
export function tridiagonalEigenvector(alpha: readonly number[], beta: readonly number[], theta: number): Float64Array {
  const k = alpha.length;
  if (k === 1) return Float64Array.of(1);
  const d = Float64Array.from(alpha, (a) => a - theta);
  const du = Float64Array.from(beta.slice(0, k - 1));
  const dl = Float64Array.from(beta.slice(0, k - 1));
  const du2 = new Float64Array(k);
  const swapped = new Uint8Array(k);
  let size = 0;
  for (let i = 0; i < k; i++) size = Math.max(size, Math.abs(alpha[i]) + (i > 0 ? Math.abs(beta[i - 1]) : 0) + (i < k - 1 ? Math.abs(beta[i]) : 0));
  const tiny = Math.max(size, Math.abs(theta), Number.MIN_VALUE) * 2 ** -52;
  for (let i = 0; i < k - 1; i++) {
    if (Math.abs(d[i]) >= Math.abs(dl[i])) {
      if (d[i] === 0) d[i] = tiny;
      const f = dl[i] / d[i];
      dl[i] = f;
      d[i + 1] -= f * du[i];
    } else {
      const f = d[i] / dl[i];
      d[i] = dl[i];
      dl[i] = f;
      const t = du[i];
      du[i] = d[i + 1];
      d[i + 1] = t - f * d[i + 1];
      if (i < k - 2) { du2[i] = du[i + 1]; du[i + 1] = -f * du[i + 1]; }
      swapped[i] = 1;
    }
  }
  if (d[k - 1] === 0) d[k - 1] = tiny;
  // a start with no special structure, so it is not orthogonal to the wanted vector
  const x = Float64Array.from({ length: k }, (_, i) => 1 + 0.5 * Math.sin(i + 1));
  for (let it = 0; it < 3; it++) {
    for (let i = 0; i < k - 1; i++) {
      if (swapped[i]) { const t = x[i]; x[i] = x[i + 1]; x[i + 1] = t - dl[i] * x[i]; }
      else x[i + 1] -= dl[i] * x[i];
    }
    x[k - 1] /= d[k - 1];
    x[k - 2] = (x[k - 2] - du[k - 2] * x[k - 1]) / d[k - 2];
    for (let i = k - 3; i >= 0; i--) x[i] = (x[i] - du[i] * x[i + 1] - du2[i] * x[i + 2]) / d[i];
    const r = norm2(x);
    let big = 0;
    for (let i = 1; i < k; i++) if (Math.abs(x[i]) > Math.abs(x[big])) big = i;
    const c = (x[big] < 0 ? -1 : 1) / r;
    for (let i = 0; i < k; i++) x[i] *= c;
  }
  return x;
}

// The basis lives in chunks of CHUNK vectors (lanczos-kernels.ts) in the WebAssembly heap, where the SIMD kernels and
// the kernel thread read them; the heap keeps its memory, so a later run reuses pages already faulted in (a fresh
// multi-megabyte array costs a page fault per 4 KiB on first touch, which on virtual machines rivals the matrix–vector
// product itself). Where the heap cannot take them, plain shared arrays and the JavaScript kernels (same bits).

/** A float64 array of `length` in the heap, else a plain shared one. */
function take(length: number): Float64Array {
  return wasmHeap()?.alloc(length) ?? new Float64Array(new SharedArrayBuffer(8 * length));
}

/** Returns arrays `take` gave (plain ones are left to the garbage collector). */
function giveBack(arrays: readonly Float64Array[]): void {
  const heap = wasmHeap();
  for (const a of arrays) if (heap?.holds(a)) heap.release(a);
}

/**
 * Vectors at least this long are reorthogonalised in two halves, the upper one by the kernel thread when there is
 * one; the halves' dot products are added in the same order either way, so results do not depend on the thread.
 */
const SPLIT_MIN = 1 << 16;

/** h[b] = ⟨w, q_b⟩ for b < count (exported for tests). */
export function projectBasis(chunks: readonly Float64Array[], count: number, w: Float64Array, h: Float64Array, parallel: boolean): void {
  const n = w.length;
  if (n < SPLIT_MIN) return projectRange(chunks, count, n, w, h, 0, n);
  const mid = n >> 1;
  const t = parallel ? kernelThread({ wait: false }) : null;
  if (t && t.start(OP.project, chunks, count, w, mid, n)) {
    projectRange(chunks, count, n, w, h, 0, mid);
    t.wait();
    for (let b = 0; b < count; b++) h[b] += t.part[b];
    return;
  }
  const upper = take(count);
  projectRange(chunks, count, n, w, h, 0, mid);
  projectRange(chunks, count, n, w, upper, mid, n);
  for (let b = 0; b < count; b++) h[b] += upper[b];
  giveBack([upper]);
}

/** w ← w − Σ_{b<count} h[b]·q_b (exported for tests). */
export function subtractBasis(chunks: readonly Float64Array[], count: number, w: Float64Array, h: Float64Array, parallel: boolean): void {
  const n = w.length;
  const t = n >= SPLIT_MIN && parallel ? kernelThread({ wait: false }) : null;
  if (t && count <= t.coef.length) {
    t.coef.set(h.subarray(0, count));
    const mid = n >> 1;
    if (t.start(OP.subtract, chunks, count, w, mid, n)) {
      subtractRange(chunks, count, n, w, h, 0, mid);
      t.wait();
      return;
    }
  }
  subtractRange(chunks, count, n, w, h, 0, n);
}

/** ‖w‖, by plain float64 sums of squares when they neither overflow nor underflow, else by the scaled norm2. */
function norm(w: Float64Array): number {
  const s = sumSquares(w);
  return s > 1e-280 && s < 1e280 ? Math.sqrt(s) : norm2(w);
}

/**
 * Lanczos on a symmetric PSD operator with full reorthogonalisation, basis kept in float64. Each step runs the
 * three-term recurrence, then one classical Gram–Schmidt pass against the whole basis, and a second pass only when
 * that pass removed more than half of what was left (Daniel, Gragg, Kaufman & Stewart 1976: "twice is enough"), so
 * the basis stays orthogonal to working precision. Returns the largest Ritz value: an estimate of λ_max from below
 * (ALGORITHMS.md §2), which the Kuczyński–Woźniakowski bound turns into a probabilistic upper bound when the start
 * is uniform on the sphere.
 */
export async function lanczosTop(op: SymmetricOperator, options: LanczosOptions): Promise<LanczosResult> {
  if (op.lanczos && options.expectedSteps !== undefined) {
    const fused = await op.lanczos({ start: options.start, maxSteps: options.maxSteps, stop: options.stop, expectedSteps: options.expectedSteps });
    if (fused) return fused;
  }
  const n = op.n;
  const maxSteps = Math.min(options.maxSteps, n);
  const parallel = options.parallel ?? true;
  // the kernel thread starts while the first product runs (until it answers, its halves run on this thread)
  if (parallel && n >= SPLIT_MIN) kernelThread({ wait: false });
  const chunks: Float64Array[] = [];
  // slot b of the basis (allocated chunk by chunk); w of step j is written straight into slot j + 1
  const slot = (b: number) => {
    while (chunks.length <= Math.floor(b / CHUNK)) chunks.push(take(CHUNK * n));
    const o = (b % CHUNK) * n;
    return chunks[Math.floor(b / CHUNK)].subarray(o, o + n);
  };
  const first = slot(0);
  first.set(options.start);
  const basis: Float64Array[] = [first];
  const alpha: number[] = [];
  const beta: number[] = [];
  const history: number[] = [];
  const h = take(maxSteps + 1);
  let theta = 0;
  let invariant = false;
  let extraPasses = 0;
  let last = 0;
  try {
    for (let j = 0; j < maxSteps; j++) {
      const v = basis[j];
      const w = slot(j + 1);
      if (op.applyInto) await op.applyInto(v, w);
      else w.set(await op.apply(v));
      const [a, ww] = dotAndSquares(w, v);
      if (!Number.isFinite(a) || (!Number.isFinite(ww) && !Number.isFinite(norm2(w)))) throw new NonFiniteError(`step ${j + 1} produced non-finite values`);
      alpha.push(a);
      // the three-term recurrence removes the large components; Gram–Schmidt then removes what rounding left behind
      let before = recurrence(w, v, j > 0 ? basis[j - 1] : v, a, j > 0 ? beta[j - 1] : 0);
      for (let pass = 0; pass < 2; pass++) {
        projectBasis(chunks, j + 1, w, h, parallel);
        subtractBasis(chunks, j + 1, w, h, parallel);
        let removed = 0;
        for (let b = 0; b <= j; b++) removed += h[b] * h[b];
        // Pythagoras (the basis is orthonormal) gives the remainder without another pass; it errs low when most
        // cancelled, which only asks for the second pass that case needs anyway
        const after = before - removed;
        if (after > 0.49 * before || pass === 1) break;
        extraPasses++;
        before = sumSquares(w);
      }
      const previous = theta;
      // Sturm bisection: a few hundred flops a step; the eigenvector only once, at the end
      theta = tridiagonalLargestEigenvalue(alpha, beta, alpha.length);
      history.push(theta);
      const b = norm(w);
      last = b;
      const scale = Math.max(Math.abs(a), ...beta.map(Math.abs), 1e-300);
      if (b <= 1e-12 * scale) { invariant = true; break; }
      if (options.stop(theta, j + 1, previous)) break;
      if (j + 1 >= maxSteps) break;
      beta.push(b);
      scaleBy(w, 1 / b);
      basis.push(w);
    }
    const ritz = take(n);
    ritz.fill(0);
    const c = tridiagonalEigenvector(alpha, beta.slice(0, alpha.length - 1), theta);
    for (let j = 0; j < c.length; j++) h[j] = -c[j];
    subtractBasis(chunks, c.length, ritz, h, false);
    const r = norm(ritz);
    if (r > 0) scaleBy(ritz, 1 / r);
    const ritzVector = Float64Array.from(ritz);
    giveBack([ritz]);
    return { theta: Math.max(theta, 0), ritzVector, steps: alpha.length, invariant, history, extraPasses, tridiagonal: { alpha, beta: [...beta.slice(0, alpha.length - 1), last] } };
  } finally {
    giveBack([...chunks, h]);
  }
}

/** What the caller's stop rule says about the coefficients of a fused run (replayStopRule). */
export interface StopReplay {
  /** θ of T_used. */
  readonly theta: number;
  readonly used: number;
  readonly history: number[];
  /** The Krylov space became invariant at step `used` (β below invariantTol × the coefficients' scale). */
  readonly invariant: boolean;
  /** The rule (or invariance, or maxSteps) stopped within the run's steps. */
  readonly stopped: boolean;
}

/**
 * The caller's stop rule and lanczosTop's invariance test, step by step on a fused run's (α, β), θ of each prefix by
 * the same Sturm bisection as lanczosTop. Throws NonFiniteError, as lanczosTop, on a non-finite coefficient.
 */
export function replayStopRule(run: { readonly alpha: ArrayLike<number>; readonly beta: ArrayLike<number> }, steps: number, maxSteps: number, stop: LanczosOptions['stop'], invariantTol: number): StopReplay {
  const alpha: number[] = [];
  const beta: number[] = [];
  const history: number[] = [];
  let theta = 0;
  for (let j = 0; j < steps; j++) {
    const a = run.alpha[j], bj = run.beta[j];
    if (!Number.isFinite(a) || !Number.isFinite(bj)) throw new NonFiniteError(`step ${j + 1} produced non-finite values`);
    alpha.push(a);
    const previous = theta;
    theta = tridiagonalLargestEigenvalue(alpha, beta, alpha.length);
    history.push(theta);
    const scale = Math.max(Math.abs(a), ...beta.map(Math.abs), 1e-300);
    if (bj <= invariantTol * scale) return { theta, used: j + 1, history, invariant: true, stopped: true };
    if (stop(theta, j + 1, previous) || j + 1 >= maxSteps) return { theta, used: j + 1, history, invariant: false, stopped: true };
    beta.push(bj);
  }
  return { theta, used: steps, history, invariant: false, stopped: false };
}

/**
 * A fused run's Ritz vector `ritz` (the basis combined with T's top eigenvector `coef`, not normalised) made unit length
 * in place, its sign lanczosTop's (largest coefficient positive); null where it cannot be (a zero T: 0/0, or a
 * non-finite entry), and the caller then leaves it to lanczosTop.
 */
export function unitRitz(coef: ArrayLike<number>, ritz: Float64Array): Float64Array | null {
  let big = 0;
  for (let i = 1; i < coef.length; i++) if (Math.abs(coef[i]) > Math.abs(coef[big])) big = i;
  let ss = 0;
  for (let i = 0; i < ritz.length; i++) ss += ritz[i] * ritz[i];
  const scale = (coef[big] < 0 ? -1 : 1) / Math.sqrt(ss);
  if (!Number.isFinite(scale) || !ritz.every(Number.isFinite)) return null;
  for (let i = 0; i < ritz.length; i++) ritz[i] *= scale;
  return ritz;
}
