import type { LipschitzReport } from './report.js';

/** The report as JSON (schemaVersion 1, keys in a stable order, non-finite numbers as null). */
export function renderJson(report: LipschitzReport): string {
  return JSON.stringify(report, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}
