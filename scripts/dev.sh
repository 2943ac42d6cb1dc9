#!/usr/bin/env bash
# Runs the worker locally at http://127.0.0.1:8787 with local D1 and Durable Objects
# (state in .wrangler/state). Extra arguments go to `wrangler dev`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
"$WRANGLER" d1 execute DB --local --file schema.sql >/dev/null
echo "schema.sql applied to the local D1 database" >&2
exec "$WRANGLER" dev --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
