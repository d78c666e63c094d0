//! Browser tests of authenticated fetch and automatic refresh, against the
//! real local auth server (`./dev test` starts it).
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

async fn fetch(tm: &TokenManager, url: &str, init: Option<&str>) -> Result<JsValue, JsValue> {
    let init = init.map(|i| js(i).into());
    await_js(tm.fetch(url.into(), init)).await
}

fn status(resp: &JsValue) -> f64 {
    get(resp, "status").as_f64().unwrap()
}

async fn json_of(resp: &JsValue) -> JsValue {
    let p: Promise = js_sys::Reflect::apply(&get(resp, "json").into(), resp, &Array::new()).unwrap().into();
    await_js(p).await.unwrap()
}

#[wasm_bindgen_test]
async fn bearer_goes_to_allowed_origins_only() {
    let tm = server_manager("f-origin", "");
    sign_in(&tm, "alice", 300).await;
    let token = tm.access_token().unwrap();
    let echo = json_of(&fetch(&tm, &format!("{AUTH}/api/echo"), None).await.unwrap()).await;
    assert_eq!(get_str(&echo, "authorization"), format!("Bearer {token}"));
    // Same host, other port: another origin. No token.
    let echo = json_of(&fetch(&tm, &format!("{}/api/echo", other_origin()), None).await.unwrap()).await;
    assert!(get(&echo, "authorization").is_null(), "no Authorization to another origin");
    // The caller's own Authorization header is never replaced.
    let echo = json_of(&fetch(&tm, &format!("{AUTH}/api/echo"), Some(r#"{"headers":{"Authorization":"Basic abc"}}"#)).await.unwrap()).await;
    assert_eq!(get_str(&echo, "authorization"), "Basic abc");
    // A protected call works, and a Request object input works too.
    let req = web_sys::Request::new_with_str(&format!("{AUTH}/api/me")).unwrap();
    let me = await_js(tm.fetch(req.into(), None)).await.unwrap();
    assert_eq!(status(&me), 200.0);
    assert_eq!(get_str(&json_of(&me).await, "sub"), "alice");
}

#[wasm_bindgen_test]
async fn requests_pass_through_untouched() {
    let tm = server_manager("f-pass", "");
    sign_in(&tm, "bob", 300).await;
    let r = fetch(&tm, &format!("{AUTH}/api/me"), Some(r#"{"method":"PUT","body":"payload-1","headers":{"X-Trace":"t1"}}"#)).await.unwrap();
    let body = json_of(&r).await;
    assert_eq!(get_str(&body, "method"), "PUT");
    assert_eq!(get_str(&body, "body"), "payload-1");
    // Without tokens, requests still go out, without Authorization.
    let _ = tm.logout();
    let echo = json_of(&fetch(&tm, &format!("{AUTH}/api/echo"), None).await.unwrap()).await;
    assert!(get(&echo, "authorization").is_null());
}

#[wasm_bindgen_test]
async fn a_burst_of_100_on_an_expired_token_makes_one_refresh() {
    let tm = server_manager("f-burst", "");
    let sid = sign_in_expired(&tm, "carol").await;
    let old = tm.access_token().unwrap();
    let all = Array::new();
    for _ in 0..100 {
        all.push(&tm.fetch(format!("{AUTH}/api/me").into(), None));
    }
    let results = Array::from(&await_js(Promise::all(&all)).await.unwrap());
    assert_eq!(results.length(), 100);
    for r in results.iter() {
        assert_eq!(status(&r), 200.0, "every request succeeded");
    }
    assert_eq!(refreshes(&sid).await, 1.0, "exactly one refresh request");
    assert_ne!(tm.access_token().unwrap(), old);
}

#[wasm_bindgen_test]
async fn refreshes_by_itself_before_expiry_and_rotates() {
    // 8 s tokens: the 60 s margin is capped at half the lifetime (4 s), and
    // the loop guard keeps it at least 5 s after receipt.
    let tm = server_manager("f-auto", r#","refreshMarginSeconds":60"#);
    let log = record(&tm, &["tokens"]);
    let sid = sign_in(&tm, "dave", 8).await;
    let first = tm.access_token().unwrap();
    let first_exp = tm.expires_at().unwrap();
    assert!(wait_until(7_500.0, || names(&log).len() >= 2).await, "a refresh happened by itself");
    assert!(js_sys::Date::now() < first_exp, "before the old token expired");
    assert_ne!(tm.access_token().unwrap(), first);
    assert_eq!(refreshes(&sid).await, 1.0);
    // Rotation: the manager holds the new refresh token; another refresh
    // works and the server sees no reuse.
    await_js(tm.refresh()).await.expect("second refresh with the rotated token");
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(2.0));
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false));
    tm.dispose();
}

#[wasm_bindgen_test]
async fn a_401_refreshes_once_and_replays_the_post_body() {
    let tm = server_manager("f-401", "");
    let sid = sign_in(&tm, "erin", 300).await;
    // Revoke the current access token at the server: the next call gets 401.
    let fields = js(&format!(r#"{{"token":"{}","client_id":"tessera-demo"}}"#, tm.access_token().unwrap()));
    assert_eq!(post_form(&format!("{AUTH}/oauth/revoke"), &fields).await, 200.0);
    let r = fetch(&tm, &format!("{AUTH}/api/me"), Some(r#"{"method":"POST","body":"replay me"}"#)).await.unwrap();
    assert_eq!(status(&r), 200.0, "replayed with the refreshed token");
    assert_eq!(get_str(&json_of(&r).await, "body"), "replay me", "the body was sent again");
    assert_eq!(refreshes(&sid).await, 1.0);
    // When every token of the session is refused, the 401 is returned as is:
    // the token a refusal brought a moment ago is not refreshed again.
    let body = js(&format!(r#"{{"sid":"{sid}"}}"#));
    assert_eq!(post_json(&format!("{AUTH}/test/revoke-access"), &body).await, 204.0);
    let r = fetch(&tm, &format!("{AUTH}/api/me"), Some(r#"{"method":"POST","body":"x"}"#)).await.unwrap();
    assert_eq!(status(&r), 401.0);
    assert_eq!(refreshes(&sid).await, 1.0, "no refresh for it, not a loop");
}

#[wasm_bindgen_test]
async fn invalid_grant_is_fatal() {
    let tm = server_manager("f-fatal", "");
    let log = record(&tm, &["refreshError", "expired"]);
    let sid = sign_in(&tm, "frank", 300).await;
    fault("invalid_grant", &sid, "").await;
    let e = await_js(tm.refresh()).await.expect_err("refresh must reject");
    assert_eq!(get_str(&e, "code"), "invalid_grant");
    assert_eq!(get(&e, "fatal").as_bool(), Some(true));
    assert_eq!(names(&log), ["refreshError", "expired"]);
    assert_eq!(get(&detail(&log, 0), "fatal").as_bool(), Some(true));
    assert_eq!(tm.access_token(), None, "tokens cleared from memory");
    assert!(local_storage().get_item("f-fatal").unwrap().is_none(), "and from storage");
    let e = await_js(tm.get_access_token()).await.expect_err("no tokens now");
    assert_eq!(get_str(&e, "code"), "no_tokens");
}

#[wasm_bindgen_test]
async fn transient_failures_keep_tokens_and_retry_with_backoff() {
    for (kind, extra, needle) in [("503", "", "HTTP 503"), ("non_json", "", "not JSON"), ("slow", r#","delay_ms":2500"#, "in time")] {
        let key = format!("f-transient-{kind}");
        let tm = server_manager(&key, r#","timeoutSeconds":1"#);
        let log = record(&tm, &["refreshError", "tokens", "expired"]);
        let sid = sign_in(&tm, "gina", 300).await;
        let before = tm.access_token().unwrap();
        let stored = local_storage().get_item(&key).unwrap();
        fault(kind, &sid, extra).await;
        let e = await_js(tm.refresh()).await.expect_err("refresh must reject");
        assert!(message(&e).contains(needle), "{kind}: {}", message(&e));
        assert_eq!(get(&e, "fatal").as_bool(), Some(false), "{kind}");
        assert_eq!(tm.access_token().as_deref(), Some(before.as_str()), "{kind}: tokens kept");
        assert_eq!(local_storage().get_item(&key).unwrap(), stored, "{kind}: storage kept");
        let d = detail(&log, 1);
        assert_eq!(get(&d, "fatal").as_bool(), Some(false));
        let retry = get(&d, "retryInSeconds").as_f64().expect("retryInSeconds");
        assert!((1.0..=2.0).contains(&retry), "{kind}: first retry in 1-2 s, got {retry}");
        // The automatic retry (the fault was for one refresh only) succeeds.
        assert!(wait_until(4_000.0, || tm.access_token().is_some_and(|t| t != before)).await, "{kind}: retried by itself");
        assert!(!names(&log).contains(&"expired".to_string()));
        tm.dispose();
    }
}

#[wasm_bindgen_test]
async fn logout_revokes_at_the_server() {
    let tm = server_manager("f-logout", "");
    let log = record(&tm, &["logout"]);
    let sid = sign_in(&tm, "hank", 300).await;
    await_js(tm.logout()).await.unwrap();
    assert_eq!(names(&log), ["logout"]);
    assert_eq!(tm.access_token(), None);
    assert!(local_storage().get_item("f-logout").unwrap().is_none());
    assert_eq!(get(&family(&sid).await, "revoked").as_bool(), Some(true), "refresh token revoked (RFC 7009)");
}

#[wasm_bindgen_test]
async fn dispose_stops_the_refresh_timer() {
    let tm = server_manager("f-dispose", "");
    let sid = sign_in(&tm, "ivy", 6).await;
    tm.dispose();
    sleep(6_500.0).await;
    assert_eq!(refreshes(&sid).await, 0.0, "no refresh after dispose");
}

#[wasm_bindgen_test]
async fn get_access_token_refreshes_when_due_and_rejects_without_tokens() {
    let tm = server_manager("f-gat", "");
    let e = await_js(tm.get_access_token()).await.expect_err("no tokens yet");
    assert!(message(&e).contains("no tokens"));
    let sid = sign_in_expired(&tm, "jack").await;
    let old = tm.access_token().unwrap();
    let t = await_js(tm.get_access_token()).await.unwrap().as_string().unwrap();
    assert_ne!(t, old);
    assert_eq!(refreshes(&sid).await, 1.0);
    // Fresh: no refresh.
    let again = await_js(tm.get_access_token()).await.unwrap().as_string().unwrap();
    assert_eq!(again, t);
    assert_eq!(refreshes(&sid).await, 1.0);
}

#[wasm_bindgen_test]
async fn options_fetch_carries_every_request() {
    let transport = counting_fetch();
    let opts = js(&format!(
        r#"{{"storage":"memory","tokenEndpoint":"{AUTH}/oauth/token","revocationEndpoint":"{AUTH}/oauth/revoke","clientId":"tessera-demo","allowedOrigins":["{AUTH}"]}}"#
    ));
    js_sys::Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    sign_in_expired(&tm, "kim").await;
    assert_eq!(status(&fetch(&tm, &format!("{AUTH}/api/me"), None).await.unwrap()), 200.0);
    await_js(tm.logout()).await.unwrap();
    let calls: Vec<String> = Array::from(&get(&transport, "calls")).iter().map(|c| c.as_string().unwrap()).collect();
    let paths: Vec<&str> = calls.iter().map(|c| c.trim_start_matches(AUTH)).collect();
    assert_eq!(paths, ["/oauth/token", "/api/me", "/oauth/revoke"]);
}

#[wasm_bindgen_test]
async fn json_refresh_body_for_non_standard_backends() {
    let tm = server_manager("f-json", r#","refreshBodyFormat":"json""#);
    let sid = sign_in_expired(&tm, "lee").await;
    await_js(tm.refresh()).await.expect("the server reads JSON bodies too");
    assert_eq!(refreshes(&sid).await, 1.0);
}

#[wasm_bindgen_test]
async fn a_missed_timer_is_caught_up_on_visibilitychange_focus_and_online() {
    // Three sessions whose refresh timers are lost (sleeping laptop,
    // throttled tab); each wakes on one of the events the manager watches.
    let mut sessions = Vec::new();
    for (i, (target, event)) in [("document", "visibilitychange"), ("window", "focus"), ("window", "online")].into_iter().enumerate() {
        let tm = std::rc::Rc::new(server_manager(&format!("f-wake-{i}"), r#","storage":"memory""#));
        let r = login("sleeper", 8).await;
        let inner = tm.clone();
        let set = wasm_bindgen::closure::Closure::once_into_js(move || inner.set_tokens(r).unwrap());
        without_timers(set.unchecked_ref());
        sessions.push((tm.clone(), sid_of(&tm.access_token().unwrap()), target, event));
    }
    sleep(6_000.0).await; // past the refresh time (5 s for 8 s tokens)
    for (_, sid, _, event) in &sessions {
        assert_eq!(refreshes(sid).await, 0.0, "{event}: nothing refreshed without a timer");
    }
    for (tm, sid, target, event) in &sessions {
        dispatch(target, event);
        let mut n = 0.0;
        for _ in 0..40 {
            n = refreshes(sid).await;
            if n >= 1.0 {
                break;
            }
            sleep(50.0).await;
        }
        assert_eq!(n, 1.0, "{event} caught up the missed refresh");
        tm.dispose();
    }
}
