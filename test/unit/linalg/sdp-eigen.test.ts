import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { certifyLmi, formLmi, lipSdpBound, solveLipSdp, type LipSdpProblem } from '../../../src/linalg/sdp.js';
import { _rhoAndGradient, eigenEvalWork, solveLipSdpEigen, topEigenpairs } from '../../../src/linalg/sdp-eigen.js';
import { Random } from '../../../src/linalg/random.js';
import { bruteForce, randomDense } from '../../helpers/mlp.js';
import { problemOf, RANDOM_NETS, randomProblem, slopesFor } from '../../helpers/lipsdp.js';



/** λ_min of F(ρ, t) by a dense eigendecomposition (independent of the method's Schur complements). */
function lambdaMin(p: LipSdpProblem, rho: number, t: Float64Array): number {
  const { f, n } = formLmi(p, { rho, t });
  const m = new Matrix(Array.from({ length: n }, (_, i) => Array.from(f.subarray(i * n, (i + 1) * n))));
  return Math.min(...new EigenvalueDecomposition(m, { assumeSymmetric: true }).realEigenvalues);
}

// widths chosen so that every branch runs: Woodbury (a layer wider than the rank below it), dense, the input reduced
// (n_0 > n_1) or not (n_0 < n_1); slope ranges [0, 1], [0, ¼], [−½, 0]
const SHAPES: readonly (readonly number[])[] = [[12, 5, 20, 3, 2], [4, 9, 6, 3], [3, 10, 2, 10, 2], [7, 6, 5, 4, 3, 2]];

test('ρ(t) is the least feasible ρ (F(ρ(t), t) singular, PSD) and its gradient equals central differences where λ_max is simple', () => {
  for (const [s, widths] of SHAPES.entries()) {
    const p = randomProblem(widths, slopesFor(widths), 40 + s);
    const rng = new Random(50 + s);
    const hidden = widths.slice(1, -1), l = hidden.length;
    const t = Float64Array.from(hidden.flatMap((n, h) => Array.from({ length: n }, () => 10 ** (l - h) * (1 + 0.5 * rng.next()))));
    const base = _rhoAndGradient(p, t);
    const tag = widths.join('-');
    assert.ok(base, `${tag}: the test point has G(t) not positive definite`);
    assert.ok(base.gap > 1e-3, `${tag}: λ_max is not simple (gap ${base.gap})`);
    // independent: λ_min of the dense F is ≈ 0 at ρ(t), > 0 above, < 0 below
    const scale = Math.max(base.rho, ...t);
    assert.ok(Math.abs(lambdaMin(p, base.rho, t)) < 1e-9 * scale, `${tag}: λ_min(F(ρ(t), t)) = ${lambdaMin(p, base.rho, t)}`);
    assert.ok(lambdaMin(p, base.rho * 1.01, t) > 0 && lambdaMin(p, base.rho * 0.99, t) < 0, `${tag}: ρ(t) is not the least feasible ρ`);
    let err = 0, size = 0;
    for (let i = 0; i < t.length; i++) {
      const h = 1e-5 * t[i];
      const at = (sign: number) => { const t2 = Float64Array.from(t); t2[i] += sign * h; return _rhoAndGradient(p, t2)!.rho; };
      const fd = (at(1) - at(-1)) / (2 * h);
      err = Math.max(err, Math.abs(fd - base.grad[i]));
      size = Math.max(size, Math.abs(base.grad[i]));
    }
    assert.ok(err <= 1e-6 * size, `${tag}: gradient off by ${err} (largest entry ${size})`);
  }
});

test('topEigenpairs (Lanczos) matches a full eigendecomposition on the leading pairs, clustered top included', () => {
  const rng = new Random(3);
  for (const [n, cluster] of [[30, false], [80, true], [200, true]] as const) {
    // A = Q diag(d) Qᵀ with a top cluster of three equal eigenvalues when asked
    const b = Float64Array.from({ length: n * n }, () => rng.normal());
    const q = new Matrix(Array.from({ length: n }, (_, i) => Array.from(b.subarray(i * n, (i + 1) * n)))).transpose();
    const qr = new EigenvalueDecomposition(q.mmul(q.transpose()), { assumeSymmetric: true }).eigenvectorMatrix;
    const d = Array.from({ length: n }, (_, i) => (cluster && i < 3 ? 10 : 9 * Math.exp(-i / 10)));
    const a = qr.mmul(Matrix.diag(d)).mmul(qr.transpose());
    const flat = Float64Array.from(a.to1DArray());
    const got = topEigenpairs(flat, n, null, 0.05);
    const want = [...d].sort((x, y) => y - x);
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(got.values[i] - want[i]) <= 1e-9 * want[0], `n = ${n}: eigenvalue ${i} ${got.values[i]} vs ${want[i]}`);
    for (const [i, v] of got.vectors.slice(0, 3).entries()) {
      const av = a.mmul(Matrix.columnVector(Array.from(v))).to1DArray();
      const res = Math.hypot(...av.map((x, j) => x - got.values[i] * v[j]));
      assert.ok(res <= 1e-7 * want[0] && Math.abs(Math.hypot(...v) - 1) < 1e-9, `n = ${n}: Ritz pair ${i} residual ${res}`);
    }
  }
});

test('random nets: the eigenvalue method reaches the dense primal–dual optimum (2e-3 relative in ρ by default, 1e-4 with μ down to 1e-5·ρ) and its points are feasible', () => {
  for (const [widths, slopes, seed] of RANDOM_NETS) {
    const p = randomProblem(widths, slopes, seed);
    const dense = solveLipSdp(p, { variant: 'neuron', relTol: 1e-8 });
    const s = solveLipSdpEigen(p, { maxWork: 600 * eigenEvalWork(p) });
    const tag = widths.join('-');
    assert.ok(s.point.rho >= dense.point.rho * (1 - 1e-6), `${tag}: eigenvalue method ρ ${s.point.rho} below the optimum ${dense.point.rho}`);
    assert.ok(s.point.rho <= dense.point.rho * (1 + 2e-3), `${tag}: eigenvalue method ρ ${s.point.rho} vs dense ${dense.point.rho}`);
    for (const pt of s.path) assert.ok(certifyLmi(p, { rho: pt.rho * (1 + 1e-6), t: pt.t }), `${tag}: a returned point is not provably feasible`);
    // the smoothing let down to 1e-5·ρ: the method converges to the optimum itself (measured 1e-6 – 2e-5)
    const fine = solveLipSdpEigen(p, { maxWork: 1500 * eigenEvalWork(p), muMin: 1e-5 });
    assert.ok(fine.point.rho >= dense.point.rho * (1 - 1e-6) && fine.point.rho <= dense.point.rho * (1 + 1e-4), `${tag}: with μ down to 1e-5·ρ, ρ ${fine.point.rho} vs dense ${dense.point.rho}`);
  }
});

test('tiny ReLU and sigmoid nets: brute force over activation patterns ≤ certified LipSDP-Neuron by the eigenvalue method, also stopped after three evaluations', () => {
  const cases: [number[], readonly [number, number], number][] = [[[3, 7, 2], [0, 1], 31], [[4, 6, 6, 3], [0, 1], 32], [[3, 6, 4, 2], [0, 0.25], 34], [[8, 5, 5, 2], [0, 1], 35]];
  for (const [widths, slope, seed] of cases) {
    const layers = randomDense(widths, new Random(seed));
    const p = problemOf(layers, slope);
    const brute = bruteForce(layers, slope, '2');
    const dense = lipSdpBound(p, { variant: 'neuron', relTol: 1e-9 })!;
    const full = lipSdpBound(p, { variant: 'neuron', solve: (scaled) => solveLipSdpEigen(scaled, { maxWork: 600 * eigenEvalWork(scaled) }) })!;
    const early = lipSdpBound(p, { variant: 'neuron', solve: (scaled) => solveLipSdpEigen(scaled, { maxWork: 3 * eigenEvalWork(scaled) }) })!;
    const tag = `${widths.join('-')} [${slope}]`;
    assert.ok(full && early && dense, `${tag}: no certificate`);
    assert.ok(brute <= full.value && brute <= early.value, `${tag}: brute force ${brute} > certified ${full.value} / ${early.value}`);
    assert.ok(full.value <= early.value * (1 + 1e-6), `${tag}: early ${early.value} below full ${full.value}`);
    assert.ok(full.value <= dense.value * (1 + 1e-3), `${tag}: eigenvalue method ${full.value} vs dense ${dense.value}`);
  }
});

test('the eigenvalue method declines slope ranges with α·β ≠ 0', () => {
  assert.throws(() => solveLipSdpEigen(randomProblem([3, 4, 2], [[0.1, 1]], 1)), /does not take/);
});
