import { LipcheckError } from '../errors.js';
import type { Block, LinearRegion } from '../ir/merge.js';
import { jacobianNodeOutput, type JacobianNode, type JacobianOperator, type JacobianPoint, type LinearOperator, type OperatorBackend } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import type { ActivationNode, IrGraph, IrNode, LipschitzNode, Shape } from '../ir/types.js';
import { broadcastMap, elementwiseOf, type BoundElementwise } from '../ops/elementwise.js';

/**
 * THE interpreter of the IR's Jacobian (issue 15): J(x)·v and J(x)ᵀ·w at a point x, from the IR alone. Linear regions
 * are the backend's operators (forward and adjoint), activations are diagonals f′(u) from the elementwise table
 * (src/ops/elementwise.ts, keyed by the node's fn and parameters), max-pools route each window's winner, softmaxes are
 * diag(p) − ppᵀ, sums and concatenations move tangents. The point enters only through the values the caller reads off
 * the original model (activation inputs, max-pool inputs, softmax outputs: {@link IrPlan.needed}); no ONNX op name is
 * looked at, only IR node kinds and their data.
 */

type ConcatPart = { readonly dynamic: number } | { readonly zeros: Shape };

/** For each output element of a max-pool, the flat input indices of its window (−1 for padding). */
export interface PoolWindows {
  readonly taps: number;
  readonly index: Int32Array;
}

/** One step of the Jacobian's evaluation order. */
export type Step =
  | { readonly kind: 'operator'; readonly input: string; readonly output: string; readonly op: LinearOperator; readonly region: LinearRegion }
  | { readonly kind: 'diag'; readonly node: ActivationNode; readonly ew: BoundElementwise }
  | { readonly kind: 'maxpool'; readonly node: LipschitzNode; readonly windows: PoolWindows }
  | { readonly kind: 'softmax'; readonly node: LipschitzNode; readonly outer: number; readonly len: number; readonly inner: number; readonly log?: boolean }
  | { readonly kind: 'sum'; readonly node: IrNode; readonly signs: readonly number[] }
  | { readonly kind: 'concat'; readonly node: IrNode; readonly axis: number; readonly parts: readonly ConcatPart[] }
  /** Every step at once, as one backend operator (fuseGraph): one run per product. */
  | { readonly kind: 'graph'; readonly op: JacobianOperator; readonly steps: readonly Step[] };

/** A max-pool's winners at its input u: for each window, the flat input index of its largest value (0 for a window all padding). */
export function poolWinners(windows: PoolWindows, u: ArrayLike<number>): Int32Array {
  const { taps, index } = windows;
  const am = new Int32Array(index.length / taps);
  for (let o = 0; o < am.length; o++) {
    let bi = -1, bv = -Infinity;
    for (let k = 0; k < taps; k++) { const i = index[o * taps + k]; if (i >= 0 && u[i] > bv) { bv = u[i]; bi = i; } }
    am[o] = Math.max(bi, 0);
  }
  return am;
}

/** The interpreter's plan: its steps and the model values a point needs. */
export interface IrPlan {
  /** Every region and node a step of its own (the lower bound's search reads its activations, pools and softmaxes here). */
  readonly steps: readonly Step[];
  /** The whole Jacobian as one graph step where the backend offers Jacobian graphs (fuseGraph); else `steps`. */
  readonly fused: readonly Step[];
  /** Values of the original model to evaluate at each point (activation and max-pool inputs, softmax outputs). */
  readonly needed: readonly string[];
}

/** An activation's derivative at its input u, and the derivative's (smoothed) derivative for the ascent. */
export interface Slopes { readonly d: Float64Array; readonly d2: Float64Array; readonly u: Float64Array }

/** What the Jacobian depends on at one point x. */
export interface LocalState {
  readonly x: Float32Array;
  readonly fx: Float64Array;
  /** Per activation output: f′(u) and d/du f′(u) (kinks smoothed). */
  readonly slope: Map<string, Slopes>;
  /** Per max-pool output: the winning input index of each window, and the pool's input values. */
  readonly argmax: Map<string, { am: Int32Array; u: Float64Array }>;
  readonly softmax: Map<string, Float64Array>;
}

/**
 * For each flat output position q and kernel tap k of a strided, dilated, padded window (ONNX Conv / MaxPool geometry:
 * input position o·stride − begin + t·dilation per spatial axis), the flat input position it reads at [q·taps + k], or −1
 * where it falls in the padding.
 */
export function windowPositions(spatialIn: readonly number[], spatialOut: readonly number[], kernel: readonly number[], strides: readonly number[], dilations: readonly number[], begin: readonly number[]): Int32Array {
  const r = spatialIn.length, taps = sizeOf(kernel), planesOut = sizeOf(spatialOut);
  const at = new Int32Array(planesOut * taps);
  const o = new Array<number>(r).fill(0), t = new Array<number>(r).fill(0);
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
      at[q * taps + k] = inside ? flat : -1;
    }
  }
  return at;
}

/** Window indices of a max-pool from its IR window (ONNX semantics; padding never wins). */
export function poolWindows(node: LipschitzNode): PoolWindows | string {
  const w = node.window;
  if (!w) return `max-pool node '${node.name}' carries no window geometry in the IR`;
  const x = node.inShapes[0], out = node.outShape;
  const taps = sizeOf(w.kernel);
  const spatialIn = x.slice(2), spatialOut = out.slice(2);
  const planesIn = sizeOf(spatialIn), planesOut = sizeOf(spatialOut);
  const planes = x[0] * x[1];
  const at = windowPositions(spatialIn, spatialOut, w.kernel, w.strides, w.dilations, w.begin);
  const index = new Int32Array(planes * planesOut * taps);
  for (let c = 0; c < planes; c++) {
    for (let j = 0; j < planesOut * taps; j++) index[c * planesOut * taps + j] = at[j] < 0 ? -1 : c * planesIn + at[j];
  }
  return { taps, index };
}

/**
 * The values the converters made up: `<output>::<k>` beside the IR node of the same ONNX node that writes `<output>`
 * (src/ops/context.ts). They are not values of the original model, so they cannot be read off it. (Exporters' own names
 * may contain '::' too, as PyTorch's `onnx::Relu_9`.)
 */
function internalValues(ir: IrGraph): Set<string> {
  const outputsOf = new Map<string, string[]>();
  for (const n of ir.nodes) outputsOf.set(n.name, [...(outputsOf.get(n.name) ?? []), n.output]);
  const made = new Set<string>();
  for (const n of ir.nodes) {
    if (outputsOf.get(n.name)!.some((o) => o !== n.output && n.output.startsWith(`${o}::`))) made.add(n.output);
  }
  return made;
}

/**
 * The evaluation order of J(x), with the backend's operators of the linear regions, or the reason the IR cannot be
 * differentiated here. Operators are created only once the whole graph is known to be differentiable; the caller
 * disposes those pushed to `operators`.
 */
export async function planIr(ir: IrGraph, blocks: readonly Block[], backend: OperatorBackend, operators: { dispose(): Promise<void> }[]): Promise<IrPlan | string> {
  const steps: (Step | Block & { kind: 'operator' })[] = [];
  const needed = new Set<string>();
  const internal = internalValues(ir);
  const need = (name: string, node: IrNode): string | null => {
    if (name === ir.input) return null;
    if (internal.has(name)) return `the value '${name}' that node '${node.name}' reads is not a value of the model, so it cannot be evaluated at a point`;
    needed.add(name);
    return null;
  };
  for (const b of blocks) {
    if (b.kind === 'operator') { steps.push(b); continue; }
    const n = b.node;
    switch (n.kind) {
      case 'activation': {
        const ew = elementwiseOf(n);
        if (typeof ew === 'string') return ew;
        const why = need(n.inputs[0], n);
        if (why) return why;
        steps.push({ kind: 'diag', node: n, ew });
        break;
      }
      case 'lipschitz':
        if (n.window && n.inputs.length === 1) {
          const w = poolWindows(n);
          if (typeof w === 'string') return w;
          const why = need(n.inputs[0], n);
          if (why) return why;
          steps.push({ kind: 'maxpool', node: n, windows: w });
        } else if (n.groups && n.inputs.length === 1) {
          const why = need(n.output, n);
          if (why) return why;
          steps.push({ kind: 'softmax', node: n, ...n.groups });
        } else {
          return `nonlinear node ${n.fn} ('${n.name}') has no Jacobian in the IR`;
        }
        break;
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
    if (st.kind !== 'operator' || !('region' in st)) { out.push(st as Step); continue; }
    const op = lazyOperator(backend, st.region);
    operators.push(op);
    out.push({ kind: 'operator', input: st.region.input, output: st.region.output, op, region: st.region });
  }
  return { steps: out, fused: await fuseGraph(ir, out, backend, operators), needed: [...needed] };
}

/** A region's operator whose sessions open on its first product: inside a Jacobian graph (fuseGraph) it never needs its own. */
function lazyOperator(backend: OperatorBackend, region: LinearRegion): LinearOperator {
  let made: Promise<LinearOperator> | null = null;
  const get = () => (made ??= backend.operator(region));
  return {
    inDims: region.inShape,
    outDims: region.outShape,
    inSize: sizeOf(region.inShape),
    outSize: sizeOf(region.outShape),
    apply: async (x) => (await get()).apply(x),
    adjoint: async (y) => (await get()).adjoint(y),
    async dispose() {
      const op = made && (await made.catch(() => null));
      await op?.dispose();
    },
  };
}

/**
 * `steps` as one graph step (backend.jacobian) where the backend offers Jacobian graphs and there are two steps or more,
 * a region among them: a product is then one backend run instead of one per region, with the sums, concatenations,
 * max-pools and softmaxes inside it. Otherwise, or where no step writes the IR's output (a constant output), `steps`
 * unchanged.
 */
export async function fuseGraph(ir: IrGraph, steps: readonly Step[], backend: OperatorBackend, operators: { dispose(): Promise<void> }[]): Promise<readonly Step[]> {
  if (!backend.jacobian || steps.length < 2 || !steps.some((st) => st.kind === 'operator')) return steps;
  const nodes: JacobianNode[] = [];
  for (const st of steps) {
    switch (st.kind) {
      case 'operator': nodes.push({ op: 'region', region: st.region, input: st.input, output: st.output }); break;
      case 'diag': nodes.push({ op: 'diag', input: st.node.inputs[0], output: st.node.output, dims: st.node.outShape }); break;
      case 'maxpool': nodes.push({ op: 'select', input: st.node.inputs[0], output: st.node.output, inDims: st.node.inShapes[0], outDims: st.node.outShape }); break;
      case 'softmax': nodes.push({ op: 'softmax', input: st.node.inputs[0], output: st.node.output, dims: st.node.outShape, outer: st.outer, len: st.len, inner: st.inner, log: st.log === true }); break;
      case 'sum': case 'concat':
        if (st.node.kind !== 'linear') return steps;
        nodes.push({ op: 'linear', node: st.node });
        break;
      case 'graph': return steps;
    }
  }
  if (!nodes.some((n) => jacobianNodeOutput(n) === ir.output)) return steps;
  const op = await backend.jacobian({ input: ir.input, inDims: ir.inputShape, output: ir.output, outDims: ir.outputShape, nodes });
  operators.push(op);
  return [{ kind: 'graph', op, steps }];
}

/**
 * Jacobian-vector products of the IR at a point: the backend's operators for linear regions, the table elsewhere,
 * walking the `fused` steps (IrPlan.fused): where the whole Jacobian is one graph step, each product is one backend run
 * that hands back the tangents and cotangents of the values inside it and takes injections there, so callers see
 * every value as the step-by-step walk records it.
 */
export class Jacobian {
  products = 0;
  private readonly bcast = new Map<string, Int32Array>();
  /** Log-softmax probabilities exp(output), per output array of a point (the graph takes p). */
  private readonly probs = new WeakMap<Float64Array, Float64Array>();

  /** `steps` alone (no `fused`): one backend run per region (tests compare the two walks). */
  constructor(private readonly ir: IrGraph, steps: readonly Step[], private readonly fused: readonly Step[] = steps) {}

  private get graph(): Extract<Step, { kind: 'graph' }> | null {
    const only = this.fused.length === 1 ? this.fused[0] : null;
    return only?.kind === 'graph' ? only : null;
  }

  /** What the graph step depends on at `s`: activation slopes, max-pool winners, softmax probabilities. */
  private pointOf(graph: Extract<Step, { kind: 'graph' }>, s: LocalState): JacobianPoint {
    const point = new Map<string, Float64Array | Int32Array>();
    for (const st of graph.steps) {
      if (st.kind === 'diag') point.set(st.node.output, s.slope.get(st.node.output)!.d);
      else if (st.kind === 'maxpool') point.set(st.node.output, s.argmax.get(st.node.output)!.am);
      else if (st.kind === 'softmax') {
        const out = s.softmax.get(st.node.output)!;
        if (!st.log) { point.set(st.node.output, out); continue; }
        let p = this.probs.get(out);
        if (!p) { p = out.map(Math.exp); this.probs.set(out, p); }
        point.set(st.node.output, p);
      }
    }
    return point;
  }

  /** J(x)ᵀJ(x)·v (two products): one backend run where the Jacobian is one graph step, else jvp then vjp. */
  async gram(s: LocalState, v: Float64Array): Promise<Float64Array> {
    const graph = this.graph;
    if (graph) {
      this.products += 2;
      return graph.op.gram(v, this.pointOf(graph, s));
    }
    return this.vjp(s, await this.jvp(s, v));
  }

  private broadcast(node: IrNode, i: number): Int32Array {
    const key = `${node.output}#${i}`;
    let m = this.bcast.get(key);
    if (!m) { m = broadcastMap(node.inShapes[i], node.outShape); this.bcast.set(key, m); }
    return m;
  }

  /** J(x)·v; `keep`, when given, receives every intermediate tangent. */
  async jvp(s: LocalState, v: Float64Array, keep?: Map<string, Float64Array>): Promise<Float64Array> {
    this.products++;
    const graph = this.graph;
    if (graph) {
      const out = await graph.op.apply(v, this.pointOf(graph, s), keep);
      keep?.set(this.ir.input, v).set(this.ir.output, out);
      return out;
    }
    const tangents = keep ?? new Map<string, Float64Array>();
    tangents.set(this.ir.input, v);
    for (const step of this.fused) {
      if (step.kind === 'operator') { tangents.set(step.output, await step.op.apply(tangents.get(step.input)!)); continue; }
      if (step.kind === 'graph') throw new LipcheckError('INTERNAL', 'A Jacobian graph step must be the only step of a plan.');
      const n = step.node;
      const t = tangents.get(n.inputs[0])!;
      const out = new Float64Array(sizeOf(n.outShape));
      switch (step.kind) {
        case 'diag': { const d = s.slope.get(n.output)!.d; for (let i = 0; i < out.length; i++) out[i] = d[i] * t[i]; break; }
        case 'maxpool': { const am = s.argmax.get(n.output)!.am; for (let i = 0; i < out.length; i++) out[i] = t[am[i]]; break; }
        case 'softmax': (step.log ? logSoftmaxJvp : softmaxJvp)(s.softmax.get(n.output)!, t, out, step.outer, step.len, step.inner, false); break;
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
   * `cotangents` receives every intermediate cotangent when given (in a graph step, zeros where nothing reached).
   */
  async vjp(s: LocalState, w: Float64Array, inject?: ReadonlyMap<string, Float64Array>, cotangents?: Map<string, Float64Array>): Promise<Float64Array> {
    this.products++;
    const graph = this.graph;
    if (graph) {
      // injections at the output and the input are added here; those at values inside the graph, inside the run
      const atOut = inject?.get(this.ir.output), atIn = inject?.get(this.ir.input);
      const w1 = atOut ? w.map((x, i) => x + atOut[i]) : w;
      const r = await graph.op.adjoint(w1, this.pointOf(graph, s), inject, cotangents);
      if (atIn) for (let i = 0; i < r.length; i++) r[i] += atIn[i];
      cotangents?.set(this.ir.output, w1).set(this.ir.input, r);
      return r;
    }
    const cot = cotangents ?? new Map<string, Float64Array>();
    const add = (name: string, g: Float64Array) => {
      const c = cot.get(name);
      if (!c) cot.set(name, Float64Array.from(g));
      else for (let i = 0; i < c.length; i++) c[i] += g[i];
    };
    for (const [k, g] of inject ?? []) add(k, g);
    add(this.ir.output, w);
    for (let j = this.fused.length - 1; j >= 0; j--) {
      const step = this.fused[j];
      if (step.kind === 'operator') {
        const g = cot.get(step.output);
        if (g) add(step.input, await step.op.adjoint(g));
        continue;
      }
      if (step.kind === 'graph') throw new LipcheckError('INTERNAL', 'A Jacobian graph step must be the only step of a plan.');
      const n = step.node;
      const g = cot.get(n.output);
      if (!g) continue;
      const inSize = (k: number) => sizeOf(n.inShapes[k]);
      switch (step.kind) {
        case 'diag': { const d = s.slope.get(n.output)!.d; const r = new Float64Array(g.length); for (let i = 0; i < g.length; i++) r[i] = d[i] * g[i]; add(n.inputs[0], r); break; }
        case 'maxpool': { const am = s.argmax.get(n.output)!.am; const r = new Float64Array(inSize(0)); for (let i = 0; i < g.length; i++) r[am[i]] += g[i]; add(n.inputs[0], r); break; }
        case 'softmax': { const r = new Float64Array(g.length); (step.log ? logSoftmaxJvp : softmaxJvp)(s.softmax.get(n.output)!, g, r, step.outer, step.len, step.inner, true); add(n.inputs[0], r); break; }
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
function softmaxJvp(p: Float64Array, t: Float64Array, out: Float64Array, outer: number, len: number, inner: number, _transpose: boolean): void {
  for (let o = 0; o < outer; o++) for (let q = 0; q < inner; q++) {
    const base = o * len * inner + q;
    let pt = 0;
    for (let k = 0; k < len; k++) pt += p[base + k * inner] * t[base + k * inner];
    for (let k = 0; k < len; k++) { const i = base + k * inner; out[i] = p[i] * (t[i] - pt); }
  }
}

/**
 * LogSoftmax along each group, p = exp(output): (I − 1pᵀ)·t = t − (pᵀt)·1, and with `transpose` (I − p1ᵀ)·g = g − (Σg)·p.
 */
function logSoftmaxJvp(logp: Float64Array, t: Float64Array, out: Float64Array, outer: number, len: number, inner: number, transpose: boolean): void {
  for (let o = 0; o < outer; o++) for (let q = 0; q < inner; q++) {
    const base = o * len * inner + q;
    let dot = 0;
    for (let k = 0; k < len; k++) { const i = base + k * inner; dot += transpose ? t[i] : Math.exp(logp[i]) * t[i]; }
    for (let k = 0; k < len; k++) { const i = base + k * inner; out[i] = t[i] - (transpose ? Math.exp(logp[i]) : 1) * dot; }
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

/** The jump of f′ across a kink κ (element i): f′(κ⁺) − f′(κ⁻), read off the table just either side. */
export function jumpAt(ew: BoundElementwise, kappa: number, i: number): number {
  const h = 1e-9 * Math.max(1, Math.abs(kappa));
  return ew.df(kappa + h, i) - ew.df(kappa - h, i);
}

/**
 * f′(u) and d/du f′(u) of an activation from its input u and the elementwise table. With `tauRel`, each jump of f′
 * (ReLU-like gates, Clip's bounds, HardSwish's ends, ...) becomes a logistic step of width τ = tauRel·RMS(u) (the soft
 * Jacobian of the walk); without, f′ is exact and d/du f′ gets a Gaussian bump of width BUMP_TAU·RMS(u) at each kink,
 * so the polish still sees nearby switches. The smooth part of d/du f′ is a central difference of f′ (0 within that
 * difference's reach of a kink).
 */
export function activationSlopes(ew: BoundElementwise, u: Float64Array, tauRel: number | null, bumpTau: number): Slopes {
  const n = u.length;
  const d = new Float64Array(n), d2 = new Float64Array(n);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += u[i] * u[i];
  const rms = Math.sqrt(ss / Math.max(1, n));
  const tau = Math.max((tauRel ?? bumpTau) * rms, 1e-12);
  const bumpScale = 1 / (tau * Math.sqrt(2 * Math.PI));
  for (let i = 0; i < n; i++) {
    const v = u[i];
    let di = ew.df(v, i), d2i = 0;
    const h = 1e-5 * Math.max(1, Math.abs(v));
    let nearKink = false;
    for (const kappa of ew.kinks(i)) {
      const jump = jumpAt(ew, kappa, i);
      if (Math.abs(v - kappa) <= 2 * h) nearKink = true;
      if (jump === 0 || !Number.isFinite(jump)) continue;
      const z = (v - kappa) / tau;
      if (tauRel === null) d2i += jump * bumpScale * Math.exp(-0.5 * z * z);
      else {
        const g = 1 / (1 + Math.exp(-z));
        // the hard step's share at exactly the kink follows the table's convention there
        const hard = v > kappa ? 1 : v < kappa ? 0 : (di - ew.df(kappa - 1e-9 * Math.max(1, Math.abs(kappa)), i)) / jump;
        di += jump * (g - hard);
        d2i += (jump * g * (1 - g)) / tau;
      }
    }
    if (!nearKink) {
      const c = (ew.df(v + h, i) - ew.df(v - h, i)) / (2 * h);
      if (Number.isFinite(c)) d2i += c;
    }
    d[i] = di;
    d2[i] = d2i;
  }
  return { d, d2, u };
}
