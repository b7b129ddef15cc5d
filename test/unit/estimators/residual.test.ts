import assert from 'node:assert/strict';
import { test } from 'node:test';
import { composeAutoLip, type ResidualUse } from '../../../src/estimators/autolip.js';
import { estimateUpper, type MethodSettings } from '../../../src/estimators/methods.js';
import { cheapBound, composeRegions, cpSegmentBound, productMarginFloor } from '../../../src/estimators/cp.js';
import { findResidualBlocks, linearPart, residualBlockBound, type ResidualBlock } from '../../../src/estimators/residual.js';
import { graphCpBound, graphCpMaps, graphCpObstacle } from '../../../src/estimators/graph-cp.js';
import { denseBackend, denseOf, randomMat, settingsWith, twoBlocks, type Mat } from '../../helpers/residual-nets.js';
import { measureRegion, roundingMargin, type NormSettings } from '../../../src/estimators/operator-norm.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { hasShared, SHARED, sigmaMax } from '../../helpers/dense.js';
import { analyze } from '../../../src/index.js';
import { createOrtBackend } from '../../../src/backend/index.js';
import { ACTS, f32, matmul, measureAll, pipeline, settings as baseSettings, tensor, type Act } from '../../helpers/mlp.js';

/**
 * y = a·S x + b·(W_k σ ⋯ σ W_1 x) with biases as an ONNX model (input [1, n]): S null is the identity; `sub` writes
 * the block as Sub(skip, branch) (b = −1); `swap` puts the branch first in the Add.
 */
function residualModel(ws: readonly Mat[], act: Act, skip: Mat | null, opts: { sub?: boolean; swap?: boolean; tail?: boolean } = {}): Uint8Array {
  const n = ws[0].cols;
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  let h = 'x';
  ws.forEach((l, k) => {
    inits.push([`w${k}`, tensor([l.rows, l.cols], l.w)], [`b${k}`, tensor([l.rows], Array.from({ length: l.rows }, (_, i) => 0.1 * (i - k)))]);
    nodes.push({ opType: 'Gemm', inputs: [h, `w${k}`, `b${k}`], outputs: [`h${k}`], attrs: { transB: { i: 1 } }, name: `gemm${k}` });
    h = `h${k}`;
    if (k + 1 < ws.length) { nodes.push({ opType: act.op, inputs: [h], outputs: [`a${k}`], attrs: act.attrs ?? {}, name: `act${k}` }); h = `a${k}`; }
  });
  let s = 'x';
  if (skip) {
    inits.push(['p', tensor([skip.rows, skip.cols], skip.w)]);
    nodes.push({ opType: 'Gemm', inputs: ['x', 'p'], outputs: ['px'], attrs: { transB: { i: 1 } }, name: 'proj' });
    s = 'px';
  }
  const ins = opts.swap ? [h, s] : [s, h];
  nodes.push({ opType: opts.sub ? 'Sub' : 'Add', inputs: ins, outputs: ['y'], name: 'residual' });
  let out = 'y';
  if (opts.tail) { nodes.push({ opType: 'Relu', inputs: ['y'], outputs: ['z'], name: 'after' }); out = 'z'; }
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, n] }], outputs: [{ name: out }], nodes, initializers: inits });
}

const identity = (n: number): Float64Array => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

/** a·S + b·W_k D_{k−1} ⋯ D_1 W_1 for diagonal D_i (row-major). */
function blockJacobian(ws: readonly Mat[], ds: readonly Float64Array[], skip: Float64Array, a: number, b: number): Float64Array {
  let m = Float64Array.from(ws[0].w);
  const n = ws[0].cols;
  for (let k = 1; k < ws.length; k++) {
    for (let i = 0; i < ws[k - 1].rows; i++) for (let j = 0; j < n; j++) m[i * n + j] *= ds[k - 1][i];
    m = matmul(ws[k].w, ws[k].rows, ws[k].cols, m, n);
  }
  return m.map((v, i) => a * skip[i] + b * v);
}

/** max over D_i ∈ {α, β}^{n_i} of ‖a·S + b·W_k D ⋯ D W_1‖₂: the sup over the slope box (convex in each D_i), ≥ the block's constant. */
function bruteForce(ws: readonly Mat[], slope: readonly [number, number], skip: Float64Array, a: number, b: number): number {
  const hidden = ws.slice(0, -1).map((l) => l.rows);
  const bits = hidden.reduce((x, y) => x + y, 0);
  assert.ok(bits <= 14);
  let best = 0;
  for (let mask = 0; mask < 2 ** bits; mask++) {
    let bit = 0;
    const ds = hidden.map((h) => Float64Array.from({ length: h }, () => ((mask >> bit++) & 1 ? slope[1] : slope[0])));
    best = Math.max(best, sigmaMax(blockJacobian(ws, ds, skip, a, b), ws[ws.length - 1].rows, ws[0].cols));
  }
  return best;
}

/** Builds the model, finds its one residual block and bounds it with the dense backend. */
async function bound(ws: readonly Mat[], act: Act, skip: Mat | null, opts: { sub?: boolean; swap?: boolean } = {}) {
  const { ir, blocks, segments } = await pipeline(residualModel(ws, act, skip, opts));
  const found = findResidualBlocks(ir, blocks, segments);
  assert.equal(found.length, 1, 'one residual block');
  const backend = denseBackend();
  const s = settingsWith(backend);
  const known = await measureAll(blocks, s);
  const res = await residualBlockBound(found[0], s, { known });
  return { res, block: found[0], backend, known, ir, blocks };
}

test('findResidualBlocks: identity and projection skips, Add and Sub, either input order', async () => {
  const rng = new Random(1);
  const ws = [randomMat(4, 3, rng), randomMat(3, 4, rng)];
  for (const [skip, opts] of [[null, {}], [randomMat(3, 3, rng), {}], [null, { sub: true }], [null, { swap: true }], [randomMat(3, 3, rng), { sub: true, swap: true }]] as const) {
    const { ir, blocks, segments } = await pipeline(residualModel(ws, ACTS.relu, skip, opts));
    const [b, ...rest] = findResidualBlocks(ir, blocks, segments);
    assert.equal(rest.length, 0);
    assert.equal(b.input, 'x');
    assert.equal(b.output, 'y');
    assert.equal(b.skip === null, skip === null);
    assert.equal(b.branch.regions.length, 2);
    assert.equal(b.branchIndex, opts.swap ? 0 : 1);
    assert.deepEqual(b.blocks, [...b.blocks].sort((x, y) => x - y));
    assert.equal(b.blocks.length, skip ? 5 : 4, 'two operators, one activation, the sum (and the skip)');
  }
});

test('findResidualBlocks: no block in a plain chain, nor when the branch output is also read elsewhere', async () => {
  const rng = new Random(2);
  const ws = [randomMat(4, 3, rng), randomMat(3, 4, rng)];
  // the residual sum reads the branch; a Relu after the sum does not make a second block
  const tail = await pipeline(residualModel(ws, ACTS.relu, null, { tail: true }));
  assert.equal(findResidualBlocks(tail.ir, tail.blocks, tail.segments).length, 1);
  // g's output also read by a node outside the block
  const { ir, blocks, segments } = await pipeline(residualModel(ws, ACTS.relu, null));
  const g = segments[0].output;
  const extra = { kind: 'activation' as const, name: 'extra', opType: 'Relu', inputs: [g], inShapes: [[1, 3]], output: 'extra', outShape: [1, 3], fn: 'relu', slope: [0, 1] as const };
  assert.equal(findResidualBlocks(ir, [...blocks, { kind: 'node', node: extra }], segments).length, 0, 'the branch output is read by a node outside the block');
  const plain = [randomMat(4, 3, rng), randomMat(3, 4, rng), randomMat(2, 3, rng)];
  const mlp = await pipeline(mlpBytes(plain));
  assert.equal(findResidualBlocks(mlp.ir, mlp.blocks, mlp.segments).length, 0);
});

function mlpBytes(ws: readonly Mat[]): Uint8Array {
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  let h = 'x';
  ws.forEach((l, k) => {
    inits.push([`w${k}`, tensor([l.rows, l.cols], l.w)]);
    nodes.push({ opType: 'Gemm', inputs: [h, `w${k}`], outputs: [`h${k}`], attrs: { transB: { i: 1 } }, name: `gemm${k}` });
    h = `h${k}`;
    if (k + 1 < ws.length) { nodes.push({ opType: 'Relu', inputs: [h], outputs: [`a${k}`], name: `relu${k}` }); h = `a${k}`; }
  });
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, ws[0].cols] }], outputs: [{ name: h }], nodes, initializers: inits });
}

test('the linear part is a·S + b·c·W_k⋯W_1 as one region', async () => {
  const rng = new Random(3);
  const ws = [randomMat(5, 3, rng), randomMat(3, 5, rng)];
  const p = randomMat(3, 3, rng);
  const { ir, blocks, segments } = await pipeline(residualModel(ws, ACTS.relu, p, { sub: true }));
  const [b] = findResidualBlocks(ir, blocks, segments);
  const got = denseOf(linearPart(b, 0.5));
  const want = blockJacobian(ws, [new Float64Array(5).fill(0.5)], p.w, 1, -1);
  assert.equal(got.rows, 3);
  assert.equal(got.cols, 3);
  got.m.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-12 * (1 + Math.abs(want[i])), `entry ${i}: ${v} vs ${want[i]}`));
});

test('residual bound: ≥ the brute-forced constant, ≤ ‖S‖ + ‖W2‖‖W1‖, and equal to its formula (ReLU, LeakyReLU, tanh; identity and projection; 2-D inputs)', async () => {
  let tighter = 0;
  for (const [name, act] of [['relu', ACTS.relu], ['leaky01', ACTS.leaky01], ['leakyNeg', ACTS.leakyNeg], ['tanh', ACTS.tanh]] as const) {
    for (const seed of [1, 2, 3]) {
      for (const projection of [false, true]) {
        const rng = new Random(100 * seed + (projection ? 7 : 0));
        const ws = [randomMat(8, 2, rng), randomMat(2, 8, rng)];
        const p = projection ? randomMat(2, 2, rng) : null;
        const sub = seed === 3;
        const { res, known, blocks } = await bound(ws, act, p, { sub });
        const tag = `${name} seed ${seed}${projection ? ' projection' : ''}${sub ? ' Sub' : ''}`;
        const s = p ? p.w : identity(2);
        const b = sub ? -1 : 1;
        const brute = bruteForce(ws, act.slope, s, 1, b);
        const [n1, n2, ns] = [sigmaMax(ws[0].w, 8, 2), sigmaMax(ws[1].w, 2, 8), sigmaMax(s, 2, 2)];
        const cMid = (act.slope[0] + act.slope[1]) / 2, r = (act.slope[1] - act.slope[0]) / 2;
        const slopeMax = Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1]));
        const formula = sigmaMax(blockJacobian(ws, [new Float64Array(8).fill(Math.fround(cMid))], s, 1, b), 2, 2) + r * n2 * n1;
        assert.equal(res.upper.kind, 'certified', tag);
        assert.ok(brute <= res.upper.value * (1 + 1e-12), `${tag}: brute force ${brute} > bound ${res.upper.value}`);
        assert.ok(res.upper.value <= (ns + slopeMax * n2 * n1) * (1 + 1e-6), `${tag}: bound ${res.upper.value} > ‖S‖ + AutoLip(g) ${ns + slopeMax * n2 * n1}`);
        assert.ok(Math.abs(res.upper.value - formula) <= 1e-5 * formula, `${tag}: bound ${res.upper.value}, formula ${formula}`);
        assert.ok(res.estimate !== null && res.estimate >= brute * (1 - 1e-4) && res.estimate <= res.upper.value * (1 + 1e-6), `${tag}: estimate ${res.estimate}`);
        assert.equal(res.norms, 1, `${tag}: only the linear part is measured when the single norms are known`);
        assert.equal(known.size, blocks.filter((x) => x.kind === 'operator').length);
        // the CP bound of the branch plus ‖S‖: what the composition had before
        const cpBranch = Math.abs(cMid) * sigmaMax(matmul(ws[1].w, 2, 8, ws[0].w, 2), 2, 2) + r * n2 * n1;
        if (res.upper.value < (ns + cpBranch) * (1 - 1e-3)) tighter++;
      }
    }
  }
  assert.ok(tighter >= 12, `the residual bound was tighter than ‖S‖ + CP(g) in only ${tighter} of 24 nets`);
});

test('residual bound: two activations in the branch (k = 3), brute force over both patterns', async () => {
  for (const [name, act] of [['relu', ACTS.relu], ['leaky05', ACTS.leaky05]] as const) {
    for (const seed of [4, 5]) {
      const rng = new Random(seed);
      const ws = [randomMat(5, 2, rng), randomMat(4, 5, rng), randomMat(2, 4, rng)];
      const { res } = await bound(ws, act, null);
      const brute = bruteForce(ws, act.slope, identity(2), 1, 1);
      const autolip = 1 + Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1])) ** 2 * sigmaMax(ws[0].w, 5, 2) * sigmaMax(ws[1].w, 4, 5) * sigmaMax(ws[2].w, 2, 4);
      assert.ok(brute <= res.upper.value * (1 + 1e-12), `${name} seed ${seed}: brute force ${brute} > bound ${res.upper.value}`);
      assert.ok(res.upper.value <= autolip * (1 + 1e-6), `${name} seed ${seed}: bound ${res.upper.value} > 1 + AutoLip(g) ${autolip}`);
      assert.equal(res.norms, 3, 'the linear part and the products W2W1, W3W2');
    }
  }
});

test('residual bound: exact on I − 2·QᵀDQ (relu, W2·W1 = −2I), where 1 + CP(g) gives 3', async () => {
  const rng = new Random(9);
  // a random orthogonal Q (Gram–Schmidt), rounded to float32; W1 = Q, W2 = −2Qᵀ exactly
  const n = 4;
  const q: number[][] = [];
  while (q.length < n) {
    let v = Array.from({ length: n }, () => rng.normal());
    for (const u of q) { const d = v.reduce((a, x, i) => a + x * u[i], 0); v = v.map((x, i) => x - d * u[i]); }
    const len = Math.hypot(...v);
    q.push(v.map((x) => x / len));
  }
  const w1 = f32(q.flat());
  const w2 = Float64Array.from({ length: n * n }, (_, t) => -2 * w1[(t % n) * n + Math.floor(t / n)]);
  const ws = [{ w: w1, rows: n, cols: n }, { w: w2, rows: n, cols: n }];
  const { res } = await bound(ws, ACTS.relu, null);
  const brute = bruteForce(ws, [0, 1], identity(n), 1, 1);
  assert.ok(Math.abs(brute - 1) < 1e-6, `brute force ${brute}`);
  assert.ok(res.upper.value >= brute * (1 - 1e-12) && res.upper.value <= 1 + 1e-5, `bound ${res.upper.value}`);
  assert.ok(res.linear.upper.value < 1e-5, `the linear part I + ½·W2W1 is ~0: ${res.linear.upper.value}`);
});

test('composition: a residual factor replaces the sum where smaller, the method is named, and best only', async () => {
  const rng = new Random(11);
  const n = 3;
  const w1 = randomMat(6, n, rng);
  // W2 ≈ −2·pinv-like: make W2·W1 close to −2I so that the residual bound is far below 1 + ‖W2‖‖W1‖
  const w2 = { w: f32(Array.from({ length: n * 6 }, (_, t) => -2 * w1.w[(t % 6) * n + Math.floor(t / 6)] / 1.69)), rows: n, cols: 6 };
  const { res, block, known, ir, blocks } = await bound([w1, w2], ACTS.relu, null, {});
  const use: ResidualUse = { id: block.id, input: block.input, output: block.output, nodes: [block.sum.name], upper: res.upper, estimate: res.estimate, ms: res.ms, note: res.note };
  const plain = composeAutoLip(ir, blocks, known, '2');
  const withRes = composeAutoLip(ir, blocks, known, '2', [], 'best', [use]);
  assert.equal(plain.upper!.method, 'autolip');
  assert.equal(withRes.upper!.method, 'autolip+residual');
  const autolipSum = 1 + known.get(block.branch.regions[0].id)!.upper.value * known.get(block.branch.regions[1].id)!.upper.value;
  assert.ok(Math.abs(plain.upper!.value - autolipSum) <= 1e-9 * autolipSum);
  assert.ok(Math.abs(withRes.upper!.value - res.upper.value) <= 1e-9 * res.upper.value, `${withRes.upper!.value} vs ${res.upper.value}`);
  assert.ok(res.upper.value < 0.8 * autolipSum, `residual ${res.upper.value}, sum ${autolipSum}`);
  assert.ok(withRes.layers.some((l) => l.id === block.id && l.upper?.value === res.upper.value));
  // a residual bound above the sum's is not taken
  const loose: ResidualUse = { ...use, upper: { ...res.upper, value: 10 * autolipSum } };
  assert.equal(composeAutoLip(ir, blocks, known, '2', [], 'best', [loose]).upper!.method, 'autolip');
  // other modes ignore it
  assert.equal(composeAutoLip(ir, blocks, known, '2', [], 'cp', [use]).upper!.value, plain.upper!.value);
});

test('residual bound: ℓ∞ is refused with an internal error (ℓ2 only)', async () => {
  const rng = new Random(12);
  const { ir, blocks, segments } = await pipeline(residualModel([randomMat(3, 2, rng), randomMat(2, 3, rng)], ACTS.relu, null));
  const [b] = findResidualBlocks(ir, blocks, segments) as ResidualBlock[];
  await assert.rejects(residualBlockBound(b, { ...settingsWith(denseBackend()), norm: 'inf' }), /ℓ2 bound/);
});

test('graph CP on one block is the residual bound (the same expansion)', async () => {
  for (const seed of [21, 22]) {
    const rng = new Random(seed);
    const ws = [randomMat(6, 2, rng), randomMat(2, 6, rng)];
    const { res, ir, blocks, known } = await bound(ws, ACTS.relu, randomMat(2, 2, rng));
    const s = settingsWith(denseBackend());
    const g = await graphCpBound(graphCpMaps(ir, blocks, known, s)!, s, { budget: Infinity });
    assert.ok(g !== null);
    assert.equal(g.upper.kind, 'certified');
    assert.ok(Math.abs(g.upper.value - res.upper.value) <= 1e-9 * res.upper.value, `graph CP ${g.upper.value}, residual ${res.upper.value}`);
  }
});

test('graph CP across two residual blocks and the activation between them: ≥ brute force over all 2^10 patterns, ≤ AutoLip', async () => {
  let tighter = 0;
  for (const [name, act] of [['relu', ACTS.relu], ['leaky05', ACTS.leaky05], ['tanh', ACTS.tanh]] as const) {
    for (const seed of [31, 32, 33]) {
      const rng = new Random(seed);
      const ws = [randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)];
      const { ir, blocks } = await pipeline(twoBlocks(ws, act));
      assert.equal(graphCpObstacle(ir, blocks), null);
      const backend = denseBackend();
      const s = settingsWith(backend);
      const known = await measureAll(blocks, s);
      const g = (await graphCpBound(graphCpMaps(ir, blocks, known, s)!, s, { budget: Infinity }))!;
      const none = (await graphCpBound(graphCpMaps(ir, blocks, known, s)!, s, { budget: 0 }))!;
      const autolip = composeAutoLip(ir, blocks, known, '2').upper!.value;
      // brute force: every pattern of the 4 + 2 + 4 units, J = (I + W4 D3 W3)·D2·(I + W2 D1 W1)
      let brute = 0;
      for (let mask = 0; mask < 1 << 10; mask++) {
        const d = (bits: number, at: number) => Float64Array.from({ length: bits }, (_, i) => ((mask >> (at + i)) & 1 ? act.slope[1] : act.slope[0]));
        const j1 = blockJacobian([ws[0], ws[1]], [d(4, 0)], identity(2), 1, 1);
        const d2 = d(2, 4);
        const mid = j1.map((v, i) => v * d2[Math.floor(i / 2)]);
        const j2 = blockJacobian([ws[2], ws[3]], [d(4, 6)], identity(2), 1, 1);
        brute = Math.max(brute, sigmaMax(matmul(j2, 2, 2, mid, 2), 2, 2));
      }
      const tag = `${name} seed ${seed}`;
      assert.ok(brute <= g.upper.value * (1 + 1e-12), `${tag}: brute force ${brute} > graph CP ${g.upper.value}`);
      assert.ok(brute <= none.upper.value * (1 + 1e-12), `${tag}: brute force ${brute} > graph CP without measurements ${none.upper.value}`);
      assert.ok(g.upper.value <= none.upper.value * (1 + 1e-9), `${tag}: measured maps made it looser`);
      assert.ok(g.upper.value <= autolip * (1 + 1e-6), `${tag}: graph CP ${g.upper.value} > AutoLip ${autolip}`);
      assert.equal(none.measured, 0);
      assert.ok(g.measured > 0 && g.composed === 0, `${tag}: ${g.measured} measured, ${g.composed} composed`);
      if (g.upper.value < autolip * 0.9) tighter++;
    }
  }
  assert.ok(tighter >= 5, `graph CP was 10% below AutoLip in only ${tighter} of 9 nets`);
});

test('graphCpObstacle: a max-pool or a non-float32 slope midpoint declines', async () => {
  const rng = new Random(41);
  const ws = [randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)];
  const { ir, blocks } = await pipeline(twoBlocks(ws, ACTS.leaky01));
  assert.match(graphCpObstacle(ir, blocks) ?? '', /slope midpoint .* not a float32 number/);
  const relu = await pipeline(twoBlocks(ws, ACTS.relu));
  const pool = { kind: 'lipschitz' as const, name: 'pool', opType: 'MaxPool', inputs: ['y'], inShapes: [[1, 2]], output: 'p', outShape: [1, 2], fn: 'maxpool', l2: 1, linf: 1, note: '' };
  assert.match(graphCpObstacle(relu.ir, [...relu.blocks, { kind: 'node', node: pool }]) ?? '', /'pool' \(MaxPool\) is neither linear nor an elementwise activation/);
  // 3 + 65 expanded activations: beyond the planned size
  const many = Array.from({ length: 65 }, (_, i) => ({ kind: 'node' as const, node: { kind: 'activation' as const, name: `r${i}`, opType: 'Relu', inputs: [i ? `r${i - 1}` : 'y'], inShapes: [[1, 2]], output: `r${i}`, outShape: [1, 2], fn: 'relu', slope: [0, 1] as const } }));
  assert.match(graphCpObstacle(relu.ir, [...relu.blocks, ...many]) ?? '', /68 activations to expand/);
});

test('sri_resnet_b (residual CNN): the residual and graph bounds stay above the witnessed lower bound and below AutoLip', { skip: hasShared ? false : 'skipped: ../shared/models is absent (a user clone)' }, async () => {
  const r = await analyze(`${SHARED}sri_resnet_b.onnx`, { device: 'cpu' });
  const by = new Map(r.global.methods.map((m) => [m.method, m]));
  const lower = r.global.lower!.value;
  const autolip = by.get('autolip')!.upper!.value;
  for (const name of ['autolip+residual', 'graph-cp']) {
    const m = by.get(name);
    assert.ok(m?.upper, `${name} is listed in global.methods`);
    assert.ok(m.upper.value >= lower, `${name} ${m.upper.value} is below the witnessed lower bound ${lower}`);
    assert.ok(m.upper.value < autolip, `${name} ${m.upper.value} is not below AutoLip ${autolip}`);
  }
  // the graph bound is the tightest there (4745 against autolip+cp+residual 22106 when written)
  assert.ok(r.global.upper!.value <= by.get('graph-cp')!.upper!.value);
  assert.ok(r.global.upper!.value < 0.5 * by.get('autolip+cp')!.upper!.value, `best ${r.global.upper!.value} vs autolip+cp ${by.get('autolip+cp')!.upper!.value}`);
  assert.ok(r.layers.some((l) => l.opTypes.includes('residual block')), 'one layer row per residual block');
});

test('through onnxruntime (float32 kernels, the chain margins): the residual and graph bounds stay ≥ brute force and within 1e-3 of the float64 backend', async () => {
  for (const seed of [51, 52, 53]) {
    const rng = new Random(seed);
    const ws = [randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)];
    const { ir, blocks, segments } = await pipeline(twoBlocks(ws, ACTS.relu));
    const values: number[][] = [];
    for (const backend of [createOrtBackend({ runtime: { device: 'cpu' } }), denseBackend()]) {
      const s = { ...settingsWith(backend), certify: 'off' as const };
      const known = await measureAll(blocks, s);
      const res = await Promise.all(findResidualBlocks(ir, blocks, segments).map((b) => residualBlockBound(b, s, { known })));
      const g = (await graphCpBound(graphCpMaps(ir, blocks, known, s)!, s, { budget: Infinity }))!;
      values.push([...res.map((r) => r.upper.value), g.upper.value]);
      assert.equal(g.upper.kind, 'probabilistic');
    }
    const [ort, dense] = values;
    assert.equal(ort.length, 3, 'two residual blocks and the graph');
    ort.forEach((v, i) => assert.ok(Math.abs(v - dense[i]) <= 1e-3 * dense[i], `seed ${seed} bound ${i}: onnxruntime ${v}, float64 ${dense[i]}`));
    // the first block's brute force: its 4 units
    const brute1 = bruteForce([ws[0], ws[1]], [0, 1], identity(2), 1, 1);
    assert.ok(brute1 <= ort[0], `seed ${seed}: brute force ${brute1} > residual bound ${ort[0]}`);
  }
});

test('under best, the residual block reuses the partial products CP measured: no Gram map runs twice, and the bound stays ≥ brute force', async () => {
  const rng = new Random(6);
  const ws = [randomMat(5, 2, rng), randomMat(4, 5, rng), randomMat(2, 4, rng)];
  const { ir, blocks } = await pipeline(residualModel(ws, ACTS.relu, null));
  const backend = denseBackend();
  const o: MethodSettings = { method: 'best', norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, iterations: 100, seed: 0, certifyBudget: 2800, lowerBudget: 0, lowerPairs: 0, exactBudget: 0, seqlipK: 2, cpWindow: 0, sdpWork: 0 };
  const warnings: string[] = [];
  const up = await estimateUpper({ ir, blocks, inputName: 'x', outputName: 'y', inputShape: [1, 2], path: 'residual.onnx' }, backend, o, warnings);
  const residual = up.methods.find((m) => m.method === 'autolip+residual');
  assert.ok(residual?.upper, `a residual bound (methods: ${up.methods.map((m) => m.method).join(', ')}; warnings: ${warnings.join(' ')})`);
  const twice = backend.grams.filter((id, i) => backend.grams.indexOf(id) !== i);
  assert.deepEqual(twice, [], `Gram maps measured twice: ${twice.join(', ')} (all: ${backend.grams.join(', ')})`);
  const brute = bruteForce(ws, ACTS.relu.slope, identity(2), 1, 1);
  assert.ok(brute <= residual.upper.value * (1 + 1e-12), `brute force ${brute} > residual bound ${residual.upper.value}`);
});

test('a convolutional block\'s linear part: measureRegion\'s start, steps and KW bound with the chained margin; its composition certificate only where it could be chosen', async () => {
  // x [1,2,6,6] → Conv 3×3 (2→3) → Relu → Conv 3×3 (3→2) → Add x: the composition certificate of I + c·W2W1 is at
  // least |c|·‖W2‖‖W1‖; with large weights it is far above the KW bound, so it is left out, and the bound is the same
  const rng = new Random(71);
  const conv = (cout: number, cin: number, gain: number) => tensor([cout, cin, 3, 3], Array.from({ length: cout * cin * 9 }, () => (rng.normal() * gain) / Math.sqrt(9 * cin)));
  for (const gain of [3, 0.05]) {
    const nodes: NodeSpec[] = [
      { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['h'], name: 'c1', attrs: { pads: { ints: [1, 1, 1, 1] } } },
      { opType: 'Relu', inputs: ['h'], outputs: ['a'], name: 'relu' },
      { opType: 'Conv', inputs: ['a', 'w2'], outputs: ['g'], name: 'c2', attrs: { pads: { ints: [1, 1, 1, 1] } } },
      { opType: 'Add', inputs: ['x', 'g'], outputs: ['y'], name: 'add' },
    ];
    const [w1, w2] = [conv(3, 2, gain), conv(2, 3, gain)];
    const bytes = encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, 2, 6, 6] }], outputs: [{ name: 'y', dims: [1, 2, 6, 6] }], nodes, initializers: [['w1', w1], ['w2', w2]] });
    const { ir, blocks, segments } = await pipeline(bytes);
    const [block] = findResidualBlocks(ir, blocks, segments);
    assert.ok(block, 'one residual block');
    const s = { ...baseSettings, certify: 'auto' as const };
    const known = await measureAll(blocks, s);
    const res = await residualBlockBound(block, s, { known });
    // measureRegion on the same region with the same index: the same start, so the same Ritz value and steps
    const direct = await measureRegion(linearPart(block, 0.5), s, 3_000_000 + block.ordinal * 4096 + 4095);
    assert.equal(res.linear.estimate, direct.estimate);
    assert.equal(res.linear.iterations, direct.iterations);
    const kw = direct.candidates.find((c) => c.kind === 'probabilistic')!;
    assert.ok(res.linear.upper.value <= kw.value, `chained ${res.linear.upper.value} ≤ composition-margin KW ${kw.value}`);
    const cert = direct.candidates.find((c) => c.kind === 'certified')!;
    const hasCert = res.linear.candidates.some((c) => c.kind === 'certified');
    if (cert.value > res.linear.upper.value * 1.01) assert.ok(!hasCert, `gain ${gain}: certificate ${cert.value} far above ${res.linear.upper.value}, left out`);
    else assert.ok(hasCert, `gain ${gain}: certificate ${cert.value} near ${res.linear.upper.value}, computed`);
    // the bound is never below the true norm of the linear part: the float64 matrix of I + ½·W2W1, column by column
    const conv3 = (x: Float64Array, w: Float32Array, cin: number, cout: number) => {
      const y = new Float64Array(cout * 36);
      for (let o = 0; o < cout; o++) for (let c = 0; c < cin; c++) for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) for (let di = 0; di < 3; di++) for (let dj = 0; dj < 3; dj++) {
        const a = i + di - 1, b = j + dj - 1;
        if (a >= 0 && a < 6 && b >= 0 && b < 6) y[o * 36 + i * 6 + j] += w[((o * cin + c) * 3 + di) * 3 + dj] * x[c * 36 + a * 6 + b];
      }
      return y;
    };
    const m = new Float64Array(72 * 72);
    for (let j = 0; j < 72; j++) {
      const e = Float64Array.from({ length: 72 }, (_, i) => (i === j ? 1 : 0));
      const col = conv3(conv3(e, w1.data, 2, 3), w2.data, 3, 2);
      for (let i = 0; i < 72; i++) m[i * 72 + j] = e[i] + 0.5 * col[i];
    }
    const truth = sigmaMax(m, 72, 72);
    assert.ok(res.linear.upper.value >= truth && res.linear.upper.value <= 1.2 * truth, `linear part ${res.linear.upper.value} vs σ_max ${truth}`);
  }
});

/**
 * Two conv residual blocks, x → Conv 3×3 → Relu → Conv 3×3 → + x, twice, with a Relu between: `c` input channels, `h`
 * hidden, `size`×`size` images, Gaussian weights of gain `gain`/√fan-in from seed `seed`.
 */
function twoConvBlocks(seed: number, gain: number, c: number, h: number, size: number): Uint8Array {
  const rng = new Random(seed);
  const conv = (cout: number, cin: number) => tensor([cout, cin, 3, 3], Array.from({ length: cout * cin * 9 }, () => (rng.normal() * gain) / Math.sqrt(9 * cin)));
  const pads = { pads: { ints: [1, 1, 1, 1] } };
  const nodes: NodeSpec[] = [
    { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['h1'], name: 'c1', attrs: pads }, { opType: 'Relu', inputs: ['h1'], outputs: ['a1'], name: 'r1' },
    { opType: 'Conv', inputs: ['a1', 'w2'], outputs: ['g1'], name: 'c2', attrs: pads }, { opType: 'Add', inputs: ['x', 'g1'], outputs: ['y1'], name: 'add1' },
    { opType: 'Relu', inputs: ['y1'], outputs: ['z'], name: 'r2' },
    { opType: 'Conv', inputs: ['z', 'w3'], outputs: ['h2'], name: 'c3', attrs: pads }, { opType: 'Relu', inputs: ['h2'], outputs: ['a2'], name: 'r3' },
    { opType: 'Conv', inputs: ['a2', 'w4'], outputs: ['g2'], name: 'c4', attrs: pads }, { opType: 'Add', inputs: ['z', 'g2'], outputs: ['y'], name: 'add2' },
  ];
  const dims = [1, c, size, size];
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims }], outputs: [{ name: 'y', dims }], nodes, initializers: [['w1', conv(h, c)], ['w2', conv(c, h)], ['w3', conv(h, c)], ['w4', conv(c, h)]] });
}

test('under best, a convolutional branch\'s whole product waits for the block\'s bound: skipped only where CP with it could not be chosen, the reported bound the one with it measured', async () => {
  // two conv residual blocks (x → Conv 3×3 → Relu → Conv 3×3 → + x, twice, a Relu between): the whole products W2·W1
  // are the only products CP measures, and the residual bounds need only the single convolutions' norms
  const bytes = twoConvBlocks(73, 2, 2, 3, 6);
  const { ir, blocks, segments } = await pipeline(bytes);
  const backend = createOrtBackend({ runtime: { device: 'cpu' } });
  const o: MethodSettings = { method: 'best', norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, iterations: 200, seed: 0, certifyBudget: 2800, lowerBudget: 0, lowerPairs: 0, exactBudget: 0, seqlipK: 2, cpWindow: 0, sdpWork: 0 };
  const up = await estimateUpper({ ir, blocks, inputName: 'x', outputName: 'y', inputShape: [1, 2, 6, 6], path: 'two-blocks.onnx' }, backend, o, []);
  const residual = up.methods.find((m) => m.method === 'autolip+residual')!;
  assert.ok(residual?.upper && up.upper!.value <= residual.upper.value, 'a residual line, at or above the reported bound');
  // what CP gave before (every product measured, the same seeds) and what the residual blocks give, per block
  const s: NormSettings = { norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, maxIterations: 200, seed: 0, backend, certifyBudget: 2.8e9 };
  const found = findResidualBlocks(ir, blocks, segments);
  assert.equal(found.length, 2);
  let skips = 0;
  for (const block of found) {
    const full = await cpSegmentBound(block.branch, s, { known: up.norms });
    const res = await residualBlockBound(block, s, { known: up.norms });
    const layer = up.result.layers.find((l) => l.id === block.branch.id)!;
    const [, value, count] = /CP (\S+) \((\d+) products\)/.exec(layer.note) ?? [];
    assert.ok(value, `CP's note in ${layer.note}`);
    // a skipped whole product could not have changed the block: the segment's factor is at most CP with it, or
    // R ≤ ‖I‖ + CP(with it); a measured one gives CP as before
    if (count === '0') assert.ok(layer.upper!.value <= full.upper.value || res.upper.value <= 1 + full.upper.value, `${block.id}: factor ${layer.upper!.value}, R ${res.upper.value}, CP with the whole product ${full.upper.value}, yet it was skipped`);
    else assert.equal(value, full.upper.value.toPrecision(4), `${block.id}: measured, CP as before`);
    skips += count === '0' ? 1 : 0;
  }
  assert.ok(skips > 0, 'at least one whole product skipped');
});

test('productMarginFloor stays under the composition\'s rounding margin of every product of a bottleneck branch, within 1e-6 (nothing folds across its regions)', async () => {
  // x [1,4,6,6] → Conv 1×1 → BN → Relu → Conv 3×3 → BN → Relu → Conv 1×1 → BN → Add x (a bottleneck; BN folds into each conv)
  const rng = new Random(79);
  const conv = (cout: number, cin: number, k: number) => tensor([cout, cin, k, k], Array.from({ length: cout * cin * k * k }, () => (rng.normal() * 1.5) / Math.sqrt(k * k * cin)));
  const vec = (n: number, f: () => number) => tensor([n], Array.from({ length: n }, f));
  const bn = (name: string, input: string, output: string, c: number): [NodeSpec, [string, ReturnType<typeof tensor>][]] => [
    { opType: 'BatchNormalization', inputs: [input, `${name}s`, `${name}b`, `${name}m`, `${name}v`], outputs: [output], name },
    [[`${name}s`, vec(c, () => 0.5 + rng.next())], [`${name}b`, vec(c, () => rng.normal())], [`${name}m`, vec(c, () => rng.normal())], [`${name}v`, vec(c, () => 0.5 + rng.next())]],
  ];
  const [bn1, i1] = bn('bn1', 'h1', 'g1', 2), [bn2, i2] = bn('bn2', 'h2', 'g2', 2), [bn3, i3] = bn('bn3', 'h3', 'g3', 4);
  const nodes: NodeSpec[] = [
    { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['h1'], name: 'c1' }, bn1, { opType: 'Relu', inputs: ['g1'], outputs: ['a1'], name: 'r1' },
    { opType: 'Conv', inputs: ['a1', 'w2'], outputs: ['h2'], name: 'c2', attrs: { pads: { ints: [1, 1, 1, 1] } } }, bn2, { opType: 'Relu', inputs: ['g2'], outputs: ['a2'], name: 'r2' },
    { opType: 'Conv', inputs: ['a2', 'w3'], outputs: ['h3'], name: 'c3' }, bn3, { opType: 'Add', inputs: ['x', 'g3'], outputs: ['y'], name: 'add' },
  ];
  const bytes = encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, 4, 6, 6] }], outputs: [{ name: 'y', dims: [1, 4, 6, 6] }], nodes, initializers: [['w1', conv(2, 4, 1)], ['w2', conv(2, 2, 3)], ['w3', conv(4, 2, 1)], ...i1, ...i2, ...i3] });
  const { ir, blocks, segments } = await pipeline(bytes);
  const [block] = findResidualBlocks(ir, blocks, segments);
  assert.ok(block, 'one residual block');
  assert.equal(block.branch.regions.length, 3);
  assert.ok(block.branch.regions.every((r) => r.nodes.length === 2), 'Conv + its BN scale in each region');
  // with IEEE's unit and with WebGPU's (WGSL's faithful rounding): the γ-sums about double, the floor follows
  for (const unit of [2 ** -24, 2 ** -23]) {
    for (const [i, j] of [[0, 1], [1, 2], [0, 2]]) {
      const exact = cheapBound(composeRegions(block.branch, i, j), unit);
      const margin = roundingMargin(exact.gammaSum, exact.absNorm);
      const floor = productMarginFloor(block.branch, i, j, unit);
      assert.ok(floor <= margin && floor >= margin * (1 - 1e-6), `unit ${unit}, product ${i}..${j}: floor ${floor}, margin ${margin}`);
      if (unit > 2 ** -24) {
        const ieee = cheapBound(composeRegions(block.branch, i, j), 2 ** -24);
        assert.ok(exact.gammaSum >= 2 * ieee.gammaSum && exact.gammaSum <= 2.001 * ieee.gammaSum && exact.absNorm === ieee.absNorm, `γ-sum ${exact.gammaSum} vs ${ieee.gammaSum}`);
      }
    }
  }
});

test('under best, products measured side by side (backend.concurrency 3) give the numbers of one at a time', async () => {
  // two conv residual blocks with a Relu between (as above): CP's products and the residual blocks are measured in lanes
  const bytes = twoConvBlocks(83, 1.5, 3, 4, 5);
  const { ir, blocks } = await pipeline(bytes);
  const o: MethodSettings = { method: 'best', norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, iterations: 200, seed: 0, certifyBudget: 2800, lowerBudget: 0, lowerPairs: 0, exactBudget: 0, seqlipK: 2, cpWindow: 0, sdpWork: 0 };
  const model = { ir, blocks, inputName: 'x', outputName: 'y', inputShape: [1, 3, 5, 5], path: 'two-blocks.onnx' };
  const backend = createOrtBackend({ runtime: { device: 'cpu' } });
  const strip = (up: Awaited<ReturnType<typeof estimateUpper>>) => JSON.stringify({ upper: up.upper, failures: up.failures, methods: up.methods, layers: up.result.layers.map((l) => ({ ...l, ms: 0 })) });
  const one = strip(await estimateUpper(model, { ...backend, concurrency: 1 }, o, []));
  const three = strip(await estimateUpper(model, { ...backend, concurrency: 3 }, o, []));
  assert.equal(three, one);
  assert.match(one, /autolip\+residual/);
});
