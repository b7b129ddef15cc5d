import { LipcheckError } from '../errors.js';
import { emitAdjoint, emitForward } from '../backend/emit.js';
import type { LinearRegion } from '../ir/merge.js';
import { lanczosTop, NonFiniteError } from '../linalg/lanczos.js';
import { createOrtGram, createOrtGramPair, denseMatrixOf, type OperatorModels } from '../backend/operators.js';
import { BudgetExceededError, denseSpectralNormBound } from '../linalg/dense.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { kwFactor } from '../linalg/probabilistic.js';
import { Random } from '../linalg/random.js';
import type { RuntimeOptions } from '../backend/runtime.js';
import { regionFlop } from '../linalg/work.js';
import { encodeGraph, feedInitializers, type GraphSpec, type NodeSpec } from '../onnx/writer.js';
import type { Bound, NormKind } from './kinds.js';
import { regionBound } from './region-bounds.js';

/** How hard to work on each operator and what to promise. */
export interface NormSettings {
  readonly norm: NormKind;
  readonly certify: 'strict' | 'auto' | 'off' | 'none';
  readonly delta: number;
  readonly tol: number;
  readonly maxIterations: number;
  readonly seed: number;
  readonly runtime: RuntimeOptions;
  /** Work budget (flop, linalg/work.ts) of one deterministic certificate: the cap of measureRegion's certificate budget. */
  readonly certifyBudget: number;
}

/** Everything measured on one merged operator. */
export interface OperatorNorm {
  readonly estimate: number | null;
  readonly upper: Bound;
  readonly candidates: readonly Bound[];
  readonly iterations: number;
  /** Wall-clock time (a timing only: nothing is decided by it). */
  readonly ms: number;
  /** Work of the Lanczos iteration by the cost model (iterations × one apply and one adjoint, flop), for budgets. */
  readonly work: number;
  /** Top right singular vector estimate (input space), for witnesses. */
  readonly direction: Float64Array | null;
}

/**
 * The float32 rounding margin added to a Ritz value computed through onnxruntime: each product A·v or Aᵀ·w of a chain
 * of k prims differs from the exact one by at most (Σγ_{K_i+1})·‖|A|‖·‖v‖ (first-order, any summation order), so
 * one AᵀA application is off by η ≤ 2gP² + (gP)² with g = Σγ, P = ‖|A|‖₂ bound; σ² ≤ θ/(1−ε) + η.
 */
export function roundingMargin(gammaSum: number, absNorm: number): number {
  const gp = gammaSum * absNorm;
  return 2 * gp * absNorm + gp * gp;
}

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
const CHAIN_LIMIT_BYTES = 2 ** 27;

/**
 * Weights this large are run-time inputs of the operator's sessions (feedInitializers), not baked in: session creation
 * then skips copying and pre-packing them, and runs were no slower (ResNet-50: 34-step Lanczos 14.3–15.4 → 13.8–14.0 s,
 * quick estimates 6.5–8.4 → 5.9–7.1 s; a 411 MB Gemm 8 s of encoding and creation saved). Scalars stay baked in.
 */
const FEED_BYTES = 4096;

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

function weightBytes(g: GraphSpec): number {
  let bytes = 0;
  for (const [, t] of g.initializers instanceof Map ? g.initializers.entries() : (g.initializers ?? [])) bytes += (t.data as ArrayLike<number>).length * (t.dtype === 'float64' || t.dtype === 'int64' ? 8 : 4);
  return bytes;
}

/**
 * Under --certify auto a region's certificates may cost CERTIFY_PER_LANCZOS × its Lanczos work (flop), at least
 * CERTIFY_FLOOR_FLOP and at most the --certify-work cap: about twice the estimate's time on the reference machine,
 * where onnxruntime did about 4e6 flop/ms (linalg/work.ts) and the certificates' float64 kernels about 1.4e6, and never
 * less than 200 ms of certificate work. Counted, not timed: the same on every run.
 */
const CERTIFY_PER_LANCZOS = 0.7;
const CERTIFY_FLOOR_FLOP = 2.8e8;

/** The work budget of a region's certificates (flop) after a Lanczos run of `lanczosWork` flop, by the rule above. */
export function certificateBudget(settings: Pick<NormSettings, 'certify' | 'certifyBudget'>, lanczosWork: number): number {
  if (settings.certify === 'strict') return settings.certifyBudget;
  return Math.min(settings.certifyBudget, Math.max(CERTIFY_FLOOR_FLOP, CERTIFY_PER_LANCZOS * lanczosWork));
}

/** Largest region (inputs, inputs × outputs) whose dense matrix is formed for an exact certificate. */
const DENSE_LIMIT = { cols: 4096, entries: 4e6 };

/**
 * A certified bound for a small region with no convolution whose composition is loose (several weighted ops, linear
 * residual sums, unfolded scalings): its matrix is formed column by column by a float64 onnxruntime graph and bounded
 * exactly (denseSpectralNormBound). Each entry is off by at most g₆₄·(|A_k|⋯|A_1|)_ij with g₆₄ = Σγ_K in float64, so
 * ‖Â − A‖₂ ≤ g₆₄·P (P the ‖|A|‖ bound of the composition); that is added.
 */
async function denseRegionBound(region: LinearRegion, composed: ReturnType<typeof regionBound>, settings: NormSettings, budget: number): Promise<Bound | null> {
  if (['exact', 'exact-eig', 'exact-svd', 'gram-iteration', 'row-sum'].includes(composed.method)) return null;
  if (region.nodes.some((n) => n.prim.op === 'conv' || n.prim.op === 'convTranspose')) return null;
  const cols = sizeOf(region.inShape), rows = sizeOf(region.outShape);
  if (cols > DENSE_LIMIT.cols || rows * cols > DENSE_LIMIT.entries) return null;
  const m = await denseMatrixOf(encodeGraph(emitForward(region, 'float64')), region.inShape, region.outShape, settings.runtime, region.id);
  try {
    const b = denseSpectralNormBound(m, rows, cols, { budgetFlop: budget });
    const g64 = composed.gammaSum * 2 ** -29;
    return { value: b.value + 2 * g64 * composed.absNorm, kind: 'certified', method: `${b.method}(dense region)` };
  } catch (e) {
    if (e instanceof BudgetExceededError) return null;
    throw e;
  }
}

/** Measures one region: Lanczos estimate, KW probabilistic bound and a certified bound, chosen per `certify`. */
export async function measureRegion(region: LinearRegion, settings: NormSettings, index: number): Promise<OperatorNorm> {
  const t0 = performance.now();
  const candidates: Bound[] = [];
  // Schur/isometry composition first: free, and it supplies the rounding margin's ‖|A|‖ bound
  const cheap = regionBound(region, settings.norm, 0);
  if (settings.norm === 'inf') {
    const upper: Bound = { value: cheap.value, kind: 'certified', method: cheap.method };
    return { estimate: cheap.method === 'exact' || cheap.method === 'row-sum' ? cheap.value : null, upper, candidates: [upper], iterations: 0, ms: performance.now() - t0, work: 0, direction: null };
  }

  const noWeights = cheap.method === 'exact';
  let estimate: number | null = noWeights ? cheap.value : null;
  let iterations = 0;
  let work = 0;
  let direction: Float64Array | null = null;
  if (!noWeights) {
    // Lanczos runs on the smaller of AᵀA and AAᵀ, one session computing both products of a step (two sessions when
    // the weights are so large that one model holding both halves would double the peak memory)
    const wide = sizeOf(region.outShape) < sizeOf(region.inShape);
    const [fwd, adj] = [emitForward(region), emitAdjoint(region)];
    const [first, second] = wide ? [adj, fwd] : [fwd, adj];
    const [firstDims, secondDims] = wide ? [region.outShape, region.inShape] : [region.inShape, region.outShape];
    // weights of FEED_BYTES or more are fed with each run rather than baked into the session (feedWeights)
    const half = (g: GraphSpec, dims: readonly number[]) => {
      const fed = feedWeights(g);
      return { model: () => encodeGraph(fed.spec), feeds: fed.feeds, input: g.inputs[0].name, output: g.outputs[0].name, dims };
    };
    const chained = feedWeights(chainGraphs(first, second));
    const op = weightBytes(chained.spec) > CHAIN_LIMIT_BYTES
      ? await createOrtGramPair(half(first, firstDims), half(second, secondDims), settings.runtime, region.id)
      : await createOrtGram(encodeGraph(chained.spec), firstDims, settings.runtime, region.id, chained.feeds);
    try {
      const n = op.n;
      const rng = new Random(settings.seed + 7919 * index);
      const res = await lanczosTop(
        { n, apply: (v) => op.apply(v), applyInto: (v, out) => op.applyInto(v, out) },
        {
          start: rng.unitVector(n),
          maxSteps: settings.maxIterations,
          // 'none' wants the estimate only: converged Ritz values, without the steps the KW bound needs
          stop: (theta, k, prev) => k >= 3 && Math.abs(theta - prev) <= 0.1 * settings.tol * theta && (settings.certify === 'none' || kwFactor(n, k, settings.delta) <= 1 + settings.tol),
          // --threads 1 (and a batch worker's share of one core) keeps the reorthogonalisation on this thread too
          parallel: settings.runtime.threads !== 1,
        },
      );
      iterations = res.steps;
      work = 2 * res.steps * regionFlop(region);
      estimate = Math.sqrt(res.theta);
      direction = wide ? await op.half(res.ritzVector) : res.ritzVector;
      const factor = res.invariant && res.steps >= n ? 1 : kwFactor(n, res.steps, settings.delta);
      if (Number.isFinite(factor) && settings.certify !== 'none') {
        const margin = roundingMargin(cheap.gammaSum, cheap.absNorm);
        candidates.push({ value: Math.sqrt(res.theta * factor * factor + margin), kind: 'probabilistic', method: `lanczos-kw(k=${res.steps})` });
      }
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      throw new LipcheckError('UNSUPPORTED', `Operator ${region.id} (${region.nodes.map((n) => `${n.opType} '${n.name}'`).join(', ')}) overflows float32: applying it gives infinite or NaN values, so its weights are too large to analyse (the bound of its parts is ${cheap.value.toExponential(3)}). Check the model's weights.`, { cause: e });
    } finally {
      await op.dispose();
    }
  }

  // 'none': only the bound of the parts computed above, free and certified but loose
  if (noWeights || settings.certify === 'none') candidates.push({ value: cheap.value, kind: 'certified', method: cheap.method });
  // 'off' skips them only where Lanczos gave a probabilistic bound: a Krylov space that became invariant in fewer steps than
  // KW needs (rank-deficient or tiny operators) leaves none, and a certificate is then the only bound there is
  else if (settings.certify !== 'off' || candidates.length === 0) {
    // certificates may cost about twice the estimate (strict: the whole per-operator budget), counted in flop
    const budget = certificateBudget(settings, work);
    const composed = regionBound(region, settings.norm, budget);
    candidates.push({ value: composed.value, kind: 'certified', method: composed.method });
    const dense = await denseRegionBound(region, composed, settings, budget);
    if (dense) candidates.push(dense);
  }

  // 'off' skips the costly certificates, but an exact value that came for free (isometries, scalars) still counts
  const allowed = candidates.filter((c) => settings.certify !== 'strict' || c.kind === 'certified');
  if (allowed.length === 0) {
    if (settings.certify === 'strict') throw new LipcheckError('CERTIFY', `--certify strict: no certified bound for operator ${region.id} (${region.nodes.map((n) => `'${n.name}'`).join(', ')}).`);
    throw new LipcheckError('RUNTIME', `No upper bound for operator ${region.id} (${region.nodes.map((n) => `'${n.name}'`).join(', ')}): Lanczos did not reach a usable certificate in ${iterations} steps. Raise --iterations.`);
  }
  // auto prefers a certified bound unless a probabilistic one is more than 0.1% tighter
  const tightest = allowed.reduce((a, b) => (b.value < a.value ? b : a));
  const certified = allowed.find((c) => c.kind === 'certified' && c.value <= tightest.value * (1 + 1e-3));
  const upper = certified ?? tightest;
  return { estimate, upper, candidates, iterations, ms: performance.now() - t0, work, direction };
}
