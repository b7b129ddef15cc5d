import type { Block } from '../ir/merge.js';
import type { ModelEvaluator } from '../ir/operator.js';
import type { IrGraph } from '../ir/types.js';
import { sizeOf, toFloat64 } from '../ir/tensor.js';
import { denseSpectralNormExact, gamma, roundUp, sqrtUp } from '../linalg/dense.js';
import { gordanCertificate, maxMarginPoint, type DyadicVec } from '../linalg/lp.js';
import { denseSingularTriplets } from '../linalg/top-singular.js';
import { pairRatio } from '../linalg/witness.js';
import { EXACT_TOLERANCE, evaluateNet, evaluationError, exactOf, exactVec, reluNetOf, type AffineLayer, type ExactResult, type ReluNet } from './exact.js';
import type { NormKind } from './kinds.js';
import type { AnalysedModel } from './lower-bound.js';

/**
 * Exact Lipschitz constants (ℓ2, ℓ∞) of ReLU/LeakyReLU networks with any number of inputs by branch and bound over
 * activation patterns (docs/algorithms-bab.md). A node fixes the states of a layer-ordered prefix of the hidden units;
 * its upper bound is a certified bound on ‖J‖ over every pattern extending it (interval Jacobian, midpoint–radius, with
 * float64 rounding carried); its region {s_i z_i(x, t) ≥ 0} is a polyhedral cone in the homogenised input (x, t), whose
 * interior points HiGHS finds; a node is dropped as unrealisable only through a Gordan certificate checked exactly.
 * Leaves (every unit fixed) give the pattern's certified ‖J‖ and, from an interior point, a pair confirmed through the
 * original model: the witnessed lower bound. Work is counted in cells (a node's bound 1, an LP 20), never timed.
 */

/** Cells one LP solve counts in the budget (a node's bound counts 1). */
export const LP_CELLS = 20;

/** Hidden units of a network (the branching variables). */
export function hiddenUnits(net: ReluNet): number {
  return net.layers.slice(0, -1).reduce((a, l) => a + l.rows, 0);
}

/** The homogeneous rows of one affine layer's outputs as functions of (x, t), given the states of the layers before. */
interface Ctx {
  readonly k: number;
  /** rows × (n+1), row-major: z_i(x, t) = R_i·(x, t), float64. */
  readonly R: Float64Array;
  /** Entrywise bound on |R − exact|. */
  readonly E: Float64Array;
  readonly parent: Ctx | null;
  /** States of layer k − 1 that produced this layer's rows (null for k = 0). */
  readonly parentStates: Int8Array | null;
  /** Exact rows, computed only when a certificate needs them (null: not available exactly). */
  exact?: DyadicVec[] | null;
}

/** A node of the search: the states of layers < k and of units < j of layer k (1: slope hi, −1: slope lo, 2: zero row). */
interface Node {
  readonly ctx: Ctx;
  readonly j: number;
  readonly states: Int8Array;
  /** A point (x, t) with every fixed s_i z_i > 0 and t > 0, or null when none is known (an unproved-empty region). */
  point: Float64Array | null;
  upper: number;
  /** No LP has looked at this node's region yet (its parent's point is on the other side). */
  unchecked?: boolean;
  /** Leaf only: the float64 Jacobian (out × n) and the plain estimate of its norm. */
  J?: Float64Array;
  estimate?: number;
  /** Set aside: the LP found no interior point; its rows and the LP's multipliers for the certificate. */
  empty?: { readonly at: [Ctx, number, number][]; readonly duals: Float64Array };
}

/** What {@link babSearch} found. */
export interface BabSearch {
  readonly complete: boolean;
  /** Certified: max over the leaves reached and the open nodes' bounds (a bound on L whether or not complete). */
  readonly upper: number;
  readonly lower: number;
  readonly pair: { readonly x: Float64Array; readonly xPrime: Float64Array } | null;
  readonly leaves: number;
  readonly nodes: number;
  readonly lps: number;
  /** Regions dropped by a verified Gordan certificate. */
  readonly provedEmpty: number;
  /** LP optima at margin 0 whose certificate could not be verified (the node was kept). */
  readonly unprovedEmpty: number;
  readonly work: number;
  /** Interior points (input coordinates) of the best leaves, best first. */
  readonly seeds: readonly Float64Array[];
}

/** Confirms a pair through the model: its witnessed ratio (a lower bound on L) or 0. */
export type Confirm = (x: Float64Array, xPrime: Float64Array) => Promise<number>;

const TINY = Number.MIN_VALUE;

/**
 * The branch and bound over the activation patterns of `net` (pure: the confirmations come through `confirm`). Stops when
 * every node is resolved (complete) or `budget` cells are spent; the upper bound is certified either way.
 */
export async function babSearch(net: ReluNet, norm: NormKind, budget: number, confirm: Confirm): Promise<BabSearch> {
  const n = net.inputs;
  const L = net.layers.length;
  const hidden = net.layers.slice(0, -1).map((l) => l.rows);
  const offsets: number[] = [];
  hidden.reduce((a, r) => { offsets.push(a); return a + r; }, 0);
  const total = hiddenUnits(net);
  const inf = norm === 'inf';
  let work = 0, lps = 0, nodes = 0, leaves = 0, provedEmpty = 0, unprovedEmpty = 0;

  const l0 = net.layers[0];
  const root: Ctx = { k: 0, ...homogeneous(l0, n), parent: null, parentStates: null };
  const slopeOf = (k: number, s: number) => (s === -1 ? net.slopes[k][0] : net.slopes[k][1]);

  /** The rows of layer k + 1 once every unit of layer k is fixed. */
  const nextCtx = (ctx: Ctx, states: Int8Array): Ctx => {
    const k = ctx.k;
    const st = states.subarray(offsets[k], offsets[k] + hidden[k]);
    const { R, E } = propagate(net.layers[k + 1], ctx.R, ctx.E, n, (j) => (st[j] === 2 ? 0 : slopeOf(k, st[j])));
    return { k: k + 1, R, E, parent: ctx, parentStates: Int8Array.from(st) };
  };

  /** The fixed constraint rows s_i·R_i of a node (float64), with where each comes from. */
  const constraints = (ctx: Ctx, states: Int8Array, upto: number): { rows: Float64Array[]; at: [Ctx, number, number][] } => {
    const rows: Float64Array[] = [], at: [Ctx, number, number][] = [];
    for (let c: Ctx | null = ctx; c; c = c.parent) {
      if (c.k >= L - 1) continue;
      const m = c === ctx ? upto : hidden[c.k];
      for (let j = 0; j < m; j++) {
        const s = states[offsets[c.k] + j];
        if (s !== 1 && s !== -1) continue;
        rows.push(c.R.subarray(j * (n + 1), (j + 1) * (n + 1)).map((v) => v * s));
        at.push([c, j, s]);
      }
    }
    return { rows, at };
  };

  const exactRows = (ctx: Ctx): DyadicVec[] | null => {
    if (ctx.exact !== undefined) return ctx.exact;
    if (!ctx.parent) ctx.exact = exactHomogeneous(net.layers[0], n);
    else {
      const prev = exactRows(ctx.parent);
      const k = ctx.parent.k;
      ctx.exact = prev && exactPropagate(net.layers[ctx.k], prev, n, (j) => (ctx.parentStates![j] === 2 ? 0 : slopeOf(k, ctx.parentStates![j])));
    }
    return ctx.exact;
  };

  const bound = (node: Node): number => {
    work++;
    nodes++;
    const { ctx, states, j } = node;
    if (ctx.k === L - 1) {
      const rows = net.layers[L - 1].rows;
      const C = new Float64Array(rows * n), Rad = new Float64Array(rows * n);
      for (let i = 0; i < rows; i++) for (let c = 0; c < n; c++) { C[i * n + c] = ctx.R[i * (n + 1) + c]; Rad[i * n + c] = ctx.E[i * (n + 1) + c]; }
      node.J = C;
      const nb = normBound(C, Rad, rows, n, norm);
      node.estimate = nb.estimate;
      return nb.upper;
    }
    // D_k: fixed units their slope, free ones (index ≥ j) any slope in [lo, hi]
    const k = ctx.k;
    const units = hidden[k];
    let C: Float64Array = new Float64Array(units * n), Rad: Float64Array = new Float64Array(units * n);
    const [lo, hi] = net.slopes[k];
    for (let u = 0; u < units; u++) {
      const s = u < j ? states[offsets[k] + u] : 0;
      for (let c = 0; c < n; c++) {
        const r = ctx.R[u * (n + 1) + c], e = ctx.E[u * (n + 1) + c];
        if (s === 2) continue;
        if (s !== 0) { const sl = slopeOf(k, s); C[u * n + c] = sl * r; Rad[u * n + c] = roundUp(Math.abs(sl) * e + Math.abs(sl * r) * 2 ** -53, 1); } else { setFree(C, Rad, u * n + c, r, e, lo, hi); }
      }
    }
    let rows = units;
    for (let l = k + 1; l < L; l++) {
      const layer = net.layers[l];
      ({ C, Rad } = multiply(layer, C, Rad, rows, n));
      rows = layer.rows;
      if (l < L - 1) {
        const [a, b] = net.slopes[l];
        for (let q = 0; q < rows * n; q++) setFree(C, Rad, q, C[q], Rad[q], a, b);
      }
    }
    const nb = normBound(C, Rad, rows, n, norm);
    node.estimate = nb.estimate;
    return nb.upper;
  };

  const heap = new MaxHeap<Node>((a, b) => a.upper - b.upper);
  const rootNode: Node = { ctx: L === 1 ? root : root, j: 0, states: new Int8Array(total), point: null, upper: 0 };
  rootNode.upper = bound(rootNode);
  heap.push(rootNode);
  let leafMax = 0;
  let lower = 0;
  /** Children whose LP found no interior point: dropped only once proved empty. */
  const pending: Node[] = [];
  let pair: BabSearch['pair'] = null;
  const bestLeaves: { estimate: number; x: Float64Array }[] = [];

  const isLeaf = (node: Node) => node.ctx.k === L - 1;

  /** The node's children after fixing unit j of layer k (none when both sides are proved empty). */
  const expand = async (node: Node): Promise<Node[]> => {
    const { ctx, j } = node;
    const k = ctx.k;
    const g = ctx.R.subarray(j * (n + 1), (j + 1) * (n + 1));
    const ge = ctx.E.subarray(j * (n + 1), (j + 1) * (n + 1));
    const after = (states: Int8Array, point: Float64Array | null): Node => {
      const complete = j + 1 === hidden[k];
      const child: Node = complete ? { ctx: nextCtx(ctx, states), j: 0, states, point, upper: 0 } : { ctx, j: j + 1, states, point, upper: 0 };
      child.upper = bound(child);
      return child;
    };
    if (g.every((v) => v === 0) && ge.every((v) => v === 0)) {
      // z_j ≡ 0 on the region: its slope changes neither the value nor the Jacobian; one child
      const states = Int8Array.from(node.states);
      states[offsets[k] + j] = 2;
      return [after(states, node.point)];
    }
    const out: Node[] = [];
    for (const s of [1, -1]) {
      const states = Int8Array.from(node.states);
      states[offsets[k] + j] = s;
      // the parent's interior point, when it is strictly on this side (float64 dot product with its error bound)
      if (node.point) {
        let dot = 0, abs = 0, err = 0;
        for (let c = 0; c <= n; c++) { dot += g[c] * node.point[c]; abs += Math.abs(g[c] * node.point[c]); err += ge[c] * Math.abs(node.point[c]); }
        if (s * dot > roundUp(gamma(n + 2) * abs + err, 2)) { out.push(after(states, node.point)); continue; }
      }
      // the other side is checked by an LP only when the search gets to it
      const child = after(states, null);
      child.unchecked = true;
      out.push(child);
    }
    return out;
  };

  /** The LP of a node not yet checked: an interior point, or set aside as empty (false), or kept without a point. */
  const check = async (node: Node): Promise<boolean> => {
    node.unchecked = false;
    const { rows, at } = constraints(node.ctx, node.states, node.j);
    work += LP_CELLS;
    lps++;
    const r = await maxMarginPoint(rows, n);
    if (r.status === 'interior') {
      if (interiorOk(rows, r.point, n)) node.point = r.point;
      return true;
    }
    if (r.status === 'empty') {
      // set aside: its certificate is checked only if its bound could matter ({@link settle})
      node.empty = { at, duals: r.duals };
      if (node.upper > leafMax) pending.push(node);
      return false;
    }
    return true;
  };

  const leaf = async (node: Node): Promise<void> => {
    leaves++;
    leafMax = Math.max(leafMax, node.upper);
    if (!node.point || !node.J || !(node.estimate! > lower)) return;
    const rowsOut = net.layers[L - 1].rows;
    const t = node.point[n];
    const x = Float64Array.from(node.point.subarray(0, n), (v) => v / t);
    const dir = worstDirection(node.J, rowsOut, n, inf);
    const { rows } = constraints(node.ctx, node.states, 0);
    const scale = 1 + x.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    let fwd = 1e3 * scale, bwd = 1e3 * scale;
    for (const g of rows) {
      let v0 = g[n], dv = 0;
      for (let c = 0; c < n; c++) { v0 += g[c] * x[c]; dv += g[c] * dir[c]; }
      if (dv === 0 || v0 <= 0) continue;
      const h = v0 / Math.abs(dv);
      if (dv < 0) fwd = Math.min(fwd, h); else bwd = Math.min(bwd, h);
    }
    const a = x.map((v, i) => Math.fround(v - 0.9 * bwd * dir[i])), b = x.map((v, i) => Math.fround(v + 0.9 * fwd * dir[i]));
    const ratio = await confirm(a, b);
    bestLeaves.push({ estimate: node.estimate!, x });
    if (ratio > lower) { lower = ratio; pair = { x: a, xPrime: b }; }
  };

  /** A set-aside node's Gordan certificate, recovered from its LP's multipliers and checked exactly. */
  const certified = (node: Node): boolean => {
    const ex = node.empty!.at.map(([c, u, sg]) => {
      const e = exactRows(c);
      if (!e) return null;
      const row = e[u];
      return { m: row.m.map((v) => v * BigInt(sg)), e: row.e };
    });
    return ex.every((v) => v !== null) && gordanCertificate(ex as DyadicVec[], node.empty!.duals, n) !== null;
  };

  /**
   * The set-aside nodes whose bound is above every other bound: each is proved empty (dropped) or, failing that, reopened
   * as an ordinary node without an interior point. Returns whether any was reopened. Each check counts LP_CELLS.
   */
  const settle = (): boolean => {
    let reopened = false;
    for (;;) {
      let top = leafMax;
      for (const v of heap.values()) top = Math.max(top, v.upper);
      let bi = -1;
      for (let i = 0; i < pending.length; i++) if (pending[i].upper > top && (bi < 0 || pending[i].upper > pending[bi].upper)) bi = i;
      if (bi < 0 || work >= budget) return reopened;
      const node = pending.splice(bi, 1)[0];
      work += LP_CELLS;
      if (certified(node)) { provedEmpty++; continue; }
      unprovedEmpty++;
      node.empty = undefined;
      heap.push(node);
      reopened = true;
    }
  };

  for (;;) {
  while (heap.size && work < budget) {
    let node = heap.pop()!;
    if (node.upper <= leafMax) continue;
    if (node.unchecked && !(await check(node))) continue;
    // dive: follow the child with the larger bound, keep the others
    while (!isLeaf(node)) {
      const children = await expand(node);
      if (!children.length) { node = null as unknown as Node; break; }
      // follow the child with the larger bound whose region is not empty (an LP decides for an unchecked one; past the
      // budget only a child with a point is followed); keep the others
      children.sort((p, q) => q.estimate! - p.estimate! || (q.point ? 1 : 0) - (p.point ? 1 : 0));
      let next: Node | null = null;
      for (const c of children) {
        if (c.upper <= leafMax) continue;
        if (next || (c.unchecked && work >= budget)) { heap.push(c); continue; }
        if (c.unchecked && !(await check(c))) continue;
        next = c;
      }
      if (!next) { node = null as unknown as Node; break; }
      node = next;
    }
    if (node) await leaf(node);
  }
  if (!settle()) break;
  }
  let upper = leafMax;
  // open nodes and set-aside ones not proved empty keep their bounds; those ≤ leafMax do not change the max
  const open = [...heap.values(), ...pending];
  for (const v of open) upper = Math.max(upper, v.upper);
  const complete = open.every((v) => v.upper <= leafMax);
  bestLeaves.sort((p, q) => q.estimate - p.estimate);
  return { complete, upper, lower, pair, leaves, nodes, lps, provedEmpty, unprovedEmpty, work, seeds: bestLeaves.slice(0, 8).map((b) => b.x) };
}

/** The first layer's rows [W | b] with their error bounds (the read-back's). */
function homogeneous(l: AffineLayer, n: number): { R: Float64Array; E: Float64Array } {
  const R = new Float64Array(l.rows * (n + 1)), E = new Float64Array(l.rows * (n + 1));
  for (let i = 0; i < l.rows; i++) {
    for (let c = 0; c < n; c++) { R[i * (n + 1) + c] = l.w[i * n + c]; E[i * (n + 1) + c] = l.we[i * n + c]; }
    R[i * (n + 1) + n] = l.b[i]; E[i * (n + 1) + n] = l.be[i];
  }
  return { R, E };
}

/**
 * The next layer's homogeneous rows W·diag(s)·R + [0 | b] in float64 with an entrywise error bound: for each entry the
 * computed sum of at most cols + 1 products of three factors has |error| ≤ γ_{cols+3}·Σ|w s r| (Higham §3.1), plus the
 * propagated |w s|·E and the weights' own bounds; the bound itself is computed from non-negative terms and rounded up.
 */
function propagate(l: AffineLayer, R: Float64Array, E: Float64Array, n: number, slope: (j: number) => number): { R: Float64Array; E: Float64Array } {
  const w = n + 1;
  const R2 = new Float64Array(l.rows * w), E2 = new Float64Array(l.rows * w);
  const g = gamma(l.cols + 3);
  const acc = new Float64Array(w), abs = new Float64Array(w), err = new Float64Array(w);
  for (let i = 0; i < l.rows; i++) {
    acc.fill(0); abs.fill(0); err.fill(0);
    acc[n] = l.b[i]; abs[n] = Math.abs(l.b[i]); err[n] = l.be[i];
    for (let j = 0; j < l.cols; j++) {
      const s = slope(j);
      const ws = l.w[i * l.cols + j] * s;
      const we = l.we[i * l.cols + j] * Math.abs(s);
      if (ws === 0 && we === 0) continue;
      const aws = Math.abs(ws);
      for (let c = 0; c < w; c++) {
        const r = R[j * w + c], e = E[j * w + c];
        acc[c] += ws * r;
        abs[c] += aws * Math.abs(r);
        err[c] += aws * e + we * (Math.abs(r) + e);
      }
    }
    for (let c = 0; c < w; c++) {
      R2[i * w + c] = acc[c];
      E2[i * w + c] = abs[c] === 0 && err[c] === 0 ? 0 : roundUp(err[c] + g * abs[c], l.cols + 4) + TINY;
    }
  }
  return { R: R2, E: E2 };
}

/** Midpoint–radius product of a slope d ∈ [lo, hi] with r ± e, written at q. */
function setFree(C: Float64Array, Rad: Float64Array, q: number, r: number, e: number, lo: number, hi: number): void {
  const m = (lo + hi) / 2, h = (hi - lo) / 2;
  C[q] = m * r;
  Rad[q] = roundUp(Math.abs(m) * e + h * (Math.abs(r) + e) + Math.abs(m * r) * 2 ** -52, 3);
}

/** W·(C ± Rad) ⊂ WC ± (|W|Rad + γ|W||C| + |W_err|(|C| + Rad)), every bound rounded up. */
function multiply(l: AffineLayer, C: Float64Array, Rad: Float64Array, rows: number, n: number): { C: Float64Array; Rad: Float64Array } {
  const C2 = new Float64Array(l.rows * n), R2 = new Float64Array(l.rows * n);
  const g = gamma(rows + 2);
  for (let i = 0; i < l.rows; i++) {
    for (let c = 0; c < n; c++) {
      let s = 0, a = 0, e = 0;
      for (let j = 0; j < rows; j++) {
        const wv = l.w[i * rows + j], we = l.we[i * rows + j];
        const cv = C[j * n + c], rv = Rad[j * n + c];
        s += wv * cv;
        const aw = Math.abs(wv);
        a += aw * Math.abs(cv);
        e += aw * rv + we * (Math.abs(cv) + rv);
      }
      C2[i * n + c] = s;
      R2[i * n + c] = a === 0 && e === 0 ? 0 : roundUp(e + g * a, rows + 4) + TINY;
    }
  }
  return { C: C2, Rad: R2 };
}

/**
 * max ‖J‖ over J ∈ C ± Rad: ℓ2: ‖C‖₂ (certified, dense.ts) + ‖Rad‖_F ≥ ‖C‖₂ + ‖|J − C|‖₂; ℓ∞: max row sum of |C| + Rad.
 * The estimate is the float64 ‖C‖ (leaves: the pattern's ‖J‖).
 */
function normBound(C: Float64Array, Rad: Float64Array, rows: number, n: number, norm: NormKind): { upper: number; estimate: number } {
  if (norm === 'inf') {
    let up = 0, est = 0;
    for (let i = 0; i < rows; i++) {
      let s = 0, t = 0;
      for (let c = 0; c < n; c++) { s += Math.abs(C[i * n + c]) + Rad[i * n + c]; t += Math.abs(C[i * n + c]); }
      up = Math.max(up, s); est = Math.max(est, t);
    }
    return { upper: roundUp(up, 2 * n + 2), estimate: est };
  }
  const nb = denseSpectralNormExact(C, rows, n);
  let f2 = 0;
  for (let q = 0; q < rows * n; q++) f2 += Rad[q] * Rad[q];
  return { upper: roundUp(nb.value + (f2 > 0 ? sqrtUp(roundUp(f2, rows * n)) : 0), 1), estimate: nb.estimate };
}

/** True when every row is strictly positive at v (float64 with a margin for its rounding) and t > 0. */
function interiorOk(rows: readonly Float64Array[], v: Float64Array, n: number): boolean {
  if (!(v[n] > 0)) return false;
  const g = gamma(n + 2);
  return rows.every((r) => {
    let s = 0, a = 0;
    for (let c = 0; c <= n; c++) { s += r[c] * v[c]; a += Math.abs(r[c] * v[c]); }
    return s > roundUp(g * a, 2);
  });
}

/** The input direction of largest stretch: top right singular vector (ℓ2) or the sign vector of the largest row (ℓ∞). */
function worstDirection(J: Float64Array, rows: number, n: number, inf: boolean): Float64Array {
  if (inf) {
    let bi = 0, bv = -1;
    for (let i = 0; i < rows; i++) { let s = 0; for (let c = 0; c < n; c++) s += Math.abs(J[i * n + c]); if (s > bv) { bv = s; bi = i; } }
    return Float64Array.from({ length: n }, (_, c) => Math.sign(J[bi * n + c]) || 1);
  }
  const t = denseSingularTriplets(J, rows, n, 1);
  return t.right.length ? t.right[0] : Float64Array.from({ length: n }, (_, c) => (c === 0 ? 1 : 0));
}

// ---------------------------------------------------------------------------------------------------------------
// exact rows (only for certificates)

function exactHomogeneous(l: AffineLayer, n: number): DyadicVec[] | null {
  if (l.we.some((v) => v !== 0) || l.be.some((v) => v !== 0)) return null;
  const out: DyadicVec[] = [];
  for (let i = 0; i < l.rows; i++) out.push(exactVec([...l.w.subarray(i * n, (i + 1) * n), l.b[i]]));
  return out;
}

/** W·diag(s)·R + [0 | b] in exact dyadic arithmetic; null when the layer's values carry error bounds. */
function exactPropagate(l: AffineLayer, prev: readonly DyadicVec[], n: number, slope: (j: number) => number): DyadicVec[] | null {
  if (l.we.some((v) => v !== 0) || l.be.some((v) => v !== 0)) return null;
  const sl = prev.map((_, j) => exactOf(slope(j)));
  const out: DyadicVec[] = [];
  for (let i = 0; i < l.rows; i++) {
    const terms: { m: bigint; e: number }[][] = Array.from({ length: n + 1 }, () => []);
    for (let j = 0; j < l.cols; j++) {
      const wv = l.w[i * l.cols + j];
      if (wv === 0 || sl[j].m === 0n) continue;
      const w = exactOf(wv);
      const m = w.m * sl[j].m, e = w.e + sl[j].e + prev[j].e;
      for (let c = 0; c <= n; c++) if (prev[j].m[c] !== 0n) terms[c].push({ m: m * prev[j].m[c], e });
    }
    terms[n].push(exactOf(l.b[i]));
    const parts = terms.map((ts) => {
      const nz = ts.filter((t) => t.m !== 0n);
      if (!nz.length) return { m: 0n, e: 0 };
      const e0 = Math.min(...nz.map((t) => t.e));
      let m = 0n;
      for (const t of nz) m += t.m << BigInt(t.e - e0);
      return { m, e: e0 };
    });
    const nz = parts.filter((p) => p.m !== 0n);
    const e0 = nz.length ? Math.min(...nz.map((p) => p.e)) : 0;
    out.push({ m: parts.map((p) => (p.m === 0n ? 0n : p.m << BigInt(p.e - e0))), e: e0 });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

class MaxHeap<T> {
  private a: T[] = [];
  constructor(private readonly cmp: (x: T, y: T) => number) {}
  get size(): number { return this.a.length; }
  values(): T[] { return this.a; }
  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) { const p = (i - 1) >> 1; if (this.cmp(a[i], a[p]) <= 0) break; [a[i], a[p]] = [a[p], a[i]]; i = p; }
  }
  pop(): T | undefined {
    const a = this.a;
    if (!a.length) return undefined;
    const top = a[0], last = a.pop()!;
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.cmp(a[l], a[m]) > 0) m = l;
        if (r < a.length && this.cmp(a[r], a[m]) > 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the estimator

/** What {@link reluBranchAndBound} needs. */
export interface BabArgs extends AnalysedModel {
  /** Cells the search may spend (a node's bound 1, an LP solve LP_CELLS); default 200 000. */
  readonly budget?: number;
}

/** Under `best`, the search runs on ReLU/LeakyReLU chains with at most this many inputs (the LPs' dimension)… */
export const BAB_BEST_MAX_INPUTS = 16;
/** …and at most this many hidden units (its nodes' bounds cost about units × width × inputs each). */
export const BAB_BEST_MAX_UNITS = 400;

/** Why `best` does not run the branch and bound on this model (its cheap size test), or null when it does. */
export function babObstacle(ir: IrGraph, blocks: readonly Block[]): string | null {
  // the input size first: reading a wide network back in error-tracked float64 is not free
  const inputs = sizeOf(ir.inputShape);
  if (inputs > BAB_BEST_MAX_INPUTS) return `the input has ${inputs} elements (best runs the branch and bound up to ${BAB_BEST_MAX_INPUTS})`;
  const net = reluNetOf(ir, blocks);
  if (typeof net === 'string') return net;
  if (net.inputs > BAB_BEST_MAX_INPUTS) return `the input has ${net.inputs} elements (best runs the branch and bound up to ${BAB_BEST_MAX_INPUTS})`;
  const units = hiddenUnits(net);
  if (units > BAB_BEST_MAX_UNITS) return `the network has ${units} hidden units (best runs the branch and bound up to ${BAB_BEST_MAX_UNITS})`;
  return null;
}

/** The branch and bound's result in the exact enumeration's shape, with its own counts. */
export interface BabResult extends ExactResult {
  readonly search: BabSearch | null;
}

/**
 * The exact Lipschitz constant (ℓ2 or ℓ∞) of a ReLU/LeakyReLU chain with any number of inputs ({@link babSearch}),
 * witnessed by pairs inside the best leaves run through the original model widened to float64 (ratio less a rigorous
 * evaluation-error bound; the float32 model's ratio where the model cannot be widened). `exact` when the search finished
 * and its certified max meets the witnessed lower within 1e-6 relative; otherwise `bracket` with the certified upper it
 * reached (the max of the open nodes' bounds and the leaves' norms).
 */
export async function reluBranchAndBound(args: BabArgs): Promise<BabResult> {
  const none = (reason: string): BabResult => ({ status: 'unsupported', reason, upper: null, lower: 0, pair: null, lower32: null, regions: 0, work: 0, inexactSplits: 0, evaluations: 0, seeds: [], search: null });
  const n = sizeOf(args.inputShape);
  const net = reluNetOf(args.ir, args.blocks);
  if (typeof net === 'string') return none(net);
  const runner64 = await args.backend.model({ precision: 'float64', what: 'the model in float64 (branch-and-bound witness)', onDecline: () => {} });
  let runner32: ModelEvaluator;
  try {
    runner32 = (await args.backend.model({ what: 'the model (branch-and-bound witness)' }))!;
  } catch (e) {
    await runner64?.release();
    throw e;
  }
  let evaluations = 0;
  try {
    const run64 = async (x: Float64Array) => { evaluations++; return (await runner64!.run({ [args.inputName]: { dtype: 'float64', dims: args.inputShape, data: x } }, [args.outputName])).get(args.outputName)!.data as Float64Array; };
    const run32 = async (x: Float32Array) => { evaluations++; return toFloat64((await runner32.run({ [args.inputName]: { dtype: 'float32', dims: args.inputShape, data: x } }, [args.outputName])).get(args.outputName)!); };
    const inf = args.norm === 'inf';
    // the read-back (offsets especially) must reproduce the model: three points through the model
    for (const q of [0, 1, 2]) {
      const x = Float64Array.from({ length: n }, (_, i) => (q === 0 ? 0 : Math.fround(Math.sin(1.3 * (i + 1) * q) * 0.8)));
      const want = evaluateNet(net, x);
      const got = runner64 ? await run64(x) : await run32(Float32Array.from(x));
      const tol = (runner64 ? 1e-9 : 1e-4) * (1 + want.reduce((a, v) => Math.max(a, Math.abs(v)), 0)) + evaluationError(net, x);
      if (got.length !== want.length || want.some((v, i) => Math.abs(v - got[i]) > tol)) return none('the affine layers read back from the model do not reproduce its outputs');
    }
    const confirm: Confirm = async (a, b) => {
      if (runner64) {
        const [fa, fb] = [await run64(a), await run64(b)];
        const num = normOf(fa.map((v, i) => fb[i] - v), inf) - (evaluationError(net, a) + evaluationError(net, b));
        const den = normOf(b.map((v, i) => v - a[i]), inf);
        return den > 0 ? Math.max(0, num) / den : 0;
      }
      const xa = Float32Array.from(a), xb = Float32Array.from(b);
      return pairRatio(await run32(xa), await run32(xb), xa, xb, inf);
    };
    const s = await babSearch(net, args.norm, args.budget ?? 200_000, confirm);
    let lower32: ExactResult['lower32'] = null;
    if (s.pair) {
      const xa = Float32Array.from(s.pair.x), xb = Float32Array.from(s.pair.xPrime);
      lower32 = { value: pairRatio(await run32(xa), await run32(xb), xa, xb, inf), x: xa, xPrime: xb };
    }
    const exact = s.complete && s.lower > 0 && s.upper <= s.lower * (1 + EXACT_TOLERANCE);
    const method = `relu-bab(${s.leaves} leaves, ${s.lps} LPs${s.complete ? '' : ', budget reached'})`;
    return {
      status: exact ? 'exact' : 'bracket',
      reason: s.complete ? undefined : `the branch and bound stopped after ${s.work} cells (its budget) with ${s.leaves} leaves reached`,
      upper: { value: s.upper, kind: exact ? 'exact' : 'certified', method },
      lower: s.lower, pair: s.pair, lower32, regions: s.leaves, work: s.work, inexactSplits: s.unprovedEmpty, evaluations, seeds: s.seeds, search: s,
    };
  } finally {
    await runner64?.release();
    await runner32.release();
  }
}

function normOf(v: ArrayLike<number>, inf: boolean): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s = inf ? Math.max(s, Math.abs(v[i])) : s + v[i] * v[i];
  return inf ? s : Math.sqrt(s);
}
