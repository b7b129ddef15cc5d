import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIXTURES, sigmaMax, weight } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));

/** Runs the built CLI (npm test builds dist/ first) with colour off. */
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, ...(args.includes('--list-ops') || args.includes('--help') ? [] : ['--lower-budget', '300'])], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('no argument: analyses the bundled demo model and prints the table', () => {
  const r = cli('--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /fixtures\/demo\.onnx/);
  for (const node of ['conv1', 'bn1', 'relu1', 'pool1', 'conv2', 'gemm_h', 'gemm_logits']) assert.match(r.out, new RegExp(node));
  assert.match(r.out, /Global Lipschitz bound \(ℓ2\): [0-9.e+]+ {2}\[(certified|probabilistic), autolip(\+cp)?\]/);
  assert.match(r.out, /by method: autolip [0-9.e+]+ \((certified|probabilistic)\) · autolip\+cp/);
  assert.match(r.out, /witnessed lower bound/);
  assert.doesNotMatch(r.out, /\x1b\[/, 'no colour codes when NO_COLOR is set');
});

test('--json: versioned schema, kinds on every bound, no Infinity', () => {
  const r = cli(FIXTURES + 'demo.onnx', '--json', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.schemaVersion, 1);
  assert.deepEqual(Object.keys(j), ['schemaVersion', 'tool', 'model', 'input', 'output', 'norm', 'settings', 'global', 'layers', 'warnings', 'timings', 'resources']);
  // the process's peak memory: at least what Node and onnxruntime take, below this machine's memory
  assert.ok(j.resources.peakRssMb > 30 && j.resources.peakRssMb < 64 * 1024, `peak ${j.resources.peakRssMb} MB`);
  assert.match(j.model.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(j.input, { name: 'image', shape: [1, 1, 12, 12] });
  assert.equal(j.global.status, 'bounded');
  assert.ok(['certified', 'probabilistic'].includes(j.global.upper.kind));
  assert.ok(j.global.lower.value <= j.global.upper.value);
  for (const l of j.layers) if (l.upper) assert.ok(['certified', 'probabilistic'].includes(l.upper.kind), `${l.id}: ${l.upper.kind}`);
  assert.deepEqual(j.layers.find((l: { kind: string }) => l.kind === 'operator').nodes, ['conv1', 'bn1']);
});

test('--max gates: exit 1 above the bound, 0 below, 1 for unbounded', () => {
  const j = JSON.parse(cli(FIXTURES + 'gemm_sv.onnx', '--json', '--device', 'cpu').out);
  const u = j.global.upper.value;
  assert.equal(cli(FIXTURES + 'gemm_sv.onnx', '--max', String(u * 1.01), '--device', 'cpu').code, 0);
  const fail = cli(FIXTURES + 'gemm_sv.onnx', '--max', String(u * 0.99), '--device', 'cpu');
  assert.equal(fail.code, 1);
  assert.match(fail.err, /gate failed/);
  assert.equal(cli(FIXTURES + 'product.onnx', '--max', '1000', '--device', 'cpu').code, 1);
});

const errors: [string, string[], number, RegExp][] = [
  ['truncated file', ['broken_truncated.onnx'], 2, /corrupt or truncated/],
  ['not ONNX', ['broken_not_onnx.onnx'], 2, /not a readable ONNX model/],
  ['empty file', ['broken_empty.onnx'], 2, /is empty/],
  ['missing file', ['does_not_exist.onnx'], 2, /does not exist/],
  ['a directory', ['.'], 2, /is a directory/],
  ['unsupported ops, all listed', ['broken_unsupported.onnx'], 3, /Mystery \(domain com.example\) node 'mystery_1'[\s\S]*Det node 'det_2'/],
  ['NaN weights', ['broken_nan.onnx'], 3, /NaN/],
  ['missing external data', ['broken_external_missing.onnx'], 2, /External data file 'missing.bin' for initializer 'w' is missing/],
  ['short external data', ['broken_external_short.onnx'], 2, /too short: it has 20 bytes but the model reads 48/],
  ['symbolic dimension', ['symbolic_dims.onnx'], 2, /--input-shape/],
  ['contradicting shape', ['gemm_sv.onnx', '--input-shape', '1,5'], 2, /contradicts/],
  ['bad option value', ['gemm_sv.onnx', '--delta', '2'], 2, /--delta/],
  ['a graph with a cycle', ['broken_cycle.onnx'], 2, /the graph has a cycle \('add_a' → 'relu_b' → 'add_a'\)/],
  ['a dangling input', ['broken_dangling.onnx'], 2, /Gemm node 'gemm_y' reads 'w_missing', which no node, initializer or graph input provides/],
  ['an initializer whose bytes contradict its shape', ['broken_bytes.onnx'], 2, /Tensor 'w' .* has 20 bytes of data, but its shape \[3, 2\] of float32 needs 24/],
  ['a zero-sized input', ['broken_zero_sized.onnx'], 3, /zero-sized dimension/],
  ['an input too large to analyse', ['symbolic_dims.onnx', '--input-shape', '1,3,900000000'], 3, /needs at least [0-9.]+ GiB/],
];
for (const [what, args, code, message] of errors) {
  test(`error: ${what} → exit ${code}, one clear message, no stack trace`, () => {
    const r = cli(...args.map((a, i) => (i === 0 && a !== '.' && !a.startsWith('does_not') ? FIXTURES + a : a)), '--device', 'cpu');
    assert.equal(r.code, code, r.err);
    assert.match(r.err, message);
    assert.equal(r.out, '', 'nothing on stdout');
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace without --debug');
  });
}

test('symbolic dimension with --input-shape runs', () => {
  const r = cli(FIXTURES + 'symbolic_dims.onnx', '--input-shape', '1,3,7', '--json', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out).input.shape, [1, 3, 7]);
});

test('--list-ops prints the registry; --help documents exit codes', () => {
  const ops = cli('--list-ops');
  assert.equal(ops.code, 0);
  for (const op of ['Conv', 'Gemm', 'MaxPool', 'Softmax', 'ArgMax']) assert.match(ops.out, new RegExp(`^${op} `, 'm'));
  const help = cli('--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /Exit codes: 0 ok, 1 gate failed/);
  assert.match(help.out, /--certify <mode>/);
});

test('several outputs: a warning names the one analysed; --all-outputs gives one report per output', () => {
  const one = cli(FIXTURES + 'two_outputs.onnx', '--device', 'cpu');
  assert.equal(one.code, 0, one.err);
  assert.match(one.out, /The model has 2 outputs; only the first, 'features', is analysed/);
  const r = cli(FIXTURES + 'two_outputs.onnx', '--all-outputs', '--json', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  const reports = JSON.parse(r.out);
  assert.deepEqual(reports.map((x: { output: { name: string } }) => x.output.name), ['features', 'logits']);
  const w1 = weight('two_outputs.onnx', 'w1');
  const s1 = sigmaMax(w1.data, 6, 5);
  // 'features' is the affine map W1·x + b1: its constant is exactly σ_max(W1)
  assert.ok(reports[0].global.upper.value >= s1 && reports[0].global.upper.value <= s1 * 1.06, `${reports[0].global.upper.value} vs ${s1}`);
  assert.ok(reports[0].global.lower.value <= s1 * (1 + 1e-4));
  assert.equal(reports[1].global.status, 'bounded');
  const gate = cli(FIXTURES + 'two_outputs.onnx', '--all-outputs', '--max', String(s1 * 1.1), '--device', 'cpu');
  assert.equal(gate.code, reports[1].global.upper.value > s1 * 1.1 ? 1 : 0);
  assert.equal(cli(FIXTURES + 'two_outputs.onnx', '--all-outputs', '--output', 'logits').code, 2);
});

test('a reader that closes the pipe early (lipcheck … | true) gets no stack trace, and the exit code stays the gate\'s', () => {
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${BIN}" fixtures/gemm_sv.onnx --device cpu --json --max 1 --lower-budget 300 | true; echo "status=\${PIPESTATUS[0]}" >&2`], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 });
  assert.match(r.stderr, /status=1\n/, r.stderr);
  assert.doesNotMatch(r.stderr, /EPIPE|at .*\.js:\d+/, r.stderr);
  assert.match(r.stderr, /gate failed/);
});
