/**
 * The Lanczos-polynomial bound (linalg/probabilistic.ts lanczosPolynomialBound, ritzFactor): λ_max ≤ the root of
 * χ_k(x) = β_1⋯β_k / t unless the start's component along the top eigenvector is below t = startComponentFloor(n, δ).
 * Checked against exact eigenvalues of symmetric matrices with chosen spectra (Q·diag·Qᵀ, Q from a float64 QR), on
 * many random starts; the failure event itself (a start with no top component) shows the bound depends on it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Matrix, QrDecomposition } from 'ml-matrix';
import { lanczosTop } from '../../../src/linalg/lanczos.js';
import { kwFactor, kwStepsFor, kwStopSteps, lanczosPolynomialBound, ritzFactor, startComponentFloor } from '../../../src/linalg/probabilistic.js';
import { Random } from '../../../src/linalg/random.js';
import { denseMul } from '../../helpers/dense.js';

/** A symmetric n×n matrix with eigenvalues `lambda` (descending) and its top eigenvector, row-major float64. */
function withSpectrum(lambda: readonly number[], rng: Random): { g: Float64Array; top: Float64Array } {
  const n = lambda.length;
  const a = new Matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a.set(i, j, rng.normal());
  const q = new QrDecomposition(a).orthogonalMatrix;
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { let s = 0; for (let k = 0; k < n; k++) s += q.get(i, k) * lambda[k] * q.get(j, k); g[i * n + j] = s; }
  return { g, top: Float64Array.from({ length: n }, (_, i) => q.get(i, 0)) };
}

function operator(g: Float64Array, n: number) {
  return {
    n,
    apply: async (v: Float64Array) => denseMul(g, n, n, v, false),
  };
}

const spectra: Record<string, (n: number) => number[]> = {
  // an isolated top: converges fast, the bound should close on λ_max
  separated: (n) => Array.from({ length: n }, (_, i) => (i === 0 ? 2 : 1 - i / n)),
  // a top cluster 10⁻³ wide: KW-like behaviour
  clustered: (n) => Array.from({ length: n }, (_, i) => (i < 5 ? 1 - 2e-4 * i : 0.9 * (1 - i / n))),
  // evenly spread, no gap at all
  uniform: (n) => Array.from({ length: n }, (_, i) => 1 - i / n),
};

test('startComponentFloor: P(|⟨v, x⟩| < t) ≤ δ for v uniform on the sphere (Monte Carlo), and not far below it', () => {
  const rng = new Random(12);
  for (const n of [3, 10, 200]) {
    const delta = 0.05, t = startComponentFloor(n, delta), trials = 20000;
    let below = 0;
    for (let s = 0; s < trials; s++) if (Math.abs(rng.unitVector(n)[0]) < t) below++;
    const p = below / trials;
    // the binomial's standard deviation at 0.05 over 20000 trials is 0.0015
    assert.ok(p <= delta + 0.005, `n = ${n}: ${p} > δ`);
    assert.ok(p >= 0.5 * delta, `n = ${n}: ${p}, the floor is far from sharp`);
  }
  assert.throws(() => startComponentFloor(2, 0.1));
});

test('the polynomial bound is never below λ_max over random starts, and closes on it where the top is isolated', async () => {
  const n = 120, delta = 1e-6;
  const rng = new Random(5);
  for (const [name, spectrum] of Object.entries(spectra)) {
    const lambda = spectrum(n);
    const { g } = withSpectrum(lambda, rng);
    const op = operator(g, n);
    let tightest = Infinity;
    for (let s = 0; s < 30; s++) {
      const steps = 8 + (s % 4) * 6;
      const res = await lanczosTop(op, { start: rng.unitVector(n), maxSteps: steps, stop: () => false, parallel: false });
      const t = res.tridiagonal!;
      assert.equal(t.alpha.length, res.steps);
      assert.equal(t.beta.length, res.steps);
      const bound = lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, delta);
      assert.ok(bound >= lambda[0] * (1 - 1e-12), `${name}, ${steps} steps: ${bound} < λ_max ${lambda[0]}`);
      assert.ok(bound >= res.theta);
      tightest = Math.min(tightest, bound / lambda[0]);
      // ritzFactor never exceeds KW's at δ/2
      const f = ritzFactor(res, n, delta);
      assert.ok(f.factor <= kwFactor(n, res.steps, delta / 2));
      assert.ok(res.theta * f.factor ** 2 >= lambda[0] * (1 - 1e-12));
    }
    if (name === 'separated') assert.ok(tightest < 1 + 1e-9, `${name}: best bound/λ_max ${tightest}`);
  }
});

test('the failure event: a start with no component along the top eigenvector gives a polynomial bound below λ_max', async () => {
  const n = 80;
  const rng = new Random(9);
  const lambda = spectra.separated(n);
  const { g, top } = withSpectrum(lambda, rng);
  const v = rng.unitVector(n);
  let c = 0;
  for (let i = 0; i < n; i++) c += v[i] * top[i];
  let s = 0;
  for (let i = 0; i < n; i++) { v[i] -= c * top[i]; s += v[i] * v[i]; }
  for (let i = 0; i < n; i++) v[i] /= Math.sqrt(s);
  const res = await lanczosTop(operator(g, n), { start: v, maxSteps: 20, stop: () => false, parallel: false });
  const t = res.tridiagonal!;
  // what the run sees is the operator without its top: the bound closes on the second eigenvalue, far below λ_max
  assert.ok(lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, 1e-6) < 0.5 * (lambda[0] + lambda[1]));
});

test('ritzFactor: 1 for an exhausted space, KW where T_k is unknown or n < 3, the polynomial where smaller', () => {
  assert.deepEqual(ritzFactor({ theta: 2, steps: 5, invariant: true }, 5, 1e-6), { factor: 1, method: 'exact' });
  assert.deepEqual(ritzFactor({ theta: 2, steps: 10, invariant: false }, 100, 1e-6), { factor: kwFactor(100, 10, 1e-6), method: 'kw' });
  assert.equal(ritzFactor({ theta: 2, steps: 2, invariant: false, tridiagonal: { alpha: [1, 1], beta: [0.5, 0.1] } }, 2, 1e-6).method, 'kw');
  // T_2 = [[2, 1e-9], [1e-9, 0]] with a final β of 1e-9: converged, the polynomial wins
  const f = ritzFactor({ theta: 2, steps: 2, invariant: false, tridiagonal: { alpha: [2, 0], beta: [1e-9, 1e-9] } }, 50, 1e-6);
  assert.equal(f.method, 'poly');
  assert.ok(f.factor > 1 && f.factor < 1 + 1e-6);
});

test('kwStopSteps is the first step whose KW factor at δ is at most 1 + tol (kwStepsFor rounded either way would miss it)', () => {
  for (const n of [3, 50, 1000, 200_704, 5_000_000]) {
    for (const [delta, tol] of [[1e-6, 0.05], [1e-3, 0.01], [0.1, 0.5]] as const) {
      const k0 = kwStopSteps(n, delta, tol);
      assert.ok(k0 >= 3 && kwFactor(n, k0, delta) <= 1 + tol, `n ${n}: KW at k0 = ${k0}`);
      if (k0 > 3) assert.ok(kwFactor(n, k0 - 1, delta) > 1 + tol, `n ${n}: k0 = ${k0} is not the first`);
      assert.ok(Math.abs(k0 - Math.max(3, kwStepsFor(n, delta, 1 + tol))) <= 1);
    }
  }
});

test('ritzFactor takes KW at k0 for a run that stopped later (KW holds at a fixed step), at the run\'s own steps before k0', () => {
  const late = { theta: 2, steps: 40, invariant: false };
  assert.deepEqual(ritzFactor(late, 1000, 1e-6, 30), { factor: kwFactor(1000, 30, 1e-6), method: 'kw' });
  assert.ok(kwFactor(1000, 30, 1e-6) > kwFactor(1000, 40, 1e-6));
  // before k0 (maxSteps, or an invariant space): the run's own count, the larger factor
  assert.deepEqual(ritzFactor({ theta: 2, steps: 20, invariant: false }, 1000, 1e-6, 30), { factor: kwFactor(1000, 20, 1e-6), method: 'kw' });
  // with T_k known: KW at δ/2 at k0 against the polynomial, whose event does not depend on the step
  const t = { alpha: Array.from({ length: 40 }, (_, i) => (i === 0 ? 2 : 1)), beta: Array.from({ length: 40 }, () => 0.5) };
  const f = ritzFactor({ ...late, theta: 2.3, tridiagonal: t }, 1000, 1e-6, 30);
  const poly = Math.sqrt(lanczosPolynomialBound(t.alpha, t.beta, 2.3, 1000, 5e-7) / 2.3) * (1 + 2 ** -50);
  assert.equal(f.factor, Math.min(kwFactor(1000, 30, 5e-7), poly));
});

test('at a large δ the bound fails on at most about a δ share of random starts (it would fail on most without the floor t)', async () => {
  const n = 60, delta = 0.2, trials = 300;
  const rng = new Random(21);
  const lambda = spectra.uniform(n);
  const { g } = withSpectrum(lambda, rng);
  const op = operator(g, n);
  let failed = 0, failedWithoutFloor = 0;
  for (let s = 0; s < trials; s++) {
    const res = await lanczosTop(op, { start: rng.unitVector(n), maxSteps: 5, stop: () => false, parallel: false });
    const t = res.tridiagonal!;
    if (lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, delta) < lambda[0]) failed++;
    // δ chosen so that t = 1: the bound as if the start lay along the top eigenvector
    if (lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, Math.sqrt((2 * (n - 1)) / Math.PI)) < lambda[0]) failedWithoutFloor++;
  }
  assert.ok(failed <= delta * trials * 1.3, `${failed} of ${trials} failed at δ = ${delta}`);
  assert.ok(failedWithoutFloor >= 0.9 * trials, `${failedWithoutFloor} of ${trials} without the floor`);
});

test('a start whose top component is just above the floor t: the bound holds on every run, however far past convergence', async () => {
  // In exact arithmetic |γ₁| ≥ t makes the bound certain; these runs check that float64 Lanczos (with its
  // reorthogonalisation) keeps it so where γ₁ is as small as the bound allows and the β's fall to rounding level.
  const n = 150, delta = 1e-6;
  const t = startComponentFloor(n, delta);
  const rng = new Random(33);
  const cases: Record<string, number[]> = {
    'isolated top': spectra.separated(n),
    'top 10⁻³ above a uniform bulk': Array.from({ length: n }, (_, i) => (i === 0 ? 1.001 : 1 - i / n)),
    'top 10⁻⁶ above a uniform bulk': Array.from({ length: n }, (_, i) => (i === 0 ? 1 + 1e-6 : 1 - i / n)),
    'a few large, the rest tiny': Array.from({ length: n }, (_, i) => (i < 4 ? 10 - i : 1e-6 * (n - i))),
  };
  for (const [name, lambda] of Object.entries(cases)) {
    const { g, top } = withSpectrum(lambda, rng);
    for (const steps of [10, 30, 60, 100]) {
      const w = rng.unitVector(n);
      let c = 0;
      for (let i = 0; i < n; i++) c += w[i] * top[i];
      let s = 0;
      for (let i = 0; i < n; i++) { w[i] -= c * top[i]; s += w[i] * w[i]; }
      const gamma = 1.001 * t;
      const v = Float64Array.from(w, (x, i) => gamma * top[i] + Math.sqrt(1 - gamma * gamma) * (x / Math.sqrt(s)));
      const res = await lanczosTop(operator(g, n), { start: v, maxSteps: steps, stop: () => false, parallel: false });
      const tri = res.tridiagonal!;
      const bound = lanczosPolynomialBound(tri.alpha, tri.beta, res.theta, n, delta);
      assert.ok(bound >= lambda[0] * (1 - 1e-13), `${name}, ${res.steps} steps: ${bound} < λ_max ${lambda[0]} (θ ${res.theta})`);
    }
  }
});
