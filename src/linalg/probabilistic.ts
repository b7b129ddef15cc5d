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
