import type { ErrorCode } from '../errors.js';

/** THE exit-code table (README "Exit codes" is generated from the same meaning). */
export const EXIT = { OK: 0, GATE_FAILED: 1, USAGE: 2, UNSUPPORTED: 3, RUNTIME: 4, DEVICE: 5, INTERNAL: 70, INTERRUPTED: 130, TERMINATED: 143 } as const;

/** Exit code for each library error code. */
export const EXIT_FOR_ERROR: Record<ErrorCode, number> = {
  USAGE: EXIT.USAGE,
  UNREADABLE: EXIT.USAGE,
  UNSUPPORTED: EXIT.UNSUPPORTED,
  RUNTIME: EXIT.RUNTIME,
  CERTIFY: EXIT.RUNTIME,
  DEVICE: EXIT.DEVICE,
  INTERNAL: EXIT.INTERNAL,
};
