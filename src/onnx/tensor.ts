import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { DType, Tensor, TensorData } from '../ir/tensor.js';
import { sizeOf } from '../ir/tensor.js';
import { DATA_TYPES, longToNumber } from './proto.js';

const BYTES: Partial<Record<DType, number>> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2,
  int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1,
};

/** Where a tensor comes from, for error messages. */
export interface TensorOrigin {
  file: string;
  baseDir: string;
}

/** IEEE half precision bits to a float. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** True on little-endian hosts, where raw_data (always little-endian) can be viewed as typed arrays directly. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fromBytes(dtype: DType, bytes: Uint8Array, n: number): TensorData {
  // raw_data may sit at any offset inside the protobuf buffer: copy so typed views are aligned.
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  const view = new DataView(buf);
  if (LITTLE_ENDIAN) {
    switch (dtype) {
      case 'float32': return new Float32Array(buf, 0, n);
      case 'float64': return new Float64Array(buf, 0, n);
      case 'int16': return new Int16Array(buf, 0, n);
      case 'uint16': return new Uint16Array(buf, 0, n);
      case 'int32': return new Int32Array(buf, 0, n);
      case 'uint32': return new Uint32Array(buf, 0, n);
      case 'int64': return new BigInt64Array(buf, 0, n);
      case 'uint64': return new BigUint64Array(buf, 0, n);
      default: break;
    }
  }
  switch (dtype) {
    case 'float32': { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = view.getFloat32(4 * i, true); return a; }
    case 'float64': { const a = new Float64Array(n); for (let i = 0; i < n; i++) a[i] = view.getFloat64(8 * i, true); return a; }
    case 'float16': { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = halfToFloat(view.getUint16(2 * i, true)); return a; }
    case 'bfloat16': { const a = new Float32Array(n); const w = new DataView(new ArrayBuffer(4)); for (let i = 0; i < n; i++) { w.setUint32(0, view.getUint16(2 * i, true) << 16, false); a[i] = w.getFloat32(0, false); } return a; }
    case 'int8': return new Int8Array(buf, 0, n);
    case 'uint8': case 'bool': return new Uint8Array(buf, 0, n);
    case 'int16': { const a = new Int16Array(n); for (let i = 0; i < n; i++) a[i] = view.getInt16(2 * i, true); return a; }
    case 'uint16': { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = view.getUint16(2 * i, true); return a; }
    case 'int32': { const a = new Int32Array(n); for (let i = 0; i < n; i++) a[i] = view.getInt32(4 * i, true); return a; }
    case 'uint32': { const a = new Uint32Array(n); for (let i = 0; i < n; i++) a[i] = view.getUint32(4 * i, true); return a; }
    case 'int64': { const a = new BigInt64Array(n); for (let i = 0; i < n; i++) a[i] = view.getBigInt64(8 * i, true); return a; }
    case 'uint64': { const a = new BigUint64Array(n); for (let i = 0; i < n; i++) a[i] = view.getBigUint64(8 * i, true); return a; }
    default: throw new Error(`raw data of type ${dtype}`);
  }
}

function fromTypedFields(dtype: DType, p: any): TensorData | null {
  const pick = (arr: unknown[] | undefined) => (arr && arr.length ? arr : null);
  switch (dtype) {
    case 'float32': { const d = pick(p.floatData); return d ? Float32Array.from(d as number[]) : null; }
    case 'float64': { const d = pick(p.doubleData); return d ? Float64Array.from(d as number[]) : null; }
    case 'int64': { const d = pick(p.int64Data); return d ? BigInt64Array.from(d.map((v) => BigInt(longToNumber(v)))) : null; }
    case 'uint64': { const d = pick(p.uint64Data); return d ? BigUint64Array.from(d.map((v) => BigInt(longToNumber(v)))) : null; }
    case 'uint32': { const d = pick(p.uint64Data); return d ? Uint32Array.from(d.map((v) => longToNumber(v))) : null; }
    case 'string': { const d = pick(p.stringData); return d ? (d as Uint8Array[]).map((b) => Buffer.from(b).toString('utf8')) : null; }
    case 'float16': { const d = pick(p.int32Data); return d ? Float32Array.from(d as number[], (h) => halfToFloat(h)) : null; }
    case 'bfloat16': { const d = pick(p.int32Data); if (!d) return null; const w = new DataView(new ArrayBuffer(4)); return Float32Array.from(d as number[], (h) => { w.setUint32(0, (h & 0xffff) << 16); return w.getFloat32(0); }); }
    case 'int32': { const d = pick(p.int32Data); return d ? Int32Array.from(d as number[]) : null; }
    case 'int16': { const d = pick(p.int32Data); return d ? Int16Array.from(d as number[]) : null; }
    case 'uint16': { const d = pick(p.int32Data); return d ? Uint16Array.from(d as number[]) : null; }
    case 'int8': { const d = pick(p.int32Data); return d ? Int8Array.from(d as number[]) : null; }
    case 'uint8': case 'bool': { const d = pick(p.int32Data); return d ? Uint8Array.from(d as number[]) : null; }
    default: return null;
  }
}

function externalBytes(p: any, origin: TensorOrigin, name: string): Uint8Array {
  const kv = new Map<string, string>((p.externalData ?? []).map((e: any) => [e.key, e.value]));
  const location = kv.get('location');
  if (!location) {
    throw new LipcheckError('UNREADABLE', `Initializer '${name}' in ${origin.file} is marked as external data but names no location. Re-export the model with its weights embedded.`);
  }
  if (isAbsolute(location)) {
    throw new LipcheckError('UNREADABLE', `Initializer '${name}' in ${origin.file} points to external data at an absolute path '${location}'; ONNX requires a path relative to the model. Re-export the model or move the data next to it.`);
  }
  const path = resolve(origin.baseDir, location);
  const offset = Number(kv.get('offset') ?? 0);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new LipcheckError('UNREADABLE', `External data file '${location}' for initializer '${name}' is missing (looked for ${path}). Keep the model's data files next to ${origin.file}.`);
  }
  const length = kv.has('length') ? Number(kv.get('length')) : size - offset;
  if (offset + length > size) {
    throw new LipcheckError('UNREADABLE', `External data file '${location}' for initializer '${name}' is too short: it has ${size} bytes but the model reads ${length} bytes at offset ${offset}. The file is truncated; copy it again.`);
  }
  const all = readFileSync(path);
  return new Uint8Array(all.buffer, all.byteOffset + offset, length);
}

/** Decodes a TensorProto (raw_data, typed fields or external data) into a Tensor, checking its byte length. */
export function decodeTensor(p: any, origin: TensorOrigin): Tensor {
  const name: string = p.name || '(unnamed)';
  const dtype = DATA_TYPES[p.dataType] as DType | undefined;
  if (!dtype) {
    throw new LipcheckError('UNSUPPORTED', `Tensor '${name}' in ${origin.file} has ONNX data type ${p.dataType}, which lipcheck does not read.`);
  }
  const dims: number[] = (p.dims ?? []).map(longToNumber);
  if (dims.some((d) => d < 0 || !Number.isSafeInteger(d))) {
    throw new LipcheckError('UNREADABLE', `Tensor '${name}' in ${origin.file} has invalid dimensions [${dims.join(', ')}].`);
  }
  const n = sizeOf(dims);
  let data: TensorData | null = null;
  const isExternal = p.dataLocation === 1;
  if (isExternal || (p.rawData && p.rawData.length > 0)) {
    const bytes = isExternal ? externalBytes(p, origin, name) : (p.rawData as Uint8Array);
    const per = BYTES[dtype];
    if (per === undefined) throw new LipcheckError('UNSUPPORTED', `Tensor '${name}' in ${origin.file} stores ${dtype} as raw bytes, which lipcheck does not read.`);
    if (bytes.length !== n * per) {
      throw new LipcheckError('UNREADABLE', `Tensor '${name}' in ${origin.file} has ${bytes.length} bytes of data, but its shape [${dims.join(', ')}] of ${dtype} needs ${n * per}. The file is corrupt or was truncated; re-export it.`);
    }
    data = fromBytes(dtype, bytes, n);
  } else {
    data = fromTypedFields(dtype, p);
    if (data === null) {
      if (n > 0) throw new LipcheckError('UNREADABLE', `Tensor '${name}' in ${origin.file} has shape [${dims.join(', ')}] but holds no data. The file is corrupt; re-export it.`);
      data = fromBytes(dtype, new Uint8Array(0), 0);
    }
    if (data.length !== n) {
      throw new LipcheckError('UNREADABLE', `Tensor '${name}' in ${origin.file} holds ${data.length} values, but its shape [${dims.join(', ')}] needs ${n}. The file is corrupt; re-export it.`);
    }
  }
  return { dtype, dims, data };
}
