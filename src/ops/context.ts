import type { Attributes } from '../onnx/attributes.js';
import type { IrNode, Shape } from '../ir/types.js';
import type { DType, Tensor } from '../ir/tensor.js';
import { describeScan, FLOAT32_MIN_NORMAL, scanNumbers } from '../ir/audit.js';

/** One input of the node being converted: input-dependent (with its shape) or a constant (with its value). */
export type InputValue =
  | { readonly name: string; readonly dynamic: true; readonly shape: Shape; readonly dtype: DType }
  | { readonly name: string; readonly dynamic: false; readonly tensor: Tensor }
  | { readonly name: ''; readonly dynamic: false; readonly tensor: null };

/** Thrown by a converter for a node it cannot represent; collected so the user sees every such node at once. */
export class UnsupportedNode extends Error {}

/** What a converter gets: the node, typed attributes, its inputs and the output shapes observed by onnxruntime. */
export interface ConvertContext {
  readonly name: string;
  readonly opType: string;
  readonly opset: number;
  readonly attrs: Attributes;
  readonly inputs: readonly InputValue[];
  readonly outputs: readonly string[];
  readonly outShapes: readonly Shape[];
}

/** A converter turns one ONNX node into IR nodes (intermediate values are named `<output>::<k>`). */
export type Converter = (ctx: ConvertContext) => IrNode[];

/** Fails the conversion of this node with a reason the user will read. */
export function unsupported(ctx: ConvertContext, why: string): never {
  throw new UnsupportedNode(`${ctx.opType} node '${ctx.name}': ${why}`);
}

/** The dynamic inputs of a node, in order, with their positions. */
export function dynamicInputs(ctx: ConvertContext): { index: number; name: string; shape: Shape }[] {
  const out: { index: number; name: string; shape: Shape }[] = [];
  ctx.inputs.forEach((v, index) => { if (v.dynamic) out.push({ index, name: v.name, shape: v.shape }); });
  return out;
}

/** The constant at input `i`, or null when it is absent or dynamic. */
export function constantInput(ctx: ConvertContext, i: number): Tensor | null {
  const v = ctx.inputs[i];
  return v && !v.dynamic ? v.tensor : null;
}

/** Base fields for an IR node reading `inputs` and writing `output` of shape `outShape`. */
export function base(ctx: ConvertContext, inputs: { name: string; shape: Shape }[], output: string, outShape: Shape) {
  return { name: ctx.name, opType: ctx.opType, inputs: inputs.map((i) => i.name), inShapes: inputs.map((i) => i.shape), output, outShape };
}

/**
 * The finite-number audit of the constants one input-dependent node reads (weights, biases, added or multiplied
 * constants, normalisation statistics, pad values, clip bounds) and of its float attributes, before conversion: NaN
 * anywhere, ±Infinity except as a Clip bound or a Pad value (both mean "no bound" / "never the maximum" there),
 * division by zero or a denormal, and a BatchNormalization variance with var + ε ≤ 0. Returns one line per problem.
 */
export function auditConstants(ctx: ConvertContext): string[] {
  const problems: string[] = [];
  const node = `${ctx.opType} node '${ctx.name}'`;
  const infinityAllowed = (i: number) => (ctx.opType === 'Clip' && i >= 1) || (ctx.opType === 'Pad' && i === 2);
  ctx.inputs.forEach((v, i) => {
    if (v.dynamic || !v.tensor) return;
    const s = scanNumbers(v.tensor);
    if (!s) return;
    const kinds = { nan: true, inf: !infinityAllowed(i), huge: false };
    if (s.nan || (kinds.inf && s.posInf + s.negInf)) problems.push(`${node}: constant '${v.name}' (input ${i}) holds ${describeScan(s, kinds)}.`);
    if (ctx.opType === 'Div' && i === 1 && ctx.inputs[0]?.dynamic && s.zero + s.denormal > 0) {
      const d = v.tensor.data as Float32Array | Float64Array;
      const at = d.findIndex((x) => Math.abs(x) < FLOAT32_MIN_NORMAL);
      problems.push(`${node}: divides by constant '${v.name}', which holds ${s.zero} zero and ${s.denormal} denormal value${s.denormal === 1 ? '' : 's'} among ${s.size} (the first at element ${at}: ${d[at]}); 1/c is infinite or beyond float32's range there.`);
    }
  });
  if (ctx.opType === 'BatchNormalization') {
    const variance = constantInput(ctx, 4);
    const eps = ctx.attrs.float('epsilon', 1e-5);
    if (variance && scanNumbers(variance)) {
      const d = variance.data as Float32Array | Float64Array;
      const at = d.findIndex((x) => x + eps <= 0);
      if (at >= 0) problems.push(`${node}: variance '${ctx.inputs[4].name}' plus epsilon ${eps} is ${d[at] + eps} ≤ 0 at element ${at}; its scale γ/√(var+ε) is infinite or NaN.`);
    }
  }
  for (const name of ctx.attrs.names()) {
    const values = [...(ctx.attrs.floats(name, null) ?? []), ctx.attrs.float(name, 0)];
    const t = ctx.attrs.tensor(name);
    const s = t ? scanNumbers(t) : null;
    const clipBound = ctx.opType === 'Clip' && (name === 'min' || name === 'max');
    if (values.some((x) => Number.isNaN(x) || (!clipBound && !Number.isFinite(x)))) problems.push(`${node}: attribute '${name}' is ${values.find((x) => !Number.isFinite(x))}.`);
    else if (s && s.nan + s.posInf + s.negInf) problems.push(`${node}: tensor attribute '${name}' holds ${describeScan(s, { nan: true, inf: true })}.`);
  }
  return problems;
}
