import type { Attributes } from '../onnx/attributes.js';
import type { IrNode, Shape } from '../ir/types.js';
import type { DType, Tensor } from '../ir/tensor.js';

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
