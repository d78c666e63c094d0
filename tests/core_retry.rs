//! Host tests: which requests are repeated, after what, and when; the
//! idempotency key's format.

#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use tessera::core::retry::*;

#[test]
fn only_requests_that_cannot_do_anything_twice_are_repeated() {
    let rows = [
        ("GET", false, true),
        ("head", false, true),
        ("OPTIONS", false, true),
        ("PUT", false, true),
        ("DELETE", false, true),
        ("POST", false, false),
        ("PATCH", false, false),
        ("POST", true, true),
        ("PATCH", true, true),
    ];
    for (method, keyed, want) in rows {
        assert_eq!(may_repeat(method, keyed), want, "{method} keyed={keyed}");
    }
    for (method, want) in [("POST", true), ("put", true), ("PATCH", true), ("DELETE", true), ("GET", false), ("HEAD", false)] {
        assert_eq!(wants_key(method), want, "{method}");
    }
}

#[test]
fn only_answers_that_may_differ_next_time_are_retried() {
    for (status, want) in
        [(429, true), (502, true), (503, true), (504, true), (500, false), (501, false), (401, false), (404, false), (200, false)]
    {
        assert_eq!(retryable_status(status), want, "{status}");
    }
}

#[test]
fn delays_grow_with_jitter_and_honour_retry_after_up_to_a_cap() {
    assert_eq!(delay(0, 1.0, None), RETRY_BASE);
    assert_eq!(delay(0, 0.0, None), RETRY_BASE / 2.0);
    assert_eq!(delay(20, 1.0, None), RETRY_CAP);
    assert_eq!(delay(0, 0.0, Some("3")), 3_000.0);
    assert_eq!(delay(0, 0.0, Some("3600")), RETRY_AFTER_CAP, "capped");
    assert_eq!(delay(0, 0.0, Some("Wed, 21 Oct 2015 07:28:00 GMT")), RETRY_BASE / 2.0, "an HTTP-date is not a number of seconds");
    assert_eq!(delay(0, 0.0, Some("-5")), RETRY_BASE / 2.0);
}

#[test]
fn idempotency_keys_are_version_4_uuids() {
    let k = uuid_v4(&[0xff; 16]);
    assert_eq!(k, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    assert_eq!(uuid_v4(&[0; 16]), "00000000-0000-4000-8000-000000000000");
}

proptest! {
    #[test]
    fn delays_are_bounded(attempt in 0u32..1000, r in proptest::num::f64::ANY, ra in proptest::option::of("[0-9]{0,8}")) {
        let d = delay(attempt, r, ra.as_deref());
        prop_assert!(d.is_finite() && d >= RETRY_BASE / 2.0 && d <= RETRY_AFTER_CAP.max(RETRY_CAP));
    }

    #[test]
    fn keys_have_the_uuid_shape(b in proptest::array::uniform16(any::<u8>())) {
        let k = uuid_v4(&b);
        prop_assert_eq!(k.len(), 36);
        prop_assert_eq!(k.as_bytes()[14], b'4');
        prop_assert!(matches!(k.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        prop_assert!(k.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
