import { LipcheckError } from '../errors.js';
import { roundUp, sqrtUp } from './dense.js';

/**
 * The margin of a Lanczos run whose recurrence and reorthogonalisation ran in float32 inside onnxruntime (a provider
 * without float64 kernels: WebGPU), docs/algorithms-fused-lanczos.md §7. Pure: every input is a number the run read
 * back, and the result is an upward-rounded float64 value.
 */

/** float32's unit roundoff under IEEE round-to-nearest. */
export const U32 = 2 ** -24;

/**
 * The float32 arithmetic these bounds assume: what WGSL promises (the WebGPU provider's shaders, for which the float32
 * runs exist), which also covers IEEE providers. WGSL's "correctly rounded" +, −, × may return either neighbour of the
 * exact result (faithful rounding: relative error below 1 ULP ≤ 2⁻²³, twice IEEE's u); x / y is within 2.5 ULP (≤ 5u);
 * sqrt is inherited from 1 / inverseSqrt (2 ULP, then a division): within (1 + 5u)/(1 − 4u) − 1 < 10u.
 * docs/algorithms-fused-lanczos.md §7.
 */
export const WGSL_F32 = { unit: 2 * U32, div: 5 * U32, sqrt: 10 * U32 } as const;

/** γ_k = k·u/(1 − k·u) for float32 arithmetic with WGSL's unit (Higham §3.1), rounded up; throws beyond k·u ≥ 0.01, where the bounds here are not used. */
export function gamma32(k: number): number {
  const u = WGSL_F32.unit;
  if (!(k * u < 0.01)) throw new LipcheckError('INTERNAL', `gamma32(${k}) is outside the range where the float32 rounding bounds hold.`);
  return roundUp((k * u) / (1 - k * u), 3);
}

/** The block lengths of a two-level sum over n (padded to blocks·length ≥ n): blocks = ⌈√n⌉, length = ⌈n / blocks⌉. */
export function twoLevel(n: number): { blocks: number; length: number; padded: number } {
  const blocks = Math.max(1, Math.ceil(Math.sqrt(n)));
  const length = Math.max(1, Math.ceil(n / blocks));
  return { blocks, length, padded: blocks * length };
}

/**
 * The error constant of a two-level dot product over n terms (products, sums within blocks in any order, then the
 * block sums in any order): |fl(xᵀy) − xᵀy| ≤ g·Σ|x_i y_i| with g = γ_{length + blocks} (γ_L + γ_{B−1}(1 + γ_L) ≤ γ_{L+B−1}).
 */
export function twoLevelGamma(n: number): number {
  const { blocks, length } = twoLevel(n);
  return gamma32(length + blocks);
}

/** What a float32 fused run read back, for its first s steps (arrays of at least s entries; gram (s+1)×(s+1) or larger). */
export interface Float32LanczosTrace {
  /** Length of the vectors (the operator's n). */
  readonly n: number;
  /** Steps used. */
  readonly s: number;
  readonly alpha: ArrayLike<number>;
  /** β_j of step j (β_j v_{j+1} = the reorthogonalised residual). */
  readonly beta: ArrayLike<number>;
  /** Computed ‖z_j‖ (z_j the product of step j) and ‖r1_j‖ (the residual after the first Gram–Schmidt pass). */
  readonly zNorm: ArrayLike<number>;
  readonly r1Norm: ArrayLike<number>;
  /** Computed ‖h1_j‖, ‖h2_j‖: the two Gram–Schmidt passes' coefficients (j + 1 each). */
  readonly h1Norm: ArrayLike<number>;
  readonly h2Norm: ArrayLike<number>;
  /** The computed Gram matrix of the basis v_0..v_K, row-major, `size` × `size` (size ≥ s + 1). */
  readonly gram: ArrayLike<number>;
  readonly size: number;
}

/** The bound of §7: θ' ≥ θ, and its parts. */
export interface Float32LanczosMargin {
  /** (θ + δ)/(1 − ω) + 2φ/√(1 − ω), rounded up: the value the KW factor and η then apply to. */
  readonly thetaBound: number;
  /** Bound on ‖V_{s+1}ᵀV_{s+1} − I‖₂ (orthogonality of v_0..v_s). */
  readonly omega: number;
  /** Bound on ‖F‖_F, the recurrence's residual other than the products' own errors. */
  readonly phi: number;
  readonly delta: number;
}

/**
 * θ' for the Ritz value θ of T_s (α_0..α_{s−1}, β_0..β_{s−2}) of a float32 run, docs/algorithms-fused-lanczos.md §7.
 * Null when the basis is too far from orthonormal for the bound (ω ≥ 1/2) or a read-back value is not finite:
 * the caller then runs the float64 path.
 */
export function float32LanczosMargin(t: Float32LanczosTrace, theta: number): Float32LanczosMargin | null {
  const { n, s } = t;
  if (s < 1 || t.size < s + 1) throw new LipcheckError('INTERNAL', `float32LanczosMargin: ${s} steps need a Gram matrix of at least ${s + 1} rows, got ${t.size}.`);
  const gd = twoLevelGamma(n);
  // a computed norm fl(√fl(Σx²)) understates the true one by at most the factor 1/(√(1 − g)(1 − u_sqrt)) ≤ 1/((1 − g)(1 − u_sqrt))
  const upN = (x: number) => roundUp(Math.abs(x) / ((1 - gd) * (1 - WGSL_F32.sqrt)), 2);
  const upK = (x: number) => roundUp(Math.abs(x) / ((1 - gamma32(s + 2)) * (1 - WGSL_F32.sqrt)), 2);
  // ω: ‖Ĉ − I‖_F in float64 (each term rounded up), plus the Gram matrix's own error g·Σ‖v_i‖², ‖v_i‖² ≤ Ĉ_ii/(1 − g)
  let off = 0, trace = 0;
  for (let i = 0; i <= s; i++) {
    for (let j = 0; j <= s; j++) {
      const c = t.gram[i * t.size + j];
      if (!Number.isFinite(c)) return null;
      const d = Math.abs(c - (i === j ? 1 : 0));
      off += roundUp(d * d, 2);
    }
    trace += Math.abs(t.gram[i * t.size + i]);
  }
  const omega = roundUp(sqrtUp(roundUp(off, 2 * (s + 1) * (s + 1))) + roundUp((gd * trace) / (1 - gd), 3 * (s + 2)), 2);
  if (!(omega < 0.5)) return null;
  const vNorm = sqrtUp(1 + omega);
  // ‖ℓ_j‖ (the local rounding of step j) plus ‖Q_jᵀ(h1 + h2)‖ ≤ √(1 + ω)(‖h1‖ + ‖h2‖): f_j of §7
  let phi2 = 0;
  const g3 = gamma32(3), g1 = gamma32(1);
  let tNorm = 0;
  for (let j = 0; j < s; j++) {
    const values = [t.alpha[j], t.beta[j], t.zNorm[j], t.r1Norm[j], t.h1Norm[j], t.h2Norm[j], j > 0 ? t.beta[j - 1] : 0];
    if (!values.every(Number.isFinite)) return null;
    const a = Math.abs(t.alpha[j]), b = Math.abs(t.beta[j]), bPrev = j > 0 ? Math.abs(t.beta[j - 1]) : 0;
    const z = upN(t.zNorm[j]), r1 = upN(t.r1Norm[j]), r2 = upN(b);
    const h = upK(t.h1Norm[j]) + upK(t.h2Norm[j]);
    const local = g3 * (z + a * vNorm + bPrev * vNorm) + gamma32(j + 1) * sqrtUp((j + 1) * (1 + omega)) * h + g1 * (r1 + r2) + WGSL_F32.div * r2;
    const f = roundUp(local + vNorm * h, 12);
    phi2 += roundUp(f * f, 2);
    // Gershgorin on T_s: |α_j| + β_{j−1} + β_j (β_{s−1} is not in T_s)
    tNorm = Math.max(tNorm, roundUp(a + bPrev + (j + 1 < s ? b : 0), 2));
  }
  const phi = sqrtUp(roundUp(phi2, 2 * s));
  const betaLast = Math.abs(t.beta[s - 1]);
  const delta = roundUp(omega * tNorm + betaLast * omega + vNorm * phi, 4);
  const shrink = 1 - omega;
  const thetaBound = roundUp((Math.max(theta, 0) + delta) / shrink + (2 * phi) / Math.sqrt(shrink) * (1 + 4 * 2 ** -53), 6);
  return { thetaBound, omega, phi, delta };
}
