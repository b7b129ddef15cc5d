import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { DType, Tensor } from '../ir/tensor.js';
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
  return ort.InferenceSession.create(bytes, sessionOptions(provider, options));
}

/** The provider lipcheck settled on for `device`, once a first session was created (undefined before). */
export function providerFor(device: Device): ProviderChoice | undefined {
  return providerCache.get(device);
}

const CUDA_INSTALL = 'Install onnxruntime-node\'s CUDA provider (README "GPUs": its install script run with ONNXRUNTIME_NODE_INSTALL=cuda12 and network access; it needs an NVIDIA driver, CUDA 12 and cuDNN 9), or run on the CPU with --device cpu';
const WEBGPU_INSTALL = 'Install a Vulkan loader and a GPU driver with Vulkan support (Debian/Ubuntu: apt-get install libvulkan1 and the vendor\'s driver), or run on the CPU with --device cpu';

/** Why a GPU provider cannot work here without trying it, or null when its libraries are present. */
function providerMissing(name: 'cuda' | 'webgpu'): string | null {
  const listed = ((ort.listSupportedBackends?.() ?? []) as { name: string }[]).some((b) => b.name === name);
  if (!listed) return `onnxruntime-node offers no ${name === 'cuda' ? 'CUDA' : 'WebGPU'} provider on ${process.platform}/${process.arch}`;
  if (name === 'cuda') {
    const dir = dirname(require.resolve('onnxruntime-node/package.json'));
    const found = ['bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so', 'bin/napi-v6/win32/x64/onnxruntime_providers_cuda.dll'].some((f) => existsSync(join(dir, f)));
    return found ? null : 'the CUDA provider of onnxruntime-node is not installed (npm does not download it by default)';
  }
  const vulkan = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1', '/usr/lib64/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1'].some(existsSync);
  return process.platform !== 'linux' || vulkan ? null : 'WebGPU needs a Vulkan loader (libvulkan.so.1), which is not installed';
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

/**
 * Settles which provider `device` means here, once per process, before any model is loaded: `cpu` is the CPU;
 * `auto` is CUDA when its provider is installed and starts, else the CPU (never WebGPU: on today's onnxruntime it is
 * slower than the CPU per run, and probing it prints the driver's own lines; README "GPUs"); `cuda` and `webgpu` are
 * that provider or a DEVICE error that says what is missing and how to install it. Under `auto`, `notice` says why
 * the CPU was chosen (the CLI prints it with --verbose).
 */
export async function resolveDevice(device: Device, threads?: number): Promise<ProviderChoice> {
  const cached = providerCache.get(device);
  if (cached) return cached;
  let choice: ProviderChoice;
  if (device === 'cpu') choice = { provider: 'cpu' };
  else {
    const wanted = device === 'auto' ? 'cuda' : device;
    const name = wanted === 'cuda' ? 'CUDA' : 'WebGPU';
    const install = wanted === 'cuda' ? CUDA_INSTALL : WEBGPU_INSTALL;
    let why = providerMissing(wanted);
    if (why === null) {
      try {
        const s = await createWith(probe(), wanted, { device, threads });
        await s.release?.();
      } catch (e) {
        why = `the ${name} provider is installed but could not start (${firstLine(e)})`;
      }
    }
    if (why !== null && device !== 'auto') throw new LipcheckError('DEVICE', `--device ${device}: ${why}. ${install}.`);
    choice = why === null ? { provider: wanted } : { provider: 'cpu', notice: `Using the CPU: ${why}. For CUDA: ${install.replace(/, or run on the CPU with --device cpu$/, '').replace(/^I/, 'i')}.` };
  }
  providerCache.set(device, choice);
  return choice;
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
