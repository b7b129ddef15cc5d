import type { Tensor } from '../ir/tensor.js';
import { longToNumber } from './proto.js';

/** One attribute value, already decoded from AttributeProto (int64 values become numbers here, and only here). */
export type AttributeValue =
  | { type: 'int'; value: number }
  | { type: 'float'; value: number }
  | { type: 'string'; value: string }
  | { type: 'ints'; value: number[] }
  | { type: 'floats'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensor'; value: Tensor }
  | { type: 'other' };

/** Typed, read-only access to a node's attributes with the ONNX spec's defaults supplied by the caller. */
export class Attributes {
  constructor(private readonly values: ReadonlyMap<string, AttributeValue>) {}

  has(name: string): boolean {
    return this.values.has(name);
  }
  names(): string[] {
    return [...this.values.keys()];
  }
  int(name: string, fallback: number): number {
    const v = this.values.get(name);
    return v && v.type === 'int' ? v.value : fallback;
  }
  float(name: string, fallback: number): number {
    const v = this.values.get(name);
    if (v && v.type === 'float') return v.value;
    if (v && v.type === 'int') return v.value;
    return fallback;
  }
  string(name: string, fallback: string): string {
    const v = this.values.get(name);
    return v && v.type === 'string' ? v.value : fallback;
  }
  ints(name: string, fallback: readonly number[] | null): number[] | null {
    const v = this.values.get(name);
    if (v && v.type === 'ints') return v.value;
    return fallback === null ? null : [...fallback];
  }
  floats(name: string, fallback: readonly number[] | null): number[] | null {
    const v = this.values.get(name);
    if (v && v.type === 'floats') return v.value;
    return fallback === null ? null : [...fallback];
  }
  tensor(name: string): Tensor | null {
    const v = this.values.get(name);
    return v && v.type === 'tensor' ? v.value : null;
  }
}

/** Decodes AttributeProto entries; `decodeTensor` handles tensor-valued ones. */
export function decodeAttributes(protos: any[], decodeTensor: (p: any) => Tensor): Attributes {
  const map = new Map<string, AttributeValue>();
  for (const a of protos ?? []) {
    // AttributeProto.AttributeType: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 6 FLOATS, 7 INTS, 8 STRINGS.
    switch (a.type) {
      case 1: map.set(a.name, { type: 'float', value: a.f ?? 0 }); break;
      case 2: map.set(a.name, { type: 'int', value: longToNumber(a.i) }); break;
      case 3: map.set(a.name, { type: 'string', value: Buffer.from(a.s ?? []).toString('utf8') }); break;
      case 4: map.set(a.name, { type: 'tensor', value: decodeTensor(a.t) }); break;
      case 6: map.set(a.name, { type: 'floats', value: [...(a.floats ?? [])] }); break;
      case 7: map.set(a.name, { type: 'ints', value: (a.ints ?? []).map(longToNumber) }); break;
      case 8: map.set(a.name, { type: 'strings', value: (a.strings ?? []).map((b: Uint8Array) => Buffer.from(b).toString('utf8')) }); break;
      default: map.set(a.name, { type: 'other' });
    }
  }
  return new Attributes(map);
}
