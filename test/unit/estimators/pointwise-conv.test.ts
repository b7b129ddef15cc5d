import assert from 'node:assert/strict';
import { test } from 'node:test';
import { denseGramKernel } from '../../../src/backend/dense-gram.js';
import { budgetBasis, measureRegion, pointwiseConvBound as boundWith } from '../../../src/estimators/operator-norm.js';
import { regionBound } from '../../../src/estimators/region-bounds.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import type { OperatorBackend } from '../../../src/ir/operator.js';
import type { LinearNode } from '../../../src/ir/types.js';
import { Random } from '../../../src/linalg/random.js';
import { convMatrix, sigmaMax } from '../../helpers/dense.js';

// as measureRegion calls it: with the region's ‖|A|‖ bound (and, in the CLI, onnxruntime's float64 Gram product)
const pointwiseConvBound = (region: LinearRegion, budget: number, gram?: ReturnType<typeof denseGramKernel>) => boundWith(region, budget, regionBound(region, '2', 0).absNorm, gram);

// a 1×1 conv (optionally followed by a per-channel scale, as inference BatchNormalization is read) on n×n pixels
function pointwise(rng: Random, co: number, ci: number, n: number, stride: number, pad: number, scale: Float64Array | null, group = 1): { region: LinearRegion; w: Float64Array } {
  const w = Float64Array.from({ length: co * (ci / group) }, () => rng.normal());
  const out = Math.floor((n + 2 * pad - 1) / stride) + 1;
  const conv: LinearNode = { kind: 'linear', prim: { op: 'conv', weight: { dtype: 'float64', dims: [co, ci / group, 1, 1], data: w }, group, strides: [stride, stride], pads: [pad, pad, pad, pad], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, ci, n, n]], output: scale ? 'h' : 'y', outShape: [1, co, out, out] };
  const nodes: LinearNode[] = [conv];
  if (scale) nodes.push({ kind: 'linear', prim: { op: 'scale', factor: { dtype: 'float64', dims: [co, 1, 1], data: scale } }, name: 'b', opType: 'BatchNormalization', inputs: ['h'], inShapes: [[1, co, out, out]], output: 'y', outShape: [1, co, out, out] });
  return { region: { id: 'r', input: 'x', inShape: [1, ci, n, n], output: 'y', outShape: [1, co, out, out], nodes }, w };
}

test('1×1 conv (with a folded per-channel scale): the dense certificate is ≥ the exact σ_max of the whole conv operator, and equal to it without pads', async () => {
  const rng = new Random(11);
  const gram = denseGramKernel({ device: 'cpu' });
  // the last is large enough (C_in²·C_out ≥ DENSE_GRAM_MIN_MACS) for the Gram product to run in onnxruntime
  for (const [co, ci, n, stride, pad] of [[4, 3, 5, 1, 0], [6, 4, 6, 2, 0], [3, 5, 4, 1, 1], [5, 2, 7, 2, 1], [8, 8, 3, 3, 0], [40, 64, 2, 2, 1], [300, 200, 1, 1, 0]] as const) {
    const scale = Float64Array.from({ length: co }, () => 0.1 + 3 * rng.next());
    const { region, w } = pointwise(rng, co, ci, n, stride, pad, scale);
    const folded = Float64Array.from(w, (v, i) => v * scale[Math.floor(i / ci)]);
    const { m, rows, cols } = convMatrix(folded, [co, ci, 1, 1], n, n, [pad, pad, pad, pad], stride);
    const exact = sigmaMax(m, rows, cols);
    const b = await pointwiseConvBound(region, 1e9, gram);
    assert.ok(b, 'a 1×1 conv region is recognised');
    const js = await pointwiseConvBound(region, 1e9);
    // its own sums for the margin (as measureRegion calls it) against regionBound's: the same bound to rounding
    const own = await boundWith(region, 1e9, undefined, gram);
    assert.ok(own && Math.abs(own.bound.value - b.bound.value) <= 4 * 2 ** -52 * b.bound.value, `${own?.bound.value} with its own margin sums against ${b.bound.value}`);
    assert.ok(js && Math.abs(js.bound.value - b.bound.value) <= 1e-12 * js.bound.value, `${b.bound.value} against the JavaScript Gram's ${js?.bound.value}`);
    assert.equal(b.bound.kind, 'certified');
    assert.ok(b.bound.value >= exact, `${b.bound.value} < exact ${exact} (${co}×${ci}, stride ${stride}, pad ${pad})`);
    if (pad === 0) assert.ok(b.bound.value <= exact * (1 + 1e-9), `${b.bound.value} vs exact ${exact}: not tight without pads`);
    assert.ok(Math.abs(b.estimate - exact) <= 1e-9 * exact || pad > 0);
  }
});

test('grouped 1×1 conv: the bound is the largest group’s σ_max', async () => {
  const rng = new Random(12);
  const { region, w } = pointwise(rng, 6, 4, 4, 1, 0, null, 2);
  // the groups act on disjoint channels: the operator is block diagonal, its norm the largest block's
  const groups = [0, 1].map((g) => sigmaMax(convMatrix(w.subarray(g * 6, (g + 1) * 6), [3, 2, 1, 1], 4, 4, [0, 0, 0, 0], 1).m, 3 * 16, 2 * 16));
  const b = (await pointwiseConvBound(region, 1e9))!;
  const exact = Math.max(...groups);
  assert.ok(b.bound.value >= exact && b.bound.value <= exact * (1 + 1e-9), `${b.bound.value} vs ${exact}`);
});

test('only 1×1 convs, and only within the certificate budget', async () => {
  const rng = new Random(13);
  const { region } = pointwise(rng, 4, 3, 5, 1, 0, null);
  const three = { ...region, nodes: [{ ...region.nodes[0], prim: { ...(region.nodes[0].prim as Extract<LinearNode['prim'], { op: 'conv' }>), weight: { dtype: 'float64' as const, dims: [4, 3, 3, 3], data: new Float64Array(108).fill(0.1) } } }] } as LinearRegion;
  assert.equal(await pointwiseConvBound(three, 1e9), null);
  assert.equal(await pointwiseConvBound(region, 10), null, 'over budget: left to Lanczos');
});

test('measureRegion bounds a 1×1 conv without any Lanczos product, and its budget basis is the run it replaced', async () => {
  const rng = new Random(14);
  const { region } = pointwise(rng, 8, 6, 6, 1, 0, Float64Array.from({ length: 8 }, () => 1 + rng.next()));
  const backend = { gram: async () => { throw new Error('no product may run'); }, operator: async () => { throw new Error('no product may run'); } } as unknown as OperatorBackend;
  const m = await measureRegion(region, { norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, maxIterations: 100, seed: 0, backend, certifyBudget: 2.8e9 }, 0);
  assert.equal(m.upper.kind, 'certified');
  assert.equal(m.iterations, 0);
  assert.ok(m.replaced && m.replaced.iterations >= 3 && m.replaced.work > m.work);
  assert.deepEqual(budgetBasis(m), m.replaced);
  assert.ok(m.estimate! <= m.upper.value);
});
