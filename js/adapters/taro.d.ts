import type { StorageAdapter, TokenManager } from "../tessera.js";
import type { MpFetch, MpFetchOptions, TesseraModule, Untie, WxAnswer, WxRequestOptions } from "./mp.js";
export type { MpResponse, MpFetch, MpFetchOptions, TesseraModule, Untie } from "./mp.js";

/** The parts of `Taro` (from '@tarojs/taro') the adapters use. */
export interface TaroApi {
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, value: string): void;
  removeStorageSync(key: string): void;
  request(options: WxRequestOptions): Promise<WxAnswer> & { abort?(): void };
  onAppShow(f: () => void): void;
  offAppShow?(f: () => void): void;
  onNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
  offNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
}

/** Loads the package with the target's WebAssembly (see `loadUni`). */
export function loadTaro(path: string): Promise<TesseraModule>;
/** Storage adapter over Taro.getStorageSync / setStorageSync / removeStorageSync. */
export function taroStorage(Taro: TaroApi): StorageAdapter;
/** A fetch-shaped transport over Taro.request, for the `fetch` option. */
export function taroFetch(Taro: TaroApi, options?: MpFetchOptions): MpFetch;
/** Catches up a refresh that came due in the background on Taro.onAppShow and when the network returns. */
export function taroLifecycle(tm: TokenManager, Taro: TaroApi): Untie;
