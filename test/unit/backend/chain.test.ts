/**
 * Chains of regions and diagonals as one onnxruntime run (OperatorBackend.chain, src/backend/index.ts ortChain, the
 * graphs of src/backend/graphs.ts chainPartsGraph): C = W_3 D_2 W_2 D_1 W_1, Cᵀ and CᵀC against the dense float64 product
 * of the MLP's weights; a convolutional chain against its regions' own operators; one run per product; and the
 * Jacobian's fused steps (src/estimators/ir-eval.ts fuseChains) against the per-region walk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createOrtBackend } from '../../../src/backend/index.js';
import { resetRuntimeStats, runtimeStats } from '../../../src/backend/runtime.js';
import { Jacobian, planIr, type LocalState } from '../../../src/estimators/ir-eval.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import type { ChainPart, OperatorBackend } from '../../../src/ir/operator.js';
import { sizeOf } from '../../../src/ir/tensor.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { ACTS, chain, matmul, mlpModel, pipeline, randomDense, runtime, tensor } from '../../helpers/mlp.js';

const backend = createOrtBackend({ runtime });
const vec = (rng: Random, n: number, lo = -1, hi = 1) => Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
const transpose = (m: Float64Array, rows: number, cols: number) => { const t = new Float64Array(m.length); for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j]; return t; };
/** max |a − b| over max |b|. */
const relErr = (a: Float64Array, b: Float64Array) => { let e = 0, s = 0; for (let i = 0; i < b.length; i++) { e = Math.max(e, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return e / s; };

test('a chain W₃D₂W₂D₁W₁ in one run: C v, Cᵀ w and CᵀC v agree with the dense float64 product, one run each', async () => {
  const rng = new Random(5);
  const layers = randomDense([7, 11, 9, 4], rng);
  const { blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const regions = blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  assert.equal(regions.length, 3);
  const ds = [vec(rng, 11, -0.5, 2), vec(rng, 9, -0.5, 2)];
  const parts: ChainPart[] = [{ region: regions[0] }, { diag: regions[0].outShape }, { region: regions[1] }, { diag: regions[1].outShape }, { region: regions[2] }];
  const c = chain(layers, ds); // 4×7, row-major
  const ct = transpose(c, 4, 7);
  const op = await backend.chain!(parts);
  try {
    assert.equal(op.inSize, 7);
    assert.equal(op.outSize, 4);
    for (let trial = 0; trial < 3; trial++) {
      const v = vec(rng, 7), w = vec(rng, 4);
      resetRuntimeStats();
      const cv = await op.apply(v, ds), ctw = await op.adjoint(w, ds), g = await op.gram(v, ds);
      assert.equal(runtimeStats().runs, 3, 'one onnxruntime run per product');
      assert.ok(relErr(cv, matmul(c, 4, 7, v, 1)) < 1e-5, `C v: ${relErr(cv, matmul(c, 4, 7, v, 1))}`);
      assert.ok(relErr(ctw, matmul(ct, 7, 4, w, 1)) < 1e-5, `Cᵀ w: ${relErr(ctw, matmul(ct, 7, 4, w, 1))}`);
      const exact = matmul(ct, 7, 4, matmul(c, 4, 7, v, 1), 1);
      assert.ok(relErr(g, exact) < 1e-5, `CᵀC v: ${relErr(g, exact)}`);
    }
    // other diagonals, same sessions: the diagonals are inputs, not baked in
    const ds2 = [vec(rng, 11), vec(rng, 9)];
    const v = vec(rng, 7);
    assert.ok(relErr(await op.apply(v, ds2), matmul(chain(layers, ds2), 4, 7, v, 1)) < 1e-5);
    await assert.rejects(op.apply(v, ds2.slice(0, 1)), /takes 2 diagonals/);
  } finally {
    await op.dispose();
  }
});

/** A Conv → (diag) → Conv (stride 2, padded) → (diag) → Gemm model; its three regions in order. */
async function convChain(): Promise<LinearRegion[]> {
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
  const { blocks } = await pipeline(bytes);
  return blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
}

test('a convolutional chain: one run gives what its regions\' own operators give with the diagonals applied between them', async () => {
  const regions = await convChain();
  assert.equal(regions.length, 3);
  const rng = new Random(3);
  const ds = [vec(rng, sizeOf(regions[0].outShape), 0, 1.5), vec(rng, sizeOf(regions[1].outShape), 0, 1.5)];
  const ops = await Promise.all(regions.map((r) => backend.operator(r)));
  const op = await backend.chain!([{ region: regions[0] }, { diag: regions[0].outShape }, { region: regions[1] }, { diag: regions[1].outShape }, { region: regions[2] }]);
  try {
    const mul = (a: Float64Array, d: Float64Array) => a.map((x, i) => x * d[i]);
    const v = vec(rng, op.inSize), w = vec(rng, op.outSize);
    const fwd = await ops[2].apply(mul(await ops[1].apply(mul(await ops[0].apply(v), ds[0])), ds[1]));
    const adj = await ops[0].adjoint(mul(await ops[1].adjoint(mul(await ops[2].adjoint(w), ds[1])), ds[0]));
    assert.ok(relErr(await op.apply(v, ds), fwd) < 1e-5);
    assert.ok(relErr(await op.adjoint(w, ds), adj) < 1e-5);
    // the adjoint is the transpose: ⟨C v, w⟩ = ⟨v, Cᵀ w⟩
    const cv = await op.apply(v, ds), ctw = await op.adjoint(w, ds);
    const lhs = cv.reduce((s, x, i) => s + x * w[i], 0), rhs = v.reduce((s, x, i) => s + x * ctw[i], 0);
    assert.ok(Math.abs(lhs - rhs) <= 1e-5 * Math.max(1, Math.abs(lhs)), `${lhs} against ${rhs}`);
    const g = await op.gram(v, ds);
    assert.ok(relErr(g, await op.adjoint(await op.apply(v, ds), ds)) < 1e-5);
  } finally {
    for (const o of [...ops, op]) await o.dispose();
  }
});

test('the Jacobian walks fused chains where no intermediate tangent is asked for: the same products, one run per Gram product', async () => {
  const rng = new Random(11);
  const layers = randomDense([6, 10, 8, 3], rng);
  const { ir, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const disposables: { dispose(): Promise<void> }[] = [];
  try {
    resetRuntimeStats();
    const plan = await planIr(ir, blocks, backend, disposables);
    assert.ok(typeof plan !== 'string', String(plan));
    assert.equal(runtimeStats().sessions, 0, 'sessions open on first use');
    assert.equal(plan.fused.length, 1, 'one chain spans the MLP');
    assert.equal(plan.fused[0].kind, 'chain');
    // a backend without chains keeps the per-region steps
    const plain: OperatorBackend = { ...backend, chain: undefined };
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
    assert.equal(runtimeStats().sessions, 1, 'the chain\'s Gram session only: regions inside a chain open none of their own');
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

test('fused chains stop where a value has two readers: a residual block keeps its branch point and its sum', async () => {
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
  const { ir, blocks } = await pipeline(bytes);
  const disposables: { dispose(): Promise<void> }[] = [];
  try {
    const plan = await planIr(ir, blocks, backend, disposables);
    assert.ok(typeof plan !== 'string', String(plan));
    const chains = plan.fused.filter((st) => st.kind === 'chain');
    // the branch W2·relu·W1 (u is read twice, so the chain starts after it) and the tail W4·tanh·W3 after the sum's ReLU
    assert.equal(chains.length, 2, plan.fused.map((st) => st.kind).join(' '));
    assert.ok(plan.fused.some((st) => st.kind === 'sum'));
    const slope = new Map<string, { d: Float64Array; d2: Float64Array; u: Float64Array }>();
    for (const b of blocks) if (b.kind === 'node' && b.node.kind === 'activation') slope.set(b.node.output, { d: vec(rng, sizeOf(b.node.outShape), 0, 1), d2: new Float64Array(sizeOf(b.node.outShape)), u: new Float64Array(sizeOf(b.node.outShape)) });
    const s: LocalState = { x: new Float32Array(5), fx: new Float64Array(2), slope, argmax: new Map(), softmax: new Map() };
    const fused = new Jacobian(ir, plan.steps, plan.fused), walked = new Jacobian(ir, plan.steps);
    for (let trial = 0; trial < 3; trial++) {
      const v = vec(rng, 5), u = vec(rng, 2);
      assert.ok(relErr(await fused.jvp(s, v), await walked.jvp(s, v, new Map())) < 1e-5);
      assert.ok(relErr(await fused.vjp(s, u), await walked.vjp(s, u, undefined, new Map())) < 1e-5);
      const inject = new Map(blocks.flatMap((b) => (b.kind === 'node' && b.node.kind === 'activation' ? [[b.node.inputs[0], vec(rng, sizeOf(b.node.inShapes[0]))] as [string, Float64Array]] : [])));
      assert.ok(relErr(await fused.vjp(s, u, inject), await walked.vjp(s, u, inject)) < 1e-5);
      assert.ok(relErr(await fused.gram(s, v), await walked.vjp(s, await walked.jvp(s, v, new Map()), undefined, new Map())) < 1e-5);
    }
  } finally {
    for (const d of disposables) await d.dispose();
  }
});
