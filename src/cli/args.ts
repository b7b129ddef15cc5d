import { Command, Option } from 'commander';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { parseBaseline } from '../batch/jsonl.js';
import { parsePercent, type Gates } from '../batch/gates.js';
import { LipcheckError } from '../errors.js';
import { LEGACY_MFLOP_PER_MS, type AnalyzeOptions } from '../index.js';
import { GROUP_HEADINGS, groupOf, OPTIONS, optionsInHelpOrder, type CommandName } from './options.js';

/** lipcheck's version, from its package.json (src/cli and dist/cli are both two levels below it). */
export const VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

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

/**
 * The old millisecond budgets, still accepted: read at a fixed rate, the work the reference machine did in that time
 * (--lower-budget 1 ms = --lower-work 4 Mflop, --certify-budget 1 ms = --certify-work 1.4 Mflop; index.ts LEGACY_MFLOP_PER_MS),
 * so they too give the same numbers on every machine. The report's settings show the budget in Mflop.
 */
function replacedBudget(name: string, v: string | undefined, mflopPerMs: number): number | undefined {
  const ms = number(name, v, (x) => x >= 0, 'a non-negative number of milliseconds (read as work; prefer the Mflop option that replaced it)');
  return ms === undefined ? undefined : ms * mflopPerMs;
}

/** Most onnxruntime intra-op threads --threads may ask for. */
export const MAX_THREADS = 1024;

/** The analysis options shared by `lipcheck [model]` and `lipcheck batch`, from commander's parsed values (plain data: they cross to batch workers). */
export function analysisOptions(opts: Record<string, any>): AnalyzeOptions {
  return {
    norm: opts.norm,
    method: opts.method,
    seqlipK: number('--seqlip-k', opts.seqlipK, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    sdpWork: number('--sdp-work', opts.sdpWork, (x) => x >= 0, 'a non-negative number of Mflop'),
    exactBudget: number('--exact-budget', opts.exactBudget, (x) => Number.isInteger(x) && x >= 1, 'a positive integer number of cells'),
    cpWindow: number('--cp-window', opts.cpWindow, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    certify: opts.certify,
    delta: number('--delta', opts.delta, (x) => x > 0 && x < 1, 'in (0, 1)'),
    tol: number('--tol', opts.tol, (x) => x > 0 && x < 1, 'in (0, 1)'),
    iterations: number('--iterations', opts.iterations, (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    seed: number('--seed', opts.seed, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    // the old name, when given, wins over the new one's default
    certifyBudget: replacedBudget('--certify-budget', opts.certifyBudget, LEGACY_MFLOP_PER_MS.certify) ?? number('--certify-work', opts.certifyWork, (x) => x >= 0, 'a non-negative number of Mflop'),
    lowerPairs: number('--lower-pairs', opts.lowerPairs, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    lowerBudget: replacedBudget('--lower-budget', opts.lowerBudget, LEGACY_MFLOP_PER_MS.lower) ?? (opts.lowerWork === 'auto' ? undefined : number('--lower-work', opts.lowerWork, (x) => x >= 0, "a non-negative number of Mflop or 'auto'")),
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

const commandOf = new WeakMap<Command, CommandName>();

/** A commander program for one command, with its options registered from the OPTIONS table. */
export function commandFor(command: CommandName, name: string, description: string, after: string): Command {
  const program = new Command()
    .name(name)
    .description(description)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', after);
  // the common options first (with -h, under "Options:"), then each group under its heading, expert ones near the end
  commandOf.set(program, command);
  for (const o of optionsInHelpOrder(command)) {
    if (o.flags.endsWith('--version')) {
      program.version(VERSION, o.flags, o.description);
      continue;
    }
    const opt = new Option(o.flags, o.description).helpGroup(GROUP_HEADINGS[groupOf(o)]);
    if (o.defaultValue !== undefined) opt.default(o.defaultValue);
    if (o.choices) opt.choices([...o.choices]);
    program.addOption(opt);
  }
  return program;
}

/** Parses argv; returns the exit code when commander already answered (help, version, a usage error it printed). */
export function parseArgs(program: Command, argv: readonly string[]): number | null {
  const command = commandOf.get(program);
  if (command !== undefined) {
    const foreign = foreignOption(command, argv);
    if (foreign) {
      process.stderr.write(`lipcheck: ${foreign}\n`);
      return 2;
    }
  }
  try {
    program.parse([...argv], { from: 'user' });
    return null;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
  }
}

const COMMAND_LINE: Readonly<Record<CommandName, string>> = { model: 'lipcheck [model]', batch: 'lipcheck batch', merge: 'lipcheck merge' };
/** What a batch/merge option is for, said to a user who gives it to another command (commander would suggest a look-alike). */
const FOREIGN_HINT: Readonly<Record<string, string>> = {
  '--out': "--out is the JSON-lines file of 'lipcheck batch' and 'lipcheck merge'. To save one model's report, redirect it: lipcheck model.onnx --json > report.json (--output selects a graph output).",
};

/**
 * The message for the first option of argv that another command takes but `command` does not (e.g. `lipcheck m.onnx
 * --out r.json`), or null: it names the command the option belongs to instead of suggesting a look-alike option.
 */
export function foreignOption(command: CommandName, argv: readonly string[]): string | null {
  for (const arg of argv) {
    if (arg === '--') break;
    if (!arg.startsWith('-') || arg === '-') continue;
    const flag = arg.split('=')[0];
    const owners = OPTIONS.filter((o) => o.flags.split(/[ ,]+/).includes(flag));
    if (owners.length === 0 || owners.some((o) => o.commands.includes(command))) continue;
    const where = [...new Set(owners.flatMap((o) => o.commands))].map((c) => `'${COMMAND_LINE[c]}'`).join(' and ');
    return FOREIGN_HINT[flag] && command === 'model' ? FOREIGN_HINT[flag] : `${flag} is an option of ${where}, not of '${COMMAND_LINE[command]}'. See ${command === 'model' ? 'lipcheck --help' : `lipcheck help ${command}`}.`;
  }
  return null;
}
