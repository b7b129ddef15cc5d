import type { Block } from '../ir/merge.js';
import type { ModelEvaluator } from '../ir/operator.js';
import { sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import type { ActivationNode, IrGraph, LinearNode } from '../ir/types.js';
import { roundUp, gamma } from '../linalg/dense.js';
import { pairRatio } from '../linalg/witness.js';
import { findSegments } from './cp.js';
import type { Bound, NormKind } from './kinds.js';
import { windowPositions } from './ir-eval.js';
import type { AnalysedModel } from './lower-bound.js';

/**
 * Exact Lipschitz constants of ReLU networks with one or two inputs by enumerating their linear regions
 * (docs/algorithms-exact.md). Everything here is float64 arithmetic whose rounding is either proved absent
 * (error-free transformations, exact determinant signs in BigInt) or carried as an explicit error bound.
 */

/** One affine layer z = W·a + b with entrywise bounds on how far the float64 values may be from the exact ones. */
export interface AffineLayer {
  readonly rows: number;
  readonly cols: number;
  /** Row-major rows × cols. */
  readonly w: Float64Array;
  readonly we: Float64Array;
  readonly b: Float64Array;
  readonly be: Float64Array;
}

/** A piecewise-linear network: affine layers with an activation of slope `lo` below 0 and `hi` above 0 between them. */
export interface ReluNet {
  readonly inputs: number;
  readonly layers: readonly AffineLayer[];
  /** slopes[k] = [lo, hi] of the activation after layers[k]. */
  readonly slopes: readonly (readonly [number, number])[];
}

// ---------------------------------------------------------------------------------------------------------------
// error-tracked float64 arithmetic

const SPLIT = 134217729; // 2^27 + 1 (Dekker)
const U = 2 ** -53;

/** The exact rounding error of p = fl(a·b) (Dekker's TwoProduct; valid without overflow or underflow). */
function twoProdErr(a: number, b: number, p: number): number {
  let c = SPLIT * a;
  const ah = c - (c - a), al = a - ah;
  c = SPLIT * b;
  const bh = c - (c - b), bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

/**
 * A sum of products with an error bound: every rounding is measured exactly (TwoSum, TwoProduct) and its magnitude
 * added to `e`, with the operands' own error bounds; `bound()` rounds `e` up for the roundings of `e` itself. When no
 * operation rounded and no operand carried an error, the bound is exactly 0: the value is the exact real number.
 */
class Acc {
  s = 0;
  e = 0;
  n = 0;
  add(v: number, ev = 0): void {
    const s = this.s + v;
    const bb = s - this.s;
    const err = (this.s - (s - bb)) + (v - bb);
    this.s = s;
    this.e += Math.abs(err) + ev;
    this.n++;
  }
  addProd(x: number, ex: number, y: number, ey: number): void {
    const p = x * y;
    const pe = twoProdErr(x, y, p);
    this.add(p, Math.abs(pe) + Math.abs(x) * ey + Math.abs(y) * ex + ex * ey);
  }
  bound(): number {
    return this.e === 0 ? 0 : this.e * (1 + (2 * this.n + 8) * U) + Number.MIN_VALUE;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the network from the IR

/**
 * The elementwise slopes of a piecewise-linear activation: ReLU [0, 1], LeakyRelu(α) [α, 1] (below 0, above 0). The
 * IR's slope range of LeakyRelu is [min(α, 1), max(α, 1)], so α is its first end below 1 and its second otherwise.
 */
function activationSlopes(a: ActivationNode): [number, number] | null {
  if (a.fn === 'Relu') return [0, 1];
  if (a.fn === 'LeakyRelu') return [a.slope[0] < 1 ? a.slope[0] : a.slope[1], 1];
  return null;
}

interface Aff { a: Float64Array; ea: Float64Array; c: Float64Array; ec: Float64Array; rows: number }

/**
 * The most entries (Σ over the chain's linear nodes of outputs × (region inputs + 1)) {@link reluNetOf} builds: each is
 * an error-tracked sum of a few products, so this bounds its time and memory (about 1 s and 0.3 GB at the limit) and
 * refuses big convolutional nets at once.
 */
export const RELU_NET_MAX_ENTRIES = 4e6;
/**
 * The most error-tracked products (Σ over matmul and conv nodes of weights × outputs per weight row × (region inputs +
 * 1)) {@link reluNetOf} spends: tll_n2_N16_1_0's 5.8e7 take about 0.3 s; a conv net over a large input is refused here.
 */
export const RELU_NET_MAX_WORK = 2e8;

/**
 * The affine layers of a model whose whole IR is one chain operator → ReLU/LeakyReLU → … → operator on a flat input:
 * linear parts from the IR's prims, offsets from the nodes' `offset` (read by the frontend from the constant operands
 * of Add, Sub and Gemm), all in error-tracked float64. Returns why not otherwise.
 */
export function reluNetOf(ir: IrGraph, blocks: readonly Block[]): ReluNet | string {
  const segs = findSegments(ir, blocks);
  if (segs.length !== 1) return 'the graph is not one chain of dense layers and activations';
  const seg = segs[0];
  if (seg.blocks.length !== blocks.length || seg.input !== ir.input || seg.output !== ir.output) return 'the graph is not one chain of dense layers and activations';
  const inputs = sizeOf(ir.inputShape);
  const slopes: [number, number][] = [];
  for (const a of seg.activations) {
    const s = activationSlopes(a);
    if (!s) return `activation ${a.fn} (node '${a.name}') is not piecewise linear with one kink at 0`;
    slopes.push(s);
  }
  // the size rule, before any matrix is built: every node's dense map is outputs × (region inputs + 1) entries, each a
  // sum of (weights per output) products for a matmul or conv
  let entries = 0, work = 0;
  for (const region of seg.regions) {
    const nIn = sizeOf(region.inShape);
    for (const n of region.nodes) {
      const rows = sizeOf(n.outShape);
      entries += rows * (nIn + 1);
      const p = n.prim;
      const products = p.op === 'matmul' ? sizeOf(p.weight.dims) : p.op === 'conv' ? sizeOf(p.weight.dims) * (rows / (p.weight.dims[0] || 1)) : p.op === 'sum' ? rows * p.signs.length : rows;
      work += products * (nIn + 1);
    }
  }
  if (entries > RELU_NET_MAX_ENTRIES) return `its linear maps read back densely would hold ${entries.toExponential(2)} entries (more than ${RELU_NET_MAX_ENTRIES.toExponential(1)}, the read-back's size limit)`;
  if (work > RELU_NET_MAX_WORK) return `reading its linear maps back densely would take ${work.toExponential(2)} error-tracked products (more than ${RELU_NET_MAX_WORK.toExponential(1)}, the read-back's work limit)`;
  const layers: AffineLayer[] = [];
  for (const region of seg.regions) {
    const nIn = sizeOf(region.inShape);
    const vals = new Map<string, Aff>();
    const id = new Float64Array(nIn * nIn);
    for (let i = 0; i < nIn; i++) id[i * nIn + i] = 1;
    vals.set(region.input, { a: id, ea: new Float64Array(nIn * nIn), c: new Float64Array(nIn), ec: new Float64Array(nIn), rows: nIn });
    for (const n of region.nodes) {
      const r = applyNode(n, vals, nIn);
      if (typeof r === 'string') return r;
      const off = n.offset;
      if (typeof off === 'string') return off;
      if (off && off.length !== r.rows) return `the offset of node '${n.name}' has ${off.length} values for ${r.rows} outputs`;
      if (off) for (let i = 0; i < r.rows; i++) { const acc = new Acc(); acc.add(r.c[i], r.ec[i]); acc.add(off[i]); r.c[i] = acc.s; r.ec[i] = acc.bound(); }
      vals.set(n.output, r);
    }
    const out = vals.get(region.output)!;
    layers.push({ rows: out.rows, cols: nIn, w: out.a, we: out.ea, b: out.c, be: out.ec });
  }
  for (const l of layers) for (const v of [l.w, l.b]) for (const x of v) if (!(Math.abs(x) < 1e150)) return 'a weight or offset is not finite or too large for the error-free arithmetic';
  return { inputs, layers, slopes };
}

/**
 * Row q of a transpose's output is row src[q] of its input (ONNX Transpose: output axis k is input axis perm[k]), or why
 * the permutation does not fit the shape.
 */
export function transposeSource(shape: readonly number[], perm: readonly number[]): Int32Array | string {
  const r = shape.length;
  if (perm.length !== r || [...perm].sort((a, b) => a - b).some((v, i) => v !== i)) return `with perm [${perm.join(', ')}], not a permutation of the ${r} axes`;
  const out = perm.map((k) => shape[k]);
  const inStride = new Array<number>(r).fill(1);
  for (let i = r - 2; i >= 0; i--) inStride[i] = inStride[i + 1] * shape[i + 1];
  const size = sizeOf(shape);
  const src = new Int32Array(size);
  const idx = new Array<number>(r).fill(0);
  for (let q = 0; q < size; q++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += idx[k] * inStride[perm[k]];
    src[q] = s;
    for (let k = r - 1; k >= 0; k--) { if (++idx[k] < out[k]) break; idx[k] = 0; }
  }
  return src;
}

/**
 * The taps of an ONNX Conv (N, C, spatial… input; weight M × C/group × kernel…; pads begin…, end…): for each flat output
 * element the flat input elements it reads and their weights (padding taps dropped: they read zeros, the bias is the
 * node's offset), or why the geometry does not match the shapes.
 */
export function convTaps(xs: readonly number[], ys: readonly number[], p: { readonly weight: Tensor; readonly group: number; readonly strides: readonly number[]; readonly pads: readonly number[]; readonly dilations: readonly number[] }): { inRows: number; row: Int32Array[]; w: Float64Array[] } | string {
  const r = xs.length - 2, k = p.weight.dims.slice(2), g = p.group;
  const [batch, C] = xs, M = p.weight.dims[0], Cg = p.weight.dims[1];
  if (r < 1 || k.length !== r || ys.length !== xs.length || ys[0] !== batch || ys[1] !== M || C !== Cg * g || M % g !== 0) return `has a weight of shape [${p.weight.dims.join(', ')}] that does not fit its input [${xs.join(', ')}] and output [${ys.join(', ')}] with group ${g}`;
  const s = p.strides, d = p.dilations, begin = p.pads.slice(0, r);
  for (let i = 0; i < r; i++) {
    const want = Math.floor((xs[2 + i] + p.pads[i] + p.pads[r + i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1;
    if (want !== ys[2 + i]) return `has output size ${ys[2 + i]} on spatial axis ${i} where its geometry gives ${want}`;
  }
  const wv = toFloat64(p.weight);
  const inSp = xs.slice(2), outSp = ys.slice(2);
  const inPlane = sizeOf(inSp), outPlane = sizeOf(outSp), kSize = sizeOf(k);
  const Mg = M / g;
  // per output position and kernel tap, the input position (−1 in the padding)
  const at = windowPositions(inSp, outSp, k, s, d, begin);
  const row: Int32Array[] = [], w: Float64Array[] = [];
  for (let b = 0; b < batch; b++) {
    for (let m = 0; m < M; m++) {
      const c0 = Math.floor(m / Mg) * Cg;
      for (let q = 0; q < outPlane; q++) {
        const rs: number[] = [], ws: number[] = [];
        for (let c = 0; c < Cg; c++) {
          for (let kk = 0; kk < kSize; kk++) {
            const pos = at[q * kSize + kk], wt = wv[(m * Cg + c) * kSize + kk];
            if (pos < 0 || wt === 0) continue;
            rs.push((b * C + c0 + c) * inPlane + pos);
            ws.push(wt);
          }
        }
        row.push(Int32Array.from(rs));
        w.push(Float64Array.from(ws));
      }
    }
  }
  return { inRows: batch * C * inPlane, row, w };
}

/** The IR node's output as an affine map of the region input, error-tracked; a string when the prim is not handled. */
function applyNode(n: LinearNode, vals: Map<string, Aff>, nIn: number): Aff | string {
  const p = n.prim;
  const x = vals.get(n.inputs[0]);
  if (!x) return `node '${n.name}' reads a value outside its region`;
  const outSize = sizeOf(n.outShape);
  const copy = (): Aff => ({ a: Float64Array.from(x.a), ea: Float64Array.from(x.ea), c: Float64Array.from(x.c), ec: Float64Array.from(x.ec), rows: x.rows });
  switch (p.op) {
    case 'reshape': return copy();
    case 'transpose': {
      const src = transposeSource(n.inShapes[0], p.perm);
      if (typeof src === 'string' || src.length !== x.rows) return `node '${n.name}' transposes ${typeof src === 'string' ? src : 'a tensor whose size is not its input\'s'}`;
      // a permutation of rows: no arithmetic, no rounding
      const y: Aff = { a: new Float64Array(x.rows * nIn), ea: new Float64Array(x.rows * nIn), c: new Float64Array(x.rows), ec: new Float64Array(x.rows), rows: x.rows };
      src.forEach((r, q) => {
        y.a.set(x.a.subarray(r * nIn, (r + 1) * nIn), q * nIn);
        y.ea.set(x.ea.subarray(r * nIn, (r + 1) * nIn), q * nIn);
        y.c[q] = x.c[r];
        y.ec[q] = x.ec[r];
      });
      return y;
    }
    case 'conv': {
      const taps = convTaps(n.inShapes[0], n.outShape, p);
      if (typeof taps === 'string') return `node '${n.name}' (Conv) ${taps}`;
      if (taps.inRows !== x.rows) return `node '${n.name}' (Conv) reads ${x.rows} values for an input of ${taps.inRows}`;
      const y: Aff = { a: new Float64Array(outSize * nIn), ea: new Float64Array(outSize * nIn), c: new Float64Array(outSize), ec: new Float64Array(outSize), rows: outSize };
      for (let o = 0; o < outSize; o++) {
        const from = taps.row[o], w = taps.w[o];
        for (let j = 0; j <= nIn; j++) {
          const acc = new Acc();
          for (let t = 0; t < from.length; t++) acc.addProd(w[t], 0, j < nIn ? x.a[from[t] * nIn + j] : x.c[from[t]], j < nIn ? x.ea[from[t] * nIn + j] : x.ec[from[t]]);
          if (j < nIn) { y.a[o * nIn + j] = acc.s; y.ea[o * nIn + j] = acc.bound(); } else { y.c[o] = acc.s; y.ec[o] = acc.bound(); }
        }
      }
      return y;
    }
    case 'scale': {
      const f = toFloat64(p.factor);
      if (f.length !== 1 && f.length !== outSize) return `node '${n.name}' scales by a broadcast factor`;
      const y = copy();
      for (let i = 0; i < y.rows; i++) {
        const fi = f[f.length === 1 ? 0 : i];
        for (let j = 0; j < nIn; j++) { const acc = new Acc(); acc.addProd(x.a[i * nIn + j], x.ea[i * nIn + j], fi, 0); y.a[i * nIn + j] = acc.s; y.ea[i * nIn + j] = acc.bound(); }
        const acc = new Acc(); acc.addProd(x.c[i], x.ec[i], fi, 0); y.c[i] = acc.s; y.ec[i] = acc.bound();
      }
      return y;
    }
    case 'sum': {
      const ins = n.inputs.map((i) => vals.get(i));
      if (ins.some((v) => !v || v.rows !== outSize)) return `node '${n.name}' sums values of different shapes`;
      const y: Aff = { a: new Float64Array(outSize * nIn), ea: new Float64Array(outSize * nIn), c: new Float64Array(outSize), ec: new Float64Array(outSize), rows: outSize };
      for (let i = 0; i < outSize; i++) {
        for (let j = 0; j <= nIn; j++) {
          const acc = new Acc();
          ins.forEach((v, k) => acc.addProd(j < nIn ? v!.a[i * nIn + j] : v!.c[i], j < nIn ? v!.ea[i * nIn + j] : v!.ec[i], p.signs[k], 0));
          if (j < nIn) { y.a[i * nIn + j] = acc.s; y.ea[i * nIn + j] = acc.bound(); } else { y.c[i] = acc.s; y.ec[i] = acc.bound(); }
        }
      }
      return y;
    }
    case 'matmul': {
      const w = p.weight;
      if (w.dims.length !== 2) return `node '${n.name}' multiplies by a weight of rank ${w.dims.length}`;
      const inShape = n.inShapes[0];
      // y = x·W (x a row), or W·x for x of shape [k] or [k, 1]: either way y_o = Σ_i W_io x_i with W read as k × m
      const left = p.side === 'left';
      if (left && !(inShape.length === 1 || inShape[inShape.length - 1] === 1)) return `node '${n.name}' multiplies a matrix of inputs from the left`;
      const [k, m] = left ? [w.dims[1], w.dims[0]] : w.dims;
      if (x.rows !== k || outSize !== m) return `node '${n.name}' multiplies a batch of vectors`;
      const raw = toFloat64(w);
      const wv = left ? Float64Array.from({ length: k * m }, (_, q) => raw[(q % m) * k + Math.floor(q / m)]) : raw;
      const y: Aff = { a: new Float64Array(m * nIn), ea: new Float64Array(m * nIn), c: new Float64Array(m), ec: new Float64Array(m), rows: m };
      for (let o = 0; o < m; o++) {
        for (let j = 0; j <= nIn; j++) {
          const acc = new Acc();
          for (let i = 0; i < k; i++) {
            const wi = wv[i * m + o];
            if (wi === 0) continue;
            acc.addProd(wi, 0, j < nIn ? x.a[i * nIn + j] : x.c[i], j < nIn ? x.ea[i * nIn + j] : x.ec[i]);
          }
          if (j < nIn) { y.a[o * nIn + j] = acc.s; y.ea[o * nIn + j] = acc.bound(); } else { y.c[o] = acc.s; y.ec[o] = acc.bound(); }
        }
      }
      return y;
    }
    default: return `node '${n.name}' (${p.op}) is not read back as an affine map here`;
  }
}

/** The network's output at x, in float64 (for tests and the extraction check). */
export function evaluateNet(net: ReluNet, x: ArrayLike<number>): Float64Array {
  let a = Float64Array.from(x);
  net.layers.forEach((l, k) => {
    const z = new Float64Array(l.rows);
    for (let i = 0; i < l.rows; i++) { let s = l.b[i]; for (let j = 0; j < l.cols; j++) s += l.w[i * l.cols + j] * a[j]; z[i] = s; }
    if (k < net.slopes.length) { const [lo, hi] = net.slopes[k]; a = z.map((v) => (v > 0 ? hi * v : lo * v)); } else a = z;
  });
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// exact signs of 3×3 determinants

const F64 = new Float64Array(1);
const BITS = new BigUint64Array(F64.buffer);

/** x = m·2^e exactly (m a BigInt), for finite x. */
export function exactOf(x: number): { m: bigint; e: number } {
  if (x === 0) return { m: 0n, e: 0 };
  F64[0] = x;
  const bits = BITS[0];
  const neg = bits >> 63n === 1n;
  const ex = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & 0xfffffffffffffn;
  const m = ex === 0 ? frac : frac | 0x10000000000000n;
  const e = (ex === 0 ? 1 : ex) - 1075;
  return { m: neg ? -m : m, e };
}

/** A vector of doubles as integers with one common exponent: v_i = m_i·2^e exactly. */
export interface ExactVec { readonly m: readonly bigint[]; readonly e: number }

export function exactVec(v: ArrayLike<number>): ExactVec {
  const parts = Array.from(v, exactOf);
  const nz = parts.filter((p) => p.m !== 0n);
  const e = nz.length ? Math.min(...nz.map((p) => p.e)) : 0;
  return { m: parts.map((p) => (p.m === 0n ? 0n : p.m << BigInt(p.e - e))), e };
}

function exactCross(p: ExactVec, q: ExactVec): ExactVec {
  const [a0, a1, a2] = p.m, [b0, b1, b2] = q.m;
  return { m: [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], e: p.e + q.e };
}

/** The sign of h·v for exact vectors (the common exponents do not change it). */
function exactDotSign(h: ExactVec, v: ExactVec): number {
  const s = h.m[0] * v.m[0] + h.m[1] * v.m[1] + h.m[2] * v.m[2];
  return s > 0n ? 1 : s < 0n ? -1 : 0;
}

/** A line of the chart: a plane through 0 in homogeneous coordinates (y0, y1, y2), taken as exact. */
interface Line {
  /** The float64 normal; exactly the line unless `err` is given. */
  readonly n: Float64Array;
  /** Entrywise bound on |n − exact| when n is rounded (then `x` holds the exact normal). */
  readonly err?: Float64Array;
  x?: ExactVec;
}

const exactOfLine = (l: Line): ExactVec => (l.x ??= exactVec(l.n));

/**
 * The exact sign of det[h; p; q]: a float filter first (|fl(det) − det| ≤ 8u·perm, perm the permanent of the absolute
 * values: Higham §3.1 for the three-term sum of three-fold products; plus what the lines' error bounds allow), then
 * BigInt arithmetic on the exact normals.
 */
function detSign(h: Line, p: Line, q: Line, vertex?: { v?: ExactVec }): number {
  const [h0, h1, h2] = h.n, [a0, a1, a2] = p.n, [b0, b1, b2] = q.n;
  const d = h0 * (a1 * b2 - a2 * b1) - h1 * (a0 * b2 - a2 * b0) + h2 * (a0 * b1 - a1 * b0);
  const perm = Math.abs(h0) * (Math.abs(a1 * b2) + Math.abs(a2 * b1)) + Math.abs(h1) * (Math.abs(a0 * b2) + Math.abs(a2 * b0)) + Math.abs(h2) * (Math.abs(a0 * b1) + Math.abs(a1 * b0));
  let bound = 8 * U * perm;
  if (h.err || p.err || q.err) {
    const abs = (l: Line) => [0, 1, 2].map((i) => Math.abs(l.n[i]) + (l.err ? l.err[i] : 0));
    const [H, P, Q] = [abs(h), abs(p), abs(q)];
    const perm2 = H[0] * (P[1] * Q[2] + P[2] * Q[1]) + H[1] * (P[0] * Q[2] + P[2] * Q[0]) + H[2] * (P[0] * Q[1] + P[1] * Q[0]);
    bound += (perm2 - perm) * (1 + 1e-9) + 8 * U * perm2;
  }
  if (d > bound) return 1;
  if (d < -bound) return -1;
  const v = vertex ? (vertex.v ??= exactCross(exactOfLine(p), exactOfLine(q))) : exactCross(exactOfLine(p), exactOfLine(q));
  return exactDotSign(exactOfLine(h), v);
}

// ---------------------------------------------------------------------------------------------------------------
// region enumeration

/** A convex polygon of one chart: its edge lines in cyclic order; vertex i is the meeting point of edges i and i+1. */
interface Cell { readonly edges: readonly Line[]; readonly orient: readonly number[]; readonly vx: { v?: ExactVec }[] }

const exactLine = (a: number, b: number, c: number): Line => ({ n: Float64Array.of(a, b, c) });

/** A region of the final enumeration with its Jacobian (out × 2, row-major) and the certified norm bound. */
export interface Region {
  readonly cell: { readonly sigma: readonly [number, number]; readonly edges: readonly Line[]; readonly orient: readonly number[] };
  readonly jacobian: Float64Array;
  readonly upper: number;
  readonly estimate: number;
}

/** The enumeration's result: the max over regions (meaningful only when `complete`), the best regions, the work done. */
export interface Enumeration {
  readonly complete: boolean;
  /** max over regions of the certified ‖J‖ (ℓ2 or ℓ∞); an upper bound on L when complete, +∞ otherwise. */
  readonly upper: number;
  /** The regions with the largest estimates, best first (at most `keep`). */
  readonly best: readonly Region[];
  readonly regions: number;
  /** Cells visited (the work unit the budget counts). */
  readonly work: number;
  /** Splits along a unit whose float64 row carried an error bound: made with overlapping sides. */
  readonly inexactSplits: number;
}

/**
 * Enumerates the linear regions of a ReLU/LeakyReLU network with one or two inputs (one input is padded with a second
 * that nothing reads) in the four projective charts {y0 + σ1·y1 + σ2·y2 = 1, y0, σ1y1, σ2y2 ≥ 0}, which cover ℝ² with
 * its points at infinity, so unbounded regions are closed polygons. Layer by layer each cell is split along every unit
 * whose pre-activation (linear in y on the cell) changes sign on it, with exact signs at the vertices (BigInt
 * determinants); a row known only within an error bound δ splits the cell into two overlapping sides ĥ ≥ −δ·c·y and
 * ĥ ≤ δ·c·y, so every point keeps its true pattern. Returns the max over regions of ‖J‖ (ℓ2: σ_max, ℓ∞: max row sum)
 * with rounding margins; `budget` caps the cells visited.
 */
export function enumerateRegions(net: ReluNet, norm: NormKind, budget = 200_000, keep = 4): Enumeration {
  if (net.inputs !== 1 && net.inputs !== 2) throw new Error(`enumerateRegions handles 1 or 2 inputs, not ${net.inputs}`);
  const layers = net.inputs === 2 ? net.layers : [padLayer(net.layers[0]), ...net.layers.slice(1)];
  let work = 0, regions = 0, inexactSplits = 0, complete = true, upper = 0;
  const best: Region[] = [];
  const L = layers.length;

  const record = (cell: Cell, sigma: [number, number], M: Float64Array, ME: Float64Array, rows: number) => {
    regions++;
    const J = new Float64Array(rows * 2), JE = new Float64Array(rows * 2);
    for (let i = 0; i < rows; i++) for (let c = 0; c < 2; c++) { J[i * 2 + c] = M[i * 3 + 1 + c]; JE[i * 2 + c] = ME[i * 3 + 1 + c]; }
    const { upper: u, estimate } = jacobianNorm(J, JE, rows, norm);
    upper = Math.max(upper, u);
    if (best.length < keep || estimate > best[best.length - 1].estimate) {
      best.push({ cell: { sigma, edges: cell.edges, orient: cell.orient }, jacobian: J, upper: u, estimate });
      best.sort((a, b) => b.estimate - a.estimate);
      if (best.length > keep) best.pop();
    }
  };

  for (const sigma of [[1, 1], [1, -1], [-1, 1], [-1, -1]] as [number, number][]) {
    const c = exactLine(1, sigma[0], sigma[1]);
    const edges = [exactLine(0, 1, 0), exactLine(0, 0, 1), exactLine(1, 0, 0)];
    const start: Cell = { edges, orient: orientations(edges, c), vx: edges.map(() => ({})) };
    // M: homogeneous pre-activations of layer 0: z·y0 = b·y0 + W·(y1, y2)
    const l0 = layers[0];
    const M = new Float64Array(l0.rows * 3), ME = new Float64Array(l0.rows * 3);
    for (let i = 0; i < l0.rows; i++) {
      M[i * 3] = l0.b[i]; ME[i * 3] = l0.be[i];
      for (let j = 0; j < 2; j++) { M[i * 3 + 1 + j] = l0.w[i * 2 + j]; ME[i * 3 + 1 + j] = l0.we[i * 2 + j]; }
    }
    type Task = { cell: Cell; k: number; M: Float64Array; ME: Float64Array; MX: ExactVec[] | null; todo: number[]; slope: Float64Array };
    const stack: Task[] = [{ cell: start, k: 0, M, ME, MX: null, todo: [...Array(l0.rows).keys()], slope: new Float64Array(l0.rows) }];
    while (stack.length) {
      if (work >= budget) { complete = false; break; }
      work++;
      const t = stack.pop()!;
      const { cell, k } = t;
      if (k === L - 1) { record(cell, sigma, t.M, t.ME, layers[k].rows); continue; }
      const [lo, hi] = net.slopes[k];
      // decide every unit that does not cross the cell; the first that does splits it, the others stay to do
      // (a unit that does not cross a cell crosses none of its parts)
      const slope = Float64Array.from(t.slope);
      let split: { j: number; pos: Cell; neg: Cell } | null = null;
      const todo: number[] = [];
      for (const j of t.todo) {
        const d = decide(cell, t.M, t.ME, t.MX, j, c, !split);
        if (split) { if (d.side === 0) todo.push(j); else slope[j] = d.side > 0 ? hi : lo; continue; }
        if (d.side !== 0) { slope[j] = d.side > 0 ? hi : lo; continue; }
        split = { j, pos: d.pos!, neg: d.neg! };
        if (d.inexact) inexactSplits++;
      }
      if (split) {
        for (const [child, s] of [[split.pos, hi], [split.neg, lo]] as [Cell, number][]) {
          const sl = Float64Array.from(slope);
          sl[split.j] = s;
          stack.push({ ...t, cell: child, todo, slope: sl });
        }
        continue;
      }
      // every unit of layer k decided: the next layer's homogeneous pre-activations
      const next = layers[k + 1];
      const { M: M2, ME: ME2 } = propagate(next, slope, t.M, t.ME);
      const MX = ME2.some((v) => v !== 0) ? propagateExact(next, slope, t.M, t.ME, t.MX) : null;
      stack.push({ cell, k: k + 1, M: M2, ME: ME2, MX, todo: [...Array(next.rows).keys()], slope: new Float64Array(next.rows) });
    }
    if (!complete) break;
  }
  return { complete, upper: complete ? upper : Infinity, best, regions, work, inexactSplits };
}

/** The signs (exact) of a line at the cell's vertices. */
function vertexSigns(cell: Cell, h: Line): number[] {
  const m = cell.edges.length;
  return cell.edges.map((_, i) => detSign(h, cell.edges[i], cell.edges[(i + 1) % m], cell.vx[i]) * cell.orient[i]);
}

/**
 * Unit j on a cell: side 1 (pre-activation ≥ 0 on all of it), −1 (≤ 0), or 0 with the two sides to continue with. An
 * exact row splits along its own line; a row ĥ with entrywise error bound e (so |h − ĥ|(y) ≤ Σ e_i|y_i| = (e⊙c)·y on
 * the chart) is decided by the lines ĥ ∓ δ, δ = 2·e⊙c, and split into the overlapping sides ĥ + δ ≥ 0 and ĥ − δ ≤ 0.
 */
function decide(cell: Cell, M: Float64Array, ME: Float64Array, MX: ExactVec[] | null, j: number, c: Line, parts = true): { side: number; pos?: Cell; neg?: Cell; inexact?: boolean } {
  const h = M.subarray(j * 3, j * 3 + 3), e = ME.subarray(j * 3, j * 3 + 3);
  const exact = e[0] === 0 && e[1] === 0 && e[2] === 0;
  if (exact || MX) {
    const line: Line = exact ? { n: h } : { n: h, err: e, x: MX![j] };
    const s = vertexSigns(cell, line);
    const pos = s.some((v) => v > 0), neg = s.some((v) => v < 0);
    if (!(pos && neg)) return { side: pos ? 1 : -1 };
    if (!parts) return { side: 0 };
    return { side: 0, pos: clip(cell, s, line, c), neg: clip(cell, s.map((v) => -v), line, c) };
  }
  // on the chart |y_i| = c_i·y_i, so |h − ĥ|(y) ≤ Σ e_i·c_i·y_i: a linear bound; doubled (and 4u|ĥ_i| added) to
  // cover the rounding of ĥ ± δ itself
  const delta = Float64Array.from(e, (v, i) => (v === 0 ? 0 : (2 * v + 4 * U * Math.abs(h[i])) * c.n[i]));
  const up = { n: Float64Array.from(h, (v, i) => v + delta[i]) }, down = { n: Float64Array.from(h, (v, i) => v - delta[i]) };
  const su = vertexSigns(cell, up), sd = vertexSigns(cell, down);
  if (sd.every((v) => v >= 0)) return { side: 1 };
  if (su.every((v) => v <= 0)) return { side: -1 };
  if (!parts) return { side: 0 };
  const pos = su.some((v) => v < 0) ? clip(cell, su, up, c) : cell;
  const neg = sd.some((v) => v > 0) ? clip(cell, sd.map((v) => -v), down, c) : cell;
  return { side: 0, pos, neg, inexact: true };
}

function padLayer(l: AffineLayer): AffineLayer {
  const w = new Float64Array(l.rows * 2), we = new Float64Array(l.rows * 2);
  for (let i = 0; i < l.rows; i++) { w[i * 2] = l.w[i]; we[i * 2] = l.we[i]; }
  return { ...l, cols: 2, w, we };
}

/** Orientation of each vertex: the sign that puts edges[i] × edges[i+1] inside the chart, where c·y > 0. */
function orientations(edges: readonly Line[], c: Line): number[] {
  return edges.map((_, i) => {
    const s = detSign(c, edges[i], edges[(i + 1) % edges.length]);
    if (s === 0) throw new Error('a cell vertex lies outside its chart');
    return s;
  });
}

/**
 * The part of a convex cell where h ≥ 0, given h's exact signs at its vertices (some > 0, some < 0). Edge i runs from
 * vertex i−1 to vertex i and keeps a part when either end is > 0; h goes in after the kept edge that leaves the
 * positive side (the one whose end vertex is ≤ 0), which is unique on a convex polygon.
 */
function clip(cell: Cell, signs: readonly number[], h: Line, c: Line): Cell {
  const m = cell.edges.length;
  const kept = (i: number) => signs[(i - 1 + m) % m] > 0 || signs[i] > 0;
  let exit = -1;
  for (let i = 0; i < m; i++) if (kept(i) && signs[i] <= 0) exit = i;
  const edges: Line[] = [];
  for (let step = 1; step <= m; step++) { const i = (exit + step) % m; if (kept(i)) edges.push(cell.edges[i]); }
  edges.push(h);
  return { edges, orient: orientations(edges, c), vx: edges.map(() => ({})) };
}

/** The nonzero weights of each row of a layer (column, weight, error), for sparse products. */
const sparseRows = new WeakMap<AffineLayer, { cols: Int32Array; w: Float64Array; e: Float64Array }[]>();

function rowsOf(l: AffineLayer): { cols: Int32Array; w: Float64Array; e: Float64Array }[] {
  let r = sparseRows.get(l);
  if (!r) {
    r = [];
    for (let i = 0; i < l.rows; i++) {
      const js: number[] = [];
      for (let j = 0; j < l.cols; j++) if (l.w[i * l.cols + j] !== 0 || l.we[i * l.cols + j] !== 0) js.push(j);
      r.push({ cols: Int32Array.from(js), w: Float64Array.from(js, (j) => l.w[i * l.cols + j]), e: Float64Array.from(js, (j) => l.we[i * l.cols + j]) });
    }
    sparseRows.set(l, r);
  }
  return r;
}

/** M' = W·diag(slope)·M + b·e0ᵀ for the next layer, error-tracked. */
function propagate(l: AffineLayer, slope: Float64Array, M: Float64Array, ME: Float64Array): { M: Float64Array; ME: Float64Array } {
  const cols = l.cols;
  const DM = new Float64Array(cols * 3), DME = new Float64Array(cols * 3);
  for (let j = 0; j < cols; j++) {
    const s = slope[j];
    if (s === 0) continue;
    for (let c = 0; c < 3; c++) {
      if (s === 1) { DM[j * 3 + c] = M[j * 3 + c]; DME[j * 3 + c] = ME[j * 3 + c]; continue; }
      const acc = new Acc(); acc.addProd(M[j * 3 + c], ME[j * 3 + c], s, 0);
      DM[j * 3 + c] = acc.s; DME[j * 3 + c] = acc.bound();
    }
  }
  const out = new Float64Array(l.rows * 3), oe = new Float64Array(l.rows * 3);
  const rows = rowsOf(l);
  const acc = new Acc();
  for (let i = 0; i < l.rows; i++) {
    const r = rows[i];
    for (let c = 0; c < 3; c++) {
      acc.s = 0; acc.e = 0; acc.n = 0;
      for (let q = 0; q < r.cols.length; q++) { const j = r.cols[q]; if (slope[j] !== 0) acc.addProd(r.w[q], r.e[q], DM[j * 3 + c], DME[j * 3 + c]); }
      if (c === 0) acc.add(l.b[i], l.be[i]);
      out[i * 3 + c] = acc.s; oe[i * 3 + c] = acc.bound();
    }
  }
  return { M: out, ME: oe };
}

/** The exact dyadic value m·2^e of each weight of a layer, or null when the layer's values carry error bounds. */
const exactWeights = new WeakMap<AffineLayer, { w: { m: bigint; e: number }[]; b: { m: bigint; e: number }[] } | null>();

function exactLayer(l: AffineLayer): { w: { m: bigint; e: number }[]; b: { m: bigint; e: number }[] } | null {
  if (!exactWeights.has(l)) {
    const exact = l.we.every((v) => v === 0) && l.be.every((v) => v === 0);
    exactWeights.set(l, exact ? { w: Array.from(l.w, exactOf), b: Array.from(l.b, exactOf) } : null);
  }
  return exactWeights.get(l)!;
}

/** Σ of exact terms (value m·2^e each) as one integer with the least exponent. */
function exactSum(terms: { m: bigint; e: number }[]): { m: bigint; e: number } {
  const nz = terms.filter((t) => t.m !== 0n);
  if (!nz.length) return { m: 0n, e: 0 };
  const e = Math.min(...nz.map((t) => t.e));
  let m = 0n;
  for (const t of nz) m += t.m << BigInt(t.e - e);
  return { m, e };
}

/**
 * The next layer's homogeneous rows in exact dyadic arithmetic (BigInt), when the float64 ones rounded: from the exact
 * rows of this layer (`MX`, or the float rows when those carry no error). Null when an exact form is not available (a
 * layer read back with rounding); the enumeration then splits with overlapping sides.
 */
function propagateExact(l: AffineLayer, slope: Float64Array, M: Float64Array, ME: Float64Array, MX: ExactVec[] | null): ExactVec[] | null {
  const ex = exactLayer(l);
  if (!ex) return null;
  let prev = MX;
  if (!prev) {
    if (ME.some((v) => v !== 0)) return null;
    prev = [];
    for (let j = 0; j < l.cols; j++) prev.push(exactVec(M.subarray(j * 3, j * 3 + 3)));
  }
  const slopes = new Map<number, { m: bigint; e: number }>();
  const out: ExactVec[] = [];
  const rows = rowsOf(l);
  for (let i = 0; i < l.rows; i++) {
    const cols: { m: bigint; e: number }[][] = [[], [], []];
    const r = rows[i];
    for (let q = 0; q < r.cols.length; q++) {
      const j = r.cols[q];
      if (slope[j] === 0) continue;
      let s = slopes.get(slope[j]);
      if (!s) { s = exactOf(slope[j]); slopes.set(slope[j], s); }
      const w = ex.w[i * l.cols + j];
      for (let c = 0; c < 3; c++) cols[c].push({ m: w.m * s.m * prev[j].m[c], e: w.e + s.e + prev[j].e });
    }
    cols[0].push(ex.b[i]);
    const parts = cols.map(exactSum);
    const nz = parts.filter((p) => p.m !== 0n);
    const e = nz.length ? Math.min(...nz.map((p) => p.e)) : 0;
    out.push({ m: parts.map((p) => (p.m === 0n ? 0n : p.m << BigInt(p.e - e))), e });
  }
  return out;
}

/**
 * A certified bound on ‖J‖ for the exact J within JE of the computed Ĵ (rows × 2): ℓ2: σ_max(Ĵ) from the 2×2 Gram
 * matrix (its rounding γ_rows‖Ĵ‖_F² added, the closed-form eigenvalue rounded up) plus ‖JE‖_F; ℓ∞: the max row sum of
 * |Ĵ| + JE rounded up. The estimate is the plain float64 value.
 */
export function jacobianNorm(J: Float64Array, JE: Float64Array, rows: number, norm: NormKind): { upper: number; estimate: number } {
  if (norm === 'inf') {
    let best = 0, est = 0;
    for (let i = 0; i < rows; i++) {
      const s = Math.abs(J[i * 2]) + Math.abs(J[i * 2 + 1]);
      est = Math.max(est, s);
      best = Math.max(best, s + JE[i * 2] + JE[i * 2 + 1]);
    }
    return { upper: roundUp(best, 4), estimate: est };
  }
  let a = 0, b = 0, c = 0, f2 = 0, e2 = 0;
  for (let i = 0; i < rows; i++) {
    const x = J[i * 2], y = J[i * 2 + 1];
    a += x * x; b += x * y; c += y * y;
    e2 += JE[i * 2] ** 2 + JE[i * 2 + 1] ** 2;
  }
  f2 = a + c;
  const lam = (a + c) / 2 + Math.sqrt(((a - c) / 2) ** 2 + b * b);
  const estimate = Math.sqrt(Math.max(0, lam));
  const lamUp = roundUp(lam, 12) + roundUp(gamma(rows + 2) * f2, 2);
  const upper = roundUp(roundUp(Math.sqrt(lamUp), 1) + (e2 > 0 ? roundUp(Math.sqrt(roundUp(e2, rows + 2)), 1) : 0), 1);
  return { upper, estimate };
}

// ---------------------------------------------------------------------------------------------------------------
// witnesses

/** A point inside a region (the centroid of its finite vertices, in input coordinates) and the region's half-chords along a direction. */
export function regionPoint(region: Region): Float64Array {
  const { edges, orient, sigma } = region.cell;
  const m = edges.length;
  const pts: Float64Array[] = [];
  for (let i = 0; i < m; i++) {
    const p = edges[i].n, q = edges[(i + 1) % m].n;
    const v = Float64Array.of(p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0]).map((x) => x * orient[i]);
    const s = v[0] + sigma[0] * v[1] + sigma[1] * v[2];
    pts.push(v.map((x) => x / s));
  }
  // the centroid of the chart vertices has y0 > 0 (a cell of positive area is not all at infinity)
  const y = new Float64Array(3);
  for (const p of pts) for (let i = 0; i < 3; i++) y[i] += p[i] / m;
  return Float64Array.of(y[1] / y[0], y[2] / y[0]);
}

/** How far x can move along ±dir and stay in the region (each capped at `cap`). */
export function chord(region: Region, x: Float64Array, dir: Float64Array, cap: number): { fwd: number; bwd: number } {
  let fwd = cap, bwd = cap;
  for (const e of region.cell.edges) {
    const [n0, n1, n2] = e.n;
    const g = n0 + n1 * x[0] + n2 * x[1];
    const r = n1 * dir[0] + n2 * dir[1];
    if (r === 0 || g === 0) continue;
    const t = -g / r;
    if (t > 0) fwd = Math.min(fwd, t); else bwd = Math.min(bwd, -t);
  }
  return { fwd, bwd };
}

/** The direction a pair should take in a region: the top right singular vector (ℓ2) or the sign vector of the largest row (ℓ∞). */
export function worstDirection(J: Float64Array, rows: number, norm: NormKind): Float64Array {
  if (norm === 'inf') {
    let bi = 0, bv = -1;
    for (let i = 0; i < rows; i++) { const s = Math.abs(J[i * 2]) + Math.abs(J[i * 2 + 1]); if (s > bv) { bv = s; bi = i; } }
    return Float64Array.of(Math.sign(J[bi * 2]) || 1, Math.sign(J[bi * 2 + 1]) || 1);
  }
  let a = 0, b = 0, c = 0;
  for (let i = 0; i < rows; i++) { const x = J[i * 2], y = J[i * 2 + 1]; a += x * x; b += x * y; c += y * y; }
  const lam = (a + c) / 2 + Math.sqrt(((a - c) / 2) ** 2 + b * b);
  // eigenvector of [[a, b], [b, c]] for lam
  let v = Math.abs(b) > 0 ? Float64Array.of(b, lam - a) : a >= c ? Float64Array.of(1, 0) : Float64Array.of(0, 1);
  const nv = Math.hypot(v[0], v[1]);
  v = v.map((t) => t / nv);
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// the original model in float64

/**
 * A rigorous bound on the float64 evaluation error of the network at x (any summation order): with the absolute forward
 * pass z̄ = |W|ā + |b| and e_k = |W|·max|slope|·e_{k−1} + γ_{n+2}·z̄_k, componentwise (Higham, Thm 3.5 for each dot product).
 */
export function evaluationError(net: ReluNet, x: ArrayLike<number>): number {
  let a = Float64Array.from(x, Math.abs);
  let e = new Float64Array(a.length);
  net.layers.forEach((l, k) => {
    const g = gamma(l.cols + 2);
    const z = new Float64Array(l.rows), ez = new Float64Array(l.rows);
    for (let i = 0; i < l.rows; i++) {
      let s = Math.abs(l.b[i]) + l.be[i], se = 0;
      for (let j = 0; j < l.cols; j++) { const w = Math.abs(l.w[i * l.cols + j]) + l.we[i * l.cols + j]; s += w * a[j]; se += w * e[j]; }
      z[i] = s; ez[i] = se + g * s;
    }
    const m = k < net.slopes.length ? Math.max(Math.abs(net.slopes[k][0]), Math.abs(net.slopes[k][1])) : 1;
    // a LeakyRelu rebuilt as relu(x) + α·(x − relu(x)) rounds three more times: ≤ 4u|z| more
    const act = k < net.slopes.length && net.slopes[k][0] !== 0 ? 4 * U : 0;
    a = z.map((v) => v * m);
    e = ez.map((v, i) => v * m + act * z[i]);
  });
  let n2 = 0;
  for (const v of e) n2 += v * v;
  return roundUp(Math.sqrt(n2), 8 + e.length) * 2;
}

// ---------------------------------------------------------------------------------------------------------------
// the estimator

/** What {@link exactLipschitz} needs. */
export interface ExactArgs extends AnalysedModel {
  /** Cells the enumeration may visit (default 200 000). */
  readonly budget?: number;
  /** Also cap the cells at this many multiply-adds of the rows' propagation (3 per nonzero weight per cell); default none. */
  readonly work?: number;
}

/** An exact constant (upper and lower within 1e-6), or the bracket reached, or why the method does not apply. */
export interface ExactResult {
  readonly status: 'exact' | 'bracket' | 'unsupported';
  readonly reason?: string;
  /** The certified max over all regions (null when the budget ran out or the method does not apply). */
  readonly upper: Bound | null;
  /** The best pair's ratio through the float64 form of the original model, less its evaluation error bound. */
  readonly lower: number;
  /** The pair behind `lower`, in input coordinates (float64). */
  readonly pair: { readonly x: Float64Array; readonly xPrime: Float64Array } | null;
  /** The same pair rounded to float32 and run through the original model: its witnessed ratio (as the other lower bounds). */
  readonly lower32: { readonly value: number; readonly x: Float32Array; readonly xPrime: Float32Array } | null;
  readonly regions: number;
  readonly work: number;
  readonly inexactSplits: number;
  readonly evaluations: number;
  /** Interior points of the best regions (seeds for the pattern search). */
  readonly seeds: readonly Float64Array[];
}

/** Relative gap at which a certified upper and a witnessed lower make an `exact` value. */
export const EXACT_TOLERANCE = 1e-6;

/**
 * The exact Lipschitz constant (ℓ2 or ℓ∞) of a ReLU/LeakyReLU network with at most two inputs: the certified max of
 * ‖J‖ over an enumeration of its linear regions ({@link enumerateRegions}), witnessed by a pair inside the best
 * regions run through the original model widened to float64 (ratio less a rigorous float64 evaluation-error bound).
 * `exact` when they meet within 1e-6 relative; `bracket` when they do not or the budget ran out (upper then null).
 */
export async function exactLipschitz(args: ExactArgs): Promise<ExactResult> {
  const none = (reason: string): ExactResult => ({ status: 'unsupported', reason, upper: null, lower: 0, pair: null, lower32: null, regions: 0, work: 0, inexactSplits: 0, evaluations: 0, seeds: [] });
  const n = sizeOf(args.inputShape);
  if (n > 2) return none(`the input has ${n} elements (region enumeration handles 1 or 2)`);
  const net = reluNetOf(args.ir, args.blocks);
  if (typeof net === 'string') return none(net);
  // the same real function with every weight widened to float64 (the backend declines models it cannot widen, saying why)
  let declined = 'the backend cannot evaluate the model in float64';
  const runner64 = await args.backend.model({ precision: 'float64', what: 'the model in float64 (exact witness)', onDecline: (why) => { declined = why; } });
  if (!runner64) return none(declined);
  let runner32: ModelEvaluator;
  try {
    runner32 = (await args.backend.model({ what: 'the model (exact witness)' }))!;
  } catch (e) {
    await runner64.release();
    throw e;
  }
  let evaluations = 0;
  try {
    const run64 = async (x: Float64Array) => { evaluations++; return (await runner64.run({ [args.inputName]: { dtype: 'float64', dims: args.inputShape, data: x.subarray(0, n) } }, [args.outputName])).get(args.outputName)!.data as Float64Array; };
    const run32 = async (x: Float32Array) => { evaluations++; return toFloat64((await runner32.run({ [args.inputName]: { dtype: 'float32', dims: args.inputShape, data: x } }, [args.outputName])).get(args.outputName)!); };
    // the extraction (offsets especially) must reproduce the model: three points through float64 onnxruntime
    for (const x of [Float64Array.of(0, 0), Float64Array.of(0.7, -1.3), Float64Array.of(-2.1, 0.4)]) {
      const got = await run64(x), want = evaluateNet(net, x.subarray(0, n));
      const tol = 1e-9 * (1 + want.reduce((a, v) => Math.max(a, Math.abs(v)), 0)) + evaluationError(net, x.subarray(0, n));
      if (got.length !== want.length || want.some((v, i) => Math.abs(v - got[i]) > tol)) return none('the affine layers read back from the model do not reproduce its outputs');
    }
    // a cell costs about 3 multiply-adds per nonzero weight (its rows' propagation): wide networks get fewer cells
    const perCell = 3 * net.layers.reduce((a, l) => a + l.w.reduce((c, w) => c + (w !== 0 ? 1 : 0), 0), 0);
    const en = enumerateRegions(net, args.norm, Math.max(1, Math.min(args.budget ?? 200_000, Math.floor((args.work ?? Infinity) / perCell))));
    const inf = args.norm === 'inf';
    let lower = 0, pair: ExactResult['pair'] = null, lower32: ExactResult['lower32'] = null;
    const seeds: Float64Array[] = [];
    const rows = net.layers[net.layers.length - 1].rows;
    for (const r of en.best) {
      const x = regionPoint(r);
      seeds.push(x.subarray(0, n).slice());
      const dir = worstDirection(r.jacobian, rows, args.norm);
      if (n === 1) dir[1] = 0;
      const scale = 1 + Math.hypot(x[0], x[1]);
      const { fwd, bwd } = chord(r, x, dir, 1e3 * scale);
      // float32 values, so the very pair evaluated in float64 is the one --witness saves
      const a = x.map((v, i) => Math.fround(v - 0.9 * bwd * dir[i])), b = x.map((v, i) => Math.fround(v + 0.9 * fwd * dir[i]));
      const [fa, fb] = [await run64(a), await run64(b)];
      const da = a.subarray(0, n), db = b.subarray(0, n);
      const num = normOf(fa.map((v, i) => fb[i] - v), inf) - (evaluationError(net, da) + evaluationError(net, db));
      const den = normOf(db.map((v, i) => v - da[i]), inf);
      const ratio = den > 0 ? Math.max(0, num) / den : 0;
      if (ratio > lower) {
        lower = ratio;
        pair = { x: da.slice(), xPrime: db.slice() };
        const xa = Float32Array.from(da), xb = Float32Array.from(db);
        lower32 = { value: pairRatio(await run32(xa), await run32(xb), xa, xb, inf), x: xa, xPrime: xb };
      }
    }
    const common = { lower, pair, lower32, regions: en.regions, work: en.work, inexactSplits: en.inexactSplits, evaluations, seeds };
    if (!en.complete) return { status: 'bracket', reason: `the enumeration stopped after ${en.work} cells (its budget)`, upper: null, ...common };
    const method = `region-enumeration(${en.regions} regions${en.inexactSplits ? `, ${en.inexactSplits} overlapping splits` : ''})`;
    const exact = lower > 0 && en.upper <= lower * (1 + EXACT_TOLERANCE);
    return { status: exact ? 'exact' : 'bracket', upper: { value: en.upper, kind: exact ? 'exact' : 'certified', method }, ...common };
  } finally {
    await runner64.release();
    await runner32.release();
  }
}

function normOf(v: ArrayLike<number>, inf: boolean): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s = inf ? Math.max(s, Math.abs(v[i])) : s + v[i] * v[i];
  return inf ? s : Math.sqrt(s);
}
