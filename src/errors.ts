/** Error codes; each maps to one exit code in src/cli/exit-codes.ts. */
export type ErrorCode =
  | 'USAGE' // bad command line
  | 'UNREADABLE' // the file cannot be read or is not a valid ONNX model
  | 'UNSUPPORTED' // valid ONNX, but ops or shapes lipcheck cannot analyse
  | 'RUNTIME' // onnxruntime or a numerical method failed
  | 'CERTIFY' // --certify strict could not certify every bound
  | 'DEVICE' // the requested device (--device cuda|webgpu) cannot be used: its provider is missing or cannot start
  | 'INTERNAL'; // a bug in lipcheck

/** The one error type the library throws on purpose: a code, a full-sentence message, optional details. */
export class LipcheckError extends Error {
  readonly code: ErrorCode;
  readonly details: readonly string[];
  override readonly cause?: unknown;
  constructor(code: ErrorCode, message: string, options: { details?: readonly string[]; cause?: unknown } = {}) {
    super(message);
    this.name = 'LipcheckError';
    this.code = code;
    this.details = options.details ?? [];
    this.cause = options.cause;
  }
}

/** True when `e` is a LipcheckError (also across module copies). */
export function isLipcheckError(e: unknown): e is LipcheckError {
  return e instanceof Error && e.name === 'LipcheckError' && typeof (e as LipcheckError).code === 'string';
}
