import { LipcheckError } from '../errors.js';
import type { Block, LinearRegion } from '../ir/merge.js';
import { sizeOf } from '../ir/tensor.js';
import type { ActivationNode, IrGraph, IrNode, LinearNode, LinearPrim, Shape } from '../ir/types.js';
import { roundUp } from '../linalg/dense.js';
import { regionFlop } from '../linalg/work.js';
import { cheapBound } from './cp.js';
import { weakestKind, type Bound, type BoundKind } from './kinds.js';
import { mapInLanes } from './lanes.js';
import { budgetBasis, float32Unit, kwUpper, laneWidth, measureRegion, ritzMethod, type NormSettings, type OperatorNorm, type ProductError } from './operator-norm.js';
import { foldsExactly, gammaOf } from './region-bounds.js';

/**
 * The Combettes–Pesquet expansion of a whole graph (docs/algorithms-residual.md §6, `graphCpBound`), and the same
 * expansion on the graph rescaled per unit or channel at its activations (docs/algorithms-cp-scaling.md §5; the
 * scalings are chosen by graph-cp-scaling.ts).
 */

const sameShape = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Most expanded activations graphCpBound plans for: it forms up to (N + 1)² linearised maps, each O(graph) to build. */
export const GRAPH_CP_MAX_ACTIVATIONS = 64;

/** Why the whole-graph expansion (graphCpBound) cannot run on a block list, or null. */
export function graphCpObstacle(ir: IrGraph, blocks: readonly Block[]): string | null {
  let spread = 0;
  for (const b of blocks) {
    if (b.kind === 'operator') continue;
    const n = b.node;
    // a broadcasting sum's adjoint reduces over the broadcast axes: a rounding graphMargin does not count
    if (n.kind === 'linear') { if (n.inShapes.some((sh) => sizeOf(sh) !== sizeOf(n.outShape)) && n.prim.op === 'sum') return `sum node '${n.name}' (${n.opType}) broadcasts its inputs`; continue; }
    if (n.kind !== 'activation') return `node '${n.name}' (${n.opType}) is neither linear nor an elementwise activation`;
    if (n.inputs.length !== 1 || !sameShape(n.inShapes[0], n.outShape)) return `activation '${n.name}' (${n.opType}) is not elementwise on one input`;
    if (!n.slope.every(Number.isFinite)) return `activation '${n.name}' (${n.opType}) has an unbounded slope range`;
    const c = (n.slope[0] + n.slope[1]) / 2;
    // the linearised network is run in float32 with c as its scale: c must be a float32 number
    if (Math.fround(c) !== c) return `activation '${n.name}' (${n.opType}) has slope midpoint ${c}, not a float32 number`;
    if (n.slope[1] > n.slope[0]) spread++;
  }
  if (spread === 0) return 'the graph has no activation with a slope range to expand';
  if (spread > GRAPH_CP_MAX_ACTIVATIONS) return `the graph has ${spread} activations to expand; the expansion's maps grow with their square and are planned for at most ${GRAPH_CP_MAX_ACTIVATIONS}`;
  // on a chain the expansion is CP's on its segments (ALGORITHMS.md §5), which also tries every split
  if (!blocks.some((b) => b.kind === 'node' && b.node.kind === 'linear')) return 'the graph is a chain without sums or concatenations: CP on its segments already is this expansion';
  if (ir.nodes.length === 0) return 'the graph is empty';
  return null;
}


/** The whole-graph bound of graphCpBound. */
export interface GraphCpResult {
  /** Upper bound on the graph's ℓ2 Lipschitz constant: certified or probabilistic (the weakest kind of the norms used). */
  readonly upper: Bound;
  /** The same recursion on estimates: no guarantee. */
  readonly estimate: number | null;
  /** Linearised maps whose norm was measured, and those bounded by the composition of measured region norms instead. */
  readonly measured: number;
  readonly composed: number;
  /** KW bounds behind a probabilistic `upper` among those measured here (0 when it is certified). */
  readonly probabilistic: number;
  /** Lanczos work spent (flop), and what measuring every map would have taken by the cost model. */
  readonly work: number;
  readonly cost: number;
  readonly ms: number;
}


/** One map of the expansion: the linearised network from value s (the input or an expanded activation's output) to t. */
export interface GraphMap {
  readonly s: string;
  readonly t: string;
  /** The linearised map as a region (null where s = t: the identity). */
  readonly region: LinearRegion | null;
  /** AutoLip on the linearised graph from the regions' measured norms: a bound (up, of the kinds used) and an estimate. */
  readonly up: number;
  readonly est: number;
  readonly kinds: ReadonlySet<BoundKind>;
}

/** The expansion's plan: every map it needs, and the float32 rounding margin of each map's products. */
export interface GraphCpMaps {
  readonly input: string;
  readonly output: string;
  /** The activations with a slope range (r > 0), in topological order. */
  readonly expanded: readonly ActivationNode[];
  /** Keyed `${s}\u0000${t}`. */
  readonly maps: ReadonlyMap<string, GraphMap>;
  readonly shapeOf: ReadonlyMap<string, Shape>;
  /** The Lanczos steps a map's measurement is costed at (the most any region's norm took). */
  readonly steps: number;
  /** What measuring every map with a bound above 0 takes by the cost model (flop): graphCpBound's `cost`. */
  readonly cost: number;
  /**
   * The products' error of the map s → t (ProductError with ‖map‖ ≤ total); `scaled` says whether a Mul is put before
   * it (from) or after it (to), which the backend may fold into the adjacent region's weights.
   */
  margin(s: string, t: string, total: number, scaled?: { readonly from: boolean; readonly to: boolean }): ProductError;
}

/** The maps' key. */
export const mapKey = (s: string, t: string) => `${s}\u0000${t}`;

/**
 * The maps of the whole-graph expansion: to every expanded activation's input and to the output, from the input and
 * from every expanded activation reaching it, each as a region of the model's own nodes with every activation replaced
 * by a scale by its slope midpoint c (inputs not reached from s are zero), with its composed bound. Null when
 * graphCpObstacle says why not.
 */
export function graphCpMaps(ir: IrGraph, blocks: readonly Block[], norms: ReadonlyMap<string, OperatorNorm>, settings: Pick<NormSettings, 'norm' | 'backend'>): GraphCpMaps | null {
  if (settings.norm !== '2' || graphCpObstacle(ir, blocks) !== null) return null;
  const nodes: IrNode[] = blocks.flatMap((b) => (b.kind === 'operator' ? [...b.region.nodes] : [b.node]));
  const consumers = new Map<string, IrNode[]>();
  const producer = new Map<string, IrNode>();
  const shapeOf = new Map<string, Shape>([[ir.input, ir.inputShape]]);
  for (const n of nodes) {
    producer.set(n.output, n);
    shapeOf.set(n.output, n.outShape);
    for (const i of new Set(n.inputs)) { const l = consumers.get(i); if (l) l.push(n); else consumers.set(i, [n]); }
  }
  const acts = blocks.flatMap((b) => (b.kind === 'node' && b.node.kind === 'activation' ? [b.node] : []));
  const mid = new Map(acts.map((a) => [a, (a.slope[0] + a.slope[1]) / 2]));
  const expanded = acts.filter((a) => a.slope[1] > a.slope[0]);
  const forward = (s: string): Set<string> => {
    const seen = new Set([s]);
    const stack = [s];
    while (stack.length) for (const n of consumers.get(stack.pop()!) ?? []) if (!seen.has(n.output)) { seen.add(n.output); stack.push(n.output); }
    return seen;
  };
  const backward = (t: string): Set<string> => {
    const seen = new Set([t]);
    const stack = [t];
    while (stack.length) { const p = producer.get(stack.pop()!); if (p) for (const i of p.inputs) if (!seen.has(i)) { seen.add(i); stack.push(i); } }
    return seen;
  };
  const fwd = new Map<string, Set<string>>();
  const reach = (s: string) => { let f = fwd.get(s); if (!f) { f = forward(s); fwd.set(s, f); } return f; };

  /** The linearised map from value s to value t as one region: activations become scales by c, inputs not reached from s are zero. */
  const linearised = (s: string, t: string): LinearRegion => {
    const f = reach(s), b = backward(t);
    const path: LinearNode[] = [];
    for (const n of nodes) {
      if (!f.has(n.output) || !b.has(n.output) || n.output === s) continue;
      if (n.kind === 'activation') {
        path.push({ kind: 'linear', name: `${n.name}/linearised`, opType: 'Mul', inputs: n.inputs, inShapes: n.inShapes, output: n.output, outShape: n.outShape, prim: { op: 'scale', factor: { dtype: 'float32', dims: [], data: Float32Array.of(mid.get(n)!) } } });
        continue;
      }
      const l = n as LinearNode;
      const keep = l.inputs.map((i) => f.has(i));
      if (keep.every(Boolean)) { path.push(l); continue; }
      const index = new Map<number, number>();
      keep.forEach((k, i) => { if (k) index.set(i, index.size); });
      const inputs = l.inputs.filter((_, i) => keep[i]), inShapes = l.inShapes.filter((_, i) => keep[i]);
      if (l.prim.op === 'sum') {
        const signs = l.prim.signs.filter((_, i) => keep[i]);
        path.push({ ...l, inputs, inShapes, prim: { op: 'sum', signs } });
      } else if (l.prim.op === 'concat') {
        const parts = l.prim.parts.map((p) => ('dynamic' in p ? (keep[p.dynamic] ? { dynamic: index.get(p.dynamic)! } : { zeros: l.inShapes[p.dynamic] }) : p));
        path.push({ ...l, inputs, inShapes, prim: { ...l.prim, parts } });
      } else {
        throw new LipcheckError('INTERNAL', `Node '${l.name}' (${l.opType}) has several dynamic inputs but is neither a sum nor a concatenation.`);
      }
    }
    return { id: `lin(${s}→${t})`, input: s, inShape: shapeOf.get(s)!, output: t, outShape: shapeOf.get(t)!, nodes: path };
  };

  /** AutoLip on the linearised graph from s (regions by their measured norms, activations by |c|): every value reached, with the kinds used. */
  const fromCache = new Map<string, { val: Map<string, { up: number; est: number }>; kinds: Set<BoundKind> }>();
  const composedFrom = (s: string) => {
    const hit = fromCache.get(s);
    if (hit) return hit;
    const val = new Map<string, { up: number; est: number }>([[s, { up: 1, est: 1 }]]);
    const kinds = new Set<BoundKind>();
    const get = (v: string) => val.get(v) ?? { up: 0, est: 0 };
    for (const b of blocks) {
      if (b.kind === 'operator') {
        const r = b.region;
        if (!val.has(r.input) || r.output === s) continue;
        const m = norms.get(r.id);
        if (!m) throw new LipcheckError('INTERNAL', `No norm was measured for operator ${r.id}.`);
        kinds.add(m.upper.kind);
        val.set(r.output, { up: m.upper.value * get(r.input).up, est: (m.estimate ?? m.upper.value) * get(r.input).est });
        continue;
      }
      const n = b.node;
      if (n.output === s || !n.inputs.some((i) => val.has(i))) continue;
      if (n.kind === 'activation') {
        const c = Math.abs(mid.get(n)!);
        val.set(n.output, { up: c * get(n.inputs[0]).up, est: c * get(n.inputs[0]).est });
      } else if (n.kind === 'linear' && n.prim.op === 'sum') {
        const p = n.prim;
        const spread = n.inShapes.map((sh) => Math.sqrt(sizeOf(n.outShape) / sizeOf(sh)));
        val.set(n.output, { up: n.inputs.reduce((a, i, k) => a + Math.abs(p.signs[k]) * spread[k] * get(i).up, 0), est: n.inputs.reduce((a, i, k) => a + Math.abs(p.signs[k]) * spread[k] * get(i).est, 0) });
      } else {
        val.set(n.output, { up: Math.sqrt(n.inputs.reduce((a, i) => a + get(i).up ** 2, 0)), est: Math.sqrt(n.inputs.reduce((a, i) => a + get(i).est ** 2, 0)) });
      }
    }
    const out = { val, kinds };
    fromCache.set(s, out);
    return out;
  };
  const composed = (s: string, t: string) => ({ ...(composedFrom(s).val.get(t) ?? { up: 0, est: 0 }), kinds: composedFrom(s).kinds });

  /**
   * The float32 rounding margin of one Gram application of the linearised map s → t, carried through the graph like
   * chainMargin (cp.ts) carries it through a chain: each region, scale, sum and (in the adjoint) fan-out adds at most
   * γ·‖|piece|‖·U·D, U and D the composed bounds of the maps into and out of it; their sum is the products' error
   * (ProductError's eps), ‖A‖ ≤ total.
   */
  // values an activation whose midpoint c is not a power of two reads or writes: its Mul by c, next to a region, may be
  // folded into that region's weights by onnxruntime (ConvMulFusion: seen in 1.30's optimised graphs), which rounds
  // every weight c·w once more; regionBound's γ_{k+1} covers one fold, not a second on a region that already folds a
  // BatchNormalization scale
  const inexactScale = new Set<string>();
  for (const a of acts) {
    if (!foldsExactly(mid.get(a)!)) { inexactScale.add(a.inputs[0]); inexactScale.add(a.output); }
  }
  const graphMargin = (s: string, t: string, total: number, scaled: { readonly from: boolean; readonly to: boolean } = { from: false, to: false }): ProductError => {
    const up = composedFrom(s).val;
    const down = (v: string) => composedFrom(v).val.get(t)?.up ?? 0;
    const unit = float32Unit(settings);
    const g32 = (k: number) => gammaOf(k, unit);
    let eta = 0;
    const readers = new Map<string, number>();
    for (const b of blocks) {
      const ins = b.kind === 'operator' ? [b.region.input] : b.node.inputs;
      const out = b.kind === 'operator' ? b.region.output : b.node.output;
      if (out === s || !ins.some((i) => up.has(i)) || down(out) === 0) continue;
      for (const i of new Set(ins)) if (up.has(i)) readers.set(i, (readers.get(i) ?? 0) + 1);
      const u = (v: string) => up.get(v)?.up ?? 0;
      if (b.kind === 'operator') {
        const rb = cheapBound(b.region, unit);
        // one more rounding of every weight where a Mul next to the region may be folded into it: an inexact activation
        // scale, or the rescaled map's own Mul at its source or target (a's and b's are never powers of two)
        const r = b.region;
        const folded = inexactScale.has(r.output) || inexactScale.has(r.input) || (scaled.to && r.output === t) || (scaled.from && r.input === s);
        eta += (rb.gammaSum + (folded ? g32(1) : 0)) * rb.absNorm * u(r.input) * down(out);
      } else if (b.node.kind === 'activation') {
        eta += g32(1) * Math.abs(mid.get(b.node)!) * u(b.node.inputs[0]) * down(out);
      } else if (b.node.kind === 'linear' && b.node.prim.op === 'sum') {
        const n = b.node;
        const reached = n.inputs.filter((i) => up.has(i)).length;
        if (reached > 1) eta += g32(reached - 1) * n.inputs.reduce((a, i, k) => a + Math.sqrt(sizeOf(n.outShape) / sizeOf(n.inShapes[k])) * u(i), 0) * down(out);
      }
    }
    // the adjoint sums the cotangents of a value read by several blocks
    for (const [v, count] of readers) if (count > 1) eta += g32(count - 1) * (up.get(v)?.up ?? 0) * down(v);
    return { eps: roundUp(eta, 8), total };
  };

  const maps = new Map<string, GraphMap>();
  for (const t of [...expanded.map((a) => a.inputs[0]), ir.output]) {
    for (const s of [ir.input, ...expanded.map((a) => a.output)]) {
      const key = mapKey(s, t);
      if (maps.has(key) || !reach(s).has(t)) continue;
      if (s === t) { maps.set(key, { s, t, region: null, up: 1, est: 1, kinds: new Set() }); continue; }
      const c = composed(s, t);
      maps.set(key, { s, t, region: linearised(s, t), up: c.up, est: c.est, kinds: c.kinds });
    }
  }
  // the Lanczos steps a map is costed at: the most any region's norm took
  const steps = Math.max(1, ...[...norms.values()].map((m) => budgetBasis(m).iterations));
  const cost = [...maps.values()].reduce((a, m) => a + (m.region && m.up > 0 ? 2 * steps * regionFlop(m.region) : 0), 0);
  return { input: ir.input, output: ir.output, expanded, maps, shapeOf, steps, cost, margin: graphMargin };
}

/**
 * Positive scalings of the graph's values at its expanded activations (docs/algorithms-cp-scaling.md §5), keyed by an
 * activation's input value: δ broadcast to that value's shape (per channel [1, C, 1, …] or per unit). The activation's
 * output takes the same δ.
 */
export type GraphScaling = ReadonlyMap<string, { readonly dims: readonly number[]; readonly data: Float64Array }>;

/** The scaling key of a map's source s (an activation's output: its input value) or target t (an activation's input), null for the graph's input and output. */
export function scaleKeys(maps: GraphCpMaps, s: string, t: string): { from: string | null; to: string | null } {
  const act = maps.expanded.find((a) => a.output === s);
  return { from: act ? act.inputs[0] : null, to: t === maps.output ? null : t };
}

/** A broadcast factor expanded to the whole value (row-major, numpy broadcasting of `dims` against `shape`). */
export function expandFactor(f: { readonly dims: readonly number[]; readonly data: ArrayLike<number> }, shape: Shape): Float64Array {
  const n = sizeOf(shape);
  const out = new Float64Array(n);
  const r = shape.length;
  const dims = [...new Array(r - f.dims.length).fill(1), ...f.dims];
  for (let i = 0; i < n; i++) {
    let rest = i, j = 0, stride = 1;
    for (let k = r - 1; k >= 0; k--) {
      const idx = rest % shape[k];
      rest = Math.floor(rest / shape[k]);
      if (dims[k] !== 1) j += idx * stride;
      stride *= dims[k];
    }
    out[i] = f.data[j];
  }
  return out;
}

/**
 * The whole-graph bound of a plan (docs/algorithms-residual.md §6): with every activation σ_i = c_i·Id + r_i·R_i, each
 * pre-activation h_j and the output are h_j = A_j x + Σ_i r_i·B_{j,i}·R_i(h_i) + const, A_j and B_{j,i} maps of the
 * linearised network (B_{j,i} from activation i's output). So L(h_j) ≤ ‖A_j‖ + Σ_i r_i·‖B_{j,i}‖·L(h_i), across
 * residual sums, skips and the activations after them. Each map's norm is measured (measureRegion on its region)
 * while the Lanczos work, cheapest first, fits `budget` flop, and bounded otherwise by its composed bound.
 *
 * With `scaling` (docs/algorithms-cp-scaling.md §5) the same recursion runs on the rescaled graph, whose maps are
 * Δ_t⁻¹·M·Δ_s: each region is preceded by a Mul by b = fround(δ_s) and followed by one by a = fround(1/b_t) (float32
 * constants), and what the measured a·M·b bounds is turned into a bound on b_t⁻¹·M·b_s by the factor 1/(1 − e),
 * e = max |a·b_t − 1|. Its seeds are its own.
 */
export async function graphCpBound(plan: GraphCpMaps, settings: NormSettings, opts: { readonly budget: number; readonly scaling?: GraphScaling }): Promise<GraphCpResult> {
  const t0 = performance.now();
  const sc = opts.scaling;
  const unit = float32Unit(settings);
  const g1 = gammaOf(1, unit);
  /** b (the float32 scaling) of a key over its whole value, and a = fround(1/b). */
  const factors = new Map<string, ScaleFactors>();
  const factorOf = (key: string | null) => {
    if (key === null || !sc) return null;
    let f = factors.get(key);
    if (!f) {
      const d = sc.get(key);
      if (!d) throw new LipcheckError('INTERNAL', `Graph CP: no scaling was chosen for the value '${key}'.`);
      const b = Float32Array.from(d.data);
      const a = Float32Array.from(b, (x) => 1 / x);
      // one prim per factor, shared by every map it scales: regionBound's certificates of a group folded with it
      // (region-bounds.ts groupBounds) are then computed once for all those maps
      f = { b, a, dims: d.dims, bPrim: { op: 'scale', factor: { dtype: 'float32', dims: [...d.dims], data: b } }, aPrim: { op: 'scale', factor: { dtype: 'float32', dims: [...d.dims], data: a } } };
      factors.set(key, f);
    }
    return f;
  };
  const maxOf = (x: ArrayLike<number>) => { let m = 0; for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]); return m; };
  interface Entry { readonly map: GraphMap; region: LinearRegion | null; up: number; est: number; kinds: Set<BoundKind>; readonly fromMax: number; readonly toInv: number; readonly toMax: number; readonly inexact: number; readonly hasFrom: boolean; readonly hasTo: boolean }
  const entries = new Map<string, Entry>();
  for (const [key, map] of plan.maps) {
    const { from, to } = scaleKeys(plan, map.s, map.t);
    const fb = factorOf(from), ft = factorOf(to);
    const fromMax = fb ? maxOf(fb.b) : 1, toMax = ft ? maxOf(ft.a) : 1;
    // max 1/b_t, rounded up (one float64 division), and e = max |a·b_t − 1| (a·b_t is exact; 4 float64 units on top)
    let toInv = 1, inexact = 0;
    if (ft) {
      toInv = 0;
      for (let i = 0; i < ft.b.length; i++) { toInv = Math.max(toInv, 1 / ft.b[i]); inexact = Math.max(inexact, Math.abs(ft.a[i] * ft.b[i] - 1)); }
      toInv = roundUp(toInv, 1);
      inexact = inexact * (1 + 2 ** -50) + 2 ** -52;
    }
    let region = map.region, up = map.up, est = map.est;
    if (sc && map.region === null) {
      // s = t (an activation's output read by another activation): the map is b_t⁻¹·b_s, its norm the largest ratio
      const shape = plan.shapeOf.get(map.s)!;
      const bs = fb ? expandFactor({ dims: fb.dims, data: fb.b }, shape) : new Float64Array(sizeOf(shape)).fill(1);
      const bt = ft ? expandFactor({ dims: ft.dims, data: ft.b }, shape) : new Float64Array(sizeOf(shape)).fill(1);
      up = 0;
      for (let i = 0; i < bs.length; i++) up = Math.max(up, bs[i] / bt[i]);
      est = up;
      up = roundUp(up, 1);
    } else if (sc && map.region) {
      region = scaledRegion(map.region, fb, ft);
      up = roundUp(map.up * fromMax * toInv, 2);
      est = map.est * fromMax * toInv;
    }
    entries.set(key, { map, region, up, est, kinds: new Set(map.kinds), fromMax, toInv, toMax, inexact, hasFrom: fb !== null, hasTo: ft !== null });
  }
  // the products' error of a·M·b: M's own (plan.margin, its input grown by fromMax·(1 + u)) and the two Mul nodes'
  // (γ₁ each, on values of norm at most fromMax·‖M‖ and toMax·fromMax·‖M‖), all carried out through a
  const marginOf = (e: Entry): ProductError => {
    if (!sc) return plan.margin(e.map.s, e.map.t, e.map.up);
    const inner = plan.margin(e.map.s, e.map.t, e.map.up, { from: e.hasFrom, to: e.hasTo });
    const eps = e.toMax * e.fromMax * ((inner.eps + 2 * g1 * e.map.up) * (1 + g1) ** 2);
    return { eps: roundUp(eps, 8), total: roundUp(e.toMax * e.fromMax * e.map.up, 2) };
  };
  // measured norms, cheapest first, while their Lanczos work fits the budget (counted, never timed)
  const queue = [...entries.values()].filter((e) => e.region !== null && e.up > 0).map((e) => ({ e, cost: 2 * plan.steps * regionFlop(e.region!) })).sort((a, b) => a.cost - b.cost);
  let left = opts.budget, measured = 0, probabilistic = 0, work = 0;
  const chosen: typeof queue = [];
  for (const q of queue) {
    if (q.cost > left) break;
    left -= q.cost;
    chosen.push(q);
  }
  // the budget picks the maps by their cost alone, so they are measured at once where the backend allows
  // (backend.concurrency; each map's seed is its place in the queue, the rescaled graph's its own) and entered in
  // order: the same numbers
  const base = sc ? 6_000_000 : 5_000_000;
  const results = await mapInLanes(chosen, laneWidth(settings), (q, i) => measureRegion(q.e.region!, settings, base + i));
  for (const [i, { e }] of chosen.entries()) {
    const m = results[i];
    measured++;
    work += m.work;
    // the KW bound again with the graph's rounding margin instead of measureRegion's product of |·|-norms
    const kw: Bound[] = [];
    const factor = m.factor;
    if (m.estimate !== null && factor && m.candidates.some((x) => x.kind === 'probabilistic')) {
      if (Number.isFinite(factor.factor)) kw.push({ value: kwUpper(m.estimate * m.estimate, factor.factor, marginOf(e)), kind: 'probabilistic', method: ritzMethod(factor, 'graph margin') });
    }
    const allowed = [...m.candidates, ...kw].filter((x) => x.kind === 'certified' || (x.kind === 'probabilistic' && settings.certify !== 'strict'));
    const best = allowed.reduce<Bound | null>((a, x) => (a === null || x.value < a.value ? x : a), null);
    // a bound on a·M·b is one on b_t⁻¹·M·b_s after the factor 1/(1 − e) (0 without scaling)
    const value = best && e.inexact > 0 ? roundUp(best.value / (1 - e.inexact), 3) : best?.value;
    if (best && value! < e.up) {
      e.up = value!;
      e.kinds = new Set([best.kind]);
      if (best.kind === 'probabilistic') probabilistic += 1 + m.candidates.filter((x) => x.kind === 'probabilistic').length;
    }
    e.est = Math.min(e.est, m.estimate ?? m.upper.value);
  }

  const kinds = new Set<BoundKind>();
  for (const e of entries.values()) e.kinds.forEach((k) => kinds.add(k));
  const value = roundUp(graphRecursion(plan, (s, t) => entries.get(mapKey(s, t))?.up), 8 * (plan.expanded.length + 2) ** 2);
  const estimate = graphRecursion(plan, (s, t) => entries.get(mapKey(s, t))?.est);
  const label = `graph-cp(${plan.expanded.length} activations, ${measured} of ${queue.length} maps measured${sc ? ', rescaled' : ''})`;
  return {
    upper: { value, kind: weakestKind(kinds), method: label },
    estimate: Number.isFinite(estimate) ? estimate : null, measured, composed: queue.length - measured, probabilistic: weakestKind(kinds) === 'probabilistic' ? probabilistic : 0, work, cost: queue.reduce((a, q) => a + q.cost, 0), ms: performance.now() - t0,
  };
}

/**
 * The expansion's recursion on map norms N(s, t) (undefined where s does not reach t): L(h_j) = N(x, h_j) + Σ_i r_i·
 * N(a_i, h_j)·L(h_i) over the expanded activations in topological order, and the same at the output.
 */
export function graphRecursion(plan: GraphCpMaps, N: (s: string, t: string) => number | undefined): number {
  return graphLevels(plan, N).output;
}

/** graphRecursion's L(h) for every expanded activation's input, and its value at the output. */
export function graphLevels(plan: GraphCpMaps, N: (s: string, t: string) => number | undefined): { levels: Map<string, number>; output: number } {
  const levels = new Map<string, number>();
  const at = (t: string): number => {
    let v = N(plan.input, t) ?? 0;
    for (const a of plan.expanded) {
      const n = N(a.output, t);
      if (n === undefined) continue;
      const l = levels.get(a.inputs[0]);
      if (l === undefined) throw new LipcheckError('INTERNAL', `Graph CP: activation '${a.name}' reaches '${t}' but its input's bound was not computed first (the blocks are not in topological order).`);
      v += ((a.slope[1] - a.slope[0]) / 2) * n * l;
    }
    return v;
  };
  for (const a of plan.expanded) if (!levels.has(a.inputs[0])) levels.set(a.inputs[0], at(a.inputs[0]));
  return { levels, output: at(plan.output) };
}

/** A key's float32 scaling b, its inverse a = fround(1/b), and a scale prim of each. */
interface ScaleFactors {
  readonly b: Float32Array;
  readonly a: Float32Array;
  readonly dims: readonly number[];
  readonly bPrim: LinearPrim;
  readonly aPrim: LinearPrim;
}

/** A map's region preceded by a Mul by b (its source's scaling) and followed by one by a (its target's), where given. */
function scaledRegion(region: LinearRegion, from: ScaleFactors | null, to: ScaleFactors | null): LinearRegion {
  const nodes: LinearNode[] = [];
  let input = region.input;
  if (from) {
    input = `${region.input}~scaled`;
    nodes.push({ kind: 'linear', name: `${region.id}~scale-in`, opType: 'Mul', inputs: [region.input], inShapes: [region.inShape], output: input, outShape: region.inShape, prim: from.bPrim });
  }
  for (const n of region.nodes) nodes.push(n.inputs.includes(region.input) ? { ...n, inputs: n.inputs.map((i) => (i === region.input ? input : i)) } : n);
  let output = region.output;
  if (to) {
    output = `${region.output}~scaled`;
    nodes.push({ kind: 'linear', name: `${region.id}~scale-out`, opType: 'Mul', inputs: [region.output], inShapes: [region.outShape], output, outShape: region.outShape, prim: to.aPrim });
  }
  return { ...region, id: `${region.id}~scaled`, output, nodes };
}
