//! Browser tests of coordination between managers sharing localStorage
//! (two managers in one page reach each other as tabs do: BroadcastChannel
//! and Web Locks span a page's own contexts too), and of clock skew.
//! The two-page version runs under Playwright in tests/e2e.
#![cfg(target_arch = "wasm32")]

mod support;

use js_sys::{Array, Promise};
use support::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const TWO_HOURS: f64 = 7_200_000.0;

#[wasm_bindgen_test]
async fn a_change_in_one_manager_reaches_the_other() {
    local_storage().remove_item("tabs-sync").unwrap();
    let a = server_manager("tabs-sync", "");
    let b = server_manager("tabs-sync", "");
    let log = record(&b, &["tokens", "logout"]);
    sign_in(&a, "tab-user", 300).await;
    let want = a.access_token();
    assert!(wait_until(1_000.0, || b.access_token() == want).await, "b picked up a's tokens within a second");
    assert_eq!(names(&log), ["tokens"]);
    let _ = a.logout();
    assert!(wait_until(1_000.0, || b.access_token().is_none()).await, "logout reached b");
    assert_eq!(names(&log), ["tokens", "logout"]);
    assert_eq!(get_str(&detail(&log, 1), "reason"), "remote");
}

async fn one_refresh_for_two(key: &str) {
    local_storage().remove_item(key).unwrap();
    let a = server_manager(key, "");
    let b = server_manager(key, "");
    let sid = sign_in_expired(&a, "racer").await;
    assert!(wait_until(1_000.0, || b.access_token() == a.access_token()).await);
    // Both think the token is due and ask at the same moment.
    let both = Array::of2(&a.get_access_token(), &b.get_access_token());
    let tokens = Array::from(&await_js(Promise::all(&both)).await.expect("both got a token"));
    assert_eq!(tokens.get(0), tokens.get(1), "both ended with the same new token");
    let f = family(&sid).await;
    assert_eq!(get(&f, "refreshes").as_f64(), Some(1.0), "exactly one refresh reached the server");
    assert_eq!(get(&f, "reuse_detected").as_bool(), Some(false), "no rotated token was reused");
    assert_eq!(a.access_token(), b.access_token());
    a.dispose();
    b.dispose();
}

#[wasm_bindgen_test]
async fn two_managers_due_together_make_one_refresh_with_web_locks() {
    one_refresh_for_two("tabs-locks").await;
}

#[wasm_bindgen_test]
async fn two_managers_due_together_make_one_refresh_with_the_storage_lease() {
    let restore = hide_web_locks();
    one_refresh_for_two("tabs-lease").await;
    restore.call0(&JsValue::NULL).unwrap();
}

async fn skewed_device_refreshes_correctly(offset: f64, with_expires_in: bool) {
    let restore = shift_clock(offset);
    let key = format!("skew-{offset}-{with_expires_in}");
    let tm = server_manager(&key, r#","storage":"memory""#);
    let r = login("skewed", 8).await;
    if !with_expires_in {
        js_sys::Reflect::delete_property(r.unchecked_ref::<js_sys::Object>(), &"expires_in".into()).unwrap();
    }
    tm.set_tokens(r).unwrap();
    let sid = sid_of(&tm.access_token().unwrap());
    if !with_expires_in && offset > 0.0 {
        // A fast device reads an old-looking iat as proving nothing, so the
        // token looks expired until the token endpoint's Date header speaks.
        await_js(tm.get_access_token()).await.expect("refreshed");
        assert_eq!(refreshes(&sid).await, 1.0);
    }
    let skew = tm.clock_skew_ms();
    assert!((skew + offset).abs() < 5_000.0, "offset {offset}: estimated skew {skew}");
    assert!(!tm.is_expired(None), "offset {offset}: a fresh token is not expired");
    let left = tm.expires_at().unwrap() - js_sys::Date::now();
    assert!((2_000.0..=8_500.0).contains(&left), "offset {offset}: {left} ms left on the device clock");
    let me = await_js(tm.fetch(format!("{AUTH}/api/me").into(), None)).await.unwrap();
    assert_eq!(get(&me, "status").as_f64(), Some(200.0), "offset {offset}: the server accepted the token");
    let before = refreshes(&sid).await;
    sleep(7_000.0).await;
    let after = refreshes(&sid).await;
    assert!(after - before <= 2.0, "offset {offset}: no refresh loop ({} refreshes in 7 s)", after - before);
    assert!(!tm.is_expired(None));
    tm.dispose();
    restore.call0(&JsValue::NULL).unwrap();
}

use wasm_bindgen::JsCast;

#[wasm_bindgen_test]
async fn device_clock_two_hours_fast() {
    skewed_device_refreshes_correctly(TWO_HOURS, true).await;
}

#[wasm_bindgen_test]
async fn device_clock_two_hours_slow() {
    skewed_device_refreshes_correctly(-TWO_HOURS, true).await;
}

#[wasm_bindgen_test]
async fn device_clock_two_hours_fast_jwt_only() {
    skewed_device_refreshes_correctly(TWO_HOURS, false).await;
}

#[wasm_bindgen_test]
async fn device_clock_two_hours_slow_jwt_only() {
    skewed_device_refreshes_correctly(-TWO_HOURS, false).await;
}
