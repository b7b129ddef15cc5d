/**
 * The ReLU branch and bound alone on one model (docs/algorithms-bab.md): status, certified upper, witnessed lower,
 * leaves, LPs, cells and wall time. Usage: npx tsx scripts/bab-probe.ts MODEL.onnx [CELLS=40000] [2|inf]
 */
import { createOrtBackend } from '../src/backend/index.js';
import { reluBranchAndBound } from '../src/estimators/relu-bab.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { decodeModel, readModelBytes } from '../src/onnx/read-model.js';
const [f, budget, norm] = [process.argv[2], Number(process.argv[3] ?? 40000), (process.argv[4] ?? '2') as '2' | 'inf'];
const onnx = decodeModel(readModelBytes(f), f);
const built = await buildIr(onnx, { seed: 0, runtime: { device: 'cpu' } });
const io = { inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape };
const backend = createOrtBackend({ model: onnx, runtime: { device: 'cpu' }, io });
const t0 = performance.now();
const r = await reluBranchAndBound({ ir: built.ir, blocks: mergeLinear(built.ir), ...io, backend, norm, budget });
const s = r.search;
console.log(f, r.status, r.reason ?? '', 'upper', r.upper?.value, r.upper?.method, 'lower', r.lower, 'lower32', r.lower32?.value, s && { leaves: s.leaves, nodes: s.nodes, lps: s.lps, proved: s.provedEmpty, unproved: s.unprovedEmpty, work: s.work }, ((performance.now() - t0) / 1000).toFixed(1), 's');
