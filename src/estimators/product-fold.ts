import type { LinearRegion } from '../ir/merge.js';
import { toFloat64 } from '../ir/tensor.js';
import type { LinearNode, LinearPrim } from '../ir/types.js';
import { gamma, gramRows, roundUp, transpose, UNIT_ROUNDOFF, type GramKernel } from '../linalg/dense.js';
import { cholesky } from '../linalg/sdp.js';
import { regionFlop } from '../linalg/work.js';
import type { GramFactor, RegionOffload } from './operator-norm.js';
import { foldedLength, foldScales } from './region-bounds.js';

/** A region that is one 1×1, stride-1, unpadded, ungrouped convolution once scalings fold in: M (rows × cols) at every pixel. */
interface Pointwise {
  readonly rows: number;
  readonly cols: number;
  /** Relative error of each folded entry against the exact product of the prims' values (one rounding per fold). */
  readonly relErr: number;
}

/**
 * Decided without scaling a weight: folding keeps the conv's prim (attributes, dims), and whether the region folds
 * into that one node is foldedLength's decision; factorOf folds the weights when it forms the factor.
 */
function pointwise(region: LinearRegion): Pointwise | null {
  const x = convOf(region);
  if (!x || x.weight.dims.slice(2).some((k) => k !== 1) || x.strides.some((s) => s !== 1) || x.pads.some((q) => q !== 0)) return null;
  if (foldedLength(region.nodes) !== 1) return null;
  const [rows, cols] = x.weight.dims;
  return { rows, cols, relErr: gamma(region.nodes.length) };
}

/** The one convolution of a region (conv and scale nodes only), or null. */
function convOf(region: LinearRegion): Extract<LinearPrim, { op: 'conv' }> | null {
  if (region.nodes.some((n) => n.prim.op !== 'conv' && n.prim.op !== 'scale')) return null;
  const convs = region.nodes.filter((n) => n.prim.op === 'conv');
  return convs.length === 1 && convs[0].prim.op === 'conv' && convs[0].prim.group === 1 ? convs[0].prim : null;
}

/**
 * A float32 factor F (c×c) of the Gram matrix G = M·Mᵀ of a c×n matrix M (row-major, each entry within relErr of the
 * exact one, relatively) and err ≥ ‖M_exact·M_exactᵀ − F·Fᵀ‖₂: F is the Cholesky factor of the computed G (plus
 * c·u·max G_ii on the diagonal) rounded to float32, so that onnxruntime applies exactly F. The bound, in Frobenius
 * norm: D = fl(G − fl(FFᵀ)) as computed, plus u·|D| for the subtraction, γ_c·|F||F|ᵀ for FFᵀ, γ_n·|M||M|ᵀ for the
 * computed G (any summation order: GramKernel's contract) and (2relErr + relErr²)·|M||M|ᵀ for M's own error;
 * ‖|X||X|ᵀ‖_F ≤ ‖X‖_F². Null when the Cholesky fails.
 */
export async function gramFactor(m: Float64Array, c: number, n: number, relErr: number, kernel?: GramKernel): Promise<GramFactor | null> {
  const g = (kernel ? await kernel(m, c, n) : null) ?? gramRows(m, c, n);
  let maxDiag = 0;
  for (let i = 0; i < c; i++) maxDiag = Math.max(maxDiag, g[i * c + i]);
  if (!(maxDiag > 0) || !Number.isFinite(maxDiag)) return null;
  const f = g.slice();
  const tau = c * UNIT_ROUNDOFF * maxDiag;
  for (let i = 0; i < c; i++) f[i * c + i] += tau;
  if (cholesky(f, c) === null) return null;
  for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) f[i * c + j] = j > i ? 0 : Math.fround(f[i * c + j]);
  // a factor near float32's range (weights near overflow) is left to the unfolded product and its own overflow check
  for (let k = 0; k < c * c; k++) if (!(Math.abs(f[k]) < 2 ** 100)) return null;
  // fl(F·Fᵀ): the same kernel where there is one (its contract covers any summation order), else the lower triangle here
  const ff = (kernel ? await kernel(f, c, c) : null) ?? gramRows(f, c, c);
  let d2 = 0, f2 = 0, m2 = 0;
  for (let i = 0; i < c; i++) {
    for (let j = 0; j < c; j++) {
      const d = g[i * c + j] - ff[i * c + j];
      d2 += d * d;
    }
    for (let k = 0; k <= i; k++) f2 += f[i * c + k] * f[i * c + k];
  }
  for (let k = 0; k < m.length; k++) m2 += m[k] * m[k];
  // sums of squares: within γ_(terms) of the exact ones
  const terms = c * c + m.length + 2;
  d2 = roundUp(d2, terms); f2 = roundUp(f2, terms); m2 = roundUp(m2, terms);
  const err = roundUp(Math.sqrt(d2) * (1 + 4 * UNIT_ROUNDOFF) + gamma(c + 2) * f2 + roundUp(gamma(n + 2) + 2.01 * relErr) * m2, 8);
  return { f, err };
}

/** Gram factors are formed once per region and side (a bottleneck's first convolution heads two products). */
const factors = new WeakMap<LinearRegion, Promise<GramFactor | null>>();

function factorOf(region: LinearRegion, side: 'head' | 'tail', p: Pointwise, kernel?: GramKernel, offload?: RegionOffload) {
  let got = factors.get(region);
  if (!got) {
    // head: M₁·M₁ᵀ of the rows × cols matrix; tail: M₃ᵀ·M₃, the Gram of the rows of M₃ᵀ
    const w = toFloat64((foldScales(region.nodes)[0].prim as Extract<LinearPrim, { op: 'conv' }>).weight);
    const [m, c, n] = side === 'head' ? [w, p.rows, p.cols] : [transpose(w, p.rows, p.cols), p.cols, p.rows];
    // a region worker where the offload takes it (its one-thread kernel gives the same Gram: dense-gram.ts), else here
    got = offload?.factor?.(m, c, n, p.relErr) ?? gramFactor(m, c, n, p.relErr, kernel);
    factors.set(region, got);
  }
  return got;
}

/** A product of regions measured as a narrower operator B, and how bounds carry between the two. */
export interface FoldedProduct {
  /** B = R·X·S: the middle region's nodes between a 1×1 convolution S (first, where the product starts narrowing) and R (last, where it ends widening). */
  readonly region: LinearRegion;
  /** B's pieces as regions, in order ([S], X, [R]): piece k stands for the product's region k. */
  readonly pieces: readonly LinearRegion[];
  /** An upper bound on ‖B_a⋯B_b‖ (pieces a..b) from upper bounds `sub(i, j)` on the product's ‖W_j⋯W_i‖ (same indices). */
  norm(a: number, b: number, sub: (i: number, j: number) => number): number;
  /** An upper bound on the product's norm from an upper bound on ‖B‖ and the single regions' bounds `sub(k, k)`. */
  lift(bound: number, sub: (i: number, j: number) => number): number;
}

/**
 * The product W_j⋯W_i of consecutive regions [P₁?, X, P₃?] of a segment, X one ungrouped convolution, P₁ (first) a
 * 1×1 convolution M₁ from more channels to X's input channels, P₃ (last) one M₃ from X's output channels to more, at
 * least one present (ResNet bottlenecks: every product otherwise carries 4× wider vectors through two wide 1×1
 * convolutions per step). With S·Sᵀ = M₁·M₁ᵀ and Rᵀ·R = M₃ᵀ·M₃ (ci × ci and co × co),
 *   ‖M₃·X·M₁‖ = ‖R·X·S‖
 * (‖M₃y‖² = yᵀM₃ᵀM₃y = ‖Ry‖²; ‖M₁ᵀz‖ = ‖Sᵀz‖ likewise), and B = R·X·S is X with a narrow 1×1 convolution on each
 * side. In floating point S and R are float32 Cholesky factors with ‖M₁M₁ᵀ − SSᵀ‖ ≤ e₁, ‖M₃ᵀM₃ − RᵀR‖ ≤ e₃
 * (gramFactor); since |yᵀ(G − FFᵀ)y| ≤ e‖y‖², every norm through such an end moves by a bounded amount both ways:
 *   ‖M₃XM₁‖² ≤ ‖RXM₁‖² + e₃‖X‖²‖M₁‖²,  ‖RXM₁‖² = ‖M₁ᵀXᵀRᵀ‖² ≤ ‖RXS‖² + e₁‖R‖²‖X‖²   (lift), and
 *   ‖RXS‖² ≤ ‖M₃XM₁‖² + e₁‖M₃X‖² + e₃‖XM₁‖² + e₁e₃‖X‖²   (norm: B's chain margin from the product's sub-products).
 * Null where the product has no such shape, a factor fails, or B is not cheaper to apply.
 */
export async function foldPointwiseEnds(regions: readonly LinearRegion[], product: LinearRegion, kernel?: GramKernel, offload?: RegionOffload): Promise<FoldedProduct | null> {
  const k = regions.length;
  if (k < 2 || k > 3) return null;
  const first = pointwise(regions[0]), last = pointwise(regions[k - 1]);
  const mid = k === 3 ? 1 : first && !last ? 1 : last && !first ? 0 : -1;
  if (mid < 0) return null;
  const x = convOf(regions[mid]);
  if (!x) return null;
  const [co, ci] = x.weight.dims;
  const head = mid === 1 ? first : null, tail = mid + 1 < k ? last : null;
  // each end must narrow the product: P₁ from more channels to ci, P₃ from co to more
  if (mid === 1 && !(head && head.rows === ci && head.cols > ci)) return null;
  if (mid + 1 < k && !(tail && tail.cols === co && tail.rows > co)) return null;

  const m = regions[mid];
  const pieces: LinearRegion[] = [];
  let input = m.input;
  const middle: LinearNode[] = [...m.nodes];
  let s: GramFactor | null = null, r: GramFactor | null = null;
  if (head) {
    s = await factorOf(regions[0], 'head', head, kernel, offload);
    if (!s) return null;
    const out = `${product.id}~S`;
    pieces.push(oneByOne(`${product.id}~S`, m.input, out, m.inShape, s.f, ci, false));
    for (let i = 0; i < middle.length; i++) if (middle[i].inputs.includes(m.input)) middle[i] = { ...middle[i], inputs: middle[i].inputs.map((v) => (v === m.input ? out : v)) };
    input = out;
  }
  pieces.push({ ...m, input, nodes: middle });
  if (tail) {
    r = await factorOf(regions[k - 1], 'tail', tail, kernel, offload);
    if (!r) return null;
    // R = Fᵀ for F·Fᵀ = M₃ᵀM₃
    pieces.push(oneByOne(`${product.id}~R`, m.output, `${product.id}~R`, m.outShape, r.f, co, true));
  }
  const region: LinearRegion = { id: `${product.id}~folded`, input: m.input, inShape: m.inShape, output: pieces.at(-1)!.output, outShape: m.outShape, nodes: pieces.flatMap((p) => p.nodes) };
  if (!(regionFlop(region) < regionFlop(product))) return null;

  const e1 = s ? s.err : 0, e3 = r ? r.err : 0;
  const hasS = (i: number) => head !== null && i === 0, hasR = (j: number) => tail !== null && j === k - 1;
  const sq = (sub: (i: number, j: number) => number, i: number, j: number) => (i > j ? 1 : sub(i, j) ** 2);
  return {
    region,
    pieces,
    norm: (a, b, sub) => {
      let v = sq(sub, a, b);
      if (hasS(a)) v += e1 * sq(sub, a + 1, b);
      if (hasR(b)) v += e3 * sq(sub, a, b - 1);
      if (hasS(a) && hasR(b)) v += e1 * e3 * sq(sub, a + 1, b - 1);
      return roundUp(Math.sqrt(v), 8);
    },
    lift: (bound, sub) => {
      const x2 = sub(mid, mid) ** 2;
      const r2 = tail ? sub(k - 1, k - 1) ** 2 + e3 : 1, m12 = head ? sub(0, 0) ** 2 : 1;
      return roundUp(Math.sqrt(bound * bound + e1 * r2 * x2 + e3 * x2 * m12), 8);
    },
  };
}

/** A region of one c×c 1×1 convolution with the float32 values of the lower triangular `f` (transposed: `upper`). */
function oneByOne(id: string, input: string, output: string, shape: readonly number[], f: Float64Array, c: number, upper: boolean): LinearRegion {
  const w = new Float32Array(c * c);
  for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) w[i * c + j] = upper ? f[j * c + i] : f[i * c + j];
  const node: LinearNode = {
    kind: 'linear', name: id, opType: 'Conv', inputs: [input], inShapes: [shape], output, outShape: shape,
    prim: { op: 'conv', weight: { dtype: 'float32', dims: [c, c, ...shape.slice(2).map(() => 1)], data: w }, group: 1, strides: shape.slice(2).map(() => 1), pads: shape.slice(2).flatMap(() => [0, 0]), dilations: shape.slice(2).map(() => 1) },
  };
  return { id, input, inShape: shape, output, outShape: shape, nodes: [node] };
}
