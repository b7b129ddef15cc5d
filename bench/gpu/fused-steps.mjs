// Times the models of fused-graphs.py in onnxruntime-node: ms per power step when one `run` does k steps, on the CPU
// and on WebGPU (outputs left in CPU memory, or the v output kept on the GPU and fed back as the next run's input).
// Usage: node fused-steps.mjs INDEX.json [runs] [modes, default cpu,webgpu,webgpu-keep]   (run from a folder where `onnxruntime-node` resolves)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(`${process.cwd()}/`);
const ort = require('onnxruntime-node');

const index = JSON.parse(readFileSync(process.argv[2], 'utf8')).filter((e) => e.path);
const runs = Number(process.argv[3] ?? 20);
const modes = (process.argv[4] ?? 'cpu,webgpu,webgpu-keep').split(',');

async function time(path, mode) {
  const opts = mode === 'cpu' ? { executionProviders: ['cpu'], graphOptimizationLevel: 'all' } : { executionProviders: ['webgpu'], ...(mode === 'webgpu-keep' ? { preferredOutputLocation: { v_out: 'gpu-buffer', norms: 'cpu' } } : {}) };
  const session = await ort.InferenceSession.create(path, opts);
  const dims = session.inputMetadata?.[0]?.shape ?? null;
  const m = /c(\d+)_hw(\d+)_k(\d+)/.exec(path);
  const [c, hw, k] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const data = new Float32Array(c * hw * hw).map((_, i) => Math.sin(i));
  let v = new ort.Tensor('float32', data, [1, c, hw, hw]);
  let fedBack = true;
  const one = async () => {
    const out = await session.run({ v0: v });
    await out.norms.getData();
    try {
      v = out.v_out;
      if (out.v_out.location !== 'cpu' && !fedBack) v = new ort.Tensor('float32', await out.v_out.getData(), [1, c, hw, hw]);
    } catch { fedBack = false; }
  };
  for (let i = 0; i < 3; i++) {
    try { await one(); } catch (e) { if (fedBack) { fedBack = false; v = new ort.Tensor('float32', data, [1, c, hw, hw]); i--; } else throw e; }
  }
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await one();
  const ms = (performance.now() - t0) / runs;
  await session.release?.();
  return { c, hw, k, mode, msPerRun: ms, msPerStep: ms / k, fedBack, dims };
}

for (const e of index) {
  for (const mode of modes) {
    try {
      console.log(JSON.stringify(await time(e.path, mode)));
    } catch (err) {
      console.log(JSON.stringify({ path: e.path, mode, error: String(err?.message ?? err).slice(0, 300) }));
    }
  }
}
