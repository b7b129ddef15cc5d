import { isLipcheckError } from '../errors.js';
import { EXIT, EXIT_FOR_ERROR } from './exit-codes.js';

/** The one place an error becomes text on stderr and an exit code: a paragraph, and a stack trace only with --debug. */
export function reportError(e: unknown, debug: boolean): number {
  if (isLipcheckError(e)) {
    process.stderr.write(`lipcheck: ${e.message}\n`);
    if (e.code === 'INTERNAL') process.stderr.write('This is a bug in lipcheck; please report it with the command and the model.\n');
    if (debug && e.cause) process.stderr.write(`${(e.cause as Error).stack ?? e.cause}\n`);
    if (debug) process.stderr.write(`${e.stack}\n`);
    return EXIT_FOR_ERROR[e.code];
  }
  process.stderr.write(`lipcheck: internal error: ${(e as Error).message ?? e}\nThis is a bug in lipcheck; please report it with the command and the model${debug ? '' : ' (rerun with --debug for a stack trace)'}.\n`);
  if (debug) process.stderr.write(`${(e as Error).stack}\n`);
  return EXIT.INTERNAL;
}
