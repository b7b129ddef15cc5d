import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeLinear, type Block } from '../../../src/ir/merge.js';
import type { IrGraph, IrNode, LinearNode } from '../../../src/ir/types.js';
import { mulberry32 } from '../../helpers/random.js';

/**
 * The definition of the merge, written the direct (quadratic) way: for each linear node in order, grow a candidate
 * set by absorbing any region that feeds it through a value consumed only inside, until nothing changes; keep it
 * when it reads exactly one outside value. The fast mergeLinear must give the same blocks.
 */
function referenceMerge(ir: IrGraph): { kind: string; nodes: string[]; input?: string; output: string }[] {
  const consumers = new Map<string, IrNode[]>();
  const producer = new Map<string, IrNode>();
  for (const n of ir.nodes) {
    producer.set(n.output, n);
    for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  const regionOf = new Map<IrNode, Set<LinearNode>>();
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
        if ((consumers.get(v) ?? []).every((c) => inside.has(c))) { for (const m of r) u.add(m); changed = true; }
      }
    }
    if (externalInputs(u).size === 1) for (const m of u) regionOf.set(m, u);
    else if (new Set(n.inputs).size === 1) regionOf.set(n, new Set([n]));
    else standalone.add(n);
  }
  const out: { kind: string; nodes: string[]; input?: string; output: string }[] = [];
  for (const n of ir.nodes) {
    const r = regionOf.get(n);
    if (!r) { out.push({ kind: 'node', nodes: [n.name], output: n.output }); continue; }
    const nodes = ir.nodes.filter((m) => r.has(m as LinearNode));
    if (nodes[nodes.length - 1] !== n) continue;
    out.push({ kind: 'operator', nodes: nodes.map((m) => m.name), input: [...externalInputs(r)][0], output: n.output });
  }
  return out;
}

const summary = (blocks: Block[]) => blocks.map((b) => (b.kind === 'operator'
  ? { kind: 'operator', nodes: b.region.nodes.map((n) => n.name), input: b.region.input, output: b.region.output }
  : { kind: 'node', nodes: [b.node.name], output: b.node.output }));

const linear = (name: string, inputs: string[], op: 'reshape' | 'sum' = inputs.length > 1 ? 'sum' : 'reshape'): IrNode => ({
  kind: 'linear', name, opType: op === 'sum' ? 'Add' : 'Identity', inputs, inShapes: inputs.map(() => [2]), output: name, outShape: [2],
  prim: op === 'sum' ? { op: 'sum', signs: inputs.map(() => 1) } : { op: 'reshape' },
});
const relu = (name: string, input: string): IrNode => ({ kind: 'activation', name, opType: 'Relu', fn: 'relu', slope: [0, 1], inputs: [input], inShapes: [[2]], output: name, outShape: [2] });
const graph = (nodes: IrNode[]): IrGraph => ({ input: 'x', inputShape: [2], output: nodes[nodes.length - 1].output, outputShape: [2], nodes, warnings: [] });

/** A random DAG of linear nodes (1–3 inputs, duplicates allowed), activations and fan-out. */
function randomGraph(seed: number, size: number): IrGraph {
  const rnd = mulberry32(seed);
  const values = ['x'];
  const nodes: IrNode[] = [];
  for (let k = 0; k < size; k++) {
    // mostly recent values, so chains and diamonds both occur
    const pick = () => values[Math.max(0, values.length - 1 - Math.floor(rnd() ** 2 * values.length))];
    const name = `n${k}`;
    const roll = rnd();
    if (roll < 0.2) nodes.push(relu(name, pick()));
    else if (roll < 0.55) nodes.push(linear(name, Array.from({ length: 2 + Math.floor(rnd() * 2) }, pick)));
    else nodes.push(linear(name, [pick()]));
    values.push(name);
  }
  return graph(nodes);
}

test('mergeLinear equals the direct definition of the merge on 400 random graphs with diamonds, fan-out and activations', () => {
  let regions = 0, multi = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const ir = randomGraph(seed, 3 + (seed % 40));
    const fast = summary(mergeLinear(ir));
    assert.deepEqual(fast, referenceMerge(ir), `seed ${seed}`);
    for (const b of fast) if (b.kind === 'operator') { regions++; if (b.nodes.length > 1) multi++; }
  }
  // the comparison must exercise real merging, not only single-node regions
  assert.ok(multi > 200 && regions > multi, `${regions} regions, ${multi} with several nodes`);
});

test('mergeLinear: a residual diamond merges into one operator; a value read outside stops the merge', () => {
  const diamond = graph([linear('a', ['x']), linear('b', ['a']), linear('c', ['a']), linear('d', ['b', 'c'])]);
  assert.deepEqual(summary(mergeLinear(diamond)), [{ kind: 'operator', nodes: ['a', 'b', 'c', 'd'], input: 'x', output: 'd' }]);
  const leaky = graph([linear('a', ['x']), linear('b', ['a']), relu('r', 'a'), linear('d', ['b', 'r'])]);
  assert.deepEqual(summary(mergeLinear(leaky)), [
    { kind: 'operator', nodes: ['a'], input: 'x', output: 'a' },
    { kind: 'operator', nodes: ['b'], input: 'a', output: 'b' },
    { kind: 'node', nodes: ['r'], output: 'r' },
    { kind: 'node', nodes: ['d'], output: 'd' },
  ]);
});

test('mergeLinear is near-linear: a chain of 100,000 linear nodes and one of 50,000 linear+activation pairs', () => {
  const chain: IrNode[] = [];
  for (let k = 0; k < 100_000; k++) chain.push(linear(`i${k}`, [k ? `i${k - 1}` : 'x']));
  const one = mergeLinear(graph(chain));
  assert.equal(one.length, 1);
  assert.equal(one[0].kind === 'operator' && one[0].region.nodes.length, 100_000);
  const layers: IrNode[] = [];
  for (let k = 0; k < 50_000; k++) layers.push(linear(`g${k}`, [k ? `r${k - 1}` : 'x']), relu(`r${k}`, `g${k}`));
  const blocks = mergeLinear(graph(layers));
  assert.equal(blocks.length, 100_000);
  assert.ok(blocks.every((b, i) => (i % 2 === 0 ? b.kind === 'operator' && b.region.input === (i ? `r${i / 2 - 1}` : 'x') : b.kind === 'node')));
});
