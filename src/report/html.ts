import { createHash } from 'node:crypto';
import type { BatchRecord, GateResult } from '../batch/record.js';
import type { LayerResult } from '../estimators/autolip.js';
import type { Bound, BoundKind } from '../estimators/kinds.js';
import type { LipschitzReport } from './report.js';
import { escapeAttr } from './escape.js';
import { formatNumber } from './table.js';

/** What renderHtml draws: one model's report, or the records of a batch run; gate verdicts are optional in both. */
export type HtmlInput =
  | { readonly kind: 'model'; readonly report: LipschitzReport; readonly gates?: GateResult | null }
  | {
    readonly kind: 'batch'; readonly records: readonly BatchRecord[]; readonly gates?: readonly GateResult[] | null; readonly title?: string;
    /** Full reports by record path, where the caller has them: those rows link to a per-model section of the page. */
    readonly details?: ReadonlyMap<string, LipschitzReport> | null;
  };

const esc = escapeAttr;

// Cuts after a space, comma or separator when one lies in the second half, so a note ends on a whole word.
function clip(s: string, n: number): string {
  const cs = Array.from(s);
  if (cs.length <= n) return s;
  let k = n - 1;
  while (k > n / 2 && !/[\s,;/_.(-]/u.test(cs[k - 1])) k--;
  return `${cs.slice(0, k > n / 2 ? k : n - 1).join('').trimEnd()}…`;
}

// Keeps both ends: the start of a path names the folder, the end the file or node.
function clipMiddle(s: string, n: number): string {
  const cs = Array.from(s);
  if (cs.length <= n) return s;
  const head = Math.ceil((n - 1) / 2);
  return `${cs.slice(0, head).join('')}…${cs.slice(cs.length - (n - 1 - head)).join('')}`;
}

const SEPARATORS = /(?<=[/\\_.\-])/u;
const len = (s: string): number => Array.from(s).length;

/**
 * Shortens a path or node name to n characters at its separators (/ \\ _ . -), never inside a word: the last parts that
 * fit are kept behind '…' (the file or node name says most). Only a single part longer than n is cut in its middle.
 */
export function clipAtSeparators(s: string, n: number): string {
  if (len(s) <= n) return s;
  const parts = s.split(SEPARATORS);
  let tail = '';
  for (let i = parts.length - 1; i >= 0 && len(parts[i] + tail) <= n - 1; i--) tail = parts[i] + tail;
  return tail ? `…${tail}` : clipMiddle(s, n);
}

/**
 * The longest directory prefix ('a/b/', ending at a '/') that every path shares, when there are two paths or more and
 * each keeps a name after it; '' otherwise. Labels show the paths without it and the page states it once.
 */
export function commonDirPrefix(paths: readonly string[]): string {
  if (paths.length < 2) return '';
  let prefix = paths[0].slice(0, paths[0].lastIndexOf('/') + 1);
  for (const p of paths) {
    while (prefix && !p.startsWith(prefix)) prefix = prefix.slice(0, prefix.lastIndexOf('/', prefix.length - 2) + 1);
    if (!prefix) return '';
  }
  return paths.every((p) => p.length > prefix.length) ? prefix : '';
}

/** Escaped text with a line-break opportunity after each separator (/ \\ _ . -), so long paths wrap there and not inside a word. */
export function breakable(s: string): string {
  return s.split(SEPARATORS).map(esc).join('<wbr/>');
}

const fmt = (x: number | null | undefined): string => formatNumber(x);
const shape = (s: readonly number[]): string => (s.length ? s.join('×') : 'scalar');
const normName = (n: string): string => (n === 'inf' ? 'ℓ∞' : n === '2' ? 'ℓ2' : n);
const duration = (ms: number): string => (!Number.isFinite(ms) ? '—' : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
// A data-v attribute carries the raw number for the table sort; empty sorts last.
const numAttr = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '' : String(x));

// typed so that it compiles whether or not BoundKind has 'exact' yet (the kind is being added alongside)
const KIND_TEXT: Record<BoundKind, string> & Record<string, string> = {
  exact: 'exact: a proved upper bound met by a witnessed pair (within 1e-6)',
  certified: 'certified: a proved upper bound',
  probabilistic: 'probabilistic: an upper bound that fails only with the small probability stated',
  estimate: 'estimate: no guarantee either way',
  lower: 'lower: witnessed by a pair of inputs',
};

type Mark = BoundKind | 'unbounded' | 'discontinuous' | 'merge' | 'none';

interface ChartRow {
  readonly label: string;
  readonly tip: string;
  readonly value: number | null;
  readonly lower: number | null;
  readonly mark: Mark;
  readonly note: string;
  readonly failed: boolean;
  /** An in-page link (#id) for the label. */
  readonly href?: string;
}

const COLOR = { certified: '#1a7f37', probabilistic: '#0969da', estimate: '#9a6700', red: '#cf222e', grid: '#d0d7de', ink: '#1f2328', muted: '#59636e' };
const W = 1080;
const PLOT_X0 = 268;
const PLOT_X1 = 708;
const NOTE_X = 722;
const ROW_H = 22;
const TOP = 40;

const SUPERSCRIPT: Record<string, string> = { '-': '⁻', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };

/** Every tick in one format, 10 to a power (10⁻³ … 10⁰ … 10¹²), so a log axis never switches from 10000 to 1e5. */
export function tickLabel(k: number): string {
  return `10${Array.from(String(k), (c) => SUPERSCRIPT[c]).join('')}`;
}

// kinds drawn as solid bars: proved bounds
const SOLID: ReadonlySet<string> = new Set(['certified', 'exact']);

function barPaint(id: string, mark: Mark, failed: boolean): string {
  const stroke = failed ? ` stroke="${COLOR.red}" stroke-width="2"` : '';
  if (SOLID.has(mark)) return `fill="${COLOR.certified}"${stroke}`;
  if (mark === 'probabilistic') return `fill="url(#${id}-stripes)"${stroke || ` stroke="${COLOR.probabilistic}" stroke-width="1"`}`;
  return `fill="#ffffff" stroke="${failed ? COLOR.red : COLOR.estimate}" stroke-width="${failed ? 2 : 1.5}" stroke-dasharray="4 2"`;
}

/** Horizontal bars on a log scale anchored at 1: right of the line a map may stretch distances, left of it it shrinks them. */
function chartSvg(id: string, title: string, valueHeading: string, rows: readonly ChartRow[]): string {
  let lo = 1;
  let hi = 1;
  for (const r of rows) {
    for (const v of [r.value, r.lower]) {
      if (v === null || !(v > 0) || !Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  let d0 = Math.floor(Math.log10(lo));
  let d1 = Math.ceil(Math.log10(hi));
  if (d0 === d1) {
    d0 -= 1;
    d1 += 1;
  }
  const span = d1 - d0;
  const x = (v: number): number => (v <= 0 ? PLOT_X0 : !Number.isFinite(v) ? PLOT_X1 : PLOT_X0 + ((Math.log10(v) - d0) / span) * (PLOT_X1 - PLOT_X0));
  const r1 = (v: number): string => String(Math.round(v * 10) / 10);
  const one = x(1);
  const height = TOP + rows.length * ROW_H + 10;
  const bottom = TOP + rows.length * ROW_H;
  const out: string[] = [];
  out.push(`<svg id="${id}" class="chart" role="img" aria-labelledby="${id}-title" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="system-ui, 'DejaVu Sans', sans-serif" font-size="12">`);
  out.push(`<title id="${id}-title">${esc(title)}</title>`);
  out.push(`<defs><pattern id="${id}-stripes" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="${COLOR.probabilistic}"/><rect width="2.5" height="6" fill="#ffffff" fill-opacity="0.55"/></pattern></defs>`);
  out.push(`<text x="8" y="${TOP - 24}" fill="${COLOR.muted}">log scale; bars start at 1</text>`);
  out.push(`<text x="${NOTE_X}" y="${TOP - 24}" fill="${COLOR.muted}">${esc(valueHeading)}</text>`);
  const isMarked = (r: ChartRow): boolean => r.mark === 'unbounded' || r.mark === 'discontinuous';
  rows.forEach((r, i) => {
    const fill = isMarked(r) || r.failed ? '#ffebe9' : i % 2 === 1 ? '#f6f8fa' : '';
    if (fill) out.push(`<rect class="band" x="0" y="${TOP + i * ROW_H + 1}" width="${W}" height="${ROW_H - 2}" fill="${fill}"/>`);
  });
  const step = [1, 2, 5, 10, 20, 25, 50, 100].find((n) => span / n <= 8) ?? Math.ceil(span / 8);
  if (span <= 3) {
    for (let k = d0; k < d1; k++) {
      for (let m = 2; m <= 9; m++) out.push(`<line class="minor" x1="${r1(x(m * 10 ** k))}" x2="${r1(x(m * 10 ** k))}" y1="${TOP}" y2="${bottom}" stroke="#eaeef2" stroke-width="1"/>`);
    }
  }
  for (let k = Math.ceil(d0 / step) * step; k <= d1; k += step) {
    const tx = r1(x(10 ** k));
    out.push(`<line class="tick" x1="${tx}" x2="${tx}" y1="${TOP - 4}" y2="${bottom}" stroke="${k === 0 ? COLOR.ink : COLOR.grid}" stroke-width="${k === 0 ? 1.5 : 1}"/>`);
    out.push(`<text x="${tx}" y="${TOP - 8}" text-anchor="middle" fill="${k === 0 ? COLOR.ink : COLOR.muted}">${tickLabel(k)}</text>`);
  }
  rows.forEach((r, i) => {
    const y = TOP + i * ROW_H;
    const marked = isMarked(r);
    out.push(`<g class="row${marked ? ' marked' : ''}${r.failed ? ' failed' : ''}"><title>${esc(r.tip)}</title>`);
    const label = `<text x="8" y="${y + 15}" font-family="ui-monospace, 'DejaVu Sans Mono', monospace" font-size="11.5" fill="${r.href ? COLOR.probabilistic : COLOR.ink}">${esc(clipAtSeparators(r.label, 36))}</text>`;
    out.push(r.href ? `<a class="label-link" href="${esc(r.href)}">${label}</a>` : label);
    if (r.value !== null && !Number.isNaN(r.value)) {
      const vx = x(r.value);
      let x0 = Math.min(one, vx);
      let w = Math.abs(vx - one);
      if (w < 3) {
        x0 = vx - 1.5;
        w = 3;
      }
      out.push(`<rect class="bar" data-kind="${r.mark}" data-value="${numAttr(r.value)}" x="${r1(x0)}" y="${y + 5}" width="${r1(w)}" height="${ROW_H - 10}" ${barPaint(id, r.mark, r.failed)}/>`);
      if (r.value <= 0) out.push(`<text x="${PLOT_X0 + 3}" y="${y + 15}" fill="${COLOR.ink}">◂ 0</text>`);
      if (!Number.isFinite(r.value)) out.push(`<text x="${PLOT_X1 - 3}" y="${y + 15}" text-anchor="end" fill="#ffffff">∞ ▸</text>`);
    } else if (marked) {
      out.push(`<line x1="${r1(one)}" x2="${PLOT_X1}" y1="${y + ROW_H / 2}" y2="${y + ROW_H / 2}" stroke="${COLOR.red}" stroke-width="2" stroke-dasharray="2 3"/>`);
      out.push(`<text x="${PLOT_X1 - 2}" y="${y + 15}" text-anchor="end" fill="${COLOR.red}" font-weight="bold">${r.mark === 'unbounded' ? '∞' : '✕'}</text>`);
    }
    if (r.lower !== null && r.lower > 0 && Number.isFinite(r.lower)) {
      const lx = r1(x(r.lower));
      out.push(`<line class="lower" x1="${lx}" x2="${lx}" y1="${y + 2}" y2="${y + ROW_H - 2}" stroke="${COLOR.ink}" stroke-width="2"/>`);
    }
    const noteColor = marked || r.failed ? COLOR.red : r.mark === 'merge' || r.mark === 'none' ? COLOR.muted : COLOR.ink;
    out.push(`<text x="${NOTE_X}" y="${y + 15}" fill="${noteColor}">${esc(clip(r.note, 52))}</text>`);
    out.push('</g>');
  });
  out.push('</svg>');
  return out.join('\n');
}

const LEGEND_KINDS: readonly BoundKind[] = ['exact' as BoundKind, 'certified', 'probabilistic', 'estimate'];

function legend(kinds: readonly BoundKind[], extra: readonly string[]): string {
  const items = kinds.map((k) => `<li><span class="swatch sw-${k}"></span>${esc(KIND_TEXT[k])}</li>`);
  return `<ul class="legend">${items.join('')}${extra.join('')}</ul>`;
}

const LEGEND_MARKED = '<li><span class="swatch sw-marked"></span>unbounded (∞) or discontinuous (✕): no Lipschitz constant from here on</li>';
const LEGEND_LOWER = '<li><span class="swatch sw-lower"></span>witnessed lower bound</li>';
const LEGEND_FAILED = '<li><span class="swatch sw-failed"></span>a gate failed</li>';

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328; background: #ffffff; }
main { max-width: 1100px; margin: 0 auto; }
h1 { font-size: 20px; margin: 4px 0 8px; overflow-wrap: break-word; }
h1.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 18px; }
h2 { font-size: 16px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; overflow-wrap: break-word; }
.tool { color: #59636e; margin: 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 0; }
dl.meta dt { color: #59636e; }
dl.meta dd { margin: 0; }
.verdict { margin-top: 20px; padding: 14px 18px; border: 1px solid #d0d7de; border-left: 6px solid #1a7f37; border-radius: 6px; background: #f6f8fa; }
.verdict.probabilistic { border-left-color: #0969da; }
.verdict.unbounded, .verdict.discontinuous { border-left-color: #cf222e; background: #fff5f5; }
.verdict .big { font-size: 30px; font-weight: 600; margin: 0; }
.verdict p { margin: 4px 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; vertical-align: middle; border: 1px solid currentColor; }
.badge.certified, .badge.exact { color: #1a7f37; }
.badge.probabilistic { color: #0969da; }
.badge.estimate { color: #9a6700; }
.badge.unbounded, .badge.discontinuous, .badge.error, .badge.failed { color: #cf222e; }
.badge.passed, .badge.bounded { color: #1a7f37; }
ul.reasons { margin: 6px 0; padding-left: 20px; }
.warnings li { color: #7d4e00; }
.legend { list-style: none; padding: 0; margin: 4px 0 8px; display: flex; flex-wrap: wrap; gap: 4px 18px; color: #59636e; font-size: 13px; }
.swatch { display: inline-block; width: 22px; height: 11px; margin-right: 6px; vertical-align: -1px; }
.sw-certified, .sw-exact { background: #1a7f37; }
.sw-probabilistic { background: repeating-linear-gradient(45deg, #0969da 0 3px, #84b4ec 3px 5px); }
.sw-estimate { background: #ffffff; border: 1.5px dashed #9a6700; }
.sw-lower { width: 3px; background: #1f2328; margin-left: 9px; margin-right: 16px; }
.sw-marked { background: #ffebe9; border-top: 2px dotted #cf222e; border-bottom: 2px dotted #cf222e; }
.sw-failed { background: #ffebe9; border: 2px solid #cf222e; }
.chart-wrap { overflow-x: auto; }
svg.chart { max-width: 100%; height: auto; display: block; }
.caption { color: #59636e; font-size: 13px; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #d8dee4; text-align: left; vertical-align: top; }
th { background: #f6f8fa; white-space: nowrap; }
.table-wrap { overflow-x: auto; }
td.path { min-width: 16em; }
td.note { min-width: 16em; }
td .sub { color: #59636e; font-size: 12px; }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0; padding: 0; cursor: pointer; }
th button::after { content: " ↕"; color: #8c959f; }
th[aria-sort="ascending"] button::after { content: " ▲"; color: #1f2328; }
th[aria-sort="descending"] button::after { content: " ▼"; color: #1f2328; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.marked td, tr.error td { background: #fff5f5; }
tr.gate-failed td { background: #ffebe9; }
tr.gate-failed td:first-child { box-shadow: inset 4px 0 0 #cf222e; }
.k-certified, .k-exact { color: #1a7f37; font-weight: 600; }
.k-probabilistic { color: #0969da; font-weight: 600; }
.k-estimate { color: #9a6700; font-weight: 600; }
.k-unbounded, .k-discontinuous, .k-error, .k-failed { color: #cf222e; font-weight: 600; }
.muted { color: #59636e; }
details summary { cursor: pointer; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 16px; }
.tile { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.tile .n { font-size: 24px; font-weight: 600; display: block; }
.tile.bad .n { color: #cf222e; }
.tile.good .n { color: #1a7f37; }
footer { margin-top: 28px; color: #59636e; font-size: 12px; }
a { color: #0969da; }
section.model-detail { margin-top: 36px; padding-top: 8px; border-top: 3px solid #d0d7de; }
section.model-detail h2.model { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 16px; border: 0; }
details.collapsed { margin: 8px 0; }
`;

// Written without '<' or '&' so the page stays well-formed XML; CSP admits it by hash.
const SCRIPT = `
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.querySelectorAll('thead th');
  heads.forEach(function (th, col) {
    var button = th.querySelector('button');
    if (!button) return;
    button.addEventListener('click', function () {
      var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      var numeric = th.getAttribute('data-type') === 'num';
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var p = a.cells[col], q = b.cells[col];
        if (numeric) {
          var u = p.getAttribute('data-v'), v = q.getAttribute('data-v');
          var x = u ? Number(u) : NaN, y = v ? Number(v) : NaN;
          if (isNaN(x)) return isNaN(y) ? 0 : 1;
          if (isNaN(y)) return -1;
          return x === y ? 0 : dir * (x > y ? 1 : -1);
        }
        return dir * p.textContent.trim().localeCompare(q.textContent.trim());
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
`;

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
const CSP = `default-src 'none'; style-src ${hash(CSS)}; script-src ${hash(SCRIPT)}; img-src 'none'; base-uri 'none'; form-action 'none'`;

function page(title: string, body: string): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8"/>',
    `<meta http-equiv="Content-Security-Policy" content="${CSP}"/>`,
    '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
    `<title>${esc(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    '<main>',
    body,
    '</main>',
    `<script>${SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function th(label: string, numeric = false): string {
  return `<th scope="col"${numeric ? ' class="num" data-type="num"' : ''}><button type="button">${esc(label)}</button></th>`;
}

function boundCell(b: Bound | null): string {
  return b ? `<td class="num" data-v="${numAttr(b.value)}" title="${esc(String(b.value))}">${esc(fmt(b.value))}</td>` : '<td class="num" data-v="">—</td>';
}

function gateSection(gate: GateResult, idp = ''): string {
  const items = gate.checks.map((c) => `<li><span class="badge ${c.passed ? 'passed' : 'failed'}">${c.passed ? 'passed' : 'failed'}</span> <code>${esc(c.gate)}</code> ${esc(c.message)}</li>`);
  const head = gate.checks.length === 0 ? '<p>No gate was set.</p>' : `<p>${gate.passed ? 'Every gate passed.' : `${plural(gate.checks.filter((c) => !c.passed).length, 'gate')} of ${gate.checks.length} failed.`}</p>`;
  return `<section id="${idp}gates"><h2>Gates</h2>${head}<ul class="reasons">${items.join('')}</ul></section>`;
}

function nodesBlock(id: string, nodes: readonly string[]): string {
  if (nodes.length === 0 || (nodes.length === 1 && nodes[0] === id)) return '';
  const all = nodes.join(', ');
  if (Array.from(all).length <= 40) return `<div class="sub"><code>${esc(all)}</code></div>`;
  return `<details class="sub"><summary>${plural(nodes.length, 'ONNX node')}</summary><code>${nodes.map(esc).join('<br/>')}</code></details>`;
}

function layerRow(l: LayerResult, i: number): ChartRow {
  const label = `${i + 1} ${l.id} ${l.opTypes.join('+')}`;
  const tipHead = `${l.id} (${l.kind}): ${l.opTypes.join('+')}; nodes ${l.nodes.length > 10 ? `${l.nodes.slice(0, 10).join(', ')} … (${l.nodes.length})` : l.nodes.join(', ')}; ${shape(l.inShape)} → ${shape(l.outShape)}`;
  const base = { label, lower: null, failed: false };
  if (l.kind === 'unbounded' || l.kind === 'discontinuous') return { ...base, value: null, mark: l.kind, note: `${l.kind}: ${l.note}`, tip: `${tipHead}. ${l.kind}: ${l.note}.` };
  if (l.upper) {
    const u = l.upper;
    return { ...base, value: u.value, mark: u.kind, note: `${fmt(u.value)} ${u.kind} · ${u.method}`, tip: `${tipHead}. Upper bound ${u.value} (${u.kind}, ${u.method}); estimate ${fmt(l.estimate)}.${l.note ? ` ${l.note}.` : ''}` };
  }
  if (l.estimate !== null) return { ...base, value: l.estimate, mark: 'estimate', note: `${fmt(l.estimate)} estimate (no upper bound)`, tip: `${tipHead}. Estimate ${l.estimate}, no upper bound.` };
  return { ...base, value: null, mark: l.kind === 'merge' ? 'merge' : 'none', note: l.kind === 'merge' ? `merge: ${l.note}` : l.note || 'no value', tip: `${tipHead}. ${l.note}` };
}

/** An activation whose slopes lie in [−1, 1] with 1 reached (ReLU, leaky ReLU, …): a factor of exactly 1, it changes no bound. */
export function isSlopeOne(l: LayerResult): boolean {
  return l.kind === 'activation' && l.upper?.value === 1;
}

function collapsedSummary(layers: readonly LayerResult[]): string {
  const byOp = new Map<string, number>();
  for (const l of layers) byOp.set(l.opTypes.join('+'), (byOp.get(l.opTypes.join('+')) ?? 0) + 1);
  return `${plural(layers.length, 'activation row')} with slope 1 (${[...byOp].map(([op, n]) => `${op} ×${n}`).join(', ')})`;
}

/** One step of the composition: a factor the bound is multiplied by, or a merge where branches add or combine. */
interface Step {
  readonly index: number;
  readonly layer: LayerResult;
  /** The row's factor (its upper bound, else its estimate); null for merges and rows without a value. */
  readonly factor: number | null;
  readonly kind: BoundKind | null;
  /** The product of the factors since the input or since the last merge. */
  readonly running: number | null;
  /** The merge this running product restarted after; null from the input. */
  readonly after: string | null;
  /** The segment that bounds this row together with its neighbours: its running product is AutoLip's, which the segment's factor replaces. */
  readonly inSegment: string | null;
}

/**
 * The global bound as the report's rows compose it: the rows a segment bounds together are replaced by the segment's
 * factor, slope-1 activations are left out (factor 1), the other factors multiply in order. A model without merges is a
 * chain and the last running product is AutoLip's composition (the global bound up to its rounding allowance); at a
 * merge the branches' bounds add (sum) or combine (concatenation) along the graph, which a list of rows cannot show
 * (the running product restarts there, and the page then shows the factors alone).
 */
export function compositionSteps(layers: readonly LayerResult[]): { steps: Step[]; merges: number; chain: boolean } {
  const covered = new Map<number, string>();
  layers.forEach((seg, j) => {
    if (seg.kind !== 'segment') return;
    const nodes = new Set(seg.nodes);
    const ops = layers.flatMap((l, i) => (i < j && l.kind === 'operator' && l.nodes.length > 0 && l.nodes.every((n) => nodes.has(n)) ? [i] : []));
    if (!ops.length) return;
    for (let i = ops[0]; i < j; i++) if (ops.includes(i) || layers[i].kind === 'activation' || layers[i].kind === 'nonlinear') covered.set(i, seg.id);
  });
  const steps: Step[] = [];
  let running: number | null = 1;
  // the running product where the current segment starts: its rows multiply on from here (AutoLip), its factor replaces them
  let segmentStart: number | null = null;
  let after: string | null = null;
  let merges = 0;
  let chain = true;
  for (const [i, l] of layers.entries()) {
    if (isSlopeOne(l)) continue;
    const inSegment = covered.get(i) ?? null;
    if (l.kind === 'merge') {
      merges++;
      chain = false;
      steps.push({ index: i, layer: l, factor: null, kind: null, running: null, after, inSegment });
      running = 1;
      after = l.id;
      continue;
    }
    if (l.kind === 'unbounded' || l.kind === 'discontinuous') {
      chain = false;
      steps.push({ index: i, layer: l, factor: null, kind: null, running: null, after, inSegment });
      running = null;
      continue;
    }
    const factor = l.upper?.value ?? l.estimate;
    const kind = l.upper?.kind ?? (l.estimate !== null ? 'estimate' : null);
    if (inSegment !== null && segmentStart === null) segmentStart = running;
    if (l.kind === 'segment' && segmentStart !== null) {
      running = segmentStart;
      segmentStart = null;
    }
    running = running !== null && factor !== null ? running * factor : null;
    steps.push({ index: i, layer: l, factor, kind, running, after, inSegment });
  }
  return { steps, merges, chain };
}

// AutoLip's value over another: '÷9.151' when the other is tighter, '×636.0' when it is looser
const versus = (ratio: number): string => (ratio >= 1 ? `÷${fmt(ratio)}` : `×${fmt(1 / ratio)}`);

function compositionSection(r: LipschitzReport, idp: string): string {
  const g = r.global;
  const parts: string[] = [`<section id="${idp}composition"><h2>How the global bound is composed</h2>`];
  // per-method contributions: every method's global value, then what each segment saved against AutoLip's product
  if (g.methods.length) {
    const rows = g.methods.map((m) => {
      const v = m.upper?.value ?? m.estimate;
      const chosen = g.upper !== null && m.upper !== null && m.method === g.upper.method && m.upper.value === g.upper.value;
      const ratio = v !== null && v > 0 && g.methods[0].upper && m !== g.methods[0] ? g.methods[0].upper.value / v : null;
      return `<tr${chosen ? ' class="chosen"' : ''}><td><code>${esc(m.method)}</code>${chosen ? ' <span class="badge passed">reported</span>' : ''}</td><td class="num" data-v="${numAttr(v)}">${esc(fmt(v))}</td><td>${m.upper ? `<span class="k-${m.upper.kind}">${esc(m.upper.kind)}</span>` : '<span class="k-estimate">estimate</span> <span class="muted">(no guarantee)</span>'}</td><td class="num">${ratio !== null ? esc(versus(ratio)) : ''}</td></tr>`;
    });
    parts.push(`<div class="table-wrap"><table class="methods"><thead><tr><th>method</th><th class="num">global value</th><th>kind</th><th class="num">vs AutoLip</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`);
  }
  const segs = r.layers.map((l, i) => ({ l, i })).filter(({ l }) => l.kind === 'segment' && l.upper);
  if (segs.length) {
    const rows = segs.map(({ l, i }) => {
      const al = l.candidates.find((c) => c.method === 'autolip' || c.method.startsWith('autolip'))?.value ?? null;
      return `<tr><td class="num">${i + 1}</td><td><code>${esc(l.id)}</code></td><td class="num" data-v="${numAttr(al)}">${esc(fmt(al))}</td><td class="num" data-v="${numAttr(l.upper!.value)}">${esc(fmt(l.upper!.value))}</td><td><code>${esc(l.upper!.method)}</code></td><td class="num">${al !== null && l.upper!.value > 0 ? esc(versus(al / l.upper!.value)) : ''}</td></tr>`;
    });
    parts.push(`<p class="caption">Each segment (a chain operator → activation → … → operator) is bounded as a whole; its factor replaces the product of its rows.</p>`);
    parts.push(`<div class="table-wrap"><table class="segments"><thead><tr><th class="num">#</th><th>segment</th><th class="num">AutoLip product</th><th class="num">factor used</th><th>method</th><th class="num">saved</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`);
  }
  const { steps, merges, chain } = compositionSteps(r.layers);
  if (steps.some((s) => s.factor !== null)) {
    const rows: ChartRow[] = steps.filter((s) => chain || s.inSegment === null).map((s) => {
      const label = `${s.index + 1} ${s.layer.id} ${s.layer.opTypes.join('+')}`;
      if (s.layer.kind === 'merge') return { label, value: null, lower: null, mark: 'merge', failed: false, note: s.layer.note, tip: `${s.layer.id}: ${s.layer.note}. lipcheck composes the branches along the graph.` };
      if (s.factor === null) return { label, value: null, lower: null, mark: s.layer.kind === 'unbounded' || s.layer.kind === 'discontinuous' ? s.layer.kind : 'none', failed: false, note: s.layer.note || 'no value', tip: `${s.layer.id}: ${s.layer.note}` };
      // off a chain, rows of parallel branches follow each other in the list: their product would mean nothing
      if (!chain) return { label, value: s.factor, lower: null, mark: s.kind ?? 'none', failed: false, note: `×${fmt(s.factor)}`, tip: `${s.layer.id}: factor ${s.factor} (${s.kind}, ${s.layer.upper?.method ?? 'estimate'}).` };
      return {
        label, value: s.running, lower: null, mark: s.kind ?? 'none', failed: false,
        note: `×${fmt(s.factor)} → ${fmt(s.running)}${s.inSegment ? ` (AutoLip; ${s.inSegment} replaces)` : ''}`,
        tip: `${s.layer.id}: factor ${s.factor} (${s.kind}, ${s.layer.upper?.method ?? 'estimate'}); running product ${s.running}${s.after ? ` since ${s.after}` : ' from the input'}.`,
      };
    });
    const last = [...steps].reverse().find((s) => s.running !== null && s.inSegment === null)?.running ?? null;
    if (chain && g.upper && last !== null) rows.push({ label: 'global upper bound', value: g.upper.value, lower: g.lower?.value ?? null, mark: g.upper.kind, failed: false, note: `${fmt(g.upper.value)} ${g.upper.kind} · ${g.upper.method}`, tip: `Global upper bound ${g.upper.value} (${g.upper.kind}, ${g.upper.method}).` });
    parts.push(chain
      ? `<div class="chart-wrap">${chartSvg(`${idp}running`, `Running product of the layer factors of ${r.model.path}, log scale`, 'factor → running product', rows)}</div>`
      : `<div class="chart-wrap">${chartSvg(`${idp}factors`, `Factors of ${r.model.path} in the order lipcheck composes them, log scale`, 'factor', rows)}</div>`);
    const notes: string[] = [];
    const ones = r.layers.filter(isSlopeOne);
    if (chain) {
      const agrees = g.upper !== null && last !== null && Math.abs(last / g.upper.value - 1) <= 1e-9;
      notes.push(`Each bar is the product of the factors from the input to its row: the bound grows by the factor written beside it.${agrees ? ` The last product is the global bound ${fmt(g.upper!.value)}.` : g.upper && last !== null ? ` The product of the rows is ${fmt(last)}; the global bound ${fmt(g.upper.value)} is composed along the graph.` : ''}`);
    } else if (merges) {
      notes.push(`The graph has ${plural(merges, 'merge')}: there the branches' bounds add (sum) or combine (concatenation), and the rows of parallel branches follow each other in this list, so a running product of the rows would mean nothing. Each bar is one factor, in the order lipcheck composes them; the global bound${g.upper ? ` ${fmt(g.upper.value)}` : ''} is their composition along the graph: products along each branch, sums or quadrature at the merges.`);
    }
    if (ones.length) notes.push(`${collapsedSummary(ones)} are left out: a factor of 1 changes nothing.`);
    if (r.layers.some((l) => l.kind === 'segment')) notes.push(chain ? 'Rows a segment bounds together carry AutoLip\'s running product (a valid but looser bound); the segment row replaces their product by its own factor.' : 'Rows bounded together by a segment appear once, as the segment.');
    parts.push(`<p class="caption">${notes.join(' ')}</p>`);
  }
  parts.push('</section>');
  return parts.join('\n');
}

function layerTable(layers: readonly LayerResult[], indices: readonly number[], cls = 'layers'): string {
  const head = ['<tr>', th('#', true), th('layer'), th('ops and ONNX nodes'), th('shape in → out'), th('estimate', true), th('upper', true), th('bound'), th('iters', true), th('time', true), th('note'), '</tr>'].join('');
  const rows = indices.map((i) => {
    const l = layers[i];
    const marked = l.kind === 'unbounded' || l.kind === 'discontinuous';
    const bound = l.upper
      ? `<td><span class="k-${l.upper.kind}">${esc(l.upper.kind)}</span><div class="sub">${esc(l.upper.method)}</div></td>`
      : marked ? `<td class="k-${l.kind}">${l.kind}</td>` : '<td class="muted">—</td>';
    const others = l.candidates.filter((c) => !(l.upper && c.value === l.upper.value && c.method === l.upper.method));
    const cands = others.length ? `<div class="sub">other bounds: ${esc(others.map((c) => `${fmt(c.value)} ${c.kind} (${c.method})`).join('; '))}</div>` : '';
    return [
      `<tr${marked ? ' class="marked"' : ''}>`,
      `<td class="num" data-v="${i + 1}">${i + 1}</td>`,
      `<td><code>${breakable(l.id)}</code><div class="sub">${esc(l.kind)}</div></td>`,
      `<td>${l.opTypes.map(esc).join('+<wbr/>')}${nodesBlock(l.id, l.nodes)}</td>`,
      `<td class="mono">${esc(`${shape(l.inShape)} → ${shape(l.outShape)}`)}</td>`,
      `<td class="num" data-v="${numAttr(l.estimate)}">${esc(fmt(l.estimate))}</td>`,
      boundCell(l.upper),
      bound,
      `<td class="num" data-v="${l.iterations}">${l.iterations || ''}</td>`,
      `<td class="num" data-v="${l.kind === 'operator' ? numAttr(l.ms) : ''}">${l.kind === 'operator' ? esc(duration(l.ms)) : ''}</td>`,
      `<td class="note">${esc(l.note)}${cands}</td>`,
      '</tr>',
    ].join('');
  });
  return `<div class="table-wrap"><table class="sortable ${cls}"><thead>${head}</thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

function verdict(r: LipschitzReport, idp = ''): string {
  const g = r.global;
  const norm = normName(r.norm);
  const lines: string[] = [];
  if (g.status === 'bounded' && g.upper) {
    const u = g.upper;
    lines.push(`<p>Global Lipschitz bound (${esc(norm)})</p>`);
    lines.push(`<p class="big" title="${esc(String(u.value))}">${esc(fmt(u.value))} <span class="badge ${esc(u.kind)}">${esc(u.kind)}</span></p>`);
    lines.push(`<p>Method: <code>${esc(u.method)}</code>.${u.kind === 'probabilistic' ? ` Holds except with probability at most ${esc(fmt(g.failureProbability))} (δ = ${esc(String(r.settings.delta))} per probabilistic operator, union bound).` : ''}</p>`);
  } else if (g.status === 'bounded') {
    lines.push(`<p class="big">bounded</p><p>The report carries no upper bound for the ${esc(norm)} norm.</p>`);
  } else {
    lines.push(`<p>Global Lipschitz constant (${esc(norm)})</p>`);
    lines.push(`<p class="big"><span class="k-${g.status}">${g.status}</span></p>`);
    lines.push(`<p>The model has no global Lipschitz constant, because of ${plural(g.reasons.length, 'node')}:</p>`);
    lines.push(`<ul class="reasons">${g.reasons.map((x) => `<li><code>${esc(x.opType)}</code> node <code>${breakable(x.node)}</code> ${esc(x.reason)}.</li>`).join('')}</ul>`);
    if (g.status === 'discontinuous') lines.push('<p>A discontinuous function has no Lipschitz constant; to bound the scores before it, export them as a graph output and pass <code>--output NAME</code>.</p>');
  }
  if (g.lower) lines.push(`<p>Witnessed lower bound: <strong title="${esc(String(g.lower.value))}">${esc(fmt(g.lower.value))}</strong> (<code>${esc(g.lower.method)}</code>, ${plural(g.lower.evaluations, 'run')} of the original model)${g.ratio !== null ? `; upper/lower = <strong>${esc(fmt(g.ratio))}</strong>` : ''}.</p>`);
  if (g.methods.length > 1) lines.push(`<p>By method: ${g.methods.map((m) => `<code>${esc(m.method)}</code> ${m.upper ? `${esc(fmt(m.upper.value))} (${esc(m.upper.kind)})` : `${esc(fmt(m.estimate))} (estimate, no guarantee)`}`).join(' · ')}.</p>`);
  if (g.estimate !== null) lines.push(`<p class="muted">AutoLip with per-operator estimates (no guarantee): ${esc(fmt(g.estimate))}.</p>`);
  const cls = g.status === 'bounded' ? (g.upper?.kind ?? 'bounded') : g.status;
  return `<section class="verdict ${esc(cls)}" id="${idp}verdict">${lines.join('\n')}</section>`;
}

/** Everything below a model page's header: verdict, gates, warnings, composition, layer chart and table; ids start with idp. */
function modelSections(r: LipschitzReport, gate: GateResult | null, idp: string): string {
  const parts: string[] = [];
  parts.push(verdict(r, idp));
  if (gate) parts.push(gateSection(gate, idp));
  if (r.warnings.length) parts.push(`<section id="${idp}warnings"><h2>Warnings</h2><ul class="warnings">${r.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></section>`);
  if (r.global.status === 'bounded' && r.layers.length) parts.push(compositionSection(r, idp));
  parts.push(`<section id="${idp}layer-chart"><h2>Operator norms per layer</h2>`);
  const shown = r.layers.flatMap((l, i) => (isSlopeOne(l) ? [] : [i]));
  const ones = r.layers.flatMap((l, i) => (isSlopeOne(l) ? [i] : []));
  if (r.layers.length === 0) {
    parts.push('<p>The report has no layers to chart.</p>');
  } else {
    const rows = shown.map((i) => layerRow(r.layers[i], i));
    const kinds = LEGEND_KINDS.filter((k) => rows.some((x) => (x.mark as string) === k && x.value !== null));
    const marked = rows.some((x) => x.mark === 'unbounded' || x.mark === 'discontinuous');
    parts.push(legend(kinds, marked ? [LEGEND_MARKED] : []));
    if (rows.length) parts.push(`<div class="chart-wrap">${chartSvg(`${idp}layers`, `Operator norm of each of the ${plural(r.layers.length, 'layer')} of ${r.model.path}, log scale`, 'upper bound · kind · method', rows)}</div>`);
    const notes = ['Each bar runs from 1 to the layer\'s bound: to the right the layer may stretch distances, to the left it shrinks them.'];
    if (ones.length) notes.push(`${collapsedSummary(ones.map((i) => r.layers[i]))} are not drawn (a factor of 1 changes nothing); the table lists them under its own heading.`);
    if (r.layers.some((l) => l.kind === 'merge')) notes.push('Merge rows have no value of their own: the bounds of their branches add (sum) or combine (concatenation).');
    if (r.layers.some((l) => l.kind === 'segment')) notes.push('A segment row bounds several operators together and replaces the product of their bars.');
    parts.push(`<p class="caption">${notes.join(' ')}</p>`);
  }
  parts.push('</section>');
  const table = r.layers.length === 0 ? '<p>The report has no layers.</p>'
    : `${layerTable(r.layers, shown)}${ones.length ? `<details class="collapsed" id="${idp}slope-one"><summary>${esc(collapsedSummary(ones.map((i) => r.layers[i])))}, collapsed</summary>${layerTable(r.layers, ones, 'layers slope-one')}</details>` : ''}`;
  parts.push(`<section id="${idp}layer-table"><h2>Layers</h2>${table}</section>`);
  return parts.join('\n');
}

function modelPage(r: LipschitzReport, gate: GateResult | null): string {
  const m = r.model;
  const s = r.settings;
  const parts: string[] = [];
  parts.push('<header>');
  parts.push(`<p class="tool">lipcheck ${esc(r.tool.version)} · Lipschitz report</p>`);
  parts.push(`<h1 class="path">${breakable(m.path)}</h1>`);
  parts.push('<dl class="meta">');
  parts.push(`<dt>sha256</dt><dd><code title="${esc(m.sha256)}">${esc(m.sha256.slice(0, 12))}</code> · ${esc(String(m.bytes))} bytes · producer ${esc(m.producer || 'unknown')} · opset ${esc(String(m.opset))} · IR version ${esc(String(m.irVersion))}</dd>`);
  parts.push(`<dt>input</dt><dd><code>${breakable(r.input.name)}</code> [${esc(r.input.shape.join(', '))}]</dd>`);
  parts.push(`<dt>output</dt><dd><code>${breakable(r.output.name)}</code> [${esc(r.output.shape.join(', '))}]</dd>`);
  parts.push(`<dt>norm</dt><dd>${esc(normName(r.norm))}</dd>`);
  parts.push(`<dt>settings</dt><dd>method ${esc(s.method)} · seed ${esc(String(s.seed))} · δ ${esc(String(s.delta))} · tol ${esc(String(s.tol))} · certify ${esc(s.certify)} · ${esc(s.provider)}</dd>`);
  parts.push('</dl>');
  parts.push('</header>');
  parts.push(modelSections(r, gate, ''));
  const t = r.timings;
  parts.push(`<footer>Time ${esc(duration(t.totalMs))} (load ${esc(duration(t.loadMs))}, build ${esc(duration(t.buildMs))}, norms ${esc(duration(t.normsMs))}, lower bound ${esc(duration(t.lowerMs))}) on ${esc(s.provider)}. Schema version ${esc(String(r.schemaVersion))}.</footer>`);
  return page(`lipcheck: ${m.path}`, parts.join('\n'));
}

function recordMessages(r: BatchRecord, gate: GateResult | undefined): string[] {
  const out: string[] = [];
  if (r.error) out.push(`${r.error.code}: ${r.error.message}`);
  if (gate) for (const c of gate.checks) if (!c.passed) out.push(`Gate ${c.gate} failed: ${c.message}`);
  if (!r.error && r.reasons.length) {
    const x = r.reasons[0];
    out.push(`${x.opType} node '${x.node}' ${x.reason}.${r.reasons.length > 1 ? ` (and ${plural(r.reasons.length - 1, 'more node')})` : ''}`);
  }
  return out;
}

function batchTable(records: readonly BatchRecord[], gates: ReadonlyMap<string, GateResult>, withGates: boolean, prefix: string, anchors: ReadonlyMap<string, string>): string {
  const head = ['<tr>', th('#', true), th('path'), th('status'), th('bound', true), th('kind'), th('method'), th('lower', true), th('time', true), ...(withGates ? [th('gate')] : []), th('message'), '</tr>'].join('');
  const rows = records.map((r, i) => {
    const gate = gates.get(r.path);
    const failed = gate !== undefined && !gate.passed;
    const cls = [r.status === 'error' ? 'error' : r.status !== 'bounded' ? 'marked' : '', failed ? 'gate-failed' : ''].filter(Boolean).join(' ');
    const statusCell = r.status === 'error' ? `<td class="k-error">error${r.error ? ` <code>${esc(r.error.code)}</code>` : ''}</td>` : r.status === 'bounded' ? '<td>bounded</td>' : `<td class="k-${r.status}">${r.status}</td>`;
    const gateCell = !withGates ? '' : gate === undefined ? '<td class="muted">—</td>' : gate.passed ? '<td>passed</td>' : '<td class="k-failed">failed</td>';
    return [
      `<tr${cls ? ` class="${cls}"` : ''}>`,
      `<td class="num" data-v="${i + 1}">${i + 1}</td>`,
      pathCell(r.path, prefix, anchors.get(r.path)),
      statusCell,
      boundCell(r.upper),
      r.upper ? `<td class="k-${r.upper.kind}">${esc(r.upper.kind)}</td>` : '<td class="muted">—</td>',
      `<td>${esc(r.upper?.method ?? '')}</td>`,
      `<td class="num" data-v="${numAttr(r.lower)}">${esc(fmt(r.lower))}</td>`,
      `<td class="num" data-v="${numAttr(r.ms)}">${esc(duration(r.ms))}</td>`,
      gateCell,
      `<td class="note">${recordMessages(r, gate).map((x) => `<div>${esc(x)}</div>`).join('')}</td>`,
      '</tr>',
    ].join('');
  });
  return `<div class="table-wrap"><table class="sortable batch"><thead>${head}</thead><tbody>\n${rows.join('\n')}\n</tbody></table></div>`;
}

/** The path without the batch's common prefix, wrapping at separators; a link to the model's section where there is one. */
function pathCell(path: string, prefix: string, anchor: string | undefined): string {
  const shown = path.startsWith(prefix) ? path.slice(prefix.length) : path;
  const code = `<code title="${esc(path)}">${breakable(shown)}</code>`;
  return `<td class="path">${anchor ? `<a href="#${esc(anchor)}">${code}</a>` : code}</td>`;
}

function tile(n: number, label: string, tone: '' | 'good' | 'bad' = ''): string {
  return `<div class="tile${tone && n > 0 ? ` ${tone}` : ''}"><span class="n">${n}</span>${esc(label)}</div>`;
}

function batchPage(records: readonly BatchRecord[], gateList: readonly GateResult[] | null, title: string, details: ReadonlyMap<string, LipschitzReport> | null): string {
  const gates = new Map<string, GateResult>();
  for (const g of gateList ?? []) gates.set(g.path, g);
  const count = (f: (r: BatchRecord) => boolean) => records.filter(f).length;
  const bounded = count((r) => r.status === 'bounded');
  const gateFailed = count((r) => gates.get(r.path)?.passed === false);
  const gatePassed = count((r) => gates.get(r.path)?.passed === true);
  const parts: string[] = [];
  parts.push('<header>');
  parts.push('<p class="tool">lipcheck · batch report</p>');
  parts.push(`<h1>${esc(title)}</h1>`);
  const prefix = commonDirPrefix(records.map((r) => r.path));
  const anchors = new Map<string, string>();
  records.forEach((r, i) => { if (details?.has(r.path) && !anchors.has(r.path)) anchors.set(r.path, `model-${i + 1}`); });
  parts.push(`<p>${plural(records.length, 'model')}${prefix ? `, paths below relative to <code>${breakable(prefix)}</code>` : ''}.${anchors.size ? ` ${plural(anchors.size, 'model')} ${anchors.size === 1 ? 'has' : 'have'} a section with ${anchors.size === 1 ? 'its' : 'their'} layers: follow the path.` : ''}</p>`);
  parts.push('</header>');
  parts.push('<section id="counts" class="tiles">');
  parts.push(tile(bounded, `bounded (${count((r) => r.upper?.kind === 'certified')} certified, ${count((r) => r.upper?.kind === 'probabilistic')} probabilistic)`, 'good'));
  parts.push(tile(count((r) => r.status === 'unbounded'), 'unbounded', 'bad'));
  parts.push(tile(count((r) => r.status === 'discontinuous'), 'discontinuous', 'bad'));
  parts.push(tile(count((r) => r.status === 'error'), 'could not be analysed', 'bad'));
  if (gateList) {
    parts.push(tile(gatePassed, 'passed every gate', 'good'));
    parts.push(tile(gateFailed, 'failed a gate', 'bad'));
  }
  parts.push('</section>');
  if (records.length === 0) {
    parts.push('<p>The batch has no models.</p>');
    return page(`lipcheck: ${title}`, parts.join('\n'));
  }
  parts.push('<section id="bound-chart"><h2>Global upper bounds</h2>');
  const charted = records.filter((r) => r.upper !== null && !Number.isNaN(r.upper.value));
  if (charted.length === 0) {
    parts.push('<p>No model has a global upper bound to chart.</p>');
  } else {
    const sorted = [...charted].sort((a, b) => b.upper!.value - a.upper!.value || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const rows: ChartRow[] = sorted.map((r) => {
      const u = r.upper!;
      const failed = gates.get(r.path)?.passed === false;
      const anchor = anchors.get(r.path);
      return {
        label: r.path.startsWith(prefix) ? r.path.slice(prefix.length) : r.path, value: u.value, lower: r.lower, mark: u.kind, failed,
        ...(anchor ? { href: `#${anchor}` } : {}),
        note: `${failed ? '✗ gate failed · ' : ''}${fmt(u.value)} ${u.kind} · ${u.method}`,
        tip: `${r.path}: upper bound ${u.value} (${u.kind}, ${u.method})${r.lower !== null ? `, lower bound ${r.lower}` : ''}.${failed ? ` ${recordMessages(r, gates.get(r.path)).join(' ')}` : ''}`,
      };
    });
    const kinds = LEGEND_KINDS.filter((k) => rows.some((x) => (x.mark as string) === k));
    parts.push(legend(kinds, [...(rows.some((x) => x.lower !== null && x.lower > 0) ? [LEGEND_LOWER] : []), ...(rows.some((x) => x.failed) ? [LEGEND_FAILED] : [])]));
    parts.push(`<div class="chart-wrap">${chartSvg('models', `Global upper bound of ${plural(rows.length, 'model')}, largest first, log scale`, 'upper bound · kind · method', rows)}</div>`);
    const left = records.length - charted.length;
    if (left > 0) parts.push(`<p class="caption">${plural(left, 'model')} without an upper bound ${left === 1 ? 'is' : 'are'} listed in the table only.</p>`);
  }
  parts.push('</section>');
  parts.push(`<section id="model-table"><h2>Models</h2><p class="caption">Click a column header to sort.</p>${batchTable(records, gates, gateList !== null && gateList !== undefined, prefix, anchors)}</section>`);
  for (const [path, anchor] of anchors) {
    const r = details!.get(path)!;
    parts.push(`<section class="model-detail" id="${anchor}"><h2 class="model">${breakable(path)}</h2><p class="caption"><a href="#model-table">back to the table</a> · sha256 <code>${esc(r.model.sha256.slice(0, 12))}</code> · input <code>${breakable(r.input.name)}</code> [${esc(r.input.shape.join(', '))}] · output <code>${breakable(r.output.name)}</code> [${esc(r.output.shape.join(', '))}]</p>`);
    parts.push(modelSections(r, gates.get(path) ?? null, `${anchor}-`));
    parts.push('</section>');
  }
  return page(`lipcheck: ${title}`, parts.join('\n'));
}

/** Renders one model's report or a batch run as one self-contained HTML page (inline CSS, SVG and sorting script; no network). */
export function renderHtml(input: HtmlInput): string {
  if (input.kind === 'model') return modelPage(input.report, input.gates ?? null);
  return batchPage(input.records, input.gates ?? null, input.title ?? 'lipcheck batch report', input.details ?? null);
}
