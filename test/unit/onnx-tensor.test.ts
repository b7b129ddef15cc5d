import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { onnx } from '../../src/onnx/proto.js';
import { decodeModel } from '../../src/onnx/read-model.js';
import { decodeTensor, halfToFloat } from '../../src/onnx/tensor.js';
import { encodeGraph } from '../../src/onnx/writer.js';

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

test('raw data whose offset suits its element type is viewed in place (no copy); other offsets are copied; the values are the same', () => {
  // the name's length moves raw_data's offset in the encoded bytes: every residue mod 8 occurs among 8 lengths
  const values = [1.5, -2.25, 3e-8, 1e30, 0, -0, 7, 2 ** -130];
  let inPlace = 0, copied = 0;
  for (const [dataType, Typed] of [[1, Float32Array], [11, Float64Array], [7, BigInt64Array]] as const) {
    for (let len = 1; len <= 8; len++) {
      const data = Typed === BigInt64Array ? BigInt64Array.from(values.map((_, i) => BigInt(i * 3 - 7))) : Typed.from(values);
      const bytes = onnx.TensorProto.encode(onnx.TensorProto.create({ name: 'w'.repeat(len), dims: [8], dataType, rawData: new Uint8Array(data.buffer) })).finish();
      const proto = onnx.TensorProto.decode(bytes);
      const t = decodeTensor(proto, origin);
      assert.deepEqual(Array.from(t.data as ArrayLike<number | bigint>), Array.from(data as ArrayLike<number | bigint>), `type ${dataType}, name length ${len}`);
      const view = t.data as Float32Array;
      if (proto.rawData.byteOffset % Typed.BYTES_PER_ELEMENT === 0) {
        assert.equal(view.buffer, proto.rawData.buffer, 'an aligned raw_data is the tensor\'s memory');
        assert.equal(view.byteOffset, proto.rawData.byteOffset);
        inPlace++;
      } else {
        assert.notEqual(view.buffer, proto.rawData.buffer, 'a misaligned raw_data is copied');
        copied++;
      }
    }
  }
  assert.ok(inPlace >= 3 && copied >= 3, `${inPlace} viewed in place, ${copied} copied`);
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

test('raw little-endian data of every fixed-width type decodes to the values written, byte by byte', () => {
  // bytes built explicitly little-endian with DataView, so the test does not lean on the host's byte order
  const cases: [number, string, number, (v: DataView, i: number, x: number) => void, number[]][] = [
    [1, 'float32', 4, (v, i, x) => v.setFloat32(i, x, true), [1.5, -2.25, 3e-8, 1e30]],
    [11, 'float64', 8, (v, i, x) => v.setFloat64(i, x, true), [0.1, -1e300, 5e-324, 2]],
    [5, 'int16', 2, (v, i, x) => v.setInt16(i, x, true), [-32768, 1, 32767, -2]],
    [4, 'uint16', 2, (v, i, x) => v.setUint16(i, x, true), [65535, 0, 258, 7]],
    [6, 'int32', 4, (v, i, x) => v.setInt32(i, x, true), [-2147483648, 16909060, 2147483647, -5]],
    [12, 'uint32', 4, (v, i, x) => v.setUint32(i, x, true), [4294967295, 16909060, 0, 9]],
    [7, 'int64', 8, (v, i, x) => v.setBigInt64(i, BigInt(x), true), [-(2 ** 53), 72623859790382856, 0, -1]],
    [13, 'uint64', 8, (v, i, x) => v.setBigUint64(i, BigInt(x), true), [2 ** 53, 72623859790382856, 0, 1]],
  ];
  for (const [dataType, dtype, per, set, values] of cases) {
    const raw = new Uint8Array(per * values.length);
    const view = new DataView(raw.buffer);
    values.forEach((x, k) => set(view, per * k, x));
    const t = decodeTensor(roundTrip({ dims: [values.length], dataType, rawData: raw }), origin);
    assert.equal(t.dtype, dtype);
    const expected = dtype.endsWith('int64') ? values.map((x) => BigInt(x)) : dtype === 'float32' ? values.map(Math.fround) : values;
    assert.deepEqual(Array.from(t.data as ArrayLike<number | bigint>), expected, dtype);
  }
});

/** An external-data TensorProto for a float32 tensor of `dims`, with these raw key/value strings. */
const external = (dims: number[], entries: Record<string, string>) => roundTrip({
  dims, dataType: 1, dataLocation: 1, externalData: Object.entries(entries).map(([key, value]) => ({ key, value })),
});

test('external data: only the bytes [offset, offset + length) are read, from a shared data file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-ext-'));
  try {
    const values = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    writeFileSync(join(dir, 'data.bin'), new Uint8Array(values.buffer));
    const at = { file: 'm.onnx', baseDir: dir };
    assert.deepEqual(Array.from(decodeTensor(external([2], { location: 'data.bin', offset: '8', length: '8' }), at).data as Float32Array), [3, 4]);
    // no length: to the end of the file
    assert.deepEqual(Array.from(decodeTensor(external([3], { location: 'data.bin', offset: '20' }), at).data as Float32Array), [6, 7, 8]);
    assert.throws(() => decodeTensor(external([2], { location: 'data.bin', offset: '0x8', length: '8' }), at), /offset as '0x8', which is not a byte count/);
    assert.throws(() => decodeTensor(external([2], { location: 'data.bin', offset: '', length: '8' }), at), /offset as '', which is not a byte count/);
    assert.throws(() => decodeTensor(external([2], { location: 'data.bin', offset: '8', length: '8e0' }), at), /length as '8e0'/);
    assert.throws(() => decodeTensor(external([2], { location: 'data.bin', offset: '33' }), at), /offset 33, past the end of 'data\.bin' \(32 bytes\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('external data: a location that leaves the folder is refused the same way whether or not its target exists', () => {
  const root = mkdtempSync(join(tmpdir(), 'lipcheck-ext-'));
  try {
    mkdirSync(join(root, 'model'));
    mkdirSync(join(root, 'outside'));
    writeFileSync(join(root, 'outside', 'real.bin'), new Uint8Array(8));
    symlinkSync('../outside', join(root, 'model', 'link'));
    const at = { file: 'm.onnx', baseDir: join(root, 'model') };
    const message = (location: string) => {
      try {
        decodeTensor(external([2], { location }), at);
      } catch (e) {
        return (e as Error).message.replace(location, 'LOCATION');
      }
      return 'read';
    };
    const refused = message('../outside/real.bin');
    assert.match(refused, /points to external data 'LOCATION' outside the model's folder/);
    for (const location of ['../outside/none.bin', 'link/real.bin', 'link/none.bin', 'link/../../outside/real.bin', join(root, 'outside', 'real.bin')]) {
      assert.equal(message(location), refused, location);
    }
    assert.match(message('none.bin'), /External data file 'LOCATION' for initializer 't' is missing from the folder of m\.onnx/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('boundary casts: float16/float64/bfloat16 graph inputs and outputs become float32, through a Cast or the model\'s own', () => {
  const spec = (dtype: string) => onnx.ModelProto.decode(encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 2] }], outputs: [{ name: 'y', dims: [1, 2] }],
    nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'], name: 'relu' }],
  }));
  for (const [type, dtype] of [[10, 'float16'], [11, 'float64'], [16, 'bfloat16']] as const) {
    const m = spec(dtype);
    m.graph.input[0].type.tensorType.elemType = type;
    m.graph.output[0].type.tensorType.elemType = type;
    const d = decodeModel(onnx.ModelProto.encode(m).finish(), 'm.onnx');
    assert.deepEqual([d.inputs[0].elemType, d.outputs[0].elemType], [1, 1], dtype);
    assert.deepEqual(d.nodes.map((n) => `${n.opType}:${n.inputs.join(',')}>${n.outputs.join(',')}`), [`Cast:x>x__${dtype}`, `Relu:x__${dtype}>y__${dtype}`, `Cast:y__${dtype}>y`], dtype);
    assert.deepEqual([d.nodes[0].attributes.int('to', 0), d.nodes[2].attributes.int('to', 0)], [type, 1]);
  }
  // a model that casts at its own boundary: its Casts take the float32 input and give the float32 output
  const own = onnx.ModelProto.decode(encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 2] }], outputs: [{ name: 'y', dims: [1, 2] }],
    nodes: [
      { opType: 'Cast', inputs: ['x'], outputs: ['xf'], attrs: { to: { i: 1 } }, name: 'in' },
      { opType: 'Relu', inputs: ['xf'], outputs: ['yf'], name: 'relu' },
      { opType: 'Cast', inputs: ['yf'], outputs: ['y'], attrs: { to: { i: 16 } }, name: 'out' },
    ],
  }));
  own.graph.input[0].type.tensorType.elemType = 16;
  own.graph.output[0].type.tensorType.elemType = 16;
  const d = decodeModel(onnx.ModelProto.encode(own).finish(), 'm.onnx');
  assert.deepEqual(d.nodes.map((n) => `${n.name}:${n.attributes.int('to', 0)}`), ['in:1', 'relu:0', 'out:1']);
  assert.deepEqual([d.inputs[0].elemType, d.outputs[0].elemType], [1, 1]);
});

test('boundary casts: a subgraph that reads the float16 input from the outer scope reads the cast value', () => {
  const m = onnx.ModelProto.decode(encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 2] }, { name: 'c', dtype: 'bool', dims: [] }], outputs: [{ name: 'y', dims: [1, 2] }],
    nodes: [{ opType: 'If', inputs: ['c'], outputs: ['y'], name: 'if' }],
  }));
  const branch = onnx.ModelProto.decode(encodeGraph({ opset: 13, inputs: [], outputs: [{ name: 'b', dims: [1, 2] }], nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['b'], name: 'inner' }] })).graph;
  m.graph.node[0].attribute = [onnx.AttributeProto.create({ name: 'then_branch', type: 5, g: branch }), onnx.AttributeProto.create({ name: 'else_branch', type: 5, g: branch })];
  m.graph.input[0].type.tensorType.elemType = 10;
  const d = decodeModel(onnx.ModelProto.encode(m).finish(), 'm.onnx');
  assert.deepEqual(d.nodes.map((n) => `${n.opType}:${n.inputs.join(',')}>${n.outputs.join(',')}`), ['Cast:x>x__float16', 'If:c>y']);
  const inner = (d.source as any).graph.node[1].attribute[0].g.node[0];
  assert.deepEqual(inner.input, ['x__float16']);
});

test('int64 fields (dims, attributes) read as the same numbers, small ones as V8 small integers', async () => {
  const { longToNumber } = await import('../../src/onnx/proto.js');
  // values: a protobuf Long as the decoder hands it out, a bigint, a plain number, a string; out-of-range ones unchanged
  const decoded = roundTrip({ dims: [3, 224, 2 ** 40], dataType: 1 }).dims as unknown[];
  assert.deepEqual(decoded.map(longToNumber), [3, 224, 2 ** 40]);
  assert.equal(longToNumber(BigInt(-7)), -7);
  assert.equal(longToNumber('12'), 12);
  assert.equal(longToNumber(2 ** 31), 2 ** 31);
  assert.equal(longToNumber(-(2 ** 31)), -(2 ** 31));
  assert.equal(longToNumber(2.5), 2.5);
  assert.ok(Object.is(longToNumber(Number.NaN), Number.NaN));
  // the representation: a child with V8's natives syntax checks %IsSmi on what a decoded Long gives (Long.toNumber's
  // arithmetic alone yields a heap number, which sent kernels indexing by such sizes into float64 paths)
  const { execFileSync } = await import('node:child_process');
  const script = `
    const { onnx, longToNumber } = await import(${JSON.stringify(new URL('../../src/onnx/proto.ts', import.meta.url).href)});
    const p = onnx.TensorProto.decode(onnx.TensorProto.encode(onnx.TensorProto.create({ name: 't', dims: [64, 3, 7, 7], dataType: 1 })).finish());
    console.log(JSON.stringify(p.dims.map((d) => %IsSmi(longToNumber(d)))));`;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out.trim()), [true, true, true, true]);
});
