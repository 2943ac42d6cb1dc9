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
