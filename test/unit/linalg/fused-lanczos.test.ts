/**
 * Fused Lanczos (src/backend/fused-lanczos.ts, docs/algorithms-fused-lanczos.md): K steps in one onnxruntime run
 * against the JS iteration (lanczosTop, one product a step) and the exact float64 top eigenvalue (ml-matrix), the
 * float32 rounding margin as the only allowance; bit-identical results with 1 and 2 intra-op threads.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { fusedLanczos, FusedLanczosSession, setFusedLanczos, withFusedLanczos, type FusedGramParts } from '../../../src/backend/fused-lanczos.js';
import { createOrtBackend } from '../../../src/backend/index.js';
import { measureRegion } from '../../../src/estimators/operator-norm.js';
import { chainGraphs } from '../../../src/backend/graphs.js';
import { createOrtGram } from '../../../src/backend/operators.js';
import type { RuntimeOptions } from '../../../src/backend/runtime.js';
import { roundingMargin } from '../../../src/estimators/operator-norm.js';
import type { GramOperator } from '../../../src/ir/operator.js';
import { lanczosTop } from '../../../src/linalg/lanczos.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph } from '../../../src/onnx/writer.js';
import { sigmaMax } from '../../helpers/dense.js';
import { convGramParts, denseGramParts } from '../../helpers/gram-parts.js';
import { ACTS, mlpModel, pipeline, randomDense, settings as base } from '../../helpers/mlp.js';

const cpu = (threads: number): RuntimeOptions => ({ device: 'cpu', threads });

/**
 * A float32 matrix W (n×m, row-major) of seeded Gaussian entries; `rows` > 0 keeps only that many nonzero rows, so
 * W Wᵀ v lies exactly (zeros add exactly) in their span and the Krylov space is invariant after rows + 1 steps.
 */
function weights(n: number, m: number, seed: number, rows = 0): Float32Array {
  const r = new Random(seed);
  const w = new Float32Array(n * m);
  for (let i = 0; i < (rows || n) * m; i++) w[i] = r.normal();
  return w;
}

/** x [1, n] ↦ x·W [1, m] and its adjoint y ↦ y·Wᵀ: the Gram map W Wᵀ on R^n. */
const denseParts = denseGramParts;

/** A 3×3 convolution c → o channels on h×h (pads 1) and its ConvTranspose adjoint, the weight baked in once. */
function convParts(c: number, o: number, h: number, seed: number): FusedGramParts {
  return convGramParts(weights(o, c * 9, seed), c, o, h);
}

/** The one-run-per-step Gram session of the same two graphs (what lanczosTop uses without the fused method). */
function plainGram(parts: FusedGramParts, runtime: RuntimeOptions): Promise<GramOperator> {
  return createOrtGram(encodeGraph(chainGraphs(parts.first, parts.second)), parts.dims, runtime, parts.name);
}

/** Exact top eigenpair of W Wᵀ in float64 (W's float32 entries widened), and ‖|W|‖₂. */
function exactTop(w: Float32Array, n: number, m: number): { lambda: number; vector: Float64Array; absNorm: number } {
  const W = new Matrix(n, m);
  const A = new Matrix(n, m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) { W.set(i, j, w[i * m + j]); A.set(i, j, Math.abs(w[i * m + j])); }
  const e = new EigenvalueDecomposition(W.mmul(W.transpose()), { assumeSymmetric: true });
  const values = e.realEigenvalues;
  let top = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[top]) top = i;
  const ea = new EigenvalueDecomposition(A.mmul(A.transpose()), { assumeSymmetric: true });
  return { lambda: values[top], vector: Float64Array.from(e.eigenvectorMatrix.getColumn(top)), absNorm: Math.sqrt(Math.max(...ea.realEigenvalues)) };
}

const gamma = (k: number) => (k * 2 ** -24) / (1 - k * 2 ** -24);
const cosine = (a: Float64Array, b: Float64Array) => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return Math.abs(ab) / Math.sqrt(aa * bb);
};

test('dense W Wᵀ: fused θ, the JS Lanczos θ and the exact top eigenvalue agree within the float32 rounding margin, never above λ_max + margin', async () => {
  for (const [n, m, seed] of [[48, 80, 1], [60, 35, 2]] as const) {
    const w = weights(n, m, seed);
    const parts = denseParts(w, n, m);
    const exact = exactTop(w, n, m);
    // each product's error as operator-norm.ts bounds it: the longest sum of the two products
    const margin = roundingMargin(gamma(Math.max(n, m) + 1), exact.absNorm);
    const start = new Random(seed + 10).unitVector(n);
    const steps = 30;
    const fused = await fusedLanczos(parts, cpu(1), { start, maxSteps: steps, stop: () => false, expectedSteps: steps });
    assert.ok(fused, 'the fused run reached its expected steps');
    const gram = await plainGram(parts, cpu(1));
    const js = await lanczosTop({ n, apply: (v) => gram.apply(v), applyInto: (v, o) => gram.applyInto(v, o) }, { start, maxSteps: steps, stop: () => false });
    await gram.dispose();
    assert.equal(fused.steps, steps);
    assert.equal(js.steps, steps);
    for (const theta of [fused.theta, js.theta]) {
      assert.ok(theta <= exact.lambda + margin, `θ ${theta} above λ_max ${exact.lambda} + margin ${margin}`);
      assert.ok(theta >= exact.lambda - margin, `θ ${theta} not converged to λ_max ${exact.lambda} (margin ${margin})`);
    }
    assert.ok(margin < 1e-4 * exact.lambda, `the margin ${margin} is small beside λ_max ${exact.lambda}: the test can fail`);
    // the same float32 products up to their kernels' summation order (pre-packed weights or not), and float64 sums in
    // another order: float32-level agreement, both inside the margin
    assert.ok(Math.abs(fused.theta - js.theta) <= 1e-6 * exact.lambda, `fused ${fused.theta} vs JS ${js.theta}`);
    assert.ok(cosine(fused.ritzVector, exact.vector) > 1 - 1e-6, `Ritz vector vs the exact eigenvector: cos ${cosine(fused.ritzVector, exact.vector)}`);
    let norm = 0;
    for (const x of fused.ritzVector) norm += x * x;
    assert.ok(Math.abs(norm - 1) < 1e-12);
    // history is θ_1..θ_K of the prefixes, nondecreasing (Cauchy interlacing)
    assert.equal(fused.history.length, steps);
    for (let k = 1; k < steps; k++) assert.ok(fused.history[k] >= fused.history[k - 1] * (1 - 1e-12));
  }
});

test('fused runs are bit-identical with 1 and 2 intra-op threads (dense, fed weights; convolution, baked weights)', async () => {
  const cases: [FusedGramParts, number][] = [[denseParts(weights(3000, 700, 3), 3000, 700), 12], [convParts(16, 32, 24, 4), 12]];
  for (const [parts, steps] of cases) {
    const n = parts.dims.reduce((a, b) => a * b, 1);
    const start = new Random(5).unitVector(n);
    const runs = [];
    for (const threads of [1, 2]) {
      const s = await FusedLanczosSession.create(parts, cpu(threads));
      runs.push(await s.run(start, steps));
      await s.release();
    }
    for (const key of ['alpha', 'beta', 'coef', 'ritz'] as const) {
      assert.ok(Buffer.from(runs[0][key].buffer).equals(Buffer.from(runs[1][key].buffer)), `${parts.name}: ${key} differs between 1 and 2 threads`);
    }
    assert.ok(runs[0].alpha.every(Number.isFinite) && runs[0].alpha[0] > 0);
  }
});

test('a fused run is deterministic and its prefix does not depend on K: the first k steps of a K-step run equal a k-step run', async () => {
  const parts = convParts(4, 8, 12, 6);
  const start = new Random(7).unitVector(4 * 144);
  const s = await FusedLanczosSession.create(parts, cpu(2));
  const long = await s.run(start, 15);
  const short = await s.run(start, 9);
  const again = await s.run(start, 15);
  await s.release();
  assert.deepEqual([...short.alpha], [...long.alpha.subarray(0, 9)]);
  assert.deepEqual([...short.beta], [...long.beta.subarray(0, 9)]);
  assert.deepEqual([...again.ritz], [...long.ritz]);
});

test('through lanczosTop: the stop rule, an invariant Krylov space and a run that needs more steps than expected', async () => {
  const n = 40, m = 50;
  const start = new Random(8).unitVector(n);
  const withFused = async (w: Float32Array) => {
    const parts = denseParts(w, n, m);
    const gram = withFusedLanczos(await plainGram(parts, cpu(1)), parts, cpu(1));
    const plain = await plainGram(parts, cpu(1));
    return { gram, plain };
  };
  const viaJs = (g: GramOperator) => ({ n, apply: (v: Float64Array) => g.apply(v), applyInto: (v: Float64Array, o: Float64Array) => g.applyInto(v, o) });
  const viaFused = (g: GramOperator) => ({ ...viaJs(g), lanczos: g.lanczos!.bind(g) });

  // the stop rule fires at step 5 of an expected 12: the run is repeated with 5 steps, so θ and the Ritz vector are those of 5
  const full = await withFused(weights(n, m, 9));
  const stop5 = (_t: number, k: number) => k >= 5;
  const f5 = await lanczosTop(viaFused(full.gram), { start, maxSteps: 30, stop: stop5, expectedSteps: 12 });
  const j5 = await lanczosTop(viaJs(full.plain), { start, maxSteps: 30, stop: stop5 });
  assert.equal(f5.steps, 5);
  assert.equal(j5.steps, 5);
  assert.ok(Math.abs(f5.theta - j5.theta) <= 1e-6 * j5.theta, `${f5.theta} vs ${j5.theta}`);
  assert.ok(cosine(f5.ritzVector, j5.ritzVector) > 1 - 1e-6, `cos ${cosine(f5.ritzVector, j5.ritzVector)}`);
  assert.deepEqual(f5.history.length, 5);
  assert.equal(f5.extraPasses, 5, 'fused runs count their second Gram–Schmidt pass on every step');

  // not stopped after the expected 6 steps: lanczosTop takes over one product a step, and gives the JS result
  const stop10 = (_t: number, k: number) => k >= 10;
  const f10 = await lanczosTop(viaFused(full.gram), { start, maxSteps: 30, stop: stop10, expectedSteps: 6 });
  const j10 = await lanczosTop(viaJs(full.plain), { start, maxSteps: 30, stop: stop10 });
  assert.equal(f10.steps, 10);
  assert.deepEqual(f10.history, j10.history);
  await full.gram.dispose();
  await full.plain.dispose();

  // two nonzero rows: the Krylov space is invariant after 3 steps, in both
  const low = await withFused(weights(n, m, 10, 2));
  const fi = await lanczosTop(viaFused(low.gram), { start, maxSteps: 30, stop: () => false, expectedSteps: 12 });
  const ji = await lanczosTop(viaJs(low.plain), { start, maxSteps: 30, stop: () => false });
  assert.equal(ji.invariant, true);
  assert.equal(fi.invariant, true);
  assert.equal(ji.steps, 3);
  assert.equal(fi.steps, ji.steps);
  assert.ok(Math.abs(fi.theta - ji.theta) <= 1e-6 * ji.theta, `${fi.theta} vs ${ji.theta}`);
  assert.ok(fi.ritzVector.every(Number.isFinite));
  await low.gram.dispose();
  await low.plain.dispose();

  // a zero operator: invariant at once; the fused method declines (T = 0 has no top eigenvector by squaring) and
  // lanczosTop gives the start vector as its Ritz vector
  const zero = await withFused(new Float32Array(n * m));
  const fz = await lanczosTop(viaFused(zero.gram), { start, maxSteps: 30, stop: () => false, expectedSteps: 12 });
  assert.equal(fz.theta, 0);
  assert.equal(fz.invariant, true);
  assert.equal(fz.steps, 1);
  assert.ok(cosine(fz.ritzVector, start) > 1 - 1e-12);
  assert.equal(await fusedLanczos(denseParts(new Float32Array(n * m), n, m), cpu(1), { start, maxSteps: 30, stop: () => false, expectedSteps: 12 }), null);
  await zero.gram.dispose();
  await zero.plain.dispose();
});

test('measureRegion through createOrtBackend with fused runs forced on: the KW steps in one run, bounds valid and equal to the one-run-per-step ones to float32 level', async () => {
  const layers = randomDense([48, 40, 56, 24], new Random(11));
  const { blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const regions = blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  const measure = async (mode: 'on' | 'off') => {
    setFusedLanczos(mode);
    try {
      const settings = { ...base, certify: 'off' as const, backend: createOrtBackend({ runtime: { device: 'cpu' } }) };
      const out = [];
      for (const [i, r] of regions.entries()) {
        const g = await settings.backend.gram(r);
        assert.equal(typeof g.lanczos, mode === 'on' ? 'function' : 'undefined', `${r.id}: fused method ${mode}`);
        await g.dispose();
        out.push(await measureRegion(r, settings, i));
      }
      return out;
    } finally {
      setFusedLanczos('auto');
    }
  };
  const [on, off] = [await measure('on'), await measure('off')];
  for (const [i, l] of layers.entries()) {
    const sigma = sigmaMax(l.w, l.rows, l.cols);
    assert.equal(on[i].upper.kind, 'probabilistic');
    assert.equal(on[i].iterations, off[i].iterations, `${regions[i].id}: the KW count in both`);
    assert.ok(on[i].upper.value >= sigma, `${regions[i].id}: upper ${on[i].upper.value} below σ ${sigma}`);
    assert.ok(on[i].upper.value <= sigma * (1 + base.tol) * (1 + 1e-3), `${regions[i].id}: upper ${on[i].upper.value} looser than (1 + tol)·σ`);
    assert.ok(Math.abs(on[i].upper.value - off[i].upper.value) <= 1e-6 * sigma, `${regions[i].id}: fused ${on[i].upper.value} vs ${off[i].upper.value}`);
    assert.ok(on[i].direction !== null && on[i].direction!.length === l.cols, 'the witness direction lives in the input space (AAᵀ: mapped back by half)');
  }
});
