//! Host tests: DPoP proof text (RFC 9449 s4.2), `htu`, and challenges.

#![cfg(not(target_arch = "wasm32"))]

use tessera::core::dpop::{challenge, claims, finish, header, htu, Challenge};
use tessera::core::json::Json;

#[test]
fn proofs_carry_the_claims_rfc_9449_asks_for() {
    let h = Json::parse(&header("xx", "yy")).unwrap();
    assert_eq!(h.get("typ").and_then(Json::as_str), Some("dpop+jwt"));
    assert_eq!(h.get("alg").and_then(Json::as_str), Some("ES256"));
    let jwk = h.get("jwk").unwrap();
    assert_eq!(jwk.get("kty").and_then(Json::as_str), Some("EC"));
    assert_eq!(jwk.get("crv").and_then(Json::as_str), Some("P-256"));
    assert_eq!(jwk.get("x").and_then(Json::as_str), Some("xx"));
    assert!(jwk.get("d").is_none(), "never the private part");
    let c = Json::parse(&finish(claims("j1", "POST", "https://a.example/token", 1_700_000_000.7, Some("n1")), Some("h1"))).unwrap();
    assert_eq!(c.get("jti").and_then(Json::as_str), Some("j1"));
    assert_eq!(c.get("htm").and_then(Json::as_str), Some("POST"));
    assert_eq!(c.get("htu").and_then(Json::as_str), Some("https://a.example/token"));
    assert_eq!(c.get("iat").and_then(Json::as_f64), Some(1_700_000_000.0), "whole seconds");
    assert_eq!(c.get("nonce").and_then(Json::as_str), Some("n1"));
    assert_eq!(c.get("ath").and_then(Json::as_str), Some("h1"));
    let bare = Json::parse(&finish(claims("j", "GET", "https://a.example/x", 1.0, None), None)).unwrap();
    assert!(bare.get("nonce").is_none() && bare.get("ath").is_none());
}

#[test]
fn htu_is_the_url_without_query_and_fragment() {
    for (url, want) in [
        ("https://api.example.com/me?x=1", "https://api.example.com/me"),
        ("https://api.example.com/me#f", "https://api.example.com/me"),
        ("https://api.example.com/me", "https://api.example.com/me"),
        ("https://api.example.com/a?b#c", "https://api.example.com/a"),
    ] {
        assert_eq!(htu(url), want);
    }
}

#[test]
fn challenges_from_token_endpoints_and_resources() {
    let rows = [
        (400, None, r#"{"error":"use_dpop_nonce"}"#, Some(Challenge::UseNonce)),
        (400, None, r#"{"error":"invalid_dpop_proof","error_description":"iat"}"#, Some(Challenge::InvalidProof)),
        (400, None, r#"{"error":"invalid_grant"}"#, None),
        (401, Some(r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce""#), "", Some(Challenge::UseNonce)),
        (401, Some(r#"Bearer realm="x", DPoP algs="ES256" error="invalid_dpop_proof""#), "", Some(Challenge::InvalidProof)),
        (401, Some(r#"Bearer error="invalid_token""#), "", None),
        (401, Some("DPoP error=use_dpop_nonce"), "", Some(Challenge::UseNonce)),
        (401, Some(r#"DPoP error="invalid_token", error_description="not use_dpop_nonce""#), "", None),
        (400, Some(r#"DPoP error="use_dpop_nonce""#), r#"{"error":"invalid_grant"}"#, None),
        (401, None, r#"{"error":"use_dpop_nonce"}"#, None),
        (500, None, r#"{"error":"use_dpop_nonce"}"#, None),
        (400, None, "<html>", None),
    ];
    for (status, www, body, want) in rows {
        assert_eq!(challenge(status, www, body), want, "{status} {www:?} {body}");
    }
}
