//! The errors the web layer raises, and how they become JS `Error`s.

use wasm_bindgen::JsValue;

use super::js;
use crate::core::refresh::Failure;
use crate::core::token::TokenError;

/// Everything that can go wrong at the JS boundary.
#[derive(Debug)]
pub enum Error {
    /// An option is unknown or of the wrong type; the text says which and why.
    Options(String),
    /// A token response passed to `setTokens` was refused.
    Token(TokenError),
    /// There are no tokens (never set, logged out, or cleared after a fatal refresh).
    NoTokens,
    /// The access token has expired and cannot be refreshed.
    Expired,
    /// A refresh was asked for but is not possible; the text says why.
    CannotRefresh(&'static str),
    /// The token endpoint's answer (or silence).
    Refresh(Failure),
    /// The session changed (logout, new tokens) while a refresh was running.
    Superseded,
    /// The transport threw or rejected outside a refresh.
    Transport(JsValue),
}

impl Error {
    /// A short machine-readable code, set as `error.code` on the JS side.
    pub fn code(&self) -> &str {
        match self {
            Error::Options(_) => "invalid_options",
            Error::Token(_) => "invalid_token_response",
            Error::NoTokens => "no_tokens",
            Error::Expired => "expired",
            Error::CannotRefresh(_) => "cannot_refresh",
            Error::Refresh(Failure::Fatal { code, .. }) => code,
            Error::Refresh(_) => "refresh_failed",
            Error::Superseded => "superseded",
            Error::Transport(_) => "network_error",
        }
    }

    /// A message a person can act on. Never contains a token.
    pub fn message(&self) -> String {
        let m = match self {
            Error::Options(m) => m.clone(),
            Error::Token(e) => ["setTokens: ", &e.message(), "; the tokens held before are unchanged"].concat(),
            Error::NoTokens => "no tokens: call setTokens() after sign-in".into(),
            Error::Expired => "the access token has expired and there is no refresh token or tokenEndpoint to renew it".into(),
            Error::CannotRefresh(why) => ["cannot refresh: ", why].concat(),
            Error::Refresh(f) => ["refresh failed: ", &f.message()].concat(),
            Error::Superseded => "the session changed (logout or new tokens) while the refresh was running".into(),
            Error::Transport(_) => "the request could not be sent (network error)".into(),
        };
        ["Tessera: ", &m].concat()
    }

    /// The JS `Error`, with `code`, and `fatal` for refresh failures; the
    /// transport's own error is kept as `cause`.
    pub fn to_js(&self) -> JsValue {
        let e = js_sys::Error::new(&self.message());
        let v: JsValue = e.into();
        let _ = js_sys::Reflect::set(&v, &"code".into(), &JsValue::from_str(self.code()));
        if let Error::Refresh(f) = self {
            let _ = js_sys::Reflect::set(&v, &"fatal".into(), &JsValue::from_bool(f.is_fatal()));
        }
        if let Error::Transport(cause) = self {
            let _ = js_sys::Reflect::set(&v, &"cause".into(), cause);
        }
        v
    }
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        e.to_js()
    }
}

/// `{ error }`-style detail objects carry the same `Error` a promise rejects with.
pub fn detail_with_error(e: &Error, extra: &[(&str, JsValue)]) -> JsValue {
    let mut pairs = vec![("error", e.to_js())];
    pairs.extend(extra.iter().cloned());
    js::object(&pairs)
}
