import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compareBaseline, evaluateGates, gatesJson, missingGate } from '../../../src/batch/gates.js';
import { planResume, retryReason } from '../../../src/batch/journal.js';
import { latestRecords, mergeRecords, parseBaseline, parseRecords, recordLine } from '../../../src/batch/jsonl.js';
import { acquireJournalLock, LEASE_MS } from '../../../src/batch/lock.js';
import { BATCH_SCHEMA_VERSION, recordFromError, type BatchError, type BatchRecord } from '../../../src/batch/record.js';

const rec = (path: string, upper: number | null, extra: Partial<BatchRecord> = {}): BatchRecord => ({
  schemaVersion: BATCH_SCHEMA_VERSION, path, sha256: `sha-${path}`, bytes: 10, status: upper === null ? 'unbounded' : 'bounded', upper: upper === null ? null : { value: upper, kind: 'certified', method: 'autolip' },
  lower: null, estimate: null, failureProbability: null, norm: '2', reasons: [], error: null, warnings: 0, ms: 1, peakRssMb: null, ...extra,
});
const failed = (path: string, error: BatchError) => recordFromError(path, { sha256: `sha-${path}`, bytes: 10 }, error, '2', 1, null);

test('byte-exact resume: an invalid UTF-8 byte in an earlier line does not move the cut', () => {
  // line 1 carries raw 0xFF bytes inside a string (decoded as U+FFFD, 3 bytes each: a count on decoded text lands 4 bytes too far)
  const [head, tail] = recordLine(failed('a.onnx', { code: 'UNREADABLE', exit: 2, message: 'bad bytes: @ here' })).split('@');
  const l1 = Buffer.concat([Buffer.from(head), Buffer.from([0xff, 0xfe]), Buffer.from(tail)]);
  const l2 = Buffer.from(recordLine(rec('b.onnx', 2)));
  const cut = Buffer.from('{"schemaVersion":1,"path":"c.onn');
  const file = Buffer.concat([l1, l2, cut]);
  const p = parseRecords(file);
  assert.equal(p.validBytes, l1.length + l2.length, 'the cut is the byte offset of the half-written line');
  assert.equal(p.truncated, true);
  assert.deepEqual(p.records.map((r) => r.path), ['a.onnx', 'b.onnx']);
  // what --resume does: cut there, append the next record; every complete record survives intact
  const resumed = Buffer.concat([file.subarray(0, p.validBytes), Buffer.from(recordLine(rec('c.onnx', 3)))]);
  const again = parseRecords(resumed);
  assert.equal(again.truncated, false);
  assert.deepEqual(again.records.map((r) => r.path), ['a.onnx', 'b.onnx', 'c.onnx']);
  assert.deepEqual(again.records.find((r) => r.path === 'b.onnx'), rec('b.onnx', 2));
  assert.equal(again.validBytes, resumed.length);
});

test('latest record wins: in a journal, in merge, and in a baseline read from a journal', () => {
  const journal = [rec('a', 1), rec('b', 5), rec('a', 2, { sha256: 'new' }), rec('c', 3)];
  assert.deepEqual(latestRecords(journal).map((r) => [r.path, r.upper?.value]), [['b', 5], ['a', 2], ['c', 3]]);
  assert.deepEqual(mergeRecords([journal]).map((r) => [r.path, r.upper?.value]), [['a', 2], ['b', 5], ['c', 3]]);
  const base = parseBaseline(journal.map(recordLine).join(''), 'j.jsonl');
  assert.equal(base.length, 3);
  assert.equal(base.find((b) => b.path === 'a')?.upper?.value, 2, 'the baseline is the latest record, not the first');
  assert.throws(() => parseBaseline(recordLine(rec('a', 1)) + 'garbage\n' + recordLine(rec('b', 1)), 'dmg.jsonl'), /dmg\.jsonl' is damaged: line 2/);
  // the closing summary line of `batch --json` is neither a record nor damage
  const withSummary = parseRecords(recordLine(rec('a', 1)) + JSON.stringify({ schemaVersion: 1, summary: { command: 'batch', models: 1 } }) + '\n');
  assert.deepEqual(withSummary.badLines, []);
  assert.equal(withSummary.records.length, 1);
});

test('--resume plan: unchanged kept, changed re-analysed, failures retried only when their limit was raised or with --retry-failed, removed models named', () => {
  const limits = { timeoutS: 600, maxMemoryMb: 4000 };
  const records = [
    rec('keep.onnx', 1),
    rec('changed.onnx', 1),
    failed('slow.onnx', { code: 'TIMEOUT', exit: 4, message: 'took longer than --timeout 1 s', limits: { timeoutS: 1, maxMemoryMb: 4000 } }),
    failed('slow-again.onnx', { code: 'TIMEOUT', exit: 4, message: 'took longer than --timeout 600 s', limits }),
    failed('old-format.onnx', { code: 'TIMEOUT', exit: 4, message: "The analysis of 'x' took longer than --timeout 5 s and was stopped." }),
    failed('fat.onnx', { code: 'MEMORY', exit: 4, message: 'm', limits: { timeoutS: 600, maxMemoryMb: 1000 } }),
    failed('crash.onnx', { code: 'CRASH', exit: 70, message: 'died', limits }),
    failed('broken.onnx', { code: 'UNREADABLE', exit: 2, message: 'not ONNX' }),
    rec('gone.onnx', 1),
    rec('other-shard.onnx', 1),
    rec('keep.onnx', 1),
  ];
  const models = ['broken.onnx', 'changed.onnx', 'crash.onnx', 'fat.onnx', 'keep.onnx', 'new.onnx', 'old-format.onnx', 'slow-again.onnx', 'slow.onnx'];
  const hash = (p: string) => (p === 'changed.onnx' ? 'different' : `sha-${p}`);
  const exists = (p: string) => p !== 'gone.onnx';
  const plan = planResume(records, models, hash, limits, false, exists);
  assert.deepEqual(plan.todo, ['changed.onnx', 'fat.onnx', 'new.onnx', 'old-format.onnx', 'slow.onnx']);
  assert.deepEqual(plan.keep.map((r) => r.path), ['broken.onnx', 'crash.onnx', 'keep.onnx', 'slow-again.onnx']);
  assert.deepEqual(plan.changed, ['changed.onnx']);
  assert.deepEqual(plan.retried.map((x) => [x.path, x.code]), [['fat.onnx', 'MEMORY'], ['old-format.onnx', 'TIMEOUT'], ['slow.onnx', 'TIMEOUT']]);
  assert.match(plan.retried[2].why, /--timeout raised from 1 s to 600 s/);
  assert.deepEqual(plan.keptFailures.map((x) => x.code), ['CRASH', 'TIMEOUT']);
  assert.deepEqual(plan.removed, ['gone.onnx'], 'a model outside this run whose file still exists is not "removed"');

  const all = planResume(records, models, hash, limits, true, exists);
  assert.deepEqual(all.todo, ['broken.onnx', 'changed.onnx', 'crash.onnx', 'fat.onnx', 'new.onnx', 'old-format.onnx', 'slow-again.onnx', 'slow.onnx']);
  assert.deepEqual(all.keep.map((r) => r.path), ['keep.onnx']);

  const slow = records[3];
  assert.equal(retryReason(slow, { timeoutS: 0, maxMemoryMb: 4000 }, false), '--timeout raised from 600 s to none', '--timeout 0 removes the limit');
  assert.equal(retryReason(slow, { timeoutS: 300, maxMemoryMb: 4000 }, false), null, 'a lower limit does not retry');
  assert.match(retryReason(records[6], { timeoutS: 600, maxMemoryMb: 8000 }, false) ?? '', /--max-memory raised/, 'a crash is retried with more memory');
  assert.equal(retryReason(rec('x', 1), limits, true), null, 'a bounded model is never retried');
});

test('journal lock: one writer at a time, the holder named; a dead holder is taken over; release removes only our own lock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-lock-'));
  const out = join(dir, 'r.jsonl');
  const me = { pid: 111, host: 'h1', since: '2026-01-01T00:00:00Z', alive: () => true, now: Date.now };
  const lock = acquireJournalLock(out, me);
  assert.equal(lock.tookOver, null);
  assert.deepEqual(JSON.parse(readFileSync(`${out}.lock`, 'utf8')), { pid: 111, host: 'h1', since: '2026-01-01T00:00:00Z' });
  assert.throws(() => acquireJournalLock(out, { ...me, pid: 222 }), (e: Error & { code?: string }) => e.code === 'USAGE' && /pid 111 on host h1/.test(e.message));
  assert.throws(() => acquireJournalLock(out, { ...me, pid: 222, host: 'h2', alive: () => false }), /pid 111 on host h1.*renewed 0 s ago/, 'a holder on another host with a fresh lease: refused');
  const taker = acquireJournalLock(out, { ...me, pid: 333, alive: (pid) => pid !== 111 });
  assert.deepEqual(taker.tookOver, { pid: 111, host: 'h1', since: '2026-01-01T00:00:00Z' });
  assert.equal(JSON.parse(readFileSync(`${out}.lock`, 'utf8')).pid, 333);
  lock.release();
  assert.ok(existsSync(`${out}.lock`), 'the old holder cannot release the lock it lost');
  taker.release();
  assert.ok(!existsSync(`${out}.lock`));
  // another host cannot probe the pid: a lease not renewed for LEASE_MS is stale (a pod rescheduled after a kill)
  const h1 = acquireJournalLock(out, me);
  const old = new Date(Date.now() - LEASE_MS - 5000);
  utimesSync(`${out}.lock`, old, old);
  assert.throws(() => acquireJournalLock(out, { ...me, pid: 222 }), /pid 111 on host h1/, 'on its own host the pid decides, not the lease');
  const h2 = acquireJournalLock(out, { ...me, pid: 222, host: 'h2', alive: () => false });
  assert.deepEqual(h2.tookOver?.host, 'h1');
  h1.refresh();
  assert.equal(JSON.parse(readFileSync(`${out}.lock`, 'utf8')).host, 'h2', 'the old holder cannot renew a lock it lost');
  h2.refresh();
  assert.ok(Date.now() - statSync(`${out}.lock`).mtimeMs < 5000, 'refresh renews the lease');
  h2.release();
  writeFileSync(`${out}.lock`, 'garbage');
  assert.throws(() => acquireJournalLock(out, me), /does not name its holder/);
  assert.deepEqual(readdirSync(dir).filter((f) => /tmp|stale/.test(f)), [], 'no temporary files left behind');
});

test('gates as --json carries them: name, limit, value, passed; baseline counts compared, new and missing', () => {
  const records = [rec('z/a.onnx', 12), rec('z/b.onnx', 5), rec('z/c.onnx', null), rec('z/new.onnx', 3)];
  const baseline = [rec('z/a.onnx', 10), rec('z/b.onnx', 5), rec('z/c.onnx', 1), rec('z/gone.onnx', 1)];
  const v = evaluateGates(records, { max: 10, baseline, maxIncrease: 0.1 })!;
  assert.deepEqual(gatesJson(v[0]).map(({ message: _m, ...g }) => g), [
    { name: 'max', limit: 10, value: 12, passed: false },
    { name: 'max-increase', limit: 0.1, value: 12 / 10 - 1, passed: false },
  ]);
  assert.deepEqual(gatesJson(v[1]).map((g) => [g.name, g.value, g.passed]), [['max', 5, true], ['max-increase', 0, true]]);
  assert.deepEqual(gatesJson(v[2]).map((g) => [g.name, g.value, g.passed]), [['max', null, false], ['max-increase', null, false]]);
  assert.deepEqual(gatesJson(v[3]).map((g) => [g.name, g.value, g.passed]), [['max', 3, true], ['max-increase', null, true]]);
  assert.deepEqual(gatesJson(null), []);
  const c = compareBaseline(records, baseline);
  assert.deepEqual(c, { compared: 3, added: ['z/new.onnx'], missing: ['z/gone.onnx'] });
  assert.deepEqual(missingGate(c), { name: 'missing', limit: 0, value: 1, passed: false, message: '1 model of the baseline is not in this run (z/gone.onnx)' });
  assert.equal(missingGate(compareBaseline(records.slice(0, 3), baseline.slice(0, 3))).passed, true);
});
