//! The Rust API, for Rust frontends (Leptos, Yew, Dioxus) and
//! `wasm-pack test`: a typed builder, futures instead of Promises, one
//! [`Error`] enum, and events as [`Event`] values. It is a second front door
//! onto the driver the JS API uses (`src/web/driver.rs`): every behaviour has
//! one implementation, and nothing here is exported to JS, so the npm
//! package does not carry it.

use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::Duration;

use js_sys::{Function, Promise};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Request, RequestInit, Response};

use super::driver::{self, FetchError, Shared};
use super::events::Callback;
use super::js;
use super::options::Options;
pub use crate::core::error::Error;
use crate::core::json::Json;
use crate::core::jwt::{self, Jwt};
pub use crate::core::refresh::{BodyFormat, RefreshError};
pub use crate::core::session::Event;
use crate::core::session::Want;
pub use crate::core::token::TokenResponse;

/// Holds a user's tokens: stores them, attaches them to requests for the
/// allowed origins, and refreshes them before they expire, once, however
/// many requests and tabs race.
///
/// A cheap handle: clones share one manager (put it in your framework's
/// context). Timers, listeners and the tab channel are released when the
/// last clone is dropped, or at [`dispose`](TokenManager::dispose).
///
/// ```no_run
/// # async fn run() -> Result<(), tessera::Error> {
/// use tessera::{Storage, TokenManager};
///
/// let tm = TokenManager::builder()
///     .storage(Storage::Local)
///     .client_id("spa")
///     .token_endpoint("https://auth.example.com/oauth/token")
///     .allowed_origins(["https://api.example.com"])
///     .build()?;
/// tm.ready().await;
/// let orders = tm.fetch_with_str("https://api.example.com/orders").await?;
/// # let _ = orders;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    shared: Shared,
    ready: Promise,
}

impl std::fmt::Debug for TokenManager {
    // Tokens never reach a log: only where they live and whether there are any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager").field("storage", &self.storage()).field("signed_in", &self.access_token().is_some()).finish()
    }
}

/// Where tokens are kept.
///
/// ```no_run
/// let tm = tessera::TokenManager::builder().storage(tessera::Storage::Session).build();
/// # let _ = tm;
/// ```
#[derive(Clone)]
pub enum Storage {
    /// `localStorage`: shared by the origin's tabs, survives restarts (the default).
    Local,
    /// `sessionStorage`: one tab, survives reloads.
    Session,
    /// This manager only: gone on reload.
    Memory,
    /// The host's own storage (a mini-program's, a native bridge).
    Adapter(Rc<dyn StorageAdapter>),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::Local => "Local",
            Storage::Session => "Session",
            Storage::Memory => "Memory",
            Storage::Adapter(_) => "Adapter(..)",
        })
    }
}

impl Storage {
    /// Host storage from a [`StorageAdapter`].
    ///
    /// ```no_run
    /// use std::{cell::RefCell, collections::HashMap};
    /// use tessera::{Storage, StorageAdapter};
    ///
    /// #[derive(Default)]
    /// struct Bridge(RefCell<HashMap<String, String>>);
    ///
    /// impl StorageAdapter for Bridge {
    ///     fn get_item(&self, key: &str) -> Option<String> {
    ///         self.0.borrow().get(key).cloned()
    ///     }
    ///     fn set_item(&self, key: &str, value: &str) -> Result<(), String> {
    ///         self.0.borrow_mut().insert(key.into(), value.into());
    ///         Ok(())
    ///     }
    ///     fn remove_item(&self, key: &str) -> Result<(), String> {
    ///         self.0.borrow_mut().remove(key);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let storage = Storage::adapter(Bridge::default());
    /// # let _ = storage;
    /// ```
    pub fn adapter(a: impl StorageAdapter + 'static) -> Storage {
        Storage::Adapter(Rc::new(a))
    }
}

/// Host storage, synchronous. A method that fails (`Err` with what went
/// wrong) makes the manager carry on in memory and emit
/// [`Event::StorageError`], as a throwing JS adapter does. Writes are
/// queued in order and made after the current task.
///
/// ```no_run
/// struct Native;
/// impl tessera::StorageAdapter for Native {
///     fn get_item(&self, _key: &str) -> Option<String> { None /* ask the host */ }
///     fn set_item(&self, _key: &str, _value: &str) -> Result<(), String> { Ok(()) }
///     fn remove_item(&self, _key: &str) -> Result<(), String> { Ok(()) }
/// }
/// let storage = tessera::Storage::adapter(Native);
/// # let _ = storage;
/// ```
pub trait StorageAdapter {
    /// The value stored under `key`, if any.
    fn get_item(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key`.
    fn set_item(&self, key: &str, value: &str) -> Result<(), String>;
    /// Removes `key`.
    fn remove_item(&self, key: &str) -> Result<(), String>;
}

/// What a custom [`refresh`](Builder::refresh) is given.
///
/// ```no_run
/// async fn refresh(r: tessera::RefreshRequest) -> Result<tessera::TokenResponse, tessera::RefreshError> {
///     let init = web_sys::RequestInit::new();
///     init.set_method("POST");
///     init.set_signal(Some(&r.signal)); // aborted on logout, dispose, timeout
///     init.set_body(&format!(r#"{{"refresh_token":"{}"}}"#, r.refresh_token).into());
///     # let _ = init;
///     Err(tessera::RefreshError::transient("sketch"))
/// }
/// ```
pub struct RefreshRequest {
    /// The refresh token to present.
    pub refresh_token: String,
    /// Aborts on logout, dispose and after the timeout: pass it on to the request.
    pub signal: AbortSignal,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshRequest(..)")
    }
}

/// The access token's claims, decoded and **not verified**: for display and
/// scheduling, never for authorization.
///
/// ```no_run
/// # fn show(tm: &tessera::TokenManager) {
/// if let Some(c) = tm.claims() {
///     let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("?");
///     let sub = c.registered().sub.as_deref();
///     // With serde: serde_json::from_str::<MyClaims>(c.json())
///     # let _ = (name, sub);
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Claims {
    jwt: Jwt,
    parsed: Json,
}

impl std::fmt::Debug for Claims {
    // Claims can carry personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claims(..)")
    }
}

impl Claims {
    /// The registered claims Tessera reads (`exp`, `sub`, `aud`, ...), typed.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let audience = tm.claims().map(|c| c.registered().aud.clone()).unwrap_or_default();
    /// # let _ = audience;
    /// # }
    /// ```
    pub fn registered(&self) -> &jwt::Claims {
        &self.jwt.claims
    }

    /// Any claim, as JSON (the last one on duplicates, as `JSON.parse`).
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let tenant = tm.claims().and_then(|c| c.get("tenant").and_then(|t| t.as_str()).map(String::from));
    /// # let _ = tenant;
    /// # }
    /// ```
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.parsed.get(name)
    }

    /// The payload's JSON text as the issuer wrote it: hand it to serde for
    /// your own claims type (Tessera does not pull serde into your page).
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// // With serde_json: serde_json::from_str::<MyClaims>(c.json())
    /// let text = tm.claims().map(|c| c.json().to_string());
    /// # let _ = text;
    /// # }
    /// ```
    pub fn json(&self) -> &str {
        &self.jwt.payload
    }
}

/// Removes its listener when dropped.
///
/// ```no_run
/// # fn show_sign_in(_why: &str) {}
/// # fn watch(tm: &tessera::TokenManager) {
/// let sub = tm.on(|e| {
///     if let tessera::Event::Logout(reason) = e {
///         show_sign_in(reason.as_str());
///     }
/// });
/// drop(sub); // no more events
/// # }
/// ```
#[must_use = "the listener is removed when the Subscription is dropped"]
pub struct Subscription {
    shared: Weak<std::cell::RefCell<driver::Driver>>,
    id: u32,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish()
    }
}

impl Subscription {
    /// Keeps the listener for the manager's life.
    ///
    /// ```no_run
    /// # fn show(_line: &str) {}
    /// # fn watch(tm: &tessera::TokenManager) {
    /// tm.on(|e| show(&format!("{e:?}"))).forget();
    /// # }
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            driver::unlisten(&s, self.id);
        }
    }
}

/// Collects options for [`TokenManager`]; [`build`](Builder::build) checks
/// them with the JS constructor's rules and messages. Defaults as in the
/// README's options table.
///
/// ```no_run
/// # fn make() -> Result<tessera::TokenManager, tessera::Error> {
/// use std::time::Duration;
/// let tm = tessera::TokenManager::builder()
///     .storage_key("shop")
///     .refresh_margin(Duration::from_secs(120))
///     .retries(2)
///     .build()?;
/// # Ok(tm)
/// # }
/// ```
#[must_use = "a Builder does nothing until build() is called"]
#[derive(Default)]
pub struct Builder {
    storage: Option<Storage>,
    storage_key: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    allowed_origins: Option<Vec<String>>,
    refresh_margin: Option<Duration>,
    leeway: Option<Duration>,
    auto_refresh: Option<bool>,
    retry_on_401: Option<bool>,
    timeout: Option<Duration>,
    body_format: Option<BodyFormat>,
    fetch: Option<Function>,
    sync_tabs: Option<bool>,
    refresh: Option<Function>,
    is_unauthorized: Option<Function>,
    idempotency_keys: Option<bool>,
    retries: Option<u32>,
    device_id_header: Option<String>,
    dpop: Option<bool>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("storage", &self.storage).field("storage_key", &self.storage_key).finish_non_exhaustive()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $conv:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Builder {
            self.$name = Some($conv(value));
            self
        }
    )*};
}

impl Builder {
    setters! {
        /// Where tokens are kept (`storage`). Default [`Storage::Local`].
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().storage(tessera::Storage::Session);
        /// # let _ = b;
        /// ```
        storage: Storage => std::convert::identity;
        /// The stored record's key (`storageKey`). Default `"tessera:" + client_id`.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().storage_key("shop");
        /// # let _ = b;
        /// ```
        storage_key: impl Into<String> => Into::into;
        /// The token endpoint for the refresh grant (`tokenEndpoint`): https, or http on localhost.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().token_endpoint("https://auth.example.com/token");
        /// # let _ = b;
        /// ```
        token_endpoint: impl Into<String> => Into::into;
        /// The RFC 7009 revocation endpoint, called by `logout()` (`revocationEndpoint`).
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().revocation_endpoint("https://auth.example.com/revoke");
        /// # let _ = b;
        /// ```
        revocation_endpoint: impl Into<String> => Into::into;
        /// The OAuth client id (`clientId`); it also names the default storage key.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().client_id("spa");
        /// # let _ = b;
        /// ```
        client_id: impl Into<String> => Into::into;
        /// Sent with refresh requests (`scope`).
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().scope("orders:read");
        /// # let _ = b;
        /// ```
        scope: impl Into<String> => Into::into;
        /// How long before expiry to refresh (`refreshMarginSeconds`), capped at half the lifetime. Default 60 s.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().refresh_margin(std::time::Duration::from_secs(30));
        /// # let _ = b;
        /// ```
        refresh_margin: Duration => std::convert::identity;
        /// Treat tokens as expired this much early, for clock skew (`leewaySeconds`). Default 5 s.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().leeway(std::time::Duration::from_secs(2));
        /// # let _ = b;
        /// ```
        leeway: Duration => std::convert::identity;
        /// Refresh by timer before expiry (`autoRefresh`). Default true.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().auto_refresh(false);
        /// # let _ = b;
        /// ```
        auto_refresh: bool => std::convert::identity;
        /// After a refusal from an allowed origin, refresh once and replay once (`retryOn401`). Default true.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().retry_on_401(false);
        /// # let _ = b;
        /// ```
        retry_on_401: bool => std::convert::identity;
        /// Token endpoint timeout (`timeoutSeconds`), more than zero. Default 30 s.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().timeout(std::time::Duration::from_secs(10));
        /// # let _ = b;
        /// ```
        timeout: Duration => std::convert::identity;
        /// The refresh request's body (`refreshBodyFormat`). Default form (RFC 6749).
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().body_format(tessera::BodyFormat::Json);
        /// # let _ = b;
        /// ```
        body_format: BodyFormat => std::convert::identity;
        /// Follow other tabs' changes to the same key (`syncTabs`). Default true.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().sync_tabs(false);
        /// # let _ = b;
        /// ```
        sync_tabs: bool => std::convert::identity;
        /// An `Idempotency-Key` on POST, PUT, PATCH and DELETE to allowed origins (`idempotencyKeys`). Default false.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().idempotency_keys(true);
        /// # let _ = b;
        /// ```
        idempotency_keys: bool => std::convert::identity;
        /// Repeats of a request that is safe to repeat, after a network error or 429/502/503/504 (`retries`), at most 10. Default 0.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().retries(3);
        /// # let _ = b;
        /// ```
        retries: u32 => std::convert::identity;
        /// The header carrying a random device id to allowed origins (`deviceIdHeader`).
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().device_id_header("X-Device-Id");
        /// # let _ = b;
        /// ```
        device_id_header: impl Into<String> => Into::into;
        /// Sender-constrained tokens, RFC 9449 (`dpop`). Default false.
        ///
        /// ```no_run
        /// let b = tessera::TokenManager::builder().dpop(true);
        /// # let _ = b;
        /// ```
        dpop: bool => std::convert::identity;
    }

    /// The origins that get the token (`allowedOrigins`). Default: the page's own origin.
    ///
    /// ```no_run
    /// let b = tessera::TokenManager::builder().allowed_origins(["https://api.example.com"]);
    /// # let _ = b;
    /// ```
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(mut self, origins: I) -> Builder {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// The transport for every request the manager makes (`fetch`), instead
    /// of the global `fetch`: a test double, a host bridge.
    ///
    /// ```no_run
    /// use wasm_bindgen::JsCast;
    /// use wasm_bindgen_futures::JsFuture;
    ///
    /// let b = tessera::TokenManager::builder().fetch(|req: web_sys::Request| async move {
    ///     let window = web_sys::window().ok_or(tessera::Error::Network)?;
    ///     let resp = JsFuture::from(window.fetch_with_request(&req)).await.map_err(|_| tessera::Error::Network)?;
    ///     resp.dyn_into::<web_sys::Response>().map_err(|_| tessera::Error::Network)
    /// });
    /// # let _ = b;
    /// ```
    pub fn fetch<F, Fut>(mut self, f: F) -> Builder
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Result<Response, Error>> + 'static,
    {
        let call = move |input: JsValue, init: JsValue| -> Promise {
            match request(&input, &init) {
                Ok(r) => {
                    let answer = f(r);
                    js::promise(async move { answer.await.map(JsValue::from).map_err(JsValue::from) })
                }
                Err(e) => Promise::reject(&e),
            }
        };
        self.fetch = Some(Closure::<dyn Fn(JsValue, JsValue) -> Promise>::new(call).into_js_value().unchecked_into());
        self
    }

    /// The app's own refresh call instead of the refresh grant (`refresh`;
    /// then no `token_endpoint`).
    ///
    /// ```no_run
    /// use tessera::{RefreshError, RefreshRequest, TokenResponse};
    ///
    /// async fn my_refresh(r: RefreshRequest) -> Result<TokenResponse, RefreshError> {
    ///     // POST r.refresh_token to your backend with r.signal; read its answer
    ///     # let _ = r;
    ///     Err(RefreshError::transient("offline"))
    /// }
    ///
    /// let b = tessera::TokenManager::builder().refresh(my_refresh);
    /// # let _ = b;
    /// ```
    pub fn refresh<F, Fut>(mut self, f: F) -> Builder
    where
        F: Fn(RefreshRequest) -> Fut + 'static,
        Fut: Future<Output = Result<TokenResponse, RefreshError>> + 'static,
    {
        let call = move |arg: JsValue| -> Promise {
            let refresh_token = js::get(&arg, "refreshToken").as_string().unwrap_or_default();
            let signal = js::get(&arg, "signal").unchecked_into();
            let answer = f(RefreshRequest { refresh_token, signal });
            js::promise(async move {
                match answer.await {
                    Ok(t) => js_sys::JSON::parse(&t.to_json()),
                    Err(e) => {
                        let err: JsValue = js_sys::Error::new(&e.message).into();
                        let _ = js_sys::Reflect::set(&err, &"fatal".into(), &e.fatal.into());
                        Err(err)
                    }
                }
            })
        };
        self.refresh = Some(Closure::<dyn Fn(JsValue) -> Promise>::new(call).into_js_value().unchecked_into());
        self
    }

    /// What counts as "the token was refused" for the refresh-and-replay
    /// (`isUnauthorized`); default: status 401. It gets a copy of the
    /// response, whose body it may read.
    ///
    /// ```no_run
    /// use wasm_bindgen_futures::JsFuture;
    ///
    /// // A backend that answers HTTP 200 {"code": 403, ...} for an expired token.
    /// let b = tessera::TokenManager::builder().is_unauthorized(|resp: web_sys::Response| async move {
    ///     let Ok(text) = resp.text() else { return false };
    ///     let body = JsFuture::from(text).await.ok().and_then(|t| t.as_string()).unwrap_or_default();
    ///     body.contains("\"code\":403")
    /// });
    /// # let _ = b;
    /// ```
    pub fn is_unauthorized<F, Fut>(mut self, f: F) -> Builder
    where
        F: Fn(Response) -> Fut + 'static,
        Fut: Future<Output = bool> + 'static,
    {
        let call = move |resp: JsValue| -> Promise {
            let answer = f(resp.unchecked_into());
            js::promise(async move { Ok(answer.await.into()) })
        };
        self.is_unauthorized = Some(Closure::<dyn Fn(JsValue) -> Promise>::new(call).into_js_value().unchecked_into());
        self
    }

    /// Checks the options and starts the manager: stored tokens are loaded
    /// (see [`TokenManager::ready`]), timers and tab sync start.
    ///
    /// ```no_run
    /// let err = tessera::TokenManager::builder().token_endpoint("http://auth.example.com/token").build().unwrap_err();
    /// assert_eq!(err.code(), "invalid_options");
    /// ```
    pub fn build(self) -> Result<TokenManager, Error> {
        // One parser: the builder hands the JS constructor's reader the
        // object a JS caller would, so the rules, defaults and messages are
        // the same by construction, and the JS package carries no second copy.
        let secs = |d: Duration| JsValue::from(d.as_secs_f64());
        let mut pairs: Vec<(&str, JsValue)> = Vec::new();
        if let Some(s) = self.storage {
            pairs.push((
                "storage",
                match s {
                    Storage::Local => "localStorage".into(),
                    Storage::Session => "sessionStorage".into(),
                    Storage::Memory => "memory".into(),
                    Storage::Adapter(a) => adapter(a),
                },
            ));
        }
        let strings = [
            ("storageKey", self.storage_key),
            ("tokenEndpoint", self.token_endpoint),
            ("revocationEndpoint", self.revocation_endpoint),
            ("clientId", self.client_id),
            ("scope", self.scope),
            ("deviceIdHeader", self.device_id_header),
        ];
        pairs.extend(strings.into_iter().filter_map(|(k, v)| v.map(|v| (k, JsValue::from(v)))));
        let flags = [
            ("autoRefresh", self.auto_refresh),
            ("retryOn401", self.retry_on_401),
            ("syncTabs", self.sync_tabs),
            ("idempotencyKeys", self.idempotency_keys),
            ("dpop", self.dpop),
        ];
        pairs.extend(flags.into_iter().filter_map(|(k, v)| v.map(|v| (k, JsValue::from(v)))));
        let times = [("refreshMarginSeconds", self.refresh_margin), ("leewaySeconds", self.leeway), ("timeoutSeconds", self.timeout)];
        pairs.extend(times.into_iter().filter_map(|(k, v)| v.map(|v| (k, secs(v)))));
        if let Some(list) = self.allowed_origins {
            pairs.push(("allowedOrigins", list.into_iter().map(JsValue::from).collect::<js_sys::Array>().into()));
        }
        if let Some(f) = self.body_format {
            pairs.push(("refreshBodyFormat", if f == BodyFormat::Json { "json" } else { "form" }.into()));
        }
        if let Some(n) = self.retries {
            pairs.push(("retries", n.into()));
        }
        let functions = [("fetch", self.fetch), ("refresh", self.refresh), ("isUnauthorized", self.is_unauthorized)];
        pairs.extend(functions.into_iter().filter_map(|(k, v)| v.map(|f| (k, JsValue::from(f)))));
        let (shared, ready) = driver::create(Options::from_js(&js::object(&pairs))?);
        Ok(TokenManager { shared, ready })
    }
}

/// The Request a custom transport is given, from fetch's `(input, init)`.
fn request(input: &JsValue, init: &JsValue) -> Result<Request, JsValue> {
    let init: RequestInit = if init.is_object() { init.clone().unchecked_into() } else { RequestInit::new() };
    match input.dyn_ref::<Request>() {
        Some(r) => Request::new_with_request_and_init(r, &init),
        None => Request::new_with_str_and_init(&input.as_string().unwrap_or_default(), &init),
    }
}

/// A JS storage object over a Rust [`StorageAdapter`]: the driver reads
/// every storage through one shape.
fn adapter(a: Rc<dyn StorageAdapter>) -> JsValue {
    let thrown = |m: String| -> JsValue { js_sys::Error::new(&m).into() };
    let (g, s, r) = (a.clone(), a.clone(), a);
    let get = Closure::<dyn Fn(String) -> Option<String>>::new(move |k: String| g.get_item(&k));
    let set = Closure::<dyn Fn(String, String) -> Result<(), JsValue>>::new(move |k: String, v: String| s.set_item(&k, &v).map_err(thrown));
    let remove = Closure::<dyn Fn(String) -> Result<(), JsValue>>::new(move |k: String| r.remove_item(&k).map_err(thrown));
    js::object(&[("getItem", get.into_js_value()), ("setItem", set.into_js_value()), ("removeItem", remove.into_js_value())])
}

impl TokenManager {
    /// Starts a [`Builder`].
    ///
    /// ```no_run
    /// let tm = tessera::TokenManager::builder().storage(tessera::Storage::Memory).build();
    /// # let _ = tm;
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Completes once stored tokens are loaded (at once for Web Storage; an
    /// adapter may take longer).
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) {
    /// tm.ready().await;
    /// let signed_in = tm.access_token().is_some();
    /// # let _ = signed_in;
    /// # }
    /// ```
    pub fn ready(&self) -> impl Future<Output = ()> + 'static {
        let p = self.ready.clone();
        async move {
            let _ = JsFuture::from(p).await;
        }
    }

    /// Installs tokens after sign-in. On `Err` the tokens held before stay.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager, access: String, refresh: String) -> Result<(), tessera::Error> {
    /// tm.set_tokens(&tessera::TokenResponse::new(access).expires_in(900).refresh_token(refresh))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_tokens(&self, response: &TokenResponse) -> Result<(), Error> {
        driver::set_tokens(&self.shared, &response.to_json())
    }

    /// Installs tokens from a token endpoint's JSON body, as it came.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager, body: &str) -> Result<(), tessera::Error> {
    /// tm.set_tokens_json(body)?; // {"access_token": "...", "expires_in": 900, ...}
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_tokens_json(&self, body: &str) -> Result<(), Error> {
        driver::set_tokens(&self.shared, body)
    }

    /// The current access token, if any (it may be expired: see
    /// [`access_token_fresh`](TokenManager::access_token_fresh)).
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let signed_in = tm.access_token().is_some();
    /// # let _ = signed_in;
    /// # }
    /// ```
    pub fn access_token(&self) -> Option<String> {
        driver::read(&self.shared, |s, _| s.access_token().map(String::from)).flatten()
    }

    /// When the access token expires, in ms since the epoch, if known.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let left_ms = tm.expires_at().map(|at| at - js_sys::Date::now());
    /// # let _ = left_ms;
    /// # }
    /// ```
    pub fn expires_at(&self) -> Option<f64> {
        driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.expires_at)).flatten()
    }

    /// The access token's claims (a JWT's payload; `None` for an opaque
    /// token). Not verified.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let sub = tm.claims().and_then(|c| c.registered().sub.clone());
    /// # let _ = sub;
    /// # }
    /// ```
    pub fn claims(&self) -> Option<Claims> {
        let jwt = driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.jwt())).flatten()?;
        let parsed = Json::parse(&jwt.payload)?;
        Some(Claims { jwt, parsed })
    }

    /// The granted scope, if the server said.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let can_write = tm.scope().is_some_and(|s| s.split(' ').any(|x| x == "orders:write"));
    /// # let _ = can_write;
    /// # }
    /// ```
    pub fn scope(&self) -> Option<String> {
        driver::read(&self.shared, |s, _| s.tokens().and_then(|t| t.scope.clone())).flatten()
    }

    /// Whether the access token is expired, or will be `within` from now.
    /// False when there is no expiry to go by; true when there is no token.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let soon = tm.is_expired(std::time::Duration::from_secs(30));
    /// # let _ = soon;
    /// # }
    /// ```
    pub fn is_expired(&self, within: Duration) -> bool {
        let now = js::now();
        driver::read(&self.shared, |s, _| s.is_expired(now, within.as_secs_f64() * 1000.0)).unwrap_or(true)
    }

    /// Where tokens live now: "localStorage", "sessionStorage", "memory"
    /// (also after storage failed) or "adapter".
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let persisted = tm.storage() != "memory";
    /// # let _ = persisted;
    /// # }
    /// ```
    pub fn storage(&self) -> &'static str {
        driver::read(&self.shared, |_, name| name).unwrap_or("memory")
    }

    /// When the automatic refresh (or its retry) is due, ms since the epoch.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let planned = tm.next_refresh_at().is_some();
    /// # let _ = planned;
    /// # }
    /// ```
    pub fn next_refresh_at(&self) -> Option<f64> {
        driver::read(&self.shared, |s, _| s.next_refresh_at()).flatten()
    }

    /// The device id sent under `device_id_header`; `None` without it.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let id = tm.device_id();
    /// # let _ = id;
    /// # }
    /// ```
    pub fn device_id(&self) -> Option<String> {
        driver::device_id(&self.shared)
    }

    /// Estimated server clock minus device clock, in ms.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) {
    /// let skew = tm.clock_skew_ms();
    /// # let _ = skew;
    /// # }
    /// ```
    pub fn clock_skew_ms(&self) -> f64 {
        driver::read(&self.shared, |s, _| s.skew()).unwrap_or(0.0)
    }

    /// Sends `request` with the token attached when it goes to an allowed
    /// origin; after a refusal there, one refresh (shared with every other
    /// caller) and one replay; retries as configured. Any HTTP answer is
    /// `Ok`; `Err` when it could not be sent (`Network`) or was not sent
    /// (the session ended meanwhile: `Superseded`, or no tokens could be had).
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) -> Result<(), tessera::Error> {
    /// let req = web_sys::Request::new_with_str("https://api.example.com/orders").map_err(|_| tessera::Error::Network)?;
    /// let resp = tm.fetch(&req).await?;
    /// # let _ = resp;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fetch(&self, request: &Request) -> impl Future<Output = Result<Response, Error>> + 'static {
        send(self.shared.clone(), request.into())
    }

    /// [`fetch`](TokenManager::fetch) of a GET to `url`.
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) -> Result<(), tessera::Error> {
    /// let resp = tm.fetch_with_str("https://api.example.com/me").await?;
    /// # let _ = resp;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fetch_with_str(&self, url: &str) -> impl Future<Output = Result<Response, Error>> + 'static {
        send(self.shared.clone(), url.into())
    }

    /// A valid access token, refreshed first when expired or due: for a
    /// request the app sends another way (a WebSocket, a download URL).
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) -> Result<(), tessera::Error> {
    /// let token = tm.access_token_fresh().await?;
    /// # let _ = token;
    /// # Ok(())
    /// # }
    /// ```
    pub fn access_token_fresh(&self) -> impl Future<Output = Result<String, Error>> + 'static {
        let s = self.shared.clone();
        async move {
            match driver::token_for(&s, Want::Token, None).await? {
                (_, Some(t)) => Ok(t),
                (_, None) => Err(Error::NoTokens),
            }
        }
    }

    /// Refreshes now, joining a refresh already running.
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) -> Result<(), tessera::Error> {
    /// tm.refresh().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn refresh(&self) -> impl Future<Output = Result<(), Error>> + 'static {
        let s = self.shared.clone();
        async move { driver::token_for(&s, Want::Refresh, None).await.map(|_| ()) }
    }

    /// Ends the session at once (memory, storage, other tabs, an
    /// [`Event::Logout`]); completes once the revocation, if configured, was
    /// attempted.
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) {
    /// tm.logout().await;
    /// assert!(tm.access_token().is_none());
    /// # }
    /// ```
    pub fn logout(&self) -> impl Future<Output = ()> + 'static {
        let p = driver::logout(&self.shared);
        async move {
            let _ = JsFuture::from(p).await;
        }
    }

    /// A DPoP proof (RFC 9449) for a request the app sends itself; with
    /// `access_token`, the proof carries its hash (`ath`). Needs `dpop(true)`.
    ///
    /// ```no_run
    /// # async fn run(tm: tessera::TokenManager) -> Result<(), tessera::Error> {
    /// let proof = tm.dpop_proof("POST", "https://auth.example.com/token", None).await?;
    /// # let _ = proof;
    /// # Ok(())
    /// # }
    /// ```
    pub fn dpop_proof(&self, method: &str, url: &str, access_token: Option<&str>) -> impl Future<Output = Result<String, Error>> + 'static {
        driver::dpop_proof(self.shared.clone(), method.into(), url.into(), access_token.map(String::from))
    }

    /// Calls `listener` with every event, until the [`Subscription`] is
    /// dropped. A listener may call back into the manager.
    ///
    /// ```no_run
    /// # fn run(tm: &tessera::TokenManager) -> tessera::Subscription {
    /// use tessera::Event;
    /// tm.on(|e| match e {
    ///     Event::Tokens { expires_at, .. } => { let _ = expires_at; }
    ///     Event::Expired | Event::Logout(_) => { /* back to the sign-in page */ }
    ///     _ => {}
    /// })
    /// # }
    /// ```
    pub fn on(&self, listener: impl Fn(&Event) + 'static) -> Subscription {
        let id = driver::listen(&self.shared, Callback::Rust(Rc::new(listener))).unwrap_or(0);
        Subscription { shared: Rc::downgrade(&self.shared), id }
    }

    /// Stops timers, listeners and tab sync now (dropping the last clone
    /// does the same). Stored tokens stay for the next page.
    ///
    /// ```no_run
    /// # fn run(tm: tessera::TokenManager) {
    /// tm.dispose();
    /// # }
    /// ```
    pub fn dispose(&self) {
        driver::dispose(&self.shared);
    }
}

/// `fetch` for the Rust API: the driver's one implementation, its answer
/// typed.
async fn send(shared: Shared, input: JsValue) -> Result<Response, Error> {
    match driver::fetch::<FetchError>(shared, input, JsValue::UNDEFINED).await {
        Ok(v) => v.dyn_into::<Response>().map_err(|_| Error::Network),
        Err(FetchError::Tessera(e)) => Err(*e),
        Err(FetchError::Transport(_)) => Err(Error::Network),
    }
}
