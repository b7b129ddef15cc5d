/**
 * mapInLanes (src/estimators/lanes.ts) and the estimators that use it (estimateUpper's norm phase, CP's products of
 * one length): order kept, at most `width` at once, a failure stops new work; CP gives the same numbers measured one
 * product at a time and several at once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createOrtBackend } from '../../../src/backend/index.js';
import { setOrtWorkers } from '../../../src/backend/ort-pool.js';
import { cpSegmentBound } from '../../../src/estimators/cp.js';
import { mapInLanes } from '../../../src/estimators/lanes.js';
import { graphCpBound, graphCpMaps, graphCpObstacle } from '../../../src/estimators/graph-cp.js';
import { chooseGraphScalings } from '../../../src/estimators/graph-cp-scaling.js';
import { laneWidth } from '../../../src/estimators/operator-norm.js';
import { Random } from '../../../src/linalg/random.js';
import { hasShared, SHARED } from '../../helpers/dense.js';
import { ACTS, measureAll, mlpModel, pipeline, randomDense, settings as base } from '../../helpers/mlp.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('mapInLanes: results in item order, never more than width running, every item once', async () => {
  for (const width of [1, 2, 3, 10]) {
    let running = 0, most = 0;
    const seen: number[] = [];
    const out = await mapInLanes([5, 1, 4, 2, 3, 0], width, async (x, i) => {
      running++;
      most = Math.max(most, running);
      seen.push(i);
      await tick(x);
      running--;
      return x * 10 + i;
    });
    assert.deepEqual(out, [50, 11, 42, 23, 34, 5]);
    assert.equal(most, Math.min(width, 6), `width ${width}`);
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4, 5]);
  }
  assert.deepEqual(await mapInLanes([], 4, async () => 1), []);
});

test('mapInLanes: after a failure no new item starts; the error is thrown once the running items settle', async () => {
  const started: number[] = [];
  let finished = 0;
  await assert.rejects(
    mapInLanes([0, 1, 2, 3, 4, 5], 2, async (_x, i) => {
      started.push(i);
      await tick(i === 1 ? 1 : 20);
      if (i === 1) throw new Error('item 1 failed');
      finished++;
    }),
    /item 1 failed/,
  );
  assert.deepEqual(started, [0, 1], 'nothing starts after the failure');
  assert.equal(finished, 1, 'the running item 0 settled before the error was thrown');
});

test('CP on a deep MLP: the same bound, products and estimates with the products of one length measured one at a time and four at once', async () => {
  const layers = randomDense([20, 36, 28, 40, 24, 16], new Random(21));
  const { blocks, segments } = await pipeline(mlpModel(layers, ACTS.relu));
  const run = async (threads: number) => {
    const backend = createOrtBackend({ runtime: { device: 'cpu', threads } });
    const settings = { ...base, certify: 'off' as const, backend };
    const known = await measureAll(blocks, settings);
    return cpSegmentBound(segments[0], settings, { known });
  };
  const one = await run(1);
  // every Gram map on a worker (these are below WORKER_MIN_FLOP)
  setOrtWorkers('on');
  const four = await run(5).finally(() => setOrtWorkers('auto'));
  assert.ok(one.norms >= 10, `${one.norms} partial products: several of each length`);
  assert.equal(one.upper.kind, 'probabilistic');
  assert.deepEqual(JSON.parse(JSON.stringify({ ...four, ms: 0 })), JSON.parse(JSON.stringify({ ...one, ms: 0 })));
});

test('graph CP on sri_resnet_b: the same maps, bound and estimate measured one at a time and three at once', async (t) => {
  if (!hasShared) return t.skip(`${SHARED} is absent: no sri_resnet_b to measure`);
  const { ir, blocks } = await pipeline(new Uint8Array(readFileSync(SHARED + 'sri_resnet_b.onnx')));
  assert.equal(graphCpObstacle(ir, blocks), null);
  const run = async (threads: number) => {
    const backend = createOrtBackend({ runtime: { device: 'cpu', threads } });
    const settings = { ...base, certify: 'off' as const, backend };
    const known = await measureAll(blocks, settings);
    const plan = graphCpMaps(ir, blocks, known, settings)!;
    const plain = await graphCpBound(plan, settings, { budget: 4e9 });
    // the rescaling's descent runs its maps side by side too: the same scalings, and the same bound on them
    const chosen = (await chooseGraphScalings(plan, backend, { iterations: 3, steps: 2, budget: 1e10, seed: 5, width: laneWidth(settings) }))!;
    const scaled = await graphCpBound(plan, settings, { budget: 4e9, scaling: chosen.scaling });
    return { plain, chosen: { ...chosen, scaling: [...chosen.scaling].map(([k, v]) => [k, [...v.dims], [...v.data]]) }, scaled };
  };
  const one = await run(1);
  setOrtWorkers('on');
  const three = await run(4).finally(() => setOrtWorkers('auto'));
  assert.ok(one.plain.measured >= 4, `${one.plain.measured} maps measured: several at once`);
  assert.ok(one.chosen.iterations >= 1 && one.chosen.after < one.chosen.before, `descent ${one.chosen.before} → ${one.chosen.after}`);
  const strip = (r: typeof one) => JSON.parse(JSON.stringify({ ...r, plain: { ...r.plain, ms: 0 }, scaled: { ...r.scaled, ms: 0 } }));
  assert.deepEqual(strip(three), strip(one));
});
