import assert from 'node:assert/strict';
import { test } from 'node:test';
import { composeAutoLip } from '../../../src/estimators/autolip.js';
import { chooseGraphScalings } from '../../../src/estimators/graph-cp-scaling.js';
import { expandFactor, graphCpBound, graphCpMaps, graphCpObstacle, type GraphCpMaps, type GraphScaling } from '../../../src/estimators/graph-cp.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { sigmaMax } from '../../helpers/dense.js';
import { ACTS, matmul, measureAll, pipeline, tensor, type Act } from '../../helpers/mlp.js';
import { denseBackend, denseOf, randomMat, settingsWith, twoBlocks, type Mat } from '../../helpers/residual-nets.js';

/** Random positive scalings exp(N(0, spread²)) per unit of every expanded activation's input. */
function randomScaling(plan: GraphCpMaps, rng: Random, spread: number): GraphScaling {
  return new Map(plan.expanded.map((a) => {
    const shape = plan.shapeOf.get(a.inputs[0])!;
    return [a.inputs[0], { dims: [...shape], data: Float64Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => Math.exp(spread * rng.normal())) }];
  }));
}

const addI = (m: Float64Array, n: number) => m.map((v, i) => v + (i % (n + 1) === 0 ? 1 : 0));
/** diag(d)·M for M with `cols` columns. */
const rowScale = (m: Float64Array, d: Float64Array, cols: number) => m.map((v, i) => v * d[Math.floor(i / cols)]);

/** max over the 2^10 vertex patterns of twoBlocks' J = (I + W3 D2 W2)·D1·(I + W1 D0 W0): the sup over the slope box, ≥ the constant. */
function bruteTwoBlocks(ws: readonly Mat[], act: Act): number {
  let best = 0;
  for (let mask = 0; mask < 1 << 10; mask++) {
    const d = (bits: number, at: number) => Float64Array.from({ length: bits }, (_, i) => ((mask >> (at + i)) & 1 ? act.slope[1] : act.slope[0]));
    const j1 = addI(matmul(ws[1].w, 2, 4, rowScale(ws[0].w, d(4, 0), 2), 2), 2);
    const j2 = addI(matmul(ws[3].w, 2, 4, rowScale(ws[2].w, d(4, 6), 2), 2), 2);
    best = Math.max(best, sigmaMax(matmul(j2, 2, 2, rowScale(j1, d(2, 4), 2), 2), 2, 2));
  }
  return best;
}

test('expandFactor broadcasts per channel and per unit like numpy', () => {
  const f = expandFactor({ dims: [1, 3, 1, 1], data: [1, 2, 3] }, [1, 3, 2, 2]);
  assert.deepEqual([...f], [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  assert.deepEqual([...expandFactor({ dims: [2, 1], data: [5, 7] }, [1, 2, 3])], [5, 5, 5, 7, 7, 7]);
  assert.deepEqual([...expandFactor({ dims: [1, 3], data: [4, 5, 6] }, [1, 3])], [4, 5, 6]);
});

test('graph CP on a rescaled graph: ≥ brute force over all 2^10 patterns for any positive scaling, and the plain bound at δ = 1', async () => {
  for (const [name, act] of [['relu', ACTS.relu], ['leaky05', ACTS.leaky05], ['tanh', ACTS.tanh]] as const) {
    for (const seed of [61, 62]) {
      const rng = new Random(seed);
      const ws = [randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)];
      const { ir, blocks } = await pipeline(twoBlocks(ws, act));
      const s = settingsWith(denseBackend());
      const known = await measureAll(blocks, s);
      const plan = graphCpMaps(ir, blocks, known, s)!;
      const brute = bruteTwoBlocks(ws, act);
      const plain = await graphCpBound(plan, s, { budget: Infinity });
      // δ = 1: every Mul is by 1, a·b_t = 1 exactly, so the measured maps and the bound are the plain ones
      const ones = new Map([...randomScaling(plan, rng, 0)]);
      const unit = await graphCpBound(plan, s, { budget: Infinity, scaling: ones });
      assert.ok(Math.abs(unit.upper.value - plain.upper.value) <= 1e-9 * plain.upper.value, `${name} ${seed}: δ = 1 gave ${unit.upper.value}, plain ${plain.upper.value}`);
      assert.match(unit.upper.method, /rescaled/);
      for (const spread of [0.5, 2]) {
        const g = await graphCpBound(plan, s, { budget: Infinity, scaling: randomScaling(plan, rng, spread) });
        assert.ok(brute <= g.upper.value * (1 + 1e-12), `${name} seed ${seed} spread ${spread}: brute force ${brute} > rescaled graph CP ${g.upper.value}`);
        // unmeasured maps: composed bounds × the scalings' extremes, still above brute force
        const none = await graphCpBound(plan, s, { budget: 0, scaling: randomScaling(plan, rng, spread) });
        assert.equal(none.measured, 0);
        assert.ok(brute <= none.upper.value * (1 + 1e-12), `${name} seed ${seed}: brute force ${brute} > rescaled composition ${none.upper.value}`);
      }
    }
  }
});

test('the descent undoes an imbalance the activations commute with: the rescaled bound falls near the balanced net\'s and stays ≥ brute force', async () => {
  for (const seed of [71, 72, 73]) {
    const rng = new Random(seed);
    const ws = [randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)];
    // relu(D·u) = D·relu(u) for D > 0: rows of W0 by D and columns of W1 by D⁻¹ give the same function, but
    // ‖W1 D⁻¹‖·‖D W0‖ can be far above ‖W1‖·‖W0‖, and the plain expansion pays for it
    const d = Float64Array.of(16, 1 / 16, 4, 1 / 4);
    const skew = [{ ...ws[0], w: rowScale(ws[0].w, d, 2) }, { ...ws[1], w: ws[1].w.map((v, i) => v / d[i % 4]) }, ws[2], ws[3]];
    const s = settingsWith(denseBackend());
    const graph = async (w: readonly Mat[]) => {
      const { ir, blocks } = await pipeline(twoBlocks(w, ACTS.relu));
      assert.equal(graphCpObstacle(ir, blocks), null);
      const known = await measureAll(blocks, s);
      return { plan: graphCpMaps(ir, blocks, known, s)!, autolip: composeAutoLip(ir, blocks, known, '2').upper!.value };
    };
    const balanced = await graphCpBound((await graph(ws)).plan, s, { budget: Infinity });
    const { plan } = await graph(skew);
    const plain = await graphCpBound(plan, s, { budget: Infinity });
    const chosen = (await chooseGraphScalings(plan, s.backend, { iterations: 60, steps: 8, budget: Infinity, seed: 3, width: 1 }))!;
    const scaled = await graphCpBound(plan, s, { budget: Infinity, scaling: chosen.scaling });
    const brute = bruteTwoBlocks(skew, ACTS.relu);
    const tag = `seed ${seed}: plain ${plain.upper.value}, balanced ${balanced.upper.value}, rescaled ${scaled.upper.value} (descent ${chosen.before} → ${chosen.after} in ${chosen.iterations} steps), brute force ${brute}`;
    assert.ok(plain.upper.value > 3 * balanced.upper.value, `the imbalance did not cost the plain bound: ${tag}`);
    assert.ok(scaled.upper.value < plain.upper.value / 2, `the descent did not undo the imbalance: ${tag}`);
    assert.ok(scaled.upper.value <= 1.25 * balanced.upper.value, tag);
    assert.ok(brute <= scaled.upper.value * (1 + 1e-12), tag);
    assert.ok(chosen.after < chosen.before && chosen.work > 0, tag);
  }
});

/** x → Gemm → Relu → Tanh → Gemm → Add(x): two activations in a row, so the map from the Relu's output to the Tanh's input is the identity. */
function stacked(w0: Mat, w1: Mat): Uint8Array {
  const nodes: NodeSpec[] = [
    { opType: 'Gemm', inputs: ['x', 'w0'], outputs: ['h0'], attrs: { transB: { i: 1 } }, name: 'gemm0' },
    { opType: 'Relu', inputs: ['h0'], outputs: ['r'], name: 'relu' },
    { opType: 'Tanh', inputs: ['r'], outputs: ['t'], name: 'tanh' },
    { opType: 'Gemm', inputs: ['t', 'w1'], outputs: ['h1'], attrs: { transB: { i: 1 } }, name: 'gemm1' },
    { opType: 'Add', inputs: ['x', 'h1'], outputs: ['y'], name: 'add' },
  ];
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, w0.cols] }], outputs: [{ name: 'y' }], nodes, initializers: [['w0', tensor([w0.rows, w0.cols], w0.w)], ['w1', tensor([w1.rows, w1.cols], w1.w)]] });
}

test('an activation read by an activation: the identity map becomes the largest ratio δ_s/δ_t, and the bound stays ≥ brute force', async () => {
  for (const seed of [81, 82]) {
    const rng = new Random(seed);
    const w0 = randomMat(4, 3, rng), w1 = randomMat(3, 4, rng);
    const { ir, blocks } = await pipeline(stacked(w0, w1));
    const s = settingsWith(denseBackend());
    const known = await measureAll(blocks, s);
    const plan = graphCpMaps(ir, blocks, known, s)!;
    assert.ok([...plan.maps.values()].some((m) => m.region === null), 'one identity map (Relu output → Tanh input)');
    // brute force: J = I + W1·D_t·D_r·W0 with both diagonals at {0, 1} per unit
    let brute = 0;
    for (let mask = 0; mask < 1 << 8; mask++) {
      const dd = Float64Array.from({ length: 4 }, (_, i) => ((mask >> i) & 1) * ((mask >> (4 + i)) & 1));
      brute = Math.max(brute, sigmaMax(addI(matmul(w1.w, 3, 4, rowScale(w0.w, dd, 3), 3), 3), 3, 3));
    }
    for (const spread of [0.7, 1.5]) {
      const g = await graphCpBound(plan, s, { budget: Infinity, scaling: randomScaling(plan, rng, spread) });
      assert.ok(brute <= g.upper.value * (1 + 1e-12), `seed ${seed}: brute force ${brute} > ${g.upper.value}`);
    }
    const chosen = (await chooseGraphScalings(plan, s.backend, { iterations: 30, steps: 8, budget: Infinity, seed: 4, width: 1 }))!;
    const scaled = await graphCpBound(plan, s, { budget: Infinity, scaling: chosen.scaling });
    assert.ok(brute <= scaled.upper.value * (1 + 1e-12), `seed ${seed}: brute force ${brute} > descent's ${scaled.upper.value}`);
    assert.ok(Number.isFinite(chosen.after) && chosen.after <= chosen.before, `seed ${seed}: ${chosen.before} → ${chosen.after}`);
  }
});

/**
 * The rescaled expansion recomputed here: each map's matrix from the helper's dense float64 evaluation of its region
 * (the identity where s = t), scaled by b_s = fround(δ_s) on the right and 1/b_t on the left, its exact σ_max, and the
 * recursion L(h_j) = N(x, h_j) + Σ_i r_i·N(a_i, h_j)·L(h_i) written out again.
 */
function expectedScaled(plan: GraphCpMaps, scaling: GraphScaling): number {
  const act = (s: string) => plan.expanded.find((a) => a.output === s);
  const factor = (key: string | undefined, shape: readonly number[]) => {
    const f = key === undefined ? undefined : scaling.get(key);
    return f ? Float64Array.from(expandFactor(f, shape), Math.fround) : new Float64Array(shape.reduce((x, y) => x * y, 1)).fill(1);
  };
  const N = new Map<string, number>();
  for (const m of plan.maps.values()) {
    const inShape = plan.shapeOf.get(m.s)!, outShape = plan.shapeOf.get(m.t)!;
    const bs = factor(act(m.s)?.inputs[0], inShape), bt = factor(m.t === plan.output ? undefined : m.t, outShape);
    let d: { m: Float64Array; rows: number; cols: number };
    if (m.region) d = denseOf(m.region);
    else { const n = bs.length; d = { m: Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)), rows: n, cols: n }; }
    const scaled = d.m.map((v, i) => (v * bs[i % d.cols]) / bt[Math.floor(i / d.cols)]);
    N.set(`${m.s}|${m.t}`, sigmaMax(scaled, d.rows, d.cols));
  }
  const L = new Map<string, number>();
  const at = (t: string) => {
    let v = N.get(`${plan.input}|${t}`) ?? 0;
    for (const a of plan.expanded) {
      const n = N.get(`${a.output}|${t}`);
      if (n !== undefined) v += ((a.slope[1] - a.slope[0]) / 2) * n * L.get(a.inputs[0])!;
    }
    return v;
  };
  for (const a of plan.expanded) if (!L.has(a.inputs[0])) L.set(a.inputs[0], at(a.inputs[0]));
  return at(plan.output);
}

test('the rescaled bound is the recursion on the exact norms of b_t⁻¹·M·b_s (float64 backend; identity maps included)', async () => {
  const rng = new Random(91);
  const cases = [
    { bytes: twoBlocks([randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)], ACTS.relu), identity: false },
    { bytes: twoBlocks([randomMat(4, 2, rng), randomMat(2, 4, rng), randomMat(4, 2, rng), randomMat(2, 4, rng)], ACTS.tanh), identity: false },
    { bytes: stacked(randomMat(4, 3, rng), randomMat(3, 4, rng)), identity: true },
  ];
  for (const [k, c] of cases.entries()) {
    const { ir, blocks } = await pipeline(c.bytes);
    const s = settingsWith(denseBackend());
    const known = await measureAll(blocks, s);
    const plan = graphCpMaps(ir, blocks, known, s)!;
    assert.equal([...plan.maps.values()].some((m) => m.region === null), c.identity);
    for (const spread of [0.3, 1.5]) {
      const scaling = randomScaling(plan, rng, spread);
      const g = await graphCpBound(plan, s, { budget: Infinity, scaling });
      const want = expectedScaled(plan, scaling);
      assert.ok(g.upper.value >= want * (1 - 1e-12) && g.upper.value <= want * (1 + 1e-6), `case ${k} spread ${spread}: bound ${g.upper.value}, recomputed ${want}`);
    }
  }
});
