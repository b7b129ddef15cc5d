import type { LinearPrim, Shape } from '../ir/types.js';
import { sizeOf, toFloat64, type Tensor } from '../ir/tensor.js';
import { constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearChain, productOfInputs } from './linear.js';

/** The axis labels of every Einsum operand and of its output; ellipsis axes get the labels '.0', '.1', … (right-aligned). */
export interface EinsumLabels {
  readonly inputs: readonly (readonly string[])[];
  readonly output: readonly string[];
}

/** Most terms the folded constant of an Einsum may take to compute (its labels' sizes multiplied). */
const MAX_CONSTANT_WORK = 5e7;

/**
 * Parses an Einsum equation for operands of the given ranks (ONNX Einsum-12: letters, one '...' per term, whitespace
 * ignored; without '->' the output is the ellipsis axes followed by the letters used exactly once, sorted).
 * Throws an Error whose message says what is wrong.
 */
export function parseEinsum(equation: string, ranks: readonly number[]): EinsumLabels {
  const eq = equation.replace(/\s+/g, '');
  const sides = eq.split('->');
  if (sides.length > 2) throw new Error(`equation '${equation}' has more than one '->'`);
  const terms = sides[0].split(',');
  if (terms.length !== ranks.length) throw new Error(`equation '${equation}' names ${terms.length} operands, but the node has ${ranks.length}`);
  const split = (term: string, what: string) => {
    const parts = term.split('...');
    if (parts.length > 2) throw new Error(`${what} '${term}' has more than one ellipsis`);
    for (const p of parts) if (!/^[a-zA-Z]*$/.test(p)) throw new Error(`${what} '${term}' has characters other than letters and one '...'`);
    return { before: [...parts[0]], after: parts.length === 2 ? [...parts[1]] : null };
  };
  const parsed = terms.map((term, i) => {
    const { before, after } = split(term, `operand ${i}`);
    const letters = before.length + (after?.length ?? 0);
    const ellipsis = ranks[i] - letters;
    if (after === null ? ellipsis !== 0 : ellipsis < 0) throw new Error(`operand ${i} '${term}' names ${letters} axes, but it has rank ${ranks[i]}`);
    return { before, after: after ?? [], ellipsis };
  });
  const e = Math.max(0, ...parsed.map((p) => p.ellipsis));
  const block = (n: number) => Array.from({ length: n }, (_, j) => `.${e - n + j}`);
  const inputs = parsed.map((p) => [...p.before, ...block(p.ellipsis), ...p.after]);
  let output: string[];
  if (sides.length === 2) {
    const { before, after } = split(sides[1], 'output');
    if (after === null && terms.some((t) => t.includes('...')) && e > 0) throw new Error(`the operands have an ellipsis but output '${sides[1]}' does not`);
    output = after === null ? before : [...before, ...block(e), ...after];
    const used = new Set(inputs.flat());
    for (const l of output) if (!used.has(l)) throw new Error(`output label '${l}' names no operand axis`);
    if (new Set(output).size !== output.length) throw new Error(`output '${sides[1]}' repeats a label`);
  } else {
    const count = new Map<string, number>();
    for (const t of terms) for (const c of t.replace('...', '')) count.set(c, (count.get(c) ?? 0) + 1);
    output = [...block(e), ...[...count.keys()].filter((c) => count.get(c) === 1).sort()];
  }
  return { inputs, output };
}

/** The size of every label, checking that operands agree (a size-1 axis broadcasts). */
function labelSizes(ctx: ConvertContext, labels: EinsumLabels, shapes: readonly Shape[]): Map<string, number> {
  const size = new Map<string, number>();
  labels.inputs.forEach((ls, i) => ls.forEach((l, a) => {
    const d = shapes[i][a], s = size.get(l);
    if (s === undefined || s === 1) size.set(l, d);
    else if (d !== 1 && d !== s) unsupported(ctx, `label '${l}' has size ${s} in one operand and ${d} in operand ${i}`);
  }));
  return size;
}

/** Σ over the labels not in `target` of the product of the constant operands, as a row-major tensor over `target`. */
function foldConstants(ctx: ConvertContext, ops: { labels: readonly string[]; data: Float64Array; dims: Shape }[], target: readonly string[], size: ReadonlyMap<string, number>): Float64Array {
  const all = [...new Set([...target, ...ops.flatMap((o) => o.labels)])];
  const sizes = all.map((l) => size.get(l)!);
  const work = sizes.reduce((a, b) => a * b, 1);
  if (work > MAX_CONSTANT_WORK) unsupported(ctx, `folding its constant operands takes ${work.toExponential(2)} products, over the limit of ${MAX_CONSTANT_WORK.toExponential(0)}`);
  // per label, the stride it contributes to each operand's flat index (a repeated label adds both axes' strides: a diagonal)
  const strideOf = (labels: readonly string[], dims: Shape) => {
    const s = new Array<number>(all.length).fill(0);
    let stride = 1;
    for (let a = labels.length - 1; a >= 0; a--) { s[all.indexOf(labels[a])] += stride; stride *= dims[a]; }
    return s;
  };
  const opStrides = ops.map((o) => strideOf(o.labels, o.dims));
  const outStrides = strideOf(target, target.map((l) => size.get(l)!));
  const out = new Float64Array(target.reduce((a, l) => a * size.get(l)!, 1));
  const idx = new Array<number>(all.length).fill(0);
  const pos = ops.map(() => 0);
  let o = 0;
  for (let n = 0; n < work; n++) {
    let v = 1;
    for (let k = 0; k < ops.length; k++) v *= ops[k].data[pos[k]];
    out[o] += v;
    // odometer over all labels, last label fastest, keeping every flat index in step
    for (let j = all.length - 1; j >= 0; j--) {
      if (++idx[j] < sizes[j]) {
        o += outStrides[j];
        for (let k = 0; k < ops.length; k++) pos[k] += opStrides[k][j];
        break;
      }
      o -= outStrides[j] * (sizes[j] - 1);
      for (let k = 0; k < ops.length; k++) pos[k] -= opStrides[k][j] * (sizes[j] - 1);
      idx[j] = 0;
    }
  }
  return out;
}

/** A chain of linear steps from the dynamic operand, tracking the label of each current axis. */
class Steps {
  readonly steps: { prim: LinearPrim; shape: Shape }[] = [];
  constructor(public shape: number[], public labels: string[]) {}
  push(prim: LinearPrim, shape: number[], labels: string[]): void {
    this.steps.push({ prim, shape });
    this.shape = shape;
    this.labels = labels;
  }
  reshape(shape: number[], labels: string[]): void {
    const last = this.steps[this.steps.length - 1];
    if (last && last.prim.op === 'reshape') this.steps.pop();
    this.push({ op: 'reshape' }, shape, labels);
  }
  transposeTo(labels: string[], size: ReadonlyMap<string, number>): void {
    const perm = labels.map((l) => this.labels.indexOf(l));
    if (perm.every((p, i) => p === i)) return;
    this.push({ op: 'transpose', perm }, labels.map((l) => size.get(l)!), labels);
  }
}

/**
 * Einsum with one input-dependent operand is linear in it: the constant operands are folded into one tensor over the
 * labels they share with that operand or the output; then the operand's diagonals are taken (a 0/1 selection), labels
 * of its own that the output drops are summed, and the rest is a batched MatMul with the folded constant (or an
 * elementwise scaling when nothing is contracted), transposed to the output's order. Two input-dependent operands
 * multiply activations together: unbounded.
 */
const einsum: Converter = (ctx) => {
  const dyn = dynamicInputs(ctx);
  const equation = ctx.attrs.string('equation', '');
  if (dyn.length > 1) return productOfInputs(ctx, `multiplies ${dyn.length} input-dependent operands together (equation '${equation}')`);
  const shapes = ctx.inputs.map((v) => (v.dynamic ? v.shape : v.tensor ? v.tensor.dims : []));
  let labels: EinsumLabels;
  try { labels = parseEinsum(equation, shapes.map((s) => s.length)); } catch (e) { unsupported(ctx, `${(e as Error).message}.`); }
  const size = labelSizes(ctx, labels, shapes);
  // an axis of size 1 broadcast against a longer one takes a label of its own: summing over it drops it
  const own = labels.inputs.map((ls, i) => ls.map((l, a) => {
    if (shapes[i][a] !== 1 || size.get(l) === 1) return l;
    const fresh = `${l}#${i}.${a}`;
    size.set(fresh, 1);
    return fresh;
  }));
  const x = dyn[0];
  const xl = own[x.index];
  const out = labels.output;
  const constants = ctx.inputs.flatMap((v, i) => (i === x.index ? [] : [{ labels: own[i], tensor: constantInput(ctx, i) }]));
  for (const c of constants) if (!c.tensor) unsupported(ctx, 'an absent operand has no value to multiply by.');
  const cLabels = new Set(constants.flatMap((c) => c.labels));
  const s = new Steps([...x.shape], [...xl]);

  // diagonals: group each label's axes together, merge them, and keep the n entries i·(1 + n + … + n^(k−1))
  const unique = [...new Set(xl)];
  if (unique.length < xl.length) {
    const order = unique.flatMap((l) => xl.flatMap((m, a) => (m === l ? [a] : [])));
    if (!order.every((p, i) => p === i)) s.push({ op: 'transpose', perm: order }, order.map((a) => x.shape[a]), order.map((a) => xl[a]));
    const counts = unique.map((l) => xl.filter((m) => m === l).length);
    s.reshape(unique.map((l, j) => size.get(l)! ** counts[j]), unique.map((l, j) => (counts[j] > 1 ? `${l}*` : l)));
    unique.forEach((l, j) => {
      if (counts[j] === 1) return;
      const n = size.get(l)!, cols = n ** counts[j];
      const step = n === 1 ? 0 : (cols - 1) / (n - 1);
      const m = new Float64Array(n * cols);
      for (let i = 0; i < n; i++) m[i * cols + i * step] = 1;
      const shape = [...s.shape];
      shape[j] = n;
      const next = [...s.labels];
      next[j] = l;
      s.push({ op: 'axisMatrix', axis: j, matrix: m, rows: n, cols }, shape, next);
    });
  }
  // labels only this operand has and the output drops: summed
  const summed = unique.filter((l) => !cLabels.has(l) && !out.includes(l));
  const kept = unique.filter((l) => !summed.includes(l));
  if (summed.length) {
    const axes = summed.filter((l) => size.get(l)! > 1).map((l) => s.labels.indexOf(l));
    if (axes.length) s.push({ op: 'reduce', axes, mean: false }, s.shape.map((d, a) => (summed.includes(s.labels[a]) ? 1 : d)), s.labels);
    s.reshape(kept.map((l) => size.get(l)!), kept);
  }
  const dims = (ls: readonly string[]) => ls.map((l) => size.get(l)!);
  const prod = (ls: readonly string[]) => ls.reduce((a, l) => a * size.get(l)!, 1);
  if (constants.length) {
    const batch = kept.filter((l) => cLabels.has(l) && out.includes(l));
    const contract = kept.filter((l) => cLabels.has(l) && !out.includes(l));
    const xKeep = kept.filter((l) => !cLabels.has(l));
    const cFree = out.filter((l) => cLabels.has(l) && !kept.includes(l));
    const folded = foldConstants(ctx, constants.map((c) => ({ labels: c.labels, data: toFloat64(c.tensor!), dims: c.tensor!.dims })), [...batch, ...contract, ...cFree], size);
    let finite = true;
    for (const v of folded) if (!Number.isFinite(v)) finite = false;
    if (!finite) unsupported(ctx, 'its constant operands contain NaN or infinite values; fix or retrain the model.');
    if (contract.length === 0 && cFree.length === 0) {
      // nothing contracted: an elementwise scaling, the folded constant laid out along the operand's own axes
      const factor: Tensor = { dtype: 'float64', dims: s.labels.map((l) => (batch.includes(l) ? size.get(l)! : 1)), data: folded };
      s.push({ op: 'scale', factor }, s.shape, s.labels);
    } else {
      s.transposeTo([...batch, ...xKeep, ...contract], size);
      const [b, k1, kc, f] = [prod(batch), prod(xKeep), prod(contract), prod(cFree)];
      const lead = batch.length ? [b] : [];
      s.reshape([...lead, k1, kc], []);
      const weight: Tensor = { dtype: 'float64', dims: [...lead, kc, f], data: folded };
      s.push({ op: 'matmul', weight, side: 'right' }, [...lead, k1, f], []);
      s.reshape([...dims(batch), ...dims(xKeep), ...dims(cFree)], [...batch, ...xKeep, ...cFree]);
    }
  }
  s.transposeTo([...out], size);
  const want = ctx.outShapes[0];
  const got = dims(out);
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) unsupported(ctx, `equation '${equation}' gives shape [${got.join(', ')}] here, but onnxruntime computed [${want.join(', ')}].`);
  if (s.steps.length === 0) s.push({ op: 'reshape' }, got, [...out]);
  if (sizeOf(got) === 0) unsupported(ctx, 'its output is empty.');
  return linearChain(ctx, s.steps);
};

/** Converters of Einsum. */
export const einsumConverters = { einsum };
