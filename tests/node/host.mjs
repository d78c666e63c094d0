// A mini-program runtime, as close to the real ones as can be built in Node:
// the globals they lack are removed before the package is imported
// (fetch, Request, Response, Headers, URL, Web Storage, TextDecoder,
// TextEncoder, AbortController, BroadcastChannel, crypto, performance and
// WebAssembly itself); wasm loads only through a host loader that accepts a
// path inside a code-package folder. Each host object (wx, my, tt, uni,
// Taro) has that host's request and storage shapes, and sends real HTTP to
// the local auth server.
import assert from "node:assert/strict";
import http from "node:http";
import { brotliDecompressSync } from "node:zlib";
import { copyFileSync, mkdtempSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize, sep } from "node:path";

export const AUTH = process.env.TESSERA_AUTH_URL || "http://127.0.0.1:18787";
export const OTHER = AUTH.replace(/:(\d+)$/, (_, p) => ":" + (Number(p) + 1));
const pkg = new URL("../../pkg/", import.meta.url);

const RealWebAssembly = WebAssembly;
let packageDir; // the code package of this runtime (becomeMiniProgram)
const Real = { URL };

/** The package's `adapters/<name>.js`, to import once the globals are gone. */
export const adapterUrl = (name) => new Real.URL(`adapters/${name}.js`, pkg).href;

/** A code package: the folder the app ships, with the package's wasm inside. */
export function codePackage() {
  const dir = mkdtempSync(join(tmpdir(), "tessera-mp-"));
  mkdirSync(join(dir, "tessera"));
  for (const f of ["tessera_bg.wasm", "tessera_bg.wasm.br"]) copyFileSync(new Real.URL(f, pkg), join(dir, "tessera", f));
  return dir;
}

/** A WXWebAssembly/TTWebAssembly: instantiate(path, imports) with a path inside the package only. */
function packageLoader(dir, calls) {
  return {
    async instantiate(path, imports) {
      calls.push(path);
      if (typeof path !== "string" || !path.startsWith("/")) throw new TypeError("instantiate: path must be a code package path");
      const file = normalize(join(dir, path));
      if (!file.startsWith(dir + sep)) throw new TypeError("instantiate: outside the code package");
      let bytes = readFileSync(file);
      if (file.endsWith(".br")) bytes = brotliDecompressSync(bytes);
      else if (!file.endsWith(".wasm")) throw new TypeError("instantiate: only .wasm and .wasm.br");
      return RealWebAssembly.instantiate(bytes, imports);
    },
  };
}

/**
 * Makes this process look like a mini-program runtime: removes the web
 * globals, installs `loaderName` (WXWebAssembly, TTWebAssembly) over a code
 * package, keeps the standard WebAssembly only when `keepWebAssembly`.
 */
export function becomeMiniProgram({ loaderName, keepWebAssembly = false } = {}) {
  const gone = ["fetch", "Request", "Response", "Headers", "URL", "URLSearchParams", "localStorage", "sessionStorage",
    "TextDecoder", "TextEncoder", "AbortController", "AbortSignal", "BroadcastChannel", "crypto", "performance", "navigator"];
  if (!keepWebAssembly) gone.push("WebAssembly");
  for (const name of gone) {
    Object.defineProperty(globalThis, name, { value: undefined, configurable: true, writable: true });
    delete globalThis[name];
    assert.equal(typeof globalThis[name], "undefined", name + " removed");
  }
  const dir = codePackage();
  packageDir = dir;
  const loads = [];
  if (loaderName) globalThis[loaderName] = packageLoader(dir, loads);
  return { dir, loads, wasmBytes: () => readFileSync(join(dir, "tessera", "tessera_bg.wasm")) };
}

/** Real HTTP over node:http; `done(status, headers, body)` or `failed(message)`. */
function send({ url, method, headers, data }, done, failed) {
  const req = http.request(url, { method, headers }, (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (c) => (body += c));
    res.on("end", () => done(res.statusCode, res.headers, body));
  });
  req.on("error", (e) => failed(e.message));
  if (data !== undefined && data !== null) req.write(String(data));
  req.end();
  return { abort: () => req.destroy() };
}

/**
 * A host object with `kind`'s shapes. `offline` makes every request fail the
 * way the host fails one cut off in the background; `show()` runs the
 * `onAppShow` callbacks.
 */
export function makeHost(kind) {
  const store = new Map();
  const shows = new Set();
  const nets = new Set();
  const host = { kind, store, requests: [], offline: false };
  const record = (url, method, header) => host.requests.push({ url, method, header: { ...header } });
  const lifecycle = {
    onAppShow: (f) => shows.add(f),
    offAppShow: (f) => shows.delete(f),
    onAppHide: () => {},
    onNetworkStatusChange: (f) => nets.add(f),
    offNetworkStatusChange: (f) => nets.delete(f),
  };
  host.show = () => shows.forEach((f) => f({ scene: 1001 }));
  host.networkBack = () => nets.forEach((f) => f({ isConnected: true, networkType: "wifi" }));
  host.listeners = () => shows.size + nets.size;
  const offlineFail = (fail, message) => setTimeout(() => fail(message), 0);

  if (kind === "my") {
    // Alipay: one-object storage calls, `headers`, `status`; an HTTP error
    // status goes to fail as error 19 with status, headers and data; files of
    // the code package through getFileSystemManager().readFile.
    Object.assign(host, lifecycle, {
      getFileSystemManager: () => ({
        readFile({ filePath, success, fail }) {
          setTimeout(() => {
            const file = normalize(join(packageDir, filePath));
            if (!file.startsWith(packageDir + sep)) return fail({ error: 10022, errorMessage: "no permission" });
            try {
              const b = readFileSync(file);
              success({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) });
            } catch {
              fail({ error: 10024, errorMessage: "no such file" });
            }
          }, 0);
        },
      }),
      getStorageSync: ({ key }) => ({ data: store.has(key) ? store.get(key) : null }),
      setStorageSync: ({ key, data }) => { store.set(key, data); },
      removeStorageSync: ({ key }) => { store.delete(key); },
      request(o) {
        record(o.url, o.method, o.headers);
        if (host.offline) return offlineFail(o.fail, { error: 12, errorMessage: "网络出错" }), { abort() {} };
        return send({ url: o.url, method: o.method, headers: o.headers, data: o.data },
          (status, headers, data) => status >= 200 && status < 300
            ? o.success({ status, headers, data })
            : o.fail({ error: 19, errorMessage: "http status error", status, headers, data }),
          (m) => o.fail({ error: 12, errorMessage: m }));
      },
    });
    return host;
  }
  // WeChat's shapes (wx, tt, uni; Taro adds a promise): `header`,
  // `statusCode`, every HTTP status to success; "" for a missing key.
  const wxRequest = (o) => {
    record(o.url, o.method, o.header);
    if (host.offline) return offlineFail(o.fail, { errMsg: "request:fail interrupted" }), { abort() {} };
    return send({ url: o.url, method: o.method, headers: o.header, data: o.data },
      (statusCode, header, data) => o.success({ statusCode, header, data, errMsg: "request:ok" }),
      (m) => o.fail({ errMsg: "request:fail " + m }));
  };
  Object.assign(host, lifecycle, {
    getStorageSync: (k) => (store.has(k) ? store.get(k) : ""),
    setStorageSync: (k, v) => { store.set(k, v); },
    removeStorageSync: (k) => { store.delete(k); },
    request: wxRequest,
  });
  if (kind === "taro") {
    host.request = (o) => {
      let task;
      const p = new Promise((resolve, reject) => { task = wxRequest({ ...o, success: resolve, fail: reject }); });
      p.abort = () => task && task.abort && task.abort();
      return p;
    };
  }
  return host;
}

export const sidOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sid;
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `node:test` flows for one host: sign-in, refresh, 401 replay, logout, the background. */
export function hostFlows({ test, kind, adapters, load }) {
  const { storage, fetch, lifecycle } = adapters;
  let TokenManager;
  const tessera = async () => (TokenManager ||= (await load()).TokenManager);

  const manager = async (host, extra = {}) => new (await tessera())({
    storage: storage(host),
    fetch: fetch(host),
    storageKey: "mp-" + kind,
    tokenEndpoint: AUTH + "/oauth/token",
    revocationEndpoint: AUTH + "/oauth/revoke",
    clientId: "tessera-demo",
    allowedOrigins: [AUTH],
    ...extra,
  });
  const signIn = async (host, user, ttl = 300) => {
    const body = `grant_type=password&username=${user}&password=password&client_id=tessera-demo&ttl=${ttl}`;
    const r = await fetch(host)(AUTH + "/oauth/token", { method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.equal(r.status, 200);
    return r.json();
  };
  const family = async (host, sid) => (await fetch(host)(AUTH + "/test/family/" + sid)).json();

  test(`${kind}: sign-in, Bearer to allowed origins only, refresh, 401 replay and logout`, async () => {
    const host = makeHost(kind);
    const tm = await manager(host);
    await tm.ready;
    assert.equal(tm.storage, "adapter");
    tm.setTokens(await signIn(host, "mini-" + kind));
    const sid = sidOf(tm.accessToken);
    await wait(10);
    assert.match(host.store.get("mp-" + kind), /"v":2/, "record written through the host's storage");

    const me = await tm.fetch(AUTH + "/api/me", { method: "POST", body: "hello", headers: { "X-Trace": "t1" } });
    assert.equal(me.status, 200);
    const meBody = await me.json();
    assert.equal(meBody.sub, "mini-" + kind);
    assert.equal(meBody.body, "hello");
    const sent = host.requests.at(-1);
    assert.equal(sent.header["X-Trace"], "t1");
    assert.equal(sent.header.Authorization, "Bearer " + tm.accessToken);

    const echo = await (await tm.fetch(OTHER + "/api/echo")).json();
    assert.equal(echo.authorization, null, "no token to an origin that is not allowed");

    const again = await manager(host);
    await again.ready;
    assert.equal(again.accessToken, tm.accessToken, "a new manager restores the session from host storage");
    again.dispose();

    const before = tm.accessToken;
    await tm.refresh();
    assert.notEqual(tm.accessToken, before);
    assert.equal((await family(host, sid)).refreshes, 1);

    // The server stops accepting the access token: 401, one refresh, the request replayed with its body.
    const revoke = await fetch(host)(AUTH + "/oauth/revoke", { method: "POST", body: "token=" + tm.accessToken, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.equal(revoke.status, 200);
    const replayed = await tm.fetch(AUTH + "/api/me", { method: "POST", body: "again" });
    assert.equal(replayed.status, 200);
    assert.equal((await replayed.json()).body, "again");
    assert.equal((await family(host, sid)).refreshes, 2);

    await tm.logout();
    assert.equal(tm.accessToken, undefined);
    await wait(10);
    assert.equal(host.store.has("mp-" + kind), false, "logout clears host storage");
    assert.equal((await family(host, sid)).revoked, true, "and revokes at the server");
    tm.dispose();
  });

  // The app goes to the background while a refresh is due: every try fails
  // as the host fails a request cut off there, and the back-off grows. Coming
  // back (`come`) must catch up at once, before the next scheduled try.
  async function caughtUp(name, come) {
    const host = makeHost(kind);
    const tm = await manager(host, { storageKey: `mp-${name}-${kind}`, refreshMarginSeconds: 2 });
    const untie = lifecycle(tm, host);
    await tm.ready;
    const errors = [];
    const refreshed = [];
    tm.on("refreshError", (d) => errors.push(d));
    tm.on("tokens", () => refreshed.push(Date.now()));
    const tokens = await signIn(host, `${name}-${kind}`, 4); // due in 2 s
    host.offline = true;
    tm.setTokens(tokens);
    const held = tm.accessToken;
    while (!(errors.length && errors.at(-1).retryInSeconds >= 2)) await wait(20);
    assert.ok(errors.every((e) => e.fatal === false), "network failures are transient");
    assert.equal(tm.accessToken, held, "the tokens are kept");
    assert.equal(host.store.has(`mp-${name}-${kind}`), true, "and stay in host storage");
    const sent = host.requests.length;
    refreshed.length = 0;
    host.offline = false;
    const scheduled = tm.nextRefreshAt;
    assert.ok(scheduled > Date.now(), "the next try is still ahead");
    come(host);
    while (!refreshed.length) await wait(5);
    assert.ok(refreshed[0] < scheduled, `caught up ${scheduled - refreshed[0]} ms before the back-off would have`);
    assert.notEqual(tm.accessToken, held);
    assert.ok(host.requests.slice(sent).some((r) => r.url === AUTH + "/oauth/token"), "through the host's request");
    untie();
    assert.equal(host.listeners(), 0, "untie removes every listener");
    tm.dispose();
    host.show(); // a disposed manager ignores a late show
  }

  test(`${kind}: a refresh that failed in the background keeps the tokens and is caught up on show`, () =>
    caughtUp("bg", (host) => host.show()));

  test(`${kind}: the network coming back (onNetworkStatusChange) also catches up`, () =>
    caughtUp("net", (host) => host.networkBack()));

  test(`${kind}: the adapters keep fetch's and Web Storage's contracts`, async () => {
    const host = makeHost(kind);
    const s = storage(host);
    assert.equal(s.getItem("missing"), null, "a missing key reads as null");
    s.setItem("k", "v");
    assert.equal(s.getItem("k"), "v");
    s.removeItem("k");
    assert.equal(s.getItem("k"), null);
    const r = await fetch(host)(AUTH + "/api/me");
    assert.equal(r.status, 401, "HTTP errors resolve, as with fetch");
    assert.equal(r.ok, false);
    assert.match(r.headers.get("WWW-Authenticate"), /invalid_token/);
    const copy = r.clone();
    assert.deepEqual(await r.json(), await copy.json(), "clone() reads the same body");
    await assert.rejects(fetch(host)("http://127.0.0.1:9/"), TypeError, "a network failure is a TypeError");
    host.offline = true;
    await assert.rejects(fetch(host)(AUTH + "/api/me"), TypeError);
    host.offline = false;
    const aborted = { aborted: true, addEventListener() {}, removeEventListener() {} };
    await assert.rejects(fetch(host)(AUTH + "/api/me", { signal: aborted }), { name: "AbortError" });
    assert.throws(() => fetch(undefined), /needs the .* object/);
    assert.throws(() => storage({}), /needs the .* object/);
  });
}
