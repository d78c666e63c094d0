//! The driver: feeds the session (`core::session`) what happens, and runs
//! what it decides. It owns every JS resource of a manager (the timer, the
//! page and storage listeners, the tab channel, the lock, the tab identity),
//! each released on drop.
//!
//! Borrow discipline, by construction: the driver state is only touched
//! inside [`with`], whose closures never call into JS. Effects run one at a
//! time after the borrow is released, so a listener, a storage shim or a
//! transport that calls back into the manager finds it consistent (F8). An
//! input that arrives while effects run (a listener calling `logout()`) is
//! handled at once; its effects queue behind the ones already decided, and
//! an event decided under an older version of the tokens is not emitted
//! (an `expired` after a `refreshError` listener signed in again).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use js_sys::Promise;
use wasm_bindgen::JsValue;
#[cfg(feature = "js")]
use wasm_bindgen::{closure::Closure, JsCast};
use wasm_bindgen_futures::JsFuture;

use super::error::Error;
use super::events::{call_all, Callback, Listeners};
use super::http::{self, Outgoing, Transport};
use super::js::{self, Listener, Timeout};
use super::options::{Options, StorageChoice};
use super::page::Membership;
use super::storage::{self, Backend, OnError, Pending};
use super::tabs::{self, Abandon, Channel, Got, TabClaim, TabLock};
use super::{dpop, BACKENDS, DPOP};
use crate::core::origin;
use crate::core::record::{self, Read};
use crate::core::refresh::{self, BodyFormat};
use crate::core::retry;
use crate::core::schedule::{self, Millis};
use crate::core::session::{take_first, Config, Effect, Event, Input, Session, Store, Want};

/// The cross-tab lock, asked for or held.
enum LockSlot {
    /// Asked for; taking the `Abandon` out and dropping it gives up.
    Asking(Rc<Cell<Option<Abandon>>>),
    /// Held until dropped (the value is kept for its `Drop`).
    Held(#[allow(dead_code)] TabLock),
    /// The page lock of a private store (`page`), asked for or held.
    Page,
}

/// What a waiting request is answered: the epoch its token belongs to, and
/// the token (none when signed out) or why not.
type Answer = (u32, Result<Option<String>, Error>);

/// A waiting request's answer, filled by an `Answer` effect.
#[derive(Default)]
pub struct Slot {
    value: Cell<Option<Answer>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn fill(&self, v: Answer) {
        self.value.set(Some(v));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Waits for a [`Slot`].
struct Wait(Rc<Slot>);

impl Future for Wait {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                self.0.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Everything one manager holds.
pub struct Driver {
    /// Every decision.
    session: Session,
    /// The validated options.
    opts: Options,
    /// Where the record lives now.
    backend: Backend,
    /// What `tm.storage` reports.
    storage_name: &'static str,
    /// The storage that failed, and what it threw (for `storageError`).
    failed: (&'static str, JsValue),
    /// Effects decided and not yet run, with the tokens' version they were
    /// decided under.
    queue: VecDeque<(u32, Effect)>,
    /// Effects are running (an input fed meanwhile only queues its own).
    running: bool,
    /// Requests waiting for a token.
    waiters: Vec<(u32, Rc<Slot>)>,
    next_request: u32,
    /// The one timer, and when it fires.
    timer: Option<(Millis, Timeout)>,
    /// Page listeners (visibility, focus, online).
    page_listeners: Vec<Listener>,
    /// Other managers on the key: the storage listener and the channel.
    sync: (Option<Listener>, Option<Channel>),
    /// The cross-tab lock; `lock_gen` tells a lock task it is still wanted.
    lock: Option<LockSlot>,
    lock_gen: u32,
    /// This tab's identity (sessionStorage), and its id in lock names.
    tab: Option<TabClaim>,
    tab_id: String,
    /// This manager's id in markers and leases.
    me: String,
    /// The user's listeners.
    listeners: Listeners,
    /// Revocations started by the last `logout()`, for its Promise.
    revocations: Vec<Promise>,
    /// The app's own refresh call under way (its flight), with what aborts
    /// it. One at most: the session runs one refresh at a time, and a call
    /// leaves this slot when it settles, times out or is aborted.
    abort: Option<(u32, web_sys::AbortController)>,
    /// `deviceIdHeader` and the device id sent under it.
    device: Option<(String, String)>,
    /// DPoP, when on.
    dpop: Option<KeyState>,
    /// This manager's place among the page's managers on a key of private
    /// storage (`page`); `None` for shared and memory storage.
    page: Option<Membership>,
    /// This manager's id in the page table.
    id: u32,
    /// The `Bearer …` header value of the current tokens, as a JS string,
    /// with the tokens' version: built once per token, not per request.
    #[cfg(feature = "js")]
    bearer: Option<(u32, JsValue)>,
}

/// DPoP's state. Each session has its own key (see `dpop::load`).
struct KeyState {
    /// The key in hand: a Promise of `{ pair, header, jkt }`: the session's,
    /// or signed out, a new one for the next sign-in.
    key: Promise,
    /// Its thumbprint, once known (the session's, or the new key's once made).
    jkt: Option<String>,
    /// The IndexedDB name keys are kept under (none in memory).
    name: Option<String>,
    /// A JS object without prototype, origin → nonce. Nonces come only from
    /// allowed origins and the token endpoint, so it stays that small.
    nonces: JsValue,
    /// The session epoch the key was chosen in.
    epoch: u32,
    /// The thumbprint of a key to delete: its session ended here.
    drop: Option<String>,
}

/// A manager shared by the API object, its timers and its listeners.
pub type Shared = Rc<RefCell<Driver>>;

/// Runs `f` on the driver. Every caller keeps JS out of `f`, so the borrow
/// cannot fail; were it ever to, the call is skipped rather than a panic
/// killing the instance.
pub fn with<R>(s: &Shared, f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    s.try_borrow_mut().ok().map(|mut d| f(&mut d))
}

/// Creates a manager and starts loading stored tokens; the Promise is `ready`.
pub fn create(opts: Options) -> (Shared, Promise) {
    let (backend, open_error) = storage::open(&opts.storage);
    let storage_name = backend.name(&opts.storage);
    let tab_sync = opts.sync_tabs && matches!(backend, Backend::Web(_));
    let store = match (&backend, tab_sync) {
        (Backend::Memory, _) => Store::Memory,
        (_, true) => Store::Shared,
        _ => Store::Private,
    };
    let check_tab = tab_sync && matches!(opts.storage, StorageChoice::Session);
    let cfg = Config {
        refreshable: opts.token_endpoint.is_some() || opts.refresh.is_some(),
        auto_refresh: opts.auto_refresh,
        margin: opts.refresh_margin,
        leeway: opts.leeway,
        timeout: opts.timeout,
        revoke: opts.revocation_endpoint.is_some(),
        client: opts.client_binding(),
        store,
        check_tab,
        dpop: opts.dpop,
    };
    let requested = match opts.storage {
        StorageChoice::Session => "sessionStorage",
        StorageChoice::Adapter(_) => "adapter",
        _ => "localStorage",
    };
    let shared = Rc::new(RefCell::new(Driver {
        session: Session::new(cfg),
        opts,
        backend: backend.clone(),
        storage_name,
        failed: (requested, JsValue::UNDEFINED),
        queue: VecDeque::new(),
        running: false,
        waiters: Vec::new(),
        next_request: 0,
        timer: None,
        page_listeners: Vec::new(),
        sync: (None, None),
        lock: None,
        lock_gen: 0,
        tab: None,
        tab_id: String::new(),
        me: js::random_id(),
        listeners: Listeners::default(),
        revocations: Vec::new(),
        abort: None,
        device: None,
        dpop: None,
        page: None,
        id: next_id(),
        #[cfg(feature = "js")]
        bearer: None,
    }));
    if store == Store::Private {
        let membership = with(&shared, |d| Membership::join(&d.opts.storage_key, d.id, Rc::downgrade(&shared)));
        let line = membership.as_ref().map(Membership::line);
        with(&shared, |d| {
            if let Some(line) = line {
                d.backend.share(line);
            }
            d.page = membership;
        });
    }
    if let Some(e) = open_error {
        // Told from a later task: listeners attached right after the
        // constructor returns hear it.
        let weak = Rc::downgrade(&shared);
        js::later(move || {
            if let Some(s) = weak.upgrade() {
                storage_failure(&s, e, false, false);
            }
        });
    }
    let key = with(&shared, |d| d.opts.storage_key.clone()).unwrap_or_default();
    // A read that throws now is told from a later task too.
    let weak = Rc::downgrade(&shared);
    let later: OnError = Rc::new(move |e| {
        let weak = weak.clone();
        js::later(move || {
            if let Some(s) = weak.upgrade() {
                storage_failure(&s, e, false, false);
            }
        });
    });
    // Another manager of the page read or wrote the key already: that is
    // the record (an adapter may still be writing it).
    let known = with(&shared, |d| d.page.as_ref().and_then(Membership::record)).flatten();
    let pending = match known {
        Some(text) => Pending::Now(text),
        None => backend.read(&key, &later),
    };
    let ready = match pending {
        Pending::Now(text) => {
            loaded(&shared, text);
            Promise::resolve(&JsValue::UNDEFINED)
        }
        Pending::Later(p) => {
            let s = shared.clone();
            js::promise(async move {
                let text = match JsFuture::from(p).await {
                    Ok(v) => v.as_string(),
                    Err(e) => {
                        storage_failure(&s, e, false, false);
                        None
                    }
                };
                loaded(&s, text);
                Ok(JsValue::UNDEFINED)
            })
        }
    };
    load_device_id(&shared, &backend, &key);
    if DPOP && with(&shared, |d| d.opts.dpop) == Some(true) {
        let name = (store != Store::Memory).then(|| key.clone());
        let keys =
            KeyState { key: Promise::resolve(&JsValue::UNDEFINED), jkt: None, name, nonces: dpop::table(), epoch: u32::MAX, drop: None };
        with(&shared, |d| d.dpop = Some(keys));
        rekey(&shared);
    }
    watch_page(&shared);
    if tab_sync {
        watch_tabs(&shared, &key);
    }
    if check_tab {
        if let Backend::Web(storage) = backend {
            let s = shared.clone();
            js::spawn(async move {
                let (copy, claim) = tabs::claim_tab(&storage, &key).await;
                let id = storage.get_item(&[&key, ".tab"].concat()).ok().flatten().unwrap_or_default();
                let old = with(&s, |d| {
                    d.tab_id = id;
                    std::mem::replace(&mut d.tab, claim)
                });
                drop(old);
                feed(&s, Input::TabChecked { copy });
            });
        }
    }
    (shared, ready)
}

fn loaded(shared: &Shared, text: Option<String>) {
    // A private store's page keeps what it read, unless a manager of the
    // page wrote meanwhile: then that is newer.
    let Some((client, text)) = with(shared, |d| {
        let text = match &d.page {
            Some(p) => {
                p.set(text, true);
                p.record().flatten()
            }
            None => text,
        };
        (d.session.config().client.clone(), text)
    }) else {
        return;
    };
    feed(shared, Input::Loaded(record::decode(text.as_deref(), &client)));
}

/// A manager's id among the page's managers.
fn next_id() -> u32 {
    thread_local!(static NEXT: Cell<u32> = const { Cell::new(0) });
    NEXT.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    })
}

/// Feeds one input and runs what the session decides.
pub fn feed(shared: &Shared, input: Input) {
    let now = js::now();
    let fx = with(shared, |d| d.session.handle(input, now)).unwrap_or_default();
    run(shared, fx);
}

/// Queues `fx` and, unless effects are running already, runs the queue.
fn run(shared: &Shared, fx: Vec<Effect>) {
    rekey(shared);
    let start = with(shared, |d| {
        let v = d.session.version();
        d.queue.extend(fx.into_iter().map(|e| (v, e)));
        !std::mem::replace(&mut d.running, true)
    });
    if start != Some(true) {
        return;
    }
    loop {
        let next = with(shared, |d| match d.queue.pop_front() {
            Some((v, e)) => Some((v == d.session.version(), e)),
            None => {
                d.running = false;
                None
            }
        });
        let Some(Some((current, e))) = next else { break };
        effect(shared, e, current);
    }
    rearm(shared);
}

/// Takes the DPoP key of the session held now, before the change's
/// effects run (a listener that signs in again signs with the right key):
/// the key its record names (`jkt`), loaded from IndexedDB where another
/// tab made it; signed out, after any change, a new key for the next
/// sign-in. The key of a session that ended here (a logout, a sign-in over
/// it) is deleted; no other session's key is ever touched.
fn rekey(shared: &Shared) {
    let plan = with(shared, |d| {
        let k = d.dpop.as_mut().filter(|_| DPOP)?;
        let want = d.session.tokens().filter(|t| t.dpop).and_then(|t| t.jkt.clone());
        let epoch = d.session.epoch();
        let changed = std::mem::replace(&mut k.epoch, epoch) != epoch;
        let load = match &want {
            Some(w) => k.jkt.as_ref() != Some(w),
            None => changed && d.session.tokens().is_none(),
        };
        if !load && k.drop.is_none() {
            return None;
        }
        let want = if load { want } else { k.jkt.clone() };
        k.jkt.clone_from(&want);
        Some((k.name.clone(), want, k.key.clone(), k.drop.take()))
    });
    let Some(Some((name, want, after, drop))) = plan else { return };
    let p = dpop::load(name, want.clone(), Some(after), drop);
    with(shared, |d| d.dpop.as_mut().map(|k| k.key = p.clone()));
    // Its thumbprint once it is ready; a session's key that is gone means
    // the session ended elsewhere.
    let s = shared.clone();
    js::spawn(async move {
        match JsFuture::from(p.clone()).await {
            Ok(k) => {
                let jkt = js::get(&k, "jkt").as_string();
                with(&s, |d| d.dpop.as_mut().filter(|st| JsValue::from(&st.key) == JsValue::from(&p)).map(|st| st.jkt = jkt));
            }
            Err(_) => {
                if let Some(jkt) = want {
                    feed(&s, Input::KeyLost { jkt });
                }
            }
        }
    });
}

fn effect(shared: &Shared, e: Effect, current: bool) {
    match e {
        Effect::Write { record, first } => write(shared, Some(&record), first),
        Effect::Remove => write(shared, None, false),
        Effect::Notify => {
            // The notice names the record this manager holds (no token):
            // a tab whose copy of storage lags knows it is behind.
            let said = with(shared, |d| {
                let said = record::notice(d.session.tokens());
                if let Some(p) = &d.page {
                    p.notify(&said);
                }
                (d.sync.1.as_ref().map(Channel::port), said)
            });
            if let Some((Some(port), said)) = said {
                let _ = port.post_message(&JsValue::from_str(&said));
            }
        }
        Effect::Lock { steal } => lock(shared, steal),
        Effect::Unlock => {
            let old = with(shared, |d| {
                d.lock_gen = d.lock_gen.wrapping_add(1);
                let old = d.lock.take();
                if let (Some(LockSlot::Page), Some(p)) = (&old, &d.page) {
                    p.unlock();
                }
                old
            });
            match old {
                Some(Some(LockSlot::Asking(cell))) => drop(cell.take()),
                // Released from a later task: storage writes made in this
                // one reach the other tabs first (engines that send them at
                // the end of a task, as Firefox does, included).
                Some(Some(LockSlot::Held(lock))) => js::later(move || drop(lock)),
                _ => {}
            }
        }
        Effect::Mark(hold) => {
            let plan = with(shared, |d| {
                if let Some(p) = &d.page {
                    p.mark(true);
                }
                (d.page.is_none()).then(|| (d.backend.clone(), lease_key(d), d.me.clone()))
            });
            if let Some(Some((Backend::Web(s), key, me))) = plan {
                tabs::mark(&s, &key, &me, hold);
            }
        }
        Effect::Unmark => {
            let plan = with(shared, |d| {
                if let Some(p) = &d.page {
                    p.mark(false);
                }
                (d.page.is_none()).then(|| (d.backend.clone(), lease_key(d), d.me.clone()))
            });
            if let Some(Some((Backend::Web(s), key, me))) = plan {
                tabs::unmark(&s, &key, &me);
            }
        }
        Effect::Send { flight, refresh_token } => js::spawn(send_refresh(shared.clone(), flight, refresh_token)),
        Effect::Abort { flight } => {
            // Only the app's own refresh is told: the refresh grant's answer
            // still lands, so the rotated refresh token in it can be revoked.
            let abort = with(shared, |d| d.abort.take_if(|(f, _)| *f == flight)).filter(|_| BACKENDS);
            if let Some(Some((_, c))) = abort {
                c.abort();
            }
        }
        Effect::Revoke { token, hint } => revoke(shared, &token, hint),
        Effect::Emit(ev) => {
            if current {
                emit(shared, &ev);
            }
        }
        Effect::Answer { request, epoch, result } => {
            let slot = with(shared, |d| take_first(&mut d.waiters, |(id, _)| *id == request));
            if let Some(Some((_, slot))) = slot {
                slot.fill((epoch, result));
            }
        }
        Effect::UseMemory => {
            let old = with(shared, |d| {
                d.backend = Backend::Memory;
                d.storage_name = "memory";
                (std::mem::take(&mut d.sync), d.lock.take(), d.page.take())
            });
            drop(old);
        }
    }
}

fn lease_key(d: &Driver) -> String {
    [&d.opts.storage_key, ".lock"].concat()
}

/// Writes (or removes) the record. A write that throws (quota, Safari's
/// private mode, ITP) leaves the record behind the session: it is removed at
/// once, before the lock is released, so no tab can adopt an already
/// rotated refresh token from it (F4).
fn write(shared: &Shared, value: Option<&str>, first: bool) {
    let Some((backend, key)) = with(shared, |d| {
        // The page's managers see a private store's writes at once.
        if let Some(p) = &d.page {
            p.set(value.map(String::from), false);
        }
        (d.backend.clone(), d.opts.storage_key.clone())
    }) else {
        return;
    };
    if let Err(e) = backend.write(&key, value, &on_error(shared, first)) {
        if value.is_some() {
            let _ = backend.write(&key, None, &on_error(shared, false));
        }
        storage_failure(shared, e, first, true);
    }
}

/// Storage threw: remember what for `storageError`, and tell the session
/// (`first_copy`: a write of tokens made here failed; `write`: a write,
/// not a read, failed).
fn storage_failure(shared: &Shared, cause: JsValue, first_copy: bool, write: bool) {
    with(shared, |d| {
        if d.storage_name != "memory" {
            d.failed.0 = d.storage_name;
        }
        d.failed.1 = cause;
    });
    feed(shared, Input::StorageFailed { first_copy, write });
}

/// The error callback of an asynchronous adapter write (`first`: of
/// tokens made here). Storage then holds an older record than the
/// session's: it is removed, best effort, so the next start cannot present
/// a rotated refresh token from it. The tokens were the only copy only if
/// no other manager of the page could take them from the page's record.
fn on_error(shared: &Shared, first: bool) -> OnError {
    let weak = Rc::downgrade(shared);
    Rc::new(move |e| {
        let Some(s) = weak.upgrade() else { return };
        if first {
            if let Some((backend, key)) = with(&s, |d| (d.backend.clone(), d.opts.storage_key.clone())) {
                let _ = backend.write(&key, None, &(Rc::new(|_| {}) as OnError));
            }
        }
        let alone = with(&s, |d| d.page.as_ref().is_none_or(|p| p.alone())).unwrap_or(true);
        storage_failure(&s, e, first && alone, true);
    })
}

/// The record as another manager left it: shared Web Storage as this tab
/// sees it, or a private store's record as this page knows it.
fn read_record(shared: &Shared) -> Option<Read> {
    let (backend, key, client, known) = with(shared, |d| {
        let known = d.page.as_ref().and_then(Membership::record).filter(|_| matches!(d.backend, Backend::Adapter(_)));
        (d.backend.clone(), d.opts.storage_key.clone(), d.session.config().client.clone(), known)
    })?;
    if let Some(text) = known {
        return Some(record::decode(text.as_deref(), &client));
    }
    let Backend::Web(s) = backend else { return None };
    match s.get_item(&key) {
        Ok(text) => Some(record::decode(text.as_deref(), &client)),
        Err(e) => {
            storage_failure(shared, e, false, false);
            None
        }
    }
}

/// Asks for the cross-tab lock in a task; the answer is an input. A
/// private store takes its page's lock instead.
fn lock(shared: &Shared, steal: bool) {
    let cell = Rc::new(Cell::new(None));
    let Some((backend, name, (key, lease), me, wait, gen, held, client)) = with(shared, |d| {
        d.lock_gen = d.lock_gen.wrapping_add(1);
        d.lock = Some(if d.page.is_some() { LockSlot::Page } else { LockSlot::Asking(cell.clone()) });
        let name = ["tessera:", &d.opts.storage_key, if d.tab_id.is_empty() { "" } else { ":" }, &d.tab_id].concat();
        let held = d.session.access_token().map(String::from);
        let client = d.session.config().client.clone();
        // A lock that changes hands meanwhile is waited for again (see
        // `tabs::lock`): only a stuck holder is stolen from.
        let wait = d.opts.timeout;
        (d.backend.clone(), name, (d.opts.storage_key.clone(), lease_key(d)), d.me.clone(), wait, d.lock_gen, held, client)
    }) else {
        return;
    };
    if let Some(Some(())) = with(shared, |d| d.page.as_ref().map(|p| p.lock(gen, shared))) {
        return;
    }
    let Backend::Web(storage) = backend else { return };
    let s = shared.clone();
    js::spawn(async move {
        let mut steal = steal;
        loop {
            let stole = steal;
            let got = tabs::lock(&storage, &name, &lease, &me, wait, steal, &cell).await;
            let wanted = |s: &Shared| with(s, |d| d.lock_gen == gen).unwrap_or(false);
            match got {
                Got::Lock { lock, contended } => {
                    // This tab's copy of storage can reach the writes made
                    // before the grant a moment after it: wait (in later
                    // tasks, up to 750 ms) until it is not behind what other
                    // tabs told of and, after another holder, until it
                    // changed. After a steal the whole wait runs: the holder
                    // it took the lock from may have sent a moment before,
                    // and its marker is on its way. A tab frozen since the
                    // grant runs what came in meanwhile first. A lock stolen
                    // meanwhile is asked for again.
                    let mut since = js::now();
                    let end = since + 750.0;
                    let mut pause = 0.0;
                    let stolen = loop {
                        tabs::sleep(pause).await;
                        pause = 20.0;
                        if lock.stolen() {
                            break true;
                        }
                        let now = js::now();
                        if now - since > 1_000.0 {
                            since = now;
                            pause = 0.0;
                            continue;
                        }
                        let text = storage.get_item(&key).ok().flatten();
                        let read = record::decode(text.as_deref(), &client);
                        let behind = with(&s, |d| d.session.behind(&read)).unwrap_or(false);
                        let changed = !contended
                            || match &read {
                                Read::Tokens(t) => Some(&t.access_token) != held.as_ref(),
                                _ => true,
                            };
                        if (changed && !behind && !stole) || now >= end {
                            break false;
                        }
                    };
                    if stolen {
                        steal = false;
                        continue;
                    }
                    let unwanted = with(&s, |d| {
                        if d.lock_gen == gen {
                            d.lock = Some(LockSlot::Held(lock));
                            None
                        } else {
                            Some(lock)
                        }
                    });
                    if let Some(Some(lock)) = unwanted {
                        drop(lock);
                        return;
                    }
                    let stored = read_record(&s).unwrap_or(Read::Corrupt);
                    let marked = tabs::marked(&storage, &lease, &me);
                    feed(&s, Input::LockGranted { stored, marked });
                }
                Got::TimedOut => {
                    if wanted(&s) {
                        with(&s, |d| d.lock = None);
                        let stored = read_record(&s).unwrap_or(Read::Corrupt);
                        let marked = tabs::marked(&storage, &lease, &me);
                        feed(&s, Input::LockTimedOut { stored, marked });
                    }
                }
            }
            return;
        }
    });
}

/// The page lock of a private store came (for the wait `gen`).
pub fn page_granted(shared: &Shared, gen: u32) {
    let wanted = with(shared, |d| d.lock_gen == gen && matches!(d.lock, Some(LockSlot::Page))).unwrap_or(false);
    if !wanted {
        with(shared, |d| d.page.as_ref().map(Membership::unlock));
        return;
    }
    let stored = read_record(shared).unwrap_or(Read::Corrupt);
    let marked = with(shared, |d| d.page.as_ref().is_some_and(Membership::marked)).unwrap_or(false);
    feed(shared, Input::LockGranted { stored, marked });
}

/// Another manager's notice (the channel, or the page): `said` names the
/// record it holds ("sid born gen"); then look again.
pub fn heard(shared: &Shared, said: &str) {
    if let Some((sid, born, gen)) = record::notice_of(said) {
        feed(shared, Input::Heard { sid, born, gen });
    }
    if let Some(read) = read_record(shared) {
        feed(shared, Input::StorageSaw(read));
    }
}

/// Sends the refresh grant (RFC 6749 s6), or calls the app's own refresh;
/// the answer is an input. With DPoP the grant carries a proof, and a
/// nonce or proof challenge is answered once (RFC 9449 s8). A request given
/// up as timed out is in doubt, not forgotten: its answer, if it comes, is
/// fed too.
async fn send_refresh(shared: Shared, flight: u32, refresh_token: String) {
    use crate::core::session::Reply;
    let plan = with(&shared, |d| {
        let o = &d.opts;
        let params = refresh::refresh_params(&refresh_token, o.client_id.as_deref(), o.scope.as_deref());
        let body = refresh::encode_body(o.body_format, &params);
        let custom = o.refresh.clone().filter(|_| BACKENDS).map(|f| {
            let c = web_sys::AbortController::new().ok();
            if let Some(c) = &c {
                d.abort = Some((flight, c.clone()));
            }
            (f, c)
        });
        (Transport::new(o.fetch.as_ref()), o.token_endpoint.clone(), body, o.body_format.content_type(), o.timeout, custom)
    });
    let Some((tr, endpoint, body, content_type, timeout, custom)) = plan else { return };
    let (reply, pending) = match (custom, tr, endpoint) {
        (Some((f, controller)), _, _) => call_refresh(&shared, flight, &f, &refresh_token, controller.as_ref(), timeout).await,
        (None, Some(tr), Some(endpoint)) => {
            let mut answered = false;
            loop {
                let proof = proof_for(&shared, "POST", &endpoint, None).await.ok().and_then(|p| p.as_string());
                let extra: Vec<(&str, JsValue)> = proof.iter().map(|p| ("DPoP", JsValue::from_str(p))).collect();
                let (reply, nonce, pending) = http::post(&tr, &endpoint, content_type, &body, timeout, &extra).await;
                let challenged = match &reply {
                    Reply::Http { status, body, .. } if proof.is_some() => crate::core::dpop::challenge(*status, None, body).is_some(),
                    _ => false,
                };
                let clock = match &reply {
                    Reply::Http { date: Some(d), age, sent_at, .. } if challenged => Some((*d, age.unwrap_or(0.0), *sent_at)),
                    _ => None,
                };
                learn(&shared, &endpoint, nonce, clock);
                if !challenged || std::mem::replace(&mut answered, true) {
                    break (reply, pending.map(Late::Grant));
                }
            }
        }
        _ => (Reply::Network, None),
    };
    answered(&shared, flight, reply);
    let late = match pending {
        Some(Late::Grant(p)) => http::late(p).await,
        #[cfg(feature = "backends")]
        Some(Late::Custom(p)) => JsFuture::from(p).await.ok().map(|v| Reply::Custom(Ok(json_text(&v)))),
        None => None,
    };
    if let Some(reply) = late {
        answered(&shared, flight, reply);
    }
}

/// A refresh request given up as timed out, still under way.
enum Late {
    /// The refresh grant's fetch.
    Grant(Promise),
    /// The app's own refresh's Promise.
    #[cfg(feature = "backends")]
    Custom(Promise),
}

/// Feeds a refresh answer, with storage as it is now (for the compare and swap).
fn answered(shared: &Shared, flight: u32, reply: crate::core::session::Reply) {
    let coordinated = with(shared, |d| d.session.store().coordinated()).unwrap_or(false);
    let stored = if coordinated { read_record(shared) } else { None };
    feed(shared, Input::Answered { flight, reply, stored, random: js::random() });
}

/// A JS value as JSON text ("" when it is not JSON-able).
#[cfg(feature = "backends")]
fn json_text(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).unwrap_or_default()
}

/// Remembers a server's DPoP nonce for the origin of `url`, and, from a DPoP
/// challenge, the server's clock (`Date`, `Age`, when the request went out).
fn learn(shared: &Shared, url: &str, nonce: Option<String>, clock: Option<(Millis, Millis, Millis)>) {
    if !DPOP {
        return;
    }
    if let (Some(n), Some(o), Some(Some(table))) = (nonce, origin::of(url), with(shared, |d| d.dpop.as_ref().map(|k| k.nonces.clone()))) {
        let _ = js_sys::Reflect::set(&table, &o.into(), &n.into());
    }
    if let Some((date, age, sent_at)) = clock {
        feed(shared, Input::ClockSeen { date, age, sent_at });
    }
}

/// A DPoP proof for `method` `url` (with the access token it goes with):
/// the proof as a JS string, or why there is none (no DPoP, or the key
/// cannot sign). Not an `async fn`: the session is read now, and the
/// signing future is returned as it is, so `tm.dpopProof` hands it to JS
/// with no state machine around it.
fn proof_for(shared: &Shared, method: &str, url: &str, token: Option<&str>) -> impl Future<Output = Result<JsValue, JsValue>> {
    let signer = with(shared, |d| {
        let k = d.dpop.as_ref().filter(|_| DPOP)?;
        Some((k.key.clone(), k.nonces.clone(), d.session.skew()))
    })
    .flatten()
    .map(|(key, nonces, skew)| (key, js::get(&nonces, &origin::of(url).unwrap_or_default()).as_string(), skew));
    dpop::proof(signer, method, url, token.map(String::from))
}

/// `tm.dpopProof(method, url)`: a proof for a request the app makes itself
/// (its sign-in at an authorization server that is not an allowed origin).
#[cfg(feature = "rust")]
pub async fn dpop_proof(shared: Shared, method: String, url: String, token: Option<String>) -> Result<String, Error> {
    let proof = proof_for(&shared, &method.to_ascii_uppercase(), &url, token.as_deref()).await;
    proof.ok().and_then(|p| p.as_string()).ok_or_else(dpop::missing)
}

/// [`dpop_proof`] for the JS API: the signing future itself.
#[cfg(all(feature = "js", feature = "dpop"))]
pub fn dpop_proof_js(shared: &Shared, method: JsValue, url: JsValue, token: JsValue) -> Promise {
    let t = token.as_string();
    match (method.as_string(), url.as_string()) {
        (Some(mut m), Some(u)) if t.is_some() || token.is_undefined() || token.is_null() => {
            m.make_ascii_uppercase();
            js::promise(proof_for(shared, &m, &u, t.as_deref()))
        }
        _ => Promise::reject(&Error::Options("dpopProof(method, url, accessToken?) takes strings".into()).into()),
    }
}

/// Calls `refresh({ refreshToken, signal })`: a token response object, or
/// a throw (`fatal: true` ends the session). The signal aborts when the
/// session it refreshes ends (a logout, another sign-in). One that does
/// not settle within `timeoutSeconds` is in doubt: its Promise is handed
/// back, and what it settles with later still counts.
#[cfg(feature = "backends")]
async fn call_refresh(
    shared: &Shared,
    flight: u32,
    f: &js_sys::Function,
    refresh_token: &str,
    controller: Option<&web_sys::AbortController>,
    timeout: Millis,
) -> (crate::core::session::Reply, Option<Late>) {
    use crate::core::session::Reply;
    let signal = controller.map_or(JsValue::UNDEFINED, |c| c.signal().into());
    let arg = js::object(&[("refreshToken", refresh_token.into()), ("signal", signal)]);
    let call = match f.call1(&JsValue::UNDEFINED, &arg) {
        Ok(v) => Promise::resolve(&v),
        Err(e) => Promise::reject(&e),
    };
    let r = http::within(call.clone(), timeout).await;
    with(shared, |d| d.abort.take_if(|(id, _)| *id == flight));
    let aborted = controller.is_some_and(|c| c.signal().aborted());
    match r {
        Ok(v) => (Reply::Custom(Ok(json_text(&v))), None),
        Err(None) => (Reply::Timeout, Some(Late::Custom(call))),
        Err(Some(_)) if aborted => (Reply::Aborted, None),
        Err(Some(e)) => (Reply::Custom(Err((js::get(&e, "fatal").as_bool() == Some(true), js::get(&e, "message").as_string()))), None),
    }
}

/// Without the backends' options there is no app refresh to call.
#[cfg(not(feature = "backends"))]
async fn call_refresh(
    _: &Shared,
    _: u32,
    _: &js_sys::Function,
    _: &str,
    _: Option<&web_sys::AbortController>,
    _: Millis,
) -> (crate::core::session::Reply, Option<Late>) {
    (crate::core::session::Reply::Network, None)
}

/// The device id (`deviceIdHeader`): made once per storage and key, kept
/// beside the record (`<storageKey>.device`) across logouts and reloads; in
/// memory, one per manager. An adapter's stored id, once it answers, wins
/// over the one made meanwhile.
fn load_device_id(shared: &Shared, backend: &Backend, key: &str) {
    let Some(Some(header)) = with(shared, |d| d.opts.device_id_header.clone().filter(|_| BACKENDS)) else { return };
    let id_key = [key, ".device"].concat();
    let valid = |v: Option<String>| v.filter(|s| s.len() >= 22 && crate::core::token::is_b64token(s));
    let mine = js::random_id();
    let ignore: OnError = Rc::new(|_| {});
    let id = match backend.read(&id_key, &ignore) {
        Pending::Now(stored) => match valid(stored) {
            Some(id) => id,
            None => {
                let _ = backend.write(&id_key, Some(&mine), &ignore);
                mine
            }
        },
        Pending::Later(p) => {
            let (s, b, k, made) = (shared.clone(), backend.clone(), id_key.clone(), mine.clone());
            js::spawn(async move {
                match valid(JsFuture::from(p).await.ok().and_then(|v| v.as_string())) {
                    Some(stored) => {
                        with(&s, |d| d.device = d.device.take().map(|(h, _)| (h, stored)));
                    }
                    None => {
                        let ignore: OnError = Rc::new(|_| {});
                        let _ = b.write(&k, Some(&made), &ignore);
                    }
                }
            });
            mine
        }
    };
    with(shared, |d| d.device = Some((header, id)));
}

/// The device id, if `deviceIdHeader` is set.
#[cfg(any(feature = "rust", feature = "backends"))]
pub fn device_id(shared: &Shared) -> Option<String> {
    with(shared, |d| d.device.as_ref().map(|(_, id)| id.clone())).flatten()
}

/// Starts an RFC 7009 revocation, best effort; `logout()` waits for it.
fn revoke(shared: &Shared, token: &str, hint: &'static str) {
    let plan = with(shared, |d| {
        let o = &d.opts;
        let mut params = vec![("token", token), ("token_type_hint", hint)];
        if let Some(c) = &o.client_id {
            params.push(("client_id", c));
        }
        (Transport::new(o.fetch.as_ref()), o.revocation_endpoint.clone(), refresh::encode_body(BodyFormat::Form, &params), o.timeout)
    });
    let Some((Some(tr), Some(endpoint), body, timeout)) = plan else { return };
    let p = js::promise(async move {
        let _ = http::post(&tr, &endpoint, BodyFormat::Form.content_type(), &body, timeout, &[]).await;
        Ok(JsValue::UNDEFINED)
    });
    with(shared, |d| d.revocations.push(p));
}

/// Tells the listeners.
fn emit(shared: &Shared, e: &Event) {
    let Some((list, name, cause)) = with(shared, |d| (d.listeners.for_event(e), d.failed.0, d.failed.1.clone())) else { return };
    call_all(list, e, name, &cause);
}

/// Keeps the one timer armed where the session wants it.
fn rearm(shared: &Shared) {
    let Some((want, armed)) = with(shared, |d| (d.session.poll_timeout(), d.timer.as_ref().map(|(at, _)| *at))) else { return };
    if want == armed {
        return;
    }
    let old = with(shared, |d| d.timer.take());
    drop(old);
    let Some(at) = want else { return };
    let weak = Rc::downgrade(shared);
    let timer = Timeout::new(schedule::timer_delay(at, js::now()), move || {
        let weak = weak.clone();
        // From a later task: the closure running now belongs to the timer
        // being replaced.
        js::later(move || {
            if let Some(s) = weak.upgrade() {
                let fired = with(&s, |d| d.timer.take());
                drop(fired);
                feed(&s, Input::Timer);
            }
        });
    });
    let unused = with(shared, |d| match timer {
        Some(t) if d.timer.is_none() => {
            d.timer = Some((at, t));
            None
        }
        t => t,
    });
    drop(unused);
}

fn weak_later(weak: &Weak<RefCell<Driver>>, f: fn(&Shared)) -> impl FnMut(JsValue) + 'static {
    let weak = weak.clone();
    move |_| {
        let weak = weak.clone();
        js::later(move || {
            if let Some(s) = weak.upgrade() {
                f(&s);
            }
        });
    }
}

/// Listens for the page waking up: timers are throttled in background tabs
/// and do not run while a laptop sleeps, so check again when it matters.
fn watch_page(shared: &Shared) {
    let global: JsValue = js::global().into();
    let document = js::get(&global, "document");
    let weak = Rc::downgrade(shared);
    let wake: fn(&Shared) = |s| feed(s, Input::Wake { online: false });
    let online: fn(&Shared) = |s| feed(s, Input::Wake { online: true });
    let page: Vec<Listener> = [
        Listener::new(&document, "visibilitychange", weak_later(&weak, wake)),
        Listener::new(&global, "focus", weak_later(&weak, wake)),
        Listener::new(&global, "online", weak_later(&weak, online)),
    ]
    .into_iter()
    .flatten()
    .collect();
    with(shared, |d| d.page_listeners = page);
}

/// Follows other managers on the key: the `storage` event fires in every
/// other tab of the origin; the BroadcastChannel also reaches managers in
/// this same page. Both only say "look again".
fn watch_tabs(shared: &Shared, key: &str) {
    let weak = Rc::downgrade(shared);
    let k = key.to_string();
    let remote: fn(&Shared) = |s| {
        if let Some(read) = read_record(s) {
            feed(s, Input::StorageSaw(read));
        }
    };
    let mut on_change = weak_later(&weak, remote);
    let listener = Listener::new(&js::global().into(), "storage", move |e| {
        let changed = js::get(&e, "key");
        // `key` is null when the whole storage was cleared.
        if changed.is_null() || changed.as_string().as_deref() == Some(k.as_str()) {
            on_change(e);
        }
    });
    // A notice names the record its sender holds: heard first, then look.
    let w = weak.clone();
    let channel = Channel::open(key, move |e| {
        let said = js::get(&e, "data").as_string().unwrap_or_default();
        let w = w.clone();
        js::later(move || {
            if let Some(s) = w.upgrade() {
                heard(&s, &said);
            }
        });
    });
    let unused = with(shared, |d| std::mem::replace(&mut d.sync, (listener, channel)));
    drop(unused);
}

// ---- what the API calls --------------------------------------------------

/// A token for a request: at once when the session has a fresh one,
/// otherwise after the session decides (a refresh, a refusal). The epoch
/// says which session the token belongs to.
pub async fn token_for(shared: &Shared, kind: Want, epoch: Option<u32>) -> Result<(u32, Option<String>), Error> {
    if matches!(kind, Want::Fetch | Want::Token) {
        let now = js::now();
        let fast = with(shared, |d| {
            let e = d.session.epoch();
            d.session.token_now(now).filter(|_| epoch.is_none_or(|x| x == e)).map(|r| r.map(|t| (e, t.map(String::from))))
        });
        if let Some(Some(r)) = fast {
            return r;
        }
    }
    let slot = Rc::new(Slot::default());
    let request = with(shared, |d| {
        d.next_request = d.next_request.wrapping_add(1);
        d.waiters.push((d.next_request, slot.clone()));
        d.next_request
    })
    .ok_or(Error::Disposed)?;
    feed(shared, Input::Want { request, kind, epoch });
    let (epoch, r) = Wait(slot).await;
    r.map(|t| (epoch, t))
}

/// Signs in with a token response (JSON text).
pub fn set_tokens(shared: &Shared, text: &str) -> Result<(), Error> {
    let (now, sid) = (js::now(), js::random_id());
    let fx = with(shared, |d| {
        let (mut t, skew) = d.session.parse(text, now).map_err(Error::Token)?;
        if let Some(k) = d.dpop.as_mut().filter(|_| DPOP && t.dpop) {
            // Bound to the key that proved its token request (the key in
            // hand), unless the token names its key (`cnf.jkt`). A session
            // replaced here had its own key: it goes.
            t.jkt = t.jkt.take().or_else(|| k.jkt.clone());
            let old = d.session.tokens().filter(|o| o.access_token != t.access_token).and_then(|o| o.jkt.clone());
            if old.is_some() && old != t.jkt {
                k.drop = old;
            }
        }
        Ok(d.session.set_tokens(t, skew, sid, now))
    })
    .ok_or(Error::Disposed)??;
    run(shared, fx);
    Ok(())
}

/// `logout()`: ends the session here at once; the Promise settles once the
/// revocation (if configured) was attempted.
pub fn logout(shared: &Shared) -> Promise {
    // The key goes with the session: `rekey` deletes it as the logout
    // runs, and makes a new one for the next session. The servers' nonces
    // go too: they were given to this session.
    if DPOP {
        let fresh = dpop::table();
        with(shared, |d| {
            let jkt = d.session.tokens().and_then(|t| t.jkt.clone());
            if let Some(k) = d.dpop.as_mut() {
                k.drop = jkt;
                k.nonces = fresh;
            }
        });
    }
    feed(shared, Input::Logout);
    let started = with(shared, |d| std::mem::take(&mut d.revocations)).unwrap_or_default();
    let all = Promise::all(&started.into_iter().collect::<js_sys::Array>());
    js::promise(async move {
        let _ = JsFuture::from(all).await;
        Ok(JsValue::UNDEFINED)
    })
}

/// `dispose()`: no more timers, listeners or events. Stored tokens stay, and
/// a refresh already on the wire still lands in storage.
pub fn dispose(shared: &Shared) {
    feed(shared, Input::Dispose);
    // The channel stays open to post (the refresh on the wire still tells
    // the others when it lands), deaf from now on; so does the page.
    let held = with(shared, |d| {
        d.listeners.clear();
        if let Some(c) = &mut d.sync.1 {
            c.mute();
        }
        if let Some(p) = &d.page {
            p.mute();
        }
        (d.timer.take(), std::mem::take(&mut d.page_listeners), d.sync.0.take(), d.tab.take())
    });
    drop(held);
}

/// Adds a listener; the id removes it.
pub fn listen(shared: &Shared, c: Callback) -> Option<u32> {
    with(shared, |d| d.listeners.add(c))
}

/// Removes a listener.
pub fn unlisten(shared: &Shared, id: u32) {
    with(shared, |d| d.listeners.remove(id));
}

#[cfg(feature = "js")]
/// `tm.fetch` without an async state machine, when nothing can need one
/// before the answer: the session has a fresh token (or none is needed), and
/// no DPoP proof, retry or `isUnauthorized` predicate is involved. The
/// request is built and handed to the transport at once, and the transport's
/// own Promise comes back; only a 401 (with `retryOn401`) goes on to the
/// refresh and replay. `None`: take [`fetch`].
pub fn fetch_now(shared: &Shared, input: &JsValue, init: &JsValue) -> Option<Result<Promise, JsValue>> {
    let now = js::now();
    let plan = with(shared, |d| {
        let o = &d.opts;
        if (DPOP && o.dpop) || (BACKENDS && (o.retries > 0 || o.is_unauthorized.is_some())) {
            return None;
        }
        let token = match d.session.token_now(now)? {
            Ok(t) => t.map(|t| (d.session.epoch(), t.to_string())),
            Err(e) => return Some(Err(e)),
        };
        let version = d.session.version();
        let cached = d.bearer.as_ref().filter(|(v, _)| *v == version).map(|(_, b)| b.clone());
        let how = (o.fetch.clone(), o.retry_on_401, o.idempotency_keys, d.device.clone());
        Some(Ok((token, (cached, version), how)))
    })??;
    let (token, (cached, version), (given, replay, keys, device)) = match plan {
        Ok(p) => p,
        Err(e) => return Some(Err(e.into())),
    };
    Some((|| {
        let tr = Transport::new(given.as_ref()).ok_or_else(|| {
            Error::Options("this host has no global fetch: pass options.fetch (see the README for mini-program adapters)".into())
        })?;
        let out = Outgoing::new(input, init)?;
        let (url, raw) = (out.url(), out.is_raw());
        let allowed = with(shared, |d| http::allowed(&d.opts.allowed_origins, &url, raw)) == Some(true);
        let extra = if allowed { extras(&out, keys, device) } else { Vec::new() };
        let token = token.filter(|_| allowed && !out.has_authorization());
        let bearer = token.as_ref().map(|(_, t)| {
            cached.unwrap_or_else(|| {
                let b = JsValue::from_str(&["Bearer ", t].concat());
                with(shared, |d| d.bearer = Some((version, b.clone())));
                b
            })
        });
        let add: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let spare = if replay && token.is_some() { out.spare() } else { None };
        let (i, o) = out.parts(&add, bearer.as_ref())?;
        let sent = tr.call(&i, &o);
        let (Some(spare), Some((epoch, token))) = (spare, token) else { return Ok(sent) };
        // The answer is looked at once, synchronously: anything but a 401
        // goes to the caller as it came.
        let id = Replays::add(Replay { shared: Rc::downgrade(shared), tr, spare, epoch, token, extra });
        let check = Replays::check(id);
        let then = js::method(&sent, "then").ok_or(JsValue::NULL)?;
        Ok(then.call2(&sent, &check, &check)?.unchecked_into())
    })())
}

#[cfg(feature = "js")]
/// What a fast-path request needs for its refresh and replay after a 401.
struct Replay {
    shared: Weak<RefCell<Driver>>,
    tr: Transport,
    spare: Outgoing,
    epoch: u32,
    token: String,
    extra: Vec<(String, String)>,
}

#[cfg(feature = "js")]
thread_local! {
    /// Fast-path requests on the wire, by id.
    static REPLAYS: Cell<(u32, Vec<(u32, Replay)>)> = const { Cell::new((0, Vec::new())) };
    /// The function every fast-path answer (or failure) passes through,
    /// made once for the page: a `Closure` per request costs a wasm-bindgen
    /// wrapper and a FinalizationRegistry entry each (measured: a third of
    /// tm.fetch's own time).
    static CHECK: Closure<dyn FnMut(f64, JsValue) -> JsValue> = Closure::new(|id: f64, r: JsValue| Replays::answered(id as u32, r));
}

/// The table of fast-path requests awaiting their answer.
#[cfg(feature = "js")]
struct Replays;

#[cfg(feature = "js")]
impl Replays {
    fn add(r: Replay) -> u32 {
        let (mut next, mut list) = REPLAYS.take();
        next = next.wrapping_add(1);
        list.push((next, r));
        REPLAYS.set((next, list));
        next
    }

    fn take(id: u32) -> Option<Replay> {
        let (next, mut list) = REPLAYS.take();
        let r = take_first(&mut list, |(i, _)| *i == id).map(|(_, r)| r);
        REPLAYS.set((next, list));
        r
    }

    /// The page-wide check, bound to request `id`.
    fn check(id: u32) -> JsValue {
        CHECK.with(|c| c.as_ref().unchecked_ref::<js_sys::Function>().bind1(&JsValue::NULL, &JsValue::from(id)).into())
    }

    /// A fast-path answer: as it came, or after a 401 the replay's. A
    /// failure (what the transport rejected with: it has no status) is
    /// passed on as a rejection.
    fn answered(id: u32, resp: JsValue) -> JsValue {
        let r = Self::take(id);
        if js::get(&resp, "status").as_f64().is_none() {
            return Promise::reject(&resp).into();
        }
        let Some(r) = r else { return resp };
        let Some(shared) = r.shared.upgrade().filter(|_| http::status(&resp) == 401) else { return resp };
        js::promise(async move {
            match token_for(&shared, Want::Replay(r.token.clone()), Some(r.epoch)).await {
                Ok((e, Some(n))) if n != r.token => {
                    send_with(&shared, &r.tr, &r.spare, Some(&(e, n)), &r.extra, false).await.map_err(|f| FetchError::from(f).into())
                }
                _ => Ok(resp),
            }
        })
        .into()
    }
}

/// The headers an allowed origin gets besides the token: the device id, and
/// an idempotency key on changing requests (neither replaces the caller's).
fn extras(out: &Outgoing, keys: bool, device: Option<(String, String)>) -> Vec<(String, String)> {
    let mut extra = Vec::new();
    if !BACKENDS {
        return extra;
    }
    if let Some((h, id)) = device.filter(|(h, _)| !out.has_header(h)) {
        extra.push((h, id));
    }
    if keys && retry::wants_key(&out.method()) && !out.has_header("idempotency-key") {
        extra.push(("Idempotency-Key".into(), retry::uuid_v4(&js::random_bytes(16))));
    }
    extra
}

/// Why `tm.fetch` gave no answer: Tessera's own refusal (no tokens, the
/// session changed, disposed), or what the transport or the `Request`
/// constructor threw, passed on as it came.
pub enum FetchError {
    /// Tessera refused or gave up (boxed: the error is large, and every
    /// step of the fetch future moves this enum; measured 0.2 KB gzipped).
    Tessera(Box<Error>),
    /// The transport rejected (offline, DNS, CORS), or the request could not be built.
    Transport(JsValue),
}

impl From<Error> for FetchError {
    fn from(e: Error) -> FetchError {
        FetchError::Tessera(Box::new(e))
    }
}

impl From<FetchError> for JsValue {
    fn from(e: FetchError) -> JsValue {
        match e {
            FetchError::Tessera(e) => (*e).into(),
            FetchError::Transport(v) => v,
        }
    }
}

/// What went wrong sending one attempt of a `tm.fetch` request.
enum Failed {
    /// The transport rejected (offline, DNS, CORS, interrupted): may be retried.
    Network(JsValue),
    /// Not sent, and not to be retried: the session changed, or the request
    /// could not be built.
    Not(FetchError),
}

impl From<Failed> for FetchError {
    fn from(f: Failed) -> FetchError {
        match f {
            Failed::Network(v) => FetchError::Transport(v),
            Failed::Not(e) => e,
        }
    }
}

/// `tm.fetch`: the request, with the token (and the device id, and an
/// idempotency key) attached when it goes to an allowed origin; after a
/// refusal from there, a refresh (once, shared with every other caller) and
/// one replay; after a network error or a 429/502/503/504, up to `retries`
/// repeats of a request that is safe to repeat; with DPoP, one more send
/// after a nonce or proof challenge.
///
/// Generic over the error type, so each front door gets its own errors
/// without a wrapping future: `JsValue` for the JS API (what it rejects
/// with), [`FetchError`] for the Rust API.
pub async fn fetch<E: From<Error> + From<FetchError>>(shared: Shared, input: JsValue, init: JsValue) -> Result<JsValue, E> {
    let plan = with(&shared, |d| {
        let o = &d.opts;
        let how = (o.retry_on_401, o.is_unauthorized.clone(), o.idempotency_keys, o.retries, o.dpop);
        (Transport::new(o.fetch.as_ref()), o.allowed_origins.clone(), how, d.device.clone())
    });
    let (tr, origins, (replay, unauthorized, keys, retries, dpop_on), device) = plan.ok_or(Error::Disposed)?;
    let tr = tr.ok_or_else(|| {
        Error::Options("this host has no global fetch: pass options.fetch (see the README for mini-program adapters)".into())
    })?;
    let out = Outgoing::new(&input, &init).map_err(|e| E::from(FetchError::Transport(e)))?;
    let allowed = out.is_for(&origins);
    let method = out.method();
    let extra = if allowed { extras(&out, keys, device) } else { Vec::new() };
    let keyed = out.has_header("idempotency-key") || extra.iter().any(|(k, _)| k == "Idempotency-Key");
    let retries = if BACKENDS && retry::may_repeat(&method, keyed) { retries } else { 0 };
    let mut token = None;
    if allowed && !out.has_authorization() {
        if let (e, Some(t)) = token_for(&shared, Want::Fetch, None).await? {
            token = Some((e, t));
        }
    }
    let dpop_on = DPOP && dpop_on && allowed;
    let (mut current, mut attempt, mut replayed, mut challenged) = (out, 0, false, false);
    loop {
        let may_replay = replay && !replayed && token.is_some();
        let may_challenge = dpop_on && !challenged;
        let spare = if attempt < retries || may_replay || may_challenge { current.spare() } else { None };
        let sent_at = js::now();
        let sent = send_with(&shared, &tr, &current, token.as_ref(), &extra, dpop_on).await;
        if let (Ok(resp), true) = (&sent, dpop_on) {
            if dpop_answer(&shared, &current.url(), resp, sent_at, may_challenge).await {
                // A DPoP challenge (use this nonce, a refused proof) is
                // answered once; it says nothing of the token, so a second
                // one goes back to the caller as it is, with no refresh.
                match spare {
                    Some(s) if may_challenge => {
                        challenged = true;
                        current = s;
                        continue;
                    }
                    _ => return sent.map_err(|f| E::from(FetchError::from(f))),
                }
            }
        }
        let ended = match &sent {
            Err(Failed::Not(_)) => retry::Ended::Answer { status: 0, refused: false },
            Err(Failed::Network(_)) => retry::Ended::Network,
            Ok(resp) => {
                retry::Ended::Answer { status: http::status(resp), refused: may_replay && refused(unauthorized.as_ref(), resp).await }
            }
        };
        let retry_after = sent.as_ref().ok().and_then(|r| http::header(r, "retry-after"));
        let next = retry::next(ended, attempt, retries, may_replay, js::random(), retry_after.as_deref());
        let (Some(s), false) = (spare, next == retry::Next::Done || matches!(sent, Err(Failed::Not(_)))) else {
            return sent.map_err(|f| E::from(FetchError::from(f)));
        };
        match next {
            retry::Next::Retry(d) => {
                tabs::sleep(d).await;
                attempt += 1;
                // The token is asked for again: the one sent may have
                // expired or been refreshed meanwhile (and with DPoP, a
                // refreshed one is sent with a proof of its own).
                if let Some((e, _)) = token {
                    let (e, t) = token_for(&shared, Want::Fetch, Some(e)).await?;
                    token = t.map(|t| (e, t));
                }
            }
            _ => match (
                token.clone(),
                token_for(&shared, Want::Replay(token.clone().map(|t| t.1).unwrap_or_default()), token.as_ref().map(|t| t.0)).await,
            ) {
                (Some((_, old)), Ok((e, Some(n)))) if n != old => {
                    token = Some((e, n));
                    replayed = true;
                }
                _ => return sent.map_err(|f| E::from(FetchError::from(f))),
            },
        }
        current = s;
    }
}

/// Reads a DPoP answer from an allowed origin: its nonce is remembered;
/// whether it is a challenge (RFC 9449 s8, s9: use this nonce, or the proof
/// was refused, its time perhaps off: the answer's `Date` tells the server's
/// clock, taken when `may` answer it still). A 400's body is read only
/// when it may be answered.
#[cfg(feature = "dpop")]
async fn dpop_answer(shared: &Shared, url: &str, resp: &JsValue, sent_at: Millis, may: bool) -> bool {
    let status = http::status(resp);
    let mut body = String::new();
    if status == 400 && may {
        // A copy's text: the caller gets the response with its body unread.
        let copy = js::invoke(resp, "clone", &[]).unwrap_or_default();
        body = js::call(&copy, "text", &[]).await.ok().and_then(|v| v.as_string()).unwrap_or_default();
    }
    // A 401's challenge is in its header: known whether or not it may be
    // answered (the caller decides what a second one means).
    let challenge = crate::core::dpop::challenge(status, http::header(resp, "www-authenticate").as_deref(), &body).is_some();
    let date = http::header(resp, "date").map(|d| js_sys::Date::parse(&d)).filter(|d| d.is_finite() && challenge && may);
    learn(shared, url, http::header(resp, "dpop-nonce"), date.map(|d| (d, 0.0, sent_at)));
    challenge
}

/// Without DPoP no answer is a DPoP challenge.
#[cfg(not(feature = "dpop"))]
async fn dpop_answer(_: &Shared, _: &str, _: &JsValue, _: Millis, _: bool) -> bool {
    false
}

/// Whether the server refused the token: `isUnauthorized(response)` on a
/// copy of the response (the caller gets one whose body is unread), or a
/// 401. Only `true` says yes: a predicate that throws, or answers
/// anything else, says no.
#[cfg(feature = "backends")]
async fn refused(predicate: Option<&js_sys::Function>, resp: &JsValue) -> bool {
    let Some(f) = predicate else { return http::status(resp) == 401 };
    let copy = js::invoke(resp, "clone", &[]).unwrap_or_else(|_| resp.clone());
    match f.call1(&JsValue::UNDEFINED, &copy) {
        Ok(v) => JsFuture::from(Promise::resolve(&v)).await.is_ok_and(|v| v.as_bool() == Some(true)),
        Err(_) => false,
    }
}

/// Without the backends' options a refusal is a 401.
#[cfg(not(feature = "backends"))]
async fn refused(_: Option<&js_sys::Function>, resp: &JsValue) -> bool {
    http::status(resp) == 401
}

/// Sends one attempt of `out`, with `token` (and `extra` headers), unless
/// the session changed since the token was handed out (F1): then nothing
/// is sent. With DPoP (`dpop_on`) a DPoP-bound token goes as
/// `Authorization: DPoP` with a proof; a signed-out POST (a token request)
/// gets a proof too.
async fn send_with(
    shared: &Shared,
    tr: &Transport,
    out: &Outgoing,
    token: Option<&(u32, String)>,
    extra: &[(String, String)],
    dpop_on: bool,
) -> Result<JsValue, Failed> {
    let bound =
        token.is_some_and(|(_, t)| with(shared, |d| d.session.tokens().is_some_and(|c| c.dpop && c.access_token == *t)) == Some(true));
    let method = out.method();
    // `Some(token)`: a proof goes with the request (and with the token).
    let prove = match (dpop_on, bound, token) {
        (true, true, Some((_, t))) => Some(Some(t.as_str())),
        (true, _, None) if method == "POST" => Some(None),
        _ => None,
    };
    let proof = match prove {
        Some(t) => proof_for(shared, &method, &out.url(), t).await.ok().and_then(|p| p.as_string()),
        None => None,
    };
    let auth = token.map(|(_, t)| JsValue::from_str(&[if bound { "DPoP " } else { "Bearer " }, t].concat()));
    let mut add: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Some(p) = &proof {
        add.push(("DPoP", p));
    }
    let (i, o) = out.parts(&add, auth.as_ref()).map_err(|e| Failed::Not(FetchError::Transport(e)))?;
    if let Some((epoch, _)) = token {
        if with(shared, |d| d.session.epoch()) != Some(*epoch) {
            return Err(Failed::Not(Error::Superseded.into()));
        }
    }
    tr.send(&i, &o).await.map_err(Failed::Network)
}

/// Read access for the API's getters (pure Rust inside).
pub fn read<R>(shared: &Shared, f: impl FnOnce(&Session, &'static str) -> R) -> Option<R> {
    with(shared, |d| f(&d.session, d.storage_name))
}
