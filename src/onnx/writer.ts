import type { Tensor } from '../ir/tensor.js';
import type { OnnxModel } from './read-model.js';
import { dataTypeNumber, onnx } from './proto.js';

/** An attribute to write: the tag says its ONNX type. */
export type AttrSpec =
  | { i: number } | { f: number } | { s: string } | { ints: readonly number[] } | { floats: readonly number[] } | { t: Tensor };

/** One node to write. */
export interface NodeSpec {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  readonly attrs?: Readonly<Record<string, AttrSpec>>;
}

/** A graph input or output to write; `dims` entries may be symbolic names. */
export interface ValueSpec {
  readonly name: string;
  readonly dtype?: string;
  readonly dims?: readonly (number | string)[];
}

/** A whole small model to write. */
export interface GraphSpec {
  readonly opset: number;
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
  readonly nodes: readonly NodeSpec[];
  readonly initializers?: ReadonlyMap<string, Tensor> | readonly [string, Tensor][];
  readonly name?: string;
  readonly irVersion?: number;
  /** Initializers stored as ONNX external data: name → { location, offset } (the caller writes the data file). */
  readonly external?: ReadonlyMap<string, { location: string; offset: number; length?: number }>;
}

function tensorBytes(t: Tensor): Uint8Array {
  const d = t.data;
  if (Array.isArray(d)) throw new Error('string tensors are not written');
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') throw new Error(`${t.dtype} is widened on read and not written back`);
  // a view, not a copy: the encoder copies the bytes into the model it writes (fresh memory costs page faults)
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** A TensorProto for a Tensor (raw little-endian bytes; float16 data is written as float32). */
export function tensorProto(name: string, t: Tensor): any {
  const widened = t.dtype === 'float16' || t.dtype === 'bfloat16';
  const dtype = widened ? 'float32' : t.dtype;
  if (dtype === 'string') {
    return onnx.TensorProto.create({ name, dims: [...t.dims], dataType: dataTypeNumber('string'), stringData: (t.data as string[]).map((s) => Buffer.from(s)) });
  }
  return onnx.TensorProto.create({ name, dims: [...t.dims], dataType: dataTypeNumber(dtype), rawData: tensorBytes(widened ? { ...t, dtype: 'float32' } : t) });
}

function attributeProto(name: string, a: AttrSpec): any {
  if ('i' in a) return onnx.AttributeProto.create({ name, type: 2, i: a.i });
  if ('f' in a) return onnx.AttributeProto.create({ name, type: 1, f: a.f });
  if ('s' in a) return onnx.AttributeProto.create({ name, type: 3, s: Buffer.from(a.s) });
  if ('ints' in a) return onnx.AttributeProto.create({ name, type: 7, ints: [...a.ints] });
  if ('floats' in a) return onnx.AttributeProto.create({ name, type: 6, floats: [...a.floats] });
  return onnx.AttributeProto.create({ name, type: 4, t: tensorProto('', a.t) });
}

function valueInfoProto(v: ValueSpec): any {
  const type: any = { tensorType: { elemType: dataTypeNumber(v.dtype ?? 'float32') } };
  if (v.dims) type.tensorType.shape = { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return onnx.ValueInfoProto.create({ name: v.name, type });
}

/**
 * The spec with its float32/float64 initializers of at least `minBytes` bytes turned into graph inputs, and those
 * tensors, to feed with every run: onnxruntime then neither copies nor pre-packs them (a 411 MB Gemm weight: 3 s of
 * encoding and 5 s of session creation saved, runs no slower).
 */
export function feedInitializers(spec: GraphSpec, minBytes: number): { spec: GraphSpec; feeds: Record<string, Tensor> } {
  const feeds: Record<string, Tensor> = {};
  const kept: [string, Tensor][] = [];
  for (const [name, t] of spec.initializers instanceof Map ? spec.initializers.entries() : (spec.initializers ?? [])) {
    const big = (t.data instanceof Float32Array || t.data instanceof Float64Array) && t.data.byteLength >= minBytes;
    if (big) feeds[name] = t;
    else kept.push([name, t]);
  }
  if (Object.keys(feeds).length === 0) return { spec, feeds };
  const inputs = [...spec.inputs, ...Object.entries(feeds).map(([name, t]) => ({ name, dtype: t.dtype, dims: t.dims }))];
  return { spec: { ...spec, inputs, initializers: kept }, feeds };
}

/** Serialises a GraphSpec into ONNX model bytes. */
export function encodeGraph(spec: GraphSpec): Uint8Array {
  const inits = spec.initializers ? [...(spec.initializers instanceof Map ? spec.initializers.entries() : (spec.initializers as [string, Tensor][]))] : [];
  const graph = onnx.GraphProto.create({
    name: spec.name ?? 'lipcheck',
    node: spec.nodes.map((n, i) => onnx.NodeProto.create({
      name: n.name ?? `${n.opType}_${i}`,
      opType: n.opType,
      domain: n.domain ?? '',
      input: [...n.inputs],
      output: [...n.outputs],
      attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attributeProto(k, v)),
    })),
    initializer: inits.map(([name, t]) => {
      const ext = spec.external?.get(name);
      if (!ext) return tensorProto(name, t);
      const p = tensorProto(name, t);
      const length = ext.length ?? p.rawData.length;
      p.rawData = new Uint8Array(0);
      p.dataLocation = 1;
      p.externalData = [['location', ext.location], ['offset', String(ext.offset)], ['length', String(length)]].map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }));
      return p;
    }),
    input: spec.inputs.map(valueInfoProto),
    output: spec.outputs.map(valueInfoProto),
  });
  const model = onnx.ModelProto.create({
    irVersion: spec.irVersion ?? 8,
    producerName: 'lipcheck',
    opsetImport: [
      onnx.OperatorSetIdProto.create({ domain: '', version: spec.opset }),
      ...[...new Set(spec.nodes.map((n) => n.domain ?? '').filter((d) => d !== ''))].map((domain) => onnx.OperatorSetIdProto.create({ domain, version: 1 })),
    ],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Model bytes for onnxruntime plus the tensors to feed with every run (initializers turned into graph inputs). */
export interface RuntimeModel {
  readonly bytes: Uint8Array;
  readonly feeds: Readonly<Record<string, Tensor>>;
}

/**
 * Re-encodes a read model for onnxruntime: initializers inlined from the decoded tensors (so external data resolved by
 * lipcheck travels with the bytes) and `extraOutputs` appended as graph outputs. float32/float64 initializers of at
 * least `feedBytes` bytes become graph inputs instead, returned in `feeds`: onnxruntime then neither copies nor
 * pre-packs them at session creation (VGG-16's 528 MB: seconds saved on a model evaluated a few times).
 */
export function encodeForRuntimeFeeding(model: OnnxModel, extraOutputs: readonly string[], feedBytes = Infinity): RuntimeModel {
  const m = model.source as any;
  const g = m.graph;
  const declared = new Set<string>((g.output ?? []).map((o: any) => o.name));
  const output = [...(g.output ?? [])];
  for (const name of extraOutputs) if (!declared.has(name)) { declared.add(name); output.push(onnx.ValueInfoProto.create({ name })); }
  const input = [...(g.input ?? [])];
  const inputNames = new Set<string>(input.map((i: any) => i.name));
  const feeds: Record<string, Tensor> = {};
  const initializer: any[] = [];
  for (const p of g.initializer ?? []) {
    const t = model.initializers.get(p.name);
    // only types stored as decoded (float16 is widened on read and would no longer match the graph)
    const fed = t && ((p.dataType === 1 && t.dtype === 'float32') || (p.dataType === 11 && t.dtype === 'float64'))
      && (t.data as Float32Array | Float64Array).byteLength >= feedBytes;
    if (fed) {
      feeds[p.name] = t;
      if (!inputNames.has(p.name)) input.push(onnx.ValueInfoProto.create({ name: p.name, type: { tensorType: { elemType: p.dataType, shape: { dim: t.dims.map((d) => ({ dimValue: d })) } } } }));
    } else {
      initializer.push(p.dataLocation === 1 ? tensorProto(p.name, model.initializers.get(p.name)!) : p);
    }
  }
  const graph = onnx.GraphProto.create({ ...g, input, output, initializer });
  return { bytes: onnx.ModelProto.encode(onnx.ModelProto.create({ ...m, graph })).finish(), feeds };
}

/** encodeForRuntimeFeeding with every initializer inlined. */
export function encodeForRuntime(model: OnnxModel, extraOutputs: readonly string[]): Uint8Array {
  return encodeForRuntimeFeeding(model, extraOutputs).bytes;
}
