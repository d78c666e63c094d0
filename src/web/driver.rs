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
    page: Vec<Listener>,
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
    /// The `Bearer …` header value of the current tokens, as a JS string,
    /// with the tokens' version: built once per token, not per request.
    #[cfg(feature = "js")]
    bearer: Option<(u32, JsValue)>,
}

/// DPoP's state: the key (a Promise of `{ pair, header }`, see `dpop::load`),
/// the IndexedDB name it is kept under (none in memory), the servers'
/// nonces by origin, the session epoch the key was loaded for (`None`: load
/// again), and whether that load makes a new key (`logout()`).
struct KeyState {
    key: Promise,
    name: Option<String>,
    /// A JS object without prototype, origin → nonce. Nonces come only from
    /// allowed origins and the token endpoint, so it stays that small.
    nonces: JsValue,
    epoch: Option<u32>,
    forget: bool,
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
        page: Vec::new(),
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
        #[cfg(feature = "js")]
        bearer: None,
    }));
    if let Some(e) = open_error {
        // Told from a later task: listeners attached right after the
        // constructor returns hear it.
        let weak = Rc::downgrade(&shared);
        js::later(move || {
            if let Some(s) = weak.upgrade() {
                storage_failure(&s, e, false);
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
                storage_failure(&s, e, false);
            }
        });
    });
    let ready = match backend.read(&key, &later) {
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
                        storage_failure(&s, e, false);
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
        let keys = KeyState { key: dpop::load(name.clone(), false), name, nonces: dpop::table(), epoch: Some(0), forget: false };
        with(&shared, |d| d.dpop = Some(keys));
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
    let Some(client) = with(shared, |d| d.session.config().client.clone()) else { return };
    feed(shared, Input::Loaded(record::decode(text.as_deref(), &client)));
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

/// Loads the DPoP key again when the session changed (a sign-in here or in
/// another tab, a logout): its tokens are bound to the key stored now,
/// which another tab may have made; after `logout()`, to a new key. In
/// memory there is only this manager's key, new after a logout. Called
/// before the change's effects run, so a listener that signs in again
/// signs with the key its tokens will be used with.
fn rekey(shared: &Shared) {
    let reload = with(shared, |d| {
        let epoch = d.session.epoch();
        let k = d.dpop.as_mut().filter(|k| DPOP && k.epoch != Some(epoch) && (k.forget || k.name.is_some()))?;
        k.epoch = Some(epoch);
        Some((k.name.clone(), std::mem::take(&mut k.forget)))
    });
    if let Some(Some((name, forget))) = reload {
        let p = dpop::load(name, forget);
        with(shared, |d| d.dpop.as_mut().map(|k| k.key = p));
    }
}

fn effect(shared: &Shared, e: Effect, current: bool) {
    match e {
        Effect::Write { record, first } => write(shared, Some(&record), first),
        Effect::Remove => write(shared, None, false),
        Effect::Notify => {
            if let Some(Some(port)) = with(shared, |d| d.sync.1.as_ref().map(Channel::port)) {
                let _ = port.post_message(&JsValue::from_str("changed"));
            }
        }
        Effect::Lock { steal } => lock(shared, steal),
        Effect::Unlock => {
            let old = with(shared, |d| {
                d.lock_gen = d.lock_gen.wrapping_add(1);
                d.lock.take()
            });
            if let Some(Some(LockSlot::Asking(cell))) = old {
                drop(cell.take());
            }
        }
        Effect::Mark(until) => {
            if let Some((Backend::Web(s), key, me)) = with(shared, |d| (d.backend.clone(), lease_key(d), d.me.clone())) {
                tabs::mark(&s, &key, &me, until);
            }
        }
        Effect::Unmark => {
            if let Some((Backend::Web(s), key, me)) = with(shared, |d| (d.backend.clone(), lease_key(d), d.me.clone())) {
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
                (std::mem::take(&mut d.sync), d.lock.take())
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
    let Some((backend, key)) = with(shared, |d| (d.backend.clone(), d.opts.storage_key.clone())) else { return };
    if let Err(e) = backend.write(&key, value, &on_error(shared)) {
        if value.is_some() {
            let _ = backend.write(&key, None, &on_error(shared));
        }
        storage_failure(shared, e, first);
    }
}

/// Storage threw: remember what for `storageError`, and tell the session.
fn storage_failure(shared: &Shared, cause: JsValue, first_copy: bool) {
    with(shared, |d| {
        if d.storage_name != "memory" {
            d.failed.0 = d.storage_name;
        }
        d.failed.1 = cause;
    });
    feed(shared, Input::StorageFailed { first_copy });
}

/// The error callback for asynchronous adapter writes and reads.
fn on_error(shared: &Shared) -> OnError {
    let weak = Rc::downgrade(shared);
    Rc::new(move |e| {
        if let Some(s) = weak.upgrade() {
            storage_failure(&s, e, false);
        }
    })
}

/// The record as another manager left it (shared Web Storage only).
fn read_record(shared: &Shared) -> Option<Read> {
    let (backend, key, client) = with(shared, |d| (d.backend.clone(), d.opts.storage_key.clone(), d.session.config().client.clone()))?;
    let Backend::Web(s) = backend else { return None };
    match s.get_item(&key) {
        Ok(text) => Some(record::decode(text.as_deref(), &client)),
        Err(e) => {
            storage_failure(shared, e, false);
            None
        }
    }
}

/// Asks for the cross-tab lock in a task; the answer is an input.
fn lock(shared: &Shared, steal: bool) {
    let cell = Rc::new(Cell::new(None));
    let Some((backend, name, (key, lease), me, wait, gen, held, client)) = with(shared, |d| {
        d.lock_gen = d.lock_gen.wrapping_add(1);
        d.lock = Some(LockSlot::Asking(cell.clone()));
        let name = ["tessera:", &d.opts.storage_key, if d.tab_id.is_empty() { "" } else { ":" }, &d.tab_id].concat();
        let held = d.session.access_token().map(String::from);
        let client = d.session.config().client.clone();
        (d.backend.clone(), name, (d.opts.storage_key.clone(), lease_key(d)), d.me.clone(), d.opts.timeout, d.lock_gen, held, client)
    }) else {
        return;
    };
    let Backend::Web(storage) = backend else { return };
    let s = shared.clone();
    js::spawn(async move {
        let got = tabs::lock(&storage, &name, &lease, &me, wait, steal, &cell).await;
        let wanted = |s: &Shared| with(s, |d| d.lock_gen == gen).unwrap_or(false);
        match got {
            Got::Lock { lock, contended } => {
                if contended {
                    // Whoever held the lock has probably refreshed. Its write
                    // may reach this tab's copy of the storage a moment after
                    // the lock does (tabs can be separate processes).
                    tabs::wait_for(750.0, || {
                        let now = storage.get_item(&key).ok().flatten();
                        match record::decode(now.as_deref(), &client) {
                            Read::Tokens(t) => Some(t.access_token) != held,
                            _ => true,
                        }
                    })
                    .await;
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
    });
}

/// Sends the refresh grant (RFC 6749 s6), or calls the app's own refresh;
/// the answer is an input. With DPoP the grant carries a proof, and a
/// nonce or proof challenge is answered once (RFC 9449 s8).
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
        (
            Transport::new(o.fetch.as_ref()),
            o.token_endpoint.clone(),
            body,
            o.body_format.content_type(),
            o.timeout,
            d.session.store(),
            custom,
        )
    });
    let Some((tr, endpoint, body, content_type, timeout, store, custom)) = plan else { return };
    let reply = match (custom, tr, endpoint) {
        (Some((f, controller)), _, _) => call_refresh(&shared, flight, &f, &refresh_token, controller.as_ref(), timeout).await,
        (None, Some(tr), Some(endpoint)) => {
            let mut answered = false;
            loop {
                let proof = proof_for(&shared, "POST", &endpoint, None).await.ok().and_then(|p| p.as_string());
                let extra: Vec<(&str, JsValue)> = proof.iter().map(|p| ("DPoP", JsValue::from_str(p))).collect();
                let (reply, nonce) = http::post(&tr, &endpoint, content_type, &body, timeout, &extra).await;
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
                    break reply;
                }
            }
        }
        _ => Reply::Network,
    };
    let stored = if store == Store::Shared { read_record(&shared) } else { None };
    feed(&shared, Input::Answered { flight, reply, stored, random: js::random() });
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
/// a throw (`fatal: true` ends the session). The signal aborts on logout,
/// dispose and after `timeoutSeconds`.
#[cfg(feature = "backends")]
async fn call_refresh(
    shared: &Shared,
    flight: u32,
    f: &js_sys::Function,
    refresh_token: &str,
    controller: Option<&web_sys::AbortController>,
    timeout: Millis,
) -> crate::core::session::Reply {
    use crate::core::session::Reply;
    let signal = controller.map_or(JsValue::UNDEFINED, |c| c.signal().into());
    let arg = js::object(&[("refreshToken", refresh_token.into()), ("signal", signal)]);
    let r = match f.call1(&JsValue::UNDEFINED, &arg) {
        Ok(v) => http::within(Promise::resolve(&v), timeout).await,
        Err(e) => Err(Some(e)),
    };
    with(shared, |d| d.abort.take_if(|(id, _)| *id == flight));
    match r {
        Ok(v) => Reply::Custom(Ok(js_sys::JSON::stringify(&v).ok().and_then(|s| s.as_string()).unwrap_or_default())),
        Err(None) => {
            if let Some(c) = controller {
                c.abort();
            }
            Reply::Timeout
        }
        Err(Some(e)) => Reply::Custom(Err((js::get(&e, "fatal").as_bool() == Some(true), js::get(&e, "message").as_string()))),
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
) -> crate::core::session::Reply {
    crate::core::session::Reply::Network
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
        let _ = http::post(&tr, &endpoint, BodyFormat::Form.content_type(), &body, timeout, &[]).await.0;
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
    with(shared, |d| d.page = page);
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
    let channel = Channel::open(key, weak_later(&weak, remote));
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
        let fast = with(shared, |d| d.session.token_now(now).map(|r| r.map(|t| (d.session.epoch(), t.map(String::from)))));
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
        let (t, skew) = d.session.parse(text, now).map_err(Error::Token)?;
        Ok(d.session.set_tokens(t, skew, sid, now))
    })
    .ok_or(Error::Disposed)??;
    run(shared, fx);
    Ok(())
}

/// `logout()`: ends the session here at once; the Promise settles once the
/// revocation (if configured) was attempted.
pub fn logout(shared: &Shared) -> Promise {
    // The key goes with the session: the next session gets a new one,
    // stored over the old one by `rekey` as the logout runs, signed in or
    // not. The servers' nonces go too: they were given to this session.
    if DPOP {
        let fresh = dpop::table();
        with(shared, |d| {
            if let Some(k) = d.dpop.as_mut() {
                k.forget = true;
                k.epoch = None;
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
    let held = with(shared, |d| {
        d.listeners.clear();
        (d.timer.take(), std::mem::take(&mut d.page), std::mem::take(&mut d.sync), d.tab.take())
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
                if let Some(s) = spare {
                    challenged = true;
                    current = s;
                    continue;
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
/// clock) to answer with one more send, when `may` still.
#[cfg(feature = "dpop")]
async fn dpop_answer(shared: &Shared, url: &str, resp: &JsValue, sent_at: Millis, may: bool) -> bool {
    let status = http::status(resp);
    let mut body = String::new();
    if status == 400 && may {
        // A copy's text: the caller gets the response with its body unread.
        let copy = js::invoke(resp, "clone", &[]).unwrap_or_default();
        body = js::call(&copy, "text", &[]).await.ok().and_then(|v| v.as_string()).unwrap_or_default();
    }
    let challenge = may && crate::core::dpop::challenge(status, http::header(resp, "www-authenticate").as_deref(), &body).is_some();
    let date = http::header(resp, "date").map(|d| js_sys::Date::parse(&d)).filter(|d| d.is_finite() && challenge);
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
