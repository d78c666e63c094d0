//! Property tests (proptest) of the core's arithmetic and parsers.

#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use tessera::core::json::{self, Json};
use tessera::core::schedule::*;
use tessera::core::token::TokenSet;
use tessera::core::{jwt, origin, record, refresh};

const NOW: f64 = 1_750_000_000_000.0;
const DAY: f64 = 86_400_000.0;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A token just received: its refresh is never in the past, never sooner
    /// than the loop guard, and never after expiry when the lifetime leaves
    /// room for the guard.
    #[test]
    fn refresh_schedule_bounds(lifetime in 0.0..(400.0 * DAY), margin in 0.0..(30.0 * DAY)) {
        let expires = NOW + lifetime;
        let at = next_refresh_at(expires, NOW, margin);
        prop_assert!(at >= NOW, "in the past");
        prop_assert!(at - NOW >= MIN_REFRESH_INTERVAL, "shorter than the loop guard");
        if lifetime >= 2.0 * MIN_REFRESH_INTERVAL {
            prop_assert!(at <= expires, "after expiry");
        }
        prop_assert!(at <= expires.max(NOW + MIN_REFRESH_INTERVAL));
    }

    /// A larger margin never makes the refresh later.
    #[test]
    fn refresh_schedule_is_monotonic_in_margin(lifetime in 0.0..(40.0 * DAY), a in 0.0..DAY, b in 0.0..DAY) {
        let (small, large) = if a <= b { (a, b) } else { (b, a) };
        let expires = NOW + lifetime;
        prop_assert!(next_refresh_at(expires, NOW, small) >= next_refresh_at(expires, NOW, large));
    }

    /// Timer delays are always something setTimeout honours.
    #[test]
    fn timer_delays_are_valid(at in proptest::num::f64::ANY, now in 0.0..(2.0 * NOW)) {
        let d = timer_delay(at, now);
        prop_assert!((0.0..=MAX_TIMER_DELAY).contains(&d));
    }

    /// Backoff is bounded, never a tight loop, and honours Retry-After.
    #[test]
    fn backoff_is_bounded(attempt in 0u32..10_000, r in proptest::num::f64::ANY, ra in proptest::option::of(0.0..(3600.0 * 1000.0))) {
        let d = backoff_delay(attempt, r, ra);
        prop_assert!(d.is_finite());
        prop_assert!(d >= BACKOFF_BASE / 2.0, "tight loop");
        prop_assert!(d <= (2.0 * BACKOFF_CAP).max(BACKOFF_CAP));
        if let Some(ra) = ra {
            prop_assert!(d >= ra.min(2.0 * BACKOFF_CAP));
        }
    }

    /// expires_in decides when present, whatever the JWT or the skew say.
    #[test]
    fn expires_in_decides(ein in proptest::option::of(0.0..1e7), exp in proptest::option::of(1.0..2e9), skew in -1e8..1e8) {
        let e = expires_at(NOW, ein, exp, skew);
        prop_assert_eq!(e.is_some(), ein.is_some() || exp.is_some());
        if let Some(s) = ein {
            prop_assert_eq!(e, Some(NOW + s * 1000.0));
        }
    }

    /// An inferred skew is finite and plausible, whatever the token claims.
    #[test]
    fn inferred_skew_is_bounded(ein in proptest::option::of(0.0..1e7), exp in proptest::option::of(0.0..1e12), iat in proptest::option::of(0.0..1e12)) {
        if let Some(s) = infer_skew(NOW, ein, exp, iat) {
            prop_assert!(s.is_finite() && s.abs() <= MAX_SKEW);
        }
    }

    /// base64url encoding round-trips through the decoder and matches the
    /// base64 crate.
    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        use base64::Engine;
        let e = jwt::base64url_encode(&bytes);
        prop_assert_eq!(&e, &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert_eq!(jwt::base64url(&e), Some(bytes));
    }

    /// Nothing the JSON reader is given makes it panic.
    #[test]
    fn json_reader_never_panics(s in ".{0,200}") {
        let _ = Json::parse(&s);
    }

    /// Strings survive the JSON writer and reader unchanged.
    #[test]
    fn json_strings_round_trip(s in "\\PC*") {
        let mut out = String::new();
        json::write_str(&mut out, &s);
        prop_assert_eq!(Json::parse(&out), Some(Json::Str(s)));
    }

    /// Arbitrary text is never a panic for the JWT reader, origins or records.
    #[test]
    fn readers_never_panic(s in ".{0,300}") {
        let _ = jwt::decode(&s);
        let _ = jwt::base64url(&s);
        let _ = origin::of(&s);
        let _ = origin::may_carry_token(&s);
        let _ = record::decode(Some(&s), "c");
        let _ = refresh::classify(200, &s, Some(&s), NOW, 0.0);
        let _ = refresh::classify(400, &s, None, NOW, 0.0);
    }

    /// Whatever the manager stores, it reads back.
    #[test]
    fn records_round_trip(
        at in "[A-Za-z0-9._~+/-]{1,80}=?",
        rt in proptest::option::of("\\PC{1,40}"),
        scope in proptest::option::of("\\PC{1,40}"),
        exp in proptest::option::of(0.0f64..1e13),
        received in 0.0f64..1e13,
        sid in "\\PC{1,20}",
        client in "\\PC{0,40}",
        dpop in any::<bool>(),
        (born, gen, brief, refused) in (0.0f64..1e13, any::<u32>(), 0u32..40, 0u32..40),
        jkt in proptest::option::of("[A-Za-z0-9_-]{43}"),
    ) {
        let t = TokenSet {
            access_token: at,
            refresh_token: rt,
            expires_at: exp.map(f64::round),
            received_at: received.round(),
            scope,
            id_token: None,
            sid: sid.clone(),
            dpop,
            born: born.round(),
            gen,
            jkt,
            brief,
            refused,
        };
        prop_assert_eq!(record::decode(Some(&record::encode(&t, &client)), &client), record::Read::Tokens(t.clone()));
        // Another client never reads it.
        prop_assert_eq!(record::decode(Some(&record::encode(&t, &client)), &[client.as_str(), "x"].concat()), record::Read::Foreign);
    }

    /// Form bodies decode back to what was encoded (as a server reads them).
    #[test]
    fn form_bodies_are_escaped(v in "\\PC{0,40}") {
        let body = refresh::encode_body(refresh::BodyFormat::Form, &[("refresh_token", &v)]);
        prop_assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b"%+=*-._&".contains(&b)));
    }
}
