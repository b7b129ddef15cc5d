import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { float32Tensor, toFloat64, toNumbers, type Tensor } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** One linear IR node from the node's single dynamic input to its first output. */
export function linearNode(ctx: ConvertContext, prim: LinearPrim, input?: { name: string; shape: Shape }, output?: string, outShape?: Shape): IrNode {
  const dyn = input ?? dynamicInputs(ctx)[0];
  return { kind: 'linear', prim, ...base(ctx, [dyn], output ?? ctx.outputs[0], outShape ?? ctx.outShapes[0]) };
}

/** A chain of linear prims from the single dynamic input; intermediate shapes given, the last is the output. */
export function linearChain(ctx: ConvertContext, steps: { prim: LinearPrim; shape: Shape }[]): IrNode[] {
  return chainFrom(ctx, dynamicInputs(ctx)[0], steps, ctx.outputs[0], ctx.outShapes[0]);
}

/** A chain of linear prims from `input` to `output` (intermediates named `<output>::<k>`). */
export function chainFrom(ctx: ConvertContext, input: { name: string; shape: Shape }, steps: { prim: LinearPrim; shape: Shape }[], output: string, outShape: Shape): IrNode[] {
  let cur = input;
  return steps.map((s, i) => {
    const last = i === steps.length - 1;
    const name = last ? output : `${output}::${i}`;
    const node = linearNode(ctx, s.prim, cur, name, last ? outShape : s.shape);
    cur = { name, shape: s.shape };
    return node;
  });
}

/** The product of two input-dependent tensors: no global Lipschitz constant. */
export function productOfInputs(ctx: ConvertContext, what = 'multiplies two input-dependent tensors'): IrNode[] {
  const dyn = dynamicInputs(ctx);
  return [{ kind: 'unbounded', reason: `${what}, so its output has no global Lipschitz bound`, derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
}

/** The transpose of a 2-D constant, float32 kept float32 (exact), in cache-sized tiles. */
function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.dims;
  if (t.data instanceof Float32Array) return { dtype: 'float32', dims: [c, r], data: transposeTiles(t.data, new Float32Array(r * c), r, c) };
  return { dtype: 'float64', dims: [c, r], data: transposeTiles(toFloat64(t), new Float64Array(r * c), r, c) };
}

function transposeTiles<T extends Float32Array | Float64Array>(src: T, out: T, r: number, c: number): T {
  const B = 32;
  for (let i0 = 0; i0 < r; i0 += B) {
    const i1 = Math.min(r, i0 + B);
    for (let j0 = 0; j0 < c; j0 += B) {
      const j1 = Math.min(c, j0 + B);
      for (let j = j0; j < j1; j++) {
        const o = j * r;
        for (let i = i0; i < i1; i++) out[o + i] = src[i * c + j];
      }
    }
  }
  return out;
}

function scaled(t: Tensor, alpha: number): Tensor {
  if (alpha === 1) return t;
  const d = toFloat64(t);
  return { dtype: 'float64', dims: t.dims, data: Float64Array.from(d, (v) => v * alpha) };
}

function checkFinite(ctx: ConvertContext, t: Tensor, what: string): void {
  const d = t.data;
  if (Array.isArray(d)) return;
  let bad = 0;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(Number(d[i]))) bad++;
  if (bad > 0) unsupported(ctx, `its ${what} contain ${bad} NaN or infinite value${bad === 1 ? '' : 's'}; fix or retrain the model`);
}

/** Gemm: Y = α·op(A)·op(B) + β·C; the product is linear when one of A, B is constant, and C may be input-dependent too. */
const gemm: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  const ab = dyn.filter((d) => d.index <= 1);
  const c = dyn.find((d) => d.index === 2);
  if (ab.length > 1) return productOfInputs(ctx);
  const out = ctx.outShapes[0];
  const nodes: IrNode[] = [];
  const abName = c && ab.length ? `${ctx.outputs[0]}::ab` : ctx.outputs[0];
  if (ab.length) {
    const alpha = ctx.attrs.float('alpha', 1);
    const transA = ctx.attrs.int('transA', 0) !== 0;
    const transB = ctx.attrs.int('transB', 0) !== 0;
    const x = ab[0];
    const steps: { prim: LinearPrim; shape: Shape }[] = [];
    // a transposed input operand is a transpose prim first; a transposed constant is transposed here
    if ((x.index === 0 && transA) || (x.index === 1 && transB)) steps.push({ prim: { op: 'transpose', perm: [1, 0] }, shape: [x.shape[1], x.shape[0]] });
    const w = constantInput(ctx, 1 - x.index)!;
    checkFinite(ctx, w, 'weights');
    const weight = scaled((x.index === 0 ? transB : transA) ? transpose2d(w) : w, alpha);
    steps.push({ prim: { op: 'matmul', weight, side: x.index === 0 ? 'right' : 'left' }, shape: out });
    nodes.push(...chainFrom(ctx, x, steps, abName, out));
  }
  if (c) {
    const beta = ctx.attrs.float('beta', 1);
    const steps: { prim: LinearPrim; shape: Shape }[] = [];
    if (!sameShape(c.shape, out)) steps.push({ prim: { op: 'expand' }, shape: out });
    steps.push({ prim: { op: 'scale', factor: { dtype: 'float64', dims: [], data: Float64Array.of(beta) } }, shape: out });
    const cName = ab.length ? `${ctx.outputs[0]}::c` : ctx.outputs[0];
    nodes.push(...chainFrom(ctx, c, steps, cName, out));
    if (ab.length) nodes.push({ kind: 'linear', prim: { op: 'sum', signs: [1, 1] }, ...base(ctx, [{ name: abName, shape: out }, { name: cName, shape: out }], ctx.outputs[0], out) });
  }
  return nodes;
};

const matmul: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1) return productOfInputs(ctx);
  const side = dyn[0].index === 0 ? 'right' : 'left';
  const w = constantInput(ctx, side === 'right' ? 1 : 0)!;
  checkFinite(ctx, w, 'weights');
  return [linearNode(ctx, { op: 'matmul', weight: w, side })];
};

/** Explicit pads for a convolution-like node from auto_pad and the observed shapes (ONNX Conv spec). */
export function convPads(ctx: ConvertContext, inSpatial: Shape, outSpatial: Shape, kernel: Shape, strides: Shape, dilations: Shape): number[] {
  const r = inSpatial.length;
  const autoPad = ctx.attrs.string('auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') return ctx.attrs.ints('pads', new Array(2 * r).fill(0))!;
  if (autoPad === 'VALID') return new Array(2 * r).fill(0);
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < r; i++) {
    const total = Math.max(0, (outSpatial[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - inSpatial[i]);
    const small = Math.floor(total / 2);
    if (autoPad === 'SAME_LOWER') { begin.push(total - small); end.push(small); } else { begin.push(small); end.push(total - small); }
  }
  return [...begin, ...end];
}

/** The operands every convolution-like converter reads: constant weights, input shape and geometry attributes. */
function convOperands(ctx: ConvertContext) {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) return null;
  const w = constantInput(ctx, 1)!;
  checkFinite(ctx, w, 'weights');
  const x = dyn[0].shape;
  const r = x.length - 2;
  return {
    w, x, r, group: ctx.attrs.int('group', 1), kernel: w.dims.slice(2),
    strides: ctx.attrs.ints('strides', new Array(r).fill(1))!, dilations: ctx.attrs.ints('dilations', new Array(r).fill(1))!,
  };
}

const conv: Converter = (ctx) => {
  const c = convOperands(ctx);
  if (!c) return productOfInputs(ctx, 'convolves with input-dependent weights');
  const { w, x, r, group, kernel, strides, dilations } = c;
  if (r < 1 || r > 3) unsupported(ctx, `a ${r}-D convolution is not supported (1-D to 3-D are)`);
  if (x[1] % group !== 0 || w.dims[0] % group !== 0) unsupported(ctx, `group ${group} must divide input channels ${x[1]} and output channels ${w.dims[0]}`);
  if (w.dims[1] * group !== x[1]) unsupported(ctx, `weights [${w.dims.join(', ')}] with group ${group} do not match ${x[1]} input channels`);
  const pads = convPads(ctx, x.slice(2), ctx.outShapes[0].slice(2), kernel, strides, dilations);
  return [linearNode(ctx, { op: 'conv', weight: w, group, strides, pads, dilations })];
};

const convTranspose: Converter = (ctx) => {
  const c = convOperands(ctx);
  if (!c) return productOfInputs(ctx, 'convolves with input-dependent weights');
  const { w, x, r, group, kernel, strides, dilations } = c;
  const outputPadding = ctx.attrs.ints('output_padding', new Array(r).fill(0))!;
  const out = ctx.outShapes[0].slice(2);
  const autoPad = ctx.attrs.string('auto_pad', 'NOTSET');
  let pads = ctx.attrs.ints('pads', new Array(2 * r).fill(0))!;
  if (ctx.attrs.has('output_shape') || autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    // the spec's rule, which onnxruntime follows: total = natural − out, the odd unit at the end only for SAME_UPPER
    const begin: number[] = [];
    const end: number[] = [];
    for (let i = 0; i < r; i++) {
      const total = Math.max(0, strides[i] * (x[2 + i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1 - out[i]);
      const half = Math.floor(total / 2);
      if (autoPad === 'SAME_UPPER') { begin.push(half); end.push(total - half); } else { begin.push(total - half); end.push(half); }
    }
    pads = [...begin, ...end];
  }
  return [linearNode(ctx, { op: 'convTranspose', weight: w, group, strides, pads, dilations, outputPadding })];
};

const batchNormalization: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) return productOfInputs(ctx, 'normalises with input-dependent statistics');
  if (ctx.attrs.int('training_mode', 0) !== 0) unsupported(ctx, 'training_mode=1 is not an inference-time operator; export the model in eval mode');
  const [scale, , , variance] = [1, 2, 3, 4].map((i) => constantInput(ctx, i)!);
  const eps = ctx.attrs.float('epsilon', 1e-5);
  const g = toFloat64(scale);
  const v = toFloat64(variance);
  const c = g.length;
  const factor = new Float64Array(c);
  for (let i = 0; i < c; i++) factor[i] = g[i] / Math.sqrt(v[i] + eps);
  const t: Tensor = { dtype: 'float64', dims: [c, ...new Array(Math.max(0, dyn[0].shape.length - 2)).fill(1)], data: factor };
  checkFinite(ctx, t, 'scale/variance');
  return [linearNode(ctx, { op: 'scale', factor: t })];
};

/** Identity (or broadcast) as the linear part of x + constant. */
function identityOrExpand(ctx: ConvertContext, x: { name: string; shape: Shape }, sign: number): IrNode[] {
  const steps: { prim: LinearPrim; shape: Shape }[] = [];
  if (!sameShape(x.shape, ctx.outShapes[0])) steps.push({ prim: { op: 'expand' }, shape: ctx.outShapes[0] });
  if (sign < 0) steps.push({ prim: { op: 'scale', factor: float32Tensor([-1], []) }, shape: ctx.outShapes[0] });
  if (steps.length === 0) steps.push({ prim: { op: 'reshape' }, shape: ctx.outShapes[0] });
  return linearChain(ctx, steps);
}

function addSub(sign: number): Converter {
  return (ctx) => {
    const dyn = dynamicInputs(ctx);
    if (dyn.length === 1) return identityOrExpand(ctx, dyn[0], dyn[0].index === 1 ? sign : 1);
    const signs = dyn.map((d) => (d.index === 1 ? sign : 1));
    return [{ kind: 'linear', prim: { op: 'sum', signs }, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
  };
}

const sum: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length === 1) return identityOrExpand(ctx, dyn[0], 1);
  return [{ kind: 'linear', prim: { op: 'sum', signs: dyn.map(() => 1) }, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
};

/** Mean of several tensors: their sum (broadcasting) scaled by 1/k, k counting constant operands too. */
const mean: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  const k = ctx.inputs.length;
  const out = ctx.outShapes[0];
  const scale: LinearPrim = { op: 'scale', factor: { dtype: 'float64', dims: [], data: Float64Array.of(1 / k) } };
  if (dyn.length === 1) {
    const steps: { prim: LinearPrim; shape: Shape }[] = [];
    if (!sameShape(dyn[0].shape, out)) steps.push({ prim: { op: 'expand' }, shape: out });
    steps.push({ prim: scale, shape: out });
    return linearChain(ctx, steps);
  }
  const summed = `${ctx.outputs[0]}::sum`;
  return [
    { kind: 'linear', prim: { op: 'sum', signs: dyn.map(() => 1) }, ...base(ctx, dyn, summed, out) },
    linearNode(ctx, scale, { name: summed, shape: out }, ctx.outputs[0], out),
  ];
};

/** CumSum along a constant axis: a triangular 0/1 matrix along that axis. */
const cumSum: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'an input-dependent axis is not supported');
  const axisT = constantInput(ctx, 1);
  if (!axisT) unsupported(ctx, 'axis must be a constant');
  const r = x.shape.length;
  const a0 = toNumbers(axisT)[0];
  const axis = a0 < 0 ? a0 + r : a0;
  const n = x.shape[axis];
  const exclusive = ctx.attrs.int('exclusive', 0) !== 0, reverse = ctx.attrs.int('reverse', 0) !== 0;
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    const inside = reverse ? (exclusive ? j > i : j >= i) : (exclusive ? j < i : j <= i);
    if (inside) m[i * n + j] = 1;
  }
  return [linearNode(ctx, { op: 'axisMatrix', axis, matrix: m, rows: n, cols: n })];
};

const mul: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1) return productOfInputs(ctx);
  const c = constantInput(ctx, 1 - dyn[0].index)!;
  checkFinite(ctx, c, 'constant factor');
  return [linearNode(ctx, { op: 'scale', factor: c })];
};

const div: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) return productOfInputs(ctx, 'divides by an input-dependent tensor');
  const c = constantInput(ctx, 1)!;
  const d = toFloat64(c);
  const inv = Float64Array.from(d, (v) => 1 / v);
  const t: Tensor = { dtype: 'float64', dims: c.dims, data: inv };
  checkFinite(ctx, t, 'divisor (zero divisors give infinite factors)');
  return [linearNode(ctx, { op: 'scale', factor: t })];
};

const neg: Converter = (ctx) => [linearNode(ctx, { op: 'scale', factor: float32Tensor([-1], []) })];

/** Converters of linear ops: dense, convolution, normalisation at inference, and arithmetic with constants. */
export const linearConverters = { gemm, matmul, conv, convTranspose, batchNormalization, add: addSub(1), sub: addSub(-1), sum, mean, mul, div, neg, cumSum };
