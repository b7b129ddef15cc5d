import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// onnx-proto is a CommonJS build of the protobufjs static module for onnx.proto.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const onnx: any = require('onnx-proto').onnx;

/** ONNX TensorProto.DataType numbers and lipcheck's names for them. */
export const DATA_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

/** The ONNX data-type number for a lipcheck dtype name. */
export function dataTypeNumber(dtype: string): number {
  for (const [k, v] of Object.entries(DATA_TYPES)) if (v === dtype) return Number(k);
  throw new Error(`no ONNX data type for '${dtype}'`);
}

/**
 * A protobuf int64 (number or Long) as a JS number. An integer in the int32 range comes back through `| 0` (the same
 * value): Long.toNumber's arithmetic otherwise yields a double-valued number, and dims and attributes read that way
 * sent every kernel indexing by them into V8's float64 paths ("not a Smi" deoptimisations: LipSDP's solver ran
 * 1.5–2× slower on acasxu_2_1 in some processes). Values outside that range are left as they are.
 */
export function longToNumber(v: unknown): number {
  return small(rawLong(v));
}

function rawLong(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  if (typeof v === 'string') return Number(v);
  return 0;
}

function small(x: number): number {
  return Number.isInteger(x) && x >= -0x80000000 && x <= 0x7fffffff ? x | 0 : x;
}
