import type { Tensor } from '../ir/tensor.js';
import { Random } from '../linalg/random.js';
import { Session, type RuntimeOptions } from './runtime.js';

/** Evaluates a whole ONNX model in onnxruntime: used for shapes and folded constants, and for witnesses. */
export class ModelRunner {
  private constructor(private readonly session: Session, private readonly what: string) {}

  /** One session for the model; reuse the runner for every evaluation. */
  static async create(bytes: Uint8Array, runtime: RuntimeOptions, what: string): Promise<ModelRunner> {
    return new ModelRunner(await Session.create(bytes, runtime, what), what);
  }

  /** Runs with the given feeds and returns the named outputs. */
  run(feeds: Record<string, Tensor>, outputs: readonly string[]): Promise<Map<string, Tensor>> {
    return this.session.run(feeds, outputs, this.what);
  }

  /** The outputs whose type and static shape onnxruntime inferred (Session.staticOutputs). */
  staticOutputs(): Map<string, { dtype: Tensor['dtype']; dims: number[] }> {
    return this.session.staticOutputs();
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A float32 tensor of seeded standard normal values. */
export function randomTensor(dims: readonly number[], seed: number): Tensor {
  const r = new Random(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = r.normal();
  return { dtype: 'float32', dims: [...dims], data };
}
