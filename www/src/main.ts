// The Tessera demo. Everything the page knows about the session comes from
// the manager: its getters, its events and tm.fetch.
import init, { TokenManager, type TokenManagerEventMap, type TokenManagerOptions } from "tessera";

type StorageName = "localStorage" | "sessionStorage" | "memory";
type BackendName = "oauth" | "app";

const $ = <T extends HTMLElement>(sel: string): T => {
  const el = document.querySelector<T>(sel);
  if (!el) throw new Error("missing element " + sel);
  return el;
};

const PREF = "tessera-demo-storage";
const BACKEND_PREF = "tessera-demo-backend";
let backend: BackendName = "oauth";
let tm: TokenManager;
let offs: Array<() => void> = [];

function log(kind: string, text: string): void {
  const li = document.createElement("li");
  li.className = kind;
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date().toLocaleTimeString();
  li.append(t, `${kind}: ${text}`);
  $("#log").prepend(li);
}

/** A short, harmless name for a token: its jti claim, never the token. */
function tokenName(): string {
  const jti = tm.claims?.jti;
  return typeof jti === "string" ? jti : "opaque token";
}

function seconds(ms: number | undefined): string {
  if (ms === undefined) return "-";
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`;
}

function render(): void {
  const signedIn = tm.accessToken !== undefined;
  $("#signin-card").hidden = signedIn;
  $("#session-card").hidden = !signedIn;
  $("#faults-card").hidden = !signedIn;
  const status = $("#status");
  status.textContent = signedIn ? (tm.isExpired() ? "expired" : "signed in") : "signed out";
  status.classList.toggle("on", signedIn && !tm.isExpired());
  $("#claims").textContent = signedIn ? JSON.stringify(tm.claims ?? "opaque token (no claims)", null, 2) : "-";
  $("#storage-now").textContent = tm.storage;
  $("#device-id").textContent = tm.deviceId ?? "-";
  for (const el of document.querySelectorAll<HTMLElement>("[data-backend]")) el.hidden = el.dataset.backend !== backend;
  tick();
}

function tick(): void {
  const now = Date.now();
  $("#expires-in").textContent = tm.expiresAt === undefined ? "-" : seconds(tm.expiresAt - now);
  $("#refresh-in").textContent = tm.nextRefreshAt === undefined ? "-" : seconds(tm.nextRefreshAt - now);
  const skew = tm.clockSkewMs;
  $("#skew").textContent = skew === 0 ? "none" : `${Math.round(skew / 1000)} s`;
}

function storageChoice(): StorageName {
  const v = localStorage.getItem(PREF);
  return v === "sessionStorage" || v === "memory" ? v : "localStorage";
}

function backendChoice(): BackendName {
  return localStorage.getItem(BACKEND_PREF) === "app" ? "app" : "oauth";
}

/** The JSON API's answers: HTTP 200 with a code, data or a message. */
type AppAnswer = { code: number; msg: string; data?: { token: string; refresh_token: string } };

async function appPost(path: string, body: unknown): Promise<AppAnswer> {
  const res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return (await res.json()) as AppAnswer;
}

/** Options for the backend in use. */
function backendOptions(): Partial<TokenManagerOptions> {
  if (backend === "oauth") {
    return {
      storageKey: "tessera-demo",
      tokenEndpoint: location.origin + "/oauth/token",
      revocationEndpoint: location.origin + "/oauth/revoke",
      clientId: "tessera-demo",
      deviceIdHeader: "X-Device-Id",
    };
  }
  return {
    storageKey: "tessera-demo-app",
    clientId: "demo-shop",
    // The app's own refresh route: a JSON body, a code in the answer.
    refresh: async ({ refreshToken, signal }) => {
      const b = await appPost("/app/refresh", { refresh_token: refreshToken });
      if (signal.aborted) throw new Error("aborted");
      if (b.code === 401) throw Object.assign(new Error(b.msg), { fatal: true });
      if (b.code !== 200 || !b.data) throw new Error(b.msg);
      return { access_token: b.data.token, refresh_token: b.data.refresh_token };
    },
    // An expired or refused token comes back as HTTP 200 {"code": 403}.
    isUnauthorized: async (response) => ((await response.json()) as AppAnswer).code === 403,
    idempotencyKeys: true,
    retries: 2,
    deviceIdHeader: "X-Device-Id",
  };
}

function start(storage: StorageName): void {
  offs.forEach((off) => off());
  offs = [];
  tm?.dispose();
  tm = new TokenManager({ storage, refreshMarginSeconds: 60, ...backendOptions() });
  const on = <K extends keyof TokenManagerEventMap>(name: K, f: (d: TokenManagerEventMap[K]) => void) => offs.push(tm.on(name, f));
  on("tokens", (d) => {
    log("tokens", `${tokenName()}, expires ${new Date(d.expiresAt ?? 0).toLocaleTimeString()}`);
    render();
  });
  on("refreshError", (d) => {
    log("refreshError", d.fatal ? `fatal: ${d.error.message}` : `${d.error.message}; retrying in ${d.retryInSeconds ?? "?"} s`);
    render();
  });
  on("expired", () => {
    log("expired", "the session ended; sign in again");
    render();
  });
  on("logout", (d) => {
    const why = { user: "signed out", remote: "signed out in another tab", duplicate: "this tab is a copy of another: signed out here, the session stays in the original tab" };
    log("logout", why[d.reason]);
    render();
  });
  on("storageError", (d) => {
    log("storageError", `${d.storage} failed; keeping tokens in ${d.fallback}`);
    render();
  });
  tm.ready.then(() => {
    if (tm.accessToken) log("restored", `${tokenName()} from ${tm.storage}`);
    render();
  });
}

async function signIn(form: HTMLFormElement): Promise<void> {
  const data = new FormData(form);
  if (backend === "app") {
    const b = await appPost("/app/login", { username: data.get("username"), password: data.get("password"), ttl: Number(data.get("ttl")) });
    if (b.code !== 200 || !b.data) {
      log("error", `sign-in failed: ${b.msg}`);
      return;
    }
    tm.setTokens({ access_token: b.data.token, refresh_token: b.data.refresh_token });
    return;
  }
  const body = new URLSearchParams({
    grant_type: "password",
    client_id: "tessera-demo",
    username: String(data.get("username")),
    password: String(data.get("password")),
    ttl: String(data.get("ttl")),
  });
  const res = await fetch("/oauth/token", { method: "POST", body });
  const json: unknown = await res.json();
  if (!res.ok) {
    const e = json as { error_description?: string; error?: string };
    log("error", e.error_description ?? e.error ?? `sign-in failed (${res.status})`);
    return;
  }
  try {
    tm.setTokens(json as Parameters<TokenManager["setTokens"]>[0]);
  } catch (e) {
    log("error", (e as Error).message);
  }
}

async function callApi(): Promise<void> {
  const out = $("#api-result");
  out.textContent = "…";
  try {
    const path = backend === "app" ? "/app/user" : "/api/me";
    const res = await tm.fetch(path);
    const text = await res.text();
    out.textContent = `HTTP ${res.status}\n${text}`;
    log("api", `${path} answered ${res.status}`);
  } catch (e) {
    out.textContent = (e as Error).message;
    log("error", (e as Error).message);
  }
}

async function placeOrder(): Promise<void> {
  const out = $("#api-result");
  try {
    const res = await tm.fetch("/app/orders", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ item: "book" }) });
    const text = await res.text();
    out.textContent = `HTTP ${res.status}\n${text}`;
    log("api", `/app/orders answered ${res.status}: ${text}`);
  } catch (e) {
    out.textContent = (e as Error).message;
    log("error", (e as Error).message);
  }
}

async function fault(kind: string): Promise<void> {
  const sid = tm.claims?.sid;
  await fetch("/test/fault", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ kind, sid, delay_ms: 3000 }),
  });
  log("fault", `the next refresh will get: ${kind}`);
}

async function main(): Promise<void> {
  await init();
  const choice = storageChoice();
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="storage"]')) {
    r.checked = r.value === choice;
    r.addEventListener("change", () => {
      localStorage.setItem(PREF, r.value);
      log("storage", `now using ${r.value}; sign in again if the session is not there`);
      start(r.value as StorageName);
      render();
    });
  }
  backend = backendChoice();
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="backend"]')) {
    r.checked = r.value === backend;
    r.addEventListener("change", () => {
      localStorage.setItem(BACKEND_PREF, r.value);
      backend = r.value as BackendName;
      log("backend", r.value === "app" ? "now the JSON API: sign in there" : "now the OAuth server: sign in there");
      start(storageChoice());
      render();
    });
  }
  start(choice);
  $<HTMLFormElement>("#signin").addEventListener("submit", (e) => {
    e.preventDefault();
    void signIn(e.target as HTMLFormElement);
  });
  $("#call-api").addEventListener("click", () => void callApi());
  $("#place-order").addEventListener("click", () => void placeOrder());
  $("#lose-order").addEventListener("click", async () => {
    await fetch("/test/orders/lose-next", { method: "POST" });
    log("fault", "the next order is made but its answer is lost (503): the request is repeated with the same Idempotency-Key");
  });
  $("#refresh-now").addEventListener("click", () => {
    tm.refresh().catch(() => {}); // the refreshError event tells the story
  });
  $("#signout").addEventListener("click", () => void tm.logout());
  $("#revoke-access").addEventListener("click", async () => {
    const token = tm.accessToken;
    if (!token) return;
    await fetch("/oauth/revoke", { method: "POST", body: new URLSearchParams({ token, client_id: "tessera-demo" }) });
    log("fault", `revoked ${tokenName()} at the server; the next API call is refused (${backend === "app" ? 'HTTP 200 {"code": 403}' : "401"}), refreshes once and replays`);
  });
  for (const b of document.querySelectorAll<HTMLButtonElement>("[data-fault]")) {
    b.addEventListener("click", () => void fault(b.dataset.fault ?? ""));
  }
  $("#clear-log").addEventListener("click", () => ($("#log").textContent = ""));
  setInterval(tick, 250);
  render();
  document.body.dataset.ready = "true";
}

main().catch((e) => log("error", (e as Error).message));
