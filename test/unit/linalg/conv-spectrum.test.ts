import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { Matrix, SVD } from 'ml-matrix';
import { isLipcheckError } from '../../../src/errors.js';
import { type ConvSpec, convCertificateFlop, convInfNorm, convSpectralNormBound, convSpectralNormBoundBelow, fillBlockJs, hermitianGram, hermitianLambdaMaxBound } from '../../../src/linalg/conv-spectrum.js';
import { wasmHeap } from '../../../src/linalg/lanczos-kernels.js';
import { BudgetExceededError, LANCZOS_SEED } from '../../../src/linalg/dense.js';
import { Random } from '../../../src/linalg/random.js';
import { mulberry32 } from '../../helpers/random.js';


interface Case {
  cin: number;
  cout: number;
  kernel: number[];
  n: number[];
  group?: number;
  strides?: number[];
  dilations?: number[];
  /** ONNX order: [x1_begin, x2_begin, ..., x1_end, x2_end, ...]. */
  pads?: number[];
  seed: number;
}

function randomSpec(c: Case): ConvSpec {
  const group = c.group ?? 1;
  const dims = [c.cout, c.cin / group, ...c.kernel];
  const rand = mulberry32(c.seed);
  const weight = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1);
  return { weight, weightDims: dims, group, dilations: c.dilations ?? c.kernel.map(() => 1), inputSpatial: c.n };
}

function product(v: number[]): number {
  return v.reduce((a, b) => a * b, 1);
}

/** Multi-index (last axis fastest) of a linear index in a grid of the given sizes. */
function unravel(lin: number, sizes: number[]): number[] {
  const idx = new Array<number>(sizes.length);
  for (let a = sizes.length - 1; a >= 0; a--) {
    idx[a] = lin % sizes[a];
    lin = Math.floor(lin / sizes[a]);
  }
  return idx;
}

/**
 * The dense matrix of an ONNX Conv (cross-correlation, zero padding) on an input [Cin, n...], built entry by entry.
 * With `circular` the input lives on the grid `circularGrid`, indices wrap, and there is no padding or stride.
 */
function convMatrix(spec: ConvSpec, strides: number[], pads: number[], circularGrid?: number[]): { m: Matrix; rows: number; cols: number } {
  const [cout, cinG, ...kernel] = spec.weightDims;
  const d = kernel.length;
  const group = spec.group;
  const coutG = cout / group;
  const cin = cinG * group;
  const dil = spec.dilations;
  const inSize = circularGrid ?? spec.inputSpatial;
  const outSize = circularGrid ?? inSize.map((n, a) => Math.floor((n + pads[a] + pads[a + d] - dil[a] * (kernel[a] - 1) - 1) / strides[a]) + 1);
  const inCount = product(inSize);
  const outCount = product(outSize);
  const taps = product(kernel);
  const rows = cout * outCount;
  const cols = cin * inCount;
  const m = new Matrix(rows, cols);
  for (let co = 0; co < cout; co++) {
    const g = Math.floor(co / coutG);
    for (let p = 0; p < outCount; p++) {
      const out = unravel(p, outSize);
      for (let ci = 0; ci < cinG; ci++) {
        for (let t = 0; t < taps; t++) {
          const tap = unravel(t, kernel);
          let lin = 0;
          let inside = true;
          for (let a = 0; a < d; a++) {
            let x = circularGrid ? out[a] + tap[a] * dil[a] : out[a] * strides[a] - pads[a] + tap[a] * dil[a];
            if (circularGrid) x %= circularGrid[a];
            else if (x < 0 || x >= inSize[a]) inside = false;
            lin = lin * inSize[a] + x;
          }
          if (!inside) continue;
          const row = co * outCount + p;
          const col = (g * cinG + ci) * inCount + lin;
          m.set(row, col, m.get(row, col) + spec.weight[((co * cinG + ci) * taps) + t]);
        }
      }
    }
  }
  return { m, rows, cols };
}

function sigmaMax(m: Matrix): number {
  return new SVD(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal[0];
}

function exactNorm(c: Case, spec: ConvSpec): number {
  const d = c.kernel.length;
  const strides = c.strides ?? c.kernel.map(() => 1);
  const pads = c.pads ?? new Array<number>(2 * d).fill(0);
  return sigmaMax(convMatrix(spec, strides, pads).m);
}

function describeCase(c: Case): string {
  const parts = [`${c.cin}→${c.cout}`, `k ${c.kernel.join('×')}`, `n ${c.n.join('×')}`];
  if (c.group) parts.push(`group ${c.group}`);
  if (c.strides) parts.push(`stride ${c.strides.join(',')}`);
  if (c.dilations) parts.push(`dil ${c.dilations.join(',')}`);
  if (c.pads) parts.push(`pads ${c.pads.join(',')}`);
  return parts.join(', ');
}

const full = (k: number[], dil: number[] = k.map(() => 1)): number[] => [...k.map((v, a) => (v - 1) * dil[a]), ...k.map((v, a) => (v - 1) * dil[a])];

const cases: Case[] = [
  { cin: 3, cout: 2, kernel: [5], n: [11], seed: 1 },
  { cin: 3, cout: 2, kernel: [5], n: [11], strides: [2], pads: full([5]), seed: 2 },
  { cin: 2, cout: 3, kernel: [3], n: [9], dilations: [2], pads: [1, 3], seed: 3 },
  { cin: 2, cout: 2, kernel: [4], n: [7], strides: [2], dilations: [2], pads: full([4], [2]), seed: 4 },
  { cin: 2, cout: 3, kernel: [3], n: [8], dilations: [2], pads: [2, 2], seed: 22 },
  { cin: 2, cout: 3, kernel: [1, 1], n: [5, 7], strides: [2, 2], seed: 5 },
  { cin: 2, cout: 3, kernel: [2, 2], n: [7, 7], pads: [1, 0, 0, 1], seed: 6 },
  { cin: 3, cout: 2, kernel: [2, 2], n: [7, 5], strides: [2, 2], seed: 7 },
  { cin: 2, cout: 2, kernel: [3, 3], n: [7, 7], pads: [1, 1, 1, 1], seed: 8 },
  { cin: 2, cout: 3, kernel: [3, 3], n: [9, 7], strides: [2, 2], pads: [1, 1, 1, 1], seed: 9 },
  { cin: 2, cout: 2, kernel: [3, 3], n: [7, 7], dilations: [2, 2], pads: full([3, 3], [2, 2]), seed: 10 },
  { cin: 3, cout: 2, kernel: [3, 3], n: [9, 9], strides: [2, 1], dilations: [1, 2], pads: [0, 2, 1, 2], seed: 11 },
  { cin: 2, cout: 2, kernel: [3, 3], n: [6, 8], strides: [1, 2], dilations: [2, 2], pads: [2, 2, 2, 2], seed: 23 },
  { cin: 2, cout: 2, kernel: [5, 5], n: [7, 9], pads: [2, 2, 2, 2], seed: 12 },
  { cin: 1, cout: 2, kernel: [5, 5], n: [9, 9], strides: [2, 2], pads: full([5, 5]), seed: 13 },
  { cin: 2, cout: 2, kernel: [7, 7], n: [7, 7], pads: [3, 3, 3, 3], seed: 14 },
  { cin: 2, cout: 1, kernel: [7, 7], n: [9, 9], strides: [2, 2], pads: [3, 3, 3, 3], seed: 15 },
  { cin: 4, cout: 4, kernel: [3, 3], n: [7, 7], group: 2, pads: [1, 1, 1, 1], seed: 16 },
  { cin: 4, cout: 4, kernel: [3, 3], n: [7, 7], group: 4, pads: [1, 1, 1, 1], seed: 17 },
  { cin: 4, cout: 8, kernel: [3, 3], n: [5, 7], group: 4, strides: [2, 2], pads: [1, 1, 1, 1], seed: 18 },
  { cin: 4, cout: 2, kernel: [3, 3], n: [7, 5], group: 2, dilations: [2, 2], seed: 19 },
  { cin: 2, cout: 2, kernel: [3, 3, 3], n: [5, 5, 5], pads: [1, 1, 1, 1, 1, 1], seed: 20 },
  { cin: 2, cout: 2, kernel: [2, 3, 1], n: [5, 3, 4], strides: [2, 1, 2], dilations: [2, 1, 1], seed: 21 },
];

describe('convSpectralNormBound', () => {
  for (const c of cases) {
    it(`bounds the zero-padded conv from above: ${describeCase(c)}`, () => {
      const spec = randomSpec(c);
      const exact = exactNorm(c, spec);
      const b = convSpectralNormBound(spec);
      assert.equal(b.method, 'circular-fft');
      assert.ok(b.value >= exact * (1 - 1e-12), `bound ${b.value} < exact ${exact}`);
      assert.ok(b.estimate <= b.value, `estimate ${b.estimate} above value ${b.value}`);
    });
  }

  it('convSpectralNormBoundBelow: the same bound where it is at most the threshold, null only where the full bound is above it', () => {
    let stopped = 0;
    for (const c of cases) {
      const spec = randomSpec(c);
      const full = convSpectralNormBound(spec);
      for (const f of [0.3, 0.6, 0.9, 0.999, 1, 1.001, 2]) {
        const b = convSpectralNormBoundBelow(spec, full.value * f);
        if (b === null) { assert.ok(full.value > full.value * f, `${describeCase(c)}: stopped at ${f}× its own value`); stopped++; }
        else assert.deepEqual(b, full, `${describeCase(c)} at ${f}×`);
      }
      assert.deepEqual(convSpectralNormBoundBelow(spec, full.value), full, `${describeCase(c)}: a threshold equal to the value never stops it`);
    }
    assert.ok(stopped >= cases.length, `the DFT pass stopped early ${stopped} times`);
  });

  it('equals the norm of the circular conv on its grid (2-D and 3-D)', () => {
    for (const c of cases.filter((x) => [10, 12, 17, 19, 21, 22, 23].includes(x.seed))) {
      const spec = randomSpec(c);
      const grid = spec.inputSpatial.map((n, a) => n + (spec.weightDims[a + 2] - 1) * spec.dilations[a]);
      const circular = sigmaMax(convMatrix(spec, [], [], grid).m);
      const b = convSpectralNormBound(spec);
      assert.ok(b.value >= circular, `${describeCase(c)}: bound ${b.value} < circular ${circular}`);
      assert.ok(b.value <= circular * (1 + 1e-9), `${describeCase(c)}: bound ${b.value} vs circular ${circular}`);
      assert.ok(Math.abs(b.estimate - circular) <= 1e-12 * circular, `${describeCase(c)}: estimate ${b.estimate} vs ${circular}`);
    }
  });

  it('places dilated taps right when dilation and grid share a factor', () => {
    for (let seed = 100; seed < 106; seed++) {
      const c: Case = { cin: 2, cout: 2, kernel: [3, 2], n: [6, 6], dilations: [2, 2], seed };
      const spec = randomSpec(c);
      const circular = sigmaMax(convMatrix(spec, [], [], [10, 8]).m);
      const b = convSpectralNormBound(spec);
      assert.ok(b.value >= circular && b.value <= circular * (1 + 1e-9), `seed ${seed}: bound ${b.value} vs circular ${circular}`);
    }
  });

  it('stays certified when Lanczos never sees the top singular vector of a block', () => {
    const m = 64;
    const v = new Random(LANCZOS_SEED).unitVector(m);
    const rand = mulberry32(81);
    const q1 = Float64Array.from({ length: m }, () => rand() - 0.5);
    for (let pass = 0; pass < 2; pass++) {
      const c = q1.reduce((acc, x, i) => acc + x * v[i], 0);
      for (let i = 0; i < m; i++) q1[i] -= c * v[i];
    }
    const nq = Math.sqrt(q1.reduce((acc, x) => acc + x * x, 0));
    const u = Float64Array.from(q1, (x, i) => (i === 0 ? 1 : 0) - x / nq);
    const uu = u.reduce((acc, x) => acc + x * x, 0);
    const s = Array.from({ length: m }, (_, i) => (i === 0 ? 3.003 : 3 - i / m));
    // W = diag(s)·Q with Q a reflection whose first column is orthogonal to the start vector: WᵀW's top eigenvector.
    const weight = new Float64Array(m * m);
    for (let o = 0; o < m; o++) for (let i = 0; i < m; i++) weight[o * m + i] = s[o] * ((o === i ? 1 : 0) - (2 * u[o] * u[i]) / uu);
    const spec: ConvSpec = { weight, weightDims: [m, m, 1, 1], group: 1, dilations: [1, 1], inputSpatial: [1, 1] };
    const b = convSpectralNormBound(spec);
    assert.ok(b.estimate < 3.003 * (1 - 1e-5), `Lanczos found the top value (${b.estimate}); this test no longer exercises the certificate`);
    assert.ok(b.value >= 3.003 * (1 - 1e-13) && b.value <= 3.003 * (1 + 1e-4), `bound ${b.value} vs 3.003`);
  });

  it('is tight for a 1×1 conv, whose norm is σ_max of its channel matrix', () => {
    const c: Case = { cin: 3, cout: 5, kernel: [1, 1], n: [6, 6], seed: 31 };
    const spec = randomSpec(c);
    const exact = exactNorm(c, spec);
    const channel = sigmaMax(new Matrix(Array.from({ length: 5 }, (_, o) => Array.from(spec.weight.subarray(o * 3, o * 3 + 3)))));
    assert.ok(Math.abs(exact - channel) <= 1e-12 * channel, 'test reference is inconsistent');
    const b = convSpectralNormBound(spec);
    assert.ok(b.value >= exact && b.value <= exact * (1 + 1e-9), `bound ${b.value} vs exact ${exact}`);
  });

  it('is not absurdly loose for a random 3×3 "same" conv on 8×8', () => {
    const c: Case = { cin: 4, cout: 4, kernel: [3, 3], n: [8, 8], pads: [1, 1, 1, 1], seed: 41 };
    const spec = randomSpec(c);
    const exact = exactNorm(c, spec);
    const b = convSpectralNormBound(spec);
    assert.ok(b.value >= exact && b.value <= 1.5 * exact, `bound ${b.value} vs exact ${exact}`);
  });

  it('handles wide channel blocks and all-zero weights', () => {
    const c: Case = { cin: 24, cout: 20, kernel: [3, 3], n: [3, 3], pads: [1, 1, 1, 1], seed: 51 };
    const spec = randomSpec(c);
    const b = convSpectralNormBound(spec);
    const grid = [5, 5];
    const circular = sigmaMax(convMatrix(spec, [], [], grid).m);
    assert.ok(b.value >= circular && b.value <= circular * (1 + 1e-9), `bound ${b.value} vs circular ${circular}`);
    assert.ok(b.value >= exactNorm(c, spec));
    for (const f of [2 ** 700, 2 ** -700]) {
      const scaled = convSpectralNormBound({ ...spec, weight: Float64Array.from(spec.weight, (x) => x * f) });
      assert.ok(scaled.value >= circular * f * (1 - 1e-14) && scaled.value <= circular * f * (1 + 1e-9), `scale ${f}: ${scaled.value / f}`);
    }
    const zero = { ...spec, weight: new Float32Array(spec.weight.length) };
    assert.deepEqual(convSpectralNormBound(zero), { value: 0, estimate: 0, method: 'circular-fft' });
  });

  it('throws BudgetExceededError when the counted work would exceed budgetFlop', () => {
    const spec = randomSpec({ cin: 512, cout: 512, kernel: [3, 3], n: [56, 56], seed: 61 });
    assert.throws(
      () => convSpectralNormBound(spec, { budgetFlop: 2.8e10 }),
      (e) => e instanceof BudgetExceededError && isLipcheckError(e) && /over its work budget of 28000 Mflop/.test(e.message),
    );
    // a budget of exactly the predicted work runs (the prediction counts every block), one flop less does not
    const small = randomSpec({ cin: 4, cout: 6, kernel: [3, 3], n: [6, 6], seed: 62 });
    const need = convCertificateFlop(small);
    assert.deepEqual(convSpectralNormBound(small, { budgetFlop: need }), convSpectralNormBound(small));
    assert.throws(() => convSpectralNormBound(small, { budgetFlop: need - 1 }), BudgetExceededError);
  });

  it('rejects inconsistent specs with messages that quote the values', () => {
    const spec = randomSpec({ cin: 4, cout: 4, kernel: [3, 3], n: [5, 5], seed: 71 });
    assert.throws(() => convSpectralNormBound({ ...spec, group: 3 }), (e) => isLipcheckError(e) && /group 3/.test(e.message));
    assert.throws(() => convSpectralNormBound({ ...spec, dilations: [1] }), (e) => isLipcheckError(e) && /dilations \[1\]/.test(e.message));
    assert.throws(() => convSpectralNormBound({ ...spec, weightDims: [4, 4, 3, 3, 1, 1] }), (e) => isLipcheckError(e) && /4 spatial dims/.test(e.message));
  });
});

/**
 * H = Q·diag(λ)·Qᴴ with Q = I − 2uuᴴ/‖u‖² the complex Householder reflection taking e1 to q1, in full storage; with
 * `hideFrom`, q1 (the top eigenvector) is orthogonal to that vector.
 */
function hermitianWithSpectrum(lambda: number[], seed: number, hideFrom?: Float64Array): { hr: Float64Array; hi: Float64Array } {
  const m = lambda.length;
  const rand = mulberry32(seed);
  const qr = Float64Array.from({ length: m }, () => rand() - 0.5);
  const qi = Float64Array.from({ length: m }, () => rand() - 0.5);
  if (hideFrom) {
    for (let pass = 0; pass < 2; pass++) {
      let cr = 0;
      let ci = 0;
      for (let k = 0; k < m; k++) {
        cr += hideFrom[k] * qr[k];
        ci += hideFrom[k] * qi[k];
      }
      for (let k = 0; k < m; k++) {
        qr[k] -= cr * hideFrom[k];
        qi[k] -= ci * hideFrom[k];
      }
    }
  }
  // A unit phase makes q1[0] real and non-negative, so the reflection maps e1 exactly onto q1.
  const r0 = Math.hypot(qr[0], qi[0]);
  const pr = qr[0] / r0;
  const pim = -qi[0] / r0;
  let norm = 0;
  for (let k = 0; k < m; k++) {
    const a = qr[k] * pr - qi[k] * pim;
    const b = qr[k] * pim + qi[k] * pr;
    qr[k] = a;
    qi[k] = b;
    norm += a * a + b * b;
  }
  norm = Math.sqrt(norm);
  const ur = Float64Array.from(qr, (x, k) => (k === 0 ? 1 : 0) - x / norm);
  const ui = Float64Array.from(qi, (x) => -x / norm);
  const uu = ur.reduce((acc, x, k) => acc + x * x + ui[k] * ui[k], 0);
  const q = (row: number, col: number): [number, number] => {
    const re = (row === col ? 1 : 0) - (2 * (ur[row] * ur[col] + ui[row] * ui[col])) / uu;
    const im = -(2 * (ui[row] * ur[col] - ur[row] * ui[col])) / uu;
    return [re, im];
  };
  const hr = new Float64Array(m * m);
  const hi = new Float64Array(m * m);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < m; c++) {
      let sr = 0;
      let si = 0;
      for (let k = 0; k < m; k++) {
        const [ar, ai] = q(r, k);
        const [br, bi] = q(c, k);
        sr += lambda[k] * (ar * br + ai * bi);
        si += lambda[k] * (ai * br - ar * bi);
      }
      hr[r * m + c] = sr;
      hi[r * m + c] = si;
    }
  }
  for (let r = 0; r < m; r++) {
    hi[r * m + r] = 0;
    for (let c = r + 1; c < m; c++) {
      hr[c * m + r] = hr[r * m + c];
      hi[c * m + r] = -hi[r * m + c];
    }
  }
  return { hr, hi };
}

describe('hermitianLambdaMaxBound', () => {
  const m = 64;
  const lambda = Array.from({ length: m }, (_, i) => (i === 0 ? 4.004 : 4 - (3 * i) / m));

  it('brackets λ_max of a complex Hermitian matrix with a known spectrum', () => {
    const { hr, hi } = hermitianWithSpectrum(lambda, 91);
    const b = hermitianLambdaMaxBound(hr, hi, m);
    assert.ok(b !== null);
    assert.ok(b.upper >= 4.004 * (1 - 1e-13) && b.upper <= 4.004 * (1 + 1e-9), `bound ${b.upper}`);
    assert.ok(Math.abs(b.estimate - 4.004) <= 1e-12, `estimate ${b.estimate}`);
  });

  it('stays certified when Lanczos never sees the top eigenvector', () => {
    const { hr, hi } = hermitianWithSpectrum(lambda, 92, new Random(LANCZOS_SEED).unitVector(m));
    const b = hermitianLambdaMaxBound(hr, hi, m);
    assert.ok(b !== null);
    assert.ok(b.estimate < 4.004 * (1 - 1e-5), `Lanczos found the top value (${b.estimate}); this test no longer exercises the certificate`);
    assert.ok(b.upper >= 4.004 * (1 - 1e-13) && b.upper <= 4.004 * (1 + 1e-4), `bound ${b.upper}`);
  });
});

describe('convInfNorm', () => {
  it('is the largest per-output-channel ℓ1 mass, an upper bound of the dense ℓ∞ norm', () => {
    for (const c of cases.filter((x) => [9, 16, 20].includes(x.seed))) {
      const spec = randomSpec(c);
      const [cout] = spec.weightDims;
      const per = spec.weight.length / cout;
      let brute = 0;
      for (let o = 0; o < cout; o++) {
        let s = 0;
        for (let j = 0; j < per; j++) s += Math.abs(spec.weight[o * per + j]);
        brute = Math.max(brute, s);
      }
      const v = convInfNorm(spec);
      assert.ok(v >= brute && v <= brute * (1 + 1e-12), `${v} vs ${brute}`);
      const { m } = convMatrix(spec, c.strides ?? c.kernel.map(() => 1), c.pads ?? new Array<number>(2 * c.kernel.length).fill(0));
      const rowMax = Math.max(...m.abs().sum('row'));
      assert.ok(v >= rowMax, `${v} below the dense ℓ∞ norm ${rowMax}`);
    }
  });
});

test('the circular certificate\'s block at a frequency: the WebAssembly kernel gives fillBlockJs\'s bits (odd counts, several 1024-entry chunks, one tap and many)', () => {
  const heap = wasmHeap();
  assert.ok(heap, 'this Node has WebAssembly SIMD and shared memory');
  const rng = new Random(21);
  for (const [taps, count, groups] of [[1, 7, 1], [9, 12, 2], [16, 768, 1], [25, 2049, 2], [4, 1024, 3], [49, 1, 1]] as const) {
    const all = taps * count * groups;
    const wb = heap.alloc(all)!, pr = heap.alloc(taps)!, pi = heap.alloc(taps)!, br = heap.alloc(count)!, bi = heap.alloc(count)!;
    try {
      for (let i = 0; i < all; i++) wb[i] = rng.normal() * 2 ** ((i % 7) - 3);
      for (let t = 0; t < taps; t++) { const phi = rng.next() * 2 * Math.PI; pr[t] = Math.cos(phi); pi[t] = -Math.sin(phi); }
      for (let g = 0; g < groups; g++) {
        const [er, ei] = [new Float64Array(count), new Float64Array(count)];
        fillBlockJs(Float64Array.from(wb), taps, count, g, Float64Array.from(pr), Float64Array.from(pi), er, ei);
        br.fill(Number.NaN); bi.fill(Number.NaN);
        heap.kernels.fillblock(wb.byteOffset + 8 * g * taps * count, taps, count, pr.byteOffset, pi.byteOffset, br.byteOffset, bi.byteOffset);
        assert.deepEqual(Array.from(br), Array.from(er), `taps ${taps}, count ${count}, group ${g}: real parts`);
        assert.deepEqual(Array.from(bi), Array.from(ei), `taps ${taps}, count ${count}, group ${g}: imaginary parts`);
      }
    } finally {
      for (const a of [wb, pr, pi, br, bi]) heap.release(a);
    }
  }
});

test('H = B·Bᴴ: the WebAssembly tiles give the JavaScript bits (odd and even m, the odd row and column in JavaScript)', () => {
  const heap = wasmHeap()!;
  const rng = new Random(22);
  for (const [m, n] of [[2, 1], [3, 5], [8, 12], [13, 64], [64, 300], [1, 9]] as const) {
    const br = heap.alloc(m * n)!, bi = heap.alloc(m * n)!, hr = heap.alloc(m * m)!, hi = heap.alloc(m * m)!;
    try {
      for (let i = 0; i < m * n; i++) { br[i] = rng.normal(); bi[i] = rng.normal() * 1e-3; }
      const [er, ei] = [new Float64Array(m * m), new Float64Array(m * m)];
      hermitianGram(br, bi, m, n, er, ei, true);
      hr.fill(Number.NaN); hi.fill(Number.NaN);
      hermitianGram(br, bi, m, n, hr, hi);
      assert.deepEqual(Array.from(hr), Array.from(er), `${m}×${n}: real parts`);
      assert.deepEqual(Array.from(hi), Array.from(ei), `${m}×${n}: imaginary parts`);
      // and it is B·Bᴴ: entry (0, m−1) against a direct sum
      let re = 0;
      for (let k = 0; k < n; k++) re += br[k] * br[(m - 1) * n + k] + bi[k] * bi[(m - 1) * n + k];
      assert.ok(Math.abs(hr[m - 1] - re) <= 1e-12 * (1 + Math.abs(re)), `${m}×${n}: ${hr[m - 1]} vs ${re}`);
    } finally {
      for (const a of [br, bi, hr, hi]) heap.release(a);
    }
  }
});
