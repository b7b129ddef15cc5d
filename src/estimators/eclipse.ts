import { roundUp, sqrtUp, transpose, tridiagonalLargestEigenvalue } from '../linalg/dense.js';
import { certifyFormedLmi, certifyLmi, cholesky, formLmi, lipSdpBound, lipSdpCertifyWork, lipSdpStepWork, solveLipSdp, type LipSdpProblem, type LipSdpSolution, type LmiPoint } from '../linalg/sdp.js';
import type { Segment } from './cp.js';
import type { Bound } from './kinds.js';
import { formSegmentProblem, lipsdpObstacle } from './lipsdp.js';
import type { NormSettings } from './operator-norm.js';

/**
 * ECLipsE (Xu & Sivaranjani, NeurIPS 2024) on sequential segments: a feasible point (ρ, t) of the LipSDP-Neuron LMI built
 * layer by layer from the block-tridiagonal structure (docs/algorithms-eclipse.md), then certified exactly as LipSDP's
 * (sdp.ts certifyLipSdp: Cholesky of the full F(ρ, t) with the derived rounding margin, ρ raised until proved).
 *
 * Stage h (hidden layer h, after W_{h−1}) holds X_{h−1} ≻ 0, the Schur complement of the LMI's leading blocks with ρ = 1,
 * and picks the multipliers T_h; then S_{h−1} = X_{h−1} + 2α_hβ_h·W_{h−1}ᵀT_hW_{h−1} and
 * X_h = 2T_h − (α_h + β_h)²·T_hW_{h−1}S_{h−1}⁻¹W_{h−1}ᵀT_h. At the end ρ = λ_max(W_lX_l⁻¹W_lᵀ) and t = ρ·(T_1, …, T_l).
 * A stage's T_h: ECLipsE-Fast's closed form λ·I (λ = 1/(κ·λ_max(W_{h−1}X_{h−1}⁻¹W_{h−1}ᵀ)), κ = (α+β)² + 2·max(0, −2αβ)),
 * refined by a scan of λ; or ECLipsE's stage SDP — a one-hidden-layer LipSDP-Neuron on (W_{h−1}L⁻ᵀ, W_h), X_{h−1} = LLᵀ,
 * solved by sdp.ts's interior point where its work fits — whichever makes λ_max(W_hX_h⁻¹W_hᵀ) (ECLipsE's stage
 * objective 1/s) smaller.
 */

/** Work budgets (multiply-adds, counted, never timed): best and sdp; a stage SDP runs where STAGE_STEPS iterations fit. */
export const ECLIPSE_DEFAULTS = { bestWork: 4.5e9, sdpWork: 1e11 } as const;
/** Interior-point iterations a stage SDP is charged for before it starts (6–17 on random nets; it stops when the work left is spent, its point still feasible). */
const STAGE_STEPS = 15;
/** The λ scan of a Fast stage: the closed form times 2^{k/2}, k = −SCAN..SCAN. */
const SCAN = 4;
/** Lanczos steps for the largest eigenvalue of a symmetric Gram matrix (full reorthogonalisation). */
const LANCZOS = 60;
/** Certification attempts (each one Cholesky factorisation of the full LMI). */
const CERTIFY_TRIES = 16;

/** Options of eclipseBound and eclipseSegmentBound. */
export interface EclipseOptions {
  /** Multiply-adds for the whole construction (stage SDPs take what is left after the closed forms); default ECLIPSE_DEFAULTS.sdpWork. */
  readonly work?: number;
  /** Solve stage SDPs where they fit (default true); false: ECLipsE-Fast only. */
  readonly stageSdp?: boolean;
  /** Warm start: run sdp.ts's full LipSDP-Neuron interior point from ECLipsE's point with at most this many multiply-adds (default 0: off). */
  readonly warmWork?: number;
  /** Certification attempts (each a Cholesky factorisation of the full LMI), reserved out of `work` (default CERTIFY_TRIES). */
  readonly certifyTries?: number;
}

/** The certified result on a matrix problem. */
export interface EclipseBound {
  /** Certified: sup over the slope box of ‖W_l D_l ⋯ D_1 W_0‖₂ ≤ value (for the float64 W). */
  readonly value: number;
  /** √ρ of the construction before certification (what the certificate aimed at). */
  readonly estimate: number;
  /** 'eclipse' when a stage SDP was used, 'eclipse-fast' when every stage took the closed form; '+lipsdp' after a warm-started solve. */
  readonly method: string;
  /** Stages solved by an SDP / by the closed form. */
  readonly sdpStages: number;
  readonly fastStages: number;
  readonly newtonSteps: number;
  /** Multiply-adds spent (construction, stage solves, certificate). */
  readonly work: number;
}

/** Lower Cholesky factor of a symmetric n×n matrix (row-major copy), or null when not positive definite. */
function factor(a: Float64Array, n: number): Float64Array | null {
  const l = Float64Array.from(a);
  if (cholesky(l, n) === null) return null;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) l[i * n + j] = 0;
  return l;
}

/** Y = L⁻¹·B for lower-triangular L (n×n) and B (n×m), row-major. */
function lowerSolve(l: Float64Array, n: number, b: Float64Array, m: number): Float64Array {
  const y = Float64Array.from(b);
  for (let i = 0; i < n; i++) {
    const oi = i * m;
    for (let k = 0; k < i; k++) {
      const c = l[i * n + k];
      if (c === 0) continue;
      const ok = k * m;
      for (let j = 0; j < m; j++) y[oi + j] -= c * y[ok + j];
    }
    const d = 1 / l[i * n + i];
    for (let j = 0; j < m; j++) y[oi + j] *= d;
  }
  return y;
}

/** YᵀY (m×m) for Y n×m row-major. */
function gramCols(y: Float64Array, n: number, m: number): Float64Array {
  const g = new Float64Array(m * m);
  for (let i = 0; i < n; i++) {
    const oi = i * m;
    for (let a = 0; a < m; a++) {
      const v = y[oi + a];
      if (v === 0) continue;
      const oa = a * m;
      for (let b = 0; b <= a; b++) g[oa + b] += v * y[oi + b];
    }
  }
  for (let a = 0; a < m; a++) for (let b = 0; b < a; b++) g[b * m + a] = g[a * m + b];
  return g;
}

/** YYᵀ (n×n) for Y n×m row-major. */
function gramRows(y: Float64Array, n: number, m: number): Float64Array {
  const g = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let b = 0; b <= a; b++) {
    let s = 0;
    for (let j = 0; j < m; j++) s += y[a * m + j] * y[b * m + j];
    g[a * n + b] = s;
    g[b * n + a] = s;
  }
  return g;
}

/** λ_max of a symmetric PSD m×m matrix by Lanczos with full reorthogonalisation from a fixed start (an estimate from below). */
function lambdaMax(g: Float64Array, m: number): number {
  const steps = Math.min(m, LANCZOS);
  const q: Float64Array[] = [];
  const alpha = new Float64Array(steps), beta = new Float64Array(steps);
  let v = new Float64Array(m);
  for (let i = 0; i < m; i++) v[i] = 1 + 0.5 * Math.sin(1.3 * i + 0.7);
  let vn = Math.hypot(...v);
  v = v.map((x) => x / vn);
  let k = 0;
  for (; k < steps; k++) {
    q.push(v);
    const u = new Float64Array(m);
    for (let i = 0; i < m; i++) { let s = 0; const oi = i * m; for (let j = 0; j < m; j++) s += g[oi + j] * v[j]; u[i] = s; }
    let a = 0;
    for (let i = 0; i < m; i++) a += u[i] * v[i];
    alpha[k] = a;
    for (let pass = 0; pass < 2; pass++) for (const qq of q) { let c = 0; for (let i = 0; i < m; i++) c += u[i] * qq[i]; for (let i = 0; i < m; i++) u[i] -= c * qq[i]; }
    vn = 0;
    for (let i = 0; i < m; i++) vn += u[i] * u[i];
    vn = Math.sqrt(vn);
    if (k + 1 === steps || !(vn > 1e-13 * (Math.abs(a) + 1e-300))) { k++; break; }
    beta[k] = vn;
    v = u.map((x) => x / vn);
  }
  return tridiagonalLargestEigenvalue(alpha, beta, k);
}

/** λ_max(W·L⁻ᵀL⁻¹·Wᵀ) for W rows×cols and L the cols×cols Cholesky factor: the squared norm of L⁻¹Wᵀ, on its smaller Gram. */
function normThrough(l: Float64Array, w: Float64Array, rows: number, cols: number): { value: number; work: number } {
  const y = lowerSolve(l, cols, transpose(w, rows, cols), rows);
  const g = rows <= cols ? gramCols(y, cols, rows) : gramRows(y, cols, rows);
  const m = Math.min(rows, cols);
  return { value: lambdaMax(g, m), work: (cols * cols * rows) / 2 + (cols * m * m) / 2 + Math.min(m, LANCZOS) * (m * m + 2 * m * LANCZOS) };
}

/** One stage's outcome for given multipliers: X_h and its factor, the stage objective λ_max(W_hX_h⁻¹W_hᵀ), the work. */
interface StageState { readonly t: Float64Array; readonly x: Float64Array; readonly lx: Float64Array; readonly score: number; readonly work: number }

/**
 * X_h = 2T − c²·T·W·S⁻¹·Wᵀ·T with S = X + p·WᵀTW (p = 2αβ, c = α + β; W = W_{h−1}, n_h×n_{h−1}), factored, and the
 * objective against the next layer `next` (W_h); null when S or X_h is not (numerically) positive definite.
 */
function stage(x: Float64Array, lx: Float64Array, w: Float64Array, nh: number, nprev: number, slope: readonly [number, number], t: Float64Array, next: { w: Float64Array; rows: number }, known?: Float64Array): StageState | null {
  const [alpha, beta] = slope;
  const p = 2 * alpha * beta, c = alpha + beta;
  let work = 0;
  let g = known;
  if (!g || p !== 0) {
    let ls = lx;
    if (p !== 0) {
      const s = Float64Array.from(x);
      for (let r = 0; r < nh; r++) {
        const f = p * t[r];
        if (f === 0) continue;
        for (let a = 0; a < nprev; a++) {
          const va = f * w[r * nprev + a];
          if (va === 0) continue;
          for (let b = 0; b < nprev; b++) s[a * nprev + b] += va * w[r * nprev + b];
        }
      }
      work += nh * nprev * nprev + nprev ** 3 / 6;
      const f = factor(s, nprev);
      if (!f) return null;
      ls = f;
    }
    const y = lowerSolve(ls, nprev, transpose(w, nh, nprev), nh);
    g = gramCols(y, nprev, nh);
    work += (nprev * nprev * nh) / 2 + (nprev * nh * nh) / 2;
  }
  const xh = new Float64Array(nh * nh);
  const c2 = c * c;
  for (let a = 0; a < nh; a++) for (let b = 0; b < nh; b++) xh[a * nh + b] = -c2 * t[a] * g[a * nh + b] * t[b];
  for (let a = 0; a < nh; a++) xh[a * nh + a] += 2 * t[a];
  const lxh = factor(xh, nh);
  work += nh * nh + nh ** 3 / 6;
  if (!lxh) return null;
  const obj = normThrough(lxh, next.w, next.rows, nh);
  work += obj.work;
  if (!(obj.value > 0) || !Number.isFinite(obj.value)) return null;
  return { t, x: xh, lx: lxh, score: obj.value, work };
}

/** K = W·X⁻¹·Wᵀ (n_h×n_h) from X's factor. */
function throughGram(lx: Float64Array, w: Float64Array, nh: number, nprev: number): Float64Array {
  return gramCols(lowerSolve(lx, nprev, transpose(w, nh, nprev), nh), nprev, nh);
}

/**
 * ECLipsE's construction on a LipSDP problem: a point (ρ, t) that satisfies F(ρ, t) ⪰ 0 up to rounding (the certificate
 * decides), as a LipSdpSolution whose path holds it with ρ and t raised together by 1 + ε (ε = 10⁻⁶ … 10⁻¹), the way
 * certifyLipSdp expects. Stage SDPs share `work` (multiply-adds) in order; the closed forms always run.
 */
export function eclipseConstruct(p: LipSdpProblem, opts: { work?: number; stageSdp?: boolean } = {}): LipSdpSolution & { sdpStages: number; fastStages: number; rho: number } {
  const fast = constructPass(p, Infinity, new Set());
  const left = (opts.work ?? ECLIPSE_DEFAULTS.sdpWork) - fast.work;
  // no stage SDP fits what is left: the second pass would repeat the first
  if (opts.stageSdp === false || !p.layers.slice(0, -1).some((w, h) => stageSdpWork(w.rows, w.cols, p.layers[h + 1].rows, p.slopes[h]) <= left)) return fast;
  // the stage SDPs optimise each stage greedily (ECLipsE's objective: the next layer's bound), which can end above
  // ECLipsE-Fast's chain (rpd_gcas): both are built and the smaller ρ kept; the certificate checks that one
  // which stages get an SDP is decided up front, cheapest first, so that one wide stage cannot take the budget of many
  // narrow ones (tll_n2_N16_1_0: 5 narrow stages give 521.5, one wide one 756.0)
  const charges = p.layers.slice(0, -1).map((w, h) => ({ h: h + 1, c: stageSdpWork(w.rows, w.cols, p.layers[h + 1].rows, p.slopes[h]) })).sort((a, b) => a.c - b.c || a.h - b.h);
  const plan = new Set<number>();
  let planned = 0;
  for (const { h, c } of charges) if (planned + c <= left) { plan.add(h); planned += c; }
  const staged = constructPass(p, left, plan, fast.closed);
  const work = fast.work + staged.work;
  return staged.rho < fast.rho ? { ...staged, work } : { ...fast, work, newtonSteps: staged.newtonSteps };
}

/** What a stage SDP is charged before it starts: STAGE_STEPS iterations of the one-hidden-layer LMI (n_h units, min(n_{h−1}, n_h) inputs). */
function stageSdpWork(nh: number, nprev: number, nnext: number, slope: readonly [number, number]): number {
  return STAGE_STEPS * lipSdpStepWork({ layers: [{ w: new Float64Array(0), rows: nh, cols: Math.min(nh, nprev) }, { w: new Float64Array(0), rows: nnext, cols: nh }], slopes: [slope] });
}

/** One layer-by-layer pass: closed forms (scanned), and stage SDPs at the stages `sdpAt` where `budget` (multiply-adds) still covers them. */
function constructPass(p: LipSdpProblem, budget: number, sdpAt: ReadonlySet<number>, prefix?: readonly (StageState | null)[]): LipSdpSolution & { sdpStages: number; fastStages: number; rho: number; closed: (StageState | null)[] } {
  const layers = p.layers, l = layers.length - 1;
  let nprev = layers[0].cols;
  let x: Float64Array<ArrayBufferLike> = new Float64Array(nprev * nprev);
  for (let i = 0; i < nprev; i++) x[i * nprev + i] = 1;
  let lx: Float64Array<ArrayBufferLike> = Float64Array.from(x);
  const ts: Float64Array[] = [];
  let work = 0, steps = 0, sdpStages = 0, fastStages = 0, score = NaN;
  const closed: (StageState | null)[] = [];
  for (let h = 1; h <= l; h++) {
    const w = layers[h - 1].w, nh = layers[h - 1].rows, next = layers[h], slope = p.slopes[h - 1];
    // while every stage so far took the closed form, this pass is where `prefix` (the closed-form pass) was: reuse its stage
    const reuse = prefix && sdpStages === 0 ? prefix[h - 1] : undefined;
    // ECLipsE-Fast's λ, then a walk over λ·2^{k/2} (|k| ≤ SCAN) while the stage objective falls
    const closedForm = (): { best: StageState | null; known: Float64Array | undefined } => {
      const [alpha, beta] = slope;
      const pq = 2 * alpha * beta, c = alpha + beta;
      // X_0 = I: K = W_0W_0ᵀ directly
      const k0 = h === 1 ? gramRows(w, nh, nprev) : throughGram(lx, w, nh, nprev);
      work += (h === 1 ? 0 : (nprev * nprev * nh) / 2) + (nprev * nh * nh) / 2;
      const g = lambdaMax(k0, nh);
      const kappa = c * c + 2 * Math.max(0, -pq);
      const lambda0 = 1 / ((kappa > 0 ? kappa : 1) * (g > 0 ? g : 1));
      const known = pq === 0 ? k0 : undefined;
      const at = (k: number): StageState | null => {
        const st = stage(x, lx, w, nh, nprev, slope, new Float64Array(nh).fill(lambda0 * 2 ** (k / 2)), { w: next.w, rows: next.rows }, known);
        if (st) work += st.work;
        return st;
      };
      let best = at(0);
      for (const dir of [1, -1]) {
        let moved = false;
        for (let k = dir; Math.abs(k) <= SCAN; k += dir) {
          const st = at(k);
          if (!st || (best && st.score >= best.score)) break;
          best = st;
          moved = true;
        }
        if (moved) break;
      }
      return { best, known };
    };
    let best: StageState | null;
    let known: Float64Array | undefined;
    if (reuse !== undefined) best = reuse;
    else ({ best, known } = closedForm());
    closed.push(best);
    let usedSdp = false;
    if (sdpAt.has(h)) {
      // the stage as a one-hidden-layer LipSDP-Neuron: input block X_{h−1} = LLᵀ congruent to I, W_{h−1} → W_{h−1}L⁻ᵀ
      const charge = stageSdpWork(nh, nprev, next.rows, slope);
      if (charge <= budget - work) {
        const wt = h === 1 ? w : transpose(lowerSolve(lx, nprev, transpose(w, nh, nprev), nh), nprev, nh);
        // at most four times its charge (a stage stopped early still hands over a strictly feasible point)
        const sol = solveLipSdp({ layers: [{ w: wt, rows: nh, cols: nprev }, next], slopes: [slope] }, { variant: 'neuron', maxWork: Math.min(budget - work, 4 * charge) });
        work += sol.work + (nprev * nprev * nh) / 2;
        steps += sol.newtonSteps;
        const t = sol.point.t.map((v) => Math.max(0, v) / sol.point.rho);
        const st = stage(x, lx, w, nh, nprev, slope, t, { w: next.w, rows: next.rows }, known);
        if (st) work += st.work;
        if (st && (!best || st.score < best.score)) { best = st; usedSdp = true; }
      }
    }
    // no multipliers made X_h positive definite (numerically): no point from ECLipsE
    if (!best) return { point: { rho: Infinity, t: new Float64Array(0) }, path: [], newtonSteps: steps, work, converged: false, sdpStages, fastStages, rho: Infinity, closed };
    if (usedSdp) sdpStages++; else fastStages++;
    ts.push(best.t);
    x = best.x;
    lx = best.lx;
    nprev = nh;
    score = best.score;
  }
  // F(ρ, ρ·T) = ρ·F(1, T) + (ρ − 1)·… : with every stage's T fixed, ρ = λ_max(W_lX_l⁻¹W_lᵀ) closes the last block;
  // raised with t by 1 + ε the matrix is strictly definite (docs/algorithms-eclipse.md §3)
  const rho = score;
  const units = ts.reduce((a, t) => a + t.length, 0);
  const path: LmiPoint[] = [];
  for (const eps of [1e-6, 1e-4, 1e-2, 1e-1]) {
    const r = roundUp(rho * (1 + eps), 2);
    const t = new Float64Array(units);
    let u = 0;
    for (const th of ts) for (const v of th) t[u++] = v * r;
    path.push({ rho: r, t });
  }
  return { point: path[0], path, newtonSteps: steps, work, converged: true, sdpStages, fastStages, rho, closed };
}

/**
 * Certified ECLipsE bound on sup_D ‖W_l D_l ⋯ D_1 W_0‖₂ for a matrix problem: lipSdpBound's scaling, constant-unit
 * dropping, balancing and certificate around eclipseConstruct. With warmWork > 0 the full LipSDP-Neuron interior point
 * then starts from ECLipsE's point (sdp.ts's `start`), and the smaller certified value is kept. Null when nothing was proved.
 */
export function eclipseBound(problem: LipSdpProblem, opts: EclipseOptions = {}): EclipseBound | null {
  let info = { sdpStages: 0, fastStages: 0, rho: NaN };
  const tries = opts.certifyTries ?? CERTIFY_TRIES;
  const res = lipSdpBound(problem, {
    variant: 'neuron',
    certifyTries: tries,
    certify: certifyLmiReduced,
    solve: (scaled) => {
      // the certificate's factorisations are reserved out of the budget; the stage SDPs get what the closed forms leave
      const c = eclipseConstruct(scaled, { ...opts, work: (opts.work ?? ECLIPSE_DEFAULTS.sdpWork) - tries * eclipseCertifyWork(scaled) });
      info = c;
      return c;
    },
  });
  const method = info.sdpStages > 0 ? 'eclipse' : 'eclipse-fast';
  let out: EclipseBound | null = res ? { value: res.value, estimate: res.estimate, method, sdpStages: info.sdpStages, fastStages: info.fastStages, newtonSteps: res.newtonSteps, work: res.work } : null;
  if (opts.warmWork && opts.warmWork > 0) {
    let extra = 0;
    const warm = lipSdpBound(problem, {
      variant: 'neuron',
      maxWork: opts.warmWork,
      solve: (scaled) => {
        const c = eclipseConstruct(scaled, opts);
        extra = c.work;
        const sol = c.path.length ? solveLipSdp(scaled, { variant: 'neuron', start: c.path[c.path.length - 1], maxWork: opts.warmWork }) : solveLipSdp(scaled, { variant: 'neuron', maxWork: opts.warmWork });
        return { ...sol, work: sol.work + extra };
      },
    });
    if (warm && (!out || warm.value < out.value)) out = { value: warm.value, estimate: warm.estimate, method: `${method}+lipsdp`, sdpStages: info.sdpStages, fastStages: info.fastStages, newtonSteps: warm.newtonSteps, work: (out?.work ?? 0) + warm.work };
    else if (out && warm) out = { ...out, work: out.work + warm.work };
  }
  return out;
}

/**
 * certifyLmi's statement, F(ρ, t) ⪰ 0, proved on a smaller matrix where the input block can be eliminated exactly: when
 * α_1β_1 = 0 the input block of F is ρI and its only coupling is B = −c_1W_0ᵀT_1 (block (0, 1)), so for ρ > 0
 * F ⪰ 0 ⇔ F' ⪰ 0, F' = F without its input block and with A_1 − BᵀB/ρ = A_1 − (c_1²/ρ)·T_1W_0W_0ᵀT_1 in block (1, 1)
 * (Schur complement of ρI ≻ 0). F' is formed as formLmi of the problem from W_1 on (ρ := 0 there), plus 2T_1 and minus
 * that term; each entry of the term, (c²/ρ)·t_i·t_j·Σ_k w_ik w_jk, is within γ_{n_0+6} of its absolute value H_ij, and
 * ‖H‖_F ≤ (c²/ρ)·‖T_1|W_0|‖_F², so the entries of F̂' are within γ_q·(|F_sub|_abs + 2T_1 + H) with q = max(p, n_0 + 8) + 2
 * (docs/algorithms-eclipse.md §4); certifyFormedLmi then runs certifyLmi's Cholesky proof on the N − n_0 matrix.
 * Elsewhere (α_1β_1 ≠ 0, or n_0 ≤ n_1 where nothing is saved) it is certifyLmi itself.
 */
export function certifyLmiReduced(problem: LipSdpProblem, point: LmiPoint): boolean {
  const [a1, b1] = problem.slopes[0];
  const w0 = problem.layers[0];
  if (a1 * b1 !== 0 || w0.cols <= w0.rows) return certifyLmi(problem, point);
  for (let i = 0; i < point.t.length; i++) if (!(point.t[i] >= 0)) return false;
  if (!(point.rho > 0) || !Number.isFinite(point.rho)) return false;
  const n1 = w0.rows, n0 = w0.cols;
  const sub: LipSdpProblem = { layers: problem.layers.slice(1), slopes: problem.slopes.slice(1) };
  const { f, n, absF, terms } = formLmi(sub, { rho: 0, t: point.t.subarray(n1) });
  const c = a1 + b1, k = (c * c) / point.rho, t = point.t;
  let tw = 0, t2 = 0;
  for (let i = 0; i < n1; i++) {
    const ri = i * n0;
    let rn = 0;
    for (let q = 0; q < n0; q++) rn += w0.w[ri + q] * w0.w[ri + q];
    tw += t[i] * t[i] * rn;
    t2 += t[i] * t[i];
    for (let j = 0; j <= i; j++) {
      const rj = j * n0;
      let g = 0;
      for (let q = 0; q < n0; q++) g += w0.w[ri + q] * w0.w[rj + q];
      const v = k * t[i] * t[j] * g;
      f[i * n + j] -= v;
      if (j !== i) f[j * n + i] -= v;
    }
    f[i * n + i] += 2 * t[i];
  }
  const abs = roundUp(absF + 2 * sqrtUp(roundUp(t2, n1 + 1)) + roundUp(k * tw, n0 + 8), 4);
  if (!Number.isFinite(abs)) return false;
  return certifyFormedLmi(f, n, abs, Math.max(terms, n0 + 8) + 2);
}

/** Multiply-adds of one certifyLmiReduced attempt (the same as lipSdpCertifyWork where it falls back). */
export function eclipseCertifyWork(p: LipSdpProblem): number {
  const w0 = p.layers[0];
  if (p.slopes[0][0] * p.slopes[0][1] !== 0 || w0.cols <= w0.rows) return lipSdpCertifyWork(p);
  const n = p.layers.slice(0, -1).reduce((a, w) => a + w.rows, 0);
  let formed = (w0.rows * w0.rows * w0.cols) / 2;
  for (let h = 2; h < p.layers.length; h++) formed += (p.layers[h - 1].rows * p.layers[h - 1].cols ** 2) / 2;
  return formed + n ** 3 / 6 + n * n;
}

/** Multiply-adds of ECLipsE-Fast's construction on a problem of these sizes (the closed forms, the scan at its widest; no stage SDP, no certificate). */
export function eclipseFastWork(p: LipSdpProblem): number {
  // the same counts as constructPass charges: K = W·X⁻¹·Wᵀ and its λ_max, then per λ tried (the walk: k = 0, one step the
  // wrong way, SCAN the right way) X_h, its factor and the stage objective (S and its factor too when αβ ≠ 0)
  const lanczos = (m: number) => Math.min(m, LANCZOS) * (m * m + 2 * m * LANCZOS);
  let w = 0;
  for (let h = 1; h < p.layers.length; h++) {
    const nh = p.layers[h - 1].rows, np = p.layers[h - 1].cols, nx = p.layers[h].rows, m = Math.min(nh, nx);
    const through = (np * np * nh) / 2 + (np * nh * nh) / 2;
    const one = nh * nh + nh ** 3 / 6 + (nh * nh * nx) / 2 + (nh * m * m) / 2 + lanczos(m) + (p.slopes[h - 1][0] * p.slopes[h - 1][1] !== 0 ? nh * np * np + np ** 3 / 6 + through : 0);
    w += through + lanczos(nh) + (SCAN + 2) * one;
  }
  return w;
}

/** The result of eclipseSegmentBound. */
export interface EclipseResult {
  readonly upper: Bound | null;
  readonly estimate: number | null;
  readonly work: number;
  readonly sdpStages: number;
  readonly fastStages: number;
  readonly notes: readonly string[];
  readonly ms: number;
}

/**
 * ECLipsE on a sequential segment (ℓ2): the operators' float64 matrices as LipSDP forms them (formSegmentProblem), the
 * construction certified by eclipseBound, and the distance to the exact operators added (`cross`, as lipsdp.ts).
 * Runs when the closed forms and the certificate fit `work`; stage SDPs take what is left.
 */
export async function eclipseSegmentBound(segment: Segment, settings: NormSettings, opts: EclipseOptions = {}): Promise<EclipseResult> {
  const t0 = performance.now();
  const empty = (why: string): EclipseResult => ({ upper: null, estimate: null, work: 0, sdpStages: 0, fastStages: 0, notes: [why], ms: performance.now() - t0 });
  const obstacle = lipsdpObstacle(segment, settings);
  if (obstacle) return empty(`No ECLipsE bound for ${segment.id}: ${obstacle.replace('LipSDP', 'ECLipsE')}.`);
  const work = opts.work ?? ECLIPSE_DEFAULTS.sdpWork;
  const shape: LipSdpProblem = { layers: segment.regions.map((r) => ({ w: new Float64Array(0), rows: r.outShape.reduce((a, b) => a * b, 1), cols: r.inShape.reduce((a, b) => a * b, 1) })), slopes: segment.activations.map((a) => a.slope) };
  // the closed forms and at least three certification attempts must fit; further attempts (up to CERTIFY_TRIES) as the work allows
  const construct = eclipseFastWork(shape), certify = eclipseCertifyWork(shape);
  const need = construct + 3 * certify;
  if (need > work) return empty(`No ECLipsE bound for ${segment.id}: its closed-form stages and certificate need about ${Math.ceil((2 * need) / 1e6)} Mflop, over the ${Math.floor((2 * work) / 1e6)} Mflop this segment was given.`);
  const { problem, cross } = await formSegmentProblem(segment, settings);
  const res = eclipseBound(problem, { ...opts, work, certifyTries: opts.certifyTries ?? Math.min(CERTIFY_TRIES, Math.floor((work - construct) / certify)) });
  if (!res) return { ...empty(`ECLipsE on ${segment.id}: no certificate succeeded at its point; no bound from it.`), work: need };
  return {
    upper: { value: roundUp(res.value + cross, 1), kind: 'certified', method: res.method },
    estimate: res.estimate,
    work: res.work,
    sdpStages: res.sdpStages,
    fastStages: res.fastStages,
    notes: [],
    ms: performance.now() - t0,
  };
}
