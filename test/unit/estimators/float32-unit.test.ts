/**
 * OperatorBackend.float32Unit: the float32 rounding margins (the product error gP of measureRegion, the chain margins of CP's products)
 * scale with the unit roundoff the backend's products promise — 2⁻²⁴ (IEEE round-to-nearest) by default, 2⁻²³ on
 * WebGPU (WGSL's faithful rounding). Same seeds, so only the margins differ, and by what regionBound's γ-sum says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpSegmentBound } from '../../../src/estimators/cp.js';
import { kwUpper, roundingError, roundingMargin } from '../../../src/estimators/operator-norm.js';
import { kwFactor } from '../../../src/linalg/probabilistic.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { regionBound } from '../../../src/estimators/region-bounds.js';
import { createOrtBackend } from '../../../src/backend/index.js';
import { Random } from '../../../src/linalg/random.js';
import { ACTS, measureAll, mlpModel, pipeline, randomDense, runtime, settings as base } from '../../helpers/mlp.js';

const ieee = createOrtBackend({ runtime });
const wgsl = { ...ieee, float32Unit: 2 ** -23 };

test('createOrtBackend declares WGSL\'s float32 unit on WebGPU only (without starting a session)', () => {
  assert.equal(ieee.float32Unit, undefined);
  assert.equal(createOrtBackend({ runtime: { device: 'webgpu' } }).float32Unit, 2 ** -23);
  assert.equal(createOrtBackend({ runtime: { device: 'cuda' } }).float32Unit, undefined, 'CUDA with TF32 off rounds to nearest');
});

test('measureRegion: a backend with unit 2⁻²³ bounds the same Ritz value with the doubled γ-sum\'s product error', async () => {
  const layers = randomDense([48, 40, 56, 24], new Random(11));
  const { blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const s = { ...base, certify: 'off' as const };
  const [a, b] = [await measureAll(blocks, { ...s, backend: ieee }), await measureAll(blocks, { ...s, backend: wgsl })];
  for (const blk of blocks) {
    if (blk.kind !== 'operator') continue;
    const id = blk.region.id;
    const [x, y] = [a.get(id)!, b.get(id)!];
    assert.equal(x.upper.kind, 'probabilistic');
    assert.equal(y.upper.kind, 'probabilistic');
    assert.deepEqual([y.estimate, y.iterations], [x.estimate, x.iterations], `${id}: the same run`);
    const [g1, g2] = [regionBound(blk.region, '2', 0), regionBound(blk.region, '2', 0, 2 ** -23)];
    assert.ok(g2.gammaSum >= 2 * g1.gammaSum && g2.gammaSum <= 2.001 * g1.gammaSum && g2.absNorm === g1.absNorm);
    // the same θ and probabilistic factor (ritzFactor: KW's or the Lanczos polynomial's, at most KW's at δ/2), each
    // bound with its own unit's product error gP (θ = estimate², up to its rounding)
    const n = Math.min(sizeOf(blk.region.inShape), sizeOf(blk.region.outShape));
    assert.deepEqual(y.factor, x.factor);
    const f = x.factor!.factor;
    assert.ok(x.iterations >= n || f <= kwFactor(n, x.iterations, base.delta / 2), `${id}: factor ${f}`);
    const theta = x.estimate! ** 2;
    for (const [got, g] of [[x, g1], [y, g2]] as const) {
      const want = kwUpper(theta, f, roundingError(g));
      assert.ok(Math.abs(got.upper.value - want) <= 1e-12 * want, `${id}: ${got.upper.value} vs kwUpper ${want}`);
    }
    assert.ok(y.upper.value > x.upper.value);
    // and never above the a-priori form √(θf² + 2gP² + (gP)²) it replaced
    assert.ok(y.upper.value <= Math.sqrt(theta * f * f + roundingMargin(g2.gammaSum, g2.absNorm)) * (1 + 1e-12));
  }
});

test('Combettes–Pesquet: the products\' margins take the backend\'s unit too (bounds up by at most their margin again: on this MLP up to 1.9 %)', async () => {
  const layers = randomDense([30, 26, 34, 22], new Random(5));
  const { blocks, segments } = await pipeline(mlpModel(layers, ACTS.relu));
  const s = { ...base, certify: 'off' as const };
  const known = await measureAll(blocks, { ...s, backend: ieee });
  const [a, b] = [await cpSegmentBound(segments[0], { ...s, backend: ieee }, { known }), await cpSegmentBound(segments[0], { ...s, backend: wgsl }, { known })];
  assert.equal(a.products.length, b.products.length);
  let moved = 0;
  for (const [i, p] of a.products.entries()) {
    const q = b.products[i];
    if (p.first === p.last) continue;
    assert.ok(q.upper.value >= p.upper.value, `product ${p.first}..${p.last}: ${q.upper.value} < ${p.upper.value}`);
    // upper² = θ·f² + η (f ≥ 1, the same θ): η ≤ p² − estimate², and η₂ − η₁ ≤ η₁ (1 + O(gP)) with γ-sums about doubled
    assert.equal(q.estimate, p.estimate, 'the same run');
    assert.ok(q.upper.value ** 2 - p.upper.value ** 2 <= 1.01 * (p.upper.value ** 2 - p.estimate! ** 2), `product ${p.first}..${p.last}: only the margin moves`);
    if (q.upper.value > p.upper.value) moved++;
  }
  assert.ok(moved > 0, 'some product\'s bound carries the larger margin');
  assert.ok(b.upper.value >= a.upper.value);
});
