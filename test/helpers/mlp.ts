/** Tiny dense ReLU-family networks for the segment estimators' tests: random layers, ONNX export, IR and norms. */
import { createOrtBackend } from '../../src/backend/index.js';
import { findSegments, type Segment } from '../../src/estimators/cp.js';
import { measureRegion, type NormSettings, type OperatorNorm } from '../../src/estimators/operator-norm.js';
import { buildIr, type BuildResult } from '../../src/frontend/build.js';
import { mergeLinear, type Block } from '../../src/ir/merge.js';
import type { IrGraph } from '../../src/ir/types.js';
import type { Random } from '../../src/linalg/random.js';
import { decodeModel, type OnnxModel } from '../../src/onnx/read-model.js';
import { encodeGraph, type NodeSpec } from '../../src/onnx/writer.js';
import assert from 'node:assert/strict';
import { sigmaMax } from './dense.js';

export const runtime = { device: 'cpu' as const };
/** The settings AutoLip uses by default, on the CPU. */
export const settings: NormSettings = { norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, maxIterations: 200, seed: 0, backend: createOrtBackend({ runtime }), certifyBudget: 2.8e9 };

/** The AnalysedModel fields of a built model (lower bound, pattern search, exact enumeration), its onnxruntime backend included. */
export function analysedOf(model: OnnxModel, built: BuildResult, norm: '2' | 'inf' = '2') {
  const io = { inputName: built.inputName, inputShape: built.inputShape, outputName: built.outputName };
  return { ir: built.ir, blocks: mergeLinear(built.ir), ...io, backend: createOrtBackend({ model, runtime, io }), norm };
}

/** A dense layer y = W·x + b, W row-major rows×cols, values already rounded to float32. */
export interface Dense { readonly w: Float64Array; readonly rows: number; readonly cols: number; readonly b: Float64Array }

/** An elementwise activation: its ONNX node, its derivative, and its slope range (as the converters report it). */
export interface Act { readonly op: string; readonly attrs?: Record<string, { f: number }>; readonly f: (h: number) => number; readonly df: (h: number) => number; readonly slope: readonly [number, number] }

const sig = (h: number) => 1 / (1 + Math.exp(-h));
/** The activations the tests use, with their exact derivatives. */
export const ACTS: Record<string, Act> = {
  relu: { op: 'Relu', f: (h) => Math.max(h, 0), df: (h) => (h > 0 ? 1 : 0), slope: [0, 1] },
  leaky01: { op: 'LeakyRelu', attrs: { alpha: { f: 0.1 } }, f: (h) => (h > 0 ? h : Math.fround(0.1) * h), df: (h) => (h > 0 ? 1 : Math.fround(0.1)), slope: [Math.fround(0.1), 1] },
  leaky05: { op: 'LeakyRelu', attrs: { alpha: { f: 0.5 } }, f: (h) => (h > 0 ? h : 0.5 * h), df: (h) => (h > 0 ? 1 : 0.5), slope: [0.5, 1] },
  // a negative slope: LeakyRelu(α = −0.5) has derivative in [−0.5, 1]
  leakyNeg: { op: 'LeakyRelu', attrs: { alpha: { f: -0.5 } }, f: (h) => (h > 0 ? h : -0.5 * h), df: (h) => (h > 0 ? 1 : -0.5), slope: [-0.5, 1] },
  tanh: { op: 'Tanh', f: Math.tanh, df: (h) => 1 - Math.tanh(h) ** 2, slope: [0, 1] },
  sigmoid: { op: 'Sigmoid', f: sig, df: (h) => sig(h) * (1 - sig(h)), slope: [0, 0.25] },
};

/** Values rounded to float32, kept as float64. */
export const f32 = (xs: ArrayLike<number>) => Float64Array.from(xs, (x) => Math.fround(x));
/** A float32 tensor for the ONNX writer. */
export const tensor = (dims: number[], data: ArrayLike<number>) => ({ dtype: 'float32' as const, dims, data: Float32Array.from(data) });

/** Random layers of the given widths (Gaussian, scaled by gain/√fan-in), float32 values. */
export function randomDense(widths: readonly number[], rng: Random, gain = 1.3): Dense[] {
  return widths.slice(1).map((rows, k) => {
    const cols = widths[k];
    return { w: f32(Array.from({ length: rows * cols }, () => (rng.normal() * gain) / Math.sqrt(cols))), rows, cols, b: f32(Array.from({ length: rows }, () => rng.normal() * 0.5)) };
  });
}

/** Gemm → act → Gemm → … → Gemm as an ONNX model with input [1, n0]. */
export function mlpModel(layers: readonly Dense[], act: Act): Uint8Array {
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  let x = 'x';
  layers.forEach((l, k) => {
    inits.push([`w${k}`, tensor([l.rows, l.cols], l.w)], [`b${k}`, tensor([l.rows], l.b)]);
    nodes.push({ opType: 'Gemm', inputs: [x, `w${k}`, `b${k}`], outputs: [`h${k}`], attrs: { transB: { i: 1 } }, name: `gemm${k}` });
    x = `h${k}`;
    if (k + 1 < layers.length) {
      nodes.push({ opType: act.op, inputs: [x], outputs: [`a${k}`], attrs: act.attrs ?? {}, name: `act${k}` });
      x = `a${k}`;
    }
  });
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, layers[0].cols] }], outputs: [{ name: x }], nodes, initializers: inits });
}

/** The IR, merged blocks and sequential segments of a model. */
export async function pipeline(bytes: Uint8Array): Promise<{ ir: IrGraph; blocks: Block[]; segments: Segment[] }> {
  const built = await buildIr(decodeModel(bytes, 'test.onnx'), { seed: 0, runtime });
  const blocks = mergeLinear(built.ir);
  return { ir: built.ir, blocks, segments: findSegments(built.ir, blocks) };
}

/** Each region's norm, as AutoLip measures it. */
export async function measureAll(blocks: readonly Block[], s: NormSettings = settings): Promise<Map<string, OperatorNorm>> {
  const norms = new Map<string, OperatorNorm>();
  let i = 0;
  for (const b of blocks) if (b.kind === 'operator') norms.set(b.region.id, await measureRegion(b.region, s, i++));
  return norms;
}

/** a·b for row-major float64 matrices (a: ar×ac, b: ac×bc). */
export function matmul(a: Float64Array, ar: number, ac: number, b: Float64Array, bc: number): Float64Array {
  const out = new Float64Array(ar * bc);
  for (let i = 0; i < ar; i++) for (let k = 0; k < ac; k++) { const v = a[i * ac + k]; if (v !== 0) for (let j = 0; j < bc; j++) out[i * bc + j] += v * b[k * bc + j]; }
  return out;
}

/** The ℓ∞ operator norm (largest absolute row sum) of a row-major matrix. */
export const infNorm = (m: Float64Array, rows: number, cols: number) => {
  let best = 0;
  for (let i = 0; i < rows; i++) { let s = 0; for (let j = 0; j < cols; j++) s += Math.abs(m[i * cols + j]); best = Math.max(best, s); }
  return best;
};
/** ‖m‖ in the given norm, exact in float64. */
export const opNorm = (m: Float64Array, rows: number, cols: number, norm: '2' | 'inf') => (norm === '2' ? sigmaMax(m, rows, cols) : infNorm(m, rows, cols));

/** W_m D_{m−1} ⋯ D_1 W_1 for diagonal D_k (one vector per activation), row-major. */
export function chain(layers: readonly Dense[], ds: readonly Float64Array[]): Float64Array {
  let m: Float64Array = Float64Array.from(layers[0].w);
  for (let k = 1; k < layers.length; k++) {
    const prev = layers[k - 1], d = ds[k - 1];
    for (let i = 0; i < prev.rows; i++) for (let j = 0; j < layers[0].cols; j++) m[i * layers[0].cols + j] *= d[i];
    m = matmul(layers[k].w, layers[k].rows, layers[k].cols, m, layers[0].cols);
  }
  return m;
}

/** A witnessed lower bound: max over random inputs of ‖J(x)‖, J computed exactly in float64 from the derivatives at x. */
export function witness(layers: readonly Dense[], act: Act, norm: '2' | 'inf', rng: Random, samples = 300): number {
  const last = layers[layers.length - 1];
  let best = 0;
  for (let s = 0; s < samples; s++) {
    let x = Float64Array.from({ length: layers[0].cols }, () => rng.normal() * 2);
    const ds: Float64Array[] = [];
    for (let k = 0; k < layers.length - 1; k++) {
      const l = layers[k];
      const h = matmul(l.w, l.rows, l.cols, x, 1).map((v, i) => v + l.b[i]);
      ds.push(h.map(act.df));
      x = h.map(act.f);
    }
    best = Math.max(best, opNorm(chain(layers, ds), last.rows, layers[0].cols, norm));
  }
  return best;
}

/** max over D_k ∈ {a, b}^{n_k} of ‖W_m D ⋯ D W_1‖: the sup over the whole slope box (convex in each D_k), ≥ the true constant. */
export function bruteForce(layers: readonly Dense[], slope: readonly [number, number], norm: '2' | 'inf'): number {
  const hidden = layers.slice(0, -1).map((l) => l.rows);
  const bits = hidden.reduce((a, b) => a + b, 0);
  assert.ok(bits <= 14, `brute force over 2^${bits} patterns is too slow for a unit test`);
  let best = 0;
  for (let mask = 0; mask < 2 ** bits; mask++) {
    let bit = 0;
    const ds = hidden.map((n) => Float64Array.from({ length: n }, () => ((mask >> bit++) & 1 ? slope[1] : slope[0])));
    best = Math.max(best, opNorm(chain(layers, ds), layers[layers.length - 1].rows, layers[0].cols, norm));
  }
  return best;
}
