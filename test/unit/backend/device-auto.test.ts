// --device auto (issue 15 item 5): the CPU unless a model is made of large products and CUDA is installed; CUDA's
// numerics pinned to float32 before its libraries start.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { analyze } from '../../../src/index.js';
import { AUTO_GPU_MIN_WORK, AUTO_GPU_PRODUCT_FLOP, autoRule, cudaInstalled, gpuWork, pinCudaNumerics, resolveAuto, type ProviderChoice } from '../../../src/backend/runtime.js';
import { CALL_FLOP } from '../../../src/linalg/work.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { pipeline, tensor } from '../../helpers/mlp.js';

const FIXTURES = new URL('../../../fixtures/', import.meta.url).pathname;

/** `layers` convolutions c→c (3×3, padded) on c×hw×hw, each followed by a Relu: one operator per convolution. */
function convStack(layers: number, c: number, hw: number): Uint8Array {
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  let x = 'x';
  for (let i = 0; i < layers; i++) {
    const dims = [c, c, 3, 3];
    inits.push([`w${i}`, tensor(dims, Float64Array.from({ length: sizeOf(dims) }, (_, k) => ((k * 7919 + i) % 13) / 130 - 0.05))]);
    nodes.push({ opType: 'Conv', inputs: [x, `w${i}`], outputs: [`c${i}`], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } });
    x = i === layers - 1 ? 'y' : `r${i}`;
    nodes.push({ opType: 'Relu', inputs: [`c${i}`], outputs: [x] });
  }
  return encodeGraph({ opset: 13, nodes, inputs: [{ name: 'x', dims: [1, c, hw, hw] }], outputs: [{ name: 'y', dims: [1, c, hw, hw] }], initializers: inits });
}

/** One c→c 3×3 convolution's product on hw×hw, as the cost model counts it (with its onnxruntime call). */
const convFlop = (c: number, hw: number) => 2 * c * hw * hw * c * 9 + CALL_FLOP;

test('gpuWork counts only products of AUTO_GPU_PRODUCT_FLOP or more, and the threshold falls between 8 and 9 ResNet-sized 3×3 layers', async () => {
  // 64 channels on 56×56: 231 Mflop a product, a ResNet-50 first-stage 3×3 convolution
  assert.ok(convFlop(64, 56) >= AUTO_GPU_PRODUCT_FLOP);
  const eight = await pipeline(convStack(8, 64, 56));
  assert.equal(eight.blocks.filter((b) => b.kind === 'operator').length, 8);
  assert.equal(gpuWork(eight.blocks), 8 * convFlop(64, 56));
  assert.ok(gpuWork(eight.blocks) < AUTO_GPU_MIN_WORK);
  const nine = await pipeline(convStack(9, 64, 56));
  assert.equal(gpuWork(nine.blocks), 9 * convFlop(64, 56));
  assert.ok(gpuWork(nine.blocks) >= AUTO_GPU_MIN_WORK);
  // 32 channels: 58 Mflop a product, under the per-product threshold: however many, none counts
  assert.ok(convFlop(32, 56) < AUTO_GPU_PRODUCT_FLOP);
  const small = await pipeline(convStack(40, 32, 56));
  assert.equal(gpuWork(small.blocks), 0);
});

test('autoRule: the CPU with the reason where CUDA is missing or the model is small, a CUDA try only for large products with CUDA installed', () => {
  const missing = autoRule(1e12, 'the CUDA provider of onnxruntime-node is not installed');
  assert.notEqual(missing, 'try-cuda');
  assert.equal((missing as ProviderChoice).provider, 'cpu');
  assert.match((missing as ProviderChoice).notice!, /^Using the CPU: the CUDA provider of onnxruntime-node is not installed\. For CUDA: install .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  const small = autoRule(AUTO_GPU_MIN_WORK * 0.999, null);
  assert.notEqual(small, 'try-cuda');
  assert.equal((small as ProviderChoice).provider, 'cpu');
  assert.match((small as ProviderChoice).notice!, /large products add up to 2\.00 Gflop a sweep, under the 2 Gflop .*--device cuda uses it anyway/);
  assert.equal((autoRule(0, null) as ProviderChoice).provider, 'cpu');
  assert.equal((autoRule(Number.NaN, null) as ProviderChoice).provider, 'cpu', 'no number is no reason to try a GPU');
  assert.equal(autoRule(AUTO_GPU_MIN_WORK, null), 'try-cuda');
});

test('resolveAuto on this machine: the CPU, never an error, whatever the work, where the CUDA provider is not installed', async (t) => {
  if (cudaInstalled()) return t.skip('the CUDA provider is installed here');
  for (const work of [0, AUTO_GPU_MIN_WORK, 1e15]) {
    const c = await resolveAuto(work);
    assert.equal(c.provider, 'cpu');
    assert.match(c.notice!, /CUDA provider of onnxruntime-node is not installed/);
  }
});

test('pinCudaNumerics switches TF32 off whatever was set, and keeps a cuBLAS workspace setting of the user', () => {
  const env: NodeJS.ProcessEnv = { NVIDIA_TF32_OVERRIDE: '1' };
  pinCudaNumerics(env);
  assert.deepEqual(env, { NVIDIA_TF32_OVERRIDE: '0', CUBLAS_WORKSPACE_CONFIG: ':4096:8' });
  const mine: NodeJS.ProcessEnv = { CUBLAS_WORKSPACE_CONFIG: ':16:8' };
  pinCudaNumerics(mine);
  assert.deepEqual(mine, { NVIDIA_TF32_OVERRIDE: '0', CUBLAS_WORKSPACE_CONFIG: ':16:8' });
});

/** A report without what may differ between two runs (timings, resources) or what differs by design (settings.device). */
function comparable(r: Awaited<ReturnType<typeof analyze>>): unknown {
  const { timings: _t, ...rest } = r as unknown as Record<string, unknown>;
  const settings = { ...(rest.settings as Record<string, unknown>), device: undefined };
  return JSON.parse(JSON.stringify({ ...rest, settings, layers: (rest.layers as Record<string, unknown>[]).map(({ ms: _ms, ...l }) => l) }));
}

test('auto on a small model is --device cpu exactly: the same report, the device said once, after the build (named devices before it)', async (t) => {
  if (cudaInstalled()) t.diagnostic('the CUDA provider is installed here: auto still keeps this small model on the CPU');
  const events: string[] = [];
  const common = { lowerBudget: 300, onProgress: (_d: number, _t: number, _w: string, phase: string) => { if (!events.includes(phase)) events.push(phase); } };
  const auto = await analyze(FIXTURES + 'demo.onnx', { ...common, device: 'auto', onDevice: (c) => events.push(`device:${c.provider}`) });
  assert.deepEqual(events.slice(0, 2), ['build', 'device:cpu']);
  assert.equal(events.filter((e) => e.startsWith('device:')).length, 1);
  events.length = 0;
  const cpu = await analyze(FIXTURES + 'demo.onnx', { ...common, device: 'cpu', onDevice: (c) => events.push(`device:${c.provider}`) });
  assert.deepEqual(events.slice(0, 2), ['device:cpu', 'build']);
  assert.equal(auto.settings.device, 'auto');
  assert.equal(auto.settings.provider, 'cpu');
  assert.equal(cpu.settings.provider, 'cpu');
  assert.deepEqual(comparable(auto), comparable(cpu));
});
