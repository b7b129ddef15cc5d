import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { toNumbers, type Tensor } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { convPads, linearChain, linearNode } from './linear.js';

function poolGeometry(ctx: ConvertContext) {
  const x = dynamicInputs(ctx)[0].shape;
  const r = x.length - 2;
  const kernel = ctx.attrs.ints('kernel_shape', null);
  if (!kernel) unsupported(ctx, 'kernel_shape is required');
  const strides = ctx.attrs.ints('strides', new Array(r).fill(1))!;
  const dilations = ctx.attrs.ints('dilations', new Array(r).fill(1))!;
  return { x, r, kernel, strides, dilations };
}

/** Explicit begin/end pads (auto_pad resolved, ceil_mode's extra windows absorbed into the end pads). */
function poolPads(ctx: ConvertContext, x: Shape, out: Shape, kernel: number[], strides: number[], dilations: number[]): { pads: number[]; declared: number[] } {
  const r = kernel.length;
  const declared = convPads(ctx, x, out, kernel, strides, dilations);
  const pads = [...declared];
  for (let i = 0; i < r; i++) {
    const need = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x[i] - declared[i];
    pads[i + r] = Math.max(declared[i + r], need);
  }
  return { pads, declared };
}

/** Windows covering one input: Π_d min(k_d, ⌈((k_d − 1)·dilation_d + 1)/s_d⌉) (ceil_mode only adds clipped windows). */
function windowCover(kernel: readonly number[], strides: readonly number[], dilations: readonly number[]): number {
  let cover = 1;
  for (let i = 0; i < kernel.length; i++) cover *= Math.min(kernel[i], Math.ceil(((kernel[i] - 1) * dilations[i] + 1) / strides[i]));
  return cover;
}

/** A discontinuous node for an integer side output (MaxPool or TopK indices), so whatever reads it is flagged. */
function indicesOutput(ctx: ConvertContext, k: number): IrNode[] {
  const o = ctx.outputs[k];
  if (!o) return [];
  return [{ kind: 'discontinuous', reason: 'returns the positions of the largest elements (integer, piecewise constant)', derived: false, ...base(ctx, dynamicInputs(ctx), o, ctx.outShapes[k]) }];
}

const maxPool: Converter = (ctx) => {
  if (ctx.attrs.int('storage_order', 0) !== 0 && ctx.outputs[1]) unsupported(ctx, 'storage_order=1 is not supported');
  const { x, r, kernel, strides, dilations } = poolGeometry(ctx);
  const cover = windowCover(kernel, strides, dilations);
  const dyn = dynamicInputs(ctx);
  const { declared } = poolPads(ctx, x.slice(2), ctx.outShapes[0].slice(2), kernel, strides, dilations);
  return [{
    kind: 'lipschitz', fn: 'MaxPool', l2: Math.sqrt(cover), linf: 1, window: { kernel, strides, dilations, begin: declared.slice(0, r) },
    note: `each input lies in at most ${cover} window${cover === 1 ? '' : 's'} (kernel ${kernel.join('×')}, stride ${strides.join('×')}${dilations.some((d) => d !== 1) ? `, dilation ${dilations.join('×')}` : ''})`,
    ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]),
  }, ...indicesOutput(ctx, 1)];
};

/**
 * LpPool: y = ‖window‖_p (p ≥ 1), so |Δy| ≤ ‖Δwindow‖_p ≤ K^max(0, 1/p − 1/2)·‖Δwindow‖₂ with K taps; summing squares over the
 * windows covering each input gives ℓ2 ≤ √cover·K^max(0, 1/p − 1/2). ℓ∞: ‖Δwindow‖_p ≤ K^(1/p)·‖Δwindow‖∞.
 */
function lpNode(ctx: ConvertContext, p: number, taps: number, cover: number, what: string): IrNode[] {
  if (!(p >= 1)) {
    return [{ kind: 'unbounded', reason: `p = ${p} < 1 is not a norm: its slope is unbounded near 0`, derived: false, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
  }
  const l2 = Math.sqrt(cover) * Math.pow(taps, Math.max(0, 1 / p - 1 / 2));
  const linf = Math.pow(taps, 1 / p);
  return [{ kind: 'lipschitz', fn: ctx.opType, l2: l2 * (1 + 1e-15), linf: linf * (1 + 1e-15), note: `ℓ${p} norm over ${what}`, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
}

const lpPool: Converter = (ctx) => {
  const { kernel, strides, dilations } = poolGeometry(ctx);
  const taps = kernel.reduce((a, b) => a * b, 1);
  return lpNode(ctx, ctx.attrs.int('p', 2), taps, windowCover(kernel, strides, dilations), `windows of ${taps} (kernel ${kernel.join('×')}, stride ${strides.join('×')})`);
};

const globalLpPool: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0].shape;
  const taps = x.slice(2).reduce((a, b) => a * b, 1);
  return lpNode(ctx, ctx.attrs.int('p', 2), taps, 1, `the ${taps} spatial positions`);
};

const globalMaxPool: Converter = (ctx) => [{
  kind: 'lipschitz', fn: 'GlobalMaxPool', l2: 1, linf: 1, note: 'each input lies in one window',
  window: (() => { const k = dynamicInputs(ctx)[0].shape.slice(2); return { kernel: k, strides: k.map(() => 1), dilations: k.map(() => 1), begin: k.map(() => 0) }; })(),
  ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]),
}];

/** How many window positions along one axis ORT divides by, per output index. */
function divisors(n: number, m: number, k: number, s: number, d: number, padBegin: number, padEnd: number, includePad: boolean): number[] {
  const out: number[] = [];
  for (let o = 0; o < m; o++) {
    let c = 0;
    for (let t = 0; t < k; t++) {
      const p = o * s - padBegin + t * d;
      if (includePad ? p >= -padBegin && p < n + padEnd : p >= 0 && p < n) c++;
    }
    out.push(c);
  }
  return out;
}

const averagePool: Converter = (ctx) => {
  const { x, r, kernel, strides, dilations } = poolGeometry(ctx);
  const out = ctx.outShapes[0];
  const { pads, declared } = poolPads(ctx, x.slice(2), out.slice(2), kernel, strides, dilations);
  const includePad = ctx.attrs.int('count_include_pad', 0) !== 0;
  const c = x[1];
  const kProd = kernel.reduce((a, b) => a * b, 1);
  const w = new Float32Array(c * kProd).fill(1 / kProd);
  const weight: Tensor = { dtype: 'float32', dims: [c, 1, ...kernel], data: w };
  const steps: { prim: LinearPrim; shape: Shape }[] = [{ prim: { op: 'conv', weight, group: c, strides, pads, dilations }, shape: out }];
  const per = kernel.map((k, i) => divisors(x[2 + i], out[2 + i], k, strides[i], dilations[i], declared[i], declared[i + r], includePad));
  const spatial = out.slice(2);
  const size = spatial.reduce((a, b) => a * b, 1);
  const factor = new Float64Array(size);
  let uniform = true;
  for (let flat = 0; flat < size; flat++) {
    let rem = flat;
    let div = 1;
    for (let i = r - 1; i >= 0; i--) { const o = rem % spatial[i]; rem = Math.floor(rem / spatial[i]); div *= per[i][o]; }
    factor[flat] = div > 0 ? kProd / div : 0;
    if (factor[flat] !== 1) uniform = false;
  }
  if (!uniform) steps.push({ prim: { op: 'scale', factor: { dtype: 'float64', dims: spatial, data: factor } }, shape: out });
  return linearChain(ctx, steps);
};

function reduceAxes(ctx: ConvertContext, rank: number): number[] | null {
  let axes: number[] | null = ctx.attrs.ints('axes', null);
  const fromInput = constantInput(ctx, 1);
  if (fromInput) axes = toNumbers(fromInput);
  else if (ctx.inputs.length > 1 && ctx.inputs[1].dynamic) unsupported(ctx, 'input-dependent axes are not supported');
  if (!axes || axes.length === 0) {
    if (ctx.attrs.int('noop_with_empty_axes', 0) !== 0) return null;
    return Array.from({ length: rank }, (_, i) => i);
  }
  return axes.map((a) => (a < 0 ? a + rank : a));
}

function reduce(mean: boolean): Converter {
  return (ctx) => {
    const x = dynamicInputs(ctx)[0];
    if (x.index !== 0) unsupported(ctx, 'input-dependent axes are not supported');
    const axes = reduceAxes(ctx, x.shape.length);
    if (axes === null) return [linearNode(ctx, { op: 'reshape' })];
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    return linearChain(ctx, [{ prim: { op: 'reduce', axes, mean }, shape: kept }, { prim: { op: 'reshape' }, shape: ctx.outShapes[0] }]);
  };
}

/**
 * Nonlinear reductions over groups of k elements (each input in one group): ReduceMax/Min and ReduceLogSumExp (gradient
 * a probability vector) change by at most max|Δx| ≤ ‖Δx‖₂; ReduceL2 is a norm (1-Lipschitz in ℓ2, √k in ℓ∞); ReduceL1
 * is ‖·‖₁ (√k in ℓ2, k in ℓ∞).
 */
function reduceLipschitz(l2: (k: number) => number, linf: (k: number) => number, what: string): Converter {
  return (ctx) => {
    const x = dynamicInputs(ctx)[0];
    if (x.index !== 0) unsupported(ctx, 'input-dependent axes are not supported');
    const axes = reduceAxes(ctx, x.shape.length);
    const k = axes === null ? 1 : axes.reduce((a, ax) => a * x.shape[ax], 1);
    return [{ kind: 'lipschitz', fn: ctx.opType, l2: l2(k) * (1 + 1e-15), linf: linf(k) * (1 + 1e-15), note: `${what} over groups of ${k}`, ...base(ctx, [x], ctx.outputs[0], ctx.outShapes[0]) }];
  };
}

const globalAveragePool: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0].shape;
  const axes = x.map((_, i) => i).slice(2);
  return [linearNode(ctx, { op: 'reduce', axes, mean: true })];
};

/** TopK: the values are a sorted selection (sorting is 1-Lipschitz in every ℓp); the indices are piecewise constant. */
const topK: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length !== 1 || dyn[0].index !== 0) unsupported(ctx, 'an input-dependent K is not supported');
  const nodes: IrNode[] = [];
  if (ctx.outputs[0]) nodes.push({ kind: 'lipschitz', fn: 'TopK', l2: 1, linf: 1, note: 'sorted values: 1-Lipschitz', ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) });
  return [...nodes, ...indicesOutput(ctx, 1)];
};

/** Converters of pooling and reductions. */
export const poolingConverters = {
  maxPool, globalMaxPool, averagePool, globalAveragePool, lpPool, globalLpPool, topK,
  reduceMean: reduce(true), reduceSum: reduce(false),
  reduceMax: reduceLipschitz(() => 1, () => 1, 'maximum'),
  reduceMin: reduceLipschitz(() => 1, () => 1, 'minimum'),
  reduceLogSumExp: reduceLipschitz(() => 1, () => 1, 'log-sum-exp'),
  reduceL2: reduceLipschitz(() => 1, (k) => Math.sqrt(k), 'ℓ2 norm'),
  reduceL1: reduceLipschitz((k) => Math.sqrt(k), (k) => k, 'ℓ1 norm'),
};
