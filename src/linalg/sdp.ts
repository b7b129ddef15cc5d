import { LipcheckError } from '../errors.js';
import { gamma, roundUp, sqrtUp, tridiagonalLargestEigenvalue, UNDERFLOW_SLACK, UNIT_ROUNDOFF, unscaleUp } from './dense.js';
import { HeapArrays } from './lanczos-kernels.js';

const U = UNIT_ROUNDOFF;

/** One affine layer of a LipSDP problem: its linear part W (rows×cols, row-major, float64); biases cancel in differences. */
export interface LmiLayer {
  readonly w: Float64Array;
  readonly rows: number;
  readonly cols: number;
}

/**
 * The network y = W_l φ_l(⋯ φ_1(W_0 x)) of a LipSDP problem (docs/algorithms-sdp.md): `layers` W_0..W_l, and for each of
 * the l hidden layers the slope range [α_h, β_h] shared by its units (slopes[h−1] for the units after W_{h−1}).
 */
export interface LipSdpProblem {
  readonly layers: readonly LmiLayer[];
  readonly slopes: readonly (readonly [number, number])[];
}

/** LipSDP-Neuron: one multiplier per hidden unit; LipSDP-Layer: one per hidden layer. */
export type LipSdpVariant = 'neuron' | 'layer';

/** A point (ρ, t) of the LMI: t has one entry per hidden unit (for LipSDP-Layer, equal within each layer). */
export interface LmiPoint {
  readonly rho: number;
  readonly t: Float64Array;
}

/** What the barrier method returned: an approximately optimal point and the centred points it passed, last first. */
export interface LipSdpSolution {
  readonly point: LmiPoint;
  /** Centred iterates, the last (tightest) first: the certificate tries them in order. */
  readonly path: readonly LmiPoint[];
  readonly newtonSteps: number;
  /** Multiply-adds spent (the work unit of every budget here). */
  readonly work: number;
  /** True when the duality-gap bound ν/τ fell below relTol·ρ; false when the work budget stopped it first. */
  readonly converged: boolean;
}

/** Throws unless the problem's shapes chain, its weights are finite and its slope ranges are intervals. */
export function checkProblem(p: LipSdpProblem): void {
  const l = p.layers.length - 1;
  if (l < 1 || p.slopes.length !== l) throw new LipcheckError('INTERNAL', `A LipSDP problem needs at least two layers and one slope range per hidden layer; got ${p.layers.length} layers and ${p.slopes.length} slope ranges.`);
  for (let k = 0; k < p.layers.length; k++) {
    const w = p.layers[k];
    if (w.w.length !== w.rows * w.cols) throw new LipcheckError('INTERNAL', `LipSDP layer ${k}: a ${w.rows}×${w.cols} matrix needs ${w.rows * w.cols} values, got ${w.w.length}.`);
    if (k > 0 && w.cols !== p.layers[k - 1].rows) throw new LipcheckError('INTERNAL', `LipSDP layer ${k} reads ${w.cols} values but layer ${k - 1} produces ${p.layers[k - 1].rows}.`);
    for (let i = 0; i < w.w.length; i++) if (!Number.isFinite(w.w[i])) throw new LipcheckError('UNSUPPORTED', `LipSDP layer ${k} has a non-finite weight ${w.w[i]} at index ${i}; no finite bound exists. Fix or remove that weight.`);
  }
  for (const [a, b] of p.slopes) if (!(Number.isFinite(a) && Number.isFinite(b) && a <= b)) throw new LipcheckError('INTERNAL', `LipSDP slope range [${a}, ${b}] is not a finite interval.`);
}

/** Block sizes n_0, n_1, …, n_l of the LMI's variable (input, then each hidden layer), their offsets, and the unit count. */
function blocks(p: LipSdpProblem): { sizes: number[]; offsets: number[]; n: number; units: number } {
  const sizes = [p.layers[0].cols, ...p.layers.slice(0, -1).map((w) => w.rows)];
  const offsets: number[] = [];
  let n = 0;
  for (const s of sizes) { offsets.push(n); n += s; }
  return { sizes, offsets, n, units: n - sizes[0] };
}

/**
 * F(ρ, t) = −M(ρ, t), N×N row-major (N = n_0 + Σ n_h), formed in float64 (docs/algorithms-sdp.md §1):
 * F = ρ·E_00 − E_llᵀ W_lᵀW_l E_ll + Σ_h [2α_hβ_h W_{h−1}ᵀT_hW_{h−1} on block (h−1,h−1), −(α_h+β_h)W_{h−1}ᵀT_h on
 * (h−1,h) and its transpose, 2T_h on (h,h)]. Also returns absF, an upper bound on ‖|F|_abs‖_F where |F|_abs is F with
 * every term of every entry replaced by its absolute value, and p, the most terms any entry sums.
 */
export function formLmi(p: LipSdpProblem, point: LmiPoint): { f: Float64Array; n: number; absF: number; terms: number } {
  const { sizes, offsets, n } = blocks(p);
  const f = new Float64Array(n * n);
  const l = p.layers.length - 1;
  for (let i = 0; i < sizes[0]; i++) f[i * n + i] = point.rho;
  let absF = Math.abs(point.rho) * Math.sqrt(sizes[0]);
  let terms = 2;
  let unit = 0;
  for (let h = 1; h <= l; h++) {
    const w = p.layers[h - 1], [alpha, beta] = p.slopes[h - 1];
    const pq = 2 * alpha * beta, q = -(alpha + beta);
    const o0 = offsets[h - 1], o1 = offsets[h], n0 = sizes[h - 1];
    let tw2 = 0, t2 = 0, tw = 0;
    for (let r = 0; r < w.rows; r++) {
      const t = point.t[unit + r];
      const row = r * w.cols;
      f[(o1 + r) * n + o1 + r] += 2 * t;
      t2 += t * t;
      let rn = 0;
      for (let c = 0; c < n0; c++) {
        const v = w.w[row + c];
        rn += v * v;
        const x = q * t * v;
        f[(o0 + c) * n + o1 + r] = x;
        f[(o1 + r) * n + o0 + c] = x;
        if (pq !== 0 && v !== 0) {
          const s = pq * t * v;
          const fo = (o0 + c) * n + o0;
          for (let d = 0; d <= c; d++) f[fo + d] += s * w.w[row + d];
        }
      }
      tw2 += Math.abs(t) * rn;
      tw += t * t * rn;
    }
    absF += Math.abs(pq) * tw2 + Math.SQRT2 * Math.abs(q) * Math.sqrt(tw) + 2 * Math.sqrt(t2);
    terms = Math.max(terms, w.rows + 3);
    unit += w.rows;
  }
  const last = p.layers[l], ol = offsets[l];
  let wl2 = 0;
  for (let r = 0; r < last.rows; r++) {
    const row = r * last.cols;
    for (let c = 0; c < last.cols; c++) {
      const v = last.w[row + c];
      wl2 += v * v;
      if (v === 0) continue;
      const fo = (ol + c) * n + ol;
      for (let d = 0; d <= c; d++) f[fo + d] -= v * last.w[row + d];
    }
  }
  absF += wl2;
  terms = Math.max(terms, last.rows + 3);
  // the quadratic terms filled the lower triangles of the diagonal blocks: mirror them
  for (let h = 0; h <= l; h++) {
    const o = offsets[h], s = sizes[h];
    for (let i = 0; i < s; i++) for (let j = 0; j < i; j++) f[(o + j) * n + o + i] = f[(o + i) * n + o + j];
  }
  return { f, n, absF: roundUp(absF, 4 * n + 8), terms: terms + 6 };
}

/** In-place row-oriented Cholesky of the lower triangle of a (N×N, row-major); returns log det, or null when a pivot is not positive. */
export function cholesky(a: Float64Array, n: number): number | null {
  let logdet = 0;
  for (let i = 0; i < n; i++) {
    const oi = i * n;
    for (let j = 0; j < i; j++) {
      const oj = j * n;
      let acc = a[oi + j];
      for (let k = 0; k < j; k++) acc -= a[oi + k] * a[oj + k];
      a[oi + j] = acc / a[oj + j];
    }
    let piv = a[oi + i];
    for (let k = 0; k < i; k++) piv -= a[oi + k] * a[oi + k];
    if (!(piv > 0)) return null;
    a[oi + i] = Math.sqrt(piv);
    logdet += Math.log(piv);
  }
  return logdet;
}

/** L⁻¹ (lower triangular, r×r) from the Cholesky factor in the lower triangle of l. */
export function lowerInverse(l: Float64Array, r: number): Float64Array {
  const x = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    const oi = i * r;
    for (let k = 0; k < i; k++) {
      const c = l[oi + k];
      if (c === 0) continue;
      const ok = k * r;
      for (let j = 0; j <= k; j++) x[oi + j] -= c * x[ok + j];
    }
    const dd = 1 / l[oi + i];
    for (let j = 0; j < i; j++) x[oi + j] *= dd;
    x[oi + i] = dd;
  }
  return x;
}

/** S = (LLᵀ)^{-1} from the Cholesky factor in the lower triangle of l; returns the full symmetric S. */
function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const x = lowerInverse(l, n); // X = L^{-1}, lower triangular, row by row
  const s = new Float64Array(n * n); // S = XᵀX: Σ_k outer products of the rows of X
  for (let k = 0; k < n; k++) {
    const ok = k * n;
    for (let i = 0; i <= k; i++) {
      const v = x[ok + i];
      if (v === 0) continue;
      const oi = i * n;
      for (let j = 0; j <= i; j++) s[oi + j] += v * x[ok + j];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) s[j * n + i] = s[i * n + j];
  return s;
}

/**
 * The multiply-adds of one iteration of solveLipSdp (the primal–dual method), counted from what it computes: F and the
 * two direction matrices (Σ n_h n_{h−1}² + N² each), Cholesky factors of the new Z and X (N³/6 each) and S = Z⁻¹ (N³/3), the
 * products S·a_j and X·a_j (2N·Σ n_h n_{h−1}), the Schur complement's pairs a_jᵀSa_k, a_jᵀXa_k (2Σ_j n_{h_j−1}(j+1)) and
 * 2×2 blocks (20m²), its Cholesky factor (k³/6, k = #variables + 1), S·dZ twice (N·nnz of the block tridiagonal pattern
 * each), three dense N×N products (S·dZ·X twice, S·dZ_p·dX_p), four Lanczos runs of LANCZOS_STEPS steps (2N² + 2·steps·N
 * each) for the step lengths; a shortened step's further factorisations are charged as they happen.
 */
export function lipSdpStepWork(p: LipSdpProblem): number {
  const { n, units, sizes } = blocks(p);
  let pairs = 0, formed = 0, schur = 0, nnz = 0;
  for (let h = 1; h < p.layers.length; h++) {
    const w = p.layers[h - 1];
    pairs += w.rows * w.cols;
    formed += w.rows * w.cols ** 2;
    schur += w.cols * (w.rows * (w.rows + 1) / 2 + w.rows * (sizes.slice(1, h).reduce((a, b) => a + b, 0)));
  }
  for (let b = 0; b < sizes.length; b++) nnz += sizes[b] * ((sizes[b - 1] ?? 0) + sizes[b] + (sizes[b + 1] ?? 0));
  const k = units + 1, lz = Math.min(n, LANCZOS_STEPS);
  return 3 * (formed + n * n) + (2 * n ** 3) / 6 + n ** 3 / 3 + 2 * n * pairs + 2 * schur + 20 * units * units + k ** 3 / 6 + 2 * n * nnz + 3 * n ** 3 + 4 * lz * (2 * n * n + 2 * lz * n);
}

/** A hard cap on iterations, whatever the work budget. */
const MAX_ITERATIONS = 200;

/** Lanczos steps per step-length estimate (λ_min of L⁻¹·dX·L⁻ᵀ; the estimate is checked by a Cholesky factorisation). */
const LANCZOS_STEPS = 24;

/**
 * The input block reduced to rank: when n_0 > n_1, W_0 = R·Qᵀ with Q orthonormal and R = chol(W_0W_0ᵀ) (n_1×n_1), and
 * in the basis [Q, Q⊥] the LMI splits into the same LMI with R in place of W_0, and −ρI (docs/algorithms-sdp.md §3). The
 * multipliers solved for with R are multipliers of the full LMI; the certificate always checks the full one. A small
 * ridge keeps a rank-deficient W_0W_0ᵀ factorable (the solve is approximate anyway).
 */
export function reduceInput(p: LipSdpProblem): LipSdpProblem {
  const w0 = p.layers[0];
  if (w0.cols <= w0.rows) return p;
  const m = w0.rows;
  const g = new Float64Array(m * m);
  let tr = 0;
  for (let i = 0; i < m; i++) for (let j = 0; j <= i; j++) {
    let s = 0;
    for (let c = 0; c < w0.cols; c++) s += w0.w[i * w0.cols + c] * w0.w[j * w0.cols + c];
    g[i * m + j] = s;
    if (i === j) tr += s;
  }
  for (let ridge = 1e-12 * (tr / m || 1); ; ridge *= 100) {
    const a = Float64Array.from(g);
    for (let i = 0; i < m; i++) a[i * m + i] += ridge;
    if (cholesky(a, m) !== null) {
      for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) a[i * m + j] = 0;
      return { layers: [{ w: a, rows: m, cols: m }, ...p.layers.slice(1)], slopes: p.slopes };
    }
  }
}

/**
 * A unit with slope range [α, α] is linear: its constraint matrix D_j is PSD, so t_j → ∞ only helps and the barrier is
 * unbounded below. For the solve, such ranges are widened to [α − η, α + η] with η = 1e-5·max(|α|, 1). That only
 * weakens each constraint: q_wide = q + 2η²v² ≥ q, so M_true(ρ, t) ⪯ M_wide(ρ, t) and any t the solver finds for the
 * wide problem stays valid for the true one, which is what the certificate checks.
 */
function widenLinear(p: LipSdpProblem): LipSdpProblem {
  if (!p.slopes.some(([a, b]) => b - a < 1e-6 * Math.max(Math.abs(a), 1))) return p;
  return { layers: p.layers, slopes: p.slopes.map(([a, b]) => {
    const eta = 1e-5 * Math.max(Math.abs(a), 1);
    return b - a < 1e-6 * Math.max(Math.abs(a), 1) ? [a - eta, b + eta] as const : [a, b] as const;
  }) };
}

/** An estimate of ‖W‖₂ by 30 power steps (only to place a solver's starting point). */
function normEstimate(w: LmiLayer): number {
  let x = new Float64Array(w.cols).fill(1 / Math.sqrt(w.cols));
  let sigma = 0;
  for (let it = 0; it < 30; it++) {
    const y = new Float64Array(w.rows);
    for (let r = 0; r < w.rows; r++) { let s = 0; for (let c = 0; c < w.cols; c++) s += w.w[r * w.cols + c] * x[c]; y[r] = s; }
    const z = new Float64Array(w.cols);
    for (let r = 0; r < w.rows; r++) { const v = y[r]; if (v !== 0) for (let c = 0; c < w.cols; c++) z[c] += w.w[r * w.cols + c] * v; }
    let zn = 0;
    for (let c = 0; c < w.cols; c++) zn += z[c] * z[c];
    zn = Math.sqrt(zn);
    if (zn === 0) return 0;
    sigma = Math.sqrt(zn);
    x = z.map((v) => v / zn);
  }
  return sigma;
}

/**
 * A strictly feasible start with T_h = τ_h·I: for ‖x_h − c v_h‖² ≥ ½‖x_h‖² − c²‖v_h‖² (c, r the midpoint and radius of
 * the slope range), F's quadratic form is ≥ Σ_h τ_h‖x_h‖² − 2τ_{h}(c_h²+r_h²)‖W_{h−1}x_{h−1}‖² − ‖W_lx_l‖² + ρ‖x_0‖²,
 * positive when τ_l > ‖W_l‖², τ_h > 2τ_{h+1}(c²+r²)‖W_h‖², ρ > 2τ_1(c²+r²)‖W_0‖²; margins of 2 (doubled until the
 * Cholesky factorisation confirms it, as the norms are estimates).
 */
function startPoint(p: LipSdpProblem, variant: LipSdpVariant): { rho: number; lambda: Float64Array } {
  return diagonalStart(p, 1e6, (rho, lambda, t) => {
    const { f, n } = formLmi(p, { rho, t });
    return cholesky(f, n) !== null ? { rho, lambda: variant === 'layer' ? lambda : t } : null;
  });
}

/**
 * startPoint's candidates (ρ = τ_0, per-layer τ_h and their per-unit t) for margins 2, 8, 32, … below `maxMargin`, until
 * `accept` takes one (a factorisation confirming strict feasibility); sdp-structured.ts's start too.
 */
export function diagonalStart<T>(p: LipSdpProblem, maxMargin: number, accept: (rho: number, lambda: Float64Array, t: Float64Array) => T | null): T {
  const l = p.layers.length - 1;
  const norms = p.layers.map(normEstimate);
  for (let margin = 2; margin < maxMargin; margin *= 4) {
    const lambda = new Float64Array(l);
    let tau = margin * Math.max(norms[l] ** 2, 1e-300);
    for (let h = l; h >= 1; h--) {
      lambda[h - 1] = tau;
      const [a, b] = p.slopes[h - 1];
      const cr = ((a + b) / 2) ** 2 + ((b - a) / 2) ** 2;
      tau = Math.max(2 * margin * tau * cr * norms[h - 1] ** 2, tau * 1e-3);
    }
    const found = accept(tau, lambda, expand(p, lambda));
    if (found !== null) return found;
  }
  throw new LipcheckError('INTERNAL', 'No strictly feasible starting point was found for a LipSDP problem (the layers\' norms may overflow).');
}

/** Per-unit multipliers from per-layer ones. */
function expand(p: LipSdpProblem, lambda: Float64Array): Float64Array {
  const t = new Float64Array(p.layers.slice(0, -1).reduce((a, w) => a + w.rows, 0));
  let u = 0;
  for (let h = 0; h < lambda.length; h++) for (let r = 0; r < p.layers[h].rows; r++) t[u++] = lambda[h];
  return t;
}

/** Options of solveLipSdp. */
export interface LipSdpOptions {
  readonly variant: LipSdpVariant;
  /** Stop when the duality gap ⟨X, Z⟩ + xᵀz is below relTol·ρ and the primal residual below relTol (default 1e-7). */
  readonly relTol?: number;
  /** Most multiply-adds to spend (default: unlimited); when it runs out the last iterate (always dual feasible) is returned. */
  readonly maxWork?: number;
  /** Called after each iteration (benchmarks): iterations so far, ρ of the solved (scaled) problem, relative gap, work so far. */
  readonly onIteration?: (it: { readonly steps: number; readonly rho: number; readonly relGap: number; readonly work: number }) => void;
  /**
   * A warm start (Neuron only): a point (ρ, t) of this problem, e.g. ECLipsE's (src/estimators/eclipse.ts), used instead of
   * startPoint's loose one when Cholesky confirms it strictly feasible for the problem solved (reduced, widened); else ignored.
   */
  readonly start?: LmiPoint;
}

/** The largest N whose products run in the WebAssembly kernels (a rule on sizes: results do not depend on it). */
export const MATMUL_HEAP_MAX_N = 1536;

/**
 * C = A·B for n×n row-major A and B, where row k of B may be zero outside the columns [lo[k], hi[k]) (the LMI's block
 * tridiagonal pattern; lo/hi absent: dense). Two rows of C and four rows of B at a time (where those four share one
 * column range), so each load of B serves eight multiply-adds: 4–5× faster than the plain i-k-j loop in V8. The loops
 * over j run in the WebAssembly SIMD kernels mmrow4 and mmrow1 (lanczos-kernels.wat; each element's sum in the same
 * order as matmulJs, so the same bits) on copies of A and B in the WebAssembly heap.
 */
export function matmul(a: Float64Array, b: Float64Array, n: number, lo?: Int32Array, hi?: Int32Array): Float64Array {
  // the heap keeps its high-water mark: three N×N copies there only up to MATMUL_HEAP_MAX_N (57 MB), larger LMIs
  // (up to 4096: 400 MB) take the JavaScript loops, which give the same bits
  if (n > MATMUL_HEAP_MAX_N) return matmulJs(a, b, n, lo, hi);
  const arrays = new HeapArrays();
  try {
    const ha = arrays.take(n * n), hb = arrays.take(n * n), hc = arrays.take(n * n);
    if (!ha || !hb || !hc) return matmulJs(a, b, n, lo, hi);
    ha.set(a);
    hb.set(b);
    const k = arrays.heap!.kernels, row = 8 * n;
    const from = (q: number) => (lo ? lo[q] : 0), to = (q: number) => (hi ? hi[q] : n);
    for (let i = 0; i < n; i += 2) {
      const r0 = i * n, two = i + 1 < n, r1 = two ? r0 + n : r0;
      const c0 = hc.byteOffset + 8 * r0, c1 = hc.byteOffset + 8 * r1;
      let q = 0;
      while (q < n) {
        const j0 = from(q), j1 = to(q);
        if (q + 3 < n && from(q + 3) === j0 && to(q + 3) === j1 && from(q + 1) === j0 && to(q + 1) === j1 && from(q + 2) === j0 && to(q + 2) === j1) {
          k.mmrow4(c0, c1, hb.byteOffset + row * q, row, j0, j1, two ? 1 : 0,
            ha[r0 + q], ha[r0 + q + 1], ha[r0 + q + 2], ha[r0 + q + 3],
            two ? ha[r1 + q] : 0, two ? ha[r1 + q + 1] : 0, two ? ha[r1 + q + 2] : 0, two ? ha[r1 + q + 3] : 0);
          q += 4;
        } else {
          k.mmrow1(c0, c1, hb.byteOffset + row * q, j0, j1, two ? 1 : 0, ha[r0 + q], two ? ha[r1 + q] : 0);
          q++;
        }
      }
    }
    return hc.slice();
  } finally {
    arrays.release();
  }
}

/** matmul in JavaScript (where the WebAssembly heap is unavailable; tests: the kernels must give its bits). */
export function matmulJs(a: Float64Array, b: Float64Array, n: number, lo?: Int32Array, hi?: Int32Array): Float64Array {
  const c = new Float64Array(n * n);
  const from = (k: number) => (lo ? lo[k] : 0), to = (k: number) => (hi ? hi[k] : n);
  let i = 0;
  for (; i < n; i += 2) {
    const r0 = i * n, two = i + 1 < n, r1 = two ? r0 + n : r0;
    let k = 0;
    while (k < n) {
      const j0 = from(k), j1 = to(k);
      if (k + 3 < n && from(k + 3) === j0 && to(k + 3) === j1 && from(k + 1) === j0 && to(k + 1) === j1 && from(k + 2) === j0 && to(k + 2) === j1) {
        const v0 = a[r0 + k], v1 = a[r0 + k + 1], v2 = a[r0 + k + 2], v3 = a[r0 + k + 3];
        const u0 = two ? a[r1 + k] : 0, u1 = two ? a[r1 + k + 1] : 0, u2 = two ? a[r1 + k + 2] : 0, u3 = two ? a[r1 + k + 3] : 0;
        const o0 = k * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
        if (two) {
          for (let j = j0; j < j1; j++) {
            const b0 = b[o0 + j], b1 = b[o1 + j], b2 = b[o2 + j], b3 = b[o3 + j];
            c[r0 + j] += v0 * b0 + v1 * b1 + v2 * b2 + v3 * b3;
            c[r1 + j] += u0 * b0 + u1 * b1 + u2 * b2 + u3 * b3;
          }
        } else {
          for (let j = j0; j < j1; j++) c[r0 + j] += v0 * b[o0 + j] + v1 * b[o1 + j] + v2 * b[o2 + j] + v3 * b[o3 + j];
        }
        k += 4;
      } else {
        const v = a[r0 + k], u = two ? a[r1 + k] : 0, ok = k * n;
        for (let j = j0; j < j1; j++) { const bb = b[ok + j]; c[r0 + j] += v * bb; if (two) c[r1 + j] += u * bb; }
        k++;
      }
    }
  }
  return c;
}

/** ⟨A, B⟩ = Σ A_ij B_ij. */
function inner(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Forward substitution L·y = v in place (L: the lower triangle of l, row-major). */
export function forward(l: Float64Array, n: number, v: Float64Array): void {
  for (let i = 0; i < n; i++) { const oi = i * n; let s = v[i]; for (let k = 0; k < i; k++) s -= l[oi + k] * v[k]; v[i] = s / l[oi + i]; }
}

/** Back substitution Lᵀ·y = v in place. */
export function backward(l: Float64Array, n: number, v: Float64Array): void {
  for (let i = n - 1; i >= 0; i--) { const s = v[i] / l[i * n + i]; v[i] = s; for (let k = 0; k < i; k++) v[k] -= l[i * n + k] * s; }
}

/**
 * The largest α ≤ 1 with P + α·D ⪰ 0 estimated from λ_min(L⁻¹DL⁻ᵀ) (P = LLᵀ) by LANCZOS_STEPS Lanczos steps with full
 * reorthogonalisation from a fixed start: a Ritz value lies above λ_min, so the estimate can be too long — the caller
 * checks the step by a Cholesky factorisation and shortens it on failure. Returns +∞ when no negative curvature was seen.
 */
function stepToBoundary(l: Float64Array, d: Float64Array, n: number): number {
  const steps = Math.min(n, LANCZOS_STEPS);
  const q: Float64Array[] = [];
  const alpha = new Float64Array(steps), beta = new Float64Array(steps);
  let v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = 1 + 0.5 * Math.sin(1.7 * i + 0.3);
  let vn = Math.sqrt(inner(v, v));
  for (let i = 0; i < n; i++) v[i] /= vn;
  let k = 0;
  for (; k < steps; k++) {
    q.push(v);
    const w = Float64Array.from(v);
    backward(l, n, w);
    const u = new Float64Array(n);
    for (let i = 0; i < n; i++) { const oi = i * n; let s = 0; for (let j = 0; j < n; j++) s += d[oi + j] * w[j]; u[i] = s; }
    forward(l, n, u);
    alpha[k] = inner(u, v);
    for (const qq of q) { const c = inner(u, qq); for (let i = 0; i < n; i++) u[i] -= c * qq[i]; }
    for (const qq of q) { const c = inner(u, qq); for (let i = 0; i < n; i++) u[i] -= c * qq[i]; }
    vn = Math.sqrt(inner(u, u));
    if (k + 1 === steps || !(vn > 1e-12 * (Math.abs(alpha[k]) + 1e-300))) { k++; break; }
    beta[k] = vn;
    v = u.map((x) => x / vn);
  }
  const negA = alpha.subarray(0, k).map((x) => -x);
  const lmin = -tridiagonalLargestEigenvalue(negA, beta, k);
  return lmin < 0 ? -1 / lmin : Infinity;
}

/**
 * Minimises ρ subject to F(ρ, t) = −M(ρ, t) ⪰ 0 and t ≥ 0 (LipSDP-Neuron, or LipSDP-Layer with t constant per layer;
 * Fazlyab et al. 2019, Thm 2) by an infeasible primal–dual path-following method with the HKM direction and Mehrotra's
 * predictor–corrector (docs/algorithms-sdp.md §3). The LMI is the dual of a standard-form SDP: Z = F(y) ⪰ 0 and z = v ≥ 0
 * for y = (ρ, v) (v = t, or one λ_h per layer), the primal X ⪰ 0, x ≥ 0 with tr X_00 = 1 and ⟨B_j, X⟩ + x_j = 0 (B_j =
 * U_jD_jU_jᵀ the rank-2 matrix with which t_j enters F, U_j = [a_j, e_j]). Z is always recomputed from y, so every iterate
 * is a strictly feasible (ρ, t) — a budget-stopped solve still hands the certificate a valid point. The Schur complement
 * tr(B_j S B_k X) = tr(D_j (U_jᵀSU_k) D_k (U_kᵀXU_j)) needs only 2×2 blocks read off S = Z⁻¹, X, S·a_j and X·a_j.
 * An approximate solver: its output is certified by certifyLipSdp, never used as it stands.
 */
export function solveLipSdp(problem: LipSdpProblem, opts: LipSdpOptions): LipSdpSolution {
  checkProblem(problem);
  const p = reduceInput(widenLinear(problem));
  const relTol = opts.relTol ?? 1e-7;
  const maxWork = opts.maxWork ?? Infinity;
  const { sizes, offsets, n, units: m } = blocks(p);
  const l = p.layers.length - 1;
  const layerVar = opts.variant === 'layer';
  const unitLayer = new Int32Array(m), unitRow = new Int32Array(m);
  for (let h = 1, u = 0; h <= l; h++) for (let r = 0; r < sizes[h]; r++, u++) { unitLayer[u] = h; unitRow[u] = r; }
  const dj = p.slopes.map(([a, b]) => ({ p: 2 * a * b, q: -(a + b) }));
  const nv = layerVar ? l : m;
  const k = nv + 1;
  const nu = n + nv;
  const n0 = sizes[0];
  const stepWork = lipSdpStepWork(p);
  const toT = (v: Float64Array) => (layerVar ? expand(p, v) : v);
  // the block tridiagonal pattern of F: row i (in block b) is nonzero in blocks b−1, b, b+1 only
  const lo = new Int32Array(n), hi = new Int32Array(n);
  for (let b = 0; b <= l; b++) for (let i = offsets[b]; i < offsets[b] + sizes[b]; i++) { lo[i] = offsets[Math.max(0, b - 1)]; hi[i] = b < l ? offsets[b + 1] + sizes[b + 1] : n; }
  // the constant part F0 = −W_lᵀW_l on block (l, l): dZ = F(dρ, dt) − F0
  const f0 = formLmi(p, { rho: 0, t: new Float64Array(m) }).f;
  const direction = (dr: number, dt: Float64Array): Float64Array => {
    const d = formLmi(p, { rho: dr, t: dt }).f;
    for (let i = 0; i < d.length; i++) d[i] -= f0[i];
    return d;
  };
  // ⟨B_j, Y⟩ for every unit (Y symmetric), aggregated per variable: the operator A of the primal constraints
  const constraintsOf = (y: Float64Array): Float64Array => {
    const out = new Float64Array(nv);
    for (let j = 0; j < m; j++) {
      const h = unitLayer[j], r = unitRow[j], w = p.layers[h - 1], o0 = offsets[h - 1], e = offsets[h] + r, D = dj[h - 1];
      const row = r * w.cols;
      let quad = 0, cross = 0;
      for (let c = 0; c < w.cols; c++) {
        const a = w.w[row + c];
        if (a === 0) continue;
        const yc = (o0 + c) * n;
        cross += a * y[yc + e];
        if (D.p !== 0) { let s = 0; for (let c2 = 0; c2 < w.cols; c2++) s += y[yc + o0 + c2] * w.w[row + c2]; quad += a * s; }
      }
      out[layerVar ? h - 1 : j] += D.p * quad + 2 * D.q * cross + 2 * y[e * n + e];
    }
    return out;
  };
  const trace00 = (y: Float64Array): number => { let s = 0; for (let i = 0; i < n0; i++) s += y[i * n + i]; return s; };
  const symmetrize = (y: Float64Array): void => {
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) { const v = 0.5 * (y[i * n + j] + y[j * n + i]); y[i * n + j] = v; y[j * n + i] = v; }
  };
  // M·a_j for every unit, per layer h an N×n_h matrix (column r: M·a of unit r of layer h)
  const timesRows = (s: Float64Array): Float64Array[] => {
    const out: Float64Array[] = [];
    for (let h = 1; h <= l; h++) {
      const w = p.layers[h - 1], o0 = offsets[h - 1], nh = sizes[h];
      const y = new Float64Array(n * nh);
      for (let i = 0; i < n; i++) {
        const si = i * n + o0, oy = i * nh;
        for (let r = 0; r < nh; r++) {
          const row = r * w.cols;
          let acc = 0;
          for (let c = 0; c < w.cols; c++) acc += s[si + c] * w.w[row + c];
          y[oy + r] = acc;
        }
      }
      out.push(y);
    }
    return out;
  };
  // a_jᵀ·M·a_k for k ≤ j (into buf[0..j])
  const rowPairs = (ma: Float64Array[], j: number, buf: Float64Array): void => {
    const hj = unitLayer[j], rj = unitRow[j], wj = p.layers[hj - 1], oj0 = offsets[hj - 1];
    buf.fill(0, 0, j + 1);
    const row = rj * wj.cols;
    for (let hk = 1, first = 0; hk <= hj && first <= j; first += sizes[hk], hk++) {
      const yk = ma[hk - 1], nk = sizes[hk], count = Math.min(nk, j + 1 - first);
      for (let c = 0; c < wj.cols; c++) {
        const wc = wj.w[row + c];
        if (wc === 0) continue;
        const oy = (oj0 + c) * nk;
        for (let r = 0; r < count; r++) buf[first + r] += wc * yk[oy + r];
      }
    }
  };

  // start: the dual point of startPoint, X = μ0·Z⁻¹ and x = μ0/z (perfectly centred), μ0 with tr X_00 = 1
  const warm = opts.start && !layerVar && opts.start.t.length === m && opts.start.t.every((v) => v > 0) && opts.start.rho > 0 ? opts.start : null;
  const start = warm && cholesky(formLmi(p, warm).f, n) !== null ? { rho: warm.rho, lambda: Float64Array.from(warm.t) } : startPoint(p, opts.variant);
  let rho = start.rho;
  let vars = start.lambda;
  let zf = formLmi(p, { rho, t: toT(vars) }).f;
  let lz = Float64Array.from(zf);
  if (cholesky(lz, n) === null) throw new LipcheckError('INTERNAL', 'The LipSDP starting point is not strictly feasible.');
  let s = inverseFromCholesky(lz, n);
  const mu0 = 1 / trace00(s);
  let x = s.map((v) => v * mu0);
  let xl = vars.map((v) => mu0 / v);
  let lx = Float64Array.from(x);
  if (cholesky(lx, n) === null) throw new LipcheckError('INTERNAL', 'The LipSDP primal start is not positive definite.');

  // the start: two factorisations and one inverse (startPoint's own factorisation included)
  let work = (3 * n ** 3) / 6 + n ** 3 / 3, steps = 0, converged = false;
  const path: LmiPoint[] = [];
  const remember = () => { path.unshift({ rho, t: Float64Array.from(toT(vars)) }); if (path.length > 8) path.pop(); };
  remember();
  const gtmp = new Float64Array(m), btmp = new Float64Array(m);
  while (work + stepWork <= maxWork && steps < MAX_ITERATIONS) {
    const gap = inner(x, zf) + inner(xl, vars);
    const mu = gap / nu;
    // primal residual Rp = b − A(X) − Gx: ρ row −1 + tr X_00, v rows Σ⟨B_j, X⟩ + x
    const ax = constraintsOf(x);
    let rpMax = Math.abs(trace00(x) - 1);
    for (let i = 0; i < nv; i++) rpMax = Math.max(rpMax, Math.abs(ax[i] + xl[i]) / (1 + Math.abs(ax[i]) + xl[i]));
    if (gap <= relTol * Math.abs(rho) && rpMax <= relTol * 10) { converged = true; break; }
    steps++;
    work += stepWork;
    // the Schur complement M_ik = tr(A_i S A_k X) + (G diag(x/z) Gᵀ)_ik
    const sa = timesRows(s), xa = timesRows(x);
    const hm = new Float64Array(k * k);
    let hrr = 0;
    for (let i = 0; i < n0; i++) for (let c = 0; c < n0; c++) hrr += s[i * n + c] * x[i * n + c];
    hm[0] = hrr;
    for (let j = 0; j < m; j++) {
      const hj = unitLayer[j], rj = unitRow[j], ej = offsets[hj] + rj, nj = sizes[hj], Dj = dj[hj - 1];
      const sj = sa[hj - 1], xj = xa[hj - 1];
      rowPairs(sa, j, gtmp);
      rowPairs(xa, j, btmp);
      const vj = layerVar ? hj : j + 1;
      for (let kk = 0; kk <= j; kk++) {
        const hk = unitLayer[kk], rk = unitRow[kk], ek = offsets[hk] + rk, nk = sizes[hk], Dk = dj[hk - 1];
        const sk = sa[hk - 1], xk = xa[hk - 1];
        // P = U_jᵀSU_k, Q = U_kᵀXU_j
        const p00 = gtmp[kk], p01 = sj[ek * nj + rj], p10 = sk[ej * nk + rk], p11 = s[ej * n + ek];
        const q00 = btmp[kk], q01 = xk[ej * nk + rk], q10 = xj[ek * nj + rj], q11 = x[ek * n + ej];
        // tr(D_j P D_k Q) with D = [[p, q], [q, 2]]
        const a00 = Dj.p * p00 + Dj.q * p10, a01 = Dj.p * p01 + Dj.q * p11, a10 = Dj.q * p00 + 2 * p10, a11 = Dj.q * p01 + 2 * p11;
        const b00 = Dk.p * q00 + Dk.q * q10, b01 = Dk.p * q01 + Dk.q * q11, b10 = Dk.q * q00 + 2 * q10, b11 = Dk.q * q01 + 2 * q11;
        const v = a00 * b00 + a01 * b10 + a10 * b01 + a11 * b11;
        const vk = layerVar ? hk : kk + 1;
        hm[vj * k + vk] += v;
        if (vj !== vk || kk !== j) hm[vk * k + vj] += v;
      }
      // M_ρj = tr(D_j R), R[a][b] = Σ_{i ∈ block 0} (SU_j)[i][a]·(XU_j)[i][b]
      let r00 = 0, r01 = 0, r10 = 0, r11 = 0;
      for (let i = 0; i < n0; i++) {
        const sa0 = sj[i * nj + rj], se0 = s[i * n + ej], xa0 = xj[i * nj + rj], xe0 = x[i * n + ej];
        r00 += sa0 * xa0; r01 += sa0 * xe0; r10 += se0 * xa0; r11 += se0 * xe0;
      }
      const v = Dj.p * r00 + Dj.q * (r01 + r10) + 2 * r11;
      hm[vj] += v;
      hm[vj * k] += v;
    }
    for (let i = 0; i < nv; i++) hm[(i + 1) * k + i + 1] += xl[i] / vars[i];
    const factor = Float64Array.from(hm);
    if (cholesky(factor, k) === null) {
      let tr = 0;
      for (let a = 0; a < k; a++) tr += hm[a * k + a];
      factor.set(hm);
      for (let a = 0; a < k; a++) factor[a * k + a] += 1e-12 * (tr / k);
      if (cholesky(factor, k) === null) break;
    }
    const solve = (b: Float64Array): Float64Array => { const y = Float64Array.from(b); forward(factor, k, y); backward(factor, k, y); return y; };
    const as = constraintsOf(s), ts = trace00(s);
    // the right-hand side b − σμA(S) − σμG(1/z) + A(Yc) + G(dz_p∘dx_p/z), A_ρ = −tr(·)_00, A_v = −Σ⟨B_j, ·⟩, G_v = −I
    const rhsOf = (sm: number, yc: Float64Array | null, dzdx: Float64Array | null): Float64Array => {
      const r = new Float64Array(k);
      const ac = yc ? constraintsOf(yc) : null;
      r[0] = -1 + sm * ts - (yc ? trace00(yc) : 0);
      for (let i = 0; i < nv; i++) r[i + 1] = sm * (as[i] + 1 / vars[i]) - (ac ? ac[i] : 0) - (dzdx ? dzdx[i] / vars[i] : 0);
      return r;
    };
    const stepOf = (dy: Float64Array, sm: number, yc: Float64Array | null, dzdx: Float64Array | null) => {
      const dv = dy.subarray(1);
      const dz = direction(dy[0], toT(Float64Array.from(dv)));
      const sdz = matmul(s, dz, n, lo, hi);
      const dx = matmul(sdz, x, n);
      if (yc) for (let i = 0; i < dx.length; i++) dx[i] += yc[i];
      symmetrize(dx);
      for (let i = 0; i < dx.length; i++) dx[i] = sm * s[i] - x[i] - dx[i];
      const dxl = new Float64Array(nv);
      for (let i = 0; i < nv; i++) dxl[i] = (sm - xl[i] * vars[i] - (dzdx ? dzdx[i] : 0) - xl[i] * dv[i]) / vars[i];
      return { dv, dz, sdz, dx, dxl };
    };
    const lengths = (d: ReturnType<typeof stepOf>) => {
      let ap = stepToBoundary(lx, d.dx, n), ad = stepToBoundary(lz, d.dz, n);
      for (let i = 0; i < nv; i++) {
        if (d.dxl[i] < 0) ap = Math.min(ap, -xl[i] / d.dxl[i]);
        if (d.dv[i] < 0) ad = Math.min(ad, -vars[i] / d.dv[i]);
      }
      return { ap, ad };
    };
    // predictor (σ = 0)
    const dyp = solve(rhsOf(0, null, null));
    const pred = stepOf(dyp, 0, null, null);
    const lp = lengths(pred);
    const app = Math.min(1, lp.ap), adp = Math.min(1, lp.ad);
    let gapAff = 0;
    for (let i = 0; i < x.length; i++) gapAff += (x[i] + app * pred.dx[i]) * (zf[i] + adp * pred.dz[i]);
    for (let i = 0; i < nv; i++) gapAff += (xl[i] + app * pred.dxl[i]) * (vars[i] + adp * pred.dv[i]);
    const sigma = Math.min(1, Math.max(0, gapAff / gap) ** 3);
    // corrector: σμ and the second-order term S·dZ_p·dX_p
    const yc = matmul(pred.sdz, pred.dx, n);
    symmetrize(yc);
    const dzdx = new Float64Array(nv);
    for (let i = 0; i < nv; i++) dzdx[i] = pred.dv[i] * pred.dxl[i];
    const dy = solve(rhsOf(sigma * mu, yc, dzdx));
    const corr = stepOf(dy, sigma * mu, yc, dzdx);
    const lc = lengths(corr);
    const gammaStep = 0.9 + 0.09 * Math.min(app, adp);
    let ap = Math.min(1, gammaStep * lc.ap), ad = Math.min(1, gammaStep * lc.ad);
    // take the steps, shortened until the Cholesky factorisations confirm X ≻ 0 and Z ≻ 0
    let movedP = false, movedD = false;
    for (let tries = 0; tries < 30 && ap > 1e-12; tries++, ap *= 0.7) {
      const x2 = x.map((v, i) => v + ap * corr.dx[i]);
      const l2 = Float64Array.from(x2);
      if (tries > 0) work += n ** 3 / 6;
      if (cholesky(l2, n) !== null && corr.dxl.every((d, i) => xl[i] + ap * d > 0)) {
        x = x2; lx = l2; xl = xl.map((v, i) => v + ap * corr.dxl[i]); movedP = true;
        break;
      }
    }
    for (let tries = 0; tries < 30 && ad > 1e-12; tries++, ad *= 0.7) {
      const r2 = rho + ad * dy[0];
      const v2 = vars.map((v, i) => v + ad * corr.dv[i]);
      if (!v2.every((v) => v > 0)) continue;
      const z2 = formLmi(p, { rho: r2, t: toT(v2) }).f;
      const l2 = Float64Array.from(z2);
      if (tries > 0) work += n ** 3 / 6 + n * n;
      if (cholesky(l2, n) !== null) {
        rho = r2; vars = v2; zf = z2; lz = l2; movedD = true;
        break;
      }
    }
    if (movedD) { s = inverseFromCholesky(lz, n); remember(); }
    opts.onIteration?.({ steps, rho, relGap: (inner(x, zf) + inner(xl, vars)) / Math.abs(rho), work });
    if (!movedP && !movedD) break;
  }
  if (path[0].rho !== rho) remember();
  return { point: path[0], path, newtonSteps: steps, work, converged };
}

/**
 * Proves F(ρ, t) = −M(ρ, t) ⪰ 0 for the exact F of the (unreduced) problem at the given float64 ρ and t (t ≥ 0), or
 * returns false. Rounding margin, derived (docs/algorithms-sdp.md §4): the computed F̂ has |F̂ − F| ≤ γ_p·|F|_abs entrywise
 * (each entry a sum of at most p terms of up to four factors), so ‖F̂ − F‖₂ ≤ e = γ_p·‖|F|_abs‖_F. Cholesky of
 * Â = fl(F̂ − δI) running to completion gives L̂L̂ᵀ = Â + ΔA with |ΔA| ≤ γ_{N+1}|L̂||L̂ᵀ| (Higham 2002, Thm 10.3), so
 * λ_min(Â) ≥ −γ_{N+1}/(1−γ_{N+1})·tr(Â) (Rump, BIT 46, 2006, Lemma 2.1: the argument of choleskyCertify in dense.ts);
 * the subtraction on the diagonal is off by ≤ 2u·|Â_ii|. Hence λ_min(F) ≥ δ − γ'·tr⁺(Â) − 2u·max|Â_ii| − e, checked
 * after the factorisation with every term rounded upward.
 */
export function certifyLmi(problem: LipSdpProblem, point: LmiPoint): boolean {
  for (let i = 0; i < point.t.length; i++) if (!(point.t[i] >= 0)) return false;
  if (!(point.rho >= 0) || !Number.isFinite(point.rho)) return false;
  const { f, n, absF, terms } = formLmi(problem, point);
  return certifyFormedLmi(f, n, absF, terms);
}

/**
 * certifyLmi's proof on a formed matrix: f (N×N, overwritten) is the computed F̂ of a symmetric F whose every entry is
 * within γ_terms·(|F|_abs)_ij, with ‖|F|_abs‖_F ≤ absF; true when Cholesky of F̂ − δI proves λ_min(F) ≥ 0 with the margin
 * derived above. Also used by ECLipsE's certificate with the input block eliminated (src/estimators/eclipse.ts).
 */
export function certifyFormedLmi(f: Float64Array, n: number, absF: number, terms: number): boolean {
  let trace = 0, maxDiag = 0;
  for (let i = 0; i < n; i++) { trace += Math.max(0, f[i * n + i]); maxDiag = Math.max(maxDiag, Math.abs(f[i * n + i])); }
  if (!Number.isFinite(trace) || !Number.isFinite(absF)) return false;
  const g = gamma(n + 1), gp = gamma(terms);
  const form = roundUp(gp * absF, 2);
  const delta = roundUp(2 * (roundUp((g / (1 - g)) * roundUp(trace, n + 1), 3) + 4 * U * maxDiag + form) + UNDERFLOW_SLACK, 2);
  for (let i = 0; i < n; i++) f[i * n + i] -= delta;
  let traceA = 0, maxA = 0;
  for (let i = 0; i < n; i++) { traceA += Math.max(0, f[i * n + i]); maxA = Math.max(maxA, Math.abs(f[i * n + i])); }
  if (cholesky(f, n) === null) return false;
  const needed = roundUp(roundUp((g / (1 - g)) * roundUp(traceA, n + 1), 3) + roundUp(2 * U * maxA, 1) + form + UNDERFLOW_SLACK, 3);
  return delta >= needed;
}

/**
 * The smallest ρ found for which certifyLmi proves F(ρ, t) ⪰ 0 along the solver's path, t clipped at 0: at the last
 * iterate ρ raised by the factors 1 + 10^−9, 10^−7, 10^−6, 10^−5, 10^−4, 10^−3, then at earlier (more interior) iterates
 * by 1 + 10^−6 and 1 + 10^−3, until proved or maxTries attempts are spent. Returns the proved point, or null.
 * A proved point gives ‖W_l D_l ⋯ D_1 W_0‖₂ ≤ √ρ for every diagonal D_h with entries in [α_h, β_h].
 */
export function certifyLipSdp(problem: LipSdpProblem, solution: LipSdpSolution, maxTries = 12, check: (p: LipSdpProblem, pt: LmiPoint) => boolean = certifyLmi): { point: LmiPoint; tries: number } | null {
  let tries = 0;
  for (const [i, pt] of solution.path.entries()) {
    const t = pt.t.map((v) => Math.max(0, v));
    for (const raise of i === 0 ? [1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3] : [1e-6, 1e-3]) {
      if (tries >= maxTries) return null;
      tries++;
      const rho = roundUp(pt.rho * (1 + raise), 2);
      if (check(problem, { rho, t })) return { point: { rho, t }, tries };
    }
  }
  return null;
}

/** Multiply-adds of one certification attempt (forming F and one Cholesky factorisation of the unreduced N×N). */
export function lipSdpCertifyWork(p: LipSdpProblem): number {
  const { n } = blocks(p);
  let formed = 0;
  for (let h = 1; h < p.layers.length; h++) formed += p.layers[h - 1].rows * p.layers[h - 1].cols ** 2 / 2;
  return formed + n ** 3 / 6 + n * n;
}

/** The certified result of lipSdpBound. */
export interface LipSdpBound {
  /** Certified: sup over diagonal D_h with entries in [α_h, β_h] of ‖W_l D_l ⋯ D_1 W_0‖₂ ≤ value, for the given float64 W. */
  readonly value: number;
  /** √ρ at the solver's last point, unscaled: what the certificate was aiming at (no guarantee). */
  readonly estimate: number;
  readonly newtonSteps: number;
  /** Multiply-adds spent solving and certifying. */
  readonly work: number;
  readonly converged: boolean;
  /** Certification attempts (each one Cholesky factorisation of the full LMI). */
  readonly certifyTries: number;
}

/**
 * The problem without its constant units: a hidden unit whose row of W_{h−1} is all zeros contributes
 * W_h[:, j]·d_j·0 = 0 to every product W_l D_l ⋯ D_1 W_0, so dropping it (that row, and column j of W_h) changes no product
 * and sup_D ‖W_l D ⋯ W_0‖ is the same. Kept in the LMI, its constraint matrix 2e_je_jᵀ is PSD: t_j → ∞, no strictly feasible
 * primal, and the solver crawls (tll_n2_N16_1_0 has 130 such units in its first layer). Dropping can empty a later row
 * too, so layers are swept in order. Null when a hidden layer is left empty (every product is 0).
 */
function dropConstantUnits(p: LipSdpProblem): LipSdpProblem | null {
  const layers: LmiLayer[] = [];
  let keepCols: number[] | null = null; // columns of the current layer that survive (null: all)
  for (let k = 0; k < p.layers.length; k++) {
    const w = p.layers[k];
    const cols = keepCols ?? Array.from({ length: w.cols }, (_, c) => c);
    const rows: number[] = [];
    for (let r = 0; r < w.rows; r++) {
      if (k === p.layers.length - 1 || cols.some((c) => w.w[r * w.cols + c] !== 0)) rows.push(r);
    }
    if (rows.length === 0) return null;
    if (rows.length === w.rows && cols.length === w.cols) layers.push(w);
    else {
      const out = new Float64Array(rows.length * cols.length);
      rows.forEach((r, i) => cols.forEach((c, j) => { out[i * cols.length + j] = w.w[r * w.cols + c]; }));
      layers.push({ w: out, rows: rows.length, cols: cols.length });
    }
    keepCols = rows.length === w.rows ? null : rows;
  }
  return { layers, slopes: p.slopes };
}

/**
 * Certified LipSDP bound (Neuron or Layer) on sup_D ‖W_l D_l ⋯ D_1 W_0‖₂ over the slope box, which bounds the ℓ2
 * Lipschitz constant of y = W_l φ_l(⋯ φ_1(W_0x + b_0) ⋯) + b_l (docs/algorithms-sdp.md §2). Each W_k is first scaled
 * by a power of two 2^{e_k} to norm ≈ 1 (exact: checked entry by entry, else that layer is left unscaled; the product
 * scales by 2^{Σe_k}), the scaled LMI solved (solveLipSdp), its answer proved (certifyLipSdp) and unscaled upward.
 * Null when no certificate succeeded within the tries.
 */
export function lipSdpBound(problem: LipSdpProblem, opts: LipSdpOptions & { readonly certifyTries?: number; readonly solve?: (scaled: LipSdpProblem) => LipSdpSolution; readonly certify?: (p: LipSdpProblem, pt: LmiPoint) => boolean }): LipSdpBound | null {
  checkProblem(problem);
  const reduced = dropConstantUnits(problem);
  if (reduced === null) return { value: 0, estimate: 0, newtonSteps: 0, work: 0, converged: true, certifyTries: 0 };
  let shift = 0;
  const layers: LmiLayer[] = [];
  for (const w of reduced.layers) {
    let maxAbs = 0;
    for (let i = 0; i < w.w.length; i++) maxAbs = Math.max(maxAbs, Math.abs(w.w[i]));
    if (maxAbs === 0) return { value: 0, estimate: 0, newtonSteps: 0, work: 0, converged: true, certifyTries: 0 };
    const est = normEstimate(w) || maxAbs;
    const e = Math.max(-1000, Math.min(1000, -Math.round(Math.log2(est))));
    const f = 2 ** e, back = 2 ** -e;
    const scaled = w.w.map((v) => v * f);
    const exact = scaled.every((v, i) => v * back === w.w[i]);
    layers.push(exact ? { w: scaled, rows: w.rows, cols: w.cols } : w);
    if (exact) shift += e;
  }
  const scaled: LipSdpProblem = { layers, slopes: reduced.slopes };
  // opts.solve: another construction of strictly feasible points of the scaled problem (ECLipsE), certified the same way
  const sol = opts.solve ? opts.solve(scaled) : solveLipSdp(scaled, opts);
  // balance before certifying: with every ‖W_k‖ ≈ 1, ρ can be 10⁻⁸ while the multipliers are O(1), and the rounding margin
  // (∝ tr F) then swamps the input block. W_0 → 2^e·W_0 with ρ → 4^e·ρ is the congruence F → DFD, D = diag(2^e·I, I, …, I):
  // exact in float64, the same proof obligation, and ρ ≈ 1 for the certificate.
  const e0 = Math.max(-500, Math.min(500, -Math.round(Math.log2(sol.point.rho) / 2)));
  const w0 = scaled.layers[0].w.map((v) => v * 2 ** e0);
  const balanced = Number.isFinite(e0) && e0 !== 0 && w0.every((v, i) => v * 2 ** -e0 === scaled.layers[0].w[i]) && sol.path.every((pt) => Number.isFinite(pt.rho * 4 ** e0) && pt.rho * 4 ** e0 > 0);
  const target: LipSdpProblem = balanced ? { layers: [{ ...scaled.layers[0], w: w0 }, ...scaled.layers.slice(1)], slopes: scaled.slopes } : scaled;
  const path = balanced ? sol.path.map((pt) => ({ rho: pt.rho * 4 ** e0, t: pt.t })) : sol.path;
  if (balanced) shift += e0;
  // opts.certify: another proof of the same statement F(ρ, t) ⪰ 0 (ECLipsE's, with the input block eliminated)
  const cert = certifyLipSdp(target, { ...sol, path, point: path[0] }, opts.certifyTries, opts.certify);
  const certWork = (cert?.tries ?? opts.certifyTries ?? 12) * lipSdpCertifyWork(scaled);
  if (!cert) return null;
  return {
    value: roundUp(unscaleUp(sqrtUp(cert.point.rho), shift), 1),
    estimate: Math.sqrt(path[0].rho) * 2 ** -shift,
    newtonSteps: sol.newtonSteps,
    work: sol.work + certWork,
    converged: sol.converged,
    certifyTries: cert.tries,
  };
}
