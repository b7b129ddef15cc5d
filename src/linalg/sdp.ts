import { LipcheckError } from '../errors.js';
import { gamma, roundUp, sqrtUp, UNDERFLOW_SLACK, UNIT_ROUNDOFF, unscaleUp } from './dense.js';

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

function checkProblem(p: LipSdpProblem): void {
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
function cholesky(a: Float64Array, n: number): number | null {
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

/** S = (LLᵀ)^{-1} from the Cholesky factor in the lower triangle of l; returns the full symmetric S. */
function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n); // X = L^{-1}, lower triangular, row by row
  for (let i = 0; i < n; i++) {
    const oi = i * n;
    for (let k = 0; k < i; k++) {
      const c = l[oi + k];
      if (c === 0) continue;
      const ok = k * n;
      for (let j = 0; j <= k; j++) x[oi + j] -= c * x[ok + j];
    }
    const d = 1 / l[oi + i];
    for (let j = 0; j < i; j++) x[oi + j] *= d;
    x[oi + i] = d;
  }
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
 * The multiply-adds of one Newton step of solveLipSdp: forming F, its Cholesky factor and inverse (N³/2), the products
 * S·a_j for every unit (N·Σ n_h n_{h−1}), the 2×2 blocks U_jᵀSU_k (m·Σ n_h n_{h−1}), the Hessian (m²·40) and its
 * Cholesky factor (m³/6), plus one more factorisation for the line search.
 */
export function lipSdpStepWork(p: LipSdpProblem): number {
  const { n, units } = blocks(p);
  let pairs = 0;
  for (let h = 1; h < p.layers.length; h++) pairs += p.layers[h - 1].rows * p.layers[h - 1].cols;
  const formed = pairs * p.layers[0].cols + n * n;
  return 2 * formed + (2 * n ** 3) / 3 + (n + units) * pairs + 40 * units * units + units ** 3 / 6;
}

/** A hard cap on Newton steps, whatever the work budget (a stalled line search cannot loop forever). */
const MAX_NEWTON_STEPS = 400;

/** How much the barrier weight τ grows per centring. */
const TAU_FACTOR = 20;

/**
 * The input block reduced to rank: when n_0 > n_1, W_0 = R·Qᵀ with Q orthonormal and R = chol(W_0W_0ᵀ) (n_1×n_1), and
 * in the basis [Q, Q⊥] the LMI splits into the same LMI with R in place of W_0, and −ρI (docs/algorithms-sdp.md §3). The
 * multipliers solved for with R are multipliers of the full LMI; the certificate always checks the full one. A small
 * ridge keeps a rank-deficient W_0W_0ᵀ factorable (the solve is approximate anyway).
 */
function reduceInput(p: LipSdpProblem): LipSdpProblem {
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

/** An estimate of ‖W‖₂ by 30 power steps (only to place the starting point). */
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
  const l = p.layers.length - 1;
  const norms = p.layers.map(normEstimate);
  for (let margin = 2; margin < 1e6; margin *= 4) {
    const lambda = new Float64Array(l);
    let tau = margin * Math.max(norms[l] ** 2, 1e-300);
    for (let h = l; h >= 1; h--) {
      lambda[h - 1] = tau;
      const [a, b] = p.slopes[h - 1];
      const cr = ((a + b) / 2) ** 2 + ((b - a) / 2) ** 2;
      tau = Math.max(2 * margin * tau * cr * norms[h - 1] ** 2, tau * 1e-3);
    }
    const rho = tau;
    const t = expand(p, lambda);
    const { f, n } = formLmi(p, { rho, t });
    if (cholesky(f, n) !== null) return { rho, lambda: variant === 'layer' ? lambda : t };
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

/** Cholesky solve of the symmetric positive definite k×k system h·x = b (h overwritten); null if h is not PD. */
function solveSpd(h: Float64Array, k: number, b: Float64Array): Float64Array | null {
  if (cholesky(h, k) === null) return null;
  const y = Float64Array.from(b);
  for (let i = 0; i < k; i++) { let s = y[i]; for (let j = 0; j < i; j++) s -= h[i * k + j] * y[j]; y[i] = s / h[i * k + i]; }
  for (let i = k - 1; i >= 0; i--) { let s = y[i]; for (let j = i + 1; j < k; j++) s -= h[j * k + i] * y[j]; y[i] = s / h[i * k + i]; }
  return y;
}

/** Options of solveLipSdp. */
export interface LipSdpOptions {
  readonly variant: LipSdpVariant;
  /** Stop when the barrier's duality-gap bound ν/τ is below relTol·ρ (default 1e-6). */
  readonly relTol?: number;
  /** Most multiply-adds to spend (default: unlimited); when it runs out the last centred point is returned. */
  readonly maxWork?: number;
}

/**
 * Minimises ρ subject to F(ρ, t) = −M(ρ, t) ⪰ 0 and t ≥ 0 (LipSDP-Neuron, or LipSDP-Layer with t constant per layer;
 * Fazlyab et al. 2019, Thm 2) by a primal barrier method: Newton steps on τρ − log det F − Σ log t (or Σ log λ_h) with
 * a backtracking line search that keeps F positive definite, τ ×20 per centring followed by a predictor step along the
 * central path's tangent, stopping at ν/τ ≤ relTol·ρ (ν = N + m), after MAX_NEWTON_STEPS, or when maxWork is spent.
 * Each multiplier t_j enters F through the rank-2 term U_jD_jU_jᵀ, U_j = [a_j, e_j] (a_j the unit's weight row in the
 * block before it, e_j its own coordinate), so the Hessian entries tr(S A_j S A_k) = tr(D_j Z_jk D_k Z_jkᵀ) need only
 * the 2×2 blocks Z_jk = U_jᵀSU_k, read off S and S·a_j. An approximate solver: its output is certified by
 * certifyLipSdp, never used as it stands.
 */
export function solveLipSdp(problem: LipSdpProblem, opts: LipSdpOptions): LipSdpSolution {
  checkProblem(problem);
  const p = reduceInput(widenLinear(problem));
  const relTol = opts.relTol ?? 1e-6;
  const maxWork = opts.maxWork ?? Infinity;
  const { sizes, offsets, n, units: m } = blocks(p);
  const l = p.layers.length - 1;
  const layerVar = opts.variant === 'layer';
  const unitLayer = new Int32Array(m), unitRow = new Int32Array(m);
  for (let h = 1, u = 0; h <= l; h++) for (let r = 0; r < sizes[h]; r++, u++) { unitLayer[u] = h; unitRow[u] = r; }
  const dj = p.slopes.map(([a, b]) => ({ p: 2 * a * b, q: -(a + b) }));
  const nv = layerVar ? l : m;
  const nu = n + nv; // barrier parameter ν
  const stepWork = lipSdpStepWork(p);

  const start = startPoint(p, opts.variant);
  let rho = start.rho;
  let vars = start.lambda;
  const toT = (v: Float64Array) => (layerVar ? expand(p, v) : v);
  const objective = (tau: number, r: number, v: Float64Array): number | null => {
    for (let i = 0; i < v.length; i++) if (!(v[i] > 0)) return null;
    const { f } = formLmi(p, { rho: r, t: toT(v) });
    const ld = cholesky(f, n);
    if (ld === null) return null;
    let lv = 0;
    for (let i = 0; i < v.length; i++) lv += Math.log(v[i]);
    return tau * r - ld - lv;
  };

  let tau = nu / rho;
  let work = 0, steps = 0, converged = false;
  const path: LmiPoint[] = [];
  while (work + stepWork <= maxWork && steps < MAX_NEWTON_STEPS) {
    // one Newton step on τρ − log det F − Σ log v
    const { f } = formLmi(p, { rho, t: toT(vars) });
    if (cholesky(f, n) === null) throw new LipcheckError('INTERNAL', 'The LipSDP barrier iterate left the feasible set.');
    const s = inverseFromCholesky(f, n);
    // S·a_j for every unit, stored per layer h as an N×n_h matrix (column r: S·a of unit r of layer h)
    const sa: Float64Array[] = [];
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
      sa.push(y);
    }
    // 2×2 blocks Z_jk = [[a_jᵀSa_k, a_jᵀSe_k], [e_jᵀSa_k, e_jᵀSe_k]] and the Hessian of −log det F in t
    const ht = new Float64Array(m * m);
    const gt = new Float64Array(m);
    const zaa = new Float64Array(m); // reused row buffer
    for (let j = 0; j < m; j++) {
      const hj = unitLayer[j], rj = unitRow[j], wj = p.layers[hj - 1], oj0 = offsets[hj - 1], ej = offsets[hj] + rj;
      const Dj = dj[hj - 1];
      // a_jᵀ S a_k = Σ_c w_j[c]·(S a_k)[o_j0 + c] for every k ≤ j, layer by layer along contiguous rows of S·a
      zaa.fill(0, 0, j + 1);
      const row = rj * wj.cols;
      for (let hk = 1, first = 0; hk <= hj && first <= j; first += sizes[hk], hk++) {
        const yk = sa[hk - 1], nk = sizes[hk], count = Math.min(nk, j + 1 - first);
        for (let c = 0; c < wj.cols; c++) {
          const wc = wj.w[row + c];
          if (wc === 0) continue;
          const oy = (oj0 + c) * nk;
          for (let r = 0; r < count; r++) zaa[first + r] += wc * yk[oy + r];
        }
      }
      for (let k = 0; k <= j; k++) {
        const hk = unitLayer[k], rk = unitRow[k], ek = offsets[hk] + rk;
        const yk = sa[hk - 1], nk = sizes[hk];
        const aa = zaa[k];
        const ae = sa[hj - 1][ek * sizes[hj] + rj]; // a_jᵀ S e_k = (S a_j)[e_k]
        const ea = yk[ej * nk + rk]; // e_jᵀ S a_k
        const ee = s[ej * n + ek];
        const Dk = dj[hk - 1];
        // tr(D_j Z D_k Zᵀ), Z = [[aa, ae], [ea, ee]], D = [[p, q], [q, 2]]
        const x00 = Dj.p * aa + Dj.q * ea, x01 = Dj.p * ae + Dj.q * ee, x10 = Dj.q * aa + 2 * ea, x11 = Dj.q * ae + 2 * ee;
        const y00 = Dk.p * aa + Dk.q * ae, y01 = Dk.p * ea + Dk.q * ee, y10 = Dk.q * aa + 2 * ae, y11 = Dk.q * ea + 2 * ee;
        const v = x00 * y00 + x01 * y10 + x10 * y01 + x11 * y11;
        ht[j * m + k] = v;
        ht[k * m + j] = v;
        if (k === j) gt[j] = -(Dj.p * aa + 2 * Dj.q * ae + 2 * ee);
      }
    }
    // the ρ direction: A_ρ = E_00
    const n0 = sizes[0];
    let trS0 = 0, hrr = 0;
    for (let i = 0; i < n0; i++) { trS0 += s[i * n + i]; for (let c = 0; c < n0; c++) hrr += s[i * n + c] ** 2; }
    const hrt = new Float64Array(m);
    for (let j = 0; j < m; j++) {
      const hj = unitLayer[j], rj = unitRow[j], y = sa[hj - 1], nh = sizes[hj], ej = offsets[hj] + rj;
      let g00 = 0, g01 = 0, g11 = 0;
      for (let i = 0; i < n0; i++) { const a = y[i * nh + rj], e = s[i * n + ej]; g00 += a * a; g01 += a * e; g11 += e * e; }
      const D = dj[hj - 1];
      hrt[j] = D.p * g00 + 2 * D.q * g01 + 2 * g11;
    }
    // project onto the variables and add the barrier of v > 0
    const k = nv + 1;
    const hess = new Float64Array(k * k), grad = new Float64Array(k);
    hess[0] = hrr;
    grad[0] = tau - trS0;
    if (layerVar) {
      for (let j = 0; j < m; j++) {
        const a = unitLayer[j];
        grad[a] += gt[j];
        hess[a] += hrt[j];
        for (let q = 0; q < m; q++) hess[a * k + unitLayer[q]] += ht[j * m + q];
      }
      for (let a = 1; a < k; a++) hess[a * k] = hess[a];
    } else {
      for (let j = 0; j < m; j++) {
        grad[j + 1] = gt[j];
        hess[j + 1] = hrt[j];
        hess[(j + 1) * k] = hrt[j];
        for (let q = 0; q < m; q++) hess[(j + 1) * k + q + 1] = ht[j * m + q];
      }
    }
    for (let a = 0; a < nv; a++) { grad[a + 1] -= 1 / vars[a]; hess[(a + 1) * k + a + 1] += 1 / vars[a] ** 2; }
    const neg = grad.map((g) => -g);
    const hessKeep = Float64Array.from(hess);
    let dir = solveSpd(Float64Array.from(hess), k, neg);
    if (dir === null) {
      // a Hessian made indefinite by rounding: a small ridge (a scaled gradient step in the limit)
      let tr = 0;
      for (let a = 0; a < k; a++) tr += hess[a * k + a];
      for (let a = 0; a < k; a++) hess[a * k + a] += 1e-10 * (tr / k);
      dir = solveSpd(hess, k, neg);
      if (dir === null) break;
    }
    const decrement = -grad.reduce((acc, g, i) => acc + g * dir![i], 0);
    steps++;
    work += stepWork;
    // backtracking: stay strictly feasible, Armijo on the barrier objective
    const f0 = objective(tau, rho, vars)!;
    let step = 1;
    for (let a = 0; a < nv; a++) if (dir[a + 1] < 0) step = Math.min(step, -0.99 * vars[a] / dir[a + 1]);
    let moved = false;
    for (let tries = 0; tries < 40; tries++, step *= 0.5) {
      const r2 = rho + step * dir[0];
      const v2 = vars.map((v, a) => v + step * dir![a + 1]);
      const f1 = objective(tau, r2, v2);
      work += n ** 3 / 6;
      if (f1 !== null && f1 <= f0 - 0.25 * step * decrement) {
        rho = r2; vars = v2; moved = true;
        break;
      }
    }
    if (decrement / 2 <= 1e-3 || !moved) {
      path.unshift({ rho, t: Float64Array.from(toT(vars)) });
      if (nu / tau <= relTol * rho) { converged = true; break; }
      // predictor: along the central path's tangent dy/dτ = −H⁻¹e_ρ (from ∇φ(y) + τe_ρ = 0), as far as stays feasible
      // and lowers the new barrier objective; the Newton steps that follow only correct what is left
      const next = tau * TAU_FACTOR;
      const e0 = new Float64Array(k);
      e0[0] = 1;
      const tangent = solveSpd(hessKeep, k, e0);
      if (tangent) {
        const base = objective(next, rho, vars);
        for (let s = next - tau, tries = 0; base !== null && tries < 30; tries++, s *= 0.5) {
          const r2 = rho - s * tangent[0];
          const v2 = vars.map((v, a) => v - s * tangent[a + 1]);
          const f1 = objective(next, r2, v2);
          work += n ** 3 / 6;
          if (f1 !== null && f1 < base) { rho = r2; vars = v2; break; }
        }
      }
      tau = next;
    }
  }
  path.unshift({ rho, t: Float64Array.from(toT(vars)) });
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
 * The smallest ρ found for which certifyLmi proves F(ρ, t) ⪰ 0 along the solver's path: at each centred point (last
 * first), t clipped at 0, ρ raised by the factors 1 + 10^−9, 1 + 10^−6, 1 + 10^−3 until proved. Returns the proved point, or null.
 * A proved point gives ‖W_l D_l ⋯ D_1 W_0‖₂ ≤ √ρ for every diagonal D_h with entries in [α_h, β_h].
 */
export function certifyLipSdp(problem: LipSdpProblem, solution: LipSdpSolution, maxTries = 12): { point: LmiPoint; tries: number } | null {
  let tries = 0;
  for (const pt of solution.path) {
    const t = pt.t.map((v) => Math.max(0, v));
    for (const raise of [1e-9, 1e-6, 1e-3]) {
      if (tries >= maxTries) return null;
      tries++;
      const rho = roundUp(pt.rho * (1 + raise), 2);
      if (certifyLmi(problem, { rho, t })) return { point: { rho, t }, tries };
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
 * Certified LipSDP bound (Neuron or Layer) on sup_D ‖W_l D_l ⋯ D_1 W_0‖₂ over the slope box, which bounds the ℓ2
 * Lipschitz constant of y = W_l φ_l(⋯ φ_1(W_0x + b_0) ⋯) + b_l (docs/algorithms-sdp.md §2). Each W_k is first scaled
 * by a power of two 2^{e_k} to norm ≈ 1 (exact: checked entry by entry, else that layer is left unscaled; the product
 * scales by 2^{Σe_k}), the scaled LMI solved (solveLipSdp), its answer proved (certifyLipSdp) and unscaled upward.
 * Null when no certificate succeeded within the tries.
 */
export function lipSdpBound(problem: LipSdpProblem, opts: LipSdpOptions & { readonly certifyTries?: number }): LipSdpBound | null {
  checkProblem(problem);
  let shift = 0;
  const layers: LmiLayer[] = [];
  for (const w of problem.layers) {
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
  const scaled: LipSdpProblem = { layers, slopes: problem.slopes };
  const sol = solveLipSdp(scaled, opts);
  const cert = certifyLipSdp(scaled, sol, opts.certifyTries);
  const certWork = (cert?.tries ?? opts.certifyTries ?? 12) * lipSdpCertifyWork(scaled);
  if (!cert) return null;
  return {
    value: roundUp(unscaleUp(sqrtUp(cert.point.rho), shift), 1),
    estimate: Math.sqrt(sol.point.rho) * 2 ** -shift,
    newtonSteps: sol.newtonSteps,
    work: sol.work + certWork,
    converged: sol.converged,
    certifyTries: cert.tries,
  };
}
