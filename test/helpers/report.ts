/**
 * What may differ between two runs of the same analysis: wall-clock timings, memory, and each layer's time in ms.
 * `stable` drops those keys everywhere in a report (typed arrays are kept as they are), so everything left must match.
 */
export function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'timings' || k === 'resources' || k === 'ms' || k === 'peakRssMb') continue;
    out[k] = stable(v);
  }
  return out;
}
