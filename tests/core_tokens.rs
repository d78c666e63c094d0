//! Host tests: token responses, expiry and refresh arithmetic, the storage
//! record and refresh classification, all against an injected clock.

#![cfg(not(target_arch = "wasm32"))]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tessera::core::record::{self, Read};
use tessera::core::refresh::{self, encode_body, BodyFormat, Failure, Transient};
use tessera::core::schedule::*;
use tessera::core::token::{self, TokenError, TokenSet};

const NOW: f64 = 1_750_000_000_000.0; // the injected clock, ms

fn jwt_exp(exp_s: f64) -> String {
    let p = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp_s}}}"));
    ["eyJhbGciOiJIUzI1NiJ9".to_string(), p, "c2ln".into()].join(".")
}

#[test]
fn opaque_token_uses_expires_in() {
    let t = token::parse(
        r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"bearer","expires_in":3600,"refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA"}"#,
        NOW,
        0.0,
    )
    .unwrap();
    assert_eq!(t.expires_at, Some(NOW + 3_600_000.0));
    assert_eq!(t.refresh_token.as_deref(), Some("tGzv3JOkF0XG5Qx2TlKWIA"));
    assert_eq!(t.received_at, NOW);
}

#[test]
fn expires_in_decides_and_exp_is_used_only_without_it() {
    // RFC 9068 s6: the client does not rely on the token's contents; the
    // server's expires_in (relative, no clock agreement needed) decides (D1).
    let exp_soon = jwt_exp(NOW / 1000.0 + 60.0);
    let body = format!(r#"{{"access_token":"{exp_soon}","token_type":"Bearer","expires_in":3600}}"#);
    assert_eq!(token::parse(&body, NOW, 0.0).unwrap().expires_at, Some(NOW + 3_600_000.0));
    let exp_late = jwt_exp(NOW / 1000.0 + 7200.0);
    let body = format!(r#"{{"access_token":"{exp_late}","token_type":"Bearer","expires_in":30}}"#);
    assert_eq!(token::parse(&body, NOW, 0.0).unwrap().expires_at, Some(NOW + 30_000.0));
    // With expires_in, a skew estimate cannot move the expiry.
    assert_eq!(token::parse(&body, NOW, 7_200_000.0).unwrap().expires_at, Some(NOW + 30_000.0));
    // exp alone is used; a device clock 2 h slow (skew +2h) moves it.
    let body = format!(r#"{{"access_token":"{exp_late}","token_type":"Bearer"}}"#);
    assert_eq!(token::parse(&body, NOW, 0.0).unwrap().expires_at, Some(NOW + 7_200_000.0));
    assert_eq!(token::parse(&body, NOW, 7_200_000.0).unwrap().expires_at, Some(NOW));
}

#[test]
fn neither_means_unknown_expiry() {
    let t = token::parse(r#"{"access_token":"abc","token_type":"Bearer"}"#, NOW, 0.0).unwrap();
    assert_eq!(t.expires_at, None);
    assert!(!is_expired(t.expires_at, NOW + 1e12, 0.0, 0.0));
}

#[test]
fn token_response_errors() {
    let cases: &[(&str, &str, TokenError)] = &[
        ("not json", "<html>", TokenError::NotJson),
        ("array", "[]", TokenError::NotObject),
        ("missing", r#"{"token_type":"Bearer"}"#, TokenError::MissingAccessToken),
        ("empty", r#"{"access_token":"","token_type":"Bearer"}"#, TokenError::MissingAccessToken),
        ("number", r#"{"access_token":5,"token_type":"Bearer"}"#, TokenError::MissingAccessToken),
        ("mac", r#"{"access_token":"a","token_type":"mac"}"#, TokenError::UnsupportedTokenType("mac".into())),
        ("space", r#"{"access_token":"a b","token_type":"Bearer"}"#, TokenError::UnsendableAccessToken),
        ("crlf", r#"{"access_token":"a\r\nX-Evil: 1","token_type":"Bearer"}"#, TokenError::UnsendableAccessToken),
        ("non-ascii", r#"{"access_token":"tökén","token_type":"Bearer"}"#, TokenError::UnsendableAccessToken),
    ];
    for (name, body, want) in cases {
        assert_eq!(token::parse(body, NOW, 0.0).err().as_ref(), Some(want), "{name}");
        // Messages never echo the token.
        assert!(!want.message().contains("X-Evil"), "{name}");
    }
}

#[test]
fn dpop_tokens_are_read_as_such() {
    // RFC 9449: token_type DPoP (any case); the session refuses it unless
    // DPoP is on (tests/core_session.rs).
    for tt in ["DPoP", "dpop"] {
        let t = token::parse(&format!(r#"{{"access_token":"a","token_type":"{tt}"}}"#), NOW, 0.0).unwrap();
        assert!(t.dpop, "{tt}");
    }
    assert!(!token::parse(r#"{"access_token":"a","token_type":"Bearer"}"#, NOW, 0.0).unwrap().dpop);
}

#[test]
fn tolerated_token_fields() {
    let cases: &[(&str, &str, Option<f64>)] = &[
        ("no token_type", r#"{"access_token":"a","expires_in":10}"#, Some(NOW + 10_000.0)),
        ("BEARER", r#"{"access_token":"a","token_type":"BEARER","expires_in":10}"#, Some(NOW + 10_000.0)),
        ("expires_in string", r#"{"access_token":"a","expires_in":"10"}"#, Some(NOW + 10_000.0)),
        ("expires_in negative", r#"{"access_token":"a","expires_in":-10}"#, None),
        ("expires_in garbage", r#"{"access_token":"a","expires_in":"soon"}"#, None),
        ("expires_in fractional", r#"{"access_token":"a","expires_in":1.5}"#, Some(NOW + 1_500.0)),
        ("unknown fields ignored", r#"{"access_token":"a","x":{"y":[1]},"expires_in":0}"#, Some(NOW)),
    ];
    for (name, body, want) in cases {
        assert_eq!(token::parse(body, NOW, 0.0).map(|t| t.expires_at), Ok(*want), "{name}");
    }
    let huge = token::parse(r#"{"access_token":"a","expires_in":1e300}"#, NOW, 0.0).unwrap();
    assert!(huge.expires_at.unwrap().is_finite());
}

#[test]
fn expiry_with_leeway() {
    let exp = Some(NOW + 60_000.0);
    let cases = [
        ("fresh", NOW, 0.0, 0.0, false),
        ("at expiry", NOW + 60_000.0, 0.0, 0.0, true),
        ("within 60s", NOW, 60_000.0, 0.0, true),
        ("within 59s", NOW, 59_000.0, 0.0, false),
        ("leeway 5s at t-4s", NOW + 56_000.0, 0.0, 5_000.0, true),
        ("leeway 5s at t-6s", NOW + 54_000.0, 0.0, 5_000.0, false),
        ("negative within is 0", NOW, -1e9, 0.0, false),
    ];
    for (name, now, within, leeway, want) in cases {
        assert_eq!(is_expired(exp, now, within, leeway), want, "{name}");
    }
}

#[test]
fn refresh_schedule_caps() {
    let h = 3_600_000.0;
    let cases = [
        ("margin before expiry", NOW + h, NOW, 60_000.0, NOW + h - 60_000.0),
        ("capped at half of 60s", NOW + 60_000.0, NOW, 60_000.0, NOW + 30_000.0),
        ("capped at half of 30s", NOW + 30_000.0, NOW, 60_000.0, NOW + 15_000.0),
        ("floor for tiny tokens", NOW + 2_000.0, NOW, 60_000.0, NOW + MIN_REFRESH_INTERVAL),
        ("expired at receipt", NOW, NOW, 60_000.0, NOW + MIN_REFRESH_INTERVAL),
        ("zero margin", NOW + h, NOW, 0.0, NOW + h),
    ];
    for (name, exp, recv, margin, want) in cases {
        assert_eq!(next_refresh_at(exp, recv, margin), want, "{name}");
    }
}

#[test]
fn timer_delays_are_clamped() {
    assert_eq!(timer_delay(NOW - 5.0, NOW), 0.0);
    assert_eq!(timer_delay(NOW + 5.0, NOW), 5.0);
    assert_eq!(timer_delay(NOW + 1e12, NOW), MAX_TIMER_DELAY);
    assert_eq!(timer_delay(f64::NAN, NOW), 0.0);
}

#[test]
fn backoff_grows_is_capped_and_honours_retry_after() {
    let mut last = 0.0;
    for attempt in 0..40 {
        let lo = backoff_delay(attempt, 0.0, None);
        let hi = backoff_delay(attempt, 1.0, None);
        assert!(lo >= BACKOFF_BASE / 2.0 && hi <= BACKOFF_CAP, "attempt {attempt}");
        assert!(hi >= last, "non-decreasing upper bound");
        last = hi;
    }
    assert_eq!(backoff_delay(0, 1.0, None), BACKOFF_BASE);
    assert_eq!(backoff_delay(0, 0.0, Some(30_000.0)), 30_000.0);
    assert!(backoff_delay(0, f64::NAN, None).is_finite());
}

#[test]
fn record_round_trip() {
    let t = TokenSet {
        access_token: "abc.def.ghi".into(),
        refresh_token: Some("r\"1".into()),
        expires_at: Some(NOW + 1.0),
        received_at: NOW,
        scope: Some("openid profile".into()),
        id_token: None,
        sid: "s-1".into(),
        dpop: false,
        born: NOW - 5.0,
        gen: 3,
        jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        brief: 2,
        refused: 1,
    };
    let text = record::encode(&t, CLIENT);
    assert_eq!(record::decode(Some(&text), CLIENT), Read::Tokens(t.clone()));
    let unknown = TokenSet { expires_at: None, refresh_token: None, jkt: None, brief: 0, refused: 0, ..t.clone() };
    assert_eq!(record::decode(Some(&record::encode(&unknown, CLIENT)), CLIENT), Read::Tokens(unknown));
    // F2: the record is bound to its client: another client on the same key
    // never reads it (nor deletes it).
    assert_eq!(record::decode(Some(&text), "shop|https://idp-b.example/token"), Read::Foreign);
}

const CLIENT: &str = "admin|https://idp-a.example/token";

#[test]
fn record_read_is_tolerant() {
    let ok = |extra: &str| format!(r#"{{"v":2,"client":"{CLIENT}","sid":"s","access_token":"a","received_at":1{extra}}}"#);
    let cases = [
        ("nothing", None, Read::Empty),
        ("not json", Some("{oops".to_string()), Read::Corrupt),
        ("foreign json", Some(r#"{"user":"bob"}"#.into()), Read::Corrupt),
        ("string", Some("\"token\"".into()), Read::Corrupt),
        ("version 0", Some(r#"{"v":0,"access_token":"a","received_at":1}"#.into()), Read::Corrupt),
        ("version 1: not bound to a client", Some(r#"{"v":1,"access_token":"a","received_at":1}"#.into()), Read::Foreign),
        ("version 3", Some(r#"{"v":3,"access_token":"a","received_at":1}"#.into()), Read::FutureVersion),
        ("another client", Some(ok("").replace(CLIENT, "other")), Read::Foreign),
        ("no client", Some(r#"{"v":2,"sid":"s","access_token":"a","received_at":1}"#.into()), Read::Corrupt),
        ("no sid", Some(ok("").replace(r#""sid":"s","#, "")), Read::Corrupt),
        ("no access token", Some(ok("").replace(r#""access_token":"a","#, "")), Read::Corrupt),
        ("unsendable token", Some(ok("").replace(r#""a""#, r#""a b""#)), Read::Corrupt),
        ("no received_at", Some(ok("").replace(r#","received_at":1"#, "")), Read::Corrupt),
        // D5: a field that is present with the wrong type is a tampered or
        // foreign record, not a session without that field.
        ("expires_at a string", Some(ok(r#","expires_at":"soon""#)), Read::Corrupt),
        ("expires_at null", Some(ok(r#","expires_at":null"#)), Read::Corrupt),
        ("refresh_token a number", Some(ok(r#","refresh_token":123"#)), Read::Corrupt),
        ("scope an array", Some(ok(r#","scope":["a"]"#)), Read::Corrupt),
        ("id_token empty", Some(ok(r#","id_token":"""#)), Read::Corrupt),
    ];
    for (name, stored, want) in cases {
        assert_eq!(record::decode(stored.as_deref(), CLIENT), want, "{name}");
    }
    assert!(matches!(record::decode(Some(&ok(r#","expires_at":5,"refresh_token":"r""#)), CLIENT), Read::Tokens(_)));
}

#[test]
fn rotation_keeps_or_replaces_refresh_token() {
    let old = token::parse(r#"{"access_token":"a","refresh_token":"old"}"#, NOW, 0.0).unwrap();
    let rotated = token::parse(r#"{"access_token":"b","refresh_token":"new"}"#, NOW, 0.0).unwrap();
    assert_eq!(rotated.inherit_refresh_token(Some(&old)).refresh_token.as_deref(), Some("new"));
    let kept = token::parse(r#"{"access_token":"b"}"#, NOW, 0.0).unwrap();
    assert_eq!(kept.inherit_refresh_token(Some(&old)).refresh_token.as_deref(), Some("old"));
}

#[test]
fn refresh_classification() {
    let fatal = |r: Result<(TokenSet, Option<f64>), Failure>| matches!(r, Err(Failure::Fatal { .. }));
    let transient = |r: Result<(TokenSet, Option<f64>), Failure>| matches!(r, Err(Failure::Transient { .. }));
    let c = |s, b: &str| refresh::classify(s, b, None, NOW, 0.0);
    assert!(c(200, r#"{"access_token":"n","token_type":"Bearer"}"#).is_ok());
    assert!(fatal(c(400, r#"{"error":"invalid_grant"}"#)));
    assert!(fatal(c(401, r#"{"error":"invalid_client"}"#)));
    // D3: a 401 is invalid_client (RFC 6749 s5.2) even as a bare challenge.
    for body in ["Unauthorized", "", r#"{"error":"invalid_request"}"#] {
        match c(401, body) {
            Err(Failure::Fatal { code, .. }) => assert_eq!(code, "invalid_client", "{body}"),
            other => panic!("401 {body:?}: {other:?}"),
        }
    }
    // D4: a byte order mark before the JSON is ignored.
    assert!(c(200, "\u{feff}{\"access_token\":\"n\",\"token_type\":\"Bearer\"}").is_ok());
    assert!(token::parse("\u{feff}{\"access_token\":\"n\"}", NOW, 0.0).is_ok());
    assert!(fatal(c(400, r#"{"error":"unauthorized_client"}"#)));
    assert!(fatal(c(200, r#"{"error":"invalid_grant"}"#)));
    assert!(transient(c(400, r#"{"error":"invalid_request"}"#)));
    assert!(transient(c(500, r#"{"error":"invalid_grant"}"#)), "5xx is never fatal");
    assert!(transient(c(503, "")));
    assert!(transient(c(429, r#"{"error":"slow_down"}"#)));
    assert!(transient(c(200, "<html>captive portal</html>")));
    assert!(transient(c(400, "Bad Request")));
    assert_eq!(
        refresh::classify(503, "", Some("7"), NOW, 0.0).err(),
        Some(Failure::Transient { cause: Transient::Status(503, None), retry_after: Some(7000.0) })
    );
    let msg = c(400, r#"{"error":"invalid_grant","error_description":"token reused"}"#).unwrap_err().message();
    assert!(msg.contains("invalid_grant") && msg.contains("token reused"), "{msg}");
}

#[test]
fn refresh_body_encodings() {
    let p = refresh::refresh_params("r+/=&x", Some("spa app"), Some("openid email"));
    assert_eq!(
        encode_body(BodyFormat::Form, &p),
        "grant_type=refresh_token&refresh_token=r%2B%2F%3D%26x&client_id=spa+app&scope=openid+email"
    );
    assert_eq!(
        encode_body(BodyFormat::Json, &refresh::refresh_params("r\"", None, None)),
        r#"{"grant_type":"refresh_token","refresh_token":"r\""}"#
    );
}

fn jwt_claims(claims: &str) -> String {
    ["eyJhbGciOiJIUzI1NiJ9".to_string(), URL_SAFE_NO_PAD.encode(claims), "c2ln".into()].join(".")
}

#[test]
fn skew_is_inferred_only_from_consistent_evidence() {
    let two_h = 7_200_000.0;
    // Device two hours fast: the server issued at NOW-2h, exp = issue + 30 s.
    let issue = (NOW - two_h) / 1000.0;
    let fast = jwt_claims(&format!(r#"{{"iat":{issue},"exp":{}}}"#, issue + 30.0));
    let body = format!(r#"{{"access_token":"{fast}","expires_in":30}}"#);
    let (t, skew) = token::parse_with_skew(&body, NOW, 0.0).unwrap();
    assert_eq!(skew, Some(-two_h));
    assert_eq!(t.expires_at, Some(NOW + 30_000.0), "not expired on arrival");
    // Device two hours slow: iat in the device's future.
    let issue = (NOW + two_h) / 1000.0;
    let slow = jwt_claims(&format!(r#"{{"iat":{issue},"exp":{}}}"#, issue + 30.0));
    let (t, skew) = token::parse_with_skew(&format!(r#"{{"access_token":"{slow}"}}"#), NOW, 0.0).unwrap();
    assert_eq!(skew, Some(two_h));
    assert_eq!(t.expires_at, Some(NOW + 30_000.0), "exp moved onto the device clock");
    // An old token (iat an hour ago, exp soon, no expires_in) is not skew.
    let old = jwt_claims(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW / 1000.0 - 3600.0, NOW / 1000.0 + 60.0));
    let (t, skew) = token::parse_with_skew(&format!(r#"{{"access_token":"{old}"}}"#), NOW, 0.0).unwrap();
    assert_eq!(skew, None);
    assert_eq!(t.expires_at, Some(NOW + 60_000.0));
    // Small differences are latency, and show the clocks agree: the skew
    // is reset to 0 (D1: an estimate from an earlier token must not outlive
    // an NTP correction).
    let near = jwt_claims(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW / 1000.0 + 2.0, NOW / 1000.0 + 32.0));
    assert_eq!(token::parse_with_skew(&format!(r#"{{"access_token":"{near}","expires_in":30}}"#), NOW, 7_200_000.0).unwrap().1, Some(0.0));
    // An iat claiming a month of skew is not believed (D1, probe 12b).
    let month = jwt_claims(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW / 1000.0 + 2_592_000.0, NOW / 1000.0 + 2_592_060.0));
    assert_eq!(token::parse_with_skew(&format!(r#"{{"access_token":"{month}","expires_in":60}}"#), NOW, 0.0).unwrap().1, None);
    // A known skew (from a Date header) applies when the token shows none.
    let (t, _) = token::parse_with_skew(&format!(r#"{{"access_token":"{old}"}}"#), NOW, -60_000.0).unwrap();
    assert_eq!(t.expires_at, Some(NOW + 120_000.0));
}

#[test]
fn lease_decisions() {
    use tessera::core::lease::{decide, encode, Decision};
    let mine = encode("tab-a", NOW + 10_000.0);
    let cases = [("none", None, Decision::Take), ("ours", Some(mine.as_str()), Decision::Held), ("corrupt", Some("{"), Decision::Take)];
    for (name, stored, want) in cases {
        assert_eq!(decide(stored, "tab-a", NOW, 60_000.0), want, "{name}");
    }
    assert_eq!(decide(Some(&mine), "tab-b", NOW, 60_000.0), Decision::Wait(NOW + 10_000.0));
    assert_eq!(decide(Some(&mine), "tab-b", NOW + 10_001.0, 60_000.0), Decision::Take, "expired lease");
    let far = encode("tab-a", NOW + 3_600_000.0);
    assert_eq!(decide(Some(&far), "tab-b", NOW, 60_000.0), Decision::Take, "a lease beyond any hold time is stale");
}
