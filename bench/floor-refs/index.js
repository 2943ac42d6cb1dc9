// Benchmark references (scripts/bench.sh, issue 16): the physical floor of the worker's
// design, in plain JavaScript, one route each:
//   /read  (R1) one D1 batch of two reads (a key's row and a credential) and a log line:
//          what an authenticated GET cannot do without;
//   /write (R2) one D1 write batch (a row's change and its audit row) and a log line:
//          what a PUT cannot do without;
//   /fetch (R3) a fetch of the provider stub's account endpoint, body relayed: what the
//          proxy's GET adds its checks to.
let ready = null;

function schema(env) {
  ready ??= env.DB.batch([
    env.DB.prepare("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL)"),
    env.DB.prepare("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, at INTEGER NOT NULL)"),
  ]);
  return ready;
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/") return new Response("ok");
    if (pathname === "/read") {
      const [key, row] = await env.DB.batch([
        env.DB.prepare("SELECT ?1 AS team_id, 'secret' AS kind").bind("t"),
        env.DB.prepare("SELECT ?1 AS team_id, 'active' AS status").bind("t"),
      ]);
      const body = { ...row.results[0], kind: key.results[0].kind };
      console.log(JSON.stringify({ route: "/read", status: 200, d1_calls: 1 }));
      return Response.json(body);
    }
    if (pathname === "/write") {
      await schema(env);
      const now = Date.now();
      await env.DB.batch([
        env.DB.prepare(
          "INSERT INTO items (id, value, version) VALUES ('bench', ?1, 1) " +
            "ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = items.version + 1",
        ).bind(String(now)),
        env.DB.prepare("INSERT INTO events (item, at) SELECT 'bench', ?1 WHERE changes() > 0").bind(now),
      ]);
      console.log(JSON.stringify({ route: "/write", status: 200, d1_calls: 1 }));
      return Response.json({ ok: true });
    }
    if (pathname === "/fetch") {
      const upstream = await fetch(`${env.STUB_URL}/developer/api/v1/account`, {
        headers: { Authorization: `Bearer ${env.STUB_KEY}` },
        redirect: "manual",
      });
      console.log(JSON.stringify({ route: "/fetch", status: upstream.status }));
      return new Response(upstream.body, { status: upstream.status, headers: { "Content-Type": "application/json" } });
    }
    return new Response("not found", { status: 404 });
  },
};
