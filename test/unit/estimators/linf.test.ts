import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { analyze } from '../../../src/index.js';
import { crossNormBound } from '../../../src/estimators/linf.js';
import { Random } from '../../../src/linalg/random.js';
import { ACTS, bruteForce, mlpModel, pipeline, randomDense, settings, witness } from '../../helpers/mlp.js';
import { sigmaMax } from '../../helpers/dense.js';

const FIXTURES = new URL('../../../fixtures/', import.meta.url).pathname;
const SHARED = new URL('../../../../shared/models/', import.meta.url).pathname;

test('√n_in·(ℓ2 AutoLip) bounds the ℓ∞ constant, √n_out·(ℓ∞ AutoLip) the ℓ2 one, on random MLPs (brute force between)', async () => {
  for (let seed = 0; seed < 6; seed++) {
    const rng = new Random(400 + seed);
    const widths = [3 + (seed % 3), 6, 4, 2 + (seed % 2)];
    const layers = randomDense(widths, rng);
    const { ir, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
    const inf = await crossNormBound(ir, blocks, { ...settings, norm: 'inf' }, 'inf');
    const l2 = await crossNormBound(ir, blocks, { ...settings, norm: '2' }, '2');
    assert.ok(inf && l2);
    // independent: the ℓ2 AutoLip product in float64, and the constants' witnessed lower bounds
    const product2 = layers.reduce((p, l) => p * sigmaMax(l.w, l.rows, l.cols), 1);
    assert.ok(inf.upper.value >= Math.sqrt(widths[0]) * product2 * (1 - 1e-6), `seed ${seed}: ${inf.upper.value} below √n·Π‖W‖ ${Math.sqrt(widths[0]) * product2}`);
    assert.ok(inf.upper.value <= Math.sqrt(widths[0]) * product2 * 1.1, `seed ${seed}: ${inf.upper.value} far above √n·Π‖W‖`);
    assert.ok(witness(layers, ACTS.relu, 'inf', rng) <= inf.upper.value, `seed ${seed}: ℓ∞ witness above √n_in·ℓ2`);
    assert.ok(bruteForce(layers, [0, 1], 'inf') <= Math.sqrt(widths[0]) * bruteForce(layers, [0, 1], '2') * (1 + 1e-12), 'the equivalence itself');
    assert.ok(witness(layers, ACTS.relu, '2', rng) <= l2.upper.value, `seed ${seed}: ℓ2 witness above √n_out·ℓ∞`);
    assert.equal(inf.factor, Math.sqrt(widths[0]) * (1 + 6 * 2 ** -53));
  }
});

test('the ℓ2 measurement is skipped when its work budget is too small', async () => {
  const { ir, blocks } = await pipeline(mlpModel(randomDense([4, 8, 2], new Random(1)), ACTS.relu));
  assert.equal(await crossNormBound(ir, blocks, { ...settings, norm: 'inf' }, 'inf', 10), null);
  assert.ok(await crossNormBound(ir, blocks, { ...settings, norm: '2' }, '2', 10), 'ℓ∞ row sums have no budget');
});

/** --norm inf reports ≤ √n_in × the ℓ2 AutoLip bound of a --norm 2 run (Lanczos starts differ between runs: 5 % slack, the --tol). */
async function checkModel(path: string): Promise<void> {
  // symbolic_dims.onnx declares [N, 3, H]
  const inputShape = path.endsWith('symbolic_dims.onnx') ? [1, 3, 8] : undefined;
  // cp: the cheapest method that adds the √n_in·ℓ2 bound (best would also enumerate regions and solve SDPs)
  const inf = await analyze(path, { norm: 'inf', method: 'cp', lowerPairs: 0, inputShape });
  if (inf.global.status !== 'bounded') return;
  const two = await analyze(path, { norm: '2', method: 'autolip', lowerPairs: 0, inputShape });
  const n = inf.input.shape.reduce((a, b) => a * b, 1);
  const entry = inf.global.methods.find((m) => m.method === 'sqrt(n_in)·autolip-l2');
  // absent only when the ℓ2 measurement would exceed its work budget (none of these models)
  assert.ok(entry?.upper, `${path}: no √n_in·ℓ2 entry in global.methods`);
  assert.ok(inf.global.upper!.value <= entry.upper.value, `${path}: ℓ∞ ${inf.global.upper!.value} above its own √n·ℓ2 ${entry.upper.value}`);
  if (two.global.upper) assert.ok(inf.global.upper!.value <= Math.sqrt(n) * two.global.upper!.value * 1.05, `${path}: ℓ∞ ${inf.global.upper!.value} above √${n}·ℓ2 ${two.global.upper!.value}`);
}

test('every bounded fixture: the ℓ∞ bound is never above √n_in·(ℓ2 bound)', async () => {
  for (const f of readdirSync(FIXTURES).filter((f) => f.endsWith('.onnx') && !f.startsWith('broken') && !f.startsWith('external'))) await checkModel(FIXTURES + f);
});

test('shared models: the ℓ∞ bound is never above √n_in·(ℓ2 bound)', { timeout: 600_000 }, async (t) => {
  if (!existsSync(SHARED)) { t.skip(`${SHARED} is absent: shared-model checks skipped`); return; }
  for (const f of ['acasxu_2_1', 'rpd_gcas', 'tll_n2_N16_1_0', 'marabou_tiny_taxinet', 'marabou_fc_sigmoids', 'vnn_test_tiny', 'sri_resnet_b', 'collins_rul_full_w20']) await checkModel(`${SHARED}${f}.onnx`);
});

test('--norm inf under best: √n_in × the ℓ2 best analysis\'s own bound (same seeds), the kind and failure count carried over', async () => {
  for (const f of ['demo', 'mlp_tanh', 'mlp_sigmoid']) {
    const path = `${FIXTURES}${f}.onnx`;
    const inf = await analyze(path, { norm: 'inf', lowerPairs: 0 });
    const two = await analyze(path, { norm: '2', lowerPairs: 0 });
    const n = inf.input.shape.reduce((a, b) => a * b, 1);
    const entry = inf.global.methods.find((m) => m.method === 'sqrt(n_in)·best-l2');
    assert.ok(entry?.upper && two.global.upper, `${f}: no √n_in·ℓ2 entry`);
    // independent of the code under test: √n rounded up and the product rounded up, from the --norm 2 report's number
    const scaled = Math.sqrt(n) * two.global.upper.value;
    assert.ok(entry.upper.value >= scaled && entry.upper.value <= scaled * (1 + 1e-14), `${f}: ${entry.upper.value} is not √${n}·${two.global.upper.value}`);
    assert.equal(entry.upper.kind, two.global.upper.kind === 'probabilistic' ? 'probabilistic' : 'certified');
    assert.ok(inf.global.upper!.value <= entry.upper.value);
    // it is tighter than every ℓ∞ composition on these models (the point of it)
    const own = inf.global.methods.filter((m) => m.method.startsWith('autolip')).map((m) => m.upper!.value);
    assert.ok(inf.global.upper!.value < Math.min(...own), `${f}: ${inf.global.upper!.value} not below the ℓ∞ compositions ${own}`);
    if (inf.global.upper!.method.startsWith('sqrt(n_in)·best-l2(')) assert.equal(inf.global.failureProbability, two.global.failureProbability);
    // a witnessed ℓ∞ ratio stays below it
    const witnessed = await analyze(path, { norm: 'inf', lowerPairs: 32 });
    assert.ok(witnessed.global.lower && witnessed.global.lower.value <= inf.global.upper!.value, `${f}: ℓ∞ lower ${witnessed.global.lower?.value} above ${inf.global.upper!.value}`);
  }
});

test('--norm inf under best: an ℓ2 analysis that cannot run (float32 overflow in its Lanczos products) leaves the ℓ∞ report as it was', async () => {
  // one 4×4 layer with entries near 1e30: ℓ∞ row sums are finite, AᵀA v overflows float32 (≈ 1e60)
  const layers = randomDense([4, 4], new Random(5)).map((l) => ({ ...l, w: l.w.map((v) => v * 1e30) }));
  const bytes = mlpModel(layers, ACTS.relu);
  await assert.rejects(analyze({ bytes, name: 'huge.onnx' }, { norm: '2', lowerPairs: 0 }), /overflows float32/);
  const inf = await analyze({ bytes, name: 'huge.onnx' }, { norm: 'inf', lowerPairs: 0 });
  assert.equal(inf.global.status, 'bounded');
  assert.equal(inf.global.methods.find((m) => m.method.startsWith('sqrt(n_in)')), undefined);
  // the exact max absolute row sum of the float32 weights (the model has one layer)
  const l = layers[0];
  let rowMax = 0;
  for (let r = 0; r < l.rows; r++) { let s = 0; for (let c = 0; c < l.cols; c++) s += Math.abs(Math.fround(l.w[r * l.cols + c])); rowMax = Math.max(rowMax, s); }
  assert.ok(inf.global.upper!.value >= rowMax && inf.global.upper!.value <= rowMax * (1 + 1e-6), `${inf.global.upper!.value} vs ${rowMax}`);
});
