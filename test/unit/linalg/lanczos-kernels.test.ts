import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dotAndSquares, projectRange, projectRangeJs, recurrence, scaleBy, subtractRange, subtractRangeJs, sumSquares, wasmHeap } from '../../../src/linalg/lanczos-kernels.js';
import { projectBasis, subtractBasis } from '../../../src/linalg/lanczos.js';
import { kernelThread } from '../../../src/linalg/lanczos-threads.js';
import { Random } from '../../../src/linalg/random.js';
import { assemble, moduleSource } from '../../../scripts/gen-wasm.js';

/** Random chunks of 4 vectors of length n, in the heap and as plain copies. */
function operands(n: number, count: number, seed: number) {
  const heap = wasmHeap()!;
  const rng = new Random(seed);
  const chunks = Array.from({ length: Math.ceil(count / 4) }, () => { const a = heap.alloc(4 * n)!; for (let i = 0; i < a.length; i++) a[i] = rng.normal(); return a; });
  const w = heap.alloc(n)!;
  for (let i = 0; i < n; i++) w[i] = rng.normal();
  const h = heap.alloc(count)!;
  for (let b = 0; b < count; b++) h[b] = rng.normal();
  const release = () => { for (const a of [...chunks, w, h]) heap.release(a); };
  return { chunks, w, h, plain: { chunks: chunks.map((c) => Float64Array.from(c)), w: Float64Array.from(w), h: Float64Array.from(h) }, release };
}

test('the WebAssembly kernels give the JavaScript twins\' bits: every chunk grouping (pairs, a single chunk, loose vectors), odd and even ranges, offset starts', () => {
  assert.ok(wasmHeap(), 'the WebAssembly heap is available on Node 20');
  let cases = 0;
  for (const count of [1, 3, 4, 5, 8, 11, 13, 35]) {
    for (const [n, lo, hi] of [[1, 0, 1], [2, 0, 2], [7, 0, 7], [1000, 0, 1000], [1001, 3, 998], [1001, 4, 1001], [4097, 2048, 4097]]) {
      const o = operands(n, count, 100 * count + n);
      const hj = new Float64Array(count);
      projectRange(o.chunks, count, n, o.w, o.h, lo, hi);
      projectRangeJs(o.plain.chunks, count, n, o.plain.w, hj, lo, hi);
      for (let b = 0; b < count; b++) assert.ok(Object.is(o.h[b], hj[b]), `project n=${n} [${lo},${hi}) count=${count}: h[${b}] ${o.h[b]} vs ${hj[b]}`);
      subtractRange(o.chunks, count, n, o.w, o.h, lo, hi);
      subtractRangeJs(o.plain.chunks, count, n, o.plain.w, hj, lo, hi);
      for (let i = 0; i < n; i++) assert.ok(Object.is(o.w[i], o.plain.w[i]), `subtract n=${n} [${lo},${hi}) count=${count}: w[${i}]`);
      o.release();
      cases++;
    }
  }
  assert.equal(cases, 56);
});

test('the projection is the documented sum: even-i and odd-i terms apart, the odd tail into the even sum; the subtraction the left-to-right sum per element', () => {
  const n = 9, count = 9, lo = 1, hi = 8;
  const o = operands(n, count, 5);
  const q = (b: number, i: number) => o.plain.chunks[Math.floor(b / 4)][(b % 4) * n + i];
  projectRange(o.chunks, count, n, o.w, o.h, lo, hi);
  for (let b = 0; b < count; b++) {
    let e = 0, d = 0;
    for (let i = lo; i + 1 < hi; i += 2) { e += o.plain.w[i] * q(b, i); d += o.plain.w[i + 1] * q(b, i + 1); }
    e += o.plain.w[hi - 1] * q(b, hi - 1);
    assert.ok(Object.is(o.h[b], e + d), `h[${b}]`);
  }
  const w0 = Float64Array.from(o.w);
  subtractRange(o.chunks, count, n, o.w, o.h, lo, hi);
  for (let i = 0; i < n; i++) {
    if (i < lo || i >= hi) { assert.ok(Object.is(o.w[i], w0[i]), `w[${i}] outside the range is untouched`); continue; }
    // chunk pair (8 terms), then the loose ninth vector
    let s = o.h[0] * q(0, i);
    for (let b = 1; b < 8; b++) s += o.h[b] * q(b, i);
    const expect = (w0[i] - s) - o.h[8] * q(8, i);
    assert.ok(Object.is(o.w[i], expect), `w[${i}] ${o.w[i]} vs ${expect}`);
  }
  o.release();
});

test('projectBasis and subtractBasis on heap vectors (WebAssembly, kernel thread) equal the same calls on plain copies (JavaScript, one thread)', () => {
  const n = 70_001, count = 11;
  const o = operands(n, count, 21);
  const slot = wasmHeap()!.alloc(n)!;
  slot.set(o.plain.w);
  const h = wasmHeap()!.alloc(count)!;
  projectBasis(o.chunks, count, slot, h, true);
  const plainW = Float64Array.from(o.plain.w), plainH = new Float64Array(count);
  projectBasis(o.plain.chunks, count, plainW, plainH, false);
  for (let b = 0; b < count; b++) assert.ok(Object.is(h[b], plainH[b]), `h[${b}]`);
  subtractBasis(o.chunks, count, slot, h, true);
  subtractBasis(o.plain.chunks, count, plainW, plainH, false);
  for (let i = 0; i < n; i++) assert.ok(Object.is(slot[i], plainW[i]), `w[${i}]`);
  wasmHeap()!.release(slot);
  wasmHeap()!.release(h);
  o.release();
});

test('the step\'s own passes (dot and squares, recurrence, sum of squares, scaling) give the same bits in the heap (WebAssembly) and outside it (JavaScript), as the documented sums', () => {
  const heap = wasmHeap()!;
  const rng = new Random(8);
  for (const n of [1, 2, 3, 1000, 1001, 65_537]) {
    const [w, v, p] = [0, 1, 2].map(() => { const a = heap.alloc(n)!; for (let i = 0; i < n; i++) a[i] = rng.normal(); return a; });
    const [pw, pv, pp] = [w, v, p].map((a) => Float64Array.from(a));
    const even = (f: (i: number) => number) => { let e = 0, d = 0; for (let i = 0; i + 1 < n; i += 2) { e += f(i); d += f(i + 1); } if (n & 1) e += f(n - 1); return e + d; };
    const [dot, sq] = dotAndSquares(w, v);
    assert.deepEqual(dotAndSquares(pw, pv), [dot, sq], `n=${n}: dotAndSquares`);
    assert.ok(Object.is(dot, even((i) => pw[i] * pv[i])) && Object.is(sq, even((i) => pw[i] * pw[i])), `n=${n}: documented sums`);
    assert.ok(Object.is(sumSquares(w), sq) && Object.is(sumSquares(pw), sq), `n=${n}: sumSquares`);
    const r = recurrence(w, v, p, 0.3, -1.7), pr = recurrence(pw, pv, pp, 0.3, -1.7);
    assert.ok(Object.is(r, pr), `n=${n}: recurrence's ‖w‖² ${r} vs ${pr}`);
    for (let i = 0; i < n; i++) assert.ok(Object.is(w[i], pw[i]), `n=${n}: recurrence w[${i}]`);
    scaleBy(w, 1 / 3);
    scaleBy(pw, 1 / 3);
    for (let i = 0; i < n; i++) assert.ok(Object.is(w[i], pw[i]), `n=${n}: scaleBy w[${i}]`);
    for (const a of [w, v, p]) heap.release(a);
  }
});

test('the kernel thread reads vectors in memory the heap grew after it started (same bits as one thread)', () => {
  const t = kernelThread({ wait: true });
  if (!t) { console.log('# single core: no kernel thread, nothing to check'); return; }
  const heap = wasmHeap()!;
  const before = heap.memory.buffer.byteLength;
  // more than the memory holds now: the heap grows, and these vectors lie in the new pages
  const n = Math.ceil(before / 8 / 5) + 70_001, count = 5;
  const o = operands(n, count, 33);
  assert.ok(heap.memory.buffer.byteLength > before, 'the heap grew');
  const jobs = t.jobs;
  const h = heap.alloc(count)!;
  projectBasis(o.chunks, count, o.w, h, true);
  subtractBasis(o.chunks, count, o.w, h, true);
  assert.ok(t.jobs >= jobs + 2, 'both halves went to the thread');
  const ph = new Float64Array(count);
  projectBasis(o.plain.chunks, count, o.plain.w, ph, false);
  subtractBasis(o.plain.chunks, count, o.plain.w, ph, false);
  for (let b = 0; b < count; b++) assert.ok(Object.is(h[b], ph[b]), `h[${b}]`);
  for (let i = 0; i < n; i += 997) assert.ok(Object.is(o.w[i], o.plain.w[i]), `w[${i}]`);
  heap.release(h);
  o.release();
});

test('the heap reuses released blocks: first fit, neighbours merged, the top given back', () => {
  const heap = wasmHeap()!;
  const a = heap.alloc(1000)!, b = heap.alloc(1000)!, c = heap.alloc(1000)!;
  assert.ok(b.byteOffset > a.byteOffset && c.byteOffset > b.byteOffset);
  a.fill(1); b.fill(2); c.fill(3);
  heap.release(b);
  heap.release(a);
  // a and b merged: a block of twice the size fits where a was, and c kept its values
  const ab = heap.alloc(2000)!;
  assert.equal(ab.byteOffset, a.byteOffset);
  assert.ok(c.every((x) => x === 3));
  heap.release(c);
  heap.release(ab);
  // everything given back: the next block starts where a did
  const d = heap.alloc(10)!;
  assert.equal(d.byteOffset, a.byteOffset);
  heap.release(d);
  // a block larger than the memory grows it; the old views stay valid
  const big = heap.alloc(3_000_000)!;
  big[2_999_999] = 7;
  assert.equal(big[2_999_999], 7);
  assert.ok(heap.holds(big) && heap.holds(a) && !heap.holds(new Float64Array(4)));
  heap.release(big);
});

test('src/linalg/lanczos-wasm.ts is lanczos-kernels.wat assembled (npm run gen:wasm)', async () => {
  const committed = readFileSync(new URL('../../../src/linalg/lanczos-wasm.ts', import.meta.url), 'utf8');
  assert.equal(committed, moduleSource(await assemble()));
});
