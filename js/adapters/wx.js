// Adapters for WeChat-style mini-program runtimes (`wx`; Alipay's `my` has
// the same storage shape). They have no fetch and no localStorage: these
// turn `wx.request` into a fetch-shaped transport and `wx.*StorageSync` into
// a storage adapter for `new TokenManager({ storage, fetch })`.

/** Storage adapter over `wx.getStorageSync` / `setStorageSync` / `removeStorageSync`. */
export function wxStorage(api = globalThis.wx) {
  if (!api || typeof api.getStorageSync !== "function") {
    throw new Error("Tessera: wxStorage(wx) needs the mini-program's wx object");
  }
  return {
    // wx answers "" for a missing key.
    getItem(key) {
      const v = api.getStorageSync(key);
      return v === "" || v === undefined || v === null ? null : String(v);
    },
    setItem(key, value) {
      api.setStorageSync(key, value);
    },
    removeItem(key) {
      api.removeStorageSync(key);
    },
  };
}

function plainHeaders(h) {
  const out = {};
  if (!h) return out;
  if (typeof h.forEach === "function" && !Array.isArray(h)) {
    h.forEach((value, name) => { out[name] = value; });
  } else if (Array.isArray(h)) {
    for (const [name, value] of h) out[name] = value;
  } else {
    Object.assign(out, h);
  }
  return out;
}

function abortError() {
  const e = new Error("The request was aborted");
  e.name = "AbortError";
  return e;
}

/** A Response-like answer: status, ok, headers.get(), text(), json(). */
class WxResponse {
  constructor(res, url) {
    const raw = res.header || res.headers || {};
    const lower = {};
    for (const k of Object.keys(raw)) lower[k.toLowerCase()] = String(raw[k]);
    this.status = res.statusCode;
    this.ok = res.statusCode >= 200 && res.statusCode < 300;
    this.url = url;
    this.headers = { get: (name) => (String(name).toLowerCase() in lower ? lower[String(name).toLowerCase()] : null) };
    this._body = typeof res.data === "string" ? res.data : res.data == null ? "" : JSON.stringify(res.data);
  }
  text() { return Promise.resolve(this._body); }
  clone() { return Object.assign(Object.create(WxResponse.prototype), this); }
  json() { return Promise.resolve().then(() => JSON.parse(this._body)); }
}

/**
 * A fetch-shaped transport over `wx.request`: `(url, init) => Promise<Response-like>`.
 * Every HTTP status resolves (a 401 is an answer, not an error); network
 * failures, including "interrupted" when the app goes to the background,
 * reject with a TypeError as fetch does.
 */
export function wxFetch(api = globalThis.wx, { timeout } = {}) {
  if (!api || typeof api.request !== "function") {
    throw new Error("Tessera: wxFetch(wx) needs the mini-program's wx object");
  }
  return function fetch(input, init = {}) {
    const url = typeof input === "string" ? input : String((input && (input.href || input.url)) || input);
    return new Promise((resolve, reject) => {
      if (init.signal && init.signal.aborted) return reject(abortError());
      const task = api.request({
        url,
        method: String(init.method || "GET").toUpperCase(),
        header: plainHeaders(init.headers),
        data: init.body,
        // Keep the body as text: Tessera and fetch callers parse it themselves.
        dataType: "text",
        responseType: "text",
        ...(timeout ? { timeout } : {}),
        success: (res) => resolve(new WxResponse(res, url)),
        fail: (err) => reject(new TypeError("wx.request failed: " + ((err && err.errMsg) || "network error"))),
      });
      if (init.signal && typeof init.signal.addEventListener === "function") {
        init.signal.addEventListener("abort", () => {
          if (task && typeof task.abort === "function") task.abort();
          reject(abortError());
        });
      }
    });
  };
}
