//! A small Rust frontend on Tessera's Rust API, with no framework: sign in
//! at the local auth server, call its API through `tm.fetch`, watch the
//! access token count down and refresh by itself, sign out. `./dev test`
//! builds it and drives it in three browsers (tests/e2e/example.test.mjs);
//! `./dev start` serves it at /example/.
#![cfg(target_arch = "wasm32")]

use tessera::{Event, TokenManager};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Document, HtmlElement, HtmlInputElement, HtmlSelectElement, Request, RequestInit, Response};

fn document() -> Document {
    web_sys::window().and_then(|w| w.document()).expect_throw("a page")
}

fn element(id: &str) -> HtmlElement {
    document().get_element_by_id(id).and_then(|e| e.dyn_into().ok()).expect_throw(id)
}

fn set_text(id: &str, text: &str) {
    element(id).set_text_content(Some(text));
}

fn field(name: &str) -> String {
    let el = document().query_selector(&format!("[name={name}]")).ok().flatten().expect_throw(name);
    match el.dyn_ref::<HtmlInputElement>() {
        Some(input) => input.value(),
        None => el.unchecked_ref::<HtmlSelectElement>().value(),
    }
}

/// Appends a line to the page's event log (never a token).
fn log(line: &str) {
    let el = element("log");
    el.set_text_content(Some(&format!("{}{line}\n", el.text_content().unwrap_or_default())));
}

/// Shows the signed-in or signed-out view.
fn render(tm: &TokenManager) {
    let signed_in = tm.access_token().is_some();
    set_text("status", if signed_in { "signed in" } else { "signed out" });
    element("session-card").set_hidden(!signed_in);
    element("signin-card").set_hidden(signed_in);
    set_text("claims", &tm.claims().map(|c| c.json().to_string()).unwrap_or_default());
}

/// The countdown: seconds left on the access token.
fn tick(tm: &TokenManager) {
    let text = match tm.expires_at() {
        Some(at) => format!("{} s", ((at - js_sys::Date::now()) / 1000.0).ceil().max(0.0)),
        None => "–".into(),
    };
    set_text("countdown", &text);
}

/// The password grant at the auth server; the token response's JSON text.
async fn password_grant(origin: &str, user: &str, password: &str, ttl: &str) -> Result<String, String> {
    let enc = |s: &str| String::from(js_sys::encode_uri_component(s));
    let body = format!("grant_type=password&client_id=tessera-demo&username={}&password={}&ttl={}", enc(user), enc(password), enc(ttl));
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    let req = Request::new_with_str_and_init(&format!("{origin}/oauth/token"), &init).map_err(|_| "bad request".to_string())?;
    req.headers().set("Content-Type", "application/x-www-form-urlencoded").map_err(|_| "bad header".to_string())?;
    let window = web_sys::window().ok_or("no window")?;
    let resp: Response = JsFuture::from(window.fetch_with_request(&req)).await.map_err(|_| "network error".to_string())?.unchecked_into();
    let text = JsFuture::from(resp.text().map_err(|_| "no body")?).await.ok().and_then(|t| t.as_string()).unwrap_or_default();
    if resp.ok() {
        Ok(text)
    } else {
        Err(format!("HTTP {}: {text}", resp.status()))
    }
}

fn on(id: &str, event: &str, f: impl FnMut(web_sys::Event) + 'static) {
    let f = Closure::<dyn FnMut(web_sys::Event)>::new(f);
    element(id).add_event_listener_with_callback(event, f.as_ref().unchecked_ref()).expect_throw("listener");
    f.forget(); // the page's lifetime
}

/// Starts the app.
#[wasm_bindgen(start)]
pub fn start() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let origin = window.location().origin()?;
    let tm = TokenManager::builder()
        .storage_key("example-signin")
        .client_id("tessera-demo")
        .token_endpoint(format!("{origin}/oauth/token"))
        .revocation_endpoint(format!("{origin}/oauth/revoke"))
        .refresh_margin(std::time::Duration::from_secs(4))
        .build()
        .map_err(|e| JsValue::from_str(&e.to_string()))?;

    let view = tm.clone();
    tm.on(move |e| {
        match e {
            Event::Tokens { expires_at, .. } => {
                let left = expires_at.map(|at| ((at - js_sys::Date::now()) / 1000.0).round());
                log(&format!("tokens: expire in {} s", left.map_or("?".into(), |s| s.to_string())));
            }
            Event::RefreshError { error, .. } => log(&format!("refreshError: {}", error.code())),
            Event::Expired => log("expired"),
            Event::Logout(reason) => log(&format!("logout: {}", reason.as_str())),
            Event::StorageError => log("storageError: carrying on in memory"),
        }
        render(&view);
        tick(&view);
    })
    .forget();

    let t = tm.clone();
    spawn_local(async move {
        t.ready().await;
        if t.access_token().is_some() {
            log(&format!("restored from {}", t.storage()));
        }
        render(&t);
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-ready", "true");
        }
    });

    let (t, o) = (tm.clone(), origin.clone());
    on("signin", "submit", move |e| {
        e.prevent_default();
        let (t, o) = (t.clone(), o.clone());
        spawn_local(async move {
            set_text("signin-error", "");
            match password_grant(&o, &field("username"), &field("password"), &field("ttl")).await {
                Ok(body) => {
                    if let Err(e) = t.set_tokens_json(&body) {
                        set_text("signin-error", &e.to_string());
                    }
                }
                Err(e) => set_text("signin-error", &e),
            }
        });
    });

    let (t, o) = (tm.clone(), origin);
    on("call-api", "click", move |_| {
        let call = t.fetch_with_str(&format!("{o}/api/me"));
        spawn_local(async move {
            let out = match call.await {
                Ok(resp) => {
                    let body = match resp.text() {
                        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    format!("HTTP {} {body}", resp.status())
                }
                Err(e) => e.to_string(),
            };
            set_text("api-result", &out);
        });
    });

    let t = tm.clone();
    on("signout", "click", move |_| spawn_local(t.logout()));

    let t = tm;
    let every = Closure::<dyn FnMut()>::new(move || tick(&t));
    window.set_interval_with_callback_and_timeout_and_arguments_0(every.as_ref().unchecked_ref(), 250)?;
    every.forget();
    Ok(())
}
