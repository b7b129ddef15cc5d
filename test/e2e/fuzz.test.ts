import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runFuzz, type FuzzLine } from '../../scripts/fuzz.js';
import { mutate } from '../helpers/fuzz-worker.js';

/** The seeded subset CI runs; `npm run fuzz -- --count 20000` runs the long one with the same runner. */
const COUNT = 600, BATCH = 200;
/** A mutation without a result for this long counts as a hang (a watchdog, not a timing criterion). */
const HANG_MS = 300_000;

test(`fuzz: ${COUNT} seeded mutations of the fixtures (truncations, byte flips, 0xff runs, NaN/Infinity/huge floats) never exit 70 or hang`, { timeout: 1_800_000 }, async (t) => {
  const lines: FuzzLine[] = [];
  const s = await runFuzz({ first: 0, count: COUNT, jobs: 1, batch: BATCH, hangMs: HANG_MS, onLine: (l) => lines.push(l) });
  t.diagnostic(`by exit code ${JSON.stringify(s.byExit)}; by outcome ${JSON.stringify(s.byOutcome)}`);
  assert.equal(s.total, COUNT, 'every mutation has exactly one result');
  assert.deepEqual([...new Set(lines.map((l) => l.i))].sort((a, b) => a - b), Array.from({ length: COUNT }, (_, i) => i));
  assert.deepEqual(s.failures.map((f) => `#${f.i} ${f.file ?? ''} ${f.mutation ?? ''} → ${f.exit}: ${f.message ?? ''}`), [], 'exit 70 or hang');
  for (const l of lines) {
    if (l.outcome === 'bounded') assert.ok(typeof (l as { upper?: unknown }).upper === 'number' && Number.isFinite((l as { upper: number }).upper), `bounded without a finite bound: ${JSON.stringify(l)}`);
    assert.ok([0, 2, 3, 4].includes(l.exit as number), `exit ${l.exit}: ${JSON.stringify(l)}`);
  }
  // the subset must reach the analysis, not only the parser: some mutations are analysed, some refused for their numbers
  assert.ok((s.byExit['0'] ?? 0) > COUNT / 20, `only ${s.byExit['0'] ?? 0} mutations analysed`);
  assert.ok(lines.some((l) => l.exit === 3 && /NaN, infinite or overflowing/.test(l.message ?? '')), 'no mutation reached the finite-number audit');
});

test('fuzz mutations are reproducible: the same index gives the same bytes', () => {
  for (const i of [0, 7, 599, 19_999]) {
    const a = mutate(i), b = mutate(i);
    assert.equal(a.mutation, b.mutation);
    assert.deepEqual(a.bytes, b.bytes);
  }
  const kinds = new Set(Array.from({ length: 200 }, (_, i) => mutate(i).mutation.replace(/[@×(].*/, '')));
  assert.deepEqual([...kinds].sort(), ['delete', 'ff', 'flip', 'float', 'insert', 'truncate']);
});
