// Preloaded into batch workers by a test (NODE_OPTIONS=--import this file, LIPCHECK_TEST_DIE_AFTER_RECORD=1): a worker
// sends its first record, then kills itself with SIGKILL, so the batch's next job is written to a worker that is gone
// (EPIPE) before its exit is seen. Without the variable, or outside a forked worker, it does nothing.
if (process.send && process.env.LIPCHECK_TEST_DIE_AFTER_RECORD) {
  const send = process.send.bind(process);
  process.send = (message, ...rest) => {
    if (message && typeof message === 'object' && 'record' in message) return send(message, () => process.kill(process.pid, 'SIGKILL'));
    return send(message, ...rest);
  };
}
