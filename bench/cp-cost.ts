/**
 * npx tsx bench/cp-cost.ts [--method cp|best] [--threads N] [--cp-window W] MODEL...: what Combettes–Pesquet costs beside the norm
 * phase (issue 15 item 4). Per model one analyze() (--device cpu, --lower-pairs 0): seconds and onnxruntime runs of
 * the norm phase and of the segment phase after it (timestamps of the progress callbacks; timings only, nothing is
 * decided by them), the CPU seconds of the process in each (all threads: steadier than wall time on a shared machine),
 * and the reported upper bound. MODEL: a name of bench/gen-models.ts or an .onnx path.
 */
import { analyze, type AnalyzeOptions } from '../src/index.js';
import { resetRuntimeStats, runtimeStats } from '../src/backend/runtime.js';
import { BENCH_MODELS, benchModelPath, type BenchModel } from './gen-models.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const method = flag('--method', 'cp') as AnalyzeOptions['method'];
const threads = args.includes('--threads') ? Number(flag('--threads', '0')) : undefined;
const cpWindow = Number(flag('--cp-window', '0'));
/** CPU seconds of this process, all threads (onnxruntime's included): steadier than wall time on a shared machine. */
const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const models = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));

console.log('| model | method | norms s (CPU s) | norms runs | CP s (CPU s) | CP runs | CP/norms (CPU) | ORT run s norms, CP | ORT create s norms, CP | total s | upper |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const name of models) {
  const path = (BENCH_MODELS as readonly string[]).includes(name) ? benchModelPath(name as BenchModel) : name;
  resetRuntimeStats();
  const marks: Record<string, { t: number; runs: number; cpu: number; create: number; run: number }> = {};
  const mark = (k: string) => { marks[k] ??= { t: performance.now(), runs: runtimeStats().runs, cpu: cpuSeconds(), create: runtimeStats().createMs, run: runtimeStats().runMs }; };
  const t0 = performance.now();
  const r = await analyze(path, {
    device: 'cpu', method, lowerPairs: 0, threads, cpWindow,
    onProgress: (done, total, what, phase) => {
      if (phase === 'norms' && done === 0) mark('norms');
      if (phase === 'norms' && what === 'done') mark('normsEnd');
    },
  });
  const end = { t: performance.now(), runs: runtimeStats().runs, cpu: cpuSeconds(), create: runtimeStats().createMs, run: runtimeStats().runMs };
  const n = marks.normsEnd.t - marks.norms.t, c = end.t - marks.normsEnd.t;
  const upper = r.global.upper ? `${r.global.upper.value.toPrecision(6)} (${r.global.upper.kind})` : r.global.status;
  const short = name.split('/').pop()!.replace(/\.onnx$/, '') + (cpWindow ? ` (window ${cpWindow})` : '');
  console.log(`| ${short} | ${method} | ${(n / 1000).toFixed(2)} (${(marks.normsEnd.cpu - marks.norms.cpu).toFixed(1)}) | ${marks.normsEnd.runs - marks.norms.runs} | ${(c / 1000).toFixed(2)} (${(end.cpu - marks.normsEnd.cpu).toFixed(1)}) | ${end.runs - marks.normsEnd.runs} | ${(c / n).toFixed(2)} (${((end.cpu - marks.normsEnd.cpu) / (marks.normsEnd.cpu - marks.norms.cpu)).toFixed(2)}) | ${((marks.normsEnd.run - marks.norms.run) / 1000).toFixed(2)}, ${((end.run - marks.normsEnd.run) / 1000).toFixed(2)} | ${((marks.normsEnd.create - marks.norms.create) / 1000).toFixed(2)}, ${((end.create - marks.normsEnd.create) / 1000).toFixed(2)} | ${((end.t - t0) / 1000).toFixed(2)} | ${upper} |`);
}
