/**
 * CP on a per-channel rescaled chain (src/estimators/cp-scaling.ts, docs/algorithms-cp-scaling.md): the rescaled chain
 * has the same relaxation as the segment, so its CP bound must stay above the brute-force sup over every vertex slope
 * pattern (the largest ‖W_3 D_2 W_2 D_1 W_1‖, which no slope-range bound may go below), while its partial products,
 * and so CP, change with the scalings.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { composeRegions, cpSegmentBound } from '../../../src/estimators/cp.js';
import { rescaledSegment, scaledCpBound } from '../../../src/estimators/cp-scaling.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { Random } from '../../../src/linalg/random.js';
import { ACTS, bruteForce, mlpModel, pipeline, randomDense, settings } from '../../helpers/mlp.js';

async function apply(region: Parameters<typeof settings.backend.operator>[0], x: Float64Array): Promise<Float64Array> {
  const op = await settings.backend.operator(region);
  try { return await op.apply(x); } finally { await op.dispose(); }
}

test('rescaledSegment: the whole product is unchanged, a partial product is Δ_b⁻¹·P·Δ_(a−1), the slope ranges cover the inexact inverses', async () => {
  const layers = randomDense([6, 7, 5, 3], new Random(11));
  const { segments } = await pipeline(mlpModel(layers, ACTS.relu));
  const seg = segments[0];
  // δ = 3 and 1/7 are not powers of two: fround(1/δ)·δ ≠ 1, so the ranges must widen, by float32 rounding only
  const delta = [Float64Array.from({ length: 7 }, (_, i) => [3, 1 / 7, 1.7, 0.6, 2.2, 1, 0.9][i]), Float64Array.from({ length: 5 }, (_, i) => [0.5, 3, 1.3, 0.25, 5][i])];
  const scaled = rescaledSegment(seg, delta);
  const x = new Random(2).unitVector(6);
  const whole = await apply(composeRegions(seg, 0, 2), x), wholeScaled = await apply(composeRegions(scaled, 0, 2), x);
  for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(whole[i] - wholeScaled[i]) <= 1e-5 * Math.max(1, Math.abs(whole[i])), `output ${i}: ${whole[i]} vs ${wholeScaled[i]}`);
  // the middle region alone: Δ_2⁻¹·W_2·Δ_1
  const mid = await apply(scaled.regions[1], Float64Array.from({ length: 7 }, (_, i) => (i === 0 ? 1 : 0)));
  const plain = await apply(seg.regions[1], Float64Array.from({ length: 7 }, (_, i) => (i === 0 ? 3 : 0)));
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(mid[i] - plain[i] / delta[1][i]) <= 1e-5 * Math.max(1, Math.abs(mid[i])), `row ${i}`);
  for (const [k, a] of scaled.activations.entries()) {
    const [lo, hi] = seg.activations[k].slope;
    assert.ok(a.slope[0] < lo && a.slope[1] > hi && a.slope[1] - hi <= 2 ** -22 && lo - a.slope[0] <= 2 ** -22, `activation ${k}: ${a.slope}`);
  }
  assert.notEqual(scaled.ordinal, seg.ordinal);
  assert.equal(sizeOf(scaled.regions[0].inShape), 6);
});

for (const act of ['relu', 'leaky01', 'sigmoid'] as const) {
  test(`scaledCpBound on ${act} MLPs: at least the brute-force sup over slope patterns, below plain CP on most`, async () => {
    let lower = 0;
    for (let seed = 0; seed < 5; seed++) {
      const layers = randomDense([6, 7, 5, 3], new Random(300 + seed));
      const { segments } = await pipeline(mlpModel(layers, ACTS[act]));
      const brute = bruteForce(layers, ACTS[act].slope, '2');
      const plain = await cpSegmentBound(segments[0], settings);
      const sc = await scaledCpBound(segments[0], settings, { budget: 1e9, iterations: 40, steps: 8 });
      if (!sc) continue;
      assert.ok(sc.cp.upper.value >= brute * (1 - 1e-9), `seed ${seed}: rescaled CP ${sc.cp.upper.value} below the sup ${brute}`);
      assert.ok(sc.after < sc.before, `seed ${seed}: the descent did not lower the estimate`);
      if (sc.cp.upper.value < plain.upper.value) lower++;
    }
    assert.ok(lower >= 3, `${act}: rescaled CP below plain CP on ${lower} of 5 nets`);
  });
}
