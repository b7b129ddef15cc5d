import { LipcheckError } from '../errors.js';
import type { Block, LinearRegion } from '../ir/merge.js';
import { denseObstacle } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import type { ActivationNode, IrGraph, IrNode, LinearNode, Shape } from '../ir/types.js';
import { denseInfNorm, roundUp } from '../linalg/dense.js';
import { lanczosTop, NonFiniteError } from '../linalg/lanczos.js';
import { ritzFactor } from '../linalg/probabilistic.js';
import { Random } from '../linalg/random.js';
import { regionFlop } from '../linalg/work.js';
import { weakestKind, type Bound, type BoundKind } from './kinds.js';
import { mapInLanes } from './lanes.js';
import { certificateBudget, lanczosStopping, float32Unit, laneWidth, measureRegion, plainSettings, gramMargin, kwUpper, ritzFloor, ritzMethod, roundingError, roundingMargin, type NormSettings, type ProductError, type OperatorNorm, type ProductRun } from './operator-norm.js';
import { foldPointwiseEnds } from './product-fold.js';
import { foldedTail, foldsAny, regionBound } from './region-bounds.js';

/**
 * A sequential segment W_m ∘ σ_{m−1} ∘ W_{m−1} ∘ ⋯ ∘ σ_1 ∘ W_1 of merged linear operators and elementwise
 * activations in which every intermediate value has exactly one consumer (ALGORITHMS.md §4–5).
 */
export interface Segment {
  readonly id: string;
  /** Position among the segments of one block list, for reproducible seeds. */
  readonly ordinal: number;
  /** The value the segment reads (regions[0].input) and the one it produces (the last region's output). */
  readonly input: string;
  readonly output: string;
  readonly regions: readonly LinearRegion[];
  /** activations[k] sits between regions[k] and regions[k + 1]. */
  readonly activations: readonly ActivationNode[];
  /** Indices into the block list of every block the segment covers (its regions and activations), ascending. */
  readonly blocks: readonly number[];
}

/**
 * Longest segment: CP's table of partial products and its recursion take O(m³) steps in a segment's m operators
 * (10,000 Gemm+Relu layers: 10¹² steps), so longer chains are cut into consecutive segments of at most this many.
 */
export const MAX_SEGMENT_REGIONS = 128;

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The maximal sequential segments of a block list with at least two operators: chains operator → activation →
 * operator → … where each region's output is read only by the next activation and each activation's output only by
 * the next region (as its input). Values that are the graph's output end a chain.
 */
export function findSegments(ir: IrGraph, blocks: readonly Block[]): Segment[] {
  const consumers = new Map<string, IrNode[]>();
  const blockOf = new Map<IrNode, number>();
  blocks.forEach((b, k) => {
    for (const n of b.kind === 'operator' ? b.region.nodes : [b.node]) {
      blockOf.set(n, k);
      for (const i of new Set(n.inputs)) { const list = consumers.get(i); if (list) list.push(n); else consumers.set(i, [n]); }
    }
  });

  const next = new Map<number, { activation: number; region: number }>();
  blocks.forEach((b, k) => {
    if (b.kind !== 'operator' || b.region.output === ir.output) return;
    const r = b.region;
    const cs = consumers.get(r.output) ?? [];
    if (cs.length !== 1 || cs[0].kind !== 'activation') return;
    const a = cs[0];
    if (a.inputs.length !== 1 || a.output === ir.output || !sameShape(a.outShape, r.outShape)) return;
    const readers = consumers.get(a.output) ?? [];
    const target = readers.length ? blockOf.get(readers[0])! : -1;
    const t = blocks[target];
    if (!t || t.kind !== 'operator' || readers.some((c) => blockOf.get(c) !== target)) return;
    if (t.region.input !== a.output || !sameShape(t.region.inShape, a.outShape)) return;
    next.set(k, { activation: blockOf.get(a)!, region: target });
  });

  const targets = new Set([...next.values()].map((v) => v.region));
  const segments: Segment[] = [];
  for (const start of next.keys()) {
    if (targets.has(start)) continue;
    let regions: LinearRegion[] = [];
    let activations: ActivationNode[] = [];
    let covered: number[] = [];
    const close = () => {
      if (regions.length >= 2) segments.push({ id: `seg${segments.length + 1}`, ordinal: segments.length, input: regions[0].input, output: regions[regions.length - 1].output, regions, activations, blocks: covered.sort((a, b) => a - b) });
      regions = []; activations = []; covered = [];
    };
    for (let k: number | undefined = start; k !== undefined;) {
      regions.push((blocks[k] as Extract<Block, { kind: 'operator' }>).region);
      covered.push(k);
      const step: { activation: number; region: number } | undefined = next.get(k);
      // a chain is cut every MAX_SEGMENT_REGIONS operators; the activation at the cut is composed by AutoLip
      if (step && regions.length < MAX_SEGMENT_REGIONS) {
        activations.push((blocks[step.activation] as Extract<Block, { kind: 'node' }>).node as ActivationNode);
        covered.push(step.activation);
      } else {
        close();
      }
      k = step?.region;
    }
  }
  return segments.sort((a, b) => a.blocks[0] - b.blocks[0]).map((s, i) => ({ ...s, id: `seg${i + 1}`, ordinal: i }));
}

/**
 * The linear operator W_j ⋯ W_i of consecutive regions of a segment, without the activations between them: one
 * LinearRegion whose nodes are the regions' nodes in order, each region after the first reading the previous
 * region's output where it read the activation's.
 */
export function composeRegions(segment: Segment, first: number, last: number): LinearRegion {
  const rs = segment.regions;
  if (first === last) return rs[first];
  const nodes: LinearNode[] = [...rs[first].nodes];
  for (let k = first + 1; k <= last; k++) {
    const from = segment.activations[k - 1].output, to = rs[k - 1].output;
    for (const n of rs[k].nodes) nodes.push(n.inputs.includes(from) ? { ...n, inputs: n.inputs.map((i) => (i === from ? to : i)) } : n);
  }
  return { id: `${rs[first].id}-${rs[last].id}`, input: rs[first].input, inShape: rs[first].inShape, output: rs[last].output, outShape: rs[last].outShape, nodes };
}

/**
 * ℓ∞: measureRegion composes row sums (a product of norms for a merged product); for a small conv-free product (no
 * float64 Conv kernel in onnxruntime) this adds the exact max row sum of its float64 matrix, certified with the
 * margin ‖Â − A‖∞ ≤ g₆₄·‖|A_k|⋯|A_1|‖∞ (doubled).
 */
async function denseInfBound(region: LinearRegion, settings: NormSettings): Promise<Bound | null> {
  if (region.nodes.some((n) => n.prim.op === 'conv' || n.prim.op === 'convTranspose')) return null;
  const cols = sizeOf(region.inShape), rows = sizeOf(region.outShape);
  const composed = regionBound(region, 'inf', settings.certifyBudget);
  if (composed.method === 'exact' || composed.method === 'row-sum') return null;
  // null beyond the backend's one dense limit (DENSE_LIMIT, the ℓ2 dense certificate's too)
  const a = await settings.backend.denseMatrix(region);
  if (!a) return null;
  const g64 = composed.gammaSum * 2 ** -29;
  return { value: roundUp(denseInfNorm(a, rows, cols) + 2 * g64 * composed.value, 2), kind: 'certified', method: 'row-sum(dense region)' };
}

/** regionBound(region, '2', 0, unit) (no costly certificate: the composition, its ‖|A|‖ bound and γ-sum), once per region object and unit. */
const cheapBounds = new WeakMap<LinearRegion, Map<number, ReturnType<typeof regionBound>>>();

/**
 * The budget-free ℓ2 composition of a region (regionBound at budget 0), remembered per region object: the chain margins
 * of CP's and the residual blocks' products ask for the same regions' again and again, and each call folds (copies)
 * their scaled weights. regionBound is a pure function of the region and unit (float32Unit: the backend's float32
 * unit roundoff), so the remembered value is the one it returns.
 */
export function cheapBound(region: LinearRegion, unit: number): ReturnType<typeof regionBound> {
  let byUnit = cheapBounds.get(region);
  if (!byUnit) { byUnit = new Map(); cheapBounds.set(region, byUnit); }
  let b = byUnit.get(unit);
  if (!b) { b = regionBound(region, '2', 0, unit); byUnit.set(unit, b); }
  return b;
}

/** Per segment, whether region k's folded tail folds with region k + 1's first node (foldScales), by k: computed once. */
const boundaryFolds = new WeakMap<Segment, readonly boolean[]>();

/**
 * Whether foldScales, run over the nodes of composeRegions(segment, first, last), folds a scaling across a region
 * boundary (it scans left to right, so a boundary is crossed exactly when a region's folded tail folds with the next
 * region's first node). Where it does not, the folded product is the regions' folded nodes one after another.
 */
function foldsAcross(segment: Segment, first: number, last: number): boolean {
  let folds = boundaryFolds.get(segment);
  if (!folds) {
    folds = segment.regions.slice(1).map((_, i) => {
      const tail = foldedTail(segment.regions[i].nodes);
      const head = composeRegions(segment, i, i + 1).nodes[segment.regions[i].nodes.length];
      return foldsAny([tail, head]);
    });
    boundaryFolds.set(segment, folds);
  }
  for (let k = first; k < last; k++) if (folds[k]) return true;
  return false;
}

/**
 * A floor under the composition's rounding margin roundingMargin(γ-sum, ‖|A|‖ bound) of the product of regions
 * first..last (what cheapBound of composeRegions(segment, first, last) gives), without folding the product's weights
 * again: where no scaling folds across a region boundary, regionBound composes the same folded nodes, so its γ-sum is
 * the regions' γ-sums added and its ‖|·|‖ bound (positively homogeneous in its input's, node by node) their product,
 * up to float64 rounding of a few dozen operations, covered by the factor 1 − 1e-9; 0 where a scaling folds across.
 */
export function productMarginFloor(segment: Segment, first: number, last: number, unit: number): number {
  if (foldsAcross(segment, first, last)) return 0;
  let gamma = 0, abs = 1;
  for (let k = first; k <= last; k++) {
    const b = cheapBound(segment.regions[k], unit);
    gamma += b.gammaSum;
    abs *= b.absNorm;
  }
  return roundingMargin(gamma * (1 - 1e-9), abs * (1 - 1e-9));
}

/**
 * A floor under the composition certificate of the product of regions first..last of a segment (what regionBound
 * with any budget gives for composeRegions(segment, first, last)): Π‖W_k‖ ≥ Π ritzFloor(θ_k, e_k), θ_k = estimate(k)²
 * the region's Ritz value from float32 products off by at most e_k (roundingError). The composition is homogeneous along the
 * chain and, when no scaling folds across a region boundary, each region's factor bounds its norm; where one does
 * (foldScales scans left to right, so a boundary is crossed exactly when a region's folded tail folds with the next
 * region's first node), the floor is 0.
 */
export function productFloor(segment: Segment, first: number, last: number, estimate: (k: number) => number, unit: number): number {
  if (foldsAcross(segment, first, last)) return 0;
  let floor = 1;
  for (let k = first; k <= last; k++) {
    const est = estimate(k);
    const parts = cheapBound(segment.regions[k], unit);
    floor *= ritzFloor(est * est, roundingError(parts));
  }
  return floor;
}

/**
 * The float32 error of the products of A = W_j⋯W_i, a product of regions, to first order like roundingError but
 * carried through the chain: region k adds an error ≤ g_k·‖|W_k|‖·‖x_{k−1}‖ (its γ-sum and |·|-norm bound, as for a
 * single region), the exact rest of the chain carries it with norm ≤ ‖W_j⋯W_{k+1}‖, and ‖x_{k−1}‖ ≤ ‖W_{k−1}⋯W_i‖·‖v‖.
 * So A·v is off by η‖v‖ with η = Σ_k ‖W_j⋯W_{k+1}‖·g_k·‖|W_k|‖·‖W_{k−1}⋯W_i‖ (the adjoint chain likewise): that η
 * is the ProductError's eps, and ‖A‖ ≤ total. The composition's error gP, with P = Π‖|W_k|‖, grows with every
 * factor's |W_k| and swamps the Ritz value of long products of convolutions.
 */
export function chainMargin(pieces: readonly { gammaSum: number; absNorm: number }[], norm: (first: number, last: number) => number, total: number): ProductError {
  let eta = 0;
  const m = pieces.length;
  for (let k = 0; k < m; k++) eta += (k + 1 < m ? norm(k + 1, m - 1) : 1) * pieces[k].gammaSum * pieces[k].absNorm * (k > 0 ? norm(0, k - 1) : 1);
  return { eps: roundUp(eta, 4 * m + 4), total };
}

/**
 * Lanczos on the Gram map of a product (the backend's `gram`: AᵀA or AAᵀ on the smaller side, one backend run per step
 * where it can) with the KW bound under the smallest of the given product errors (kwUpper; each a valid bound on the
 * products' error, so the least of their bounds holds), stopped like measureRegion's (without the KW steps under
 * --certify none and strict, where no KW bound is used).
 */
export async function productLanczos(region: LinearRegion, settings: NormSettings, index: number, margins: readonly ProductError[]): Promise<ProductRun> {
  const elsewhere = settings.offload?.product(region, plainSettings(settings), index, margins);
  if (elsewhere) return elsewhere;
  const op = await settings.backend.gram(region);
  const n = op.n;
  const kw = settings.certify !== 'none' && settings.certify !== 'strict';
  const { k0, stop, expectedSteps } = lanczosStopping(n, settings, kw);
  try {
    const res = await lanczosTop(
      { n, apply: (v) => op.apply(v), applyInto: (v, out) => op.applyInto(v, out), lanczos: op.lanczos && ((o) => op.lanczos!(o)) },
      { start: new Random(settings.seed + 7919 * index).unitVector(n), maxSteps: settings.maxIterations, stop, parallel: settings.backend.parallel, expectedSteps },
    );
    const factor = ritzFactor(res, n, settings.delta, k0);
    const bound: Bound | null = kw && Number.isFinite(factor.factor) && margins.length > 0 ? { value: Math.min(...margins.map((e) => kwUpper(res.theta, factor.factor, e))), kind: 'probabilistic', method: ritzMethod(factor, `k=${res.steps}`, '-chain') } : null;
    return { bound, estimate: Math.sqrt(res.theta), iterations: res.steps, work: 2 * res.steps * regionFlop(region), gramVector: res.ritzVector, factor };
  } catch (e) {
    if (!(e instanceof NonFiniteError)) throw e;
    throw new LipcheckError('UNSUPPORTED', `The product ${region.id} of operators (${region.nodes.map((n) => `${n.opType} '${n.name}'`).join(', ')}) overflows float32: applying it gives infinite or NaN values, so the weights are too large to analyse. Check the model's weights.`, { cause: e });
  } finally {
    await op.dispose();
  }
}

/** What measuring one partial product gave: its bounds (as measureRegion reports them), the KW bounds among them, its counted work. */
interface Measured {
  readonly norm: OperatorNorm;
  readonly kwBounds: number;
  readonly work: number;
  /** Set when the composition's certificate was left out (under auto): the Lanczos work its budget depends on. */
  readonly pending?: number;
  /** True when withCertificate added the composition's certificate. */
  readonly composition?: boolean;
}

/** The tightest bound among candidates, a certified one within 0.1% preferred, as measureRegion chooses (`only`: of that kind). */
function choose(candidates: readonly Bound[], only?: BoundKind): Bound {
  const allowed = only ? candidates.filter((c) => c.kind === only) : candidates;
  const tightest = allowed.reduce((a, b) => (b.value < a.value ? b : a));
  return allowed.find((c) => c.kind === 'certified' && c.value <= tightest.value * (1 + 1e-3)) ?? tightest;
}

/**
 * Measures the product of regions first..last (ℓ2 or ℓ∞). `split` is an upper bound on its norm from shorter products,
 * `sub` the table's bounds on those. ℓ∞: measureRegion's composed row sums plus the exact row sum of a small product.
 * ℓ2: one Lanczos run whose KW bound carries the smaller of the composition's rounding margin and the chain margin
 * (chainMargin: it needs only the shorter products' bounds, known before the run), plus measureRegion's certificates;
 * a product whose first or last region is a narrowing 1×1 convolution runs on the narrower B = R·X·S of the same norm
 * instead, its bound lifted back (product-fold.ts, docs/algorithms-product-fold.md).
 * A small conv-free product (whose float64 matrix the backend forms) is measured by measureRegion itself, for its
 * dense certificate, and gets a second run with the chain margin where the composition's margin kept its KW bound loose.
 */
async function measureProduct(segment: Segment, first: number, last: number, settings: NormSettings, index: number, sub: (first: number, last: number) => number, split: number, defer: boolean): Promise<Measured> {
  const region = composeRegions(segment, first, last);
  const u = float32Unit(settings);
  const t0 = performance.now();
  const kwOf = (cs: readonly Bound[]) => cs.filter((c) => c.kind === 'probabilistic').length;
  if (first === last || settings.norm === 'inf' || denseObstacle(region) === null) {
    const m = await measureRegion(region, settings, index);
    if (first === last) return { norm: m, kwBounds: kwOf(m.candidates), work: m.work };
    let extra: Bound | null = null;
    let estimate = m.estimate, iterations = m.iterations, work = m.work, factor = m.factor;
    if (settings.norm === 'inf') {
      extra = await denseInfBound(region, settings);
      if (extra) estimate = extra.value;
    } else if (settings.certify !== 'strict' && settings.certify !== 'none' && m.estimate !== null && m.upper.value > m.estimate * (1 + 2 * settings.tol)) {
      const margin = chainMargin(segment.regions.slice(first, last + 1).map((r) => cheapBound(r, u)), (a, b) => sub(first + a, first + b), Math.min(split, m.upper.value));
      const whole = cheapBound(region, u);
      if (gramMargin(margin) < 0.5 * roundingMargin(whole.gammaSum, whole.absNorm)) {
        // an independent start: the decision to run depended on the first run's outcome
        const l = await productLanczos(region, settings, index + 500_000, [margin]);
        extra = l.bound;
        estimate = l.estimate;
        factor = l.factor;
        iterations += l.iterations;
        work += l.work;
      }
    }
    if (!extra) return { norm: m, kwBounds: kwOf(m.candidates), work };
    const candidates = [...m.candidates, extra];
    return { norm: { ...m, upper: choose(candidates, settings.certify === 'off' && settings.norm === '2' ? 'probabilistic' : undefined), estimate, candidates, iterations, ms: m.ms + performance.now() - t0, work, factor }, kwBounds: kwOf(candidates), work };
  }

  // ℓ2, a product of convolutions or a large one: a narrowing 1×1 convolution at either end folds into the middle
  // convolution (product-fold.ts: one convolution on the narrow side, the same norm up to a lifted margin) ...
  const parts = segment.regions.slice(first, last + 1);
  const folded = await foldPointwiseEnds(parts, region, settings.backend.denseGram, settings.offload);
  let l: ProductRun;
  let cheap: ReturnType<typeof regionBound> | null;
  if (folded) {
    // B's chain margin from the product's sub-products (the whole one: `split`), as for the product itself
    const subA = (a: number, b: number) => (a === 0 && b === parts.length - 1 ? split : sub(first + a, first + b));
    const n = folded.pieces.length;
    const run = await productLanczos(folded.region, settings, index, [chainMargin(folded.pieces.map((r) => cheapBound(r, u)), (a, b) => folded.norm(a, b, subA), folded.norm(0, n - 1, subA))]);
    const bound: Bound | null = run.bound && { value: folded.lift(run.bound.value, subA), kind: run.bound.kind, method: ritzMethod(run.factor!, `k=${run.iterations}`, '-folded') };
    l = { ...run, bound };
    cheap = settings.certify === 'none' ? cheapBound(region, u) : null;
  } else {
    // ... else one run with the smaller margin
    const chain = chainMargin(parts.map((r) => cheapBound(r, u)), (a, b) => sub(first + a, first + b), split);
    // the composition's margin (which folds the product's weights again) only where the chain margin is not known to be
    // under half of it: the same seed and margin either way
    cheap = settings.certify === 'none' || !(gramMargin(chain) < 0.5 * productMarginFloor(segment, first, last, u)) ? cheapBound(region, u) : null;
    const composedMargin = cheap ? roundingMargin(cheap.gammaSum, cheap.absNorm) : Infinity;
    // the start the second run had before this was one run (same seed where that run was due); both errors bound the
    // products', so the run's bound takes the smaller of their bounds
    l = await productLanczos(region, settings, gramMargin(chain) < 0.5 * composedMargin ? index + 500_000 : index, cheap ? [chain, roundingError(cheap)] : [chain]);
  }
  const candidates: Bound[] = l.bound ? [l.bound] : [];
  const norm: OperatorNorm = { estimate: l.estimate, upper: l.bound!, candidates, iterations: l.iterations, ms: performance.now() - t0, work: l.work, direction: null, ...(l.factor && !folded ? { factor: l.factor } : {}) };
  if (settings.certify === 'none') candidates.push({ value: cheap!.value, kind: 'certified', method: cheap!.method });
  // under auto the composition's certificate may wait: cpSegmentBound computes it only where it could change the bound
  else if (l.bound && settings.certify === 'auto' && defer) return { norm, kwBounds: 1, work: l.work, pending: l.work };
  else if (settings.certify !== 'off' || candidates.length === 0) return withCertificate(region, { norm, kwBounds: kwOf(candidates), work: l.work }, l.work, settings);
  return { norm: { ...norm, upper: choose(candidates) }, kwBounds: kwOf(candidates), work: l.work };
}

/**
 * measureRegion's certificate for a product of convolutions or a large one: the composition of its prims' certified
 * bounds at a budget of about twice its Lanczos work (no dense form here), added to the candidates.
 */
function withCertificate(region: LinearRegion, m: Measured, lanczosWork: number, settings: NormSettings): Measured {
  const composed = regionBound(region, '2', certificateBudget(settings, lanczosWork));
  const candidates = [...m.norm.candidates, { value: composed.value, kind: 'certified' as const, method: composed.method }];
  return { norm: { ...m.norm, candidates, upper: choose(candidates, settings.certify === 'strict' ? 'certified' : undefined) }, kwBounds: candidates.filter((c) => c.kind === 'probabilistic').length, work: m.work, composition: true };
}

/** Options of the Combettes–Pesquet bound. */
export interface CpOptions {
  /** Longest product W_j⋯W_i measured as one operator (≥ 1); longer ones are bounded by products of measured ones. Default: no limit. */
  readonly window?: number;
  /**
   * Norms already measured with the same settings, reused, not measured again: single regions by region id (AutoLip's),
   * partial products by composeRegions id (an earlier call's, whose KW events that call counted).
   */
  readonly known?: ReadonlyMap<string, OperatorNorm>;
}

/** One partial product the bound used. */
export interface PartialProduct {
  readonly id: string;
  /** Indices of its first and last region in the segment. */
  readonly first: number;
  readonly last: number;
  readonly upper: Bound;
  readonly estimate: number | null;
  /** True when taken from `known` rather than measured by this call. */
  readonly reused: boolean;
  /** Lanczos steps this call ran on it (0 when reused or when no Lanczos ran). */
  readonly iterations: number;
}

/** The CP bound of one segment. */
export interface CpResult {
  /** Upper bound on the segment's Lipschitz constant w.r.t. its input: certified, or probabilistic (see `probabilistic`). */
  readonly upper: Bound;
  /** The same recursion on the partial products' estimates: no guarantee. */
  readonly estimate: number | null;
  /** Partial products measured by this call (reused ones not counted). */
  readonly norms: number;
  /** The KW bounds behind a probabilistic `upper` (0 when it is certified): it fails with probability at most probabilistic·δ, plus whatever the `known` norms carry. */
  readonly probabilistic: number;
  readonly products: readonly PartialProduct[];
  /** Counted work of the Lanczos runs this call made (flop of the cost model, linalg/work.ts: steps × one AᵀA). */
  readonly work: number;
  /** Composition certificates computed for products of convolutions or large products (under auto only where one could change the bound). */
  readonly certificates: number;
  readonly ms: number;
  /** The mixed recursion (rounded up) with the whole product's entry lowered to min(its entry, v): a floor of the bound for a whole product of norm ≥ v. */
  readonly atWhole: (v: number) => number;
  /** The whole product's entry: its bound from shorter products when it was not measured (window < m). */
  readonly wholeEntry: number;
}

interface Entry { cert: number; mixed: number; kind: BoundKind; est: number }

/**
 * CP's recursion (ALGORITHMS.md §5) over a chain of m = slopes.length + 1 operators: L_j, the bound on the map into
 * operator j's output, from p(i, j), a value for the product of operators i..j, with each activation's midpoint
 * c = |lo + hi|/2 and half-width r = (hi − lo)/2: L_0 = p(0, 0), L_j = c_0⋯c_{j−1}·p(0, j) + Σ_i c_{i+1}⋯c_{j−1}·r_i·p(i+1, j)·L_i.
 */
export function cpLevels(slopes: readonly (readonly [number, number])[], p: (i: number, j: number) => number): number[] {
  const m = slopes.length + 1;
  const c = slopes.map((s) => Math.abs((s[0] + s[1]) / 2));
  const r = slopes.map((s) => (s[1] - s[0]) / 2);
  const l: number[] = [p(0, 0)];
  for (let j = 1; j < m; j++) {
    let cs = 1;
    for (let k = 0; k < j; k++) cs *= c[k];
    let v = cs * p(0, j);
    for (let i = 0; i < j; i++) {
      let ci = 1;
      for (let k = i + 1; k < j; k++) ci *= c[k];
      if (r[i] > 0) v += ci * r[i] * p(i + 1, j) * l[i];
    }
    l.push(v);
  }
  return l;
}

/**
 * The Combettes–Pesquet (LipLT) bound of a segment in the settings' norm (ALGORITHMS.md §5): with each activation
 * σ_k = c_k·Id + r_k·R_k (c_k, r_k the midpoint and half-width of its slope range, R_k 1-Lipschitz elementwise),
 * L(h_j) ≤ |c_1⋯c_{j−1}|·‖W_j⋯W_1‖ + Σ_i |c_{i+1}⋯c_{j−1}|·r_i·‖W_j⋯W_{i+1}‖·L(h_i), L(h_1) = ‖W_1‖. It bounds
 * ‖W_m D_{m−1}⋯D_1 W_1‖ over every diagonal D_k with entries in the slope range, so it is never above the product of
 * the same norms. Each partial product is a merged operator measured once (measureProduct: one Lanczos run through
 * the backend's Gram map with the chain rounding margin, one run per step; small conv-free products as measureRegion
 * does, for their dense certificates); products longer than `window` and every product's measured bound are also
 * compared with products of shorter ones. Certified when every norm used is; otherwise probabilistic, with a union
 * bound over the norms measured. Same numbers whatever the thread count: seeds come from the segment and positions.
 */
export async function cpSegmentBound(segment: Segment, settings: NormSettings, opts: CpOptions = {}): Promise<CpResult> {
  const t0 = performance.now();
  const m = segment.regions.length;
  const window = opts.window ?? m;
  if (!Number.isInteger(window) || window < 1) throw new LipcheckError('USAGE', `The CP window must be a positive integer (products of at most that many operators); got ${window}.`);
  if (segment.activations.length !== m - 1) throw new LipcheckError('INTERNAL', `Segment ${segment.id} has ${m} operators but ${segment.activations.length} activations.`);

  const certifiedAllowed = settings.certify !== 'off' || settings.norm === 'inf';
  const table: Entry[][] = Array.from({ length: m }, () => new Array<Entry>(m));
  // what each product within the window got, by first·m + last: measured here, or a known single norm
  const got = new Map<number, { m: Measured | null; n: OperatorNorm }>();
  /** Entry (i, j) from the shorter entries and what (i, j) itself got (pure: rerun after late certificates). */
  const fill = (i: number, j: number): Entry => {
    const e: Entry = { cert: Infinity, mixed: Infinity, kind: 'certified', est: Infinity };
    for (let k = i; k < j; k++) {
      const a = table[i][k], b = table[k + 1][j];
      e.cert = Math.min(e.cert, a.cert * b.cert);
      if (a.mixed * b.mixed < e.mixed) { e.mixed = a.mixed * b.mixed; e.kind = weakestKind([a.kind, b.kind]); }
      e.est = Math.min(e.est, a.est * b.est);
    }
    const n = got.get(i * m + j)?.n;
    if (n) {
      const cert = certifiedAllowed ? Math.min(...n.candidates.filter((c) => c.kind === 'certified').map((c) => c.value), n.upper.kind === 'certified' ? n.upper.value : Infinity) : Infinity;
      e.cert = Math.min(e.cert, cert);
      const [value, kind] = n.upper.value <= cert ? [n.upper.value, n.upper.kind] : [cert, 'certified' as const];
      if (value <= e.mixed) { e.mixed = value; e.kind = kind; }
      e.est = i === j ? n.estimate ?? n.upper.value : Math.min(e.est, n.estimate ?? n.upper.value);
    }
    return e;
  };
  for (let len = 1; len <= m; len++) {
    // the products of one length need only shorter ones (split bounds, chain margins): measured at once where the
    // backend runs products off the main thread (backend.concurrency), entered in order, so the same numbers
    const starts = Array.from({ length: m - len + 1 }, (_, i) => i);
    const row = len > window ? [] : await mapInLanes(starts, laneWidth(settings), async (i) => {
      const j = i + len - 1;
      const known = opts.known?.get(len === 1 ? segment.regions[i].id : composeRegions(segment, i, j).id);
      const split = fill(i, j).mixed;
      const measured = known ? null : await measureProduct(segment, i, j, settings, 1_000_000 + segment.ordinal * 4096 + i * 64 + j, (a, b) => table[a][b].mixed, roundUp(split, 4 * m), true);
      return { m: measured, n: known ?? measured!.norm };
    });
    for (const i of starts) {
      const j = i + len - 1;
      if (len <= window) got.set(i * m + j, row[i]);
      table[i][j] = fill(i, j);
    }
  }

  const slopes = segment.activations.map((a) => a.slope);
  const recursion = (p: (i: number, j: number) => number): number => cpLevels(slopes, p)[m - 1];
  // every value above went through fewer than 2m + 4 roundings per recursion level, m levels deep
  const up = (v: number) => roundUp(v, 8 * (m + 2) ** 2);

  // Certificates left out under auto (products of convolutions, large products: the composition of their prims'
  // bounds, an FFT per convolution) are computed only if one could change the result. Such a certificate is at least
  // Π‖W_k‖ over the product's regions (the composition is homogeneous along the chain and, when no scaling is folded
  // across a boundary, each region's factor bounds its norm; else the floor is 0), and ‖W_k‖ ≥ √θ_k − ε_k (θ_k its
  // Ritz value from float32 products off by at most ε_k: ritzFloor). When
  // every one of those floors is above its product's KW bound (+0.1%), no product's bound changes; when the certified
  // recursion with those floors as certificates stays above the bound (+0.1%), the certified value is not chosen.
  const pending = [...got.entries()].filter(([, g]) => g.m?.pending !== undefined);
  if (pending.length) {
    const lowest = (i: number, j: number) => productFloor(segment, i, j, (k) => got.get(k * m + k)?.n.estimate ?? 0, float32Unit(settings));
    const mixedValue = up(recursion((i, j) => table[i][j].mixed));
    const bestCert: number[][] = Array.from({ length: m }, () => new Array<number>(m));
    for (let len = 1; len <= m; len++) {
      for (let i = 0; i + len <= m; i++) {
        const j = i + len - 1;
        let v = table[i][j].cert;
        for (let k = i; k < j; k++) v = Math.min(v, bestCert[i][k] * bestCert[k + 1][j]);
        bestCert[i][j] = got.get(i * m + j)?.m?.pending !== undefined ? Math.min(v, lowest(i, j)) : v;
      }
    }
    const matters = pending.some(([key, g]) => lowest(Math.floor(key / m), key % m) <= g.n.upper.value * (1 + 1e-3))
      || !(recursion((i, j) => bestCert[i][j]) > mixedValue * (1 + 1e-3));
    if (matters) {
      for (const [key, g] of pending) got.set(key, { m: withCertificate(composeRegions(segment, Math.floor(key / m), key % m), g.m!, g.m!.pending!, settings), n: g.n });
      for (const [key, g] of pending) got.set(key, { ...got.get(key)!, n: got.get(key)!.m!.norm });
      for (let len = 1; len <= m; len++) for (let i = 0; i + len <= m; i++) table[i][i + len - 1] = fill(i, i + len - 1);
    }
  }

  const products: PartialProduct[] = [];
  const certificates = [...got.values()].filter((g) => g.m?.composition).length;
  let measured = 0, probabilistic = 0, work = 0;
  for (let len = 1; len <= Math.min(window, m); len++) {
    for (let i = 0; i + len <= m; i++) {
      const j = i + len - 1;
      const g = got.get(i * m + j)!;
      if (g.m) {
        measured++;
        work += g.m.work;
        // the chosen bound is the least of the KW bounds computed for this product: each may fail with probability δ
        if (g.n.upper.kind === 'probabilistic') probabilistic += g.m.kwBounds;
      }
      products.push({ id: composeRegions(segment, i, j).id, first: i, last: j, upper: g.n.upper, estimate: g.n.estimate, reused: !g.m, iterations: g.m ? g.n.iterations : 0 });
    }
  }
  const certValue = up(recursion((i, j) => table[i][j].cert));
  const mixedValue = up(recursion((i, j) => table[i][j].mixed));
  const estimate = recursion((i, j) => table[i][j].est);
  const mixedKind = weakestKind(table.flatMap((row) => row.filter(Boolean).map((e) => e.kind)));
  const method = `combettes-pesquet(m=${m}${window < m ? `, window=${window}` : ''})`;
  // like measureRegion: prefer the certified value unless the mixed one is more than 0.1% tighter
  const upper: Bound = Number.isFinite(certValue) && certValue <= mixedValue * (1 + 1e-3)
    ? { value: certValue, kind: 'certified', method }
    : { value: mixedValue, kind: mixedKind, method };
  const atWhole = (v: number) => up(recursion((i, j) => (i === 0 && j === m - 1 ? Math.min(table[i][j].mixed, v) : table[i][j].mixed)));
  return { upper, estimate: Number.isFinite(estimate) ? estimate : null, norms: measured, probabilistic: upper.kind === 'probabilistic' ? probabilistic : 0, products, work, certificates, ms: performance.now() - t0, atWhole, wholeEntry: table[0][m - 1].mixed };
}

/**
 * A deterministic floor under the norm of a segment's whole product P = W_m⋯W_1 (never under a valid upper bound of
 * it): Lanczos on P's Gram map from `start` (any start: every Ritz value of an operator is at most its top
 * eigenvalue), θ ≤ λ_max(computed Gram) ≤ (‖P‖ + ε)² with ε the chain's or the composition's product error
 * (measureProduct's, from the shorter products' bounds in `cp`), so ‖P‖ ≥ ritzFloor(θ, ·) for either. At most `maxSteps`
 * steps, stopped as soon as `enough(floor)`; 0 when the start does not fit the Gram map or a product overflows.
 */
export async function wholeProductFloor(segment: Segment, settings: NormSettings, cp: CpResult, start: Float64Array, maxSteps: number, enough: (floor: number) => boolean): Promise<{ floor: number; steps: number; work: number }> {
  const m = segment.regions.length;
  const region = composeRegions(segment, 0, m - 1);
  const bound = new Map(cp.products.map((p) => [p.first * m + p.last, p.upper.value]));
  const sub = (a: number, b: number) => bound.get(a * m + b) ?? Infinity;
  const u = float32Unit(settings);
  const chain = chainMargin(segment.regions.map((r) => cheapBound(r, u)), sub, roundUp(cp.wholeEntry, 4 * m));
  // the composition's margin only where it could be the smaller (productMarginFloor: without folding the weights again)
  // the composition's error too only where its Gram margin could be the smaller (productMarginFloor: without folding the
  // weights again); each bounds the products' error, so the larger of their floors holds
  const errors = gramMargin(chain) <= productMarginFloor(segment, 0, m - 1, u) ? [chain] : [chain, roundingError(cheapBound(region, u))];
  const floorOf = (theta: number) => Math.max(...errors.map((e) => (Number.isFinite(e.eps) ? ritzFloor(theta, e) : 0)));
  const op = await settings.backend.gram(region);
  try {
    if (op.n !== start.length) return { floor: 0, steps: 0, work: 0 };
    let s = 0;
    for (let i = 0; i < start.length; i++) s += start[i] * start[i];
    if (!(s > 0) || !Number.isFinite(s)) return { floor: 0, steps: 0, work: 0 };
    const unit = new Float64Array(start.length);
    const scale = 1 / Math.sqrt(s);
    for (let i = 0; i < start.length; i++) unit[i] = start[i] * scale;
    const res = await lanczosTop(
      { n: op.n, apply: (v) => op.apply(v), applyInto: (v, out) => op.applyInto(v, out) },
      { start: unit, maxSteps, stop: (theta) => enough(floorOf(theta)), parallel: settings.backend.parallel },
    );
    return { floor: floorOf(res.theta), steps: res.steps, work: 2 * res.steps * regionFlop(region) };
  } catch (e) {
    if (e instanceof NonFiniteError) return { floor: 0, steps: 0, work: 0 };
    throw e;
  } finally {
    await op.dispose();
  }
}

/** AutoLip's factor for a segment: Π‖W_k‖·Π max|slope_k| from per-region norms (ALGORITHMS.md §1), with its estimate. */
export function segmentAutoLip(segment: Segment, norms: ReadonlyMap<string, OperatorNorm>): { upper: Bound; estimate: number } {
  let up = 1, est = 1;
  const kinds: BoundKind[] = [];
  for (const r of segment.regions) {
    const n = norms.get(r.id);
    if (!n) throw new LipcheckError('INTERNAL', `No norm was measured for operator ${r.id} of segment ${segment.id}.`);
    up *= n.upper.value;
    est *= n.estimate ?? n.upper.value;
    kinds.push(n.upper.kind);
  }
  for (const a of segment.activations) {
    const s = Math.max(Math.abs(a.slope[0]), Math.abs(a.slope[1]));
    up *= s;
    est *= s;
  }
  const k = segment.regions.length + segment.activations.length;
  return { upper: { value: roundUp(up, k), kind: weakestKind(kinds), method: 'autolip' }, estimate: est };
}

/** One method's value for a segment: an upper bound (null when the method gave only an estimate) and an estimate. */
export interface FactorCandidate {
  readonly method: string;
  readonly upper: Bound | null;
  readonly estimate: number | null;
}

/**
 * The factor a segment contributes to a composition: the smallest of the candidates' upper bounds (the minimum of
 * upper bounds is one; estimates never count), preferring a certified one unless the tightest is more than 0.1%
 * tighter; on a tie the earlier candidate wins. The estimate is the smallest estimate of any candidate.
 */
export function segmentFactor(candidates: readonly FactorCandidate[]): { upper: Bound; estimate: number; chosen: string } {
  const valid = candidates.filter((c): c is FactorCandidate & { upper: Bound } => c.upper !== null && (c.upper.kind === 'certified' || c.upper.kind === 'probabilistic'));
  if (!valid.length) throw new LipcheckError('INTERNAL', `No upper bound among the segment's candidates (${candidates.map((c) => c.method).join(', ')}).`);
  const tightest = valid.reduce((a, b) => (b.upper.value < a.upper.value ? b : a));
  const certified = valid.filter((c) => c.upper.kind === 'certified' && c.upper.value <= tightest.upper.value * (1 + 1e-3));
  const chosen = tightest.upper.kind !== 'certified' && certified.length ? certified.reduce((a, b) => (b.upper.value < a.upper.value ? b : a)) : tightest;
  const ests = candidates.map((c) => c.estimate).filter((x): x is number => x !== null);
  return { upper: chosen.upper, estimate: ests.length ? Math.min(...ests) : chosen.upper.value, chosen: chosen.method };
}
