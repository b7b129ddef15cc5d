import assert from 'node:assert/strict';
import { test } from 'node:test';
import { float64Model } from '../../../src/backend/widen.js';
import { enumerateRegions, evaluateNet, exactLipschitz, reluNetOf, regionPoint } from '../../../src/estimators/exact.js';
import { buildIr } from '../../../src/frontend/build.js';
import { mergeLinear } from '../../../src/ir/merge.js';
import { Random } from '../../../src/linalg/random.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { ACTS, analysedOf, bruteForce, chain, mlpModel, opNorm, randomDense, runtime, witness, type Dense } from '../../helpers/mlp.js';
import { dense, netOf } from '../../helpers/relu-net.js';

/** ‖J(x)‖ at a point, computed independently in float64 from the layers (the helpers' chain product). */
function jacobianAt(layers: readonly Dense[], x: Float64Array, norm: '2' | 'inf', slope: readonly [number, number] = [0, 1]): number {
  let a = x;
  const ds: Float64Array[] = [];
  for (let k = 0; k < layers.length - 1; k++) {
    const l = layers[k];
    const h = Float64Array.from({ length: l.rows }, (_, i) => { let s = l.b[i]; for (let j = 0; j < l.cols; j++) s += l.w[i * l.cols + j] * a[j]; return s; });
    ds.push(h.map((v) => (v > 0 ? slope[1] : slope[0])));
    a = h.map((v) => (v > 0 ? slope[1] * v : slope[0] * v));
  }
  return opNorm(chain(layers, ds), layers[layers.length - 1].rows, layers[0].cols, norm);
}

test('|x| = relu(x) + relu(−x) has constant 1, in two regions', () => {
  const layers = [dense(2, 1, [1, -1], [0, 0]), dense(1, 2, [1, 1], [0])];
  for (const norm of ['2', 'inf'] as const) {
    const e = enumerateRegions(netOf(layers), norm);
    assert.ok(e.complete);
    assert.ok(e.upper >= 1 && e.upper <= 1 + 1e-12, `ℓ${norm}: ${e.upper}`);
    assert.equal(e.inexactSplits, 0);
  }
});

test('a sawtooth t∘t (tent slopes ±2) has constant 4 exactly', () => {
  // t(x) = 2relu(x) − 4relu(x − ½) + 2relu(x − 1); the second layer feeds t(x) − {0, ½, 1} to the next tent
  const l1 = dense(3, 1, [1, 1, 1], [0, -0.5, -1]);
  const l2 = dense(3, 3, [2, -4, 2, 2, -4, 2, 2, -4, 2], [0, -0.5, -1]);
  const l3 = dense(1, 3, [2, -4, 2], [0]);
  for (const norm of ['2', 'inf'] as const) {
    const e = enumerateRegions(netOf([l1, l2, l3]), norm);
    assert.ok(e.complete);
    assert.ok(e.upper >= 4 && e.upper <= 4 * (1 + 1e-12), `ℓ${norm}: ${e.upper}`);
    // the nonzero-slope pieces of t∘t: 4 on [0, 1], plus the flat parts outside (counted per chart)
    assert.ok(e.regions >= 6, `regions ${e.regions}`);
  }
  // all-patterns brute force is looser here: unrealisable patterns reach 2·(2+4+2) = 16
  assert.ok(bruteForce([l1, l2, l3], [0, 1], '2') > 4.5);
});

test('|x1| + |x2|: ℓ2 constant √2, ℓ∞ constant 2', () => {
  const layers = [dense(4, 2, [1, 0, -1, 0, 0, 1, 0, -1], [0, 0, 0, 0]), dense(1, 4, [1, 1, 1, 1], [0])];
  const e2 = enumerateRegions(netOf(layers), '2');
  assert.ok(e2.upper >= Math.SQRT2 && e2.upper <= Math.SQRT2 * (1 + 1e-12), `ℓ2: ${e2.upper}`);
  const ei = enumerateRegions(netOf(layers), 'inf');
  assert.ok(ei.upper >= 2 && ei.upper <= 2 * (1 + 1e-12), `ℓ∞: ${ei.upper}`);
});

test('one hidden layer of two units in general position: every pattern is realised, so exact = brute force over patterns', () => {
  for (let seed = 0; seed < 10; seed++) {
    const rng = new Random(300 + seed);
    const layers = randomDense([2, 2, 3], rng);
    for (const norm of ['2', 'inf'] as const) {
      const e = enumerateRegions(netOf(layers), norm);
      const brute = bruteForce(layers, [0, 1], norm);
      assert.ok(e.complete && e.regions >= 4);
      assert.ok(Math.abs(e.upper - brute) <= 1e-9 * brute, `seed ${seed} ℓ${norm}: enumeration ${e.upper} vs brute force ${brute}`);
    }
  }
});

test('random 2-input and 1-input nets: sampled ‖J‖ ≤ exact ≤ brute force over all patterns, and the best region attains it', () => {
  const shapes = [[2, 6, 5, 2], [2, 8, 3], [1, 5, 4, 1], [2, 4, 4, 4, 1], [2, 7, 2]];
  for (const [si, widths] of shapes.entries()) {
    for (let seed = 0; seed < 4; seed++) {
      for (const [actName, act] of [['relu', ACTS.relu], ['leaky01', ACTS.leaky01]] as const) {
        const rng = new Random(1000 * si + seed);
        const layers = randomDense(widths, rng);
        for (const norm of ['2', 'inf'] as const) {
          const tag = `${widths.join('-')} ${actName} seed ${seed} ℓ${norm}`;
          const e = enumerateRegions(netOf(layers, act.slope), norm);
          assert.ok(e.complete, tag);
          const sampled = witness(layers, act, norm, new Random(seed + 77), 3000);
          const brute = bruteForce(layers, act.slope, norm);
          assert.ok(sampled <= e.upper * (1 + 1e-12), `${tag}: sampled ${sampled} above the enumeration's ${e.upper}`);
          assert.ok(e.upper <= brute * (1 + 1e-9), `${tag}: enumeration ${e.upper} above brute force ${brute}`);
          // independent check that the max is attained: ‖J‖ at the best region's interior point, from the layers
          const x = regionPoint(e.best[0]).subarray(0, widths[0]);
          const at = jacobianAt(layers, Float64Array.from(x), norm, act.slope);
          assert.ok(Math.abs(at - e.upper) <= 1e-9 * e.upper, `${tag}: ‖J‖ at the best region's point ${at} vs ${e.upper}`);
        }
      }
    }
  }
});

test('the budget stops the enumeration and then claims no upper bound', () => {
  const layers = randomDense([2, 12, 12, 1], new Random(5));
  const e = enumerateRegions(netOf(layers), '2', 10);
  assert.equal(e.complete, false);
  assert.equal(e.upper, Infinity);
  assert.equal(e.work, 10);
});

test('reluNetOf reads the affine layers (offsets included) back from a Gemm model, and the float64 model reproduces them', async () => {
  const rng = new Random(11);
  const layers = randomDense([2, 5, 3], rng);
  const model = decodeModel(mlpModel(layers, ACTS.relu), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  const net = reluNetOf(built.ir, mergeLinear(built.ir));
  assert.ok(typeof net !== 'string', String(net));
  for (const [k, l] of layers.entries()) {
    assert.deepEqual(Array.from(net.layers[k].w), Array.from(l.w));
    assert.deepEqual(Array.from(net.layers[k].b), Array.from(l.b));
    assert.ok(net.layers[k].we.every((v) => v === 0) && net.layers[k].be.every((v) => v === 0), 'float32 weights are exact');
  }
  assert.ok(typeof float64Model(model, built.inputName, built.inputShape, built.outputName) !== 'string');
  const y = evaluateNet(net, [0.3, -0.2]);
  assert.equal(y.length, 3);
});

test('exactLipschitz on 2-input models (ReLU, LeakyReLU): kind exact, witnessed by a float64 pair through the model', async () => {
  for (const [norm, act] of [['2', ACTS.relu], ['inf', ACTS.relu], ['2', ACTS.leaky01]] as const) {
    const rng = new Random(21);
    const layers = randomDense([2, 6, 4, 2], rng);
    const model = decodeModel(mlpModel(layers, act), 't.onnx');
    const built = await buildIr(model, { seed: 0, runtime });
    const r = await exactLipschitz(analysedOf(model, built, norm));
    assert.equal(r.status, 'exact', `ℓ${norm}: ${r.reason ?? ''} upper ${r.upper?.value} lower ${r.lower}`);
    assert.equal(r.upper!.kind, 'exact');
    assert.ok(r.lower <= r.upper!.value && r.upper!.value <= r.lower * (1 + 1e-6));
    const brute = bruteForce(layers, act.slope, norm);
    assert.ok(r.upper!.value <= brute * (1 + 1e-9));
    // the float32 pair through the original model stays below the exact value (its rounding allowance deducted)
    assert.ok(r.lower32 !== null && r.lower32.value <= r.upper!.value * (1 + 1e-9) && r.lower32.value >= r.lower * (1 - 1e-4));
  }
});

test('exactLipschitz declines what it cannot enumerate and says why', async () => {
  const rng = new Random(2);
  const wide = randomDense([3, 4, 1], rng);
  const m3 = decodeModel(mlpModel(wide, ACTS.relu), 't.onnx');
  const b3 = await buildIr(m3, { seed: 0, runtime });
  const r3 = await exactLipschitz(analysedOf(m3, b3));
  assert.equal(r3.status, 'unsupported');
  assert.match(r3.reason!, /3 elements/);
  const tanh = decodeModel(mlpModel(randomDense([2, 4, 1], rng), ACTS.tanh), 't.onnx');
  const bt = await buildIr(tanh, { seed: 0, runtime });
  const rt = await exactLipschitz(analysedOf(tanh, bt));
  assert.equal(rt.status, 'unsupported');
  assert.match(rt.reason!, /Tanh/);
});
