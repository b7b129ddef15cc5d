import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onnx } from '../../src/onnx/proto.js';
import { decodeTensor, halfToFloat } from '../../src/onnx/tensor.js';

const origin = { file: 'test.onnx', baseDir: '.' };
/** Round trip through protobuf bytes, as a real file would be read. */
const roundTrip = (fields: Record<string, unknown>) => onnx.TensorProto.decode(onnx.TensorProto.encode(onnx.TensorProto.create({ name: 't', ...fields })).finish());

test('float16 raw data is widened exactly, including subnormals, infinities and negative zero', () => {
  const halves = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x3555];
  const expected = [1, -2, 65504, 2 ** -24, Infinity, -0, 0.333251953125];
  const raw = new Uint8Array(new Uint16Array(halves).buffer);
  const t = decodeTensor(roundTrip({ dims: [7], dataType: 10, rawData: raw }), origin);
  assert.equal(t.dtype, 'float16');
  assert.deepEqual(Array.from(t.data as Float32Array), expected);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
});

test('raw data at an odd offset inside the protobuf buffer is copied before viewing (misaligned)', () => {
  const values = [1.5, -2.25, 3e-8, 1e30];
  const proto = roundTrip({ dims: [2, 2], dataType: 1, rawData: new Uint8Array(new Float32Array(values).buffer) });
  assert.notEqual(proto.rawData.byteOffset % 4, 0, 'the fixture really is misaligned');
  const t = decodeTensor(proto, origin);
  assert.deepEqual(Array.from(t.data as Float32Array), Array.from(Float32Array.from(values)));
});

test('typed fields: float_data, double_data, int64_data, int32_data (int8 and bool), and float16 in int32_data', () => {
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [2], dataType: 1, floatData: [0.5, -1] }), origin).data as Float32Array), [0.5, -1]);
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [2], dataType: 11, doubleData: [0.1, 1e300] }), origin).data as Float64Array), [0.1, 1e300]);
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [3], dataType: 7, int64Data: [1, -2, 2 ** 40] }), origin).data as BigInt64Array), [1n, -2n, 2n ** 40n]);
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [2], dataType: 3, int32Data: [-5, 7] }), origin).data as Int8Array), [-5, 7]);
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [2], dataType: 9, int32Data: [1, 0] }), origin).data as Uint8Array), [1, 0]);
  assert.deepEqual(Array.from(decodeTensor(roundTrip({ dims: [1], dataType: 10, int32Data: [0x3c00] }), origin).data as Float32Array), [1]);
});

test('a tensor whose data contradicts its shape, or that has none, is refused with the numbers', () => {
  assert.throws(() => decodeTensor(roundTrip({ dims: [3], dataType: 1, floatData: [1, 2] }), origin), /holds 2 values, but its shape \[3\] needs 3/);
  assert.throws(() => decodeTensor(roundTrip({ dims: [2, 2], dataType: 1 }), origin), /holds no data/);
  assert.equal(decodeTensor(roundTrip({ dims: [0, 4], dataType: 1 }), origin).data.length, 0);
});
