#!/usr/bin/env bash
# Alternating A/B of lipcheck builds on one model: each round runs every build once, in turn, so load drifts hit all of
# them alike; prints each run (wall s, CPU s = user + system of the process, upper bound, norm phase ms, lower bound
# with its method, lower-bound phase ms) and per build the median wall, CPU and lower-bound phase time. Timings only:
# nothing is decided by them.
# Usage: bash bench/ab.sh ROUNDS MODEL.onnx BUILD_DIR... [-- LIPCHECK_ARGS...]
#   BUILD_DIR: a checkout with dist/ built (e.g. a worktree: git worktree add /tmp/old REV; cd /tmp/old;
#   ln -s "$PWD/../main/node_modules" node_modules; npx tsc -p tsconfig.json). Default LIPCHECK_ARGS: --device cpu.
# Example (the ninth session's table in bench/README.md): for m in ../shared/models/*.onnx; do bash bench/ab.sh 3 "$m" /tmp/old .; done
set -euo pipefail
rounds=$1 model=$2; shift 2
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
[ $# -gt 0 ] && shift
args=("$@"); [ ${#args[@]} -eq 0 ] && args=(--device cpu)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for _ in $(seq "$rounds"); do
  for b in "${builds[@]}"; do
    s=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$out/time" node "$b/bin/lipcheck.js" "$model" --json "${args[@]}" > "$out/report.json" 2>/dev/null || true
    e=$(date +%s.%N)
    node -e '
      const fs = require("fs"); const [s, e, b] = process.argv.slice(1);
      const [u, sy] = fs.readFileSync(process.argv[4] + "/time", "utf8").trim().split(/\s+/).map(Number);
      let up = "—", norms = "—", low = "—", lowMs = "—";
      try {
        const r = JSON.parse(fs.readFileSync(process.argv[4] + "/report.json", "utf8"));
        up = r.global.upper ? String(r.global.upper.value) : "none"; norms = Math.round(r.timings.normsMs);
        low = r.global.lower ? `${r.global.lower.value} (${r.global.lower.method})` : "none"; lowMs = Math.round(r.timings.lowerMs);
      } catch {}
      console.log([b, (e - s).toFixed(2), (u + sy).toFixed(2), up, norms, low, lowMs].join("\t"));
    ' "$s" "$e" "$b" "$out"
  done
done | tee "$out/runs" | cat
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split("\t"));
  const med = (a) => { a = a.slice().sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
  for (const b of [...new Set(rows.map((r) => r[0]))]) {
    const mine = rows.filter((r) => r[0] === b);
    const lower = mine.map((r) => +r[6]).filter((x) => Number.isFinite(x));
    console.log(`median\t${b}\twall ${med(mine.map((r) => +r[1])).toFixed(2)} s\tCPU ${med(mine.map((r) => +r[2])).toFixed(2)} s\tlower-bound phase ${lower.length ? med(lower) + " ms" : "—"}`);
  }
' "$out/runs"
