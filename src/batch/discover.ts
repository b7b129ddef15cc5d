import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, normalize, relative, sep } from 'node:path';
import picomatch from 'picomatch';
import { LipcheckError } from '../errors.js';

/** Options of every glob: bash semantics (`[!a]` negates a class, as in a shell), dot files only when named. */
const GLOB_OPTIONS = { posix: true, dot: false } as const;

/** True when `arg` is a glob pattern (`*`, `?`, `[…]`, `{a,b}`, `**`) rather than a path. */
export function isGlob(arg: string): boolean {
  return picomatch.scan(arg).isGlob;
}

/**
 * A glob pattern as a predicate on '/'-separated paths, through picomatch: `**` spans directories, `*` and `?` do
 * not, `[…]` and `[!…]` classes, `{a,b}` and `{1..3}` braces.
 */
export function globMatcher(pattern: string): (path: string) => boolean {
  return picomatch(pattern, GLOB_OPTIONS);
}

/** What a directory walk could not do: directories it could not list (the models in them would be missed). */
interface Walk {
  readonly seen: Set<string>;
  readonly out: string[];
  readonly unreadable: string[];
}

function walk(dir: string, w: Walk, accept: (p: string) => boolean): void {
  let real: string;
  let entries;
  try {
    real = realpathSync(dir);
    if (w.seen.has(real)) return;
    w.seen.add(real);
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    w.unreadable.push(`${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    return;
  }
  for (const e of entries) {
    const p = dir === '.' ? e.name : join(dir, e.name);
    let isDir = e.isDirectory(), isFile = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const st = statSync(p);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        // a dangling link that looks like a model is kept: the batch records why it cannot be read
        isFile = true;
      }
    }
    if (isDir) walk(p, w, accept);
    else if (isFile && accept(p)) w.out.push(p);
  }
}

/**
 * What `findModels` found: the model paths, sorted and without duplicates; the arguments that matched nothing; the
 * paths named explicitly that do not exist; and the directories that could not be listed. A batch refuses to run
 * with `missing` or `unreadable` entries (fail closed: a gate must never pass over models it did not see).
 */
export interface Discovery {
  readonly models: readonly string[];
  readonly unmatched: readonly string[];
  readonly missing: readonly string[];
  readonly unreadable: readonly string[];
}

/**
 * The model list of a batch: files as given (whatever their extension), directories searched recursively for
 * `.onnx` files, and glob patterns (picomatch: `*`, `?`, `[…]`, `{a,b}`, `**`) expanded when no file has that
 * literal name. Paths keep the form they were given in (relative stays relative, normalised), so shards on other
 * machines name models alike; the list is sorted by path so that `--shard` partitions are deterministic, and a file
 * reached by several paths (symbolic links) appears once.
 */
export function findModels(args: readonly string[]): Discovery {
  const w: Walk = { seen: new Set(), out: [], unreadable: [] };
  const unmatched: string[] = [];
  const missing: string[] = [];
  const isOnnx = (p: string) => p.toLowerCase().endsWith('.onnx');
  for (const arg of args) {
    const path = normalize(arg);
    let st;
    try {
      st = statSync(path);
    } catch {
      st = null;
    }
    const before = w.out.length;
    if (st?.isDirectory()) {
      w.seen.clear();
      walk(path, w, isOnnx);
      if (w.out.length === before) unmatched.push(arg);
    } else if (st) w.out.push(path);
    else if (!isGlob(arg)) missing.push(arg);
    else {
      const scan = picomatch.scan(arg.split(sep).join('/'));
      const base = scan.base || '.';
      const match = globMatcher(scan.glob);
      w.seen.clear();
      // a base directory that does not exist simply matches nothing, as in a shell
      if (existsSync(base)) walk(base, w, (p) => match(relative(base, p).split(sep).join('/')));
      if (w.out.length === before) unmatched.push(arg);
    }
  }
  // one model reached by several paths (a directory and a file inside it, symbolic links) is analysed once, under its first path in sorted order
  const byFile = new Map<string, string>();
  for (const p of w.out) {
    let key = p;
    try {
      key = realpathSync(p);
    } catch { /* a dangling link: the batch records why */ }
    const had = byFile.get(key);
    if (had === undefined || p < had) byFile.set(key, p);
  }
  const models = [...byFile.values()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { models, unmatched, missing, unreadable: [...new Set(w.unreadable)] };
}

/** Parses `--shard i/n` (0 ≤ i < n, zero-based like a Kubernetes Indexed Job's JOB_COMPLETION_INDEX). */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new LipcheckError('USAGE', `--shard '${text}' is invalid: give i/n with 0 ≤ i < n, e.g. --shard 0/3 for the first of three shards (shard indices start at 0).`);
  }
  return { index, count };
}

/** Shard `index` of `count` of a sorted model list: every count-th model from position index (round robin, so shards get a similar mix). */
export function shardOf<T>(models: readonly T[], shard: { index: number; count: number }): T[] {
  return models.filter((_, k) => k % shard.count === shard.index);
}
