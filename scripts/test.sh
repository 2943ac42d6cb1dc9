#!/usr/bin/env bash
# The whole test suite: setup, the release worker build, then `cargo test` (native unit
# tests of the pure core, and end-to-end tests against the real worker under wrangler dev),
# then a scan of the run's output and every worker log for the plaintext keys it stored.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
wasm=build/index_bg.wasm
echo "wasm size: $(wc -c < "$wasm") bytes, gzipped: $(gzip -9 -c "$wasm" | wc -c) bytes"

# The e2e harness appends every provider key a test stores to this file.
run=target/test-run
rm -rf "$run" target/tmp/e2e-*
mkdir -p "$run"
export E2E_PLAINTEXTS="$ROOT/$run/plaintexts.txt"
: > "$E2E_PLAINTEXTS"
status=0
cargo test --locked "$@" 2>&1 | tee "$run/output.log" || status=$?
[ "$status" -ne 0 ] && exit "$status"

keys=$(grep -c . "$E2E_PLAINTEXTS" || true)
logs=$(find target/tmp -name 'worker-*.log' 2>/dev/null | wc -l)
if [ "$keys" -eq 0 ]; then
  echo "plaintext scan: skipped, this run stored no provider key"
  exit 0
fi
leaks=$(find target/tmp -name 'worker-*.log' -print0 2>/dev/null \
  | xargs -0 grep -F -l -f "$E2E_PLAINTEXTS" "$run/output.log" 2>/dev/null || true)
if [ -n "$leaks" ]; then
  echo "plaintext scan: FAILED, a stored provider key appears in:" >&2
  echo "$leaks" >&2
  exit 1
fi
echo "plaintext scan: $keys stored keys, none in the test output or in $logs worker logs"
