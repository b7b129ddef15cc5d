import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The uid/gid the permission tests drop to under root (root reads every directory, so EACCES needs another user). */
export const NOBODY = { uid: 65534, gid: 65534 } as const;

/**
 * Why the permission tests cannot run as nobody here, or null when they can: under root they re-run lipcheck as nobody,
 * which must be able to read this checkout (a clone inside a mode-700 directory, such as `mktemp -d`'s, is not).
 */
export function nobodyObstacle(): string | null {
  if (process.getuid?.() !== 0) return null;
  const probe = fileURLToPath(new URL('../../node_modules/tsx/package.json', import.meta.url));
  const r = spawnSync(process.execPath, ['-e', 'require("fs").accessSync(process.argv[1])', probe], { ...NOBODY, encoding: 'utf8' });
  return r.status === 0 ? null : `running as root, and user nobody cannot read this checkout (${probe}): the unreadable-directory check needs an unprivileged user, so it is skipped here`;
}
