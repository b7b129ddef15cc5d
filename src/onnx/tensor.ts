import { kMaxLength } from 'node:buffer';
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { DType, Tensor, TensorData } from '../ir/tensor.js';
import { sizeOf } from '../ir/tensor.js';
import { DATA_TYPES, longToNumber } from './proto.js';
import type { ValueInfo } from './read-model.js';

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

/** Typed views of raw_data read in place, by element type (little-endian hosts only). */
const VIEWS: Partial<Record<DType, new (b: ArrayBufferLike, offset: number, length: number) => TensorData>> = {
  float32: Float32Array, float64: Float64Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

function fromBytes(dtype: DType, bytes: Uint8Array, n: number): TensorData {
  // raw_data viewed where it lies (in the model file's buffer) when its offset suits the element type: no copy and no
  // fresh memory, whose first touch costs ~4.5 ms per MB on the reference VM (about a third of ResNet-50's weights);
  // tensors are never written once decoded, so sharing the file's bytes is safe
  const View = LITTLE_ENDIAN ? VIEWS[dtype] : undefined;
  if (View && bytes.byteOffset % (BYTES[dtype] ?? 1) === 0) return new View(bytes.buffer, bytes.byteOffset, n);
  // elsewhere raw_data may sit at any offset inside the protobuf buffer: copy so typed views are aligned.
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

/** The bytes a TensorProto's dims and fixed-width type need, or null when they do not say (unknown type, bad dims). */
function declaredBytes(p: any): number | null {
  const per = BYTES[DATA_TYPES[p.dataType] as DType];
  const dims: number[] = (p.dims ?? []).map(longToNumber);
  if (per === undefined || dims.some((d) => d < 0 || !Number.isSafeInteger(d))) return null;
  const n = sizeOf(dims) * per;
  return Number.isSafeInteger(n) ? n : null;
}

/** A byte position written as a decimal string in external_data: digits only, a safe integer; null otherwise. */
function bytePosition(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (!/^[0-9]+$/.test(value)) return NaN;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : NaN;
}

/** A model-supplied string for a message: short, one line, printable. */
function quoted(value: string): string {
  const s = value.replace(/[^\x20-\x7e]/g, '?');
  return `'${s.length > 60 ? `${s.slice(0, 60)}…` : s}'`;
}

/** True when `path` is `dir` itself or lies below it (both absolute and normalised). */
function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * The real path of `path`, or of its deepest existing ancestor when it does not exist, so that a missing file behind a
 * symlink that leaves the folder is reported as outside it (never as missing: that would reveal what exists there).
 */
function realOrAncestor(path: string): { real: string; exists: boolean } {
  try {
    return { real: realpathSync(path), exists: true };
  } catch {
    const parent = dirname(path);
    if (parent === path) return { real: path, exists: false };
    const up = realOrAncestor(parent);
    return { real: up.exists ? join(up.real, basename(path)) : up.real, exists: false };
  }
}

/** Reads `length` bytes at `offset` from an open file descriptor. */
function readAt(fd: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? out : out.subarray(0, done);
}

/**
 * External data (ONNX external_data: location, offset, length), read only from regular files inside the model's
 * folder (symlinks resolved): a location that leaves it, however it is written, gets one message that says nothing
 * about the file it names. Only the bytes [offset, offset + length) are read.
 */
function externalBytes(p: any, origin: TensorOrigin, name: string, what = 'Initializer'): Uint8Array {
  const kv = new Map<string, string>((p.externalData ?? []).map((e: any) => [String(e.key), String(e.value ?? '')]));
  const location = kv.get('location');
  const where = `${what} '${name}' in ${origin.file}`;
  if (!location) {
    throw new LipcheckError('UNREADABLE', `${where} is marked as external data but names no location. Re-export the model with its weights embedded.`);
  }
  const offset = kv.has('offset') ? bytePosition(kv.get('offset')) : 0;
  const length = bytePosition(kv.get('length'));
  for (const [key, value] of [['offset', offset], ['length', length]] as const) {
    if (Number.isNaN(value)) {
      throw new LipcheckError('UNREADABLE', `${where} gives its external data ${key} as ${quoted(kv.get(key)!)}, which is not a byte count (a non-negative integer). The model is corrupt; re-export it.`);
    }
  }
  const outside = new LipcheckError('UNREADABLE', `${where} points to external data ${quoted(location)} outside the model's folder; lipcheck reads external data only from files inside the folder that holds the model. Copy the data file next to the model and re-export it with a relative location.`);
  if (isAbsolute(location) || location.includes('\0')) throw outside;
  let base: string;
  try {
    base = realpathSync(origin.baseDir);
  } catch (e) {
    throw new LipcheckError('UNREADABLE', `The folder of ${origin.file} cannot be resolved to read the external data of ${what.toLowerCase()} '${name}' (${(e as NodeJS.ErrnoException).code ?? e}).`, { cause: e });
  }
  const lexical = resolve(base, location);
  if (!isInside(base, lexical)) throw outside;
  const { real, exists } = realOrAncestor(lexical);
  if (!isInside(base, real)) throw outside;
  if (!exists) {
    throw new LipcheckError('UNREADABLE', `External data file ${quoted(location)} for ${what.toLowerCase()} '${name}' is missing from the folder of ${origin.file}. Copy the model's data files next to it.`);
  }
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; O_NOFOLLOW: `real` has no symlink
    // left, so one found here was swapped in after the check
    fd = openSync(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    throw new LipcheckError('UNREADABLE', `The external data file ${quoted(location)} of ${what.toLowerCase()} '${name}' in ${origin.file} cannot be opened (${(e as NodeJS.ErrnoException).code ?? e}). Check its permissions.`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const what = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a file';
      throw new LipcheckError('UNREADABLE', `${where} points to external data ${quoted(location)}, which is ${what}, not a regular file. External data must be a file next to the model; re-export it.`);
    }
    const size = st.size;
    const start = offset ?? 0;
    if (start > size) {
      throw new LipcheckError('UNREADABLE', `${where} reads external data at offset ${start}, past the end of ${quoted(location)} (${size} bytes). The data file is truncated or belongs to another model; copy it again.`);
    }
    const count = length ?? size - start;
    if (start + count > size) {
      throw new LipcheckError('UNREADABLE', `External data file ${quoted(location)} for ${what.toLowerCase()} '${name}' is too short: it has ${size} bytes but the model reads ${count} bytes at offset ${start}. The file is truncated; copy it again.`);
    }
    // checked before reading, so a wrong length never makes lipcheck read (or allocate) more than the tensor holds
    const expected = declaredBytes(p);
    if (expected !== null && count !== expected) {
      throw new LipcheckError('UNREADABLE', `${where} has ${count} bytes of external data in ${quoted(location)}, but its shape [${(p.dims ?? []).map(longToNumber).join(', ')}] of ${DATA_TYPES[p.dataType]} needs ${expected}. The model or its data file is corrupt; re-export it.`);
    }
    if (count > kMaxLength) {
      throw new LipcheckError('UNSUPPORTED', `${where} has ${count} bytes of external data, more than one tensor lipcheck can hold (${kMaxLength} bytes).`);
    }
    return readAt(fd, start, count);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces a TensorProto's external data by its bytes in raw_data (read under externalBytes' rules), so that the model
 * lipcheck re-encodes for onnxruntime is self-contained: onnxruntime never resolves a location itself (it would do so
 * relative to the working directory, with rules of its own). `what` names the tensor's role in messages.
 */
export function inlineExternalData(p: any, origin: TensorOrigin, what = 'Initializer'): void {
  if (!p || p.dataLocation !== 1) return;
  p.rawData = externalBytes(p, origin, p.name || '(unnamed)', what);
  p.dataLocation = 0;
  p.externalData = [];
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

/** Largest zero tensor held for an input that is not analysed (its declared size is the model's word: capped). */
const ZERO_FEED_LIMIT_BYTES = 2 ** 30;

/**
 * Zero tensors of their declared types for graph inputs that are not analysed (held at zero, as every run of the model
 * holds them): symbolic dimensions count as 1; a negative, non-integer or oversized declared shape is refused.
 */
export function zeroFeeds(values: readonly ValueInfo[], file: string): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const o of values) {
    const dims = (o.dims ?? []).map((d) => (typeof d === 'number' ? d : 1));
    const dtype = (DATA_TYPES[o.elemType] as DType) ?? 'float32';
    const size = dims.reduce((a, b) => a * b, 1);
    const bytes = size * (dtype === 'float64' || dtype === 'int64' ? 8 : 4);
    if (dims.some((d) => !Number.isSafeInteger(d) || d < 0) || !(bytes <= ZERO_FEED_LIMIT_BYTES)) {
      throw new LipcheckError('UNSUPPORTED', `Input '${o.name}' of ${file} declares shape [${dims.join(', ')}]; it is not analysed and would be held at zero, but that shape is not a valid tensor of at most ${ZERO_FEED_LIMIT_BYTES / 2 ** 30} GiB. Fix the model's input declaration, or analyse that input with --input.`);
    }
    const data = dtype === 'float64' ? new Float64Array(size) : dtype === 'int64' ? new BigInt64Array(size) : dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
    feeds[o.name] = { dtype, dims, data };
  }
  return feeds;
}
