import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import { FIXTURES } from '../helpers/dense.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../../docs/report.schema.json', import.meta.url), 'utf8'));
const validate = new (Ajv as unknown as typeof Ajv.default)({ allErrors: true }).compile(schema);

for (const [file, args] of [['demo.onnx', []], ['product.onnx', []], ['argmax.onnx', []], ['gemm_sv.onnx', ['--norm', 'inf']], ['residual.onnx', ['--certify', 'off']]] as [string, string[]][]) {
  test(`--json for ${file} ${args.join(' ')} validates against docs/report.schema.json`, () => {
    const r = spawnSync(process.execPath, [BIN, FIXTURES + file, '--json', '--device', 'cpu', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.ok(validate(doc), JSON.stringify(validate.errors, null, 1));
  });
}

test('the schema rejects an estimate presented as the global upper bound', () => {
  const r = spawnSync(process.execPath, [BIN, FIXTURES + 'gemm_sv.onnx', '--json', '--device', 'cpu'], { encoding: 'utf8' });
  const doc = JSON.parse(r.stdout);
  doc.global.upper.kind = 'estimate';
  assert.equal(validate(doc), false);
});
