/**
 * npm run bench: analyses every fixture and every model of ../shared/models (light/ included, for speed) and prints
 * Markdown tables to stdout.
 *  1. default settings: outcome, bounds, wall time, time inside onnxruntime (session.run + creation) vs the rest;
 *  2. per model, the operator-norm phase under --certify off (Lanczos + KW only), auto and strict, and the
 *     upper/lower ratio reached (not for light/, whose weights are constants).
 * Usage: npm run bench [-- --only SUBSTRING] [--skip-light] [--skip-modes]
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze, type LipschitzReport } from '../src/index.js';
import { resetRuntimeStats, runtimeStats } from '../src/linalg/runtime.js';

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
