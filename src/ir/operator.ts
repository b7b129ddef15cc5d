import type { LinearRegion } from './merge.js';
import type { LinearNode } from './types.js';
import { sizeOf, type Tensor } from './tensor.js';

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
  /**
   * Optional: Lanczos with several steps per backend run (src/backend/fused-lanczos.ts), lanczosTop's contract and
   * result; where absent, or declined (null), lanczosTop runs one product per step.
   */
  lanczos?(options: GramLanczosOptions): Promise<GramLanczosResult | null>;
  dispose(): Promise<void>;
}

/** What GramOperator.lanczos takes: lanczosTop's options and the step count the caller expects (KW), to size a run. */
export interface GramLanczosOptions {
  readonly start: Float64Array;
  readonly maxSteps: number;
  readonly stop: (theta: number, steps: number, previous: number) => boolean;
  readonly expectedSteps?: number;
}

/** What Lanczos found (lanczosTop, or a backend's fused runs): the top Ritz value θ (≤ λ_max in exact arithmetic), its vector, and the steps taken. */
export interface GramLanczosResult {
  readonly theta: number;
  readonly ritzVector: Float64Array;
  readonly steps: number;
  /** True when the Krylov space became invariant (θ is then an eigenvalue of the operator). */
  readonly invariant: boolean;
  readonly history: readonly number[];
  /** Full Gram–Schmidt passes over the basis beyond the first, per run (for benchmarks). */
  readonly extraPasses: number;
  /**
   * The float64 run's tridiagonal T_k: α_1..α_k and β_1..β_k, the last being the norm of the residual the run stopped
   * with (the polynomial bound's Π β_j, linalg/probabilistic.ts); absent where the run's θ is not T_k's (float32 runs).
   */
  readonly tridiagonal?: { readonly alpha: readonly number[]; readonly beta: readonly number[] };
}

/**
 * One node of a Jacobian graph (JacobianGraph): how the tangent of the value `output` follows from the tangents of
 * the values it reads (names of the IR's values). What depends on the point x is fed with each product
 * (JacobianPoint), so one set of sessions serves every point.
 */
export type JacobianNode =
  /** A linear region's map. */
  | { readonly op: 'region'; readonly region: LinearRegion; readonly input: string; readonly output: string }
  /** An elementwise product with a vector given at each call (an activation's slopes f′(u)). */
  | { readonly op: 'diag'; readonly input: string; readonly output: string; readonly dims: readonly number[] }
  /** out[i] = t[index[i]] over the flattened input, the indices given at each call (a max-pool's winners). */
  | { readonly op: 'select'; readonly input: string; readonly output: string; readonly inDims: readonly number[]; readonly outDims: readonly number[] }
  /**
   * A softmax's Jacobian diag(p) − ppᵀ (log: I − 1pᵀ) along each of `outer`·`inner` groups of `len` elements, the
   * probabilities p given at each call; `dims` is the value's shape.
   */
  | { readonly op: 'softmax'; readonly input: string; readonly output: string; readonly dims: readonly number[]; readonly outer: number; readonly len: number; readonly inner: number; readonly log: boolean }
  /** A linear node of several inputs outside the regions (a residual sum, a concatenation): the IR's own node. */
  | { readonly op: 'linear'; readonly node: LinearNode };

/** The value a Jacobian node writes. */
export function jacobianNodeOutput(n: JacobianNode): string {
  return n.op === 'linear' ? n.node.output : n.output;
}

/** A whole Jacobian J(x) as a graph of JacobianNodes in evaluation order, from the value `input` to the value `output`. */
export interface JacobianGraph {
  readonly input: string;
  readonly inDims: readonly number[];
  readonly output: string;
  readonly outDims: readonly number[];
  readonly nodes: readonly JacobianNode[];
}

/**
 * What a Jacobian graph depends on at one point, by node output: a diag's vector, a select's indices (flat, into its
 * input), a softmax's probabilities (for a log-softmax too: p = exp(output)). The operator reads the arrays and may keep
 * their conversion for the next product with the same arrays, so a caller must not change an array once it has passed it.
 */
export type JacobianPoint = ReadonlyMap<string, Float64Array | Int32Array>;

/**
 * J(x) of a JacobianGraph with its adjoint and Gram map, one backend run per product (float32 kernels, float64
 * bookkeeping, as LinearOperator). `inner` lists the values between input and output (every node's output but the
 * graph's output) whose tangents and cotangents a product can hand back, and where the adjoint takes injections.
 */
export interface JacobianOperator {
  readonly inSize: number;
  readonly outSize: number;
  readonly inner: readonly string[];
  /** J v; `keep`, when given, receives the tangent of every inner value. */
  apply(v: Float64Array, point: JacobianPoint, keep?: Map<string, Float64Array>): Promise<Float64Array>;
  /**
   * Jᵀ w plus Σ_u J_uᵀ inject[u] over inner values u (J_u the Jacobian from the input to u): the cotangent of each
   * inner value includes its injection; `keep`, when given, receives the cotangent of every inner value.
   */
  adjoint(w: Float64Array, point: JacobianPoint, inject?: ReadonlyMap<string, Float64Array>, keep?: Map<string, Float64Array>): Promise<Float64Array>;
  /** Jᵀ(J v). */
  gram(v: Float64Array, point: JacobianPoint): Promise<Float64Array>;
  dispose(): Promise<void>;
}

/** Evaluates the whole original model (witness pairs, intermediate activations): named feeds in, named outputs out. */
export interface ModelEvaluator {
  run(feeds: Record<string, Tensor>, outputs: readonly string[]): Promise<Map<string, Tensor>>;
  release(): Promise<void>;
}

/** What {@link OperatorBackend.model} evaluates and how. */
export interface ModelOptions {
  /** Intermediate values to return as outputs too (float32 only). */
  readonly extraOutputs?: readonly string[];
  /** float32 (default): the model as it is; float64: every weight widened exactly, null where the model cannot be. */
  readonly precision?: 'float32' | 'float64';
  /** What the evaluation is for, in error messages ("the model (pattern search)"). */
  readonly what?: string;
  /** Receives why the model could not be evaluated in float64 (a full sentence's clause) when `model` returns null. */
  readonly onDecline?: (reason: string) => void;
}

/**
 * The one dense limit: the largest region (inputs, inputs × outputs) whose matrix any estimator forms (denseMatrix),
 * for exact certificates, dense SVDs and LMIs.
 */
export const DENSE_LIMIT = { cols: 4096, entries: 4e6 } as const;

/** Why a region's float64 matrix cannot be formed (a convolution: no float64 Conv kernel; beyond DENSE_LIMIT), or null. */
export function denseObstacle(region: LinearRegion): string | null {
  if (region.nodes.some((n) => n.prim.op === 'conv' || n.prim.op === 'convTranspose')) return `operator ${region.id} contains a convolution (onnxruntime has no float64 Conv to form its matrix)`;
  const cols = sizeOf(region.inShape), rows = sizeOf(region.outShape);
  if (cols > DENSE_LIMIT.cols || rows * cols > DENSE_LIMIT.entries) return `operator ${region.id} is ${rows}×${cols}, beyond the ${DENSE_LIMIT.cols}-column, ${DENSE_LIMIT.entries}-entry limit for a dense matrix`;
  return null;
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
   * Optional: the float64 Gram matrix A·Aᵀ of a row-major m×n float64 matrix (m ≤ n) by a faster kernel, under the
   * contract of GramKernel in src/linalg/dense.ts (each entry a float64 dot product in some order); null where the
   * backend leaves it to JavaScript. Used by the dense certificates (pointwise convolutions).
   */
  readonly denseGram?: (a: Float64Array, m: number, n: number, handOver?: boolean) => Promise<Float64Array | null>;
  /**
   * The original model, evaluated in float32 (or float64 where the model can be widened: null otherwise), with the
   * named intermediate values also available as outputs.
   */
  model(opts?: ModelOptions): Promise<ModelEvaluator | null>;
  /**
   * Optional: a whole Jacobian graph as one operator (JacobianOperator), one backend run per product instead of one
   * per region; where absent, callers walk the graph with each region's operator.
   */
  jacobian?(graph: JacobianGraph): Promise<JacobianOperator>;
  /** Whether work may be spread over more than one thread (false under --threads 1). */
  readonly parallel: boolean;
  /**
   * How many operators an estimator may measure at once (default 1): the backend runs their products off the main
   * thread, so one operator's bookkeeping overlaps another's products. Results must not depend on it.
   */
  readonly concurrency?: number;
  /**
   * The unit roundoff its float32 products promise, which every float32 rounding margin (η, the chain margins) scales
   * with: 2⁻²⁴ where absent (IEEE round-to-nearest: the CPU, CUDA with TF32 off); 2⁻²³ on WebGPU, whose WGSL arithmetic
   * may round +, −, × either way (docs/algorithms-fused-lanczos.md §7).
   */
  readonly float32Unit?: number;
}
