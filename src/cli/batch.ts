import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { findModels, parseShard, shardOf } from '../batch/discover.js';
import { evaluateGates, type Gates } from '../batch/gates.js';
import { mergeRecords, parseRecords, recordLine } from '../batch/jsonl.js';
import { recordFromError, type BatchErrorCode, type BatchRecord, type GateResult } from '../batch/record.js';
import { LipcheckError } from '../errors.js';
import type { AnalyzeOptions } from '../index.js';
import { renderHtml } from '../report/html.js';
import { renderJunit } from '../report/junit.js';
import { renderBatchSummary } from '../report/table.js';
import { analysisOptions, commandFor, gateOptions, number, parseArgs, writeAtomically } from './args.js';
import type { WorkerReply } from './batch-worker.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './fail.js';
import { createBatchProgress } from './progress.js';

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
 * a killed or crashed worker is replaced and its model recorded with the reason. Resolves when every model has a record.
 */
function runPool(paths: readonly string[], o: PoolOptions): Promise<void> {
  const queue = [...paths];
  const slots: Slot[] = Array.from({ length: Math.max(1, Math.min(o.jobs, queue.length)) }, () => ({ child: null, job: null, started: 0, killedFor: null, peakMb: 0, stderr: '', timer: null }));
  const norm = o.options.norm ?? '2';
  return new Promise((resolve, reject) => {
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
    const settle = (s: Slot, record: BatchRecord) => {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      s.job = null;
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
        if (!finished) { finished = true; clearInterval(poll); reject(new LipcheckError('INTERNAL', `Cannot start a batch worker process (${e.message}).`, { cause: e })); }
      });
      child.on('exit', (code, signal) => {
        if (s.child !== child) return;
        s.child = null;
        if (!s.job) return done();
        const path = s.job;
        const ms = performance.now() - s.started;
        const why: { code: BatchErrorCode; exit: number; message: string } = s.killedFor === 'TIMEOUT'
          ? { code: 'TIMEOUT', exit: EXIT.RUNTIME, message: `The analysis of '${path}' took longer than --timeout ${o.timeoutMs / 1000} s and was stopped. Raise --timeout, or make the analysis cheaper (--certify off, --method autolip, --lower-pairs 0).` }
          : s.killedFor === 'MEMORY'
            ? { code: 'MEMORY', exit: EXIT.RUNTIME, message: `The analysis of '${path}' used more than --max-memory ${o.maxMemoryMb} MiB (${Math.round(s.peakMb)} MiB resident) and was stopped. Raise --max-memory, or lower --jobs so each worker may use more.` }
            : { code: 'CRASH', exit: EXIT.INTERNAL, message: `The worker analysing '${path}' died (${signal ? `signal ${signal}` : `exit code ${code}`})${s.stderr.trim() ? `: ${s.stderr.trim().split('\n').slice(-3).join(' ')}` : ''}. This is a bug in lipcheck or onnxruntime; please report it with the model.` };
        s.killedFor = null;
        settle(s, recordFromError(path, fileHash(path), why, norm, ms, s.peakMb ? Math.round(s.peakMb) : null));
      });
    };
    const next = (s: Slot) => {
      const path = queue.shift();
      if (path === undefined) {
        s.child?.disconnect();
        return done();
      }
      if (!s.child) spawn(s);
      s.job = path;
      s.started = performance.now();
      s.peakMb = 0;
      s.killedFor = null;
      o.onStart(path);
      s.child!.send({ path, options: o.options });
    };
    if (queue.length === 0) return done();
    for (const s of slots) next(s);
  });
}

/** Gates, JUnit and HTML files, and the summary, for a finished list of records; returns the exit code. */
function finish(records: readonly BatchRecord[], gates: Gates, opts: Record<string, any>, summary: { elapsedMs?: number; skipped?: number; printSummary: boolean }): number {
  const verdicts: GateResult[] | null = evaluateGates(records, gates);
  if (opts.junit) writeAtomically(opts.junit, renderJunit(records, verdicts));
  if (opts.html) writeAtomically(opts.html, renderHtml({ kind: 'batch', records, gates: verdicts }));
  if (summary.printSummary) {
    const color = opts.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    process.stdout.write(renderBatchSummary(records, verdicts, { color, elapsedMs: summary.elapsedMs, skipped: summary.skipped }));
  }
  const failed = (verdicts ?? []).filter((g) => !g.passed).length;
  if (failed) process.stderr.write(`lipcheck: gate failed for ${failed} of ${records.length} model${records.length === 1 ? '' : 's'}.\n`);
  return failed ? EXIT.GATE_FAILED : EXIT.OK;
}

const AFTER_BATCH = `
Models: files as given, directories searched recursively for .onnx files, and glob patterns (quote them).
Each model runs in a worker process; a model that fails, hangs (--timeout) or exhausts memory (--max-memory) is
recorded with its reason and the rest go on. Exit codes: 0 done (every gate passed), 1 a gate failed (--max,
--baseline), 2 usage error (no models, bad options), 70 internal error. Per-model errors are in the records.`;

/** `lipcheck batch PATH…`: analyses many models in worker processes and streams one JSON line per model. */
export async function runBatch(argv: readonly string[]): Promise<number> {
  const program = commandFor('batch', 'lipcheck batch', 'Analyse many ONNX models: one JSON line per model (--out), a summary, CI gates, JUnit and HTML reports.', AFTER_BATCH)
    .argument('<paths...>', 'ONNX files, directories (searched recursively for .onnx) or glob patterns');
  let debug = argv.includes('--debug');
  let out: number | null = null;
  try {
    const answered = parseArgs(program, argv);
    if (answered !== null) return answered;
    const opts = program.opts();
    debug = Boolean(opts.debug);
    const gates = gateOptions(opts);
    const options = analysisOptions(opts);
    const cores = availableParallelism();
    const jobs = number('--jobs', opts.jobs, (x) => Number.isInteger(x) && x >= 1, 'a positive integer') ?? cores;
    const timeoutMs = 1000 * number('--timeout', opts.timeout, (x) => x >= 0, 'a non-negative number of seconds')!;
    const maxMemoryMb = number('--max-memory', opts.maxMemory, (x) => x >= 1, 'a positive number of MiB') ?? Math.floor((0.8 * totalmem()) / 2 ** 20 / jobs);
    // workers share the cores: unless told otherwise, each gets its share of onnxruntime's intra-op threads
    const threads = options.threads || (jobs > 1 ? Math.max(1, Math.floor(cores / jobs)) : 0);
    if (opts.resume && !opts.out) throw new LipcheckError('USAGE', '--resume needs --out FILE: the results of the earlier run are read from that file.');

    const found = findModels(program.args);
    for (const u of found.unmatched) process.stderr.write(`lipcheck: warning: '${u}' matched no .onnx file.\n`);
    if (found.models.length === 0) throw new LipcheckError('USAGE', `No ONNX models found in ${program.args.map((a) => `'${a}'`).join(', ')}. Give .onnx files, directories that contain them, or quoted glob patterns such as 'zoo/**/*.onnx'.`);
    const models = opts.shard ? shardOf(found.models, parseShard(opts.shard)) : [...found.models];

    const previous = new Map<string, BatchRecord>();
    if (opts.resume && existsSync(opts.out)) {
      const parsed = parseRecords(readFileSync(opts.out, 'utf8'));
      if (parsed.badLines.length) process.stderr.write(`lipcheck: warning: ${opts.out}: line${parsed.badLines.length > 1 ? 's' : ''} ${parsed.badLines.slice(0, 5).join(', ')} are not batch records and are ignored.\n`);
      if (parsed.truncated) process.stderr.write(`lipcheck: ${opts.out}: its last line was cut off by the interrupted run; that model is analysed again.\n`);
      const wanted = new Set(models);
      for (const r of parsed.records) {
        if (!wanted.has(r.path)) continue;
        if (r.sha256 === (fileHash(r.path)?.sha256 ?? null)) previous.set(r.path, r);
      }
      out = openSync(opts.out, 'r+');
      ftruncateSync(out, parsed.validBytes);
      closeSync(out);
      out = null;
    }
    if (opts.out) {
      try {
        out = openSync(opts.out, opts.resume ? 'a' : 'w');
      } catch (e) {
        throw new LipcheckError('USAGE', `Cannot write --out '${opts.out}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Check that its directory exists and is writable.`, { cause: e });
      }
    }

    const todo = models.filter((m) => !previous.has(m));
    const records: BatchRecord[] = [...previous.values()];
    const progress = createBatchProgress(Boolean(process.stderr.isTTY) && !opts.json, models.length, previous.size);
    const t0 = performance.now();
    try {
      await runPool(todo, {
        jobs, timeoutMs, maxMemoryMb, options: { ...options, threads },
        onStart: (p) => progress.start(p),
        onRecord: (r) => {
          records.push(r);
          if (out !== null) writeSync(out, recordLine(r));
          if (opts.json) process.stdout.write(recordLine(r));
          progress.finish(r.path, r.status);
        },
      });
    } finally {
      progress.stop();
    }
    if (out !== null) { closeSync(out); out = null; }
    return finish(mergeRecords([records]), gates, opts, { elapsedMs: performance.now() - t0, skipped: previous.size, printSummary: !opts.json });
  } catch (e) {
    if (out !== null) closeSync(out);
    return reportError(e, debug);
  }
}

/** `lipcheck merge FILE…`: joins batch outputs (shards) into one sorted list, with the same gates and reports. */
export async function runMerge(argv: readonly string[]): Promise<number> {
  const program = commandFor('merge', 'lipcheck merge', 'Join the JSON-lines outputs of several batch runs (shards) into one, sorted by path; a model in several files keeps its last record.', '\nExit codes: 0 merged (every gate passed), 1 a gate failed, 2 usage error or unreadable input.')
    .argument('<files...>', 'JSON-lines files written by lipcheck batch --out');
  let debug = argv.includes('--debug');
  try {
    const answered = parseArgs(program, argv);
    if (answered !== null) return answered;
    const opts = program.opts();
    debug = Boolean(opts.debug);
    const gates = gateOptions(opts);
    const lists = program.args.map((f) => {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch (e) {
        throw new LipcheckError('USAGE', `Cannot read '${f}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Give the files lipcheck batch --out wrote.`, { cause: e });
      }
      const parsed = parseRecords(text);
      if (parsed.badLines.length || parsed.truncated) process.stderr.write(`lipcheck: warning: ${f}: ${parsed.badLines.length + (parsed.truncated ? 1 : 0)} line(s) are not complete batch records and are ignored.\n`);
      return parsed.records;
    });
    const merged = mergeRecords(lists);
    const text = merged.map(recordLine).join('');
    if (opts.out) writeAtomically(opts.out, text);
    else if (opts.json) process.stdout.write(text);
    return finish(merged, gates, opts, { printSummary: !opts.json });
  } catch (e) {
    return reportError(e, debug);
  }
}
