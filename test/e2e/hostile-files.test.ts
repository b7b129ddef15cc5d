import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeHostile, SECRET_SIZE, WEIGHT_NORM, type HostileSet } from '../../fixtures/make-hostile.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));

/** Runs the built CLI (npm test builds dist/ first) with colour off, from the folder above the models; a hang ends at 60 s and fails the test (code null). */
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--device', 'cpu', '--lower-budget', '200'], { cwd: set.root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000, maxBuffer: 1 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr, all: `${r.stdout}\n${r.stderr}` };
}

let set: HostileSet;
before(() => {
  set = makeHostile(mkdtempSync(join(tmpdir(), 'lipcheck-hostile-')));
});
after(() => rmSync(set.root, { recursive: true, force: true }));

/** Nothing about the secret file outside the model's folder: not its size, not its bytes read as floats, not its real path. */
function assertNoLeak(text: string, allowPath = false) {
  assert.doesNotMatch(text, new RegExp(`\\b${SECRET_SIZE}\\b`), 'the secret file size appears');
  // the bytes as weights: 1234.57 each, a bound of 4 × 1234.57 ≈ 4938 for the all-equal 4×4 matrix
  for (const shown of ['1234.5', '1.234e+3', '1.235e+3', '4938', '4.938e+3']) assert.ok(!text.includes(shown), `the secret value appears as ${shown}`);
  if (!allowPath) assert.ok(!text.includes(set.secretPath), 'the secret path appears');
}

test('external data outside the model folder (.., symlinked file or folder, absolute, /dev/zero; initializers, Constant values, subgraphs) is refused with one message that reveals nothing', () => {
  const messages = new Map<string, string>();
  for (const name of ['ext_dotdot', 'ext_dotdot_nolength', 'ext_dotdot_missing', 'ext_symlink_file', 'ext_symlink_dir', 'ext_absolute', 'ext_devzero', 'ext_constant_dotdot', 'ext_subgraph_dotdot']) {
    const r = cli(set.cases[name], '--json');
    assert.equal(r.code, 2, `${name}: exit ${r.code}\n${r.all}`);
    assert.equal(r.out, '', `${name}: no report`);
    assert.match(r.err, / in \S+\.onnx points to external data '[^']+' outside the model's folder/, name);
    assertNoLeak(r.all, name === 'ext_absolute');
    messages.set(name, r.err.replace(`${name}.onnx`, 'MODEL').replace(/external data '[^']+'/, 'external data LOCATION'));
  }
  // a file that exists outside and one that does not get the same words: existence is not revealed
  assert.equal(messages.get('ext_dotdot'), messages.get('ext_dotdot_missing'));
});

test('external data that is a directory or a FIFO is refused at once as not a regular file', (t) => {
  const dir = cli(set.cases.ext_directory);
  assert.equal(dir.code, 2, dir.all);
  assert.match(dir.err, /external data 'sub', which is a directory, not a regular file/);
  if (!set.fifos) return t.skip('mkfifo is unavailable here');
  const fifo = cli(set.cases.ext_fifo);
  assert.equal(fifo.code, 2, `a FIFO with no writer must not hang (exit ${fifo.code})\n${fifo.all}`);
  assert.match(fifo.err, /external data 'pipe\.bin', which is a FIFO, not a regular file/);
});

test('external data offsets and lengths that are not byte positions inside the file are refused, never read', () => {
  const bad: [string, string, string][] = [
    ['ext_offset_abc', 'offset', 'abc'], ['ext_offset_negative', 'offset', '-4'], ['ext_offset_fraction', 'offset', '1.5'],
    ['ext_offset_huge', 'offset', '99999999999999999999'], ['ext_length_negative', 'length', '-64'], ['ext_length_abc', 'length', 'sixty-four'],
  ];
  for (const [name, key, value] of bad) {
    const r = cli(set.cases[name]);
    assert.equal(r.code, 2, `${name}: exit ${r.code}\n${r.all}`);
    assert.equal(r.out, '', `${name}: no bound is reported`);
    assert.ok(r.err.includes(`gives its external data ${key} as '${value}', which is not a byte count`), `${name}: ${r.err}`);
  }
  const past = cli(set.cases.ext_offset_past_end);
  assert.equal(past.code, 2, past.all);
  assert.match(past.err, /reads external data at offset 100, past the end of 'weights\.bin' \(64 bytes\)/);
  const short = cli(set.cases.ext_length_past_end);
  assert.equal(short.code, 2, short.all);
  assert.match(short.err, /it has 64 bytes but the model reads 64 bytes at offset 8/);
});

test('missing external data names the tensor, the location and what to do', () => {
  const r = cli(set.cases.ext_missing);
  assert.equal(r.code, 2, r.all);
  assert.match(r.err, /External data file 'nothing\.bin' for initializer 'w' is missing from the folder of ext_missing\.onnx\. Copy the model's data files next to it\./);
});

test('external data in a subgraph is read by lipcheck from the model folder, whatever the working directory: bound = 1', () => {
  const r = cli(set.cases.ext_ok_subgraph, '--json');
  assert.equal(r.code, 0, r.all);
  assert.ok(Math.abs(JSON.parse(r.out).global.upper.value - 1) < 1e-12, r.out);
});

test('external data through a symlink or a .. that stays inside the folder, or in float16, is read: bound = ‖W‖₂ = 2', () => {
  for (const name of ['ext_ok_symlink_inside', 'ext_ok_dotdot_inside', 'ext_ok_float16']) {
    const r = cli(set.cases[name], '--json');
    assert.equal(r.code, 0, `${name}\n${r.all}`);
    const j = JSON.parse(r.out);
    assert.ok(Math.abs(j.global.upper.value - WEIGHT_NORM) < 1e-5, `${name}: ${j.global.upper.value}`);
    assert.equal(j.global.upper.kind, 'certified');
  }
});

test('model paths that are not regular files, or larger than 2 GiB, are refused at once (exit 2)', (t) => {
  const zero = cli('/dev/zero');
  assert.equal(zero.code, 2, `lipcheck /dev/zero must not read forever (exit ${zero.code})\n${zero.all}`);
  assert.match(zero.err, /Model file '\/dev\/zero' is a device, not a regular file/);
  const huge = cli(set.cases.model_huge);
  assert.equal(huge.code, 2, huge.all);
  assert.match(huge.err, /is 2\.00 GiB, over the 2 GiB that an ONNX protobuf file can hold/);
  if (!set.fifos) return t.skip('mkfifo is unavailable here');
  const fifo = cli(set.cases.model_fifo);
  assert.equal(fifo.code, 2, `a FIFO model path must not hang (exit ${fifo.code})\n${fifo.all}`);
  assert.match(fifo.err, /is a FIFO \(named pipe\), not a regular file/);
});

test('float16, float64 and bfloat16 graph inputs and outputs are analysed: bound = ‖W‖₂ = 2, witnessed near 2', () => {
  // io_float16_folded: a Transpose of the weight that onnxruntime evaluates, returned as float16 bits
  for (const name of ['io_float16', 'io_float16_folded', 'io_float64', 'io_bfloat16']) {
    const r = cli(set.cases[name], '--json');
    assert.equal(r.code, 0, `${name}\n${r.all}`);
    const j = JSON.parse(r.out);
    assert.deepEqual([j.input.name, j.output.name], ['x', 'y'], name);
    // W = diag(2, 1, 0.5, 0.25) is exact in every one of these types
    assert.ok(Math.abs(j.global.upper.value - WEIGHT_NORM) < 1e-5, `${name}: upper ${j.global.upper.value}`);
    // pairs through the model itself (inputs rounded to its type) witness close to 2, never above the bound
    assert.ok(j.global.lower.value > 1.8 && j.global.lower.value <= j.global.upper.value, `${name}: lower ${j.global.lower.value}`);
  }
});

test('a graph with no nodes (output = input) has constant 1; an initializer as the output has constant 0', () => {
  const empty = cli(set.cases.graph_empty, '--json');
  assert.equal(empty.code, 0, empty.all);
  const e = JSON.parse(empty.out);
  assert.equal(e.global.status, 'bounded');
  assert.ok(Math.abs(e.global.upper.value - 1) < 1e-12, `upper ${e.global.upper.value}`);
  assert.ok(e.global.lower.value > 0.99 && e.global.lower.value <= e.global.upper.value, `lower ${e.global.lower.value}`);
  const constant = cli(set.cases.graph_initializer_output, '--json');
  assert.equal(constant.code, 0, constant.all);
  const c = JSON.parse(constant.out);
  assert.equal(c.output.name, 'w');
  assert.deepEqual([c.global.status, c.global.upper.value, c.global.lower.value], ['bounded', 0, 0]);
  assert.ok(c.warnings.some((w: string) => /Output 'w' does not depend on input 'x' \(it is an initializer\)/.test(w)), c.warnings.join('\n'));
  // the other output of the same model is analysed as before: Relu has constant 1
  const relu = cli(set.cases.graph_initializer_output, '--json', '--output', 'r');
  assert.equal(relu.code, 0, relu.all);
  assert.ok(Math.abs(JSON.parse(relu.out).global.upper.value - 1) < 1e-12);
});

test('an error about 2,000 unsupported nodes lists 10 of them and counts the rest', () => {
  const r = cli(set.cases.many_unsupported);
  assert.equal(r.code, 3, r.all);
  assert.match(r.err, /has 2000 nodes lipcheck cannot analyse:/);
  assert.match(r.err, /node 'mystery_9'/);
  assert.doesNotMatch(r.err, /node 'mystery_10'/);
  assert.match(r.err, /and 1990 more/);
  assert.ok(r.err.length < 2000, `${r.err.length} characters on stderr`);
});

test("a model onnxruntime refuses: lipcheck's message alone on stderr, no onnxruntime log lines or colour", () => {
  const r = cli(set.cases.runtime_refuses);
  assert.equal(r.code, 2, r.all);
  assert.match(r.err, /runtime_refuses\.onnx is not a valid ONNX model \(onnxruntime refuses it: .*Dimension mismatch/);
  assert.doesNotMatch(r.err, /\x1b\[|\[[EWIV]:onnxruntime/);
  for (const line of r.err.split('\n').filter(Boolean)) assert.match(line, /^lipcheck: /, `a foreign line on stderr: ${line}`);
});

test('batch: a FIFO and a symlink to /dev/zero given as models become UNREADABLE records at once, no hang', (t) => {
  if (!set.fifos) return t.skip('mkfifo is unavailable here');
  const out = join(set.root, 'batch.jsonl');
  const r = spawnSync(process.execPath, [BIN, 'batch', set.cases.model_fifo, join(set.modelDir, 'zero.bin'), '--out', out, '--device', 'cpu'], { cwd: set.root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 });
  assert.notEqual(r.status, null, `batch hung\n${r.stderr}`);
  const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(records.length, 2, r.stderr);
  for (const rec of records) {
    assert.equal(rec.status, 'error', JSON.stringify(rec));
    assert.equal(rec.error.code, 'UNREADABLE', JSON.stringify(rec));
    assert.match(rec.error.message, /is a (FIFO \(named pipe\)|device), not a regular file/);
  }
});
