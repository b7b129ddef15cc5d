import type { IrGraph, IrNode, LinearNode, Shape } from './types.js';

/** A maximal linear sub-graph with one input-dependent input and one output: measured as one operator. */
export interface LinearRegion {
  readonly id: string;
  readonly input: string;
  readonly inShape: Shape;
  readonly output: string;
  readonly outShape: Shape;
  /** Its nodes in topological order. */
  readonly nodes: readonly LinearNode[];
}

/** One step of the composition: a merged operator, or a single non-mergeable node. */
export type Block = { readonly kind: 'operator'; readonly region: LinearRegion } | { readonly kind: 'node'; readonly node: IrNode };

/** A region under construction; merged regions point to the one that absorbed them (union–find). */
interface Group { parent: Group | null; nodes: LinearNode[]; input: string }

function root(g: Group): Group {
  let r = g;
  while (r.parent) r = r.parent;
  // path compression keeps later look-ups near O(1)
  while (g.parent && g.parent !== r) { const next: Group = g.parent; g.parent = r; g = next; }
  return r;
}

/**
 * Groups linear nodes into maximal regions (ALGORITHMS.md §1, "merge before you multiply"): a node joins the
 * regions feeding it when every value passed between them is consumed only inside, and all of them read one source.
 * Near-linear in the graph's size: every committed region has exactly one external input, regions are merged by
 * union–find (smaller node lists appended to larger), and a candidate's membership is a look-up of its root.
 */
export function mergeLinear(ir: IrGraph): Block[] {
  const consumers = new Map<string, IrNode[]>();
  const producer = new Map<string, IrNode>();
  for (const n of ir.nodes) {
    producer.set(n.output, n);
    for (const i of n.inputs) {
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  const groupOf = new Map<IrNode, Group>();
  const standalone = new Set<IrNode>();

  for (const n of ir.nodes) {
    if (n.kind !== 'linear') continue;
    // the candidate region: n plus the roots of the regions absorbed so far, and its external inputs
    const absorbed = new Set<Group>();
    const inside = (m: IrNode | undefined) => m !== undefined && (m === n || (groupOf.has(m) && absorbed.has(root(groupOf.get(m)!))));
    const ext = new Set<string>(n.inputs);
    let changed = true;
    while (changed) {
      changed = false;
      for (const v of [...ext]) {
        if (!ext.has(v)) continue;
        const p = producer.get(v);
        if (!p || p.kind !== 'linear' || standalone.has(p) || v === ir.output) continue;
        const g = groupOf.get(p);
        if (!g) continue;
        const r = root(g);
        if (absorbed.has(r)) continue;
        if ((consumers.get(v) ?? []).every((c) => c === n || (groupOf.has(c) && (root(groupOf.get(c)!) === r || absorbed.has(root(groupOf.get(c)!)))))) {
          absorbed.add(r);
          ext.delete(v);
          // a committed region reads exactly one value from outside
          if (!inside(producer.get(r.input))) ext.add(r.input);
          changed = true;
        }
      }
    }
    for (const v of ext) if (inside(producer.get(v))) ext.delete(v);
    if (ext.size === 1) {
      // smaller node lists are appended to the largest one: O(n log n) copies over the whole graph
      let base: Group | null = null;
      for (const r of absorbed) if (!base || r.nodes.length > base.nodes.length) base = r;
      const target: Group = base ?? { parent: null, nodes: [], input: '' };
      for (const r of absorbed) {
        if (r === target) continue;
        for (const m of r.nodes) target.nodes.push(m);
        r.nodes = [];
        r.parent = target;
      }
      target.nodes.push(n);
      target.input = [...ext][0];
      groupOf.set(n, target);
    } else if (new Set(n.inputs).size === 1) {
      groupOf.set(n, { parent: null, nodes: [n], input: n.inputs[0] });
    } else {
      standalone.add(n);
    }
  }

  const index = new Map<IrNode, number>(ir.nodes.map((n, i) => [n, i]));
  // a region is emitted at its sink (its last node in topological order), once every external input has been computed
  const last = new Map<Group, IrNode>();
  for (const n of ir.nodes) { const g = groupOf.get(n); if (g) last.set(root(g), n); }
  const blocks: Block[] = [];
  let count = 0;
  for (const n of ir.nodes) {
    const g = groupOf.get(n);
    if (!g) { blocks.push({ kind: 'node', node: n }); continue; }
    const r = root(g);
    if (last.get(r) !== n) continue;
    const nodes = [...r.nodes].sort((a, b) => index.get(a)! - index.get(b)!);
    const input = r.input;
    const first = nodes.find((m) => m.inputs.includes(input))!;
    count++;
    blocks.push({ kind: 'operator', region: { id: `op${count}`, input, inShape: first.inShapes[first.inputs.indexOf(input)], output: n.output, outShape: n.outShape, nodes } });
  }
  return blocks;
}
