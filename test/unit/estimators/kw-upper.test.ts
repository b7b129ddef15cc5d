/**
 * kwUpper (operator-norm.ts): the KW bound on ‖A‖ from the top eigenvalue θ of a computed Gram map that differs from
 * AᵀA by at most 2‖A‖·eps + eps² (ProductError). Checked against exact float64 eigenvalues (ml-matrix) of AᵀA + F for
 * perturbations F of exactly that norm, the worst of which makes the bound tight; and against the a-priori form
 * √(θ + 2·total·eps + eps²) it must never exceed. ritzFloor, its mirror, must never exceed ‖A‖ for any Ritz value of such
 * a map, and meets it for the perturbation that raises the top eigenvalue by the whole allowance.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from 'ml-matrix';
import { gramMargin, kwUpper, ritzFloor } from '../../../src/estimators/operator-norm.js';
import { Random } from '../../../src/linalg/random.js';

function gaussian(rows: number, cols: number, rng: Random): Matrix {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, rng.normal());
  return m;
}

function topEigenvalue(g: Matrix): number {
  return Math.max(...new EigenvalueDecomposition(g, { assumeSymmetric: true }).realEigenvalues);
}

/** A Gaussian rows×cols A: its norm σ, the Gram matrix AᵀA and the top eigenvalue of AᵀA ± s·v₁v₁ᵀ (v₁ its top right singular vector). */
function gramCase(rows: number, cols: number, rng: Random) {
  const a = gaussian(rows, cols, rng);
  const svd = new SingularValueDecomposition(a);
  const v1 = svd.rightSingularVectors.getColumnVector(0);
  const gram = a.transpose().mmul(a);
  return { sigma: svd.diagonal[0], gram, shifted: (s: number) => topEigenvalue(Matrix.add(gram, v1.mmul(v1.transpose()).mul(s))) };
}

test('kwUpper is never below ‖A‖ when the Gram map is off by 2‖A‖·eps + eps², and meets it for the worst perturbation', () => {
  const rng = new Random(3);
  for (const [rows, cols] of [[30, 20], [12, 25]]) {
    const { sigma, gram, shifted } = gramCase(rows, cols, rng);
    for (const rel of [1e-6, 1e-3, 0.1, 1]) {
      const eps = rel * sigma;
      const size = 2 * sigma * eps + eps * eps;
      // the worst case: the top eigenvalue pushed down by the whole allowance (it stays on top for rel ≤ 1e-3; beyond
      // that the next eigenvalue may take over, and θ only grows)
      const down = shifted(-size);
      const worst = kwUpper(down, 1, { eps, total: Infinity });
      assert.ok(worst >= sigma * (1 - 1e-12), `${rows}×${cols}, eps ${rel}σ: ${worst} < σ = ${sigma}`);
      if (rel <= 1e-3) assert.ok(worst <= sigma * (1 + 1e-9), `${rows}×${cols}, eps ${rel}σ: ${worst} is not tight at σ = ${sigma}`);
      // random symmetric perturbations of the same norm, either sign
      for (let t = 0; t < 20; t++) {
        const r = gaussian(cols, cols, rng);
        const sym = Matrix.add(r, r.transpose());
        const scale = size / new SingularValueDecomposition(sym).diagonal[0];
        const theta = topEigenvalue(Matrix.add(gram, sym.mul(t % 2 ? scale : -scale)));
        assert.ok(kwUpper(theta, 1, { eps, total: Infinity }) >= sigma * (1 - 1e-12));
      }
    }
  }
});

test('kwUpper never exceeds the a-priori √(θf² + 2·total·eps + eps²), and is far below it where total is loose', () => {
  const rng = new Random(8);
  for (let t = 0; t < 200; t++) {
    const theta = Math.exp(rng.normal() * 5);
    const f = 1 + rng.next() * 0.2;
    const sigma = Math.sqrt(theta) * f;
    const eps = sigma * Math.exp(-12 * rng.next());
    const total = sigma * (1 + Math.exp(rng.normal() * 3));
    const apriori = Math.sqrt(theta * f * f + gramMargin({ eps, total }));
    const got = kwUpper(theta, f, { eps, total });
    assert.ok(got <= apriori * (1 + 1e-14), `θ ${theta}, eps ${eps}, total ${total}: ${got} > ${apriori}`);
    assert.ok(got >= sigma, 'at least √θ·f');
    // the root alone (no total) is never more than (1 + √2)·eps above the a-priori form, whatever total is
    assert.ok(kwUpper(theta, f, { eps, total: Infinity }) <= apriori + (1 + Math.SQRT2) * eps * (1 + 1e-12) + 1e-15 * apriori);
    assert.ok(kwUpper(theta, f, { eps: eps * 2, total }) >= got, 'monotone in eps');
  }
  // a ‖|A|‖ bound 100× the norm, eps = 10⁻³·σ: the a-priori margin adds about 10 %, the implicit one 0.1 %
  const theta = 4, eps = 2e-3, total = 200;
  assert.ok(Math.abs(Math.sqrt(theta + gramMargin({ eps, total })) / 2 - 1.0954) < 1e-4);
  assert.ok(Math.abs(kwUpper(theta, 1, { eps, total }) / 2 - 1.001) < 1e-5);
});

test('ritzFloor never exceeds ‖A‖ for Ritz values of a Gram map off by 2‖A‖·eps + eps², and meets it for the worst one', () => {
  const rng = new Random(4);
  const { sigma, shifted } = gramCase(25, 18, rng);
  for (const rel of [1e-6, 1e-3, 0.1, 1]) {
    const eps = rel * sigma;
    const size = 2 * sigma * eps + eps * eps;
    const up = shifted(size);
    for (const total of [Infinity, sigma, 10 * sigma]) {
      const f = ritzFloor(up, { eps, total });
      assert.ok(f <= sigma, `eps ${rel}σ, total ${total}: floor ${f} > σ = ${sigma}`);
      assert.ok(f >= sigma * (1 - 2e-6), `eps ${rel}σ, total ${total}: floor ${f} is not tight at σ = ${sigma}`);
      // every Ritz value is at most the top eigenvalue, and the floor is monotone in θ
      assert.ok(ritzFloor(up * 0.9, { eps, total }) <= f);
    }
    // and the form it replaced, √(θ − 2·total·eps − eps²), is never above it
    assert.ok(Math.sqrt(Math.max(0, up - gramMargin({ eps, total: 10 * sigma }))) * (1 - 1e-6) <= ritzFloor(up, { eps, total: 10 * sigma }));
  }
  assert.equal(ritzFloor(0, { eps: 1, total: 1 }), 0);
  assert.equal(ritzFloor(1, { eps: 2, total: Infinity }), 0);
});
