import { OP_REGISTRY } from '../ops/registry.js';

/** The supported-operator table as Markdown (README) or aligned text (`--list-ops`), generated from the registry. */
export function renderOpsTable(markdown: boolean): string {
  const rows = OP_REGISTRY.map((r) => [r.opType, r.family, `${r.opsets[0]}–${r.opsets[1]}`, r.treatment]);
  const header = ['op', 'family', 'opsets', 'how lipcheck bounds it'];
  if (markdown) return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
  const w = header.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  return [header, ...rows].map((r) => r.map((s, j) => s.padEnd(w[j])).join('  ').trimEnd()).join('\n') + '\n';
}

/** The supported-operator table as JSON (`--list-ops --json`): one object per operator, in registry order. */
export function renderOpsJson(): string {
  const rows = OP_REGISTRY.map((r) => ({ opType: r.opType, domain: r.domain, family: r.family, opsets: [r.opsets[0], r.opsets[1]], treatment: r.treatment }));
  return JSON.stringify(rows, null, 2) + '\n';
}
