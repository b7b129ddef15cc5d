/**
 * Issue 12 items 3-5 per model: the bracket before (the composition of AutoLip/CP/SeqLip/LipSDP and today's Jacobian
 * ascent alone) and after (exact region enumeration, norm equivalences, the pattern search and the exact witness), with
 * the kind and method of each end. Prints a Markdown table.
 * Usage: npx tsx bench/exact.ts [--norm inf] [FILE…]   (default: the top-level ../shared/models)
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze, DEFAULTS } from '../src/index.js';
import { createOrtBackend } from '../src/backend/index.js';
import { jacobianLowerBound } from '../src/estimators/lower-bound.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { MFLOP } from '../src/linalg/work.js';
import { decodeModel, readModelBytes } from '../src/onnx/read-model.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = `${root}../shared/models/`;
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '—' : Math.abs(x) >= 1e5 ? x.toExponential(3) : x.toPrecision(6));
const args = process.argv.slice(2);
const norm = args.includes('--norm') ? (args[args.indexOf('--norm') + 1] as '2' | 'inf') : '2';
const files = args.filter((a, i) => a !== '--norm' && args[i - 1] !== '--norm');
const models = files.length ? files : existsSync(shared) ? readdirSync(shared).filter((f) => f.endsWith('.onnx')).map((f) => shared + f) : [];
const MINE = /^(exact|relu-bab|sqrt\()/;

console.log(`\n| model (ℓ${norm === '2' ? '2' : '∞'}) | upper before (method) | upper after (kind, method) | lower before (ascent) | lower after (method) | bracket before | bracket after | s after |`);
console.log('|---|---|---|---|---|---|---|---|');
for (const f of models) {
  const r = await analyze(f, { device: 'cpu', norm }).catch(() => null);
  if (!r || r.global.status !== 'bounded' || !r.global.upper) continue;
  const before = r.global.methods.filter((m) => m.upper && !MINE.test(m.method)).reduce((a, m) => (m.upper!.value < a.upper!.value ? m : a));
  const onnx = decodeModel(readModelBytes(f), f);
  const built = await buildIr(onnx, { seed: 0, runtime: { device: 'cpu' } });
  const io = { inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape };
  const backend = createOrtBackend({ model: onnx, runtime: { device: 'cpu' }, io });
  const lb = await jacobianLowerBound({ ir: built.ir, blocks: mergeLinear(built.ir), ...io, backend, seed: 0, norm, budget: DEFAULTS.lowerBudget * MFLOP, pairs: DEFAULTS.lowerPairs });
  const lower = r.global.lower?.value ?? 0;
  const name = f.startsWith(shared) ? f.slice(shared.length) : f;
  console.log(`| ${name} | ${fmt(before.upper!.value)} (${before.method}) | ${fmt(r.global.upper.value)} (${r.global.upper.kind}, ${r.global.upper.method}) | ${fmt(lb.value)} | ${fmt(lower)} (${r.global.lower?.method}) | ${fmt(before.upper!.value / lb.value)} | ${fmt(r.global.upper.value / lower)} | ${(r.timings.totalMs / 1000).toFixed(1)} |`);
}
