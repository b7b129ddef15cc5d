import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Tensor } from '../../../src/ir/tensor.js';
import type { ActivationNode, IrNode } from '../../../src/ir/types.js';
import { Attributes, type AttributeValue } from '../../../src/onnx/attributes.js';
import type { ConvertContext, InputValue } from '../../../src/ops/context.js';
import { elementwiseOf, erf, ELEMENTWISE } from '../../../src/ops/elementwise.js';
import { OP_REGISTRY } from '../../../src/ops/registry.js';

const SHAPE = [1, 4];
const f32 = (dims: number[], values: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from(values) });

/**
 * Per-row inputs and attributes that make the converter produce an activation (Shrink and ThresholdedRelu are
 * continuous only for some attributes) and that exercise its parameters (non-default alphas, a per-channel PRelu slope,
 * a Max operand, a bias, the fused patterns' matched constants).
 */
const SETUP: Record<string, { attrs?: Record<string, AttributeValue>; consts?: (Tensor | null)[]; opset?: number }> = {
  LeakyRelu: { attrs: { alpha: { type: 'float', value: 0.2 } } },
  PRelu: { consts: [f32([4], [0.1, -0.3, 0.5, 2])] },
  HardSigmoid: { attrs: { alpha: { type: 'float', value: 0.3 }, beta: { type: 'float', value: 0.4 } } },
  Elu: { attrs: { alpha: { type: 'float', value: 0.7 } } },
  Selu: {},
  Celu: { attrs: { alpha: { type: 'float', value: 1.5 } } },
  Clip: { consts: [f32([], [-0.5]), f32([], [1.5])], opset: 13 },
  Shrink: { attrs: { lambd: { type: 'float', value: 0.5 }, bias: { type: 'float', value: 0.5 } } },
  ThresholdedRelu: { attrs: { alpha: { type: 'float', value: 0 } } },
  Gelu: { opset: 20 },
  Mish: { opset: 18 },
  BiasGelu: { consts: [f32([4], [0.3, -0.2, 1, 0])] },
  FastGelu: { consts: [f32([4], [0.3, -0.2, 1, 0])] },
  QuickGelu: { attrs: { alpha: { type: 'float', value: 1.702 } } },
  Max: { consts: [f32([4], [0.25, -1, 0.5, 2])], opset: 13 },
  Min: { consts: [f32([1], [0.75])], opset: 13 },
  'x·Sigmoid(x)': { attrs: { scale: { type: 'float', value: 1 } } },
  'x·Tanh(Softplus(x))': { attrs: { scale: { type: 'float', value: 2 } } },
  'x·HardSigmoid(x)': { attrs: { scale: { type: 'float', value: 1 }, alpha: { type: 'float', value: 1 / 6 }, beta: { type: 'float', value: 0.5 } } },
  'x·(a + Erf(kx))': { attrs: { scale: { type: 'float', value: 0.5 }, a: { type: 'float', value: 1 }, k: { type: 'float', value: Math.SQRT1_2 } } },
  'x·(a + Tanh(αx + γx³))': { attrs: { scale: { type: 'float', value: 0.5 }, a: { type: 'float', value: 1 }, alpha: { type: 'float', value: Math.sqrt(2 / Math.PI) }, gamma: { type: 'float', value: 0.044715 * Math.sqrt(2 / Math.PI) } } },
};

/** The activation node(s) a registry row's converter makes for a [1, 4] input. */
function convert(row: (typeof OP_REGISTRY)[number]): IrNode[] {
  const setup = SETUP[row.opType] ?? {};
  const inputs: InputValue[] = [{ name: 'x', dynamic: true, shape: SHAPE, dtype: 'float32' }];
  (setup.consts ?? []).forEach((t, i) => inputs.push(t ? { name: `c${i}`, dynamic: false, tensor: t } : { name: '', dynamic: false, tensor: null }));
  const attrs = new Map<string, AttributeValue>(Object.entries(setup.attrs ?? {}));
  // the fused patterns carry their slope range as attributes lo and hi (src/ops/patterns.ts)
  if (row.domain === 'lipcheck.pattern') {
    const t = row.treatment.match(/\[([-0-9.e]+), ([-0-9.e]+)\]/)!;
    // the matcher scales the range by the matched constant (positive here)
    const scale = (setup.attrs?.scale as { value: number } | undefined)?.value ?? 1;
    attrs.set('lo', { type: 'float', value: scale * Number(t[1]) }); attrs.set('hi', { type: 'float', value: scale * Number(t[2]) });
  }
  const ctx: ConvertContext = { name: `n_${row.opType}`, opType: row.opType, opset: setup.opset ?? Math.max(row.opsets[0], 13), attrs: new Attributes(attrs), inputs, outputs: ['y'], outShapes: [SHAPE] };
  return row.convert(ctx);
}

const POINTS = [-7.3, -3.2, -2.9, -1.7, -1.1, -0.6, -0.23, 0.17, 0.45, 0.8, 1.3, 1.9, 2.6, 3.1, 5.4];

test('every activation of the registry (and Max/Min with a constant) has f and f′ in the elementwise table: f′ is the float64 central difference of f, inside the node\'s slope range', () => {
  const rows = OP_REGISTRY.filter((r) => r.family === 'activation' || r.opType === 'Max' || r.opType === 'Min');
  assert.ok(rows.length >= 30, `${rows.length} activation rows`);
  const covered = new Set<string>();
  for (const row of rows) {
    const nodes = convert(row).filter((n): n is ActivationNode => n.kind === 'activation');
    assert.equal(nodes.length, 1, `${row.domain || 'ai.onnx'} ${row.opType}: one activation node`);
    const node = nodes[0];
    const ew = elementwiseOf(node);
    assert.ok(typeof ew !== 'string', `${row.opType}: ${ew}`);
    covered.add(node.fn);
    const [lo, hi] = node.slope;
    for (let i = 0; i < 4; i++) {
      const kinks = ew.kinks(i);
      for (const u of POINTS) {
        const h = 1e-6;
        // a central difference across a kink measures nothing: those points are moved off it
        if (kinks.some((k) => Math.abs(u - k) < 10 * h)) continue;
        const fd = (ew.f(u + h, i) - ew.f(u - h, i)) / (2 * h);
        const d = ew.df(u, i);
        assert.ok(Math.abs(fd - d) <= 1e-6 * Math.max(1, Math.abs(d)), `${row.opType} element ${i} at ${u}: f′ = ${d}, difference of f = ${fd}`);
        assert.ok(d >= lo - 1e-12 && d <= hi + 1e-12, `${row.opType} element ${i} at ${u}: f′ = ${d} outside the slope range [${lo}, ${hi}]`);
      }
      // just either side of each kink, f′ is the slope of f there (one-sided differences)
      for (const k of kinks) {
        for (const side of [-1, 1]) {
          const u = k + side * 1e-3, h = 1e-7;
          const fd = (ew.f(u + h, i) - ew.f(u - h, i)) / (2 * h);
          assert.ok(Math.abs(fd - ew.df(u, i)) <= 1e-5 * Math.max(1, Math.abs(fd)), `${row.opType} near kink ${k}: f′ ${ew.df(u, i)} vs ${fd}`);
        }
      }
    }
  }
  // no table entry is dead: every one is produced by some registry row
  assert.deepEqual(Object.keys(ELEMENTWISE).filter((k) => !covered.has(k)), []);
});

test('the table\'s values are the ONNX functions: known answers computed independently', () => {
  const at = (fn: string, u: number, params: Record<string, number> = {}, operand?: Tensor) => {
    const ew = elementwiseOf({ kind: 'activation', fn, slope: [-10, 10], params, operand, name: 'n', opType: fn, inputs: ['x'], inShapes: [[1]], output: 'y', outShape: [1] });
    assert.ok(typeof ew !== 'string');
    return ew.f(u, 0);
  };
  // erf reference values (Abramowitz & Stegun table 7.1, 15 digits)
  for (const [x, v] of [[0.5, 0.520499877813047], [1, 0.842700792949715], [2, 0.995322265018953], [3, 0.999977909503001], [-1.5, -0.966105146475311], [0.1, 0.112462916018285]]) {
    assert.ok(Math.abs(erf(x) - v) <= 2e-15, `erf(${x}) = ${erf(x)}, expected ${v}`);
  }
  assert.ok(Math.abs(at('Gelu', 1) - 0.841344746068543) < 1e-14); // 1·Φ(1)
  assert.ok(Math.abs(at('Gelu', 1, { approximate: 1 }) - 0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * 1.044715))) < 1e-15);
  assert.equal(at('HardSwish', 1), 1 * (1 / 6 + 0.5));
  assert.equal(at('HardSwish', -4), -0);
  assert.ok(Math.abs(at('Selu', -1) - 1.0507009873554805 * 1.6732632423543772 * (Math.exp(-1) - 1)) < 1e-7);
  assert.ok(Math.abs(at('Mish', 1) - Math.tanh(Math.log(1 + Math.E))) < 1e-15);
  assert.equal(at('Clip', 3, { min: -1, max: 2 }), 2);
  assert.equal(at('PRelu', -2, {}, f32([1], [0.25])), -0.5);
  assert.equal(at('Max', -2, {}, f32([1], [0.25])), 0.25);
  assert.ok(Math.abs(at('BiasGelu', 0.5, {}, f32([1], [0.5])) - 0.841344746068543) < 1e-14);
  assert.ok(Math.abs(at('x·(a + Erf(kx))', 1, { scale: 0.5, a: 1, k: Math.SQRT1_2 }) - 0.841344746068543) < 1e-14);
});
