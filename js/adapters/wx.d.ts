import type { StorageAdapter } from "../tessera.js";

/** The parts of a WeChat-style `wx` (or Alipay `my`) object the adapters use. */
export interface MiniProgramApi {
  getStorageSync?(key: string): unknown;
  setStorageSync?(key: string, value: string): void;
  removeStorageSync?(key: string): void;
  request?(options: {
    url: string;
    method?: string;
    header?: Record<string, string>;
    data?: unknown;
    dataType?: string;
    responseType?: string;
    timeout?: number;
    success?(res: { statusCode: number; header?: Record<string, string>; data: unknown }): void;
    fail?(err: { errMsg?: string }): void;
  }): { abort?(): void } | void;
}

/** A Response-like answer from `wx.request`. */
export interface WxResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly url: string;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** A copy whose body can be read again (for `isUnauthorized`). */
  clone(): WxResponse;
}

/** Storage adapter over wx.getStorageSync / setStorageSync / removeStorageSync. */
export function wxStorage(api?: MiniProgramApi): StorageAdapter;

/** A fetch-shaped transport over wx.request, for the `fetch` option. */
export function wxFetch(
  api?: MiniProgramApi,
  options?: { timeout?: number },
): (input: RequestInfo | URL, init?: RequestInit) => Promise<WxResponse>;
