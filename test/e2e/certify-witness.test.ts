import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ModelRunner } from '../../src/backend/runner.js';
import { norm2 } from '../../src/linalg/random.js';
import { pairRatio } from '../../src/linalg/witness.js';
import { FIXTURES, hasShared, SHARED } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
const json = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json', '--device', 'cpu'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};

test('--certify strict: every operator bound is certified; --certify off: no deterministic certificate is used', () => {
  const strict = json(FIXTURES + 'demo.onnx', '--certify', 'strict');
  assert.equal(strict.global.upper.kind, 'certified');
  for (const l of strict.layers) if (l.upper) assert.equal(l.upper.kind, 'certified', l.id);
  assert.equal(strict.global.failureProbability, 0);
  const off = json(FIXTURES + 'demo.onnx', '--certify', 'off');
  for (const l of off.layers.filter((x: { kind: string }) => x.kind === 'operator')) assert.equal(l.upper.kind, 'probabilistic', l.id);
  assert.equal(off.global.upper.kind, 'probabilistic');
  assert.ok(off.global.failureProbability > 0);
  // the minimum of promises is a promise: auto is never looser than either
  const auto = json(FIXTURES + 'demo.onnx');
  assert.ok(auto.global.upper.value <= Math.min(strict.global.upper.value, off.global.upper.value) * (1 + 1e-3));
});

test('--certify none: quick estimates in fewer Lanczos steps, and only free certified bounds, never probabilistic ones', () => {
  const none = json(FIXTURES + 'demo.onnx', '--certify', 'none', '--method', 'autolip');
  const off = json(FIXTURES + 'demo.onnx', '--certify', 'off', '--method', 'autolip');
  assert.equal(none.settings.certify, 'none');
  assert.equal(none.global.upper.kind, 'certified');
  assert.equal(none.global.failureProbability, 0);
  assert.ok(none.global.upper.value >= off.global.upper.value * (1 - 1e-3), 'the free bounds are no tighter than Lanczos with KW');
  assert.ok(none.global.upper.value >= none.global.lower.value);
  let fewer = 0;
  for (const l of none.layers.filter((x: { kind: string }) => x.kind === 'operator')) {
    const o = off.layers.find((x: { id: string }) => x.id === l.id);
    assert.ok(l.candidates.every((c: { kind: string }) => c.kind === 'certified'), l.id);
    assert.ok(l.upper.value >= l.estimate, `${l.id}: upper ${l.upper.value} below its estimate ${l.estimate}`);
    // the same start vector: the converged estimate is the KW run's estimate at an earlier step
    assert.ok(l.estimate <= o.estimate * (1 + 1e-9) && l.estimate >= o.estimate * (1 - 0.05), `${l.id}: ${l.estimate} vs ${o.estimate}`);
    if (l.iterations < o.iterations) fewer++;
  }
  assert.ok(fewer > 0, 'some operator stopped before the KW step count');
});

const witnessModels = [FIXTURES + 'demo.onnx', FIXTURES + 'mlp_tanh.onnx', ...(hasShared ? [SHARED + 'oval21_wide_kw.onnx', SHARED + 'rpd_gcas.onnx'] : [])];
for (const model of witnessModels) {
  for (const norm of ['2', 'inf']) {
    test(`--witness (${norm}): re-running the saved pair through the model gives the reported lower bound, below the upper (${model.split('/').pop()})`, async () => {
      const file = join(mkdtempSync(join(tmpdir(), 'lipcheck-')), 'w.json');
      const report = json(model, '--norm', norm, '--witness', file);
      const w = JSON.parse(readFileSync(file, 'utf8'));
      assert.equal(w.model, report.model.sha256);
      const runner = await ModelRunner.create(readFileSync(model), { device: 'cpu' }, 'witness check');
      const f = async (x: number[]) => (await runner.run({ [w.input]: { dtype: 'float32', dims: w.shape, data: Float32Array.from(x) } }, [report.output.name])).get(report.output.name)!.data as Float32Array;
      const [fx, fxp] = [await f(w.x), await f(w.xPrime)];
      await runner.release();
      const x = Float32Array.from(w.x), xp = Float32Array.from(w.xPrime);
      const nrm = (v: Float64Array) => (norm === 'inf' ? Math.max(...Array.from(v, Math.abs)) : norm2(v));
      const raw = nrm(Float64Array.from(fx, (v, i) => fxp[i] - v)) / nrm(Float64Array.from(x, (v, i) => xp[i] - v));
      const ratio = pairRatio(fx, fxp, x, xp, norm === 'inf');
      assert.ok(Math.abs(ratio - report.global.lower.value) <= 1e-9 * ratio, `recomputed ${ratio} vs reported ${report.global.lower.value}`);
      assert.ok(ratio <= raw && ratio >= raw * (1 - 1e-2), `the float32 allowance lowers the raw ratio by under 1%: ${raw} slightly (${ratio})`);
      assert.ok(report.global.lower.value <= report.global.upper.value);
    });
  }
}

test('--certify off keeps the free exact values of weight-free operators (a scalar Mul in attention)', { skip: hasShared ? false : 'skipped: ../shared/models is absent' }, () => {
  const r = json(SHARED + 'vit_ibp_3_3_8.onnx', '--certify', 'off', '--lower-budget', '100');
  const scalar = r.layers.find((l: { opTypes: string[]; kind: string }) => l.kind === 'operator' && l.opTypes.join() === 'Mul');
  assert.deepEqual(scalar.upper, { value: 0.25, kind: 'certified', method: 'exact' });
});

test('--certify off on a rank-one operator: Lanczos ends in an invariant space before KW applies, so a certificate bounds it', async () => {
  const { encodeGraph } = await import('../../src/onnx/writer.js');
  const { writeFileSync } = await import('node:fs');
  // W = u vᵀ with u = (1, 2, …, 16), v = (1, −1, 1, …): ‖W‖₂ = ‖u‖·‖v‖ exactly
  const n = 16;
  const u = Array.from({ length: n }, (_, i) => i + 1);
  const v = Array.from({ length: n }, (_, j) => (j % 2 ? -1 : 1));
  const w = new Float32Array(n * n).map((_, k) => u[Math.floor(k / n)] * v[k % n]);
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-rank1-'));
  const path = join(dir, 'rank1.onnx');
  writeFileSync(path, encodeGraph({
    opset: 13,
    inputs: [{ name: 'x', dims: [1, n] }],
    outputs: [{ name: 'y', dims: [1, n] }],
    nodes: [{ opType: 'Gemm', inputs: ['x', 'W'], outputs: ['y'], attrs: { transB: { i: 1 } } }],
    initializers: [['W', { dtype: 'float32', dims: [n, n], data: w }]],
  }));
  const exact = Math.hypot(...u) * Math.hypot(...v);
  const off = json(path, '--certify', 'off', '--method', 'autolip', '--lower-work', '0');
  assert.equal(off.global.status, 'bounded');
  assert.ok(off.global.upper.value >= exact * (1 - 1e-6) && off.global.upper.value <= exact * (1 + 1e-3), `${off.global.upper.value} vs ‖u‖‖v‖ = ${exact}`);
});
