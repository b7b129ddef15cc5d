/**
 * Per-model comparison of the methods across layers (issue 4): AutoLip, Combettes–Pesquet, certified and greedy
 * SeqLip, LipSDP (`--method sdp`, its work in Mflop), the witnessed lower bound, each bound's ratio to it, and the time each method adds. Prints a Markdown table.
 * Usage: npx tsx bench/methods.ts [FILE…]   (default: fixtures and the top-level ../shared/models)
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze, type LipschitzReport } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = `${root}../shared/models/`;
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '—' : Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toPrecision(4));
const sec = (ms: number) => (ms / 1000).toFixed(2);
const nameOf = (f: string) => (f.startsWith(shared) ? f.slice(shared.length) : `fixtures/${f.split('/').pop()}`);

/** The models compared: the given files, else the bounded fixtures and top-level shared models. */
export function methodModels(args: readonly string[]): string[] {
  if (args.length) return [...args];
  const fixtures = readdirSync(`${root}fixtures`).filter((f) => /^(demo|mlp_|tiny_relu|gate_base|conv|residual)/.test(f) && f.endsWith('.onnx')).map((f) => `${root}fixtures/${f}`);
  return [...fixtures, ...(existsSync(shared) ? readdirSync(shared).filter((f) => f.endsWith('.onnx')).map((f) => shared + f) : [])];
}

/** Runs every method on each model and prints the table (device cpu, default settings otherwise). */
export async function benchMethods(files: readonly string[]): Promise<void> {
  console.log('\n| model | segments | AutoLip | CP | SeqLip certified | SeqLip greedy (estimate) | LipSDP | best (method) | lower | AutoLip/lower | CP/lower | SeqLip/lower | LipSDP/lower | best/lower | s AutoLip | + s CP | + s SeqLip | + s LipSDP (Mflop) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const f of files) {
    const run = (method: 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'best', lowerPairs = 0) => analyze(f, { device: 'cpu', method, lowerPairs }).catch(() => null);
    const al = await run('autolip');
    if (!al || al.global.status !== 'bounded') continue;
    const [cp, sq, sdp, best] = [await run('cp'), await run('seqlip'), await run('sdp'), await run('best', 64)] as (LipschitzReport | null)[];
    if (!cp || !sq || !sdp || !best) continue;
    const sdpMethod = sdp.global.methods.find((x) => x.method === 'autolip+sdp');
    const m = (r: LipschitzReport, name: string) => r.global.methods.find((x) => x.method === name);
    const segs = best.layers.filter((l) => l.kind === 'segment').length;
    const lower = best.global.lower?.value ?? null;
    const ratio = (x: number | null | undefined) => (x && lower ? fmt(x / lower) : '—');
    const cpUp = m(cp, 'autolip+cp')?.upper?.value ?? null;
    const sqUp = m(sq, 'autolip+seqlip')?.upper?.value ?? null;
    const greedy = m(sq, 'seqlip-greedy')?.estimate ?? null;
    const alUp = al.global.upper!.value;
    console.log(`| ${nameOf(f)} | ${segs} | ${fmt(alUp)} | ${fmt(cpUp)} | ${fmt(sqUp)} | ${fmt(greedy)} | ${fmt(sdpMethod?.upper?.value)} | ${fmt(best.global.upper?.value)} (${best.global.upper?.method}) | ${fmt(lower)} | ${ratio(alUp)} | ${ratio(cpUp)} | ${ratio(sqUp)} | ${ratio(sdpMethod?.upper?.value)} | ${ratio(best.global.upper?.value)} | ${sec(al.timings.normsMs)} | ${sec(cp.timings.normsMs - al.timings.normsMs)} | ${sec(sq.timings.normsMs - al.timings.normsMs)} | ${sec(sdp.timings.normsMs - al.timings.normsMs)} (${sdpMethod?.work ? ((2 * sdpMethod.work) / 1e6).toFixed(0) : '—'}) |`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await benchMethods(methodModels(process.argv.slice(2)));
