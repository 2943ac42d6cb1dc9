// The team settings page: everything through the public API, with the session JWT the host
// product hands over (URL fragment or pasted). No third-party code, no HTML built from
// strings: API data only ever reaches the page as text nodes.

const TOKEN_KEY = "edge-credentials.token";
const TEAM_KEY = "edge-credentials.team";
const PROVIDER = "/api/v1/cloud-providers/comfy-cloud";
const AGENTS_REFRESH_MS = 15000;

const $ = (id) => document.getElementById(id);
const state = { token: null, teams: [], team: null, view: "providers", credential: null };
let agentsTimer = null;

// ---------------------------------------------------------------- small DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function say(message) {
  $("status").textContent = message;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function manager() {
  return state.team && (state.team.role === "owner" || state.team.role === "admin");
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.team) headers["X-Team-ID"] = state.team.id;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", "The service could not be reached. Check your connection and retry.");
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    const failure = new ApiError(response.status, error.type || "error", error.message || `HTTP ${response.status}`);
    if (response.status === 401) signOut(`Your session has ended (${failure.message}). Sign in again.`);
    throw failure;
  }
  return data;
}

/// Every item of a paginated list (pages of 200, at most 1,000 items); `undefined` when a
/// page failed (its error is shown).
async function everyPage(path, field) {
  const items = [];
  let cursor = null;
  do {
    const query = `?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page = await attempt(() => api("GET", `${path}${query}`));
    if (!page) return undefined;
    items.push(...page[field]);
    cursor = page.next_cursor;
  } while (cursor && items.length < 1000);
  return items;
}

/// Runs an action, showing its contract error message if it fails.
async function attempt(action, explain) {
  showError("");
  try {
    return await action();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return undefined;
    const extra = explain ? explain(e) : "";
    showError(extra ? `${e.message}. ${extra}` : e.message);
    return undefined;
  }
}

// ---------------------------------------------------------------- sign-in

function tokenExpired(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.exp === "number" && payload.exp * 1000 <= Date.now();
  } catch {
    return false; // Not ours to judge: the API will.
  }
}

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TEAM_KEY);
  state.token = null;
  state.team = null;
  clearInterval(agentsTimer);
  agentsTimer = null;
  clearNewKey();
  $("app").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("signin-message").textContent = message || "Signed out. Open this page from your product's link, or paste a session token.";
  $("token-input").value = "";
  $("token-input").focus();
}

async function signIn() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return signOut("Open this page from your product's link, or paste the session token it gave you.");
  if (tokenExpired(token)) return signOut("Your session token has expired. Sign in again with a new link or token.");
  state.token = token;
  $("signin").hidden = true;
  say("Loading your teams…");
  const teams = await everyPage("/api/v1/teams", "teams");
  if (!teams) return;
  state.teams = teams;
  if (!state.token) return;
  const select = $("team-select");
  select.replaceChildren(...teams.map((t) => el("option", { value: t.id }, `${t.name}`)));
  $("app").hidden = false;
  if (teams.length === 0) {
    say("You are not in any team yet.");
    return;
  }
  const remembered = sessionStorage.getItem(TEAM_KEY);
  select.value = teams.some((t) => t.id === remembered) ? remembered : teams[0].id;
  await pickTeam(select.value);
}

async function pickTeam(id) {
  state.team = state.teams.find((t) => t.id === id) || null;
  if (!state.team) return;
  sessionStorage.setItem(TEAM_KEY, id);
  clearNewKey();
  $("role").textContent = state.team.role;
  $("readonly-note").hidden = manager();
  for (const node of document.querySelectorAll(".manage")) node.hidden = !manager();
  say(`Team ${state.team.name}`);
  await show(state.view);
}

// ---------------------------------------------------------------- views

async function show(view) {
  state.view = view;
  showError("");
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  clearInterval(agentsTimer);
  agentsTimer = null;
  if (view === "providers") await loadProvider();
  if (view === "keys") await loadKeys(true);
  if (view === "agents") {
    await loadAgents();
    agentsTimer = setInterval(loadAgents, AGENTS_REFRESH_MS);
  }
  if (view === "audit") await loadAudit(true);
}

// Cloud providers

const REASONS = {
  provider_unavailable: "ComfyUI Cloud could not be reached; the key is kept and will be checked again",
  provider_unexpected_response: "ComfyUI Cloud answered unexpectedly; the key is kept",
  provider_rejected: "ComfyUI Cloud rejected the key",
  provider_rejected_on_use: "ComfyUI Cloud rejected the key when it was used",
  verification_disabled: "checking keys is turned off for this deployment",
  not_checked: "not checked yet",
};

function renderProvider(credential) {
  state.credential = credential;
  const facts = $("provider-state");
  const row = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
  if (!credential) {
    facts.replaceChildren(...row("Status", "No key saved"));
  } else {
    const v = credential.verification || {};
    const verification = `${v.state || "unverified"}${v.reason ? `: ${REASONS[v.reason] || v.reason}` : ""}${v.checked_at ? ` (checked ${when(v.checked_at)})` : ""}`;
    facts.replaceChildren(
      ...row("Status", credential.credential_status),
      ...row("Key", credential.key_preview),
      ...row("Verification", verification),
      ...row("Cloud fallback", credential.cloud_fallback ? "on" : "off"),
      ...row("Last used", when(credential.last_used_at)),
      ...row("Updated", when(credential.updated_at)),
    );
    facts.querySelectorAll("dd")[2].dataset.state = v.state || "unverified";
  }
  const active = credential && credential.credential_status === "active";
  $("provider-fallback").checked = Boolean(credential && credential.cloud_fallback);
  $("provider-verify").disabled = !active;
  $("provider-revoke").disabled = !active;
  $("provider-save").textContent = active ? "Replace key" : "Save key";
}

async function loadProvider() {
  try {
    renderProvider(await api("GET", PROVIDER));
  } catch (e) {
    if (e.status === 404) renderProvider(null);
    else if (e.status !== 401) showError(e.message);
  }
}

async function saveKey(event) {
  event.preventDefault();
  const input = $("provider-key");
  say("Checking the key with ComfyUI Cloud…");
  const saved = await attempt(() => api("PUT", PROVIDER, { api_key: input.value, cloud_fallback: $("provider-fallback").checked }));
  input.value = "";
  if (saved) {
    renderProvider(saved);
    say("Key saved.");
  } else {
    say("");
  }
}

async function setFallback() {
  const wanted = $("provider-fallback").checked;
  const saved = await attempt(
    () => api("PATCH", PROVIDER, { cloud_fallback: wanted }),
    (e) =>
      e.status === 409 || e.status === 404
        ? "Fallback needs an active ComfyUI Cloud key to fall back on: save one first."
        : "",
  );
  if (saved) {
    renderProvider(saved);
    say(`Cloud fallback ${saved.cloud_fallback ? "on" : "off"}.`);
  } else {
    $("provider-fallback").checked = !wanted;
  }
}

async function reverify() {
  say("Checking the key with ComfyUI Cloud…");
  const checked = await attempt(() => api("POST", `${PROVIDER}/verify`));
  if (checked) {
    renderProvider(checked);
    say(`Verification: ${checked.verification.state}.`);
  }
}

async function revokeProvider() {
  if (!confirm("Revoke the team's ComfyUI Cloud key? Integrations using it stop working.")) return;
  const revoked = await attempt(() => api("DELETE", PROVIDER));
  if (revoked) {
    renderProvider(revoked);
    say("Key revoked.");
  }
}

// API keys


function keyRow(key) {
  const status = key.revoked_at
    ? el("span", {}, `revoked ${when(key.revoked_at)}`)
    : manager()
      ? el("button", { type: "button", class: "danger", "aria-label": `Revoke ${key.name}`, onclick: () => revokeKey(key) }, "Revoke")
      : el("span", {}, "active");
  return el(
    "tr",
    { "data-key-id": key.id },
    el("td", {}, key.name),
    el("td", {}, key.kind),
    el("td", {}, el("code", {}, key.key_preview)),
    el("td", {}, (key.scopes || []).join(" ") || "read-only"),
    el("td", {}, when(key.last_used_at)),
    el("td", {}, key.expires_at ? when(key.expires_at) : "never"),
    el("td", {}, status),
  );
}

/// A table filled 50 rows at a time from a paginated list, with a "more" button.
function pagedTable(path, field, tableId, moreId, row) {
  let cursor = null;
  return async function load(fresh) {
    if (fresh) cursor = null;
    const query = `?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page = await attempt(() => api("GET", `${path}${query}`));
    const body = $(tableId).querySelector("tbody");
    if (fresh) body.replaceChildren();
    if (!page) return;
    body.append(...page[field].map(row));
    cursor = page.next_cursor;
    $(moreId).hidden = !page.next_cursor;
  };
}

const loadKeys = pagedTable("/api/v1/api-keys", "api_keys", "keys-table", "keys-more", keyRow);

function clearNewKey() {
  $("new-key-value").textContent = "";
  $("new-key").hidden = true;
}

async function createKey(event) {
  event.preventDefault();
  const kind = $("key-kind").value;
  const body = { name: $("key-name").value, kind };
  if (kind === "secret") {
    body.scopes = [...document.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
  }
  const expiry = $("key-expiry").value;
  if (expiry) body.expires_at = new Date(`${expiry}T23:59:59`).toISOString();
  const created = await attempt(() => api("POST", "/api/v1/api-keys", body));
  if (!created) return;
  // The key lives in this text node only: never in storage, the URL or a log.
  $("new-key-value").textContent = created.key;
  $("new-key").hidden = false;
  $("new-key-copy").focus();
  $("key-form").reset();
  syncScopes();
  say(`Key ${created.name} created.`);
  await loadKeys(true);
}

async function copyKey() {
  try {
    await navigator.clipboard.writeText($("new-key-value").textContent);
    say("Key copied to the clipboard.");
  } catch {
    say("Copying was refused by the browser: select the key and copy it by hand.");
  }
}

async function revokeKey(key) {
  if (!confirm(`Revoke the key ${key.name}? Anything using it stops working at once.`)) return;
  const revoked = await attempt(() => api("DELETE", `/api/v1/api-keys/${encodeURIComponent(key.id)}`));
  if (revoked) {
    say(`Key ${key.name} revoked.`);
    await loadKeys(true);
  }
}

function syncScopes() {
  const device = $("key-kind").value === "device";
  $("key-scopes").disabled = device;
  $("key-scopes").hidden = device;
}

// Agents

async function loadAgents() {
  const agents = await everyPage("/api/v1/agents", "agents");
  if (!agents) return;
  $("agents-table").querySelector("tbody").replaceChildren(
    ...(agents.length
      ? agents.map((a) =>
          el(
            "tr",
            { "data-agent-id": a.agent_id },
            el("td", {}, a.name),
            el("td", {}, el("span", { class: a.online ? "online" : "offline" }, a.online ? "Online" : "Offline")),
            el("td", {}, when(a.last_seen_at)),
            el("td", {}, a.version || "unknown"),
          ),
        )
      : [el("tr", {}, el("td", { colspan: "4" }, "No agents: create a device key for each local agent."))]),
  );
  $("agents-refreshed").textContent = `Last refreshed ${new Date().toLocaleTimeString()}.`;
}

// Audit

const loadAudit = pagedTable("/api/v1/audit-events", "audit_events", "audit-table", "audit-more", (e) =>
  el(
    "tr",
    {},
    el("td", {}, when(e.created_at)),
    el("td", {}, el("code", {}, e.action)),
    el("td", {}, `${e.actor_kind} ${e.actor_id}`),
    el("td", {}, e.subject || e.provider || ""),
  ),
);

// ---------------------------------------------------------------- wiring

function start() {
  takeTokenFromFragment();
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    signIn();
  });
  $("signout").addEventListener("click", () => signOut());
  $("team-select").addEventListener("change", (event) => pickTeam(event.target.value));
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("provider-form").addEventListener("submit", saveKey);
  $("provider-fallback").addEventListener("change", setFallback);
  $("provider-verify").addEventListener("click", reverify);
  $("provider-revoke").addEventListener("click", revokeProvider);
  $("key-form").addEventListener("submit", createKey);
  $("key-kind").addEventListener("change", syncScopes);
  $("new-key-copy").addEventListener("click", copyKey);
  $("new-key-done").addEventListener("click", clearNewKey);
  $("keys-more").addEventListener("click", () => loadKeys(false));
  $("audit-more").addEventListener("click", () => loadAudit(false));
  signIn();
}

start();
