-- wrk script for scripts/bench.sh scenario (e): PUT of a credential.
-- The bearer token comes from the environment (BENCH_AUTH), never from this file.
wrk.method = "PUT"
wrk.body = '{"api_key": "comfyui-bench-0123456789abcdefghijklmnop", "cloud_fallback": false}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH")
