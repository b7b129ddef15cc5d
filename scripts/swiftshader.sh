#!/usr/bin/env bash
# A software WebGPU adapter for machines without a GPU: SwiftShader (Google's Vulkan implementation on the CPU, the
# adapter Dawn itself falls back to) with a Vulkan loader, unpacked into DIR (default .swiftshader/, git-ignored).
# Debian packs neither (its chromium leaves SwiftShader's Vulkan out, and mesa 22.3's lavapipe is refused by Dawn:
# "shaderUniform*ArrayDynamicIndexing required"), so both are taken from the npm package @sparticuz/chromium (MIT;
# SwiftShader is Apache-2.0), pinned below by version and sha512, from the npm registry and nothing else.
# With it, `--device webgpu` runs onnxruntime-node's WebGPU provider for real, slowly: it is for correctness (the
# float32 fused Lanczos margin, the WebGPU code paths and their tests), never for GPU timings.
#   bash scripts/swiftshader.sh [DIR]
#   export VK_ICD_FILENAMES=$PWD/.swiftshader/vk_swiftshader_icd.json LD_LIBRARY_PATH=$PWD/.swiftshader
#   node bin/lipcheck.js model.onnx --device webgpu
# The tests find .swiftshader/ (or LIPCHECK_SWIFTSHADER=DIR) by themselves and skip, saying so, where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.swiftshader}
PKG=@sparticuz/chromium@147.0.0
SHA512=sha512-4ZKeAQQa8up2mt675qSitztLdbQrlf8BKdC5naeap+5Mv1OV1OlJdPoU+EJC/p5sQUJUQmN4r+q5+EhaaOUHpQ==
if [ -f "$DIR/vk_swiftshader_icd.json" ] && [ -f "$DIR/libvk_swiftshader.so" ] && [ -f "$DIR/libvulkan.so.1" ]; then
  echo "swiftshader: $DIR is there already"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tgz=$(cd "$tmp" && npm pack --silent "$PKG" | tail -n 1)
got=$(node -e "const c=require('crypto'),fs=require('fs');process.stdout.write('sha512-'+c.createHash('sha512').update(fs.readFileSync(process.argv[1])).digest('base64'))" "$tmp/$tgz")
[ "$got" = "$SHA512" ] || { echo "swiftshader: $PKG does not match its pinned sha512 ($got): not unpacked" >&2; exit 1; }
tar -xzf "$tmp/$tgz" -C "$tmp" package/bin/swiftshader.tar.br
node -e "const z=require('zlib'),fs=require('fs');fs.writeFileSync(process.argv[2],z.brotliDecompressSync(fs.readFileSync(process.argv[1])))" \
  "$tmp/package/bin/swiftshader.tar.br" "$tmp/swiftshader.tar"
mkdir -p "$tmp/out"
tar -xf "$tmp/swiftshader.tar" -C "$tmp/out" --no-same-owner libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1
mkdir -p "$DIR"
mv "$tmp/out/"* "$DIR/"
echo "swiftshader: SwiftShader's Vulkan driver and a Vulkan loader in $DIR"
