//! Browser tests against a backend that is not an OAuth server: the auth
//! server's JSON API (`/app/*`), shaped like the Flask/Express tutorials'
//! (HTTP 200 with a `code` for every answer, a rotating refresh token, a
//! one-time key per order). The options that fit it: `refresh`,
//! `isUnauthorized`, `idempotencyKeys`, `retries`, `deviceIdHeader`.
#![cfg(target_arch = "wasm32")]

mod support;

use js_sys::{Array, Function, Promise, Reflect};
use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn other_origin() -> String {
    let port: u32 = AUTH.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in TESSERA_AUTH_URL");
    format!("http://127.0.0.1:{}", port + 1)
}

/// A manager for the JSON API: the app's own refresh, its refusal rule.
fn app_manager(key: &str, extra: &str, set: &[(&str, JsValue)]) -> TokenManager {
    let opts = js(&format!(r#"{{"storageKey":"{key}","clientId":"shop","allowedOrigins":["{AUTH}"]{extra}}}"#));
    Reflect::set(&opts, &"refresh".into(), &app_refresh(AUTH, &JsValue::UNDEFINED)).unwrap();
    Reflect::set(&opts, &"isUnauthorized".into(), &app_is_unauthorized()).unwrap();
    for (k, v) in set {
        Reflect::set(&opts, &(*k).into(), v).unwrap();
    }
    TokenManager::new(opts).unwrap_or_else(|e| panic!("{}", message(&e)))
}

async fn body(resp: &JsValue) -> JsValue {
    let p: Promise = Reflect::apply(&get(resp, "json").unchecked_into::<Function>(), resp, &Array::new()).unwrap().into();
    await_js(p).await.unwrap()
}

async fn call(tm: &TokenManager, url: &str, init: Option<&str>) -> JsValue {
    await_js(tm.fetch(url.into(), init.map(|i| js(i).unchecked_into()))).await.expect("a response")
}

fn calls(transport: &JsValue, path: &str) -> usize {
    list(transport, "calls").iter().filter(|c| c.as_string().unwrap_or_default().ends_with(path)).count()
}

#[wasm_bindgen_test]
async fn a_session_lives_on_through_the_apps_own_refresh() {
    let tm = app_manager("b-life", r#","storage":"memory""#, &[]);
    let log = record(&tm, &["tokens", "refreshError"]);
    tm.set_tokens(app_login("shop-life", 6).await).unwrap();
    let sid = sid_of(&tm.access_token().unwrap());
    // 6 s tokens, refreshed by timer 5 s after each arrives: three lifetimes.
    sleep(17_000.0).await;
    let f = family(&sid).await;
    assert!(get(&f, "refreshes").as_f64().unwrap() >= 2.0, "refreshed through refresh() by itself");
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false), "no refresh token used twice");
    assert!(!names(&log).contains(&"refreshError".to_string()));
    let user = body(&call(&tm, &format!("{AUTH}/app/user"), None).await).await;
    assert_eq!(get(&user, "code").as_f64(), Some(200.0), "the token works");
    tm.dispose();
}

#[wasm_bindgen_test]
async fn a_refusal_in_the_body_refreshes_once_and_replays_once() {
    let transport = counting_fetch();
    let tm = app_manager("b-403", r#","storage":"memory""#, &[("fetch", transport.clone().into())]);
    tm.set_tokens(app_login("shop-403", 300).await).unwrap();
    let sid = sid_of(&tm.access_token().unwrap());
    // The server stops accepting this access token (HTTP 200, code 403).
    let fields = js(&format!(r#"{{"token":"{}","client_id":"tessera-demo"}}"#, tm.access_token().unwrap()));
    assert_eq!(post_form(&format!("{AUTH}/oauth/revoke"), &fields).await, 200.0);
    let resp = call(&tm, &format!("{AUTH}/app/user"), None).await;
    assert!(!get(&resp, "bodyUsed").is_truthy(), "the caller gets a response whose body is unread");
    let b = body(&resp).await;
    assert_eq!(get(&b, "code").as_f64(), Some(200.0), "replayed with the new token");
    assert_eq!(get_str(&get(&b, "data"), "sub"), "shop-403");
    assert_eq!(refreshes(&sid).await, 1.0, "one refresh");
    assert_eq!(calls(&transport, "/app/user"), 2, "one replay");
    // Every token of the session refused now: the token the refusal just
    // brought is refused in turn, and that refusal goes back to the caller
    // as it is: no refresh for it (a new token would fare no better), no loop.
    let body_json = js(&format!(r#"{{"sid":"{sid}"}}"#));
    assert_eq!(post_json(&format!("{AUTH}/test/revoke-access"), &body_json).await, 204.0);
    let b = body(&call(&tm, &format!("{AUTH}/app/user"), None).await).await;
    assert_eq!(get(&b, "code").as_f64(), Some(403.0));
    assert_eq!(refreshes(&sid).await, 1.0);
    assert_eq!(calls(&transport, "/app/user"), 3);
}

async fn orders() -> f64 {
    get(&get_json(&format!("{AUTH}/test/orders")).await, "count").as_f64().unwrap()
}

#[wasm_bindgen_test]
async fn an_order_whose_answer_was_lost_is_made_once_and_the_caller_gets_it() {
    let tm = app_manager("b-order", r#","storage":"memory","idempotencyKeys":true,"retries":2"#, &[]);
    tm.set_tokens(app_login("shop-order", 300).await).unwrap();
    let before = orders().await;
    assert_eq!(post_json(&format!("{AUTH}/test/orders/lose-next"), &JsValue::NULL).await, 204.0);
    let resp = call(&tm, &format!("{AUTH}/app/orders"), Some(r#"{"method":"POST","body":"{\"item\":\"book\"}"}"#)).await;
    assert_eq!(get(&resp, "status").as_f64(), Some(200.0), "the retry answered");
    let b = body(&resp).await;
    assert_eq!(get(&get(&b, "data"), "created").as_bool(), Some(false), "the order the lost answer made");
    assert_eq!(orders().await, before + 1.0, "made once");
    // The key is the caller's when it set one.
    let echo =
        body(&call(&tm, &format!("{AUTH}/api/echo"), Some(r#"{"method":"POST","headers":{"Idempotency-Key":"mine-1"}}"#)).await).await;
    assert_eq!(get_str(&echo, "idempotency_key"), "mine-1");
    let echo = body(&call(&tm, &format!("{AUTH}/api/echo"), Some(r#"{"method":"PATCH"}"#)).await).await;
    assert_eq!(get_str(&echo, "idempotency_key").len(), 36, "a UUID on changing requests");
    let echo = body(&call(&tm, &format!("{AUTH}/api/echo"), None).await).await;
    assert!(get(&echo, "idempotency_key").is_null(), "none on a GET");
    let echo = body(&call(&tm, &format!("{}/api/echo", other_origin()), Some(r#"{"method":"POST"}"#)).await).await;
    assert!(get(&echo, "idempotency_key").is_null(), "none to an origin that is not allowed");
}

#[wasm_bindgen_test]
async fn a_post_without_a_key_is_sent_once() {
    let transport = counting_fetch();
    let tm = app_manager("b-post", r#","storage":"memory","retries":3"#, &[("fetch", transport.clone().into())]);
    tm.set_tokens(app_login("shop-post", 300).await).unwrap();
    let before = orders().await;
    assert_eq!(post_json(&format!("{AUTH}/test/orders/lose-next"), &JsValue::NULL).await, 204.0);
    let resp = call(&tm, &format!("{AUTH}/app/orders"), Some(r#"{"method":"POST","body":"{}"}"#)).await;
    assert_eq!(get(&resp, "status").as_f64(), Some(503.0), "the caller gets the answer");
    assert_eq!(calls(&transport, "/app/orders"), 1, "never repeated: it could make a second order");
    assert_eq!(orders().await, before + 1.0);
}

#[wasm_bindgen_test]
async fn safe_requests_are_retried_after_network_errors_and_others_are_not() {
    let flaky = flaky_fetch("/api/echo", 2);
    let opts = js(&format!(r#"{{"storage":"memory","allowedOrigins":["{AUTH}"],"retries":2}}"#));
    Reflect::set(&opts, &"fetch".into(), &flaky).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    let resp = call(&tm, &format!("{AUTH}/api/echo"), Some(r#"{"method":"PUT","body":"x"}"#)).await;
    assert_eq!(get(&resp, "status").as_f64(), Some(200.0));
    assert_eq!(get_str(&body(&resp).await, "body"), "x", "the body is sent again");
    assert_eq!(calls(&flaky, "/api/echo"), 3);
    let flaky = flaky_fetch("/api/echo", 1);
    let opts = js(&format!(r#"{{"storage":"memory","allowedOrigins":["{AUTH}"],"retries":2}}"#));
    Reflect::set(&opts, &"fetch".into(), &flaky).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    let e = await_js(tm.fetch(format!("{AUTH}/api/echo").into(), Some(js(r#"{"method":"POST"}"#).unchecked_into()))).await;
    assert!(e.is_err(), "a POST without a key is not repeated after a network error");
    assert_eq!(calls(&flaky, "/api/echo"), 1);
}

#[wasm_bindgen_test]
async fn the_device_id_survives_logout_and_reload_and_goes_to_allowed_origins_only() {
    let key = "b-device";
    local_storage().remove_item(key).unwrap();
    local_storage().remove_item(&format!("{key}.device")).unwrap();
    let tm = app_manager(key, r#","deviceIdHeader":"X-Device-Id""#, &[]);
    let id = tm.device_id().expect("a device id");
    assert!(id.len() >= 22, "128 bits or more");
    tm.set_tokens(app_login("shop-device", 300).await).unwrap();
    let user = body(&call(&tm, &format!("{AUTH}/app/user"), None).await).await;
    assert_eq!(get_str(&get(&user, "data"), "device"), id);
    let echo = body(&call(&tm, &format!("{}/api/echo", other_origin()), None).await).await;
    assert!(get(&echo, "device").is_null(), "never to an origin that is not allowed");
    await_js(tm.logout()).await.unwrap();
    assert_eq!(tm.device_id().as_deref(), Some(id.as_str()), "kept across logout");
    let echo = body(&call(&tm, &format!("{AUTH}/api/echo"), None).await).await;
    assert_eq!(get_str(&echo, "device"), id, "sent signed out too");
    tm.dispose();
    let again = app_manager(key, r#","deviceIdHeader":"X-Device-Id""#, &[]);
    assert_eq!(again.device_id().as_deref(), Some(id.as_str()), "kept across reloads");
    let memory = app_manager("b-device-mem", r#","storage":"memory","deviceIdHeader":"X-Device-Id""#, &[]);
    assert_ne!(memory.device_id(), Some(id), "in memory: one per manager");
    assert_eq!(app_manager("b-device-none", "", &[]).device_id(), None);
}

#[wasm_bindgen_test]
async fn a_fatal_throw_from_refresh_ends_the_session() {
    let tm = app_manager("b-fatal", r#","storage":"memory""#, &[]);
    let log = record(&tm, &["refreshError", "expired"]);
    let r = app_login("shop-fatal", 300).await;
    tm.set_tokens(r.clone()).unwrap();
    // Someone else rotates the refresh token first: ours is now a reuse.
    let thief = app_refresh(AUTH, &JsValue::UNDEFINED);
    let args = js_sys::Object::new();
    Reflect::set(&args, &"refreshToken".into(), &get(&r, "refresh_token")).unwrap();
    await_js(thief.call1(&JsValue::NULL, &args).unwrap().into()).await.unwrap();
    let e = await_js(tm.refresh()).await.expect_err("fatal");
    assert_eq!(get_str(&e, "code"), "refresh_rejected");
    assert_eq!(get(&e, "fatal").as_bool(), Some(true));
    assert!(message(&e).contains("reused"), "{}", message(&e));
    assert_eq!(names(&log), ["refreshError", "expired"]);
    assert_eq!(tm.access_token(), None);
}

#[wasm_bindgen_test]
async fn other_throws_and_bad_results_from_refresh_are_transient() {
    for (name, f) in [
        ("a throw without fatal", "return async () => { throw new Error('backend down'); }"),
        ("a result that is not a token response", "return async () => ({ code: 500 })"),
        ("a synchronous throw", "return () => { throw new Error('bug'); }"),
    ] {
        let opts = js(r#"{"storage":"memory","autoRefresh":false}"#);
        Reflect::set(&opts, &"refresh".into(), &Function::new_no_args(f).call0(&JsValue::NULL).unwrap()).unwrap();
        let tm = TokenManager::new(opts).unwrap();
        tm.set_tokens(js(r#"{"access_token":"at0","token_type":"Bearer","expires_in":3600,"refresh_token":"rt0"}"#)).unwrap();
        let e = await_js(tm.refresh()).await.expect_err(name);
        assert_eq!(get(&e, "fatal").as_bool(), Some(false), "{name}");
        assert_eq!(tm.access_token().as_deref(), Some("at0"), "{name}: tokens kept");
    }
}

/// The signal aborts when the session ends (a logout): the answer would
/// only be revoked. Not on `dispose()` (the refresh lands for the next
/// manager: R4) nor on the timeout (the refresh is in doubt, and its answer
/// still counts: R10).
#[wasm_bindgen_test]
async fn the_refresh_signal_aborts_on_logout_only() {
    for (case, extra, aborts) in [("logout", "", true), ("dispose", "", false), ("timeout", r#","timeoutSeconds":1"#, false)] {
        let signals = Array::new();
        let opts = js(&format!(r#"{{"storage":"memory","autoRefresh":false{extra}}}"#));
        Reflect::set(&opts, &"refresh".into(), &hanging_refresh(&signals)).unwrap();
        let tm = TokenManager::new(opts).unwrap();
        tm.set_tokens(js(r#"{"access_token":"at0","token_type":"Bearer","expires_in":3600,"refresh_token":"rt0"}"#)).unwrap();
        let p = tm.refresh();
        sleep(50.0).await;
        match case {
            "logout" => {
                let _ = tm.logout();
            }
            "dispose" => tm.dispose(),
            _ => sleep(1_300.0).await,
        }
        let _ = await_js(Promise::race(&Array::of2(&p, &Promise::resolve(&JsValue::NULL)))).await;
        assert_eq!(get(&signals.get(0), "aborted").as_bool(), Some(aborts), "{case}");
    }
}

#[wasm_bindgen_test]
fn the_new_options_are_checked() {
    let f = Function::new_no_args("");
    let rows: Vec<(JsValue, &str)> = vec![
        (js(r#"{"retries":11}"#), "`retries`"),
        (js(r#"{"retries":1.5}"#), "`retries`"),
        (js(r#"{"retries":"2"}"#), "`retries`"),
        (js(r#"{"idempotencyKeys":"yes"}"#), "`idempotencyKeys`"),
        (js(r#"{"deviceIdHeader":"X Device"}"#), "`deviceIdHeader`"),
        (js(r#"{"deviceIdHeader":""}"#), "`deviceIdHeader`"),
        (js(r#"{"refresh":"https://api/refresh"}"#), "`refresh`"),
        (js(r#"{"isUnauthorized":true}"#), "`isUnauthorized`"),
    ];
    for (opts, needle) in rows {
        let m = message(&TokenManager::new(opts).err().expect("refused"));
        assert!(m.contains(needle), "{m}");
    }
    let both = js(r#"{"tokenEndpoint":"https://auth.example.com/token"}"#);
    Reflect::set(&both, &"refresh".into(), &f).unwrap();
    let m = message(&TokenManager::new(both).err().expect("refused"));
    assert!(m.contains("not both"), "{m}");
}

#[wasm_bindgen_test]
async fn only_true_from_is_unauthorized_means_refused() {
    for answer in ["1", "'yes'", "Promise.resolve({})", "undefined"] {
        let transport = counting_fetch();
        let predicate = Function::new_no_args(&format!("return {answer}"));
        let tm = {
            let opts = js(&format!(r#"{{"storageKey":"b-truthy","clientId":"shop","allowedOrigins":["{AUTH}"],"storage":"memory"}}"#));
            Reflect::set(&opts, &"refresh".into(), &app_refresh(AUTH, &JsValue::UNDEFINED)).unwrap();
            Reflect::set(&opts, &"isUnauthorized".into(), &predicate).unwrap();
            Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
            TokenManager::new(opts).unwrap_or_else(|e| panic!("{}", message(&e)))
        };
        tm.set_tokens(app_login("shop-truthy", 300).await).unwrap();
        let sid = sid_of(&tm.access_token().unwrap());
        let resp = call(&tm, &format!("{AUTH}/app/user"), None).await;
        assert_eq!(get(&resp, "status").as_f64(), Some(200.0));
        assert_eq!(refreshes(&sid).await, 0.0, "{answer} is not true: no refresh");
        assert_eq!(calls(&transport, "/app/user"), 1, "{answer} is not true: no replay");
        tm.dispose();
    }
}
