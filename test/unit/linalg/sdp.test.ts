import assert from 'node:assert/strict';
import { test } from 'node:test';
import { certifyLipSdp, certifyLmi, formLmi, lipSdpBound, matmul as lmiMatmul, matmulJs, solveLipSdp, type LipSdpProblem } from '../../../src/linalg/sdp.js';
import { Random } from '../../../src/linalg/random.js';
import { sigmaMax } from '../../helpers/dense.js';
import { ACTS, bruteForce, matmul, randomDense, witness, type Dense } from '../../helpers/mlp.js';

const problemOf = (layers: readonly Dense[], slope: readonly [number, number]): LipSdpProblem => ({
  layers: layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols })),
  slopes: layers.slice(1).map(() => slope),
});
const productOfNorms = (layers: readonly Dense[], slope: readonly [number, number]) =>
  layers.reduce((p, l) => p * sigmaMax(l.w, l.rows, l.cols), 1) * Math.max(Math.abs(slope[0]), Math.abs(slope[1])) ** (layers.length - 1);

test('formLmi equals −M built from the [A; B] formula of ALGORITHMS.md §6', () => {
  const rng = new Random(11);
  const layers = randomDense([3, 4, 2, 2], rng);
  const slopes: [number, number][] = [[-0.5, 1], [0, 0.25]];
  const p: LipSdpProblem = { layers: layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols })), slopes };
  const t = Float64Array.from([0.3, 1.2, 0.7, 2.0, 0.9, 1.1]);
  const rho = 3.7;
  const { f, n } = formLmi(p, { rho, t });
  // A = [blkdiag(W_0, W_1), 0] (6×9), B = [0, I_6]; X = [[−2αβT, (α+β)T], [(α+β)T, −2T]]
  const hid = 6, N = 9;
  const A = new Float64Array(hid * N), B = new Float64Array(hid * N);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) A[i * N + j] = layers[0].w[i * 3 + j];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) A[(4 + i) * N + 3 + j] = layers[1].w[i * 4 + j];
  for (let i = 0; i < hid; i++) B[i * N + 3 + i] = 1;
  const ab = (i: number) => slopes[i < 4 ? 0 : 1];
  const m = new Float64Array(N * N);
  for (let r = 0; r < N; r++) for (let c = 0; c < N; c++) {
    let s = 0;
    for (let i = 0; i < hid; i++) {
      const [a, b] = ab(i);
      s += t[i] * (-2 * a * b * A[i * N + r] * A[i * N + c] + (a + b) * (A[i * N + r] * B[i * N + c] + B[i * N + r] * A[i * N + c]) - 2 * B[i * N + r] * B[i * N + c]);
    }
    m[r * N + c] = s;
  }
  for (let i = 0; i < 3; i++) m[i * N + i] -= rho;
  const wl = layers[2];
  const g = matmul(Float64Array.from({ length: wl.cols * wl.rows }, (_, k) => wl.w[(k % wl.rows) * wl.cols + Math.floor(k / wl.rows)]), wl.cols, wl.rows, wl.w, wl.cols);
  for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) m[(7 + i) * N + 7 + j] += g[i * 2 + j];
  assert.equal(n, N);
  for (let k = 0; k < N * N; k++) assert.ok(Math.abs(f[k] + m[k]) <= 1e-12 * (1 + Math.abs(m[k])), `entry ${k}: ${f[k]} vs −M ${-m[k]}`);
});

// [1, 1] is widened to [1 − 1e-5, 1 + 1e-5] for the solve (sdp.ts, widenLinear): the value is exact to about 1e-5
test('a linear network (slopes [1, 1]): LipSDP equals ‖W_1W_0‖, not the product of norms', () => {
  const rng = new Random(3);
  const layers = randomDense([4, 6, 3], rng);
  const exact = sigmaMax(matmul(layers[1].w, 3, 6, layers[0].w, 4), 3, 4);
  for (const variant of ['neuron', 'layer'] as const) {
    const b = lipSdpBound(problemOf(layers, [1, 1]), { variant })!;
    assert.ok(b.value >= exact * (1 - 1e-12) && b.value <= exact * (1 + 1e-4), `${variant}: ${b.value} vs ‖W_1W_0‖ = ${exact}`);
  }
  assert.ok(exact < 0.95 * productOfNorms(layers, [1, 1]), 'the test needs a product of norms visibly above ‖W_1W_0‖');
});

test('one hidden unit: LipSDP is |w_1·w_0|·max|slope| exactly, and sigmoid scales the ReLU value by ¼ on one hidden layer', () => {
  const scalar: Dense[] = [{ w: Float64Array.of(3), rows: 1, cols: 1, b: Float64Array.of(0) }, { w: Float64Array.of(-2), rows: 1, cols: 1, b: Float64Array.of(0) }];
  for (const [slope, want] of [[[0, 0.25], 1.5], [[0, 1], 6], [[-0.5, 1], 6], [[-2, 1], 12]] as const) {
    const b = lipSdpBound(problemOf(scalar, slope), { variant: 'neuron' })!;
    assert.ok(b.value >= want && b.value <= want * (1 + 1e-5), `slope [${slope}]: ${b.value} vs ${want}`);
  }
  const rng = new Random(5);
  const layers = randomDense([3, 7, 2], rng);
  const relu = lipSdpBound(problemOf(layers, [0, 1]), { variant: 'neuron' })!.value;
  const sig = lipSdpBound(problemOf(layers, [0, 0.25]), { variant: 'neuron' })!.value;
  assert.ok(Math.abs(sig - relu / 4) <= 1e-5 * relu, `sigmoid ${sig} vs ReLU/4 ${relu / 4}`);
});

test('random tiny nets: witness ≤ brute force over slope patterns ≤ Neuron ≤ Layer ≤ product of norms', () => {
  const cases: [number[], keyof typeof ACTS, number][] = [[[3, 8, 2], 'relu', 1], [[4, 5, 4, 3], 'relu', 2], [[3, 6, 2], 'sigmoid', 3], [[3, 5, 5, 2], 'leakyNeg', 4], [[2, 4, 4, 4, 2], 'tanh', 5]];
  for (const [widths, name, seed] of cases) {
    const rng = new Random(seed);
    const act = ACTS[name];
    const layers = randomDense(widths, rng);
    const p = problemOf(layers, act.slope);
    const neuron = lipSdpBound(p, { variant: 'neuron' })!;
    const layer = lipSdpBound(p, { variant: 'layer' })!;
    const brute = bruteForce(layers, act.slope, '2');
    const lower = witness(layers, act, '2', rng, 100);
    const product = productOfNorms(layers, act.slope);
    const tag = `${name} ${widths.join('-')}`;
    assert.ok(neuron.converged && layer.converged, tag);
    assert.ok(lower <= brute * (1 + 1e-12), `${tag}: witness ${lower} > brute ${brute}`);
    assert.ok(brute <= neuron.value, `${tag}: brute force ${brute} > LipSDP-Neuron ${neuron.value}`);
    assert.ok(neuron.value <= layer.value * (1 + 1e-6), `${tag}: Neuron ${neuron.value} > Layer ${layer.value}`);
    assert.ok(layer.value <= product * (1 + 1e-6), `${tag}: Layer ${layer.value} > product of norms ${product}`);
    // the certificate costs almost nothing: certified within 1e-6 of what the solver reached
    assert.ok(neuron.value <= neuron.estimate * (1 + 1e-6), `${tag}: certified ${neuron.value} far above the solver's ${neuron.estimate}`);
  }
});

test('the certificate refuses a ρ below the optimum, negative multipliers, and any ρ below the exact constant squared', () => {
  const rng = new Random(8);
  const layers = randomDense([3, 6, 2], rng);
  const p = problemOf(layers, [0, 1]);
  const sol = solveLipSdp(p, { variant: 'neuron' });
  const cert = certifyLipSdp(p, sol)!;
  assert.ok(cert, 'no certificate at the solver\'s points');
  assert.ok(certifyLmi(p, cert.point));
  assert.equal(certifyLmi(p, { rho: cert.point.rho * (1 - 1e-3), t: cert.point.t }), false, 'a ρ 0.1% below the optimum was accepted');
  const brute = bruteForce(layers, [0, 1], '2');
  for (const scale of [0.5, 1, 2, 10]) {
    assert.equal(certifyLmi(p, { rho: brute * brute * (1 - 1e-6), t: cert.point.t.map((x) => x * scale) }), false, `ρ below brute² accepted with t × ${scale}`);
  }
  const negative = Float64Array.from(cert.point.t);
  negative[0] = -1e-3;
  assert.equal(certifyLmi(p, { rho: cert.point.rho * 2, t: negative }), false, 'a negative multiplier was accepted');
});

test('a work budget stops the solver early: the value stays certified, only looser', () => {
  const rng = new Random(9);
  const layers = randomDense([3, 6, 6, 2], rng);
  const p = problemOf(layers, [0, 1]);
  const full = lipSdpBound(p, { variant: 'neuron' })!;
  const short = lipSdpBound(p, { variant: 'neuron', maxWork: 5e4 })!;
  assert.ok(short, 'no certificate after a short solve');
  assert.equal(short.converged, false);
  assert.ok(short.value >= full.value * (1 - 1e-9), `${short.value} below the converged ${full.value}`);
  assert.ok(short.value >= bruteForce(layers, [0, 1], '2'));
});

test('LipSDP\'s dense product: the WebAssembly row kernels give matmulJs\'s bits, banded (the LMI pattern) and dense, odd and even n', () => {
  const rng = new Random(31);
  for (const n of [1, 2, 5, 8, 13, 64, 101]) {
    const a = Float64Array.from({ length: n * n }, () => rng.normal());
    const b = Float64Array.from({ length: n * n }, () => rng.normal() * 2 ** Math.round(rng.normal() * 4));
    assert.deepEqual(Array.from(lmiMatmul(a, b, n)), Array.from(matmulJs(a, b, n)), `dense n=${n}`);
    // bands of a block tridiagonal pattern: rows in blocks of 3, each nonzero on its block and the neighbours'
    const lo = new Int32Array(n), hi = new Int32Array(n);
    for (let k = 0; k < n; k++) { const blk = Math.floor(k / 3); lo[k] = Math.max(0, (blk - 1) * 3); hi[k] = Math.min(n, (blk + 2) * 3); }
    assert.deepEqual(Array.from(lmiMatmul(a, b, n, lo, hi)), Array.from(matmulJs(a, b, n, lo, hi)), `banded n=${n}`);
  }
  // and it is A·B: one entry against a direct sum
  const n = 7;
  const a = Float64Array.from({ length: n * n }, (_, i) => (i % 5) - 2), b = Float64Array.from({ length: n * n }, (_, i) => (i % 3) + 0.5);
  const c = lmiMatmul(a, b, n);
  let e = 0;
  for (let k = 0; k < n; k++) e += a[2 * n + k] * b[k * n + 4];
  assert.equal(c[2 * n + 4], e);
});
