/**
 * npx tsx bench/region-workers.ts [--count N] [--method M] [--certify C] [MODEL...]: whether region workers
 * (src/workers/region-pool.ts) change any report, and what they cost. Per model, one analyze() with region workers
 * off and one with every operator and product on N of them (default 2; --device cpu, seed 0, the CLI's other
 * defaults), the reports compared field by field (timings, memory and per-layer ms aside: they may differ), each
 * run's wall seconds printed (timings only). MODEL: .onnx paths; default ../shared/models/*.onnx and fixtures/*.onnx
 * (the broken fixtures give the same error both ways).
 */
import { existsSync, readdirSync } from 'node:fs';
import { analyze, type AnalyzeOptions } from '../src/index.js';
import { isLipcheckError } from '../src/errors.js';
import { setRegionWorkers, stopRegionWorkers } from '../src/workers/region-pool.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const count = Number(flag('--count', '2'));
const options: AnalyzeOptions = { device: 'cpu', threads: Math.max(2, count) };
if (args.includes('--method')) (options as { method?: string }).method = flag('--method', 'best');
if (args.includes('--certify')) (options as { certify?: string }).certify = flag('--certify', 'auto');
let models = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && ['--count', '--method', '--certify'].includes(args[i - 1])));
if (models.length === 0) {
  const dir = (d: string) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.onnx')).sort().map((f) => `${d}/${f}`) : []);
  models = [...dir('../shared/models'), ...dir('fixtures')];
}

/** The report without what may differ between runs; an error as its code and message. */
async function run(model: string, mode: 'on' | 'off'): Promise<{ report: string; s: number }> {
  setRegionWorkers(mode, mode === 'on' ? count : 0);
  const t0 = performance.now();
  try {
    const r = await analyze(model, options);
    return { report: JSON.stringify(r, (k, v) => (['timings', 'resources', 'ms', 'peakRssMb'].includes(k) ? undefined : v)), s: (performance.now() - t0) / 1000 };
  } catch (e) {
    if (!isLipcheckError(e)) throw e;
    return { report: `${e.code}: ${e.message}`, s: (performance.now() - t0) / 1000 };
  }
}

let differ = 0;
console.log('| model | off s | on s | reports |\n|---|---|---|---|');
for (const m of models) {
  const off = await run(m, 'off');
  const on = await run(m, 'on');
  if (off.report !== on.report) differ++;
  console.log(`| ${m.split('/').pop()} | ${off.s.toFixed(2)} | ${on.s.toFixed(2)} | ${off.report === on.report ? 'same' : 'DIFFERENT'} |`);
}
await stopRegionWorkers();
console.log(`\n${models.length} models, ${differ} with different reports`);
process.exitCode = differ ? 1 : 0;
