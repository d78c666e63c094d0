import type * as Tessera from "../tessera.js";

/** The package's exports, as a loader resolves them. */
export type TesseraModule = typeof Tessera;

/** A Response-like answer from a mini-program request. The body can be read more than once. */
export interface MpResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly statusText: string;
  readonly url: string;
  readonly headers: {
    get(name: string): string | null;
    has(name: string): boolean;
    forEach(f: (value: string, name: string) => void): void;
  };
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** A copy whose body can be read again (the 401 replay and `isUnauthorized` use it). */
  clone(): MpResponse;
}

/** A fetch-shaped transport for the `fetch` option. */
export type MpFetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<MpResponse>;

/** Options of the `xxxFetch` adapters. */
export interface MpFetchOptions {
  /** Milliseconds before the host gives up on a request (the host's own default otherwise). */
  timeout?: number;
}

/** Unties a manager from the host's lifecycle. */
export type Untie = () => void;

/** A UTF-8 codec standing in for TextDecoder/TextEncoder where the runtime has none. */
export declare const utf8: {
  decode(bytes?: Uint8Array): string;
  encode(s: string): Uint8Array;
  encodeInto(s: string, view: Uint8Array): { read: number; written: number };
};

/** What WeChat's request takes (Douyin, uni-app and Taro take the same). */
export interface WxRequestOptions {
  url: string;
  method?: string;
  header?: Record<string, string>;
  data?: unknown;
  dataType?: string;
  responseType?: string;
  timeout?: number;
}

/** What WeChat's request answers. */
export interface WxAnswer {
  statusCode: number;
  header?: Record<string, string>;
  data: unknown;
}

/** The callback-style request of WeChat, Douyin and uni-app. */
export interface WxStyleApi {
  getStorageSync?(key: string): unknown;
  setStorageSync?(key: string, value: string): void;
  removeStorageSync?(key: string): void;
  request?(options: WxRequestOptions & { success?(res: WxAnswer): void; fail?(err: { errMsg?: string }): void }): { abort?(): void } | void;
  onAppShow?(f: () => void): void;
  offAppShow?(f: () => void): void;
  onNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
  offNetworkStatusChange?(f: (r: { isConnected: boolean }) => void): void;
}
