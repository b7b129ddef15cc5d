import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isLipcheckError } from '../../../src/errors.js';
import { analyze } from '../../../src/index.js';
import { auditIr, scanNumbers } from '../../../src/ir/audit.js';
import { float32Tensor, type Tensor } from '../../../src/ir/tensor.js';
import type { IrNode } from '../../../src/ir/types.js';
import { encodeGraph, type NodeSpec } from '../../../src/onnx/writer.js';

/** Crafted models (issue 14, item 2): each holds one bad number that reaches an operator or a bias of y = f(x). */
function model(nodes: NodeSpec[], inits: [string, Tensor][], opset = 17): Uint8Array {
  return encodeGraph({ opset, inputs: [{ name: 'x', dims: [1, 4] }], outputs: [{ name: 'y', dims: [1, 4] }], nodes, initializers: inits });
}
const v4 = (...xs: number[]) => float32Tensor(xs, [4]);
const eye = (s = 1) => float32Tensor([s, 0, 0, 0, 0, s, 0, 0, 0, 0, s, 0, 0, 0, 0, s], [4, 4]);
const f64 = (xs: number[], dims: number[]): Tensor => ({ dtype: 'float64', dims, data: Float64Array.from(xs) });

/** name → model, and what the refusal must name: the node, its op and the tensor. */
const BAD: { name: string; bytes: Uint8Array; expect: RegExp[] }[] = [
  { name: 'NaN in an Add constant', bytes: model([{ opType: 'Add', name: 'add_bias', inputs: ['x', 'b'], outputs: ['y'] }], [['b', v4(0, NaN, 0, 0)]]), expect: [/Add node 'add_bias'/, /constant 'b' \(input 1\)/, /1 NaN among 4 values \(the first at element 1: NaN\)/] },
  { name: '+Infinity in a Sub constant', bytes: model([{ opType: 'Sub', name: 'shift', inputs: ['x', 'c'], outputs: ['y'] }], [['c', v4(0, 0, Infinity, 0)]]), expect: [/Sub node 'shift'/, /constant 'c'/, /\+Infinity/] },
  { name: 'NaN in a Gemm bias', bytes: model([{ opType: 'Gemm', name: 'fc', inputs: ['x', 'W', 'bias'], outputs: ['y'] }], [['W', eye()], ['bias', v4(NaN, NaN, 0, 0)]]), expect: [/Gemm node 'fc'/, /constant 'bias' \(input 2\)/, /2 NaN/] },
  { name: '-Infinity in a Gemm bias', bytes: model([{ opType: 'Gemm', name: 'fc', inputs: ['x', 'W', 'bias'], outputs: ['y'] }], [['W', eye()], ['bias', v4(0, 0, 0, -Infinity)]]), expect: [/Gemm node 'fc'/, /'bias'/, /-Infinity/] },
  {
    name: 'NaN in a BatchNormalization bias',
    bytes: encodeGraph({
      opset: 15, inputs: [{ name: 'x', dims: [1, 2, 2, 2] }], outputs: [{ name: 'y', dims: [1, 2, 2, 2] }],
      nodes: [{ opType: 'BatchNormalization', name: 'bn', inputs: ['x', 'g', 'beta', 'mu', 'var'], outputs: ['y'] }],
      initializers: [['g', float32Tensor([1, 1], [2])], ['beta', float32Tensor([0, NaN], [2])], ['mu', float32Tensor([0, 0], [2])], ['var', float32Tensor([1, 1], [2])]],
    }),
    expect: [/BatchNormalization node 'bn'/, /constant 'beta' \(input 2\)/, /NaN/],
  },
  {
    name: 'a negative BatchNormalization variance',
    bytes: encodeGraph({
      opset: 15, inputs: [{ name: 'x', dims: [1, 2, 2, 2] }], outputs: [{ name: 'y', dims: [1, 2, 2, 2] }],
      nodes: [{ opType: 'BatchNormalization', name: 'bn', inputs: ['x', 'g', 'beta', 'mu', 'var'], outputs: ['y'] }],
      initializers: [['g', float32Tensor([1, 1], [2])], ['beta', float32Tensor([0, 0], [2])], ['mu', float32Tensor([0, 0], [2])], ['var', float32Tensor([1, -4], [2])]],
    }),
    expect: [/BatchNormalization node 'bn'/, /variance 'var'/, /element 1/],
  },
  { name: 'division by a denormal constant', bytes: model([{ opType: 'Div', name: 'div', inputs: ['x', 'd'], outputs: ['y'] }], [['d', v4(1, 1e-40, 1, 1)]]), expect: [/Div node 'div'/, /divides by constant 'd'/, /0 zero and 1 denormal value among 4 \(the first at element 1/] },
  { name: 'division by zero', bytes: model([{ opType: 'Div', name: 'div', inputs: ['x', 'd'], outputs: ['y'] }], [['d', v4(2, 2, 0, 2)]]), expect: [/Div node 'div'/, /divides by constant 'd'/, /1 zero/] },
  {
    name: 'NaN in a Pad value',
    bytes: model([{ opType: 'Pad', name: 'pad', inputs: ['x', 'pads', 'value'], outputs: ['y'] }], [['pads', { dtype: 'int64', dims: [4], data: BigInt64Array.from([0n, 0n, 0n, 0n]) }], ['value', float32Tensor([NaN], [])]]),
    expect: [/Pad node 'pad'/, /constant 'value' \(input 2\)/, /NaN/],
  },
  { name: 'a NaN Clip bound', bytes: model([{ opType: 'Clip', name: 'clip', inputs: ['x', 'lo', 'hi'], outputs: ['y'] }], [['lo', float32Tensor([NaN], [])], ['hi', float32Tensor([6], [])]]), expect: [/Clip node 'clip'/, /constant 'lo' \(input 1\)/, /NaN/] },
  { name: 'a NaN LeakyRelu alpha', bytes: model([{ opType: 'LeakyRelu', name: 'lrelu', inputs: ['x'], outputs: ['y'], attrs: { alpha: { f: NaN } } }], []), expect: [/LeakyRelu node 'lrelu'/, /attribute 'alpha' is NaN/] },
  {
    // the constant is computed (1/0 in the graph), not stored: the audit sees what onnxruntime evaluated
    name: 'an infinite constant computed by the graph',
    bytes: model([{ opType: 'Div', name: 'make_inf', inputs: ['one', 'zero'], outputs: ['inf'] }, { opType: 'Add', name: 'add_inf', inputs: ['x', 'inf'], outputs: ['y'] }], [['one', v4(1, 1, 1, 1)], ['zero', v4(1, 0, 1, 1)]]),
    expect: [/Add node 'add_inf'/, /constant 'inf'/, /\+Infinity/],
  },
  {
    // finite constants whose converted scale γ/√(var+ε) = 1e30/1e-15 is beyond float32: only the IR audit sees it
    name: 'a BatchNormalization scale beyond float32',
    bytes: encodeGraph({
      opset: 15, inputs: [{ name: 'x', dims: [1, 2, 2, 2] }], outputs: [{ name: 'y', dims: [1, 2, 2, 2] }],
      nodes: [{ opType: 'BatchNormalization', name: 'bn_big', inputs: ['x', 'g', 'beta', 'mu', 'var'], outputs: ['y'], attrs: { epsilon: { f: 1e-30 } } }],
      initializers: [['g', float32Tensor([1, 1e30], [2])], ['beta', float32Tensor([0, 0], [2])], ['mu', float32Tensor([0, 0], [2])], ['var', float32Tensor([1, 0], [2])]],
    }),
    expect: [/BatchNormalization node 'bn_big'/, /scaling factor, computed from the node's constants/, /beyond float32's range/],
  },
];

async function outcome(bytes: Uint8Array, name: string) {
  try {
    const r = await analyze({ bytes, name }, { device: 'cpu', lowerPairs: 0, method: 'autolip', iterations: 20 });
    return { status: r.global.status, upper: r.global.upper };
  } catch (e) {
    if (!isLipcheckError(e)) throw e;
    return { code: e.code, message: e.message };
  }
}

for (const c of BAD) {
  test(`finite-number audit: ${c.name} is refused (UNSUPPORTED), naming the node, op and tensor`, async () => {
    const o = await outcome(c.bytes, `${c.name}.onnx`);
    assert.equal(o.code, 'UNSUPPORTED', `got ${JSON.stringify(o)}`);
    for (const re of c.expect) assert.match(o.message!, re);
    assert.match(o.message!, /NaN, infinite or overflowing numbers/);
    assert.match(o.message!, /Fix these constants/);
  });
}

test('finite-number audit: infinite Clip bounds (no bound) and denormal additive constants are accepted, with the exact constant 1', async () => {
  const clip = model([{ opType: 'Clip', name: 'clip', inputs: ['x', 'lo', 'hi'], outputs: ['y'] }], [['lo', float32Tensor([-Infinity], [])], ['hi', float32Tensor([Infinity], [])]]);
  const denormalBias = model([{ opType: 'Add', name: 'add', inputs: ['x', 'b'], outputs: ['y'] }], [['b', v4(1e-40, 0, -1e-42, 0)]]);
  for (const [name, bytes] of [['clip', clip], ['denormal bias', denormalBias]] as const) {
    const o = await outcome(bytes, name);
    assert.equal(o.status, 'bounded', `${name}: ${JSON.stringify(o)}`);
    assert.ok(o.upper && Math.abs(o.upper.value - 1) < 1e-9, `${name}: ${JSON.stringify(o.upper)}`);
  }
});

test('scanNumbers counts NaN, ±Infinity, float32 overflow, zeros and denormals; auditIr flags an overflowing weight', () => {
  const s = scanNumbers(f64([NaN, Infinity, -Infinity, 1e39, 0, 1e-40, 1, -2], [8]))!;
  assert.deepEqual({ ...s, first: s.first }, { size: 8, nan: 1, posInf: 1, negInf: 1, huge: 1, zero: 1, denormal: 1, first: { index: 0, value: NaN } });
  assert.equal(scanNumbers({ dtype: 'int64', dims: [1], data: BigInt64Array.of(1n) }), null);
  const node = (w: Tensor): IrNode => ({ kind: 'linear', name: 'mm', opType: 'MatMul', inputs: ['x'], inShapes: [[1, 2]], output: 'y', outShape: [1, 2], prim: { op: 'matmul', weight: w, side: 'right' } });
  assert.deepEqual(auditIr([node(f64([1, 0, 0, 1], [2, 2]))]), []);
  const [line] = auditIr([node(f64([1, 0, 0, 4e38], [2, 2]))]);
  assert.match(line, /^MatMul node 'mm': its weights, computed from the node's constants, hold 1 value beyond float32's range/);
  assert.deepEqual(auditIr([{ kind: 'activation', name: 'act', opType: 'LeakyRelu', fn: 'LeakyRelu', slope: [NaN, 1], inputs: ['x'], inShapes: [[2]], output: 'y', outShape: [2] }]).length, 1);
});

test('CLI: a NaN in an Add constant exits 3 (UNSUPPORTED) and names the node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-audit-'));
  try {
    const file = join(dir, 'nan_add.onnx');
    writeFileSync(file, BAD[0].bytes);
    const bin = fileURLToPath(new URL('../../../bin/lipcheck.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, file, '--device', 'cpu'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /Add node 'add_bias'/);
    assert.equal(r.stdout, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('scanNumbers: the one-comparison fast path classifies the float32 boundaries as the full test does, and a repeated scan is remembered', () => {
  const min = 2 ** -126, max = 3.4028234663852886e38;
  const d = Float64Array.of(min, -min, min / 2, -0, max, -max, max * 2, NaN, 1);
  const s = scanNumbers({ dtype: 'float64', dims: [d.length], data: d })!;
  assert.deepEqual([s.zero, s.denormal, s.huge, s.nan, s.posInf, s.negInf], [1, 1, 1, 1, 0, 0]);
  assert.deepEqual(s.first, { index: 7, value: NaN });
  const f = Float32Array.of(min, min / 4, 0, max, -Infinity);
  const t = scanNumbers({ dtype: 'float32', dims: [f.length], data: f })!;
  assert.deepEqual([t.zero, t.denormal, t.huge, t.negInf], [1, 1, 0, 1]);
  // the same data array under another tensor object: the same scan (tensors are not written once decoded)
  assert.equal(scanNumbers({ dtype: 'float32', dims: [5, 1], data: f }), t);
});
