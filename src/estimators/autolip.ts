import type { Block } from '../ir/merge.js';
import { sizeOf } from '../ir/tensor.js';
import type { IrGraph, Shape } from '../ir/types.js';
import { weakestKind, type Bound, type BoundKind, type NormKind } from './kinds.js';
import type { OperatorNorm } from './operator-norm.js';
import { segmentAutoLip, segmentFactor, type Segment } from './cp.js';

/** One method's result on a sequential segment: an upper bound (null when it gave only an estimate) and an estimate. */
export interface SegmentCandidate {
  readonly method: 'cp' | 'seqlip' | 'sdp' | 'eclipse';
  readonly upper: Bound | null;
  readonly estimate: number | null;
  readonly ms: number;
  /** Multiply-adds the method spent on the segment, where it counts them (LipSDP). */
  readonly work?: number;
  /** A short account for the layer table, e.g. "CP 3.2 (5 products)". */
  readonly note: string;
}

/** A sequential segment with what Combettes–Pesquet and SeqLip found on it, to be used instead of the product of its parts. */
export interface SegmentUse {
  readonly segment: Segment;
  readonly candidates: readonly SegmentCandidate[];
}

/**
 * A residual block's bound (src/estimators/residual.ts) on L(input ↦ output), the output being its sum node's: under
 * `best` the composition takes it times L(input) where that is below the sum's AutoLip value.
 */
export interface ResidualUse {
  readonly id: string;
  readonly input: string;
  readonly output: string;
  /** The ONNX node names the block covers. */
  readonly nodes: readonly string[];
  readonly upper: Bound;
  readonly estimate: number | null;
  readonly ms: number;
  readonly note: string;
}

/**
 * How a composition treats segments: `best` takes the smallest valid bound among AutoLip and every candidate; `cp` or
 * `seqlip` or `sdp` (LipSDP) that method's bound where it has one (AutoLip elsewhere); `greedy` keeps AutoLip's bounds but carries the
 * candidates' estimates (greedy SeqLip), for the estimate-only line of the report.
 */
export type SegmentMode = 'best' | 'cp' | 'seqlip' | 'sdp' | 'eclipse' | 'greedy';

/** One row of the per-layer table. */
export interface LayerResult {
  readonly id: string;
  readonly kind: 'operator' | 'activation' | 'nonlinear' | 'merge' | 'segment' | 'unbounded' | 'discontinuous';
  /** The ONNX node names this row covers. */
  readonly nodes: readonly string[];
  readonly opTypes: readonly string[];
  readonly inShape: Shape;
  readonly outShape: Shape;
  readonly estimate: number | null;
  readonly upper: Bound | null;
  /** Every upper bound computed for this row (the chosen one is `upper`). */
  readonly candidates: readonly Bound[];
  readonly iterations: number;
  readonly ms: number;
  readonly note: string;
}

/** Why the model has no global constant: the node where it starts. */
export interface Reason {
  readonly node: string;
  readonly opType: string;
  readonly status: 'unbounded' | 'discontinuous';
  readonly reason: string;
}

/** The global AutoLip result. */
export interface AutoLipResult {
  readonly status: 'bounded' | 'unbounded' | 'discontinuous';
  readonly upper: Bound | null;
  /** The same composition with per-operator estimates (the 2018 paper's AutoLip number): no guarantee. */
  readonly estimate: number | null;
  readonly reasons: readonly Reason[];
  readonly layers: readonly LayerResult[];
}

/**
 * The reasons behind a value, shared rather than copied (copying them at every node made an unbounded chain of n
 * nodes cost O(n³)): a node's own reason comes after those of its inputs; null when there is none.
 */
type Reasons = { readonly own: Reason | null; readonly from: readonly NonNullable<Reasons>[] } | null;

interface Lip { up: number; est: number; kinds: Set<BoundKind>; status: 'bounded' | 'unbounded' | 'discontinuous'; reasons: Reasons }

const EPS = 2 ** -52;

function merge(parts: Lip[]): Pick<Lip, 'kinds' | 'status' | 'reasons'> {
  const kinds = new Set<BoundKind>();
  const from = new Set<NonNullable<Reasons>>();
  let status: Lip['status'] = 'bounded';
  for (const p of parts) {
    p.kinds.forEach((k) => kinds.add(k));
    if (p.reasons) from.add(p.reasons);
    if (p.status === 'discontinuous' || (p.status === 'unbounded' && status === 'bounded')) status = p.status;
  }
  const reasons: Reasons = from.size === 0 ? null : from.size === 1 ? [...from][0] : { own: null, from: [...from] };
  return { kinds, status, reasons };
}

/** The reasons in order (inputs' before a node's own, each once), by an iterative post-order walk. */
function listReasons(root: Reasons): Reason[] {
  const out: Reason[] = [];
  if (!root) return out;
  const seen = new Set<Reason>();
  const visited = new Set<NonNullable<Reasons>>([root]);
  const stack: { r: NonNullable<Reasons>; next: number }[] = [{ r: root, next: 0 }];
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (top.next < top.r.from.length) {
      const c = top.r.from[top.next++];
      if (!visited.has(c)) { visited.add(c); stack.push({ r: c, next: 0 }); }
      continue;
    }
    stack.pop();
    if (top.r.own && !seen.has(top.r.own)) { seen.add(top.r.own); out.push(top.r.own); }
  }
  return out;
}

/**
 * AutoLip (Scaman & Virmaux 2018, §4; ALGORITHMS.md §1): propagates a Lipschitz bound from the input (L = 1) through
 * the blocks — linear operators multiply by their norm, activations by their largest |slope|, sums add, concatenations
 * combine in quadrature (ℓ2) or by max (ℓ∞). The upper bound's kind is the weakest kind of its parts.
 */
export function composeAutoLip(ir: IrGraph, blocks: readonly Block[], norms: ReadonlyMap<string, OperatorNorm>, norm: NormKind, segments: readonly SegmentUse[] = [], mode: SegmentMode = 'best', residuals: readonly ResidualUse[] = []): AutoLipResult {
  const residualAt = new Map(mode === 'best' ? residuals.map((r) => [r.output, r]) : []);
  const covered = new Map<number, SegmentUse>();
  for (const u of segments) for (const k of u.segment.blocks) covered.set(k, u);
  const used = new Set<string>();
  const lips = new Map<string, Lip>([[ir.input, { up: 1, est: 1, kinds: new Set(), status: 'bounded', reasons: null }]]);
  const get = (v: string): Lip => lips.get(v) ?? { up: 0, est: 0, kinds: new Set(), status: 'bounded', reasons: null };
  const layers: LayerResult[] = [];
  const closeSegment = (use: SegmentUse) => {
    // a segment's inner values have no other consumers: its factor applies at its last block
    const seg = use.segment;
    const al = segmentAutoLip(seg, norms);
    const autolip = { method: 'autolip', upper: al.upper, estimate: al.estimate };
    const pool = mode === 'best' ? [autolip, ...use.candidates]
      : mode === 'greedy' ? [{ ...autolip, estimate: Math.min(al.estimate, ...use.candidates.filter((c) => c.method === 'seqlip' && c.estimate !== null).map((c) => c.estimate!)) }]
        : [...use.candidates.filter((c) => c.method === mode && c.upper !== null), autolip].slice(0, 1);
    const f = segmentFactor(pool);
    used.add(f.chosen);
    const inL = get(seg.input);
    lips.set(seg.output, { ...merge([inL]), up: f.upper.value * inL.up, est: f.estimate * inL.est, kinds: new Set([...inL.kinds, f.upper.kind]) });
    const estimates = use.candidates.filter((c) => c.upper === null && c.estimate !== null).map((c): Bound => ({ value: c.estimate!, kind: 'estimate', method: `${c.method}-greedy` }));
    layers.push({
      id: seg.id, kind: 'segment', nodes: unique(seg.regions.flatMap((r) => r.nodes.map((n) => n.name))), opTypes: [`${seg.regions.length} operators`],
      inShape: seg.regions[0].inShape, outShape: seg.regions[seg.regions.length - 1].outShape, estimate: f.estimate, upper: f.upper,
      candidates: [al.upper, ...use.candidates.flatMap((c) => (c.upper ? [c.upper] : [])), ...estimates], iterations: 0, ms: use.candidates.reduce((a, c) => a + c.ms, 0),
      note: `${seg.regions.map((r) => r.id).join('·')}: AutoLip ${al.upper.value.toPrecision(4)}, ${use.candidates.map((c) => c.note).join(', ')} → ${f.chosen}`,
    });
  };
  for (const [k, b] of blocks.entries()) {
    const use = covered.get(k);
    if (b.kind === 'operator') {
      const r = b.region;
      const m = norms.get(r.id)!;
      const inL = get(r.input);
      if (!use) lips.set(r.output, { ...merge([inL]), up: m.upper.value * inL.up, est: (m.estimate ?? m.upper.value) * inL.est, kinds: new Set([...inL.kinds, m.upper.kind]) });
      layers.push({ id: r.id, kind: 'operator', nodes: unique(r.nodes.map((n) => n.name)), opTypes: unique(r.nodes.map((n) => n.opType)), inShape: r.inShape, outShape: r.outShape, estimate: m.estimate, upper: m.upper, candidates: m.candidates, iterations: m.iterations, ms: m.ms, note: '' });
      if (use && k === use.segment.blocks[use.segment.blocks.length - 1]) closeSegment(use);
      continue;
    }
    const n = b.node;
    const ins = n.inputs.map(get);
    const base = { id: n.name, nodes: [n.name], opTypes: [n.opType], inShape: n.inShapes[0] ?? [], outShape: n.outShape, candidates: [], iterations: 0, ms: 0 };
    switch (n.kind) {
      case 'activation': {
        const c = Math.max(Math.abs(n.slope[0]), Math.abs(n.slope[1]));
        if (!use) lips.set(n.output, { ...merge(ins), up: c * ins[0].up, est: c * ins[0].est });
        layers.push({ ...base, kind: 'activation', estimate: c, upper: { value: c, kind: 'certified', method: 'slope' }, note: `slope in [${fmt(n.slope[0])}, ${fmt(n.slope[1])}]` });
        break;
      }
      case 'lipschitz': {
        // several inputs (Max/Min of branches): the constant applies to the stacked inputs, ‖(Δu, Δv)‖
        const c = norm === 'inf' ? n.linf : n.l2;
        const stack = (xs: number[]) => (norm === 'inf' ? Math.max(...xs) : Math.sqrt(xs.reduce((a, x) => a + x * x, 0)));
        lips.set(n.output, { ...merge(ins), up: c * stack(ins.map((l) => l.up)), est: c * stack(ins.map((l) => l.est)) });
        layers.push({ ...base, kind: 'nonlinear', estimate: c, upper: { value: c, kind: 'certified', method: n.fn }, note: n.note });
        break;
      }
      case 'linear': {
        const p = n.prim;
        let up: number, est: number;
        if (p.op === 'sum') {
          const spread = n.inShapes.map((s) => (norm === 'inf' ? 1 : Math.sqrt(sizeOf(n.outShape) / sizeOf(s))));
          up = ins.reduce((a, l, i) => a + Math.abs(p.signs[i]) * spread[i] * l.up, 0);
          est = ins.reduce((a, l, i) => a + Math.abs(p.signs[i]) * spread[i] * l.est, 0);
        } else {
          up = norm === 'inf' ? Math.max(...ins.map((l) => l.up)) : Math.sqrt(ins.reduce((a, l) => a + l.up * l.up, 0));
          est = norm === 'inf' ? Math.max(...ins.map((l) => l.est)) : Math.sqrt(ins.reduce((a, l) => a + l.est * l.est, 0));
        }
        const res = residualAt.get(n.output);
        const inR = res ? get(res.input) : null;
        const merged = merge(ins);
        const chosen = !!res && !!inR && merged.status === 'bounded' && inR.status === 'bounded' && res.upper.value * inR.up < up;
        if (res && inR && chosen) {
          // the residual block's factor times L(its input) (docs/algorithms-residual.md), below the sum of its branches
          used.add('residual');
          lips.set(n.output, { ...merge([inR]), up: res.upper.value * inR.up, est: Math.min(est, (res.estimate ?? res.upper.value) * inR.est), kinds: new Set([...inR.kinds, res.upper.kind]) });
        } else {
          lips.set(n.output, { ...merged, up, est });
        }
        layers.push({ ...base, kind: 'merge', estimate: null, upper: null, note: p.op === 'sum' ? `sum of ${ins.length} branches: bounds add` : `concatenation of ${ins.length} branches: ${norm === 'inf' ? 'max' : 'quadrature'}` });
        if (res) layers.push({ id: res.id, kind: 'segment', nodes: [...res.nodes], opTypes: ['residual block'], inShape: n.inShapes[0] ?? [], outShape: n.outShape, estimate: res.estimate, upper: res.upper, candidates: [res.upper], iterations: 0, ms: res.ms, note: `${res.note}; ${chosen ? 'used' : 'not below the sum of the branches: not used'}` });
        break;
      }
      case 'unbounded':
      case 'discontinuous': {
        const m = merge(ins);
        const reasons: Reasons = n.derived ? m.reasons : { own: { node: n.name, opType: n.opType, status: n.kind, reason: n.reason }, from: m.reasons ? [m.reasons] : [] };
        const status = n.kind === 'discontinuous' || m.status === 'discontinuous' ? 'discontinuous' : 'unbounded';
        lips.set(n.output, { ...m, status, reasons, up: Infinity, est: Infinity });
        if (!n.derived) layers.push({ ...base, kind: n.kind, estimate: null, upper: null, note: n.reason });
        break;
      }
    }
  }
  const out = get(ir.output);
  if (out.status !== 'bounded') return { status: out.status, upper: null, estimate: null, reasons: listReasons(out.reasons), layers };
  // one relative rounding step per multiplication or addition above, bounded generously by the block count
  const slack = 1 + 4 * (blocks.length + 1) * EPS;
  const kind = out.kinds.size ? weakestKind(out.kinds) : 'certified';
  const method = ['autolip', ...['cp', 'seqlip', 'sdp', 'eclipse', 'residual'].filter((m) => used.has(m))].join('+');
  return { status: 'bounded', upper: { value: out.up * slack, kind, method }, estimate: out.est, reasons: [], layers };
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4).replace(/\.?0+$/, '');
}
