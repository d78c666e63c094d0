import type { StorageAdapter, TokenManager } from "../tessera.js";
import type { MpFetch, MpFetchOptions, TesseraModule, Untie } from "./mp.js";
export type { MpResponse, MpFetch, MpFetchOptions, TesseraModule, Untie } from "./mp.js";

/** The parts of Alipay's `my` the adapters use. */
export interface MyApi {
  getStorageSync?(options: { key: string }): { data?: unknown } | undefined;
  setStorageSync?(options: { key: string; data: string }): void;
  removeStorageSync?(options: { key: string }): void;
  request?(options: {
    url: string;
    method?: string;
    headers?: Record<string, string>;
    data?: unknown;
    dataType?: string;
    timeout?: number;
    success?(res: { status: number; headers?: Record<string, string>; data: unknown }): void;
    fail?(err: { error?: number; errorMessage?: string; status?: number; headers?: Record<string, string>; data?: unknown }): void;
  }): { abort?(): void } | void;
  getFileSystemManager?(): {
    readFile(options: { filePath: string; success?(res: { data: ArrayBuffer }): void; fail?(err: { error?: number; errorMessage?: string }): void }): void;
  };
  onAppShow?(f: () => void): void;
  offAppShow?(f: () => void): void;
  onNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
  offNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
}

/** Loads the package through the runtime's WebAssembly: from a path inside the code package (read with my.getFileSystemManager()), or from bytes or a compiled module. */
export function loadMy(source: string | BufferSource | WebAssembly.Module, api?: MyApi): Promise<TesseraModule>;
/** Storage adapter over my.getStorageSync({ key }) / setStorageSync({ key, data }) / removeStorageSync({ key }). */
export function myStorage(api?: MyApi): StorageAdapter;
/** A fetch-shaped transport over my.request, for the `fetch` option. */
export function myFetch(api?: MyApi, options?: MpFetchOptions): MpFetch;
/** Catches up a refresh that came due in the background on my.onAppShow and when the network returns. */
export function myLifecycle(tm: TokenManager, api?: MyApi): Untie;
