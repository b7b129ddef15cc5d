/** One command-line option, as data: registered on commander in a loop and listed in the README. */
export interface OptionRecord {
  readonly flags: string;
  readonly description: string;
  readonly defaultValue?: string;
  readonly choices?: readonly string[];
}

/** Every option of `lipcheck [model]`. */
export const OPTIONS: readonly OptionRecord[] = [
  { flags: '--json', description: 'print the report as JSON (schemaVersion 1, see docs/json-schema.md)' },
  { flags: '--max <L>', description: 'exit 1 when the upper bound exceeds L, or the model is unbounded or discontinuous' },
  { flags: '--method <m>', description: 'autolip: product of operator norms; cp: Combettes–Pesquet (LipLT) on sequential segments; best: the smaller per segment (SeqLip: not yet)', defaultValue: 'best', choices: ['autolip', 'cp', 'best'] },
  { flags: '--cp-window <w>', description: 'longest partial product CP measures directly; longer ones are bounded by products (0: no limit)', defaultValue: '0' },
  { flags: '--norm <p>', description: 'norm on input and output', defaultValue: '2', choices: ['2', 'inf'] },
  { flags: '--certify <mode>', description: 'strict: only certified bounds (exit 4 if impossible); auto: tightest certified or probabilistic; off: probabilistic only', defaultValue: 'auto', choices: ['strict', 'auto', 'off'] },
  { flags: '--certify-budget <ms>', description: 'time budget per operator for a deterministic certificate (FFT, SVD); past it: Schur bound or probabilistic', defaultValue: '2000' },
  { flags: '--delta <p>', description: 'failure probability of each probabilistic operator bound', defaultValue: '1e-6' },
  { flags: '--tol <t>', description: 'relative slack allowed between a probabilistic bound and its estimate (sets Lanczos steps)', defaultValue: '0.05' },
  { flags: '--iterations <k>', description: 'maximum Lanczos steps per operator', defaultValue: '200' },
  { flags: '--seed <n>', description: 'seed of every random start (recorded in the report)', defaultValue: '0' },
  { flags: '--lower-pairs <n>', description: 'random pairs for the lower bound where Jacobian ascent cannot run (0: no lower bound)', defaultValue: '64' },
  { flags: '--lower-budget <ms>', description: 'time budget for the witnessed lower bound (Jacobian ascent, confirmed by pairs)', defaultValue: '2000' },
  { flags: '--witness <file>', description: 'save the input pair (x, x′) behind the lower bound as JSON' },
  { flags: '--device <d>', description: 'where onnxruntime runs: auto tries CUDA then WebGPU, else CPU', defaultValue: 'auto', choices: ['auto', 'cpu', 'cuda', 'webgpu'] },
  { flags: '--threads <n>', description: 'onnxruntime intra-op threads (0: onnxruntime decides)', defaultValue: '0' },
  { flags: '--input <name>', description: 'graph input to analyse when the model has several' },
  { flags: '--output <name>', description: 'graph output to analyse (default: the first)' },
  { flags: '--input-shape <dims>', description: 'concrete input shape, e.g. 1,3,224,224 (needed for symbolic dimensions other than the batch)' },
  { flags: '--list-ops', description: 'print the supported ONNX operators and exit' },
  { flags: '--no-color', description: 'plain text output (also under NO_COLOR or when stdout is not a terminal)' },
  { flags: '--debug', description: 'print stack traces of errors' },
];
