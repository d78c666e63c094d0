import type { StorageAdapter, TokenManager } from "../tessera.js";
import type { MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";
export type { MpResponse, MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";

/** Loads the package with the target's WebAssembly: WXWebAssembly or TTWebAssembly (a path in the package), or the browser's in H5 (a URL). */
export function loadUni(path: string): Promise<TesseraModule>;
/** Storage adapter over uni.getStorageSync / setStorageSync / removeStorageSync. */
export function uniStorage(api?: WxStyleApi): StorageAdapter;
/** A fetch-shaped transport over uni.request, for the `fetch` option. */
export function uniFetch(api?: WxStyleApi, options?: MpFetchOptions): MpFetch;
/** Catches up a refresh that came due in the background on uni.onAppShow and when the network returns. */
export function uniLifecycle(tm: TokenManager, api?: WxStyleApi): Untie;
