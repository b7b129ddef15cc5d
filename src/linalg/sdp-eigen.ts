import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { gramRows, transpose } from './dense.js';
import { cholesky, diagonalStart, lowerInverse, reduceInput, type LipSdpProblem, type LipSdpSolution, type LmiPoint } from './sdp.js';
import { mul, structuredProblem } from './sdp-structured.js';

/**
 * LipSDP-Neuron as an eigenvalue optimisation over the multipliers alone (docs/algorithms-sdp.md §9; the view of Wang et
 * al., ICLR 2024). Where every slope range has α_h·β_h = 0, F(ρ, t) is block tridiagonal with input block ρI coupled to
 * hidden layer 1 by −c_1W_0ᵀT_1 (c_h = α_h + β_h). Eliminating ρI (Schur complement), F(ρ, t) ⪰ 0 ⇔ G(t) − (c_1²/ρ)·
 * T_1W_0W_0ᵀT_1 ⪰ 0, G(t) the LMI without its input block; so for every t with G(t) ≻ 0 the least feasible ρ is
 *
 *   ρ(t) = c_1²·λ_max(M(t)),  M(t) = W_0ᵀT_1·(G(t)⁻¹)_11·T_1W_0  (n_0×n_0, or n_1×n_1 after reduceInput),
 *
 * a convex function of t (the least ρ over a convex set's section), and LipSDP-Neuron is min_t ρ(t). (G⁻¹)_11 = S_1⁻¹ comes
 * from the Schur complements of G from its last block up: S_h = 2T_h − V_hV_hᵀ with V_l = W_lᵀ and V_{h−1} = −c_hW_{h−1}ᵀT_hΦ_h,
 * S_h⁻¹ = Φ_hΦ_hᵀ; each S_h is factored densely (Φ = L⁻ᵀ) or, when V_h has fewer columns than rows, by Woodbury
 * (Φ = [D^{−1/2}, D⁻¹V·L_C⁻ᵀ], C = I − VᵀD⁻¹V). The gradient of an eigenvalue λ with unit eigenvector y is, with
 * u = W_0y, g = G⁻¹(T_1u ⊕ 0) (g_1 = S_1⁻¹T_1u, g_h = c_hS_h⁻¹T_hW_{h−1}g_{h−1}):
 * ∂λ/∂t_{1j} = 2g_{1j}(u_j − g_{1j}), ∂λ/∂t_{hj} = 2g_{hj}(c_h(W_{h−1}g_{h−1})_j − g_{hj}) (h ≥ 2).
 *
 * The method: L-BFGS on f(s) = log ρ_μ(eˢ) (t = eˢ > 0; ρ_μ the log-sum-exp smoothing of λ_max, μ relative to ρ, falling
 * over the run), a weak Wolfe line search that treats G(t) ⊁ 0 as +∞. Only a solver: it returns (ρ(t), t) at the best t
 * seen, and the caller's certificate (Cholesky of F with a rounding margin, ρ raised until proved) decides what is reported.
 */

/** Options of solveLipSdpEigen. */
export interface EigenOptions {
  /** Most multiply-adds to spend (default 1e10). */
  readonly maxWork?: number;
  /** A start (ECLipsE's point): its t is used (ρ is recomputed); default sdp.ts's diagonal start. */
  readonly start?: LmiPoint;
  readonly onIteration?: (it: { readonly steps: number; readonly rho: number; readonly evals: number; readonly work: number; readonly mu: number }) => void;
  /** Smoothing schedule: μ/ρ at the start and its floor (default 1e-2 → 3e-3); 0 turns smoothing off. */
  readonly mu0?: number;
  readonly muMin?: number;
  /** L-BFGS memory (default 40). */
  readonly memory?: number;
  /** Variables: s = log t ('log', default) or x = t/t_start ('linear'; ρ(t) is convex in t). */
  readonly param?: 'log' | 'linear';
}

/** μ/ρ of the smoothing at the start, its floor (measured on dist_shift_mnist_concat: 1e-3 fixed or falling to 1e-6 converged
 * slower; the smoothing's bias, at most μ·log n_0, matters only through the point it leads to: ρ is evaluated unsmoothed), and
 * the L-BFGS memory (12 was slower than 40 there). */
const MU0 = 1e-2, MU_MIN = 3e-3, MEMORY = 40;
/** μ is divided by MU_FALL when three steps in a row gained less than μ/20 in log ρ_μ. */
const MU_FALL = 3;
/** Stop when the best ρ fell by less than STALL_REL (relative) over STALL_STEPS steps. */
const STALL_STEPS = 30, STALL_REL = 1e-6;
/** A hard cap on L-BFGS steps (each takes at least one evaluation; the budget stops it first in practice). */
const MAX_STEPS = 5000;

interface EigenLayout {
  readonly p: LipSdpProblem;
  readonly l: number;
  /** n_0 (after reduceInput), n_1, …, n_l. */
  readonly sizes: number[];
  readonly c: number[];
  readonly unitOf: number[];
  readonly m: number;
  /** W_{h−1}ᵀ (n_{h−1}×n_h, row-major) for h = 1..l (index h−1), and W_lᵀ. */
  readonly wt: Float64Array[];
}

function eigenLayout(p: LipSdpProblem): EigenLayout {
  const l = p.layers.length - 1;
  const sizes = [p.layers[0].cols, ...p.layers.slice(0, -1).map((w) => w.rows)];
  const unitOf: number[] = [];
  let m = 0;
  for (let h = 1; h <= l; h++) { unitOf.push(m); m += sizes[h]; }
  return { p, l, sizes, c: p.slopes.map(([a, b]) => a + b), unitOf, m, wt: p.layers.map((w) => transpose(w.w, w.rows, w.cols)) };
}

/** S_h⁻¹ = ΦΦᵀ: dense Φ = L⁻ᵀ stored as L⁻¹ (row-major, lower), or Woodbury Φ = [diag(dis), X] (X n×k row-major). */
type Inverse = { readonly kind: 'dense'; readonly li: Float64Array; readonly n: number } | { readonly kind: 'wood'; readonly dis: Float64Array; readonly x: Float64Array; readonly n: number; readonly k: number };

/** S⁻¹v. */
function applyInverse(s: Inverse, v: Float64Array): Float64Array {
  const n = s.n, out = new Float64Array(n);
  if (s.kind === 'dense') {
    const li = s.li, z = new Float64Array(n);
    for (let i = 0; i < n; i++) { let acc = 0; const o = i * n; for (let j = 0; j <= i; j++) acc += li[o + j] * v[j]; z[i] = acc; }
    for (let i = 0; i < n; i++) { const zi = z[i]; if (zi === 0) continue; const o = i * n; for (let j = 0; j <= i; j++) out[j] += li[o + j] * zi; }
    return out;
  }
  const { dis, x, k } = s, z = new Float64Array(k);
  for (let i = 0; i < n; i++) { const vi = v[i]; if (vi === 0) continue; const o = i * k; for (let j = 0; j < k; j++) z[j] += x[o + j] * vi; }
  for (let i = 0; i < n; i++) { let acc = dis[i] * dis[i] * v[i]; const o = i * k; for (let j = 0; j < k; j++) acc += x[o + j] * z[j]; out[i] = acc; }
  return out;
}

/** Φᵀ as a dense r×n row-major matrix (r = n for dense, n + k for Woodbury). */
function phiT(s: Inverse): { a: Float64Array; r: number } {
  const n = s.n;
  if (s.kind === 'dense') return { a: s.li, r: n };
  const r = n + s.k, a = new Float64Array(r * n);
  for (let i = 0; i < n; i++) a[i * n + i] = s.dis[i];
  for (let i = 0; i < n; i++) for (let j = 0; j < s.k; j++) a[(n + j) * n + i] = s.x[i * s.k + j];
  return { a, r };
}

/** One evaluation: the factors of G(t), ρ(t) and the eigenpairs of M(t) (values descending). */
interface Evaluation {
  readonly t: Float64Array;
  readonly inv: Inverse[];
  readonly values: Float64Array;
  /** Eigenvectors (n_0 each) for the values, same order. */
  readonly vectors: Float64Array[];
  readonly rho: number;
  /** Multiply-adds of the Lanczos run (its length depends on the spectrum). */
  readonly lanczosWork: number;
}

/** Multiply-adds of one evaluation counted from the sizes and the branch each S_h takes (Woodbury or dense); the Lanczos run is counted as it happens. */
function evaluationWork(lay: EigenLayout): number {
  const { sizes, l } = lay;
  let w = 0;
  let r = lay.p.layers[l].rows; // columns of V_l = W_lᵀ
  for (let h = l; h >= 1; h--) {
    const n = sizes[h];
    const wood = r < n;
    if (wood) { w += n * r * r / 2 + r ** 3 / 2 + n * r * r; } else { w += n * n * r / 2 + n ** 3 / 2; }
    if (h > 1) w += wood ? sizes[h - 1] * n * (r + 1) : sizes[h - 1] * n * n;
    r = wood ? n + r : n;
  }
  const n0 = sizes[0];
  w += r * sizes[1] * n0 + n0 * n0 * r / 2;
  return w;
}

/** G(t) factored and M(t)'s eigenpairs, or null when some S_h is not positive definite. */
function evaluate(lay: EigenLayout, t: Float64Array, startVector: Float64Array | null, window = 1e-3): Evaluation | null {
  const { p, l, sizes, c, unitOf } = lay;
  for (let i = 0; i < t.length; i++) if (!(t[i] > 0) || !Number.isFinite(t[i])) return null;
  const tOf = (h: number) => t.subarray(unitOf[h - 1], unitOf[h - 1] + sizes[h]);
  const inv: Inverse[] = new Array(l + 1);
  // V_h (n_h×r row-major) with S_h = 2T_h − V_hV_hᵀ
  let v = lay.wt[l], r = p.layers[l].rows;
  for (let h = l; h >= 1; h--) {
    const n = sizes[h], th = tOf(h);
    if (r < n) {
      const dis = new Float64Array(n);
      for (let i = 0; i < n; i++) dis[i] = 1 / Math.sqrt(2 * th[i]);
      // C = I − VᵀD⁻¹V (r×r), from the scaled Vᵀ (r×n)
      const vt = new Float64Array(r * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < r; j++) vt[j * n + i] = v[i * r + j] * dis[i];
      const cm = gramRows(vt, r, n);
      for (let i = 0; i < r * r; i++) cm[i] = -cm[i];
      for (let i = 0; i < r; i++) cm[i * r + i] += 1;
      if (cholesky(cm, r) === null) return null;
      const lci = lowerInverse(cm, r);
      // X = D⁻¹V·L_C⁻ᵀ: row i of X = (D⁻¹V)_i · L_C⁻ᵀ, i.e. X = (D⁻¹V)(L_C⁻¹)ᵀ
      const dv = new Float64Array(n * r);
      for (let i = 0; i < n; i++) { const f = dis[i] * dis[i]; for (let j = 0; j < r; j++) dv[i * r + j] = v[i * r + j] * f; }
      const x = mul(dv, n, r, transpose(lci, r, r), r);
      inv[h] = { kind: 'wood', dis, x, n, k: r };
    } else {
      const s = gramRows(v, n, r);
      for (let i = 0; i < n * n; i++) s[i] = -s[i];
      for (let i = 0; i < n; i++) s[i * n + i] += 2 * th[i];
      if (cholesky(s, n) === null) return null;
      inv[h] = { kind: 'dense', li: lowerInverse(s, n), n };
    }
    if (h === 1) break;
    // V_{h−1} = −c_h W_{h−1}ᵀ T_h Φ_h (n_{h−1}×r'); the sign is irrelevant to V Vᵀ
    const np = sizes[h - 1], wt = lay.wt[h - 1], ch = c[h - 1];
    const s = inv[h];
    if (s.kind === 'dense') {
      // T_hΦ_h = T_h L⁻ᵀ: (n×n), entry (i, j) = t_i·L⁻¹[j][i]
      const tp = new Float64Array(n * n);
      for (let j = 0; j < n; j++) for (let i = 0; i <= j; i++) tp[i * n + j] = ch * th[i] * s.li[j * n + i];
      v = mul(wt, np, n, tp, n);
      r = n;
    } else {
      const k = s.k, rr = n + k, out = new Float64Array(np * rr);
      const tx = new Float64Array(n * k);
      for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) tx[i * k + j] = ch * th[i] * s.x[i * k + j];
      const part = mul(wt, np, n, tx, k);
      for (let a = 0; a < np; a++) {
        for (let i = 0; i < n; i++) out[a * rr + i] = ch * wt[a * n + i] * th[i] * s.dis[i];
        for (let j = 0; j < k; j++) out[a * rr + n + j] = part[a * k + j];
      }
      v = out;
      r = rr;
    }
  }
  // M = ZᵀZ with Z = Φ_1ᵀT_1W_0 (r×n_0)
  const n1 = sizes[1], n0 = sizes[0], t1 = tOf(1);
  const { a: pt, r: r1 } = phiT(inv[1]);
  const tw = new Float64Array(n1 * n0);
  const w0 = p.layers[0].w;
  for (let i = 0; i < n1; i++) for (let j = 0; j < n0; j++) tw[i * n0 + j] = t1[i] * w0[i * n0 + j];
  const z = mul(pt, r1, n1, tw, n0);
  const mm = gramRows(transpose(z, r1, n0), n0, r1);
  const { values, vectors, work: lanczosWork } = topEigenpairs(mm, n0, startVector, window);
  const rho = c[0] * c[0] * values[0];
  if (!(rho > 0) || !Number.isFinite(rho)) return null;
  return { t, inv, values, vectors, rho, lanczosWork };
}

/** Lanczos steps between convergence checks of topEigenpairs, and the residual it asks of the top Ritz pairs (relative to λ_1). */
const LANCZOS_CHUNK = 24;
const RITZ_TOL = 1e-10;

/**
 * The leading eigenpairs of a symmetric PSD n×n matrix (row-major) by Lanczos with full reorthogonalisation from `start`
 * (the last top eigenvector; the solver's iterates move little), extended by LANCZOS_CHUNK steps until every Ritz pair within
 * window·θ_1 of the top has residual ≤ RITZ_TOL·θ_1 or the Krylov space is the whole space (then the pairs are exact). Ritz
 * values are ≤ the eigenvalues; all that matters here is that they are accurate (the certificate checks the answer).
 */
export function topEigenpairs(a: Float64Array, n: number, start: Float64Array | null, window = 1e-3): { values: Float64Array; vectors: Float64Array[]; work: number } {
  const q: Float64Array[] = [];
  const alpha: number[] = [], beta: number[] = [];
  let v = start ? Float64Array.from(start, (x, i) => x + 1e-3 * Math.sin(i + 1)) : Float64Array.from({ length: n }, (_, i) => 1 + 0.5 * Math.sin(i + 1));
  let nv = Math.hypot(...v);
  v = v.map((x) => x / nv);
  for (let target = Math.min(n, LANCZOS_CHUNK); ; target = Math.min(n, target + LANCZOS_CHUNK)) {
    let breakdown = false;
    while (q.length < target) {
      q.push(v);
      const w = new Float64Array(n);
      for (let i = 0; i < n; i++) { let s = 0; const o = i * n; for (let j = 0; j < n; j++) s += a[o + j] * v[j]; w[i] = s; }
      let al = 0;
      for (let i = 0; i < n; i++) al += w[i] * v[i];
      alpha.push(al);
      for (let pass = 0; pass < 2; pass++) for (const u of q) { let d = 0; for (let i = 0; i < n; i++) d += u[i] * w[i]; for (let i = 0; i < n; i++) w[i] -= d * u[i]; }
      let b = 0;
      for (let i = 0; i < n; i++) b += w[i] * w[i];
      b = Math.sqrt(b);
      beta.push(b);
      if (!(b > 1e-13 * Math.abs(alpha[0]))) { breakdown = true; break; }
      v = w.map((x) => x / b);
    }
    const k = q.length;
    const t = new Matrix(k, k);
    for (let i = 0; i < k; i++) { t.set(i, i, alpha[i]); if (i + 1 < k) { t.set(i, i + 1, beta[i]); t.set(i + 1, i, beta[i]); } }
    const e = new EigenvalueDecomposition(t, { assumeSymmetric: true });
    const order = e.realEigenvalues.map((x, i) => [x, i] as const).sort((x, y) => y[0] - x[0]);
    const top = order[0][0], sv = e.eigenvectorMatrix;
    const wanted = order.filter(([x]) => x >= top * (1 - window));
    const done = breakdown || k >= n || wanted.every(([, i]) => Math.abs(beta[k - 1] * sv.get(k - 1, i)) <= RITZ_TOL * Math.abs(top));
    if (!done) continue;
    const values = Float64Array.from(order.map(([x]) => x));
    const vectors = order.slice(0, Math.max(wanted.length, Math.min(k, 8))).map(([, i]) => {
      const y = new Float64Array(n);
      for (let j = 0; j < k; j++) { const c = sv.get(j, i); for (let r = 0; r < n; r++) y[r] += c * q[j][r]; }
      return y;
    });
    // matrix–vector products, two reorthogonalisation passes, the k×k eigendecomposition (≈ 9k³) and the Ritz vectors
    return { values, vectors, work: k * n * n + 2 * k * k * n + 9 * k ** 3 + vectors.length * k * n };
  }
}

/** ∇_t of Σ ω_i λ_i(t) (the eigenvalues of M, not scaled by c_1²) for the weights given. */
function gradient(lay: EigenLayout, ev: Evaluation, weights: readonly number[]): Float64Array {
  const { p, l, sizes, c, unitOf } = lay;
  const grad = new Float64Array(lay.m);
  const t = ev.t;
  for (const [idx, om] of weights.entries()) {
    if (om === 0) continue;
    const y = ev.vectors[idx];
    const n1 = sizes[1], n0 = sizes[0], w0 = p.layers[0].w;
    const u = new Float64Array(n1);
    for (let i = 0; i < n1; i++) { let s = 0; const o = i * n0; for (let j = 0; j < n0; j++) s += w0[o + j] * y[j]; u[i] = s; }
    let g = applyInverse(ev.inv[1], u.map((x, i) => x * t[i]));
    for (let i = 0; i < n1; i++) grad[i] += om * 2 * g[i] * (u[i] - g[i]);
    for (let h = 2; h <= l; h++) {
      const n = sizes[h], np = sizes[h - 1], w = p.layers[h - 1].w, ch = c[h - 1], u0 = unitOf[h - 1];
      const wg = new Float64Array(n);
      for (let i = 0; i < n; i++) { let s = 0; const o = i * np; for (let j = 0; j < np; j++) s += w[o + j] * g[j]; wg[i] = s; }
      g = applyInverse(ev.inv[h], wg.map((x, i) => ch * t[u0 + i] * x));
      for (let i = 0; i < n; i++) grad[u0 + i] += om * 2 * g[i] * (ch * wg[i] - g[i]);
    }
  }
  return grad;
}

/** Multiply-adds of one gradient pass per eigenvector. */
function gradientWork(lay: EigenLayout): number {
  let w = lay.sizes[0] * lay.sizes[1];
  for (let h = 1; h <= lay.l; h++) w += 2 * lay.sizes[h] ** 2 + (h >= 2 ? lay.sizes[h] * lay.sizes[h - 1] : 0);
  return w;
}

/** The smoothed λ_μ = λ_1 + μ·log Σ exp((λ_i − λ_1)/μ) and its weights (μ = 0: λ_max and the top vector). */
function smoothed(values: Float64Array, count: number, mu: number): { value: number; weights: number[] } {
  const top = values[0];
  if (!(mu > 0)) return { value: top, weights: [1] };
  const weights: number[] = [];
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const e = Math.exp((values[i] - top) / mu);
    if (e < 1e-14) break;
    weights.push(e);
    sum += e;
  }
  return { value: top + mu * Math.log(sum), weights: weights.map((x) => x / sum) };
}

/** The test hook: ρ(t) and ∇_tρ(t) (μ = 0) of the reduced problem, or null where G(t) ⊁ 0. */
export function _rhoAndGradient(problem: LipSdpProblem, t: Float64Array): { rho: number; grad: Float64Array; gap: number } | null {
  const lay = eigenLayout(reduceInput(problem));
  const ev = evaluate(lay, t, null);
  if (!ev) return null;
  const c2 = lay.c[0] ** 2;
  return { rho: ev.rho, grad: gradient(lay, ev, [1]).map((x) => x * c2), gap: ev.values.length > 1 ? (ev.values[0] - ev.values[1]) / ev.values[0] : 1 };
}

/** Multiply-adds of one evaluation with its gradient (the cost model of the method, for budgets). */
export function eigenEvalWork(problem: LipSdpProblem): number {
  // dimensions only (the weights may be empty): reduceInput leaves n_0' = min(n_0, n_1) input columns
  const layers = problem.layers.map((w, k) => ({ w: new Float64Array(0), rows: w.rows, cols: k === 0 ? Math.min(w.cols, w.rows) : w.cols }));
  const sizes = [layers[0].cols, ...layers.slice(0, -1).map((w) => w.rows)];
  const lay: EigenLayout = { p: { layers, slopes: problem.slopes }, l: layers.length - 1, sizes, c: [], unitOf: [], m: 0, wt: [] };
  const n0 = sizes[0], k = Math.min(n0, 2 * LANCZOS_CHUNK);
  return evaluationWork(lay) + 4 * gradientWork(lay) + k * n0 * n0 + 2 * k * k * n0 + 9 * k ** 3;
}

/**
 * Minimises ρ(t) = c_1²·λ_max(M(t)) over t > 0 (LipSDP-Neuron, every α_h·β_h = 0) by L-BFGS in s = log t on the smoothed
 * log ρ_μ. Returns the best points (by the true ρ(t), tightest first) as sdp.ts's LipSdpSolution; converged is false (there
 * is no duality-gap bound here); fromStart says whether opts.start had G(t) ≻ 0 and was the first point (then the best points
 * are no worse than it).
 */
export function solveLipSdpEigen(problem: LipSdpProblem, opts: EigenOptions = {}): LipSdpSolution & { readonly evaluations: number; readonly fromStart: boolean } {
  const p = structuredProblem(problem, 'eigenvalue');
  const lay = eigenLayout(p);
  const maxWork = opts.maxWork ?? 1e10;
  const ew = evaluationWork(lay), gw = gradientWork(lay);
  const memory = opts.memory ?? MEMORY;
  let work = 0, evals = 0;
  let lastTop: Float64Array | null = null;
  let muRel = opts.mu0 ?? MU0;
  const evalAt = (t: Float64Array): Evaluation | null => { work += ew; evals++; const ev = evaluate(lay, t, lastTop, Math.max(1e-3, 40 * muRel)); if (ev) { lastTop = ev.vectors[0]; work += ev.lanczosWork; } return ev; };
  // start: the given t, else T = τI growing until G(t) ≻ 0
  let cur: Evaluation | null = null;
  if (opts.start && opts.start.t.length === lay.m) cur = evalAt(Float64Array.from(opts.start.t));
  const fromStart = cur !== null;
  // else sdp.ts's diagonal start (T_h = τ_h·I, margins raised until G(t) ≻ 0)
  if (!cur) cur = diagonalStart(p, 1e8, (_rho, _lambda, t) => evalAt(t));
  const best: LmiPoint[] = [];
  const remember = (ev: Evaluation) => {
    if (best.length && ev.rho >= best[0].rho) return;
    best.unshift({ rho: ev.rho, t: Float64Array.from(ev.t) });
    if (best.length > 4) best.pop();
  };
  remember(cur);
  const muMin = opts.muMin ?? MU_MIN;
  let mu = muRel * cur.values[0];
  const objective = (ev: Evaluation) => {
    const sm = smoothed(ev.values, ev.vectors.length, mu);
    work += gw * sm.weights.length;
    const gt = gradient(lay, ev, sm.weights);
    const g = new Float64Array(lay.m);
    for (let i = 0; i < lay.m; i++) g[i] = ((linear ? t0[i] : ev.t[i]) * gt[i]) / sm.value;
    return { f: Math.log(sm.value), g };
  };
  const linear = opts.param === 'linear';
  const t0 = Float64Array.from(cur.t);
  const toT = (x: number, i: number) => (linear ? t0[i] * x : Math.exp(x));
  let s = linear ? new Float64Array(lay.m).fill(1) : Float64Array.from(cur.t, Math.log);
  let f: number, g: Float64Array;
  ({ f, g } = objective(cur));
  const sHist: Float64Array[] = [], yHist: Float64Array[] = [];
  let steps = 0, stall = 0;
  const history: number[] = [];
  const dot = (a: Float64Array, b: Float64Array) => { let x = 0; for (let i = 0; i < a.length; i++) x += a[i] * b[i]; return x; };
  while (work + 4 * ew <= maxWork && steps < MAX_STEPS) {
    // two-loop recursion
    const q = Float64Array.from(g);
    const al: number[] = [];
    for (let i = sHist.length - 1; i >= 0; i--) { const a = dot(sHist[i], q) / dot(yHist[i], sHist[i]); al.push(a); for (let j = 0; j < q.length; j++) q[j] -= a * yHist[i][j]; }
    let gamma = 1;
    if (sHist.length) { const k = sHist.length - 1; gamma = dot(sHist[k], yHist[k]) / dot(yHist[k], yHist[k]); }
    else { let gi = 0; for (const x of g) gi = Math.max(gi, Math.abs(x)); gamma = 0.1 / (gi || 1); }
    for (let j = 0; j < q.length; j++) q[j] *= gamma;
    for (let i = 0; i < sHist.length; i++) { const b = dot(yHist[i], q) / dot(yHist[i], sHist[i]); const a = al[sHist.length - 1 - i]; for (let j = 0; j < q.length; j++) q[j] += (a - b) * sHist[i][j]; }
    const d = q.map((x) => -x);
    let gd = dot(g, d);
    if (!(gd < 0)) { if (sHist.length === 0) break; sHist.length = 0; yHist.length = 0; continue; }
    // weak Wolfe line search (bisection / doubling), G ⊁ 0 counts as +∞
    let lo = 0, hi = Infinity, alpha = 1, accepted: { ev: Evaluation; f: number; g: Float64Array; alpha: number } | null = null;
    let fallback: { ev: Evaluation; f: number; g: Float64Array; alpha: number } | null = null;
    for (let ls = 0; ls < 20 && work + ew <= maxWork; ls++) {
      const tn = new Float64Array(lay.m);
      for (let i = 0; i < lay.m; i++) tn[i] = toT(s[i] + alpha * d[i], i);
      const ev = evalAt(tn);
      if (ev) remember(ev);
      const o = ev ? objective(ev) : null;
      if (!ev || !o || !(o.f <= f + 1e-4 * alpha * gd)) hi = alpha;
      else {
        if (!fallback || o.f < fallback.f) fallback = { ev, f: o.f, g: o.g, alpha };
        if (dot(o.g, d) < 0.9 * gd) lo = alpha;
        else { accepted = { ev, f: o.f, g: o.g, alpha }; break; }
      }
      alpha = hi < Infinity ? (lo + hi) / 2 : 2 * lo;
    }
    const step = accepted ?? fallback;
    steps++;
    if (!step) {
      // no descent: restart the memory, or give up when it was empty
      if (sHist.length === 0) { if (mu > 0 && muRel > muMin) { muRel = Math.max(muMin, muRel / MU_FALL); mu = muRel * cur.values[0]; ({ f, g } = objective(cur)); continue; } break; }
      if (work + 4 * ew > maxWork) break;
      sHist.length = 0; yHist.length = 0; continue;
    }
    const sn = new Float64Array(lay.m);
    for (let i = 0; i < lay.m; i++) sn[i] = s[i] + step.alpha * d[i];
    const ds = sn.map((x, i) => x - s[i]), dg = step.g.map((x, i) => x - g[i]);
    if (dot(ds, dg) > 1e-12 * Math.sqrt(dot(ds, ds) * dot(dg, dg))) { sHist.push(ds); yHist.push(dg); if (sHist.length > memory) { sHist.shift(); yHist.shift(); } }
    const gain = f - step.f;
    s = sn; cur = step.ev; f = step.f; g = step.g;
    opts.onIteration?.({ steps, rho: best[0].rho, evals, work, mu: muRel });
    history.push(best[0].rho);
    if (history.length > STALL_STEPS && history[history.length - 1 - STALL_STEPS] - best[0].rho <= STALL_REL * best[0].rho && muRel <= muMin) break;
    // smoothing falls when the steps gain little relative to μ
    if (mu > 0 && gain < 0.05 * muRel) { stall++; if (stall >= 3 && muRel > muMin) { muRel = Math.max(muMin, muRel / MU_FALL); mu = muRel * cur.values[0]; ({ f, g } = objective(cur)); sHist.length = 0; yHist.length = 0; stall = 0; } }
    else stall = 0;
  }
  return { point: best[0], path: best, newtonSteps: steps, work, converged: false, evaluations: evals, fromStart };
}
