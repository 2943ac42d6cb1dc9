#!/usr/bin/env bash
# The whole test suite: setup, the release worker build, then `cargo test` (native unit
# tests of the pure core, and end-to-end tests against the real worker under wrangler dev).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
wasm=build/index_bg.wasm
echo "wasm size: $(wc -c < "$wasm") bytes, gzipped: $(gzip -9 -c "$wasm" | wc -c) bytes"
cargo test --locked "$@"
