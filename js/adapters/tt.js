// Douyin (`tt`): WeChat's shapes (`tt.request` answers `statusCode`/`header`,
// `tt.getStorageSync` reads "" for a missing key); wasm through TTWebAssembly.
import { lifecycle, load, syncStorage, wxStyleFetch } from "./mp.js";

// Free identifiers: hosts may hand `tt` to modules through a wrapper.
const ttObject = () => (typeof tt !== "undefined" ? tt : undefined);

/** Loads the package through `TTWebAssembly.instantiate(path)` (a `.wasm` or `.wasm.br` inside the package). Resolves to its exports. */
export function loadTt(path) {
  return load(typeof TTWebAssembly !== "undefined" ? TTWebAssembly : undefined, path, "loadTt", "TTWebAssembly (Douyin base library 2.34 or later)");
}

/** Storage adapter over `tt.getStorageSync` / `setStorageSync` / `removeStorageSync`. */
export function ttStorage(api = ttObject()) {
  return syncStorage(api, "ttStorage", "tt");
}

/** A fetch-shaped transport over `tt.request`: every HTTP status resolves, network failures reject with a TypeError. */
export function ttFetch(api = ttObject(), { timeout } = {}) {
  return wxStyleFetch(api, timeout, "ttFetch", "tt");
}

/** Catches up a refresh that came due in the background on `tt.onAppShow` and when the network returns. Returns the undo. */
export function ttLifecycle(tm, api = ttObject()) {
  return lifecycle(api, "ttLifecycle", tm);
}
