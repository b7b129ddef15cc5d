import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelRunner, randomTensor } from '../../src/backend/runner.js';
import { decodeModel } from '../../src/onnx/read-model.js';
import { encodeForRuntime, encodeForRuntimeFeeding, encodeGraph } from '../../src/onnx/writer.js';

test('large float initializers become fed graph inputs: smaller bytes, the same outputs, small and float16 ones stay inlined', async () => {
  const w = randomTensor([600, 500], 1); // 1.2 MB of float32
  const b = randomTensor([500], 2);
  const h = { dtype: 'float16' as const, dims: [500], data: Float32Array.from({ length: 500 }, (_, i) => (i % 7) - 3) };
  const model = decodeModel(encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 600] }], outputs: [{ name: 'y', dims: [1, 500] }],
    nodes: [
      { opType: 'Gemm', inputs: ['x', 'w', 'b'], outputs: ['g'] },
      { opType: 'Relu', inputs: ['g'], outputs: ['r'] },
      { opType: 'Cast', inputs: ['h'], outputs: ['hf'], attrs: { to: { i: 1 } } },
      { opType: 'Mul', inputs: ['r', 'hf'], outputs: ['y'] },
    ],
    initializers: [['w', w], ['b', b], ['h', h]],
  }), 'feed.onnx');
  const inlined = encodeForRuntime(model, ['g']);
  const fed = encodeForRuntimeFeeding(model, ['g'], 1 << 20);
  assert.deepEqual(Object.keys(fed.feeds), ['w']);
  assert.ok(inlined.length > 600 * 500 * 4 && fed.bytes.length < 10_000, `${inlined.length} → ${fed.bytes.length} bytes`);
  const x = randomTensor([1, 600], 3);
  const run = async (bytes: Uint8Array, feeds: Record<string, unknown>) => {
    const r = await ModelRunner.create(bytes, { device: 'cpu' }, 'feed test');
    try { return await r.run({ ...(feeds as Record<string, never>), x }, ['y', 'g']); } finally { await r.release(); }
  };
  const a = await run(inlined, {});
  const c = await run(fed.bytes, fed.feeds);
  for (const name of ['y', 'g']) {
    const p = a.get(name)!.data as Float32Array, q = c.get(name)!.data as Float32Array;
    let scale = 0, diff = 0;
    for (let i = 0; i < p.length; i++) { scale = Math.max(scale, Math.abs(p[i])); diff = Math.max(diff, Math.abs(p[i] - q[i])); }
    assert.ok(scale > 1 && diff <= 1e-5 * scale, `${name}: max difference ${diff} at scale ${scale}`);
  }
  // the Mul by the float16 constant really happened (it is not all zeros or ones)
  assert.ok((a.get('y')!.data as Float32Array).some((v) => v < 0));
});

test('a tensor that is a view into a larger buffer is written with its own bytes only', () => {
  const whole = Float32Array.from({ length: 40 }, (_, i) => i + 0.5);
  const w = { dtype: 'float32' as const, dims: [3, 4], data: whole.subarray(5, 17) };
  const model = decodeModel(encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 3] }], outputs: [{ name: 'y', dims: [1, 4] }],
    nodes: [{ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    initializers: [['w', w]],
  }), 'view.onnx');
  assert.deepEqual(Array.from(model.initializers.get('w')!.data as Float32Array), Array.from(whole.subarray(5, 17)));
});
