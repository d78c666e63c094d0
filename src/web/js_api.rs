//! The JavaScript API: `new TokenManager(options)` and its methods, the npm
//! package's front door (the `js` feature). A thin layer over the driver,
//! as the Rust API (`rust_api`) is.

use js_sys::{Function, Promise};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;

use super::driver::{self, Shared};
use super::error::Error;
use super::events::{Callback, Kind};
use super::js;
use super::options::Options;
use crate::core::session::{Input, Want};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Where tokens are kept. */
export type TokenStorage = "localStorage" | "sessionStorage" | "memory" | StorageAdapter;

/** Host storage (mini-program storage, Capacitor Preferences, a native bridge). Methods may be synchronous or return Promises. */
export interface StorageAdapter {
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  setItem(key: string, value: string): unknown;
  removeItem(key: string): unknown;
}

/** What Tessera reads from a transport's answer: a Response, or anything shaped like one. */
export interface FetchLikeResponse {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/** A function with fetch's signature: the host's own, or a mini-program adapter. */
export type FetchLike = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response | FetchLikeResponse>;

/** Options for `new TokenManager(...)`. Unknown names and wrong types throw. */
export interface TokenManagerOptions {
  /** Default "localStorage". */
  storage?: TokenStorage;
  /** Key of the stored record; default "tessera:" + clientId ("tessera" without a clientId). */
  storageKey?: string;
  /** Token endpoint for the refresh_token grant (RFC 6749 s6). https, or http on localhost. */
  tokenEndpoint?: string;
  /** RFC 7009 revocation endpoint, called by logout() (best effort). */
  revocationEndpoint?: string;
  clientId?: string;
  /** Sent with refresh requests when set. */
  scope?: string;
  /** Origins that receive the Bearer token from tm.fetch. Default: the page's own origin. */
  allowedOrigins?: string[];
  /** Refresh this long before expiry (capped at half the token lifetime). Default 60. */
  refreshMarginSeconds?: number;
  /** Treat tokens as expired this much early, for clock skew. Default 5. */
  leewaySeconds?: number;
  /** Refresh by timer before expiry. Default true. */
  autoRefresh?: boolean;
  /** After a 401 from an allowed origin, refresh once and replay once. Default true. */
  retryOn401?: boolean;
  /** Token endpoint timeout. Default 30. */
  timeoutSeconds?: number;
  /** Refresh request body: "form" (RFC 6749, default) or "json". */
  refreshBodyFormat?: "form" | "json";
  /** Transport used for every request the manager makes. Default: globalThis.fetch. */
  fetch?: FetchLike;
  /** Follow other tabs' changes to the same storage key. Default true. */
  syncTabs?: boolean;
  /** The app's own refresh call, instead of the refresh_token grant (then no tokenEndpoint).
   *  Throw an error with `fatal: true` when the refresh token is dead; any other throw is transient.
   *  `signal` aborts on logout, dispose and timeoutSeconds. */
  refresh?: (args: { refreshToken: string; signal: AbortSignal }) => Promise<TokenResponse>;
  /** What counts as "the token was refused" for the refresh-and-replay. Default: status 401.
   *  It gets a copy of the response (what the transport answered: a Response, or with a
   *  mini-program adapter its Response-like answer); reading its body is fine. */
  isUnauthorized?: (response: Response) => boolean | Promise<boolean>;
  /** POST, PUT, PATCH and DELETE requests to allowed origins get an Idempotency-Key
   *  (a random UUID; one you set is kept), the same on every replay and retry. Default false. */
  idempotencyKeys?: boolean;
  /** Send a request again after a network error, 429, 502, 503 or 504, up to this many times,
   *  when repeating it is safe (GET, HEAD, OPTIONS, PUT, DELETE, or any with an Idempotency-Key). Default 0, at most 10. */
  retries?: number;
  /** Header that carries a random device id (kept across logouts and reloads) to allowed origins, e.g. "X-Device-Id". */
  deviceIdHeader?: string;
  /** Sender-constrained tokens (RFC 9449): a non-extractable P-256 key (in IndexedDB, or memory),
   *  a DPoP proof on token requests and with every DPoP token sent. Needs crypto.subtle. Default false. */
  dpop?: boolean;
}

/** A token endpoint response (RFC 6749 s5.1). Unknown members are ignored. */
export interface TokenResponse {
  access_token: string;
  /** Must be Bearer (any case) when present. */
  token_type?: string;
  /** Seconds from receipt. */
  expires_in?: number | string;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
  [member: string]: unknown;
}

/** A decoded JWT payload. Not verified: for display and scheduling, never for authorization. */
export interface Claims {
  exp?: number;
  nbf?: number;
  iat?: number;
  sub?: string;
  iss?: string;
  aud?: string | string[];
  scope?: string;
  jti?: string;
  [claim: string]: unknown;
}

/** Errors Tessera raises: `code` is machine-readable ("invalid_grant", "no_tokens", "refresh_failed", ...). */
export interface TesseraError extends Error {
  code: string;
  /** On refresh failures: whether the session ended. */
  fatal?: boolean;
  /** While backing off after a failed refresh: seconds until the next try. */
  retryInSeconds?: number;
}

export interface TokensDetail { accessToken: string; expiresAt: number | undefined; }
export interface RefreshErrorDetail { fatal: boolean; error: TesseraError; retryInSeconds?: number; }
export interface ExpiredDetail {}
/** "duplicate": this tab is a copy of another (sessionStorage copied by "Duplicate tab" or window.open); the session lives on in the original. */
export interface LogoutDetail { reason: "user" | "remote" | "duplicate"; }
export interface StorageErrorDetail { error: unknown; storage: string; fallback: "memory"; }

/** Event names and the detail each listener receives. */
export interface TokenManagerEventMap {
  tokens: TokensDetail;
  refreshError: RefreshErrorDetail;
  expired: ExpiredDetail;
  logout: LogoutDetail;
  storageError: StorageErrorDetail;
}

export interface TokenManager {
  /** `fetch` with `Authorization: Bearer` added for allowed origins; same signature and Response as fetch. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Listens for an event; returns a function that removes the listener. */
  on<K extends keyof TokenManagerEventMap>(event: K, listener: (detail: TokenManagerEventMap[K]) => void): () => void;
}
"#;

/// Holds a user's OAuth 2.0 / JWT tokens, stores them, attaches them to
/// requests for allowed origins and refreshes them before they expire.
#[wasm_bindgen]
pub struct TokenManager {
    shared: Shared,
    ready: Promise,
}

#[wasm_bindgen]
impl TokenManager {
    /// Creates a manager and loads stored tokens (see `ready`).
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(unchecked_param_type = "TokenManagerOptions")] options: JsValue) -> Result<TokenManager, JsValue> {
        let opts = Options::from_js(&options)?;
        let (shared, ready) = driver::create(opts);
        Ok(TokenManager { shared, ready })
    }

    /// Resolves once stored tokens are loaded (at once for Web Storage).
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<void>")]
    pub fn ready(&self) -> Promise {
        self.ready.clone()
    }

    /// Installs a token response after sign-in. Throws (keeping the tokens
    /// held before) when it has no usable Bearer access token.
    #[wasm_bindgen(js_name = setTokens)]
    pub fn set_tokens(&self, #[wasm_bindgen(unchecked_param_type = "TokenResponse")] response: JsValue) -> Result<(), JsValue> {
        // One parser for every token response: the same code reads what the
        // token endpoint sends, so setTokens and refresh agree.
        let text = if response.is_object() { js_sys::JSON::stringify(&response).ok().and_then(|s| s.as_string()) } else { None };
        let text = text.ok_or_else(|| {
            Error::Options("setTokens expects the token response object ({ access_token, token_type, expires_in, ... })".into())
        })?;
        Ok(driver::set_tokens(&self.shared, &text)?)
    }

    /// The current access token, if any.
    #[wasm_bindgen(getter, js_name = accessToken)]
    pub fn access_token(&self) -> Option<String> {
        driver::read(&self.shared, |s, _| s.access_token().map(String::from)).flatten()
    }

    /// When the access token expires, in ms since the epoch, if known.
    #[wasm_bindgen(getter, js_name = expiresAt)]
    pub fn expires_at(&self) -> Option<f64> {
        driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.expires_at)).flatten()
    }

    /// The decoded (unverified) JWT payload; `undefined` for opaque tokens.
    #[wasm_bindgen(getter, unchecked_return_type = "Claims | undefined")]
    pub fn claims(&self) -> JsValue {
        let payload = driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.jwt()).map(|j| j.payload)).flatten();
        payload.and_then(|p| js_sys::JSON::parse(&p).ok()).unwrap_or(JsValue::UNDEFINED)
    }

    /// The granted scope, if the server said.
    #[wasm_bindgen(getter)]
    pub fn scope(&self) -> Option<String> {
        driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.scope.clone())).flatten()
    }

    /// Whether the access token is expired, or will be within `seconds`.
    /// False when there is no expiry to go by; true when there is no token.
    #[wasm_bindgen(js_name = isExpired)]
    pub fn is_expired(&self, seconds: Option<f64>) -> bool {
        let within = seconds.filter(|s| s.is_finite()).unwrap_or(0.0) * 1000.0;
        let now = js::now();
        driver::read(&self.shared, |s, _| s.is_expired(now, within)).unwrap_or(true)
    }

    /// Where tokens actually live: "localStorage", "sessionStorage", "memory" or "adapter".
    #[wasm_bindgen(getter, unchecked_return_type = "\"localStorage\" | \"sessionStorage\" | \"memory\" | \"adapter\"")]
    pub fn storage(&self) -> String {
        driver::read(&self.shared, |_, name| name).unwrap_or("memory").into()
    }

    /// When the automatic refresh (or its retry) is due, in ms since the
    /// epoch; `undefined` when none is planned.
    #[wasm_bindgen(getter, js_name = nextRefreshAt)]
    pub fn next_refresh_at(&self) -> Option<f64> {
        driver::read(&self.shared, |s, _| s.next_refresh_at()).flatten()
    }

    /// The device id sent under `deviceIdHeader`; `undefined` without that option.
    #[cfg(feature = "backends")]
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> Option<String> {
        driver::device_id(&self.shared)
    }

    /// Estimated server clock minus device clock, in ms.
    #[wasm_bindgen(getter, js_name = clockSkewMs)]
    pub fn clock_skew_ms(&self) -> f64 {
        driver::read(&self.shared, |s, _| s.skew()).unwrap_or(0.0)
    }

    /// Listens for "tokens", "refreshError", "expired", "logout" or
    /// "storageError"; returns a function that removes the listener.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, listener: JsValue) -> Result<JsValue, JsValue> {
        let kind = Kind::parse(event).ok_or_else(|| {
            Error::Options(["unknown event \"", event, "\"; events are tokens, refreshError, expired, logout, storageError"].concat())
        })?;
        let f: Function = listener.dyn_into().map_err(|_| Error::Options("on(event, listener): listener must be a function".into()))?;
        let id = driver::listen(&self.shared, Callback::Js(kind, f)).ok_or(Error::Disposed)?;
        let weak = std::rc::Rc::downgrade(&self.shared);
        Ok(Closure::<dyn FnMut()>::new(move || {
            if let Some(s) = weak.upgrade() {
                driver::unlisten(&s, id);
            }
        })
        .into_js_value())
    }

    /// `fetch` with `Authorization: Bearer` added for allowed origins.
    #[wasm_bindgen(skip_typescript)]
    pub fn fetch(&self, input: JsValue, init: Option<js_sys::Object>) -> Promise {
        let init = init.map_or(JsValue::UNDEFINED, JsValue::from);
        match driver::fetch_now(&self.shared, &input, &init) {
            Some(Ok(p)) => p,
            Some(Err(e)) => Promise::reject(&e),
            None => js::promise(driver::fetch::<JsValue>(self.shared.clone(), input, init)),
        }
    }

    /// A DPoP proof (RFC 9449) for a request the app sends itself: its
    /// sign-in at an authorization server that is not an allowed origin, or,
    /// with `accessToken`, a resource request (the proof then has `ath`).
    #[cfg(feature = "dpop")]
    #[wasm_bindgen(js_name = dpopProof, unchecked_return_type = "Promise<string>")]
    // JS values, not `String`s: the glue would copy each string into the
    // wasm with its own cleanup code (measured: 49 bytes gzipped); the
    // d.ts keeps its types through `unchecked_param_type`.
    pub fn dpop_proof(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] method: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] url: JsValue,
        #[wasm_bindgen(js_name = accessToken, unchecked_optional_param_type = "string")] access_token: JsValue,
    ) -> Promise {
        driver::dpop_proof_js(&self.shared, method, url, access_token)
    }

    /// A valid access token, refreshed first if expired or due.
    #[wasm_bindgen(js_name = getAccessToken, unchecked_return_type = "Promise<string>")]
    pub fn get_access_token(&self) -> Promise {
        let s = self.shared.clone();
        js::promise(async move {
            match driver::token_for(&s, Want::Token, None).await? {
                (_, Some(t)) => Ok(t.into()),
                (_, None) => Err(Error::NoTokens.into()),
            }
        })
    }

    /// Refreshes now (joining a refresh already running).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn refresh(&self) -> Promise {
        let s = self.shared.clone();
        js::promise(async move {
            driver::token_for(&s, Want::Refresh, None).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Clears tokens from memory and storage at once and emits "logout";
    /// the Promise settles after revocation (if configured) was attempted.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn logout(&self) -> Promise {
        driver::logout(&self.shared)
    }

    /// Catches up a refresh that came due while timers were paused: the app
    /// is back in the foreground or online (mini-programs' `onAppShow`).
    pub fn wake(&self) {
        driver::feed(&self.shared, Input::Wake { online: true });
    }

    /// Stops timers and listeners. Stored tokens stay for the next page.
    pub fn dispose(&self) {
        driver::dispose(&self.shared);
    }
}
