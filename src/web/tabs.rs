//! Managers sharing one record: change notices (the `storage` event and a
//! BroadcastChannel), one refresh at a time (a Web Lock, or a lease in
//! storage where Web Locks are missing), the marker that says a refresh
//! request is on the wire, and the identity of a tab (sessionStorage is
//! copied into duplicated tabs). Every JS resource here is released on drop.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::js;
use crate::core::lease::{self, Decision};
use crate::core::session::take_first;

/// A BroadcastChannel that tells other managers "the record changed"; closed
/// on drop. It carries no tokens: receivers re-read storage.
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

    /// A handle to post notices with, used with no borrow held.
    pub fn port(&self) -> web_sys::BroadcastChannel {
        self.ch.clone()
    }

    /// Stops hearing notices; posting still works (dispose()).
    pub fn mute(&mut self) {
        self.ch.set_onmessage(None);
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

/// A lock held until dropped.
pub enum TabLock {
    /// A Web Lock; calling the function releases it. The flag is set if
    /// another tab stole it (the request's Promise rejected).
    Web(Function, Rc<Cell<bool>>),
    /// A lease in storage, removed on drop if still ours.
    Lease {
        /// Where the lease is.
        storage: web_sys::Storage,
        /// Its key.
        key: String,
        /// Our id in it.
        me: String,
    },
    /// No coordination was possible (the lock request itself failed).
    None,
}

impl Drop for TabLock {
    fn drop(&mut self) {
        match self {
            TabLock::Web(release, _) => {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
            TabLock::Lease { storage, key, me } => unmark(storage, key, me),
            TabLock::None => {}
        }
    }
}

impl TabLock {
    /// Whether another tab stole the lock from us.
    pub fn stolen(&self) -> bool {
        matches!(self, TabLock::Web(_, s) if s.get())
    }
}

/// Aborts a pending lock request when dropped (the session gave it up).
pub struct Abandon(Option<web_sys::AbortController>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

/// What asking for a lock came to.
pub enum Got {
    /// Granted; `contended` when another holder had it first (its storage
    /// write may reach this process a moment after the lock does).
    Lock {
        /// The lock.
        lock: TabLock,
        /// Another tab held it first.
        contended: bool,
    },
    /// It did not come within the time given.
    TimedOut,
}

fn locks() -> Option<(JsValue, Function)> {
    let locks = js::get(&js::get(&js::global(), "navigator"), "locks");
    js::method(&locks, "request").map(|r| (locks, r))
}

/// Asks for the lock `name` (the lease `lease_key` in `storage` where Web
/// Locks are missing or fail). Waits up to `wait` ms, unless `steal`: then it
/// takes the lock from whoever holds it. `abandon` is filled with what
/// aborts the request if the session gives it up first.
pub async fn lock(
    storage: &web_sys::Storage,
    name: &str,
    lease_key: &str,
    me: &str,
    wait: f64,
    steal: bool,
    abandon: &Cell<Option<Abandon>>,
) -> Got {
    let Some((locks, request)) = locks() else {
        return lease_lock(storage, lease_key, me, wait, steal).await;
    };
    let mode = if steal { Mode::Steal } else { Mode::IfAvailable };
    match web_lock(&locks, &request, name, mode).await {
        Ok(Some(lock)) => return Got::Lock { lock, contended: steal },
        Ok(None) => {}
        Err(()) => return lease_lock(storage, lease_key, me, wait, steal).await,
    }
    // Who holds it now: a lock that changes hands while we wait is not
    // stuck, and the wait goes on (`navigator.locks.query()`).
    let mut before = holder(&locks, name).await;
    loop {
        let controller = web_sys::AbortController::new().ok();
        let signal = controller.as_ref().map(|c| c.signal());
        abandon.set(Some(Abandon(controller.clone())));
        let timer = js::Timeout::new(wait, move || {
            if let Some(c) = &controller {
                c.abort();
            }
        });
        let got = web_lock(&locks, &request, name, Mode::Wait(signal)).await;
        drop(timer);
        return match got {
            Ok(Some(lock)) => Got::Lock { lock, contended: true },
            Ok(None) => {
                let now = holder(&locks, name).await;
                if now != before {
                    before = now;
                    continue;
                }
                Got::TimedOut
            }
            Err(()) => lease_lock(storage, lease_key, me, wait, false).await,
        };
    }
}

/// The topmost window of this tab that this page may read (same origin):
/// every instance of the package in the tab (frames, several copies of the
/// package, micro-frontends) meets there. A duplicated tab has its own.
fn topmost() -> JsValue {
    let mut w: JsValue = js_sys::global().into();
    for _ in 0..16 {
        let p = js::get(&w, "parent");
        // A cross-origin parent throws on reading its storage.
        if p.is_undefined() || p == w || Reflect::get(&p, &JsValue::from_str("sessionStorage")).is_err() {
            break;
        }
        w = p;
    }
    w
}

/// Marks (or unmarks) the tab identity lock `name` as held in this tab,
/// where every instance of the package in the tab can see it.
fn mark_tab(name: &str, held: bool) {
    let top = topmost();
    let name = JsValue::from_str(name);
    let _ = if held {
        Reflect::set(&top, &name, &JsValue::TRUE)
    } else {
        Reflect::delete_property(top.unchecked_ref::<js_sys::Object>(), &name)
    };
}

/// The client (tab) holding the Web Lock `name`, if `query()` says.
async fn holder(locks: &JsValue, name: &str) -> Option<String> {
    let snapshot = js::call(locks, "query", &[]).await.ok()?;
    let held = Array::from(&js::get(&snapshot, "held"));
    let lock = held.iter().find(|l| js::get(l, "name").as_string().as_deref() == Some(name))?;
    js::get(&lock, "clientId").as_string()
}

enum Mode {
    IfAvailable,
    Wait(Option<web_sys::AbortSignal>),
    Steal,
}

/// Requests a Web Lock: `Ok(Some)` granted, `Ok(None)` not available
/// (`IfAvailable`) or aborted (`Wait`), `Err` when the request itself failed
/// (a sandboxed frame, an opaque origin).
async fn web_lock(locks: &JsValue, request: &Function, name: &str, mode: Mode) -> Result<Option<TabLock>, ()> {
    // The lock is held while the callback's Promise is pending; we keep that
    // Promise's resolve function and call it to release.
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let mut granted_fn = None;
    let granted = Promise::new(&mut |resolve, _| granted_fn = Some(resolve));
    let (Some(release), Some(granted_fn)) = (release, granted_fn) else { return Err(()) };
    let stolen = Rc::new(Cell::new(false));
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null();
        let _ = granted_fn.call1(&JsValue::UNDEFINED, &JsValue::from_bool(got));
        if got {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let signal = match &mode {
        Mode::Wait(s) => s.clone(),
        _ => None,
    };
    let options = match &mode {
        Mode::IfAvailable => js::object(&[("ifAvailable", JsValue::TRUE)]),
        Mode::Steal => js::object(&[("steal", JsValue::TRUE)]),
        Mode::Wait(Some(signal)) => js::object(&[("signal", signal.into())]),
        Mode::Wait(None) => js::object(&[]),
    };
    let requested = match request.call3(locks, &JsValue::from_str(name), &options, &callback) {
        Ok(p) => Promise::resolve(&p),
        Err(_) => return Err(()),
    };
    // The request's own Promise settles first only if the request failed
    // or was aborted.
    match JsFuture::from(Promise::race(&Array::of2(&granted, &requested))).await {
        Ok(got) if got.as_bool() == Some(true) => {
            // A steal rejects the request's Promise (AbortError).
            let flag = stolen.clone();
            let on_steal: JsValue = Closure::once_into_js(move |_: JsValue| flag.set(true));
            let _ = js::invoke(&requested, "catch", &[on_steal]);
            Ok(Some(TabLock::Web(release, stolen)))
        }
        Ok(_) => Ok(None),
        Err(_) if signal.is_some_and(|s| s.aborted()) => Ok(None),
        Err(_) => Err(()),
    }
}

async fn lease_lock(storage: &web_sys::Storage, key: &str, me: &str, wait: f64, steal: bool) -> Got {
    let give_up = js::now() + wait;
    let mut waited = false;
    loop {
        // Leases are stamped with the wall clock, which every tab reads
        // alike (one tab's js::now() can be ahead of another's).
        let now = js_sys::Date::now();
        let stored = storage.get_item(key).ok().flatten();
        let decision = if steal { Decision::Take } else { lease::decide(stored.as_deref(), me, now, wait + 5_000.0) };
        match decision {
            Decision::Held => {
                let lock = TabLock::Lease { storage: storage.clone(), key: key.into(), me: me.into() };
                return Got::Lock { lock, contended: waited };
            }
            Decision::Take => {
                if storage.set_item(key, &lease::encode(me, now + wait + 5_000.0)).is_err() {
                    return Got::Lock { lock: TabLock::None, contended: waited };
                }
                if steal {
                    let lock = TabLock::Lease { storage: storage.clone(), key: key.into(), me: me.into() };
                    return Got::Lock { lock, contended: true };
                }
                // Another tab may have written at the same moment: the last
                // writer wins, and both see who that was after a pause.
                sleep(40.0).await;
            }
            Decision::Wait(until) => {
                if js::now() > give_up {
                    return Got::TimedOut;
                }
                waited = true;
                sleep((until - now).clamp(20.0, 150.0)).await;
            }
        }
    }
}

/// Writes the marker: "`me` has a refresh request on the wire, for up to
/// `hold` ms from now".
pub fn mark(storage: &web_sys::Storage, key: &str, me: &str, hold: f64) {
    let at = js_sys::Date::now();
    let _ = storage.set_item(key, &lease::encode_marker(me, at, at + hold));
}

/// Removes the marker (or lease) if it is ours.
pub fn unmark(storage: &web_sys::Storage, key: &str, me: &str) {
    let held = storage.get_item(key).ok().flatten();
    if lease::decode(held.as_deref()).is_some_and(|(owner, _)| owner == *me) {
        let _ = storage.remove_item(key);
    }
}

thread_local! {
    /// Markers this page has seen, and when (its own clock): a marker lasts
    /// from when it was first seen, whatever the wall clock does.
    static SEEN: Cell<Vec<(String, f64)>> = const { Cell::new(Vec::new()) };
}

/// Whether another manager's marker (or lease) is live.
pub fn marked(storage: &web_sys::Storage, key: &str, me: &str) -> bool {
    let Some(text) = storage.get_item(key).ok().flatten() else { return false };
    let now = js::now();
    let seen = SEEN.with(|s| {
        let mut list = s.take();
        list.retain(|(_, at)| now - at < 600_000.0);
        let seen = match list.iter().find(|(t, _)| *t == text) {
            Some((_, at)) => *at,
            None => {
                list.push((text.clone(), now));
                now
            }
        };
        s.set(list);
        seen
    });
    lease::marker_live(Some(&text), me, seen, now, js_sys::Date::now())
}

/// Where this page stands on one tab identity.
enum Standing {
    /// A manager of this page is asking for its lock.
    Asking,
    /// This page holds it (the value is kept for its `Drop`).
    Held(#[allow(dead_code)] TabLock),
    /// Another tab holds it: this page is a copy and moved to a new identity.
    Copied,
}

thread_local! {
    /// Tab identities this page has looked at, with how many of its
    /// managers hold each: a second manager in the same page (React Strict
    /// Mode, hot reload) is not a copy of the first, and waits for the
    /// first's answer. `Cell` with take and set: no borrow can fail.
    static CLAIMED: Cell<Vec<(String, u32, Standing)>> = const { Cell::new(Vec::new()) };
}

fn registry<R>(f: impl FnOnce(&mut Vec<(String, u32, Standing)>) -> R) -> R {
    let mut list = CLAIMED.take();
    let r = f(&mut list);
    CLAIMED.set(list);
    r
}

/// This page's claim on a tab identity; the identity lock is released when
/// the last manager of the page that holds it drops its claim.
pub struct TabClaim(String);

impl Drop for TabClaim {
    fn drop(&mut self) {
        let released = registry(|list| {
            let entry = list.iter_mut().find(|(id, _, _)| *id == self.0)?;
            entry.1 = entry.1.saturating_sub(1);
            take_first(list, |(id, n, _)| *id == self.0 && *n == 0)
        });
        // Released outside the registry: releasing calls into JS.
        if let Some((_, _, Standing::Held(TabLock::Web(..)))) = &released {
            mark_tab(&["tessera-tab:", &self.0].concat(), false);
        }
        drop(released);
    }
}

/// Claims the identity of this tab for the sessionStorage record under
/// `key`. A tab made by "Duplicate tab" or `window.open` without `noopener`
/// starts with a copy of the original's sessionStorage, identity included;
/// the original holds that identity's Web Lock as long as it lives (frozen
/// or not), so the copy finds it taken. Returns whether this tab is such a
/// copy (it then takes a new identity) and the claim to keep. Where Web
/// Locks are missing, copies cannot be told apart (see the README).
pub async fn claim_tab(storage: &web_sys::Storage, key: &str) -> (bool, Option<TabClaim>) {
    let id_key = [key, ".tab"].concat();
    let Some((locks, request)) = locks() else { return (false, None) };
    let mut copy = false;
    let mut id = storage.get_item(&id_key).ok().flatten();
    for _ in 0..500 {
        let Some(current) = id.clone() else { break };
        // 0: not looked at here; 1: asking; 2: held; 3: copied.
        let standing = registry(|list| match list.iter_mut().find(|(i, _, _)| *i == current) {
            None => {
                list.push((current.clone(), 1, Standing::Asking));
                0
            }
            Some((_, n, Standing::Held(_))) => {
                *n += 1;
                2
            }
            Some((_, _, Standing::Asking)) => 1,
            Some((_, _, Standing::Copied)) => 3,
        });
        match standing {
            0 => {
                let name = ["tessera-tab:", &current].concat();
                let got = web_lock(&locks, &request, &name, Mode::IfAvailable).await;
                // A failed request means Web Locks do not work here: copies
                // cannot be told apart, and this tab is taken as the original.
                // Held by another wasm instance of this same tab (an iframe,
                // a second copy of the package): no copy either.
                let copied = matches!(got, Ok(None)) && !js::get(&topmost(), &name).is_truthy();
                if matches!(got, Ok(Some(_))) {
                    mark_tab(&name, true);
                }
                let got = if matches!(got, Ok(None)) && !copied { Err(()) } else { got };
                let released = registry(|list| {
                    let entry = list.iter_mut().find(|(i, _, _)| *i == current)?;
                    let now = match got {
                        Ok(Some(lock)) => Standing::Held(lock),
                        Ok(None) => Standing::Copied,
                        Err(()) => Standing::Held(TabLock::None),
                    };
                    Some(std::mem::replace(&mut entry.2, now))
                });
                drop(released);
                if !copied {
                    return (copy, Some(TabClaim(current)));
                }
                copy = true;
                id = None;
            }
            1 => sleep(10.0).await,
            2 => return (copy, Some(TabClaim(current))),
            _ => {
                // Another manager of this page found this identity copied
                // and is moving to a new one: follow it.
                copy = true;
                sleep(10.0).await;
                id = storage.get_item(&id_key).ok().flatten().filter(|n| *n != current);
                if id.is_none() {
                    id = Some(current);
                }
            }
        }
    }
    let fresh = js::random_id();
    if storage.set_item(&id_key, &fresh).is_err() {
        return (copy, None);
    }
    registry(|list| list.push((fresh.clone(), 1, Standing::Asking)));
    let got = web_lock(&locks, &request, &["tessera-tab:", &fresh].concat(), Mode::IfAvailable).await.ok().flatten();
    let claim = got.is_some();
    if claim {
        mark_tab(&["tessera-tab:", &fresh].concat(), true);
    }
    let old = registry(|list| {
        let entry = list.iter_mut().find(|(i, _, _)| *i == fresh)?;
        Some(std::mem::replace(&mut entry.2, got.map_or(Standing::Copied, Standing::Held)))
    });
    drop(old);
    (copy, claim.then(|| TabClaim(fresh)))
}
