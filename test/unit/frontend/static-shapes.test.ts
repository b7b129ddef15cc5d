/**
 * The build's one-off run (src/frontend/build.ts) takes the shapes of dynamic values from onnxruntime's inference
 * where they are static and fetches only the constants: the IR must have the shapes the model really computes, even
 * when the file's value_info states them wrongly, and the same as when every value is fetched (symbolic input dims).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildIr } from '../../../src/frontend/build.js';
import { mergeLinear } from '../../../src/ir/merge.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { onnx } from '../../../src/onnx/proto.js';
import { encodeGraph } from '../../../src/onnx/writer.js';
import { Random } from '../../../src/linalg/random.js';

/** Conv(2→3, 3×3, stride 2) → Relu → Reshape to [1, -1] (shape from a Shape op: computed, not static) → MatMul → output. */
function model(batch: number | string): Uint8Array {
  const rng = new Random(5);
  const t = (dims: number[]) => ({ dtype: 'float32' as const, dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.normal()) });
  return encodeGraph({
    opset: 13,
    inputs: [{ name: 'x', dims: [batch, 2, 9, 9] }],
    outputs: [{ name: 'y' }],
    initializers: [['w', t([3, 2, 3, 3])], ['m', t([48, 5])], ['zero', { dtype: 'int64', dims: [1], data: new BigInt64Array([0n]) }], ['minus', { dtype: 'int64', dims: [1], data: new BigInt64Array([-1n]) }]],
    nodes: [
      { opType: 'Conv', inputs: ['x', 'w'], outputs: ['c'], attrs: { strides: { ints: [2, 2] } } },
      { opType: 'Relu', inputs: ['c'], outputs: ['r'] },
      { opType: 'Shape', inputs: ['r'], outputs: ['s'] },
      { opType: 'Gather', inputs: ['s', 'zero'], outputs: ['b'], attrs: { axis: { i: 0 } } },
      { opType: 'Concat', inputs: ['b', 'minus'], outputs: ['shape'], attrs: { axis: { i: 0 } } },
      { opType: 'Reshape', inputs: ['r', 'shape'], outputs: ['f'] },
      { opType: 'MatMul', inputs: ['f', 'm'], outputs: ['y'] },
    ],
  });
}

const shapes = (ir: Awaited<ReturnType<typeof buildIr>>['ir']) => ir.nodes.map((n) => `${n.opType}:${n.inShapes.map((s) => s.join('x')).join(',')}→${n.outShape.join('x')}`);

test('static shapes from onnxruntime: the IR has the computed shapes even where value_info states others', async () => {
  const decoded = decodeModel(model(1), 'static.onnx');
  const g = (decoded.source as any).graph;
  // wrong declarations for the conv output and the reshaped value
  g.valueInfo = [
    onnx.ValueInfoProto.create({ name: 'c', type: { tensorType: { elemType: 1, shape: { dim: [1, 3, 9, 9].map((d) => ({ dimValue: d })) } } } }),
    onnx.ValueInfoProto.create({ name: 'f', type: { tensorType: { elemType: 1, shape: { dim: [1, 7].map((d) => ({ dimValue: d })) } } } }),
  ];
  const built = await buildIr(decoded, { seed: 0, runtime: { device: 'cpu' } });
  assert.deepEqual(shapes(built.ir), ['Conv:1x2x9x9→1x3x4x4', 'Relu:1x3x4x4→1x3x4x4', 'Reshape:1x3x4x4→1x48', 'MatMul:1x48→1x5']);
  assert.deepEqual(built.outputShape, [1, 5]);
  // the merged operators chain with matching sizes
  for (const b of mergeLinear(built.ir)) if (b.kind === 'operator') assert.ok(b.region.inShape.length > 0 && b.region.outShape.length > 0);
});

test('static shapes from onnxruntime: the same IR as a symbolic batch, whose values are all fetched', async () => {
  const fixed = await buildIr(decodeModel(model(1), 'fixed.onnx'), { seed: 0, runtime: { device: 'cpu' } });
  const symbolic = await buildIr(decodeModel(model('N'), 'symbolic.onnx'), { seed: 0, runtime: { device: 'cpu' }, inputShape: [1, 2, 9, 9] });
  assert.deepEqual(shapes(fixed.ir), shapes(symbolic.ir));
  assert.deepEqual(fixed.ir.nodes.map((n) => n.kind), symbolic.ir.nodes.map((n) => n.kind));
});
