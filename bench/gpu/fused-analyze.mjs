// One probabilistic AutoLip analysis with fused Lanczos runs switched on or off (issue 15 item 2): on --device webgpu the
// fused runs are the float32 unrolled ones (src/backend/fused-lanczos32.ts, docs/algorithms-fused-lanczos.md §7), on the
// CPU the float64 Loop ones unless PRECISION is float32. Prints one JSON line.
// Usage (from the folder of a built lipcheck: dist/ and node_modules/): node fused-analyze.mjs MODEL DEVICE [on|off] [auto|float32]
import { pathToFileURL } from 'node:url';
const app = process.cwd();
const { analyze } = await import(pathToFileURL(`${app}/dist/index.js`).href);
const { setFusedLanczos, setFusedPrecision } = await import(pathToFileURL(`${app}/dist/backend/fused-lanczos.js`).href);
const [model, device, fused = 'on', precision = 'auto'] = process.argv.slice(2);
setFusedLanczos(fused);
setFusedPrecision(precision);
const t0 = performance.now();
const r = await analyze(model, { device, method: 'autolip', certify: 'off', lowerPairs: 0 });
const steps = r.layers.reduce((a, l) => a + (l.iterations || 0), 0);
console.log(JSON.stringify({ model: model.split('/').pop(), device, fused, precision, provider: r.settings.provider, wallS: (performance.now() - t0) / 1000, upper: r.global.upper?.value ?? null, kind: r.global.upper?.kind ?? null, normsMs: r.timings.normsMs, steps, msPerStep: steps ? r.timings.normsMs / steps : null }));
