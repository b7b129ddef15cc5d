import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { decodeModel } from '../../src/onnx/read-model.js';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { toFloat64 } from '../../src/ir/tensor.js';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
export const SHARED = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
export const hasShared = existsSync(SHARED);

/** σ_max of a row-major matrix, exactly in float64 (ml-matrix SVD): the independent answer tests compare with. */
export function sigmaMax(w: ArrayLike<number>, rows: number, cols: number): number {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, w[i * cols + j]);
  return new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal[0];
}

/** An initializer of a fixture as float64, with its dims. */
export function weight(file: string, name: string): { data: Float64Array; dims: readonly number[] } {
  const m = decodeModel(readFileSync(FIXTURES + file), file);
  const t = m.initializers.get(name)!;
  return { data: toFloat64(t), dims: t.dims };
}

/** The dense matrix (rows = outputs) of a 2-D zero-padded convolution, built directly from its definition. */
export function convMatrix(w: Float64Array, dims: readonly number[], h: number, wd: number, pads: number[], stride: number): { m: Float64Array; rows: number; cols: number } {
  const [co, ci, kh, kw] = dims;
  const oh = Math.floor((h + pads[0] + pads[2] - kh) / stride) + 1;
  const ow = Math.floor((wd + pads[1] + pads[3] - kw) / stride) + 1;
  const rows = co * oh * ow, cols = ci * h * wd;
  const m = new Float64Array(rows * cols);
  for (let o = 0; o < co; o++) for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const r = (o * oh + y) * ow + x;
    for (let c = 0; c < ci; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const iy = y * stride - pads[0] + i, ix = x * stride - pads[1] + j;
      if (iy < 0 || ix < 0 || iy >= h || ix >= wd) continue;
      m[r * cols + (c * h + iy) * wd + ix] += w[((o * ci + c) * kh + i) * kw + j];
    }
  }
  return { m, rows, cols };
}

/** m·v (m rows×cols, row-major) or mᵀ·v, in float64: the products of the tests' fake backends. */
export function denseMul(m: ArrayLike<number>, rows: number, cols: number, v: ArrayLike<number>, transpose: boolean): Float64Array {
  const out = new Float64Array(transpose ? cols : rows);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    if (transpose) out[j] += m[i * cols + j] * v[i];
    else out[i] += m[i * cols + j] * v[j];
  }
  return out;
}
