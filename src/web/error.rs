//! How the core's [`Error`] crosses into JS: an `Error` whose message starts
//! with "Tessera:", with `code`, and `fatal` and `retryInSeconds` where they
//! apply.

use wasm_bindgen::JsValue;

pub use crate::core::error::Error;

/// The JS `Error` for `e`.
pub fn to_js(e: &Error) -> JsValue {
    let v: JsValue = js_sys::Error::new(&e.message()).into();
    let set = |k: &str, val: JsValue| {
        let _ = js_sys::Reflect::set(&v, &k.into(), &val);
    };
    set("code", e.code().into());
    if let Some(f) = e.fatal() {
        set("fatal", f.into());
    }
    if let Some(s) = e.retry_in_seconds() {
        set("retryInSeconds", s.into());
    }
    v
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        to_js(&e)
    }
}
