import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from 'ml-matrix';
import { LipcheckError } from '../errors.js';
import type { LinearOperator } from '../ir/operator.js';
import { dot, Random } from './random.js';

/** The products of a linear map that the iterative route needs: a LinearOperator, or a plain object in tests. */
export type MatrixFreeOperator = Pick<LinearOperator, 'inSize' | 'outSize' | 'apply' | 'adjoint'>;

/** The top singular triplets of an operator, A·v_i ≈ σ_i·u_i and Aᵀ·u_i ≈ σ_i·v_i, largest first. */
export interface SingularTriplets {
  /** σ_1 ≥ σ_2 ≥ … ≥ σ_k (k = min(requested, inSize, outSize)). */
  readonly values: readonly number[];
  /** Left singular vectors u_i (length outSize), orthonormal. */
  readonly left: readonly Float64Array[];
  /** Right singular vectors v_i (length inSize), orthonormal. */
  readonly right: readonly Float64Array[];
  /** Estimate of σ_{k+1}: exact on the dense route, a Ritz value (from below) on the iterative one; 0 when k ≥ min(inSize, outSize). */
  readonly next: number;
  /** max_i ‖A·v_i − σ_i·u_i‖ for the returned triplets, last measured (0 on the dense route). */
  readonly residual: number;
  readonly iterations: number;
  /** False when the iteration stopped on its cycle or product limit before the tolerance was met. */
  readonly converged: boolean;
  /** Products with A or Aᵀ taken (0 on the dense route): the work the caller's budget is charged. */
  readonly products: number;
  readonly method: 'block-krylov' | 'dense-svd';
}

/** Options of the iterative route. */
export interface TopSingularOptions {
  /** Seed of the Gaussian start block (it changes the iterations needed, not what they converge to). */
  readonly seed: number;
  /** Extra vectors carried beyond k in each block (default max(4, ⌈k/2⌉)): they speed convergence. */
  readonly oversample?: number;
  /** Most Krylov cycles (default 100); each applies A and Aᵀ up to 4 times per vector of the block. */
  readonly maxIterations?: number;
  /**
   * Stop once every residual ‖A·v_i − σ_i·u_i‖ (i ≤ k) is ≤ tol·σ_1, or once no Ritz value σ_1…σ_{k+1} moved by more than
   * tol·σ_1/10 in one round: clustered values (convolutions) converge long before their vectors do (default 1e-4).
   */
  readonly tol?: number;
  /**
   * Stop (unconverged) at the end of the first cycle whose products with A or Aᵀ reach this count (default: no limit):
   * a budget counted in work, so where it stops is the same on every run.
   */
  readonly maxProducts?: number;
}

/**
 * Orthonormalises cols[from..] in place against cols[0..from) and each other by classical Gram–Schmidt, repeated once
 * when it cancelled most of a column ("twice is enough": Giraud, Langou, Rozložník & van den Eshof 2005); cols[0..from)
 * must be orthonormal already. A column that cancels to below 1e-10 of its norm is replaced by a random vector, so the
 * basis keeps its size.
 */
function orthonormalize(cols: Float64Array[], rng: Random, from = 0): void {
  for (let j = from; j < cols.length; j++) {
    const w = cols[j];
    let before = Math.sqrt(dot(w, w));
    for (let attempt = 0; ; attempt++) {
      let after = before;
      for (let pass = 0; pass < 2; pass++) {
        const start = after;
        for (let i = 0; i < j; i++) {
          const q = cols[i], c = dot(w, q);
          for (let t = 0; t < w.length; t++) w[t] -= c * q[t];
        }
        after = Math.sqrt(dot(w, w));
        // a second pass only when the first cancelled most of the vector (Daniel, Gragg, Kaufman & Stewart 1976)
        if (after > 0.7 * start) break;
      }
      if (after > 1e-10 * before && after > 0) {
        for (let t = 0; t < w.length; t++) w[t] /= after;
        break;
      }
      if (attempt >= 3) throw new LipcheckError('INTERNAL', `orthonormalize: could not complete a basis of ${cols.length} vectors in dimension ${w.length}.`);
      w.set(rng.unitVector(w.length));
      before = 1;
    }
  }
}

/** The p×p matrix as an ml-matrix Matrix, entries c(i, j). */
function matrixOf(p: number, q: number, c: (i: number, j: number) => number): Matrix {
  const m = new Matrix(p, q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) m.set(i, j, c(i, j));
  return m;
}

/** Σ_j c_j·basis_j for the columns of a small matrix: the Ritz vectors of one Rayleigh–Ritz step. */
function combine(basis: readonly Float64Array[], coeffs: Matrix, column: number): Float64Array {
  const out = new Float64Array(basis[0].length);
  for (let j = 0; j < basis.length; j++) {
    const c = coeffs.get(j, column);
    if (c === 0) continue;
    const b = basis[j];
    for (let t = 0; t < out.length; t++) out[t] += c * b[t];
  }
  return out;
}

/** Most float64 entries one Krylov basis may hold (32 MiB); deeper bases are cut to fit. */
const BASIS_ENTRIES = 2 ** 22;

/** Applies `f` to each vector, failing clearly on a non-finite result (a float32 overflow). */
async function applyAll(vectors: readonly Float64Array[], f: (v: Float64Array) => Promise<Float64Array>, cycle: number): Promise<Float64Array[]> {
  const out: Float64Array[] = [];
  for (const v of vectors) {
    const y = await f(v);
    if (!y.every(Number.isFinite)) throw new LipcheckError('UNSUPPORTED', `Applying the operator gave non-finite values in Krylov cycle ${cycle}: its weights overflow float32, so they are too large to analyse. Check the model's weights.`);
    out.push(y);
  }
  return out;
}

/**
 * Top-k singular triplets of a matrix-free operator by restarted block Krylov iteration (block Lanczos with full
 * reorthogonalisation; Musco & Musco, NeurIPS 2015; Golub & Van Loan §10.3): each cycle builds the orthonormal basis Q of
 * [A·V, (AAᵀ)·A·V, …, (AAᵀ)^q·A·V] from the p current right vectors V (the Aᵀ products it needs give W = AᵀQ for free
 * but one block), then a Rayleigh–Ritz step on B = QᵀA = Wᵀ through WᵀW = X·Σ²·Xᵀ: u = Q·X, v = W·X/σ, and the top p
 * right Ritz vectors restart the next cycle. Vectors are kept in float64. The values are estimates from below
 * (σ_i(QᵀA) ≤ σ_i(A)); nothing here is certified (ALGORITHMS.md §4, "large layers").
 */
export async function topSingularTriplets(op: MatrixFreeOperator, k: number, opts: TopSingularOptions): Promise<SingularTriplets> {
  if (!Number.isInteger(k) || k < 1) throw new LipcheckError('USAGE', `The number of singular triplets must be a positive integer; got ${k}.`);
  const n = op.inSize, m = op.outSize, rank = Math.min(n, m);
  const kk = Math.min(k, rank);
  const p = Math.min(rank, kk + (opts.oversample ?? Math.max(4, Math.ceil(kk / 2))));
  // depth q: at most 3 power blocks, a basis no larger than the rank or the memory cap
  const basis = Math.min(rank, 4 * p, Math.max(p, Math.floor(BASIS_ENTRIES / Math.max(n, m))));
  const q = Math.max(0, Math.floor(basis / p) - 1);
  const maxIterations = opts.maxIterations ?? 100, tol = opts.tol ?? 1e-4;
  const rng = new Random(opts.seed);
  let v: Float64Array[] = Array.from({ length: p }, () => rng.unitVector(n));
  orthonormalize(v, rng);
  let values: number[] = [], left: Float64Array[] = [], right: Float64Array[] = [];
  let residual = Infinity, converged = false, iterations = 0, products = 0;
  let previous: number[] = [];
  for (; iterations < maxIterations; iterations++) {
    const z = await applyAll(v, (x) => { products++; return op.apply(x); }, iterations + 1);
    if (iterations > 0) {
      residual = 0;
      for (let i = 0; i < kk; i++) {
        let s = 0;
        for (let t = 0; t < m; t++) { const d = z[i][t] - values[i] * left[i][t]; s += d * d; }
        residual = Math.max(residual, Math.sqrt(s));
      }
      let moved = 0;
      for (let i = 0; i < Math.min(values.length, kk + 1); i++) moved = Math.max(moved, Math.abs(values[i] - (previous[i] ?? Infinity)));
      if (residual <= tol * values[0] || moved <= 0.1 * tol * values[0]) { converged = true; break; }
      if (opts.maxProducts !== undefined && products >= opts.maxProducts) break;
    }
    const qb: Float64Array[] = [...z];
    orthonormalize(qb, rng);
    const w: Float64Array[] = [];
    for (let step = 0; step < q; step++) {
      const y = await applyAll(qb.slice(step * p), (x) => { products++; return op.adjoint(x); }, iterations + 1);
      w.push(...y);
      const from = qb.length;
      qb.push(...(await applyAll(y, (x) => { products++; return op.apply(x); }, iterations + 1)));
      orthonormalize(qb, rng, from);
    }
    w.push(...(await applyAll(qb.slice(q * p), (x) => { products++; return op.adjoint(x); }, iterations + 1)));
    // Rayleigh–Ritz on B = QᵀA = Wᵀ through its Gram matrix WᵀW = B·Bᵀ = X·Σ²·Xᵀ: u = Q·X, v = W·X/σ
    const b = qb.length;
    const gram = matrixOf(b, b, () => 0);
    for (let i = 0; i < b; i++) for (let j = 0; j <= i; j++) { const g = dot(w[i], w[j]); gram.set(i, j, g); gram.set(j, i, g); }
    const eig = new EigenvalueDecomposition(gram, { assumeSymmetric: true });
    const order = eig.realEigenvalues.map((l, i) => [l, i] as const).sort((x, y) => y[0] - x[0]).map(([, i]) => i);
    const vectors = eig.eigenvectorMatrix;
    previous = values;
    values = order.slice(0, Math.min(b, kk + 1)).map((i) => Math.sqrt(Math.max(0, eig.realEigenvalues[i])));
    left = order.slice(0, kk).map((i) => combine(qb, vectors, i));
    right = order.slice(0, p).map((i) => combine(w, vectors, i));
    // W·x_i = σ_i·v_i: normalising is orthonormalising for σ_i > 0; directions of σ_i ≈ 0 are completed at random
    orthonormalize(right, rng);
    v = right;
  }
  return { values: values.slice(0, kk), left: left.slice(0, kk), right: right.slice(0, kk), next: kk < rank ? values[kk] : 0, residual, iterations, converged, products, method: 'block-krylov' };
}

/**
 * Top-k singular triplets of a small dense matrix (row-major, rows × cols) from its full float64 SVD (ml-matrix,
 * Golub–Kahan): the exact route for operators small enough to form. Accurate to about rank·u·σ_1 but not certified;
 * callers that need a guarantee bound the residual A − UΣVᵀ themselves (ALGORITHMS.md §4).
 */
export function denseSingularTriplets(a: Float64Array, rows: number, cols: number, k = Math.min(rows, cols)): SingularTriplets {
  if (a.length !== rows * cols) throw new LipcheckError('INTERNAL', `denseSingularTriplets: a ${rows}×${cols} matrix needs ${rows * cols} values, got ${a.length}.`);
  const rank = Math.min(rows, cols);
  const kk = Math.min(k, rank);
  const svd = new SingularValueDecomposition(matrixOf(rows, cols, (i, j) => a[i * cols + j]), { autoTranspose: true });
  const order = svd.diagonal.map((s, i) => [s, i] as const).sort((x, y) => y[0] - x[0]).map(([, i]) => i);
  const u = svd.leftSingularVectors, v = svd.rightSingularVectors;
  const top = order.slice(0, kk);
  return {
    values: top.map((i) => svd.diagonal[i]),
    left: top.map((i) => Float64Array.from(u.getColumn(i))),
    right: top.map((i) => Float64Array.from(v.getColumn(i))),
    next: kk < rank ? svd.diagonal[order[kk]] : 0,
    residual: 0,
    iterations: 0,
    converged: true,
    products: 0,
    method: 'dense-svd',
  };
}
