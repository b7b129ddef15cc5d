import type { Tensor } from '../ir/tensor.js';
import type { NodeSpec } from '../onnx/writer.js';

/**
 * A small ONNX graph under construction (the fused Lanczos models): nodes and initializers with generated names, all
 * carrying `prefix` (a Loop body's names must differ from its outer graph's: one SSA scope).
 */
export interface Builder {
  nodes: NodeSpec[];
  inits: [string, Tensor][];
  k: number;
  prefix: string;
}

export function builder(prefix = ''): Builder {
  return { nodes: [], inits: [], k: 0, prefix };
}

/** Appends one node; returns its output's name (`out`, or a generated one). */
export function op(b: Builder, opType: string, inputs: string[], attrs: NodeSpec['attrs'] = {}, out?: string): string {
  const o = out ?? `${b.prefix}t${b.k++}`;
  b.nodes.push({ opType, inputs, outputs: [o], attrs, name: `${b.prefix}n${b.nodes.length}` });
  return o;
}

/** Adds an initializer; returns its name (`name`, or a generated one). */
export function constant(b: Builder, t: Tensor, name?: string): string {
  const n = name ?? `${b.prefix}c${b.k++}`;
  b.inits.push([n, t]);
  return n;
}

export const ints = (values: readonly number[]): Tensor => ({ dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
export const f64 = (dims: number[], data: ArrayLike<number>): Tensor => ({ dtype: 'float64', dims, data: Float64Array.from(data) });
export const f32 = (dims: number[], data: ArrayLike<number>): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from(data) });
