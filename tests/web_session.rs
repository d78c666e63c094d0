//! Browser tests of the session under races and odd hosts: one scenario per
//! finding of the session review (../shared/reviews/2026-11-24-session.md)
//! and of the bad-input catalogue, as a user of the library would see it,
//! against the real local auth server. Each failed on the code before the
//! session core (see the commit that added this file).
#![cfg(target_arch = "wasm32")]

mod support;

use js_sys::{Array, Promise};
use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn other_origin() -> String {
    let port: u32 = AUTH.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in TESSERA_AUTH_URL");
    format!("http://127.0.0.1:{}", port + 1)
}

/// A manager for the auth server whose every request goes through `transport`.
fn manager_via(transport: &JsValue, key: &str, extra: &str) -> TokenManager {
    let opts = js(&format!(
        r#"{{"storageKey":"{key}","tokenEndpoint":"{AUTH}/oauth/token","revocationEndpoint":"{AUTH}/oauth/revoke",
            "clientId":"tessera-demo","allowedOrigins":["{AUTH}"]{extra}}}"#
    ));
    js_sys::Reflect::set(&opts, &"fetch".into(), transport).unwrap();
    TokenManager::new(opts).unwrap_or_else(|e| panic!("{}", message(&e)))
}

fn code(e: &JsValue) -> String {
    get_str(e, "code")
}

fn urls(transport: &JsValue) -> Vec<String> {
    list(transport, "calls").iter().map(|c| c.as_string().unwrap_or_default()).collect()
}

fn called(transport: &JsValue, path: &str) -> usize {
    urls(transport).iter().filter(|u| u.ends_with(path)).count()
}

/// A manager whose 300 s token is due for refresh but not expired: the
/// device clock is moved 260 s on (past the 60 s margin, inside the 5 s
/// leeway of expiry). The returned
/// function puts the clock back.
async fn due_not_expired(key: &str, user: &str) -> (TokenManager, JsValue, String, js_sys::Function) {
    let transport = counting_fetch();
    let tm = manager_via(&transport, key, r#","storage":"memory","autoRefresh":false"#);
    let sid = sign_in(&tm, user, 300).await;
    let restore = shift_clock(260_000.0);
    assert!(!tm.is_expired(None));
    (tm, transport.into(), sid, restore)
}

#[wasm_bindgen_test]
async fn f1_a_request_waiting_for_a_refresh_is_not_sent_after_logout() {
    let (tm, transport, sid, restore) = due_not_expired("s-f1-logout", "f1-logout").await;
    fault("slow", &sid, r#","delay_ms":800"#).await;
    let p = tm.fetch(format!("{AUTH}/api/echo").into(), None);
    sleep(200.0).await;
    let _ = tm.logout();
    let r = await_js(p).await;
    restore.call0(&JsValue::NULL).unwrap();
    let e = r.expect_err("the request must not go out with the ended session's token");
    assert_eq!(code(&e), "superseded", "{}", message(&e));
    assert_eq!(called(&transport, "/api/echo"), 0, "nothing was sent");
}

#[wasm_bindgen_test]
async fn f1_a_request_waiting_for_a_refresh_is_not_sent_with_the_next_users_token() {
    let (tm, transport, sid, restore) = due_not_expired("s-f1-next", "f1-user-a").await;
    fault("slow", &sid, r#","delay_ms":800"#).await;
    let p = tm.fetch(format!("{AUTH}/api/echo").into(), None);
    sleep(200.0).await;
    let _ = tm.logout();
    let b = login("f1-user-b", 300).await;
    tm.set_tokens(b).unwrap();
    let r = await_js(p).await;
    restore.call0(&JsValue::NULL).unwrap();
    assert_eq!(code(&r.expect_err("user A's request must not carry user B's token")), "superseded");
    assert_eq!(called(&transport, "/api/echo"), 0);
    assert_eq!(get_str(&tm.claims(), "sub"), "f1-user-b", "user B's session is untouched");
}

#[wasm_bindgen_test]
async fn f1_a_request_waiting_for_a_fatal_refresh_is_refused() {
    let (tm, transport, sid, restore) = due_not_expired("s-f1-fatal", "f1-fatal").await;
    fault("invalid_grant", &sid, "").await;
    let r = await_js(tm.fetch(format!("{AUTH}/api/echo").into(), None)).await;
    restore.call0(&JsValue::NULL).unwrap();
    let e = r.expect_err("a dead session's token is not sent");
    assert_eq!(code(&e), "invalid_grant");
    assert_eq!(get(&e, "fatal").as_bool(), Some(true));
    assert_eq!(called(&transport, "/api/echo"), 0);
}

#[wasm_bindgen_test]
async fn f1_refresh_never_resolves_for_a_refresh_that_did_not_happen() {
    let tm = server_manager("s-f1-refresh", r#","storage":"memory""#);
    let sid = sign_in(&tm, "f1-refresh-a", 300).await;
    fault("slow", &sid, r#","delay_ms":800"#).await;
    let p = tm.refresh();
    sleep(200.0).await;
    tm.set_tokens(login("f1-refresh-b", 300).await).unwrap();
    let e = await_js(p).await.expect_err("the refresh that ran was for the previous session");
    assert_eq!(code(&e), "superseded");
    tm.dispose();
}

#[wasm_bindgen_test]
async fn f2_two_apps_on_one_origin_never_share_a_session() {
    let other = other_origin();
    // Default keys: derived from the client id.
    let a = TokenManager::new(js(&format!(r#"{{"clientId":"app-a","tokenEndpoint":"{AUTH}/oauth/token","allowedOrigins":["{AUTH}"]}}"#)))
        .unwrap();
    let sid = sign_in(&a, "f2-a", 300).await;
    let transport = counting_fetch();
    let opts = js(&format!(r#"{{"clientId":"app-b","tokenEndpoint":"{other}/oauth/token","allowedOrigins":["{other}"]}}"#));
    js_sys::Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
    let b = TokenManager::new(opts).unwrap();
    assert_eq!(b.access_token(), None, "app B does not start with app A's session");
    // One key given to both: the record is bound to its client.
    let key = "s-f2-shared";
    local_storage().remove_item(key).unwrap();
    let a2 = TokenManager::new(js(&format!(
        r#"{{"storageKey":"{key}","clientId":"app-a","tokenEndpoint":"{AUTH}/oauth/token","allowedOrigins":["{AUTH}"]}}"#
    )))
    .unwrap();
    let sid2 = sign_in(&a2, "f2-a2", 300).await;
    let opts =
        js(&format!(r#"{{"storageKey":"{key}","clientId":"app-b","tokenEndpoint":"{other}/oauth/token","allowedOrigins":["{other}"]}}"#));
    js_sys::Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
    let b2 = TokenManager::new(opts).unwrap();
    assert_eq!(b2.access_token(), None);
    let echo = await_js(b2.fetch(format!("{other}/api/echo").into(), None)).await.unwrap();
    let p: Promise = js_sys::Reflect::apply(&get(&echo, "json").unchecked_into::<js_sys::Function>(), &echo, &Array::new()).unwrap().into();
    assert!(get(&await_js(p).await.unwrap(), "authorization").is_null(), "app A's token never reaches app B's origin");
    assert_eq!(code(&await_js(b2.refresh()).await.expect_err("nothing to refresh")), "no_tokens");
    assert_eq!(called(&transport, "/oauth/token"), 0, "app A's refresh token never reaches app B's endpoint");
    assert_eq!(refreshes(&sid).await + refreshes(&sid2).await, 0.0);
    for m in [a, b, a2, b2] {
        let _ = m.logout();
        m.dispose();
    }
}

#[wasm_bindgen_test]
async fn f3_without_request_the_token_goes_only_to_urls_that_spell_the_origin() {
    let restore = hide_request();
    let t = recording_fetch();
    let opts = js(r#"{"storage":"memory","allowedOrigins":["https://api.example.com"]}"#);
    js_sys::Reflect::set(&opts, &"fetch".into(), &t).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    tm.set_tokens(js(r#"{"access_token":"SECRET","token_type":"Bearer","expires_in":3600}"#)).unwrap();
    let cases = [
        ("https://api.example.com\\@evil.test/steal", false),
        ("https://api.example.com@evil.test/", false),
        ("https://api.example.com.evil.test/x", false),
        ("https://api.example.com:443/x", false),
        ("https://api.example.com/v1/me?x=1", true),
        ("https://api.example.com", true),
    ];
    for (url, carries) in cases {
        await_js(tm.fetch(url.into(), None)).await.unwrap();
        let sent = list(&t, "sent").pop().unwrap();
        assert_eq!(get_str(&sent, "url"), url, "the transport gets exactly the string that was checked");
        let auth = get(&get(&sent, "headers"), "authorization");
        assert_eq!(auth.as_string().as_deref() == Some("Bearer SECRET"), carries, "{url}: {auth:?}");
    }
    restore.call0(&JsValue::NULL).unwrap();
}

#[wasm_bindgen_test]
async fn f11_header_shapes_are_honoured_alike_and_authorization_is_never_replaced() {
    let restore = hide_request();
    let t = recording_fetch();
    let opts = js(r#"{"storage":"memory","allowedOrigins":["https://api.example.com"]}"#);
    js_sys::Reflect::set(&opts, &"fetch".into(), &t).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    tm.set_tokens(js(r#"{"access_token":"SECRET","token_type":"Bearer","expires_in":3600}"#)).unwrap();
    let pairs = js(r#"{"headers":[["Authorization","Basic dXNlcjpwdw=="],["X-Trace","t1"]]}"#);
    let headers_obj = web_sys::Headers::new().unwrap();
    headers_obj.set("authorization", "Basic aGk=").unwrap();
    headers_obj.set("X-Trace", "t2").unwrap();
    let with_headers = js_sys::Object::new();
    js_sys::Reflect::set(&with_headers, &"headers".into(), &headers_obj).unwrap();
    let plain = js(r#"{"headers":{"authorization":"Basic eW8=","X-Trace":"t3"}}"#);
    for (init, auth, trace) in [(pairs, "Basic dXNlcjpwdw==", "t1"), (with_headers.into(), "Basic aGk=", "t2"), (plain, "Basic eW8=", "t3")]
    {
        await_js(tm.fetch("https://api.example.com/x".into(), Some(init.unchecked_into()))).await.unwrap();
        let sent = get(&list(&t, "sent").pop().unwrap(), "headers");
        assert_eq!(get_str(&sent, "authorization"), auth, "the caller's own Authorization is kept");
        assert_eq!(get_str(&sent, "x-trace"), trace);
        assert!(get(&sent, "0").is_undefined(), "no header named \"0\"");
    }
    // Without an Authorization of its own, any shape gets the token.
    let init = js(r#"{"headers":[["X-Trace","t4"]]}"#);
    await_js(tm.fetch("https://api.example.com/x".into(), Some(init.unchecked_into()))).await.unwrap();
    let sent = get(&list(&t, "sent").pop().unwrap(), "headers");
    assert_eq!(get_str(&sent, "authorization"), "Bearer SECRET");
    assert_eq!(get_str(&sent, "x-trace"), "t4");
    restore.call0(&JsValue::NULL).unwrap();
}

#[wasm_bindgen_test]
async fn f10_port_zero_is_not_the_default_port() {
    let t = recording_fetch();
    let opts = js(r#"{"storage":"memory","allowedOrigins":["https://api.example.com"]}"#);
    js_sys::Reflect::set(&opts, &"fetch".into(), &t).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    tm.set_tokens(js(r#"{"access_token":"SECRET","token_type":"Bearer","expires_in":3600}"#)).unwrap();
    for (url, carries) in
        [("https://api.example.com:0/x", false), ("https://api.example.com:0443/x", true), ("https://api.example.com:8443/x", false)]
    {
        await_js(tm.fetch(url.into(), None)).await.unwrap();
        let sent = get(&list(&t, "sent").pop().unwrap(), "headers");
        assert_eq!(get(&sent, "authorization").as_string().is_some(), carries, "{url}");
    }
}

#[wasm_bindgen_test]
async fn f4_a_write_that_fails_after_start_up_falls_back_to_memory_for_real() {
    let key = "s-f4";
    local_storage().remove_item(key).unwrap();
    let tm = server_manager(key, "");
    let sid = sign_in(&tm, "f4", 300).await;
    assert!(local_storage().get_item(key).unwrap().is_some(), "stored");
    let log = record(&tm, &["storageError", "logout"]);
    let restore = break_writes_of(key);
    let mut seen = vec![tm.access_token().unwrap()];
    for _ in 0..3 {
        await_js(tm.refresh()).await.expect("every refresh works");
        let t = tm.access_token().unwrap();
        assert!(!seen.contains(&t), "never back to an older token");
        seen.push(t);
    }
    restore.call0(&JsValue::NULL).unwrap();
    assert_eq!(tm.storage(), "memory", "tm.storage says where tokens live now");
    assert!(local_storage().get_item(key).unwrap().is_none(), "the stale record was removed");
    assert_eq!(names(&log), ["storageError"]);
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(3.0));
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false), "no rotated refresh token was presented again");
    // A later write to storage (another tab) is not adopted: tab sync stopped.
    let other = server_manager(key, "");
    sign_in(&other, "f4-other", 300).await;
    sleep(200.0).await;
    assert_eq!(tm.access_token().as_ref(), seen.last());
    tm.dispose();
    other.dispose();
}

#[wasm_bindgen_test]
async fn f5_a_copied_tab_with_session_storage_starts_signed_out() {
    let key = "s-f5";
    session_storage().remove_item(key).unwrap();
    session_storage().remove_item(&format!("{key}.tab")).unwrap();
    let a = server_manager(key, r#","storage":"sessionStorage""#);
    let sid = sign_in(&a, "f5", 300).await;
    sleep(100.0).await;
    a.dispose();
    // The original tab lives on elsewhere and holds its identity; this page
    // now plays the copy (a duplicated tab starts with the same sessionStorage).
    let id = session_storage().get_item(&format!("{key}.tab")).unwrap().unwrap_or_default();
    let release = await_js(hold_lock_elsewhere(&format!("tessera-tab:{id}"))).await.unwrap();
    let b = server_manager(key, r#","storage":"sessionStorage""#);
    let log = record(&b, &["logout"]);
    assert!(wait_until(3_000.0, || b.access_token().is_none()).await, "the copy does not keep the session");
    assert_eq!(names(&log), ["logout"]);
    assert_eq!(get_str(&detail(&log, 0), "reason"), "duplicate");
    assert_eq!(code(&await_js(b.get_access_token()).await.expect_err("signed out")), "no_tokens");
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(0.0), "the copy never presented the shared refresh token");
    assert_eq!(get(&f, "revoked").as_bool(), Some(false), "the original keeps its session");
    call0(&release);
    b.dispose();
}

#[wasm_bindgen_test]
async fn two_managers_in_one_page_on_session_storage_act_as_one() {
    let key = "s-two-session";
    session_storage().remove_item(key).unwrap();
    let a = server_manager(key, r#","storage":"sessionStorage""#);
    let b = server_manager(key, r#","storage":"sessionStorage""#);
    let sid = sign_in_expired(&a, "two-session").await;
    assert!(wait_until(1_000.0, || b.access_token() == a.access_token()).await, "b follows a's sign-in");
    let both = Array::of2(&a.get_access_token(), &b.get_access_token());
    let tokens = Array::from(&await_js(Promise::all(&both)).await.expect("both got a token"));
    assert_eq!(tokens.get(0), tokens.get(1));
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(1.0), "one refresh for both");
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false));
    let _ = b.logout();
    assert!(wait_until(1_000.0, || a.access_token().is_none()).await, "logout in either ends both");
    a.dispose();
    b.dispose();
}

#[wasm_bindgen_test]
async fn f6_a_logout_in_another_tab_during_a_refresh_wins() {
    let key = "s-f6";
    local_storage().remove_item(key).unwrap();
    let gate = gated_fetch();
    let a = manager_via(&gate, key, "");
    let b = server_manager(key, "");
    let log = record(&b, &["tokens", "logout"]);
    let sid = sign_in(&a, "f6", 300).await;
    assert!(wait_until(1_000.0, || b.access_token().is_some()).await);
    let pa = a.refresh();
    assert!(wait_until(2_000.0, || urls(&gate).iter().any(|u| u.ends_with("/oauth/token"))).await);
    sleep(300.0).await; // the server has rotated; its answer waits at the gate
                        // B's logout and A's answer land in the same moment.
    let pb = b.logout();
    call0(&get(&gate, "release"));
    let _ = await_js(pa).await;
    let _ = await_js(pb).await;
    sleep(300.0).await;
    assert_eq!(b.access_token(), None, "B stays logged out");
    assert_eq!(a.access_token(), None, "A follows the logout");
    assert!(local_storage().get_item(key).unwrap().is_none());
    assert_eq!(names(&log), ["tokens", "logout"], "no tokens after the logout");
    let f = family(&sid).await;
    assert_eq!(get(&f, "revoked").as_bool(), Some(true));
    assert_eq!(get(&f, "current_revoked").as_bool(), Some(true), "the rotated refresh token in the dropped answer is revoked");
    a.dispose();
    b.dispose();
}

#[wasm_bindgen_test]
async fn f6_a_logout_during_this_managers_own_refresh_revokes_the_rotated_token() {
    let gate = gated_fetch();
    let tm = manager_via(&gate, "s-f6-own", r#","storage":"memory""#);
    let sid = sign_in(&tm, "f6-own", 300).await;
    let p = tm.refresh();
    assert!(wait_until(2_000.0, || urls(&gate).iter().any(|u| u.ends_with("/oauth/token"))).await);
    sleep(300.0).await;
    await_js(tm.logout()).await.unwrap();
    call0(&get(&gate, "release"));
    let _ = await_js(p).await;
    assert!(wait_until(2_000.0, || urls(&gate).iter().filter(|u| u.ends_with("/oauth/revoke")).count() == 2).await, "{:?}", urls(&gate));
    sleep(100.0).await;
    assert_eq!(get(&family(&sid).await, "current_revoked").as_bool(), Some(true));
    assert_eq!(tm.access_token(), None);
}

#[wasm_bindgen_test]
async fn f7_waiting_for_a_tab_lock_held_by_a_frozen_tab_is_bounded() {
    let key = "s-f7";
    local_storage().remove_item(key).unwrap();
    local_storage().remove_item(&format!("{key}.lock")).unwrap();
    let tm = server_manager(key, r#","timeoutSeconds":2"#);
    let sid = sign_in_expired(&tm, "f7").await;
    let release = await_js(hold_lock(&format!("tessera:{key}"))).await.unwrap();
    let started = js_sys::Date::now();
    let got = Promise::race(&Array::of2(&tm.get_access_token(), &sleep_then(8_000.0, "still waiting")));
    let token = await_js(got).await.expect("a token").as_string().unwrap();
    assert_ne!(token, "still waiting", "not stuck behind the frozen tab");
    assert!(js_sys::Date::now() - started < 6_000.0);
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(1.0));
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false));
    call0(&release);
    tm.dispose();
}

#[wasm_bindgen_test]
async fn f7_a_tab_whose_refresh_is_on_the_wire_is_never_raced() {
    let key = "s-f7-marked";
    local_storage().remove_item(key).unwrap();
    let tm = server_manager(key, r#","timeoutSeconds":2,"autoRefresh":false"#);
    let sid = sign_in_expired(&tm, "f7-marked").await;
    let release = await_js(hold_lock(&format!("tessera:{key}"))).await.unwrap();
    // The holder wrote that its request is on the wire.
    let until = js_sys::Date::now() + 60_000.0;
    local_storage().set_item(&format!("{key}.lock"), &format!(r#"{{"owner":"another-tab","until":{until}}}"#)).unwrap();
    let got = Promise::race(&Array::of2(&tm.get_access_token(), &sleep_then(8_000.0, "still waiting")));
    let e = await_js(got).await.expect_err("fails for now instead of presenting the same refresh token");
    assert_eq!(code(&e), "refresh_failed");
    assert_eq!(get(&e, "fatal").as_bool(), Some(false));
    assert_eq!(refreshes(&sid).await, 0.0);
    call0(&release);
    local_storage().remove_item(&format!("{key}.lock")).unwrap();
    tm.dispose();
}

#[wasm_bindgen_test]
async fn f8_a_storage_shim_that_dispatches_storage_events_is_safe() {
    let errors = catch_errors();
    let restore = storage_event_shim();
    let tm = TokenManager::new(js(r#"{"storageKey":"s-f8"}"#)).unwrap();
    let log = record(&tm, &["tokens", "logout"]);
    tm.set_tokens(js(r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#)).unwrap();
    let _ = tm.logout();
    tm.set_tokens(js(r#"{"access_token":"def","token_type":"Bearer","expires_in":3600}"#)).unwrap();
    sleep(100.0).await;
    restore.call0(&JsValue::NULL).unwrap();
    assert_eq!(errors.length(), 0, "{:?}", errors.to_vec());
    assert_eq!(names(&log), ["tokens", "logout", "tokens"]);
    assert_eq!(tm.access_token().as_deref(), Some("def"));
    let _ = tm.logout();
}

#[wasm_bindgen_test]
async fn f9_while_backing_off_an_expired_token_does_not_hammer_the_token_endpoint() {
    let transport = counting_fetch();
    let tm = manager_via(&transport, "s-f9", r#","storage":"memory""#);
    let sid = sign_in_expired(&tm, "f9").await;
    fault("503", &sid, r#","count":10,"retry_after":120"#).await;
    let mut retry = Vec::new();
    for _ in 0..5 {
        let e = await_js(tm.fetch(format!("{AUTH}/api/me").into(), None)).await.expect_err("no valid token");
        assert_eq!(code(&e), "refresh_failed");
        retry.extend(get(&e, "retryInSeconds").as_f64());
    }
    assert_eq!(called(&transport, "/oauth/token"), 1, "one token request, not one per API call");
    assert!(retry.iter().all(|r| (100.0..=120.0).contains(r)), "{retry:?}");
    assert_eq!(called(&transport, "/api/me"), 0);
    tm.dispose();
}

#[wasm_bindgen_test]
async fn f12_a_wall_clock_set_back_does_not_make_an_expired_token_valid() {
    let transport = recording_fetch();
    let opts = js(&format!(r#"{{"storage":"memory","allowedOrigins":["{AUTH}"]}}"#));
    js_sys::Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    // 6 s, with the 5 s leeway: expired after a second.
    tm.set_tokens(js(r#"{"access_token":"short","token_type":"Bearer","expires_in":6}"#)).unwrap();
    sleep(1_500.0).await;
    assert!(tm.is_expired(None));
    let restore = jump_wall_clock(-3_600_000.0);
    assert!(tm.is_expired(None), "still expired after the wall clock went back an hour");
    let e = await_js(tm.fetch(format!("{AUTH}/api/echo").into(), None)).await.expect_err("an expired token is not sent");
    assert_eq!(code(&e), "expired");
    restore.call0(&JsValue::NULL).unwrap();
    assert!(list(&transport, "sent").is_empty());
}

#[wasm_bindgen_test]
async fn f12_an_error_page_with_an_old_date_does_not_move_the_clock_estimate() {
    let tm = server_manager("s-f12-date", r#","storage":"memory","autoRefresh":false"#);
    let sid = sign_in(&tm, "f12", 300).await;
    let skew = tm.clock_skew_ms();
    fault("503", &sid, r#","date":"Tue, 01 Jan 2030 00:00:00 GMT""#).await;
    await_js(tm.refresh()).await.expect_err("503");
    assert_eq!(tm.clock_skew_ms(), skew, "a 503's Date is not the server's clock");
}

#[wasm_bindgen_test]
async fn token_posts_never_follow_a_redirect() {
    let other = other_origin();
    let opts = js(&format!(
        r#"{{"storage":"memory","clientId":"tessera-demo","autoRefresh":false,"allowedOrigins":["{AUTH}"],
            "tokenEndpoint":"{AUTH}/test/redirect?code=307&to={other}/oauth/token"}}"#
    ));
    let tm = TokenManager::new(opts).unwrap();
    let sid = sign_in(&tm, "redirected", 300).await;
    let e = await_js(tm.refresh()).await.expect_err("a redirect is an error, not followed");
    assert_eq!(code(&e), "refresh_failed");
    assert_eq!(refreshes(&sid).await, 0.0, "the refresh token never reached the redirect's target");
}

#[wasm_bindgen_test]
async fn a_refresh_error_listener_that_signs_in_again_is_not_followed_by_expired() {
    let tm = std::rc::Rc::new(server_manager("s-relogin", r#","storage":"memory""#));
    let sid = sign_in(&tm, "relogin", 300).await;
    let again = login("relogin-2", 300).await;
    let inner = tm.clone();
    let relogin = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let _ = inner.set_tokens(again.clone());
    });
    tm.on("refreshError", relogin.as_ref().clone()).unwrap();
    let log = record(&tm, &["refreshError", "tokens", "expired"]);
    fault("invalid_grant", &sid, "").await;
    await_js(tm.refresh()).await.expect_err("fatal");
    assert_eq!(names(&log), ["refreshError", "tokens"], "the new session is not reported expired");
    assert_eq!(get_str(&tm.claims(), "sub"), "relogin-2");
    tm.dispose();
    drop(relogin);
}

#[wasm_bindgen_test]
async fn a_future_version_record_is_left_alone() {
    let key = "s-future";
    let future = r#"{"v":9,"client":"x","access_token":"newer","received_at":1}"#;
    local_storage().set_item(key, future).unwrap();
    let tm = TokenManager::new(js(&format!(r#"{{"storageKey":"{key}"}}"#))).unwrap();
    assert_eq!(tm.access_token(), None);
    tm.set_tokens(js(r#"{"access_token":"older","token_type":"Bearer","expires_in":60}"#)).unwrap();
    assert_eq!(tm.access_token().as_deref(), Some("older"), "this version's session lives in memory");
    assert_eq!(local_storage().get_item(key).unwrap().as_deref(), Some(future), "the newer record is untouched");
    let _ = tm.logout();
    assert_eq!(local_storage().get_item(key).unwrap().as_deref(), Some(future));
    local_storage().remove_item(key).unwrap();
}

#[wasm_bindgen_test]
async fn d1_a_clock_estimate_from_an_old_token_does_not_outlive_a_clock_fix() {
    let tm = TokenManager::new(js(r#"{"storage":"memory","autoRefresh":false}"#)).unwrap();
    let now_s = (js_sys::Date::now() / 1000.0).floor();
    // A slow device: the token's iat is 2 h in the device's future.
    let slow = fake_jwt(&js(&format!(r#"{{"iat":{},"exp":{}}}"#, now_s + 7200.0, now_s + 10800.0)));
    tm.set_tokens(js(&format!(r#"{{"access_token":"{slow}","token_type":"Bearer","expires_in":3600}}"#))).unwrap();
    assert!((tm.clock_skew_ms() - 7_200_000.0).abs() < 5_000.0);
    // The clock is fixed: the next token's iat agrees with it.
    let fresh = fake_jwt(&js(&format!(r#"{{"iat":{now_s},"exp":{}}}"#, now_s + 3600.0)));
    tm.set_tokens(js(&format!(r#"{{"access_token":"{fresh}","token_type":"Bearer","expires_in":3600}}"#))).unwrap();
    assert_eq!(tm.clock_skew_ms(), 0.0, "the estimate follows the clocks agreeing again");
    assert!(!tm.is_expired(None), "a fresh token is not expired on arrival");
    assert!((tm.expires_at().unwrap() - js_sys::Date::now() - 3_600_000.0).abs() < 5_000.0);
}

#[wasm_bindgen_test]
async fn d2_expired_is_not_said_while_the_session_can_be_renewed() {
    let tm = server_manager("s-d2", r#","storage":"memory","autoRefresh":false"#);
    let log = record(&tm, &["expired"]);
    let sid = sign_in(&tm, "d2", 300).await;
    let r = login("d2-short", 300).await;
    js_sys::Reflect::set(&r, &"expires_in".into(), &6.into()).unwrap();
    tm.set_tokens(r).unwrap();
    sleep(1_500.0).await;
    assert!(names(&log).is_empty(), "the access token expired, the session did not");
    await_js(tm.get_access_token()).await.expect("renewed on demand");
    let _ = sid;
}

/// A transport whose token endpoint answers `status` with `body` (and whose
/// other URLs go to the network).
fn token_endpoint_answering(status: u16, body: &str) -> JsValue {
    let f = js_sys::Function::new_with_args(
        "status, body",
        "return (input, init) => String(input).includes('/oauth/token') \
           ? Promise.resolve({ status, headers: { get: () => null }, text: async () => body }) \
           : fetch(input, init);",
    );
    f.call2(&JsValue::NULL, &status.into(), &body.into()).unwrap()
}

#[wasm_bindgen_test]
async fn d3_a_bare_401_from_the_token_endpoint_ends_the_session() {
    let tm = manager_via(&token_endpoint_answering(401, "Unauthorized"), "s-d3", r#","storage":"memory","autoRefresh":false"#);
    let log = record(&tm, &["refreshError", "expired"]);
    tm.set_tokens(js(r#"{"access_token":"at0","token_type":"Bearer","expires_in":3600,"refresh_token":"rt0"}"#)).unwrap();
    let e = await_js(tm.refresh()).await.expect_err("401");
    assert_eq!(code(&e), "invalid_client");
    assert_eq!(get(&e, "fatal").as_bool(), Some(true));
    assert_eq!(names(&log), ["refreshError", "expired"]);
    assert_eq!(tm.access_token(), None);
}

#[wasm_bindgen_test]
async fn d4_a_byte_order_mark_before_the_token_response_is_ignored() {
    let body = "\u{feff}{\"access_token\":\"at1\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"refresh_token\":\"rt1\"}";
    let tm = manager_via(&token_endpoint_answering(200, body), "s-d4", r#","storage":"memory","autoRefresh":false"#);
    tm.set_tokens(js(r#"{"access_token":"at0","token_type":"Bearer","expires_in":3600,"refresh_token":"rt0"}"#)).unwrap();
    await_js(tm.refresh()).await.expect("refreshed");
    assert_eq!(tm.access_token().as_deref(), Some("at1"));
}

#[wasm_bindgen_test]
async fn d5_a_stored_record_with_a_wrongly_typed_field_is_dropped() {
    let key = "s-d5";
    let rec = r#"{"v":2,"client":"|","sid":"s","access_token":"at0","refresh_token":"rt0","expires_at":"soon","received_at":1}"#;
    local_storage().set_item(key, rec).unwrap();
    let tm = TokenManager::new(js(&format!(r#"{{"storageKey":"{key}"}}"#))).unwrap();
    assert_eq!(tm.access_token(), None, "a token of unknown expiry is not adopted from a tampered record");
    assert!(local_storage().get_item(key).unwrap().is_none(), "the record is dropped");
}

fn sleep_then(ms: f64, value: &str) -> Promise {
    let f = js_sys::Function::new_with_args("ms, v", "return new Promise(r => setTimeout(() => r(v), ms))");
    f.call2(&JsValue::NULL, &ms.into(), &value.into()).unwrap().into()
}
