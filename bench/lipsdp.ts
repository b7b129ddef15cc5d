/**
 * LipSDP solver bench (issue 12 item 1): forms each conv-free sequential segment's LMI problem from a model (the
 * float64 region matrices lipsdp.ts forms; cached under /tmp/lipcheck-lipsdp/), then runs the solver and the
 * certificate (lipSdpBound) on it and prints value, Newton steps, work and time. Times are for reading, never a check.
 * Usage: npx tsx bench/lipsdp.ts [--variant neuron|layer] [--solver dense|structured|eigen] [--work MULTIPLY_ADDS] [--trace] [--fast-start]
 *   [--mu MU0 MU_MIN] [--memory K] [--param log|linear] FILE…
 * `--solver structured`: src/linalg/sdp-structured.ts (Neuron only, α·β = 0 everywhere), warm-started from ECLipsE's point
 * and certified by ECLipsE's reduced certificate. `--solver eigen`: src/linalg/sdp-eigen.ts, the eigenvalue method, started
 * and certified the same way, as lipsdp.ts runs it where the dense solver does not fit (`--mu`, `--memory`, `--param`: its
 * smoothing schedule, L-BFGS memory and variables, for experiments; `--fast-start`: start from ECLipsE-Fast, no stage SDP).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { emitForward } from '../src/backend/emit.js';
import { denseMatrixOf } from '../src/backend/operators.js';
import { findSegments } from '../src/estimators/cp.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { sizeOf } from '../src/ir/tensor.js';
import { certifyLmiReduced, ECLIPSE_DEFAULTS, eclipseConstruct } from '../src/estimators/eclipse.js';
import { lipSdpBound, type LipSdpProblem, type LipSdpVariant } from '../src/linalg/sdp.js';
import { solveLipSdpStructured } from '../src/linalg/sdp-structured.js';
import { solveLipSdpEigen } from '../src/linalg/sdp-eigen.js';
import { readModel } from '../src/onnx/read-model.js';
import { encodeGraph } from '../src/onnx/writer.js';

const CACHE = '/tmp/lipcheck-lipsdp';

/** Writes a problem as a JSON header line followed by the float64 weights. */
function save(path: string, p: LipSdpProblem): void {
  const head = Buffer.from(`${JSON.stringify({ dims: p.layers.map((l) => [l.rows, l.cols]), slopes: p.slopes })}\n`);
  const parts = [head, ...p.layers.map((l) => Buffer.from(l.w.buffer, l.w.byteOffset, l.w.byteLength))];
  writeFileSync(path, Buffer.concat(parts));
}

export function loadProblem(path: string): LipSdpProblem {
  const buf = readFileSync(path);
  const nl = buf.indexOf(10);
  const head = JSON.parse(buf.subarray(0, nl).toString()) as { dims: [number, number][]; slopes: [number, number][] };
  const body = buf.subarray(nl + 1);
  const all = new Float64Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  let off = 0;
  const layers = head.dims.map(([rows, cols]) => { const w = all.slice(off, off + rows * cols); off += rows * cols; return { w, rows, cols }; });
  return { layers, slopes: head.slopes };
}

/** The LipSDP problems of a model's conv-free segments (formed once, then read from the cache). */
export async function problemsOf(file: string): Promise<{ id: string; problem: LipSdpProblem }[]> {
  mkdirSync(CACHE, { recursive: true });
  const index = `${CACHE}/${basename(file)}.json`;
  if (existsSync(index)) return (JSON.parse(readFileSync(index, 'utf8')) as string[]).map((id) => ({ id, problem: loadProblem(`${CACHE}/${basename(file)}.${id}.bin`) }));
  const runtime = { device: 'cpu' as const, threads: 1 };
  const built = await buildIr(readModel(file), { seed: 0, runtime });
  const blocks = mergeLinear(built.ir);
  const out: { id: string; problem: LipSdpProblem }[] = [];
  for (const seg of findSegments(built.ir, blocks)) {
    if (seg.regions.some((r) => r.nodes.some((n) => n.prim.op === 'conv' || n.prim.op === 'convTranspose'))) continue;
    const layers = [];
    for (const r of seg.regions) {
      const w = await denseMatrixOf(encodeGraph(emitForward(r, 'float64')), r.inShape, r.outShape, runtime, r.id);
      layers.push({ w, rows: sizeOf(r.outShape), cols: sizeOf(r.inShape) });
    }
    const problem: LipSdpProblem = { layers, slopes: seg.activations.map((a) => a.slope) };
    const id = seg.id.replace(/[^A-Za-z0-9_-]/g, '_');
    save(`${CACHE}/${basename(file)}.${id}.bin`, problem);
    out.push({ id, problem });
  }
  writeFileSync(index, JSON.stringify(out.map((o) => o.id)));
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let variant: LipSdpVariant = 'neuron';
  let maxWork: number | undefined;
  let trace = false, structured = false, eigen = false, fastStart = false;
  let mu0: number | undefined, muMin: number | undefined, memory: number | undefined, param: 'log' | 'linear' | undefined;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--variant') variant = args[++i] as LipSdpVariant;
    else if (args[i] === '--work') maxWork = Number(args[++i]);
    else if (args[i] === '--trace') trace = true;
    else if (args[i] === '--fast-start') fastStart = true;
    else if (args[i] === '--solver') { const v = args[++i]; structured = v === 'structured'; eigen = v === 'eigen'; }
    else if (args[i] === '--memory') memory = Number(args[++i]);
    else if (args[i] === '--param') param = args[++i] as 'log' | 'linear';
    else if (args[i] === '--mu') { mu0 = Number(args[++i]); muMin = Number(args[++i]); }
    else files.push(args[i]);
  }
  console.log('| model | segment | N (hidden) | variant | certified | solver √ρ | steps | converged | work (Mflop) | s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const f of files) {
    for (const { id, problem } of await problemsOf(f)) {
      const hidden = problem.layers.slice(0, -1).reduce((a, l) => a + l.rows, 0);
      const t0 = performance.now();
      const onIteration = trace ? (it: { steps: number; rho: number; relGap: number; work: number }) => console.log(`  ${id} iteration ${it.steps}: ρ ${it.rho.toExponential(9)}, gap/ρ ${it.relGap.toExponential(2)}, ${((2 * it.work) / 1e6).toFixed(0)} Mflop, ${((performance.now() - t0) / 1000).toFixed(1)} s`) : undefined;
      const b = eigen
        ? lipSdpBound(problem, {
          variant: 'neuron',
          certify: certifyLmiReduced,
          solve: (scaled) => {
            const c = eclipseConstruct(scaled, { work: ECLIPSE_DEFAULTS.bestWork, stageSdp: !fastStart });
            const onEval = trace ? (it: { steps: number; rho: number; evals: number; work: number; mu: number }) => console.log(`  ${id} step ${it.steps}: ρ ${it.rho.toExponential(9)}, μ/ρ ${it.mu.toExponential(1)}, ${it.evals} evaluations, ${((2 * it.work) / 1e6).toFixed(0)} Mflop, ${((performance.now() - t0) / 1000).toFixed(1)} s`) : undefined;
            const sol = solveLipSdpEigen(scaled, { start: c.path[0], maxWork: maxWork === undefined ? undefined : maxWork - c.work, onIteration: onEval, mu0, muMin, memory, param });
            if (trace) console.log(`  ${id}: ECLipsE start ρ ${c.rho.toExponential(6)} (${(c.work / 1e9).toFixed(2)}e9), √ρ-ratio ${Math.sqrt(c.rho / sol.point.rho).toFixed(4)}, ${sol.newtonSteps} steps, ${sol.evaluations} evaluations`);
            return { ...sol, work: sol.work + c.work };
          },
        })
        : structured
        ? lipSdpBound(problem, {
          variant: 'neuron',
          certify: certifyLmiReduced,
          solve: (scaled) => {
            const c = eclipseConstruct(scaled, { work: ECLIPSE_DEFAULTS.bestWork });
            const sol = solveLipSdpStructured(scaled, { start: c.path[c.path.length - 1], maxWork: maxWork === undefined ? undefined : maxWork - c.work, onIteration });
            if (trace) console.log(`  ${id}: ECLipsE start √ρ-ratio ${Math.sqrt(c.rho / sol.point.rho).toFixed(4)}, ${sol.newtonSteps} Newton steps, gap bound ρ_lb/ρ ${(sol.lowerRho / sol.point.rho).toFixed(4)}`);
            return { ...sol, work: sol.work + c.work };
          },
        })
        : lipSdpBound(problem, { variant, maxWork, onIteration });
      const s = (performance.now() - t0) / 1000;
      console.log(`| ${basename(f)} | ${id} | ${problem.layers[0].cols + hidden} (${hidden}) | ${variant} | ${b ? b.value.toPrecision(7) : 'none'} | ${b ? b.estimate.toPrecision(7) : '—'} | ${b?.newtonSteps ?? '—'} | ${b?.converged ?? '—'} | ${b ? ((2 * b.work) / 1e6).toFixed(0) : '—'} | ${s.toFixed(2)} |`);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
