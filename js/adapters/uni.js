// uni-app (`uni`): one codebase compiled to WeChat, Alipay, Douyin and H5.
// `uni.request` has WeChat's shape on every target, `uni.getStorageSync`
// reads "" for a missing key.
import { lifecycle, loadAny, syncStorage, wxStyleFetch } from "./mp.js";

// A free identifier: uni-app injects `uni` per module on some targets.
const uniObject = () => (typeof uni !== "undefined" ? uni : undefined);

/**
 * Loads the package with whatever the target has: WXWebAssembly or
 * TTWebAssembly (a path inside the package), or in an H5 build the browser's
 * WebAssembly (a URL). Resolves to its exports.
 */
export function loadUni(path) {
  return loadAny(path, "loadUni");
}

/** Storage adapter over `uni.getStorageSync` / `setStorageSync` / `removeStorageSync`. */
export function uniStorage(api = uniObject()) {
  return syncStorage(api, "uniStorage", "uni");
}

/** A fetch-shaped transport over `uni.request`: every HTTP status resolves, network failures reject with a TypeError. */
export function uniFetch(api = uniObject(), { timeout } = {}) {
  return wxStyleFetch(api, timeout, "uniFetch", "uni");
}

/** Catches up a refresh that came due in the background on `uni.onAppShow` and when the network returns. Returns the undo. */
export function uniLifecycle(tm, api = uniObject()) {
  return lifecycle(api, "uniLifecycle", tm);
}
