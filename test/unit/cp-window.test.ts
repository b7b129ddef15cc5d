import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpWindowFor } from '../../src/index.js';

test('cpWindowFor: the longest product window that fits the work budget, from the cost model\'s per-apply flop', () => {
  const parts = [1, 2, 3, 4].map(() => ({ flop: 10, iterations: 10 })); // 10 flop per apply, 10 steps per product
  // pairs: 3 products × 10 × 20 flop = 600; triples: 2 × 10 × 30 = 600 (1200); the whole: 10 × 40 = 400 (1600)
  assert.equal(cpWindowFor(parts, 10_000), 4);
  assert.equal(cpWindowFor(parts, 1_500), 3);
  assert.equal(cpWindowFor(parts, 700), 2);
  assert.equal(cpWindowFor(parts, 500), 1);
  // exactly at the budget still fits: the count, not a clock, decides
  assert.equal(cpWindowFor(parts, 1_600), 4);
  assert.equal(cpWindowFor(parts, 1_599), 3);
});
