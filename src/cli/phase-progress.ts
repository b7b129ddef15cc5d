/**
 * Progress of one model's analysis on stderr, across its phases (graph build, operator norms, segments, lower bound):
 * a bar on a terminal, one line per phase otherwise, nothing with --quiet. stdout is never touched, so it works the
 * same with --json. The clock only decides what is shown (the bar appears after a second), never how much work is done.
 */
import cliProgress from 'cli-progress';
import type { AnalysisPhase } from '../index.js';

/** How progress is shown: a redrawn bar (terminal), one line per phase (logs, --verbose), or not at all. */
export type ProgressMode = 'bar' | 'lines' | 'none';

export interface PhaseProgress {
  update(done: number, total: number, what: string, phase: AnalysisPhase): void;
  stop(): void;
}

const PHASES: Readonly<Record<AnalysisPhase, { name: string; unit?: string }>> = {
  build: { name: 'reading the graph' },
  norms: { name: 'operator norms', unit: 'operators' },
  segments: { name: 'tighter bounds on segments (CP, SeqLip)', unit: 'segments' },
  lower: { name: 'witnessed lower bound' },
};

/** The mode for a run: none with --quiet; lines with --verbose or when stderr is not a terminal; else a bar. */
export function progressMode(o: { quiet?: boolean; verbose?: boolean; stderrIsTTY: boolean }): ProgressMode {
  return o.quiet ? 'none' : o.verbose || !o.stderrIsTTY ? 'lines' : 'bar';
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** A progress display for one analysis of `label` (the model path), written with `write` (stderr). */
export function createPhaseProgress(mode: ProgressMode, label: string, write: (s: string) => void, stream?: NodeJS.WritableStream, delayMs = 1000): PhaseProgress {
  if (mode === 'none') return { update() {}, stop() {} };
  const t0 = Date.now();
  if (mode === 'lines') {
    let last: AnalysisPhase | null = null;
    return {
      update(done, total, _what, phase) {
        if (phase === last || total === 0) return;
        last = phase;
        const p = PHASES[phase];
        write(`lipcheck: [${seconds(Date.now() - t0)}] ${label}: ${p.name}${p.unit ? `, ${total} ${total === 1 ? p.unit.slice(0, -1) : p.unit}` : ''}\n`);
      },
      stop() {},
    };
  }
  let bar: cliProgress.SingleBar | null = null;
  let state = { done: 0, total: 1, what: '', phase: 'build' as AnalysisPhase };
  const payload = () => {
    const p = PHASES[state.phase];
    return { phase: p.name, count: p.unit ? `${state.done}/${state.total}` : '', what: p.unit && state.what !== 'done' ? state.what : '' };
  };
  const show = () => {
    if (bar) return;
    bar = new cliProgress.SingleBar({
      stream: stream ?? process.stderr, format: `${label}: {phase} [{bar}] {count} {what} {duration_formatted}`, hideCursor: true, clearOnComplete: true, barsize: 20,
    }, cliProgress.Presets.shades_classic);
    bar.start(state.total, state.done, payload());
  };
  // the bar appears once the analysis has lasted a second, even in the middle of a long phase
  const timer = setTimeout(show, delayMs);
  timer.unref();
  return {
    update(done, total, what, phase) {
      const changed = phase !== state.phase;
      state = { done, total: Math.max(1, total), what, phase };
      if (!bar) return;
      bar.setTotal(state.total);
      bar.update(done, payload());
      // a new phase shows at once, not at the next timed redraw
      if (changed) bar.render();
    },
    stop() {
      clearTimeout(timer);
      bar?.stop();
      bar = null;
    },
  };
}
