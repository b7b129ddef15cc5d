import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chainMargin, composeRegions, cpSegmentBound, segmentAutoLip, segmentFactor, type Segment } from '../../../src/estimators/cp.js';
import type { Bound } from '../../../src/estimators/kinds.js';
import { gramMargin, roundingMargin } from '../../../src/estimators/operator-norm.js';
import { emitAdjoint, emitForward } from '../../../src/backend/emit.js';
import type { Block } from '../../../src/ir/merge.js';
import type { OperatorBackend } from '../../../src/ir/operator.js';
import { setFusedLanczos } from '../../../src/backend/fused-lanczos.js';
import { foldPointwiseEnds } from '../../../src/estimators/product-fold.js';
import { regionFlop } from '../../../src/linalg/work.js';
import { resetRuntimeStats, runtimeStats } from '../../../src/backend/runtime.js';
import { createOrtOperator, denseMatrixOf } from '../../../src/backend/operators.js';
import { dot, norm2, Random } from '../../../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { convMatrix, sigmaMax } from '../../helpers/dense.js';
import { ACTS, bruteForce, matmul, measureAll, mlpModel, opNorm, pipeline, randomDense, runtime, settings, tensor, f32, witness, type Act, type Dense } from '../../helpers/mlp.js';


const exactProduct = (layers: readonly Dense[], act: Act, norm: '2' | 'inf') =>
  layers.reduce((p, l) => p * opNorm(l.w, l.rows, l.cols, norm), 1) * Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1])) ** (layers.length - 1);

/** Runs CP on a random MLP and checks witness ≤ brute force ≤ CP ≤ AutoLip; returns CP / AutoLip. */
async function checkChain(widths: number[], act: Act, seed: number, norm: '2' | 'inf' = '2'): Promise<number> {
  const rng = new Random(seed);
  const layers = randomDense(widths, rng);
  const { segments, blocks } = await pipeline(mlpModel(layers, act));
  assert.equal(segments.length, 1);
  assert.equal(segments[0].regions.length, layers.length);
  const s = { ...settings, norm };
  const known = await measureAll(blocks, s);
  const cp = await cpSegmentBound(segments[0], s, { known });
  const autolip = segmentAutoLip(segments[0], known);
  const lower = witness(layers, act, norm, rng);
  const brute = bruteForce(layers, act.slope, norm);
  const tag = `${act.op} ${widths.join('-')} seed ${seed} ℓ${norm}`;
  assert.equal(cp.upper.kind, 'certified', tag);
  assert.ok(lower <= brute * (1 + 1e-12), `${tag}: witness ${lower} > brute force ${brute}`);
  assert.ok(brute <= cp.upper.value * (1 + 1e-12), `${tag}: brute force ${brute} > CP ${cp.upper.value}`);
  assert.ok(cp.upper.value <= autolip.upper.value * (1 + 1e-9), `${tag}: CP ${cp.upper.value} > AutoLip ${autolip.upper.value}`);
  assert.ok(cp.upper.value <= exactProduct(layers, act, norm) * (1 + 1e-6), `${tag}: CP above the exact product of norms`);
  // the estimate runs the recursion on float32 Lanczos values: no guarantee, but close to the certified value here
  assert.ok(cp.estimate !== null && cp.estimate <= cp.upper.value * (1 + 1e-6) && cp.estimate >= brute * (1 - 1e-4), `${tag}: estimate ${cp.estimate}, upper ${cp.upper.value}, brute force ${brute}`);
  assert.equal(cp.norms, (layers.length * (layers.length - 1)) / 2, 'only products of two or more operators are measured when single norms are known');
  return cp.upper.value / autolip.upper.value;
}

test('ReLU networks: witnessed lower ≤ max over activation patterns ≤ CP ≤ AutoLip, certified', async () => {
  const archs = [[3, 12, 2], [4, 6, 5, 3], [5, 4, 4, 4, 2], [2, 5, 7, 3], [6, 3, 3, 3, 6], [3, 8, 4, 1]];
  const ratios: number[] = [];
  for (const [k, widths] of archs.entries()) ratios.push(await checkChain(widths, ACTS.relu, 100 + k));
  assert.ok(ratios.filter((r) => r < 0.99).length >= 4, `CP should beat AutoLip on most random nets: ratios ${ratios.map((r) => r.toFixed(3))}`);
});

test('slopes other than [0, 1]: LeakyRelu(0.1), Tanh, Sigmoid', async () => {
  for (const [k, name] of ['leaky01', 'tanh', 'sigmoid'].entries()) {
    await checkChain([4, 6, 5, 2], ACTS[name], 200 + k);
    await checkChain([3, 4, 4, 4, 3], ACTS[name], 300 + k);
  }
});

test('ℓ∞: CP with exact row sums of small products bounds every pattern and beats the product of row sums', async () => {
  const ratios = [];
  for (const [k, widths] of [[4, 6, 5, 3], [3, 4, 4, 4, 2]].entries()) ratios.push(await checkChain(widths, ACTS.relu, 400 + k, 'inf'));
  assert.ok(ratios.some((r) => r < 0.99), `ratios ${ratios}`);
});

/** S = U diag(2, 1, 1/2) Vᵀ and S⁻¹ = V diag(1/2, 1, 2) Uᵀ, U and V rotations, stored in float32. */
function inversePair(): [Dense, Dense] {
  const rot = (t: number, axis: number) => {
    const c = Math.cos(t), s = Math.sin(t), m = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    const [p, q] = axis === 0 ? [1, 2] : [0, 1];
    m[p * 3 + p] = c; m[p * 3 + q] = -s; m[q * 3 + p] = s; m[q * 3 + q] = c;
    return Float64Array.from(m);
  };
  const u = matmul(rot(0.7, 0), 3, 3, rot(-0.4, 1), 3), v = matmul(rot(1.1, 1), 3, 3, rot(0.3, 0), 3);
  const diag = (d: number[]) => Float64Array.from({ length: 9 }, (_, k) => (k % 4 === 0 ? d[k / 4] : 0));
  const t = (m: Float64Array) => Float64Array.from({ length: 9 }, (_, k) => m[(k % 3) * 3 + Math.floor(k / 3)]);
  const s = matmul(matmul(u, 3, 3, diag([2, 1, 0.5]), 3), 3, 3, t(v), 3);
  const sInv = matmul(matmul(v, 3, 3, diag([0.5, 1, 2]), 3), 3, 3, t(u), 3);
  const zero = new Float64Array(3);
  return [{ w: f32(s), rows: 3, cols: 3, b: zero }, { w: f32(sInv), rows: 3, cols: 3, b: zero }];
}

test('S⁻¹·σ(S·x) with LeakyRelu(0.5): CP = c + r‖S⁻¹‖‖S‖ = 7/4 against AutoLip (c + r)‖S⁻¹‖‖S‖ = 4', async () => {
  // ‖S‖ = ‖S⁻¹‖ = 2 and ‖S⁻¹S‖ = 1; c = 3/4, r = 1/4: CP = 3/4 + 1/4·4 = 7/4, AutoLip = 1·2·2 = 4, ratio 16/7
  const [s, sInv] = inversePair();
  const { segments, blocks } = await pipeline(mlpModel([s, sInv], ACTS.leaky05));
  const known = await measureAll(blocks);
  const cp = await cpSegmentBound(segments[0], settings, { known });
  const autolip = segmentAutoLip(segments[0], known);
  assert.equal(cp.upper.kind, 'certified');
  assert.ok(Math.abs(cp.upper.value - 7 / 4) <= 1e-5, `CP ${cp.upper.value}`);
  assert.ok(cp.upper.value >= 7 / 4 * (1 - 1e-6), 'a valid bound: ‖S⁻¹S‖ = 1 is a constant of the network (all units positive)');
  assert.ok(Math.abs(autolip.upper.value - 4) <= 1e-5, `AutoLip ${autolip.upper.value}`);
  assert.ok(Math.abs(autolip.upper.value / cp.upper.value - 16 / 7) <= 1e-5);
});

test('S·σ(S⁻¹·σ(S·x)): CP = c²s + 2crs + r²s³ = 19/8 against AutoLip (c + r)²s³ = 8; window 2 measures 5 norms and loses nothing, window 1 is AutoLip', async () => {
  const [s, sInv] = inversePair();
  const { segments, blocks } = await pipeline(mlpModel([s, sInv, s], ACTS.leaky05));
  const seg = segments[0];
  const [c, r, sv] = [0.75, 0.25, 2];
  const expected = c * c * sv + 2 * c * r * sv + r * r * sv ** 3;
  assert.equal(expected, 19 / 8);
  const full = await cpSegmentBound(seg, settings);
  assert.equal(full.norms, 6);
  assert.ok(Math.abs(full.upper.value - expected) <= 1e-5 * expected, `CP ${full.upper.value} vs ${expected}`);
  const autolip = segmentAutoLip(seg, await measureAll(blocks));
  assert.ok(Math.abs(autolip.upper.value / full.upper.value - 8 / expected) <= 1e-5, 'ratio 64/19');
  const w2 = await cpSegmentBound(seg, settings, { window: 2 });
  assert.equal(w2.norms, 5);
  assert.equal(w2.upper.method, 'combettes-pesquet(m=3, window=2)');
  // ‖S S⁻¹ S‖ ≤ min(‖S‖·‖S⁻¹S‖, ‖SS⁻¹‖·‖S‖) = 2 is exact here
  assert.ok(Math.abs(w2.upper.value - expected) <= 1e-5 * expected);
  const w1 = await cpSegmentBound(seg, settings, { window: 1 });
  assert.equal(w1.norms, 3);
  assert.ok(Math.abs(w1.upper.value - autolip.upper.value) <= 1e-9 * autolip.upper.value, `window 1: ${w1.upper.value} vs ${autolip.upper.value}`);
  await assert.rejects(cpSegmentBound(seg, settings, { window: 0 }), /window must be a positive integer/);
});

test('composed partial products: forward is W3·W2·W1 exactly (float64 graph) and the adjoint pairs with it', async () => {
  const rng = new Random(7);
  const layers = randomDense([4, 5, 6, 3], rng);
  const { segments } = await pipeline(mlpModel(layers, ACTS.relu));
  const seg = segments[0];
  const region = composeRegions(seg, 0, 2);
  assert.equal(region.input, seg.regions[0].input);
  assert.equal(region.output, seg.regions[2].output);
  assert.equal(region.nodes.length, seg.regions.reduce((a, r) => a + r.nodes.length, 0));
  assert.ok(region.nodes.every((n) => !seg.activations.some((a) => n.inputs.includes(a.output))), 'no node reads an activation output');
  const m = await denseMatrixOf(encodeGraph(emitForward(region, 'float64')), region.inShape, region.outShape, runtime, region.id);
  const want = matmul(layers[2].w, 3, 6, matmul(layers[1].w, 6, 5, layers[0].w, 4), 4);
  for (let k = 0; k < want.length; k++) assert.ok(Math.abs(m[k] - want[k]) <= 1e-12 * (1 + Math.abs(want[k])), `entry ${k}: ${m[k]} vs ${want[k]}`);
  const op = await createOrtOperator({ forward: encodeGraph(emitForward(region)), adjoint: encodeGraph(emitAdjoint(region)), inDims: region.inShape, outDims: region.outShape, name: region.id }, runtime);
  try {
    for (let t = 0; t < 3; t++) {
      const x = rng.unitVector(4), y = rng.unitVector(3);
      const lhs = dot(await op.apply(x), y), rhs = dot(x, await op.adjoint(y));
      assert.ok(Math.abs(lhs - rhs) <= 1e-5 * sigmaMax(want, 3, 4), `⟨Ax, y⟩ = ${lhs} vs ⟨x, Aᵀy⟩ = ${rhs}`);
      assert.ok(norm2(await op.apply(x)) > 0);
    }
  } finally {
    await op.dispose();
  }
});

test('findSegments: a skip across an activation ends a segment; a residual inside the next region does not', async () => {
  const rng = new Random(11);
  const w = (r: number, c: number) => tensor([r, c], Array.from({ length: r * c }, () => rng.normal() * 0.5));
  const gemm = (x: string, wn: string, y: string): NodeSpec => ({ opType: 'Gemm', inputs: [x, wn], outputs: [y], attrs: { transB: { i: 1 } }, name: y });
  const relu = (x: string, y: string): NodeSpec => ({ opType: 'Relu', inputs: [x], outputs: [y], name: y });
  // x → g1 → r1 → (g2 + r1) → r2 → g3 → r3 → g4 ; concat(r3-branch g5, g4 input skip) breaks: r3 also feeds a Concat
  const nodes: NodeSpec[] = [
    gemm('x', 'w1', 'g1'), relu('g1', 'r1'),
    gemm('r1', 'w2', 'g2'), { opType: 'Add', inputs: ['g2', 'r1'], outputs: ['s2'], name: 's2' }, relu('s2', 'r2'),
    gemm('r2', 'w3', 'g3'), relu('g3', 'r3'),
    gemm('r3', 'w4', 'g4'), relu('g4', 'r4'),
    { opType: 'Concat', inputs: ['r4', 'r3'], outputs: ['cat'], attrs: { axis: { i: 1 } }, name: 'cat' },
    gemm('cat', 'w5', 'g5'), relu('g5', 'r5'), gemm('r5', 'w6', 'y'),
  ];
  const bytes = encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, 4] }], outputs: [{ name: 'y' }], nodes, initializers: [['w1', w(4, 4)], ['w2', w(4, 4)], ['w3', w(5, 4)], ['w4', w(5, 5)], ['w5', w(3, 10)], ['w6', w(2, 3)]] });
  const { ir, blocks, segments } = await pipeline(bytes);
  const names = (s: Segment) => s.regions.map((r) => r.nodes.map((n) => n.name).join('+'));
  assert.deepEqual(segments.map(names), [['g1', 'g2+s2', 'g3'], ['g5', 'y']]);
  assert.deepEqual(segments.map((s) => s.activations.map((a) => a.name)), [['r1', 'r2'], ['r5']]);
  for (const s of segments) {
    assert.equal(s.blocks.length, 2 * s.regions.length - 1);
    assert.ok(s.blocks.every((k, i) => i === 0 || k > s.blocks[i - 1]));
    assert.equal((blocks[s.blocks[s.blocks.length - 1]] as Extract<Block, { kind: 'operator' }>).region.output, s.output);
  }
  assert.equal(segments[1].output, ir.output);
  // the segment with a residual region is still bounded by CP and no worse than AutoLip
  const known = await measureAll(blocks);
  const cp = await cpSegmentBound(segments[0], settings, { known });
  assert.ok(cp.upper.value <= segmentAutoLip(segments[0], known).upper.value * (1 + 1e-9));
});

test('certify strict gives a certified CP, certify off a probabilistic one with its union-bound count', async () => {
  const rng = new Random(21);
  const layers = randomDense([5, 6, 6, 2], rng);
  const { segments } = await pipeline(mlpModel(layers, ACTS.relu));
  const brute = bruteForce(layers, [0, 1], '2');
  const strict = await cpSegmentBound(segments[0], { ...settings, certify: 'strict' });
  assert.equal(strict.upper.kind, 'certified');
  assert.equal(strict.probabilistic, 0);
  const off = await cpSegmentBound(segments[0], { ...settings, certify: 'off' });
  assert.equal(off.upper.kind, 'probabilistic');
  assert.equal(off.probabilistic, 6);
  assert.equal(off.norms, 6);
  for (const b of [strict, off]) assert.ok(b.upper.value >= brute, `${b.upper.kind} ${b.upper.value} < ${brute}`);
});

test('small CNN: CP stays above a witness and below AutoLip; long conv products use the chain rounding margin', async () => {
  const rng = new Random(31);
  const [c0, c1, c2, n] = [2, 8, 8, 6];
  const k1 = f32(Array.from({ length: c1 * c0 * 9 }, () => rng.normal() * 0.35)), k2 = f32(Array.from({ length: c2 * c1 * 9 }, () => rng.normal() * 0.2));
  const b1 = f32(Array.from({ length: c1 }, () => rng.normal() * 0.3)), b2 = f32(Array.from({ length: c2 }, () => rng.normal() * 0.3));
  const fc = f32(Array.from({ length: 3 * c2 * n * n }, () => rng.normal() * 0.1));
  const conv = (x: string, wn: string, bn: string, y: string): NodeSpec => ({ opType: 'Conv', inputs: [x, wn, bn], outputs: [y], attrs: { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } }, name: y });
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c0, n, n] }], outputs: [{ name: 'y' }], nodes: [
      conv('x', 'k1', 'b1', 'h1'), { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] }, conv('a1', 'k2', 'b2', 'h2'), { opType: 'Relu', inputs: ['h2'], outputs: ['a2'] },
      { opType: 'Flatten', inputs: ['a2'], outputs: ['f'] }, { opType: 'Gemm', inputs: ['f', 'fc'], outputs: ['y'], attrs: { transB: { i: 1 } } },
    ],
    initializers: [['k1', tensor([c1, c0, 3, 3], k1)], ['b1', tensor([c1], b1)], ['k2', tensor([c2, c1, 3, 3], k2)], ['b2', tensor([c2], b2)], ['fc', tensor([3, c2 * n * n], fc)]],
  });
  const { segments, blocks } = await pipeline(bytes);
  assert.equal(segments.length, 1);
  assert.equal(segments[0].regions.length, 3);
  const known = await measureAll(blocks);
  const cp = await cpSegmentBound(segments[0], settings, { known });
  const autolip = segmentAutoLip(segments[0], known);
  const m1 = convMatrix(k1, [c1, c0, 3, 3], n, n, [1, 1, 1, 1], 1), m2 = convMatrix(k2, [c2, c1, 3, 3], n, n, [1, 1, 1, 1], 1);
  const layers: Dense[] = [
    { w: m1.m, rows: m1.rows, cols: m1.cols, b: Float64Array.from({ length: m1.rows }, (_, i) => b1[Math.floor(i / (n * n))]) },
    { w: m2.m, rows: m2.rows, cols: m2.cols, b: Float64Array.from({ length: m2.rows }, (_, i) => b2[Math.floor(i / (n * n))]) },
    { w: fc, rows: 3, cols: c2 * n * n, b: new Float64Array(3) },
  ];
  const lower = witness(layers, ACTS.relu, '2', rng, 100);
  assert.ok(lower <= cp.upper.value, `witness ${lower} > CP ${cp.upper.value}`);
  assert.ok(cp.upper.value <= autolip.upper.value * (1 + 1e-9));
  assert.ok(cp.upper.value < 0.9 * autolip.upper.value, `CP ${cp.upper.value} vs AutoLip ${autolip.upper.value}`);
  assert.ok(cp.products.some((p) => /^lanczos-(kw|poly)-chain/.test(p.upper.method)), cp.products.map((p) => `${p.id}: ${p.upper.method}`).join(', '));
  // ℓ∞: onnxruntime has no float64 Conv, so conv products keep the composed row sums; the conv-free op3 is exact
  const inf = { ...settings, norm: 'inf' as const };
  const cpInf = await cpSegmentBound(segments[0], inf);
  assert.equal(cpInf.upper.kind, 'certified');
  assert.ok(witness(layers, ACTS.relu, 'inf', rng, 50) <= cpInf.upper.value);
  assert.ok(cpInf.upper.value <= segmentAutoLip(segments[0], await measureAll(blocks, inf)).upper.value * (1 + 1e-9));
});

test('chainMargin of one region is roundingMargin; segmentFactor takes the smaller bound, preferring a certified one within 0.1%', () => {
  const g = 3e-6, a = 40;
  const one = gramMargin(chainMargin([{ gammaSum: g, absNorm: a }], () => 1, a));
  assert.ok(one >= roundingMargin(g, a) && one <= roundingMargin(g, a) * (1 + 1e-12));
  // two regions of norm 2 and |W| norm 40 each: η = 2·g·40 + g·40·2, far below the composition's with P = 1600
  const two = chainMargin([{ gammaSum: g, absNorm: a }, { gammaSum: g, absNorm: a }], (i, j) => (i === j ? 2 : 4), 4);
  assert.ok(two.eps >= 160 * g && two.eps <= 160 * g * (1 + 1e-12) && two.total === 4);
  assert.ok(gramMargin(two) < roundingMargin(2 * g, a * a) / 100);
  const cert = (v: number) => ({ value: v, kind: 'certified' as const, method: 'x' });
  const prob = (v: number) => ({ value: v, kind: 'probabilistic' as const, method: 'y' });
  const al = (upper: Bound, estimate: number) => ({ method: 'autolip', upper, estimate });
  const cpc = (upper: Bound, estimate: number) => ({ method: 'cp', upper, estimate });
  assert.equal(segmentFactor([al(cert(10), 9), cpc(cert(4), 3)]).chosen, 'cp');
  assert.equal(segmentFactor([al(cert(4), 3.9), cpc(cert(5), 4.5)]).chosen, 'autolip');
  assert.deepEqual(segmentFactor([al(cert(4.002), 4), cpc(prob(4), 3.9)]), { upper: cert(4.002), estimate: 3.9, chosen: 'autolip' });
  assert.equal(segmentFactor([al(cert(4.1), 4), cpc(prob(4), 3.9)]).chosen, 'cp');
  // an estimate-only candidate (greedy SeqLip) lowers the estimate, never the bound
  const greedy = { method: 'seqlip', upper: null, estimate: 1 };
  assert.deepEqual(segmentFactor([al(cert(4), 3.9), greedy]), { upper: cert(4), estimate: 1, chosen: 'autolip' });
  assert.equal(segmentFactor([al(cert(4), 3.9), cpc(cert(3), 3), { method: 'seqlip', upper: cert(2.5), estimate: 2 }]).chosen, 'seqlip');
  assert.throws(() => segmentFactor([greedy]), /No upper bound/);
});

/** The dense product last · … · first of consecutive layers' matrices, in float64. */
const denseProduct = (mats: readonly { m: Float64Array; rows: number; cols: number }[]) => {
  let p = mats[0].m;
  for (let k = 1; k < mats.length; k++) p = matmul(mats[k].m, mats[k].rows, mats[k].cols, p, mats[0].cols);
  return { m: p, rows: mats[mats.length - 1].rows, cols: mats[0].cols };
};

/**
 * The Combettes–Pesquet partition sum computed independently in float64 from exact SVDs (ml-matrix) of every partial
 * product W_j⋯W_i: L_0 = ‖W_0‖, L_j = c^j‖W_j⋯W_0‖ + Σ_{i<j} c^{j−1−i}·r·‖W_j⋯W_{i+1}‖·L_i, one slope range [a, b]
 * for every activation (c = |a + b|/2, r = (b − a)/2).
 */
function exactPartitionSum(mats: readonly { m: Float64Array; rows: number; cols: number }[], slope: readonly [number, number]): number {
  const c = Math.abs(slope[0] + slope[1]) / 2, r = (slope[1] - slope[0]) / 2;
  const norm = (i: number, j: number) => { const p = denseProduct(mats.slice(i, j + 1)); return sigmaMax(p.m, p.rows, p.cols); };
  const l: number[] = [norm(0, 0)];
  for (let j = 1; j < mats.length; j++) {
    let v = c ** j * norm(0, j);
    for (let i = 0; i < j; i++) v += c ** (j - 1 - i) * r * norm(i + 1, j) * l[i];
    l.push(v);
  }
  return l[l.length - 1];
}

/** The backend of `settings`, counting sessions and runs: Gram maps (one run per applyInto/apply), operators, dense matrices. */
function countingBackend(inner: OperatorBackend) {
  const count = { grams: 0, gramRuns: 0, halves: 0, operators: 0, operatorRuns: 0, dense: 0 };
  const backend: OperatorBackend = {
    parallel: inner.parallel,
    async operator(region) {
      count.operators++;
      const op = await inner.operator(region);
      return { inDims: op.inDims, outDims: op.outDims, inSize: op.inSize, outSize: op.outSize, dispose: () => op.dispose(), apply: (x) => (count.operatorRuns++, op.apply(x)), adjoint: (y) => (count.operatorRuns++, op.adjoint(y)) };
    },
    async gram(region) {
      count.grams++;
      const g = await inner.gram(region);
      return {
        n: g.n, wide: g.wide, dispose: () => g.dispose(),
        applyInto: (v, out) => (count.gramRuns++, g.applyInto(v, out)),
        apply: (v) => (count.gramRuns++, g.apply(v)),
        half: (v) => (count.halves++, g.half(v)),
      };
    },
    denseMatrix: (region) => (count.dense++, inner.denseMatrix(region)),
    model: (o) => inner.model(o),
  };
  return { backend, count };
}

test('CP equals the float64 partition sum over exact SVDs of every partial product (dense certificates), never below it', async () => {
  for (const [k, [widths, act]] of ([[[5, 8, 7, 6, 4], ACTS.relu], [[4, 6, 9, 5, 3], ACTS.leaky01], [[6, 5, 5, 5, 5, 2], ACTS.tanh]] as const).entries()) {
    const layers = randomDense(widths, new Random(600 + k));
    const { segments, blocks } = await pipeline(mlpModel(layers, act));
    const exact = exactPartitionSum(layers.map((l) => ({ m: l.w, rows: l.rows, cols: l.cols })), act.slope);
    const cp = await cpSegmentBound(segments[0], settings, { known: await measureAll(blocks) });
    const tag = `${act.op} ${widths.join('-')}`;
    assert.equal(cp.upper.kind, 'certified', tag);
    assert.ok(cp.upper.value >= exact * (1 - 1e-9), `${tag}: CP ${cp.upper.value} below the exact partition sum ${exact}`);
    assert.ok(cp.upper.value <= exact * (1 + 1e-5), `${tag}: CP ${cp.upper.value} looser than the exact partition sum ${exact}`);
    assert.ok(cp.estimate !== null && Math.abs(cp.estimate - exact) <= 1e-4 * exact, `${tag}: estimate ${cp.estimate} vs ${exact}`);
  }
});

/** conv 3×3 → ReLU → conv 3×3 → ReLU → Flatten → Gemm (no biases), seeded: its model and the three dense matrices. */
function smallConvNet() {
  const rng = new Random(41);
  const [c0, c1, c2, n] = [2, 6, 6, 6];
  const k1 = f32(Array.from({ length: c1 * c0 * 9 }, () => rng.normal() * 0.35)), k2 = f32(Array.from({ length: c2 * c1 * 9 }, () => rng.normal() * 0.2));
  const fc = f32(Array.from({ length: 4 * c2 * n * n }, () => rng.normal() * 0.1));
  const conv = (x: string, wn: string, y: string): NodeSpec => ({ opType: 'Conv', inputs: [x, wn], outputs: [y], attrs: { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } }, name: y });
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c0, n, n] }], outputs: [{ name: 'y' }], nodes: [
      conv('x', 'k1', 'h1'), { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] }, conv('a1', 'k2', 'h2'), { opType: 'Relu', inputs: ['h2'], outputs: ['a2'] },
      { opType: 'Flatten', inputs: ['a2'], outputs: ['f'] }, { opType: 'Gemm', inputs: ['f', 'fc'], outputs: ['y'], attrs: { transB: { i: 1 } } },
    ],
    initializers: [['k1', tensor([c1, c0, 3, 3], k1)], ['k2', tensor([c2, c1, 3, 3], k2)], ['fc', tensor([4, c2 * n * n], fc)]],
  });
  const m1 = convMatrix(k1, [c1, c0, 3, 3], n, n, [1, 1, 1, 1], 1), m2 = convMatrix(k2, [c2, c1, 3, 3], n, n, [1, 1, 1, 1], 1);
  return { bytes, mats: [m1, m2, { m: fc, rows: 4, cols: c2 * n * n }] };
}

test('conv products: one Gram run per Lanczos step, no apply/adjoint pairs, within (1+tol)³ of the exact partition sum', async () => {
  const { bytes, mats } = smallConvNet();
  const { segments, blocks } = await pipeline(bytes);
  const known = await measureAll(blocks);
  for (const certify of ['auto', 'off'] as const) {
    const { backend, count } = countingBackend(settings.backend);
    const s = { ...settings, certify, backend };
    const cp = await cpSegmentBound(segments[0], s, { known });
    const steps = cp.products.reduce((a, p) => a + p.iterations, 0);
    assert.equal(cp.norms, 3);
    assert.ok(cp.products.filter((p) => !p.reused).every((p) => p.iterations >= 3), `${steps} Lanczos steps`);
    assert.equal(count.gramRuns, steps, `${certify}: ${count.gramRuns} Gram runs for ${steps} Lanczos steps`);
    assert.equal(count.grams, 3, 'one Gram session per measured product');
    assert.deepEqual([count.operators, count.operatorRuns, count.halves], [0, 0, 0], 'no separate apply and adjoint runs');
    const exact = exactPartitionSum(mats, [0, 1]);
    // every norm is a KW bound ≤ (1 + tol)·σ (plus a rounding margin far below it), in terms of degree ≤ 3
    assert.ok(cp.upper.value >= exact, `${certify}: CP ${cp.upper.value} below the exact partition sum ${exact}`);
    assert.ok(cp.upper.value <= exact * (1 + s.tol) ** 3, `${certify}: CP ${cp.upper.value} vs exact ${exact}`);
    assert.ok(cp.products.filter((p) => !p.reused).every((p) => /^lanczos-(kw|poly)-chain/.test(p.upper.method)), cp.products.map((p) => `${p.id}: ${p.upper.method}`).join(', '));
    // auto: each product's composition certificate is at least Π‖W_k‖ > its KW bound here, so none is computed
    assert.equal(cp.certificates, 0, `${certify}: ${cp.certificates} composition certificates`);
  }
});

test('conv products whose composition certificate can matter still get it: 1×1 convs diag(2, 1) and diag(3, 1/2), CP = 6 certified', async () => {
  const conv = (x: string, wn: string, y: string): NodeSpec => ({ opType: 'Conv', inputs: [x, wn], outputs: [y], attrs: { kernel_shape: { ints: [1, 1] } }, name: y });
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 2, 5, 5] }], outputs: [{ name: 'y' }],
    nodes: [conv('x', 'k1', 'h1'), { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] }, conv('a1', 'k2', 'y')],
    initializers: [['k1', tensor([2, 2, 1, 1], [2, 0, 0, 1])], ['k2', tensor([2, 2, 1, 1], [3, 0, 0, 0.5])]],
  });
  const { segments, blocks } = await pipeline(bytes);
  assert.equal(segments.length, 1);
  const cp = await cpSegmentBound(segments[0], settings, { known: await measureAll(blocks) });
  // ‖W2W1‖ = ‖W2‖‖W1‖ = 6: the certified value equals the KW bound's estimate, so the certificate is computed and chosen
  assert.equal(cp.certificates, 1);
  assert.equal(cp.upper.kind, 'certified');
  assert.ok(cp.upper.value >= 6 && cp.upper.value <= 6 * (1 + 1e-5), `CP ${cp.upper.value}`);
});

test('conv products through fused Gram maps (several Lanczos steps per run): fewer runs than steps, same guarantee', async () => {
  const { bytes, mats } = smallConvNet();
  const { segments, blocks } = await pipeline(bytes);
  const known = await measureAll(blocks);
  setFusedLanczos('on');
  try {
    resetRuntimeStats();
    const cp = await cpSegmentBound(segments[0], settings, { known });
    const steps = cp.products.reduce((a, p) => a + p.iterations, 0);
    assert.ok(runtimeStats().runs < steps, `${runtimeStats().runs} onnxruntime runs for ${steps} Lanczos steps`);
    const exact = exactPartitionSum(mats, [0, 1]);
    assert.ok(cp.upper.value >= exact && cp.upper.value <= exact * (1 + settings.tol) ** 3, `CP ${cp.upper.value} vs exact ${exact}`);
  } finally {
    setFusedLanczos('auto');
  }
});

test('a scaling that the composition would fold across a region boundary (Conv → Relu → Mul → Conv): the certificate is not skipped', async () => {
  const rng = new Random(43);
  const [c, n] = [3, 5];
  const conv = (x: string, wn: string, y: string): NodeSpec => ({ opType: 'Conv', inputs: [x, wn], outputs: [y], attrs: { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } }, name: y });
  const k1 = f32(Array.from({ length: c * c * 9 }, () => rng.normal() * 0.3)), k2 = f32(Array.from({ length: c * c * 9 }, () => rng.normal() * 0.3));
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c, n, n] }], outputs: [{ name: 'y' }],
    nodes: [conv('x', 'k1', 'h1'), { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] }, { opType: 'Mul', inputs: ['a1', 's'], outputs: ['m1'] }, conv('m1', 'k2', 'y')],
    initializers: [['k1', tensor([c, c, 3, 3], k1)], ['k2', tensor([c, c, 3, 3], k2)], ['s', tensor([1, c, 1, 1], [4, 0.25, 1])]],
  });
  const { segments, blocks } = await pipeline(bytes);
  assert.equal(segments.length, 1);
  assert.deepEqual(segments[0].regions.map((r) => r.nodes.map((x) => x.prim.op)), [['conv'], ['scale', 'conv']]);
  const cp = await cpSegmentBound(segments[0], settings, { known: await measureAll(blocks) });
  // folded into the first conv, the scaling's factor no longer multiplies ‖W₂‖: Π‖W_k‖ is no floor for the certificate
  assert.equal(cp.certificates, 1);
  const m1 = convMatrix(k1, [c, c, 3, 3], n, n, [1, 1, 1, 1], 1), m2 = convMatrix(k2, [c, c, 3, 3], n, n, [1, 1, 1, 1], 1);
  const scaled = Float64Array.from(m2.m, (v, idx) => v * [4, 0.25, 1][Math.floor((idx % m2.cols) / (n * n))]);
  const exact = exactPartitionSum([m1, { m: scaled, rows: m2.rows, cols: m2.cols }], [0, 1]);
  assert.ok(cp.upper.value >= exact && cp.upper.value <= exact * (1 + settings.tol) ** 2, `CP ${cp.upper.value} vs exact ${exact}`);
});

/**
 * 1×1 conv c→b with a per-channel Mul → ReLU → 3×3 conv b→b → ReLU → 1×1 conv b→c (a ResNet bottleneck, no skip),
 * seeded: its model and the three dense matrices (the Mul folded in exactly, in float64).
 */
function bottleneckNet(c: number, b: number, n: number, seed: number, scale1 = 0.4) {
  const rng = new Random(seed);
  const k1 = f32(Array.from({ length: b * c }, () => rng.normal() * scale1)), k2 = f32(Array.from({ length: b * b * 9 }, () => rng.normal() * 0.3));
  const k3 = f32(Array.from({ length: c * b }, () => rng.normal() * 0.4)), s1 = f32(Array.from({ length: b }, () => 0.5 + rng.next()));
  const conv = (x: string, wn: string, y: string, k: number): NodeSpec => ({ opType: 'Conv', inputs: [x, wn], outputs: [y], attrs: { pads: { ints: k === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0] }, kernel_shape: { ints: [k, k] } }, name: y });
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c, n, n] }], outputs: [{ name: 'y' }], nodes: [
      conv('x', 'k1', 'h1', 1), { opType: 'Mul', inputs: ['h1', 's1'], outputs: ['g1'] }, { opType: 'Relu', inputs: ['g1'], outputs: ['a1'] },
      conv('a1', 'k2', 'h2', 3), { opType: 'Relu', inputs: ['h2'], outputs: ['a2'] }, conv('a2', 'k3', 'y', 1),
    ],
    initializers: [['k1', tensor([b, c, 1, 1], k1)], ['s1', tensor([1, b, 1, 1], s1)], ['k2', tensor([b, b, 3, 3], k2)], ['k3', tensor([c, b, 1, 1], k3)]],
  });
  const scaled = Float64Array.from(k1, (v, i) => v * s1[Math.floor(i / c)]);
  const mats = [convMatrix(scaled, [b, c, 1, 1], n, n, [0, 0, 0, 0], 1), convMatrix(k2, [b, b, 3, 3], n, n, [1, 1, 1, 1], 1), convMatrix(k3, [c, b, 1, 1], n, n, [0, 0, 0, 0], 1)];
  return { bytes, mats };
}

test('bottleneck products fold their narrowing 1×1 ends: B = R·X·S has the product\'s norm (exact SVDs), lift and norm bound it from both sides', async () => {
  const [c, b, n] = [8, 3, 5];
  const { bytes, mats } = bottleneckNet(c, b, n, 71);
  const { segments } = await pipeline(bytes);
  assert.equal(segments[0].regions.length, 3);
  const exactNorm = (i: number, j: number) => { const p = denseProduct(mats.slice(i, j + 1)); return sigmaMax(p.m, p.rows, p.cols); };
  for (const [first, last] of [[0, 1], [1, 2], [0, 2]]) {
    const parts = segments[0].regions.slice(first, last + 1);
    const product = composeRegions(segments[0], first, last);
    const folded = await foldPointwiseEnds(parts, product);
    assert.ok(folded, `${first}..${last} folds`);
    assert.ok(regionFlop(folded.region) < regionFlop(product));
    // B's pieces as dense matrices: the 1×1 factors' float32 weights, X as it is
    const dense = folded.pieces.map((p, k) => {
      if (p.nodes.length === 1 && p.nodes[0].name.includes('~')) {
        const w = p.nodes[0].prim as { weight: { data: Float32Array; dims: number[] } };
        return convMatrix(Float64Array.from(w.weight.data), w.weight.dims, n, n, [0, 0, 0, 0], 1);
      }
      return mats[first + k];
    });
    const sub = (i: number, j: number) => exactNorm(first + i, first + j);
    const exactA = sub(0, parts.length - 1);
    const bd = denseProduct(dense);
    const exactB = sigmaMax(bd.m, bd.rows, bd.cols);
    const tag = `product ${first}..${last}`;
    assert.ok(Math.abs(exactB - exactA) <= 1e-6 * exactA, `${tag}: ‖B‖ ${exactB} vs ‖A‖ ${exactA}`);
    const lifted = folded.lift(exactB, sub);
    assert.ok(lifted >= exactA && lifted <= exactA * (1 + 1e-5), `${tag}: lift ${lifted} vs ‖A‖ ${exactA}`);
    for (let a = 0; a < dense.length; a++) for (let z = a; z < dense.length; z++) {
      const p = denseProduct(dense.slice(a, z + 1));
      const exact = sigmaMax(p.m, p.rows, p.cols);
      const bound = folded.norm(a, z, sub);
      assert.ok(bound >= exact && bound <= exact * (1 + 1e-5), `${tag}: norm(${a}, ${z}) ${bound} vs exact ${exact}`);
    }
  }
  // widening first and narrowing last 1×1 convs (c < b) do not fold: B would not be narrower
  const wide = bottleneckNet(3, 6, n, 72);
  const w = await pipeline(wide.bytes);
  for (const [first, last] of [[0, 1], [1, 2], [0, 2]]) assert.equal(await foldPointwiseEnds(w.segments[0].regions.slice(first, last + 1), composeRegions(w.segments[0], first, last)), null);
  // a first 1×1 conv with weights near float32's limit: its factor would leave float32's range, so products it heads do not fold
  const huge = await pipeline(bottleneckNet(c, b, n, 74, 1e36).bytes);
  assert.equal(await foldPointwiseEnds(huge.segments[0].regions.slice(0, 2), composeRegions(huge.segments[0], 0, 1)), null);
  assert.notEqual(await foldPointwiseEnds(huge.segments[0].regions.slice(1, 3), composeRegions(huge.segments[0], 1, 2)), null);
});

test('CP on a bottleneck: every product is measured folded, and the bound stays within (1+tol)³ above the exact partition sum', async () => {
  const { bytes, mats } = bottleneckNet(8, 3, 5, 73);
  const { segments, blocks } = await pipeline(bytes);
  const known = await measureAll(blocks);
  for (const certify of ['auto', 'off'] as const) {
    const s = { ...settings, certify };
    const cp = await cpSegmentBound(segments[0], s, { known });
    assert.equal(cp.norms, 3);
    assert.ok(cp.products.filter((p) => !p.reused).every((p) => /^lanczos-(kw|poly)-folded/.test(p.upper.method)), cp.products.map((p) => `${p.id}: ${p.upper.method}`).join(', '));
    const exact = exactPartitionSum(mats, [0, 1]);
    assert.ok(cp.upper.value >= exact, `${certify}: CP ${cp.upper.value} below the exact partition sum ${exact}`);
    assert.ok(cp.upper.value <= exact * (1 + s.tol) ** 3, `${certify}: CP ${cp.upper.value} vs exact ${exact}`);
  }
});

test('a 1-D bottleneck (Conv1d, 1×1 ends): its products are measured folded with 1-D factors, within (1+tol)³ of the exact partition sum', async () => {
  const rng = new Random(75);
  const [c, b, len] = [10, 3, 7];
  const k1 = f32(Array.from({ length: b * c }, () => rng.normal() * 0.4)), k2 = f32(Array.from({ length: b * b * 3 }, () => rng.normal() * 0.4)), k3 = f32(Array.from({ length: c * b }, () => rng.normal() * 0.4));
  const conv = (x: string, wn: string, y: string, k: number): NodeSpec => ({ opType: 'Conv', inputs: [x, wn], outputs: [y], attrs: { pads: { ints: k === 3 ? [1, 1] : [0, 0] }, kernel_shape: { ints: [k] } }, name: y });
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c, len] }], outputs: [{ name: 'y' }],
    nodes: [conv('x', 'k1', 'h1', 1), { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] }, conv('a1', 'k2', 'h2', 3), { opType: 'Relu', inputs: ['h2'], outputs: ['a2'] }, conv('a2', 'k3', 'y', 1)],
    initializers: [['k1', tensor([b, c, 1], k1)], ['k2', tensor([b, b, 3], k2)], ['k3', tensor([c, b, 1], k3)]],
  });
  const { segments, blocks } = await pipeline(bytes);
  const cp = await cpSegmentBound(segments[0], settings, { known: await measureAll(blocks) });
  assert.ok(cp.products.filter((p) => !p.reused).every((p) => /^lanczos-(kw|poly)-folded/.test(p.upper.method)), cp.products.map((p) => `${p.id}: ${p.upper.method}`).join(', '));
  // a 1-D convolution of length len is the 2-D one on a 1 × len grid
  const mats = [convMatrix(k1, [b, c, 1, 1], 1, len, [0, 0, 0, 0], 1), convMatrix(k2, [b, b, 1, 3], 1, len, [0, 1, 0, 1], 1), convMatrix(k3, [c, b, 1, 1], 1, len, [0, 0, 0, 0], 1)];
  const exact = exactPartitionSum(mats, [0, 1]);
  assert.ok(cp.upper.value >= exact && cp.upper.value <= exact * (1 + settings.tol) ** 3, `CP ${cp.upper.value} vs exact ${exact}`);
});
