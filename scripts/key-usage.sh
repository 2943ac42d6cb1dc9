#!/usr/bin/env bash
# How many stored credentials each CREDENTIAL_KEYS key id still seals, for an operator
# rotating keys: a key id may leave the ring only once its count here is 0.
#
#   ./scripts/key-usage.sh --local [--persist-to DIR]   the local D1 of ./scripts/dev.sh
#   ./scripts/key-usage.sh --remote --env <staging|production>
#
# Prints one line per key id, `<key id> <rows>`, then where the re-encryption job's cursor
# stands (`cursor <active key id> <team id> <provider>`, or `cursor none`). It reads only
# key ids and counts: no ciphertext leaves D1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

usage() {
  echo "usage: $0 --local [--persist-to DIR] | --remote --env <staging|production>" >&2
  exit 2
}
target=() where=""
while [ $# -gt 0 ]; do
  case "$1" in
    --local | --remote) where=$1; target+=("$1") ;;
    --persist-to | --env) [ $# -ge 2 ] || usage; target+=("$1" "$2"); shift ;;
    *) usage ;;
  esac
  shift
done
[ -n "$where" ] || usage

query() {
  "$WRANGLER" d1 execute DB "${target[@]}" --json --command "$1" \
    | node -e '
      let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
        const rows = JSON.parse(s)[0].results;
        for (const r of rows) console.log(Object.values(r).join(" "));
      });'
}

query "SELECT key_id, COUNT(*) AS rows FROM credentials WHERE ciphertext IS NOT NULL GROUP BY key_id ORDER BY key_id"
cursor=$(query "SELECT active_key_id, after_team_id, after_provider FROM job_cursors WHERE job = 'reencrypt_credentials'")
echo "cursor ${cursor:-none}"
