import { LipcheckError } from '../errors.js';
import { Random } from './random.js';

/** A certified upper bound on an operator norm, with the point estimate it came from and the method that gave it. */
export interface NormBound {
  /** Certified upper bound: every floating-point rounding of the computation is already covered. */
  value: number;
  /** Best point estimate of the norm, without margin (may lie slightly below the true norm). */
  estimate: number;
  /** Short method name: `exact-eig`, `gram-iteration`, `circular-fft`. */
  method: string;
}

/** Thrown when a certified norm computation would exceed its work budget (flop, see linalg/work.ts); the caller falls back to a looser or probabilistic bound. */
export class BudgetExceededError extends LipcheckError {
  /** The predicted work, or the work already counted when the budget ran out midway, in flop. */
  readonly estimatedFlop: number;
  readonly budgetFlop: number;
  constructor(message: string, estimatedFlop: number, budgetFlop: number) {
    super('RUNTIME', message, { details: [`about ${formatMflop(estimatedFlop)} Mflop against a budget of ${formatMflop(budgetFlop)} Mflop`] });
    this.estimatedFlop = estimatedFlop;
    this.budgetFlop = budgetFlop;
  }
}

/** A flop count in Mflop, for messages. */
export function formatMflop(flop: number): string {
  const m = flop / 1e6;
  return m >= 100 ? String(Math.round(m)) : String(Number(m.toPrecision(3)));
}

type RealMatrix = Float64Array | Float32Array;

/** Unit roundoff of float64 (round to nearest). */
export const UNIT_ROUNDOFF = 2 ** -53;
const U = UNIT_ROUNDOFF;

/**
 * Absolute slack for underflow. Every routine here first scales its input by a power of two (powerOfTwoShift) so that
 * the largest entry lies in [1/2, 1), or at least in [2^-75, 2^25) for entries beyond 2^±1000; the norms bounded are
 * then ≥ 2^-75, every rounded operation adds at most 2^-1075 absolute error from underflow, and fewer than 2^60
 * operations touch any one result, so 2^-1000 covers them all.
 */
export const UNDERFLOW_SLACK = 2 ** -1000;

/** The exponent s, |s| ≤ 1000, for which 2^s·maxAbs lies in [1/2, 1) when it can: scaling by it is exact. */
export function powerOfTwoShift(maxAbs: number): number {
  return Math.min(1000, Math.max(-1000, -exponentOf(maxAbs) - 1));
}

/** x·2^(−shift) rounded upward, for x ≥ 0 computed in the scaled domain: exact unless the result is subnormal. */
export function unscaleUp(x: number, shift: number): number {
  const y = x * 2 ** -shift;
  return y > 0 && y < 2 ** -1021 ? y + Number.MIN_VALUE : y;
}

/**
 * An upward bound on X for x ≥ 0 the computed value of a non-negative quantity X through at most k roundings (or a
 * sum of non-negative terms with error ≤ γ_k·X): X ≤ x/(1−γ_k) ≤ x·(1 + 1.02·k·u) for k·u ≤ 0.01, and
 * fl(x + fl(x·c)) with c = 2(k+2)u ≥ x·(1 + (2k+2)u) after its own two roundings.
 */
export function roundUp(x: number, k = 1): number {
  return x + x * (2 * (k + 2) * U);
}

/** Upper bound on Higham's γ_k = k·u/(1 − k·u) (Accuracy and Stability of Numerical Algorithms, §3.1). */
export function gamma(k: number): number {
  if (k * U >= 0.01) throw new LipcheckError('INTERNAL', `gamma(${k}) is outside the range where the rounding bounds used here hold.`);
  return roundUp((k * U) / (1 - k * U), 3);
}

/** Upward-rounded square root of a non-negative number. */
export function sqrtUp(x: number): number {
  return roundUp(Math.sqrt(x), 1);
}

/** The exponent e with 2^e ≤ x < 2^(e+1) for finite x > 0, up to one unit near powers of two (only used to scale). */
function exponentOf(x: number): number {
  return Math.floor(Math.log2(x));
}

/** Largest eigenvalue of the symmetric tridiagonal matrix (diagonal `a`, off-diagonal `b`), by Sturm bisection; returns the interval's upper end. */
export function tridiagonalLargestEigenvalue(a: ArrayLike<number>, b: ArrayLike<number>, k: number): number {
  if (k === 1) return a[0];
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < k; i++) {
    const r = (i > 0 ? Math.abs(b[i - 1]) : 0) + (i < k - 1 ? Math.abs(b[i]) : 0);
    lo = Math.min(lo, a[i] - r);
    hi = Math.max(hi, a[i] + r);
  }
  const tiny = (Math.abs(lo) + Math.abs(hi)) * U * U + Number.MIN_VALUE;
  for (let iter = 0; iter < 200 && hi - lo > 4 * U * Math.max(Math.abs(lo), Math.abs(hi)); iter++) {
    const x = 0.5 * (lo + hi);
    let below = 0;
    let d = 1;
    for (let i = 0; i < k; i++) {
      d = a[i] - x - (i > 0 ? (b[i - 1] * b[i - 1]) / d : 0);
      if (d === 0) d = -tiny;
      if (d < 0) below++;
    }
    if (below === k) hi = x;
    else lo = x;
  }
  return hi;
}

/** Seed of the Lanczos start vectors: they only affect speed, never the certified value. */
export const LANCZOS_SEED = 0x6c697063;

function checkShape(w: RealMatrix, rows: number, cols: number, fn: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new LipcheckError('INTERNAL', `${fn}: shape ${rows}×${cols} must be two positive integers.`);
  }
  if (w.length !== rows * cols) {
    throw new LipcheckError('INTERNAL', `${fn}: a ${rows}×${cols} matrix needs ${rows * cols} values, got ${w.length}.`);
  }
}

/** max |w_i| over the array; throws on a non-finite entry since no finite norm bound exists then. */
export function maxAbsFinite(w: ArrayLike<number>, what: string): number {
  let m = 0;
  for (let i = 0; i < w.length; i++) {
    const a = Math.abs(w[i]);
    if (!(a < Infinity)) {
      throw new LipcheckError('UNSUPPORTED', `${what} has a non-finite value ${w[i]} at index ${i}; its norm is unbounded. Fix or remove that weight.`);
    }
    if (a > m) m = a;
  }
  return m;
}

/**
 * A copy of w scaled exactly by 2^s (s from powerOfTwoShift), returned with s; `transpose` stores it column-major.
 * Scaling by a power of two is exact except for entries that underflow, whose change UNDERFLOW_SLACK covers.
 */
function scaledCopy(w: RealMatrix, rows: number, cols: number, transpose: boolean, maxAbs: number): { a: Float64Array; shift: number } {
  const shift = powerOfTwoShift(maxAbs);
  const f = 2 ** shift;
  const a = new Float64Array(rows * cols);
  if (!transpose) {
    for (let i = 0; i < a.length; i++) a[i] = w[i] * f;
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) a[c * rows + r] = w[r * cols + c] * f;
    }
  }
  return { a, shift };
}

/** The symmetric m×m product B·Bᵀ of a row-major m×n matrix B, in float64 (each entry one sequential dot product). */
export function gramRows(b: Float64Array, m: number, n: number): Float64Array {
  const g = new Float64Array(m * m);
  gramLower(b, m, n, g);
  // mirror the lower triangle so that the result is exactly symmetric
  for (let r = 0; r < m; r++) for (let c = 0; c < r; c++) g[c * m + r] = g[r * m + c];
  return g;
}

/**
 * The lower triangle (j ≤ i) of A·Aᵀ into g (rows×rows): rows of A taken four by four against four, sixteen dot products
 * at once (eight loads serve sixteen multiply-adds).
 */
export function gramLower(a: Float64Array, rows: number, cols: number, g: Float64Array): void {
  const dot = (i: number, j: number) => { let s = 0; const oi = i * cols, oj = j * cols; for (let k = 0; k < cols; k++) s += a[oi + k] * a[oj + k]; return s; };
  let i0 = 0;
  for (; i0 + 3 < rows; i0 += 4) {
    const a0 = i0 * cols, a1 = a0 + cols, a2 = a1 + cols, a3 = a2 + cols;
    let j0 = 0;
    for (; j0 + 3 <= i0; j0 += 4) {
      const b0 = j0 * cols, b1 = b0 + cols, b2 = b1 + cols, b3 = b2 + cols;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0, s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let k = 0; k < cols; k++) {
        const x0 = a[a0 + k], x1 = a[a1 + k], x2 = a[a2 + k], x3 = a[a3 + k];
        const y0 = a[b0 + k], y1 = a[b1 + k], y2 = a[b2 + k], y3 = a[b3 + k];
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
        s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3;
        s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3;
      }
      const g0 = i0 * rows + j0, g1 = g0 + rows, g2 = g1 + rows, g3 = g2 + rows;
      g[g0] = s00; g[g0 + 1] = s01; g[g0 + 2] = s02; g[g0 + 3] = s03;
      g[g1] = s10; g[g1 + 1] = s11; g[g1 + 2] = s12; g[g1 + 3] = s13;
      g[g2] = s20; g[g2 + 1] = s21; g[g2 + 2] = s22; g[g2 + 3] = s23;
      g[g3] = s30; g[g3 + 1] = s31; g[g3 + 2] = s32; g[g3 + 3] = s33;
    }
    // the diagonal 4×4 tile's lower part was written above when j0 = i0; any rest of the row
    for (let i = i0; i < i0 + 4; i++) for (let j = j0; j <= i; j++) g[i * rows + j] = dot(i, j);
  }
  for (; i0 < rows; i0++) for (let j = 0; j <= i0; j++) g[i0 * rows + j] = dot(i0, j);
}

/** Σ a_i² over the array, computed in float64 (within γ_(length) of the exact sum). */
function sumSquares(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

/**
 * Work (multiply-adds) a resumable kernel (the …Steps generators below) does between two pauses: about a millisecond
 * here. The synchronous callers run them through without pausing (runSteps); denseSpectralNormBoundWith pauses, so
 * other work on the thread (another operator's Lanczos bookkeeping, answers from onnxruntime's worker) goes on between
 * the slices. A pause changes nothing in the arithmetic.
 */
const SLICE = 1 << 20;

/** Runs a resumable kernel to its end without pausing. */
function runSteps<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs a resumable kernel, letting the event loop run (setImmediate) at each of its pauses. */
async function runStepsYielding<T>(steps: Generator<void, T>): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** λ_max estimate of the symmetric m×m matrix g by Lanczos with full reorthogonalisation (approaches from below). */
function* lanczosSymmetricSteps(g: Float64Array, m: number, maxSteps: number): Generator<void, number> {
  let work = 0;
  const kmax = Math.min(m, maxSteps);
  const rng = new Random(LANCZOS_SEED);
  const basis: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  let v = rng.unitVector(m);
  let theta = 0;
  const history: number[] = [];
  for (let k = 0; k < kmax; k++) {
    basis.push(v);
    const w = new Float64Array(m);
    // four rows per pass over v: four independent sums (each row's still sequential in j, so the same bits)
    let r = 0;
    for (; r + 3 < m; r += 4) {
      const o0 = r * m, o1 = o0 + m, o2 = o1 + m, o3 = o2 + m;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let j = 0; j < m; j++) {
        const x = v[j];
        s0 += g[o0 + j] * x; s1 += g[o1 + j] * x; s2 += g[o2 + j] * x; s3 += g[o3 + j] * x;
      }
      w[r] = s0; w[r + 1] = s1; w[r + 2] = s2; w[r + 3] = s3;
    }
    for (; r < m; r++) {
      let s = 0;
      const o = r * m;
      for (let j = 0; j < m; j++) s += g[o + j] * v[j];
      w[r] = s;
    }
    let a = 0;
    for (let i = 0; i < m; i++) a += w[i] * v[i];
    alpha.push(a);
    for (let pass = 0; pass < 2; pass++) {
      for (const q of basis) {
        let c = 0;
        for (let i = 0; i < m; i++) c += w[i] * q[i];
        for (let i = 0; i < m; i++) w[i] -= c * q[i];
      }
    }
    let nb = 0;
    for (let i = 0; i < m; i++) nb += w[i] * w[i];
    nb = Math.sqrt(nb);
    theta = tridiagonalLargestEigenvalue(alpha, beta, k + 1);
    history.push(theta);
    const h = history.length;
    if (nb <= 8 * U * Math.abs(theta) || nb === 0) break;
    if (h >= 3 && Math.abs(theta - history[h - 3]) <= 2 * U * Math.abs(theta)) break;
    beta.push(nb);
    v = w;
    for (let i = 0; i < m; i++) v[i] /= nb;
    work += m * (m + 4 * basis.length);
    if (work >= SLICE) { work = 0; yield; }
  }
  return theta;
}

/**
 * Certified λ_max(g) ≤ returned value if floating-point Cholesky of fl(s·I − g) runs to completion, else null.
 * Rump (BIT 46, 2006, Lemma 2.1) with Higham (2002, Thm 10.3, which holds for any order of the inner products, so
 * for the row-oriented form used here too): completion gives L̂L̂ᵀ = A + ΔA, |ΔA| ≤ γ_{m+1}|L̂||L̂ᵀ|,
 * so ‖ΔA‖₂ ≤ γ_{m+1}‖L̂‖_F² ≤ γ_{m+1}/(1−γ_{m+1})·tr(A); A + ΔA ⪰ 0 then gives λ_min(A) ≥ −that. The computed diagonal
 * A_ii = fl(s − g_ii) differs from s − g_ii by ≤ u·|A_ii|/(1−u). Hence λ_max(g) ≤ s + γ/(1−γ)·tr(A) + 2u·max|A_ii|.
 */
function choleskyCertify(g: Float64Array, m: number, s: number): number | null {
  return runSteps(choleskySteps(g, m, s));
}

function* choleskySteps(g: Float64Array, m: number, s: number): Generator<void, number | null> {
  let work = 0;
  const l = new Float64Array(m * m);
  let trace = 0;
  let maxDiag = 0;
  // Rows go in fours so that each earlier row of L, streamed from memory, serves four inner products (four independent
  // sums). Every entry is still (−g_rc − Σ_{k<c} l_rk·l_ck, in increasing k) / l_cc, and the pivots are taken in row
  // order: the blocking changes no operation.
  for (let i = 0; i < m; i += 4) {
    const rows = Math.min(4, m - i);
    const o0 = i * m, o1 = o0 + m, o2 = o1 + m, o3 = o2 + m;
    for (let j = 0; j < i; j++) {
      const oj = j * m;
      const d = l[oj + j];
      if (rows === 4) {
        let a0 = -g[o0 + j], a1 = -g[o1 + j], a2 = -g[o2 + j], a3 = -g[o3 + j];
        for (let k = 0; k < j; k++) {
          const x = l[oj + k];
          a0 -= l[o0 + k] * x;
          a1 -= l[o1 + k] * x;
          a2 -= l[o2 + k] * x;
          a3 -= l[o3 + k] * x;
        }
        l[o0 + j] = a0 / d;
        l[o1 + j] = a1 / d;
        l[o2 + j] = a2 / d;
        l[o3 + j] = a3 / d;
      } else {
        for (let r = i; r < i + rows; r++) {
          const or = r * m;
          let a = -g[or + j];
          for (let k = 0; k < j; k++) a -= l[or + k] * l[oj + k];
          l[or + j] = a / d;
        }
      }
    }
    // inside the block: row by row, its entries left of the diagonal, then its pivot
    for (let r = i; r < i + rows; r++) {
      const or = r * m;
      for (let c = i; c < r; c++) {
        const oc = c * m;
        let acc = -g[or + c];
        for (let k = 0; k < c; k++) acc -= l[or + k] * l[oc + k];
        l[or + c] = acc / l[oc + c];
      }
      const a = s - g[or + r];
      trace += a;
      maxDiag = Math.max(maxDiag, Math.abs(a));
      let piv = a;
      for (let k = 0; k < r; k++) piv -= l[or + k] * l[or + k];
      if (!(piv > 0)) return null;
      l[or + r] = Math.sqrt(piv);
    }
    work += 2 * i * i + 1;
    if (work >= SLICE) { work = 0; yield; }
  }
  const gm = gamma(m + 1);
  const traceUp = roundUp(Math.max(trace, 0), m + 1);
  return roundUp(s + roundUp((gm / (1 - gm)) * traceUp, 3) + 2 * U * maxDiag + UNDERFLOW_SLACK, 4);
}

/**
 * The certified λ_max bound from the smallest shift s that `certify` accepts, for a lower estimate `lower` of λ_max of a
 * PSD matrix (a Ritz value, or trace/m when that is larger, so λ_max ≤ m·lower): shifts lower·(1+ρ) with ρ = ρ0·16^j
 * until one is accepted (16 tries reach ρ > m); if that took a coarse ρ (Lanczos missed the top of the spectrum), up
 * to 10 bisection steps between the last rejected and the accepted shift tighten it. Null if none is accepted.
 */
export function certifyByShift(lower: number, rho0: number, certify: (s: number) => number | null): { upper: number; shift: number } | null {
  return runSteps(certifyByShiftSteps(lower, rho0, function* (s) { return certify(s); }));
}

function* certifyByShiftSteps(lower: number, rho0: number, certify: (s: number) => Generator<void, number | null>): Generator<void, { upper: number; shift: number } | null> {
  let rho = rho0;
  let lo = lower;
  for (let attempt = 0; attempt < 16; attempt++, rho *= 16) {
    let hi = roundUp(lower * (1 + rho), 2) + UNDERFLOW_SLACK;
    let upper = yield* certify(hi);
    if (upper === null) {
      lo = hi;
      continue;
    }
    for (let step = 0; step < 10 && hi - lo > 1e-9 * hi; step++) {
      const mid = lo + 0.5 * (hi - lo);
      const tried = yield* certify(mid);
      if (tried === null) lo = mid;
      else {
        hi = mid;
        upper = tried;
      }
    }
    return { upper, shift: hi };
  }
  return null;
}

/** Trace of the m×m matrix g divided by m: a lower bound on λ_max when g is PSD (up to rounding). */
export function meanDiagonal(g: Float64Array, m: number): number {
  let t = 0;
  for (let i = 0; i < m; i++) t += g[i * m + i];
  return t / m;
}

/** A work budget being spent (flop counted by the cost model, never a clock), and what to name in the error. */
interface Budget {
  limit: number;
  spent: number;
  what: string;
}

/** Counts `flop` more work and throws once the count passes the budget. */
function charge(budget: Budget | undefined, flop: number): void {
  if (budget === undefined) return;
  budget.spent += flop;
  if (budget.spent > budget.limit) {
    throw new BudgetExceededError(
      `A certified spectral norm of ${budget.what} ran past its work budget of ${formatMflop(budget.limit)} Mflop; use a probabilistic bound or raise --certify-work.`,
      budget.spent,
      budget.limit,
    );
  }
}

/** Factorisations of one certifyByShift search that succeeds at its first shift: the first, and up to 10 bisection steps. */
export const SHIFT_SEARCH = 11;

/** Certified λ_max bound of the symmetric PSD m×m matrix g (Lanczos estimate, Cholesky certificate); null if none succeeds. */
function* certifiedLambdaMax(g: Float64Array, m: number, budget?: Budget): Generator<void, { upper: number; estimate: number } | null> {
  const theta = Math.max(yield* lanczosSymmetricSteps(g, m, 300), 0);
  // the prediction covers one shift search (a first shift and up to 10 bisection steps: SHIFT_SEARCH factorisations,
  // together about one full factorisation's time as measured); each factorisation beyond it is counted
  let attempts = 0;
  const cert = yield* certifyByShiftSteps(Math.max(theta, meanDiagonal(g, m)), 4 * (m + 1) * U, function* (s) {
    if (attempts++ >= SHIFT_SEARCH) charge(budget, (m * m * m) / 3);
    return yield* choleskySteps(g, m, s);
  });
  return cert === null ? null : { upper: cert.upper, estimate: theta };
}

/**
 * Certified upper bound on σ_max(W) (ℓ2 operator norm) of a dense matrix, exact to about m²·u relative: the largest
 * eigenvalue of the smaller Gram matrix in float64, certified by Cholesky (ALGORITHMS.md §2, "small dense matrices";
 * Rump, BIT 2006).
 *
 * Margin, derived. Scale W by a power of two (exact). With m = min(rows, cols), n = max(rows, cols) and G the m×m
 * Gram matrix, the computed Ĝ = fl(G) obeys |Ĝ − G| ≤ γ_n|W|ᵀ|W| entrywise (Higham 2002, §3.5), so by Weyl
 * λ_max(G) ≤ λ_max(Ĝ) + γ_n‖|W|‖₂² ≤ λ_max(Ĝ) + γ_n‖W‖_F². λ_max(Ĝ) is bounded, not estimated: a Lanczos estimate θ is
 * shifted to s = θ(1+ρ) and floating-point Cholesky of s·I − Ĝ running to completion proves
 * λ_max(Ĝ) ≤ s + γ_{m+1}/(1−γ_{m+1})·tr(sI − Ĝ) + 2u·max_i|s − ĝ_ii| (see choleskyCertify). So
 * σ_max(W) ≤ sqrt(that + γ_n‖W‖_F²), every step rounded upward: about (m²/2 + n·rank/2)·u relative at worst,
 * 1.3e-10 for m = n = 1500. This is a guarantee, unlike a margin c·max(rows, cols)·u·‖W‖ resting on an unstated
 * constant c of an SVD's backward error. Should no certificate succeed (it has not happened in tests) the Gram
 * iteration bound is returned instead, itself certified.
 */
export function denseSpectralNormExact(w: RealMatrix, rows: number, cols: number): NormBound {
  checkShape(w, rows, cols, 'denseSpectralNormExact');
  return exactBound(w, rows, cols);
}

/** exactBound's scaled smaller-side matrix (m×n, row-major, largest entry in [1/2, 1)), or the answer when it needs no Gram. */
type ExactSetup = { done: NormBound } | { done: null; a: Float64Array; m: number; n: number; shift: number; sum2: number; frob2: number };

function exactSetup(w: RealMatrix, rows: number, cols: number): ExactSetup {
  const maxAbs = maxAbsFinite(w, 'The matrix');
  if (maxAbs === 0) return { done: { value: 0, estimate: 0, method: 'exact-eig' } };
  const m = Math.min(rows, cols);
  const n = Math.max(rows, cols);
  const { a, shift } = scaledCopy(w, rows, cols, cols < rows, maxAbs);
  const sum2 = sumSquares(a);
  const frob2 = roundUp(sum2, a.length);
  if (m === 1) {
    return { done: { value: unscaleUp(sqrtUp(roundUp(frob2 + UNDERFLOW_SLACK, 1)), shift), estimate: Math.sqrt(sum2) * 2 ** -shift, method: 'exact-eig' } };
  }
  return { done: null, a, m, n, shift, sum2, frob2 };
}

/** exactBound from the float64 Gram matrix g of the setup's matrix (any float64 evaluation order of its entries). */
function* exactFinish(s: Exclude<ExactSetup, { done: NormBound }>, g: Float64Array, budget?: Budget): Generator<void, NormBound> {
  const { m, n, shift, frob2 } = s;
  const cert = yield* certifiedLambdaMax(g, m, budget);
  if (cert === null) return gramIterationFromGram(g, m, n, frob2, shift, 10);
  const lambda = roundUp(cert.upper + roundUp(gamma(n) * frob2, 2), 2);
  return { value: unscaleUp(sqrtUp(lambda), shift), estimate: Math.sqrt(cert.estimate) * 2 ** -shift, method: 'exact-eig' };
}

function exactBound(w: RealMatrix, rows: number, cols: number, budget?: Budget): NormBound {
  const s = exactSetup(w, rows, cols);
  return s.done ?? runSteps(exactFinish(s, gramRows(s.a, s.m, s.n), budget));
}

/**
 * Certified upper bound on σ_max(W) by Gram iteration (Delattre, Barthélemy, Araujo & Allauzen, ICML 2023):
 * σ_max(W) ≤ ‖G_t‖_F^(1/2^t) with G_0 = W, G_{t+1} = G_tᵀG_t; `steps` counts the squarings (default 10).
 *
 * Margin, derived. We start from the smaller Gram matrix X_0 = fl(G_1) and square the symmetric X_t; each X_t is
 * rescaled by an exact power of two 2^(−k_t) so that ‖X_t‖_F ≈ 1 (no overflow), the k_t kept. A float64 product of
 * inner dimension p has |fl(AB) − AB| ≤ γ_p|A||B|, so ‖fl(X²) − X²‖₂ ≤ γ_p‖X‖_F² =: e_t and, by Weyl,
 * σ_max(X_{t−1})² ≤ 2^(k_t)·σ_max(X_t) + e_t (for X_0: σ_max(W)² ≤ 2^(k_0)σ_max(X_0) + γ_n‖W‖_F²). Starting from
 * b_T = ‖X_T‖_F (upward) and unwinding b_{t−1} = sqrt(2^(k_t)·b_t + e_t) with upward rounding gives a guaranteed bound.
 * Each e_t is ≤ γ_p·rank relative to σ_max(X_{t−1})² and is halved by every root after it, so the margin stays about
 * γ_n·rank/2 relative however many steps are run. Stops early once a step no longer lowers the bound.
 */
export function denseSpectralNormGram(w: RealMatrix, rows: number, cols: number, steps = 10): NormBound {
  checkShape(w, rows, cols, 'denseSpectralNormGram');
  if (!Number.isInteger(steps) || steps < 1) {
    throw new LipcheckError('INTERNAL', `denseSpectralNormGram: steps must be a positive integer, got ${steps}.`);
  }
  const maxAbs = maxAbsFinite(w, 'The matrix');
  if (maxAbs === 0) return { value: 0, estimate: 0, method: 'gram-iteration' };
  const m = Math.min(rows, cols);
  const n = Math.max(rows, cols);
  const { a, shift } = scaledCopy(w, rows, cols, cols < rows, maxAbs);
  const frob2 = roundUp(sumSquares(a), a.length);
  return gramIterationFromGram(gramRows(a, m, n), m, n, frob2, shift, steps);
}

function gramIterationFromGram(g0: Float64Array, m: number, n: number, frob2: number, shift: number, steps: number): NormBound {
  const unscale = 2 ** -shift;
  const ks: number[] = [];
  const es: number[] = [roundUp(gamma(n) * frob2, 2) + UNDERFLOW_SLACK];
  let x = g0;
  let best = Infinity;
  let bestEstimate = Infinity;
  for (let t = 0; ; t++) {
    let f2 = 0;
    for (let i = 0; i < x.length; i++) f2 += x[i] * x[i];
    const k = f2 > 0 ? exponentOf(Math.sqrt(f2)) : 0;
    const scale = 2 ** -k;
    for (let i = 0; i < x.length; i++) x[i] *= scale;
    ks.push(k);
    const xf2 = roundUp(f2 * scale * scale, x.length + 2);
    let b = sqrtUp(xf2);
    let est = Math.sqrt(f2) * scale;
    for (let s = t; s >= 0; s--) {
      b = sqrtUp(roundUp(2 ** ks[s] * b + es[s], 1));
      est = Math.sqrt(2 ** ks[s] * est);
    }
    if (b >= best * (1 - 4 * U)) break;
    best = b;
    bestEstimate = est;
    if (t + 1 >= steps || xf2 === 0) break;
    es.push(roundUp(gamma(m) * xf2, 2) + UNDERFLOW_SLACK);
    x = gramRows(x, m, m);
  }
  return { value: unscaleUp(best, shift), estimate: bestEstimate * unscale, method: 'gram-iteration' };
}

/**
 * Measured on this machine (2 cores, shared with other work at load average 3 to 4, so ranges; Node 20, one thread),
 * square random W, certified bound: exact-eig 500: 0.12–0.34 s, 1000: 0.64–0.98 s, 1500: 2.5–4.1 s, 2000: 5.9–8.3 s;
 * gram-iteration (10 steps, stopping early) 500: 0.40–0.75 s, 1000: 3.0–6.3 s, 1500: 13–18.5 s. The exact path costs
 * the Gram product plus Lanczos and a Cholesky (m²n/2 + m³/6 multiply-adds); Gram iteration costs the same Gram product
 * plus an m³/2 product per step. So there is no crossover: exact-eig is the cheaper certified method at every size,
 * and Gram iteration is only the fallback should no Cholesky certificate succeed. About 1e6 multiply-adds per ms were
 * seen here (2e6 flop/ms): the default budgets in flop were set from that rate.
 */
export function denseCertificateFlop(rows: number, cols: number): number {
  const m = Math.min(rows, cols);
  const n = Math.max(rows, cols);
  return 2 * (0.5 * m * m * n + (m * m * m) / 6 + 100 * m * m);
}

/** Default work budget of one certificate when the caller names none: 28 000 Mflop (about 20 s at the rate above). */
export const DEFAULT_CERTIFICATE_FLOP = 2.8e10;

/**
 * Certified upper bound on σ_max(W) by the cheapest certified method (ALGORITHMS.md §2); throws BudgetExceededError when
 * its counted work (the Gram product, Lanczos and one Cholesky factorisation up front, each further factorisation as it
 * runs beyond one shift search) would pass `budgetFlop` (default DEFAULT_CERTIFICATE_FLOP). The same matrix and budget always give the same outcome.
 */
export function denseSpectralNormBound(w: RealMatrix, rows: number, cols: number, opts: { budgetFlop?: number } = {}): NormBound {
  checkShape(w, rows, cols, 'denseSpectralNormBound');
  return exactBound(w, rows, cols, chargeUpFront(rows, cols, opts.budgetFlop));
}

/** The budget of one certificate with its predicted work (denseCertificateFlop) charged; throws when that passes it. */
function chargeUpFront(rows: number, cols: number, budgetFlop?: number): Budget {
  const budget: Budget = { limit: budgetFlop ?? DEFAULT_CERTIFICATE_FLOP, spent: 0, what: `the ${rows}×${cols} matrix` };
  const predicted = denseCertificateFlop(rows, cols);
  if (predicted > budget.limit) {
    throw new BudgetExceededError(
      `A certified spectral norm of ${budget.what} would take about ${formatMflop(predicted)} Mflop, over its work budget of ${formatMflop(budget.limit)} Mflop; use a probabilistic bound or raise --certify-work.`,
      predicted,
      budget.limit,
    );
  }
  budget.spent = predicted;
  return budget;
}

/**
 * A float64 kernel for the Gram matrix A·Aᵀ of a row-major m×n float64 matrix A (m ≤ n), e.g. onnxruntime's float64
 * Gemm (OperatorBackend.denseGram). Its contract, all the certificate relies on: every entry is a float64 evaluation
 * of the dot product ⟨a_i, a_j⟩ in some order of summation, with or without fused multiply-adds, so
 * |Ĝ − G| ≤ γ_n·|A||A|ᵀ entrywise (Higham 2002, §3.1, which holds for any order and only tightens with FMAs). Null:
 * no kernel for this size (the JS product is used). `handOver`: the caller gives `a` up, so the kernel may move its
 * buffer elsewhere (to a worker thread) instead of copying it; `a` is left as it was when the kernel returns null.
 */
export type GramKernel = (a: Float64Array, m: number, n: number, handOver?: boolean) => Promise<Float64Array | null>;

/**
 * denseSpectralNormBound with the Gram product done by `gram` where one is given (a faster kernel: the product is
 * m²n of the m²n/2 + m³/6 multiply-adds). Same margin and proof: the kernel's contract gives the same entrywise error
 * bound as the JS product; the lower triangle (what the Cholesky certificate reads) is mirrored to make it exactly
 * symmetric, and a result of the wrong size or with a non-finite entry is refused. Same budget rule. The Lanczos
 * estimate and the Cholesky certificate run in slices of about a millisecond (SLICE), giving the thread back between
 * them: the same arithmetic, so the same numbers.
 */
export async function denseSpectralNormBoundWith(w: RealMatrix, rows: number, cols: number, opts: { budgetFlop?: number; gram?: GramKernel } = {}): Promise<NormBound> {
  checkShape(w, rows, cols, 'denseSpectralNormBound');
  const budget = chargeUpFront(rows, cols, opts.budgetFlop);
  const s = exactSetup(w, rows, cols);
  if (s.done) return s.done;
  // s.a is this function's own scaled copy: handed over (exactFinish does not read it)
  const fast = opts.gram ? await opts.gram(s.a, s.m, s.n, true) : null;
  let g: Float64Array;
  if (fast) {
    if (fast.length !== s.m * s.m) throw new LipcheckError('INTERNAL', `The Gram kernel returned ${fast.length} values for a ${s.m}×${s.m} Gram matrix.`);
    for (let r = 0; r < s.m; r++) {
      for (let c = 0; c <= r; c++) {
        const x = fast[r * s.m + c];
        if (!Number.isFinite(x)) throw new LipcheckError('INTERNAL', `The Gram kernel returned a non-finite entry (${x}) for a finite ${rows}×${cols} matrix.`);
        fast[c * s.m + r] = x;
      }
    }
    g = fast;
  } else g = gramRows(s.a, s.m, s.n);
  // in slices: the thread stays free for other work between them (runStepsYielding)
  return runStepsYielding(exactFinish(s, g, budget));
}

/** The transpose of a rows×cols row-major matrix (exact: entries are only moved). */
export function transpose(w: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

/** Exact ℓ∞ operator norm of W (max row sum of |w_ij|), rounded upward: certified (ALGORITHMS.md §2). */
export function denseInfNorm(w: RealMatrix, rows: number, cols: number): number {
  checkShape(w, rows, cols, 'denseInfNorm');
  maxAbsFinite(w, 'The matrix');
  let best = 0;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) s += Math.abs(w[o + c]);
    if (s > best) best = s;
  }
  return roundUp(best, cols);
}
