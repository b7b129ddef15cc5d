import { LipcheckError } from '../errors.js';
import { gramLower, gramRows } from './dense.js';
import { backward, checkProblem, cholesky, diagonalStart as sdpDiagonalStart, forward, lowerInverse, reduceInput, type LipSdpProblem, type LipSdpSolution, type LmiPoint } from './sdp.js';

/**
 * LipSDP-Neuron by a dual barrier method that never forms a dense N×N matrix (docs/algorithms-sdp.md §8). It applies
 * where every slope range has α_h·β_h = 0 (ReLU, sigmoid, tanh, …): then p_h = 2α_hβ_h = 0 and every diagonal block of
 * F(ρ, t) but the last is diagonal (ρI, 2T_1, …, 2T_{l−1}; the last is 2T_l − W_lᵀW_l). F is block tridiagonal, so
 * eliminating an independent set E of the diagonal blocks (no two adjacent; the widest by a path dynamic programme) leaves
 * one dense Schur complement Σ on the r kept coordinates: Z = F(y) factors at the cost of forming Σ and r³/6, and
 * S = Z⁻¹ = Δ + VVᵀ with Δ = D_E⁻¹ on the eliminated blocks (0 elsewhere) and V = [−D_E⁻¹C; I]·L_Σ⁻ᵀ (N×r).
 *
 * The method (dual potential reduction, after DSDP) takes Newton directions of f_μ(y) = ρ/μ − log det F(y) (y = (ρ, t);
 * t ≥ 0 follows from F ≻ 0 when p = 0: its diagonal holds 2t_j, or 2t_j − (W_lᵀW_l)_jj), μ tied to the gap to the best
 * lower bound ρ_lb (and no smaller than the μ whose Newton decrement is LAMBDA_MAX), with a line search on the potential
 * ρ_p·log(ρ − ρ_lb) − log det F. The Newton matrix H_ik = tr(S A_i S A_k) needs U_jᵀSU_k (2×2, U_j = [a_j, e_j]) for every pair of units: the
 * Gram matrix of the 2m vectors Vᵀa_j, Vᵀe_j (2m²r multiply-adds) plus the sparse Δ terms. Because H, ∇ log det and the
 * objective do not depend on μ, the Newton direction is Δy = u₂ − u₁/μ (Hu₁ = e_ρ, Hu₂ = ∇ log det) for every μ at once;
 * and X(μ) = μS(Z − D)S (D = Σ Δy_iA_i) satisfies the primal constraints exactly, is ⪰ 0 whenever the Newton decrement
 * λ(μ) < 1 (Dikin), and has gap X•Z = μ(N − ∇ᵀΔy): a lower bound ρ − gap on the optimum, the stopping rule.
 *
 * Not used by lipsdp.ts since the eighth session (sdp-eigen.ts took its place: docs/algorithms-sdp.md §8–9); kept with its tests
 * and `bench/lipsdp.ts --solver structured`. Only a solver: every point it returns is strictly feasible in floating point as
 * far as the structured Cholesky saw, and
 * lipSdpBound's certificate (Cholesky of the dense F with a derived rounding margin) decides what is reported.
 */

/** Why the structured solver cannot take a problem (a slope range with α·β ≠ 0, or a linear unit), or null. */
export function structuredObstacle(p: LipSdpProblem): string | null {
  if (p.layers.length < 2) return 'it has no hidden layer';
  for (const [h, [a, b]] of p.slopes.entries()) {
    if (a * b !== 0) return `hidden layer ${h + 1} has slope range [${a}, ${b}] with α·β ≠ 0 (its diagonal LMI block is dense)`;
    if (!(b - a >= 1e-6 * Math.max(Math.abs(a), 1))) return `hidden layer ${h + 1} is linear (slope range [${a}, ${b}])`;
  }
  return null;
}

/**
 * The problem a structured solver works on: checked, refused (an internal error: the caller tests structuredObstacle
 * first) where its LMI lacks the structure, and with the input block reduced (reduceInput). `solver` names it in the error.
 */
export function structuredProblem(problem: LipSdpProblem, solver: string): LipSdpProblem {
  checkProblem(problem);
  const why = structuredObstacle(problem);
  if (why) throw new LipcheckError('INTERNAL', `The ${solver} LipSDP solver was handed a problem it does not take: ${why}.`);
  return reduceInput(problem);
}

/** Stop when the duality gap bound is below relTol·ρ (default 1e-4). */
export interface StructuredOptions {
  readonly relTol?: number;
  /** Most multiply-adds to spend (default: unlimited); the last iterate is strictly feasible whenever it stops. */
  readonly maxWork?: number;
  readonly onIteration?: (it: { readonly steps: number; readonly rho: number; readonly relGap: number; readonly work: number }) => void;
  /** A strictly feasible point (ρ, t) of the problem (ECLipsE's), used instead of the diagonal start when the factorisation accepts it. */
  readonly start?: LmiPoint;
}

/** A hard cap on Newton steps. */
const MAX_STEPS = 200;
/** The potential's weight ρ_p = RHO_P·N (> N + √N); μ = (ρ − ρ_lb)/ρ_p. */
const RHO_P = 5;
/** The largest Newton decrement a step aims at. */
const LAMBDA_MAX = 150;
/** Factorisations per line search and per bound search. */
const LINE_PROBES = 12;
const BOUND_PROBES = 6;
/** Caps on the multipliers, relative to the start's. */
const CAP = 1e3;
/** The bound uses the smallest μ with λ(μ) ≤ THETA < 1: X(μ) is then positive definite (Dikin ellipsoid). */
const THETA = 0.95;

interface Layout {
  readonly p: LipSdpProblem;
  readonly l: number;
  readonly sizes: number[];
  readonly n: number;
  readonly m: number;
  /** First unit index of hidden layer h (units are numbered layer by layer; index h − 1). */
  readonly unitOf: number[];
  readonly q: number[];
  readonly elim: boolean[];
  /** Offset of a kept block in Σ's coordinates (−1 for eliminated ones). */
  readonly ko: number[];
  readonly r: number;
  /** W_0W_0ᵀ where block 0 is eliminated and block 1 kept. */
  readonly gram0: Float64Array | null;
  /** W_{k+1}W_k (s_{k+2}×s_k) where block k+1 is eliminated between kept k and k+2. */
  readonly skip: (Float64Array | null)[];
  /** W_lᵀW_l. */
  readonly wl2: Float64Array;
  /** Upper bounds t_j < cap_j (set once the start is known; null: none). */
  cap: Float64Array | null;
}

/** Blocks to eliminate: the widest set of diagonal blocks 0..l−1 with no two adjacent (block l, dense, is kept). */
function chooseEliminated(sizes: number[], l: number): boolean[] {
  // best[i] = the largest total over blocks 0..i−1; take[i] whether block i−1 is in it
  const best = new Float64Array(l + 2), take = new Uint8Array(l + 2);
  for (let i = 1; i <= l; i++) {
    const skipIt = best[i - 1], takeIt = sizes[i - 1] + (i >= 2 ? best[i - 2] : 0);
    if (takeIt > skipIt) { best[i] = takeIt; take[i] = 1; } else best[i] = skipIt;
  }
  const elim = new Array<boolean>(l + 1).fill(false);
  for (let i = l; i >= 1;) { if (take[i]) { elim[i - 1] = true; i -= 2; } else i -= 1; }
  return elim;
}

function layout(p: LipSdpProblem): Layout {
  const l = p.layers.length - 1;
  const sizes = [p.layers[0].cols, ...p.layers.slice(0, -1).map((w) => w.rows)];
  const n = sizes.reduce((a, b) => a + b, 0), m = n - sizes[0];
  const unitOf: number[] = [];
  for (let h = 1, u = 0; h <= l; u += sizes[h], h++) unitOf.push(u);
  const q = p.slopes.map(([a, b]) => -(a + b));
  const elim = chooseEliminated(sizes, l);
  const ko: number[] = [];
  let r = 0;
  for (let b = 0; b <= l; b++) { ko.push(elim[b] ? -1 : r); if (!elim[b]) r += sizes[b]; }
  const gram0 = elim[0] && l >= 1 ? gramRows(p.layers[0].w, sizes[1], sizes[0]) : null;
  const skip: (Float64Array | null)[] = [];
  for (let k = 0; k <= l; k++) {
    if (!elim[k] && k + 2 <= l && elim[k + 1] && !elim[k + 2]) skip.push(mul(p.layers[k + 1].w, sizes[k + 2], sizes[k + 1], p.layers[k].w, sizes[k]));
    else skip.push(null);
  }
  const wl = p.layers[l];
  const wt = new Float64Array(wl.cols * wl.rows);
  for (let i = 0; i < wl.rows; i++) for (let j = 0; j < wl.cols; j++) wt[j * wl.rows + i] = wl.w[i * wl.cols + j];
  const wl2 = gramRows(wt, wl.cols, wl.rows);
  return { p, l, sizes, n, m, unitOf, q, elim, ko, r, gram0, skip, wl2, cap: null };
}

/** A·B for row-major A (ar×ac) and B (ac×bc) (zero quadruples of A skipped); sdp-eigen.ts's products too. */
export function mul(a: Float64Array, ar: number, ac: number, b: Float64Array, bc: number): Float64Array {
  const c = new Float64Array(ar * bc);
  for (let i = 0; i < ar; i++) {
    const oc = i * bc, oa = i * ac;
    let k = 0;
    for (; k + 3 < ac; k += 4) {
      const v0 = a[oa + k], v1 = a[oa + k + 1], v2 = a[oa + k + 2], v3 = a[oa + k + 3];
      if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0) continue;
      const o0 = k * bc, o1 = o0 + bc, o2 = o1 + bc, o3 = o2 + bc;
      for (let j = 0; j < bc; j++) c[oc + j] += v0 * b[o0 + j] + v1 * b[o1 + j] + v2 * b[o2 + j] + v3 * b[o3 + j];
    }
    for (; k < ac; k++) { const v = a[oa + k]; if (v === 0) continue; const ob = k * bc; for (let j = 0; j < bc; j++) c[oc + j] += v * b[ob + j]; }
  }
  return c;
}

/** A·Bᵀ for row-major A (ar×k) and B (br×k): dot products of rows, four rows of B at a time. */
function mulT(a: Float64Array, ar: number, b: Float64Array, br: number, k: number): Float64Array {
  const c = new Float64Array(ar * br);
  for (let i = 0; i < ar; i++) {
    const oa = i * k, oc = i * br;
    let j = 0;
    for (; j + 3 < br; j += 4) {
      const b0 = j * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let c2 = 0; c2 < k; c2++) { const x = a[oa + c2]; s0 += x * b[b0 + c2]; s1 += x * b[b1 + c2]; s2 += x * b[b2 + c2]; s3 += x * b[b3 + c2]; }
      c[oc + j] = s0; c[oc + j + 1] = s1; c[oc + j + 2] = s2; c[oc + j + 3] = s3;
    }
    for (; j < br; j++) { const ob = j * k; let s = 0; for (let c2 = 0; c2 < k; c2++) s += a[oa + c2] * b[ob + c2]; c[oc + j] = s; }
  }
  return c;
}

/** The structured factorisation of Z = F(ρ, t): eliminated diagonals, Σ's Cholesky factor (lower triangle of `sigma`), log det. */
interface Factor {
  readonly rho: number;
  readonly t: Float64Array;
  /** Per block: the diagonal d of an eliminated block (ρ or 2t), else null. */
  readonly d: (Float64Array | null)[];
  /** Per kept block k with k − 1 eliminated: W_{k−1}D_{k−1}⁻¹W_{k−1}ᵀ (s_k×s_k), else null. */
  readonly g: (Float64Array | null)[];
  readonly sigma: Float64Array;
  readonly logdet: number;
}

/** Multiply-adds of one factorisation (Σ formed and factored). */
function factorWork(lay: Layout): number {
  const { sizes, elim, l, r } = lay;
  let w = r ** 3 / 6 + r * r;
  for (let k = 0; k <= l; k++) {
    if (elim[k]) continue;
    if (k >= 1 && elim[k - 1]) w += (sizes[k] ** 2 * (k - 1 === 0 ? 1 : sizes[k - 1])) / 2 + sizes[k] ** 2;
    if (k + 1 < l && elim[k + 1]) w += (sizes[k] ** 2 * sizes[k + 1]) / 2;
  }
  return w;
}

/** Z = F(ρ, t) factored through Σ, or null when it is not (numerically) positive definite. */
function factor(lay: Layout, rho: number, t: Float64Array): Factor | null {
  const { p, l, sizes, elim, ko, r, q, unitOf } = lay;
  if (!(rho > 0) || !Number.isFinite(rho)) return null;
  const tOf = (h: number) => t.subarray(unitOf[h - 1], unitOf[h - 1] + sizes[h]);
  const d: (Float64Array | null)[] = [];
  let logdet = 0;
  if (lay.cap) for (let j = 0; j < t.length; j++) { const g = lay.cap[j] - t[j]; if (!(g > 0)) return null; logdet += Math.log(g); }
  for (let b = 0; b <= l; b++) {
    if (!elim[b]) { d.push(null); continue; }
    const v = b === 0 ? new Float64Array(sizes[0]).fill(rho) : tOf(b).map((x) => 2 * x);
    for (let i = 0; i < v.length; i++) { if (!(v[i] > 0)) return null; logdet += Math.log(v[i]); }
    d.push(v);
  }
  const sg = new Float64Array(r * r);
  const g: (Float64Array | null)[] = new Array(l + 1).fill(null);
  for (let k = 0; k <= l; k++) {
    if (elim[k]) continue;
    const o = ko[k], s = sizes[k];
    // the diagonal block of F
    if (k === 0) for (let i = 0; i < s; i++) sg[(o + i) * r + o + i] = rho;
    else {
      const tk = tOf(k);
      for (let i = 0; i < s; i++) sg[(o + i) * r + o + i] = 2 * tk[i];
      if (k === l) for (let i = 0; i < s; i++) for (let j = 0; j <= i; j++) sg[(o + i) * r + o + j] -= lay.wl2[i * s + j];
    }
    // block k − 1 eliminated: − q_k²·T_k (W_{k−1}D⁻¹W_{k−1}ᵀ) T_k
    if (k >= 1 && elim[k - 1]) {
      const w = p.layers[k - 1], sp = sizes[k - 1], de = d[k - 1]!;
      let gk: Float64Array;
      if (k - 1 === 0) { gk = lay.gram0!.map((v) => v / rho); }
      else {
        const scaled = new Float64Array(w.w.length);
        for (let i = 0; i < s; i++) for (let c = 0; c < sp; c++) scaled[i * sp + c] = w.w[i * sp + c] / Math.sqrt(de[c]);
        gk = gramRows(scaled, s, sp);
      }
      g[k] = gk;
      const tk = tOf(k), qk = q[k - 1];
      for (let i = 0; i < s; i++) for (let j = 0; j <= i; j++) sg[(o + i) * r + o + j] -= qk * qk * tk[i] * tk[j] * gk[i * s + j];
    }
    // block k + 1 eliminated (k + 1 < l): − (q_{k+1}²/2)·W_kᵀT_{k+1}W_k
    if (k + 1 < l && elim[k + 1]) {
      const w = p.layers[k], sn = sizes[k + 1], tn = tOf(k + 1), qn = q[k];
      const scaled = new Float64Array(sn * s);
      for (let rr = 0; rr < sn; rr++) { const f = Math.sqrt(tn[rr] * qn * qn / 2); for (let c = 0; c < s; c++) scaled[c * sn + rr] = w.w[rr * s + c] * f; }
      const gg = new Float64Array(s * s);
      gramLower(scaled, s, sn, gg);
      for (let i = 0; i < s; i++) for (let j = 0; j <= i; j++) sg[(o + i) * r + o + j] -= gg[i * s + j];
    }
    // coupling to the next kept block: Σ_{k+1,k}[r][c] = q_{k+1}·t_r·W_k[r][c]
    if (k + 1 <= l && !elim[k + 1]) {
      const w = p.layers[k], on = ko[k + 1], tn = tOf(k + 1), qn = q[k];
      for (let rr = 0; rr < sizes[k + 1]; rr++) for (let c = 0; c < s; c++) sg[(on + rr) * r + o + c] = qn * tn[rr] * w.w[rr * s + c];
    }
    // across an eliminated block: Σ_{k+2,k}[r][c] = −(q_{k+1}q_{k+2}/2)·t_r·(W_{k+1}W_k)[r][c]
    const sk = lay.skip[k];
    if (sk) {
      const on = ko[k + 2], tn = tOf(k + 2), f = -(q[k] * q[k + 1]) / 2;
      for (let rr = 0; rr < sizes[k + 2]; rr++) for (let c = 0; c < s; c++) sg[(on + rr) * r + o + c] = f * tn[rr] * sk[rr * s + c];
    }
  }
  const ld = cholesky(sg, r);
  if (ld === null || !Number.isFinite(ld)) return null;
  return { rho, t, d, g, sigma: sg, logdet: logdet + ld };
}

/** Multiply-adds of one Newton system (V, the Gram matrix of the 2m vectors, the ρ row, H and its factor), factorisation excluded. */
export function structuredNewtonWork(lay: Layout): number {
  const { sizes, elim, l, r, m } = lay;
  let w = r ** 3 / 6 + 2 * m * (2 * m + 1) / 2 * r + 2 * m * sizes[0] * r + (sizes[0] ** 2 * r) / 2 + (m + 1) ** 3 / 6 + 2 * (m + 1) ** 2 + 12 * m * m;
  for (let h = 1; h <= l; h++) w += sizes[h] * sizes[h - 1] * r; // W_{h−1}·V_{h−1}
  for (let e = 0; e < l; e++) if (elim[e]) w += sizes[e] * sizes[e + 1] * r; // W_eᵀT·V_{e+1}
  return w;
}

/** Multiply-adds of one Newton step of the structured solver on a problem of these sizes (input reduced as the solver does; eight factorisations for the line and bound searches, as typically spent). */
export function structuredStepWork(p: LipSdpProblem): number {
  const shape: LipSdpProblem = { layers: p.layers.map((w, k) => ({ w: new Float64Array(0), rows: w.rows, cols: k === 0 ? Math.min(w.rows, w.cols) : w.cols })), slopes: p.slopes };
  const lay = layoutShape(shape);
  return structuredNewtonWork(lay) + 8 * factorWork(lay);
}

/** The layout's sizes only (no weights needed): for the work model. */
function layoutShape(p: LipSdpProblem): Layout {
  const l = p.layers.length - 1;
  const sizes = [p.layers[0].cols, ...p.layers.slice(0, -1).map((w) => w.rows)];
  const n = sizes.reduce((a, b) => a + b, 0);
  const elim = chooseEliminated(sizes, l);
  let r = 0;
  const ko = elim.map((e, b) => { const o = e ? -1 : r; if (!e) r += sizes[b]; return o; });
  return { p, l, sizes, n, m: n - sizes[0], unitOf: [], q: [], elim, ko, r, gram0: null, skip: [], wl2: new Float64Array(0), cap: null };
}

/** The Newton system at a factored point: H (lower triangle, (m+1)², factored in place) and a = ∇ log det F = (tr S_00, tr(SB_j)). */
function newtonSystem(lay: Layout, fz: Factor, raw = false): { h: Float64Array; a: Float64Array; sc?: Float64Array } | null {
  const { p, l, sizes, elim, ko, r, q, unitOf, m } = lay;
  const { rho, t, d } = fz;
  const linv = lowerInverse(fz.sigma, r);
  const tOf = (h: number) => t.subarray(unitOf[h - 1], unitOf[h - 1] + sizes[h]);
  // V per block (s_b × r): kept rows are rows of L⁻ᵀ
  const vb: Float64Array[] = new Array(l + 1);
  for (let k = 0; k <= l; k++) {
    if (elim[k]) continue;
    const o = ko[k], s = sizes[k], v = new Float64Array(s * r);
    for (let i = 0; i < s; i++) for (let c = o + i; c < r; c++) v[i * r + c] = linv[c * r + o + i];
    vb[k] = v;
  }
  // GA_h = W_{h−1}·V_{h−1} (the vectors Vᵀa_j of layer h), first where block h − 1 is kept
  const ga: Float64Array[] = new Array(l + 1);
  for (let h = 1; h <= l; h++) if (!elim[h - 1]) ga[h] = mul(p.layers[h - 1].w, sizes[h], sizes[h - 1], vb[h - 1], r);
  // eliminated blocks: V_e = −D_e⁻¹(Z_{e,e−1}V_{e−1} + Z_{e,e+1}V_{e+1}); Z_{e,e−1}V_{e−1} = q_e·T_e·GA_e, D_e = 2T_e there
  for (let e = 0; e <= l; e++) {
    if (!elim[e]) continue;
    const s = sizes[e], v = new Float64Array(s * r), de = d[e]!;
    if (e >= 1) { const f = -q[e - 1] / 2, g = ga[e]; for (let i = 0; i < v.length; i++) v[i] = f * g[i]; }
    // + (−1/d)·q_{e+1}·W_eᵀ·T_{e+1}·V_{e+1}
    const w = p.layers[e], sn = sizes[e + 1], tn = tOf(e + 1), vn = vb[e + 1], qn = q[e];
    for (let rr = 0; rr < sn; rr++) {
      const on = rr * r, f = qn * tn[rr];
      for (let i = 0; i < s; i++) {
        const c = w.w[rr * s + i] * f / de[i];
        if (c === 0) continue;
        const oi = i * r;
        for (let j = 0; j < r; j++) v[oi + j] -= c * vn[on + j];
      }
    }
    vb[e] = v;
  }
  for (let h = 1; h <= l; h++) if (elim[h - 1]) ga[h] = mul(p.layers[h - 1].w, sizes[h], sizes[h - 1], vb[h - 1], r);
  // Y = [Vᵀa_1 … Vᵀa_m; Vᵀe_1 … Vᵀe_m] (2m × r), G = YYᵀ + the Δ terms (lower triangle)
  const m2 = 2 * m;
  const y = new Float64Array(m2 * r);
  for (let h = 1; h <= l; h++) { y.set(ga[h], unitOf[h - 1] * r); y.set(vb[h], (m + unitOf[h - 1]) * r); }
  const g = new Float64Array(m2 * m2);
  gramLower(y, m2, r, g);
  for (let h = 1; h <= l; h++) {
    const u0 = unitOf[h - 1], s = sizes[h];
    // a_jᵀΔa_k (block h − 1 eliminated): the G of the factorisation
    if (elim[h - 1]) { const gh = fz.g[h]!; for (let i = 0; i < s; i++) for (let j = 0; j <= i; j++) g[(u0 + i) * m2 + u0 + j] += gh[i * s + j]; }
    // e_jᵀΔe_j (block h eliminated)
    if (elim[h]) { const de = d[h]!; for (let i = 0; i < s; i++) g[(m + u0 + i) * m2 + m + u0 + i] += 1 / de[i]; }
    // a_jᵀΔe_k with e_k in block h − 1 (layer h − 1 units, block h − 1 eliminated): W_{h−1}[j][k]/d_k; stored at row m + k, column j
    if (h >= 2 && elim[h - 1]) {
      const w = p.layers[h - 1], sp = sizes[h - 1], de = d[h - 1]!, up = unitOf[h - 2];
      for (let i = 0; i < s; i++) for (let c = 0; c < sp; c++) g[(m + up + c) * m2 + u0 + i] += w.w[i * sp + c] / de[c];
    }
  }
  // the ρ row: (S u)_{b0} = Δ_0u_0 + V_0·(Vᵀu) for the 2m vectors
  const n0 = sizes[0];
  const rr0 = mulT(y, m2, vb[0], n0, r);
  if (elim[0]) { const w0 = p.layers[0].w, s1 = sizes[1]; for (let i = 0; i < s1; i++) for (let c = 0; c < n0; c++) rr0[i * n0 + c] += w0[i * n0 + c] / rho; }
  const k1 = m + 1;
  const hm = new Float64Array(k1 * k1);
  const a = new Float64Array(k1);
  // S_00 = Δ_0 + V_0V_0ᵀ: tr and ‖·‖_F²
  const s00 = gramRows(vb[0], n0, r);
  let tr = 0, fro = 0;
  for (let i = 0; i < n0; i++) { if (elim[0]) s00[i * n0 + i] += 1 / rho; tr += s00[i * n0 + i]; }
  for (let i = 0; i < s00.length; i++) fro += s00[i] * s00[i];
  a[0] = tr;
  hm[0] = fro;
  const qu = new Float64Array(m);
  for (let h = 1; h <= l; h++) qu.fill(q[h - 1], unitOf[h - 1], unitOf[h - 1] + sizes[h]);
  const cap = lay.cap;
  for (let j = 0; j < m; j++) {
    const qj = qu[j];
    // tr(SB_j) = 2q_j·a_jᵀSe_j + 2e_jᵀSe_j
    a[j + 1] = 2 * qj * g[(m + j) * m2 + j] + 2 * g[(m + j) * m2 + m + j];
    let sae = 0, see = 0;
    const oa = j * n0, oe = (m + j) * n0;
    for (let c = 0; c < n0; c++) { sae += rr0[oa + c] * rr0[oe + c]; see += rr0[oe + c] * rr0[oe + c]; }
    hm[(j + 1) * k1] = 2 * qj * sae + 2 * see;
    const gj = j * m2, gej = (m + j) * m2, hj = (j + 1) * k1 + 1;
    for (let k = 0; k <= j; k++) {
      const qk = qu[k];
      const x = g[gj + k], yy = g[(m + k) * m2 + j], z = g[gej + k], w = g[gej + m + k];
      hm[hj + k] = 2 * qj * qk * (x * w + yy * z) + 4 * qj * yy * w + 4 * qk * z * w + 4 * w * w;
    }
    // the caps' barrier −Σ log(cap_j − t_j)
    if (cap) { const g = 1 / (cap[j] - t[j]); a[j + 1] -= g; hm[hj + j] += g * g; }
  }
  if (raw) return { h: hm, a };
  // Jacobi scaling before the factorisation (the multipliers' scales differ by orders of magnitude): H = D·Ĥ·D
  const sc = new Float64Array(k1);
  for (let i = 0; i < k1; i++) sc[i] = hm[i * k1 + i] > 0 ? 1 / Math.sqrt(hm[i * k1 + i]) : 1;
  for (let i = 0; i < k1; i++) for (let j = 0; j <= i; j++) hm[i * k1 + j] *= sc[i] * sc[j];
  if (cholesky(hm, k1) === null) return null;
  return { h: hm, a, sc };
}

/** x = (LLᵀ)⁻¹b from the Cholesky factor in the lower triangle of l (sdp.ts's substitutions). */
function solveFactored(l: Float64Array, n: number, b: Float64Array): Float64Array {
  const v = Float64Array.from(b);
  forward(l, n, v);
  backward(l, n, v);
  return v;
}

/**
 * A lower bound on the optimum: ρ* ≥ ‖W_l D ⋯ D W_0‖² for every D in the slope box, here D_h = β_h·I (or α_h·I, the
 * larger |·|), ‖·‖ from below by 30 power steps (a Rayleigh quotient never exceeds σ_max²).
 */
function witnessedRho(p: LipSdpProblem): number {
  const apply = (x: Float64Array, tr: boolean): Float64Array => {
    let v = x;
    const order = tr ? [...p.layers.keys()].reverse() : [...p.layers.keys()];
    for (const k of order) {
      const w = p.layers[k];
      const out = new Float64Array(tr ? w.cols : w.rows);
      if (!tr) for (let r = 0; r < w.rows; r++) { let s = 0; for (let c = 0; c < w.cols; c++) s += w.w[r * w.cols + c] * v[c]; out[r] = s; }
      else for (let r = 0; r < w.rows; r++) { const vr = v[r]; if (vr !== 0) for (let c = 0; c < w.cols; c++) out[c] += w.w[r * w.cols + c] * vr; }
      // the activation after W_k (forward), before it (adjoint)
      if (tr ? k >= 1 : k < p.layers.length - 1) {
        const [a, b] = p.slopes[tr ? k - 1 : k];
        const s = Math.abs(b) >= Math.abs(a) ? b : a;
        for (let i = 0; i < out.length; i++) out[i] *= s;
      }
      v = out;
    }
    return v;
  };
  let x: Float64Array = new Float64Array(p.layers[0].cols).fill(1);
  let best = 0;
  for (let it = 0; it < 30; it++) {
    const xn = Math.hypot(...x);
    if (!(xn > 0)) return 0;
    x = x.map((v) => v / xn);
    const y = apply(x, false);
    let yy = 0;
    for (const v of y) yy += v * v;
    best = Math.max(best, yy);
    x = apply(y, true);
  }
  return best;
}

/** sdp.ts's diagonal start (T_h = τ_h·I, margins doubled until the structured factorisation accepts it). */
function diagonalStart(lay: Layout): Factor {
  return sdpDiagonalStart(lay.p, 1e8, (rho, _lambda, t) => factor(lay, rho, t));
}

/**
 * Minimises ρ subject to F(ρ, t) ⪰ 0 (LipSDP-Neuron) for a problem with every α_h·β_h = 0 (structuredObstacle null) by
 * the structured dual barrier method above. Returns sdp.ts's LipSdpSolution: the last iterates (tightest first) for the
 * certificate, Newton steps, multiply-adds, and whether the gap bound reached relTol.
 */
export function solveLipSdpStructured(problem: LipSdpProblem, opts: StructuredOptions = {}): LipSdpSolution & { readonly lowerRho: number } {
  const p = structuredProblem(problem, 'structured');
  const lay = layout(p);
  const relTol = opts.relTol ?? 1e-4;
  const maxWork = opts.maxWork ?? Infinity;
  const fw = factorWork(lay), nw = structuredNewtonWork(lay);
  let work = fw;
  const warm = opts.start && opts.start.t.length === lay.m ? factor(lay, opts.start.rho, Float64Array.from(opts.start.t)) : null;
  let fz = warm ?? diagonalStart(lay);
  // caps t_j < CAP·(the start's largest multiplier of its layer): the set of (ρ, t) becomes bounded, so the central path
  // exists (without them a barrier iterate can drift towards t_j → ∞ where the LMI is nearly flat); a point of the capped
  // problem is a point of the original one, and the caps are far above what the optimum needs
  const cap = new Float64Array(lay.m);
  for (let h = 1; h <= lay.l; h++) {
    const u0 = lay.unitOf[h - 1], s = lay.sizes[h];
    let mx = 0;
    for (let i = 0; i < s; i++) mx = Math.max(mx, fz.t[u0 + i]);
    cap.fill(CAP * mx, u0, u0 + s);
  }
  lay.cap = cap;
  fz = factor(lay, fz.rho, fz.t)!;
  const n = lay.n + lay.m;
  const path: LmiPoint[] = [];
  const remember = () => { path.unshift({ rho: fz.rho, t: Float64Array.from(fz.t) }); if (path.length > 8) path.pop(); };
  remember();
  let lower: number = witnessedRho(p), steps = 0, converged = false, lastW = 0;
  const rp = RHO_P * n;
  const tAt = (dy: Float64Array, alpha: number) => fz.t.map((v, i) => v + alpha * dy[i + 1]);
  const at = (dy: Float64Array, alpha: number): Factor | null => { work += fw; return factor(lay, fz.rho + alpha * dy[0], tAt(dy, alpha)); };
  while (work + nw + (LINE_PROBES + BOUND_PROBES) * fw <= maxWork && steps < MAX_STEPS) {
    const sys = newtonSystem(lay, fz);
    work += nw;
    if (!sys) break;
    const sc = sys.sc!;
    const u1 = solveFactored(sys.h, lay.m + 1, Float64Array.from({ length: lay.m + 1 }, (_, i) => (i === 0 ? sc[0] : 0))).map((v, i) => v * sc[i]);
    const u2 = solveFactored(sys.h, lay.m + 1, sys.a.map((v, i) => v * sc[i])).map((v, i) => v * sc[i]);
    // λ(w)² = A·w² − 2B·w + C for w = 1/μ; Δy(w) = u₂ − w·u₁
    const A = u1[0], B = u2[0];
    let C = 0;
    for (let i = 0; i < u2.length; i++) C += sys.a[i] * u2[i];
    const dyOf = (w: number) => u2.map((v, i) => v - w * u1[i]);
    // the bound: X(1/w) ⪰ 0 ⇔ F(y − Δy(w)) ⪰ 0, with gap (N − C + wB)/w falling in w: the largest such w found. λ(w) ≤ THETA
    // guarantees it (Dikin); beyond, doubling then bisection with the structured factorisation
    const disc = B * B - A * (C - THETA * THETA);
    {
      let good = disc >= 0 && A > 0 ? (B + Math.sqrt(disc)) / A : 0, bad = Infinity;
      // outside the Dikin ellipsoid: try the w of the last step (scaled), then search
      if (!(good > 0) && lastW > 0) { if (at(dyOf(lastW), -1)) good = lastW; else bad = lastW; }
      for (let probe = 0; probe < BOUND_PROBES && (good > 0 || bad < Infinity); probe++) {
        const w = bad === Infinity ? 2 * good : good > 0 ? Math.sqrt(good * bad) : bad / 4;
        if (at(dyOf(w), -1)) good = w; else bad = w;
      }
      if (good > 0) lower = Math.max(lower, fz.rho - (n - C + good * B) / good);
    }
    const relGap = (fz.rho - lower) / fz.rho;
    opts.onIteration?.({ steps, rho: fz.rho, relGap, work });
    if (relGap <= relTol) { converged = true; break; }
    // the potential ψ(y) = ρ_p·log(ρ − ρ_lb) − log det F(y); its Newton-like direction is Δy(w) with w = ρ_p/(ρ − ρ_lb)
    // μ no smaller than the one whose Newton decrement is LAMBDA_MAX (a long but well-directed step; far from the central
    // path, the best-centred μ)
    const lamMin2 = C - (B * B) / A;
    const wLam = lamMin2 >= LAMBDA_MAX * LAMBDA_MAX ? B / A : (B + Math.sqrt(B * B - A * (C - LAMBDA_MAX * LAMBDA_MAX))) / A;
    const w = Math.min(rp / (fz.rho - lower), wLam > 0 ? wLam : Infinity);
    lastW = w;
    const dy = dyOf(w);
    const psi = (f: Factor) => (f.rho > lower ? rp * Math.log(f.rho - lower) - f.logdet : Infinity);
    let best: Factor | null = null, bestPsi = psi(fz);
    // a step of 1, longer while ψ falls, shorter while infeasible or ψ does not fall
    let alpha = 1;
    for (let probe = 0; probe < LINE_PROBES; probe++) {
      const f2 = at(dy, alpha);
      const v = f2 ? psi(f2) : Infinity;
      if (v < bestPsi) { best = f2; bestPsi = v; if (alpha >= 1) alpha *= 2; else break; }
      else if (best) break;
      else alpha *= 0.4;
    }
    steps++;
    if (!best) break;
    fz = best;
    remember();
  }
  return { point: path[0], path, newtonSteps: steps, work, converged, lowerRho: lower };
}

/** Test hook: log det F, its gradient and the Newton matrix (unfactored) at (ρ, t) of the reduced problem. */
export function _debugSystem(problem: LipSdpProblem, rho: number, t: Float64Array): { logdet: number; a: Float64Array; h: Float64Array } | null {
  const lay = layout(reduceInput(problem));
  const f = factor(lay, rho, t);
  if (!f) return null;
  const s = newtonSystem(lay, f, true);
  return s ? { logdet: f.logdet, a: s.a, h: s.h } : null;
}
