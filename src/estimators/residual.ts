import { LipcheckError } from '../errors.js';
import type { Block, LinearRegion } from '../ir/merge.js';
import type { IrGraph, IrNode, LinearNode, Shape } from '../ir/types.js';
import { roundUp } from '../linalg/dense.js';
import { regionFlop } from '../linalg/work.js';
import { cheapBound, composeRegions, productFloor, productLanczos, type Segment } from './cp.js';
import { weakestKind, type Bound, type BoundKind } from './kinds.js';
import { certificateBudget, float32Unit, measureRegion, kwUpper, ritzMethod, roundingError, type NormSettings, type ProductError, type OperatorNorm } from './operator-norm.js';
import { foldsExactly, gammaOf, regionBound } from './region-bounds.js';
import { denseObstacle } from '../ir/operator.js';

/**
 * A residual block y = a·S(u) + b·g(u) (docs/algorithms-residual.md): a two-input 'sum' node (Add, Sub) whose branch
 * input is the output of a sequential segment g = W_k σ_{k−1} ⋯ σ_1 W_1 reading u, and whose skip input is u itself
 * (S = I) or the output of one linear region S reading u. Every value inside the block is read only inside it.
 */
export interface ResidualBlock {
  readonly id: string;
  /** Position among the residual blocks of one block list, for reproducible seeds. */
  readonly ordinal: number;
  /** The value both branches read (u) and the sum's output (y). */
  readonly input: string;
  readonly output: string;
  readonly sum: LinearNode;
  /** Which of the sum's two inputs is the branch g (the other is the skip). */
  readonly branchIndex: 0 | 1;
  /** The skip's linear region S, or null for the identity. */
  readonly skip: LinearRegion | null;
  readonly branch: Segment;
  /** Indices into the block list of every block the residual block covers (the segment's, the skip's and the sum), ascending. */
  readonly blocks: readonly number[];
}

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The residual blocks of a block list: every two-input sum node, without broadcasting, of a segment's output (read
 * by the sum alone) and of its input u, directly or through one linear region reading u whose output only the sum
 * reads. `segments` are findSegments' (ir, blocks).
 */
export function findResidualBlocks(ir: IrGraph, blocks: readonly Block[], segments: readonly Segment[]): ResidualBlock[] {
  const consumers = new Map<string, IrNode[]>();
  const regionAt = new Map<string, { region: LinearRegion; index: number }>();
  blocks.forEach((b, k) => {
    for (const n of b.kind === 'operator' ? b.region.nodes : [b.node]) {
      for (const i of new Set(n.inputs)) { const list = consumers.get(i); if (list) list.push(n); else consumers.set(i, [n]); }
    }
    if (b.kind === 'operator') regionAt.set(b.region.output, { region: b.region, index: k });
  });
  const segmentAt = new Map(segments.map((s) => [s.output, s]));
  const found: ResidualBlock[] = [];
  blocks.forEach((b, k) => {
    if (b.kind !== 'node' || b.node.kind !== 'linear' || b.node.prim.op !== 'sum') return;
    const sum = b.node;
    if (sum.inputs.length !== 2 || sum.inputs[0] === sum.inputs[1] || !sum.inShapes.every((s) => sameShape(s, sum.outShape))) return;
    for (const branchIndex of [0, 1] as const) {
      const seg = segmentAt.get(sum.inputs[branchIndex]);
      if (!seg || seg.output === ir.output || (consumers.get(seg.output) ?? []).length !== 1 || !seg.activations.every((a) => a.slope.every(Number.isFinite))) continue;
      const u = seg.input;
      const other = sum.inputs[1 - branchIndex];
      let skip: { region: LinearRegion; index: number } | null = null;
      if (other !== u) {
        const r = regionAt.get(other);
        if (!r || r.region.input !== u || other === ir.output || (consumers.get(other) ?? []).length !== 1 || !sameShape(r.region.inShape, seg.regions[0].inShape)) continue;
        skip = r;
      }
      found.push({
        id: `res${found.length + 1}`, ordinal: found.length, input: u, output: sum.output, sum, branchIndex, skip: skip?.region ?? null, branch: seg,
        blocks: [...seg.blocks, ...(skip ? [skip.index] : []), k].sort((x, y) => x - y),
      });
      return;
    }
  });
  return found;
}

/**
 * The linear part a·S + b·c·W_k⋯W_1 of a residual block as one region reading u (the skip's nodes, the branch's
 * product without its activations, a scalar 'scale' by c, and the block's sum), c = fround(coefficient). Its norm is
 * measured like any merged operator.
 */
export function linearPart(block: ResidualBlock, coefficient: number): LinearRegion {
  const product = composeRegions(block.branch, 0, block.branch.regions.length - 1);
  const nodes: LinearNode[] = [...(block.skip?.nodes ?? []), ...product.nodes];
  let scaled = product.output;
  const c = Math.fround(coefficient);
  if (c !== 1) {
    scaled = `${product.output}/residual-scaled`;
    nodes.push({
      kind: 'linear', name: `${block.sum.name}/residual-scale`, opType: 'Mul', inputs: [product.output], inShapes: [product.outShape], output: scaled, outShape: product.outShape,
      prim: { op: 'scale', factor: { dtype: 'float32', dims: [], data: Float32Array.of(c) } },
    });
  }
  const inputs = block.sum.inputs.map((v, j) => (j === block.branchIndex ? scaled : block.skip ? block.skip.output : block.input));
  nodes.push({ ...block.sum, inputs });
  return { id: `${block.id}-linear`, input: block.input, inShape: block.branch.regions[0].inShape, output: block.output, outShape: block.sum.outShape, nodes };
}

/** The flop of the operator runs a block's bound takes at most: Lanczos on its linear part and on the branch's partial products not yet known, `steps` steps each. */
export function residualWork(block: ResidualBlock, steps: number, known: ReadonlyMap<string, unknown> = new Map()): number {
  const m = block.branch.regions.length;
  let flop = regionFlop(linearPart(block, 1));
  for (let i = 0; i < m; i++) for (let j = i; j < m; j++) {
    if (i === 0 && j === m - 1) continue;
    const r = composeRegions(block.branch, i, j);
    if (!known.has(r.id)) flop += regionFlop(r);
  }
  return 2 * steps * flop;
}

/** The residual bound of one block. */
export interface ResidualResult {
  /** Upper bound on L(u ↦ y), certified or probabilistic (the weakest kind of the norms it uses). */
  readonly upper: Bound;
  /** The same formula on the norms' estimates: no guarantee. */
  readonly estimate: number | null;
  /** The measured norm of the linear part a·S + b·c·W_k⋯W_1. */
  readonly linear: OperatorNorm;
  /** The top Ritz vector of the linear part's Gram map (null where measureRegion measured it): a start for wholeProductFloor. */
  readonly gramVector: Float64Array | null;
  /** Norms measured by this call (the linear part and partial products not in `known`). */
  readonly norms: number;
  /** KW bounds behind a probabilistic `upper` among those measured here (0 when it is certified). */
  readonly probabilistic: number;
  /** Multiply-adds of the Lanczos runs by the cost model (flop), as measureRegion counts them. */
  readonly work: number;
  readonly ms: number;
  /** A short account for the layer table. */
  readonly note: string;
}

/**
 * The Combettes–Pesquet bound of a residual block (docs/algorithms-residual.md, Theorem 1), ℓ2: with each activation
 * σ_i = c_i·Id + r_i·R_i (midpoint and half-width of its slope range, R_i 1-Lipschitz elementwise),
 *   L(y) ≤ ‖a·S + b·c_1⋯c_{k−1}·W_k⋯W_1‖ + |b|·Σ_i |c_{i+1}⋯c_{k−1}|·r_i·‖W_k⋯W_{i+1}‖·L(h_i),
 * L(h_i) the CP bound of the pre-activation h_i = W_i σ(⋯) (ALGORITHMS.md §5). Never above ‖S‖ + L_CP(g) by the
 * triangle inequality, but it is measured, not derived, so the composition takes the smaller. `known` holds norms
 * of single regions (AutoLip's, by region id) or partial products (CP's, by composeRegions id) already measured with
 * the same settings; the others are measured here. Kind: the weakest of the norms used.
 */
export async function residualBlockBound(block: ResidualBlock, settings: NormSettings, opts: { readonly known?: ReadonlyMap<string, OperatorNorm> } = {}): Promise<ResidualResult> {
  const t0 = performance.now();
  if (settings.norm !== '2') throw new LipcheckError('INTERNAL', `The residual-block bound is an ℓ2 bound; it was asked for ℓ${settings.norm} on ${block.id}.`);
  const seg = block.branch;
  const m = seg.regions.length;
  const unit = float32Unit(settings);
  if (seg.activations.length !== m - 1) throw new LipcheckError('INTERNAL', `Residual block ${block.id}: its branch has ${m} operators but ${seg.activations.length} activations.`);
  const c = seg.activations.map((x) => (x.slope[0] + x.slope[1]) / 2);
  const r = seg.activations.map((x) => (x.slope[1] - x.slope[0]) / 2);
  const signs = (block.sum.prim as { signs: readonly number[] }).signs;
  const b = Math.abs(signs[block.branchIndex]);
  const kinds: BoundKind[] = [];
  let norms = 0, probabilistic = 0, work = 0;
  const base = 3_000_000 + block.ordinal * 4096;
  const measure = async (region: LinearRegion, index: number): Promise<OperatorNorm> => {
    const n = await measureRegion(region, settings, base + index);
    norms++;
    work += n.work;
    return n;
  };

  // ‖W_j⋯W_i‖ for every product but the whole one: measured or known, and no larger than any split's product
  const up: number[][] = Array.from({ length: m }, () => new Array<number>(m).fill(Infinity));
  const est: number[][] = Array.from({ length: m }, () => new Array<number>(m).fill(Infinity));
  // the regions' Ritz estimates (0 where none): floors under their norms for productFloor
  const single = new Array<number>(m).fill(0);
  for (let len = 1; len <= m; len++) {
    for (let i = 0; i + len <= m; i++) {
      const j = i + len - 1;
      if (len === m) continue;
      for (let k = i; k < j; k++) { up[i][j] = Math.min(up[i][j], up[i][k] * up[k + 1][j]); est[i][j] = Math.min(est[i][j], est[i][k] * est[k + 1][j]); }
      const region = composeRegions(seg, i, j);
      let n = opts.known?.get(region.id) ?? await measure(region, i * 64 + j);
      if (len > 1 && !opts.known?.has(region.id)) {
        // a product's KW bound with the margin carried through the chain (chainMargin, cp.ts), as for the linear part
        const singles = seg.regions.slice(i, j + 1).map((_, l) => up[i + l][i + l]);
        const pieces = seg.regions.slice(i, j + 1).map((r, l) => ({ ...cheapBound(r, unit), into: singles.slice(0, l).reduce((a, x) => a * x, 1), out: singles.slice(l + 1).reduce((a, x) => a * x, 1) }));
        n = withMargin(n, settings, chainedMargin(pieces, Math.min(up[i][j], singles.reduce((a, x) => a * x, 1))));
      }
      // one Lanczos run, one KW event, whichever of its KW bounds is used
      if (!opts.known?.has(region.id) && n.upper.kind === 'probabilistic') probabilistic++;
      kinds.push(n.upper.kind);
      if (len === 1) single[i] = n.estimate ?? 0;
      up[i][j] = Math.min(up[i][j], n.upper.value);
      est[i][j] = len === 1 ? n.estimate ?? n.upper.value : Math.min(est[i][j], n.estimate ?? n.upper.value);
    }
  }

  // L(h_j) for the pre-activations h_1..h_{m−1} (CP recursion, |c| inside norms), then the block's bound
  const recursion = (p: number[][]): number[] => {
    const l: number[] = [p[0][0]];
    for (let j = 1; j < m - 1; j++) {
      let v = Math.abs(c.slice(0, j).reduce((a, x) => a * x, 1)) * p[0][j];
      for (let i = 0; i < j; i++) if (r[i] > 0) v += Math.abs(c.slice(i + 1, j).reduce((a, x) => a * x, 1)) * r[i] * p[i + 1][j] * l[i];
      l.push(v);
    }
    return l;
  };
  const tail = (p: number[][], l: number[]) => {
    let v = 0;
    for (let i = 0; i < m - 1; i++) if (r[i] > 0) v += Math.abs(c.slice(i + 1).reduce((a, x) => a * x, 1)) * r[i] * p[i + 1][m - 1] * l[i];
    return b * v;
  };

  const coefficient = c.reduce((a, x) => a * x, 1);
  const region = linearPart(block, coefficient);
  // measureRegion's margin multiplies every piece's |·|-norm; carried through the chain it is far smaller (chainMargin)
  const singles = seg.regions.map((_, i) => up[i][i]);
  const skipNorm = block.skip ? opts.known?.get(block.skip.id)?.upper.value ?? cheapBound(block.skip, unit).value : 1;
  if (block.skip) kinds.push(opts.known?.get(block.skip.id)?.upper.kind ?? 'certified');
  const cAbs = Math.abs(Math.fround(coefficient));
  const total = Math.abs(signs[1 - block.branchIndex]) * skipNorm + b * cAbs * singles.reduce((a, x) => a * x, 1);
  const g1 = gammaOf(1, unit);
  // onnxruntime may fold the Mul by c into the last region's Conv weights (ConvMulFusion), rounding them once more:
  // regionBound's γ_{k+1} covers one fold, not a second where that region already folds a BatchNormalization, so a c
  // that is not a power of two (whose product c·w rounds) adds γ₁ to the last region (docs/algorithms-cp-scaling.md §5)
  const foldRounds = !foldsExactly(cAbs);
  const pieces: { gammaSum: number; absNorm: number; into: number; out: number }[] = seg.regions.map((r, i) => {
    const rb = cheapBound(r, unit);
    return { ...rb, gammaSum: rb.gammaSum + (foldRounds && i === m - 1 ? g1 : 0), into: singles.slice(0, i).reduce((a, x) => a * x, 1), out: b * cAbs * singles.slice(i + 1).reduce((a, x) => a * x, 1) };
  });
  if (block.skip) { const rb = cheapBound(block.skip, unit); pieces.push({ ...rb, into: 1, out: Math.abs(signs[1 - block.branchIndex]) }); }
  // the scale by c, the two-input sum, and in the adjoint the sum of u's two cotangents
  pieces.push({ gammaSum: g1, absNorm: cAbs, into: singles.reduce((a, x) => a * x, 1), out: b }, { gammaSum: g1, absNorm: 1, into: total, out: 1 }, { gammaSum: g1, absNorm: 1, into: 1, out: total });
  const margin = chainedMargin(pieces, total);
  // the composition certificate is at least |b|·|c|·Π‖W_i‖ (productFloor, from the regions' estimates)
  const floor = b * cAbs * productFloor(seg, 0, m - 1, (i) => single[i], unit);
  const linear = await measureLinear(region, settings, base + 4095, margin, floor);
  norms++;
  work += linear.work;
  kinds.push(linear.upper.kind);
  if (linear.upper.kind === 'probabilistic') probabilistic++;
  // the part is measured with the float32 coefficient: the difference is at most |c − fround(c)|·|b|·Π‖W_i‖
  const shift = Math.abs(coefficient - Math.fround(coefficient)) * b * up.reduce((a, row, i) => a * row[i], 1);
  const lUp = recursion(up), lEst = recursion(est);
  const value = roundUp(linear.upper.value + shift + tail(up, lUp), 8 * (m + 2) ** 2);
  const estimate = (linear.estimate ?? linear.upper.value) + tail(est, lEst);
  const kind = weakestKind(kinds);
  const upper: Bound = { value, kind, method: `residual-cp(k=${m}${block.skip ? ', projection' : ''})` };
  return {
    upper, estimate: Number.isFinite(estimate) ? estimate : null, linear, gramVector: linear.gramVector, norms, probabilistic: kind === 'probabilistic' ? probabilistic : 0, work, ms: performance.now() - t0,
    note: `${block.skip ? `${block.skip.id} + ` : 'I + '}${seg.regions.map((x) => x.id).join('·')}: linear part ${linear.upper.value.toPrecision(4)}, residual bound ${value.toPrecision(4)}`,
  };
}

/**
 * The norm of a block's linear part with the chained rounding margin: what measureRegion followed by withMargin gives
 * (the same start, steps, KW bounds and choice), with its composition certificate computed only where it could be
 * chosen. That certificate (--certify auto) composes every prim's certified norm, an FFT per convolution, and is at least
 * `floor`; when the floor is above the tighter KW bound (+0.1%: measureRegion prefers a certified bound within 0.1%),
 * it can be neither the tightest candidate nor a certified one within 0.1% of it, so leaving it out changes nothing.
 * Regions whose float64 matrix the backend forms (no convolution, within DENSE_LIMIT) take measureRegion, for its
 * dense certificate; so do --certify strict and none.
 */
async function measureLinear(region: LinearRegion, settings: NormSettings, index: number, margin: ProductError, floor: number): Promise<OperatorNorm & { gramVector: Float64Array | null }> {
  const cheap = cheapBound(region, float32Unit(settings));
  if (denseObstacle(region) === null || settings.certify === 'strict' || settings.certify === 'none' || cheap.method === 'exact') return { ...withMargin(await measureRegion(region, settings, index), settings, margin), gramVector: null };
  const t0 = performance.now();
  // measureRegion's start (its seed + 7919·index), stop rule and KW bound with its composition margin
  const l = await productLanczos(region, settings, index, [roundingError(cheap)]);
  const candidates: Bound[] = l.bound ? [{ ...l.bound, method: ritzMethod(l.factor!, `k=${l.iterations}`) }] : [];
  let m: OperatorNorm = { estimate: l.estimate, upper: candidates[0], candidates, iterations: l.iterations, ms: 0, work: l.work, direction: null, ...(l.factor ? { factor: l.factor } : {}) };
  if (l.bound) m = withMargin(m, settings, margin);
  const tightest = m.candidates.length ? m.candidates.reduce((a, x) => (x.value < a.value ? x : a)).value : Infinity;
  // under off, measureRegion computes certificates only where Lanczos gave no probabilistic bound
  if ((settings.certify === 'auto' && !(floor > tightest * (1 + 1e-3))) || m.candidates.length === 0) {
    const composed = regionBound(region, '2', certificateBudget(settings, l.work));
    const all = [...m.candidates, { value: composed.value, kind: 'certified' as const, method: composed.method }];
    const best = all.reduce((a, x) => (x.value < a.value ? x : a));
    m = { ...m, candidates: all, upper: all.find((x) => x.kind === 'certified' && x.value <= best.value * (1 + 1e-3)) ?? best };
  }
  return { ...m, ms: performance.now() - t0, gramVector: l.gramVector };
}

/**
 * The float32 error of the products of a map made of pieces (chainMargin's argument on a DAG): piece k adds at most
 * γ_k·‖|piece_k|‖·into_k·‖v‖ to the result's error, carried out with norm ≤ out_k; their sum is eps, ‖A‖ ≤ total.
 */
function chainedMargin(pieces: readonly { gammaSum: number; absNorm: number; into: number; out: number }[], total: number): ProductError {
  const eta = pieces.reduce((a, p) => a + p.gammaSum * p.absNorm * p.into * p.out, 0);
  return { eps: roundUp(eta, 2 * pieces.length + 8), total };
}

/**
 * measureRegion's result with one more candidate: its probabilistic bound recomputed with `margin` instead of its own
 * (θ = estimate², the run's own factor), the smallest allowed candidate chosen as measureRegion chooses.
 */
function withMargin(m: OperatorNorm, settings: NormSettings, margin: ProductError): OperatorNorm {
  // every probabilistic candidate of measureRegion and productLanczos comes with its run's factor
  const factor = m.factor;
  if (m.estimate === null || !factor || !Number.isFinite(factor.factor) || !m.candidates.some((x) => x.kind === 'probabilistic')) return m;
  const kw: Bound = { value: kwUpper(m.estimate * m.estimate, factor.factor, margin), kind: 'probabilistic', method: ritzMethod(factor, `k=${m.iterations}, chain margin`) };
  const candidates = [...m.candidates, kw];
  const allowed = candidates.filter((x) => settings.certify !== 'strict' || x.kind === 'certified');
  const tightest = allowed.reduce((a, x) => (x.value < a.value ? x : a));
  const certified = allowed.find((x) => x.kind === 'certified' && x.value <= tightest.value * (1 + 1e-3));
  return { ...m, candidates, upper: certified ?? tightest };
}
