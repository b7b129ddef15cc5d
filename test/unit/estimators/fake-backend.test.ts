/**
 * Estimators handed a fake OperatorBackend (issue 15): dense float64 JS matrices of the layers, known independently of
 * the IR, stand in for onnxruntime. The estimators' numbers must match an exact float64 SVD (ml-matrix), and a
 * counting fake shows they ask the backend for what they need and never open a session themselves.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resetRuntimeStats, runtimeStats } from '../../../src/backend/runtime.js';
import { cpSegmentBound, productLanczos } from '../../../src/estimators/cp.js';
import { measureRegion, type NormSettings, type OperatorNorm } from '../../../src/estimators/operator-norm.js';
import { seqlipSegmentBound } from '../../../src/estimators/seqlip.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import type { GramOperator, LinearOperator, OperatorBackend } from '../../../src/ir/operator.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { lanczosTop } from '../../../src/linalg/lanczos.js';
import { kwFactor, kwStopSteps } from '../../../src/linalg/probabilistic.js';
import { Random } from '../../../src/linalg/random.js';
import { denseMul, sigmaMax } from '../../helpers/dense.js';
import { ACTS, matmul, mlpModel, pipeline, randomDense, settings as base, witness, type Dense } from '../../helpers/mlp.js';

/** Calls a fake backend received, by method. */
interface Calls { operator: number; gram: number; denseMatrix: number; model: number; products: number }

/**
 * A fake backend: a region's matrix is the product of the test's own layer matrices W_k (row-major float64, rows =
 * outputs) for the Gemm nodes 'gemm<k>' it chains, in order; products are exact float64 loops.
 */
function fakeBackend(layers: readonly Dense[]): OperatorBackend & { calls: Calls } {
  const calls: Calls = { operator: 0, gram: 0, denseMatrix: 0, model: 0, products: 0 };
  const matrixOf = (region: LinearRegion): Float64Array => {
    let m: Float64Array | null = null;
    let cols = 0;
    for (const n of region.nodes) {
      const k = /^gemm(\d+)$/.exec(n.name);
      assert.ok(k && n.kind === 'linear', `the fake knows Gemm nodes only, not ${n.opType} '${n.name}'`);
      const l = layers[Number(k[1])];
      if (m === null) { m = Float64Array.from(l.w); cols = l.cols; } else m = matmul(l.w, l.rows, l.cols, m, cols);
    }
    assert.equal(m!.length, sizeOf(region.outShape) * sizeOf(region.inShape));
    return m!;
  };
  const mul = (m: Float64Array, rows: number, cols: number, v: Float64Array, transpose: boolean) => {
    calls.products++;
    return denseMul(m, rows, cols, v, transpose);
  };
  return {
    calls,
    parallel: false,
    async operator(region): Promise<LinearOperator> {
      calls.operator++;
      const m = matrixOf(region), rows = sizeOf(region.outShape), cols = sizeOf(region.inShape);
      return { inDims: region.inShape, outDims: region.outShape, inSize: cols, outSize: rows, apply: async (x) => mul(m, rows, cols, x, false), adjoint: async (y) => mul(m, rows, cols, y, true), dispose: async () => {} };
    },
    async gram(region): Promise<GramOperator & { wide: boolean }> {
      calls.gram++;
      const m = matrixOf(region), rows = sizeOf(region.outShape), cols = sizeOf(region.inShape);
      const wide = rows < cols;
      const half = (v: Float64Array) => mul(m, rows, cols, v, wide);
      const apply = async (v: Float64Array) => mul(m, rows, cols, half(v), !wide);
      return { n: wide ? rows : cols, wide, apply, applyInto: async (v, out) => out.set(await apply(v)), half: async (v) => half(v), dispose: async () => {} };
    },
    async denseMatrix(region) {
      calls.denseMatrix++;
      return matrixOf(region);
    },
    async model() {
      calls.model++;
      throw new Error('the fake evaluates no model');
    },
  };
}

async function setup(widths: number[], seed: number) {
  const layers = randomDense(widths, new Random(seed));
  const { segments, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const regions = blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  assert.equal(regions.length, layers.length);
  return { layers, segments, regions };
}

test('measureRegion on a fake dense backend: Lanczos estimate = exact σ_max, bounds valid and within tol, no session opened', async () => {
  // 48→40 (wide: AAᵀ on the 40 side), 40→56 (tall), 56→24 (wide)
  const { layers, regions } = await setup([48, 40, 56, 24], 5);
  const fake = fakeBackend(layers);
  for (const certify of ['auto', 'off', 'strict'] as const) {
    const s: NormSettings = { ...base, certify, backend: fake };
    resetRuntimeStats();
    for (const [i, r] of regions.entries()) {
      const l = layers[i];
      const sigma = sigmaMax(l.w, l.rows, l.cols);
      const m = await measureRegion(r, s, i);
      // exact float64 products: the Ritz value converges to σ² (Lanczos stops when it moved ≤ 0.1·tol, KW ≤ 1 + tol)
      assert.ok(m.estimate !== null && m.estimate <= sigma * (1 + 1e-12) && m.estimate >= sigma * (1 - 1e-6), `${certify} ${r.id}: estimate ${m.estimate} vs σ ${sigma}`);
      assert.ok(m.upper.value >= sigma * (1 - 1e-12), `${certify} ${r.id}: upper ${m.upper.value} below σ ${sigma}`);
      // KW stops at a factor ≤ 1 + tol; the float32 rounding margin (for onnxruntime's kernels) adds a little
      assert.ok(m.upper.value <= sigma * (1 + base.tol) * (1 + 1e-3), `${certify} ${r.id}: upper ${m.upper.value} looser than (1 + tol)·σ`);
      if (certify === 'strict') assert.equal(m.upper.kind, 'certified');
      // the dense certificate (float64 matrix from the backend, exact SVD certificate) is within rounding of σ
      if (certify !== 'off') {
        const dense = m.candidates.find((c) => c.method.endsWith('(dense region)'));
        if (dense) assert.ok(dense.value >= sigma * (1 - 1e-12) && dense.value <= sigma * (1 + 1e-6), `${r.id}: ${dense.method} ${dense.value} vs σ ${sigma}`);
      }
      // the direction is a top right singular vector: ‖W d‖ = σ‖d‖
      const d = m.direction!;
      const wd = matmul(l.w, l.rows, l.cols, d, 1);
      assert.ok(Math.abs(Math.hypot(...wd) / Math.hypot(...d) - sigma) <= 1e-6 * sigma);
    }
    assert.equal(runtimeStats().sessions, 0, 'the estimator opened an onnxruntime session');
  }
  // one Gram map per measurement, no operator pair and no model: what measureRegion needs and nothing else
  assert.equal(fake.calls.gram, 3 * regions.length);
  assert.equal(fake.calls.operator, 0);
  assert.equal(fake.calls.model, 0);
  assert.ok(fake.calls.products > 0);
});

/** CP (ALGORITHMS.md §5) for ReLU (c = r = ½) from exact float64 norms of the partial products W_j⋯W_i. */
function cpExact(layers: readonly Dense[]): number {
  const prod = (i: number, j: number) => {
    let m: Float64Array = Float64Array.from(layers[i].w);
    for (let k = i + 1; k <= j; k++) m = matmul(layers[k].w, layers[k].rows, layers[k].cols, m, layers[i].cols);
    return sigmaMax(m, layers[j].rows, layers[i].cols);
  };
  const L: number[] = [];
  for (let j = 0; j < layers.length; j++) {
    let v = 0.5 ** j * prod(0, j);
    for (let i = 0; i < j; i++) v += 0.5 ** (j - i - 1) * 0.5 * prod(i + 1, j) * L[i];
    L.push(v);
  }
  return L[layers.length - 1];
}

test('cpSegmentBound on a fake dense backend: the recursion of exact SVD norms, a valid bound, no session opened', async () => {
  const { layers, segments, regions } = await setup([10, 14, 12, 6], 9);
  assert.equal(segments.length, 1);
  const fake = fakeBackend(layers);
  const s: NormSettings = { ...base, backend: fake };
  resetRuntimeStats();
  const known = new Map<string, OperatorNorm>();
  for (const [i, r] of regions.entries()) known.set(r.id, await measureRegion(r, s, i));
  const cp = await cpSegmentBound(segments[0], s, { known });
  const exact = cpExact(layers);
  // the estimates are converged Ritz values of exact products: the recursion on them is the exact CP value
  assert.ok(cp.estimate !== null && Math.abs(cp.estimate - exact) <= 1e-6 * exact, `CP estimate ${cp.estimate} vs exact ${exact}`);
  assert.ok(cp.upper.value >= exact * (1 - 1e-12) && cp.upper.value <= exact * (1 + base.tol), `CP bound ${cp.upper.value} vs exact ${exact}`);
  // a real bound: above the largest ‖J(x)‖ seen at random points, below AutoLip's product of norms
  const lower = witness(layers, ACTS.relu, '2', new Random(1));
  const autolip = layers.reduce((a, l) => a * sigmaMax(l.w, l.rows, l.cols), 1);
  assert.ok(lower <= cp.upper.value && cp.upper.value <= autolip * (1 + base.tol), `${lower} ≤ ${cp.upper.value} ≤ ${autolip}`);
  assert.equal(runtimeStats().sessions, 0, 'CP opened an onnxruntime session');
  assert.equal(fake.calls.model, 0);
});

test('seqlipSegmentBound on a fake dense backend: certified, at least the true constant, dense matrices from the backend only', async () => {
  const { layers, segments } = await setup([6, 8, 5], 3);
  const fake = fakeBackend(layers);
  resetRuntimeStats();
  const sq = await seqlipSegmentBound(segments[0], { ...base, backend: fake }, { k: 8 });
  assert.ok(sq.certified !== null, sq.notes.join(' '));
  // one hidden ReLU layer of 8 units: the brute force over all 2^8 patterns is the exact constant's sup
  let exact = 0;
  for (let mask = 0; mask < 256; mask++) {
    const d = Float64Array.from({ length: 8 }, (_, i) => (mask >> i) & 1);
    const w1 = layers[0].w.map((v, idx) => v * d[Math.floor(idx / layers[0].cols)]);
    exact = Math.max(exact, sigmaMax(matmul(layers[1].w, layers[1].rows, layers[1].cols, w1, layers[0].cols), layers[1].rows, layers[0].cols));
  }
  assert.ok(sq.certified!.value >= exact * (1 - 1e-12), `SeqLip ${sq.certified!.value} below the exact constant ${exact}`);
  assert.ok(sq.greedy.value <= sq.certified!.value * (1 + 1e-9));
  assert.ok(fake.calls.denseMatrix >= 2, 'SeqLip formed its matrices through the backend');
  assert.equal(runtimeStats().sessions, 0, 'SeqLip opened an onnxruntime session');
});

/**
 * A Gram map on which Lanczos from `start` stops late: G = H·T·H, H the reflection swapping e₁ and the start, T
 * tridiagonal (α = 1, β = 0.3) up to step k₀ − 1 and a larger Toeplitz block (α = 1.4, β = 0.3) after it. Lanczos from
 * the start reproduces T, so θ jumps at step k₀ and has not converged there (it moves by more than 0.1·tol·θ).
 */
function lateGram(start: Float64Array, k0: number): (x: Float64Array) => Float64Array {
  const n = start.length;
  const u = Float64Array.from(start);
  u[0] -= 1;
  const uu = u.reduce((a, x) => a + x * x, 0);
  const reflect = (x: Float64Array) => {
    const d = (2 * x.reduce((a, xi, i) => a + xi * u[i], 0)) / uu;
    return x.map((xi, i) => xi - d * u[i]);
  };
  const alpha = (i: number) => (i < k0 - 1 ? 1 : 1.4);
  const t = (x: Float64Array) => x.map((xi, i) => alpha(i) * xi + 0.3 * ((i > 0 ? x[i - 1] : 0) + (i < n - 1 ? x[i + 1] : 0)));
  return (x) => reflect(t(reflect(x)));
}

test('a run that stops after k0 (not converged there) takes KW\'s factor at k0, in measureRegion and productLanczos', async () => {
  const n = 300;
  const { regions } = await setup([n, n], 4);
  const k0 = kwStopSteps(n, base.delta, base.tol);
  let runs = 0;
  // fused runs that return no T_k (as float32 runs): the factor is KW's, so the step it is taken at shows
  const backend: OperatorBackend = {
    parallel: false,
    operator: async () => assert.fail('no operator pair needed'),
    denseMatrix: async () => assert.fail('no dense matrix under --certify off'),
    model: async () => assert.fail('no model'),
    async gram(): Promise<GramOperator & { wide: boolean }> {
      let g: ((x: Float64Array) => Float64Array) | null = null;
      const apply = async (v: Float64Array) => g!(v);
      return {
        n, wide: false, apply, applyInto: async (v, out) => out.set(await apply(v)), half: apply, dispose: async () => {},
        async lanczos(o) {
          runs++;
          g = lateGram(o.start, k0);
          const res = await lanczosTop({ n, apply }, { start: o.start, maxSteps: o.maxSteps, stop: o.stop });
          return { ...res, tridiagonal: undefined };
        },
      };
    },
  };
  const s: NormSettings = { ...base, certify: 'off', backend };
  const m = await measureRegion(regions[0], s, 0);
  assert.ok(m.iterations > k0, `the construction should stop after k0 = ${k0}, not at ${m.iterations}`);
  assert.deepEqual(m.factor, { factor: kwFactor(n, k0, base.delta), method: 'kw' });
  assert.ok(m.upper.kind === 'probabilistic' && m.upper.method === `lanczos-kw(k=${m.iterations})`, m.upper.method);
  const p = await productLanczos(regions[0], s, 0, [{ eps: 0, total: 1 }]);
  assert.equal(p.iterations, m.iterations);
  assert.deepEqual(p.factor, { factor: kwFactor(n, k0, base.delta), method: 'kw' });
  assert.equal(runs, 2);
});
