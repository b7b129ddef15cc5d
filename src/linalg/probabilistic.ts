/**
 * Kuczyński & Woźniakowski (SIAM J. Matrix Anal. Appl. 13(4), 1992), Theorem 4.2(a): for a start vector uniform on
 * the sphere of R^n, k Lanczos steps give a top Ritz value θ_k with P(θ_k < (1−ε)λ_max) ≤ 1.648·√n·e^{−(2k−1)√ε}.
 * Solving for ε at failure probability δ gives √ε = ln(1.648·√n/δ)/(2k−1) (ALGORITHMS.md §2).
 * Returns ε, or 1 when k is too small for any guarantee at this δ.
 */
export function kwEpsilon(n: number, k: number, delta: number): number {
  if (k < 1) return 1;
  const rootEps = Math.log((1.648 * Math.sqrt(n)) / delta) / (2 * k - 1);
  if (rootEps <= 0) return 0;
  return Math.min(1, rootEps * rootEps);
}

/** The factor 1/sqrt(1−ε) that turns sqrt(θ_k) into a probabilistic upper bound on σ_max (Infinity if ε = 1). */
export function kwFactor(n: number, k: number, delta: number): number {
  const eps = kwEpsilon(n, k, delta);
  return eps >= 1 ? Infinity : 1 / Math.sqrt(1 - eps);
}

/** The smallest k whose KW factor is at most `factor` (> 1). */
export function kwStepsFor(n: number, delta: number, factor: number): number {
  const eps = 1 - 1 / (factor * factor);
  const rootEps = Math.sqrt(eps);
  return Math.max(1, Math.ceil((Math.log((1.648 * Math.sqrt(n)) / delta) / rootEps + 1) / 2));
}

/**
 * k₀: the first step k ≥ 3 at which KW's factor at δ is at most 1 + tol, found with kwFactor itself (kwStepsFor's
 * closed form may round one step apart from it). The stop rules of measureRegion and productLanczos stop at the first
 * k ≥ k₀ where θ has also converged, a step that depends on the run; KW's theorem holds at a fixed k, so ritzFactor
 * takes KW's factor at k₀ for any later stop (`kwSteps`).
 */
export function kwStopSteps(n: number, delta: number, tol: number): number {
  let k = Math.max(1, kwStepsFor(n, delta, 1 + tol) - 2);
  while (kwFactor(n, k, delta) > 1 + tol) k++;
  return Math.max(3, k);
}

/**
 * A floor t on |⟨v, x⟩| for v uniform on the unit sphere of ℝⁿ (n ≥ 3) and any fixed unit vector x, failing with
 * probability at most δ: ⟨v, x⟩² ~ Beta(1/2, (n−1)/2), whose density is at most s^{−1/2}/B(1/2, (n−1)/2) for n ≥ 3, so
 * P(⟨v, x⟩² ≤ t²) ≤ 2t/B; and 1/B = Γ(n/2)/(√π·Γ((n−1)/2)) ≤ √((n−1)/(2π)) (Wendel's inequality Γ(y + ½) ≤ √y·Γ(y)).
 * Hence P(|⟨v, x⟩| ≤ t) ≤ t·√(2(n−1)/π) = δ for t = δ·√(π/(2(n−1))).
 */
export function startComponentFloor(n: number, delta: number): number {
  if (n < 3) throw new RangeError(`startComponentFloor needs n ≥ 3, got ${n}`);
  return delta * Math.sqrt(Math.PI / (2 * (n - 1)));
}

/**
 * The Lanczos-polynomial bound on λ_max of a symmetric G from a run of k steps from a start v uniform on the sphere
 * (van Dorsselaer, Hochstenbach & van der Vorst, SIAM J. Matrix Anal. Appl. 22, 2000, whose idea this is; derived in
 * docs/algorithms-fused-lanczos.md §8). The run's T_k (α_1..α_k, β_1..β_{k−1}) and final residual norm β_k satisfy
 * χ_k(G)·v = β_1⋯β_k·v_{k+1} with χ_k(x) = det(xI − T_k), so with v = Σ γ_i x_i (G's eigenvectors),
 * γ_1²·χ_k(λ_max)² ≤ ‖χ_k(G)v‖² = (β_1⋯β_k)². Unless |γ_1| < t = startComponentFloor(n, δ) (probability ≤ δ),
 * χ_k(λ_max) ≤ β_1⋯β_k / t, and χ_k increases above T_k's largest eigenvalue θ: λ_max ≤ the x ≥ θ where equality
 * holds. log χ_k(x) is summed from the pivots of xI − T_k (positive definite there, so its LDLᵀ is backward stable:
 * the root is raised by 16·k·u·‖T_k‖∞ for that); Infinity where n < 3 or the input is not finite.
 */
export function lanczosPolynomialBound(alpha: readonly number[], beta: readonly number[], theta: number, n: number, delta: number): number {
  const k = alpha.length;
  if (n < 3 || k < 1 || beta.length < k || !Number.isFinite(theta)) return Infinity;
  let norm = 0;
  for (let j = 0; j < k; j++) norm = Math.max(norm, Math.abs(alpha[j]) + (j > 0 ? Math.abs(beta[j - 1]) : 0) + (j + 1 < k ? Math.abs(beta[j]) : 0));
  if (!Number.isFinite(norm)) return Infinity;
  let target = -Math.log(startComponentFloor(n, delta));
  for (let j = 0; j < k; j++) {
    if (!(beta[j] > 0)) return theta + 16 * k * 2 ** -53 * norm;
    target += Math.log(beta[j]);
  }
  // log χ_k(x) for x above every eigenvalue of T_k (all pivots positive; −∞ otherwise, which keeps bisection above θ)
  const logChi = (x: number): number => {
    let sum = 0, r = 1;
    for (let j = 0; j < k; j++) {
      r = x - alpha[j] - (j > 0 ? (beta[j - 1] * beta[j - 1]) / r : 0);
      if (!(r > 0)) return -Infinity;
      sum += Math.log(r);
    }
    return sum;
  };
  let lo = theta, step = Math.max(norm, Math.abs(theta), 1e-300) * 2 ** -40;
  let hi = theta + step;
  while (logChi(hi) < target) {
    lo = hi;
    step *= 2;
    hi = theta + step;
    if (!Number.isFinite(hi)) return Infinity;
  }
  for (let i = 0; i < 200 && hi - lo > 2 ** -52 * Math.abs(hi); i++) {
    const mid = lo + (hi - lo) / 2;
    if (logChi(mid) < target) lo = mid;
    else hi = mid;
  }
  return hi + 16 * k * 2 ** -53 * norm;
}

/** What a Lanczos run tells ritzFactor: its top Ritz value, steps, invariance and (float64 runs) its T_k. */
export interface RitzRun {
  readonly theta: number;
  readonly steps: number;
  readonly invariant: boolean;
  readonly tridiagonal?: { readonly alpha: readonly number[]; readonly beta: readonly number[] };
}

/**
 * The factor f with λ_max ≤ θ·f² except with probability δ, for a run of Lanczos on a Gram map of size n from a start
 * uniform on the sphere: 1 where the run exhausted the space (invariant after n steps); where the run's T_k is known
 * (n ≥ 3, θ > 0), the smaller of Kuczyński–Woźniakowski's factor and the Lanczos polynomial's (lanczosPolynomialBound),
 * each at δ/2, so that both hold except with probability δ; else KW's at δ. `method` names the one used.
 *
 * KW's theorem is for a fixed step count, and a stop rule that waits for convergence stops at a step K that depends on
 * the run. `kwSteps` is the fixed k₀ from which the caller's rule may stop (kwStopSteps): KW's factor is taken at
 * min(K, k₀). For K ≥ k₀ that is valid because Ritz values only grow (T_{k₀} is a leading block of T_K, so by Cauchy
 * interlacing θ_K ≥ θ_{k₀}) and KW's event at k₀ then bounds λ_max by θ_K·f(k₀)². A run stops before k₀ only at
 * maxSteps (a fixed count) or where its Krylov space became invariant (θ_K is then what every later step would give).
 * The polynomial bound's event (the start's top component below t) does not depend on the step, so it holds at K.
 */
export function ritzFactor(run: RitzRun, n: number, delta: number, kwSteps: number = run.steps): { readonly factor: number; readonly method: 'kw' | 'poly' | 'exact' } {
  if (run.invariant && run.steps >= n) return { factor: 1, method: 'exact' };
  const t = run.tridiagonal;
  const k = Math.min(run.steps, kwSteps);
  if (!t || n < 3 || !(run.theta > 0) || t.alpha.length !== run.steps) return { factor: kwFactor(n, k, delta), method: 'kw' };
  const kw = kwFactor(n, k, delta / 2);
  const poly = Math.sqrt(lanczosPolynomialBound(t.alpha, t.beta, run.theta, n, delta / 2) / run.theta);
  // √ and / above each round once: 4 units more than the root's own allowance
  const polyUp = poly * (1 + 2 ** -50);
  return polyUp < kw ? { factor: polyUp, method: 'poly' } : { factor: kw, method: 'kw' };
}
