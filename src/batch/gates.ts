import { basename, normalize } from 'node:path';
import type { BaselineEntry } from './jsonl.js';
import type { BatchRecord, GateCheck, GateResult } from './record.js';

/** The CI gates of one run: an absolute limit and/or growth against a baseline. */
export interface Gates {
  /** `--max L`: the upper bound must be at most L. */
  readonly max?: number;
  /** `--baseline FILE`: earlier results to compare with. */
  readonly baseline?: readonly BaselineEntry[];
  /** `--max-increase`: allowed relative growth of the bound over the baseline (0.1 = 10 %). */
  readonly maxIncrease?: number;
}

/** Parses `--max-increase`: a percentage, '10%' or '10' (both 10 %), never negative. */
export function parsePercent(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*%?\s*$/.exec(text);
  return m ? Number(m[1]) / 100 : null;
}

const fmt = (x: number) => (Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(4) : String(Number(x.toPrecision(6))));

function outcome(r: BatchRecord): string {
  if (r.status === 'error') return `could not be analysed (${r.error?.code ?? 'error'}: ${r.error?.message ?? 'unknown error'})`;
  if (r.status !== 'bounded') return `is ${r.status}${r.reasons.length ? ` (${r.reasons.map((x) => `${x.opType} '${x.node}'`).slice(0, 3).join(', ')})` : ''}`;
  return `has upper bound ${fmt(r.upper!.value)} (${r.upper!.kind})`;
}

/**
 * The baseline entry of a model: the same path, else the only entry with the same file name, else — when the
 * baseline describes exactly one model and so does the run (`single`) — that entry.
 */
export function findBaseline(baseline: readonly BaselineEntry[], path: string, single: boolean): BaselineEntry | null {
  const p = normalize(path);
  const exact = baseline.find((b) => normalize(b.path) === p);
  if (exact) return exact;
  const sameName = baseline.filter((b) => basename(b.path) === basename(p));
  if (sameName.length === 1) return sameName[0];
  return single && baseline.length === 1 ? baseline[0] : null;
}

/**
 * Each model's verdict under the gates (null when no gate is set). A model without an upper bound (unbounded,
 * discontinuous, or not analysed) fails `--max`: the gate asks for a promise it cannot give. Against a baseline, a
 * model fails when its bound grew by more than `maxIncrease` or when it was bounded and no longer is; a model the
 * baseline does not know, or knew without a bound, passes with a note (`compareBaseline` counts them).
 * `single` (default: one record) lets a lone model match a one-model baseline whatever their paths.
 */
export function evaluateGates(records: readonly BatchRecord[], gates: Gates, single = records.length === 1): GateResult[] | null {
  if (gates.max === undefined && gates.baseline === undefined) return null;
  return records.map((r) => {
    const checks: GateCheck[] = [];
    const upper = r.status === 'bounded' && r.upper !== null ? r.upper.value : null;
    if (gates.max !== undefined) {
      const ok = upper !== null && upper <= gates.max;
      checks.push({ gate: 'max', passed: ok, limit: gates.max, value: upper, message: ok ? `upper bound ${fmt(r.upper!.value)} (${r.upper!.kind}) is within --max ${fmt(gates.max)}` : upper !== null ? `upper bound ${fmt(r.upper!.value)} (${r.upper!.kind}) exceeds --max ${fmt(gates.max)}` : `the model ${outcome(r)}, so it has no bound to hold against --max ${fmt(gates.max)}` });
    }
    if (gates.baseline !== undefined) {
      const inc = gates.maxIncrease ?? 0;
      const b = findBaseline(gates.baseline, r.path, single);
      const check = { gate: 'baseline' as const, limit: inc };
      if (!b) checks.push({ ...check, passed: true, value: null, message: 'the baseline has no entry for this model (new model): nothing to compare' });
      else if (b.status !== 'bounded' || !b.upper) checks.push({ ...check, passed: true, value: null, message: `the baseline had no bound for this model (${b.status}): nothing to compare` });
      else if (upper === null) checks.push({ ...check, passed: false, value: null, message: `the model had upper bound ${fmt(b.upper.value)} in the baseline and now ${outcome(r)}` });
      else {
        const growth = upper / b.upper.value - 1;
        // equal runs reproduce the bound to the last bit; a relative 1e-9 absorbs printing round trips only
        const ok = growth <= inc + 1e-9;
        const pct = `${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(2)}%`;
        checks.push({ ...check, passed: ok, value: growth, message: `upper bound ${fmt(upper)} (${r.upper!.kind}) against baseline ${fmt(b.upper.value)} (${b.upper.kind}): ${pct}, ${ok ? 'within' : 'more than'} the allowed --max-increase ${(inc * 100).toFixed(2).replace(/\.00$/, '')}%` });
      }
    }
    return { path: r.path, passed: checks.every((c) => c.passed), checks };
  });
}

/** How a run lines up with its baseline: models compared, models the baseline does not know, baseline models not in the run. */
export interface BaselineComparison {
  /** Models of the run with a baseline entry. */
  readonly compared: number;
  /** Paths of the run's models the baseline has no entry for. */
  readonly added: readonly string[];
  /** Paths of baseline entries no model of the run matched (models removed, renamed, or outside this shard). */
  readonly missing: readonly string[];
}

/** Matches a run's models with its baseline (the rules of `findBaseline`), for the counts CI logs show. */
export function compareBaseline(records: readonly BatchRecord[], baseline: readonly BaselineEntry[], single = records.length === 1): BaselineComparison {
  const used = new Set<BaselineEntry>();
  const added: string[] = [];
  for (const r of records) {
    const b = findBaseline(baseline, r.path, single);
    if (b) used.add(b);
    else added.push(r.path);
  }
  return { compared: records.length - added.length, added, missing: baseline.filter((b) => !used.has(b)).map((b) => b.path) };
}

/** One gate in `--json` output: `passed` means value ≤ limit (a comparison with nothing to compare passes, value null). */
export interface GateJson {
  /** `max` (value: the upper bound), `max-increase` (value: relative growth over the baseline, 0.1 = +10 %), `missing` (value: baseline models absent from the run, with --fail-on-missing). */
  readonly name: 'max' | 'max-increase' | 'missing';
  readonly limit: number;
  readonly value: number | null;
  readonly passed: boolean;
  readonly message: string;
}

/** One model's gate verdicts as `--json` carries them (`gates: [{ name, limit, value, passed, message }]`). */
export function gatesJson(result: GateResult | null | undefined): GateJson[] {
  return (result?.checks ?? []).map((c) => ({ name: c.gate === 'max' ? 'max' : 'max-increase', limit: c.limit ?? 0, value: c.value ?? null, passed: c.passed, message: c.message }));
}

/** The run-level gate of `--fail-on-missing`: every baseline model must be in the run. */
export function missingGate(comparison: BaselineComparison): GateJson {
  const n = comparison.missing.length;
  return { name: 'missing', limit: 0, value: n, passed: n === 0, message: n === 0 ? 'every model of the baseline is in this run' : `${n} model${n === 1 ? '' : 's'} of the baseline ${n === 1 ? 'is' : 'are'} not in this run (${comparison.missing.slice(0, 5).join(', ')}${n > 5 ? ', …' : ''})` };
}
