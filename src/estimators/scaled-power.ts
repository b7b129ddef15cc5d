import type { LinearOperator } from '../ir/operator.js';
import { Random } from '../linalg/random.js';
import { channelProducts, expandScale, powerPair, times } from './cp-scaling.js';

/**
 * Power steps on one rescaled map Δ_t⁻¹·M·Δ_s of a scaling descent (graph-cp-scaling.ts), with the gradient of its
 * estimate: one pure function of the operator, the scalings, the warm vector and the seed, run by the main thread or
 * by a region worker (src/workers/region-pool.ts `scaledMaps`) alike, so the descent gives the same numbers wherever
 * its maps run.
 */

/** One side's scaling: δ = exp(±logd) per group of `inner` consecutive elements (per channel of a [1, C, …] value). */
export interface ScaleSide {
  readonly logd: Float64Array;
  readonly inner: number;
}

/** A request: `steps` power steps on Δ_t⁻¹·M·Δ_s (`from` = s, `to` = t; null: that side is not scaled). */
export interface ScaledPowerRequest {
  readonly from: ScaleSide | null;
  readonly to: ScaleSide | null;
  readonly steps: number;
  /** The seed of the random start, used only while the map has no warm vector. */
  readonly seed: number;
}

/** σ, the estimate of ‖Δ_t⁻¹·M·Δ_s‖, and its gradients with respect to log δ_s and log δ_t (per group; null: not scaled, or no estimate). */
export interface ScaledPowerResult {
  readonly sigma: number;
  readonly gFrom: Float64Array | null;
  readonly gTo: Float64Array | null;
}

/** A map's state between requests: the next start (Pᵀu of the last step), null before the first. */
export interface ScaledPowerState {
  warm: Float64Array | null;
}

/** A start vector of n standard normal entries from its own seed. */
function randomStart(n: number, seed: number): Float64Array {
  const rng = new Random(seed);
  return Float64Array.from({ length: n }, () => rng.normal());
}

/**
 * `req.steps` power steps (powerPair) on P = Δ_t⁻¹·M·Δ_s, M = `op`, from the state's warm vector or a random start;
 * the state keeps the next start. ∂σ/∂log δ_{s,i} = (Pᵀu)_i·v_i and ∂σ/∂log δ_{t,i} = −u_i·(Pv)_i, summed per group.
 */
export async function scaledPower(op: LinearOperator, state: ScaledPowerState, req: ScaledPowerRequest): Promise<ScaledPowerResult> {
  const up = req.from && expandScale(req.from.logd, req.from.inner, 1), down = req.to && expandScale(req.to.logd, req.to.inner, -1);
  const fwd = async (x: Float64Array) => { const y = await op.apply(up ? times(x, up) : x); return down ? times(y, down) : y; };
  const bwd = async (y: Float64Array) => { const x = await op.adjoint(down ? times(y, down) : y); return up ? times(x, up) : x; };
  const { sigma, w, vt, pv, u } = await powerPair(fwd, bwd, state.warm ?? randomStart(op.inSize, req.seed), req.steps);
  state.warm = w;
  const ok = u.length > 0 && sigma > 0;
  return {
    sigma,
    gFrom: req.from && ok ? channelProducts(w, vt, req.from.inner, 1) : null,
    gTo: req.to && ok ? channelProducts(u, pv, req.to.inner, -1) : null,
  };
}

/**
 * The maps of one descent on region workers (RegionOffload.scaledMaps): map i's operator is built once on its
 * worker, which keeps its warm vector between requests; `close` releases them.
 */
export interface ScaledMaps {
  step(i: number, req: ScaledPowerRequest): Promise<ScaledPowerResult>;
  close(): Promise<void>;
}
