import assert from 'node:assert/strict';
import { test } from 'node:test';
import { certifyLipSdp, certifyLmi, formLmi, lipSdpBound, lipSdpStepWork, solveLipSdp, type LipSdpProblem } from '../../../src/linalg/sdp.js';
import { Random } from '../../../src/linalg/random.js';
import { sigmaMax } from '../../helpers/dense.js';
import { bruteForce, randomDense, type Dense } from '../../helpers/mlp.js';

/** A random n×n orthogonal matrix (Gram–Schmidt of a Gaussian one), row-major. */
function orthogonal(n: number, rng: Random): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const v = Float64Array.from({ length: n }, () => rng.normal());
    for (let pass = 0; pass < 2; pass++) for (let j = 0; j < i; j++) {
      let d = 0;
      for (let c = 0; c < n; c++) d += v[c] * q[j * n + c];
      for (let c = 0; c < n; c++) v[c] -= d * q[j * n + c];
    }
    const nv = Math.hypot(...v);
    for (let c = 0; c < n; c++) q[i * n + c] = v[c] / nv;
  }
  return q;
}

/** D·Qᵀ (d diagonal) and P·D, row-major. */
const diagTimesT = (d: Float64Array, q: Float64Array, n: number) => Float64Array.from({ length: n * n }, (_, k) => d[Math.floor(k / n)] * q[(k % n) * n + Math.floor(k / n)]);
const timesDiag = (p: Float64Array, d: Float64Array, n: number) => Float64Array.from({ length: n * n }, (_, k) => p[k] * d[k % n]);

/** Eigenvalues of a symmetric n×n matrix by cyclic Jacobi rotations (an independent float64 check, small n only). */
function eigenvalues(a0: Float64Array, n: number): number[] {
  const a = Float64Array.from(a0);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) off += a[i * n + j] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) {
      const apq = a[p * n + q];
      if (Math.abs(apq) < 1e-300) continue;
      const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1), s = t * c;
      for (let k = 0; k < n; k++) {
        const akp = a[k * n + p], akq = a[k * n + q];
        a[k * n + p] = c * akp - s * akq;
        a[k * n + q] = s * akp + c * akq;
      }
      for (let k = 0; k < n; k++) {
        const apk = a[p * n + k], aqk = a[q * n + k];
        a[p * n + k] = c * apk - s * aqk;
        a[q * n + k] = s * apk + c * aqk;
      }
    }
  }
  return Array.from({ length: n }, (_, i) => a[i * n + i]).sort((x, y) => x - y);
}

const problemOf = (layers: readonly Dense[], slope: readonly [number, number]): LipSdpProblem => ({
  layers: layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols })),
  slopes: layers.slice(1).map(() => slope),
});

// y = P·D1·φ(D0·Qᵀx) with P, Q orthogonal decouples into n scalar units: its Lipschitz constant, and LipSDP-Neuron's
// value (the LMI is invariant under the orthogonal changes of input and output), is max_i |d0_i·d1_i|·max|slope|;
// the product of norms max|d0|·max|d1|·max|slope| is larger, and LipSDP-Layer (one multiplier for all units) lies between
test('one hidden layer, rotated diagonal: LipSDP-Neuron equals the closed form max_i |d0_i d1_i|·max|slope| in few iterations', () => {
  for (const [n, slope, seed] of [[6, [0, 1], 1], [20, [0, 0.25], 2], [60, [-0.5, 1], 3]] as const) {
    const rng = new Random(seed);
    // d0 ascending, d1 descending: the largest |d0_i·d1_i| is well below max|d0|·max|d1|
    const d0 = Float64Array.from({ length: n }, () => 0.2 + 2 * rng.next()).sort();
    const d1 = Float64Array.from({ length: n }, () => 0.2 + 2 * rng.next()).sort().reverse();
    const q = orthogonal(n, rng), p = orthogonal(n, rng);
    const problem: LipSdpProblem = { layers: [{ w: diagTimesT(d0, q, n), rows: n, cols: n }, { w: timesDiag(p, d1, n), rows: n, cols: n }], slopes: [slope] };
    const s = Math.max(Math.abs(slope[0]), Math.abs(slope[1]));
    const exact = Math.max(...Array.from(d0, (v, i) => v * d1[i])) * s;
    const product = Math.max(...d0) * Math.max(...d1) * s;
    const tag = `n=${n}, slope [${slope}]`;
    assert.ok(exact < 0.9 * product, `${tag}: the test needs the product of norms visibly above the closed form`);
    const neuron = lipSdpBound(problem, { variant: 'neuron' })!;
    const layer = lipSdpBound(problem, { variant: 'layer' })!;
    assert.ok(neuron.converged && layer.converged, tag);
    assert.ok(neuron.value >= exact * (1 - 1e-12), `${tag}: certified ${neuron.value} below the exact constant ${exact}`);
    assert.ok(neuron.value <= exact * (1 + 1e-5), `${tag}: certified ${neuron.value} vs closed form ${exact}`);
    assert.ok(layer.value >= neuron.value * (1 - 1e-9) && layer.value <= product * (1 + 1e-6), `${tag}: Layer ${layer.value} outside [Neuron ${neuron.value}, product ${product}]`);
    assert.ok(neuron.newtonSteps <= 30, `${tag}: ${neuron.newtonSteps} iterations (the primal–dual method needs 10–25 here)`);
  }
});

test('random nets: brute-force exact constant ≤ certified LipSDP-Neuron ≤ AutoLip product, within 25 iterations', () => {
  const cases: [number[], readonly [number, number], number][] = [[[3, 7, 2], [0, 1], 31], [[4, 6, 6, 3], [0, 1], 32], [[2, 4, 3, 4, 2], [0.1, 1], 33], [[3, 6, 4, 2], [0, 0.25], 34]];
  for (const [widths, slope, seed] of cases) {
    const rng = new Random(seed);
    const layers = randomDense(widths, rng);
    const b = lipSdpBound(problemOf(layers, slope), { variant: 'neuron' })!;
    const brute = bruteForce(layers, slope, '2');
    const product = layers.reduce((a, l) => a * sigmaMax(l.w, l.rows, l.cols), 1) * Math.max(Math.abs(slope[0]), Math.abs(slope[1])) ** (layers.length - 1);
    const tag = `${widths.join('-')} [${slope}]`;
    assert.ok(b.converged, `${tag}: not converged after ${b.newtonSteps} iterations`);
    assert.ok(b.newtonSteps <= 25, `${tag}: ${b.newtonSteps} iterations (10–12 when written)`);
    assert.ok(brute <= b.value, `${tag}: brute force ${brute} > certified ${b.value}`);
    assert.ok(b.value <= product * (1 + 1e-9), `${tag}: certified ${b.value} > AutoLip product ${product}`);
    assert.ok(b.value <= b.estimate * (1 + 1e-4), `${tag}: certified ${b.value} far above the solver's ${b.estimate}`);
  }
});

test('iteration counts stay bounded as the LMI grows (N = 48 … 164)', () => {
  for (const [widths, seed] of [[[8, 40], 41], [[8, 40, 40, 40, 4], 42], [[12, 48, 48, 48, 8], 43]] as const) {
    const rng = new Random(seed);
    const layers = randomDense([...widths, 3], rng);
    const sol = solveLipSdp(problemOf(layers, [0, 1]), { variant: 'neuron' });
    assert.ok(sol.converged && sol.newtonSteps <= 30, `${widths.join('-')}: ${sol.newtonSteps} iterations, converged ${sol.converged}`);
  }
});

test('the certificate fails closed: perturbed multipliers that make F indefinite (by an independent eigen-solver) are refused', () => {
  const rng = new Random(51);
  const layers = randomDense([3, 6, 5, 2], rng);
  const p = problemOf(layers, [0, 1]);
  const sol = solveLipSdp(p, { variant: 'neuron' });
  const cert = certifyLipSdp(p, sol)!;
  assert.ok(cert, 'no certificate at the solver\'s points');
  let refused = 0, indefinite = 0;
  for (let trial = 0; trial < 40; trial++) {
    const t = cert.point.t.map((v) => v * (1 + 0.3 * (rng.next() - 0.5)));
    if (trial % 4 === 0) t[trial % t.length] = 0;
    const { f, n } = formLmi(p, { rho: cert.point.rho, t });
    const lmin = eigenvalues(f, n)[0];
    const ok = certifyLmi(p, { rho: cert.point.rho, t });
    if (lmin < 0) { indefinite++; assert.equal(ok, false, `trial ${trial}: λ_min(F) = ${lmin} < 0 but the certificate accepted it`); }
    if (!ok) refused++;
  }
  assert.ok(indefinite >= 10, `only ${indefinite} of 40 perturbations were infeasible: the test needs more`);
  // and the accepted point itself is PSD by the independent check
  const { f, n } = formLmi(p, cert.point);
  assert.ok(eigenvalues(f, n)[0] >= 0, 'the certified point is not PSD by Jacobi');
  assert.ok(refused >= indefinite);
});

test('a budget-stopped solve is certified at its last iterate: every stop gives a valid bound that tightens with the budget', () => {
  const rng = new Random(61);
  const layers = randomDense([4, 6, 5, 3], rng);
  const p = problemOf(layers, [0, 1]);
  const brute = bruteForce(layers, [0, 1], '2');
  const full = lipSdpBound(p, { variant: 'neuron' })!;
  let last = Infinity;
  for (const steps of [1, 3, 6, 10]) {
    const b = lipSdpBound(p, { variant: 'neuron', maxWork: (steps + 1) * lipSdpStepWork(p) });
    assert.ok(b, `no certificate after a budget of ${steps} steps`);
    assert.equal(b.converged, false);
    assert.ok(b.value >= brute && b.value >= full.value * (1 - 1e-9), `${steps} steps: ${b.value} below the exact ${brute} or the converged ${full.value}`);
    assert.ok(b.value <= last * (1 + 1e-6), `${steps} steps: ${b.value} looser than a shorter solve's ${last}`);
    last = b.value;
  }
});

test('constant units (all-zero incoming weights, as in tll_n2_N16_1_0) are dropped: same value, few iterations, and an emptied layer gives 0', () => {
  const rng = new Random(71);
  const layers = randomDense([2, 8, 6, 1], rng);
  const w0 = Float64Array.from(layers[0].w);
  for (const r of [1, 4, 5]) { w0[r * 2] = 0; w0[r * 2 + 1] = 0; }
  const withZeros: Dense[] = [{ ...layers[0], w: w0 }, layers[1], layers[2]];
  // the same network without those units: rows 1, 4, 5 of W_0 and columns 1, 4, 5 of W_1 removed
  const keep = [0, 2, 3, 6, 7];
  const without: Dense[] = [
    { w: Float64Array.from(keep.flatMap((r) => [w0[r * 2], w0[r * 2 + 1]])), rows: 5, cols: 2, b: new Float64Array(5) },
    { w: Float64Array.from({ length: 6 * 5 }, (_, k) => layers[1].w[Math.floor(k / 5) * 8 + keep[k % 5]]), rows: 6, cols: 5, b: new Float64Array(6) },
    layers[2],
  ];
  const a = lipSdpBound(problemOf(withZeros, [0, 1]), { variant: 'neuron' })!;
  const b = lipSdpBound(problemOf(without, [0, 1]), { variant: 'neuron' })!;
  const brute = bruteForce(withZeros, [0, 1], '2');
  assert.ok(a.converged && a.newtonSteps <= 20, `${a.newtonSteps} iterations (44 before constant units were dropped)`);
  assert.ok(brute <= a.value, `certified ${a.value} below the brute-force constant ${brute}`);
  assert.ok(Math.abs(a.value - b.value) <= 1e-6 * b.value, `${a.value} with the constant units, ${b.value} without`);
  // every unit of the second hidden layer reads only constant units: the network is constant
  const dead: Dense[] = [{ ...layers[0], w: w0 }, { ...layers[1], w: layers[1].w.map((v, k) => ([1, 4, 5].includes(k % 8) ? v : 0)) }, layers[2]];
  assert.equal(lipSdpBound(problemOf(dead, [0, 1]), { variant: 'neuron' })!.value, 0);
});
