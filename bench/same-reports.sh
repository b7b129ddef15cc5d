#!/usr/bin/env bash
# Whether two lipcheck builds give the same reports: for each model, both builds' `--json --device cpu` reports
# compared field by field (recursively), leaving out what is meant to differ between runs (timings, resources,
# per-layer ms, the model path as given). Prints "same" or the first differences per model.
# Usage: bash bench/same-reports.sh BUILD_A BUILD_B [MODEL.onnx...] (default: ../shared/models/*.onnx and fixtures/*.onnx)
#   BUILD: a checkout with dist/ built (see bench/ab.sh). Extra lipcheck arguments: LIPCHECK_ARGS="--certify strict".
set -uo pipefail
a=$1 b=$2; shift 2
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(../shared/models/*.onnx fixtures/*.onnx)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for m in "${models[@]}"; do
  # shellcheck disable=SC2086
  node "$a/bin/lipcheck.js" "$m" --json --device cpu ${LIPCHECK_ARGS:-} > "$out/a.json" 2>/dev/null
  # shellcheck disable=SC2086
  node "$b/bin/lipcheck.js" "$m" --json --device cpu ${LIPCHECK_ARGS:-} > "$out/b.json" 2>/dev/null
  node -e '
    const fs = require("fs");
    const read = (f) => { try { return JSON.parse(fs.readFileSync(f, "utf8")); } catch { return "(no JSON report)"; } };
    const [x, y] = [read(process.argv[1]), read(process.argv[2])];
    const skip = /(^|\.)(timings|resources|ms|path)$/;
    const found = [];
    const walk = (p, u, v) => {
      if (skip.test(p)) return;
      if (u && v && typeof u === "object" && typeof v === "object") {
        for (const k of new Set([...Object.keys(u), ...Object.keys(v)])) walk(p ? `${p}.${k}` : k, u[k], v[k]);
      } else if (!Object.is(u, v)) found.push(`  ${p}: ${JSON.stringify(u)} | ${JSON.stringify(v)}`);
    };
    walk("", x, y);
    console.log(`${process.argv[3]}: ${found.length ? `${found.length} differences` : "same"}`);
    for (const f of found.slice(0, 3)) console.log(f);
  ' "$out/a.json" "$out/b.json" "$(basename "$m")"
done
