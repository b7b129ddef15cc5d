import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { BATCH_SCHEMA_VERSION, type BatchRecord, type GateResult } from '../../../src/batch/record.js';
import type { LayerResult } from '../../../src/estimators/autolip.js';
import { renderHtml } from '../../../src/report/html.js';
import type { LipschitzReport } from '../../../src/report/report.js';
import { all, parseXml, textOf, type El } from '../../helpers/xml.js';

const byClass = (el: El, name: string, cls: string): El[] => all(el, name).filter((e) => (e.attrs.class ?? '').split(' ').includes(cls));
const descendants = (el: El): El[] => el.children.flatMap((c) => (typeof c === 'string' ? [] : [c, ...descendants(c)]));
const byId = (el: El, id: string): El => descendants(el).find((e) => e.attrs.id === id) ?? assert.fail(`No element has the id ${id}.`);

const NASTY = `models/<script>alert("x&y")</script> 'q' ünïcödé 🙂\u0001.onnx`;
const NASTY_CLEAN = `models/<script>alert("x&y")</script> 'q' ünïcödé 🙂.onnx`;

function layer(id: string, over: Partial<LayerResult>): LayerResult {
  return { id, kind: 'operator', nodes: [id], opTypes: ['Gemm'], inShape: [1, 4], outShape: [1, 4], estimate: null, upper: null, candidates: [], iterations: 0, ms: 1, note: '', ...over };
}

const LAYERS: LayerResult[] = [
  layer('op1', { nodes: ['conv1', 'bn1'], opTypes: ['Conv', 'BatchNormalization'], estimate: 4.9, upper: { value: 5.09, kind: 'certified', method: 'circular-fft' }, candidates: [{ value: 5.13, kind: 'probabilistic', method: 'lanczos' }] }),
  layer('relu1', { kind: 'activation', opTypes: ['Relu'], estimate: 1, upper: { value: 1, kind: 'certified', method: 'slope' }, note: 'slope in [0, 1]' }),
  layer('op2', { estimate: 1.88, upper: { value: 1.97, kind: 'probabilistic', method: 'lanczos-kw(k=28)' } }),
  layer('op3', { estimate: 0.5 }),
  layer('op4', { estimate: 0, upper: { value: 0, kind: 'certified', method: 'exact' } }),
  layer('op5', { estimate: 1e300, upper: { value: 1e300, kind: 'certified', method: 'exact' } }),
  layer('add', { kind: 'merge', opTypes: ['Add'], note: 'sum of 2 branches: bounds add' }),
  layer('mm<&>', { kind: 'unbounded', opTypes: ['MatMul'], note: 'multiplies two input-dependent tensors' }),
  layer('seg1', { kind: 'segment', nodes: ['a', 'b', 'c', 'd'], opTypes: ['3 operators'], estimate: 3.6, upper: { value: 3.7, kind: 'probabilistic', method: 'combettes-pesquet(m=3)' } }),
];

function report(over: Partial<LipschitzReport> = {}, global: Partial<LipschitzReport['global']> = {}): LipschitzReport {
  return {
    schemaVersion: 1, tool: { name: 'lipcheck', version: '0.1.0' },
    model: { path: 'fixtures/demo.onnx', sha256: '3fcf08cddc6e073c42664f69026a399ad025ba4cc5604e06e704ff745f501405', bytes: 7024, producer: 'lipcheck', opset: 13, irVersion: 8 },
    input: { name: 'image', shape: [1, 1, 12, 12] }, output: { name: 'logits', shape: [1, 3] }, norm: '2',
    settings: { method: 'best', cpWindow: 0, seed: 0, delta: 1e-6, tol: 0.05, iterations: 200, certify: 'auto', device: 'auto', provider: 'cpu' },
    global: {
      status: 'bounded', upper: { value: 19.0139, kind: 'probabilistic', method: 'autolip+cp' }, estimate: 26.11,
      methods: [{ method: 'autolip', upper: { value: 28.4, kind: 'probabilistic', method: 'autolip' }, estimate: 26.1 }, { method: 'autolip+cp', upper: { value: 19.0139, kind: 'probabilistic', method: 'autolip+cp' }, estimate: 17.7 }],
      lower: { value: 3.1487, kind: 'lower', method: 'jacobian-ascent', evaluations: 131 }, ratio: 6.0386, failureProbability: 3e-6, reasons: [], ...global,
    },
    layers: LAYERS, warnings: ['Using the CPU: <no GPU> & no WebGPU.'],
    timings: { loadMs: 5, buildMs: 136, normsMs: 219, lowerMs: 739, totalMs: 1100 },
    ...over,
  };
}

function record(path: string, over: Partial<BatchRecord> = {}): BatchRecord {
  return {
    schemaVersion: BATCH_SCHEMA_VERSION, path, sha256: 'ab'.repeat(32), bytes: 1000, status: 'bounded',
    upper: { value: 19.0139, kind: 'probabilistic', method: 'autolip+cp' }, lower: 3.1487, estimate: 26.11, failureProbability: 3e-6,
    norm: '2', reasons: [], error: null, warnings: 0, ms: 1234, peakRssMb: 210, ...over,
  };
}

const RECORDS: BatchRecord[] = [
  record('a/certified.onnx', { upper: { value: 5.09, kind: 'certified', method: 'circular-fft' }, failureProbability: null, ms: 500 }),
  record('b/over.onnx'),
  record('c/vit.onnx', {
    status: 'unbounded', upper: null, lower: 0.1867, estimate: null, failureProbability: null,
    reasons: [{ node: '/1/fn/MatMul', opType: 'MatMul', status: 'unbounded', reason: 'multiplies two input-dependent tensors, so its output has no global Lipschitz bound' }],
  }),
  record('e/slow.onnx', { status: 'error', upper: null, lower: null, estimate: null, failureProbability: null, error: { code: 'TIMEOUT', exit: 7, message: 'The model took longer than --timeout 60s; raise --timeout to analyse it.' }, ms: 60000 }),
  record(NASTY, { upper: { value: 1e300, kind: 'certified', method: 'exact' }, failureProbability: null, lower: 2 }),
  record('z/zero.onnx', { upper: { value: 0, kind: 'certified', method: 'exact' }, failureProbability: null, lower: null }),
];
const GATES: GateResult[] = [
  { path: 'a/certified.onnx', passed: true, checks: [{ gate: 'max', passed: true, message: 'upper bound 5.09 (certified) is within --max 10' }] },
  { path: 'b/over.onnx', passed: false, checks: [{ gate: 'max', passed: false, message: 'upper bound 19.01 (probabilistic) exceeds --max 10' }] },
  { path: 'c/vit.onnx', passed: false, checks: [{ gate: 'max', passed: false, message: 'the model is unbounded, so no bound can meet --max 10' }] },
  { path: NASTY, passed: false, checks: [{ gate: 'max', passed: false, message: 'upper bound 1e300 exceeds --max 10 <b>&</b>' }] },
];

/** Parses the page strictly and checks what every page must hold: no network, one hashed script and style, each SVG well-formed on its own. */
function checkPage(html: string): El {
  assert.ok(!/https?:\/\//i.test(html), 'The page must not reference any http:// or https:// address.');
  assert.ok(!/<(link|img|iframe|object|embed|base)\b/i.test(html), 'The page must not load anything.');
  assert.ok(!/\b(src|href)=/i.test(html), 'The page must not load anything.');
  for (const m of html.matchAll(/url\(/g)) assert.equal(html.slice(m.index, m.index + 5), 'url(#', 'Only fragment url() references are allowed.');
  assert.equal(html.match(/<script/g)?.length, 1);
  assert.equal(html.match(/<style/g)?.length, 1);
  const doc = parseXml(html);
  assert.equal(doc.name, 'html');
  const [script] = all(doc, 'script');
  const [style] = all(doc, 'style');
  const csp = all(doc, 'meta').find((m) => m.attrs['http-equiv'] === 'Content-Security-Policy')?.attrs.content ?? '';
  const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('base64');
  assert.match(csp, /default-src 'none'/);
  assert.ok(csp.includes(`script-src 'sha256-${sha(textOf(script))}'`), 'The CSP must admit the inline script by its hash.');
  assert.ok(csp.includes(`style-src 'sha256-${sha(textOf(style))}'`), 'The CSP must admit the inline style by its hash.');
  for (const m of html.matchAll(/<svg[\s\S]*?<\/svg>/g)) assert.equal(parseXml(m[0]).name, 'svg');
  return doc;
}

test('a model page names the model, its bound, kind, method, lower bound and ratio', () => {
  const doc = checkPage(renderHtml({ kind: 'model', report: report() }));
  assert.equal(textOf(all(doc, 'title')[0]), 'lipcheck: fixtures/demo.onnx');
  assert.equal(textOf(all(doc, 'h1')[0]), 'fixtures/demo.onnx');
  const text = textOf(doc);
  for (const s of ['3fcf08cddc6e', '[1, 1, 12, 12]', '[1, 3]', 'ℓ2', '19.01', 'probabilistic', 'autolip+cp', '3.149', 'jacobian-ascent', '6.039', 'Using the CPU: <no GPU> & no WebGPU.']) assert.ok(text.includes(s), `The page should show ${s}.`);
  assert.ok(!text.includes('3fcf08cddc6e073c'), 'The header shows a prefix of the sha256 only.');
});

test('the layer chart has one bar per layer with a value, marks unbounded rows, and labels every kind in words', () => {
  const doc = checkPage(renderHtml({ kind: 'model', report: report() }));
  const svg = byId(doc, 'layers');
  const bars = byClass(svg, 'rect', 'bar');
  const valued = LAYERS.filter((l) => l.upper !== null || l.estimate !== null);
  assert.equal(bars.length, valued.length);
  assert.deepEqual(bars.map((b) => b.attrs['data-kind']), valued.map((l) => l.upper?.kind ?? 'estimate'));
  assert.deepEqual(bars.map((b) => Number(b.attrs['data-value'])), valued.map((l) => l.upper?.value ?? l.estimate));
  for (const b of bars) assert.ok(Number(b.attrs.width) >= 3 && Number(b.attrs.x) >= 0 && Number(b.attrs.x) + Number(b.attrs.width) <= Number(svg.attrs.width), `Bar ${JSON.stringify(b.attrs)} must be visible and inside the chart.`);
  const marked = byClass(svg, 'g', 'marked');
  assert.equal(marked.length, 1);
  assert.match(textOf(marked[0]), /unbounded: multiplies two input-dependent tensors/);
  assert.match(textOf(marked[0]), /mm<&>/);
  const legend = textOf(byClass(doc, 'ul', 'legend')[0]);
  for (const k of ['certified', 'probabilistic', 'estimate', 'unbounded']) assert.ok(legend.includes(k), `The legend should name ${k}.`);
  const table = byClass(doc, 'table', 'layers')[0];
  assert.equal(all(all(table, 'tbody')[0], 'tr').length, LAYERS.length);
});

test('an unbounded or discontinuous model page names the nodes behind it', () => {
  const reasons = [
    { node: 'ArgMax_19', opType: 'ArgMax', status: 'discontinuous' as const, reason: 'returns an index (piecewise constant, with jumps)' },
    { node: 'Cast<29>', opType: 'Cast', status: 'discontinuous' as const, reason: 'casts to int32, which rounds the input' },
  ];
  const doc = checkPage(renderHtml({ kind: 'model', report: report({}, { status: 'discontinuous', upper: null, estimate: null, lower: null, ratio: null, methods: [], reasons }) }));
  const verdict = textOf(byId(doc, 'verdict'));
  assert.match(verdict, /discontinuous/);
  assert.match(verdict, /ArgMax node ArgMax_19 returns an index/);
  assert.match(verdict, /Cast node Cast<29> casts to int32/);
  assert.match(verdict, /--output NAME/);
});

test('a model page with gates lists every check, passed and failed', () => {
  const gate: GateResult = { path: 'fixtures/demo.onnx', passed: false, checks: [{ gate: 'max', passed: false, message: 'upper bound 19.01 (probabilistic) exceeds --max 10' }, { gate: 'baseline', passed: true, message: 'upper bound fell by 2%' }] };
  const text = textOf(byId(checkPage(renderHtml({ kind: 'model', report: report(), gates: gate })), 'gates'));
  assert.match(text, /1 gate of 2 failed\./);
  assert.match(text, /failed max upper bound 19\.01 \(probabilistic\) exceeds --max 10/);
  assert.match(text, /passed baseline upper bound fell by 2%/);
});

test('a model page with zero layers, a nasty path and a script-injection warning stays escaped and well-formed', () => {
  const r = report({ layers: [], model: { ...report().model, path: NASTY }, warnings: ['</style><script>alert(1)</script>'] });
  const html = renderHtml({ kind: 'model', report: r });
  const doc = checkPage(html);
  assert.ok(!html.includes('<script>alert'));
  assert.equal(textOf(all(doc, 'h1')[0]), NASTY_CLEAN);
  assert.equal(all(doc, 'svg').length, 0);
  assert.match(textOf(doc), /The report has no layers to chart\./);
  assert.match(textOf(byId(doc, 'warnings')), /<\/style><script>alert\(1\)<\/script>/);
});

test('a batch page counts outcomes, escapes every path, and sorts the bounds chart largest first', () => {
  const html = renderHtml({ kind: 'batch', records: RECORDS, gates: GATES, title: 'Nightly <run> & "friends"' });
  const doc = checkPage(html);
  assert.equal(textOf(all(doc, 'h1')[0]), 'Nightly <run> & "friends"');
  assert.ok(!html.includes('<script>alert'));
  const paths = byClass(doc, 'td', 'path').map(textOf);
  assert.deepEqual(paths, [...RECORDS.slice(0, 4).map((r) => r.path), NASTY_CLEAN, 'z/zero.onnx']);
  const tiles = byClass(doc, 'div', 'tile').map(textOf);
  assert.deepEqual(tiles, ['4bounded (3 certified, 1 probabilistic)', '1unbounded', '0discontinuous', '1could not be analysed', '1passed every gate', '3failed a gate']);
  const svg = byId(doc, 'models');
  const bars = byClass(svg, 'rect', 'bar');
  assert.deepEqual(bars.map((b) => Number(b.attrs['data-value'])), [1e300, 19.0139, 5.09, 0]);
  assert.equal(byClass(svg, 'g', 'failed').length, 2);
  assert.equal(byClass(svg, 'line', 'lower').length, 3);
  assert.match(textOf(doc), /2 models without an upper bound are listed in the table only\./);
});

test('the batch table marks failed gates in words, gives error codes, and carries raw numbers for sorting', () => {
  const doc = checkPage(renderHtml({ kind: 'batch', records: RECORDS, gates: GATES }));
  const table = byClass(doc, 'table', 'batch')[0];
  const heads = all(all(table, 'thead')[0], 'th');
  assert.deepEqual(heads.map(textOf), ['#', 'path', 'status', 'bound', 'kind', 'method', 'lower', 'time', 'gate', 'message']);
  assert.deepEqual(heads.filter((h) => h.attrs['data-type'] === 'num').map(textOf), ['#', 'bound', 'lower', 'time']);
  const rows = all(all(table, 'tbody')[0], 'tr');
  assert.deepEqual(rows.map((r) => (r.attrs.class ?? '').includes('gate-failed')), [false, true, true, false, true, false]);
  const cells = rows.map((r) => all(r, 'td'));
  assert.deepEqual(cells.map((c) => c[3].attrs['data-v']), ['5.09', '19.0139', '', '', '1e+300', '0']);
  assert.deepEqual(cells.map((c) => textOf(c[8])), ['passed', 'failed', 'failed', '—', 'failed', '—']);
  assert.match(textOf(cells[3][2]), /error TIMEOUT/);
  assert.match(textOf(cells[3][9]), /TIMEOUT: The model took longer than --timeout 60s/);
  assert.match(textOf(cells[2][9]), /Gate max failed: the model is unbounded[\s\S]*MatMul node '\/1\/fn\/MatMul'/);
  assert.match(textOf(cells[4][9]), /upper bound 1e300 exceeds --max 10 <b>&<\/b>/);
});

test('an empty batch and a batch where every model failed render without charts', () => {
  const empty = checkPage(renderHtml({ kind: 'batch', records: [] }));
  assert.match(textOf(empty), /The batch has no models\./);
  assert.equal(all(empty, 'svg').length + all(empty, 'table').length, 0);
  const failed = checkPage(renderHtml({ kind: 'batch', records: RECORDS.filter((r) => r.status === 'error'), gates: null }));
  assert.match(textOf(failed), /No model has a global upper bound to chart\./);
  assert.equal(all(failed, 'svg').length, 0);
  assert.equal(all(all(failed, 'tbody')[0], 'tr').length, 1);
  assert.ok(!all(failed, 'th').map(textOf).includes('gate'), 'Without gates there is no gate column.');
});
