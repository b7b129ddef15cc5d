/** Element types lipcheck distinguishes; names follow onnxruntime's tensor type strings. */
export type DType =
  | 'float32' | 'float64' | 'float16' | 'bfloat16'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'bool' | 'string';

/** Typed storage of a tensor's elements. Float16 and bfloat16 are widened to Float32Array on read. */
export type TensorData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | string[];

/** A dense tensor: pure data, row-major. */
export interface Tensor {
  readonly dtype: DType;
  readonly dims: readonly number[];
  readonly data: TensorData;
}

/** Product of dimensions (1 for a scalar). */
export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** True for float element types. */
export function isFloatType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
}

/** The elements as float64 (integers converted exactly where they fit in 2^53). */
export function toFloat64(t: Tensor): Float64Array {
  const d = t.data;
  if (d instanceof Float64Array) return d;
  if (Array.isArray(d)) throw new Error(`cannot read a string tensor as numbers`);
  const out = new Float64Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
  return out;
}

/** The elements as plain numbers (for shapes, axes, indices). */
export function toNumbers(t: Tensor): number[] {
  return Array.from(toFloat64(t));
}

/** A float32 tensor from values and dims. */
export function float32Tensor(data: ArrayLike<number>, dims: readonly number[]): Tensor {
  return { dtype: 'float32', dims: [...dims], data: Float32Array.from(data) };
}

/** An int64 tensor from numbers and dims. */
export function int64Tensor(values: readonly number[], dims: readonly number[] = [values.length]): Tensor {
  return { dtype: 'int64', dims: [...dims], data: BigInt64Array.from(values.map((v) => BigInt(v))) };
}
