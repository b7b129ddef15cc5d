/** The commands of the CLI: `lipcheck [model]`, `lipcheck batch PATH…`, `lipcheck merge FILE…`. */
export type CommandName = 'model' | 'batch' | 'merge';

/**
 * Where `--help` lists an option: the common options first (under commander's own "Options:" heading, with -h), then
 * the others by theme, the expert knobs last but one. An option without a group is an expert one.
 */
export type OptionGroup = 'common' | 'model' | 'reports' | 'batch' | 'expert' | 'other';

/** The help headings, in the order `--help` and the README show the groups. */
export const GROUP_HEADINGS: Readonly<Record<OptionGroup, string>> = {
  common: 'Options:',
  model: 'Model inputs and outputs:',
  reports: 'Reports:',
  batch: 'Batch:',
  expert: 'Expert options (methods, budgets, threads; the defaults suit most models):',
  other: 'Other:',
};

/** One command-line option, as data: registered on commander in a loop and listed in the README. */
export interface OptionRecord {
  readonly flags: string;
  readonly description: string;
  readonly defaultValue?: string;
  readonly choices?: readonly string[];
  /** The commands that take it. */
  readonly commands: readonly CommandName[];
  /** Its heading in --help (default: expert). */
  readonly group?: OptionGroup;
}

/** An option's group, expert when it names none. */
export function groupOf(o: OptionRecord): OptionGroup {
  return o.group ?? 'expert';
}

/** The options of `command` (all commands when omitted), ordered by group as --help shows them, table order within a group. */
export function optionsInHelpOrder(command?: CommandName): OptionRecord[] {
  const order = Object.keys(GROUP_HEADINGS) as OptionGroup[];
  return OPTIONS.filter((o) => command === undefined || o.commands.includes(command)).map((o, i) => ({ o, i })).sort((a, b) => order.indexOf(groupOf(a.o)) - order.indexOf(groupOf(b.o)) || a.i - b.i).map((x) => x.o);
}

const ALL: readonly CommandName[] = ['model', 'batch', 'merge'];
const ANALYSIS: readonly CommandName[] = ['model', 'batch'];

/** Every option of every command. */
export const OPTIONS: readonly OptionRecord[] = [
  { flags: '--json', description: 'print the report as JSON (schemaVersion 1, see docs/json-schema.md) with the gate verdicts (gates: [{name, limit, value, passed}]); for batch and merge, one JSON line per model and a closing summary line', commands: ALL, group: 'common' },
  { flags: '--max <L>', description: 'gate: exit 1 when an upper bound exceeds L, or a model is unbounded, discontinuous or could not be analysed', commands: ALL, group: 'common' },
  { flags: '--baseline <file>', description: 'gate: compare with an earlier `--json` report or batch `--out` file (models matched by path)', commands: ALL, group: 'common' },
  { flags: '--max-increase <pct>', description: 'with --baseline: exit 1 when a bound grew by more than this (e.g. 10%), or a bounded model no longer is', defaultValue: '0%', commands: ALL, group: 'common' },
  { flags: '--fail-on-missing', description: 'with --baseline: exit 1 when a model of the baseline is not in this run (removed or renamed); the summary always counts compared, new and missing models', commands: ['batch', 'merge'], group: 'common' },
  { flags: '--junit <file>', description: 'write a JUnit XML report (one test case per model, failures for gates) for CI systems', commands: ALL, group: 'reports' },
  { flags: '--html <file>', description: 'write a self-contained HTML report (per-layer chart for one model; sortable table and chart for a batch)', commands: ALL, group: 'reports' },
  { flags: '--method <m>', description: 'autolip: product of operator norms; cp: Combettes–Pesquet (LipLT) on sequential segments; seqlip: SeqLip there (ℓ2; certified on small conv-free segments, greedy value shown as an estimate); sdp: LipSDP-Neuron and LipSDP-Layer there, and ECLipsE (a layer-by-layer feasible point of the same LMI) where Neuron does not converge, the smaller kept (ℓ2, interior point, certified by Cholesky after solving; conv segments when their matrices fit); exact: the exact constant of ReLU/LeakyReLU chains, by enumerating linear regions (1 or 2 inputs) or by branch and bound over activation patterns with HiGHS LPs (3 or more inputs); kind exact when a witnessed pair meets it within 1e-6, else the certified bracket reached; best: the smallest valid bound per segment (SeqLip only where certifiable, LipSDP where it fits its work budget, ECLipsE where LipSDP-Neuron did not converge and its own budget allows), residual blocks bounded with their skip inside the linear term and, on graphs of regions, sums and elementwise activations, the whole-graph expansion graph-cp, also on the graph rescaled per channel at its activations (ℓ2, where they fit their work budgets), exact where it applies, and with --norm inf never above √n_in × the ℓ2 bound (where the ℓ2 operator norms fit their work cap)', defaultValue: 'best', choices: ['autolip', 'cp', 'seqlip', 'sdp', 'exact', 'best'], commands: ANALYSIS },
  { flags: '--exact-budget <cells>', description: 'cells the exact region enumeration may visit, or the branch and bound may spend (a node 1, an LP 20; under best at most 2000) (--method exact or best); past it the bracket reached is reported, never a guess (default: 200000)', commands: ANALYSIS },
  { flags: '--seqlip-k <k>', description: 'singular triplets per operator for greedy SeqLip (an estimate; the rest of the spectrum enters through σ_{k+1})', defaultValue: '32', commands: ANALYSIS },
  { flags: '--sdp-work <Mflop>', description: 'work budget of LipSDP (--method sdp or best) over all segments, in millions of floating-point operations of its own count (2 per multiply-add), never time; a segment whose LMI needs more is left to the other methods (default: 16000 under best, 200000 under sdp; under best, the eigenvalue LipSDP-Neuron method for segments the dense solver cannot take has 20000 more unless this is given)', commands: ANALYSIS },
  { flags: '--cp-window <w>', description: 'longest partial product CP measures directly; longer ones are bounded by products (0: no limit)', defaultValue: '0', commands: ANALYSIS },
  { flags: '--norm <p>', description: 'norm on input and output', defaultValue: '2', choices: ['2', 'inf'], commands: ANALYSIS, group: 'common' },
  { flags: '--certify <mode>', description: 'strict: only certified bounds (exit 4 if impossible); auto: tightest certified or probabilistic; off: probabilistic only; none: quick estimates (Lanczos stops when they converge) with only the free, loose certified bounds', defaultValue: 'auto', choices: ['strict', 'auto', 'off', 'none'], commands: ANALYSIS },
  { flags: '--certify-work <Mflop>', description: 'work budget of each deterministic certificate (FFT, SVD), in millions of floating-point operations of a fixed cost model, never time; past it: Schur bound or probabilistic (0: no costly certificates)', defaultValue: '2800', commands: ANALYSIS },
  { flags: '--certify-budget <ms>', description: 'old name of --certify-work, read at a fixed rate: N ms = 1.4·N Mflop (the work the reference machine did in N ms), so it no longer depends on the machine\'s load', commands: ANALYSIS },
  { flags: '--delta <p>', description: 'failure probability of each probabilistic operator bound', defaultValue: '1e-6', commands: ANALYSIS },
  { flags: '--tol <t>', description: 'relative slack allowed between a probabilistic bound and its estimate (sets Lanczos steps)', defaultValue: '0.05', commands: ANALYSIS },
  { flags: '--iterations <k>', description: 'maximum Lanczos steps per operator', defaultValue: '200', commands: ANALYSIS },
  { flags: '--seed <n>', description: 'seed of every random start (recorded in the report)', defaultValue: '0', commands: ANALYSIS },
  { flags: '--lower-pairs <n>', description: 'random pairs for the lower bound where Jacobian ascent cannot run (0: no lower bound)', defaultValue: '64', commands: ANALYSIS },
  { flags: '--lower-work <Mflop>', description: 'work budget of the witnessed lower bound (Jacobian ascent, confirmed by pairs): model runs and Jacobian products counted in millions of floating-point operations of a fixed cost model, never time; auto: 8000, raised to what two full rounds of the search need on larger models, at most 40000; above 8000 the default 8000\'s search runs first and a second one takes the rest, so more work never witnesses less (0: no lower bound, no work)', defaultValue: 'auto', commands: ANALYSIS },
  { flags: '--lower-budget <ms>', description: 'old name of --lower-work, read at a fixed rate: N ms = 4·N Mflop (the work the reference machine did in N ms), so it no longer depends on the machine\'s load; 0: no lower bound', commands: ANALYSIS },
  { flags: '--witness <file>', description: 'save the input pair (x, x′) behind the lower bound as JSON', commands: ['model'], group: 'reports' },
  { flags: '--device <d>', description: 'where onnxruntime runs: auto is the CPU, or CUDA for a model of large products (2 Gflop or more a sweep in products of 80 Mflop or more) when its provider is installed and starts (WebGPU only when asked for); a device asked for that cannot start is an error (exit 5)', defaultValue: 'auto', choices: ['auto', 'cpu', 'cuda', 'webgpu'], commands: ANALYSIS, group: 'common' },
  { flags: '--threads <n>', description: 'threads for onnxruntime and Lanczos, 0 to 1024 (0: one per core; in a batch, cores divided by --jobs); above 1, large operators are measured whole on N worker threads (one-thread onnxruntime sessions each) and other large Gram products on N/2 worker threads of two intra-op threads each; 1 keeps everything on one thread; results are the same for every value', defaultValue: '0', commands: ANALYSIS },
  { flags: '--input <name>', description: 'graph input to analyse when the model has several', commands: ANALYSIS, group: 'model' },
  { flags: '--output <name>', description: 'graph output to analyse (default: the first)', commands: ANALYSIS, group: 'model' },
  { flags: '--all-outputs', description: 'analyse every graph output separately: one report each (--json: an array of reports)', commands: ['model'], group: 'model' },
  { flags: '--input-shape <dims>', description: 'concrete input shape, e.g. 1,3,224,224 (needed for symbolic dimensions other than the batch)', commands: ANALYSIS, group: 'model' },
  { flags: '--jobs <n>', description: 'models analysed at once, each in its own worker process, 1 to 256 (default: the number of cores)', commands: ['batch'], group: 'batch' },
  { flags: '--timeout <s>', description: 'per-model time limit in seconds, at most 2147483 (Node\'s longest timer); a model past it is recorded as TIMEOUT and the batch goes on (0: none)', defaultValue: '600', commands: ['batch'], group: 'batch' },
  { flags: '--max-memory <MiB>', description: 'per-worker memory limit; a model past it is recorded as MEMORY and the batch goes on (default: 80% of RAM divided by --jobs)', commands: ['batch'], group: 'batch' },
  { flags: '--out <file>', description: 'write one JSON line per model as it finishes (batch), or the merged lines (merge)', commands: ['batch', 'merge'], group: 'batch' },
  { flags: '--resume', description: 'with --out: keep the models already in the file (same path and sha256; the latest record wins) and analyse only the rest, the changed ones, and TIMEOUT/MEMORY/CRASH records whose limit was raised since', commands: ['batch'], group: 'batch' },
  { flags: '--retry-failed', description: 'with --resume: also analyse again every model recorded as failed (status error)', commands: ['batch'], group: 'batch' },
  { flags: '--force', description: 'let --out replace a file that already holds results (without it, a batch refuses to empty an existing --out)', commands: ['batch'], group: 'batch' },
  { flags: '--shard <i/n>', description: 'analyse only shard i of n (0 ≤ i < n) of the sorted model list, e.g. $JOB_COMPLETION_INDEX/4', commands: ['batch'], group: 'batch' },
  { flags: '-q, --quiet', description: 'nothing on stderr but errors and failed gates: no warnings, no progress', commands: ['model', 'batch'], group: 'common' },
  { flags: '--verbose', description: 'also say on stderr which device runs and why (e.g. why the CPU and not CUDA), and print progress as phase lines even on a terminal', commands: ['model'], group: 'common' },
  { flags: '-V, --version', description: 'print the version and exit', commands: ALL, group: 'common' },
  { flags: '--list-ops', description: 'print the supported ONNX operators and exit (with --json: as a JSON array)', commands: ['model'], group: 'other' },
  { flags: '--no-color', description: 'plain text output (also under NO_COLOR or when stdout is not a terminal)', commands: ALL, group: 'other' },
  { flags: '--debug', description: 'print stack traces of errors', commands: ALL, group: 'other' },
];
