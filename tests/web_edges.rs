//! Browser tests of the session at its edges (the second session review,
//! `R1`..`R13`, and the refresh storms of its hidden checks), against the
//! real local auth server: what only the driver, a real transport and a real
//! server can show. The core's side of each is in `core_edges.rs`; the
//! simulation (`tests/sim/`) walks the rest.
#![cfg(target_arch = "wasm32")]

mod support;

use js_sys::{Array, Function, Promise, Reflect};
use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn fetch(tm: &TokenManager, path: &str) -> JsValue {
    await_js(tm.fetch(format!("{AUTH}{path}").into(), None)).await.expect("a response")
}

fn status(resp: &JsValue) -> f64 {
    get(resp, "status").as_f64().unwrap()
}

async fn json_of(resp: &JsValue) -> JsValue {
    let p: Promise = Reflect::apply(&get(resp, "json").unchecked_into::<Function>(), resp, &Array::new()).unwrap().into();
    await_js(p).await.unwrap()
}

fn calls(transport: &JsValue, path: &str) -> usize {
    Array::from(&get(transport, "calls")).iter().filter(|c| c.as_string().unwrap_or_default().contains(path)).count()
}

fn with(opts: &str, set: &[(&str, JsValue)]) -> TokenManager {
    let o = js(opts);
    for (k, v) in set {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    TokenManager::new(o).unwrap_or_else(|e| panic!("{}", message(&e)))
}

// ---- No refresh storms --------------------------------------------------

/// A token endpoint whose tokens are dead on arrival (`expires_in: 0`), or
/// live less than the leeway: each request would want a refresh. A few
/// token requests a minute at most, never one per request.
#[wasm_bindgen_test]
async fn tokens_dead_on_arrival_do_not_cause_one_refresh_per_request() {
    for ttl in [0, 2] {
        let tm = server_manager(&format!("edge-ttl-{ttl}"), r#","storage":"memory""#);
        let sid = sign_in(&tm, "edge-short", ttl).await;
        for _ in 0..10 {
            let _ = await_js(tm.fetch(format!("{AUTH}/api/me").into(), None)).await;
            sleep(100.0).await;
        }
        let n = refreshes(&sid).await;
        assert!(n <= 2.0, "ttl {ttl}: 10 requests in about 2 s made {n} refreshes");
        tm.dispose();
    }
}

/// An API that refuses every token of a session (for a reason a new token
/// does not fix): one refresh, then the 401s go back to the caller.
#[wasm_bindgen_test]
async fn an_api_that_refuses_everything_does_not_cause_one_refresh_per_request() {
    let tm = server_manager("edge-401", r#","storage":"memory""#);
    let sid = sign_in(&tm, "edge-401", 300).await;
    assert_eq!(post_json(&format!("{AUTH}/test/revoke-access"), &js(&format!(r#"{{"sid":"{sid}"}}"#))).await, 204.0);
    for _ in 0..10 {
        assert_eq!(status(&fetch(&tm, "/api/me").await), 401.0, "the caller gets the refusal");
    }
    let n = refreshes(&sid).await;
    assert!(n <= 1.0, "10 refused requests made {n} refreshes");
    tm.dispose();
}

/// A DPoP `use_dpop_nonce` challenge says nothing about the token: after the
/// one nonce retry, a second one goes back to the caller, with no refresh.
#[wasm_bindgen_test]
async fn a_second_nonce_challenge_goes_back_to_the_caller() {
    let tm = server_manager("edge-nonce", r#","storage":"memory","dpop":true"#);
    let body = "grant_type=password&username=edge-nonce&password=password&client_id=tessera-demo&ttl=300";
    let init = js(r#"{"method":"POST","headers":{"Content-Type":"application/x-www-form-urlencoded"}}"#);
    Reflect::set(&init, &"body".into(), &body.into()).unwrap();
    let r = await_js(tm.fetch(format!("{AUTH}/oauth/token").into(), Some(init.unchecked_into()))).await.unwrap();
    tm.set_tokens(json_of(&r).await).unwrap();
    let sid = sid_of(&tm.access_token().unwrap());
    let mode = |always: bool| js(&format!(r#"{{"nonce":false,"always":{always}}}"#));
    assert_eq!(post_json(&format!("{AUTH}/test/dpop"), &mode(true)).await, 204.0);
    let resp = fetch(&tm, "/api/me").await;
    assert_eq!(post_json(&format!("{AUTH}/test/dpop"), &mode(false)).await, 204.0);
    assert_eq!(status(&resp), 401.0, "the second challenge, as it came");
    let f = family(&sid).await;
    assert_eq!(get(&f, "api_calls").as_f64(), Some(2.0), "the request and its one nonce retry");
    assert_eq!(get(&f, "refreshes").as_f64(), Some(0.0), "no refresh for a nonce");
    assert_eq!(status(&fetch(&tm, "/api/me").await), 200.0, "the session is fine");
    tm.dispose();
}

// ---- R1: a sign-in over a live session ------------------------------------

#[wasm_bindgen_test]
async fn signing_in_another_user_over_a_live_session_ends_it_at_the_server() {
    let tm = server_manager("edge-switch", r#","storage":"memory""#);
    let alice = sign_in(&tm, "edge-alice", 300).await;
    let bob = sign_in(&tm, "edge-bob", 300).await;
    assert_ne!(alice, bob);
    let mut revoked = false;
    for _ in 0..60 {
        revoked = get(&family(&alice).await, "revoked").as_bool() == Some(true);
        if revoked {
            break;
        }
        sleep(50.0).await;
    }
    assert!(revoked, "alice's refresh token is revoked, as a logout would");
    assert_eq!(get(&family(&bob).await, "revoked").as_bool(), Some(false));
    let me = json_of(&fetch(&tm, "/api/me").await).await;
    assert_eq!(get_str(&me, "sub"), "edge-bob");
    tm.dispose();
}

// ---- R4: dispose() with a refresh on the wire -----------------------------

/// React Strict Mode, a hot reload, a route remount: the manager is disposed
/// with its refresh on the wire and a new one is made on the same key. The
/// refresh lands; the new manager waits for it instead of presenting the
/// refresh token the server just rotated (which a server with reuse
/// detection answers by revoking the session).
#[wasm_bindgen_test]
async fn a_manager_disposed_mid_refresh_hands_its_rotation_to_the_next() {
    for store in ["local", "adapter"] {
        let key = format!("edge-remount-{store}");
        local_storage().remove_item(&key).unwrap();
        let adapter = sync_adapter();
        let opts = format!(
            r#"{{"storageKey":"{key}","tokenEndpoint":"{AUTH}/oauth/token","clientId":"tessera-demo","allowedOrigins":["{AUTH}"],"autoRefresh":false}}"#
        );
        let storage: JsValue = if store == "local" { "localStorage".into() } else { adapter.clone() };
        let gated = gated_fetch();
        let m1 = with(&opts, &[("storage", storage.clone()), ("fetch", gated.clone().into())]);
        let sid = sign_in(&m1, "edge-remount", 300).await;
        let signed_in = m1.access_token().unwrap();
        let first = m1.refresh();
        // The server rotates at once; the answer is held back.
        assert!(wait_until(3_000.0, || calls(&gated, "/oauth/token") == 1).await);
        sleep(100.0).await;
        m1.dispose();
        let m2 = with(&opts, &[("storage", storage)]);
        let second = m2.refresh();
        sleep(300.0).await;
        Reflect::apply(&get(&gated, "release").unchecked_into::<Function>(), &gated, &Array::new()).unwrap();
        let _ = await_js(first).await;
        await_js(second).await.unwrap_or_else(|e| panic!("{store}: {}", message(&e)));
        let f = family(&sid).await;
        assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false), "{store}: the rotated refresh token was presented again");
        // The second refresh may take the first one's answer (it found it
        // under the lock, fresh) or refresh again with its refresh token.
        let n = get(&f, "refreshes").as_f64().unwrap_or(0.0);
        assert!((1.0..=2.0).contains(&n), "{store}: {n} refreshes");
        assert_ne!(m2.access_token(), Some(signed_in), "{store}: the next manager has the rotated session");
        assert_eq!(status(&fetch(&m2, "/api/me").await), 200.0, "{store}");
        m2.dispose();
    }
}

// ---- R10: a refresh that timed out is in doubt ----------------------------

/// The request timed out here, but the server rotated: its late answer is
/// still taken, so the session goes on with the refresh token the server
/// now holds.
#[wasm_bindgen_test]
async fn a_late_refresh_answer_is_applied() {
    let tm = server_manager("edge-late", r#","storage":"memory","timeoutSeconds":1,"autoRefresh":false"#);
    let sid = sign_in(&tm, "edge-late", 300).await;
    let before = tm.access_token().unwrap();
    fault("slow", &sid, r#","delay_ms":2000"#).await;
    let e = await_js(tm.refresh()).await.expect_err("timed out");
    assert!(message(&e).contains("in time"), "{}", message(&e));
    assert!(wait_until(4_000.0, || tm.access_token().is_some_and(|t| t != before)).await, "the late answer was applied");
    assert_eq!(refreshes(&sid).await, 1.0);
    await_js(tm.refresh()).await.expect("the rotated refresh token works");
    let f = family(&sid).await;
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false));
    assert_eq!(get(&f, "refreshes").as_f64(), Some(2.0));
    tm.dispose();
}

// ---- R11: bounded durations, canonical endpoints ---------------------------

#[wasm_bindgen_test]
fn durations_are_bounded_and_endpoints_canonical() {
    let rows = [
        (r#"{"timeoutSeconds":3000000}"#, "`timeoutSeconds`"),
        (r#"{"leewaySeconds":100000}"#, "`leewaySeconds`"),
        (r#"{"refreshMarginSeconds":1e12}"#, "`refreshMarginSeconds`"),
        (r#"{"tokenEndpoint":"https://auth.example.com\\@evil.test/token"}"#, "`tokenEndpoint`"),
        (r#"{"tokenEndpoint":"https://user@auth.example.com/token"}"#, "`tokenEndpoint`"),
        (r#"{"revocationEndpoint":"HTTPS://Auth.Example.com:443/revoke"}"#, "`revocationEndpoint`"),
        (r#"{"timeoutSeconds":300,"leewaySeconds":600,"tokenEndpoint":"https://auth.example.com/token"}"#, "ok"),
    ];
    for (opts, needle) in rows {
        match TokenManager::new(js(opts)) {
            Ok(tm) => {
                assert_eq!(needle, "ok", "{opts} should be refused");
                tm.dispose();
            }
            Err(e) => {
                assert!(message(&e).contains(needle), "{opts}: {}", message(&e));
                assert_eq!(get_str(&e, "code"), "invalid_options", "{opts}");
            }
        }
    }
}

// ---- R13: every retry asks for the token again -----------------------------

#[wasm_bindgen_test]
async fn a_retry_carries_the_token_of_the_moment() {
    // Refreshed during the back-off: the retry carries the new token.
    let flaky = flaky_fetch("/api/echo", 1);
    let tm = with(
        &format!(
            r#"{{"storage":"memory","tokenEndpoint":"{AUTH}/oauth/token","clientId":"tessera-demo","allowedOrigins":["{AUTH}"],"retries":2}}"#
        ),
        &[("fetch", flaky.clone().into())],
    );
    sign_in(&tm, "edge-retry", 300).await;
    let p = tm.fetch(format!("{AUTH}/api/echo").into(), None);
    assert!(wait_until(2_000.0, || calls(&flaky, "/api/echo") == 1).await);
    await_js(tm.refresh()).await.unwrap();
    let now = tm.access_token().unwrap();
    let echo = json_of(&await_js(p).await.unwrap()).await;
    assert_eq!(get_str(&echo, "authorization"), format!("Bearer {now}"));
    // Signed out during the back-off: the retry carries no token.
    let flaky = flaky_fetch("/api/echo", 1);
    let tm = with(&format!(r#"{{"storage":"memory","allowedOrigins":["{AUTH}"],"retries":2}}"#), &[("fetch", flaky.clone().into())]);
    tm.set_tokens(login("edge-retry-out", 300).await).unwrap();
    let p = tm.fetch(format!("{AUTH}/api/echo").into(), None);
    assert!(wait_until(2_000.0, || calls(&flaky, "/api/echo") == 1).await);
    let _ = tm.logout();
    let e = await_js(p).await.expect_err("the token would outlive its session");
    assert_eq!(get_str(&e, "code"), "superseded", "{}", message(&e));
    assert_eq!(calls(&flaky, "/api/echo"), 1, "not sent again");
}
