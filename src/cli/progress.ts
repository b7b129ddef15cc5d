/** How a batch shows its progress on stderr: a redrawn bar (a terminal), one line per finished model (a log), or nothing. */
export type BatchProgressMode = 'bar' | 'lines' | 'off';

/**
 * The batch display on stderr. `bar` (a TTY): an overall bar, then one line per model in flight with its elapsed
 * time, redrawn in place a few times a second. `lines` (CI logs, pipes): one line per finished model, `[k/n] path:
 * outcome (seconds)`, so a long batch is never silent.
 */
export function createBatchProgress(mode: BatchProgressMode, total: number, alreadyDone: number): { start(path: string): void; finish(path: string, outcome: string, ms: number): void; stop(): void } {
  if (mode === 'off') return { start() {}, finish() {}, stop() {} };
  let done = alreadyDone;
  if (mode === 'lines') {
    const width = String(total).length;
    return {
      start() {},
      finish(path, outcome, ms) {
        done++;
        process.stderr.write(`lipcheck: [${String(done).padStart(width)}/${total}] ${path}: ${outcome} (${(ms / 1000).toFixed(1)} s)\n`);
      },
      stop() {},
    };
  }
  const running = new Map<string, number>();
  let drawn = 0;
  const t0 = Date.now();
  const width = () => Math.max(40, (process.stderr.columns ?? 100) - 1);
  const clock = (ms: number) => { const s = Math.floor(ms / 1000); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; };
  const fit = (s: string) => (s.length > width() ? `…${s.slice(s.length - width() + 1)}` : s);
  const draw = () => {
    const cells = 30, filled = total ? Math.round((cells * done) / total) : cells;
    const lines = [`[${'█'.repeat(filled)}${'░'.repeat(cells - filled)}] ${done}/${total} models · ${running.size} running · ${clock(Date.now() - t0)}`];
    for (const [p, since] of running) lines.push(fit(`  ▸ ${p} (${clock(Date.now() - since)})`));
    let text = drawn ? `\x1b[${drawn}A` : '';
    for (const l of lines) text += `\x1b[2K${l}\n`;
    for (let k = lines.length; k < drawn; k++) text += '\x1b[2K\n';
    if (drawn > lines.length) text += `\x1b[${drawn - lines.length}A`;
    process.stderr.write(text);
    drawn = lines.length;
  };
  const timer = setInterval(draw, 250);
  timer.unref();
  return {
    start(path) { running.set(path, Date.now()); },
    finish(path) { running.delete(path); done++; },
    stop() {
      clearInterval(timer);
      if (drawn) process.stderr.write(`\x1b[${drawn}A\x1b[0J`);
      drawn = 0;
    },
  };
}
