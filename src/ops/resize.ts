import type { LinearPrim, Shape } from '../ir/types.js';
import { toNumbers } from '../ir/tensor.js';
import { constantInput, dynamicInputs, unsupported, type ConvertContext, type Converter } from './context.js';
import { linearChain } from './linear.js';

const f32 = Math.fround;

/** How one axis is resized (ONNX Resize attributes, with onnxruntime's float32 coordinate arithmetic). */
export interface AxisResize {
  readonly mode: 'nearest' | 'linear' | 'cubic';
  /** coordinate_transformation_mode; 'asymmetric' for Upsample and Resize-10. */
  readonly transform: string;
  /** nearest_mode; 'simple' for Upsample and Resize-10 (truncate when upsampling, ceil when downsampling). */
  readonly nearest: string;
  readonly inLen: number;
  readonly outLen: number;
  readonly scale: number;
  readonly roi: readonly [number, number];
  readonly cubicA: number;
  readonly excludeOutside: boolean;
}

/** std::round: halves away from zero. */
const roundHalfAway = (x: number) => Math.sign(x) * Math.floor(Math.abs(x) + 0.5);

/** The input coordinate of output index x (onnxruntime's GetOriginalCoordinateFromResizedCoordinate). */
function originalCoordinate(p: AxisResize, x: number): number {
  const { scale, inLen: n, outLen: m, roi } = p;
  switch (p.transform) {
    case 'asymmetric': return f32(x / scale);
    case 'pytorch_half_pixel': return m > 1 ? f32(f32(f32(x + 0.5) / scale) - 0.5) : 0;
    case 'tf_half_pixel_for_nn': return f32(f32(x + 0.5) / scale);
    case 'align_corners': return m === 1 ? 0 : f32(f32(x * (n - 1)) / (m - 1));
    case 'tf_crop_and_resize': return m > 1
      ? f32(f32(roi[0] * (n - 1)) + f32(f32(f32(x * f32(roi[1] - roi[0])) * (n - 1)) / (m - 1)))
      : f32(0.5 * f32(roi[0] + roi[1]) * (n - 1));
    case 'half_pixel_symmetric': {
      const adjustment = f32(m / f32(scale * n));
      const offset = f32(f32(n / 2) * f32(1 - adjustment));
      return f32(offset + (x + 0.5) / scale - 0.5);
    }
    default: return f32(f32(f32(x + 0.5) / scale) - 0.5);
  }
}

function nearestIndex(p: AxisResize, c: number): number {
  switch (p.nearest) {
    case 'simple': return p.scale < 1 ? Math.ceil(c) : Math.trunc(c);
    case 'round_prefer_ceil': return roundHalfAway(c);
    case 'floor': return Math.floor(c);
    case 'ceil': return Math.ceil(c);
    default: return c === f32(Math.trunc(c) + 0.5) ? Math.floor(c) : roundHalfAway(c);
  }
}

/** Keys' cubic convolution weights of the four taps ⌊c⌋−1 … ⌊c⌋+2 at fractional offset s. */
function cubicWeights(s: number, a: number): number[] {
  const k = (d: number) => {
    const t = Math.abs(d);
    if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
    return 0;
  };
  return [k(s + 1), k(s), k(1 - s), k(2 - s)];
}

/**
 * The outLen × inLen matrix (row-major) of one resized axis. Resize is separable: the whole op is the product of these
 * matrices applied along their axes. Rows of points tf_crop_and_resize extrapolates are zero (the value is an offset).
 */
export function resizeAxisMatrix(p: AxisResize): Float64Array {
  const { inLen: n, outLen: m } = p;
  const w = new Float64Array(m * n);
  const extrapolate = p.transform === 'tf_crop_and_resize';
  for (let x = 0; x < m; x++) {
    // onnxruntime maps a unit-scale axis one to one, whatever the coordinate mode
    const c = p.scale === 1 ? x : originalCoordinate(p, x);
    if (extrapolate && (c < 0 || c > n - 1)) continue;
    if (p.mode === 'nearest') {
      w[x * n + Math.min(Math.max(nearestIndex(p, c), 0), n - 1)] = 1;
    } else if (p.mode === 'linear') {
      const cc = f32(Math.max(0, Math.min(c, n - 1)));
      const i1 = Math.min(Math.trunc(cc), n - 1), i2 = Math.min(i1 + 1, n - 1);
      const [d1, d2] = i1 === i2 ? [0.5, 0.5] : [f32(Math.abs(cc - i1)), f32(Math.abs(cc - i2))];
      w[x * n + i1] += d2;
      w[x * n + i2] += d1;
    } else {
      const base = Math.floor(c);
      const ws = cubicWeights(f32(c - base), p.cubicA);
      if (p.excludeOutside) {
        let sum = 0;
        ws.forEach((v, j) => { const i = base - 1 + j; if (i < 0 || i >= n) ws[j] = 0; else sum += v; });
        ws.forEach((v, j) => { ws[j] = v / sum; });
      }
      ws.forEach((v, j) => { w[x * n + Math.min(Math.max(base - 1 + j, 0), n - 1)] += v; });
    }
  }
  return w;
}

function isIdentity(w: Float64Array, rows: number, cols: number): boolean {
  if (rows !== cols) return false;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) if (w[i * cols + j] !== (i === j ? 1 : 0)) return false;
  return true;
}

/** The chain of axis matrices for a resize with per-axis scales (already expanded to every axis). */
function resizeChain(ctx: ConvertContext, scales: number[], roi: number[] | null, legacy: boolean): ReturnType<Converter> {
  const x = dynamicInputs(ctx)[0];
  const r = x.shape.length;
  const out = ctx.outShapes[0];
  const mode = ctx.attrs.string('mode', 'nearest');
  if (mode !== 'nearest' && mode !== 'linear' && mode !== 'cubic') unsupported(ctx, `mode '${mode}' is not one of nearest, linear, cubic`);
  if (ctx.attrs.int('antialias', 0) !== 0) unsupported(ctx, 'antialias=1 is not supported (the resampling filter is not implemented)');
  if (scales.length !== r) unsupported(ctx, `scales [${scales.join(', ')}] must have one entry per axis of the rank-${r} input`);
  const transform = legacy ? 'asymmetric' : ctx.attrs.string('coordinate_transformation_mode', 'half_pixel');
  const known = ['half_pixel', 'asymmetric', 'pytorch_half_pixel', 'tf_half_pixel_for_nn', 'align_corners', 'tf_crop_and_resize', 'half_pixel_symmetric'];
  if (!known.includes(transform)) unsupported(ctx, `coordinate_transformation_mode '${transform}' is not one of ${known.join(', ')}`);
  if (transform === 'tf_crop_and_resize' && (!roi || roi.length !== 2 * r)) unsupported(ctx, 'tf_crop_and_resize needs a constant roi with 2 entries per axis');
  const steps: { prim: LinearPrim; shape: Shape }[] = [];
  let shape = [...x.shape];
  // onnxruntime copies the input unchanged when no dimension changes, whatever the scales
  const same = out.every((d, i) => d === x.shape[i]);
  for (let a = 0; a < r && !same; a++) {
    const p: AxisResize = {
      mode, transform, nearest: legacy ? 'simple' : ctx.attrs.string('nearest_mode', 'round_prefer_floor'),
      inLen: x.shape[a], outLen: out[a], scale: f32(scales[a]),
      roi: roi ? [roi[a], roi[a + r]] : [0, 1], cubicA: ctx.attrs.float('cubic_coeff_a', -0.75), excludeOutside: ctx.attrs.int('exclude_outside', 0) !== 0,
    };
    const m = resizeAxisMatrix(p);
    if (isIdentity(m, out[a], x.shape[a])) continue;
    shape = [...shape];
    shape[a] = out[a];
    steps.push({ prim: { op: 'axisMatrix', axis: a, matrix: m, rows: out[a], cols: x.shape[a] }, shape });
  }
  if (steps.length === 0) steps.push({ prim: { op: 'reshape' }, shape });
  return linearChain(ctx, steps);
}

function constantNumbers(ctx: ConvertContext, i: number, what: string): number[] | null {
  const v = ctx.inputs[i];
  if (!v || v.name === '') return null;
  if (v.dynamic) unsupported(ctx, `input-dependent ${what} are not supported`);
  const t = constantInput(ctx, i);
  return t && t.dims.reduce((a, b) => a * b, 1) > 0 ? toNumbers(t) : null;
}

/** Resize (opset 10+): scales or sizes must be constants; every axis becomes a resampling matrix. */
const resize: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent roi, scales or sizes are not supported');
  const r = x.shape.length;
  if (ctx.opset < 11) {
    const s = constantNumbers(ctx, 1, 'scales');
    if (!s) unsupported(ctx, 'scales must be a constant');
    return resizeChain(ctx, s, null, true);
  }
  const roi = constantNumbers(ctx, 1, 'roi');
  const given = constantNumbers(ctx, 2, 'scales');
  const sizes = constantNumbers(ctx, 3, 'sizes');
  const axes = (ctx.attrs.ints('axes', null) ?? Array.from({ length: (sizes ?? given ?? []).length }, (_, i) => i)).map((a) => (a < 0 ? a + r : a));
  const scales = new Array(r).fill(1);
  let roiFull = roi;
  if (roi && ctx.attrs.has('axes')) {
    roiFull = [...new Array(r).fill(0), ...new Array(r).fill(1)];
    axes.forEach((a, i) => { roiFull![a] = roi[i]; roiFull![a + r] = roi[axes.length + i]; });
  }
  if (sizes) {
    axes.forEach((a, i) => { scales[a] = f32(f32(sizes[i]) / f32(x.shape[a])); });
    const policy = ctx.attrs.string('keep_aspect_ratio_policy', 'stretch');
    if (policy !== 'stretch') {
      const pick = axes.map((a) => scales[a]);
      const s = policy === 'not_larger' ? Math.min(...pick) : Math.max(...pick);
      axes.forEach((a) => { scales[a] = s; });
    }
  } else if (given) {
    axes.forEach((a, i) => { scales[a] = given[i]; });
  } else unsupported(ctx, 'neither scales nor sizes is given as a constant');
  return resizeChain(ctx, scales, roiFull, false);
};

/** Upsample (opsets 7–9): Resize-10 semantics (asymmetric coordinates), scales from the attribute or input 1. */
const upsample: Converter = (ctx) => {
  const x = dynamicInputs(ctx)[0];
  if (x.index !== 0) unsupported(ctx, 'input-dependent scales are not supported');
  const s = ctx.attrs.floats('scales', null) ?? constantNumbers(ctx, 1, 'scales');
  if (!s) unsupported(ctx, 'scales must be an attribute or a constant input');
  return resizeChain(ctx, s, null, true);
};

/** Converters of resampling ops. */
export const resizeConverters = { resize, upsample };
