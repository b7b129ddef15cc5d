import { createRequire } from 'node:module';
import type { Highs, InitOptions } from 'highs';
import { LipcheckError } from '../errors.js';

/**
 * Linear programs for the ReLU branch and bound (docs/algorithms-bab.md): HiGHS (the `highs` npm package, HiGHS compiled
 * to WebAssembly) finds interior points of activation regions; its answers are hints. An "empty" answer prunes only
 * through a Gordan certificate verified here in exact integer arithmetic (BigInt), so a solver's inaccuracy can keep a
 * node it could have pruned, never prune one it should have kept.
 */

type HighsRuntime = Highs;

let runtime: Promise<HighsRuntime> | null = null;
let solver: ReturnType<HighsRuntime['createModel']> | null = null;

/**
 * The `highs.wasm` file next to the loader, resolved through the package's own export map (`highs/runtime`) so that it is
 * found wherever npm put the package (a checkout, a global or tarball install, a nested node_modules).
 */
function wasmPath(): string {
  const req = createRequire(import.meta.url);
  return req.resolve('highs/runtime');
}

/** The HiGHS runtime, loaded once per process. */
export async function highs(): Promise<HighsRuntime> {
  runtime ??= (async () => {
    let path: string;
    try {
      path = wasmPath();
    } catch (e) {
      throw new LipcheckError('INTERNAL', `The HiGHS WebAssembly file (package 'highs', file highs.wasm) could not be located: ${(e as Error).message}. Reinstall lipcheck so its dependency 'highs' is present.`);
    }
    const load = ((await import('highs')) as unknown as { default: (o: InitOptions) => Promise<Highs> }).default;
    return load({ locateFile: (file: string) => (file.endsWith('.wasm') ? path : file) });
  })();
  try {
    return await runtime;
  } catch (e) {
    runtime = null;
    if (e instanceof LipcheckError) throw e;
    throw new LipcheckError('INTERNAL', `The HiGHS LP solver (package 'highs') failed to load its WebAssembly module: ${(e as Error).message}.`);
  }
}

/** A linear program in HiGHS's form: optimise colCost·x over colLower ≤ x ≤ colUpper and rowLower ≤ Ax ≤ rowUpper, A in CSR rows (±Infinity: no bound). */
export interface LinearProgram {
  readonly sense: 'max' | 'min';
  readonly colCost: Float64Array;
  readonly colLower: Float64Array;
  readonly colUpper: Float64Array;
  readonly rowLower: Float64Array;
  readonly rowUpper: Float64Array;
  readonly starts: Int32Array;
  readonly indices: Int32Array;
  readonly values: Float64Array;
}

/** An LP's optimum (a hint: its callers check or confirm what they use), or why there is none. */
export type LpAnswer =
  | { readonly optimal: true; readonly colValue: Float64Array; readonly rowDual: Float64Array }
  | { readonly optimal: false; readonly why: string };

/**
 * Solves `lp` on one HiGHS instance reused across calls (creating one per LP cost ~10× these small solves), cleared
 * first so no basis or solution carries over: each answer depends on its LP alone (determinism). `presolve` as HiGHS
 * names it ('choose' is its default). A HiGHS failure is an answer, never an exception.
 */
export async function solveLp(lp: LinearProgram, presolve: 'off' | 'choose'): Promise<LpAnswer> {
  const h = await highs();
  const inf = (a: Float64Array) => a.map((x) => (x === Infinity ? h.infinity : x === -Infinity ? -h.infinity : x));
  solver ??= h.createModel();
  try {
    solver.options.set({ output_flag: false, presolve });
    solver.clearModel();
    const numCols = lp.colCost.length, numRows = lp.rowLower.length;
    solver.passModel({
      numCols, numRows, sense: lp.sense === 'max' ? h.constants.objectiveSense.maximize : h.constants.objectiveSense.minimize,
      colCost: lp.colCost, colLower: inf(lp.colLower), colUpper: inf(lp.colUpper), rowLower: inf(lp.rowLower), rowUpper: inf(lp.rowUpper),
      matrix: { format: 'csr', numRows, numCols, starts: lp.starts, indices: lp.indices, values: lp.values },
    });
    solver.run();
    const status = solver.getModelStatus();
    if (status !== h.constants.modelStatus.optimal) return { optimal: false, why: `HiGHS model status ${status}` };
    const sol = solver.getSolution();
    return { optimal: true, colValue: sol.colValue, rowDual: sol.rowDual };
  } catch (e) {
    solver.dispose();
    solver = null;
    return { optimal: false, why: `HiGHS: ${(e as Error).message}` };
  }
}

/** What {@link maxMarginPoint} found: an interior point with its margin, an (unproved) empty interior with the LP's duals, or nothing usable. */
export type MarginResult =
  | { readonly status: 'interior'; readonly point: Float64Array; readonly margin: number }
  | { readonly status: 'empty'; readonly margin: number; readonly duals: Float64Array }
  | { readonly status: 'failed'; readonly why: string };

/** Margin below which an LP's optimum is read as "no interior point" (rows are normalised to ∞-norm 1). */
export const MARGIN_TOLERANCE = 1e-9;

/**
 * The homogeneous cone {v = (x, t) : g_i·v ≥ 0 for every row, t ≥ 0} (rows of length n + 1, t last): the LP
 *   max δ  s.t.  ĝ_i·v ≥ δ (ĝ_i = g_i/‖g_i‖∞),  t ≥ δ,  −1 ≤ x_j ≤ 1,  0 ≤ t ≤ 1,  −1 ≤ δ ≤ 1
 * has δ* > 0 exactly when the cone has a point with every g_i·v > 0 and t > 0 (scale it into the box). Returns that point
 * (a hint: the caller checks it) or, when δ* ≤ MARGIN_TOLERANCE, the duals of the rows (scaled back to the rows g_i) and of
 * the t row (last), from which {@link gordanCertificate} may recover a proof that no such point exists.
 */
export async function maxMarginPoint(rows: readonly Float64Array[], n: number): Promise<MarginResult> {
  const m = rows.length;
  const scale = rows.map((g) => {
    let s = 0;
    for (let c = 0; c <= n; c++) s = Math.max(s, Math.abs(g[c]));
    return s;
  });
  const starts = new Int32Array(m + 2);
  const indices: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < m; i++) {
    const g = rows[i], s = scale[i] || 1;
    for (let c = 0; c <= n; c++) if (g[c] !== 0) { indices.push(c); values.push(g[c] / s); }
    indices.push(n + 1); values.push(-1);
    starts[i + 1] = indices.length;
  }
  indices.push(n, n + 1); values.push(1, -1);
  starts[m + 1] = indices.length;
  const cols = n + 2;
  const colLower = new Float64Array(cols), colUpper = new Float64Array(cols), cost = new Float64Array(cols);
  for (let j = 0; j < n; j++) { colLower[j] = -1; colUpper[j] = 1; }
  colLower[n] = 0; colUpper[n] = 1;
  colLower[n + 1] = -1; colUpper[n + 1] = 1; cost[n + 1] = 1;
  const r = await solveLp({
    sense: 'max', colCost: cost, colLower, colUpper,
    rowLower: new Float64Array(m + 1), rowUpper: new Float64Array(m + 1).fill(Infinity),
    starts, indices: Int32Array.from(indices), values: Float64Array.from(values),
  }, 'off');
  if (!r.optimal) return { status: 'failed', why: r.why };
  const v = r.colValue;
  const margin = v[n + 1];
  if (margin > MARGIN_TOLERANCE) return { status: 'interior', point: Float64Array.from(v.subarray(0, n + 1)), margin };
  // a maximisation's row duals are ≤ 0 in HiGHS's convention: their magnitudes are the multipliers y ≥ 0
  const duals = new Float64Array(m + 1);
  for (let i = 0; i < m; i++) duals[i] = Math.abs(r.rowDual[i]) / (scale[i] || 1);
  duals[m] = Math.abs(r.rowDual[m]);
  return { status: 'empty', margin, duals };
}

// ---------------------------------------------------------------------------------------------------------------
// Gordan certificates in exact arithmetic

/** An exact dyadic vector: value_c = m[c]·2^e. */
export interface DyadicVec {
  readonly m: readonly bigint[];
  readonly e: number;
}

/** A certificate that no v has g_i·v > 0 for every row i of `support` and t > 0: integers y_i ≥ 0, not all 0. */
export interface GordanCertificate {
  readonly support: readonly number[];
  readonly y: readonly bigint[];
}

/**
 * Verifies a certificate exactly: with y_i ≥ 0, some y_i > 0 on a row that is not 0, s = Σ y_i g_i has x-part exactly 0 and t-part ≤ 0. Then no v
 * with every g_i·v > 0 (i in the support) and t > 0 exists: for it, 0 < Σ y_i g_i·v = s_t·t ≤ 0 (Gordan's theorem, the
 * easy direction). Integer arithmetic, no rounding: true means proved.
 */
export function verifyGordan(rows: readonly DyadicVec[], cert: GordanCertificate, n: number): boolean {
  if (cert.support.length !== cert.y.length || cert.support.length === 0) return false;
  if (cert.y.some((y) => y < 0n) || cert.y.every((y) => y === 0n)) return false;
  const used = cert.support.map((i) => rows[i]);
  if (used.some((r) => !r || r.m.length !== n + 1)) return false;
  // a row that is exactly 0 is satisfied by every v (not strictly): its multiplier proves nothing
  if (!cert.y.some((y, k) => y > 0n && used[k].m.some((v) => v !== 0n))) return false;
  const e0 = Math.min(...used.map((r) => r.e));
  const s = new Array<bigint>(n + 1).fill(0n);
  used.forEach((r, k) => {
    const shift = BigInt(r.e - e0);
    for (let c = 0; c <= n; c++) s[c] += (cert.y[k] * r.m[c]) << shift;
  });
  for (let c = 0; c < n; c++) if (s[c] !== 0n) return false;
  return s[n] <= 0n;
}

const absBig = (a: bigint) => (a < 0n ? -a : a);

/**
 * Recovers a Gordan certificate from an LP's approximate multipliers `hint` (≥ 0, one per row): the rows with a
 * multiplier above 1e-9 of the largest form the support; the exact null space of their x-parts (integer Gauss–Jordan) is
 * parametrised by its free columns, which take the hint's values (rounded to integers at 2^-40 of the largest); the
 * pivot columns then follow exactly. Returns the integer multipliers when {@link verifyGordan} accepts them, else null.
 */
export function gordanCertificate(rows: readonly DyadicVec[], hint: ArrayLike<number>, n: number): GordanCertificate | null {
  // first with the t-parts cancelling too (the region is a lower-dimensional set: the LP's multipliers are then
  // usually not unique, and a smaller null space pins them down), then with the x-parts only (t-part ≤ 0 checked)
  return solveGordan(rows, hint, n, n + 1) ?? solveGordan(rows, hint, n, n);
}

function solveGordan(rows: readonly DyadicVec[], hint: ArrayLike<number>, n: number, eqs: number): GordanCertificate | null {
  let top = 0;
  for (let i = 0; i < rows.length; i++) top = Math.max(top, hint[i]);
  if (!(top > 0)) return null;
  const support: number[] = [];
  for (let i = 0; i < rows.length; i++) if (hint[i] > 1e-9 * top) support.push(i);
  const k = support.length;
  // n equations (x-parts) in k unknowns, as integers at a common exponent
  const e0 = Math.min(...support.map((i) => rows[i].e));
  const a: bigint[][] = [];
  for (let c = 0; c < eqs; c++) a.push(support.map((i) => rows[i].m[c] << BigInt(rows[i].e - e0)));
  // fraction-free Gauss–Jordan (Bareiss): every division by the previous pivot is exact, entries stay minors of a
  const pivots: number[] = [];
  let r = 0, prev = 1n;
  for (let col = 0; col < k && r < eqs; col++) {
    let p = -1;
    for (let i = r; i < eqs; i++) if (a[i][col] !== 0n) { p = i; break; }
    if (p < 0) continue;
    [a[r], a[p]] = [a[p], a[r]];
    const pv = a[r][col];
    for (let i = 0; i < eqs; i++) {
      if (i === r) continue;
      const f = a[i][col];
      for (let j = 0; j < k; j++) a[i][j] = (a[i][j] * pv - a[r][j] * f) / prev;
    }
    prev = pv;
    pivots.push(col);
    r++;
  }
  const free = [...Array(k).keys()].filter((j) => !pivots.includes(j));
  if (!free.length) return null;
  const y = new Array<bigint>(k).fill(0n);
  for (const j of free) y[j] = BigInt(Math.round((hint[support[j]] / top) * 2 ** 40));
  // pivot row q: a[q][p]·y_p + Σ_free a[q][f]·y_f = 0; clear denominators by the product of |pivots|
  let den = 1n;
  pivots.forEach((p, q) => { den *= absBig(a[q][p]); });
  for (const j of free) y[j] *= den;
  pivots.forEach((p, q) => {
    let s = 0n;
    for (const f of free) s += a[q][f] * y[f];
    y[p] = -s / a[q][p];
  });
  const cert = { support, y };
  return verifyGordan(rows, cert, n) ? cert : null;
}
