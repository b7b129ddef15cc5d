/** Tiny dense ReLU-family networks for the segment estimators' tests: random layers, ONNX export, IR and norms. */
import { findSegments, type Segment } from '../../src/estimators/cp.js';
import { measureRegion, type NormSettings, type OperatorNorm } from '../../src/estimators/operator-norm.js';
import { buildIr } from '../../src/ir/build.js';
import { mergeLinear, type Block } from '../../src/ir/merge.js';
import type { IrGraph } from '../../src/ir/types.js';
import type { Random } from '../../src/linalg/random.js';
import { decodeModel } from '../../src/onnx/read-model.js';
import { encodeGraph, type NodeSpec } from '../../src/onnx/writer.js';

export const runtime = { device: 'cpu' as const };
/** The settings AutoLip uses by default, on the CPU. */
export const settings: NormSettings = { norm: '2', certify: 'auto', delta: 1e-6, tol: 0.05, maxIterations: 200, seed: 0, runtime, budgetMs: 2000 };

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
