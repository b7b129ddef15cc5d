import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { denseObstacle as regionDenseObstacle } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import { BudgetExceededError, denseCertificateFlop, denseSpectralNormBound, formatMflop, gamma, roundUp, sqrtUp, UNDERFLOW_SLACK, UNIT_ROUNDOFF } from '../linalg/dense.js';
import { Random } from '../linalg/random.js';
import { denseSingularTriplets, topSingularTriplets, type SingularTriplets } from '../linalg/top-singular.js';
import { CALL_FLOP, regionFlop, WorkBudget } from '../linalg/work.js';
import type { Segment } from './cp.js';
import type { Bound } from './kinds.js';
import type { NormSettings } from './operator-norm.js';
import { regionBound } from './region-bounds.js';

const U = UNIT_ROUNDOFF;

/**
 * Defaults of SeqLip (ALGORITHMS.md §4), measured on this machine (2 shared cores, Node 20, one thread; ±50%).
 * `exactMaxWidth` 16: enumerating every slope pattern of one activation took 0.10 s for an 8×8 pair matrix at width 16,
 * 0.34 s for 16×16 at width 16, 1.3 s at width 18 and 10.8 s for 20×20 at width 20, against the default budget of 2 s
 * per activation (the budget check still narrows wider limits). `k` 32: greedy SeqLip on 784-512-512-10 ReLU nets with
 * spectra decaying like 1/i (onnxruntime route) took 0.6 s at k = 16, 1.1 s at 32, 4.1 s at 64 and 6.5 s at 128, the
 * estimate falling 0.133, 0.109, 0.097, 0.091 (the 2×2 bound of the discarded spectrum shrinks with k): 32 takes over
 * half the gain from 16 to 128 at a quarter of the cost of 64. `maxSweeps` 11: the reference experiments' cap.
 */
export const SEQLIP_DEFAULTS = { k: 32, exactMaxWidth: 16, maxSweeps: 11 } as const;

/** Options of seqlipSegmentBound. */
export interface SeqLipOptions {
  /** Singular triplets kept per operator by the greedy estimate; the rest of the spectrum enters through σ_{k+1} (default 32). */
  readonly k?: number;
  /** Widest activation whose 2^width slope patterns the certified route enumerates (default 16); wider ones use the midpoint–radius pair bound. */
  readonly exactMaxWidth?: number;
  /** Work for the whole segment in flop (linalg/work.ts; default settings.certifyBudget per activation); the certified route is skipped or narrowed to fit. */
  readonly budget?: number;
  /** Most first-improvement sweeps of the greedy search per activation (default 11). */
  readonly maxSweeps?: number;
}

/** What SeqLip found for one activation: the factor ‖Σ̃_{i+1}V_{i+1}ᵀ·D_i·U_iΣ̃_i‖ maximised over its slope patterns. */
export interface SeqLipPair {
  readonly activation: string;
  readonly width: number;
  /** True when the certified route enumerated all 2^width patterns (else it used the midpoint–radius bound). */
  readonly enumerated: boolean;
  /** Certified upper bound on the factor (null without a certified route). */
  readonly certified: number | null;
  /** Greedy estimate of the factor, with the 2×2 bound for the spectrum beyond k: no guarantee. */
  readonly greedy: number;
  /** Triplets kept on each side of the pair by the greedy estimate: [operator before, operator after]. */
  readonly kept: readonly [number, number];
}

/** The SeqLip bounds of one segment. */
export interface SeqLipResult {
  /** Certified ℓ2 upper bound (exact SeqLip, or SeqLip with midpoint–radius factors for wide activations), or null when it could not be afforded. */
  readonly certified: Bound | null;
  /** Greedy SeqLip on the top-k triplets: an estimate, never a bound. */
  readonly greedy: Bound;
  readonly pairs: readonly SeqLipPair[];
  /** Why the certified route was skipped or narrowed, or the greedy one's triplets left unconverged, in full sentences. */
  readonly notes: readonly string[];
  readonly ms: number;
}

/** The widest region given a full SVD (the float64 matrix itself: the backend's one DENSE_LIMIT, src/ir/operator.ts). */
const SVD_LIMIT = 256;

/**
 * The cost model of SeqLip's work, in flop-equivalents (linalg/work.ts: what the float64 kernels do in the same time,
 * about 1.4e6 flop per ms on the reference machine). ml-matrix's SVD did rows·cols·min(rows, cols) ≈ 3e4–4.5e4 per ms
 * (256×256: 0.37 s, 512×512: 3.9 s), so it is charged SVD_FLOP per unit of rows·cols·min; the pattern loop ran about
 * 6e5 multiply-adds per ms plus about 0.8 µs per pattern (the timings in SEQLIP_DEFAULTS); forming a dense matrix is
 * one onnxruntime run per column.
 */
const SVD_FLOP = 47;

/** The flop of one slope pattern of an r2×r1 pair: the sum of two tables, the Gram matrix, a Cholesky factorisation. */
function vertexFlop(r1: number, r2: number): number {
  const m = Math.min(r1, r2), inner = Math.max(r1, r2);
  return 2 * (r1 * r2 + (m * (m + 1) * inner) / 2 + (m * m * m) / 6 + 500);
}

/** Each greedy search may spend at least this much (flop), whatever the segment's budget has left. */
const GREEDY_FLOOR_FLOP = 7e7;

/** Each operator's Krylov triplets may take at least this much work (flop of its products). */
const TRIPLETS_FLOOR_FLOP = 8e8;

/** Which side of the Σ split an operator takes: the first keeps Σ on its left factor, the last on its right, others √Σ on both. */
function splitScales(i: number, count: number): { left: (s: number) => number; right: (s: number) => number } {
  if (i === 0) return { left: (s) => s, right: () => 1 };
  if (i === count - 1) return { left: () => 1, right: (s) => s };
  return { left: Math.sqrt, right: Math.sqrt };
}

/**
 * ‖A·D·B‖₂ ≤ min(‖[[‖A_k D B_k‖, s‖A_k‖‖B_r‖], [s‖A_r‖‖B_k‖, s‖A_r‖‖B_r‖]]‖₂, s‖A‖‖B‖) for A = [A_k; A_r] and
 * B = [B_k, B_r] split along singular vectors (so ‖A‖ = max(‖A_k‖, ‖A_r‖), likewise B) and ‖D‖ ≤ s: the norm of a block
 * matrix is at most that of its matrix of block norms (ALGORITHMS.md §4, "large layers"). Exact arithmetic, no rounding
 * margin: an upper bound when its inputs are; SeqLip feeds it estimates, so its greedy value stays an estimate.
 */
export function splitPairBound(kept: number, a: { readonly kept: number; readonly rest: number }, b: { readonly kept: number; readonly rest: number }, s: number): number {
  const m11 = kept, m12 = s * a.kept * b.rest, m21 = s * a.rest * b.kept, m22 = s * a.rest * b.rest;
  const f = m11 * m11 + m12 * m12 + m21 * m21 + m22 * m22;
  const det = m11 * m22 - m12 * m21;
  const block = Math.sqrt((f + Math.sqrt(Math.max(0, f * f - 4 * det * det))) / 2);
  return Math.min(block, s * Math.max(a.kept, a.rest) * Math.max(b.kept, b.rest));
}

/** Upward bound on ‖x‖_F² of a computed array: Σx² within γ_len. */
function frob2Up(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return roundUp(s, x.length + 1);
}

/**
 * Certified λ_max(Ĝ) ≤ s·(1 + m·γ/(1−γ) + 2u)·(1+u) for symmetric Ĝ with non-negative diagonal if floating-point Cholesky
 * of fl(s·I − Ĝ) runs to completion (Rump, BIT 46, 2006, Lemma 2.1, with Higham 2002, Thm 10.3, as choleskyCertify in
 * dense.ts derives it; the trace of sI − Ĝ is at most m·s(1+u) and each diagonal entry at most s(1+u)). Returns whether
 * it completed. `work` is m×m scratch.
 */
function choleskyHolds(g: Float64Array, m: number, s: number, work: Float64Array): boolean {
  for (let i = 0; i < m; i++) {
    const oi = i * m;
    for (let j = 0; j < i; j++) {
      const oj = j * m;
      let acc = -g[oi + j];
      for (let t = 0; t < j; t++) acc -= work[oi + t] * work[oj + t];
      work[oi + j] = acc / work[oj + j];
    }
    let piv = s - g[oi + i];
    for (let t = 0; t < i; t++) piv -= work[oi + t] * work[oi + t];
    if (!(piv > 0)) return false;
    work[oi + i] = Math.sqrt(piv);
  }
  return true;
}

/** The factor by which choleskyHolds's threshold s is raised to a certified λ_max bound for an m×m matrix. */
function choleskyFactor(m: number): number {
  const g = gamma(m + 1);
  return roundUp((1 + roundUp((m * g) / (1 - g), 3) + 2 * U) * (1 + U), 4);
}

/** λ_max of a small symmetric PSD matrix, as its largest singular value: an estimate used only to place the Cholesky threshold. */
function lambdaMaxEstimate(g: Float64Array, m: number): number {
  return denseSingularTriplets(g, m, m, 1).values[0];
}

/**
 * Certified upper bound on max_{d ∈ {a,b}^n} ‖R·diag(d)·L‖₂ (= the max over the box [a,b]^n: the norm is convex in d) for
 * R r2×n and L n×r1, both row-major float64 (ALGORITHMS.md §4, exact SeqLip); null once `work` is spent (each pattern
 * and each Cholesky retry charged by the cost model, so where it stops is the same on every run).
 *
 * Every pattern is formed as P̂ = fl(P_hi + P_lo) from two tables of partial sums Σ_j d_j·fl(R_:j L_j:) over the high and
 * low halves of the coordinates, so |P̂ − P| ≤ γ_{n+3}·s·|R||L| entrywise (s = max(|a|, |b|)) and
 * ‖P̂ − P‖₂ ≤ η = γ_{n+3}·s·‖R‖_F‖L‖_F for every pattern. Its smaller Gram matrix Ĝ = fl(P̂ᵀP̂) (or P̂P̂ᵀ) is within
 * γ_inner‖P̂‖_F² of the exact one. λ_max(Ĝ) ≤ c_m·t for the current threshold t whenever Cholesky of t·I − Ĝ completes
 * (choleskyHolds); when it fails, t is raised just above that pattern's eigenvalue estimate, so t only grows and every
 * pattern is covered by the final one. Then max_d ‖P(d)‖ ≤ sqrt(c_m·t + γ_inner·max‖P̂‖_F²) + η, rounded upward.
 */
function enumeratePairMax(r: Float64Array, l: Float64Array, r2: number, n: number, r1: number, slope: readonly [number, number], budget: WorkBudget): number | null {
  const [a, b] = slope;
  // P is stored m×inner (transposed when r1 < r2) so that its Gram matrix on the smaller side is rows·rows
  const m = Math.min(r1, r2), inner = Math.max(r1, r2), size = m * inner;
  const transposed = r1 < r2;
  const terms = new Float64Array(n * size);
  for (let j = 0; j < n; j++) for (let p = 0; p < r2; p++) {
    const rv = r[p * n + j];
    for (let q = 0; q < r1; q++) terms[j * size + (transposed ? q * r2 + p : p * r1 + q)] = rv * l[j * r1 + q];
  }
  const free = a === b ? 0 : n;
  const loBits = Math.floor(free / 2), hiBits = free - loBits;
  const table = (first: number, last: number, bits: number) => {
    const t = new Float64Array((1 << bits) * size);
    for (let mask = 0; mask < 1 << bits; mask++) {
      const o = mask * size;
      for (let j = first; j < last; j++) {
        const dj = (mask >> (j - first)) & 1 ? b : a;
        const oj = j * size;
        for (let e = 0; e < size; e++) t[o + e] += dj * terms[oj + e];
      }
    }
    return t;
  };
  const lo = table(0, loBits, loBits), hi = table(loBits, n, hiBits);
  const p = new Float64Array(size), g = new Float64Array(m * m), work = new Float64Array(m * m);
  let threshold = 0, trace = 0, vertices = 0;
  const perVertex = vertexFlop(r1, r2);
  for (let h = 0; h < 1 << hiBits; h++) {
    const oh = h * size;
    for (let w = 0; w < 1 << loBits; w++) {
      if ((++vertices & 1023) === 0) {
        budget.charge(1024 * perVertex);
        if (budget.exhausted) return null;
      }
      const ow = w * size;
      for (let e = 0; e < size; e++) p[e] = hi[oh + e] + lo[ow + e];
      // the lower triangle and diagonal of Ĝ = fl(P̂·P̂ᵀ): all that choleskyHolds reads
      let tr = 0;
      for (let i = 0; i < m; i++) {
        const oi = i * inner;
        for (let j = 0; j <= i; j++) {
          const oj = j * inner;
          let s = 0;
          for (let t = 0; t < inner; t++) s += p[oi + t] * p[oj + t];
          g[i * m + j] = s;
        }
        tr += g[i * m + i];
      }
      if (!Number.isFinite(tr)) throw new LipcheckError('UNSUPPORTED', `A SeqLip pair matrix has non-finite entries (its Gram trace is ${tr}); the operators' weights are too large for float64.`);
      if (tr > trace) trace = tr;
      if (choleskyHolds(g, m, threshold, work)) continue;
      for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) g[i * m + j] = g[j * m + i];
      budget.charge(SVD_FLOP * m * m * m);
      const lambda = lambdaMaxEstimate(g, m);
      let rho = 1e-10;
      for (let attempt = 0; ; attempt++, rho *= 16) {
        budget.charge((m * m * m) / 3);
        threshold = Math.max(threshold, lambda * (1 + rho) + 1e-300);
        if (choleskyHolds(g, m, threshold, work)) break;
        if (attempt > 40) throw new LipcheckError('INTERNAL', `No Cholesky certificate for a ${m}×${m} SeqLip Gram matrix up to ${threshold} (eigenvalue estimate ${lambda}).`);
      }
    }
  }
  budget.charge((vertices & 1023) * perVertex);
  const eta = roundUp(gamma(n + 3) * Math.max(Math.abs(a), Math.abs(b)) * sqrtUp(frob2Up(r)) * sqrtUp(frob2Up(l)), 4);
  const sigma2 = roundUp(choleskyFactor(m) * threshold + UNDERFLOW_SLACK + gamma(inner) * roundUp(trace, inner + m + 2), 4);
  return roundUp(sqrtUp(sigma2) + eta, 1);
}

/** A region's float64 matrix with a bound on its distance to the exact product of its stored weights. */
interface DenseRegion {
  readonly a: Float64Array;
  readonly rows: number;
  readonly cols: number;
  /** ‖Â − A‖₂ bound: float64 onnxruntime products of merged prims (as denseRegionBound in operator-norm.ts). */
  readonly delta: number;
}

/** Why a segment's regions cannot all be formed densely, or null when they can. */
function denseObstacle(regions: readonly LinearRegion[]): string | null {
  for (const r of regions) {
    const cols = sizeOf(r.inShape), rows = sizeOf(r.outShape);
    const why = regionDenseObstacle(r);
    if (why) return why;
    if (Math.min(rows, cols) > SVD_LIMIT) return `operator ${r.id} is ${rows}×${cols}, beyond the rank-${SVD_LIMIT} limit for a dense SVD`;
  }
  return null;
}

/** Why a segment can have no certified SeqLip bound (a convolution, a matrix too large to form or factor, certificates off), or null when it can. */
export function seqlipObstacle(segment: Segment, settings: Pick<NormSettings, 'certify' | 'norm'>): string | null {
  if (settings.norm !== '2') return 'SeqLip bounds the ℓ2 constant only';
  if (settings.certify === 'off' || settings.certify === 'none') return `certificates are off (--certify ${settings.certify})`;
  return denseObstacle(segment.regions);
}

async function formDense(region: LinearRegion, settings: NormSettings): Promise<DenseRegion> {
  const rows = sizeOf(region.outShape), cols = sizeOf(region.inShape);
  const a = await settings.backend.denseMatrix(region);
  // seqlipObstacle ruled out what the backend declines
  if (!a) throw new LipcheckError('INTERNAL', `The backend declined the float64 matrix of operator ${region.id}, which SeqLip had checked could be formed. Please report this with the model.`);
  const composed = regionBound(region, '2', 0);
  return { a, rows, cols, delta: roundUp(2 * composed.gammaSum * 2 ** -29 * composed.absNorm, 2) };
}

/** L̂ = U·diag(left(σ)) (rows×r) and R̂ = diag(right(σ))·Vᵀ (r×cols), row-major, from triplets. */
function factors(t: SingularTriplets, rows: number, cols: number, scales: ReturnType<typeof splitScales>): { l: Float64Array; r: Float64Array; rank: number } {
  const rank = t.values.length;
  const l = new Float64Array(rows * rank), r = new Float64Array(rank * cols);
  for (let j = 0; j < rank; j++) {
    const cl = scales.left(t.values[j]), cr = scales.right(t.values[j]);
    const u = t.left[j], v = t.right[j];
    for (let i = 0; i < rows; i++) l[i * rank + j] = u[i] * cl;
    for (let i = 0; i < cols; i++) r[j * cols + i] = v[i] * cr;
  }
  return { l, r, rank };
}

/** Row-major product X·Y of an p×q and a q×s matrix in float64. */
function multiply(x: Float64Array, y: Float64Array, p: number, q: number, s: number): Float64Array {
  const out = new Float64Array(p * s);
  for (let i = 0; i < p; i++) for (let t = 0; t < q; t++) {
    const v = x[i * q + t];
    if (v === 0) continue;
    for (let j = 0; j < s; j++) out[i * s + j] += v * y[t * s + j];
  }
  return out;
}

/**
 * Certified ‖Â − L̂R̂‖_F: the computed residual fl(â_ij − Σ_t l̂_it r̂_tj) is within γ_{r+1}(|Â| + |L̂||R̂|)_ij of the exact
 * one, so ‖Â − L̂R̂‖_F ≤ ‖fl(residual)‖_F + γ_{r+1}(‖Â‖_F + ‖L̂‖_F‖R̂‖_F).
 */
function residualBound(d: DenseRegion, l: Float64Array, r: Float64Array, rank: number): number {
  const res = new Float64Array(d.rows * d.cols);
  for (let i = 0; i < d.rows; i++) for (let j = 0; j < d.cols; j++) {
    let acc = d.a[i * d.cols + j];
    for (let t = 0; t < rank; t++) acc -= l[i * rank + t] * r[t * d.cols + j];
    res[i * d.cols + j] = acc;
  }
  const slack = gamma(rank + 1) * (sqrtUp(frob2Up(d.a)) + sqrtUp(frob2Up(l)) * sqrtUp(frob2Up(r)));
  return roundUp(sqrtUp(frob2Up(res)) + slack, 3);
}

/** Certified ‖X‖₂ of a float64 matrix charged to `work`, or null when it would not fit what is left of it. */
function normUp(x: Float64Array, rows: number, cols: number, work: WorkBudget): number | null {
  try {
    const v = denseSpectralNormBound(x, rows, cols, { budgetFlop: work.left }).value;
    work.charge(denseCertificateFlop(rows, cols));
    return v;
  } catch (e) {
    if (e instanceof BudgetExceededError) return null;
    throw e;
  }
}

interface CertifiedRoute {
  readonly bound: Bound;
  readonly pairs: readonly { value: number; enumerated: boolean }[];
  readonly factors: readonly { l: Float64Array; r: Float64Array; rank: number; svd: SingularTriplets }[];
}

/**
 * The certified SeqLip bound from float64 matrices M̂_i and their SVD factors M̂_i ≈ L̂_iR̂_i (Σ split as in §4).
 *
 * Margin, derived. Let M_i be the exact operator and E_i = M_i − L̂_iR̂_i, ‖E_i‖ ≤ e_i = ‖M̂_i − L̂_iR̂_i‖_F (certified,
 * residualBound) + ‖M̂_i − M_i‖ (the float64 products, DenseRegion.delta). Expanding J = M_K D_{K−1} ⋯ D_1 M_1 with
 * M_i = L̂_iR̂_i + E_i, the term without any E_i is L̂_K·[R̂_K D L̂_{K−1}]⋯[R̂_2 D L̂_1]·R̂_1, of norm
 * ≤ ‖L̂_K‖·Π p_i·‖R̂_1‖ with p_i ≥ max_D ‖R̂_{i+1} D_i L̂_i‖ (enumerated, or c‖R̂_{i+1}L̂_i‖ + r‖R̂_{i+1}‖‖L̂_i‖ for
 * D = c·I + r·T, |T| ≤ I); the others sum to at most Π s_i·[Π(α_i + e_i) − Π α_i] with α_i ≥ ‖L̂_iR̂_i‖ and s_i the
 * activations' largest |slope|, evaluated as Σ_j e_j·Π_{i<j}(α_i + e_i)·Π_{i>j}α_i to avoid cancellation. Every
 * norm is certified (denseSpectralNormBound, or enumeratePairMax) and every step rounded upward.
 */
async function certifiedRoute(segment: Segment, dense: readonly DenseRegion[], exactMaxWidth: number, work: WorkBudget, notes: string[]): Promise<CertifiedRoute | null> {
  const K = segment.regions.length;
  const fs = dense.map((d, i) => {
    work.charge(SVD_FLOP * d.rows * d.cols * Math.min(d.rows, d.cols));
    const svd = denseSingularTriplets(d.a, d.rows, d.cols);
    return { ...factors(svd, d.rows, d.cols, splitScales(i, K)), svd };
  });
  const e: number[] = [], alpha: number[] = [], normL: number[] = [], normR: number[] = [];
  for (const [i, d] of dense.entries()) {
    const f = fs[i];
    const nl = normUp(f.l, d.rows, f.rank, work), nr = nl === null ? null : normUp(f.r, f.rank, d.cols, work);
    if (nl === null || nr === null) { notes.push(`The certified SeqLip bound ran out of its work budget (${formatMflop(work.limit)} Mflop) while bounding the factors of ${segment.regions[i].id}.`); return null; }
    normL.push(nl);
    normR.push(nr);
    e.push(roundUp(residualBound(d, f.l, f.r, f.rank) + d.delta, 1));
    alpha.push(roundUp(nl * nr, 1));
  }

  const pairs: { value: number; enumerated: boolean }[] = [];
  // the cheapest enumerations first, each given what is left of the budget
  const order = segment.activations.map((_, i) => i).sort((x, y) => dense[x].rows - dense[y].rows);
  const values: (number | null)[] = new Array(K - 1).fill(null);
  const enumerated: boolean[] = new Array(K - 1).fill(false);
  for (const i of order) {
    const act = segment.activations[i];
    const n = dense[i].rows, r1 = fs[i].rank, r2 = fs[i + 1].rank;
    const [a, b] = act.slope;
    const c = Math.abs((a + b) / 2), rad = (b - a) / 2;
    const rl = multiply(fs[i + 1].r, fs[i].l, r2, n, r1);
    const nrl = normUp(rl, r2, r1, work);
    if (nrl === null) { notes.push(`The certified SeqLip bound ran out of its work budget (${formatMflop(work.limit)} Mflop) at activation '${act.name}'.`); return null; }
    const rlUp = roundUp(nrl + gamma(n) * sqrtUp(frob2Up(fs[i + 1].r)) * sqrtUp(frob2Up(fs[i].l)), 2);
    let value = roundUp(c * rlUp + rad * normR[i + 1] * normL[i], 3);
    if (n <= exactMaxWidth) {
      const predicted = (a === b ? 1 : 2 ** n) * vertexFlop(r1, r2);
      if (!work.fits(predicted)) {
        notes.push(`Activation '${act.name}' (width ${n}): enumerating its ${2 ** n} slope patterns would take about ${formatMflop(predicted)} Mflop, over the ${formatMflop(work.left)} Mflop left of the budget; its certified factor uses the midpoint–radius bound.`);
      } else {
        const got = enumeratePairMax(fs[i + 1].r, fs[i].l, r2, n, r1, [a, b], work);
        if (got === null) notes.push(`Activation '${act.name}' (width ${n}): the enumeration of its slope patterns ran out of its work budget; its certified factor uses the midpoint–radius bound.`);
        else {
          value = Math.min(value, got);
          enumerated[i] = true;
        }
      }
    }
    values[i] = value;
  }
  for (let i = 0; i < K - 1; i++) pairs.push({ value: values[i]!, enumerated: enumerated[i] });

  let main = normL[K - 1] * normR[0];
  for (const p of pairs) main *= p.value;
  main = roundUp(main, K + 2);
  let slopes = 1;
  for (const a of segment.activations) slopes *= Math.max(Math.abs(a.slope[0]), Math.abs(a.slope[1]));
  let cross = 0;
  for (let j = 0; j < K; j++) {
    let term = e[j];
    for (let i = 0; i < K; i++) if (i !== j) term *= i < j ? alpha[i] + e[i] : alpha[i];
    cross += term;
  }
  cross = roundUp(cross * slopes, 3 * K + 4);
  const all = pairs.every((p) => p.enumerated);
  const method = all ? 'seqlip-exact' : `seqlip-mixed(${pairs.filter((p) => p.enumerated).length}/${pairs.length} enumerated)`;
  return { bound: { value: roundUp(main + cross, 1), kind: 'certified', method }, pairs, factors: fs };
}

/** The leading singular value and right vector of a small row-major p×q matrix by power iteration on PᵀP from `start`. */
function powerTop(pm: Float64Array, p: number, q: number, start: Float64Array, maxSteps = 500): { sigma: number; x: Float64Array } {
  let x = Float64Array.from(start);
  const w = new Float64Array(p);
  let sigma = 0;
  for (let step = 0; step < maxSteps; step++) {
    let s2 = 0;
    for (let i = 0; i < p; i++) { let s = 0; for (let j = 0; j < q; j++) s += pm[i * q + j] * x[j]; w[i] = s; s2 += s * s; }
    const next = Math.sqrt(s2);
    const z = new Float64Array(q);
    for (let i = 0; i < p; i++) { const wi = w[i]; if (wi !== 0) for (let j = 0; j < q; j++) z[j] += pm[i * q + j] * wi; }
    let zn = 0;
    for (let j = 0; j < q; j++) zn += z[j] * z[j];
    zn = Math.sqrt(zn);
    const done = next - sigma <= 1e-14 * next;
    sigma = Math.max(sigma, next);
    if (zn === 0) break;
    for (let j = 0; j < q; j++) z[j] /= zn;
    x = z;
    if (done && step > 2) break;
  }
  return { sigma, x };
}

/**
 * Greedy SeqLip search for max_d ‖A·diag(d)·B‖₂, A k1×n given by its columns (`at`, n×k1 row-major) and B n×k2 row-major
 * (ALGORITHMS.md §4): start from d = b·1 and, in first-improvement sweeps over the coordinates, flip d_j between a and b
 * when a warm-started power iteration on the rank-one-updated k1×k2 pair matrix shows a larger norm. A local maximum:
 * an estimate, not a bound. Stops early once `work` is spent (each coordinate tried charged 6·k1·k2 flop per power step,
 * each accepted flip its rank-one update and warm restart), the same on every run.
 */
function greedyPairMax(at: Float64Array, k1: number, b: Float64Array, k2: number, n: number, slope: readonly [number, number], maxSweeps: number, work: WorkBudget, rng: Random): number {
  const [lo, hi] = slope;
  const d = new Uint8Array(n).fill(1);
  const pm = new Float64Array(k1 * k2);
  for (let j = 0; j < n; j++) for (let p = 0; p < k1; p++) {
    const c = at[j * k1 + p] * hi;
    if (c !== 0) for (let q = 0; q < k2; q++) pm[p * k2 + q] += c * b[j * k2 + q];
  }
  let { sigma, x } = powerTop(pm, k1, k2, rng.unitVector(k2));
  const w = new Float64Array(k1), z = new Float64Array(k2);
  for (let sweep = 0; sweep < maxSweeps && lo !== hi; sweep++) {
    let improved = false;
    for (let j = 0; j < n; j++) {
      if ((j & 255) === 0 && work.exhausted) return sigma;
      work.charge(3 * 6 * k1 * k2);
      const delta = d[j] ? lo - hi : hi - lo;
      const oa = j * k1, ob = j * k2;
      // three power steps on P' = P + δ·a_j·b_jᵀ from the current top right vector: ‖P'v‖ is a lower estimate of ‖P'‖
      let v = x, est = 0;
      for (let step = 0; step < 3; step++) {
        let bv = 0;
        for (let q = 0; q < k2; q++) bv += b[ob + q] * v[q];
        let wn = 0;
        for (let p = 0; p < k1; p++) { let s = delta * at[oa + p] * bv; for (let q = 0; q < k2; q++) s += pm[p * k2 + q] * v[q]; w[p] = s; wn += s * s; }
        est = Math.sqrt(wn);
        let aw = 0;
        for (let p = 0; p < k1; p++) aw += at[oa + p] * w[p];
        z.fill(0);
        for (let p = 0; p < k1; p++) { const wp = w[p]; if (wp !== 0) for (let q = 0; q < k2; q++) z[q] += pm[p * k2 + q] * wp; }
        let zn = 0;
        for (let q = 0; q < k2; q++) { z[q] += delta * b[ob + q] * aw; zn += z[q] * z[q]; }
        zn = Math.sqrt(zn);
        if (zn === 0) break;
        v = Float64Array.from(z, (t) => t / zn);
      }
      if (!(est > sigma * (1 + 1e-12))) continue;
      for (let p = 0; p < k1; p++) { const c = delta * at[oa + p]; if (c !== 0) for (let q = 0; q < k2; q++) pm[p * k2 + q] += c * b[ob + q]; }
      d[j] ^= 1;
      improved = true;
      work.charge(2 * k1 * k2 + 50 * 4 * k1 * k2);
      const top = powerTop(pm, k1, k2, v, 50);
      sigma = Math.max(top.sigma, est);
      x = top.x;
    }
    if (!improved) break;
  }
  return powerTop(pm, k1, k2, x).sigma;
}

/** Top-k triplets of each region: truncated dense SVDs when formed, else restarted block Krylov iteration through onnxruntime. */
async function tripletsOf(segment: Segment, settings: NormSettings, k: number, dense: readonly SingularTriplets[] | null, work: WorkBudget, notes: string[]): Promise<SingularTriplets[]> {
  if (dense) return dense.map((t) => ({ ...t, values: t.values.slice(0, k), left: t.left.slice(0, k), right: t.right.slice(0, k), next: t.values[k] ?? 0 }));
  const out: SingularTriplets[] = [];
  for (const [i, region] of segment.regions.entries()) {
    const op = await settings.backend.operator(region);
    try {
      const left = segment.regions.length - i;
      // each operator may spend half of its share of what is left, and at least TRIPLETS_FLOOR_FLOP, on its products
      const perProduct = regionFlop(region);
      const maxProducts = Math.max(1, Math.floor(Math.max(TRIPLETS_FLOOR_FLOP, work.left / (2 * left)) / perProduct));
      const t = await topSingularTriplets(op, k, { seed: settings.seed + 7919 * (3_000_000 + segment.ordinal * 4096 + i), maxIterations: settings.maxIterations, maxProducts });
      work.charge(t.products * perProduct);
      if (!t.converged) notes.push(`The top ${t.values.length} singular triplets of ${region.id} had not converged after ${t.iterations} Krylov cycle${t.iterations === 1 ? '' : 's'} (residual ${t.residual.toExponential(2)} against σ₁ = ${t.values[0].toExponential(3)}); the greedy estimate rests on them.`);
      out.push(t);
    } finally {
      await op.dispose();
    }
  }
  return out;
}

/**
 * SeqLip bounds on the ℓ2 Lipschitz constant of a sequential segment M_K∘σ_{K−1}∘⋯∘σ_1∘M_1 (ALGORITHMS.md §4; Scaman &
 * Virmaux 2018, §6): L ≤ Π_i max_{d} ‖Σ̃_{i+1}V_{i+1}ᵀ·D_i·U_iΣ̃_i‖ with D_i = a·I + (b−a)·diag(d), d ∈ {0,1}^{n_i}, for
 * each activation's slope range [a, b] (any signs: the norm is convex in d, so the box's maximum sits at a vertex).
 * `certified`: from float64 matrices of conv-free regions small enough to form, every pattern of activations up to
 * `exactMaxWidth` enumerated, wider ones bounded by midpoint–radius, with rounding and factorisation margins
 * (certifiedRoute); null when not affordable (see `notes`) or under certify 'off'. `greedy`: a local maximum on the top-k
 * triplets with the 2×2 bound for the rest of the spectrum, an estimate.
 */
export async function seqlipSegmentBound(segment: Segment, settings: NormSettings, opts: SeqLipOptions = {}): Promise<SeqLipResult> {
  const t0 = performance.now();
  const K = segment.regions.length;
  if (settings.norm !== '2') throw new LipcheckError('USAGE', `SeqLip bounds the ℓ2 constant only (it rests on singular value decompositions); got --norm ${settings.norm}. Use --norm 2, or the cp or autolip method for ℓ∞.`);
  if (K < 2 || segment.activations.length !== K - 1) throw new LipcheckError('INTERNAL', `Segment ${segment.id} has ${K} operators and ${segment.activations.length} activations; SeqLip needs at least two operators with one activation between each pair.`);
  const k = opts.k ?? SEQLIP_DEFAULTS.k;
  if (!Number.isInteger(k) || k < 1) throw new LipcheckError('USAGE', `SeqLip's k (singular triplets kept per operator) must be a positive integer; got ${k}.`);
  const exactMaxWidth = opts.exactMaxWidth ?? SEQLIP_DEFAULTS.exactMaxWidth;
  if (!Number.isInteger(exactMaxWidth) || exactMaxWidth < 0 || exactMaxWidth > 24) throw new LipcheckError('USAGE', `SeqLip's exact width limit must be an integer from 0 to 24 (2^width slope patterns are enumerated); got ${exactMaxWidth}.`);
  const maxSweeps = opts.maxSweeps ?? SEQLIP_DEFAULTS.maxSweeps;
  if (!Number.isInteger(maxSweeps) || maxSweeps < 0) throw new LipcheckError('USAGE', `SeqLip's greedy sweep limit must be a non-negative integer; got ${maxSweeps}.`);
  const budget = opts.budget ?? settings.certifyBudget * (K - 1);
  if (!(budget >= 0)) throw new LipcheckError('USAGE', `SeqLip's work budget must be a non-negative number of flop; got ${budget}.`);
  const work = new WorkBudget(budget, "SeqLip's work budget");
  const notes: string[] = [];

  let route: CertifiedRoute | null = null;
  const obstacle = denseObstacle(segment.regions);
  if (obstacle) notes.push(`No certified SeqLip bound for ${segment.id}: ${obstacle}.`);
  else {
    const svdFlop = segment.regions.reduce((s, r) => { const rows = sizeOf(r.outShape), cols = sizeOf(r.inShape); return s + SVD_FLOP * rows * cols * Math.min(rows, cols) + cols * CALL_FLOP; }, 0);
    if (settings.certify === 'off' || settings.certify === 'none') notes.push(`No certified SeqLip bound for ${segment.id}: certificates are off (--certify ${settings.certify}).`);
    else if (svdFlop > 0.5 * budget) notes.push(`No certified SeqLip bound for ${segment.id}: forming and factorising its operators' matrices would take about ${formatMflop(svdFlop)} Mflop, over half the ${formatMflop(budget)} Mflop budget; raise --certify-work to get one.`);
    else {
      const dense: DenseRegion[] = [];
      for (const r of segment.regions) dense.push(await formDense(r, settings));
      // keep a quarter of the budget for the greedy estimate
      const certWork = new WorkBudget(0.75 * budget);
      certWork.charge(segment.regions.reduce((s, r) => s + sizeOf(r.inShape) * CALL_FLOP, 0));
      route = await certifiedRoute(segment, dense, exactMaxWidth, certWork, notes);
      work.charge(certWork.spent);
    }
  }

  const triplets = await tripletsOf(segment, settings, k, route ? route.factors.map((f) => f.svd) : null, work, notes);
  const rng = new Random(settings.seed + 7919 * (4_000_000 + segment.ordinal));
  const pairs: SeqLipPair[] = [];
  let greedy = 1;
  for (const [i, act] of segment.activations.entries()) {
    const before = triplets[i], after = triplets[i + 1];
    const n = sizeOf(act.outShape);
    const sl = splitScales(i, K), sr = splitScales(i + 1, K);
    const k1 = after.values.length, k2 = before.values.length;
    const at = new Float64Array(n * k1), b = new Float64Array(n * k2);
    for (let p = 0; p < k1; p++) { const c = sr.right(after.values[p]); for (let j = 0; j < n; j++) at[j * k1 + p] = after.right[p][j] * c; }
    for (let q = 0; q < k2; q++) { const c = sl.left(before.values[q]); for (let j = 0; j < n; j++) b[j * k2 + q] = before.left[q][j] * c; }
    const greedyWork = new WorkBudget(Math.max(work.left, GREEDY_FLOOR_FLOP));
    const search = greedyPairMax(at, k1, b, k2, n, act.slope, maxSweeps, greedyWork, rng);
    work.charge(greedyWork.spent);
    const s = Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1]));
    const value = splitPairBound(search, { kept: sr.right(after.values[0] ?? 0), rest: sr.right(after.next) }, { kept: sl.left(before.values[0] ?? 0), rest: sl.left(before.next) }, s);
    greedy *= value;
    const c = route?.pairs[i];
    pairs.push({ activation: act.name, width: n, enumerated: c?.enumerated ?? false, certified: c?.value ?? null, greedy: value, kept: [k2, k1] });
  }
  return { certified: route?.bound ?? null, greedy: { value: greedy, kind: 'estimate', method: `seqlip-greedy(k=${k})` }, pairs, notes, ms: performance.now() - t0 };
}
