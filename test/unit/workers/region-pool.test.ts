/**
 * Region workers (src/workers/region-pool.ts): whole operators and CP's products measured on worker threads, each with
 * its own backend, must give the same report, bit for bit, as the main thread — on every fixture and method — and the
 * same error where an operator cannot be measured.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { analyze, type AnalyzeOptions } from '../../../src/index.js';
import { isLipcheckError } from '../../../src/errors.js';
import { Random } from '../../../src/linalg/random.js';
import { encodeGraph } from '../../../src/onnx/writer.js';
import { compact, MAX_REGION_WORKERS, prestartRegionWorkers, regionWorkerCount, regionWorkerStats, setRegionWorkers, stopRegionWorkers } from '../../../src/workers/region-pool.js';
import { buildIr } from '../../../src/frontend/build.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { FIXTURES, hasShared, SHARED } from '../../helpers/dense.js';
import { stable } from '../../helpers/report.js';
import { randomMat, twoBlocks } from '../../helpers/residual-nets.js';
import { ACTS } from '../../helpers/mlp.js';

const dir = mkdtempSync(join(tmpdir(), 'lipcheck-region-workers-'));
after(async () => {
  setRegionWorkers('auto');
  await stopRegionWorkers();
  rmSync(dir, { recursive: true, force: true });
});

/** The report (or the error's code and message) with region workers switched `mode` (two workers when 'on'). */
async function run(model: string, options: AnalyzeOptions, mode: 'on' | 'off'): Promise<unknown> {
  setRegionWorkers(mode, mode === 'on' ? 2 : 0);
  try {
    return stable(await analyze(model, { device: 'cpu', threads: 2, seed: 7, ...options }));
  } catch (e) {
    if (!isLipcheckError(e)) throw e;
    return { code: e.code, message: e.message };
  } finally {
    setRegionWorkers('auto');
  }
}

test('worker count: one per thread allowed, none on one thread or when switched off', () => {
  const cpu = (threads: number) => ({ device: 'cpu' as const, threads });
  assert.deepEqual([1, 2, 3, 16, 1024].map((t) => regionWorkerCount(cpu(t), 16)), [0, 2, 3, 16, 16]);
  assert.deepEqual([2, 1024].map((t) => regionWorkerCount(cpu(t), 256)), [2, MAX_REGION_WORKERS]);
  assert.equal(regionWorkerCount(cpu(8), 2), 2, 'at most one per core');
  assert.equal(regionWorkerCount({ device: 'cpu' }, 6), 6, '--threads 0: one per core');
  setRegionWorkers('off');
  assert.equal(regionWorkerCount(cpu(16)), 0);
  setRegionWorkers('on', 5);
  assert.equal(regionWorkerCount(cpu(1)), 5);
  setRegionWorkers('auto');
});

test('compact: a typed array viewing part of a larger buffer is sent as a copy of its own elements, the rest unchanged', () => {
  const file = new Uint8Array(1 << 20);
  const view = new Float32Array(file.buffer, 4096, 6);
  view.set([1, -2, 3.5, 0, 1e-30, -7]);
  const own = Float64Array.from([1, 2]);
  const region = { id: 'op1', inShape: [1, 6], nodes: [{ prim: { op: 'matmul', weight: { dtype: 'float32', dims: [2, 3], data: view }, side: 'right' }, offset: own }] };
  const fresh: ArrayBuffer[] = [];
  const c = compact(region, fresh);
  const w = c.nodes[0].prim.weight.data;
  assert.deepEqual(fresh, [w.buffer], 'only the copy is listed to be moved: the caller\'s own arrays stay usable');
  assert.notEqual(w, view);
  assert.equal(w.buffer.byteLength, 6 * 4, 'only the view\'s bytes travel');
  assert.deepEqual([...w], [...view]);
  assert.ok(w instanceof Float32Array);
  assert.equal(c.nodes[0].offset, own, 'an array owning its buffer is sent as it is');
  assert.deepEqual({ ...c, nodes: undefined }, { ...region, nodes: undefined });
  assert.equal(structuredClone(c).nodes[0].prim.weight.data.buffer.byteLength, 24);
});

const CASES: [string, AnalyzeOptions][] = [
  ['conv_bn.onnx', {}],
  ['residual.onnx', {}],
  ['conv.onnx', { method: 'cp' }],
  ['mlp_relu.onnx', {}],
  ['product.onnx', { method: 'cp', certify: 'strict' }],
  ['demo.onnx', { method: 'autolip', certify: 'off' }],
  ['conv_bn.onnx', { norm: 'inf', method: 'cp' }],
];

for (const [model, options] of CASES) {
  test(`${model} ${JSON.stringify(options)}: the same report with every operator and product measured on region workers`, async () => {
    const before = regionWorkerStats().requests;
    const here = await run(FIXTURES + model, options, 'off');
    assert.equal(regionWorkerStats().requests, before, "'off' sends nothing to the workers");
    const there = await run(FIXTURES + model, options, 'on');
    assert.ok(regionWorkerStats().requests > before || options.norm === 'inf', 'the operators went to the workers');
    assert.deepEqual(there, here);
  });
}

test('a shared convolutional model: the same report on region workers', { skip: hasShared ? false : '../shared/models is absent: the shared-model check of region workers is skipped' }, async () => {
  const model = SHARED + 'marabou_cifar10_medium.onnx';
  const before = regionWorkerStats().requests;
  const here = await run(model, {}, 'off');
  const there = await run(model, {}, 'on');
  assert.ok(regionWorkerStats().requests > before);
  assert.deepEqual(there, here);
});

test('a ResNet bottleneck block (CP products with narrowing 1×1 ends, measured folded): the same report on region workers', async () => {
  const rng = new Random(19);
  const [c, b, n] = [16, 4, 6];
  const w = (len: number, s: number) => Float32Array.from({ length: len }, () => s * rng.normal());
  const conv = (x: string, k: string, y: string, size: number) => ({ opType: 'Conv', inputs: [x, k], outputs: [y], name: y, attrs: { kernel_shape: { ints: [size, size] }, pads: { ints: size === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0] } } });
  const file = join(dir, 'bottleneck.onnx');
  writeFileSync(file, encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, c, n, n] }], outputs: [{ name: 'y' }],
    nodes: [
      conv('x', 'k1', 'h1', 1), { opType: 'Mul', inputs: ['h1', 's1'], outputs: ['g1'] }, { opType: 'Relu', inputs: ['g1'], outputs: ['a1'] },
      conv('a1', 'k2', 'h2', 3), { opType: 'Relu', inputs: ['h2'], outputs: ['a2'] }, conv('a2', 'k3', 'h3', 1),
      { opType: 'Add', inputs: ['x', 'h3'], outputs: ['r'] }, { opType: 'Relu', inputs: ['r'], outputs: ['y'] },
    ],
    initializers: [
      ['k1', { dtype: 'float32', dims: [b, c, 1, 1], data: w(b * c, 0.3) }], ['s1', { dtype: 'float32', dims: [1, b, 1, 1], data: Float32Array.from({ length: b }, () => 0.5 + rng.next()) }],
      ['k2', { dtype: 'float32', dims: [b, b, 3, 3], data: w(b * b * 9, 0.3) }], ['k3', { dtype: 'float32', dims: [c, b, 1, 1], data: w(c * b, 0.3) }],
    ],
  }));
  for (const options of [{ method: 'cp' }, {}] as AnalyzeOptions[]) {
    const before = regionWorkerStats().requests;
    const here = await run(file, options, 'off');
    const there = await run(file, options, 'on');
    assert.ok(regionWorkerStats().requests > before, 'the operators went to the workers');
    assert.deepEqual(there, here, JSON.stringify(options));
  }
});

test('graph-cp on a rescaled residual net: the scaling descent\'s maps on region workers give the same report as the maps run here', async () => {
  // twoBlocks (test/helpers/residual-nets.ts) with a planted channel imbalance in its first block, which the descent undoes
  const rng = new Random(23);
  const ws = [randomMat(8, 6, rng), randomMat(6, 8, rng), randomMat(8, 6, rng), randomMat(6, 8, rng)];
  const d = Float64Array.from({ length: 8 }, (_, i) => (i % 2 ? 6 : 1 / 6));
  ws[0] = { ...ws[0], w: ws[0].w.map((v, i) => Math.fround(v * d[Math.floor(i / 6)])) };
  ws[1] = { ...ws[1], w: ws[1].w.map((v, i) => Math.fround(v / d[i % 8])) };
  const file = join(dir, 'two-blocks.onnx');
  writeFileSync(file, twoBlocks(ws, ACTS.relu));
  const here = await run(file, {}, 'off') as { global: { methods: { method: string; upper: { method: string } | null }[] } };
  const graph = here.global.methods.find((m) => m.method === 'graph-cp');
  assert.ok(graph?.upper?.method.includes('rescaled'), `graph-cp ran and its rescaled bound was chosen: ${JSON.stringify(graph)}`);
  const before = regionWorkerStats().descents;
  const there = await run(file, {}, 'on');
  assert.equal(regionWorkerStats().descents, before + 1, 'the descent\'s maps went to the workers');
  assert.deepEqual(there, here);
});

test('an operator that overflows float32 on a worker: the same UNSUPPORTED error, naming the operator, as on the main thread', async () => {
  const rng = new Random(11);
  const data = Float32Array.from({ length: 24 }, () => 1e22 * rng.normal());
  const file = join(dir, 'overflow.onnx');
  writeFileSync(file, encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 4] }], outputs: [{ name: 'y', dims: [1, 6] }],
    nodes: [{ opType: 'Gemm', inputs: ['x', 'w'], outputs: ['y'], name: 'fc_huge' }],
    initializers: [['w', { dtype: 'float32', dims: [4, 6], data }]],
  }));
  const here = await run(file, { lowerPairs: 0 }, 'off') as { code: string; message: string };
  const before = regionWorkerStats().requests;
  const there = await run(file, { lowerPairs: 0 }, 'on');
  assert.equal(regionWorkerStats().requests, before + 1, 'the operator was sent to a worker');
  assert.equal(here.code, 'UNSUPPORTED', JSON.stringify(here));
  assert.match(here.message, /fc_huge.*overflows float32/);
  assert.deepEqual(there, here);
});

test('prestart: the threads a runtime will use start before the first request, and only for a model with a large product', async () => {
  await stopRegionWorkers();
  prestartRegionWorkers({ device: 'cpu', threads: 1 });
  assert.equal(regionWorkerStats().workers, 0, 'none on one thread');
  const runtime = { device: 'cpu' as const, threads: 3 };
  prestartRegionWorkers(runtime);
  assert.equal(regionWorkerStats().workers, regionWorkerCount(runtime), 'as many as the rule gives (at most one per core)');
  await stopRegionWorkers();
  // the build asks for them only where a product reaches the session workers' threshold (a 1×8×8 conv does not)
  let asked = 0;
  const small = decodeModel(new Uint8Array(readFileSync(FIXTURES + 'conv_bn.onnx')), 'conv_bn.onnx');
  await buildIr(small, { seed: 0, runtime: { device: 'cpu', threads: 2 }, onLargeProducts: () => asked++ });
  assert.equal(asked, 0);
  const file = join(dir, 'wide.onnx');
  const rng = new Random(2);
  writeFileSync(file, encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 64, 56, 56] }], outputs: [{ name: 'y', dims: [1, 64, 56, 56] }],
    nodes: [{ opType: 'Conv', inputs: ['x', 'w'], outputs: ['y'], name: 'conv3x3', attrs: { pads: { ints: [1, 1, 1, 1] } } }],
    initializers: [['w', { dtype: 'float32', dims: [64, 64, 3, 3], data: Float32Array.from({ length: 64 * 64 * 9 }, () => 0.05 * rng.normal()) }]],
  }));
  await buildIr(decodeModel(new Uint8Array(readFileSync(file)), file), { seed: 0, runtime: { device: 'cpu', threads: 2 }, onLargeProducts: () => asked++ });
  assert.equal(asked, 1);
});

test('a worker that exits while measuring: the analysis fails with INTERNAL instead of waiting forever, and the next one gets fresh threads', async () => {
  setRegionWorkers('on', 1);
  try {
    let stopped = false;
    const failed = await analyze(FIXTURES + 'conv_bn.onnx', {
      device: 'cpu', threads: 2, lowerPairs: 0,
      // the first operator's request is posted right after its progress event: stop the threads while it is pending
      onProgress: (_done, _total, _what, phase) => {
        if (phase === 'norms' && !stopped) {
          stopped = true;
          queueMicrotask(() => void stopRegionWorkers());
        }
      },
    }).then(() => null, (e: unknown) => e);
    assert.ok(stopped);
    assert.ok(isLipcheckError(failed), String(failed));
    assert.equal(failed.code, 'INTERNAL');
    assert.match(failed.message, /region worker thread exited/);
    const before = regionWorkerStats().requests;
    const again = await analyze(FIXTURES + 'conv_bn.onnx', { device: 'cpu', threads: 2, lowerPairs: 0 });
    assert.ok(regionWorkerStats().requests > before && again.global.upper !== null);
  } finally {
    setRegionWorkers('auto');
  }
});
