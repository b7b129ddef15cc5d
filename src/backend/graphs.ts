import type { LinearRegion } from '../ir/merge.js';
import type { Tensor } from '../ir/tensor.js';
import { encodeGraph, feedInitializers, type GraphSpec, type NodeSpec } from '../onnx/writer.js';
import { emitAdjoint, emitForward } from './emit.js';
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
  const stored = new Map<Tensor, string>();
  const initializers: [string, Tensor][] = [];
  const rename = (g: GraphSpec, prefix: string, io: Map<string, string>) => {
    const names = new Map(io);
    for (const [k, t] of g.initializers instanceof Map ? g.initializers.entries() : (g.initializers ?? [])) {
      const known = stored.get(t);
      if (known) { names.set(k, known); continue; }
      stored.set(t, `${prefix}${k}`);
      names.set(k, `${prefix}${k}`);
      initializers.push([`${prefix}${k}`, t]);
    }
    const name = (x: string) => (x === '' ? x : names.get(x) ?? `${prefix}${x}`);
    return g.nodes.map((n, i): NodeSpec => ({ ...n, name: `${prefix}${n.name ?? `${n.opType}_${i}`}`, inputs: n.inputs.map(name), outputs: n.outputs.map(name) }));
  };
  const a = rename(first, 'f.', new Map([[first.inputs[0].name, 'v'], [first.outputs[0].name, 'u']]));
  const b = rename(second, 's.', new Map([[second.inputs[0].name, 'u'], [second.outputs[0].name, 'z']]));
  return {
    opset: Math.max(first.opset, second.opset),
    inputs: [{ ...first.inputs[0], name: 'v' }],
    outputs: [{ ...second.outputs[0], name: 'z' }, { ...first.outputs[0], name: 'u' }],
    nodes: [...a, ...b],
    initializers,
    name: `${first.name ?? 'first'}-${second.name ?? 'second'}`,
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
