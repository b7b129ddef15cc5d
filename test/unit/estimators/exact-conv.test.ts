import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { evaluateNet, reluNetOf, RELU_NET_MAX_ENTRIES, RELU_NET_MAX_WORK, transposeSource } from '../../../src/estimators/exact.js';
import { PATTERN_EVALUATION_FLOP, patternSearchLowerBound } from '../../../src/estimators/pattern-search.js';
import { reluBranchAndBound } from '../../../src/estimators/relu-bab.js';
import { buildIr } from '../../../src/frontend/build.js';
import { mergeLinear } from '../../../src/ir/merge.js';
import { toFloat64 } from '../../../src/ir/tensor.js';
import { Random } from '../../../src/linalg/random.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';
import { ACTS, analysedOf, bruteForce, mlpModel, randomDense, runtime, tensor } from '../../helpers/mlp.js';

/**
 * reluNetOf reads Transpose (any permutation) and Conv (strides, pads, dilations, groups, bias) back as exact affine
 * maps: its network must reproduce the ONNX model as onnxruntime runs it, on generated models and random inputs.
 */

interface ConvCase {
  /** NHWC-style input; the first Transpose makes it NCHW… with perm `inPerm`. */
  readonly input: number[];
  readonly inPerm: number[];
  /** Weight dims [M, C/group, k…]. */
  readonly weight: number[];
  readonly group: number;
  readonly strides: number[];
  readonly pads: number[];
  readonly dilations: number[];
  readonly bias: boolean;
  /** The conv output (after Relu) reshaped to this 3-D shape and transposed with `midPerm` before the dense layers. */
  readonly mid: number[];
  readonly midPerm: number[];
}

const size = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);

/** Transpose → Conv (+bias) → Relu → Reshape → Transpose → Reshape → Gemm → Relu → Gemm, random float32 weights. */
function convModel(c: ConvCase, rng: Random): Uint8Array {
  const r = (n: number, s = 1) => Array.from({ length: n }, () => rng.normal() * s);
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  const flat = size(c.mid);
  inits.push(['W', tensor(c.weight, r(size(c.weight), 0.5))]);
  if (c.bias) inits.push(['B', tensor([c.weight[0]], r(c.weight[0], 0.3))]);
  inits.push(['s1', { dtype: 'int64' as const, dims: [c.mid.length], data: BigInt64Array.from(c.mid.map(BigInt)) } as never]);
  inits.push(['s2', { dtype: 'int64' as const, dims: [2], data: BigInt64Array.from([1n, BigInt(flat)]) } as never]);
  inits.push(['G1', tensor([7, flat], r(7 * flat, 1 / Math.sqrt(flat)))], ['b1', tensor([7], r(7, 0.2))]);
  inits.push(['G2', tensor([3, 7], r(21, 0.4))], ['b2', tensor([3], r(3, 0.2))]);
  nodes.push({ opType: 'Transpose', inputs: ['x'], outputs: ['t0'], attrs: { perm: { ints: c.inPerm } }, name: 'tin' });
  nodes.push({ opType: 'Conv', inputs: ['t0', 'W', ...(c.bias ? ['B'] : [])], outputs: ['c0'], attrs: { group: { i: c.group }, strides: { ints: c.strides }, pads: { ints: c.pads }, dilations: { ints: c.dilations } }, name: 'conv' });
  nodes.push({ opType: 'Relu', inputs: ['c0'], outputs: ['r0'], name: 'relu0' });
  nodes.push({ opType: 'Reshape', inputs: ['r0', 's1'], outputs: ['m0'], name: 'reshape0' });
  nodes.push({ opType: 'Transpose', inputs: ['m0'], outputs: ['m1'], attrs: { perm: { ints: c.midPerm } }, name: 'tmid' });
  nodes.push({ opType: 'Reshape', inputs: ['m1', 's2'], outputs: ['f0'], name: 'reshape1' });
  nodes.push({ opType: 'Gemm', inputs: ['f0', 'G1', 'b1'], outputs: ['h1'], attrs: { transB: { i: 1 } }, name: 'gemm1' });
  nodes.push({ opType: 'Relu', inputs: ['h1'], outputs: ['r1'], name: 'relu1' });
  nodes.push({ opType: 'Gemm', inputs: ['r1', 'G2', 'b2'], outputs: ['y'], attrs: { transB: { i: 1 } }, name: 'gemm2' });
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: c.input }], outputs: [{ name: 'y' }], nodes, initializers: inits });
}

const CASES: Record<string, ConvCase> = {
  // 2-D, stride 2×1, asymmetric pads, dilation 1×2, two groups, bias; output [1, 6, 2, 5]
  '2-D strided, padded, dilated, grouped': { input: [1, 5, 6, 4], inPerm: [0, 3, 1, 2], weight: [6, 2, 3, 2], group: 2, strides: [2, 1], pads: [1, 0, 0, 1], dilations: [1, 2], bias: true, mid: [6, 2, 5], midPerm: [2, 0, 1] },
  // depthwise (group = channels), no bias, stride 2 with pads on both sides; output [1, 3, 3, 3]
  '2-D depthwise, no bias': { input: [1, 6, 5, 3], inPerm: [0, 3, 2, 1], weight: [3, 1, 2, 3], group: 3, strides: [2, 2], pads: [1, 1, 0, 1], dilations: [1, 1], bias: false, mid: [3, 3, 3], midPerm: [1, 2, 0] },
  // 1-D over a [1, 7, 3] input transposed to [1, 3, 7], dilation 2, stride 3; output [1, 4, 2]
  '1-D dilated, strided, biased': { input: [1, 7, 3], inPerm: [0, 2, 1], weight: [4, 3, 2], group: 1, strides: [3], pads: [1, 0], dilations: [2], bias: true, mid: [2, 2, 2], midPerm: [2, 1, 0] },
  // 3-D (a 4-D transpose before it, a 5-D one in front); output [1, 2, 2, 1, 2]
  '3-D': { input: [1, 3, 2, 3, 2], inPerm: [0, 4, 2, 1, 3], weight: [2, 2, 2, 2, 2], group: 1, strides: [1, 1, 1], pads: [0, 0, 0, 0, 0, 0], dilations: [1, 1, 1], bias: true, mid: [2, 2, 2], midPerm: [1, 0, 2] },
};

for (const [name, c] of Object.entries(CASES)) {
  test(`reluNetOf reproduces onnxruntime on Transpose → Conv (${name}) → … on random inputs`, async () => {
    const rng = new Random(name.length);
    const model = decodeModel(convModel(c, rng), 't.onnx');
    const built = await buildIr(model, { seed: 0, runtime });
    assert.ok(built.ir.nodes.some((n) => n.kind === 'linear' && n.prim.op === 'conv'), 'the IR keeps the convolution');
    const net = reluNetOf(built.ir, mergeLinear(built.ir));
    assert.ok(typeof net !== 'string', String(net));
    assert.equal(net.inputs, size(c.input));
    assert.equal(net.layers.length, 3);
    const a = analysedOf(model, built);
    const runner = (await a.backend.model({ what: 'test' }))!;
    try {
      for (let k = 0; k < 8; k++) {
        const x = Float32Array.from({ length: size(c.input) }, () => rng.normal() * (k % 2 ? 3 : 1));
        const want = toFloat64((await runner.run({ [built.inputName]: { dtype: 'float32', dims: built.inputShape, data: x } }, [built.outputName])).get(built.outputName)!);
        const got = evaluateNet(net, x);
        assert.equal(got.length, want.length);
        const scale = 1 + want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * scale, `output ${i}: reluNetOf ${got[i]}, onnxruntime ${want[i]}`);
      }
    } finally {
      await runner.release();
    }
  });
}

test('transposeSource: row q of the output is the input element at the permuted multi-index (3-D and 4-D, brute force)', () => {
  for (const [shape, perm] of [[[2, 3, 4], [2, 0, 1]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[1, 4, 1, 3], [0, 3, 1, 2]]] as const) {
    const src = transposeSource(shape, perm);
    assert.ok(typeof src !== 'string');
    const out = perm.map((k) => shape[k]);
    // every output multi-index j reads the input at i with i[perm[k]] = j[k]
    let q = 0;
    const walk = (j: number[]): void => {
      if (j.length === out.length) {
        const i = new Array<number>(shape.length);
        perm.forEach((p, k) => { i[p] = j[k]; });
        const flat = i.reduce((f, v, a) => f * shape[a] + v, 0);
        assert.equal(src[q++], flat);
        return;
      }
      for (let v = 0; v < out[j.length]; v++) walk([...j, v]);
    };
    walk([]);
    assert.equal(q, src.length);
  }
  assert.match(String(transposeSource([2, 3], [0, 0])), /not a permutation/);
});

test('reluNetOf refuses a convolution whose dense map exceeds the size limit, saying so, before building it', async () => {
  // 3 × 48 × 48 inputs, 8 × 46 × 46 conv outputs: 1.2e8 entries
  const rng = new Random(3);
  const c: ConvCase = { input: [1, 48, 48, 3], inPerm: [0, 3, 1, 2], weight: [8, 3, 3, 3], group: 1, strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], bias: true, mid: [8, 46, 46], midPerm: [0, 1, 2] };
  const model = decodeModel(convModel(c, rng), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  const r = reluNetOf(built.ir, mergeLinear(built.ir));
  assert.equal(typeof r, 'string');
  assert.match(String(r), /size limit/);
  assert.ok(8 * 46 * 46 * (3 * 48 * 48) > RELU_NET_MAX_ENTRIES);
});

test('reluNetOf refuses a convolution over many channels whose read-back would take too many products (the work limit)', async () => {
  // 40 × 6 × 6 inputs, 32 × 4 × 4 outputs: (1 440 + 512) × 1 441 + 3 × 512 × 513 = 3.6e6 entries (the transposes' and
  // reshapes' included: under the size limit), but 11 520 weights × 16 positions × 1 441 = 2.7e8 products
  const c: ConvCase = { input: [1, 6, 6, 40], inPerm: [0, 3, 1, 2], weight: [32, 40, 3, 3], group: 1, strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], bias: true, mid: [32, 4, 4], midPerm: [0, 1, 2] };
  const model = decodeModel(convModel(c, new Random(4)), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  const r = reluNetOf(built.ir, mergeLinear(built.ir));
  assert.match(String(r), /work limit/);
  assert.ok((1440 + 512) * 1441 + 3 * 512 * 513 < RELU_NET_MAX_ENTRIES && 11520 * 16 * 1441 > RELU_NET_MAX_WORK);
});

test('the pattern search shrinks its evaluations in proportion when one evaluation costs more than PATTERN_EVALUATION_FLOP', async () => {
  // 200 inputs → 300 → 300 → 2: one evaluation carries 201 columns through 90 600 weights (1.8e7 multiply-adds)
  const layers = randomDense([200, 300, 300, 2], new Random(6));
  const model = decodeModel(mlpModel(layers, ACTS.relu), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  const ps = await patternSearchLowerBound({ ...analysedOf(model, built), seed: 0, evaluations: 100 });
  const perEvaluation = 300 * 200 + 201 * (300 * 300 + 2 * 300);
  assert.ok(perEvaluation > PATTERN_EVALUATION_FLOP);
  assert.ok(ps.work > 0 && ps.work <= Math.floor((100 * PATTERN_EVALUATION_FLOP) / perEvaluation) + 1, `${ps.work} evaluations (${ps.reason})`);
});

test('a small conv net: the branch and bound finishes below the all-patterns bound, its pair through the model meets it; the pattern search confirms a pair below it', async () => {
  const rng = new Random(8);
  // 1×3×3×1 input → 1 channel of 2×2 (stride 1) → Relu → 7 → Relu → 3: 9 inputs, 11 hidden units
  const c: ConvCase = { input: [1, 3, 3, 1], inPerm: [0, 3, 1, 2], weight: [1, 1, 2, 2], group: 1, strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], bias: true, mid: [1, 2, 2], midPerm: [1, 2, 0] };
  const model = decodeModel(convModel(c, rng), 't.onnx');
  const built = await buildIr(model, { seed: 0, runtime });
  const a = analysedOf(model, built);
  const bab = await reluBranchAndBound({ ...a, budget: 2_000_000 });
  assert.ok(bab.search?.complete && bab.upper?.kind !== undefined, `${bab.reason ?? ''}`);
  const upper = bab.upper!.value;
  // the max over every activation pattern of the read-back layers (tested against onnxruntime above) bounds the constant
  const net = reluNetOf(built.ir, mergeLinear(built.ir));
  assert.ok(typeof net !== 'string');
  const all = bruteForce(net.layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols, b: l.b })), [0, 1], '2');
  assert.ok(upper <= all * (1 + 1e-9), `branch and bound ${upper} above the all-patterns bound ${all}`);
  assert.ok(bab.lower > 0 && bab.lower <= upper && upper <= bab.lower * (1 + 1e-3), `witness ${bab.lower} against ${upper}`);
  assert.ok(bab.lower32 && Math.abs(bab.lower32.value - upper) <= 1e-3 * upper, `float32 pair ${bab.lower32?.value} against ${upper}`);
  const ps = await patternSearchLowerBound({ ...a, seed: 0, evaluations: 400 });
  assert.equal(ps.reason, undefined);
  assert.ok(ps.value > 0.5 * upper && ps.value <= upper * (1 + 1e-4), `pattern search ${ps.value} against the branch and bound's ${upper}`);
});

const TAXI = '../shared/models/marabou_tiny_taxinet.onnx';
test('marabou_tiny_taxinet (Transpose, Conv stride 8, channel-last bias) is read back and reproduces onnxruntime', { skip: existsSync(TAXI) ? false : `${TAXI} is absent (the shared models are not mounted)` }, async () => {
  const model = decodeModel(readFileSync(TAXI), TAXI);
  const built = await buildIr(model, { seed: 0, runtime });
  const net = reluNetOf(built.ir, mergeLinear(built.ir));
  assert.ok(typeof net !== 'string', String(net));
  assert.deepEqual(net.layers.map((l) => [l.rows, l.cols]), [[16, 128], [8, 16], [8, 8], [2, 8]]);
  const a = analysedOf(model, built);
  const runner = (await a.backend.model({ what: 'test' }))!;
  const rng = new Random(1);
  try {
    for (let k = 0; k < 5; k++) {
      const x = Float32Array.from({ length: 128 }, () => rng.normal());
      const want = toFloat64((await runner.run({ [built.inputName]: { dtype: 'float32', dims: built.inputShape, data: x } }, [built.outputName])).get(built.outputName)!);
      const got = evaluateNet(net, x);
      const scale = 1 + want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let i = 0; i < 2; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * scale, `output ${i}: ${got[i]} against ${want[i]}`);
    }
  } finally {
    await runner.release();
  }
});
