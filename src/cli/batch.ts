import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { findModels, parseShard, shardOf } from '../batch/discover.js';
import { compareBaseline, evaluateGates, gatesJson, missingGate, type BaselineComparison, type GateJson, type Gates } from '../batch/gates.js';
import { planResume, type ResumePlan } from '../batch/journal.js';
import { mergeRecords, parseRecords, recordLine } from '../batch/jsonl.js';
import { acquireJournalLock, LEASE_MS, type JournalLock } from '../batch/lock.js';
import { BATCH_SCHEMA_VERSION, recordFromError, type BatchError, type BatchLimits, type BatchRecord, type GateResult } from '../batch/record.js';
import { LipcheckError } from '../errors.js';
import { checkDevice, type AnalyzeOptions } from '../index.js';
import { renderHtml } from '../report/html.js';
import { renderJunit } from '../report/junit.js';
import { formatNumber, renderBatchSummary } from '../report/table.js';
import { analysisOptions, commandFor, gateOptions, number, parseArgs, writeAtomically } from './args.js';
import type { WorkerReply } from './batch-worker.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './fail.js';
import { createBatchProgress } from './progress.js';

/** Most worker processes a batch starts at once (each is a Node process with its own onnxruntime). */
export const MAX_JOBS = 256;
/** Longest --timeout: Node's timers hold at most 2^31 − 1 ms; a longer delay would fire after 1 ms. */
export const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

const WORKER = new URL(import.meta.url.endsWith('.ts') ? './batch-worker.ts' : './batch-worker.js', import.meta.url);
/**
 * Workers ask glibc (≥ 2.35; ignored elsewhere) for transparent huge pages on malloc'd memory: every onnxruntime output
 * is a fresh buffer, and 4 KiB page faults cost up to ~4 ms per MB on some VMs (bench/README.md). A user's own
 * GLIBC_TUNABLES wins.
 */
const WORKER_ENV = { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? 'glibc.malloc.hugetlb=1' };
const POLL_MS = 250;

function fileHash(path: string): { sha256: string; bytes: number } | null {
  try {
    const b = readFileSync(path);
    return { sha256: createHash('sha256').update(b).digest('hex'), bytes: b.length };
  } catch {
    return null;
  }
}

/** Resident memory of a process in MiB from /proc (Linux); null elsewhere. */
function rssMb(pid: number): number | null {
  try {
    const m = /VmRSS:\s*(\d+)\s*kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Whether a process runs on this host (one we may not signal, EPERM, runs too). A zombie — killed, not yet reaped by
 * its parent (a CI runner, a test) — answers signal 0 but writes nothing any more: dead (Linux /proc).
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const state = /^\d+ \(.*\) (\S)/s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}

/** The journal lock of `file` for this process. */
function lockJournal(file: string, what: string): JournalLock {
  const lock = acquireJournalLock(file, { pid: process.pid, host: hostname(), since: new Date().toISOString(), alive, now: Date.now }, what);
  if (lock.tookOver) process.stderr.write(`lipcheck: ${file}: took over the lock of pid ${lock.tookOver.pid} on host ${lock.tookOver.host}, which is no longer running (a batch that was killed).\n`);
  // renew the lease, so that a batch on another host sharing the volume sees this one alive
  const timer = setInterval(() => lock.refresh(), LEASE_MS / 4);
  timer.unref();
  return { ...lock, release: () => { clearInterval(timer); lock.release(); } };
}

/** How the worker pool runs: workers, limits, and what to do with each record and start. */
interface PoolOptions {
  readonly jobs: number;
  readonly timeoutMs: number;
  readonly maxMemoryMb: number;
  readonly options: AnalyzeOptions;
  readonly onStart: (path: string) => void;
  readonly onRecord: (r: BatchRecord) => void;
}

interface Slot { child: ChildProcess | null; job: string | null; started: number; killedFor: 'TIMEOUT' | 'MEMORY' | null; peakMb: number; stderr: string; timer: NodeJS.Timeout | null }

/**
 * Analyses `paths` in `jobs` worker processes, each model in a process that a timeout or the memory guard may kill;
 * a killed or crashed worker is replaced and its model recorded with the reason. `done` resolves when every model has
 * a record, or at once after `abort` (Ctrl-C): the workers are killed and the models in flight get no record.
 */
/** How long a worker's death by SIGINT or SIGTERM waits for the batch's own signal handler (runPool); no number depends on it. */
const INTERRUPT_GRACE_MS = 500;

function runPool(paths: readonly string[], o: PoolOptions): { done: Promise<void>; abort(): void } {
  const queue = [...paths];
  const slots: Slot[] = Array.from({ length: Math.max(1, Math.min(o.jobs, queue.length)) }, () => ({ child: null, job: null, started: 0, killedFor: null, peakMb: 0, stderr: '', timer: null }));
  const norm = o.options.norm ?? '2';
  const limits: BatchLimits = { timeoutS: o.timeoutMs / 1000, maxMemoryMb: o.maxMemoryMb };
  let abort = () => {};
  const done = new Promise<void>((resolve, reject) => {
    let finished = false;
    const guard = (s: Slot) => {
      if (!s.child?.pid || !s.job) return;
      const mb = rssMb(s.child.pid);
      if (mb === null) return;
      s.peakMb = Math.max(s.peakMb, mb);
      if (mb > o.maxMemoryMb && !s.killedFor) {
        s.killedFor = 'MEMORY';
        s.child.kill('SIGKILL');
      }
    };
    const poll = setInterval(() => slots.forEach(guard), POLL_MS);
    const done = () => {
      if (finished || queue.length || slots.some((s) => s.job)) return;
      finished = true;
      clearInterval(poll);
      resolve();
    };
    abort = () => {
      if (finished) return;
      finished = true;
      clearInterval(poll);
      queue.length = 0;
      for (const s of slots) {
        if (s.timer) clearTimeout(s.timer);
        s.job = null;
        s.child?.kill('SIGKILL');
      }
      resolve();
    };
    const settle = (s: Slot, record: BatchRecord) => {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      s.job = null;
      if (finished) return;
      o.onRecord(record);
      next(s);
    };
    const spawn = (s: Slot) => {
      const child = fork(WORKER, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: WORKER_ENV });
      s.child = child;
      s.stderr = '';
      child.stderr?.on('data', (d: Buffer) => { s.stderr = (s.stderr + d.toString()).slice(-2000); });
      child.on('message', (m: WorkerReply) => {
        if (s.child !== child || s.job !== m.path) return;
        if ('record' in m) return settle(s, m.record);
        s.started = performance.now();
        guard(s);
        if (o.timeoutMs > 0) {
          s.timer = setTimeout(() => {
            if (s.job === m.path && s.child === child) { s.killedFor = 'TIMEOUT'; child.kill('SIGKILL'); }
          }, o.timeoutMs);
        }
      });
      child.on('error', (e) => {
        // only a worker that never started stops the batch; one that dies (killed, crashed) is recorded by 'exit'
        if (child.pid !== undefined) return;
        if (!finished) { finished = true; clearInterval(poll); reject(new LipcheckError('INTERNAL', `Cannot start a batch worker process (${e.message}).`, { cause: e })); }
      });
      child.on('exit', (code, signal) => {
        if (s.child !== child) return;
        s.child = null;
        if (!s.job) return done();
        const path = s.job;
        const ms = performance.now() - s.started;
        const why: BatchError = s.killedFor === 'TIMEOUT'
          ? { code: 'TIMEOUT', exit: EXIT.RUNTIME, message: `The analysis of '${path}' took longer than --timeout ${o.timeoutMs / 1000} s and was stopped. Raise --timeout (a --resume run with a larger --timeout analyses it again), or make the analysis cheaper (--certify off, --method autolip, --lower-pairs 0).`, limits }
          : s.killedFor === 'MEMORY'
            ? { code: 'MEMORY', exit: EXIT.RUNTIME, message: `The analysis of '${path}' used more than --max-memory ${o.maxMemoryMb} MiB (${Math.round(s.peakMb)} MiB resident) and was stopped. Raise --max-memory, or lower --jobs so each worker may use more (a --resume run with a larger limit analyses it again).`, limits }
            : { code: 'CRASH', exit: EXIT.INTERNAL, message: `The worker analysing '${path}' died (${signal ? `signal ${signal}` : `exit code ${code}`})${s.stderr.trim() ? `: ${s.stderr.trim().split('\n').slice(-3).join(' ')}` : ''}. This is a bug in lipcheck or onnxruntime, or the system ran out of memory; please report it with the model (--resume --retry-failed analyses it again).`, limits };
        s.killedFor = null;
        const record = recordFromError(path, fileHash(path), why, norm, ms, s.peakMb ? Math.round(s.peakMb) : null);
        // Ctrl-C reaches the whole process group: a worker may die of it before this process's own handler has run
        // (abort), and its model is then not a crash but an interruption; so such a death is recorded only if no abort
        // follows within INTERRUPT_GRACE_MS (settle records nothing once aborted)
        if (why.code === 'CRASH' && (signal === 'SIGINT' || signal === 'SIGTERM')) setTimeout(() => settle(s, record), INTERRUPT_GRACE_MS);
        else settle(s, record);
      });
    };
    const next = (s: Slot) => {
      const path = queue.shift();
      if (path === undefined) {
        if (s.child?.connected) s.child.disconnect();
        return done();
      }
      if (!s.child) spawn(s);
      s.job = path;
      s.started = performance.now();
      s.peakMb = 0;
      s.killedFor = null;
      o.onStart(path);
      // a worker killed while its job is on the way (the pipe closed: EPIPE) never reads it; its 'exit' then records the
      // job as a crash (without a callback the failed send would be an 'error' event); one whose channel closed while
      // it lives is killed, so that its 'exit' comes
      const worker = s.child!;
      worker.send({ path, options: o.options }, (e) => { if (e) worker.kill('SIGKILL'); });
    };
    if (queue.length === 0) return done();
    for (const s of slots) next(s);
  });
  return { done, abort: () => abort() };
}

/** One finished model in a few words, for the per-model progress line. */
function outcomeText(r: BatchRecord): string {
  if (r.status === 'error') return `error ${r.error?.code ?? ''}`.trim();
  if (r.status === 'bounded' && r.upper) return `bounded, upper ${formatNumber(r.upper.value)} (${r.upper.kind})`;
  return r.status;
}

/** One `--json` line: the record with its gate verdicts (`gates: [{ name, limit, value, passed, message }]`). */
function jsonLine(r: BatchRecord, verdict: GateResult | null | undefined): string {
  return JSON.stringify({ ...r, gates: gatesJson(verdict) }) + '\n';
}

/** The baseline counts in one clause: "16 compared, 9 new, 2 missing (a, b)". */
function comparisonText(c: BaselineComparison): string {
  const list = (xs: readonly string[]) => (xs.length ? ` (${xs.slice(0, 5).join(', ')}${xs.length > 5 ? ', …' : ''})` : '');
  return `baseline: ${c.compared} compared, ${c.added.length} new${list(c.added)}, ${c.missing.length} missing${list(c.missing)}`;
}

/** How `finish` reports: which command, what to print. */
interface FinishOptions {
  readonly command: 'batch' | 'merge';
  readonly single: boolean;
  readonly elapsedMs?: number;
  readonly skipped?: number;
  /** The records' --json lines were already printed (a batch streams them). */
  readonly streamed: boolean;
}

/** Gates, JUnit and HTML files, and the summary (text, or the closing `--json` line), for a finished list of records; returns the exit code. */
function finish(records: readonly BatchRecord[], gates: Gates, opts: Record<string, any>, f: FinishOptions): number {
  const gated = gates.max !== undefined || gates.baseline !== undefined;
  // fail closed: a gate that saw no model has nothing to vouch for
  if (gated && records.length === 0) throw new LipcheckError('USAGE', `The gates (--max, --baseline) have no model to judge: the ${f.command === 'merge' ? 'inputs hold' : 'batch produced'} no records.`);
  const verdicts: GateResult[] | null = evaluateGates(records, gates, f.single);
  const comparison = gates.baseline ? compareBaseline(records, gates.baseline, f.single) : null;
  const runGates: GateJson[] = opts.failOnMissing && comparison ? [missingGate(comparison)] : [];
  if (opts.junit) writeAtomically(opts.junit, renderJunit(records, verdicts, 'lipcheck', opts.failOnMissing ? comparison?.missing ?? [] : []));
  if (opts.html) writeAtomically(opts.html, renderHtml({ kind: 'batch', records, gates: verdicts, title: f.command === 'merge' ? 'lipcheck merge report' : undefined }));
  const failedModels = (verdicts ?? []).filter((g) => !g.passed).length;
  const failedRun = runGates.filter((g) => !g.passed);
  if (opts.json) {
    if (!f.streamed) records.forEach((r, k) => process.stdout.write(jsonLine(r, verdicts?.[k])));
    const summary = {
      command: f.command,
      models: records.length,
      errors: records.filter((r) => r.status === 'error').length,
      gatesFailed: gated ? failedModels + failedRun.length : null,
      gates: runGates,
      baseline: comparison ? { compared: comparison.compared, new: comparison.added, missing: comparison.missing } : null,
    };
    process.stdout.write(JSON.stringify({ schemaVersion: BATCH_SCHEMA_VERSION, summary }) + '\n');
  } else {
    const color = opts.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    const gateNote = [comparison ? comparisonText(comparison) : '', ...failedRun.map((g) => `--fail-on-missing: ${g.message}`)].filter(Boolean).join('; ');
    process.stdout.write(renderBatchSummary(records, verdicts, { color, elapsedMs: f.elapsedMs, skipped: f.skipped, title: `lipcheck ${f.command}`, gateNote: gateNote || undefined, runFailed: failedRun.length }));
  }
  for (const g of failedRun) process.stderr.write(`lipcheck: gate failed (--fail-on-missing): ${g.message}.\n`);
  if (failedModels) process.stderr.write(`lipcheck: gate failed for ${failedModels} of ${records.length} model${records.length === 1 ? '' : 's'}.\n`);
  return failedModels || failedRun.length ? EXIT.GATE_FAILED : EXIT.OK;
}

/** Quotes an argument for a POSIX shell when it needs it (the resume hint is meant to be pasted). */
function shellWord(a: string): string {
  return /^[\w./:=@%+,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** The warnings and notes of a --resume plan, on stderr. */
function reportPlan(plan: ResumePlan, out: string): void {
  const names = (xs: readonly string[]) => `${xs.slice(0, 5).join(', ')}${xs.length > 5 ? `, … (${xs.length} in all)` : ''}`;
  if (plan.changed.length) process.stderr.write(`lipcheck: ${out}: ${plan.changed.length} model file${plan.changed.length === 1 ? '' : 's'} changed since ${plan.changed.length === 1 ? 'its' : 'their'} record (sha256) and ${plan.changed.length === 1 ? 'is' : 'are'} analysed again; the new record supersedes the old: ${names(plan.changed)}.\n`);
  if (plan.retried.length) process.stderr.write(`lipcheck: ${out}: retrying ${plan.retried.length} failed model${plan.retried.length === 1 ? '' : 's'}: ${names(plan.retried.map((x) => `${x.path} [${x.code}: ${x.why}]`))}.\n`);
  if (plan.keptFailures.length) process.stderr.write(`lipcheck: ${out}: ${plan.keptFailures.length} model${plan.keptFailures.length === 1 ? '' : 's'} recorded as ${[...new Set(plan.keptFailures.map((x) => x.code))].join('/')} ${plan.keptFailures.length === 1 ? 'is' : 'are'} kept as ${plan.keptFailures.length === 1 ? 'it is' : 'they are'}: raise --timeout or --max-memory, or add --retry-failed, to analyse ${plan.keptFailures.length === 1 ? 'it' : 'them'} again.\n`);
  if (plan.removed.length) process.stderr.write(`lipcheck: ${out}: ${plan.removed.length} recorded model${plan.removed.length === 1 ? '' : 's'} no longer exist${plan.removed.length === 1 ? 's' : ''} and ${plan.removed.length === 1 ? 'is' : 'are'} left out of this run's summary and gates (the records stay in the file; 'lipcheck merge' reads them): ${names(plan.removed)}.\n`);
}

const AFTER_BATCH = `
Models: files as given, directories searched recursively for .onnx files, and glob patterns (quote them; braces
and ** work: 'zoo/{cnn,mlp}/**/*.onnx'). A named file that does not exist, or a directory that cannot be read, is a
usage error: a gate must not pass over models it never saw.
Each model runs in a worker process; a model that fails, hangs (--timeout) or exhausts memory (--max-memory) is
recorded with its reason and the rest go on. --out is a journal: locked while a batch writes it, appended to by
--resume (the latest record of a model wins), never emptied without --force. Exit codes: 0 done (every gate passed),
1 a gate failed (--max, --baseline, --fail-on-missing), 2 usage error (no models, bad options, --out in use), 70
internal error, 130 interrupted (Ctrl-C: rerun with --resume). Per-model errors are in the records.`;

/** `lipcheck batch PATH…`: analyses many models in worker processes and streams one JSON line per model. */
export async function runBatch(argv: readonly string[]): Promise<number> {
  const program = commandFor('batch', 'lipcheck batch', 'Analyse many ONNX models: one JSON line per model (--out), a summary, CI gates, JUnit and HTML reports.', AFTER_BATCH)
    .argument('<paths...>', 'ONNX files, directories (searched recursively for .onnx) or glob patterns');
  let debug = argv.includes('--debug');
  let out: number | null = null;
  let lock: JournalLock | null = null;
  try {
    const answered = parseArgs(program, argv);
    if (answered !== null) return answered;
    const opts = program.opts();
    debug = Boolean(opts.debug);
    const gates = gateOptions(opts);
    if (opts.failOnMissing && !gates.baseline) throw new LipcheckError('USAGE', '--fail-on-missing needs --baseline FILE: it fails the run when a model of the baseline is not in it.');
    const options = analysisOptions(opts);
    const cores = availableParallelism();
    const jobs = number('--jobs', opts.jobs, (x) => Number.isInteger(x) && x >= 1 && x <= MAX_JOBS, `an integer from 1 to ${MAX_JOBS} (each job is a worker process; the default is the number of cores, ${cores})`) ?? Math.min(cores, MAX_JOBS);
    const timeoutS = number('--timeout', opts.timeout, (x) => x >= 0 && x <= MAX_TIMEOUT_S, `a number of seconds from 0 (no limit) to ${MAX_TIMEOUT_S} (about 24.8 days, the longest timer Node.js can set); for no limit give 0`)!;
    const timeoutMs = 1000 * timeoutS;
    const maxMemoryMb = number('--max-memory', opts.maxMemory, (x) => x >= 1, 'a positive number of MiB') ?? Math.floor((0.8 * totalmem()) / 2 ** 20 / jobs);
    // workers share the cores: unless told otherwise, each gets its share of onnxruntime's intra-op threads
    const threads = options.threads || (jobs > 1 ? Math.max(1, Math.floor(cores / jobs)) : 0);
    if (opts.resume && !opts.out) throw new LipcheckError('USAGE', '--resume needs --out FILE: the results of the earlier run are read from that file.');
    if (opts.resume && opts.force) throw new LipcheckError('USAGE', '--resume continues the results in --out and --force replaces them: give one of the two.');
    if (opts.retryFailed && !opts.resume) throw new LipcheckError('USAGE', '--retry-failed works with --resume: it analyses again the models an earlier run recorded as failed.');

    const found = findModels(program.args);
    if (found.missing.length) throw new LipcheckError('USAGE', `${found.missing.length === 1 ? 'This path does' : 'These paths do'} not exist: ${found.missing.map((m) => `'${m}'`).join(', ')}. Check the spelling, or quote a glob pattern so that lipcheck expands it.`);
    if (found.unreadable.length) throw new LipcheckError('USAGE', `Cannot read ${found.unreadable.length === 1 ? 'the directory' : 'the directories'} ${found.unreadable.map((m) => `'${m}'`).join(', ')}: the models in ${found.unreadable.length === 1 ? 'it' : 'them'} would be left out without a trace. Fix the permissions, or leave ${found.unreadable.length === 1 ? 'it' : 'them'} out of the paths.`);
    const note = (text: string) => { if (!opts.quiet) process.stderr.write(text); };
    for (const u of found.unmatched) note(`lipcheck: warning: '${u}' matched no .onnx file.\n`);
    if (found.models.length === 0) throw new LipcheckError('USAGE', `No ONNX models found in ${program.args.map((a) => `'${a}'`).join(', ')}. Give .onnx files, directories that contain them, or quoted glob patterns such as 'zoo/**/*.onnx'.`);
    const models = opts.shard ? shardOf(found.models, parseShard(opts.shard)) : [...found.models];
    // a GPU that cannot start is the run's fault, not each model's: say so once instead of a DEVICE record per model
    if (options.device === 'cuda' || options.device === 'webgpu') await checkDevice(options.device, threads);

    let plan: ResumePlan | null = null;
    if (opts.out) {
      lock = lockJournal(opts.out, '--out');
      let size = 0;
      try {
        size = statSync(opts.out).size;
      } catch { /* a new file */ }
      if (size > 0 && !opts.resume && !opts.force) throw new LipcheckError('USAGE', `--out '${opts.out}' already holds results (${size} bytes). Give --resume to continue that run, --force to replace it, or another --out.`);
      if (opts.resume && size > 0) {
        const bytes = readFileSync(opts.out);
        const parsed = parseRecords(bytes);
        if (parsed.badLines.length) note(`lipcheck: warning: ${opts.out}: line${parsed.badLines.length > 1 ? 's' : ''} ${parsed.badLines.slice(0, 5).join(', ')} ${parsed.badLines.length > 1 ? 'are' : 'is'} not batch records and ${parsed.badLines.length > 1 ? 'are' : 'is'} ignored.\n`);
        if (parsed.truncated) note(`lipcheck: ${opts.out}: its last line was cut off by the interrupted run; that model is analysed again.\n`);
        plan = planResume(parsed.records, models, (p) => fileHash(p)?.sha256 ?? null, { timeoutS, maxMemoryMb }, Boolean(opts.retryFailed), existsSync);
        if (!opts.quiet) reportPlan(plan, opts.out);
        // cut the journal back to its last complete line (a byte offset of the raw file) before appending
        if (parsed.validBytes < bytes.length) {
          const fd = openSync(opts.out, 'r+');
          try {
            ftruncateSync(fd, parsed.validBytes);
          } finally {
            closeSync(fd);
          }
        }
      }
      try {
        out = openSync(opts.out, opts.resume ? 'a' : 'w');
      } catch (e) {
        throw new LipcheckError('USAGE', `Cannot write --out '${opts.out}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Check that its directory exists and is writable.`, { cause: e });
      }
    }

    const single = models.length === 1;
    const verdictOf = (r: BatchRecord) => evaluateGates([r], gates, single)?.[0];
    const kept = plan?.keep ?? [];
    const todo = plan ? plan.todo : models;
    const records: BatchRecord[] = [...kept];
    if (opts.json) for (const r of kept) process.stdout.write(jsonLine(r, verdictOf(r)));
    const mode = opts.quiet ? 'off' : process.stderr.isTTY ? 'bar' : 'lines';
    const progress = createBatchProgress(mode, models.length, kept.length);
    const t0 = performance.now();
    const pool = runPool(todo, {
      jobs, timeoutMs, maxMemoryMb, options: { ...options, threads },
      onStart: (p) => progress.start(p),
      onRecord: (r) => {
        if (out !== null) {
          // one write of the whole line, then to the disk: a kill at any moment loses at most the line being written
          const line = Buffer.from(recordLine(r));
          for (let k = 0; k < line.length;) k += writeSync(out, line, k);
          fdatasyncSync(out);
        }
        records.push(r);
        if (opts.json) process.stdout.write(jsonLine(r, verdictOf(r)));
        progress.finish(r.path, outcomeText(r), r.ms);
      },
    });
    let interrupted: NodeJS.Signals | null = null;
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = signal;
      pool.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      await pool.done;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      progress.stop();
    }
    if (out !== null) { closeSync(out); out = null; }
    if (interrupted) {
      const left = models.length - records.length;
      const again = ['lipcheck', 'batch', ...argv.filter((a) => a !== '--force'), ...(opts.resume ? [] : ['--resume'])].map(shellWord).join(' ');
      process.stderr.write(opts.out
        ? `lipcheck: interrupted (${interrupted}): ${records.length} of ${models.length} models are recorded in '${opts.out}'. To analyse the other ${left}, run:\n  ${again}\n`
        : `lipcheck: interrupted (${interrupted}): the ${records.length} finished models were not saved (no --out). Give --out FILE to keep results; after an interruption the same command with --resume analyses only the rest.\n`);
      return interrupted === 'SIGINT' ? EXIT.INTERRUPTED : EXIT.TERMINATED;
    }
    return finish(mergeRecords([records]), gates, opts, { command: 'batch', single, elapsedMs: performance.now() - t0, skipped: kept.length, streamed: true });
  } catch (e) {
    return reportError(e, debug);
  } finally {
    if (out !== null) closeSync(out);
    lock?.release();
  }
}

/** `lipcheck merge FILE…`: joins batch outputs (shards) into one sorted list, with the same gates and reports. */
export async function runMerge(argv: readonly string[]): Promise<number> {
  const program = commandFor('merge', 'lipcheck merge', 'Join the JSON-lines outputs of several batch runs (shards) into one, sorted by path; a model recorded more than once keeps its latest record.', '\nExit codes: 0 merged (every gate passed), 1 a gate failed, 2 usage error or unreadable input (an input with no records; with a gate, an input with damaged lines).')
    .argument('<files...>', 'JSON-lines files written by lipcheck batch --out');
  let debug = argv.includes('--debug');
  let lock: JournalLock | null = null;
  try {
    const answered = parseArgs(program, argv);
    if (answered !== null) return answered;
    const opts = program.opts();
    debug = Boolean(opts.debug);
    const gates = gateOptions(opts);
    if (opts.failOnMissing && !gates.baseline) throw new LipcheckError('USAGE', '--fail-on-missing needs --baseline FILE: it fails the merge when a model of the baseline is in none of the inputs.');
    const gated = gates.max !== undefined || gates.baseline !== undefined;
    const lists = program.args.map((f) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(f);
      } catch (e) {
        throw new LipcheckError('USAGE', `Cannot read '${f}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Give the files lipcheck batch --out wrote.`, { cause: e });
      }
      const parsed = parseRecords(bytes);
      if (parsed.records.length === 0) throw new LipcheckError('USAGE', `'${f}' holds no batch records (${bytes.length === 0 ? 'it is empty' : `line ${parsed.badLines[0] ?? 1} is not a record`}). Give the files lipcheck batch --out wrote; a shard that has not run yet has no file to merge.`);
      const bad = parsed.badLines.length;
      // with a gate, a damaged line is a model the gate cannot see: fail closed (a cut-off last line is an interrupted run, not damage)
      if (bad && gated) throw new LipcheckError('USAGE', `'${f}' is damaged: line${bad > 1 ? 's' : ''} ${parsed.badLines.slice(0, 5).join(', ')} ${bad > 1 ? 'are' : 'is'} not batch records, so the gates cannot vouch for the models on ${bad > 1 ? 'them' : 'it'}. Rerun that shard (lipcheck batch … --out FILE --resume), or merge without gates to keep the readable records.`);
      if (bad || parsed.truncated) process.stderr.write(`lipcheck: warning: ${f}: ${bad + (parsed.truncated ? 1 : 0)} line(s) are not complete batch records and are ignored.\n`);
      return parsed.records;
    });
    const merged = mergeRecords(lists);
    if (opts.out) {
      lock = lockJournal(opts.out, '--out');
      writeAtomically(opts.out, merged.map(recordLine).join(''));
    }
    return finish(merged, gates, opts, { command: 'merge', single: merged.length === 1, streamed: false });
  } catch (e) {
    return reportError(e, debug);
  } finally {
    lock?.release();
  }
}
