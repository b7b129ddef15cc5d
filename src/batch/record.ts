import type { ErrorCode } from '../errors.js';
import type { Reason } from '../estimators/autolip.js';
import type { Bound } from '../estimators/kinds.js';
import type { LipschitzReport } from '../report/report.js';

/** Version of one batch record (a line of `lipcheck batch --out`); bump on any breaking change (docs/json-schema.md). */
export const BATCH_SCHEMA_VERSION = 1;

/** Failures that belong to a batch run rather than to the analysis: the per-model time limit, the memory guard, a worker that died. */
export type BatchErrorCode = ErrorCode | 'TIMEOUT' | 'MEMORY' | 'CRASH';

/** The run's limits when a worker was stopped or died: `--resume` retries the model when a limit was raised since. */
export interface BatchLimits {
  /** `--timeout` in seconds (0: none). */
  readonly timeoutS: number;
  /** `--max-memory` in MiB. */
  readonly maxMemoryMb: number;
}

/** Why a model has no result; `limits` only on TIMEOUT, MEMORY and CRASH records. */
export interface BatchError {
  readonly code: BatchErrorCode;
  readonly exit: number;
  readonly message: string;
  readonly limits?: BatchLimits;
}

/** The outcome of one model in a batch: a bound, a reason the model has none, or why it could not be analysed. */
export interface BatchRecord {
  readonly schemaVersion: number;
  /** The path as discovered from the command line (relative paths stay relative, so shards on other machines agree). */
  readonly path: string;
  /** sha256 of the file's bytes; null when the file could not be read. */
  readonly sha256: string | null;
  readonly bytes: number | null;
  readonly status: 'bounded' | 'unbounded' | 'discontinuous' | 'error';
  /** The global upper bound (certified or probabilistic, never an estimate); null unless bounded. */
  readonly upper: Bound | null;
  /** The witnessed lower bound. */
  readonly lower: number | null;
  /** AutoLip with per-operator estimates: no guarantee. */
  readonly estimate: number | null;
  readonly failureProbability: number | null;
  readonly norm: string;
  /** The nodes behind `unbounded` or `discontinuous`. */
  readonly reasons: readonly Reason[];
  readonly error: BatchError | null;
  readonly warnings: number;
  /** Wall time for this model, including the worker's load of the file. */
  readonly ms: number;
  /** Peak resident memory of the worker process during this model (MiB); null where the platform does not say. */
  readonly peakRssMb: number | null;
}

/** The batch record of a finished analysis. */
export function recordFromReport(report: LipschitzReport, path: string, ms: number, peakRssMb: number | null): BatchRecord {
  const g = report.global;
  return {
    schemaVersion: BATCH_SCHEMA_VERSION,
    path,
    sha256: report.model.sha256,
    bytes: report.model.bytes,
    status: g.status,
    upper: g.upper,
    lower: g.lower?.value ?? null,
    estimate: g.estimate,
    failureProbability: g.upper?.kind === 'probabilistic' ? g.failureProbability : null,
    norm: report.norm,
    reasons: g.reasons,
    error: null,
    warnings: report.warnings.length,
    ms,
    peakRssMb,
  };
}

/** The batch record of a model that could not be analysed. */
export function recordFromError(path: string, file: { sha256: string; bytes: number } | null, error: BatchError, norm: string, ms: number, peakRssMb: number | null): BatchRecord {
  return {
    schemaVersion: BATCH_SCHEMA_VERSION,
    path,
    sha256: file?.sha256 ?? null,
    bytes: file?.bytes ?? null,
    status: 'error',
    upper: null,
    lower: null,
    estimate: null,
    failureProbability: null,
    norm,
    reasons: [],
    error,
    warnings: 0,
    ms,
    peakRssMb,
  };
}

/** One gate's verdict on one model (`--max`, `--baseline` with `--max-increase`). */
export interface GateCheck {
  readonly gate: 'max' | 'baseline';
  readonly passed: boolean;
  /** What was held against what: `max`: the upper bound (null: none) and --max; `baseline`: the bound's relative growth over the baseline's (0.1 = +10 %; null: nothing to compare) and --max-increase as a fraction. Passed means value ≤ limit (or nothing to compare). */
  readonly limit?: number;
  readonly value?: number | null;
  /** A full sentence, e.g. "upper bound 12.3 (certified) exceeds --max 10". */
  readonly message: string;
}

/** All gate verdicts on one model; `passed` when every check passed (a model with no checks passes). */
export interface GateResult {
  readonly path: string;
  readonly passed: boolean;
  readonly checks: readonly GateCheck[];
}
