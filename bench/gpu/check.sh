#!/usr/bin/env bash
# The one prepared GPU check of issue 15 (run on a lent machine through the device tool; see bench/README.md
# "GPU check" for how the bundle in .gpu/ is made and the results). Writes everything under $OUT.
# Environment (to rerun parts): DEVICES (default "cpu webgpu"), R50 (default "cpu:0 cpu:2 webgpu:0", device:threads),
# FUSED_MODES (default cpu,webgpu,webgpu-keep), FUSED_RUNS (default "webgpu:on cpu:off", device:fused for
# bench/gpu/fused-analyze.mjs), SKIP_TORCH=1 skips PyTorch's ResNet-50 power iteration.
# Expects: .gpu/bundle.tar.xz (node + a built lipcheck with production node_modules + the shared models) and .gl/
# (the Vulkan loader's .deb) carried; PyTorch, torchvision and onnx installed on the machine.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
R=$(pwd)
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
mkdir -p /tmp/b && tar -xJf .gpu/bundle.tar.xz -C /tmp/b
export PATH=/tmp/b/node-bin:$PATH
L="node /tmp/b/app/bin/lipcheck.js"
{ nproc; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; node --version; python3 -c 'import torch,onnx;print(torch.__version__, onnx.__version__)'; } > "$OUT/machine.txt" 2>&1
log "machine: $(head -c 300 "$OUT/machine.txt" | tr '\n' ' ')"

log "fused k-step graphs (python) and the PyTorch floor"
mkdir -p /tmp/fused && timeout 120 python3 bench/gpu/fused-graphs.py /tmp/fused > "$OUT/fused-torch.jsonl" 2>>"$OUT/log.txt"
log "fused k-step timings (onnxruntime-node cpu / webgpu / webgpu with v kept on the GPU)"
(cd /tmp/b/app && timeout 150 node "$R/bench/gpu/fused-steps.mjs" /tmp/fused/index.json 20 ${FUSED_MODES:-cpu,webgpu,webgpu-keep}) > "$OUT/fused-ort.jsonl" 2>>"$OUT/log.txt"

if [ -n "${DEVICES:-}" ] && ! grep -q '"mode":"webgpu","msPerRun"' "$OUT/fused-ort.jsonl"; then log "WebGPU did not start: $(ldconfig -p | grep -ci vulkan) vulkan libraries"; exit 3; fi
S="--method autolip --certify off --lower-pairs 0 --json"
log "shared models: probabilistic AutoLip, cpu vs webgpu"
for m in /tmp/b/models/*.onnx; do
  b=$(basename "$m" .onnx)
  for d in ${DEVICES:-cpu webgpu}; do
    t0=$(date +%s%N)
    timeout 40 $L "$m" $S --device $d > "/tmp/r-$b-$d.json" 2>"/tmp/e-$b-$d.txt"; rc=$?
    t1=$(date +%s%N)
    node -e '
      const [f, b, d, rc, wall] = process.argv.slice(1); let r = null; try { r = JSON.parse(require("fs").readFileSync(f, "utf8")); } catch {}
      const steps = r ? r.layers.reduce((a, l) => a + (l.iterations || 0), 0) : null;
      console.log(JSON.stringify({ model: b, device: d, rc: Number(rc), wallS: Number(wall) / 1000, provider: r?.settings?.provider, upper: r?.global?.upper?.value ?? null, normsMs: r?.timings?.normsMs ?? null, totalMs: r?.timings?.totalMs ?? null, steps }));
    ' "/tmp/r-$b-$d.json" "$b" "$d" "$rc" "$(( (t1 - t0) / 1000000 ))" >> "$OUT/shared.jsonl"
  done
done
head -c 2000 /tmp/e-sri_resnet_b-webgpu.txt > "$OUT/stderr-sri-webgpu.txt" 2>/dev/null

log "torchvision ResNet-50: export"
timeout 120 python3 bench/gpu/resnet50.py export /tmp/resnet50.onnx >>"$OUT/log.txt" 2>&1
for cfg in ${R50:-cpu:0 cpu:2 webgpu:0}; do
  set -- ${cfg/:/ }
  log "ResNet-50 probabilistic AutoLip --device $1 --threads $2"
  t0=$(date +%s%N)
  timeout 110 $L /tmp/resnet50.onnx $S --device $1 --threads $2 > "/tmp/r50-$1-$2.json" 2>"/tmp/r50-$1-$2.err"; rc=$?
  t1=$(date +%s%N)
  node -e '
    const [f, d, th, rc, wall] = process.argv.slice(1); let r = null; try { r = JSON.parse(require("fs").readFileSync(f, "utf8")); } catch {}
    const steps = r ? r.layers.reduce((a, l) => a + (l.iterations || 0), 0) : null;
    console.log(JSON.stringify({ model: "torchvision_resnet50", device: d, threads: Number(th), rc: Number(rc), wallS: Number(wall) / 1000, upper: r?.global?.upper?.value ?? null, normsMs: r?.timings?.normsMs ?? null, totalMs: r?.timings?.totalMs ?? null, steps, msPerStep: r && steps ? r.timings.normsMs / steps : null }));
  ' "/tmp/r50-$1-$2.json" "$1" "$2" "$rc" "$(( (t1 - t0) / 1000000 ))" >> "$OUT/resnet50.jsonl"
  tail -c 600 "/tmp/r50-$1-$2.err" >> "$OUT/log.txt"
done
log "fused Lanczos runs: float32 unrolled on WebGPU (docs/algorithms-fused-lanczos.md §7) against one run a step"
for m in /tmp/b/models/sri_resnet_b.onnx /tmp/b/models/tiny_yolo.onnx /tmp/resnet50.onnx; do
  for cfg in ${FUSED_RUNS:-webgpu:on cpu:off}; do
    (cd /tmp/b/app && timeout 110 node "$R/bench/gpu/fused-analyze.mjs" "$m" ${cfg/:/ }) >> "$OUT/fused-analyze.jsonl" 2>>"$OUT/log.txt"
  done
done
[ -n "${SKIP_TORCH:-}" ] || { log "ResNet-50: PyTorch power iteration at lipcheck's step count"
timeout 120 python3 bench/gpu/resnet50.py power /tmp/r50-cpu-0.json >> "$OUT/resnet50-torch.jsonl" 2>>"$OUT/log.txt"; }
log "done"
