import type { IrNode } from '../ir/types.js';
import { toFloat64 } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';

function activation(ctx: ConvertContext, fn: string, lo: number, hi: number): IrNode[] {
  return [{ kind: 'activation', fn, slope: [lo, hi], ...base(ctx, [dynamicInputs(ctx)[0]], ctx.outputs[0], ctx.outShapes[0]) }];
}

/** An elementwise op with a fixed slope range (ALGORITHMS.md §1 table). */
export function slopeRange(lo: number, hi: number): Converter {
  return (ctx) => activation(ctx, ctx.opType, lo, hi);
}

const leakyRelu: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 0.01);
  return activation(ctx, 'LeakyRelu', Math.min(a, 1), Math.max(a, 1));
};

const elu: Converter = (ctx) => activation(ctx, 'Elu', 0, Math.max(1, ctx.attrs.float('alpha', 1)));

const prelu: Converter = (ctx) => {
  if (dynamicInputs(ctx).length !== 1 || ctx.inputs[1]?.dynamic) unsupported(ctx, 'an input-dependent slope is a product of two input-dependent tensors');
  const s = toFloat64(constantInput(ctx, 1)!);
  let lo = 1, hi = 1;
  for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return activation(ctx, 'PRelu', lo, hi);
};

const clip: Converter = (ctx) => {
  if (ctx.inputs.slice(1).some((v) => v.dynamic)) unsupported(ctx, 'input-dependent clip bounds are not supported');
  return activation(ctx, 'Clip', 0, 1);
};

const softmax: Converter = (ctx) => [{
  kind: 'lipschitz', fn: 'Softmax', l2: 0.5, linf: 0.5,
  note: 'the Jacobian diag(p) − ppᵀ has norm at most 1/2 (ℓ2 and ℓ∞)',
  ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]),
}];

/** A node with no global Lipschitz constant. */
export function noGlobalConstant(why: string): Converter {
  return (ctx) => [{ kind: 'unbounded', reason: why, derived: false, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
}

/** A node whose output jumps: no Lipschitz constant at all. */
export function discontinuous(why: string): Converter {
  return (ctx) => [{ kind: 'discontinuous', reason: why, derived: false, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
}

/** Converters of elementwise activations and other nonlinear nodes. */
export const activationConverters = { leakyRelu, elu, prelu, clip, softmax };
