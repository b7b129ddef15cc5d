import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { certifyLmiReduced, eclipseBound, eclipseConstruct, eclipseSegmentBound } from '../../../src/estimators/eclipse.js';
import { analyze } from '../../../src/index.js';
import { Random } from '../../../src/linalg/random.js';
import { certifyLmi, lipSdpBound, type LipSdpProblem } from '../../../src/linalg/sdp.js';
import { hasShared, SHARED, sigmaMax } from '../../helpers/dense.js';
import { ACTS, bruteForce, mlpModel, pipeline, randomDense, settings, witness, type Dense } from '../../helpers/mlp.js';

const problemOf = (layers: readonly Dense[], slope: readonly [number, number]): LipSdpProblem => ({ layers: layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols })), slopes: layers.slice(1).map(() => slope) });
const naive = (layers: readonly Dense[], slope: readonly [number, number]) => layers.reduce((a, l) => a * sigmaMax(l.w, l.rows, l.cols), 1) * Math.max(Math.abs(slope[0]), Math.abs(slope[1])) ** (layers.length - 1);

test('ECLipsE on random MLPs: witness ≤ brute force ≤ LipSDP-Neuron ≤ ECLipsE ≤ ECLipsE-Fast ≤ naive product, certified', () => {
  const cases: [number[], keyof typeof ACTS, number][] = [
    [[3, 8, 2], 'relu', 1], [[4, 5, 4, 3], 'relu', 2], [[3, 6, 3], 'sigmoid', 3], [[3, 4, 4, 2], 'tanh', 4],
    [[4, 5, 4, 3], 'leaky01', 5], [[3, 5, 5, 2], 'leakyNeg', 6], [[2, 3, 3, 3, 2], 'relu', 7],
  ];
  let strictlyTighter = 0;
  for (const [widths, name, seed] of cases) {
    const rng = new Random(seed);
    const act = ACTS[name];
    const layers = randomDense(widths, rng);
    const p = problemOf(layers, act.slope);
    const tag = `${name} ${widths.join('-')}`;
    const neuron = lipSdpBound(p, { variant: 'neuron' });
    const fast = eclipseBound(p, { stageSdp: false });
    const full = eclipseBound(p);
    assert.ok(neuron && fast && full, `${tag}: no bound`);
    assert.equal(fast.method, 'eclipse-fast');
    assert.equal(fast.sdpStages, 0);
    const brute = bruteForce(layers, act.slope, '2');
    const lower = witness(layers, act, '2', rng, 100);
    assert.ok(lower <= brute * (1 + 1e-12), `${tag}: witness ${lower} > brute ${brute}`);
    // ECLipsE's point is a feasible point of LipSDP-Neuron's LMI: never below its optimum (the certified LipSDP value
    // sits within ~1e-6 relative above it), never below the brute-force sup over the slope box
    for (const b of [fast, full]) {
      assert.ok(b.value >= brute, `${tag}: ${b.method} ${b.value} below brute force ${brute}`);
      assert.ok(b.value >= neuron.value * (1 - 1e-5), `${tag}: ${b.method} ${b.value} below LipSDP-Neuron ${neuron.value}`);
      assert.ok(b.value <= naive(layers, act.slope) * (1 + 1e-9), `${tag}: ${b.method} ${b.value} above the product of norms ${naive(layers, act.slope)}`);
    }
    assert.ok(full.value <= fast.value * (1 + 1e-12), `${tag}: ECLipsE ${full.value} above ECLipsE-Fast ${fast.value}`);
    if (full.value < fast.value * (1 - 1e-3)) strictlyTighter++;
  }
  // the stage SDPs must matter somewhere (else the per-neuron stages are not wired in)
  assert.ok(strictlyTighter >= 3, `stage SDPs tightened only ${strictlyTighter} of the cases`);
});

test('ECLipsE closed forms: a diagonal one-hidden-layer net gives max_i |a_i·b_i|·β exactly; a chain of scalars the product', () => {
  // y = diag(b)·φ(diag(a)·x): the units decouple, the constant is max_i |a_i b_i|·max|slope| (attained with D = β·I)
  const a = [1.5, -0.7, 2.25, 0.4], b = [0.3, 2, -0.5, 1.1];
  const diag = (v: number[]) => { const w = new Float64Array(v.length * v.length); v.forEach((x, i) => { w[i * v.length + i] = x; }); return w; };
  for (const slope of [[0, 1], [0, 0.25], [0.1, 1]] as const) {
    const p: LipSdpProblem = { layers: [{ w: diag(a), rows: 4, cols: 4 }, { w: diag(b), rows: 4, cols: 4 }], slopes: [slope] };
    const exact = Math.max(...a.map((x, i) => Math.abs(x * b[i]))) * slope[1];
    const res = eclipseBound(p)!;
    assert.ok(res.value >= exact && res.value <= exact * (1 + 1e-5), `[${slope}]: ECLipsE ${res.value} vs ${exact}`);
  }
  // a chain of scalars with ReLU: ECLipsE-Fast's closed form is exact, |Π w_k|
  const w = [2, -0.5, 3, 1.25];
  const chain: LipSdpProblem = { layers: w.map((v) => ({ w: Float64Array.of(v), rows: 1, cols: 1 })), slopes: w.slice(1).map(() => [0, 1] as const) };
  const fast = eclipseBound(chain, { stageSdp: false })!;
  const exact = Math.abs(w.reduce((x, y) => x * y, 1));
  assert.ok(fast.value >= exact && fast.value <= exact * (1 + 1e-5), `chain: ${fast.value} vs ${exact}`);
});

test('ECLipsE certificate: the constructed point is proved, a smaller ρ (with or without t scaled) and ρ below brute force² are refused', () => {
  const rng = new Random(11);
  const layers = randomDense([3, 6, 5, 2], rng);
  const p = problemOf(layers, [0, 1]);
  const c = eclipseConstruct(p);
  assert.ok(c.path.length > 0 && Number.isFinite(c.rho));
  const proved = c.path.find((pt) => certifyLmi(p, pt));
  assert.ok(proved, 'no point of the construction path was proved');
  const { rho, t } = proved;
  assert.equal(certifyLmi(p, { rho: rho * 0.99, t: t.map((v) => v * 0.99) }), false, 'ρ and t scaled down by 1% were accepted');
  assert.equal(certifyLmi(p, { rho: rho * 0.9, t }), false, 'ρ 10% lower at the same t was accepted');
  const brute = bruteForce(layers, [0, 1], '2');
  assert.equal(certifyLmi(p, { rho: brute * brute * (1 - 1e-6), t }), false, 'ρ below the brute-force constant squared was accepted');
  assert.equal(certifyLmi(p, { rho, t: t.map((v, i) => (i === 0 ? -v - 1 : v)) }), false, 'a negative multiplier was accepted');
});

test('ECLipsE is deterministic: the same problem gives the same bits; a zero budget for stage SDPs leaves ECLipsE-Fast', () => {
  const rng = new Random(12);
  const p = problemOf(randomDense([4, 7, 7, 3], rng), ACTS.tanh.slope);
  const a = eclipseBound(p)!, b = eclipseBound(p)!;
  assert.equal(a.value, b.value);
  assert.equal(a.work, b.work);
  const none = eclipseBound(p, { work: 0 })!;
  assert.equal(none.sdpStages, 0);
  assert.equal(none.value, eclipseBound(p, { stageSdp: false })!.value);
});

test('ECLipsE on an ONNX MLP segment: certified, above brute force; analyze best with LipSDP out of budget lists autolip+eclipse', async () => {
  const rng = new Random(21);
  const layers = randomDense([4, 6, 6, 3], rng);
  const bytes = mlpModel(layers, ACTS.relu);
  const { segments } = await pipeline(bytes);
  assert.equal(segments.length, 1);
  const res = await eclipseSegmentBound(segments[0], settings);
  assert.deepEqual(res.notes, []);
  assert.ok(res.upper && res.upper.kind === 'certified' && /^eclipse/.test(res.upper.method), JSON.stringify(res.upper));
  const brute = bruteForce(layers, ACTS.relu.slope, '2');
  assert.ok(res.upper.value >= brute, `${res.upper.value} < brute ${brute}`);
  const none = await eclipseSegmentBound(segments[0], { ...settings, norm: 'inf' });
  assert.equal(none.upper, null);
  assert.match(none.notes[0], /ℓ2 constant only/);
  // --sdp-work 0: LipSDP is skipped, ECLipsE runs under its own budget
  const report = await analyze({ bytes, name: 'eclipse.onnx' }, { method: 'best', device: 'cpu', lowerPairs: 0, sdpWork: 0 });
  const line = report.global.methods.find((m) => m.method === 'autolip+eclipse');
  assert.ok(line && line.upper && line.upper.kind === 'certified' && line.work && line.work > 0, JSON.stringify(report.global.methods));
  assert.ok(line.upper.value >= brute);
  assert.ok(report.global.upper!.value <= line.upper.value * (1 + 1e-9));
  const sdp = await analyze({ bytes, name: 'eclipse.onnx' }, { method: 'sdp', device: 'cpu', lowerPairs: 0, sdpWork: 0 });
  assert.equal(sdp.global.upper?.kind, 'certified');
  assert.ok(sdp.global.upper!.value <= line.upper.value * (1 + 1e-9) && sdp.global.upper!.value >= brute, `sdp ${sdp.global.upper!.value}`);
});

test('shared dist_shift_mnist_concat: ECLipsE-Fast certified below the default run\'s 311 055 and above LipSDP-Neuron\'s 144 787', { skip: hasShared ? false : '../shared/models is absent: skipping dist_shift_mnist_concat' }, async () => {
  const { segments } = await pipeline(readFileSync(SHARED + 'dist_shift_mnist_concat.onnx'));
  assert.equal(segments.length, 1);
  const res = await eclipseSegmentBound(segments[0], settings, { stageSdp: false });
  assert.ok(res.upper, res.notes.join(' '));
  assert.ok(res.upper.value > 144787 && res.upper.value < 311055, `${res.upper.value}`);
});

test('warm start: LipSDP-Neuron started at ECLipsE\'s point reaches the cold solve\'s value, below ECLipsE\'s', () => {
  for (const [widths, name, seed] of [[[4, 8, 8, 3], 'relu', 31], [[3, 6, 6, 2], 'leakyNeg', 32]] as const) {
    const rng = new Random(seed);
    const p = problemOf(randomDense(widths, rng), ACTS[name].slope);
    const cold = lipSdpBound(p, { variant: 'neuron' })!;
    const ecl = eclipseBound(p)!;
    const warm = eclipseBound(p, { warmWork: 1e9 })!;
    assert.match(warm.method, /\+lipsdp$/, `${name}: the warm-started solve gave nothing below ECLipsE`);
    assert.ok(warm.value <= ecl.value && Math.abs(warm.value - cold.value) <= 1e-5 * cold.value, `${name}: warm ${warm.value}, cold ${cold.value}, ECLipsE ${ecl.value}`);
  }
});

test('the certificate with the input block eliminated agrees with the full one: proves the construction, refuses ρ too small', () => {
  for (const [widths, name, seed] of [[[9, 3, 4, 2], 'relu', 41], [[12, 4, 2], 'sigmoid', 42], [[10, 3, 3, 3, 2], 'tanh', 43], [[8, 3, 3, 2], 'leaky01', 44]] as const) {
    const rng = new Random(seed);
    const layers = randomDense(widths, rng);
    const p = problemOf(layers, ACTS[name].slope);
    const c = eclipseConstruct(p);
    const brute = bruteForce(layers, ACTS[name].slope, '2');
    const tag = `${name} ${widths.join('-')}`;
    const proved = c.path.find((pt) => certifyLmi(p, pt));
    assert.ok(proved, `${tag}: the full certificate proved no point`);
    assert.equal(certifyLmiReduced(p, proved), true, `${tag}: the reduced certificate refused a point the full one proved`);
    // F(ρ, t) with ρ lowered at the same t: the elimination divides by ρ, so this checks the (c²/ρ) term both ways
    for (const f of [0.999, 0.99, 0.5]) assert.equal(certifyLmiReduced(p, { rho: proved.rho * f, t: proved.t }), certifyLmi(p, { rho: proved.rho * f, t: proved.t }), `${tag}: the two certificates disagree at ρ × ${f}`);
    assert.equal(certifyLmiReduced(p, { rho: brute * brute * (1 - 1e-6), t: proved.t }), false, `${tag}: ρ below brute force² accepted`);
    assert.equal(certifyLmiReduced(p, { rho: 0, t: proved.t }), false);
    assert.equal(certifyLmiReduced(p, { rho: proved.rho, t: proved.t.map((v, i) => (i === 1 ? -1 : v)) }), false, `${tag}: a negative multiplier accepted`);
  }
  // a network whose worst case needs the input block: y = (1, 1)·relu(W_0 x) with W_0 = [[1, 1, 0], [0, 1, 1]]: L = ‖(1, 2, 1)‖ = √6
  const p: LipSdpProblem = { layers: [{ w: Float64Array.of(1, 1, 0, 0, 1, 1), rows: 2, cols: 3 }, { w: Float64Array.of(1, 1), rows: 1, cols: 2 }], slopes: [[0, 1]] };
  const res = eclipseBound(p)!;
  assert.ok(res.value >= Math.sqrt(6) * (1 - 1e-12) && res.value <= Math.sqrt(6) * (1 + 1e-4), `√6 example: ${res.value}`);
});
