import { latestRecords } from './jsonl.js';
import type { BatchLimits, BatchRecord } from './record.js';

/** What `--resume` does with the records of an earlier run. */
export interface ResumePlan {
  /** Latest records kept as they are (their model is in this run and unchanged). */
  readonly keep: readonly BatchRecord[];
  /** Models to analyse, in the run's order: never recorded, changed since, or failed and retried. */
  readonly todo: readonly string[];
  /** Models whose file changed since their record (sha256 differs): analysed again, the new record supersedes the old. */
  readonly changed: readonly string[];
  /** Failed models analysed again, with the reason (a raised limit or --retry-failed). */
  readonly retried: readonly { readonly path: string; readonly code: string; readonly why: string }[];
  /** TIMEOUT, MEMORY and CRASH records kept because no limit was raised (--retry-failed would retry them). */
  readonly keptFailures: readonly { readonly path: string; readonly code: string }[];
  /** Recorded models that are not in this run and whose file is gone: reported, their records stay in the journal. */
  readonly removed: readonly string[];
}

/** The limit a TIMEOUT or MEMORY record ran under; older records only say it in their message. */
function recordedLimits(r: BatchRecord): Partial<BatchLimits> {
  if (r.error?.limits) return r.error.limits;
  const t = /--timeout (\d+(?:\.\d+)?) s/.exec(r.error?.message ?? '');
  const m = /--max-memory (\d+(?:\.\d+)?) MiB/.exec(r.error?.message ?? '');
  return { timeoutS: t ? Number(t[1]) : undefined, maxMemoryMb: m ? Number(m[1]) : undefined };
}

/**
 * Why a failed record should be analysed again under `now`, or null to keep it: TIMEOUT when --timeout was raised
 * (or removed: 0), MEMORY when --max-memory was raised, CRASH when either was (a dying worker is often the kernel's
 * out-of-memory killer); every error with `retryFailed`.
 */
export function retryReason(r: BatchRecord, now: BatchLimits, retryFailed: boolean): string | null {
  if (r.status !== 'error') return null;
  const code = r.error?.code;
  const was = recordedLimits(r);
  const timeoutRaised = was.timeoutS !== undefined && was.timeoutS > 0 && (now.timeoutS === 0 || now.timeoutS > was.timeoutS);
  const memoryRaised = was.maxMemoryMb !== undefined && now.maxMemoryMb > was.maxMemoryMb;
  if (code === 'TIMEOUT' && timeoutRaised) return `--timeout raised from ${was.timeoutS} s to ${now.timeoutS === 0 ? 'none' : `${now.timeoutS} s`}`;
  if (code === 'MEMORY' && memoryRaised) return `--max-memory raised from ${was.maxMemoryMb} MiB to ${now.maxMemoryMb} MiB`;
  if (code === 'CRASH' && (timeoutRaised || memoryRaised)) return timeoutRaised ? '--timeout raised' : '--max-memory raised';
  return retryFailed ? '--retry-failed' : null;
}

/**
 * Plans `--resume` from the records of an earlier run (the latest record of each path wins): a model keeps its
 * record when the file's sha256 (`hashOf`, null when unreadable) still matches and the record is not to be retried;
 * every other model of `models` is analysed. `exists` tells removed models from models merely outside this run.
 */
export function planResume(records: readonly BatchRecord[], models: readonly string[], hashOf: (path: string) => string | null, now: BatchLimits, retryFailed: boolean, exists: (path: string) => boolean): ResumePlan {
  const latest = new Map(latestRecords(records).map((r) => [r.path, r]));
  const keep: BatchRecord[] = [];
  const todo: string[] = [];
  const changed: string[] = [];
  const retried: { path: string; code: string; why: string }[] = [];
  const keptFailures: { path: string; code: string }[] = [];
  const wanted = new Set(models);
  for (const m of models) {
    const r = latest.get(m);
    if (!r) {
      todo.push(m);
      continue;
    }
    if (r.sha256 !== hashOf(m)) {
      changed.push(m);
      todo.push(m);
      continue;
    }
    const why = retryReason(r, now, retryFailed);
    if (why) {
      retried.push({ path: m, code: r.error?.code ?? 'error', why });
      todo.push(m);
    } else {
      keep.push(r);
      if (r.error && ['TIMEOUT', 'MEMORY', 'CRASH'].includes(r.error.code)) keptFailures.push({ path: m, code: r.error.code });
    }
  }
  const removed = [...latest.keys()].filter((p) => !wanted.has(p) && !exists(p));
  return { keep, todo, changed, retried, keptFailures, removed };
}
