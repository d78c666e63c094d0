// What the mini-program adapters (wx, my, tt, uni, Taro) share: a
// Response-like answer, fetch's and Storage's contracts over callback-style
// host APIs, the show/network hook-up, the wasm loader and a UTF-8 codec for
// runtimes without TextDecoder/TextEncoder. Each host file maps its own
// quirks onto these. Web apps never load this file.
import * as tessera from "../tessera.js";

/**
 * UTF-8 for runtimes without TextDecoder/TextEncoder (the glue uses it only
 * then). Decodes what Rust hands over, which is always valid UTF-8; encodes
 * lone surrogates as U+FFFD, as TextEncoder does.
 */
export const utf8 = {
  decode(bytes) {
    let s = "";
    for (let i = 0; bytes && i < bytes.length; ) {
      let c = bytes[i++];
      if (c >= 0x80) {
        let n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
        if (n < 0 || i + n > bytes.length) c = 0xfffd;
        else for (c &= 0x3f >> n; n-- > 0; ) c = (c << 6) | (bytes[i++] & 0x3f);
      }
      s += c > 0xffff
        ? String.fromCharCode(0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff))
        : String.fromCharCode(c);
    }
    return s;
  },
  encode(s) {
    const out = new Uint8Array(s.length * 3);
    return out.subarray(0, utf8.encodeInto(s, out).written);
  },
  encodeInto(s, view) {
    let r = 0, w = 0;
    while (r < s.length) {
      let c = s.charCodeAt(r), units = 1;
      if (c >= 0xd800 && c < 0xe000) {
        const d = s.charCodeAt(r + 1);
        if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          units = 2;
        } else c = 0xfffd;
      }
      // How many continuation bytes follow the first.
      const n = c < 0x80 ? 0 : c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
      if (w + n >= view.length) break;
      view[w++] = n ? ((0xf0 << (3 - n)) & 0xff) | (c >> (6 * n)) : c;
      for (let k = n - 1; k >= 0; k--) view[w++] = 0x80 | ((c >> (6 * k)) & 0x3f);
      r += units;
    }
    return { read: r, written: w };
  },
};

/**
 * Loads the wasm through a host's own WebAssembly object (`WXWebAssembly`,
 * `TTWebAssembly`: a path inside the code package, `.wasm` or `.wasm.br`) or,
 * given bytes or a compiled module, through the standard one. Resolves to the
 * package's exports (`TokenManager`, ...). Loading twice loads once.
 */
export async function load(host, source, name, needs) {
  if (source === undefined || source === null || source === "") {
    throw new TypeError(`Tessera: ${name} needs the path of tessera_bg.wasm(.br) inside the code package`);
  }
  let instantiate;
  if (typeof source === "string") {
    if (!host || typeof host.instantiate !== "function") {
      throw new TypeError(`Tessera: ${name}: ${needs ? `no ${needs} in this runtime` : "this runtime has no path-based WebAssembly loader"}; pass the wasm bytes instead`);
    }
    instantiate = (imports) => host.instantiate(source, imports);
  } else {
    if (typeof WebAssembly === "undefined") throw new TypeError(`Tessera: ${name}: this runtime has no WebAssembly`);
    instantiate = (imports) => WebAssembly.instantiate(source, imports);
  }
  const codec = typeof TextDecoder === "undefined" || typeof TextEncoder === "undefined" ? utf8 : undefined;
  await tessera.initWith(instantiate, codec);
  return tessera;
}

function plainHeaders(h) {
  const out = {};
  if (!h) return out;
  if (Array.isArray(h)) for (const [name, value] of h) out[name] = String(value);
  // A Headers object lowercases names; hosts and their mocks look up
  // `header.Authorization`, so names go out in the usual Title-Case.
  else if (typeof h.forEach === "function") h.forEach((value, name) => { out[name.replace(/(^|-)[a-z]/g, (c) => c.toUpperCase())] = value; });
  else for (const name of Object.keys(h)) out[name] = String(h[name]);
  return out;
}

function abortError() {
  const e = new Error("The request was aborted");
  e.name = "AbortError";
  return e;
}

/** The body as text: hosts hand back a string, a parsed object or an ArrayBuffer. */
function bodyText(data) {
  if (typeof data === "string") return data;
  if (data === undefined || data === null) return "";
  if (data instanceof ArrayBuffer) return utf8.decode(new Uint8Array(data));
  return JSON.stringify(data);
}

/**
 * A Response-like answer: `status`, `ok`, `url`, `headers.get()/has()/forEach()`,
 * `text()`, `json()`, `clone()`. The body can be read more than once.
 */
export class MpResponse {
  constructor(status, headers, data, url) {
    const lower = {};
    for (const k of Object.keys(headers || {})) {
      const v = headers[k];
      lower[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
    }
    this.status = status;
    this.ok = status >= 200 && status < 300;
    this.statusText = "";
    this.url = url;
    this.headers = {
      get: (name) => (String(name).toLowerCase() in lower ? lower[String(name).toLowerCase()] : null),
      has: (name) => String(name).toLowerCase() in lower,
      forEach: (f) => Object.keys(lower).forEach((k) => f(lower[k], k)),
    };
    this.body = bodyText(data);
  }
  text() { return Promise.resolve(this.body); }
  json() { return Promise.resolve().then(() => JSON.parse(this.body)); }
  clone() { return Object.assign(Object.create(MpResponse.prototype), this); }
}

/**
 * A fetch-shaped transport over a host's request API. `send(request, answer,
 * failed)` starts the host call and returns its task (for abort). Every HTTP
 * status is an answer; a network failure (including "interrupted" when the
 * app goes to the background) rejects with a TypeError, as fetch does; an
 * aborted signal rejects with an AbortError.
 */
export function transport(name, send) {
  return async function fetch(input, init = {}) {
    init = init || {};
    const url = typeof input === "string" ? input : String((input && (input.href || input.url)) || input);
    // A Request (where the runtime has one: uni-app and Taro H5 builds)
    // carries method, headers, body and signal; `init` overrides them, as
    // in fetch.
    const req = input && typeof input === "object" && typeof input.url === "string" && typeof input.method === "string" ? input : undefined;
    const signal = init.signal || (req && req.signal);
    const method = init.method || (req && req.method);
    const headers = init.headers !== undefined ? init.headers : req && req.headers;
    let body = init.body;
    if (body === undefined && req && req.body !== null && req.body !== undefined) {
      const type = String((req.headers && req.headers.get && req.headers.get("content-type")) || "");
      body = /^(text\/|application\/(json|x-www-form-urlencoded|[\w.+-]*\+json))/i.test(type) || !type
        ? await req.clone().text()
        : await req.clone().arrayBuffer();
    }
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(abortError());
      let done = false, task;
      const onAbort = () => {
        if (task && typeof task.abort === "function") task.abort();
        finish(reject, abortError());
      };
      const finish = (settle, value) => {
        if (done) return;
        done = true;
        if (signal && typeof signal.removeEventListener === "function") signal.removeEventListener("abort", onAbort);
        settle(value);
      };
      const request = {
        url,
        method: String(method || "GET").toUpperCase(),
        headers: plainHeaders(headers),
        body: body === null ? undefined : body,
      };
      task = send(
        request,
        (status, headers, data) => finish(resolve, new MpResponse(status, headers, data, url)),
        (why) => finish(reject, new TypeError(`${name} failed: ${why || "network error"}`)),
      );
      if (signal && typeof signal.addEventListener === "function") signal.addEventListener("abort", onAbort);
    });
  };
}

/** Storage's contract (`getItem` answers `null` when missing) over three host calls. */
export function storage(get, set, remove) {
  return {
    getItem(key) {
      const v = get(key);
      return v === "" || v === undefined || v === null ? null : String(v);
    },
    setItem(key, value) { set(key, String(value)); },
    removeItem(key) { remove(key); },
  };
}

/**
 * Ties a manager to the host's app lifecycle: when the app comes back to the
 * foreground, or the network comes back, the manager catches up a refresh
 * that came due while timers were paused (`tm.wake()`, what
 * `visibilitychange` and `online` do in browsers). Hiding needs nothing: a
 * request cut off by the background fails as a network error and is retried
 * on the way back. Returns a function that unties it.
 */
export function lifecycle(api, name, tm) {
  if (!api || typeof api.onAppShow !== "function") {
    throw new TypeError(`Tessera: ${name} needs the host object with onAppShow`);
  }
  if (!tm || typeof tm.wake !== "function") throw new TypeError(`Tessera: ${name} needs a TokenManager`);
  const show = () => tm.wake();
  const network = (r) => { if (!r || r.isConnected !== false) tm.wake(); };
  api.onAppShow(show);
  if (typeof api.onNetworkStatusChange === "function") api.onNetworkStatusChange(network);
  return () => {
    if (typeof api.offAppShow === "function") api.offAppShow(show);
    if (typeof api.offNetworkStatusChange === "function") api.offNetworkStatusChange(network);
  };
}

/** Checks that the host object is there and has `fn`; `host` names it in the error. */
export function need(api, fn, name, host) {
  if (!api || typeof api[fn] !== "function") {
    throw new TypeError(`Tessera: ${name} needs the ${host} object (no ${host}.${fn} here)`);
  }
  return api;
}

/** The options of WeChat's request (Douyin, uni-app and Taro take the same), without callbacks. */
export function wxOptions(req, timeout) {
  return {
    url: req.url,
    method: req.method,
    header: req.headers,
    data: req.body,
    // Keep the body as text: Tessera and fetch callers parse it themselves.
    dataType: "text",
    responseType: "text",
    ...(timeout ? { timeout } : {}),
  };
}

/** The request of WeChat, Douyin and uni-app: `success({ statusCode, header, data })`, `fail({ errMsg })`. */
function wxRequest(api, timeout) {
  return (req, answer, failed) =>
    api.request({
      ...wxOptions(req, timeout),
      success: (r) => answer(r.statusCode, r.header, r.data),
      fail: (e) => failed(e && e.errMsg),
    });
}

/**
 * Loads through whichever WebAssembly this runtime has: WeChat's, Douyin's,
 * or (an H5 build) the browser's, where `path` is a URL.
 */
export function loadAny(path, name) {
  const own =
    (typeof WXWebAssembly !== "undefined" && WXWebAssembly) || (typeof TTWebAssembly !== "undefined" && TTWebAssembly) || undefined;
  if (!own && typeof path === "string" && typeof fetch === "function" && typeof WebAssembly !== "undefined") {
    return tessera.default({ module_or_path: path }).then(() => tessera);
  }
  return load(own, path, name, "WXWebAssembly or TTWebAssembly");
}

/** Storage over WeChat's sync calls (wx, tt, uni, Taro): `get/set/removeStorageSync(key)`, "" for a missing key. */
export function syncStorage(api, name, host) {
  need(api, "getStorageSync", name, host);
  return storage((k) => api.getStorageSync(k), (k, v) => api.setStorageSync(k, v), (k) => api.removeStorageSync(k));
}

/** A fetch-shaped transport over WeChat's callback request (wx, tt, uni). */
export function wxStyleFetch(api, timeout, name, host) {
  need(api, "request", name, host);
  return transport(host + ".request", wxRequest(api, timeout));
}
