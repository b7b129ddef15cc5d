import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { isFloatType, toNumbers, type DType } from '../ir/tensor.js';
import { DATA_TYPES } from '../onnx/proto.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearChain, linearNode } from './linear.js';

/** Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference): same elements, maybe a new shape. */
const reshapeLike: Converter = (ctx) => {
  if (dynamicInputs(ctx)[0].index !== 0) unsupported(ctx, 'an input-dependent shape operand is not supported');
  return [linearNode(ctx, { op: 'reshape' })];
};

const cast: Converter = (ctx) => {
  const to = DATA_TYPES[ctx.attrs.int('to', 1)] as DType | undefined;
  if (to && isFloatType(to)) return [linearNode(ctx, { op: 'reshape' })];
  const dyn = dynamicInputs(ctx);
  return [{ kind: 'discontinuous', reason: `casts to ${to ?? 'a non-float type'}, which rounds the input`, derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
};

const transpose: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0].shape;
  const perm = ctx.attrs.ints('perm', x.map((_, i) => x.length - 1 - i))!;
  return [linearNode(ctx, { op: 'transpose', perm })];
};

const pad: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent pads are not supported');
  const mode = ctx.attrs.string('mode', 'constant');
  if (mode !== 'constant') unsupported(ctx, `mode '${mode}' is not supported yet (only 'constant')`);
  const r = x.shape.length;
  let pads: number[];
  if (ctx.opset < 11) pads = ctx.attrs.ints('pads', null) ?? ctx.attrs.ints('paddings', null) ?? new Array(2 * r).fill(0);
  else {
    const p = constantInput(ctx, 1);
    if (!p) unsupported(ctx, 'pads must be a constant');
    const given = toNumbers(p);
    const axesT = constantInput(ctx, 3);
    if (axesT) {
      const axes = toNumbers(axesT).map((a) => (a < 0 ? a + r : a));
      pads = new Array(2 * r).fill(0);
      axes.forEach((a, i) => { pads[a] = given[i]; pads[a + r] = given[i + axes.length]; });
    } else pads = given;
  }
  return [linearNode(ctx, { op: 'pad', pads })];
};

/** The element indices a Slice selects along one axis (ONNX Slice-10+ clamping rules). */
export function sliceIndices(n: number, start: number, end: number, step: number): number[] {
  if (step === 0) throw new Error('step 0');
  let s = start < 0 ? start + n : start;
  let e = end < 0 ? end + n : end;
  if (step > 0) { s = Math.min(Math.max(s, 0), n); e = Math.min(Math.max(e, 0), n); } else { s = Math.min(Math.max(s, 0), n - 1); e = Math.min(Math.max(e, -1), n - 1); }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

/** The linear prim selecting `indices` along `axis` of an axis of length n: a crop when contiguous, else a matrix. */
export function selectPrim(axis: number, rank: number, n: number, indices: number[]): LinearPrim {
  const contiguous = indices.length > 0 && indices.every((v, i) => v === indices[0] + i);
  if (contiguous) {
    const pads = new Array(2 * rank).fill(0);
    pads[axis] = -indices[0];
    pads[axis + rank] = -(n - (indices[0] + indices.length));
    return { op: 'pad', pads };
  }
  const m = new Float64Array(indices.length * n);
  indices.forEach((c, r) => { m[r * n + c] = 1; });
  return { op: 'axisMatrix', axis, matrix: m, rows: indices.length, cols: n };
}

const slice: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent slice bounds are not supported');
  const r = x.shape.length;
  let starts: number[], ends: number[], axes: number[], steps: number[];
  if (ctx.opset < 10) {
    starts = ctx.attrs.ints('starts', [])!;
    ends = ctx.attrs.ints('ends', [])!;
    axes = ctx.attrs.ints('axes', starts.map((_, i) => i))!;
    steps = starts.map(() => 1);
  } else {
    const get = (i: number) => { const t = constantInput(ctx, i); return t ? toNumbers(t) : null; };
    const s = get(1), e = get(2);
    if (!s || !e) unsupported(ctx, 'starts and ends must be constants');
    starts = s; ends = e;
    axes = get(3) ?? starts.map((_, i) => i);
    steps = get(4) ?? starts.map(() => 1);
  }
  const stepsOut: { prim: LinearPrim; shape: Shape }[] = [];
  let shape = [...x.shape];
  axes.forEach((a0, i) => {
    const a = a0 < 0 ? a0 + r : a0;
    if (steps[i] === 0) unsupported(ctx, 'a step of 0 is invalid');
    const idx = sliceIndices(shape[a], starts[i], ends[i], steps[i]);
    if (idx.length === shape[a] && idx.every((v, j) => v === j)) return;
    const prim = selectPrim(a, r, shape[a], idx);
    shape = [...shape];
    shape[a] = idx.length;
    stepsOut.push({ prim, shape });
  });
  if (stepsOut.length === 0) stepsOut.push({ prim: { op: 'reshape' }, shape });
  return linearChain(ctx, stepsOut);
};

const gather: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) {
    return [{ kind: 'discontinuous', reason: 'indexes with input-dependent indices', derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
  }
  const x = dyn[0].shape;
  const r = x.length;
  const axis0 = ctx.attrs.int('axis', 0);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  const idx = toNumbers(constantInput(ctx, 1)!).map((i) => (i < 0 ? i + x[axis] : i));
  const shape = [...x];
  shape[axis] = idx.length;
  return linearChain(ctx, [{ prim: selectPrim(axis, r, x[axis], idx), shape }, { prim: { op: 'reshape' }, shape: ctx.outShapes[0] }]);
};

const concat: Converter = (ctx) => {
  const r = ctx.outShapes[0].length;
  const axis0 = ctx.attrs.int('axis', 0);
  const axis = axis0 < 0 ? axis0 + r : axis0;
  const dyn = dynamicInputs(ctx);
  const parts = ctx.inputs.map((v) => {
    if (v.dynamic) return { dynamic: dyn.findIndex((d) => d.index === ctx.inputs.indexOf(v)) };
    return { zeros: v.tensor ? v.tensor.dims : [] };
  });
  const node: IrNode = { kind: 'linear', prim: { op: 'concat', axis, parts }, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) };
  return [node];
};

/** Converters of shape and data-movement ops. */
export const shapeConverters = { reshapeLike, cast, transpose, pad, slice, gather, concat };
