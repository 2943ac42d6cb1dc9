#!/usr/bin/env node
// A stub of ComfyUI Cloud for development and tests, on loopback only. It is never a
// security boundary: it answers the way seed 002 and comfy-sdk expect, and it records
// every request it receives so tests can assert on what arrived, not only on what the
// worker answered.
//
//   node scripts/provider-stub.mjs [--port 8788] [--valid-key KEY ...]
//
// Keys: the dev key below, every --valid-key, and any key added with POST /__stub/keys get
// 200 from the account check; any other key gets seed 002's 401. Keys that start with
// stub-403-, stub-429-, stub-500-, stub-302- or stub-slow- make the account check answer
// that way, so every verification outcome can be produced on purpose.
//
// Control endpoints (outside the proxied prefixes, so never reachable through the proxy):
//   GET  /__stub/requests   every request recorded, oldest first
//   POST /__stub/keys       {"key": "..."} becomes valid
//   DELETE /__stub/keys     {"key": "..."} is no longer valid (a key revoked at the provider)
//   GET  /__stub/signed/*   the "signed storage URL" that redirects point to; needs no key

import { createServer } from "node:http";
import { createHash, randomUUID } from "node:crypto";

// INSECURE DEVELOPMENT DEFAULT: the one key the stub accepts out of the box (README).
export const DEV_STUB_KEY = "comfyui-insecure-dev-stub-key-0001";

const args = process.argv.slice(2);
let port = 8788;
const valid = new Set([DEV_STUB_KEY]);
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--port") port = Number(args[++i]);
  else if (args[i] === "--valid-key") valid.add(args[++i]);
  else {
    console.error(`provider-stub: unknown argument ${args[i]}`);
    process.exit(2);
  }
}
const SLOW_MS = Number(process.env.STUB_SLOW_MS || 8000);
const records = [];
let connections = 0;
const MAX_RECORDS = 20000;
const KEEP_BODY_TEXT = 64 * 1024;

const JOB_ID = "7f3d2c1b-9a8e-4d6f-b012-3c4d5e6f7a8b";
function job(id, status = "succeeded") {
  const now = new Date().toISOString();
  return {
    id,
    status,
    created_at: now,
    started_at: now,
    completed_at: status === "succeeded" ? now : null,
    expires_at: new Date(Date.now() + 86400000).toISOString(),
    queue_position: null,
    progress: { value: 1, nodes_done: 3, nodes_total: 3 },
    outputs: [],
    error: null,
    // Host-relative server links, as Comfy Cloud sends them: a client resolves them
    // against the origin it called, so through the proxy they come back to the proxy.
    urls: {
      self: `/api/v2/jobs/${id}`,
      events: `/api/v2/jobs/${id}/events`,
      cancel: `/api/v2/jobs/${id}/cancel`,
    },
  };
}

function send(res, status, body, headers = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(text);
}

const unauthorized = (res) =>
  send(res, 401, { error: { type: "unauthorized", message: "Invalid or expired API key" } });

function bearer(req) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || "");
  return m ? m[1] : null;
}

function account(req, res, key) {
  if (key?.startsWith("stub-403-")) return send(res, 403, { error: { type: "forbidden", message: "Key lacks access" } });
  if (key?.startsWith("stub-429-")) return send(res, 429, { error: { type: "rate_limited", message: "Slow down" } }, { "Retry-After": "30" });
  if (key?.startsWith("stub-500-")) return send(res, 500, { error: { type: "internal", message: "stub failure" } });
  if (key?.startsWith("stub-302-")) {
    res.writeHead(302, { Location: `http://127.0.0.1:${port}/__stub/signed/account` });
    return res.end();
  }
  if (key?.startsWith("stub-slow-")) {
    setTimeout(() => send(res, 200, { id: "acct_slow" }), SLOW_MS);
    return;
  }
  if (!key || !valid.has(key)) return unauthorized(res);
  send(res, 200, { id: "acct_stub", email: "dev@example.com", plan: "stub" });
}

function api(req, res, record, path, url) {
  const key = bearer(req);
  if (path === "/developer/api/v1/account") return account(req, res, key);
  if (!key || !valid.has(key)) return unauthorized(res);

  const echo = /^\/(developer\/api\/v1|api\/v2)\/echo(\/|$)/.test(path);
  if (echo) {
    // What arrived, minus the headers: a provider that reflected the key would leak it
    // through the proxy, and the tests read the headers from /__stub/requests instead.
    const { id, method, query, body_bytes, body_sha256 } = record;
    return send(res, 200, { id, method, path, query, body_bytes, body_sha256 }, {
      "Set-Cookie": "stub_session=1; Path=/",
      "X-Stub-Internal": "not-for-callers",
      Server: "provider-stub",
      ETag: '"echo-1"',
      "X-RateLimit-Remaining": "599",
      "Cache-Control": "no-store",
    });
  }
  if (path === "/api/v2/redirect" || /^\/api\/v2\/assets\/[^/]+\/content$/.test(path)) {
    // The caller's query rides along, so a test can find a followed redirect by its marker.
    const from = url.search ? `&${url.search.slice(1)}` : "";
    res.writeHead(302, {
      Location: `http://127.0.0.1:${port}/__stub/signed/content?sig=stub-signature${from}`,
      "Set-Cookie": "stub_session=1",
    });
    return res.end();
  }
  if (path === "/api/v2/slow") {
    setTimeout(() => send(res, 200, { slow: true }), SLOW_MS);
    return;
  }
  if (path === "/api/v2/ratelimited") {
    return send(res, 429, { error: { type: "rate_limited", message: "Too many requests" } }, { "Retry-After": "7" });
  }
  if (path === "/api/v2/fail") {
    return send(res, 503, { error: { type: "unavailable", message: "stub says 503" } });
  }
  if (path === "/api/v2/jobs" && req.method === "GET") {
    const { id, status, created_at } = job(JOB_ID);
    return send(res, 200, { jobs: [{ id, status, create_time: created_at, metadata: {} }] });
  }
  if (path === "/api/v2/assets" && req.method === "POST") {
    return send(res, 201, { id: randomUUID(), size_bytes: record.body_bytes, sha256: record.body_sha256 });
  }
  let m = /^\/api\/v2\/jobs\/([^/]+)\/events$/.exec(path);
  if (m) {
    // Server-Sent Events, a frame at a time, as a running job would send them.
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    const frames = [
      ": keep-alive\n\n",
      `event: progress\ndata: ${JSON.stringify({ value: 0.5, nodes_done: 1, nodes_total: 2 })}\n\n`,
      `event: progress\ndata: ${JSON.stringify({ value: 1, nodes_done: 2, nodes_total: 2 })}\n\n`,
      `event: status\ndata: ${JSON.stringify({ status: "succeeded" })}\n\n`,
    ];
    let i = 0;
    const next = () => {
      if (i < frames.length) {
        res.write(frames[i++]);
        setTimeout(next, 150);
      } else res.end();
    };
    return next();
  }
  m = /^\/api\/v2\/jobs\/([^/]+)$/.exec(path);
  if (m && req.method === "GET") return send(res, 200, job(decodeURIComponent(m[1])));
  send(res, 404, { error: { type: "not_found", message: "No such stub endpoint" } });
}

const server = createServer((req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  const path = url.pathname;
  if (path.startsWith("/__stub/")) {
    if (path === "/__stub/requests") return send(res, 200, records);
    if (path === "/__stub/keys" && (req.method === "POST" || req.method === "DELETE")) {
      let text = "";
      req.on("data", (c) => (text += c));
      req.on("end", () => {
        try {
          const { key } = JSON.parse(text);
          if (req.method === "POST") valid.add(key);
          else valid.delete(key);
          send(res, 204, "");
        } catch {
          send(res, 400, { error: "expected {\"key\": ...}" });
        }
      });
      return;
    }
    if (!path.startsWith("/__stub/signed/")) return send(res, 404, { error: "no such control endpoint" });
    // Signed storage URLs are recorded too: a test can see that a redirect was not followed.
  }
  // Every request to the API surface is recorded: method, raw target, headers, and the
  // body's length and SHA-256 (its text only when small), counted as it streams in, so a
  // 100 MB upload is never held here either.
  const record = {
    id: randomUUID(),
    // Which TCP connection it came on, numbered as they open: a test can see reuse.
    connection: (req.socket.stubConnection ??= ++connections),
    method: req.method,
    path,
    query: url.search,
    headers: req.headers,
    body_bytes: 0,
    body_sha256: null,
    body_text: null,
    complete: false,
  };
  if (records.length >= MAX_RECORDS) records.shift();
  records.push(record);
  const hash = createHash("sha256");
  const kept = [];
  let keptBytes = 0;
  req.on("data", (chunk) => {
    record.body_bytes += chunk.length;
    hash.update(chunk);
    if (keptBytes < KEEP_BODY_TEXT) {
      kept.push(chunk);
      keptBytes += chunk.length;
    }
  });
  req.on("end", () => {
    record.complete = true;
    record.body_sha256 = hash.digest("hex");
    if (record.body_bytes <= KEEP_BODY_TEXT) record.body_text = Buffer.concat(kept).toString("latin1");
    if (path.startsWith("/__stub/signed/")) return send(res, 200, { signed: true });
    api(req, res, record, path, url);
  });
  req.on("error", () => {});
});
server.listen(port, "127.0.0.1", () => {
  port = server.address().port;
  console.log(`provider stub listening on http://127.0.0.1:${server.address().port}`);
});
