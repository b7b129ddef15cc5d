/**
 * npx tsx bench/cp-cost.ts [--method cp|best|autolip] [--certify auto|off|…] [--threads N] [--cp-window W] [--region-workers N|off] [--lower] MODEL...: what Combettes–Pesquet,
 * the residual blocks and the lower bound cost beside the norm phase (issue 15 item 4). Per model one analyze()
 * (--device cpu; --lower-pairs 0 unless --lower, which keeps the default lower bound): seconds of each phase
 * (timestamps of the progress callbacks: the norm phase, the segments' CP and the rest (SeqLip, LipSDP), the residual
 * blocks from the first one's start, the lower bound; timings only, nothing is decided by them), the CPU seconds of
 * the process in each (all threads: steadier than wall time on a shared machine) and the seconds the main thread was busy
 * in each (event-loop utilisation: the floor of that phase on any number of cores), onnxruntime runs with their run and
 * session-creation seconds (norm phase, and everything after it), and the reported bounds. MODEL: a name of bench/gen-models.ts or an .onnx path.
 */
import { analyze, type AnalyzeOptions } from '../src/index.js';
import { resetRuntimeStats, runtimeStats } from '../src/backend/runtime.js';
import { BENCH_MODELS, benchModelPath, type BenchModel } from './gen-models.js';
import { regionWorkerStats, setRegionWorkers } from '../src/workers/region-pool.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const method = flag('--method', 'cp') as AnalyzeOptions['method'];
const threads = args.includes('--threads') ? Number(flag('--threads', '0')) : undefined;
const cpWindow = Number(flag('--cp-window', '0'));
const certify = flag('--certify', 'auto') as AnalyzeOptions['certify'];
const lower = args.includes('--lower');
// --region-workers N: that many region workers (src/workers/region-pool.ts) whatever the core count; 0: the rule; off: none
const regionWorkers = flag('--region-workers', '0');
if (regionWorkers === 'off') setRegionWorkers('off');
else setRegionWorkers('auto', Number(regionWorkers));
/** CPU seconds of this process, all threads (onnxruntime's included): steadier than wall time on a shared machine. */
const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
/**
 * Seconds the main thread was busy (its event loop not waiting: JavaScript, WebAssembly, blocking waits on the kernel
 * thread): no number of cores brings a phase below it, so on a many-core machine it is the phase's floor.
 */
const mainBusySeconds = () => performance.eventLoopUtilization().active / 1000;
const models = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && ['--method', '--threads', '--cp-window', '--certify', '--region-workers'].includes(args[i - 1])));

console.log('| model | method | norms s (CPU s; main-thread busy s) | CP etc. s (CPU; main) | residual s (CPU; main) | lower s (CPU; main) | ORT runs norms, rest | ORT run s norms, rest | sessions s norms, rest | region workers: operators in flight norms, CP, residual | total s (CPU; main) | upper | lower |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const name of models) {
  const path = (BENCH_MODELS as readonly string[]).includes(name) ? benchModelPath(name as BenchModel) : name;
  resetRuntimeStats();
  interface Mark { t: number; runs: number; runMs: number; createMs: number; cpu: number; main: number; flight: number; any: number }
  const marks: Record<string, Mark> = {};
  const now = (): Mark => { const st = runtimeStats(); const rw = regionWorkerStats(); return { t: performance.now(), runs: st.runs, runMs: st.runMs, createMs: st.createMs, cpu: cpuSeconds(), main: mainBusySeconds(), flight: rw.inFlightMs, any: rw.anyInFlightMs }; };
  const mark = (k: string) => { marks[k] ??= now(); };
  const t0 = now();
  const r = await analyze(path, {
    device: 'cpu', method, certify, threads, cpWindow, ...(lower ? {} : { lowerPairs: 0 }),
    onProgress: (done, total, what, phase) => {
      if (phase === 'norms' && done === 0) mark('norms');
      if (phase === 'norms' && what === 'done') mark('segments');
      if (phase === 'segments' && /^res\d/.test(what)) mark('residual');
      if (phase === 'lower') mark('lower');
    },
  });
  const end = now();
  marks.segments ??= end;
  marks.residual ??= marks.lower ?? end;
  marks.lower ??= end;
  const span = (a: Mark, b: Mark) => `${((b.t - a.t) / 1000).toFixed(2)} (${(b.cpu - a.cpu).toFixed(1)}; ${(b.main - a.main).toFixed(1)})`;
  // the mean number of operators on region workers while any was (the parallelism that many cores could use)
  const flight = (a: Mark, b: Mark) => (b.any > a.any ? ((b.flight - a.flight) / (b.any - a.any)).toFixed(1) : '—');
  const upper = r.global.upper ? `${r.global.upper.value.toPrecision(6)} (${r.global.upper.kind})` : r.global.status;
  const short = name.split('/').pop()!.replace(/\.onnx$/, '') + (cpWindow ? ` (window ${cpWindow})` : '');
  console.log(`| ${short} | ${method} | ${span(marks.norms, marks.segments)} | ${span(marks.segments, marks.residual)} | ${span(marks.residual, marks.lower)} | ${span(marks.lower, end)} | ${marks.segments.runs - marks.norms.runs}, ${end.runs - marks.segments.runs} | ${((marks.segments.runMs - marks.norms.runMs) / 1000).toFixed(1)}, ${((end.runMs - marks.segments.runMs) / 1000).toFixed(1)} | ${((marks.segments.createMs - marks.norms.createMs) / 1000).toFixed(1)}, ${((end.createMs - marks.segments.createMs) / 1000).toFixed(1)} | ${flight(marks.norms, marks.segments)}, ${flight(marks.segments, marks.residual)}, ${flight(marks.residual, marks.lower)} | ${span(t0, end)} | ${upper} | ${r.global.lower ? `${r.global.lower.value.toPrecision(4)} (${r.global.lower.method})` : '—'} |`);
}
