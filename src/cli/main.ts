import { fileURLToPath } from 'node:url';
import { evaluateGates, gatesJson } from '../batch/gates.js';
import { recordFromError, recordFromReport, type BatchRecord } from '../batch/record.js';
import { isLipcheckError, LipcheckError } from '../errors.js';
import { analyze, graphOutputs, type LipschitzReport, type WitnessPair } from '../index.js';
import { renderHtml } from '../report/html.js';
import { renderJson } from '../report/json.js';
import { renderJunit } from '../report/junit.js';
import { renderOpsJson, renderOpsTable } from '../report/ops-table.js';
import { renderTable } from '../report/table.js';
import { analysisOptions, commandFor, gateOptions, parseArgs, writeAtomically } from './args.js';
import { runBatch, runMerge } from './batch.js';
import { EXIT, EXIT_FOR_ERROR } from './exit-codes.js';
import { reportError } from './fail.js';
import { MALLOC_TUNABLES, RELAUNCH_MIN_BYTES, relaunchWithTunables, wantsRelaunch } from './relaunch.js';
import { createPhaseProgress, progressMode } from './phase-progress.js';
import { checkStdinModel, readModelFromStream, STDIN_NAME } from './stdin.js';

const DEMO = fileURLToPath(new URL('../../fixtures/demo.onnx', import.meta.url));

const AFTER = `
Commands:
  lipcheck [model] [options]        analyse one model (this help); '-' reads it from stdin
  lipcheck batch <paths...>         analyse many models in worker processes (lipcheck help batch)
  lipcheck merge <files...>         join batch outputs of several shards (lipcheck help merge)
  lipcheck help [command]           this help, or the help of batch or merge

stdout carries only the report (table or --json); warnings and progress go to stderr.
Exit codes: 0 ok, 1 gate failed (--max, --baseline), 2 usage or unreadable file, 3 unsupported model, 4 runtime failure (or --certify strict impossible), 5 device unavailable (--device cuda|webgpu), 70 internal error.
Upper bounds are certified or probabilistic; estimates are labelled and never used as bounds.`;

function serialise(w: WitnessPair) {
  return { input: w.input, shape: w.shape, ratio: w.ratio, x: Array.from(w.x), xPrime: Array.from(w.xPrime) };
}

/**
 * Runs the CLI; returns the exit code (the bin sets it). `relaunch` (the bin passes it; tests calling main in-process do
 * not) lets a large model's analysis move to a child process with glibc's malloc tunables (relaunch.ts).
 */
export async function main(argv: readonly string[], { relaunch = false }: { relaunch?: boolean } = {}): Promise<number> {
  // `lipcheck … | head`: a reader that stops early is not an error; the exit code stays the analysis's
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EPIPE') throw e; });
  if (argv[0] === 'help') return help(argv.slice(1));
  if (argv[0] === 'batch') return runBatch(argv.slice(1));
  if (argv[0] === 'merge') return runMerge(argv.slice(1));
  const program = commandFor('model', 'lipcheck', 'Upper and lower bounds on the Lipschitz constant of an ONNX model (AutoLip, Combettes–Pesquet; certified and probabilistic).', AFTER)
    .argument('[model]', "ONNX model file, or '-' to read it from stdin (default: the bundled demo model)")
    // several paths get a message that points to `lipcheck batch`, not commander's "too many arguments"
    .allowExcessArguments(true);
  let debug = argv.includes('--debug');
  let junit: string | undefined;
  let modelPath = DEMO;
  const t0 = performance.now();
  try {
    const answered = parseArgs(program, argv);
    if (answered !== null) return answered;
    const opts = program.opts();
    debug = Boolean(opts.debug);
    if (opts.listOps) {
      process.stdout.write(opts.json ? renderOpsJson() : renderOpsTable(false));
      return EXIT.OK;
    }
    junit = opts.junit;
    if (program.args.length > 1) {
      const quoted = program.args.map((a) => (/^[\w./@%+=:,-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
      throw new LipcheckError('USAGE', `lipcheck analyses one model per run, and ${program.args.length} were given. For several models run: lipcheck batch ${quoted} (worker processes, a summary and the same gates; --json or --out for one JSON line per model).`);
    }
    if (opts.quiet && opts.verbose) throw new LipcheckError('USAGE', '--quiet and --verbose contradict each other: give one of them.');
    modelPath = program.args[0] ?? DEMO;
    if (relaunch && wantsRelaunch(modelPath, process.env, process.platform)) {
      if (opts.verbose) process.stderr.write(`lipcheck: ${modelPath} is ${RELAUNCH_MIN_BYTES / 2 ** 20} MiB or more: analysing it in a child process with glibc's malloc tunables (${MALLOC_TUNABLES}); set GLIBC_TUNABLES yourself to run in this process.\n`);
      const code = await relaunchWithTunables(argv);
      if (code !== null) return code;
    }
    const fromStdin = modelPath === '-';
    if (fromStdin) modelPath = STDIN_NAME;
    const stdinBytes = fromStdin ? await readModelFromStream(process.stdin) : null;
    const stdinOutputs = stdinBytes ? checkStdinModel(stdinBytes) : null;
    const model = stdinBytes ? { bytes: stdinBytes, name: STDIN_NAME } : modelPath;
    const say = (line: string) => { if (!opts.quiet) process.stderr.write(`lipcheck: ${line}\n`); };
    const gates = gateOptions(opts);
    const useColor = opts.color !== false && !opts.json && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    let witness: WitnessPair | null = null;
    if (opts.allOutputs && (opts.output || opts.witness)) throw new LipcheckError('USAGE', `--all-outputs analyses every output: it cannot be combined with ${opts.output ? '--output' : '--witness'}.`);
    // --all-outputs: every graph output; none to list (bytes that do not decode, no outputs) leaves the error to analyze
    const listed = opts.allOutputs ? (fromStdin ? stdinOutputs ?? [] : graphOutputs(modelPath)) : [];
    const outputs: (string | undefined)[] = opts.allOutputs && listed.length ? listed : [opts.output];
    const reports: LipschitzReport[] = [];
    let deviceSaid = false;
    const peakRssMb = () => { const kb = process.resourceUsage().maxRSS; return kb ? Math.round(kb / 1024) : null; };
    for (const outputName of outputs) {
      // progress on stderr only, so also with --json: a bar on a terminal, a line per phase in logs, none with -q
      const label = opts.allOutputs && outputName ? `${modelPath}#${outputName}` : modelPath;
      const progress = createPhaseProgress(progressMode({ quiet: opts.quiet, verbose: opts.verbose, stderrIsTTY: Boolean(process.stderr.isTTY) }), label, (t) => process.stderr.write(t));
      reports.push(await analyze(model, {
        ...analysisOptions(opts),
        outputName,
        onWitness: opts.witness ? (w) => { witness = w; } : undefined,
        // --verbose says which device the operators run on (under auto: once the model is built) and why not CUDA
        onDevice: (device) => {
          if (!opts.verbose || deviceSaid) return;
          deviceSaid = true;
          say(`device: ${device.provider} (--device ${opts.device})${device.notice ? `. ${device.notice}` : ''}`);
        },
        onProgress: (d, t, w, phase) => progress.update(d, t, w, phase),
      }).then((r) => ({ ...r, resources: { peakRssMb: peakRssMb() } })).finally(() => progress.stop()));
    }
    // warnings are part of the report (--json: its warnings array) but go to stderr, so that stdout is the report alone
    for (const r of reports) for (const w of r.warnings) say(`warning: ${opts.allOutputs ? `${r.output.name}: ` : ''}${w}`);
    if (opts.witness) {
      if (!witness) throw new LipcheckError('USAGE', `--witness ${opts.witness}: there is no witness pair (the model is discontinuous, or --lower-pairs is 0).`);
      writeAtomically(opts.witness, JSON.stringify({ schemaVersion: 1, model: reports[0].model.sha256, norm: reports[0].norm, ...serialise(witness) }) + '\n');
    }
    // with --all-outputs each output is gated and reported like one model of a batch, named model.onnx#output
    const records = reports.map((r) => recordFromReport(r, opts.allOutputs ? `${modelPath}#${r.output.name}` : modelPath, performance.now() - t0, null));
    const verdicts = evaluateGates(records, gates);
    if (opts.junit) writeAtomically(opts.junit, renderJunit(records, verdicts));
    if (opts.html) writeAtomically(opts.html, opts.allOutputs ? renderHtml({ kind: 'batch', records, gates: verdicts, title: modelPath, details: new Map(records.map((rec, i) => [rec.path, reports[i]])) }) : renderHtml({ kind: 'model', report: reports[0], gates: verdicts?.[0] ?? null }));
    // --json carries the gate verdicts (src/batch/gates.ts, shared with batch): CI reads them instead of guessing from the exit code
    const withGates = reports.map((r, k) => ({ ...r, gates: gatesJson(verdicts?.[k]) }));
    if (opts.json) process.stdout.write(opts.allOutputs ? `[\n${withGates.map((r) => renderJson(r).trimEnd()).join(',\n')}\n]\n` : renderJson(withGates[0]));
    else process.stdout.write(reports.map((r) => renderTable(r, useColor)).join('\n'));
    const failed = (verdicts ?? []).filter((v) => !v.passed);
    for (const v of failed) for (const c of v.checks.filter((x) => !x.passed)) process.stderr.write(`lipcheck: gate failed${opts.allOutputs ? ` (${v.path})` : ''}: ${c.message}.\n`);
    if (failed.length) return EXIT.GATE_FAILED;
    return EXIT.OK;
  } catch (e) {
    // a CI job that asked for JUnit gets a file even when the model could not be analysed
    if (junit) {
      const error = isLipcheckError(e) ? { code: e.code, exit: EXIT_FOR_ERROR[e.code], message: e.message } : { code: 'INTERNAL' as const, exit: EXIT.INTERNAL, message: `internal error: ${(e as Error).message}` };
      const record: BatchRecord = recordFromError(modelPath, null, error, '2', performance.now() - t0, null);
      try { writeAtomically(junit, renderJunit([record], null)); } catch { /* the analysis error below is the one to report */ }
    }
    return reportError(e, debug);
  }
}

/** `lipcheck help [command]`: the help of the single-model command, or of batch or merge. */
function help(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  if (rest.length || (command !== undefined && !['batch', 'merge', 'model'].includes(command))) {
    process.stderr.write(`lipcheck: there is no command '${args.join(' ')}'. The commands are: lipcheck [model], lipcheck batch, lipcheck merge; see lipcheck help, lipcheck help batch or lipcheck help merge.\n`);
    return Promise.resolve(EXIT.USAGE);
  }
  if (command === 'batch') return runBatch(['--help']);
  if (command === 'merge') return runMerge(['--help']);
  return main(['--help']);
}
