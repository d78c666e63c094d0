//! Small owned handles on JS resources (timers, event listeners) and helpers
//! for building JS values. Every handle releases its resource on `Drop`, so
//! disposing a manager is dropping its state.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    // The global timer functions, not `window.setTimeout`: mini-programs and
    // workers have no `window`.
    #[wasm_bindgen(js_name = setTimeout, catch)]
    pub fn set_timeout(handler: &Function, ms: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(handle: &JsValue);
    // `performance.now()`; throws (an `Err`) where there is no `performance`.
    #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
    fn performance_now() -> Result<f64, JsValue>;
    /// The global `performance` object.
    type Performance;
    // `performance.timeOrigin`, read on every call through one import: the
    // page's clock origin is the wall clock at page start, so a device whose
    // clock is off has it off too (and tests move it). Throws where there is
    // no `performance` (mini-programs).
    #[wasm_bindgen(catch, static_method_of = Performance, js_class = "performance", getter, js_name = timeOrigin)]
    fn time_origin() -> Result<f64, JsValue>;
}

/// Milliseconds since the epoch, never behind the device's wall clock and
/// never going back while the page lives: `performance.timeOrigin +
/// performance.now()` keeps counting when the wall clock is set back (an NTP
/// correction, a user), and the wall clock wins when the monotonic clock
/// paused (some platforms stop it while the machine sleeps). Durations
/// (back-off, timers) stay right either way, and a clock set back never
/// makes an expired token look valid (the session also never lets its time
/// go back). Hosts without `performance` (mini-programs) use the wall clock.
pub fn now() -> f64 {
    let wall = js_sys::Date::now();
    let origin = Performance::time_origin().unwrap_or(f64::NAN);
    match performance_now() {
        Ok(elapsed) if origin.is_finite() => wall.max(origin + elapsed),
        _ => wall,
    }
}

/// A random number in 0..1 (back-off jitter).
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// `n` random bytes from `crypto.getRandomValues`, or `Math.random` where a
/// host has no WebCrypto (some mini-program runtimes): session and device
/// ids are identifiers, not keys.
pub fn random_bytes(n: u32) -> Vec<u8> {
    let bytes = js_sys::Uint8Array::new_with_length(n);
    let crypto = get(&global(), "crypto");
    let filled = method(&crypto, "getRandomValues").is_some_and(|f| f.call1(&crypto, &bytes).is_ok());
    let mut out = bytes.to_vec();
    if !filled {
        for b in &mut out {
            *b = (random() * 256.0) as u8;
        }
    }
    out
}

/// A random identifier of 128 bits, base64url.
pub fn random_id() -> String {
    crate::core::jwt::base64url_encode(&random_bytes(16))
}

/// `globalThis`.
pub fn global() -> Object {
    js_sys::global()
}

/// `obj[name]`, `undefined` when it throws (a getter may).
pub fn get(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[name]` when it is a function.
pub fn method(obj: &JsValue, name: &str) -> Option<Function> {
    get(obj, name).dyn_into::<Function>().ok()
}

/// `obj[name](args...)`; what it threw as `Err`. One out-of-line copy of
/// the lookup and call for every caller.
#[inline(never)]
pub fn invoke(obj: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    method(obj, name).ok_or_else(|| JsValue::from_str(name))?.apply(obj, &args.iter().collect::<js_sys::Array>())
}

/// [`invoke`] as a future: what it returns, awaited (a Promise or not).
/// Not an `async fn`: callers await the `JsFuture` itself, with no state
/// machine of its own in between (measured).
pub fn call(obj: &JsValue, name: &str, args: &[JsValue]) -> wasm_bindgen_futures::JsFuture {
    wasm_bindgen_futures::JsFuture::from(match invoke(obj, name, args) {
        Ok(v) => js_sys::Promise::resolve(&v),
        Err(e) => js_sys::Promise::reject(&e),
    })
}

/// A plain object from name/value pairs.
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// A pending `setTimeout`; cleared when dropped.
#[must_use = "a Timeout is cleared when dropped"]
pub struct Timeout {
    handle: JsValue,
    _closure: Closure<dyn FnMut()>,
}

impl Timeout {
    /// Calls `f` after `ms` milliseconds; `None` if the host has no timers.
    pub fn new(ms: f64, f: impl FnMut() + 'static) -> Option<Timeout> {
        let closure = Closure::<dyn FnMut()>::new(f);
        let handle = set_timeout(closure.as_ref().unchecked_ref(), ms).ok()?;
        Some(Timeout { handle, _closure: closure })
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.handle);
    }
}

/// An event listener on a JS event target; removed when dropped.
#[must_use = "a Listener is removed when dropped"]
pub struct Listener {
    target: JsValue,
    kind: &'static str,
    closure: Closure<dyn FnMut(JsValue)>,
}

impl Listener {
    /// Listens for `kind` on `target`, if it is an event target at all.
    pub fn new(target: &JsValue, kind: &'static str, f: impl FnMut(JsValue) + 'static) -> Option<Listener> {
        let add = method(target, "addEventListener")?;
        let closure = Closure::<dyn FnMut(JsValue)>::new(f);
        add.call2(target, &JsValue::from_str(kind), closure.as_ref()).ok()?;
        Some(Listener { target: target.clone(), kind, closure })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(remove) = method(&self.target, "removeEventListener") {
            let _ = remove.call2(&self.target, &JsValue::from_str(self.kind), self.closure.as_ref());
        }
    }
}

/// Runs `f` after the current task, so listeners attached right after a
/// constructor returns still hear what it announces.
pub fn later(f: impl FnOnce() + 'static) {
    spawn(async move { f() });
}

/// A future that settles a Promise, boxed: every caller shares one
/// instantiation of wasm-bindgen-futures' executor glue instead of one per
/// future type (measured: several hundred bytes each).
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>;

/// `future_to_promise` through [`Task`].
pub fn promise(f: impl std::future::Future<Output = Result<JsValue, JsValue>> + 'static) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(Box::pin(f) as Task)
}

/// `spawn_local`, boxed likewise.
pub fn spawn(f: impl std::future::Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(Box::pin(f) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>);
}
