/** Regenerates the README's option and operator tables from src/cli/options.ts and src/ops/registry.ts. */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GROUP_HEADINGS, groupOf, OPTIONS, optionsInHelpOrder } from '../src/cli/options.js';
import { renderOpsTable } from '../src/report/ops-table.js';

/** The generated README sections: options (from the CLI's option records) and operators (from the registry). */
export function generatedSections(): Record<string, string> {
  const where = (o: (typeof OPTIONS)[number]) => (o.commands.length === 3 ? 'all' : o.commands.map((c) => (c === 'model' ? 'lipcheck' : c)).join(', '));
  // in --help order: a bold row opens each group (the common options first, under their own name here)
  const rows: string[] = [];
  let group = '';
  for (const o of optionsInHelpOrder()) {
    if (groupOf(o) !== group) {
      group = groupOf(o);
      rows.push(`| **${group === 'common' ? 'Common options' : GROUP_HEADINGS[groupOf(o)].replace(/:$/, '')}** | | | |`);
    }
    rows.push(`| \`${o.flags}\` | ${where(o)} | ${o.defaultValue !== undefined ? `\`${o.defaultValue}\`` : ''} | ${o.description}${o.choices ? ` (${o.choices.join(', ')})` : ''} |`);
  }
  const options = ['| option | commands | default | meaning |', '|---|---|---|---|', ...rows].join('\n') + '\n';
  return { options, ops: renderOpsTable(true) };
}

/** Replaces each `<!-- NAME:start -->…<!-- NAME:end -->` block of `text` with its generated content. */
export function fillSections(text: string, sections: Record<string, string>): string {
  let out = text;
  for (const [name, body] of Object.entries(sections)) {
    const re = new RegExp(`(<!-- ${name}:start -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`);
    if (!re.test(out)) throw new Error(`README has no <!-- ${name}:start --> block`);
    out = out.replace(re, (_m, a: string, b: string) => `${a}${body}${b}`);
  }
  return out;
}

export const README = fileURLToPath(new URL('../README.md', import.meta.url));

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(README, fillSections(readFileSync(README, 'utf8'), generatedSections()));
  console.log('README.md tables regenerated');
}
