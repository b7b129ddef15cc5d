/** LipSDP problems for the solver tests (sdp-structured, sdp-eigen): random layers, slope ranges, and the shared cases. */
import type { LipSdpProblem } from '../../src/linalg/sdp.js';
import { Random } from '../../src/linalg/random.js';
import type { Dense } from './mlp.js';

/** A random LipSDP problem with the given widths (W_k entries N(0, 1/n_k)) and one slope range per hidden layer. */
export function randomProblem(widths: readonly number[], slopes: readonly (readonly [number, number])[], seed: number): LipSdpProblem {
  const rng = new Random(seed);
  const layers = widths.slice(1).map((rows, k) => ({ w: Float64Array.from({ length: rows * widths[k] }, () => rng.normal() / Math.sqrt(widths[k])), rows, cols: widths[k] }));
  return { layers, slopes };
}

/** The LipSDP problem of dense layers with one slope range for every hidden layer. */
export const problemOf = (layers: readonly Dense[], slope: readonly [number, number]): LipSdpProblem => ({ layers: layers.map((l) => ({ w: l.w, rows: l.rows, cols: l.cols })), slopes: layers.slice(1).map(() => slope) });

/** Slope ranges [0, 1], [0, ¼], [−½, 0] in turn over the hidden layers (α·β = 0 in each). */
export const slopesFor = (widths: readonly number[]) => widths.slice(2).map((_, i) => (i % 3 === 0 ? [0, 1] : i % 3 === 1 ? [0, 0.25] : [-0.5, 0]) as const);

/** Random nets (widths, slope ranges, seed) on which the structured solvers are compared with the dense optimum. */
export const RANDOM_NETS: readonly [number[], (readonly [number, number])[], number][] = [
  [[4, 8, 8, 3], [[0, 1], [0, 1]], 1],
  [[10, 6, 12, 5, 4], [[0, 0.25], [0, 1], [0, 1]], 2],
  [[30, 20, 40, 10, 6], [[0, 1], [-0.5, 0], [0, 1]], 3],
  [[6, 12, 3, 12, 3], [[0, 1], [0, 0.25], [0, 1]], 4],
];
