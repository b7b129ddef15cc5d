import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { gramMargin, measureRegion, roundingError, roundingMargin } from '../../src/estimators/operator-norm.js';
import { settings } from '../helpers/mlp.js';
import { regionBound } from '../../src/estimators/region-bounds.js';
import { buildIr } from '../../src/frontend/build.js';
import { emitAdjoint, emitForward } from '../../src/backend/emit.js';
import { mergeLinear, type LinearRegion } from '../../src/ir/merge.js';
import { toFloat64 } from '../../src/ir/tensor.js';
import { createOrtOperator } from '../../src/backend/operators.js';
import { norm2, Random } from '../../src/linalg/random.js';
import { readModel } from '../../src/onnx/read-model.js';
import { encodeGraph } from '../../src/onnx/writer.js';
import { convMatrix, denseMul, FIXTURES, hasShared, SHARED, sigmaMax } from '../helpers/dense.js';

/** The region's matrix in float64 (rows = outputs) when it is one Gemm/MatMul or one 2-D conv between isometries. */
function denseOf(r: LinearRegion): { m: Float64Array; rows: number; cols: number } | null {
  const weighted = r.nodes.filter((n) => n.prim.op !== 'reshape');
  if (weighted.length !== 1) return null;
  const n = weighted[0];
  const p = n.prim;
  if (p.op === 'matmul' && p.side === 'right' && p.weight.dims.length === 2 && n.inShapes[0].length === 2 && n.inShapes[0][0] === 1) {
    const [k, c] = p.weight.dims;
    const w = toFloat64(p.weight);
    const m = new Float64Array(c * k);
    for (let i = 0; i < k; i++) for (let j = 0; j < c; j++) m[j * k + i] = w[i * c + j];
    return { m, rows: c, cols: k };
  }
  if (p.op === 'conv' && p.group === 1 && p.weight.dims.length === 4 && p.strides[0] === p.strides[1] && p.dilations.every((d) => d === 1) && n.inShapes[0][0] === 1) {
    const [, , h, w] = n.inShapes[0];
    if (n.inShapes[0][1] * h * w * n.outShape[1] * n.outShape[2] * n.outShape[3] > 4e6) return null;
    return convMatrix(toFloat64(p.weight), p.weight.dims, h, w, [p.pads[0], p.pads[1], p.pads[2], p.pads[3]], p.strides[0]);
  }
  return null;
}

/** A lower bound on ‖M‖₂ (rows × cols, row-major, float64): ‖M·x‖ after `steps` power steps on MᵀM from a fixed start. */
function powerNorm(m: Float64Array, rows: number, cols: number, steps: number): number {
  let x = new Random(99).unitVector(cols);
  let s = 0;
  for (let k = 0; k < steps; k++) {
    const y = denseMul(m, rows, cols, x, false);
    s = norm2(y);
    const z = denseMul(m, rows, cols, y, true);
    const nz = norm2(z);
    if (!(nz > 0)) break;
    x = Float64Array.from(z, (v) => v / nz);
  }
  return s;
}

const models = [
  ...['gemm_sv', 'conv', 'conv_bn', 'demo', 'mlp_relu', 'tiny_relu'].map((f) => `${FIXTURES}${f}.onnx`),
  ...(hasShared ? readdirSync(SHARED).filter((f) => f.endsWith('.onnx')).map((f) => SHARED + f) : []),
];

test('the float32 rounding margin covers |fl32(AᵀA v) − AᵀA v| (float64) on fixtures and shared models', async (t) => {
  if (!hasShared) t.diagnostic('../shared/models absent: fixtures only');
  let checked = 0;
  let worstUse = 0, worstTight = 0, shrink = 1;
  for (const path of models) {
    let built;
    try { built = await buildIr(readModel(path), { seed: 1, runtime: { device: 'cpu' } }); } catch { continue; }
    for (const b of mergeLinear(built.ir)) {
      if (b.kind !== 'operator') continue;
      const dense = denseOf(b.region);
      if (!dense) continue;
      const { m, rows, cols } = dense;
      const op = await createOrtOperator({ forward: encodeGraph(emitForward(b.region)), adjoint: encodeGraph(emitAdjoint(b.region)), inDims: b.region.inShape, outDims: b.region.outShape, name: b.region.id }, { device: 'cpu' });
      const v = new Random(checked).unitVector(cols);
      const got = await op.adjoint(await op.apply(v));
      await op.dispose();
      // exact float64 AᵀA v of the unrounded v: the margin must also cover rounding v to float32
      const av = new Float64Array(rows);
      for (let i = 0; i < rows; i++) { let s = 0; for (let j = 0; j < cols; j++) s += m[i * cols + j] * v[j]; av[i] = s; }
      const atav = new Float64Array(cols);
      for (let i = 0; i < rows; i++) { const a = av[i]; if (a !== 0) for (let j = 0; j < cols; j++) atav[j] += m[i * cols + j] * a; }
      const err = norm2(Float64Array.from(got, (x, i) => x - atav[i]));
      const rb = regionBound(b.region, '2', 0);
      const eta = roundingMargin(rb.gammaSum, rb.absNorm);
      assert.ok(err <= eta, `${path} ${b.region.id}: error ${err} > margin ${eta}`);
      worstUse = Math.max(worstUse, err / eta);
      // kwUpper's premise: the Gram error is at most 2‖A‖·gP + (gP)² with the operator's own norm, not its ‖|A|‖ bound.
      // A float64 power-iteration value s ≤ ‖A‖ stands in for ‖A‖: a smaller allowance, so a stronger check.
      const s = powerNorm(m, rows, cols, 30);
      const tight = gramMargin({ eps: roundingError(rb).eps, total: s });
      assert.ok(err <= tight, `${path} ${b.region.id}: error ${err} > 2‖A‖·gP + (gP)² = ${tight} (‖A‖ ≥ ${s})`);
      worstTight = Math.max(worstTight, err / tight);
      shrink = Math.min(shrink, tight / eta);
      checked++;
    }
  }
  assert.ok(checked >= 8, `only ${checked} operators checked`);
  t.diagnostic(`${checked} operators; the observed error used at most ${(100 * worstUse).toFixed(2)}% of the margin 2gP² + (gP)², at most ${(100 * worstTight).toFixed(2)}% of 2‖A‖gP + (gP)², which is down to ${(100 * shrink).toFixed(2)}% of the former`);
});

test('every probabilistic bound measureRegion reports (KW or Lanczos-polynomial factor, with the margin) is at least the exact σ_max', async (t) => {
  if (!hasShared) t.diagnostic('../shared/models absent: fixtures only');
  let checked = 0, poly = 0, closest = Infinity;
  for (const path of models) {
    let built;
    try { built = await buildIr(readModel(path), { seed: 1, runtime: { device: 'cpu' } }); } catch { continue; }
    let index = 0;
    for (const b of mergeLinear(built.ir)) {
      if (b.kind !== 'operator') continue;
      index++;
      const dense = denseOf(b.region);
      if (!dense || Math.min(dense.rows, dense.cols) > 600 || dense.rows * dense.cols > 1.5e6) continue;
      const sigma = sigmaMax(dense.m, dense.rows, dense.cols);
      const m = await measureRegion(b.region, { ...settings, certify: 'off' }, index);
      for (const c of m.candidates.filter((x) => x.kind === 'probabilistic')) {
        assert.ok(c.value >= sigma, `${path} ${b.region.id}: ${c.method} ${c.value} < σ_max ${sigma}`);
        closest = Math.min(closest, c.value / sigma - 1);
        if (c.method.startsWith('lanczos-poly')) poly++;
      }
      checked++;
    }
  }
  assert.ok(checked >= 8, `only ${checked} operators checked`);
  t.diagnostic(`${checked} operators (${poly} bounds from the polynomial factor); the closest bound was ${closest.toExponential(2)} above σ_max`);
});
