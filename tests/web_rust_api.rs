//! Browser tests of the Rust API (`tessera::TokenManager::builder()`), the
//! front door Leptos, Yew and Dioxus apps use: the main flows against the
//! real local auth server, with no `JsValue` or `Promise` in the calls under
//! test (the helpers that talk to the auth server are JS).
#![cfg(target_arch = "wasm32")]

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use support::{family, fault, get, get_str, js, local_storage, login, post_form, refreshes, sid_of, wait_until, AUTH};
use tessera::{Error, Event, Reason, RefreshError, RefreshRequest, Storage, StorageAdapter, TokenManager, TokenResponse};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Request, RequestInit, Response};

wasm_bindgen_test_configure!(run_in_browser);

fn other_origin() -> String {
    let port: u32 = AUTH.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in TESSERA_AUTH_URL");
    format!("http://127.0.0.1:{}", port + 1)
}

/// A manager for the local auth server, built with the Rust builder.
fn manager(key: &str) -> TokenManager {
    TokenManager::builder()
        .storage_key(key)
        .token_endpoint(format!("{AUTH}/oauth/token"))
        .revocation_endpoint(format!("{AUTH}/oauth/revoke"))
        .client_id("tessera-demo")
        .allowed_origins([AUTH])
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Signs in at the auth server (a JS helper) and hands the answer over as
/// a typed `TokenResponse`; the session id.
async fn sign_in(tm: &TokenManager, user: &str, ttl: u32) -> String {
    let r = login(user, ttl).await;
    let t = TokenResponse::new(get_str(&r, "access_token"))
        .expires_in(get(&r, "expires_in").as_f64().unwrap() as u64)
        .refresh_token(get_str(&r, "refresh_token"));
    tm.set_tokens(&t).unwrap();
    sid_of(&tm.access_token().unwrap())
}

async fn text(resp: Response) -> String {
    JsFuture::from(resp.text().unwrap()).await.unwrap().as_string().unwrap()
}

async fn body_json(resp: Response) -> wasm_bindgen::JsValue {
    js(&text(resp).await)
}

/// Records every event's shape, as a listener in an app would.
fn events(tm: &TokenManager) -> (Rc<RefCell<Vec<String>>>, tessera::Subscription) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let sub = tm.on(move |e| {
        l.borrow_mut().push(match e {
            Event::Tokens { .. } => "tokens".into(),
            Event::RefreshError { error, .. } => format!("refreshError:{}", error.code()),
            Event::Expired => "expired".into(),
            Event::Logout(r) => format!("logout:{}", r.as_str()),
            Event::StorageError => "storageError".into(),
        })
    });
    (log, sub)
}

#[wasm_bindgen_test]
async fn stored_tokens_are_restored_with_their_claims() {
    local_storage().clear().unwrap();
    let first = manager("r-restore");
    let sid = sign_in(&first, "ruth", 300).await;
    let token = first.access_token().unwrap();
    first.dispose();

    let second = manager("r-restore");
    second.ready().await;
    assert_eq!(second.access_token().as_deref(), Some(token.as_str()), "the stored session is picked up");
    assert!(!second.is_expired(Duration::ZERO));
    assert!(second.is_expired(Duration::from_secs(400)), "expires within 400 s");
    assert_eq!(second.storage(), "localStorage");
    let claims = second.claims().expect("a JWT");
    assert_eq!(claims.registered().sub.as_deref(), Some("ruth"));
    assert_eq!(claims.get("sid").and_then(|v| v.as_str()), Some(sid.as_str()));
    assert!(claims.json().contains("\"sub\""));
    assert!(second.expires_at().unwrap() > js_sys::Date::now());
    assert!(second.next_refresh_at().is_some());
}

#[wasm_bindgen_test]
async fn the_bearer_goes_to_allowed_origins_only() {
    let tm = manager("r-origins");
    sign_in(&tm, "rhea", 300).await;
    let token = tm.access_token().unwrap();
    let echo = body_json(tm.fetch_with_str(&format!("{AUTH}/api/echo")).await.unwrap()).await;
    assert_eq!(get_str(&echo, "authorization"), format!("Bearer {token}"));
    let echo = body_json(tm.fetch_with_str(&format!("{}/api/echo", other_origin())).await.unwrap()).await;
    assert!(get(&echo, "authorization").is_null(), "no token to another origin");
    // A Request with its own method, body and headers goes as built.
    let init = RequestInit::new();
    init.set_method("PUT");
    init.set_body(&"payload".into());
    let req = Request::new_with_str_and_init(&format!("{AUTH}/api/me"), &init).unwrap();
    let me = body_json(tm.fetch(&req).await.unwrap()).await;
    assert_eq!(get_str(&me, "sub"), "rhea");
    assert_eq!(get_str(&me, "method"), "PUT");
    assert_eq!(get_str(&me, "body"), "payload");
    // A transport failure is a typed error.
    let err = tm.fetch_with_str("http://127.0.0.1:9/unreachable").await.unwrap_err();
    assert_eq!(err, Error::Network);
}

#[wasm_bindgen_test]
async fn refreshes_before_expiry_and_tells_listeners() {
    let tm = manager("r-auto");
    let (log, sub) = events(&tm);
    let sid = sign_in(&tm, "rory", 8).await;
    let first = tm.access_token().unwrap();
    let expiry = tm.expires_at().unwrap();
    assert!(wait_until(7_500.0, || log.borrow().len() >= 2).await, "a refresh happened by itself");
    assert!(js_sys::Date::now() < expiry, "before the old token expired");
    assert_ne!(tm.access_token().unwrap(), first);
    assert_eq!(*log.borrow(), ["tokens", "tokens"]);
    assert_eq!(refreshes(&sid).await, 1.0);
    // Dropping the subscription removes the listener.
    drop(sub);
    tm.refresh().await.unwrap();
    assert_eq!(refreshes(&sid).await, 2.0);
    assert_eq!(log.borrow().len(), 2, "no event after the Subscription was dropped");
    let fresh = tm.access_token_fresh().await.unwrap();
    assert_eq!(Some(fresh), tm.access_token());
    tm.dispose();
}

#[wasm_bindgen_test]
async fn a_401_refreshes_once_and_replays() {
    let tm = manager("r-401");
    let sid = sign_in(&tm, "remy", 300).await;
    let fields = js(&format!(r#"{{"token":"{}","client_id":"tessera-demo"}}"#, tm.access_token().unwrap()));
    assert_eq!(post_form(&format!("{AUTH}/oauth/revoke"), &fields).await, 200.0);
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&"replay me".into());
    let req = Request::new_with_str_and_init(&format!("{AUTH}/api/me"), &init).unwrap();
    let resp = tm.fetch(&req).await.unwrap();
    assert_eq!(resp.status(), 200, "replayed with the refreshed token");
    assert_eq!(get_str(&body_json(resp).await, "body"), "replay me");
    assert_eq!(refreshes(&sid).await, 1.0);
}

#[wasm_bindgen_test]
async fn a_dead_refresh_token_is_a_typed_fatal_error() {
    let tm = manager("r-fatal");
    let (log, _sub) = events(&tm);
    let sid = sign_in(&tm, "rita", 300).await;
    fault("invalid_grant", &sid, "").await;
    let e = tm.refresh().await.unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert_eq!(e.fatal(), Some(true));
    assert!(e.to_string().starts_with("Tessera:"), "{e}");
    assert_eq!(*log.borrow(), ["tokens", "refreshError:invalid_grant", "expired"]);
    assert_eq!(tm.access_token_fresh().await.unwrap_err(), Error::NoTokens);
}

#[wasm_bindgen_test]
async fn logout_ends_the_session_everywhere() {
    let tm = manager("r-logout");
    let (log, _sub) = events(&tm);
    let sid = sign_in(&tm, "rosa", 300).await;
    tm.logout().await;
    assert_eq!(tm.access_token(), None);
    assert!(local_storage().get_item("r-logout").unwrap().is_none(), "gone from storage");
    assert_eq!(*log.borrow(), ["tokens", "logout:user"]);
    assert!(get(&family(&sid).await, "revoked").as_bool().unwrap(), "the refresh token was revoked");
    let echo = body_json(tm.fetch_with_str(&format!("{AUTH}/api/echo")).await.unwrap()).await;
    assert!(get(&echo, "authorization").is_null(), "signed out: no token");
    assert!(matches!(Reason::User.as_str(), "user"));
}

#[wasm_bindgen_test]
async fn the_builder_checks_options_like_the_js_constructor() {
    let rust = TokenManager::builder().token_endpoint("http://auth.example.com/token").build().unwrap_err();
    let js_err = tessera::js_api::TokenManager::new(js(r#"{"tokenEndpoint":"http://auth.example.com/token"}"#)).err().unwrap();
    assert_eq!(rust.code(), "invalid_options");
    assert_eq!(rust.to_string(), get_str(&js_err, "message"), "same message on both sides");
    let e = TokenManager::builder().allowed_origins(["ftp://x"]).build().unwrap_err();
    assert!(e.to_string().contains("allowedOrigins"), "{e}");
    let e = TokenManager::builder().retries(11).build().unwrap_err();
    assert!(e.to_string().contains("`retries`"), "{e}");
    let e = TokenManager::builder().timeout(Duration::ZERO).build().unwrap_err();
    assert!(e.to_string().contains("`timeoutSeconds`"), "{e}");
    let e = TokenManager::builder().device_id_header("X Device").build().unwrap_err();
    assert!(e.to_string().contains("`deviceIdHeader`"), "{e}");
    let e = TokenManager::builder()
        .token_endpoint(format!("{AUTH}/oauth/token"))
        .refresh(|_r: RefreshRequest| async { Err(RefreshError::transient("x")) })
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
}

/// A Rust storage adapter (a native bridge), a Rust refresh and a Rust
/// `is_unauthorized` against the JSON backend (`/app/*`): what a backend that
/// is not an OAuth server needs, with no JS.
#[derive(Default)]
struct Bridge(RefCell<HashMap<String, String>>);

impl StorageAdapter for Bridge {
    fn get_item(&self, key: &str) -> Option<String> {
        self.0.borrow().get(key).cloned()
    }
    fn set_item(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.borrow_mut().insert(key.into(), value.into());
        Ok(())
    }
    fn remove_item(&self, key: &str) -> Result<(), String> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
}

async fn post(url: &str, body: &str) -> Result<Response, Error> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    let headers = web_sys::Headers::new().unwrap();
    headers.set("Content-Type", "application/json").unwrap();
    init.set_headers(&headers);
    let req = Request::new_with_str_and_init(url, &init).map_err(|_| Error::Network)?;
    let window = web_sys::window().ok_or(Error::Network)?;
    let resp = JsFuture::from(window.fetch_with_request(&req)).await.map_err(|_| Error::Network)?;
    resp.dyn_into().map_err(|_| Error::Network)
}

async fn app_refresh(r: RefreshRequest) -> Result<TokenResponse, RefreshError> {
    let resp = post(&format!("{AUTH}/app/refresh"), &format!(r#"{{"refresh_token":"{}"}}"#, r.refresh_token))
        .await
        .map_err(|_| RefreshError::transient("offline"))?;
    let b = body_json(resp).await;
    match get(&b, "code").as_f64() {
        Some(200.0) => {
            let data = get(&b, "data");
            Ok(TokenResponse::new(get_str(&data, "token")).refresh_token(get_str(&data, "refresh_token")))
        }
        Some(401.0) => Err(RefreshError::fatal(get_str(&b, "msg"))),
        _ => Err(RefreshError::transient(get_str(&b, "msg"))),
    }
}

#[wasm_bindgen_test]
async fn a_json_backend_with_rust_callbacks_and_a_rust_adapter() {
    let bridge = Rc::new(Bridge::default());
    let calls = Rc::new(RefCell::new(Vec::<String>::new()));
    let seen = calls.clone();
    let tm = TokenManager::builder()
        .storage(Storage::Adapter(bridge.clone()))
        .storage_key("r-app")
        .allowed_origins([AUTH])
        .refresh(app_refresh)
        .is_unauthorized(|resp: Response| async move { get(&body_json(resp).await, "code").as_f64() == Some(403.0) })
        .fetch(move |req: Request| {
            seen.borrow_mut().push(req.url());
            async move {
                let window = web_sys::window().ok_or(Error::Network)?;
                let resp = JsFuture::from(window.fetch_with_request(&req)).await.map_err(|_| Error::Network)?;
                resp.dyn_into::<Response>().map_err(|_| Error::Network)
            }
        })
        .build()
        .unwrap();
    tm.ready().await;
    assert_eq!(tm.storage(), "adapter");
    let login =
        body_json(post(&format!("{AUTH}/app/login"), r#"{"username":"ravi","password":"password","ttl":300}"#).await.unwrap()).await;
    let data = get(&login, "data");
    tm.set_tokens(&TokenResponse::new(get_str(&data, "token")).refresh_token(get_str(&data, "refresh_token"))).unwrap();
    // Adapter writes are queued in order, after the current task.
    assert!(wait_until(2_000.0, || bridge.0.borrow().contains_key("r-app")).await, "the record went to the Rust adapter");
    let old = tm.access_token().unwrap();
    // The JSON backend answers HTTP 200 {"code": 403} for a refused token.
    let fields = js(&format!(r#"{{"token":"{old}","client_id":"tessera-demo"}}"#));
    assert_eq!(post_form(&format!("{AUTH}/oauth/revoke"), &fields).await, 200.0);
    let resp = tm.fetch_with_str(&format!("{AUTH}/app/user")).await.unwrap();
    let user = body_json(resp).await;
    assert_eq!(get(&user, "code").as_f64(), Some(200.0), "replayed after the Rust refresh");
    assert_ne!(tm.access_token().unwrap(), old);
    assert!(calls.borrow().iter().any(|u| u.ends_with("/app/user")), "requests went through the Rust transport");
    tm.logout().await;
    assert!(wait_until(2_000.0, || !bridge.0.borrow().contains_key("r-app")).await, "and left it at logout");
}
