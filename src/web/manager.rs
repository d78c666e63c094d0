//! The manager's state and its life: loading, setting, refreshing,
//! scheduling, logging out. The `#[wasm_bindgen]` surface in `api.rs` is a
//! thin shell over these functions.
//!
//! Borrow discipline: no `RefCell` borrow is held across an `.await` or a
//! call into user JS (listeners may re-enter the manager).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::Promise;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::error::{detail_with_error, Error};
use super::events::{call_all, Event, Listeners};
use super::http;
use super::js::{self, Listener, Timeout};
use super::options::Options;
use super::storage::{self, Backend, OnError, Pending};
use super::tabs::{self, Channel, TabLock};
use crate::core::record::{self, Read};
use crate::core::refresh::{self, Failure};
use crate::core::schedule::{self, Millis};
use crate::core::token::TokenSet;

/// Everything one manager holds.
pub struct Inner {
    /// The validated options.
    pub opts: Options,
    /// Where the record lives.
    pub backend: Backend,
    /// The session, if signed in.
    pub tokens: Option<TokenSet>,
    /// Bumped on every change of session; a refresh that started under an
    /// older generation must not apply its result (a late response must not
    /// revive a logged-out session).
    pub generation: u32,
    /// The refresh in flight, shared by every caller (single flight).
    pub inflight: Option<Promise>,
    /// Consecutive transient refresh failures.
    pub attempt: u32,
    /// When the next automatic retry is due after a transient failure.
    pub retry_at: Option<Millis>,
    /// The one timer: the next refresh, retry, or expiry.
    pub timer: Option<Timeout>,
    /// Page and tab listeners (visibility, focus, online, storage).
    pub dom: Vec<Listener>,
    /// The user's event listeners.
    pub listeners: Listeners,
    /// Server clock minus device clock, ms.
    pub skew: Millis,
    /// After dispose(): no timers, no events.
    pub disposed: bool,
    /// `storageError` was emitted already (it is said once).
    pub storage_warned: bool,
    /// `expired` was emitted for these tokens already.
    pub expired_emitted: bool,
    /// What `tm.storage` reports.
    pub storage_name: &'static str,
    /// Other tabs share this record (localStorage with `syncTabs`).
    pub tab_sync: bool,
    /// The BroadcastChannel to other tabs, when `tab_sync`.
    pub channel: Option<Channel>,
}

impl Inner {
    /// Replaces the session: new tokens (or none) start a new generation
    /// with no backoff and no expiry announced yet. Returns the old tokens.
    fn replace_tokens(&mut self, tokens: Option<TokenSet>) -> Option<TokenSet> {
        self.generation = self.generation.wrapping_add(1);
        self.attempt = 0;
        self.retry_at = None;
        self.expired_emitted = false;
        std::mem::replace(&mut self.tokens, tokens)
    }
}

/// A manager shared by the API object, its timers and its listeners.
pub type Shared = Rc<RefCell<Inner>>;

/// Creates a manager and starts loading stored tokens. The Promise is `ready`.
pub fn create(opts: Options) -> (Shared, Promise) {
    let (backend, open_error) = storage::open(&opts.storage);
    let storage_name = backend.name(&opts.storage);
    let tab_sync = opts.sync_tabs && storage_name == "localStorage";
    let shared = Rc::new(RefCell::new(Inner {
        opts,
        backend,
        tokens: None,
        generation: 0,
        inflight: None,
        attempt: 0,
        retry_at: None,
        timer: None,
        dom: Vec::new(),
        listeners: Listeners::default(),
        skew: 0.0,
        disposed: false,
        storage_warned: false,
        expired_emitted: false,
        storage_name,
        tab_sync,
        channel: None,
    }));
    if let Some(e) = open_error {
        storage_failed(&Rc::downgrade(&shared), e);
    }
    let pending = {
        let i = shared.borrow();
        i.backend.read(&i.opts.storage_key, &on_error(&shared))
    };
    let ready = match pending {
        Pending::Now(text) => {
            restore(&shared, text, 0);
            Promise::resolve(&JsValue::UNDEFINED)
        }
        Pending::Later(p) => {
            let s = shared.clone();
            future_to_promise(async move {
                let text = match JsFuture::from(p).await {
                    Ok(v) => v.as_string(),
                    Err(e) => {
                        storage_failed(&Rc::downgrade(&s), e);
                        None
                    }
                };
                restore(&s, text, 0);
                Ok(JsValue::UNDEFINED)
            })
        }
    };
    watch_page(&shared);
    if tab_sync {
        watch_tabs(&shared);
    }
    (shared, ready)
}

/// Follows other tabs: the `storage` event fires in every other tab of the
/// origin; the BroadcastChannel also reaches managers in this same page and
/// hosts whose storage events are unreliable. Both only say "look again".
fn watch_tabs(shared: &Shared) {
    let weak = Rc::downgrade(shared);
    let key = shared.borrow().opts.storage_key.clone();
    let listener = Listener::new(&js::global().into(), "storage", move |e| {
        let k = js::get(&e, "key");
        // `key` is null when the whole storage was cleared.
        if k.is_null() || k.as_string().as_deref() == Some(key.as_str()) {
            if let Some(s) = weak.upgrade() {
                remote_change(&s);
            }
        }
    });
    let weak = Rc::downgrade(shared);
    let channel = Channel::open(&shared.borrow().opts.storage_key, move |_| {
        if let Some(s) = weak.upgrade() {
            remote_change(&s);
        }
    });
    let mut i = shared.borrow_mut();
    i.dom.extend(listener);
    i.channel = channel;
}

/// Reads the record another tab changed and follows it: new tokens are
/// adopted (and announced), a removed record is a logout.
pub fn remote_change(shared: &Shared) {
    let stored = {
        let i = shared.borrow();
        if i.disposed {
            return;
        }
        match i.backend.read(&i.opts.storage_key, &on_error(shared)) {
            Pending::Now(text) => record::decode(text.as_deref()),
            Pending::Later(_) => return,
        }
    };
    match stored {
        Read::Tokens(t) => {
            if adopt(shared, t) {
                emit_tokens(shared);
            }
        }
        Read::Empty => {
            let had = {
                let mut i = shared.borrow_mut();
                i.timer = None;
                i.replace_tokens(None).is_some()
            };
            if had {
                emit(shared, Event::Logout, &js::object(&[("reason", "remote".into())]));
            }
        }
        Read::Corrupt | Read::FutureVersion => {}
    }
}

/// Takes tokens another tab stored, unless they are the ones held. Returns
/// whether anything changed. Nothing is written back.
fn adopt(shared: &Shared, t: TokenSet) -> bool {
    {
        let mut i = shared.borrow_mut();
        let same = i.tokens.as_ref().is_some_and(|c| c.access_token == t.access_token && c.refresh_token == t.refresh_token);
        if same {
            return false;
        }
        i.replace_tokens(Some(t));
    }
    schedule(shared);
    true
}

/// Tells the other tabs the record changed.
fn notify_tabs(shared: &Shared) {
    if let Some(c) = &shared.borrow().channel {
        c.notify();
    }
}

/// Adopts a stored record, unless the session changed since `generation`
/// (tokens set while an async adapter was still answering win).
fn restore(shared: &Shared, text: Option<String>, generation: u32) {
    let read = record::decode(text.as_deref());
    let corrupt = matches!(read, Read::Corrupt);
    {
        let mut i = shared.borrow_mut();
        if i.generation != generation || i.disposed {
            return;
        }
        if let Read::Tokens(t) = read {
            i.tokens = Some(t);
        }
    }
    if corrupt {
        // Drop what we cannot read, so it cannot trip anyone again.
        write_key(shared, None);
    }
    schedule(shared);
}

/// The storage error callback: reports once, from a later task (it may be
/// called while the manager is borrowed).
pub fn on_error(shared: &Shared) -> OnError {
    let weak = Rc::downgrade(shared);
    Rc::new(move |e| storage_failed(&weak, e))
}

fn storage_failed(weak: &Weak<RefCell<Inner>>, error: JsValue) {
    let weak = weak.clone();
    js::later(move || {
        let Some(s) = weak.upgrade() else { return };
        let name = {
            let mut i = s.borrow_mut();
            if std::mem::replace(&mut i.storage_warned, true) {
                return;
            }
            i.storage_name
        };
        let detail = js::object(&[("error", error), ("storage", name.into()), ("fallback", "memory".into())]);
        emit(&s, Event::StorageError, &detail);
    });
}

/// Writes the current tokens (or their absence) to storage.
fn write_key(shared: &Shared, text: Option<String>) {
    let i = shared.borrow();
    i.backend.write(&i.opts.storage_key, text.as_deref(), &on_error(shared));
}

fn persist(shared: &Shared) {
    let text = shared.borrow().tokens.as_ref().map(record::encode);
    write_key(shared, text);
}

/// Calls the listeners of `event` with `detail`.
pub fn emit(shared: &Shared, event: Event, detail: &JsValue) {
    let list = shared.borrow().listeners.for_event(event);
    call_all(list, detail);
}

fn emit_tokens(shared: &Shared) {
    let detail = {
        let i = shared.borrow();
        let Some(t) = &i.tokens else { return };
        js::object(&[
            ("accessToken", t.access_token.as_str().into()),
            ("expiresAt", t.expires_at.map_or(JsValue::UNDEFINED, JsValue::from)),
        ])
    };
    emit(shared, Event::Tokens, &detail);
}

/// Installs new tokens: memory, storage, schedule, then the `tokens` event.
pub fn install(shared: &Shared, tokens: TokenSet) {
    shared.borrow_mut().replace_tokens(Some(tokens));
    persist(shared);
    notify_tabs(shared);
    schedule(shared);
    emit_tokens(shared);
}

/// Forgets the session in memory and storage. Returns what was held.
pub fn clear(shared: &Shared) -> Option<TokenSet> {
    let old = {
        let mut i = shared.borrow_mut();
        i.timer = None;
        i.replace_tokens(None)
    };
    persist(shared);
    notify_tabs(shared);
    old
}

/// Whether this manager can renew its tokens by itself.
fn can_refresh(i: &Inner) -> bool {
    i.opts.token_endpoint.is_some() && i.tokens.as_ref().is_some_and(|t| t.refresh_token.is_some())
}

/// Device-clock time at which the current tokens should be refreshed.
fn refresh_due_at(i: &Inner) -> Option<Millis> {
    let t = i.tokens.as_ref()?;
    let e = t.expires_at?;
    Some(schedule::next_refresh_at(e, t.received_at, i.opts.refresh_margin))
}

/// What the timer should do next, and when.
enum Next {
    Refresh(Millis),
    Expire(Millis),
}

fn next_action(i: &Inner) -> Option<Next> {
    let t = i.tokens.as_ref()?;
    if i.opts.auto_refresh && can_refresh(i) {
        if let Some(r) = i.retry_at {
            return Some(Next::Refresh(r));
        }
        return refresh_due_at(i).map(Next::Refresh);
    }
    if i.expired_emitted {
        return None;
    }
    t.expires_at.map(|e| Next::Expire(e - i.opts.leeway))
}

/// When the next automatic refresh is due, if one is planned.
pub fn next_refresh(i: &Inner) -> Option<Millis> {
    match next_action(i) {
        Some(Next::Refresh(at)) if !i.disposed => Some(at),
        _ => None,
    }
}

/// Arms (or disarms) the one timer from the current state.
pub fn schedule(shared: &Shared) {
    let mut i = shared.borrow_mut();
    i.timer = None;
    if i.disposed {
        return;
    }
    let at = match next_action(&i) {
        Some(Next::Refresh(at) | Next::Expire(at)) => at,
        None => return,
    };
    let weak = Rc::downgrade(shared);
    i.timer = Timeout::new(schedule::timer_delay(at, js::now()), move || {
        if let Some(s) = weak.upgrade() {
            wasm_bindgen_futures::spawn_local(tick(s, false));
        }
    });
}

/// Timer fired, or the page woke up (visible, online, focused): do what is
/// due, or re-arm. `force_retry` skips a pending backoff (back online).
pub async fn tick(shared: Shared, force_retry: bool) {
    let now = js::now();
    let action = {
        let mut i = shared.borrow_mut();
        if i.disposed {
            return;
        }
        if force_retry && i.retry_at.is_some() {
            i.retry_at = Some(now);
        }
        next_action(&i)
    };
    match action {
        Some(Next::Refresh(at)) if now >= at => {
            let _ = refresh_shared(&shared).await;
        }
        Some(Next::Expire(at)) if now >= at => {
            shared.borrow_mut().expired_emitted = true;
            emit(&shared, Event::Expired, &js::object(&[]));
        }
        _ => schedule(&shared),
    }
}

/// Refreshes, or joins the refresh already running.
pub async fn refresh_shared(shared: &Shared) -> Result<(), JsValue> {
    let p = {
        let mut i = shared.borrow_mut();
        match &i.inflight {
            Some(p) => p.clone(),
            None => {
                let p = future_to_promise(run_refresh(shared.clone()));
                i.inflight = Some(p.clone());
                p
            }
        }
    };
    JsFuture::from(p).await.map(drop)
}

async fn run_refresh(shared: Shared) -> Result<JsValue, JsValue> {
    let result = exchange(&shared).await;
    shared.borrow_mut().inflight = None;
    result.map(|()| JsValue::UNDEFINED).map_err(|e| e.to_js())
}

async fn exchange(shared: &Shared) -> Result<(), Error> {
    // One tab at a time: the refresh token rotates, and the server takes a
    // second use of the old one as theft and ends the session.
    let shared_storage = {
        let i = shared.borrow();
        match (&i.backend, i.tab_sync) {
            (Backend::Web(s), true) => Some((s.clone(), i.opts.storage_key.clone(), i.opts.timeout)),
            _ => None,
        }
    };
    let _lock: Option<TabLock> = match shared_storage {
        Some((storage, key, hold)) => {
            let held_before = shared.borrow().tokens.as_ref().map(|t| t.access_token.clone());
            let (lock, contended) = tabs::lock(&storage, &key, hold).await;
            // Whoever held the lock before us has probably refreshed. Its
            // write may reach this tab's copy of localStorage a moment after
            // the lock does (tabs can be separate processes): give it a moment.
            if contended {
                tabs::wait_for(750.0, || {
                    let stored = storage.get_item(&key).ok().flatten();
                    match record::decode(stored.as_deref()) {
                        Read::Tokens(t) => Some(t.access_token) != held_before,
                        _ => true,
                    }
                })
                .await;
            }
            remote_change(shared);
            let i = shared.borrow();
            let now = js::now();
            let adopted = i.tokens.as_ref().map(|t| t.access_token.clone()) != held_before;
            if adopted && refresh_due_at(&i).is_none_or(|at| now < at) {
                return if i.tokens.is_some() { Ok(()) } else { Err(Error::Superseded) };
            }
            Some(lock)
        }
        None => None,
    };
    let (generation, endpoint, body, format, timeout, transport) = {
        let i = shared.borrow();
        let t = i.tokens.as_ref().ok_or(Error::NoTokens)?;
        let rt = t.refresh_token.as_deref().ok_or(Error::CannotRefresh("the server issued no refresh token"))?;
        let ep = i.opts.token_endpoint.clone().ok_or(Error::CannotRefresh("no tokenEndpoint option was given"))?;
        let params = refresh::refresh_params(rt, i.opts.client_id.as_deref(), i.opts.scope.as_deref());
        let body = refresh::encode_body(i.opts.body_format, &params);
        (i.generation, ep, body, i.opts.body_format, i.opts.timeout, http::transport(&i.opts))
    };
    let sent_at = js::now();
    let answer = http::post(&transport?, &endpoint, format.content_type(), &body, timeout).await;
    let received_at = js::now();
    let outcome = {
        let mut i = shared.borrow_mut();
        // The server's Date header tells how far the device clock is off;
        // it has 1 s resolution, so smaller differences are noise.
        let date = answer.as_ref().ok().and_then(|a| a.date.as_deref()).map(js_sys::Date::parse);
        if let Some(server) = date.filter(|d| d.is_finite()) {
            let estimate = server + 500.0 - (sent_at + received_at) / 2.0;
            i.skew = if estimate.abs() > 1_500.0 { estimate } else { 0.0 };
        }
        if i.generation != generation {
            // Logged out or given new tokens meanwhile: this answer is stale.
            return if i.tokens.is_some() { Ok(()) } else { Err(Error::Superseded) };
        }
        let r = answer.and_then(|a| refresh::classify(a.status, &a.body, a.retry_after.as_deref(), received_at, i.skew));
        r.map(|(t, inferred)| {
            if let Some(s) = inferred {
                i.skew = s;
            }
            t.inherit_refresh_token(i.tokens.as_ref())
        })
    };
    match outcome {
        Ok(tokens) => {
            install(shared, tokens);
            Ok(())
        }
        Err(f) if f.is_fatal() => {
            clear(shared);
            let e = Error::Refresh(f);
            emit(shared, Event::RefreshError, &detail_with_error(&e, &[("fatal", true.into())]));
            emit(shared, Event::Expired, &js::object(&[]));
            Err(e)
        }
        Err(f) => Err(transient(shared, f)),
    }
}

/// Records a transient failure: keep tokens, back off, tell listeners.
fn transient(shared: &Shared, f: Failure) -> Error {
    let retry_in = {
        let mut i = shared.borrow_mut();
        let retry_after = match &f {
            Failure::Transient { retry_after, .. } => *retry_after,
            Failure::Fatal { .. } => None,
        };
        let delay = schedule::backoff_delay(i.attempt, js_sys::Math::random(), retry_after);
        i.attempt = i.attempt.saturating_add(1);
        if i.opts.auto_refresh {
            i.retry_at = Some(js::now() + delay);
        }
        i.opts.auto_refresh.then_some(delay)
    };
    schedule(shared);
    let e = Error::Refresh(f);
    let mut extra = vec![("fatal", JsValue::FALSE)];
    if let Some(d) = retry_in {
        extra.push(("retryInSeconds", JsValue::from((d / 1000.0).ceil())));
    }
    emit(shared, Event::RefreshError, &detail_with_error(&e, &extra));
    e
}

/// The token to send now, refreshing first when it is due. `Ok(None)` when
/// signed out. A token that is still valid is used even if its refresh
/// failed (or is backing off); an expired one never is.
pub async fn token_for_request(shared: &Shared, strict: bool) -> Result<Option<String>, JsValue> {
    let now = js::now();
    let (token, expired, due, refreshable, backing_off) = {
        let i = shared.borrow();
        let Some(t) = &i.tokens else { return Ok(None) };
        let expired = schedule::is_expired(t.expires_at, now, 0.0, i.opts.leeway);
        let due = expired || refresh_due_at(&i).is_some_and(|at| now >= at);
        let backing_off = i.retry_at.is_some_and(|r| now < r);
        (t.access_token.clone(), expired, due, can_refresh(&i), backing_off)
    };
    if !due {
        return Ok(Some(token));
    }
    if refreshable && (expired || !backing_off) {
        match refresh_shared(shared).await {
            Ok(()) => return Ok(shared.borrow().tokens.as_ref().map(|t| t.access_token.clone())),
            Err(e) if expired || strict => return Err(e),
            Err(_) => return Ok(Some(token)),
        }
    }
    if expired {
        Err(Error::Expired.into())
    } else {
        Ok(Some(token))
    }
}

/// A revocation request still to be sent after logout.
pub struct Revocation {
    transport: http::Transport,
    endpoint: String,
    body: String,
    timeout: Millis,
}

/// Ends the session here, synchronously: memory, storage, timers, then
/// `logout`. Returns the revocation to send when an endpoint is set.
pub fn logout(shared: &Shared, reason: &'static str) -> Option<Revocation> {
    let old = clear(shared);
    let revoke = {
        let i = shared.borrow();
        match (&old, &i.opts.revocation_endpoint) {
            (Some(t), Some(ep)) => {
                // Revoking the refresh token ends the whole grant (RFC 7009 s2.1).
                let (token, hint) = match &t.refresh_token {
                    Some(r) => (r.as_str(), "refresh_token"),
                    None => (t.access_token.as_str(), "access_token"),
                };
                let mut params = vec![("token", token), ("token_type_hint", hint)];
                if let Some(c) = &i.opts.client_id {
                    params.push(("client_id", c));
                }
                let body = refresh::encode_body(refresh::BodyFormat::Form, &params);
                http::transport(&i.opts).ok().map(|transport| Revocation { transport, endpoint: ep.clone(), body, timeout: i.opts.timeout })
            }
            _ => None,
        }
    };
    emit(shared, Event::Logout, &js::object(&[("reason", reason.into())]));
    revoke
}

impl Revocation {
    /// Sends it; best effort, failures are ignored (the tokens are gone here anyway).
    pub async fn send(self) {
        let ct = refresh::BodyFormat::Form.content_type();
        let _ = http::post(&self.transport, &self.endpoint, ct, &self.body, self.timeout).await;
    }
}

/// Stops timers and listeners. Tokens stay in storage for the next page.
pub fn dispose(shared: &Shared) {
    let (timer, dom, channel) = {
        let mut i = shared.borrow_mut();
        i.disposed = true;
        i.listeners.clear();
        (i.timer.take(), std::mem::take(&mut i.dom), i.channel.take())
    };
    // Dropped outside the borrow: removing a listener calls into JS.
    drop(timer);
    drop(dom);
    drop(channel);
}

/// Listens for the page waking up: timers are throttled in background tabs
/// and do not run while a laptop sleeps, so check again when it matters.
fn watch_page(shared: &Shared) {
    let global: JsValue = js::global().into();
    let document = js::get(&global, "document");
    let mut dom = Vec::new();
    let mut on = |target: &JsValue, kind: &'static str, force: bool| {
        let weak = Rc::downgrade(shared);
        if let Some(l) = Listener::new(target, kind, move |_| {
            if let Some(s) = weak.upgrade() {
                wasm_bindgen_futures::spawn_local(tick(s, force));
            }
        }) {
            dom.push(l);
        }
    };
    on(&document, "visibilitychange", false);
    on(&global, "focus", false);
    on(&global, "online", true);
    shared.borrow_mut().dom = dom;
}
