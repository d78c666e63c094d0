// WeChat: the package loaded with loadWx from a code-package path (the
// brotli-compressed wasm), in a runtime with none of the web globals; the
// wx adapters driving it against the local auth server.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { AUTH, becomeMiniProgram, hostFlows, makeHost, sidOf , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ loaderName: "WXWebAssembly" });
const wx = await import(adapterUrl("wx"));
const load = () => wx.loadWx("/tessera/tessera_bg.wasm.br");

hostFlows({ test, kind: "wx", adapters: { storage: wx.wxStorage, fetch: wx.wxFetch, lifecycle: wx.wxLifecycle }, load });

let TokenManager;
before(async () => ({ TokenManager } = await load()));

test("loadWx: one call, through WXWebAssembly and a path in the package; twice loads once; a bad path is a clear error", async () => {
  assert.equal(typeof WebAssembly, "undefined", "no standard WebAssembly here");
  assert.equal(typeof TextDecoder, "undefined", "and no TextDecoder");
  const m = await load();
  assert.equal(typeof m.TokenManager, "function");
  assert.deepEqual(runtime.loads, ["/tessera/tessera_bg.wasm.br"], "loaded once, from the .wasm.br");
  await assert.rejects(wx.loadWx(), /needs the path of tessera_bg\.wasm/);
  const loader = globalThis.WXWebAssembly;
  delete globalThis.WXWebAssembly; // a base library before 2.13
  await assert.rejects(wx.loadWx("/tessera/tessera_bg.wasm.br"), /no WXWebAssembly \(WeChat base library 2\.13 or later\)/);
  globalThis.WXWebAssembly = loader;
  // Non-ASCII goes both ways through the UTF-8 fallback: a key into wasm
  // and back out to wx storage, claims out of wasm.
  const host = makeHost("wx");
  const key = "ключ€😀";
  const tm = new TokenManager({ storage: wx.wxStorage(host), fetch: wx.wxFetch(host), storageKey: key, allowedOrigins: [AUTH] });
  await tm.ready;
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const jwt = [part({ alg: "none" }), part({ sub: "Jürgen 😀", exp }), ""].join(".");
  tm.setTokens({ access_token: jwt, token_type: "Bearer" });
  assert.equal(tm.claims.sub, "Jürgen 😀");
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(host.store.has(key), "written under the non-ASCII key");
  assert.match(host.store.get(key), /"access_token"/);
  tm.dispose();
});

test("a request interrupted by the app going to the background is sent again (retries), with its idempotency key", async () => {
  const host = makeHost("wx");
  const request = host.request;
  let interrupt = 1;
  host.request = (opts) => {
    if (interrupt > 0 && opts.url.endsWith("/api/echo")) {
      interrupt--;
      host.requests.push({ url: opts.url, interrupted: true, header: { ...opts.header } });
      setTimeout(() => opts.fail({ errMsg: "request:fail interrupted" }), 0);
      return { abort() {} };
    }
    return request(opts);
  };
  const tm = new TokenManager({
    storage: wx.wxStorage(host), fetch: wx.wxFetch(host), storageKey: "mp-retry", allowedOrigins: [AUTH],
    retries: 2, idempotencyKeys: true, deviceIdHeader: "X-Device-Id",
  });
  await tm.ready;
  const r = await tm.fetch(AUTH + "/api/echo", { method: "POST", body: "order" });
  assert.equal(r.status, 200);
  const echo = await r.json();
  assert.equal(echo.body, "order");
  assert.equal(echo.device, tm.deviceId, "the device id goes along");
  const sent = host.requests.filter((q) => q.url.endsWith("/api/echo"));
  assert.equal(sent.length, 2, "interrupted once, sent again");
  assert.equal(sent[0].header["Idempotency-Key"], echo.idempotency_key, "the same key on the repeat");
  assert.match(host.store.get("mp-retry.device"), /^[A-Za-z0-9_-]{22,}$/, "the device id is kept in wx storage");
  tm.dispose();
});

test("a backend that is not an OAuth server, through wx", async () => {
  const host = makeHost("wx");
  const send = wx.wxFetch(host);
  const post = async (path, body) => (await send(AUTH + path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } })).json();
  const login = await post("/app/login", { username: "mini-app", password: "password", ttl: 300 });
  assert.equal(login.code, 200);
  const tm = new TokenManager({
    storage: wx.wxStorage(host), fetch: send, storageKey: "mp-app", clientId: "mini-shop", allowedOrigins: [AUTH],
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
  await send(AUTH + "/oauth/revoke", { method: "POST", body: "token=" + tm.accessToken, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  const r = await tm.fetch(AUTH + "/app/user");
  const b = await r.json();
  assert.equal(b.code, 200, "refreshed through refresh() and replayed");
  assert.equal(b.data.sub, "mini-app");
  assert.equal((await (await send(AUTH + "/test/family/" + sid)).json()).refreshes, 1);
  tm.dispose();
});
