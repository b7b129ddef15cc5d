import { sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import type { ActivationNode } from '../ir/types.js';

/** Scalar parameters of an elementwise function (ONNX attribute names; the ONNX defaults apply where absent). */
export type Params = Readonly<Record<string, number>>;

/**
 * One elementwise function of the IR: its value and derivative at u, given the node's scalar parameters and the
 * element c of its constant operand (NaN when it has none), and where the derivative jumps. Pure float64 arithmetic:
 * the lower bound evaluates activations from the IR with it (src/estimators/ir-eval.ts).
 */
export interface Elementwise {
  readonly f: (u: number, p: Params, c: number) => number;
  readonly df: (u: number, p: Params, c: number) => number;
  /** Points where f′ jumps (f′ is continuous elsewhere); none for smooth functions. */
  readonly kinks?: (p: Params, c: number) => readonly number[];
}

const SQRT2 = Math.SQRT2, TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI), INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
/** √(2/π) and 0.044715: the tanh form of GELU (ONNX Gelu approximate='tanh', com.microsoft FastGelu). */
const GELU_K = Math.sqrt(2 / Math.PI), GELU_C = 0.044715;

/**
 * erf(x) in float64 (JavaScript has none): the Maclaurin series below |x| = 2.5 (terms below 2⁻⁵⁶ of the sum, at most
 * e^6.25 ≈ 520 times the result, so ≈ 10⁻¹³ relative), a continued fraction for erfc above (Lentz, ≈ 10⁻¹⁵).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // erf x = (2/√π) Σ (−1)ⁿ x^(2n+1) / (n!(2n+1))
    let term = x, sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * sum;
  }
  if (ax > 6) return Math.sign(x);
  // erfc x = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), by the modified Lentz method
  const tiny = 1e-300;
  let f = ax, c = ax, d = 0;
  for (let n = 1; n < 300; n++) {
    const a = n / 2;
    d = ax + a * d; d = Math.abs(d) < tiny ? tiny : d; d = 1 / d;
    c = ax + a / c; c = Math.abs(c) < tiny ? tiny : c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f);
  return Math.sign(x) * (1 - erfc);
}

const sigmoid = (u: number) => (u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u)));
/** log(1 + eᵘ) without overflow. */
const softplus = (u: number) => Math.max(u, 0) + Math.log1p(Math.exp(-Math.abs(u)));
const phi = (u: number) => INV_SQRT_2PI * Math.exp(-0.5 * u * u);
const Phi = (u: number) => 0.5 * (1 + erf(u / SQRT2));

const get = (p: Params, k: string, dflt: number) => p[k] ?? dflt;

/** max(0, min(1, αu + β)) and its slope (0 outside the ramp). */
const hardSigmoid = (u: number, a: number, b: number) => Math.max(0, Math.min(1, a * u + b));
const hardSigmoidSlope = (u: number, a: number, b: number) => { const v = a * u + b; return v > 0 && v < 1 ? a : 0; };
const hardSigmoidKinks = (a: number, b: number) => (a !== 0 ? [-b / a, (1 - b) / a] : []);

/** u·(a + tanh(αu + γu³)) (the tanh form of GELU is ½u(1 + tanh(k(u + 0.044715u³)))). */
const tanhGelu = (u: number, a: number, al: number, ga: number) => u * (a + Math.tanh(al * u + ga * u * u * u));
const tanhGeluSlope = (u: number, a: number, al: number, ga: number) => {
  const t = Math.tanh(al * u + ga * u * u * u);
  return a + t + u * (1 - t * t) * (al + 3 * ga * u * u);
};
const erfGelu = (u: number) => u * Phi(u);
const erfGeluSlope = (u: number) => Phi(u) + u * phi(u);
const mish = (u: number) => u * Math.tanh(softplus(u));
const mishSlope = (u: number) => { const t = Math.tanh(softplus(u)); return t + u * (1 - t * t) * sigmoid(u); };
const silu = (u: number) => u * sigmoid(u);
const siluSlope = (u: number) => { const s = sigmoid(u); return s + u * s * (1 - s); };
const relu = (u: number) => (u > 0 ? u : 0);
const step = (u: number) => (u > 0 ? 1 : 0);
const at0 = () => [0] as const;

/**
 * THE table of elementwise functions, keyed by an ActivationNode's `fn` (ONNX semantics and attribute defaults; the
 * com.microsoft contrib ops and the fused x·g(x) patterns of src/ops/patterns.ts with their constants in `params`).
 * Every activation row of the registry produces one of these keys (test/unit/ops/elementwise.test.ts checks f′ against
 * a float64 central difference of f, and that f′ stays in the node's slope range).
 */
export const ELEMENTWISE: Readonly<Record<string, Elementwise>> = {
  Relu: { f: relu, df: step, kinks: at0 },
  LeakyRelu: { f: (u, p) => (u >= 0 ? u : get(p, 'alpha', 0.01) * u), df: (u, p) => (u >= 0 ? 1 : get(p, 'alpha', 0.01)), kinks: at0 },
  /** The slope below 0 is the operand (PRelu's constant slope tensor, broadcast). */
  PRelu: { f: (u, _p, c) => (u >= 0 ? u : c * u), df: (u, _p, c) => (u >= 0 ? 1 : c), kinks: at0 },
  Sigmoid: { f: sigmoid, df: (u) => { const s = sigmoid(u); return s * (1 - s); } },
  HardSigmoid: {
    f: (u, p) => hardSigmoid(u, get(p, 'alpha', 0.2), get(p, 'beta', 0.5)),
    df: (u, p) => hardSigmoidSlope(u, get(p, 'alpha', 0.2), get(p, 'beta', 0.5)),
    kinks: (p) => hardSigmoidKinks(get(p, 'alpha', 0.2), get(p, 'beta', 0.5)),
  },
  Tanh: { f: Math.tanh, df: (u) => { const t = Math.tanh(u); return 1 - t * t; } },
  Softplus: { f: softplus, df: sigmoid },
  Softsign: { f: (u) => u / (1 + Math.abs(u)), df: (u) => 1 / ((1 + Math.abs(u)) ** 2) },
  Elu: { f: (u, p) => (u > 0 ? u : get(p, 'alpha', 1) * Math.expm1(u)), df: (u, p) => (u > 0 ? 1 : get(p, 'alpha', 1) * Math.exp(u)), kinks: at0 },
  Selu: {
    f: (u, p) => get(p, 'gamma', 1.05070102214813232421875) * (u > 0 ? u : get(p, 'alpha', 1.67326319217681884765625) * Math.expm1(u)),
    df: (u, p) => get(p, 'gamma', 1.05070102214813232421875) * (u > 0 ? 1 : get(p, 'alpha', 1.67326319217681884765625) * Math.exp(u)),
    kinks: at0,
  },
  Celu: { f: (u, p) => { const a = get(p, 'alpha', 1); return u > 0 ? u : a * Math.expm1(u / a); }, df: (u, p) => (u > 0 ? 1 : Math.exp(u / get(p, 'alpha', 1))) },
  /** min/max: the bounds (±∞ when absent). */
  Clip: {
    f: (u, p) => Math.min(get(p, 'max', Infinity), Math.max(get(p, 'min', -Infinity), u)),
    df: (u, p) => (u > get(p, 'min', -Infinity) && u < get(p, 'max', Infinity) ? 1 : 0),
    kinks: (p) => [get(p, 'min', -Infinity), get(p, 'max', Infinity)].filter(Number.isFinite),
  },
  Abs: { f: Math.abs, df: (u) => (u > 0 ? 1 : -1), kinks: at0 },
  /** Continuous only with bias = lambd (the converter calls the other case discontinuous). */
  Shrink: {
    f: (u, p) => { const l = get(p, 'lambd', 0.5), b = get(p, 'bias', 0); return u > l ? u - b : u < -l ? u + b : 0; },
    df: (u, p) => { const l = get(p, 'lambd', 0.5); return u > l || u < -l ? 1 : 0; },
    kinks: (p) => [-get(p, 'lambd', 0.5), get(p, 'lambd', 0.5)],
  },
  ThresholdedRelu: { f: (u, p) => (u > get(p, 'alpha', 1) ? u : 0), df: (u, p) => (u > get(p, 'alpha', 1) ? 1 : 0), kinks: (p) => [get(p, 'alpha', 1)] },
  HardSwish: { f: (u) => u * hardSigmoid(u, 1 / 6, 0.5), df: (u) => hardSigmoid(u, 1 / 6, 0.5) + u * hardSigmoidSlope(u, 1 / 6, 0.5), kinks: () => [-3, 3] },
  /** approximate: 0 for the erf form, 1 for the tanh form. */
  Gelu: {
    f: (u, p) => (get(p, 'approximate', 0) ? tanhGelu(u, 1, GELU_K, GELU_K * GELU_C) / 2 : erfGelu(u)),
    df: (u, p) => (get(p, 'approximate', 0) ? tanhGeluSlope(u, 1, GELU_K, GELU_K * GELU_C) / 2 : erfGeluSlope(u)),
  },
  Mish: { f: mish, df: mishSlope },
  Erf: { f: erf, df: (u) => TWO_OVER_SQRT_PI * Math.exp(-u * u) },
  Sin: { f: Math.sin, df: Math.cos },
  Cos: { f: Math.cos, df: (u) => -Math.sin(u) },
  Atan: { f: Math.atan, df: (u) => 1 / (1 + u * u) },
  Asinh: { f: Math.asinh, df: (u) => 1 / Math.sqrt(1 + u * u) },
  /** max/min(u, c) with the constant operand c (the elementwise max/min of all constant operands). */
  Max: { f: (u, _p, c) => Math.max(u, c), df: (u, _p, c) => (u > c ? 1 : 0), kinks: (_p, c) => [c] },
  Min: { f: (u, _p, c) => Math.min(u, c), df: (u, _p, c) => (u < c ? 1 : 0), kinks: (_p, c) => [c] },
  // com.microsoft: a constant bias (the operand, 0 without) is added first
  BiasGelu: { f: (u, _p, c) => erfGelu(u + (Number.isNaN(c) ? 0 : c)), df: (u, _p, c) => erfGeluSlope(u + (Number.isNaN(c) ? 0 : c)) },
  FastGelu: {
    f: (u, _p, c) => tanhGelu(u + (Number.isNaN(c) ? 0 : c), 1, GELU_K, GELU_K * GELU_C) / 2,
    df: (u, _p, c) => tanhGeluSlope(u + (Number.isNaN(c) ? 0 : c), 1, GELU_K, GELU_K * GELU_C) / 2,
  },
  QuickGelu: { f: (u, p) => { const a = get(p, 'alpha', 1.702); return a === 0 ? u / 2 : silu(a * u) / a; }, df: (u, p) => { const a = get(p, 'alpha', 1.702); return a === 0 ? 0.5 : siluSlope(a * u); } },
  // the fused x·g(x) patterns (src/ops/patterns.ts): scale·u·g(u) with the constants the matcher found
  'x·Sigmoid(x)': { f: (u, p) => get(p, 'scale', 1) * silu(u), df: (u, p) => get(p, 'scale', 1) * siluSlope(u) },
  'x·Tanh(Softplus(x))': { f: (u, p) => get(p, 'scale', 1) * mish(u), df: (u, p) => get(p, 'scale', 1) * mishSlope(u) },
  'x·HardSigmoid(x)': {
    f: (u, p) => get(p, 'scale', 1) * u * hardSigmoid(u, get(p, 'alpha', 0.2), get(p, 'beta', 0.5)),
    df: (u, p) => { const a = get(p, 'alpha', 0.2), b = get(p, 'beta', 0.5); return get(p, 'scale', 1) * (hardSigmoid(u, a, b) + u * hardSigmoidSlope(u, a, b)); },
    kinks: (p) => hardSigmoidKinks(get(p, 'alpha', 0.2), get(p, 'beta', 0.5)),
  },
  'x·(a + Erf(kx))': {
    f: (u, p) => get(p, 'scale', 1) * u * (get(p, 'a', 1) + erf(get(p, 'k', Math.SQRT1_2) * u)),
    df: (u, p) => { const k = get(p, 'k', Math.SQRT1_2); return get(p, 'scale', 1) * (get(p, 'a', 1) + erf(k * u) + u * k * TWO_OVER_SQRT_PI * Math.exp(-k * k * u * u)); },
  },
  'x·(a + Tanh(αx + γx³))': {
    f: (u, p) => get(p, 'scale', 1) * tanhGelu(u, get(p, 'a', 1), get(p, 'alpha', GELU_K), get(p, 'gamma', GELU_K * GELU_C)),
    df: (u, p) => get(p, 'scale', 1) * tanhGeluSlope(u, get(p, 'a', 1), get(p, 'alpha', GELU_K), get(p, 'gamma', GELU_K * GELU_C)),
  },
};

/** An activation node's function applied per element: f, f′ and the kinks of element i (its operand element broadcast). */
export interface BoundElementwise {
  f(u: number, i: number): number;
  df(u: number, i: number): number;
  kinks(i: number): readonly number[];
  /** True when f′ jumps somewhere (ReLU-like gates, Clip): the lower bound's walk softens those gates. */
  readonly kinked: boolean;
}

/** Flat indices into `operand` for each element of `shape` (numpy broadcasting, trailing axes aligned). */
export function broadcastMap(operand: readonly number[], shape: readonly number[]): Int32Array {
  const size = sizeOf(shape), r = shape.length, d = r - operand.length;
  const strides = new Array(r).fill(0);
  let s = 1;
  for (let i = operand.length - 1; i >= 0; i--) { strides[i + d] = operand[i] === 1 ? 0 : s; s *= operand[i]; }
  const map = new Int32Array(size);
  const idx = new Array(r).fill(0);
  for (let flat = 0; flat < size; flat++) {
    let off = 0;
    for (let i = 0; i < r; i++) off += idx[i] * strides[i];
    map[flat] = off;
    for (let i = r - 1; i >= 0; i--) { if (++idx[i] < shape[i]) break; idx[i] = 0; }
  }
  return map;
}

/** The elementwise function of an activation node, or why it has none in the table. */
export function elementwiseOf(node: ActivationNode): BoundElementwise | string {
  const e = ELEMENTWISE[node.fn];
  if (!e) return `activation ${node.fn} (node '${node.name}') has no entry in the elementwise table (src/ops/elementwise.ts)`;
  const p: Params = node.params ?? {};
  const operand: Tensor | undefined = node.operand;
  const shape = node.inShapes[0] ?? node.outShape;
  if (operand && operand.dims.length > shape.length) return `activation ${node.fn} (node '${node.name}') has a constant operand of rank ${operand.dims.length} above its input's ${shape.length}`;
  const values = operand ? toFloat64(operand) : null;
  const map = operand ? broadcastMap(operand.dims, shape) : null;
  const c = (i: number) => (values ? values[map![i]] : NaN);
  const kinks = e.kinks;
  const fixed = kinks && !values ? kinks(p, NaN) : null;
  return {
    f: (u, i) => e.f(u, p, c(i)),
    df: (u, i) => e.df(u, p, c(i)),
    kinks: (i) => (kinks ? fixed ?? kinks(p, c(i)) : []),
    kinked: kinks !== undefined,
  };
}
