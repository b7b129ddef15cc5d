import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { buildIr } from '../../src/frontend/build.js';
import { emitAdjoint, emitForward } from '../../src/backend/emit.js';
import { mergeLinear } from '../../src/ir/merge.js';
import { createOrtOperator } from '../../src/backend/operators.js';
import { dot, norm2, Random } from '../../src/linalg/random.js';
import { readModel } from '../../src/onnx/read-model.js';
import { encodeGraph } from '../../src/onnx/writer.js';
import { FIXTURES, hasShared, SHARED } from '../helpers/dense.js';

const models = [
  ...readdirSync(FIXTURES).filter((f) => f.endsWith('.onnx') && !f.startsWith('broken') && !f.startsWith('symbolic')).map((f) => FIXTURES + f),
  ...(hasShared ? readdirSync(SHARED).filter((f) => f.endsWith('.onnx')).map((f) => SHARED + f) : []),
];

test('⟨Ax, y⟩ = ⟨x, Aᵀy⟩ for every merged operator of every fixture and shared model', async (t) => {
  if (!hasShared) t.diagnostic('../shared/models absent: checking fixtures only');
  let checked = 0;
  for (const path of models) {
    let built;
    try {
      built = await buildIr(readModel(path), { seed: 1, runtime: { device: 'cpu' } });
    } catch {
      continue; // models lipcheck refuses are covered by the e2e tests
    }
    for (const b of mergeLinear(built.ir)) {
      if (b.kind !== 'operator') continue;
      const r = b.region;
      const op = await createOrtOperator({ forward: encodeGraph(emitForward(r)), adjoint: encodeGraph(emitAdjoint(r)), inDims: r.inShape, outDims: r.outShape, name: r.id }, { device: 'cpu' });
      const rng = new Random(checked + 11);
      const x = rng.unitVector(op.inSize), y = rng.unitVector(op.outSize);
      const ax = await op.apply(x), aty = await op.adjoint(y);
      await op.dispose();
      const lhs = dot(ax, y), rhs = dot(x, aty);
      // float32 kernels: the pairing agrees to rounding relative to the sizes involved
      const scale = norm2(ax) * norm2(y) + norm2(x) * norm2(aty);
      assert.ok(Math.abs(lhs - rhs) <= 1e-5 * scale + 1e-30, `${path} ${r.id}: ⟨Ax,y⟩=${lhs} ⟨x,Aᵀy⟩=${rhs}`);
      checked++;
    }
  }
  assert.ok(checked >= 10, `only ${checked} operators checked`);
  t.diagnostic(`${checked} operators checked`);
});
