import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cudaInstalled, vulkanLoaderFound } from '../../src/backend/runtime.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { OP_REGISTRY } from '../../src/ops/registry.js';
import { makeHostile } from '../../fixtures/make-hostile.js';
import { FIXTURES, sigmaMax, weight } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;

/** Runs the built CLI (npm test builds dist/ first) with colour off; `input` is fed to its stdin. */
function run(args: readonly string[], input?: Uint8Array | string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000, input });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Runs an analysis with a short lower-bound budget (other commands: see run). */
function cli(...args: string[]) {
  return run([...args, ...(args.includes('--list-ops') || args.includes('--help') ? [] : ['--lower-budget', '300'])]);
}

test('no argument: analyses the bundled demo model and prints the table', () => {
  const r = cli('--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /fixtures\/demo\.onnx/);
  for (const node of ['conv1', 'bn1', 'relu1', 'pool1', 'conv2', 'gemm_h', 'gemm_logits']) assert.match(r.out, new RegExp(node));
  assert.match(r.out, /Global Lipschitz bound \(ℓ2\): [0-9.e+]+ {2}\[(certified|probabilistic), autolip(\+\w+)?\]/);
  assert.match(r.out, /by method: autolip [0-9.e+]+ \((certified|probabilistic)\) · autolip\+cp/);
  assert.match(r.out, /witnessed lower bound/);
  assert.doesNotMatch(r.out, /\x1b\[/, 'no colour codes when NO_COLOR is set');
});

test('--json: versioned schema, kinds on every bound, no Infinity', () => {
  const r = cli(FIXTURES + 'demo.onnx', '--json', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.schemaVersion, 1);
  assert.deepEqual(Object.keys(j), ['schemaVersion', 'tool', 'model', 'input', 'output', 'norm', 'settings', 'global', 'layers', 'warnings', 'timings', 'resources', 'gates']);
  assert.deepEqual(j.gates, [], 'no gate asked for: an empty list');
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
  ['missing external data', ['broken_external_missing.onnx'], 2, /External data file 'missing.bin' for initializer 'w' is missing|Initializer 'w' .* external data file 'missing.bin', which is missing/],
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
  // a warning goes to stderr: stdout is the report alone
  assert.match(one.err, /^lipcheck: warning: The model has 2 outputs; only the first, 'features', is analysed/m);
  assert.doesNotMatch(one.out, /warning|The model has 2 outputs/);
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

// ---- CLI habits (issue 13 item 3) ----

test('--version and -V print the package version alone on stdout, for every command', () => {
  for (const args of [['--version'], ['-V'], ['batch', '--version'], ['merge', '-V']]) {
    const r = run(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.out, `${VERSION}\n`, args.join(' '));
    assert.equal(r.err, '');
  }
});

test('stdout carries only the report: warnings and phase lines go to stderr, also with --json; -q leaves stderr empty', () => {
  const table = cli(FIXTURES + 'two_outputs.onnx', '--device', 'cpu');
  assert.equal(table.code, 0, table.err);
  assert.doesNotMatch(table.out, /warning|^lipcheck: /m);
  assert.match(table.err, /^lipcheck: warning: .*2 outputs/m);
  const json = cli(FIXTURES + 'two_outputs.onnx', '--device', 'cpu', '--json');
  assert.equal(json.code, 0, json.err);
  const j = JSON.parse(json.out); // the whole of stdout is one JSON document
  assert.ok(j.warnings.some((w: string) => /2 outputs/.test(w)), 'the warning stays in the JSON report');
  assert.match(json.err, /^lipcheck: warning: .*2 outputs/m);
  const quiet = cli(FIXTURES + 'two_outputs.onnx', '--device', 'cpu', '--json', '-q');
  assert.equal(quiet.code, 0);
  assert.equal(quiet.err, '', 'nothing on stderr with -q');
  assert.deepEqual(JSON.parse(quiet.out).global.upper, j.global.upper);
  // -q keeps what a CI job must see: errors and failed gates
  const gate = cli(FIXTURES + 'gemm_sv.onnx', '--device', 'cpu', '--max', '0.001', '--quiet');
  assert.equal(gate.code, 1);
  assert.match(gate.err, /gate failed/);
  assert.equal(cli(FIXTURES + 'gemm_sv.onnx', '-q', '--verbose').code, 2);
});

// where the WebGPU precheck finds a loader: the system's folders and LD_LIBRARY_PATH's
const hasVulkan = vulkanLoaderFound();

test('--device auto on a small model is the CPU, installed CUDA or not, with the reason said only with --verbose', () => {
  const r = cli(FIXTURES + 'gemm_sv.onnx', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.settings.device, 'auto');
  assert.equal(j.settings.provider, 'cpu', 'a 3×3 Gemm is far under the work from which auto tries CUDA, and auto never probes WebGPU');
  assert.ok(!j.warnings.some((w: string) => /Using the CPU/.test(w)), 'the machine notice is not part of the report');
  assert.doesNotMatch(r.err, /Using the CPU|Vulkan|Dawn|XDG_RUNTIME_DIR|onnxruntime/);
  const v = cli(FIXTURES + 'gemm_sv.onnx', '--json', '--verbose');
  assert.equal(v.code, 0, v.err);
  assert.match(v.err, /^lipcheck: device: cpu \(--device auto\)\. Using the CPU: /m);
  if (cudaInstalled()) assert.match(v.err, /Using the CPU: this model's large products add up to 0\.00 Gflop a sweep, under the 2 Gflop/);
  else assert.match(v.err, /Using the CPU: .*CUDA.*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  // said once, after the graph is read (the device is chosen from the model's operators), before the operator norms
  const lines = v.err.split('\n');
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  assert.equal(lines.filter((l) => /^lipcheck: device:/.test(l)).length, 1);
  assert.ok(at(/reading the graph/) < at(/^lipcheck: device:/) && at(/^lipcheck: device:/) < at(/operator norms/), v.err);
});

test('--device cuda without its provider is a device error (exit 5) that says what is missing, not a model error', (t) => {
  if (cudaInstalled()) return t.skip('the CUDA provider is installed here: --device cuda may work');
  const r = cli(FIXTURES + 'gemm_sv.onnx', '--device', 'cuda');
  assert.equal(r.code, EXIT.DEVICE);
  assert.equal(r.code, 5);
  assert.equal(r.out, '');
  assert.match(r.err, /^lipcheck: --device cuda: the CUDA provider of onnxruntime-node is not installed/);
  assert.match(r.err, /ONNXRUNTIME_NODE_INSTALL=cuda12.*--device cpu/);
  assert.doesNotMatch(r.err, /not a valid ONNX model|Re-export|\x1b\[|\[E:onnxruntime|provider_bridge/, 'no onnxruntime log line, no blame on the model');
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
});

test('--device webgpu without a Vulkan loader is a device error (exit 5) naming the loader', (t) => {
  if (hasVulkan) return t.skip('a Vulkan loader is installed here: WebGPU may start');
  const r = cli(FIXTURES + 'gemm_sv.onnx', '--device', 'webgpu', '--json');
  assert.equal(r.code, 5, r.err);
  assert.equal(r.out, '');
  assert.match(r.err, /--device webgpu: WebGPU needs a Vulkan loader \(libvulkan\.so\.1\).*libvulkan1/);
  assert.doesNotMatch(r.err, /BackendVk|Couldn't load Vulkan|not a valid ONNX model/);
});

test('- reads the model from stdin: the same numbers as from the file; external data and garbage are refused', () => {
  const bytes = readFileSync(FIXTURES + 'gemm_sv.onnx');
  const file = JSON.parse(cli(FIXTURES + 'gemm_sv.onnx', '--json', '--device', 'cpu').out);
  const piped = run(['-', '--json', '--device', 'cpu', '--lower-budget', '300'], bytes);
  assert.equal(piped.code, 0, piped.err);
  const j = JSON.parse(piped.out);
  assert.equal(j.model.path, '<stdin>');
  assert.equal(j.model.sha256, file.model.sha256);
  assert.equal(j.model.bytes, bytes.length);
  assert.deepEqual(j.global.upper, file.global.upper);
  // gemm_sv is the affine map W·x + b: its constant is σ_max(W) (float64 SVD)
  const w = weight('gemm_sv.onnx', 'w');
  const s = sigmaMax(w.data, w.dims[0], w.dims[1]);
  assert.ok(j.global.upper.value >= s * (1 - 1e-6) && j.global.upper.value <= s * 1.06, `${j.global.upper.value} vs σ_max ${s}`);
  const all = run(['-', '--all-outputs', '--json', '--device', 'cpu', '--lower-budget', '300'], readFileSync(FIXTURES + 'two_outputs.onnx'));
  assert.equal(all.code, 0, all.err);
  assert.deepEqual(JSON.parse(all.out).map((r: { output: { name: string } }) => r.output.name), ['features', 'logits']);
  const ext = run(['-', '--device', 'cpu'], readFileSync(FIXTURES + 'external.onnx'));
  assert.equal(ext.code, 2);
  assert.match(ext.err, /stdin keeps tensor '\w+' in external data \('external\.bin'\).*Give the model's path instead of '-'/);
  // external data anywhere (a Constant's value, an If branch) would be looked up from the working directory: refused
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-stdin-'));
  try {
    const hostile = makeHostile(dir);
    for (const name of ['ext_constant_dotdot', 'ext_subgraph_dotdot']) {
      const h = run(['-', '--device', 'cpu', '--json'], readFileSync(hostile.cases[name]));
      assert.equal(h.code, 2, `${name}: ${h.err}`);
      assert.match(h.err, /stdin keeps tensor '[^']*' in external data \('\.\.\/secret\/secret\.bin'\)/, name);
      assert.equal(h.out, '');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const junk = run(['-', '--device', 'cpu'], readFileSync(FIXTURES + 'broken_not_onnx.onnx'));
  assert.equal(junk.code, 2);
  assert.match(junk.err, /'<stdin>' is not a readable ONNX model/);
  const junkAll = run(['-', '--all-outputs', '--device', 'cpu'], readFileSync(FIXTURES + 'broken_not_onnx.onnx'));
  assert.equal(junkAll.code, 2, 'with --all-outputs too: the decoding error, not an internal one');
  assert.match(junkAll.err, /'<stdin>' is not a readable ONNX model/);
  const empty = run(['-', '--device', 'cpu'], '');
  assert.equal(empty.code, 2);
  assert.match(empty.err, /'<stdin>' is empty/);
});

test('several model paths: exit 2 with the batch command to run instead', () => {
  const r = cli(FIXTURES + 'gemm_sv.onnx', FIXTURES + 'tiny_relu.onnx', '--device', 'cpu');
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /one model per run, and 2 were given/);
  assert.ok(r.err.includes(`lipcheck batch ${FIXTURES}gemm_sv.onnx ${FIXTURES}tiny_relu.onnx`), r.err);
  assert.doesNotMatch(r.err, /too many arguments/);
});

test('lipcheck help <command> prints that command\'s help; an unknown command is a usage error', () => {
  const batch = run(['help', 'batch']);
  assert.equal(batch.code, 0, batch.err);
  assert.match(batch.out, /^Usage: lipcheck batch \[options\] <paths\.\.\.>/);
  assert.match(batch.out, /--jobs <n>/);
  const merge = run(['help', 'merge']);
  assert.equal(merge.code, 0, merge.err);
  assert.match(merge.out, /^Usage: lipcheck merge \[options\] <files\.\.\.>/);
  const main = run(['help']);
  assert.equal(main.code, 0);
  assert.equal(main.out, run(['--help']).out);
  const bad = run(['help', 'nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /no command 'nope'.*lipcheck help batch/);
});

test('--help: the common options first, the expert ones grouped after them; exit code 5 documented', () => {
  const h = run(['--help']).out;
  const at = (s: string) => { const i = h.indexOf(s); assert.ok(i >= 0, `--help lacks ${s}`); return i; };
  const expert = at('\nExpert options');
  for (const common of ['--json', '--max <L>', '--baseline <file>', '--device <d>', '-q, --quiet', '--verbose', '-V, --version']) assert.ok(at(`  ${common}`) < at('\nModel inputs and outputs:'), common);
  for (const knob of ['--method <m>', '--tol <t>', '--iterations <k>', '--delta <p>', '--seqlip-k <k>', '--threads <n>']) assert.ok(at(`  ${knob}`) > expert, knob);
  assert.ok(at('\nOptions:') < at('\nModel inputs and outputs:') && at('\nReports:') < expert && expert < at('\nOther:'));
  assert.match(h, /5 device unavailable/);
  assert.match(h, /lipcheck help \[command\]/);
  // the README's exit-code table has a row for every exit code
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Exit codes'), readme.indexOf('\n## ', readme.indexOf('## Exit codes') + 3));
  assert.match(table, /\| 5 \| .*device/i);
  const documented = table.split('\n').filter((l) => /^\| [\d, ]+ \|/.test(l)).flatMap((l) => l.split('|')[1].split(',').map((x) => Number(x.trim())));
  for (const code of Object.values(EXIT)) assert.ok(documented.includes(code), `README exit-code table lacks ${code}`);
});

test('--list-ops --json: one object per registry row, parseable', () => {
  const r = run(['--list-ops', '--json']);
  assert.equal(r.code, 0, r.err);
  const ops = JSON.parse(r.out) as { opType: string; domain: string; family: string; opsets: number[]; treatment: string }[];
  assert.equal(ops.length, OP_REGISTRY.length);
  const gemm = ops.find((o) => o.opType === 'Gemm' && o.domain === '')!;
  assert.equal(gemm.family, 'linear');
  assert.equal(gemm.opsets.length, 2);
  assert.ok(ops.some((o) => o.opType === 'ArgMax' && o.family === 'discontinuous'));
  assert.equal(run(['--list-ops']).out.trim().split('\n').length, OP_REGISTRY.length + 1, 'the text table: a header and one row per op');
});

test('an option of another command says what it is for instead of suggesting a look-alike', () => {
  const r = cli(FIXTURES + 'gemm_sv.onnx', '--out', 'r.json', '--device', 'cpu');
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /--out is the JSON-lines file of 'lipcheck batch' and 'lipcheck merge'.*--json > report\.json/);
  assert.doesNotMatch(r.err, /Did you mean/);
  const jobs = run(['merge', 'x.jsonl', '--jobs', '2']);
  assert.equal(jobs.code, 2);
  assert.match(jobs.err, /--jobs is an option of 'lipcheck batch', not of 'lipcheck merge'/);
  assert.equal(existsSync('r.json'), false);
});

test('progress covers every phase on stderr, one line each when stderr is not a terminal, also with --json', () => {
  const r = cli(FIXTURES + 'demo.onnx', '--json', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  JSON.parse(r.out);
  const phases = r.err.split('\n').filter((l) => /^lipcheck: \[\d+\.\ds\] /.test(l)).map((l) => l.replace(/^lipcheck: \[\d+\.\ds\] \S+: /, ''));
  assert.deepEqual(phases.map((p) => p.replace(/,.*$/, '')), ['reading the graph', 'operator norms', 'tighter bounds on segments (CP', 'witnessed lower bound']);
  const j = JSON.parse(r.out);
  const operators = j.layers.filter((l: { kind: string }) => l.kind === 'operator').length;
  assert.equal(phases[1], `operator norms, ${operators} operators`);
  assert.equal(cli(FIXTURES + 'demo.onnx', '--json', '--device', 'cpu', '-q').err, '');
});
