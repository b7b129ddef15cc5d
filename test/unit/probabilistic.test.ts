import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lanczosTop } from '../../src/linalg/lanczos.js';
import { kwEpsilon, kwFactor, kwStepsFor } from '../../src/linalg/probabilistic.js';
import { Random } from '../../src/linalg/random.js';

test('KW ε solves 1.648·√n·e^{−(2k−1)√ε} = δ', () => {
  for (const [n, k, d] of [[100, 10, 0.05], [3072, 31, 1e-6], [1e5, 60, 1e-3]]) {
    const eps = kwEpsilon(n, k, d);
    assert.ok(Math.abs(1.648 * Math.sqrt(n) * Math.exp(-(2 * k - 1) * Math.sqrt(eps)) - d) < 1e-9 * Math.max(1, d));
  }
  const k = kwStepsFor(3072, 1e-6, 1.05);
  assert.ok(kwFactor(3072, k, 1e-6) <= 1.05 && kwFactor(3072, k - 1, 1e-6) > 1.05);
});

test('probabilistic bound fails at most δ of the time on a tiny spectral gap (δ = 0.05)', async () => {
  // a diagonal PSD operator with λ1 = 1 and λ2 = 1 − 1e-4: Lanczos cannot separate them in a few steps
  const n = 400, delta = 0.05, k = 6;
  const lambda = Float64Array.from({ length: n }, (_, i) => (i === 0 ? 1 : i === 1 ? 1 - 1e-4 : 0.999 * Math.random() ** 0));
  for (let i = 2; i < n; i++) lambda[i] = 0.999 * (1 - i / n);
  const op = { n, apply: async (v: Float64Array) => Float64Array.from(v, (x, i) => lambda[i] * x) };
  let failures = 0;
  const trials = 300;
  for (let s = 0; s < trials; s++) {
    const r = await lanczosTop(op, { start: new Random(s).unitVector(n), maxSteps: k, stop: () => false });
    const upper = r.theta * kwFactor(n, r.steps, delta) ** 2;
    if (upper < 1) failures++;
  }
  assert.ok(failures / trials <= delta, `failure rate ${failures / trials} > δ`);
});

test('Lanczos converges to λ_max from below', async () => {
  const n = 50;
  const lambda = Float64Array.from({ length: n }, (_, i) => 1 / (1 + i));
  const op = { n, apply: async (v: Float64Array) => Float64Array.from(v, (x, i) => lambda[i] * x) };
  const r = await lanczosTop(op, { start: new Random(3).unitVector(n), maxSteps: 40, stop: () => false });
  assert.ok(r.theta <= 1 + 1e-12 && r.theta > 1 - 1e-8);
});
