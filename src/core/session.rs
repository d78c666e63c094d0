//! The session: every decision about one signed-in user's tokens, as a state
//! machine without IO, in the manner of quinn-proto's `Connection`.
//!
//! The driver (`src/web/driver.rs`) feeds it [`Input`]s with the time, runs
//! the [`Effect`]s it returns, in order, after releasing every borrow, and
//! keeps one timer armed at [`Session::poll_timeout`]. Nothing here reads a
//! clock, touches storage or the network, or calls into JS, so every race is
//! a host test (`tests/core_session.rs`).
//!
//! Identity is explicit:
//! - `sid`: the session (one sign-in), stored with the record and kept by
//!   every refresh; other tabs compare it to tell a refresh from a new sign-in.
//! - `epoch`: bumped whenever this manager's session changes (sign-in,
//!   logout, adopting another session). A waiting request is answered only
//!   with a token of the epoch it started in.
//! - `version`: bumped on every change of the tokens held, refreshes
//!   included. The driver skips an effect produced under an older version
//!   (an `expired` emitted after a listener already signed in again).

use super::error::Error;
use super::record::{self, Read};
use super::refresh::{self, Failure, Transient};
use super::schedule::{self, Millis};
use super::token::{self, TokenError, TokenSet};

/// Where the record lives, as far as the session's decisions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Nowhere: this manager only.
    Memory,
    /// Storage no other live manager writes (an adapter, or Web Storage with
    /// `syncTabs: false`): write, but never re-read or lock.
    Private,
    /// Web Storage other managers (tabs, or a second manager in this page)
    /// share: refresh under the cross-tab lock, re-read before sending and
    /// before writing back (compare and swap), follow their changes.
    Shared,
}

/// What the session needs to know of the options.
#[derive(Clone, Debug)]
pub struct Config {
    /// A refresh grant is configured (a token endpoint or the app's own refresh).
    pub refreshable: bool,
    /// Refresh by timer before expiry.
    pub auto_refresh: bool,
    /// Refresh this long before expiry (capped at half the lifetime).
    pub margin: Millis,
    /// Treat tokens as expired this much early.
    pub leeway: Millis,
    /// How long a refresh may take; also how long to wait for the tab lock.
    pub timeout: Millis,
    /// A revocation endpoint is configured.
    pub revoke: bool,
    /// The client binding written into records and required of them.
    pub client: String,
    /// Where the record lives.
    pub store: Store,
    /// The tab must be confirmed not to be a copy of another (sessionStorage
    /// is copied into duplicated tabs) before it may refresh.
    pub check_tab: bool,
    /// DPoP (RFC 9449): tokens of type DPoP are accepted.
    pub dpop: bool,
}

/// Why a request wants a token; decides what a failed refresh means to it.
#[derive(Clone, Debug, PartialEq)]
pub enum Want {
    /// `tm.fetch`: a token that has not expired is still used when its
    /// refresh failed transiently.
    Fetch,
    /// `getAccessToken()`: a valid token or an error.
    Token,
    /// `refresh()`: refresh now, even while backing off or when not due.
    Refresh,
    /// The server refused this token (401): a newer one, refreshing once.
    Replay(String),
}

/// Which logout.
///
/// ```
/// assert_eq!(tessera::Reason::Duplicate.as_str(), "duplicate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `logout()` here.
    User,
    /// Another tab logged out (or signed in as another client).
    Remote,
    /// This tab is a copy of another (a duplicated tab, or `window.open`
    /// without `noopener`, with sessionStorage): the session stays with the
    /// original, which holds the only usable refresh token.
    Duplicate,
}

impl Reason {
    /// The `reason` string of the `logout` event.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::User => "user",
            Reason::Remote => "remote",
            Reason::Duplicate => "duplicate",
        }
    }
}

/// What the session reports to listeners (the Rust API's `on`; the JS
/// API's event names in brackets: `tokens`, `refreshError`, `expired`,
/// `logout`, `storageError`).
///
/// ```
/// use tessera::{Event, Reason};
/// let e = Event::Logout(Reason::User);
/// let signed_out = matches!(e, Event::Logout(_) | Event::Expired);
/// assert!(signed_out);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Tokens were set, refreshed, or adopted from another tab.
    Tokens {
        /// The new access token.
        access_token: String,
        /// Its expiry, ms since the epoch, if known.
        expires_at: Option<Millis>,
    },
    /// A refresh failed.
    RefreshError {
        /// What went wrong (fatal or not).
        error: Error,
        /// When the next try is allowed, if the session lives on.
        retry_in: Option<Millis>,
    },
    /// The session is over: tokens can no longer be renewed.
    Expired,
    /// Logged out.
    Logout(Reason),
    /// Storage failed; the session carries on in memory.
    StorageError,
}

/// A refresh request's answer, as the transport delivered it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// An HTTP answer from the token endpoint.
    Http {
        /// The status.
        status: u16,
        /// The body text.
        body: String,
        /// `Retry-After`.
        retry_after: Option<String>,
        /// `Date`, parsed to ms since the epoch.
        date: Option<Millis>,
        /// `Age`, in ms.
        age: Option<Millis>,
        /// When the request was sent (the answer arrived at `now`).
        sent_at: Millis,
    },
    /// The app's own refresh function resolved with a token response (JSON
    /// text), or threw: whether the error said `fatal: true`, and its message.
    Custom(Result<String, (bool, Option<String>)>),
    /// The request did not complete.
    Network,
    /// No answer within the timeout.
    Timeout,
}

/// What happened, for the session to decide on.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The initial read of storage (at once for Web Storage, later for
    /// asynchronous adapters).
    Loaded(Read),
    /// The timer fired.
    Timer,
    /// The page may have slept (visible, focused, back online): timers may
    /// have been missed. `online` also ends a back-off wait.
    Wake {
        /// The network came back.
        online: bool,
    },
    /// A request wants a token. `request` is the driver's id for the
    /// answer; `epoch`, when given, is the epoch the request started in.
    Want {
        /// The driver's id.
        request: u32,
        /// Why.
        kind: Want,
        /// The epoch the request started in, for a replay.
        epoch: Option<u32>,
    },
    /// `logout()`.
    Logout,
    /// `dispose()`.
    Dispose,
    /// The cross-tab lock was granted; `stored` is the record read at once
    /// under it; `marked` says another tab's refresh is on the wire (a live
    /// marker that is not ours: our lock was stolen, or the lease mixed).
    LockGranted {
        /// What storage holds now.
        stored: Read,
        /// Another tab's refresh request is on the wire.
        marked: bool,
    },
    /// The lock did not come within the timeout (a tab frozen holding it).
    LockTimedOut {
        /// What storage holds now.
        stored: Read,
        /// Another tab's refresh request is on the wire.
        marked: bool,
    },
    /// The refresh request `flight` was answered; `stored` is the record
    /// read at once, for the compare and swap (shared storage only).
    Answered {
        /// The flight's id.
        flight: u32,
        /// The answer.
        reply: Reply,
        /// What storage holds now (shared storage only).
        stored: Option<Read>,
        /// A random number in 0..1 for the back-off jitter.
        random: f64,
    },
    /// Another manager changed the record (storage event, channel notice).
    StorageSaw(Read),
    /// Reading or writing storage threw. `first_copy`: the write that threw
    /// was a [`Effect::Write`] with `first` set.
    StorageFailed {
        /// The failed write held the only copy of tokens made here.
        first_copy: bool,
    },
    /// Whether this tab is a copy of another (sessionStorage).
    TabChecked {
        /// Another live tab holds this tab's identity.
        copy: bool,
    },
    /// A server's own answer told its clock (`Date`, ms since the epoch,
    /// and `Age`, ms): a DPoP challenge, which no cache or proxy makes.
    ClockSeen {
        /// `Date`.
        date: Millis,
        /// `Age`.
        age: Millis,
        /// When the request went out (the answer arrived at `now`).
        sent_at: Millis,
    },
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Store this record text under the key. `first`: the tokens were made
    /// here (a sign-in, this manager's own refresh) and exist nowhere else
    /// yet; if this write throws, say so in [`Input::StorageFailed`].
    Write {
        /// The record text.
        record: String,
        /// The only copy of tokens made here.
        first: bool,
    },
    /// Remove the record.
    Remove,
    /// Tell the other managers on this key to look again (no token is sent).
    Notify,
    /// Ask for the cross-tab refresh lock, giving up after the timeout;
    /// `steal` takes it from a holder that is stuck.
    Lock {
        /// Take it from the holder.
        steal: bool,
    },
    /// Release the lock, or abandon the request for it.
    Unlock,
    /// Tell other tabs a refresh request is on the wire until this time.
    Mark(Millis),
    /// Withdraw that.
    Unmark,
    /// Send the refresh grant with this refresh token.
    Send {
        /// The flight's id, to give back with the answer.
        flight: u32,
        /// The refresh token to present.
        refresh_token: String,
    },
    /// The session this flight belonged to is over: abort it where the
    /// transport lets the app decide (the app's own refresh's `signal`).
    Abort {
        /// The flight's id.
        flight: u32,
    },
    /// Revoke a token (RFC 7009), best effort.
    Revoke {
        /// The token.
        token: String,
        /// `refresh_token` or `access_token`.
        hint: &'static str,
    },
    /// Tell listeners.
    Emit(Event),
    /// Answer a waiting request with a token of `epoch`, none (signed out),
    /// or an error.
    Answer {
        /// The driver's id.
        request: u32,
        /// The epoch the token belongs to.
        epoch: u32,
        /// The token, no token, or why not.
        result: Result<Option<String>, Error>,
    },
    /// Storage failed: keep the session in memory from now on and stop
    /// following other tabs.
    UseMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the tab's identity to be confirmed.
    Tab,
    /// Waiting for the cross-tab lock.
    Lock { stolen: bool },
    /// The request is on the wire.
    Sent,
}

#[derive(Clone, Debug)]
struct Flight {
    id: u32,
    sid: String,
    /// The access token this refresh set out to replace: if another tab
    /// replaced it meanwhile (adopted from storage), the refresh is done.
    from: String,
    stage: Stage,
    /// What storage held when the request went out: the answer is written
    /// back only if it still holds that.
    base: Snap,
    /// The refresh token presented.
    sent: Option<String>,
    /// Holds the cross-tab lock (or waits for it).
    locked: bool,
    /// Wrote the on-the-wire marker.
    marked: bool,
}

#[derive(Clone, Debug)]
struct Waiter {
    request: u32,
    epoch: u32,
    kind: Want,
}

/// One manager's session.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    tokens: Option<TokenSet>,
    epoch: u32,
    version: u32,
    now: Millis,
    skew: Millis,
    flight: Option<Flight>,
    /// Flights of sessions that ended while their request was on the wire:
    /// kept to revoke the refresh token their answer carries.
    orphans: Vec<Flight>,
    flights: u32,
    attempt: u32,
    retry_at: Option<Millis>,
    failure: Option<Failure>,
    waiters: Vec<Waiter>,
    expired_said: bool,
    storage_said: bool,
    /// Sessions ended here (logout, fatal refresh): never adopted again, and
    /// a refresh token found for one is revoked.
    ended: Vec<String>,
    /// Storage holds a newer version's record: never overwritten.
    future_stored: bool,
    tab_ok: bool,
    loaded: bool,
    disposed: bool,
}

impl Session {
    /// A session with nothing loaded yet.
    pub fn new(cfg: Config) -> Session {
        let tab_ok = !cfg.check_tab;
        Session {
            cfg,
            tokens: None,
            epoch: 0,
            version: 0,
            now: 0.0,
            skew: 0.0,
            flight: None,
            orphans: Vec::new(),
            flights: 0,
            attempt: 0,
            retry_at: None,
            failure: None,
            waiters: Vec::new(),
            expired_said: false,
            storage_said: false,
            ended: Vec::new(),
            future_stored: false,
            tab_ok,
            loaded: false,
            disposed: false,
        }
    }

    // ---- getters -------------------------------------------------------

    /// The tokens held.
    pub fn tokens(&self) -> Option<&TokenSet> {
        self.tokens.as_ref()
    }

    /// The current access token.
    pub fn access_token(&self) -> Option<&str> {
        self.tokens.as_ref().map(|t| t.access_token.as_str())
    }

    /// The session's epoch (see the module docs).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The tokens' version (see the module docs).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Server clock minus device clock, ms.
    pub fn skew(&self) -> Millis {
        self.skew
    }

    /// Where the record lives now (storage failures move it to memory).
    pub fn store(&self) -> Store {
        self.cfg.store
    }

    /// The options the session was made with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the access token is expired, or will be within `within` ms;
    /// true without a token.
    pub fn is_expired(&self, now: Millis, within: Millis) -> bool {
        let now = now.max(self.now);
        self.tokens.as_ref().is_none_or(|t| schedule::is_expired(t.expires_at, now, within, self.cfg.leeway))
    }

    /// When the automatic refresh (or its retry) is due, if one is planned.
    pub fn next_refresh_at(&self) -> Option<Millis> {
        if self.disposed || !self.cfg.auto_refresh || !self.can_refresh() {
            return None;
        }
        self.retry_at.or_else(|| self.refresh_due())
    }

    /// When the driver's timer should fire next; never before the latest
    /// time the session has seen, `None` for no timer.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.disposed || self.flight.is_some() || !self.tab_ok {
            return None;
        }
        let t = self.tokens.as_ref()?;
        let at = if self.can_refresh() {
            self.next_refresh_at()?
        } else if self.expired_said {
            return None;
        } else {
            t.expires_at? - self.cfg.leeway
        };
        Some(at.max(self.now))
    }

    /// The token a request may use right now without any change to the
    /// session, if that is decided already: `Some(Ok(None))` signed out,
    /// `Some(Ok(Some(token)))` fresh, `None` when it must wait (or be refused
    /// by [`Session::handle`]). The synchronous fast path of `tm.fetch`.
    pub fn token_now(&self, now: Millis) -> Option<Result<Option<&str>, Error>> {
        if self.disposed {
            return Some(Err(Error::Disposed));
        }
        let Some(t) = &self.tokens else { return Some(Ok(None)) };
        let now = now.max(self.now);
        (!self.is_due(t, now)).then_some(Ok(Some(t.access_token.as_str())))
    }

    /// Reads a token response (`setTokens`) with the session's clock skew.
    pub fn parse(&self, text: &str, now: Millis) -> Result<(TokenSet, Option<Millis>), TokenError> {
        let r = token::parse_with_skew(text, now.max(self.now), self.skew)?;
        self.typed(r)
    }

    /// Refuses a DPoP token unless DPoP is on (RFC 6749 s7.1: never use a
    /// token of a type the client does not understand).
    fn typed<T>(&self, r: (TokenSet, T)) -> Result<(TokenSet, T), TokenError> {
        if r.0.dpop && !self.cfg.dpop {
            return Err(TokenError::UnsupportedTokenType("DPoP".into()));
        }
        Ok(r)
    }

    // ---- commands ------------------------------------------------------

    /// Signs in with `tokens` (from [`Session::parse`]), as session `sid`
    /// (fresh and random: the driver makes it). `skew` is what the tokens
    /// showed of the clocks, if anything.
    pub fn set_tokens(&mut self, mut tokens: TokenSet, skew: Option<Millis>, sid: String, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.tick(now);
        if let Some(s) = skew {
            self.skew = s;
        }
        tokens.sid = sid;
        self.begin(Some(tokens), &mut fx);
        self.persist_first(&mut fx);
        self.notify(&mut fx);
        self.emit_tokens(&mut fx);
        fx
    }

    /// Handles one input at time `now` (device clock; a clock that jumps
    /// back is ignored: the session's time never goes back).
    pub fn handle(&mut self, input: Input, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.tick(now);
        match input {
            Input::Loaded(read) => self.loaded(read, &mut fx),
            Input::Timer => self.due(&mut fx),
            Input::Wake { online } => {
                if online && self.retry_at.is_some() {
                    self.retry_at = Some(self.now);
                }
                self.due(&mut fx);
            }
            Input::Want { request, kind, epoch } => self.want(request, kind, epoch, &mut fx),
            Input::Logout => self.logout(&mut fx),
            Input::Dispose => self.dispose(&mut fx),
            Input::LockGranted { stored, marked } => self.lock_granted(stored, marked, false, &mut fx),
            Input::LockTimedOut { stored, marked } => self.lock_granted(stored, marked, true, &mut fx),
            Input::Answered { flight, reply, stored, random } => self.answered(flight, reply, stored, random, &mut fx),
            Input::StorageSaw(read) => {
                if self.cfg.store == Store::Shared && !self.disposed {
                    self.follow(read, &mut fx);
                }
            }
            Input::StorageFailed { first_copy } => self.storage_failed(first_copy, &mut fx),
            Input::TabChecked { copy } => self.tab_checked(copy, &mut fx),
            Input::ClockSeen { date, age, sent_at } => {
                if let Some(s) = schedule::skew_from_date(date, age, sent_at, self.now) {
                    self.skew = s;
                }
            }
        }
        fx
    }

    // ---- internals -----------------------------------------------------

    fn tick(&mut self, now: Millis) {
        if now.is_finite() && now > self.now {
            self.now = now;
        }
    }

    fn can_refresh(&self) -> bool {
        self.cfg.refreshable && self.tokens.as_ref().is_some_and(|t| t.refresh_token.is_some())
    }

    fn refresh_due(&self) -> Option<Millis> {
        let t = self.tokens.as_ref()?;
        Some(schedule::next_refresh_at(t.expires_at?, t.received_at, self.cfg.margin))
    }

    fn expired(&self, t: &TokenSet) -> bool {
        schedule::is_expired(t.expires_at, self.now.max(0.0), 0.0, self.cfg.leeway)
    }

    fn is_due(&self, t: &TokenSet, now: Millis) -> bool {
        schedule::is_expired(t.expires_at, now, 0.0, self.cfg.leeway)
            || (self.can_refresh() && t.expires_at.is_some_and(|e| now >= schedule::next_refresh_at(e, t.received_at, self.cfg.margin)))
    }

    fn backing_off(&self) -> Option<Millis> {
        self.retry_at.filter(|r| self.now < *r).map(|r| r - self.now)
    }

    /// Starts a new session (or none): a new epoch, no back-off, nothing in
    /// flight; every waiter of the old one is refused.
    fn begin(&mut self, tokens: Option<TokenSet>, fx: &mut Vec<Effect>) {
        self.epoch = self.epoch.wrapping_add(1);
        self.version = self.version.wrapping_add(1);
        self.attempt = 0;
        self.retry_at = None;
        self.failure = None;
        self.expired_said = false;
        self.tokens = tokens;
        self.orphan_flight(fx);
        self.refuse_waiters(Error::Superseded, fx);
    }

    /// The session the flight belonged to is over: release what it holds and
    /// keep it, if its request is on the wire, to deal with its answer.
    fn orphan_flight(&mut self, fx: &mut Vec<Effect>) {
        let Some(mut f) = self.flight.take() else { return };
        fx.push(Effect::Abort { flight: f.id });
        if f.marked {
            fx.push(Effect::Unmark);
            f.marked = false;
        }
        if f.locked {
            fx.push(Effect::Unlock);
            f.locked = false;
        }
        if f.stage == Stage::Sent {
            self.orphans.push(f);
        }
    }

    fn refuse_waiters(&mut self, e: Error, fx: &mut Vec<Effect>) {
        for w in std::mem::take(&mut self.waiters) {
            fx.push(Effect::Answer { request: w.request, epoch: w.epoch, result: Err(e.clone()) });
        }
    }

    fn persist(&mut self, fx: &mut Vec<Effect>) {
        self.store_record(false, fx);
    }

    /// Persists tokens made here (a sign-in, this manager's own refresh):
    /// until this write lands, nobody else can hold them.
    fn persist_first(&mut self, fx: &mut Vec<Effect>) {
        self.store_record(true, fx);
    }

    fn store_record(&mut self, first: bool, fx: &mut Vec<Effect>) {
        if self.cfg.store == Store::Memory || self.future_stored {
            return;
        }
        fx.push(match &self.tokens {
            Some(t) => Effect::Write { record: record::encode(t, &self.cfg.client), first },
            None => Effect::Remove,
        });
    }

    fn notify(&self, fx: &mut Vec<Effect>) {
        if self.cfg.store == Store::Shared {
            fx.push(Effect::Notify);
        }
    }

    fn emit(&self, e: Event, fx: &mut Vec<Effect>) {
        if !self.disposed {
            fx.push(Effect::Emit(e));
        }
    }

    fn emit_tokens(&self, fx: &mut Vec<Effect>) {
        if let Some(t) = &self.tokens {
            self.emit(Event::Tokens { access_token: t.access_token.clone(), expires_at: t.expires_at }, fx);
        }
    }

    fn loaded(&mut self, read: Read, fx: &mut Vec<Effect>) {
        if std::mem::replace(&mut self.loaded, true) || self.epoch != 0 {
            // Tokens set while an asynchronous adapter was still answering win.
            return;
        }
        match read {
            Read::Tokens(t) => {
                self.tokens = Some(t);
                self.version = self.version.wrapping_add(1);
            }
            Read::Corrupt => {
                // Drop what cannot be read, so it cannot trip anyone again.
                if self.cfg.store != Store::Memory {
                    fx.push(Effect::Remove);
                }
            }
            Read::FutureVersion => self.future_stored = true,
            Read::Empty | Read::Foreign => {}
        }
    }

    /// The timer fired or the page woke: refresh what is due, or say the
    /// session expired when nothing can renew it.
    fn due(&mut self, fx: &mut Vec<Effect>) {
        if self.disposed || self.flight.is_some() {
            return;
        }
        let Some(t) = &self.tokens else { return };
        if self.can_refresh() {
            if self.cfg.auto_refresh && self.next_refresh_at().is_some_and(|at| self.now >= at) {
                self.start(fx);
            }
        } else if !self.expired_said && self.expired(t) {
            self.expired_said = true;
            self.emit(Event::Expired, fx);
        }
    }

    fn want(&mut self, request: u32, kind: Want, epoch: Option<u32>, fx: &mut Vec<Effect>) {
        let answer = |fx: &mut Vec<Effect>, epoch, result| fx.push(Effect::Answer { request, epoch, result });
        if self.disposed {
            return answer(fx, self.epoch, Err(Error::Disposed));
        }
        if epoch.is_some_and(|e| e != self.epoch) {
            return answer(fx, self.epoch, Err(Error::Superseded));
        }
        let Some(t) = &self.tokens else {
            let result = if kind == Want::Refresh { Err(Error::NoTokens) } else { Ok(None) };
            return answer(fx, self.epoch, result);
        };
        let expired = self.expired(t);
        let token = t.access_token.clone();
        match &kind {
            Want::Refresh => {
                if !self.cfg.refreshable {
                    return answer(fx, self.epoch, Err(Error::CannotRefresh("no tokenEndpoint or refresh option was given")));
                }
                if t.refresh_token.is_none() {
                    return answer(fx, self.epoch, Err(Error::CannotRefresh("the server issued no refresh token")));
                }
            }
            Want::Replay(refused) => {
                if *refused != token {
                    // Someone already replaced the refused token: use the new one.
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
                if !self.can_refresh() {
                    return answer(fx, self.epoch, Err(if expired { Error::Expired } else { Error::CannotRefresh("no refresh token") }));
                }
            }
            Want::Fetch | Want::Token => {
                if !self.is_due(t, self.now) {
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
                if !self.can_refresh() {
                    return answer(fx, self.epoch, if expired { Err(Error::Expired) } else { Ok(Some(token)) });
                }
            }
        }
        if self.flight.is_none() && kind != Want::Refresh {
            if let (Some(retry_in), Some(failure)) = (self.backing_off(), &self.failure) {
                // Backing off: no new refresh per request (F9). A token that
                // still works is used; otherwise fail fast until the retry.
                let result = match kind {
                    Want::Fetch | Want::Token if !expired => Ok(Some(token)),
                    _ => Err(Error::BackingOff { failure: failure.clone(), retry_in }),
                };
                return answer(fx, self.epoch, result);
            }
        }
        self.waiters.push(Waiter { request, epoch: self.epoch, kind });
        if self.flight.is_none() {
            self.start(fx);
        }
    }

    /// Starts a refresh of the current session.
    fn start(&mut self, fx: &mut Vec<Effect>) {
        let Some(t) = &self.tokens else { return };
        self.flights = self.flights.wrapping_add(1);
        let shared = self.cfg.store == Store::Shared;
        let mut f = Flight {
            id: self.flights,
            sid: t.sid.clone(),
            from: t.access_token.clone(),
            stage: Stage::Tab,
            base: Snap::Unreadable,
            sent: None,
            locked: false,
            marked: false,
        };
        if self.tab_ok {
            if shared {
                f.stage = Stage::Lock { stolen: false };
                f.locked = true;
                fx.push(Effect::Lock { steal: false });
            } else {
                self.send(&mut f, fx);
            }
        }
        self.flight = Some(f);
    }

    fn send(&self, f: &mut Flight, fx: &mut Vec<Effect>) {
        let Some(rt) = self.tokens.as_ref().and_then(|t| t.refresh_token.clone()) else { return };
        if self.cfg.store == Store::Shared {
            f.marked = true;
            fx.push(Effect::Mark(self.now + self.cfg.timeout + 5_000.0));
        }
        f.stage = Stage::Sent;
        f.sent = Some(rt.clone());
        fx.push(Effect::Send { flight: f.id, refresh_token: rt });
    }

    fn tab_checked(&mut self, copy: bool, fx: &mut Vec<Effect>) {
        if self.tab_ok {
            return;
        }
        self.tab_ok = true;
        if copy && self.tokens.is_some() {
            // The original tab holds the same refresh token and refreshes it;
            // this copy must never present it. It starts signed out.
            self.begin(None, fx);
            self.persist(fx);
            self.notify(fx);
            self.emit(Event::Logout(Reason::Duplicate), fx);
            return;
        }
        if let Some(mut f) = self.flight.take() {
            if self.cfg.store == Store::Shared {
                f.stage = Stage::Lock { stolen: false };
                f.locked = true;
                fx.push(Effect::Lock { steal: false });
            } else {
                self.send(&mut f, fx);
            }
            self.flight = Some(f);
        }
    }

    /// The lock came (or did not, `timed_out`); storage was read under it.
    fn lock_granted(&mut self, stored: Read, marked: bool, timed_out: bool, fx: &mut Vec<Effect>) {
        let Some(mut f) = self.flight.take_if(|f| matches!(f.stage, Stage::Lock { .. })) else {
            if !timed_out {
                fx.push(Effect::Unlock);
            }
            return;
        };
        if timed_out {
            // The request for the lock was given up: nothing is held.
            f.locked = false;
        }
        let same_session = matches!(&stored, Read::Tokens(t) if self.tokens.as_ref().is_some_and(|c| c.sid == t.sid));
        if !same_session && !matches!(stored, Read::Corrupt) {
            // Another tab logged out or signed in meanwhile: follow it.
            self.flight = Some(f);
            self.follow(stored, fx);
            return;
        }
        let mut adopted = false;
        if let Read::Tokens(t) = &stored {
            if self.tokens.as_ref().is_some_and(|c| c.refresh_token != t.refresh_token || c.access_token != t.access_token) {
                // Another tab refreshed while we waited: take its tokens.
                self.adopt(t.clone());
                adopted = true;
            }
        }
        // Replaced since this refresh set out (just now, or by a notice that
        // came while we waited) and fresh: that tab's refresh is ours.
        let replaced = self.tokens.as_ref().is_some_and(|c| c.access_token != f.from && !self.is_due(c, self.now));
        if replaced {
            if f.locked {
                fx.push(Effect::Unlock);
            }
            self.settle(Ok(()), fx);
            if adopted {
                self.emit_tokens(fx);
            }
            return;
        }
        if marked || (timed_out && f.stage == (Stage::Lock { stolen: true })) {
            // Another tab's request with this refresh token is on the wire
            // (presenting it too would end the session at a server that
            // detects reuse), or even taking the lock failed: give up for
            // now and back off; the retry re-reads storage.
            self.flight = Some(f);
            self.failed(Failure::Transient { cause: Transient::Busy, retry_after: None }, 0.5, fx);
        } else if timed_out {
            // The holder is stuck before sending (no marker): take the lock.
            f.stage = Stage::Lock { stolen: true };
            f.locked = true;
            fx.push(Effect::Lock { steal: true });
            self.flight = Some(f);
        } else {
            f.base = snapshot(&stored);
            self.send(&mut f, fx);
            self.flight = Some(f);
        }
        if adopted {
            self.emit_tokens(fx);
        }
    }

    /// Takes tokens another tab stored for this same session (a refresh).
    /// The caller emits `tokens` once its other effects are queued.
    fn adopt(&mut self, t: TokenSet) {
        self.tokens = Some(t);
        self.version = self.version.wrapping_add(1);
        self.attempt = 0;
        self.retry_at = None;
        self.failure = None;
        self.expired_said = false;
    }

    /// Follows what another manager wrote.
    fn follow(&mut self, read: Read, fx: &mut Vec<Effect>) {
        match read {
            Read::Tokens(t) => {
                if self.ended.contains(&t.sid) {
                    // A session this manager ended, written back by a tab
                    // whose refresh answer crossed our logout: it must not
                    // come back. Remove it (the other tabs follow) and
                    // revoke the refresh token it carries.
                    if let Some(rt) = t.refresh_token.filter(|_| self.cfg.revoke) {
                        fx.push(Effect::Revoke { token: rt, hint: "refresh_token" });
                    }
                    // What this manager holds (nothing, or a newer sign-in) is
                    // what storage must hold.
                    self.persist(fx);
                    self.notify(fx);
                    return;
                }
                match &self.tokens {
                    Some(c) if c.sid == t.sid => {
                        if c.access_token != t.access_token || c.refresh_token != t.refresh_token {
                            self.adopt(t);
                            self.emit_tokens(fx);
                        }
                    }
                    _ => {
                        self.begin(Some(t), fx);
                        self.emit_tokens(fx);
                    }
                }
            }
            Read::Empty | Read::Foreign | Read::FutureVersion => {
                if matches!(read, Read::FutureVersion) {
                    self.future_stored = true;
                }
                if let Some(t) = &self.tokens {
                    let sid = t.sid.clone();
                    self.end(sid);
                    self.begin(None, fx);
                    self.emit(Event::Logout(Reason::Remote), fx);
                }
            }
            Read::Corrupt => {}
        }
    }

    fn answered(&mut self, id: u32, reply: Reply, stored: Option<Read>, random: f64, fx: &mut Vec<Effect>) {
        let outcome = self.classify(reply);
        if let Some(o) = take_first(&mut self.orphans, |o| o.id == id) {
            // The session ended while this request was on the wire.
            self.revoke_dropped(&o, &outcome, fx);
            return;
        }
        let Some(f) = self.flight.take_if(|f| f.id == id && f.stage == Stage::Sent) else { return };
        // Every branch writes storage before it releases the lock and the
        // marker: the next tab to take the lock must find the outcome there.
        if self.cfg.store == Store::Shared {
            if let Some(stored) = stored.filter(|s| !matches!(s, Read::Corrupt)) {
                if snapshot(&stored) != f.base {
                    // Compare and swap failed: another tab logged out, signed
                    // in or refreshed while this request was on the wire. Its
                    // write wins; this answer is dropped.
                    let waiters_epoch = self.epoch;
                    self.follow(stored, fx);
                    self.revoke_dropped(&f, &outcome, fx);
                    release(&f, fx);
                    if self.epoch == waiters_epoch {
                        // The same session, refreshed by another tab: its token.
                        self.settle(Ok(()), fx);
                    }
                    return;
                }
            }
        }
        match outcome {
            Ok(mut t) => {
                t.sid = f.sid.clone();
                let t = t.inherit_refresh_token(self.tokens.as_ref());
                self.tokens = Some(t);
                self.version = self.version.wrapping_add(1);
                self.attempt = 0;
                self.retry_at = None;
                self.failure = None;
                self.expired_said = false;
                self.persist_first(fx);
                self.notify(fx);
                release(&f, fx);
                self.settle(Ok(()), fx);
                self.emit_tokens(fx);
            }
            Err(failure) if failure.is_fatal() => {
                let e = Error::Refresh(failure);
                if let Some(t) = &self.tokens {
                    let sid = t.sid.clone();
                    self.end(sid);
                }
                self.refuse_waiters(e.clone(), fx);
                self.begin(None, fx);
                self.persist(fx);
                self.notify(fx);
                release(&f, fx);
                self.expired_said = true;
                self.emit(Event::RefreshError { error: e, retry_in: None }, fx);
                self.emit(Event::Expired, fx);
            }
            Err(failure) => {
                self.flight = Some(f);
                self.failed(failure, random, fx);
            }
        }
    }

    /// A transient failure: keep the tokens, back off, tell the waiters and
    /// the listeners. The flight is over.
    fn failed(&mut self, failure: Failure, random: f64, fx: &mut Vec<Effect>) {
        if let Some(f) = self.flight.take() {
            if f.marked {
                fx.push(Effect::Unmark);
            }
            if f.locked {
                fx.push(Effect::Unlock);
            }
        }
        let retry_after = match &failure {
            Failure::Transient { retry_after, .. } => *retry_after,
            Failure::Fatal { .. } => None,
        };
        let delay = schedule::backoff_delay(self.attempt, random, retry_after);
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = Some(self.now + delay);
        self.failure = Some(failure.clone());
        let usable = self.tokens.as_ref().filter(|t| !self.expired(t)).map(|t| t.access_token.clone());
        for w in std::mem::take(&mut self.waiters) {
            let result = match (&w.kind, &usable) {
                (Want::Fetch, Some(t)) => Ok(Some(t.clone())),
                _ => Err(Error::Refresh(failure.clone())),
            };
            fx.push(Effect::Answer { request: w.request, epoch: w.epoch, result });
        }
        self.emit(Event::RefreshError { error: Error::Refresh(failure), retry_in: Some(delay) }, fx);
    }

    /// The refresh is over for its waiters: the current token, or an error.
    fn settle(&mut self, result: Result<(), Error>, fx: &mut Vec<Effect>) {
        self.flight = None;
        let token = self.tokens.as_ref().map(|t| t.access_token.clone());
        for w in std::mem::take(&mut self.waiters) {
            let r = match &result {
                Ok(()) if w.epoch == self.epoch => Ok(token.clone()),
                Ok(()) => Err(Error::Superseded),
                Err(e) => Err(e.clone()),
            };
            fx.push(Effect::Answer { request: w.request, epoch: w.epoch, result: r });
        }
    }

    /// A refresh answer that will not be used: if its session was ended here,
    /// the rotated refresh token it carries is revoked, so it cannot outlive
    /// the logout.
    fn revoke_dropped(&self, f: &Flight, outcome: &Result<TokenSet, Failure>, fx: &mut Vec<Effect>) {
        let Ok(t) = outcome else { return };
        let ended = self.ended.contains(&f.sid) || self.tokens.as_ref().is_none_or(|c| c.sid != f.sid);
        if let Some(rt) = t.refresh_token.clone().filter(|rt| self.cfg.revoke && ended && f.sent.as_ref() != Some(rt)) {
            fx.push(Effect::Revoke { token: rt, hint: "refresh_token" });
        }
    }

    /// Reads a refresh answer; learns the clock skew from successful ones.
    fn classify(&mut self, reply: Reply) -> Result<TokenSet, Failure> {
        let net = |cause| Failure::Transient { cause, retry_after: None };
        let (t, inferred) = match reply {
            Reply::Http { status, body, retry_after, date, age, sent_at } => {
                let read = |skew| refresh::classify(status, &body, retry_after.as_deref(), self.now, skew);
                let mut r = read(self.skew);
                // Only a successful token answer speaks for the server's
                // clock: error pages may come from a cache or a proxy.
                let from_date = date.filter(|_| r.is_ok()).and_then(|d| schedule::skew_from_date(d, age.unwrap_or(0.0), sent_at, self.now));
                if let Some(s) = from_date.filter(|s| *s != self.skew) {
                    // The expiry from a JWT `exp` used the old estimate.
                    r = read(s);
                    self.skew = s;
                }
                r?
            }
            // Whatever the app's own refresh resolved with that is not a
            // token response is transient: only a thrown `fatal` ends the session.
            Reply::Custom(Ok(text)) => token::parse_with_skew(&text, self.now, self.skew).map_err(|e| net(Transient::BadResponse(e)))?,
            Reply::Custom(Err((true, description))) => return Err(Failure::Fatal { code: "refresh_rejected".into(), description }),
            Reply::Custom(Err((false, message))) => return Err(net(Transient::Custom(message))),
            Reply::Network => return Err(net(Transient::Network)),
            Reply::Timeout => return Err(net(Transient::Timeout)),
        };
        let (t, inferred) = self.typed((t, inferred)).map_err(|e| net(Transient::BadResponse(e)))?;
        if let Some(s) = inferred {
            self.skew = s;
        }
        Ok(t)
    }

    /// Remembers that session `sid` ended here (a few of the latest suffice:
    /// what matters is the one a crossing refresh answer belongs to).
    fn end(&mut self, sid: String) {
        if self.ended.len() >= 8 {
            let _ = take_first(&mut self.ended, |_| true);
        }
        self.ended.push(sid);
    }

    fn logout(&mut self, fx: &mut Vec<Effect>) {
        let Some(old) = self.tokens.clone() else {
            // Signed out already: still clear storage and say so.
            self.persist(fx);
            self.emit(Event::Logout(Reason::User), fx);
            return;
        };
        self.end(old.sid.clone());
        self.begin(None, fx);
        self.persist(fx);
        self.notify(fx);
        if self.cfg.revoke {
            // Revoking the refresh token ends the whole grant (RFC 7009 s2.1).
            fx.push(match old.refresh_token {
                Some(rt) => Effect::Revoke { token: rt, hint: "refresh_token" },
                None => Effect::Revoke { token: old.access_token, hint: "access_token" },
            });
        }
        self.emit(Event::Logout(Reason::User), fx);
    }

    fn dispose(&mut self, fx: &mut Vec<Effect>) {
        if std::mem::replace(&mut self.disposed, true) {
            return;
        }
        self.refuse_waiters(Error::Disposed, fx);
        // A refresh on the wire still lands in storage: its refresh token
        // replaced the stored one at the server, and the next page needs it.
        if let Some(f) = &self.flight {
            if f.stage != Stage::Sent {
                self.orphan_flight(fx);
            } else {
                fx.push(Effect::Abort { flight: f.id });
            }
        }
    }

    fn storage_failed(&mut self, first_copy: bool, fx: &mut Vec<Effect>) {
        if self.cfg.store != Store::Memory {
            let shared = self.cfg.store == Store::Shared;
            let sending = self.flight.as_ref().is_some_and(|f| f.stage == Stage::Sent);
            if !shared || first_copy || sending {
                // This manager holds the only copy of its refresh token (or
                // will, once its request answers): fall back for real (F4).
                // The record no longer follows the session: remove it (best
                // effort) rather than let any tab adopt an older, already
                // rotated refresh token from it.
                if !self.future_stored {
                    fx.push(Effect::Remove);
                }
            } else if let Some(t) = self.tokens.as_mut() {
                // Other tabs hold this same refresh token and this manager
                // can no longer coordinate with them: it must never present
                // it. The access token serves until it expires.
                t.refresh_token = None;
                self.version = self.version.wrapping_add(1);
                self.orphan_flight(fx);
                let usable = self.tokens.as_ref().filter(|t| !self.expired(t)).map(|t| t.access_token.clone());
                for w in std::mem::take(&mut self.waiters) {
                    let result = match (&w.kind, &usable) {
                        (Want::Fetch | Want::Token, Some(t)) => Ok(Some(t.clone())),
                        _ => Err(Error::CannotRefresh("storage failed, and other tabs hold this session's refresh token")),
                    };
                    fx.push(Effect::Answer { request: w.request, epoch: w.epoch, result });
                }
            }
            self.cfg.store = Store::Memory;
            fx.push(Effect::UseMemory);
            if let Some(f) = &mut self.flight {
                release(f, fx);
                f.marked = false;
                f.locked = false;
                f.base = Snap::Unreadable;
                if f.stage != Stage::Sent {
                    let mut f = f.clone();
                    self.send(&mut f, fx);
                    self.flight = Some(f);
                }
            }
        }
        if !std::mem::replace(&mut self.storage_said, true) {
            self.emit(Event::StorageError, fx);
        }
    }
}

/// Removes and returns the first element matching `pred`, without the panic
/// path (and its formatting code) that `remove`/`swap_remove` carry.
pub fn take_first<T>(v: &mut Vec<T>, mut pred: impl FnMut(&T) -> bool) -> Option<T> {
    let i = v.iter().position(&mut pred)?;
    let last = v.pop()?;
    match v.get_mut(i) {
        Some(slot) => Some(std::mem::replace(slot, last)),
        None => Some(last),
    }
}

/// Releases what a finished flight holds: the marker, then the lock.
fn release(f: &Flight, fx: &mut Vec<Effect>) {
    if f.marked {
        fx.push(Effect::Unmark);
    }
    if f.locked {
        fx.push(Effect::Unlock);
    }
}

/// What identifies a stored record for the compare and swap.
#[derive(Clone, Debug, PartialEq)]
enum Snap {
    /// A session's record: its id and refresh token.
    Session(String, Option<String>),
    /// Nothing stored.
    Empty,
    /// Something that is not a record of this client.
    Unreadable,
}

fn snapshot(read: &Read) -> Snap {
    match read {
        Read::Tokens(t) => Snap::Session(t.sid.clone(), t.refresh_token.clone()),
        Read::Empty => Snap::Empty,
        _ => Snap::Unreadable,
    }
}
