//! DPoP (RFC 9449) without the crypto: the proof's header and claims as JSON
//! text, the `htu` of a request, and what a server's answer asks of the
//! client. Signing and hashing are WebCrypto's, in the web layer: no crypto
//! code in the wasm.

use super::json::{self, Json};

/// The JOSE header of a proof for a P-256 public key (`x`, `y` base64url).
pub fn header(x: &str, y: &str) -> String {
    let mut out = String::from(r#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"#);
    json::write_str(&mut out, x);
    out.push_str(r#","y":"#);
    json::write_str(&mut out, y);
    out.push_str("}}");
    out
}

/// What a P-256 public key's thumbprint (RFC 7638) is the SHA-256 of:
/// its required members in lexicographic order, no spaces. The base64url
/// of the digest is the `jkt` a record and a DPoP-bound token name the key by.
///
/// ```
/// assert_eq!(tessera::core::dpop::thumbprint_input("X", "Y"), r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#);
/// ```
pub fn thumbprint_input(x: &str, y: &str) -> String {
    let mut out = String::from(r#"{"crv":"P-256","kty":"EC","x":"#);
    json::write_str(&mut out, x);
    out.push_str(r#","y":"#);
    json::write_str(&mut out, y);
    out.push('}');
    out
}

/// The claims of a proof (RFC 9449 s4.2): a unique `jti`, the method, the
/// URL without query and fragment, the issue time in seconds on the server's
/// clock, and the server's nonce if it gave one. Left open: [`finish`]
/// closes it, with the access token's hash if the proof goes with one (the
/// hash is WebCrypto's, awaited after these are taken).
pub fn claims(jti: &str, htm: &str, htu: &str, iat: f64, nonce: Option<&str>) -> String {
    let mut out = String::from(r#"{"jti":"#);
    json::write_str(&mut out, jti);
    out.push_str(r#","htm":"#);
    json::write_str(&mut out, htm);
    out.push_str(r#","htu":"#);
    json::write_str(&mut out, htu);
    out.push_str(r#","iat":"#);
    json::write_num(&mut out, iat.floor());
    if let Some(n) = nonce {
        out.push_str(r#","nonce":"#);
        json::write_str(&mut out, n);
    }
    out
}

/// Closes [`claims`], with `ath` (base64url SHA-256 of the access token)
/// when the proof goes with one.
pub fn finish(mut claims: String, ath: Option<&str>) -> String {
    if let Some(h) = ath {
        claims.push_str(r#","ath":"#);
        json::write_str(&mut claims, h);
    }
    claims.push('}');
    claims
}

/// The `htu` claim: the request URL without query and fragment (RFC 9449 s4.2).
pub fn htu(url: &str) -> &str {
    let end = url.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(url.len());
    url.get(..end).unwrap_or(url)
}

/// What a server's DPoP answer asks of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Send the proof again with the nonce it gave (`use_dpop_nonce`).
    UseNonce,
    /// The proof was refused (`invalid_dpop_proof`): its time may have been
    /// off; the answer's `Date` tells the server's clock.
    InvalidProof,
}

/// Reads a DPoP challenge: a token endpoint's `400 {"error": ...}` (RFC 9449
/// s8) or a resource's `401` with `WWW-Authenticate: DPoP error="..."` (s9).
pub fn challenge(status: u16, www_authenticate: Option<&str>, body: &str) -> Option<Challenge> {
    let error = match status {
        400 => Json::parse(body)?.get("error")?.as_str()?.to_string(),
        401 => String::new(),
        _ => return None,
    };
    let h = www_authenticate.unwrap_or("").as_bytes();
    // In a 401 the code is an auth-param, `error="use_dpop_nonce"` or
    // `error=use_dpop_nonce`: both codes are DPoP's own, so whichever
    // scheme carries it, it is DPoP's. Compared by bytes: a substring
    // search would bring a string search algorithm into the wasm.
    let is = |code: &str| {
        let c = code.as_bytes();
        error == code
            || (status == 401
                && (0..h.len()).any(|i| {
                    let before = h.get(..i).unwrap_or_default();
                    h.get(i..i + c.len()) == Some(c) && before.strip_suffix(b"\"").unwrap_or(before).ends_with(b"error=")
                }))
    };
    if is("use_dpop_nonce") {
        Some(Challenge::UseNonce)
    } else if is("invalid_dpop_proof") {
        Some(Challenge::InvalidProof)
    } else {
        None
    }
}
