import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { createOrtOperator } from '../../../src/backend/operators.js';
import { dot, norm2, Random } from '../../../src/linalg/random.js';
import { denseSingularTriplets, topSingularTriplets, type MatrixFreeOperator, type SingularTriplets } from '../../../src/linalg/top-singular.js';
import { encodeGraph } from '../../../src/onnx/writer.js';

/** All singular values of a row-major matrix, largest first, from ml-matrix's SVD: the reference answer. */
function exactValues(a: Float64Array, rows: number, cols: number): number[] {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, a[i * cols + j]);
  return [...new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal].sort((x, y) => y - x);
}

function gaussian(rows: number, cols: number, rng: Random): Float64Array {
  return Float64Array.from({ length: rows * cols }, () => rng.normal());
}

/** Q·diag(σ)·Pᵀ with random orthonormal Q (rows×r), P (cols×r): a matrix with a prescribed spectrum. */
function withSpectrum(rows: number, cols: number, sigma: readonly number[], rng: Random): Float64Array {
  const orth = (n: number) => {
    const m = new Matrix(n, sigma.length);
    for (let i = 0; i < n; i++) for (let j = 0; j < sigma.length; j++) m.set(i, j, rng.normal());
    return new SingularValueDecomposition(m, { autoTranspose: true }).leftSingularVectors;
  };
  const q = orth(rows), p = orth(cols);
  const a = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    let s = 0;
    for (let t = 0; t < sigma.length; t++) s += q.get(i, t) * sigma[t] * p.get(j, t);
    a[i * cols + j] = s;
  }
  return a;
}

/** A plain float64 operator on a row-major matrix, counting its products. */
function plainOperator(a: Float64Array, rows: number, cols: number): MatrixFreeOperator & { calls: number } {
  const op = {
    inSize: cols,
    outSize: rows,
    calls: 0,
    async apply(x: Float64Array) {
      op.calls++;
      const y = new Float64Array(rows);
      for (let i = 0; i < rows; i++) { let s = 0; for (let j = 0; j < cols; j++) s += a[i * cols + j] * x[j]; y[i] = s; }
      return y;
    },
    async adjoint(y: Float64Array) {
      op.calls++;
      const x = new Float64Array(cols);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) x[j] += a[i * cols + j] * y[i];
      return x;
    },
  };
  return op;
}

/** max over triplets of ‖A·v − σu‖ and ‖Aᵀu − σv‖, and the largest deviation of UᵀU and VᵀV from the identity. */
async function quality(op: MatrixFreeOperator, t: SingularTriplets): Promise<{ residual: number; orthogonality: number }> {
  let residual = 0, orthogonality = 0;
  for (let i = 0; i < t.values.length; i++) {
    const av = await op.apply(t.right[i]), au = await op.adjoint(t.left[i]);
    residual = Math.max(residual, norm2(av.map((x, j) => x - t.values[i] * t.left[i][j])), norm2(au.map((x, j) => x - t.values[i] * t.right[i][j])));
    for (let j = 0; j < t.values.length; j++) {
      const target = i === j ? 1 : 0;
      orthogonality = Math.max(orthogonality, Math.abs(dot(t.left[i], t.left[j]) - target), Math.abs(dot(t.right[i], t.right[j]) - target));
    }
  }
  return { residual, orthogonality };
}

test('block Krylov: top-5 triplets of a 70×50 matrix with a known spectrum, σ_6 from below', async () => {
  const rng = new Random(1);
  const sigma = [10, 8, 7, 6.5, 6, 3, 2.9, 1, 0.5, 0.1];
  const a = withSpectrum(70, 50, sigma, rng);
  const op = plainOperator(a, 70, 50);
  const t = await topSingularTriplets(op, 5, { seed: 3, tol: 1e-8 });
  assert.equal(t.method, 'block-krylov');
  assert.ok(t.converged, `not converged after ${t.iterations} iterations`);
  assert.equal(t.values.length, 5);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(t.values[i] - sigma[i]) <= 1e-8 * sigma[0], `σ_${i + 1}: ${t.values[i]} vs ${sigma[i]}`);
  // a Ritz value is at most the true one; with the gap 6 → 3 it has converged too
  assert.ok(t.next <= sigma[5] * (1 + 1e-12) && t.next >= sigma[5] * (1 - 1e-6), `σ_6 estimate ${t.next} vs ${sigma[5]}`);
  const q = await quality(op, t);
  assert.ok(q.residual <= 1e-7 * sigma[0], `residual ${q.residual}`);
  assert.ok(q.orthogonality <= 1e-12, `orthogonality ${q.orthogonality}`);
  assert.ok(t.residual <= 1e-8 * sigma[0]);
});

test('block Krylov on a flat Gaussian spectrum: values match exact SVD within the tolerance; same seed, same answer', async () => {
  const rng = new Random(2);
  const a = gaussian(60, 40, rng);
  const exact = exactValues(a, 60, 40);
  const run = () => topSingularTriplets(plainOperator(a, 60, 40), 8, { seed: 5, tol: 1e-6, maxIterations: 400 });
  const t = await run();
  assert.ok(t.converged);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(t.values[i] - exact[i]) <= 1e-5 * exact[0], `σ_${i + 1}: ${t.values[i]} vs ${exact[i]}`);
  assert.ok(t.next <= exact[8] * (1 + 1e-12) && t.next >= exact[8] * (1 - 1e-3), `σ_9 estimate ${t.next} vs ${exact[8]}`);
  assert.deepEqual((await run()).values, t.values);
  const other = await topSingularTriplets(plainOperator(a, 60, 40), 8, { seed: 6, tol: 1e-6, maxIterations: 400 });
  assert.notDeepEqual(other.values, t.values, 'another seed starts elsewhere');
});

test('k at or above min(rows, cols): the whole spectrum, σ_{k+1} = 0; a rank-2 operator keeps its zeros', async () => {
  const rng = new Random(4);
  const a = gaussian(6, 9, rng);
  const t = await topSingularTriplets(plainOperator(a, 6, 9), 20, { seed: 1, tol: 1e-10 });
  const exact = exactValues(a, 6, 9);
  assert.equal(t.values.length, 6);
  assert.equal(t.next, 0);
  t.values.forEach((v, i) => assert.ok(Math.abs(v - exact[i]) <= 1e-10 * exact[0], `σ_${i + 1}: ${v} vs ${exact[i]}`));
  const low = withSpectrum(12, 10, [3, 1], rng);
  const r = await topSingularTriplets(plainOperator(low, 12, 10), 4, { seed: 1, tol: 1e-10 });
  assert.ok(Math.abs(r.values[0] - 3) <= 1e-9 && Math.abs(r.values[1] - 1) <= 1e-9, `${r.values}`);
  assert.ok(r.values[2] <= 1e-9 && r.next <= 1e-9, `rank 2: ${r.values}, next ${r.next}`);
  const q = await quality(plainOperator(low, 12, 10), r);
  assert.ok(q.orthogonality <= 1e-10, 'the basis stays orthonormal when the operator has a null space');
});

test('an onnxruntime MatMul operator (float32): triplets agree with the exact SVD to float32 accuracy', async () => {
  const rng = new Random(8);
  const [rows, cols] = [24, 30];
  const w = Float32Array.from(gaussian(rows, cols, rng));
  const wt = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) wt[j * rows + i] = w[i * cols + j];
  // y = x·Wᵀ ([1, cols] → [1, rows]) and its adjoint x = y·W
  const forward = encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, cols] }], outputs: [{ name: 'y', dims: [1, rows] }], nodes: [{ opType: 'MatMul', inputs: ['x', 'wt'], outputs: ['y'] }], initializers: [['wt', { dtype: 'float32', dims: [cols, rows], data: wt }]] });
  const adjoint = encodeGraph({ opset: 13, inputs: [{ name: 'y', dims: [1, rows] }], outputs: [{ name: 'x', dims: [1, cols] }], nodes: [{ opType: 'MatMul', inputs: ['y', 'w'], outputs: ['x'] }], initializers: [['w', { dtype: 'float32', dims: [rows, cols], data: w }]] });
  const op = await createOrtOperator({ forward, adjoint, inDims: [1, cols], outDims: [1, rows], name: 'gemm' }, { device: 'cpu' });
  try {
    const t = await topSingularTriplets(op, 6, { seed: 9 });
    const exact = exactValues(Float64Array.from(w), rows, cols);
    assert.ok(t.converged);
    for (let i = 0; i < 6; i++) assert.ok(Math.abs(t.values[i] - exact[i]) <= 1e-4 * exact[0], `σ_${i + 1}: ${t.values[i]} vs ${exact[i]}`);
    assert.ok(Math.abs(t.next - exact[6]) <= 1e-3 * exact[0], `σ_7 estimate ${t.next} vs ${exact[6]}`);
    assert.ok((await quality(op, t)).residual <= 1e-3 * exact[0]);
  } finally {
    await op.dispose();
  }
});

test('dense route: full SVD of tall and wide matrices, truncation with σ_{k+1}, reconstruction', () => {
  const rng = new Random(12);
  for (const [rows, cols] of [[7, 4], [3, 8], [5, 5]]) {
    const a = gaussian(rows, cols, rng);
    const full = denseSingularTriplets(a, rows, cols);
    const exact = exactValues(a, rows, cols);
    assert.equal(full.values.length, Math.min(rows, cols));
    assert.equal(full.next, 0);
    full.values.forEach((v, i) => assert.ok(Math.abs(v - exact[i]) <= 1e-12 * exact[0]));
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      let s = 0;
      full.values.forEach((v, t) => { s += full.left[t][i] * v * full.right[t][j]; });
      assert.ok(Math.abs(s - a[i * cols + j]) <= 1e-12 * exact[0], `${rows}×${cols} entry (${i}, ${j})`);
    }
    const top = denseSingularTriplets(a, rows, cols, 2);
    assert.deepEqual(top.values, full.values.slice(0, 2));
    assert.equal(top.next, full.values[2]);
    assert.equal(top.left[0].length, rows);
    assert.equal(top.right[0].length, cols);
  }
});

test('topSingularTriplets rejects a non-positive k', async () => {
  await assert.rejects(topSingularTriplets(plainOperator(new Float64Array(4), 2, 2), 0, { seed: 0 }), /positive integer/);
});
