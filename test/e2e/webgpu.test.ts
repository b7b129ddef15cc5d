/**
 * `--device webgpu` for real, on the software adapter of scripts/swiftshader.sh (SwiftShader: Vulkan on the CPU), so
 * that the WebGPU provider's code paths and the float32 arithmetic of its shaders are checked on a machine without a
 * GPU. Each test skips, saying how to get the adapter, where .swiftshader/ is absent. Correctness only: SwiftShader's
 * speed says nothing about a GPU's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { convMatrix, FIXTURES, sigmaMax, weight } from '../helpers/dense.js';
import { softwareWebgpu } from '../helpers/webgpu.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const gpu = softwareWebgpu();

function lipcheck(env: NodeJS.ProcessEnv, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json', '-q'], { encoding: 'utf8', env, timeout: 300_000 });
  assert.equal(r.status, 0, `lipcheck ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('--device webgpu on a software adapter: a Conv bounded above its float64 σ_max, a Gemm\'s exact σ, lower ≤ the true constant', (t) => {
  if (gpu.skip !== undefined) return t.skip(gpu.skip);
  const w = weight('conv.onnx', 'w');
  const { m, rows, cols } = convMatrix(w.data, w.dims, 5, 5, [1, 1, 1, 1], 1);
  const truth = sigmaMax(m, rows, cols);
  const conv = lipcheck(gpu.env, FIXTURES + 'conv.onnx', '--device', 'webgpu', '--certify', 'off', '--lower-budget', '100');
  assert.equal(conv.settings.provider, 'webgpu');
  const up = conv.global.upper;
  assert.ok(up.value >= truth && up.value <= truth * 1.06, `conv upper ${up.value} (${up.kind}) vs σ ${truth}`);
  assert.ok(conv.global.lower.value <= truth * (1 + 1e-6) && conv.global.lower.value >= truth * 0.5, `conv lower ${conv.global.lower.value} vs σ ${truth}`);
  // singular values 3, 2, 1, 0.5 before the weights were rounded to float32: σ of the stored ones, in float64
  const g = weight('gemm_sv.onnx', 'w');
  const sigma = sigmaMax(g.data, g.dims[0], g.dims[1]);
  assert.ok(Math.abs(sigma - 3) < 1e-6);
  const gemm = lipcheck(gpu.env, FIXTURES + 'gemm_sv.onnx', '--device', 'webgpu', '--lower-budget', '100');
  assert.equal(gemm.settings.provider, 'webgpu');
  assert.equal(gemm.global.upper.kind, 'certified');
  assert.ok(gemm.global.upper.value >= sigma && gemm.global.upper.value <= sigma * (1 + 1e-9), `gemm upper ${gemm.global.upper.value} vs σ ${sigma}`);
  assert.ok(gemm.global.lower.value <= sigma * (1 + 1e-6) && gemm.global.lower.value >= 0.99 * sigma, `gemm lower ${gemm.global.lower.value}`);
});

test('--device webgpu and --device cpu give the same demo report but for the products\' rounding and WebGPU\'s wider margin', (t) => {
  if (gpu.skip !== undefined) return t.skip(gpu.skip);
  const args = [FIXTURES + 'demo.onnx', '--method', 'autolip', '--lower-budget', '100'];
  const [w, c] = [lipcheck(gpu.env, ...args, '--device', 'webgpu'), lipcheck(gpu.env, ...args, '--device', 'cpu')];
  assert.deepEqual([w.settings.provider, c.settings.provider], ['webgpu', 'cpu']);
  assert.deepEqual(w.layers.map((l: any) => [l.id, l.upper?.kind, l.iterations]), c.layers.map((l: any) => [l.id, l.upper?.kind, l.iterations]), 'the same rows, kinds and KW steps');
  for (const [i, l] of w.layers.entries()) {
    const [a, b] = [l.upper?.value ?? 0, c.layers[i].upper?.value ?? 0];
    // the same start and recurrence: estimates agree but for the products' rounding
    assert.ok(Math.abs((l.estimate ?? 0) - (c.layers[i].estimate ?? 0)) <= 1e-6 * b, `${l.id}: estimates ${l.estimate} vs ${c.layers[i].estimate}`);
    // certified bounds are float64 certificates, the same; a probabilistic one carries η with WGSL's float32 unit (2⁻²³,
    // twice IEEE's), so it is above the CPU's by about η/(2σ): 4.6·10⁻⁵ on op2
    if (l.upper?.kind === 'probabilistic') assert.ok(a >= b * (1 - 1e-6) && a <= b * (1 + 1e-3), `${l.id}: webgpu ${a} vs cpu ${b}`);
    else assert.ok(Math.abs(a - b) <= 1e-6 * b, `${l.id}: webgpu ${a} vs cpu ${b}`);
  }
  assert.ok(w.layers.some((l: any) => l.upper?.kind === 'probabilistic' && l.upper.value > c.layers.find((x: any) => x.id === l.id).upper.value), 'WebGPU\'s wider margin shows');
  assert.ok(w.global.upper.value >= c.global.upper.value * (1 - 1e-6) && w.global.upper.value <= c.global.upper.value * (1 + 1e-3));
  assert.equal(w.global.upper.kind, c.global.upper.kind);
  assert.ok(w.global.lower.value > 0 && w.global.lower.value <= c.global.upper.value, `lower ${w.global.lower.value}, upper ${c.global.upper.value}`);
});

test('the float32 fused Lanczos checks (test/unit/linalg/fused-lanczos32.test.ts) hold with the shaders\' arithmetic', (t) => {
  if (gpu.skip !== undefined) return t.skip(gpu.skip);
  // a test runner of its own (NODE_TEST_CONTEXT would make it report to this one in a binary stream), TAP on stdout
  const env: NodeJS.ProcessEnv = { ...gpu.env, LIPCHECK_TEST_DEVICE: 'webgpu' };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/unit/linalg/fused-lanczos32.test.ts'], { cwd: ROOT, encoding: 'utf8', env, timeout: 400_000 });
  const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  assert.equal(r.status, 0, r.stdout.slice(-4000) + r.stderr);
  assert.ok(count('pass') >= 6 && count('fail') === 0 && count('skipped') === 0, r.stdout.slice(-800));
});
