import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { LipcheckError } from '../errors.js';

/** Who holds a batch journal: written into `FILE.lock` when the lock is taken. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** ISO time the holder took the lock (for the message only). */
  readonly since: string;
}

/** The caller's identity and a liveness probe (the CLI owns the process; tests pass their own). */
export interface LockOwner extends LockHolder {
  /** Whether a process with this pid runs on this host (a process we may not signal counts as running). */
  readonly alive: (pid: number) => boolean;
}

/** A held lock: `release` removes the lock file if it is still ours; `tookOver` names the dead holder whose lock was taken. */
export interface JournalLock {
  readonly path: string;
  readonly tookOver: LockHolder | null;
  release(): void;
}

function readHolder(path: string): LockHolder | null | 'gone' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw e;
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    return Number.isInteger(h.pid) && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Hard-links the complete lock file `tmp` to `path` (fails with EEXIST when taken); where the file system has no hard links, an exclusive create. */
function place(tmp: string, path: string): void {
  try {
    linkSync(tmp, path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    const fd = openSync(path, 'wx');
    try {
      writeSync(fd, readFileSync(tmp));
    } finally {
      closeSync(fd);
    }
  }
}

const same = (a: LockHolder, b: LockHolder) => a.pid === b.pid && a.host === b.host && a.since === b.since;

/**
 * Takes the exclusive lock on a batch journal `file`: a lock file `file.lock` naming the holder (pid, host), created
 * atomically (a complete temporary file hard-linked into place, so no reader sees a half-written holder). A lock whose
 * holder is a dead process of this host is stale and taken over; any other holder is refused with a USAGE error that
 * names it. `what` names the option in messages (e.g. `--out`).
 */
export function acquireJournalLock(file: string, owner: LockOwner, what = '--out'): JournalLock {
  const path = `${file}.lock`;
  const me: LockHolder = { pid: owner.pid, host: owner.host, since: owner.since };
  const tmp = `${path}.${owner.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(me) + '\n');
  } catch (e) {
    throw new LipcheckError('USAGE', `Cannot write ${what} '${file}': its lock file '${path}' cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Check that the directory exists and is writable.`, { cause: e });
  }
  let tookOver: LockHolder | null = null;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        place(tmp, path);
        const release = () => {
          const h = readHolder(path);
          if (h !== 'gone' && h !== null && same(h, me)) rmSync(path, { force: true });
        };
        return { path, tookOver, release };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new LipcheckError('USAGE', `Cannot write ${what} '${file}': its lock file '${path}' cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Check that the directory is writable.`, { cause: e });
      }
      const holder = readHolder(path);
      if (holder === 'gone') continue;
      if (holder === null) {
        throw new LipcheckError('USAGE', `${what} '${file}' is locked by '${path}', which does not name its holder. If no lipcheck batch writes '${file}', delete '${path}' and run again.`);
      }
      if (holder.host !== owner.host || owner.alive(holder.pid)) {
        throw new LipcheckError('USAGE', `${what} '${file}' is being written by another lipcheck (pid ${holder.pid} on host ${holder.host}, since ${holder.since}). Two writers would lose records: wait for it to finish, give another ${what}, or, if that process is gone, delete '${path}'.`);
      }
      // stale: its holder died (SIGKILL, power cut). Move it aside atomically and check that it was the stale one,
      // not the fresh lock of another process that took it over between our read and our rename.
      const aside = `${path}.${owner.pid}.stale`;
      try {
        renameSync(path, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const moved = readHolder(aside);
      if (moved !== 'gone' && moved !== null && same(moved, holder)) {
        rmSync(aside, { force: true });
        tookOver = holder;
        continue;
      }
      // we moved someone's live lock: put it back unless a third process took the place meanwhile
      try {
        linkSync(aside, path);
      } catch { /* the place is taken again: the loop reads the new holder */ }
      rmSync(aside, { force: true });
    }
    throw new LipcheckError('USAGE', `${what} '${file}': its lock '${path}' keeps changing hands; another lipcheck is starting on the same file. Give each batch its own ${what}.`);
  } finally {
    rmSync(tmp, { force: true });
  }
}
