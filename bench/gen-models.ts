/**
 * Generates ImageNet-size benchmark models with seeded random weights (He-scaled, float32) into bench/out/
 * (git-ignored; never commit them): ResNet-18, ResNet-50 and VGG-16 at 1×3×224×224, built from Conv,
 * BatchNormalization, Relu, MaxPool, GlobalAveragePool, Add, Flatten and Gemm with lipcheck's own writer.
 * Usage: npx tsx bench/gen-models.ts [resnet18] [resnet50] [vgg16]   (default: all three; skips files that exist
 * unless --force)
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Tensor } from '../src/ir/tensor.js';
import { Random } from '../src/linalg/random.js';
import { encodeGraph, type NodeSpec } from '../src/onnx/writer.js';

/** Where the generated models go (git-ignored). */
export const BENCH_OUT = fileURLToPath(new URL('./out/', import.meta.url));

/** The generated models, by name. */
export const BENCH_MODELS = ['resnet18', 'resnet50', 'vgg16'] as const;

/** A generated model name. */
export type BenchModel = (typeof BENCH_MODELS)[number];

/** A graph under construction: nodes, initializers and a seeded generator for He-scaled weights. */
class Builder {
  readonly nodes: NodeSpec[] = [];
  readonly inits: [string, Tensor][] = [];
  private count = 0;
  constructor(private readonly rng: Random) {}

  private fresh(prefix: string): string {
    return `${prefix}${++this.count}`;
  }

  private tensor(name: string, dims: number[], gen: (i: number) => number): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = gen(i);
    this.inits.push([name, { dtype: 'float32', dims, data }]);
    return name;
  }

  conv(x: string, cin: number, cout: number, k: number, stride: number, bias: boolean): string {
    const name = this.fresh('conv');
    const std = Math.sqrt(2 / (cin * k * k));
    const w = this.tensor(`${name}.w`, [cout, cin, k, k], () => this.rng.normal() * std);
    const inputs = bias ? [x, w, this.tensor(`${name}.b`, [cout], () => 0.01 * this.rng.normal())] : [x, w];
    const p = (k - 1) >> 1;
    this.nodes.push({ opType: 'Conv', inputs, outputs: [name], name, attrs: { kernel_shape: { ints: [k, k] }, strides: { ints: [stride, stride] }, pads: { ints: [p, p, p, p] } } });
    return name;
  }

  bn(x: string, c: number): string {
    const name = this.fresh('bn');
    const g = this.tensor(`${name}.g`, [c], () => 1 + 0.1 * this.rng.normal());
    const b = this.tensor(`${name}.b`, [c], () => 0.1 * this.rng.normal());
    const m = this.tensor(`${name}.m`, [c], () => 0.1 * this.rng.normal());
    const v = this.tensor(`${name}.v`, [c], () => 1 + 0.2 * this.rng.next());
    this.nodes.push({ opType: 'BatchNormalization', inputs: [x, g, b, m, v], outputs: [name], name, attrs: { epsilon: { f: 1e-5 } } });
    return name;
  }

  op(opType: string, inputs: string[], attrs?: NodeSpec['attrs']): string {
    const name = this.fresh(opType.toLowerCase());
    this.nodes.push({ opType, inputs, outputs: [name], name, ...(attrs ? { attrs } : {}) });
    return name;
  }

  maxPool(x: string, k: number, stride: number, pad: number): string {
    return this.op('MaxPool', [x], { kernel_shape: { ints: [k, k] }, strides: { ints: [stride, stride] }, pads: { ints: [pad, pad, pad, pad] } });
  }

  gemm(x: string, cin: number, cout: number): string {
    const name = this.fresh('fc');
    const std = Math.sqrt(2 / cin);
    const w = this.tensor(`${name}.w`, [cout, cin], () => this.rng.normal() * std);
    const b = this.tensor(`${name}.b`, [cout], () => 0.01 * this.rng.normal());
    this.nodes.push({ opType: 'Gemm', inputs: [x, w, b], outputs: [name], name, attrs: { transB: { i: 1 } } });
    return name;
  }

  convBn(x: string, cin: number, cout: number, k: number, stride: number, relu: boolean): string {
    const y = this.bn(this.conv(x, cin, cout, k, stride, false), cout);
    return relu ? this.op('Relu', [y]) : y;
  }

  encode(output: string): Uint8Array {
    return encodeGraph({ opset: 13, inputs: [{ name: 'input', dims: [1, 3, 224, 224] }], outputs: [{ name: output }], nodes: this.nodes, initializers: this.inits, name: 'bench' });
  }
}

function resnet(b: Builder, bottleneck: boolean, blocks: readonly number[]): string {
  let x = b.maxPool(b.convBn('input', 3, 64, 7, 2, true), 3, 2, 1);
  let cin = 64;
  const expansion = bottleneck ? 4 : 1;
  blocks.forEach((count, stage) => {
    const width = 64 << stage;
    for (let i = 0; i < count; i++) {
      const stride = i === 0 && stage > 0 ? 2 : 1;
      const cout = width * expansion;
      const branch = bottleneck
        ? b.convBn(b.convBn(b.convBn(x, cin, width, 1, 1, true), width, width, 3, stride, true), width, cout, 1, 1, false)
        : b.convBn(b.convBn(x, cin, width, 3, stride, true), width, cout, 3, 1, false);
      const shortcut = stride !== 1 || cin !== cout ? b.convBn(x, cin, cout, 1, stride, false) : x;
      x = b.op('Relu', [b.op('Add', [branch, shortcut])]);
      cin = cout;
    }
  });
  return b.gemm(b.op('Flatten', [b.op('GlobalAveragePool', [x])]), cin, 1000);
}

function vgg16(b: Builder): string {
  let x = 'input';
  let cin = 3;
  for (const [convs, c] of [[2, 64], [2, 128], [3, 256], [3, 512], [3, 512]] as const) {
    for (let i = 0; i < convs; i++) { x = b.op('Relu', [b.conv(x, cin, c, 3, 1, true)]); cin = c; }
    x = b.maxPool(x, 2, 2, 0);
  }
  x = b.op('Flatten', [x]);
  x = b.op('Relu', [b.gemm(x, 512 * 7 * 7, 4096)]);
  x = b.op('Relu', [b.gemm(x, 4096, 4096)]);
  return b.gemm(x, 4096, 1000);
}

/** The ONNX bytes of one benchmark model, deterministic for a given name. */
export function makeBenchModel(name: BenchModel): Uint8Array {
  const b = new Builder(new Random(20261125 + BENCH_MODELS.indexOf(name)));
  const out = name === 'resnet18' ? resnet(b, false, [2, 2, 2, 2]) : name === 'resnet50' ? resnet(b, true, [3, 4, 6, 3]) : vgg16(b);
  return b.encode(out);
}

/** The path of a generated model, generating it first when absent (or when `force`). */
export function benchModelPath(name: BenchModel, force = false): string {
  const path = `${BENCH_OUT}${name}.onnx`;
  if (force || !existsSync(path)) {
    mkdirSync(BENCH_OUT, { recursive: true });
    writeFileSync(path, makeBenchModel(name));
  }
  return path;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const wanted = BENCH_MODELS.filter((m) => args.includes(m));
  for (const m of wanted.length ? wanted : BENCH_MODELS) {
    const t0 = performance.now();
    const path = benchModelPath(m, args.includes('--force'));
    console.error(`${path}: ${(statSync(path).size / 2 ** 20).toFixed(1)} MB (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}
