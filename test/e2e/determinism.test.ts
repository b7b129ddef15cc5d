import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Tensor } from '../../src/ir/tensor.js';
import { Random } from '../../src/linalg/random.js';
import { CALL_FLOP, regionFlop, WorkBudget } from '../../src/linalg/work.js';
import { analysisOptions } from '../../src/cli/args.js';
import { certificateBudget } from '../../src/estimators/operator-norm.js';
import { topSingularTriplets } from '../../src/linalg/top-singular.js';
import { encodeGraph } from '../../src/onnx/writer.js';
import { FIXTURES, hasShared, SHARED, sigmaMax } from '../helpers/dense.js';
import { stable } from '../helpers/report.js';

// Same model bytes + same settings + same seed ⇒ the same report, whatever the load and --threads (issue 13 item 1):
// every budget is counted in work (linalg/work.ts), never read off a clock.

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'lipcheck-determinism-'));

/** Runs the built CLI without blocking, so that two runs (and a CPU hog) can share the machine. */
function run(args: readonly string[], timeoutMs = 600_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NO_COLOR: '1' } });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
}

/** A busy child process: one core spinning for as long as the test runs. */
function cpuHog(): ChildProcess {
  return spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
}


function report(r: { code: number | null; out: string; err: string }): Record<string, any> {
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out);
}

test('a work budget stops after exactly N units, and a Krylov run after the first cycle that reaches its product count', async () => {
  const budget = new WorkBudget(5);
  let steps = 0;
  while (!budget.exhausted) { budget.charge(1); steps++; }
  assert.equal(steps, 5);
  assert.equal(budget.left, 0);
  assert.ok(new WorkBudget(5).fits(5) && !new WorkBudget(5).fits(5.5));
  // the cost model of a region: 2 flop per multiply-add of its weights plus one onnxruntime call
  const region = { nodes: [{ prim: { op: 'matmul', side: 'right', weight: { dims: [4, 6] } }, outShape: [1, 6], inShapes: [[1, 4]] }] } as never;
  assert.equal(regionFlop(region), CALL_FLOP + 2 * 6 * 4);
  // topSingularTriplets with maxProducts: counted products, so the same stop (and the same values) on every run
  const rng = new Random(3);
  const a = Float64Array.from({ length: 40 * 30 }, () => rng.normal());
  let calls = 0;
  const op = {
    inSize: 30, outSize: 40,
    apply: async (v: Float64Array) => { calls++; const y = new Float64Array(40); for (let i = 0; i < 40; i++) for (let j = 0; j < 30; j++) y[i] += a[i * 30 + j] * v[j]; return y; },
    adjoint: async (u: Float64Array) => { calls++; const y = new Float64Array(30); for (let i = 0; i < 40; i++) for (let j = 0; j < 30; j++) y[j] += a[i * 30 + j] * u[i]; return y; },
  };
  const first = await topSingularTriplets(op, 4, { seed: 1, tol: 1e-14, maxProducts: 100 });
  assert.equal(first.products, calls, 'every product is counted');
  assert.ok(!first.converged && first.products >= 100, `${first.products} products`);
  calls = 0;
  const second = await topSingularTriplets(op, 4, { seed: 1, tol: 1e-14, maxProducts: 100 });
  assert.equal(second.products, first.products);
  assert.deepEqual(second.values, first.values);
  // a budget of exactly the products the first run took stops at the same cycle boundary
  const fewer = await topSingularTriplets(op, 4, { seed: 1, tol: 1e-14, maxProducts: first.products });
  assert.equal(fewer.products, first.products);
});

test('budgets come from counted work and settings only: the certificate rule, and the old millisecond options read at a fixed rate', () => {
  const auto = { certify: 'auto' as const, certifyBudget: 2.8e9 };
  assert.equal(certificateBudget(auto, 0), 2.8e8, 'the floor');
  assert.equal(certificateBudget(auto, 1e9), 7e8, '0.7 × the Lanczos work');
  assert.equal(certificateBudget(auto, 1e11), 2.8e9, 'the --certify-work cap');
  assert.equal(certificateBudget({ ...auto, certify: 'strict' }, 0), 2.8e9);
  const o = analysisOptions({ certifyBudget: '1000', lowerBudget: '25', certifyWork: '2800', lowerWork: '8000' });
  assert.deepEqual([o.certifyBudget, o.lowerBudget], [1400, 100]);
  const n = analysisOptions({ certifyWork: '50', lowerWork: '0' });
  assert.deepEqual([n.certifyBudget, n.lowerBudget], [50, 0]);
  assert.throws(() => analysisOptions({ lowerWork: '-1' }), /--lower-work '-1' is invalid: it must be a non-negative number of Mflop or 'auto'/);
  // the default, auto: no budget passed on (index.ts resolves it from the model, methods.ts autoLowerWork)
  assert.equal(analysisOptions({ lowerWork: 'auto' }).lowerBudget, undefined);
});

/**
 * A small budget on the lower-bound search makes the test sensitive: with a budget in milliseconds (before) the search
 * stopped wherever the loaded machine happened to be; counted in work it stops at the same step every time.
 */
const SETTINGS = ['--json', '--device', 'cpu', '--lower-work', '100'];

async function concurrentAndThreads(model: string): Promise<void> {
  const hog = cpuHog();
  let runs: Record<string, any>[];
  try {
    const [a, b] = await Promise.all([run([model, ...SETTINGS]), run([model, ...SETTINGS])]);
    const [c, d] = [await run([model, ...SETTINGS, '--threads', '1']), await run([model, ...SETTINGS, '--threads', '2'])];
    runs = [a, b, c, d].map(report);
  } finally {
    hog.kill('SIGKILL');
  }
  const [a, b, c, d] = runs;
  assert.ok(a.global.lower && a.global.lower.evaluations > 0, 'the lower bound did some work');
  assert.equal(a.settings.lowerBudget, 100);
  assert.deepEqual(stable(a), stable(b), 'two runs at once beside a CPU hog');
  assert.deepEqual(stable(c), stable(d), '--threads 1 against --threads 2');
  assert.deepEqual(stable(a), stable(c), 'loaded against --threads 1');
}

test('a fixture analysed twice at once beside a CPU hog, and with --threads 1 and 2: identical JSON apart from timings', async () => {
  await concurrentAndThreads(FIXTURES + 'mlp_relu.onnx');
});

test('acasxu_2_1 (the issue\'s example) the same way', async (t) => {
  if (!hasShared) { t.skip('../shared/models is absent: acasxu_2_1.onnx not found'); return; }
  await concurrentAndThreads(SHARED + 'acasxu_2_1.onnx');
});

/** A strided conv net: onnxruntime's CPU Conv with a fed weight of this shape gave thread-dependent outputs (now baked in). */
function stridedConvModel(): string {
  const rng = new Random(11);
  const w = (dims: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => 0.1 * rng.normal()) });
  const file = join(dir, 'strided-conv.onnx');
  writeFileSync(file, encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 32, 16, 16] }], outputs: [{ name: 'y', dims: [1, 16, 8, 8] }],
    nodes: [
      { opType: 'Conv', inputs: ['x', 'w1'], outputs: ['h'], name: 'conv1', attrs: { pads: { ints: [1, 1, 1, 1] }, strides: { ints: [2, 2] } } },
      { opType: 'Relu', inputs: ['h'], outputs: ['a'], name: 'relu' },
      { opType: 'Conv', inputs: ['a', 'w2'], outputs: ['y'], name: 'conv2', attrs: { pads: { ints: [1, 1, 1, 1] } } },
    ],
    initializers: [['w1', w([64, 32, 3, 3])], ['w2', w([16, 64, 3, 3])]],
  }));
  return file;
}

test('a strided conv net with --threads 1 and 4: identical JSON apart from timings', async () => {
  const model = stridedConvModel();
  const [one, four] = [await run([model, ...SETTINGS, '--threads', '1']), await run([model, ...SETTINGS, '--threads', '4'])];
  const [a, b] = [report(one), report(four)];
  assert.ok(a.layers.some((l: { iterations: number }) => l.iterations > 0), 'Lanczos ran through onnxruntime');
  assert.deepEqual(stable(b), stable(a));
});

test('a batch rerun against its own --out passes the 0 % gate, with the same records', async () => {
  const zoo = join(dir, 'zoo');
  mkdirSync(zoo);
  for (const f of ['mlp_relu.onnx', 'mlp_tanh.onnx', 'residual.onnx', 'conv.onnx']) copyFileSync(FIXTURES + f, join(zoo, f));
  if (hasShared) copyFileSync(SHARED + 'acasxu_2_1.onnx', join(zoo, 'acasxu_2_1.onnx'));
  const common = ['--device', 'cpu', '--jobs', '2', '--lower-work', '100'];
  const first = await run(['batch', zoo, '--out', join(dir, 'first.jsonl'), ...common]);
  assert.equal(first.code, 0, first.err);
  const hog = cpuHog();
  let again;
  try {
    again = await run(['batch', zoo, '--out', join(dir, 'again.jsonl'), '--baseline', join(dir, 'first.jsonl'), '--json', ...common]);
  } finally {
    hog.kill('SIGKILL');
  }
  assert.equal(again.code, 0, `the default --max-increase 0% gate fails on a rerun of the same models:\n${again.out}\n${again.err}`);
  const records = (file: string) => readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).sort((x, y) => (x.path < y.path ? -1 : 1));
  const [a, b] = [records('first.jsonl'), records('again.jsonl')];
  assert.equal(a.length, hasShared ? 5 : 4);
  assert.ok(a.every((r) => r.status === 'bounded'), JSON.stringify(a.map((r) => [r.path, r.status])));
  assert.deepEqual(stable(b), stable(a));
});

test('--lower-work 0 (and the old --lower-budget 0) does no lower-bound work: no lower bound, the upper bound unchanged', async () => {
  const model = FIXTURES + 'mlp_relu.onnx';
  const [none, old, some] = [await run([model, '--json', '--device', 'cpu', '--lower-work', '0']), await run([model, '--json', '--device', 'cpu', '--lower-budget', '0']), await run([model, ...SETTINGS])];
  const [r0, rOld, r1] = [report(none), report(old), report(some)];
  assert.equal(r0.global.lower, null);
  assert.equal(r0.global.ratio, null);
  assert.equal(r0.settings.lowerBudget, 0);
  assert.deepEqual(stable(rOld), stable(r0), '--lower-budget 0 is --lower-work 0');
  assert.ok(r1.global.lower.evaluations > 0);
  assert.deepEqual(r0.global.upper, r1.global.upper);
  // the old millisecond option is read at a fixed rate (4 Mflop per ms): the same work, the same report
  const legacy = report(await run([model, '--json', '--device', 'cpu', '--lower-budget', '25']));
  assert.deepEqual(stable(legacy), stable(r1));
});

/** Three Gemm layers with weights ≈ 1e14: each operator's norm is measured fine, but the whole model overflows float32. */
function overflowingModel(): { file: string; product: number } {
  const rng = new Random(5);
  let product = 1;
  const w = (r: number, c: number): Tensor => {
    const data = Float32Array.from({ length: r * c }, () => 1e14 * rng.normal());
    product *= sigmaMax(data, r, c);
    return { dtype: 'float32', dims: [r, c], data };
  };
  const file = join(dir, 'overflow.onnx');
  writeFileSync(file, encodeGraph({
    opset: 13, inputs: [{ name: 'x', dims: [1, 4] }], outputs: [{ name: 'y', dims: [1, 3] }],
    nodes: [
      { opType: 'Gemm', inputs: ['x', 'w1'], outputs: ['h1'], name: 'fc1' }, { opType: 'Relu', inputs: ['h1'], outputs: ['a1'], name: 'relu1' },
      { opType: 'Gemm', inputs: ['a1', 'w2'], outputs: ['h2'], name: 'fc2' }, { opType: 'Relu', inputs: ['h2'], outputs: ['a2'], name: 'relu2' },
      { opType: 'Gemm', inputs: ['a2', 'w3'], outputs: ['y'], name: 'fc3' },
    ],
    initializers: [['w1', w(4, 6)], ['w2', w(6, 6)], ['w3', w(6, 3)]],
  }));
  return { file, product };
}

test('a model whose output overflows float32 gets its upper bound and no lower bound, with a warning naming the output (not exit 70)', async () => {
  const model = overflowingModel();
  const r = await run([model.file, '--json', '--device', 'cpu', '--method', 'autolip']);
  assert.equal(r.code, 0, r.err);
  const rep = JSON.parse(r.out);
  assert.equal(rep.global.status, 'bounded');
  // AutoLip here is the product of the three weights' spectral norms (ReLU slopes 1), computed independently in float64
  assert.ok(Math.abs(rep.global.upper.value - model.product) <= 1e-6 * model.product, `${rep.global.upper.value} vs ${model.product}`);
  assert.equal(rep.global.lower, null);
  assert.ok(rep.warnings.some((w: string) => /output 'y'/.test(w) && /not finite/.test(w) && /No lower bound/.test(w)), rep.warnings.join('\n'));
});
