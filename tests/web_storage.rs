//! Browser tests of the first half of the API: storage backends,
//! persistence, async adapters, throwing storage, events and bad input.
#![cfg(target_arch = "wasm32")]

mod support;

use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn manager(options: &str) -> TokenManager {
    TokenManager::new(js(options)).unwrap_or_else(|e| panic!("options {options}: {}", message(&e)))
}

fn response(access: &str, expires_in: f64) -> JsValue {
    let r = js(r#"{"token_type":"Bearer","refresh_token":"rt-1"}"#);
    js_sys::Reflect::set(&r, &"access_token".into(), &access.into()).unwrap();
    js_sys::Reflect::set(&r, &"expires_in".into(), &expires_in.into()).unwrap();
    r
}

#[wasm_bindgen_test]
async fn local_storage_tokens_survive_a_reload() {
    local_storage().remove_item("t-local").unwrap();
    let tm = manager(r#"{"storage":"localStorage","storageKey":"t-local"}"#);
    assert_eq!(tm.storage(), "localStorage");
    tm.set_tokens(response("opaque-1", 3600.0)).unwrap();
    let stored = local_storage().get_item("t-local").unwrap().expect("record written");
    assert!(stored.contains("\"v\":2"), "versioned record");
    assert!(stored.contains("\"client\":\"|\""), "bound to its client (here: none)");
    tm.dispose();
    // A new manager (as after a page reload) has them back.
    let again = manager(r#"{"storage":"localStorage","storageKey":"t-local"}"#);
    await_js(again.ready()).await.unwrap();
    assert_eq!(again.access_token().as_deref(), Some("opaque-1"));
    let exp = again.expires_at().unwrap();
    assert!((exp - js_sys::Date::now() - 3_600_000.0).abs() < 5_000.0);
    assert!(!again.is_expired(None));
    assert!(again.is_expired(Some(7200.0)), "expires within two hours");
    // Another key is another manager.
    assert_eq!(manager(r#"{"storageKey":"t-other"}"#).access_token(), None);
}

#[wasm_bindgen_test]
async fn session_storage_is_separate_from_local_storage() {
    let tm = manager(r#"{"storage":"sessionStorage","storageKey":"t-session"}"#);
    tm.set_tokens(response("sess-1", 60.0)).unwrap();
    assert!(session_storage().get_item("t-session").unwrap().is_some());
    assert!(local_storage().get_item("t-session").unwrap().is_none());
    assert_eq!(manager(r#"{"storage":"sessionStorage","storageKey":"t-session"}"#).access_token().as_deref(), Some("sess-1"));
}

#[wasm_bindgen_test]
async fn memory_storage_writes_nothing() {
    let tm = manager(r#"{"storage":"memory","storageKey":"t-mem"}"#);
    tm.set_tokens(response("mem-1", 60.0)).unwrap();
    assert_eq!(tm.access_token().as_deref(), Some("mem-1"));
    assert!(local_storage().get_item("t-mem").unwrap().is_none());
    assert!(session_storage().get_item("t-mem").unwrap().is_none());
    assert_eq!(manager(r#"{"storage":"memory","storageKey":"t-mem"}"#).access_token(), None);
}

#[wasm_bindgen_test]
async fn async_adapter_restores_after_ready_and_orders_writes() {
    let adapter = async_adapter(&JsValue::UNDEFINED, 15.0);
    let opts = js(r#"{"storageKey":"t-async"}"#);
    js_sys::Reflect::set(&opts, &"storage".into(), &adapter).unwrap();
    let tm = TokenManager::new(opts.clone()).unwrap();
    await_js(tm.ready()).await.unwrap();
    assert_eq!(tm.storage(), "adapter");
    // Several quick writes: the last must win, none lost, in order.
    tm.set_tokens(response("a-1", 60.0)).unwrap();
    tm.set_tokens(response("a-2", 60.0)).unwrap();
    let _ = tm.logout();
    tm.set_tokens(response("a-3", 60.0)).unwrap();
    sleep(200.0).await;
    let writes = js_sys::Array::from(&get(&adapter, "writes"));
    let kinds: Vec<String> = writes.iter().map(|w| js_sys::Array::from(&w).get(0).as_string().unwrap()).collect();
    assert_eq!(kinds, ["set", "set", "remove", "set"]);
    // A manager made while the first one lives (a remount in this page)
    // knows the page's record at once.
    let twin = TokenManager::new(opts.clone()).unwrap();
    assert_eq!(twin.access_token().as_deref(), Some("a-3"), "the page's record");
    twin.dispose();
    drop(twin);
    tm.dispose();
    drop(tm);
    // A new page (nobody left on the key here) restores a-3 from the
    // adapter once it answers.
    let again = TokenManager::new(opts).unwrap();
    assert_eq!(again.access_token(), None, "not before the adapter answered");
    await_js(again.ready()).await.unwrap();
    assert_eq!(again.access_token().as_deref(), Some("a-3"));
}

#[wasm_bindgen_test]
async fn sync_adapter_restores_at_once() {
    let adapter = sync_adapter();
    let opts = js(r#"{"storageKey":"t-sync"}"#);
    js_sys::Reflect::set(&opts, &"storage".into(), &adapter).unwrap();
    TokenManager::new(opts.clone()).unwrap().set_tokens(response("s-1", 60.0)).unwrap();
    sleep(10.0).await;
    assert_eq!(TokenManager::new(opts).unwrap().access_token().as_deref(), Some("s-1"));
}

#[wasm_bindgen_test]
async fn throwing_adapter_falls_back_to_memory_and_says_so_once() {
    let opts = js(r#"{"storageKey":"t-throw"}"#);
    js_sys::Reflect::set(&opts, &"storage".into(), &throwing_adapter()).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    let log = record(&tm, &["storageError"]);
    tm.set_tokens(response("t-1", 60.0)).unwrap();
    tm.set_tokens(response("t-2", 60.0)).unwrap();
    sleep(50.0).await;
    assert_eq!(tm.access_token().as_deref(), Some("t-2"), "keeps working in memory");
    assert_eq!(names(&log), ["storageError"], "said once");
    assert_eq!(get_str(&detail(&log, 0), "fallback"), "memory");
}

#[wasm_bindgen_test]
async fn local_storage_that_throws_falls_back_to_memory() {
    let restore = break_storage_writes();
    let tm = manager(r#"{"storageKey":"t-quota"}"#);
    let log = record(&tm, &["storageError"]);
    tm.set_tokens(response("q-1", 60.0)).unwrap();
    restore.call0(&JsValue::NULL).unwrap();
    sleep(20.0).await;
    assert_eq!(tm.storage(), "memory");
    assert_eq!(tm.access_token().as_deref(), Some("q-1"));
    assert_eq!(names(&log), ["storageError"]);
    // The detail names the storage that failed; tm.storage where tokens live now.
    assert_eq!(get_str(&detail(&log, 0), "storage"), "localStorage");
    assert_eq!(get_str(&detail(&log, 0), "fallback"), "memory");
}

#[wasm_bindgen_test]
async fn missing_local_storage_falls_back_to_memory() {
    let restore = hide_local_storage();
    let tm = manager(r#"{"storageKey":"t-null"}"#);
    restore.call0(&JsValue::NULL).unwrap();
    let log = record(&tm, &["storageError"]);
    tm.set_tokens(response("n-1", 60.0)).unwrap();
    sleep(20.0).await;
    assert_eq!(tm.storage(), "memory");
    assert_eq!(tm.access_token().as_deref(), Some("n-1"));
    assert_eq!(names(&log), ["storageError"], "announced after construction, to listeners added right after it");
}

#[wasm_bindgen_test]
async fn corrupt_and_foreign_records_are_dropped() {
    for (key, junk) in [("t-corrupt", "{not json"), ("t-foreign", r#"{"user":"bob"}"#), ("t-str", "\"x\"")] {
        local_storage().set_item(key, junk).unwrap();
        let tm = TokenManager::new(js(&format!(r#"{{"storageKey":"{key}"}}"#))).unwrap();
        assert_eq!(tm.access_token(), None, "{key}");
        assert!(local_storage().get_item(key).unwrap().is_none(), "{key} removed");
    }
    // A record from a newer version is left for that version.
    local_storage().set_item("t-future", r#"{"v":3,"access_token":"x","received_at":1}"#).unwrap();
    assert_eq!(manager(r#"{"storageKey":"t-future"}"#).access_token(), None);
    assert!(local_storage().get_item("t-future").unwrap().is_some());
}

#[wasm_bindgen_test]
async fn claims_of_a_jwt_and_none_for_opaque() {
    let now_s = (js_sys::Date::now() / 1000.0).floor();
    let claims = js(&format!(r#"{{"sub":"zoë","exp":{},"custom":{{"roles":["a"]}}}}"#, now_s + 120.0));
    let jwt = fake_jwt(&claims);
    let tm = manager(r#"{"storage":"memory"}"#);
    tm.set_tokens(response(&jwt, 3600.0)).unwrap();
    let c = tm.claims();
    assert_eq!(get_str(&c, "sub"), "zoë");
    assert!(get(&get(&c, "custom"), "roles").is_object(), "claims kept whole");
    // expires_in (3600 s) decides over the token's own exp (120 s): a client
    // does not rely on the token's contents (RFC 9068 s6, catalogue D1).
    let from_expires_in = tm.expires_at().unwrap() - js_sys::Date::now();
    assert!((from_expires_in - 3_600_000.0).abs() < 5_000.0, "{from_expires_in}");
    // Without expires_in, exp is the expiry.
    let r = response(&jwt, 3600.0);
    js_sys::Reflect::delete_property(r.unchecked_ref::<js_sys::Object>(), &"expires_in".into()).unwrap();
    tm.set_tokens(r).unwrap();
    assert_eq!(tm.expires_at(), Some((now_s + 120.0) * 1000.0));
    tm.set_tokens(response("opaque", 3600.0)).unwrap();
    assert!(tm.claims().is_undefined());
}

#[wasm_bindgen_test]
async fn events_fire_unsubscribe_and_survive_throwing_and_reentrant_listeners() {
    let tm = manager(r#"{"storage":"memory"}"#);
    let log = record(&tm, &["tokens", "logout"]);
    let off = tm.on("tokens", pusher_for_test(&log)).unwrap();
    tm.set_tokens(response("e-1", 60.0)).unwrap();
    js_sys::Function::from(off).call0(&JsValue::NULL).unwrap();
    tm.set_tokens(response("e-2", 60.0)).unwrap();
    assert_eq!(names(&log), ["tokens", "extra", "tokens"], "the removed listener heard only the first");
    let d = detail(&log, 0);
    assert_eq!(get_str(&d, "accessToken"), "e-1");
    assert!(get(&d, "expiresAt").as_f64().is_some());
    // A listener that throws does not stop the others; one that logs out re-enters safely.
    let thrower = js_sys::Function::new_no_args("throw new Error('listener bug')");
    tm.on("tokens", thrower.into()).unwrap();
    tm.set_tokens(response("e-3", 60.0)).unwrap();
    assert_eq!(names(&log).last().map(String::as_str), Some("tokens"));
    assert!(tm.on("tokenz", js_sys::Function::new_no_args("").into()).is_err(), "typo in an event name is an error");

    // A listener that calls back into the manager (logout from a tokens listener).
    let tm = std::rc::Rc::new(manager(r#"{"storage":"memory"}"#));
    let log = record(&tm, &["tokens", "logout"]);
    let inner = tm.clone();
    let reenter = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let _ = inner.logout();
    });
    tm.on("tokens", reenter.as_ref().clone()).unwrap();
    tm.set_tokens(response("e-4", 60.0)).unwrap();
    assert_eq!(names(&log), ["tokens", "logout"]);
    assert_eq!(tm.access_token(), None, "the listener's logout took effect");
    drop(reenter);
}

fn pusher_for_test(log: &js_sys::Array) -> JsValue {
    let f = js_sys::Function::new_with_args("log", "return d => { log.push(['extra', d]); }");
    f.call1(&JsValue::NULL, log).unwrap()
}

#[wasm_bindgen_test]
async fn bad_token_responses_are_clear_errors_and_keep_valid_tokens() {
    let tm = manager(r#"{"storage":"memory"}"#);
    tm.set_tokens(response("good-1", 60.0)).unwrap();
    let cases = [
        (r#"{"access_token":"x","token_type":"mac"}"#, "mac"),
        (r#"{"token_type":"Bearer"}"#, "access_token"),
        (r#"{"access_token":"","token_type":"Bearer"}"#, "access_token"),
        (r#"{"access_token":"has space","token_type":"Bearer"}"#, "Authorization header"),
    ];
    for (body, needle) in cases {
        let e = tm.set_tokens(js(body)).expect_err(body);
        let m = message(&e);
        assert!(m.contains(needle) && m.starts_with("Tessera:"), "{body}: {m}");
        assert_eq!(tm.access_token().as_deref(), Some("good-1"), "{body} kept the old tokens");
    }
    assert!(tm.set_tokens(JsValue::from_str("nope")).is_err());
}

#[wasm_bindgen_test]
fn bad_options_are_clear_errors() {
    let cases = [
        (r#"{"storageky":"x"}"#, "unknown option `storageky`"),
        (r#"{"storage":"cookies"}"#, "storage"),
        (r#"{"storageKey":5}"#, "storageKey"),
        (r#"{"autoRefresh":"yes"}"#, "autoRefresh"),
        (r#"{"refreshMarginSeconds":-1}"#, "refreshMarginSeconds"),
        (r#"{"tokenEndpoint":"http://auth.example.com/token"}"#, "https"),
        (r#"{"tokenEndpoint":"/relative"}"#, "absolute"),
        (r#"{"allowedOrigins":"https://api.example.com"}"#, "allowedOrigins"),
        (r#"{"allowedOrigins":["http://api.example.com"]}"#, "https"),
        (r#"{"storage":{"getItem":1}}"#, "adapter"),
        ("5", "options must be an object"),
    ];
    for (opts, needle) in cases {
        let e = TokenManager::new(js(opts)).err().unwrap_or_else(|| panic!("{opts} should be refused"));
        let m = message(&e);
        assert!(m.contains(needle), "{opts}: {m}");
    }
    assert!(TokenManager::new(JsValue::UNDEFINED).is_ok(), "no options is all defaults");
}
