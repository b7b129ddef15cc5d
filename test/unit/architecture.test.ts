/**
 * The layering of issue 15 (docs/architecture.md), checked on the import statements of every file under src/:
 * the IR is pure data (src/ir imports only itself and src/errors.ts), estimators never see ONNX or onnxruntime
 * (no src/backend, src/onnx, onnxruntime-node or protobuf), only src/backend opens onnxruntime and only src/onnx
 * reads protobuf. Imports are read with TypeScript's own pre-processor (static, re-exports, dynamic import(), require()).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PROTOBUF = ['protobufjs', 'onnx-proto'];

/** Every .ts file under a directory, as a repository-relative POSIX path. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [relative(ROOT, p).split(sep).join('/')] : [];
  });
}

/** What a file imports: repository-relative paths (without extension) for relative specifiers, package names otherwise. */
export function importsOf(file: string, text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => {
    const spec = f.fileName;
    if (!spec.startsWith('.')) return spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    return posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.(js|ts)$/, '');
  });
}

/** The layering rules broken by one file's imports, as sentences. */
export function violations(file: string, imports: readonly string[]): string[] {
  const out: string[] = [];
  for (const i of imports) {
    if (file.startsWith('src/ir/') && !(i.startsWith('src/ir/') || i === 'src/errors')) out.push(`${file} imports ${i}: src/ir may import only src/ir and src/errors.ts`);
    if (file.startsWith('src/estimators/') && (i.startsWith('src/backend/') || i.startsWith('src/onnx/') || i === 'onnxruntime-node' || PROTOBUF.includes(i))) {
      out.push(`${file} imports ${i}: estimators take an OperatorBackend (src/ir/operator.ts) and never see ONNX or onnxruntime`);
    }
    if (file.startsWith('src/linalg/') && (i.startsWith('src/backend/') || i.startsWith('src/onnx/') || i.startsWith('src/estimators/'))) out.push(`${file} imports ${i}: src/linalg is the numerics the estimators and the backend share, below both (operator types come from src/ir/operator.ts)`);
    if (i === 'onnxruntime-node' && !file.startsWith('src/backend/')) out.push(`${file} imports onnxruntime-node: only src/backend may`);
    if (i.startsWith('src/workers/') && !(file.startsWith('src/workers/') || file === 'src/index.ts' || file.startsWith('src/cli/'))) out.push(`${file} imports ${i}: region workers are handed to the estimators (NormSettings.offload) by src/index.ts`);
    if (PROTOBUF.includes(i) && !file.startsWith('src/onnx/')) out.push(`${file} imports ${i}: only src/onnx may read protobuf`);
  }
  return out;
}

test('the checker itself: a file breaking each rule is caught, a clean one is not', () => {
  const text = "import { x } from '../backend/runtime.js';\nexport { y } from '../onnx/proto.js';\nconst o = require('onnxruntime-node');\nconst p = await import('protobufjs/minimal');\nimport type { Z } from './kinds.js';\n";
  const found = violations('src/estimators/fake.ts', importsOf('src/estimators/fake.ts', text));
  assert.equal(found.filter((v) => v.includes('estimators take')).length, 4, found.join('\n'));
  assert.ok(found.some((v) => v.includes('only src/backend may')));
  assert.ok(found.some((v) => v.includes('only src/onnx may read protobuf')));
  assert.deepEqual(violations('src/ir/fake.ts', importsOf('src/ir/fake.ts', "import { a } from './tensor.js';\nimport { LipcheckError } from '../errors.js';\n")), []);
  assert.equal(violations('src/ir/fake.ts', importsOf('src/ir/fake.ts', "import { a } from '../linalg/dense.js';\n")).length, 1);
  assert.deepEqual(violations('src/backend/fake.ts', importsOf('src/backend/fake.ts', "const o = require('onnxruntime-node');\n")), []);
  assert.equal(violations('src/estimators/fake.ts', importsOf('src/estimators/fake.ts', "import { regionOffload } from '../workers/region-pool.js';\n")).length, 1);
  assert.deepEqual(violations('src/index.ts', importsOf('src/index.ts', "import { regionOffload } from './workers/region-pool.js';\n")), []);
  assert.equal(violations('src/linalg/fake.ts', importsOf('src/linalg/fake.ts', "import type { LinearOperator } from '../backend/operators.js';\n")).length, 1);
  assert.deepEqual(violations('src/linalg/fake.ts', importsOf('src/linalg/fake.ts', "import type { LinearOperator } from '../ir/operator.js';\n")), []);
});

test('src/ is layered: pure IR, estimators and linalg without ONNX or onnxruntime, onnxruntime only in src/backend, protobuf only in src/onnx', () => {
  const files = sources(join(ROOT, 'src'));
  assert.ok(files.length > 50 && files.includes('src/ir/operator.ts'), `found ${files.length} source files`);
  const broken = files.flatMap((f) => violations(f, importsOf(f, readFileSync(join(ROOT, f), 'utf8'))));
  assert.deepEqual(broken, [], `\n${broken.join('\n')}`);
});
