import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exactVec } from '../../../src/estimators/exact.js';
import { gordanCertificate, maxMarginPoint, verifyGordan } from '../../../src/linalg/lp.js';

const rowsOf = (rs: number[][]) => rs.map((r) => Float64Array.from(r));

test('maxMarginPoint finds a point strictly inside a nonempty cone {g·(x, t) > 0, t > 0}', async () => {
  // x1 − 0.5t > 0, −x1 + 2t > 0, x2 + x3 > 0 (n = 3)
  const rows = rowsOf([[1, 0, 0, -0.5], [-1, 0, 0, 2], [0, 1, 1, 0]]);
  const r = await maxMarginPoint(rows, 3);
  assert.equal(r.status, 'interior');
  if (r.status !== 'interior') return;
  assert.ok(r.margin > 1e-3);
  for (const g of rows) assert.ok(g.reduce((a, v, c) => a + v * r.point[c], 0) > 0);
  assert.ok(r.point[3] > 0);
  // the solver instance is reused: an LP solved in between must not change the answer (determinism)
  await maxMarginPoint(rowsOf([[1, 0, 0, -1], [-1, 0, 0, -1], [0, 1, 0, 0.5], [0, 0, 1, 0.1]]), 3);
  const again = await maxMarginPoint(rows, 3);
  assert.deepEqual(again, r);
});

test('an empty cone: HiGHS\'s duals give a Gordan certificate that verifies exactly; tampered certificates are rejected', async () => {
  // x1 > t and −x1 > t with x2 free (n = 2): empty for t > 0, yet {g·v ≥ 0} contains (0, ±1, 0)
  const rows = rowsOf([[1, 0, -1], [-1, 0, -1], [0, 1, 0.25]]);
  const r = await maxMarginPoint(rows, 2);
  assert.equal(r.status, 'empty');
  if (r.status !== 'empty') return;
  const exact = rows.map((g) => exactVec(g));
  const cert = gordanCertificate(exact, r.duals, 2);
  assert.ok(cert, 'no certificate recovered');
  assert.ok(verifyGordan(exact, cert, 2));
  // tampering: a changed multiplier, a row of the wrong sign, a zero row, negative or all-zero multipliers
  const y = [...cert.y];
  y[0] += 1n;
  assert.equal(verifyGordan(exact, { support: cert.support, y }, 2), false);
  const flipped = exact.map((v, i) => (i === 0 ? { m: v.m.map((x) => -x), e: v.e } : v));
  assert.equal(verifyGordan(flipped, cert, 2), false);
  assert.equal(verifyGordan([exactVec([0, 0, 0])], { support: [0], y: [1n] }, 2), false);
  assert.equal(verifyGordan(exact, { support: cert.support, y: cert.y.map((v) => -v) }, 2), false);
  assert.equal(verifyGordan(exact, { support: cert.support, y: cert.y.map(() => 0n) }, 2), false);
});

test('a cone that is a hyperplane (g and −g): empty interior, certified with exact cancellation; a nonempty one is never certified', async () => {
  const g = [0.3, -1.7, 0.1, 0.625];
  const rows = rowsOf([g, g.map((v) => -v)]);
  const r = await maxMarginPoint(rows, 3);
  assert.equal(r.status, 'empty');
  if (r.status === 'empty') assert.ok(gordanCertificate(rows.map((v) => exactVec(v)), r.duals, 3));
  // {x1 > 0}: feasible, whatever hint is offered no certificate verifies
  const one = [exactVec([1, 0, 0, 0])];
  assert.equal(gordanCertificate(one, [1], 3), null);
});
