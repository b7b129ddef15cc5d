import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BATCH_SCHEMA_VERSION, type BatchRecord, type GateResult } from '../../../src/batch/record.js';
import { renderJunit } from '../../../src/report/junit.js';

import { all, parseXml, textOf, type El } from '../../helpers/xml.js';

function record(path: string, over: Partial<BatchRecord> = {}): BatchRecord {
  return {
    schemaVersion: BATCH_SCHEMA_VERSION, path, sha256: 'ab'.repeat(32), bytes: 1000, status: 'bounded',
    upper: { value: 19.0139, kind: 'probabilistic', method: 'autolip+cp' }, lower: 3.1487, estimate: 26.11, failureProbability: 3e-6,
    norm: '2', reasons: [], error: null, warnings: 1, ms: 1234, peakRssMb: 210, ...over,
  };
}

const NASTY = `models/<script>alert("x&y")</script> 'q' ünïcödé 🙂\u0001\uD800 ]]> end.onnx`;
const NASTY_CLEAN = `models/<script>alert("x&y")</script> 'q' ünïcödé 🙂 ]]> end.onnx`;

const records: BatchRecord[] = [
  record('a/certified.onnx', { upper: { value: 5.09, kind: 'certified', method: 'circular-fft' }, failureProbability: null, ms: 500 }),
  record('b/over.onnx'),
  record('c/vit.onnx', {
    status: 'unbounded', upper: null, lower: 0.1867, estimate: null, failureProbability: null,
    reasons: [{ node: '/1/fn/MatMul', opType: 'MatMul', status: 'unbounded', reason: 'multiplies two input-dependent tensors, so its output has no global Lipschitz bound' }],
  }),
  record('d/unet.onnx', {
    status: 'discontinuous', upper: null, lower: null, estimate: null, failureProbability: null,
    reasons: [{ node: 'ArgMax_19', opType: 'ArgMax', status: 'discontinuous', reason: 'returns an index (piecewise constant, with jumps)' }],
  }),
  record('e/slow.onnx', { status: 'error', upper: null, lower: null, estimate: null, failureProbability: null, error: { code: 'TIMEOUT', exit: 7, message: 'The model took longer than --timeout 60s; raise --timeout to analyse it.' }, ms: 60000 }),
  record(NASTY, { upper: { value: 1e300, kind: 'certified', method: 'exact' }, failureProbability: null, lower: 0 }),
];
const gates: GateResult[] = [
  { path: 'a/certified.onnx', passed: true, checks: [{ gate: 'max', passed: true, message: 'upper bound 5.09 (certified) is within --max 10' }] },
  {
    path: 'b/over.onnx', passed: false, checks: [
      { gate: 'max', passed: false, message: 'upper bound 19.01 (probabilistic) exceeds --max 10' },
      { gate: 'baseline', passed: true, message: 'upper bound rose by 1% over the baseline, within --max-increase 5%' },
    ],
  },
  { path: 'e/slow.onnx', passed: false, checks: [{ gate: 'max', passed: false, message: 'the model could not be analysed (TIMEOUT), so it has no bound to hold against --max 10' }] },
  { path: NASTY, passed: false, checks: [{ gate: 'max', passed: false, message: 'upper bound 1e300 exceeds --max 10 & "<quoted>"\nsecond line' }] },
];

test('renderJunit writes well-formed XML with the counts of tests, failures and errors', () => {
  const doc = parseXml(renderJunit(records, gates));
  assert.equal(doc.name, 'testsuites');
  const [suite] = all(doc, 'testsuite');
  for (const el of [doc, suite]) {
    assert.equal(el.attrs.name, 'lipcheck');
    assert.equal(el.attrs.tests, '6');
    assert.equal(el.attrs.failures, '2');
    assert.equal(el.attrs.errors, '1');
    assert.equal(el.attrs.time, ((500 + 1234 * 4 + 60000) / 1000).toFixed(3));
  }
  const cases = all(suite, 'testcase');
  assert.deepEqual(cases.map((c) => c.attrs.name), [...records.slice(0, 5).map((r) => r.path), NASTY_CLEAN]);
  assert.ok(cases.every((c) => c.attrs.classname === 'lipcheck'));
  assert.deepEqual(cases.map((c) => c.attrs.time), ['0.500', '1.234', '1.234', '1.234', '60.000', '1.234']);
  assert.deepEqual(cases.map((c) => all(c, 'failure').length + 2 * all(c, 'error').length), [0, 1, 0, 0, 2, 1]);
});

test('a failed gate is a failure carrying every gate message; a passed gate is reported in system-out', () => {
  const cases = all(parseXml(renderJunit(records, gates)), 'testcase');
  const [failure] = all(cases[1], 'failure');
  assert.equal(failure.attrs.message, 'upper bound 19.01 (probabilistic) exceeds --max 10');
  assert.equal(failure.attrs.type, 'max');
  assert.match(textOf(failure), /FAILED \(max\): upper bound 19\.01 \(probabilistic\) exceeds --max 10/);
  assert.match(textOf(failure), /passed \(baseline\): upper bound rose by 1%/);
  assert.match(textOf(all(cases[0], 'system-out')[0]), /Gate max passed: upper bound 5\.09 \(certified\) is within --max 10/);
});

test('an unanalysable model is an error with its code and message, never also a failure, and keeps its gate messages', () => {
  const [error] = all(all(parseXml(renderJunit(records, gates)), 'testcase')[4], 'error');
  assert.equal(error.attrs.type, 'TIMEOUT');
  assert.equal(error.attrs.message, 'The model took longer than --timeout 60s; raise --timeout to analyse it.');
  assert.match(textOf(error), /Exit code 7\.\nGate max failed: the model could not be analysed \(TIMEOUT\)/);
});

test('system-out gives the bound, its kind, method and lower bound, or the nodes behind unbounded and discontinuous', () => {
  const outs = all(parseXml(renderJunit(records, null)), 'system-out').map(textOf);
  assert.match(outs[0], /Global Lipschitz bound \(ℓ2\): 5\.090 \[certified, circular-fft\]\./);
  assert.match(outs[0], /Witnessed lower bound: 3\.149; upper\/lower = 1\.617\./);
  assert.match(outs[1], /19\.01 \[probabilistic, autolip\+cp, fails with probability at most 3\.000e-6\]/);
  assert.match(outs[2], /Global Lipschitz constant \(ℓ2\): unbounded\./);
  assert.match(outs[2], /MatMul node '\/1\/fn\/MatMul' multiplies two input-dependent tensors/);
  assert.match(outs[3], /ArgMax node 'ArgMax_19' returns an index/);
  assert.equal(outs.length, 5);
});

test('without gates nothing fails, and only errors count', () => {
  const doc = parseXml(renderJunit(records, null));
  assert.equal(doc.attrs.failures, '0');
  assert.equal(doc.attrs.errors, '1');
  assert.equal(all(doc, 'failure').length, 0);
});

test('a nasty path and message are escaped in attributes and text, and illegal characters are stripped', () => {
  const xml = renderJunit(records, gates, 'suite <"&\'>');
  assert.ok(!xml.includes('<script>'));
  assert.ok(!xml.includes('\u0001'));
  const doc = parseXml(xml);
  assert.equal(doc.attrs.name, 'suite <"&\'>');
  const nasty = all(doc, 'testcase')[5];
  assert.equal(nasty.attrs.name, NASTY_CLEAN);
  const [failure] = all(nasty, 'failure');
  assert.equal(failure.attrs.message, 'upper bound 1e300 exceeds --max 10 & "<quoted>"\nsecond line');
  assert.match(textOf(failure), /& "<quoted>"\nsecond line/);
  assert.match(textOf(all(nasty, 'system-out')[0]), /1\.000e\+300 \[certified, exact\]/);
});

test('an empty batch is an empty, well-formed suite', () => {
  const doc = parseXml(renderJunit([], []));
  assert.equal(doc.attrs.tests, '0');
  assert.equal(doc.attrs.time, '0.000');
  assert.equal(all(doc, 'testcase').length, 0);
});

test('the strict checker itself rejects what is not well-formed', () => {
  for (const bad of ['<a>&</a>', '<a b="<"/>', '<a><b></a></b>', '<a/><b/>', '<a b="1" b="2"/>', '<a>\u0001</a>', '<a>&foo;</a>', '<a>x]]>y</a>', '<a b=1/>']) {
    assert.throws(() => parseXml(bad), undefined, bad);
  }
});
