// WeChat (`wx`): the runtime has no fetch, no localStorage and loads wasm
// only through WXWebAssembly from a path inside the code package. These make
// `new TokenManager({ storage: wxStorage(), fetch: wxFetch() })` work with no
// shim of the app's own.
import { lifecycle, load, syncStorage, wxStyleFetch } from "./mp.js";

// Free identifiers, not globalThis properties: WeChat hands `wx` to each
// module through its wrapper.
const wxObject = () => (typeof wx !== "undefined" ? wx : undefined);

/**
 * Loads the package through `WXWebAssembly.instantiate(path)`; `path` is
 * where tessera_bg.wasm.br (or .wasm) sits inside the code package. Resolves
 * to the package's exports: `const { TokenManager } = await loadWx("/tessera/tessera_bg.wasm.br")`.
 */
export function loadWx(path) {
  return load(typeof WXWebAssembly !== "undefined" ? WXWebAssembly : undefined, path, "loadWx", "WXWebAssembly (WeChat base library 2.13 or later)");
}

/** Storage adapter over `wx.getStorageSync` / `setStorageSync` / `removeStorageSync` (a missing key reads as ""). */
export function wxStorage(api = wxObject()) {
  return syncStorage(api, "wxStorage", "wx");
}

/**
 * A fetch-shaped transport over `wx.request`: every HTTP status resolves;
 * network failures, including "interrupted" when the app goes to the
 * background, reject with a TypeError, as fetch does.
 */
export function wxFetch(api = wxObject(), { timeout } = {}) {
  return wxStyleFetch(api, timeout, "wxFetch", "wx");
}

/** Catches up a refresh that came due in the background on `wx.onAppShow` and when the network returns. Returns the undo. */
export function wxLifecycle(tm, api = wxObject()) {
  return lifecycle(api, "wxLifecycle", tm);
}
