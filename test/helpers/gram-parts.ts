import type { FusedGramParts } from '../../src/backend/fused-lanczos.js';
import type { Tensor } from '../../src/ir/tensor.js';
import type { GraphSpec } from '../../src/onnx/writer.js';

/** x [1, n] ↦ x·W [1, m] and its adjoint y ↦ y·Wᵀ (W n×m, row-major float32): the Gram map W Wᵀ on Rⁿ. */
export function denseGramParts(w: Float32Array, n: number, m: number): FusedGramParts {
  const wt = new Float32Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) wt[j * n + i] = w[i * m + j];
  const W: Tensor = { dtype: 'float32', dims: [n, m], data: w };
  const Wt: Tensor = { dtype: 'float32', dims: [m, n], data: wt };
  const first: GraphSpec = { opset: 13, inputs: [{ name: 'x', dims: [1, n] }], outputs: [{ name: 'y', dims: [1, m] }], nodes: [{ opType: 'MatMul', inputs: ['x', 'W'], outputs: ['y'] }], initializers: [['W', W]] };
  const second: GraphSpec = { opset: 13, inputs: [{ name: 'y', dims: [1, m] }], outputs: [{ name: 'x', dims: [1, n] }], nodes: [{ opType: 'MatMul', inputs: ['y', 'Wt'], outputs: ['x'] }], initializers: [['Wt', Wt]] };
  return { first, second, dims: [1, n], name: 'dense' };
}

/** A 3×3 convolution c → o channels on h×h (pads 1; kernel o×c×3×3 float32) and its ConvTranspose adjoint, the weight baked in once. */
export function convGramParts(kernel: Float32Array, c: number, o: number, h: number): FusedGramParts {
  const K: Tensor = { dtype: 'float32', dims: [o, c, 3, 3], data: kernel };
  const attrs = { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } };
  const first: GraphSpec = { opset: 13, inputs: [{ name: 'x', dims: [1, c, h, h] }], outputs: [{ name: 'y', dims: [1, o, h, h] }], nodes: [{ opType: 'Conv', inputs: ['x', 'K'], outputs: ['y'], attrs }], initializers: [['K', K]] };
  const second: GraphSpec = { opset: 13, inputs: [{ name: 'y', dims: [1, o, h, h] }], outputs: [{ name: 'x', dims: [1, c, h, h] }], nodes: [{ opType: 'ConvTranspose', inputs: ['y', 'K'], outputs: ['x'], attrs }], initializers: [['K', K]] };
  return { first, second, dims: [1, c, h, h], name: 'conv' };
}
