import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { float32Tensor, toFloat64, type Tensor } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** One linear IR node from the node's single dynamic input to its first output. */
export function linearNode(ctx: ConvertContext, prim: LinearPrim, input?: { name: string; shape: Shape }, output?: string, outShape?: Shape): IrNode {
  const dyn = input ?? dynamicInputs(ctx)[0];
  return { kind: 'linear', prim, ...base(ctx, [dyn], output ?? ctx.outputs[0], outShape ?? ctx.outShapes[0]) };
}

/** A chain of linear prims from the single dynamic input; intermediate shapes given, the last is the output. */
export function linearChain(ctx: ConvertContext, steps: { prim: LinearPrim; shape: Shape }[]): IrNode[] {
  let cur = dynamicInputs(ctx)[0] as { name: string; shape: Shape };
  return steps.map((s, i) => {
    const last = i === steps.length - 1;
    const name = last ? ctx.outputs[0] : `${ctx.outputs[0]}::${i}`;
    const node = linearNode(ctx, s.prim, cur, name, last ? ctx.outShapes[0] : s.shape);
    cur = { name, shape: s.shape };
    return node;
  });
}

/** The product of two input-dependent tensors: no global Lipschitz constant. */
export function productOfInputs(ctx: ConvertContext, what = 'multiplies two input-dependent tensors'): IrNode[] {
  const dyn = dynamicInputs(ctx);
  return [{ kind: 'unbounded', reason: `${what}, so its output has no global Lipschitz bound`, derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
}

function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.dims;
  const src = toFloat64(t);
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
  return { dtype: 'float64', dims: [c, r], data: out };
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

const gemm: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index > 1) return productOfInputs(ctx);
  const alpha = ctx.attrs.float('alpha', 1);
  const transA = ctx.attrs.int('transA', 0) !== 0;
  const transB = ctx.attrs.int('transB', 0) !== 0;
  const x = dyn[0];
  if (x.index === 0) {
    const b = constantInput(ctx, 1)!;
    checkFinite(ctx, b, 'weights');
    const w = scaled(transB ? transpose2d(b) : b, alpha);
    if (!transA) return [linearNode(ctx, { op: 'matmul', weight: w, side: 'right' })];
    return linearChain(ctx, [{ prim: { op: 'transpose', perm: [1, 0] }, shape: [x.shape[1], x.shape[0]] }, { prim: { op: 'matmul', weight: w, side: 'right' }, shape: ctx.outShapes[0] }]);
  }
  const a = constantInput(ctx, 0)!;
  checkFinite(ctx, a, 'weights');
  const w = scaled(transA ? transpose2d(a) : a, alpha);
  if (!transB) return [linearNode(ctx, { op: 'matmul', weight: w, side: 'left' })];
  return linearChain(ctx, [{ prim: { op: 'transpose', perm: [1, 0] }, shape: [x.shape[1], x.shape[0]] }, { prim: { op: 'matmul', weight: w, side: 'left' }, shape: ctx.outShapes[0] }]);
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

const conv: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) return productOfInputs(ctx, 'convolves with input-dependent weights');
  const w = constantInput(ctx, 1)!;
  checkFinite(ctx, w, 'weights');
  const x = dyn[0].shape;
  const r = x.length - 2;
  if (r < 1 || r > 3) unsupported(ctx, `a ${r}-D convolution is not supported (1-D to 3-D are)`);
  const group = ctx.attrs.int('group', 1);
  if (x[1] % group !== 0 || w.dims[0] % group !== 0) unsupported(ctx, `group ${group} must divide input channels ${x[1]} and output channels ${w.dims[0]}`);
  if (w.dims[1] * group !== x[1]) unsupported(ctx, `weights [${w.dims.join(', ')}] with group ${group} do not match ${x[1]} input channels`);
  const kernel = w.dims.slice(2);
  const strides = ctx.attrs.ints('strides', new Array(r).fill(1))!;
  const dilations = ctx.attrs.ints('dilations', new Array(r).fill(1))!;
  const pads = convPads(ctx, x.slice(2), ctx.outShapes[0].slice(2), kernel, strides, dilations);
  return [linearNode(ctx, { op: 'conv', weight: w, group, strides, pads, dilations })];
};

const convTranspose: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) return productOfInputs(ctx, 'convolves with input-dependent weights');
  const w = constantInput(ctx, 1)!;
  checkFinite(ctx, w, 'weights');
  const x = dyn[0].shape;
  const r = x.length - 2;
  const group = ctx.attrs.int('group', 1);
  const kernel = w.dims.slice(2);
  const strides = ctx.attrs.ints('strides', new Array(r).fill(1))!;
  const dilations = ctx.attrs.ints('dilations', new Array(r).fill(1))!;
  const outputPadding = ctx.attrs.ints('output_padding', new Array(r).fill(0))!;
  const out = ctx.outShapes[0].slice(2);
  let pads = ctx.attrs.ints('pads', null);
  if (!pads || ctx.attrs.has('output_shape') || ctx.attrs.string('auto_pad', 'NOTSET') !== 'NOTSET') {
    const begin: number[] = [];
    const end: number[] = [];
    const upper = ctx.attrs.string('auto_pad', 'NOTSET') !== 'SAME_LOWER';
    for (let i = 0; i < r; i++) {
      const total = strides[i] * (x[2 + i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1 - out[i];
      const half = Math.floor(total / 2);
      if (upper) { begin.push(half); end.push(total - half); } else { begin.push(total - half); end.push(half); }
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
export const linearConverters = { gemm, matmul, conv, convTranspose, batchNormalization, add: addSub(1), sub: addSub(-1), sum, mul, div, neg };
