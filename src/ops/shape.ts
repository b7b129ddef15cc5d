import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { isFloatType, toNumbers, type DType } from '../ir/tensor.js';
import { DATA_TYPES } from '../onnx/proto.js';
import { base, constantInput, dynamicInputs, unsupported, type Converter } from './context.js';
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

/** The source index along an axis of length n for output index i of a padded axis (begin pad b), per Pad mode. */
export function padSource(mode: string, i: number, b: number, n: number): number {
  let j = i - b;
  if (j >= 0 && j < n) return j;
  if (mode === 'edge') return Math.min(Math.max(j, 0), n - 1);
  if (mode === 'wrap') return ((j % n) + n) % n;
  // reflect: mirror about the first and last element, without repeating them
  const period = 2 * (n - 1);
  j = ((j % period) + period) % period;
  return j < n ? j : period - j;
}

const pad: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent pads are not supported');
  if (ctx.inputs.slice(1).some((v) => v.dynamic)) unsupported(ctx, 'input-dependent pads, constant_value or axes are not supported');
  const mode = ctx.attrs.string('mode', 'constant');
  if (!['constant', 'reflect', 'edge', 'wrap'].includes(mode)) unsupported(ctx, `mode '${mode}' is not one of constant, reflect, edge, wrap`);
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
  if (pads.length !== 2 * r) unsupported(ctx, `pads [${pads.join(', ')}] must have 2 × ${r} entries`);
  // constant mode: the pad value is an offset; the linear part pads with zeros
  if (mode === 'constant') return [linearNode(ctx, { op: 'pad', pads })];
  // reflect, edge, wrap: each output element copies one input element, a 0/1 matrix along each padded axis
  const steps: { prim: LinearPrim; shape: Shape }[] = [];
  let shape = [...x.shape];
  for (let a = 0; a < r; a++) {
    const [b, e] = [pads[a], pads[a + r]];
    if (b === 0 && e === 0) continue;
    const n = shape[a];
    const rows = n + b + e;
    if (rows < 0) unsupported(ctx, `pads ${b}, ${e} crop more than the ${n} elements of axis ${a}`);
    if (mode === 'reflect' && (n < 2 || b >= n || e >= n) && (b > 0 || e > 0)) unsupported(ctx, `reflect pads ${b}, ${e} need an axis longer than both (axis ${a} has ${n})`);
    const m = new Float64Array(rows * n);
    for (let i = 0; i < rows; i++) m[i * n + padSource(mode, i, b, n)] = 1;
    shape = [...shape];
    shape[a] = rows;
    steps.push({ prim: { op: 'axisMatrix', axis: a, matrix: m, rows, cols: n }, shape });
  }
  if (steps.length === 0) steps.push({ prim: { op: 'reshape' }, shape });
  return linearChain(ctx, steps);
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

/** Split: each output is a contiguous crop along the axis (sizes as observed, whichever opset form gave them). */
const split: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent split sizes are not supported');
  const r = x.shape.length;
  const a0 = ctx.attrs.int('axis', 0);
  const axis = a0 < 0 ? a0 + r : a0;
  const nodes: IrNode[] = [];
  let offset = 0;
  ctx.outputs.forEach((o, k) => {
    const len = ctx.outShapes[k]?.[axis] ?? 0;
    if (o) nodes.push(linearNode(ctx, selectPrim(axis, r, x.shape[axis], Array.from({ length: len }, (_, i) => offset + i)), x, o, ctx.outShapes[k]));
    offset += len;
  });
  if (offset !== x.shape[axis]) unsupported(ctx, `its outputs cover ${offset} of the ${x.shape[axis]} elements of axis ${axis}`);
  return nodes;
};

const expand: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'an input-dependent shape operand is not supported');
  return [linearNode(ctx, { op: 'expand' })];
};

/** Tile: along each repeated axis, a stack of identity matrices. */
const tile: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent repeats are not supported');
  const rep = constantInput(ctx, 1);
  if (!rep) unsupported(ctx, 'repeats must be a constant');
  const repeats = toNumbers(rep);
  if (repeats.length !== x.shape.length) unsupported(ctx, `repeats [${repeats.join(', ')}] must have one entry per axis of the rank-${x.shape.length} input`);
  const steps: { prim: LinearPrim; shape: Shape }[] = [];
  let shape = [...x.shape];
  repeats.forEach((k, a) => {
    if (k === 1) return;
    const n = shape[a];
    const m = new Float64Array(k * n * n);
    for (let c = 0; c < k; c++) for (let i = 0; i < n; i++) m[(c * n + i) * n + i] = 1;
    shape = [...shape];
    shape[a] = k * n;
    steps.push({ prim: { op: 'axisMatrix', axis: a, matrix: m, rows: k * n, cols: n }, shape });
  });
  if (steps.length === 0) steps.push({ prim: { op: 'reshape' }, shape });
  return linearChain(ctx, steps);
};

/** DepthToSpace (DCR or CRD) as reshape → transpose → reshape: a permutation, norm 1. */
const depthToSpace: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0].shape;
  const b = ctx.attrs.int('blocksize', 0);
  if (x.length !== 4 || !(b >= 1) || x[1] % (b * b) !== 0) unsupported(ctx, `blocksize ${b} must be ≥ 1 with b² dividing the channels of a 4-D input [${x.join(', ')}]`);
  const [n, c, h, w] = x;
  const crd = ctx.attrs.string('mode', 'DCR') === 'CRD';
  const split = crd ? [n, c / (b * b), b, b, h, w] : [n, b, b, c / (b * b), h, w];
  const perm = crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2];
  return linearChain(ctx, [
    { prim: { op: 'reshape' }, shape: split },
    { prim: { op: 'transpose', perm }, shape: perm.map((p) => split[p]) },
    { prim: { op: 'reshape' }, shape: ctx.outShapes[0] },
  ]);
};

const spaceToDepth: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0].shape;
  const b = ctx.attrs.int('blocksize', 0);
  if (x.length !== 4 || !(b >= 1) || x[2] % b !== 0 || x[3] % b !== 0) unsupported(ctx, `blocksize ${b} must be ≥ 1 and divide the spatial size of a 4-D input [${x.join(', ')}]`);
  const [n, c, h, w] = x;
  const split = [n, c, h / b, b, w / b, b];
  const perm = [0, 3, 5, 1, 2, 4];
  return linearChain(ctx, [
    { prim: { op: 'reshape' }, shape: split },
    { prim: { op: 'transpose', perm }, shape: perm.map((p) => split[p]) },
    { prim: { op: 'reshape' }, shape: ctx.outShapes[0] },
  ]);
};

/** Where with a constant condition: a masked select, linear in each dynamic branch (the other branch is an offset). */
const where: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (ctx.inputs[0].dynamic) {
    return [{ kind: 'discontinuous', reason: 'selects by an input-dependent condition', derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
  }
  const cond = constantInput(ctx, 0)!;
  const mask = toNumbers(cond).map((v) => (v ? 1 : 0));
  const out = ctx.outShapes[0];
  const nodes: IrNode[] = [];
  const branch = (d: { index: number; name: string; shape: Shape }, k: number, output: string): void => {
    const keep = d.index === 1 ? mask : mask.map((v) => 1 - v);
    let cur = { name: d.name, shape: d.shape };
    if (!sameShape(d.shape, out)) {
      const name = `${output}::expand${k}`;
      nodes.push(linearNode(ctx, { op: 'expand' }, cur, name, out));
      cur = { name, shape: out };
    }
    nodes.push(linearNode(ctx, { op: 'scale', factor: { dtype: 'float32', dims: cond.dims, data: Float32Array.from(keep) } }, cur, output, out));
  };
  if (dyn.length === 1) { branch(dyn[0], 0, ctx.outputs[0]); return nodes; }
  const parts = dyn.map((d, k) => { const name = `${ctx.outputs[0]}::branch${k}`; branch(d, k, name); return { name, shape: out }; });
  nodes.push({ kind: 'linear', prim: { op: 'sum', signs: [1, 1] }, ...base(ctx, parts, ctx.outputs[0], out) });
  return nodes;
};

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Converters of shape and data-movement ops. */
export const shapeConverters = { reshapeLike, cast, transpose, pad, slice, gather, concat, split, expand, tile, depthToSpace, spaceToDepth, where };
