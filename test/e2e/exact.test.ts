import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIXTURES, hasShared, SHARED, weight } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));

/** Runs the built CLI with --json (npm test builds dist/ first). */
function json(...args: string[]): any {
  const r = spawnSync(process.execPath, [BIN, '--json', '--device', 'cpu', ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The brute-force max over the 16 patterns of tiny_relu (4 ReLUs, 2 inputs, 1 output), in float64. */
function tinyReluPatternsMax(norm: '2' | 'inf'): number {
  const w1 = weight('tiny_relu.onnx', 'w1').data, w2 = weight('tiny_relu.onnx', 'w2').data;
  let best = 0;
  for (let mask = 0; mask < 16; mask++) {
    const row = [0, 0];
    for (let k = 0; k < 4; k++) if (mask & (1 << k)) { row[0] += w2[k] * w1[k * 2]; row[1] += w2[k] * w1[k * 2 + 1]; }
    best = Math.max(best, norm === '2' ? Math.hypot(row[0], row[1]) : Math.abs(row[0]) + Math.abs(row[1]));
  }
  return best;
}

test('--method exact on the 2-input tiny_relu fixture: kind exact, met by its witness, below the all-patterns max', () => {
  for (const norm of ['2', 'inf'] as const) {
    const r = json(FIXTURES + 'tiny_relu.onnx', '--method', 'exact', '--norm', norm);
    const g = r.global;
    assert.equal(r.settings.method, 'exact');
    assert.equal(g.upper.kind, 'exact', JSON.stringify(g.upper));
    assert.match(g.upper.method, /^region-enumeration\(\d+ regions/);
    assert.ok(g.lower.value <= g.upper.value && g.upper.value <= g.lower.value * (1 + 1e-6), `ℓ${norm}: ${g.lower.value} .. ${g.upper.value}`);
    assert.ok(g.upper.value <= tinyReluPatternsMax(norm) * (1 + 1e-12));
    // every other bound in the report stays above the exact value
    for (const m of g.methods) if (m.upper) assert.ok(m.upper.value >= g.upper.value * (1 - 1e-9), `${m.method} ${m.upper.value}`);
  }
});

test('--exact-budget too small: no exact claim, the bracket reached and a warning', () => {
  const r = spawnSync(process.execPath, [BIN, '--json', '--device', 'cpu', FIXTURES + 'tiny_relu.onnx', '--method', 'exact', '--exact-budget', '3'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const g = JSON.parse(r.stdout).global;
  assert.notEqual(g.upper.kind, 'exact');
  assert.ok(!g.methods.some((m: any) => m.method === 'exact'));
  assert.match(r.stderr, /Exact constant not reached/);
});

test('--method exact on the 4-input mlp_relu fixture: the branch and bound (relu-bab) gives kind exact, met by its witness; a tanh model declines with the reason and falls back to AutoLip', () => {
  const relu = json(FIXTURES + 'mlp_relu.onnx', '--method', 'exact').global;
  assert.equal(relu.upper.kind, 'exact');
  assert.match(relu.upper.method, /^relu-bab\(/);
  assert.ok(relu.upper.value >= relu.lower.value && relu.upper.value <= relu.lower.value * (1 + 1e-6), `${relu.lower.value} .. ${relu.upper.value}`);
  assert.ok(relu.methods.some((m: { method: string; work?: number }) => m.method === 'relu-bab' && (m.work ?? 0) > 0));
  const r = spawnSync(process.execPath, [BIN, '--json', '--device', 'cpu', FIXTURES + 'mlp_tanh.onnx', '--method', 'exact'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).global.upper.kind, 'certified');
  assert.match(r.stderr, /No exact constant: activation Tanh/);
});

test('shared models: tll_n2_N16_1_0 (exact 2.3187) and vnn_test_tiny (exact 1) are reported as exact by the default method', { timeout: 600_000 }, (t) => {
  if (!hasShared) { t.skip(`${SHARED} is absent: the shared-model exact checks are skipped`); return; }
  const tll = json(SHARED + 'tll_n2_N16_1_0.onnx').global;
  assert.equal(tll.upper.kind, 'exact');
  // the independent value: 2.3187
  assert.ok(Math.abs(tll.upper.value - 2.3187) < 1e-4, `${tll.upper.value}`);
  assert.ok(tll.upper.value <= tll.lower.value * (1 + 1e-6));
  const tiny = json(SHARED + 'vnn_test_tiny.onnx').global;
  assert.equal(tiny.upper.kind, 'exact');
  assert.ok(Math.abs(tiny.upper.value - 1) < 1e-9 && tiny.upper.value <= tiny.lower.value * (1 + 1e-6), `${tiny.lower.value} .. ${tiny.upper.value}`);
});
