//! Host tests of the session at the edges of the second session review
//! (R1 to R13 where the core decides; the rest are browser and Node tests):
//! sign-ins over live sessions, crossed write-backs, disposal with a refresh
//! on the wire, failed reads, logouts before an asynchronous load, refreshes
//! in doubt, DPoP records, and the floors that keep refreshes from storming.
//! Each failed on main at d05e99c.

#![cfg(not(target_arch = "wasm32"))]

use tessera::core::error::Error;
use tessera::core::record::{self, Read};
use tessera::core::session::*;
use tessera::core::token::TokenSet;

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

fn loaded(store: Store) -> Session {
    let mut s = Session::new(cfg(store));
    let _ = s.handle(Input::Loaded(Read::Empty), T0);
    s
}

fn sign_in(s: &mut Session, sid: &str, at: &str, rt: &str, expires_in: u32, now: f64) -> Vec<Effect> {
    let (t, skew) = s.parse(&response(at, rt, expires_in), now).unwrap();
    s.set_tokens(t, skew, sid.into(), now)
}

/// A record of session `sid`, as another tab wrote it.
fn record_of(sid: &str, at: &str, rt: &str, now: f64) -> Read {
    let s = Session::new(cfg(Store::Memory));
    let (mut t, _) = s.parse(&response(at, rt, 3600), now).unwrap();
    t.sid = sid.into();
    t.born = now;
    Read::Tokens(t)
}

/// What `s` leaves in storage.
fn stored(s: &Session) -> Read {
    match s.tokens() {
        Some(t) => record::decode(Some(&record::encode(t, CLIENT)), CLIENT),
        None => Read::Empty,
    }
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

fn revoked(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Revoke { token, .. } => Some(token.clone()),
            _ => None,
        })
        .collect()
}

fn written(fx: &[Effect]) -> Vec<TokenSet> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Write { record, .. } => match record::decode(Some(record), CLIENT) {
                Read::Tokens(t) => Some(t),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

// ---- R1: a sign-in over a live session ends it --------------------------

#[test]
fn r1_signing_in_over_a_live_session_revokes_it_and_never_takes_it_back() {
    let mut c = loaded(Store::Shared);
    let _ = sign_in(&mut c, "sid-x", "atX", "rtX", 3600, T0);
    // User Y signs in with no logout in between: X's refresh token is revoked.
    let fx = sign_in(&mut c, "sid-y", "atY", "rtY", 3600, T0 + 2.0);
    assert_eq!(revoked(&fx), ["rtX"]);
    // A tab whose refresh of X crossed the switch writes X back: not taken,
    // its refresh token revoked, storage set right under the lock.
    let fx = c.handle(Input::StorageSaw(record_of("sid-x", "atX2", "rtX2", T0)), T0 + 3.0);
    assert_eq!(c.access_token(), Some("atY"), "user X's session replaced user Y's sign-in: {fx:?}");
    assert_eq!(revoked(&fx), ["rtX2"]);
    assert!(fx.contains(&Effect::Lock { steal: false }), "{fx:?}");
    let fx = c.handle(Input::LockGranted { stored: record_of("sid-x", "atX2", "rtX2", T0), marked: false }, T0 + 4.0);
    assert_eq!(written(&fx).iter().map(|t| t.access_token.as_str()).collect::<Vec<_>>(), ["atY"]);
}

#[test]
fn r1_a_tab_that_followed_the_switch_does_not_go_back_to_the_old_user() {
    let mut b = loaded(Store::Shared);
    let _ = b.handle(Input::StorageSaw(record_of("sid-x", "atX", "rtX", T0)), T0);
    let _ = b.handle(Input::StorageSaw(record_of("sid-y", "atY", "rtY", T0 + 2.0)), T0 + 2.0);
    let fx = b.handle(Input::StorageSaw(record_of("sid-x", "atX2", "rtX2", T0)), T0 + 3.0);
    assert_eq!(b.access_token(), Some("atY"), "tab B sends user X's token: {fx:?}");
}

#[test]
fn r1_the_same_tokens_set_again_are_the_same_session() {
    let mut c = loaded(Store::Shared);
    let _ = sign_in(&mut c, "sid-x", "atX", "rtX", 3600, T0);
    let fx = sign_in(&mut c, "sid-other", "atX", "rtX", 3600, T0 + 1.0);
    assert!(revoked(&fx).is_empty(), "revoking the refresh token would end the session just set: {fx:?}");
    assert_eq!(c.tokens().unwrap().sid, "sid-x");
}

// ---- R3: crossed write-backs (zombies) ----------------------------------

/// Tab A: session 0 signed out here, then session 1 signed in.
fn tab_with_an_ended_session() -> Session {
    let mut a = loaded(Store::Shared);
    let _ = sign_in(&mut a, "sid-0", "at0", "rt0", 3600, T0);
    let _ = a.handle(Input::Logout, T0 + 1.0);
    let _ = sign_in(&mut a, "sid-1", "at1", "rt1", 3600, T0 + 2.0);
    a
}

#[test]
fn r3a_a_zombie_seen_under_the_lock_is_undone_and_the_refresh_goes_on() {
    let mut a = tab_with_an_ended_session();
    let fx = want(&mut a, 1, Want::Refresh, T0 + 3.0);
    assert_eq!(fx, [Effect::Lock { steal: false }]);
    let fx = a.handle(Input::LockGranted { stored: record_of("sid-0", "at0b", "rt0b", T0), marked: false }, T0 + 4.0);
    assert_eq!(revoked(&fx), ["rt0b"]);
    assert_eq!(written(&fx).iter().map(|t| t.access_token.as_str()).collect::<Vec<_>>(), ["at1"], "storage set right");
    // Never stuck: the refresh settles and the lock is released. (It tries
    // again in a moment: the write-back may have replaced a refresh of
    // session 1 made by a tab this one has not heard from.)
    assert!(fx.contains(&Effect::Unlock), "{fx:?}");
    assert!(matches!(&answers(&fx)[..], [(1, Err(Error::Refresh(_)))]), "{fx:?}");
    let retry = a.next_refresh_at().unwrap();
    assert!(retry < T0 + 6_000.0, "tried again within seconds: {retry}");
    let fx = a.handle(Input::Timer, retry);
    assert_eq!(fx, [Effect::Lock { steal: false }]);
    let fx = a.handle(Input::LockGranted { stored: stored(&a), marked: false }, retry + 1.0);
    assert_eq!(sends(&fx).iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["rt1"], "{fx:?}");
}

#[test]
fn r3a_a_zombie_seen_when_the_lock_wait_times_out_does_not_stick() {
    let mut a = tab_with_an_ended_session();
    let _ = want(&mut a, 1, Want::Token, T0 + 3_600_000.0); // expired: a refresh is needed
    let fx = a.handle(Input::LockTimedOut { stored: record_of("sid-0", "at0b", "rt0b", T0), marked: false }, T0 + 3_635_000.0);
    assert!(!sends(&fx).is_empty() || fx.contains(&Effect::Lock { steal: true }) || !answers(&fx).is_empty(), "{fx:?}");
}

#[test]
fn r3b_a_zombie_at_the_answer_never_throws_away_this_tabs_rotation() {
    let mut a = tab_with_an_ended_session();
    let _ = want(&mut a, 1, Want::Refresh, T0 + 3.0);
    let fx = a.handle(Input::LockGranted { stored: stored(&a), marked: false }, T0 + 4.0);
    let flight = sends(&fx)[0].0;
    let fx = a.handle(
        Input::Answered {
            flight,
            reply: ok("at2", "rt2", 3600, T0 + 4.0),
            stored: Some(record_of("sid-0", "at0b", "rt0b", T0)),
            random: 0.5,
        },
        T0 + 5.0,
    );
    assert_eq!(a.tokens().and_then(|t| t.refresh_token.clone()).as_deref(), Some("rt2"), "{fx:?}");
    assert_eq!(written(&fx).iter().map(|t| t.refresh_token.clone().unwrap()).collect::<Vec<_>>(), ["rt2"]);
    assert_eq!(revoked(&fx), ["rt0b"]);
}

#[test]
fn r3c_an_older_copy_of_a_session_never_replaces_a_newer_refresh() {
    // Tab C refreshed session 1 (rt1 -> rt2). An older copy (rt1) lands in
    // storage (written by a tab that had not seen the refresh): C keeps rt2,
    // and its next refresh presents rt2, never rt1.
    let mut c = loaded(Store::Shared);
    let _ = c.handle(Input::StorageSaw(record_of("sid-1", "at1", "rt1", T0)), T0);
    let _ = want(&mut c, 1, Want::Refresh, T0 + 1.0);
    let fx = c.handle(Input::LockGranted { stored: stored(&c), marked: false }, T0 + 2.0);
    let flight = sends(&fx)[0].0;
    let before = stored(&c);
    let _ =
        c.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0 + 2.0), stored: Some(before.clone()), random: 0.5 }, T0 + 3.0);
    let fx = c.handle(Input::StorageSaw(before.clone()), T0 + 4.0);
    assert_eq!(c.access_token(), Some("at2"), "{fx:?}");
    let _ = want(&mut c, 2, Want::Refresh, T0 + 10_000.0);
    let fx = c.handle(Input::LockGranted { stored: before, marked: false }, T0 + 10_001.0);
    assert_eq!(written(&fx).iter().map(|t| t.refresh_token.clone().unwrap()).collect::<Vec<_>>(), ["rt2"], "storage set right");
    assert_eq!(sends(&fx).iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["rt2"]);
}

// ---- R4: dispose() with a refresh on the wire ---------------------------

fn disposed_mid_refresh(store: Store) -> (Session, u32, Vec<Effect>) {
    let mut m1 = loaded(store);
    let _ = sign_in(&mut m1, "sid-1", "at1", "rt1", 90, T0);
    let now = T0 + 50_000.0;
    let mut fx = want(&mut m1, 1, Want::Fetch, now);
    if store != Store::Memory {
        fx = m1.handle(Input::LockGranted { stored: stored(&m1), marked: false }, now);
    }
    let flight = sends(&fx)[0].0;
    let fx = m1.handle(Input::Dispose, now + 1.0);
    (m1, flight, fx)
}

#[test]
fn r4_dispose_does_not_abort_a_refresh_on_the_wire_and_keeps_its_rotation() {
    for store in [Store::Shared, Store::Private] {
        let (mut m1, flight, fx) = disposed_mid_refresh(store);
        assert!(!fx.iter().any(|e| matches!(e, Effect::Abort { .. } | Effect::Unlock | Effect::Unmark)), "{store:?}: {fx:?}");
        let before = record_of("sid-1", "at1", "rt1", T0);
        let base = stored(&m1);
        let _ = before;
        let fx = m1.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0), stored: Some(base), random: 0.5 }, T0 + 50_100.0);
        assert_eq!(written(&fx).iter().map(|t| t.refresh_token.clone().unwrap()).collect::<Vec<_>>(), ["rt2"], "{store:?}: {fx:?}");
        assert!(fx.contains(&Effect::Unlock), "the lock is released once it is written");
    }
}

#[test]
fn r4_a_private_store_refreshes_under_the_page_lock() {
    // The manager made after a disposed one (Strict Mode, hot reload) waits
    // for the page lock the disposed one holds: it never presents rt1 while
    // rt1 is on the wire.
    let mut m2 = Session::new(cfg(Store::Private));
    let _ = m2.handle(Input::Loaded(record_of("sid-1", "at1", "rt1", T0)), T0 + 50_002.0);
    let fx = want(&mut m2, 1, Want::Fetch, T0 + 3_700_000.0);
    assert_eq!(fx, [Effect::Lock { steal: false }]);
}

#[test]
fn r4_a_disposed_managers_late_answer_does_not_undo_the_next_managers_logout() {
    let (mut m1, flight, _) = disposed_mid_refresh(Store::Private);
    // The page's record after the next manager signed out: empty.
    let fx =
        m1.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0), stored: Some(Read::Empty), random: 0.5 }, T0 + 50_004.0);
    assert!(written(&fx).is_empty(), "the logout is undone: {fx:?}");
    assert_eq!(revoked(&fx), ["rt2"], "the rotated refresh token does not outlive the logout");
    // Storage that cannot be read is no proof of the base either.
    let (mut m1, flight, _) = disposed_mid_refresh(Store::Private);
    let fx = m1.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0), stored: None, random: 0.5 }, T0 + 50_004.0);
    assert!(written(&fx).is_empty(), "written blind: {fx:?}");
    assert!(fx.contains(&Effect::Unlock), "{fx:?}");
}

// ---- R5, R6 -------------------------------------------------------------

#[test]
fn r5_a_failed_read_never_removes_the_record() {
    let mut s = Session::new(cfg(Store::Private));
    let fx = s.handle(Input::StorageFailed { first_copy: false, write: false }, T0);
    let _ = s.handle(Input::Loaded(Read::Empty), T0);
    assert!(!fx.contains(&Effect::Remove), "{fx:?}");
}

#[test]
fn r6_a_logout_before_an_async_load_stays_a_logout() {
    let mut s = Session::new(cfg(Store::Private));
    let fx = s.handle(Input::Logout, T0);
    assert!(fx.contains(&Effect::Remove));
    let fx = s.handle(Input::Loaded(record_of("sid-old", "atOld", "rtOld", T0 - 10_000.0)), T0 + 5.0);
    assert_eq!(s.access_token(), None, "{fx:?}");
    assert_eq!(revoked(&fx), ["rtOld"], "the session the user signed out of is revoked");
}

// ---- R9: no refresh storms ----------------------------------------------

#[test]
fn r9_tiny_tokens_do_not_make_every_request_refresh() {
    let mut s = loaded(Store::Memory);
    let _ = sign_in(&mut s, "sid-1", "at0", "rt0", 3600, T0);
    let fx = want(&mut s, 100, Want::Refresh, T0 + 1.0);
    let (mut flight, mut refreshes) = (sends(&fx)[0].0, 0);
    let mut now = T0 + 1.0;
    // The server now issues tokens of 0 s. The app calls once a second for two minutes.
    for i in 0..120u32 {
        let fx =
            s.handle(Input::Answered { flight, reply: ok(&format!("at{i}"), &format!("rt{i}"), 0, now), stored: None, random: 0.5 }, now);
        let _ = fx;
        loop {
            now += 1_000.0;
            let fx = want(&mut s, i, Want::Fetch, now);
            if let Some((f, _)) = sends(&fx).first() {
                refreshes += 1;
                flight = *f;
                break;
            }
            assert_eq!(answers(&fx).len(), 1, "the request is answered at once (with the token that came last)");
            if now > T0 + 120_000.0 {
                break;
            }
        }
        if now > T0 + 120_000.0 {
            break;
        }
    }
    assert!(refreshes <= 10, "{refreshes} token requests in two minutes of one request a second");
}

#[test]
fn r9_a_401_on_every_request_does_not_refresh_on_every_request() {
    let mut s = loaded(Store::Memory);
    let _ = sign_in(&mut s, "sid-1", "at0", "rt0", 3600, T0);
    let epoch = s.epoch();
    let mut refreshes = 0;
    let mut now = T0 + 1_000.0;
    for i in 0..120u32 {
        let current = s.access_token().unwrap().to_string();
        let fx = s.handle(Input::Want { request: i, kind: Want::Replay(current), epoch: Some(epoch) }, now);
        if let Some((flight, _)) = sends(&fx).first().cloned() {
            refreshes += 1;
            let _ = s.handle(
                Input::Answered { flight, reply: ok(&format!("a{i}"), &format!("r{i}"), 3600, now), stored: None, random: 0.5 },
                now + 50.0,
            );
        } else {
            assert_eq!(answers(&fx).len(), 1, "the refusal goes back to the caller");
        }
        now += 1_000.0;
    }
    assert!(refreshes <= 8, "{refreshes} refreshes in two minutes of requests answered 401");
    assert!(refreshes >= 2, "a refusal of a token that came long ago is still refreshed");
}

#[test]
fn r9_the_first_refusal_of_a_token_is_refreshed_at_once() {
    let mut s = loaded(Store::Memory);
    let _ = sign_in(&mut s, "sid-1", "at0", "rt0", 3600, T0);
    let fx = s.handle(Input::Want { request: 1, kind: Want::Replay("at0".into()), epoch: Some(s.epoch()) }, T0 + 10.0);
    assert_eq!(sends(&fx).len(), 1, "an access token revoked at the server is replaced at once: {fx:?}");
}

// ---- R10: a refresh that timed out is in doubt --------------------------

#[test]
fn r10_the_late_answer_of_a_timed_out_refresh_is_applied() {
    for store in [Store::Memory, Store::Shared] {
        let mut s = loaded(store);
        let _ = sign_in(&mut s, "sid-1", "at1", "rt1", 3600, T0);
        let mut fx = want(&mut s, 1, Want::Refresh, T0 + 1.0);
        if store == Store::Shared {
            fx = s.handle(Input::LockGranted { stored: stored(&s), marked: false }, T0 + 2.0);
        }
        let flight = sends(&fx)[0].0;
        let base = stored(&s);
        let fx = s.handle(Input::Answered { flight, reply: Reply::Timeout, stored: Some(base.clone()), random: 0.5 }, T0 + 30_002.0);
        assert!(matches!(&answers(&fx)[..], [(1, Err(_))]), "{fx:?}");
        // It reached the server after all: its rotation is kept.
        let mut fx = s.handle(
            Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0 + 31_000.0), stored: Some(base.clone()), random: 0.5 },
            T0 + 31_000.0,
        );
        if store == Store::Shared {
            assert_eq!(fx, [Effect::Lock { steal: false }], "written under the lock");
            fx = s.handle(Input::LockGranted { stored: base, marked: false }, T0 + 31_001.0);
        }
        assert_eq!(s.tokens().and_then(|t| t.refresh_token.clone()).as_deref(), Some("rt2"), "{store:?}: {fx:?}");
        if store == Store::Shared {
            assert_eq!(written(&fx).len(), 1);
        }
    }
}

#[test]
fn r10_a_late_answer_for_an_ended_session_is_revoked() {
    let mut s = loaded(Store::Memory);
    let _ = sign_in(&mut s, "sid-1", "at1", "rt1", 3600, T0);
    let fx = want(&mut s, 1, Want::Refresh, T0 + 1.0);
    let flight = sends(&fx)[0].0;
    let _ = s.handle(Input::Answered { flight, reply: Reply::Timeout, stored: None, random: 0.5 }, T0 + 30_001.0);
    let _ = s.handle(Input::Logout, T0 + 30_002.0);
    let fx = s.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0), stored: None, random: 0.5 }, T0 + 31_000.0);
    assert_eq!(revoked(&fx), ["rt2"]);
    assert_eq!(s.access_token(), None);
}

// ---- R12: a record's DPoP binding ---------------------------------------

fn dpop_record() -> Read {
    let mut c = cfg(Store::Memory);
    c.dpop = true;
    let s = Session::new(c);
    let (mut t, _) = s.parse(r#"{"access_token":"d1","token_type":"DPoP","expires_in":3600,"refresh_token":"dr1"}"#, T0).unwrap();
    t.sid = "sid-d".into();
    record::decode(Some(&record::encode(&t, CLIENT)), CLIENT)
}

#[test]
fn r12_a_manager_without_dpop_does_not_adopt_dpop_tokens_from_storage() {
    let mut s = Session::new(cfg(Store::Shared));
    let _ = s.handle(Input::Loaded(dpop_record()), T0);
    assert!(s.tokens().is_none(), "loaded a DPoP-bound token it cannot use");
    let mut s = loaded(Store::Shared);
    let _ = s.handle(Input::StorageSaw(dpop_record()), T0);
    assert!(s.tokens().is_none(), "followed another tab into a DPoP-bound token it cannot use");
}

// ---- storage that lags: a tab's copy behind what another tab told --------

#[test]
fn a_copy_of_storage_behind_a_notice_is_not_acted_on() {
    let mut s = loaded(Store::Shared);
    let _ = s.handle(Input::StorageSaw(record_of("sid-1", "at1", "rt1", T0)), T0);
    // Another tab refreshed (generation 1) and said so; this tab's copy of
    // storage still shows generation 0 when the lock comes.
    let _ = s.handle(Input::Heard { sid: "sid-1".into(), born: T0, gen: 1 }, T0 + 1.0);
    let _ = want(&mut s, 1, Want::Refresh, T0 + 2.0);
    assert!(s.behind(&record_of("sid-1", "at1", "rt1", T0)));
    let fx = s.handle(Input::LockGranted { stored: record_of("sid-1", "at1", "rt1", T0), marked: false }, T0 + 3.0);
    assert!(sends(&fx).is_empty(), "rt1 was rotated by the other tab: {fx:?}");
    assert!(fx.contains(&Effect::Unlock));
}

#[test]
fn a_sign_in_comes_after_every_session_heard_of_even_with_a_clock_behind() {
    // This tab's clock is an hour behind, and its copy of storage never
    // showed the other tab's session: the notice did. A sign-in here is
    // still born after it, so no tab takes the other session for newer.
    let mut s = loaded(Store::Shared);
    let _ = s.handle(Input::Heard { sid: "sid-other".into(), born: T0, gen: 0 }, T0 - 3_600_000.0);
    let fx = sign_in(&mut s, "sid-mine", "atM", "rtM", 3600, T0 - 3_599_000.0);
    let mine = written(&fx).pop().expect("written");
    assert!(mine.born > T0, "born {} before the session heard of ({T0})", mine.born);
}

#[test]
fn a_disposed_managers_answer_is_not_written_over_another_session() {
    // Storage shows a session this manager never saw, born before its own
    // (a tab with its clock behind signed in after a logout): a disposed
    // manager hears nothing more and writes only over its own base.
    let (mut m1, flight, _) = disposed_mid_refresh(Store::Shared);
    let other = record_of("sid-new", "atN", "rtN", T0 - 3_600_000.0);
    let fx = m1.handle(Input::Answered { flight, reply: ok("at2", "rt2", 3600, T0), stored: Some(other), random: 0.5 }, T0 + 50_100.0);
    assert!(written(&fx).is_empty(), "{fx:?}");
    assert_eq!(revoked(&fx), ["rt2"]);
}

#[test]
fn a_tab_signed_out_does_not_adopt_a_session_born_before_one_it_loaded() {
    // Loaded with a session, then signed out by another tab; a crossed
    // write-back of an older session (born before the one loaded) arrives:
    // it is not taken up (two tabs would otherwise repair each other's
    // session forever).
    let mut s = Session::new(cfg(Store::Shared));
    let _ = s.handle(Input::Loaded(record_of("sid-new", "atN", "rtN", T0 + 1_000.0)), T0 + 2_000.0);
    let _ = s.handle(Input::StorageSaw(Read::Empty), T0 + 2_001.0);
    let fx = s.handle(Input::StorageSaw(record_of("sid-old", "atO", "rtO", T0)), T0 + 2_002.0);
    assert_eq!(s.access_token(), None, "{fx:?}");
}

#[test]
fn a_refresh_token_kept_for_an_answer_that_never_came_is_given_up() {
    // Storage fails (reads throw) while this tab's refresh is on the wire:
    // the refresh token is kept for that answer only. The request times
    // out: other tabs may have moved on with the session meanwhile, and
    // this tab can no longer see them, so it never presents it again.
    let mut s = loaded(Store::Shared);
    let _ = sign_in(&mut s, "sid-1", "at1", "rt1", 90, T0);
    let now = T0 + 50_000.0;
    let _ = want(&mut s, 1, Want::Fetch, now);
    let fx = s.handle(Input::LockGranted { stored: stored(&s), marked: false }, now);
    let flight = sends(&fx)[0].0;
    let _ = s.handle(Input::StorageFailed { first_copy: false, write: false }, now + 1.0);
    let _ = s.handle(Input::Answered { flight, reply: Reply::Timeout, stored: None, random: 0.5 }, now + 30_000.0);
    for t in [now + 31_000.0, now + 400_000.0] {
        let fx = want(&mut s, 2, Want::Refresh, t);
        assert!(sends(&fx).is_empty(), "rt1 presented again from a tab that cannot see the others: {fx:?}");
        let fx = s.handle(Input::Timer, t + 1.0);
        assert!(sends(&fx).is_empty(), "{fx:?}");
    }
}
