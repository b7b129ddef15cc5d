import type { LinearRegion } from '../ir/merge.js';
import { jacobianNodeOutput as nodeOutput, type JacobianGraph, type JacobianNode } from '../ir/operator.js';
import { int64Tensor, sizeOf, type Tensor } from '../ir/tensor.js';
import { encodeGraph, feedInitializers, type GraphSpec, type NodeSpec } from '../onnx/writer.js';
import { EMIT_OPSET, emitAdjoint, emitForward, emitNode } from './emit.js';
import type { OperatorModels } from './operators.js';

/**
 * How the backend turns a region into onnxruntime models: forward/adjoint pairs, chained Gram models, and which
 * weights are fed at run time rather than baked in.
 */

/**
 * The model 'v' → 'u' = first(v) → 'z' = second(u) of two single-input, single-output graphs (a region's forward and
 * adjoint, in either order), every internal name prefixed so the two cannot collide; 'u' is also an output. A weight
 * tensor both graphs hold (a strided Conv and its ConvTranspose adjoint share theirs; a stride-1 Conv's adjoint holds a flipped copy) is stored once.
 */
export function chainGraphs(first: GraphSpec, second: GraphSpec): GraphSpec {
  const splicer = new Splicer();
  const a = splicer.nodes(first, 'f.', new Map([[first.inputs[0].name, 'v'], [first.outputs[0].name, 'u']]));
  const b = splicer.nodes(second, 's.', new Map([[second.inputs[0].name, 'u'], [second.outputs[0].name, 'z']]));
  return {
    opset: Math.max(first.opset, second.opset),
    inputs: [{ ...first.inputs[0], name: 'v' }],
    outputs: [{ ...second.outputs[0], name: 'z' }, { ...first.outputs[0], name: 'u' }],
    nodes: [...a, ...b],
    initializers: splicer.initializers,
    name: `${first.name ?? 'first'}-${second.name ?? 'second'}`,
  };
}

/** Graphs spliced into one: each graph's internal names prefixed, its boundary names mapped, a weight tensor stored once. */
class Splicer {
  private readonly stored = new Map<Tensor, string>();
  readonly initializers: [string, Tensor][] = [];

  /** `g`'s nodes renamed: `io` maps its input and output names, every other name gets `prefix`. */
  nodes(g: GraphSpec, prefix: string, io: ReadonlyMap<string, string>): NodeSpec[] {
    const names = new Map(io);
    for (const [k, t] of g.initializers instanceof Map ? g.initializers.entries() : (g.initializers ?? [])) {
      const known = this.stored.get(t);
      if (known) { names.set(k, known); continue; }
      this.stored.set(t, `${prefix}${k}`);
      names.set(k, `${prefix}${k}`);
      this.initializers.push([`${prefix}${k}`, t]);
    }
    const name = (x: string) => (x === '' ? x : names.get(x) ?? `${prefix}${x}`);
    return g.nodes.map((n, i): NodeSpec => ({ ...n, name: `${prefix}${n.name ?? `${n.opType}_${i}`}`, inputs: n.inputs.map(name), outputs: n.outputs.map(name) }));
  }
}

/** Which map of a Jacobian graph a model computes: J, Jᵀ, or JᵀJ. */
export type JacobianMode = 'forward' | 'adjoint' | 'gram';

/** The inner values of a Jacobian graph (every node's output but the graph's output) with their shapes, in node order. */
export function jacobianInner(g: JacobianGraph): { readonly name: string; readonly dims: readonly number[] }[] {
  return g.nodes.filter((n) => nodeOutput(n) !== g.output).map((n) => ({ name: nodeOutput(n), dims: nodeShape(n) }));
}

const nodeShape = (n: JacobianNode): readonly number[] => {
  switch (n.op) {
    case 'region': return n.region.outShape;
    case 'diag': case 'softmax': return n.dims;
    case 'select': return n.outDims;
    case 'linear': return n.node.outShape;
  }
};
const nodeInputs = (n: JacobianNode): readonly string[] => (n.op === 'linear' ? n.node.inputs : [n.input]);

/** The nodes that take a vector or indices at each call (diag, select, softmax): their point inputs 'p<j>', in node order. */
export function jacobianPointNodes(g: JacobianGraph): Extract<JacobianNode, { op: 'diag' | 'select' | 'softmax' }>[] {
  return g.nodes.flatMap((n) => (n.op === 'diag' || n.op === 'select' || n.op === 'softmax' ? [n] : []));
}

/** Dims of a point input: a diag's and a softmax's value shape, a select's flat output. */
export function pointDims(n: Extract<JacobianNode, { op: 'diag' | 'select' | 'softmax' }>): readonly number[] {
  return n.op === 'select' ? [sizeOf(n.outDims)] : n.dims;
}

/**
 * One model for a whole Jacobian graph (JacobianGraph): input 'v' → output 'z' = J v, Jᵀ v or JᵀJ v. What depends on
 * the point is fed: 'p<j>' for the j-th diag, select or softmax node (float32 slopes, int32 flat indices, float32
 * probabilities). With `observe`, the forward and adjoint models also output 'o<k>', the tangent or cotangent of the
 * k-th inner value (jacobianInner), and the adjoint adds the input 'i<k>' to that cotangent before passing it on
 * (zeros where nothing is injected: exact). Regions and multi-input linear nodes are their own graphs (emitForward,
 * emitAdjoint, emitNode) spliced in with prefixed names; a weight several regions hold is stored once. A value read by
 * several nodes gets the sum of their cotangents. A max-pool's adjoint is a ScatterElements add (opset 16): the graph
 * then declares opset 16, else the spliced graphs' own. Float32 throughout, where the per-region walk keeps float64
 * between runs.
 */
export function jacobianGraphModel(g: JacobianGraph, mode: JacobianMode, observe = false): GraphSpec {
  const splicer = new Splicer();
  const nodes: NodeSpec[] = [];
  let k = 0, opset = g.nodes.some((n) => n.op === 'select') ? 16 : EMIT_OPSET;
  const fresh = () => `t${k++}`;
  const constant = (t: Tensor) => { const name = `j.c${k++}`; splicer.initializers.push([name, t]); return name; };
  const ints = (v: readonly number[]) => constant(int64Tensor(v));
  const op = (opType: string, inputs: string[], attrs?: NodeSpec['attrs']) => { const out = fresh(); nodes.push({ opType, name: `j.${out}`, inputs, outputs: [out], ...(attrs ? { attrs } : {}) }); return out; };
  const splice = (graph: GraphSpec, io: Map<string, string>) => { nodes.push(...splicer.nodes(graph, `c${k++}.`, io)); opset = Math.max(opset, graph.opset); };
  const pointOf = new Map(jacobianPointNodes(g).map((n, j) => [n, `p${j}`]));
  const inner = jacobianInner(g);
  const innerAt = new Map(inner.map(({ name }, j) => [name, j]));
  const keep = (value: string, x: string) => { const j = innerAt.get(value); if (observe && j !== undefined) nodes.push({ opType: 'Identity', name: `j.keep${j}`, inputs: [x], outputs: [`o${j}`] }); };
  const sum = (terms: readonly string[]) => (terms.length === 1 ? terms[0] : op('Sum', [...terms]));
  const zeros = (dims: readonly number[]) => op('ConstantOfShape', [ints(dims)], { value: { t: { dtype: 'float32', dims: [1], data: new Float32Array(1) } } });
  // the softmax Jacobian on the [outer, len, inner] view: diag(p) − ppᵀ (symmetric), I − 1pᵀ (log) and I − p1ᵀ (its transpose)
  const softmax = (n: Extract<JacobianNode, { op: 'softmax' }>, x: string, transpose: boolean) => {
    const view = [n.outer, n.len, n.inner], p = pointOf.get(n)!;
    const t = op('Reshape', [x, ints(view)]), pv = op('Reshape', [p, ints(view)]);
    const groupSum = (a: string) => op('ReduceSum', [a, ints([1])], { keepdims: { i: 1 } });
    // t − (pᵀt)·1, or for the log-softmax's transpose t − (1ᵀt)·p; the softmax then multiplies by p
    const centred = n.log && transpose ? op('Sub', [t, op('Mul', [pv, groupSum(t)])]) : op('Sub', [t, groupSum(op('Mul', [pv, t]))]);
    return op('Reshape', [n.log ? centred : op('Mul', [pv, centred]), ints(n.dims)]);
  };

  const tangents = (v: string): string => {
    const tan = new Map<string, string>([[g.input, v]]);
    for (const n of g.nodes) {
      const x = tan.get(nodeInputs(n)[0])!;
      let y: string;
      switch (n.op) {
        case 'region': y = fresh(); splice(emitForward(n.region), new Map([['x', x], ['y', y]])); break;
        case 'diag': y = op('Mul', [x, pointOf.get(n)!]); break;
        case 'select': y = op('Reshape', [op('Gather', [op('Reshape', [x, ints([-1])]), pointOf.get(n)!], { axis: { i: 0 } }), ints(n.outDims)]); break;
        case 'softmax': y = softmax(n, x, false); break;
        case 'linear': {
          const sub = emitNode(n.node, false);
          y = fresh();
          splice(sub, new Map([...n.node.inputs.map((name, i) => [`x${i}`, tan.get(name)!] as [string, string]), ['y', y]]));
        }
      }
      tan.set(nodeOutput(n), y);
      if (mode === 'forward') keep(nodeOutput(n), y);
    }
    return tan.get(g.output)!;
  };

  const cotangents = (w: string): string => {
    const terms = new Map<string, string[]>([[g.output, [w]]]);
    const add = (value: string, x: string) => terms.set(value, [...(terms.get(value) ?? []), x]);
    if (mode === 'adjoint' && observe) inner.forEach(({ name }, j) => add(name, `i${j}`));
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i], out = nodeOutput(n);
      const have = terms.get(out);
      if (!have) continue;
      const c = sum(have);
      if (mode === 'adjoint') keep(out, c);
      switch (n.op) {
        case 'region': { const x = fresh(); splice(emitAdjoint(n.region), new Map([['y', c], ['x', x]])); add(n.input, x); break; }
        case 'diag': add(n.input, op('Mul', [c, pointOf.get(n)!])); break;
        case 'select': {
          const scattered = op('ScatterElements', [zeros([sizeOf(n.inDims)]), pointOf.get(n)!, op('Reshape', [c, ints([-1])])], { axis: { i: 0 }, reduction: { s: 'add' } });
          add(n.input, op('Reshape', [scattered, ints(n.inDims)]));
          break;
        }
        case 'softmax': add(n.input, softmax(n, c, true)); break;
        case 'linear': {
          const outs = n.node.inputs.map(() => fresh());
          splice(emitNode(n.node, true), new Map([['y', c], ...outs.map((o, j) => [`x${j}`, o] as [string, string])]));
          n.node.inputs.forEach((name, j) => add(name, outs[j]));
        }
      }
    }
    const atInput = terms.get(g.input);
    return atInput ? sum(atInput) : zeros(g.inDims);
  };

  const z = mode === 'forward' ? tangents('v') : mode === 'adjoint' ? cotangents('v') : cotangents(tangents('v'));
  nodes.push({ opType: 'Identity', name: 'j.out', inputs: [z], outputs: ['z'] });
  const io = (name: string, dims: readonly number[], dtype = 'float32') => ({ name, dims, dtype });
  const points = jacobianPointNodes(g).map((n, j) => io(`p${j}`, pointDims(n), n.op === 'select' ? 'int32' : 'float32'));
  const observed = observe && mode !== 'gram' ? inner.map(({ dims }, j) => io(`o${j}`, dims)) : [];
  const injections = observe && mode === 'adjoint' ? inner.map(({ dims }, j) => io(`i${j}`, dims)) : [];
  return {
    opset,
    inputs: [io('v', mode === 'adjoint' ? g.outDims : g.inDims), ...points, ...injections],
    outputs: [io('z', mode === 'forward' ? g.outDims : g.inDims), ...observed],
    nodes,
    initializers: splicer.initializers,
    name: `jacobian-${mode}`,
  };
}

/** A region's forward and adjoint models for createOrtOperator, weights of FEED_BYTES or more fed with each run. */
export function operatorModels(region: LinearRegion): OperatorModels {
  const forward = feedWeights(emitForward(region));
  const adjoint = feedWeights(emitAdjoint(region));
  return {
    forward: encodeGraph(forward.spec), adjoint: encodeGraph(adjoint.spec), forwardFeeds: forward.feeds, adjointFeeds: adjoint.feeds,
    inDims: region.inShape, outDims: region.outShape, name: region.id,
  };
}

/** Baked-in weight bytes above which an operator's two halves get a session each instead of one chained model. */
export const CHAIN_LIMIT_BYTES = 2 ** 27;

/**
 * Weights this large are run-time inputs of the operator's sessions (feedInitializers), not baked in: session creation
 * then skips copying and pre-packing them, and runs were no slower (ResNet-50: 34-step Lanczos 14.3–15.4 → 13.8–14.0 s,
 * quick estimates 6.5–8.4 → 5.9–7.1 s; a 411 MB Gemm 8 s of encoding and creation saved). Scalars stay baked in.
 */
export const FEED_BYTES = 4096;

/**
 * feedInitializers at FEED_BYTES, except the weights of convolutions, which stay baked in: onnxruntime's CPU Conv
 * with its weight as a run-time input gave results that change with the intra-op thread count (a stride-2 32→64 3×3
 * conv on 16×16: 3124 of 4096 outputs differ between 1 and 2 threads; collins_rul's 6×20 conv adjoint: 496 of 600),
 * baked in none did, so a report would depend on --threads. Gemm and MatMul gave the same outputs either way.
 */
export function feedWeights(g: GraphSpec): { spec: GraphSpec; feeds: Record<string, Tensor> } {
  const conv = new Set(g.nodes.filter((n) => n.opType === 'Conv' || n.opType === 'ConvTranspose').flatMap((n) => n.inputs.slice(1)));
  const all = [...(g.initializers instanceof Map ? g.initializers.entries() : (g.initializers ?? []))];
  const baked = all.filter(([name]) => conv.has(name));
  if (baked.length === 0) return feedInitializers(g, FEED_BYTES);
  const fed = feedInitializers({ ...g, initializers: all.filter(([name]) => !conv.has(name)) }, FEED_BYTES);
  const kept = [...(fed.spec.initializers instanceof Map ? fed.spec.initializers.entries() : (fed.spec.initializers ?? []))];
  return { spec: { ...fed.spec, initializers: [...kept, ...baked] }, feeds: fed.feeds };
}

/** Bytes of a graph's initializers (float64 and int64 8 per element, others 4). */
export function weightBytes(g: GraphSpec): number {
  let bytes = 0;
  for (const [, t] of g.initializers instanceof Map ? g.initializers.entries() : (g.initializers ?? [])) bytes += (t.data as ArrayLike<number>).length * (t.dtype === 'float64' || t.dtype === 'int64' ? 8 : 4);
  return bytes;
}
