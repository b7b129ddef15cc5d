import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { cpSegmentBound, segmentAutoLip } from '../../../src/estimators/cp.js';
import { seqlipSegmentBound, SEQLIP_DEFAULTS, splitPairBound } from '../../../src/estimators/seqlip.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph } from '../../../src/onnx/writer.js';
import { sigmaMax } from '../../helpers/dense.js';
import { ACTS, bruteForce, measureAll, mlpModel, pipeline, randomDense, settings, tensor, f32, witness, type Act, type Dense } from '../../helpers/mlp.js';

/** Π‖W_k‖₂ · max|slope|^(m−1), every norm exact in float64: the AutoLip value without its margins. */
const exactProduct = (layers: readonly Dense[], act: Act) =>
  layers.reduce((p, l) => p * sigmaMax(l.w, l.rows, l.cols), 1) * Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1])) ** (layers.length - 1);

/**
 * SeqLip recomputed here from ml-matrix SVDs of the weights: Π_i max over patterns of ‖Σ̃_{i+1}V_{i+1}ᵀ·D·U_iΣ̃_i‖₂, with
 * Σ̃ = Σ on the outer sides of the first and last operators and √Σ elsewhere (ALGORITHMS.md §4).
 */
function seqlipReference(layers: readonly Dense[], slope: readonly [number, number]): number {
  const svds = layers.map((l) => {
    const m = new Matrix(l.rows, l.cols);
    for (let i = 0; i < l.rows; i++) for (let j = 0; j < l.cols; j++) m.set(i, j, l.w[i * l.cols + j]);
    const s = new SingularValueDecomposition(m, { autoTranspose: true });
    return { s: s.diagonal, u: s.leftSingularVectors, v: s.rightSingularVectors, r: Math.min(l.rows, l.cols) };
  });
  const last = layers.length - 1;
  let product = 1;
  for (let i = 0; i < last; i++) {
    const before = svds[i], after = svds[i + 1], n = layers[i].rows;
    const left = (t: number) => (i === 0 ? before.s[t] : Math.sqrt(before.s[t]));
    const right = (t: number) => (i + 1 === last ? after.s[t] : Math.sqrt(after.s[t]));
    let best = 0;
    for (let mask = 0; mask < 2 ** n; mask++) {
      const p = new Float64Array(after.r * before.r);
      for (let j = 0; j < n; j++) {
        const d = (mask >> j) & 1 ? slope[1] : slope[0];
        for (let a = 0; a < after.r; a++) for (let b = 0; b < before.r; b++) p[a * before.r + b] += right(a) * after.v.get(j, a) * d * before.u.get(j, b) * left(b);
      }
      best = Math.max(best, sigmaMax(p, after.r, before.r));
    }
    product *= best;
  }
  return product;
}

/** Runs SeqLip on a random MLP and checks witness ≤ brute force ≤ certified SeqLip ≤ AutoLip, greedy ≤ certified. */
async function checkChain(widths: number[], act: Act, seed: number): Promise<{ seqlip: number; cp: number; autolip: number; brute: number }> {
  const rng = new Random(seed);
  const layers = randomDense(widths, rng);
  const { segments, blocks } = await pipeline(mlpModel(layers, act));
  assert.equal(segments.length, 1);
  const seg = segments[0];
  const known = await measureAll(blocks);
  const res = await seqlipSegmentBound(seg, settings);
  const autolip = segmentAutoLip(seg, known).upper.value;
  const cp = (await cpSegmentBound(seg, settings, { known })).upper.value;
  const brute = bruteForce(layers, act.slope, '2');
  const lower = witness(layers, act, '2', rng);
  const tag = `${act.op}${act.attrs ? `(${act.attrs.alpha.f})` : ''} ${widths.join('-')} seed ${seed}`;
  assert.ok(res.certified, `${tag}: no certified bound (${res.notes.join(' ')})`);
  const c = res.certified.value;
  assert.equal(res.certified.kind, 'certified', tag);
  assert.equal(res.certified.method, 'seqlip-exact', tag);
  assert.equal(res.greedy.kind, 'estimate', tag);
  assert.equal(res.greedy.method, `seqlip-greedy(k=${SEQLIP_DEFAULTS.k})`);
  assert.deepEqual(res.notes, []);
  assert.equal(res.pairs.length, widths.length - 2);
  assert.ok(res.pairs.every((p, i) => p.enumerated && p.width === widths[i + 1] && p.certified !== null), tag);
  assert.ok(lower <= brute * (1 + 1e-12), `${tag}: witness ${lower} > brute force ${brute}`);
  assert.ok(brute <= c, `${tag}: brute force ${brute} > certified SeqLip ${c}`);
  const reference = seqlipReference(layers, act.slope);
  assert.ok(c >= reference * (1 - 1e-12) && c <= reference * (1 + 1e-9), `${tag}: certified SeqLip ${c} vs float64 reference ${reference}`);
  assert.ok(c <= exactProduct(layers, act) * (1 + 1e-9), `${tag}: SeqLip ${c} above the exact product of norms ${exactProduct(layers, act)}`);
  assert.ok(c <= autolip * (1 + 1e-9), `${tag}: SeqLip ${c} > AutoLip ${autolip}`);
  // greedy with every triplet kept is a value of the same pair function at some pattern, below its maximum
  assert.ok(res.greedy.value <= c * (1 + 1e-9), `${tag}: greedy ${res.greedy.value} > certified ${c}`);
  assert.ok(res.greedy.value >= 0.5 * c, `${tag}: greedy ${res.greedy.value} implausibly far below ${c}`);
  // the pair factors multiply to the chain, up to the margins
  const product = res.pairs.reduce((p, x) => p * x.certified!, 1);
  assert.ok(c >= product && c <= product * (1 + 1e-12), `${tag}: ${c} vs Π pairs ${product}`);
  if (widths.length === 3) {
    // one activation: SeqLip is max over patterns of ‖Σ₂V₂ᵀ D U₁Σ₁‖ = ‖W₂ D W₁‖ itself, so it is the brute force value
    assert.ok(c <= brute * (1 + 1e-9), `${tag}: two-layer SeqLip ${c} should equal the brute force ${brute}`);
    assert.ok(c <= cp * (1 + 1e-9), `${tag}: two-layer SeqLip ${c} above CP ${cp}`);
  }
  return { seqlip: c, cp, autolip, brute };
}

test('exact SeqLip on random ReLU nets: witness ≤ max over patterns ≤ SeqLip ≤ AutoLip; tight for two layers', async () => {
  const archs = [[3, 8, 4], [6, 12, 2], [4, 6, 5, 3], [5, 4, 4, 4, 2], [2, 7, 7, 3]];
  const results = [];
  for (const [k, widths] of archs.entries()) results.push(await checkChain(widths, ACTS.relu, 100 + k));
  assert.ok(results.filter((r) => r.seqlip < 0.99 * r.autolip).length >= 4, `SeqLip should beat AutoLip on most random nets: ${results.map((r) => (r.seqlip / r.autolip).toFixed(3))}`);
});

test('slopes other than [0, 1]: LeakyRelu(0.1), LeakyRelu(−0.5) (negative slope), Sigmoid', async () => {
  for (const [k, name] of ['leaky01', 'leakyNeg', 'sigmoid'].entries()) {
    await checkChain([4, 6, 5, 2], ACTS[name], 200 + k);
    await checkChain([3, 9, 3], ACTS[name], 300 + k);
  }
});

test('analytic: f(x) = ½·relu(2x) − relu(x − 1) has L = 1; SeqLip = 1, CP = 5/4, AutoLip = 5/2', async () => {
  // W₁ = [2; 1], b₁ = [0; −1], W₂ = [½, −1]. Slopes: 0 (x < 0), 1 (0 < x < 1), ½·2 − 1 = 0 (x > 1), so L = 1.
  // SeqLip (one activation) = max_d |½·2·d₁ − 1·1·d₂| = 1. CP = c·|W₂W₁| + r·‖W₂‖‖W₁‖ = ½·0 + ½·√(5/4)·√5 = 5/4.
  // AutoLip = ‖W₂‖‖W₁‖ = 5/2.
  const layers: Dense[] = [
    { w: Float64Array.of(2, 1), rows: 2, cols: 1, b: Float64Array.of(0, -1) },
    { w: Float64Array.of(0.5, -1), rows: 1, cols: 2, b: Float64Array.of(0) },
  ];
  const { segments, blocks } = await pipeline(mlpModel(layers, ACTS.relu));
  const known = await measureAll(blocks);
  const res = await seqlipSegmentBound(segments[0], settings);
  const cp = await cpSegmentBound(segments[0], settings, { known });
  const autolip = segmentAutoLip(segments[0], known);
  assert.equal(res.certified?.kind, 'certified');
  const s = res.certified!.value;
  assert.ok(s >= 1 && s <= 1 + 1e-9, `SeqLip ${s}`);
  assert.ok(Math.abs(cp.upper.value - 5 / 4) <= 1e-6, `CP ${cp.upper.value}`);
  assert.ok(Math.abs(autolip.upper.value - 5 / 2) <= 1e-6, `AutoLip ${autolip.upper.value}`);
  assert.ok(Math.abs(cp.upper.value / s - 5 / 4) <= 1e-6, 'SeqLip is tighter than CP by exactly 5/4');
  assert.ok(Math.abs(autolip.upper.value / s - 5 / 2) <= 1e-6, 'and than AutoLip by 5/2');
  assert.ok(witness(layers, ACTS.relu, '2', new Random(1), 200) >= 1 - 1e-12, 'the true constant 1 is attained (0 < x < 1)');
  assert.ok(Math.abs(res.greedy.value - 1) <= 1e-9, `greedy ${res.greedy.value}`);
});

/** The 2×2 reference of ALGORITHMS.md §4 for a two-layer net, computed here: top-k SVDs, the kept block maximised by brute force. */
function truncatedReference(layers: readonly Dense[], slope: readonly [number, number], k: number): number {
  const svd = (l: Dense) => {
    const m = new Matrix(l.rows, l.cols);
    for (let i = 0; i < l.rows; i++) for (let j = 0; j < l.cols; j++) m.set(i, j, l.w[i * l.cols + j]);
    const s = new SingularValueDecomposition(m, { autoTranspose: true });
    return { s: s.diagonal, u: s.leftSingularVectors, v: s.rightSingularVectors };
  };
  const [first, last] = layers.map(svd);
  const n = layers[0].rows;
  // A = Σ₂V₂ᵀ (last operator: Σ on its right factor), B = U₁Σ₁ (first operator: Σ on its left factor)
  let kept = 0;
  for (let mask = 0; mask < 2 ** n; mask++) {
    const p = new Float64Array(k * k);
    for (let j = 0; j < n; j++) {
      const d = (mask >> j) & 1 ? slope[1] : slope[0];
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) p[a * k + b] += last.s[a] * last.v.get(j, a) * d * first.u.get(j, b) * first.s[b];
    }
    kept = Math.max(kept, sigmaMax(p, k, k));
  }
  const s = Math.max(Math.abs(slope[0]), Math.abs(slope[1]));
  return splitPairBound(kept, { kept: last.s[0], rest: last.s[k] ?? 0 }, { kept: first.s[0], rest: first.s[k] ?? 0 }, s);
}

test('splitPairBound: ‖A·D·B‖ never exceeds the 2×2 block bound at any pattern; it is exact when nothing is discarded', () => {
  const rng = new Random(41);
  const layers = randomDense([5, 9, 6], rng);
  const a = new Matrix(6, 9), b = new Matrix(9, 5);
  for (let i = 0; i < 6; i++) for (let j = 0; j < 9; j++) a.set(i, j, layers[1].w[i * 9 + j]);
  for (let i = 0; i < 9; i++) for (let j = 0; j < 5; j++) b.set(i, j, layers[0].w[i * 5 + j]);
  const sa = new SingularValueDecomposition(a, { autoTranspose: true }), sb = new SingularValueDecomposition(b, { autoTranspose: true });
  const slope = [-0.3, 1] as const;
  for (const k of [1, 2, 3]) {
    for (let mask = 0; mask < 2 ** 9; mask++) {
      const d = Array.from({ length: 9 }, (_, j) => ((mask >> j) & 1 ? slope[1] : slope[0]));
      // A = Σ_aV_aᵀ (rows split after k), B = U_bΣ_b (columns split after k)
      const full = new Float64Array(6 * 5), kept = new Float64Array(k * k);
      for (let j = 0; j < 9; j++) for (let p = 0; p < 6; p++) for (let q = 0; q < 5; q++) {
        const v = sa.diagonal[p] * sa.rightSingularVectors.get(j, p) * d[j] * sb.leftSingularVectors.get(j, q) * sb.diagonal[q];
        full[p * 5 + q] += v;
        if (p < k && q < k) kept[p * k + q] += v;
      }
      const keptNorm = sigmaMax(kept, k, k);
      const bound = splitPairBound(keptNorm, { kept: sa.diagonal[0], rest: sa.diagonal[k] }, { kept: sb.diagonal[0], rest: sb.diagonal[k] }, 1);
      const actual = sigmaMax(full, 6, 5);
      assert.ok(actual <= bound * (1 + 1e-12), `k = ${k}, pattern ${mask}: ‖ADB‖ = ${actual} > block bound ${bound}`);
      assert.ok(bound >= keptNorm && bound <= sa.diagonal[0] * sb.diagonal[0] * (1 + 1e-12));
      // with the remainders at zero the bound is the kept norm itself
      assert.equal(splitPairBound(keptNorm, { kept: sa.diagonal[0], rest: 0 }, { kept: sb.diagonal[0], rest: 0 }, 1), keptNorm);
    }
  }
  // the min with s‖A‖‖B‖ caps a bound whose remainders are as large as the kept parts
  assert.equal(splitPairBound(1, { kept: 1, rest: 1 }, { kept: 1, rest: 1 }, 1), 1);
  assert.ok(Math.abs(splitPairBound(0, { kept: 1, rest: 0.5 }, { kept: 1, rest: 0.5 }, 1) - (1 + Math.sqrt(17)) / 8) <= 1e-15, 'the 2×2 [[0, ½], [½, ¼]] has norm (1 + √17)/8');
});

test('greedy with k below the width: the 2×2 bound enters; greedy ≤ the exact reference, and the reference bounds every pattern', async () => {
  for (const [seed, widths] of [[51, [4, 10, 3]], [52, [5, 11, 6]], [53, [3, 12, 4]]] as const) {
    const rng = new Random(seed);
    const layers = randomDense(widths, rng);
    const { segments } = await pipeline(mlpModel(layers, ACTS.relu));
    const k = 2;
    const res = await seqlipSegmentBound(segments[0], settings, { k });
    const full = await seqlipSegmentBound(segments[0], settings);
    const reference = truncatedReference(layers, [0, 1], k);
    const brute = bruteForce(layers, [0, 1], '2');
    const tag = `${widths.join('-')} seed ${seed}`;
    assert.deepEqual(res.pairs[0].kept, [k, k]);
    assert.equal(res.greedy.method, 'seqlip-greedy(k=2)');
    // the math: with the kept block maximised exactly, the 2×2 value bounds the sup over patterns
    assert.ok(reference >= brute * (1 - 1e-12), `${tag}: 2×2 reference ${reference} < brute force ${brute}`);
    // the greedy searches a subset of the patterns the reference maximises over
    assert.ok(res.greedy.value <= reference * (1 + 1e-9), `${tag}: greedy ${res.greedy.value} > reference ${reference}`);
    assert.ok(res.greedy.value >= 0.9 * reference, `${tag}: greedy ${res.greedy.value} far below reference ${reference}`);
    // discarding σ₃… costs: the truncated value exceeds the full-spectrum one here
    assert.ok(res.greedy.value > full.greedy.value * (1 + 1e-6), `${tag}: k = 2 gave ${res.greedy.value}, full ${full.greedy.value}`);
    // the certified route does not depend on k
    assert.equal(res.certified?.value, full.certified?.value);
  }
});

test('wide activations use the midpoint–radius factor: for two layers it equals CP; a tight budget narrows the route and says so', async () => {
  const rng = new Random(61);
  const layers = randomDense([4, 9, 3], rng);
  const { segments, blocks } = await pipeline(mlpModel(layers, ACTS.leaky01));
  const known = await measureAll(blocks);
  const cp = await cpSegmentBound(segments[0], settings, { known });
  const mixed = await seqlipSegmentBound(segments[0], settings, { exactMaxWidth: 8 });
  assert.equal(mixed.certified?.method, 'seqlip-mixed(0/1 enumerated)');
  assert.equal(mixed.pairs[0].enumerated, false);
  assert.ok(Math.abs(mixed.certified!.value - cp.upper.value) <= 1e-6 * cp.upper.value, `midpoint–radius ${mixed.certified!.value} vs CP ${cp.upper.value}`);
  assert.ok(mixed.certified!.value >= bruteForce(layers, ACTS.leaky01.slope, '2'));
  const off = await seqlipSegmentBound(segments[0], { ...settings, certify: 'off' });
  assert.equal(off.certified, null);
  assert.match(off.notes.join(' '), /certificates are off/);
  // the onnxruntime route (float32 subspace iteration, k above the ranks) finds the same local maximum here
  assert.ok(Math.abs(off.greedy.value - mixed.greedy.value) <= 1e-4 * mixed.greedy.value, `float32 route ${off.greedy.value} vs dense ${mixed.greedy.value}`);
  const wide = await pipeline(mlpModel(randomDense([3, 14, 3], rng), ACTS.relu));
  const tight = await seqlipSegmentBound(wide.segments[0], settings, { budget: 1.2e7 });
  assert.equal(tight.certified?.method, 'seqlip-mixed(0/1 enumerated)');
  assert.match(tight.notes.join(' '), /enumerating its 16384 slope patterns would take about [\d.]+ Mflop/);
  assert.equal(tight.greedy.kind, 'estimate');
  await assert.rejects(seqlipSegmentBound(segments[0], { ...settings, norm: 'inf' }), /ℓ2 constant only/);
  await assert.rejects(seqlipSegmentBound(segments[0], settings, { k: 0 }), /positive integer/);
  await assert.rejects(seqlipSegmentBound(segments[0], settings, { exactMaxWidth: 40 }), /from 0 to 24/);
});

test('a conv segment has no certified SeqLip (no float64 Conv); the greedy estimate stays below AutoLip', async () => {
  const rng = new Random(71);
  const [c0, c1, n] = [2, 3, 4];
  const k1 = f32(Array.from({ length: c1 * c0 * 9 }, () => rng.normal() * 0.4));
  const fc = f32(Array.from({ length: 2 * c1 * n * n }, () => rng.normal() * 0.2));
  const bytes = encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c0, n, n] }], outputs: [{ name: 'y' }], nodes: [
      { opType: 'Conv', inputs: ['x', 'k1'], outputs: ['h1'], attrs: { pads: { ints: [1, 1, 1, 1] }, kernel_shape: { ints: [3, 3] } } },
      { opType: 'Relu', inputs: ['h1'], outputs: ['a1'] },
      { opType: 'Flatten', inputs: ['a1'], outputs: ['f'] }, { opType: 'Gemm', inputs: ['f', 'fc'], outputs: ['y'], attrs: { transB: { i: 1 } } },
    ],
    initializers: [['k1', tensor([c1, c0, 3, 3], k1)], ['fc', tensor([2, c1 * n * n], fc)]],
  });
  const { segments, blocks } = await pipeline(bytes);
  const res = await seqlipSegmentBound(segments[0], settings, { k: 8 });
  assert.equal(res.certified, null);
  assert.match(res.notes.join(' '), /contains a convolution/);
  assert.equal(res.greedy.kind, 'estimate');
  assert.equal(res.pairs[0].width, c1 * n * n);
  assert.deepEqual(res.pairs[0].kept, [8, 2]);
  const autolip = segmentAutoLip(segments[0], await measureAll(blocks)).upper.value;
  assert.ok(res.greedy.value > 0 && res.greedy.value <= autolip * (1 + 1e-3), `greedy ${res.greedy.value} vs AutoLip ${autolip}`);
});
