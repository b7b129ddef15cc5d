/**
 * The defined outcome of every model lipcheck is tested on: fixtures/ (broken ones included), ../shared/models/ and
 * its light/ ImageNet architectures. `npx tsx scripts/gen-golden.ts` rewrites test/golden/outcomes.json;
 * test/e2e/golden.test.ts recomputes every outcome and compares. Values are not pinned (other tests check them against
 * independent answers); statuses, the nodes behind unbounded/discontinuous, and error codes are.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isLipcheckError } from '../src/errors.js';
import { analyze } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = `${root}../shared/models/`;

/** Fast settings: AutoLip, a few Lanczos steps, Schur certificates, no lower bound (outcomes, not values). */
const FAST = { device: 'cpu' as const, method: 'autolip' as const, iterations: 3, certifyBudgetMs: 0, lowerPairs: 0 };

/** Every model file with the key it has in the golden file. */
export function goldenModels(): { key: string; path: string }[] {
  const list = (dir: string, prefix: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort().map((f) => ({ key: prefix + f, path: dir + f })) : []);
  return [...list(`${root}fixtures/`, 'fixtures/'), ...list(shared, ''), ...list(`${shared}light/`, 'light/')];
}

/** One model's outcome: status and the nodes that make it unbounded/discontinuous, or the error code. */
export async function outcomeOf(path: string): Promise<Record<string, unknown>> {
  try {
    const r = await analyze(path, FAST);
    const o: Record<string, unknown> = { status: r.global.status };
    if (r.global.status !== 'bounded') o.nodes = r.global.reasons.map((x) => `${x.opType} ${x.node}`).sort();
    return o;
  } catch (e) {
    if (!isLipcheckError(e)) throw e;
    return { error: e.code };
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out: Record<string, unknown> = {};
  for (const m of goldenModels()) out[m.key] = await outcomeOf(m.path);
  writeFileSync(`${root}test/golden/outcomes.json`, JSON.stringify(out, null, 1) + '\n');
  console.log(`wrote ${Object.keys(out).length} outcomes`);
}
