// The settings page in a real browser: Debian's Chromium driven by playwright-core, against
// the real worker (under wrangler dev) and the provider stub. Run by tests/e2e/settings.rs,
// which makes the team and its links, then checks what the worker and the stub saw.
//
// Environment: BASE_URL, LINK_OWNER (a dev link made by scripts/dev-token.mjs --link),
// TOKEN_OWNER, LINK_MEMBER, LINK_EXPIRED, GOOD_KEY, BAD_KEY, AGENT_NAME, SCREENSHOT_DIR,
// CHROMIUM (default /usr/bin/chromium). Prints one JSON line: what the story created.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("BASE_URL");
const ORIGIN = new URL(BASE).origin;
const SHOTS = env("SCREENSHOT_DIR");
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const foreign = [];
const consoleErrors = [];
const expectedNetworkErrors = [];
const failedResponses = [];

async function newPage(width) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ORIGIN });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.origin !== ORIGIN && url.protocol !== "data:") foreign.push(request.url());
  });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) failedResponses.push(`${response.status()} ${response.url()}`);
  });
  page.on("dialog", (dialog) => dialog.accept());
  return page;
}

const text = (page, selector) => page.locator(selector).innerText();
// The one-time key is masked: a screenshot is a file, and files get committed.
// (From the top: a full-page mask is placed right only when the page is not scrolled.)
async function shot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${SHOTS}/settings-${name}.png`, fullPage: true, mask: [page.locator("#new-key-value")] });
}
async function view(page, name) {
  await page.getByRole("button", { name, exact: true }).click();
}
async function errorShown(page, pattern) {
  await page.locator("#error").waitFor({ state: "visible" });
  const message = await text(page, "#error");
  assert.match(message, pattern);
  return message;
}

// ------------------------------------------------------------ the owner, at 375 px wide

const page = await newPage(375);
await page.goto(env("LINK_OWNER"));
await page.locator("#app").waitFor({ state: "visible" });
await page.locator("#role").filter({ hasText: "owner" }).waitFor();
// The token left the address bar at once and lives in sessionStorage only.
assert.equal(new URL(page.url()).hash, "");
const stored = await page.evaluate(() => ({
  session: Object.keys(sessionStorage),
  local: localStorage.length,
  cookies: document.cookie,
}));
assert.ok(stored.session.includes("edge-credentials.token"));
assert.equal(stored.local, 0);
assert.equal(stored.cookies, "");
// Every input has a label.
const unlabelled = await page.evaluate(() =>
  [...document.querySelectorAll("input, select, textarea")]
    .filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label"))
    .map((e) => e.id || e.name),
);
assert.deepEqual(unlabelled, []);

// Cloud providers: fallback without a key is refused, and explained.
await page.locator("#provider-state").filter({ hasText: "No key saved" }).waitFor();
expectedNetworkErrors.push(404); // GET of the credential the team does not have yet
// click(), not check(): the page unticks the box again when the server refuses, and
// check() fails if that happens before it looks ("did not change its state").
await page.locator("#provider-fallback").click();
await errorShown(page, /^No credential is configured for this provider\. .*save one first/);
expectedNetworkErrors.push(404);
assert.equal(await page.locator("#provider-fallback").isChecked(), false);

// A key the provider rejects: the environment's message, and nothing saved.
await page.locator("#provider-key").fill(env("BAD_KEY"));
await page.getByRole("button", { name: "Save key" }).click();
const rejected = await errorShown(page, /rejected this API key/);
expectedNetworkErrors.push(422);
assert.equal(await page.locator("#provider-key").inputValue(), "", "the key field is cleared");
await page.locator("#provider-state").filter({ hasText: "No key saved" }).waitFor();

// The good key: saved and verified. Revoked, fallback is refused with the 409, explained;
// saved again, fallback goes on.
await page.locator("#provider-key").fill(env("GOOD_KEY"));
await page.getByRole("button", { name: "Save key" }).click();
await page.locator("#provider-state").filter({ hasText: "verified" }).waitFor();
assert.equal(await page.locator("#error").isVisible(), false);
await page.getByRole("button", { name: "Revoke key" }).click();
await page.locator("#provider-state").filter({ hasText: /Status\s*revoked/ }).waitFor();
await page.locator("#provider-fallback").click(); // refused again: click(), as above
const noKey = await errorShown(page, /save one first/);
expectedNetworkErrors.push(409);
assert.equal(await page.locator("#provider-fallback").isChecked(), false);
await page.locator("#provider-key").fill(env("GOOD_KEY"));
await page.getByRole("button", { name: "Save key" }).click();
await page.locator("#provider-state").filter({ hasText: /Status\s*active/ }).waitFor();
await page.locator("#provider-fallback").check();
await page.locator("#provider-state").filter({ hasText: /Cloud fallback\s*on/ }).waitFor();
await page.getByRole("button", { name: "Re-verify" }).click();
await page.locator("#status").filter({ hasText: "Verification: verified." }).waitFor();
const providerFacts = await text(page, "#provider-state");
assert.ok(!providerFacts.includes(env("GOOD_KEY")), "the page never shows the stored key");
await shot(page, "providers");

// API keys, by keyboard: Tab to the "API keys" view and open it with Enter.
await page.locator("nav button").first().focus();
await page.keyboard.press("Tab");
assert.equal(await page.evaluate(() => document.activeElement.dataset.view), "keys");
await page.keyboard.press("Enter");
await page.locator("#view-keys").waitFor({ state: "visible" });

async function createKey(name, kind, scopes) {
  await page.locator("#key-name").fill(name);
  await page.locator("#key-kind").selectOption(kind);
  for (const box of await page.locator('input[name="scope"]').all()) {
    if (kind === "secret") await box.setChecked(scopes.includes(await box.getAttribute("value")));
  }
  await page.getByRole("button", { name: "Create key" }).click();
  await page.locator("#new-key").waitFor({ state: "visible" });
  const key = await text(page, "#new-key-value");
  await page.locator(`#keys-table tr:has-text("${name}")`).waitFor();
  return key;
}
const sk = await createKey("ci-pipeline", "secret", ["cloud_providers:read", "cloud_providers:use"]);
assert.match(sk, /^sk-[0-9A-Za-z]{38}$/);
await page.getByRole("button", { name: "Copy", exact: true }).click();
assert.equal(await page.evaluate(() => navigator.clipboard.readText()), sk);
// Shown once: never in storage or the URL.
const traces = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }) + location.href);
assert.ok(!traces.includes(sk));
await shot(page, "keys");
await page.getByRole("button", { name: "Done" }).click();
assert.equal(await page.locator("#new-key").isVisible(), false);
const dk = await createKey(env("AGENT_NAME"), "device", []);
assert.match(dk, /^dk-/);
await page.getByRole("button", { name: "Done" }).click();
const skRow = await text(page, '#keys-table tr:has-text("ci-pipeline")');
assert.match(skRow, /cloud_providers:read cloud_providers:use/);
assert.match(skRow, /never/); // not used yet, no expiry

// The sk- key works through the API before it is revoked.
const before = await fetch(`${BASE}/api/v1/cloud-providers/comfy-cloud`, { headers: { Authorization: `Bearer ${sk}` } });
assert.equal(before.status, 200);

// Agents: offline until a dk- heartbeat; the list refreshes by itself within 15 s.
await view(page, "Agents");
const agentRow = page.locator(`#agents-table tr:has-text("${env("AGENT_NAME")}")`);
await agentRow.filter({ hasText: "Offline" }).waitFor();
const beat = await fetch(`${BASE}/api/v1/agents/heartbeat`, {
  method: "POST",
  headers: { Authorization: `Bearer ${dk}`, "Content-Type": "application/json" },
  body: JSON.stringify({ version: "comfy-agent/0.1.0" }),
});
assert.equal(beat.status, 200);
await agentRow.filter({ hasText: "Online" }).waitFor({ timeout: 25000 });
assert.match(await agentRow.innerText(), /comfy-agent\/0\.1\.0/);
await shot(page, "agents");

// Revoke the sk- key; it stops working at once.
await view(page, "API keys");
await page.getByRole("button", { name: "Revoke ci-pipeline" }).click();
await page.locator('#keys-table tr:has-text("ci-pipeline")').filter({ hasText: "revoked" }).waitFor();
const after = await fetch(`${BASE}/api/v1/cloud-providers/comfy-cloud`, { headers: { Authorization: `Bearer ${sk}` } });
assert.equal(after.status, 401);

// Audit, newest first, 50 to a page: the team was renamed 50 times before the story, so
// its creation is on the second page.
await view(page, "Audit");
await page.locator("#audit-table tbody tr").first().waitFor();
const cells = "#audit-table tbody tr td:nth-child(2)";
const firstPage = await page.locator(cells).allInnerTexts();
assert.equal(firstPage.length, 50);
assert.equal(firstPage[0], "api_key.revoked");
for (const action of ["api_key.created", "credential.put", "credential.delete", "credential.patch"]) {
  assert.ok(firstPage.includes(action), `${action} in ${firstPage}`);
}
assert.ok(!firstPage.includes("team.created"));
await shot(page, "audit");
await page.getByRole("button", { name: "Older events" }).click();
await page.locator(cells).nth(50).waitFor();
const both = await page.locator(cells).allInnerTexts();
assert.equal(both.at(-1), "team.created", "the oldest event last");
assert.deepEqual(both.slice(0, 50), firstPage, "the first page stays, the next is appended");
assert.equal(await page.getByRole("button", { name: "Older events" }).isVisible(), false);
const width = await page.evaluate(() => document.documentElement.scrollWidth);
assert.ok(width <= 375, `no horizontal scrolling at 375 px (${width})`);

// ------------------------------------------------------------ a plain member: read-only

const member = await newPage(1024);
await member.goto(env("LINK_MEMBER"));
await member.locator("#role").filter({ hasText: "member" }).waitFor();
await member.locator("#readonly-note").waitFor({ state: "visible" });
await member.locator("#provider-state").filter({ hasText: "verified" }).waitFor();
assert.equal(await member.locator("#provider-form").isVisible(), false);
assert.equal(await member.getByRole("button", { name: "Revoke key" }).isVisible(), false);
await view(member, "API keys");
await errorShown(member, /^Only team owners and admins can do this$/);
expectedNetworkErrors.push(403);
assert.equal(await member.locator("#key-form").isVisible(), false);
await view(member, "Cloud providers");
await shot(member, "member");

// ------------------------------------------------------------ an expired token, then a pasted one

const late = await newPage(1024);
await late.goto(env("LINK_EXPIRED"));
await late.locator("#signin").waitFor({ state: "visible" });
assert.match(await text(late, "#signin-message"), /expired/);
assert.equal(new URL(late.url()).hash, "");
await shot(late, "signin");
await late.getByLabel("Session token").fill(env("TOKEN_OWNER"));
await late.getByRole("button", { name: "Sign in" }).click();
await late.locator("#role").filter({ hasText: "owner" }).waitFor();

await browser.close();

// Chromium reports each 4xx fetch as a console error of its own ("Failed to load
// resource"); those of the refusals this story provoked are expected, nothing else is.
const unexpected = consoleErrors.filter((message) => {
  const match = /^Failed to load resource: the server responded with a status of (\d+)/.exec(message);
  if (!match) return true;
  const at = expectedNetworkErrors.indexOf(Number(match[1]));
  if (at < 0) return true;
  expectedNetworkErrors.splice(at, 1);
  return false;
});
assert.deepEqual(unexpected, [], `no console errors (responses >= 400: ${failedResponses.join(", ")})`);
assert.deepEqual(foreign, [], "no request to another origin");
console.log(JSON.stringify({ rejected, no_key: noKey, sk_preview: sk.slice(0, 8), console_errors: consoleErrors.length }));
