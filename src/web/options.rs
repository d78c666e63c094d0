//! The options object passed to `new TokenManager(...)`. The Rust builder
//! hands this same reader the object a JS caller would: one parser, one set
//! of rules and messages.
//!
//! Read key by key through js-sys rather than a serde derive: every error
//! names the option at fault ("option `autoRefresh` must be true or false"),
//! a typo is an error at construction instead of a silently ignored setting,
//! and serde's machinery stays out of the user's page.

use js_sys::{Function, Object};
use wasm_bindgen::{JsCast, JsValue};

use super::error::Error;
use super::js;
use crate::core::origin;
use crate::core::refresh::BodyFormat;

/// Where tokens are kept.
pub enum StorageChoice {
    /// `window.localStorage`: shared by tabs, survives restarts.
    Local,
    /// `window.sessionStorage`: one tab, survives reloads.
    Session,
    /// This manager only; gone on reload.
    Memory,
    /// `{ getItem, setItem, removeItem }`, sync or Promise-returning.
    Adapter(JsValue),
}

/// Parsed, validated options. Times are in milliseconds.
pub struct Options {
    /// `storage`.
    pub storage: StorageChoice,
    /// `storageKey`: the record's key, and the name of its lock and channel.
    /// Default `"tessera:" + clientId`, or `"tessera"` without a client id:
    /// two apps on one origin do not share a key unless told to.
    pub storage_key: String,
    /// `tokenEndpoint`, checked to be https or loopback http.
    pub token_endpoint: Option<String>,
    /// `revocationEndpoint`, checked likewise.
    pub revocation_endpoint: Option<String>,
    /// `clientId`.
    pub client_id: Option<String>,
    /// `scope`, sent with refreshes.
    pub scope: Option<String>,
    /// Normalised origins (see [`origin::of`]).
    pub allowed_origins: Vec<String>,
    /// `refreshMarginSeconds`, in ms.
    pub refresh_margin: f64,
    /// `leewaySeconds`, in ms.
    pub leeway: f64,
    /// `autoRefresh`.
    pub auto_refresh: bool,
    /// `retryOn401`.
    pub retry_on_401: bool,
    /// `timeoutSeconds`, in ms.
    pub timeout: f64,
    /// `refreshBodyFormat`.
    pub body_format: BodyFormat,
    /// `fetch`: the transport, if not the global one.
    pub fetch: Option<Function>,
    /// `syncTabs`.
    pub sync_tabs: bool,
    /// `refresh`: the app's own refresh call, instead of the refresh grant.
    pub refresh: Option<Function>,
    /// `isUnauthorized`: what counts as "the token was refused" (default: 401).
    pub is_unauthorized: Option<Function>,
    /// `idempotencyKeys`: an `Idempotency-Key` on changing requests.
    pub idempotency_keys: bool,
    /// `retries`: how many times a failed request that is safe to repeat is sent again.
    pub retries: u32,
    /// `deviceIdHeader`: the header that carries the device id to allowed origins.
    pub device_id_header: Option<String>,
    /// `dpop`: sender-constrained tokens (RFC 9449).
    pub dpop: bool,
}

/// The option names, for the unknown-option message.
const KNOWN: &str = "storage, storageKey, tokenEndpoint, revocationEndpoint, clientId, scope, allowedOrigins, \
refreshMarginSeconds, leewaySeconds, autoRefresh, retryOn401, timeoutSeconds, refreshBodyFormat, fetch, syncTabs, \
refresh, isUnauthorized, idempotencyKeys, retries, deviceIdHeader, dpop";

fn bad(name: &str, what: &str) -> Error {
    Error::Options(["option `", name, "` ", what].concat())
}

fn string(name: &str, v: &JsValue) -> Result<String, Error> {
    v.as_string().filter(|s| !s.is_empty()).ok_or_else(|| bad(name, "must be a non-empty string"))
}

fn function(name: &str, v: &JsValue, what: &str) -> Result<Function, Error> {
    v.clone().dyn_into().map_err(|_| bad(name, what))
}

/// A header name (RFC 9110 token characters).
#[cfg(feature = "backends")]
fn header_name(name: &str, v: &JsValue) -> Result<String, Error> {
    let h = string(name, v)?;
    let ok = h.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
    });
    if ok {
        Ok(h)
    } else {
        Err(bad(name, "must be a header name such as \"X-Device-Id\""))
    }
}

fn boolean(name: &str, v: &JsValue) -> Result<bool, Error> {
    v.as_bool().ok_or_else(|| bad(name, "must be true or false"))
}

/// A duration in seconds, at most `max` (a longer timer would overflow
/// `setTimeout`, which then fires at once), more than 0 where `positive`.
fn seconds(name: &str, v: &JsValue, positive: bool, max: (f64, &str)) -> Result<f64, Error> {
    let (max, max_text) = max;
    match v.as_f64() {
        Some(n) if n <= max && (n > 0.0 || (!positive && n == 0.0)) => Ok(n * 1000.0),
        _ => Err(bad(
            name,
            &["must be a number of seconds, ", if positive { "more than 0" } else { "0 or more" }, " and at most ", max_text].concat(),
        )),
    }
}

/// An endpoint URL that may receive refresh tokens: https, or http on
/// loopback, written as a URL parser writes it (what is checked is what a
/// transport sends to, whatever its own parser).
fn endpoint(name: &str, v: &JsValue) -> Result<String, Error> {
    let url = string(name, v)?;
    // The core's check, not the URL parser (the same on every host, and
    // no Url import): what is checked is what a transport sends to. User
    // info is refused too: fetch() throws on it, and it hides the host.
    match origin::of(&url) {
        Some(o) if !origin::may_carry_token(&o) => Err(bad(name, "must use https (plain http is allowed only for localhost/127.0.0.1)")),
        Some(_) if origin::canonical(&url) => Ok(url),
        Some(_) => Err(bad(
            name,
            "must be a URL as a URL parser writes it (lowercase scheme and host, no user info, no default port, no backslash, a path)",
        )),
        None => Err(bad(name, "must be an absolute http(s) URL")),
    }
}

/// Normalises an origin with the host's own URL parser where there is one
/// (punycode, IPv6), then with the core's fail-closed reader.
fn normalise_origin(s: &str) -> Option<String> {
    let via_url = web_sys::Url::new(s).ok().map(|u| u.origin());
    origin::of(via_url.as_deref().unwrap_or(s))
}

fn origins(v: &JsValue) -> Result<Vec<String>, Error> {
    let not_list = || bad("allowedOrigins", "must be an array of origin strings such as \"https://api.example.com\"");
    let arr: &js_sys::Array = v.dyn_ref().filter(|_| js_sys::Array::is_array(v)).ok_or_else(not_list)?;
    let list = arr.iter().map(|o| o.as_string()).collect::<Option<Vec<String>>>().ok_or_else(not_list)?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let o =
            normalise_origin(&s).ok_or_else(|| bad("allowedOrigins", &["has \"", &s, "\", which is not an http(s) origin"].concat()))?;
        if !origin::may_carry_token(&o) {
            return Err(bad(
                "allowedOrigins",
                &["has \"", &s, "\": tokens are only sent over https (or plain http to localhost)"].concat(),
            ));
        }
        out.push(o);
    }
    Ok(out)
}

fn storage(v: &JsValue) -> Result<StorageChoice, Error> {
    if let Some(s) = v.as_string() {
        return match s.as_str() {
            "localStorage" => Ok(StorageChoice::Local),
            "sessionStorage" => Ok(StorageChoice::Session),
            "memory" => Ok(StorageChoice::Memory),
            _ => Err(bad("storage", "must be \"localStorage\", \"sessionStorage\", \"memory\" or an adapter object")),
        };
    }
    if v.is_object() && ["getItem", "setItem", "removeItem"].iter().all(|m| js::method(v, m).is_some()) {
        return Ok(StorageChoice::Adapter(v.clone()));
    }
    Err(bad("storage", "adapter must have getItem, setItem and removeItem functions"))
}

/// The page's own origin, the default for `allowedOrigins`.
fn own_origin() -> Vec<String> {
    let location = js::get(&js::global(), "location");
    js::get(&location, "origin").as_string().and_then(|o| origin::of(&o)).filter(|o| origin::may_carry_token(o)).into_iter().collect()
}

impl Options {
    /// Reads and validates the options object (`undefined` means all defaults).
    pub fn from_js(v: &JsValue) -> Result<Options, Error> {
        let mut o = Options {
            storage: StorageChoice::Local,
            storage_key: "tessera".into(),
            token_endpoint: None,
            revocation_endpoint: None,
            client_id: None,
            scope: None,
            allowed_origins: Vec::new(),
            refresh_margin: 60_000.0,
            leeway: 5_000.0,
            auto_refresh: true,
            retry_on_401: true,
            timeout: 30_000.0,
            body_format: BodyFormat::Form,
            fetch: None,
            sync_tabs: true,
            refresh: None,
            is_unauthorized: None,
            idempotency_keys: false,
            retries: 0,
            device_id_header: None,
            dpop: false,
        };
        let mut origins_given = false;
        let mut key_given = false;
        if v.is_undefined() || v.is_null() {
            o.allowed_origins = own_origin();
            return Ok(o);
        }
        let obj: &Object = v.dyn_ref().filter(|_| !v.is_function()).ok_or_else(|| Error::Options("options must be an object".into()))?;
        for key in Object::keys(obj).iter() {
            let name = key.as_string().unwrap_or_default();
            let val = js::get(v, &name);
            if val.is_undefined() {
                continue;
            }
            match name.as_str() {
                // Options of a feature this build was made without. (`cfg`
                // on the arms: a constant guard would leave the arms below
                // compiled, their string comparisons not known to fail.)
                #[cfg(not(feature = "dpop"))]
                "dpop" => return Err(bad(&name, "needs Tessera built with its `dpop` feature")),
                #[cfg(not(feature = "backends"))]
                "refresh" | "isUnauthorized" | "idempotencyKeys" | "retries" | "deviceIdHeader" => {
                    return Err(bad(&name, "needs Tessera built with its `backends` feature"));
                }
                "storage" => o.storage = storage(&val)?,
                "storageKey" => {
                    o.storage_key = string(&name, &val)?;
                    key_given = true;
                }
                "tokenEndpoint" => o.token_endpoint = Some(endpoint(&name, &val)?),
                "revocationEndpoint" => o.revocation_endpoint = Some(endpoint(&name, &val)?),
                "clientId" => o.client_id = Some(string(&name, &val)?),
                "scope" => o.scope = Some(string(&name, &val)?),
                "allowedOrigins" => {
                    o.allowed_origins = origins(&val)?;
                    origins_given = true;
                }
                "refreshMarginSeconds" => o.refresh_margin = seconds(&name, &val, false, (86_400.0, "86400"))?,
                "leewaySeconds" => o.leeway = seconds(&name, &val, false, (600.0, "600"))?,
                "autoRefresh" => o.auto_refresh = boolean(&name, &val)?,
                "retryOn401" => o.retry_on_401 = boolean(&name, &val)?,
                "timeoutSeconds" => o.timeout = seconds(&name, &val, true, (300.0, "300"))?,
                "syncTabs" => o.sync_tabs = boolean(&name, &val)?,
                "refreshBodyFormat" => {
                    o.body_format = match val.as_string().as_deref() {
                        Some("form") => BodyFormat::Form,
                        Some("json") => BodyFormat::Json,
                        _ => return Err(bad(&name, "must be \"form\" or \"json\"")),
                    }
                }
                "fetch" => o.fetch = Some(function(&name, &val, "must be a function with fetch's signature")?),
                #[cfg(feature = "backends")]
                "refresh" => {
                    o.refresh = Some(function(&name, &val, "must be a function ({ refreshToken, signal }) => Promise<TokenResponse>")?);
                }
                #[cfg(feature = "backends")]
                "isUnauthorized" => {
                    o.is_unauthorized = Some(function(&name, &val, "must be a function (response) => boolean | Promise<boolean>")?);
                }
                #[cfg(feature = "backends")]
                "idempotencyKeys" => o.idempotency_keys = boolean(&name, &val)?,
                #[cfg(feature = "backends")]
                "retries" => {
                    o.retries = match val.as_f64() {
                        Some(n) if n.fract() == 0.0 && (0.0..=10.0).contains(&n) => n as u32,
                        _ => return Err(bad(&name, "must be a whole number from 0 to 10")),
                    }
                }
                #[cfg(feature = "backends")]
                "deviceIdHeader" => o.device_id_header = Some(header_name(&name, &val)?),
                #[cfg(feature = "dpop")]
                "dpop" => o.dpop = boolean(&name, &val)?,
                _ => return Err(Error::Options(["unknown option `", &name, "`; known options: ", KNOWN].concat())),
            }
        }
        if !origins_given {
            o.allowed_origins = own_origin();
        }
        if let (false, Some(c)) = (key_given, &o.client_id) {
            o.storage_key = ["tessera:", c].concat();
        }
        if o.dpop {
            super::dpop::available(matches!(o.storage, StorageChoice::Memory)).map_err(|m| Error::Options(m.into()))?;
        }
        if o.refresh.is_some() && o.token_endpoint.is_some() {
            return Err(bad("refresh", "replaces the refresh grant: give `refresh` or `tokenEndpoint`, not both"));
        }
        Ok(o)
    }

    /// What the stored record is bound to (F2): the client id and how it
    /// refreshes. A manager with another binding never adopts the record,
    /// so it never sends its tokens to its own origins or presents its
    /// refresh token at its own endpoint.
    pub fn client_binding(&self) -> String {
        let how = match (&self.token_endpoint, &self.refresh) {
            (Some(ep), _) => ep.as_str(),
            (None, Some(_)) => "refresh()",
            (None, None) => "",
        };
        [self.client_id.as_deref().unwrap_or(""), "|", how].concat()
    }
}
