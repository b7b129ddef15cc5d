import type { GramLanczosOptions, GramLanczosResult, GramOperator } from '../ir/operator.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { replayStopRule, unitRitz } from '../linalg/lanczos.js';
import { onnx } from '../onnx/proto.js';
import { encodeGraph, type GraphSpec } from '../onnx/writer.js';
import { chainGraphs, feedWeights } from './graphs.js';
import { builder, constant, f64, ints, op } from './graph-builder.js';
import { fusedLanczos32 } from './fused-lanczos32.js';
import type { RuntimeOptions } from './runtime.js';
import { Session } from './runtime.js';

/**
 * Several Lanczos steps in one onnxruntime run (issue 15 item 2; derivation and measurements:
 * docs/algorithms-fused-lanczos.md).
 *
 * One ONNX Loop iteration is one step of lanczosTop's algorithm: the region's float32 Gram product (the same forward
 * and adjoint graphs as the one-run-per-step session; the float64 vector rounded to float32 on the way in, the result
 * widened exactly on the way out), then in float64 the three-term recurrence, two classical Gram–Schmidt passes
 * against the whole basis (CGS2, "twice is enough", on every step, where lanczosTop decides the second pass at run
 * time) and the normalisation. Every dot product is a MatMul/Gemm, whose CPU kernel (MLAS) splits work across threads
 * by rows and columns only, never inside a sum, so results do not depend on the intra-op thread count (tested). The
 * step count K is an input, so one session serves every run of an operator. Outputs: α₁..α_K, β₁..β_K and the Ritz
 * vector of T_K (its top eigenvector by repeated squaring, combined with the basis inside the graph): the basis never
 * leaves onnxruntime, since onnxruntime-node copies every output into fresh memory.
 *
 * The caller's stop rule runs on the prefixes of (α, β) afterwards. When it stops before K (or the Krylov space became
 * invariant) the run is repeated with exactly that many steps, so the Ritz vector belongs to the steps reported (runs
 * are deterministic: the repeated prefix is bit-identical); when it has not stopped after K steps, the method declines
 * (null) and lanczosTop runs one product a step.
 */

/** The parts of a region the fused graph is built from: its two halves in Gram order and the first half's input shape. */
export interface FusedGramParts {
  /** v ↦ B v (the forward graph, or the adjoint for AAᵀ). */
  readonly first: GraphSpec;
  /** u ↦ Bᵀ u. */
  readonly second: GraphSpec;
  /** Shape of the first graph's input (the Gram map's space). */
  readonly dims: readonly number[];
  readonly name: string;
}

/** Steps a fused run holds when the caller gives no expected count. */
const DEFAULT_STEPS = 12;

/** Squarings of T_K for its top eigenvector: λ₂/λ₁ ≤ 1 − 2⁻²⁰ is resolved to below double precision after 30. */
const SQUARINGS = 40;

/** The fused model's bytes and the weights it takes as inputs (feedWeights' choice for the Gram graph). */
export interface FusedModel {
  readonly bytes: Uint8Array;
  readonly feeds: Readonly<Record<string, Tensor>>;
  readonly n: number;
}

/**
 * One Lanczos step as the body of an ONNX Loop (carried: v_j, v_{j−1}, β_{j−1}, the basis v_0..v_{j−1} as rows;
 * scanned: α_j, β_j). The Gram graph's nodes and baked-in weights (convolutions') live in the body, so onnxruntime
 * prepares them once however many steps run; weights fed at run time are the outer graph's inputs.
 */
function stepBody(chained: GraphSpec, dims: readonly number[], n: number): GraphSpec {
  const b = builder('b.');
  const row = constant(b, ints([1, n]), 'shape_row');
  const col = constant(b, ints([n, 1]), 'shape_col');
  const shape = constant(b, ints(dims), 'shape_dims');
  // the basis with v_j appended: rows v_0..v_j
  const basis = op(b, 'Concat', ['basis_in', 'v'], { axis: { i: 0 } }, 'basis_out');
  // the float32 Gram product, exactly as the one-run-per-step session computes it: v rounded to float32, the result
  // widened exactly
  const names = new Map<string, string>([['v', op(b, 'Reshape', [op(b, 'Cast', ['v'], { to: { i: 1 } }), shape])]]);
  for (const [k, t] of chained.initializers instanceof Map ? chained.initializers.entries() : (chained.initializers ?? [])) names.set(k, constant(b, t, `w.${k}`));
  for (const input of chained.inputs.slice(1)) names.set(input.name, input.name);
  const rename = (x: string) => (x === '' ? x : names.get(x) ?? `g.${x}`);
  for (const [i, node] of chained.nodes.entries()) b.nodes.push({ ...node, name: `g.${node.name ?? `${node.opType}_${i}`}`, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename) });
  let w = op(b, 'Cast', [op(b, 'Reshape', [rename('z'), row])], { to: { i: 11 } });
  const a = op(b, 'MatMul', [w, op(b, 'Reshape', ['v', col])], {}, 'alpha_j');
  // w − α v − β prev, rounded in lanczosTop's order (the first step's prev and β are zero: subtracting 0 is exact)
  w = op(b, 'Sub', [op(b, 'Sub', [w, op(b, 'Mul', [a, 'v'])]), op(b, 'Mul', ['beta_in', 'prev'])]);
  // two classical Gram–Schmidt passes against v_0..v_j
  for (let pass = 0; pass < 2; pass++) {
    // h = w Qᵀ ([1, j+1]), w ← w − h Q; one pass alone measured no faster (docs/algorithms-fused-lanczos.md)
    const h = op(b, 'Gemm', [w, basis], { transB: { i: 1 } });
    w = op(b, 'Sub', [w, op(b, 'MatMul', [h, basis])]);
  }
  const beta = op(b, 'Sqrt', [op(b, 'MatMul', [w, op(b, 'Reshape', [w, col])])], {}, 'beta_out');
  op(b, 'Div', [w, beta], {}, 'v_out');
  op(b, 'Identity', ['v'], {}, 'prev_out');
  op(b, 'Identity', [beta], {}, 'beta_j');
  op(b, 'Identity', ['cond'], {}, 'cond_out');
  return {
    opset: Math.max(13, chained.opset),
    inputs: [{ name: 'iter', dtype: 'int64', dims: [] }, { name: 'cond', dtype: 'bool', dims: [] }, { name: 'v', dtype: 'float64' }, { name: 'prev', dtype: 'float64' }, { name: 'beta_in', dtype: 'float64' }, { name: 'basis_in', dtype: 'float64' }],
    outputs: [{ name: 'cond_out', dtype: 'bool', dims: [] }, { name: 'v_out', dtype: 'float64' }, { name: 'prev_out', dtype: 'float64' }, { name: 'beta_out', dtype: 'float64' }, { name: 'basis_out', dtype: 'float64' }, { name: 'alpha_j', dtype: 'float64' }, { name: 'beta_j', dtype: 'float64' }],
    nodes: b.nodes,
    initializers: b.inits,
    name: 'lanczos_step',
  };
}

/**
 * The fused model. Inputs: 'v0' (float64 [1, n], unit), 'steps' (int64 scalar K), 'eye' and 'up' (float64 [K, K]:
 * the identity and the superdiagonal ones), 'x0' (float64 [K, 1], the eigenvector iteration's start), and the fed
 * weights. Outputs: 'alpha' and 'beta' [K], 'coef' [1, K] (the top eigenvector of T_K, not normalised) and 'ritz'
 * [1, n] = coef · basis (not normalised).
 */
export function fusedLanczosModel(parts: FusedGramParts): FusedModel {
  const n = sizeOf(parts.dims);
  const chained = feedWeights(chainGraphs(parts.first, parts.second));
  const body = stepBody(chained.spec, parts.dims, n);
  const b = builder();
  const zero = constant(b, f64([1, 1], [0]), 'zero');
  const prev0 = op(b, 'Sub', ['v0', 'v0']);
  const basis0 = op(b, 'Slice', ['v0', constant(b, ints([0])), constant(b, ints([0])), constant(b, ints([0]))]);
  const cond = constant(b, { dtype: 'bool', dims: [], data: Uint8Array.of(1) } as unknown as Tensor, 'cond');
  b.nodes.push({ opType: 'Loop', inputs: ['steps', cond, 'v0', prev0, zero, basis0], outputs: ['v_last', 'prev_last', 'beta_last', 'basis', 'alphas', 'betas'], name: 'lanczos' });
  const flat = constant(b, ints([-1]), 'shape_flat');
  const rowK = constant(b, ints([1, -1]), 'shape_rowK');
  op(b, 'Reshape', ['alphas', flat], {}, 'alpha');
  op(b, 'Reshape', ['betas', flat], {}, 'beta');
  // T_K = diag(α) + S + Sᵀ with S[i, i+1] = β_i: α and the shifted β [0, β_1..β_{K−1}] broadcast along the masks' rows
  const shifted = op(b, 'Reshape', [op(b, 'Concat', [constant(b, f64([1], [0])), op(b, 'Slice', ['beta', constant(b, ints([0])), constant(b, ints([-1])), constant(b, ints([0]))])], { axis: { i: 0 } }), rowK]);
  const s = op(b, 'Mul', ['up', shifted]);
  let m = op(b, 'Add', [op(b, 'Add', [op(b, 'Mul', ['eye', op(b, 'Reshape', ['alpha', rowK])]), s]), op(b, 'Transpose', [s], { perm: { ints: [1, 0] } })]);
  // T is PSD (a Gram map's): its top eigenvector by repeated squaring, each square scaled by its largest entry (a max
  // is exact and independent of order), applied to x0
  const scaled = (x: string) => op(b, 'Div', [x, op(b, 'ReduceMax', [op(b, 'Abs', [x])], { keepdims: { i: 0 } })]);
  // scaled first too, so the first square cannot overflow
  m = scaled(m);
  for (let i = 0; i < SQUARINGS; i++) m = scaled(op(b, 'MatMul', [m, m]));
  const c = op(b, 'Reshape', [op(b, 'MatMul', [m, 'x0']), rowK], {}, 'coef');
  op(b, 'MatMul', [c, 'basis'], {}, 'ritz');
  const fedInputs = chained.spec.inputs.slice(1);
  const spec: GraphSpec = {
    opset: body.opset,
    inputs: [{ name: 'v0', dtype: 'float64', dims: [1, n] }, { name: 'steps', dtype: 'int64', dims: [] }, { name: 'eye', dtype: 'float64', dims: ['K', 'K'] }, { name: 'up', dtype: 'float64', dims: ['K', 'K'] }, { name: 'x0', dtype: 'float64', dims: ['K', 1] }, ...fedInputs],
    outputs: [{ name: 'alpha', dtype: 'float64', dims: ['K'] }, { name: 'beta', dtype: 'float64', dims: ['K'] }, { name: 'coef', dtype: 'float64', dims: [1, 'K'] }, { name: 'ritz', dtype: 'float64', dims: [1, n] }],
    nodes: b.nodes,
    initializers: b.inits,
    name: `${parts.name}-lanczos`,
  };
  // the writer has no graph attributes: the body is encoded on its own and attached to the Loop node
  const outer = onnx.ModelProto.decode(encodeGraph(spec));
  const loop = outer.graph.node.find((x: { opType: string }) => x.opType === 'Loop');
  loop.attribute.push(onnx.AttributeProto.create({ name: 'body', type: 5, g: onnx.ModelProto.decode(encodeGraph(body)).graph }));
  return { bytes: onnx.ModelProto.encode(outer).finish(), feeds: chained.feeds, n };
}

/** What one fused run returned. */
export interface FusedRun {
  readonly alpha: Float64Array;
  readonly beta: Float64Array;
  readonly ritz: Float64Array;
  readonly coef: Float64Array;
}

/** A session of the fused model: `run(start, K)` performs K Lanczos steps from `start` in one onnxruntime run. */
export class FusedLanczosSession {
  private constructor(private readonly session: Session, private readonly model: FusedModel, private readonly name: string) {}

  static async create(parts: FusedGramParts, runtime: RuntimeOptions): Promise<FusedLanczosSession> {
    const model = fusedLanczosModel(parts);
    return new FusedLanczosSession(await Session.create(model.bytes, runtime, `the Lanczos model of '${parts.name}'`), model, parts.name);
  }

  async run(start: Float64Array, steps: number): Promise<FusedRun> {
    const K = steps;
    const eye = new Float64Array(K * K), up = new Float64Array(K * K);
    for (let i = 0; i < K; i++) { eye[i * K + i] = 1; if (i + 1 < K) up[i * K + i + 1] = 1; }
    // a start with no special structure, so it is not orthogonal to the wanted eigenvector (tridiagonalEigenvector's)
    const x0 = Float64Array.from({ length: K }, (_, i) => 1 + 0.5 * Math.sin(i + 1));
    const out = await this.session.run({
      ...this.model.feeds,
      v0: { dtype: 'float64', dims: [1, this.model.n], data: start },
      steps: { dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(K)) },
      eye: { dtype: 'float64', dims: [K, K], data: eye },
      up: { dtype: 'float64', dims: [K, K], data: up },
      x0: { dtype: 'float64', dims: [K, 1], data: x0 },
    }, ['alpha', 'beta', 'coef', 'ritz'], `the Lanczos steps of '${this.name}'`);
    const get = (k: string) => out.get(k)!.data as Float64Array;
    return { alpha: get('alpha'), beta: get('beta'), ritz: get('ritz'), coef: get('coef') };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Opens a session of the fused model, runs K steps from `start` once, and closes it (tests, benchmarks). */
export async function runFused(parts: FusedGramParts, steps: number, start: Float64Array, runtime: RuntimeOptions): Promise<FusedRun> {
  const s = await FusedLanczosSession.create(parts, runtime);
  try {
    return await s.run(start, steps);
  } finally {
    await s.release();
  }
}

/**
 * lanczosTop's contract from fused runs: θ of T_s for the first s at which the stop rule holds (or the Krylov space
 * became invariant, or maxSteps), the Ritz vector of those s steps (unit, sign: largest coefficient positive); null
 * (lanczosTop then runs one product a step) when the rule has not stopped after the expected count. Throws
 * NonFiniteError, as lanczosTop, when the operator gives NaN or ±Infinity within the steps used.
 */
export async function fusedLanczos(parts: FusedGramParts, runtime: RuntimeOptions, options: GramLanczosOptions): Promise<GramLanczosResult | null> {
  const n = sizeOf(parts.dims);
  const maxSteps = Math.min(options.maxSteps, n);
  let steps = Math.max(1, Math.min(maxSteps, options.expectedSteps ?? DEFAULT_STEPS));
  const session = await FusedLanczosSession.create(parts, runtime);
  try {
    for (;;) {
      const run = await session.run(options.start, steps);
      const { theta, used, history, invariant, stopped } = replayStopRule(run, steps, maxSteps, options.stop, 1e-12);
      // the Ritz vector must be that of the steps reported: repeat the (deterministic) run with exactly that many
      if (stopped && used < steps) { steps = used; continue; }
      // not stopped after the expected count (the Ritz value still moving): lanczosTop goes on one product a step
      if (!stopped) return null;
      // sign as lanczosTop's (largest coefficient positive), unit length
      // T_K's squarings can fail only on a zero T (a zero operator: 0/0); lanczosTop then gives its Ritz vector
      const ritz = unitRitz(run.coef, run.ritz);
      if (!ritz) return null;
      return { theta: Math.max(theta, 0), ritzVector: ritz, steps: used, invariant, history, extraPasses: used, tridiagonal: { alpha: Array.from(run.alpha.subarray(0, used)), beta: Array.from(run.beta.subarray(0, used)) } };
    }
  } finally {
    await session.release();
  }
}

/** 'auto': fused where fusedLanczosFits' measured rule says it is faster; 'on': every Gram map (tests, benchmarks); 'off': none. */
export type FusedMode = 'auto' | 'on' | 'off';

let mode: FusedMode = 'auto';

/** Under 'auto', the devices where fused runs measured faster and up to which n: none yet (fusedLanczosFits). */
const AUTO_FUSED_MAX_N: ReadonlyMap<string, number> = new Map();

/** Sets which Gram maps created from now on get the fused `lanczos` method (default 'auto'; bench/floor.ts --fused). */
export function setFusedLanczos(m: FusedMode): void {
  mode = m;
}

/**
 * Whether a Gram map on R^n on this runtime gets the fused `lanczos` method. Under 'auto': nowhere today. On the CPU
 * provider every size measured slower than one run a step (docs/algorithms-fused-lanczos.md: small operators pay
 * the fused model's session creation, large ones the first touch of each session's fresh arena for the basis);
 * on WebGPU (no float64 kernels) the fused runs are fused-lanczos32.ts's float32 unrolled ones, built and tested but
 * not yet timed on a GPU; CUDA could not be installed or measured here. The boundary (GramOperator.lanczos) is ready
 * for a provider where it pays.
 */
export function fusedLanczosFits(n: number, runtime: RuntimeOptions): boolean {
  if (mode !== 'auto') return mode === 'on';
  return n <= (AUTO_FUSED_MAX_N.get(runtime.device) ?? 0);
}

/** Which arithmetic fused runs use: 'auto' is float64 where the provider has it and float32 on WebGPU; 'float32' everywhere (tests, benchmarks). */
export type FusedPrecision = 'auto' | 'float32';

let precision: FusedPrecision = 'auto';

/** Sets the arithmetic of fused runs on Gram maps created from now on (default 'auto'). */
export function setFusedPrecision(p: FusedPrecision): void {
  precision = p;
}

/**
 * `base` with a `lanczos` method that runs the steps fused (the base's own products serve everything else): the float64
 * recurrence of this module, or on WebGPU (no float64 kernels) the unrolled float32 one of fused-lanczos32.ts, whose
 * θ carries its derived margin (docs/algorithms-fused-lanczos.md §7).
 */
export function withFusedLanczos<G extends GramOperator>(base: G, parts: FusedGramParts, runtime: RuntimeOptions): G {
  const float32 = precision === 'float32' || runtime.device === 'webgpu';
  return Object.assign(base, { lanczos: (o: GramLanczosOptions) => (float32 ? fusedLanczos32(parts, runtime, o) : fusedLanczos(parts, runtime, o)) });
}
