import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('../helpers/fuzz-worker.ts', import.meta.url));
const TOTAL = 1200, BATCH = 200, PER_RUN_MS = 15_000;

/** Runs one batch in a child process, killed if the whole batch outlives its time limit. */
function batch(first: number, count: number): Promise<{ lines: Record<string, unknown>[]; killed: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, String(first), String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '', killed = false;
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, count * 400 + PER_RUN_MS);
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ lines: out.split('\n').filter(Boolean).map((l) => JSON.parse(l)), killed, stderr: err });
    });
  });
}

test(`fuzz: ${TOTAL} seeded byte-level mutations and truncations of the fixtures never crash, hang or fail internally`, { timeout: 900_000 }, async (t) => {
  const counts: Record<string, number> = {};
  for (let first = 0; first < TOTAL; first += BATCH) {
    const { lines, killed, stderr } = await batch(first, BATCH);
    const last = lines[lines.length - 1];
    assert.ok(!killed, `batch from ${first} hung after mutation ${last ? JSON.stringify(last) : 'none'}: ${stderr.slice(0, 300)}`);
    assert.equal(lines.length, BATCH, `batch from ${first} stopped early: ${stderr.slice(0, 500)}`);
    for (const l of lines) {
      const key = l.outcome === 'error' ? `error:${l.code}` : String(l.outcome);
      counts[key] = (counts[key] ?? 0) + 1;
      assert.notEqual(l.outcome, 'crash', `non-LipcheckError on mutation ${JSON.stringify(l)}`);
      assert.notEqual(l.code, 'INTERNAL', `internal error on mutation ${JSON.stringify(l)}`);
      assert.ok((l.ms as number) < PER_RUN_MS, `mutation took ${l.ms} ms: ${JSON.stringify(l)}`);
      if (l.outcome === 'bounded') assert.ok(typeof l.upper === 'number' && Number.isFinite(l.upper), `bounded without a finite bound: ${JSON.stringify(l)}`);
    }
  }
  t.diagnostic(`outcomes: ${JSON.stringify(counts)}`);
});
