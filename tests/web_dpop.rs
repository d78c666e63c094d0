//! Browser tests of DPoP (RFC 9449) against the auth server, which verifies
//! every proof (signature with the embedded key, typ, alg, htm, htu, iat or
//! its nonce, jti never seen before, ath) and binds tokens to the key.
#![cfg(target_arch = "wasm32")]

mod support;

use js_sys::{Array, Function, Promise, Reflect};
use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn manager(key: &str, extra: &str) -> TokenManager {
    server_manager(key, &format!(r#","dpop":true{extra}"#))
}

/// Signs in through tm.fetch: the token endpoint is an allowed origin, so
/// the request carries a proof and the tokens come back bound to the key.
async fn sign_in_dpop(tm: &TokenManager, user: &str, ttl: u32) -> String {
    let r = await_js(sign_in_request(tm, user, ttl)).await.expect("sign-in answered");
    let json = json_of(&r).await;
    assert_eq!(get(&r, "status").as_f64(), Some(200.0), "{:?}", js_sys::JSON::stringify(&json));
    assert_eq!(get_str(&json, "token_type"), "DPoP", "the token is bound to the key");
    tm.set_tokens(json).unwrap();
    sid_of(&tm.access_token().unwrap())
}

/// The sign-in POST through tm.fetch, started now.
fn sign_in_request(tm: &TokenManager, user: &str, ttl: u32) -> Promise {
    let body = format!("grant_type=password&username={user}&password=password&client_id=tessera-demo&ttl={ttl}");
    let init = js(r#"{"method":"POST","headers":{"Content-Type":"application/x-www-form-urlencoded"}}"#);
    Reflect::set(&init, &"body".into(), &body.into()).unwrap();
    tm.fetch(format!("{AUTH}/oauth/token").into(), Some(init.unchecked_into()))
}

async fn json_of(resp: &JsValue) -> JsValue {
    let p: Promise = Reflect::apply(&get(resp, "json").unchecked_into::<Function>(), resp, &Array::new()).unwrap().into();
    await_js(p).await.unwrap()
}

async fn me(tm: &TokenManager) -> f64 {
    let r = await_js(tm.fetch(format!("{AUTH}/api/me").into(), None)).await.unwrap();
    get(&r, "status").as_f64().unwrap()
}

async fn jkt(sid: &str) -> String {
    get_str(&family(sid).await, "jkt")
}

async fn dpop_nonces(on: bool) {
    assert_eq!(post_json(&format!("{AUTH}/test/dpop"), &js(&format!(r#"{{"nonce":{on}}}"#))).await, 204.0);
}

#[wasm_bindgen_test]
async fn requests_and_refreshes_carry_proofs_the_server_accepts() {
    let tm = manager("dp-basic", "");
    let sid = sign_in_dpop(&tm, "dpop-basic", 300).await;
    assert!(!jkt(&sid).await.is_empty(), "the session is bound to a key");
    assert_eq!(me(&tm).await, 200.0, "a DPoP token with a proof of its key");
    let before = tm.access_token().unwrap();
    await_js(tm.refresh()).await.expect("the refresh grant with a proof");
    assert_ne!(tm.access_token().unwrap(), before);
    assert_eq!(me(&tm).await, 200.0);
    assert_eq!(get(&family(&sid).await, "reuse_detected").as_bool(), Some(false));
    tm.dispose();
}

#[wasm_bindgen_test]
async fn a_copied_token_is_worthless_without_the_key() {
    let tm = manager("dp-copied", "");
    sign_in_dpop(&tm, "dpop-copied", 300).await;
    let at = tm.access_token().unwrap();
    let url = format!("{AUTH}/api/me");
    let status = |headers: JsValue| {
        let url = url.clone();
        async move { await_js(raw_status(&url, &headers)).await.unwrap().as_f64().unwrap() }
    };
    let h = |pairs: &[(&str, &str)]| {
        let o = js_sys::Object::new();
        for (k, v) in pairs {
            Reflect::set(&o, &(*k).into(), &(*v).into()).unwrap();
        }
        JsValue::from(o)
    };
    assert_eq!(status(h(&[("Authorization", &format!("DPoP {at}"))])).await, 401.0, "without a proof");
    assert_eq!(status(h(&[("Authorization", &format!("Bearer {at}"))])).await, 401.0, "as a Bearer token");
    // A valid proof, of another key (another manager's).
    let other = manager("dp-copied-other", r#","storage":"memory""#);
    let foreign = await_js(other.dpop_proof("GET".into(), url.clone().into(), at.clone().into())).await.unwrap().as_string().unwrap();
    assert_eq!(status(h(&[("Authorization", &format!("DPoP {at}")), ("DPoP", &foreign)])).await, 401.0, "with a proof of another key");
    // A proof of the right key is accepted once: a replayed proof is refused.
    let own = await_js(tm.dpop_proof("get".into(), url.clone().into(), at.clone().into())).await.unwrap().as_string().unwrap();
    let with_own = h(&[("Authorization", &format!("DPoP {at}")), ("DPoP", &own)]);
    assert_eq!(status(with_own.clone()).await, 200.0, "the key's own proof");
    assert_eq!(status(with_own).await, 401.0, "the same proof again (same jti)");
    tm.dispose();
}

#[wasm_bindgen_test]
async fn the_nonce_dance_on_the_token_endpoint_and_the_api() {
    let transport = counting_fetch();
    let opts = js(&format!(
        r#"{{"storageKey":"dp-nonce","storage":"memory","dpop":true,"tokenEndpoint":"{AUTH}/oauth/token","clientId":"tessera-demo","allowedOrigins":["{AUTH}"]}}"#
    ));
    Reflect::set(&opts, &"fetch".into(), &transport).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    dpop_nonces(true).await;
    let sid = sign_in_dpop(&tm, "dpop-nonce", 300).await;
    let tokens = |t: &JsValue| list(t, "calls").iter().filter(|c| c.as_string().unwrap_or_default().ends_with("/oauth/token")).count();
    assert_eq!(tokens(&transport), 2, "the sign-in was asked for a nonce and sent again");
    await_js(tm.refresh()).await.expect("refreshed with the nonce");
    assert_eq!(tokens(&transport), 3, "the nonce from the last answer was used at once");
    assert_eq!(me(&tm).await, 200.0, "the API asked for its own nonce, once");
    let apis = list(&transport, "calls").iter().filter(|c| c.as_string().unwrap_or_default().ends_with("/api/me")).count();
    assert_eq!(apis, 2, "one more send, not the 401 replay");
    assert_eq!(refreshes(&sid).await, 1.0, "no refresh for a nonce");
    dpop_nonces(false).await;
}

#[wasm_bindgen_test]
async fn two_tabs_share_one_key_and_one_refresh() {
    let key = "dp-tabs";
    local_storage().remove_item(key).unwrap();
    let a = manager(key, "");
    let b = manager(key, "");
    let sid = sign_in_dpop(&a, "dpop-tabs", 300).await;
    assert!(wait_until(1_000.0, || b.access_token() == a.access_token()).await);
    assert_eq!(me(&b).await, 200.0, "the other tab signs with the same key");
    // Both due at once: one refresh, with the shared key.
    let restore = shift_clock(400_000.0);
    let both = Array::of2(&a.get_access_token(), &b.get_access_token());
    let tokens = Array::from(&await_js(Promise::all(&both)).await.expect("both got a token"));
    restore.call0(&JsValue::NULL).unwrap();
    assert_eq!(tokens.get(0), tokens.get(1));
    assert_eq!(refreshes(&sid).await, 1.0);
    assert_eq!(me(&a).await, 200.0);
    a.dispose();
    b.dispose();
}

/// Where a session's key is kept: under the storage key and its thumbprint.
async fn stored_key(key: &str, jkt: &str) -> bool {
    await_js(dpop_key_stored(&[key, " ", jkt].concat())).await.unwrap().as_bool() == Some(true)
}

/// Whether the key is deleted within two seconds.
async fn gone(key: &str, jkt: &str) -> bool {
    for _ in 0..40 {
        if !stored_key(key, jkt).await {
            return true;
        }
        sleep(50.0).await;
    }
    false
}

/// The thumbprint the stored record names (R2: every tab tells the key).
fn record_jkt(key: &str) -> String {
    let text = local_storage().get_item(key).unwrap().unwrap_or_default();
    get_str(&js(&text), "jkt")
}

#[wasm_bindgen_test]
async fn logout_deletes_the_sessions_key_and_the_next_session_gets_a_new_one() {
    let key = "dp-logout";
    local_storage().remove_item(key).unwrap();
    let tm = manager(key, "");
    let first = jkt(&sign_in_dpop(&tm, "dpop-logout", 300).await).await;
    assert_eq!(record_jkt(key), first, "the record names the key its tokens are bound to");
    assert!(stored_key(key, &first).await);
    await_js(tm.logout()).await.unwrap();
    assert!(gone(key, &first).await, "the ended session's key is gone");
    let second = jkt(&sign_in_dpop(&tm, "dpop-logout-2", 300).await).await;
    assert_ne!(first, second, "a new key for the new session");
    assert!(stored_key(key, &second).await);
    assert_eq!(me(&tm).await, 200.0);
    tm.dispose();
}

/// R2: a logout destroys only the ended session's key. Another session on
/// the same storage key (sessionStorage tabs each have their own) keeps its
/// key, and a manager that loads that session later (a reload) finds it.
#[wasm_bindgen_test]
async fn a_logout_never_touches_another_sessions_key() {
    let (ka, kb) = ("dp-own-a", "dp-own-b");
    let a = manager(ka, "");
    let b = manager(kb, "");
    let _ = sign_in_dpop(&a, "dpop-own-a", 300).await;
    let sid_b = sign_in_dpop(&b, "dpop-own-b", 300).await;
    let jkt_b = jkt(&sid_b).await;
    await_js(a.logout()).await.unwrap();
    assert!(stored_key(kb, &jkt_b).await, "the other session's key is kept");
    // A manager made later for session B (its tab reloaded) signs with B's key.
    b.dispose();
    let again = manager(kb, "");
    await_js(again.ready()).await.unwrap();
    assert!(wait_until(2_000.0, || again.access_token().is_some()).await);
    assert_eq!(me(&again).await, 200.0, "proofs from the key the tokens are bound to");
    again.dispose();
    a.dispose();
}

/// A record whose key is gone (its session ended in a tab that deleted it)
/// cannot be used: the manager that finds it signs out, as for a logout
/// elsewhere, and sends nothing with it.
#[wasm_bindgen_test]
async fn a_session_whose_key_is_gone_signs_out() {
    let key = "dp-gone";
    let a = manager(key, "");
    let sid = sign_in_dpop(&a, "dpop-gone", 300).await;
    let saved = local_storage().get_item(key).unwrap().unwrap();
    let thumbprint = jkt(&sid).await;
    a.dispose();
    await_js(dpop_key_delete(&[key, " ", &thumbprint].concat())).await.unwrap();
    local_storage().set_item(key, &saved).unwrap();
    let b = manager(key, "");
    let log = record(&b, &["logout"]);
    assert!(wait_until(3_000.0, || b.access_token().is_none()).await, "signed out");
    assert_eq!(names(&log), ["logout"]);
    assert_eq!(get_str(&detail(&log, 0), "reason"), "remote");
    b.dispose();
}

#[wasm_bindgen_test]
async fn a_device_clock_two_hours_fast_still_gets_accepted_proofs() {
    let restore = shift_clock(7_200_000.0);
    let tm = manager("dp-skew", r#","storage":"memory""#);
    // The first proof is two hours off; the server says so, with its Date.
    let sid = sign_in_dpop(&tm, "dpop-skew", 300).await;
    assert!((tm.clock_skew_ms() + 7_200_000.0).abs() < 5_000.0, "{}", tm.clock_skew_ms());
    assert_eq!(me(&tm).await, 200.0);
    await_js(tm.refresh()).await.expect("refreshed");
    assert_eq!(me(&tm).await, 200.0);
    assert_eq!(refreshes(&sid).await, 1.0);
    restore.call0(&JsValue::NULL).unwrap();
    tm.dispose();
}

#[wasm_bindgen_test]
fn a_host_without_webcrypto_gets_a_clear_error() {
    let restore = hide_subtle();
    let e = TokenManager::new(js(r#"{"dpop":true}"#)).err().expect("refused");
    restore.call0(&JsValue::NULL).unwrap();
    assert!(message(&e).contains("crypto.subtle"), "{}", message(&e));
    assert!(TokenManager::new(js(r#"{"dpop":"yes"}"#)).is_err());
    assert!(TokenManager::new(js(r#"{"dpop":true,"storage":"memory"}"#)).is_ok());
}

#[wasm_bindgen_test]
async fn a_logout_listener_that_signs_in_again_gets_tokens_its_requests_can_use() {
    use std::{cell::RefCell, rc::Rc};
    let tm = Rc::new(manager("dp-relogin", r#","storage":"memory""#));
    let first = jkt(&sign_in_dpop(&tm, "dpop-relogin", 300).await).await;
    // The listener signs in at once, as the logout happens: its proof must
    // come from the key the next session's requests are signed with.
    let started: Rc<RefCell<Option<Promise>>> = Rc::default();
    let (t, slot) = (tm.clone(), started.clone());
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_| {
        *slot.borrow_mut() = Some(sign_in_request(&t, "dpop-relogin-2", 300));
    });
    tm.on("logout", listener.as_ref().clone()).unwrap();
    await_js(tm.logout()).await.unwrap();
    let p = started.borrow_mut().take().expect("the listener ran");
    let json = json_of(&await_js(p).await.expect("sign-in answered")).await;
    assert_eq!(get_str(&json, "token_type"), "DPoP");
    tm.set_tokens(json).unwrap();
    assert_ne!(jkt(&sid_of(&tm.access_token().unwrap())).await, first, "a new key for the new session");
    assert_eq!(me(&tm).await, 200.0, "requests are signed with the key the tokens are bound to");
    tm.dispose();
}

/// `dpopProof` with what is not a string (a method, a URL, an access token
/// given but not text) rejects with `invalid_options` and says what it
/// takes; nothing is signed.
#[wasm_bindgen_test]
async fn dpop_proof_refuses_what_is_not_a_string() {
    let tm = manager("dp-args", r#","storage":"memory""#);
    let url = JsValue::from(format!("{AUTH}/api/me"));
    for (method, url, token) in [
        (JsValue::from(1), url.clone(), JsValue::UNDEFINED),
        ("GET".into(), JsValue::NULL, JsValue::UNDEFINED),
        ("GET".into(), url.clone(), JsValue::from(7)),
    ] {
        let e = await_js(tm.dpop_proof(method, url, token)).await.expect_err("refused");
        assert_eq!(get_str(&e, "code"), "invalid_options");
        assert!(get_str(&e, "message").contains("takes strings"), "{}", get_str(&e, "message"));
    }
    // Without a token, and with null for one, a proof is made.
    let p = await_js(tm.dpop_proof("GET".into(), url.clone(), JsValue::NULL)).await.unwrap().as_string().unwrap();
    assert_eq!(p.split('.').count(), 3, "a compact JWS");
    tm.dispose();
}
