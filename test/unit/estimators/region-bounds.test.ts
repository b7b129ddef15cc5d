import assert from 'node:assert/strict';
import { test } from 'node:test';
import { convCertificate, foldedTail, foldsAny, foldScales, polyphase, regionBound } from '../../../src/estimators/region-bounds.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import type { Tensor } from '../../../src/ir/tensor.js';
import type { LinearNode } from '../../../src/ir/types.js';
import { convSpectralNormBound } from '../../../src/linalg/conv-spectrum.js';
import { BudgetExceededError, denseInfNorm } from '../../../src/linalg/dense.js';
import { Random } from '../../../src/linalg/random.js';
import { convMatrix, sigmaMax } from '../../helpers/dense.js';

const cases: [number, number, number, number, number, number][] = [
  // cin, cout, k, stride, pad, n
  [2, 3, 3, 2, 1, 7], [3, 4, 4, 2, 1, 8], [2, 2, 5, 2, 2, 9], [1, 3, 3, 3, 0, 10], [3, 2, 2, 2, 0, 6], [2, 4, 1, 2, 0, 5], [4, 4, 3, 2, 1, 5],
];

test('strided conv certificate (circular or polyphase) ≥ exact σ_max of the dense conv, and tight', () => {
  const rng = new Random(5);
  let worst = 0;
  for (const [cin, cout, k, s, pad, n] of cases) {
    const dims = [cout, cin, k, k];
    const w = Float64Array.from({ length: cout * cin * k * k }, () => rng.normal());
    const { m, rows, cols } = convMatrix(w, dims, n, n, [pad, pad, pad, pad], s);
    const exact = sigmaMax(m, rows, cols);
    const b = convCertificate(w, dims, 1, [s, s], [1, 1], [pad, pad, pad, pad], [n, n], 2.8e10);
    assert.ok(b.value >= exact * (1 - 1e-12), `k${k} s${s} p${pad} n${n}: ${b.value} < exact ${exact}`);
    worst = Math.max(worst, b.value / exact);
  }
  assert.ok(worst < 1.6, `polyphase bound too loose: ${worst}× exact`);
});

test('a strided conv\'s certificate is the smaller of the plain and polyphase bounds, each as computed in full (the plain one is stopped early only where it loses)', () => {
  const rng = new Random(5);
  const methods = new Set<string>();
  for (const [cin, cout, k, s, pad, n] of cases) {
    const dims = [cout, cin, k, k];
    const w = Float64Array.from({ length: cout * cin * k * k }, () => rng.normal());
    const b = convCertificate(w, dims, 1, [s, s], [1, 1], [pad, pad, pad, pad], [n, n], 2.8e10);
    const plain = convSpectralNormBound({ weight: w, weightDims: dims, group: 1, dilations: [1, 1], inputSpatial: [n, n] });
    const pp = polyphase(w, dims, [s, s]);
    const poly = convSpectralNormBound({ weight: pp.weight, weightDims: pp.dims, group: 1, dilations: [1, 1], inputSpatial: [n, n].map((m) => Math.ceil((m + 2 * pad) / s)) });
    const expect = poly.value < plain.value ? { value: poly.value, method: 'circular-fft-polyphase' } : { value: plain.value, method: plain.method };
    assert.deepEqual(b, expect, `k${k} s${s} p${pad} n${n}`);
    methods.add(b.method);
  }
  assert.ok(methods.has('circular-fft-polyphase'), [...methods].join(', '));
});

test('polyphase is much tighter than the stride-1 circular bound on a stride-2 conv', () => {
  const rng = new Random(9);
  const dims = [4, 4, 4, 4];
  const w = Float64Array.from({ length: 256 }, () => rng.normal());
  const b = convCertificate(w, dims, 1, [2, 2], [1, 1], [1, 1, 1, 1], [16, 16], 2.8e10);
  assert.equal(b.method, 'circular-fft-polyphase');
});

test('Conv → per-channel scale folds into the conv weights (certified bound of the product, not product of bounds)', () => {
  const rng = new Random(2);
  const w = { dtype: 'float64' as const, dims: [2, 1, 3, 3], data: Float64Array.from({ length: 18 }, () => rng.normal()) };
  const f = { dtype: 'float64' as const, dims: [2, 1, 1], data: Float64Array.of(3, 0.1) };
  const conv: LinearNode = { kind: 'linear', prim: { op: 'conv', weight: w, group: 1, strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, 1, 6, 6]], output: 'h', outShape: [1, 2, 6, 6] };
  const scale: LinearNode = { kind: 'linear', prim: { op: 'scale', factor: f }, name: 'b', opType: 'BatchNormalization', inputs: ['h'], inShapes: [[1, 2, 6, 6]], output: 'y', outShape: [1, 2, 6, 6] };
  const folded = foldScales([conv, scale]);
  assert.equal(folded.length, 1);
  const fw = Float64Array.from(w.data, (v, i) => v * (i < 9 ? 3 : 0.1));
  const { m, rows, cols } = convMatrix(fw, [2, 1, 3, 3], 6, 6, [1, 1, 1, 1], 1);
  const exact = sigmaMax(m, rows, cols);
  const region: LinearRegion = { id: 'r', input: 'x', inShape: [1, 1, 6, 6], output: 'y', outShape: [1, 2, 6, 6], nodes: [conv, scale] };
  const b = regionBound(region, '2');
  assert.ok(b.value >= exact && b.value <= exact * 1.5, `${b.value} vs exact ${exact}`);
  const unfolded = sigmaMax(convMatrix(w.data, [2, 1, 3, 3], 6, 6, [1, 1, 1, 1], 1).m, 72, 36) * 3;
  assert.ok(b.value < unfolded, 'folding beats ‖conv‖·max|scale|');
});

test('Gemm weights read in place (float32): row and column sums as denseInfNorm gives them, NaN refused', () => {
  const rng = new Random(3);
  const [rows, cols] = [7, 11];
  const data = Float32Array.from({ length: rows * cols }, () => rng.normal());
  const node = (w: Float32Array): LinearNode => ({ kind: 'linear', prim: { op: 'matmul', weight: { dtype: 'float32', dims: [rows, cols], data: w }, side: 'right' }, name: 'g', opType: 'Gemm', inputs: ['x'], inShapes: [[1, rows]], output: 'y', outShape: [1, cols] });
  const region = (w: Float32Array): LinearRegion => ({ id: 'r', input: 'x', inShape: [1, rows], output: 'y', outShape: [1, cols], nodes: [node(w)] });
  // x·W: its ℓ∞ row sums are W's column sums
  const w64 = Float64Array.from(data);
  const wt = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) wt[j * rows + i] = w64[i * cols + j];
  const rowSum = denseInfNorm(wt, cols, rows), colSum = denseInfNorm(w64, rows, cols);
  assert.equal(regionBound(region(data), 'inf').value, rowSum);
  const schur = regionBound(region(data), '2', 0);
  assert.equal(schur.method, 'schur');
  assert.equal(schur.value, Math.sqrt(rowSum * colSum));
  assert.equal(schur.absNorm, Math.sqrt(rowSum * colSum));
  assert.ok(regionBound(region(data), '2').value >= sigmaMax(w64, rows, cols) * (1 - 1e-12));
  const bad = Float32Array.from(data);
  bad[17] = Number.NaN;
  assert.throws(() => regionBound(region(bad), '2', 0), /non-finite value NaN at index 17/);
});

test('folding a scale into float32 conv weights equals folding their float64 copy', () => {
  const rng = new Random(4);
  const w32 = Float32Array.from({ length: 2 * 3 * 9 }, () => rng.normal());
  const f = { dtype: 'float64' as const, dims: [2, 1, 1], data: Float64Array.of(3, 0.1) };
  const fold = (weight: Tensor) => {
    const conv: LinearNode = { kind: 'linear', prim: { op: 'conv', weight, group: 1, strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, 3, 5, 5]], output: 'h', outShape: [1, 2, 5, 5] };
    const scale: LinearNode = { kind: 'linear', prim: { op: 'scale', factor: f }, name: 'b', opType: 'BatchNormalization', inputs: ['h'], inShapes: [[1, 2, 5, 5]], output: 'y', outShape: [1, 2, 5, 5] };
    const [merged] = foldScales([conv, scale]);
    return (merged.prim as { weight: { data: Float64Array } }).weight.data;
  };
  const a = fold({ dtype: 'float32', dims: [2, 3, 3, 3], data: w32 });
  const b = fold({ dtype: 'float64', dims: [2, 3, 3, 3], data: Float64Array.from(w32) });
  assert.deepEqual(a, b);
  assert.equal(a[0], w32[0] * 3);
  assert.equal(a[27], w32[27] * 0.1);
});

test('one conv shared by regions with different scalings, norms and budgets: each region\'s bound is what fresh copies of its nodes give (the per-prim cache keys on all of them)', () => {
  const rng = new Random(6);
  const w = { dtype: 'float32' as const, dims: [3, 2, 3, 3], data: Float32Array.from({ length: 54 }, () => rng.normal()) };
  const conv: LinearNode = { kind: 'linear', prim: { op: 'conv', weight: w, group: 1, strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, 2, 8, 8]], output: 'h', outShape: [1, 3, 4, 4] };
  const scale = (factor: number[], name: string, input: string, shape: number[], output: string): LinearNode => ({
    kind: 'linear', prim: { op: 'scale', factor: { dtype: 'float64', dims: [shape[1], 1, 1], data: Float64Array.from(factor) } }, name, opType: 'Mul', inputs: [input], inShapes: [shape], output, outShape: shape,
  });
  const after1 = scale([3, 0.1, 2], 'b1', 'h', [1, 3, 4, 4], 'y');
  const after2 = scale([0.5, 4, 1], 'b2', 'h', [1, 3, 4, 4], 'y');
  const before = scale([2, 0.25], 'a', 'u', [1, 2, 8, 8], 'x');
  const region = (nodes: LinearNode[]): LinearRegion => ({ id: 'r', input: nodes[0].inputs[0], inShape: nodes[0].inShapes[0], output: 'y', outShape: nodes[nodes.length - 1].outShape, nodes });
  // a deep copy has fresh prim objects: nothing cached applies to it
  const fresh = (r: LinearRegion): LinearRegion => structuredClone(r);
  const regions = [region([conv, after1]), region([conv, after2]), region([before, conv, after1]), region([before, conv, after2]), region([{ ...conv, output: 'y' }])];
  const seen = new Set<number>();
  for (const norm of ['2', 'inf'] as const) for (const budget of [0, 2.8e10]) for (const r of regions) {
    const cached = regionBound(r, norm, budget);
    assert.deepEqual(cached, regionBound(fresh(r), norm, budget), `${r.nodes.map((n) => n.name).join('→')} ${norm} ${budget}`);
    // asked again: the same numbers
    assert.deepEqual(regionBound(r, norm, budget), cached);
    seen.add(cached.value);
  }
  // the scalings, norms and budgets do give different bounds, so a key that missed one would show above
  assert.ok(seen.size >= 12, `${seen.size} distinct bounds`);
  // scale → conv → scale folds both scalings, input side first, as foldScales builds it
  const [merged] = foldScales([before, conv, after1]);
  const mw = (merged.prim as { weight: { data: Float64Array } }).weight.data;
  assert.equal(mw[0], (w.data[0] * 2) * 3);
  assert.equal(mw[9 + 4 + 18], (w.data[9 + 4 + 18] * 0.25) * 0.1);
  // the fold decisions without folded weights agree with foldScales
  assert.equal(foldsAny([before, conv, after1]), true);
  assert.equal(foldsAny([conv, { ...before, inputs: ['y'], inShapes: [[1, 3, 4, 4]] }]), false);
  assert.equal(foldedTail([before, conv]).outShape, foldScales([before, conv]).at(-1)!.outShape);
  assert.equal(foldsAny([foldedTail([before, conv]), after1]), foldScales([foldScales([before, conv]).at(-1)!, after1]).length < 2);
});

test('a strided conv whose plain circular bound is past the budget keeps its polyphase certificate (not Schur)', () => {
  const rng = new Random(12);
  const [cin, cout, k, s, pad, n] = [1, 2, 4, 2, 1, 32];
  const dims = [cout, cin, k, k];
  const w = Float64Array.from({ length: cout * cin * k * k }, () => rng.normal());
  const spec = { weight: w, weightDims: dims, group: 1, dilations: [1, 1], inputSpatial: [n, n] };
  const pp = polyphase(w, dims, [s, s]);
  const polySpec = { weight: pp.weight, weightDims: pp.dims, group: 1, dilations: [1, 1], inputSpatial: [n, n].map((m) => Math.ceil((m + 2 * pad) / s)) };
  // the plain bound's up-front prediction, read off its refusal; a budget just under it
  let plainFlop = 0;
  try { convSpectralNormBound(spec, { budgetFlop: 1 }); } catch (e) { plainFlop = (e as BudgetExceededError).estimatedFlop; }
  const budget = plainFlop - 1;
  assert.throws(() => convSpectralNormBound(spec, { budgetFlop: budget }), BudgetExceededError);
  const poly = convSpectralNormBound(polySpec, { budgetFlop: budget });
  const b = convCertificate(w, dims, 1, [s, s], [1, 1], [pad, pad, pad, pad], [n, n], budget);
  assert.deepEqual(b, { value: poly.value, method: 'circular-fft-polyphase' });
  const { m, rows, cols } = convMatrix(w, dims, n, n, [pad, pad, pad, pad], s);
  assert.ok(b.value >= sigmaMax(m, rows, cols) * (1 - 1e-12));
});

test('certificates memoised across budgets: a bound whose certificates finished serves larger budgets only, one cut short its own budget only (each as computed afresh)', () => {
  const rng = new Random(31);
  const [cin, cout, k, n] = [3, 4, 3, 12];
  const data = Float64Array.from({ length: cout * cin * k * k }, () => rng.normal());
  // a fresh prim (a new weight object) misses the memo: the reference for each budget
  const region = (w: Float64Array): LinearRegion => ({
    id: 'r', input: 'x', inShape: [1, cin, n, n], output: 'y', outShape: [1, cout, n, n],
    nodes: [{ kind: 'linear', prim: { op: 'conv', weight: { dtype: 'float64', dims: [cout, cin, k, k], data: w }, group: 1, strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1] }, name: 'c', opType: 'Conv', inputs: ['x'], inShapes: [[1, cin, n, n]], output: 'y', outShape: [1, cout, n, n] }],
  });
  const fresh = (budget: number) => regionBound(region(Float64Array.from(data)), '2', budget);
  let need = 0;
  try { convSpectralNormBound({ weight: data, weightDims: [cout, cin, k, k], group: 1, dilations: [1, 1], inputSpatial: [n, n] }, { budgetFlop: 1 }); } catch (e) { need = (e as BudgetExceededError).estimatedFlop; }
  assert.ok(need > 0);
  const [short, enough, more] = [need / 2, 2.8e10, 5.6e10];
  assert.equal(fresh(short).method, 'schur');
  assert.equal(fresh(enough).method, 'circular-fft');
  assert.ok(fresh(enough).value < fresh(short).value, 'the certificate is tighter than Schur here: the test tells them apart');
  // finished at `enough`: the same bound at `more`, and not at `short` (the certificate would not fit there)
  const a = region(Float64Array.from(data));
  assert.deepEqual(regionBound(a, '2', enough), fresh(enough));
  assert.deepEqual(regionBound(a, '2', more), fresh(more));
  assert.deepEqual(regionBound(a, '2', short), fresh(short));
  // cut short at `short`: never served to a larger budget
  const b = region(Float64Array.from(data));
  assert.deepEqual(regionBound(b, '2', short), fresh(short));
  assert.deepEqual(regionBound(b, '2', enough), fresh(enough));
});
