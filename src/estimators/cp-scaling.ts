import { LipcheckError } from '../errors.js';
import type { OperatorBackend, LinearOperator } from '../ir/operator.js';
import type { LinearRegion } from '../ir/merge.js';
import { sizeOf } from '../ir/tensor.js';
import type { ActivationNode, LinearNode, Shape } from '../ir/types.js';
import { norm2, Random } from '../linalg/random.js';
import { regionFlop } from '../linalg/work.js';
import { cpLevels, cpSegmentBound, type CpResult, type Segment } from './cp.js';
import type { NormSettings } from './operator-norm.js';

/**
 * Combettes–Pesquet on a diagonally rescaled segment (docs/algorithms-cp-scaling.md). For positive per-channel
 * scalings Δ_k at each activation, the chain W'_1 = Δ_1⁻¹W_1, W'_k = Δ_k⁻¹W_kΔ_{k−1}, W'_m = W_mΔ_{m−1} has the same
 * relaxation as the segment: W'_m D_{m−1}⋯D_1 W'_1 = W_m D_{m−1}⋯D_1 W_1 for every diagonal D_k (diagonals commute),
 * and it is the same function with activations u ↦ Δ_k⁻¹σ_k(Δ_k u) of the same slope ranges. So CP on it bounds the
 * segment for every Δ, while its partial products ‖Δ_b⁻¹W_b⋯W_aΔ_{a−1}‖ (inner scalings cancel) change with Δ: the
 * scalings are chosen to lower CP's estimate, and only the chosen chain is measured with bounds.
 */

/** |log δ| at most this (δ within e^±8 ≈ 3·10³: the descents measured stay within e^±0.8), so no scaling pushes float32 products toward overflow. */
const LOG_SCALE_CAP = 8;

/**
 * The descent gives up after STALL_AFTER steps that gained less than STALL_GAIN of CP's estimate: light/bvlc_alexnet
 * (all weights equal, nothing to balance) took 26 s instead of 8.7 s without it, 12.6 s with it.
 */
const STALL_AFTER = 3;
const STALL_GAIN = 0.01;

/** What scaledCpBound found: the CP result on the rescaled segment, and how the scalings were chosen. */
export interface ScaledCp {
  readonly cp: CpResult;
  /** CP's estimate with Δ = I and with the chosen Δ (the descent's own power-iteration values). */
  readonly before: number;
  readonly after: number;
  readonly iterations: number;
  /** Counted work of the descent (flop of the cost model: products with the segment's operators). */
  readonly work: number;
}

/** The broadcast shape of a per-channel factor for a value of shape `shape`: [1, C, 1, …] (axis 1 is the channel, or the feature of [1, F]). */
function channelDims(shape: Shape): number[] {
  return shape.map((d, i) => (i === 1 ? d : 1));
}

/** Channels and the elements per channel of a value of `shape` (axis 1; a rank-1 value is one channel per element). */
export function channelsOf(shape: Shape): { channels: number; inner: number } {
  if (shape.length < 2) return { channels: sizeOf(shape), inner: 1 };
  return { channels: shape[1], inner: sizeOf(shape.slice(2)) };
}

/** Whether a segment can be rescaled per channel: every activation value has a batch of 1 and its channels on axis 1. */
export function scalable(segment: Segment): boolean {
  return segment.activations.every((a) => a.outShape.length >= 2 && a.outShape[0] === 1);
}

/** y = x ⊙ factor (per channel), as a linear node of the IR. */
function scaleNode(name: string, input: string, output: string, shape: Shape, factor: Float32Array): LinearNode {
  return { kind: 'linear', name, opType: 'Mul', inputs: [input], inShapes: [shape], output, outShape: shape, prim: { op: 'scale', factor: { dtype: 'float32', dims: channelDims(shape), data: factor } } };
}

/**
 * The segment with region k preceded by Δ_{k−1} and followed by Δ_k⁻¹ (float32 factors b = fround(δ), a = fround(1/δ)
 * per channel), and its activations' slope ranges widened so that they cover what the inexact inverses leave: the
 * rescaled chain is W_{k+1}·diag(a·b)·X·W_k around activation k, so the original D_k is X = D_k/(a·b), within
 * |D_k|·e of D_k for e = max |1/(a·b) − 1| (a·b is exact in float64: two 24-bit mantissas), and the range
 * [lo − e·M, hi + e·M] (M = max(|lo|, |hi|)) covers every such X. Ordinal offset by 4096: its own seeds.
 */
export function rescaledSegment(segment: Segment, delta: readonly Float64Array[]): Segment {
  const m = segment.regions.length;
  const b = delta.map((d) => Float32Array.from(d));
  const a = b.map((d) => Float32Array.from(d, (x) => 1 / x));
  const regions: LinearRegion[] = segment.regions.map((r, k) => {
    const nodes: LinearNode[] = [];
    let input = r.input;
    if (k > 0) {
      const shape = segment.activations[k - 1].outShape;
      nodes.push(scaleNode(`${r.id}~scale-in`, r.input, `${r.input}~scaled`, shape, b[k - 1]));
      input = `${r.input}~scaled`;
    }
    for (const n of r.nodes) nodes.push(n.inputs.includes(r.input) ? { ...n, inputs: n.inputs.map((i) => (i === r.input ? input : i)) } : n);
    let output = r.output;
    if (k < m - 1) {
      output = `${r.output}~scaled`;
      nodes.push(scaleNode(`${r.id}~scale-out`, r.output, output, r.outShape, a[k]));
    }
    return { id: `${r.id}~scaled`, input: r.input, inShape: r.inShape, output, outShape: r.outShape, nodes };
  });
  const activations: ActivationNode[] = segment.activations.map((act, k) => {
    let e = 0;
    for (let c = 0; c < b[k].length; c++) e = Math.max(e, Math.abs(1 / (a[k][c] * b[k][c]) - 1));
    // the division and subtraction above round: 4 units of float64 on top
    e = e * (1 + 2 ** -50) + 2 ** -52;
    const [lo, hi] = act.slope;
    const big = Math.max(Math.abs(lo), Math.abs(hi));
    return { ...act, slope: [lo - e * big, hi + e * big] as const };
  });
  return { ...segment, id: `${segment.id}~scaled`, ordinal: segment.ordinal + 4096, regions, activations };
}

/** CP's recursion on partial norms N[a][b] (regions a..b; cp.ts cpLevels) and its gradient with respect to them (reverse mode). */
function cpRecursion(N: readonly number[][], slopes: readonly (readonly [number, number])[]): { value: number; dN: number[][] } {
  const m = N.length;
  const L = cpLevels(slopes, (i, j) => N[i][j]);
  const c = slopes.map(([lo, hi]) => Math.abs((lo + hi) / 2)), r = slopes.map(([lo, hi]) => (hi - lo) / 2);
  const cs = (i: number, j: number) => { let p = 1; for (let k = i; k < j; k++) p *= c[k]; return p; };
  const dL = new Array<number>(m).fill(0);
  dL[m - 1] = 1;
  const dN = N.map((row) => row.map(() => 0));
  for (let j = m - 1; j >= 0; j--) {
    dN[0][j] += dL[j] * cs(0, j);
    for (let i = 0; i < j; i++) {
      dN[i + 1][j] += dL[j] * cs(i + 1, j) * r[i] * L[i];
      dL[i] += dL[j] * cs(i + 1, j) * r[i] * N[i + 1][j];
    }
  }
  return { value: L[m - 1], dN };
}

/**
 * Per-channel scalings that lower CP's estimate on `segment`: descendLogScales on log δ, each partial norm
 * ‖Δ_b⁻¹W_b⋯W_aΔ_{a−1}‖ by `steps` power steps (powerPair) warm-started from the previous iteration (the operators'
 * float32 products: an estimate, which is all a choice needs), its gradient from the top singular pair (u, v):
 * ∂/∂log δ_{a−1,i} = (Pᵀu)_i·v_i, ∂/∂log δ_{b,i} = −u_i·(Pv)_i, summed over each channel's elements; CP's recursion is
 * differentiated in reverse. The work counted is the flop of the products.
 */
export async function chooseScalings(segment: Segment, backend: OperatorBackend, opts: { readonly iterations: number; readonly steps: number; readonly budget: number; readonly seed: number }): Promise<{ delta: Float64Array[]; before: number; after: number; iterations: number; work: number }> {
  const m = segment.regions.length;
  const ops: LinearOperator[] = [];
  try {
    for (const r of segment.regions) ops.push(await backend.operator(r));
    const flop = segment.regions.map((r) => regionFlop(r));
    let work = 0;
    const logd = segment.activations.map((act) => new Float64Array(channelsOf(act.outShape).channels));
    const inner = segment.activations.map((act) => channelsOf(act.outShape).inner);
    const rng = new Random(opts.seed);
    const warm = new Map<number, Float64Array>();
    const { expand, scaled } = channelScaler(logd, inner);
    const partial = async (a: number, b: number, steps: number) => {
      const fwd = async (x: Float64Array) => {
        let y = a > 0 ? scaled(x, a - 1, 1) : x;
        for (let k = a; k <= b; k++) y = await ops[k].apply(y);
        return b < m - 1 ? scaled(y, b, -1) : y;
      };
      const bwd = async (y: Float64Array) => {
        let x = b < m - 1 ? scaled(y, b, -1) : y;
        for (let k = b; k >= a; k--) x = await ops[k].adjoint(x);
        return a > 0 ? scaled(x, a - 1, 1) : x;
      };
      const { sigma, w, vt, pv, u } = await powerPair(fwd, bwd, warm.get(a * m + b) ?? Float64Array.from({ length: ops[a].inSize }, () => rng.normal()), steps);
      for (let k = a; k <= b; k++) work += 2 * steps * flop[k];
      warm.set(a * m + b, w);
      // σ = uᵀ·P·vt with P = Δ_b⁻¹·W_b⋯W_a·Δ_{a−1}: ∂σ/∂log δ_{a−1,i} = (Pᵀu)_i·vt_i, ∂σ/∂log δ_{b,i} = −u_i·(P·vt)_i
      const ok = u.length > 0 && sigma > 0;
      const gIn = a > 0 && ok ? channelProducts(w, vt, inner[a - 1], 1) : null;
      const gOut = b < m - 1 && ok ? channelProducts(u, pv, inner[b], -1) : null;
      return { sigma, gIn, gOut };
    };
    const evaluate = async (steps: number) => {
      expand();
      const N = Array.from({ length: m }, () => new Array<number>(m).fill(0));
      const G: ({ gIn: Float64Array | null; gOut: Float64Array | null } | null)[][] = Array.from({ length: m }, () => new Array(m).fill(null));
      for (let a = 0; a < m; a++) for (let b = a; b < m; b++) { const p = await partial(a, b, steps); N[a][b] = p.sigma; G[a][b] = p; }
      const { value, dN } = cpRecursion(N, segment.activations.map((x) => x.slope));
      const grad = logd.map((d) => new Float64Array(d.length));
      for (let a = 0; a < m; a++) for (let b = a; b < m; b++) {
        const g = G[a][b]!;
        if (g.gIn) g.gIn.forEach((x, i) => { grad[a - 1][i] += dN[a][b] * x; });
        if (g.gOut) g.gOut.forEach((x, i) => { grad[b][i] += dN[a][b] * x; });
      }
      return { value, grad };
    };
    // one evaluation's work: every partial product a..b, `steps` applications forward and back
    let perIteration = 0;
    for (let a = 0; a < m; a++) for (let b = a; b < m; b++) for (let k = a; k <= b; k++) perIteration += 2 * opts.steps * flop[k];
    const { before, after, iterations } = await descendLogScales(logd, evaluate, { ...opts, perIteration, work: () => work });
    return { delta: logd.map((d) => d.map(Math.exp)), before, after, iterations, work };
  } finally {
    for (const op of ops) await op.dispose();
  }
}

/**
 * `steps` power steps on P (fwd) and Pᵀ (bwd) from the unnormalised input w: vt the last unit input, pv = P·vt,
 * σ = ‖pv‖, u = pv/σ, w = Pᵀu (the next start). With P = Δ_t⁻¹·M·Δ_s, ∂σ/∂log δ_{s,i} = w_i·vt_i and
 * ∂σ/∂log δ_{t,i} = −u_i·pv_i (an estimate's gradient: vt and u are the top singular pair's approximations).
 */
export async function powerPair(fwd: (x: Float64Array) => Promise<Float64Array>, bwd: (y: Float64Array) => Promise<Float64Array>, start: Float64Array, steps: number): Promise<{ sigma: number; w: Float64Array; vt: Float64Array; pv: Float64Array; u: Float64Array }> {
  let w = start;
  let vt: Float64Array = new Float64Array(0), pv: Float64Array = new Float64Array(0), u: Float64Array = new Float64Array(0);
  for (let t = 0; t < steps; t++) {
    const nw = norm2(w);
    if (!(nw > 0)) break;
    vt = new Float64Array(w.length);
    for (let i = 0; i < w.length; i++) vt[i] = w[i] / nw;
    pv = await fwd(vt);
    const s = norm2(pv);
    if (!(s > 0)) break;
    u = new Float64Array(pv.length);
    for (let i = 0; i < pv.length; i++) u[i] = pv[i] / s;
    w = await bwd(u);
  }
  return { sigma: norm2(pv), w, vt, pv, u };
}

/**
 * Gradient descent on log-scalings `logd` (changed in place) of an estimate `evaluate(steps)` gives with its gradient:
 * a step is kept only where the recomputed estimate falls; the step length grows by 1.2 after a kept step and halves
 * after a rejected one, whose old point is then measured again (few power steps lag: without that, an estimate that
 * was low only for lack of steps would reject every later step). The first evaluation takes 3 × `steps`. Stops after
 * `iterations`, when the step length falls below 10⁻³, after STALL_AFTER steps that gained less than STALL_GAIN, or
 * before an iteration whose `perIteration` work would take `work()` past `budget` (a rejected step's re-measurement
 * may then pass it by one evaluation). |log δ| stays within LOG_SCALE_CAP.
 */
export async function descendLogScales(logd: Float64Array[], evaluate: (steps: number) => Promise<{ value: number; grad: Float64Array[] }>, opts: { readonly iterations: number; readonly steps: number; readonly budget: number; readonly perIteration: number; readonly work: () => number }): Promise<{ before: number; after: number; iterations: number }> {
  let cur = await evaluate(3 * opts.steps);
  const before = cur.value;
  let eta = 0.3, it = 0;
  for (; it < opts.iterations && opts.work() + opts.perIteration <= opts.budget; it++) {
    if (!Number.isFinite(cur.value) || !(cur.value > 0)) break;
    // stagnation: less than STALL_GAIN gained after STALL_AFTER steps (channels already balanced, e.g. equal weights)
    if (it === STALL_AFTER && cur.value > before * (1 - STALL_GAIN)) break;
    const old = logd.map((d) => Float64Array.from(d));
    logd.forEach((d, k) => d.forEach((x, i) => { d[i] = Math.max(-LOG_SCALE_CAP, Math.min(LOG_SCALE_CAP, x - (eta * cur.grad[k][i]) / cur.value)); }));
    const next = await evaluate(opts.steps);
    if (next.value < cur.value) { cur = next; eta *= 1.2; continue; }
    // rejected: back to the old point, re-measured there (its warm vectors have had more steps since, and an
    // estimate that only lagged would otherwise reject every later step); the counted work includes it
    logd.forEach((d, k) => d.set(old[k]));
    eta *= 0.5;
    if (eta < 1e-3) break;
    cur = await evaluate(opts.steps);
  }
  return { before, after: cur.value, iterations: it };
}

/**
 * The scalings exp(±log δ) of `logd` (δ per group of `inner` elements at each scaled value k) expanded to every
 * element by `expand` (once per evaluation of a descent: logd changes between them), and `scaled(x, k, ±1)`: x times
 * them, element by element.
 */
export function channelScaler(logd: readonly Float64Array[], inner: readonly number[]): { expand: () => void; scaled: (x: Float64Array, k: number, sign: 1 | -1) => Float64Array } {
  let up: Float64Array[] = [], down: Float64Array[] = [];
  const grow = (sign: 1 | -1) => logd.map((d, k) => expandScale(d, inner[k], sign));
  return {
    expand: () => { up = grow(1); down = grow(-1); },
    scaled: (x, k, sign) => times(x, sign > 0 ? up[k] : down[k]),
  };
}

/**
 * exp(sign·logd) expanded to every element (each of logd's groups to its `inner` consecutive elements). Shared, not to
 * be written: the last EXPANSIONS_KEPT expansions are kept and handed out again for the same logd values, inner and
 * sign (compared value by value, one per group: cheap beside the expansion), since a descent's maps read the same
 * values' scalings many times in one round.
 */
export function expandScale(logd: Float64Array, inner: number, sign: 1 | -1): Float64Array {
  const hit = expansions.find((e) => e.sign === sign && e.inner === inner && e.logd.length === logd.length && e.logd.every((x, i) => x === logd[i]));
  if (hit) return hit.out;
  const out = new Float64Array(logd.length * inner);
  for (let i = 0; i < out.length; i++) out[i] = Math.exp(sign * logd[Math.floor(i / inner)]);
  expansions.unshift({ logd: Float64Array.from(logd), inner, sign, out });
  if (expansions.length > EXPANSIONS_KEPT) expansions.pop();
  return out;
}
const EXPANSIONS_KEPT = 32;
const expansions: { readonly logd: Float64Array; readonly inner: number; readonly sign: 1 | -1; readonly out: Float64Array }[] = [];

/** x ⊙ f in a new array (a loop: the descents scale every vector they apply, and a closure per element costs). */
export function times(x: Float64Array, f: Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * f[i];
  return out;
}

/** Σ over each channel's `inner` consecutive elements of sign·a_i·b_i. */
export function channelProducts(a: Float64Array, b: Float64Array, inner: number, sign: 1 | -1): Float64Array {
  const out = new Float64Array(a.length / inner);
  for (let i = 0; i < a.length; i++) out[Math.floor(i / inner)] += sign * a[i] * b[i];
  return out;
}

/**
 * CP on the segment rescaled by chooseScalings' Δ (rescaledSegment): a bound for the segment itself, certified or
 * probabilistic as cpSegmentBound's, with its own seeds. Null where the segment cannot be rescaled or the descent
 * found nothing lower than CP's own estimate.
 */
export async function scaledCpBound(segment: Segment, settings: NormSettings, opts: { readonly budget: number; readonly iterations?: number; readonly steps?: number }): Promise<ScaledCp | null> {
  if (!scalable(segment) || settings.norm !== '2') return null;
  const chosen = await chooseScalings(segment, settings.backend, { iterations: opts.iterations ?? 60, steps: opts.steps ?? 8, budget: opts.budget, seed: settings.seed + 104_729 * (segment.ordinal + 1) });
  if (!(chosen.after < chosen.before * (1 - STALL_GAIN))) return null;
  const scaledSeg = rescaledSegment(segment, chosen.delta);
  let cp: CpResult;
  try {
    cp = await cpSegmentBound(scaledSeg, settings);
  } catch (e) {
    // a rescaled product that overflows float32 (UNSUPPORTED from productLanczos) costs the rescaled bound only: the
    // plain CP, already measured, stands
    if (e instanceof LipcheckError && e.code === 'UNSUPPORTED') return null;
    throw e;
  }
  return { cp, before: chosen.before, after: chosen.after, iterations: chosen.iterations, work: chosen.work };
}
