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
 * baseline does not know, or knew without a bound, passes with a note.
 */
export function evaluateGates(records: readonly BatchRecord[], gates: Gates): GateResult[] | null {
  if (gates.max === undefined && gates.baseline === undefined) return null;
  const single = records.length === 1;
  return records.map((r) => {
    const checks: GateCheck[] = [];
    if (gates.max !== undefined) {
      const ok = r.status === 'bounded' && r.upper !== null && r.upper.value <= gates.max;
      checks.push({ gate: 'max', passed: ok, message: ok ? `upper bound ${fmt(r.upper!.value)} (${r.upper!.kind}) is within --max ${fmt(gates.max)}` : r.status === 'bounded' ? `upper bound ${fmt(r.upper!.value)} (${r.upper!.kind}) exceeds --max ${fmt(gates.max)}` : `the model ${outcome(r)}, so it has no bound to hold against --max ${fmt(gates.max)}` });
    }
    if (gates.baseline !== undefined) {
      const inc = gates.maxIncrease ?? 0;
      const b = findBaseline(gates.baseline, r.path, single);
      if (!b) checks.push({ gate: 'baseline', passed: true, message: 'the baseline has no entry for this model (new model): nothing to compare' });
      else if (b.status !== 'bounded' || !b.upper) checks.push({ gate: 'baseline', passed: true, message: `the baseline had no bound for this model (${b.status}): nothing to compare` });
      else if (r.status !== 'bounded' || !r.upper) checks.push({ gate: 'baseline', passed: false, message: `the model had upper bound ${fmt(b.upper.value)} in the baseline and now ${outcome(r)}` });
      else {
        const growth = r.upper.value / b.upper.value - 1;
        // equal runs reproduce the bound to the last bit; a relative 1e-9 absorbs printing round trips only
        const ok = growth <= inc + 1e-9;
        const pct = `${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(2)}%`;
        checks.push({ gate: 'baseline', passed: ok, message: `upper bound ${fmt(r.upper.value)} (${r.upper.kind}) against baseline ${fmt(b.upper.value)} (${b.upper.kind}): ${pct}, ${ok ? 'within' : 'more than'} the allowed --max-increase ${(inc * 100).toFixed(2).replace(/\.00$/, '')}%` });
      }
    }
    return { path: r.path, passed: checks.every((c) => c.passed), checks };
  });
}
