// Serves one of the benchmark's workers with Miniflare directly (workerd, no `wrangler dev`
// and no inspector proxy in front): scripts/bench.sh's second mode.
//
//   node bench/miniflare.mjs worker <port> <state dir> <run build dir> [NAME=VALUE ...]
//   node bench/miniflare.mjs floor  <port>
//   node bench/miniflare.mjs refs   <port> <state dir> [NAME=VALUE ...]
//
// `worker` is the real one: the wasm build, its vars ([vars] of wrangler.toml, then
// .dev.vars, then the NAME=VALUE arguments), D1 and both Durable Object classes, with the
// same persistence layout as `wrangler dev --persist-to <state dir>`, so the database the
// benchmark migrated and seeded is the one served.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Log, LogLevel, Miniflare } from "miniflare";

const [kind, port, state, ...rest] = process.argv.slice(2);
const root = resolve(new URL("..", import.meta.url).pathname);
const COMPAT = "2026-04-20";

function topLevelVars() {
  const vars = {};
  let section = "";
  for (const line of readFileSync(join(root, "wrangler.toml"), "utf8").split("\n")) {
    const header = /^\s*\[+([^\]]+)\]+/.exec(line);
    if (header) section = header[1].trim();
    const kv = /^\s*([A-Z_][A-Z0-9_]*)\s*=\s*"(.*)"\s*$/.exec(line);
    if (kv && section === "vars") vars[kv[1]] = kv[2].replace(/\\'/g, "'");
  }
  return vars;
}

function devVars() {
  const vars = {};
  for (const line of readFileSync(join(root, ".dev.vars"), "utf8").split("\n")) {
    const at = line.indexOf("=");
    if (/^[A-Z]/.test(line) && at > 0) vars[line.slice(0, at)] = line.slice(at + 1).trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return vars;
}

const overrides = (args) => Object.fromEntries(args.map((a) => [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]));

let options;
if (kind === "worker") {
  const [build, ...pairs] = rest;
  options = {
    scriptPath: join(build, "index.js"),
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    bindings: { ...topLevelVars(), ...devVars(), ...overrides(pairs) },
    d1Databases: { DB: "00000000-0000-4000-8000-000000000000" },
    durableObjects: {
      RATE_LIMITER: { className: "RateLimiter", useSQLite: true },
      AGENT_PRESENCE: { className: "AgentPresence", useSQLite: true },
    },
    d1Persist: join(state, "v3", "d1"),
    durableObjectsPersist: join(state, "v3", "do"),
  };
} else if (kind === "floor") {
  options = { scriptPath: join(root, "bench/floor/index.js"), modules: true };
} else if (kind === "refs") {
  options = {
    scriptPath: join(root, "bench/floor-refs/index.js"),
    modules: true,
    bindings: overrides(rest),
    d1Databases: { DB: "00000000-0000-4000-8000-0000000000f1" },
    d1Persist: join(state, "v3", "d1"),
  };
} else {
  console.error("usage: node bench/miniflare.mjs worker|floor|refs <port> [state] ...");
  process.exit(2);
}

const mf = new Miniflare({
  ...options,
  compatibilityDate: COMPAT,
  host: "127.0.0.1",
  port: Number(port),
  log: new Log(LogLevel.WARN),
  // For a CPU profile of the isolate (bench/cpuprofile.mjs): the DevTools protocol here.
  ...(process.env.BENCH_INSPECTOR_PORT ? { inspectorPort: Number(process.env.BENCH_INSPECTOR_PORT) } : {}),
});
const url = await mf.ready;
console.error(`miniflare ${kind} ready at ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
