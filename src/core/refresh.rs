//! The refresh exchange (RFC 6749 s6) without the network: building the
//! request body and deciding what a response means.

use super::json::{self, Json};
use super::schedule::Millis;
use super::token::{self, TokenError, TokenSet};

/// OAuth error codes that mean the refresh token (or the client) is dead:
/// retrying cannot help, so the session ends (RFC 6749 s5.2).
pub const FATAL_CODES: [&str; 3] = ["invalid_grant", "invalid_client", "unauthorized_client"];

/// Why a refresh did not produce tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The server rejected the grant: tokens must be dropped.
    Fatal {
        /// The OAuth `error` code.
        code: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// Worth retrying later; tokens are kept.
    Transient {
        /// What went wrong.
        cause: Transient,
        /// The server's `Retry-After`, in ms, if it sent one.
        retry_after: Option<Millis>,
    },
}

/// Kinds of transient failure.
#[derive(Clone, Debug, PartialEq)]
pub enum Transient {
    /// The request did not complete (offline, DNS, CORS, reset).
    Network,
    /// No answer within the configured timeout.
    Timeout,
    /// An HTTP status that is not success and not a fatal OAuth error.
    Status(u16, Option<String>),
    /// A success status whose body is not a usable token response.
    BadResponse(TokenError),
    /// Another tab holds the refresh and its request is still on the wire:
    /// presenting the same refresh token now would look like theft.
    Busy,
    /// The app's own refresh function threw (without `fatal: true`); its
    /// message, if any.
    Custom(Option<String>),
}

impl Failure {
    /// Whether the session is over.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Failure::Fatal { .. })
    }

    /// A message a developer can act on; never contains a token.
    pub fn message(&self) -> String {
        match self {
            Failure::Fatal { code, description } => {
                let mut m = ["the token endpoint rejected the refresh token (", code, ")"].concat();
                if let Some(d) = description {
                    m.push_str(": ");
                    m.extend(d.chars().take(200));
                }
                m.push_str("; the user must sign in again");
                m
            }
            Failure::Transient { cause, .. } => match cause {
                Transient::Network => "the token endpoint could not be reached (network error)".into(),
                Transient::Timeout => "the token endpoint did not answer in time".into(),
                Transient::Status(s, code) => {
                    let mut m = String::from("the token endpoint answered HTTP ");
                    json::write_num(&mut m, f64::from(*s));
                    if let Some(c) = code {
                        m.push_str(" (");
                        m.extend(c.chars().take(60));
                        m.push(')');
                    }
                    m
                }
                Transient::BadResponse(e) => ["the token endpoint sent an unusable response: ", &e.message()].concat(),
                Transient::Busy => "another tab is refreshing and has not finished yet".into(),
                Transient::Custom(m) => {
                    let mut out = String::from("the refresh function failed");
                    if let Some(m) = m {
                        out.push_str(": ");
                        out.extend(m.chars().take(200));
                    }
                    out
                }
            },
        }
    }
}

/// Reads `Retry-After` given as delay-seconds; HTTP-dates are ignored
/// (the backoff still applies).
pub fn parse_retry_after(v: Option<&str>) -> Option<Millis> {
    let n: u32 = v?.trim().parse().ok()?;
    Some(f64::from(n) * 1000.0)
}

/// Decides what a token endpoint answer means. New tokens come with the
/// clock skew they show, if any (see [`token::read`]).
pub fn classify(
    status: u16,
    body: &str,
    retry_after: Option<&str>,
    received_at: Millis,
    skew: Millis,
) -> Result<(TokenSet, Option<Millis>), Failure> {
    let parsed = Json::parse(token::strip_bom(body));
    let code = parsed.as_ref().and_then(|v| v.get("error")).and_then(Json::as_str).map(String::from);
    if (200..300).contains(&status) {
        let err = match &parsed {
            Some(v) => match token::read(v, received_at, skew) {
                Ok(t) => return Ok(t),
                Err(e) => e,
            },
            None => TokenError::NotJson,
        };
        // A 200 carrying an OAuth error is non-standard but seen in the wild.
        if let Some(c) = code {
            return Err(error_code(status, c, parsed.as_ref(), retry_after));
        }
        return Err(Failure::Transient { cause: Transient::BadResponse(err), retry_after: None });
    }
    // RFC 6749 s5.2: 401 is invalid_client. Gateways and HTTP Basic client
    // authentication often answer it with a bare challenge and no OAuth body;
    // retrying cannot help, so it ends the session like any fatal code.
    if status == 401 {
        let code = code.filter(|c| FATAL_CODES.contains(&c.as_str())).unwrap_or_else(|| "invalid_client".into());
        return Err(error_code(status, code, parsed.as_ref(), retry_after));
    }
    match code {
        Some(c) if status < 500 && status != 429 => Err(error_code(status, c, parsed.as_ref(), retry_after)),
        c => Err(Failure::Transient { cause: Transient::Status(status, c), retry_after: parse_retry_after(retry_after) }),
    }
}

fn error_code(status: u16, code: String, body: Option<&Json>, retry_after: Option<&str>) -> Failure {
    if FATAL_CODES.contains(&code.as_str()) {
        let description = body.and_then(|v| v.get("error_description")).and_then(Json::as_str).map(String::from);
        Failure::Fatal { code, description }
    } else {
        // invalid_request, invalid_scope, temporarily_unavailable...: the
        // refresh token may still be good, so keep the session and back off.
        Failure::Transient { cause: Transient::Status(status, Some(code)), retry_after: parse_retry_after(retry_after) }
    }
}

/// How the refresh request body is encoded.
///
/// ```
/// assert_eq!(tessera::BodyFormat::Json.content_type(), "application/json");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`, as RFC 6749 requires.
    Form,
    /// `application/json`, for non-standard backends.
    Json,
}

impl BodyFormat {
    /// The Content-Type header value.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Form => "application/x-www-form-urlencoded",
            BodyFormat::Json => "application/json",
        }
    }
}

/// Encodes name/value pairs as a request body in `format`.
pub fn encode_body(format: BodyFormat, pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    match format {
        BodyFormat::Form => {
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push('&');
                }
                form_escape(&mut out, k);
                out.push('=');
                form_escape(&mut out, v);
            }
        }
        BodyFormat::Json => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json::write_str(&mut out, k);
                out.push(':');
                json::write_str(&mut out, v);
            }
            out.push('}');
        }
    }
    out
}

/// application/x-www-form-urlencoded escaping (WHATWG URL, "urlencoded serializer").
fn form_escape(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(*HEX.get(usize::from(b >> 4)).unwrap_or(&b'0')));
                out.push(char::from(*HEX.get(usize::from(b & 15)).unwrap_or(&b'0')));
            }
        }
    }
}

/// The refresh request's parameters (RFC 6749 s6).
pub fn refresh_params<'a>(refresh_token: &'a str, client_id: Option<&'a str>, scope: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    if let Some(c) = client_id {
        p.push(("client_id", c));
    }
    if let Some(s) = scope {
        p.push(("scope", s));
    }
    p
}

/// Why an app's own refresh call (the Rust API's `Builder::refresh`) failed: `fatal` when the refresh token is dead (the
/// session ends), otherwise transient (the manager backs off and retries).
///
/// ```
/// let e = tessera::RefreshError::fatal("refresh token revoked");
/// assert!(e.fatal);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshError {
    /// The refresh token will never work again.
    pub fatal: bool,
    /// What went wrong, for the `refreshError` event.
    pub message: String,
}

impl RefreshError {
    /// The refresh token is dead: the session ends.
    ///
    /// ```
    /// assert!(tessera::RefreshError::fatal("expired").fatal);
    /// ```
    pub fn fatal(message: impl Into<String>) -> RefreshError {
        RefreshError { fatal: true, message: message.into() }
    }

    /// Try again later (offline, a 5xx): the manager backs off.
    ///
    /// ```
    /// assert!(!tessera::RefreshError::transient("offline").fatal);
    /// ```
    pub fn transient(message: impl Into<String>) -> RefreshError {
        RefreshError { fatal: false, message: message.into() }
    }
}
