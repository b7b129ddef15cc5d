import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { Block } from '../ir/merge.js';
import type { DType, Tensor } from '../ir/tensor.js';
import { regionFlop } from '../linalg/work.js';
import { encodeGraph } from '../onnx/writer.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const ort: any = require('onnxruntime-node');

/** Where onnxruntime runs the kernels. */
export type Device = 'auto' | 'cpu' | 'cuda' | 'webgpu';

/** Settings shared by every session lipcheck creates. */
export interface RuntimeOptions {
  readonly device: Device;
  readonly threads?: number;
  /** Let onnxruntime's pool threads busy-wait between runs: runs alone get fastest, work between runs slower (benchmarks' floor). */
  readonly spin?: boolean;
}

/** The provider actually used and, when the request could not be honoured, why. */
export interface ProviderChoice {
  readonly provider: 'cpu' | 'cuda' | 'webgpu';
  readonly notice?: string;
}

const providerCache = new Map<Device, ProviderChoice>();

// onnxruntime's own log lines (coloured, with C++ source paths) never reach the user: every failure they describe
// also comes back as an exception, which lipcheck turns into one message that names the file and what to do.
// Severity 4 = fatal only, for the process-wide logger (set before the first session) and for each session.
ort.env.logLevel = 'fatal';
const SESSION_OPTIONS = { graphOptimizationLevel: 'all', interOpNumThreads: 1, logSeverityLevel: 4 };

// intra_op.allow_spinning 0 unless `spin`: onnxruntime's pool threads otherwise busy-wait after every run, taking the
// cores from the reorthogonalisation and bookkeeping between two runs (ResNet-50: 21 → 16 s with lanczos-threads.ts)

/** The options of every session lipcheck creates on `provider` (`intraThreads` overrides options.threads). */
export function sessionOptions(provider: string, options: RuntimeOptions, intraThreads?: number): Record<string, unknown> {
  return {
    ...SESSION_OPTIONS, executionProviders: [provider], intraOpNumThreads: intraThreads ?? options.threads ?? 0,
    extra: { session: { intra_op: { allow_spinning: options.spin ? '1' : '0' } } },
  };
}

async function createWith(bytes: Uint8Array, provider: string, options: RuntimeOptions): Promise<any> {
  if (provider === 'cuda') pinCudaNumerics();
  return ort.InferenceSession.create(bytes, sessionOptions(provider, options));
}

const CUDA_INSTALL = 'Install onnxruntime-node\'s CUDA provider (README "GPUs": its install script run with ONNXRUNTIME_NODE_INSTALL=cuda12 and network access; it needs an NVIDIA driver, CUDA 12 and cuDNN 9), or run on the CPU with --device cpu';
const WEBGPU_INSTALL = 'Install a Vulkan loader and a GPU driver with Vulkan support (Debian/Ubuntu: apt-get install libvulkan1 and the vendor\'s driver), or run on the CPU with --device cpu';

/**
 * Whether a Vulkan loader (libvulkan.so.1) is in the system's library folders or in those of `libraryPath`
 * (LD_LIBRARY_PATH, where the dynamic linker also finds it, e.g. the software adapter of scripts/swiftshader.sh).
 */
export function vulkanLoaderFound(libraryPath = process.env.LD_LIBRARY_PATH ?? ''): boolean {
  const dirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib', '/usr/lib64', '/usr/lib/aarch64-linux-gnu', ...libraryPath.split(':').filter((d) => d !== '')];
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

/** Why a GPU provider cannot work here without trying it, or null when its libraries are present. */
function providerMissing(name: 'cuda' | 'webgpu'): string | null {
  const listed = ((ort.listSupportedBackends?.() ?? []) as { name: string }[]).some((b) => b.name === name);
  if (!listed) return `onnxruntime-node offers no ${name === 'cuda' ? 'CUDA' : 'WebGPU'} provider on ${process.platform}/${process.arch}`;
  if (name === 'cuda') {
    const dir = dirname(require.resolve('onnxruntime-node/package.json'));
    const found = ['bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so', 'bin/napi-v6/win32/x64/onnxruntime_providers_cuda.dll'].some((f) => existsSync(join(dir, f)));
    return found ? null : 'the CUDA provider of onnxruntime-node is not installed (npm does not download it by default)';
  }
  return process.platform !== 'linux' || vulkanLoaderFound() ? null : 'WebGPU needs a Vulkan loader (libvulkan.so.1), which is not installed';
}

/** Whether onnxruntime-node's CUDA provider library is installed here (no session is started to find out). */
export function cudaInstalled(): boolean {
  return providerMissing('cuda') === null;
}

let probeModel: Uint8Array | null = null;

/** A one-node model (Relu on a float[1]) that any provider can run: starting a session on it tests the provider alone. */
function probe(): Uint8Array {
  probeModel ??= encodeGraph({ opset: 13, inputs: [{ name: 'x', dims: [1] }], outputs: [{ name: 'y', dims: [1] }], nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }] });
  return probeModel;
}

/** The informative part of an onnxruntime error: its first line without the C++ source path and function signature. */
export function firstLine(e: unknown): string {
  const line = String((e as Error)?.message ?? e).split('\n')[0];
  const m = /\.(?:cc|cpp|h):\d+ .*?\)(?:::<lambda\(\)>)? (.+)$/.exec(line);
  return (m ? m[1] : line).slice(0, 200);
}

/** Why a GPU provider cannot be used here (missing, or installed but failing to start), or null when it starts; once per process. */
const gpuCache = new Map<'cuda' | 'webgpu', Promise<string | null>>();
function gpuProblem(name: 'cuda' | 'webgpu', threads?: number): Promise<string | null> {
  let p = gpuCache.get(name);
  if (!p) {
    p = (async () => {
      const why = providerMissing(name);
      if (why !== null) return why;
      try {
        const s = await createWith(probe(), name, { device: name, threads });
        await s.release?.();
        return null;
      } catch (e) {
        return `the ${name === 'cuda' ? 'CUDA' : 'WebGPU'} provider is installed but could not start (${firstLine(e)})`;
      }
    })();
    gpuCache.set(name, p);
  }
  return p;
}

/** How a user installs CUDA, for the notice of `auto` (CUDA_INSTALL without its alternative). */
const CUDA_HINT = `For CUDA: ${CUDA_INSTALL.replace(/, or run on the CPU with --device cpu$/, '').replace(/^I/, 'i')}.`;

/**
 * Settles which provider an explicitly named `device` is, once per process, before any model is loaded: `cpu` is the
 * CPU; `cuda` and `webgpu` are that provider or a DEVICE error that says what is missing and how to install it. `auto`
 * here is the CPU: the GPU is chosen per model, once its operators are known (resolveAuto); sessions created with
 * `auto` outside an analysis (whole-model runs, tools) run on the CPU.
 */
export async function resolveDevice(device: Device, threads?: number): Promise<ProviderChoice> {
  const cached = providerCache.get(device);
  if (cached) return cached;
  let choice: ProviderChoice;
  if (device === 'cpu' || device === 'auto') choice = { provider: 'cpu' };
  else {
    const why = await gpuProblem(device, threads);
    if (why !== null) throw new LipcheckError('DEVICE', `--device ${device}: ${why}. ${device === 'cuda' ? CUDA_INSTALL : WEBGPU_INSTALL}.`);
    choice = { provider: device };
  }
  providerCache.set(device, choice);
  return choice;
}

/**
 * `--device auto`'s rule (issue 15 item 5), modelled, not measured: no CUDA run of onnxruntime-node could be made on
 * any machine this project was lent (its provider is downloaded at install time; ../shared/GPU.md). A GPU run costs a
 * fixed ~1 ms however small the work (WebGPU on an H200, GPU.md; PyTorch CUDA 0.1 ms a step) and a provider's start
 * costs seconds (cuDNN's and cuBLAS's handles), so a GPU can pay only where the analysis is made of large products:
 * those of AUTO_GPU_PRODUCT_FLOP or more (≈ 20 ms of one CPU thread, 1–3 ms on 16 cores: the regime where the CPU is
 * arithmetic-bound) adding up to AUTO_GPU_MIN_WORK per forward sweep (a default run then does hundreds of Gflop of
 * them: tens of seconds on 2 cores). Every model of ../shared/models stays below (the largest: carvana_unet's 0.43
 * Gflop), so there `auto` is `--device cpu` exactly, with no GPU probe; the generated ResNet-50 (8.2 Gflop), VGG-19,
 * DenseNet-121, Inception v2 and ZFNet reach it. A count of work, never a timing: the same model gets the same choice
 * on every run of a machine. WebGPU is never chosen: measured slower than the CPU on every model tried (README "GPUs").
 */
export const AUTO_GPU_PRODUCT_FLOP = 8e7;
export const AUTO_GPU_MIN_WORK = 2e9;

/** The flop of one forward sweep through a model's operators that `auto` counts for a GPU: its products of AUTO_GPU_PRODUCT_FLOP or more. */
export function gpuWork(blocks: readonly Block[]): number {
  let work = 0;
  for (const b of blocks) {
    if (b.kind !== 'operator') continue;
    const f = regionFlop(b.region);
    if (f >= AUTO_GPU_PRODUCT_FLOP) work += f;
  }
  return work;
}

/**
 * `auto`'s rule without side effects: the CPU, with the notice that says why, when the CUDA provider is `missing` (why,
 * or null when its library is installed) or `work` (gpuWork) is under AUTO_GPU_MIN_WORK; else 'try-cuda'.
 */
export function autoRule(work: number, missing: string | null): ProviderChoice | 'try-cuda' {
  if (missing !== null) return { provider: 'cpu', notice: `Using the CPU: ${missing}. ${CUDA_HINT}` };
  if (!(work >= AUTO_GPU_MIN_WORK)) {
    return { provider: 'cpu', notice: `Using the CPU: this model's large products add up to ${(work / 1e9).toPrecision(3)} Gflop a sweep, under the ${AUTO_GPU_MIN_WORK / 1e9} Gflop from which --device auto uses CUDA (below it a GPU's fixed cost per run and its start outweigh the work); --device cuda uses it anyway` };
  }
  return 'try-cuda';
}

/**
 * The provider `--device auto` uses for a model whose operators do `work` flop of large products per sweep (gpuWork):
 * CUDA where autoRule says to try it and it starts; otherwise the CPU, with a notice that says why (the CLI prints it
 * with --verbose). No GPU is probed unless autoRule says so. Never an error: `auto` always runs.
 */
export async function resolveAuto(work: number, threads?: number): Promise<ProviderChoice> {
  const rule = autoRule(work, providerMissing('cuda'));
  if (rule !== 'try-cuda') return rule;
  const why = await gpuProblem('cuda', threads);
  if (why !== null) return { provider: 'cpu', notice: `Using the CPU: ${why}. ${CUDA_HINT}` };
  providerCache.set('cuda', { provider: 'cuda' });
  return { provider: 'cuda' };
}

/**
 * Switches off what would make CUDA's float32 products less accurate than float32, or vary between runs, before the
 * provider's libraries start (they read the environment once). onnxruntime's CUDA provider turns TF32 on for float32
 * convolutions and GEMMs by default (its use_tf32 option, which onnxruntime-node 1.30 cannot pass): TF32 rounds their
 * inputs to 10-bit mantissas, an error ~8000× float32's, far outside the rounding margins every bound here adds for
 * float32 kernels (ALGORITHMS.md; `roundingMargin`). NVIDIA_TF32_OVERRIDE=0 makes every NVIDIA library keep full
 * float32. CUBLAS_WORKSPACE_CONFIG=:4096:8 is cuBLAS's documented setting for the same bits on every run (kept when the
 * user set one). Not reachable from here: cuDNN's convolution algorithm, which onnxruntime picks by timing each
 * candidate (cudnn_conv_algo_search EXHAUSTIVE), so two CUDA runs may differ in their last digits (README "GPUs").
 */
export function pinCudaNumerics(env: NodeJS.ProcessEnv = process.env): void {
  env.NVIDIA_TF32_OVERRIDE = '0';
  env.CUBLAS_WORKSPACE_CONFIG ??= ':4096:8';
}

async function createResolving(bytes: Uint8Array, options: RuntimeOptions): Promise<{ session: any; provider: ProviderChoice }> {
  const provider = await resolveDevice(options.device, options.threads);
  return { session: await createWith(bytes, provider.provider, options), provider };
}

const stats = { runs: 0, runMs: 0, sessions: 0, createMs: 0 };

/** Time spent inside onnxruntime (session.run and session creation) since the last reset: for benchmarks. */
export function runtimeStats(): Readonly<typeof stats> {
  return { ...stats };
}

/** Counts a session created elsewhere (a worker thread, ort-pool.ts) in runtimeStats. */
export function countSession(ms: number): void {
  stats.sessions++;
  stats.createMs += ms;
}

/** Counts a run made elsewhere (a worker thread, ort-pool.ts) in runtimeStats. */
export function countRun(ms: number): void {
  stats.runs++;
  stats.runMs += ms;
}

/** Zeroes the counters of runtimeStats. */
export function resetRuntimeStats(): void {
  Object.assign(stats, { runs: 0, runMs: 0, sessions: 0, createMs: 0 });
}

/** An onnxruntime session with typed float32 I/O helpers. */
export class Session {
  private constructor(private readonly session: any, readonly provider: string) {}

  /** Creates a session from model bytes on the chosen provider. */
  static async create(bytes: Uint8Array, options: RuntimeOptions, what: string): Promise<Session> {
    try {
      const t0 = performance.now();
      const { session, provider } = await createResolving(bytes, options);
      stats.sessions++;
      stats.createMs += performance.now() - t0;
      return new Session(session, provider.provider);
    } catch (e) {
      if (e instanceof LipcheckError) throw e;
      throw new LipcheckError('RUNTIME', `onnxruntime could not load ${what}: ${String((e as Error).message ?? e).split('\n')[0]}`, { cause: e });
    }
  }

  get inputNames(): string[] {
    return this.session.inputNames;
  }
  get outputNames(): string[] {
    return this.session.outputNames;
  }
  /**
   * The element type and shape onnxruntime inferred for each output when the session was created, for the outputs
   * whose shape it knows as numbers (static shapes); others (symbolic or unknown dims, non-tensors) are left out, and so
   * are rank-0 ones (onnxruntime-node reports an unknown shape as [] too).
   */
  staticOutputs(): Map<string, { dtype: DType; dims: number[] }> {
    const out = new Map<string, { dtype: DType; dims: number[] }>();
    const meta = (this.session.outputMetadata ?? []) as { name: string; isTensor?: boolean; type?: string; shape?: readonly (number | string)[] }[];
    for (const o of meta) {
      const dims = o.shape;
      if (!o.isTensor || typeof o.type !== 'string' || !Array.isArray(dims) || dims.length === 0 || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) continue;
      out.set(o.name, { dtype: o.type as DType, dims: [...(dims as number[])] });
    }
    return out;
  }

  /** Runs with named float tensors in and returns the requested outputs as Tensors. */
  async run(feeds: Record<string, Tensor>, outputs: readonly string[], what: string): Promise<Map<string, Tensor>> {
    const ortFeeds: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor(t.dtype, t.data, [...t.dims]);
    let res: Record<string, any>;
    const t0 = performance.now();
    try {
      res = await this.session.run(ortFeeds, [...outputs]);
      stats.runs++;
      stats.runMs += performance.now() - t0;
    } catch (e) {
      throw new LipcheckError('RUNTIME', `onnxruntime failed while evaluating ${what}: ${String((e as Error).message ?? e).split('\n')[0]}`, { cause: e });
    }
    const out = new Map<string, Tensor>();
    for (const name of outputs) {
      const t = res[name];
      out.set(name, { dtype: t.type as DType, dims: [...t.dims].map(Number), data: t.data });
      t.dispose?.();
    }
    return out;
  }

  /** Runs a single-input, single-output float32 model (`extra`: weights fed as inputs with every run). */
  async apply(inputName: string, x: Float32Array, dims: readonly number[], outputName: string, extra?: Readonly<Record<string, Tensor>>): Promise<Float32Array> {
    const out = await this.run({ ...extra, [inputName]: { dtype: 'float32', dims, data: x } }, [outputName], inputName);
    return out.get(outputName)!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release?.();
  }
}
