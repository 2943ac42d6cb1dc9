#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each and prints one summary line
# per target. Usage: scripts/fuzz.sh [seconds-per-target] [target...]
#   scripts/fuzz.sh                  # every target, 60 s each
#   scripts/fuzz.sh 600 auth_jwt     # one target, ten minutes
# Installs the pinned cargo-fuzz (crates.io, --locked) and needs the nightly toolchain.
# Each target starts from its committed seeds (fuzz/seeds/<target>/, read only) and its
# local corpus (fuzz/corpus/<target>/, git-ignored, grows run to run). A crash, panic,
# timeout or OOM leaves its input in fuzz/artifacts/<target>/ and makes the script fail;
# reproduce with `cargo +nightly fuzz run <target> <file>`.
# Runs under `nice -n ${FUZZ_NICE:-19}` so a shared machine's builds and tests go first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (libFuzzer needs -Z flags)"
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION (a minute or two, once)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

seconds=${1:-60}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
nice=(nice -n "${FUZZ_NICE:-19}")

say "building ${targets[*]}"
if [ ${#targets[@]} -eq 1 ]; then
  "${nice[@]}" cargo +nightly fuzz build "${targets[0]}"
else
  "${nice[@]}" cargo +nightly fuzz build
fi

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
failed=0
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  seeds=fuzz/seeds/$target
  mkdir -p "$corpus"
  dirs=("$corpus")
  [ -d "$seeds" ] && dirs+=("$seeds")
  # Longer inputs where the limits are: the 8 KiB header and the 16 KiB body.
  case "$target" in
    auth_jwt) max_len=10000 ;;
    request_body) max_len=20000 ;;
    *) max_len=4096 ;;
  esac
  log=$logs/$target.log
  say "running $target for ${seconds}s (log: $log)"
  status=0
  started=$SECONDS
  "${nice[@]}" cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  took=$(( SECONDS - started ))
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $status${artifact:+, input: $artifact}; see $log)"
  fi
  printf '%-14s %ss  execs=%s  exec/s=%s  cov=%s  ft=%s  corpus=%s  %s\n' \
    "$target" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit "$failed"
