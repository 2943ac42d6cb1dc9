-- wrk script for scripts/bench.sh scenarios (i) heartbeat and (j) route: a POST with the
-- bearer token from BENCH_AUTH and, when BENCH_BODY is set, that JSON body.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH")
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
