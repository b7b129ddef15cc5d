import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import type { OperatorBackend } from '../ir/operator.js';
import { lanczosTop, NonFiniteError } from '../linalg/lanczos.js';
import { BudgetExceededError, denseCertificateFlop, roundUp, denseSpectralNormBound, denseSpectralNormBoundWith, type GramKernel } from '../linalg/dense.js';
import { sizeOf, toFloat64 } from '../ir/tensor.js';
import { kwStopSteps, ritzFactor } from '../linalg/probabilistic.js';
import { Random } from '../linalg/random.js';
import { regionFlop } from '../linalg/work.js';
import type { Bound, NormKind } from './kinds.js';
import { foldScales, regionBound, U32 } from './region-bounds.js';
import type { ScaledMaps } from './scaled-power.js';

/** How hard to work on each operator and what to promise. */
export interface NormSettings {
  readonly norm: NormKind;
  readonly certify: 'strict' | 'auto' | 'off' | 'none';
  readonly delta: number;
  readonly tol: number;
  readonly maxIterations: number;
  readonly seed: number;
  /** Operators of the regions (src/backend/ in the CLI, fakes in tests): the estimators open no sessions themselves. */
  readonly backend: OperatorBackend;
  /** Work budget (flop, linalg/work.ts) of one deterministic certificate: the cap of measureRegion's certificate budget. */
  readonly certifyBudget: number;
  /**
   * Where operators may be measured off this thread (src/workers/region-pool.ts in the CLI): measureRegion hands a
   * region to it first, and runs it here where it declines (null). It must return what measureRegion would here.
   */
  readonly offload?: RegionOffload;
}

/** NormSettings without the parts that live on one thread: what a region worker is sent. */
export type PlainNormSettings = Omit<NormSettings, 'backend' | 'offload'>;

/** What productLanczos (cp.ts) finds on a product's Gram map. */
export interface ProductRun {
  readonly bound: Bound | null;
  readonly estimate: number;
  readonly iterations: number;
  readonly work: number;
  readonly gramVector: Float64Array;
  /** The run's probabilistic factor (ritzFactor), as OperatorNorm.factor. */
  readonly factor?: RitzFactor;
}

/**
 * Threads that measure whole operators on their own backends, `width` of them at once: each method returns what
 * the estimator of that name (measureRegion; cp.ts's productLanczos) returns for the same arguments, or null where
 * the caller should run it itself.
 */
export interface RegionOffload {
  readonly width: number;
  /** Whether `measure` and `product` take this region (rather than answer null). */
  takes(region: LinearRegion): boolean;
  measure(region: LinearRegion, settings: PlainNormSettings, index: number): Promise<OperatorNorm> | null;
  product(region: LinearRegion, settings: PlainNormSettings, index: number, margins: readonly ProductError[]): Promise<ProductRun> | null;
  /** product-fold.ts's gramFactor on a thread of its own (the same function and kernel rule, so the same factor), or null. */
  factor?(m: Float64Array, c: number, n: number, relErr: number): Promise<GramFactor | null> | null;
  /**
   * The maps of a scaling descent (graph-cp-scaling.ts), each on a region worker of its own for the whole descent (null
   * entries: maps without a region, never sent), or null where the offload does not take them (`perEvaluation`: the
   * flop of one evaluation of every map, by the cost model).
   */
  scaledMaps?(regions: readonly (LinearRegion | null)[], perEvaluation: number): ScaledMaps | null;
}

/** A float32 factor F of a Gram matrix G = M·Mᵀ and a certified bound err ≥ ‖G_exact − F·Fᵀ‖₂ (product-fold.ts gramFactor). */
export interface GramFactor {
  readonly f: Float64Array;
  readonly err: number;
}

/** `settings` without its backend and offload, for a region worker. */
export function plainSettings(settings: NormSettings): PlainNormSettings {
  const { backend: _backend, offload: _offload, ...plain } = settings;
  return plain;
}

/** How many operators a caller may measure at once (mapInLanes): the backend's concurrency, or the offload's width and this thread. */
export function laneWidth(settings: Pick<NormSettings, 'backend' | 'offload'>): number {
  return Math.max(settings.backend.concurrency ?? 1, settings.offload ? settings.offload.width + 1 : 1);
}

/** Everything measured on one merged operator. */
export interface OperatorNorm {
  readonly estimate: number | null;
  readonly upper: Bound;
  readonly candidates: readonly Bound[];
  readonly iterations: number;
  /** Wall-clock time (a timing only: nothing is decided by it). */
  readonly ms: number;
  /** Work of the Lanczos iteration by the cost model (iterations × one apply and one adjoint, flop), for budgets. */
  readonly work: number;
  /** Top right singular vector estimate (input space), for witnesses. */
  readonly direction: Float64Array | null;
  /**
   * Set where a dense certificate replaced the Lanczos run (pointwise convolutions): the steps and work that run would
   * have counted. The later phases' budgets scale with the norm phase's work and steps (budgetBasis), so skipping a run
   * changes no budget and no other bound.
   */
  readonly replaced?: { readonly iterations: number; readonly work: number };
  /**
   * The probabilistic factor of the Lanczos run behind the estimate (ritzFactor: λ_max ≤ θ·f² except with probability
   * δ, θ = estimate²), for bounds recomputed from the same run with another rounding margin; absent where none was found.
   */
  readonly factor?: RitzFactor;
}

/** A Lanczos run's probabilistic factor and which bound gave it (linalg/probabilistic.ts ritzFactor). */
export type RitzFactor = ReturnType<typeof ritzFactor>;

/**
 * The method label of a bound from a run's factor: `lanczos-kw…(detail)`, or `lanczos-poly…(detail)` where the Lanczos
 * polynomial gave it; detail is usually `k=<steps>`.
 */
export function ritzMethod(f: RitzFactor, detail: string, suffix = ''): string {
  return `lanczos-${f.method === 'poly' ? 'poly' : 'kw'}${suffix}(${detail})`;
}

/**
 * The stop rule of measureRegion's and productLanczos's runs on a Gram map of size n: converged (θ moved by at most
 * 0.1·tol·θ, from step 3) and, where a KW bound is wanted (`kw`), at least k₀ steps, the fixed first step whose KW
 * factor is at most 1 + tol (kwStopSteps: ritzFactor takes KW's factor there for a later stop); `expectedSteps` sizes
 * a fused run (GramOperator.lanczos) by k₀, and is absent without KW.
 */
export function lanczosStopping(n: number, settings: Pick<NormSettings, 'delta' | 'tol'>, kw: boolean): { k0: number; stop: (theta: number, k: number, prev: number) => boolean; expectedSteps: number | undefined } {
  const k0 = kwStopSteps(n, settings.delta, settings.tol);
  return {
    k0,
    stop: (theta, k, prev) => k >= 3 && Math.abs(theta - prev) <= 0.1 * settings.tol * theta && (!kw || k >= k0),
    expectedSteps: kw ? k0 : undefined,
  };
}

/** The work and steps a measured operator counts for the budgets of later phases (CP, residual blocks, graph CP). */
export function budgetBasis(m: OperatorNorm): { iterations: number; work: number } {
  return m.replaced ?? { iterations: m.iterations, work: m.work };
}

/**
 * A region that is one convolution with 1×1 kernels once per-channel scalings are folded into it (ResNet's bottleneck
 * and downsampling convs). Per group it maps x ↦ (W_g ⊗ S)x, S the pixel selection of the strides and pads: its rows are
 * distinct unit vectors or zero, so ‖S‖₂ ≤ 1 and ‖A‖₂ ≤ max_g σ_max(W_g) (equal when no pad adds an all-padding output
 * pixel). σ_max(W_g) is certified by denseSpectralNormBound on the folded float64 weights; the folding multiplies each
 * weight by at most two per-channel factors, each product rounded once (relative error ≤ 2u + u², u = 2⁻⁵³), so the
 * folded matrix differs from the exact one by E with |E| ≤ 2⁻⁵¹·|W'|, and ‖E‖₂ ≤ 2⁻⁵¹·‖|W'|‖₂ is added, with `absNorm` ≥ ‖|W'|‖₂
 * (regionBound's √(‖W'‖₁‖W'‖∞) of the folded conv, which bounds every group's block too; summed here from the folded
 * weights when not given, the same sums).
 * One C_out × C_in certificate instead of Lanczos steps over every pixel. Null for any other region or past `budget`.
 * `gram`: the backend's float64 Gram kernel (OperatorBackend.denseGram), same certificate and margin (GramKernel).
 */
export async function pointwiseConvBound(region: LinearRegion, budget: number, absNorm?: number, gram?: GramKernel): Promise<{ bound: Bound; estimate: number; flop: number } | null> {
  // a look before folding (which copies every weight in float64): one conv with 1×1 kernels and per-channel scalings
  // only, which every region that folds into one 1×1 conv is (folding merges a conv with scalings, never two convs)
  const convs = region.nodes.filter((n) => n.prim.op === 'conv');
  const only = convs.length === 1 ? convs[0].prim : null;
  if (!only || only.op !== 'conv' || only.weight.dims.slice(2).some((k) => k !== 1) || region.nodes.some((n) => n.prim.op !== 'conv' && n.prim.op !== 'scale')) return null;
  const folded = foldScales(region.nodes);
  if (folded.length !== 1) return null;
  const p = folded[0].prim;
  if (p.op !== 'conv' || p.weight.dims.slice(2).some((k) => k !== 1)) return null;
  const [cout, cinG] = p.weight.dims;
  const g = p.group;
  const rows = cout / g, cols = cinG;
  if (!Number.isInteger(rows) || rows < 1 || cols < 1) return null;
  const flop = g * denseCertificateFlop(rows, cols);
  if (flop > budget) return null;
  const w = toFloat64(p.weight);
  // ‖E‖₂ ≤ (2u + u²)·‖|W'|‖₂ ≤ (2u + u²)·absNorm; 2⁻⁵¹ is twice 2u, and that slack covers the rounding of absNorm's
  // sums and of the final addition
  const margin = 2 ** -51 * (absNorm ?? schurAbsNorm(w, g, rows, cols));
  let value = 0, estimate = 0, method = '';
  for (let k = 0; k < g; k++) {
    let b;
    try {
      b = await denseSpectralNormBoundWith(w.subarray(k * rows * cols, (k + 1) * rows * cols), rows, cols, { budgetFlop: budget, gram });
    } catch (e) {
      if (e instanceof BudgetExceededError) return null;
      throw e;
    }
    value = Math.max(value, b.value + margin);
    estimate = Math.max(estimate, b.estimate);
    method = b.method;
  }
  return { bound: { value, kind: 'certified', method: `${method}(1×1 conv)` }, estimate, flop };
}

/** √(‖|W|‖₁‖|W|‖∞) of the block-diagonal matrix of `g` row-major rows×cols blocks: Schur's bound on ‖|W|‖₂. */
function schurAbsNorm(w: Float64Array, g: number, rows: number, cols: number): number {
  let maxRow = 0, maxCol = 0;
  const colSums = new Float64Array(cols);
  for (let k = 0; k < g; k++) {
    colSums.fill(0);
    for (let r = 0; r < rows; r++) {
      const o = (k * rows + r) * cols;
      let sum = 0;
      for (let c = 0; c < cols; c++) {
        const a = Math.abs(w[o + c]);
        sum += a;
        colSums[c] += a;
      }
      maxRow = Math.max(maxRow, sum);
    }
    for (let c = 0; c < cols; c++) maxCol = Math.max(maxCol, colSums[c]);
  }
  return Math.sqrt(maxRow * maxCol);
}

/** The unit roundoff of the backend's float32 products (OperatorBackend.float32Unit): 2⁻²⁴ unless it says otherwise. */
export function float32Unit(settings: { readonly backend: OperatorBackend }): number {
  return settings.backend.float32Unit ?? U32;
}

/**
 * How far a float32 operator's products may be from the exact ones: every computed A·v and Aᵀ·w is off by at most
 * eps·‖v‖ (resp. eps·‖w‖), and ‖A‖ ≤ total where a bound is known (Infinity where none is). One computed AᵀA (or AAᵀ)
 * application is then off by at most (2‖A‖·eps + eps²)·‖v‖: ‖Aᵀe₁‖ ≤ ‖A‖·eps·‖v‖ for the forward error e₁, and the
 * adjoint's error is at most eps·‖A·v + e₁‖ ≤ eps·(‖A‖ + eps)·‖v‖ (docs/algorithms-fused-lanczos.md §2, "the margin").
 */
export interface ProductError {
  readonly eps: number;
  readonly total: number;
}

/**
 * The float32 rounding error of a region's products: A·v or Aᵀ·w of a chain of k prims differs from the exact one by
 * at most (Σγ_{K_i+1})·‖|A|‖·‖v‖ (first-order, any summation order), so eps = gP with g = Σγ, P = ‖|A|‖₂ bound, and
 * ‖A‖ ≤ P. It assumes IEEE float32 products on the CPU and CUDA (TF32 is switched off before the provider starts:
 * backend/runtime.ts pinCudaNumerics); on WebGPU the γ-sum is taken with WGSL's unit 2⁻²³ (float32Unit).
 */
export function roundingError(parts: { readonly gammaSum: number; readonly absNorm: number }): ProductError {
  return { eps: roundUp(parts.gammaSum * parts.absNorm, 1), total: parts.absNorm };
}

/** The bound on one Gram application's error per unit vector that ProductError implies, with ‖A‖ ≤ total: 2·total·eps + eps². */
export function gramMargin(e: ProductError): number {
  return roundUp(2 * e.total * e.eps + e.eps * e.eps, 4);
}

/** The a-priori Gram margin of a region's products (roundingMargin = gramMargin(roundingError)): 2gP² + (gP)². */
export function roundingMargin(gammaSum: number, absNorm: number): number {
  return gramMargin(roundingError({ gammaSum, absNorm }));
}

/**
 * The KW upper bound on ‖A‖ from a Ritz value θ of the computed Gram map and the KW factor f, given the products'
 * error e. KW bounds the top eigenvalue of the Gram map Lanczos ran on, whose distance from AᵀA is at most
 * 2‖A‖·eps + eps² (ProductError), so σ = ‖A‖ satisfies σ² ≤ θf² + 2σ·eps + eps²: a quadratic in σ whose root gives
 * σ ≤ eps + √(θf² + 2eps²). Where ‖A‖ ≤ total is known, σ² ≤ θf² + 2·total·eps + eps² too; the smaller is returned.
 * The first never exceeds the second by more than (1 + √2)·eps (whatever total is), and is far below it where total is loose
 * (a ‖|A|‖ bound, or a composition of norms): the margin then scales with the norm being bounded, not with the bound on it.
 */
export function kwUpper(theta: number, factor: number, e: ProductError): number {
  const t = Math.max(0, theta) * factor * factor;
  const implicit = e.eps + Math.sqrt(t + 2 * e.eps * e.eps);
  const viaTotal = Number.isFinite(e.total) ? Math.sqrt(t + gramMargin(e)) : Infinity;
  return roundUp(Math.min(implicit, viaTotal), 8);
}

/**
 * A floor under ‖A‖ from a Ritz value θ of its computed Gram map, given the products' error e (never above ‖A‖): every
 * Ritz value is at most the top eigenvalue of the map Lanczos ran on, within 2σ·eps + eps² of AᵀA, so θ ≤ (σ + eps)²
 * and σ ≥ √θ − eps; where ‖A‖ ≤ total is known, σ² ≥ θ − 2·total·eps − eps² too. The larger, lowered for rounding.
 */
export function ritzFloor(theta: number, e: ProductError): number {
  if (!(theta > 0)) return 0;
  const direct = Math.sqrt(theta) - e.eps;
  const viaTotal = Number.isFinite(e.total) ? Math.sqrt(Math.max(0, theta - gramMargin(e))) : 0;
  return Math.max(0, Math.max(direct, viaTotal) * (1 - 1e-6));
}

/**
 * Under --certify auto a region's certificates may cost CERTIFY_PER_LANCZOS × its Lanczos work (flop), at least
 * CERTIFY_FLOOR_FLOP and at most the --certify-work cap: about twice the estimate's time on the reference machine,
 * where onnxruntime did about 4e6 flop/ms (linalg/work.ts) and the certificates' float64 kernels about 1.4e6, and never
 * less than 200 ms of certificate work. Counted, not timed: the same on every run.
 */
const CERTIFY_PER_LANCZOS = 0.7;
const CERTIFY_FLOOR_FLOP = 2.8e8;

/** The work budget of a region's certificates (flop) after a Lanczos run of `lanczosWork` flop, by the rule above. */
export function certificateBudget(settings: Pick<NormSettings, 'certify' | 'certifyBudget'>, lanczosWork: number): number {
  if (settings.certify === 'strict') return settings.certifyBudget;
  return Math.min(settings.certifyBudget, Math.max(CERTIFY_FLOOR_FLOP, CERTIFY_PER_LANCZOS * lanczosWork));
}

/**
 * A certified bound for a small region with no convolution whose composition is loose (several weighted ops, linear
 * residual sums, unfolded scalings): its matrix is formed column by column by a float64 onnxruntime graph and bounded
 * exactly (denseSpectralNormBound). Each entry is off by at most g₆₄·(|A_k|⋯|A_1|)_ij with g₆₄ = Σγ_K in float64, so
 * ‖Â − A‖₂ ≤ g₆₄·P (P the ‖|A|‖ bound of the composition); that is added.
 */
async function denseRegionBound(region: LinearRegion, composed: ReturnType<typeof regionBound>, settings: NormSettings, budget: number): Promise<Bound | null> {
  if (['exact', 'exact-eig', 'exact-svd', 'gram-iteration', 'row-sum'].includes(composed.method)) return null;
  // null for convolutions (no float64 kernel) and beyond the backend's one dense limit (DENSE_LIMIT)
  const m = await settings.backend.denseMatrix(region);
  if (!m) return null;
  const cols = sizeOf(region.inShape), rows = sizeOf(region.outShape);
  try {
    const b = denseSpectralNormBound(m, rows, cols, { budgetFlop: budget });
    const g64 = composed.gammaSum * 2 ** -29;
    return { value: b.value + 2 * g64 * composed.absNorm, kind: 'certified', method: `${b.method}(dense region)` };
  } catch (e) {
    if (e instanceof BudgetExceededError) return null;
    throw e;
  }
}

/** Measures one region: Lanczos estimate, KW probabilistic bound and a certified bound, chosen per `certify`. */
export async function measureRegion(region: LinearRegion, settings: NormSettings, index: number): Promise<OperatorNorm> {
  const elsewhere = settings.offload?.measure(region, plainSettings(settings), index);
  if (elsewhere) return elsewhere;
  const t0 = performance.now();
  const candidates: Bound[] = [];
  // a pointwise convolution: one small dense certificate, exact and cheaper than any Lanczos run on it; it folds the
  // weights once and sums them for its own margin, so the composition below (a second fold) is left out
  const pointwise = settings.norm === 'inf' || settings.certify === 'none' ? null : await pointwiseConvBound(region, settings.certifyBudget, undefined, settings.backend.denseGram);
  if (pointwise) {
    const n = Math.min(sizeOf(region.inShape), sizeOf(region.outShape));
    const steps = Math.min(settings.maxIterations, kwStopSteps(n, settings.delta, settings.tol));
    return {
      estimate: pointwise.estimate,
      upper: pointwise.bound,
      candidates: [pointwise.bound],
      iterations: 0,
      ms: performance.now() - t0,
      work: pointwise.flop,
      direction: null,
      replaced: { iterations: steps, work: 2 * steps * regionFlop(region) },
    };
  }

  // Schur/isometry composition: free, and it supplies the rounding margin's ‖|A|‖ bound
  const cheap = regionBound(region, settings.norm, 0, float32Unit(settings));
  if (settings.norm === 'inf') {
    const upper: Bound = { value: cheap.value, kind: 'certified', method: cheap.method };
    return { estimate: cheap.method === 'exact' || cheap.method === 'row-sum' ? cheap.value : null, upper, candidates: [upper], iterations: 0, ms: performance.now() - t0, work: 0, direction: null };
  }

  const noWeights = cheap.method === 'exact';
  let estimate: number | null = noWeights ? cheap.value : null;
  let iterations = 0;
  let work = 0;
  let direction: Float64Array | null = null;
  let factor: RitzFactor | undefined;
  if (!noWeights) {
    // Lanczos runs on the smaller of AᵀA and AAᵀ (the backend's Gram map: one run per step where it can)
    const op = await settings.backend.gram(region);
    const wide = op.wide;
    try {
      const n = op.n;
      const rng = new Random(settings.seed + 7919 * index);
      // 'none' wants the estimate only: converged Ritz values, without the steps the KW bound needs
      const { k0, stop, expectedSteps } = lanczosStopping(n, settings, settings.certify !== 'none');
      const res = await lanczosTop(
        { n, apply: (v) => op.apply(v), applyInto: (v, out) => op.applyInto(v, out), lanczos: op.lanczos && ((o) => op.lanczos!(o)) },
        // --threads 1 (and a batch worker's share of one core) keeps the reorthogonalisation on this thread too
        { start: rng.unitVector(n), maxSteps: settings.maxIterations, stop, parallel: settings.backend.parallel, expectedSteps },
      );
      iterations = res.steps;
      work = 2 * res.steps * regionFlop(region);
      estimate = Math.sqrt(res.theta);
      direction = wide ? await op.half(res.ritzVector) : res.ritzVector;
      factor = ritzFactor(res, n, settings.delta, k0);
      if (Number.isFinite(factor.factor) && settings.certify !== 'none') {
        candidates.push({ value: kwUpper(res.theta, factor.factor, roundingError(cheap)), kind: 'probabilistic', method: ritzMethod(factor, `k=${res.steps}`) });
      }
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      throw new LipcheckError('UNSUPPORTED', `Operator ${region.id} (${region.nodes.map((n) => `${n.opType} '${n.name}'`).join(', ')}) overflows float32: applying it gives infinite or NaN values, so its weights are too large to analyse (the bound of its parts is ${cheap.value.toExponential(3)}). Check the model's weights.`, { cause: e });
    } finally {
      await op.dispose();
    }
  }

  // 'none': only the bound of the parts computed above, free and certified but loose
  if (noWeights || settings.certify === 'none') candidates.push({ value: cheap.value, kind: 'certified', method: cheap.method });
  // 'off' skips them only where Lanczos gave a probabilistic bound: a Krylov space that became invariant in fewer steps than
  // KW needs (rank-deficient or tiny operators) leaves none, and a certificate is then the only bound there is
  else if (settings.certify !== 'off' || candidates.length === 0) {
    // certificates may cost about twice the estimate (strict: the whole per-operator budget), counted in flop
    const budget = certificateBudget(settings, work);
    const composed = regionBound(region, settings.norm, budget, float32Unit(settings));
    candidates.push({ value: composed.value, kind: 'certified', method: composed.method });
    const dense = await denseRegionBound(region, composed, settings, budget);
    if (dense) candidates.push(dense);
  }

  // 'off' skips the costly certificates, but an exact value that came for free (isometries, scalars) still counts
  const allowed = candidates.filter((c) => settings.certify !== 'strict' || c.kind === 'certified');
  if (allowed.length === 0) {
    if (settings.certify === 'strict') throw new LipcheckError('CERTIFY', `--certify strict: no certified bound for operator ${region.id} (${region.nodes.map((n) => `'${n.name}'`).join(', ')}).`);
    throw new LipcheckError('RUNTIME', `No upper bound for operator ${region.id} (${region.nodes.map((n) => `'${n.name}'`).join(', ')}): Lanczos did not reach a usable certificate in ${iterations} steps. Raise --iterations.`);
  }
  // auto prefers a certified bound unless a probabilistic one is more than 0.1% tighter
  const tightest = allowed.reduce((a, b) => (b.value < a.value ? b : a));
  const certified = allowed.find((c) => c.kind === 'certified' && c.value <= tightest.value * (1 + 1e-3));
  const upper = certified ?? tightest;
  return { estimate, upper, candidates, iterations, ms: performance.now() - t0, work, direction, ...(factor ? { factor } : {}) };
}
