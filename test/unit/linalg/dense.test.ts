import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Matrix, SVD } from 'ml-matrix';
import { isLipcheckError } from '../../../src/errors.js';
import {
  BudgetExceededError,
  denseCertificateFlop,
  denseInfNorm,
  denseSpectralNormBound,
  denseSpectralNormExact,
  denseSpectralNormGram,
  LANCZOS_SEED,
} from '../../../src/linalg/dense.js';
import { Random } from '../../../src/linalg/random.js';
import { mulberry32 } from '../../helpers/random.js';


/** A random n×n orthogonal matrix (row-major) as a product of `count` Householder reflections I − 2vvᵀ/‖v‖². */
function householderOrthogonal(n: number, rand: () => number, count = n): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  for (let h = 0; h < count; h++) {
    const v = Float64Array.from({ length: n }, () => rand() * 2 - 1);
    const vv = v.reduce((s, x) => s + x * x, 0);
    for (let r = 0; r < n; r++) {
      let dot = 0;
      for (let c = 0; c < n; c++) dot += q[r * n + c] * v[c];
      const f = (2 * dot) / vv;
      for (let c = 0; c < n; c++) q[r * n + c] -= f * v[c];
    }
  }
  return q;
}

/** W = U[:, :r]·diag(s)·V[:, :r]ᵀ for row-major orthogonal U (rows×rows) and V (cols×cols), r = s.length. */
function compose(u: Float64Array, s: number[], v: Float64Array, rows: number, cols: number): Float64Array {
  const w = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let k = 0; k < s.length; k++) acc += u[i * rows + k] * s[k] * v[j * cols + k];
      w[i * cols + j] = acc;
    }
  }
  return w;
}

/** Sylvester–Hadamard matrix of order 4^j scaled by 2^-j: exactly orthogonal, with dyadic entries ±2^-j. */
function hadamardOrthogonal(n: number): Float64Array {
  const scale = 1 / Math.sqrt(n);
  assert.equal(scale * scale * n, 1, 'n must be a power of 4 for an exact scale');
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let bits = i & j;
      let parity = 0;
      while (bits) {
        parity ^= bits & 1;
        bits >>>= 1;
      }
      h[i * n + j] = parity ? -scale : scale;
    }
  }
  return h;
}

/**
 * W = Q·diag(s) with Q a reflection whose first column is orthogonal to the Lanczos start vector: WWᵀ's top
 * eigenvector never enters the Krylov space, so only the Cholesky certificate can find s1 = 1.001·s2.
 */
function hiddenTopMatrix(m: number, seed: number): { w: Float64Array; s1: number } {
  const v = new Random(LANCZOS_SEED).unitVector(m);
  const rand = mulberry32(seed);
  const q1 = Float64Array.from({ length: m }, () => rand() - 0.5);
  for (let pass = 0; pass < 2; pass++) {
    const c = q1.reduce((acc, x, i) => acc + x * v[i], 0);
    for (let i = 0; i < m; i++) q1[i] -= c * v[i];
  }
  const nq = Math.sqrt(q1.reduce((acc, x) => acc + x * x, 0));
  for (let i = 0; i < m; i++) q1[i] /= nq;
  const u = Float64Array.from(q1, (x, i) => (i === 0 ? 1 : 0) - x);
  const uu = u.reduce((acc, x) => acc + x * x, 0);
  const s = Array.from({ length: m }, (_, i) => (i === 0 ? 2.002 : 2 - i / m));
  const w = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) w[i * m + j] = ((i === j ? 1 : 0) - (2 * u[i] * u[j]) / uu) * s[j];
  }
  return { w, s1: s[0] };
}

function svdMax(w: Float64Array, rows: number, cols: number): number {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, w[i * cols + j]);
  return new SVD(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal[0];
}

/** Rounding in forming W = UΣVᵀ from floating-point U, V moves its singular values by about r·u relative. */
const COMPOSE_TOL = 1e-13;

describe('denseSpectralNormExact', () => {
  it('brackets s_max of random square matrices with prescribed singular values', () => {
    const rand = mulberry32(1);
    const n = 60;
    const s = Array.from({ length: n }, (_, i) => 10 - (9 * i) / (n - 1));
    const w = compose(householderOrthogonal(n, rand), s, householderOrthogonal(n, rand), n, n);
    const b = denseSpectralNormExact(w, n, n);
    assert.equal(b.method, 'exact-eig');
    assert.ok(b.value >= 10 * (1 - COMPOSE_TOL), `value ${b.value} < 10`);
    assert.ok(b.value <= 10 * (1 + 1e-9), `value ${b.value} too loose`);
    assert.ok(b.value >= svdMax(w, n, n), 'below the independent SVD of the same W');
    assert.ok(Math.abs(b.estimate - 10) <= 1e-12 * 10, `estimate ${b.estimate}`);
  });

  it('is a strict upper bound on exactly known spectra, including s1 = s2', () => {
    const n = 64;
    const s = Array.from({ length: n }, (_, i) => (i < 2 ? 7 : 6 - (i % 5)));
    const h = hadamardOrthogonal(n);
    const w = compose(h, s, h, n, n);
    for (const b of [denseSpectralNormExact(w, n, n), denseSpectralNormBound(w, n, n)]) {
      assert.ok(b.value >= 7, `value ${b.value} < 7`);
      assert.ok(b.value <= 7 * (1 + 1e-9), `value ${b.value} too loose`);
    }
  });

  for (const [rows, cols] of [[30, 70], [70, 30], [16, 4], [4, 16]] as const) {
    it(`handles a ${rows}×${cols} matrix`, () => {
      const rand = mulberry32(rows * 100 + cols);
      const r = Math.min(rows, cols);
      const s = Array.from({ length: r }, (_, i) => 3.5 / (1 + i));
      const w = compose(householderOrthogonal(rows, rand), s, householderOrthogonal(cols, rand), rows, cols);
      const b = denseSpectralNormExact(w, rows, cols);
      assert.ok(b.value >= 3.5 * (1 - COMPOSE_TOL) && b.value <= 3.5 * (1 + 1e-9), `value ${b.value}`);
      assert.ok(b.value >= svdMax(w, rows, cols), `below the SVD: ${b.value}`);
    });
  }

  it('handles exactly known rectangular spectra', () => {
    const u = hadamardOrthogonal(16);
    const v = hadamardOrthogonal(4);
    const s = [5, 5, 2, 1];
    for (const [w, rows, cols] of [[compose(u, s, v, 16, 4), 16, 4], [compose(v, s, u, 4, 16), 4, 16]] as const) {
      const b = denseSpectralNormExact(w, rows, cols);
      assert.ok(b.value >= 5 && b.value <= 5 * (1 + 1e-12), `value ${b.value}`);
    }
  });

  it('stays certified when Lanczos never sees the top singular vector', () => {
    const m = 64;
    const { w, s1 } = hiddenTopMatrix(m, 8);
    const b = denseSpectralNormExact(w, m, m);
    assert.ok(b.estimate < s1 * (1 - 1e-5), `Lanczos found the top value (${b.estimate}); this test no longer exercises the certificate`);
    assert.ok(b.value >= s1 * (1 - COMPOSE_TOL), `value ${b.value} < s1 ${s1}`);
    assert.ok(b.value <= s1 * (1 + 1e-4), `value ${b.value} far above s1 ${s1}`);
  });

  it('gives the Euclidean norm of 1×n and n×1 matrices', () => {
    const rand = mulberry32(7);
    const v = Float64Array.from({ length: 37 }, () => rand() - 0.5);
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    for (const [rows, cols] of [[1, 37], [37, 1]]) {
      const b = denseSpectralNormExact(v, rows, cols);
      assert.ok(b.value >= norm && b.value <= norm * (1 + 1e-13), `${rows}×${cols}: ${b.value} vs ${norm}`);
    }
    const one = denseSpectralNormExact(Float64Array.of(-2.5), 1, 1);
    assert.ok(one.value >= 2.5 && one.value <= 2.5 * (1 + 1e-14), `1×1: ${one.value}`);
  });

  it('returns 0 for the zero matrix', () => {
    const z = new Float64Array(12);
    assert.equal(denseSpectralNormExact(z, 3, 4).value, 0);
    assert.equal(denseSpectralNormGram(z, 4, 3).value, 0);
    assert.equal(denseSpectralNormBound(z, 3, 4).value, 0);
  });

  it('treats Float32Array values as exact and survives extreme scales', () => {
    const rand = mulberry32(11);
    const w32 = Float32Array.from({ length: 20 * 9 }, () => rand() * 2 - 1);
    const w64 = Float64Array.from(w32);
    assert.deepEqual(denseSpectralNormExact(w32, 20, 9), denseSpectralNormExact(w64, 20, 9));
    const ref = svdMax(w64, 20, 9);
    for (const f of [2 ** 600, 2 ** -600, 2 ** 1000]) {
      const scaled = Float64Array.from(w64, (x) => x * f);
      const b = denseSpectralNormExact(scaled, 20, 9);
      assert.ok(b.value >= ref * f * (1 - 1e-14) && b.value <= ref * f * (1 + 1e-9), `scale ${f}: ${b.value / f} vs ${ref}`);
    }
    const subnormal = Float64Array.from(w64, (x) => x * 2 ** -1060);
    const refSub = svdMax(Float64Array.from(subnormal, (x) => x * 2 ** 530 * 2 ** 530), 20, 9) * 2 ** -530 * 2 ** -530;
    for (const b of [denseSpectralNormExact(subnormal, 20, 9), denseSpectralNormGram(subnormal, 20, 9)]) {
      assert.ok(b.value >= refSub && b.value <= refSub * 1.001, `subnormal entries: ${b.value} vs ${refSub}`);
    }
  });

  it('rejects a wrong length and non-finite values with LipcheckErrors', () => {
    assert.throws(() => denseSpectralNormExact(new Float64Array(5), 2, 3), (e) => isLipcheckError(e) && /needs 6 values, got 5/.test(e.message));
    assert.throws(() => denseSpectralNormExact(Float64Array.of(1, NaN), 1, 2), (e) => isLipcheckError(e) && e.code === 'UNSUPPORTED');
  });
});

describe('denseSpectralNormGram', () => {
  it('converges to s_max from above on a distinct spectrum', () => {
    const rand = mulberry32(3);
    const n = 40;
    const s = Array.from({ length: n }, (_, i) => 4 - (3 * i) / n);
    const w = compose(householderOrthogonal(n, rand), s, householderOrthogonal(n, rand), n, n);
    const b = denseSpectralNormGram(w, n, n, 14);
    assert.equal(b.method, 'gram-iteration');
    assert.ok(b.value >= 4 * (1 - COMPOSE_TOL), `value ${b.value}`);
    assert.ok(b.value <= 4 * (1 + 1e-6), `value ${b.value} not within 1e-6`);
  });

  it('stays above s_max on near-degenerate and exactly degenerate spectra', () => {
    const rand = mulberry32(5);
    const n = 32;
    const s = Array.from({ length: n }, (_, i) => (i < 2 ? 2 : 1.999 - i / n));
    const w = compose(householderOrthogonal(n, rand), s, householderOrthogonal(n, rand), n, n);
    for (const steps of [1, 3, 6, 10, 30]) {
      assert.ok(denseSpectralNormGram(w, n, n, steps).value >= 2 * (1 - COMPOSE_TOL), `steps ${steps}`);
    }
    const h = hadamardOrthogonal(16);
    const exact = compose(h, [3, 3, 3, 1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], h, 16, 16);
    for (const steps of [1, 2, 5, 10, 40]) {
      const b = denseSpectralNormGram(exact, 16, 16, steps);
      assert.ok(b.value >= 3, `steps ${steps}: ${b.value} < 3`);
    }
    const tight = denseSpectralNormGram(exact, 16, 16, 40).value;
    assert.ok(tight <= 3 * (1 + 1e-6), `40 steps: ${tight}`);
  });

  it('tightens with more steps, approaching the Frobenius norm at one step', () => {
    const rand = mulberry32(9);
    const w = Float64Array.from({ length: 25 * 40 }, () => rand() * 2 - 1);
    const ref = svdMax(w, 25, 40);
    const values = [1, 2, 4, 8].map((t) => denseSpectralNormGram(w, 25, 40, t).value);
    for (let i = 1; i < values.length; i++) assert.ok(values[i] <= values[i - 1], `not monotone: ${values}`);
    for (const v of values) assert.ok(v >= ref, `${v} below the SVD ${ref}`);
    const frob = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
    assert.ok(values[0] < frob * (1 + 1e-12), 'one step should be at most the Frobenius norm');
    assert.ok(values[3] <= ref * 1.01, `8 steps: ${values[3]} vs ${ref}`);
  });
});

describe('denseSpectralNormBound', () => {
  it('matches the exact bound and throws BudgetExceededError past the budget', () => {
    const rand = mulberry32(13);
    const w = Float64Array.from({ length: 200 * 150 }, () => rand() - 0.5);
    assert.deepEqual(denseSpectralNormBound(w, 200, 150), denseSpectralNormExact(w, 200, 150));
    assert.throws(() => denseSpectralNormBound(w, 200, 150, { budgetFlop: 1 }), (e) => e instanceof BudgetExceededError && /work budget of 0\.000001 Mflop/.test(e.message));
    // the budget is counted work, not time: exactly the predicted flop passes, one fewer throws, on any machine
    const need = denseCertificateFlop(200, 150);
    assert.equal(need, 2 * (0.5 * 150 * 150 * 200 + 150 ** 3 / 6 + 100 * 150 * 150));
    assert.deepEqual(denseSpectralNormBound(w, 200, 150, { budgetFlop: need }), denseSpectralNormExact(w, 200, 150));
    assert.throws(() => denseSpectralNormBound(w, 200, 150, { budgetFlop: need - 1 }), BudgetExceededError);
  });
});

describe('denseInfNorm', () => {
  it('is the maximum absolute row sum, rounded up by at most a few ulps', () => {
    const rand = mulberry32(17);
    for (const [rows, cols] of [[1, 1], [5, 9], [33, 2], [1, 1000]]) {
      const w = Float32Array.from({ length: rows * cols }, () => rand() * 4 - 2);
      let brute = 0;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += Math.abs(w[r * cols + c]);
        brute = Math.max(brute, s);
      }
      const v = denseInfNorm(w, rows, cols);
      assert.ok(v >= brute && v <= brute * (1 + 1e-12), `${rows}×${cols}: ${v} vs ${brute}`);
    }
    assert.equal(denseInfNorm(new Float64Array(6), 2, 3), 0);
  });
});
