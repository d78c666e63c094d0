//! The manager's events, their listeners, and the detail objects JS
//! listeners receive.

#[cfg(feature = "rust")]
use std::rc::Rc;

#[cfg(feature = "js")]
use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;

#[cfg(feature = "js")]
use super::{error, js};
use crate::core::session::Event;

/// The events a manager emits, by name; see the README's events table.
#[cfg(feature = "js")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Tokens were set, refreshed, or adopted from another tab.
    Tokens,
    /// A refresh failed (`fatal` says whether the session ended).
    RefreshError,
    /// The session is over: tokens can no longer be renewed.
    Expired,
    /// Logged out, here or in another tab, or this tab is a copy.
    Logout,
    /// Storage failed; the manager carries on in memory.
    StorageError,
}

#[cfg(feature = "js")]
const NAMES: [(&str, Kind); 5] = [
    ("tokens", Kind::Tokens),
    ("refreshError", Kind::RefreshError),
    ("expired", Kind::Expired),
    ("logout", Kind::Logout),
    ("storageError", Kind::StorageError),
];

#[cfg(feature = "js")]
impl Kind {
    /// The event named `s`, if there is one.
    pub fn parse(s: &str) -> Option<Kind> {
        NAMES.iter().find(|(n, _)| *n == s).map(|(_, e)| *e)
    }

    /// Which event this is.
    pub fn of(e: &Event) -> Kind {
        match e {
            Event::Tokens { .. } => Kind::Tokens,
            Event::RefreshError { .. } => Kind::RefreshError,
            Event::Expired => Kind::Expired,
            Event::Logout(_) => Kind::Logout,
            Event::StorageError => Kind::StorageError,
        }
    }
}

/// A listener, from either front door.
///
/// An enum rather than one boxed closure type for both: measured, a shared
/// `Rc<dyn ...>` cost the JS package 0.4 KB gzipped; the Rust variant is
/// not in the npm build at all (the `rust` feature).
#[derive(Clone)]
pub enum Callback {
    /// `tm.on(name, f)`: `f`, for one event, with a detail object.
    #[cfg(feature = "js")]
    Js(Kind, Function),
    /// The Rust API's `on(f)`: every event, typed.
    #[cfg(feature = "rust")]
    Rust(Rc<dyn Fn(&Event)>),
}

/// Registered listeners.
#[derive(Default)]
pub struct Listeners {
    next_id: u32,
    list: Vec<(u32, Callback)>,
}

impl Listeners {
    /// Adds a listener; the id removes it.
    pub fn add(&mut self, c: Callback) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.list.push((self.next_id, c));
        self.next_id
    }

    /// Removes the listener with `id`, if still there.
    pub fn remove(&mut self, id: u32) {
        self.list.retain(|(i, _)| *i != id);
    }

    /// Drops every listener (dispose).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// The listeners for `e`, copied so they run with no borrow held: a
    /// listener may call back into the manager.
    pub fn for_event(&self, e: &Event) -> Vec<Callback> {
        let _ = e;
        self.list
            .iter()
            .filter(|(_, c)| match c {
                #[cfg(feature = "js")]
                Callback::Js(k, _) => *k == Kind::of(e),
                #[cfg(feature = "rust")]
                Callback::Rust(_) => true,
            })
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// What a JS listener receives. `storage` is the failed storage's name and
/// `cause` what it threw, for `storageError`.
#[cfg(feature = "js")]
pub fn detail(e: &Event, storage: &str, cause: &JsValue) -> JsValue {
    match e {
        Event::Tokens { access_token, expires_at } => js::object(&[
            ("accessToken", access_token.as_str().into()),
            ("expiresAt", expires_at.map_or(JsValue::UNDEFINED, JsValue::from)),
        ]),
        Event::RefreshError { error: err, retry_in } => {
            let mut pairs = vec![("error", error::to_js(err)), ("fatal", err.fatal().unwrap_or(false).into())];
            if let Some(r) = retry_in {
                pairs.push(("retryInSeconds", (r / 1000.0).ceil().into()));
            }
            js::object(&pairs)
        }
        Event::Expired => js::object(&[]),
        Event::Logout(reason) => js::object(&[("reason", reason.as_str().into())]),
        Event::StorageError => js::object(&[("error", cause.clone()), ("storage", storage.into()), ("fallback", "memory".into())]),
    }
}

/// Calls each listener; a JS one that throws does not stop the others, and
/// its error still surfaces (as an unhandled rejection) instead of
/// vanishing.
pub fn call_all(listeners: Vec<Callback>, e: &Event, storage: &str, cause: &JsValue) {
    let _ = (storage, cause);
    #[cfg(feature = "js")]
    let mut js_detail = None;
    for c in listeners {
        match c {
            #[cfg(feature = "js")]
            Callback::Js(_, f) => {
                let d = js_detail.get_or_insert_with(|| detail(e, storage, cause));
                if let Err(err) = f.call1(&JsValue::UNDEFINED, d) {
                    let _ = Promise::reject(&err);
                }
            }
            #[cfg(feature = "rust")]
            Callback::Rust(f) => f(e),
        }
    }
}
