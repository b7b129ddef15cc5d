/**
 * npx tsx bench/device-auto.ts MODEL.onnx...: what `--device auto` would choose for each model on a machine where the
 * CUDA provider is installed and starts (issue 15 item 5; src/backend/runtime.ts autoRule): the model's large products
 * (gpuWork: products of AUTO_GPU_PRODUCT_FLOP or more, Gflop per forward sweep) against AUTO_GPU_MIN_WORK. A count of
 * the cost model, read off the built IR (one CPU run of the model); nothing is timed. Prints a Markdown table.
 * Example (bench/README.md, fifteenth session): npx tsx bench/device-auto.ts ../shared/models/*.onnx ../shared/models/light/*.onnx
 */
import { AUTO_GPU_MIN_WORK, autoRule, gpuWork } from '../src/backend/runtime.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { decodeModel, readModelBytes } from '../src/onnx/read-model.js';

console.log(`| model | large products, Gflop a sweep | auto with CUDA installed (threshold ${AUTO_GPU_MIN_WORK / 1e9} Gflop) |`);
console.log('|---|---|---|');
for (const path of process.argv.slice(2)) {
  try {
    const built = await buildIr(decodeModel(readModelBytes(path), path), { seed: 0, runtime: { device: 'cpu' } });
    const work = gpuWork(mergeLinear(built.ir));
    console.log(`| ${path.replace(/^.*models\//, '')} | ${(work / 1e9).toFixed(2)} | ${autoRule(work, null) === 'try-cuda' ? 'CUDA, if it starts' : 'CPU'} |`);
  } catch (e) {
    console.log(`| ${path} | — | not analysable: ${(e as Error).message.split('\n')[0].slice(0, 120)} |`);
  }
}
process.exit(0);
