/**
 * The float64 Gram product through onnxruntime (src/backend/dense-gram.ts, OperatorBackend.denseGram): the contract the
 * dense certificates rest on (each entry within γ_n·(|A||A|ᵀ)_ij of the exact dot product), exact symmetry, the same
 * bits for every thread count, and certificates through it that still bound the exact σ_max.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { denseGramKernel, DENSE_GRAM_MIN_MACS } from '../../../src/backend/dense-gram.js';
import { ortWorkersFor, setOrtWorkers } from '../../../src/backend/ort-pool.js';
import { denseSpectralNormBound, denseSpectralNormBoundWith, gamma } from '../../../src/linalg/dense.js';
import { Random } from '../../../src/linalg/random.js';
import { sigmaMax } from '../../helpers/dense.js';

/** Error-free product and sum (Dekker, Knuth): the dot product in double-double, within ~n·u² of the exact one. */
function exactDot(x: Float64Array, y: Float64Array): number {
  const split = (a: number) => { const c = 134217729 * a; const hi = c - (c - a); return [hi, a - hi]; };
  let s = 0, e = 0;
  for (let k = 0; k < x.length; k++) {
    const p = x[k] * y[k];
    const [xh, xl] = split(x[k]), [yh, yl] = split(y[k]);
    const pe = xl * yl - (((p - xh * yh) - xl * yh) - xh * yl);
    const t = s + p;
    const z = t - s;
    e += (s - (t - z)) + (p - z) + pe;
    s = t;
  }
  return s + e;
}

function randomMatrix(rng: Random, m: number, n: number, spread: number): Float64Array {
  // entries of widely different sizes (2^±spread), as folded BatchNormalization scales give
  return Float64Array.from({ length: m * n }, () => rng.normal() * 2 ** Math.round((rng.next() - 0.5) * spread));
}

test('float64 Gram through onnxruntime: every entry within γ_n·(|A||A|ᵀ)_ij of the exact dot product, exactly symmetric', async () => {
  const rng = new Random(21);
  const kernel = denseGramKernel({ device: 'cpu' });
  for (const [m, n, spread] of [[120, 700, 0], [160, 400, 20], [130, 600, 8]] as const) {
    const a = randomMatrix(rng, m, n, spread);
    const g = await kernel(a, m, n);
    assert.ok(g, `${m}×${n} is above the size where the kernel runs`);
    assert.equal(g.length, m * m);
    const gn = gamma(n);
    let worst = 0;
    for (let i = 0; i < m; i++) {
      const ai = a.subarray(i * n, (i + 1) * n);
      for (let j = 0; j < m; j++) {
        const aj = a.subarray(j * n, (j + 1) * n);
        assert.equal(g[i * m + j], g[j * m + i], `entry (${i}, ${j}) is not symmetric`);
        let abs = 0;
        for (let k = 0; k < n; k++) abs += Math.abs(ai[k] * aj[k]);
        const err = Math.abs(g[i * m + j] - exactDot(ai, aj));
        // float32 arithmetic anywhere would be ~10⁸ times over this
        assert.ok(err <= gn * abs, `entry (${i}, ${j}) of a ${m}×${n} Gram: error ${err} over γ_n·|A||A|ᵀ = ${gn * abs}`);
        worst = Math.max(worst, err / (gn * abs || 1));
      }
    }
    assert.ok(worst < 0.5, `the error reaches ${worst} of the allowed γ_n·|A||A|ᵀ`);
  }
});

test('float64 Gram through onnxruntime: the same bits with 1 and 2 threads; too small a product is left to JavaScript', async () => {
  const rng = new Random(22);
  const a = randomMatrix(rng, 300, 700, 4);
  const one = await denseGramKernel({ device: 'cpu', threads: 1 })(a, 300, 700);
  const two = await denseGramKernel({ device: 'cpu', threads: 2 })(a, 300, 700);
  assert.ok(one && two);
  assert.ok(one.every((x, i) => Object.is(x, two[i])), 'the Gram matrix depends on the thread count');
  assert.ok(60 * 60 * 100 < DENSE_GRAM_MIN_MACS);
  assert.equal(await denseGramKernel({ device: 'cpu' })(a.subarray(0, 6000), 60, 100), null);
});

test('a certified σ_max through the onnxruntime Gram: ≥ the exact σ_max, within 10⁻¹⁰ of it and of the JavaScript product’s bound', async () => {
  const rng = new Random(23);
  const kernel = denseGramKernel({ device: 'cpu' });
  for (const [rows, cols] of [[400, 160], [180, 320], [240, 240]] as const) {
    const w = randomMatrix(rng, rows, cols, 6);
    const exact = sigmaMax(w, rows, cols);
    const fast = await denseSpectralNormBoundWith(w, rows, cols, { gram: kernel });
    const js = denseSpectralNormBound(w, rows, cols);
    assert.equal(fast.method, 'exact-eig');
    assert.ok(fast.value >= exact, `${fast.value} < exact ${exact} (${rows}×${cols})`);
    assert.ok(fast.value <= exact * (1 + 1e-10), `${fast.value} vs exact ${exact}: not tight`);
    assert.ok(Math.abs(fast.value - js.value) <= 1e-10 * js.value, `${fast.value} vs the JavaScript product's ${js.value}`);
  }
});

test('the certificate runs in slices: the event loop runs between them, and the numbers are those of the synchronous run', async () => {
  const rng = new Random(24);
  const w = randomMatrix(rng, 500, 400, 3);
  let ticks = 0;
  let running = true;
  const tick = () => { ticks++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const sliced = await denseSpectralNormBoundWith(w, 500, 400);
  running = false;
  // a 400×400 Gram: Lanczos and a Cholesky of 10⁷ multiply-adds or more each, in slices of 2²⁰
  assert.ok(ticks >= 4, `the event loop ran ${ticks} times during the certificate`);
  assert.deepEqual(sliced, denseSpectralNormBound(w, 500, 400));
});

test('float64 Gram on a session worker thread: the same bits as on the main thread; the caller keeps its matrix unless it hands it over', async () => {
  const rng = new Random(25);
  const a = randomMatrix(rng, 300, 500, 4);
  const keep = Float64Array.from(a);
  const kernel = denseGramKernel({ device: 'cpu', threads: 2 });
  // 2·300²·500 flop: past WORKER_MIN_FLOP, so on the worker thread two threads give
  assert.ok(ortWorkersFor({ device: 'cpu', threads: 2 }, 2 * 300 * 300 * 500) > 0, 'two threads give a session worker');
  const onWorker = await kernel(a, 300, 500);
  assert.ok(onWorker);
  assert.deepEqual(a, keep, 'the matrix is left to the caller');
  setOrtWorkers('off');
  let onMain: Float64Array | null;
  try {
    onMain = await kernel(a, 300, 500);
  } finally {
    setOrtWorkers('auto');
  }
  assert.ok(onMain && onMain.every((x, i) => Object.is(x, onWorker[i])), 'worker and main thread differ');
  const given = Float64Array.from(keep);
  const handed = await kernel(given, 300, 500, true);
  assert.ok(handed && handed.every((x, i) => Object.is(x, onWorker[i])));
});
