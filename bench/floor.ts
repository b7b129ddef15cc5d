/**
 * npm run bench:floor: how close lipcheck's norm phase comes to the hardware's floor on CPU (issue 7).
 *
 * Per model: the floor is Σ over the merged operators that Lanczos measures of (Lanczos steps actually used) × (one
 * forward + one adjoint application through onnxruntime, median of 3 after a warm-up), i.e. the time onnxruntime
 * alone needs for the same matrix–vector products; the fused floor times the one-session AᵀA step lipcheck runs
 * instead (createOrtGram); both measured with onnxruntime's pool threads spinning (its fastest). Beside them, the wall
 * time of analyze() in three modes — estimate (`--certify none --method autolip --lower-pairs 0`: Lanczos until its
 * estimate converges), probabilistic (`--certify off --method autolip --lower-pairs 0`: Lanczos + KW on every
 * operator) and default settings — each in a fresh child process (median of --repeat runs), with that mode's own
 * step counts for the floors, time/floor and peak RSS. Optionally (--torch) the probabilistic run's iterations in PyTorch
 * (bench/torch-power.py: power iteration, and Lanczos with float64 full reorthogonalisation).
 * Usage: npm run bench:floor [-- --models resnet18,resnet50,vgg16,oval21_wide_kw,...] [--repeat 3] [--skip-defaults]
 *        [--per-op] [--torch] [--shared DIR (default ../shared/models)] [--fused auto|on|off|compare]
 * --fused: the fused Lanczos runs (src/backend/fused-lanczos.ts) as lipcheck decides (auto, the default), forced on
 * every Gram map, or off; `compare` runs every mode with off and on alternately (side by side, same load) and prints
 * both rows, with the on/off time ratio. --fused-ops: per operator, one KW-count Lanczos run one product a step
 * (session creation included) against the same steps fused (FusedLanczosSession creation and run), wall and CPU ms,
 * two alternating repetitions each, the faster kept.
 * Models: the names of bench/gen-models.ts (generated on first use into bench/out/) or files of ../shared/models.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { analyze, type AnalyzeOptions } from '../src/index.js';
import { chainGraphs, feedWeights } from '../src/backend/graphs.js';
import { regionBound } from '../src/estimators/region-bounds.js';
import { buildIr } from '../src/frontend/build.js';
import { emitAdjoint, emitForward } from '../src/backend/emit.js';
import { mergeLinear } from '../src/ir/merge.js';
import type { LinearNode } from '../src/ir/types.js';
import { createOrtGram, createOrtOperator } from '../src/backend/operators.js';
import { Random } from '../src/linalg/random.js';
import { resetRuntimeStats, runtimeStats } from '../src/backend/runtime.js';
import { fusedLanczos, setFusedLanczos, type FusedMode } from '../src/backend/fused-lanczos.js';
import { lanczosTop } from '../src/linalg/lanczos.js';
import { kwStepsFor } from '../src/linalg/probabilistic.js';
import { sizeOf } from '../src/ir/tensor.js';
import { decodeModel, readModelBytes } from '../src/onnx/read-model.js';
import { encodeGraph } from '../src/onnx/writer.js';
import { BENCH_MODELS, benchModelPath, type BenchModel } from './gen-models.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const shared = flag('--shared', `${here}../../shared/models/`).replace(/\/?$/, '/');

/** What one child run of analyze() reports back. */
interface RunResult {
  readonly ms: number;
  readonly normsMs: number;
  readonly lowerMs: number;
  readonly ortRunMs: number;
  readonly ortCreateMs: number;
  readonly steps: Record<string, number>;
  readonly opMs: Record<string, number>;
  readonly upper: string;
  readonly peakRssMb: number;
}

/** One forward + adjoint time per Lanczos-measured operator of a model, and their shapes. */
interface FloorOps {
  readonly buildMs: number;
  readonly ops: { id: string; n: number; fwdMs: number; adjMs: number; gramMs: number; inShape: readonly number[]; nodes: Record<string, unknown>[] }[];
}

/** A prim's shapes and attributes without its weights, for bench/torch-power.py. */
function primSpec(n: LinearNode): Record<string, unknown> {
  const p = n.prim;
  const base = { op: p.op, outShape: n.outShape };
  switch (p.op) {
    case 'conv': case 'convTranspose': return { ...base, weight: p.weight.dims, strides: p.strides, pads: p.pads, dilations: p.dilations, group: p.group };
    case 'matmul': return { ...base, weight: p.weight.dims, side: p.side };
    case 'scale': return { ...base, factor: p.factor.dims };
    case 'transpose': return { ...base, perm: p.perm };
    case 'reduce': return { ...base, axes: p.axes, mean: p.mean };
    case 'pad': return { ...base, pads: p.pads };
    default: return base;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The floor is onnxruntime alone at its fastest: pool threads spinning between runs (lipcheck itself lets them sleep). */
const FLOOR_RUNTIME = { device: 'cpu', spin: true } as const;

/** estimate: quick estimates (--certify none); probabilistic: Lanczos + KW on every operator (--certify off). */
const MODES: Record<string, AnalyzeOptions> = {
  estimate: { device: 'cpu', certify: 'none', method: 'autolip', lowerPairs: 0 },
  probabilistic: { device: 'cpu', certify: 'off', method: 'autolip', lowerPairs: 0 },
  defaults: { device: 'cpu' },
};

async function child(path: string, mode: string, fused: FusedMode): Promise<void> {
  setFusedLanczos(fused);
  resetRuntimeStats();
  const t0 = performance.now();
  const r = await analyze(path, MODES[mode]);
  const ms = performance.now() - t0;
  const st = runtimeStats();
  const steps = Object.fromEntries(r.layers.filter((l) => l.kind === 'operator').map((l) => [l.id, l.iterations]));
  const opMs = Object.fromEntries(r.layers.filter((l) => l.kind === 'operator').map((l) => [l.id, l.ms]));
  const upper = r.global.upper ? `${r.global.upper.value.toPrecision(4)} (${r.global.upper.kind})` : r.global.status;
  const out: RunResult = { ms, normsMs: r.timings.normsMs, lowerMs: r.timings.lowerMs, ortRunMs: st.runMs, ortCreateMs: st.createMs, steps, opMs, upper, peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024) };
  process.stdout.write(JSON.stringify(out));
}

async function childFloor(path: string): Promise<void> {
  const t0 = performance.now();
  const built = await buildIr(decodeModel(readModelBytes(path), path), { seed: 0, runtime: { device: 'cpu' } });
  const buildMs = performance.now() - t0;
  const regions = mergeLinear(built.ir).flatMap((b) => (b.kind === 'operator' ? [b.region] : []));
  const ops: FloorOps['ops'] = [];
  for (const region of regions) {
    if (regionBound(region, '2', 0).method === 'exact') continue;
    const op = await createOrtOperator({ forward: encodeGraph(emitForward(region)), adjoint: encodeGraph(emitAdjoint(region)), inDims: region.inShape, outDims: region.outShape, name: region.id }, FLOOR_RUNTIME);
    const x = new Random(1).unitVector(op.inSize);
    const fwd: number[] = [], adj: number[] = [];
    let y = await op.apply(x);
    await op.adjoint(y);
    for (let i = 0; i < 3; i++) {
      let t = performance.now();
      y = await op.apply(x);
      fwd.push(performance.now() - t);
      t = performance.now();
      await op.adjoint(y);
      adj.push(performance.now() - t);
    }
    await op.dispose();
    // the fused step lipcheck runs: one session for AᵀA (or AAᵀ), its output written into a reused buffer
    const wide = op.outSize < op.inSize;
    const [f, a] = [emitForward(region), emitAdjoint(region)];
    const gram = await createOrtGram(encodeGraph(wide ? chainGraphs(a, f) : chainGraphs(f, a)), wide ? region.outShape : region.inShape, FLOOR_RUNTIME, region.id);
    const v = new Random(2).unitVector(gram.n), out = new Float64Array(gram.n);
    const times: number[] = [];
    await gram.applyInto(v, out);
    for (let i = 0; i < 3; i++) { const t = performance.now(); await gram.applyInto(v, out); times.push(performance.now() - t); }
    await gram.dispose();
    ops.push({ id: region.id, n: Math.min(op.inSize, op.outSize), fwdMs: median(fwd), adjMs: median(adj), gramMs: median(times), inShape: region.inShape, nodes: region.nodes.map(primSpec) });
  }
  process.stdout.write(JSON.stringify({ buildMs, ops } satisfies FloorOps));
}

/** --fused-ops: per operator, the KW count of Lanczos steps one product a step vs fused (wall and process CPU ms). */
async function childFusedOps(path: string): Promise<void> {
  const built = await buildIr(decodeModel(readModelBytes(path), path), { seed: 0, runtime: { device: 'cpu' } });
  const regions = mergeLinear(built.ir).flatMap((b) => (b.kind === 'operator' ? [b.region] : [])).filter((r) => regionBound(r, '2', 0).method !== 'exact');
  const runtime = { device: 'cpu', threads: cpus().length } as const;
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
  const rows: string[] = [];
  for (const region of regions) {
    const wide = sizeOf(region.outShape) < sizeOf(region.inShape);
    const [f, a] = [emitForward(region), emitAdjoint(region)];
    const dims = wide ? region.outShape : region.inShape;
    const n = sizeOf(dims);
    const k = Math.max(3, kwStepsFor(n, 1e-6, 1.05));
    const start = new Random(2).unitVector(n);
    const stop = (_t: number, j: number) => j >= k;
    const best: Record<string, [number, number]> = { js: [Infinity, Infinity], fused: [Infinity, Infinity] };
    for (let rep = 0; rep < 2; rep++) {
      for (const mode of ['js', 'fused']) {
        const t = performance.now(), c = cpu();
        if (mode === 'js') {
          // as the backend's Gram map: weights fed as its feedWeights decides
          const chained = feedWeights(wide ? chainGraphs(a, f) : chainGraphs(f, a));
          const gram = await createOrtGram(encodeGraph(chained.spec), dims, runtime, region.id, chained.feeds);
          await lanczosTop({ n, apply: (v) => gram.apply(v), applyInto: (v, o) => gram.applyInto(v, o) }, { start, maxSteps: k, stop });
          await gram.dispose();
        } else {
          await fusedLanczos({ first: wide ? a : f, second: wide ? f : a, dims, name: region.id }, runtime, { start, maxSteps: k, stop, expectedSteps: k });
        }
        best[mode] = [Math.min(best[mode][0], performance.now() - t), Math.min(best[mode][1], cpu() - c)];
      }
    }
    rows.push(`| ${region.id} | ${n} | ${k} | ${best.js[0].toFixed(0)} | ${best.fused[0].toFixed(0)} | ${(best.fused[0] / best.js[0]).toFixed(2)} | ${best.js[1].toFixed(0)} | ${best.fused[1].toFixed(0)} | ${(best.fused[1] / best.js[1]).toFixed(2)} |`);
  }
  process.stdout.write(JSON.stringify(rows));
}

function spawn<T>(what: string[]): T {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', ...what], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`child ${what.join(' ')} failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout) as T;
}

/** The same iterations in PyTorch on the same operators' shapes (bench/torch-power.py), or why it could not run. */
function torchTime(name: string, ops: FloorOps['ops'], steps: Record<string, number>): string {
  const file = `${here}out/torch-${name}.json`;
  mkdirSync(`${here}out`, { recursive: true });
  writeFileSync(file, JSON.stringify({ regions: ops.map((o) => ({ id: o.id, steps: steps[o.id], inShape: o.inShape, nodes: o.nodes })) }));
  const python = process.env.LIPCHECK_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  const r = spawnSync(python, [`${here}torch-power.py`, file, String(cpus().length)], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `PyTorch unavailable (${(r.stderr || String(r.error)).trim().split('\n').pop()})`;
}

if (args[0] === '--child') {
  if (args[1] === 'floor') await childFloor(args[2]);
  else if (args[1] === 'fusedops') await childFusedOps(args[2]);
  else await child(args[2], args[1], (args[3] ?? 'auto') as FusedMode);
} else {
  const names = flag('--models', 'resnet18,resnet50,vgg16,oval21_wide_kw,tiny_yolo,sri_resnet_b').split(',');
  const repeat = Number(flag('--repeat', '1'));
  const sec = (ms: number) => (ms / 1000).toFixed(2);
  console.log(`Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
  console.log('| model | operators | mode | Lanczos steps | floor s | fused floor s | time s | time/floor | time/fused | norms s | onnxruntime run s | session create s | upper | peak RSS MB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const name of names) {
    const path = (BENCH_MODELS as readonly string[]).includes(name) ? benchModelPath(name as BenchModel) : `${shared}${name.endsWith('.onnx') ? name : `${name}.onnx`}`;
    if (!existsSync(path)) { console.log(`| ${name} | absent | | | | | | | | | | | | |`); continue; }
    if (args.includes('--fused-ops')) {
      console.log(`\n${name}: per operator, KW steps one product a step (js) vs fused, ms (best of 2)\n\n| op | n | steps | js wall | fused wall | ratio | js CPU | fused CPU | ratio |\n|---|---|---|---|---|---|---|---|---|`);
      for (const row of spawn<string[]>(['fusedops', path])) console.log(row);
      console.log('');
      continue;
    }
    const fl = spawn<FloorOps>(['floor', path]);
    const fusedFlag = flag('--fused', 'auto');
    // compare: off and on alternately, repeat times each, so both see the same load
    const variants = fusedFlag === 'compare' ? ['off', 'on'] : [fusedFlag];
    const medianRuns = (mode: string) => {
      const runs = new Map<string, RunResult[]>(variants.map((v) => [v, []]));
      for (let i = 0; i < repeat; i++) for (const v of variants) runs.get(v)!.push(spawn<RunResult>([mode, path, v]));
      return new Map([...runs].map(([v, rs]) => [v, rs.sort((a, b) => a.ms - b.ms)[Math.floor(repeat / 2)]]));
    };
    const modes = ['estimate', 'probabilistic', ...(args.includes('--skip-defaults') ? [] : ['defaults'])];
    let e: RunResult | null = null;
    let measured: FloorOps['ops'] = [];
    for (const mode of modes) {
      const results = medianRuns(mode);
      for (const [variant, r] of results) {
        const ops = fl.ops.filter((o) => r.steps[o.id] !== undefined);
        const steps = ops.reduce((a, o) => a + r.steps[o.id], 0);
        const floor = ops.reduce((a, o) => a + r.steps[o.id] * (o.fwdMs + o.adjMs), 0);
        const fused = ops.reduce((a, o) => a + r.steps[o.id] * o.gramMs, 0);
        const label = variants.length > 1 ? `${mode} (fused ${variant})` : mode;
        console.log(`| ${name} | ${ops.length} | ${label} | ${steps} | ${sec(floor)} | ${fused ? sec(fused) : '—'} | ${sec(r.ms)} | ${(r.ms / floor).toFixed(2)} | ${fused ? (r.ms / fused).toFixed(2) : '—'} | ${sec(r.normsMs)} | ${sec(r.ortRunMs)} | ${sec(r.ortCreateMs)} | ${r.upper} | ${r.peakRssMb} |`);
        if (mode === 'probabilistic') { e = r; measured = ops; }
      }
      if (variants.length > 1) {
        const [off, on] = [results.get('off')!, results.get('on')!];
        console.log(`| ${name} | | ${mode}: fused on/off | | | | ${(on.ms / off.ms).toFixed(2)}× | | | ${(on.normsMs / off.normsMs).toFixed(2)}× | | | ${on.upper === off.upper ? 'same upper' : `upper ${off.upper} → ${on.upper}`} | |`);
      }
    }
    if (!e) continue;
    if (args.includes('--per-op')) {
      for (const o of measured) console.error(`${name} ${o.id} n=${o.n} steps=${e.steps[o.id]} fwd=${o.fwdMs.toFixed(1)} adj=${o.adjMs.toFixed(1)} fused=${o.gramMs.toFixed(1)} floor=${(e.steps[o.id] * (o.fwdMs + o.adjMs)).toFixed(0)} measured=${e.opMs[o.id].toFixed(0)} ms`);
    }
    if (args.includes('--torch')) console.log(`\n${name}: ${torchTime(name, measured, e.steps)}\n`);
  }
}
