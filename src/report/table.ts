import { Chalk } from 'chalk';
import type { Bound } from '../estimators/kinds.js';
import type { BatchRecord, GateResult } from '../batch/record.js';
import type { LipschitzReport } from './report.js';

/** Formats a number for the table: 4 significant digits, exponent form outside [1e-3, 1e5). */
export function formatNumber(x: number | null | undefined): string {
  if (x === null || x === undefined) return '—';
  if (!Number.isFinite(x)) return '∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e5 || a < 1e-3 ? x.toExponential(3) : x.toPrecision(4);
}

function shape(s: readonly number[]): string {
  return s.length ? s.join('×') : 'scalar';
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(1)}s` : `${Math.round(x)}ms`;
}

/** Renders the human-readable report; `color` false gives plain text. */
export function renderTable(report: LipschitzReport, color: boolean): string {
  const c = new Chalk({ level: color ? 1 : 0 });
  const kindColor = (b: Bound | null) => (b === null ? c.dim : b.kind === 'certified' || b.kind === 'exact' ? c.green : b.kind === 'probabilistic' ? c.cyan : b.kind === 'lower' ? c.blue : c.yellow);
  const norm = report.norm === 'inf' ? 'ℓ∞' : 'ℓ2';
  const lines: string[] = [];
  lines.push(c.bold(`lipcheck ${report.tool.version}`) + ` — ${report.model.path} (opset ${report.model.opset}, sha256 ${report.model.sha256.slice(0, 12)})`);
  lines.push(`input '${report.input.name}' [${report.input.shape.join(', ')}] → output '${report.output.name}' [${report.output.shape.join(', ')}], norm ${norm}`);
  lines.push('');
  const header = ['#', 'layer', 'ops', 'ONNX nodes', 'shape in → out', 'estimate', 'upper', 'kind', 'method', 'iters', 'time'];
  const rows = report.layers.map((l, i) => [
    String(i + 1), l.id, clip(l.opTypes.join('+'), 24), clip(l.nodes.length > 2 ? `${l.nodes[0]} … ${l.nodes[l.nodes.length - 1]} (${l.nodes.length})` : l.nodes.join(', '), 36),
    clip(`${shape(l.inShape)} → ${shape(l.outShape)}`, 30), formatNumber(l.estimate), l.kind === 'unbounded' || l.kind === 'discontinuous' ? l.kind : formatNumber(l.upper?.value),
    l.upper?.kind ?? '', l.upper?.method ?? (l.kind === 'merge' ? 'composition' : ''), l.iterations ? String(l.iterations) : '', l.kind === 'operator' ? ms(l.ms) : '',
  ]);
  const widths = header.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const numeric = (j: number) => (j >= 5 && j <= 6) || j >= 9;
  const pad = (cells: string[], paint: (j: number, s: string) => string = (_j, x) => x) => cells.map((x, j) => paint(j, numeric(j) ? x.padStart(widths[j]) : x.padEnd(widths[j]))).join('  ').trimEnd();
  lines.push(c.bold(pad(header)));
  report.layers.forEach((l, i) => {
    if (l.kind === 'unbounded' || l.kind === 'discontinuous') lines.push(c.red(pad(rows[i])));
    else if (!l.upper) lines.push(c.dim(pad(rows[i])));
    else lines.push(pad(rows[i], (j, x) => (j === 7 ? kindColor(l.upper)(x) : x)));
  });
  lines.push('');
  const g = report.global;
  if (g.status !== 'bounded') {
    lines.push(c.red.bold(`Global Lipschitz constant (${norm}): ${g.status}`));
    for (const r of g.reasons) lines.push(c.red(`  ${r.opType} node '${r.node}' ${r.reason}.`));
    if (g.status === 'discontinuous') lines.push('  A discontinuous function has no Lipschitz constant; to bound the scores before it, export them as a graph output and pass --output NAME.');
  } else if (g.upper) {
    lines.push(c.bold(`Global Lipschitz bound (${norm}): ${formatNumber(g.upper.value)}`) + `  [${kindColor(g.upper)(g.upper.kind)}, ${g.upper.method}]`);
    if (g.upper.kind === 'probabilistic') lines.push(`  holds except with probability ≤ ${formatNumber(g.failureProbability)} (δ = ${report.settings.delta} per probabilistic operator, union bound)`);
    if (g.lower) lines.push(`  witnessed lower bound: ${formatNumber(g.lower.value)} (${g.lower.method}, ${g.lower.evaluations} runs of the original model)` + (g.ratio ? `; upper/lower = ${formatNumber(g.ratio)}` : ''));
    if (g.methods.length > 1) lines.push(`  by method: ${g.methods.map((m) => (m.upper ? `${m.method} ${formatNumber(m.upper.value)} (${m.upper.kind})` : `${m.method} ${formatNumber(m.estimate)} (estimate, no guarantee)`)).join(' · ')}`);
    if (g.estimate !== null) lines.push(c.dim(`  AutoLip with per-operator estimates (no guarantee): ${formatNumber(g.estimate)}`));
  }
  // the report's warnings go to stderr (the CLI prints them): stdout carries the report alone (README, first section)
  lines.push(c.dim(`time ${ms(report.timings.totalMs)} (load ${ms(report.timings.loadMs)}, build ${ms(report.timings.buildMs)}, norms ${ms(report.timings.normsMs)}, lower bound ${ms(report.timings.lowerMs)}) on ${report.settings.provider}${report.resources?.peakRssMb ? `, peak memory ${report.resources.peakRssMb} MB` : ''}`));
  return lines.join('\n') + '\n';
}

/** Renders the end-of-batch summary: counts by outcome, the most sensitive models, gate failures and errors with reasons. */
export function renderBatchSummary(records: readonly BatchRecord[], gates: readonly GateResult[] | null, opts: { color: boolean; elapsedMs?: number; skipped?: number; top?: number; title?: string; gateNote?: string; runFailed?: number }): string {
  const c = new Chalk({ level: opts.color ? 1 : 0 });
  const lines: string[] = [];
  const count = (s: BatchRecord['status']) => records.filter((r) => r.status === s).length;
  const errors = records.filter((r) => r.status === 'error');
  const byCode = new Map<string, number>();
  for (const r of errors) byCode.set(r.error?.code ?? 'ERROR', (byCode.get(r.error?.code ?? 'ERROR') ?? 0) + 1);
  const fresh = records.length - (opts.skipped ?? 0);
  const rate = opts.elapsedMs && opts.elapsedMs > 0 && fresh > 0 ? `, ${((60000 * fresh) / opts.elapsedMs).toFixed(1)} models/min` : '';
  lines.push(c.bold(`${opts.title ?? 'lipcheck batch'}: ${records.length} model${records.length === 1 ? '' : 's'}`) + (opts.skipped ? ` (${opts.skipped} from an earlier run, --resume)` : '') + (opts.elapsedMs !== undefined ? ` in ${ms(opts.elapsedMs)}${rate}` : ''));
  lines.push(`  ${c.green(`bounded ${count('bounded')}`)} · ${c.red(`unbounded ${count('unbounded')}`)} · ${c.red(`discontinuous ${count('discontinuous')}`)} · ${errors.length ? c.yellow(`error ${errors.length}`) : 'error 0'}${byCode.size ? ` (${[...byCode].map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`);
  const bounded = records.filter((r) => r.status === 'bounded' && r.upper).sort((a, b) => b.upper!.value - a.upper!.value);
  if (bounded.length) {
    lines.push('', c.bold('Most sensitive models (largest upper bound):'));
    const top = bounded.slice(0, opts.top ?? 10);
    const w = Math.max(...top.map((r) => r.path.length));
    for (const r of top) lines.push(`  ${r.path.padEnd(w)}  ${formatNumber(r.upper!.value).padStart(10)}  ${r.upper!.kind.padEnd(13)}  ${r.upper!.method}`);
  }
  const failed = (gates ?? []).filter((g) => !g.passed);
  if (gates) {
    // gateNote: the baseline counts (compared, new, missing), so "all passed" never hides models nothing was compared with
    const note = opts.gateNote ? ` (${opts.gateNote})` : '';
    lines.push('', failed.length || opts.runFailed ? c.red.bold(`Gates: ${failed.length} of ${gates.length} failed${opts.runFailed ? `, and ${opts.runFailed} run-level gate failed` : ''}`) + note : c.green.bold(`Gates: all ${gates.length} passed`) + note);
    for (const g of failed) for (const k of g.checks.filter((x) => !x.passed)) lines.push(c.red(`  ${g.path}: ${k.message}.`));
  }
  const unanalysed = errors.filter((r) => !failed.some((g) => g.path === r.path));
  if (unanalysed.length) {
    lines.push('', c.yellow.bold('Could not be analysed:'));
    for (const r of unanalysed) lines.push(c.yellow(`  ${r.path}: [${r.error?.code}] ${clip((r.error?.message ?? '').replace(/\s*\n\s*/g, ' '), 240)}`));
  }
  return lines.join('\n') + '\n';
}
