import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lipsdpSegmentBound } from '../../../src/estimators/lipsdp.js';
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
