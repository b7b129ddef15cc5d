import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LipcheckError } from './errors.js';
import type { NormKind } from './estimators/kinds.js';
import { autoLowerWork, cpWindowFor, DEFAULT_LOWER_BUDGET, estimateLower, estimateUpper, type AnalysisPhase, type WitnessPair } from './estimators/methods.js';
import { SEQLIP_DEFAULTS } from './estimators/seqlip.js';
import { createOrtBackend } from './backend/index.js';
import { prestartRegionWorkers, regionOffload } from './workers/region-pool.js';
import { prestartOrtWorkers } from './backend/ort-pool.js';
import { buildIr } from './frontend/build.js';
import { mergeLinear } from './ir/merge.js';
import { sizeOf } from './ir/tensor.js';
import { gpuWork, resolveAuto, resolveDevice, type Device, type ProviderChoice } from './backend/runtime.js';
import { decodeModel, readModel, readModelBytes } from './onnx/read-model.js';
import { SCHEMA_VERSION, type LipschitzReport } from './report/report.js';

export { LipcheckError } from './errors.js';
export type { LipschitzReport } from './report/report.js';
export { cpWindowFor, type AnalysisPhase, type WitnessPair } from './estimators/methods.js';

/** Analysis options; every field has a default. */
export interface AnalyzeOptions {
  readonly norm?: NormKind;
  /** autolip: products of norms only; cp: Combettes–Pesquet on every sequential segment; seqlip: SeqLip there (ℓ2); sdp: LipSDP-Neuron/Layer there (ℓ2); exact: linear-region enumeration (ReLU nets with ≤ 2 inputs); best: the smallest valid bound per segment, exact where it applies. */
  readonly method?: 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best';
  /** Cells the exact region enumeration may visit (default 200 000); past it the bracket reached is reported. */
  readonly exactBudget?: number;
  /** Work LipSDP may spend over all segments, in Mflop (2 per multiply-add; default: LIPSDP_DEFAULTS.bestWork under best, sdpWork under sdp). */
  readonly sdpWork?: number;
  /** Singular triplets per operator for greedy SeqLip. */
  readonly seqlipK?: number;
  /** Longest partial product CP measures directly (0: no limit). */
  readonly cpWindow?: number;
  readonly seed?: number;
  readonly delta?: number;
  readonly tol?: number;
  readonly iterations?: number;
  readonly certify?: 'strict' | 'auto' | 'off' | 'none';
  readonly device?: Device;
  readonly threads?: number;
  readonly inputName?: string;
  readonly outputName?: string;
  readonly inputShape?: readonly number[];
  /** Random witness pairs when the Jacobian ascent cannot run (unbounded graphs); 0 disables the lower bound. */
  readonly lowerPairs?: number;
  /**
   * Work budget of the witnessed lower bound in Mflop (model runs and Jacobian products by the cost model,
   * linalg/work.ts); 0: no lower-bound work; absent: methods.ts autoLowerWork (8 000, up to 40 000 on larger models).
   */
  readonly lowerBudget?: number;
  /** Work budget of one deterministic certificate (FFT, SVD, Cholesky) in Mflop: the cap of each operator's certificates. */
  readonly certifyBudget?: number;
  /** @deprecated Old millisecond budget: read as lowerBudget = LEGACY_MFLOP_PER_MS.lower × this (a fixed rate, never a clock). */
  readonly lowerBudgetMs?: number;
  /** @deprecated Old millisecond budget: read as certifyBudget = LEGACY_MFLOP_PER_MS.certify × this (a fixed rate, never a clock). */
  readonly certifyBudgetMs?: number;
  /** Where the analysis stands: `phase` and `done` of `total` steps in it (build and lower: 0 of 1 as they start). */
  readonly onProgress?: (done: number, total: number, what: string, phase: AnalysisPhase) => void;
  /** Called once with the provider the operators run on (under auto, after the build) and, when auto chose the CPU, why. */
  readonly onDevice?: (choice: ProviderChoice) => void;
  /** Receives the input pair behind the lower bound (for --witness). */
  readonly onWitness?: (w: WitnessPair) => void;
}

/** Defaults shared by the library and the CLI. */
export const DEFAULTS = { method: 'best' as 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best', exactBudget: 200_000, cpWindow: 0, seqlipK: SEQLIP_DEFAULTS.k as number, norm: '2' as NormKind, seed: 0, delta: 1e-6, tol: 0.05, iterations: 200, certify: 'auto' as const, device: 'auto' as Device, lowerPairs: 64, lowerBudget: DEFAULT_LOWER_BUDGET, certifyBudget: 2800 };

/**
 * How the old millisecond budgets are read: as the work the reference machine (2 shared cores, Node 20) did in that
 * time, onnxruntime products and model runs about 4 Mflop per ms, float64 certificate kernels about 1.4. A fixed rate,
 * so they too give the same numbers on every machine; the defaults (8000 and 2800 Mflop) are the old 2000 ms each.
 */
export const LEGACY_MFLOP_PER_MS = { lower: 4, certify: 1.4 } as const;

/** The names of a model's graph outputs, in order (for --all-outputs). */
export function graphOutputs(path: string): string[] {
  return readModel(path).outputs.map((o) => o.name);
}

const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

/** A budget option must be a finite non-negative number of Mflop. */
function checkBudget(name: string, value: number): void {
  if (!(value >= 0 && Number.isFinite(value))) throw new LipcheckError('USAGE', `${name} must be a non-negative number of Mflop (millions of floating-point operations of the cost model); got ${value}.`);
}

/** Checks that an explicitly asked device (`cuda`, `webgpu`) can start; throws a DEVICE error saying what is missing otherwise. */
export async function checkDevice(device: Device, threads?: number): Promise<void> {
  await resolveDevice(device, threads);
}

/** Reads an ONNX model and computes AutoLip bounds on its Lipschitz constant, with a witnessed lower bound. */
export async function analyze(model: string | { bytes: Uint8Array; name: string }, options: AnalyzeOptions = {}): Promise<LipschitzReport> {
  const legacy = {
    lowerBudget: options.lowerBudget ?? (options.lowerBudgetMs === undefined ? undefined : options.lowerBudgetMs * LEGACY_MFLOP_PER_MS.lower),
    certifyBudget: options.certifyBudget ?? (options.certifyBudgetMs === undefined ? undefined : options.certifyBudgetMs * LEGACY_MFLOP_PER_MS.certify),
  };
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries({ ...options, ...legacy }).filter(([, v]) => v !== undefined)) } as typeof DEFAULTS & AnalyzeOptions;
  const t0 = performance.now();
  const bytes = typeof model === 'string' ? readModelBytes(model) : model.bytes;
  const path = typeof model === 'string' ? model : model.name;
  const onnx = decodeModel(bytes, path);
  const tLoad = performance.now();
  // a device named explicitly is settled before the model is loaded: a GPU that cannot start is a DEVICE error, never
  // the model's fault. Under auto the build runs on the CPU and the operators' device is chosen from their size
  const named = o.device === 'auto' ? undefined : await resolveDevice(o.device, o.threads);
  if (named) o.onDevice?.(named);
  // under auto the CPU's workers start early too: a model auto sends to CUDA would take tens of seconds or more on
  // the CPU, where idle workers cost little, while every other model must run exactly as under --device cpu (item 5)
  const cpuLikely = !named || named.provider === 'cpu';
  const cpu = { device: 'cpu' as const, threads: o.threads };
  o.onProgress?.(0, 1, path, 'build');
  // whole operators measured on worker threads where the CPU runs them (src/workers/region-pool.ts): the same numbers;
  // a model with large products starts them during the build (else the session workers, src/backend/ort-pool.ts)
  const cpuOffload = regionOffload(cpu);
  const onLargeProducts = () => { if (cpuLikely) (cpuOffload ? prestartRegionWorkers(cpu) : prestartOrtWorkers(cpu)); };
  const built = await buildIr(onnx, { inputName: o.inputName, outputName: o.outputName, inputShape: o.inputShape, seed: o.seed, runtime: named ? { device: o.device, threads: o.threads } : cpu, onLargeProducts });
  const tBuild = performance.now();
  const blocks = mergeLinear(built.ir);
  const provider = named ?? await resolveAuto(gpuWork(blocks), o.threads);
  if (!named) o.onDevice?.(provider);
  const runtime = { device: provider.provider, threads: o.threads };
  const offload = provider.provider === 'cpu' ? cpuOffload : undefined;
  checkBudget('certifyBudget', o.certifyBudget);
  checkBudget('lowerBudget', o.lowerBudget);
  // no lower budget given (--lower-work auto): the default, raised where the model's search needs more (methods.ts)
  if (legacy.lowerBudget === undefined) o.lowerBudget = autoLowerWork(blocks, { input: sizeOf(built.inputShape), output: sizeOf(built.outputShape) }, o.norm);
  const m = { ir: built.ir, blocks, inputName: built.inputName, outputName: built.outputName, inputShape: built.inputShape, path };
  // the one place operators come from: estimators are handed this backend and open no sessions themselves
  const backend = createOrtBackend({ model: onnx, runtime, io: m });
  const warnings = [...built.ir.warnings];
  // the method policy (which method where, budgets, composition): src/estimators/methods.ts
  const up = await estimateUpper(m, backend, { ...o, offload }, warnings);
  const tNorms = performance.now();
  const lower = await estimateLower(m, backend, o, up, warnings);
  const tLower = performance.now();
  // why `auto` chose the CPU is partly about this machine, not the model: the CLI prints it with --verbose, not in the report
  return {
    schemaVersion: SCHEMA_VERSION,
    tool: { name: 'lipcheck', version: VERSION },
    model: { path, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length, producer: onnx.producer, opset: onnx.opsets.get('') ?? 0, irVersion: onnx.irVersion },
    input: { name: built.inputName, shape: built.inputShape },
    output: { name: built.outputName, shape: built.outputShape },
    norm: o.norm,
    settings: { method: o.method, cpWindow: o.cpWindow, seqlipK: o.seqlipK, seed: o.seed, delta: o.delta, tol: o.tol, iterations: o.iterations, certify: o.certify, certifyBudget: o.certifyBudget, sdpWork: up.sdpMflop, exactBudget: o.exactBudget, lowerBudget: o.lowerBudget, lowerPairs: o.lowerPairs, device: o.device, provider: provider.provider },
    global: {
      status: up.result.status,
      upper: up.upper,
      estimate: up.autolip.estimate,
      methods: [...up.methods],
      lower,
      ratio: up.upper && lower && lower.value > 0 ? up.upper.value / lower.value : null,
      failureProbability: Math.min(1, up.failures * o.delta),
      reasons: up.result.reasons,
    },
    layers: up.result.layers,
    warnings,
    timings: { loadMs: tLoad - t0, buildMs: tBuild - tLoad, normsMs: tNorms - tBuild, lowerMs: tLower - tNorms, totalMs: tLower - t0 },
  };
}
