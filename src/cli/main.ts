import { Command, Option } from 'commander';
import { fileURLToPath } from 'node:url';
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { analyze, type WitnessPair } from '../index.js';
import { isLipcheckError, LipcheckError } from '../errors.js';
import { renderJson } from '../report/json.js';
import { renderOpsTable } from '../report/ops-table.js';
import { renderTable } from '../report/table.js';
import { EXIT, EXIT_FOR_ERROR } from './exit-codes.js';
import { OPTIONS } from './options.js';
import { createProgress } from './progress.js';

const DEMO = fileURLToPath(new URL('../../fixtures/demo.onnx', import.meta.url));

function number(name: string, v: string | undefined, check: (x: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || !check(x)) throw new LipcheckError('USAGE', `${name} '${v}' is invalid: it must be ${what}.`);
  return x;
}

function parseShape(v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const dims = v.split(/[,x×]/).map((s) => Number(s.trim()));
  if (dims.length === 0 || dims.some((d) => !Number.isSafeInteger(d) || d < 1)) throw new LipcheckError('USAGE', `--input-shape '${v}' is invalid: give positive integers separated by commas, e.g. 1,3,224,224.`);
  return dims;
}

function serialise(w: WitnessPair) {
  return { input: w.input, shape: w.shape, ratio: w.ratio, x: Array.from(w.x), xPrime: Array.from(w.xPrime) };
}

/** Writes a whole file or nothing: a temporary file beside it, renamed into place. */
function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new LipcheckError('USAGE', `Cannot write '${path}': ${(e as Error).message}.`, { cause: e });
  }
}

/** Runs the CLI; returns the exit code (the bin sets it). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('lipcheck')
    .description('Upper and lower bounds on the Lipschitz constant of an ONNX model (AutoLip, certified and probabilistic).')
    .argument('[model]', 'ONNX model file (default: the bundled demo model)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', '\nExit codes: 0 ok, 1 gate failed (--max), 2 usage or unreadable file, 3 unsupported model, 4 runtime failure (or --certify strict impossible), 70 internal error.\nUpper bounds are certified or probabilistic; estimates are labelled and never used as bounds.');
  for (const o of OPTIONS) {
    const opt = new Option(o.flags, o.description);
    if (o.defaultValue !== undefined) opt.default(o.defaultValue);
    if (o.choices) opt.choices([...o.choices]);
    program.addOption(opt);
  }
  let debug = argv.includes('--debug');
  try {
    try {
      program.parse([...argv], { from: 'user' });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'commander.helpDisplayed' || code === 'commander.version') return EXIT.OK;
      return EXIT.USAGE;
    }
    const opts = program.opts();
    debug = Boolean(opts.debug);
    if (opts.listOps) {
      process.stdout.write(renderOpsTable(false));
      return EXIT.OK;
    }
    const max = number('--max', opts.max, (x) => x >= 0, 'a non-negative number');
    const useColor = opts.color !== false && !opts.json && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    let witness: WitnessPair | null = null;
    const progress = createProgress(Boolean(process.stderr.isTTY) && !opts.json);
    const report = await analyze(program.args[0] ?? DEMO, {
      norm: opts.norm,
      method: opts.method,
      cpWindow: number('--cp-window', opts.cpWindow, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
      certify: opts.certify,
      delta: number('--delta', opts.delta, (x) => x > 0 && x < 1, 'in (0, 1)'),
      tol: number('--tol', opts.tol, (x) => x > 0 && x < 1, 'in (0, 1)'),
      iterations: number('--iterations', opts.iterations, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
      seed: number('--seed', opts.seed, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
      certifyBudgetMs: number('--certify-budget', opts.certifyBudget, (x) => x >= 0, 'a non-negative number of milliseconds'),
      lowerPairs: number('--lower-pairs', opts.lowerPairs, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
      lowerBudgetMs: number('--lower-budget', opts.lowerBudget, (x) => x >= 0, 'a non-negative number of milliseconds'),
      onWitness: opts.witness ? (w) => { witness = w; } : undefined,
      device: opts.device,
      threads: number('--threads', opts.threads, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
      inputName: opts.input,
      outputName: opts.output,
      inputShape: parseShape(opts.inputShape),
      onProgress: (d, t, w) => progress.update(d, t, w),
    }).finally(() => progress.stop());
    if (opts.witness) {
      if (!witness) throw new LipcheckError('USAGE', `--witness ${opts.witness}: there is no witness pair (the model is discontinuous, or --lower-pairs is 0).`);
      writeAtomically(opts.witness, JSON.stringify({ schemaVersion: 1, model: report.model.sha256, norm: report.norm, ...serialise(witness) }) + '\n');
    }
    process.stdout.write(opts.json ? renderJson(report) : renderTable(report, useColor));
    if (max !== undefined) {
      const g = report.global;
      if (g.status !== 'bounded' || !g.upper || g.upper.value > max) {
        const why = g.status !== 'bounded' ? `the model is ${g.status}` : `the upper bound ${g.upper!.value} (${g.upper!.kind}) exceeds --max ${max}`;
        process.stderr.write(`lipcheck: gate failed: ${why}.\n`);
        return EXIT.GATE_FAILED;
      }
    }
    return EXIT.OK;
  } catch (e) {
    if (isLipcheckError(e)) {
      process.stderr.write(`lipcheck: ${e.message}\n`);
      if (e.code === 'INTERNAL') process.stderr.write('This is a bug in lipcheck; please report it with the command and the model.\n');
      if (debug && e.cause) process.stderr.write(`${(e.cause as Error).stack ?? e.cause}\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
      return EXIT_FOR_ERROR[e.code];
    }
    process.stderr.write(`lipcheck: internal error: ${(e as Error).message ?? e}\nThis is a bug in lipcheck; please report it with the command and the model${debug ? '' : ' (rerun with --debug for a stack trace)'}.\n`);
    if (debug) process.stderr.write(`${(e as Error).stack}\n`);
    return EXIT.INTERNAL;
  }
}


