import type { Tensor } from './tensor.js';

/** A static tensor shape. */
export type Shape = readonly number[];

/**
 * The linear primitives a converter can produce. Each has a known forward and adjoint in ONNX (src/backend/emit.ts).
 * Affine offsets (biases, pad values, added constants) are not part of a prim: they never change a Lipschitz constant
 * (the exact enumeration reads the ones it needs from LinearNode.offset).
 */
export type LinearPrim =
  | { readonly op: 'conv'; readonly weight: Tensor; readonly group: number; readonly strides: readonly number[]; readonly pads: readonly number[]; readonly dilations: readonly number[] }
  | { readonly op: 'convTranspose'; readonly weight: Tensor; readonly group: number; readonly strides: readonly number[]; readonly pads: readonly number[]; readonly dilations: readonly number[]; readonly outputPadding: readonly number[] }
  /** y = x·W (side 'right') or W·x (side 'left'), numpy MatMul semantics. */
  | { readonly op: 'matmul'; readonly weight: Tensor; readonly side: 'right' | 'left' }
  /** y = x ⊙ factor, broadcasting. */
  | { readonly op: 'scale'; readonly factor: Tensor }
  /** Same elements, new shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, float Cast). */
  | { readonly op: 'reshape' }
  | { readonly op: 'transpose'; readonly perm: readonly number[] }
  /** Zero padding; negative entries crop. ONNX order [begin_1..begin_r, end_1..end_r]. */
  | { readonly op: 'pad'; readonly pads: readonly number[] }
  /** y = M applied along one axis (M is rows×cols, row-major): selections, strided slices, gathers. */
  | { readonly op: 'axisMatrix'; readonly axis: number; readonly matrix: Float64Array; readonly rows: number; readonly cols: number }
  /** Sum (or mean) over axes, keeping them as size 1. */
  | { readonly op: 'reduce'; readonly axes: readonly number[]; readonly mean: boolean }
  /** Broadcast to the output shape. */
  | { readonly op: 'expand' }
  /** Σ signs_i·x_i over the dynamic inputs, broadcasting. */
  | { readonly op: 'sum'; readonly signs: readonly number[] }
  /** Concatenation along `axis`; `parts` lists each ONNX input in order: a dynamic input or a block of zeros. */
  | { readonly op: 'concat'; readonly axis: number; readonly parts: readonly ({ readonly dynamic: number } | { readonly zeros: Shape })[] };

/** Fields every IR node has: the ONNX node it came from and its dynamic (input-dependent) inputs. */
export interface IrNodeBase {
  readonly name: string;
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly inShapes: readonly Shape[];
  readonly output: string;
  readonly outShape: Shape;
}

/** A linear map of its dynamic inputs. */
export interface LinearNode extends IrNodeBase {
  readonly kind: 'linear'; readonly prim: LinearPrim;
  /**
   * The constant the node adds (bias, Gemm's β·C, an Add/Sub constant), exact in float64 and flattened to the output,
   * for estimators that need the affine map itself (the exact enumeration); a string says why it is not known
   * (src/frontend/offsets.ts). Absent: the node adds nothing. Never part of a Lipschitz constant.
   */
  readonly offset?: Float64Array | string;
}
/**
 * An elementwise function whose derivative lies in [slope[0], slope[1]]. `fn` keys src/ops/elementwise.ts, which with
 * `params` and `operand` gives f and f′, so the node can be evaluated from the IR alone.
 */
export interface ActivationNode extends IrNodeBase {
  readonly kind: 'activation'; readonly fn: string; readonly slope: readonly [number, number];
  /** Scalar parameters of `fn` (ONNX attribute names: alpha, beta, gamma, min, max, lambd, ...; defaults where absent). */
  readonly params?: Readonly<Record<string, number>>;
  /** A constant broadcast against the input: PRelu's slopes, Max/Min's constant operand, a contrib Gelu's bias. */
  readonly operand?: Tensor;
}
/** A nonlinear node with known Lipschitz constants in ℓ2 and ℓ∞ (max-pool, softmax); with several inputs, w.r.t. the stacked inputs. */
export interface LipschitzNode extends IrNodeBase {
  readonly kind: 'lipschitz'; readonly fn: string; readonly l2: number; readonly linf: number; readonly note: string;
  /** MaxPool: each output's window over the spatial axes (begin pads; padding never wins), for its Jacobian. */
  readonly window?: PoolWindow;
  /**
   * Softmax (Jacobian diag(p) − ppᵀ, p the output) or, with `log`, LogSoftmax (I − 1pᵀ, p = exp(output)): the output
   * seen as [outer, len, inner], normalised along len.
   */
  readonly groups?: { readonly outer: number; readonly len: number; readonly inner: number; readonly log?: boolean };
}

/** A pooling window per spatial axis: output o reads input o·stride − begin + t·dilation for t < kernel. */
export interface PoolWindow { readonly kernel: readonly number[]; readonly strides: readonly number[]; readonly dilations: readonly number[]; readonly begin: readonly number[] }
/** A node with no global Lipschitz constant (products of input-dependent tensors, Exp, ...). */
export interface UnboundedNode extends IrNodeBase { readonly kind: 'unbounded'; readonly reason: string; readonly derived: boolean }
/** A node whose output is not continuous in the input (ArgMax, comparisons, rounding, ...). */
export interface DiscontinuousNode extends IrNodeBase { readonly kind: 'discontinuous'; readonly reason: string; readonly derived: boolean }

/** One node of the Lipschitz IR. */
export type IrNode = LinearNode | ActivationNode | LipschitzNode | UnboundedNode | DiscontinuousNode;

/** The IR of the part of a model between the analysed input and output, in topological order. */
export interface IrGraph {
  readonly input: string;
  readonly inputShape: Shape;
  readonly output: string;
  readonly outputShape: Shape;
  readonly nodes: readonly IrNode[];
  readonly warnings: readonly string[];
}
