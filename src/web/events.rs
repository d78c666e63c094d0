//! The manager's events and their listeners.

use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;

/// The events a manager emits; see the README's events table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Tokens were set, refreshed, or adopted from another tab.
    Tokens,
    /// A refresh failed (`fatal` says whether the session ended).
    RefreshError,
    /// The session is over: the token expired and cannot be renewed.
    Expired,
    /// Logged out, here or in another tab.
    Logout,
    /// Storage failed; the manager carries on in memory.
    StorageError,
}

const NAMES: [(&str, Event); 5] = [
    ("tokens", Event::Tokens),
    ("refreshError", Event::RefreshError),
    ("expired", Event::Expired),
    ("logout", Event::Logout),
    ("storageError", Event::StorageError),
];

impl Event {
    /// The event named `s`, if there is one.
    pub fn parse(s: &str) -> Option<Event> {
        NAMES.iter().find(|(n, _)| *n == s).map(|(_, e)| *e)
    }
}

/// Registered listeners.
#[derive(Default)]
pub struct Listeners {
    next_id: u32,
    list: Vec<(u32, Event, Function)>,
}

impl Listeners {
    /// Adds a listener; the id removes it.
    pub fn add(&mut self, event: Event, f: Function) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.list.push((self.next_id, event, f));
        self.next_id
    }

    /// Removes the listener with `id`, if still there.
    pub fn remove(&mut self, id: u32) {
        self.list.retain(|(i, _, _)| *i != id);
    }

    /// Drops every listener (dispose).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// The listeners for `event`, copied so they run with no borrow held:
    /// a listener may call back into the manager.
    pub fn for_event(&self, event: Event) -> Vec<Function> {
        self.list.iter().filter(|(_, e, _)| *e == event).map(|(_, _, f)| f.clone()).collect()
    }
}

/// Calls each listener; one that throws does not stop the others, and its
/// error still surfaces (as an unhandled rejection) instead of vanishing.
pub fn call_all(listeners: Vec<Function>, detail: &JsValue) {
    for f in listeners {
        if let Err(e) = f.call1(&JsValue::UNDEFINED, detail) {
            let _ = Promise::reject(&e);
        }
    }
}
