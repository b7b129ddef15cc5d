import { Command, Option } from 'commander';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { parseBaseline } from '../batch/jsonl.js';
import { parsePercent, type Gates } from '../batch/gates.js';
import { LipcheckError } from '../errors.js';
import type { AnalyzeOptions } from '../index.js';
import { OPTIONS, type CommandName } from './options.js';

/** A numeric option, checked; undefined when absent. */
export function number(name: string, v: string | undefined, check: (x: number) => boolean, what: string): number | undefined {
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

/** The analysis options shared by `lipcheck [model]` and `lipcheck batch`, from commander's parsed values (plain data: they cross to batch workers). */
export function analysisOptions(opts: Record<string, any>): AnalyzeOptions {
  return {
/** Most onnxruntime intra-op threads --threads may ask for. */
export const MAX_THREADS = 1024;

    norm: opts.norm,
    method: opts.method,
    seqlipK: number('--seqlip-k', opts.seqlipK, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    cpWindow: number('--cp-window', opts.cpWindow, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    certify: opts.certify,
    delta: number('--delta', opts.delta, (x) => x > 0 && x < 1, 'in (0, 1)'),
    tol: number('--tol', opts.tol, (x) => x > 0 && x < 1, 'in (0, 1)'),
    iterations: number('--iterations', opts.iterations, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    seed: number('--seed', opts.seed, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    certifyBudgetMs: number('--certify-budget', opts.certifyBudget, (x) => x >= 0, 'a non-negative number of milliseconds'),
    lowerPairs: number('--lower-pairs', opts.lowerPairs, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    lowerBudgetMs: number('--lower-budget', opts.lowerBudget, (x) => x >= 0, 'a non-negative number of milliseconds'),
    device: opts.device,
    // onnxruntime would try to start every thread asked for (100 000 exhausts the process): a sane ceiling
    threads: number('--threads', opts.threads, (x) => Number.isInteger(x) && x >= 0 && x <= MAX_THREADS, `an integer from 0 (onnxruntime decides) to ${MAX_THREADS}`),
    inputName: opts.input,
    outputName: opts.output,
    inputShape: parseShape(opts.inputShape),
  };
}

/** The gates asked for by --max, --baseline and --max-increase (the baseline file is read here). */
export function gateOptions(opts: Record<string, any>): Gates {
  const max = number('--max', opts.max, (x) => x >= 0, 'a non-negative number');
  const maxIncrease = parsePercent(String(opts.maxIncrease ?? '0%'));
  if (maxIncrease === null) throw new LipcheckError('USAGE', `--max-increase '${opts.maxIncrease}' is invalid: give a non-negative percentage such as 10%.`);
  if (opts.baseline === undefined) return { max };
  let text: string;
  try {
    text = readFileSync(opts.baseline, 'utf8');
  } catch (e) {
    throw new LipcheckError('USAGE', `Cannot read the baseline '${opts.baseline}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Give the file an earlier 'lipcheck --json' or 'lipcheck batch --out' wrote.`, { cause: e });
  }
  return { max, baseline: parseBaseline(text, opts.baseline), maxIncrease };
}

/** Writes a whole file or nothing: a temporary file beside it, renamed into place. */
export function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new LipcheckError('USAGE', `Cannot write '${path}': ${(e as Error).message}.`, { cause: e });
  }
}

/** A commander program for one command, with its options registered from the OPTIONS table. */
export function commandFor(command: CommandName, name: string, description: string, after: string): Command {
  const program = new Command()
    .name(name)
    .description(description)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', after);
  for (const o of OPTIONS.filter((x) => x.commands.includes(command))) {
    const opt = new Option(o.flags, o.description);
    if (o.defaultValue !== undefined) opt.default(o.defaultValue);
    if (o.choices) opt.choices([...o.choices]);
    program.addOption(opt);
  }
  return program;
}

/** Parses argv; returns the exit code when commander already answered (help, version, a usage error it printed). */
export function parseArgs(program: Command, argv: readonly string[]): number | null {
  try {
    program.parse([...argv], { from: 'user' });
    return null;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
  }
}
