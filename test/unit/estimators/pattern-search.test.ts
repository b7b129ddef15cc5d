import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enumerateRegions, regionPoint, type ReluNet } from '../../../src/estimators/exact.js';
import { longestChord, patternSearchLowerBound, safeSteps, stateAt } from '../../../src/estimators/pattern-search.js';
import { buildIr } from '../../../src/frontend/build.js';
import { mergeLinear } from '../../../src/ir/merge.js';
import { Random } from '../../../src/linalg/random.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { ACTS, analysedOf, bruteForce, chain, f32, mlpModel, opNorm, randomDense, runtime, type Dense } from '../../helpers/mlp.js';

async function search(layers: Dense[], norm: '2' | 'inf', seeds: Float64Array[] = [], seed = 0, act = ACTS.relu) {
  const model = decodeModel(mlpModel(layers, act), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  return patternSearchLowerBound({ ...analysedOf(model, built, norm), seed, seeds, evaluations: 600 });
}

/** ‖J(x)‖ from the layers in float64 (ReLU). */
function jacobianAt(layers: readonly Dense[], x: ArrayLike<number>, norm: '2' | 'inf'): number {
  let a = Float64Array.from(x);
  const ds: Float64Array[] = [];
  for (const l of layers.slice(0, -1)) {
    const h = Float64Array.from({ length: l.rows }, (_, i) => { let s = l.b[i]; for (let j = 0; j < l.cols; j++) s += l.w[i * l.cols + j] * a[j]; return s; });
    ds.push(h.map((v) => (v > 0 ? 1 : 0)));
    a = h.map((v) => Math.max(v, 0));
  }
  return opNorm(chain(layers, ds), layers[layers.length - 1].rows, layers[0].cols, norm);
}

test('pattern search: a valid lower bound (≤ brute force over patterns), its pair witnesses the region it reached, deterministic', async () => {
  for (let seed = 0; seed < 4; seed++) {
    const layers = randomDense([5, 7, 6, 3], new Random(500 + seed));
    for (const norm of ['2', 'inf'] as const) {
      const r = await search(layers, norm, [], seed);
      const tag = `seed ${seed} ℓ${norm}`;
      const brute = bruteForce(layers, [0, 1], norm);
      assert.ok(r.value > 0 && r.value <= brute * (1 + 1e-4), `${tag}: ${r.value} vs brute force ${brute}`);
      assert.ok(r.value <= r.regionNorm * (1 + 1e-4) && r.value >= r.regionNorm * (1 - 1e-3), `${tag}: pair ${r.value} vs region ‖J‖ ${r.regionNorm}`);
      assert.ok(r.work <= 600 + 1, `${tag}: ${r.work} evaluations`);
      const again = await search(layers, norm, [], seed);
      assert.equal(again.value, r.value, `${tag}: not deterministic`);
    }
  }
});

test('pattern search only climbs: from a seed, the region reached is at least as steep as the seed’s', async () => {
  for (let seed = 0; seed < 4; seed++) {
    const layers = randomDense([4, 16, 16, 1], new Random(600 + seed));
    const x0 = Float64Array.from({ length: 4 }, (_, i) => (i - 1.5) * 0.7);
    const r = await search(layers, '2', [x0], seed);
    assert.ok(r.regionNorm >= jacobianAt(layers, x0, '2') * (1 - 1e-9), `seed ${seed}: ${r.regionNorm} below the seed's ${jacobianAt(layers, x0, '2')}`);
  }
});

test('seeded with the exact enumeration’s best region, it witnesses the exact constant (2-input nets)', async () => {
  for (let seed = 0; seed < 3; seed++) {
    const layers = randomDense([2, 8, 6, 2], new Random(700 + seed));
    const net: ReluNet = { inputs: 2, layers: layers.map((l) => ({ ...l, we: new Float64Array(l.w.length), be: new Float64Array(l.b.length) })), slopes: [[0, 1], [0, 1]] };
    const e = enumerateRegions(net, '2');
    const r = await search(layers, '2', [regionPoint(e.best[0])], seed);
    // the walk starts in the best region and stays there; the float32 pair inside it loses at most its rounding allowance
    assert.ok(Math.abs(r.regionNorm - e.upper) <= 1e-9 * e.upper, `seed ${seed}: region ‖J‖ ${r.regionNorm} vs exact ${e.upper}`);
    assert.ok(r.value >= e.upper * (1 - 1e-2) && r.value <= e.upper * (1 + 1e-6), `seed ${seed}: ${r.value} vs exact ${e.upper}`);
  }
});

test('pattern search declines networks it cannot read back, saying why', async () => {
  const r = await search(randomDense([3, 4, 1], new Random(1)), '2', [], 0, ACTS.tanh);
  assert.equal(r.value, 0);
  assert.match(r.reason ?? '', /Tanh/);
});

/**
 * A 2-6-1 ReLU net whose units wake only far from the origin: unit i is relu(w_i·x − (1000 + 100 i)) with w_i at angle
 * iπ/15, and f sums them. Within ‖x‖ < 1000 every unit is off (J = 0, no flip gains anything to first order); the steepest
 * region is the one with all six on (a cone beyond ‖x‖ ≈ 1 800), where ‖J‖ = ‖Σ w_i‖ = sin(π/5)/sin(π/30), and no other
 * pattern is steeper (brute force over all 64). Starts at scales 1–30 and their kicks never left the flat disc.
 */
function farNet(): Dense[] {
  const k = 6;
  const w = new Float64Array(2 * k), b = new Float64Array(k);
  for (let i = 0; i < k; i++) { w[2 * i] = Math.cos((i * Math.PI) / 15); w[2 * i + 1] = Math.sin((i * Math.PI) / 15); b[i] = -(1000 + 100 * i); }
  return [{ w: f32(w), rows: k, cols: 2, b: f32(b) }, { w: new Float64Array(k).fill(1), rows: 1, cols: k, b: new Float64Array(1) }];
}

test('a net steep only far from the origin: the search reaches its constant (sin(π/5)/sin(π/30) = 5.6231) and never passes it', async () => {
  const layers = farNet();
  const exact = Math.sin(Math.PI / 5) / Math.sin(Math.PI / 30);
  // the brute force over patterns agrees with the closed form (the weights are float32-rounded: 1e-6)
  assert.ok(Math.abs(bruteForce(layers, [0, 1], '2') - exact) <= 1e-6 * exact, `brute force ${bruteForce(layers, [0, 1], '2')} vs ${exact}`);
  for (let seed = 0; seed < 3; seed++) {
    const r = await search(layers, '2', [], seed);
    assert.ok(r.value >= exact * (1 - 1e-3) && r.value <= exact * (1 + 1e-5), `seed ${seed}: ${r.value} vs ${exact}`);
    // the pair really is far out, in the all-on cone
    assert.ok(Math.hypot(...r.x) > 1500, `seed ${seed}: pair at ‖x‖ = ${Math.hypot(...r.x)}`);
  }
});

test('the longest segment along the worst direction (HiGHS LP) stays in the region and is never shorter than the chord through x', async () => {
  const signs = (net: ReluNet, x: ArrayLike<number>) => stateAt(net, Float64Array.from(x), '2', new Float64Array(net.inputs).fill(1)).z.map((z) => Array.from(z, (v) => v > 0));
  let longer = 0;
  for (let seed = 0; seed < 6; seed++) {
    const rng = new Random(800 + seed);
    const layers = randomDense([3, 8, 8, 2], rng);
    const net: ReluNet = { inputs: 3, layers: layers.map((l) => ({ ...l, we: new Float64Array(l.w.length), be: new Float64Array(l.b.length) })), slopes: [[0, 1], [0, 1]] };
    const x = Float64Array.from({ length: 3 }, () => rng.normal());
    const s = stateAt(net, x, '2', rng.unitVector(3));
    const { fwd, bwd } = safeSteps(net, s, s.v);
    const cap = 100;
    const chord = await longestChord(s, s.v, 100, cap);
    assert.ok(chord, `seed ${seed}: no optimum`);
    // at least the chord through x itself (δ = 0 is feasible), up to the LP's tolerance
    assert.ok(chord.length >= Math.min(fwd + bwd, cap) * (1 - 1e-6) - 1e-9, `seed ${seed}: ${chord.length} < ${fwd + bwd}`);
    if (chord.length > (fwd + bwd) * 1.01) longer++;
    // both ends, pulled in by 1 %, carry the region's pattern
    const want = signs(net, x);
    for (const t of [0.01, 0.99]) {
      const y = chord.a.map((a, i) => a + t * chord.length * s.v[i]);
      assert.deepEqual(signs(net, y), want, `seed ${seed}: the point at ${t} of the segment left the region`);
    }
  }
  assert.ok(longer > 0, 'the LP never found a longer segment than the one through x');
});
