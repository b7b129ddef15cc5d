import type { LinearRegion } from '../ir/merge.js';
import { sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import type { LinearNode, LinearPrim, Shape } from '../ir/types.js';
import { convInfNorm, convSpectralNormBound, convSpectralNormBoundBelow } from '../linalg/conv-spectrum.js';
import { BudgetExceededError, DEFAULT_CERTIFICATE_FLOP, denseInfNorm, denseSpectralNormBound, maxAbsFinite, roundUp, transpose } from '../linalg/dense.js';
import type { NormKind } from './kinds.js';

/** Per-primitive numbers the region composition needs. */
interface PrimBounds {
  /** Certified bound on the prim's operator norm (ℓ2 or ℓ∞). */
  readonly norm: number;
  /** Bound on ‖|A|‖₂ (entrywise absolute value), for the float32 rounding margin. */
  readonly absNorm: number;
  /** Terms summed per output element (for γ_K). */
  readonly inner: number;
  readonly method: string;
}

function maxAbs(t: Tensor): number {
  let m = 0;
  for (const v of toFloat64(t)) m = Math.max(m, Math.abs(v));
  return m;
}

function convColumnSum(w: Float64Array, dims: readonly number[], group: number): number {
  const [cout, cinG] = dims;
  const taps = sizeOf(dims.slice(2));
  const perGroupOut = cout / group;
  let best = 0;
  for (let g = 0; g < group; g++) for (let ci = 0; ci < cinG; ci++) {
    let s = 0;
    for (let co = g * perGroupOut; co < (g + 1) * perGroupOut; co++) for (let t = 0; t < taps; t++) s += Math.abs(w[(co * cinG + ci) * taps + t]);
    best = Math.max(best, s);
  }
  return best;
}

/** The 2-D matrices of a (possibly batched) MatMul weight, as [rows, cols, data] row-major. */
function matrices(t: Tensor): { rows: number; cols: number; data: Float32Array | Float64Array }[] {
  // float32 weights are read in place: a float64 copy of a large Gemm costs more than the sums it feeds
  const d = t.data instanceof Float32Array || t.data instanceof Float64Array ? t.data : toFloat64(t);
  if (t.dims.length === 1) return [{ rows: t.dims[0], cols: 1, data: d }];
  const rows = t.dims[t.dims.length - 2], cols = t.dims[t.dims.length - 1];
  const out = [];
  for (let o = 0; o < d.length; o += rows * cols) out.push({ rows, cols, data: d.subarray(o, o + rows * cols) });
  return out;
}

/**
 * The largest absolute row sum and column sum of a row-major matrix in one streaming pass, each rounded up like
 * denseInfNorm's (a sum of k non-negative terms); a non-finite entry throws as there.
 */
function absSums(m: { rows: number; cols: number; data: Float32Array | Float64Array }): { row: number; col: number } {
  const cols = new Float64Array(m.cols);
  let row = 0, finite = true;
  for (let i = 0, o = 0; i < m.rows; i++) {
    let s = 0;
    for (let j = 0; j < m.cols; j++, o++) { const a = Math.abs(m.data[o]); s += a; cols[j] += a; }
    // NaN fails every comparison: `s < Infinity` is false for NaN and ±Infinity alike
    if (!(s < Infinity)) finite = false;
    else if (s > row) row = s;
  }
  if (!finite) maxAbsFinite(m.data, 'The matrix');
  let col = 0;
  for (let j = 0; j < m.cols; j++) if (cols[j] > col) col = cols[j];
  return { row: roundUp(row, m.cols), col: roundUp(col, m.rows) };
}

/**
 * The polyphase form of a strided convolution: splitting the zero-padded input into its Π s_i phases (a permutation)
 * makes y = Σ_phases conv_stride1(x_phase, w_phase), i.e. a stride-1 convolution with c_in·Πs_i input channels and
 * kernel ⌈k/s⌉ on inputs of size ⌈(n + pads)/s⌉. Its circular bound is far tighter than the stride-1 bound of the
 * original kernel, which ignores the subsampling. Dilation 1 only.
 */
export function polyphase(w: Float64Array, dims: readonly number[], strides: readonly number[]): { weight: Float64Array; dims: number[] } {
  const [cout, cinG] = dims;
  const k = dims.slice(2);
  const d = k.length;
  const kq = k.map((kk, i) => Math.ceil(kk / strides[i]));
  const phases = strides.reduce((a, b) => a * b, 1);
  const taps = sizeOf(k), tapsQ = sizeOf(kq);
  const out = new Float64Array(cout * cinG * phases * tapsQ);
  const t = new Array(d).fill(0);
  for (let flat = 0; flat < taps; flat++) {
    let rem = flat;
    for (let i = d - 1; i >= 0; i--) { t[i] = rem % k[i]; rem = Math.floor(rem / k[i]); }
    let r = 0, q = 0;
    for (let i = 0; i < d; i++) { r = r * strides[i] + (t[i] % strides[i]); q = q * kq[i] + Math.floor(t[i] / strides[i]); }
    for (let o = 0; o < cout; o++) for (let c = 0; c < cinG; c++) {
      out[((o * cinG * phases) + c * phases + r) * tapsQ + q] = w[(o * cinG + c) * taps + flat];
    }
  }
  return { weight: out, dims: [cout, cinG * phases, ...kq] };
}

/**
 * A certified ℓ2 bound for a conv: the circular bound, and for strided convs also the polyphase one; the smaller.
 * `short` counts the certificates its budget cut short (a plain pass given up past its budget; the polyphase one throws).
 */
export function convCertificate(w: Float64Array, dims: readonly number[], group: number, strides: readonly number[], dilations: readonly number[], pads: readonly number[], spatial: readonly number[], budgetFlop: number, short?: BudgetShortfalls): { value: number; method: string } {
  const spec = { weight: w, weightDims: [...dims], group, dilations: [...dilations], inputSpatial: [...spatial] };
  if (strides.every((x) => x === 1) || dilations.some((x) => x !== 1)) {
    const plain = convSpectralNormBound(spec, { budgetFlop });
    return { value: plain.value, method: plain.method };
  }
  // strided: the polyphase form first, then the plain one only as far as it could still come out smaller (its DFT pass
  // stops at the first frequency block that proves it above; ResNet-50's 7×7 stride-2 stem: ~3 of its 3.5 s)
  const r = spatial.length;
  const pp = polyphase(w, dims, strides);
  const inputSpatial = spatial.map((n, i) => Math.ceil((n + pads[i] + pads[i + r]) / strides[i]));
  const poly = convSpectralNormBound({ weight: pp.weight, weightDims: pp.dims, group, dilations: new Array(r).fill(1), inputSpatial }, { budgetFlop });
  // the plain bound only competes: past its budget, the polyphase bound (certified on its own) stands
  let plain: ReturnType<typeof convSpectralNormBoundBelow> = null;
  try {
    plain = convSpectralNormBoundBelow(spec, poly.value, { budgetFlop });
  } catch (e) {
    if (!(e instanceof BudgetExceededError)) throw e;
    if (short) short.count++;
  }
  return plain === null || poly.value < plain.value ? { value: poly.value, method: 'circular-fft-polyphase' } : { value: plain.value, method: plain.method };
}

/** Certificates a work budget cut short (BudgetExceededError caught, a looser bound taken instead). */
export interface BudgetShortfalls {
  count: number;
}

function primBounds(n: LinearNode, norm: NormKind, budgetFlop: number, short: BudgetShortfalls = { count: 0 }): PrimBounds {
  const p: LinearPrim = n.prim;
  const inShape = n.inShapes[0];
  const spread = Math.sqrt(Math.max(1, sizeOf(n.outShape) / Math.max(1, sizeOf(inShape))));
  switch (p.op) {
    case 'conv':
    case 'convTranspose': {
      const w = toFloat64(p.weight);
      const rows = convInfNorm({ weight: w, weightDims: [...p.weight.dims] });
      const cols = convColumnSum(w, p.weight.dims, p.group);
      const [rowSum, colSum] = p.op === 'conv' ? [rows, cols] : [cols, rows];
      const inner = (p.weight.dims[1] * sizeOf(p.weight.dims.slice(2)));
      const absNorm = Math.sqrt(rowSum * colSum);
      if (norm === 'inf') return { norm: rowSum, absNorm, inner, method: 'row-sum' };
      const spatial = p.op === 'conv' ? inShape.slice(2) : n.outShape.slice(2);
      if (budgetFlop <= 0) return { norm: absNorm, absNorm, inner, method: 'schur' };
      try {
        // a ConvTranspose is the adjoint of the conv it transposes (same norm): its own strides apply to that conv
        const b = convCertificate(w, p.weight.dims, p.group, p.strides, p.dilations, p.pads, spatial, budgetFlop, short);
        return { norm: Math.min(b.value, absNorm), absNorm, inner, method: b.value <= absNorm ? b.method : 'schur' };
      } catch (e) {
        if (!(e instanceof BudgetExceededError)) throw e;
        short.count++;
        // ‖A‖₂ ≤ sqrt(‖A‖₁‖A‖∞) (Schur): certified, looser, and free.
        return { norm: absNorm, absNorm, inner, method: 'schur' };
      }
    }
    case 'matmul': {
      let best = 0, absBest = 0, method = 'exact-svd';
      const ms = matrices(p.weight);
      for (const m of ms) {
        // x·W acts on rows of x: its ℓ∞ rows are W's columns; W·x acts on columns: rows are W's rows.
        const sums = absSums(m);
        const [rowSum, colSum] = p.side === 'right' ? [sums.col, sums.row] : [sums.row, sums.col];
        absBest = Math.max(absBest, Math.sqrt(rowSum * colSum));
        if (norm === 'inf') { best = Math.max(best, rowSum); method = 'row-sum'; continue; }
        if (budgetFlop <= 0) { best = Math.max(best, Math.sqrt(rowSum * colSum)); method = 'schur'; continue; }
        try {
          const b = denseSpectralNormBound(m.data, m.rows, m.cols, { budgetFlop });
          best = Math.max(best, Math.min(b.value, Math.sqrt(rowSum * colSum)));
          if (method !== 'schur') method = b.value <= Math.sqrt(rowSum * colSum) ? b.method : 'schur';
        } catch (e) {
          if (!(e instanceof BudgetExceededError)) throw e;
          short.count++;
          best = Math.max(best, Math.sqrt(rowSum * colSum));
          method = 'schur';
        }
      }
      const wd = p.weight.dims;
      const inner = wd.length === 1 ? wd[0] : p.side === 'right' ? wd[wd.length - 2] : wd[wd.length - 1];
      const produced = wd.length === 1 ? 1 : p.side === 'right' ? wd[wd.length - 1] : wd[wd.length - 2];
      // only a batch broadcast of x against W's leading dims repeats inputs; the feature change is W's own
      const repeat = Math.sqrt(Math.max(1, sizeOf(n.outShape) / ((sizeOf(inShape) / inner) * produced)));
      return { norm: best * (norm === 'inf' ? 1 : repeat), absNorm: absBest * repeat, inner, method };
    }
    case 'scale': {
      const m = maxAbs(p.factor);
      // a scalar factor commutes with everything: it keeps an exact bound exact
      return { norm: m * (norm === 'inf' ? 1 : spread), absNorm: m * spread, inner: 1, method: sizeOf(p.factor.dims) === 1 ? 'exact' : 'max-abs' };
    }
    case 'reshape': case 'transpose': return { norm: 1, absNorm: 1, inner: 0, method: 'isometry' };
    case 'pad': return { norm: 1, absNorm: 1, inner: 0, method: 'isometry' };
    case 'axisMatrix': {
      const rowSum = denseInfNorm(p.matrix, p.rows, p.cols);
      const colSum = denseInfNorm(transpose(p.matrix, p.rows, p.cols), p.cols, p.rows);
      const absNorm = Math.sqrt(rowSum * colSum);
      if (norm === 'inf') return { norm: rowSum, absNorm, inner: p.cols, method: 'row-sum' };
      // selections (one 1 per row, distinct columns) are exact as Schur bounds; general matrices get an SVD
      if (absNorm <= 1 || budgetFlop <= 0) return { norm: absNorm, absNorm, inner: p.cols, method: absNorm <= 1 ? 'exact' : 'schur' };
      try {
        const b = denseSpectralNormBound(p.matrix, p.rows, p.cols, { budgetFlop });
        return { norm: Math.min(b.value, absNorm), absNorm, inner: p.cols, method: b.value <= absNorm ? b.method : 'schur' };
      } catch (e) {
        if (!(e instanceof BudgetExceededError)) throw e;
        short.count++;
        return { norm: absNorm, absNorm, inner: p.cols, method: 'schur' };
      }
    }
    case 'reduce': {
      const m = p.axes.reduce((a, ax) => a * inShape[ax], 1);
      const l2 = p.mean ? 1 / Math.sqrt(m) : Math.sqrt(m);
      return { norm: norm === 'inf' ? (p.mean ? 1 : m) : l2, absNorm: l2, inner: m, method: 'exact' };
    }
    case 'expand': return { norm: norm === 'inf' ? 1 : spread, absNorm: spread, inner: 0, method: 'exact' };
    case 'sum': case 'concat': return { norm: 1, absNorm: 1, inner: n.inputs.length, method: 'composition' };
  }
}

/**
 * The factor of a scale prim as one value per index of `axis` of `shape`, or null when it varies along other axes too
 * (a scalar factor gives a constant vector).
 */
function perAxis(factor: Tensor, shape: Shape, axis: number): Float64Array | null {
  const f = toFloat64(factor);
  const d = factor.dims;
  const r = shape.length;
  if (d.length > r) return null;
  const aligned = [...new Array(r - d.length).fill(1), ...d];
  if (aligned.some((x, i) => x !== 1 && i !== axis)) return null;
  const n = shape[axis];
  if (aligned[axis] !== 1 && aligned[axis] !== n) return null;
  return Float64Array.from({ length: n }, (_, i) => f[aligned[axis] === 1 ? 0 : i]);
}

/** Weights scaled along one weight axis (per output or input channel / feature). */
function scaleWeights(w: Tensor, axis: number, by: Float64Array): Tensor {
  const src = w.data instanceof Float32Array || w.data instanceof Float64Array ? w.data : toFloat64(w);
  const inner = sizeOf(w.dims.slice(axis + 1));
  const n = w.dims[axis];
  const data = new Float64Array(src.length);
  for (let o = 0, k = 0; o < src.length; o += inner, k = (k + 1) % n) {
    const f = by[k];
    for (let i = o; i < o + inner; i++) data[i] = src[i] * f;
  }
  return { dtype: 'float64', dims: w.dims, data };
}

/** One node of a folded node list: its weight still unscaled, and the per-channel scalings that fold into it, in order. */
interface FoldGroup {
  /** The weighted node (or any node that folds with nothing), reading the first source's inputs and writing the last's output. */
  readonly node: LinearNode;
  /** Scalings of the weight along `axis`, applied one after another (each product rounded once). */
  readonly folds: readonly { readonly axis: number; readonly by: Float64Array }[];
  /** The prims folded into `node`, in node order (one prim when nothing folds). */
  readonly sources: readonly LinearPrim[];
}

/**
 * Which nodes foldScales merges, without building a folded weight: the decision reads op kinds, shapes and the scale
 * factors only, so a node with its weight still unscaled stands for the merged one.
 */
function foldGroups(nodes: readonly LinearNode[]): FoldGroup[] {
  // a fold replaces a, b by one node reading a's inputs and writing b's output: every other value keeps its readers,
  // so the counts are taken once (and the scan below keeps the current node instead of splicing: linear time)
  const uses = new Map<string, number>();
  for (const m of nodes) for (const v of new Set(m.inputs)) uses.set(v, (uses.get(v) ?? 0) + 1);
  const out: FoldGroup[] = [];
  for (const b of nodes) {
    const g = out[out.length - 1];
    out.push({ node: b, folds: [], sources: [b.prim] });
    if (!g) continue;
    const a = g.node;
    if (b.inputs.length !== 1 || b.inputs[0] !== a.output || uses.get(a.output) !== 1) continue;
    const [pa, pb] = [a.prim, b.prim];
    let merged: { prim: LinearPrim; fold: { axis: number; by: Float64Array } } | null = null;
    if (pa.op === 'conv' && pb.op === 'scale') {
      const f = perAxis(pb.factor, b.outShape, 1);
      if (f && sizeOf(b.outShape) === sizeOf(a.outShape)) merged = { prim: pa, fold: { axis: 0, by: f } };
    } else if (pa.op === 'matmul' && pa.side === 'right' && pa.weight.dims.length === 2 && pb.op === 'scale') {
      const f = perAxis(pb.factor, b.outShape, b.outShape.length - 1);
      if (f && sizeOf(b.outShape) === sizeOf(a.outShape)) merged = { prim: pa, fold: { axis: 1, by: f } };
    } else if (pa.op === 'scale' && pb.op === 'conv' && pb.group === 1) {
      const f = perAxis(pa.factor, a.inShapes[0], 1);
      if (f && sizeOf(a.inShapes[0]) === sizeOf(a.outShape)) merged = { prim: pb, fold: { axis: 1, by: f } };
    } else if (pa.op === 'scale' && pb.op === 'matmul' && pb.side === 'right' && pb.weight.dims.length === 2) {
      const f = perAxis(pa.factor, a.inShapes[0], a.inShapes[0].length - 1);
      if (f && sizeOf(a.inShapes[0]) === sizeOf(a.outShape)) merged = { prim: pb, fold: { axis: 0, by: f } };
    }
    if (!merged) continue;
    // a group's prim is always its weight's (a conv or matmul): a scaling folds into a weighted node, never into a scaling
    const folds = pa.op === 'scale' ? [merged.fold] : [...g.folds, merged.fold];
    out.splice(out.length - 2, 2, { node: { ...b, prim: merged.prim, inputs: a.inputs, inShapes: a.inShapes }, folds, sources: [...g.sources, pb] });
  }
  return out;
}

/** A group's node with its weight scaled (a fresh float64 weight where anything folds). */
function foldedNode(g: FoldGroup): LinearNode {
  if (g.folds.length === 0) return g.node;
  const p = g.node.prim as Extract<LinearPrim, { weight: Tensor }>;
  let weight = p.weight;
  for (const f of g.folds) weight = scaleWeights(weight, f.axis, f.by);
  return { ...g.node, prim: { ...p, weight } as LinearPrim };
}

/**
 * Folds per-channel scalings (inference BatchNormalization, input normalisation) into the adjacent conv or dense
 * weights, so a Conv → BN region is certified as one convolution instead of a product of two norms.
 */
export function foldScales(nodes: readonly LinearNode[]): LinearNode[] {
  return foldGroups(nodes).map(foldedNode);
}

/** Whether foldScales would merge anything in `nodes` (no weight is scaled to find out). */
export function foldsAny(nodes: readonly LinearNode[]): boolean {
  return foldGroups(nodes).length < nodes.length;
}

/** How many nodes foldScales(nodes) returns (no weight is scaled to find out). */
export function foldedLength(nodes: readonly LinearNode[]): number {
  return foldGroups(nodes).length;
}

/** A node that stands for foldScales(nodes)'s last one in every fold decision (foldsAny): the same node, its weight unscaled. */
export function foldedTail(nodes: readonly LinearNode[]): LinearNode {
  return foldGroups(nodes).at(-1)!.node;
}

/** A number per object, for cache keys made of several objects. */
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;
function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) { id = nextObjectId++; objectIds.set(o, id); }
  return id;
}

/** A group's bounds under one budget, and whether every certificate finished within it. */
interface PrimMemo {
  readonly budget: number;
  readonly bounds: PrimBounds;
  readonly complete: boolean;
}

/**
 * primBounds of weighted groups, by the group's first prim (weakly held) and a key of its other prims, its shapes and
 * the norm: a conv shared by a layer, the products containing it, a residual block and graph-cp's maps is certified
 * once, and its folded weight is built only then. The bounds are a function of what the key names and the budget,
 * and the budget enters only as a threshold each certificate's counted work is checked against (the same count at
 * every budget), so bounds whose certificates all finished within a budget B are those of every budget ≥ B: such a
 * memo serves those too (the certificate budget scales with each measurement's Lanczos work, so it differs from one
 * region to the next); any other is served to its own budget only.
 */
const primBoundCache = new WeakMap<LinearPrim, Map<string, PrimMemo[]>>();

function groupBounds(g: FoldGroup, norm: NormKind, budgetFlop: number): PrimBounds {
  const op = g.node.prim.op;
  if (op !== 'conv' && op !== 'convTranspose' && op !== 'matmul' && op !== 'axisMatrix') return primBounds(g.node, norm, budgetFlop);
  const key = `${g.sources.slice(1).map(objectId).join(',')}|${g.node.inShapes[0].join('x')}|${g.node.outShape.join('x')}|${norm}`;
  let byKey = primBoundCache.get(g.sources[0]);
  if (!byKey) { byKey = new Map(); primBoundCache.set(g.sources[0], byKey); }
  let memos = byKey.get(key);
  if (!memos) { memos = []; byKey.set(key, memos); }
  const memo = memos.find((m) => m.budget === budgetFlop || (m.complete && budgetFlop >= m.budget));
  if (memo) return memo.bounds;
  const short: BudgetShortfalls = { count: 0 };
  const bounds = primBounds(foldedNode(g), norm, budgetFlop, short);
  // a budget ≤ 0 takes the free bounds without trying a certificate: complete for that budget only
  memos.push({ budget: budgetFlop, bounds, complete: short.count === 0 && budgetFlop > 0 });
  return bounds;
}

/** What the composition gives for one region. */
export interface RegionBound {
  /** Certified upper bound on the region's operator norm: exact where the region has one weighted op, else a composition. */
  readonly value: number;
  readonly method: string;
  /** Bound on ‖|A|‖₂ and Σγ over the chain, for the float32 rounding margin of ORT-evaluated products. */
  readonly absNorm: number;
  readonly gammaSum: number;
}

/** The unit roundoff of IEEE float32 (round-to-nearest): the default unit of regionBound's γ-sum. */
export const U32 = 2 ** -24;

/** γ_k = k·u/(1 − k·u) for float32 products of unit roundoff `unit` (Higham §3.1), as the float32 margins take it. */
export function gammaOf(k: number, unit: number): number {
  return (k * unit) / (1 - k * unit);
}

/**
 * Whether c·w is exact for every float32 w (c a power of two, over- and underflow aside): a Mul by such a c folded into
 * a Conv's weights by onnxruntime (ConvMulFusion) rounds nothing; any other c rounds every weight once more.
 */
export function foldsExactly(c: number): boolean {
  const a = Math.abs(c);
  return a === 0 || Math.log2(a) === Math.round(Math.log2(a));
}

/**
 * A certified bound on a merged linear operator's norm (ℓ2 or ℓ∞), composing per-prim certified bounds over the
 * region's DAG (ALGORITHMS.md §1–2): sums add, concatenations combine in quadrature (ℓ2) or by max (ℓ∞). Exact when
 * the region holds one weighted op between isometries; a product of norms (looser) when it holds several.
 * `budgetFlop` is each costly certificate's work budget (SVD, circular FFT; flop, linalg/work.ts); past it, or when it is
 * ≤ 0, Schur's bound sqrt(‖A‖₁‖A‖∞) is used instead. The same region and budget always give the same bound. `unit` is
 * the float32 unit roundoff of the products the γ-sum is for (OperatorBackend.float32Unit; 2⁻²⁴ by default).
 */
export function regionBound(region: LinearRegion, norm: NormKind, budgetFlop = DEFAULT_CERTIFICATE_FLOP, unit = U32): RegionBound {
  const l = new Map<string, { v: number; abs: number }>([[region.input, { v: 1, abs: 1 }]]);
  let gammaSum = 0;
  const weighted: string[] = [];
  for (const g of foldGroups(region.nodes)) {
    const n = g.node;
    const b = groupBounds(g, norm, budgetFlop);
    // a length-k dot product rounds within γ_k; each scaling folded into the weights here may be folded by onnxruntime
    // too (ConvMulFusion), rounding every weight once more: γ_{k + folds}, at least γ_{k+1}
    gammaSum += gammaOf(b.inner + Math.max(1, g.folds.length), unit);
    const trivial = b.method === 'isometry' || b.method === 'exact' || (b.method === 'composition' && n.inputs.length < 2);
    if (!trivial) weighted.push(b.method);
    const ins = n.inputs.map((i) => l.get(i)!);
    let v: number, abs: number;
    if (n.prim.op === 'sum') {
      const spreads = n.inShapes.map((s) => (norm === 'inf' ? 1 : Math.sqrt(sizeOf(n.outShape) / sizeOf(s))));
      v = ins.reduce((a, x, i) => a + Math.abs(n.prim.op === 'sum' ? (n.prim as { signs: readonly number[] }).signs[i] : 1) * spreads[i] * x.v, 0);
      abs = ins.reduce((a, x, i) => a + spreads[i] * x.abs, 0);
    } else if (n.prim.op === 'concat') {
      v = norm === 'inf' ? Math.max(...ins.map((x) => x.v)) : Math.sqrt(ins.reduce((a, x) => a + x.v * x.v, 0));
      abs = Math.sqrt(ins.reduce((a, x) => a + x.abs * x.abs, 0));
    } else {
      v = b.norm * ins[0].v;
      abs = b.absNorm * ins[0].abs;
    }
    l.set(n.output, { v, abs });
  }
  const out = l.get(region.output)!;
  const method = weighted.length === 0 ? 'exact' : weighted.length === 1 ? weighted[0] : `product(${weighted.join(',')})`;
  return { value: out.v, method, absNorm: out.abs, gammaSum };
}
