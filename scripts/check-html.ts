/**
 * Renders lipcheck's HTML reports in a real headless browser (Debian's chromium) and saves PNG screenshots to look at:
 *
 *   npm run build && npx tsx scripts/check-html.ts [OUTDIR]        (default OUTDIR: scratch/html)
 *
 * Pages: the demo model (fixtures/demo.onnx) and, when ../shared/models is there, a long chain (acasxu_2_1) and a
 * ResNet (sri_resnet_b) as single-model reports written by `lipcheck --html`; a batch over a few fixtures written by
 * `lipcheck batch --html`; the same batch with per-model sections (renderHtml's `details`, from the models' --json
 * reports). Each page is loaded by chromium twice: --dump-dom must show the page's DOM with no console error (a
 * Content-Security-Policy violation or a script error fails the check), --screenshot writes OUTDIR/<page>.png.
 * Needs chromium on the PATH (`apt-get install -y chromium` on Debian); exits 2 without it. Not part of CI.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BatchRecord } from '../src/batch/record.js';
import { renderHtml } from '../src/report/html.js';
import type { LipschitzReport } from '../src/report/report.js';

const root = resolve(import.meta.dirname, '..');
const out = resolve(process.argv[2] ?? join(root, 'scratch/html'));
mkdirSync(out, { recursive: true });

const browser = ['chromium', 'chromium-browser', 'google-chrome'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);
if (!browser) {
  console.error('check-html: no chromium on the PATH; install it (Debian: apt-get install -y chromium) and run this again.');
  process.exit(2);
}
if (!existsSync(join(root, 'dist/cli/main.js'))) {
  console.error('check-html: dist/ is missing; run `npm run build` first.');
  process.exit(2);
}

const lipcheck = (args: string[]): void => {
  const r = spawnSync(process.execPath, [join(root, 'bin/lipcheck.js'), ...args, '--threads', '1'], { cwd: root, encoding: 'utf8' });
  // exit 1: a gate failed, 3: unbounded or discontinuous models in a batch; both still write the report
  if (r.status !== 0 && r.status !== 1 && r.status !== 3) throw new Error(`lipcheck ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
};

const shared = join(root, '../shared/models');
const singles: [string, string][] = [['model-demo', 'fixtures/demo.onnx']];
if (existsSync(shared)) singles.push(['model-acasxu-chain', '../shared/models/acasxu_2_1.onnx'], ['model-resnet', '../shared/models/sri_resnet_b.onnx']);
else console.log('check-html: ../shared/models is absent: only the demo model gets a single-model page.');

for (const [name, model] of singles) {
  lipcheck([model, '--html', join(out, `${name}.html`), '--json']);
  console.log(`check-html: ${name}.html from ${model}`);
}

// a batch over fixtures of every outcome: bounded chains, a residual net, unbounded, discontinuous, unreadable
const batchModels = ['demo', 'mlp_relu', 'mlp_tanh', 'residual', 'conv_bn', 'tiny_relu', 'product', 'argmax', 'broken_truncated'].map((m) => `fixtures/${m}.onnx`);
const jsonl = join(out, 'batch.jsonl');
rmSync(jsonl, { force: true }); // batch keeps an earlier --out only with --resume
lipcheck(['batch', ...batchModels, '--html', join(out, 'batch.html'), '--out', jsonl, '--jobs', '1', '--max', '20']);
console.log('check-html: batch.html from lipcheck batch');
const records: BatchRecord[] = readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as BatchRecord);
const details = new Map<string, LipschitzReport>();
for (const r of records.filter((x) => x.status === 'bounded')) {
  const file = join(out, `detail-${details.size}.json`);
  const res = spawnSync(process.execPath, [join(root, 'bin/lipcheck.js'), r.path, '--json', '--threads', '1'], { cwd: root, encoding: 'utf8' });
  writeFileSync(file, res.stdout);
  details.set(r.path, JSON.parse(res.stdout) as LipschitzReport);
}
writeFileSync(join(out, 'batch-details.html'), renderHtml({ kind: 'batch', records, details, title: 'lipcheck batch report with per-model sections' }));
console.log(`check-html: batch-details.html (${details.size} models with sections)`);

const pages: [string, number][] = [...singles.map(([n]): [string, number] => [n, 2600]), ['batch', 1500], ['batch-details', 9000]];
let failed = false;
for (const [name, height] of pages) {
  const url = `file://${join(out, `${name}.html`)}`;
  const common = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--force-device-scale-factor=1', '--virtual-time-budget=3000', '--enable-logging=stderr', '--v=0'];
  const dom = spawnSync(browser, [...common, '--dump-dom', url], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const consoleErrors = dom.stderr.split('\n').filter((l) => /Refused to|Uncaught|CONSOLE.*(error|Error)/.test(l));
  if (dom.status !== 0 || !dom.stdout.includes('</main>') || consoleErrors.length) {
    failed = true;
    console.error(`check-html: ${name}: chromium exit ${dom.status}${consoleErrors.length ? `, console errors:\n  ${consoleErrors.join('\n  ')}` : ', no DOM'}`);
    continue;
  }
  const png = join(out, `${name}.png`);
  execFileSync(browser, [...common, `--window-size=1200,${height}`, `--screenshot=${png}`, url], { stdio: ['ignore', 'ignore', 'ignore'] });
  console.log(`check-html: ${name}: DOM ok, screenshot ${png}`);
}
process.exit(failed ? 1 : 0);
