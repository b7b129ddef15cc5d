import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { LipcheckError } from '../errors.js';

/** Who holds a batch journal: written into `FILE.lock` when the lock is taken. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** ISO time the holder took the lock (for the message only). */
  readonly since: string;
}

/**
 * How long a lock of another host stays valid without a refresh (its holder refreshes it every LEASE_MS / 4): a pod
 * rescheduled onto another machine (a Kubernetes Indexed Job retry) can take over the journal of its killed
 * predecessor on a shared volume, whose pid it cannot probe. Clocks of the hosts must agree within a few seconds.
 */
export const LEASE_MS = 60_000;

/** The caller's identity and a liveness probe (the CLI owns the process; tests pass their own). */
export interface LockOwner extends LockHolder {
  /** Whether a process with this pid runs on this host (a process we may not signal counts as running). */
  readonly alive: (pid: number) => boolean;
  /** The current time in ms (Date.now in the CLI): only to age the lease of another host's lock. */
  readonly now: () => number;
}

/** A held lock: `refresh` renews its lease (call every LEASE_MS / 4), `release` removes the lock file if it is still ours; `tookOver` names the dead holder whose lock was taken. */
export interface JournalLock {
  readonly path: string;
  readonly tookOver: LockHolder | null;
  refresh(): void;
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

/** Milliseconds since the lock file was last renewed (its mtime), or null when it is gone. */
function lockAge(path: string, now: number): number | null {
  try {
    return Math.max(0, now - statSync(path).mtimeMs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

const same = (a: LockHolder, b: LockHolder) => a.pid === b.pid && a.host === b.host && a.since === b.since;

/**
 * Takes the exclusive lock on a batch journal `file`: a lock file `file.lock` naming the holder (pid, host), created
 * atomically (a complete temporary file hard-linked into place, so no reader sees a half-written holder). A lock whose
 * holder is a dead process of this host, or a lock of another host not renewed for LEASE_MS, is stale and taken
 * over; any other holder is refused with a USAGE error that names it. `what` names the option in messages (e.g. `--out`).
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
        const ours = () => {
          const h = readHolder(path);
          return h !== 'gone' && h !== null && same(h, me);
        };
        const release = () => { if (ours()) rmSync(path, { force: true }); };
        const refresh = () => {
          try {
            if (ours()) utimesSync(path, new Date(owner.now()), new Date(owner.now()));
          } catch { /* the next refresh tries again; a lost lease only lets a stale-lock taker in */ }
        };
        return { path, tookOver, refresh, release };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new LipcheckError('USAGE', `Cannot write ${what} '${file}': its lock file '${path}' cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Check that the directory is writable.`, { cause: e });
      }
      const holder = readHolder(path);
      if (holder === 'gone') continue;
      if (holder === null) {
        throw new LipcheckError('USAGE', `${what} '${file}' is locked by '${path}', which does not name its holder. If no lipcheck batch writes '${file}', delete '${path}' and run again.`);
      }
      const ageMs = lockAge(path, owner.now());
      if (ageMs === null) continue;
      const live = holder.host === owner.host ? owner.alive(holder.pid) : ageMs <= LEASE_MS;
      if (live) {
        const lease = holder.host === owner.host ? '' : `; its lease was renewed ${Math.round(ageMs / 1000)} s ago, and a lock of another host is taken over ${LEASE_MS / 1000} s after its last renewal`;
        throw new LipcheckError('USAGE', `${what} '${file}' is being written by another lipcheck (pid ${holder.pid} on host ${holder.host}, since ${holder.since}${lease}). Two writers would lose records: wait for it to finish, give another ${what}, or, if that process is gone, delete '${path}'.`);
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
