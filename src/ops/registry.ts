import { activationConverters as act, discontinuous, noGlobalConstant, slopeRange, SLOPES } from './activations.js';
import type { Converter } from './context.js';
import { contribConverters as ms, MS_DOMAIN } from './contrib.js';
import { einsumConverters as ein } from './einsum.js';
import { gatherConverters as gat } from './gather.js';
import { linearConverters as lin } from './linear.js';
import { normalizationConverters as norm } from './normalization.js';
import { PATTERN_DOMAIN, PATTERN_ROWS, patternConverter } from './patterns.js';
import { poolingConverters as pool } from './pooling.js';
import { resizeConverters as rsz } from './resize.js';
import { shapeConverters as shp } from './shape.js';

/** How lipcheck treats an op's output: the column users see in `--list-ops`. */
export type OpFamily = 'linear' | 'shape' | 'activation' | 'pooling' | 'merge' | 'nonlinear' | 'unbounded' | 'discontinuous';

/** One row of THE support table. */
export interface OpRow {
  readonly opType: string;
  readonly domain: string;
  /** Lowest and highest default-domain opset this row accepts (inclusive). */
  readonly opsets: readonly [number, number];
  readonly family: OpFamily;
  /** What lipcheck uses for this op's constant, in a few words. */
  readonly treatment: string;
  readonly convert: Converter;
}

const ALL: readonly [number, number] = [1, 23];

function row(opType: string, family: OpFamily, treatment: string, convert: Converter, opsets = ALL): OpRow {
  return { opType, domain: '', opsets, family, treatment, convert };
}

/** A row of onnxruntime's contrib domain; its opsets are those of that domain (version 1 throughout). */
function msRow(opType: string, family: OpFamily, treatment: string, convert: Converter): OpRow {
  return { opType, domain: MS_DOMAIN, opsets: ALL, family, treatment: `${MS_DOMAIN} contrib op: ${treatment}`, convert };
}

const unbounded = (why: string) => noGlobalConstant(why);
const jump = (why: string) => discontinuous(why);

/** THE table of ONNX ops lipcheck analyses; `--list-ops` and the README's operator table are generated from it. */
export const OP_REGISTRY: readonly OpRow[] = [
  row('Gemm', 'linear', 'dense operator (one constant operand; alpha, beta, transA, transB; C may be an input), merged with neighbours', lin.gemm),
  row('MatMul', 'linear', 'dense operator (one constant operand), merged with neighbours', lin.matmul),
  row('Conv', 'linear', 'convolution (1-D to 3-D; group, stride, dilation, pads, auto_pad)', lin.conv),
  row('ConvTranspose', 'linear', 'transposed convolution (group, stride, dilation, pads, output_padding, output_shape)', lin.convTranspose),
  row('BatchNormalization', 'linear', 'diagonal γ/√(var+ε), merged into the neighbouring operator', lin.batchNormalization),
  row('Add', 'merge', 'constant operand: identity; two branches: sum of their bounds or merged when both linear', lin.add),
  row('Sub', 'merge', 'as Add', lin.sub),
  row('Sum', 'merge', 'as Add', lin.sum),
  row('Mean', 'merge', 'sum of the branches scaled by 1/k', lin.mean),
  row('Mul', 'linear', 'by a constant: diagonal scaling; two inputs: unbounded', lin.mul),
  row('Div', 'linear', 'by a constant: diagonal scaling; by an input: unbounded', lin.div),
  row('Neg', 'linear', 'scaling by −1', lin.neg),
  row('Einsum', 'linear', 'one input-dependent operand, the others constant: diagonals, sums and transposes of it, then a batched dense operator with the folded constants (ellipsis broadcast); several input-dependent operands: unbounded', ein.einsum, [12, 23]),
  row('CumSum', 'linear', 'constant axis: a triangular 0/1 matrix along it (exclusive, reverse)', lin.cumSum),
  row('Concat', 'merge', 'ℓ2: √(Σ L_i²), ℓ∞: max L_i; merged when all parts are linear', shp.concat),
  row('Flatten', 'shape', 'isometry', shp.reshapeLike),
  row('Reshape', 'shape', 'isometry (shape as attribute before opset 5, as constant input after)', shp.reshapeLike),
  row('Squeeze', 'shape', 'isometry (axes as attribute before opset 13, as input after)', shp.reshapeLike),
  row('Unsqueeze', 'shape', 'isometry', shp.reshapeLike),
  row('Identity', 'shape', 'isometry', shp.reshapeLike),
  row('Dropout', 'shape', 'identity at inference', shp.reshapeLike),
  row('Cast', 'shape', 'between float types: identity; to integers: discontinuous', shp.cast),
  row('Transpose', 'shape', 'isometry', shp.transpose),
  row('DepthToSpace', 'shape', 'a permutation (DCR and CRD): isometry', shp.depthToSpace),
  row('SpaceToDepth', 'shape', 'a permutation: isometry', shp.spaceToDepth),
  row('Pad', 'shape', 'constant mode: zero padding (norm 1); reflect, edge, wrap: a 0/1 matrix per padded axis (pads as attribute before opset 11)', shp.pad),
  row('Slice', 'shape', 'constant starts/ends/axes/steps: a selection (norm ≤ 1)', shp.slice),
  row('Gather', 'shape', 'constant indices: a selection (repeated indices counted)', shp.gather),
  row('GatherElements', 'shape', 'constant indices: a selection per position along axis (repeated indices counted); input-dependent indices: discontinuous', gat.gatherElements, [11, 23]),
  row('GatherND', 'shape', 'constant indices: a selection of slices (batch_dims; repeated tuples counted); input-dependent indices: discontinuous', gat.gatherND, [11, 23]),
  row('Split', 'shape', 'one crop per output (norm ≤ 1)', shp.split),
  row('Expand', 'shape', 'broadcast: √(out/in) in ℓ2, 1 in ℓ∞', shp.expand),
  row('Tile', 'shape', 'constant repeats: stacked identities per axis (√Π repeats in ℓ2)', shp.tile),
  row('Where', 'linear', 'constant condition: a masked select of the branches; input-dependent condition: discontinuous', shp.where),
  row('Resize', 'linear', 'constant scales/sizes: one resampling matrix per axis (nearest, linear, cubic; every coordinate_transformation_mode)', rsz.resize, [10, 23]),
  row('Upsample', 'linear', 'constant scales: one resampling matrix per axis (nearest, linear)', rsz.upsample, [7, 9]),
  row('MaxPool', 'pooling', 'ℓ2: √(Π min(k, ⌈((k−1)d+1)/s⌉)) windows covering an input (dilation, ceil_mode); ℓ∞: 1', pool.maxPool),
  row('GlobalMaxPool', 'pooling', '1', pool.globalMaxPool),
  row('AveragePool', 'pooling', 'linear (depthwise convolution with border divisors; count_include_pad, ceil_mode)', pool.averagePool),
  row('GlobalAveragePool', 'pooling', 'linear (mean over space)', pool.globalAveragePool),
  row('LpPool', 'pooling', 'ℓ2: √cover·K^max(0, 1/p−1/2) for K taps; ℓ∞: K^(1/p) (p ≥ 1)', pool.lpPool),
  row('GlobalLpPool', 'pooling', 'ℓ2: K^max(0, 1/p−1/2); ℓ∞: K^(1/p) over the K positions', pool.globalLpPool),
  row('ReduceMean', 'pooling', 'linear over constant axes', pool.reduceMean),
  row('ReduceSum', 'pooling', 'linear over constant axes', pool.reduceSum),
  row('ReduceMax', 'pooling', '1 (ℓ2 and ℓ∞)', pool.reduceMax),
  row('ReduceMin', 'pooling', '1 (ℓ2 and ℓ∞)', pool.reduceMin),
  row('ReduceL2', 'pooling', 'ℓ2: 1; ℓ∞: √k over groups of k', pool.reduceL2),
  row('ReduceL1', 'pooling', 'ℓ2: √k; ℓ∞: k over groups of k', pool.reduceL1),
  row('ReduceLogSumExp', 'pooling', '1 (its gradient is a probability vector)', pool.reduceLogSumExp),
  row('TopK', 'pooling', 'values: 1 (sorting is 1-Lipschitz); indices: discontinuous', pool.topK),
  row('Relu', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('LeakyRelu', 'activation', 'slope in [min(α,1), max(α,1)]', act.leakyRelu),
  row('PRelu', 'activation', 'constant slopes: [min(α,1), max(α,1)]', act.prelu),
  row('Sigmoid', 'activation', 'slope in [0, 1/4]', slopeRange(0, 0.25)),
  row('HardSigmoid', 'activation', 'slope in [min(0,α), max(0,α)]', act.hardSigmoid),
  row('Tanh', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Softplus', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Softsign', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Elu', 'activation', 'slope in [min(0,α), max(1,α)]', act.elu),
  row('Selu', 'activation', 'slope in [0, γ·max(1, α)] (general signs: hull of 0, γ, γα)', act.selu),
  row('Celu', 'activation', 'slope in [0, 1]', act.celu),
  row('Clip', 'activation', 'slope in [0, 1] (min/max as attributes before opset 11, as inputs after; input-dependent bounds: 1 in the stacked inputs)', act.clip),
  row('Abs', 'activation', 'slope in [−1, 1]', slopeRange(-1, 1)),
  row('Shrink', 'activation', 'bias = lambd: slope in [0, 1]; otherwise discontinuous', act.shrink),
  row('ThresholdedRelu', 'activation', 'alpha = 0: slope in [0, 1]; otherwise discontinuous', act.thresholdedRelu),
  row('HardSwish', 'activation', `slope in [${SLOPES.hardSwish.join(', ')}]`, slopeRange(...SLOPES.hardSwish)),
  row('Gelu', 'activation', `slope in [${SLOPES.geluErf.join(', ')}] (tanh form: [${SLOPES.geluTanh.join(', ')}])`, act.gelu, [20, 23]),
  row('Mish', 'activation', `slope in [${SLOPES.mish.join(', ')}]`, slopeRange(...SLOPES.mish), [18, 23]),
  row('Erf', 'activation', 'slope in [0, 2/√π]', slopeRange(...SLOPES.erf)),
  row('Sin', 'activation', 'slope in [−1, 1]', slopeRange(-1, 1)),
  row('Cos', 'activation', 'slope in [−1, 1]', slopeRange(-1, 1)),
  row('Atan', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Asinh', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  msRow('Gelu', 'activation', `erf form, slope in [${SLOPES.geluErf.join(', ')}]`, ms.gelu),
  msRow('BiasGelu', 'activation', `Gelu(A + B), erf form: slope in [${SLOPES.geluErf.join(', ')}] (input-dependent B summed first)`, ms.biasGelu),
  msRow('FastGelu', 'activation', `tanh form (optional bias): slope in [${SLOPES.geluTanh.join(', ')}]`, ms.fastGelu),
  msRow('QuickGelu', 'activation', `x·σ(αx): SiLU′(αx), slope in [${SLOPES.silu.join(', ')}] for α ≠ 0 (α = 0: 1/2)`, ms.quickGelu),
  ...PATTERN_ROWS.map((p) => ({ opType: p.opType, domain: PATTERN_DOMAIN, opsets: ALL, family: 'activation' as const, treatment: `matched pattern: slope in [${p.slope.join(', ')}]${p.note ? ` ${p.note}` : ''}`, convert: patternConverter })),
  row('Max', 'nonlinear', 'one input-dependent operand: slope in [0, 1]; several: 1 in the stacked inputs', act.max),
  row('Min', 'nonlinear', 'as Max', act.min),
  row('Softmax', 'nonlinear', '‖J‖ ≤ 1/2 (ℓ2 and ℓ∞)', act.softmax),
  row('LogSoftmax', 'nonlinear', 'ℓ2: √n over n classes; ℓ∞: 2', act.logSoftmax),
  row('LRN', 'nonlinear', 'derived bound ≈ 1.11·bias^−β (ℓ2), ≈ 1.01·bias^−β (ℓ∞) for size 5, β = 0.75', norm.lrn),
  row('InstanceNormalization', 'nonlinear', 'max|γ|/√ε: valid but huge, with a warning', norm.instanceNormalization),
  row('LayerNormalization', 'nonlinear', 'max|γ|/√ε: valid but huge, with a warning', norm.layerNormalization, [17, 23]),
  row('GroupNormalization', 'nonlinear', 'max|γ|/√ε: valid but huge, with a warning', norm.groupNormalization, [18, 23]),
  row('Exp', 'unbounded', 'no global constant', unbounded('is exponential, whose slope grows without bound')),
  row('Log', 'unbounded', 'no global constant', unbounded('is a logarithm, whose slope is unbounded near 0')),
  row('Sqrt', 'unbounded', 'no global constant', unbounded('is a square root, whose slope is unbounded near 0')),
  row('Pow', 'unbounded', 'no global constant', unbounded('raises to a power, whose slope is not globally bounded')),
  row('Reciprocal', 'unbounded', 'no global constant', unbounded('is 1/x, whose slope is unbounded near 0')),
  row('Tan', 'unbounded', 'no global constant', unbounded('is a tangent, whose slope is unbounded near its poles')),
  row('Sinh', 'unbounded', 'no global constant', unbounded('is a hyperbolic sine, whose slope grows without bound')),
  row('Cosh', 'unbounded', 'no global constant', unbounded('is a hyperbolic cosine, whose slope grows without bound')),
  row('Asin', 'unbounded', 'no global constant', unbounded('is an arcsine, whose slope is unbounded near ±1')),
  row('Acos', 'unbounded', 'no global constant', unbounded('is an arccosine, whose slope is unbounded near ±1')),
  row('Acosh', 'unbounded', 'no global constant', unbounded('is an inverse hyperbolic cosine, whose slope is unbounded near 1')),
  row('Atanh', 'unbounded', 'no global constant', unbounded('is an inverse hyperbolic tangent, whose slope is unbounded near ±1')),
  row('ReduceSumSquare', 'unbounded', 'no global constant', unbounded('sums squares, whose slope grows without bound')),
  row('ReduceProd', 'unbounded', 'no global constant', unbounded('multiplies input-dependent elements together')),
  row('ReduceLogSum', 'unbounded', 'no global constant', unbounded('takes a logarithm, whose slope is unbounded near 0')),
  row('LpNormalization', 'unbounded', 'no global constant', unbounded('divides by the input\'s norm, whose slope is unbounded near 0')),
  row('MeanVarianceNormalization', 'unbounded', 'no global constant', unbounded('divides by the standard deviation without an ε, unbounded for nearly constant inputs')),
  row('ArgMax', 'discontinuous', 'not continuous', jump('returns an index (piecewise constant, with jumps)')),
  row('ArgMin', 'discontinuous', 'not continuous', jump('returns an index (piecewise constant, with jumps)')),
  row('Hardmax', 'discontinuous', 'not continuous', jump('one-hot encodes the largest element (piecewise constant, with jumps)')),
  row('Sign', 'discontinuous', 'not continuous', jump('jumps at 0')),
  row('Round', 'discontinuous', 'not continuous', jump('rounds to integers')),
  row('Floor', 'discontinuous', 'not continuous', jump('rounds down to integers')),
  row('Ceil', 'discontinuous', 'not continuous', jump('rounds up to integers')),
  row('Mod', 'discontinuous', 'not continuous', jump('wraps around at multiples of its divisor')),
  row('Equal', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('Greater', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('Less', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('GreaterOrEqual', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('LessOrEqual', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('IsNaN', 'discontinuous', 'not continuous', jump('tests for NaN (a boolean output)')),
  row('IsInf', 'discontinuous', 'not continuous', jump('tests for infinities (a boolean output)')),
  row('OneHot', 'discontinuous', 'not continuous', jump('one-hot encodes input-dependent indices')),
  row('QuantizeLinear', 'discontinuous', 'not continuous', jump('rounds its input to integers (quantisation); analyse the float model instead')),
  row('DequantizeLinear', 'discontinuous', 'constant input: folded; input-dependent: discontinuous', jump('reads a quantised (integer) tensor computed from the input')),
  row('QLinearConv', 'discontinuous', 'constant input: folded; input-dependent: discontinuous', jump('computes on quantised (integer) tensors; analyse the float model instead')),
  row('QLinearMatMul', 'discontinuous', 'constant input: folded; input-dependent: discontinuous', jump('computes on quantised (integer) tensors; analyse the float model instead')),
  row('ConvInteger', 'discontinuous', 'not continuous', jump('computes on quantised (integer) tensors; analyse the float model instead')),
  row('MatMulInteger', 'discontinuous', 'not continuous', jump('computes on quantised (integer) tensors; analyse the float model instead')),
];

/** The registry row for an op in a model's opset, or undefined when lipcheck does not support it. */
export function findOp(opType: string, domain: string, opset: number): OpRow | undefined {
  return OP_REGISTRY.find((r) => r.opType === opType && r.domain === domain && opset >= r.opsets[0] && opset <= r.opsets[1]);
}
