import { sizeOf } from '../ir/tensor.js';
import type { RuntimeOptions } from './runtime.js';
import { Session } from './runtime.js';

/** A linear operator A: R^in → R^out with its adjoint, evaluated by onnxruntime in float32, bookkept in float64. */
export interface LinearOperator {
  readonly inDims: readonly number[];
  readonly outDims: readonly number[];
  readonly inSize: number;
  readonly outSize: number;
  apply(x: Float64Array): Promise<Float64Array>;
  adjoint(y: Float64Array): Promise<Float64Array>;
  dispose(): Promise<void>;
}

/** The forward and adjoint models of one operator: input 'x' → output 'y', and 'y' → 'x'. */
export interface OperatorModels {
  readonly forward: Uint8Array;
  readonly adjoint: Uint8Array;
  readonly inDims: readonly number[];
  readonly outDims: readonly number[];
  readonly name: string;
}

/** Creates the two onnxruntime sessions of an operator once; every later apply reuses them. */
export async function createOrtOperator(models: OperatorModels, runtime: RuntimeOptions): Promise<LinearOperator> {
  const fwd = await Session.create(models.forward, runtime, `the operator '${models.name}'`);
  const adj = await Session.create(models.adjoint, runtime, `the adjoint of '${models.name}'`);
  const inSize = sizeOf(models.inDims);
  const outSize = sizeOf(models.outDims);
  const xin = new Float32Array(inSize);
  const yin = new Float32Array(outSize);
  return {
    inDims: models.inDims,
    outDims: models.outDims,
    inSize,
    outSize,
    async apply(x) {
      xin.set(x);
      return Float64Array.from(await fwd.apply('x', xin, models.inDims, 'y'));
    },
    async adjoint(y) {
      yin.set(y);
      return Float64Array.from(await adj.apply('y', yin, models.outDims, 'x'));
    },
    async dispose() {
      await fwd.release();
      await adj.release();
    },
  };
}

/** The matrix (rows = outputs, row-major) of a small linear map given as a float64 model 'x' → 'y', column by column. */
export async function denseMatrixOf(forward64: Uint8Array, inDims: readonly number[], outDims: readonly number[], runtime: RuntimeOptions, name: string): Promise<Float64Array> {
  const s = await Session.create(forward64, runtime.device === 'cpu' ? runtime : { ...runtime, device: 'cpu' }, `the float64 form of '${name}'`);
  const cols = sizeOf(inDims), rows = sizeOf(outDims);
  const m = new Float64Array(rows * cols);
  const x = new Float64Array(cols);
  try {
    for (let j = 0; j < cols; j++) {
      x.fill(0);
      x[j] = 1;
      const y = (await s.run({ x: { dtype: 'float64', dims: inDims, data: x } }, ['y'], name)).get('y')!.data as Float64Array;
      for (let i = 0; i < rows; i++) m[i * cols + j] = y[i];
    }
  } finally {
    await s.release();
  }
  return m;
}
