/** `lipcheck -`: the model's bytes from standard input, checked for what stdin cannot carry. */
import { LipcheckError } from '../errors.js';
import { MAX_MODEL_BYTES } from '../onnx/read-model.js';
import { onnx } from '../onnx/proto.js';

/** The name a model read from stdin has in reports and messages. */
export const STDIN_NAME = '<stdin>';

/** Reads all of `stream` (stdin), refusing a terminal and more than an ONNX file can hold. */
export async function readModelFromStream(stream: NodeJS.ReadableStream & { isTTY?: boolean }, maxBytes = MAX_MODEL_BYTES): Promise<Uint8Array> {
  if (stream.isTTY) throw new LipcheckError('USAGE', "'-' reads the model from stdin, but stdin is a terminal. Pipe a model in (cat model.onnx | lipcheck -) or give its path.");
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += b.length;
    if (total > maxBytes) throw new LipcheckError('UNREADABLE', `stdin gave more than ${(maxBytes / 2 ** 30).toFixed(0)} GiB, more than an ONNX protobuf file can hold; lipcheck stopped reading. Give the model's path instead.`);
    chunks.push(b);
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

/**
 * The graph outputs of a model read from stdin (null when the bytes do not decode), after checking that nothing in it is stored as external data: that
 * data is located relative to the model file, and stdin has no file. Bytes that do not decode are left for the
 * analysis to report (it names them the same way).
 */
export function checkStdinModel(bytes: Uint8Array): string[] | null {
  let m: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    m = onnx.ModelProto.decode(bytes);
  } catch {
    return null;
  }
  const g = m.graph;
  if (!g) return null;
  const external = findExternal(m);
  if (external) {
    const location = (external.externalData ?? []).find((e) => e.key === 'location')?.value;
    throw new LipcheckError('USAGE', `The model read from stdin keeps tensor '${external.name || '(unnamed)'}' in external data${location ? ` ('${location}')` : ''}, which is found relative to the model's file; a model on stdin has no file, so lipcheck cannot read it. Give the model's path instead of '-'.`);
  }
  return (g.output ?? []).map((o: { name: string }) => o.name);
}

interface ExternalTensor { name: string; externalData?: { key: string; value: string }[]; dataLocation?: number }

/**
 * The first tensor anywhere in the decoded model (initializers, Constant values, sparse tensors, subgraphs,
 * functions) stored as external data, or null. Walks every message; numeric arrays and byte buffers are skipped.
 */
function findExternal(root: unknown): ExternalTensor | null {
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) continue;
    if (Array.isArray(v)) {
      if (v.length && typeof v[0] !== 'object') continue;
      for (const x of v) stack.push(x);
      continue;
    }
    const o = v as Record<string, unknown>;
    if (o.dataLocation === 1) return o as unknown as ExternalTensor;
    for (const k of Object.keys(o)) stack.push(o[k]);
  }
  return null;
}
