import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { DENSE_LIMIT, denseObstacle, type ChainOperator, type ChainPart, type GramOperator, type LinearOperator, type ModelEvaluator, type OperatorBackend } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { zeroFeeds } from '../onnx/tensor.js';
import type { OnnxModel } from '../onnx/read-model.js';
import { encodeForRuntime, encodeGraph, type GraphSpec } from '../onnx/writer.js';
import { emitAdjoint, emitForward } from './emit.js';
import { fusedLanczosFits, withFusedLanczos } from './fused-lanczos.js';
import { chainDims, chainGraphs, chainPartsGraph, CHAIN_LIMIT_BYTES, feedWeights, operatorModels, weightBytes, type ChainMode } from './graphs.js';
import { createOrtGram, createOrtGramPair, createOrtOperator, denseMatrixOf } from './operators.js';
import { ModelRunner } from './runner.js';
import { createWorkerGram, ortIntraThreads, ortWorkersFor } from './ort-pool.js';
import { denseGramKernel } from './dense-gram.js';
import { resolveDevice, Session, sessionOptions, type RuntimeOptions } from './runtime.js';
import { float64Model } from './widen.js';
import { regionFlop } from '../linalg/work.js';

export type { OperatorBackend } from '../ir/operator.js';

/** What the onnxruntime backend is built from: the decoded model (for whole-model evaluation) and the session settings. */
export interface OrtBackendOptions {
  /** Absent for a backend of operators only (tests): `model()` then fails. */
  readonly model?: OnnxModel;
  readonly runtime: RuntimeOptions;
  /** The analysed input and output: needed only for the float64 form of the model (`model({ precision: 'float64' })`). */
  readonly io?: { readonly inputName: string; readonly inputShape: readonly number[]; readonly outputName: string };
}

/**
 * The Gram map of a region on its smaller side through onnxruntime: one session computing both products of a step
 * (chainGraphs), or two sessions when the weights are so large (CHAIN_LIMIT_BYTES) that one model holding both halves
 * would double the peak memory; weights of FEED_BYTES or more fed with each run, convolution weights baked in
 * (feedWeights: thread-count determinism).
 */
async function ortGram(region: LinearRegion, runtime: RuntimeOptions): Promise<GramOperator & { readonly wide: boolean }> {
  const wide = sizeOf(region.outShape) < sizeOf(region.inShape);
  const [fwd, adj] = [emitForward(region), emitAdjoint(region)];
  const [first, second] = wide ? [adj, fwd] : [fwd, adj];
  const [firstDims, secondDims] = wide ? [region.outShape, region.inShape] : [region.inShape, region.outShape];
  const half = (g: GraphSpec, dims: readonly number[]) => {
    const fed = feedWeights(g);
    return { model: () => encodeGraph(fed.spec), feeds: fed.feeds, input: g.inputs[0].name, output: g.outputs[0].name, dims };
  };
  const chained = feedWeights(chainGraphs(first, second));
  const paired = weightBytes(chained.spec) > CHAIN_LIMIT_BYTES;
  const fused = !paired && fusedLanczosFits(sizeOf(firstDims), runtime);
  // on the CPU, the session on a worker thread where there are workers (ort-pool.ts) and a product is worth the
  // hand-off (ort-pool.ts WORKER_MIN_FLOP, counted by the cost model): the main thread stays free
  const workers = paired || fused ? 0 : ortWorkersFor(runtime, regionFlop(region));
  if (workers > 0 && (await resolveDevice(runtime.device, runtime.threads)).provider === 'cpu') {
    const op = await createWorkerGram(encodeGraph(chained.spec), firstDims, sizeOf(secondDims), sessionOptions('cpu', runtime, ortIntraThreads(runtime)), workers, region.id, chained.feeds);
    return Object.assign(op, { wide });
  }
  const op = paired
    ? await createOrtGramPair(half(first, firstDims), half(second, secondDims), runtime, region.id)
    : await createOrtGram(encodeGraph(chained.spec), firstDims, runtime, region.id, chained.feeds);
  // several Lanczos steps per run where that measured faster (src/backend/fused-lanczos.ts)
  if (fused) withFusedLanczos(op, { first, second, dims: firstDims, name: region.id }, runtime);
  return Object.assign(op, { wide });
}

/** Flop of one product through a chain (the cost model's, linalg/work.ts) under which its sessions take one thread. */
export const CHAIN_ONE_THREAD_FLOP = 2e7;

/**
 * A chain's three maps (chainPartsGraph), each one session made on first use: one run per product of the whole chain
 * (the Jacobian products of the lower bound: a ReLU net's J(x)ᵀJ(x)v in one run instead of two per layer). Weights as
 * feedWeights decides (convolutions baked in: thread-count determinism); the diagonals fed as float32 with each run.
 */
function ortChain(parts: readonly ChainPart[], runtime: RuntimeOptions): ChainOperator {
  if (parts.length === 0) throw new LipcheckError('INTERNAL', 'A chain operator needs at least one part.');
  const { inDims, outDims, inner: innerDims, diags: diagDims } = chainDims(parts);
  const name = parts.map((p) => ('diag' in p ? 'diag' : p.region.id)).join('·');
  // a chain this light runs on one onnxruntime thread: splitting its small kernels costs more than it saves (collins_rul:
  // lower-bound phase 890 → 720 ms); convolution weights stay baked in and MLAS never splits a sum, so the same bits
  const few = parts.reduce((a, p) => a + ('diag' in p ? 0 : regionFlop(p.region)), 0) < CHAIN_ONE_THREAD_FLOP;
  const sessions = new Map<ChainMode, Promise<{ session: Session; feeds: Record<string, Tensor> }>>();
  const open = (mode: ChainMode) => {
    let s = sessions.get(mode);
    if (!s) {
      const fed = feedWeights(chainPartsGraph(parts, mode));
      s = Session.create(encodeGraph(fed.spec), few ? { ...runtime, threads: 1 } : runtime, `the chain ${name} (${mode})`).then((session) => ({ session, feeds: fed.feeds }));
      sessions.set(mode, s);
    }
    return s;
  };
  // what an adjoint run without injections feeds (onnxruntime only reads its inputs)
  let zeros: Float32Array[] | null = null;
  const run = async (mode: ChainMode, v: Float64Array, diags: readonly Float64Array[], inject?: readonly (Float64Array | null)[], inner?: Float64Array[]): Promise<Float64Array> => {
    if (diags.length !== diagDims.length) throw new LipcheckError('INTERNAL', `The chain ${name} takes ${diagDims.length} diagonals; it was given ${diags.length}.`);
    const { session, feeds } = await open(mode);
    const f: Record<string, Tensor> = { ...feeds, v: { dtype: 'float32', dims: mode === 'adjoint' ? outDims : inDims, data: Float32Array.from(v) } };
    diags.forEach((d, j) => { f[`d${j}`] = { dtype: 'float32', dims: diagDims[j], data: Float32Array.from(d) }; });
    if (mode === 'adjoint') {
      zeros ??= innerDims.map((d) => new Float32Array(sizeOf(d)));
      innerDims.forEach((d, j) => { const g = inject?.[j]; f[`i${j}`] = { dtype: 'float32', dims: d, data: g ? Float32Array.from(g) : zeros![j] }; });
    }
    const names = inner ? ['z', ...innerDims.map((_, j) => `o${j}`)] : ['z'];
    const out = await session.run(f, names, `the chain ${name}`);
    if (inner) innerDims.forEach((_, j) => inner.push(new Float64Array(out.get(`o${j}`)!.data as Float32Array)));
    return new Float64Array(out.get('z')!.data as Float32Array);
  };
  return {
    inSize: sizeOf(inDims),
    outSize: sizeOf(outDims),
    apply: (v, diags, inner) => run('forward', v, diags, undefined, inner),
    adjoint: (w, diags, inject, inner) => run('adjoint', w, diags, inject, inner),
    gram: (v, diags) => run('gram', v, diags),
    async dispose() {
      for (const s of sessions.values()) await (await s.catch(() => null))?.session.release();
    },
  };
}

/**
 * The onnxruntime implementation of OperatorBackend: the one place that emits a region's graphs, encodes models and
 * opens sessions. Create it once per analysis; operators and evaluators it hands out are disposed by their users.
 */
export function createOrtBackend(opts: OrtBackendOptions): OperatorBackend {
  const { model, runtime } = opts;
  return {
    parallel: runtime.threads !== 1,
    // operators measured at once: one per worker thread running sessions, and one more the main thread works on
    concurrency: ortWorkersFor(runtime) + 1,
    operator(region: LinearRegion): Promise<LinearOperator> {
      return createOrtOperator(operatorModels(region), runtime);
    },
    gram(region: LinearRegion) {
      return ortGram(region, runtime);
    },
    async chain(parts: readonly ChainPart[]): Promise<ChainOperator> {
      return ortChain(parts, runtime);
    },
    // float64 Gemm (MLAS) for the dense certificates' Gram products: 10–20× the JavaScript product's speed
    denseGram: denseGramKernel(runtime),
    async denseMatrix(region: LinearRegion): Promise<Float64Array | null> {
      // onnxruntime has no float64 Conv kernel; the one dense limit (DENSE_LIMIT) holds for every estimator
      if (denseObstacle(region) !== null) return null;
      return denseMatrixOf(encodeGraph(emitForward(region, 'float64')), region.inShape, region.outShape, runtime, region.id);
    },
    async model(o = {}): Promise<ModelEvaluator | null> {
      if (!model) throw new LipcheckError('INTERNAL', 'This backend was created for operators only (no model was given), so it cannot evaluate the model. Pass the decoded model to createOrtBackend.');
      if (o.precision !== 'float64') {
        const runner = await ModelRunner.create(encodeForRuntime(model, [...(o.extraOutputs ?? [])]), runtime, o.what ?? 'the model');
        // the model's other inputs are held at zero, as the IR build holds them
        const others = zeroFeeds(model.inputs.filter((i) => i.name !== opts.io?.inputName && !model.initializers.has(i.name)), model.file);
        return { run: (feeds, outputs) => runner.run({ ...others, ...feeds }, outputs), release: () => runner.release() };
      }
      const decline = (why: string) => { o.onDecline?.(why); return null; };
      if (!opts.io) return decline('the backend was created without the analysed input and output');
      if (o.extraOutputs?.length) return decline('the float64 form of the model has no intermediate outputs');
      const model64 = float64Model(model, opts.io.inputName, opts.io.inputShape, opts.io.outputName);
      if (typeof model64 === 'string') return decline(model64);
      try {
        // float64 kernels: on the CPU, whatever the device
        return await ModelRunner.create(model64, { ...runtime, device: 'cpu' }, o.what ?? 'the model in float64');
      } catch (e) {
        return decline(`onnxruntime cannot run the model in float64 (${(e as Error).message.split('\n')[0]})`);
      }
    },
  };
}

export { DENSE_LIMIT };
