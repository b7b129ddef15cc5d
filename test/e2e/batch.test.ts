import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BatchRecord } from '../../src/batch/record.js';
import { FIXTURES, hasShared, SHARED } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
/** Cheap, deterministic analysis settings: the batch machinery is under test here, not the estimators. */
const FAST = ['--method', 'autolip', '--certify', 'off', '--lower-pairs', '0', '--threads', '1', '--device', 'cpu', '--iterations', '40'];

function cli(args: string[], timeout = 300_000) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const lines = (file: string): BatchRecord[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

/** What must agree between two runs of the same models: everything but timings and memory. */
function outcome(records: readonly BatchRecord[]) {
  return [...records].sort((a, b) => (a.path < b.path ? -1 : 1)).map((r) => ({ path: r.path, sha256: r.sha256, status: r.status, kind: r.upper?.kind ?? null, upper: r.upper ? Number(r.upper.value.toPrecision(9)) : null, code: r.error?.code ?? null, reasons: r.reasons.map((x) => x.node) }));
}

const fixtureModels = readdirSync(FIXTURES).filter((f) => f.endsWith('.onnx'));
const sharedModels = hasShared ? readdirSync(SHARED).filter((f) => f.endsWith('.onnx')) : [];
// light/ holds ImageNet-size models (minutes each): the batch machinery is shown on the top-level set
const ZOO = [FIXTURES, ...(hasShared ? [`${SHARED}*.onnx`] : [])];
const expected = fixtureModels.length + sharedModels.length;
if (!hasShared) console.log('# ../shared/models is absent: the batch tests run over fixtures/ only');

const dir = mkdtempSync(join(tmpdir(), 'lipcheck-batch-'));
let reference: BatchRecord[] = [];

test('batch over fixtures/ and the shared models with --jobs 2: one line per model, failures with their reasons', () => {
  const out = join(dir, 'all.jsonl');
  const junit = join(dir, 'all.xml');
  const r = cli(['batch', ...ZOO, '--jobs', '2', '--out', out, '--junit', junit, ...FAST]);
  assert.equal(r.code, 0, r.err);
  reference = lines(out);
  assert.equal(reference.length, expected);
  assert.equal(new Set(reference.map((x) => x.path)).size, expected);
  const by = new Map(reference.map((x) => [x.path.split('/').pop()!, x]));
  for (const [name, code] of [['broken_truncated.onnx', 'UNREADABLE'], ['broken_empty.onnx', 'UNREADABLE'], ['broken_not_onnx.onnx', 'UNREADABLE'], ['broken_unsupported.onnx', 'UNSUPPORTED'], ['broken_nan.onnx', 'UNSUPPORTED'], ['broken_external_missing.onnx', 'UNREADABLE']] as const) {
    const x = by.get(name)!;
    assert.equal(x.status, 'error', name);
    assert.equal(x.error?.code, code, `${name}: ${x.error?.message}`);
    assert.ok(x.error!.message.length > 20 && !/\n\s+at /.test(x.error!.message), `${name}: a sentence, no stack: ${x.error!.message}`);
  }
  assert.equal(by.get('product.onnx')!.status, 'unbounded');
  assert.deepEqual(by.get('product.onnx')!.reasons.map((x) => x.node), ['x_times_h']);
  assert.equal(by.get('argmax.onnx')!.status, 'discontinuous');
  const demo = by.get('demo.onnx')!;
  assert.equal(demo.status, 'bounded');
  assert.equal(demo.upper!.kind, 'probabilistic');
  assert.match(demo.sha256!, /^[0-9a-f]{64}$/);
  if (hasShared) assert.equal(by.get('vit_ibp_3_3_8.onnx')!.status, 'unbounded');
  assert.match(r.out, new RegExp(`lipcheck batch: ${expected} models`));
  assert.match(r.out, /Most sensitive models/);
  assert.match(r.out, /Could not be analysed:[\s\S]*broken_truncated\.onnx: \[UNREADABLE\]/);
  const xml = readFileSync(junit, 'utf8');
  assert.equal((xml.match(/<testcase /g) ?? []).length, expected);
  assert.equal((xml.match(/<error /g) ?? []).length, reference.filter((x) => x.status === 'error').length);
});

test('a batch killed halfway and run again with --resume ends with the same set of results', async () => {
  assert.ok(reference.length, 'needs the reference run');
  const out = join(dir, 'resumed.jsonl');
  const child = spawn(process.execPath, [BIN, 'batch', ...ZOO, '--jobs', '2', '--out', out, ...FAST], { stdio: 'ignore' });
  const half = Math.floor(expected / 2);
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      const n = existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean).length : 0;
      if (n >= half) { clearInterval(t); child.kill('SIGKILL'); resolve(); }
    }, 20);
    child.on('exit', () => { clearInterval(t); reject(new Error('the batch finished before it could be killed')); });
  });
  // a half-written last line, as a kill in the middle of a write would leave
  writeFileSync(out, readFileSync(out, 'utf8') + '{"schemaVersion":1,"path":"cut off');
  const partial = readFileSync(out, 'utf8').split('\n').length - 1;
  assert.ok(partial < expected, `${partial} of ${expected} done before the kill`);
  const r = cli(['batch', ...ZOO, '--jobs', '2', '--out', out, '--resume', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /from an earlier run, --resume/);
  const final = lines(out);
  assert.equal(final.length, expected, 'no model twice, none missing');
  assert.deepEqual(outcome(final), outcome(reference));
});

test('--shard i/3 over the same models, then merge, equals the unsharded run', () => {
  assert.ok(reference.length, 'needs the reference run');
  const parts = [0, 1, 2].map((i) => join(dir, `shard${i}.jsonl`));
  const runs = parts.map((p, i) => spawn(process.execPath, [BIN, 'batch', ...ZOO, '--shard', `${i}/3`, '--jobs', '1', '--out', p, ...FAST], { stdio: 'ignore' }));
  return Promise.all(runs.map((c) => new Promise<number | null>((res) => c.on('exit', res)))).then((codes) => {
    assert.deepEqual(codes, [0, 0, 0]);
    const sizes = parts.map((p) => lines(p).length);
    assert.equal(sizes.reduce((a, b) => a + b, 0), expected);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `balanced shards: ${sizes}`);
    const merged = join(dir, 'merged.jsonl');
    const r = cli(['merge', ...parts, '--out', merged]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(outcome(lines(merged)), outcome(reference));
    assert.equal(cli(['batch', FIXTURES, '--shard', '3/3']).code, 2);
  });
});

test('baseline gates: last layer scaled by 1.2 fails --max-increase 10 % and passes 25 %, single model and batch', () => {
  const base = join(dir, 'base.json');
  const r0 = cli([FIXTURES + 'gate_base.onnx', '--json', '--lower-budget', '300', '--device', 'cpu']);
  assert.equal(r0.code, 0, r0.err);
  writeFileSync(base, r0.out);
  const b = JSON.parse(r0.out).global.upper.value;
  const fail = cli([FIXTURES + 'gate_scaled.onnx', '--baseline', base, '--max-increase', '10%', '--lower-budget', '300', '--device', 'cpu']);
  assert.equal(fail.code, 1, fail.err);
  assert.match(fail.err, /gate failed: upper bound .* against baseline .*: \+20\.0\d%, more than the allowed --max-increase 10%/);
  const pass = cli([FIXTURES + 'gate_scaled.onnx', '--baseline', base, '--max-increase', '25%', '--lower-budget', '300', '--device', 'cpu']);
  assert.equal(pass.code, 0, pass.err);
  assert.equal(cli([FIXTURES + 'gate_base.onnx', '--baseline', base, '--lower-budget', '300', '--device', 'cpu']).code, 0, 'the same model passes --max-increase 0%');

  // the same through batch: two zoos with the same file name, the second with the scaled weights
  for (const [d, f] of [['old', 'gate_base.onnx'], ['new', 'gate_scaled.onnx']]) {
    mkdirSync(join(dir, d), { recursive: true });
    copyFileSync(FIXTURES + f, join(dir, d, 'model.onnx'));
    copyFileSync(FIXTURES + 'demo.onnx', join(dir, d, 'demo.onnx'));
  }
  const old = join(dir, 'old.jsonl');
  assert.equal(cli(['batch', join(dir, 'old'), '--out', old, '--jobs', '1', ...FAST]).code, 0);
  const junit = join(dir, 'gates.xml');
  const bad = cli(['batch', join(dir, 'new'), '--baseline', old, '--max-increase', '10%', '--junit', junit, '--jobs', '1', ...FAST]);
  assert.equal(bad.code, 1, bad.err);
  assert.match(bad.out, /Gates: 1 of 2 failed/);
  assert.match(bad.out, /model\.onnx: upper bound .* \+20\.0\d%/);
  const xml = readFileSync(junit, 'utf8');
  assert.equal((xml.match(/<failure /g) ?? []).length, 1);
  assert.equal(cli(['batch', join(dir, 'new'), '--baseline', old, '--max-increase', '25%', '--jobs', '1', ...FAST]).code, 0);
  const ratio = lines(old).find((x) => x.path.endsWith('model.onnx'))!.upper!.value;
  assert.ok(ratio > 0 && b > 0);
});

test('--timeout and --max-memory record the model and let the batch go on; --max gates a batch', () => {
  const d = join(dir, 'limits');
  mkdirSync(d, { recursive: true });
  for (const f of ['demo.onnx', 'gemm_sv.onnx']) copyFileSync(FIXTURES + f, join(d, f));
  const slow = cli(['batch', d, '--timeout', '0.001', '--jobs', '1', '--json', ...FAST]);
  assert.equal(slow.code, 0, slow.err);
  const recs: BatchRecord[] = slow.out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(recs.map((x) => x.error?.code).sort(), ['TIMEOUT', 'TIMEOUT']);
  assert.match(recs[0].error!.message, /--timeout 0\.001 s/);
  const fat = cli(['batch', d, '--max-memory', '1', '--jobs', '2', '--json', ...FAST]);
  assert.equal(fat.code, 0, fat.err);
  assert.deepEqual(fat.out.split('\n').filter(Boolean).map((l) => JSON.parse(l).error?.code), ['MEMORY', 'MEMORY']);
  assert.equal(cli(['batch', d, '--max', '1e-9', '--jobs', '2', ...FAST]).code, 1);
  assert.equal(cli(['batch', d, '--max', '1e9', '--jobs', '2', ...FAST]).code, 0);
  mkdirSync(join(dir, 'empty'), { recursive: true });
  const none = cli(['batch', join(dir, 'empty')]);
  assert.equal(none.code, 2);
  assert.match(none.err, /No ONNX models found/);
});
