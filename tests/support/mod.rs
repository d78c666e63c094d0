//! Helpers shared by the browser tests: JS glue for things that are plain
//! JavaScript anyway (HTTP to the auth server, storage adapters, sleeps).
#![allow(dead_code)]

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The local auth server, started by `./dev test`.
pub const AUTH: &str = match option_env!("TESSERA_AUTH_URL") {
    Some(u) => u,
    None => "http://127.0.0.1:18787",
};

#[wasm_bindgen(inline_js = r#"
export function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }
export async function login(base, user, ttl) {
  const body = new URLSearchParams({ grant_type: "password", username: user, password: "password", client_id: "tessera-demo", ttl: String(ttl) });
  const r = await fetch(base + "/oauth/token", { method: "POST", body });
  if (!r.ok) throw new Error("login failed: " + r.status);
  return r.json();
}
export async function getJson(url) { const r = await fetch(url); return r.json(); }
export async function postJson(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return r.status;
}
export async function postForm(url, fields) {
  const r = await fetch(url, { method: "POST", body: new URLSearchParams(fields) });
  return r.status;
}
export function sidOf(token) {
  const p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(p)).sid;
}
export function pusher(log, name) { return d => { log.push([name, d]); }; }
// A Map-backed adapter whose methods answer through Promises after a delay,
// like Capacitor Preferences or a native bridge; writes are recorded in order.
export function asyncAdapter(initial, delayMs) {
  const map = new Map(Object.entries(initial || {}));
  const writes = [];
  const later = v => new Promise(r => setTimeout(() => r(v), delayMs));
  return {
    map, writes,
    getItem: k => later(map.has(k) ? map.get(k) : null),
    setItem: (k, v) => { const d = later(); writes.push(["set", k, v]); return d.then(() => { map.set(k, v); }); },
    removeItem: k => { writes.push(["remove", k]); return later().then(() => { map.delete(k); }); },
  };
}
export function syncAdapter() {
  const map = new Map();
  return { map, getItem: k => map.has(k) ? map.get(k) : null, setItem: (k, v) => { map.set(k, v); }, removeItem: k => { map.delete(k); } };
}
export function throwingAdapter() {
  const boom = () => { throw new DOMException("storage is disabled", "SecurityError"); };
  return { getItem: boom, setItem: boom, removeItem: boom };
}
// Makes Web Storage writes throw, as Safari private mode and full quotas do.
export function breakStorageWrites() {
  const orig = Storage.prototype.setItem;
  Storage.prototype.setItem = function () { throw new DOMException("quota exceeded", "QuotaExceededError"); };
  return () => { Storage.prototype.setItem = orig; };
}
// Makes window.localStorage itself throw on access, as a webview with DOM storage off.
export function hideLocalStorage() {
  const desc = Object.getOwnPropertyDescriptor(window, "localStorage");
  Object.defineProperty(window, "localStorage", { configurable: true, get() { return null; } });
  return () => Object.defineProperty(window, "localStorage", desc);
}
export function fakeJwt(claims) {
  const b = o => btoa(unescape(encodeURIComponent(JSON.stringify(o)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return b({ alg: "HS256", typ: "JWT" }) + "." + b(claims) + ".c2ln";
}
// Moves the device clock by offsetMs, as a device whose clock is off has it:
// Date.now and performance.timeOrigin (set from the wall clock when the page
// starts) alike. Returns a function that restores both.
export function shiftClock(offsetMs) {
  const real = Date.now;
  const origin = performance.timeOrigin;
  Date.now = () => real.call(Date) + offsetMs;
  Object.defineProperty(performance, "timeOrigin", { configurable: true, get: () => origin + offsetMs });
  return () => { Date.now = real; delete performance.timeOrigin; };
}
// Sets the wall clock back (or forward) by offsetMs and nothing else, as an
// NTP correction or a user does while the page runs.
export function jumpWallClock(offsetMs) {
  const real = Date.now;
  Date.now = () => real.call(Date) + offsetMs;
  return () => { Date.now = real; };
}
// Swallows every setTimeout made while f runs, as a sleeping laptop or a
// throttled background tab loses timers.
export function withoutTimers(f) {
  const real = globalThis.setTimeout;
  globalThis.setTimeout = () => 0;
  try { return f(); } finally { globalThis.setTimeout = real; }
}
export function dispatch(targetName, type) {
  const target = targetName === "document" ? document : window;
  target.dispatchEvent(new Event(type));
}
// Hides navigator.locks, as on hosts without Web Locks.
export function hideWebLocks() {
  Object.defineProperty(navigator, "locks", { configurable: true, value: undefined });
  return () => { delete navigator.locks; };
}
// A transport that performs token endpoint requests for real but hands the
// answer back only when release() is called: the test decides exactly when
// a refresh answer lands (in the same task as a logout, say).
export function gatedFetch() {
  let open;
  const gate = new Promise((r) => { open = r; });
  const f = async (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    f.calls.push(url);
    const resp = await fetch(input, init);
    if (url.includes("/oauth/token")) await gate;
    return resp;
  };
  f.calls = [];
  f.release = () => open();
  return f;
}
// A transport that answers every request at once with {} and records what
// was sent: the URL exactly as given, and the headers as a plain object.
export function recordingFetch() {
  const f = async (input, init) => {
    const url = typeof input === "string" ? input : (input.url || String(input));
    const headers = {};
    const add = (h) => {
      if (!h) return;
      if (typeof h.forEach === "function" && !Array.isArray(h)) h.forEach((v, k) => { headers[k.toLowerCase()] = v; });
      else if (Array.isArray(h)) for (const [k, v] of h) headers[String(k).toLowerCase()] = v;
      else for (const k of Object.keys(h)) headers[k.toLowerCase()] = h[k];
    };
    if (typeof input !== "string" && input && input.headers) add(input.headers);
    if (init) add(init.headers);
    f.sent.push({ url, headers });
    return { status: 200, headers: { get: () => null }, text: async () => "{}" };
  };
  f.sent = [];
  return f;
}
// Hides the Fetch API's Request constructor, as in a mini-program.
export function hideRequest() {
  const saved = globalThis.Request;
  delete globalThis.Request;
  return () => { globalThis.Request = saved; };
}
// Holds the Web Lock `name` until the returned function is called, as a
// frozen tab holding it would.
export function holdLock(name) {
  let release;
  const held = new Promise((r) => { release = r; });
  return new Promise((granted) => {
    navigator.locks.request(name, () => { granted(() => release()); return held; });
  });
}
// Holds the Web Lock `name` from a worker (another context, as another tab
// is); terminating the worker releases it. Resolves once it is held.
export function holdLockElsewhere(name) {
  const src = "navigator.locks.request(" + JSON.stringify(name) + ", () => { postMessage('held'); return new Promise(() => {}); });";
  const w = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })));
  return new Promise((r) => { w.onmessage = () => r(() => w.terminate()); });
}
// Many apps shim same-tab storage events: every setItem also dispatches a
// synthetic "storage" event in this page.
export function storageEventShim() {
  const orig = Storage.prototype.setItem;
  const origRemove = Storage.prototype.removeItem;
  Storage.prototype.setItem = function (k, v) { orig.call(this, k, v); window.dispatchEvent(new StorageEvent("storage", { key: k, newValue: v })); };
  Storage.prototype.removeItem = function (k) { origRemove.call(this, k); window.dispatchEvent(new StorageEvent("storage", { key: k, newValue: null })); };
  return () => { Storage.prototype.setItem = orig; Storage.prototype.removeItem = origRemove; };
}
// Collects the messages of uncaught errors from now on.
export function catchErrors() {
  const seen = [];
  window.addEventListener("error", (e) => seen.push(String(e.message || e.error)));
  return seen;
}
// Makes Web Storage writes of `key` throw from now on (a quota error after
// start-up); other keys still work.
export function breakWritesOf(key) {
  const orig = Storage.prototype.setItem;
  Storage.prototype.setItem = function (k, v) {
    if (k === key) throw new DOMException("quota exceeded", "QuotaExceededError");
    return orig.call(this, k, v);
  };
  return () => { Storage.prototype.setItem = orig; };
}
// The JSON backend (auth server /app/*): sign-in, and the two functions an
// app passes to Tessera for it.
export async function appLogin(base, user, ttl) {
  const r = await fetch(base + "/app/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: user, password: "password", ttl }) });
  const b = await r.json();
  if (b.code !== 200) throw new Error("login failed: " + b.msg);
  return { access_token: b.data.token, refresh_token: b.data.refresh_token };
}
export function appRefresh(base, log) {
  return async ({ refreshToken, signal }) => {
    if (log) log.push(signal);
    const r = await fetch(base + "/app/refresh", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: refreshToken }), signal });
    const b = await r.json();
    if (b.code === 401) throw Object.assign(new Error(b.msg), { fatal: true });
    if (b.code !== 200) throw new Error(b.msg);
    return { access_token: b.data.token, refresh_token: b.data.refresh_token };
  };
}
export function appIsUnauthorized() {
  return async (response) => (await response.json()).code === 403;
}
// A refresh function that never answers, recording the signals it was given.
export function hangingRefresh(log) {
  return ({ signal }) => { log.push(signal); return new Promise(() => {}); };
}
// A transport whose first `failures` calls to URLs containing `part` reject
// as fetch does offline (or as wx.request does when the app goes to the
// background); the others go to the network. Records every call.
export function flakyFetch(part, failures) {
  let left = failures;
  const f = (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    f.calls.push(url);
    if (url.includes(part) && left > 0) { left--; return Promise.reject(new TypeError("Failed to fetch")); }
    return fetch(input, init);
  };
  f.calls = [];
  return f;
}
// Sends `init` to `url` with plain fetch: what an attacker holding a copied
// token (and maybe a proof) could do.
export async function rawStatus(url, headers) {
  const r = await fetch(url, { headers });
  return r.status;
}
// Hides crypto.subtle, as on a host without WebCrypto.
export function hideSubtle() {
  Object.defineProperty(crypto, "subtle", { configurable: true, value: undefined });
  return () => { delete crypto.subtle; };
}
// Whether IndexedDB holds a DPoP key under `name`.
export function dpopKeyStored(name) {
  return new Promise((resolve) => {
    const open = indexedDB.open("tessera-dpop", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onsuccess = () => {
      const req = open.result.transaction("keys", "readonly").objectStore("keys").get(name);
      req.onsuccess = () => { resolve(req.result !== undefined); open.result.close(); };
      req.onerror = () => resolve(false);
    };
    open.onerror = () => resolve(false);
  });
}
export function dpopKeyDelete(name) {
  return new Promise((resolve) => {
    const open = indexedDB.open("tessera-dpop", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onsuccess = () => {
      const req = open.result.transaction("keys", "readwrite").objectStore("keys").delete(name);
      req.onsuccess = () => { resolve(true); open.result.close(); };
      req.onerror = () => resolve(false);
    };
    open.onerror = () => resolve(false);
  });
}
export function countingFetch() {
  const f = (input, init) => { f.calls.push(typeof input === "string" ? input : input.url); return fetch(input, init); };
  f.calls = [];
  return f;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = sleep)]
    fn sleep_js(ms: f64) -> Promise;
    #[wasm_bindgen(js_name = login)]
    fn login_js(base: &str, user: &str, ttl: u32) -> Promise;
    #[wasm_bindgen(js_name = getJson)]
    fn get_json_js(url: &str) -> Promise;
    #[wasm_bindgen(js_name = postJson)]
    fn post_json_js(url: &str, body: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = postForm)]
    fn post_form_js(url: &str, fields: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = sidOf)]
    pub fn sid_of(token: &str) -> String;
    fn pusher(log: &js_sys::Array, name: &str) -> JsValue;
    #[wasm_bindgen(js_name = asyncAdapter)]
    pub fn async_adapter(initial: &JsValue, delay_ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = syncAdapter)]
    pub fn sync_adapter() -> JsValue;
    #[wasm_bindgen(js_name = throwingAdapter)]
    pub fn throwing_adapter() -> JsValue;
    #[wasm_bindgen(js_name = breakStorageWrites)]
    pub fn break_storage_writes() -> js_sys::Function;
    #[wasm_bindgen(js_name = hideLocalStorage)]
    pub fn hide_local_storage() -> js_sys::Function;
    #[wasm_bindgen(js_name = fakeJwt)]
    pub fn fake_jwt(claims: &JsValue) -> String;
    #[wasm_bindgen(js_name = shiftClock)]
    pub fn shift_clock(offset_ms: f64) -> js_sys::Function;
    #[wasm_bindgen(js_name = jumpWallClock)]
    pub fn jump_wall_clock(offset_ms: f64) -> js_sys::Function;
    #[wasm_bindgen(js_name = withoutTimers)]
    pub fn without_timers(f: &js_sys::Function) -> JsValue;
    pub fn dispatch(target: &str, kind: &str);
    #[wasm_bindgen(js_name = hideWebLocks)]
    pub fn hide_web_locks() -> js_sys::Function;
    #[wasm_bindgen(js_name = countingFetch)]
    pub fn counting_fetch() -> js_sys::Function;
    #[wasm_bindgen(js_name = appLogin)]
    fn app_login_js(base: &str, user: &str, ttl: u32) -> Promise;
    #[wasm_bindgen(js_name = appRefresh)]
    pub fn app_refresh(base: &str, log: &JsValue) -> js_sys::Function;
    #[wasm_bindgen(js_name = appIsUnauthorized)]
    pub fn app_is_unauthorized() -> js_sys::Function;
    #[wasm_bindgen(js_name = hangingRefresh)]
    pub fn hanging_refresh(log: &js_sys::Array) -> js_sys::Function;
    #[wasm_bindgen(js_name = flakyFetch)]
    pub fn flaky_fetch(part: &str, failures: u32) -> js_sys::Function;
    #[wasm_bindgen(js_name = rawStatus)]
    pub fn raw_status(url: &str, headers: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = hideSubtle)]
    pub fn hide_subtle() -> js_sys::Function;
    #[wasm_bindgen(js_name = dpopKeyStored)]
    pub fn dpop_key_stored(name: &str) -> Promise;
    #[wasm_bindgen(js_name = dpopKeyDelete)]
    pub fn dpop_key_delete(name: &str) -> Promise;
    #[wasm_bindgen(js_name = gatedFetch)]
    pub fn gated_fetch() -> js_sys::Function;
    #[wasm_bindgen(js_name = recordingFetch)]
    pub fn recording_fetch() -> js_sys::Function;
    #[wasm_bindgen(js_name = hideRequest)]
    pub fn hide_request() -> js_sys::Function;
    #[wasm_bindgen(js_name = holdLock)]
    pub fn hold_lock(name: &str) -> Promise;
    #[wasm_bindgen(js_name = holdLockElsewhere)]
    pub fn hold_lock_elsewhere(name: &str) -> Promise;
    #[wasm_bindgen(js_name = storageEventShim)]
    pub fn storage_event_shim() -> js_sys::Function;
    #[wasm_bindgen(js_name = catchErrors)]
    pub fn catch_errors() -> js_sys::Array;
    #[wasm_bindgen(js_name = breakWritesOf)]
    pub fn break_writes_of(key: &str) -> js_sys::Function;
}

pub async fn sleep(ms: f64) {
    let _ = JsFuture::from(sleep_js(ms)).await;
}

pub async fn await_js(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// Signs in at the auth server's JSON API (`/app/login`); a token response.
pub async fn app_login(user: &str, ttl: u32) -> JsValue {
    JsFuture::from(app_login_js(AUTH, user, ttl)).await.expect("login at the JSON API")
}

/// Signs in at the auth server; the token response object.
pub async fn login(user: &str, ttl: u32) -> JsValue {
    JsFuture::from(login_js(AUTH, user, ttl)).await.expect("login at the local auth server")
}

pub async fn get_json(url: &str) -> JsValue {
    JsFuture::from(get_json_js(url)).await.expect("GET json")
}

pub async fn post_json(url: &str, body: &JsValue) -> f64 {
    JsFuture::from(post_json_js(url, body)).await.expect("POST json").as_f64().unwrap_or(0.0)
}

pub async fn post_form(url: &str, fields: &JsValue) -> f64 {
    JsFuture::from(post_form_js(url, fields)).await.expect("POST form").as_f64().unwrap_or(0.0)
}

/// A manager for the local auth server; `extra` is spliced into the options.
pub fn server_manager(key: &str, extra: &str) -> tessera::js_api::TokenManager {
    let opts = format!(
        r#"{{"storageKey":"{key}","tokenEndpoint":"{AUTH}/oauth/token","revocationEndpoint":"{AUTH}/oauth/revoke",
            "clientId":"tessera-demo","allowedOrigins":["{AUTH}"]{extra}}}"#
    );
    tessera::js_api::TokenManager::new(js(&opts)).unwrap_or_else(|e| panic!("{}", message(&e)))
}

/// Signs in and hands the response to the manager; returns the session id.
pub async fn sign_in(tm: &tessera::js_api::TokenManager, user: &str, ttl: u32) -> String {
    let r = login(user, ttl).await;
    tm.set_tokens(r).unwrap();
    sid_of(&tm.access_token().unwrap())
}

/// Same as sign_in, but the manager believes the token already expired.
pub async fn sign_in_expired(tm: &tessera::js_api::TokenManager, user: &str) -> String {
    let r = login(user, 300).await;
    js_sys::Reflect::set(&r, &"expires_in".into(), &0.into()).unwrap();
    tm.set_tokens(r).unwrap();
    sid_of(&tm.access_token().unwrap())
}

/// The auth server's view of a session.
pub async fn family(sid: &str) -> JsValue {
    get_json(&format!("{AUTH}/test/family/{sid}")).await
}

/// How many refreshes the auth server saw for a session.
pub async fn refreshes(sid: &str) -> f64 {
    get(&family(sid).await, "refreshes").as_f64().unwrap()
}

/// `obj[name]`.
pub fn get(obj: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[name]` as a string, or "".
pub fn get_str(obj: &JsValue, name: &str) -> String {
    get(obj, name).as_string().unwrap_or_default()
}

/// Builds a JS object from JSON text (test inputs read best as JSON).
pub fn js(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("test JSON")
}

/// `error.message` of a thrown/rejected value.
pub fn message(e: &JsValue) -> String {
    get_str(e, "message")
}

pub fn local_storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

pub fn session_storage() -> web_sys::Storage {
    web_sys::window().unwrap().session_storage().unwrap().unwrap()
}

/// Records the given events of `tm` into an array of `[name, detail]`.
pub fn record(tm: &tessera::js_api::TokenManager, events: &[&str]) -> js_sys::Array {
    let log = js_sys::Array::new();
    for e in events {
        tm.on(e, pusher(&log, e)).expect("known event");
    }
    log
}

/// Event names recorded by [`record`], in order.
pub fn names(log: &js_sys::Array) -> Vec<String> {
    log.iter().map(|e| js_sys::Array::from(&e).get(0).as_string().unwrap_or_default()).collect()
}

/// The detail object of the n-th recorded event.
pub fn detail(log: &js_sys::Array, n: u32) -> JsValue {
    js_sys::Array::from(&log.get(n)).get(1)
}

/// Injects a fault into the auth server's next refresh(es) of `sid`.
pub async fn fault(kind: &str, sid: &str, extra: &str) {
    let body = js(&format!(r#"{{"kind":"{kind}","sid":"{sid}"{extra}}}"#));
    assert_eq!(post_json(&format!("{AUTH}/test/fault"), &body).await, 204.0);
}

/// Calls `f()` with no `this`.
pub fn call0(f: &JsValue) -> JsValue {
    js_sys::Function::from(f.clone()).call0(&JsValue::NULL).expect("call")
}

/// `f.sent` (or any array property) of a test transport.
pub fn list(obj: &JsValue, name: &str) -> Vec<JsValue> {
    js_sys::Array::from(&get(obj, name)).iter().collect()
}

/// Waits (polling) until `f` is true or `ms` pass; returns whether it became true.
pub async fn wait_until(ms: f64, mut f: impl FnMut() -> bool) -> bool {
    let start = js_sys::Date::now();
    while js_sys::Date::now() - start < ms {
        if f() {
            return true;
        }
        sleep(25.0).await;
    }
    f()
}
