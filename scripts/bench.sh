#!/usr/bin/env bash
# The benchmark (issue 7): `./scripts/bench.sh`. Not part of the test command.
#
# 1. setup (scripts/setup.sh), wrk from apt if missing, the release build (scripts/build.sh);
# 2. native microbenchmarks of the pure core (`cargo bench --bench core`, criterion);
# 3. gzipped wasm size, and start-up: wrangler dev spawn to the first 200 from /healthz;
# 4. the real worker (fresh state, migrations applied, limits raised) and the references,
#    each in two modes, loaded with wrk in interleaved rounds: under `wrangler dev` (as a
#    developer runs it) and under Miniflare directly (bench/miniflare.mjs: workerd with no
#    wrangler proxy in front). References: (a) floor, a constant response (bench/floor);
#    (a') the floor plus one console.log line; (R1) a JS worker making one D1 batch of two
#    reads, (R2) one D1 write batch, (R3) one fetch of the provider stub (bench/floor-refs:
#    the physical floor of the design, issue 16); (h) the round trips of (c) before issue 14
#    (bench/floor-io); (f) a 404 and (g) a 401 for a forged key. The worker's scenarios:
#    (b) GET /healthz, (c) GET credential with an sk- key, (d) the same with an HS256 JWT,
#    (e) PUT credential, (i) an agent heartbeat with one version, (i′) heartbeats with a new
#    version each (every one a presence write), (j) a routing decision, (k) a proxied GET
#    of the stub's account endpoint, and in Miniflare mode (e′) the PUT of a second worker
#    run with COMFY_CLOUD_VERIFY=off (no provider check: what the check costs). In the last
#    round, the worker's log lines written during each scenario's load give its own count
#    of D1 round trips and DO calls;
#    the provider stub (scripts/provider-stub.mjs) answers the PUT's check and the proxy;
# 5. presence capacity (wrangler mode): the route decision with 200, 1000 and 2000 agents in
#    one team's presence object (BENCH_AGENTS), each having beaten once;
# 6. medians per scenario, ratios to the floor, printed and written into BENCHMARKS.md
#    (between the bench.sh markers; the rest of the file is left alone).
#
# Knobs (environment): BENCH_DURATION (10s), BENCH_WARMUP (3s), BENCH_ROUNDS (5),
# BENCH_THREADS (2), BENCH_CONNECTIONS (32), BENCH_CRITERION (1; 0 skips step 2),
# BENCH_WRITE (1; 0 leaves BENCHMARKS.md alone), BENCH_MODES ("wrangler miniflare"), BENCH_VARS (more `--var NAME:VALUE` for the
# worker, space-separated, for experiments). Every process it starts is stopped on exit.
#
# The worker runs from a snapshot of build/ and a copy of wrangler.toml without its [build]
# section: the wasm is built once above, and wrangler's watcher cannot rebuild or reload it
# mid-run when someone edits src/ or rebuilds build/. Secrets come from .dev.vars
# (--env-file).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-5}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}

say() { printf 'bench: %s\n' "$*" >&2; }
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- processes: each wrangler in its own session, so its whole group can be stopped ----
groups=()
cleanup() {
  local g
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 1
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. setup and build -----------------------------------------------------------------
bash scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk from apt"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || { say "curl is required"; exit 1; }
bash scripts/build.sh

run_dir="target/bench/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run_dir"
# wrangler appends every inspector message to a debug log file; keep this run's with it.
export WRANGLER_LOG_PATH="$ROOT/$run_dir/wrangler-debug"
# What is measured and served: this build, whatever happens to build/ meanwhile.
cp -R build "$run_dir/build"
results="$run_dir/results.tsv"
meta="$run_dir/meta.env"
: > "$results"
: > "$meta"
meta() { printf '%s=%s\n' "$1" "$2" >> "$meta"; }
say "run directory: $run_dir"
# The build step wrangler runs before serving with the project's wrangler.toml: measured
# right after the build, so it is the no-op it is at start-up (unless src/ changed since).
t0=$(ms_now); bash scripts/build.sh >/dev/null; meta build_noop_ms "$(( $(ms_now) - t0 ))"

# ---- 2. native microbenchmarks ------------------------------------------------------------
if [ "${BENCH_CRITERION:-1}" = 1 ]; then
  say "cargo bench --bench core (criterion, a few minutes)"
  rm -rf target/criterion
  cargo bench --locked --bench core 2>&1 | tee "$run_dir/criterion.log" | grep -E '^[a-z_0-9]+/|time:' >&2
fi

# ---- 3a. size -----------------------------------------------------------------------------
wasm="$run_dir/build/index_bg.wasm"
meta wasm_bytes "$(wc -c < "$wasm")"
meta wasm_gzip_bytes "$(gzip -9 -c "$wasm" | wc -c)"

# ---- 4. the two workers -------------------------------------------------------------------
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# start NAME PORT STATE_DIR [wrangler dev args...]: spawns wrangler dev, waits for a 200
# from READY_PATH, and records the spawn-to-ready time as startup_ms_NAME.
start() {
  local name=$1 port=$2 state=$3
  shift 3
  local log="$run_dir/$name.log" t0 pid code
  t0=$(ms_now)
  setsid "$WRANGLER" dev --ip 127.0.0.1 --port "$port" --inspector-port "$(free_port)" \
    --persist-to "$state" --show-interactive-dev-session=false "$@" \
    > "$log" 2>&1 < /dev/null &
  pid=$!
  groups+=("$pid")
  while :; do
    code=$(status_of --max-time 1 "http://127.0.0.1:$port$READY_PATH")
    [ "$code" = 200 ] && break
    if ! kill -0 "$pid" 2>/dev/null || [ $(( $(ms_now) - t0 )) -gt 180000 ]; then
      say "$name did not become ready; its log:"
      tail -50 "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  meta "startup_ms_$name" "$(( $(ms_now) - t0 ))"
  meta "pgid_$name" "$pid"
  say "$name ready on port $port after $(( $(ms_now) - t0 )) ms"
}


state="$run_dir/state"
mf_state="$run_dir/mf-state"
nc_state="$run_dir/mf-nocheck-state"
mkdir -p "$state" "$mf_state" "$nc_state" "$run_dir/floor-state" "$run_dir/floor-log-state" "$run_dir/floor-io-state" \
  "$run_dir/refs-state" "$run_dir/mf-refs-state"
config="$run_dir/wrangler.toml"
awk -v main="$ROOT/$run_dir/build/index.js" -v migrations="$ROOT/migrations" -v assets="$ROOT/public" '
  /^\[/ { skip = ($0 == "[build]") }
  /^main = / { print "main = \"" main "\""; next }
  /^directory = / { print "directory = \"" assets "\""; next }
  /^migrations_dir = / { print "migrations_dir = \"" migrations "\""; next }
  !skip' wrangler.toml > "$config"
for st in "$state" "$mf_state" "$nc_state"; do
  "$WRANGLER" d1 migrations apply DB --local --config "$config" --persist-to "$st" \
    >> "$run_dir/schema.log" 2>&1
done
stub_port=$(free_port)
stub_key=comfyui-bench-seed-0123456789
setsid node scripts/provider-stub.mjs --port "$stub_port" \
  --valid-key "$stub_key" --valid-key comfyui-bench-0123456789abcdefghijklmnop \
  > "$run_dir/stub.log" 2>&1 < /dev/null &
groups+=("$!")
# Agents stay online for the whole run (the TTL is what routing reads, not what it costs).
worker_vars=(RATE_LIMIT_IP_REQUESTS:1000000000 RATE_LIMIT_PRINCIPAL_REQUESTS:1000000000
  "COMFY_CLOUD_ORIGIN:http://127.0.0.1:$stub_port" AGENT_TTL_SECS:86400
  MAX_ACTIVE_KEYS_PER_TEAM:1000000 RATE_LIMIT_PROVIDER_REQUESTS:1000000000)
for v in ${BENCH_VARS:-}; do worker_vars+=("$v"); done
meta worker_vars "${worker_vars[*]}"
wrangler_vars=() mf_vars=()
for v in "${worker_vars[@]}"; do wrangler_vars+=(--var "$v"); mf_vars+=("${v/:/=}"); done
refs_vars=(STUB_URL="http://127.0.0.1:$stub_port" STUB_KEY="$stub_key")

# Mode "wrangler": each worker under `wrangler dev`, as a developer runs it.
worker_port=$(free_port)
READY_PATH=/healthz start worker "$worker_port" "$state" \
  --config "$config" --env-file "$ROOT/.dev.vars" "${wrangler_vars[@]}"
floor_port=$(free_port)
READY_PATH=/ start floor "$floor_port" "$run_dir/floor-state" --config bench/floor/wrangler.toml
floor_log_port=$(free_port)
READY_PATH=/ start floor_log "$floor_log_port" "$run_dir/floor-log-state" \
  --config bench/floor-log/wrangler.toml
floor_io_port=$(free_port)
READY_PATH=/ start floor_io "$floor_io_port" "$run_dir/floor-io-state" \
  --config bench/floor-io/wrangler.toml
refs_port=$(free_port)
READY_PATH=/ start refs "$refs_port" "$run_dir/refs-state" --config bench/floor-refs/wrangler.toml \
  --var "STUB_URL:http://127.0.0.1:$stub_port" --var "STUB_KEY:$stub_key"

# Mode "miniflare": the same build and references served by Miniflare directly (workerd,
# without wrangler's proxy in front), bench/miniflare.mjs.
start_mf() { # name port ready-path args...
  local name=$1 port=$2 ready=$3 t0 pid code
  shift 3
  t0=$(ms_now)
  setsid node bench/miniflare.mjs "$@" > "$run_dir/$name.log" 2>&1 < /dev/null &
  pid=$!
  groups+=("$pid")
  until [ "$(status_of --max-time 1 "http://127.0.0.1:$port$ready")" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $(( $(ms_now) - t0 )) -gt 120000 ]; then
      say "$name did not become ready; its log:"; tail -30 "$run_dir/$name.log" >&2; exit 1
    fi
    sleep 0.05
  done
  meta "startup_ms_$name" "$(( $(ms_now) - t0 ))"
  meta "pgid_$name" "$pid"
  say "$name ready on port $port after $(( $(ms_now) - t0 )) ms"
}
mf_worker_port=$(free_port)
start_mf mf_worker "$mf_worker_port" /healthz worker "$mf_worker_port" "$mf_state" "$run_dir/build" "${mf_vars[@]}"
# The same worker without the provider check on PUT, for (e′) only.
mf_nc_port=$(free_port)
start_mf mf_nocheck "$mf_nc_port" /healthz worker "$mf_nc_port" "$nc_state" "$run_dir/build" \
  "${mf_vars[@]}" COMFY_CLOUD_VERIFY=off
mf_floor_port=$(free_port)
start_mf mf_floor "$mf_floor_port" / floor "$mf_floor_port"
mf_refs_port=$(free_port)
start_mf mf_refs "$mf_refs_port" / refs "$mf_refs_port" "$run_dir/mf-refs-state" "${refs_vars[@]}"

# ---- seed, in each mode: a team (dev JWT), keys, a credential, an online agent ---------------
json_field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];if(v===undefined){console.error(s);process.exit(1)}console.log(v)})' "$1"; }
jwt=$(node scripts/dev-token.mjs bench-owner 86400)
seed() { # base: prints "team key dk use_key"
  local base=$1 team key dk use_key cred
  team=$(curl -sf -X POST "$base/api/v1/teams" -H "Authorization: Bearer $jwt" \
    -H 'Content-Type: application/json' -d '{"name": "bench"}' | json_field id)
  new_key() {
    curl -sf -X POST "$base/api/v1/api-keys" -H "Authorization: Bearer $jwt" -H "X-Team-ID: $team" \
      -H 'Content-Type: application/json' -d "$1" | json_field key
  }
  key=$(new_key '{"name": "bench", "kind": "secret"}')
  curl -sf -o /dev/null -X PUT "$base/api/v1/cloud-providers/comfy-cloud" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "{\"api_key\": \"$stub_key\", \"cloud_fallback\": false}"
  cred="$base/api/v1/cloud-providers/comfy-cloud"
  for check in \
    "$(status_of "$cred" -H "Authorization: Bearer $key")" \
    "$(status_of "$cred" -H "Authorization: Bearer $jwt" -H "X-Team-ID: $team")"; do
    [ "$check" = 200 ] || { say "seeded GET answered $check at $base"; exit 1; }
  done
  [ "$(status_of "$base/api/v1/nothing-here")" = 404 ] || { say "expected a 404"; exit 1; }
  [ "$(status_of "$cred" -H "Authorization: Bearer sk-forged")" = 401 ] || { say "expected a 401"; exit 1; }
  dk=$(new_key '{"name": "agent-0", "kind": "device"}')
  use_key=$(new_key '{"name": "router", "kind": "secret", "scopes": ["cloud_providers:read", "cloud_providers:use"]}')
  [ "$(status_of "$base/api/v1/agents/heartbeat" -X POST -H "Authorization: Bearer $dk")" = 200 ] \
    || { say "the heartbeat failed"; exit 1; }
  [ "$(status_of "$base/api/v1/tasks/route" -X POST -H "Authorization: Bearer $use_key")" = 200 ] \
    || { say "the route decision failed"; exit 1; }
  [ "$(status_of "$cred/proxy/developer/api/v1/account" -H "Authorization: Bearer $use_key")" = 200 ] \
    || { say "the proxied GET failed"; exit 1; }
  echo "$team $key $dk $use_key"
}
read -r team key dk use_key <<< "$(seed "http://127.0.0.1:$worker_port")"
read -r mf_team mf_key mf_dk mf_use_key <<< "$(seed "http://127.0.0.1:$mf_worker_port")"
read -r _ nc_key _ _ <<< "$(seed "http://127.0.0.1:$mf_nc_port")"
for p in "$refs_port" "$mf_refs_port"; do
  for path in /read /write /fetch; do
    [ "$(status_of "http://127.0.0.1:$p$path")" = 200 ] || { say "reference $path failed on $p"; exit 1; }
  done
done
say "seeded both modes: a team, an sk- key, a credential, an online agent and a routing key"

# ---- load ---------------------------------------------------------------------------------
# CPU seconds (user + system) used so far by every process of a group.
group_cpu_ticks() {
  local pids
  pids=$(pgrep -g "$1" || true)
  [ -n "$pids" ] || { echo 0; return; }
  # shellcheck disable=SC2086
  (cd /proc && cat $(printf '%s/stat ' $pids) 2>/dev/null) \
    | sed 's/^.*) //' | awk '{t += $12 + $13} END {print t + 0}'
}
pgid_of() { grep "^pgid_$1=" "$meta" | cut -d= -f2; }

# The URLs and credentials of a mode.
mode_env() { # mode
  if [ "$1" = wrangler ]; then
    M_BASE="http://127.0.0.1:$worker_port" M_FLOOR="http://127.0.0.1:$floor_port"
    M_REFS="http://127.0.0.1:$refs_port" M_TEAM=$team M_KEY=$key M_DK=$dk M_USE=$use_key
  else
    M_BASE="http://127.0.0.1:$mf_worker_port" M_FLOOR="http://127.0.0.1:$mf_floor_port"
    M_REFS="http://127.0.0.1:$mf_refs_port" M_TEAM=$mf_team M_KEY=$mf_key M_DK=$mf_dk M_USE=$mf_use_key
  fi
  M_CRED="$M_BASE/api/v1/cloud-providers/comfy-cloud"
}
# The process group a scenario's CPU is read from.
group_of() { # mode scenario
  local prefix=""
  [ "$1" = miniflare ] && prefix=mf_
  case "$2" in
    a_floor) pgid_of "${prefix}floor" ;;
    a2_floor_log) pgid_of floor_log ;;
    h_floor_io) pgid_of floor_io ;;
    r1_read | r2_write | r3_fetch) pgid_of "${prefix}refs" ;;
    e2_put_nocheck) pgid_of mf_nocheck ;;
    *) pgid_of "${prefix}worker" ;;
  esac
}
run_wrk() { # mode scenario duration
  local s=$2 d=$3
  local common=(--latency -t"$THREADS" -c"$CONNECTIONS" -d"$d" --timeout 10s)
  mode_env "$1"
  case "$s" in
    a_floor) wrk "${common[@]}" "$M_FLOOR/" ;;
    a2_floor_log) wrk "${common[@]}" "http://127.0.0.1:$floor_log_port/" ;;
    h_floor_io) wrk "${common[@]}" "http://127.0.0.1:$floor_io_port/" ;;
    r1_read) wrk "${common[@]}" "$M_REFS/read" ;;
    r2_write) wrk "${common[@]}" "$M_REFS/write" ;;
    r3_fetch) wrk "${common[@]}" "$M_REFS/fetch" ;;
    f_404) wrk "${common[@]}" "$M_BASE/api/v1/nothing-here" ;;
    g_401) wrk "${common[@]}" -H "Authorization: Bearer sk-forged" "$M_CRED" ;;
    b_healthz) wrk "${common[@]}" "$M_BASE/healthz" ;;
    c_get_sk) wrk "${common[@]}" -H "Authorization: Bearer $M_KEY" "$M_CRED" ;;
    d_get_jwt) wrk "${common[@]}" -H "Authorization: Bearer $jwt" -H "X-Team-ID: $M_TEAM" "$M_CRED" ;;
    e_put_sk) BENCH_AUTH=$M_KEY wrk "${common[@]}" -s bench/put.lua "$M_CRED" ;;
    e2_put_nocheck) BENCH_AUTH=$nc_key wrk "${common[@]}" -s bench/put.lua \
      "http://127.0.0.1:$mf_nc_port/api/v1/cloud-providers/comfy-cloud" ;;
    i_heartbeat) BENCH_AUTH=$M_DK BENCH_BODY='{"version":"1.0.0"}' wrk "${common[@]}" -s bench/post.lua \
      "$M_BASE/api/v1/agents/heartbeat" ;;
    i2_heartbeat_versions) BENCH_AUTH=$M_DK BENCH_VERSIONS=1 wrk "${common[@]}" -s bench/post.lua \
      "$M_BASE/api/v1/agents/heartbeat" ;;
    j_route) BENCH_AUTH=$M_USE wrk "${common[@]}" -s bench/post.lua "$M_BASE/api/v1/tasks/route" ;;
    k_proxy) wrk "${common[@]}" -H "Authorization: Bearer $M_USE" "$M_CRED/proxy/developer/api/v1/account" ;;
  esac
}
# wrk prints latencies as 812.00us, 1.53ms or 1.02s: to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN {
  n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
  if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
  printf "%.3f", n }'; }

modes=(${BENCH_MODES:-wrangler miniflare})
scenarios_wrangler=(a_floor a2_floor_log r1_read r2_write r3_fetch f_404 g_401 b_healthz c_get_sk
  d_get_jwt e_put_sk h_floor_io i_heartbeat i2_heartbeat_versions j_route k_proxy)
scenarios_miniflare=(a_floor r1_read r2_write r3_fetch f_404 g_401 b_healthz c_get_sk d_get_jwt
  e_put_sk e2_put_nocheck i_heartbeat i2_heartbeat_versions j_route k_proxy)
scenarios_of() { local v="scenarios_$1[@]"; echo "${!v}"; }
say "warm-up: $WARMUP per scenario"
for mode in "${modes[@]}"; do
  for s in $(scenarios_of "$mode"); do run_wrk "$mode" "$s" "$WARMUP" > "$run_dir/warmup-$mode-$s.txt"; done
done

# Round trips: in the last round, the worker's own log lines written during each of its
# scenarios' load give the mean `d1_calls` and `do_calls` per request under that load
# (bench/trips.mjs). Leases make the principal's DO calls depend on the rate, so this is
# the figure at the rate measured, not at a trickle.
worker_log_of() { # mode scenario
  if [ "$2" = e2_put_nocheck ]; then echo "$run_dir/mf_nocheck.log"
  elif [ "$1" = miniflare ]; then echo "$run_dir/mf_worker.log"
  else echo "$run_dir/worker.log"; fi
}
printf 'mode\tscenario\trequests\td1_per_req\tdo_per_req\n' > "$run_dir/roundtrips.tsv"
printf 'mode\tscenario\tround\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsocket_errors\tcpu_ms_per_req\n' > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${modes[@]}"; do
    for s in $(scenarios_of "$mode"); do
      out="$run_dir/wrk-$mode-$s-$round.txt"
      pg=$(group_of "$mode" "$s")
      log=$(worker_log_of "$mode" "$s")
      offset=$(stat -c %s "$log")
      c0=$(group_cpu_ticks "$pg")
      run_wrk "$mode" "$s" "$DURATION" > "$out"
      c1=$(group_cpu_ticks "$pg")
      if [ "$round" = "$ROUNDS" ] && { [ "$pg" = "$(group_of "$mode" c_get_sk)" ] \
        || [ "$s" = e2_put_nocheck ]; }; then
        sleep 1 # the last lines reach the log
        node bench/trips.mjs "$log" "$offset" "$mode" "$s" >> "$run_dir/roundtrips.tsv"
      fi
      rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
      p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
      p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
      requests=$(awk '/requests in/ {print $1}' "$out")
      non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
      errors=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
      ticks=$(getconf CLK_TCK)
      cpu=$(awk -v a="$c0" -v b="$c1" -v n="$requests" -v hz="$ticks" \
        'BEGIN { printf "%.3f", (n > 0) ? (b - a) * 1000 / hz / n : 0 }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$s" "$round" "$rps" "$p50" "$p99" \
        "$requests" "${non2xx:-0}" "${errors:-0}" "$cpu" >> "$results"
      say "round $round $mode $s: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx ${non2xx:-0}, cpu ${cpu} ms/req"
    done
  done
done
say "round trips per request under load: $(tr '\n' ';' < "$run_dir/roundtrips.tsv")"

# ---- 5. presence capacity -------------------------------------------------------------------
# One team's presence object with more and more agents: each new device key beats once, then
# the route decision (which reads every device key from D1 and every entry from the object)
# is loaded for one duration. The heartbeat scenario (i′) above is the object's write rate.
base="http://127.0.0.1:$worker_port"
printf 'agents\trps\tp50_ms\tp99_ms\trequests\tnon2xx\n' > "$run_dir/capacity.tsv"
have=1
# Under load, wrangler's proxy now and then loses its connection to the worker and answers a
# POST it never delivered with its own 503 ("Your worker restarted mid-request"; no worker
# log line). Those are sent again, at most twice; any other failure names its agent.
register() { # base jwt team n
  local attempt out code k=""
  for attempt in 1 2 3; do
    if [ -z "$k" ]; then
      out=$(curl -s -w '\n%{http_code}' -X POST "$1/api/v1/api-keys" -H "Authorization: Bearer $2" \
        -H "X-Team-ID: $3" -H "Content-Type: application/json" -d "{\"name\": \"agent-$4\", \"kind\": \"device\"}")
      code=${out##*$'\n'}
      if [ "$code" = 201 ]; then
        k=$(printf '%s' "${out%$'\n'*}" | json_field key)
      fi
    fi
    if [ -n "$k" ]; then
      out=$(curl -s -w '\n%{http_code}' -X POST "$1/api/v1/agents/heartbeat" -H "Authorization: Bearer $k")
      code=${out##*$'\n'}
      [ "$code" = 200 ] && return 0
    fi
    case "$out" in *"restarted mid-request"*) continue ;; esac
    break
  done
  say "capacity: agent-$4 failed (${k:+heartbeat, }HTTP $code, try $attempt): $(printf '%s' "${out%$'\n'*}" | head -c 200)"
  return 1
}
export -f register say json_field
for n in ${BENCH_AGENTS:-200 1000 2000}; do
  seq "$have" $(( n - 1 )) | xargs -P 8 -I{} bash -c 'register "$@"' _ "$base" "$jwt" "$team" {} \
    || say "capacity: some of the $n agents did not register; counting those online"
  have=$n
  online=$(curl -sf -X POST "$base/api/v1/tasks/route" -H "Authorization: Bearer $use_key" | json_field agents_online)
  say "capacity: $online agents online"
  out="$run_dir/capacity-$n.txt"
  BENCH_AUTH=$use_key wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s \
    -s bench/post.lua "$base/api/v1/tasks/route" > "$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$online" "$(awk '/^Requests\/sec:/ {print $2}' "$out")" \
    "$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")" "$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")" \
    "$(awk '/requests in/ {print $1}' "$out")" "$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")" \
    >> "$run_dir/capacity.tsv"
  say "capacity $online agents: route $(awk '/^Requests\/sec:/ {print $2}' "$out") req/s"
done

# ---- 6. report ------------------------------------------------------------------------------
meta date "$(date -u +%Y-%m-%dT%H:%MZ)"
meta nproc "$(nproc)"
meta cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
meta load "$(cut -d' ' -f1-3 /proc/loadavg)"
meta wrangler "$("$WRANGLER" --version 2>/dev/null | tail -1)"
meta workerd "$(node -p 'require("./node_modules/@cloudflare/workerd-linux-64/package.json").version')"
meta node "$(node --version)"
meta miniflare "$(node -p 'require("./node_modules/miniflare/package.json").version')"
meta rustc "$(rustc --version)"
meta worker_crate "$(awk '/^name = "worker"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
meta wrk "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
meta wrk_args "-t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds after a $WARMUP warm-up each"

node bench/report.mjs "$run_dir" "${BENCH_WRITE:-1}"
