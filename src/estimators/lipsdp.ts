import { LipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { DENSE_LIMIT } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import { roundUp, sqrtUp } from '../linalg/dense.js';
import { lipSdpBound, lipSdpCertifyWork, lipSdpStepWork, type LipSdpProblem, type LipSdpVariant } from '../linalg/sdp.js';
import { eigenEvalWork, solveLipSdpEigen } from '../linalg/sdp-eigen.js';
import { structuredObstacle } from '../linalg/sdp-structured.js';
import type { Segment } from './cp.js';
import { certifyLmiReduced, ECLIPSE_DEFAULTS, eclipseCertifyWork, eclipseConstruct } from './eclipse.js';
import type { Bound } from './kinds.js';
import { float32Unit, type NormSettings } from './operator-norm.js';
import { regionBound } from './region-bounds.js';

/** The largest LMI (N = n_0 + Σ hidden) ever factored; regions' matrices obey the backend's one DENSE_LIMIT. */
const LMI_LIMIT = 4096;

/**
 * Work budgets in multiply-adds. The primal–dual solver (sdp.ts) runs its dense kernels at about 1e9 multiply-adds per
 * second on this 2-core machine (Node 20, one thread; 0.4–0.7e9 at load 5–10), so `best` 8e9 (16 000 Mflop) is about
 * 8–20 s at most and `sdp` 1e11 (200 000 Mflop) 2–4 minutes. A segment runs when the budget covers minSteps iterations
 * and its certificate (8 under sdp, where a stopped solve still certifies its last iterate; 40 under best, where LipSDP
 * runs only where it converges: 14–30 iterations were seen on the shared MLPs); the solver stops when the budget is
 * spent (a looser, still certified value).
 */
export const LIPSDP_DEFAULTS = { bestWork: 8e9, sdpWork: 1e11, minSteps: 8, bestMinSteps: 40, bestStructuredWork: 1e10, structuredMinEvaluations: 40 } as const;

/**
 * Where the dense solver does not fit and every slope range has α·β = 0, LipSDP-Neuron is solved as an eigenvalue
 * optimisation over the multipliers (src/linalg/sdp-eigen.ts, docs/algorithms-sdp.md §9): warm-started from ECLipsE's point,
 * stopped by its budget (under best LIPSDP_DEFAULTS.bestStructuredWork, 1e10 multiply-adds ≈ 150 evaluations of ρ(t) on
 * dist_shift_mnist_concat; under sdp the segment's whole share), its best points certified as LipSDP's. It needs the budget
 * to cover structuredMinEvaluations evaluations and the certificate.
 */

/** Options of lipsdpSegmentBound. */
export interface LipSdpOptions {
  /** Multiply-adds for the whole segment, both variants (default LIPSDP_DEFAULTS.sdpWork). --sdp-work gives Mflop: 2 per multiply-add. */
  readonly work?: number;
  /** Newton steps the budget must cover for the segment to be tried at all (default LIPSDP_DEFAULTS.minSteps). */
  readonly minSteps?: number;
  /** Which variants to solve (default both: Neuron first, the tight one; an iteration costs the same for either). */
  readonly variants?: readonly LipSdpVariant[];
  /** Multiply-adds for the structured solver where the dense one does not fit (default: `work`). */
  readonly structuredWork?: number;
}

/** The LipSDP bounds of one segment. */
export interface LipSdpResult {
  /** The smaller certified ℓ2 bound of the variants solved, or null. */
  readonly upper: Bound | null;
  readonly neuron: Bound | null;
  readonly layer: Bound | null;
  /** √ρ at the solver's last point (the least over variants): what the certificate aimed at, no guarantee. */
  readonly estimate: number | null;
  /** Multiply-adds spent (solves and certificates). */
  readonly work: number;
  /** Solver steps taken: Newton steps of the interior point, or L-BFGS steps of the eigenvalue method (stepKind). */
  readonly newtonSteps: number;
  readonly stepKind: 'Newton' | 'L-BFGS';
  /** Whether LipSDP-Neuron's solve converged and was certified (then ECLipsE, a feasible point of the same LMI, cannot be smaller). */
  readonly converged: boolean;
  /**
   * Whether the solve started at ECLipsE's construction on this segment (with ECLIPSE_DEFAULTS.bestWork, at least the
   * budget a separate ECLipsE bound gets under best) and kept its best points, that start among them: the eigenvalue
   * method only descends from it, so a separate ECLipsE bound would not be smaller (beyond the certificate's rounding).
   */
  readonly fromEclipse: boolean;
  /** Why a variant was skipped or stopped early, in full sentences. */
  readonly notes: readonly string[];
  readonly ms: number;
}

/** Why a segment can have no LipSDP bound here (ℓ∞, certificates off, an operator or the LMI too large to form), or null. */
export function lipsdpObstacle(segment: Segment, settings: Pick<NormSettings, 'certify' | 'norm'>): string | null {
  if (settings.norm !== '2') return 'LipSDP bounds the ℓ2 constant only (for ℓ∞ use √n_in times the ℓ2 bound)';
  if (settings.certify === 'off' || settings.certify === 'none') return `certificates are off (--certify ${settings.certify})`;
  for (const r of segment.regions) {
    const cols = sizeOf(r.inShape), rows = sizeOf(r.outShape);
    if (cols > DENSE_LIMIT.cols || rows * cols > DENSE_LIMIT.entries) return `operator ${r.id} is ${rows}×${cols}, beyond the ${DENSE_LIMIT.cols}-column, ${DENSE_LIMIT.entries}-entry limit for a dense matrix`;
  }
  const n = sizeOf(segment.regions[0].inShape) + segment.activations.reduce((a, x) => a + sizeOf(x.outShape), 0);
  if (n > LMI_LIMIT) return `its LMI would be ${n}×${n}, beyond the ${LMI_LIMIT} limit for a dense factorisation`;
  return null;
}

/**
 * A region's matrix Â (float64, row-major) and a bound on ‖Â − A‖₂. Conv-free regions run a float64 onnxruntime graph
 * (each entry within g₆₄·(|A_k|⋯|A_1|)_ij, g₆₄ = Σγ in float64, as denseRegionBound in operator-norm.ts); regions with a
 * convolution (onnxruntime has no float64 Conv) apply the float32 operator to unit vectors, each entry within
 * g₃₂·(|A_k|⋯|A_1|)_ij. Since |E| ≤ B entrywise gives ‖E‖₂ ≤ ‖B‖₂, ‖Â − A‖₂ ≤ g·P with P ≥ ‖|A_k|⋯|A_1|‖₂ (doubled).
 */
async function formRegion(region: LinearRegion, settings: NormSettings): Promise<{ w: Float64Array; rows: number; cols: number; delta: number }> {
  const rows = sizeOf(region.outShape), cols = sizeOf(region.inShape);
  const composed = regionBound(region, '2', 0, float32Unit(settings));
  if (!region.nodes.some((n) => n.prim.op === 'conv' || n.prim.op === 'convTranspose')) {
    const w = await settings.backend.denseMatrix(region);
    // lipsdpObstacle ruled out what the backend declines (beyond DENSE_LIMIT)
    if (!w) throw new LipcheckError('INTERNAL', `The backend declined the float64 matrix of operator ${region.id}, which LipSDP had checked could be formed. Please report this with the model.`);
    return { w, rows, cols, delta: roundUp(2 * composed.gammaSum * 2 ** -29 * composed.absNorm, 2) };
  }
  const op = await settings.backend.operator(region);
  try {
    const w = new Float64Array(rows * cols);
    const e = new Float64Array(cols);
    for (let j = 0; j < cols; j++) {
      e.fill(0);
      e[j] = 1;
      const y = await op.apply(e);
      for (let i = 0; i < rows; i++) w[i * cols + j] = y[i];
    }
    return { w, rows, cols, delta: roundUp(2 * composed.gammaSum * composed.absNorm, 2) };
  } finally {
    await op.dispose();
  }
}

/** Upward ‖X‖_F of a float64 array (a certified bound on its spectral norm). */
function frobeniusUp(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return sqrtUp(roundUp(s, x.length + 1));
}

/**
 * A segment's LipSDP problem: the operators' float64 matrices Â_k (formRegion) with the slope ranges, and `cross`, what
 * turns a bound on sup_D ‖Â_K D ⋯ D Â_1‖ into one on the exact operators (added to it): Π s_k·Σ_j e_j·Π_{k<j}(a_k + e_k)·
 * Π_{k>j}a_k with a_k = ‖Â_k‖_F, e_k ≥ ‖Â_k − A_k‖, s_k the largest |slope| (as SeqLip's certified route). Shared by
 * LipSDP and ECLipsE (eclipse.ts); the caller has checked lipsdpObstacle.
 */
export async function formSegmentProblem(segment: Segment, settings: NormSettings): Promise<{ problem: LipSdpProblem; cross: number }> {
  const formed = [];
  for (const r of segment.regions) formed.push(await formRegion(r, settings));
  const problem: LipSdpProblem = { layers: formed.map((f) => ({ w: f.w, rows: f.rows, cols: f.cols })), slopes: segment.activations.map((a) => a.slope) };
  const a = formed.map((f) => frobeniusUp(f.w));
  const e = formed.map((f) => f.delta);
  let slopes = 1;
  for (const act of segment.activations) slopes *= Math.max(Math.abs(act.slope[0]), Math.abs(act.slope[1]));
  let cross = 0;
  for (let j = 0; j < e.length; j++) {
    let term = e[j];
    for (let k = 0; k < e.length; k++) if (k !== j) term *= k < j ? a[k] + e[k] : a[k];
    cross += term;
  }
  return { problem, cross: roundUp(cross * slopes, 3 * e.length + 4) };
}

/**
 * LipSDP-Neuron by the eigenvalue method (no dense N×N matrix but the certificate's): ECLipsE's construction gives the
 * start (its stage SDPs within ECLIPSE_DEFAULTS.bestWork), solveLipSdpEigen runs with the rest of `work`, and the
 * certificate is ECLipsE's reduced one (the input block eliminated exactly where α_1β_1 = 0), the same proof as certifyLmi.
 */
async function structuredSegmentBound(segment: Segment, settings: NormSettings, work: number, certWork: number, t0: number): Promise<LipSdpResult> {
  const { problem, cross } = await formSegmentProblem(segment, settings);
  let steps = 0, evaluations = 0, started = false;
  const res = lipSdpBound(problem, {
    variant: 'neuron',
    certify: certifyLmiReduced,
    solve: (scaled) => {
      const c = eclipseConstruct(scaled, { work: ECLIPSE_DEFAULTS.bestWork });
      const start = c.path.length ? c.path[0] : undefined;
      const sol = solveLipSdpEigen(scaled, { start, maxWork: work - certWork - c.work });
      steps = sol.newtonSteps;
      evaluations = sol.evaluations;
      started = sol.fromStart;
      return { ...sol, work: sol.work + c.work };
    },
  });
  const notes: string[] = [];
  if (!res) notes.push(`LipSDP-Neuron (eigenvalue method) on ${segment.id}: no certificate succeeded at the solver's points; no bound from it.`);
  else notes.push(`LipSDP-Neuron (eigenvalue method) on ${segment.id} took ${steps} L-BFGS steps (${evaluations} evaluations of ρ(t)) within its work budget; it has no duality-gap bound, so its certified value may be above the optimum.`);
  const neuron = res ? { value: roundUp(res.value + cross, 1), kind: 'certified' as const, method: 'lipsdp-neuron' } : null;
  return { upper: neuron, neuron, layer: null, estimate: res?.estimate ?? null, work: res?.work ?? work, newtonSteps: steps, stepKind: 'L-BFGS', converged: res?.converged ?? false, fromEclipse: started, notes, ms: performance.now() - t0 };
}

/**
 * LipSDP-Neuron and LipSDP-Layer (Fazlyab et al., NeurIPS 2019, Thm 2; docs/algorithms-sdp.md) on a sequential segment
 * M_K∘σ_{K−1}∘⋯∘σ_1∘M_1: certified upper bounds on its ℓ2 Lipschitz constant. The operators' matrices Â_k are formed
 * (formRegion), the LMI solved by an interior-point method and proved by Cholesky (lipSdpBound: the bound covers every
 * product Â_K D ⋯ D Â_1 with D in the slope box), and the distance to the exact operators added:
 * ‖Π(Â_k + E_k)D‖ ≤ ‖ΠÂ_kD‖ + Π s_k·Σ_j e_j·Π_{k<j}(a_k + e_k)·Π_{k>j}a_k with a_k = ‖Â_k‖_F, e_k ≥ ‖E_k‖, s_k the
 * largest |slope| (as SeqLip's certified route). A variant is solved when `work` covers LIPSDP_DEFAULTS.minSteps Newton
 * steps (opts.minSteps) and its certificate; its solver stops when the work is spent.
 */
export async function lipsdpSegmentBound(segment: Segment, settings: NormSettings, opts: LipSdpOptions = {}): Promise<LipSdpResult> {
  const t0 = performance.now();
  const notes: string[] = [];
  const empty = (why: string): LipSdpResult => ({ upper: null, neuron: null, layer: null, estimate: null, work: 0, newtonSteps: 0, stepKind: 'Newton', converged: false, fromEclipse: false, notes: [why], ms: performance.now() - t0 });
  const obstacle = lipsdpObstacle(segment, settings);
  if (obstacle) return empty(`No LipSDP bound for ${segment.id}: ${obstacle}.`);
  const variants = opts.variants ?? ['neuron', 'layer'];
  let budget = opts.work ?? LIPSDP_DEFAULTS.sdpWork;
  // the cheapest test first: does one variant fit at all? (dimensions only, nothing formed yet)
  const dims = segment.regions.map((r) => ({ rows: sizeOf(r.outShape), cols: sizeOf(r.inShape) }));
  const shape: LipSdpProblem = { layers: dims.map((d, k) => ({ w: new Float64Array(0), rows: d.rows, cols: k === 0 ? Math.min(d.cols, d.rows) : d.cols })), slopes: segment.activations.map((a) => a.slope) };
  const full: LipSdpProblem = { layers: dims.map((d) => ({ w: new Float64Array(0), rows: d.rows, cols: d.cols })), slopes: shape.slopes };
  const stepWork = lipSdpStepWork(shape), certWork = 12 * lipSdpCertifyWork(full);
  const minSteps = opts.minSteps ?? LIPSDP_DEFAULTS.minSteps;
  const needed = minSteps * stepWork + certWork;
  // the dense solver does not fit: LipSDP-Neuron by the structured solver where the LMI has its structure and budget
  const sBudget = opts.structuredWork ?? budget;
  const sCert = 12 * eclipseCertifyWork(full);
  const sNeeded = LIPSDP_DEFAULTS.structuredMinEvaluations * eigenEvalWork(full) + sCert;
  if (needed > budget && variants.includes('neuron') && structuredObstacle(full) === null && sNeeded <= sBudget) return structuredSegmentBound(segment, settings, sBudget, sCert, t0);
  if (needed > budget) return empty(`No LipSDP bound for ${segment.id}: ${minSteps} interior-point steps and the certificate need about ${Math.ceil((2 * needed) / 1e6)} Mflop, over the ${Math.floor((2 * budget) / 1e6)} Mflop this segment was given (raise --sdp-work).`);

  const { problem, cross } = await formSegmentProblem(segment, settings);

  const got: Partial<Record<LipSdpVariant, Bound>> = {};
  let work = 0, steps = 0, estimate: number | null = null, converged = false;
  for (const [i, variant] of variants.entries()) {
    // each later variant keeps at least the minimum it needs, where the budget covers them all (else the earlier, tighter
    // one takes it all: tll_n2_N16_1_0 under --method sdp); the last takes what is left
    const reserve = budget >= (variants.length - i) * needed ? (variants.length - 1 - i) * needed : 0;
    const share = budget - reserve;
    if (share < needed) { notes.push(`LipSDP-${variant === 'neuron' ? 'Neuron' : 'Layer'} skipped on ${segment.id}: the work budget is spent.`); continue; }
    const res = lipSdpBound(problem, { variant, maxWork: share - certWork });
    const spent = res?.work ?? share;
    work += spent;
    budget -= spent;
    if (!res) { notes.push(`LipSDP-${variant === 'neuron' ? 'Neuron' : 'Layer'} on ${segment.id}: no certificate succeeded at the solver's points; no bound from it.`); continue; }
    steps += res.newtonSteps;
    if (res.converged && variant === 'neuron') converged = true;
    if (!res.converged) notes.push(`LipSDP-${variant === 'neuron' ? 'Neuron' : 'Layer'} on ${segment.id} stopped after ${res.newtonSteps} Newton steps when its work budget ran out; its certified value is looser than the optimum.`);
    estimate = estimate === null ? res.estimate : Math.min(estimate, res.estimate);
    got[variant] = { value: roundUp(res.value + cross, 1), kind: 'certified', method: `lipsdp-${variant}` };
  }
  const bounds = [got.neuron, got.layer].filter((b): b is Bound => b !== undefined);
  const upper = bounds.length ? bounds.reduce((x, y) => (y.value < x.value ? y : x)) : null;
  return { upper, neuron: got.neuron ?? null, layer: got.layer ?? null, estimate, work, newtonSteps: steps, stepKind: 'Newton', converged, fromEclipse: false, notes, ms: performance.now() - t0 };
}
