//! Requests: the transport (the host's `fetch` or `options.fetch`), the
//! token endpoint POST with a timeout, and `tm.fetch` with Bearer attached
//! only where it may go.
//!
//! Responses are read by duck typing (`status`, `headers.get`, `text()`), so a
//! mini-program's `wx.request` wrapper only has to look like fetch.

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::error::Error;
use super::js;
use super::manager::{self, Shared};
use super::options::Options;
use crate::core::origin;
use crate::core::refresh::{Failure, Transient};

/// A fetch-shaped function and the `this` to call it with.
pub struct Transport {
    f: Function,
    this: JsValue,
}

/// `options.fetch`, else the global `fetch`, looked up at call time so a
/// polyfill installed after construction is used.
pub fn transport(opts: &Options) -> Result<Transport, Error> {
    if let Some(f) = &opts.fetch {
        return Ok(Transport { f: f.clone(), this: JsValue::UNDEFINED });
    }
    let g: JsValue = js::global().into();
    match js::method(&g, "fetch") {
        Some(f) => Ok(Transport { f, this: g }),
        None => Err(Error::Options("this host has no global fetch: pass options.fetch (see the README for mini-program adapters)".into())),
    }
}

impl Transport {
    /// Calls the transport; a synchronous throw becomes a rejection.
    async fn send(&self, input: &JsValue, init: &JsValue) -> Result<JsValue, JsValue> {
        let p = self.f.call2(&self.this, input, init)?;
        JsFuture::from(Promise::resolve(&p)).await
    }
}

fn status(resp: &JsValue) -> u16 {
    js::get(resp, "status").as_f64().map_or(0, |s| s as u16)
}

fn header(resp: &JsValue, name: &str) -> Option<String> {
    let h = js::get(resp, "headers");
    js::method(&h, "get")?.call1(&h, &JsValue::from_str(name)).ok()?.as_string()
}

/// What the token endpoint said.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub date: Option<String>,
}

/// POSTs `body` to `url`, giving up after `timeout` ms. Network failures and
/// timeouts are transient refresh failures.
pub async fn post(tr: &Transport, url: &str, content_type: &str, body: &str, timeout: f64) -> Result<Answer, Failure> {
    let net = |cause| Failure::Transient { cause, retry_after: None };
    let headers = js::object(&[("Content-Type", content_type.into()), ("Accept", "application/json".into())]);
    let mut init = vec![("method", JsValue::from_str("POST")), ("headers", headers), ("body", body.into())];
    let controller = web_sys::AbortController::new().ok();
    if let Some(c) = &controller {
        init.push(("signal", c.signal().into()));
    }
    let sent = match tr.f.call2(&tr.this, &url.into(), &js::object(&init)) {
        Ok(p) => Promise::resolve(&p),
        Err(_) => return Err(net(Transient::Network)),
    };
    // Race the request against a timer: works even for transports that
    // ignore the abort signal.
    let marker: JsValue = Object::new().into();
    let mut handle = JsValue::UNDEFINED;
    let timer = Promise::new(&mut |_, reject| {
        let fire: Function = reject.bind1(&JsValue::UNDEFINED, &marker).unchecked_into();
        handle = js::set_timeout(&fire, timeout).unwrap_or(JsValue::UNDEFINED);
    });
    let raced = JsFuture::from(Promise::race(&Array::of2(&sent, &timer))).await;
    js::clear_timeout(&handle);
    let resp = match raced {
        Ok(r) => r,
        Err(e) if e == marker => {
            if let Some(c) = controller {
                c.abort();
            }
            return Err(net(Transient::Timeout));
        }
        Err(_) => return Err(net(Transient::Network)),
    };
    let text = match js::method(&resp, "text").map(|t| t.call0(&resp)) {
        Some(Ok(p)) => JsFuture::from(Promise::resolve(&p)).await.ok().and_then(|v| v.as_string()),
        _ => None,
    };
    Ok(Answer {
        status: status(&resp),
        body: text.unwrap_or_default(),
        retry_after: header(&resp, "retry-after"),
        date: header(&resp, "date"),
    })
}

/// One outgoing request, kept in a form that can be sent again (401 replay).
enum Outgoing {
    /// Hosts with the Fetch API: a `Request`, which normalises string, URL
    /// and Request inputs alike and can be cloned with its body.
    Req { ctor: Function, req: web_sys::Request },
    /// Hosts without `Request` (mini-programs): an absolute URL and init object.
    Plain { url: String, init: JsValue },
}

impl Outgoing {
    fn new(input: &JsValue, init: &JsValue) -> Result<Outgoing, JsValue> {
        let g: JsValue = js::global().into();
        if let Ok(ctor) = js::get(&g, "Request").dyn_into::<Function>() {
            let req = Reflect::construct(&ctor, &Array::of2(input, init))?.unchecked_into();
            return Ok(Outgoing::Req { ctor, req });
        }
        let url = input.as_string().or_else(|| js::get(input, "href").as_string());
        match url {
            Some(url) => Ok(Outgoing::Plain { url, init: init.clone() }),
            None => Err(js_sys::TypeError::new("Tessera: fetch input must be a URL string here").into()),
        }
    }

    fn url(&self) -> String {
        match self {
            Outgoing::Req { req, .. } => req.url(),
            Outgoing::Plain { url, .. } => url.clone(),
        }
    }

    /// Whether the caller set Authorization already (never replaced).
    fn has_authorization(&self) -> bool {
        match self {
            Outgoing::Req { req, .. } => req.headers().has("authorization").unwrap_or(true),
            Outgoing::Plain { init, .. } => {
                let h = js::get(init, "headers");
                h.is_object()
                    && Object::keys(h.unchecked_ref::<Object>())
                        .iter()
                        .any(|k| k.as_string().is_some_and(|k| k.eq_ignore_ascii_case("authorization")))
            }
        }
    }

    /// A copy to replay after a 401. A body is teed before the first send; a
    /// request without one is reused as is (cloning costs ~20 µs a request).
    fn spare(&self) -> Option<Outgoing> {
        match self {
            Outgoing::Req { ctor, req } if js::get(req, "body").is_null() => {
                Some(Outgoing::Req { ctor: ctor.clone(), req: AsRef::<JsValue>::as_ref(req).clone().unchecked_into() })
            }
            Outgoing::Req { ctor, req } => req.clone().ok().map(|r| Outgoing::Req { ctor: ctor.clone(), req: r }),
            Outgoing::Plain { url, init } => Some(Outgoing::Plain { url: url.clone(), init: init.clone() }),
        }
    }

    /// `(input, init)` for the transport, with `Authorization: Bearer` when a token is given.
    fn parts(&self, token: Option<&str>) -> Result<(JsValue, JsValue), JsValue> {
        let Some(token) = token else {
            return Ok(match self {
                Outgoing::Req { req, .. } => (AsRef::<JsValue>::as_ref(req).clone(), JsValue::UNDEFINED),
                Outgoing::Plain { url, init } => (url.into(), init.clone()),
            });
        };
        let value = ["Bearer ", token].concat();
        match self {
            Outgoing::Req { ctor, req } => {
                let headers = web_sys::Headers::new_with_headers(&req.headers())?;
                headers.set("Authorization", &value)?;
                let init = js::object(&[("headers", headers.into())]);
                Ok((Reflect::construct(ctor, &Array::of2(req, &init))?, JsValue::UNDEFINED))
            }
            Outgoing::Plain { url, init } => {
                let copy = Object::assign(&Object::new(), init.unchecked_ref());
                let headers = Object::new();
                let given = js::get(init, "headers");
                if given.is_object() {
                    Object::assign(&headers, given.unchecked_ref());
                }
                Reflect::set(&headers, &"Authorization".into(), &value.into())?;
                Reflect::set(&copy, &"headers".into(), &headers)?;
                Ok((url.into(), copy.into()))
            }
        }
    }
}

/// Whether a request to `url` may carry this manager's token.
fn allowed(shared: &Shared, url: &str) -> bool {
    let Some(o) = origin::of(url) else { return false };
    origin::may_carry_token(&o) && shared.borrow().opts.allowed_origins.contains(&o)
}

/// `tm.fetch(input, init)`: fetch with Bearer attached for allowed origins,
/// refreshed first when due, replayed once after a 401.
pub async fn fetch(shared: Shared, input: JsValue, init: JsValue) -> Result<JsValue, JsValue> {
    let tr = transport(&shared.borrow().opts)?;
    let out = Outgoing::new(&input, &init)?;
    let token =
        if allowed(&shared, &out.url()) && !out.has_authorization() { manager::token_for_request(&shared, false).await? } else { None };
    let Some(token) = token else {
        let (i, o) = out.parts(None)?;
        return tr.send(&i, &o).await;
    };
    let spare = if shared.borrow().opts.retry_on_401 { out.spare() } else { None };
    let (i, o) = out.parts(Some(&token))?;
    let first = tr.send(&i, &o).await?;
    let Some(spare) = spare.filter(|_| status(&first) == 401) else { return Ok(first) };
    // One refresh for everyone who got a 401 with this token: if another
    // caller already replaced it, just use the new one.
    let current = shared.borrow().tokens.as_ref().map(|t| t.access_token.clone());
    let fresh = if current.as_deref() == Some(token.as_str()) {
        match manager::refresh_shared(&shared).await {
            Ok(()) => shared.borrow().tokens.as_ref().map(|t| t.access_token.clone()),
            Err(_) => None,
        }
    } else {
        current
    };
    match fresh {
        Some(t) if t != token => {
            let (i, o) = spare.parts(Some(&t))?;
            tr.send(&i, &o).await
        }
        _ => Ok(first),
    }
}
