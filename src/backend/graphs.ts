import type { LinearRegion } from '../ir/merge.js';
import type { ChainPart } from '../ir/operator.js';
import type { Tensor } from '../ir/tensor.js';
import { encodeGraph, feedInitializers, type GraphSpec, type NodeSpec } from '../onnx/writer.js';
import { EMIT_OPSET, emitAdjoint, emitForward } from './emit.js';
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

/** A chain's shapes: its input and output, the values between its parts (each part's output but the last), its diagonals'. */
export function chainDims(parts: readonly ChainPart[]): { inDims: readonly number[]; outDims: readonly number[]; inner: (readonly number[])[]; diags: (readonly number[])[] } {
  const out = (p: ChainPart) => ('diag' in p ? p.diag : p.region.outShape);
  const first = parts[0];
  return {
    inDims: 'diag' in first ? first.diag : first.region.inShape,
    outDims: out(parts[parts.length - 1]),
    inner: parts.slice(0, -1).map(out),
    diags: parts.flatMap((p) => ('diag' in p ? [p.diag] : [])),
  };
}

/** Which map of a chain a model computes: C, Cᵀ, or CᵀC. */
export type ChainMode = 'forward' | 'adjoint' | 'gram';

/**
 * One model for a chain of parts (ChainPart): input 'v' → output 'z' = C v, Cᵀ v or CᵀC v, with each diagonal part a
 * Mul by the graph input 'd<j>' (j its position among the diagonal parts, the same in every mode). The forward and
 * adjoint models also output 'o<k>', the value (forward) or cotangent (adjoint) between part k and part k + 1, and the
 * adjoint adds the input 'i<k>' to that cotangent as it passes (zeros where nothing is injected: exact). Each region's
 * forward or adjoint graph is spliced in with its internal names prefixed, as chainGraphs does; a weight tensor
 * several parts hold is stored once. Float32 throughout: the regions' kernels are those of their own graphs, and a
 * diagonal's product is rounded once to float32, where the per-region path rounds the float64 product at the next
 * region's input.
 */
export function chainPartsGraph(parts: readonly ChainPart[], mode: ChainMode): GraphSpec {
  const splicer = new Splicer();
  const nodes: NodeSpec[] = [];
  const shapes = chainDims(parts);
  // each diagonal part's position among the diagonals: its input 'd<j>'
  const diagAt = new Map<number, number>();
  parts.forEach((p, i) => { if ('diag' in p) diagAt.set(i, diagAt.size); });
  let cur = 'v', k = 0, opset = EMIT_OPSET;
  const splice = (g: GraphSpec) => {
    const prefix = `c${k}.`, out = `t${k++}`;
    nodes.push(...splicer.nodes(g, prefix, new Map([[g.inputs[0].name, cur], [g.outputs[0].name, out]])));
    opset = Math.max(opset, g.opset);
    cur = out;
  };
  const mul = (i: number) => { const out = `t${k++}`; nodes.push({ opType: 'Mul', name: `diag${k}`, inputs: [cur, `d${diagAt.get(i)}`], outputs: [out] }); cur = out; };
  const link = (i: number, adjoint: boolean) => { const p = parts[i]; if ('diag' in p) mul(i); else splice(adjoint ? emitAdjoint(p.region) : emitForward(p.region)); };
  const diagInputs = shapes.diags.map((dims, j) => ({ name: `d${j}`, dims, dtype: 'float32' }));
  const inner = shapes.inner.map((dims, j) => ({ name: `o${j}`, dims, dtype: 'float32' }));
  const injections = mode === 'adjoint' ? shapes.inner.map((dims, j) => ({ name: `i${j}`, dims, dtype: 'float32' })) : [];
  const keep = (j: number) => nodes.push({ opType: 'Identity', name: `inner${j}`, inputs: [cur], outputs: [`o${j}`] });
  if (mode !== 'adjoint') for (let i = 0; i < parts.length; i++) { link(i, false); if (mode === 'forward' && i < parts.length - 1) keep(i); }
  if (mode !== 'forward') {
    for (let i = parts.length - 1; i >= 0; i--) {
      if (mode === 'adjoint' && i < parts.length - 1) {
        const out = `t${k++}`;
        nodes.push({ opType: 'Add', name: `inject${i}`, inputs: [cur, `i${i}`], outputs: [out] });
        cur = out;
        keep(i);
      }
      link(i, true);
    }
  }
  nodes.push({ opType: 'Identity', name: 'chain-out', inputs: [cur], outputs: ['z'] });
  const { inDims: inShape, outDims: outShape } = shapes;
  return {
    opset,
    inputs: [{ name: 'v', dims: mode === 'adjoint' ? outShape : inShape, dtype: 'float32' }, ...diagInputs, ...injections],
    outputs: [{ name: 'z', dims: mode === 'forward' ? outShape : inShape, dtype: 'float32' }, ...(mode === 'gram' ? [] : inner)],
    nodes,
    initializers: splicer.initializers,
    name: `chain-${mode}`,
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
