import assert from 'node:assert/strict';
import { test } from 'node:test';
import { certifyLmi, formLmi, lipSdpBound, solveLipSdp } from '../../../src/linalg/sdp.js';
import { _debugSystem, solveLipSdpStructured, structuredObstacle, structuredStepWork } from '../../../src/linalg/sdp-structured.js';
import { Random } from '../../../src/linalg/random.js';
import { bruteForce, randomDense } from '../../helpers/mlp.js';
import { problemOf, RANDOM_NETS, randomProblem, slopesFor } from '../../helpers/lipsdp.js';



// the eliminations differ by widths: block 0 eliminated with a skip across block 2 (4-5-6-3-2), kept-kept couplings
// (4-5-6-3-3-2), block 0 kept (3-10-2-10-2), a deep chain; slope ranges [0, 1], [0, ¼] and [−½, 0] (α·β = 0 in each)
const SHAPES: readonly (readonly number[])[] = [[4, 5, 6, 3, 2], [4, 5, 6, 3, 3, 2], [3, 10, 2, 10, 2], [2, 3, 4, 5, 6, 7, 2]];

test('the structured Newton system: gradient and Newton matrix equal central differences of log det F (float64)', () => {
  for (const [s, widths] of SHAPES.entries()) {
    const p = randomProblem(widths, slopesFor(widths), 70 + s);
    const rng = new Random(80 + s);
    const hidden = widths.slice(1, -1), l = hidden.length;
    // a strictly feasible point: multipliers growing towards the input (each layer's LMI block dominated by the next)
    const t = Float64Array.from(hidden.flatMap((n, h) => Array.from({ length: n }, () => 100 ** (l - h) * (1 + 0.2 * rng.next()))));
    const rho = 100 ** (l + 2);
    const base = _debugSystem(p, rho, t);
    assert.ok(base, `${widths}: the test point is not feasible`);
    const k = t.length + 1;
    let errA = 0, errH = 0, maxH = 0;
    for (let i = 0; i < k; i++) {
      const h = 1e-4 * (i === 0 ? rho : t[i - 1]);
      const at = (sign: number) => {
        const t2 = Float64Array.from(t);
        if (i > 0) t2[i - 1] += sign * h;
        return _debugSystem(p, i === 0 ? rho + sign * h : rho, t2)!;
      };
      const plus = at(1), minus = at(-1);
      errA = Math.max(errA, Math.abs((plus.logdet - minus.logdet) / (2 * h) - base.a[i]) / Math.abs(base.a[i]));
      for (let j = 0; j < k; j++) {
        const hv = j <= i ? base.h[i * k + j] : base.h[j * k + i];
        maxH = Math.max(maxH, Math.abs(hv));
        errH = Math.max(errH, Math.abs(-(plus.a[j] - minus.a[j]) / (2 * h) - hv));
      }
    }
    assert.ok(errA < 1e-6, `${widths}: gradient off by ${errA} (relative)`);
    assert.ok(errH < 1e-6 * maxH, `${widths}: Newton matrix off by ${errH} (largest entry ${maxH})`);
  }
});

test('random nets: the structured solver reaches the dense primal–dual solver\'s optimum (1e-6 relative), its gap bound below it', () => {
  for (const [widths, slopes, seed] of RANDOM_NETS) {
    const p = randomProblem(widths, slopes, seed);
    const dense = solveLipSdp(p, { variant: 'neuron', relTol: 1e-8 });
    const s = solveLipSdpStructured(p, { relTol: 1e-8 });
    const tag = `${widths.join('-')}`;
    assert.ok(s.converged, `${tag}: structured not converged after ${s.newtonSteps} steps`);
    assert.ok(Math.abs(s.point.rho - dense.point.rho) <= 1e-6 * dense.point.rho, `${tag}: structured ρ ${s.point.rho} vs dense ${dense.point.rho}`);
    // the gap bound is a lower bound on the optimum (weak duality through X(μ)); the dense iterate is within 1e-8 of it
    assert.ok(s.lowerRho <= dense.point.rho * (1 + 1e-7), `${tag}: lower bound ${s.lowerRho} above the optimum ${dense.point.rho}`);
    assert.ok(s.newtonSteps <= 150, `${tag}: ${s.newtonSteps} Newton steps`);
    // every returned point is strictly feasible for the exact LMI (independent check: the dense Cholesky proof)
    assert.ok(certifyLmi(p, { rho: s.point.rho * (1 + 1e-6), t: s.point.t }), `${tag}: the structured solver's point is not provably feasible`);
  }
});

test('rotated diagonal, one hidden layer: the structured solver certifies the closed form max_i |d0_i·d1_i|·β', () => {
  const n = 12, rng = new Random(9);
  const orth = () => {
    const q = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const v = Float64Array.from({ length: n }, () => rng.normal());
      for (let pass = 0; pass < 2; pass++) for (let j = 0; j < i; j++) { let d = 0; for (let c = 0; c < n; c++) d += v[c] * q[j * n + c]; for (let c = 0; c < n; c++) v[c] -= d * q[j * n + c]; }
      const nv = Math.hypot(...v);
      for (let c = 0; c < n; c++) q[i * n + c] = v[c] / nv;
    }
    return q;
  };
  for (const beta of [1, 0.25]) {
    const d0 = Float64Array.from({ length: n }, () => 0.2 + 2 * rng.next()).sort();
    const d1 = Float64Array.from({ length: n }, () => 0.2 + 2 * rng.next()).sort().reverse();
    const q = orth(), pm = orth();
    // W0 = diag(d0)·Qᵀ, W1 = P·diag(d1)
    const w0 = Float64Array.from({ length: n * n }, (_, k) => d0[Math.floor(k / n)] * q[(k % n) * n + Math.floor(k / n)]);
    const w1 = Float64Array.from({ length: n * n }, (_, k) => pm[k] * d1[k % n]);
    const p: LipSdpProblem = { layers: [{ w: w0, rows: n, cols: n }, { w: w1, rows: n, cols: n }], slopes: [[0, beta]] };
    const exact = Math.max(...Array.from(d0, (v, i) => v * d1[i])) * beta;
    const b = lipSdpBound(p, { variant: 'neuron', solve: (scaled) => solveLipSdpStructured(scaled, { relTol: 1e-9 }) })!;
    assert.ok(b, `β = ${beta}: no certificate`);
    assert.ok(b.value >= exact * (1 - 1e-12), `β = ${beta}: certified ${b.value} below the exact constant ${exact}`);
    assert.ok(b.value <= exact * (1 + 1e-5), `β = ${beta}: certified ${b.value} vs closed form ${exact}`);
  }
});

test('tiny ReLU and sigmoid nets: brute force over activation patterns ≤ certified structured LipSDP-Neuron, also when stopped early', () => {
  const cases: [number[], readonly [number, number], number][] = [[[3, 7, 2], [0, 1], 31], [[4, 6, 6, 3], [0, 1], 32], [[3, 6, 4, 2], [0, 0.25], 34]];
  for (const [widths, slope, seed] of cases) {
    const layers = randomDense(widths, new Random(seed));
    const p = problemOf(layers, slope);
    const brute = bruteForce(layers, slope, '2');
    const full = lipSdpBound(p, { variant: 'neuron', solve: (scaled) => solveLipSdpStructured(scaled) })!;
    // a budget of about three Newton steps: a looser point, still certified and still above the brute force
    const early = lipSdpBound(p, { variant: 'neuron', solve: (scaled) => solveLipSdpStructured(scaled, { maxWork: 3 * structuredStepWork(scaled) }) })!;
    const tag = `${widths.join('-')} [${slope}]`;
    assert.ok(full && early, `${tag}: no certificate`);
    assert.ok(brute <= full.value, `${tag}: brute force ${brute} > certified ${full.value}`);
    assert.ok(brute <= early.value && full.value <= early.value * (1 + 1e-6), `${tag}: early ${early.value}, full ${full.value}, brute force ${brute}`);
  }
});

test('a warm start is used when feasible, and the returned points stay feasible for the true LMI', () => {
  const p = randomProblem([8, 10, 12, 4], [[0, 1], [0, 1]], 12);
  const cold = solveLipSdpStructured(p, { relTol: 1e-6 });
  // the cold optimum raised by 20% (ρ and t together) is strictly feasible: F(sρ, st) = s·F(ρ, t) + (s − 1)·W_lᵀW_l
  const start = { rho: cold.point.rho * 1.2, t: cold.point.t.map((v) => v * 1.2) };
  const warm = solveLipSdpStructured(p, { relTol: 1e-6, start });
  assert.ok(Math.abs(warm.point.rho - cold.point.rho) <= 1e-5 * cold.point.rho, `warm ${warm.point.rho} vs cold ${cold.point.rho}`);
  for (const pt of warm.path) {
    const { f, n } = formLmi(p, pt);
    let ok = true;
    for (let i = 0; i < n; i++) if (!(f[i * n + i] > 0)) ok = false;
    assert.ok(ok && certifyLmi(p, { rho: pt.rho * (1 + 1e-6), t: pt.t }), 'a path point is not provably feasible');
  }
});

test('the structured solver declines slope ranges with α·β ≠ 0 and linear units (the dense one takes them)', () => {
  assert.equal(structuredObstacle(randomProblem([3, 4, 2], [[0, 1]], 1)), null);
  assert.equal(structuredObstacle(randomProblem([3, 4, 2], [[-0.5, 0]], 1)), null);
  assert.match(structuredObstacle(randomProblem([3, 4, 2], [[0.1, 1]], 1)) ?? '', /α·β ≠ 0/);
  assert.match(structuredObstacle(randomProblem([3, 4, 4, 2], [[0, 1], [-0.5, 1]], 1)) ?? '', /hidden layer 2/);
  assert.throws(() => solveLipSdpStructured(randomProblem([3, 4, 2], [[0.1, 1]], 1)), /does not take/);
});
