// A V8 CPU profile of a worker served by bench/miniflare.mjs with BENCH_INSPECTOR_PORT set:
//
//   node bench/cpuprofile.mjs <inspector port> <seconds> <out.cpuprofile>
//
// Connects to the user worker's isolate over the DevTools protocol, samples every 100 µs for
// the given time, writes the profile (Chrome DevTools or speedscope open it) and prints the
// functions with the most self time. Build without wasm-opt's --strip-debug to see wasm
// function names (scripts/build.sh keeps them only in worker-build's own output).
import { writeFileSync } from "node:fs";
import WebSocket from "ws";

const [port, seconds, out] = process.argv.slice(2);
const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = targets.find((t) => t.id.startsWith("core:user:")) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((ok, fail) => ws.once("open", ok).once("error", fail));
let next = 0;
const waiting = new Map();
ws.on("message", (m) => {
  const msg = JSON.parse(m);
  if (msg.id !== undefined && waiting.has(msg.id)) {
    waiting.get(msg.id)(msg);
    waiting.delete(msg.id);
  }
});
const send = (method, params = {}) =>
  new Promise((ok) => {
    const id = ++next;
    waiting.set(id, ok);
    ws.send(JSON.stringify({ id, method, params }));
  });
// Without the runtime and debugger domains enabled the profile holds only idle samples.
await send("Runtime.enable");
await send("Debugger.enable");
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
await new Promise((ok) => setTimeout(ok, Number(seconds) * 1000));
const { result } = await send("Profiler.stop");
writeFileSync(out, JSON.stringify(result.profile));
ws.close();

const profile = result.profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
const name = (n) => {
  const cf = n.callFrame;
  return `${cf.functionName || "(anonymous)"} ${cf.url ? cf.url.split("/").pop() : ""}`.trim();
};
profile.samples.forEach((id, i) => {
  const k = name(byId.get(id));
  self.set(k, (self.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);
console.log(`self time, ${(total / 1000).toFixed(0)} ms sampled:`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 30)))
  console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
