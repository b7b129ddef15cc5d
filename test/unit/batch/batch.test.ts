import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findModels, globMatcher, isGlob, parseShard, shardOf, type Discovery } from '../../../src/batch/discover.js';
import { evaluateGates, findBaseline, parsePercent } from '../../../src/batch/gates.js';
import { mergeRecords, parseBaseline, parseRecords, recordLine } from '../../../src/batch/jsonl.js';
import { BATCH_SCHEMA_VERSION, recordFromError, type BatchRecord } from '../../../src/batch/record.js';
import { NOBODY, nobodyObstacle } from '../../helpers/as-user.js';

const rec = (path: string, status: BatchRecord['status'], upper: number | null, extra: Partial<BatchRecord> = {}): BatchRecord => ({
  schemaVersion: BATCH_SCHEMA_VERSION, path, sha256: `sha-${path}`, bytes: 10, status, upper: upper === null ? null : { value: upper, kind: 'certified', method: 'autolip' },
  lower: null, estimate: null, failureProbability: null, norm: '2', reasons: status === 'unbounded' ? [{ node: 'mul_1', opType: 'Mul', status: 'unbounded', reason: 'multiplies two inputs' }] : [], error: null, warnings: 0, ms: 1, peakRssMb: null, ...extra,
});

test('globs (picomatch): ** spans directories, * and ? stay within one, [..] and [!..] classes, braces', () => {
  const m = (p: string, s: string) => globMatcher(p)(s);
  assert.ok(m('zoo/**/*.onnx', 'zoo/a/b/m.onnx'));
  assert.ok(m('zoo/**/*.onnx', 'zoo/m.onnx'));
  assert.ok(!m('zoo/*.onnx', 'zoo/a/m.onnx'));
  assert.ok(m('m?.onnx', 'm1.onnx') && !m('m?.onnx', 'm12.onnx'));
  assert.ok(m('m[0-2].onnx', 'm1.onnx') && !m('m[0-2].onnx', 'm3.onnx'));
  assert.ok(m('m[!0-2].onnx', 'm3.onnx') && !m('m[!0-2].onnx', 'm1.onnx'), 'a shell negates a class with !');
  assert.ok(!m('a.onnx', 'aXonnx'), 'a dot is literal');
  // braces: the issue's `zoo/{a,b}*.onnx` matched nothing with the hand-written matcher
  assert.ok(m('{a,b}*.onnx', 'a1.onnx') && m('{a,b}*.onnx', 'b.onnx') && !m('{a,b}*.onnx', 'c.onnx'));
  assert.ok(m('m{1..3}.onnx', 'm2.onnx') && !m('m{1..3}.onnx', 'm4.onnx'));
  assert.ok(isGlob('zoo/{a,b}.onnx') && isGlob('**/*.onnx') && !isGlob('zoo/a.onnx'));
});

test('findModels: recursive directories, files as given, globs with braces, duplicates once, sorted, cycles and misses reported', () => {
  const root = mkdtempSync(join(tmpdir(), 'lipcheck-find-'));
  mkdirSync(join(root, 'zoo/deep/er'), { recursive: true });
  for (const f of ['zoo/b.onnx', 'zoo/a.ONNX', 'zoo/deep/er/c.onnx', 'zoo/notes.txt', 'zoo/deep/x.onnx.bak']) writeFileSync(join(root, f), 'x');
  symlinkSync(join(root, 'zoo'), join(root, 'zoo/deep/loop'));
  const d = findModels([join(root, 'zoo'), join(root, 'zoo/b.onnx'), join(root, 'zoo/notes.txt'), join(root, 'missing.onnx'), `${root}/zoo/**/c.*`, `${root}/nothing/*.onnx`, join(root, 'zoo/deep/er/..')]);
  const rel = d.models.map((p) => p.slice(root.length + 1));
  assert.deepEqual(rel, ['zoo/a.ONNX', 'zoo/b.onnx', 'zoo/deep/er/c.onnx', 'zoo/notes.txt'].sort());
  assert.deepEqual(d.unmatched, [`${root}/nothing/*.onnx`]);
  assert.deepEqual(d.missing, [join(root, 'missing.onnx')], 'a named file that does not exist is reported, not silently kept');
  assert.deepEqual(d.unreadable, []);
  const braces = findModels([`${root}/zoo/{a,b}.*`, `${root}/zoo/**/{c,z}.onnx`]);
  assert.deepEqual(braces.models.map((p) => p.slice(root.length + 1)), ['zoo/a.ONNX', 'zoo/b.onnx', 'zoo/deep/er/c.onnx']);
});

/** findModels as an unprivileged user: root lists every directory, so under root the walk runs in a child as nobody. */
function findAsUser(args: string[]): Discovery {
  if (process.getuid?.() !== 0) return findModels(args);
  const src = new URL('../../../src/batch/discover.ts', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const { findModels } = await import(${JSON.stringify(src)}); console.log(JSON.stringify(findModels(${JSON.stringify(args)})));`], { encoding: 'utf8', ...NOBODY, cwd: fileURLToPath(new URL('../../..', import.meta.url)) });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('findModels: a sub-directory that cannot be listed is reported (fail closed), not skipped', (t) => {
  const obstacle = nobodyObstacle();
  if (obstacle) return t.skip(obstacle);
  const root = mkdtempSync(join(tmpdir(), 'lipcheck-find-'));
  chmodSync(root, 0o755);
  mkdirSync(join(root, 'zoo/private'), { recursive: true });
  writeFileSync(join(root, 'zoo/a.onnx'), 'x');
  writeFileSync(join(root, 'zoo/private/b.onnx'), 'x');
  chmodSync(join(root, 'zoo/private'), 0o000);
  try {
    const d = findAsUser([join(root, 'zoo')]);
    assert.deepEqual(d.models, [join(root, 'zoo/a.onnx')]);
    assert.equal(d.unreadable.length, 1);
    assert.match(d.unreadable[0], /zoo\/private \(EACCES\)/);
    assert.equal(findAsUser([`${root}/zoo/**/*.onnx`]).unreadable.length, 1, 'globs too');
  } finally {
    chmodSync(join(root, 'zoo/private'), 0o755);
  }
});

test('shards: a partition of the sorted list whatever n, zero-based indices, bad specs refused', () => {
  const list = Array.from({ length: 17 }, (_, k) => `m${String(k).padStart(2, '0')}`);
  for (const n of [1, 2, 3, 5, 17, 20]) {
    const parts = Array.from({ length: n }, (_, i) => shardOf(list, parseShard(`${i}/${n}`)));
    assert.deepEqual(parts.flat().sort(), list, `n = ${n}`);
    assert.ok(Math.max(...parts.map((p) => p.length)) - Math.min(...parts.map((p) => p.length)) <= 1);
  }
  for (const bad of ['3/3', '1/0', 'a/b', '-1/3', '1', '']) assert.throws(() => parseShard(bad), /--shard/);
});

test('JSON lines: a truncated last line and foreign lines are skipped; validBytes marks the complete prefix', () => {
  const a = rec('a.onnx', 'bounded', 2), b = rec('b.onnx', 'error', null, { error: { code: 'UNREADABLE', exit: 2, message: 'not ONNX, “quoted” é' } });
  const good = recordLine(a) + '\n' + 'not json\n' + recordLine(b);
  const text = good + recordLine(rec('c.onnx', 'bounded', 3)).slice(0, 25);
  const p = parseRecords(text);
  assert.deepEqual(p.records.map((r) => r.path), ['a.onnx', 'b.onnx']);
  assert.equal(p.truncated, true);
  assert.deepEqual(p.badLines, [3]);
  assert.equal(p.validBytes, Buffer.byteLength(good));
  assert.equal(parseRecords(good).truncated, false);
});

test('merge: sorted by path, a later file overrides an earlier record of the same model', () => {
  const m = mergeRecords([[rec('b', 'bounded', 1), rec('a', 'bounded', 1)], [rec('c', 'unbounded', null), rec('b', 'bounded', 7)]]);
  assert.deepEqual(m.map((r) => [r.path, r.upper?.value ?? null]), [['a', 1], ['b', 7], ['c', null]]);
});

test('baselines: a single JSON report or batch lines; garbage is a usage error naming the file', () => {
  const report = JSON.stringify({ schemaVersion: 1, model: { path: 'x/m.onnx', sha256: 'abc' }, global: { status: 'bounded', upper: { value: 4, kind: 'certified', method: 'autolip' } } }, null, 2);
  assert.deepEqual(parseBaseline(report, 'r.json'), [{ path: 'x/m.onnx', sha256: 'abc', status: 'bounded', upper: { value: 4, kind: 'certified', method: 'autolip' } }]);
  assert.equal(parseBaseline(recordLine(rec('a', 'bounded', 1)) + recordLine(rec('b', 'bounded', 2)), 'b.jsonl').length, 2);
  assert.throws(() => parseBaseline('hello\n', 'junk.txt'), /junk\.txt/);
  assert.throws(() => parseBaseline('', 'empty.json'), /empty/);
});

test('percentages for --max-increase', () => {
  assert.equal(parsePercent('10%'), 0.1);
  assert.equal(parsePercent('10'), 0.1);
  assert.equal(parsePercent('2.5 %'), 0.025);
  assert.equal(parsePercent('-5%'), null);
  assert.equal(parsePercent('ten'), null);
});

test('gates: --max fails above the limit and without a bound; --max-increase compares with the baseline', () => {
  assert.equal(evaluateGates([rec('a', 'bounded', 1)], {}), null);
  const records = [rec('dir/a.onnx', 'bounded', 12), rec('dir/b.onnx', 'bounded', 5), rec('dir/c.onnx', 'unbounded', null), recordFromError('dir/d.onnx', null, { code: 'TIMEOUT', exit: 4, message: 'too slow' }, '2', 1, null), rec('dir/new.onnx', 'bounded', 3)];
  const max = evaluateGates(records, { max: 10 })!;
  assert.deepEqual(max.map((g) => g.passed), [false, true, false, false, true]);
  assert.match(max[0].checks[0].message, /exceeds --max 10/);
  assert.match(max[2].checks[0].message, /unbounded \(Mul 'mul_1'\)/);
  assert.match(max[3].checks[0].message, /TIMEOUT/);

  const baseline = [rec('old/a.onnx', 'bounded', 10), rec('dir/b.onnx', 'bounded', 5), rec('dir/c.onnx', 'bounded', 1), rec('dir/d.onnx', 'bounded', 1)];
  const g10 = evaluateGates(records, { baseline, maxIncrease: 0.1 })!;
  // a: 12/10 = +20 % (matched by file name); b: +0 %; c, d: bounded before, not now; new: no entry
  assert.deepEqual(g10.map((g) => g.passed), [false, true, false, false, true]);
  assert.match(g10[0].checks[0].message, /\+20\.00%/);
  assert.match(g10[4].checks[0].message, /no entry/);
  const g25 = evaluateGates(records, { baseline, maxIncrease: 0.25 })!;
  assert.equal(g25[0].passed, true);
  assert.equal(findBaseline([rec('x/a.onnx', 'bounded', 1), rec('y/a.onnx', 'bounded', 1)], 'z/a.onnx', false), null, 'an ambiguous file name matches nothing');
  assert.equal(findBaseline([rec('x/other.onnx', 'bounded', 1)], 'z/a.onnx', true)?.path, 'x/other.onnx', 'one model against a one-model baseline');
});
