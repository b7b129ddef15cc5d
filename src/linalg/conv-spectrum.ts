import { LipcheckError } from '../errors.js';
import {
  BudgetExceededError,
  LANCZOS_SEED,
  type NormBound,
  UNDERFLOW_SLACK,
  UNIT_ROUNDOFF as U,
  certifyByShift,
  formatMflop,
  SHIFT_SEARCH,
  gamma,
  maxAbsFinite,
  meanDiagonal,
  powerOfTwoShift,
  roundUp,
  sqrtUp,
  tridiagonalLargestEigenvalue,
  unscaleUp,
} from './dense.js';
import { Random } from './random.js';
import { HeapArrays, wasmHeap } from './lanczos-kernels.js';

/** A convolution's weights and geometry, in ONNX Conv terms. */
export interface ConvSpec {
  weight: Float32Array | Float64Array;
  /** ONNX Conv layout [Cout, Cin/group, k1, ..., kd], d = 1, 2 or 3. */
  weightDims: number[];
  group: number;
  dilations: number[];
  /** Spatial size n of the input, per dim. */
  inputSpatial: number[];
}

interface Geometry {
  d: number;
  group: number;
  coutG: number;
  cinG: number;
  kernel: number[];
  taps: number;
  dilations: number[];
  /** The circular grid N_a = n_a + (k_a − 1)·dilation_a. */
  grid: number[];
}

function checkSpec(spec: ConvSpec): Geometry {
  const dims = spec.weightDims;
  const d = dims.length - 2;
  const shape = `[${dims.join(', ')}]`;
  if (d < 1 || d > 3) throw new LipcheckError('UNSUPPORTED', `Conv weight shape ${shape} has ${d} spatial dims; only 1, 2 or 3 are supported.`);
  if (!dims.every((v) => Number.isInteger(v) && v >= 1)) throw new LipcheckError('INTERNAL', `Conv weight shape ${shape} must hold positive integers.`);
  const size = dims.reduce((a, b) => a * b, 1);
  if (spec.weight.length !== size) throw new LipcheckError('INTERNAL', `Conv weight shape ${shape} needs ${size} values, got ${spec.weight.length}.`);
  const group = spec.group;
  if (!Number.isInteger(group) || group < 1 || dims[0] % group !== 0) {
    throw new LipcheckError('INTERNAL', `Conv group ${group} must be a positive integer dividing the ${dims[0]} output channels.`);
  }
  const check = (name: string, v: number[]): void => {
    if (v.length !== d || !v.every((x) => Number.isInteger(x) && x >= 1)) {
      throw new LipcheckError('INTERNAL', `Conv ${name} [${v.join(', ')}] must be ${d} positive integers for weight shape ${shape}.`);
    }
  };
  check('dilations', spec.dilations);
  check('input spatial size', spec.inputSpatial);
  const kernel = dims.slice(2);
  return {
    d,
    group,
    coutG: dims[0] / group,
    cinG: dims[1],
    kernel,
    taps: kernel.reduce((a, b) => a * b, 1),
    dilations: spec.dilations.slice(),
    grid: kernel.map((k, a) => spec.inputSpatial[a] + (k - 1) * spec.dilations[a]),
  };
}

/**
 * Bound on |τ̂ − τ| for a computed twiddle τ̂ ≈ exp(−2πi·r/N): the argument fl(fl(2π·r)/N) is off by ≤ 3.01u·2π < 19u,
 * V8's fdlibm cos and sin err by < 1 ulp ≤ 2u, so each part errs by < 21u and the complex value by < 30u; 64u leaves
 * room for a libm twice as bad.
 */
const TWIDDLE_ERROR = 64 * U;

/** Default work budget of one certificate when the caller names none (flop; linalg/work.ts). */
const DEFAULT_BUDGET_FLOP = 2.8e10;

/** One per conjugate pair ±ω of the N-grid (K̂(−ω) = conj K̂(ω) has the same singular values): linear indices. */
function halfGrid(grid: number[]): Int32Array {
  const total = grid.reduce((a, b) => a * b, 1);
  const out: number[] = [];
  const idx = new Array<number>(grid.length).fill(0);
  for (let lin = 0; lin < total; lin++) {
    let rem = lin;
    for (let a = grid.length - 1; a >= 0; a--) {
      idx[a] = rem % grid[a];
      rem = Math.floor(rem / grid[a]);
    }
    let neg = 0;
    for (let a = 0; a < grid.length; a++) neg = neg * grid[a] + ((grid[a] - idx[a]) % grid[a]);
    if (lin <= neg) out.push(lin);
  }
  return Int32Array.from(out);
}

/** Per-tap phases exp(−2πi⟨ω, tap·dilation⟩/N) for frequency `lin`, in the weight's tap order (last axis fastest). */
function tapPhases(geo: Geometry, cosT: Float64Array[], sinT: Float64Array[], lin: number, pr: Float64Array, pi: Float64Array): void {
  const omega = new Array<number>(geo.d);
  let rem = lin;
  for (let a = geo.d - 1; a >= 0; a--) {
    omega[a] = rem % geo.grid[a];
    rem = Math.floor(rem / geo.grid[a]);
  }
  pr[0] = 1;
  pi[0] = 0;
  let size = 1;
  for (let a = 0; a < geo.d; a++) {
    const k = geo.kernel[a];
    const n = geo.grid[a];
    const step = (omega[a] * geo.dilations[a]) % n;
    for (let p = size - 1; p >= 0; p--) {
      const xr = pr[p];
      const xi = pi[p];
      for (let t = k - 1; t >= 0; t--) {
        const r = (step * t) % n;
        const c = cosT[a][r];
        const s = sinT[a][r];
        pr[p * k + t] = xr * c - xi * s;
        pi[p * k + t] = xr * s + xi * c;
      }
    }
    size *= k;
  }
}

/**
 * The weights rearranged as [g][tap][row][col] with the block B's rows and columns: B = K̂ᵀ (rows are input channels)
 * when c_in/g ≤ c_out/g, else B = K̂, so that B·Bᴴ is the smaller Gram matrix (up to conjugation). Taps outermost
 * make fillBlock's inner loop one long contiguous run.
 */
function blockLayout(geo: Geometry, w: Float64Array): Float64Array {
  const { group, coutG, cinG, taps } = geo;
  const inIsSmall = cinG <= coutG;
  const cb = inIsSmall ? coutG : cinG;
  const count = coutG * cinG;
  const out = new Float64Array(w.length);
  for (let g = 0; g < group; g++) {
    for (let o = 0; o < coutG; o++) {
      for (let i = 0; i < cinG; i++) {
        const from = ((g * coutG + o) * cinG + i) * taps;
        const at = inIsSmall ? i * cb + o : o * cb + i;
        for (let t = 0; t < taps; t++) out[(g * taps + t) * count + at] = w[from + t];
      }
    }
  }
  return out;
}

/**
 * The block B of group g at the frequency whose tap phases are (pr, pi): Σ_tap w_tap·phase_tap, taps summed in order;
 * by the WebAssembly SIMD kernel (lanczos-kernels.wat `fillblock`, the same operations in the same order) when every
 * array lives in its heap, else by fillBlockJs.
 */
function fillBlock(wb: Float64Array, taps: number, count: number, g: number, pr: Float64Array, pi: Float64Array, br: Float64Array, bi: Float64Array): void {
  const heap = wasmHeap();
  if (heap && heap.holds(wb) && heap.holds(pr) && heap.holds(pi) && heap.holds(br) && heap.holds(bi)) {
    heap.kernels.fillblock(wb.byteOffset + 8 * g * taps * count, taps, count, pr.byteOffset, pi.byteOffset, br.byteOffset, bi.byteOffset);
    return;
  }
  fillBlockJs(wb, taps, count, g, pr, pi, br, bi);
}

/** fillBlock in JavaScript (exported for tests: the kernel must give the same bits). */
export function fillBlockJs(wb: Float64Array, taps: number, count: number, g: number, pr: Float64Array, pi: Float64Array, br: Float64Array, bi: Float64Array): void {
  const base = g * taps * count;
  // Chunks of entries small enough that their partial sums stay in L1 while the taps stream past.
  for (let e0 = 0; e0 < count; e0 += 1024) {
    const e1 = Math.min(count, e0 + 1024);
    const c0 = pr[0];
    const s0 = pi[0];
    for (let e = e0; e < e1; e++) {
      br[e] = wb[base + e] * c0;
      bi[e] = wb[base + e] * s0;
    }
    for (let t = 1; t < taps; t++) {
      const off = base + t * count;
      const c = pr[t];
      const s = pi[t];
      for (let e = e0; e < e1; e++) {
        const x = wb[off + e];
        br[e] += x * c;
        bi[e] += x * s;
      }
    }
  }
}

/** Upward bound on ‖B‖_F² for the computed block (cs·cb complex entries). */
function frobeniusSquaredUp(br: Float64Array, bi: Float64Array, count: number): number {
  let s = 0;
  for (let i = 0; i < count; i++) s += br[i] * br[i] + bi[i] * bi[i];
  return roundUp(s, 2 * count + 1);
}

/**
 * The Hermitian m×m matrix H = B·Bᴴ (full storage) for the row-major m×n complex B. Its 2×2 tiles run in the
 * WebAssembly SIMD kernel `hermgram` (the same operations in the same order) when every array lives in its heap,
 * unless `js` (tests); the odd last row and column and the mirroring run here either way.
 */
export function hermitianGram(br: Float64Array, bi: Float64Array, m: number, n: number, hr: Float64Array, hi: Float64Array, js = false): void {
  const heap = js ? null : wasmHeap();
  const tiles = heap !== null && heap.holds(br) && heap.holds(bi) && heap.holds(hr) && heap.holds(hi);
  if (tiles) heap.kernels.hermgram(br.byteOffset, bi.byteOffset, m, n, hr.byteOffset, hi.byteOffset);
  let i = 0;
  for (; i + 1 < m; i += 2) {
    const oi = i * n;
    const oi1 = oi + n;
    let j = i;
    if (tiles) j += (m - i) & ~1;
    for (; j + 1 < m; j += 2) {
      const oj = j * n;
      const oj1 = oj + n;
      let r00 = 0, i00 = 0, r01 = 0, i01 = 0, r10 = 0, i10 = 0, r11 = 0, i11 = 0;
      for (let k = 0; k < n; k++) {
        const ar = br[oi + k], ai = bi[oi + k], cr = br[oi1 + k], ci = bi[oi1 + k];
        const xr = br[oj + k], xi = bi[oj + k], yr = br[oj1 + k], yi = bi[oj1 + k];
        r00 += ar * xr + ai * xi; i00 += ai * xr - ar * xi;
        r01 += ar * yr + ai * yi; i01 += ai * yr - ar * yi;
        r10 += cr * xr + ci * xi; i10 += ci * xr - cr * xi;
        r11 += cr * yr + ci * yi; i11 += ci * yr - cr * yi;
      }
      hr[i * m + j] = r00; hi[i * m + j] = i00;
      hr[i * m + j + 1] = r01; hi[i * m + j + 1] = i01;
      hr[(i + 1) * m + j] = r10; hi[(i + 1) * m + j] = i10;
      hr[(i + 1) * m + j + 1] = r11; hi[(i + 1) * m + j + 1] = i11;
    }
    if (j < m) {
      const oj = j * n;
      let r0 = 0, i0 = 0, r1 = 0, i1 = 0;
      for (let k = 0; k < n; k++) {
        const xr = br[oj + k], xi = bi[oj + k];
        const ar = br[oi + k], ai = bi[oi + k], cr = br[oi1 + k], ci = bi[oi1 + k];
        r0 += ar * xr + ai * xi; i0 += ai * xr - ar * xi;
        r1 += cr * xr + ci * xi; i1 += ci * xr - cr * xi;
      }
      hr[i * m + j] = r0; hi[i * m + j] = i0;
      hr[(i + 1) * m + j] = r1; hi[(i + 1) * m + j] = i1;
    }
  }
  if (i < m) {
    const oi = i * n;
    let s = 0;
    for (let k = 0; k < n; k++) s += br[oi + k] * br[oi + k] + bi[oi + k] * bi[oi + k];
    hr[i * m + i] = s;
  }
  // Mirror the upper triangle so that Ĥ is exactly Hermitian, with an exactly real diagonal.
  for (let r = 0; r < m; r++) {
    hi[r * m + r] = 0;
    for (let c = r + 1; c < m; c++) {
      hr[c * m + r] = hr[r * m + c];
      hi[c * m + r] = -hi[r * m + c];
    }
  }
}

/** λ_max estimate of the Hermitian m×m matrix (hr, hi) by Lanczos with full reorthogonalisation (approaches from below). */
function lanczosHermitian(hr: Float64Array, hi: Float64Array, m: number, maxSteps: number): number {
  const kmax = Math.min(m, maxSteps);
  const rng = new Random(LANCZOS_SEED);
  const qr: Float64Array[] = [];
  const qi: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  let vr = rng.unitVector(m);
  let vi = new Float64Array(m);
  let theta = 0;
  const history: number[] = [];
  for (let k = 0; k < kmax; k++) {
    qr.push(vr);
    qi.push(vi);
    const wr = new Float64Array(m);
    const wi = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const o = i * m;
      let sr = 0;
      let si = 0;
      for (let j = 0; j < m; j++) {
        const ar = hr[o + j], ai = hi[o + j], xr = vr[j], xi = vi[j];
        sr += ar * xr - ai * xi;
        si += ar * xi + ai * xr;
      }
      wr[i] = sr;
      wi[i] = si;
    }
    let a = 0;
    for (let i = 0; i < m; i++) a += vr[i] * wr[i] + vi[i] * wi[i];
    alpha.push(a);
    for (let pass = 0; pass < 2; pass++) {
      for (let q = 0; q < qr.length; q++) {
        const ur = qr[q], ui = qi[q];
        let cr = 0;
        let ci = 0;
        for (let i = 0; i < m; i++) {
          cr += ur[i] * wr[i] + ui[i] * wi[i];
          ci += ur[i] * wi[i] - ui[i] * wr[i];
        }
        for (let i = 0; i < m; i++) {
          wr[i] -= cr * ur[i] - ci * ui[i];
          wi[i] -= cr * ui[i] + ci * ur[i];
        }
      }
    }
    let nb = 0;
    for (let i = 0; i < m; i++) nb += wr[i] * wr[i] + wi[i] * wi[i];
    nb = Math.sqrt(nb);
    theta = tridiagonalLargestEigenvalue(alpha, beta, k + 1);
    history.push(theta);
    const h = history.length;
    if (nb <= 8 * U * Math.abs(theta) || nb === 0) break;
    if (h >= 3 && Math.abs(theta - history[h - 3]) <= 2 * U * Math.abs(theta)) break;
    beta.push(nb);
    vr = wr;
    vi = wi;
    for (let i = 0; i < m; i++) {
      vr[i] /= nb;
      vi[i] /= nb;
    }
  }
  return theta;
}

/**
 * Certified λ_max(H) ≤ returned value when complex Cholesky of fl(s·I − H) runs to completion, else null.
 * Each computed l_ij comes from a real and an imaginary inner product of length ≤ 2m, so Higham's Lemma 8.4 applied to
 * both parts (and |a||c| + |b||d| ≤ |z||w|) gives L̂L̂ᴴ = A + ΔA, |ΔA| ≤ √2·γ_{2m+1}|L̂||L̂ᴴ| ≤ γ'|L̂||L̂ᴴ|, γ' = 1.5·γ_{2m+2};
 * then as in the real case (Rump, BIT 2006) ‖ΔA‖₂ ≤ γ'/(1−γ')·tr(A), and the rounded diagonal adds ≤ 2u·max|A_ii|.
 * Row-oriented (Cholesky–Banachiewicz) so that every inner product runs over contiguous rows of L.
 */
function choleskyCertifyHermitian(hr: Float64Array, hi: Float64Array, m: number, s: number, lr: Float64Array, li: Float64Array): number | null {
  let trace = 0;
  let maxDiag = 0;
  // Rows go in pairs so that each earlier row of L, streamed from memory, serves two inner products.
  for (let i = 0; i < m; i += 2) {
    const oi = i * m;
    const pair = i + 1 < m;
    const oi1 = oi + m;
    for (let j = 0; j < i; j++) {
      const oj = j * m;
      let sr = -hr[oi + j];
      let si = -hi[oi + j];
      const d = lr[oj + j];
      if (pair) {
        let tr = -hr[oi1 + j];
        let ti = -hi[oi1 + j];
        for (let k = 0; k < j; k++) {
          const br = lr[oj + k], bi = li[oj + k];
          const ar = lr[oi + k], ai = li[oi + k], cr = lr[oi1 + k], ci = li[oi1 + k];
          sr -= ar * br + ai * bi;
          si -= ai * br - ar * bi;
          tr -= cr * br + ci * bi;
          ti -= ci * br - cr * bi;
        }
        lr[oi1 + j] = tr / d;
        li[oi1 + j] = ti / d;
      } else {
        for (let k = 0; k < j; k++) {
          const br = lr[oj + k], bi = li[oj + k], ar = lr[oi + k], ai = li[oi + k];
          sr -= ar * br + ai * bi;
          si -= ai * br - ar * bi;
        }
      }
      lr[oi + j] = sr / d;
      li[oi + j] = si / d;
    }
    for (let r = i; r < (pair ? i + 2 : i + 1); r++) {
      const or = r * m;
      if (r > i) {
        let sr = -hr[or + i];
        let si = -hi[or + i];
        for (let k = 0; k < i; k++) {
          const br = lr[oi + k], bi = li[oi + k], ar = lr[or + k], ai = li[or + k];
          sr -= ar * br + ai * bi;
          si -= ai * br - ar * bi;
        }
        lr[or + i] = sr / lr[oi + i];
        li[or + i] = si / lr[oi + i];
      }
      const a = s - hr[or + r];
      trace += a;
      maxDiag = Math.max(maxDiag, Math.abs(a));
      let piv = a;
      for (let k = 0; k < r; k++) piv -= lr[or + k] * lr[or + k] + li[or + k] * li[or + k];
      if (!(piv > 0)) return null;
      lr[or + r] = Math.sqrt(piv);
      li[or + r] = 0;
    }
  }
  const gc = roundUp(1.5 * gamma(2 * m + 2), 2);
  const traceUp = roundUp(Math.max(trace, 0), m + 1);
  return roundUp(s + roundUp((gc / (1 - gc)) * traceUp, 3) + 2 * U * maxDiag + UNDERFLOW_SLACK, 4);
}

/**
 * Certified upper bound on λ_max of a Hermitian PSD m×m matrix (full storage): a Lanczos estimate certified by complex
 * Cholesky (Rump, BIT 2006; see choleskyCertifyHermitian), never below `floor`; null if no certificate succeeds.
 */
export function hermitianLambdaMaxBound(hr: Float64Array, hi: Float64Array, m: number, floor = 0, onAttempt?: () => void): { upper: number; estimate: number; shift: number } | null {
  const estimate = Math.max(lanczosHermitian(hr, hi, m, 300), 0);
  const lr = new Float64Array(m * m);
  const li = new Float64Array(m * m);
  const lower = Math.max(estimate, floor, meanDiagonal(hr, m));
  const cert = certifyByShift(lower, 4 * (m + 1) * U, (s) => {
    onAttempt?.();
    return choleskyCertifyHermitian(hr, hi, m, s, lr, li);
  });
  return cert === null ? null : { upper: cert.upper, estimate, shift: cert.shift };
}

/** The flop convSpectralNormBound charges up front for `blocks` frequency blocks of c_out/g × c_in/g with `taps` taps. */
function certificateFlop(blocks: number, taps: number, coutG: number, cinG: number): number {
  const cs = Math.min(coutG, cinG), cb = Math.max(coutG, cinG);
  const dftMacs = 4 * taps * coutG * cinG;
  const blockMacs = cs === 1 ? 0 : 2 * cb * cs * cs + (2 * cs * cs * cs) / 3;
  const lanczosMacs = cs === 1 ? 0 : 3200 * cs * cs;
  return 2 * (blocks * (dftMacs + blockMacs) + lanczosMacs);
}

/** The work convSpectralNormBound predicts for a convolution (flop), to compare with a budget before calling it. */
export function convCertificateFlop(spec: ConvSpec): number {
  const { group, coutG, cinG, taps, grid } = checkSpec(spec);
  const freqs = taps === 1 ? 1 : halfGrid(grid).length;
  return certificateFlop(group * freqs, taps, coutG, cinG);
}

/**
 * Certified upper bound on the ℓ2 operator norm of an N-D convolution on an input of the given size, for any
 * padding and stride: the circular-embedding bound of Sedghi, Gupta & Long (ICLR 2019, §2) as ALGORITHMS.md §2
 * states it, each frequency block bounded by a Cholesky certificate. Throws BudgetExceededError when its work, counted
 * in flop by the cost model below (never by a clock), would pass `budgetFlop`: the same weights and budget always give
 * the same outcome.
 *
 * Grid. Output position o (in input coordinates) reads x[o + t·dil], t = 0..k−1, zero outside [0, n). Rows that
 * touch the input at all have o ∈ [−(k−1)·dil, n−1]: n + (k−1)·dil of them, every padding's and stride's rows among
 * them (rows beyond are zero and add nothing to the norm). On a circular grid of N = n + (k−1)·dil these o stay
 * distinct mod N, and every index they read, o + t·dil ∈ [−(k−1)·dil, n−1+(k−1)·dil], falls in [0, n) mod N exactly when
 * it does unwrapped. So the padded, strided conv is a row- and column-submatrix of the stride-1 circular conv on the
 * N-grid, and its norm is at most that one's, max over groups and ω of σ_max(K̂(ω)). A smaller N cannot hold the
 * n + (k−1)·dil distinct rows; a larger one only samples the symbol more finely and never gives a smaller bound.
 *
 * Margin, derived. Weights are scaled by an exact power of two. (1) DFT: K̂_oi(ω) = Σ_tap w·τ(ω, tap), each phase a
 * product of d table twiddles (|τ̂ − τ| ≤ 64u each, see TWIDDLE_ERROR) with d−1 complex products (≤ √2γ₂ each), then a
 * real-times-complex sum of T taps (≤ √2γ_T relative to Σ|w|). So |K̂̂_oi − K̂_oi| ≤ η·A_oi with A_oi = Σ_tap|w_oi,tap|
 * and η = 1.01·(d·(64u + 3u) + √2γ_T), hence ‖K̂̂ − K̂‖₂ ≤ η·‖A‖₂ ≤ η·min(‖A‖_F, sqrt(‖A‖₁‖A‖_∞)) for every ω.
 * (2) Gram: H = B·Bᴴ over the longer side c_big; real and imaginary parts are sums of 2c_big products, so
 * ‖Ĥ − H‖₂ ≤ √2γ_{2c_big}‖B‖_F² (‖B‖_F² computed upward). (3) λ_max(Ĥ) is bounded by a complex Cholesky certificate
 * (choleskyCertifyHermitian), relative margin ≈ 3m²u. Then σ_max(K̂(ω)) ≤ sqrt(λ + (2)) + (1), all rounded upward.
 * Blocks with min(c_out/g, c_in/g) = 1 are vectors: σ_max = ‖K̂̂‖_F exactly, plus (1).
 *
 * Work: per frequency block a DFT of the taps (4·taps·c_out/g·c_in/g multiply-adds), a Hermitian product and one
 * Cholesky factorisation (2·c_big·c_small² + 2c_small³/3), once a 300-step Lanczos (3200·c_small²); charged up front
 * for every block, and each further Lanczos run or Cholesky attempt is charged as it happens. Time, measured on this
 * machine (2 cores shared with other work at load average 3 to 4, so ranges; one thread), random weights: 64→64 3×3 on
 * 32×32 (N = 34, 580 blocks): 0.33–0.7 s; 256→256 3×3 on 14×14 (N = 16, 136 blocks): 2.7–4.8 s; 128→128 3×3 on 28×28:
 * 1.3–2.8 s; 64→64 3×3 on 56×56: 1.3–1.6 s; 512→512 3×3 on 7×7: 8–11.5 s (1.5e6 to 2.2e6 multiply-adds per ms). About
 * 60% of it is the Hermitian products, 20% the Cholesky factorisations, 15% the DFT.
 */
export function convSpectralNormBound(spec: ConvSpec, opts: { budgetFlop?: number } = {}): NormBound {
  return circularBound(spec, opts.budgetFlop, Infinity)!;
}

/**
 * convSpectralNormBound, or null as soon as a frequency block shows that its value would exceed `above`: each block's
 * computed B̂ has σ_max ≥ ‖B̂‖_F/√c_small, and the certificate is at least every block's σ_max (the blocks it does
 * not certify have Frobenius bounds below its value), so once √(f²/(c_small·(1+10⁻⁶)))·(1−10⁻⁶) > above (f² ≥ ‖B̂‖_F²,
 * rounded upward, within 10⁻⁶ of it) the bound cannot come out at or below `above`. The DFT pass stops there, before
 * the Gram products and factorisations; the same weights and `above` always stop at the same block.
 */
export function convSpectralNormBoundBelow(spec: ConvSpec, above: number, opts: { budgetFlop?: number } = {}): NormBound | null {
  return circularBound(spec, opts.budgetFlop, above);
}

function circularBound(spec: ConvSpec, budget: number | undefined, above: number): NormBound | null {
  const geo = checkSpec(spec);
  const budgetFlop = budget ?? DEFAULT_BUDGET_FLOP;
  const maxAbs = maxAbsFinite(spec.weight, 'The convolution weight');
  if (maxAbs === 0) return { value: 0, estimate: 0, method: 'circular-fft' };
  const { d, group, coutG, cinG, taps, grid } = geo;
  const cs = Math.min(coutG, cinG);
  const cb = Math.max(coutG, cinG);
  // A 1×1 kernel has K̂(ω) = W at every ω: one block per group says it all.
  const freqs = taps === 1 ? Int32Array.of(0) : halfGrid(grid);
  const blocks = group * freqs.length;

  const lanczosMacs = cs === 1 ? 0 : 3200 * cs * cs;
  const predicted = certificateFlop(blocks, taps, coutG, cinG);
  const what = `the ${spec.weightDims.join('×')} convolution on a ${spec.inputSpatial.join('×')} input (${blocks} frequency blocks of ${coutG}×${cinG} on the ${grid.join('×')} grid)`;
  if (predicted > budgetFlop) {
    throw new BudgetExceededError(
      `A certified circular-embedding bound for ${what} would take about ${formatMflop(predicted)} Mflop, over its work budget of ${formatMflop(budgetFlop)} Mflop; use a probabilistic bound or raise --certify-work.`,
      predicted,
      budgetFlop,
    );
  }
  let spent = predicted;
  const charge = (flop: number): void => {
    spent += flop;
    if (spent > budgetFlop) {
      throw new BudgetExceededError(
        `A certified circular-embedding bound for ${what} ran past its work budget of ${formatMflop(budgetFlop)} Mflop; use a probabilistic bound or raise --certify-work.`,
        spent,
        budgetFlop,
      );
    }
  };

  const shift = powerOfTwoShift(maxAbs);
  const f = 2 ** shift;
  const w = new Float64Array(spec.weight.length);
  for (let i = 0; i < w.length; i++) w[i] = spec.weight[i] * f;

  const cosT: Float64Array[] = [];
  const sinT: Float64Array[] = [];
  for (const n of grid) {
    const c = new Float64Array(n);
    const s = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      const phi = (2 * Math.PI * r) / n;
      c[r] = Math.cos(phi);
      s[r] = -Math.sin(phi);
    }
    cosT.push(c);
    sinT.push(s);
  }

  const eta = roundUp(1.01 * (d * (TWIDDLE_ERROR + 3 * U) + 1.5 * gamma(taps + 1)), 2);
  const dftError = new Float64Array(group);
  for (let g = 0; g < group; g++) {
    let fro = 0;
    let maxRow = 0;
    const colSums = new Float64Array(cinG);
    for (let o = 0; o < coutG; o++) {
      let row = 0;
      for (let i = 0; i < cinG; i++) {
        const base = ((g * coutG + o) * cinG + i) * taps;
        let a = 0;
        for (let t = 0; t < taps; t++) a += Math.abs(w[base + t]);
        a = roundUp(a, taps);
        fro += a * a;
        row += a;
        colSums[i] += a;
      }
      maxRow = Math.max(maxRow, row);
    }
    const maxCol = Math.max(...colSums);
    const normA = Math.min(sqrtUp(roundUp(fro, coutG * cinG + 1)), sqrtUp(roundUp(roundUp(maxRow, cinG) * roundUp(maxCol, coutG), 1)));
    dftError[g] = roundUp(eta * normA, 2) + UNDERFLOW_SLACK;
  }

  // the weights' block layout, the tap phases and the block in the WebAssembly heap where there is one (fillBlock's
  // SIMD kernel reads them there), else plain arrays: the same values either way
  const arrays = new HeapArrays();
  const take = (length: number): Float64Array => arrays.take(length) ?? new Float64Array(length);
  try {
    const layout = blockLayout(geo, w);
    const wb = take(layout.length);
    wb.set(layout);
    const pr = take(taps);
    const pi = take(taps);
    const br = take(cs * cb);
    const bi = take(cs * cb);
    const frobBound = new Float64Array(blocks);
    let best = 0;
    let estimate = 0;
    // `above` in the scaled weights' units, and the squared Frobenius norm past which a block proves the value above it
    const stopF2 = Number.isFinite(above) ? (above * f / (1 - 1e-6)) ** 2 * cs * (1 + 1e-6) : Infinity;
    for (let q = 0; q < freqs.length; q++) {
      tapPhases(geo, cosT, sinT, freqs[q], pr, pi);
      for (let g = 0; g < group; g++) {
        fillBlock(wb, taps, cs * cb, g, pr, pi, br, bi);
        const f2 = frobeniusSquaredUp(br, bi, cs * cb);
        if (f2 > stopF2) return null;
        const bound = roundUp(sqrtUp(f2) + dftError[g], 1);
        frobBound[q * group + g] = bound;
        if (cs === 1) {
          best = Math.max(best, bound);
          estimate = Math.max(estimate, Math.sqrt(f2));
        }
      }
    }

    if (cs > 1) {
      const order = Array.from({ length: blocks }, (_, b) => b).sort((x, y) => frobBound[y] - frobBound[x]);
      const hr = take(cs * cs);
      const hi = take(cs * cs);
      const ar = new Float64Array(cs * cs);
      const ai = new Float64Array(cs * cs);
      let lambdaShift = 0;
      // the prediction holds one Lanczos run with its shift search, and one Cholesky factorisation per block: further
      // Lanczos runs and factorisations beyond a shift search are charged
      let lanczosRuns = 0, attempts = 0;
      const attempt = () => { if (++attempts > SHIFT_SEARCH) charge(2 * ((2 * cs * cs * cs) / 3)); };
      for (const b of order) {
        if (frobBound[b] <= best) break;
        const q = Math.floor(b / group);
        const g = b % group;
        tapPhases(geo, cosT, sinT, freqs[q], pr, pi);
        fillBlock(wb, taps, cs * cb, g, pr, pi, br, bi);
        const f2 = frobeniusSquaredUp(br, bi, cs * cb);
        hermitianGram(br, bi, cs, cb, hr, hi);
        let lambdaUp = null;
        if (lambdaShift > 0) lambdaUp = choleskyCertifyHermitian(hr, hi, cs, lambdaShift, ar, ai);
        if (lambdaUp === null) {
          if (lanczosRuns++ > 0) charge(2 * lanczosMacs);
          attempts = 0;
          const cert = hermitianLambdaMaxBound(hr, hi, cs, lambdaShift, attempt);
          if (cert !== null) {
            estimate = Math.max(estimate, Math.sqrt(cert.estimate));
            lambdaUp = cert.upper;
            lambdaShift = cert.shift;
          }
        }
        let bound = frobBound[b];
        if (lambdaUp !== null) {
          const gramError = roundUp(1.5 * gamma(2 * cb) * f2, 2);
          bound = Math.min(bound, roundUp(sqrtUp(roundUp(lambdaUp + gramError, 1)) + dftError[g], 1));
        }
        best = Math.max(best, bound);
      }
    }
    return { value: unscaleUp(best, shift), estimate: estimate * 2 ** -shift, method: 'circular-fft' };
  } finally {
    arrays.release();
  }
}

/** Certified upper bound on the ℓ∞ operator norm of a convolution: max over output channels of Σ|w| over its (c_in/g, k…) taps, rounded upward (ALGORITHMS.md §2). */
export function convInfNorm(spec: Pick<ConvSpec, 'weight' | 'weightDims'>): number {
  const dims = spec.weightDims;
  if (dims.length < 3 || !dims.every((v) => Number.isInteger(v) && v >= 1)) {
    throw new LipcheckError('INTERNAL', `Conv weight shape [${dims.join(', ')}] must be at least 3 positive integers.`);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  if (spec.weight.length !== size) throw new LipcheckError('INTERNAL', `Conv weight shape [${dims.join(', ')}] needs ${size} values, got ${spec.weight.length}.`);
  maxAbsFinite(spec.weight, 'The convolution weight');
  const per = size / dims[0];
  let best = 0;
  for (let o = 0; o < dims[0]; o++) {
    let s = 0;
    for (let j = o * per; j < (o + 1) * per; j++) s += Math.abs(spec.weight[j]);
    if (s > best) best = s;
  }
  return roundUp(best, per);
}
