/**
 * Small residual networks and an independent float64 backend for the residual and graph-CP tests: dense matrices of
 * IR regions computed here from the prims' definitions (matmul, scale, sum, reshape), a stand-in for onnxruntime as
 * issue 15's operator interface allows.
 */
import type { NormSettings } from '../../src/estimators/operator-norm.js';
import { expandFactor } from '../../src/estimators/graph-cp.js';
import type { LinearRegion } from '../../src/ir/merge.js';
import type { GramOperator, OperatorBackend } from '../../src/ir/operator.js';
import { sizeOf, toFloat64 } from '../../src/ir/tensor.js';
import type { Random } from '../../src/linalg/random.js';
import type { NodeSpec } from '../../src/onnx/writer.js';
import { encodeGraph } from '../../src/onnx/writer.js';
import { denseMul } from './dense.js';
import { f32, matmul, settings as baseSettings, tensor, type Act } from './mlp.js';

/**
 * Dense float64 matrices of IR regions, computed here from the prims' definitions (matmul, scale, sum, reshape):
 * an independent stand-in for the onnxruntime backend, as issue 15's interface allows.
 */
export function denseOf(region: LinearRegion): { m: Float64Array; rows: number; cols: number } {
  const cols = sizeOf(region.inShape), rows = sizeOf(region.outShape);
  const m = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const vals = new Map<string, Float64Array>([[region.input, Float64Array.from({ length: cols }, (_, i) => (i === j ? 1 : 0))]]);
    for (const n of region.nodes) {
      const xs = n.inputs.map((i) => vals.get(i)!);
      const p = n.prim;
      let y: Float64Array;
      if (p.op === 'matmul' && p.side === 'right' && p.weight.dims.length === 2) {
        const [k, w] = p.weight.dims, data = toFloat64(p.weight);
        y = matmul(xs[0], xs[0].length / k, k, data, w);
      } else if (p.op === 'scale') {
        // a factor broadcast against the value (numpy rules): expanded to every element
        const f = expandFactor({ dims: p.factor.dims, data: toFloat64(p.factor) }, n.outShape);
        y = xs[0].map((v, i) => v * f[i]);
      } else if (p.op === 'sum' && n.inShapes.every((s) => sizeOf(s) === sizeOf(n.outShape))) {
        y = new Float64Array(xs[0].length);
        xs.forEach((x, i) => x.forEach((v, t) => (y[t] += p.signs[i] * v)));
      } else if (p.op === 'reshape') {
        y = xs[0];
      } else {
        throw new Error(`the dense test backend has no ${p.op} prim (node ${n.name})`);
      }
      vals.set(n.output, y);
    }
    const out = vals.get(region.output)!;
    for (let i = 0; i < rows; i++) m[i * cols + j] = out[i];
  }
  return { m, rows, cols };
}

/** An OperatorBackend of dense float64 matrices; `grams` counts the Gram maps asked for. */
export function denseBackend(): OperatorBackend & { grams: string[] } {
  const grams: string[] = [];
  const mul = denseMul;
  return {
    grams,
    parallel: false,
    async operator(region) {
      const { m, rows, cols } = denseOf(region);
      return { inDims: region.inShape, outDims: region.outShape, inSize: cols, outSize: rows, apply: async (x) => mul(m, rows, cols, x, false), adjoint: async (y) => mul(m, rows, cols, y, true), dispose: async () => {} };
    },
    async gram(region): Promise<GramOperator & { wide: boolean }> {
      grams.push(region.id);
      const { m, rows, cols } = denseOf(region);
      const wide = rows < cols;
      const half = (v: Float64Array) => (wide ? mul(m, rows, cols, v, true) : mul(m, rows, cols, v, false));
      const apply = async (v: Float64Array) => (wide ? mul(m, rows, cols, mul(m, rows, cols, v, true), false) : mul(m, rows, cols, mul(m, rows, cols, v, false), true));
      return { n: wide ? rows : cols, wide, apply, applyInto: async (v, out) => out.set(await apply(v)), half: async (v) => half(v), dispose: async () => {} };
    },
    async denseMatrix(region) {
      return denseOf(region).m;
    },
    async model() {
      return null;
    },
  };
}

export const settingsWith = (backend: OperatorBackend): NormSettings => ({ ...baseSettings, backend });

export interface Mat { readonly w: Float64Array; readonly rows: number; readonly cols: number }


export const randomMat = (rows: number, cols: number, rng: Random, gain = 1.3): Mat => ({ w: f32(Array.from({ length: rows * cols }, () => (rng.normal() * gain) / Math.sqrt(cols))), rows, cols });

/** x → block(W1, W2) → σ → block(W3, W4) (identity skips, biases) as an ONNX model with input [1, n]. */
export function twoBlocks(ws: readonly Mat[], act: Act): Uint8Array {
  const nodes: NodeSpec[] = [];
  const inits: [string, ReturnType<typeof tensor>][] = [];
  ws.forEach((l, k) => inits.push([`w${k}`, tensor([l.rows, l.cols], l.w)], [`b${k}`, tensor([l.rows], Array.from({ length: l.rows }, (_, i) => 0.2 * (i - k)))]));
  const gemm = (x: string, k: number) => { nodes.push({ opType: 'Gemm', inputs: [x, `w${k}`, `b${k}`], outputs: [`h${k}`], attrs: { transB: { i: 1 } }, name: `gemm${k}` }); return `h${k}`; };
  const actNode = (x: string, name: string) => { nodes.push({ opType: act.op, inputs: [x], outputs: [name], attrs: act.attrs ?? {}, name }); return name; };
  const g1 = gemm(actNode(gemm('x', 0), 'a0'), 1);
  nodes.push({ opType: 'Add', inputs: ['x', g1], outputs: ['y1'], name: 'add1' });
  const z = actNode('y1', 'a1');
  const g2 = gemm(actNode(gemm(z, 2), 'a2'), 3);
  nodes.push({ opType: 'Add', inputs: [z, g2], outputs: ['y'], name: 'add2' });
  return encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, ws[0].cols] }], outputs: [{ name: 'y' }], nodes, initializers: inits });
}
