#!/usr/bin/env bash
# Runs the worker locally at http://127.0.0.1:8787 with local D1 and Durable Objects
# (state in .wrangler/state), every migration applied, and the ComfyUI Cloud stub on
# http://127.0.0.1:8788 (scripts/provider-stub.mjs). http://localhost:8787 is the proxy's
# host mount. Extra arguments go to `wrangler dev`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
"$WRANGLER" d1 migrations apply DB --local >/dev/null
echo "migrations/ applied to the local D1 database" >&2
stub_port=${STUB_PORT:-8788}
node scripts/provider-stub.mjs --port "$stub_port" &
stub=$!
trap 'kill "$stub" 2>/dev/null' EXIT INT TERM
"$WRANGLER" dev --ip 127.0.0.1 --port "${PORT:-8787}" \
  --var "COMFY_CLOUD_ORIGIN:http://127.0.0.1:$stub_port" "$@"
