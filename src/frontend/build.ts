import { LipcheckError } from '../errors.js';
import { ModelRunner, randomTensor } from '../backend/runner.js';
import { prestartOrtWorkers, WORKER_MIN_FLOP } from '../backend/ort-pool.js';
import { resolveDevice, type RuntimeOptions } from '../backend/runtime.js';
import type { OnnxModel, OnnxNode } from '../onnx/read-model.js';
import { DATA_TYPES } from '../onnx/proto.js';
import { halfToFloat, zeroFeeds } from '../onnx/tensor.js';
import { encodeForRuntimeFeeding } from '../onnx/writer.js';
import { auditConstants, UnsupportedNode, type ConvertContext, type InputValue } from '../ops/context.js';
import { fusePatterns } from '../ops/patterns.js';
import { findOp } from '../ops/registry.js';
import { auditIr, badNumbersError } from '../ir/audit.js';
import { withOffsets } from './offsets.js';
import { isFloatType, type DType, type Tensor } from '../ir/tensor.js';
import type { IrGraph, IrNode, Shape } from '../ir/types.js';

/** Which part of the model to analyse, and at what input shape. */
export interface BuildOptions {
  readonly inputName?: string;
  readonly outputName?: string;
  readonly inputShape?: readonly number[];
  readonly seed: number;
  readonly runtime: RuntimeOptions;
  /**
   * Called once the model is known to have a product of WORKER_MIN_FLOP or more on the CPU provider, so that worker
   * threads start while the conversion runs (default: the session workers, prestartOrtWorkers).
   */
  readonly onLargeProducts?: () => void;
}

/** The IR plus what the build learned about the model. */
export interface BuildResult {
  readonly ir: IrGraph;
  readonly inputName: string;
  readonly outputName: string;
  readonly inputShape: Shape;
  readonly outputShape: Shape;
  readonly otherInputs: readonly string[];
}

/** Memory lipcheck allows itself, and how many float64 input-sized vectors an analysis keeps at least. */
const MEMORY_LIMIT_BYTES = 16 * 2 ** 30;
const MEMORY_VECTORS = 40;

/** Weights this large are fed to the one-off shape run instead of baked into its session (see encodeForRuntimeFeeding). */
const FEED_BYTES = 1 << 20;

/** Ops whose output depends only on the input's shape, never its values. */
const SHAPE_ONLY = new Set(['Shape', 'Size']);

/**
 * Single-output ops whose output has their first input's shape and element type: the shape run does not fetch their
 * outputs but copies the input's shape (onnxruntime takes superlinear time in the number of fetched outputs: a chain
 * of 40,000 Identity nodes is 15 s to load with no extra output and 69 s with every one).
 */
const SAME_SHAPE = new Set(['Identity', 'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Elu', 'Selu', 'Softplus', 'Softsign', 'HardSigmoid', 'Neg']);

function topoOrder(model: OnnxModel, needed: Set<OnnxNode>, available: Set<string>): OnnxNode[] {
  const producer = new Map<string, OnnxNode>();
  for (const n of model.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  const order: OnnxNode[] = [];
  const state = new Map<OnnxNode, 1 | 2>();
  // depth-first, post-order, with an explicit stack (the current path): recursion overflows on 100,000-node chains,
  // and copying the path at every step made it quadratic
  for (const root of model.nodes) {
    if (!needed.has(root) || state.get(root) === 2) continue;
    const stack: { node: OnnxNode; next: number }[] = [{ node: root, next: 0 }];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const n = top.node;
      if (top.next === n.inputs.length) {
        stack.pop();
        state.set(n, 2);
        if (needed.has(n)) order.push(n);
        continue;
      }
      const i = n.inputs[top.next++];
      if (!i || available.has(i)) continue;
      const p = producer.get(i);
      if (!p) throw new LipcheckError('UNREADABLE', `${model.file}: ${n.opType} node '${n.name}' reads '${i}', which no node, initializer or graph input provides. The model is incomplete; re-export it.`);
      const s = state.get(p);
      if (s === 2) continue;
      if (s === 1) {
        const path = stack.map((f) => f.node);
        const cycle = listed([...path.slice(path.indexOf(p)), p].map((m) => `'${m.name}'`), ' → ');
        throw new LipcheckError('UNREADABLE', `${model.file}: the graph has a cycle (${cycle}). ONNX graphs must be acyclic; re-export the model.`);
      }
      state.set(p, 1);
      stack.push({ node: p, next: 0 });
    }
  }
  return order;
}

function chooseInput(model: OnnxModel, options: BuildOptions) {
  const candidates = model.inputs.filter((i) => !model.initializers.has(i.name));
  if (candidates.length === 0) throw new LipcheckError('UNSUPPORTED', `${model.file} declares no graph input (every input has an initializer), so there is nothing to analyse.`);
  let input = candidates[0];
  if (options.inputName) {
    const found = candidates.find((c) => c.name === options.inputName);
    if (!found) throw new LipcheckError('USAGE', `--input '${options.inputName}' is not an input of ${model.file}; its inputs are ${listed(candidates.map((c) => `'${c.name}'`))}.`);
    input = found;
  } else if (candidates.length > 1) {
    throw new LipcheckError('USAGE', `${model.file} has ${candidates.length} inputs (${listed(candidates.map((c) => `'${c.name}'`))}); choose the one to analyse with --input NAME.`);
  }
  const elem = DATA_TYPES[input.elemType] as DType | undefined;
  if (elem && !isFloatType(elem)) throw new LipcheckError('UNSUPPORTED', `Input '${input.name}' of ${model.file} has type ${elem}; a Lipschitz constant needs a real-valued (float) input.`);
  const declared = input.dims;
  let shape: number[];
  if (options.inputShape) {
    shape = [...options.inputShape];
    if (declared && declared.length !== shape.length) {
      throw new LipcheckError('USAGE', `--input-shape ${shape.join(',')} has ${shape.length} dimensions, but input '${input.name}' of ${model.file} has ${declared.length} ([${declared.map((d) => d ?? '?').join(', ')}]).`);
    }
    declared?.forEach((d, i) => {
      if (typeof d === 'number' && d !== shape[i]) {
        throw new LipcheckError('USAGE', `--input-shape ${shape.join(',')} contradicts input '${input.name}' of ${model.file}: dimension ${i} is fixed at ${d}.`);
      }
    });
  } else {
    if (!declared) throw new LipcheckError('USAGE', `Input '${input.name}' of ${model.file} declares no shape; give one with --input-shape, e.g. --input-shape 1,3,224,224.`);
    shape = declared.map((d, i) => {
      if (typeof d === 'number') return d;
      if (i === 0) return 1;
      throw new LipcheckError('USAGE', `Input '${input.name}' of ${model.file} has a symbolic dimension ${i} ('${d ?? '?'}') in [${declared.map((x) => x ?? '?').join(', ')}]; give a concrete shape with --input-shape, e.g. --input-shape ${declared.map((x, j) => (typeof x === 'number' ? x : j === 0 ? 1 : `<${x ?? '?'}>`)).join(',')}.`);
    });
  }
  if (shape.some((d) => d === 0)) throw new LipcheckError('UNSUPPORTED', `Input '${input.name}' of ${model.file} has shape [${shape.join(', ')}] with a zero-sized dimension: it holds no values, so there is nothing to analyse.`);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 1)) throw new LipcheckError('USAGE', `Input shape [${shape.join(', ')}] must have positive integer dimensions.`);
  const elements = shape.reduce((a, b) => a * b, 1);
  // Lanczos keeps tens of float64 vectors of the largest operator side; the input alone bounds that side from below
  const needed = elements * 8 * MEMORY_VECTORS;
  if (needed > MEMORY_LIMIT_BYTES) {
    throw new LipcheckError('UNSUPPORTED', `Input '${input.name}' of ${model.file} with shape [${shape.join(', ')}] has ${elements.toExponential(3)} elements; analysing it needs at least ${(needed / 2 ** 30).toFixed(1)} GiB (${MEMORY_VECTORS} float64 vectors of that size), over lipcheck's limit of ${MEMORY_LIMIT_BYTES / 2 ** 30} GiB. Analyse a smaller input with --input-shape if the model allows it.`);
  }
  return { input, shape, others: candidates.filter((c) => c !== input) };
}

/** At most this many names or lines in one message (the rest are counted): a 2,000-node graph must not print 30 KB. */
const LISTED = 10;

/** Items for a message: the first LISTED, then "and N more". */
function listed(items: readonly string[], sep = ', '): string {
  return items.length <= LISTED ? items.join(sep) : `${items.slice(0, LISTED).join(sep)}${sep}and ${items.length - LISTED} more`;
}

function unsupportedError(file: string, missing: string[], reasons: string[]): LipcheckError {
  const lines = [...missing.map((m) => `${m}: op not supported`), ...reasons];
  return new LipcheckError('UNSUPPORTED', `${file} has ${lines.length} node${lines.length === 1 ? '' : 's'} lipcheck cannot analyse:\n  - ${listed(lines, '\n  - ')}\nRun 'lipcheck --list-ops' for the supported operators.`, { details: lines });
}

/** Builds the Lipschitz IR of a model between one input and one output (runs the model once in onnxruntime). */
export async function buildIr(original: OnnxModel, options: BuildOptions): Promise<BuildResult> {
  // x·σ(x)-style subgraphs (SiLU, Mish, HardSwish, GELU in its erf and tanh forms) become one activation; onnxruntime still runs the original
  const model = fusePatterns(original).model;
  const { input, shape, others } = chooseInput(model, options);
  const outputName = options.outputName ?? model.outputs[0]?.name;
  if (!outputName || (options.outputName && !model.outputs.some((o) => o.name === options.outputName))) {
    throw new LipcheckError('USAGE', `--output '${options.outputName}' is not an output of ${model.file}; its outputs are ${listed(model.outputs.map((o) => `'${o.name}'`))}.`);
  }
  const available = new Set<string>([...model.initializers.keys(), ...model.inputs.map((i) => i.name)]);
  const producer = new Map<string, OnnxNode>();
  for (const n of model.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  // an initializer or another input as the output is a constant (Lipschitz constant 0), handled below
  if (!producer.has(outputName) && !available.has(outputName)) {
    throw new LipcheckError('UNREADABLE', `${model.file}: output '${outputName}' is produced by no node.`);
  }

  const needed = new Set<OnnxNode>();
  const stack = [outputName];
  const seen = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const p = producer.get(v);
    if (p && !needed.has(p)) { needed.add(p); for (const i of p.inputs) if (i) stack.push(i); }
  }
  const order = topoOrder(model, needed, available);

  const dynamic = new Set<string>([input.name]);
  const dynNodes: OnnxNode[] = [];
  for (const n of order) {
    if (SHAPE_ONLY.has(n.opType)) continue;
    if (n.inputs.some((i) => dynamic.has(i))) { dynNodes.push(n); for (const o of n.outputs) if (o) dynamic.add(o); }
  }
  // an output that does not depend on the input is a constant: the IR has no nodes and AutoLip gives it 0
  const constant = !dynamic.has(outputName);
  if (constant) dynNodes.length = 0;

  const opset = model.opsets.get('') ?? 1;
  const missing: string[] = [];
  for (const n of dynNodes) {
    if (!findOp(n.opType, n.domain, n.domain === '' ? opset : model.opsets.get(n.domain) ?? 1)) {
      missing.push(`${n.opType}${n.domain ? ` (domain ${n.domain})` : ''} node '${n.name}' (opset ${n.domain === '' ? opset : model.opsets.get(n.domain) ?? '?'})`);
    }
  }

  const wanted = new Set<string>();
  for (const n of dynNodes) {
    for (const o of n.outputs) if (o) wanted.add(o);
    for (const i of n.inputs) if (i && !available.has(i)) wanted.add(i);
  }
  wanted.delete(input.name);
  // outputs of shape-preserving ops read by other dynamic nodes only: their shape is their input's (filled in below)
  const sameAs = new Map<string, string>();
  for (const n of dynNodes) {
    if (n.domain === '' && SAME_SHAPE.has(n.opType) && n.outputs.length === 1 && n.outputs[0] && n.outputs[0] !== outputName && dynamic.has(n.inputs[0])) {
      sameAs.set(n.outputs[0], n.inputs[0]);
      wanted.delete(n.outputs[0]);
    }
  }
  const feeds: Record<string, Tensor> = { [input.name]: randomTensor(shape, options.seed), ...zeroFeeds(others, model.file) };
  const intDyn = new Set<string>();
  const values = new Map<string, Tensor>();
  if (constant) {
    const known = model.initializers.get(outputName) ?? feeds[outputName];
    if (known) values.set(outputName, known);
    else wanted.add(outputName);
  }
  // a graph with no nodes between input and output (output = input) or a constant output needs no run
  if (wanted.size > 0) {
    // without the file's value_info (which may state shapes wrongly): the static shapes taken below are onnxruntime's
    // own inference from the input's shape
    const source = model.source as { graph: object };
    const runtimeModel = encodeForRuntimeFeeding({ ...model, source: { ...source, graph: { ...source.graph, valueInfo: [] } } }, [...wanted], FEED_BYTES);
    const runner = await ModelRunner.create(runtimeModel.bytes, options.runtime, model.file).catch((e) => {
      if (missing.length) throw unsupportedError(model.file, missing, []);
      // a model onnxruntime itself refuses to load is malformed: that is the file's fault, not a runtime failure
      const msg = String((e as Error).message).replace(/^onnxruntime could not load [^:]*: /, '');
      throw new LipcheckError('UNREADABLE', `${model.file} is not a valid ONNX model (onnxruntime refuses it: ${msg.slice(0, 300)}). Re-export the model or check it with onnx.checker.`, { cause: e });
    });
    try {
      // a dynamic value's elements are never read, only its type and shape: where onnxruntime inferred them as numbers
      // they are taken from the session and the run returns only the constants it computes (ResNet-50: 126 values,
      // 28·10⁶ floats copied out, ~0.35 s, down to none); anything without a static shape is fetched as before
      const known = runner.staticOutputs();
      // a model with a product the session workers take (ort-pool.ts WORKER_MIN_FLOP) starts them after this run: their
      // start (~0.25 s of one core) overlaps the conversion below (one thread) instead of delaying the first operator
      const prestart = largestProduct(dynNodes, model, known) >= WORKER_MIN_FLOP && (await resolveDevice(options.runtime.device, options.runtime.threads)).provider === 'cpu';
      const fetch = [...wanted].filter((v) => !dynamic.has(v) || v === outputName || !known.has(v));
      for (const v of wanted) if (!fetch.includes(v)) values.set(v, { dtype: known.get(v)!.dtype, dims: known.get(v)!.dims, data: new Float32Array(0) });
      // the run still goes ahead even with nothing to fetch (the graph output): it checks the model runs on this input
      let out = await runner.run({ ...runtimeModel.feeds, ...feeds }, fetch.length ? fetch : [outputName]);
      const [got, said] = [out.get(outputName)?.dims, known.get(outputName)?.dims];
      // an inferred shape that a computed one contradicts: none of them is trusted, every value is fetched
      if (got && said && (got.length !== said.length || got.some((d, i) => d !== said[i]))) out = await runner.run({ ...runtimeModel.feeds, ...feeds }, [...wanted]);
      if (prestart) (options.onLargeProducts ?? (() => prestartOrtWorkers(options.runtime)))();
      // onnxruntime returns float16 as its raw bits (Uint16Array): widen them, as the reader does, before any converter reads them
      for (const [k, t] of out) values.set(k, t.dtype === 'float16' && t.data instanceof Uint16Array ? { ...t, data: Float32Array.from(t.data, halfToFloat) } : t);
    } catch (e) {
      if (missing.length) throw unsupportedError(model.file, missing, []);
      const msg = (e as Error).message;
      if (/dimension|shape|Got invalid|index/i.test(msg)) {
        throw new LipcheckError('USAGE', `${model.file} cannot run on input '${input.name}' with shape [${shape.join(', ')}]: ${msg.replace(/^onnxruntime failed while evaluating [^:]*: /, '')}. Check --input-shape.`, { cause: e });
      }
      throw e;
    } finally {
      await runner.release();
    }
  }

  for (const n of dynNodes) {
    const from = n.outputs[0] !== undefined ? sameAs.get(n.outputs[0]) : undefined;
    if (from === undefined) continue;
    const t = from === input.name ? { dtype: 'float32' as DType, dims: shape } : values.get(from);
    // shape and type only: a dynamic value's elements are never read as a constant
    if (t) values.set(n.outputs[0], { dtype: t.dtype, dims: t.dims, data: new Float32Array(0) });
  }

  const nodes: IrNode[] = [];
  const reasons: string[] = [];
  const badNumbers: string[] = [];
  const shapeOf = (name: string): Shape => (name === input.name ? shape : values.get(name)!.dims);
  const dtypeOf = (name: string): DType => (name === input.name ? 'float32' : values.get(name)!.dtype);
  for (const n of dynNodes) {
    const row = findOp(n.opType, n.domain, opset);
    if (!row) continue;
    const dynIn = n.inputs.filter((i) => dynamic.has(i));
    if (dynIn.some((i) => intDyn.has(i) || !isFloatType(dtypeOf(i)))) {
      for (const o of n.outputs) if (o) intDyn.add(o);
      nodes.push({ kind: 'discontinuous', reason: 'depends on an integer-valued (piecewise constant) tensor', derived: true, name: n.name, opType: n.opType, inputs: dynIn, inShapes: dynIn.map(shapeOf), output: n.outputs[0], outShape: values.get(n.outputs[0])?.dims ?? [] });
      continue;
    }
    const inputs: InputValue[] = n.inputs.map((name) => {
      if (!name) return { name: '', dynamic: false, tensor: null };
      if (dynamic.has(name)) return { name, dynamic: true, shape: shapeOf(name), dtype: dtypeOf(name) };
      // another graph input is held at its zero feed (as every run of the model holds it)
      const t = model.initializers.get(name) ?? values.get(name) ?? feeds[name];
      if (!t) throw new LipcheckError('INTERNAL', `constant '${name}' of node '${n.name}' was not evaluated`);
      return { name, dynamic: false, tensor: t };
    });
    const ctx: ConvertContext = {
      name: n.name, opType: n.opType, opset, attrs: n.attributes, inputs,
      outputs: n.outputs, outShapes: n.outputs.map((o) => (o && values.has(o) ? values.get(o)!.dims : [])),
    };
    // NaN or infinite constants would turn into a "certified" bound of a model whose output is NaN: refused (issue 14)
    const bad = auditConstants(ctx);
    if (bad.length) { badNumbers.push(...bad); continue; }
    try {
      const converted = row.convert(ctx);
      nodes.push(...converted);
      for (const o of n.outputs) if (o && values.has(o) && !isFloatType(values.get(o)!.dtype)) intDyn.add(o);
    } catch (e) {
      if (e instanceof UnsupportedNode) reasons.push(e.message);
      else throw e;
    }
  }
  badNumbers.push(...auditIr(nodes));
  if (badNumbers.length) throw badNumbersError(model.file, badNumbers);
  if (missing.length || reasons.length) throw unsupportedError(model.file, missing, reasons);
  const outShape = shapeOf(outputName);
  return {
    // the offsets the IR's linear prims drop, for the exact enumeration (read from the model as given, before fusion)
    ir: { input: input.name, inputShape: shape, output: outputName, outputShape: outShape, nodes: withOffsets(original, nodes), warnings: [
      ...(others.length ? [`Inputs ${listed(others.map((o) => `'${o.name}'`))} are held at zero; only '${input.name}' is analysed.`] : []),
      ...(constant ? [`Output '${outputName}' does not depend on input '${input.name}'${model.initializers.has(outputName) ? ' (it is an initializer)' : ''}: it is a constant, with Lipschitz constant 0.`] : []),
      ...(!options.outputName && model.outputs.length > 1 ? [`The model has ${model.outputs.length} outputs; only the first, '${outputName}', is analysed (choose one with --output NAME, or every one with --all-outputs).`] : []),
    ] },
    inputName: input.name, outputName, inputShape: shape, outputShape: outShape, otherInputs: others.map((o) => o.name),
  };
}

/**
 * The largest forward product (flop, as linalg/work.ts counts a weighted op: 2 per multiply-add) of one Conv, Gemm or
 * MatMul node with a constant weight, from the static output shapes onnxruntime inferred; 0 where none is known. A lower
 * bound on the largest merged operator's work (merging only adds ops).
 */
function largestProduct(nodes: readonly OnnxNode[], model: OnnxModel, known: ReadonlyMap<string, { dims: number[] }>): number {
  let best = 0;
  for (const n of nodes) {
    if (n.domain !== '' || !['Conv', 'Gemm', 'MatMul'].includes(n.opType)) continue;
    const w = model.initializers.get(n.inputs[1]) ?? (n.opType === 'MatMul' ? model.initializers.get(n.inputs[0]) : undefined);
    const out = known.get(n.outputs[0])?.dims;
    if (!w || !out || out.length < 2) continue;
    const size = out.reduce((a, b) => a * b, 1);
    const per = n.opType === 'Conv' ? out[1] : out[out.length - 1];
    if (per > 0) best = Math.max(best, (2 * w.data.length * size) / per);
  }
  return best;
}
