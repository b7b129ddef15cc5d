#!/usr/bin/env bash
# Checks that lipcheck installs the way the README says, with nothing from this machine's npm cache:
#   1. `npm pack`: the tarball holds the CLI, the demo model, LICENSE, README and the docs that --help names,
#      and no sources, tests or package-lock.json;
#   2. the tarball installed globally into a temporary prefix (ONNXRUNTIME_NODE_INSTALL=skip, see README
#      "Install"): the `lipcheck` it puts on the PATH prints its version and analyses the bundled demo;
#   3. a project-style `npm ci` of the runtime dependencies with the repository's package-lock.json and .npmrc
#      and no environment variable: onnxruntime-node's install script must not try to download (npm 10 reads
#      .npmrc, npm >= 11.19 package.json's allowScripts), and onnxruntime-node must load.
# Usage: scripts/check-pack.sh [NPM]     NPM is the npm command to test, default "npm";
#        e.g. scripts/check-pack.sh "npx -y npm@10"
# Needs the npm registry and nothing else (a download from elsewhere fails on a machine without that network).
set -euo pipefail
cd "$(dirname "$0")/.."
NPM=${1:-npm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# a throwaway cache and user config: every package comes from the registry, no setting from this machine's ~/.npmrc
export npm_config_cache="$tmp/cache"
export npm_config_userconfig="$tmp/npmrc"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
: > "$tmp/npmrc"
fail() { echo "check-pack: $*" >&2; exit 1; }

version=$(node -p "require('./package.json').version")
ort=$(node -p "require('./package.json').dependencies['onnxruntime-node']")
echo "check-pack: npm $($NPM --version), node $(node --version), lipcheck $version, onnxruntime-node $ort"

# 1. the tarball (npm pack runs `prepare`, the TypeScript build, as a publish would)
name=$(npm pack --silent --pack-destination "$tmp" | tail -n 1) || fail "npm pack failed (its prepare script is the TypeScript build: see the errors above)."
tgz="$tmp/$name"
[ -f "$tgz" ] || fail "npm pack wrote no tarball."
tar -tzf "$tgz" > "$tmp/files"
for f in package/package.json package/LICENSE package/README.md package/bin/lipcheck.js package/dist/cli/main.js \
         package/fixtures/demo.onnx package/docs/json-schema.md package/docs/report.schema.json; do
  grep -qx "$f" "$tmp/files" || fail "the tarball lacks ${f#package/}."
done
if grep -E '^package/(src|test|bench|scripts)/|^package/package-lock.json$' "$tmp/files"; then
  fail "the tarball holds files users do not need (listed above); check \"files\" in package.json."
fi
echo "check-pack: tarball $(basename "$tgz"), $(wc -l < "$tmp/files") files, $(du -k "$tgz" | cut -f1) KiB"

# 2. global install into a temporary prefix, as a user would (README "Install")
prefix="$tmp/prefix"
(cd "$tmp" && ONNXRUNTIME_NODE_INSTALL=skip $NPM install -g --prefix "$prefix" --no-audit --no-fund "$tgz") \
  || fail "npm install -g of the tarball failed."
bin="$prefix/bin/lipcheck"
[ -x "$bin" ] || fail "the install left no executable $bin."
pkgdir="$prefix/lib/node_modules/lipcheck"
got=$(node -p "require('$pkgdir/node_modules/onnxruntime-node/package.json').version")
[ "$got" = "$ort" ] || fail "the install got onnxruntime-node $got instead of the pinned $ort."
if ls "$pkgdir"/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so 2> /dev/null; then
  fail "the CUDA provider was downloaded although ONNXRUNTIME_NODE_INSTALL=skip."
fi
"$bin" --help > "$tmp/help.txt" || fail "'lipcheck --help' failed."
if grep -q -- '--version' "$tmp/help.txt"; then
  v=$("$bin" --version) || fail "'lipcheck --version' failed."
  [[ "$v" == *"$version"* ]] || fail "'lipcheck --version' printed '$v', not $version."
  echo "check-pack: lipcheck --version: $v"
else
  echo "check-pack: this lipcheck has no --version yet; checked --help instead"
fi
(cd "$tmp" && "$bin" "$pkgdir/fixtures/demo.onnx" --json --threads 1 > "$tmp/demo.json") || fail "the installed lipcheck failed on the bundled demo."
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const u = r.global.upper;
if (r.global.status !== "bounded" || !u || !(u.value > 0) || !Number.isFinite(u.value)) { console.error("check-pack: the demo report has no finite upper bound"); process.exit(1); }
console.log(`check-pack: installed lipcheck on the demo: upper bound ${u.value.toPrecision(6)} (${u.kind}, ${u.method})`);
' "$tmp/demo.json"
# the branch and bound's LP solver: HiGHS finds its highs.wasm through the package's export map wherever npm put it
(cd "$tmp" && node -e 'import(process.argv[1]).then((m) => m.highs()).then(() => console.log("check-pack: HiGHS (highs.wasm) loads from the installed package"), (e) => { console.error(e.message); process.exit(1); })' "$pkgdir/dist/linalg/lp.js") \
  || fail "the installed lipcheck cannot load HiGHS (its dependency 'highs' or highs.wasm is missing)."

# region workers (src/workers/) start from the installed build: every operator of the demo measured on two of them must
# give the report the main thread gives (their bootstrap imports dist/workers/region-worker.js, no TypeScript loader)
(cd "$tmp" && node --input-type=module -e '
const [pkg, model] = process.argv.slice(1);
const { analyze } = await import(pkg + "/dist/index.js");
const { setRegionWorkers, regionWorkerStats } = await import(pkg + "/dist/workers/region-pool.js");
const strip = (r) => JSON.stringify(r, (k, v) => (["timings", "resources", "ms"].includes(k) ? undefined : v));
setRegionWorkers("off");
const here = strip(await analyze(model, { device: "cpu", threads: 2 }));
setRegionWorkers("on", 2);
const there = strip(await analyze(model, { device: "cpu", threads: 2 }));
if (here !== there || regionWorkerStats().requests === 0) { console.error("check-pack: the demo on region workers differs or sent nothing"); process.exit(1); }
console.log(`check-pack: region workers from the installed build: ${regionWorkerStats().requests} operators, the same report`);
' "$pkgdir" "$pkgdir/fixtures/demo.onnx") || fail "the installed lipcheck's region workers do not start or do not give the main thread's report."

# 3. project-style install of the runtime dependencies, without ONNXRUNTIME_NODE_INSTALL: .npmrc / allowScripts must do
proj="$tmp/project"
mkdir "$proj"
cp package-lock.json .npmrc "$proj/"
node -e 'const p = require("./package.json"); delete p.scripts; delete p.bin; require("fs").writeFileSync(process.argv[1], JSON.stringify(p, null, 2));' "$proj/package.json"
(cd "$proj" && env -u ONNXRUNTIME_NODE_INSTALL $NPM ci --omit=dev --no-audit --no-fund) \
  || fail "'npm ci' with the repository's lockfile and .npmrc failed (did onnxruntime-node's install script try to download?)."
(cd "$proj" && node -e 'const ort = require("onnxruntime-node"); if (!ort.listSupportedBackends().some((b) => b.name === "cpu")) process.exit(1);') \
  || fail "onnxruntime-node does not load after the project-style install."
echo "check-pack: OK"
