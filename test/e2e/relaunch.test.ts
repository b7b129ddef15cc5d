import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MALLOC_TUNABLES, RELAUNCH_MIN_BYTES, wantsRelaunch } from '../../src/cli/relaunch.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { encodeGraph } from '../../src/onnx/writer.js';

const BIN = fileURLToPath(new URL('../../bin/lipcheck.js', import.meta.url));
/** The environment without anything that decides the relaunch. */
const { GLIBC_TUNABLES: _g, LIPCHECK_RELAUNCHED: _m, ...CLEAN } = process.env;

function run(args: readonly string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...env, NO_COLOR: '1' }, timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('wantsRelaunch: Linux, a regular file of at least RELAUNCH_MIN_BYTES, no GLIBC_TUNABLES of the user, not already relaunched', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-relaunch-'));
  try {
    const big = join(dir, 'big.onnx'), small = join(dir, 'small.onnx');
    writeFileSync(big, ''); truncateSync(big, RELAUNCH_MIN_BYTES); // sparse: no 32 MiB written
    writeFileSync(small, ''); truncateSync(small, RELAUNCH_MIN_BYTES - 1);
    assert.equal(wantsRelaunch(big, CLEAN, 'linux'), true);
    assert.equal(wantsRelaunch(small, CLEAN, 'linux'), false);
    assert.equal(wantsRelaunch(big, CLEAN, 'darwin'), false);
    assert.equal(wantsRelaunch(big, { ...CLEAN, GLIBC_TUNABLES: '' }, 'linux'), false, "the user's own GLIBC_TUNABLES wins, even empty");
    assert.equal(wantsRelaunch(big, { ...CLEAN, LIPCHECK_RELAUNCHED: '1' }, 'linux'), false, 'the child never relaunches');
    assert.equal(wantsRelaunch(dir, CLEAN, 'linux'), false, 'a directory');
    assert.equal(wantsRelaunch(join(dir, 'missing.onnx'), CLEAN, 'linux'), false);
    assert.equal(wantsRelaunch('-', CLEAN, 'linux'), false, 'stdin');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a model file of 32 MiB or more is analysed in a child with the malloc tunables: same report, same exit code', { skip: process.platform !== 'linux' ? 'the relaunch is Linux-only' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'lipcheck-relaunch-'));
  try {
    // one 4096 × 2048 float32 MatMul (32 MiB of weights): W = u·vᵀ + small noise, so its norm is known to ~1e-3
    const rows = 4096, cols = 2048;
    const w = new Float32Array(rows * cols);
    let s = 12345;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      s = (s * 1103515245 + 12345) >>> 0;
      w[i * cols + j] = (1 / Math.sqrt(rows * cols)) * 3 + ((s / 2 ** 32) - 0.5) * 1e-6;
    }
    const model = join(dir, 'big.onnx');
    writeFileSync(model, encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1, rows] }], outputs: [{ name: 'y' }], nodes: [{ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'], attrs: {}, name: 'mm' }], initializers: [['w', { dtype: 'float32', dims: [rows, cols], data: w }]] }));
    const args = [model, '--json', '--device', 'cpu', '--method', 'autolip', '--lower-pairs', '0', '--lower-budget', '50', '--verbose'];
    const child = run(args, CLEAN);
    const here = run(args, { ...CLEAN, GLIBC_TUNABLES: '' });
    assert.equal(child.code, EXIT.OK, child.err);
    assert.equal(here.code, EXIT.OK, here.err);
    assert.match(child.err, /analysing it in a child process with glibc's malloc tunables/);
    assert.ok(child.err.includes(MALLOC_TUNABLES));
    assert.doesNotMatch(here.err, /child process/);
    const a = JSON.parse(child.out), b = JSON.parse(here.out);
    // rank one plus noise: σ_max = 3 up to ~1e-3 (the noise's norm is at most ~1e-6·(√4096 + √2048))
    assert.ok(Math.abs(a.global.upper.value - 3) < 1e-2, `upper ${a.global.upper.value}`);
    assert.equal(a.global.upper.value, b.global.upper.value, 'the same numbers in the child and in-process');
    const noMs = (ls: { ms?: number }[]) => ls.map(({ ms: _ms, ...rest }) => rest);
    assert.deepEqual(noMs(a.layers), noMs(b.layers));
    // an exit code other than 0 comes back from the child too: a gate that fails
    const gated = run([...args, '--max', '1'], CLEAN);
    assert.equal(gated.code, EXIT.GATE_FAILED, gated.err);
    assert.match(gated.err, /child process/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
