#!/usr/bin/env node
// Mints a development session JWT (HS256, signed with JWT_SECRET from .dev.vars).
// Usage: node scripts/dev-token.mjs <user-id> [ttl-seconds] [--link [base-url]]
// With --link it prints a ready link to the settings page instead, the token in its URL
// fragment (`#token=…`, never sent to a server): base-url defaults to http://127.0.0.1:8787.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const linkAt = args.indexOf("--link");
let base = null;
if (linkAt >= 0) {
  const next = args[linkAt + 1];
  const given = Boolean(next && /^https?:\/\//.test(next));
  base = given ? next.replace(/\/+$/, "") : "http://127.0.0.1:8787";
  args.splice(linkAt, given ? 2 : 1);
}
const [sub, ttl = "3600"] = args;
if (!sub || !/^\d+$/.test(ttl) || args.length > 2) {
  console.error("usage: node scripts/dev-token.mjs <user-id> [ttl-seconds] [--link [base-url]]");
  process.exit(2);
}
const varsPath = fileURLToPath(new URL("../.dev.vars", import.meta.url));
const line = readFileSync(varsPath, "utf8")
  .split("\n")
  .find((l) => l.startsWith("JWT_SECRET="));
if (!line) {
  console.error(`no JWT_SECRET in ${varsPath}; run ./scripts/dev.sh or ./scripts/setup.sh first`);
  process.exit(1);
}
const secret = line.slice("JWT_SECRET=".length).trim().replace(/^"|"$/g, "");
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
const now = Math.floor(Date.now() / 1000);
const signed = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, iat: now, exp: now + Number(ttl) })}`;
const signature = createHmac("sha256", secret).update(signed).digest("base64url");
const token = `${signed}.${signature}`;
console.log(base === null ? token : `${base}/settings#token=${token}`);
