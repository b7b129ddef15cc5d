import { LipcheckError } from '../errors.js';
import type { Tensor } from './tensor.js';
import type { IrNode, LinearPrim } from './types.js';

/** float32's largest finite value: operators run in float32, so a larger weight or factor is infinite there. */
export const FLOAT32_MAX = 3.4028234663852886e38;
/** float32's smallest normal magnitude: 1/c of a smaller c (a denormal, or 0) is infinite or near float32's limit. */
export const FLOAT32_MIN_NORMAL = 2 ** -126;

/** What a scan of a tensor's numbers found. */
export interface NumberScan {
  readonly size: number;
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  /** Finite values of magnitude above FLOAT32_MAX. */
  readonly huge: number;
  readonly zero: number;
  /** Nonzero values of magnitude below FLOAT32_MIN_NORMAL. */
  readonly denormal: number;
  /** The first NaN or infinite value: its flat index and value. */
  readonly first: { readonly index: number; readonly value: number } | null;
}

/**
 * Scans already made, by data array: a model's tensors are not modified once decoded or converted, and a weight is
 * audited twice (as a node's constant, auditConstants, and as the converted prim's weight, auditIr).
 */
const scanned = new WeakMap<Float32Array | Float64Array, NumberScan>();

/** Counts NaN, infinite, overflowing, zero and denormal values of a float tensor; null for other element types. */
export function scanNumbers(t: Tensor): NumberScan | null {
  const d = t.data;
  if (!(d instanceof Float32Array || d instanceof Float64Array)) return null;
  const known = scanned.get(d);
  if (known) return known;
  let nan = 0, posInf = 0, negInf = 0, huge = 0, zero = 0, denormal = 0;
  let first: { index: number; value: number } | null = null;
  for (let i = 0; i < d.length; i++) {
    const v = d[i];
    // the common case first, one test: a normal float32-range magnitude (NaN fails it)
    const a = Math.abs(v);
    if (a >= FLOAT32_MIN_NORMAL && a <= FLOAT32_MAX) continue;
    if (v !== v) nan++;
    else if (v === Infinity) posInf++;
    else if (v === -Infinity) negInf++;
    else {
      if (a > FLOAT32_MAX) huge++;
      else if (a === 0) zero++;
      else denormal++;
      continue;
    }
    first ??= { index: i, value: v };
  }
  const s = { size: d.length, nan, posInf, negInf, huge, zero, denormal, first };
  scanned.set(d, s);
  return s;
}

/** "2 NaN and 1 +Infinity among 64 values (the first at element 3: NaN)", counting only the kinds asked for. */
export function describeScan(s: NumberScan, kinds: { nan?: boolean; inf?: boolean; huge?: boolean } = { nan: true, inf: true, huge: true }): string {
  const parts: string[] = [];
  if (kinds.nan && s.nan) parts.push(`${s.nan} NaN`);
  if (kinds.inf && s.posInf) parts.push(`${s.posInf} +Infinity`);
  if (kinds.inf && s.negInf) parts.push(`${s.negInf} -Infinity`);
  if (kinds.huge && s.huge) parts.push(`${s.huge} value${s.huge === 1 ? '' : 's'} beyond float32's range (±3.4e38)`);
  const at = s.first && (kinds.nan || kinds.inf) ? ` (the first at element ${s.first.index}: ${s.first.value})` : '';
  return `${parts.join(' and ')} among ${s.size} value${s.size === 1 ? '' : 's'}${at}`;
}

/** The number of values a scan flags as NaN, infinite or beyond float32 (an empty tensor has none). */
export function badCount(s: NumberScan): number {
  return s.nan + s.posInf + s.negInf + s.huge;
}

function primTensors(p: LinearPrim): [string, Tensor][] {
  switch (p.op) {
    case 'conv': case 'convTranspose': case 'matmul': return [['weights', p.weight]];
    case 'scale': return [['scaling factor', p.factor]];
    case 'axisMatrix': return [['selection matrix', { dtype: 'float64', dims: [p.rows, p.cols], data: p.matrix }]];
    default: return [];
  }
}

/**
 * The finite-number audit of converted IR nodes: every weight, factor and matrix an operator will be evaluated with
 * (finite and within float32's range), every activation's slope range and every nonlinear node's constants. These
 * values are computed from the model's constants (BatchNormalization's γ/√(var+ε), Div's 1/c, Gemm's α·B), so this
 * catches what the constants alone do not show. Returns one line per offending node.
 */
export function auditIr(nodes: readonly IrNode[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  const report = (n: IrNode, what: string) => {
    const key = `${n.opType}\u0000${n.name}`;
    if (seen.has(key)) return;
    seen.add(key);
    problems.push(`${n.opType} node '${n.name}': ${what}`);
  };
  for (const n of nodes) {
    if (n.kind === 'linear') {
      for (const [what, t] of primTensors(n.prim)) {
        const s = scanNumbers(t);
        if (s && badCount(s)) report(n, `its ${what}, computed from the node's constants, hold${what.endsWith('s') ? '' : 's'} ${describeScan(s)}.`);
      }
    } else if (n.kind === 'activation') {
      if (!n.slope.every(Number.isFinite)) report(n, `its slope range [${n.slope.join(', ')}], computed from the node's attributes, is not finite.`);
    } else if (n.kind === 'lipschitz') {
      if (!(n.l2 >= 0 && n.linf >= 0 && Number.isFinite(n.l2) && Number.isFinite(n.linf))) report(n, `its Lipschitz constants (ℓ2 ${n.l2}, ℓ∞ ${n.linf}), computed from the node's attributes, are not finite.`);
    }
  }
  return problems;
}

/** Most offending nodes a message lists; the error's details hold them all. */
const LISTED = 20;

/** The error for a model whose constants are NaN, infinite or overflow float32: exit 3, every node named. */
export function badNumbersError(file: string, problems: readonly string[]): LipcheckError {
  const k = problems.length;
  const listed = problems.slice(0, LISTED);
  const more = k > LISTED ? `\n  - … and ${k - LISTED} more` : '';
  return new LipcheckError(
    'UNSUPPORTED',
    `${file} has ${k} node${k === 1 ? '' : 's'} with NaN, infinite or overflowing numbers, so the model's output is NaN or infinite and no Lipschitz bound of it would mean anything:\n  - ${listed.join('\n  - ')}${more}\nFix these constants in the model (re-export it from its trained weights, or check the conversion that produced it) and run lipcheck again.`,
    { details: problems },
  );
}
