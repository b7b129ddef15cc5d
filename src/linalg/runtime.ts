import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LipcheckError } from '../errors.js';
import type { DType, Tensor } from '../ir/tensor.js';

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

const SESSION_OPTIONS = { graphOptimizationLevel: 'all', interOpNumThreads: 1, logSeverityLevel: 3 };

// intra_op.allow_spinning 0 unless `spin`: onnxruntime's pool threads otherwise busy-wait after every run, taking the
// cores from the reorthogonalisation and bookkeeping between two runs (ResNet-50: 21 → 16 s with lanczos-threads.ts)

async function createWith(bytes: Uint8Array, provider: string, options: RuntimeOptions): Promise<any> {
  return ort.InferenceSession.create(bytes, {
    ...SESSION_OPTIONS, executionProviders: [provider], intraOpNumThreads: options.threads ?? 0,
    extra: { session: { intra_op: { allow_spinning: options.spin ? '1' : '0' } } },
  });
}

/** The provider lipcheck settled on for `device`, once a first session was created (undefined before). */
export function providerFor(device: Device): ProviderChoice | undefined {
  return providerCache.get(device);
}

/** Why a GPU provider cannot work here without trying it, or null when its libraries are present. */
function providerMissing(name: 'cuda' | 'webgpu'): string | null {
  const listed = ((ort.listSupportedBackends?.() ?? []) as { name: string }[]).some((b) => b.name === name);
  if (!listed) return `onnxruntime-node offers no ${name} provider on this platform`;
  if (name === 'cuda') {
    const dir = dirname(require.resolve('onnxruntime-node/package.json'));
    const found = ['bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so', 'bin/napi-v6/win32/x64/onnxruntime_providers_cuda.dll'].some((f) => existsSync(join(dir, f)));
    return found ? null : 'the CUDA provider is not installed (ONNXRUNTIME_NODE_INSTALL=cuda12 npm install)';
  }
  const vulkan = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1', '/usr/lib64/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1'].some(existsSync);
  return process.platform !== 'linux' || vulkan ? null : 'WebGPU needs a Vulkan loader (libvulkan.so.1), which is absent';
}

async function createResolving(bytes: Uint8Array, options: RuntimeOptions): Promise<{ session: any; provider: ProviderChoice }> {
  const cached = providerCache.get(options.device);
  if (cached) return { session: await createWith(bytes, cached.provider, options), provider: cached };
  if (options.device === 'cpu') {
    const choice: ProviderChoice = { provider: 'cpu' };
    const session = await createWith(bytes, 'cpu', options);
    providerCache.set('cpu', choice);
    return { session, provider: choice };
  }
  const wanted: ('cuda' | 'webgpu')[] = options.device === 'auto' ? ['cuda', 'webgpu'] : [options.device];
  const why: string[] = [];
  for (const w of wanted) {
    const missing = providerMissing(w);
    // under auto, skip providers whose native libraries are absent: trying them only prints native errors
    if (missing && options.device === 'auto') { why.push(missing); continue; }
    try {
      const session = await createWith(bytes, w, options);
      const choice: ProviderChoice = { provider: w };
      providerCache.set(options.device, choice);
      return { session, provider: choice };
    } catch (e) {
      why.push(`${w} could not start (${String((e as Error).message ?? e).split('\n')[0].slice(0, 160)})`);
    }
  }
  if (options.device !== 'auto') {
    throw new LipcheckError('RUNTIME', `--device ${options.device} is not available: ${why.join('; ')}. For CUDA, install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm install (needs CUDA 12 and cuDNN 9), or use --device cpu.`);
  }
  const choice: ProviderChoice = { provider: 'cpu', notice: `Using the CPU: ${why.join('; ')}.` };
  const session = await createWith(bytes, 'cpu', options);
  providerCache.set('auto', choice);
  return { session, provider: choice };
}

const stats = { runs: 0, runMs: 0, sessions: 0, createMs: 0 };

/** Time spent inside onnxruntime (session.run and session creation) since the last reset: for benchmarks. */
export function runtimeStats(): Readonly<typeof stats> {
  return { ...stats };
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
