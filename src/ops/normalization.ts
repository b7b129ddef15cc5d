import type { IrNode } from '../ir/types.js';
import { float32Tensor, sizeOf, toFloat64 } from '../ir/tensor.js';
import { base, constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearNode, productOfInputs } from './linear.js';

/**
 * A certified upper bound on max G over the triangle 0 ≤ r ≤ t ≤ 1, by branch and bound on rectangles: `upper` must
 * bound G over a cell [t0, t1] × [r0, r1] (r ≤ t implied), `at` evaluates G at a point. Cells whose upper bound is
 * within a relative `tol` of the best point value found are not split further.
 */
function maxOverTriangle(upper: (t0: number, t1: number, r0: number, r1: number) => number, at: (t: number, r: number) => number, tol = 1e-4): number {
  type Cell = readonly [t0: number, t1: number, r0: number, r1: number, ub: number];
  const cell = (t0: number, t1: number, r0: number, r1: number): Cell => [t0, t1, r0, r1, upper(t0, t1, r0, Math.min(r1, t1))];
  let best = at(0, 0);
  let settled = 0;
  let cells: Cell[] = [];
  const N = 16;
  for (let i = 0; i < N; i++) for (let j = 0; j <= i; j++) cells.push(cell(i / N, (i + 1) / N, j / N, (j + 1) / N));
  for (let round = 0; round < 40 && cells.length > 0 && cells.length < 50000; round++) {
    for (const [t0, t1, r0, r1] of cells) { const t = (t0 + t1) / 2; best = Math.max(best, at(t, Math.min((r0 + r1) / 2, t))); }
    const next: Cell[] = [];
    for (const c of cells) {
      // a cell whose bound is within tol of a value actually reached is settled at its bound
      if (c[4] <= best * (1 + tol)) { settled = Math.max(settled, c[4]); continue; }
      const [t0, t1, r0, r1] = c;
      const tm = (t0 + t1) / 2, rm = (r0 + r1) / 2;
      for (const [a, b] of [[t0, tm], [tm, t1]]) for (const [lo, hi] of [[r0, rm], [rm, r1]]) if (lo <= b) next.push(cell(a, b, lo, hi));
    }
    cells = next;
  }
  return Math.max(best, settled, ...cells.map((c) => c[4]));
}

/** max of r·(t − r) over r ∈ [r0, r1] for a fixed t (a concave parabola peaking at t/2). */
function maxProduct(t: number, r0: number, r1: number): number {
  const r = Math.min(Math.max(t / 2, r0), r1);
  return Math.max(0, r * (t - r));
}

/**
 * Certified ℓ2 and ℓ∞ Lipschitz constants of ONNX LRN, y_c = x_c / (bias + α/size · Σ_{j∈W(c)} x_j²)^β over C channels
 * (W(c) = [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] ∩ [0, C−1]), for α > 0, β > 0, bias > 0.
 *
 * Derivation. Write a = α/size, s_c = bias + a·q_c with q_c = ‖x_{W(c)}‖², and t_c = a·q_c/s_c ∈ [0, 1), r_c = a·x_c²/s_c ∈ [0, t_c];
 * then s_c^{−β} = bias^{−β}(1 − t_c)^β. LRN is smooth (s_c ≥ bias > 0), so its constant is sup_x ‖J(x)‖, and J is block
 * diagonal over batch and spatial positions, so one position (a vector x ∈ R^C) suffices. Differentiating,
 *   (Jv)_c = s_c^{−β} [ (1 − 2β r_c) v_c − 2β (a/s_c) x_c ⟨x'_c, v'_c⟩ ],
 * where ' restricts to W(c) \ {c}. By Cauchy–Schwarz, (a/s_c)|x_c|·‖x'_c‖ = √(r_c(t_c − r_c)), so
 *   |(Jv)_c| ≤ s_c^{−β} [ |1 − 2β r_c|·|v_c| + 2β √(r_c(t_c − r_c))·‖v'_c‖ ].
 * ℓ2: for any μ > 0, (A|v_c| + B‖v'_c‖)² ≤ (A² + B²/μ)(v_c² + μ‖v'_c‖²), and Σ_c ‖v'_c‖² ≤ (m − 1)‖v‖² because an index j lies
 * in W(c) for at most m = min(size, C) channels c. Hence
 *   ‖J‖₂² ≤ bias^{−2β} (1 + μ(m − 1)) · max_{0≤r≤t<1} (1 − t)^{2β} [ (1 − 2βr)² + (4β²/μ) r(t − r) ].
 * ℓ∞: the row sum is s_c^{−β}[ |1 − 2βr_c| + 2β (a/s_c)|x_c|·‖x'_c‖₁ ] with ‖x'_c‖₁ ≤ √(m−1)‖x'_c‖, so
 *   ‖J‖∞ ≤ bias^{−β} · max_{0≤r≤t<1} (1 − t)^β [ |1 − 2βr| + 2β √((m − 1) r(t − r)) ].
 * Both maxima are bounded from above by branch and bound over the triangle (cell bounds from the monotonicity of each
 * factor), and μ is chosen to make the ℓ2 bound small; any μ gives a valid bound. At x = 0, J = bias^{−β}·I, so neither
 * value can fall below bias^{−β}; for AlexNet's size 5, β = 0.75 they are ≈ 1.113 (ℓ2) and ≈ 1.011 (ℓ∞) times that, where
 * adversarial Jacobians (test/ops) reach ≈ 1.00 and ≈ 1.01.
 */
export function lrnLipschitz(alpha: number, beta: number, bias: number, size: number, channels: number): { l2: number; linf: number } {
  const m = Math.max(1, Math.min(size, channels));
  const key = `${beta}/${m}`;
  let unit = LRN_CACHE.get(key);
  if (!unit) { unit = lrnUnitBounds(beta, m); LRN_CACHE.set(key, unit); }
  const scale = Math.pow(bias, -beta);
  // outward rounding for the float64 arithmetic (a few hundred operations per value at most)
  const margin = 1 + 1e-12;
  return { l2: unit.l2 * scale * margin, linf: unit.linf * scale * margin };
}

const LRN_CACHE = new Map<string, { l2: number; linf: number }>();

/** The two maxima of lrnLipschitz's derivation for bias = 1 (they do not depend on α). */
function lrnUnitBounds(beta: number, m: number): { l2: number; linf: number } {
  // (1 − t)^p is decreasing in t, |1 − 2βr| is convex in r (largest at an end), r(t − r) grows with t
  const decay = (t: number, p: number) => Math.pow(Math.max(0, 1 - t), p);
  const kappa = (mu: number) => (m > 1 ? (4 * beta * beta) / mu : 0);
  const l2Upper = (mu: number) => (t0: number, t1: number, r0: number, r1: number) => decay(t0, 2 * beta) * (Math.max((1 - 2 * beta * r0) ** 2, (1 - 2 * beta * r1) ** 2) + kappa(mu) * maxProduct(t1, r0, r1));
  const l2At = (mu: number) => (t: number, r: number) => decay(t, 2 * beta) * ((1 - 2 * beta * r) ** 2 + kappa(mu) * r * (t - r));
  // μ by golden-section search on a grid estimate of the (unimodal in practice) bound; any μ gives a valid bound
  const rough = (e: number) => {
    const f = l2At(Math.exp(e));
    let mx = 0;
    for (let i = 0; i <= 32; i++) for (let j = 0; j <= i; j++) mx = Math.max(mx, f(i / 32, j / 32));
    return (1 + Math.exp(e) * (m - 1)) * mx;
  };
  let lo = -10, hi = 10;
  const g = (Math.sqrt(5) - 1) / 2;
  let a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = rough(a), fb = rough(b);
  for (let k = 0; k < 40; k++) {
    if (fa <= fb) { hi = b; b = a; fb = fa; a = hi - g * (hi - lo); fa = rough(a); } else { lo = a; a = b; fa = fb; b = lo + g * (hi - lo); fb = rough(b); }
  }
  // a little above the estimated optimum, the maximum sits alone at t = 0 and branch and bound settles fast
  const mu = m > 1 ? 1.02 * Math.exp((lo + hi) / 2) : 1;
  const l2 = Math.sqrt((1 + mu * (m - 1)) * maxOverTriangle(l2Upper(mu), l2At(mu), 1e-3));
  const linf = maxOverTriangle(
    (t0, t1, r0, r1) => decay(t0, beta) * (Math.max(Math.abs(1 - 2 * beta * r0), Math.abs(1 - 2 * beta * r1)) + 2 * beta * Math.sqrt((m - 1) * maxProduct(t1, r0, r1))),
    (t, r) => decay(t, beta) * (Math.abs(1 - 2 * beta * r) + 2 * beta * Math.sqrt((m - 1) * r * Math.max(0, t - r))),
    1e-3,
  );
  return { l2, linf };
}

const lrn: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  const size = ctx.attrs.int('size', 0);
  const alpha = ctx.attrs.float('alpha', 0.0001);
  const beta = ctx.attrs.float('beta', 0.75);
  const bias = ctx.attrs.float('bias', 1);
  if (!(size >= 1)) unsupported(ctx, `size ${size} must be a positive integer`);
  if (x.shape.length < 2) unsupported(ctx, `its input has rank ${x.shape.length}; LRN needs [N, C, ...]`);
  if (alpha === 0 || beta === 0) {
    // y = x · bias^(−β): a scaling
    return [linearNode(ctx, { op: 'scale', factor: float32Tensor([Math.pow(bias, -beta)], []) })];
  }
  const dyn = dynamicInputs(ctx);
  if (!(bias > 0) || alpha < 0 || beta < 0) {
    const why = !(bias > 0) ? `bias ${bias} ≤ 0 lets the denominator reach 0` : alpha < 0 ? `alpha ${alpha} < 0 lets the denominator reach 0` : `beta ${beta} < 0 makes the output grow faster than its input`;
    return [{ kind: 'unbounded', reason: `${why}, so it has no global Lipschitz bound`, derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
  }
  const { l2, linf } = lrnLipschitz(alpha, beta, bias, size, x.shape[1]);
  return [{
    kind: 'lipschitz', fn: 'LRN', l2, linf,
    note: `sup‖J‖ ≤ bias^−β × ${(l2 / Math.pow(bias, -beta)).toFixed(3)} (ℓ2), × ${(linf / Math.pow(bias, -beta)).toFixed(3)} (ℓ∞) for β = ${beta}, size ${size}`,
    ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]),
  }];
};

/** max |γ| of a constant scale input, or null when the scale depends on the input. */
function maxAbsScale(ctx: ConvertContext, index: number): number | null {
  if (ctx.inputs[index]?.dynamic) return null;
  const t = constantInput(ctx, index);
  if (!t) return 1;
  let m = 0;
  for (const v of toFloat64(t)) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * The ε-bound of a normalisation over groups of n elements, y = γ ⊙ (x − μ)/√(σ² + ε) + β with constant γ.
 * Per group, with c = x − μ and s = √(σ² + ε): J = (1/s)(P − ccᵀ/(n s²)), P = I − 11ᵀ/n. P − ccᵀ/(ns²) = (I − ccᵀ/(ns²))P has
 * eigenvalues in [0, 1], so ‖J‖₂ ≤ 1/s ≤ 1/√ε (reached at σ = 0). Row sums: Σ_j|P_ij| = 2(n−1)/n and |c_i|·‖c‖₁ ≤ (1+√n)/2·‖c‖²
 * (the top eigenvalue of (e_i1ᵀ + 1e_iᵀ)/2), with ‖c‖²/(ns²) < 1: ‖J‖∞ ≤ (2(n−1)/n + (1+√n)/2)/√ε. γ multiplies both by max|γ|.
 */
function normalizationNode(ctx: ConvertContext, n: number, eps: number, gamma: number | null, what: string): IrNode[] {
  const dyn = dynamicInputs(ctx);
  if (gamma === null || dyn.length !== 1) return productOfInputs(ctx, 'scales or shifts by an input-dependent tensor');
  if (ctx.outputs.slice(1).some((o) => o)) unsupported(ctx, 'its Mean/InvStdDev outputs are not supported (only Y)');
  if (!(eps > 0)) {
    return [{ kind: 'unbounded', reason: `divides by √(σ² + ε) with ε = ${eps}, unbounded for nearly constant ${what}`, derived: false, ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]) }];
  }
  const l2 = gamma / Math.sqrt(eps);
  const linf = (gamma * (2 * (n - 1) / n + (1 + Math.sqrt(n)) / 2)) / Math.sqrt(eps);
  return [{
    kind: 'lipschitz', fn: ctx.opType, l2: l2 * (1 + 1e-12), linf: linf * (1 + 1e-12),
    note: `warning: valid but huge: max|γ|/√ε = ${l2.toPrecision(4)} (ε = ${eps}); the true slope is max|γ|/σ, large only for nearly constant ${what}`,
    ...base(ctx, dyn, ctx.outputs[0], ctx.outShapes[0]),
  }];
}

const instanceNormalization: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) return productOfInputs(ctx, 'scales or shifts by an input-dependent tensor');
  return normalizationNode(ctx, Math.max(1, sizeOf(x.shape.slice(2))), ctx.attrs.float('epsilon', 1e-5), maxAbsScale(ctx, 1), 'channels');
};

const layerNormalization: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) return productOfInputs(ctx, 'scales or shifts by an input-dependent tensor');
  const r = x.shape.length;
  const a0 = ctx.attrs.int('axis', -1);
  const axis = a0 < 0 ? a0 + r : a0;
  return normalizationNode(ctx, Math.max(1, sizeOf(x.shape.slice(axis))), ctx.attrs.float('epsilon', 1e-5), maxAbsScale(ctx, 1), 'rows');
};

const groupNormalization: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) return productOfInputs(ctx, 'scales or shifts by an input-dependent tensor');
  const groups = ctx.attrs.int('num_groups', 1);
  if (!(groups >= 1) || x.shape[1] % groups !== 0) unsupported(ctx, `num_groups ${groups} must divide the ${x.shape[1]} channels`);
  const n = (x.shape[1] / groups) * Math.max(1, sizeOf(x.shape.slice(2)));
  return normalizationNode(ctx, n, ctx.attrs.float('epsilon', 1e-5), maxAbsScale(ctx, 1), 'groups');
};

/** Converters of normalisations: LRN (a derived constant) and the ε-bounded Instance/Layer/GroupNormalization. */
export const normalizationConverters = { lrn, instanceNormalization, layerNormalization, groupNormalization };
