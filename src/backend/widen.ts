import { toFloat64, type Tensor } from '../ir/tensor.js';
import type { OnnxModel } from '../onnx/read-model.js';
import { encodeGraph, type AttrSpec, type NodeSpec } from '../onnx/writer.js';

/** The float64 form of a whole model, for the backend's `model({ precision: 'float64' })` (the exact witness). */

const ATTRS: Record<string, Record<string, 'i' | 'f' | 'ints'>> = {
  MatMul: {}, Add: {}, Sub: {}, Mul: {}, Div: {}, Neg: {}, Relu: {}, Identity: {}, Dropout: {},
  Gemm: { alpha: 'f', beta: 'f', transA: 'i', transB: 'i' }, Flatten: { axis: 'i' },
  Reshape: { allowzero: 'i' }, Transpose: { perm: 'ints' }, Squeeze: { axes: 'ints' }, Unsqueeze: { axes: 'ints' },
};

const widen = (t: Tensor): Tensor => (t.dtype === 'float32' || t.dtype === 'float16' ? { dtype: 'float64', dims: t.dims, data: toFloat64(t) } : t);

/**
 * The original model with every float32 weight widened (exactly) to float64 and float64 input and output: the same
 * real function, evaluated by onnxruntime with float64 rounding. Only plain dense models (ops in ATTRS) are rebuilt;
 * otherwise returns why not.
 */
export function float64Model(model: OnnxModel, inputName: string, inputShape: readonly number[], outputName: string): Uint8Array | string {
  const nodes: NodeSpec[] = [];
  const inits: [string, Tensor][] = [...model.initializers].map(([k, t]) => [k, widen(t)]);
  for (const n of model.nodes) {
    if (n.domain !== '' && n.domain !== 'ai.onnx') return `node '${n.name}' is in domain ${n.domain}`;
    if (n.opType === 'Constant') {
      const t = n.attributes.tensor('value');
      if (!t) return `Constant node '${n.name}' has no tensor value`;
      inits.push([n.outputs[0], widen(t)]);
      continue;
    }
    if (n.opType === 'LeakyRelu') {
      // onnxruntime has no float64 LeakyRelu: relu(x) + α·(x − relu(x)), the same function
      const alpha = n.attributes.float('alpha', 0.01), [x] = n.inputs, y = n.outputs[0];
      inits.push([`${y}::alpha`, { dtype: 'float64', dims: [], data: Float64Array.of(Math.fround(alpha)) }]);
      nodes.push(
        { opType: 'Relu', inputs: [x], outputs: [`${y}::pos`], name: `${n.name}::pos` },
        { opType: 'Sub', inputs: [x, `${y}::pos`], outputs: [`${y}::neg`], name: `${n.name}::neg` },
        { opType: 'Mul', inputs: [`${y}::neg`, `${y}::alpha`], outputs: [`${y}::scaled`], name: `${n.name}::scaled` },
        { opType: 'Add', inputs: [`${y}::pos`, `${y}::scaled`], outputs: [y], name: n.name },
      );
      continue;
    }
    const spec = ATTRS[n.opType];
    if (!spec) return `op ${n.opType} (node '${n.name}') is not rebuilt in float64`;
    const attrs: Record<string, AttrSpec> = {};
    for (const name of n.attributes.names()) {
      const kind = spec[name];
      if (!kind) return `attribute ${name} of node '${n.name}' (${n.opType}) is not rebuilt in float64`;
      attrs[name] = kind === 'i' ? { i: n.attributes.int(name, 0) } : kind === 'f' ? { f: n.attributes.float(name, 0) } : { ints: n.attributes.ints(name, [])! };
    }
    nodes.push({ opType: n.opType === 'Dropout' ? 'Identity' : n.opType, inputs: n.opType === 'Dropout' ? [n.inputs[0]] : [...n.inputs], outputs: n.opType === 'Dropout' ? [n.outputs[0]] : [...n.outputs], name: n.name, attrs: n.opType === 'Dropout' ? {} : attrs });
  }
  const others = model.inputs.filter((i) => i.name !== inputName && !model.initializers.has(i.name));
  if (others.length) return `the model has other inputs (${others.map((o) => o.name).join(', ')})`;
  return encodeGraph({ opset: model.opsets.get('') ?? 13, inputs: [{ name: inputName, dtype: 'float64', dims: [...inputShape] }], outputs: [{ name: outputName, dtype: 'float64' }], nodes, initializers: inits, irVersion: Math.max(7, model.irVersion) });
}
