// Taro: one codebase compiled to WeChat, Alipay, Douyin and H5. Pass the
// `Taro` object from '@tarojs/taro' (this package does not import it).
// `Taro.request` returns a promise (with `abort()`) of WeChat's answer shape.
import { lifecycle, loadAny, need, syncStorage, transport, wxOptions } from "./mp.js";

/** Loads the package with whatever the target has (see `loadUni`). Resolves to its exports. */
export function loadTaro(path) {
  return loadAny(path, "loadTaro");
}

/** Storage adapter over `Taro.getStorageSync` / `setStorageSync` / `removeStorageSync`. */
export function taroStorage(Taro) {
  return syncStorage(Taro, "taroStorage", "Taro");
}

/** A fetch-shaped transport over `Taro.request`: every HTTP status resolves, network failures reject with a TypeError. */
export function taroFetch(Taro, { timeout } = {}) {
  need(Taro, "request", "taroFetch", "Taro");
  return transport("Taro.request", (req, answer, failed) => {
    const task = Taro.request(wxOptions(req, timeout));
    // Some targets reject non-2xx answers: those carry a statusCode.
    task.then(
      (r) => answer(r.statusCode, r.header, r.data),
      (e) => (e && typeof e.statusCode === "number" ? answer(e.statusCode, e.header, e.data) : failed(e && (e.errMsg || e.message))),
    );
    return task;
  });
}

/** Catches up a refresh that came due in the background on `Taro.onAppShow` and when the network returns. Returns the undo. */
export function taroLifecycle(tm, Taro) {
  return lifecycle(Taro, "taroLifecycle", tm);
}
