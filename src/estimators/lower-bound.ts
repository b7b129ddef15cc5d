import type { Block, LinearRegion } from '../ir/merge.js';
import { isFloatType, sizeOf, toFloat64, type DType, type Tensor } from '../ir/tensor.js';
import type { ActivationNode, IrGraph, IrNode, LinearNode, Shape } from '../ir/types.js';
import { lanczosTop, NonFiniteError } from '../linalg/lanczos.js';
import { createOrtOperator, type LinearOperator } from '../backend/operators.js';
import { norm2, Random, scaleInPlace } from '../linalg/random.js';
import { ModelRunner } from '../backend/runner.js';
import type { RuntimeOptions } from '../backend/runtime.js';
import { pairRatio, witnessLowerBound } from '../linalg/witness.js';
import { CALL_FLOP, JS_ELEMENT_FLOP, nodeFlop } from '../linalg/work.js';
import { DATA_TYPES } from '../onnx/proto.js';
import type { OnnxModel, OnnxNode } from '../onnx/read-model.js';
import { encodeForRuntime } from '../onnx/writer.js';
import { operatorModels } from './operator-norm.js';
import type { NormKind } from './kinds.js';
import type { OperatorBackend } from '../ir/operator.js';

/** The model under analysis as the lower-bound and exact estimators see it: the original model, its IR and merged blocks. */
export interface AnalysedModel {
  /** The decoded original model: witnesses are confirmed through it (re-encoded with extra outputs where needed). */
  readonly model: OnnxModel;
  readonly ir: IrGraph;
  readonly blocks: readonly Block[];
  readonly inputName: string;
  readonly outputName: string;
  readonly inputShape: readonly number[];
  readonly runtime: RuntimeOptions;
  /** Operators and whole-model evaluations (src/backend/ in the CLI, fakes in tests). */
  readonly backend: OperatorBackend;
  readonly norm: NormKind;
}

/** What {@link jacobianLowerBound} needs: the model, its IR and merged blocks, and how hard to work. */
export interface LowerBoundArgs extends AnalysedModel {
  readonly seed: number;
  /**
   * Work budget in flop (linalg/work.ts): sizes the plan (see {@link planSearch}) and stops the search once the model
   * evaluations and Jacobian products it charged reach it. Counted, never timed: the same on every run. 0: no work.
   */
  readonly budget: number;
  /** Random starts x ~ N(0, I) per round (default 4); the best one begins the round's walk. */
  readonly starts?: number;
  /** Steps of each round's soft-gate walk (default 100; fewer when one round would not fit the budget). */
  readonly ascentSteps?: number;
  /** For the random-pair fallback: how many pairs, and directions to try first. */
  readonly pairs?: number;
  readonly hints?: readonly Float64Array[];
}

/** A witnessed lower bound: a real pair evaluated by onnxruntime on the original model, and how it was found. */
export interface LowerBoundResult {
  /** ‖f(x')−f(x)‖/‖x'−x‖ in the chosen norm, from the float32 inputs actually fed: a lower bound on L(f). */
  readonly value: number;
  /** 'jacobian-ascent' (σ_max or ℓ∞ row sum of J(x) through the IR, confirmed by a pair) or 'witness-pairs' (fallback). */
  readonly method: 'jacobian-ascent' | 'witness-pairs';
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  /** Runs of the original model (activation values and confirmation pairs, or the fallback's pairs). */
  readonly evaluations: number;
  /** Products with J(x) or J(x)ᵀ through the IR. */
  readonly products: number;
  /** The IR's ‖J(x)‖ at `irPoint`, the point whose confirmation gave the pair (never reported as the bound); null for the fallback. */
  readonly irNorm: number | null;
  readonly irPoint: Float32Array | null;
  /** True when the work budget stopped the plan early (the result is still the same on every run). */
  readonly truncated: boolean;
  /** Work charged (flop by the cost model: evaluations and products), at most a step past the budget. */
  readonly work: number;
  /** Model evaluations whose output (or an activation's value) was not finite, skipped: float32 overflow in the model. */
  readonly nonFinite: number;
  /** The search's size (absent for the fallback). */
  readonly plan?: SearchPlan;
  /** Why the Jacobian path was not taken, for the fallback. */
  readonly fallbackReason?: string;
}

type ConcatPart = { readonly dynamic: number } | { readonly zeros: Shape };

/** One step of the Jacobian's evaluation order. */
type Step =
  | { readonly kind: 'operator'; readonly input: string; readonly output: string; readonly op: LinearOperator }
  | { readonly kind: 'diag'; readonly node: ActivationNode; readonly kinks: readonly number[]; readonly clip: readonly [number, number] }
  | { readonly kind: 'maxpool'; readonly node: IrNode; readonly windows: PoolWindows }
  | { readonly kind: 'softmax'; readonly node: IrNode; readonly outer: number; readonly len: number; readonly inner: number }
  | { readonly kind: 'sum'; readonly node: IrNode; readonly signs: readonly number[] }
  | { readonly kind: 'concat'; readonly node: IrNode; readonly axis: number; readonly parts: readonly ConcatPart[] };

/** For each output element of a max-pool, the flat input indices of its window (−1 for padding). */
interface PoolWindows {
  readonly taps: number;
  readonly index: Int32Array;
}

/** What the Jacobian depends on at one point x. */
interface LocalState {
  readonly x: Float32Array;
  readonly fx: Float64Array;
  /** Per activation output: f'(u), and d/du f'(u) (smoothed at kinks) for the ascent. */
  readonly slope: Map<string, Slopes>;
  /** Per max-pool output: the winning input index of each window, and the pool's input values. */
  readonly argmax: Map<string, { am: Int32Array; u: Float64Array }>;
  readonly softmax: Map<string, Float64Array>;
  /** Each activation's input and output values, to re-derive the slopes with soft gates. */
  readonly raw: Map<string, { u: Float64Array; a: Float64Array }>;
}

/** An activation's derivative at its input u (kept for the safe step), and the derivative's smoothed derivative. */
interface Slopes { readonly d: Float64Array; readonly d2: Float64Array; readonly u: Float64Array }

const SUPPORTED_ACTIVATIONS = new Set(['Relu', 'LeakyRelu', 'PRelu', 'Sigmoid', 'Tanh', 'Softplus', 'Softsign', 'Elu', 'Clip']);

/** Lanczos steps from a random start, and warm-started from the previous point's vector. */
const START_LANCZOS = 30;
const WARM_LANCZOS = 6;
/** Soft-gate width τ (relative to a layer's RMS pre-activation) and step length (relative to ‖x‖) along the walk. */
const TAU_START = 1, TAU_END = 0.01;
const STEP_START = 0.1, STEP_END = 0.005;
/** Width of the Gaussian bump that stands in for the derivative of a hard gate in the polish's gradient. */
const BUMP_TAU = 0.05;
const POLISH_STEP = 0.025, POLISH_STEPS = 20;
/** Confirmation pairs: the fixed steps, the share of the pattern-preserving segment used, its cap and its floor (× ‖x‖). */
const FIXED_STEPS = [1e-2], SAFE_SHARE = 0.95, MAX_STEP = 0.1, MIN_SEGMENT = 1e-4;
/** ℓ∞: output rows examined per round when there are more. */
const MAX_ROWS = 32;
/** Products per random start and per walk step (measured averages), and the plan's share of the budget. */
const PRODUCTS_PER_START = 40, PRODUCTS_PER_STEP = 20, PLAN_SHARE = 0.5, MAX_ROUNDS = 8;

/** How much work the search does: fixed by the model's size and the budget, so it is the same on every run. */
export interface SearchPlan {
  readonly rounds: number;
  readonly starts: number;
  readonly walkSteps: number;
  readonly polishSteps: number;
}

/** A point with the top singular value and right vector of J(x). */
interface Point { readonly s: LocalState; readonly sigma: number; readonly v: Float64Array }
/** A point with its largest ℓ1 row of J(x) among those examined. */
interface RowPoint { readonly s: LocalState; readonly value: number; readonly row: number; readonly r: Float64Array }

function sign(r: Float64Array): Float64Array {
  return Float64Array.from(r, (v) => Math.sign(v));
}

function onnxNodeOf(model: OnnxModel, n: IrNode): OnnxNode | undefined {
  return model.nodes.find((m) => m.outputs[0] === n.output);
}

/** Window indices of MaxPool / GlobalMaxPool (ONNX semantics; padding never wins). */
function poolWindows(node: IrNode, onnxNode: OnnxNode): PoolWindows | string {
  const x = node.inShapes[0];
  const out = node.outShape;
  const r = x.length - 2;
  const a = onnxNode.attributes;
  let kernel: number[], strides: number[], dilations: number[], begin: number[];
  if (node.opType === 'GlobalMaxPool') {
    kernel = x.slice(2); strides = kernel.map(() => 1); dilations = kernel.map(() => 1); begin = kernel.map(() => 0);
  } else {
    const k = a.ints('kernel_shape', null);
    if (!k) return `MaxPool node '${node.name}' has no kernel_shape`;
    kernel = k;
    strides = a.ints('strides', new Array(r).fill(1))!;
    dilations = a.ints('dilations', new Array(r).fill(1))!;
    const autoPad = a.string('auto_pad', 'NOTSET');
    if (autoPad === 'NOTSET') begin = a.ints('pads', new Array(2 * r).fill(0))!.slice(0, r);
    else if (autoPad === 'VALID') begin = new Array(r).fill(0);
    else {
      begin = kernel.map((kk, i) => {
        const total = Math.max(0, (out[2 + i] - 1) * strides[i] + (kk - 1) * dilations[i] + 1 - x[2 + i]);
        return autoPad === 'SAME_LOWER' ? total - Math.floor(total / 2) : Math.floor(total / 2);
      });
    }
  }
  const taps = sizeOf(kernel);
  const spatialIn = x.slice(2), spatialOut = out.slice(2);
  const planesIn = sizeOf(spatialIn), planesOut = sizeOf(spatialOut);
  const planes = x[0] * x[1];
  const index = new Int32Array(planes * planesOut * taps);
  const o = new Array(r).fill(0), t = new Array(r).fill(0);
  for (let q = 0; q < planesOut; q++) {
    let rem = q;
    for (let i = r - 1; i >= 0; i--) { o[i] = rem % spatialOut[i]; rem = Math.floor(rem / spatialOut[i]); }
    for (let k = 0; k < taps; k++) {
      let kr = k;
      for (let i = r - 1; i >= 0; i--) { t[i] = kr % kernel[i]; kr = Math.floor(kr / kernel[i]); }
      let flat = 0, inside = true;
      for (let i = 0; i < r; i++) {
        const p = o[i] * strides[i] - begin[i] + t[i] * dilations[i];
        if (p < 0 || p >= spatialIn[i]) { inside = false; break; }
        flat = flat * spatialIn[i] + p;
      }
      for (let c = 0; c < planes; c++) index[(c * planesOut + q) * taps + k] = inside ? c * planesIn + flat : -1;
    }
  }
  return { taps, index };
}

/** A scalar constant input of a node (initializer or Constant node), or null. */
function scalarConstant(model: OnnxModel, name: string | undefined): number | null {
  if (!name) return null;
  const t = model.initializers.get(name) ?? model.nodes.find((m) => m.opType === 'Constant' && m.outputs[0] === name)?.attributes.tensor('value');
  return t && sizeOf(t.dims) === 1 ? toFloat64(t)[0] : null;
}

/** Where an activation's derivative jumps (0 for ReLU-like ones, Clip's scalar bounds), and Clip's bounds (±∞ when absent or not scalars). */
function kinksOf(n: ActivationNode, onnxNode: OnnxNode | undefined, model: OnnxModel, opset: number): { kinks: number[]; clip: [number, number] } {
  if (n.fn === 'Relu' || n.fn === 'LeakyRelu' || n.fn === 'PRelu') return { kinks: [0], clip: [-Infinity, Infinity] };
  if (n.fn !== 'Clip' || !onnxNode) return { kinks: [], clip: [-Infinity, Infinity] };
  const raw = opset < 11
    ? [onnxNode.attributes.float('min', -Infinity), onnxNode.attributes.float('max', Infinity)]
    : [scalarConstant(model, onnxNode.inputs[1]) ?? -Infinity, scalarConstant(model, onnxNode.inputs[2]) ?? Infinity];
  // ±3.4e38 (float32's extremes) are the defaults some exporters write for "no bound"
  const clip: [number, number] = [raw[0] > -3e38 ? raw[0] : -Infinity, raw[1] < 3e38 ? raw[1] : Infinity];
  return { kinks: clip.filter((b) => Number.isFinite(b)), clip };
}

/** The evaluation order of J(x), or the reason the IR cannot be differentiated here. */
async function planSteps(args: LowerBoundArgs, operators: LinearOperator[]): Promise<Step[] | string> {
  const { model, blocks } = args;
  const opset = model.opsets.get('') ?? 1;
  // regions become onnxruntime sessions only once the whole graph is known to be differentiable
  const steps: (Step | LinearRegion)[] = [];
  for (const b of blocks) {
    if (b.kind === 'operator') { steps.push(b.region); continue; }
    const n = b.node;
    switch (n.kind) {
      case 'activation':
        if (!SUPPORTED_ACTIVATIONS.has(n.fn)) return `activation ${n.fn} (node '${n.name}') has no derivative here`;
        steps.push({ kind: 'diag', node: n, ...kinksOf(n, onnxNodeOf(model, n), model, opset) });
        break;
      case 'lipschitz': {
        const onnxNode = onnxNodeOf(model, n);
        if (!onnxNode) return `node '${n.name}' was not found in the model`;
        if (n.fn === 'MaxPool' || n.fn === 'GlobalMaxPool') {
          const w = poolWindows(n, onnxNode);
          if (typeof w === 'string') return w;
          steps.push({ kind: 'maxpool', node: n, windows: w });
        } else if (n.fn === 'Softmax') {
          const dims = n.outShape;
          const rank = dims.length;
          let axis = onnxNode.attributes.int('axis', opset >= 13 ? -1 : 1);
          if (axis < 0) axis += rank;
          const outer = sizeOf(dims.slice(0, axis));
          // before opset 13 Softmax flattens to 2-D at `axis`: one group per row of [outer, rest]
          if (opset >= 13) steps.push({ kind: 'softmax', node: n, outer, len: dims[axis], inner: sizeOf(dims.slice(axis + 1)) });
          else steps.push({ kind: 'softmax', node: n, outer, len: sizeOf(dims.slice(axis)), inner: 1 });
        } else {
          return `nonlinear node ${n.fn} ('${n.name}') has no Jacobian here`;
        }
        break;
      }
      case 'linear':
        if (n.prim.op === 'sum') steps.push({ kind: 'sum', node: n, signs: n.prim.signs });
        else if (n.prim.op === 'concat') steps.push({ kind: 'concat', node: n, axis: n.prim.axis, parts: n.prim.parts });
        else return `multi-input linear node ${n.prim.op} ('${n.name}') has no Jacobian here`;
        break;
      case 'unbounded':
      case 'discontinuous':
        return `node '${n.name}' (${n.opType}) ${n.reason}`;
    }
  }
  const out: Step[] = [];
  for (const st of steps) {
    if ('kind' in st) { out.push(st); continue; }
    const op = await createOrtOperator(operatorModels(st), args.runtime);
    operators.push(op);
    out.push({ kind: 'operator', input: st.input, output: st.output, op });
  }
  return out;
}

/** Flat index maps from the output of a broadcasting op to one of its inputs. */
function broadcastIndex(inShape: Shape, outShape: Shape): Int32Array {
  const size = sizeOf(outShape);
  const r = outShape.length, d = r - inShape.length;
  const strides = new Array(r).fill(0);
  let s = 1;
  for (let i = inShape.length - 1; i >= 0; i--) { strides[i + d] = inShape[i] === 1 ? 0 : s; s *= inShape[i]; }
  const map = new Int32Array(size);
  const idx = new Array(r).fill(0);
  for (let flat = 0; flat < size; flat++) {
    let off = 0;
    for (let i = 0; i < r; i++) off += idx[i] * strides[i];
    map[flat] = off;
    for (let i = r - 1; i >= 0; i--) { if (++idx[i] < outShape[i]) break; idx[i] = 0; }
  }
  return map;
}

/** Jacobian-vector products of the IR at a point, through onnxruntime for linear regions. */
class Jacobian {
  products = 0;
  private readonly bcast = new Map<string, Int32Array>();

  constructor(private readonly ir: IrGraph, private readonly steps: readonly Step[]) {}

  private broadcast(node: IrNode, i: number): Int32Array {
    const key = `${node.output}#${i}`;
    let m = this.bcast.get(key);
    if (!m) { m = broadcastIndex(node.inShapes[i], node.outShape); this.bcast.set(key, m); }
    return m;
  }

  /** J(x)·v; `tangents` receives every intermediate tangent when given. */
  async jvp(s: LocalState, v: Float64Array, tangents = new Map<string, Float64Array>()): Promise<Float64Array> {
    this.products++;
    tangents.set(this.ir.input, v);
    for (const step of this.steps) {
      if (step.kind === 'operator') { tangents.set(step.output, await step.op.apply(tangents.get(step.input)!)); continue; }
      const n = step.node;
      const t = tangents.get(n.inputs[0])!;
      const out = new Float64Array(sizeOf(n.outShape));
      switch (step.kind) {
        case 'diag': { const d = s.slope.get(n.output)!.d; for (let i = 0; i < out.length; i++) out[i] = d[i] * t[i]; break; }
        case 'maxpool': { const am = s.argmax.get(n.output)!.am; for (let i = 0; i < out.length; i++) out[i] = t[am[i]]; break; }
        case 'softmax': softmaxJvp(s.softmax.get(n.output)!, t, out, step.outer, step.len, step.inner); break;
        case 'sum':
          n.inputs.forEach((name, k) => { const ti = tangents.get(name)!, m = this.broadcast(n, k), sg = step.signs[k]; for (let i = 0; i < out.length; i++) out[i] += sg * ti[m[i]]; });
          break;
        case 'concat': concatMove(n, step.axis, step.parts, (k) => tangents.get(n.inputs[k])!, out, false);
      }
      tangents.set(n.output, out);
    }
    // an output no step reaches is a constant of the input (an initializer as the output): its Jacobian is 0
    return tangents.get(this.ir.output) ?? new Float64Array(sizeOf(this.ir.outputShape));
  }

  /**
   * J(x)ᵀ·w plus Σ_u J_u(x)ᵀ·inject[u] (u an intermediate value, J_u its Jacobian from the input): one reverse sweep.
   * `cotangents` receives every intermediate cotangent when given.
   */
  async vjp(s: LocalState, w: Float64Array, inject?: ReadonlyMap<string, Float64Array>, cotangents = new Map<string, Float64Array>()): Promise<Float64Array> {
    this.products++;
    const cot = cotangents;
    const add = (name: string, g: Float64Array) => {
      const c = cot.get(name);
      if (!c) cot.set(name, Float64Array.from(g));
      else for (let i = 0; i < c.length; i++) c[i] += g[i];
    };
    for (const [k, g] of inject ?? []) add(k, g);
    add(this.ir.output, w);
    for (let j = this.steps.length - 1; j >= 0; j--) {
      const step = this.steps[j];
      if (step.kind === 'operator') {
        const g = cot.get(step.output);
        if (g) add(step.input, await step.op.adjoint(g));
        continue;
      }
      const n = step.node;
      const g = cot.get(n.output);
      if (!g) continue;
      const inSize = (k: number) => sizeOf(n.inShapes[k]);
      switch (step.kind) {
        case 'diag': { const d = s.slope.get(n.output)!.d; const r = new Float64Array(g.length); for (let i = 0; i < g.length; i++) r[i] = d[i] * g[i]; add(n.inputs[0], r); break; }
        case 'maxpool': { const am = s.argmax.get(n.output)!.am; const r = new Float64Array(inSize(0)); for (let i = 0; i < g.length; i++) r[am[i]] += g[i]; add(n.inputs[0], r); break; }
        case 'softmax': { const r = new Float64Array(g.length); softmaxJvp(s.softmax.get(n.output)!, g, r, step.outer, step.len, step.inner); add(n.inputs[0], r); break; }
        case 'sum':
          n.inputs.forEach((name, k) => { const r = new Float64Array(inSize(k)), m = this.broadcast(n, k), sg = step.signs[k]; for (let i = 0; i < g.length; i++) r[m[i]] += sg * g[i]; add(name, r); });
          break;
        case 'concat': {
          const parts = n.inputs.map((_, k) => new Float64Array(inSize(k)));
          concatMove(n, step.axis, step.parts, (k) => parts[k], g, true);
          n.inputs.forEach((name, k) => add(name, parts[k]));
        }
      }
    }
    return cot.get(this.ir.input) ?? new Float64Array(sizeOf(this.ir.inputShape));
  }
}

/** (diag(p) − ppᵀ)·t along each softmax group (the Jacobian is symmetric, so this is also the VJP). */
function softmaxJvp(p: Float64Array, t: Float64Array, out: Float64Array, outer: number, len: number, inner: number): void {
  for (let o = 0; o < outer; o++) for (let q = 0; q < inner; q++) {
    const base = o * len * inner + q;
    let pt = 0;
    for (let k = 0; k < len; k++) pt += p[base + k * inner] * t[base + k * inner];
    for (let k = 0; k < len; k++) { const i = base + k * inner; out[i] = p[i] * (t[i] - pt); }
  }
}

/** Copies concatenation parts into `whole` (or, with `split`, `whole` back into the parts; zero blocks are skipped). */
function concatMove(n: IrNode, axis: number, parts: readonly ConcatPart[], part: (k: number) => Float64Array, whole: Float64Array, split: boolean): void {
  const out = n.outShape;
  const outer = sizeOf(out.slice(0, axis)), inner = sizeOf(out.slice(axis + 1)), total = out[axis];
  let offset = 0;
  for (const p of parts) {
    const len = 'dynamic' in p ? n.inShapes[p.dynamic][axis] : p.zeros[axis];
    if ('dynamic' in p) {
      const a = part(p.dynamic);
      for (let o = 0; o < outer; o++) for (let k = 0; k < len * inner; k++) {
        const wi = (o * total + offset) * inner + k, pi = o * len * inner + k;
        if (split) a[pi] += whole[wi]; else whole[wi] = a[pi];
      }
    }
    offset += len;
  }
}

/**
 * f'(u) and d/du f'(u) of an activation, from its input u and output a as computed by onnxruntime. With `tauRel`, the
 * gates of piecewise-linear activations become sigmoids of width τ = tauRel·RMS(u) (the soft Jacobian of the walk);
 * without, f' is exact and d/du f' is a Gaussian bump at each kink, so the polish still sees nearby switches.
 */
function slopes(fn: string, u: Float64Array, a: Float64Array, range: readonly [number, number], clip: readonly [number, number], tauRel: number | null): Slopes {
  const n = u.length;
  const d = new Float64Array(n), d2 = new Float64Array(n);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += u[i] * u[i];
  const rms = Math.sqrt(ss / Math.max(1, n));
  // hard gates get a Gaussian bump at the kink in d2 so the ascent sees nearby switches; soft gates are σ(u/τ)
  const tau = Math.max((tauRel ?? BUMP_TAU) * rms, 1e-12);
  const bumpScale = 1 / (tau * Math.sqrt(2 * Math.PI));
  const alpha = range[0] !== 1 ? range[0] : range[1];
  for (let i = 0; i < n; i++) {
    const v = u[i], y = a[i];
    switch (fn) {
      case 'Relu':
      case 'LeakyRelu':
      case 'PRelu': {
        // f(u) = slope·u on each side of 0, so the slope below 0 is a/u exactly (up to a's float32 rounding)
        const lo = fn === 'Relu' ? 0 : v < 0 ? y / v : alpha;
        if (tauRel === null) { d[i] = v > 0 || (v === 0 && fn !== 'Relu') ? 1 : lo; d2[i] = (1 - lo) * bumpScale * Math.exp(-(v * v) / (2 * tau * tau)); }
        else { const g = 1 / (1 + Math.exp(-v / tau)); d[i] = lo + (1 - lo) * g; d2[i] = ((1 - lo) * g * (1 - g)) / tau; }
        break;
      }
      case 'Sigmoid': d[i] = y * (1 - y); d2[i] = d[i] * (1 - 2 * y); break;
      case 'Tanh': d[i] = 1 - y * y; d2[i] = -2 * y * d[i]; break;
      case 'Softplus': { const g = 1 / (1 + Math.exp(-v)); d[i] = g; d2[i] = g * (1 - g); break; }
      case 'Softsign': { const q = 1 + Math.abs(v); d[i] = 1 / (q * q); d2[i] = (-2 * Math.sign(v)) / (q * q * q); break; }
      // Elu: α(eᵘ−1) below 0, whose slope αeᵘ = a·eᵘ/(eᵘ−1)
      case 'Elu': d[i] = v >= 0 ? 1 : (y * Math.exp(v)) / Math.expm1(v); d2[i] = v >= 0 ? 0 : d[i]; break;
      // inside [min, max] Clip returns its input unchanged, outside it a bound; soft: σ((u−min)/τ) − σ((u−max)/τ)
      case 'Clip': {
        const [lo, hi] = clip;
        if (tauRel === null) {
          d[i] = y === Math.fround(v) ? 1 : 0;
          if (Number.isFinite(lo)) d2[i] += bumpScale * Math.exp(-((v - lo) ** 2) / (2 * tau * tau));
          if (Number.isFinite(hi)) d2[i] -= bumpScale * Math.exp(-((v - hi) ** 2) / (2 * tau * tau));
        } else {
          const gl = Number.isFinite(lo) ? 1 / (1 + Math.exp(-(v - lo) / tau)) : 1;
          const gh = Number.isFinite(hi) ? 1 / (1 + Math.exp(-(v - hi) / tau)) : 0;
          d[i] = gl - gh;
          d2[i] = (gl * (1 - gl) - gh * (1 - gh)) / tau;
        }
        break;
      }
    }
  }
  return { d, d2, u };
}

function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

/** True when every value is finite (no float32 overflow, no NaN). */
function allFinite(v: ArrayLike<number>): boolean {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
  return true;
}

function normOf(v: ArrayLike<number>, inf: boolean): number {
  return inf ? maxAbs(v) : norm2(v);
}

/** Zero tensors for the model's other inputs, as the IR build holds them. */
function otherFeeds(model: OnnxModel, inputName: string): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const o of model.inputs) {
    if (o.name === inputName || model.initializers.has(o.name)) continue;
    const dims = (o.dims ?? []).map((d) => (typeof d === 'number' ? d : 1));
    const dtype = (DATA_TYPES[o.elemType] as DType) ?? 'float32';
    const size = sizeOf(dims);
    const data = dtype === 'float64' ? new Float64Array(size) : dtype === 'int64' ? new BigInt64Array(size) : dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
    feeds[o.name] = { dtype, dims, data };
  }
  return feeds;
}


/** The cost model's price (flop, linalg/work.ts) of one product with J(x) and of one run of the model. */
export function searchCosts(blocks: readonly Block[], input: number): { product: number; evaluation: number } {
  let product = input * JS_ELEMENT_FLOP * 4;
  let evaluation = CALL_FLOP + input * JS_ELEMENT_FLOP;
  for (const b of blocks) {
    if (b.kind === 'operator') {
      product += CALL_FLOP;
      for (const n of b.region.nodes) { product += nodeFlop(n); evaluation += nodeFlop(n); }
    } else {
      product += sizeOf(b.node.outShape) * JS_ELEMENT_FLOP;
      evaluation += sizeOf(b.node.outShape) * 2 * JS_ELEMENT_FLOP;
    }
  }
  return { product, evaluation };
}

/**
 * The search's size, from the cost model of one product with J(x) (searchCosts): rounds fill about half the budget,
 * and a model too large for one full round gets a shorter walk. The search then stops wherever its counted work
 * reaches the budget, so plan and stop are the same on every run.
 */
export function planSearch(blocks: readonly Block[], sizes: { input: number; output: number }, norm: NormKind, budget: number, starts = 4, walkSteps = 100): SearchPlan {
  const productFlop = searchCosts(blocks, sizes.input).product;
  // ℓ∞: a start measures every sampled row; a walk step takes three products, a state and a row (all rows every tenth)
  const rows = Math.min(sizes.output, MAX_ROWS);
  const perStart = norm === 'inf' ? rows + 1 : PRODUCTS_PER_START;
  const perStep = norm === 'inf' ? 7 + rows / 10 : PRODUCTS_PER_STEP;
  const roundFlop = (starts * perStart + walkSteps * perStep) * productFlop;
  const room = PLAN_SHARE * budget;
  const rounds = Math.max(1, Math.min(MAX_ROUNDS, Math.floor(room / roundFlop)));
  // a model too large for one round gets fewer starts and a shorter walk, in proportion
  const fit = Math.min(1, room / roundFlop);
  return { rounds, starts: Math.max(1, Math.round(starts * fit)), walkSteps: Math.max(5, Math.floor(walkSteps * fit)), polishSteps: norm === 'inf' ? 0 : POLISH_STEPS };
}

/**
 * A witnessed lower bound on the Lipschitz constant (ALGORITHMS.md §3), in ℓ2 or ℓ∞. Through the IR it computes
 * ‖J_f(x)‖ — σ_max by Lanczos on JᵀJ (ℓ2), the largest ℓ1 row norm (ℓ∞) — with linear regions applied by their
 * onnxruntime operators and activations, max-pools and softmaxes as their exact derivatives at x (values read off the
 * original model). It maximises that over x: random starts, then an ascent along ∇_x(uᵀJ(x)v) for the top singular
 * pair (ℓ∞: the top row and its signs) with ReLU-like gates softened and annealed. The best points are CONFIRMED by
 * pairs run through the original model — along the longest segment on which no activation pattern changes — and the
 * value reported is the best pair's ratio ‖f(x′)−f(x)‖/‖x′−x‖ from the float32 inputs fed, never the IR's norm.
 * Graphs the IR cannot differentiate (unbounded or discontinuous nodes) fall back to random pairs
 * ({@link witnessLowerBound}). Deterministic for a seed: the work budget is counted (searchCosts), so even a truncated plan stops at the same step.
 */
export async function jacobianLowerBound(args: LowerBoundArgs): Promise<LowerBoundResult> {
  const inf = args.norm === 'inf';
  const feeds = otherFeeds(args.model, args.inputName);
  const operators: LinearOperator[] = [];
  let runner: ModelRunner | null = null;
  try {
    const planned = await planSteps(args, operators);
    if (typeof planned === 'string') return await fallback(args, feeds, planned);
    const steps = planned;
    const extra = new Set<string>();
    for (const s of steps) {
      if (s.kind === 'diag') { extra.add(s.node.inputs[0]); extra.add(s.node.output); }
      if (s.kind === 'maxpool') extra.add(s.node.inputs[0]);
      if (s.kind === 'softmax') extra.add(s.node.output);
    }
    extra.delete(args.inputName);
    const wanted = [args.outputName, ...[...extra].filter((e) => e !== args.outputName)];
    runner = await ModelRunner.create(encodeForRuntime(args.model, [...extra]), args.runtime, 'the model (Jacobian witness)');
    const search = new Search(args, steps, runner, wanted, feeds);
    return await (inf ? search.runInf() : search.runL2());
  } finally {
    await runner?.release();
    for (const op of operators) await op.dispose();
  }
}

async function fallback(args: LowerBoundArgs, feeds: Record<string, Tensor>, reason: string): Promise<LowerBoundResult> {
  const out = args.model.outputs.find((o) => o.name === args.outputName);
  const dtype = out ? (DATA_TYPES[out.elemType] as DType | undefined) : undefined;
  if (dtype && !isFloatType(dtype)) {
    const x = new Float32Array(sizeOf(args.inputShape));
    return { value: 0, method: 'witness-pairs', x, xPrime: x, evaluations: 0, products: 0, irNorm: null, irPoint: null, truncated: false, work: 0, nonFinite: 0, fallbackReason: `${reason}; output '${args.outputName}' has type ${dtype}, so no pair was measured` };
  }
  // the pairs the budget affords at the cost model's price of a run (the first pair always, as before budgets were counted)
  const evaluation = searchCosts(args.blocks, sizeOf(args.inputShape)).evaluation;
  const pairs = Math.min(args.pairs ?? 64, Math.max(1, Math.floor(args.budget / (2 * evaluation))));
  const evaluator = await ModelRunner.create(encodeForRuntime(args.model, []), args.runtime, 'the model (witness)');
  const w = await witnessLowerBound(evaluator, args.inputName, args.outputName, args.inputShape, {
    seed: args.seed, pairs, inf: args.norm === 'inf', hints: args.hints ?? [], feeds,
  }).finally(() => evaluator.release());
  return { value: w.ratio, method: 'witness-pairs', x: w.x, xPrime: w.xPrime, evaluations: 2 * w.pairs, products: 0, irNorm: null, irPoint: null, truncated: pairs < (args.pairs ?? 64), work: 2 * w.pairs * evaluation, nonFinite: w.nonFinite, fallbackReason: reason };
}

interface Candidate { value: number; x: Float32Array; xPrime: Float32Array; irNorm: number; irPoint: Float32Array }

/** The random starts, the ascent and the confirmations, sharing one model session and the operators. */
class Search {
  private readonly n: number;
  private readonly rng: Random;
  private readonly jac: Jacobian;
  private evaluations = 0;
  private nonFinite = 0;
  private truncated = false;
  private readonly costs: { product: number; evaluation: number };
  private best: Candidate;
  private readonly pools = new Map<string, PoolWindows>();
  private readonly poolInput = new Map<string, string>();
  private readonly diags = new Map<string, Step & { kind: 'diag' }>();
  readonly plan: SearchPlan;

  constructor(
    private readonly args: LowerBoundArgs, steps: readonly Step[], private readonly runner: ModelRunner,
    private readonly wanted: readonly string[], private readonly feeds: Record<string, Tensor>,
  ) {
    this.n = sizeOf(args.inputShape);
    this.rng = new Random(args.seed ^ 0x4c4f5742);
    this.plan = planSearch(args.blocks, { input: this.n, output: sizeOf(args.ir.outputShape) }, args.norm, args.budget, args.starts, args.ascentSteps);
    this.costs = searchCosts(args.blocks, this.n);
    this.jac = new Jacobian(args.ir, steps);
    for (const s of steps) {
      if (s.kind === 'maxpool') { this.pools.set(s.node.output, s.windows); this.poolInput.set(s.node.output, s.node.inputs[0]); }
      if (s.kind === 'diag') this.diags.set(s.node.output, s);
    }
    this.best = { value: 0, x: new Float32Array(this.n), xPrime: new Float32Array(this.n), irNorm: 0, irPoint: new Float32Array(this.n) };
  }

  /** Work charged so far by the cost model: every model run and every product with J(x). */
  private work(): number {
    return this.evaluations * this.costs.evaluation + this.jac.products * this.costs.product;
  }

  private overBudget(fraction = 1): boolean {
    const over = this.work() > fraction * this.args.budget;
    if (over) this.truncated = true;
    return over;
  }

  private async evaluate(x: Float32Array): Promise<Map<string, Tensor>> {
    this.evaluations++;
    return this.runner.run({ ...this.feeds, [this.args.inputName]: { dtype: 'float32', dims: this.args.inputShape, data: x } }, this.wanted);
  }

  /**
   * Runs the model at x and reads the Jacobian's ingredients off the activations' values; null (the point skipped and
   * counted) when the output or an activation's value is not finite: float32 overflow inside the model.
   */
  private async state(x: Float32Array): Promise<LocalState | null> {
    const values = await this.evaluate(x);
    for (const name of this.wanted) {
      const t = values.get(name);
      if (t && !allFinite(t.data as ArrayLike<number>)) { this.nonFinite++; return null; }
    }
    const value = (name: string) => (name === this.args.inputName ? Float64Array.from(x) : toFloat64(values.get(name)!));
    const slope = new Map<string, Slopes>();
    const argmax = new Map<string, { am: Int32Array; u: Float64Array }>();
    const softmax = new Map<string, Float64Array>();
    const raw = new Map<string, { u: Float64Array; a: Float64Array }>();
    for (const b of this.args.blocks) {
      if (b.kind !== 'node') continue;
      const n = b.node;
      if (n.kind === 'activation') {
        const u = value(n.inputs[0]), a = value(n.output);
        raw.set(n.output, { u, a });
        slope.set(n.output, slopes(n.fn, u, a, n.slope, this.diags.get(n.output)!.clip, null));
      } else if (n.kind === 'lipschitz' && n.fn === 'Softmax') softmax.set(n.output, value(n.output));
      else if (n.kind === 'lipschitz') {
        const u = value(n.inputs[0]);
        const { taps, index } = this.pools.get(n.output)!;
        const am = new Int32Array(index.length / taps);
        for (let o = 0; o < am.length; o++) {
          let bi = -1, bv = -Infinity;
          for (let k = 0; k < taps; k++) { const i = index[o * taps + k]; if (i >= 0 && u[i] > bv) { bv = u[i]; bi = i; } }
          am[o] = Math.max(bi, 0);
        }
        argmax.set(n.output, { am, u });
      }
    }
    return { x, fx: toFloat64(values.get(this.args.outputName)!), slope, argmax, softmax, raw };
  }

  /** The same point with the gates of piecewise-linear activations replaced by sigmoids of width τ (hard for null). */
  private soften(s: LocalState, tauRel: number | null): LocalState {
    const slope = new Map<string, Slopes>();
    for (const { node, clip } of this.diags.values()) {
      const { u, a } = s.raw.get(node.output)!;
      slope.set(node.output, slopes(node.fn, u, a, node.slope, clip, tauRel));
    }
    return { ...s, slope };
  }

  /** ∇_x (wᵀ J(x) v) from the tangents of v and the cotangents of w (second derivatives of the activations only). */
  private async gradient(s: LocalState, tangents: Map<string, Float64Array>, cotangents: Map<string, Float64Array>): Promise<Float64Array> {
    const inject = new Map<string, Float64Array>();
    for (const b of this.args.blocks) {
      if (b.kind !== 'node' || b.node.kind !== 'activation') continue;
      const n = b.node;
      const t = tangents.get(n.inputs[0]), c = cotangents.get(n.output), d2 = s.slope.get(n.output)!.d2;
      if (!t || !c) continue;
      const g = new Float64Array(t.length);
      for (let i = 0; i < g.length; i++) g[i] = c[i] * t[i] * d2[i];
      const prev = inject.get(n.inputs[0]);
      if (prev) for (let i = 0; i < g.length; i++) prev[i] += g[i];
      else inject.set(n.inputs[0], g);
    }
    return this.jac.vjp(s, new Float64Array(sizeOf(this.args.ir.outputShape)), inject);
  }

  private randomStart(): Float32Array {
    const x = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) x[i] = this.rng.normal();
    return x;
  }

  /**
   * How far x can move along +dir and −dir before an activation pattern changes (a unit crosses a kink — 0 for
   * ReLU-like ones, Clip's bounds — or a max-pool's winner changes): in a piecewise-linear network everything is affine
   * in the step until then, so the first crossing is exact.
   */
  private async safeSteps(s: LocalState, dir: Float64Array): Promise<{ fwd: number; bwd: number }> {
    const tangents = new Map<string, Float64Array>();
    await this.jac.jvp(s, dir, tangents);
    let fwd = Infinity, bwd = Infinity;
    const cross = (gap: number, rate: number) => {
      // a gap ≥ 0 that closes at `rate` per unit step (forward when rate > 0)
      if (rate > 0) fwd = Math.min(fwd, gap / rate);
      else if (rate < 0) bwd = Math.min(bwd, gap / -rate);
    };
    for (const { node, kinks } of this.diags.values()) {
      const t = tangents.get(node.inputs[0]), u = s.slope.get(node.output)!.u;
      if (t) for (const c of kinks) for (let i = 0; i < u.length; i++) cross(Math.abs(u[i] - c), u[i] > c ? -t[i] : t[i]);
    }
    for (const [output, pool] of this.pools) {
      const mp = s.argmax.get(output)!;
      const t = tangents.get(this.poolInput.get(output)!);
      if (t) {
        for (let o = 0; o < mp.am.length; o++) {
          const a = mp.am[o];
          for (let k = 0; k < pool.taps; k++) { const j = pool.index[o * pool.taps + k]; if (j >= 0 && j !== a) cross(mp.u[a] - mp.u[j], t[j] - t[a]); }
        }
      }
    }
    // non-finite tangents (an overflowing product) give no segment: the fixed steps alone are tried
    return { fwd: fwd >= 0 ? fwd : 0, bwd: bwd >= 0 ? bwd : 0 };
  }

  /**
   * Pairs (x + a·dir, x + b·dir) through the original model: the longest segment through x on which no activation
   * pattern changes (where the IR's Jacobian holds exactly), and (x, x + 10⁻²·‖x‖·dir); keeps the best ratio.
   */
  private async confirm(s: LocalState, dir: Float64Array, irNorm: number): Promise<void> {
    const inf = this.args.norm === 'inf';
    const scale = Math.max(normOf(s.x, inf), 1e-3) / Math.max(normOf(dir, inf), 1e-300);
    const segments: [number, number][] = FIXED_STEPS.map((h) => [0, h * scale]);
    const { fwd, bwd } = await this.safeSteps(s, dir);
    let lo = -Math.min(SAFE_SHARE * bwd, MAX_STEP * scale), hi = Math.min(SAFE_SHARE * fwd, MAX_STEP * scale);
    // a segment too short would let float32 rounding of f dominate the difference: widen it about its middle
    const short = MIN_SEGMENT * scale - (hi - lo);
    if (short > 0) { lo -= short / 2; hi += short / 2; }
    segments.unshift([lo, hi]);
    const at = async (t: number): Promise<{ x: Float32Array; f: Float64Array } | null> => {
      if (t === 0) return { x: s.x, f: s.fx };
      const x = this.moved(s.x, dir, t);
      const f = toFloat64((await this.evaluate(x)).get(this.args.outputName)!);
      if (!allFinite(f)) { this.nonFinite++; return null; }
      return { x, f };
    };
    for (const [ta, tb] of segments) {
      const a = await at(ta), b = a && (await at(tb));
      if (!a || !b) continue;
      const ratio = pairRatio(a.f, b.f, a.x, b.x, inf);
      if (Number.isFinite(ratio) && ratio > this.best.value) this.best = { value: ratio, x: a.x, xPrime: b.x, irNorm, irPoint: s.x };
    }
  }

  private result(): LowerBoundResult {
    const b = this.best;
    return { value: b.value, method: 'jacobian-ascent', x: b.x, xPrime: b.xPrime, evaluations: this.evaluations, products: this.jac.products, irNorm: b.irNorm, irPoint: b.irPoint, truncated: this.truncated, work: this.work(), nonFinite: this.nonFinite, plan: this.plan };
  }

  /**
   * σ_max(J(x)) by Lanczos on JᵀJ from `start`: ‖Jv‖ for the Ritz vector v (what a pair along v can witness), and v;
   * null when the products overflow float32 there (the point is then skipped).
   */
  private async topSingular(s: LocalState, start: Float64Array, steps: number): Promise<{ sigma: number; v: Float64Array } | null> {
    const jac = this.jac;
    try {
      const res = await lanczosTop({ n: this.n, apply: async (v) => jac.vjp(s, await jac.jvp(s, v)) }, {
        start: scaleInPlace(Float64Array.from(start), 1 / Math.max(norm2(start), 1e-300)),
        maxSteps: steps,
        stop: (theta, k, previous) => (k >= 3 && Math.abs(theta - previous) <= 1e-9 * theta) || this.overBudget(0.9),
        parallel: this.args.runtime.threads !== 1,
      });
      const v = scaleInPlace(Float64Array.from(res.ritzVector), 1 / Math.max(norm2(res.ritzVector), 1e-300));
      const sigma = norm2(await jac.jvp(s, v));
      return Number.isFinite(sigma) && allFinite(v) ? { sigma, v } : null;
    } catch (e) {
      if (e instanceof NonFiniteError) return null;
      throw e;
    }
  }

  /** The state at x with its top singular pair, or null when either is not finite. */
  private async point(x: Float32Array, start: Float64Array, steps: number): Promise<Point | null> {
    const s = await this.state(x);
    if (!s) return null;
    const top = await this.topSingular(s, start, steps);
    return top && { s, ...top };
  }

  /** The ℓ2 search: per round, the best of a few random starts, then a soft-gate walk; a greedy polish at the end. */
  async runL2(): Promise<LowerBoundResult> {
    let top: Point | null = null;
    for (let r = 0; r < this.plan.rounds; r++) {
      if (r > 0 && this.overBudget(0.7)) break;
      let round: Point | null = null;
      for (let k = 0; k < this.plan.starts; k++) {
        if ((r > 0 || k > 0) && this.overBudget(0.7)) break;
        const p = await this.point(this.randomStart(), this.rng.unitVector(this.n), START_LANCZOS);
        if (p && (!round || p.sigma > round.sigma)) round = p;
      }
      if (!round) break;
      round = await this.softWalk(round);
      await this.confirm(round.s, round.v, round.sigma);
      if (!top || round.sigma > top.sigma) top = round;
    }
    if (!top) return this.result();
    const polished = await this.polish(top);
    if (polished !== top) await this.confirm(polished.s, polished.v, polished.sigma);
    return this.result();
  }

  /**
   * Ascent on σ_max of the soft-gate Jacobian (ReLU gates σ(u/τ), τ annealed from 1 to 0.01 of each layer's RMS
   * pre-activation), a step of decaying length each time; the true σ_max(J(x)) is measured at every point, and the
   * best point seen is kept.
   */
  private async softWalk(from: Point): Promise<Point> {
    let best = from;
    let cur = from;
    const steps = this.plan.walkSteps;
    for (let k = 0; k < steps; k++) {
      if (this.overBudget(0.7)) break;
      const t = k / steps;
      const soft = this.soften(cur.s, TAU_START * Math.pow(TAU_END / TAU_START, t));
      const top = await this.topSingular(soft, cur.v, WARM_LANCZOS);
      if (!top) break;
      const sp = { s: soft, ...top };
      const g = await this.ascentDirection(sp);
      if (!g) break;
      const next = await this.point(this.moved(cur.s.x, g, STEP_START * Math.pow(STEP_END / STEP_START, t) * Math.max(norm2(cur.s.x), 1)), sp.v, WARM_LANCZOS);
      if (!next) break;
      cur = next;
      if (cur.sigma > best.sigma) best = cur;
    }
    return best;
  }

  /** Greedy steps on the true σ_max(J(x)): along the kink-smoothed gradient or ±v, the step grown on success and halved on failure. */
  private async polish(from: Point): Promise<Point> {
    let cur = from;
    let eta = POLISH_STEP;
    for (let k = 0; k < this.plan.polishSteps && eta > 1e-4; k++) {
      if (this.overBudget(0.9)) break;
      const g = await this.ascentDirection(cur);
      const dirs = [...(g ? [g] : []), cur.v, scaleInPlace(Float64Array.from(cur.v), -1)];
      let pick: { s: LocalState; proxy: number } | null = null;
      for (const d of dirs) {
        const s = await this.state(this.moved(cur.s.x, d, eta * Math.max(norm2(cur.s.x), 1)));
        if (!s) continue;
        // ‖J(x')v‖ ≤ σ_max(J(x')) ranks the candidates for one product each
        const proxy = norm2(await this.jac.jvp(s, cur.v));
        if (Number.isFinite(proxy) && (!pick || proxy > pick.proxy)) pick = { s, proxy };
      }
      const top = pick && (await this.topSingular(pick.s, cur.v, WARM_LANCZOS));
      if (pick && top && top.sigma > cur.sigma) { cur = { s: pick.s, ...top }; eta *= 1.5; } else eta *= 0.5;
    }
    return cur;
  }

  /** The unit ascent direction ∇_x(uᵀJ(x)v) at the current top singular pair, or null when it vanishes. */
  private async ascentDirection(cur: { s: LocalState; v: Float64Array }): Promise<Float64Array | null> {
    const tangents = new Map<string, Float64Array>(), cotangents = new Map<string, Float64Array>();
    const jv = await this.jac.jvp(cur.s, cur.v, tangents);
    await this.jac.vjp(cur.s, scaleInPlace(Float64Array.from(jv), 1 / Math.max(norm2(jv), 1e-300)), undefined, cotangents);
    const g = await this.gradient(cur.s, tangents, cotangents);
    const gn = norm2(g);
    return gn > 0 && Number.isFinite(gn) ? scaleInPlace(g, 1 / gn) : null;
  }

  /** x + step·dir (dir a unit vector), rounded to float32 as it will be fed. */
  private moved(x: Float32Array, dir: Float64Array, step: number): Float32Array {
    const out = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = x[i] + step * dir[i];
    return out;
  }

  /** The largest ℓ1 row norm of J(x) over `rows` (row i = J(x)ᵀe_i, one reverse sweep each). */
  private async topRow(s: LocalState, rows: readonly number[]): Promise<{ value: number; row: number; r: Float64Array }> {
    const m = sizeOf(this.args.ir.outputShape);
    let best: { value: number; row: number; r: Float64Array } = { value: -1, row: rows[0], r: new Float64Array(this.n) };
    for (const i of rows) {
      const e = new Float64Array(m);
      e[i] = 1;
      const r = await this.jac.vjp(s, e);
      let l1 = 0;
      for (let j = 0; j < r.length; j++) l1 += Math.abs(r[j]);
      if (l1 > best.value) best = { value: l1, row: i, r };
    }
    return best;
  }

  /** The ℓ∞ search: the largest ℓ1 row of J(x), rows chosen at random starts, then a soft-gate walk on that row. */
  async runInf(): Promise<LowerBoundResult> {
    const m = sizeOf(this.args.ir.outputShape);
    let top: RowPoint | null = null;
    for (let r = 0; r < this.plan.rounds; r++) {
      if (r > 0 && this.overBudget(0.7)) break;
      const rows = this.rowSample(m);
      let round: RowPoint | null = null;
      for (let k = 0; k < this.plan.starts; k++) {
        if ((r > 0 || k > 0) && this.overBudget(0.7)) break;
        const s = await this.state(this.randomStart());
        if (!s) continue;
        const p = { s, ...(await this.topRow(s, rows)) };
        if (Number.isFinite(p.value) && (!round || p.value > round.value)) round = p;
      }
      if (!round) break;
      let cur = round;
      const steps = this.plan.walkSteps;
      for (let k = 0; k < steps; k++) {
        if (this.overBudget(0.7)) break;
        const t = k / steps;
        const soft = this.soften(cur.s, TAU_START * Math.pow(TAU_END / TAU_START, t));
        const e = new Float64Array(m);
        e[cur.row] = 1;
        // ∇_x e_iᵀJ(x)s with s = sign(row i of the soft Jacobian): the ascent direction of that row's ℓ1 norm
        const cotangents = new Map<string, Float64Array>(), tangents = new Map<string, Float64Array>();
        const softRow = await this.jac.vjp(soft, e, undefined, cotangents);
        await this.jac.jvp(soft, sign(softRow), tangents);
        const g = await this.gradient(soft, tangents, cotangents);
        const gn = norm2(g);
        if (!(gn > 0 && Number.isFinite(gn))) break;
        const s = await this.state(this.moved(cur.s.x, scaleInPlace(g, 1 / gn), STEP_START * Math.pow(STEP_END / STEP_START, t) * Math.max(norm2(cur.s.x), 1)));
        if (!s) break;
        // every few steps the row is chosen again, otherwise only the current row is measured
        const next = { s, ...(await this.topRow(s, k % 10 === 9 ? rows : [cur.row])) };
        if (!Number.isFinite(next.value)) break;
        cur = next;
        if (cur.value > round.value) round = cur;
      }
      await this.confirm(round.s, sign(round.r), round.value);
      if (!top || round.value > top.value) top = round;
    }
    return this.result();
  }

  /** All output rows when there are few, else a seeded sample of them. */
  private rowSample(m: number): number[] {
    if (m <= MAX_ROWS) return [...Array(m).keys()];
    const pick = new Set<number>();
    while (pick.size < MAX_ROWS) pick.add(Math.floor(this.rng.next() * m));
    return [...pick].sort((a, b) => a - b);
  }
}
