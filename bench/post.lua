-- wrk script for scripts/bench.sh scenarios (i) heartbeat and (j) route: a POST with the
-- bearer token from BENCH_AUTH and, when BENCH_BODY is set, that JSON body. With
-- BENCH_VERSIONS=1 (scenario (i′)) each request is a heartbeat with a version of its own,
-- so that every one is written to presence.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH")
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if os.getenv("BENCH_VERSIONS") == "1" then
  wrk.headers["Content-Type"] = "application/json"
  local threads = 0
  setup = function(thread)
    threads = threads + 1
    thread:set("thread_id", threads)
  end
  local sent = 0
  request = function()
    sent = sent + 1
    local body = '{"version":"t' .. tostring(thread_id) .. "-" .. sent .. '"}'
    return wrk.format(nil, nil, nil, body)
  end
end
