import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mergeRecords, parseRecords } from '../../src/batch/jsonl.js';
import type { BatchRecord } from '../../src/batch/record.js';
import { FIXTURES, hasShared, SHARED } from '../helpers/dense.js';
import { NOBODY, nobodyObstacle } from '../helpers/as-user.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
/** Cheap, deterministic analysis settings: the batch machinery is under test here, not the estimators. */
const FAST = ['--method', 'autolip', '--certify', 'off', '--lower-pairs', '0', '--threads', '1', '--device', 'cpu', '--iterations', '40'];

function cli(args: string[], timeout = 300_000) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const lines = (file: string): BatchRecord[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
/** The records of `batch --json` stdout (the closing summary line left out). */
const jsonRecords = (stdout: string): BatchRecord[] => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => 'path' in x);

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
  const recs: BatchRecord[] = jsonRecords(slow.out);
  assert.deepEqual(recs.map((x) => x.error?.code).sort(), ['TIMEOUT', 'TIMEOUT']);
  assert.match(recs[0].error!.message, /--timeout 0\.001 s/);
  const fat = cli(['batch', d, '--max-memory', '1', '--jobs', '2', '--json', ...FAST]);
  assert.equal(fat.code, 0, fat.err);
  assert.deepEqual(jsonRecords(fat.out).map((x) => x.error?.code), ['MEMORY', 'MEMORY']);
  assert.equal(cli(['batch', d, '--max', '1e-9', '--jobs', '2', ...FAST]).code, 1);
  assert.equal(cli(['batch', d, '--max', '1e9', '--jobs', '2', ...FAST]).code, 0);
  mkdirSync(join(dir, 'empty'), { recursive: true });
  const none = cli(['batch', join(dir, 'empty')]);
  assert.equal(none.code, 2);
  assert.match(none.err, /No ONNX models found/);
});

// ---- the journal (issue 14 item 4), fail-closed gates (item 5), option clamps, CI output (issue 13 item 4) ----

/** A zoo of `n` small fixture copies (distinct names, a few distinct contents) in a fresh directory. */
function smallZoo(name: string, n: number): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const kinds = ['demo.onnx', 'gemm_sv.onnx', 'mlp_relu.onnx', 'mlp_tanh.onnx'];
  for (let k = 0; k < n; k++) copyFileSync(FIXTURES + kinds[k % kinds.length], join(d, `m${String(k).padStart(2, '0')}.onnx`));
  return d;
}

/** A running batch whose per-model stderr lines ("lipcheck: [k/n] path: outcome") are collected as they come. */
function startBatch(args: string[], detached = false) {
  // detached: its own process group, which a terminal's Ctrl-C signals as a whole (the batch and its workers)
  const child = spawn(process.execPath, [BIN, 'batch', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' }, detached });
  let err = '', out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const waiters: { n: number; resolve: () => void }[] = [];
  const finished = () => [...err.matchAll(/^lipcheck: \[\s*\d+\/\d+\] (\S+): /gm)].map((m) => m[1]);
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters.splice(0)) (finished().length >= w.n ? w.resolve() : waiters.push(w));
  });
  const exit = new Promise<number | null>((res) => child.on('exit', (code, signal) => res(code ?? (signal ? -1 : null))));
  return {
    child, exit,
    get err() { return err; },
    get out() { return out; },
    finished,
    /** Resolves when `n` models have finished (their lines are on stderr); rejects if the batch ends first. */
    after: (n: number) => new Promise<void>((resolve, reject) => {
      if (finished().length >= n) return resolve();
      waiters.push({ n, resolve });
      void exit.then(() => reject(new Error(`the batch ended after ${finished().length} models, before ${n}: ${err}`)));
    }),
  };
}

/** Worker processes of a batch (Linux: the kernel's list of a process's children). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test('--out is locked: a second writer is refused naming the holder; SIGKILL of the batch loses no finished record; the stale lock is taken over by --resume', async () => {
  // enough models that the batch is still running when the second writer has come and gone
  const zoo = smallZoo('locked', 60);
  const out = join(dir, 'locked.jsonl');
  const a = startBatch([zoo, '--out', out, '--jobs', '1', ...FAST]);
  await a.after(1);
  const b = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', ...FAST]);
  assert.equal(b.code, 2, b.err);
  assert.match(b.err, new RegExp(`being written by another lipcheck \\(pid ${a.child.pid} on host ${hostname()}`));
  a.child.kill('SIGKILL');
  await a.exit;
  const done = a.finished();
  const kept = parseRecords(readFileSync(out)).records.map((r) => r.path);
  for (const p of done) assert.ok(kept.includes(p), `${p} was reported finished before the kill and is in the journal`);
  assert.ok(kept.length < 60, `killed mid-run: ${kept.length} of 60 recorded`);
  assert.ok(existsSync(`${out}.lock`), 'a killed batch leaves its lock behind');
  const r = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, new RegExp(`took over the lock of pid ${a.child.pid}`));
  assert.equal(mergeRecords([lines(out)]).length, 60);
  assert.equal(lines(out).length, 60, 'each model once: the resumed run analysed only the rest');
  assert.ok(!existsSync(`${out}.lock`), 'the lock is released at the end');
});

test('a worker that dies while its next job is on the way (EPIPE) is recorded as CRASH; the batch goes on', () => {
  // every worker sends its first record, then kills itself: the next job is written to a worker that is gone, often
  // before its exit is seen (the write fails with EPIPE; that once stopped the whole batch with exit 70)
  const zoo = smallZoo('epipe', 24);
  const out = join(dir, 'epipe.jsonl');
  const preload = new URL('../helpers/die-after-record.mjs', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [BIN, 'batch', zoo, '--out', out, '--jobs', '1', ...FAST], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', NODE_OPTIONS: `--import ${preload}`, LIPCHECK_TEST_DIE_AFTER_RECORD: '1' }, timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  const recs = lines(out);
  assert.equal(recs.length, 24, 'every model has its record');
  for (const x of recs) assert.ok(x.status === 'bounded' || (x.error?.code === 'CRASH' && /died \(signal SIGKILL\)/.test(x.error.message)), JSON.stringify(x.error ?? x.status));
  assert.ok(recs.some((x) => x.error?.code === 'CRASH') && recs.some((x) => x.status === 'bounded'));
});

test('a worker killed with SIGKILL mid-analysis is recorded as CRASH, no finished record is lost, and --resume --retry-failed analyses it again', async () => {
  const zoo = smallZoo('crashy', 8);
  const out = join(dir, 'crashy.jsonl');
  const a = startBatch([zoo, '--out', out, '--jobs', '1', ...FAST]);
  await a.after(1);
  const workers = childrenOf(a.child.pid!);
  assert.equal(workers.length, 1, 'one worker with --jobs 1');
  process.kill(workers[0], 'SIGKILL');
  assert.equal(await a.exit, 0, a.err);
  const recs = lines(out);
  assert.equal(recs.length, 8);
  const crashed = recs.filter((x) => x.error?.code === 'CRASH');
  assert.equal(crashed.length, 1, JSON.stringify(recs.map((x) => x.error?.code)));
  assert.match(crashed[0].error!.message, /died \(signal SIGKILL\)/);
  assert.equal(recs.filter((x) => x.status === 'bounded').length, 7);
  const kept = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', ...FAST]);
  assert.equal(kept.code, 0, kept.err);
  assert.match(kept.err, /recorded as CRASH is kept as it is: .*--retry-failed/);
  const r = cli(['batch', zoo, '--out', out, '--resume', '--retry-failed', '--jobs', '1', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /retrying 1 failed model: .*\[CRASH: --retry-failed\]/);
  const all = lines(out);
  assert.equal(all.length, 9, 'the retry appends a record; the CRASH line stays in the journal');
  assert.ok(mergeRecords([all]).every((x) => x.status === 'bounded'), 'the latest record wins');
});

test('an existing --out is never emptied without --resume or --force', () => {
  const zoo = smallZoo('keep', 2);
  const out = join(dir, 'keep.jsonl');
  assert.equal(cli(['batch', zoo, '--out', out, '--jobs', '1', ...FAST]).code, 0);
  const before = readFileSync(out);
  const r = cli(['batch', zoo, '--out', out, '--jobs', '1', ...FAST]);
  assert.equal(r.code, 2);
  assert.match(r.err, /already holds results .* --resume .* --force/);
  assert.deepEqual(readFileSync(out), before, 'not a byte changed');
  const f = cli(['batch', join(zoo, 'm00.onnx'), '--out', out, '--force', '--jobs', '1', ...FAST]);
  assert.equal(f.code, 0, f.err);
  assert.deepEqual(lines(out).map((x) => x.path), [join(zoo, 'm00.onnx')]);
  assert.equal(cli(['batch', zoo, '--out', out, '--force', '--resume']).code, 2);
});

test('--resume: a changed model is analysed again and its new record wins (merge, --baseline); TIMEOUT records are retried with a larger --timeout; removed models are reported', () => {
  const zoo = smallZoo('changing', 3);
  const out = join(dir, 'changing.jsonl');
  const first = cli(['batch', zoo, '--out', out, '--jobs', '1', '--timeout', '0.001', ...FAST]);
  assert.equal(first.code, 0, first.err);
  assert.deepEqual(lines(out).map((x) => x.error?.code), ['TIMEOUT', 'TIMEOUT', 'TIMEOUT']);
  assert.deepEqual(lines(out)[0].error!.limits, { timeoutS: 0.001, maxMemoryMb: lines(out)[0].error!.limits!.maxMemoryMb });
  const same = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', '--timeout', '0.001', ...FAST]);
  assert.match(same.err, /3 models recorded as TIMEOUT are kept/);
  assert.equal(lines(out).length, 3, 'nothing retried under the same limit');
  const r = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', '--timeout', '600', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /retrying 3 failed models: .*--timeout raised from 0\.001 s to 600 s/);
  assert.deepEqual(mergeRecords([lines(out)]).map((x) => x.status), ['bounded', 'bounded', 'bounded']);

  // m01 becomes another model (gemm_sv → gate_scaled); m02 is deleted
  const m01 = join(zoo, 'm01.onnx');
  const oldBound = mergeRecords([lines(out)]).find((x) => x.path === m01)!.upper!.value;
  copyFileSync(FIXTURES + 'gate_scaled.onnx', m01);
  rmSync(join(zoo, 'm02.onnx'));
  const c = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', ...FAST]);
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /1 model file changed since its record \(sha256\)/);
  assert.match(c.err, /1 recorded model no longer exists .*m02\.onnx/);
  assert.match(c.out, /lipcheck batch: 2 models/);
  const latest = mergeRecords([lines(out)]).find((x) => x.path === m01)!;
  assert.notEqual(latest.upper!.value, oldBound);
  const merged = cli(['merge', out, '--json']);
  assert.equal(jsonRecords(merged.out).find((x) => x.path === m01)!.upper!.value, latest.upper!.value, 'merge reads the latest record');
  // the journal as a baseline: the same model against its latest record passes the 0 % gate
  const g = cli(['batch', m01, '--baseline', out, '--jobs', '1', ...FAST]);
  assert.equal(g.code, 0, g.err + g.out);
});

test('option clamps: --timeout past Node\'s timer, absurd --threads and --jobs are usage errors', () => {
  for (const [flag, value, what] of [['--timeout', '2147484', /--timeout '2147484' is invalid: .*2147483/], ['--threads', '100000', /--threads '100000' is invalid: .*1024/], ['--jobs', '100000', /--jobs '100000' is invalid: .*256/]] as const) {
    const r = cli(['batch', FIXTURES + 'demo.onnx', flag, value]);
    assert.equal(r.code, 2, `${flag} ${value}: ${r.err}`);
    assert.match(r.err, what);
  }
  assert.equal(cli([FIXTURES + 'demo.onnx', '--threads', '100000']).code, 2, 'the single-model command too');
  const ok = cli(['batch', FIXTURES + 'gemm_sv.onnx', '--timeout', '2147483', '--jobs', '1', '--json', ...FAST]);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(jsonRecords(ok.out)[0].status, 'bounded', 'the longest timeout does not fire at once');
});

test('gates fail closed: a missing explicit path, an unreadable sub-directory, empty or garbage merges are errors', (t) => {
  const zoo = smallZoo('closed', 1);
  const missing = cli(['batch', join(zoo, 'm00.onnx'), join(zoo, 'nope.onnx'), '--max', '1e9', ...FAST]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /not exist: '.*nope\.onnx'/);
  // an unreadable sub-directory (as an unprivileged user: root reads everything)
  const obstacle = nobodyObstacle();
  if (obstacle) t.diagnostic(`skipped: ${obstacle}`);
  else {
    const root = join(dir, 'perm');
    mkdirSync(join(root, 'private'), { recursive: true });
    copyFileSync(FIXTURES + 'demo.onnx', join(root, 'a.onnx'));
    copyFileSync(FIXTURES + 'demo.onnx', join(root, 'private/b.onnx'));
    chmodSync(dir, 0o755);
    chmodSync(join(root, 'private'), 0o000);
    const asUser = process.getuid?.() === 0 ? NOBODY : {};
    const hidden = spawnSync(process.execPath, [BIN, 'batch', root, '--max', '1e9', ...FAST], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, ...asUser });
    chmodSync(join(root, 'private'), 0o755);
    assert.equal(hidden.status, 2, hidden.stderr);
    assert.match(hidden.stderr, /Cannot read the directory '.*private \(EACCES\)'/);
  }
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '');
  const e = cli(['merge', empty, '--max', '10']);
  assert.equal(e.code, 2);
  assert.match(e.err, /holds no batch records \(it is empty\)/);
  assert.doesNotMatch(e.out, /all 0 passed/);
  const junk = join(dir, 'junk.jsonl');
  writeFileSync(junk, 'hello\nworld\n');
  assert.equal(cli(['merge', junk, '--max', '10']).code, 2);
  const good = join(dir, 'good.jsonl');
  assert.equal(cli(['batch', zoo, '--out', good, '--jobs', '1', ...FAST]).code, 0);
  writeFileSync(junk, readFileSync(good, 'utf8') + 'garbage\n' + readFileSync(good, 'utf8'));
  const damaged = cli(['merge', junk, '--max', '1e9']);
  assert.equal(damaged.code, 2);
  assert.match(damaged.err, /is damaged: line 2/);
  assert.equal(cli(['merge', junk]).code, 0, 'without a gate, the readable records are merged with a warning');
});

test('CI output: --json carries the gates (batch lines, closing summary, single model); baseline counts and --fail-on-missing; merge headed lipcheck merge; braces; per-model lines', () => {
  const zoo = smallZoo('ci', 3);
  const base = join(dir, 'ci-base.jsonl');
  assert.equal(cli(['batch', join(zoo, 'm00.onnx'), join(zoo, 'm01.onnx'), '--out', base, '--jobs', '1', ...FAST]).code, 0);
  copyFileSync(FIXTURES + 'demo.onnx', join(zoo, 'gone.onnx'));
  const base2 = join(dir, 'ci-base2.jsonl');
  assert.equal(cli(['batch', join(zoo, 'm00.onnx'), join(zoo, 'gone.onnx'), '--out', base2, '--jobs', '1', ...FAST]).code, 0);
  rmSync(join(zoo, 'gone.onnx'));

  const j = cli(['batch', `${zoo}/m0{0,1,2}.onnx`, '--json', '--max', '10', '--baseline', base, '--jobs', '1', ...FAST]);
  assert.equal(j.code, 1, 'demo.onnx (m00) is above 10');
  const objs = j.out.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(objs.length, 4, 'three models (braces expanded) and the summary');
  const m00 = objs.find((x) => x.path?.endsWith('m00.onnx'));
  assert.deepEqual(m00.gates.map((g: { name: string; limit: number; value: number; passed: boolean }) => [g.name, g.limit, g.passed]), [['max', 10, false], ['max-increase', 0, true]]);
  assert.equal(m00.gates[0].value, m00.upper.value);
  assert.equal(m00.gates[1].value, 0, 'the same model against its own record: +0 %');
  const m02 = objs.find((x) => x.path?.endsWith('m02.onnx'));
  assert.equal(m02.gates[1].value, null, 'a new model has nothing to compare');
  assert.deepEqual(objs[3].summary.baseline, { compared: 2, new: [join(zoo, 'm02.onnx')], missing: [] });
  assert.equal(objs[3].summary.gatesFailed, 1);

  const t = cli(['batch', zoo, '--baseline', base2, '--jobs', '1', ...FAST]);
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /Gates: all 3 passed \(baseline: 1 compared, 2 new \(.*\), 1 missing \(.*gone\.onnx\)\)/);
  assert.match(t.err, /^lipcheck: \[1\/3\] .*m00\.onnx: bounded, upper .* \(\d+\.\d s\)$/m, 'a non-terminal batch prints a line per finished model');
  const junit = join(dir, 'ci-missing.xml');
  const f = cli(['batch', zoo, '--baseline', base2, '--fail-on-missing', '--junit', junit, '--jobs', '1', '-q', ...FAST]);
  assert.equal(f.code, 1);
  assert.match(f.err, /gate failed \(--fail-on-missing\): 1 model of the baseline is not in this run \(.*gone\.onnx\)/);
  assert.doesNotMatch(f.err, /\[1\/3\]/, '-q: no per-model lines');
  const xml = readFileSync(junit, 'utf8');
  assert.match(xml, /tests="4" failures="1"/);
  assert.match(xml, /name="[^"]*gone\.onnx"[^>]*>\s*<failure type="missing"/);

  const m = cli(['merge', base, base2]);
  assert.equal(m.code, 0, m.err);
  assert.match(m.out, /^lipcheck merge: 3 models/);
  const single = cli([join(zoo, 'm01.onnx'), '--json', '--max', '1e9', ...FAST]);
  assert.equal(single.code, 0, single.err);
  assert.deepEqual(JSON.parse(single.out).gates.map((g: { name: string; passed: boolean }) => [g.name, g.passed]), [['max', true]]);
  assert.deepEqual(JSON.parse(cli([join(zoo, 'm01.onnx'), '--json', ...FAST]).out).gates, []);
});

test('Ctrl-C (SIGINT to the process group, as a terminal sends it) stops the batch, keeps every finished record, releases the lock and says how to resume', async () => {
  const zoo = smallZoo('interrupted', 10);
  const out = join(dir, 'interrupted.jsonl');
  const a = startBatch([zoo, '--out', out, '--jobs', '2', ...FAST], true);
  await a.after(2);
  process.kill(-a.child.pid!, 'SIGINT');
  assert.equal(await a.exit, 130);
  const done = parseRecords(readFileSync(out));
  assert.equal(done.truncated, false);
  assert.deepEqual(done.badLines, []);
  assert.ok(done.records.every((x) => x.error === null), 'no model is recorded as a CRASH of the interruption');
  assert.match(a.err, new RegExp(`interrupted \\(SIGINT\\): ${done.records.length} of 10 models are recorded in '${out}'. To analyse the other ${10 - done.records.length}, run:\\n  lipcheck batch .* --resume\\n`));
  assert.ok(!existsSync(`${out}.lock`));
  const r = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '2', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.equal(lines(out).length, 10);
});

test('--resume cuts a half-written last line at its byte offset even after invalid UTF-8 in an earlier line', () => {
  const zoo = smallZoo('bytes', 3);
  const out = join(dir, 'bytes.jsonl');
  assert.equal(cli(['batch', join(zoo, 'm00.onnx'), join(zoo, 'm01.onnx'), '--out', out, '--jobs', '1', ...FAST]).code, 0);
  // an extra field with raw 0xFF 0xFE bytes in line 1 (still a record), then the start of a line a kill cut off
  const [l1, l2] = readFileSync(out).toString('latin1').split('\n');
  const l1Bytes = Buffer.concat([Buffer.from('{"note":"', 'latin1'), Buffer.from([0xff, 0xfe]), Buffer.from('",' + l1.slice(1), 'latin1')]);
  const kept = Buffer.concat([l1Bytes, Buffer.from('\n'), Buffer.from(l2 + '\n', 'latin1')]);
  writeFileSync(out, Buffer.concat([kept, Buffer.from('{"schemaVersion":1,"path":"cut')]));
  const r = cli(['batch', zoo, '--out', out, '--resume', '--jobs', '1', ...FAST]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /last line was cut off/);
  const bytes = readFileSync(out);
  assert.deepEqual(bytes.subarray(0, kept.length), kept, 'the earlier lines are untouched, byte for byte');
  const p = parseRecords(bytes);
  assert.deepEqual([p.badLines, p.truncated], [[], false]);
  assert.deepEqual(p.records.map((x) => x.path), ['m00.onnx', 'm01.onnx', 'm02.onnx'].map((f) => join(zoo, f)));
});

test('batch --device cuda without its provider stops once with the device error (exit 5), before any record or --out is written', (t) => {
  const provider = join(fileURLToPath(new URL('../../node_modules/onnxruntime-node/', import.meta.url)), 'bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so');
  if (existsSync(provider)) return t.skip('the CUDA provider is installed here: --device cuda may work');
  const out = join(mkdtempSync(join(tmpdir(), 'lipcheck-batch-device-')), 'out.jsonl');
  const r = spawnSync(process.execPath, [BIN, 'batch', FIXTURES + 'demo.onnx', FIXTURES + 'mlp_relu.onnx', '--device', 'cuda', '--out', out], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 5, r.stderr);
  assert.match(r.stderr, /--device cuda: the CUDA provider of onnxruntime-node is not installed/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.equal(existsSync(out), false, 'no journal for a run that could not start');
});
