/**
 * Runs seeded mutations of fixture files through analyze() and prints one JSON line per mutation:
 * { i, file, mutation, outcome: 'bounded'|'unbounded'|'discontinuous'|'error', code?, exit, ms }, where `exit` is the
 * exit code the CLI would give (0 for a report, the error code's exit code otherwise). An exception that is not a
 * LipcheckError prints outcome 'crash' (exit 70). Before each mutation it prints { i, start: true }, so a parent that
 * sees no result for too long knows which one hangs. Usage: tsx test/helpers/fuzz-worker.ts FIRST COUNT
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EXIT, EXIT_FOR_ERROR } from '../../src/cli/exit-codes.js';
import { analyze } from '../../src/index.js';
import { isLipcheckError } from '../../src/errors.js';
import { FIXTURES } from './dense.js';
import { mulberry32 } from './random.js';

export const SOURCES = ['demo.onnx', 'conv_bn.onnx', 'mlp_relu.onnx', 'mlp_sigmoid.onnx', 'gemm_sv.onnx', 'residual.onnx', 'tiny_relu.onnx', 'product.onnx', 'argmax.onnx', 'mlp_clip.onnx', 'conv.onnx', 'mlp_leakyrelu.onnx', 'two_outputs.onnx'];
const originals = SOURCES.map((f) => new Uint8Array(readFileSync(FIXTURES + f)));

/** float32 values that stress number handling: NaN, ±Infinity, float32's extremes, a denormal, weights of 1e13–1e15. */
const SPECIAL = [NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e-40, 0, 1e13, -1e15, 65504];

/**
 * One seeded mutation: truncation, byte flips, insertion, deletion, a run of 0xff (NaN-looking floats), or a special
 * float32 written over 4 bytes (mostly landing in weights, which are most of a fixture's bytes).
 */
export function mutate(i: number): { file: string; mutation: string; bytes: Uint8Array } {
  const rnd = mulberry32(0x5eed + i * 7919);
  const k = Math.floor(rnd() * SOURCES.length);
  const src = originals[k];
  const pos = () => Math.floor(rnd() * src.length);
  const kind = Math.floor(rnd() * 6);
  let bytes: Uint8Array;
  let mutation: string;
  if (kind === 0) { const n = pos(); bytes = src.slice(0, n); mutation = `truncate@${n}`; }
  else if (kind === 1) { bytes = src.slice(); const n = 1 + Math.floor(rnd() * 8); for (let j = 0; j < n; j++) bytes[pos()] = Math.floor(rnd() * 256); mutation = `flip×${n}`; }
  else if (kind === 2) { const p = pos(); bytes = new Uint8Array([...src.slice(0, p), Math.floor(rnd() * 256), ...src.slice(p)]); mutation = `insert@${p}`; }
  else if (kind === 3) { const p = pos(); bytes = new Uint8Array([...src.slice(0, p), ...src.slice(p + 1)]); mutation = `delete@${p}`; }
  else if (kind === 4) { bytes = src.slice(); const p = pos(); for (let j = p; j < Math.min(src.length, p + 4); j++) bytes[j] = 0xff; mutation = `ff@${p}`; }
  else {
    bytes = src.slice();
    const p = Math.min(pos(), Math.max(0, src.length - 4));
    const v = SPECIAL[Math.floor(rnd() * SPECIAL.length)];
    const f = new Uint8Array(Float32Array.of(v).buffer);
    for (let j = 0; j < 4 && p + j < bytes.length; j++) bytes[p + j] = f[j];
    mutation = `float(${v})@${p}`;
  }
  return { file: SOURCES[k], mutation, bytes };
}

/** Analyses mutation i with small budgets and describes the outcome as the CLI would end. */
export async function runMutation(i: number): Promise<Record<string, unknown>> {
  const m = mutate(i);
  const t0 = performance.now();
  let line: Record<string, unknown>;
  try {
    const r = await analyze({ bytes: m.bytes, name: `${m.file}~${m.mutation}` }, { device: 'cpu', lowerBudget: 200, iterations: 30, certifyBudget: 280 });
    line = { outcome: r.global.status, upper: r.global.upper?.value ?? null, exit: EXIT.OK };
  } catch (e) {
    line = isLipcheckError(e)
      ? { outcome: 'error', code: e.code, exit: EXIT_FOR_ERROR[e.code] ?? EXIT.INTERNAL, message: e.message.split('\n')[0].slice(0, 160) }
      : { outcome: 'crash', exit: EXIT.INTERNAL, message: String((e as Error)?.stack ?? e).slice(0, 400) };
  }
  // wall time is reported for the reader, never used to decide anything
  return { i, file: m.file, mutation: m.mutation, ...line, ms: Math.round(performance.now() - t0) };
}

const main = process.argv[1] === fileURLToPath(import.meta.url);
if (main) {
  const [first, count] = process.argv.slice(2).map(Number);
  for (let i = first; i < first + count; i++) {
    process.stdout.write(JSON.stringify({ i, start: true }) + '\n');
    process.stdout.write(JSON.stringify(await runMutation(i)) + '\n');
  }
}
