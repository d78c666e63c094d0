// The mini-program adapters driving the real wasm build in Node, against the
// real local auth server. The runtime is made to look like WeChat's: no
// fetch, Request, Headers, URL or localStorage; a `wx` object whose request
// performs real HTTP and whose storage is a Map.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";

const AUTH = process.env.TESSERA_AUTH_URL || "http://127.0.0.1:18787";
const OTHER = AUTH.replace(/:(\d+)$/, (_, p) => ":" + (Number(p) + 1));
const pkg = new URL("../../pkg/", import.meta.url);
const GLUE = new URL("tessera.js", pkg).href;
const WASM = new URL("tessera_bg.wasm", pkg);
const ADAPTERS = new URL("adapters/wx.js", pkg).href;

// What a mini-program runtime lacks.
for (const name of ["fetch", "Request", "Response", "Headers", "URL", "localStorage", "sessionStorage"]) {
  delete globalThis[name];
}

/** A wx object: request over node:http (every status reaches success), storage in a Map. */
function fakeWx() {
  const store = new Map();
  return {
    store,
    requests: [],
    getStorageSync: (k) => (store.has(k) ? store.get(k) : ""),
    setStorageSync: (k, v) => { store.set(k, v); },
    removeStorageSync: (k) => { store.delete(k); },
    request(opts) {
      this.requests.push({ url: opts.url, method: opts.method, header: { ...opts.header } });
      const req = http.request(opts.url, { method: opts.method, headers: opts.header }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (body += c));
        res.on("end", () => opts.success({ statusCode: res.statusCode, header: res.headers, data: body }));
      });
      req.on("error", (e) => opts.fail({ errMsg: "request:fail " + e.message }));
      if (opts.data !== undefined && opts.data !== null) req.write(String(opts.data));
      req.end();
      return { abort: () => req.destroy() };
    },
  };
}

let TokenManager, wxStorage, wxFetch;
before(async () => {
  const tessera = await import(GLUE);
  // No fetch here: instantiate from bytes, as a mini-program does from its package.
  tessera.initSync({ module: readFileSync(WASM) });
  TokenManager = tessera.TokenManager;
  ({ wxStorage, wxFetch } = await import(ADAPTERS));
});

function manager(wx) {
  return new TokenManager({
    storage: wxStorage(wx),
    fetch: wxFetch(wx),
    storageKey: "mp",
    tokenEndpoint: AUTH + "/oauth/token",
    revocationEndpoint: AUTH + "/oauth/revoke",
    clientId: "tessera-demo",
    allowedOrigins: [AUTH],
  });
}

async function signIn(wx, user) {
  const send = wxFetch(wx);
  const body = `grant_type=password&username=${user}&password=password&client_id=tessera-demo&ttl=300`;
  const r = await send(AUTH + "/oauth/token", { method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(r.status, 200);
  return r.json();
}

async function family(wx, sid) {
  const r = await wxFetch(wx)(AUTH + "/test/family/" + sid);
  return r.json();
}

const sidOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sid;

test("sign-in, authenticated request, refresh, 401 replay and logout through wx", async () => {
  const wx = fakeWx();
  const tm = manager(wx);
  await tm.ready;
  assert.equal(tm.storage, "adapter");
  tm.setTokens(await signIn(wx, "mini"));
  const sid = sidOf(tm.accessToken);
  await new Promise((r) => setTimeout(r, 10));
  assert.match(wx.store.get("mp"), /"v":2/, "record written through wx.setStorageSync");

  // Authenticated request: Bearer attached, method/body/headers passed through.
  const me = await tm.fetch(AUTH + "/api/me", { method: "POST", body: "hello", headers: { "X-Trace": "t1" } });
  assert.equal(me.status, 200);
  const meBody = await me.json();
  assert.equal(meBody.sub, "mini");
  assert.equal(meBody.body, "hello");
  const sent = wx.requests.at(-1);
  assert.equal(sent.header["X-Trace"], "t1");
  assert.equal(sent.header.Authorization, "Bearer " + tm.accessToken);

  // Never to another origin.
  const echo = await (await tm.fetch(OTHER + "/api/echo")).json();
  assert.equal(echo.authorization, null);

  // A new manager over the same wx storage restores the session.
  const again = manager(wx);
  await again.ready;
  assert.equal(again.accessToken, tm.accessToken);
  again.dispose();

  // Refresh with rotation.
  const before = tm.accessToken;
  await tm.refresh();
  assert.notEqual(tm.accessToken, before);
  assert.equal((await family(wx, sid)).refreshes, 1);

  // A revoked access token: 401, one refresh, the request replayed with its body.
  const revoke = await wxFetch(wx)(AUTH + "/oauth/revoke", { method: "POST", body: "token=" + tm.accessToken, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(revoke.status, 200);
  const replayed = await tm.fetch(AUTH + "/api/me", { method: "POST", body: "again" });
  assert.equal(replayed.status, 200);
  assert.equal((await replayed.json()).body, "again");
  assert.equal((await family(wx, sid)).refreshes, 2);

  // Logout clears wx storage and revokes at the server.
  await tm.logout();
  assert.equal(tm.accessToken, undefined);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(wx.store.has("mp"), false);
  assert.equal((await family(wx, sid)).revoked, true);
  tm.dispose();
});

test("wx network failures are transient refresh errors and keep the tokens", async () => {
  const wx = fakeWx();
  const tm = new TokenManager({
    storage: wxStorage(wx),
    fetch: wxFetch(wx),
    storageKey: "mp-offline",
    tokenEndpoint: "http://127.0.0.1:9/oauth/token", // nothing listens on the discard port
    clientId: "tessera-demo",
    allowedOrigins: [AUTH],
    autoRefresh: false,
  });
  tm.setTokens(await signIn(wx, "offline"));
  const held = tm.accessToken;
  const errors = [];
  tm.on("refreshError", (d) => errors.push(d));
  await assert.rejects(tm.refresh(), (e) => e.fatal === false && /network/.test(e.message));
  assert.equal(tm.accessToken, held);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].fatal, false);
  tm.dispose();
});

test("the wx adapters behave like fetch and Web Storage", async () => {
  const wx = fakeWx();
  const s = wxStorage(wx);
  assert.equal(s.getItem("missing"), null, "wx's empty string means missing");
  s.setItem("k", "v");
  assert.equal(s.getItem("k"), "v");
  s.removeItem("k");
  assert.equal(s.getItem("k"), null);
  const r = await wxFetch(wx)(AUTH + "/api/me");
  assert.equal(r.status, 401, "HTTP errors resolve, as with fetch");
  assert.equal(r.ok, false);
  assert.match(r.headers.get("WWW-Authenticate"), /invalid_token/);
  await assert.rejects(wxFetch(wx)("http://127.0.0.1:9/"), TypeError);
  assert.throws(() => wxFetch(undefined), /wx object/);
});

test("a request interrupted by the app going to the background is sent again (retries)", async () => {
  const wx = fakeWx();
  const request = wx.request.bind(wx);
  let interrupt = 1;
  wx.request = (opts) => {
    if (interrupt > 0 && opts.url.endsWith("/api/echo")) {
      interrupt--;
      wx.requests.push({ url: opts.url, interrupted: true, header: { ...opts.header } });
      setTimeout(() => opts.fail({ errMsg: "request:fail interrupted" }), 0);
      return { abort() {} };
    }
    return request(opts);
  };
  const tm = new TokenManager({
    storage: wxStorage(wx), fetch: wxFetch(wx), storageKey: "mp-retry", allowedOrigins: [AUTH],
    retries: 2, idempotencyKeys: true, deviceIdHeader: "X-Device-Id",
  });
  await tm.ready;
  const r = await tm.fetch(AUTH + "/api/echo", { method: "POST", body: "order" });
  assert.equal(r.status, 200);
  const echo = await r.json();
  assert.equal(echo.body, "order");
  assert.equal(echo.device, tm.deviceId, "the device id goes along");
  const sent = wx.requests.filter((q) => q.url.endsWith("/api/echo"));
  assert.equal(sent.length, 2, "interrupted once, sent again");
  assert.equal(sent[0].header["Idempotency-Key"], echo.idempotency_key, "the same key on the repeat");
  assert.match(wx.store.get("mp-retry.device"), /^[A-Za-z0-9_-]{22,}$/, "the device id is kept in wx storage");
  tm.dispose();
});

test("a backend that is not an OAuth server, through wx", async () => {
  const wx = fakeWx();
  const send = wxFetch(wx);
  const post = async (path, body, headers = {}) => (await send(AUTH + path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json", ...headers } })).json();
  const login = await post("/app/login", { username: "mini-app", password: "password", ttl: 300 });
  assert.equal(login.code, 200);
  const tm = new TokenManager({
    storage: wxStorage(wx), fetch: send, storageKey: "mp-app", clientId: "mini-shop", allowedOrigins: [AUTH],
    refresh: async ({ refreshToken }) => {
      const b = await post("/app/refresh", { refresh_token: refreshToken });
      if (b.code === 401) throw Object.assign(new Error(b.msg), { fatal: true });
      if (b.code !== 200) throw new Error(b.msg);
      return { access_token: b.data.token, refresh_token: b.data.refresh_token };
    },
    isUnauthorized: async (response) => (await response.json()).code === 403,
  });
  await tm.ready;
  tm.setTokens({ access_token: login.data.token, refresh_token: login.data.refresh_token });
  const sid = sidOf(tm.accessToken);
  // The server stops accepting the access token: HTTP 200 with code 403.
  await send(AUTH + "/oauth/revoke", { method: "POST", body: "token=" + tm.accessToken, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  const r = await tm.fetch(AUTH + "/app/user");
  const b = await r.json();
  assert.equal(b.code, 200, "refreshed through refresh() and replayed");
  assert.equal(b.data.sub, "mini-app");
  assert.equal((await family(wx, sid)).refreshes, 1);
  tm.dispose();
});
