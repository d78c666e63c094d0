//! The fuzz targets' invariants, shared with the host test that replays
//! every input saved under fuzz/regressions/ (tests/fuzz_regressions.rs).
#![allow(dead_code)]

use tessera::core::json::{self, Json};
use tessera::core::jwt::{self, MAX_NUMERIC_DATE};
use tessera::core::refresh::{self, Failure};
use tessera::core::token::{self, is_b64token, MAX_TOKEN_BYTES};
use tessera::core::{lease, origin, record};

const NOW: f64 = 1_750_000_000_000.0;

/// JWT decoding: never a panic; what decodes is consistent with its parts.
pub fn jwt(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = jwt::base64url(s);
    if let Ok(j) = jwt::decode(s) {
        // The payload is always a JSON object, and typed dates are sane.
        assert!(matches!(Json::parse(&j.payload), Some(Json::Obj(_))));
        for d in [j.claims.exp, j.claims.nbf, j.claims.iat].into_iter().flatten() {
            assert!(d > 0.0 && d <= MAX_NUMERIC_DATE);
        }
    }
}

/// Token endpoint responses: any status, body and Retry-After. Accepted
/// tokens are sendable, bounded, with a finite expiry.
pub fn token_response(data: &[u8]) {
    let (status, rest) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 600, rest),
        _ => return,
    };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (retry_after, body) = text.split_once('\n').unwrap_or(("", text));
    for skew in [0.0, 7_200_000.0, -7_200_000.0] {
        if let Ok((t, inferred)) = token::parse_with_skew(body, NOW, skew) {
            assert!(is_b64token(&t.access_token) && t.access_token.len() <= MAX_TOKEN_BYTES);
            assert!(t.expires_at.is_none_or(f64::is_finite));
            assert!(inferred.is_none_or(f64::is_finite));
        }
        // DPoP challenges come from the same answers (a header and a body).
        let _ = tessera::core::dpop::challenge(status, Some(retry_after), body);
        let _ = tessera::core::dpop::challenge(401, Some(body), "");
        match refresh::classify(status, body, Some(retry_after), NOW, skew) {
            Ok((t, _)) => assert!((200..300).contains(&status) && is_b64token(&t.access_token)),
            Err(f @ Failure::Fatal { .. }) => assert!(!f.message().is_empty() && status < 500),
            Err(f) => {
                let _ = f.message();
            }
        }
    }
}

/// Stored records and refresh leases, as another tab or a corrupted store
/// might leave them. A record that reads writes back the same.
pub fn record(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let record::Read::Tokens(t) = record::decode(Some(s), "c") {
        let again = record::encode(&t, "c");
        match record::decode(Some(&again), "c") {
            record::Read::Tokens(u) => {
                assert_eq!(u.access_token, t.access_token);
                assert_eq!(u.refresh_token, t.refresh_token);
                assert_eq!(u.sid, t.sid);
            }
            other => panic!("re-encoded record did not read back: {other:?}"),
        }
    }
    let _ = lease::decide(Some(s), "me", 1.0e12, 60_000.0);
}

/// The option values the core validates: endpoint URLs and allowed origins
/// (what may receive a token), numbers given as strings. An origin that may
/// carry a token is https, or http to loopback.
pub fn options(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(o) = origin::of(s) {
        assert!(o.starts_with("https://") || o.starts_with("http://"));
        assert_eq!(origin::of(&o).as_deref(), Some(o.as_str()), "origins are stable under re-parsing");
        if origin::may_carry_token(&o) && o.starts_with("http://") {
            let host = o.trim_start_matches("http://");
            assert!(host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]") || host.contains(".localhost"));
        }
    }
    let _ = json::parse_number(s);
}
