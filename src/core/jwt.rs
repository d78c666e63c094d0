//! Reading (never verifying) JWTs.
//!
//! A browser client cannot hold the key that would make a signature check
//! meaningful, so Tessera does not verify signatures: claims are for display
//! and scheduling, never for authorization decisions (RFC 8725 s3.10).

use super::json::Json;

/// Latest NumericDate taken at face value (9999-12-31T23:59:59Z); larger
/// values are treated as garbage rather than as "never expires".
pub const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// Why a token is not a readable JWT. Such a token is still a valid,
/// opaque access token (RFC 6749 s1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three dot-separated segments (JWE has five; opaque tokens have any).
    Segments,
    /// A segment is not base64url.
    Base64,
    /// The payload is not UTF-8.
    Utf8,
    /// Header or payload is not a JSON object.
    NotObject,
}

/// The registered claims Tessera reads, typed where present and sane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Expiry, seconds since the epoch (may be fractional).
    pub exp: Option<f64>,
    /// Not-before, seconds since the epoch.
    pub nbf: Option<f64>,
    /// Issued-at, seconds since the epoch.
    pub iat: Option<f64>,
    /// Subject.
    pub sub: Option<String>,
    /// Issuer.
    pub iss: Option<String>,
    /// Audience(s): a string or an array of strings in the token.
    pub aud: Vec<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`,
    /// RFC 9449 s6.1).
    pub jkt: Option<String>,
    /// An ID token's `nonce` (OpenID Connect Core 3.1.3.7).
    pub nonce: Option<String>,
    /// An ID token's authorized party (`azp`).
    pub azp: Option<String>,
}

/// A decoded JWT: the typed claims and the payload text, so the JS side can
/// hand the whole claims object to the page without Tessera re-encoding it.
#[derive(Clone, PartialEq)]
pub struct Jwt {
    /// The `alg` header, shown for diagnostics only (`none` is read like any other).
    pub alg: Option<String>,
    /// Typed registered claims.
    pub claims: Claims,
    /// The payload JSON text, exactly as the issuer wrote it.
    pub payload: String,
}

impl std::fmt::Debug for Jwt {
    // Claims can carry personal data: keep them out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt(..)")
    }
}

fn segment(s: &str) -> Result<Vec<u8>, JwtError> {
    base64url(s).ok_or(JwtError::Base64)
}

/// Decodes base64url (RFC 4648 s5) with or without `=` padding, as JWT
/// issuers disagree on it. Strict otherwise: no other alphabet, no
/// whitespace, no stray padding, no non-zero leftover bits. A dozen lines
/// instead of the base64 crate's general engine: about 3 KB less wasm.
pub fn base64url(s: &str) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    // Padding, when present, may only fill up the last quantum.
    if (pad > 0 && (body.len() % 4 == 0 || body.len() % 4 + pad > 4)) || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// Encodes bytes as base64url without padding (RFC 4648 s5): session and
/// device ids, and (DPoP) JWS segments.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(*A.get(((acc >> bits) & 63) as usize).unwrap_or(&b'A')));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(*A.get(((acc << (6 - bits)) & 63) as usize).unwrap_or(&b'A')));
    }
    out
}

fn object(bytes: Vec<u8>) -> Result<(String, Json), JwtError> {
    let text = String::from_utf8(bytes).map_err(|_| JwtError::Utf8)?;
    match Json::parse(&text) {
        Some(v @ Json::Obj(_)) => Ok((text, v)),
        _ => Err(JwtError::NotObject),
    }
}

/// A NumericDate claim, ignored when it is not a positive, finite number
/// within year 9999: expiry is a hint for clients (RFC 9068 s6), and a bad
/// hint must not make a token look dead or immortal.
fn numeric_date(v: Option<&Json>) -> Option<f64> {
    v.and_then(Json::as_f64).filter(|n| *n > 0.0 && *n <= MAX_NUMERIC_DATE)
}

fn string(v: Option<&Json>) -> Option<String> {
    v.and_then(Json::as_str).map(String::from)
}

/// Decodes a compact JWS without checking its signature.
pub fn decode(token: &str) -> Result<Jwt, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Segments);
    };
    let (_, header) = object(segment(h)?)?;
    let (payload, body) = object(segment(p)?)?;
    let aud = match body.get("aud") {
        Some(Json::Str(s)) => vec![s.clone()],
        Some(Json::Arr(items)) => items.iter().filter_map(|a| a.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    };
    let claims = Claims {
        exp: numeric_date(body.get("exp")),
        nbf: numeric_date(body.get("nbf")),
        iat: numeric_date(body.get("iat")),
        sub: string(body.get("sub")),
        iss: string(body.get("iss")),
        aud,
        scope: string(body.get("scope")),
        jkt: string(body.get("cnf").and_then(|c| c.get("jkt"))),
        nonce: string(body.get("nonce")),
        azp: string(body.get("azp")),
    };
    Ok(Jwt { alg: string(header.get("alg")), claims, payload })
}
