// Alipay (`my`): its quirks differ from WeChat's. `my.request` takes
// `headers`, answers `status`/`headers`, and calls `fail` for an HTTP error
// status (error 19) with the status and body; the storage calls take one
// object (`{ key, data }`) and a missing key reads as `{ data: null }`.
import { lifecycle, load, need, storage, transport } from "./mp.js";

// A free identifier: hosts may hand `my` to modules through a wrapper.
const myObject = () => (typeof my !== "undefined" ? my : undefined);

/**
 * Loads the package through the runtime's `WebAssembly`: from a path inside
 * the code package (read with `my.getFileSystemManager().readFile`, as
 * Alipay documents no path-based wasm loader like WeChat's), or from bytes
 * or a compiled module. Resolves to the package's exports.
 */
export async function loadMy(source, api = myObject()) {
  if (typeof source === "string" && source) {
    need(api, "getFileSystemManager", "loadMy", "my");
    source = await new Promise((resolve, reject) =>
      api.getFileSystemManager().readFile({
        filePath: source,
        success: (r) => resolve(r.data),
        fail: (e) => reject(new TypeError(`Tessera: loadMy could not read ${source}: ${(e && (e.errorMessage || e.errMsg)) || "no such file"}`)),
      }),
    );
  }
  return load(undefined, source, "loadMy");
}

/** Storage adapter over `my.getStorageSync({ key })` / `setStorageSync({ key, data })` / `removeStorageSync({ key })`. */
export function myStorage(api = myObject()) {
  need(api, "getStorageSync", "myStorage", "my");
  return storage(
    (key) => {
      const r = api.getStorageSync({ key });
      return r && r.data;
    },
    (key, data) => api.setStorageSync({ key, data }),
    (key) => api.removeStorageSync({ key }),
  );
}

/** A fetch-shaped transport over `my.request`: every HTTP status resolves (even those Alipay reports through `fail`); network failures reject with a TypeError. */
export function myFetch(api = myObject(), { timeout } = {}) {
  need(api, "request", "myFetch", "my");
  return transport("my.request", (req, answer, failed) =>
    api.request({
      url: req.url,
      method: req.method,
      headers: req.headers,
      data: req.body,
      dataType: "text",
      ...(timeout ? { timeout } : {}),
      success: (r) => answer(r.status, r.headers, r.data),
      fail: (e) =>
        e && typeof e.status === "number" && e.status >= 100
          ? answer(e.status, e.headers, e.data)
          : failed(e && (e.errorMessage || (e.error !== undefined ? "error " + e.error : ""))),
    }),
  );
}

/** Catches up a refresh that came due in the background on `my.onAppShow` and when the network returns. Returns the undo. */
export function myLifecycle(tm, api = myObject()) {
  return lifecycle(api, "myLifecycle", tm);
}
