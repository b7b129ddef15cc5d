/**
 * The fuzz runner: `npm run fuzz -- --count 20000 [--first 0] [--jobs 1] [--batch 200] [--hang-ms 300000] [--save DIR]`.
 * Runs seeded mutations of the fixtures (test/helpers/fuzz-worker.ts) in child processes, BATCH per process and JOBS
 * processes at a time. A mutation that gives no result within --hang-ms is a hang: its process is killed and the
 * batch goes on from the next mutation in a new process; a process that dies mid-mutation is a crash (exit 70).
 * Prints the count of each exit code the CLI would give, every exit 70 and hang with the command that reproduces it,
 * and exits 1 when there was any. The watchdog only detects hangs: it never decides how much work a mutation does.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const WORKER = fileURLToPath(new URL('../test/helpers/fuzz-worker.ts', import.meta.url));

/** One mutation's result line (see fuzz-worker.ts), or a hang / a dead worker recorded by the runner. */
export interface FuzzLine {
  readonly i: number;
  readonly file?: string;
  readonly mutation?: string;
  readonly outcome: string;
  readonly code?: string;
  readonly exit: number | 'hang';
  readonly message?: string;
  readonly ms?: number;
}

export interface FuzzOptions {
  readonly first: number;
  readonly count: number;
  readonly jobs: number;
  readonly batch: number;
  /** No result for this long: the mutation hangs. */
  readonly hangMs: number;
  readonly onLine?: (l: FuzzLine) => void;
}

export interface FuzzSummary {
  readonly total: number;
  /** Mutations per exit code ('hang' included). */
  readonly byExit: Record<string, number>;
  /** Mutations per outcome: bounded, unbounded, discontinuous, error:CODE, crash, hang, worker-died. */
  readonly byOutcome: Record<string, number>;
  /** Every exit 70 and hang. */
  readonly failures: readonly FuzzLine[];
  readonly ms: number;
}

/** Runs mutations first..first+count−1 of one batch, restarting after a hang or a dead worker; resolves every line. */
function runBatch(first: number, count: number, hangMs: number, onLine: (l: FuzzLine) => void): Promise<void> {
  return new Promise((done) => {
    let next = first;
    const end = first + count;
    const start = () => {
      if (next >= end) { done(); return; }
      const child = spawn(process.execPath, ['--import', 'tsx', WORKER, String(next), String(end - next)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let buffer = '', stderr = '', running: number | null = null, settled = false;
      let timer: NodeJS.Timeout | null = null;
      const arm = () => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          if (running === null) return;
          onLine({ i: running, outcome: 'hang', exit: 'hang', message: `no result after ${hangMs} ms` });
          next = running + 1;
          settled = true;
          child.kill('SIGKILL');
        }, hangMs);
      };
      child.stdout.on('data', (d: Buffer) => {
        buffer += d.toString('utf8');
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const text = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!text.startsWith('{')) continue;
          const l = JSON.parse(text) as FuzzLine & { start?: boolean };
          if (l.start) { running = l.i; arm(); continue; }
          running = null;
          next = l.i + 1;
          onLine(l);
        }
      });
      child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString('utf8')).slice(-2000); });
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        if (!settled && running !== null) {
          // the worker died inside a mutation (a native crash, the OOM killer): exit 70 for that mutation
          onLine({ i: running, outcome: 'worker-died', exit: 70, message: `worker ended (code ${code}, signal ${signal}) during this mutation: ${stderr.slice(-300)}` });
          next = running + 1;
        } else if (!settled && next < end) {
          onLine({ i: next, outcome: 'worker-died', exit: 70, message: `worker ended (code ${code}, signal ${signal}) before this mutation: ${stderr.slice(-300)}` });
          next += 1;
        }
        start();
      });
    };
    start();
  });
}

/** Runs `count` seeded mutations from `first` in batches over `jobs` worker processes at a time. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const t0 = Date.now();
  const byExit: Record<string, number> = {}, byOutcome: Record<string, number> = {};
  const failures: FuzzLine[] = [];
  const batches: [number, number][] = [];
  for (let s = o.first; s < o.first + o.count; s += o.batch) batches.push([s, Math.min(o.batch, o.first + o.count - s)]);
  const record = (l: FuzzLine) => {
    byExit[String(l.exit)] = (byExit[String(l.exit)] ?? 0) + 1;
    const key = l.outcome === 'error' ? `error:${l.code}` : l.outcome;
    byOutcome[key] = (byOutcome[key] ?? 0) + 1;
    if (l.exit === 70 || l.exit === 'hang') failures.push(l);
    o.onLine?.(l);
  };
  let taken = 0;
  const lane = async () => {
    while (taken < batches.length) {
      const [first, count] = batches[taken++];
      await runBatch(first, count, o.hangMs, record);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.jobs) }, lane));
  return { total: Object.values(byExit).reduce((a, b) => a + b, 0), byExit, byOutcome, failures: failures.sort((a, b) => a.i - b.i), ms: Date.now() - t0 };
}

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\nUsage: npm run fuzz -- --count N [--first K] [--jobs J] [--batch B] [--hang-ms MS] [--save DIR]\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '2000' }, first: { type: 'string', default: '0' }, jobs: { type: 'string', default: '1' },
      batch: { type: 'string', default: '200' }, 'hang-ms': { type: 'string', default: '300000' }, save: { type: 'string' }, quiet: { type: 'boolean', default: false },
    },
  });
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) usage(`--${name} must be an integer ≥ ${min}; got '${v}'.`);
    return n;
  };
  const o = {
    count: int('count', values.count!, 1), first: int('first', values.first!, 0), jobs: int('jobs', values.jobs!, 1),
    batch: int('batch', values.batch!, 1), hangMs: int('hang-ms', values['hang-ms']!, 1000),
  };
  let seen = 0;
  const slowest: FuzzLine[] = [];
  const summary = await runFuzz({
    ...o,
    onLine: (l) => {
      seen++;
      if (typeof l.ms === 'number') { slowest.push(l); slowest.sort((a, b) => b.ms! - a.ms!); slowest.length = Math.min(slowest.length, 5); }
      if (l.exit === 70 || l.exit === 'hang') process.stderr.write(`\n${l.exit === 'hang' ? 'HANG' : 'EXIT 70'} #${l.i} ${l.file ?? ''} ${l.mutation ?? ''}: ${l.message ?? ''}\n`);
      if (!values.quiet && (seen % 100 === 0 || seen === o.count)) process.stderr.write(`fuzz: ${seen}/${o.count}\r`);
    },
  });
  process.stdout.write(`\nfuzz: ${summary.total} mutations from #${o.first} in ${(summary.ms / 1000).toFixed(0)} s (${o.jobs} job${o.jobs === 1 ? '' : 's'})\n`);
  process.stdout.write(`by exit code: ${Object.entries(summary.byExit).sort().map(([k, v]) => `${k}: ${v}`).join(', ')}\n`);
  process.stdout.write(`by outcome:   ${Object.entries(summary.byOutcome).sort().map(([k, v]) => `${k}: ${v}`).join(', ')}\n`);
  const exit70 = summary.failures.filter((f) => f.exit === 70).length, hangs = summary.failures.length - exit70;
  process.stdout.write(`exit 70: ${exit70}, hangs: ${hangs} (no result within ${o.hangMs} ms of wall time)\n`);
  process.stdout.write(`slowest: ${slowest.map((l) => `#${l.i} ${l.file} ${l.mutation} ${l.ms} ms`).join('; ')}\n`);
  if (summary.failures.length) {
    const { mutate } = await import('../test/helpers/fuzz-worker.js');
    const dir = values.save ? resolve(values.save) : null;
    if (dir) mkdirSync(dir, { recursive: true });
    for (const f of summary.failures) {
      const m = mutate(f.i);
      const saved = dir ? join(dir, `fuzz-${f.i}.onnx`) : null;
      if (saved) writeFileSync(saved, m.bytes);
      process.stdout.write(`  #${f.i} ${m.file} ${m.mutation} → ${f.exit === 'hang' ? 'hang' : `exit 70 (${f.outcome})`}: ${f.message ?? ''}\n    reproduce: npm run fuzz -- --first ${f.i} --count 1${saved ? `; lipcheck ${saved}` : ' --save DIR'}\n`);
    }
  }
  process.exitCode = summary.failures.length ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) await main();
