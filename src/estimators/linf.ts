import type { Block } from '../ir/merge.js';
import { sizeOf } from '../ir/tensor.js';
import type { IrGraph } from '../ir/types.js';
import { roundUp, sqrtUp } from '../linalg/dense.js';
import { regionFlop } from '../linalg/work.js';
import { composeAutoLip } from './autolip.js';
import type { Bound, NormKind } from './kinds.js';
import { measureRegion, type NormSettings, type OperatorNorm } from './operator-norm.js';

/** A bound in one norm carried over from the other by the norm equivalences (docs/algorithms-exact.md §4). */
export interface CrossNormBound {
  /** √n_in·(ℓ2 bound) for ℓ∞, √n_out·(ℓ∞ bound) for ℓ2: certified or probabilistic as the bound it comes from. */
  readonly upper: Bound;
  /** Its line in the report's global.methods: the upper bound's method without the inner method in brackets. */
  readonly line: string;
  /** The other norm's bound it was scaled from (AutoLip's; under --norm inf and best, the ℓ2 analysis's own bound). */
  readonly from: Bound;
  /** The factor √n applied. */
  readonly factor: number;
  /** Operators measured in the other norm (their KW bounds count in the failure probability when probabilistic). */
  readonly probabilistic: number;
  readonly ms: number;
}

/** The cost model's flop of measuring every operator in ℓ2 (an apply and an adjoint per Lanczos step, at most `maxIterations` steps). */
export function l2NormsWork(blocks: readonly Block[], maxIterations: number): number {
  return blocks.reduce((a, b) => a + (b.kind === 'operator' ? 2 * regionFlop(b.region) * maxIterations : 0), 0);
}

/**
 * The norm equivalences as bounds: for every x, ‖x‖∞ ≤ ‖x‖₂ ≤ √n·‖x‖∞, hence L∞(f) ≤ √n_in·L₂(f) and
 * L₂(f) ≤ √n_out·L∞(f). Measures every merged operator in the other norm (ℓ2: the same Lanczos/certificates AutoLip
 * uses; ℓ∞: exact row sums), composes AutoLip there, and scales by √n rounded upward. Null when the graph has no
 * global constant. `norm` is the norm of the report; the other one is measured. For ℓ2 (Lanczos on every operator)
 * only when `work` flop of the cost model (linalg/work.ts: an apply and an adjoint per Lanczos step, at most
 * settings.maxIterations steps) covers it; otherwise null.
 */
export async function crossNormBound(ir: IrGraph, blocks: readonly Block[], settings: NormSettings, norm: NormKind, work = Infinity): Promise<CrossNormBound | null> {
  const t0 = performance.now();
  const other: NormKind = norm === 'inf' ? '2' : 'inf';
  if (other === '2') {
    if (l2NormsWork(blocks, settings.maxIterations) > work) return null;
  }
  const s = { ...settings, norm: other };
  const norms = new Map<string, OperatorNorm>();
  let i = 0;
  try {
    for (const b of blocks) if (b.kind === 'operator') norms.set(b.region.id, await measureRegion(b.region, s, 900_000 + i++));
  } catch {
    // an extra bound only: an operator the other norm cannot measure under these settings (--certify strict) leaves the report as it was
    return null;
  }
  const al = composeAutoLip(ir, blocks, norms, other);
  if (al.status !== 'bounded' || !al.upper) return null;
  const n = norm === 'inf' ? sizeOf(ir.inputShape) : sizeOf(ir.outputShape);
  const factor = sqrtUp(n);
  const probabilistic = [...norms.values()].filter((m) => m.upper.kind === 'probabilistic').length;
  const method = `${norm === 'inf' ? 'sqrt(n_in)' : 'sqrt(n_out)'}·autolip-l${other === '2' ? '2' : 'inf'}`;
  return { upper: { value: roundUp(factor * al.upper.value, 2), kind: al.upper.kind, method }, line: method, from: al.upper, factor, probabilistic, ms: performance.now() - t0 };
}
