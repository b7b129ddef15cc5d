import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { goldenModels, outcomeOf } from '../../scripts/gen-golden.js';
import { hasShared } from '../helpers/dense.js';

const golden: Record<string, unknown> = JSON.parse(readFileSync(new URL('../golden/outcomes.json', import.meta.url), 'utf8'));

test('every model has its pinned outcome (test/golden/outcomes.json; npx tsx scripts/gen-golden.ts regenerates it)', { timeout: 900_000 }, async (t) => {
  if (!hasShared) t.diagnostic('../shared/models absent: fixtures only');
  const models = goldenModels();
  for (const m of models) {
    assert.ok(m.key in golden, `${m.key} has no pinned outcome: regenerate the golden file and review it`);
    assert.deepEqual(await outcomeOf(m.path), golden[m.key], m.key);
  }
  if (hasShared) assert.equal(models.length, Object.keys(golden).length, 'every pinned model was checked');
  t.diagnostic(`${models.length} models`);
});
