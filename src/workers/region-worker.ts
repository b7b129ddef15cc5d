/**
 * The entry of a region worker (src/workers/region-pool.ts): a thread that measures whole operators. It builds its
 * own onnxruntime backend (sessions on this thread, no session workers of its own) and answers each request with
 * measureRegion's (or CP's productLanczos's) result for the region, settings and index it was sent, a CP fold's
 * Gram factor (product-fold.ts gramFactor), or power steps on a map of a scaling descent it holds open between
 * requests (scaled-power.ts): the same function on the same data as on the main thread, so the same numbers.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createOrtBackend } from '../backend/index.js';
import { setOrtWorkers } from '../backend/ort-pool.js';
import { isLipcheckError } from '../errors.js';
import type { LinearRegion } from '../ir/merge.js';
import { measureRegion, type PlainNormSettings, type ProductError } from '../estimators/operator-norm.js';
import { productLanczos } from '../estimators/cp.js';
import { gramFactor } from '../estimators/product-fold.js';
import { scaledPower, type ScaledPowerRequest, type ScaledPowerState } from '../estimators/scaled-power.js';
import type { LinearOperator } from '../ir/operator.js';
import type { RuntimeOptions } from '../backend/runtime.js';

type Request =
  | { readonly id: number; readonly task: 'measure' | 'product'; readonly region: LinearRegion; readonly settings: PlainNormSettings; readonly index: number; readonly margins: readonly ProductError[] }
  | { readonly id: number; readonly task: 'factor'; readonly m: Float64Array; readonly c: number; readonly n: number; readonly relErr: number }
  | { readonly id: number; readonly task: 'scaled-open'; readonly key: string; readonly region: LinearRegion }
  | { readonly id: number; readonly task: 'scaled-step'; readonly key: string; readonly req: ScaledPowerRequest }
  | { readonly id: number; readonly task: 'scaled-close'; readonly keys: readonly string[] };

if (!parentPort) throw new Error('src/workers/region-worker.ts runs only as a worker thread');
const port = parentPort;
// this thread runs its sessions itself: it is one of the workers
setOrtWorkers('off');
// the pool's one-thread runtime: `parallel` false, and with session workers off a concurrency of 1
const backend = createOrtBackend({ runtime: (workerData as { runtime: RuntimeOptions }).runtime });

// the maps of scaling descents (scaled-power.ts) open on this thread: each one's operator and warm vector, by key
const scaledMaps = new Map<string, { op: LinearOperator; state: ScaledPowerState }>();

// one operator at a time, in the order sent: its sessions alone hold this thread's memory and onnxruntime threads
let queue: Promise<void> = Promise.resolve();
port.on('message', (m: Request) => {
  queue = queue.then(() => measure(m));
});

async function measure(m: Request): Promise<void> {
  try {
    if (m.task === 'scaled-open') {
      scaledMaps.set(m.key, { op: await backend.operator(m.region), state: { warm: null } });
      port.postMessage({ id: m.id, result: null });
      return;
    }
    if (m.task === 'scaled-step') {
      const map = scaledMaps.get(m.key);
      if (!map) throw new Error(`no scaled map ${m.key} is open on this worker`);
      const r = await scaledPower(map.op, map.state, m.req);
      port.postMessage({ id: m.id, result: r }, [r.gFrom?.buffer, r.gTo?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer));
      return;
    }
    if (m.task === 'scaled-close') {
      for (const key of m.keys) {
        const map = scaledMaps.get(key);
        scaledMaps.delete(key);
        await map?.op.dispose();
      }
      port.postMessage({ id: m.id, result: null });
      return;
    }
    if (m.task === 'factor') {
      const r = await gramFactor(m.m, m.c, m.n, m.relErr, backend.denseGram);
      port.postMessage({ id: m.id, result: r }, r ? [r.f.buffer as ArrayBuffer] : []);
      return;
    }
    const settings = { ...m.settings, backend };
    // Ritz vectors may live in a shared WebAssembly heap: each is sent as a copy of its own
    if (m.task === 'measure') {
      const r = await measureRegion(m.region, settings, m.index);
      const direction = r.direction && new Float64Array(r.direction);
      port.postMessage({ id: m.id, result: { ...r, direction } }, direction ? [direction.buffer] : []);
    } else {
      const r = await productLanczos(m.region, settings, m.index, m.margins);
      const gramVector = new Float64Array(r.gramVector);
      port.postMessage({ id: m.id, result: { ...r, gramVector } }, [gramVector.buffer]);
    }
  } catch (e) {
    const err = e as Error;
    port.postMessage({ id: m.id, error: { code: isLipcheckError(e) ? e.code : null, message: String(err?.message ?? e), details: isLipcheckError(e) ? [...e.details] : [] } });
  }
}
