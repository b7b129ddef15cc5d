/**
 * Data-driven per-op cases (STYLE.md: adding an op = one converter, one registry row, one test case). Each linear case
 * compares the converted region's matrix with the op's own semantics — the node run in onnxruntime on basis vectors,
 * minus its value at 0 — checks the emitted adjoint against the transpose, and checks the certified region bounds
 * against the exact norms of that matrix. Activation cases check that the slope range contains every numerical
 * derivative on a grid (and is reached where it should be tight); Lipschitz cases check difference quotients.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { regionBound } from '../../src/estimators/region-bounds.js';
import { mergeLinear } from '../../src/ir/merge.js';
import { Random } from '../../src/linalg/random.js';
import { decodeModel } from '../../src/onnx/read-model.js';
import { lrnLipschitz } from '../../src/ops/normalization.js';
import { SLOPES } from '../../src/ops/activations.js';
import { MS_DOMAIN } from '../../src/ops/contrib.js';
import { fusePatterns, PATTERN_DOMAIN } from '../../src/ops/patterns.js';
import { OP_REGISTRY } from '../../src/ops/registry.js';
import { sigmaMax } from '../helpers/dense.js';
import { caseIr, caseModel, evaluate, ints, maxAbs, maxAbsDiff, modelMatrix, regionMatrices, regionOf, tensor, type Case } from './harness.js';

const t = tensor;
const scalar = (v: number) => tensor([], [v]);
const bools = (dims: number[], values: number[]) => ({ dtype: 'bool' as const, dims, data: Uint8Array.from(values) });
const einsum = (equation: string) => ({ equation: { s: equation } });

/** Linear (and piecewise-linear-but-linear) ops: the converted matrix must equal the op's. */
const LINEAR: Case[] = [
  { name: 'Conv 3-D with pads and strides', op: 'Conv', shape: [1, 2, 4, 4, 3], inputs: ['x', t([3, 2, 2, 2, 2])], attrs: { pads: { ints: [1, 0, 1, 0, 1, 0] }, strides: { ints: [2, 1, 1] } } },
  { name: 'Conv 1-D grouped, dilated', op: 'Conv', shape: [1, 4, 9], inputs: ['x', t([4, 2, 3]), t([4])], attrs: { group: { i: 2 }, dilations: { ints: [2] }, pads: { ints: [2, 1] } } },
  { name: 'Conv 2-D auto_pad SAME_UPPER stride 2', op: 'Conv', shape: [1, 2, 5, 5], inputs: ['x', t([2, 2, 3, 3])], attrs: { auto_pad: { s: 'SAME_UPPER' }, strides: { ints: [2, 2] } } },
  { name: 'ConvTranspose with groups and output_padding', op: 'ConvTranspose', shape: [1, 4, 3, 3], inputs: ['x', t([4, 1, 3, 3])], attrs: { group: { i: 2 }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] }, output_padding: { ints: [1, 0] } } },
  { name: 'ConvTranspose with output_shape (odd and even total padding)', op: 'ConvTranspose', shape: [1, 2, 3, 3], inputs: ['x', t([2, 3, 2, 2])], attrs: { strides: { ints: [2, 2] }, output_shape: { ints: [5, 4] } } },
  { name: 'ConvTranspose SAME_UPPER', op: 'ConvTranspose', shape: [1, 1, 3, 4], inputs: ['x', t([1, 2, 3, 2])], attrs: { strides: { ints: [2, 1] }, auto_pad: { s: 'SAME_UPPER' } } },
  { name: 'ConvTranspose SAME_LOWER dilated', op: 'ConvTranspose', shape: [1, 1, 3, 3], inputs: ['x', t([1, 1, 3, 2])], attrs: { strides: { ints: [2, 2] }, dilations: { ints: [1, 2] }, auto_pad: { s: 'SAME_LOWER' } } },
  { name: 'Gemm transB alpha', op: 'Gemm', shape: [2, 5], inputs: ['x', t([4, 5]), t([4])], attrs: { transB: { i: 1 }, alpha: { f: 0.5 } } },
  { name: 'Gemm transB, float32 weight wider than one 64×64 transpose tile', op: 'Gemm', shape: [1, 70], inputs: ['x', t([130, 70])], attrs: { transB: { i: 1 } } },
  { name: 'Gemm input as B, transA transB', op: 'Gemm', shape: [3, 4], inputs: [t([4, 2]), 'x'], attrs: { transA: { i: 1 }, transB: { i: 1 }, alpha: { f: 2 } } },
  { name: 'Gemm transA on the input, beta on an input-dependent C', op: 'Gemm', shape: [3, 2], inputs: ['x', t([3, 4]), 'h'], attrs: { transA: { i: 1 }, beta: { f: 0.3 } }, before: [{ op: 'MatMul', inputs: ['x', t([2, 4])], output: 'm' }, { op: 'MatMul', inputs: [t([2, 3]), 'm'], output: 'h' }] },
  { name: 'MatMul constant on the right, batched input', op: 'MatMul', shape: [2, 3, 4], inputs: ['x', t([4, 5])] },
  { name: 'MatMul constant on the left, batched constant', op: 'MatMul', shape: [3, 2], inputs: [t([2, 4, 3]), 'x'] },
  { name: 'MatMul with a vector', op: 'MatMul', shape: [2, 4], inputs: ['x', t([4])] },
  { name: 'Pad constant (opset 11, input pads, value)', op: 'Pad', opset: 11, shape: [1, 2, 3, 3], inputs: ['x', ints([0, 0, 1, 2, 0, 0, 2, 0]), scalar(0.7)] },
  { name: 'Pad constant with negative pads', op: 'Pad', shape: [1, 2, 4, 4], inputs: ['x', ints([0, 0, -1, 2, 0, 0, 1, -2])] },
  { name: 'Pad attribute form (opset 2)', op: 'Pad', opset: 2, shape: [2, 3], attrs: { pads: { ints: [1, 0, 0, 2] }, value: { f: 1.5 } } },
  { name: 'Pad reflect', op: 'Pad', shape: [1, 2, 4, 5], inputs: ['x', ints([0, 0, 2, 1, 0, 0, 3, 4])], attrs: { mode: { s: 'reflect' } } },
  { name: 'Pad edge', op: 'Pad', shape: [1, 2, 3, 4], inputs: ['x', ints([0, 0, 2, 1, 0, 0, 3, 5])], attrs: { mode: { s: 'edge' } } },
  { name: 'Pad edge (opset 10 attribute)', op: 'Pad', opset: 10, shape: [2, 3], attrs: { mode: { s: 'edge' }, pads: { ints: [1, 2, 0, 1] } } },
  { name: 'Pad wrap (opset 19)', op: 'Pad', opset: 19, shape: [1, 1, 3, 4], inputs: ['x', ints([0, 0, 2, 1, 0, 0, 1, 5])], attrs: { mode: { s: 'wrap' } } },
  { name: 'Pad with axes (opset 18)', op: 'Pad', opset: 18, shape: [1, 2, 3, 4], inputs: ['x', ints([1, 2, 2, 1]), null, ints([-1, 2])], attrs: { mode: { s: 'reflect' } } },
  { name: 'Slice with negative steps', op: 'Slice', shape: [3, 7], inputs: ['x', ints([5, 2]), ints([0, -10]), ints([1, 0]), ints([-2, -1])] },
  { name: 'Slice attribute form (opset 9)', op: 'Slice', opset: 9, shape: [3, 6], attrs: { starts: { ints: [1, 0] }, ends: { ints: [3, 4] }, axes: { ints: [0, 1] } } },
  { name: 'Gather 2-D indices, repeats and negatives', op: 'Gather', shape: [2, 5], inputs: ['x', ints([4, -1, 0, 2], [2, 2])], attrs: { axis: { i: 1 } } },
  { name: 'Split (opset 11 attribute) second output', op: 'Split', opset: 11, shape: [2, 7], outputs: 3, output: 1, attrs: { axis: { i: 1 }, split: { ints: [2, 4, 1] } } },
  { name: 'Split (opset 13 input) last output', op: 'Split', shape: [5, 2], outputs: 2, output: 1, inputs: ['x', ints([3, 2])] },
  { name: 'Split (opset 18 num_outputs, uneven)', op: 'Split', opset: 18, shape: [1, 8], outputs: 3, output: 2, attrs: { axis: { i: -1 }, num_outputs: { i: 3 } } },
  { name: 'Expand', op: 'Expand', shape: [3, 1], inputs: ['x', ints([2, 3, 4])] },
  { name: 'Tile', op: 'Tile', shape: [2, 3], inputs: ['x', ints([2, 3])] },
  { name: 'DepthToSpace DCR', op: 'DepthToSpace', shape: [1, 8, 2, 3], attrs: { blocksize: { i: 2 } } },
  { name: 'DepthToSpace CRD', op: 'DepthToSpace', shape: [1, 8, 2, 2], attrs: { blocksize: { i: 2 }, mode: { s: 'CRD' } } },
  { name: 'SpaceToDepth', op: 'SpaceToDepth', shape: [1, 2, 4, 6], attrs: { blocksize: { i: 2 } } },
  { name: 'Resize nearest half_pixel round_prefer_floor ×2', op: 'Resize', shape: [1, 1, 3, 4], inputs: ['x', null, t([4], [1, 1, 2, 2])] },
  { name: 'Resize nearest asymmetric floor ×1.5', op: 'Resize', shape: [1, 2, 4, 4], inputs: ['x', null, t([4], [1, 1, 1.5, 1.5])], attrs: { coordinate_transformation_mode: { s: 'asymmetric' }, nearest_mode: { s: 'floor' } } },
  { name: 'Resize nearest align_corners round_prefer_ceil (sizes)', op: 'Resize', shape: [1, 1, 4, 5], inputs: ['x', null, null, ints([1, 1, 7, 3])], attrs: { coordinate_transformation_mode: { s: 'align_corners' }, nearest_mode: { s: 'round_prefer_ceil' } } },
  { name: 'Resize nearest tf_half_pixel_for_nn ceil (opset 11)', op: 'Resize', opset: 11, shape: [1, 1, 3, 3], inputs: ['x', t([0], []), t([4], [1, 1, 2.5, 1.7])], attrs: { coordinate_transformation_mode: { s: 'tf_half_pixel_for_nn' }, nearest_mode: { s: 'ceil' } } },
  { name: 'Resize nearest pytorch_half_pixel downsample', op: 'Resize', shape: [1, 1, 6, 5], inputs: ['x', null, t([4], [1, 1, 0.5, 0.6])], attrs: { coordinate_transformation_mode: { s: 'pytorch_half_pixel' } } },
  { name: 'Resize linear half_pixel ×2', op: 'Resize', shape: [1, 2, 3, 3], inputs: ['x', null, t([4], [1, 1, 2, 2])], attrs: { mode: { s: 'linear' } } },
  { name: 'Resize linear align_corners (sizes)', op: 'Resize', shape: [1, 1, 3, 4], inputs: ['x', null, null, ints([1, 1, 5, 7])], attrs: { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'align_corners' } } },
  { name: 'Resize linear pytorch_half_pixel downsample', op: 'Resize', shape: [1, 1, 6, 7], inputs: ['x', null, t([4], [1, 1, 0.5, 0.45])], attrs: { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'pytorch_half_pixel' } } },
  { name: 'Resize linear asymmetric ×1.7', op: 'Resize', shape: [1, 1, 3, 4], inputs: ['x', null, t([4], [1, 1, 1.7, 1.3])], attrs: { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'asymmetric' } } },
  { name: 'Resize linear 2-D input', op: 'Resize', shape: [3, 4], inputs: ['x', null, t([2], [2, 1.5])], attrs: { mode: { s: 'linear' } } },
  { name: 'Resize linear 5-D (trilinear)', op: 'Resize', shape: [1, 1, 2, 3, 2], inputs: ['x', null, t([5], [1, 1, 2, 1.5, 2])], attrs: { mode: { s: 'linear' } } },
  { name: 'Resize linear tf_crop_and_resize', op: 'Resize', shape: [1, 1, 4, 4], inputs: ['x', t([8], [0, 0, 0.2, -0.3, 1, 1, 0.9, 1.2]), null, ints([1, 1, 3, 5])], attrs: { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'tf_crop_and_resize' }, extrapolation_value: { f: 2 } } },
  { name: 'Resize linear half_pixel_symmetric (opset 19)', op: 'Resize', opset: 19, shape: [1, 1, 4, 5], inputs: ['x', null, t([4], [1, 1, 1.5, 0.7])], attrs: { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'half_pixel_symmetric' } } },
  { name: 'Resize cubic half_pixel', op: 'Resize', shape: [1, 1, 4, 4], inputs: ['x', null, t([4], [1, 1, 2, 1.5])], attrs: { mode: { s: 'cubic' } } },
  { name: 'Resize cubic exclude_outside, a = −0.5', op: 'Resize', shape: [1, 1, 4, 5], inputs: ['x', null, t([4], [1, 1, 1.5, 2])], attrs: { mode: { s: 'cubic' }, exclude_outside: { i: 1 }, cubic_coeff_a: { f: -0.5 } } },
  { name: 'Resize with axes (opset 18)', op: 'Resize', opset: 18, shape: [1, 2, 3, 3], inputs: ['x', null, t([2], [2, 3])], attrs: { axes: { ints: [2, 3] } } },
  { name: 'Resize (opset 10) nearest downsample', op: 'Resize', opset: 10, shape: [1, 1, 5, 6], inputs: ['x', t([4], [1, 1, 0.6, 0.5])] },
  { name: 'Resize (opset 10) linear', op: 'Resize', opset: 10, shape: [1, 1, 3, 3], inputs: ['x', t([4], [1, 1, 2, 1.5])], attrs: { mode: { s: 'linear' } } },
  { name: 'Upsample (opset 7) nearest, attribute scales', op: 'Upsample', opset: 7, shape: [1, 2, 2, 3], attrs: { scales: { floats: [1, 1, 2, 3] } } },
  { name: 'Upsample (opset 9) linear, input scales', op: 'Upsample', opset: 9, shape: [1, 1, 3, 3], inputs: ['x', t([4], [1, 1, 2, 2.5])], attrs: { mode: { s: 'linear' } } },
  { name: 'ReduceSum (opset 13 axes input)', op: 'ReduceSum', shape: [2, 3, 4], inputs: ['x', ints([0, 2])], attrs: { keepdims: { i: 0 } } },
  { name: 'ReduceMean (opset 11 axes attribute)', op: 'ReduceMean', opset: 11, shape: [2, 3, 4], attrs: { axes: { ints: [-1] } } },
  { name: 'ReduceSum noop_with_empty_axes', op: 'ReduceSum', shape: [2, 3], attrs: { noop_with_empty_axes: { i: 1 } } },
  { name: 'AveragePool count_include_pad', op: 'AveragePool', shape: [1, 2, 5, 5], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [2, 2] }, count_include_pad: { i: 1 } } },
  { name: 'AveragePool ceil_mode, pads excluded', op: 'AveragePool', shape: [1, 1, 6, 6], attrs: { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, ceil_mode: { i: 1 }, pads: { ints: [1, 0, 0, 1] } } },
  { name: 'AveragePool SAME_UPPER', op: 'AveragePool', shape: [1, 1, 5, 4], attrs: { kernel_shape: { ints: [2, 3] }, auto_pad: { s: 'SAME_UPPER' } } },
  { name: 'GlobalAveragePool', op: 'GlobalAveragePool', shape: [1, 3, 2, 3] },
  { name: 'BatchNormalization', op: 'BatchNormalization', shape: [1, 3, 2, 2], inputs: ['x', t([3]), t([3]), t([3]), t([3], [0.5, 2, 1])] },
  { name: 'Mean of two branches with broadcast', op: 'Mean', shape: [2, 3], inputs: ['x', 'r', t([3])], before: [{ op: 'ReduceSum', inputs: ['x', ints([0])], output: 'r', attrs: { keepdims: { i: 0 } } }] },
  { name: 'Mean with one input-dependent operand', op: 'Mean', shape: [2, 3], inputs: ['x', t([2, 3])] },
  { name: 'Sum of three branches', op: 'Sum', shape: [2, 3], inputs: ['x', 'n', 'x'], before: [{ op: 'Neg', inputs: ['x'], output: 'n' }] },
  { name: 'Sub: constant minus input', op: 'Sub', shape: [2, 3], inputs: [t([3]), 'x'] },
  { name: 'Div by a constant', op: 'Div', shape: [2, 3], inputs: ['x', t([3], [2, -4, 0.5])] },
  { name: 'Where with a constant condition, one branch', op: 'Where', shape: [2, 3], inputs: [bools([3], [1, 0, 1]), 'x', t([2, 3])] },
  { name: 'Where with a constant condition, two branches', op: 'Where', shape: [2, 3], inputs: [bools([2, 1], [0, 1]), 'x', 's'], before: [{ op: 'Mul', inputs: ['x', t([3])], output: 's' }] },
  { name: 'CumSum', op: 'CumSum', shape: [2, 4], inputs: ['x', ints([1], [])] },
  { name: 'CumSum exclusive reverse', op: 'CumSum', shape: [3, 2], inputs: ['x', ints([0], [])], attrs: { exclusive: { i: 1 }, reverse: { i: 1 } } },
  { name: 'Concat with a constant part', op: 'Concat', shape: [2, 2], inputs: ['x', t([2, 3]), 'x'], attrs: { axis: { i: 1 } } },
  { name: 'Transpose', op: 'Transpose', shape: [2, 3, 4], attrs: { perm: { ints: [2, 0, 1] } } },
  { name: 'Reshape (opset 4 attribute)', op: 'Reshape', opset: 4, shape: [2, 6], attrs: { shape: { ints: [3, 4] } } },
  { name: 'Reshape (opset 13 input, with 0 and −1)', op: 'Reshape', shape: [2, 3, 2], inputs: ['x', ints([0, -1])] },
  { name: 'Unsqueeze (opset 11 attribute)', op: 'Unsqueeze', opset: 11, shape: [2, 3], attrs: { axes: { ints: [0, -1] } } },
  { name: 'Unsqueeze (opset 13 input)', op: 'Unsqueeze', shape: [2, 3], inputs: ['x', ints([1])] },
  { name: 'Flatten', op: 'Flatten', shape: [2, 3, 2], attrs: { axis: { i: 2 } } },
  { name: 'Identity', op: 'Identity', shape: [3] },
  { name: 'Add a constant', op: 'Add', shape: [2, 3], inputs: [t([3]), 'x'] },
  { name: 'Squeeze (opset 11 attribute)', op: 'Squeeze', opset: 11, shape: [1, 3, 1], attrs: { axes: { ints: [0, 2] } } },
  { name: 'Squeeze (opset 13 input)', op: 'Squeeze', shape: [1, 3, 1], inputs: ['x', ints([2])] },
  { name: 'Dropout (opset 12, ratio input)', op: 'Dropout', opset: 12, shape: [2, 3], inputs: ['x', scalar(0.3)] },
  { name: 'Neg', op: 'Neg', shape: [4] },
  { name: 'Einsum ij,jk->ik (constant on the right)', op: 'Einsum', shape: [3, 4], inputs: ['x', t([4, 5])], attrs: einsum('ij,jk->ik') },
  { name: 'Einsum ij,jk->ik (constant on the left, opset 12)', op: 'Einsum', opset: 12, shape: [3, 4], inputs: [t([2, 3]), 'x'], attrs: einsum('ij,jk->ik') },
  { name: 'Einsum bij,jk->bik', op: 'Einsum', shape: [2, 3, 4], inputs: ['x', t([4, 5])], attrs: einsum('bij,jk->bik') },
  { name: 'Einsum bhqd,hd->bhq (batch label h, contraction d)', op: 'Einsum', shape: [2, 3, 4, 5], inputs: ['x', t([3, 5])], attrs: einsum('bhqd,hd->bhq') },
  { name: 'Einsum bij,bjk->bik with a batched constant', op: 'Einsum', shape: [2, 3, 4], inputs: ['x', t([2, 4, 5])], attrs: einsum('bij,bjk->bik') },
  { name: 'Einsum bij,j->bi (vector constant)', op: 'Einsum', shape: [2, 3, 4], inputs: ['x', t([4])], attrs: einsum('bij,j->bi') },
  { name: 'Einsum i,i-> (dot product, scalar output)', op: 'Einsum', shape: [5], inputs: ['x', t([5])], attrs: einsum('i,i->') },
  { name: 'Einsum ij,kl->ijkl (outer product with a constant)', op: 'Einsum', shape: [2, 3], inputs: ['x', t([2, 2])], attrs: einsum('ij,kl->ijkl') },
  { name: 'Einsum ij,ij->ij (elementwise)', op: 'Einsum', shape: [2, 3], inputs: ['x', t([2, 3])], attrs: einsum('ij,ij->ij') },
  { name: 'Einsum ij,j->ji (broadcast scaling, transposed)', op: 'Einsum', shape: [2, 3], inputs: ['x', t([3])], attrs: einsum('ij,j->ji') },
  { name: 'Einsum ij,jkm->ik (a label summed inside the constant)', op: 'Einsum', shape: [3, 4], inputs: ['x', t([4, 2, 3])], attrs: einsum('ij,jkm->ik') },
  { name: 'Einsum ij,jk,kl->il (input between two constants)', op: 'Einsum', shape: [3, 4], inputs: [t([2, 3]), 'x', t([4, 5])], attrs: einsum('ij,jk,kl->il') },
  { name: 'Einsum ij,jk implicit output (ik)', op: 'Einsum', shape: [3, 4], inputs: ['x', t([4, 2])], attrs: einsum('ij,jk') },
  { name: 'Einsum ij->ji (transpose)', op: 'Einsum', shape: [3, 4], attrs: einsum('ij->ji') },
  { name: 'Einsum ba implicit output (a transpose)', op: 'Einsum', shape: [3, 4], attrs: einsum('ba') },
  { name: 'Einsum ii->i (diagonal)', op: 'Einsum', shape: [3, 3], attrs: einsum('ii->i') },
  { name: 'Einsum iij->j (trace over a pair of axes)', op: 'Einsum', shape: [3, 3, 2], attrs: einsum('iij->j') },
  { name: 'Einsum jii->ij with a spaced equation', op: 'Einsum', shape: [2, 3, 3], attrs: einsum(' jii -> ij ') },
  { name: 'Einsum ij->i (row sums)', op: 'Einsum', shape: [3, 4], attrs: einsum('ij->i') },
  { name: 'Einsum ij-> (total sum)', op: 'Einsum', shape: [3, 4], attrs: einsum('ij->') },
  { name: 'Einsum ...ij,jk->...ik (ellipsis)', op: 'Einsum', shape: [2, 3, 4, 5], inputs: ['x', t([5, 2])], attrs: einsum('...ij,jk->...ik') },
  { name: 'Einsum ...ij,...jk->...ik (ellipsis batch, broadcast)', op: 'Einsum', shape: [2, 3, 4, 5], inputs: ['x', t([1, 3, 5, 2])], attrs: einsum('...ij,...jk->...ik') },
  { name: 'Einsum ...ij,...jk->...ik (a size-1 constant axis broadcast)', op: 'Einsum', shape: [2, 3, 4], inputs: ['x', t([1, 4, 2])], attrs: einsum('...ij,...jk->...ik') },
  { name: 'Einsum ...ii->...i (batched diagonal)', op: 'Einsum', shape: [2, 3, 3], attrs: einsum('...ii->...i') },
  { name: 'Einsum i...->... (sum over the first axis)', op: 'Einsum', shape: [3, 2, 2], attrs: einsum('i...->...') },
  { name: 'GatherElements axis 0 (a different choice per column)', op: 'GatherElements', opset: 11, shape: [3, 4], inputs: ['x', ints([2, 0, 1, 1, 0, 0, 2, -1], [2, 4])] },
  { name: 'GatherElements axis −1, repeats and negatives', op: 'GatherElements', shape: [2, 5], inputs: ['x', ints([4, -1, 0, 1, 1, 3], [2, 3])], attrs: { axis: { i: -1 } } },
  { name: 'GatherElements axis 1, indices shorter on the other axes (crop)', op: 'GatherElements', shape: [3, 4, 2], inputs: ['x', ints([3, 0, 1, 1, 2, 2, 0, 3, 3, 3, 1, 0], [2, 3, 2])], attrs: { axis: { i: 1 } } },
  { name: 'GatherElements with the same choice at every position', op: 'GatherElements', shape: [3, 4], inputs: ['x', ints([2, 0, 2, 0, 2, 0], [3, 2])], attrs: { axis: { i: 1 } } },
  { name: 'GatherND elements (k = rank, opset 11)', op: 'GatherND', opset: 11, shape: [3, 4], inputs: ['x', ints([1, 2, 0, 0, 2, -1, 1, 2], [4, 2])] },
  { name: 'GatherND slices (k = 1) with a repeat', op: 'GatherND', shape: [3, 4, 2], inputs: ['x', ints([2, 0, 2], [3, 1])] },
  { name: 'GatherND nested index array', op: 'GatherND', shape: [3, 4, 2], inputs: ['x', ints([0, 1, 2, 3, 1, 1, 2, 0], [2, 2, 2])] },
  { name: 'GatherND batch_dims 1 (a different choice per batch)', op: 'GatherND', shape: [2, 3, 4], inputs: ['x', ints([2, 0, 1, 1], [2, 2, 1])], attrs: { batch_dims: { i: 1 } } },
  { name: 'GatherND batch_dims 1, k = 2', op: 'GatherND', opset: 12, shape: [2, 3, 4], inputs: ['x', ints([0, 3, 2, 1, 1, -1, 0, 0], [2, 2, 2])], attrs: { batch_dims: { i: 1 } } },
  { name: 'MatMul with DequantizeLinear weights (folded)', op: 'MatMul', shape: [2, 3], inputs: ['x', 'w'], before: [{ op: 'DequantizeLinear', inputs: [{ dtype: 'int8', dims: [3, 2], data: Int8Array.of(-5, 7, 100, -128, 3, 0) }, scalar(0.05), { dtype: 'int8', dims: [], data: Int8Array.of(2) }], output: 'w' }] },
];

for (const c of LINEAR) {
  test(`linear: ${c.name}`, async () => {
    const { ir, bytes } = await caseIr(c);
    const region = regionOf(ir);
    const { forward, adjoint, rows, cols } = await regionMatrices(region);
    const ref = await modelMatrix(bytes, c.shape, ir.output);
    assert.equal(rows, ref.rows, 'output sizes');
    const scale = Math.max(1, maxAbs(ref.m));
    assert.ok(maxAbsDiff(forward, ref.m) <= 2e-5 * scale, `forward differs from the op by ${maxAbsDiff(forward, ref.m)}`);
    assert.ok(maxAbsDiff(adjoint, ref.m) <= 2e-5 * scale, `adjoint differs from the transpose by ${maxAbsDiff(adjoint, ref.m)}`);
    // the certified region bounds hold for the op's exact matrix (float32 entries: a relative slack of 1e-5)
    const exact2 = sigmaMax(ref.m, rows, cols);
    let exactInf = 0;
    for (let i = 0; i < rows; i++) { let s = 0; for (let j = 0; j < cols; j++) s += Math.abs(ref.m[i * cols + j]); exactInf = Math.max(exactInf, s); }
    const b2 = regionBound(region, '2', 2000).value, bInf = regionBound(region, 'inf', 2000).value;
    assert.ok(b2 >= exact2 * (1 - 1e-5), `ℓ2 region bound ${b2} < σ_max ${exact2}`);
    assert.ok(bInf >= exactInf * (1 - 1e-5), `ℓ∞ region bound ${bInf} < max row sum ${exactInf}`);
  });
}

/** The number of grid points the activation cases evaluate at (their input shape). */
const GRID_N = 1601;

/** Elementwise activations (and matched x·g(x) patterns): slope range ⊇ numerical derivatives, tight where marked. */
const ACTIVATIONS: (Omit<Case, 'shape'> & { tight?: boolean; slope?: readonly [number, number] })[] = [
  { name: 'Relu', op: 'Relu', tight: true, slope: [0, 1] },
  { name: 'LeakyRelu α = 0.2', op: 'LeakyRelu', attrs: { alpha: { f: 0.2 } }, tight: true, slope: [0.2, 1] },
  { name: 'LeakyRelu α = 3', op: 'LeakyRelu', attrs: { alpha: { f: 3 } }, tight: true, slope: [1, 3] },
  { name: 'PRelu constant slopes', op: 'PRelu', inputs: ['x', t([1], [-0.5])], tight: true, slope: [-0.5, 1] },
  { name: 'Sigmoid', op: 'Sigmoid', tight: true, slope: [0, 0.25] },
  { name: 'HardSigmoid α = 0.3', op: 'HardSigmoid', attrs: { alpha: { f: 0.3 }, beta: { f: 0.4 } }, tight: true, slope: [0, 0.3] },
  { name: 'HardSwish', op: 'HardSwish', opset: 14, tight: true, slope: [-0.5, 1.5] },
  { name: 'Tanh', op: 'Tanh', tight: true },
  { name: 'Softplus', op: 'Softplus', tight: true },
  { name: 'Softsign', op: 'Softsign', tight: true },
  { name: 'Elu α = 2', op: 'Elu', attrs: { alpha: { f: 2 } }, tight: true, slope: [0, 2] },
  { name: 'Elu α = 0.5', op: 'Elu', attrs: { alpha: { f: 0.5 } }, tight: true, slope: [0, 1] },
  { name: 'Selu', op: 'Selu', tight: true },
  { name: 'Celu α = 0.7', op: 'Celu', opset: 12, attrs: { alpha: { f: 0.7 } }, tight: true },
  { name: 'Clip (opset 6 attributes)', op: 'Clip', opset: 6, attrs: { min: { f: -1 }, max: { f: 2 } }, tight: true, slope: [0, 1] },
  { name: 'Clip (opset 13 inputs)', op: 'Clip', inputs: ['x', scalar(-0.5), scalar(3)], tight: true, slope: [0, 1] },
  { name: 'Abs', op: 'Abs', tight: true, slope: [-1, 1] },
  { name: 'Shrink with bias = lambd', op: 'Shrink', attrs: { bias: { f: 0.5 }, lambd: { f: 0.5 } }, tight: true },
  { name: 'ThresholdedRelu α = 0', op: 'ThresholdedRelu', opset: 10, attrs: { alpha: { f: 0 } }, tight: true },
  { name: 'Gelu (opset 20)', op: 'Gelu', opset: 20, tight: true },
  { name: 'Gelu tanh (opset 20)', op: 'Gelu', opset: 20, attrs: { approximate: { s: 'tanh' } }, tight: true },
  { name: 'Mish (opset 18)', op: 'Mish', opset: 18, tight: true },
  { name: 'Erf', op: 'Erf', tight: true },
  { name: 'Sin', op: 'Sin', tight: true, slope: [-1, 1] },
  { name: 'Cos', op: 'Cos', tight: true, slope: [-1, 1] },
  { name: 'Atan', op: 'Atan', tight: true },
  { name: 'Asinh', op: 'Asinh' },
  { name: 'Max with a constant', op: 'Max', inputs: ['x', t([1], [0.3])], tight: true, slope: [0, 1] },
  { name: 'Min with a constant', op: 'Min', inputs: [t([1], [0.3]), 'x'], tight: true, slope: [0, 1] },
  { name: 'pattern x·Sigmoid(x) (SiLU)', op: 'Mul', inputs: ['x', 's'], before: [{ op: 'Sigmoid', inputs: ['x'], output: 's' }], tight: true },
  { name: 'pattern x·Tanh(Softplus(x)) (Mish)', op: 'Mul', inputs: ['t', 'x'], before: [{ op: 'Softplus', inputs: ['x'], output: 'p' }, { op: 'Tanh', inputs: ['p'], output: 't' }], tight: true },
  { name: 'pattern x·HardSigmoid(x) (HardSwish)', op: 'Mul', inputs: ['x', 'h'], before: [{ op: 'HardSigmoid', inputs: ['x'], output: 'h', attrs: { alpha: { f: 1 / 6 } } }], tight: true, slope: [-0.5, 1.5] },
  { name: 'pattern GELU (PyTorch erf form)', op: 'Mul', inputs: ['m', scalar(0.5)], before: [{ op: 'Div', inputs: ['x', scalar(Math.SQRT2)], output: 'd' }, { op: 'Erf', inputs: ['d'], output: 'e' }, { op: 'Add', inputs: ['e', scalar(1)], output: 'a' }, { op: 'Mul', inputs: ['x', 'a'], output: 'm' }], tight: true },
  { name: 'pattern GELU (0.5·x first)', op: 'Mul', inputs: ['h', 'a'], before: [{ op: 'Mul', inputs: ['x', scalar(0.5)], output: 'h' }, { op: 'Mul', inputs: ['x', scalar(Math.SQRT1_2)], output: 'd' }, { op: 'Erf', inputs: ['d'], output: 'e' }, { op: 'Add', inputs: [scalar(1), 'e'], output: 'a' }], tight: true },
  { name: 'pattern GELU tanh form (PyTorch approximate=tanh: x·x·x)', op: 'Mul', inputs: [scalar(0.5), 'm'], tight: true,
    before: [
      { op: 'Mul', inputs: ['x', 'x'], output: 'x2' }, { op: 'Mul', inputs: ['x', 'x2'], output: 'x3' }, { op: 'Mul', inputs: [scalar(0.044715), 'x3'], output: 'kx3' },
      { op: 'Add', inputs: ['x', 'kx3'], output: 's' }, { op: 'Mul', inputs: [scalar(Math.sqrt(2 / Math.PI)), 's'], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' },
      { op: 'Add', inputs: [scalar(1), 'th'], output: 'a' }, { op: 'Mul', inputs: ['x', 'a'], output: 'm' },
    ] },
  { name: 'pattern GELU tanh form (GPT-2 gelu_new: Pow(x, 3))', op: 'Mul', inputs: ['h', 'a'], tight: true,
    before: [
      { op: 'Pow', inputs: ['x', scalar(3)], output: 'p' }, { op: 'Mul', inputs: ['p', scalar(0.044715)], output: 'kp' }, { op: 'Add', inputs: ['x', 'kp'], output: 's' },
      { op: 'Mul', inputs: ['s', scalar(0.7978845608)], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' }, { op: 'Add', inputs: ['th', scalar(1)], output: 'a' },
      { op: 'Mul', inputs: ['x', scalar(0.5)], output: 'h' },
    ] },
  { name: 'pattern GELU tanh form (x·k·(1 + c·x·x), rounded constants)', op: 'Mul', inputs: ['h', 'a'], tight: true,
    before: [
      { op: 'Mul', inputs: ['x', scalar(0.797885)], output: 'l' }, { op: 'Mul', inputs: [scalar(0.044715), 'x'], output: 'c' }, { op: 'Mul', inputs: ['c', 'x'], output: 'c2' },
      { op: 'Add', inputs: [scalar(1), 'c2'], output: 'q' }, { op: 'Mul', inputs: ['l', 'q'], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' },
      { op: 'Add', inputs: [scalar(1), 'th'], output: 'a' }, { op: 'Mul', inputs: ['x', scalar(0.5)], output: 'h' },
    ] },
  { name: 'pattern x·(1 + Tanh(−1.5·(x + 0.044715x³)·k)) (scaled, negative)', op: 'Mul', inputs: ['x', 'a'], tight: true,
    before: [
      { op: 'Pow', inputs: ['x', scalar(3)], output: 'p' }, { op: 'Mul', inputs: ['p', scalar(0.044715 * 2.25)], output: 'kp' }, { op: 'Add', inputs: ['kp', 'x'], output: 's' },
      { op: 'Mul', inputs: ['s', scalar(-1.5 * Math.sqrt(2 / Math.PI))], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' }, { op: 'Add', inputs: ['th', scalar(1)], output: 'a' },
    ] },
  { name: 'pattern x·(0.5 + Tanh(k(x + 0.044715x³))) (a ≠ 1)', op: 'Mul', inputs: ['a', 'x'], tight: true, slope: [-0.5 + 2 * SLOPES.geluTanhNear[0], -0.5 + 2 * SLOPES.geluTanhNear[1]],
    before: [
      { op: 'Mul', inputs: ['x', 'x'], output: 'x2' }, { op: 'Mul', inputs: ['x2', 'x'], output: 'x3' }, { op: 'Mul', inputs: ['x3', scalar(0.044715)], output: 'kx3' },
      { op: 'Add', inputs: ['kx3', 'x'], output: 's' }, { op: 'Mul', inputs: ['s', scalar(Math.sqrt(2 / Math.PI))], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' },
      { op: 'Add', inputs: ['th', scalar(0.5)], output: 'a' },
    ] },
  { name: 'com.microsoft Gelu', op: 'Gelu', domain: MS_DOMAIN, tight: true, slope: SLOPES.geluErf },
  { name: 'com.microsoft BiasGelu with a constant bias', op: 'BiasGelu', domain: MS_DOMAIN, inputs: ['x', t([GRID_N], new Array(GRID_N).fill(0.25))], tight: true, slope: SLOPES.geluErf },
  { name: 'com.microsoft FastGelu', op: 'FastGelu', domain: MS_DOMAIN, tight: true, slope: SLOPES.geluTanh },
  { name: 'com.microsoft FastGelu with a bias', op: 'FastGelu', domain: MS_DOMAIN, inputs: ['x', t([GRID_N], new Array(GRID_N).fill(-0.3))], tight: true, slope: SLOPES.geluTanh },
  { name: 'com.microsoft QuickGelu (α = 1.702 default)', op: 'QuickGelu', domain: MS_DOMAIN, tight: true, slope: SLOPES.silu },
  { name: 'com.microsoft QuickGelu α = −0.7', op: 'QuickGelu', domain: MS_DOMAIN, attrs: { alpha: { f: -0.7 } }, tight: true, slope: SLOPES.silu },
  { name: 'com.microsoft QuickGelu α = 0 (x/2)', op: 'QuickGelu', domain: MS_DOMAIN, attrs: { alpha: { f: 0 } }, tight: true, slope: [0.5, 0.5] },
  { name: 'pattern x·(0.5 + Erf(−1.3x))', op: 'Mul', inputs: ['x', 'a'], before: [{ op: 'Mul', inputs: ['x', scalar(-1.3)], output: 'd' }, { op: 'Erf', inputs: ['d'], output: 'e' }, { op: 'Add', inputs: ['e', scalar(0.5)], output: 'a' }], tight: true },
];

const GRID = Float32Array.from({ length: GRID_N }, (_, i) => -8 + i * 0.01);

for (const c of ACTIVATIONS) {
  test(`activation: ${c.name}`, async () => {
    const cc: Case = { ...c, shape: [GRID.length] };
    const { ir } = await caseIr(cc);
    const acts = ir.nodes.filter((n) => n.kind === 'activation');
    assert.equal(acts.length, 1, `one activation node expected, got ${ir.nodes.map((n) => n.kind).join(', ')}`);
    assert.equal(ir.nodes.filter((n) => n.kind !== 'activation' && !(n.kind === 'linear')).length, 0);
    const a = acts[0];
    if (a.kind !== 'activation') return;
    // the activation may be followed by constant scalings (GELU's 0.5): fold them into the range compared below
    let k = 1;
    for (const n of ir.nodes) if (n.kind === 'linear' && n.prim.op === 'scale') k *= Array.from(n.prim.factor.data as ArrayLike<number>)[0];
    const lo = Math.min(k * a.slope[0], k * a.slope[1]), hi = Math.max(k * a.slope[0], k * a.slope[1]);
    if (c.slope) assert.ok(Math.abs(lo - c.slope[0]) <= 1e-6 && Math.abs(hi - c.slope[1]) <= 1e-6, `slope [${lo}, ${hi}] expected [${c.slope.join(', ')}]`);
    const h = 1e-2;
    const [yp, ym] = await evaluate(caseModel(cc), [GRID.length], [GRID.map((v) => v + h), GRID.map((v) => v - h)], ir.output);
    let dmin = Infinity, dmax = -Infinity;
    for (let i = 0; i < GRID.length; i++) {
      const d = (yp[i] - ym[i]) / (Math.fround(GRID[i] + h) - Math.fround(GRID[i] - h));
      dmin = Math.min(dmin, d);
      dmax = Math.max(dmax, d);
    }
    assert.ok(dmin >= lo - 2e-3 && dmax <= hi + 2e-3, `numerical slopes [${dmin}, ${dmax}] outside [${lo}, ${hi}]`);
    if (c.tight) assert.ok(dmin <= lo + 2e-2 && dmax >= hi - 2e-2, `range [${lo}, ${hi}] is loose: slopes seen [${dmin}, ${dmax}]`);
  });
}

/** Nonlinear nodes with a constant: no difference quotient may exceed it (ℓ2 and ℓ∞). */
const LIPSCHITZ: (Case & { fn: string })[] = [
  { name: 'MaxPool overlapping with dilation and ceil_mode', op: 'MaxPool', opset: 12, fn: 'MaxPool', shape: [1, 2, 7, 7], attrs: { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 1] }, dilations: { ints: [1, 2] }, ceil_mode: { i: 1 } } },
  { name: 'MaxPool with Indices output', op: 'MaxPool', fn: 'MaxPool', shape: [1, 1, 4, 4], outputs: 2, outputTypes: ['float32', 'int64'], attrs: { kernel_shape: { ints: [2, 2] } } },
  { name: 'GlobalMaxPool', op: 'GlobalMaxPool', fn: 'GlobalMaxPool', shape: [1, 2, 3, 3] },
  { name: 'LpPool p = 2', op: 'LpPool', fn: 'LpPool', shape: [1, 2, 5, 5], attrs: { kernel_shape: { ints: [3, 3] }, strides: { ints: [1, 2] }, pads: { ints: [1, 1, 1, 1] } } },
  { name: 'LpPool p = 1', op: 'LpPool', fn: 'LpPool', shape: [1, 1, 4, 4], attrs: { kernel_shape: { ints: [2, 2] }, p: { i: 1 } } },
  { name: 'LpPool p = 3', op: 'LpPool', fn: 'LpPool', shape: [1, 1, 5, 4], attrs: { kernel_shape: { ints: [2, 3] }, p: { i: 3 } } },
  { name: 'GlobalLpPool', op: 'GlobalLpPool', fn: 'GlobalLpPool', shape: [1, 3, 2, 3] },
  { name: 'ReduceMax', op: 'ReduceMax', fn: 'ReduceMax', shape: [2, 3, 4], opset: 13, attrs: { axes: { ints: [1] } } },
  { name: 'ReduceMin', op: 'ReduceMin', fn: 'ReduceMin', shape: [2, 5], opset: 13 },
  { name: 'ReduceL1', op: 'ReduceL1', fn: 'ReduceL1', shape: [3, 4], opset: 13, attrs: { axes: { ints: [1] } } },
  { name: 'ReduceL2', op: 'ReduceL2', fn: 'ReduceL2', shape: [3, 4], opset: 13, attrs: { axes: { ints: [0] } } },
  { name: 'ReduceLogSumExp', op: 'ReduceLogSumExp', fn: 'ReduceLogSumExp', shape: [3, 4], opset: 13, attrs: { axes: { ints: [1] } } },
  { name: 'TopK values', op: 'TopK', fn: 'TopK', shape: [2, 6], outputs: 2, outputTypes: ['float32', 'int64'], inputs: ['x', ints([3])] },
  { name: 'Max of two branches with broadcast', op: 'Max', fn: 'Max', shape: [2, 3], inputs: ['x', 'r'], before: [{ op: 'ReduceSum', inputs: ['x', ints([0])], output: 'r', attrs: { keepdims: { i: 0 } } }] },
  { name: 'Min of three branches', op: 'Min', fn: 'Min', shape: [4], inputs: ['x', 'n', t([4])], before: [{ op: 'Mul', inputs: ['x', t([4])], output: 'n' }] },
  { name: 'Clip with input-dependent bounds', op: 'Clip', fn: 'Clip', shape: [4], inputs: ['x', 'lo', null], before: [{ op: 'ReduceMean', inputs: ['x'], output: 'lo', attrs: { keepdims: { i: 0 } } }] },
  { name: 'Softmax', op: 'Softmax', fn: 'Softmax', shape: [2, 5] },
  { name: 'LogSoftmax (opset 13)', op: 'LogSoftmax', fn: 'LogSoftmax', shape: [2, 5] },
  { name: 'LogSoftmax (opset 11, flattened at axis 1)', op: 'LogSoftmax', opset: 11, fn: 'LogSoftmax', shape: [1, 2, 3] },
  { name: 'LRN size 5', op: 'LRN', fn: 'LRN', shape: [1, 7, 2, 2], attrs: { size: { i: 5 }, alpha: { f: 0.5 }, beta: { f: 0.75 }, bias: { f: 1 } } },
  { name: 'InstanceNormalization', op: 'InstanceNormalization', fn: 'InstanceNormalization', shape: [1, 2, 3, 3], inputs: ['x', t([2]), t([2])], attrs: { epsilon: { f: 0.01 } } },
  { name: 'LayerNormalization (opset 17)', op: 'LayerNormalization', opset: 17, fn: 'LayerNormalization', shape: [2, 6], inputs: ['x', t([6]), t([6])], attrs: { epsilon: { f: 0.01 } } },
  { name: 'GroupNormalization (opset 21)', op: 'GroupNormalization', opset: 21, fn: 'GroupNormalization', shape: [1, 4, 2, 2], inputs: ['x', t([4]), t([4])], attrs: { num_groups: { i: 2 }, epsilon: { f: 0.01 } } },
];

for (const c of LIPSCHITZ) {
  test(`lipschitz: ${c.name}`, async () => {
    const { ir, bytes } = await caseIr(c);
    const node = ir.nodes.find((n) => n.kind === 'lipschitz' && n.output === ir.output);
    assert.ok(node && node.kind === 'lipschitz' && node.fn === c.fn, `a ${c.fn} lipschitz node, got ${ir.nodes.map((n) => `${n.kind}:${n.opType}`).join(', ')}`);
    const upstream = ir.nodes.filter((n) => n !== node);
    // inputs computed by the nodes before: their (linear) constants multiply in, bounded through the region bounds
    const n = c.shape.reduce((a, b) => a * b, 1);
    const r = new Random(7);
    const xs: Float32Array[] = [];
    for (let s = 0; s < 40; s++) {
      const x = Float32Array.from({ length: n }, () => r.normal() * (s % 4 === 0 ? 0.05 : 2));
      const step = [1e-2, 0.3, 3][s % 3];
      xs.push(x, x.map((v) => v + step * r.normal()));
    }
    const ys = await evaluate(bytes, c.shape, xs, ir.output);
    let pre2 = 1, preInf = 1;
    if (upstream.some((m) => m.kind === 'linear')) ({ pre2, preInf } = await upstreamBounds(c));
    const stack2 = node.inputs.length > 1 ? Math.sqrt(node.inputs.length) : 1;
    let worst2 = 0, worstInf = 0;
    for (let s = 0; s < xs.length; s += 2) {
      const dx = xs[s + 1].map((v, i) => v - xs[s][i]);
      const dy = ys[s + 1].map((v, i) => v - ys[s][i]);
      worst2 = Math.max(worst2, Math.hypot(...dy) / Math.hypot(...dx));
      worstInf = Math.max(worstInf, maxAbs(dy) / maxAbs(dx));
    }
    assert.ok(worst2 <= node.l2 * stack2 * pre2 * (1 + 1e-3), `ℓ2 quotient ${worst2} > ${node.l2}`);
    assert.ok(worstInf <= node.linf * preInf * (1 + 1e-3), `ℓ∞ quotient ${worstInf} > ${node.linf}`);
  });
}

/** A bound on the Lipschitz constant of the map from x to the stacked inputs of the node under test (for branch cases). */
async function upstreamBounds(c: Case): Promise<{ pre2: number; preInf: number }> {
  // every branch here is linear in x with norm ≤ its region bound; the stacked map has ℓ∞ norm ≤ max and ℓ2 ≤ max·√k (k ≤ 3)
  const { ir } = await caseIr(c);
  let pre2 = 1, preInf = 1;
  for (const b of mergeLinear(ir)) {
    if (b.kind !== 'operator') continue;
    pre2 = Math.max(pre2, regionBound(b.region, '2').value);
    preInf = Math.max(preInf, regionBound(b.region, 'inf').value);
  }
  return { pre2, preInf };
}

/** What has no global constant, and what is not continuous: each must say so, naming the node. */
const CLASSIFIED: (Case & { kind: 'unbounded' | 'discontinuous' })[] = [
  { name: 'Exp', op: 'Exp', shape: [3], kind: 'unbounded' },
  { name: 'Log', op: 'Log', shape: [3], kind: 'unbounded' },
  { name: 'Sqrt', op: 'Sqrt', shape: [3], kind: 'unbounded' },
  { name: 'Pow', op: 'Pow', shape: [3], inputs: ['x', scalar(2)], kind: 'unbounded' },
  { name: 'Reciprocal', op: 'Reciprocal', shape: [3], kind: 'unbounded' },
  { name: 'Div by the input', op: 'Div', shape: [3], inputs: [t([3]), 'x'], kind: 'unbounded' },
  { name: 'Mul of two input-dependent tensors', op: 'Mul', shape: [3], inputs: ['x', 'x'], kind: 'unbounded' },
  { name: 'MatMul of two input-dependent tensors', op: 'MatMul', shape: [3, 3], inputs: ['x', 'x'], kind: 'unbounded' },
  { name: 'Tan', op: 'Tan', shape: [3], kind: 'unbounded' },
  { name: 'ReduceProd', op: 'ReduceProd', shape: [3], kind: 'unbounded' },
  { name: 'LpNormalization', op: 'LpNormalization', shape: [2, 3], kind: 'unbounded' },
  { name: 'LRN with bias 0', op: 'LRN', shape: [1, 3, 2, 2], attrs: { size: { i: 3 }, bias: { f: 0 } }, kind: 'unbounded' },
  { name: 'Einsum of the input with itself', op: 'Einsum', shape: [3, 3], inputs: ['x', 'x'], attrs: einsum('ij,jk->ik'), kind: 'unbounded' },
  { name: 'Einsum of two input-dependent operands and a constant', op: 'Einsum', shape: [2, 3], inputs: ['x', t([3, 4]), 'h'], attrs: einsum('ij,jk,ik->i'), kind: 'unbounded', before: [{ op: 'MatMul', inputs: ['x', t([3, 4])], output: 'h' }] },
  { name: 'tanh form with a non-GELU ratio γ/α³ is not fused', op: 'Mul', shape: [3], inputs: ['x', 'a'], kind: 'unbounded',
    before: [
      { op: 'Pow', inputs: ['x', scalar(3)], output: 'p' }, { op: 'Mul', inputs: ['p', scalar(0.05)], output: 'kp' }, { op: 'Add', inputs: ['x', 'kp'], output: 's' },
      { op: 'Mul', inputs: ['s', scalar(0.7978845608)], output: 'w' }, { op: 'Tanh', inputs: ['w'], output: 'th' }, { op: 'Add', inputs: ['th', scalar(1)], output: 'a' },
    ] },
  { name: 'GatherElements with input-dependent indices', op: 'GatherElements', shape: [2, 3], inputs: ['x', 'i'], attrs: { axis: { i: 1 } }, kind: 'discontinuous', before: [{ op: 'ArgMax', inputs: ['x'], output: 'i', attrs: { axis: { i: 1 } } }] },
  { name: 'GatherND with input-dependent indices', op: 'GatherND', shape: [2, 3], inputs: ['x', 'i'], attrs: { batch_dims: { i: 1 } }, kind: 'discontinuous', before: [{ op: 'ArgMax', inputs: ['x'], output: 'i', attrs: { axis: { i: 1 } } }] },
  { name: 'Floor', op: 'Floor', shape: [3], kind: 'discontinuous' },
  { name: 'Sign', op: 'Sign', shape: [3], kind: 'discontinuous' },
  { name: 'Round', op: 'Round', shape: [3], kind: 'discontinuous' },
  { name: 'ArgMax', op: 'ArgMax', shape: [2, 3], outputTypes: ['int64'], kind: 'discontinuous' },
  { name: 'Hardmax', op: 'Hardmax', shape: [2, 3], kind: 'discontinuous' },
  { name: 'Where by a comparison', op: 'Where', shape: [3], inputs: ['g', 'x', t([3])], before: [{ op: 'Greater', inputs: ['x', scalar(0)], output: 'g' }], kind: 'discontinuous' },
  { name: 'ThresholdedRelu α = 1', op: 'ThresholdedRelu', opset: 10, shape: [3], kind: 'discontinuous' },
  { name: 'Shrink (hard)', op: 'Shrink', shape: [3], kind: 'discontinuous' },
  { name: 'Cast to int32', op: 'Cast', shape: [3], attrs: { to: { i: 6 } }, outputTypes: ['int32'], kind: 'discontinuous' },
  { name: 'QuantizeLinear → QLinearMatMul → DequantizeLinear', op: 'DequantizeLinear', shape: [2, 3], inputs: ['qm', scalar(0.1), { dtype: 'uint8', dims: [], data: Uint8Array.of(128) }], kind: 'discontinuous',
    before: [
      { op: 'QuantizeLinear', inputs: ['x', scalar(0.02), { dtype: 'uint8', dims: [], data: Uint8Array.of(128) }], output: 'q' },
      { op: 'QLinearMatMul', inputs: ['q', scalar(0.02), { dtype: 'uint8', dims: [], data: Uint8Array.of(128) }, { dtype: 'uint8', dims: [3, 2], data: Uint8Array.of(1, 200, 30, 128, 7, 90) }, scalar(0.01), { dtype: 'uint8', dims: [], data: Uint8Array.of(128) }, scalar(0.1), { dtype: 'uint8', dims: [], data: Uint8Array.of(128) }], output: 'qm' },
    ] },
];

for (const c of CLASSIFIED) {
  test(`classified ${c.kind}: ${c.name}`, async () => {
    const { ir } = await caseIr(c);
    const named = ir.nodes.filter((n) => (n.kind === 'unbounded' || n.kind === 'discontinuous') && !n.derived);
    assert.ok(named.length > 0, `no node says why (${ir.nodes.map((n) => n.kind).join(', ')})`);
    assert.ok(named.some((n) => n.kind === c.kind), `expected ${c.kind}, got ${named.map((n) => `${n.kind} (${n.opType})`).join(', ')}`);
    for (const n of named) if (n.kind === 'unbounded' || n.kind === 'discontinuous') assert.ok(n.reason.length > 5, `reason '${n.reason}'`);
  });
}

/** The LRN of the ONNX spec, in float64, for one position: y_c = x_c / (bias + α/size · Σ_{W(c)} x_j²)^β. */
function lrnRef(x: ArrayLike<number>, size: number, alpha: number, beta: number, bias: number): Float64Array {
  const C = x.length, lo = Math.floor((size - 1) / 2), hi = Math.ceil((size - 1) / 2);
  return Float64Array.from({ length: C }, (_, c) => {
    let q = 0;
    for (let j = Math.max(0, c - lo); j <= Math.min(C - 1, c + hi); j++) q += x[j] * x[j];
    return x[c] / Math.pow(bias + (alpha / size) * q, beta);
  });
}

/** Its Jacobian, analytically: δ_cj s_c^−β − 2aβ x_c x_j s_c^(−β−1) [j ∈ W(c)]. */
function lrnJacobian(x: ArrayLike<number>, size: number, alpha: number, beta: number, bias: number): Float64Array {
  const C = x.length, lo = Math.floor((size - 1) / 2), hi = Math.ceil((size - 1) / 2), a = alpha / size;
  const J = new Float64Array(C * C);
  for (let c = 0; c < C; c++) {
    let q = 0;
    for (let j = Math.max(0, c - lo); j <= Math.min(C - 1, c + hi); j++) q += x[j] * x[j];
    const s = bias + a * q;
    J[c * C + c] += Math.pow(s, -beta);
    for (let j = Math.max(0, c - lo); j <= Math.min(C - 1, c + hi); j++) J[c * C + j] -= 2 * a * beta * x[c] * x[j] * Math.pow(s, -beta - 1);
  }
  return J;
}

const LRN_PARAMS = [
  { alpha: 1e-4, beta: 0.75, bias: 1, size: 5, C: 9 },
  { alpha: 2, beta: 0.75, bias: 2, size: 5, C: 7 },
  { alpha: 1, beta: 0.5, bias: 1, size: 3, C: 6 },
  { alpha: 3, beta: 2, bias: 0.5, size: 4, C: 6 },
  { alpha: 1, beta: 1.5, bias: 1, size: 1, C: 4 },
  { alpha: 0.7, beta: 0.3, bias: 1.5, size: 7, C: 5 },
];

test('LRN: the spec formula (window, scaling) matches onnxruntime, and its analytic Jacobian matches differences', async () => {
  // onnxruntime only runs odd sizes
  for (const p of LRN_PARAMS.filter((q) => q.size % 2 === 1)) {
    const c: Case = { name: 'lrn', op: 'LRN', shape: [1, p.C, 1, 1], attrs: { size: { i: p.size }, alpha: { f: p.alpha }, beta: { f: p.beta }, bias: { f: p.bias } } };
    const r = new Random(p.C + p.size);
    const s = Math.sqrt(p.size / p.alpha);
    const xs = Array.from({ length: 5 }, () => Float32Array.from({ length: p.C }, () => r.normal() * s));
    const ys = await evaluate(caseModel(c), c.shape, xs, 'y0');
    xs.forEach((x, k) => assert.ok(maxAbsDiff(ys[k], lrnRef(x, p.size, p.alpha, p.beta, p.bias)) <= 1e-5 * Math.max(1, maxAbs(ys[k])), `ORT vs spec at ${JSON.stringify(p)}`));
    const x = Array.from(xs[0], Number);
    const J = lrnJacobian(x, p.size, p.alpha, p.beta, p.bias);
    for (let j = 0; j < p.C; j++) {
      const h = 1e-6 * s;
      const xp = x.slice(), xm = x.slice();
      xp[j] += h; xm[j] -= h;
      const d = lrnRef(xp, p.size, p.alpha, p.beta, p.bias).map((v, i) => (v - lrnRef(xm, p.size, p.alpha, p.beta, p.bias)[i]) / (2 * h));
      for (let i = 0; i < p.C; i++) assert.ok(Math.abs(d[i] - J[i * p.C + j]) <= 1e-6, `∂y${i}/∂x${j}`);
    }
  }
});

test('LRN: no Jacobian (random points and adversarial ascent) exceeds the derived ℓ2 and ℓ∞ constants', () => {
  for (const p of LRN_PARAMS) {
    const { l2, linf } = lrnLipschitz(p.alpha, p.beta, p.bias, p.size, p.C);
    const norms = (x: number[]) => {
      const J = lrnJacobian(x, p.size, p.alpha, p.beta, p.bias);
      let rs = 0;
      for (let i = 0; i < p.C; i++) { let s = 0; for (let j = 0; j < p.C; j++) s += Math.abs(J[i * p.C + j]); rs = Math.max(rs, s); }
      return { two: sigmaMax(J, p.C, p.C), inf: rs };
    };
    const r = new Random(11 + p.size);
    const scale = Math.sqrt((p.bias * p.size) / p.alpha);
    const at0 = norms(new Array(p.C).fill(0));
    let best2 = at0.two, bestInf = at0.inf;
    for (let s = 0; s < 300; s++) {
      const x = Array.from({ length: p.C }, () => r.normal() * scale * Math.exp(2 * r.normal()));
      const v = norms(x);
      best2 = Math.max(best2, v.two);
      bestInf = Math.max(bestInf, v.inf);
    }
    for (const which of ['two', 'inf'] as const) {
      for (let start = 0; start < 6; start++) {
        let x = Array.from({ length: p.C }, () => r.normal() * scale);
        let val = norms(x)[which], step = scale;
        for (let it = 0; it < 400; it++) {
          const y = x.map((v) => v + step * r.normal());
          const vy = norms(y)[which];
          if (vy > val) { x = y; val = vy; } else step *= 0.99;
        }
        if (which === 'two') best2 = Math.max(best2, val); else bestInf = Math.max(bestInf, val);
      }
    }
    assert.ok(best2 <= l2, `${JSON.stringify(p)}: ‖J‖₂ reached ${best2} > ${l2}`);
    assert.ok(bestInf <= linf, `${JSON.stringify(p)}: ‖J‖∞ reached ${bestInf} > ${linf}`);
    // never below the value at x = 0, J = bias^−β I; and not far above what the ascent reaches
    assert.ok(best2 >= Math.pow(p.bias, -p.beta) * (1 - 1e-9) && l2 <= 1.25 * best2, `${JSON.stringify(p)}: ℓ2 ${l2} vs reached ${best2}`);
    assert.ok(linf <= 1.25 * bestInf, `${JSON.stringify(p)}: ℓ∞ ${linf} vs reached ${bestInf}`);
  }
});

test('every registry row has a case in this file (or is covered by a family case)', () => {
  const key = (domain: string | undefined, op: string) => (domain ? `${domain}:${op}` : op);
  const covered = new Set([...LINEAR, ...ACTIVATIONS, ...LIPSCHITZ, ...CLASSIFIED].flatMap((c) => [key(c.domain, c.op), ...(c.before ?? []).map((b) => key(b.domain, b.op))]));
  // rows whose converter is shared with a tested row of the same family
  const shared = new Set(['Less', 'Equal', 'GreaterOrEqual', 'LessOrEqual', 'ArgMin', 'Ceil', 'Mod', 'IsNaN', 'IsInf', 'OneHot', 'Sinh', 'Cosh', 'Asin', 'Acos', 'Acosh', 'Atanh', 'ReduceSumSquare', 'ReduceLogSum', 'MeanVarianceNormalization', 'ConvInteger', 'MatMulInteger', 'QLinearConv']);
  const patterns = OP_REGISTRY.filter((r) => r.domain === PATTERN_DOMAIN).map((r) => r.opType);
  const missing = OP_REGISTRY.filter((r) => r.domain !== PATTERN_DOMAIN && !covered.has(key(r.domain, r.opType)) && !shared.has(r.opType)).map((r) => key(r.domain, r.opType));
  assert.deepEqual(missing, []);
  assert.equal(patterns.length, 5);
});

test('fusePatterns leaves a product whose intermediate value is used elsewhere alone', () => {
  const c: Case = { name: 'shared', op: 'Add', shape: [3], inputs: ['m', 's'], before: [{ op: 'Sigmoid', inputs: ['x'], output: 's' }, { op: 'Mul', inputs: ['x', 's'], output: 'm' }] };
  const { fused } = fusePatterns(decodeModel(caseModel(c), 'shared.onnx'));
  assert.deepEqual(fused, []);
});

/** erf in float64 to ~1e-14: its Taylor series below 2.5, the continued fraction of erfc above. */
function erf(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 2.5) {
    let term = z, sum = z;
    for (let n = 1; n < 80; n++) { term *= (-z * z) / n; sum += term / (2 * n + 1); }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = z;
    for (let n = 60; n >= 1; n--) f = z + (n / 2) / f;
    r = 1 - Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
  }
  return x < 0 ? -r : r;
}

test('slope constants of the GELU forms and SiLU (QuickGelu) hold a dense sample of their analytic derivatives, tightly', () => {
  const k = Math.sqrt(2 / Math.PI), kappa = 0.044715;
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  // f(v) = ½v(1 + tanh(v + ρv³)) is GELU_tanh(v/k)·k at ρ = κ/k²; its slope range is that of the tanh pattern's u-form / 2
  const tanhForm = (rho: number) => (v: number) => { const th = Math.tanh(v + rho * v ** 3); return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * (1 + 3 * rho * v * v); };
  const cases: { name: string; d: (x: number) => number; range: readonly [number, number]; slack: number }[] = [
    { name: 'GELU erf', d: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-x * x / 2)) / Math.sqrt(2 * Math.PI), range: SLOPES.geluErf, slack: 1e-6 },
    { name: 'GELU tanh', d: (x) => { const th = Math.tanh(k * (x + kappa * x ** 3)); return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * kappa * x * x); }, range: SLOPES.geluTanh, slack: 1e-6 },
    { name: 'SiLU', d: (x) => sigmoid(x) * (1 + x * (1 - sigmoid(x))), range: SLOPES.silu, slack: 1e-6 },
    ...[-1e-4, -5e-5, 0, 5e-5, 1e-4].map((e) => ({ name: `tanh form at ρ·(1 ${e < 0 ? '−' : '+'} ${Math.abs(e)})`, d: tanhForm((kappa / (k * k)) * (1 + e)), range: SLOPES.geluTanhNear, slack: e === 1e-4 ? 1e-6 : 6e-6 })),
  ];
  for (const c of cases) {
    let lo = Infinity, hi = -Infinity;
    // beyond ±30 every one of these slopes is within 1e-10 of 0 or 1, tending there monotonically
    for (let i = 0; i <= 600000; i++) { const d = c.d(-30 + i * 1e-4); lo = Math.min(lo, d); hi = Math.max(hi, d); }
    assert.ok(lo >= c.range[0] && hi <= c.range[1], `${c.name}: slopes [${lo}, ${hi}] outside [${c.range.join(', ')}]`);
    assert.ok(lo - c.range[0] <= c.slack && c.range[1] - hi <= c.slack, `${c.name}: [${c.range.join(', ')}] is looser than ${c.slack} around [${lo}, ${hi}]`);
    for (const x of [-30, 30]) assert.ok(Math.min(Math.abs(c.d(x)), Math.abs(c.d(x) - 1)) < 1e-10, `${c.name}: slope at ${x} is ${c.d(x)}`);
  }
});

test('com.microsoft BiasGelu with an input-dependent bias: the two operands summed, then the activation', async () => {
  const c: Case = { name: 'biasgelu', op: 'BiasGelu', domain: MS_DOMAIN, shape: [2, 4], inputs: ['x', 'b'], before: [{ op: 'ReduceMean', inputs: ['x'], output: 'b', attrs: { axes: { ints: [0] }, keepdims: { i: 0 } } }] };
  const { ir, bytes } = await caseIr(c);
  const act = ir.nodes.find((n) => n.kind === 'activation');
  const sum = ir.nodes.find((n) => n.kind === 'linear' && n.prim.op === 'sum');
  assert.ok(act && act.kind === 'activation' && act.fn === 'BiasGelu' && act.output === ir.output);
  assert.deepEqual(act.slope, SLOPES.geluErf);
  assert.ok(sum && sum.inputs.length === 2 && act.inputs[0] === sum.output, ir.nodes.map((n) => `${n.kind}:${n.opType}`).join(', '));
  // the sum x + mean₀(x) is linear with ‖·‖₂ ≤ 1 + 1/√2; no difference quotient of the node may exceed slope·that
  const r = new Random(5);
  const xs: Float32Array[] = [];
  for (let s = 0; s < 20; s++) { const x = Float32Array.from({ length: 8 }, () => 2 * r.normal()); xs.push(x, x.map((v) => v + 0.1 * r.normal())); }
  const ys = await evaluate(bytes, c.shape, xs, ir.output);
  for (let s = 0; s < xs.length; s += 2) {
    const q = Math.hypot(...ys[s + 1].map((v, i) => v - ys[s][i])) / Math.hypot(...xs[s + 1].map((v, i) => v - xs[s][i]));
    assert.ok(q <= SLOPES.geluErf[1] * (1 + Math.SQRT1_2) * (1 + 1e-4), `quotient ${q}`);
  }
});
