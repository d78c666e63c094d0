//! The bad-input catalogue: each row is a hostile or broken input and the
//! outcome a user should see. None may panic (a panic kills the wasm
//! instance: the last test proves it is still alive), leak a token to another
//! origin, or lose tokens that were valid.
#![cfg(target_arch = "wasm32")]

mod support;

use support::*;
use tessera::js_api::TokenManager;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn b64(s: &str) -> String {
    // base64url of the UTF-8 bytes, without padding.
    let bytes = s.as_bytes();
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn jwt(header: &str, payload: &str) -> String {
    format!("{}.{}.c2ln", b64(header), b64(payload))
}

fn now_s() -> f64 {
    (js_sys::Date::now() / 1000.0).floor()
}

fn memory_manager() -> TokenManager {
    TokenManager::new(js(r#"{"storage":"memory","autoRefresh":false}"#)).unwrap()
}

fn response_with(token: &str, expires_in: f64) -> JsValue {
    let r = js(r#"{"token_type":"Bearer","refresh_token":"rt"}"#);
    js_sys::Reflect::set(&r, &"access_token".into(), &token.into()).unwrap();
    js_sys::Reflect::set(&r, &"expires_in".into(), &expires_in.into()).unwrap();
    r
}

/// What a JWT-shaped access token should turn into.
enum Claims {
    /// Not a readable JWT: an opaque token, claims undefined.
    Opaque,
    /// Readable; expiry from expires_in (the claim was ignored or absent).
    Readable,
    /// Readable, and its exp (seconds) is the expiry (given no expires_in).
    ExpiresAt(f64),
}

#[wasm_bindgen_test]
fn malformed_jwts_are_opaque_tokens_or_bad_claims_are_ignored() {
    let n = now_s();
    let rows: Vec<(&str, String, Claims)> = vec![
        ("one segment", "2YotnFZFEjr1zCsicMWpAA".into(), Claims::Opaque),
        ("two segments", format!("{}.{}", b64("{}"), b64("{}")), Claims::Opaque),
        ("four segments", format!("{}.{}.c2ln.eA", b64("{}"), b64("{}")), Claims::Opaque),
        ("five segments (JWE)", "eyJhbGciOiJSU0EifQ.a.b.c.d".into(), Claims::Opaque),
        ("payload not base64url", format!("{}.ab+/cd.c2ln", b64("{}")), Claims::Opaque),
        ("payload not JSON", jwt("{}", "hello"), Claims::Opaque),
        ("payload a JSON array", jwt("{}", "[1,2]"), Claims::Opaque),
        ("payload a JSON string", jwt("{}", "\"sub\""), Claims::Opaque),
        ("payload not UTF-8", format!("{}.__79.c2ln", b64("{}")), Claims::Opaque),
        ("header not an object", jwt("7", "{}"), Claims::Opaque),
        ("exp as a string", jwt("{}", &format!(r#"{{"exp":"{}"}}"#, n + 60.0)), Claims::Readable),
        ("exp as a float", jwt("{}", &format!(r#"{{"exp":{}.5}}"#, n + 60.0)), Claims::ExpiresAt(n + 60.5)),
        ("exp negative", jwt("{}", r#"{"exp":-100}"#), Claims::Readable),
        ("exp huge", jwt("{}", r#"{"exp":1e300}"#), Claims::Readable),
        ("exp missing", jwt("{}", r#"{"sub":"x"}"#), Claims::Readable),
        ("nbf in the future (not enforced by a client)", jwt("{}", &format!(r#"{{"nbf":{}}}"#, n + 3600.0)), Claims::Readable),
        ("alg none (decoded, never verified)", jwt(r#"{"alg":"none"}"#, r#"{"sub":"x"}"#), Claims::Readable),
        ("duplicate exp: the last wins", jwt("{}", &format!(r#"{{"exp":1,"exp":{}}}"#, n + 30.0)), Claims::ExpiresAt(n + 30.0)),
    ];
    let tm = memory_manager();
    for (name, token, want) in rows {
        // expires_in decides when present (RFC 9068 s6, catalogue D1): the
        // rows about exp send none.
        let response = match want {
            Claims::ExpiresAt(_) => {
                let r = response_with(&token, 600.0);
                js_sys::Reflect::delete_property(r.unchecked_ref::<js_sys::Object>(), &"expires_in".into()).unwrap();
                r
            }
            _ => response_with(&token, 600.0),
        };
        tm.set_tokens(response).unwrap_or_else(|e| panic!("{name}: refused: {}", message(&e)));
        assert_eq!(tm.access_token().as_deref(), Some(token.as_str()), "{name}");
        let exp = tm.expires_at().unwrap();
        let from_expires_in = js_sys::Date::now() + 600_000.0;
        match want {
            Claims::Opaque => {
                assert!(tm.claims().is_undefined(), "{name}: opaque");
                assert!((exp - from_expires_in).abs() < 2_000.0, "{name}: expiry from expires_in");
            }
            Claims::Readable => {
                assert!(tm.claims().is_object(), "{name}: claims readable");
                assert!((exp - from_expires_in).abs() < 2_000.0, "{name}: expiry from expires_in");
            }
            Claims::ExpiresAt(s) => assert_eq!(exp, s * 1000.0, "{name}"),
        }
    }
}

#[wasm_bindgen_test]
fn bad_token_responses_are_refused_and_keep_the_tokens() {
    let rows: Vec<(&str, JsValue, &str)> = vec![
        ("a string, not an object", JsValue::from_str("{\"access_token\":\"a\"}"), "expects the token response object"),
        ("null", JsValue::NULL, "expects the token response object"),
        ("a number", JsValue::from_f64(5.0), "expects the token response object"),
        ("an array", js("[]"), "not a JSON object"),
        ("missing access_token", js(r#"{"token_type":"Bearer"}"#), "no access_token"),
        ("empty access_token", js(r#"{"access_token":""}"#), "no access_token"),
        ("access_token a number", js(r#"{"access_token":12}"#), "no access_token"),
        ("token_type mac", js(r#"{"access_token":"a","token_type":"mac"}"#), "\"mac\" is not supported"),
        ("token_type a number", js(r#"{"access_token":"a","token_type":1}"#), "not supported"),
        ("an OAuth error body", js(r#"{"error":"invalid_grant"}"#), "no access_token"),
        ("error_description without error", js(r#"{"error_description":"nope"}"#), "no access_token"),
        ("header injection in the token", js(r#"{"access_token":"a\r\nX-Evil: 1"}"#), "cannot be sent"),
        ("1 MB opaque token", response_with(&"a".repeat(1 << 20), 60.0), "more than the 65536"),
        ("1 MB JWT", response_with(&jwt("{}", &format!(r#"{{"pad":"{}"}}"#, "x".repeat(1 << 20))), 60.0), "more than the 65536"),
    ];
    let tm = memory_manager();
    tm.set_tokens(response_with("good", 600.0)).unwrap();
    for (name, input, needle) in rows {
        let e = tm.set_tokens(input).expect_err(name);
        assert!(message(&e).contains(needle), "{name}: {}", message(&e));
        assert_eq!(get_str(&e, "code"), if needle.contains("expects") { "invalid_options" } else { "invalid_token_response" }, "{name}");
        assert_eq!(tm.access_token().as_deref(), Some("good"), "{name}: valid tokens kept");
    }
}

#[wasm_bindgen_test]
fn tolerated_token_response_fields() {
    let tm = memory_manager();
    let now = js_sys::Date::now();
    tm.set_tokens(js(r#"{"access_token":"a","token_type":"Bearer","expires_in":"600"}"#)).unwrap();
    assert!((tm.expires_at().unwrap() - now - 600_000.0).abs() < 2_000.0, "expires_in as a string");
    tm.set_tokens(js(r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#)).unwrap();
    assert_eq!(tm.expires_at(), None, "negative expires_in: unknown expiry");
    assert!(!tm.is_expired(None));
    tm.set_tokens(js(r#"{"access_token":"a","token_type":"Bearer","expires_in":1e300}"#)).unwrap();
    assert!(tm.expires_at().unwrap().is_finite(), "huge expires_in is clamped");
    let big = jwt("{}", &format!(r#"{{"sub":"x","pad":"{}"}}"#, "y".repeat(40_000)));
    tm.set_tokens(response_with(&big, 60.0)).unwrap();
    assert_eq!(get_str(&tm.claims(), "sub"), "x", "a 54 KB JWT still decodes");
}

async fn refresh_failure(tm: &TokenManager) -> (JsValue, js_sys::Array) {
    let log = record(tm, &["refreshError", "expired"]);
    let held = tm.access_token();
    let e = await_js(tm.refresh()).await.expect_err("refresh must fail");
    assert_eq!(tm.access_token(), held, "tokens kept on a transient failure");
    (e, log)
}

#[wasm_bindgen_test]
async fn http_faults_on_refresh_are_transient() {
    for (kind, extra, needle) in [
        ("500", "", "HTTP 500"),
        ("503", "", "HTTP 503"),
        ("429", "", "HTTP 429"),
        ("html200", "", "not JSON"),
        ("slow", r#","delay_ms":2500"#, "in time"),
    ] {
        let tm = server_manager(&format!("cat-{kind}"), r#","storage":"memory","timeoutSeconds":1,"autoRefresh":false"#);
        let sid = sign_in(&tm, "cat", 300).await;
        let body = js(&format!(r#"{{"kind":"{kind}","sid":"{sid}"{extra}}}"#));
        assert_eq!(post_json(&format!("{AUTH}/test/fault"), &body).await, 204.0);
        let (e, log) = refresh_failure(&tm).await;
        assert!(message(&e).contains(needle), "{kind}: {}", message(&e));
        assert_eq!(get(&e, "fatal").as_bool(), Some(false), "{kind}");
        assert_eq!(names(&log), ["refreshError"], "{kind}: no expired event");
    }
    // 503 with Retry-After: 1 under automatic refresh reports the retry.
    let tm = server_manager("cat-retry-after", r#","storage":"memory""#);
    let sid = sign_in(&tm, "cat", 300).await;
    post_json(&format!("{AUTH}/test/fault"), &js(&format!(r#"{{"kind":"503","sid":"{sid}"}}"#))).await;
    let (_, log) = refresh_failure(&tm).await;
    assert!(get(&detail(&log, 0), "retryInSeconds").as_f64().unwrap() >= 1.0);
    tm.dispose();
}

#[wasm_bindgen_test]
async fn transport_failures_are_transient() {
    for (name, body) in [
        ("network error (rejects)", "return Promise.reject(new TypeError('Failed to fetch'))"),
        ("transport throws synchronously", "throw new TypeError('boom')"),
        ("transport returns garbage", "return 42"),
    ] {
        let opts =
            js(&format!(r#"{{"storage":"memory","tokenEndpoint":"{AUTH}/oauth/token","autoRefresh":false,"allowedOrigins":["{AUTH}"]}}"#));
        js_sys::Reflect::set(&opts, &"fetch".into(), &js_sys::Function::new_with_args("input, init", body)).unwrap();
        let tm = TokenManager::new(opts).unwrap();
        tm.set_tokens(response_with("held", 600.0)).unwrap();
        let (e, _) = refresh_failure(&tm).await;
        assert_eq!(get(&e, "fatal").as_bool(), Some(false), "{name}");
        assert_eq!(get_str(&e, "code"), "refresh_failed", "{name}");
    }
}

#[wasm_bindgen_test]
async fn a_redirect_to_another_origin_does_not_carry_the_token() {
    let tm = server_manager("cat-redirect", r#","storage":"memory""#);
    sign_in(&tm, "cat", 300).await;
    let other = AUTH.rsplit_once(':').map(|(h, p)| format!("{h}:{}", p.parse::<u32>().unwrap() + 1)).unwrap();
    let url = format!("{AUTH}/test/redirect?to={other}/api/echo");
    let resp = await_js(tm.fetch(url.into(), None)).await.unwrap();
    let p: js_sys::Promise =
        js_sys::Reflect::apply(&get(&resp, "json").unchecked_into::<js_sys::Function>(), &resp, &js_sys::Array::new()).unwrap().into();
    let echo = await_js(p).await.unwrap();
    assert!(get(&echo, "authorization").is_null(), "Authorization must not follow a cross-origin redirect");
    assert!(get_str(&resp, "url").starts_with(&other), "the redirect was followed");
}

#[wasm_bindgen_test]
async fn storage_faults_fall_back_and_lose_nothing() {
    // getItem throws: start signed out, say so, work in memory.
    let adapter = js_sys::Function::new_no_args(
        "const m = new Map(); return { getItem() { throw new Error('read denied'); }, setItem(k, v) { m.set(k, v); }, removeItem(k) { m.delete(k); } };",
    )
    .call0(&JsValue::NULL)
    .unwrap();
    let opts = js(r#"{"storageKey":"cat-get"}"#);
    js_sys::Reflect::set(&opts, &"storage".into(), &adapter).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    let log = record(&tm, &["storageError"]);
    sleep(10.0).await;
    assert_eq!(tm.access_token(), None);
    tm.set_tokens(response_with("after-read-error", 60.0)).unwrap();
    assert_eq!(tm.access_token().as_deref(), Some("after-read-error"));
    assert_eq!(names(&log), ["storageError"]);

    // setItem throws QuotaExceededError: the tokens stay in memory.
    let adapter = js_sys::Function::new_no_args(
        "return { getItem() { return null; }, setItem() { throw new DOMException('full', 'QuotaExceededError'); }, removeItem() {} };",
    )
    .call0(&JsValue::NULL)
    .unwrap();
    let opts = js(r#"{"storageKey":"cat-quota"}"#);
    js_sys::Reflect::set(&opts, &"storage".into(), &adapter).unwrap();
    let tm = TokenManager::new(opts).unwrap();
    let log = record(&tm, &["storageError"]);
    tm.set_tokens(response_with("kept", 60.0)).unwrap();
    sleep(10.0).await;
    assert_eq!(tm.access_token().as_deref(), Some("kept"));
    assert_eq!(get_str(&get(&detail(&log, 0), "error"), "name"), "QuotaExceededError");

    // Corrupt and future-version records; localStorage that is null.
    local_storage().set_item("cat-corrupt", "\u{0}\u{1}garbage").unwrap();
    assert_eq!(TokenManager::new(js(r#"{"storageKey":"cat-corrupt"}"#)).unwrap().access_token(), None);
    assert!(local_storage().get_item("cat-corrupt").unwrap().is_none(), "corrupt record dropped");
    local_storage().set_item("cat-future", r#"{"v":99,"access_token":"x","received_at":1}"#).unwrap();
    assert_eq!(TokenManager::new(js(r#"{"storageKey":"cat-future"}"#)).unwrap().access_token(), None);
    assert!(local_storage().get_item("cat-future").unwrap().is_some(), "a newer version's record is left alone");
    let restore = hide_local_storage();
    let tm = TokenManager::new(js(r#"{"storageKey":"cat-null"}"#)).unwrap();
    restore.call0(&JsValue::NULL).unwrap();
    tm.set_tokens(response_with("in-memory", 60.0)).unwrap();
    assert_eq!(tm.storage(), "memory");
    assert_eq!(tm.access_token().as_deref(), Some("in-memory"));
}

#[wasm_bindgen_test]
fn options_of_the_wrong_type_name_the_option() {
    let rows = [
        (r#"{"storage":42}"#, "`storage`"),
        (r#"{"allowedOrigins":[1]}"#, "`allowedOrigins`"),
        (r#"{"fetch":"fetch"}"#, "`fetch`"),
        (r#"{"timeoutSeconds":0}"#, "`timeoutSeconds`"),
        (r#"{"refreshBodyFormat":"xml"}"#, "`refreshBodyFormat`"),
        (r#"{"leewaySeconds":"5"}"#, "`leewaySeconds`"),
        (r#"{"clientId":""}"#, "`clientId`"),
        (r#"{"syncTabs":1}"#, "`syncTabs`"),
        (r#"{"retryOn401":null}"#, "`retryOn401`"),
        (r#"{"allowedOrigins":["https://api.example.com/path?x"]}"#, "ok"),
    ];
    for (opts, needle) in rows {
        match TokenManager::new(js(opts)) {
            Ok(_) => assert_eq!(needle, "ok", "{opts} should be refused"),
            Err(e) => {
                assert!(message(&e).contains(needle), "{opts}: {}", message(&e));
                assert_eq!(get_str(&e, "code"), "invalid_options", "{opts}");
            }
        }
    }
}

#[wasm_bindgen_test]
fn the_instance_survived_everything() {
    // Runs last in this file's order of definition is not guaranteed, so it
    // exercises the whole API once more: any earlier panic would have
    // poisoned the module and made these calls throw.
    let tm = memory_manager();
    tm.set_tokens(response_with("alive", 60.0)).unwrap();
    assert_eq!(tm.access_token().as_deref(), Some("alive"));
    assert!(TokenManager::new(js(r#"{"nope":1}"#)).is_err());
}
