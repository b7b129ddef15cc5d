#!/usr/bin/env bash
# Device check of issue 13 item 3 (--device auto/cuda/webgpu), run once on a lent H200 through the device tool, from
# the repo root: carry .gpu (node + lipcheck at cfdf40c + the shared models, see bench/README.md "GPU check"), .gl
# (the Vulkan loader debs), dist, node_modules/picomatch and scripts. Results: README "GPUs" and the run's log.
set -u
OUT=${OUT:-/tmp/o}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
R=$(pwd); B=${B:-/tmp/lc13}
mkdir -p $B && tar -xJf .gpu/bundle.tar.xz -C $B
export PATH=$B/node-bin:$PATH
cp -a $B/app $B/old                                   # lipcheck as it was (cfdf40c)
rm -rf $B/app/dist && cp -a dist $B/app/dist         # lipcheck now
cp -a bin package.json $B/app/ && mkdir -p $B/app/fixtures && cp fixtures/demo.onnx $B/app/fixtures/
cp -a node_modules/picomatch $B/app/node_modules/
NEW="node $B/app/bin/lipcheck.js"; OLD="node $B/old/bin/lipcheck.js"
M=$B/models/marabou_cifar10_medium.onnx
S="--method autolip --certify off --lower-pairs 0"
one() { # tag, command...
  local tag=$1; shift
  local t0=$(date +%s%N); timeout 60 "$@" > "$B/$tag.out" 2> "$B/$tag.err"; local rc=$?; local t1=$(date +%s%N)
  echo "=== $tag rc=$rc wall=$(( (t1 - t0) / 1000000 ))ms provider=$(grep -o '"provider": "[a-z]*"' "$B/$tag.out" | head -1) upper=$(grep -A1 '"upper": {' "$B/$tag.out" | grep -o '"value": [0-9.e+-]*' | head -1)"
  echo "--- stderr ($(wc -l < "$B/$tag.err") lines):"; head -c 1500 "$B/$tag.err"; echo
}
echo "### no Vulkan loader: $(ldconfig -p | grep -c libvulkan) libvulkan entries; nvidia-smi: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1)"
one a-auto $NEW fixtures/demo.onnx $S --json
one a-cuda $NEW fixtures/demo.onnx $S --json --device cuda
one a-webgpu $NEW fixtures/demo.onnx $S --json --device webgpu
[ -n "${LOCAL_ONLY:-}" ] && exit 0
echo "### with the Vulkan loader"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
echo "libvulkan entries: $(ldconfig -p | grep -c libvulkan)"
one b-old-auto $OLD $B/app/fixtures/demo.onnx $S --json
one b-auto $NEW fixtures/demo.onnx $S --json
one b-auto-verbose $NEW fixtures/demo.onnx $S --json --verbose
one b-webgpu $NEW fixtures/demo.onnx $S --json --device webgpu --verbose
one b-cuda $NEW fixtures/demo.onnx $S --json --device cuda
one c-cpu $NEW $M $S --json --device cpu -q
one c-webgpu $NEW $M $S --json --device webgpu -q
one c-old-auto $OLD $M $S --json
echo "### without a GPU driver for Vulkan (loader present, no ICD): auto must stay silent"
unset VK_DRIVER_FILES; export VK_ICD_FILENAMES=/nonexistent.json VK_DRIVER_FILES=/nonexistent.json
one d-auto $NEW fixtures/demo.onnx $S --json
one d-old-auto $OLD $B/app/fixtures/demo.onnx $S --json
one d-webgpu $NEW fixtures/demo.onnx $S --json --device webgpu
echo "### done"
