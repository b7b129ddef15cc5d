import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fillSections, generatedSections, README } from '../../scripts/gen-docs.js';

test('README tables match the option records and the op registry (npm run docs regenerates them)', () => {
  const text = readFileSync(README, 'utf8');
  assert.equal(fillSections(text, generatedSections()), text);
});

test('README starts with the two set-up commands', () => {
  const text = readFileSync(README, 'utf8');
  const firstBlock = text.slice(text.indexOf('```'), text.indexOf('```', text.indexOf('```') + 3));
  assert.match(firstBlock, /npm ci && npm start/);
  assert.match(firstBlock, /npm test/);
});
