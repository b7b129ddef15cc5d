/**
 * npx tsx bench/poly-bound.ts MODEL.onnx...: per operator, the KW factor against the Lanczos-polynomial bound's
 * (linalg/probabilistic.ts lanczosPolynomialBound) on the same run: measureRegion's start and stop rule, δ = 10⁻⁶,
 * tol 0.05 (the defaults). Prints √(bound/θ) for KW at δ, the polynomial at δ, and the smaller at δ/2 each.
 */
import { createOrtBackend } from '../src/backend/index.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { lanczosTop } from '../src/linalg/lanczos.js';
import { kwFactor, kwStepsFor, lanczosPolynomialBound } from '../src/linalg/probabilistic.js';
import { Random } from '../src/linalg/random.js';
import { readModel } from '../src/onnx/read-model.js';
import { regionBound } from '../src/estimators/region-bounds.js';

const delta = 1e-6, tol = 0.05;
for (const path of process.argv.slice(2)) {
  const built = await buildIr(readModel(path), { seed: 0, runtime: { device: 'cpu' } });
  const backend = createOrtBackend({ runtime: { device: 'cpu' } });
  let index = 0;
  const rows: string[] = [];
  for (const b of mergeLinear(built.ir)) {
    if (b.kind !== 'operator') continue;
    const i = index++;
    if (regionBound(b.region, '2', 0).method === 'exact') continue;
    const op = await backend.gram(b.region);
    const n = op.n;
    const res = await lanczosTop({ n, apply: (v) => op.apply(v), applyInto: (v, o) => op.applyInto(v, o) }, {
      start: new Random(7919 * i).unitVector(n), maxSteps: 200,
      stop: (theta, k, prev) => k >= 3 && Math.abs(theta - prev) <= 0.1 * tol * theta && kwFactor(n, k, delta) <= 1 + tol,
      expectedSteps: Math.max(3, kwStepsFor(n, delta, 1 + tol)),
    });
    await op.dispose();
    const t = res.tridiagonal!;
    const kw = kwFactor(n, res.steps, delta);
    const poly = Math.sqrt(lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, delta) / res.theta);
    const both = Math.min(kwFactor(n, res.steps, delta / 2), Math.sqrt(lanczosPolynomialBound(t.alpha, t.beta, res.theta, n, delta / 2) / res.theta));
    rows.push(`| ${b.region.id} | ${n} | ${res.steps} | ${kw.toFixed(5)} | ${poly.toFixed(8)} | ${both.toFixed(8)} |`);
  }
  console.log(`\n${path}\n| op | n | k | KW factor | polynomial | min at δ/2 each |\n|---|---|---|---|---|---|\n${rows.join('\n')}`);
}
