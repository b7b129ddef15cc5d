/**
 * npm run bench: analyses every fixture and every model of ../shared/models (light/ included, for speed) and prints a
 * Markdown table: wall time, time inside onnxruntime (session.run + creation) vs everything else, Lanczos steps,
 * and the bounds. Usage: npm run bench [-- --only NAME_SUBSTRING] [--skip-light]
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze } from '../src/index.js';
import { resetRuntimeStats, runtimeStats } from '../src/linalg/runtime.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = `${root}../shared/models/`;
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const files: string[] = [
  ...readdirSync(`${root}fixtures`).filter((f) => f.endsWith('.onnx') && !f.startsWith('broken') && !f.startsWith('symbolic')).map((f) => `${root}fixtures/${f}`),
  ...(existsSync(shared) ? readdirSync(shared).filter((f) => f.endsWith('.onnx')).map((f) => shared + f) : []),
  ...(existsSync(`${shared}light`) && !args.includes('--skip-light') ? readdirSync(`${shared}light`).map((f) => `${shared}light/${f}`) : []),
].filter((f) => !only || f.includes(only));
if (!existsSync(shared)) console.error('../shared/models is absent: benchmarking the fixtures only');

const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '—' : Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toPrecision(4));
const s = (ms: number) => (ms / 1000).toFixed(2);
console.log('| model | outcome | upper (kind) | lower | ops | Lanczos steps | wall s | norms s | onnxruntime s | other s | other % | peak RSS MB |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const f of files) {
  resetRuntimeStats();
  const t0 = performance.now();
  const name = f.startsWith(shared) ? f.slice(shared.length) : `fixtures/${f.split('/').pop()}`;
  try {
    const r = await analyze(f, { device: 'cpu' });
    const wall = performance.now() - t0;
    const st = runtimeStats();
    const ort = st.runMs + st.createMs;
    const ops = r.layers.filter((l) => l.kind === 'operator');
    const steps = ops.reduce((a, l) => a + l.iterations, 0);
    const g = r.global;
    console.log(`| ${name} | ${g.status} | ${g.upper ? `${fmt(g.upper.value)} (${g.upper.kind})` : '—'} | ${fmt(g.lower?.value)} | ${ops.length} | ${steps} | ${s(wall)} | ${s(r.timings.normsMs)} | ${s(ort)} | ${s(wall - ort)} | ${Math.round((100 * (wall - ort)) / wall)} | ${Math.round(process.memoryUsage().rss / 2 ** 20)} |`);
  } catch (e) {
    console.log(`| ${name} | error: ${(e as Error).message.split('\n')[0].slice(0, 80)} | | | | | ${s(performance.now() - t0)} | | | | | |`);
  }
}
