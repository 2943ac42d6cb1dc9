// The floor for scripts/bench.sh: the cheapest possible worker, under the same wrangler
// and workerd as the real one, so every ratio in BENCHMARKS.md is against what the local
// runtime itself costs per request.
export default {
  fetch() {
    return new Response("ok");
  },
};
