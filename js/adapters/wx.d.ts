import type { StorageAdapter, TokenManager } from "../tessera.js";
import type { MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";
export type { MpResponse, MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";

/** @deprecated Use `WxStyleApi`. */
export type MiniProgramApi = WxStyleApi;

/** Loads the package through `WXWebAssembly.instantiate(path)`: `path` is tessera_bg.wasm.br (or .wasm) inside the code package. */
export function loadWx(path: string): Promise<TesseraModule>;
/** Storage adapter over wx.getStorageSync / setStorageSync / removeStorageSync. */
export function wxStorage(api?: WxStyleApi): StorageAdapter;
/** A fetch-shaped transport over wx.request, for the `fetch` option. */
export function wxFetch(api?: WxStyleApi, options?: MpFetchOptions): MpFetch;
/** Catches up a refresh that came due in the background on wx.onAppShow and when the network returns. */
export function wxLifecycle(tm: TokenManager, api?: WxStyleApi): Untie;
