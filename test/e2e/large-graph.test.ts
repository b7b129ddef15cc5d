import assert from 'node:assert/strict';
import { test } from 'node:test';
import { analyze } from '../../src/index.js';
import { float32Tensor, type Tensor } from '../../src/ir/tensor.js';
import { encodeGraph, type NodeSpec } from '../../src/onnx/writer.js';

/**
 * Issue 14, item 3: graph passes must be linear in the node count. Before, merging regions, the topological order,
 * scale folding and the emitted Reshape chains were quadratic (5,000 Identity nodes: 20 s; 50,000 or 10,000
 * Gemm+Relu layers: still running after 590 s). These models are generated here; the analysis must finish within the
 * test's timeout (generous: the CI machine is shared) and give the analytic constant.
 */
const TIMEOUT = 300_000;

test('a chain of 100,000 Identity nodes is one operator of norm exactly 1 (certified)', { timeout: TIMEOUT }, async () => {
  const n = 100_000;
  const nodes: NodeSpec[] = [];
  for (let i = 0; i < n; i++) nodes.push({ opType: 'Identity', name: `id${i}`, inputs: [i ? `v${i - 1}` : 'x'], outputs: [i === n - 1 ? 'y' : `v${i}`] });
  const bytes = encodeGraph({ opset: 17, inputs: [{ name: 'x', dims: [1, 3] }], outputs: [{ name: 'y', dims: [1, 3] }], nodes });
  const r = await analyze({ bytes, name: 'identity-100k.onnx' }, { device: 'cpu', method: 'autolip', lowerPairs: 0 });
  assert.equal(r.global.status, 'bounded');
  assert.equal(r.global.upper!.kind, 'certified');
  // L = 1 exactly; the composition adds its rounding slack only
  assert.ok(r.global.upper!.value >= 1 && r.global.upper!.value < 1 + 1e-9, `upper ${r.global.upper!.value}`);
  const ops = r.layers.filter((l) => l.kind === 'operator');
  assert.equal(ops.length, 1);
  assert.equal(ops[0].nodes.length, n);
});

test('10,000 Gemm(s·I)+Relu layers: the ℓ∞ AutoLip bound is Π s (analytic), one operator per layer', { timeout: TIMEOUT }, async () => {
  const layers = 10_000;
  // scales 1.0001, 0.9999 and 1.0002 in turn: the product (≈ e^0.67) is neither 1 nor far from it
  const scales = Array.from({ length: layers }, (_, i) => [1.0001, 0.9999, 1.0002][i % 3]);
  const nodes: NodeSpec[] = [];
  const inits: [string, Tensor][] = [];
  for (let i = 0; i < layers; i++) {
    const s = scales[i];
    inits.push([`W${i}`, float32Tensor([s, 0, 0, 0, s, 0, 0, 0, s], [3, 3])]);
    nodes.push({ opType: 'Gemm', name: `gemm${i}`, inputs: [i ? `r${i - 1}` : 'x', `W${i}`], outputs: [`g${i}`] });
    nodes.push({ opType: 'Relu', name: `relu${i}`, inputs: [`g${i}`], outputs: [i === layers - 1 ? 'y' : `r${i}`] });
  }
  const bytes = encodeGraph({ opset: 17, inputs: [{ name: 'x', dims: [1, 3] }], outputs: [{ name: 'y', dims: [1, 3] }], nodes, initializers: inits });
  const r = await analyze({ bytes, name: 'gemm-relu-10k.onnx' }, { device: 'cpu', method: 'autolip', norm: 'inf', lowerPairs: 0 });
  // the weights as stored (float32), multiplied in float64: ‖diag(s)‖∞ = s and Relu's slope is at most 1
  const exact = scales.reduce((p, s) => p * Math.fround(s), 1);
  assert.equal(r.global.status, 'bounded');
  assert.equal(r.global.upper!.kind, 'certified');
  assert.ok(r.global.upper!.value >= exact * (1 - 1e-12) && r.global.upper!.value <= exact * (1 + 1e-9), `upper ${r.global.upper!.value} vs Π s = ${exact}`);
  assert.equal(r.layers.filter((l) => l.kind === 'operator').length, layers);
});

test('a chain of 10,000 Exp nodes is unbounded, with every node given as a reason, in order', { timeout: TIMEOUT }, async () => {
  const n = 10_000;
  const nodes: NodeSpec[] = [];
  for (let i = 0; i < n; i++) nodes.push({ opType: 'Exp', name: `exp${i}`, inputs: [i ? `v${i - 1}` : 'x'], outputs: [i === n - 1 ? 'y' : `v${i}`] });
  const bytes = encodeGraph({ opset: 17, inputs: [{ name: 'x', dims: [1, 2] }], outputs: [{ name: 'y', dims: [1, 2] }], nodes });
  // the composition once copied every upstream reason at every node (4,000 nodes: 52 s of it)
  const r = await analyze({ bytes, name: 'exp-10k.onnx' }, { device: 'cpu', method: 'autolip', lowerPairs: 0 });
  assert.equal(r.global.status, 'unbounded');
  assert.equal(r.global.upper, null);
  assert.deepEqual(r.global.reasons.map((x) => x.node), nodes.map((m) => m.name));
});
