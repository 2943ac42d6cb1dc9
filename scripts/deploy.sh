#!/usr/bin/env bash
# Deploys the worker: ./scripts/deploy.sh <staging|production> [--dry-run]
#
# 1. wrangler.toml names a real D1 database for the environment (not the placeholder id);
# 2. the secrets the worker needs exist (`wrangler secret list`): CREDENTIAL_KEYS, and
#    JWT_SECRET or JWT_JWKS;
# 3. the remote database gets every migration it lacks (`wrangler d1 migrations apply`);
# 4. the worker is deployed (`wrangler deploy`).
#
# --dry-run works offline and contacts nothing: it builds and bundles the worker for the
# environment (`wrangler deploy --dry-run`, into $DEPLOY_OUTDIR or target/deploy-<env>),
# and prints the checks and the migrations steps 2 and 3 would make.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

usage() { echo "usage: $0 <staging|production> [--dry-run]" >&2; exit 2; }
env_name=${1:-}
case "$env_name" in staging | production) ;; *) usage ;; esac
dry_run=0
case "${2:-}" in "") ;; --dry-run) dry_run=1 ;; *) usage ;; esac
say() { printf 'deploy %s: %s\n' "$env_name" "$*" >&2; }

bash scripts/setup.sh

# 1. The database this environment deploys with.
db_section=$(awk -v env="$env_name" '
  $0 == "[[env." env ".d1_databases]]" { on = 1; next }
  /^\[/ { on = 0 }
  on && /^(database_name|database_id) = / { gsub(/"/, "", $3); print $1 "=" $3 }' wrangler.toml)
database_name=$(printf '%s\n' "$db_section" | sed -n 's/^database_name=//p')
database_id=$(printf '%s\n' "$db_section" | sed -n 's/^database_id=//p')
[ -n "$database_name" ] || { say "wrangler.toml has no [[env.$env_name.d1_databases]]"; exit 1; }
placeholder=0
case "$database_id" in 00000000-0000-4000-8000-*) placeholder=1 ;; esac

required_secrets=(CREDENTIAL_KEYS "JWT_SECRET or JWT_JWKS")
migrations=$(ls migrations/*.sql | xargs -n1 basename)

if [ "$dry_run" = 1 ]; then
  outdir=${DEPLOY_OUTDIR:-target/deploy-$env_name}
  say "dry run: nothing is contacted and nothing is deployed"
  if [ "$placeholder" = 1 ]; then
    say "database $database_name still has the placeholder id $database_id: a real deploy stops until"
    say "  'npx wrangler d1 create $database_name' has run and its id is in wrangler.toml"
  else
    say "database $database_name ($database_id)"
  fi
  say "would check these secrets exist: ${required_secrets[*]}"
  say "would apply any of these migrations the remote database lacks: $(echo $migrations)"
  "$WRANGLER" deploy --dry-run --env "$env_name" --outdir "$outdir"
  say "dry run complete: bundle in $outdir"
  exit 0
fi

if [ "$placeholder" = 1 ]; then
  say "wrangler.toml still has the placeholder database id $database_id for $database_name."
  say "Run 'npx wrangler d1 create $database_name' and put the id it prints into wrangler.toml."
  exit 1
fi

# 2. Secrets.
listed=$("$WRANGLER" secret list --env "$env_name")
has() { printf '%s' "$listed" | grep -q "\"name\": *\"$1\""; }
missing=()
has CREDENTIAL_KEYS || missing+=(CREDENTIAL_KEYS)
has JWT_SECRET || has JWT_JWKS || missing+=("JWT_SECRET or JWT_JWKS")
if [ "${#missing[@]}" -gt 0 ]; then
  say "missing secrets: ${missing[*]}. Set each with: npx wrangler secret put NAME --env $env_name"
  exit 1
fi
say "secrets present: CREDENTIAL_KEYS, $(has JWT_SECRET && echo JWT_SECRET || echo JWT_JWKS)"

# 3. Migrations, then 4. the worker. Migrations only ever add, so the code still running
# keeps working against the migrated database until the new code is live.
"$WRANGLER" d1 migrations apply DB --remote --env "$env_name"
"$WRANGLER" deploy --env "$env_name"
say "deployed. Check: curl https://<your route>/healthz"
