import type { IrNode } from '../ir/types.js';
import { sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';

/** An activation node; `params` and `operand` complete `fn`'s entry in src/ops/elementwise.ts (f and f′ from the IR alone). */
function activation(ctx: ConvertContext, fn: string, lo: number, hi: number, params?: Record<string, number>, operand?: Tensor): IrNode[] {
  return [{ kind: 'activation', fn, slope: [lo, hi], ...(params ? { params } : {}), ...(operand ? { operand } : {}), ...base(ctx, [dynamicInputs(ctx)[0]], ctx.outputs[0], ctx.outShapes[0]) }];
}

/** An elementwise op with a fixed slope range (ALGORITHMS.md §1 table). */
export function slopeRange(lo: number, hi: number): Converter {
  return (ctx) => activation(ctx, ctx.opType, lo, hi);
}

const leakyRelu: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 0.01);
  return activation(ctx, 'LeakyRelu', Math.min(a, 1), Math.max(a, 1), { alpha: a });
};

// Elu: slope 1 above 0 and αeˣ ∈ (0, α) below
const elu: Converter = (ctx) => { const a = ctx.attrs.float('alpha', 1); return activation(ctx, 'Elu', Math.min(0, a), Math.max(1, a), { alpha: a }); };

// Selu: slope γ above 0 and γαeˣ (between 0 and γα) below
const selu: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 1.67326319217681884765625), g = ctx.attrs.float('gamma', 1.05070102214813232421875);
  return activation(ctx, 'Selu', Math.min(0, g, g * a), Math.max(0, g, g * a), { alpha: a, gamma: g });
};

// HardSigmoid: max(0, min(1, αx + β)), slope 0 or α
const hardSigmoid: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 0.2), b = ctx.attrs.float('beta', 0.5);
  return activation(ctx, 'HardSigmoid', Math.min(0, a), Math.max(0, a), { alpha: a, beta: b });
};

// Celu: slope 1 above 0 and e^(x/α) ∈ (0, 1) below (α > 0)
const celu: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 1);
  if (!(a > 0)) unsupported(ctx, `alpha ${a} must be positive`);
  return activation(ctx, 'Celu', 0, 1, { alpha: a });
};

/** Shrink: x − bias above lambd, x + bias below −lambd, 0 between: continuous only when bias = lambd. */
const shrink: Converter = (ctx) => {
  const bias = ctx.attrs.float('bias', 0), lambd = ctx.attrs.float('lambd', 0.5);
  if (bias !== lambd) return discontinuous(`jumps by ${Math.abs(lambd - bias)} at ±${lambd} (bias ${bias} ≠ lambd ${lambd})`)(ctx);
  return activation(ctx, 'Shrink', 0, 1, { bias, lambd });
};

/** ThresholdedRelu: x above alpha, else 0; a jump of size alpha unless alpha = 0 (ReLU). */
const thresholdedRelu: Converter = (ctx) => {
  const a = ctx.attrs.float('alpha', 1);
  if (a !== 0) return discontinuous(`jumps from 0 to ${a} at x = ${a}`)(ctx);
  return activation(ctx, 'ThresholdedRelu', 0, 1, { alpha: a });
};

/**
 * Slope ranges of x·g(x) activations, derived numerically (fourth-order differences on a 10⁻³ grid over [−20, 20],
 * refined by golden section, beyond which the slopes tend monotonically to 0 and 1) and rounded outward by ≥ 5·10⁻⁷.
 * GELU (erf): d/dx xΦ(x) = Φ(x) + xφ(x), extreme at ±√2: (1 + erf 1)/2 + e⁻¹/√π = 1.12890415, and 1 − that.
 */
export const SLOPES = {
  geluErf: [-0.128905, 1.128905],
  /** Tanh form: d/dx ½x(1 + tanh(k(x + κx³))), k = √(2/π), κ = 0.044715; extreme 1.1289930687 at x = ±1.4185 (and 1 − that). */
  geluTanh: [-0.128994, 1.128994],
  /**
   * The tanh form with any constants of ratio ρ = κ/k² within 10⁻⁴ (relative) of the standard one: the extreme slope
   * moves by at most 2.32·10⁻⁶ over that band (1.1289954 at ρ·(1 + 10⁻⁴)), for exporters that round k and kκ.
   */
  geluTanhNear: [-0.128996, 1.128996],
  silu: [-0.09984, 1.09984],
  mish: [-0.112527, 1.088499],
  hardSwish: [-0.5, 1.5],
  /** erf′(x) = (2/√π)e^(−x²) ∈ (0, 2/√π = 1.1283791671]. */
  erf: [0, 1.128380],
} as const satisfies Record<string, readonly [number, number]>;

const gelu: Converter = (ctx) => {
  const approx = ctx.attrs.string('approximate', 'none');
  if (approx !== 'none' && approx !== 'tanh') unsupported(ctx, `approximate '${approx}' is not one of none, tanh`);
  const [lo, hi] = approx === 'tanh' ? SLOPES.geluTanh : SLOPES.geluErf;
  return activation(ctx, 'Gelu', lo, hi, { approximate: approx === 'tanh' ? 1 : 0 });
};

/**
 * The constant operands of Max/Min with one input-dependent operand, folded into one tensor of the output's shape
 * (their elementwise max or min, numpy broadcasting): max(u, c₁, c₂) = max(u, max(c₁, c₂)).
 */
function foldConstants(ctx: ConvertContext, fn: 'Max' | 'Min', out: readonly number[]): Tensor | undefined {
  const consts = ctx.inputs.map((v, i) => constantInput(ctx, i)).filter((t): t is Tensor => t !== null);
  if (consts.length === 0) return undefined;
  const n = sizeOf(out), r = out.length;
  const data = new Float64Array(n).fill(fn === 'Max' ? -Infinity : Infinity);
  for (const t of consts) {
    const v = toFloat64(t), d = r - t.dims.length;
    const idx = new Array(r).fill(0);
    for (let flat = 0; flat < n; flat++) {
      let off = 0;
      for (let i = 0; i < t.dims.length; i++) off = off * t.dims[i] + (t.dims[i] === 1 ? 0 : idx[i + d]);
      data[flat] = fn === 'Max' ? Math.max(data[flat], v[off]) : Math.min(data[flat], v[off]);
      for (let i = r - 1; i >= 0; i--) { if (++idx[i] < out[i]) break; idx[i] = 0; }
    }
  }
  return { dtype: 'float64', dims: [...out], data };
}

/** Clip's constant bounds (attributes before opset 11, inputs after); ±3.4e38, which exporters write for "none", as ±∞. */
function clipBounds(ctx: ConvertContext): Record<string, number> {
  const scalar = (i: number) => { const t = constantInput(ctx, i); return t && sizeOf(t.dims) === 1 ? toFloat64(t)[0] : null; };
  const lo = ctx.opset < 11 ? ctx.attrs.float('min', -Infinity) : scalar(1) ?? -Infinity;
  const hi = ctx.opset < 11 ? ctx.attrs.float('max', Infinity) : scalar(2) ?? Infinity;
  return { min: lo > -3e38 ? lo : -Infinity, max: hi < 3e38 ? hi : Infinity };
}

/** Max or Min of several tensors: with one input-dependent operand an activation of slope [0, 1]; else 1-Lipschitz in the stacked inputs. */
function maxMin(fn: 'Max' | 'Min'): Converter {
  return (ctx) => {
    const dyn = dynamicInputs(ctx);
    const out = ctx.outShapes[0];
    const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    if (dyn.length === 1 && size(dyn[0].shape) === size(out)) return activation(ctx, fn, 0, 1, undefined, foldConstants(ctx, fn, out));
    // |max(a) − max(b)| ≤ max_i |a_i − b_i| ≤ ‖a − b‖ per element; a broadcast input feeds out/in elements
    const spread = Math.sqrt(Math.max(...dyn.map((d) => size(out) / size(d.shape))));
    return [{
      kind: 'lipschitz', fn, l2: spread, linf: 1,
      note: `elementwise ${fn.toLowerCase()} of ${ctx.inputs.length} tensors: 1-Lipschitz in the stacked inputs${spread > 1 ? ` (broadcast ×${spread.toFixed(3)})` : ''}`,
      ...base(ctx, dyn, ctx.outputs[0], out),
    }];
  };
}

/**
 * LogSoftmax over groups of n: J = I − 1pᵀ, an oblique projection ((I − 1pᵀ)² = I − 1pᵀ since pᵀ1 = 1), so
 * ‖J‖₂ = ‖1pᵀ‖₂ = √n‖p‖₂ < √n; rows of J sum in absolute value to 2(1 − p_i) < 2.
 */
const logSoftmax: Converter = (ctx) => {
  const dims = ctx.outShapes[0];
  const r = dims.length;
  let axis = ctx.attrs.int('axis', ctx.opset >= 13 ? -1 : 1);
  if (axis < 0) axis += r;
  const n = ctx.opset >= 13 ? dims[axis] : dims.slice(axis).reduce((a, b) => a * b, 1);
  return [{
    kind: 'lipschitz', fn: 'LogSoftmax', l2: Math.sqrt(n), linf: 2, groups: { ...softmaxGroups(ctx), log: true },
    note: `the Jacobian I − 1pᵀ over ${n} classes has norm √n‖p‖ < √${n} (ℓ∞: 2)`,
    ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]),
  }];
};

const prelu: Converter = (ctx) => {
  if (dynamicInputs(ctx).length !== 1 || ctx.inputs[1]?.dynamic) unsupported(ctx, 'an input-dependent slope is a product of two input-dependent tensors');
  const s = toFloat64(constantInput(ctx, 1)!);
  let lo = 1, hi = 1;
  for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return activation(ctx, 'PRelu', lo, hi, undefined, constantInput(ctx, 1)!);
};

const clip: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  if (dyn.length === 1 && dyn[0].index === 0) return activation(ctx, 'Clip', 0, 1, clipBounds(ctx));
  // min(max(x, lo), hi) with input-dependent bounds: |Δy| ≤ max(|Δx|, |Δlo|, |Δhi|) per element, in the stacked inputs
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  const out = ctx.outShapes[0];
  const spread = Math.sqrt(Math.max(...dyn.map((d) => size(out) / size(d.shape))));
  return [{ kind: 'lipschitz', fn: 'Clip', l2: spread, linf: 1, note: 'clip with input-dependent bounds: 1-Lipschitz in the stacked inputs', ...base(ctx, dyn, ctx.outputs[0], out) }];
};

/** Softmax's groups: along `axis` from opset 13, over the 2-D flattening at `axis` before. */
function softmaxGroups(ctx: ConvertContext): { outer: number; len: number; inner: number } {
  const dims = ctx.outShapes[0];
  let axis = ctx.attrs.int('axis', ctx.opset >= 13 ? -1 : 1);
  if (axis < 0) axis += dims.length;
  const outer = sizeOf(dims.slice(0, axis));
  return ctx.opset >= 13 ? { outer, len: dims[axis], inner: sizeOf(dims.slice(axis + 1)) } : { outer, len: sizeOf(dims.slice(axis)), inner: 1 };
}

const softmax: Converter = (ctx) => [{
  kind: 'lipschitz', fn: 'Softmax', l2: 0.5, linf: 0.5, groups: softmaxGroups(ctx),
  note: 'the Jacobian diag(p) − ppᵀ has norm at most 1/2 (ℓ2 and ℓ∞)',
  ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]),
}];

/** A node with no global Lipschitz constant. */
export function noGlobalConstant(why: string): Converter {
  return (ctx) => [{ kind: 'unbounded', reason: why, derived: false, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
}

/** A node whose output jumps: no Lipschitz constant at all. */
export function discontinuous(why: string): Converter {
  return (ctx) => [{ kind: 'discontinuous', reason: why, derived: false, ...base(ctx, dynamicInputs(ctx), ctx.outputs[0], ctx.outShapes[0]) }];
}

/** Converters of elementwise activations and other nonlinear nodes. */
export const activationConverters = { leakyRelu, elu, prelu, clip, softmax, selu, hardSigmoid, celu, shrink, thresholdedRelu, gelu, max: maxMin('Max'), min: maxMin('Min'), logSoftmax };
