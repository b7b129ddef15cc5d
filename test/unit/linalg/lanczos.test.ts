import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { tridiagonalLargestEigenvalue } from '../../../src/linalg/dense.js';
import { lanczosTop, projectBasis, subtractBasis, tridiagonalEigenvector, type SymmetricOperator } from '../../../src/linalg/lanczos.js';
import { Random } from '../../../src/linalg/random.js';
import { kernelThread } from '../../../src/linalg/lanczos-threads.js';
import { availableParallelism } from 'node:os';

/** A diagonal PSD operator, optionally with float32 rounding of every product (as onnxruntime's kernels give). */
function diagonal(lambda: Float64Array, float32 = false): SymmetricOperator {
  const n = lambda.length;
  const product = (v: Float64Array, out: Float64Array) => {
    for (let i = 0; i < n; i++) out[i] = float32 ? Math.fround(Math.fround(lambda[i]) * Math.fround(v[i])) : lambda[i] * v[i];
  };
  return { n, apply: async (v) => { const out = new Float64Array(n); product(v, out); return out; }, applyInto: async (v, out) => product(v, out) };
}

const spectrum = (n: number, top = 1) => Float64Array.from({ length: n }, (_, i) => (i === 0 ? top : 0.9 * (1 - i / n)));

test('applyInto and apply give the same Lanczos run', async () => {
  const op = diagonal(spectrum(300));
  const start = new Random(1).unitVector(300);
  const a = await lanczosTop(op, { start, maxSteps: 25, stop: () => false });
  const b = await lanczosTop({ n: op.n, apply: op.apply }, { start, maxSteps: 25, stop: () => false });
  assert.equal(a.steps, 25);
  assert.equal(a.theta, b.theta);
  assert.deepEqual(a.history, b.history);
  assert.deepEqual(a.ritzVector, b.ritzVector);
});

test('reused basis buffers of other sizes leave no trace between runs', async () => {
  const fresh = await lanczosTop(diagonal(spectrum(257)), { start: new Random(4).unitVector(257), maxSteps: 30, stop: () => false });
  // runs of larger and smaller sizes in between (they put buffers of their sizes in the pool), then the same run
  await lanczosTop(diagonal(spectrum(1000)), { start: new Random(5).unitVector(1000), maxSteps: 30, stop: () => false });
  await lanczosTop(diagonal(spectrum(100)), { start: new Random(6).unitVector(100), maxSteps: 30, stop: () => false });
  const again = await lanczosTop(diagonal(spectrum(257)), { start: new Random(4).unitVector(257), maxSteps: 30, stop: () => false });
  assert.equal(again.theta, fresh.theta);
  assert.deepEqual(again.ritzVector, fresh.ritzVector);
});

test('two runs at once do not share buffers', async () => {
  const [x, y] = [diagonal(spectrum(400, 2)), diagonal(spectrum(400, 3))];
  const alone = await Promise.all([
    lanczosTop(x, { start: new Random(7).unitVector(400), maxSteps: 20, stop: () => false }),
    lanczosTop(y, { start: new Random(8).unitVector(400), maxSteps: 20, stop: () => false }),
  ]);
  const sequential = [
    await lanczosTop(x, { start: new Random(7).unitVector(400), maxSteps: 20, stop: () => false }),
    await lanczosTop(y, { start: new Random(8).unitVector(400), maxSteps: 20, stop: () => false }),
  ];
  assert.equal(alone[0].theta, sequential[0].theta);
  assert.equal(alone[1].theta, sequential[1].theta);
});

/** Textbook Lanczos with full reorthogonalisation by modified Gram–Schmidt, twice, every step: the reference. */
async function referenceTheta(op: SymmetricOperator, start: Float64Array, steps: number): Promise<number[]> {
  const n = op.n;
  const q: Float64Array[] = [Float64Array.from(start)];
  const alpha: number[] = [], beta: number[] = [], thetas: number[] = [];
  for (let j = 0; j < steps; j++) {
    const w = await op.apply(q[j]);
    let a = 0;
    for (let i = 0; i < n; i++) a += w[i] * q[j][i];
    alpha.push(a);
    for (let pass = 0; pass < 2; pass++) for (const v of q) {
      let c = 0;
      for (let i = 0; i < n; i++) c += w[i] * v[i];
      for (let i = 0; i < n; i++) w[i] -= c * v[i];
    }
    // largest eigenvalue of the tridiagonal by bisection on Sturm counts
    let lo = -10, hi = 10;
    for (let it = 0; it < 200; it++) {
      const x = (lo + hi) / 2;
      let d = 1, below = 0;
      for (let i = 0; i < alpha.length; i++) { d = alpha[i] - x - (i > 0 ? beta[i - 1] ** 2 / d : 0); if (d === 0) d = -1e-300; if (d < 0) below++; }
      if (below === alpha.length) hi = x; else lo = x;
    }
    thetas.push(hi);
    let b = 0;
    for (let i = 0; i < n; i++) b += w[i] * w[i];
    b = Math.sqrt(b);
    beta.push(b);
    q.push(w.map((x) => x / b));
  }
  return thetas;
}

test('with float32 products, every Ritz value matches textbook full reorthogonalisation (basis orthogonal to working precision)', async () => {
  // many steps on spectra where the top Ritz value converges early: without reorthogonalisation the basis loses
  // orthogonality and the Ritz values drift from the reference by ~1e-8 (the float32 noise); with it they agree to
  // rounding
  const n = 2000;
  for (const lambda of [
    Float64Array.from({ length: n }, (_, i) => (i < 5 ? 1 - 1e-3 * i : 0.5 * (1 - i / n))),
    Float64Array.from({ length: n }, (_, i) => 0.9 ** i),
  ]) {
    const op = diagonal(lambda, true);
    const start = new Random(11).unitVector(n);
    const r = await lanczosTop(op, { start, maxSteps: 120, stop: () => false });
    const ref = await referenceTheta(op, start, 120);
    assert.equal(r.steps, 120);
    for (let k = 0; k < 120; k++) assert.ok(Math.abs(r.history[k] - ref[k]) <= 1e-12 * ref[k], `step ${k + 1}: θ ${r.history[k]} vs reference ${ref[k]}`);
    let norm = 0;
    for (const x of r.ritzVector) norm += x * x;
    assert.ok(Math.abs(norm - 1) < 1e-12);
    assert.ok(Math.abs(r.ritzVector[0]) > 0.999, `Ritz vector ${r.ritzVector[0]} along e_1`);
    // the float32 noise left after the three-term recurrence is small: one Gram–Schmidt pass removes it
    assert.ok(r.extraPasses <= 5, `${r.extraPasses} second passes`);
  }
});

test('an exactly invariant Krylov space stops the run with θ an eigenvalue', async () => {
  const lambda = Float64Array.from({ length: 50 }, (_, i) => [4, 2, 1][i % 3]);
  const r = await lanczosTop(diagonal(lambda), { start: new Random(2).unitVector(50), maxSteps: 40, stop: () => false });
  assert.ok(r.invariant);
  assert.equal(r.steps, 3);
  assert.ok(Math.abs(r.theta - 4) < 1e-12);
});

test('tridiagonal eigenvector by inverse iteration matches a dense eigendecomposition', () => {
  const rng = new Random(21);
  for (const k of [2, 3, 7, 30, 120]) {
    for (const close of [false, true]) {
      const alpha = Array.from({ length: k }, () => rng.normal());
      const beta = Array.from({ length: k - 1 }, () => (close ? 1e-9 : 1) * rng.normal());
      if (close && k > 2) { alpha[0] = 5; alpha[1] = 5 + 1e-7; }
      const t = Matrix.zeros(k, k);
      for (let i = 0; i < k; i++) { t.set(i, i, alpha[i]); if (i + 1 < k) { t.set(i, i + 1, beta[i]); t.set(i + 1, i, beta[i]); } }
      const e = new EigenvalueDecomposition(t, { assumeSymmetric: true });
      const values = e.realEigenvalues;
      const top = values.indexOf(Math.max(...values));
      const x = tridiagonalEigenvector(alpha, beta, tridiagonalLargestEigenvalue(alpha, beta, k));
      const ref = e.eigenvectorMatrix.getColumn(top);
      const overlap = Math.abs(ref.reduce((a, r, i) => a + r * x[i], 0));
      assert.ok(overlap > 1 - 1e-9, `k=${k}${close ? ' (near-double top)' : ''}: |⟨x, x_ref⟩| = ${overlap}`);
      let residual = 0;
      for (let i = 0; i < k; i++) {
        const tx = alpha[i] * x[i] + (i > 0 ? beta[i - 1] * x[i - 1] : 0) + (i + 1 < k ? beta[i] * x[i + 1] : 0);
        residual = Math.max(residual, Math.abs(tx - values[top] * x[i]));
      }
      assert.ok(residual < 1e-12 * Math.max(...values.map(Math.abs)), `k=${k}: residual ${residual}`);
    }
  }
});

test('long vectors: the two-half reorthogonalisation matches the textbook reference, and the kernel thread changes no bit', async () => {
  // n ≥ 2^16 splits every projection into two halves, the upper one on the kernel thread when the machine has two cores
  const n = 70_001;
  const op = diagonal(Float64Array.from({ length: n }, (_, i) => (i < 5 ? 1 - 1e-3 * i : 0.5 * (1 - i / n))), true);
  const start = new Random(12).unitVector(n);
  const steps = 40;
  // started and waited for first: until it answers, lanczosTop does the upper halves on its own thread
  const before = kernelThread({ wait: true })?.jobs ?? 0;
  const threaded = await lanczosTop(op, { start, maxSteps: steps, stop: () => false });
  const serial = await lanczosTop(op, { start, maxSteps: steps, stop: () => false, parallel: false });
  if (availableParallelism() > 1) {
    assert.ok(kernelThread() !== null, 'a kernel thread starts on a multi-core machine');
    assert.ok(kernelThread()!.jobs - before >= 2 * (steps - 1), `the kernel thread ran ${kernelThread()!.jobs - before} jobs`);
  } else {
    console.log('# single core: the kernel thread is not started; only the serial halves are checked');
  }
  assert.deepEqual(threaded.history, serial.history);
  assert.deepEqual(Array.from(threaded.ritzVector), Array.from(serial.ritzVector));
  const ref = await referenceTheta(op, start, steps);
  for (let k = 0; k < steps; k++) assert.ok(Math.abs(serial.history[k] - ref[k]) <= 1e-12 * ref[k], `step ${k + 1}: θ ${serial.history[k]} vs reference ${ref[k]}`);
});

test('the reorthogonalisation kernels over two halves (thread or not) equal plain float64 sums, chunk pairs and remainder included', () => {
  // 11 vectors: a pair of full chunks (the two-chunk pass), then three in the last chunk
  const n = 70_001, count = 11;
  const rng = new Random(21);
  const chunks = [0, 1, 2].map(() => Float64Array.from({ length: 4 * n }, () => rng.normal()));
  const w0 = Float64Array.from({ length: n }, () => rng.normal());
  const coef = Float64Array.from({ length: count }, () => rng.normal());
  const q = (b: number, i: number) => chunks[Math.floor(b / 4)][(b % 4) * n + i];
  const dots = Array.from({ length: count }, (_, b) => { let s = 0; for (let i = 0; i < n; i++) s += w0[i] * q(b, i); return s; });
  const rest = Float64Array.from(w0, (x, i) => { let s = x; for (let b = 0; b < count; b++) s -= coef[b] * q(b, i); return s; });
  for (const parallel of [true, false]) {
    const shared = chunks.map((c) => { const s = new Float64Array(new SharedArrayBuffer(c.byteLength)); s.set(c); return s; });
    const slot = new Float64Array(new SharedArrayBuffer(8 * 4 * n)).subarray(n, 2 * n);
    slot.set(w0);
    const h = new Float64Array(count);
    projectBasis(shared, count, slot, h, parallel);
    for (let b = 0; b < count; b++) assert.ok(Math.abs(h[b] - dots[b]) <= 1e-12 * Math.sqrt(n) * 4, `parallel ${parallel}: h[${b}] ${h[b]} vs ${dots[b]}`);
    subtractBasis(shared, count, slot, coef, parallel);
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(slot[i] - rest[i]));
    assert.ok(err <= 1e-12, `parallel ${parallel}: subtract error ${err}`);
  }
});
