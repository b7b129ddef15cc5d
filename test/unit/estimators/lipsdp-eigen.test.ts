import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ECLIPSE_DEFAULTS, eclipseSegmentBound } from '../../../src/estimators/eclipse.js';
import { lipsdpSegmentBound } from '../../../src/estimators/lipsdp.js';
import { analyze } from '../../../src/index.js';
import { Random } from '../../../src/linalg/random.js';
import { ACTS, bruteForce, mlpModel, pipeline, randomDense, settings } from '../../helpers/mlp.js';

test('a segment the dense solver cannot take within its budget gets LipSDP-Neuron by the eigenvalue method: certified, ≥ brute force, within 0.5% of the dense optimum', async () => {
  const cases: [number[], keyof typeof ACTS, number][] = [[[6, 5, 5, 2], 'relu', 61], [[5, 4, 6, 3], 'sigmoid', 62]];
  for (const [widths, act, seed] of cases) {
    const layers = randomDense(widths, new Random(seed));
    const { segments } = await pipeline(mlpModel(layers, ACTS[act]));
    const dense = await lipsdpSegmentBound(segments[0], settings, { variants: ['neuron'] });
    // a budget too small for the dense solver's minimum steps, with a separate one for the eigenvalue method
    const eig = await lipsdpSegmentBound(segments[0], settings, { variants: ['neuron'], work: 1e4, structuredWork: 2e8 });
    const tag = `${widths.join('-')} ${act}`;
    assert.ok(dense.neuron && eig.neuron, `${tag}: no bound (${eig.notes.join(' ')})`);
    assert.equal(eig.neuron.kind, 'certified');
    assert.match(eig.notes.join(' '), /eigenvalue method/);
    assert.ok(eig.neuron.value >= bruteForce(layers, ACTS[act].slope, '2'), `${tag}: ${eig.neuron.value} below the brute-force constant`);
    assert.ok(eig.neuron.value <= dense.neuron.value * 1.005, `${tag}: eigenvalue method ${eig.neuron.value} vs dense ${dense.neuron.value}`);
    assert.ok(eig.work > 0 && eig.work <= 2e8, `${tag}: work ${eig.work}`);
  }
});

test('under best, ECLipsE is not built again where the eigenvalue method started from its point: no autolip+eclipse line, and the bound is no looser than ECLipsE\'s own', async () => {
  const layers = randomDense([4, 6, 6, 3], new Random(21));
  const bytes = mlpModel(layers, ACTS.relu);
  const { segments } = await pipeline(bytes);
  const eig = await lipsdpSegmentBound(segments[0], settings, { variants: ['neuron'], work: 1e4, structuredWork: 2e8 });
  assert.ok(eig.neuron, eig.notes.join(' '));
  assert.equal(eig.fromEclipse, true);
  assert.equal(eig.converged, false);
  const ecl = await eclipseSegmentBound(segments[0], settings, { work: ECLIPSE_DEFAULTS.bestWork });
  assert.ok(ecl.upper, ecl.notes.join(' '));
  assert.ok(eig.neuron.value <= ecl.upper.value * (1 + 1e-9), `eigenvalue method ${eig.neuron.value} above ECLipsE ${ecl.upper.value}`);
  // --sdp-work 2 (Mflop): the dense solver's 40 steps do not fit (≈ 7.6 Mflop), the eigenvalue method's 40 evaluations do
  const best = await analyze({ bytes, name: 'eig.onnx' }, { method: 'best', device: 'cpu', lowerPairs: 0, sdpWork: 2 });
  const methods = best.global.methods.map((m) => m.method);
  assert.ok(methods.includes('autolip+sdp') && !methods.includes('autolip+eclipse'), methods.join(', '));
  const sdpLine = best.global.methods.find((m) => m.method === 'autolip+sdp')!;
  // ECLipsE alone (LipSDP given no work) is no tighter than what best kept
  const alone = await analyze({ bytes, name: 'eig.onnx' }, { method: 'best', device: 'cpu', lowerPairs: 0, sdpWork: 0 });
  const eclLine = alone.global.methods.find((m) => m.method === 'autolip+eclipse');
  assert.ok(eclLine?.upper && sdpLine.upper, JSON.stringify(alone.global.methods));
  assert.ok(sdpLine.upper.value <= eclLine.upper.value * (1 + 1e-9), `autolip+sdp ${sdpLine.upper.value} vs autolip+eclipse ${eclLine.upper.value}`);
  assert.ok(sdpLine.upper.value >= bruteForce(layers, ACTS.relu.slope, '2'));
  // --method sdp still takes the smaller of LipSDP and ECLipsE, so it builds ECLipsE
  const sdp = await analyze({ bytes, name: 'eig.onnx' }, { method: 'sdp', device: 'cpu', lowerPairs: 0, sdpWork: 2 });
  assert.ok(sdp.global.methods.some((m) => m.method === 'autolip+eclipse'), sdp.global.methods.map((m) => m.method).join(', '));
});
