import { toFloat64, type Tensor } from '../ir/tensor.js';
import type { IrNode, LinearNode } from '../ir/types.js';
import type { OnnxModel, OnnxNode } from '../onnx/read-model.js';
import { broadcastMap } from '../ops/elementwise.js';

/**
 * The affine offsets of linear IR nodes (LinearNode.offset), read from the ONNX model once by the frontend so that
 * estimators needing the affine map itself (the exact enumeration) read the IR alone.
 */

/** ONNX op types known to add no offset (their IR node's map is linear as it is). */
const NO_OFFSET = new Set(['MatMul', 'Mul', 'Div', 'Neg', 'Flatten', 'Reshape', 'Identity', 'Squeeze', 'Unsqueeze', 'Dropout', 'Transpose']);

function constantOf(model: OnnxModel, constants: Map<string, OnnxNode>, name: string): Tensor | null {
  return model.initializers.get(name) ?? constants.get(name)?.attributes.tensor('value') ?? null;
}

/**
 * The constant offset an Add/Sub/Gemm node adds to its dynamic operand (flattened to its output size), exact in
 * float64: undefined for none, a string saying why it is not known (an op whose offset is not read back here, a
 * missing constant, an inexact β·C).
 */
function offsetOf(model: OnnxModel, constants: Map<string, OnnxNode>, node: OnnxNode, n: LinearNode): Float64Array | string | undefined {
  if (NO_OFFSET.has(node.opType)) return undefined;
  let t: Tensor | null = null, sign = 1;
  if (node.opType === 'Add' || node.opType === 'Sub') {
    const k = node.inputs.findIndex((i) => !n.inputs.includes(i));
    if (k < 0) return undefined;
    t = constantOf(model, constants, node.inputs[k]);
    if (!t) return `the constant operand of node '${node.name}' (${node.opType}) was not found`;
    sign = node.opType === 'Sub' && k === 1 ? -1 : 1;
  } else if (node.opType === 'Gemm') {
    if (!node.inputs[2]) return undefined;
    t = constantOf(model, constants, node.inputs[2]);
    if (!t) return `the constant C of node '${node.name}' (Gemm) was not found`;
    sign = node.attributes.float('beta', 1);
  } else if (node.opType === 'Conv') {
    // the bias B (one value per output channel) is added at every position: as a [M, 1, …, 1] constant
    if (!node.inputs[2]) return undefined;
    const b = constantOf(model, constants, node.inputs[2]);
    if (!b) return `the bias B of node '${node.name}' (Conv) was not found`;
    t = { ...b, dims: [b.dims[0] ?? 1, ...n.outShape.slice(2).map(() => 1)] };
  } else return `node '${node.name}' (${node.opType}) is not read back as an affine map here`;
  const rows = n.outShape.reduce((a, b) => a * b, 1);
  const v = toFloat64(t);
  // numpy broadcasting of the constant to the output (a bias of one value per channel, say)
  const fits = t.dims.length <= n.outShape.length && t.dims.every((d, i) => d === 1 || d === n.outShape[n.outShape.length - t.dims.length + i]);
  if (v.length !== 1 && v.length !== rows && !fits) return `the offset of node '${node.name}' has ${v.length} values for ${rows} outputs`;
  const at = v.length === 1 || v.length === rows ? null : broadcastMap(t.dims, n.outShape);
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) out[i] = sign * v[at ? at[i] : v.length === 1 ? 0 : i];
  // beta·C may round: only exact factors are accepted (±1, powers of two)
  for (let i = 0; i < rows; i++) if (out[i] / sign !== v[at ? at[i] : v.length === 1 ? 0 : i]) return `the offset of node '${node.name}' is not exact in float64`;
  return out;
}

/** The IR nodes with `offset` set on the linear nodes that come straight from an ONNX node (by its first output). */
export function withOffsets(model: OnnxModel, nodes: readonly IrNode[]): IrNode[] {
  const byOutput = new Map<string, OnnxNode>();
  const constants = new Map<string, OnnxNode>();
  for (const m of model.nodes) {
    if (m.outputs[0] !== undefined && !byOutput.has(m.outputs[0])) byOutput.set(m.outputs[0], m);
    if (m.opType === 'Constant' && m.outputs[0] !== undefined && !constants.has(m.outputs[0])) constants.set(m.outputs[0], m);
  }
  return nodes.map((n) => {
    if (n.kind !== 'linear') return n;
    const onnxNode = byOutput.get(n.output);
    if (!onnxNode) return n;
    const offset = offsetOf(model, constants, onnxNode, n);
    return offset === undefined ? n : { ...n, offset };
  });
}
