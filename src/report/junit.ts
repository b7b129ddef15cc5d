import type { BatchRecord, GateResult } from '../batch/record.js';
import { escapeAttr, escapeText } from './escape.js';
import { formatNumber } from './table.js';

const text = escapeText;
const attr = escapeAttr;

function seconds(ms: number): string {
  return Number.isFinite(ms) && ms > 0 ? (ms / 1000).toFixed(3) : '0.000';
}

function normName(norm: string): string {
  return norm === 'inf' ? 'ℓ∞' : norm === '2' ? 'ℓ2' : norm;
}

function outcomeLines(r: BatchRecord): string[] {
  const lines: string[] = [];
  const norm = normName(r.norm);
  if (r.status === 'bounded') {
    if (r.upper) {
      const risk = r.upper.kind === 'probabilistic' && r.failureProbability !== null ? `, fails with probability at most ${formatNumber(r.failureProbability)}` : '';
      lines.push(`Global Lipschitz bound (${norm}): ${formatNumber(r.upper.value)} [${r.upper.kind}, ${r.upper.method}${risk}].`);
    } else {
      lines.push(`The model is bounded (${norm}), but the record carries no upper bound.`);
    }
  } else {
    lines.push(`Global Lipschitz constant (${norm}): ${r.status}.`);
    for (const x of r.reasons) lines.push(`${x.opType} node '${x.node}' ${x.reason}.`);
  }
  if (r.lower !== null) {
    const ratio = r.upper && r.lower > 0 ? `; upper/lower = ${formatNumber(r.upper.value / r.lower)}` : '';
    lines.push(`Witnessed lower bound: ${formatNumber(r.lower)}${ratio}.`);
  }
  if (r.estimate !== null) lines.push(`AutoLip with per-operator estimates (no guarantee): ${formatNumber(r.estimate)}.`);
  if (r.warnings > 0) lines.push(`The analysis gave ${r.warnings} warning${r.warnings === 1 ? '' : 's'}.`);
  return lines;
}

function testcase(r: BatchRecord, gate: GateResult | undefined): { xml: string; failed: boolean; errored: boolean } {
  const head = `    <testcase classname="lipcheck" name="${attr(r.path)}" time="${seconds(r.ms)}"`;
  if (r.status === 'error') {
    const code = r.error?.code ?? 'INTERNAL';
    const message = r.error?.message ?? 'The model could not be analysed, and the record gives no reason.';
    const gateLines = gate?.checks.filter((c) => !c.passed).map((c) => `Gate ${c.gate} failed: ${c.message}`) ?? [];
    const body = [message, ...(r.error ? [`Exit code ${r.error.exit}.`] : []), ...gateLines].join('\n');
    return { xml: `${head}>\n      <error type="${attr(code)}" message="${attr(message)}">${text(body)}</error>\n    </testcase>`, failed: false, errored: true };
  }
  const parts: string[] = [];
  const failedChecks = gate?.checks.filter((c) => !c.passed) ?? [];
  const failed = gate !== undefined && !gate.passed;
  if (gate && !gate.passed) {
    const message = failedChecks.length ? failedChecks.map((c) => c.message).join('; ') : 'A gate failed without a message.';
    const types = [...new Set(failedChecks.map((c) => c.gate))].join(',') || 'gate';
    const body = gate.checks.map((c) => `${c.passed ? 'passed' : 'FAILED'} (${c.gate}): ${c.message}`).join('\n');
    parts.push(`      <failure type="${attr(types)}" message="${attr(message)}">${text(body)}</failure>`);
  }
  const out = outcomeLines(r);
  if (gate && !failed) for (const c of gate.checks) out.push(`Gate ${c.gate} passed: ${c.message}`);
  parts.push(`      <system-out>${text(out.join('\n'))}</system-out>`);
  return { xml: `${head}>\n${parts.join('\n')}\n    </testcase>`, failed, errored: false };
}

/** A baseline model absent from the run, under `--fail-on-missing`: a failed testcase, so CI's test view shows it. */
function missingCase(path: string): { xml: string; failed: boolean; errored: boolean } {
  const message = `The model is in the baseline but not in this run (removed, renamed, or outside the paths given), and --fail-on-missing is set.`;
  return { xml: `    <testcase classname="lipcheck" name="${attr(path)}" time="0.000">\n      <failure type="missing" message="${attr(message)}">${text(message)}</failure>\n    </testcase>`, failed: true, errored: false };
}

/**
 * Renders a batch run as JUnit XML: one testcase per model; a failed gate is a failure, a model that could not be
 * analysed an error; `missing` (baseline models absent from the run, with --fail-on-missing) are failures too.
 */
export function renderJunit(records: readonly BatchRecord[], gates: readonly GateResult[] | null, suiteName = 'lipcheck', missing: readonly string[] = []): string {
  const byPath = new Map<string, GateResult>();
  for (const g of gates ?? []) byPath.set(g.path, g);
  const cases = [...records.map((r) => testcase(r, byPath.get(r.path))), ...missing.map(missingCase)];
  const failures = cases.filter((c) => c.failed).length;
  const errors = cases.filter((c) => c.errored).length;
  const totalMs = records.reduce((s, r) => s + (Number.isFinite(r.ms) && r.ms > 0 ? r.ms : 0), 0);
  const counts = `tests="${cases.length}" failures="${failures}" errors="${errors}" skipped="0" time="${seconds(totalMs)}"`;
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="${attr(suiteName)}" ${counts}>`, `  <testsuite name="${attr(suiteName)}" ${counts}>`];
  for (const c of cases) lines.push(c.xml);
  lines.push('  </testsuite>', '</testsuites>');
  return lines.join('\n') + '\n';
}
