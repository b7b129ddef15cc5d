import { sizeOf, toFloat64 } from '../ir/tensor.js';
import { Random } from '../linalg/random.js';
import { pairRatio } from '../linalg/witness.js';
import { solveLp } from '../linalg/lp.js';
import { reluNetOf, type ReluNet } from './exact.js';
import type { NormKind } from './kinds.js';
import type { AnalysedModel } from './lower-bound.js';

/** What {@link patternSearchLowerBound} needs. */
export interface PatternSearchArgs extends AnalysedModel {
  readonly seed: number;
  /** Points to start from (today's best point, the exact enumeration's best regions), before the random starts. */
  readonly seeds?: readonly ArrayLike<number>[];
  /** Network evaluations (float64, in JS) the walks may spend (default 2000); model runs for confirmation come on top (2 per walk). */
  readonly evaluations?: number;
  /** At most this many walks (default 400), seeds included. */
  readonly walks?: number;
  /** Standard deviations of the random starts, cycled (default SCALES). */
  readonly scales?: readonly number[];
}

/** A witnessed lower bound from the pattern walk, or why none was searched. */
export interface PatternSearchResult {
  /** The best confirmed pair's ratio through the original (float32) model, 0 when none. */
  readonly value: number;
  readonly x: Float32Array;
  readonly xPrime: Float32Array;
  /** ‖J‖ of the best region reached (through the network read back from the model; never reported as the bound). */
  readonly regionNorm: number;
  /** Network evaluations spent, and runs of the original model. */
  readonly work: number;
  readonly modelRuns: number;
  readonly reason?: string;
}

/** A point with everything the walk needs: pre-activations, their gradients, the Jacobian and its worst direction. */
export interface State {
  readonly x: Float64Array;
  /** Per hidden layer: pre-activations z and their Jacobians G = ∂z/∂x (rows × n, row-major). */
  readonly z: Float64Array[];
  readonly g: Float64Array[];
  /** Per hidden layer: ∂f/∂a (out × rows), to score a flip of each unit. */
  readonly back: Float64Array[];
  readonly J: Float64Array;
  readonly value: number;
  /** ℓ2: left/right top singular vectors; ℓ∞: e_row and the row's sign vector. */
  readonly u: Float64Array;
  readonly v: Float64Array;
}

const POWER_STEPS = 60;
/**
 * Standard deviations of the random starts, in turn: far out, where the biases hardly matter and the regions are
 * nearly the cones of the bias-free network. The steepest regions of acasxu_2_1 lie there (5 000 random samples: max
 * ‖J‖ 850 at 10⁴ against 200–270 at scales 1–100; walks from scales 1–30 stalled at 426), and rpd_gcas's too. Regions
 * near the origin are still reached: the first walk starts from the Jacobian ascent's point (and the exact
 * enumeration's seeds), and half the walks are kicks from the steepest point so far.
 */
const SCALES = [1e4, 1e3];
const KICKS = [0.03, 0.1, 0.3];
/**
 * Evaluations charged for one longest-segment LP (about the cost of a few network evaluations on these sizes), and the
 * most inputs for which it is tried (its rows are dense in the inputs: 2 per hidden unit × (n + 1) values).
 */
const CHORD_WORK = 4, CHORD_MAX_INPUTS = 64;
/**
 * Multiply-adds of one evaluation above which the evaluation budget shrinks in proportion: acasxu_2_1 takes 7.7e4,
 * marabou_tiny_taxinet 2.8e4, rpd_gcas 2.3e4, tll_n2_N16_1_0 1.3e4 (so 2000 evaluations take at most 2e9).
 */
export const PATTERN_EVALUATION_FLOP = 1e6;

/** Above this many inputs (and fewer outputs) the power iteration runs on the small Gram J·Jᵀ (out × out) instead. */
const WIDE_INPUTS = 32;

/**
 * {@link topSingular} for a wide J (out < n): the same power iteration on J·Jᵀ, formed once (out² · n products), started
 * from J·start; v = Jᵀu/‖Jᵀu‖ at the end. Each step then costs out² instead of 2·out·n (tiny_taxinet: 2 × 128).
 */
function topSingularWide(J: Float64Array, out: number, n: number, start: Float64Array): { s: number; u: Float64Array; v: Float64Array } {
  const K = new Float64Array(out * out);
  for (let a = 0; a < out; a++) for (let b = a; b < out; b++) { let t = 0; for (let j = 0; j < n; j++) t += J[a * n + j] * J[b * n + j]; K[a * out + b] = t; K[b * out + a] = t; }
  let u = new Float64Array(out);
  for (let i = 0; i < out; i++) { let t = 0; for (let j = 0; j < n; j++) t += J[i * n + j] * start[j]; u[i] = t; }
  if (u.every((t) => t === 0)) u[0] = 1;
  for (let it = 0; it < POWER_STEPS; it++) {
    const w = new Float64Array(out);
    for (let a = 0; a < out; a++) { let t = 0; for (let b = 0; b < out; b++) t += K[a * out + b] * u[b]; w[a] = t; }
    const nw = Math.hypot(...w);
    if (nw === 0) break;
    u = w.map((t) => t / nw);
  }
  const v = new Float64Array(n);
  for (let i = 0; i < out; i++) for (let j = 0; j < n; j++) v[j] += J[i * n + j] * u[i];
  const nv = Math.hypot(...v);
  if (nv > 0) for (let j = 0; j < n; j++) v[j] /= nv; else v.set(start);
  const ju = new Float64Array(out);
  for (let i = 0; i < out; i++) { let t = 0; for (let j = 0; j < n; j++) t += J[i * n + j] * v[j]; ju[i] = t; }
  const nu = Math.hypot(...ju);
  return { s: nu, u: ju.map((t) => (nu > 0 ? t / nu : 0)), v };
}

/** Top singular triplet of a small dense J (out × n) by power iteration on JᵀJ from a fixed start (float64). */
function topSingular(J: Float64Array, out: number, n: number, start: Float64Array): { s: number; u: Float64Array; v: Float64Array } {
  if (n > WIDE_INPUTS && out < n) return topSingularWide(J, out, n, start);
  let v = Float64Array.from(start);
  let s = 0;
  const u = new Float64Array(out);
  for (let it = 0; it < POWER_STEPS; it++) {
    for (let i = 0; i < out; i++) { let t = 0; for (let j = 0; j < n; j++) t += J[i * n + j] * v[j]; u[i] = t; }
    const w = new Float64Array(n);
    for (let i = 0; i < out; i++) for (let j = 0; j < n; j++) w[j] += J[i * n + j] * u[i];
    const nw = Math.hypot(...w);
    if (nw === 0) break;
    v = w.map((t) => t / nw);
    s = Math.sqrt(nw);
  }
  for (let i = 0; i < out; i++) { let t = 0; for (let j = 0; j < n; j++) t += J[i * n + j] * v[j]; u[i] = t; }
  const nu = Math.hypot(...u);
  return { s: nu, u: u.map((t) => (nu > 0 ? t / nu : 0)), v };
}

/** The network's Jacobian at x with the walk's bookkeeping (ℓ2: σ_max; ℓ∞: the largest row ℓ1 norm). Exported for tests. */
export function stateAt(net: ReluNet, x: Float64Array, norm: NormKind, vStart: Float64Array): State {
  const n = net.inputs;
  let a = x;
  // G = ∂a/∂x; the input's is the identity, never formed (the first layer's Gz is W itself, below)
  let G = new Float64Array(0);
  const zs: Float64Array[] = [], gs: Float64Array[] = [], ds: Float64Array[] = [];
  // rows of G that are zero (a unit with slope 0 on its side): their products would add only zeros
  let live: Uint8Array | null = null;
  net.layers.forEach((l, k) => {
    const z = new Float64Array(l.rows), Gz = k === 0 ? new Float64Array(l.w) : new Float64Array(l.rows * n);
    for (let i = 0; i < l.rows; i++) {
      let s = l.b[i];
      const oi = i * n;
      for (let j = 0; j < l.cols; j++) {
        const w = l.w[i * l.cols + j];
        if (w === 0) continue;
        s += w * a[j];
        // the first layer's G is the identity: Gz = W itself (the same values, without n² · rows products)
        if (k > 0 && live![j]) for (let c = 0, oj = j * n; c < n; c++) Gz[oi + c] += w * G[oj + c];
      }
      z[i] = s;
    }
    if (k < net.slopes.length) {
      const [lo, hi] = net.slopes[k];
      const d = z.map((v) => (v > 0 ? hi : lo));
      zs.push(z); gs.push(Gz); ds.push(d);
      a = z.map((v, i) => d[i] * v);
      G = new Float64Array(Gz.length);
      live = new Uint8Array(l.rows);
      for (let i = 0; i < l.rows; i++) {
        const di = d[i];
        if (di === 0) continue;
        live[i] = 1;
        for (let c = 0, o = i * n; c < n; c++) G[o + c] = di * Gz[o + c];
      }
    } else { a = z; G = Gz; }
  });
  const out = net.layers[net.layers.length - 1].rows;
  // backward: B_k = ∂f/∂a_k (out × rows_k), from B_last = W_last
  const back: Float64Array[] = new Array(zs.length);
  let B = new Float64Array(net.layers[net.layers.length - 1].w);
  for (let k = zs.length - 1; k >= 0; k--) {
    back[k] = B;
    if (k === 0) break;
    const l = net.layers[k], d = ds[k];
    const nb = new Float64Array(out * l.cols);
    for (let o = 0; o < out; o++) for (let i = 0; i < l.rows; i++) { const t = B[o * l.rows + i] * d[i]; if (t !== 0) for (let j = 0; j < l.cols; j++) nb[o * l.cols + j] += t * l.w[i * l.cols + j]; }
    B = nb;
  }
  if (norm === 'inf') {
    let row = 0, best = -1;
    for (let i = 0; i < out; i++) { let s = 0; for (let j = 0; j < n; j++) s += Math.abs(G[i * n + j]); if (s > best) { best = s; row = i; } }
    const u = new Float64Array(out); u[row] = 1;
    return { x, z: zs, g: gs, back, J: G, value: best, u, v: Float64Array.from({ length: n }, (_, j) => Math.sign(G[row * n + j]) || 1) };
  }
  const t = topSingular(G, out, n, vStart);
  return { x, z: zs, g: gs, back, J: G, value: t.s, u: t.u, v: t.v };
}

/**
 * Candidate moves: for every hidden unit whose flip would raise uᵀJv to first order (the gain (uᵀB_k)_i·(G_k v)_i
 * times the change of its slope), the step f·∇z_i (∇z_i = `row`, a view of s.g) that carries x just across its
 * hyperplane z_i = 0, largest gain first.
 */
function candidates(net: ReluNet, s: State): { f: number; row: Float64Array; dist: number }[] {
  const n = net.inputs;
  const out: { f: number; row: Float64Array; dist: number; gain: number }[] = [];
  const rowsOut = s.u.length;
  s.z.forEach((z, k) => {
    const [lo, hi] = net.slopes[k];
    const G = s.g[k], B = s.back[k];
    for (let i = 0; i < z.length; i++) {
      let ub = 0;
      for (let o = 0; o < rowsOut; o++) ub += s.u[o] * B[o * z.length + i];
      let gv = 0, g2 = 0;
      for (let c = 0; c < n; c++) { gv += G[i * n + c] * s.v[c]; g2 += G[i * n + c] ** 2; }
      const change = z[i] > 0 ? lo - hi : hi - lo;
      const gain = change * ub * gv;
      if (!(gain > 0) || g2 === 0) continue;
      const dist = Math.abs(z[i]) / Math.sqrt(g2);
      // across the plane: −z_i·∇z_i/‖∇z_i‖², plus 1% of the way (and a floor) so the new side is reached
      const f = (-z[i] / g2) * 1.01 - Math.sign(z[i]) * 1e-9 / Math.sqrt(g2);
      out.push({ f, row: G.subarray(i * n, (i + 1) * n), dist, gain });
    }
  });
  // largest first-order gain first (nearest first stalled sooner: acasxu 197–888 against 436–1 047 over seeds 0–3)
  return out.sort((a, b) => b.gain - a.gain || a.dist - b.dist);
}

/** How far x can move along ±dir without any unit changing sides (the network is affine there). Exported for tests. */
export function safeSteps(net: ReluNet, s: State, dir: Float64Array): { fwd: number; bwd: number } {
  const n = net.inputs;
  let fwd = Infinity, bwd = Infinity;
  s.z.forEach((z, k) => {
    const G = s.g[k];
    for (let i = 0; i < z.length; i++) {
      let r = 0;
      for (let c = 0; c < n; c++) r += G[i * n + c] * dir[c];
      if (r === 0 || z[i] === 0) continue;
      const t = -z[i] / r;
      if (t > 0) fwd = Math.min(fwd, t); else bwd = Math.min(bwd, -t);
    }
  });
  return { fwd, bwd };
}

/**
 * The longest segment along `dir` inside the region of s (every unit on its side): the LP
 *   max L  s.t.  s_i(z_i + g_i·δ) ≥ 0,  s_i(z_i + g_i·(δ + L·dir)) ≥ 0 (every hidden unit i),  |δ_j| ≤ box,  0 ≤ L ≤ cap
 * (rows scaled by 1/‖g_i‖), solved by HiGHS. Its answer is a hint: the pair on it is confirmed through the model.
 * Returns the segment's start x + δ and its length, or null when HiGHS gives no optimum. Exported for tests.
 */
export async function longestChord(s: State, dir: Float64Array, box: number, cap: number): Promise<{ a: Float64Array; length: number } | null> {
  const n = s.x.length;
  const starts: number[] = [0], indices: number[] = [], values: number[] = [], lower: number[] = [];
  s.z.forEach((z, k) => {
    const G = s.g[k];
    for (let i = 0; i < z.length; i++) {
      let g2 = 0, r = 0;
      for (let c = 0; c < n; c++) { g2 += G[i * n + c] ** 2; r += G[i * n + c] * dir[c]; }
      if (g2 === 0) continue;
      const side = z[i] > 0 ? 1 : -1, norm = Math.sqrt(g2);
      for (const withL of [false, true]) {
        if (withL && r === 0) continue;
        for (let c = 0; c < n; c++) if (G[i * n + c] !== 0) { indices.push(c); values.push((side * G[i * n + c]) / norm); }
        if (withL) { indices.push(n); values.push((side * r) / norm); }
        lower.push(-Math.abs(z[i]) / norm);
        starts.push(indices.length);
      }
    }
  });
  const rows = lower.length, cols = n + 1;
  const colLower = new Float64Array(cols).fill(-box), colUpper = new Float64Array(cols).fill(box), cost = new Float64Array(cols);
  colLower[n] = 0; colUpper[n] = cap; cost[n] = 1;
  const out = await solveLp({
    sense: 'max', colCost: cost, colLower, colUpper, rowLower: Float64Array.from(lower), rowUpper: new Float64Array(rows).fill(Infinity),
    starts: Int32Array.from(starts), indices: Int32Array.from(indices), values: Float64Array.from(values),
  }, 'choose');
  if (!out.optimal) return null;
  const v = out.colValue;
  return { a: Float64Array.from({ length: n }, (_, c) => s.x[c] + v[c]), length: v[n] };
}

/**
 * A witnessed lower bound that searches activation patterns (issue 12, item 4): from each start (the given seeds, then
 * in turn seeded random points at the scales SCALES (10⁴, 10³) and kicks of 3-30 % from the steepest point reached, until the
 * budget is spent) it walks to neighbouring linear regions — across the nearest hyperplane of a unit whose flip
 * raises ‖J‖ to first order — keeping a move only when the true ‖J‖ (σ_max in ℓ2, the largest row ℓ1 norm in ℓ∞) of the
 * region reached grows; up to 8 candidates per step, largest first-order gain first. Each walk's end is CONFIRMED by a pair inside its
 * region (along the worst direction, 95% of the segment on which no unit changes sides) run through the original model;
 * when that segment is too short for float32 to resolve (walks end just across a hyperplane), the longest segment along
 * the same direction anywhere in the region (an LP: {@link longestChord}) gives a second pair. The value is that pair's ratio (float32 evaluations, their rounding allowance deducted) — never ‖J‖ itself.
 * For dense ReLU/LeakyReLU chains (the network read back by exact.ts); deterministic for a seed (budget in evaluations).
 */
export async function patternSearchLowerBound(args: PatternSearchArgs): Promise<PatternSearchResult> {
  const n = sizeOf(args.inputShape);
  const empty = (reason: string): PatternSearchResult => ({ value: 0, x: new Float32Array(n), xPrime: new Float32Array(n), regionNorm: 0, work: 0, modelRuns: 0, reason });
  const net = reluNetOf(args.ir, args.blocks);
  if (typeof net === 'string') return empty(net);
  // an evaluation carries the Jacobian (n columns) through every layer after the first: n + 1 multiply-adds per weight;
  // above PATTERN_EVALUATION_FLOP of those the budget in evaluations shrinks in proportion (a wide conv net read back
  // densely would otherwise take minutes)
  const perEvaluation = net.layers.reduce((a, l, k) => a + (k === 0 ? 1 : n + 1) * l.w.reduce((c, w) => c + (w !== 0 ? 1 : 0), 0), 0);
  const budget = Math.floor((args.evaluations ?? 2000) * Math.min(1, PATTERN_EVALUATION_FLOP / Math.max(1, perEvaluation)));
  if (budget < 1) return empty(`an evaluation of the network's Jacobian takes ${perEvaluation.toExponential(2)} multiply-adds, too many for the search's budget`);
  const walks = args.walks ?? 400;
  const rng = new Random(args.seed ^ 0x70617474);
  const vStart = rng.unitVector(n);
  const seeds = (args.seeds ?? []).map((p) => Float64Array.from(p));
  // after the seeds, in turn: a random start at the next scale of SCALES, and a kick from the steepest point reached so far
  // (Gaussian noise of 3, 10 or 30 % of its norm), until the budget is spent
  let top: { x: Float64Array; value: number } | null = null;
  const startAt = (k: number): Float64Array => {
    if (k < seeds.length) return seeds[k];
    const r = k - seeds.length;
    if (r % 2 === 1 && top) {
      const s = KICKS[((r - 1) / 2) % KICKS.length] * Math.max(Math.hypot(...top.x), 1);
      return top.x.map((v) => v + s * rng.normal());
    }
    const scales = args.scales ?? SCALES;
    return Float64Array.from({ length: n }, () => rng.normal() * scales[(r >> 1) % scales.length]);
  };
  let work = 0, modelRuns = 0;
  let best: PatternSearchResult = empty('');
  // a float32 evaluator is never declined
  const runner = (await args.backend.model({ what: 'the model (pattern search)' }))!;
  const inf = args.norm === 'inf';
  try {
    const run = async (x: Float32Array) => { modelRuns++; return toFloat64((await runner.run({ [args.inputName]: { dtype: 'float32', dims: args.inputShape, data: x } }, [args.outputName])).get(args.outputName)!); };
    for (let k = 0; work < budget && k < walks; k++) {
      const x0 = startAt(k);
      if (x0.length !== n) continue;
      let cur = stateAt(net, x0, args.norm, vStart);
      work++;
      for (let step = 0; work < budget; step++) {
        let moved = false;
        for (const c of candidates(net, cur).slice(0, 8)) {
          if (work >= budget) break;
          const next = stateAt(net, cur.x.map((v, i) => v + c.f * c.row[i]), args.norm, cur.v);
          work++;
          if (next.value > cur.value * (1 + 1e-12)) { cur = next; moved = true; break; }
        }
        if (!moved) break;
      }
      if (!top || cur.value > top.value) top = { x: cur.x, value: cur.value };
      // confirm inside the region reached, along its worst direction
      const vNorm = Math.max(Math.hypot(...cur.v), 1e-300);
      const dir = cur.v.map((t) => t / vNorm);
      const { fwd, bwd } = safeSteps(net, cur, dir);
      const scale = Math.max(Math.hypot(...cur.x), 1);
      let lo = -Math.min(0.95 * bwd, 0.1 * scale), hi = Math.min(0.95 * fwd, 0.1 * scale);
      const short = 1e-4 * scale - (hi - lo);
      if (short > 0) { lo -= short / 2; hi += short / 2; }
      const xa = Float32Array.from(cur.x, (v, i) => v + lo * dir[i]), xb = Float32Array.from(cur.x, (v, i) => v + hi * dir[i]);
      if (xa.every((v, i) => v === xb[i])) continue;
      const ratio = pairRatio(await run(xa), await run(xb), xa, xb, inf);
      if (Number.isFinite(ratio) && ratio > best.value) best = { value: ratio, x: xa, xPrime: xb, regionNorm: cur.value, work, modelRuns, reason: undefined };
      // a walk ends just across a hyperplane, often where the region is thin along dir: the longest segment along dir
      // anywhere in the region (an LP), when the pair above fell short of a region that could beat the best
      if (!inf && n <= CHORD_MAX_INPUTS && cur.value > best.value * (1 + 1e-6) && ratio < cur.value * 0.999) {
        const chord = await longestChord(cur, dir, scale, 0.2 * scale);
        work += CHORD_WORK;
        if (chord && chord.length > 0) {
          const ya = Float32Array.from(chord.a, (v, i) => v + 0.02 * chord.length * dir[i]), yb = Float32Array.from(chord.a, (v, i) => v + 0.98 * chord.length * dir[i]);
          const r2 = pairRatio(await run(ya), await run(yb), ya, yb, inf);
          if (Number.isFinite(r2) && r2 > best.value) best = { value: r2, x: ya, xPrime: yb, regionNorm: cur.value, work, modelRuns, reason: undefined };
        }
      }
    }
  } finally {
    await runner.release();
  }
  return { ...best, work, modelRuns };
}
