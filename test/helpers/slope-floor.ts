/**
 * The slope-relaxation floor F of a model (a test oracle and a benchmark, not a product feature): every upper bound
 * lipcheck computes from the activations' slope ranges alone (AutoLip, Combettes–Pesquet, graph-cp, the residual
 * bound, SeqLip's certified bound, LipSDP, ECLipsE) is at least
 *
 *   F = sup over slope patterns s (each activation unit's slope anywhere in its range, unit by unit) of ‖J_s‖₂,
 *
 * J_s the Jacobian with those slopes, max-pool winners and softmaxes taken at a real point. For a fixed s, the network
 * whose activations are the lines of slopes s (winners and softmaxes frozen as linear maps of their real point) is
 * linear, so its constant is ‖J_s‖; its activations are slope-restricted like the model's and its max-pool and softmax
 * maps are Jacobians the model has somewhere, so every such bound covers it. The exact methods (region enumeration,
 * ReLU branch and bound) use which patterns inputs realise, and may lie below F.
 *
 * F is found from below: each value is ‖J_s v‖ for a unit v (a float32 product, so within ~10⁻⁶ of a true value of
 * ‖J_s‖ from below), maximised by block coordinate ascent over s. With (u, v) the top singular pair of J_s, uᵀJ_s v is
 * linear in any one activation layer's slopes (every path through the graph meets a layer once), and is maximised by
 * s_i = hi where (J_afterᵀu)_i·(J_before v)_i > 0, lo elsewhere; the new pattern's top pair gives
 * ‖J_new‖ ≥ uᵀJ_new v ≥ uᵀJ_old v = ‖J_old‖. Every layer is first moved at once (usually an ascent, not always);
 * where that does not rise, one layer at a time. Starts: the model's own slopes at x ~ N(0, σ²I) (σ in `scales`), a
 * realised pattern whose value is a local Jacobian norm, then `vertexStarts` patterns with each slope lo or hi at random.
 */
import { createOrtBackend } from '../../src/backend/index.js';
import { activationSlopes, Jacobian, planIr, poolWinners, type LocalState, type Slopes, type Step } from '../../src/estimators/ir-eval.js';
import { buildIr } from '../../src/frontend/build.js';
import { mergeLinear } from '../../src/ir/merge.js';
import { sizeOf, toFloat64 } from '../../src/ir/tensor.js';
import { lanczosTop } from '../../src/linalg/lanczos.js';
import { norm2, Random } from '../../src/linalg/random.js';
import type { OnnxModel } from '../../src/onnx/read-model.js';

export interface SlopeFloorRun {
  /** The start's scale σ (x ~ N(0, σ²I)), or null for a random vertex pattern. */
  readonly scale: number | null;
  /** ‖J_s‖ at the start: for a start x, the model's own slopes there (a local Jacobian norm). */
  readonly local: number;
  /** The largest ‖J_s‖ the ascent reached from it. */
  readonly floor: number;
  readonly rounds: number;
  /** Moves of one layer alone (when moving every layer at once did not rise). */
  readonly layerMoves: number;
}

export interface SlopeFloor {
  /** The largest ‖J_s‖ over all starts: F from below. */
  readonly floor: number;
  readonly runs: readonly SlopeFloorRun[];
  readonly activations: number;
  readonly products: number;
}

/** F (from below) for `onnx`'s analysed input and output, on the CPU; null where the Jacobian has no plan (reason). */
export async function slopeFloor(onnx: OnnxModel, opts: { readonly rounds?: number; readonly scales?: readonly number[]; readonly vertexStarts?: number; readonly seed?: number } = {}): Promise<SlopeFloor | string> {
  const runtime = { device: 'cpu' as const };
  const built = await buildIr(onnx, { seed: 0, runtime });
  const blocks = mergeLinear(built.ir);
  const backend = createOrtBackend({ model: onnx, runtime, io: built });
  const operators: { dispose(): Promise<void> }[] = [];
  const plan = await planIr(built.ir, blocks, backend, operators);
  if (typeof plan === 'string') return plan;
  const diags = plan.steps.filter((s): s is Step & { kind: 'diag' } => s.kind === 'diag');
  const pools = plan.steps.filter((s): s is Step & { kind: 'maxpool' } => s.kind === 'maxpool');
  const softmaxes = plan.steps.filter((s): s is Step & { kind: 'softmax' } => s.kind === 'softmax');
  const extra = plan.needed.filter((e) => e !== built.outputName && e !== built.inputName);
  const evaluator = await backend.model({ extraOutputs: extra, what: 'the model' });
  if (!evaluator) return 'the backend cannot evaluate the model';
  const jac = new Jacobian(built.ir, plan.steps, plan.fused);
  const n = sizeOf(built.inputShape);
  const rng = new Random(opts.seed ?? 1);
  try {
    /** The model's own state at x: slopes, max-pool winners, softmaxes (as the lower bound's search reads them). */
    const stateAt = async (x: Float32Array): Promise<LocalState> => {
      const values = await evaluator.run({ [built.inputName]: { dtype: 'float32', dims: built.inputShape, data: x } }, [built.outputName, ...extra]);
      const value = (name: string) => (name === built.inputName ? Float64Array.from(x) : toFloat64(values.get(name)!));
      const slope = new Map<string, Slopes>();
      for (const { node, ew } of diags) slope.set(node.output, activationSlopes(ew, value(node.inputs[0]), null, 1e-3));
      const argmax = new Map<string, { am: Int32Array; u: Float64Array }>();
      for (const { node, windows } of pools) {
        const u = value(node.inputs[0]);
        argmax.set(node.output, { am: poolWinners(windows, u), u });
      }
      const softmax = new Map<string, Float64Array>();
      for (const { node } of softmaxes) softmax.set(node.output, value(node.output));
      return { x, fx: toFloat64(values.get(built.outputName)!), slope, argmax, softmax };
    };
    /** The state with slopes `d` per activation output (fresh arrays: the Jacobian keeps conversions per array). */
    const withSlopes = (s: LocalState, d: ReadonlyMap<string, Float64Array>): LocalState => {
      const slope = new Map<string, Slopes>();
      for (const [k, v] of d) slope.set(k, { d: v, d2: new Float64Array(v.length), u: s.slope.get(k)!.u });
      return { ...s, slope };
    };
    /** ‖J_s‖ from below: Lanczos on J_sᵀJ_s from `start`, σ = ‖J_s v‖ for its unit Ritz vector v, u = J_s v / σ. */
    const top = async (s: LocalState, start: Float64Array) => {
      const res = await lanczosTop({ n, apply: (v) => jac.gram(s, v) }, { start: start.map((x) => x / norm2(start)), maxSteps: Math.min(n, 40), stop: (th, k, prev) => k >= 3 && Math.abs(th - prev) <= 1e-7 * th, parallel: false });
      const v = res.ritzVector;
      const jv = await jac.jvp(s, v);
      const sigma = norm2(jv);
      return { sigma, v, u: jv.map((x) => x / sigma) };
    };
    /** Per activation output: (J_afterᵀu)_i·(J_before v)_i, whose sign picks the slope that raises uᵀJ_s v. */
    const gains = async (s: LocalState, u: Float64Array, v: Float64Array) => {
      const tangents = new Map<string, Float64Array>(), cotangents = new Map<string, Float64Array>();
      await jac.jvp(s, v, tangents);
      await jac.vjp(s, u, undefined, cotangents);
      return new Map(diags.map(({ node }) => {
        const t = tangents.get(node.inputs[0])!, c = cotangents.get(node.output)!;
        return [node.output, t.map((ti, i) => ti * c[i])] as const;
      }));
    };
    const vertex = (g: Float64Array, range: readonly [number, number]) => g.map((x) => (x > 0 ? range[1] : range[0]));
    const rounds = opts.rounds ?? 60;
    const runs: SlopeFloorRun[] = [];
    const scales = opts.scales ?? [1, 10];
    const vertices = opts.vertexStarts ?? 2;
    const x0 = Float32Array.from({ length: n }, () => rng.normal());
    for (let st = 0; st < scales.length + vertices; st++) {
      // the first starts: the model's own slopes at x ~ N(0, σ²I); then random vertex patterns (winners at x0)
      const scale = st < scales.length ? scales[st] : null;
      const base = await stateAt(scale === null ? x0 : Float32Array.from({ length: n }, () => scale * rng.normal()));
      let d = new Map(diags.map(({ node }) => [node.output, scale === null ? Float64Array.from(base.slope.get(node.output)!.d, () => node.slope[rng.next() < 0.5 ? 0 : 1]) : Float64Array.from(base.slope.get(node.output)!.d)] as const));
      let s = withSlopes(base, d);
      let cur = await top(s, Float64Array.from({ length: n }, () => rng.normal()));
      const local = cur.sigma;
      let r = 0, layerMoves = 0;
      for (; r < rounds; r++) {
        const g = await gains(s, cur.u, cur.v);
        const all = new Map(diags.map(({ node }) => [node.output, vertex(g.get(node.output)!, node.slope)] as const));
        const sAll = withSlopes(base, all);
        const tAll = await top(sAll, cur.v);
        if (tAll.sigma > cur.sigma * (1 + 1e-9)) { d = all; s = sAll; cur = tAll; continue; }
        let moved = false;
        for (const { node } of diags) {
          const next = new Map(d);
          next.set(node.output, vertex((await gains(s, cur.u, cur.v)).get(node.output)!, node.slope));
          const sl = withSlopes(base, next);
          const tl = await top(sl, cur.v);
          if (tl.sigma > cur.sigma * (1 + 1e-9)) { d = next; s = sl; cur = tl; moved = true; layerMoves++; }
        }
        if (!moved) break;
      }
      runs.push({ scale, local, floor: cur.sigma, rounds: r, layerMoves });
    }
    return { floor: Math.max(...runs.map((r) => r.floor)), runs, activations: diags.length, products: jac.products };
  } finally {
    await evaluator.release();
    for (const op of operators) await op.dispose();
  }
}
