import cliProgress from 'cli-progress';

/** A progress bar on stderr that appears only when the work lasts longer than `delayMs`. */
export function createProgress(enabled: boolean, delayMs = 1000): { update(done: number, total: number, what: string): void; stop(): void } {
  if (!enabled) return { update() {}, stop() {} };
  const start = Date.now();
  let bar: cliProgress.SingleBar | null = null;
  return {
    update(done, total, what) {
      if (!bar && Date.now() - start >= delayMs && done < total) {
        bar = new cliProgress.SingleBar({ stream: process.stderr, format: 'operator norms [{bar}] {value}/{total} {what}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic);
        bar.start(total, done, { what });
      }
      bar?.update(done, { what });
    },
    stop() {
      bar?.stop();
    },
  };
}
