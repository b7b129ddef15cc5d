import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createPhaseProgress, progressMode } from '../../../src/cli/phase-progress.js';
import type { AnalysisPhase } from '../../../src/index.js';

/** The calls analyze() makes for a model of 3 operators and 2 segments, in order. */
const CALLS: [number, number, string, AnalysisPhase][] = [
  [0, 1, 'm.onnx', 'build'], [0, 3, 'op1', 'norms'], [1, 3, 'op2', 'norms'], [2, 3, 'op3', 'norms'], [3, 3, 'done', 'norms'],
  [0, 2, 'seg1', 'segments'], [1, 2, 'seg2', 'segments'], [0, 1, 'lower bound', 'lower'],
];

/** A terminal-like stream that keeps what is written to it. */
function fakeTerminal(): { stream: Writable & { isTTY: boolean; columns: number }; text: () => string } {
  const chunks: string[] = [];
  const stream = Object.assign(new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }), { isTTY: true, columns: 200 });
  return { stream, text: () => chunks.join('') };
}

test('progress mode: none with --quiet, lines with --verbose or off a terminal, a bar on a terminal', () => {
  assert.equal(progressMode({ quiet: true, stderrIsTTY: true }), 'none');
  assert.equal(progressMode({ quiet: true, stderrIsTTY: false }), 'none');
  assert.equal(progressMode({ verbose: true, stderrIsTTY: true }), 'lines');
  assert.equal(progressMode({ stderrIsTTY: false }), 'lines');
  assert.equal(progressMode({ stderrIsTTY: true }), 'bar');
});

test('lines: one line per phase, in order, with the operator and segment counts', () => {
  const out: string[] = [];
  const p = createPhaseProgress('lines', 'm.onnx', (s) => out.push(s));
  for (const c of CALLS) p.update(...c);
  p.stop();
  assert.deepEqual(out.map((l) => l.replace(/^lipcheck: \[\d+\.\ds\] /, '')), [
    'm.onnx: reading the graph\n', 'm.onnx: operator norms, 3 operators\n', 'm.onnx: tighter bounds on segments (CP, SeqLip), 2 segments\n', 'm.onnx: witnessed lower bound\n',
  ]);
});

test('bar: every phase is drawn on the terminal stream, with its step count, and cleared at the end', async () => {
  const t = fakeTerminal();
  const written: string[] = [];
  const p = createPhaseProgress('bar', 'm.onnx', (s) => written.push(s), t.stream, 0);
  await new Promise((r) => setTimeout(r, 20)); // the bar appears after delayMs (0 here)
  for (const c of CALLS) p.update(...c);
  p.stop();
  const text = t.text();
  let at = -1;
  for (const phase of ['m.onnx: reading the graph', 'm.onnx: operator norms', 'm.onnx: tighter bounds on segments (CP, SeqLip)', 'm.onnx: witnessed lower bound']) {
    const i = text.indexOf(phase, at + 1);
    assert.ok(i > at, `the bar shows '${phase}' after the phase before it`);
    at = i;
  }
  assert.match(text, /operator norms \[[^\]]*\] 0\/3 op1 /);
  assert.match(text, /witnessed lower bound \[[^\]]*\] +\d+s/);
  assert.match(text, /\x1b\[2K$/, 'the bar line is cleared when the analysis ends');
  assert.match(text, /segments \(CP, SeqLip\) \[[^\]]*\] 0\/2 seg1/);
  assert.deepEqual(written, [], 'the bar writes only to its stream');
});

test('none: nothing at all', () => {
  const out: string[] = [];
  const p = createPhaseProgress('none', 'm.onnx', (s) => out.push(s));
  for (const c of CALLS) p.update(...c);
  p.stop();
  assert.deepEqual(out, []);
});
