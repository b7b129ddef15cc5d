import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { jacobianLowerBound } from '../../../src/estimators/lower-bound.js';
import { mergeLinear, type LinearRegion } from '../../../src/ir/merge.js';
import type { LinearOperator, ModelEvaluator, OperatorBackend } from '../../../src/ir/operator.js';
import type { Tensor } from '../../../src/ir/tensor.js';
import type { IrGraph, IrNode } from '../../../src/ir/types.js';
import { mulberry32 } from '../../helpers/random.js';

/**
 * The lower bound through a FAKE backend (issue 15: estimators are handed operators): dense float64 operators for the
 * IR's matmul regions, and a hand-written model in JavaScript (outputs rounded to float32, as onnxruntime returns them)
 * that knows nothing of the IR. Analytic nets whose Lipschitz constant is known exactly.
 */

/** y = x·W for every matmul node of the region, in order (the only linear prim these nets use). */
function denseOperator(region: LinearRegion): LinearOperator {
  const ws = region.nodes.map((n) => {
    if (n.prim.op !== 'matmul' || n.prim.side !== 'right') throw new Error(`fake backend: ${n.prim.op} is not supported`);
    return n.prim.weight;
  });
  const apply = (x: Float64Array, transpose: boolean) => {
    let v = x;
    for (const w of transpose ? [...ws].reverse() : ws) {
      const [r, c] = w.dims;
      const out = new Float64Array(transpose ? r : c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) {
        if (transpose) out[i] += w.data[i * c + j] as number * v[j];
        else out[j] += v[i] * (w.data[i * c + j] as number);
      }
      v = out;
    }
    return v;
  };
  const inSize = region.inShape.reduce((a, b) => a * b, 1), outSize = region.outShape.reduce((a, b) => a * b, 1);
  return { inDims: region.inShape, outDims: region.outShape, inSize, outSize, apply: async (x) => apply(x, false), adjoint: async (y) => apply(y, true), dispose: async () => {} };
}

/** A backend of dense operators and a model given as a function from x to its named values. */
function fakeBackend(model: (x: Float64Array) => Record<string, Float64Array>, counts: { runs: number; operators: number }): OperatorBackend {
  const evaluator: ModelEvaluator = {
    async run(feeds, outputs) {
      counts.runs++;
      const x = Float64Array.from(feeds.x.data as Float32Array);
      const values = model(x);
      return new Map(outputs.map((o): [string, Tensor] => [o, { dtype: 'float32', dims: [1, values[o].length], data: Float32Array.from(values[o]) }]));
    },
    async release() {},
  };
  return {
    parallel: false,
    operator: async (region) => { counts.operators++; return denseOperator(region); },
    gram: async () => { throw new Error('fake backend: no Gram maps'); },
    denseMatrix: async () => null,
    model: async () => evaluator,
  };
}

const base = (name: string, inputs: string[], inShapes: number[][], output: string, outShape: number[]) => ({ name, opType: name, inputs, inShapes, output, outShape });

function sigmaMax(w: ArrayLike<number>, rows: number, cols: number): number {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, w[i * cols + j]);
  return new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal[0];
}

async function lower(ir: IrGraph, model: (x: Float64Array) => Record<string, Float64Array>, norm: '2' | 'inf' = '2') {
  const counts = { runs: 0, operators: 0 };
  const r = await jacobianLowerBound({
    ir, blocks: mergeLinear(ir), inputName: 'x', outputName: 'y', inputShape: ir.inputShape, norm,
    backend: fakeBackend(model, counts), seed: 0, budget: 4e9,
  });
  return { r, counts };
}

test('fake backend, y = relu(x)·W: the constant is ‖W‖ (every pattern is realisable, all-on is the largest), and the search finds it', async () => {
  const rand = mulberry32(5);
  const w: Tensor = { dtype: 'float32', dims: [4, 3], data: Float32Array.from({ length: 12 }, () => rand() * 2 - 1) };
  const nodes: IrNode[] = [
    { kind: 'activation', fn: 'Relu', slope: [0, 1], ...base('relu', ['x'], [[1, 4]], 'a', [1, 4]) },
    { kind: 'linear', prim: { op: 'matmul', weight: w, side: 'right' }, ...base('fc', ['a'], [[1, 4]], 'y', [1, 3]) },
  ];
  const ir: IrGraph = { input: 'x', inputShape: [1, 4], output: 'y', outputShape: [1, 3], nodes, warnings: [] };
  const model = (x: Float64Array) => {
    const a = x.map((v) => Math.max(0, v));
    const y = new Float64Array(3);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) y[j] += a[i] * w.data[i * 3 + j] + (i === 0 ? 0.25 : 0); // a bias the IR drops
    return { x, a, y };
  };
  const { r, counts } = await lower(ir, model);
  // ‖relu(x)·W − relu(x′)·W‖ ≤ ‖W‖·‖relu(x) − relu(x′)‖ ≤ ‖W‖·‖x − x′‖, reached for x, x′ > 0
  const L = sigmaMax(Array.from(w.data as Float32Array), 4, 3);
  assert.equal(r.method, 'jacobian-ascent');
  assert.equal(counts.operators, 1, 'one operator for the one linear region');
  assert.ok(r.value <= L * (1 + 1e-6), `lower ${r.value} above the constant ${L}`);
  assert.ok(r.value >= 0.99 * L, `lower ${r.value} far below the constant ${L}`);
  assert.ok(counts.runs === r.evaluations, `${counts.runs} runs of the model, ${r.evaluations} counted`);
});

test('fake backend, elementwise Gelu and HardSwish: the constants are their largest slopes, 1.1289041 and 1.5 (approached at 3⁻)', async () => {
  const Phi = (u: number) => { let s = 0; const n = 20000, a = -12; for (let k = 0; k < n; k++) { const t = a + ((u - a) * (k + 0.5)) / n; s += Math.exp(-t * t / 2); } return (s * (u - a)) / n / Math.sqrt(2 * Math.PI); };
  const cases = [
    { fn: 'Gelu', slope: [-0.128905, 1.128905] as [number, number], f: (u: number) => u * Phi(u), L: (1 + 0.8427007929497149) / 2 + Math.exp(-1) / Math.sqrt(Math.PI), floor: 0.995 },
    { fn: 'HardSwish', slope: [-0.5, 1.5] as [number, number], f: (u: number) => u * Math.max(0, Math.min(1, u / 6 + 0.5)), L: 1.5, floor: 0.93 },
  ];
  for (const c of cases) {
    const ir: IrGraph = {
      input: 'x', inputShape: [1, 3], output: 'y', outputShape: [1, 3], warnings: [],
      nodes: [{ kind: 'activation', fn: c.fn, slope: c.slope, ...base(c.fn, ['x'], [[1, 3]], 'y', [1, 3]) }],
    };
    const { r } = await lower(ir, (x) => ({ x, y: x.map(c.f) }));
    assert.equal(r.method, 'jacobian-ascent', c.fn);
    // the pair's ratio is a mean slope of f over [x, x′] in the best coordinate: never above the constant
    assert.ok(r.value <= c.L * (1 + 1e-6), `${c.fn}: lower ${r.value} above the constant ${c.L}`);
    assert.ok(r.value >= c.floor * c.L, `${c.fn}: lower ${r.value} far below the constant ${c.L}`);
  }
});

test('fake backend: a node the IR cannot differentiate falls back to pairs through the same evaluator', async () => {
  const nodes: IrNode[] = [{ kind: 'unbounded', reason: 'multiplies two input-dependent tensors', derived: false, ...base('sq', ['x', 'x'], [[1, 2], [1, 2]], 'y', [1, 2]) }];
  const ir: IrGraph = { input: 'x', inputShape: [1, 2], output: 'y', outputShape: [1, 2], nodes, warnings: [] };
  const { r, counts } = await lower(ir, (x) => ({ x, y: x.map((v) => v * v) }));
  assert.equal(r.method, 'witness-pairs');
  assert.match(r.fallbackReason ?? '', /sq/);
  assert.equal(counts.operators, 0);
  assert.ok(r.value > 0 && counts.runs === r.evaluations);
});
