/**
 * Gram sessions on worker threads (src/backend/ort-pool.ts) and several operators measured at once
 * (OperatorBackend.concurrency, estimateUpper): the same numbers, bit for bit, as one session on the main thread and
 * one operator at a time — the report may not depend on --threads or the core count (issue 13).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createOrtBackend } from '../../../src/backend/index.js';
import { closeOrtWorkers, createWorkerGram, ortIntraThreads, ortWorkerCount, ortWorkersFor, ortWorkerStats, setOrtWorkers, WORKER_MIN_FLOP } from '../../../src/backend/ort-pool.js';
import { sessionOptions, type RuntimeOptions } from '../../../src/backend/runtime.js';
import { measureRegion } from '../../../src/estimators/operator-norm.js';
import { analyze } from '../../../src/index.js';
import type { LinearRegion } from '../../../src/ir/merge.js';
import { Random } from '../../../src/linalg/random.js';
import { FIXTURES } from '../../helpers/dense.js';
import { buildIr } from '../../../src/frontend/build.js';
import { decodeModel } from '../../../src/onnx/read-model.js';
import { encodeGraph } from '../../../src/onnx/writer.js';
import { ACTS, mlpModel, pipeline, randomDense, settings as base } from '../../helpers/mlp.js';

const MODELS = ['conv_bn.onnx', 'residual.onnx', 'conv.onnx'];

async function regionsOf(bytes: Uint8Array): Promise<LinearRegion[]> {
  const { blocks } = await pipeline(bytes);
  return blocks.flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
}

/** Runs `f` with worker sessions switched `mode`, restoring 'auto' after (the fixtures' maps are all below WORKER_MIN_FLOP: 'on'). */
async function withWorkers<T>(mode: 'on' | 'off', f: () => Promise<T>): Promise<T> {
  setOrtWorkers(mode);
  try {
    return await f();
  } finally {
    setOrtWorkers('auto');
  }
}

test('worker count: none under --threads 1, one per two threads otherwise, each session with its share of the threads; small maps stay on the main thread', () => {
  const cpu = (threads: number) => ({ device: 'cpu' as const, threads });
  assert.deepEqual([ortWorkersFor(cpu(4), WORKER_MIN_FLOP / 2), ortWorkersFor(cpu(4), WORKER_MIN_FLOP), ortWorkersFor(cpu(1), 1e12)], [0, 2, 0]);
  setOrtWorkers('on');
  assert.equal(ortWorkersFor(cpu(4), 1), 2);
  setOrtWorkers('off');
  assert.equal(ortWorkersFor(cpu(4), 1e12), 0);
  setOrtWorkers('auto');
  assert.deepEqual([1, 2, 3, 4, 16].map((t) => ortWorkerCount(cpu(t))), [0, 1, 1, 2, 8]);
  assert.deepEqual([1, 2, 3, 4, 16].map((t) => ortIntraThreads(cpu(t))), [1, 2, 3, 2, 2]);
  assert.equal(createOrtBackend({ runtime: cpu(1) }).concurrency, 1);
  assert.equal(createOrtBackend({ runtime: cpu(4) }).concurrency, 3);
});

test('a Gram map on a worker gives bit-identical products, halves and measureRegion results to the main-thread session', async () => {
  const runtime: RuntimeOptions = { device: 'cpu', threads: 2 };
  const layers = randomDense([30, 50, 20], new Random(3));
  const sources = [...MODELS.map((m) => new Uint8Array(readFileSync(FIXTURES + m))), mlpModel(layers, ACTS.relu)];
  let checked = 0;
  for (const bytes of sources) {
    for (const [i, region] of (await regionsOf(bytes)).entries()) {
      const results = [];
      for (const mode of ['off', 'on'] as const) {
        results.push(await withWorkers(mode, async () => {
          const backend = createOrtBackend({ runtime });
          const settings = { ...base, certify: 'off' as const, backend };
          const g = await backend.gram(region);
          assert.equal(ortWorkerStats().sessions, mode === 'on' ? 1 : 0, `${region.id}: the session is ${mode === 'on' ? 'on a worker' : 'on the main thread'}`);
          // a plain array (copied through the worker's shared buffer) and a shared one (read in place)
          const v = new Random(5 + i).unitVector(g.n);
          const shared = new Float64Array(new SharedArrayBuffer(8 * g.n));
          shared.set(v);
          const into = new Float64Array(new SharedArrayBuffer(8 * g.n));
          await g.applyInto(shared, into);
          const out = { apply: await g.apply(v), into, half: await g.half(v) };
          await g.dispose();
          return { ...out, norm: await measureRegion(region, settings, i) };
        }));
      }
      const [main, worker] = results;
      assert.ok(main.apply.some((x) => x !== 0), `${region.id}: a nonzero product, so the comparison can fail`);
      assert.deepEqual([...worker.apply], [...main.apply], `${region.id}: apply`);
      assert.deepEqual([...worker.into], [...main.apply], `${region.id}: applyInto with shared vectors`);
      assert.deepEqual([...worker.half], [...main.half], `${region.id}: half`);
      assert.equal(worker.norm.upper.value, main.norm.upper.value, `${region.id}: bound`);
      assert.equal(worker.norm.estimate, main.norm.estimate, `${region.id}: estimate`);
      assert.equal(worker.norm.iterations, main.norm.iterations);
      assert.deepEqual(worker.norm.direction && [...worker.norm.direction], main.norm.direction && [...main.norm.direction]);
      checked++;
    }
  }
  assert.ok(checked >= 5, `${checked} regions compared`);
});

test('analyze: the same report (all but timings) with sessions on the main thread one operator at a time, and on 1 to 4 workers with operators measured at once', async () => {
  for (const file of ['conv_bn.onnx', 'residual.onnx']) {
    const run = (threads: number, mode: 'on' | 'off') => withWorkers(mode, () => analyze(FIXTURES + file, { device: 'cpu', threads, seed: 4, lowerPairs: 4 }));
    const strip = (r: unknown): unknown => JSON.parse(JSON.stringify(r, (k, v) => (k === 'timings' || k === 'resources' || k === 'ms' || k === 'settings' ? undefined : v)));
    const one = await run(1, 'off');
    assert.ok(one.global.upper && one.global.upper.value > 0, `${file}: a bound`);
    for (const [threads, mode] of [[2, 'on'], [4, 'on'], [8, 'on'], [2, 'off']] as const) {
      assert.deepEqual(strip(await run(threads, mode)), strip(one), `${file}: --threads ${threads}, workers ${mode}`);
    }
  }
  await closeOrtWorkers();
});

test('a model the worker cannot load is a RUNTIME error naming the operator and the way out', async () => {
  await assert.rejects(
    createWorkerGram(new Uint8Array([8, 1, 2, 3]), [1, 4], 4, sessionOptions('cpu', { device: 'cpu' }, 1), 1, 'op7'),
    (e: Error & { code?: string }) => e.code === 'RUNTIME' && /operator 'op7' on a worker thread: .+\. Rerun with --threads 1/.test(e.message),
  );
  await closeOrtWorkers();
});

test('idle workers do not keep the process alive: a script that measured on four workers exits by itself', () => {
  const backend = new URL('../../../src/backend/index.ts', import.meta.url).href;
  const helpers = new URL('../../helpers/mlp.ts', import.meta.url).href;
  const script = `
    const { createOrtBackend } = await import(${JSON.stringify(backend)});
    const { setOrtWorkers } = await import(${JSON.stringify(new URL('../../../src/backend/ort-pool.ts', import.meta.url).href)});
    setOrtWorkers('on');
    const { ACTS, measureAll, mlpModel, pipeline, randomDense, settings } = await import(${JSON.stringify(helpers)});
    const { Random } = await import(${JSON.stringify(new URL('../../../src/linalg/random.ts', import.meta.url).href)});
    const { blocks } = await pipeline(mlpModel(randomDense([12, 20, 16, 8], new Random(2)), ACTS.relu));
    const backend = createOrtBackend({ runtime: { device: 'cpu', threads: 5 } });
    const norms = await measureAll(blocks, { ...settings, certify: 'off', backend });
    console.log('measured', norms.size);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `the script was killed after 60 s: a worker kept it alive (${r.stderr})`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /measured 3/);
});

test('the IR build starts the session workers early for a model with a product past WORKER_MIN_FLOP, and for no other', async () => {
  /** One 3×3 Conv on channels×side×side (2·c²·9·side² flop); the model's weights are seeded. */
  const convModel = (channels: number, side: number) => {
    const rng = new Random(channels);
    const w = { dtype: 'float32' as const, dims: [channels, channels, 3, 3], data: Float32Array.from({ length: channels * channels * 9 }, () => rng.normal() * 0.1) };
    return decodeModel(encodeGraph({
      opset: 13, inputs: [{ name: 'x', dims: [1, channels, side, side] }], outputs: [{ name: 'y', dims: [1, channels, side, side] }],
      nodes: [{ opType: 'Conv', inputs: ['x', 'w'], outputs: ['y'], attrs: { pads: { ints: [1, 1, 1, 1] } } }],
      initializers: [['w', w]],
    }), 'conv.onnx');
  };
  await closeOrtWorkers();
  const runtime: RuntimeOptions = { device: 'cpu', threads: 2 };
  assert.ok(2 * 4 * 4 * 9 * 8 * 8 < WORKER_MIN_FLOP && 2 * 64 * 64 * 9 * 56 * 56 >= WORKER_MIN_FLOP, 'the two sizes straddle the threshold');
  await buildIr(convModel(4, 8), { seed: 0, runtime });
  assert.equal(ortWorkerStats().workers, 0, 'a small model starts no worker');
  await buildIr(convModel(64, 56), { seed: 0, runtime });
  assert.equal(ortWorkerStats().workers, ortWorkerCount(runtime), 'a large one starts them during its build');
  assert.equal(ortWorkerStats().sessions, 0);
  await closeOrtWorkers();
  // under --threads 1 there are no workers to start
  await buildIr(convModel(64, 56), { seed: 0, runtime: { device: 'cpu', threads: 1 } });
  assert.equal(ortWorkerStats().workers, 0);
});
