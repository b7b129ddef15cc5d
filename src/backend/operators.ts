import type { GramOperator, LinearOperator } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
export type { GramOperator, LinearOperator } from '../ir/operator.js';
import type { RuntimeOptions } from './runtime.js';
import { Session } from './runtime.js';

/** The forward and adjoint models of one operator: input 'x' → output 'y', and 'y' → 'x'. */
export interface OperatorModels {
  readonly forward: Uint8Array;
  readonly adjoint: Uint8Array;
  /** Weights each model takes as inputs, fed with every run. */
  readonly forwardFeeds?: Readonly<Record<string, Tensor>>;
  readonly adjointFeeds?: Readonly<Record<string, Tensor>>;
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
      return new Float64Array(await fwd.apply('x', xin, models.inDims, 'y', models.forwardFeeds));
    },
    async adjoint(y) {
      yin.set(y);
      return new Float64Array(await adj.apply('y', yin, models.outDims, 'x', models.adjointFeeds));
    },
    async dispose() {
      await fwd.release();
      await adj.release();
    },
  };
}

/**
 * One session for a chained model 'v' → 'u' = B v → 'z' = Bᵀu (see chainGraphs): one run per Lanczos step instead of
 * two, and the intermediate never leaves onnxruntime. The same float32 kernels run in the same order as
 * apply-then-adjoint, so the rounding analysis of the two-session form holds unchanged.
 */
export async function createOrtGram(model: Uint8Array, dims: readonly number[], runtime: RuntimeOptions, name: string, feeds?: Readonly<Record<string, Tensor>>): Promise<GramOperator> {
  const s = await Session.create(model, runtime, `the operator '${name}'`);
  const n = sizeOf(dims);
  const vin = new Float32Array(n);
  const run = (v: Float64Array, output: 'u' | 'z') => { vin.set(v); return s.apply('v', vin, dims, output, feeds); };
  return {
    n,
    async applyInto(v, out) {
      out.set(await run(v, 'z'));
    },
    async apply(v) {
      return new Float64Array(await run(v, 'z'));
    },
    async half(v) {
      return new Float64Array(await run(v, 'u'));
    },
    async dispose() {
      await s.release();
    },
  };
}

/** One half of a Gram map run as its own session: model bytes made on demand, its input and output names and shapes. */
export interface HalfModel {
  readonly model: () => Uint8Array;
  /** Weights the model takes as inputs, fed with every run. */
  readonly feeds?: Readonly<Record<string, Tensor>>;
  readonly input: string;
  readonly output: string;
  readonly dims: readonly number[];
}

/**
 * The GramOperator of two sessions run in turn (first, then second), for operators whose chained model would hold
 * too many weight bytes at once: each model is encoded only while its session is created.
 */
export async function createOrtGramPair(first: HalfModel, second: HalfModel, runtime: RuntimeOptions, name: string): Promise<GramOperator> {
  const a = await Session.create(first.model(), runtime, `the operator '${name}'`);
  const b = await Session.create(second.model(), runtime, `the operator '${name}'`).catch(async (e) => { await a.release(); throw e; });
  const n = sizeOf(first.dims);
  const vin = new Float32Array(n);
  const half = (v: Float64Array) => { vin.set(v); return a.apply(first.input, vin, first.dims, first.output, first.feeds); };
  const full = async (v: Float64Array) => b.apply(second.input, await half(v), second.dims, second.output, second.feeds);
  return {
    n,
    async applyInto(v, out) {
      out.set(await full(v));
    },
    async apply(v) {
      return new Float64Array(await full(v));
    },
    async half(v) {
      return new Float64Array(await half(v));
    },
    async dispose() {
      await a.release();
      await b.release();
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
