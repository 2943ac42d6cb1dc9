#!/usr/bin/env bash
# Builds the release worker into build/. wrangler runs this before `dev` and `deploy`, so
# it skips the wasm-bindgen and wasm-opt steps when the compiled wasm has not changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
compiled=target/wasm32-unknown-unknown/release/edge_credentials.wasm
cargo build --quiet --locked --release --lib --target wasm32-unknown-unknown
if [ -z "${FORCE_BUILD:-}" ] && [ build/index.js -nt "$compiled" ] && [ build/index_bg.wasm -nt "$compiled" ]; then
  echo "build/ is up to date with $compiled"
  exit 0
fi
worker-build --release
# worker-build keeps the names section (--debuginfo): about 200 KB, an eighth of the gzipped
# upload. Dropping it costs only symbol names in a wasm stack trace. The feature list is
# worker-build's own, so nothing is re-encoded with a feature workerd may not support.
# A second -Oz pass over worker-build's output takes about 6 s and saves about 2.5 KB
# gzipped (301,655 -> 299,104 bytes on 2026-12-06); --converge saved no more.
features=()
for f in mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue \
  reference-types exception-handling; do
  features+=("--enable-$f")
done
"$WASM_OPT_BIN" "${features[@]}" -Oz --strip-debug --strip-producers \
  build/index_bg.wasm -o build/index_bg.wasm.stripped
mv build/index_bg.wasm.stripped build/index_bg.wasm
