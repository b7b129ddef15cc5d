import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chainGraphs } from '../../../src/backend/graphs.js';
import { emitAdjoint, emitForward } from '../../../src/backend/emit.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import type { LinearNode } from '../../../src/ir/types.js';
import { createOrtGram, createOrtGramPair, createOrtOperator } from '../../../src/backend/operators.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph, feedInitializers } from '../../../src/onnx/writer.js';
import { analyze } from '../../../src/index.js';

const CPU = { device: 'cpu' as const };

/** Conv (cin → cout, 3×3, given stride, pad 1) → per-channel scale, on an n×n input. */
function convRegion(cin: number, cout: number, stride: number, n: number, seed: number): LinearRegion {
  const rng = new Random(seed);
  const weight = { dtype: 'float32' as const, dims: [cout, cin, 3, 3], data: Float32Array.from({ length: cout * cin * 9 }, () => rng.normal()) };
  const factor = { dtype: 'float32' as const, dims: [cout, 1, 1], data: Float32Array.from({ length: cout }, () => 0.5 + rng.next()) };
  const m = Math.floor((n + 2 - 3) / stride) + 1;
  const conv: LinearNode = { kind: 'linear', prim: { op: 'conv', weight, group: 1, strides: [stride, stride], pads: [1, 1, 1, 1], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, cin, n, n]], output: 'h', outShape: [1, cout, m, m] };
  const scale: LinearNode = { kind: 'linear', prim: { op: 'scale', factor }, name: 'b', opType: 'BatchNormalization', inputs: ['h'], inShapes: [[1, cout, m, m]], output: 'y', outShape: [1, cout, m, m] };
  return { id: 'r', input: 'x', inShape: [1, cin, n, n], output: 'y', outShape: [1, cout, m, m], nodes: [conv, scale] };
}

function close(a: Float64Array, b: Float64Array, what: string): void {
  assert.equal(a.length, b.length);
  let err = 0, size = 0;
  for (let i = 0; i < a.length; i++) { err = Math.max(err, Math.abs(a[i] - b[i])); size = Math.max(size, Math.abs(b[i])); }
  assert.ok(err <= 1e-6 * size, `${what}: max error ${err} against max ${size}`);
}

test('one chained session computes AᵀA v as the two sessions do, and stores a shared weight once', async () => {
  const region = convRegion(3, 5, 1, 8, 1);
  const [fwd, adj] = [emitForward(region), emitAdjoint(region)];
  const chained = chainGraphs(fwd, adj);
  const count = (g: typeof fwd) => [...(g.initializers instanceof Map ? g.initializers.values() : g.initializers ?? [])].length;
  assert.ok(count(chained) < count(fwd) + count(adj), 'the conv weight is stored once');
  const gram = await createOrtGram(encodeGraph(chained), region.inShape, CPU, region.id);
  const op = await createOrtOperator({ forward: encodeGraph(fwd), adjoint: encodeGraph(adj), inDims: region.inShape, outDims: region.outShape, name: region.id }, CPU);
  try {
    const v = new Random(3).unitVector(gram.n);
    const expected = await op.adjoint(await op.apply(v));
    close(await gram.apply(v), expected, 'apply');
    const out = new Float64Array(gram.n).fill(Number.NaN);
    await gram.applyInto(v, out);
    close(out, expected, 'applyInto');
    close(await gram.half(v), await op.apply(v), 'half');
  } finally {
    await gram.dispose();
    await op.dispose();
  }
});

test('a wide operator chains adjoint then forward: A Aᵀ on the output space, Aᵀ on request', async () => {
  const region = convRegion(4, 2, 2, 10, 2);
  const [fwd, adj] = [emitForward(region), emitAdjoint(region)];
  const gram = await createOrtGram(encodeGraph(chainGraphs(adj, fwd)), region.outShape, CPU, region.id);
  const op = await createOrtOperator({ forward: encodeGraph(fwd), adjoint: encodeGraph(adj), inDims: region.inShape, outDims: region.outShape, name: region.id }, CPU);
  try {
    assert.equal(gram.n, op.outSize);
    const y = new Random(4).unitVector(gram.n);
    close(await gram.apply(y), await op.apply(await op.adjoint(y)), 'A Aᵀ y');
    close(await gram.half(y), await op.adjoint(y), 'Aᵀ y');
  } finally {
    await gram.dispose();
    await op.dispose();
  }
});

test('two sessions in turn (for very large weights) give the products of the chained session', async () => {
  const region = convRegion(4, 2, 2, 10, 5);
  const [fwd, adj] = [emitForward(region), emitAdjoint(region)];
  const chained = await createOrtGram(encodeGraph(chainGraphs(adj, fwd)), region.outShape, CPU, region.id);
  const pair = await createOrtGramPair(
    { model: () => encodeGraph(adj), input: 'y', output: 'x', dims: region.outShape },
    { model: () => encodeGraph(fwd), input: 'x', output: 'y', dims: region.inShape },
    CPU, region.id);
  try {
    assert.equal(pair.n, chained.n);
    const y = new Random(6).unitVector(pair.n);
    const out = new Float64Array(pair.n);
    await pair.applyInto(y, out);
    close(out, await chained.apply(y), 'A Aᵀ y');
    close(await pair.half(y), await chained.half(y), 'Aᵀ y');
  } finally {
    await pair.dispose();
    await chained.dispose();
  }
});

test('weights fed with every run instead of baked in give the same AᵀA, and analyze() bounds a 16 MiB Gemm that way', async () => {
  // a scaled permutation: σ_max = 3 exactly, and a 2048×2048 float32 weight is exactly 2^24 bytes
  const n = 2048;
  const w = new Float32Array(n * n);
  for (let i = 0; i < n; i++) w[i * n + ((i * 7 + 3) % n)] = 3 * (1 - i / (2 * n));
  const weight = { dtype: 'float32' as const, dims: [n, n], data: w };
  const node: LinearNode = { kind: 'linear', prim: { op: 'matmul', weight, side: 'right' }, name: 'g', opType: 'MatMul', inputs: ['x'], inShapes: [[1, n]], output: 'y', outShape: [1, n] };
  const region: LinearRegion = { id: 'r', input: 'x', inShape: [1, n], output: 'y', outShape: [1, n], nodes: [node] };
  const chained = chainGraphs(emitForward(region), emitAdjoint(region));
  const fed = feedInitializers(chained, 2 ** 24);
  assert.equal(Object.keys(fed.feeds).length, 2, 'W and Wᵀ are both fed');
  assert.ok(encodeGraph(fed.spec).length < 10_000);
  const baked = await createOrtGram(encodeGraph(chained), region.inShape, CPU, 'baked');
  const light = await createOrtGram(encodeGraph(fed.spec), region.inShape, CPU, 'fed', fed.feeds);
  try {
    const v = new Random(5).unitVector(n);
    close(await light.apply(v), await baked.apply(v), 'fed against baked');
  } finally {
    await baked.dispose();
    await light.dispose();
  }
  const bytes = encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, n] }], outputs: [{ name: 'y', dims: [1, n] }], nodes: [{ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }], initializers: [['w', weight]] });
  const report = await analyze({ bytes, name: 'big-gemm.onnx' }, { device: 'cpu', certify: 'off', method: 'autolip', lowerPairs: 0 });
  const upper = report.global.upper!.value;
  assert.ok(upper >= 3 && upper <= 3 * 1.06, `upper ${upper}`);
});
