/** The commands of the CLI: `lipcheck [model]`, `lipcheck batch PATH…`, `lipcheck merge FILE…`. */
export type CommandName = 'model' | 'batch' | 'merge';

/** One command-line option, as data: registered on commander in a loop and listed in the README. */
export interface OptionRecord {
  readonly flags: string;
  readonly description: string;
  readonly defaultValue?: string;
  readonly choices?: readonly string[];
  /** The commands that take it. */
  readonly commands: readonly CommandName[];
}

const ALL: readonly CommandName[] = ['model', 'batch', 'merge'];
const ANALYSIS: readonly CommandName[] = ['model', 'batch'];

/** Every option of every command. */
export const OPTIONS: readonly OptionRecord[] = [
  { flags: '--json', description: 'print the report as JSON (schemaVersion 1, see docs/json-schema.md); for batch and merge, one JSON line per model', commands: ALL },
  { flags: '--max <L>', description: 'gate: exit 1 when an upper bound exceeds L, or a model is unbounded, discontinuous or could not be analysed', commands: ALL },
  { flags: '--baseline <file>', description: 'gate: compare with an earlier `--json` report or batch `--out` file (models matched by path)', commands: ALL },
  { flags: '--max-increase <pct>', description: 'with --baseline: exit 1 when a bound grew by more than this (e.g. 10%), or a bounded model no longer is', defaultValue: '0%', commands: ALL },
  { flags: '--junit <file>', description: 'write a JUnit XML report (one test case per model, failures for gates) for CI systems', commands: ALL },
  { flags: '--html <file>', description: 'write a self-contained HTML report (per-layer chart for one model; sortable table and chart for a batch)', commands: ALL },
  { flags: '--method <m>', description: 'autolip: product of operator norms; cp: Combettes–Pesquet (LipLT) on sequential segments; seqlip: SeqLip there (ℓ2; certified on small conv-free segments, greedy value shown as an estimate); best: the smallest valid bound per segment (SeqLip only where certifiable)', defaultValue: 'best', choices: ['autolip', 'cp', 'seqlip', 'best'], commands: ANALYSIS },
  { flags: '--seqlip-k <k>', description: 'singular triplets per operator for greedy SeqLip (an estimate; the rest of the spectrum enters through σ_{k+1})', defaultValue: '32', commands: ANALYSIS },
  { flags: '--cp-window <w>', description: 'longest partial product CP measures directly; longer ones are bounded by products (0: no limit)', defaultValue: '0', commands: ANALYSIS },
  { flags: '--norm <p>', description: 'norm on input and output', defaultValue: '2', choices: ['2', 'inf'], commands: ANALYSIS },
  { flags: '--certify <mode>', description: 'strict: only certified bounds (exit 4 if impossible); auto: tightest certified or probabilistic; off: probabilistic only; none: quick estimates (Lanczos stops when they converge) with only the free, loose certified bounds', defaultValue: 'auto', choices: ['strict', 'auto', 'off', 'none'], commands: ANALYSIS },
  { flags: '--certify-budget <ms>', description: 'time budget per operator for a deterministic certificate (FFT, SVD); past it: Schur bound or probabilistic', defaultValue: '2000', commands: ANALYSIS },
  { flags: '--delta <p>', description: 'failure probability of each probabilistic operator bound', defaultValue: '1e-6', commands: ANALYSIS },
  { flags: '--tol <t>', description: 'relative slack allowed between a probabilistic bound and its estimate (sets Lanczos steps)', defaultValue: '0.05', commands: ANALYSIS },
  { flags: '--iterations <k>', description: 'maximum Lanczos steps per operator', defaultValue: '200', commands: ANALYSIS },
  { flags: '--seed <n>', description: 'seed of every random start (recorded in the report)', defaultValue: '0', commands: ANALYSIS },
  { flags: '--lower-pairs <n>', description: 'random pairs for the lower bound where Jacobian ascent cannot run (0: no lower bound)', defaultValue: '64', commands: ANALYSIS },
  { flags: '--lower-budget <ms>', description: 'time budget for the witnessed lower bound (Jacobian ascent, confirmed by pairs)', defaultValue: '2000', commands: ANALYSIS },
  { flags: '--witness <file>', description: 'save the input pair (x, x′) behind the lower bound as JSON', commands: ['model'] },
  { flags: '--device <d>', description: 'where onnxruntime runs: auto tries CUDA then WebGPU, else CPU', defaultValue: 'auto', choices: ['auto', 'cpu', 'cuda', 'webgpu'], commands: ANALYSIS },
  { flags: '--threads <n>', description: 'onnxruntime intra-op threads (0: onnxruntime decides; in a batch, cores divided by --jobs); 1 also keeps the Lanczos reorthogonalisation on one thread', defaultValue: '0', commands: ANALYSIS },
  { flags: '--input <name>', description: 'graph input to analyse when the model has several', commands: ANALYSIS },
  { flags: '--output <name>', description: 'graph output to analyse (default: the first)', commands: ANALYSIS },
  { flags: '--all-outputs', description: 'analyse every graph output separately: one report each (--json: an array of reports)', commands: ['model'] },
  { flags: '--input-shape <dims>', description: 'concrete input shape, e.g. 1,3,224,224 (needed for symbolic dimensions other than the batch)', commands: ANALYSIS },
  { flags: '--jobs <n>', description: 'models analysed at once, each in its own worker process (default: the number of cores)', commands: ['batch'] },
  { flags: '--timeout <s>', description: 'per-model time limit in seconds; a model past it is recorded as TIMEOUT and the batch goes on (0: none)', defaultValue: '600', commands: ['batch'] },
  { flags: '--max-memory <MiB>', description: 'per-worker memory limit; a model past it is recorded as MEMORY and the batch goes on (default: 80% of RAM divided by --jobs)', commands: ['batch'] },
  { flags: '--out <file>', description: 'write one JSON line per model as it finishes (batch), or the merged lines (merge)', commands: ['batch', 'merge'] },
  { flags: '--resume', description: 'with --out: keep the models already in the file (same path and sha256) and analyse only the rest', commands: ['batch'] },
  { flags: '--shard <i/n>', description: 'analyse only shard i of n (0 ≤ i < n) of the sorted model list, e.g. $JOB_COMPLETION_INDEX/4', commands: ['batch'] },
  { flags: '--list-ops', description: 'print the supported ONNX operators and exit', commands: ['model'] },
  { flags: '--no-color', description: 'plain text output (also under NO_COLOR or when stdout is not a terminal)', commands: ALL },
  { flags: '--debug', description: 'print stack traces of errors', commands: ALL },
];
