import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { DENSE_LIMIT, denseObstacle, type GramOperator, type JacobianGraph, type JacobianOperator, type JacobianPoint, type LinearOperator, type ModelEvaluator, type OperatorBackend } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { zeroFeeds } from '../onnx/tensor.js';
import type { OnnxModel } from '../onnx/read-model.js';
import { encodeForRuntime, encodeGraph, type GraphSpec } from '../onnx/writer.js';
import { emitAdjoint, emitForward } from './emit.js';
import { fusedLanczosFits, withFusedLanczos } from './fused-lanczos.js';
import { chainGraphs, CHAIN_LIMIT_BYTES, feedWeights, jacobianGraphModel, jacobianInner, jacobianPointNodes, operatorModels, pointDims, weightBytes, type JacobianMode } from './graphs.js';
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

/** Flop of one product through a Jacobian graph (the cost model's, linalg/work.ts) under which its sessions take one thread. */
export const JACOBIAN_ONE_THREAD_FLOP = 2e7;

/**
 * A Jacobian graph's maps (jacobianGraphModel), each session made on first use: one run per product of the whole
 * Jacobian (the lower bound's: a ReLU net's J(x)ᵀJ(x)v in one run instead of two per layer, a residual net's sums and a
 * CNN's max-pools inside the run too). Weights as feedWeights decides (convolutions baked in: thread-count
 * determinism); the point's slopes, indices and probabilities fed with each run, converted once per array.
 */
function ortJacobian(graph: JacobianGraph, runtime: RuntimeOptions): JacobianOperator {
  const inner = jacobianInner(graph);
  const pointNodes = jacobianPointNodes(graph);
  // a graph this light runs on one onnxruntime thread: splitting its small kernels costs more than it saves (collins_rul:
  // lower-bound phase 890 → 720 ms); convolution weights stay baked in and MLAS never splits a sum, so the same bits
  const few = graph.nodes.reduce((a, n) => a + (n.op === 'region' ? regionFlop(n.region) : 0), 0) < JACOBIAN_ONE_THREAD_FLOP;
  const sessions = new Map<string, Promise<{ session: Session; feeds: Record<string, Tensor> }>>();
  const open = (mode: JacobianMode, observe: boolean) => {
    const key = `${mode}${observe ? '+' : ''}`;
    let s = sessions.get(key);
    if (!s) {
      const fed = feedWeights(jacobianGraphModel(graph, mode, observe));
      s = Session.create(encodeGraph(fed.spec), few ? { ...runtime, threads: 1 } : runtime, `the Jacobian graph (${key})`).then((session) => ({ session, feeds: fed.feeds }));
      sessions.set(key, s);
    }
    return s;
  };
  // a point's arrays as onnxruntime feeds, converted once per array (a point is used for many products)
  const converted = new WeakMap<Float64Array | Int32Array, Float32Array | Int32Array>();
  const pointFeeds = (point: JacobianPoint, f: Record<string, Tensor>) => {
    pointNodes.forEach((n, j) => {
      const a = point.get(n.output);
      if (!a) throw new LipcheckError('INTERNAL', `The Jacobian graph needs the point's values for '${n.output}' (${n.op}); none were given.`);
      const dims = pointDims(n);
      if (a.length !== sizeOf(dims)) throw new LipcheckError('INTERNAL', `The point's values for '${n.output}' (${n.op}) have ${a.length} elements, not ${sizeOf(dims)}.`);
      let data = converted.get(a);
      if (!data) { data = n.op === 'select' ? Int32Array.from(a) : Float32Array.from(a); converted.set(a, data); }
      f[`p${j}`] = { dtype: data instanceof Int32Array ? 'int32' : 'float32', dims, data };
    });
  };
  // what an adjoint run without an injection feeds there (onnxruntime only reads its inputs)
  let zeros: Float32Array[] | null = null;
  const run = async (mode: JacobianMode, v: Float64Array, point: JacobianPoint, inject?: ReadonlyMap<string, Float64Array>, keep?: Map<string, Float64Array>): Promise<Float64Array> => {
    // forward products share one model with the inner tangents as outputs (onnxruntime computes them anyway; a plain
    // product fetches 'z' alone): one session fewer, each holding the convolution weights
    const observe = mode === 'forward' || keep !== undefined || (mode === 'adjoint' && inject !== undefined && inner.some(({ name }) => inject.has(name)));
    const { session, feeds } = await open(mode, observe);
    const f: Record<string, Tensor> = { ...feeds, v: { dtype: 'float32', dims: mode === 'adjoint' ? graph.outDims : graph.inDims, data: Float32Array.from(v) } };
    pointFeeds(point, f);
    if (mode === 'adjoint' && observe) {
      zeros ??= inner.map(({ dims }) => new Float32Array(sizeOf(dims)));
      inner.forEach(({ name, dims }, j) => { const g = inject?.get(name); f[`i${j}`] = { dtype: 'float32', dims, data: g ? Float32Array.from(g) : zeros![j] }; });
    }
    const names = keep ? ['z', ...inner.map((_, j) => `o${j}`)] : ['z'];
    const out = await session.run(f, names, 'the Jacobian graph');
    if (keep) inner.forEach(({ name }, j) => keep.set(name, new Float64Array(out.get(`o${j}`)!.data as Float32Array)));
    return new Float64Array(out.get('z')!.data as Float32Array);
  };
  return {
    inSize: sizeOf(graph.inDims),
    outSize: sizeOf(graph.outDims),
    inner: inner.map(({ name }) => name),
    apply: (v, point, keep) => run('forward', v, point, undefined, keep),
    adjoint: (w, point, inject, keep) => run('adjoint', w, point, inject, keep),
    gram: (v, point) => run('gram', v, point),
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
    // WGSL's faithful rounding (+, −, × within 1 ULP) on WebGPU; IEEE round-to-nearest elsewhere
    ...(runtime.device === 'webgpu' ? { float32Unit: 2 ** -23 } : {}),
    // operators measured at once: one per worker thread running sessions, and one more the main thread works on
    concurrency: ortWorkersFor(runtime) + 1,
    operator(region: LinearRegion): Promise<LinearOperator> {
      return createOrtOperator(operatorModels(region), runtime);
    },
    gram(region: LinearRegion) {
      return ortGram(region, runtime);
    },
    async jacobian(graph: JacobianGraph): Promise<JacobianOperator> {
      return ortJacobian(graph, runtime);
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
