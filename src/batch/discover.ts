import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join, normalize, sep } from 'node:path';
import { LipcheckError } from '../errors.js';

const GLOB = /[*?[]/;

/** A glob pattern as a regular expression over '/'-separated paths: `**` spans directories, `*` and `?` do not. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function walk(dir: string, seen: Set<string>, out: string[], accept: (p: string) => boolean): void {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return;
  }
  if (seen.has(real)) return;
  seen.add(real);
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
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
        continue;
      }
    }
    if (isDir) walk(p, seen, out, accept);
    else if (isFile && accept(p)) out.push(p);
  }
}

/** What `findModels` found: the model paths, sorted and without duplicates, and the arguments that matched nothing. */
export interface Discovery {
  readonly models: readonly string[];
  readonly unmatched: readonly string[];
}

/**
 * The model list of a batch: files as given (whatever their extension), directories searched recursively for
 * `.onnx` files, and glob patterns (`*`, `?`, `[…]`, `**`) expanded when no file has that literal name. Paths keep
 * the form they were given in (relative stays relative, normalised), so shards on other machines name models alike;
 * the list is sorted by path so that `--shard` partitions are deterministic, and a file reached by several paths
 * (symbolic links) appears once. A named file that does not exist is
 * kept: the batch records why it could not be read.
 */
export function findModels(args: readonly string[]): Discovery {
  const found: string[] = [];
  const unmatched: string[] = [];
  const isOnnx = (p: string) => p.toLowerCase().endsWith('.onnx');
  for (const arg of args) {
    const path = normalize(arg);
    let st;
    try {
      st = statSync(path);
    } catch {
      st = null;
    }
    if (st?.isDirectory()) {
      const before = found.length;
      walk(path, new Set(), found, isOnnx);
      if (found.length === before) unmatched.push(arg);
    } else if (st || !GLOB.test(arg)) found.push(path);
    else {
      const parts = arg.split(/[/\\]/);
      const fixed = parts.findIndex((p) => GLOB.test(p));
      const base = parts.slice(0, fixed).join('/') || (arg.startsWith('/') ? '/' : '.');
      const re = globToRegExp(normalize(arg).split(sep).join('/'));
      const matches: string[] = [];
      walk(base, new Set(), matches, (p) => re.test(p.split(sep).join('/')));
      if (matches.length === 0) unmatched.push(arg);
      found.push(...matches);
    }
  }
  // one model reached by several paths (a directory and a file inside it, symbolic links) is analysed once, under its first path in sorted order
  const byFile = new Map<string, string>();
  for (const p of found) {
    let key = p;
    try {
      key = realpathSync(p);
    } catch { /* missing: the batch records why */ }
    const had = byFile.get(key);
    if (had === undefined || p < had) byFile.set(key, p);
  }
  const models = [...byFile.values()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { models, unmatched };
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
