/** How much a reported value promises (ALGORITHMS.md, preamble). */
export type BoundKind = 'exact' | 'certified' | 'probabilistic' | 'estimate' | 'lower';

/** A value with its kind and the method that produced it. */
export interface Bound {
  readonly value: number;
  readonly kind: BoundKind;
  readonly method: string;
}

/** The norm a constant is measured in. */
export type NormKind = '2' | 'inf';

const STRENGTH: Record<BoundKind, number> = { exact: 4, certified: 3, probabilistic: 2, estimate: 1, lower: 0 };

/** The weakest of several upper-bound kinds: a composite bound promises only what its weakest part does. */
export function weakestKind(kinds: Iterable<BoundKind>): BoundKind {
  let k: BoundKind = 'certified';
  for (const x of kinds) if (STRENGTH[x] < STRENGTH[k]) k = x;
  return k;
}

/**
 * Whether `next` replaces `current` as a reported bound: where it is smaller, except that a certified bound stays
 * unless a probabilistic one is more than 0.1 % tighter (measureRegion's rule under --certify auto).
 */
export function displaces(next: Bound, current: Bound): boolean {
  const keepCertified = current.kind === 'certified' && next.kind !== 'certified';
  return next.value < current.value * (keepCertified ? 1 - 1e-3 : 1);
}
