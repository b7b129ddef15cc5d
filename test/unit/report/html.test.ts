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
  assert.ok(!/\bsrc=/i.test(html), 'The page must not load anything.');
  for (const m of html.matchAll(/\bhref="([^"]*)"/gi)) assert.ok(m[1].startsWith('#'), `Links stay inside the page: ${m[1]}.`);
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
  // slope-1 activations are collapsed (their own test below)
  const valued = LAYERS.filter((l) => (l.upper !== null || l.estimate !== null) && !(l.kind === 'activation' && l.upper?.value === 1));
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
  const rows = byClass(doc, 'table', 'layers').flatMap((t) => all(all(t, 'tbody')[0], 'tr'));
  assert.equal(rows.length, LAYERS.length, 'Every layer has a table row, collapsed or not.');
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

// ---- issue 13 item 5: labels, ticks, composition, collapsed activations, batch details ----

const svgTexts = (svg: El): string[] => all(svg, 'text').map(textOf);
const chartLabels = (svg: El): string[] => byClass(svg, 'g', 'row').map((g) => textOf(all(g, 'text')[0]));

test('batch labels drop the common directory prefix, which the page states once', () => {
  const paths = ['zoo/dist_shift/mnist_concat.onnx', 'zoo/dist_shift/cifar/resnet.onnx', 'zoo/dist_shift/tiny.onnx'];
  const doc = checkPage(renderHtml({ kind: 'batch', records: paths.map((p, i) => record(p, { upper: { value: 2 + i, kind: 'certified', method: 'exact' } })) }));
  assert.deepEqual(chartLabels(byId(doc, 'models')), ['tiny.onnx', 'cifar/resnet.onnx', 'mnist_concat.onnx']);
  assert.deepEqual(byClass(doc, 'td', 'path').map(textOf), ['mnist_concat.onnx', 'cifar/resnet.onnx', 'tiny.onnx']);
  assert.match(textOf(all(doc, 'header')[0]), /paths below relative to zoo\/dist_shift\//);
  // a prefix is a whole directory: 'zoo/a' and 'zoo/ab' share 'zoo/', not 'zoo/a'; one model keeps its full path
  const two = checkPage(renderHtml({ kind: 'batch', records: [record('zoo/a/x.onnx'), record('zoo/ab/y.onnx')] }));
  assert.deepEqual(byClass(two, 'td', 'path').map(textOf), ['a/x.onnx', 'ab/y.onnx']);
  const one = checkPage(renderHtml({ kind: 'batch', records: [record('zoo/a/x.onnx')] }));
  assert.deepEqual(byClass(one, 'td', 'path').map(textOf), ['zoo/a/x.onnx']);
});

test('long labels are shortened at separators, never inside a word, and paths wrap only at separators', () => {
  const long = 'benchmarks/verification_competition_2024/dist_shift_mnist_concat_wide_variant.onnx';
  const other = 'elsewhere/m.onnx';
  const html = renderHtml({ kind: 'batch', records: [record(long), record(other, { upper: { value: 3, kind: 'certified', method: 'exact' } })] });
  const doc = checkPage(html);
  const [label] = chartLabels(byId(doc, 'models'));
  assert.ok(Array.from(label).length <= 36, `The label ${label} fits its column.`);
  assert.ok(label.startsWith('…'), `The label ${label} says it was shortened.`);
  const kept = label.slice(1);
  assert.ok(long.endsWith(kept), 'The label keeps the end of the path.');
  assert.match(long.charAt(long.length - kept.length - 1), /[/_.-]/, `The label ${label} starts right after a separator, not inside a word.`);
  // the table's path cell has a break opportunity after every separator and nowhere else
  const cell = /<td class="path"><code[^>]*>(.*?)<\/code><\/td>/.exec(html)![1];
  assert.equal(cell, long.replace(/([/_.-])/g, '$1<wbr/>'));
  assert.ok(!html.includes('overflow-wrap: anywhere'), 'No style may break paths at any character.');
  // a long note beside a bar ends on a whole word too
  const method = 'combettes-pesquet(m=7, window=5)+seqlip-certified';
  const noteDoc = checkPage(renderHtml({ kind: 'batch', records: [record('a.onnx', { upper: { value: 4.5, kind: 'certified', method } }), record('b.onnx')] }));
  const full = `4.500 certified · ${method}`;
  const note = byClass(byId(noteDoc, 'models'), 'g', 'row').map((g) => textOf(all(g, 'text').at(-1)!)).find((t) => t.startsWith('4.500'))!;
  assert.ok(note.endsWith('…') && Array.from(note).length <= 52, `The note ${note} is shortened.`);
  const kept2 = note.slice(0, -1);
  assert.ok(full.startsWith(kept2) && /[\s,;/_.(-]/.test(full.charAt(kept2.length - 1) + full.charAt(kept2.length)), `The note ${note} ends at a word boundary.`);
});

test('every tick label of a log axis has the same format, 10 to a power', () => {
  const layers = [1e-4, 0.5, 3, 2e4, 7e11].map((v, i) => layer(`op${i + 1}`, { upper: { value: v, kind: 'certified', method: 'exact' } }));
  const doc = checkPage(renderHtml({ kind: 'model', report: report({ layers }) }));
  const svg = byId(doc, 'layers');
  const ticks = all(svg, 'text').filter((t) => Number(t.attrs.y) < 40 && t.attrs['text-anchor'] === 'middle').map(textOf);
  assert.ok(ticks.length >= 5, `Expected several ticks, got ${ticks.join(' ')}.`);
  for (const t of ticks) assert.match(t, /^10⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+$/, `Tick ${t} must be written as 10 to a power.`);
  const powers = ticks.map((t) => Number(Array.from(t.slice(2), (c) => '⁻⁰¹²³⁴⁵⁶⁷⁸⁹'.indexOf(c) === 0 ? '-' : String('⁻⁰¹²³⁴⁵⁶⁷⁸⁹'.indexOf(c) - 1)).join('')));
  assert.ok(powers.includes(-4) && powers.includes(12) && powers.includes(0), `The axis spans 1e-4 to 7e11 through 1: ${powers.join(', ')}.`);
  assert.ok(!svgTexts(svg).some((t) => /^1e\d|^10000$/.test(t)));
});

// A chain: op1 ×5.2, relu (1), op2 ×2, relu (1), op3 ×3 bounded together with op2 by seg1 (4.5 instead of 6), op4 ×0.5.
const CHAIN: LayerResult[] = [
  layer('op1', { nodes: ['conv1'], upper: { value: 5.2, kind: 'certified', method: 'circular-fft' } }),
  layer('relu1', { kind: 'activation', nodes: ['relu1'], opTypes: ['Relu'], estimate: 1, upper: { value: 1, kind: 'certified', method: 'slope' }, note: 'slope in [0, 1]' }),
  layer('op2', { nodes: ['fc1'], upper: { value: 2, kind: 'certified', method: 'exact-eig' } }),
  layer('relu2', { kind: 'activation', nodes: ['relu2'], opTypes: ['LeakyRelu'], estimate: 1, upper: { value: 1, kind: 'certified', method: 'slope' }, note: 'slope in [0.1, 1]' }),
  layer('op3', { nodes: ['fc2'], upper: { value: 3, kind: 'probabilistic', method: 'lanczos-kw(k=20)' } }),
  layer('seg1', { kind: 'segment', nodes: ['fc1', 'fc2'], opTypes: ['2 operators'], estimate: 4.4, upper: { value: 4.5, kind: 'probabilistic', method: 'combettes-pesquet(m=2)' }, candidates: [{ value: 6, kind: 'probabilistic', method: 'autolip' }, { value: 4.5, kind: 'probabilistic', method: 'combettes-pesquet(m=2)' }] }),
  layer('op4', { nodes: ['fc3'], upper: { value: 0.5, kind: 'certified', method: 'exact-eig' } }),
  layer('tanh', { kind: 'activation', nodes: ['tanh'], opTypes: ['Tanh'], estimate: 1.5, upper: { value: 1.5, kind: 'certified', method: 'slope' }, note: 'slope in [0, 1.5]' }),
];
const CHAIN_BOUND = 5.2 * 4.5 * 0.5 * 1.5; // 17.55, what AutoLip composes from these rows

test('the composition view multiplies the factors along a chain and ends at the global bound', () => {
  const r = report({ layers: CHAIN }, {
    upper: { value: CHAIN_BOUND * (1 + 1e-15), kind: 'probabilistic', method: 'autolip+cp' }, estimate: 16,
    methods: [{ method: 'autolip', upper: { value: 5.2 * 6 * 0.5 * 1.5, kind: 'probabilistic', method: 'autolip' }, estimate: 21 }, { method: 'autolip+cp', upper: { value: CHAIN_BOUND * (1 + 1e-15), kind: 'probabilistic', method: 'autolip+cp' }, estimate: 16 }, { method: 'loose', upper: { value: 5.2 * 6 * 0.5 * 1.5 * 4, kind: 'certified', method: 'loose' }, estimate: null }],
  });
  const doc = checkPage(renderHtml({ kind: 'model', report: r }));
  const section = byId(doc, 'composition');
  const svg = byId(section, 'running');
  const bars = byClass(svg, 'rect', 'bar').map((b) => Number(b.attrs['data-value']));
  // op1; op2 and op3 with AutoLip's product; seg1 replacing that product (op2 · op3 = 6) by 4.5; op4, tanh; then the
  // global bound itself; the slope-1 ReLUs are left out
  const expected = [5.2, 5.2 * 2, 5.2 * 2 * 3, 5.2 * 4.5, 5.2 * 4.5 * 0.5, CHAIN_BOUND, CHAIN_BOUND * (1 + 1e-15)];
  assert.equal(bars.length, expected.length);
  bars.forEach((b, i) => assert.ok(Math.abs(b / expected[i] - 1) < 1e-12, `bar ${i}: ${b} against ${expected[i]}`));
  assert.deepEqual(chartLabels(svg), ['1 op1 Gemm', '3 op2 Gemm', '5 op3 Gemm', '6 seg1 2 operators', '7 op4 Gemm', '8 tanh Tanh', 'global upper bound']);
  assert.match(textOf(svg), /×3\.000 → 31\.20 \(AutoLip; seg1 replaces\)/);
  const text = textOf(section);
  assert.match(text, /×4\.500 → 23\.40/);
  assert.match(text, /The last product is the global bound 17\.55\./);
  assert.match(text, /2 activation rows with slope 1 \(Relu ×1, LeakyRelu ×1\) are left out/);
  // per-method contributions: AutoLip 23.4 against the reported 17.55 (÷1.333), and the segment's 6 → 4.5 (÷1.333)
  const methods = all(all(byClass(section, 'table', 'methods')[0], 'tbody')[0], 'tr').map((tr) => all(tr, 'td').map(textOf));
  assert.deepEqual(methods.map((c) => [c[0], c[1], c[3]]), [['autolip', '23.40', ''], ['autolip+cp reported', '17.55', '÷1.333'], ['loose', '93.60', '×4.000']]);
  const seg = all(all(byClass(section, 'table', 'segments')[0], 'tbody')[0], 'tr').map((tr) => all(tr, 'td').map(textOf));
  assert.deepEqual(seg, [['6', 'seg1', '6.000', '4.500', 'combettes-pesquet(m=2)', '÷1.333']]);
});

test('with merges the view shows each factor, not a running product across parallel branches, and says why', () => {
  const layers: LayerResult[] = [
    layer('op1', { nodes: ['c1'], upper: { value: 2, kind: 'certified', method: 'exact' } }),
    layer('op2', { nodes: ['c2'], upper: { value: 3, kind: 'certified', method: 'exact' } }),
    layer('add', { kind: 'merge', nodes: ['add'], opTypes: ['Add'], note: 'sum of 2 branches: bounds add' }),
    layer('op3', { nodes: ['c3'], upper: { value: 4, kind: 'certified', method: 'exact' } }),
    layer('op4', { nodes: ['c4'], upper: { value: 5, kind: 'certified', method: 'exact' } }),
  ];
  const doc = checkPage(renderHtml({ kind: 'model', report: report({ layers }, { upper: { value: 50, kind: 'certified', method: 'autolip' }, methods: [] }) }));
  const section = byId(doc, 'composition');
  assert.equal(descendants(section).filter((e) => e.attrs.id === 'running').length, 0, 'No running product off a chain.');
  const svg = byId(section, 'factors');
  assert.deepEqual(byClass(svg, 'rect', 'bar').map((b) => Number(b.attrs['data-value'])), [2, 3, 4, 5]);
  assert.deepEqual(chartLabels(svg), ['1 op1 Gemm', '2 op2 Gemm', '3 add Add', '4 op3 Gemm', '5 op4 Gemm']);
  assert.match(textOf(section), /The graph has 1 merge: there the branches' bounds add/);
  assert.ok(!chartLabels(svg).includes('global upper bound'), 'Without a chain no product is presented as the global bound.');
});

test('activation rows with slope 1 are collapsed out of the chart into their own table', () => {
  const doc = checkPage(renderHtml({ kind: 'model', report: report({ layers: CHAIN }) }));
  const labels = chartLabels(byId(doc, 'layers'));
  assert.deepEqual(labels, ['1 op1 Gemm', '3 op2 Gemm', '5 op3 Gemm', '6 seg1 2 operators', '7 op4 Gemm', '8 tanh Tanh'], 'The tanh (slope 1.5) stays; both slope-1 rows go.');
  assert.match(textOf(byId(doc, 'layer-chart')), /2 activation rows with slope 1 \(Relu ×1, LeakyRelu ×1\) are not drawn/);
  const collapsed = byId(doc, 'slope-one');
  assert.equal(collapsed.name, 'details');
  assert.ok(!('open' in collapsed.attrs), 'The slope-1 rows start collapsed.');
  assert.deepEqual(all(all(collapsed, 'tbody')[0], 'tr').map((tr) => textOf(all(tr, 'td')[0])), ['2', '4']);
  assert.deepEqual(all(all(byClass(doc, 'table', 'layers')[0], 'tbody')[0], 'tr').map((tr) => textOf(all(tr, 'td')[0])), ['1', '3', '5', '6', '7', '8']);
});

test('batch rows link to a per-model section when the report is there, with ids unique on the page', () => {
  const withDetail = report({ layers: CHAIN, model: { ...report().model, path: 'm/b.onnx' } });
  const details = new Map([['m/b.onnx', withDetail]]);
  const html = renderHtml({ kind: 'batch', records: [record('m/a.onnx'), record('m/b.onnx')], gates: [{ path: 'm/b.onnx', passed: false, checks: [{ gate: 'max', passed: false, message: 'upper bound 19.01 exceeds --max 10' }] }], details });
  const doc = checkPage(html);
  const cells = byClass(doc, 'td', 'path');
  assert.equal(all(cells[0], 'a').length, 0, 'A model without a report has no link.');
  const [link] = all(cells[1], 'a');
  assert.equal(link.attrs.href, '#model-2');
  const section = byId(doc, 'model-2');
  assert.match(textOf(all(section, 'h2')[0]), /m\/b\.onnx/);
  assert.match(textOf(byId(section, 'model-2-verdict')), /19\.01/);
  assert.match(textOf(byId(section, 'model-2-gates')), /exceeds --max 10/);
  assert.equal(byClass(byId(section, 'model-2-layers'), 'rect', 'bar').length, 6);
  assert.ok(byClass(byId(section, 'model-2-running'), 'rect', 'bar').length > 0);
  // the chart label links there too, and every id is unique
  const chartLinks = all(byId(doc, 'models'), 'a').map((a) => a.attrs.href);
  assert.deepEqual(chartLinks, ['#model-2']);
  const ids = descendants(doc).map((e) => e.attrs.id).filter(Boolean);
  assert.equal(new Set(ids).size, ids.length, `Duplicate ids: ${ids.filter((x, i) => ids.indexOf(x) !== i).join(', ')}.`);
  for (const m of html.matchAll(/href="#([^"]+)"/g)) assert.ok(ids.includes(m[1]), `The link #${m[1]} has a target.`);
});
