/**
 * Runs seeded mutations of fixture files through analyze() and prints one JSON line per mutation:
 * { i, file, mutation, outcome: 'bounded'|'unbounded'|'discontinuous'|'error', code?, ms }. An exception that is not a
 * LipcheckError prints outcome 'crash'. Usage: tsx test/helpers/fuzz-worker.ts FIRST COUNT
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { analyze } from '../../src/index.js';
import { isLipcheckError } from '../../src/errors.js';
import { FIXTURES } from './dense.js';
import { mulberry32 } from './random.js';

const SOURCES = ['demo.onnx', 'conv_bn.onnx', 'mlp_relu.onnx', 'mlp_sigmoid.onnx', 'gemm_sv.onnx', 'residual.onnx', 'tiny_relu.onnx', 'product.onnx', 'argmax.onnx'];
const originals = SOURCES.map((f) => new Uint8Array(readFileSync(FIXTURES + f)));

/** One seeded mutation: truncation, byte flips, insertion, deletion, or a run of 0xff (NaN-looking floats). */
export function mutate(i: number): { file: string; mutation: string; bytes: Uint8Array } {
  const rnd = mulberry32(0x5eed + i * 7919);
  const k = Math.floor(rnd() * SOURCES.length);
  const src = originals[k];
  const pos = () => Math.floor(rnd() * src.length);
  const kind = Math.floor(rnd() * 5);
  let bytes: Uint8Array;
  let mutation: string;
  if (kind === 0) { const n = pos(); bytes = src.slice(0, n); mutation = `truncate@${n}`; }
  else if (kind === 1) { bytes = src.slice(); const n = 1 + Math.floor(rnd() * 8); for (let j = 0; j < n; j++) bytes[pos()] = Math.floor(rnd() * 256); mutation = `flip×${n}`; }
  else if (kind === 2) { const p = pos(); bytes = new Uint8Array([...src.slice(0, p), Math.floor(rnd() * 256), ...src.slice(p)]); mutation = `insert@${p}`; }
  else if (kind === 3) { const p = pos(); bytes = new Uint8Array([...src.slice(0, p), ...src.slice(p + 1)]); mutation = `delete@${p}`; }
  else { bytes = src.slice(); const p = pos(); for (let j = p; j < Math.min(src.length, p + 4); j++) bytes[j] = 0xff; mutation = `ff@${p}`; }
  return { file: SOURCES[k], mutation, bytes };
}

const main = process.argv[1] === fileURLToPath(import.meta.url);
const [first, count] = main ? process.argv.slice(2).map(Number) : [0, 0];
for (let i = first; i < first + count; i++) {
  const m = mutate(i);
  const t0 = performance.now();
  let line: Record<string, unknown>;
  try {
    const r = await analyze({ bytes: m.bytes, name: `${m.file}~${m.mutation}` }, { device: 'cpu', lowerBudgetMs: 50, iterations: 30, certifyBudgetMs: 200 });
    line = { outcome: r.global.status, upper: r.global.upper?.value ?? null };
  } catch (e) {
    line = isLipcheckError(e) ? { outcome: 'error', code: e.code, message: e.message.split('\n')[0].slice(0, 160) } : { outcome: 'crash', message: String((e as Error)?.stack ?? e).slice(0, 400) };
  }
  process.stdout.write(JSON.stringify({ i, file: m.file, mutation: m.mutation, ...line, ms: Math.round(performance.now() - t0) }) + '\n');
}
