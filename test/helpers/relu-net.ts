import type { ReluNet } from '../../src/estimators/exact.js';
import type { Dense } from './mlp.js';

/** A ReluNet from the helpers' dense layers (float32 values: exact, no error bounds). */
export function netOf(layers: readonly Dense[], slope: readonly [number, number] = [0, 1]): ReluNet {
  return {
    inputs: layers[0].cols,
    layers: layers.map((l) => ({ rows: l.rows, cols: l.cols, w: l.w, we: new Float64Array(l.w.length), b: l.b, be: new Float64Array(l.b.length) })),
    slopes: layers.slice(1).map(() => slope),
  };
}

/** A dense layer from plain arrays. */
export const dense = (rows: number, cols: number, w: number[], b: number[]): Dense => ({ rows, cols, w: Float64Array.from(w), b: Float64Array.from(b) });
