/**
 * `f` on every item, at most `width` at a time (async lanes on one thread: useful where the backend runs the work off
 * the main thread, OperatorBackend.concurrency), results in the items' order. Each item is started in order; after a
 * failure no new item starts and the first error is thrown once the running ones have settled. Results do not depend
 * on `width` as long as `f` of one item does not read what another item writes.
 */
export async function mapInLanes<T, R>(items: readonly T[], width: number, f: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await f(items[i], i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const lanes = Math.max(1, Math.min(items.length, Math.floor(width) || 1));
  const settled = await Promise.allSettled(Array.from({ length: lanes }, lane));
  const error = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (error) throw error.reason;
  return out;
}
