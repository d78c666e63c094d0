//! The one error type: what a caller is told when Tessera refuses, fails or
//! gives up. The JS boundary turns it into an `Error` with `code` (and
//! `fatal`, `retryInSeconds`); the Rust API hands it over as is.

use super::json;
use super::refresh::Failure;
use super::schedule::Millis;
use super::token::TokenError;

/// Everything that can go wrong for a caller of the manager.
///
/// ```
/// let e = tessera::Error::NoTokens;
/// assert_eq!(e.code(), "no_tokens");                 // `error.code` in JS
/// assert!(e.to_string().starts_with("Tessera:"));   // the JS `Error`'s message
/// ```
#[derive(Clone, Debug, PartialEq)]
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
    /// The refresh grant failed (the token endpoint's answer, or its silence).
    Refresh(Failure),
    /// A refresh failed a moment ago and the next try is not due yet: the
    /// token endpoint is not asked again before then.
    BackingOff {
        /// The failure that started the back-off.
        failure: Failure,
        /// How long until the next try.
        retry_in: Millis,
    },
    /// The session changed (logout, new sign-in, another tab) while the
    /// request waited: it is not sent with any token.
    Superseded,
    /// `dispose()` was called.
    Disposed,
    /// The transport failed outside a refresh.
    Network,
}

impl Error {
    /// A short machine-readable code (`error.code` on the JS side).
    ///
    /// ```
    /// assert_eq!(tessera::Error::Superseded.code(), "superseded");
    /// ```
    pub fn code(&self) -> &str {
        match self {
            Error::Options(_) => "invalid_options",
            Error::Token(_) => "invalid_token_response",
            Error::NoTokens => "no_tokens",
            Error::Expired => "expired",
            Error::CannotRefresh(_) => "cannot_refresh",
            Error::Refresh(Failure::Fatal { code, .. }) => code,
            Error::Refresh(_) | Error::BackingOff { .. } => "refresh_failed",
            Error::Superseded => "superseded",
            Error::Disposed => "disposed",
            Error::Network => "network_error",
        }
    }

    /// For refresh failures: whether the session ended.
    ///
    /// ```
    /// assert_eq!(tessera::Error::NoTokens.fatal(), None);
    /// ```
    pub fn fatal(&self) -> Option<bool> {
        match self {
            Error::Refresh(f) => Some(f.is_fatal()),
            Error::BackingOff { .. } => Some(false),
            _ => None,
        }
    }

    /// For back-off refusals: whole seconds until the next try.
    ///
    /// ```
    /// assert_eq!(tessera::Error::Disposed.retry_in_seconds(), None);
    /// ```
    pub fn retry_in_seconds(&self) -> Option<f64> {
        match self {
            Error::BackingOff { retry_in, .. } => Some((retry_in / 1000.0).ceil().max(1.0)),
            _ => None,
        }
    }

    /// A message a person can act on. Never contains a token.
    ///
    /// ```
    /// assert!(tessera::Error::Disposed.message().contains("dispose"));
    /// ```
    pub fn message(&self) -> String {
        let m = match self {
            Error::Options(m) => m.clone(),
            Error::Token(e) => ["setTokens: ", &e.message(), "; the tokens held before are unchanged"].concat(),
            Error::NoTokens => "no tokens: call setTokens() after sign-in".into(),
            Error::Expired => "the access token has expired and there is no refresh token or refresh grant to renew it".into(),
            Error::CannotRefresh(why) => ["cannot refresh: ", why].concat(),
            Error::Refresh(f) => ["refresh failed: ", &f.message()].concat(),
            Error::BackingOff { failure, retry_in } => {
                let mut m = ["refresh failed: ", &failure.message(), "; not trying again for "].concat();
                json::write_num(&mut m, (retry_in / 1000.0).ceil().max(1.0));
                m.push_str(" s");
                m
            }
            Error::Superseded => {
                "the session changed (logout, a new sign-in, or another tab) while the request waited; it was not sent".into()
            }
            Error::Disposed => "the manager was disposed".into(),
            Error::Network => "the request could not be sent (network error)".into(),
        };
        ["Tessera: ", &m].concat()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {}
