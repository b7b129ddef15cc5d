import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { makeFixtures } from '../../fixtures/make-fixtures.js';
import { FIXTURES } from '../helpers/dense.js';

test('committed fixtures equal a fresh run of fixtures/make-fixtures.ts', () => {
  for (const [name, bytes] of makeFixtures()) {
    assert.ok(readFileSync(FIXTURES + name).equals(Buffer.from(bytes)), `${name} differs from a fresh generation: run npm run fixtures`);
  }
});
