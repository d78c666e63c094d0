//! Browser tests of a build without the optional features (`./dev test`
//! runs this file with `--no-default-features --features js`): the options
//! of `dpop` and `backends` are refused at construction, naming the feature,
//! and a manager without them signs in, sends its token and refreshes.
#![cfg(all(target_arch = "wasm32", feature = "js", not(feature = "dpop"), not(feature = "backends")))]

mod support;

use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn options_of_a_feature_left_out_are_refused_naming_it() {
    let rows = [
        (r#"{"dpop":true}"#, "dpop"),
        (r#"{"retries":2}"#, "backends"),
        (r#"{"idempotencyKeys":true}"#, "backends"),
        (r#"{"deviceIdHeader":"X-Device-Id"}"#, "backends"),
        (r#"{"isUnauthorized":null}"#, "backends"),
    ];
    for (opts, feature) in rows {
        let e = TokenManager::new(js(opts)).err().unwrap_or_else(|| panic!("{opts} was accepted"));
        let m = message(&e);
        assert!(m.contains(&format!("`{feature}` feature")), "{opts}: {m}");
        assert_eq!(get_str(&e, "code"), "invalid_options", "{opts}");
    }
    let refresh = js(r#"{}"#);
    js_sys::Reflect::set(&refresh, &"refresh".into(), &js_sys::Function::new_no_args("return {}")).unwrap();
    let e = TokenManager::new(refresh).err().expect("refresh was accepted");
    assert!(message(&e).contains("`backends` feature"), "{}", message(&e));
}

#[wasm_bindgen_test]
async fn a_manager_without_them_signs_in_sends_its_token_and_refreshes() {
    let tm = server_manager("features-none", "");
    let sid = sign_in(&tm, "alice", 300).await;
    let before = tm.access_token().unwrap();
    let r = await_js(tm.fetch(format!("{AUTH}/api/me").into(), None)).await.expect("answered");
    assert_eq!(get(&r, "status").as_f64(), Some(200.0));
    await_js(tm.refresh()).await.expect("refreshed");
    assert_ne!(tm.access_token().unwrap(), before);
    assert_eq!(refreshes(&sid).await, 1.0);
    assert!(get(&JsValue::from(tm), "deviceId").is_undefined(), "no device id getter without backends");
}
