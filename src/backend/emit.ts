import type { GraphSpec, NodeSpec, AttrSpec } from '../onnx/writer.js';
import type { LinearRegion } from '../ir/merge.js';
import { int64Tensor, sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import type { LinearNode, LinearPrim, Shape } from '../ir/types.js';

/** The opset of every graph lipcheck generates (ReduceSum and Pad take axes/pads as inputs from 13 on). */
export const EMIT_OPSET = 13;

class Emitter {
  constructor(readonly dtype: 'float32' | 'float64' = 'float32') {}
  readonly nodes: NodeSpec[] = [];
  readonly inits: [string, Tensor][] = [];
  private k = 0;

  fresh(prefix = 't'): string {
    return `${prefix}${this.k++}`;
  }
  constant(t: Tensor): string {
    const name = this.fresh('c');
    // typed-array constructors convert element by element as .from does (the same rounding), without its iterator
    const src = t.data as ArrayLike<number>;
    const data: Tensor = t.dtype === 'int64' || t.dtype === this.dtype ? t
      : this.dtype === 'float32' ? { dtype: 'float32', dims: t.dims, data: ArrayBuffer.isView(src) ? new Float32Array(src as Float64Array) : Float32Array.from(src) }
      : { dtype: 'float64', dims: t.dims, data: ArrayBuffer.isView(src) ? new Float64Array(src as Float32Array) : Float64Array.from(src) };
    this.inits.push([name, data]);
    return name;
  }
  ints(values: readonly number[]): string {
    return this.constant(int64Tensor(values));
  }
  op(opType: string, inputs: string[], attrs: Record<string, AttrSpec> = {}): string {
    const out = this.fresh();
    this.nodes.push({ opType, inputs, outputs: [out], attrs });
    return out;
  }
  reshape(x: string, shape: Shape): string {
    return this.op('Reshape', [x, this.ints(shape)]);
  }
  /** Sums g over the axes along which `from` was broadcast to reach `to`. */
  unbroadcast(g: string, to: Shape, from: Shape): string {
    const d = to.length - from.length;
    const axes: number[] = [];
    for (let i = 0; i < to.length; i++) if (i < d || (from[i - d] === 1 && to[i] !== 1)) axes.push(i);
    let out = g;
    if (axes.length) out = this.op('ReduceSum', [g, this.ints(axes)], { keepdims: { i: 1 } });
    if (axes.length || d !== 0) out = this.reshape(out, from);
    return out;
  }
  sum(terms: string[]): string {
    return terms.reduce((a, b) => this.op('Add', [a, b]));
  }
  /** Zero padding (positive) and cropping (negative) along every axis, in ONNX pads order. */
  pad(x: string, shape: Shape, pads: readonly number[]): string {
    const r = shape.length;
    let out = x;
    if (pads.some((p) => p < 0)) {
      const axes: number[] = [], starts: number[] = [], ends: number[] = [];
      for (let i = 0; i < r; i++) {
        if (pads[i] < 0 || pads[i + r] < 0) { axes.push(i); starts.push(Math.max(0, -pads[i])); ends.push(shape[i] - Math.max(0, -pads[i + r])); }
      }
      out = this.op('Slice', [out, this.ints(starts), this.ints(ends), this.ints(axes)]);
    }
    if (pads.some((p) => p > 0)) out = this.op('Pad', [out, this.ints(pads.map((p) => Math.max(0, p)))], { mode: { s: 'constant' } });
    return out;
  }
  /** y = M along `axis` (M rows×cols; `transpose` applies Mᵀ instead). */
  axisMatrix(x: string, shape: Shape, axis: number, m: Float64Array, rows: number, cols: number, transpose: boolean): string {
    const r = shape.length;
    // MatMul(x, B) contracts x's last axis with B's rows: B = Mᵀ for the forward map, M for its transpose.
    const b = new Float64Array(rows * cols);
    const [br, bc] = transpose ? [rows, cols] : [cols, rows];
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      if (transpose) b[i * cols + j] = m[i * cols + j];
      else b[j * rows + i] = m[i * cols + j];
    }
    const bName = this.constant({ dtype: 'float64', dims: [br, bc], data: b });
    if (axis === r - 1) return this.op('MatMul', [x, bName]);
    const perm = [...Array(r).keys()].filter((i) => i !== axis).concat([axis]);
    const inv = perm.map((_, i) => perm.indexOf(i));
    const moved = this.op('Transpose', [x], { perm: { ints: perm } });
    return this.op('Transpose', [this.op('MatMul', [moved, bName])], { perm: { ints: inv } });
  }
}

/** The last two axes swapped; float32 weights stay float32 (values are only moved), in 32×32 tiles (cache-friendly). */
function swapLast(t: Tensor): Tensor {
  const dims = t.dims;
  if (dims.length < 2) return t;
  const r = dims[dims.length - 2], c = dims[dims.length - 1];
  const batch = sizeOf(dims) / (r * c);
  const src = t.data as ArrayLike<number>;
  const narrow = src instanceof Float32Array;
  const out = narrow ? new Float32Array(sizeOf(dims)) : new Float64Array(sizeOf(dims));
  for (let b = 0; b < batch; b++) {
    const o = b * r * c;
    for (let i0 = 0; i0 < r; i0 += 32) for (let j0 = 0; j0 < c; j0 += 32) {
      for (let i = i0; i < Math.min(i0 + 32, r); i++) for (let j = j0; j < Math.min(j0 + 32, c); j++) out[o + j * r + i] = src[o + i * c + j];
    }
  }
  return { dtype: narrow ? 'float32' : 'float64', dims: [...dims.slice(0, -2), c, r], data: out };
}

/** W[Cout, Cin/g, k…] → W'[Cin, Cout/g, k…] with W'[gi·Cin/g + a, b, κ] = W[gi·Cout/g + b, a, k−1−κ]. */
function flipConvWeight(w: Tensor, group: number): Tensor {
  const [cout, cig, ...k] = w.dims;
  const cog = cout / group;
  const ks = sizeOf(k);
  const src = w.data instanceof Float32Array || w.data instanceof Float64Array ? w.data : toFloat64(w);
  const dst = src instanceof Float32Array ? new Float32Array(src.length) : new Float64Array(src.length);
  for (let gi = 0; gi < group; gi++) for (let b = 0; b < cog; b++) for (let a = 0; a < cig; a++) {
    const s = ((gi * cog + b) * cig + a) * ks, d = ((gi * cig + a) * cog + b) * ks + ks - 1;
    // flipping every spatial axis of a row-major block reverses it
    for (let j = 0; j < ks; j++) dst[d - j] = src[s + j];
  }
  return { dtype: dst instanceof Float32Array ? 'float32' : 'float64', dims: [cig * group, cog, ...k], data: dst };
}

/**
 * The adjoint of a stride-1 Conv as a Conv (onnxruntime's CPU ConvTranspose is slower): flipped, channel-swapped
 * kernel, pads' = (k−1)·d − pads, negative pads' cropping g first. Null (use ConvTranspose) unless every stride is 1
 * and the Conv's output shape is exactly the input shape.
 */
function convAdjointAsConv(e: Emitter, p: Extract<LinearPrim, { op: 'conv' }>, inShape: Shape, out: Shape, g: string): string | null {
  const r = p.strides.length;
  const [cout, cig, ...k] = p.weight.dims;
  if (k.length !== r || p.strides.some((s) => s !== 1) || cout % p.group !== 0 || cig * p.group !== inShape[1]) return null;
  const pads = p.pads.map((v, i) => (k[i % r] - 1) * p.dilations[i % r] - v);
  for (let i = 0; i < r; i++) if (out[2 + i] + pads[i] + pads[i + r] - (k[i] - 1) * p.dilations[i] !== inShape[2 + i]) return null;
  const w = flipConvWeight(p.weight, p.group);
  const crop = [0, 0, ...pads.slice(0, r), 0, 0, ...pads.slice(r)].map((v) => Math.min(0, v));
  const gc = crop.some((v) => v < 0) ? e.pad(g, out, crop) : g;
  return e.op('Conv', [gc, e.constant(w)], convAttrs({ ...p, weight: w, pads: pads.map((v) => Math.max(0, v)) }));
}

function convAttrs(p: { group: number; strides: readonly number[]; pads: readonly number[]; dilations: readonly number[]; weight: Tensor }): Record<string, AttrSpec> {
  return { group: { i: p.group }, strides: { ints: p.strides }, pads: { ints: p.pads }, dilations: { ints: p.dilations }, kernel_shape: { ints: p.weight.dims.slice(2) } };
}

function forward(e: Emitter, n: LinearNode, xs: string[]): string {
  const p: LinearPrim = n.prim;
  const x = xs[0];
  const inShape = n.inShapes[0];
  switch (p.op) {
    case 'conv': return e.op('Conv', [x, e.constant(p.weight)], convAttrs(p));
    case 'convTranspose': return e.op('ConvTranspose', [x, e.constant(p.weight)], { ...convAttrs(p), output_padding: { ints: p.outputPadding } });
    case 'matmul': return p.side === 'right' ? e.op('MatMul', [x, e.constant(p.weight)]) : e.op('MatMul', [e.constant(p.weight), x]);
    case 'scale': return e.op('Mul', [x, e.constant(p.factor)]);
    case 'reshape': return e.reshape(x, n.outShape);
    case 'transpose': return e.op('Transpose', [x], { perm: { ints: p.perm } });
    case 'pad': return e.pad(x, inShape, p.pads);
    case 'axisMatrix': return e.axisMatrix(x, inShape, p.axis, p.matrix, p.rows, p.cols, false);
    case 'reduce': {
      const s = e.op('ReduceSum', [x, e.ints(p.axes)], { keepdims: { i: 1 } });
      const count = p.axes.reduce((a, ax) => a * inShape[ax], 1);
      return p.mean ? e.op('Mul', [s, e.constant({ dtype: 'float64', dims: [], data: Float64Array.of(1 / count) })]) : s;
    }
    case 'expand': return e.op('Expand', [x, e.ints(n.outShape)]);
    case 'sum': return e.sum(xs.map((xi, i) => (p.signs[i] < 0 ? e.op('Neg', [xi]) : xi)));
    case 'concat': {
      const parts = p.parts.map((part) => ('dynamic' in part ? xs[part.dynamic] : e.constant({ dtype: 'float64', dims: part.zeros, data: new Float64Array(sizeOf(part.zeros)) })));
      return e.op('Concat', parts, { axis: { i: p.axis } });
    }
  }
}

/** Cotangents for each dynamic input of `n`, given the cotangent `g` of its output. */
function adjoint(e: Emitter, n: LinearNode, g: string): string[] {
  const p: LinearPrim = n.prim;
  const inShape = n.inShapes[0];
  const out = n.outShape;
  switch (p.op) {
    case 'conv': {
      const flipped = convAdjointAsConv(e, p, inShape, out, g);
      if (flipped) return [flipped];
      const r = p.strides.length;
      const k = p.weight.dims.slice(2);
      const outputPadding = [...Array(r).keys()].map((i) => inShape[2 + i] - ((out[2 + i] - 1) * p.strides[i] + (k[i] - 1) * p.dilations[i] + 1 - p.pads[i] - p.pads[i + r]));
      return [e.op('ConvTranspose', [g, e.constant(p.weight)], { ...convAttrs(p), output_padding: { ints: outputPadding } })];
    }
    case 'convTranspose': return [e.op('Conv', [g, e.constant(p.weight)], convAttrs(p))];
    case 'matmul': {
      const w = p.weight;
      if (w.dims.length === 1) {
        const col = e.constant({ dtype: 'float64', dims: p.side === 'right' ? [1, w.dims[0]] : [w.dims[0], 1], data: Float64Array.from(w.data as ArrayLike<number>) });
        const gShape = p.side === 'right' ? [...out, 1] : [...out.slice(0, -1), 1, out[out.length - 1]];
        const gr = e.reshape(g, gShape);
        const prod = p.side === 'right' ? e.op('MatMul', [gr, col]) : e.op('MatMul', [col, gr]);
        const prodShape = p.side === 'right' ? [...out, w.dims[0]] : [...out.slice(0, -1), w.dims[0], out[out.length - 1]];
        return [e.unbroadcast(prod, prodShape, inShape)];
      }
      const wt = e.constant(swapLast(w));
      const prod = p.side === 'right' ? e.op('MatMul', [g, wt]) : e.op('MatMul', [wt, g]);
      const prodShape = out.length === 1 ? inShape : matmulShape(p.side === 'right' ? out : [...w.dims.slice(0, -2), w.dims[w.dims.length - 1], w.dims[w.dims.length - 2]], p.side === 'right' ? [...w.dims.slice(0, -2), w.dims[w.dims.length - 1], w.dims[w.dims.length - 2]] : out);
      return [e.unbroadcast(prod, prodShape, inShape)];
    }
    case 'scale': return [e.unbroadcast(e.op('Mul', [g, e.constant(p.factor)]), out, inShape)];
    case 'reshape': return [e.reshape(g, inShape)];
    case 'transpose': return [e.op('Transpose', [g], { perm: { ints: p.perm.map((_, i) => p.perm.indexOf(i)) } })];
    case 'pad': return [e.pad(g, out, p.pads.map((v) => -v))];
    case 'axisMatrix': return [e.axisMatrix(g, out, p.axis, p.matrix, p.rows, p.cols, true)];
    case 'reduce': {
      const count = p.axes.reduce((a, ax) => a * inShape[ax], 1);
      const s = p.mean ? e.op('Mul', [g, e.constant({ dtype: 'float64', dims: [], data: Float64Array.of(1 / count) })]) : g;
      return [e.op('Expand', [s, e.ints(inShape)])];
    }
    case 'expand': return [e.unbroadcast(g, out, inShape)];
    case 'sum': return n.inShapes.map((s, i) => { const u = e.unbroadcast(g, out, s); return p.signs[i] < 0 ? e.op('Neg', [u]) : u; });
    case 'concat': {
      const results: string[] = new Array(n.inputs.length);
      let offset = 0;
      for (const part of p.parts) {
        const size = 'dynamic' in part ? n.inShapes[part.dynamic][p.axis] : part.zeros[p.axis];
        if ('dynamic' in part) results[part.dynamic] = e.op('Slice', [g, e.ints([offset]), e.ints([offset + size]), e.ints([p.axis])]);
        offset += size;
      }
      return results;
    }
  }
}

/** numpy MatMul output shape for operands of rank ≥ 2. */
function matmulShape(a: Shape, b: Shape): Shape {
  const ba = a.slice(0, -2), bb = b.slice(0, -2);
  const r = Math.max(ba.length, bb.length);
  const batch: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = ba[ba.length - r + i] ?? 1, y = bb[bb.length - r + i] ?? 1;
    batch.push(Math.max(x, y));
  }
  return [...batch, a[a.length - 2], b[b.length - 1]];
}

/**
 * A Reshape of a Reshape whose output nothing else reads is one Reshape: chains of them (Identity, Flatten, Squeeze
 * runs) collapse to one node, in one pass. onnxruntime's optimiser takes superlinear time on long Reshape chains
 * (10,000: 12 s to create the session, 100,000: minutes); their shape constants go with them.
 */
function collapseReshapes(nodes: readonly NodeSpec[], inits: readonly [string, Tensor][]): { nodes: NodeSpec[]; inits: [string, Tensor][] } {
  const uses = new Map<string, number>();
  for (const n of nodes) for (const i of n.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
  const producer = new Map<string, NodeSpec>();
  const dead = new Set<NodeSpec>();
  const out: NodeSpec[] = [];
  for (const n of nodes) {
    let node = n;
    const p = n.opType === 'Reshape' ? producer.get(n.inputs[0]) : undefined;
    if (p && p.opType === 'Reshape' && uses.get(n.inputs[0]) === 1) {
      dead.add(p);
      node = { ...n, inputs: [p.inputs[0], ...n.inputs.slice(1)] };
    }
    producer.set(node.outputs[0], node);
    out.push(node);
  }
  if (dead.size === 0) return { nodes: [...nodes], inits: [...inits] };
  const kept = out.filter((n) => !dead.has(n));
  const read = new Set(kept.flatMap((n) => n.inputs));
  return { nodes: kept, inits: inits.filter(([name]) => read.has(name)) };
}

/** The ONNX graph computing a region's linear map: input 'x' (region input shape) → output 'y', in float32 or float64. */
export function emitForward(region: LinearRegion, dtype: 'float32' | 'float64' = 'float32'): GraphSpec {
  const e = new Emitter(dtype);
  const names = new Map<string, string>([[region.input, 'x']]);
  for (const n of region.nodes) names.set(n.output, forward(e, n, n.inputs.map((i) => names.get(i)!)));
  e.nodes.push({ opType: 'Identity', inputs: [names.get(region.output)!], outputs: ['y'] });
  const { nodes, inits } = collapseReshapes(e.nodes, e.inits);
  return { opset: EMIT_OPSET, inputs: [{ name: 'x', dims: region.inShape, dtype }], outputs: [{ name: 'y', dims: region.outShape, dtype }], nodes, initializers: inits, name: region.id };
}

/** The ONNX graph of the adjoint: input 'y' (region output shape) → output 'x', by reverse accumulation. */
export function emitAdjoint(region: LinearRegion): GraphSpec {
  const e = new Emitter();
  const cot = new Map<string, string[]>([[region.output, ['y']]]);
  for (const n of [...region.nodes].reverse()) {
    const terms = cot.get(n.output);
    if (!terms) continue;
    const g = e.sum(terms);
    const grads = adjoint(e, n, g);
    n.inputs.forEach((inp, i) => cot.set(inp, [...(cot.get(inp) ?? []), grads[i]]));
  }
  e.nodes.push({ opType: 'Identity', inputs: [e.sum(cot.get(region.input) ?? [])], outputs: ['x'] });
  const { nodes, inits } = collapseReshapes(e.nodes, e.inits);
  return { opset: EMIT_OPSET, inputs: [{ name: 'y', dims: region.outShape }], outputs: [{ name: 'x', dims: region.inShape }], nodes, initializers: inits, name: `${region.id}-adjoint` };
}

/**
 * One linear node of several inputs (a residual sum, a concatenation) as a graph of its own: inputs 'x0'…'x{k−1}' →
 * output 'y', or with `adjoint` input 'y' → outputs 'x0'…'x{k−1}' (each input's share of the cotangent; a value read
 * twice gets two outputs, summed by the caller). Float32, the same kernels as inside a region.
 */
export function emitNode(n: LinearNode, adjointOf: boolean): GraphSpec {
  const e = new Emitter();
  const xs = n.inputs.map((_, i) => `x${i}`);
  const io = (name: string, dims: Shape) => ({ name, dims, dtype: 'float32' });
  if (!adjointOf) {
    e.nodes.push({ opType: 'Identity', inputs: [forward(e, n, xs)], outputs: ['y'] });
    return { opset: EMIT_OPSET, inputs: xs.map((x, i) => io(x, n.inShapes[i])), outputs: [io('y', n.outShape)], nodes: e.nodes, initializers: e.inits, name: n.name };
  }
  const grads = adjoint(e, n, 'y');
  grads.forEach((g, i) => e.nodes.push({ opType: 'Identity', inputs: [g], outputs: [xs[i]] }));
  return { opset: EMIT_OPSET, inputs: [io('y', n.outShape)], outputs: xs.map((x, i) => io(x, n.inShapes[i])), nodes: e.nodes, initializers: e.inits, name: `${n.name}-adjoint` };
}
