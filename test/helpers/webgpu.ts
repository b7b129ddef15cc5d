import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The software WebGPU adapter of scripts/swiftshader.sh (SwiftShader's Vulkan driver and a Vulkan loader) in
 * LIPCHECK_SWIFTSHADER or the repository's .swiftshader/: the environment a child process needs to run onnxruntime's
 * WebGPU provider on it (the loader is found through LD_LIBRARY_PATH, which only a new process reads), or why not.
 */
export function softwareWebgpu(): { env: NodeJS.ProcessEnv; skip?: undefined } | { skip: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { skip: `no software WebGPU adapter for ${process.platform}/${process.arch} (scripts/swiftshader.sh is linux-x64)` };
  const dir = resolve(process.env.LIPCHECK_SWIFTSHADER ?? join(ROOT, '.swiftshader'));
  const icd = join(dir, 'vk_swiftshader_icd.json');
  if (![icd, join(dir, 'libvk_swiftshader.so'), join(dir, 'libvulkan.so.1')].every(existsSync)) {
    return { skip: `no software WebGPU adapter in ${dir}: \`bash scripts/swiftshader.sh\` fetches one (SwiftShader, from the npm registry), then these tests run lipcheck on WebGPU` };
  }
  const ld = [dir, ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter((d) => d !== '')].join(':');
  // VK_DRIVER_FILES (loader ≥ 1.3.207) and its older name: SwiftShader alone, whatever GPU drivers the machine has
  return { env: { ...process.env, NO_COLOR: '1', VK_DRIVER_FILES: icd, VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: ld } };
}
