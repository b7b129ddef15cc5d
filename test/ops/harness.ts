/**
 * The per-op harness: a one-node (or few-node) ONNX model built with lipcheck's writer, converted by buildIr, compared
 * with the same model run in onnxruntime. Linear cases compare dense matrices; activation cases compare slopes;
 * Lipschitz cases compare difference quotients.
 */
import { buildIr } from '../../src/frontend/build.js';
import { emitAdjoint, emitForward } from '../../src/backend/emit.js';
import { mergeLinear, type LinearRegion } from '../../src/ir/merge.js';
import type { Tensor } from '../../src/ir/tensor.js';
import type { IrGraph } from '../../src/ir/types.js';
import { createOrtOperator } from '../../src/backend/operators.js';
import { Random } from '../../src/linalg/random.js';
import { ModelRunner } from '../../src/backend/runner.js';
import { decodeModel, type OnnxModel } from '../../src/onnx/read-model.js';
import { encodeGraph, type AttrSpec, type NodeSpec } from '../../src/onnx/writer.js';
import { fusePatterns } from '../../src/ops/patterns.js';

const CPU = { device: 'cpu' as const };

/** A node input: 'x' (the analysed input), the name of an earlier node's output, a constant, or null (absent). */
export type In = string | Tensor | null;

/** One model to build: the node under test (and optional nodes before it), the input shape, the opset. */
export interface Case {
  readonly name: string;
  readonly op: string;
  /** The node's domain (default: the ONNX domain ''). */
  readonly domain?: string;
  readonly shape: readonly number[];
  readonly opset?: number;
  readonly attrs?: Record<string, AttrSpec>;
  /** The node's inputs (default ['x']). */
  readonly inputs?: readonly In[];
  /** How many outputs the node has (default 1), and which one is analysed (default 0). */
  readonly outputs?: number;
  readonly output?: number;
  /** Element types of the outputs when not float32 (e.g. int64 indices). */
  readonly outputTypes?: readonly string[];
  /** Nodes computing intermediate inputs from 'x' (their inputs may be constants too). */
  readonly before?: readonly { op: string; inputs: readonly In[]; output: string; attrs?: Record<string, AttrSpec>; domain?: string }[];
}

let seedCounter = 1;

/** A float32 tensor with seeded normal entries (or the given values). */
export function tensor(dims: readonly number[], data?: ArrayLike<number>, seed = seedCounter++): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const r = new Random(seed);
  return { dtype: 'float32', dims: [...dims], data: data ? Float32Array.from(data) : Float32Array.from({ length: n }, () => r.normal()) };
}

export function ints(values: readonly number[], dims: readonly number[] = [values.length]): Tensor {
  return { dtype: 'int64', dims: [...dims], data: BigInt64Array.from(values.map((v) => BigInt(v))) };
}

/** The model bytes of a case: graph input 'x', outputs y0 … y(k−1). */
export function caseModel(c: Case): Uint8Array {
  const inits: [string, Tensor][] = [];
  const name = (v: In, i: string): string => {
    if (v === null) return '';
    if (typeof v === 'string') return v;
    const n = `c_${i}`;
    inits.push([n, v]);
    return n;
  };
  const nodes: NodeSpec[] = (c.before ?? []).map((b, k) => ({ opType: b.op, inputs: b.inputs.map((v, i) => name(v, `b${k}_${i}`)), outputs: [b.output], attrs: b.attrs, name: `pre${k}`, domain: b.domain }));
  const k = c.outputs ?? 1;
  const outs = Array.from({ length: k }, (_, i) => `y${i}`);
  nodes.push({ opType: c.op, inputs: (c.inputs ?? ['x']).map((v, i) => name(v, String(i))), outputs: outs, attrs: c.attrs, name: 'node', domain: c.domain });
  return encodeGraph({ opset: c.opset ?? 13, inputs: [{ name: 'x', dims: c.shape }], outputs: outs.map((o, i) => ({ name: o, dtype: c.outputTypes?.[i] ?? 'float32' })), nodes, initializers: inits });
}

/** The case's IR (patterns fused first, as analyze does) and its decoded model. */
export async function caseIr(c: Case): Promise<{ ir: IrGraph; model: OnnxModel; bytes: Uint8Array }> {
  const bytes = caseModel(c);
  const model = fusePatterns(decodeModel(bytes, `${c.name}.onnx`)).model;
  const built = await buildIr(model, { seed: 3, runtime: CPU, outputName: `y${c.output ?? 0}` });
  return { ir: built.ir, model, bytes };
}

/** Evaluates a model (float32 input 'x') at several inputs, returning the named output as float64 arrays. */
export async function evaluate(bytes: Uint8Array, shape: readonly number[], xs: Float32Array[], output: string): Promise<Float64Array[]> {
  const runner = await ModelRunner.create(bytes, CPU, 'case');
  try {
    const out: Float64Array[] = [];
    for (const x of xs) out.push(Float64Array.from((await runner.run({ x: { dtype: 'float32', dims: shape, data: x } }, [output])).get(output)!.data as ArrayLike<number>, Number));
    return out;
  } finally {
    await runner.release();
  }
}

/** The matrix (rows = outputs) of the single operator region producing `output`, and of its adjoint (rows = inputs). */
export async function regionMatrices(region: LinearRegion): Promise<{ forward: Float64Array; adjoint: Float64Array; rows: number; cols: number }> {
  const op = await createOrtOperator({ forward: encodeGraph(emitForward(region)), adjoint: encodeGraph(emitAdjoint(region)), inDims: region.inShape, outDims: region.outShape, name: region.id }, CPU);
  const rows = op.outSize, cols = op.inSize;
  const forward = new Float64Array(rows * cols), adjoint = new Float64Array(rows * cols);
  try {
    for (let j = 0; j < cols; j++) {
      const e = new Float64Array(cols);
      e[j] = 1;
      const y = await op.apply(e);
      for (let i = 0; i < rows; i++) forward[i * cols + j] = y[i];
    }
    for (let i = 0; i < rows; i++) {
      const e = new Float64Array(rows);
      e[i] = 1;
      const x = await op.adjoint(e);
      // adjoint(e_i) is row i of A
      for (let j = 0; j < cols; j++) adjoint[i * cols + j] = x[j];
    }
  } finally {
    await op.dispose();
  }
  return { forward, adjoint, rows, cols };
}

/** The matrix of the ONNX model itself: f(e_j) − f(0), column by column (affine offsets cancel). */
export async function modelMatrix(bytes: Uint8Array, shape: readonly number[], output: string): Promise<{ m: Float64Array; rows: number }> {
  const cols = shape.reduce((a, b) => a * b, 1);
  const xs = [new Float32Array(cols)];
  for (let j = 0; j < cols; j++) { const e = new Float32Array(cols); e[j] = 1; xs.push(e); }
  const ys = await evaluate(bytes, shape, xs, output);
  const rows = ys[0].length;
  const m = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) m[i * cols + j] = ys[j + 1][i] - ys[0][i];
  return { m, rows };
}

/** The operator region computing the case's analysed output; fails when the IR has anything but linear nodes on the way. */
export function regionOf(ir: IrGraph): LinearRegion {
  const blocks = mergeLinear(ir);
  const nonLinear = blocks.filter((b) => b.kind === 'node' && b.node.kind !== 'linear');
  if (nonLinear.length) throw new Error(`expected a linear IR, got ${nonLinear.map((b) => (b.kind === 'node' ? `${b.node.kind} ${b.node.opType}` : '')).join(', ')}`);
  const regions = blocks.flatMap((b) => (b.kind === 'operator' && b.region.output === ir.output ? [b.region] : []));
  if (regions.length !== 1) throw new Error(`expected one operator region producing ${ir.output}, got ${regions.length} (${blocks.length} blocks)`);
  return regions[0];
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
