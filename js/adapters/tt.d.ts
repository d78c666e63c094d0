import type { StorageAdapter, TokenManager } from "../tessera.js";
import type { MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";
export type { MpResponse, MpFetch, MpFetchOptions, TesseraModule, Untie, WxStyleApi } from "./mp.js";

/** Loads the package through `TTWebAssembly.instantiate(path)`: `path` is tessera_bg.wasm.br (or .wasm) inside the package. */
export function loadTt(path: string): Promise<TesseraModule>;
/** Storage adapter over tt.getStorageSync / setStorageSync / removeStorageSync. */
export function ttStorage(api?: WxStyleApi): StorageAdapter;
/** A fetch-shaped transport over tt.request, for the `fetch` option. */
export function ttFetch(api?: WxStyleApi, options?: MpFetchOptions): MpFetch;
/** Catches up a refresh that came due in the background on tt.onAppShow and when the network returns. */
export function ttLifecycle(tm: TokenManager, api?: WxStyleApi): Untie;
