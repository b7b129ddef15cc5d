import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LipcheckError } from './errors.js';
import { composeAutoLip, type ResidualUse, type SegmentCandidate, type SegmentUse } from './estimators/autolip.js';
import { cpSegmentBound, findSegments } from './estimators/cp.js';
import { exactLipschitz, type ExactResult } from './estimators/exact.js';
import { jacobianLowerBound } from './estimators/lower-bound.js';
import { crossNormBound, type CrossNormBound } from './estimators/linf.js';
import { patternSearchLowerBound } from './estimators/pattern-search.js';
import type { NormKind } from './estimators/kinds.js';
import { measureRegion, type OperatorNorm } from './estimators/operator-norm.js';
import { LIPSDP_DEFAULTS, lipsdpObstacle, lipsdpSegmentBound } from './estimators/lipsdp.js';
import { findResidualBlocks, residualBlockBound, residualWork } from './estimators/residual.js';
import { SEQLIP_DEFAULTS, seqlipObstacle, seqlipSegmentBound } from './estimators/seqlip.js';
import { createOrtBackend } from './backend/index.js';
import { buildIr } from './frontend/build.js';
import { mergeLinear } from './ir/merge.js';
import { providerFor, resolveDevice, type Device } from './backend/runtime.js';
import { MFLOP, regionFlop } from './linalg/work.js';
import { decodeModel, readModel, readModelBytes } from './onnx/read-model.js';
import { SCHEMA_VERSION, type LipschitzReport, type LowerBound } from './report/report.js';

export { LipcheckError } from './errors.js';
export type { LipschitzReport } from './report/report.js';

/** Analysis options; every field has a default. */
export interface AnalyzeOptions {
  readonly norm?: NormKind;
  /** autolip: products of norms only; cp: Combettes–Pesquet on every sequential segment; seqlip: SeqLip there (ℓ2); sdp: LipSDP-Neuron/Layer there (ℓ2); exact: linear-region enumeration (ReLU nets with ≤ 2 inputs); best: the smallest valid bound per segment, exact where it applies. */
  readonly method?: 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best';
  /** Cells the exact region enumeration may visit (default 200 000); past it the bracket reached is reported. */
  readonly exactBudget?: number;
  /** Work LipSDP may spend over all segments, in Mflop (2 per multiply-add; default: LIPSDP_DEFAULTS.bestWork under best, sdpWork under sdp). */
  readonly sdpWork?: number;
  /** Singular triplets per operator for greedy SeqLip. */
  readonly seqlipK?: number;
  /** Longest partial product CP measures directly (0: no limit). */
  readonly cpWindow?: number;
  readonly seed?: number;
  readonly delta?: number;
  readonly tol?: number;
  readonly iterations?: number;
  readonly certify?: 'strict' | 'auto' | 'off' | 'none';
  readonly device?: Device;
  readonly threads?: number;
  readonly inputName?: string;
  readonly outputName?: string;
  readonly inputShape?: readonly number[];
  /** Random witness pairs when the Jacobian ascent cannot run (unbounded graphs); 0 disables the lower bound. */
  readonly lowerPairs?: number;
  /** Work budget of the witnessed lower bound in Mflop (model runs and Jacobian products by the cost model, linalg/work.ts); 0: no lower-bound work. */
  readonly lowerBudget?: number;
  /** Work budget of one deterministic certificate (FFT, SVD, Cholesky) in Mflop: the cap of each operator's certificates. */
  readonly certifyBudget?: number;
  /** @deprecated Old millisecond budget: read as lowerBudget = LEGACY_MFLOP_PER_MS.lower × this (a fixed rate, never a clock). */
  readonly lowerBudgetMs?: number;
  /** @deprecated Old millisecond budget: read as certifyBudget = LEGACY_MFLOP_PER_MS.certify × this (a fixed rate, never a clock). */
  readonly certifyBudgetMs?: number;
  /** Where the analysis stands: `phase` and `done` of `total` steps in it (build and lower: 0 of 1 as they start). */
  readonly onProgress?: (done: number, total: number, what: string, phase: AnalysisPhase) => void;
  /** Receives the input pair behind the lower bound (for --witness). */
  readonly onWitness?: (w: WitnessPair) => void;
}

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

/** Defaults shared by the library and the CLI. */
export const DEFAULTS = { method: 'best' as 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best', exactBudget: 200_000, cpWindow: 0, seqlipK: SEQLIP_DEFAULTS.k as number, norm: '2' as NormKind, seed: 0, delta: 1e-6, tol: 0.05, iterations: 200, certify: 'auto' as const, device: 'auto' as Device, lowerPairs: 64, lowerBudget: 8000, certifyBudget: 2800 };

/**
 * How the old millisecond budgets are read: as the work the reference machine (2 shared cores, Node 20) did in that
 * time, onnxruntime products and model runs about 4 Mflop per ms, float64 certificate kernels about 1.4. A fixed rate,
 * so they too give the same numbers on every machine; the defaults (8000 and 2800 Mflop) are the old 2000 ms each.
 */
export const LEGACY_MFLOP_PER_MS = { lower: 4, certify: 1.4 } as const;

/** Under best, the exact enumeration also stops at this many multiply-adds (cells × 3 per nonzero weight): TLL-size nets fit. */
const EXACT_BEST_WORK = 4e9;
/** Largest ℓ2 measurement (flop of the cost model) the √n_in·ℓ2 bound of --norm inf may take; ℓ∞ row sums always run. */
const CROSS_NORM_FLOP = 5e10;
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

/** The names of a model's graph outputs, in order (for --all-outputs). */
export function graphOutputs(path: string): string[] {
  return readModel(path).outputs.map((o) => o.name);
}

const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

/** A budget option must be a finite non-negative number of Mflop. */
function checkBudget(name: string, value: number): void {
  if (!(value >= 0 && Number.isFinite(value))) throw new LipcheckError('USAGE', `${name} must be a non-negative number of Mflop (millions of floating-point operations of the cost model); got ${value}.`);
}

/** Checks that an explicitly asked device (`cuda`, `webgpu`) can start; throws a DEVICE error saying what is missing otherwise. */
export async function checkDevice(device: Device, threads?: number): Promise<void> {
  await resolveDevice(device, threads);
}

/** Reads an ONNX model and computes AutoLip bounds on its Lipschitz constant, with a witnessed lower bound. */
export async function analyze(model: string | { bytes: Uint8Array; name: string }, options: AnalyzeOptions = {}): Promise<LipschitzReport> {
  const legacy = {
    lowerBudget: options.lowerBudget ?? (options.lowerBudgetMs === undefined ? undefined : options.lowerBudgetMs * LEGACY_MFLOP_PER_MS.lower),
    certifyBudget: options.certifyBudget ?? (options.certifyBudgetMs === undefined ? undefined : options.certifyBudgetMs * LEGACY_MFLOP_PER_MS.certify),
  };
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries({ ...options, ...legacy }).filter(([, v]) => v !== undefined)) } as typeof DEFAULTS & AnalyzeOptions;
  const t0 = performance.now();
  const bytes = typeof model === 'string' ? readModelBytes(model) : model.bytes;
  const path = typeof model === 'string' ? model : model.name;
  const onnx = decodeModel(bytes, path);
  const tLoad = performance.now();
  const runtime = { device: o.device, threads: o.threads };
  // the device is settled before the model is loaded: a GPU that cannot start is a DEVICE error, never the model's fault
  await resolveDevice(o.device, o.threads);
  o.onProgress?.(0, 1, path, 'build');
  const built = await buildIr(onnx, { inputName: o.inputName, outputName: o.outputName, inputShape: o.inputShape, seed: o.seed, runtime });
  const tBuild = performance.now();
  const blocks = mergeLinear(built.ir);
  const regions = blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  const norms = new Map<string, OperatorNorm>();
  checkBudget('certifyBudget', o.certifyBudget);
  checkBudget('lowerBudget', o.lowerBudget);
  // the one place operators come from: estimators are handed this backend and open no sessions themselves
  const backend = createOrtBackend({ model: onnx, runtime, io: { inputName: built.inputName, inputShape: built.inputShape, outputName: built.outputName } });
  const settings = { norm: o.norm, certify: o.certify, delta: o.delta, tol: o.tol, maxIterations: o.iterations, seed: o.seed, backend, certifyBudget: o.certifyBudget * MFLOP };
  for (const [i, r] of regions.entries()) {
    o.onProgress?.(i, regions.length, r.id, 'norms');
    norms.set(r.id, await measureRegion(r, settings, i));
  }
  o.onProgress?.(regions.length, regions.length, 'done', 'norms');
  const warnings = [...built.ir.warnings];
  const autolip = composeAutoLip(built.ir, blocks, norms, o.norm);
  const uses: SegmentUse[] = [];
  const residuals: ResidualUse[] = [];
  let probabilisticSegments = 0;
  const sdpMflop = o.sdpWork ?? (2 * (o.method === 'sdp' ? LIPSDP_DEFAULTS.sdpWork : LIPSDP_DEFAULTS.bestWork)) / 1e6;
  // segments only tighten a bound: a model without one (unbounded, discontinuous) needs none
  if (o.method !== 'autolip' && autolip.status === 'bounded') {
    // the budgets of the segment methods scale with the counted work of the norm phase, never with its time
    const normsWork = [...norms.values()].reduce((a, m) => a + m.work, 0);
    const runCp = o.method === 'cp' || o.method === 'best';
    // SeqLip rests on singular value decompositions: an ℓ2 method
    const runSeqlip = (o.method === 'seqlip' || o.method === 'best') && o.norm === '2';
    if (o.method === 'seqlip' && o.norm !== '2') warnings.push('SeqLip bounds the ℓ2 constant only; with --norm inf the report is AutoLip (use --method cp for a tighter ℓ∞ bound).');
    const runSdp = (o.method === 'sdp' || o.method === 'best') && o.norm === '2';
    if (!(sdpMflop >= 0)) throw new LipcheckError('USAGE', `The LipSDP work budget must be a non-negative number of Mflop; got ${sdpMflop}.`);
    const segments = findSegments(built.ir, blocks);
    const activationCount = segments.reduce((a, g) => a + g.activations.length, 0);
    for (const [k, segment] of segments.entries()) {
      const candidates: SegmentCandidate[] = [];
      o.onProgress?.(k, segments.length, segment.id, 'segments');
      if (runCp) {
        const window = o.cpWindow || cpWindowFor(segment.regions.map((r) => ({ flop: 2 * regionFlop(r), iterations: norms.get(r.id)!.iterations })), Math.max(CP_MIN_FLOP, CP_PER_NORMS * normsWork));
        if (window < 2) {
          warnings.push(`${segment.id} (${segment.regions.length} operators): Combettes–Pesquet skipped, its partial products would take well over the work budget; AutoLip is used there (force it with --cp-window).`);
        } else {
          const cp = await cpSegmentBound(segment, settings, { window: window >= segment.regions.length ? undefined : window, known: norms });
          probabilisticSegments += cp.probabilistic;
          candidates.push({ method: 'cp', upper: cp.upper, estimate: cp.estimate, ms: cp.ms, note: `CP ${cp.upper.value.toPrecision(4)} (${cp.norms} products)` });
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
        // under best only LipSDP-Neuron (the tighter one; Layer saves little here, the N×N factorisations dominate)
        const sdp = await lipsdpSegmentBound(segment, settings, { work: (sdpMflop * 1e6) / 2 / segments.length, variants: o.method === 'sdp' ? undefined : ['neuron'], minSteps: o.method === 'sdp' ? undefined : LIPSDP_DEFAULTS.bestMinSteps });
        if (o.method === 'sdp') warnings.push(...sdp.notes);
        if (sdp.upper) candidates.push({ method: 'sdp', upper: sdp.upper, estimate: sdp.estimate, ms: sdp.ms, work: sdp.work, note: `LipSDP ${[sdp.neuron, sdp.layer].filter((b) => b !== null).map((b) => `${b.method.slice(7)} ${b.value.toPrecision(4)}`).join(', ')} (${sdp.newtonSteps} Newton steps)` });
      } else if (o.method === 'sdp') warnings.push(`No LipSDP bound for ${segment.id}: ${lipsdpObstacle(segment, settings)}; AutoLip is used there.`);
      if (candidates.length) uses.push({ segment, candidates });
    }
    // residual blocks (ℓ2, under best): CP with the skip joined to the all-linear term, while their Lanczos runs fit a
    // budget the size of CP's (counted by the cost model, never timed)
    if (o.method === 'best' && o.norm === '2') {
      let left = Math.max(CP_MIN_FLOP, CP_PER_NORMS * normsWork);
      for (const block of findResidualBlocks(built.ir, blocks, segments)) {
        const cost = residualWork(block, Math.max(1, ...block.branch.regions.map((r) => norms.get(r.id)!.iterations)), norms);
        if (cost > left) {
          warnings.push(`Residual block ${block.id} (sum node '${block.sum.name}'): its bound was skipped, the operators it measures would take over the work budget left; the sum of its branches is used there.`);
          continue;
        }
        left -= cost;
        const res = await residualBlockBound(block, settings, { known: norms });
        probabilisticSegments += res.probabilistic;
        const nodes = [...(block.skip?.nodes ?? []), ...block.branch.regions.flatMap((r) => r.nodes), ...block.branch.activations, block.sum].map((n) => n.name);
        residuals.push({ id: block.id, input: block.input, output: block.output, nodes: [...new Set(nodes)], upper: res.upper, estimate: res.estimate, ms: res.ms, note: res.note });
      }
    }
  }
  // exact constants (ReLU nets with ≤ 2 inputs: region enumeration) and the norm equivalences L∞ ≤ √n_in·L₂, L₂ ≤ √n_out·L∞
  let exact: ExactResult | null = null;
  let cross: CrossNormBound | null = null;
  if (autolip.status === 'bounded' && (o.method === 'exact' || o.method === 'best')) {
    exact = await exactLipschitz({ ir: built.ir, blocks, inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape, backend, norm: o.norm, budget: o.exactBudget, work: o.method === 'best' ? EXACT_BEST_WORK : undefined });
    if (o.method === 'exact' && exact.status === 'unsupported') warnings.push(`No exact constant: ${exact.reason}; the report is AutoLip (--method best gives the tightest other bound).`);
    if (exact.status === 'bracket' && !exact.upper) warnings.push(`Exact constant not reached: ${exact.reason}; raise it with --exact-budget. The bracket below is what the other methods and the regions visited give.`);
  }
  if (autolip.status === 'bounded' && o.method !== 'autolip' && (o.norm === 'inf' || o.method === 'best')) cross = await crossNormBound(built.ir, blocks, settings, o.norm, CROSS_NORM_FLOP);
  const tNorms = performance.now();
  const compose = (mode: 'best' | 'cp' | 'seqlip' | 'sdp' | 'greedy') => (uses.length || residuals.length ? composeAutoLip(built.ir, blocks, norms, o.norm, uses, mode, residuals) : autolip);
  const has = (m: string) => uses.some((u) => u.candidates.some((c) => c.method === m));
  const byMethod = { autolip, cp: has('cp') ? compose('cp') : null, seqlip: has('seqlip') ? compose('seqlip') : null, sdp: has('sdp') ? compose('sdp') : null, best: compose('best') };
  const result = o.method === 'autolip' || o.method === 'exact' ? autolip : byMethod[o.method] ?? autolip;
  if (result.upper && !Number.isFinite(result.upper.value)) {
    throw new LipcheckError('UNSUPPORTED', `${path}: the Lipschitz bound exceeds the float64 range (the operator norms multiply past 1.8e308); the weights are implausibly large.`);
  }
  const probabilistic = [...norms.values()].filter((m) => m.upper.kind === 'probabilistic').length + (o.method === 'autolip' ? 0 : probabilisticSegments);
  const methods = [
    { method: 'autolip', upper: autolip.upper, estimate: autolip.estimate },
    ...(byMethod.cp ? [{ method: 'autolip+cp', upper: byMethod.cp.upper, estimate: byMethod.cp.estimate }] : []),
    ...(byMethod.seqlip ? [{ method: 'autolip+seqlip', upper: byMethod.seqlip.upper, estimate: byMethod.seqlip.estimate }] : []),
    ...(byMethod.sdp ? [{ method: 'autolip+sdp', upper: byMethod.sdp.upper, estimate: byMethod.sdp.estimate, work: uses.reduce((a, u) => a + u.candidates.reduce((b, c) => b + (c.method === 'sdp' ? c.work ?? 0 : 0), 0), 0) }] : []),
    // residual blocks alone on AutoLip (best combines them with the segment methods)
    ...(residuals.length ? [composeAutoLip(built.ir, blocks, norms, o.norm, [], 'best', residuals)].map((r) => ({ method: 'autolip+residual', upper: r.upper, estimate: r.estimate })) : []),
    // greedy SeqLip is a local maximum, an estimate: shown beside the bounds, never as one
    ...(has('seqlip') ? [{ method: 'seqlip-greedy', upper: null, estimate: compose('greedy').estimate }] : []),
    ...(exact?.upper ? [{ method: 'exact', upper: exact.upper, estimate: null }] : []),
    ...(cross ? [{ method: cross.upper.method, upper: cross.upper, estimate: null }] : []),
  ];
  // the reported bound: the composition's, replaced by the exact enumeration's max (kind exact when witnessed within
  // 1e-6, then also no larger than a certified composition) or by the other norm's bound × √n when those are smaller
  let upper = result.upper;
  if (upper && exact?.upper) {
    if (exact.status === 'exact') upper = { ...exact.upper, value: upper.kind === 'certified' ? Math.min(exact.upper.value, upper.value) : exact.upper.value };
    else if (exact.upper.value < upper.value) upper = exact.upper;
  }
  if (upper && cross && upper.kind !== 'exact' && cross.upper.value < upper.value) upper = cross.upper;
  const failures = upper === result.upper ? probabilistic : upper === cross?.upper ? cross.probabilistic : 0;

  let lower: LowerBound | null = null;
  // --lower-budget 0 (or --lower-pairs 0): no lower-bound work at all
  if (o.lowerPairs > 0 && o.lowerBudget > 0 && result.status !== 'discontinuous') {
    const hints = regions.length && regions[0].input === built.ir.input ? [norms.get(regions[0].id)!.direction].filter((d): d is Float64Array => d !== null) : [];
    o.onProgress?.(0, 1, 'lower bound', 'lower');
    const lb = await jacobianLowerBound({
      ir: built.ir, blocks, inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape,
      backend, seed: o.seed, norm: o.norm, budget: o.lowerBudget * MFLOP, pairs: o.lowerPairs, hints,
    });
    // a non-finite output for a finite input is float32 overflow inside the model: those points are skipped, and with
    // none left there is no lower bound (the upper bound stands: it never runs the whole model)
    const found = lb.nonFinite === 0 || lb.nonFinite < lb.evaluations;
    if (lb.nonFinite > 0) {
      warnings.push(`The lower-bound search skipped ${lb.nonFinite} of ${lb.evaluations} evaluations of the model whose output '${built.outputName}' (or an activation before it) was not finite for a finite input: float32 overflows inside the model (weights too large?). ${found ? 'The lower bound comes from the finite ones.' : 'No lower bound is reported.'}`);
    }
    if (found) {
      lower = { value: lb.value, kind: 'lower', method: lb.method, evaluations: lb.evaluations };
      o.onWitness?.({ input: built.inputName, shape: built.inputShape, x: lb.x, xPrime: lb.xPrime, ratio: lb.value });
    }
    // walks across activation boundaries (dense ReLU chains) from the best points so far; its pairs are confirmed the same way
    // (not needed where the exact enumeration was already witnessed)
    const ps = exact?.status === 'exact' ? null : await patternSearchLowerBound({
      ir: built.ir, blocks, inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape, backend, norm: o.norm, seed: o.seed,
      seeds: [...(lb.irPoint ? [lb.irPoint] : []), ...(exact?.seeds ?? [])], evaluations: Math.round((PATTERN_EVALUATIONS * o.lowerBudget) / DEFAULTS.lowerBudget),
    });
    if (ps && ps.value > (lower?.value ?? 0)) {
      lower = { value: ps.value, kind: 'lower', method: 'pattern-search', evaluations: lb.evaluations + ps.modelRuns };
      o.onWitness?.({ input: built.inputName, shape: built.inputShape, x: ps.x, xPrime: ps.xPrime, ratio: ps.value });
    }
    // the exact enumeration's pair, through the model widened to float64 (the same real function, less rounding)
    if (exact?.lower32 && exact.lower > (lower?.value ?? 0)) {
      lower = { value: exact.lower, kind: 'lower', method: 'exact-witness(float64 model)', evaluations: exact.evaluations };
      o.onWitness?.({ input: built.inputName, shape: built.inputShape, x: exact.lower32.x, xPrime: exact.lower32.xPrime, ratio: exact.lower32.value });
    }
    // the pair's ratio comes from float32 evaluations of the model: allow their rounding noise, nothing more
    if (upper && lower && lower.value > upper.value * (1 + 1e-4)) {
      throw new LipcheckError('INTERNAL', `A witnessed pair gives ‖f(x)−f(x')‖/‖x−x'‖ = ${lower.value} above the reported upper bound ${upper.value} (${upper.kind}, ${upper.method}). The upper bound is wrong: please report this with the model.`);
    }
  }
  const tLower = performance.now();
  // why `auto` chose the CPU is about this machine, not the model: the CLI prints it with --verbose, not in the report
  const provider = providerFor(o.device);
  return {
    schemaVersion: SCHEMA_VERSION,
    tool: { name: 'lipcheck', version: VERSION },
    model: { path, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length, producer: onnx.producer, opset: onnx.opsets.get('') ?? 0, irVersion: onnx.irVersion },
    input: { name: built.inputName, shape: built.inputShape },
    output: { name: built.outputName, shape: built.outputShape },
    norm: o.norm,
    settings: { method: o.method, cpWindow: o.cpWindow, seqlipK: o.seqlipK, seed: o.seed, delta: o.delta, tol: o.tol, iterations: o.iterations, certify: o.certify, certifyBudget: o.certifyBudget, sdpWork: sdpMflop, exactBudget: o.exactBudget, lowerBudget: o.lowerBudget, lowerPairs: o.lowerPairs, device: o.device, provider: provider?.provider ?? 'cpu' },
    global: {
      status: result.status,
      upper,
      estimate: autolip.estimate,
      methods,
      lower,
      ratio: upper && lower && lower.value > 0 ? upper.value / lower.value : null,
      failureProbability: Math.min(1, failures * o.delta),
      reasons: result.reasons,
    },
    layers: result.layers,
    warnings,
    timings: { loadMs: tLoad - t0, buildMs: tBuild - tLoad, normsMs: tNorms - tBuild, lowerMs: tLower - tNorms, totalMs: tLower - t0 },
  };
}
