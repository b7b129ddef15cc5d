import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { statSync } from 'node:fs';

/**
 * Large models are analysed in a child process that asks glibc (≥ 2.35; other C libraries ignore the variable) for
 * transparent huge pages and for keeping freed memory in the heap. Every onnxruntime output and every float64 copy of
 * a weight is a fresh buffer of up to tens of MB; with glibc's defaults each is a new mmap whose 4 KiB pages fault in
 * one by one and go back to the kernel on free. On the generated ResNet-50 (102 MB) this cut `--certify off --method
 * autolip` by 12–15 % of wall and CPU time on the 2-core reference VM (bench/README.md, eighth session). A relaunch
 * costs one Node start (~0.05–0.15 s), so it is only worth it for big files: the rule is a byte count of the model
 * file, never a clock, and the analysis's numbers do not depend on it (only where memory comes from changes).
 */
export const RELAUNCH_MIN_BYTES = 32 * 1024 * 1024;

/** The tunables the child gets: THP for malloc'd memory, no per-buffer mmap, no trimming of the heap's top. */
export const MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295';

/** Set in the child, so it never relaunches again. */
const MARK = 'LIPCHECK_RELAUNCHED';

/**
 * Whether a run on `modelPath` should move to a child process with MALLOC_TUNABLES: Linux, a regular file of at least
 * RELAUNCH_MIN_BYTES, no GLIBC_TUNABLES of the user's own (theirs wins) and not already relaunched. stdin models ('-')
 * stay in this process (their bytes are already read).
 */
export function wantsRelaunch(modelPath: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): boolean {
  if (platform !== 'linux' || env[MARK] || env.GLIBC_TUNABLES !== undefined || modelPath === '-') return false;
  try {
    const st = statSync(modelPath);
    return st.isFile() && st.size >= RELAUNCH_MIN_BYTES;
  } catch {
    return false; // the analysis reports the unreadable path itself
  }
}

/**
 * Runs the bin script again with the CLI arguments `argv` in a child with MALLOC_TUNABLES, stdio inherited (the report,
 * progress and colours are the child's), and resolves to its exit code; a child killed by a signal gives 128 + its
 * number, as a shell does. SIGINT, SIGTERM and SIGHUP sent to this process are passed on to the child (a CI job that
 * stops lipcheck stops the analysis too). Resolves to null when the child could not be started: the caller then
 * analyses in this process.
 */
export function relaunchWithTunables(argv: readonly string[]): Promise<number | null> {
  const script = process.argv[1];
  if (!script) return Promise.resolve(null);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
      stdio: 'inherit',
      env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES, [MARK]: '1' },
    });
    const forward = (signal: NodeJS.Signals) => { child.kill(signal); };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, forward);
    const done = (code: number | null) => { for (const sig of signals) process.off(sig, forward); resolve(code); };
    child.once('error', () => done(null));
    child.once('exit', (status, signal) => {
      if (status !== null) return done(status);
      const n = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
      done(128 + (n ?? 6));
    });
  });
}
