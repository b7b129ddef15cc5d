import { fileURLToPath } from 'node:url';
import { evaluateGates } from '../batch/gates.js';
import { recordFromError, recordFromReport, type BatchRecord } from '../batch/record.js';
import { isLipcheckError, LipcheckError } from '../errors.js';
import { analyze, graphOutputs, type LipschitzReport, type WitnessPair } from '../index.js';
import { renderHtml } from '../report/html.js';
import { renderJson } from '../report/json.js';
import { renderJunit } from '../report/junit.js';
import { renderOpsTable } from '../report/ops-table.js';
import { renderTable } from '../report/table.js';
import { analysisOptions, commandFor, gateOptions, parseArgs, writeAtomically } from './args.js';
import { runBatch, runMerge } from './batch.js';
import { EXIT, EXIT_FOR_ERROR } from './exit-codes.js';
import { reportError } from './fail.js';
import { createProgress } from './progress.js';

const DEMO = fileURLToPath(new URL('../../fixtures/demo.onnx', import.meta.url));

const AFTER = `
Commands:
  lipcheck [model] [options]        analyse one model (this help)
  lipcheck batch <paths...>         analyse many models in worker processes (lipcheck batch --help)
  lipcheck merge <files...>         join batch outputs of several shards (lipcheck merge --help)

Exit codes: 0 ok, 1 gate failed (--max, --baseline), 2 usage or unreadable file, 3 unsupported model, 4 runtime failure (or --certify strict impossible), 70 internal error.
Upper bounds are certified or probabilistic; estimates are labelled and never used as bounds.`;

function serialise(w: WitnessPair) {
  return { input: w.input, shape: w.shape, ratio: w.ratio, x: Array.from(w.x), xPrime: Array.from(w.xPrime) };
}

/** Runs the CLI; returns the exit code (the bin sets it). */
export async function main(argv: readonly string[]): Promise<number> {
  // `lipcheck … | head`: a reader that stops early is not an error; the exit code stays the analysis's
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EPIPE') throw e; });
  if (argv[0] === 'batch') return runBatch(argv.slice(1));
  if (argv[0] === 'merge') return runMerge(argv.slice(1));
  const program = commandFor('model', 'lipcheck', 'Upper and lower bounds on the Lipschitz constant of an ONNX model (AutoLip, Combettes–Pesquet; certified and probabilistic).', AFTER)
    .argument('[model]', 'ONNX model file (default: the bundled demo model)');
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
      process.stdout.write(renderOpsTable(false));
      return EXIT.OK;
    }
    junit = opts.junit;
    modelPath = program.args[0] ?? DEMO;
    const gates = gateOptions(opts);
    const useColor = opts.color !== false && !opts.json && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    let witness: WitnessPair | null = null;
    if (opts.allOutputs && (opts.output || opts.witness)) throw new LipcheckError('USAGE', `--all-outputs analyses every output: it cannot be combined with ${opts.output ? '--output' : '--witness'}.`);
    const outputs: (string | undefined)[] = opts.allOutputs ? graphOutputs(modelPath) : [opts.output];
    const reports: LipschitzReport[] = [];
    const peakRssMb = () => { const kb = process.resourceUsage().maxRSS; return kb ? Math.round(kb / 1024) : null; };
    for (const outputName of outputs) {
      const progress = createProgress(Boolean(process.stderr.isTTY) && !opts.json);
      reports.push(await analyze(modelPath, {
        ...analysisOptions(opts),
        outputName,
        onWitness: opts.witness ? (w) => { witness = w; } : undefined,
        onProgress: (d, t, w) => progress.update(d, t, w),
      }).then((r) => ({ ...r, resources: { peakRssMb: peakRssMb() } })).finally(() => progress.stop()));
    }
    if (opts.witness) {
      if (!witness) throw new LipcheckError('USAGE', `--witness ${opts.witness}: there is no witness pair (the model is discontinuous, or --lower-pairs is 0).`);
      writeAtomically(opts.witness, JSON.stringify({ schemaVersion: 1, model: reports[0].model.sha256, norm: reports[0].norm, ...serialise(witness) }) + '\n');
    }
    // with --all-outputs each output is gated and reported like one model of a batch, named model.onnx#output
    const records = reports.map((r) => recordFromReport(r, opts.allOutputs ? `${modelPath}#${r.output.name}` : modelPath, performance.now() - t0, null));
    const verdicts = evaluateGates(records, gates);
    if (opts.junit) writeAtomically(opts.junit, renderJunit(records, verdicts));
    if (opts.html) writeAtomically(opts.html, opts.allOutputs ? renderHtml({ kind: 'batch', records, gates: verdicts, title: modelPath }) : renderHtml({ kind: 'model', report: reports[0], gates: verdicts?.[0] ?? null }));
    if (opts.json) process.stdout.write(opts.allOutputs ? `[\n${reports.map((r) => renderJson(r).trimEnd()).join(',\n')}\n]\n` : renderJson(reports[0]));
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
