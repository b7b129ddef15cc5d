import type { Block } from '../ir/merge.js';
import type { ModelEvaluator, OperatorBackend } from '../ir/operator.js';
import { isFloatType, sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import type { IrGraph } from '../ir/types.js';
import { lanczosTop, NonFiniteError } from '../linalg/lanczos.js';
import { norm2, Random, scaleInPlace } from '../linalg/random.js';
import { pairRatio, witnessLowerBound } from '../linalg/witness.js';
import { CALL_FLOP, JS_ELEMENT_FLOP, nodeFlop } from '../linalg/work.js';
import { activationSlopes, jumpAt, Jacobian, planIr, poolWinners, type LocalState, type Slopes, type Step } from './ir-eval.js';
import type { NormKind } from './kinds.js';

/** The model under analysis as the lower-bound and exact estimators see it: its IR, merged blocks and the backend. */
export interface AnalysedModel {
  readonly ir: IrGraph;
  readonly blocks: readonly Block[];
  readonly inputName: string;
  readonly outputName: string;
  readonly inputShape: readonly number[];
  readonly norm: NormKind;
  /** The regions' operators and the original model's evaluations (witnesses are confirmed through it). */
  readonly backend: OperatorBackend;
}

/** What {@link jacobianLowerBound} needs: the model, its IR and merged blocks, and how hard to work. */
export interface LowerBoundArgs extends AnalysedModel {
  readonly seed: number;
  /**
   * Work budget in flop (linalg/work.ts): sizes the plan (see {@link planSearch}) and stops the search once the model
   * evaluations and Jacobian products it charged reach it. Counted, never timed: the same on every run. 0: no work.
   */
  readonly budget: number;
  /** Random starts x ~ N(0, I) per round (default 4); the best one begins the round's walk. */
  readonly starts?: number;
  /** Steps of each round's soft-gate walk (default 100; fewer when one round would not fit the budget). */
  readonly ascentSteps?: number;
  /** For the random-pair fallback: how many pairs, and directions to try first. */
  readonly pairs?: number;
  readonly hints?: readonly Float64Array[];
  /** Standard deviations of the first two rounds' pooled random starts, in turn (default START_LADDER). */
  readonly startScales?: readonly number[];
}

/** A witnessed lower bound: a real pair evaluated on the original model (the backend's evaluator), and how it was found. */
export interface LowerBoundResult {
  /** ‖f(x')−f(x)‖/‖x'−x‖ in the chosen norm, from the float32 inputs actually fed: a lower bound on L(f). */
  readonly value: number;
  /** 'jacobian-ascent' (σ_max or ℓ∞ row sum of J(x) through the IR, confirmed by a pair) or 'witness-pairs' (fallback). */
  readonly method: 'jacobian-ascent' | 'witness-pairs';
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  /** Runs of the original model (activation values and confirmation pairs, or the fallback's pairs). */
  readonly evaluations: number;
  /** Products with J(x) or J(x)ᵀ through the IR. */
  readonly products: number;
  /** The IR's ‖J(x)‖ at `irPoint`, the point whose confirmation gave the pair (never reported as the bound); null for the fallback. */
  readonly irNorm: number | null;
  readonly irPoint: Float32Array | null;
  /** True when the work budget stopped the plan early (the result is still the same on every run). */
  readonly truncated: boolean;
  /** Work charged (flop by the cost model: evaluations and products), at most a step past the budget. */
  readonly work: number;
  /** Model evaluations whose output (or an activation's value) was not finite, skipped: float32 overflow in the model. */
  readonly nonFinite: number;
  /** The search's size (absent for the fallback). */
  readonly plan?: SearchPlan;
  /** Why the Jacobian path was not taken, for the fallback. */
  readonly fallbackReason?: string;
}

/**
 * Lanczos steps per random start and per walk point (warm-started from the previous point's vector), and the products they take on average (measured; they size the
 * plan). A model whose budget affords less than LEAN_FIT of a round takes the lean ones, so that its walk, where the
 * gains are (sri_resnet_b: σ 0.93 at the start, 3.1 after 20 steps), gets more steps: sri_resnet_b 3.38 → 4.31,
 * tiny_yolo 12.5 → 13.6 (seed 0; 3.12 → 3.95 and 12.2 → 13.9 for seed 1).
 */
const FULL: Lanczos = { start: 30, warm: 6, perStart: 40, perStep: 20 }, LEAN: Lanczos = { start: 10, warm: 3, perStart: 20, perStep: 12 }, LEAN_FIT = 0.5;
/** Soft-gate width τ (relative to a layer's RMS pre-activation) and step length (relative to ‖x‖) along the walk. */
const TAU_START = 1, TAU_END = 0.01;
const STEP_START = 0.1, STEP_END = 0.005;
/** Width of the Gaussian bump that stands in for the derivative of a hard gate in the polish's gradient. */
const BUMP_TAU = 0.05;
const POLISH_STEP = 0.025, POLISH_STEPS = 20;
/** Confirmation pairs: the fixed steps, the share of the pattern-preserving segment used, its cap and its floor (× ‖x‖). */
const FIXED_STEPS = [1e-2], SAFE_SHARE = 0.95, MAX_STEP = 0.1, MIN_SEGMENT = 1e-4;
/** ℓ∞: output rows examined per round when there are more. */
const MAX_ROWS = 32;
/** The plan's share of the budget, and its most rounds. */
const PLAN_SHARE = 0.5, MAX_ROUNDS = 8;
/**
 * Standard deviations of the random starts. Where the largest ‖J(x)‖ lies depends on the biases and on the model: far
 * out (acasxu, oval21), near the origin where saturating units are still live (dist_shift_mnist_concat's sigmoids:
 * 1 226 from N(0, I) starts, 4 000–10 000 from N(0, 10⁻⁴I) ones), or in between (marabou_cifar10_medium: 57 from
 * N(0, I) starts, 110–112 from N(0, 0.1²I) ones; collins_rul 133 against 144–152). So the first two rounds (there are
 * always at least two) share a pool of starts spread over START_LADDER and walk from the steepest two at different
 * scales; later rounds alternate START_SCALES (and ℓ∞ rounds too). Walk steps are relative to ‖x‖ (floor 10⁻³), so a
 * small start walks small.
 */
const START_LADDER = [1, 0.01, 0.1, 10, 3, 0.3, 30, 0.03];
const START_SCALES = [1, 0.01], MIN_ROUNDS = 2, MIN_STEP_NORM = 1e-3;

/** How much work the search does: fixed by the model's size and the budget, so it is the same on every run. */
export interface SearchPlan {
  readonly rounds: number;
  readonly starts: number;
  readonly walkSteps: number;
  readonly polishSteps: number;
  /** Lanczos steps per random start and per walk point (FULL, or LEAN for a model too large for half a round). */
  readonly lanczos: { readonly start: number; readonly warm: number };
}

interface Lanczos { readonly start: number; readonly warm: number; readonly perStart: number; readonly perStep: number }

/** A point with the top singular value and right vector of J(x). */
interface Point { readonly s: LocalState; readonly sigma: number; readonly v: Float64Array }
/** A point with its largest ℓ1 row of J(x) among those examined. */
interface RowPoint { readonly s: LocalState; readonly value: number; readonly row: number; readonly r: Float64Array }

function sign(r: Float64Array): Float64Array {
  return Float64Array.from(r, (v) => Math.sign(v));
}

function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

/** True when every value is finite (no float32 overflow, no NaN). */
function allFinite(v: ArrayLike<number>): boolean {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
  return true;
}

function normOf(v: ArrayLike<number>, inf: boolean): number {
  return inf ? maxAbs(v) : norm2(v);
}

/** The cost model's price (flop, linalg/work.ts) of one product with J(x) and of one run of the model. */
export function searchCosts(blocks: readonly Block[], input: number): { product: number; evaluation: number } {
  let product = input * JS_ELEMENT_FLOP * 4;
  let evaluation = CALL_FLOP + input * JS_ELEMENT_FLOP;
  for (const b of blocks) {
    if (b.kind === 'operator') {
      product += CALL_FLOP;
      for (const n of b.region.nodes) { product += nodeFlop(n); evaluation += nodeFlop(n); }
    } else {
      product += sizeOf(b.node.outShape) * JS_ELEMENT_FLOP;
      evaluation += sizeOf(b.node.outShape) * 2 * JS_ELEMENT_FLOP;
    }
  }
  return { product, evaluation };
}

/**
 * The search's size, from the cost model of one product with J(x) (searchCosts): rounds fill about half the budget
 * (at least MIN_ROUNDS, one per start scale), and a model too large for one full round gets a shorter walk. The search then stops wherever its counted work
 * reaches the budget, so plan and stop are the same on every run.
 */
export function planSearch(blocks: readonly Block[], sizes: { input: number; output: number }, norm: NormKind, budget: number, starts = 4, walkSteps = 100): SearchPlan {
  const productFlop = searchCosts(blocks, sizes.input).product;
  // ℓ∞: a start measures every sampled row; a walk step takes three products, a state and a row (all rows every tenth)
  const rows = Math.min(sizes.output, MAX_ROWS);
  const room = PLAN_SHARE * budget;
  const fitOf = (l: Lanczos) => {
    const perStart = norm === 'inf' ? rows + 1 : l.perStart;
    const perStep = norm === 'inf' ? 7 + rows / 10 : l.perStep;
    const roundFlop = (starts * perStart + walkSteps * perStep) * productFlop;
    return { rounds: Math.max(MIN_ROUNDS, Math.min(MAX_ROUNDS, Math.floor(room / roundFlop))), fit: Math.min(1, room / roundFlop) };
  };
  // a model too large for one round gets fewer starts and a shorter walk, in proportion (and, below LEAN_FIT of a round
  // in ℓ2, fewer Lanczos steps per point); the second round then runs until the counted work stops it
  const lean = norm !== 'inf' && fitOf(FULL).fit < LEAN_FIT;
  const l = lean ? LEAN : FULL;
  const { rounds, fit } = fitOf(l);
  return { rounds, starts: Math.max(1, Math.round(starts * fit)), walkSteps: Math.max(5, Math.floor(walkSteps * fit)), polishSteps: norm === 'inf' ? 0 : POLISH_STEPS, lanczos: { start: l.start, warm: l.warm } };
}

/**
 * The work (flop) at which planSearch gives MIN_ROUNDS full rounds (every start, the whole walk, FULL Lanczos): below it
 * the search is cut short (fewer starts, a shorter walk, or LEAN Lanczos).
 */
export function fullSearchWork(blocks: readonly Block[], sizes: { input: number; output: number }, norm: NormKind, starts = 4, walkSteps = 100): number {
  const productFlop = searchCosts(blocks, sizes.input).product;
  const rows = Math.min(sizes.output, MAX_ROWS);
  const perStart = norm === 'inf' ? rows + 1 : FULL.perStart;
  const perStep = norm === 'inf' ? 7 + rows / 10 : FULL.perStep;
  return (MIN_ROUNDS * (starts * perStart + walkSteps * perStep) * productFlop) / PLAN_SHARE;
}

/**
 * A witnessed lower bound on the Lipschitz constant (ALGORITHMS.md §3), in ℓ2 or ℓ∞. Through the IR it computes
 * ‖J_f(x)‖ — σ_max by Lanczos on JᵀJ (ℓ2), the largest ℓ1 row norm (ℓ∞) — by the one IR interpreter (ir-eval.ts):
 * linear regions applied by the backend's operators, activations (every entry of src/ops/elementwise.ts), max-pools
 * and softmaxes as their exact derivatives at x (values read off the original model through `backend.model()`). It
 * maximises that over x: random starts at several scales (START_LADDER), then an ascent along ∇_x(uᵀJ(x)v) for the top singular
 * pair (ℓ∞: the top row and its signs) with ReLU-like gates softened and annealed. The best points are CONFIRMED by
 * pairs run through the original model — along the longest segment on which no activation pattern changes — and the
 * value reported is the best pair's ratio ‖f(x′)−f(x)‖/‖x′−x‖ from the float32 inputs fed, never the IR's norm.
 * Graphs the IR cannot differentiate (unbounded or discontinuous nodes) fall back to random pairs
 * ({@link witnessLowerBound}). Deterministic for a seed: the work budget is counted (searchCosts), so even a truncated plan stops at the same step.
 */
export async function jacobianLowerBound(args: LowerBoundArgs): Promise<LowerBoundResult> {
  const inf = args.norm === 'inf';
  const operators: { dispose(): Promise<void> }[] = [];
  let evaluator: ModelEvaluator | null = null;
  try {
    const short = firstStartShortfall(args);
    if (short) return await budgetPairs(args, short);
    const plan = await planIr(args.ir, args.blocks, args.backend, operators);
    if (typeof plan === 'string') return await fallback(args, plan);
    const extra = plan.needed.filter((e) => e !== args.outputName && e !== args.inputName);
    evaluator = await args.backend.model({ extraOutputs: extra, what: 'the model (Jacobian witness)' });
    if (!evaluator) return noPair(args, 'the backend cannot evaluate the model', 0);
    const search = new Search(args, plan.steps, plan.fused, evaluator, [args.outputName, ...extra]);
    return await (inf ? search.runInf() : search.runL2());
  } finally {
    await evaluator?.release();
    for (const op of operators) await op.dispose();
  }
}

/** The Jacobian products of the search's first start: the lean plan's (ℓ∞: a row each and a state). */
function firstStartProducts(output: number, norm: NormKind): number {
  return norm === 'inf' ? Math.min(output, MAX_ROWS) + 1 : LEAN.perStart;
}

/** The work (flop) of the Jacobian search's first start: one model run and its products (firstStartProducts). */
export function firstStartWork(blocks: readonly Block[], sizes: { input: number; output: number }, norm: NormKind): number {
  const costs = searchCosts(blocks, sizes.input);
  return costs.evaluation + firstStartProducts(sizes.output, norm) * costs.product;
}

/**
 * Why the Jacobian search cannot start within the budget, or null. Its first start alone takes one model run and the
 * lean plan's products with J(x) (LEAN.perStart; ℓ∞: a row each and a state), and the search always makes it, so on a
 * model whose budget does not cover that (ResNet-50 even at `--lower-work auto`'s 40 000 Mflop: one run and one product are each about
 * 8.5e9 flop) it would overrun its budget several times over (and open a session per region besides). The witnessed
 * pairs then take the budget (at least one pair): a rule on the cost model's counts, the same on every run.
 */
export function firstStartShortfall(args: Pick<LowerBoundArgs, 'blocks' | 'inputShape' | 'ir' | 'norm' | 'budget'>): string | null {
  const products = firstStartProducts(sizeOf(args.ir.outputShape), args.norm);
  const need = firstStartWork(args.blocks, { input: sizeOf(args.inputShape), output: sizeOf(args.ir.outputShape) }, args.norm);
  if (args.budget >= need) return null;
  return `the work budget (${(args.budget / 1e6).toPrecision(3)} Mflop) does not cover the Jacobian search's first start (one model run and ${products} Jacobian products: ${(need / 1e6).toPrecision(3)} Mflop by the cost model)`;
}

/**
 * The pairs a budget short of the Jacobian search affords (budget / two model runs, at least one, at most `pairs`):
 * x ~ N(0, I) and x′ = x + h·d along a hint (the first operator's top right singular vector) or a random direction,
 * the step h = 10⁻²·‖x‖ as the search's confirmations take it. A step relative to ‖x‖ matters on large inputs: on
 * ResNet-50's 150 528 inputs a fixed 10⁻² step moves f less than the float32 output allowance and witnesses nothing.
 */
async function budgetPairs(args: LowerBoundArgs, reason: string): Promise<LowerBoundResult> {
  const evaluator = await args.backend.model({ what: 'the model (witness)' });
  if (!evaluator) return noPair(args, `${reason}; the backend cannot evaluate the model`, 0);
  try {
    const n = sizeOf(args.inputShape);
    const inf = args.norm === 'inf';
    const evaluation = searchCosts(args.blocks, n).evaluation;
    const pairs = Math.min(args.pairs ?? 64, Math.max(1, Math.floor(args.budget / (2 * evaluation))));
    const rng = new Random(args.seed ^ 0x4c4f5742);
    const hints = args.hints ?? [];
    let best = noPair(args, reason, 0);
    let evaluations = 0, nonFinite = 0;
    const run = async (x: Float32Array): Promise<Float64Array | null> => {
      evaluations++;
      const y = (await evaluator.run({ [args.inputName]: { dtype: 'float32', dims: args.inputShape, data: x } }, [args.outputName])).get(args.outputName)!;
      if (!isFloatType(y.dtype)) return null;
      const f = toFloat64(y);
      if (!allFinite(f)) { nonFinite++; return null; }
      return f;
    };
    for (let k = 0; k < pairs; k++) {
      const x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = rng.normal();
      const d = k < hints.length ? hints[k] : rng.unitVector(n);
      const step = FIXED_STEPS[0] * Math.max(normOf(x, inf), MIN_STEP_NORM) / Math.max(normOf(d, inf), 1e-300);
      const xPrime = new Float32Array(n);
      for (let i = 0; i < n; i++) xPrime[i] = x[i] + step * d[i];
      const fx = await run(x), fxPrime = fx && (await run(xPrime));
      if (!fx || !fxPrime) continue;
      const ratio = pairRatio(fx, fxPrime, x, xPrime, inf);
      if (Number.isFinite(ratio) && ratio > best.value) best = { ...best, value: ratio, x, xPrime };
    }
    return { ...best, evaluations, nonFinite, truncated: pairs < (args.pairs ?? 64), work: evaluations * evaluation, fallbackReason: reason };
  } finally {
    await evaluator.release();
  }
}

/** No pair measured (the reason says why). */
function noPair(args: LowerBoundArgs, reason: string, evaluations: number): LowerBoundResult {
  const x = new Float32Array(sizeOf(args.inputShape));
  return { value: 0, method: 'witness-pairs', x, xPrime: x, evaluations, products: 0, irNorm: null, irPoint: null, truncated: false, work: 0, nonFinite: 0, fallbackReason: reason };
}

async function fallback(args: LowerBoundArgs, reason: string): Promise<LowerBoundResult> {
  const evaluator = await args.backend.model({ what: 'the model (witness)' });
  if (!evaluator) return noPair(args, `${reason}; the backend cannot evaluate the model`, 0);
  try {
    // a non-float output (an index, a class) has no ratio to measure: one run at 0 tells
    const probe = await evaluator.run({ [args.inputName]: { dtype: 'float32', dims: args.inputShape, data: new Float32Array(sizeOf(args.inputShape)) } }, [args.outputName]);
    const dtype = probe.get(args.outputName)?.dtype;
    if (dtype && !isFloatType(dtype)) return noPair(args, `${reason}; output '${args.outputName}' has type ${dtype}, so no pair was measured`, 1);
    // the pairs the budget affords at the cost model's price of a run (the first pair always, as before budgets were counted)
    const evaluation = searchCosts(args.blocks, sizeOf(args.inputShape)).evaluation;
    const pairs = Math.min(args.pairs ?? 64, Math.max(1, Math.floor(args.budget / (2 * evaluation))));
    const w = await witnessLowerBound(evaluator, args.inputName, args.outputName, args.inputShape, {
      seed: args.seed, pairs, inf: args.norm === 'inf', hints: args.hints ?? [],
    });
    return { value: w.ratio, method: 'witness-pairs', x: w.x, xPrime: w.xPrime, evaluations: 1 + 2 * w.pairs, products: 0, irNorm: null, irPoint: null, truncated: pairs < (args.pairs ?? 64), work: (1 + 2 * w.pairs) * evaluation, nonFinite: w.nonFinite, fallbackReason: reason };
  } finally {
    await evaluator.release();
  }
}

interface Candidate { value: number; x: Float32Array; xPrime: Float32Array; irNorm: number; irPoint: Float32Array }

/** The random starts, the ascent and the confirmations, sharing one model session and the operators. */
class Search {
  private readonly n: number;
  private readonly rng: Random;
  private readonly jac: Jacobian;
  private evaluations = 0;
  private nonFinite = 0;
  private truncated = false;
  /** Work per step of the last walk (0 before any). */
  private stepWork = 0;
  private readonly costs: { product: number; evaluation: number };
  private best: Candidate;
  private readonly pools: (Step & { kind: 'maxpool' })[] = [];
  private readonly diags: (Step & { kind: 'diag' })[] = [];
  private readonly softmaxes: (Step & { kind: 'softmax' })[] = [];
  readonly plan: SearchPlan;

  constructor(private readonly args: LowerBoundArgs, steps: readonly Step[], fused: readonly Step[], private readonly runner: ModelEvaluator, private readonly wanted: readonly string[]) {
    this.n = sizeOf(args.inputShape);
    this.rng = new Random(args.seed ^ 0x4c4f5742);
    this.plan = planSearch(args.blocks, { input: this.n, output: sizeOf(args.ir.outputShape) }, args.norm, args.budget, args.starts, args.ascentSteps);
    this.costs = searchCosts(args.blocks, this.n);
    this.jac = new Jacobian(args.ir, steps, fused);
    for (const s of steps) {
      if (s.kind === 'maxpool') this.pools.push(s);
      if (s.kind === 'diag') this.diags.push(s);
      if (s.kind === 'softmax') this.softmaxes.push(s);
    }
    this.best = { value: 0, x: new Float32Array(this.n), xPrime: new Float32Array(this.n), irNorm: 0, irPoint: new Float32Array(this.n) };
  }

  /** Work charged so far by the cost model: every model run and every product with J(x). */
  private work(): number {
    return this.evaluations * this.costs.evaluation + this.jac.products * this.costs.product;
  }

  private overBudget(fraction = 1): boolean {
    const over = this.work() > fraction * this.args.budget;
    if (over) this.truncated = true;
    return over;
  }

  private async evaluate(x: Float32Array): Promise<Map<string, Tensor>> {
    this.evaluations++;
    return this.runner.run({ [this.args.inputName]: { dtype: 'float32', dims: this.args.inputShape, data: x } }, this.wanted);
  }

  /**
   * Runs the model at x and reads the Jacobian's ingredients off its values (activation and max-pool inputs, softmax
   * outputs); null (the point skipped and counted) when one is not finite: float32 overflow inside the model.
   */
  private async state(x: Float32Array): Promise<LocalState | null> {
    const values = await this.evaluate(x);
    for (const name of this.wanted) {
      const t = values.get(name);
      if (t && !allFinite(t.data as ArrayLike<number>)) { this.nonFinite++; return null; }
    }
    const value = (name: string) => (name === this.args.inputName ? Float64Array.from(x) : toFloat64(values.get(name)!));
    const slope = new Map<string, Slopes>();
    const argmax = new Map<string, { am: Int32Array; u: Float64Array }>();
    const softmax = new Map<string, Float64Array>();
    for (const { node, ew } of this.diags) slope.set(node.output, activationSlopes(ew, value(node.inputs[0]), null, BUMP_TAU));
    for (const { node } of this.softmaxes) softmax.set(node.output, value(node.output));
    for (const { node, windows } of this.pools) {
      const u = value(node.inputs[0]);
      argmax.set(node.output, { am: poolWinners(windows, u), u });
    }
    return { x, fx: toFloat64(values.get(this.args.outputName)!), slope, argmax, softmax };
  }

  /** The same point with each jump of an activation's derivative replaced by a logistic step of width τ. */
  private soften(s: LocalState, tauRel: number): LocalState {
    const slope = new Map<string, Slopes>();
    for (const { node, ew } of this.diags) slope.set(node.output, ew.kinked ? activationSlopes(ew, s.slope.get(node.output)!.u, tauRel, BUMP_TAU) : s.slope.get(node.output)!);
    return { ...s, slope };
  }

  /** ∇_x (wᵀ J(x) v) from the tangents of v and the cotangents of w (second derivatives of the activations only). */
  private async gradient(s: LocalState, tangents: Map<string, Float64Array>, cotangents: Map<string, Float64Array>): Promise<Float64Array> {
    const inject = new Map<string, Float64Array>();
    for (const b of this.args.blocks) {
      if (b.kind !== 'node' || b.node.kind !== 'activation') continue;
      const n = b.node;
      const t = tangents.get(n.inputs[0]), c = cotangents.get(n.output), d2 = s.slope.get(n.output)!.d2;
      if (!t || !c) continue;
      const g = new Float64Array(t.length);
      for (let i = 0; i < g.length; i++) g[i] = c[i] * t[i] * d2[i];
      const prev = inject.get(n.inputs[0]);
      if (prev) for (let i = 0; i < g.length; i++) prev[i] += g[i];
      else inject.set(n.inputs[0], g);
    }
    return this.jac.vjp(s, new Float64Array(sizeOf(this.args.ir.outputShape)), inject);
  }

  /** x ~ N(0, scale²I). */
  private randomStart(scale: number): Float32Array {
    const x = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) x[i] = scale * this.rng.normal();
    return x;
  }

  /**
   * How far x can move along +dir and −dir before an activation pattern changes (a unit crosses a kink — 0 for
   * ReLU-like ones, Clip's bounds — or a max-pool's winner changes): in a piecewise-linear network everything is affine
   * in the step until then, so the first crossing is exact.
   */
  private async safeSteps(s: LocalState, dir: Float64Array): Promise<{ fwd: number; bwd: number }> {
    const tangents = new Map<string, Float64Array>();
    await this.jac.jvp(s, dir, tangents);
    let fwd = Infinity, bwd = Infinity;
    const cross = (gap: number, rate: number) => {
      // a gap ≥ 0 that closes at `rate` per unit step (forward when rate > 0)
      if (rate > 0) fwd = Math.min(fwd, gap / rate);
      else if (rate < 0) bwd = Math.min(bwd, gap / -rate);
    };
    for (const { node, ew } of this.diags) {
      const t = tangents.get(node.inputs[0]), u = s.slope.get(node.output)!.u;
      if (!t || !ew.kinked) continue;
      for (let i = 0; i < u.length; i++) {
        for (const c of ew.kinks(i)) if (jumpAt(ew, c, i) !== 0) cross(Math.abs(u[i] - c), u[i] > c ? -t[i] : t[i]);
      }
    }
    for (const { node, windows: pool } of this.pools) {
      const mp = s.argmax.get(node.output)!;
      const t = tangents.get(node.inputs[0]);
      if (t) {
        for (let o = 0; o < mp.am.length; o++) {
          const a = mp.am[o];
          for (let k = 0; k < pool.taps; k++) { const j = pool.index[o * pool.taps + k]; if (j >= 0 && j !== a) cross(mp.u[a] - mp.u[j], t[j] - t[a]); }
        }
      }
    }
    // non-finite tangents (an overflowing product) give no segment: the fixed steps alone are tried
    return { fwd: fwd >= 0 ? fwd : 0, bwd: bwd >= 0 ? bwd : 0 };
  }

  /**
   * Pairs (x + a·dir, x + b·dir) through the original model: the longest segment through x on which no activation
   * pattern changes (where the IR's Jacobian holds exactly), and (x, x + 10⁻²·‖x‖·dir); keeps the best ratio.
   */
  private async confirm(s: LocalState, dir: Float64Array, irNorm: number): Promise<void> {
    const inf = this.args.norm === 'inf';
    const scale = Math.max(normOf(s.x, inf), 1e-3) / Math.max(normOf(dir, inf), 1e-300);
    const segments: [number, number][] = FIXED_STEPS.map((h) => [0, h * scale]);
    const { fwd, bwd } = await this.safeSteps(s, dir);
    let lo = -Math.min(SAFE_SHARE * bwd, MAX_STEP * scale), hi = Math.min(SAFE_SHARE * fwd, MAX_STEP * scale);
    // a segment too short would let float32 rounding of f dominate the difference: widen it about its middle
    const short = MIN_SEGMENT * scale - (hi - lo);
    if (short > 0) { lo -= short / 2; hi += short / 2; }
    segments.unshift([lo, hi]);
    const at = async (t: number): Promise<{ x: Float32Array; f: Float64Array } | null> => {
      if (t === 0) return { x: s.x, f: s.fx };
      const x = this.moved(s.x, dir, t);
      const f = toFloat64((await this.evaluate(x)).get(this.args.outputName)!);
      if (!allFinite(f)) { this.nonFinite++; return null; }
      return { x, f };
    };
    for (const [ta, tb] of segments) {
      const a = await at(ta), b = a && (await at(tb));
      if (!a || !b) continue;
      const ratio = pairRatio(a.f, b.f, a.x, b.x, inf);
      if (Number.isFinite(ratio) && ratio > this.best.value) this.best = { value: ratio, x: a.x, xPrime: b.x, irNorm, irPoint: s.x };
    }
  }

  private result(): LowerBoundResult {
    const b = this.best;
    return { value: b.value, method: 'jacobian-ascent', x: b.x, xPrime: b.xPrime, evaluations: this.evaluations, products: this.jac.products, irNorm: b.irNorm, irPoint: b.irPoint, truncated: this.truncated, work: this.work(), nonFinite: this.nonFinite, plan: this.plan };
  }

  /**
   * σ_max(J(x)) by Lanczos on JᵀJ from `start`: ‖Jv‖ for the Ritz vector v (what a pair along v can witness), and v;
   * null when the products overflow float32 there (the point is then skipped).
   */
  private async topSingular(s: LocalState, start: Float64Array, steps: number): Promise<{ sigma: number; v: Float64Array } | null> {
    const jac = this.jac;
    try {
      const res = await lanczosTop({ n: this.n, apply: (v) => jac.gram(s, v) }, {
        start: scaleInPlace(Float64Array.from(start), 1 / Math.max(norm2(start), 1e-300)),
        maxSteps: steps,
        stop: (theta, k, previous) => (k >= 3 && Math.abs(theta - previous) <= 1e-9 * theta) || this.overBudget(0.9),
        parallel: this.args.backend.parallel,
      });
      const v = scaleInPlace(Float64Array.from(res.ritzVector), 1 / Math.max(norm2(res.ritzVector), 1e-300));
      const sigma = norm2(await jac.jvp(s, v));
      return Number.isFinite(sigma) && allFinite(v) ? { sigma, v } : null;
    } catch (e) {
      if (e instanceof NonFiniteError) return null;
      throw e;
    }
  }

  /** The state at x with its top singular pair, or null when either is not finite. */
  private async point(x: Float32Array, start: Float64Array, steps: number): Promise<Point | null> {
    const s = await this.state(x);
    if (!s) return null;
    const top = await this.topSingular(s, start, steps);
    return top && { s, ...top };
  }

  /** The ℓ2 search: per round, the best of a few random starts, then a soft-gate walk; a greedy polish at the end. */
  async runL2(): Promise<LowerBoundResult> {
    let top: Point | null = null;
    // the first two rounds share a pool of 2·starts starts, one scale of the ladder each: round 0 walks from the
    // steepest, round 1 from the steepest at another scale
    const ladder = this.args.startScales ?? START_LADDER;
    const pool: { p: Point; scale: number }[] = [];
    for (let k = 0; k < 2 * this.plan.starts; k++) {
      if (k > 0 && this.overBudget(0.7)) break;
      const scale = ladder[k % ladder.length];
      const p = await this.point(this.randomStart(scale), this.rng.unitVector(this.n), this.plan.lanczos.start);
      if (p) pool.push({ p, scale });
    }
    pool.sort((a, b) => b.p.sigma - a.p.sigma);
    for (let r = 0; r < this.plan.rounds; r++) {
      if (r > 0 && this.overBudget(0.7)) break;
      let round: Point | null = null;
      if (r < 2) {
        round = (r === 0 ? pool[0] : pool.find((q) => q.scale !== pool[0].scale) ?? pool[1])?.p ?? null;
      } else {
        for (let k = 0; k < this.plan.starts; k++) {
          if (this.overBudget(0.7)) break;
          const p = await this.point(this.randomStart(START_SCALES[r % START_SCALES.length]), this.rng.unitVector(this.n), this.plan.lanczos.start);
          if (p && (!round || p.sigma > round.sigma)) round = p;
        }
      }
      if (!round) break;
      // a later walk that would not fit the budget left (at the first walk's measured cost per step) is shortened so that
      // it still anneals to the end, rather than being cut off mid-way
      const fit = r > 0 && this.stepWork > 0 ? Math.floor((0.7 * this.args.budget - this.work()) / this.stepWork) : this.plan.walkSteps;
      // (dist_shift_mnist_concat 8 365 → 10 858, collins_rul 152 → 156, seed 0)
      round = await this.softWalk(round, Math.max(5, Math.min(this.plan.walkSteps, fit)));
      await this.confirm(round.s, round.v, round.sigma);
      if (!top || round.sigma > top.sigma) top = round;
    }
    if (!top) return this.result();
    const polished = await this.polish(top);
    if (polished !== top) await this.confirm(polished.s, polished.v, polished.sigma);
    return this.result();
  }

  /**
   * Ascent on σ_max of the soft-gate Jacobian (ReLU gates σ(u/τ), τ annealed from 1 to 0.01 of each layer's RMS
   * pre-activation), a step of decaying length each time; the true σ_max(J(x)) is measured at every point, and the
   * best point seen is kept.
   */
  private async softWalk(from: Point, steps = this.plan.walkSteps): Promise<Point> {
    let best = from;
    let cur = from;
    const w0 = this.work();
    let k = 0;
    for (; k < steps; k++) {
      if (this.overBudget(0.7)) break;
      const t = k / steps;
      const soft = this.soften(cur.s, TAU_START * Math.pow(TAU_END / TAU_START, t));
      const top = await this.topSingular(soft, cur.v, this.plan.lanczos.warm);
      if (!top) break;
      const sp = { s: soft, ...top };
      const g = await this.ascentDirection(sp);
      if (!g) break;
      const next = await this.point(this.moved(cur.s.x, g, STEP_START * Math.pow(STEP_END / STEP_START, t) * Math.max(norm2(cur.s.x), MIN_STEP_NORM)), sp.v, this.plan.lanczos.warm);
      if (!next) break;
      cur = next;
      if (cur.sigma > best.sigma) best = cur;
    }
    if (k > 0) this.stepWork = (this.work() - w0) / k;
    return best;
  }

  /** Greedy steps on the true σ_max(J(x)): along the kink-smoothed gradient or ±v, the step grown on success and halved on failure. */
  private async polish(from: Point): Promise<Point> {
    let cur = from;
    let eta = POLISH_STEP;
    for (let k = 0; k < this.plan.polishSteps && eta > 1e-4; k++) {
      if (this.overBudget(0.9)) break;
      const g = await this.ascentDirection(cur);
      const dirs = [...(g ? [g] : []), cur.v, scaleInPlace(Float64Array.from(cur.v), -1)];
      let pick: { s: LocalState; proxy: number } | null = null;
      for (const d of dirs) {
        const s = await this.state(this.moved(cur.s.x, d, eta * Math.max(norm2(cur.s.x), 1)));
        if (!s) continue;
        // ‖J(x')v‖ ≤ σ_max(J(x')) ranks the candidates for one product each
        const proxy = norm2(await this.jac.jvp(s, cur.v));
        if (Number.isFinite(proxy) && (!pick || proxy > pick.proxy)) pick = { s, proxy };
      }
      const top = pick && (await this.topSingular(pick.s, cur.v, this.plan.lanczos.warm));
      if (pick && top && top.sigma > cur.sigma) { cur = { s: pick.s, ...top }; eta *= 1.5; } else eta *= 0.5;
    }
    return cur;
  }

  /** The unit ascent direction ∇_x(uᵀJ(x)v) at the current top singular pair, or null when it vanishes. */
  private async ascentDirection(cur: { s: LocalState; v: Float64Array }): Promise<Float64Array | null> {
    const tangents = new Map<string, Float64Array>(), cotangents = new Map<string, Float64Array>();
    const jv = await this.jac.jvp(cur.s, cur.v, tangents);
    await this.jac.vjp(cur.s, scaleInPlace(Float64Array.from(jv), 1 / Math.max(norm2(jv), 1e-300)), undefined, cotangents);
    const g = await this.gradient(cur.s, tangents, cotangents);
    const gn = norm2(g);
    return gn > 0 && Number.isFinite(gn) ? scaleInPlace(g, 1 / gn) : null;
  }

  /** x + step·dir (dir a unit vector), rounded to float32 as it will be fed. */
  private moved(x: Float32Array, dir: Float64Array, step: number): Float32Array {
    const out = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = x[i] + step * dir[i];
    return out;
  }

  /** The largest ℓ1 row norm of J(x) over `rows` (row i = J(x)ᵀe_i, one reverse sweep each). */
  private async topRow(s: LocalState, rows: readonly number[]): Promise<{ value: number; row: number; r: Float64Array }> {
    const m = sizeOf(this.args.ir.outputShape);
    let best: { value: number; row: number; r: Float64Array } = { value: -1, row: rows[0], r: new Float64Array(this.n) };
    for (const i of rows) {
      const e = new Float64Array(m);
      e[i] = 1;
      const r = await this.jac.vjp(s, e);
      let l1 = 0;
      for (let j = 0; j < r.length; j++) l1 += Math.abs(r[j]);
      if (l1 > best.value) best = { value: l1, row: i, r };
    }
    return best;
  }

  /** The ℓ∞ search: the largest ℓ1 row of J(x), rows chosen at random starts, then a soft-gate walk on that row. */
  async runInf(): Promise<LowerBoundResult> {
    const m = sizeOf(this.args.ir.outputShape);
    let top: RowPoint | null = null;
    for (let r = 0; r < this.plan.rounds; r++) {
      if (r > 0 && this.overBudget(0.7)) break;
      const rows = this.rowSample(m);
      let round: RowPoint | null = null;
      for (let k = 0; k < this.plan.starts; k++) {
        if ((r > 0 || k > 0) && this.overBudget(0.7)) break;
        const s = await this.state(this.randomStart(START_SCALES[r % START_SCALES.length]));
        if (!s) continue;
        const p = { s, ...(await this.topRow(s, rows)) };
        if (Number.isFinite(p.value) && (!round || p.value > round.value)) round = p;
      }
      if (!round) break;
      let cur = round;
      const steps = this.plan.walkSteps;
      for (let k = 0; k < steps; k++) {
        if (this.overBudget(0.7)) break;
        const t = k / steps;
        const soft = this.soften(cur.s, TAU_START * Math.pow(TAU_END / TAU_START, t));
        const e = new Float64Array(m);
        e[cur.row] = 1;
        // ∇_x e_iᵀJ(x)s with s = sign(row i of the soft Jacobian): the ascent direction of that row's ℓ1 norm
        const cotangents = new Map<string, Float64Array>(), tangents = new Map<string, Float64Array>();
        const softRow = await this.jac.vjp(soft, e, undefined, cotangents);
        await this.jac.jvp(soft, sign(softRow), tangents);
        const g = await this.gradient(soft, tangents, cotangents);
        const gn = norm2(g);
        if (!(gn > 0 && Number.isFinite(gn))) break;
        const s = await this.state(this.moved(cur.s.x, scaleInPlace(g, 1 / gn), STEP_START * Math.pow(STEP_END / STEP_START, t) * Math.max(norm2(cur.s.x), MIN_STEP_NORM)));
        if (!s) break;
        // every few steps the row is chosen again, otherwise only the current row is measured
        const next = { s, ...(await this.topRow(s, k % 10 === 9 ? rows : [cur.row])) };
        if (!Number.isFinite(next.value)) break;
        cur = next;
        if (cur.value > round.value) round = cur;
      }
      await this.confirm(round.s, sign(round.r), round.value);
      if (!top || round.value > top.value) top = round;
    }
    return this.result();
  }

  /** All output rows when there are few, else a seeded sample of them. */
  private rowSample(m: number): number[] {
    if (m <= MAX_ROWS) return [...Array(m).keys()];
    const pick = new Set<number>();
    while (pick.size < MAX_ROWS) pick.add(Math.floor(this.rng.next() * m));
    return [...pick].sort((a, b) => a - b);
  }
}
