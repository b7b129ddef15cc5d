/**
 * npx tsx bench/conv-batch.ts: what one 3×3 convolution and its adjoint (Conv then ConvTranspose, C→C, padded, one
 * onnxruntime thread, weights baked in) cost per vector at batch 1 and batch 2, at ResNet-50's four stage sizes (issue 15
 * item 4: whether two Combettes–Pesquet products that share their middle convolution would be cheaper as one batched
 * run). Prints ms per run, ms per vector and the flop rate (2 flop per multiply-add). Timings only.
 */
import * as ort from 'onnxruntime-node';
import { encodeGraph } from '../src/onnx/writer.js';
import { Random } from '../src/linalg/random.js';

const rng = new Random(1);
const rand = (n: number) => Float32Array.from({ length: n }, () => rng.next() - 0.5);
console.log('| C, H×W | batch | ms per run | ms per vector | GFLOP/s |');
console.log('|---|---|---|---|---|');
for (const [c, h] of [[64, 56], [128, 28], [256, 14], [512, 7]] as const) {
  const w = rand(c * c * 9);
  for (const b of [1, 2]) {
    const attrs = { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } };
    const bytes = encodeGraph({
      opset: 13,
      inputs: [{ name: 'x', dtype: 'float32', dims: [b, c, h, h] }],
      outputs: [{ name: 'z', dtype: 'float32', dims: [b, c, h, h] }],
      nodes: [{ opType: 'Conv', inputs: ['x', 'w'], outputs: ['y'], attrs }, { opType: 'ConvTranspose', inputs: ['y', 'w'], outputs: ['z'], attrs }],
      initializers: [['w', { dtype: 'float32', dims: [c, c, 3, 3], data: w }]],
    });
    const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
    const x = new ort.Tensor('float32', rand(b * c * h * h), [b, c, h, h]);
    for (let i = 0; i < 3; i++) await s.run({ x });
    const runs = 15;
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) await s.run({ x });
    const ms = (performance.now() - t0) / runs;
    console.log(`| ${c}, ${h}×${h} | ${b} | ${ms.toFixed(2)} | ${(ms / b).toFixed(2)} | ${((4 * c * c * 9 * h * h * b) / ms / 1e6).toFixed(1)} |`);
    await s.release();
  }
}
