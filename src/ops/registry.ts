import { activationConverters as act, discontinuous, noGlobalConstant, slopeRange } from './activations.js';
import type { Converter } from './context.js';
import { linearConverters as lin } from './linear.js';
import { poolingConverters as pool } from './pooling.js';
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

const unbounded = (why: string) => noGlobalConstant(why);
const jump = (why: string) => discontinuous(why);

/** THE table of ONNX ops lipcheck analyses; `--list-ops` and the README's operator table are generated from it. */
export const OP_REGISTRY: readonly OpRow[] = [
  row('Gemm', 'linear', 'dense operator (one constant operand), merged with neighbours', lin.gemm),
  row('MatMul', 'linear', 'dense operator (one constant operand), merged with neighbours', lin.matmul),
  row('Conv', 'linear', 'convolution (1-D to 3-D; group, stride, dilation, pads, auto_pad)', lin.conv),
  row('ConvTranspose', 'linear', 'transposed convolution', lin.convTranspose),
  row('BatchNormalization', 'linear', 'diagonal γ/√(var+ε), merged into the neighbouring operator', lin.batchNormalization),
  row('Add', 'merge', 'constant operand: identity; two branches: sum of their bounds or merged when both linear', lin.add),
  row('Sub', 'merge', 'as Add', lin.sub),
  row('Sum', 'merge', 'as Add', lin.sum),
  row('Mul', 'linear', 'by a constant: diagonal scaling; two inputs: unbounded', lin.mul),
  row('Div', 'linear', 'by a constant: diagonal scaling; by an input: unbounded', lin.div),
  row('Neg', 'linear', 'scaling by −1', lin.neg),
  row('Concat', 'merge', 'ℓ2: √(Σ L_i²), ℓ∞: max L_i; merged when all parts are linear', shp.concat),
  row('Flatten', 'shape', 'isometry', shp.reshapeLike),
  row('Reshape', 'shape', 'isometry', shp.reshapeLike),
  row('Squeeze', 'shape', 'isometry', shp.reshapeLike),
  row('Unsqueeze', 'shape', 'isometry', shp.reshapeLike),
  row('Identity', 'shape', 'isometry', shp.reshapeLike),
  row('Dropout', 'shape', 'identity at inference', shp.reshapeLike),
  row('Cast', 'shape', 'between float types: identity; to integers: discontinuous', shp.cast),
  row('Transpose', 'shape', 'isometry', shp.transpose),
  row('Pad', 'shape', 'constant mode: zero padding (norm 1)', shp.pad),
  row('Slice', 'shape', 'constant starts/ends/axes/steps: a selection (norm ≤ 1)', shp.slice),
  row('Gather', 'shape', 'constant indices: a selection (repeated indices counted)', shp.gather),
  row('MaxPool', 'pooling', 'ℓ2: √(Π⌈k/s⌉) windows covering an input; ℓ∞: 1', pool.maxPool),
  row('GlobalMaxPool', 'pooling', '1', pool.globalMaxPool),
  row('AveragePool', 'pooling', 'linear (depthwise convolution with border divisors)', pool.averagePool),
  row('GlobalAveragePool', 'pooling', 'linear (mean over space)', pool.globalAveragePool),
  row('ReduceMean', 'pooling', 'linear over constant axes', pool.reduceMean),
  row('ReduceSum', 'pooling', 'linear over constant axes', pool.reduceSum),
  row('Relu', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('LeakyRelu', 'activation', 'slope in [min(α,1), max(α,1)]', act.leakyRelu),
  row('PRelu', 'activation', 'constant slopes: [min(α,1), max(α,1)]', act.prelu),
  row('Sigmoid', 'activation', 'slope in [0, 1/4]', slopeRange(0, 0.25)),
  row('Tanh', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Softplus', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Softsign', 'activation', 'slope in [0, 1]', slopeRange(0, 1)),
  row('Elu', 'activation', 'slope in [0, max(1, α)]', act.elu),
  row('Clip', 'activation', 'slope in [0, 1]', act.clip),
  row('Sin', 'activation', 'slope in [−1, 1]', slopeRange(-1, 1)),
  row('Cos', 'activation', 'slope in [−1, 1]', slopeRange(-1, 1)),
  row('Softmax', 'nonlinear', '‖J‖ ≤ 1/2 (ℓ2 and ℓ∞)', act.softmax),
  row('Exp', 'unbounded', 'no global constant', unbounded('is exponential, whose slope grows without bound')),
  row('Log', 'unbounded', 'no global constant', unbounded('is a logarithm, whose slope is unbounded near 0')),
  row('Sqrt', 'unbounded', 'no global constant', unbounded('is a square root, whose slope is unbounded near 0')),
  row('Pow', 'unbounded', 'no global constant', unbounded('raises to a power, whose slope is not globally bounded')),
  row('Reciprocal', 'unbounded', 'no global constant', unbounded('is 1/x, whose slope is unbounded near 0')),
  row('ArgMax', 'discontinuous', 'not continuous', jump('returns an index (piecewise constant, with jumps)')),
  row('ArgMin', 'discontinuous', 'not continuous', jump('returns an index (piecewise constant, with jumps)')),
  row('Sign', 'discontinuous', 'not continuous', jump('jumps at 0')),
  row('Round', 'discontinuous', 'not continuous', jump('rounds to integers')),
  row('Floor', 'discontinuous', 'not continuous', jump('rounds down to integers')),
  row('Ceil', 'discontinuous', 'not continuous', jump('rounds up to integers')),
  row('Equal', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('Greater', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('Less', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('GreaterOrEqual', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('LessOrEqual', 'discontinuous', 'not continuous', jump('compares values (a boolean output)')),
  row('OneHot', 'discontinuous', 'not continuous', jump('one-hot encodes input-dependent indices')),
  row('Where', 'discontinuous', 'input-dependent condition: not continuous', jump('selects by an input-dependent condition')),
];

/** The registry row for an op in a model's opset, or undefined when lipcheck does not support it. */
export function findOp(opType: string, domain: string, opset: number): OpRow | undefined {
  return OP_REGISTRY.find((r) => r.opType === opType && r.domain === domain && opset >= r.opsets[0] && opset <= r.opsets[1]);
}
