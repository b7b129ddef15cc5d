import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { sizeOf } from '../ir/tensor.js';
import type { LinearNode } from '../ir/types.js';

/**
 * Work is counted in flop (a multiply-add counts two) by a fixed cost model of the operations, never read off a
 * clock: a budget in these units makes the same model, settings and seed do the same work, and so give the same
 * numbers, whatever the machine's load, core count or --threads. A routine slower per flop than a dense kernel
 * (an SVD, an onnxruntime call's fixed cost, JavaScript bookkeeping per element) is charged its flop-equivalent:
 * what a dense float64 kernel would do in the same time on the reference machine (2 shared cores, Node 20).
 */

/** The fixed cost of one onnxruntime call (≈ 0.06 ms) as flop at the onnxruntime rate of the reference machine. */
export const CALL_FLOP = 2.4e5;
/** One element handled by JavaScript outside a kernel (slopes, masks, copies), as flop. */
export const JS_ELEMENT_FLOP = 20;

/** Flop of one product with a linear node (its adjoint costs the same); elements touched for the weightless ones. */
export function nodeFlop(n: LinearNode): number {
  const p = n.prim;
  const out = sizeOf(n.outShape);
  switch (p.op) {
    case 'conv': return 2 * out * sizeOf(p.weight.dims.slice(1));
    case 'convTranspose': return 2 * sizeOf(n.inShapes[0]) * sizeOf(p.weight.dims.slice(1));
    case 'matmul': { const d = p.weight.dims; return 2 * out * (d.length === 1 ? d[0] : p.side === 'right' ? d[d.length - 2] : d[d.length - 1]); }
    case 'axisMatrix': return 2 * out * p.cols;
    default: return out;
  }
}

/** Flop of one product with a merged region through onnxruntime (one call); its adjoint costs the same. */
export function regionFlop(region: LinearRegion): number {
  let f = CALL_FLOP;
  for (const n of region.nodes) f += nodeFlop(n);
  return f;
}

/**
 * A budget of work in flop, spent by charging the cost model's price of each step before or as it is taken. It never
 * looks at a clock, so where it stops is the same on every run.
 */
export class WorkBudget {
  private used = 0;
  constructor(readonly limit: number, readonly what = 'the work budget') {
    if (!(limit >= 0)) throw new LipcheckError('INTERNAL', `${what} must be a non-negative number of flop; got ${limit}.`);
  }

  /** Flop charged so far. */
  get spent(): number { return this.used; }

  /** Flop still available (0 once spent). */
  get left(): number { return Math.max(0, this.limit - this.used); }

  /** True once the charges have reached the limit. */
  get exhausted(): boolean { return this.used >= this.limit; }

  /** Whether `flop` more would stay within the limit. */
  fits(flop: number): boolean { return this.used + flop <= this.limit; }

  /** Records `flop` of work done (or about to be). */
  charge(flop: number): void { this.used += flop; }
}

/** Megaflop (the CLI's unit for budgets) to flop. */
export const MFLOP = 1e6;
