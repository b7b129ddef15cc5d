import type { GramLanczosOptions, GramLanczosResult } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { NonFiniteError, replayStopRule, unitRitz } from '../linalg/lanczos.js';
import { float32LanczosMargin, twoLevel, type Float32LanczosTrace } from '../linalg/lanczos-margin.js';
import { encodeGraph, type GraphSpec } from '../onnx/writer.js';
import type { FusedGramParts } from './fused-lanczos.js';
import { chainGraphs, feedWeights } from './graphs.js';
import { builder, constant, f32, ints, op } from './graph-builder.js';
import { Session, type RuntimeOptions } from './runtime.js';

/**
 * K Lanczos steps in one onnxruntime run with everything in float32 (issue 15 item 2, for providers without float64
 * kernels: WebGPU), derivation in docs/algorithms-fused-lanczos.md §7. The K steps are unrolled (whether a provider
 * runs an ONNX Loop on the device is not documented; the GPU check measured unrolled graphs): each is the region's
 * float32 Gram product, the three-term recurrence, two classical Gram–Schmidt passes and the normalisation, every dot
 * product a two-level sum (products summed within ⌈√n⌉ blocks, then the block sums: error γ_{L+B} instead of γ_n).
 * Vectors are kept padded to blocks × length with zeros, which every step keeps zero. Only numbers leave the run:
 * α, β, the norms the margin needs, the basis's Gram matrix and the Ritz vector of T_K.
 */

/** Squarings of T_K (float32, each scaled by its largest entry) for its top eigenvector: only a start direction. */
const SQUARINGS = 30;

/** The unrolled model's bytes, its fed weights, and its sizes. */
export interface Fused32Model {
  readonly bytes: Uint8Array;
  readonly feeds: Readonly<Record<string, Tensor>>;
  readonly n: number;
  readonly padded: number;
  readonly steps: number;
}

/**
 * The model: input 'v0' (float32 [1, N], N the padded length, unit, zeros past n) and the fed weights; outputs (each
 * float32) 'alpha', 'beta', 'znorm', 'r1norm', 'h1norm', 'h2norm' [K], 'gram' [K+1, K+1] (the basis
 * v_0..v_K's Gram matrix, two-level sums) and 'ritz' [1, N] (T_K's top eigenvector combined with v_0..v_{K−1}, not
 * normalised).
 */
export function fused32Model(parts: FusedGramParts, steps: number): Fused32Model {
  const n = sizeOf(parts.dims);
  const { blocks, length, padded } = twoLevel(n);
  const chained = feedWeights(chainGraphs(parts.first, parts.second));
  const b = builder();
  const K = steps;
  const c = {
    blocksRow: constant(b, ints([-1, blocks, length])),
    dims: constant(b, ints(parts.dims)),
    flatN: constant(b, ints([1, n])),
    zero: constant(b, ints([0])),
    nEnd: constant(b, ints([n])),
    axis1: constant(b, ints([1])),
    axis2: constant(b, ints([2])),
    axis0: constant(b, ints([0])),
    pads: constant(b, ints([0, 0, 0, padded - n])),
  };
  // Σ_i x[i, :]·y[0, :] for x [m, N], y [1, N], as [m]: products, then sums over each block, then over the blocks
  const dot = (x: string, y: string) => op(b, 'ReduceSum', [op(b, 'ReduceSum', [op(b, 'Reshape', [op(b, 'Mul', [x, y]), c.blocksRow]), c.axis2], { keepdims: { i: 0 } }), c.axis1], { keepdims: { i: 0 } });
  const norm = (x: string) => op(b, 'Sqrt', [dot(x, x)]);
  const short = (x: string) => op(b, 'Sqrt', [op(b, 'ReduceSum', [op(b, 'Mul', [x, x])], { keepdims: { i: 1 } })]);
  const names = new Map<string, string>();
  for (const [k, t] of chained.spec.initializers instanceof Map ? chained.spec.initializers.entries() : (chained.spec.initializers ?? [])) {
    const w = `w.${k}`;
    b.inits.push([w, t]);
    names.set(k, w);
  }
  for (const input of chained.spec.inputs.slice(1)) names.set(input.name, input.name);
  // the region's Gram product of a padded vector, padded again
  const gram = (v: string, j: number): string => {
    const x = padded === n ? op(b, 'Reshape', [v, c.dims]) : op(b, 'Reshape', [op(b, 'Slice', [v, c.zero, c.nEnd, c.axis1]), c.dims]);
    const local = new Map(names);
    local.set('v', x);
    const rename = (s: string) => (s === '' ? s : local.get(s) ?? `g${j}.${s}`);
    for (const [i, node] of chained.spec.nodes.entries()) b.nodes.push({ ...node, name: `g${j}.${node.name ?? `${node.opType}_${i}`}`, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename) });
    const z = op(b, 'Reshape', [rename('z'), c.flatN]);
    return padded === n ? z : op(b, 'Pad', [z, c.pads]);
  };
  const vs: string[] = ['v0'];
  const outs: Record<'alpha' | 'beta' | 'znorm' | 'r1norm' | 'h1norm' | 'h2norm', string[]> = { alpha: [], beta: [], znorm: [], r1norm: [], h1norm: [], h2norm: [] };
  let basis = 'v0';
  for (let j = 0; j < K; j++) {
    const v = vs[j];
    const z = gram(v, j);
    const a = dot(z, v);
    let r = op(b, 'Sub', [z, op(b, 'Mul', [a, v])]);
    if (j > 0) r = op(b, 'Sub', [r, op(b, 'Mul', [outs.beta[j - 1], vs[j - 1]])]);
    if (j > 0) basis = op(b, 'Concat', [basis, v], { axis: { i: 0 } });
    const hs: string[] = [];
    const rs: string[] = [];
    for (let pass = 0; pass < 2; pass++) {
      const h = dot(basis, r);
      hs.push(h);
      r = op(b, 'Sub', [r, op(b, 'MatMul', [op(b, 'Unsqueeze', [h, c.axis0]), basis])]);
      rs.push(r);
    }
    const beta = norm(r);
    vs.push(op(b, 'Div', [r, beta]));
    outs.alpha.push(a); outs.beta.push(beta); outs.znorm.push(norm(z)); outs.r1norm.push(norm(rs[0]));
    outs.h1norm.push(short(hs[0])); outs.h2norm.push(short(hs[1]));
  }
  for (const [k, list] of Object.entries(outs)) op(b, 'Concat', list, { axis: { i: 0 } }, k);
  // the Gram matrix of v_0..v_K: [K+1, B, L] → [B, K+1, L] × [B, L, K+1], then summed over the blocks
  const all = op(b, 'Concat', [basis, vs[K]], { axis: { i: 0 } });
  const blocked = op(b, 'Transpose', [op(b, 'Reshape', [all, c.blocksRow])], { perm: { ints: [1, 0, 2] } });
  op(b, 'ReduceSum', [op(b, 'MatMul', [blocked, op(b, 'Transpose', [blocked], { perm: { ints: [0, 2, 1] } })]), c.axis0], { keepdims: { i: 0 } }, 'gram');
  // T_K and its top eigenvector by scaled squarings (a start direction only: not part of any bound)
  const eye = constant(b, f32([K, K], Array.from({ length: K * K }, (_, i) => (i % (K + 1) === 0 ? 1 : 0))));
  const up = constant(b, f32([K, K], Array.from({ length: K * K }, (_, i) => (Math.floor(i / K) + 1 === i % K ? 1 : 0))));
  const rowK = constant(b, ints([1, K]));
  const shifted = op(b, 'Reshape', [op(b, 'Concat', [constant(b, f32([1], [0])), op(b, 'Slice', ['beta', c.zero, constant(b, ints([K - 1])), c.axis0])], { axis: { i: 0 } }), rowK]);
  const s = op(b, 'Mul', [up, shifted]);
  let m = op(b, 'Add', [op(b, 'Add', [op(b, 'Mul', [eye, op(b, 'Reshape', ['alpha', rowK])]), s]), op(b, 'Transpose', [s], { perm: { ints: [1, 0] } })]);
  const scaled = (x: string) => op(b, 'Div', [x, op(b, 'ReduceMax', [op(b, 'Abs', [x])], { keepdims: { i: 0 } })]);
  m = scaled(m);
  for (let i = 0; i < SQUARINGS; i++) m = scaled(op(b, 'MatMul', [m, m]));
  const x0 = constant(b, f32([K, 1], Array.from({ length: K }, (_, i) => 1 + 0.5 * Math.sin(i + 1))));
  const coef = op(b, 'Reshape', [op(b, 'MatMul', [m, x0]), rowK], {}, 'coef');
  op(b, 'MatMul', [coef, basis], {}, 'ritz');
  const spec: GraphSpec = {
    opset: Math.max(13, chained.spec.opset),
    inputs: [{ name: 'v0', dtype: 'float32', dims: [1, padded] }, ...chained.spec.inputs.slice(1)],
    outputs: [...Object.keys(outs).map((name) => ({ name, dtype: 'float32' as const, dims: [K] })), { name: 'gram', dtype: 'float32', dims: [K + 1, K + 1] }, { name: 'coef', dtype: 'float32', dims: [1, K] }, { name: 'ritz', dtype: 'float32', dims: [1, padded] }],
    nodes: b.nodes,
    initializers: b.inits,
    name: `${parts.name}-lanczos32`,
  };
  return { bytes: encodeGraph(spec), feeds: chained.feeds, n, padded, steps: K };
}

/** What one float32 fused run returned (float32 values widened). */
export interface Fused32Run {
  readonly alpha: Float64Array;
  readonly beta: Float64Array;
  readonly zNorm: Float64Array;
  readonly r1Norm: Float64Array;
  readonly h1Norm: Float64Array;
  readonly h2Norm: Float64Array;
  readonly gram: Float64Array;
  readonly coef: Float64Array;
  /** Length n (the padding removed). */
  readonly ritz: Float64Array;
}

/** What float32LanczosMargin reads of a run: its first s steps, the Gram matrix `size` × `size`. */
export function float32Trace(run: Fused32Run, n: number, s: number, size: number): Float32LanczosTrace {
  return { n, s, alpha: run.alpha, beta: run.beta, zNorm: run.zNorm, r1Norm: run.r1Norm, h1Norm: run.h1Norm, h2Norm: run.h2Norm, gram: run.gram, size };
}

/** Opens a session of the unrolled model for K steps, runs it once from `start` (unit, length n), and closes it. */
export async function runFused32(parts: FusedGramParts, steps: number, start: Float64Array, runtime: RuntimeOptions): Promise<Fused32Run> {
  const model = fused32Model(parts, steps);
  const session = await Session.create(model.bytes, runtime, `the float32 Lanczos model of '${parts.name}'`);
  try {
    const v0 = new Float32Array(model.padded);
    // the start rounded to float32 once: the run's v_0 (its norm enters ω through the Gram matrix)
    v0.set(Float32Array.from(start));
    const names = ['alpha', 'beta', 'znorm', 'r1norm', 'h1norm', 'h2norm', 'gram', 'coef', 'ritz'];
    const out = await session.run({ ...model.feeds, v0: { dtype: 'float32', dims: [1, model.padded], data: v0 } }, names, `the float32 Lanczos steps of '${parts.name}'`);
    const get = (k: string) => Float64Array.from(out.get(k)!.data as Float32Array);
    return { alpha: get('alpha'), beta: get('beta'), zNorm: get('znorm'), r1Norm: get('r1norm'), h1Norm: get('h1norm'), h2Norm: get('h2norm'), gram: get('gram'), coef: get('coef'), ritz: get('ritz').slice(0, model.n) };
  } finally {
    await session.release();
  }
}

/**
 * lanczosTop's contract from one float32 run of K = expectedSteps steps: the caller's stop rule on the prefixes of
 * (α, β) as in fusedLanczos, θ of T_s for the first s where it holds, then raised to the bound θ' of §7
 * (float32LanczosMargin: ≥ θ, valid for the KW factor and η as θ is in the float64 path). The Ritz vector is T_K's
 * (a start direction: any unit vector serves). Null (lanczosTop then runs one product a step, float64 in JS) when the
 * rule has not stopped after K steps, the space became invariant, the basis lost orthogonality (ω ≥ 1/2), or a
 * read-back number is not finite.
 */
export async function fusedLanczos32(parts: FusedGramParts, runtime: RuntimeOptions, options: GramLanczosOptions): Promise<GramLanczosResult | null> {
  const n = sizeOf(parts.dims);
  const maxSteps = Math.min(options.maxSteps, n);
  const steps = Math.max(1, Math.min(maxSteps, options.expectedSteps ?? 12));
  const run = await runFused32(parts, steps, options.start, runtime);
  // a non-finite coefficient here may be the float32 recurrence's own overflow (its dot products square ‖z‖): the
  // float64 path decides whether the operator itself overflows
  let replay: ReturnType<typeof replayStopRule>;
  try {
    replay = replayStopRule(run, steps, maxSteps, options.stop, 1e-6);
  } catch (e) {
    if (e instanceof NonFiniteError) return null;
    throw e;
  }
  const { theta, used, history, invariant, stopped } = replay;
  // not stopped within K steps, or an invariant space (float32's next vector is then noise): the float64 path handles it
  if (!stopped || invariant) return null;
  const margin = float32LanczosMargin(float32Trace(run, n, used, steps + 1), theta);
  if (!margin) return null;
  const ritz = unitRitz(run.coef, run.ritz);
  if (!ritz) return null;
  return { theta: margin.thetaBound, ritzVector: ritz, steps: used, invariant: false, history, extraPasses: used };
}
