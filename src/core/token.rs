//! Token responses (RFC 6749 s5.1) and the token set a manager holds.

use super::json::Json;
use super::jwt::{self, Jwt};
use super::schedule::{self, Millis};

/// What a manager holds for one signed-in user.
#[derive(Clone, PartialEq)]
pub struct TokenSet {
    /// The Bearer access token, opaque or a JWT.
    pub access_token: String,
    /// The refresh token, if the server issued one.
    pub refresh_token: Option<String>,
    /// Device-clock expiry in ms, if known.
    pub expires_at: Option<Millis>,
    /// Device-clock receipt time in ms; anchors the refresh schedule.
    pub received_at: Millis,
    /// Granted scope, if the server said.
    pub scope: Option<String>,
    /// An OpenID Connect ID token, if the response carried one.
    pub id_token: Option<String>,
    /// The session these tokens belong to: made at sign-in, kept by every
    /// refresh, stored with the record. "Is this still the same session?" is
    /// one comparison of this id (empty until the session assigns one).
    pub sid: String,
    /// `token_type` was DPoP (RFC 9449): the token is bound to the DPoP key
    /// and goes as `Authorization: DPoP`, with a proof.
    pub dpop: bool,
    /// When the session began, as a hybrid logical clock (ms on the device
    /// clock, and always after every session this manager knew of): tells
    /// a crossed write-back of an older session from a newer sign-in.
    pub born: f64,
    /// How many refreshes this session had: tells an older copy of the
    /// same session (a write that crossed a refresh) from a newer one.
    pub gen: u32,
    /// The thumbprint (RFC 7638) of the DPoP key the tokens are bound to,
    /// kept with the record so every tab uses, and keeps, that key.
    pub jkt: Option<String>,
    /// Refreshes in a row that brought tokens living under 10 s: each one
    /// doubles the least time before the next refresh (no storm from a
    /// token endpoint that answers `expires_in: 0`).
    pub brief: u32,
    /// Refreshes in a row made because a server refused the token (a 401):
    /// each one doubles how old a refused token must be before it is
    /// refreshed again (no storm from an API that refuses every token).
    pub refused: u32,
}

impl std::fmt::Debug for TokenSet {
    // Tokens must never reach a log, a panic message or the console.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSet(..)")
    }
}

impl TokenSet {
    /// The access token read as a JWT, when it is one.
    pub fn jwt(&self) -> Option<Jwt> {
        jwt::decode(&self.access_token).ok()
    }

    /// The refresh rotation rule (RFC 6749 s6): a new refresh token replaces
    /// the old one; a response without one keeps the old one.
    pub fn inherit_refresh_token(mut self, previous: Option<&TokenSet>) -> TokenSet {
        if self.refresh_token.is_none() {
            self.refresh_token = previous.and_then(|p| p.refresh_token.clone());
        }
        self
    }
}

/// Why a token response was refused. The tokens held before stay as they were.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenError {
    /// The body is not JSON.
    NotJson,
    /// The body is JSON but not an object.
    NotObject,
    /// `access_token` is missing, empty or not a string.
    MissingAccessToken,
    /// `access_token` has characters a Bearer header cannot carry (RFC 6750 s2.1).
    UnsendableAccessToken,
    /// `token_type` is not Bearer; the value is kept for the message.
    UnsupportedTokenType(String),
    /// `access_token` is larger than [`MAX_TOKEN_BYTES`]: no server takes a
    /// header that long, and storage quotas would break on it.
    TooLarge(usize),
}

/// The largest access token accepted (64 KB); servers refuse headers of
/// 8 to 64 KB, so anything larger cannot work.
pub const MAX_TOKEN_BYTES: usize = 65_536;

impl TokenError {
    /// A message a developer can act on. Never contains the token itself.
    pub fn message(&self) -> String {
        match self {
            TokenError::NotJson => "the token response is not JSON (or is nested too deeply)".into(),
            TokenError::TooLarge(n) => {
                let mut m = String::from("the access_token is ");
                super::json::write_num(&mut m, *n as f64);
                m.push_str(" bytes, more than the 65536 any server accepts in a header");
                m
            }
            TokenError::NotObject => "the token response is not a JSON object".into(),
            TokenError::MissingAccessToken => "the token response has no access_token (a non-empty string is required)".into(),
            TokenError::UnsendableAccessToken => {
                "the access_token has characters that cannot be sent in an Authorization header (RFC 6750 allows letters, digits and -._~+/=)".into()
            }
            TokenError::UnsupportedTokenType(t) if t == "DPoP" => "token_type \"DPoP\" needs the `dpop` option (RFC 9449)".into(),
            TokenError::UnsupportedTokenType(t) => {
                let shown: String = t.chars().take(40).collect();
                ["token_type \"", &shown, "\" is not supported: Tessera sends Bearer and DPoP tokens"].concat()
            }
        }
    }
}

/// RFC 6750 s2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// `expires_in` as servers send it: a non-negative number, or (tolerated, as
/// some servers do) a numeric string. Anything else means "not given".
fn expires_in(v: Option<&Json>) -> Option<f64> {
    let n = match v? {
        Json::Num(n) => *n,
        Json::Str(s) => super::json::parse_number(s)?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n)
}

fn non_empty(v: Option<&Json>) -> Option<String> {
    v.and_then(Json::as_str).filter(|s| !s.is_empty()).map(String::from)
}

/// Reads a parsed token response received at `received_at` (device clock);
/// `skew` is the best known server-minus-device clock difference in ms. When
/// the token itself shows a different skew, that wins and is returned too.
pub fn read(v: &Json, received_at: Millis, skew: Millis) -> Result<(TokenSet, Option<Millis>), TokenError> {
    if !matches!(v, Json::Obj(_)) {
        return Err(TokenError::NotObject);
    }
    let access_token = non_empty(v.get("access_token")).ok_or(TokenError::MissingAccessToken)?;
    // token_type is required by RFC 6749, but some backends omit it from
    // refresh responses; a missing type is read as Bearer, a wrong one refused.
    // DPoP is read here; a manager without `dpop` refuses it (RFC 6749 s7.1).
    let dpop = matches!(v.get("token_type"), Some(Json::Str(t)) if t.eq_ignore_ascii_case("dpop"));
    match v.get("token_type") {
        None | Some(Json::Null) => {}
        Some(Json::Str(t)) if t.eq_ignore_ascii_case("bearer") || dpop => {}
        Some(Json::Str(t)) => return Err(TokenError::UnsupportedTokenType(t.clone())),
        Some(_) => return Err(TokenError::UnsupportedTokenType("(not a string)".into())),
    }
    if access_token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(access_token.len()));
    }
    if !is_b64token(&access_token) {
        return Err(TokenError::UnsendableAccessToken);
    }
    let claims = jwt::decode(&access_token).ok().map(|j| j.claims);
    let exp = claims.as_ref().and_then(|c| c.exp);
    // The key a DPoP token is bound to, where the token says (RFC 9449 s6.1).
    let jkt = claims.as_ref().and_then(|c| c.jkt.clone()).filter(|_| dpop);
    let iat = claims.as_ref().and_then(|c| c.iat);
    let ein = expires_in(v.get("expires_in"));
    let inferred = schedule::infer_skew(received_at, ein, exp, iat);
    let tokens = TokenSet {
        expires_at: schedule::expires_at(received_at, ein, exp, inferred.unwrap_or(skew)),
        access_token,
        refresh_token: non_empty(v.get("refresh_token")),
        received_at,
        scope: non_empty(v.get("scope")),
        id_token: non_empty(v.get("id_token")),
        sid: String::new(),
        dpop,
        born: 0.0,
        gen: 0,
        jkt,
        brief: 0,
        refused: 0,
    };
    Ok((tokens, inferred))
}

/// [`read`] without the skew it may have inferred.
pub fn from_json(v: &Json, received_at: Millis, skew: Millis) -> Result<TokenSet, TokenError> {
    read(v, received_at, skew).map(|(t, _)| t)
}

/// Parses a token response body (JSON text).
pub fn parse(text: &str, received_at: Millis, skew: Millis) -> Result<TokenSet, TokenError> {
    parse_with_skew(text, received_at, skew).map(|(t, _)| t)
}

/// Drops one leading byte order mark: browsers' `Response.text()` strips it,
/// but Response-like transports and native bridges may hand it over, and
/// RFC 8259 s8.1 lets a parser ignore it.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses a token response body, also returning the skew it shows, if any.
pub fn parse_with_skew(text: &str, received_at: Millis, skew: Millis) -> Result<(TokenSet, Option<Millis>), TokenError> {
    let v = Json::parse(strip_bom(text)).ok_or(TokenError::NotJson)?;
    read(&v, received_at, skew)
}

/// A token endpoint's answer (RFC 6749 s5.1), for
/// `TokenManager::set_tokens` and a custom refresh
/// (the Rust API).
///
/// ```
/// let t = tessera::TokenResponse::new("eyJhbGciOi...").expires_in(3600).refresh_token("r1");
/// assert_eq!(t.expires_in, Some(3600));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct TokenResponse {
    /// The access token (a JWT or opaque).
    pub access_token: String,
    /// `Bearer` (any case) or `DPoP` when present.
    pub token_type: Option<String>,
    /// Seconds from receipt.
    pub expires_in: Option<u64>,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<String>,
    /// The granted scope.
    pub scope: Option<String>,
    /// An OpenID Connect ID token.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    // Tokens never reach a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse(..)")
    }
}

impl TokenResponse {
    /// A response carrying `access_token` only.
    ///
    /// ```
    /// let t = tessera::TokenResponse::new("opaque-token");
    /// assert_eq!(t.access_token, "opaque-token");
    /// ```
    pub fn new(access_token: impl Into<String>) -> TokenResponse {
        TokenResponse { access_token: access_token.into(), ..TokenResponse::default() }
    }

    /// With `expires_in` seconds.
    ///
    /// ```
    /// let t = tessera::TokenResponse::new("t").expires_in(60);
    /// assert_eq!(t.expires_in, Some(60));
    /// ```
    #[must_use]
    pub fn expires_in(mut self, seconds: u64) -> TokenResponse {
        self.expires_in = Some(seconds);
        self
    }

    /// With a refresh token.
    ///
    /// ```
    /// let t = tessera::TokenResponse::new("t").refresh_token("r");
    /// assert_eq!(t.refresh_token.as_deref(), Some("r"));
    /// ```
    #[must_use]
    pub fn refresh_token(mut self, token: impl Into<String>) -> TokenResponse {
        self.refresh_token = Some(token.into());
        self
    }

    /// The JSON text the core reads: the same parser as a token endpoint's
    /// body, so `set_tokens` and a refresh agree on what is valid.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"access_token\":");
        super::json::write_str(&mut out, &self.access_token);
        let strings = [
            ("token_type", &self.token_type),
            ("refresh_token", &self.refresh_token),
            ("scope", &self.scope),
            ("id_token", &self.id_token),
        ];
        for (name, v) in strings {
            if let Some(v) = v {
                out.push_str(&[",\"", name, "\":"].concat());
                super::json::write_str(&mut out, v);
            }
        }
        if let Some(s) = self.expires_in {
            out.push_str(",\"expires_in\":");
            super::json::write_num(&mut out, s as f64);
        }
        out.push('}');
        out
    }
}
