/**
 * Which segments of each model LipSDP runs under `--method best` / `--method sdp` (the work gate of lipsdpSegmentBound,
 * dimensions only: nothing is solved), with the work one iteration and the gate's minimum need.
 * Usage: npx tsx bench/lipsdp-gate.ts FILE…
 */
import { basename } from 'node:path';
import { findSegments } from '../src/estimators/cp.js';
import { LIPSDP_DEFAULTS, lipsdpObstacle } from '../src/estimators/lipsdp.js';
import { buildIr } from '../src/frontend/build.js';
import { mergeLinear } from '../src/ir/merge.js';
import { sizeOf } from '../src/ir/tensor.js';
import { eclipseCertifyWork } from '../src/estimators/eclipse.js';
import { lipSdpCertifyWork, lipSdpStepWork, type LipSdpProblem } from '../src/linalg/sdp.js';
import { eigenEvalWork } from '../src/linalg/sdp-eigen.js';
import { structuredObstacle } from '../src/linalg/sdp-structured.js';
import { readModel } from '../src/onnx/read-model.js';

async function main(): Promise<void> {
  console.log('| model | segment | N | Mflop / iteration | runs under best | runs under sdp | eigenvalue method: Mflop / evaluation | eigenvalue method under best (≥ 3 inputs) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const file of process.argv.slice(2)) {
    const runtime = { device: 'cpu' as const };
    let built;
    try { built = await buildIr(readModel(file), { seed: 0, runtime }); } catch { continue; }
    const blocks = mergeLinear(built.ir);
    const segments = findSegments(built.ir, blocks);
    for (const seg of segments) {
      const obstacle = lipsdpObstacle(seg, { norm: '2', certify: 'auto' });
      const dims = seg.regions.map((r) => ({ rows: sizeOf(r.outShape), cols: sizeOf(r.inShape) }));
      const n = dims[0].cols + dims.slice(0, -1).reduce((a, d) => a + d.rows, 0);
      if (obstacle) { console.log(`| ${basename(file)} | ${seg.id} | ${n} | — | no: ${obstacle} | no | — | — |`); continue; }
      const shape: LipSdpProblem = { layers: dims.map((d, k) => ({ w: new Float64Array(0), rows: d.rows, cols: k === 0 ? Math.min(d.cols, d.rows) : d.cols })), slopes: seg.activations.map((a) => a.slope) };
      const full: LipSdpProblem = { layers: dims.map((d) => ({ w: new Float64Array(0), rows: d.rows, cols: d.cols })), slopes: shape.slopes };
      const step = lipSdpStepWork(shape), cert = 12 * lipSdpCertifyWork(full);
      const best = LIPSDP_DEFAULTS.bestMinSteps * step + cert <= LIPSDP_DEFAULTS.bestWork / segments.length;
      const sdp = LIPSDP_DEFAULTS.minSteps * step + cert <= LIPSDP_DEFAULTS.sdpWork / segments.length;
      const sObstacle = structuredObstacle(full);
      const sStep = sObstacle ? 0 : eigenEvalWork(full);
      const sBest = !best && !sObstacle && LIPSDP_DEFAULTS.structuredMinEvaluations * sStep + 12 * eclipseCertifyWork(full) <= LIPSDP_DEFAULTS.bestStructuredWork / segments.length;
      console.log(`| ${basename(file)} | ${seg.id} | ${n} | ${((2 * step) / 1e6).toFixed(0)} | ${best ? 'yes' : 'no'} | ${sdp ? 'yes' : 'no'} | ${sObstacle ? `— (${sObstacle})` : ((2 * sStep) / 1e6).toFixed(0)} | ${sBest ? 'yes' : 'no'} |`);
    }
  }
}

void main();
