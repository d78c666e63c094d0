//! Tabs sharing one localStorage record: change notices (the `storage` event
//! and a BroadcastChannel) and one-refresh-at-a-time (a Web Lock, or a lease
//! in storage where Web Locks are missing).

use js_sys::{Array, Function, Promise};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::js;
use crate::core::lease::{self, Decision};

/// A BroadcastChannel that tells other tabs "the record changed"; closed on drop.
/// It carries no tokens: receivers re-read storage.
pub struct Channel {
    ch: web_sys::BroadcastChannel,
    _on_message: Closure<dyn FnMut(JsValue)>,
}

impl Channel {
    /// Opens the channel for `key`, calling `f` on every notice from another
    /// manager; `None` where BroadcastChannel does not exist.
    pub fn open(key: &str, f: impl FnMut(JsValue) + 'static) -> Option<Channel> {
        js::method(&js::global(), "BroadcastChannel")?;
        let ch = web_sys::BroadcastChannel::new(&["tessera:", key].concat()).ok()?;
        let on_message = Closure::<dyn FnMut(JsValue)>::new(f);
        ch.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(Channel { ch, _on_message: on_message })
    }

    /// Tells the other managers to re-read storage.
    pub fn notify(&self) {
        let _ = self.ch.post_message(&JsValue::from_str("changed"));
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.ch.set_onmessage(None);
        self.ch.close();
    }
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        let _ = js::set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

/// The right to refresh, held until dropped.
pub enum TabLock {
    /// A Web Lock; resolving the function releases it.
    Web(Function),
    /// A lease in storage, removed on drop if still ours.
    Lease { storage: web_sys::Storage, key: String, me: String },
    /// No coordination was possible (the lock request failed): proceed alone.
    None,
}

impl Drop for TabLock {
    fn drop(&mut self) {
        match self {
            TabLock::Web(release) => {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
            TabLock::Lease { storage, key, me } => {
                let held = storage.get_item(key).ok().flatten();
                if lease::decode(held.as_deref()).is_some_and(|(owner, _)| owner == *me) {
                    let _ = storage.remove_item(key);
                }
            }
            TabLock::None => {}
        }
    }
}

/// Waits for the cross-tab refresh lock for `key`. `hold` is how long a
/// refresh may take (its timeout); a lease older than that is taken over.
/// The flag says whether another tab held it first: then that tab has
/// probably just refreshed, and its write may still be on its way here.
pub async fn lock(storage: &web_sys::Storage, key: &str, hold: f64) -> (TabLock, bool) {
    let navigator = js::get(&js::global(), "navigator");
    let locks = js::get(&navigator, "locks");
    let Some(request) = js::method(&locks, "request") else {
        return lease_lock(storage, &[key, ".lock"].concat(), hold).await;
    };
    let name = ["tessera:", key].concat();
    match web_lock(&locks, &request, &name, true).await {
        Some(TabLock::None) => (web_lock(&locks, &request, &name, false).await.unwrap_or(TabLock::None), true),
        Some(lock) => (lock, false),
        None => (TabLock::None, false),
    }
}

/// Requests the Web Lock. With `if_available`, `Some(TabLock::None)` means
/// another tab holds it; `None` means the request itself failed.
async fn web_lock(locks: &JsValue, request: &Function, name: &str, if_available: bool) -> Option<TabLock> {
    // The lock is held while the callback's Promise is pending; we keep that
    // Promise's resolve function and call it to release.
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let mut granted_fn = None;
    let granted = Promise::new(&mut |resolve, _| granted_fn = Some(resolve));
    let (release, granted_fn) = (release?, granted_fn?);
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null();
        let _ = granted_fn.call1(&JsValue::UNDEFINED, &JsValue::from_bool(got));
        if got {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let options = js::object(&[("ifAvailable", JsValue::from_bool(if_available))]);
    let requested = Promise::resolve(&request.call3(locks, &JsValue::from_str(name), &options, &callback).ok()?);
    // The request's own Promise settles first only if the request failed.
    match JsFuture::from(Promise::race(&Array::of2(&granted, &requested))).await {
        Ok(got) if got.as_bool() == Some(true) => Some(TabLock::Web(release)),
        Ok(_) => Some(TabLock::None),
        Err(_) => None,
    }
}

/// Polls `changed` for up to `ms`: after waiting for another tab's lock,
/// that tab's storage write can reach this process a moment after the lock.
pub async fn wait_for(ms: f64, mut changed: impl FnMut() -> bool) {
    let end = js::now() + ms;
    while !changed() && js::now() < end {
        sleep(20.0).await;
    }
}

async fn lease_lock(storage: &web_sys::Storage, key: &str, hold: f64) -> (TabLock, bool) {
    let mut me = String::from("tab-");
    crate::core::json::write_num(&mut me, (js_sys::Math::random() * 4_294_967_295.0).floor());
    let max_hold = hold + 5_000.0;
    let give_up = js::now() + max_hold + 5_000.0;
    let mut waited = false;
    loop {
        let now = js::now();
        if now > give_up {
            // A lease that never frees is a bug elsewhere; do not hang forever.
            return (TabLock::None, waited);
        }
        let stored = storage.get_item(key).ok().flatten();
        match lease::decide(stored.as_deref(), &me, now, max_hold) {
            Decision::Held => return (TabLock::Lease { storage: storage.clone(), key: key.into(), me }, waited),
            Decision::Take => {
                if storage.set_item(key, &lease::encode(&me, now + max_hold)).is_err() {
                    return (TabLock::None, waited);
                }
                // Another tab may have written at the same moment: the last
                // writer wins, and both see who that was after a pause.
                sleep(40.0).await;
            }
            Decision::Wait(until) => {
                waited = true;
                sleep((until - now).clamp(20.0, 150.0)).await;
            }
        }
    }
}
