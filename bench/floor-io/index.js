// A reference for scripts/bench.sh: the round trips of a credential GET (scenario c) and
// nothing else, in plain JavaScript. Two Durable Object calls at once (each reads and
// writes a small state, as the limiter does), then one D1 batch of two reads (the caller's
// row and the credential), and one console.log line. Next to (c), it shows what the Rust
// worker adds on top of the platform calls it cannot avoid.
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  async fetch() {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + 1;
    await this.ctx.storage.put("n", n);
    return Response.json({ decision: "allowed", remaining: 1e9 - n, reset_ms: 1000 });
  }
}

export default {
  async fetch(request, env) {
    const call = (name) =>
      env.COUNTER.get(env.COUNTER.idFromName(name))
        .fetch("https://limiter/check", { method: "POST", body: "{}" })
        .then((r) => r.json());
    await Promise.all([call("ip:127.0.0.1"), call("key:bench")]);
    const [key, row] = await env.DB.batch([
      env.DB.prepare("SELECT ?1 AS team_id, 'secret' AS kind").bind("t"),
      env.DB.prepare("SELECT ?1 AS team_id, 'active' AS status").bind("t"),
    ]);
    const credential = { ...row.results[0], kind: key.results[0].kind };
    console.log(JSON.stringify({ route: "/floor-io", status: 200, team_id: credential.team_id }));
    return Response.json(credential);
  },
};
