/**
 * npx tsx bench/relaxation-floor.ts [--rounds R] MODEL.onnx...: where a model's bracket (upper / witnessed lower) comes
 * from. F (test/helpers/slope-floor.ts) is the largest ‖J_s‖ found over slope patterns s free of any input: every
 * bound lipcheck computes from slope ranges alone is at least F, and only which patterns inputs realise lies between F
 * and the true constant. So upper / F is what a tighter relaxation could still gain at most (if F is the sup; F is
 * found from below, so at least that much is relaxation), and F / lower is what realisability (exact methods, a
 * better witness) must close. Prints one Markdown row per model with the default analysis beside it.
 */
import { analyze } from '../src/index.js';
import { readModel } from '../src/onnx/read-model.js';
import { slopeFloor } from '../test/helpers/slope-floor.js';

const args = process.argv.slice(2);
let rounds = 60;
const i = args.indexOf('--rounds');
if (i >= 0) { rounds = Number(args[i + 1]); args.splice(i, 2); }
console.log('| model | upper (default; method) | F (slopes free) | starts: local ‖J(x)‖ → F | witnessed lower | upper / F | F / lower | s |\n|---|---|---|---|---|---|---|---|');
for (const path of args) {
  const t0 = performance.now();
  const f = await slopeFloor(readModel(path), { rounds });
  const t1 = performance.now();
  const r = await analyze(path, { device: 'cpu' });
  const name = path.split('/').pop()!.replace(/\.onnx$/, '');
  if (typeof f === 'string' || r.global.status !== 'bounded') { console.log(`| ${name} | ${r.global.status} | ${typeof f === 'string' ? f : f.floor} | | | | | |`); continue; }
  const up = r.global.upper!, lo = r.global.lower?.value ?? NaN;
  const starts = f.runs.map((x) => `${x.local.toPrecision(3)} → ${x.floor.toPrecision(4)} (${x.rounds} rounds)`).join('; ');
  console.log(`| ${name} | ${up.value.toPrecision(5)} (${up.kind}; ${up.method}) | ${f.floor.toPrecision(5)} | ${starts} | ${lo.toPrecision(4)} | ${(up.value / f.floor).toFixed(2)} | ${(f.floor / lo).toFixed(2)} | ${((t1 - t0) / 1000).toFixed(1)} |`);
}
