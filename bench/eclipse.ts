/**
 * ECLipsE bench (issue 12 item 1): on each conv-free sequential segment of the given models (the float64 matrices
 * bench/lipsdp.ts forms and caches), ECLipsE-Fast, ECLipsE with stage SDPs under a work budget, and optionally the full
 * LipSDP-Neuron interior point warm-started from ECLipsE's point; value, stages, work and time. Times are for reading,
 * never a check. Usage: npx tsx bench/eclipse.ts [--work MULTIPLY_ADDS] [--warm MULTIPLY_ADDS] [--trace] FILE…
 */
import { basename } from 'node:path';
import { eclipseBound, eclipseConstruct } from '../src/estimators/eclipse.js';
import { lipSdpBound, solveLipSdp } from '../src/linalg/sdp.js';
import { problemsOf } from './lipsdp.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let work = 4e9, warm = 0, trace = false;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--work') work = Number(args[++i]);
    else if (args[i] === '--warm') warm = Number(args[++i]);
    else if (args[i] === '--trace') trace = true;
    else files.push(args[i]);
  }
  console.log('| model | segment | N (hidden) | variant | certified | construction √ρ | stages sdp/fast | steps | work (Mflop) | s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const f of files) {
    for (const { id, problem } of await problemsOf(f)) {
      const hidden = problem.layers.slice(0, -1).reduce((a, l) => a + l.rows, 0);
      const row = (variant: string, run: () => ReturnType<typeof eclipseBound>) => {
        const t0 = performance.now();
        const b = run();
        const s = (performance.now() - t0) / 1000;
        console.log(`| ${basename(f)} | ${id} | ${problem.layers[0].cols + hidden} (${hidden}) | ${variant} | ${b ? b.value.toPrecision(7) : 'none'} | ${b ? b.estimate.toPrecision(7) : '—'} | ${b ? `${b.sdpStages}/${b.fastStages}` : '—'} | ${b?.newtonSteps ?? '—'} | ${b ? ((2 * b.work) / 1e6).toFixed(0) : '—'} | ${s.toFixed(2)} |`);
      };
      row('eclipse-fast', () => eclipseBound(problem, { stageSdp: false }));
      row(`eclipse (work ${work.toExponential(0)})`, () => eclipseBound(problem, { work }));
      if (warm > 0) {
        // the full LipSDP-Neuron from ECLipsE's point, traced per iteration
        const t0 = performance.now();
        const b = lipSdpBound(problem, {
          variant: 'neuron',
          maxWork: warm,
          solve: (scaled) => {
            const c = eclipseConstruct(scaled, { work });
            if (trace) console.log(`  ${id}: ECLipsE start ρ ${c.rho.toExponential(9)} (scaled), ${((performance.now() - t0) / 1000).toFixed(1)} s`);
            const onIteration = trace ? (it: { steps: number; rho: number; relGap: number; work: number }) => console.log(`  ${id} iteration ${it.steps}: ρ ${it.rho.toExponential(9)}, gap/ρ ${it.relGap.toExponential(2)}, ${((2 * it.work) / 1e6).toFixed(0)} Mflop, ${((performance.now() - t0) / 1000).toFixed(1)} s`) : undefined;
            const sol = solveLipSdp(scaled, { variant: 'neuron', maxWork: warm, start: c.path[c.path.length - 1], onIteration });
            return { ...sol, work: sol.work + c.work };
          },
        });
        const s = (performance.now() - t0) / 1000;
        console.log(`| ${basename(f)} | ${id} | ${problem.layers[0].cols + hidden} (${hidden}) | lipsdp-neuron warm (work ${warm.toExponential(0)}) | ${b ? b.value.toPrecision(7) : 'none'} | ${b ? b.estimate.toPrecision(7) : '—'} | — | ${b?.newtonSteps ?? '—'} | ${b ? ((2 * b.work) / 1e6).toFixed(0) : '—'} | ${s.toFixed(2)} |`);
      }
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
