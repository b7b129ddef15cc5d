/**
 * npm run bench: analyses every fixture and every model of ../shared/models (light/ included, for speed) and prints
 * Markdown tables to stdout.
 *  1. default settings: outcome, bounds, wall time, time inside onnxruntime (session.run + creation) vs the rest;
 *  2. per model, the operator-norm phase under --certify off (Lanczos + KW only), auto and strict, and the
 *     upper/lower ratio reached (not for light/, whose weights are constants).
 *  3. per model, every method across layers (AutoLip, CP, certified and greedy SeqLip) against the lower bound (bench/methods.ts);
 *  4. batch throughput: `lipcheck batch` over the top-level shared models with 1 and 2 jobs (models/min, peak RSS).
 * Usage: npm run bench [-- --only SUBSTRING] [--skip-light] [--skip-modes] [--skip-methods] [--skip-batch]
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze, type LipschitzReport } from '../src/index.js';
import { benchMethods } from './methods.js';
import { resetRuntimeStats, runtimeStats } from '../src/backend/runtime.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = `${root}../shared/models/`;
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const pick = (fs: string[]) => fs.filter((f) => !only || f.includes(only));
const fixtures = pick(readdirSync(`${root}fixtures`).filter((f) => f.endsWith('.onnx') && !f.startsWith('broken') && !f.startsWith('symbolic')).map((f) => `${root}fixtures/${f}`));
const real = pick(existsSync(shared) ? readdirSync(shared).filter((f) => f.endsWith('.onnx')).map((f) => shared + f) : []);
const light = pick(existsSync(`${shared}light`) && !args.includes('--skip-light') ? readdirSync(`${shared}light`).map((f) => `${shared}light/${f}`) : []);
if (!existsSync(shared)) console.error('../shared/models is absent: benchmarking the fixtures only');

const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '—' : Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toPrecision(4));
const sec = (ms: number) => (ms / 1000).toFixed(2);
const nameOf = (f: string) => (f.startsWith(shared) ? f.slice(shared.length) : `fixtures/${f.split('/').pop()}`);

console.log(`Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, device cpu\n`);
console.log('| model | outcome | upper (kind) | lower | ops | Lanczos steps | wall s | norms s | lower s | onnxruntime s | other s | other % | RSS MB |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const f of [...fixtures, ...real, ...light]) {
  resetRuntimeStats();
  const t0 = performance.now();
  try {
    const r = await analyze(f, { device: 'cpu' });
    const wall = performance.now() - t0;
    const st = runtimeStats();
    const ort = st.runMs + st.createMs;
    const ops = r.layers.filter((l) => l.kind === 'operator');
    const g = r.global;
    console.log(`| ${nameOf(f)} | ${g.status} | ${g.upper ? `${fmt(g.upper.value)} (${g.upper.kind})` : '—'} | ${fmt(g.lower?.value)} | ${ops.length} | ${ops.reduce((a, l) => a + l.iterations, 0)} | ${sec(wall)} | ${sec(r.timings.normsMs)} | ${sec(r.timings.lowerMs)} | ${sec(ort)} | ${sec(wall - ort)} | ${Math.round((100 * (wall - ort)) / wall)} | ${Math.round(process.memoryUsage().rss / 2 ** 20)} |`);
  } catch (e) {
    console.log(`| ${nameOf(f)} | error: ${(e as Error).message.split('\n')[0].replace(/^.*?: /, '').slice(0, 70)} | | | | | ${sec(performance.now() - t0)} | | | | | | |`);
  }
}

if (!args.includes('--skip-modes')) {
  console.log('\n| model | norms s, certify off | norms s, auto | auto/off | norms s, strict | upper off (probabilistic) | upper auto (kind) | upper strict | lower | auto upper/lower |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const f of [...fixtures, ...real]) {
    const run = (certify: 'off' | 'auto' | 'strict') => analyze(f, { device: 'cpu', certify, lowerPairs: certify === 'auto' ? 64 : 0 }).catch(() => null);
    const [off, auto, strict] = [await run('off'), await run('auto'), await run('strict')] as (LipschitzReport | null)[];
    if (!off || !auto || !strict || auto.global.status !== 'bounded') continue;
    console.log(`| ${nameOf(f)} | ${sec(off.timings.normsMs)} | ${sec(auto.timings.normsMs)} | ${(auto.timings.normsMs / off.timings.normsMs).toFixed(2)} | ${sec(strict.timings.normsMs)} | ${fmt(off.global.upper?.value)} | ${fmt(auto.global.upper?.value)} (${auto.global.upper?.kind}) | ${fmt(strict.global.upper?.value)} | ${fmt(auto.global.lower?.value)} | ${fmt(auto.global.ratio)} |`);
  }
}

if (!args.includes('--skip-methods')) await benchMethods([...fixtures, ...real]);

if (!args.includes('--skip-batch') && real.length) {
  // batch throughput: the CLI's worker pool over the top-level shared models, default analysis settings
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync } = await import('node:fs');
  const { tmpdir, availableParallelism } = await import('node:os');
  const dir = mkdtempSync(`${tmpdir()}/lipcheck-bench-`);
  console.log(`\n| batch over ${real.length} shared models | jobs | wall s | models/min | peak RSS per worker MB (max, median) | outcomes |`);
  console.log('|---|---|---|---|---|---|');
  for (const jobs of [1, 2].filter((j) => j <= Math.max(2, availableParallelism()))) {
    const out = `${dir}/jobs${jobs}.jsonl`;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [`${root}bin/lipcheck.js`, 'batch', ...real, '--jobs', String(jobs), '--device', 'cpu', '--out', out], { encoding: 'utf8' });
    const wall = performance.now() - t0;
    if (r.status !== 0) { console.log(`| | ${jobs} | failed: ${r.stderr.split('\n')[0]} | | | |`); continue; }
    const recs = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { status: string; peakRssMb: number | null });
    const peaks = recs.map((x) => x.peakRssMb ?? 0).sort((a, b) => a - b);
    const counts = [...new Set(recs.map((x) => x.status))].map((s) => `${s} ${recs.filter((x) => x.status === s).length}`).join(', ');
    console.log(`| | ${jobs} | ${sec(wall)} | ${((60000 * recs.length) / wall).toFixed(1)} | ${peaks[peaks.length - 1]}, ${peaks[Math.floor(peaks.length / 2)]} | ${counts} |`);
  }
}
