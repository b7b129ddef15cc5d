/**
 * Whole Jacobians as one onnxruntime run (OperatorBackend.jacobian, src/backend/index.ts ortJacobian, the models of
 * src/backend/graphs.ts jacobianGraphModel): C = W_3 D_2 W_2 D_1 W_1, Cᵀ and CᵀC against the dense float64 product of
 * the MLP's weights; a convolutional chain against its regions' own operators; one run per product; and the
 * Jacobian's graph step (src/estimators/ir-eval.ts fuseGraph) against the per-region walk, on an MLP, a residual
 * MLP, and a CNN with overlapping max-pools, a concatenation, a broadcast sum and a (log-)softmax.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createOrtBackend } from '../../../src/backend/index.js';
import { resetRuntimeStats, runtimeStats } from '../../../src/backend/runtime.js';
import { Jacobian, planIr, type IrPlan, type LocalState, type Step } from '../../../src/estimators/ir-eval.js';
import type { Block } from '../../../src/ir/merge.js';
import type { IrGraph } from '../../../src/ir/types.js';
import type { JacobianGraph, JacobianNode, OperatorBackend } from '../../../src/ir/operator.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { SHARED } from '../../helpers/dense.js';
import { ACTS, chain, matmul, mlpModel, pipeline, randomDense, runtime, tensor } from '../../helpers/mlp.js';

const backend = createOrtBackend({ runtime });
const vec = (rng: Random, n: number, lo = -1, hi = 1) => Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
const transpose = (m: Float64Array, rows: number, cols: number) => { const t = new Float64Array(m.length); for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j]; return t; };
/** max |a − b| over max |b|. */
const relErr = (a: Float64Array, b: Float64Array) => { let e = 0, s = 0; for (let i = 0; i < b.length; i++) { e = Math.max(e, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return e / s; };

/** The Jacobian graph of a sequential IR: its regions, and a diag node per activation (slopes fed at each call). */
function sequentialGraph(ir: IrGraph, blocks: readonly Block[]): JacobianGraph {
  const nodes: JacobianNode[] = blocks.map((b): JacobianNode => {
    if (b.kind === 'operator') return { op: 'region', region: b.region, input: b.region.input, output: b.region.output };
    assert.equal(b.node.kind, 'activation');
    return { op: 'diag', input: b.node.inputs[0], output: b.node.output, dims: b.node.outShape };
  });
  return { input: ir.input, inDims: ir.inputShape, output: ir.output, outDims: ir.outputShape, nodes };
}

test('a Jacobian W₃D₂W₂D₁W₁ in one run: C v, Cᵀ w and CᵀC v agree with the dense float64 product, one run each', async () => {
  const rng = new Random(5);
  const layers = randomDense([7, 11, 9, 4], rng);
  const { ir, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const acts = blocks.flatMap((b) => (b.kind === 'node' ? [b.node] : []));
  assert.equal(acts.length, 2);
  const ds = [vec(rng, 11, -0.5, 2), vec(rng, 9, -0.5, 2)];
  const point = new Map(acts.map((a, i) => [a.output, ds[i]]));
  const c = chain(layers, ds); // 4×7, row-major
  const ct = transpose(c, 4, 7);
  const op = await backend.jacobian!(sequentialGraph(ir, blocks));
  try {
    assert.equal(op.inSize, 7);
    assert.equal(op.outSize, 4);
    for (let trial = 0; trial < 3; trial++) {
      const v = vec(rng, 7), w = vec(rng, 4);
      resetRuntimeStats();
      const cv = await op.apply(v, point), ctw = await op.adjoint(w, point), g = await op.gram(v, point);
      assert.equal(runtimeStats().runs, 3, 'one onnxruntime run per product');
      assert.ok(relErr(cv, matmul(c, 4, 7, v, 1)) < 1e-5, `C v: ${relErr(cv, matmul(c, 4, 7, v, 1))}`);
      assert.ok(relErr(ctw, matmul(ct, 7, 4, w, 1)) < 1e-5, `Cᵀ w: ${relErr(ctw, matmul(ct, 7, 4, w, 1))}`);
      const exact = matmul(ct, 7, 4, matmul(c, 4, 7, v, 1), 1);
      assert.ok(relErr(g, exact) < 1e-5, `CᵀC v: ${relErr(g, exact)}`);
    }
    // other slopes, same sessions: the point is an input, not baked in (nor cached by anything but the array itself)
    const ds2 = [vec(rng, 11), vec(rng, 9)];
    const v = vec(rng, 7);
    assert.ok(relErr(await op.apply(v, new Map(acts.map((a, i) => [a.output, ds2[i]]))), matmul(chain(layers, ds2), 4, 7, v, 1)) < 1e-5);
    await assert.rejects(op.apply(v, new Map([[acts[0].output, ds2[0]]])), /needs the point's values/);
    await assert.rejects(op.apply(v, new Map([[acts[0].output, ds2[0]], [acts[1].output, ds2[0]]])), /have 11 elements, not 9/);
  } finally {
    await op.dispose();
  }
});

/** A Conv → (diag) → Conv (stride 2, padded) → (diag) → Gemm model. */
async function convChain(): Promise<{ ir: IrGraph; blocks: Block[] }> {
  const rng = new Random(9);
  const w = (dims: number[]) => tensor(dims, vec(rng, sizeOf(dims), -0.4, 0.4));
  const nodes: NodeSpec[] = [
    { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['c1'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } },
    { opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
    { opType: 'Conv', inputs: ['r1', 'w2'], outputs: ['c2'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [2, 2] } } },
    { opType: 'Relu', inputs: ['c2'], outputs: ['r2'] },
    { opType: 'Flatten', inputs: ['r2'], outputs: ['f'] },
    { opType: 'Gemm', inputs: ['f', 'w3'], outputs: ['y'], attrs: { transB: { i: 1 } } },
  ];
  const bytes = encodeGraph({
    opset: 13, nodes, inputs: [{ name: 'x', dims: [1, 2, 8, 8] }], outputs: [{ name: 'y', dims: [1, 5] }],
    initializers: [['w1', w([6, 2, 3, 3])], ['w2', w([4, 6, 3, 3])], ['w3', w([5, 64])]],
  });
  return pipeline(bytes);
}

test('a convolutional Jacobian: one run gives what its regions\' own operators give with the slopes applied between them', async () => {
  const { ir, blocks } = await convChain();
  const regions = blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  const acts = blocks.flatMap((b) => (b.kind === 'node' ? [b.node] : []));
  assert.equal(regions.length, 3);
  const rng = new Random(3);
  const ds = [vec(rng, sizeOf(regions[0].outShape), 0, 1.5), vec(rng, sizeOf(regions[1].outShape), 0, 1.5)];
  const point = new Map(acts.map((a, i) => [a.output, ds[i]]));
  const ops = await Promise.all(regions.map((r) => backend.operator(r)));
  const op = await backend.jacobian!(sequentialGraph(ir, blocks));
  try {
    const mul = (a: Float64Array, d: Float64Array) => a.map((x, i) => x * d[i]);
    const v = vec(rng, op.inSize), w = vec(rng, op.outSize);
    const fwd = await ops[2].apply(mul(await ops[1].apply(mul(await ops[0].apply(v), ds[0])), ds[1]));
    const adj = await ops[0].adjoint(mul(await ops[1].adjoint(mul(await ops[2].adjoint(w), ds[1])), ds[0]));
    assert.ok(relErr(await op.apply(v, point), fwd) < 1e-5);
    assert.ok(relErr(await op.adjoint(w, point), adj) < 1e-5);
    // the adjoint is the transpose: ⟨C v, w⟩ = ⟨v, Cᵀ w⟩
    const cv = await op.apply(v, point), ctw = await op.adjoint(w, point);
    const lhs = cv.reduce((s, x, i) => s + x * w[i], 0), rhs = v.reduce((s, x, i) => s + x * ctw[i], 0);
    assert.ok(Math.abs(lhs - rhs) <= 1e-5 * Math.max(1, Math.abs(lhs)), `${lhs} against ${rhs}`);
    const g = await op.gram(v, point);
    assert.ok(relErr(g, await op.adjoint(await op.apply(v, point), point)) < 1e-5);
  } finally {
    for (const o of [...ops, op]) await o.dispose();
  }
});

test('the Jacobian walks one graph step: the same products as the per-region walk, one run per product, no session at plan time', async () => {
  const rng = new Random(11);
  const layers = randomDense([6, 10, 8, 3], rng);
  const { ir, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const disposables: { dispose(): Promise<void> }[] = [];
  try {
    resetRuntimeStats();
    const plan = await planIr(ir, blocks, backend, disposables);
    assert.ok(typeof plan !== 'string', String(plan));
    assert.equal(runtimeStats().sessions, 0, 'sessions open on first use');
    assert.equal(plan.fused.length, 1, 'one graph spans the MLP');
    assert.equal(plan.fused[0].kind, 'graph');
    // a backend without Jacobian graphs keeps the per-region steps
    const plain: OperatorBackend = { ...backend, jacobian: undefined };
    const plainPlan = await planIr(ir, blocks, plain, disposables);
    assert.ok(typeof plainPlan !== 'string');
    assert.equal(plainPlan.fused, plainPlan.steps);
    // a point's slopes: ReLU's derivative at random pre-activations (and a soft gate's fractions, as the walk uses)
    const slope = new Map<string, { d: Float64Array; d2: Float64Array; u: Float64Array }>();
    const acts = blocks.flatMap((b) => (b.kind === 'node' && b.node.kind === 'activation' ? [b.node] : []));
    for (const a of acts) slope.set(a.output, { d: vec(rng, sizeOf(a.outShape), 0, 1), d2: new Float64Array(sizeOf(a.outShape)), u: new Float64Array(sizeOf(a.outShape)) });
    const s: LocalState = { x: new Float32Array(6), fx: new Float64Array(3), slope, argmax: new Map(), softmax: new Map() };
    const fused = new Jacobian(ir, plan.steps, plan.fused), walked = new Jacobian(ir, plan.steps);
    const ds = acts.map((a) => slope.get(a.output)!.d);
    const c = chain(layers, ds), ct = transpose(c, 3, 6);
    const v = vec(rng, 6), w = vec(rng, 3);
    resetRuntimeStats();
    const g = await fused.gram(s, v);
    assert.equal(runtimeStats().runs, 1);
    assert.equal(runtimeStats().sessions, 1, 'the graph\'s Gram session only: regions inside the graph open none of their own');
    assert.equal(fused.products, 2, 'a Gram product counts as two Jacobian products, as before');
    assert.ok(relErr(g, matmul(ct, 6, 3, matmul(c, 3, 6, v, 1), 1)) < 1e-5);
    assert.ok(relErr(g, await walked.vjp(s, await walked.jvp(s, v))) < 1e-5);
    resetRuntimeStats();
    const ft = new Map<string, Float64Array>(), wt = new Map<string, Float64Array>();
    assert.ok(relErr(await fused.jvp(s, v, ft), await walked.jvp(s, v, wt)) < 1e-5);
    // injections at the activations' inputs (the ascent's second-derivative terms) and the cotangents handed back
    const inject = new Map(acts.map((a) => [a.inputs[0], vec(rng, sizeOf(a.inShapes[0]))] as [string, Float64Array]));
    const fc = new Map<string, Float64Array>(), wc = new Map<string, Float64Array>();
    assert.ok(relErr(await fused.vjp(s, w, inject, fc), await walked.vjp(s, w, inject, wc)) < 1e-5);
    assert.ok(relErr(await fused.vjp(s, new Float64Array(3), inject), await walked.vjp(s, new Float64Array(3), inject)) < 1e-5, 'injections alone');
    assert.equal(runtimeStats().runs, 3 + 3 * 3, 'fused products one run each, intermediates and injections included; the walk one run per region');
    // every value the walk records, the fused walk records too, with the same numbers
    for (const [name, t] of wt) assert.ok(ft.has(name) && relErr(ft.get(name)!, t) < 1e-5, `tangent of ${name}`);
    for (const [name, c] of wc) assert.ok(fc.has(name) && relErr(fc.get(name)!, c) < 1e-5, `cotangent of ${name}`);
    for (const a of acts) assert.ok(ft.has(a.inputs[0]) && ft.has(a.output) && fc.has(a.inputs[0]) && fc.has(a.output), `values of ${a.name}`);
  } finally {
    for (const d of disposables) await d.dispose();
  }
});

/** Random slopes, max-pool winners (a random member of each window) and softmax probabilities for every step of a plan. */
function randomPoint(steps: readonly Step[], rng: Random): LocalState {
  const s: LocalState = { x: new Float32Array(0), fx: new Float64Array(0), slope: new Map(), argmax: new Map(), softmax: new Map() };
  for (const st of steps) {
    if (st.kind === 'diag') s.slope.set(st.node.output, { d: vec(rng, sizeOf(st.node.outShape), -0.5, 1.5), d2: new Float64Array(sizeOf(st.node.outShape)), u: new Float64Array(sizeOf(st.node.outShape)) });
    if (st.kind === 'maxpool') {
      const { taps, index } = st.windows;
      const am = new Int32Array(index.length / taps);
      for (let o = 0; o < am.length; o++) {
        const inside = [...index.subarray(o * taps, (o + 1) * taps)].filter((i) => i >= 0);
        am[o] = inside[Math.floor(rng.next() * inside.length)];
      }
      s.argmax.set(st.node.output, { am, u: new Float64Array(sizeOf(st.node.inShapes[0])) });
    }
    if (st.kind === 'softmax') {
      const p = vec(rng, sizeOf(st.node.outShape), 0.1, 1);
      for (let o = 0; o < st.outer; o++) for (let q = 0; q < st.inner; q++) {
        let sum = 0;
        for (let k = 0; k < st.len; k++) sum += p[(o * st.len + k) * st.inner + q];
        for (let k = 0; k < st.len; k++) p[(o * st.len + k) * st.inner + q] /= sum;
      }
      s.softmax.set(st.node.output, st.log ? p.map(Math.log) : p);
    }
  }
  return s;
}

/**
 * The graph step against the per-region walk at a point: J v with every tangent the walk records, Jᵀ u with injections
 * at the activations' inputs and every cotangent, injections alone, JᵀJ v, and ⟨J v, u⟩ = ⟨v, Jᵀ u⟩.
 */
async function sameAsWalk(ir: IrGraph, plan: { steps: readonly Step[]; fused: readonly Step[] }, s: LocalState, rng: Random): Promise<void> {
  const fused = new Jacobian(ir, plan.steps, plan.fused), walked = new Jacobian(ir, plan.steps);
  const n = sizeOf(ir.inputShape), m = sizeOf(ir.outputShape);
  const acts = plan.steps.flatMap((st) => (st.kind === 'diag' ? [st.node] : []));
  for (let trial = 0; trial < 2; trial++) {
    const v = vec(rng, n), u = vec(rng, m);
    const ft = new Map<string, Float64Array>(), wt = new Map<string, Float64Array>();
    const jv = await fused.jvp(s, v, ft);
    assert.ok(relErr(jv, await walked.jvp(s, v, wt)) < 1e-5, 'J v');
    for (const [name, t] of wt) assert.ok(ft.has(name) && relErr(ft.get(name)!, t) < 1e-5, `tangent of ${name}`);
    const inject = new Map(acts.map((a) => [a.inputs[0], vec(rng, sizeOf(a.inShapes[0]))] as [string, Float64Array]));
    const fc = new Map<string, Float64Array>(), wc = new Map<string, Float64Array>();
    assert.ok(relErr(await fused.vjp(s, u, inject, fc), await walked.vjp(s, u, inject, wc)) < 1e-5, 'Jᵀ u with injections');
    for (const [name, c] of wc) assert.ok(fc.has(name) && relErr(fc.get(name)!, c) < 1e-5, `cotangent of ${name}`);
    assert.ok(relErr(await fused.vjp(s, new Float64Array(m), inject), await walked.vjp(s, new Float64Array(m), inject)) < 1e-5, 'injections alone');
    assert.ok(relErr(await fused.gram(s, v), await walked.vjp(s, await walked.jvp(s, v))) < 1e-5, 'JᵀJ v');
    const jtu = await fused.vjp(s, u);
    const lhs = jv.reduce((a, x, i) => a + x * u[i], 0), rhs = v.reduce((a, x, i) => a + x * jtu[i], 0);
    assert.ok(Math.abs(lhs - rhs) <= 1e-5 * Math.max(1, Math.abs(lhs)), `⟨J v, u⟩ ${lhs} against ⟨v, Jᵀ u⟩ ${rhs}`);
  }
}

/** Builds `bytes`, plans its Jacobian on the onnxruntime backend, checks the plan is one graph step, runs `check`. */
async function withGraphPlan(bytes: Uint8Array, check: (ir: IrGraph, plan: IrPlan) => Promise<void>): Promise<void> {
  const { ir, blocks } = await pipeline(bytes);
  const disposables: { dispose(): Promise<void> }[] = [];
  try {
    const plan = await planIr(ir, blocks, backend, disposables);
    assert.ok(typeof plan !== 'string', String(plan));
    assert.deepEqual(plan.fused.map((st) => st.kind), ['graph']);
    await check(ir, plan);
  } finally {
    for (const d of disposables) await d.dispose();
  }
}

test('a residual MLP is one graph: its branch point and its sum inside the run', async () => {
  const rng = new Random(13);
  const w = (dims: number[]) => tensor(dims, vec(rng, sizeOf(dims), -0.5, 0.5));
  const nodes: NodeSpec[] = [
    { opType: 'MatMul', inputs: ['x', 'w0'], outputs: ['h0'] },
    { opType: 'Relu', inputs: ['h0'], outputs: ['u'] },
    { opType: 'MatMul', inputs: ['u', 'w1'], outputs: ['h1'] },
    { opType: 'Relu', inputs: ['h1'], outputs: ['r1'] },
    { opType: 'MatMul', inputs: ['r1', 'w2'], outputs: ['h2'] },
    { opType: 'Add', inputs: ['h2', 'u'], outputs: ['s'] },
    { opType: 'Relu', inputs: ['s'], outputs: ['r2'] },
    { opType: 'MatMul', inputs: ['r2', 'w3'], outputs: ['h3'] },
    { opType: 'Tanh', inputs: ['h3'], outputs: ['t3'] },
    { opType: 'MatMul', inputs: ['t3', 'w4'], outputs: ['y'] },
  ];
  const bytes = encodeGraph({ opset: 13, nodes, inputs: [{ name: 'x', dims: [1, 5] }], outputs: [{ name: 'y', dims: [1, 2] }], initializers: [['w0', w([5, 6])], ['w1', w([6, 7])], ['w2', w([7, 6])], ['w3', w([6, 4])], ['w4', w([4, 2])]] });
  await withGraphPlan(bytes, async (ir, plan) => {
    assert.ok(plan.steps.some((st) => st.kind === 'sum'));
    await sameAsWalk(ir, plan, randomPoint(plan.steps, rng), rng);
  });
});

for (const log of [false, true]) {
  test(`a CNN with overlapping max-pools, a concatenation, a broadcast sum, a channel softmax and a ${log ? 'log-' : ''}softmax is one graph, equal to the walk`, async () => {
    const rng = new Random(log ? 21 : 17);
    const w = (dims: number[]) => tensor(dims, vec(rng, sizeOf(dims), -0.4, 0.4));
    const nodes: NodeSpec[] = [
      { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['c1'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } },
      { opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      // 3×3 windows at stride 2: neighbouring windows share inputs, so the adjoint must add what two winners route back
      { opType: 'MaxPool', inputs: ['r1'], outputs: ['p1'], attrs: { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } } },
      { opType: 'Conv', inputs: ['p1', 'wa'], outputs: ['a'], attrs: { kernel_shape: { ints: [1, 1] } } },
      { opType: 'Conv', inputs: ['p1', 'wb'], outputs: ['b'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } },
      { opType: 'Tanh', inputs: ['b'], outputs: ['tb'] },
      { opType: 'Concat', inputs: ['a', 'tb', 'a'], outputs: ['cat'], attrs: { axis: { i: 1 } } },
      { opType: 'ReduceMean', inputs: ['cat'], outputs: ['mean'], attrs: { axes: { ints: [2, 3] }, keepdims: { i: 1 } } },
      { opType: 'Sigmoid', inputs: ['mean'], outputs: ['gate'] },
      { opType: 'Add', inputs: ['cat', 'gate'], outputs: ['s'] },
      // a softmax across channels: groups of 6 strided by the 9 spatial positions (outer 1, inner 9)
      { opType: 'Softmax', inputs: ['s'], outputs: ['sm'], attrs: { axis: { i: 1 } } },
      { opType: 'Flatten', inputs: ['sm'], outputs: ['f'] },
      { opType: 'Gemm', inputs: ['f', 'w3'], outputs: ['logits'], attrs: { transB: { i: 1 } } },
      { opType: log ? 'LogSoftmax' : 'Softmax', inputs: ['logits'], outputs: ['y'], attrs: { axis: { i: 1 } } },
    ];
    const bytes = encodeGraph({
      opset: 13, nodes, inputs: [{ name: 'x', dims: [1, 2, 6, 6] }], outputs: [{ name: 'y', dims: [1, 5] }],
      initializers: [['w1', w([3, 2, 3, 3])], ['wa', w([2, 3, 1, 1])], ['wb', w([2, 3, 3, 3])], ['w3', w([5, 54])]],
    });
    await withGraphPlan(bytes, async (ir, plan) => {
      const kinds = new Set(plan.steps.map((st) => st.kind));
      assert.ok(plan.steps.some((st) => st.kind === 'softmax' && st.inner > 1 && st.len > 1), 'a softmax with strided groups');
      for (const k of ['maxpool', 'concat', 'sum', 'softmax', 'diag', 'operator'] as const) assert.ok(kinds.has(k), `a ${k} step in ${[...kinds].join(' ')}`);
      const s = randomPoint(plan.steps, rng);
      // windows overlap: the first two share inputs; one of them wins both, so its cotangent is a sum of two
      const { taps, index } = plan.steps.flatMap((st) => (st.kind === 'maxpool' ? [st.windows] : []))[0];
      const shared = [...index.subarray(0, taps)].find((i) => i >= 0 && index.subarray(taps, 2 * taps).includes(i));
      assert.ok(shared !== undefined, 'overlapping windows');
      const am = [...s.argmax.values()][0].am;
      am[0] = am[1] = shared;
      await sameAsWalk(ir, plan, s, rng);
      await sameAsWalk(ir, plan, randomPoint(plan.steps, rng), rng);
    });
  });
}

/**
 * Real graph structure (../shared/models/light: the ONNX project's light ImageNet architectures, every weight one
 * constant, so structure only): ShuffleNet's channel shuffles, concatenations, residual sums, overlapping max-pool and
 * softmax, and SqueezeNet's fire modules, as one graph against the per-region walk at a random point.
 */
for (const name of ['shufflenet', 'squeezenet']) {
  test(`light/${name}: the Jacobian graph equals the per-region walk at a random point`, async (t) => {
    const path = join(SHARED, 'light', `${name}.onnx`);
    if (!existsSync(path)) { t.skip(`../shared/models absent: light/${name}.onnx not found`); return; }
    await withGraphPlan(readFileSync(path), async (ir, plan) => {
      const rng = new Random(23);
      const s = randomPoint(plan.steps, rng);
      const fused = new Jacobian(ir, plan.steps, plan.fused), walked = new Jacobian(ir, plan.steps);
      const v = vec(rng, sizeOf(ir.inputShape));
      const ft = new Map<string, Float64Array>(), wt = new Map<string, Float64Array>();
      await fused.jvp(s, v, ft);
      await walked.jvp(s, v, wt);
      // each step's tangent to float32 accuracy of its inputs' scale: with one constant for every weight the logits'
      // tangents are nearly equal, so the final softmax's p ⊙ (t − Σpt) is all cancellation (10⁻²⁴ in float64)
      const maxAbs = (a: Float64Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      let worst = 0;
      for (const st of plan.steps) {
        const out = st.kind === 'operator' ? st.output : st.kind === 'graph' ? ir.output : st.node.output;
        const ins = st.kind === 'operator' ? [st.input] : st.kind === 'graph' ? [] : st.node.inputs;
        const w = wt.get(out)!, f = ft.get(out)!;
        const scale = Math.max(maxAbs(w), ...ins.map((i) => maxAbs(wt.get(i)!)));
        let e = 0;
        for (let i = 0; i < w.length; i++) e = Math.max(e, Math.abs(f[i] - w[i]));
        worst = Math.max(worst, e / scale);
      }
      assert.ok(worst < 1e-4, `every tangent to its inputs' scale (worst ${worst})`);
      // the reverse sweep from the logits (injected there): from the output, Σ of the softmax's cotangent is 0 and the
      // constant Gemm rows turn it into cancellation alone
      const last = plan.steps[plan.steps.length - 1];
      assert.ok(last.kind === 'softmax', last.kind);
      const logits = last.node.inputs[0];
      const inject = new Map([[logits, vec(rng, sizeOf(last.node.inShapes[0]))]]);
      const zero = new Float64Array(sizeOf(ir.outputShape));
      assert.ok(relErr(await fused.vjp(s, zero, inject), await walked.vjp(s, zero, inject)) < 1e-4, 'Jᵀ from the logits');
    });
  });
}
