import type { OperatorBackend, LinearOperator } from '../ir/operator.js';
import { sizeOf } from '../ir/tensor.js';
import { mapInLanes } from './lanes.js';
import { regionFlop } from '../linalg/work.js';
import { channelsOf, descendLogScales } from './cp-scaling.js';
import type { RegionOffload } from './operator-norm.js';
import { scaledPower, type ScaledPowerResult, type ScaledPowerState } from './scaled-power.js';
import { graphLevels, mapKey, scaleKeys, type GraphCpMaps, type GraphScaling } from './graph-cp.js';

/**
 * Scalings for the whole-graph expansion (docs/algorithms-cp-scaling.md §5). For positive δ at every expanded
 * activation (per channel or per unit of its input value; its output takes the same δ), the rescaled graph is the same
 * function with activations of the same slope ranges, and its maps are Δ_t⁻¹·M·Δ_s; graphCpBound on it bounds the
 * model for every δ. The δ chosen here lower the expansion's estimate.
 */

/**
 * Scalings that lower graph-cp's estimate: descendLogScales on log δ, each map's norm ‖Δ_t⁻¹·M·Δ_s‖ by `steps` power
 * steps (powerPair, warm-started; the identity maps s = t exactly: the largest ratio δ_s/δ_t), the recursion
 * (graphLevels) differentiated in reverse. Per channel (axis 1 of a batch-1 value; a [1, F] value's features), else per
 * unit. Null where the
 * graph's output is also an expanded activation's input (its scaling would have to be both δ and 1).
 */
export async function chooseGraphScalings(plan: GraphCpMaps, backend: OperatorBackend, opts: { readonly iterations: number; readonly steps: number; readonly budget: number; readonly seed: number; readonly width: number; readonly offload?: RegionOffload }): Promise<{ scaling: GraphScaling; before: number; after: number; iterations: number; work: number } | null> {
  if (plan.expanded.some((a) => a.inputs[0] === plan.output)) return null;
  const keys = [...new Set(plan.expanded.map((a) => a.inputs[0]))];
  const index = new Map(keys.map((k, i) => [k, i]));
  const shapes = keys.map((k) => plan.shapeOf.get(k)!);
  const grouped = shapes.map((sh) => sh.length >= 2 && sh[0] === 1);
  const inner = shapes.map((sh, i) => (grouped[i] ? channelsOf(sh).inner : 1));
  const logd = shapes.map((sh, i) => new Float64Array(sizeOf(sh) / inner[i]));
  const maps = [...plan.maps.values()].map((m) => { const k = scaleKeys(plan, m.s, m.t); return { m, from: k.from === null ? -1 : index.get(k.from)!, to: k.to === null ? -1 : index.get(k.to)! }; });
  const ops = new Map<string, LinearOperator>();
  const flops = maps.map(({ m }) => (m.region ? regionFlop(m.region) : 0));
  const perIteration = flops.reduce((a, f) => a + 2 * opts.steps * f, 0);
  // the maps' power steps on region workers where the offload takes them (each map's operator built once, on its
  // worker), else here
  const remote = opts.offload?.scaledMaps?.(maps.map(({ m }) => m.region), perIteration) ?? null;
  try {
    if (!remote) for (const { m } of maps) if (m.region) ops.set(mapKey(m.s, m.t), await backend.operator(m.region));
    let work = 0;
    const states = maps.map((): ScaledPowerState => ({ warm: null }));
    /** One map's estimate ‖Δ_t⁻¹·M·Δ_s‖ and its gradients with respect to log δ_s and log δ_t (per group). */
    const norm = async (e: (typeof maps)[number], index: number, steps: number): Promise<ScaledPowerResult> => {
      const { m, from, to } = e;
      if (!m.region) {
        // s = t: Δ_t⁻¹·Δ_s is diagonal, its norm the largest ratio, its gradient at that element
        const n = sizeOf(plan.shapeOf.get(m.s)!);
        let best = -Infinity, at = 0;
        for (let i = 0; i < n; i++) {
          const v = (from >= 0 ? logd[from][Math.floor(i / inner[from])] : 0) - (to >= 0 ? logd[to][Math.floor(i / inner[to])] : 0);
          if (v > best) { best = v; at = i; }
        }
        const sigma = Math.exp(best);
        const gFrom = from >= 0 ? new Float64Array(logd[from].length) : null, gTo = to >= 0 ? new Float64Array(logd[to].length) : null;
        if (gFrom) gFrom[Math.floor(at / inner[from])] = sigma;
        if (gTo) gTo[Math.floor(at / inner[to])] = -sigma;
        return { sigma, gFrom, gTo };
      }
      const req = { from: from >= 0 ? { logd: logd[from], inner: inner[from] } : null, to: to >= 0 ? { logd: logd[to], inner: inner[to] } : null, steps, seed: opts.seed + 7919 * index };
      work += 2 * steps * flops[index];
      // on the map's region worker where the descent has them (the same function there: the same numbers)
      return remote ? remote.step(index, req) : scaledPower(ops.get(mapKey(m.s, m.t))!, states[index], req);
    };
    const r = new Map(plan.expanded.map((a) => [a, (a.slope[1] - a.slope[0]) / 2]));
    const evaluate = async (steps: number) => {
      const N = new Map<string, number>();
      const G = new Map<string, { gFrom: Float64Array | null; gTo: Float64Array | null }>();
      // the maps at once where the backend runs products off the main thread, all of them where they are on region
      // workers (each worker takes its own in turn); each map's start is its own, so the same numbers
      const all = await mapInLanes(maps, remote ? maps.length : opts.width, (e, i) => norm(e, i, steps));
      maps.forEach((e, i) => { const k = mapKey(e.m.s, e.m.t); N.set(k, all[i].sigma); G.set(k, all[i]); });
      const { levels, output } = graphLevels(plan, (s, t) => N.get(mapKey(s, t)));
      // reverse mode through L(h_j) = N(x, h_j) + Σ_a r_a·N(a, h_j)·L(h_a), the output last
      const dN = new Map<string, number>();
      const dL = new Map<string, number>();
      const back = (t: string, g: number) => {
        if (g === 0) return;
        const kx = mapKey(plan.input, t);
        if (N.has(kx)) dN.set(kx, (dN.get(kx) ?? 0) + g);
        for (const a of plan.expanded) {
          const k = mapKey(a.output, t);
          const n = N.get(k);
          if (n === undefined) continue;
          const h = a.inputs[0], ra = r.get(a)!;
          dN.set(k, (dN.get(k) ?? 0) + g * ra * levels.get(h)!);
          dL.set(h, (dL.get(h) ?? 0) + g * ra * n);
        }
      };
      back(plan.output, 1);
      for (let i = keys.length - 1; i >= 0; i--) back(keys[i], dL.get(keys[i]) ?? 0);
      const grad = logd.map((d) => new Float64Array(d.length));
      for (const e of maps) {
        const k = mapKey(e.m.s, e.m.t), d = dN.get(k) ?? 0, g = G.get(k)!;
        if (d === 0) continue;
        if (g.gFrom) g.gFrom.forEach((x, i) => { grad[e.from][i] += d * x; });
        if (g.gTo) g.gTo.forEach((x, i) => { grad[e.to][i] += d * x; });
      }
      return { value: output, grad };
    };
    const { before, after, iterations } = await descendLogScales(logd, evaluate, { ...opts, perIteration, work: () => work });
    const scaling = new Map(keys.map((k, i) => [k, { dims: grouped[i] ? shapes[i].map((d, j) => (j === 1 ? d : 1)) : [...shapes[i]], data: logd[i].map(Math.exp) }]));
    return { scaling, before, after, iterations, work };
  } finally {
    for (const op of ops.values()) await op.dispose();
    await remote?.close();
  }
}
