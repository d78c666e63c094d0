//! Requests, knowing nothing of the session: the transport (the host's
//! `fetch` or `options.fetch`), the token endpoint POST with a timeout, and
//! the outgoing request of `tm.fetch` in a form that can carry a token and be
//! sent again. The driver decides whether a token goes on it.
//!
//! Responses are read by duck typing (`status`, `headers.get`, `text()`), so a
//! mini-program's `wx.request` wrapper only has to look like fetch.

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::js;
use crate::core::origin;
use crate::core::session::Reply;

/// A fetch-shaped function and the `this` to call it with.
#[derive(Clone)]
pub struct Transport {
    f: Function,
    this: JsValue,
}

impl Transport {
    /// `given` (options.fetch), else the global `fetch`, looked up at call
    /// time so a polyfill installed after construction is used.
    pub fn new(given: Option<&Function>) -> Option<Transport> {
        if let Some(f) = given {
            return Some(Transport { f: f.clone(), this: JsValue::UNDEFINED });
        }
        let g: JsValue = js::global().into();
        js::method(&g, "fetch").map(|f| Transport { f, this: g })
    }

    /// Calls the transport: its own Promise (a synchronous throw becomes a
    /// rejection).
    pub fn call(&self, input: &JsValue, init: &JsValue) -> Promise {
        match self.f.call2(&self.this, input, init) {
            Ok(p) => Promise::resolve(&p),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Calls the transport and waits for its answer.
    pub async fn send(&self, input: &JsValue, init: &JsValue) -> Result<JsValue, JsValue> {
        JsFuture::from(self.call(input, init)).await
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `Headers`, for `set` with a value that is already a JS string (the
    /// cached Authorization value: no copy of the token per request).
    type HeaderSet;
    #[wasm_bindgen(method, catch, js_name = set)]
    fn set_value(this: &HeaderSet, name: &str, value: &JsValue) -> Result<(), JsValue>;
}

/// The HTTP status of a Response or a Response-like object (0 if none).
pub fn status(resp: &JsValue) -> u16 {
    js::get(resp, "status").as_f64().map_or(0, |s| s as u16)
}

/// A header of a Response or Response-like object.
pub fn header(resp: &JsValue, name: &str) -> Option<String> {
    let h = js::get(resp, "headers");
    js::method(&h, "get")?.call1(&h, &JsValue::from_str(name)).ok()?.as_string()
}

/// Races `p` against a timer of `timeout` ms: `Err(None)` on timeout, which
/// works even with transports that ignore the abort signal.
pub async fn within(p: Promise, timeout: f64) -> Result<JsValue, Option<JsValue>> {
    let marker: JsValue = Object::new().into();
    let mut handle = JsValue::UNDEFINED;
    let timer = Promise::new(&mut |_, reject| {
        let fire: Function = reject.bind1(&JsValue::UNDEFINED, &marker).unchecked_into();
        handle = js::set_timeout(&fire, timeout).unwrap_or(JsValue::UNDEFINED);
    });
    let raced = JsFuture::from(Promise::race(&Array::of2(&p, &timer))).await;
    js::clear_timeout(&handle);
    raced.map_err(|e| (e != marker).then_some(e))
}

/// POSTs `body` to a token or revocation endpoint, waiting up to `timeout`
/// ms. Redirects are refused (a 307 would send the refresh token wherever it
/// points), no cookies go along, nothing is cached. `extra` headers are added
/// (a DPoP proof). Also returns the answer's `DPoP-Nonce`, if any, and, on a
/// timeout, the request still under way: it may have reached the server,
/// and its answer still counts (see [`late`]).
pub async fn post(
    tr: &Transport,
    url: &str,
    content_type: &str,
    body: &str,
    timeout: f64,
    extra: &[(&str, JsValue)],
) -> (Reply, Option<String>, Option<Promise>) {
    let mut headers = vec![("Content-Type", content_type.into()), ("Accept", "application/json".into())];
    headers.extend(extra.iter().cloned());
    let init = [
        ("method", JsValue::from_str("POST")),
        ("headers", js::object(&headers)),
        ("body", body.into()),
        ("redirect", "error".into()),
        ("credentials", "omit".into()),
        ("cache", "no-store".into()),
    ];
    let sent_at = js::now();
    let call = tr.call(&url.into(), &js::object(&init));
    match within(call.clone(), timeout).await {
        Ok(r) => {
            let (reply, nonce) = answer(&r, sent_at).await;
            (reply, nonce, None)
        }
        Err(None) => (Reply::Timeout, None, Some(call)),
        Err(Some(_)) => (Reply::Network, None, None),
    }
}

/// The answer of a request [`post`] gave up on, when it comes: `None` if it
/// never does, or fails.
pub async fn late(call: Promise) -> Option<Reply> {
    let r = JsFuture::from(call).await.ok()?;
    let (mut reply, _) = answer(&r, js::now()).await;
    // How long it took is unknown: its `Date` tells nothing of the clocks.
    if let Reply::Http { date, .. } = &mut reply {
        *date = None;
    }
    Some(reply)
}

/// Reads a token endpoint's answer.
async fn answer(resp: &JsValue, sent_at: f64) -> (Reply, Option<String>) {
    let text = js::call(resp, "text", &[]).await.ok().and_then(|v| v.as_string());
    let date = header(resp, "date").map(|d| js_sys::Date::parse(&d)).filter(|d| d.is_finite());
    let age = header(resp, "age").and_then(|a| crate::core::json::parse_number(&a)).filter(|a| *a >= 0.0).map(|a| a * 1000.0);
    let reply =
        Reply::Http { status: status(resp), body: text.unwrap_or_default(), retry_after: header(resp, "retry-after"), date, age, sent_at };
    (reply, header(resp, "dpop-nonce"))
}

/// One outgoing request, kept in a form that can be sent again (401 replay).
pub enum Outgoing {
    /// Hosts with the Fetch API: a `Request`, which normalises string, URL
    /// and Request inputs alike and can be cloned with its body.
    Req {
        /// The `Request` constructor.
        ctor: Function,
        /// The request.
        req: web_sys::Request,
    },
    /// Hosts without `Request` (mini-programs): the URL string exactly as
    /// given (the transport parses it in its own way), and the init object
    /// with its headers read into name/value pairs.
    Plain {
        /// The URL as given.
        url: String,
        /// The init object.
        init: JsValue,
        /// Its headers, whatever shape they came in.
        headers: Vec<(String, String)>,
    },
}

/// Whether `url` may carry a token to one of `origins`. A canonical URL (a
/// `Request`'s: what is checked is what is sent) is checked by its origin. A
/// raw string goes to the transport as is, so it must spell an allowed origin
/// exactly (F3).
pub fn allowed(origins: &[String], url: &str, raw: bool) -> bool {
    if raw {
        origins.iter().any(|o| origin::may_carry_token(o) && origin::raw_url_is_on(url, o))
    } else {
        origin::of(url).is_some_and(|o| origin::may_carry_token(&o) && origins.contains(&o))
    }
}

/// Reads `init.headers` given as an array of pairs, anything iterable over
/// pairs (`Headers` and its polyfills, a `Map`) or a plain object (F11).
fn header_pairs(h: &JsValue) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !h.is_object() {
        return out;
    }
    let pair = |p: JsValue| {
        let p = Array::from(&p);
        Some((p.get(0).as_string()?, p.get(1).as_string()?))
    };
    if let Ok(Some(items)) = js_sys::try_iter(h) {
        out.extend(items.filter_map(Result::ok).filter_map(pair));
    } else if let Some(o) = h.dyn_ref::<Object>() {
        out.extend(Object::entries(o).iter().filter_map(pair));
    }
    out
}

impl Outgoing {
    /// Reads `tm.fetch`'s arguments.
    pub fn new(input: &JsValue, init: &JsValue) -> Result<Outgoing, JsValue> {
        let g: JsValue = js::global().into();
        if let Ok(ctor) = js::get(&g, "Request").dyn_into::<Function>() {
            let req = Reflect::construct(&ctor, &Array::of2(input, init))?.unchecked_into();
            return Ok(Outgoing::Req { ctor, req });
        }
        let url = input.as_string().or_else(|| js::get(input, "href").as_string());
        match url {
            Some(url) => Ok(Outgoing::Plain { url, headers: header_pairs(&js::get(init, "headers")), init: init.clone() }),
            None => Err(js_sys::TypeError::new("Tessera: fetch input must be a URL string here").into()),
        }
    }

    /// Whether the request goes to one of `origins`.
    pub fn is_for(&self, origins: &[String]) -> bool {
        allowed(origins, &self.url(), self.is_raw())
    }

    /// Whether the URL goes to the transport as the caller spelled it (no
    /// `Request` to make it canonical).
    pub fn is_raw(&self) -> bool {
        matches!(self, Outgoing::Plain { .. })
    }

    /// Whether the caller set Authorization already (never replaced).
    pub fn has_authorization(&self) -> bool {
        self.has_header("authorization")
    }

    /// Whether the caller set header `name` (any case).
    pub fn has_header(&self, name: &str) -> bool {
        match self {
            Outgoing::Req { req, .. } => req.headers().has(name).unwrap_or(true),
            Outgoing::Plain { headers, .. } => headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)),
        }
    }

    /// The request method, upper case.
    pub fn method(&self) -> String {
        match self {
            Outgoing::Req { req, .. } => req.method(),
            Outgoing::Plain { init, .. } => js::get(init, "method").as_string().unwrap_or_else(|| "GET".into()).to_ascii_uppercase(),
        }
    }

    /// A copy to replay after a 401. A body is teed before the first send; a
    /// request without one is reused as is (cloning costs ~20 µs a request).
    pub fn spare(&self) -> Option<Outgoing> {
        match self {
            Outgoing::Req { ctor, req } if js::get(req, "body").is_null() => {
                Some(Outgoing::Req { ctor: ctor.clone(), req: AsRef::<JsValue>::as_ref(req).clone().unchecked_into() })
            }
            Outgoing::Req { ctor, req } => req.clone().ok().map(|r| Outgoing::Req { ctor: ctor.clone(), req: r }),
            Outgoing::Plain { url, init, headers } => {
                Some(Outgoing::Plain { url: url.clone(), init: init.clone(), headers: headers.clone() })
            }
        }
    }

    /// The URL the request goes to, as the transport will see it.
    pub fn url(&self) -> String {
        match self {
            Outgoing::Req { req, .. } => req.url(),
            Outgoing::Plain { url, .. } => url.clone(),
        }
    }

    /// `(input, init)` for the transport, with these extra headers and the
    /// `Authorization` value (a JS string), if any.
    pub fn parts(&self, add: &[(&str, &str)], auth: Option<&JsValue>) -> Result<(JsValue, JsValue), JsValue> {
        match self {
            Outgoing::Req { req, .. } => {
                // Our own Request (made from the caller's input), so its
                // headers are ours to set: no second Request is built.
                if !add.is_empty() || auth.is_some() {
                    let headers = req.headers();
                    for (k, v) in add {
                        headers.set(k, v)?;
                    }
                    if let Some(a) = auth {
                        headers.unchecked_ref::<HeaderSet>().set_value("Authorization", a)?;
                    }
                }
                Ok((AsRef::<JsValue>::as_ref(req).clone(), JsValue::UNDEFINED))
            }
            Outgoing::Plain { url, init, headers } => {
                let copy = if init.is_object() { Object::assign(&Object::new(), init.unchecked_ref()) } else { Object::new() };
                let h = Object::new();
                for (k, v) in headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(add.iter().copied()) {
                    Reflect::set(&h, &k.into(), &v.into())?;
                }
                if let Some(a) = auth {
                    Reflect::set(&h, &"Authorization".into(), a)?;
                }
                Reflect::set(&copy, &"headers".into(), &h)?;
                Ok((url.into(), copy.into()))
            }
        }
    }
}
