// A TypeScript user's view of the package, checked with `tsc --noEmit --strict`
// against the generated .d.ts: options, claims, events and their details are
// typed, and wrong uses are compile errors (the @ts-expect-error lines).
import init, {
  TokenManager,
  type Claims,
  type RefreshErrorDetail,
  type StorageAdapter,
  type TesseraError,
  type TokenManagerOptions,
  type TokenResponse,
  type TokensDetail,
} from "tessera";
import { loadWx, wxFetch, wxLifecycle, wxStorage, type WxStyleApi, type MpResponse } from "tessera/wx";
import { loadMy, myFetch, myLifecycle, myStorage, type MyApi } from "tessera/my";
import { loadTt, ttFetch, ttStorage } from "tessera/tt";
import { loadUni, uniFetch, uniStorage } from "tessera/uni";
import { loadTaro, taroFetch, taroLifecycle, taroStorage, type TaroApi } from "tessera/taro";

export async function usage(): Promise<void> {
  await init();
  const adapter: StorageAdapter = {
    getItem: async (k) => localStorage.getItem(k),
    setItem: async (k, v) => localStorage.setItem(k, v),
    removeItem: (k) => localStorage.removeItem(k),
  };
  const options: TokenManagerOptions = {
    storage: adapter,
    storageKey: "app",
    tokenEndpoint: "https://auth.example.com/oauth/token",
    allowedOrigins: ["https://api.example.com"],
    refreshMarginSeconds: 60,
    refreshBodyFormat: "json",
  };
  const tm = new TokenManager(options);
  await tm.ready;

  const response: TokenResponse = { access_token: "a", token_type: "Bearer", expires_in: 3600, refresh_token: "r" };
  tm.setTokens(response);

  const token: string | undefined = tm.accessToken;
  const expiresAt: number | undefined = tm.expiresAt;
  const claims: Claims | undefined = tm.claims;
  const sub: string | undefined = claims?.sub;
  const aud: string | string[] | undefined = claims?.aud;
  const storage: "localStorage" | "sessionStorage" | "memory" | "adapter" = tm.storage;
  const expired: boolean = tm.isExpired(30);

  const off: () => void = tm.on("tokens", (d: TokensDetail) => {
    const t: string = d.accessToken;
    void t;
  });
  off();
  tm.on("refreshError", (d: RefreshErrorDetail) => {
    const fatal: boolean = d.fatal;
    const err: TesseraError = d.error;
    const code: string = err.code;
    const retry: number | undefined = d.retryInSeconds;
    void [fatal, code, retry];
  });
  tm.on("logout", (d) => {
    const reason: "user" | "remote" | "duplicate" = d.reason;
    void reason;
  });
  tm.on("storageError", (d) => void d.fallback);

  const res: Response = await tm.fetch("https://api.example.com/me", { method: "POST", body: "{}" });
  const res2: Response = await tm.fetch(new URL("https://api.example.com/me"));
  const got: string = await tm.getAccessToken();
  await tm.refresh();
  await tm.logout();
  tm.dispose();

  // A backend that is not an OAuth server.
  const shop = new TokenManager({
    clientId: "shop",
    allowedOrigins: ["https://api.example.com"],
    refresh: async ({ refreshToken, signal }) => {
      const r = await fetch("https://api.example.com/refresh", { method: "POST", body: JSON.stringify({ refreshToken }), signal });
      const b = (await r.json()) as { code: number; data: { token: string; refresh_token: string } };
      if (b.code === 401) throw Object.assign(new Error("signed out"), { fatal: true });
      return { access_token: b.data.token, refresh_token: b.data.refresh_token };
    },
    isUnauthorized: async (r) => ((await r.json()) as { code: number }).code === 403,
    idempotencyKeys: true,
    retries: 2,
    deviceIdHeader: "X-Device-Id",
  });
  const device: string | undefined = shop.deviceId;
  void device;
  // DPoP: a proof for a request the app sends itself.
  const bound = new TokenManager({ dpop: true, storage: "memory" });
  const proof: string = await bound.dpopProof("POST", "https://auth.example.com/oauth/token");
  void proof;
  // @ts-expect-error: retries is a number
  new TokenManager({ retries: "2" });
  // @ts-expect-error: refresh resolves with a token response
  new TokenManager({ refresh: async () => "token" });

  // Mini-programs: one call loads the wasm, adapters give storage and fetch,
  // one call ties the manager to the app's lifecycle.
  const wx = {} as WxStyleApi;
  const { TokenManager: WxManager } = await loadWx("/tessera/tessera_bg.wasm.br");
  const wxTm = new WxManager({ storage: wxStorage(wx), fetch: wxFetch(wx, { timeout: 10000 }), allowedOrigins: ["https://api.example.com"] });
  const untie: () => void = wxLifecycle(wxTm, wx);
  untie();
  const answer: MpResponse = await wxFetch(wx)("https://api.example.com/");
  const copy: MpResponse = answer.clone();
  void copy.headers.get("content-type");
  const my = {} as MyApi;
  await loadMy(new ArrayBuffer(8));
  await loadMy("/tessera/tessera_bg.wasm", my);
  myLifecycle(new TokenManager({ storage: myStorage(my), fetch: myFetch(my), allowedOrigins: ["https://api.example.com"] }), my);
  await loadTt("/tessera/tessera_bg.wasm.br");
  new TokenManager({ storage: ttStorage(wx), fetch: ttFetch(wx), allowedOrigins: ["https://api.example.com"] });
  await loadUni("/tessera/tessera_bg.wasm.br");
  new TokenManager({ storage: uniStorage(wx), fetch: uniFetch(wx), allowedOrigins: ["https://api.example.com"] });
  const Taro = {} as TaroApi;
  await loadTaro("/tessera/tessera_bg.wasm.br");
  taroLifecycle(new TokenManager({ storage: taroStorage(Taro), fetch: taroFetch(Taro), allowedOrigins: ["https://api.example.com"] }), Taro);
  // @ts-expect-error: loadWx takes a path inside the code package
  await loadWx(42);
  // @ts-expect-error: Taro's adapters need the Taro object
  taroStorage();
  tm.wake();

  // @ts-expect-error: unknown event names are compile errors
  tm.on("tokenz", () => {});
  // @ts-expect-error: a tokens listener gets TokensDetail, not a string
  tm.on("tokens", (d: string) => void d);
  // @ts-expect-error: storage must be one of the known names or an adapter
  new TokenManager({ storage: "cookies" });
  // @ts-expect-error: refreshMarginSeconds is a number
  new TokenManager({ refreshMarginSeconds: "60" });
  // @ts-expect-error: unknown options are compile errors too
  new TokenManager({ storageKy: "x" });

  void [token, expiresAt, sub, aud, storage, expired, res, res2, got];
}
