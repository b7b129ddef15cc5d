import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findSegments, MAX_SEGMENT_REGIONS } from '../../../src/estimators/cp.js';
import { mergeLinear } from '../../../src/ir/merge.js';
import type { IrGraph, IrNode } from '../../../src/ir/types.js';
import { float32Tensor } from '../../../src/ir/tensor.js';

/** A chain of `layers` MatMul → Relu pairs (the last without Relu), as IR. */
function chain(layers: number): IrGraph {
  const nodes: IrNode[] = [];
  let prev = 'x';
  for (let k = 0; k < layers; k++) {
    nodes.push({ kind: 'linear', name: `mm${k}`, opType: 'MatMul', inputs: [prev], inShapes: [[1, 2]], output: `m${k}`, outShape: [1, 2], prim: { op: 'matmul', side: 'right', weight: float32Tensor([1, 0, 0, 1], [2, 2]) } });
    prev = `m${k}`;
    if (k < layers - 1) { nodes.push({ kind: 'activation', name: `relu${k}`, opType: 'Relu', fn: 'Relu', slope: [0, 1], inputs: [prev], inShapes: [[1, 2]], output: `r${k}`, outShape: [1, 2] }); prev = `r${k}`; }
  }
  return { input: 'x', inputShape: [1, 2], output: prev, outputShape: [1, 2], nodes, warnings: [] };
}

test(`findSegments cuts a chain of 300 operators into segments of at most ${MAX_SEGMENT_REGIONS} (CP is cubic in a segment's length), in order, covering every operator once`, () => {
  const ir = chain(300);
  const blocks = mergeLinear(ir);
  const segments = findSegments(ir, blocks);
  assert.deepEqual(segments.map((s) => s.regions.length), [128, 128, 44]);
  for (const s of segments) assert.equal(s.activations.length, s.regions.length - 1);
  // consecutive segments: each starts where the activation after the previous one ends
  for (let k = 1; k < segments.length; k++) assert.equal(segments[k].input, `r${segments.slice(0, k).reduce((a, s) => a + s.regions.length, 0) - 1}`);
  assert.deepEqual(segments.flatMap((s) => s.regions.map((r) => r.nodes[0].name)), Array.from({ length: 300 }, (_, k) => `mm${k}`));
  // a chain that fits stays whole; a remainder of one operator is no segment
  assert.deepEqual(findSegments(chain(128), mergeLinear(chain(128))).map((s) => s.regions.length), [128]);
  assert.deepEqual(findSegments(chain(129), mergeLinear(chain(129))).map((s) => s.regions.length), [128]);
});
