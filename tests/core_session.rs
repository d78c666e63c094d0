//! Host tests of the session state machine (src/core/session.rs): one
//! scenario per review finding where the session decides, then properties
//! over random interleavings in a simulated world (tests/core_session_props.rs).

#![cfg(not(target_arch = "wasm32"))]

use tessera::core::error::Error;
use tessera::core::record::{self, Read};
use tessera::core::refresh::{Failure, Transient};
use tessera::core::session::*;

const T0: f64 = 1_750_000_000_000.0;
const CLIENT: &str = "spa|https://auth.example.com/token";

fn cfg(store: Store) -> Config {
    Config {
        refreshable: true,
        auto_refresh: true,
        margin: 60_000.0,
        leeway: 5_000.0,
        timeout: 30_000.0,
        revoke: true,
        client: CLIENT.into(),
        store,
        check_tab: false,
        dpop: false,
    }
}

fn response(at: &str, rt: &str, expires_in: u32) -> String {
    format!(r#"{{"access_token":"{at}","token_type":"Bearer","expires_in":{expires_in},"refresh_token":"{rt}"}}"#)
}

fn ok(at: &str, rt: &str, expires_in: u32, now: f64) -> Reply {
    Reply::Http { status: 200, body: response(at, rt, expires_in), retry_after: None, date: None, age: None, sent_at: now }
}

fn signed_in(store: Store, at: &str, rt: &str, expires_in: u32) -> (Session, Vec<Effect>) {
    let mut s = Session::new(cfg(store));
    let _ = s.handle(Input::Loaded(Read::Empty), T0);
    let (t, skew) = s.parse(&response(at, rt, expires_in), T0).unwrap();
    let fx = s.set_tokens(t, skew, "sid-1".into(), T0);
    (s, fx)
}

fn want(s: &mut Session, request: u32, kind: Want, now: f64) -> Vec<Effect> {
    s.handle(Input::Want { request, kind, epoch: None }, now)
}

fn answers(fx: &[Effect]) -> Vec<(u32, Result<Option<String>, Error>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Answer { request, result, .. } => Some((*request, result.clone())),
            _ => None,
        })
        .collect()
}

fn sends(fx: &[Effect]) -> Vec<(u32, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send { flight, refresh_token } => Some((*flight, refresh_token.clone())),
            _ => None,
        })
        .collect()
}

fn emits(fx: &[Effect]) -> Vec<Event> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

fn revoked(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Revoke { token, .. } => Some(token.clone()),
            _ => None,
        })
        .collect()
}

fn writes(fx: &[Effect]) -> Vec<&Effect> {
    fx.iter().filter(|e| matches!(e, Effect::Write { .. } | Effect::Remove)).collect()
}

fn stored(s: &Session) -> Read {
    match s.tokens() {
        Some(t) => record::decode(Some(&record::encode(t, CLIENT)), CLIENT),
        None => Read::Empty,
    }
}

/// A session in memory (no lock to wait for) with a token due for refresh
/// (inside the margin, not expired) and a refresh on the wire for one
/// waiting request.
fn waiting_fetch() -> (Session, u32, f64) {
    let (mut s, _) = signed_in(Store::Memory, "userA", "rtA", 90);
    let now = T0 + 50_000.0; // a 90 s token: the 60 s margin is capped at 45 s, so due from 45 s
    let fx = want(&mut s, 7, Want::Fetch, now);
    let sent = sends(&fx);
    assert_eq!(sent.len(), 1, "one refresh sent: {fx:?}");
    assert!(answers(&fx).is_empty(), "the request waits for it");
    (s, sent[0].0, now)
}

#[test]
fn f1_a_request_waiting_for_a_refresh_is_not_sent_after_logout() {
    let (mut s, flight, now) = waiting_fetch();
    let fx = s.handle(Input::Logout, now + 10.0);
    assert_eq!(answers(&fx), [(7, Err(Error::Superseded))]);
    // The answer that lands later is dropped, and its rotated refresh
    // token revoked (F6: it must not outlive the logout).
    let fx = s.handle(Input::Answered { flight, reply: ok("userA2", "rtA2", 3600, now), stored: None, random: 0.5 }, now + 300.0);
    assert_eq!(revoked(&fx), ["rtA2"]);
    assert!(writes(&fx).is_empty() && emits(&fx).is_empty() && answers(&fx).is_empty(), "{fx:?}");
    assert_eq!(s.access_token(), None);
}

#[test]
fn f1_a_request_waiting_for_a_refresh_is_not_sent_with_the_next_users_token() {
    let (mut s, flight, now) = waiting_fetch();
    let _ = s.handle(Input::Logout, now + 10.0);
    let (b, skew) = s.parse(&response("userB", "rtB", 3600), now + 20.0).unwrap();
    let _ = s.set_tokens(b, skew, "sid-2".into(), now + 20.0);
    let fx = s.handle(Input::Answered { flight, reply: ok("userA2", "rtA2", 3600, now), stored: None, random: 0.5 }, now + 300.0);
    assert!(answers(&fx).is_empty() && writes(&fx).is_empty(), "{fx:?}");
    assert_eq!(s.access_token(), Some("userB"), "user B's session is untouched");
    assert_eq!(revoked(&fx), ["rtA2"], "user A's rotated refresh token is revoked");
}

#[test]
fn f1_a_fatal_refresh_refuses_the_waiting_request() {
    let (mut s, flight, now) = waiting_fetch();
    let reply =
        Reply::Http { status: 400, body: r#"{"error":"invalid_grant"}"#.into(), retry_after: None, date: None, age: None, sent_at: now };
    let fx = s.handle(Input::Answered { flight, reply, stored: None, random: 0.5 }, now + 300.0);
    let a = answers(&fx);
    assert_eq!(a.len(), 1);
    assert!(matches!(&a[0].1, Err(Error::Refresh(Failure::Fatal { code, .. })) if code == "invalid_grant"), "{a:?}");
    assert_eq!(s.access_token(), None);
    assert!(matches!(emits(&fx).as_slice(), [Event::RefreshError { .. }, Event::Expired]), "{fx:?}");
}

#[test]
fn f1_refresh_never_resolves_for_a_refresh_that_did_not_happen() {
    let (mut s, _) = signed_in(Store::Memory, "a0", "r0", 3600);
    let fx = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let flight = sends(&fx)[0].0;
    // New tokens set while the refresh runs: the refresh did not produce them.
    let (t, skew) = s.parse(&response("fresh", "r9", 3600), T0 + 2.0).unwrap();
    let fx = s.set_tokens(t, skew, "sid-9".into(), T0 + 2.0);
    assert_eq!(answers(&fx), [(1, Err(Error::Superseded))]);
    let fx = s.handle(Input::Answered { flight, reply: ok("late", "r1", 3600, T0), stored: None, random: 0.5 }, T0 + 3.0);
    assert!(answers(&fx).is_empty());
    assert_eq!(s.access_token(), Some("fresh"));
}

#[test]
fn f1_a_replay_of_another_sessions_request_is_superseded() {
    let (mut s, _) = signed_in(Store::Private, "a0", "r0", 3600);
    let epoch = s.epoch();
    let _ = s.handle(Input::Logout, T0 + 1.0);
    let fx = s.handle(Input::Want { request: 3, kind: Want::Replay("a0".into()), epoch: Some(epoch) }, T0 + 2.0);
    assert_eq!(answers(&fx), [(3, Err(Error::Superseded))]);
}

#[test]
fn a_waiting_request_gets_the_refreshed_token_of_its_own_session() {
    let (mut s, flight, now) = waiting_fetch();
    let fx = s.handle(Input::Answered { flight, reply: ok("userA2", "rtA2", 3600, now), stored: None, random: 0.5 }, now + 100.0);
    assert_eq!(answers(&fx), [(7, Ok(Some("userA2".into())))]);
    assert!(matches!(emits(&fx).as_slice(), [Event::Tokens { access_token, .. }] if access_token == "userA2"));
}

#[test]
fn f4_a_failed_write_moves_the_session_to_memory_for_real() {
    let (mut s, fx) = signed_in(Store::Shared, "at0", "rt0", 3600);
    assert!(matches!(writes(&fx).as_slice(), [Effect::Write { first: true, .. }]));
    let fx = s.handle(Input::StorageFailed { first_copy: true, write: true }, T0 + 1.0);
    assert!(fx.contains(&Effect::Remove), "the stale record is removed: {fx:?}");
    assert!(fx.contains(&Effect::UseMemory));
    assert_eq!(emits(&fx), [Event::StorageError]);
    assert_eq!(s.store(), Store::Memory);
    // The old record (rt0) is never adopted again, whatever storage says.
    let (t, _) = s.parse(&response("at1", "rt1", 3600), T0 + 2.0).unwrap();
    let _ = s.set_tokens(t, None, "sid-1".into(), T0 + 2.0);
    let old = record::decode(Some(&record::encode(&s.parse(&response("at0", "rt0", 3600), T0).unwrap().0, CLIENT)), CLIENT);
    let fx = s.handle(Input::StorageSaw(old), T0 + 3.0);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(s.access_token(), Some("at1"));
    // And a refresh neither locks nor re-reads: it sends rt1 at once.
    let fx = want(&mut s, 1, Want::Refresh, T0 + 4.0);
    assert_eq!(sends(&fx).iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["rt1"]);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Lock { .. } | Effect::Mark(_))));
    // Said once.
    let fx = s.handle(Input::StorageFailed { first_copy: false, write: false }, T0 + 5.0);
    assert!(emits(&fx).is_empty());
}

#[test]
fn f4_a_tab_that_loses_shared_storage_never_presents_a_refresh_token_others_hold() {
    // The session came from another tab (adopted from storage): both hold
    // its refresh token. Once this tab cannot read storage, it cannot
    // coordinate with them, so it gives up the refresh token, keeps the
    // access token until it expires, and leaves the record to the others.
    let mut s = Session::new(cfg(Store::Shared));
    let (a, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let _ = s.handle(Input::Loaded(stored(&a)), T0);
    let fx = s.handle(Input::StorageFailed { first_copy: false, write: false }, T0 + 1.0);
    assert!(!fx.contains(&Effect::Remove), "{fx:?}");
    assert_eq!(s.access_token(), Some("at0"));
    assert_eq!(s.tokens().unwrap().refresh_token, None);
    let fx = want(&mut s, 1, Want::Refresh, T0 + 2.0);
    assert!(sends(&fx).is_empty());
    assert!(matches!(&answers(&fx)[..], [(1, Err(Error::CannotRefresh(_)))]));
}

#[test]
fn f5_a_copied_tab_starts_signed_out_and_never_refreshes() {
    let mut c = cfg(Store::Shared);
    c.check_tab = true;
    let mut s = Session::new(c);
    let (mut t, _) = s.parse(&response("at0", "rt0", 90), T0).unwrap();
    t.sid = "sid-1".into();
    let _ = s.handle(Input::Loaded(Read::Tokens(t)), T0);
    assert_eq!(s.access_token(), Some("at0"), "restored at once");
    assert_eq!(s.poll_timeout(), None, "no refresh before the tab is confirmed");
    // A request that needs a refresh waits for the check.
    let fx = want(&mut s, 1, Want::Token, T0 + 80_000.0);
    assert!(sends(&fx).is_empty() && !fx.iter().any(|e| matches!(e, Effect::Lock { .. })), "{fx:?}");
    let fx = s.handle(Input::TabChecked { copy: true }, T0 + 80_010.0);
    assert_eq!(answers(&fx), [(1, Err(Error::Superseded))]);
    assert_eq!(emits(&fx), [Event::Logout(Reason::Duplicate)]);
    assert!(fx.contains(&Effect::Remove) && sends(&fx).is_empty() && revoked(&fx).is_empty(), "the original keeps the session: {fx:?}");
    assert_eq!(s.access_token(), None);
}

#[test]
fn f5_the_original_tab_refreshes_once_confirmed() {
    let mut c = cfg(Store::Shared);
    c.check_tab = true;
    let mut s = Session::new(c);
    let (mut t, _) = s.parse(&response("at0", "rt0", 90), T0).unwrap();
    t.sid = "sid-1".into();
    let _ = s.handle(Input::Loaded(Read::Tokens(t)), T0);
    let fx = want(&mut s, 1, Want::Token, T0 + 80_000.0);
    assert!(fx.is_empty());
    let fx = s.handle(Input::TabChecked { copy: false }, T0 + 80_010.0);
    assert_eq!(fx, [Effect::Lock { steal: false }]);
}

/// A shared-storage session whose refresh holds the lock and is on the wire.
fn shared_in_flight() -> (Session, u32, Read) {
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let fx = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    assert_eq!(fx, [Effect::Lock { steal: false }]);
    let base = stored(&s);
    let fx = s.handle(Input::LockGranted { stored: base.clone(), marked: false }, T0 + 2.0);
    assert!(matches!(fx.as_slice(), [Effect::Mark(_), Effect::Send { .. }]), "{fx:?}");
    (s, sends(&fx)[0].0, base)
}

#[test]
fn f6_a_refresh_answer_is_written_back_only_over_the_record_it_started_from() {
    let (mut s, flight, base) = shared_in_flight();
    let fx = s.handle(Input::Answered { flight, reply: ok("at1", "rt1", 3600, T0), stored: Some(base), random: 0.5 }, T0 + 3.0);
    let pos = |p: &dyn Fn(&Effect) -> bool| fx.iter().position(p).unwrap_or(usize::MAX);
    let write = pos(&|e| matches!(e, Effect::Write { record, first: true } if record.contains("rt1")));
    let (unmark, unlock) = (pos(&|e| *e == Effect::Unmark), pos(&|e| *e == Effect::Unlock));
    // The next tab to take the lock must find the new record in storage.
    assert!(write < unmark && unmark < unlock && unlock < usize::MAX, "{fx:?}");
}

#[test]
fn f6_a_logout_in_another_tab_during_the_refresh_wins() {
    let (mut s, flight, _) = shared_in_flight();
    let fx = s.handle(Input::Answered { flight, reply: ok("at1", "rt1", 3600, T0), stored: Some(Read::Empty), random: 0.5 }, T0 + 3.0);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Write { .. })), "no write over the logout: {fx:?}");
    assert_eq!(revoked(&fx), ["rt1"], "the dropped answer's refresh token is revoked");
    assert_eq!(answers(&fx), [(1, Err(Error::Superseded))]);
    assert_eq!(emits(&fx), [Event::Logout(Reason::Remote)]);
    assert_eq!(s.access_token(), None);
}

#[test]
fn f6_a_session_written_back_after_its_logout_is_removed_and_revoked() {
    // This tab logged out; another tab's refresh answer crossed the logout
    // and wrote the session back with its rotated refresh token.
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let mut t = s.tokens().unwrap().clone();
    let fx = s.handle(Input::Logout, T0 + 1.0);
    assert_eq!(revoked(&fx), ["rt0"]);
    t.access_token = "at1".into();
    t.refresh_token = Some("rt1".into());
    let fx = s.handle(Input::StorageSaw(Read::Tokens(t.clone())), T0 + 2.0);
    assert_eq!(revoked(&fx), ["rt1"]);
    assert_eq!(s.access_token(), None, "never adopted");
    // Storage is set right under the lock, where no refresh of another tab
    // can cross the write.
    assert_eq!(fx.iter().filter(|e| !matches!(e, Effect::Revoke { .. })).collect::<Vec<_>>(), [&Effect::Lock { steal: false }]);
    let fx = s.handle(Input::LockGranted { stored: Read::Tokens(t), marked: false }, T0 + 3.0);
    assert_eq!(fx, [Effect::Remove, Effect::Notify, Effect::Unlock]);
    assert!(revoked(&fx).is_empty(), "revoked once");
}

#[test]
fn f7_a_lock_that_does_not_come_is_bounded() {
    // Nobody is sending (no marker): the holder is stuck before sending, so
    // the lock is stolen and the refresh proceeds.
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let _ = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let fx = s.handle(Input::LockTimedOut { stored: stored(&s), marked: false }, T0 + 30_001.0);
    assert_eq!(fx, [Effect::Lock { steal: true }]);
    let fx = s.handle(Input::LockGranted { stored: stored(&s), marked: false }, T0 + 30_002.0);
    assert_eq!(sends(&fx).len(), 1);

    // Another tab's request is on the wire (a live marker): never present
    // the same refresh token; fail now (transient) and retry later.
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let _ = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let fx = s.handle(Input::LockTimedOut { stored: stored(&s), marked: true }, T0 + 30_001.0);
    assert!(sends(&fx).is_empty());
    assert!(matches!(&answers(&fx)[..], [(1, Err(Error::Refresh(Failure::Transient { cause: Transient::Busy, .. })))]), "{fx:?}");

    // The other tab finished meanwhile: its tokens are taken, nothing sent.
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let _ = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let mut t = s.tokens().unwrap().clone();
    t.access_token = "at1".into();
    t.refresh_token = Some("rt1".into());
    let fx = s.handle(Input::LockTimedOut { stored: Read::Tokens(t), marked: false }, T0 + 30_001.0);
    assert!(sends(&fx).is_empty());
    assert_eq!(answers(&fx), [(1, Ok(Some("at1".into())))]);
}

#[test]
fn a_refresh_done_by_another_tab_while_waiting_for_the_lock_is_not_repeated() {
    let (mut s, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let _ = want(&mut s, 1, Want::Token, T0 + 3_600_000.0);
    // The other tab's notice arrives before the lock does.
    let mut t = s.tokens().unwrap().clone();
    t.access_token = "at1".into();
    t.refresh_token = Some("rt1".into());
    t.expires_at = Some(T0 + 7_200_000.0);
    t.received_at = T0 + 3_600_000.0;
    let _ = s.handle(Input::StorageSaw(Read::Tokens(t.clone())), T0 + 3_600_001.0);
    let fx = s.handle(Input::LockGranted { stored: Read::Tokens(t), marked: false }, T0 + 3_600_002.0);
    assert!(sends(&fx).is_empty(), "{fx:?}");
    assert_eq!(answers(&fx), [(1, Ok(Some("at1".into())))]);
    assert!(fx.contains(&Effect::Unlock));
}

#[test]
fn f9_while_backing_off_an_expired_token_fails_fast() {
    let (mut s, _) = signed_in(Store::Memory, "at0", "rt0", 60);
    let now = T0 + 61_000.0; // expired
    let fx = want(&mut s, 1, Want::Fetch, now);
    let flight = sends(&fx)[0].0;
    let reply = Reply::Http { status: 503, body: String::new(), retry_after: Some("120".into()), date: None, age: None, sent_at: now };
    let fx = s.handle(Input::Answered { flight, reply, stored: None, random: 0.5 }, now + 100.0);
    assert!(matches!(&answers(&fx)[..], [(1, Err(Error::Refresh(_)))]));
    for i in 0..5 {
        let fx = want(&mut s, 10 + i, Want::Fetch, now + 1_000.0 * f64::from(i));
        assert!(sends(&fx).is_empty(), "no refresh per request while backing off");
        match &answers(&fx)[..] {
            [(_, Err(e @ Error::BackingOff { .. }))] => {
                let secs = e.retry_in_seconds().unwrap();
                assert!((110.0..=120.0).contains(&secs), "{secs}");
            }
            other => panic!("{other:?}"),
        }
    }
    // One explicit refresh may try at once.
    assert_eq!(sends(&want(&mut s, 99, Want::Refresh, now + 6_000.0)).len(), 1);
}

#[test]
fn f12_a_clock_that_jumps_back_never_revives_an_expired_token() {
    let (mut s, _) = signed_in(Store::Memory, "at0", "rt0", 60);
    let later = T0 + 120_000.0;
    let _ = s.handle(Input::Timer, later);
    assert!(s.is_expired(later, 0.0));
    let jumped_back = T0;
    assert!(s.is_expired(jumped_back, 0.0), "the session's time does not go back");
    assert!(s.token_now(jumped_back).is_none(), "not handed out as fresh");
    assert!(s.poll_timeout().is_none_or(|t| t >= later));
}

#[test]
fn f12_the_skew_is_taken_only_from_successful_answers_minus_age() {
    let jwt = |claims: &str| {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.c2ln", b.encode(r#"{"alg":"HS256"}"#), b.encode(claims))
    };
    let (mut s, _) = signed_in(Store::Memory, "at0", "rt0", 3600);
    let now = T0 + 10_000.0;
    // A cached 503 with an old Date does not move the estimate.
    let fx = want(&mut s, 1, Want::Refresh, now);
    let reply = Reply::Http { status: 503, body: String::new(), retry_after: None, date: Some(now - 600_000.0), age: None, sent_at: now };
    let _ = s.handle(Input::Answered { flight: sends(&fx)[0].0, reply, stored: None, random: 0.5 }, now);
    assert_eq!(s.skew(), 0.0);
    // A successful answer whose Date is 600 s old but says Age: 600 shows no skew.
    let fx = want(&mut s, 2, Want::Refresh, now + 1.0);
    let at = jwt(&format!(r#"{{"exp":{}}}"#, (now / 1000.0).floor() + 3600.0));
    let body = format!(r#"{{"access_token":"{at}","token_type":"Bearer","refresh_token":"rt1"}}"#);
    let reply = Reply::Http { status: 200, body, retry_after: None, date: Some(now - 600_000.0), age: Some(600_000.0), sent_at: now };
    let _ = s.handle(Input::Answered { flight: sends(&fx)[0].0, reply, stored: None, random: 0.5 }, now + 1.0);
    assert_eq!(s.skew(), 0.0);
}

#[test]
fn d2_expired_is_not_said_while_the_session_can_still_be_renewed() {
    let mut c = cfg(Store::Memory);
    c.auto_refresh = false;
    let mut s = Session::new(c);
    let (t, skew) = s.parse(&response("at0", "rt0", 6), T0).unwrap();
    let _ = s.set_tokens(t, skew, "sid".into(), T0);
    assert_eq!(s.poll_timeout(), None);
    let fx = s.handle(Input::Timer, T0 + 10_000.0);
    assert!(emits(&fx).is_empty(), "{fx:?}");
    // Without a refresh token, expiry does end the session.
    let mut s = Session::new(cfg(Store::Memory));
    let (t, skew) = s.parse(r#"{"access_token":"a","expires_in":6}"#, T0).unwrap();
    let _ = s.set_tokens(t, skew, "sid".into(), T0);
    assert_eq!(s.poll_timeout(), Some(T0 + 1_000.0));
    assert_eq!(emits(&s.handle(Input::Timer, T0 + 1_000.0)), [Event::Expired]);
}

#[test]
fn a_future_version_record_is_left_alone() {
    let mut s = Session::new(cfg(Store::Shared));
    let _ = s.handle(Input::Loaded(Read::FutureVersion), T0);
    let (t, skew) = s.parse(&response("a", "r", 3600), T0).unwrap();
    let fx = s.set_tokens(t, skew, "sid".into(), T0);
    assert!(writes(&fx).is_empty(), "{fx:?}");
    assert_eq!(s.access_token(), Some("a"), "the session lives in memory");
    assert!(writes(&s.handle(Input::Logout, T0 + 1.0)).is_empty());
}

#[test]
fn a_fatal_refresh_emits_expired_after_refresh_error_in_one_batch() {
    // The driver skips effects produced under an older version: a
    // refreshError listener that signs in again is not followed by expired.
    let (mut s, flight, now) = waiting_fetch();
    let v = s.version();
    let reply =
        Reply::Http { status: 400, body: r#"{"error":"invalid_grant"}"#.into(), retry_after: None, date: None, age: None, sent_at: now };
    let fx = s.handle(Input::Answered { flight, reply, stored: None, random: 0.5 }, now);
    assert_ne!(s.version(), v);
    let tail: Vec<_> = fx.iter().rev().take(2).collect();
    assert!(matches!(tail.as_slice(), [Effect::Emit(Event::Expired), Effect::Emit(Event::RefreshError { .. })]), "{fx:?}");
}

#[test]
fn the_session_binding_follows_another_tab() {
    let (mut a, _) = signed_in(Store::Shared, "at0", "rt0", 3600);
    let mut b = Session::new(cfg(Store::Shared));
    let _ = b.handle(Input::Loaded(Read::Empty), T0);
    let fx = b.handle(Input::StorageSaw(stored(&a)), T0 + 1.0);
    assert_eq!(b.access_token(), Some("at0"));
    assert!(matches!(emits(&fx).as_slice(), [Event::Tokens { .. }]));
    // A refresh in a keeps the session: b adopts within it.
    let _ = a.handle(Input::Logout, T0 + 2.0);
    let fx = b.handle(Input::StorageSaw(Read::Empty), T0 + 3.0);
    assert_eq!(emits(&fx), [Event::Logout(Reason::Remote)]);
    // A record of another client on the key is a logout here, never adopted.
    let (mut c, _) = signed_in(Store::Shared, "at5", "rt5", 3600);
    let fx = c.handle(Input::StorageSaw(Read::Foreign), T0 + 4.0);
    assert_eq!(emits(&fx), [Event::Logout(Reason::Remote)]);
}

#[test]
fn dpop_tokens_only_with_dpop_on() {
    let dpop = r#"{"access_token":"a","token_type":"DPoP","expires_in":60,"refresh_token":"r"}"#;
    let s = Session::new(cfg(Store::Memory));
    assert!(matches!(s.parse(dpop, T0), Err(tessera::core::token::TokenError::UnsupportedTokenType(t)) if t == "DPoP"));
    let mut c = cfg(Store::Memory);
    c.dpop = true;
    let mut s = Session::new(c);
    let (t, skew) = s.parse(dpop, T0).unwrap();
    assert!(t.dpop);
    let _ = s.set_tokens(t, skew, "sid".into(), T0);
    // The record keeps the type, so another tab sends it as DPoP too.
    let stored = record::encode(s.tokens().unwrap(), CLIENT);
    assert!(stored.contains(r#""token_type":"DPoP""#));
    assert!(matches!(record::decode(Some(&stored), CLIENT), Read::Tokens(t) if t.dpop));
    // A refresh answer of type DPoP without DPoP on is unusable (transient).
    let (mut s, _) = signed_in(Store::Memory, "at0", "rt0", 3600);
    let fx = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let reply = Reply::Http { status: 200, body: dpop.into(), retry_after: None, date: None, age: None, sent_at: T0 };
    let fx2 = s.handle(Input::Answered { flight: sends(&fx)[0].0, reply, stored: None, random: 0.5 }, T0 + 2.0);
    assert!(matches!(&answers(&fx2)[..], [(1, Err(Error::Refresh(Failure::Transient { .. })))]), "{fx2:?}");
    assert_eq!(s.access_token(), Some("at0"));
}

#[test]
fn a_dpop_challenge_tells_the_servers_clock() {
    let (mut s, _) = signed_in(Store::Memory, "at0", "rt0", 3600);
    let now = T0 + 10.0;
    let _ = s.handle(Input::ClockSeen { date: now - 7_200_000.0, age: 0.0, sent_at: now }, now);
    assert!((s.skew() + 7_200_000.0).abs() < 1_000.0, "{}", s.skew());
}
