/**
 * A batch worker process: analyses the models its parent (src/cli/batch.ts) sends over IPC, one at a time, and sends
 * back one BatchRecord each. It lives in src/cli because it owns a process; the parent kills it on a timeout or
 * when its memory passes the limit, and starts a fresh one.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { recordFromError, recordFromReport, type BatchRecord } from '../batch/record.js';
import { isLipcheckError } from '../errors.js';
import { analyze, type AnalyzeOptions } from '../index.js';
import { readModelBytes } from '../onnx/read-model.js';
import { EXIT, EXIT_FOR_ERROR } from './exit-codes.js';

/** A request from the parent. */
export interface WorkerRequest { readonly path: string; readonly options: AnalyzeOptions }
/** The answers to one request: `started` when the worker takes it (the timeout runs from there, not from the worker's own start-up), then its record. */
export type WorkerReply = { readonly path: string; readonly started: true } | { readonly path: string; readonly record: BatchRecord };

/** Resets the kernel's peak-RSS counter (Linux ≥ 4.0) so that VmHWM measures this model alone; false where it cannot. */
function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Peak resident memory in MiB since the last reset (VmHWM), or the process's lifetime peak elsewhere. */
function peakMb(): number | null {
  try {
    const m = /VmHWM:\s*(\d+)\s*kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Math.round(Number(m[1]) / 1024);
  } catch { /* not Linux: fall through */ }
  const kb = process.resourceUsage().maxRSS;
  return kb ? Math.round(kb / 1024) : null;
}

async function handle(req: WorkerRequest): Promise<BatchRecord> {
  const t0 = performance.now();
  resetPeak();
  const norm = req.options.norm ?? '2';
  let file: { sha256: string; bytes: number } | null = null;
  try {
    const bytes = readModelBytes(req.path);
    file = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
    const report = await analyze({ bytes, name: req.path }, req.options);
    return recordFromReport(report, req.path, performance.now() - t0, peakMb());
  } catch (e) {
    const error = isLipcheckError(e)
      ? { code: e.code, exit: EXIT_FOR_ERROR[e.code], message: e.message }
      : { code: 'INTERNAL' as const, exit: EXIT.INTERNAL, message: `internal error: ${(e as Error).message ?? String(e)}. This is a bug in lipcheck; please report it with the model.` };
    return recordFromError(req.path, file, error, norm, performance.now() - t0, peakMb());
  }
}

process.on('message', (req: WorkerRequest) => {
  process.send!({ path: req.path, started: true } satisfies WorkerReply);
  void handle(req).then((record) => process.send!({ path: req.path, record } satisfies WorkerReply));
});
process.on('disconnect', () => process.exit(0));
// Ctrl-C on a terminal reaches the whole process group: the parent stops the batch and kills its workers itself, so
// a worker must not die first and be recorded as a CRASH
process.on('SIGINT', () => {});
// the same for a SIGTERM sent to the group (a CI job cancelled); a worker whose parent is gone exits
process.on('SIGTERM', () => { if (!process.connected) process.exit(143); });
