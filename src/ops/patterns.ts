import { Attributes, type AttributeValue } from '../onnx/attributes.js';
import type { OnnxModel, OnnxNode } from '../onnx/read-model.js';
import { sizeOf, toFloat64 } from '../ir/tensor.js';
import { base, dynamicInputs, type Converter } from './context.js';
import { SLOPES } from './activations.js';

/** The domain of the synthetic nodes that stand for a matched sub-graph. */
export const PATTERN_DOMAIN = 'lipcheck.pattern';

/** One recognised x·g(x) pattern: the synthetic op type it becomes and the slope range of x·g(x). */
interface PatternRow {
  readonly opType: string;
  readonly slope: readonly [number, number];
  readonly note?: string;
}

/** The x·g(x) patterns `fusePatterns` recognises (README rows come from this list). */
export const PATTERN_ROWS: readonly PatternRow[] = [
  { opType: 'x·Sigmoid(x)', slope: SLOPES.silu, note: '(SiLU/Swish)' },
  { opType: 'x·Tanh(Softplus(x))', slope: SLOPES.mish, note: '(Mish)' },
  { opType: 'x·HardSigmoid(x)', slope: [-0.5, 1.5], note: 'for β = 1/2: [min(0, −β), max(1, 2−β)] in general (HardSwish)' },
  { opType: 'x·(a + Erf(kx))', slope: [2 * SLOPES.geluErf[0], 2 * SLOPES.geluErf[1]], note: 'for a = 1: a − 1 + 2·[GELU slopes] in general, any k ≠ 0 (GELU, erf form)' },
  { opType: 'x·(a + Tanh(αx + γx³))', slope: [2 * SLOPES.geluTanhNear[0], 2 * SLOPES.geluTanhNear[1]], note: 'for a = 1: a − 1 + 2·[tanh-GELU slopes] in general, any α ≠ 0 with γ/α³ within 10⁻⁴ of 0.044715·π/2 (GELU, tanh form; x³ as Mul or Pow, or x·(1 + cx²))' },
];

/** γ/α³ of the tanh form of GELU, tanh(√(2/π)(x + 0.044715x³)): 0.044715·π/2. */
const GELU_TANH_RATIO = 0.044715 * Math.PI / 2;

/** The converter of a fused node: an activation whose slope range the matcher stored in attributes lo and hi. */
export const patternConverter: Converter = (ctx) => [{
  kind: 'activation', fn: ctx.opType, slope: [ctx.attrs.float('lo', 0), ctx.attrs.float('hi', 0)],
  // the matched constants (scale, a, k, alpha, beta, gamma): the parameters of the fused function in src/ops/elementwise.ts
  params: Object.fromEntries(ctx.attrs.names().filter((k) => k !== 'lo' && k !== 'hi').map((k) => [k, ctx.attrs.float(k, NaN)])),
  ...base(ctx, [dynamicInputs(ctx)[0]], ctx.outputs[0], ctx.outShapes[0]),
}];

/**
 * Replaces sub-graphs computing c·x·g(x) (SiLU, Mish, HardSwish, the erf and tanh forms of GELU, as exporters write them with
 * Mul nodes) by one synthetic activation node in PATTERN_DOMAIN with the exact slope range of the whole product, which
 * AutoLip otherwise has to call unbounded (a product of two input-dependent tensors). Only the node list changes: the
 * model's protobuf, which onnxruntime runs, is untouched, so values are computed by the original graph. Intermediate
 * values must have no other consumer and not be graph outputs.
 */
export function fusePatterns(model: OnnxModel): { model: OnnxModel; fused: string[] } {
  const producer = new Map<string, OnnxNode>();
  const uses = new Map<string, number>();
  for (const n of model.nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) if (i) uses.set(i, (uses.get(i) ?? 0) + 1);
  }
  for (const o of model.outputs) uses.set(o.name, (uses.get(o.name) ?? 0) + 1);
  const constants = new Map<string, number>();
  for (const [k, t] of model.initializers) if (sizeOf(t.dims) === 1 && t.dtype !== 'string') constants.set(k, toFloat64(t)[0]);
  for (const n of model.nodes) {
    const t = n.opType === 'Constant' ? n.attributes.tensor('value') : null;
    if (t && sizeOf(t.dims) === 1 && t.dtype !== 'string') constants.set(n.outputs[0], toFloat64(t)[0]);
    const f = n.opType === 'Constant' && n.attributes.has('value_float') ? n.attributes.float('value_float', NaN) : NaN;
    if (!Number.isNaN(f)) constants.set(n.outputs[0], f);
  }
  const single = (v: string) => uses.get(v) === 1;
  const by = (v: string, op: string): OnnxNode | null => {
    const p = producer.get(v);
    return p && p.opType === op && p.domain === '' && single(v) ? p : null;
  };
  /** v = c·w for a scalar constant c (Mul by a constant or Div by one), peeled repeatedly. */
  const peel = (v: string): { v: string; c: number; nodes: OnnxNode[] } => {
    let c = 1;
    const nodes: OnnxNode[] = [];
    for (;;) {
      const m = by(v, 'Mul') ?? by(v, 'Div');
      if (!m) return { v, c, nodes };
      const [a, b] = m.inputs;
      if (m.opType === 'Mul' && constants.has(a)) { c *= constants.get(a)!; v = b; } else if (constants.has(b)) { c = m.opType === 'Mul' ? c * constants.get(b)! : c / constants.get(b)!; v = a; } else return { v, c, nodes };
      nodes.push(m);
    }
  };
  /** v = c·u^p (p = 1 for u itself; else Mul and Pow nodes with single consumers), with the nodes computing it. */
  const power = (v: string, u: string, depth = 0): { p: number; c: number; nodes: OnnxNode[] } | null => {
    if (v === u) return { p: 1, c: 1, nodes: [] };
    if (depth > 3) return null;
    const pw = by(v, 'Pow');
    if (pw) {
      const e = constants.get(pw.inputs[1]);
      const b = peel(pw.inputs[0]);
      return (e === 2 || e === 3) && b.v === u ? { p: e, c: b.c ** e, nodes: [pw, ...b.nodes] } : null;
    }
    const m = by(v, 'Mul');
    if (!m || m.inputs.some((i) => constants.has(i))) return null;
    const [a, b] = m.inputs.map(peel);
    const pa = power(a.v, u, depth + 1), pb = pa && power(b.v, u, depth + 1);
    return pa && pb ? { p: pa.p + pb.p, c: a.c * b.c * pa.c * pb.c, nodes: [m, ...a.nodes, ...b.nodes, ...pa.nodes, ...pb.nodes] } : null;
  };
  /** w = α·u + γ·u³, written as the sum of the two terms or as u·(b + c·u²); null when not that. */
  const cubic = (w: string, u: string): { alpha: number; gamma: number; nodes: OnnxNode[] } | null => {
    const add = by(w, 'Add');
    if (add) {
      const [p, q] = add.inputs.map(peel);
      for (const [lin, cub] of [[p, q], [q, p]]) {
        const a = power(lin.v, u), g = a?.p === 1 ? power(cub.v, u) : null;
        if (a && g?.p === 3) return { alpha: lin.c * a.c, gamma: cub.c * g.c, nodes: [add, ...lin.nodes, ...cub.nodes, ...a.nodes, ...g.nodes] };
      }
      return null;
    }
    const mul = by(w, 'Mul');
    if (!mul) return null;
    const [p, q] = mul.inputs.map(peel);
    for (const [lin, quad] of [[p, q], [q, p]]) {
      const a = power(lin.v, u);
      const inner = a?.p === 1 ? by(quad.v, 'Add') : null;
      if (!a || !inner) continue;
      const [s, t] = inner.inputs;
      const [b, rest] = constants.has(s) ? [constants.get(s)!, t] : constants.has(t) ? [constants.get(t)!, s] : [NaN, ''];
      if (!Number.isFinite(b)) continue;
      const r = peel(rest);
      const sq = power(r.v, u);
      if (sq?.p !== 2) continue;
      const k = lin.c * a.c * quad.c;
      return { alpha: k * b, gamma: k * r.c * sq.c, nodes: [mul, inner, ...lin.nodes, ...quad.nodes, ...a.nodes, ...r.nodes, ...sq.nodes] };
    }
    return null;
  };
  /** The slope range of u·g(u) when `v` computes g(u), with the nodes computing it; null when not recognised. */
  const known = (v: string, u: string): { slope: [number, number]; op: string; nodes: OnnxNode[]; params?: Record<string, number> } | null => {
    const sig = by(v, 'Sigmoid');
    if (sig && sig.inputs[0] === u) return { slope: [...SLOPES.silu], op: PATTERN_ROWS[0].opType, nodes: [sig] };
    const tanh = by(v, 'Tanh');
    const sp = tanh && by(tanh.inputs[0], 'Softplus');
    if (tanh && sp && sp.inputs[0] === u) return { slope: [...SLOPES.mish], op: PATTERN_ROWS[1].opType, nodes: [tanh, sp] };
    const hs = by(v, 'HardSigmoid');
    if (hs && hs.inputs[0] === u) {
      const beta = hs.attributes.float('beta', 0.5);
      return { slope: [Math.min(0, -beta), Math.max(1, 2 - beta)], op: PATTERN_ROWS[2].opType, nodes: [hs], params: { alpha: hs.attributes.float('alpha', 0.2), beta } };
    }
    // a + erf(k·u): u·(a + erf(ku)) = (a − 1)·u + u·(1 + erf(ku)), and d/du u(1 + erf(ku)) = 2·GELU′(√2·k·u) for either sign of k
    const add = by(v, 'Add');
    if (add) {
      const [p, q] = add.inputs;
      const [a, e] = constants.has(p) ? [constants.get(p)!, q] : constants.has(q) ? [constants.get(q)!, p] : [NaN, ''];
      const erf = Number.isFinite(a) ? by(e, 'Erf') : null;
      if (erf) {
        const inner = peel(erf.inputs[0]);
        if (inner.v === u && inner.c !== 0 && Number.isFinite(inner.c)) {
          return { slope: [a - 1 + 2 * SLOPES.geluErf[0], a - 1 + 2 * SLOPES.geluErf[1]], op: PATTERN_ROWS[3].opType, nodes: [add, erf, ...inner.nodes], params: { a, k: inner.c } };
        }
      }
      // a + tanh(αu + γu³): with α = √(2/π)·s and γ/α³ = 0.044715·π/2, u(1 + tanh(…)) = (2/s)·GELU_tanh(su), whose
      // slope is 2·GELU_tanh′(su) for either sign of s
      const tanh = Number.isFinite(a) ? by(e, 'Tanh') : null;
      if (tanh) {
        const inner = peel(tanh.inputs[0]);
        const poly = cubic(inner.v, u);
        const alpha = inner.c * (poly?.alpha ?? 0), gamma = inner.c * (poly?.gamma ?? 0);
        if (poly && alpha !== 0 && Math.abs(gamma / alpha ** 3 / GELU_TANH_RATIO - 1) <= 1e-4) {
          return { slope: [a - 1 + 2 * SLOPES.geluTanhNear[0], a - 1 + 2 * SLOPES.geluTanhNear[1]], op: PATTERN_ROWS[4].opType, nodes: [add, tanh, ...inner.nodes, ...poly.nodes], params: { a, alpha, gamma } };
        }
      }
    }
    return null;
  };

  const removed = new Set<OnnxNode>();
  const replaced = new Map<OnnxNode, OnnxNode>();
  const fused: string[] = [];
  for (const n of model.nodes) {
    if (n.opType !== 'Mul' || n.domain !== '' || n.inputs.length !== 2 || removed.has(n) || n.inputs.some((i) => constants.has(i))) continue;
    const [p, q] = n.inputs.map(peel);
    for (const [x, g] of [[p, q], [q, p]]) {
      const m = known(g.v, x.v);
      if (!m) continue;
      const c = x.c * g.c;
      const nodes = [...x.nodes, ...g.nodes, ...m.nodes];
      if (nodes.some((k) => removed.has(k) || replaced.has(k))) continue;
      const slope: [number, number] = [Math.min(c * m.slope[0], c * m.slope[1]), Math.max(c * m.slope[0], c * m.slope[1])];
      const attrs = new Map<string, AttributeValue>([['lo', { type: 'float', value: slope[0] }], ['hi', { type: 'float', value: slope[1] }]]);
      for (const [k, value] of Object.entries({ ...m.params, scale: c })) attrs.set(k, { type: 'float', value });
      nodes.forEach((k) => removed.add(k));
      replaced.set(n, { name: n.name, opType: m.op, domain: PATTERN_DOMAIN, inputs: [x.v], outputs: n.outputs, attributes: new Attributes(attrs) });
      fused.push(n.name);
      break;
    }
  }
  if (fused.length === 0) return { model, fused };
  const nodes = model.nodes.filter((n) => !removed.has(n)).map((n) => replaced.get(n) ?? n);
  return { model: { ...model, nodes }, fused };
}
