import { Chalk } from 'chalk';
import type { Bound } from '../estimators/kinds.js';
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
  const kindColor = (b: Bound | null) => (b === null ? c.dim : b.kind === 'certified' ? c.green : b.kind === 'probabilistic' ? c.cyan : b.kind === 'lower' ? c.blue : c.yellow);
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
    if (g.methods.length > 1) lines.push(`  by method: ${g.methods.map((m) => `${m.method} ${formatNumber(m.upper?.value)}${m.upper ? ` (${m.upper.kind})` : ''}`).join(' · ')}`);
    if (g.estimate !== null) lines.push(c.dim(`  AutoLip with per-operator estimates (no guarantee): ${formatNumber(g.estimate)}`));
  }
  for (const w of report.warnings) lines.push(c.yellow(`warning: ${w}`));
  lines.push(c.dim(`time ${ms(report.timings.totalMs)} (load ${ms(report.timings.loadMs)}, build ${ms(report.timings.buildMs)}, norms ${ms(report.timings.normsMs)}, lower bound ${ms(report.timings.lowerMs)}) on ${report.settings.provider}`));
  return lines.join('\n') + '\n';
}
