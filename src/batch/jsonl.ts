import { LipcheckError } from '../errors.js';
import type { BatchRecord } from './record.js';

/** Records read from a JSON-lines file, with the byte length of its complete lines and what was skipped. */
export interface ParsedRecords {
  /** Every record in file order, superseded ones included (`latestRecords` keeps the last of each path). */
  readonly records: BatchRecord[];
  /** Length in bytes of the prefix made of complete lines: an interrupted run is cut back to it before appending. */
  readonly validBytes: number;
  /** Lines that were not batch records (1-based line numbers), and whether the last line was cut off. */
  readonly badLines: readonly number[];
  readonly truncated: boolean;
}

function isRecord(x: unknown): x is BatchRecord {
  const r = x as BatchRecord;
  return typeof r === 'object' && r !== null && typeof r.path === 'string' && typeof r.status === 'string' && typeof r.schemaVersion === 'number';
}

/** True for the closing line of `lipcheck batch --json` on stdout (`{ schemaVersion, summary }`): not a record, not damage either. */
function isSummary(x: unknown): boolean {
  return typeof x === 'object' && x !== null && 'summary' in x && !('path' in x);
}

/**
 * Parses `lipcheck batch --out` output. Lines are cut on the raw bytes (0x0A), so `validBytes` is a byte offset
 * into the file whatever the text holds (an invalid UTF-8 sequence in one line cannot move the cut of another). A
 * last line without its newline (a run killed while writing) is dropped and reported as `truncated`; other lines
 * that are not records are listed in `badLines`, not fatal.
 */
export function parseRecords(data: Buffer | string): ParsedRecords {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const records: BatchRecord[] = [];
  const badLines: number[] = [];
  let offset = 0, validBytes = 0, truncated = false, line = 0;
  while (offset < buf.length) {
    line++;
    const nl = buf.indexOf(0x0a, offset);
    if (nl < 0) {
      truncated = buf.toString('utf8', offset).trim().length > 0;
      break;
    }
    const s = buf.toString('utf8', offset, nl).trim();
    offset = nl + 1;
    validBytes = offset;
    if (!s) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      parsed = null;
    }
    if (isRecord(parsed)) records.push(parsed);
    else if (!isSummary(parsed)) badLines.push(line);
  }
  return { records, validBytes, badLines, truncated };
}

/** The last record of each path, in the order of their last appearance: in a journal the latest record wins. */
export function latestRecords(records: readonly BatchRecord[]): BatchRecord[] {
  const byPath = new Map<string, BatchRecord>();
  for (const r of records) {
    byPath.delete(r.path);
    byPath.set(r.path, r);
  }
  return [...byPath.values()];
}

/** Serialises one record as a JSON line (stable key order: the record's own). */
export function recordLine(r: BatchRecord): string {
  return JSON.stringify(r) + '\n';
}

/**
 * Joins the records of several shard outputs into one list sorted by path. A model present more than once (in one
 * journal appended to by --resume, or in several inputs, read in order) keeps its last record, so a re-run shard
 * overrides an older one.
 */
export function mergeRecords(lists: readonly (readonly BatchRecord[])[]): BatchRecord[] {
  return latestRecords(lists.flat()).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** What a baseline says about one model: its status and upper bound. */
export interface BaselineEntry {
  readonly path: string;
  readonly sha256: string | null;
  readonly status: BatchRecord['status'];
  readonly upper: BatchRecord['upper'];
}

/**
 * Reads a baseline for `--baseline`: a single-model JSON report (`lipcheck --json`) or batch JSON lines (`--out`).
 * `file` names it in errors.
 */
export function parseBaseline(text: string, file: string): BaselineEntry[] {
  const trimmed = text.trim();
  if (!trimmed) throw new LipcheckError('USAGE', `Baseline '${file}' is empty. Give a report written by 'lipcheck --json' or a batch output written by 'lipcheck batch --out'.`);
  let single: unknown = null;
  try {
    single = JSON.parse(trimmed);
  } catch {
    single = null;
  }
  const s = single as { schemaVersion?: number; model?: { path?: string; sha256?: string }; global?: { status?: string; upper?: BatchRecord['upper'] } } | null;
  if (s && typeof s === 'object' && s.model && s.global && typeof s.global.status === 'string') {
    return [{ path: s.model.path ?? file, sha256: s.model.sha256 ?? null, status: s.global.status as BaselineEntry['status'], upper: s.global.upper ?? null }];
  }
  if (isRecord(single)) return [single];
  const parsed = parseRecords(trimmed + '\n');
  if (parsed.records.length === 0) {
    throw new LipcheckError('USAGE', `Baseline '${file}' is neither a lipcheck JSON report nor lipcheck batch JSON lines (line ${parsed.badLines[0] ?? 1} is not a record). Give the file written by 'lipcheck --json' or 'lipcheck batch --out'.`);
  }
  if (parsed.badLines.length) {
    throw new LipcheckError('USAGE', `Baseline '${file}' is damaged: line${parsed.badLines.length > 1 ? 's' : ''} ${parsed.badLines.slice(0, 5).join(', ')} ${parsed.badLines.length > 1 ? 'are' : 'is'} not a batch record, so the models on ${parsed.badLines.length > 1 ? 'them' : 'it'} would escape the gate. Rewrite it with 'lipcheck merge ${file} --out FILE' after removing the damaged lines, or rerun the baseline batch.`);
  }
  // a journal appended to by --resume may hold several records of one model: the latest is the baseline
  return latestRecords(parsed.records).map((r) => ({ path: r.path, sha256: r.sha256, status: r.status, upper: r.upper }));
}
