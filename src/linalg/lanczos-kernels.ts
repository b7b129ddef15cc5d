/**
 * The memory-bound kernels of Lanczos's reorthogonalisation over an index range [lo, hi), shared by the main thread
 * and the kernel thread (lanczos-threads.ts). The basis lives in chunks of CHUNK vectors stored back to back.
 *
 * Two implementations give the same bits: WebAssembly SIMD (lanczos-kernels.wat, two consecutive i per f64x2 op; about
 * twice the JavaScript's speed on long vectors, 3× on cache-resident ones) where every operand lives in the WebAssembly
 * heap below, and the JavaScript twins here elsewhere, which do the same float64 operations in the same order:
 * - a projection sums each vector's even-i terms and odd-i terms (i counted from lo) apart, adds the odd tail to the
 *   even sum, and returns even + odd;
 * - a subtraction forms, per element, the left-to-right sum c_0·q_0[i] + c_1·q_1[i] + … over a chunk pair (then a
 *   chunk, then single vectors) and subtracts it.
 * The step's own passes (dotAndSquares, recurrence, sumSquares, scaleBy) follow the same rules: elementwise operations
 * as written, every sum over i as a projection's.
 */
import { LANCZOS_WASM_BASE64 } from './lanczos-wasm.js';

export const CHUNK = 4;

/** h[b] = Σ_{lo≤i<hi} w[i]·q_b[i] for b < count (vector length n), as the WebAssembly kernel sums it. */
export function projectRangeJs(chunks: readonly Float64Array[], count: number, n: number, w: Float64Array, h: Float64Array, lo: number, hi: number): void {
  const end = lo + ((hi - lo) & ~1);
  const odd = ((hi - lo) & 1) === 1;
  for (let b = 0; b < count; b++) {
    const q = chunks[Math.floor(b / CHUNK)];
    const o = (b % CHUNK) * n;
    let e = 0, d = 0;
    for (let i = lo; i < end; i += 2) {
      e += w[i] * q[o + i];
      d += w[i + 1] * q[o + i + 1];
    }
    if (odd) e += w[end] * q[o + end];
    h[b] = e + d;
  }
}

/** w[i] ← w[i] − Σ_{b<count} h[b]·q_b[i] for lo ≤ i < hi: per element one left-to-right sum per chunk pair, chunk, vector. */
export function subtractRangeJs(chunks: readonly Float64Array[], count: number, n: number, w: Float64Array, h: Float64Array, lo: number, hi: number): void {
  const full = Math.floor(count / CHUNK);
  let c = 0;
  for (; c + 1 < full; c += 2) {
    const q = chunks[c], r = chunks[c + 1];
    const b = c * CHUNK;
    const c0 = h[b], c1 = h[b + 1], c2 = h[b + 2], c3 = h[b + 3], c4 = h[b + 4], c5 = h[b + 5], c6 = h[b + 6], c7 = h[b + 7];
    for (let i = lo, i1 = n + lo, i2 = 2 * n + lo, i3 = 3 * n + lo; i < hi; i++, i1++, i2++, i3++) {
      w[i] -= c0 * q[i] + c1 * q[i1] + c2 * q[i2] + c3 * q[i3] + c4 * r[i] + c5 * r[i1] + c6 * r[i2] + c7 * r[i3];
    }
  }
  for (; c < full; c++) {
    const q = chunks[c];
    const b = c * CHUNK;
    const c0 = h[b], c1 = h[b + 1], c2 = h[b + 2], c3 = h[b + 3];
    for (let i = lo, i1 = n + lo, i2 = 2 * n + lo, i3 = 3 * n + lo; i < hi; i++, i1++, i2++, i3++) w[i] -= c0 * q[i] + c1 * q[i1] + c2 * q[i2] + c3 * q[i3];
  }
  for (let b = full * CHUNK; b < count; b++) {
    const q = chunks[full], c0 = h[b];
    for (let i = lo, o = (b - full * CHUNK) * n + lo; i < hi; i++, o++) w[i] -= c0 * q[o];
  }
}

/** The WebAssembly kernels' exports (addresses in bytes). */
export interface WasmKernels {
  project2(q: number, r: number, n: number, w: number, lo: number, hi: number, out: number): void;
  project1(q: number, n: number, w: number, lo: number, hi: number, out: number): void;
  project0(v: number, w: number, lo: number, hi: number): number;
  subtract2(q: number, r: number, n: number, w: number, lo: number, hi: number, c: number): void;
  subtract1(q: number, n: number, w: number, lo: number, hi: number, c: number): void;
  subtract0(v: number, w: number, lo: number, hi: number, c: number): void;
  dotsq(w: number, v: number, n: number, out: number): void;
  recur(w: number, v: number, p: number, n: number, a: number, b: number): number;
  sumsq(w: number, n: number): number;
  scale(w: number, n: number, c: number): void;
  /** conv-spectrum.ts fillBlock's kernel (addresses in bytes; `wb` at the group's first weight). */
  fillblock(wb: number, taps: number, count: number, pr: number, pi: number, br: number, bi: number): void;
  /** conv-spectrum.ts hermitianGram's 2×2 tiles (addresses in bytes). */
  hermgram(br: number, bi: number, m: number, n: number, hr: number, hi: number): void;
  /** sdp.ts matmul's inner loops over j (addresses in bytes; `two` 0 or 1). */
  mmrow4(c0: number, c1: number, b: number, stride: number, j0: number, j1: number, two: number, v0: number, v1: number, v2: number, v3: number, u0: number, u1: number, u2: number, u3: number): void;
  mmrow1(c0: number, c1: number, b: number, j0: number, j1: number, two: number, v: number, u: number): void;
}

/** h[b] for b < count through the WebAssembly kernels; every address is a byte offset in their memory, `f64` a view on all of it. */
export function projectRangeWasm(k: WasmKernels, f64: Float64Array, chunkAt: readonly number[], count: number, n: number, w: number, out: number, lo: number, hi: number): void {
  const full = Math.floor(count / CHUNK);
  let c = 0;
  for (; c + 1 < full; c += 2) k.project2(chunkAt[c], chunkAt[c + 1], n, w, lo, hi, out + 8 * c * CHUNK);
  if (c < full) { k.project1(chunkAt[c], n, w, lo, hi, out + 8 * c * CHUNK); c++; }
  // project0 returns its sum, written through the view
  for (let b = full * CHUNK; b < count; b++) f64[(out >>> 3) + b] = k.project0(chunkAt[full] + 8 * (b - full * CHUNK) * n, w, lo, hi);
}

/** subtractRangeJs through the WebAssembly kernels (coefficients at byte offset `coef`). */
export function subtractRangeWasm(k: WasmKernels, f64: Float64Array, chunkAt: readonly number[], count: number, n: number, w: number, coef: number, lo: number, hi: number): void {
  const full = Math.floor(count / CHUNK);
  let c = 0;
  for (; c + 1 < full; c += 2) k.subtract2(chunkAt[c], chunkAt[c + 1], n, w, lo, hi, coef + 8 * c * CHUNK);
  if (c < full) { k.subtract1(chunkAt[c], n, w, lo, hi, coef + 8 * c * CHUNK); c++; }
  for (let b = full * CHUNK; b < count; b++) k.subtract0(chunkAt[full] + 8 * (b - full * CHUNK) * n, w, lo, hi, f64[(coef >>> 3) + b]);
}

/**
 * The WebAssembly heap: one shared memory (so the kernel thread can run the same kernels on the same vectors), grown
 * as needed and never shrunk, with a first-fit allocator over its blocks. Vectors the kernels read must live here.
 */
const PAGE = 65536;
const MAX_PAGES = 65536;
const ALIGN = 64;

class WasmHeap {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  readonly kernels: WasmKernels;
  /** Every buffer object the memory has been seen through (growing gives a new one over the same memory). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private f64: Float64Array;
  /** Free blocks [start, end) in bytes, sorted, coalesced; `top` is the end of what was ever handed out. */
  private readonly free: [number, number][] = [];
  private top = ALIGN;
  /** Two doubles for kernels that return a pair, at byte offset 0 (below the first block). */
  readonly pair = 0;

  constructor() {
    this.module = new WebAssembly.Module(Buffer.from(LANCZOS_WASM_BASE64, 'base64'));
    this.memory = new WebAssembly.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
    this.kernels = new WebAssembly.Instance(this.module, { env: { memory: this.memory } }).exports as unknown as WasmKernels;
    this.f64 = this.view();
  }

  private view(): Float64Array {
    const buf = this.memory.buffer;
    this.buffers.add(buf);
    return new Float64Array(buf);
  }

  /** A float64 view on the whole memory as it is now. */
  all(): Float64Array {
    if (this.f64.byteLength !== this.memory.buffer.byteLength) this.f64 = this.view();
    return this.f64;
  }

  /** Whether `a` is a view on this heap's memory. */
  holds(a: Float64Array): boolean {
    return this.buffers.has(a.buffer);
  }

  /** A float64 array of `length` elements in the heap, or null when the memory cannot grow that far. */
  alloc(length: number): Float64Array | null {
    const bytes = Math.ceil((8 * Math.max(1, length)) / ALIGN) * ALIGN;
    let at = -1;
    for (let k = 0; k < this.free.length; k++) {
      const [s, e] = this.free[k];
      if (e - s < bytes) continue;
      at = s;
      if (e - s === bytes) this.free.splice(k, 1);
      else this.free[k] = [s + bytes, e];
      break;
    }
    if (at < 0) {
      const end = this.top + bytes;
      const pages = Math.ceil(end / PAGE) - this.memory.buffer.byteLength / PAGE;
      if (pages > 0) {
        if (Math.ceil(end / PAGE) > MAX_PAGES) return null;
        try { this.memory.grow(pages); } catch { return null; }
      }
      at = this.top;
      this.top = end;
    }
    return new Float64Array(this.all().buffer, at, length);
  }

  /** Returns an array alloc gave; the block is merged with free neighbours, and the top falls back when it was last. */
  release(a: Float64Array): void {
    const s = a.byteOffset, e = s + Math.ceil((8 * Math.max(1, a.length)) / ALIGN) * ALIGN;
    let k = 0;
    while (k < this.free.length && this.free[k][0] < s) k++;
    this.free.splice(k, 0, [s, e]);
    if (k + 1 < this.free.length && this.free[k][1] === this.free[k + 1][0]) { this.free[k][1] = this.free[k + 1][1]; this.free.splice(k + 1, 1); }
    if (k > 0 && this.free[k - 1][1] === this.free[k][0]) { this.free[k - 1][1] = this.free[k][1]; this.free.splice(k, 1); k--; }
    if (this.free[k][1] === this.top) { this.top = this.free[k][0]; this.free.splice(k, 1); }
  }
}

let heap: WasmHeap | null | undefined;

/** The WebAssembly heap, created on first use; null where WebAssembly SIMD or shared memory is unavailable. */
export function wasmHeap(): WasmHeap | null {
  if (heap === undefined) {
    try { heap = new WasmHeap(); } catch { heap = null; }
  }
  return heap;
}

/**
 * Arrays taken from the heap for one computation (the kernels' operands), each zeroed as a fresh array would be (the
 * heap hands out blocks as their last user left them), all given back by release().
 */
export class HeapArrays {
  readonly heap = wasmHeap();
  private readonly taken: Float64Array[] = [];

  /** A zeroed array of `length` in the heap, or null where there is no heap or no room. */
  take(length: number): Float64Array | null {
    const a = this.heap?.alloc(length);
    if (!a) return null;
    a.fill(0);
    this.taken.push(a);
    return a;
  }

  release(): void {
    for (const a of this.taken) this.heap!.release(a);
    this.taken.length = 0;
  }
}

/** Byte offsets of the chunks, or null unless all of them and w are views on the heap. */
export function heapAddresses(chunks: readonly Float64Array[], count: number, w: Float64Array): number[] | null {
  const hp = heap;
  if (!hp || !hp.holds(w)) return null;
  const at: number[] = [];
  for (let c = 0; c < Math.ceil(count / CHUNK); c++) {
    if (!hp.holds(chunks[c])) return null;
    at.push(chunks[c].byteOffset);
  }
  return at;
}

/** h[b] = Σ_{lo≤i<hi} w[i]·q_b[i] for b < count: WebAssembly where the operands live in the heap, else JavaScript (same bits). */
export function projectRange(chunks: readonly Float64Array[], count: number, n: number, w: Float64Array, h: Float64Array, lo: number, hi: number): void {
  const at = heapAddresses(chunks, count, w);
  if (at && heap!.holds(h) && h.length >= count) return projectRangeWasm(heap!.kernels, heap!.all(), at, count, n, w.byteOffset, h.byteOffset, lo, hi);
  projectRangeJs(chunks, count, n, w, h, lo, hi);
}

/** w[i] ← w[i] − Σ_{b<count} h[b]·q_b[i] for lo ≤ i < hi: WebAssembly where the operands live in the heap, else JavaScript (same bits). */
export function subtractRange(chunks: readonly Float64Array[], count: number, n: number, w: Float64Array, h: Float64Array, lo: number, hi: number): void {
  const at = heapAddresses(chunks, count, w);
  if (at && heap!.holds(h) && h.length >= count) return subtractRangeWasm(heap!.kernels, heap!.all(), at, count, n, w.byteOffset, h.byteOffset, lo, hi);
  subtractRangeJs(chunks, count, n, w, h, lo, hi);
}

/** One sum over i as the kernels take it: even-i and odd-i terms apart, the odd tail into the even sum. */
function pairSum(n: number, term: (i: number) => number): number {
  const end = n & ~1;
  let e = 0, d = 0;
  for (let i = 0; i < end; i += 2) { e += term(i); d += term(i + 1); }
  if (n & 1) e += term(end);
  return e + d;
}

/** [⟨w, v⟩, ‖w‖²] in one pass. */
export function dotAndSquares(w: Float64Array, v: Float64Array): [number, number] {
  const hp = heap;
  if (hp && hp.holds(w) && hp.holds(v)) {
    hp.kernels.dotsq(w.byteOffset, v.byteOffset, w.length, hp.pair);
    const f = hp.all();
    return [f[hp.pair >>> 3], f[(hp.pair >>> 3) + 1]];
  }
  return [pairSum(w.length, (i) => w[i] * v[i]), pairSum(w.length, (i) => w[i] * w[i])];
}

/** The three-term recurrence w ← (w − a·v) − b·prev; returns the new ‖w‖². */
export function recurrence(w: Float64Array, v: Float64Array, prev: Float64Array, a: number, b: number): number {
  const hp = heap;
  if (hp && hp.holds(w) && hp.holds(v) && hp.holds(prev)) return hp.kernels.recur(w.byteOffset, v.byteOffset, prev.byteOffset, w.length, a, b);
  for (let i = 0; i < w.length; i++) w[i] = w[i] - a * v[i] - b * prev[i];
  return pairSum(w.length, (i) => w[i] * w[i]);
}

/** ‖w‖² as the kernels sum it. */
export function sumSquares(w: Float64Array): number {
  const hp = heap;
  if (hp && hp.holds(w)) return hp.kernels.sumsq(w.byteOffset, w.length);
  return pairSum(w.length, (i) => w[i] * w[i]);
}

/** w ← w·c. */
export function scaleBy(w: Float64Array, c: number): void {
  const hp = heap;
  if (hp && hp.holds(w)) return hp.kernels.scale(w.byteOffset, w.length, c);
  for (let i = 0; i < w.length; i++) w[i] *= c;
}

