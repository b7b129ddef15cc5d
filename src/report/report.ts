import type { LayerResult, Reason } from '../estimators/autolip.js';
import type { Bound, NormKind } from '../estimators/kinds.js';

/** The JSON schema version of LipschitzReport; bump on any breaking change (docs/json-schema.md). */
export const SCHEMA_VERSION = 1;

/** A witnessed lower bound: the ratio ‖f(x)−f(x')‖/‖x−x'‖ of one pair run through the original model; `evaluations` counts model runs. */
export interface LowerBound extends Bound {
  readonly kind: 'lower';
  readonly evaluations: number;
}

/** Everything one analysis found; reporters turn it into text. */
export interface LipschitzReport {
  readonly schemaVersion: number;
  readonly tool: { readonly name: 'lipcheck'; readonly version: string };
  readonly model: { readonly path: string; readonly sha256: string; readonly bytes: number; readonly producer: string; readonly opset: number; readonly irVersion: number };
  readonly input: { readonly name: string; readonly shape: readonly number[] };
  readonly output: { readonly name: string; readonly shape: readonly number[] };
  readonly norm: NormKind;
  readonly settings: {
    readonly method: 'autolip' | 'cp' | 'seqlip' | 'sdp' | 'exact' | 'best';
    readonly cpWindow: number;
    readonly seqlipK: number;
    readonly seed: number; readonly delta: number; readonly tol: number; readonly iterations: number;
    readonly certify: 'strict' | 'auto' | 'off' | 'none';
    /** Work budgets in Mflop of the cost model (never time): one certificate's cap, and the lower-bound search; its random pairs. */
    readonly certifyBudget: number; readonly sdpWork?: number; readonly exactBudget?: number; readonly lowerBudget: number; readonly lowerPairs: number;
    readonly device: string; readonly provider: string;
  };
  readonly global: {
    readonly status: 'bounded' | 'unbounded' | 'discontinuous';
    readonly upper: Bound | null;
    /** The 2018 paper's AutoLip number: the composition with per-operator estimates, no guarantee. */
    readonly estimate: number | null;
    /** Every method's global value: AutoLip, AutoLip with Combettes–Pesquet or SeqLip segments where there are any, and greedy SeqLip (an estimate, upper null). */
    /** `work`: multiply-adds the method spent, where it counts them (LipSDP). */
    readonly methods: readonly { readonly method: string; readonly upper: Bound | null; readonly estimate: number | null; readonly work?: number }[];
    readonly lower: LowerBound | null;
    readonly ratio: number | null;
    /** Union bound over the probabilistic operator bounds: the report fails with probability at most this. */
    readonly failureProbability: number;
    readonly reasons: readonly Reason[];
  };
  readonly layers: readonly LayerResult[];
  readonly warnings: readonly string[];
  readonly timings: { readonly loadMs: number; readonly buildMs: number; readonly normsMs: number; readonly lowerMs: number; readonly totalMs: number };
  /** What the process used, added by the CLI (the library does not read process state): peak resident memory in MiB. */
  readonly resources?: { readonly peakRssMb: number | null };
  /** The gate verdicts, added by the CLI: `value ≤ limit` passed (`max`: the upper bound; `max-increase`: growth over the baseline, 0.1 = +10 %); empty without gates. */
  readonly gates?: readonly { readonly name: string; readonly limit: number; readonly value: number | null; readonly passed: boolean; readonly message: string }[];
}
