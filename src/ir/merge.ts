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

/**
 * Groups linear nodes into maximal regions (ALGORITHMS.md §1, "merge before you multiply"): a node joins the
 * regions feeding it when every value passed between them is consumed only inside, and all of them read one source.
 */
export function mergeLinear(ir: IrGraph): Block[] {
  const consumers = new Map<string, IrNode[]>();
  const producer = new Map<string, IrNode>();
  for (const n of ir.nodes) {
    producer.set(n.output, n);
    for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  const regionOf = new Map<IrNode, Set<LinearNode>>();
  const index = new Map<IrNode, number>(ir.nodes.map((n, i) => [n, i]));
  const standalone = new Set<IrNode>();

  const externalInputs = (set: Set<LinearNode>) => {
    const produced = new Set([...set].map((n) => n.output));
    const ext = new Set<string>();
    for (const n of set) for (const i of n.inputs) if (!produced.has(i)) ext.add(i);
    return ext;
  };

  for (const n of ir.nodes) {
    if (n.kind !== 'linear') continue;
    const u = new Set<LinearNode>([n]);
    let changed = true;
    while (changed) {
      changed = false;
      for (const v of externalInputs(u)) {
        const p = producer.get(v);
        if (!p || p.kind !== 'linear' || standalone.has(p) || v === ir.output) continue;
        const r = regionOf.get(p);
        if (!r || [...r].some((m) => u.has(m))) continue;
        const inside = new Set<IrNode>([...u, ...r]);
        if ((consumers.get(v) ?? []).every((c) => inside.has(c))) {
          for (const m of r) u.add(m);
          changed = true;
        }
      }
    }
    if (externalInputs(u).size === 1) {
      for (const m of u) regionOf.set(m, u);
    } else if (n.inputs.length === 1 || new Set(n.inputs).size === 1) {
      regionOf.set(n, new Set([n]));
    } else {
      standalone.add(n);
    }
  }

  const blocks: Block[] = [];
  let count = 0;
  for (const n of ir.nodes) {
    const r = regionOf.get(n);
    if (!r) { blocks.push({ kind: 'node', node: n }); continue; }
    const nodes = [...r].sort((a, b) => index.get(a)! - index.get(b)!);
    const last = nodes[nodes.length - 1];
    // emit at the region's sink, once every external input has been computed
    if (n !== last) continue;
    const input = [...externalInputs(r)][0];
    const first = nodes.find((m) => m.inputs.includes(input))!;
    count++;
    blocks.push({ kind: 'operator', region: { id: `op${count}`, input, inShape: first.inShapes[first.inputs.indexOf(input)], output: last.output, outShape: last.outShape, nodes } });
  }
  return blocks;
}
