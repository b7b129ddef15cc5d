import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { enumerateRegions, evaluateNet, evaluationError, type ReluNet } from '../../../src/estimators/exact.js';
import { babSearch, reluBranchAndBound, type Confirm } from '../../../src/estimators/relu-bab.js';
import { buildIr } from '../../../src/frontend/build.js';
import { Random } from '../../../src/linalg/random.js';
import { decodeModel, readModelBytes } from '../../../src/onnx/read-model.js';
import { ACTS, analysedOf, bruteForce, mlpModel, randomDense, runtime, type Dense } from '../../helpers/mlp.js';
import { dense, netOf } from '../../helpers/relu-net.js';

/** A pair's ratio through the float64 network, less its rigorous evaluation-error bound (an independent witness). */
function confirmOf(net: ReluNet, norm: '2' | 'inf'): Confirm {
  return async (a, b) => {
    const fa = evaluateNet(net, a), fb = evaluateNet(net, b);
    const nrm = (v: ArrayLike<number>) => (norm === 'inf' ? Math.max(...Array.from(v, Math.abs)) : Math.hypot(...Array.from(v)));
    const num = nrm(fa.map((v, i) => fb[i] - v)) - evaluationError(net, a) - evaluationError(net, b);
    return Math.max(0, num) / nrm(b.map((v, i) => v - a[i]));
  };
}

test('random 3–5-input nets with one hidden layer of full rank (every pattern realisable): the exact constant equals brute force over all patterns, ℓ2 and ℓ∞', async () => {
  const rng = new Random(20261204);
  let cases = 0;
  for (const n of [3, 4, 5]) {
    for (let rep = 0; rep < 3; rep++) {
      const hiddenUnits = 3 + ((rep + n) % (n - 2));
      const out = 1 + (rep % 3);
      const layers = randomDense([n, hiddenUnits, out], rng);
      for (const [slope, name] of [[[0, 1], 'relu'], [[Math.fround(0.1), 1], 'leaky']] as const) {
        const net = netOf(layers, slope);
        for (const norm of ['2', 'inf'] as const) {
          const truth = bruteForce(layers, slope, norm);
          const s = await babSearch(net, norm, 1e6, confirmOf(net, norm));
          const what = `n=${n} hidden=${hiddenUnits} out=${out} ${name} ℓ${norm}: bab [${s.lower}, ${s.upper}] brute force ${truth}`;
          assert.ok(s.complete, what);
          assert.ok(s.upper >= truth * (1 - 1e-12), `upper below the exact constant: ${what}`);
          assert.ok(s.upper <= truth * (1 + 1e-9), `upper not tight: ${what}`);
          assert.ok(s.lower <= truth * (1 + 1e-12) && s.lower >= truth * (1 - 1e-6), `lower not witnessed within 1e-6: ${what}`);
          cases++;
        }
      }
    }
  }
  assert.equal(cases, 36);
});

test('a 2-input net with three hidden layers: the branch and bound meets the region enumeration (exact.ts)', async () => {
  const rng = new Random(7);
  const layers = randomDense([2, 5, 4, 3, 2], rng);
  const net = netOf(layers);
  for (const norm of ['2', 'inf'] as const) {
    const e = enumerateRegions(net, norm);
    assert.ok(e.complete);
    const s = await babSearch(net, norm, 1e6, confirmOf(net, norm));
    assert.ok(s.complete);
    assert.ok(Math.abs(s.upper - e.upper) <= 1e-9 * e.upper, `ℓ${norm}: bab ${s.upper} vs enumeration ${e.upper}`);
    assert.ok(s.lower >= e.upper * (1 - 1e-6), `ℓ${norm}: witnessed ${s.lower}`);
    // the all-patterns maximum is strictly larger here: the search had to prove patterns unrealisable
    assert.ok(bruteForce(layers, [0, 1], norm) > e.upper * 1.01);
    assert.ok(s.provedEmpty > 0);
  }
});

test('unrealisable patterns are proved empty, never reported: y = relu(x1) − relu(−x1) + ½relu(x2), y = relu(x1 − 1) − relu(−x1 − 1) + ½relu(x2)', async () => {
  // both first units on needs x1 > 0 and −x1 > 0 (a hyperplane: interior empty), or x1 > 1 and x1 < −1 (empty)
  for (const b of [0, -1]) {
    const layers = [dense(3, 3, [1, 0, 0, -1, 0, 0, 0, 1, 0], [b, b, 0]), dense(1, 3, [1, -1, 0.5], [0])];
    const net = netOf(layers);
    for (const norm of ['2', 'inf'] as const) {
      // realisable patterns: J = (1, 0, 0) or (1, ½, 0) [b = 0]; with b = −1 also (0, ·, 0): the constant is ‖(1, ½, 0)‖
      const truth = norm === '2' ? Math.hypot(1, 0.5) : 1.5;
      const unrealisable = norm === '2' ? Math.hypot(2, 0.5) : 2.5;
      assert.ok(Math.abs(bruteForce(layers, [0, 1], norm) - unrealisable) < 1e-12);
      const s = await babSearch(net, norm, 1e6, confirmOf(net, norm));
      assert.ok(s.complete);
      assert.ok(s.upper >= truth && s.upper <= truth * (1 + 1e-12), `b=${b} ℓ${norm}: ${s.upper}, the exact constant is ${truth}`);
      assert.ok(s.lower >= truth * (1 - 1e-6));
      assert.ok(s.provedEmpty >= 1, `b=${b}: no region proved empty`);
    }
  }
});

test('a budget that runs out gives a bracket lower ≤ L ≤ upper, and the same numbers twice', async () => {
  const rng = new Random(99);
  const layers = randomDense([5, 5, 2], rng);
  const net = netOf(layers);
  const truth = bruteForce(layers, [0, 1], '2');
  const full = await babSearch(net, '2', 1e6, confirmOf(net, '2'));
  assert.ok(full.complete && full.lps > 3);
  for (const budget of [1, 30, 90]) {
    const s = await babSearch(net, '2', budget, confirmOf(net, '2'));
    assert.equal(s.complete, false, `budget ${budget}`);
    assert.ok(s.lower <= truth * (1 + 1e-12) && truth <= s.upper * (1 + 1e-12), `budget ${budget}: [${s.lower}, ${s.upper}] ∌ ${truth}`);
    assert.ok(s.work <= budget + 2 * 21, `budget ${budget}: spent ${s.work}`);
    const again = await babSearch(net, '2', budget, confirmOf(net, '2'));
    assert.deepEqual({ u: again.upper, l: again.lower, leaves: again.leaves, lps: again.lps, work: again.work }, { u: s.upper, l: s.lower, leaves: s.leaves, lps: s.lps, work: s.work });
  }
});

test('reluBranchAndBound through an ONNX model (4 inputs, two hidden layers): exact, witnessed through the model in float64 and float32', async () => {
  const rng = new Random(3);
  const layers = randomDense([4, 3, 1], rng);
  const deep = randomDense([4, 6, 5, 2], rng);
  for (const [ls, norm] of [[layers, '2'], [layers, 'inf'], [deep, '2']] as const) {
    const model = decodeModel(mlpModel(ls, ACTS.relu), 't.onnx');
    const built = await buildIr(model, { seed: 0, runtime });
    const r = await reluBranchAndBound({ ...analysedOf(model, built, norm), budget: 1e6 });
    assert.equal(r.status, 'exact', `${r.status}: ${r.reason ?? ''} [${r.lower}, ${r.upper?.value}]`);
    assert.equal(r.upper!.kind, 'exact');
    assert.match(r.upper!.method, /^relu-bab\(/);
    assert.ok(r.lower32 && r.lower32.value >= r.upper!.value * (1 - 1e-4) && r.lower32.value <= r.upper!.value * (1 + 1e-4), `float32 pair ${r.lower32?.value}`);
    if (ls === layers) {
      const truth = bruteForce(ls, [0, 1], norm);
      assert.ok(r.upper!.value >= truth && r.upper!.value <= truth * (1 + 1e-9), `ℓ${norm}: ${r.upper!.value} vs ${truth}`);
    }
  }
});

const SHARED = new URL('../../../../shared/models/', import.meta.url).pathname;

test('shared acasxu_2_1 and rpd_gcas (5 and 14 inputs): the branch and bound\'s certified bracket holds the best known witnessed lower bounds', async (t) => {
  if (!existsSync(`${SHARED}acasxu_2_1.onnx`)) { t.skip('../shared/models is absent: skipping acasxu_2_1 and rpd_gcas'); return; }
  // issue 12's best known lower bounds (independent float64 searches): any certified upper bound must be above them
  for (const [file, known] of [['acasxu_2_1', 610.7], ['rpd_gcas', 92.16]] as const) {
    const model = decodeModel(readModelBytes(`${SHARED}${file}.onnx`), file);
    const built = await buildIr(model, { seed: 0, runtime });
    const r = await reluBranchAndBound({ ...analysedOf(model, built, '2'), budget: 2000 });
    assert.equal(r.status, 'bracket', `${file}: ${r.status} ${r.reason ?? ''}`);
    assert.ok(r.upper && r.upper.kind === 'certified' && r.upper.value >= known, `${file}: upper ${r.upper?.value} below the witnessed ${known}`);
    assert.ok(r.lower > 0 && r.lower <= r.upper.value, `${file}: lower ${r.lower}`);
    assert.ok(r.lower32 && r.lower32.value <= r.upper.value * (1 + 1e-4));
  }
});
