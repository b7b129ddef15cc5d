import type { LinearRegion } from './merge.js';
import type { Tensor } from './tensor.js';

/**
 * The operator interfaces estimators are handed (issue 15): pure types, implemented by the backend (src/backend/,
 * onnxruntime) and by fakes in tests. An estimator never sees ONNX bytes or onnxruntime sessions.
 */

/** A linear operator A: R^in → R^out with its adjoint, evaluated by the backend (float32 kernels), bookkept in float64. */
export interface LinearOperator {
  readonly inDims: readonly number[];
  readonly outDims: readonly number[];
  readonly inSize: number;
  readonly outSize: number;
  apply(x: Float64Array): Promise<Float64Array>;
  adjoint(y: Float64Array): Promise<Float64Array>;
  dispose(): Promise<void>;
}

/** A symmetric map v ↦ Bᵀ(B v) (one backend run per product where it can), with the first half B v on request. */
export interface GramOperator {
  readonly n: number;
  /** Bᵀ(B v) into `out` (length n): float32 kernels, the float32 results widened exactly. */
  applyInto(v: Float64Array, out: Float64Array): Promise<void>;
  /** Bᵀ(B v) in a new array. */
  apply(v: Float64Array): Promise<Float64Array>;
  /** B v alone, in a new array. */
  half(v: Float64Array): Promise<Float64Array>;
  dispose(): Promise<void>;
}

/** Evaluates the whole original model (witness pairs, intermediate activations): named feeds in, named outputs out. */
export interface ModelEvaluator {
  run(feeds: Record<string, Tensor>, outputs: readonly string[]): Promise<Map<string, Tensor>>;
  release(): Promise<void>;
}

/**
 * What the estimators get from the backend: operators of the IR's linear regions and evaluations of the model.
 * Implemented by src/backend/ (onnxruntime: one place that emits graphs and opens sessions).
 */
export interface OperatorBackend {
  /** A region's forward and adjoint (float32 kernels). */
  operator(region: LinearRegion): Promise<LinearOperator>;
  /**
   * The Gram map of a region on its smaller side: AᵀA on R^in (wide = false) or AAᵀ on R^out (wide = true, when
   * out < in); `half` is then A v or Aᵀ v.
   */
  gram(region: LinearRegion): Promise<GramOperator & { readonly wide: boolean }>;
  /** The region's matrix (rows = outputs, row-major) in float64, or null where it exceeds the backend's dense limit. */
  denseMatrix(region: LinearRegion): Promise<Float64Array | null>;
  /**
   * The original model, evaluated in float32 (or float64 where the model can be widened: null otherwise), with the
   * named intermediate values also available as outputs.
   */
  model(opts?: { readonly extraOutputs?: readonly string[]; readonly precision?: 'float32' | 'float64' }): Promise<ModelEvaluator | null>;
  /** Whether work may be spread over more than one thread (false under --threads 1). */
  readonly parallel: boolean;
}
