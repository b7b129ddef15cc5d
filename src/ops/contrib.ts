import type { IrNode, Shape } from '../ir/types.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearNode } from './linear.js';
import { SLOPES } from './activations.js';

/** The domain of onnxruntime's contrib operators. */
export const MS_DOMAIN = 'com.microsoft';

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * g(a + b) for an elementwise g with slopes in [lo, hi]: a constant bias is an offset (the range holds over all reals);
 * input-dependent operands are summed (or broadcast) first by a linear node, then g applies.
 */
function biasedActivation(ctx: ConvertContext, fn: string, lo: number, hi: number, params?: Record<string, number>): IrNode[] {
  const dyn = dynamicInputs(ctx);
  const out = ctx.outShapes[0];
  // the constant bias, added before g: the operand of g's entry in src/ops/elementwise.ts
  const bias = ctx.inputs.map((_, i) => constantInput(ctx, i)).find((t) => t !== null) ?? undefined;
  const act = (input: { name: string; shape: Shape }): IrNode => ({ kind: 'activation', fn, slope: [lo, hi], ...(params ? { params } : {}), ...(bias ? { operand: bias } : {}), ...base(ctx, [input], ctx.outputs[0], out) });
  if (dyn.length === 1 && sameShape(dyn[0].shape, out)) return [act(dyn[0])];
  const pre = { name: `${ctx.outputs[0]}::sum`, shape: out };
  const linear: IrNode = dyn.length === 1
    ? linearNode(ctx, { op: 'expand' }, dyn[0], pre.name, out)
    : { kind: 'linear', prim: { op: 'sum', signs: dyn.map(() => 1) }, ...base(ctx, dyn, pre.name, out) };
  return [linear, act(pre)];
}

/** com.microsoft Gelu: x·Φ(x), the erf form. */
const gelu: Converter = (ctx) => biasedActivation(ctx, 'Gelu', ...SLOPES.geluErf);

/** com.microsoft BiasGelu: Gelu(A + B), the erf form. */
const biasGelu: Converter = (ctx) => biasedActivation(ctx, 'BiasGelu', ...SLOPES.geluErf);

/** com.microsoft FastGelu: the tanh form of Gelu at X (+ bias), with onnxruntime's constants √(2/π) and 0.044715. */
const fastGelu: Converter = (ctx) => biasedActivation(ctx, 'FastGelu', ...SLOPES.geluTanh);

/**
 * com.microsoft QuickGelu: x·σ(αx) (α defaults to 1.702). d/dx xσ(αx) = σ(αx) + αx·σ′(αx) = SiLU′(αx), so the range
 * is SiLU's for every α ≠ 0; α = 0 gives x/2.
 */
const quickGelu: Converter = (ctx) => {
  const alpha = ctx.attrs.float('alpha', 1.702);
  if (!Number.isFinite(alpha)) unsupported(ctx, `alpha ${alpha} must be a finite number.`);
  const [lo, hi] = alpha === 0 ? [0.5, 0.5] : SLOPES.silu;
  return biasedActivation(ctx, 'QuickGelu', lo, hi, { alpha });
};

/** Converters of onnxruntime contrib ops (domain com.microsoft) that are elementwise activations. */
export const contribConverters = { gelu, biasGelu, fastGelu, quickGelu };
