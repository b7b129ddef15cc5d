import { LipcheckError } from '../errors.js';
import type { OperatorBackend } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import { roundUp, sqrtUp } from '../linalg/dense.js';
import { MFLOP, regionFlop } from '../linalg/work.js';
import type { LowerBound } from '../report/report.js';
import { composeAutoLip, type AutoLipResult, type ResidualUse, type SegmentCandidate, type SegmentUse } from './autolip.js';
import { cpSegmentBound, findSegments, segmentAutoLip, wholeProductFloor, type CpResult, type Segment } from './cp.js';
import { exactLipschitz, type ExactResult } from './exact.js';
import { babObstacle, reluBranchAndBound } from './relu-bab.js';
import { displaces, type Bound, type NormKind } from './kinds.js';
import { crossNormBound, l2NormsWork, type CrossNormBound } from './linf.js';
import { ECLIPSE_DEFAULTS, eclipseSegmentBound } from './eclipse.js';
import { LIPSDP_DEFAULTS, lipsdpObstacle, lipsdpSegmentBound } from './lipsdp.js';
import { scaledCpBound } from './cp-scaling.js';
import { firstStartWork, fullSearchWork, jacobianLowerBound, planSearch, type AnalysedModel, type LowerBoundResult } from './lower-bound.js';
import { mapInLanes } from './lanes.js';
import { budgetBasis, laneWidth, measureRegion, type NormSettings, type OperatorNorm, type RegionOffload } from './operator-norm.js';
import { patternSearchLowerBound } from './pattern-search.js';
import { findResidualBlocks, residualBlockBound, residualWork, type ResidualBlock, type ResidualResult } from './residual.js';
import { graphCpBound, graphCpMaps, graphCpObstacle, type GraphCpMaps, type GraphCpResult } from './graph-cp.js';
import { chooseGraphScalings } from './graph-cp-scaling.js';
import { seqlipObstacle, seqlipSegmentBound } from './seqlip.js';

/**
 * The method policy (issue 15): which estimator runs where, the work budgets they get (counted by the cost model,
 * linalg/work.ts, never timed), and how their bounds combine into the reported upper and lower bounds. Pure: it is
 * handed the IR and an OperatorBackend and never sees ONNX or onnxruntime.
 */

/** The phases of one analysis, in order, as onProgress reports them. */
export type AnalysisPhase = 'build' | 'norms' | 'segments' | 'lower';

/** The input pair whose ratio is the reported lower bound, as fed (float32) to the original model. */
export interface WitnessPair {
  readonly input: string;
  readonly shape: readonly number[];
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  readonly ratio: number;
}

/** The analysis options the methods read, defaults already applied (AnalyzeOptions in src/index.ts). */
export interface MethodSettings {
  readonly method: 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best';
  readonly norm: NormKind;
  readonly certify: 'strict' | 'auto' | 'off' | 'none';
  readonly delta: number;
  readonly tol: number;
  readonly iterations: number;
  readonly seed: number;
  /** Mflop: the cap of one deterministic certificate. */
  readonly certifyBudget: number;
  /** Mflop of the witnessed lower bound; 0 (or lowerPairs 0): no lower-bound work. */
  readonly lowerBudget: number;
  readonly lowerPairs: number;
  readonly exactBudget: number;
  /** Mflop of LipSDP over all segments (default by method, LIPSDP_DEFAULTS). */
  readonly sdpWork?: number;
  readonly seqlipK: number;
  /** Longest partial product CP measures directly (0: chosen by the budget, cpWindowFor). */
  readonly cpWindow: number;
  readonly onProgress?: (done: number, total: number, what: string, phase: AnalysisPhase) => void;
  readonly onWitness?: (w: WitnessPair) => void;
  /** Threads that measure whole operators (NormSettings.offload): src/workers/region-pool.ts in the CLI. */
  readonly offload?: RegionOffload;
}

/** The model as the methods see it: the IR, its merged blocks, the analysed input and output, and its file name (messages). */
export interface MethodModel extends Pick<AnalysedModel, 'ir' | 'blocks' | 'inputName' | 'outputName' | 'inputShape'> {
  readonly path: string;
}

/** One line of the report's `methods`: a composition's bound and estimate. */
export interface MethodLine {
  readonly method: string;
  readonly upper: Bound | null;
  readonly estimate: number | null;
  readonly work?: number;
}

/** The upper-bound side of an analysis. */
export interface UpperEstimate {
  readonly norms: ReadonlyMap<string, OperatorNorm>;
  readonly autolip: AutoLipResult;
  /** The composition of the chosen method (status, reasons and layers of the report). */
  readonly result: AutoLipResult;
  /** The reported upper bound: the composition's, or the exact enumeration's, or the other norm's × √n where smaller. */
  readonly upper: Bound | null;
  readonly methods: readonly MethodLine[];
  /** Probabilistic bounds behind `upper` (each fails with probability at most δ). */
  readonly failures: number;
  readonly exact: ExactResult | null;
  /** The LipSDP work budget used, Mflop (the report's settings). */
  readonly sdpMflop: number;
}

/** The lower-bound budget (Mflop) at which the pattern search makes PATTERN_EVALUATIONS evaluations: the default one. */
export const DEFAULT_LOWER_BUDGET = 8000;
/** The most `--lower-work auto` gives a model whose search DEFAULT_LOWER_BUDGET cuts short (5 × the default). */
export const AUTO_LOWER_CAP = 40_000;

/**
 * `--lower-work auto` (the default): DEFAULT_LOWER_BUDGET where its search plan already has full rounds (every start,
 * the whole walk, full Lanczos); else what two full rounds need (fullSearchWork), at most AUTO_LOWER_CAP Mflop. A rule
 * on the cost model, the same on every run: the small models keep the default (and their reports); the convolutional
 * ones, whose walks it cut short, get up to 5 × (bench/README.md, twentieth session); a model whose search cannot
 * start within the cap keeps the default too.
 */
export function autoLowerWork(blocks: MethodModel['blocks'], sizes: { input: number; output: number }, norm: NormKind): number {
  // a model whose search cannot start even within the cap (ResNet-50) would only buy more random pairs
  if (firstStartWork(blocks, sizes, norm) > AUTO_LOWER_CAP * MFLOP) return DEFAULT_LOWER_BUDGET;
  const plan = planSearch(blocks, sizes, norm, DEFAULT_LOWER_BUDGET * MFLOP);
  const full = planSearch(blocks, sizes, norm, Infinity);
  if (plan.starts === full.starts && plan.walkSteps === full.walkSteps && plan.lanczos.start === full.lanczos.start) return DEFAULT_LOWER_BUDGET;
  return Math.min(AUTO_LOWER_CAP, Math.max(DEFAULT_LOWER_BUDGET, Math.ceil(fullSearchWork(blocks, sizes, norm) / MFLOP)));
}

/** Under best, the exact enumeration also stops at this many multiply-adds (cells × 3 per nonzero weight): TLL-size nets fit. */
const EXACT_BEST_WORK = 4e9;
/** Under best, the branch and bound (≥ 3 inputs) spends at most this many cells (an LP solve counts 20): about 0.5 s on acasxu_2_1 and rpd_gcas. */
const BAB_BEST_CELLS = 2000;
/** Largest ℓ2 measurement (flop of the cost model) the √n_in·ℓ2 bound of --norm inf may take; ℓ∞ row sums always run. */
const CROSS_NORM_FLOP = 5e10;
/**
 * The whole-graph CP expansion (graph-cp.ts graphCpBound) runs under best when measuring all its linear maps costs at
 * most max(GRAPH_CP_MIN_FLOP, GRAPH_CP_PER_NORMS × the norm phase's Lanczos work) by the cost model: 8e10 flop is about
 * 20 s of onnxruntime products on the reference machine (tiny_yolo's 36 maps: 6.7e10; sri_resnet_b's 45: 8.4e9).
 */
const GRAPH_CP_MIN_FLOP = 8e10;
const GRAPH_CP_PER_NORMS = 15;
/**
 * The rescaled graph-cp (graph-cp-scaling.ts): its descent may cost GRAPH_SCALE_PER_CP × the maps' measurement cost,
 * at most GRAPH_SCALE_ITERATIONS steps of GRAPH_SCALE_STEPS warm-started power steps per map. Measured
 * (docs/algorithms-cp-scaling.md §5): at 4 × sri_resnet_b 3 330 → 898 (+6 s), tiny_yolo 11 993 → 3 610 (+12 s); 2 ×
 * gave tiny_yolo 4 184; 8 × (taken since the descent's maps run on region workers and certificates are memoised
 * across budgets, at about the wall time 4 × took before) 883.3 and 3 416; 12 × and 16 × the same as 8 ×.
 */
const GRAPH_SCALE_PER_CP = 8;
const GRAPH_SCALE_STEPS = 4;
const GRAPH_SCALE_ITERATIONS = 40;
/**
 * The rescaled CP (cp-scaling.ts): its descent may cost CP_SCALE_PER_CP × the segment's CP work (counted flop), at most
 * CP_SCALE_ITERATIONS steps of CP_SCALE_STEPS warm-started power steps per partial product. Measured
 * (bench/README.md, nineteenth session): collins_rul 1 139 → 718, cifar10_medium 1 775 → 1 415, oval21 8.90 → 7.79,
 * each about 2 s slower on this VM.
 */
const CP_SCALE_PER_CP = 12;
const CP_SCALE_STEPS = 4;
const CP_SCALE_ITERATIONS = 40;
/** Network evaluations of the pattern search at the default lower-bound budget (scaled with --lower-work). */
const PATTERN_EVALUATIONS = 2000;

/**
 * Combettes–Pesquet's partial products may cost max(CP_MIN_FLOP, CP_PER_NORMS × the Lanczos work of the operator-norm
 * phase), in flop of the cost model (linalg/work.ts): 20 000 Mflop is about 5 s of onnxruntime products on the reference
 * machine. Under `best`, SeqLip shares max(SEQLIP_MIN_FLOP, SEQLIP_PER_NORMS × that work) over all segments by operator
 * count (its float64 kernels do about 1.4e6 flop/ms, so 7 000 Mflop is again about 5 s). Counted, never timed.
 */
const CP_MIN_FLOP = 2e10;
const CP_PER_NORMS = 2;
const SEQLIP_MIN_FLOP = 7e9;
const SEQLIP_PER_NORMS = 0.7;

/**
 * The longest partial product CP can afford: a product of regions i..j costs about (Lanczos steps) × Σ of one
 * apply+adjoint of each region (`flop`, by the cost model, linalg/work.ts). Returns the largest window whose products
 * fit `budget` flop (the segment length when all do), or 1 when not even pairs fit. A function of the model and the
 * settings only, so the same on every run.
 */
export function cpWindowFor(parts: readonly { flop: number; iterations: number }[], budget: number): number {
  const perApply = parts.map((p) => p.flop);
  const steps = Math.max(1, ...parts.map((p) => p.iterations));
  const m = parts.length;
  let total = 0;
  for (let len = 2; len <= m; len++) {
    for (let i = 0; i + len <= m; i++) total += steps * perApply.slice(i, i + len).reduce((a, b) => a + b, 0);
    if (total > budget) return len - 1;
  }
  return m;
}

/** A segment whose whole product CP left for after its residual block's bound (estimateUpper). */
interface DeferredWhole {
  readonly segment: Segment;
  readonly cp: CpResult;
  /** The segment's candidates (the array in `uses`) and the index of CP's. */
  readonly candidates: SegmentCandidate[];
  readonly at: number;
}

/** Most steps of the floor run on a deferred whole product (wholeProductFloor); it stops as soon as the floor suffices. */
const WHOLE_FLOOR_STEPS = 8;

/**
 * graph-cp again on the graph rescaled at its activations (graph-cp-scaling.ts), the scalings chosen by a descent on
 * its estimate within GRAPH_SCALE_PER_CP × the plain measurement's cost: the smaller of the two (a certified plain
 * bound stays unless the probabilistic rescaled one is more than 0.1 % tighter), both bounds' KW events counted (the
 * choice looks at both). A rescaled map whose products overflow float32 (UNSUPPORTED) costs the rescaled bound only.
 */
async function rescaledGraphCp(plan: GraphCpMaps, graph: GraphCpResult, settings: NormSettings, budget: number): Promise<GraphCpResult> {
  const chosen = await chooseGraphScalings(plan, settings.backend, { iterations: GRAPH_SCALE_ITERATIONS, steps: GRAPH_SCALE_STEPS, budget: GRAPH_SCALE_PER_CP * graph.cost, seed: settings.seed + 611_953, width: laneWidth(settings), offload: settings.offload });
  if (!chosen || !(chosen.after < chosen.before * (1 - 0.01))) return graph;
  const scaled = await graphCpBound(plan, settings, { budget, scaling: chosen.scaling }).catch((e) => {
    if (e instanceof LipcheckError && e.code === 'UNSUPPORTED') return null;
    throw e;
  });
  if (!scaled) return graph;
  const both = graph.probabilistic + scaled.probabilistic;
  if (displaces(scaled.upper, graph.upper)) return { ...scaled, probabilistic: scaled.upper.kind === 'probabilistic' ? both : 0, work: graph.work + chosen.work + scaled.work, ms: graph.ms + scaled.ms };
  return graph.upper.kind === 'probabilistic' ? { ...graph, probabilistic: both } : graph;
}

/**
 * Settles a whole product W_m⋯W_1 that CP deferred for a residual block's branch. The composition takes the block's
 * bound R where R < a·‖S‖ + b·F (F the segment's factor: the least of its candidates and its AutoLip product), and CP's
 * candidate is the only one P changes. If ‖P‖ ≥ φ, CP's bound with P measured is at least cp.atWhole(φ) (every KW bound
 * of P is ≥ ‖P‖ unless that KW event fails, and the composition certificate always is), so when another candidate is
 * at most that (F does not change) or a·‖S‖ + b·min(cp.atWhole(φ), other candidates) ≥ R (R is taken either way), the
 * reported bound is the same and P is not measured; φ is a deterministic floor from a
 * few Lanczos steps on P's Gram map started at the linear part's Ritz vector (wholeProductFloor, stopped once φ
 * suffices). Otherwise (or without the block's bound) CP runs again with the products already counted reused, which
 * measures P alone, as before, and replaces its candidate. Only the autolip+cp line of the report can get looser.
 * Returns the KW events the new CP bound adds (0 when P is not measured).
 */
async function settleWhole(d: DeferredWhole, block: ResidualBlock | null, res: ResidualResult | null, norms: ReadonlyMap<string, OperatorNorm>, products: ReadonlyMap<string, OperatorNorm>, settings: NormSettings): Promise<number> {
  const { segment, cp } = d;
  if (block && res) {
    const signs = (block.sum.prim as { signs: readonly number[] }).signs;
    const a = Math.abs(signs[1 - block.branchIndex]), b = Math.abs(signs[block.branchIndex]);
    const skip = block.skip ? norms.get(block.skip.id)!.upper.value : 1;
    const others = Math.min(segmentAutoLip(segment, norms).upper.value, ...d.candidates.filter((_, i) => i !== d.at).map((c) => c.upper?.value ?? Infinity));
    // P cannot change the segment's factor (another candidate is at most CP's bound with it), or the factor cannot
    // bring the sum of the branches below R
    const enough = (floor: number) => others <= cp.atWhole(floor) || a * skip + b * Math.min(cp.atWhole(floor), others) >= res.upper.value * (1 + 1e-9);
    if (enough(0)) return 0;
    if (res.gramVector && enough(cp.wholeEntry)) {
      const f = await wholeProductFloor(segment, settings, cp, res.gramVector, WHOLE_FLOOR_STEPS, enough);
      if (enough(f.floor)) return 0;
    }
  }
  const full = await cpSegmentBound(segment, settings, { known: products });
  d.candidates[d.at] = { method: 'cp', upper: full.upper, estimate: full.estimate, ms: cp.ms + full.ms, note: `CP ${full.upper.value.toPrecision(4)} (${cp.norms + full.norms} products)` };
  return full.probabilistic;
}

/**
 * The upper bound: every operator's norm (measureRegion), then per sequential segment CP, SeqLip and LipSDP as the
 * method and their budgets allow, residual blocks, the exact enumeration and the norm equivalences, composed by
 * AutoLip. Warnings for the report are appended to `warnings`.
 */
export async function estimateUpper(m: MethodModel, backend: OperatorBackend, o: MethodSettings, warnings: string[], crossNorm = true): Promise<UpperEstimate> {
  const regions = m.blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  const norms = new Map<string, OperatorNorm>();
  const settings: NormSettings = { norm: o.norm, certify: o.certify, delta: o.delta, tol: o.tol, maxIterations: o.iterations, seed: o.seed, backend, certifyBudget: o.certifyBudget * MFLOP, offload: o.offload };
  // several operators at once where the backend runs products off the main thread (each with its own seed: the same
  // numbers for any width); the map keeps the regions' order
  const measured = await mapInLanes(regions, laneWidth(settings), (r, i) => {
    o.onProgress?.(i, regions.length, r.id, 'norms');
    return measureRegion(r, settings, i);
  });
  for (const [i, r] of regions.entries()) norms.set(r.id, measured[i]);
  o.onProgress?.(regions.length, regions.length, 'done', 'norms');
  const autolip = composeAutoLip(m.ir, m.blocks, norms, o.norm);
  // the budgets of the later methods scale with the counted work of the norm phase, never with its time
  const normsWork = [...norms.values()].reduce((a, n) => a + budgetBasis(n).work, 0);
  const uses: SegmentUse[] = [];
  const residuals: ResidualUse[] = [];
  let probabilisticSegments = 0;
  const sdpMflop = o.sdpWork ?? (2 * (o.method === 'sdp' ? LIPSDP_DEFAULTS.sdpWork : LIPSDP_DEFAULTS.bestWork)) / 1e6;
  // segments only tighten a bound: a model without one (unbounded, discontinuous) needs none
  if (o.method !== 'autolip' && autolip.status === 'bounded') {
    const runCp = o.method === 'cp' || o.method === 'best';
    // SeqLip rests on singular value decompositions: an ℓ2 method
    const runSeqlip = (o.method === 'seqlip' || o.method === 'best') && o.norm === '2';
    if (o.method === 'seqlip' && o.norm !== '2') warnings.push('SeqLip bounds the ℓ2 constant only; with --norm inf the report is AutoLip (use --method cp for a tighter ℓ∞ bound).');
    const runSdp = (o.method === 'sdp' || o.method === 'best') && o.norm === '2';
    if (!(sdpMflop >= 0)) throw new LipcheckError('USAGE', `The LipSDP work budget must be a non-negative number of Mflop; got ${sdpMflop}.`);
    const segments = findSegments(m.ir, m.blocks);
    // under best (ℓ2), a residual block's branch: CP leaves the whole product W_m⋯W_1 for after the block's bound
    // (settleWhole), which needs every shorter product but not that one, and usually makes CP's segment bound unused
    const residualBlocks = o.method === 'best' && o.norm === '2' ? findResidualBlocks(m.ir, m.blocks, segments) : [];
    const branches = new Set(residualBlocks.map((b) => b.branch.id));
    const deferred = new Map<string, DeferredWhole>();
    // the operators' norms and every partial product CP measured, by region id: what the residual blocks need not re-measure
    const products = new Map<string, OperatorNorm>(norms);
    const activationCount = segments.reduce((a, g) => a + g.activations.length, 0);
    // each segment's CP window, and whether its whole product waits for its residual block (defer)
    const cpPlans = segments.map((segment) => {
      const window = o.cpWindow || cpWindowFor(segment.regions.map((r) => ({ flop: 2 * regionFlop(r), iterations: budgetBasis(norms.get(r.id)!).iterations })), Math.max(CP_MIN_FLOP, CP_PER_NORMS * normsWork));
      return { window, defer: window >= segment.regions.length && branches.has(segment.id) };
    });
    const cpOf = (segment: Segment, k: number) => {
      const { window, defer } = cpPlans[k];
      return cpSegmentBound(segment, settings, { window: defer ? segment.regions.length - 1 : window >= segment.regions.length ? undefined : window, known: norms });
    };
    // a segment's CP needs the operators' norms only (its seeds come from its ordinal): where operators are measured
    // off this thread (settings.offload takes some), every segment's CP is started at once and entered below in order,
    // the same numbers; the progress then counts those starts
    const offload = settings.offload;
    const early = runCp && offload && segments.some((g) => g.regions.some((r) => offload.takes(r)))
      ? await mapInLanes(segments, laneWidth(settings), (segment, k) => {
        if (cpPlans[k].window < 2) return Promise.resolve(null);
        o.onProgress?.(k, segments.length, segment.id, 'segments');
        return cpOf(segment, k);
      })
      : null;
    for (const [k, segment] of segments.entries()) {
      const candidates: SegmentCandidate[] = [];
      // the plain CP result where a rescaled CP may follow (below, once the other methods have had their say)
      let plainCp: { cp: CpResult; at: number } | null = null;
      if (!early) o.onProgress?.(k, segments.length, segment.id, 'segments');
      if (runCp) {
        const { window, defer } = cpPlans[k];
        if (window < 2) {
          warnings.push(`${segment.id} (${segment.regions.length} operators): Combettes–Pesquet skipped, its partial products would take well over the work budget; AutoLip is used there (force it with --cp-window).`);
        } else {
          const cp = early ? early[k]! : await cpOf(segment, k);
          probabilisticSegments += cp.probabilistic;
          // its partial products bound the residual blocks' products too: certified ones, and probabilistic ones where
          // CP's own bound is probabilistic (cp.probabilistic then counts every probabilistic product's KW events, once;
          // a certified CP bound counts none, so those products are measured again by the residual bound and counted there)
          for (const p of cp.products) {
            if (products.has(p.id) || (p.upper.kind !== 'certified' && cp.upper.kind !== 'probabilistic')) continue;
            products.set(p.id, { estimate: p.estimate, upper: p.upper, candidates: [p.upper], iterations: p.iterations, ms: 0, work: 0, direction: null });
          }
          candidates.push({ method: 'cp', upper: cp.upper, estimate: cp.estimate, ms: cp.ms, note: `CP ${cp.upper.value.toPrecision(4)} (${cp.norms} products)` });
          if (defer) deferred.set(segment.id, { segment, cp, candidates, at: candidates.length - 1 });
          else if (o.norm === '2' && window >= segment.regions.length && cp.work > 0) plainCp = { cp, at: candidates.length - 1 };
        }
      }
      // under best, SeqLip runs where it can give a certified bound; its greedy estimate alone (conv segments: block
      // Krylov on every operator) costs far more than it tells, so it is left to --method seqlip
      if (runSeqlip && (o.method === 'seqlip' || seqlipObstacle(segment, settings) === null)) {
        // under best, SeqLip shares a budget scaled like CP's over all segments, by operator count
        const budget = o.method === 'best' ? (Math.max(SEQLIP_MIN_FLOP, SEQLIP_PER_NORMS * normsWork) * (segment.regions.length - 1)) / Math.max(1, activationCount) : undefined;
        const sq = await seqlipSegmentBound(segment, settings, { k: o.seqlipK, budget });
        if (o.method === 'seqlip') warnings.push(...sq.notes);
        candidates.push({ method: 'seqlip', upper: sq.certified, estimate: sq.greedy.value, ms: sq.ms, note: `SeqLip ${sq.certified ? sq.certified.value.toPrecision(4) : 'no certified value'} (greedy estimate ${sq.greedy.value.toPrecision(4)}, k=${o.seqlipK})` });
      }
      // LipSDP (ℓ2): forced by --method sdp; under best where the segment's LMI fits its share of the work budget
      if (runSdp && lipsdpObstacle(segment, settings) === null) {
        // under best only LipSDP-Neuron (the tighter one; Layer saves little here, the N×N factorisations dominate); where the
        // dense solver does not fit, the structured one (lipsdp.ts) with its own budget, except on ≤ 2 inputs where the
        // exact enumeration answers (tll_n2_N16_1_0: it would add ~14 s for a bound the exact constant replaces)
        const sdp = await lipsdpSegmentBound(segment, settings, { work: (sdpMflop * 1e6) / 2 / segments.length, variants: o.method === 'sdp' ? undefined : ['neuron'], minSteps: o.method === 'sdp' ? undefined : LIPSDP_DEFAULTS.bestMinSteps, structuredWork: o.method === 'sdp' || o.sdpWork !== undefined ? undefined : sizeOf(m.inputShape) <= 2 ? 0 : LIPSDP_DEFAULTS.bestStructuredWork / segments.length });
        if (o.method === 'sdp') warnings.push(...sdp.notes);
        // ECLipsE (a feasible point of the same LMI, built layer by layer): where LipSDP-Neuron did not converge, under its
        // own work budget; --method sdp takes the smaller of the two as its segment bound. Under best not where the
        // eigenvalue method started from ECLipsE's construction (sdp.fromEclipse): it would build the same point again
        // (sri_resnet_b: 0.7 s) for a bound no smaller
        const ecl = sdp.converged || (sdp.fromEclipse && o.method !== 'sdp') ? null : await eclipseSegmentBound(segment, settings, { work: (o.method === 'sdp' ? ECLIPSE_DEFAULTS.sdpWork : ECLIPSE_DEFAULTS.bestWork) / segments.length });
        if (ecl && o.method === 'sdp') warnings.push(...ecl.notes);
        const sdpUpper = o.method === 'sdp' && ecl?.upper && (!sdp.upper || ecl.upper.value < sdp.upper.value) ? ecl.upper : sdp.upper;
        if (sdpUpper) candidates.push({ method: 'sdp', upper: sdpUpper, estimate: sdp.estimate ?? ecl?.estimate ?? null, ms: sdp.ms, work: sdp.work, note: `LipSDP ${[sdp.neuron, sdp.layer].filter((b) => b !== null).map((b) => `${b.method.slice(7)} ${b.value.toPrecision(4)}`).join(', ') || 'not run'} (${sdp.newtonSteps} ${sdp.stepKind} steps)` });
        if (ecl?.upper) candidates.push({ method: 'eclipse', upper: ecl.upper, estimate: ecl.estimate, ms: ecl.ms, work: ecl.work, note: `ECLipsE ${ecl.upper.value.toPrecision(4)} (${ecl.sdpStages} stage SDPs, ${ecl.fastStages} closed-form stages)` });
      } else if (o.method === 'sdp') warnings.push(`No LipSDP bound for ${segment.id}: ${lipsdpObstacle(segment, settings)}; AutoLip is used there.`);
      // ℓ2, every product measured and CP still the segment's smallest bound: CP again on the chain rescaled per
      // channel at each activation (cp-scaling.ts), its scalings chosen by a descent on CP's estimate within
      // CP_SCALE_PER_CP × CP's own work; the smaller bound is the segment's CP, and both bounds' KW events are counted
      // (the choice looks at both)
      if (plainCp && candidates.every((c, i) => i === plainCp!.at || !c.upper || c.upper.value > plainCp!.cp.upper.value)) {
        const { cp, at } = plainCp;
        const sc = await scaledCpBound(segment, settings, { budget: CP_SCALE_PER_CP * cp.work, steps: CP_SCALE_STEPS, iterations: CP_SCALE_ITERATIONS });
        if (sc) {
          probabilisticSegments += sc.cp.probabilistic;
          if (displaces(sc.cp.upper, cp.upper)) {
            candidates[at] = { method: 'cp', upper: { ...sc.cp.upper, method: `${sc.cp.upper.method.replace(/\)$/, '')}, rescaled)` }, estimate: sc.cp.estimate, ms: cp.ms + sc.cp.ms, note: `CP ${sc.cp.upper.value.toPrecision(4)} on the chain rescaled per channel (${sc.iterations} descent steps; ${cp.upper.value.toPrecision(4)} without)` };
          }
        }
      }
      if (candidates.length) uses.push({ segment, candidates });
    }
    // residual blocks (ℓ2, under best): CP with the skip joined to the all-linear term, while their Lanczos runs fit a
    // budget the size of CP's (counted by the cost model, never timed)
    if (o.method === 'best' && o.norm === '2') {
      let left = Math.max(CP_MIN_FLOP, CP_PER_NORMS * normsWork);
      const chosen: ResidualBlock[] = [];
      for (const block of findResidualBlocks(m.ir, m.blocks, segments)) {
        const cost = residualWork(block, Math.max(1, ...block.branch.regions.map((r) => budgetBasis(norms.get(r.id)!).iterations)), products);
        if (cost > left) {
          warnings.push(`Residual block ${block.id} (sum node '${block.sum.name}'): its bound was skipped, the operators it measures would take over the work budget left; the sum of its branches is used there.`);
          continue;
        }
        left -= cost;
        chosen.push(block);
      }
      // the budget picks the blocks by their counted cost alone, so they are measured at once where the backend runs
      // products off the main thread (backend.concurrency; each block's seeds come from its ordinal), entered in order
      const bounds = await mapInLanes(chosen, laneWidth(settings), async (block, i) => {
        o.onProgress?.(i, chosen.length, block.id, 'segments');
        const res = await residualBlockBound(block, settings, { known: products });
        const d = deferred.get(block.branch.id);
        deferred.delete(block.branch.id);
        return { res, whole: d ? await settleWhole(d, block, res, norms, products, settings) : 0 };
      });
      // whole products of branches whose block the budget skipped: measured as CP measured them before
      for (const d of deferred.values()) probabilisticSegments += await settleWhole(d, null, null, norms, products, settings);
      for (const [k, block] of chosen.entries()) {
        const { res, whole } = bounds[k];
        probabilisticSegments += res.probabilistic + whole;
        const nodes = [...(block.skip?.nodes ?? []), ...block.branch.regions.flatMap((r) => r.nodes), ...block.branch.activations, block.sum].map((n) => n.name);
        residuals.push({ id: block.id, input: block.input, output: block.output, nodes: [...new Set(nodes)], upper: res.upper, estimate: res.estimate, ms: res.ms, note: res.note });
      }
    }
  }
  // exact constants (ReLU nets with ≤ 2 inputs: region enumeration) and the norm equivalences L∞ ≤ √n_in·L₂, L₂ ≤ √n_out·L∞
  let exact: ExactResult | null = null;
  let cross: CrossNormBound | null = null;
  if (autolip.status === 'bounded' && (o.method === 'exact' || o.method === 'best')) {
    const analysed = { ir: m.ir, blocks: m.blocks, inputName: m.inputName, outputName: m.outputName, inputShape: m.inputShape, backend, norm: o.norm };
    // ≤ 2 inputs: the region enumeration; more: the branch and bound over activation patterns (relu-bab.ts), under best
    // only where its size test passes and with at most BAB_BEST_CELLS of the budget
    if (sizeOf(m.inputShape) <= 2) exact = await exactLipschitz({ ...analysed, budget: o.exactBudget, work: o.method === 'best' ? EXACT_BEST_WORK : undefined });
    else if (o.method === 'exact' || babObstacle(m.ir, m.blocks) === null) exact = await reluBranchAndBound({ ...analysed, budget: o.method === 'best' ? Math.min(o.exactBudget, BAB_BEST_CELLS) : o.exactBudget });
    if (o.method === 'exact' && exact?.status === 'unsupported') warnings.push(`No exact constant: ${exact.reason}; the report is AutoLip (--method best gives the tightest other bound).`);
    if (exact?.status === 'bracket' && !exact.upper) warnings.push(`Exact constant not reached: ${exact.reason}; raise it with --exact-budget. The bracket below is what the other methods and the regions visited give.`);
    if (o.method === 'exact' && exact?.status === 'bracket' && exact.upper && exact.reason) warnings.push(`Exact constant not reached: ${exact.reason}; raise it with --exact-budget. The upper bound is the largest bound of the patterns left open.`);
  }
  if (crossNorm && autolip.status === 'bounded' && o.method !== 'autolip' && (o.norm === 'inf' || o.method === 'best')) {
    // ℓ∞ under best: √n_in × the ℓ2 analysis's own bound (its CP, residual blocks, graph-cp, LipSDP, exact), not only its
    // AutoLip product (sri_resnet_b 14×, tiny_yolo 66×, acasxu_2_1 126× tighter); not where the exact constant is known
    if (o.norm === 'inf' && o.method === 'best') cross = exact?.status === 'exact' ? null : await bestL2Bound(m, backend, o, settings);
    else cross = await crossNormBound(m.ir, m.blocks, settings, o.norm, CROSS_NORM_FLOP);
  }
  // the CP expansion over the whole graph (ℓ2, best; regions and elementwise activations with sums or concatenations),
  // only where measuring every map fits its budget: a partial measurement leaves it about as loose as the composition
  let graph: GraphCpResult | null = null;
  if (autolip.status === 'bounded' && o.method === 'best' && o.norm === '2' && graphCpObstacle(m.ir, m.blocks) === null) {
    const budget = Math.max(GRAPH_CP_MIN_FLOP, GRAPH_CP_PER_NORMS * normsWork);
    const plan = graphCpMaps(m.ir, m.blocks, norms, settings);
    if (plan && plan.cost <= budget) {
      graph = await graphCpBound(plan, settings, { budget });
      // then on the rescaled graph, where every map was measured (a partial measurement is about the composition)
      if (graph.measured > 0 && graph.composed === 0) graph = await rescaledGraphCp(plan, graph, settings, budget);
    }
  }
  const compose = (mode: 'best' | 'cp' | 'seqlip' | 'sdp' | 'eclipse' | 'greedy') => (uses.length || residuals.length ? composeAutoLip(m.ir, m.blocks, norms, o.norm, uses, mode, residuals) : autolip);
  const has = (m: string) => uses.some((u) => u.candidates.some((c) => c.method === m));
  const byMethod = { autolip, cp: has('cp') ? compose('cp') : null, seqlip: has('seqlip') ? compose('seqlip') : null, sdp: has('sdp') ? compose('sdp') : null, eclipse: has('eclipse') ? compose('eclipse') : null, best: compose('best') };
  const result = o.method === 'autolip' || o.method === 'exact' ? autolip : byMethod[o.method] ?? autolip;
  if (result.upper && !Number.isFinite(result.upper.value)) {
    throw new LipcheckError('UNSUPPORTED', `${m.path}: the Lipschitz bound exceeds the float64 range (the operator norms multiply past 1.8e308); the weights are implausibly large.`);
  }
  const probabilistic = [...norms.values()].filter((m) => m.upper.kind === 'probabilistic').length + (o.method === 'autolip' ? 0 : probabilisticSegments);
  const methods = [
    { method: 'autolip', upper: autolip.upper, estimate: autolip.estimate },
    ...(byMethod.cp ? [{ method: 'autolip+cp', upper: byMethod.cp.upper, estimate: byMethod.cp.estimate }] : []),
    ...(byMethod.seqlip ? [{ method: 'autolip+seqlip', upper: byMethod.seqlip.upper, estimate: byMethod.seqlip.estimate }] : []),
    ...(byMethod.sdp ? [{ method: 'autolip+sdp', upper: byMethod.sdp.upper, estimate: byMethod.sdp.estimate, work: uses.reduce((a, u) => a + u.candidates.reduce((b, c) => b + (c.method === 'sdp' ? c.work ?? 0 : 0), 0), 0) }] : []),
    ...(byMethod.eclipse ? [{ method: 'autolip+eclipse', upper: byMethod.eclipse.upper, estimate: byMethod.eclipse.estimate, work: uses.reduce((a, u) => a + u.candidates.reduce((b, c) => b + (c.method === 'eclipse' ? c.work ?? 0 : 0), 0), 0) }] : []),
    // residual blocks alone on AutoLip (best combines them with the segment methods)
    ...(residuals.length ? [composeAutoLip(m.ir, m.blocks, norms, o.norm, [], 'best', residuals)].map((r) => ({ method: 'autolip+residual', upper: r.upper, estimate: r.estimate })) : []),
    // greedy SeqLip is a local maximum, an estimate: shown beside the bounds, never as one
    ...(has('seqlip') ? [{ method: 'seqlip-greedy', upper: null, estimate: compose('greedy').estimate }] : []),
    ...(exact?.upper ? [exact.upper.method.startsWith('relu-bab') ? { method: 'relu-bab', upper: exact.upper, estimate: null, work: exact.work } : { method: 'exact', upper: exact.upper, estimate: null }] : []),
    ...(cross ? [{ method: cross.line, upper: cross.upper, estimate: null }] : []),
    ...(graph ? [{ method: 'graph-cp', upper: graph.upper, estimate: graph.estimate }] : []),
  ];
  // the reported bound: the composition's, replaced by the exact enumeration's max (kind exact when witnessed within
  // 1e-6, then also no larger than a certified composition) or by the other norm's bound × √n when those are smaller
  let upper = result.upper;
  if (upper && exact?.upper) {
    if (exact.status === 'exact') upper = { ...exact.upper, value: upper.kind === 'certified' ? Math.min(exact.upper.value, upper.value) : exact.upper.value };
    else if (exact.upper.value < upper.value) upper = exact.upper;
  }
  if (upper && graph && upper.kind !== 'exact' && graph.upper.value < upper.value) upper = graph.upper;
  if (upper && cross && upper.kind !== 'exact' && cross.upper.value < upper.value) upper = cross.upper;
  // graph-cp rests on the regions' norms (their KW bounds) and its own
  const failures = upper === result.upper ? probabilistic : upper === cross?.upper ? cross.probabilistic : upper === graph?.upper ? probabilistic + graph.probabilistic : 0;
  return { norms, autolip, result, upper, methods, failures, exact, sdpMflop };
}

/**
 * L∞ ≤ √n_in·L₂ with L₂ the bound an ℓ2 `best` analysis of the same model and settings reports (same seeds, so exactly
 * √n_in × a `--norm 2` run's upper bound), its lower bound and its own norm equivalence left out. Only where its
 * operator-norm phase fits CROSS_NORM_FLOP (the later methods then have their usual budgets, scaled from that phase's
 * counted work); null otherwise or when the ℓ2 analysis has no bound. Kind: probabilistic when the ℓ2 bound is, else
 * certified (an exact ℓ2 constant × √n_in is a certified ℓ∞ bound, rarely the exact one). Its warnings are not the
 * report's (they are about the ℓ2 constant); its progress is reported as the segment phase's.
 */
async function bestL2Bound(m: MethodModel, backend: OperatorBackend, o: MethodSettings, settings: NormSettings): Promise<CrossNormBound | null> {
  const t0 = performance.now();
  if (l2NormsWork(m.blocks, settings.maxIterations) > CROSS_NORM_FLOP) return null;
  const progress = o.onProgress;
  let l2: UpperEstimate;
  try {
    l2 = await estimateUpper(m, backend, { ...o, norm: '2', onProgress: progress && ((done, total, what) => progress(done, total, `ℓ2 ${what}`, 'segments')) }, [], false);
  } catch (e) {
    // an extra bound only: a model the ℓ2 analysis cannot bound under these settings (--certify strict without a
    // certificate for some operator, float32 overflow in an ℓ2 product) leaves the ℓ∞ report as it was; bugs still surface
    if (e instanceof LipcheckError && e.code !== 'INTERNAL') return null;
    throw e;
  }
  if (!l2.upper || l2.result.status !== 'bounded') return null;
  const factor = sqrtUp(sizeOf(m.inputShape));
  const method = 'sqrt(n_in)·best-l2';
  return {
    upper: { value: roundUp(factor * l2.upper.value, 2), kind: l2.upper.kind === 'probabilistic' ? 'probabilistic' : 'certified', method: `${method}(${l2.upper.method})` },
    line: method, from: l2.upper, factor, probabilistic: l2.failures, ms: performance.now() - t0,
  };
}

/**
 * The witnessed lower bound: the Jacobian ascent through the IR (random pairs where it cannot run), the pattern search
 * across activation boundaries, and the exact enumeration's pair through the float64 model, the largest confirmed
 * ratio kept; each new best pair goes to onWitness. Null with no lower-bound work or none found. Checks it against
 * the upper bound (beyond float32 rounding noise, the upper bound is wrong: an INTERNAL error).
 */
export async function estimateLower(m: MethodModel, backend: OperatorBackend, o: MethodSettings, up: UpperEstimate, warnings: string[]): Promise<LowerBound | null> {
  const { norms, result, upper, exact } = up;
  const regions = m.blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  let lower: LowerBound | null = null;
  // --lower-budget 0 (or --lower-pairs 0): no lower-bound work at all
  if (o.lowerPairs > 0 && o.lowerBudget > 0 && result.status !== 'discontinuous') {
    const hints = regions.length && regions[0].input === m.ir.input ? [norms.get(regions[0].id)!.direction].filter((d): d is Float64Array => d !== null) : [];
    o.onProgress?.(0, 1, 'lower bound', 'lower');
    // a budget above the default is spent in two searches: the default's own (the same plan, seed and result as with the
    // default budget), then one with the rest and its own seed; the larger is kept, so more work never witnesses less
    const search = (budget: number, seed: number) => jacobianLowerBound({
      ir: m.ir, blocks: m.blocks, inputName: m.inputName, outputName: m.outputName, inputShape: m.inputShape,
      backend, seed, norm: o.norm, budget: budget * MFLOP, pairs: o.lowerPairs, hints,
    });
    const first = await search(Math.min(o.lowerBudget, DEFAULT_LOWER_BUDGET), o.seed);
    let lb: LowerBoundResult = first;
    if (o.lowerBudget > DEFAULT_LOWER_BUDGET) {
      const second = await search(o.lowerBudget - DEFAULT_LOWER_BUDGET, o.seed + 0x5eed);
      lb = { ...(second.value > first.value ? second : first), evaluations: first.evaluations + second.evaluations, nonFinite: first.nonFinite + second.nonFinite };
    }
    // a non-finite output for a finite input is float32 overflow inside the model: those points are skipped, and with
    // none left there is no lower bound (the upper bound stands: it never runs the whole model)
    const found = lb.nonFinite === 0 || lb.nonFinite < lb.evaluations;
    if (lb.nonFinite > 0) {
      warnings.push(`The lower-bound search skipped ${lb.nonFinite} of ${lb.evaluations} evaluations of the model whose output '${m.outputName}' (or an activation before it) was not finite for a finite input: float32 overflows inside the model (weights too large?). ${found ? 'The lower bound comes from the finite ones.' : 'No lower bound is reported.'}`);
    }
    if (found) {
      lower = { value: lb.value, kind: 'lower', method: lb.method, evaluations: lb.evaluations };
      o.onWitness?.({ input: m.inputName, shape: m.inputShape, x: lb.x, xPrime: lb.xPrime, ratio: lb.value });
    }
    // walks across activation boundaries (dense ReLU chains) from the best points so far; its pairs are confirmed the same way
    // (not needed where the exact enumeration was already witnessed)
    const ps = exact?.status === 'exact' ? null : await patternSearchLowerBound({
      ir: m.ir, blocks: m.blocks, inputName: m.inputName, outputName: m.outputName, inputShape: m.inputShape, backend, norm: o.norm, seed: o.seed,
      seeds: [...(lb.irPoint ? [lb.irPoint] : []), ...(exact?.seeds ?? [])], evaluations: Math.round((PATTERN_EVALUATIONS * o.lowerBudget) / DEFAULT_LOWER_BUDGET),
    });
    if (ps && ps.value > (lower?.value ?? 0)) {
      lower = { value: ps.value, kind: 'lower', method: 'pattern-search', evaluations: lb.evaluations + ps.modelRuns };
      o.onWitness?.({ input: m.inputName, shape: m.inputShape, x: ps.x, xPrime: ps.xPrime, ratio: ps.value });
    }
    // the exact enumeration's pair, through the model widened to float64 (the same real function, less rounding)
    if (exact?.lower32 && exact.lower > (lower?.value ?? 0)) {
      lower = { value: exact.lower, kind: 'lower', method: exact.upper?.method.startsWith('relu-bab') ? 'relu-bab-witness(float64 model)' : 'exact-witness(float64 model)', evaluations: exact.evaluations };
      o.onWitness?.({ input: m.inputName, shape: m.inputShape, x: exact.lower32.x, xPrime: exact.lower32.xPrime, ratio: exact.lower32.value });
    }
    // the pair's ratio comes from float32 evaluations of the model: allow their rounding noise, nothing more
    if (upper && lower && lower.value > upper.value * (1 + 1e-4)) {
      throw new LipcheckError('INTERNAL', `A witnessed pair gives ‖f(x)−f(x')‖/‖x−x'‖ = ${lower.value} above the reported upper bound ${upper.value} (${upper.kind}, ${upper.method}). The upper bound is wrong: please report this with the model.`);
    }
  }
  return lower;
}
