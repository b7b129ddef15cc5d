#!/usr/bin/env bash
# --device webgpu against --device cpu on every shared model, on the software adapter of scripts/swiftshader.sh
# (correctness, not speed: SwiftShader is Vulkan on the CPU). Defaults with a small lower-bound budget, one JSON report
# per model and device in OUT (default /tmp/webgpu-sweep), then one table row per model: the CPU's global bound, the
# WebGPU one relative to it, the largest per-layer estimate difference, WebGPU's lower bound (never above its upper).
# Usage: bash scripts/swiftshader.sh && npm run build && bash bench/webgpu-sweep.sh [MODELS...]   (~20 min for all)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/webgpu-sweep}; mkdir -p "$OUT"
SS=$PWD/.swiftshader
[ -f "$SS/vk_swiftshader_icd.json" ] || { echo "webgpu-sweep: no $SS: run bash scripts/swiftshader.sh" >&2; exit 2; }
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(../shared/models/*.onnx)
for m in "${models[@]}"; do
  b=$(basename "$m" .onnx)
  for d in cpu webgpu; do
    s=$(date +%s%N)
    VK_DRIVER_FILES=$SS/vk_swiftshader_icd.json VK_ICD_FILENAMES=$SS/vk_swiftshader_icd.json LD_LIBRARY_PATH=$SS \
      timeout "${TIMEOUT:-900}" node bin/lipcheck.js "$m" --json --lower-budget 100 --device $d > "$OUT/$b.$d.json" 2> "$OUT/$b.$d.err"
    echo "$b $d $? $(( ($(date +%s%N) - s) / 1000000 ))" >> "$OUT/times.txt"
  done
  node -e '
    const fs = require("fs"); const [out, b] = process.argv.slice(1);
    const load = (d) => { try { return JSON.parse(fs.readFileSync(`${out}/${b}.${d}.json`, "utf8")); } catch { return null; } };
    const [c, w] = [load("cpu"), load("webgpu")];
    const ms = (d) => fs.readFileSync(`${out}/times.txt`, "utf8").trim().split("\n").map((l) => l.split(" ")).filter((x) => x[0] === b && x[1] === d).pop();
    if (!c || !w) { console.log(`| ${b} | exit ${ms("cpu")?.[2]} | exit ${ms("webgpu")?.[2]} | | | | |`); process.exit(0); }
    const g = (r) => r.global.upper?.value ?? null;
    let est = 0; for (const [i, l] of w.layers.entries()) { const a = l.estimate, e = c.layers[i]?.estimate; if (a && e) est = Math.max(est, Math.abs(a - e) / e); }
    const low = w.global.lower?.value, up = g(w);
    const flag = low !== undefined && up !== null && low > up ? " ABOVE THE UPPER BOUND" : "";
    console.log(`| ${b} | ${(ms("cpu")[3] / 1000).toFixed(1)} s | ${(ms("webgpu")[3] / 1000).toFixed(1)} s | ${g(c) === null ? "none (" + c.global.status + ")" : g(c).toPrecision(7) + " " + c.global.upper.kind} | ${g(c) === null ? "—" : (up / g(c) - 1).toExponential(1)} | ${est.toExponential(1)} | ${low === undefined ? "—" : low.toPrecision(4)}${flag} |`);
  ' "$OUT" "$b" | tee -a "$OUT/table.md"
done
