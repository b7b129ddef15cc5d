import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { Attributes, decodeAttributes } from './attributes.js';
import { longToNumber, onnx } from './proto.js';
import { decodeTensor, inlineExternalData, type TensorOrigin } from './tensor.js';

/** A graph input or output as declared: element type and dims (a number, a symbolic name, or null when unknown). */
export interface ValueInfo {
  readonly name: string;
  readonly elemType: number;
  readonly dims: readonly (number | string | null)[] | null;
}

/** One ONNX node, attributes decoded. */
export interface OnnxNode {
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: Attributes;
}

/** A decoded ONNX model: plain data plus an opaque handle the writer needs to re-encode it for onnxruntime. */
export interface OnnxModel {
  readonly file: string;
  readonly sha256?: string;
  readonly irVersion: number;
  readonly producer: string;
  readonly opsets: ReadonlyMap<string, number>;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: ReadonlyMap<string, Tensor>;
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  /** The decoded protobuf, for re-encoding only. */
  readonly source: unknown;
}

/** The largest model file lipcheck reads: protobuf's 2 GiB limit (larger models keep their weights as external data). */
export const MAX_MODEL_BYTES = 2 ** 31 - 1;

/** Reads a model file's bytes, turning file-system failures into clear UNREADABLE errors; only regular files of at most MAX_MODEL_BYTES. */
export function readModelBytes(path: string): Uint8Array {
  const cannot = (e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code;
    return new LipcheckError('UNREADABLE', code === 'ENOENT'
      ? `Model file '${path}' does not exist. Check the path.`
      : code === 'EACCES'
        ? `Model file '${path}' is not readable (permission denied). Check its permissions.`
        : `Model file '${path}' cannot be read (${code ?? String(e)}).`, { cause: e });
  };
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw directory(path);
    throw cannot(e);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw directory(path);
    if (!st.isFile()) {
      const what = st.isFIFO() ? 'a FIFO (named pipe)' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new LipcheckError('UNREADABLE', `Model file '${path}' is ${what}, not a regular file; lipcheck reads ONNX models only from files. Save the model to a file and give its path.`);
    }
    if (st.size > MAX_MODEL_BYTES) {
      throw new LipcheckError('UNREADABLE', `Model file '${path}' is ${(st.size / 2 ** 30).toFixed(2)} GiB, over the 2 GiB that an ONNX protobuf file can hold and lipcheck reads. Save the model with its weights as external data (onnx.save_model(..., save_as_external_data=True)).`);
    }
    const bytes = new Uint8Array(st.size);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === bytes.length ? bytes : bytes.subarray(0, done);
  } catch (e) {
    if (e instanceof LipcheckError) throw e;
    throw cannot(e);
  } finally {
    closeSync(fd);
  }
}

function directory(path: string): LipcheckError {
  return new LipcheckError('UNREADABLE', `'${path}' is a directory, not an ONNX file. Give the path of a .onnx file.`);
}

function valueInfo(v: any): ValueInfo {
  const tt = v.type?.tensorType;
  const shape = tt?.shape;
  const dims = shape
    ? (shape.dim ?? []).map((d: any): number | string | null => {
        if (d.dimParam) return String(d.dimParam);
        const v = longToNumber(d.dimValue);
        // dim_value is a oneof member: an explicit 0 (a zero-sized tensor) differs from an unset dimension
        return v > 0 || d.value === 'dimValue' ? v : null;
      })
    : null;
  return { name: v.name, elemType: tt?.elemType ?? 0, dims };
}

/** ONNX element types lipcheck casts to float32 at the graph's boundary: float16, float64, bfloat16. */
const BOUNDARY_CAST: Readonly<Record<number, string>> = { 10: 'float16', 11: 'float64', 16: 'bfloat16' };

/**
 * Rewrites the decoded graph so that its float16/float64/bfloat16 inputs and outputs are float32: lipcheck feeds and
 * reads float32 (and onnxruntime-node has no bfloat16 tensors). An input x becomes float32 and a Cast to its type
 * feeds what the nodes read; an output y is read through a Cast to float32. The function between x and y is the
 * model's own, up to the rounding of x to its type; a float Cast is an identity to the analysis.
 */
function castBoundary(g: any, opset: number): void {
  const castable = (v: any) => BOUNDARY_CAST[v?.type?.tensorType?.elemType] !== undefined;
  const ins = (g.input ?? []) as any[];
  const outs = (g.output ?? []) as any[];
  // Cast with a `to` attribute exists from opset 6, bfloat16 from opset 13
  const usable = (v: any) => castable(v) && opset >= (v.type.tensorType.elemType === 16 ? 13 : 6);
  const initNames = new Set<string>(((g.initializer ?? []) as any[]).map((t) => t.name));
  const taken = new Set<string>([...ins, ...outs, ...(g.initializer ?? [])].map((v: any) => v.name));
  for (const n of g.node as any[]) for (const o of [...(n.input ?? []), ...(n.output ?? [])]) taken.add(o);
  const fresh = (base: string) => {
    let name = base;
    for (let k = 2; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };
  // subgraphs (If, Loop, Scan bodies) may read the value from the outer scope: their readers are renamed too
  const renameReaders = (nodes: any[], from: string, to: string) => {
    for (const n of nodes ?? []) {
      n.input = (n.input ?? []).map((i: string) => (i === from ? to : i));
      for (const a of n.attribute ?? []) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) renameReaders(sub.node, from, to);
    }
  };
  const rename = (from: string, to: string, producers: boolean) => {
    renameReaders(g.node, from, to);
    if (producers) for (const n of g.node as any[]) n.output = (n.output ?? []).map((o: string) => (o === from ? to : o));
    for (const v of (g.valueInfo ?? []) as any[]) if (v.name === from) v.name = to;
  };
  const cast = (input: string, output: string, to: number, name: string) => onnx.NodeProto.create({
    name: fresh(name), opType: 'Cast', domain: '', input: [input], output: [output],
    attribute: [onnx.AttributeProto.create({ name: 'to', type: 2, i: to })],
  });
  const head: any[] = [];
  const tail: any[] = [];
  const floatInputs = new Set<string>();
  const subgraphReads = (nodes: any[], name: string): boolean => (nodes ?? []).some((n) => (n.attribute ?? []).some((a: any) =>
    [a.g, ...(a.graphs ?? [])].some((sub) => sub && ((sub.node ?? []).some((m: any) => (m.input ?? []).includes(name)) || subgraphReads(sub.node, name)))));
  // the nodes reading a value, all of them in this graph (a reader inside a subgraph counts as a node that is no Cast)
  const consumers = (name: string) => [...(g.node as any[]).filter((n) => (n.input ?? []).includes(name)), ...(subgraphReads(g.node, name) ? [{}] : [])];
  const castTo = (n: any) => (n.opType === 'Cast' && (n.domain ?? '') === '' ? (n.attribute ?? []).find((a: any) => a.name === 'to') : undefined);
  for (const v of ins) {
    if (!usable(v) || initNames.has(v.name)) continue;
    const type = v.type.tensorType.elemType;
    v.type.tensorType.elemType = 1;
    floatInputs.add(v.name);
    // read only by Casts (a model that computes in another type): they cast the float32 input as well, and no
    // tensor of the boundary type is left to fetch (onnxruntime-node has no bfloat16 tensors)
    const users = consumers(v.name);
    if (users.length > 0 && users.every((n) => castTo(n) && n.input.length === 1) && !outs.some((o) => o.name === v.name)) continue;
    const inner = fresh(`${v.name}__${BOUNDARY_CAST[type]}`);
    rename(v.name, inner, false);
    head.push(cast(v.name, inner, type, `lipcheck_cast_${v.name}_to_${BOUNDARY_CAST[type]}`));
  }
  for (const v of outs) {
    if (!usable(v)) continue;
    const type = v.type.tensorType.elemType;
    v.type.tensorType.elemType = 1;
    // an output that is an input already cast above is float32 as it stands
    if (floatInputs.has(v.name)) continue;
    // made by a Cast that nothing else reads: that Cast now casts to float32
    const producer = (g.node as any[]).find((n) => (n.output ?? []).includes(v.name));
    const to = producer && castTo(producer);
    if (to && consumers(v.name).length === 0 && outs.filter((o) => o.name === v.name).length === 1) {
      to.i = 1;
      continue;
    }
    const inner = fresh(`${v.name}__${BOUNDARY_CAST[type]}`);
    rename(v.name, inner, true);
    for (const t of (g.initializer ?? []) as any[]) if (t.name === v.name) t.name = inner;
    for (const i of ins) if (i.name === v.name) i.name = inner;
    tail.push(cast(inner, v.name, 1, `lipcheck_cast_${v.name}_from_${BOUNDARY_CAST[type]}`));
  }
  if (head.length || tail.length) g.node = [...head, ...g.node, ...tail];
}

/** Every tensor stored as external data anywhere in a graph (initializers, node attributes, subgraphs) is inlined. */
function inlineGraph(g: any, origin: TensorOrigin): void {
  if (!g) return;
  for (const t of g.initializer ?? []) inlineExternalData(t, origin);
  for (const s of g.sparseInitializer ?? []) { inlineExternalData(s.values, origin); inlineExternalData(s.indices, origin); }
  inlineNodes(g.node, origin);
}

function inlineNodes(nodes: any[] | undefined, origin: TensorOrigin): void {
  for (const n of nodes ?? []) {
    for (const a of n.attribute ?? []) {
      for (const t of [a.t, ...(a.tensors ?? [])]) inlineExternalData(t, origin, `Attribute '${a.name}' of node '${n.name ?? ''}', tensor`);
      for (const s of [a.sparseTensor, ...(a.sparseTensors ?? [])]) if (s) { inlineExternalData(s.values, origin, 'Sparse tensor'); inlineExternalData(s.indices, origin, 'Sparse tensor'); }
      inlineGraph(a.g, origin);
      for (const sub of a.graphs ?? []) inlineGraph(sub, origin);
    }
  }
}

/** Decodes ONNX bytes into an OnnxModel; `file` names the model in messages and locates external data. */
export function decodeModel(bytes: Uint8Array, file: string): OnnxModel {
  const where = basename(file);
  if (bytes.length === 0) {
    throw new LipcheckError('UNREADABLE', `'${file}' is empty (0 bytes), not an ONNX model.`);
  }
  let m: any;
  try {
    m = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new LipcheckError('UNREADABLE', `'${file}' is not a readable ONNX model: the protobuf data is corrupt or truncated (${(e as Error).message}). Re-export or download the model again.`, { cause: e });
  }
  const g = m.graph;
  if (!g || !Array.isArray(g.node) || (g.node.length === 0 && (g.output ?? []).length === 0)) {
    throw new LipcheckError('UNREADABLE', `'${file}' is not an ONNX model: it decodes without a graph. Check that this is the .onnx file and not another format.`);
  }
  const origin: TensorOrigin = { file: where, baseDir: dirname(resolve(file)) };
  const tensor = (p: any) => decodeTensor(p, origin);
  const opsets = new Map<string, number>();
  for (const o of m.opsetImport ?? []) opsets.set(o.domain === 'ai.onnx' ? '' : (o.domain ?? ''), longToNumber(o.version));
  if (!opsets.has('')) opsets.set('', 1);
  castBoundary(g, opsets.get('')!);
  // external data is read here, once, under lipcheck's rules; onnxruntime then gets a self-contained model
  inlineGraph(g, origin);
  for (const f of m.functions ?? []) inlineNodes(f.node, origin);
  for (const t of m.trainingInfo ?? []) { inlineGraph(t.initialization, origin); inlineGraph(t.algorithm, origin); }
  const initializers = new Map<string, Tensor>();
  for (const t of g.initializer ?? []) initializers.set(t.name, tensor(t));
  const nodes: OnnxNode[] = (g.node as any[]).map((n, i) => ({
    name: n.name || `${n.opType}_${i}`,
    opType: n.opType ?? '',
    domain: n.domain === 'ai.onnx' ? '' : (n.domain ?? ''),
    inputs: [...(n.input ?? [])],
    outputs: [...(n.output ?? [])],
    attributes: decodeAttributes(n.attribute ?? [], tensor),
  }));
  return {
    file,
    irVersion: longToNumber(m.irVersion),
    producer: [m.producerName, m.producerVersion].filter(Boolean).join(' '),
    opsets,
    nodes,
    initializers,
    inputs: (g.input ?? []).map(valueInfo),
    outputs: (g.output ?? []).map(valueInfo),
    source: m,
  };
}

/** Reads and decodes an ONNX file. */
export function readModel(path: string): OnnxModel {
  return decodeModel(readModelBytes(path), path);
}
