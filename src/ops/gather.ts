import type { IrNode, LinearPrim, Shape } from '../ir/types.js';
import { sizeOf, toNumbers } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearChain } from './linear.js';
import { selectPrim } from './shape.js';

/** Most entries the dense 0/1 selection matrices of one gather may hold (float64: 256 MiB). */
const MAX_SELECTION_ENTRIES = 2 ** 25;

/** Indices chosen by input-dependent values: the output jumps when they change. */
function inputDependentIndices(ctx: ConvertContext): IrNode[] | null {
  const dyn = dynamicInputs(ctx);
  if (dyn.length === 1 && dyn[0].index === 0) return null;
  return [{ kind: 'discontinuous', reason: 'indexes with input-dependent indices', derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
}

function checkSize(ctx: ConvertContext, entries: number): void {
  if (entries > MAX_SELECTION_ENTRIES) unsupported(ctx, `its selection needs ${entries.toExponential(2)} matrix entries, over the limit of ${MAX_SELECTION_ENTRIES}; analyse a smaller input with --input-shape.`);
}

/** Index values with negatives wrapped, each checked against the axis length n. */
function wrapIndices(ctx: ConvertContext, raw: number[], n: number, what: string): number[] {
  return raw.map((i) => {
    const j = i < 0 ? i + n : i;
    if (!(j >= 0 && j < n)) unsupported(ctx, `index ${i} is outside [−${n}, ${n - 1}] for ${what} of length ${n}.`);
    return j;
  });
}

/**
 * GatherElements (opset 11+): output[p] = data[p with p[axis] replaced by indices[p]]. Each position of the other axes
 * picks its own elements along `axis`: a batched 0/1 MatMul (one n × m selection per position), or one selection
 * along the axis when every position picks the same.
 */
const gatherElements: Converter = (ctx) => {
  const jump = inputDependentIndices(ctx);
  if (jump) return jump;
  const x = dynamicInputs(ctx)[0].shape;
  const r = x.length;
  const a0 = ctx.attrs.int('axis', 0);
  const axis = a0 < 0 ? a0 + r : a0;
  if (!(axis >= 0 && axis < r)) unsupported(ctx, `axis ${a0} is outside [−${r}, ${r - 1}] for a rank-${r} input.`);
  const it = constantInput(ctx, 1)!;
  const id = it.dims;
  if (id.length !== r) unsupported(ctx, `indices of rank ${id.length} must have the rank ${r} of the data.`);
  for (let a = 0; a < r; a++) if (a !== axis && id[a] > x[a]) unsupported(ctx, `indices [${id.join(', ')}] are longer than data [${x.join(', ')}] along axis ${a}.`);
  const n = x[axis], m = id[axis];
  const idx = wrapIndices(ctx, toNumbers(it), n, `axis ${axis}`);
  const steps: { prim: LinearPrim; shape: Shape }[] = [];
  // the other axes of the data beyond the indices' extent are never read: crop them
  const crop = new Array(2 * r).fill(0);
  for (let a = 0; a < r; a++) if (a !== axis) crop[a + r] = id[a] - x[a];
  const cropped = x.map((d, a) => (a === axis ? d : id[a]));
  if (crop.some((p) => p !== 0)) steps.push({ prim: { op: 'pad', pads: crop }, shape: cropped });
  // rows: one per position of the other axes, listing the m indices along `axis` in order
  const others = [...Array(r).keys()].filter((a) => a !== axis);
  const rows = sizeOf(others.map((a) => id[a]));
  const inner = sizeOf(id.slice(axis + 1));
  const rowOf = (flat: number) => Math.floor(flat / (m * inner)) * inner + (flat % inner);
  const tOf = (flat: number) => Math.floor(flat / inner) % m;
  const sel: number[][] = Array.from({ length: rows }, () => new Array(m));
  idx.forEach((v, flat) => { sel[rowOf(flat)][tOf(flat)] = v; });
  if (sel.every((row) => row.every((v, t) => v === sel[0][t]))) {
    checkSize(ctx, m * n);
    steps.push({ prim: selectPrim(axis, r, n, sel[0] ?? []), shape: id });
    return linearChain(ctx, steps);
  }
  checkSize(ctx, rows * n * m);
  const perm = [...others, axis];
  const moved = perm.map((a) => cropped[a]);
  if (axis !== r - 1) steps.push({ prim: { op: 'transpose', perm }, shape: moved });
  steps.push({ prim: { op: 'reshape' }, shape: [rows, 1, n] });
  const w = new Float64Array(rows * n * m);
  sel.forEach((row, k) => row.forEach((v, t) => { w[(k * n + v) * m + t] = 1; }));
  steps.push({ prim: { op: 'matmul', weight: { dtype: 'float64', dims: [rows, n, m], data: w }, side: 'right' }, shape: [rows, 1, m] });
  steps.push({ prim: { op: 'reshape' }, shape: [...moved.slice(0, -1), m] });
  if (axis !== r - 1) steps.push({ prim: { op: 'transpose', perm: perm.map((_, i) => perm.indexOf(i)) }, shape: id });
  return linearChain(ctx, steps);
};

/**
 * GatherND (opset 11+, batch_dims from 12): each index tuple of length k picks a slice of the data after its first
 * batch_dims axes. With the data viewed as [B, N, rest] (N = the k indexed axes together), that is a 0/1 selection
 * along N: one matrix for all batches when they agree, else a batched 0/1 MatMul from the left.
 */
const gatherND: Converter = (ctx) => {
  const jump = inputDependentIndices(ctx);
  if (jump) return jump;
  const x = dynamicInputs(ctx)[0].shape;
  const b = ctx.attrs.int('batch_dims', 0);
  const it = constantInput(ctx, 1)!;
  const id = it.dims;
  const q = id.length;
  if (q < 1) unsupported(ctx, 'indices must have rank ≥ 1.');
  const k = id[q - 1];
  if (!(b >= 0 && b < Math.min(q, x.length + 1))) unsupported(ctx, `batch_dims ${b} must be in [0, ${Math.min(q, x.length + 1) - 1}].`);
  if (b + k > x.length) unsupported(ctx, `index tuples of length ${k} after ${b} batch axes exceed the data's rank ${x.length}.`);
  for (let a = 0; a < b; a++) if (id[a] !== x[a]) unsupported(ctx, `batch axis ${a} has ${id[a]} indices but ${x[a]} data entries.`);
  const indexed = x.slice(b, b + k);
  const B = sizeOf(x.slice(0, b)), N = sizeOf(indexed), rest = sizeOf(x.slice(b + k)), M = sizeOf(id.slice(b, q - 1));
  const raw = toNumbers(it);
  // flat position along N of each tuple, per batch
  const sel: number[][] = Array.from({ length: B }, () => new Array(M));
  for (let t = 0; t < B * M; t++) {
    let flat = 0;
    for (let j = 0; j < k; j++) flat = flat * indexed[j] + wrapIndices(ctx, [raw[t * k + j]], indexed[j], `axis ${b + j}`)[0];
    sel[Math.floor(t / M)][t % M] = flat;
  }
  const out = ctx.outShapes[0];
  const same = (a: Shape, c: Shape) => a.length === c.length && a.every((d, i) => d === c[i]);
  const steps: { prim: LinearPrim; shape: Shape }[] = same(x, [B, N, rest]) ? [] : [{ prim: { op: 'reshape' }, shape: [B, N, rest] }];
  if (sel.every((row) => row.every((v, t) => v === sel[0][t]))) {
    checkSize(ctx, M * N);
    const m = new Float64Array(M * N);
    sel[0].forEach((c, row) => { m[row * N + c] = 1; });
    steps.push({ prim: { op: 'axisMatrix', axis: 1, matrix: m, rows: M, cols: N }, shape: [B, M, rest] });
  } else {
    checkSize(ctx, B * M * N);
    const w = new Float64Array(B * M * N);
    sel.forEach((row, bi) => row.forEach((c, t) => { w[(bi * M + t) * N + c] = 1; }));
    steps.push({ prim: { op: 'matmul', weight: { dtype: 'float64', dims: [B, M, N], data: w }, side: 'left' }, shape: [B, M, rest] });
  }
  if (!same(out, [B, M, rest])) steps.push({ prim: { op: 'reshape' }, shape: out });
  if (sizeOf(out) !== B * M * rest) unsupported(ctx, `the output [${out.join(', ')}] onnxruntime computed does not hold the ${B * M * rest} selected elements.`);
  return linearChain(ctx, steps);
};

/** Converters of GatherElements and GatherND with constant indices. */
export const gatherConverters = { gatherElements, gatherND };
