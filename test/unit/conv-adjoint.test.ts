import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chainGraphs } from '../../src/backend/graphs.js';
import { emitAdjoint, emitForward } from '../../src/backend/emit.js';
import type { LinearRegion } from '../../src/ir/merge.js';
import { sizeOf, type Tensor } from '../../src/ir/tensor.js';
import type { LinearNode } from '../../src/ir/types.js';
import { createOrtGram, createOrtOperator } from '../../src/backend/operators.js';
import { norm2, Random } from '../../src/linalg/random.js';
import { encodeGraph } from '../../src/onnx/writer.js';

const CPU = { device: 'cpu' } as const;

interface ConvCase {
  readonly name: string;
  /** [N, Cin, spatial…] */
  readonly inShape: readonly number[];
  /** [Cout, Cin/group, k…] */
  readonly weight: readonly number[];
  readonly group?: number;
  readonly strides?: readonly number[];
  readonly pads?: readonly number[];
  readonly dilations?: readonly number[];
  readonly float64?: boolean;
  /** The adjoint's expected form: a Conv (with a Slice when some pads exceed (k−1)·d) or the ConvTranspose fallback. */
  readonly expect: 'Conv' | 'Slice+Conv' | 'ConvTranspose';
}

const CASES: ConvCase[] = [
  { name: '3×3, pads 1, Cin≠Cout', inShape: [1, 3, 6, 7], weight: [5, 3, 3, 3], pads: [1, 1, 1, 1], expect: 'Conv' },
  { name: '3×3, no pads, batch 2', inShape: [2, 2, 5, 5], weight: [3, 2, 3, 3], expect: 'Conv' },
  { name: '1×1', inShape: [1, 4, 5, 6], weight: [2, 4, 1, 1], expect: 'Conv' },
  { name: '3×3, asymmetric pads [0,1,2,1]', inShape: [1, 2, 5, 6], weight: [3, 2, 3, 3], pads: [0, 1, 2, 1], expect: 'Conv' },
  { name: '3×2 kernel, pads [1,0,1,1]', inShape: [1, 3, 6, 5], weight: [2, 3, 3, 2], pads: [1, 0, 1, 1], expect: 'Conv' },
  { name: '3×3, dilation 2, pads [2,1,0,4]', inShape: [1, 2, 8, 9], weight: [3, 2, 3, 3], pads: [2, 1, 0, 4], dilations: [2, 2], expect: 'Conv' },
  { name: '3×2, dilations [1,3], pads [0,3,2,1]', inShape: [1, 2, 6, 8], weight: [4, 2, 3, 2], pads: [0, 3, 2, 1], dilations: [1, 3], expect: 'Conv' },
  { name: 'group 2, Cin 4, Cout 6', inShape: [1, 4, 5, 6], weight: [6, 2, 3, 3], group: 2, pads: [1, 1, 1, 1], expect: 'Conv' },
  { name: 'group 3, 2 channels in, 3 out per group, pads [0,2,1,0]', inShape: [1, 6, 5, 5], weight: [9, 2, 3, 3], group: 3, pads: [0, 2, 1, 0], expect: 'Conv' },
  { name: 'depthwise (group = C = 4)', inShape: [1, 4, 6, 5], weight: [4, 1, 3, 3], group: 4, pads: [1, 1, 1, 1], expect: 'Conv' },
  { name: 'depthwise with multiplier 2', inShape: [1, 3, 5, 5], weight: [6, 1, 3, 3], group: 3, pads: [1, 0, 1, 2], expect: 'Conv' },
  { name: '1-D, k 5, pads [2,1]', inShape: [1, 3, 9], weight: [2, 3, 5], pads: [2, 1], expect: 'Conv' },
  { name: '1-D, group 2, dilation 2', inShape: [1, 4, 10], weight: [2, 2, 3], group: 2, pads: [3, 0], dilations: [2], expect: 'Conv' },
  { name: '3-D, k 3×2×3, pads [1,0,1,1,1,0]', inShape: [1, 2, 4, 5, 4], weight: [3, 2, 3, 2, 3], pads: [1, 0, 1, 1, 1, 0], expect: 'Conv' },
  { name: '3-D, group 2, dilations [1,2,1]', inShape: [1, 4, 4, 6, 3], weight: [2, 2, 2, 3, 2], group: 2, pads: [0, 2, 1, 1, 1, 0], dilations: [1, 2, 1], expect: 'Conv' },
  { name: 'float64 weights', inShape: [1, 3, 5, 5], weight: [2, 3, 3, 3], pads: [1, 2, 0, 1], float64: true, expect: 'Conv' },
  { name: 'pads beyond (k−1)·d crop the cotangent', inShape: [1, 2, 5, 6], weight: [3, 2, 3, 3], pads: [3, 0, 2, 4], expect: 'Slice+Conv' },
  { name: '1×1 with pads', inShape: [1, 3, 4, 4], weight: [2, 3, 1, 1], pads: [1, 2, 0, 1], expect: 'Slice+Conv' },
  { name: 'stride 2, exact fit', inShape: [1, 2, 7, 7], weight: [3, 2, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], expect: 'ConvTranspose' },
  { name: 'stride 2, remainder (output_padding)', inShape: [1, 2, 8, 8], weight: [3, 2, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], expect: 'ConvTranspose' },
  { name: 'strides [1,2], group 2', inShape: [1, 4, 6, 7], weight: [2, 2, 3, 3], group: 2, strides: [1, 2], pads: [1, 1, 1, 1], expect: 'ConvTranspose' },
];

/** The dense matrix (rows = outputs) of an N-D grouped Conv, straight from its definition, in float64. */
function convDense(w: ArrayLike<number>, c: ConvCase): { m: Float64Array; rows: number; cols: number; outShape: number[] } {
  const [n, cin, ...sp] = c.inShape;
  const [cout, cig, ...k] = c.weight;
  const r = sp.length, group = c.group ?? 1, cog = cout / group;
  const s = c.strides ?? sp.map(() => 1), d = c.dilations ?? sp.map(() => 1), p = c.pads ?? [...sp, ...sp].map(() => 0);
  const outSp = sp.map((x, i) => Math.floor((x + p[i] + p[i + r] - (k[i] - 1) * d[i] - 1) / s[i]) + 1);
  const outShape = [n, cout, ...outSp];
  const rows = sizeOf(outShape), cols = sizeOf(c.inShape), ks = sizeOf(k), so = sizeOf(outSp), si = sizeOf(sp);
  const m = new Float64Array(rows * cols);
  const unravel = (flat: number, dims: readonly number[]) => { const ix = new Array<number>(dims.length); for (let i = dims.length - 1; i >= 0; i--) { ix[i] = flat % dims[i]; flat = Math.floor(flat / dims[i]); } return ix; };
  for (let b = 0; b < n; b++) for (let o = 0; o < cout; o++) for (let q = 0; q < so; q++) {
    const oq = unravel(q, outSp);
    const row = (b * cout + o) * so + q;
    for (let a = 0; a < cig; a++) for (let kf = 0; kf < ks; kf++) {
      const kq = unravel(kf, k);
      let inFlat = 0, inside = true;
      for (let i = 0; i < r; i++) {
        const x = oq[i] * s[i] - p[i] + kq[i] * d[i];
        if (x < 0 || x >= sp[i]) { inside = false; break; }
        inFlat = inFlat * sp[i] + x;
      }
      if (!inside) continue;
      const ch = Math.floor(o / cog) * cig + a;
      m[row * cols + (b * cin + ch) * si + inFlat] += w[(o * cig + a) * ks + kf];
    }
  }
  return { m, rows, cols, outShape };
}

function region(c: ConvCase, weight: Tensor, outShape: readonly number[]): LinearRegion {
  const r = c.inShape.length - 2;
  const node: LinearNode = {
    kind: 'linear', name: c.name, opType: 'Conv', inputs: ['in'], inShapes: [c.inShape], output: 'out', outShape,
    prim: { op: 'conv', weight, group: c.group ?? 1, strides: c.strides ?? Array(r).fill(1), pads: c.pads ?? Array(2 * r).fill(0), dilations: c.dilations ?? Array(r).fill(1) },
  };
  return { id: 'conv', input: 'in', inShape: c.inShape, output: 'out', outShape, nodes: [node] };
}

const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  const diff = new Float64Array(want.length);
  for (let i = 0; i < want.length; i++) diff[i] = got[i] - want[i];
  return norm2(diff) / norm2(want);
};

/** y ↦ Mᵀy for a row-major rows×cols matrix. */
function transposeTimes(m: Float64Array, rows: number, cols: number, y: ArrayLike<number>): Float64Array {
  const x = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) x[j] += m[i * cols + j] * y[i];
  return x;
}

function times(m: Float64Array, rows: number, cols: number, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(rows);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) y[i] += m[i * cols + j] * x[j];
  return y;
}

for (const [index, c] of CASES.entries()) {
  test(`Conv adjoint against a dense float64 transpose: ${c.name} (${c.expect})`, async () => {
    const rng = new Random(100 + index);
    const size = sizeOf(c.weight);
    const data = c.float64 ? new Float64Array(size) : new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = rng.normal();
    const weight: Tensor = { dtype: c.float64 ? 'float64' : 'float32', dims: c.weight, data };
    const { m, rows, cols, outShape } = convDense(data, c);
    const reg = region(c, weight, outShape);

    const adj = emitAdjoint(reg);
    const ops = adj.nodes.map((n) => n.opType).filter((t) => t === 'Conv' || t === 'ConvTranspose' || t === 'Slice');
    assert.deepEqual(ops, c.expect.split('+'), `adjoint graph ops: ${adj.nodes.map((n) => n.opType).join(', ')}`);

    const op = await createOrtOperator({ forward: encodeGraph(emitForward(reg)), adjoint: encodeGraph(adj), inDims: reg.inShape, outDims: reg.outShape, name: c.name }, CPU);
    try {
      for (let t = 0; t < 3; t++) {
        // the forward against the same matrix first, so the reference itself is checked by onnxruntime's Conv
        const x = rng.unitVector(cols), y = rng.unitVector(rows);
        const ax = await op.apply(x);
        assert.ok(relErr(ax, times(m, rows, cols, x)) <= 1e-5, `forward off by ${relErr(ax, times(m, rows, cols, x))}`);
        const aty = await op.adjoint(y);
        const want = transposeTimes(m, rows, cols, y);
        assert.equal(aty.length, cols);
        assert.ok(relErr(aty, want) <= 1e-5, `adjoint off by ${relErr(aty, want)} relative`);
      }
    } finally {
      await op.dispose();
    }

    // the one-session AᵀA model lipcheck's Lanczos runs (operator-norm.ts chainGraphs)
    const gram = await createOrtGram(encodeGraph(chainGraphs(emitForward(reg), adj)), reg.inShape, CPU, c.name);
    try {
      const v = rng.unitVector(cols);
      const z = await gram.apply(v);
      const want = transposeTimes(m, rows, cols, times(m, rows, cols, v));
      assert.ok(relErr(z, want) <= 1e-5, `AᵀA off by ${relErr(z, want)} relative`);
    } finally {
      await gram.dispose();
    }
  });
}

test('the flipped Conv weight of float32 weights stays float32, its channel axes swapped', () => {
  const c = CASES[0];
  const weight: Tensor = { dtype: 'float32', dims: c.weight, data: new Float32Array(sizeOf(c.weight)).fill(1) };
  const reg = region(c, weight, convDense(weight.data as Float32Array, c).outShape);
  const a = emitAdjoint(reg);
  const convWeight = (g: ReturnType<typeof emitAdjoint>) => {
    const name = g.nodes.find((n) => n.opType === 'Conv')!.inputs[1];
    return (g.initializers as [string, Tensor][]).find(([k]) => k === name)![1];
  };
  assert.equal(convWeight(a).dtype, 'float32');
  assert.ok(convWeight(a).data instanceof Float32Array);
  assert.deepEqual(convWeight(a).dims, [3, 5, 3, 3]);
});
