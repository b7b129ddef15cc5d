// The float32 fused Lanczos margin's size (docs/algorithms-fused-lanczos.md §7, "Size"): θ'/θ − 1 for one run of K = 34
// steps on random 3×3 convolutions C → C on H×H, n = C·H² = 2 048, 25 088, 200 704.
// Usage: npx tsx bench/fused32-margin.ts; on WebGPU: DEV=webgpu with the environment of scripts/swiftshader.sh (the
// n = 200 704 case is left out there: slow on SwiftShader).
import { float32Trace, runFused32 } from '../src/backend/fused-lanczos32.js';
import { tridiagonalLargestEigenvalue } from '../src/linalg/dense.js';
import { float32LanczosMargin } from '../src/linalg/lanczos-margin.js';
import { Random } from '../src/linalg/random.js';
import { convGramParts } from '../test/helpers/gram-parts.js';
const device = (process.env.DEV ?? 'cpu') as 'cpu' | 'webgpu';
for (const [c, h] of [[8, 16], [32, 28], [64, 56]]) {
  if (device === 'webgpu' && c === 64) continue;
  const r0 = new Random(9);
  const w = Float32Array.from({ length: c * c * 9 }, () => r0.normal());
  const parts = convGramParts(w, c, c, h);
  const n = c * h * h, K = 34;
  const r = await runFused32(parts, K, new Random(21).unitVector(n), { device, threads: 1 });
  const th = tridiagonalLargestEigenvalue(r.alpha, r.beta, K);
  const m = float32LanczosMargin(float32Trace(r, n, K, K + 1), th)!;
  console.log(`${device} n=${n}: θ'/θ−1 = ${((m.thetaBound / th - 1) * 100).toFixed(3)} %  ω ${m.omega.toExponential(2)} φ/θ ${(m.phi / th).toExponential(2)}`);
}
