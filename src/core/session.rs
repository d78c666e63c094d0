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
//!
//! Records are ordered, so a write that crossed a change never wins over
//! it: sessions by their birth (a hybrid logical clock) and id, and within
//! a session by `gen`, its refresh count. A record older than what this
//! manager knows (a session ended here, or this session before a refresh)
//! is never adopted; storage is written back under the lock instead.
//!
//! What this machine does not assume: that storage is atomic across tabs
//! (every write-back is a compare and swap against what was read under
//! the lock, and a crossed one is undone), that every manager on the key
//! follows the lock rules to the end (a disposed manager still finishes its
//! refresh under the lock), or that logout is the only end of a session (a
//! sign-in over a live session ends it as a logout does). The simulation
//! in `tests/sim` checks these against a model of real browsers.

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
    /// Storage only this page's managers write (an adapter, or Web Storage
    /// with `syncTabs: false`): the driver coordinates them within the page
    /// (a lock, notices, the record as last written here), so the session
    /// treats it as it treats `Shared`. Managers made one after another in
    /// a page (React Strict Mode, hot reload) are several on one key.
    Private,
    /// Web Storage other managers (tabs, or a second manager in this page)
    /// share: refresh under the cross-tab lock, re-read before sending and
    /// before writing back (compare and swap), follow their changes.
    Shared,
}

impl Store {
    /// Whether other managers may write the record: refresh under a lock,
    /// compare and swap, follow their changes.
    pub fn coordinated(self) -> bool {
        self != Store::Memory
    }
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
    /// The app's own refresh was aborted through its signal (the session
    /// ended): whether it reached the server is unknown.
    Aborted,
    /// No answer within the timeout. The request may still have reached
    /// the server: it is in doubt, and its answer, if it comes, is fed
    /// again with the same flight (and applied if nothing changed since).
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
    /// Another manager's notice named the record it wrote (a session's id,
    /// birth and refresh count): storage here may show it only later
    /// (each tab has its own copy), and a copy older than this is behind.
    Heard {
        /// The session.
        sid: String,
        /// Its birth.
        born: f64,
        /// Its refresh count.
        gen: u32,
    },
    /// Reading or writing storage threw. `first_copy`: the write that threw
    /// was a [`Effect::Write`] with `first` set.
    StorageFailed {
        /// The failed write held the only copy of tokens made here.
        first_copy: bool,
        /// A write failed (not a read: a read that fails never removes
        /// what it could not read).
        write: bool,
    },
    /// Whether this tab is a copy of another (sessionStorage).
    TabChecked {
        /// Another live tab holds this tab's identity.
        copy: bool,
    },
    /// The DPoP key the session's tokens are bound to (its thumbprint) is
    /// gone: another tab ended the session and destroyed it. The tokens
    /// cannot be used any more.
    KeyLost {
        /// The key's thumbprint.
        jkt: String,
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
    /// Tell other tabs a refresh request is on the wire, for this long (ms:
    /// the driver stamps the marker with the wall clock, which every tab
    /// reads alike, where the session's clock may differ between tabs).
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

/// What a flight is for.
#[derive(Clone, Debug)]
enum Job {
    /// Refresh the session's tokens.
    Refresh,
    /// Storage holds a record older than what this manager knows (a crossed
    /// write-back): write what it knows, under the lock.
    Repair,
    /// The late answer of a refresh given up as timed out (these tokens,
    /// rotated from that refresh token): write it, under the lock, if
    /// nothing changed since.
    Apply(Box<TokenSet>, String),
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
    /// back only if it still holds that (or something older).
    base: Snap,
    /// The refresh token presented.
    sent: Option<String>,
    /// Holds the cross-tab lock (or waits for it).
    locked: bool,
    /// Wrote the on-the-wire marker.
    marked: bool,
    /// Started because a server refused the token (a 401).
    refused: bool,
    job: Job,
}

#[derive(Clone, Debug)]
struct Waiter {
    request: u32,
    epoch: u32,
    kind: Want,
}

/// How a stored record stands against what this manager knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Age {
    /// What this manager holds.
    Same,
    /// A later refresh of this session, or a later session.
    Newer,
    /// A session that ended here, or this session before a refresh it
    /// knows of: a write that crossed. Storage is set right.
    Older,
    /// Another session, begun before the one held here (or last held):
    /// not taken, and not overwritten either: it may be what another tab
    /// knows to be newer (a clock set back makes births unreliable across
    /// tabs that never saw each other's sessions). A tab that ended it
    /// sets storage right.
    Stale,
}

/// Flights given up as timed out whose answer may still come, kept at most.
const DOUBT: usize = 4;

/// How long a notice's record is waited for in this tab's copy of storage:
/// far longer than a browser takes to carry a write between tabs.
const HEARD_FOR: Millis = 2_000.0;

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
    /// Flights given up as timed out: in doubt, their answer still applies.
    doubt: Vec<Flight>,
    flights: u32,
    attempt: u32,
    retry_at: Option<Millis>,
    failure: Option<Failure>,
    waiters: Vec<Waiter>,
    expired_said: bool,
    storage_said: bool,
    /// Storage failed while this manager's refresh was on the wire: its
    /// refresh token is kept for that answer only (other tabs may hold the
    /// session and can no longer be followed).
    unsure: bool,
    /// Sessions ended here (logout, a sign-in over them, another tab's
    /// logout or sign-in, a fatal refresh): never adopted again, and a
    /// refresh token found for one is revoked.
    ended: Vec<String>,
    /// The latest session birth seen: a new sign-in is born after it.
    seen_born: f64,
    /// The latest session held here (birth and id): signed out, this
    /// manager takes no session begun before it.
    high: (f64, String),
    /// Storage holds a record older than what this manager knows: write
    /// what it knows, under the lock, when no flight does it first (not
    /// before `repair_at`, when this tab's copy of storage was behind).
    repair: bool,
    repair_at: Millis,
    /// `logout()` came before the initial read: what that read finds is
    /// signed out of, not adopted.
    out_before_load: bool,
    /// The refresh token of the last crossed write-back revoked here: the
    /// same record seen again (a notice, then under the lock) is revoked once.
    buried: Option<String>,
    /// The newest record another manager's notice named (birth, session,
    /// refresh count), and when: what this tab's copy of storage must show
    /// before it is acted on, for a few seconds (a write can be overwritten
    /// before it ever shows here).
    heard: Option<(f64, String, u32, Millis)>,
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
            doubt: Vec::new(),
            flights: 0,
            attempt: 0,
            retry_at: None,
            failure: None,
            waiters: Vec::new(),
            expired_said: false,
            storage_said: false,
            unsure: false,
            ended: Vec::new(),
            seen_born: 0.0,
            high: (0.0, String::new()),
            repair: false,
            repair_at: 0.0,
            out_before_load: false,
            buried: None,
            heard: None,
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
        let at = self.retry_at.or_else(|| self.refresh_due())?;
        Some(self.floor().map_or(at, |f| at.max(f)))
    }

    /// When the driver's timer should fire next; never before the latest
    /// time the session has seen, `None` for no timer.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.disposed || self.flight.is_some() || !self.tab_ok {
            return None;
        }
        if self.repair {
            // A repair put off while this tab's copy of storage caught up.
            return Some(self.repair_at.max(self.now));
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

    /// Whether `read` (this tab's copy of storage) is behind a record another
    /// manager's notice named: then it must not be acted on yet.
    pub fn behind(&self, read: &Read) -> bool {
        let Some((born, sid, gen, at)) = &self.heard else { return false };
        if self.ended.contains(sid) || self.now - at > HEARD_FOR {
            return false;
        }
        // What this manager holds is at least as new: nothing to wait for.
        if let Some(c) = &self.tokens {
            if (c.sid == *sid && c.gen >= *gen) || (c.sid != *sid && (c.born, &c.sid) > (*born, sid)) {
                return false;
            }
        }
        match read {
            Read::Tokens(t) if t.sid == *sid => t.gen < *gen,
            Read::Tokens(t) => t.born > 0.0 && (t.born, &t.sid) < (*born, sid),
            _ => false,
        }
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

    /// A stored record as this manager may take it: DPoP-bound tokens are
    /// another client's to a manager without DPoP (it could only send them
    /// without proofs, as Bearer).
    fn view(&self, read: Read) -> Read {
        match read {
            Read::Tokens(t) if t.dpop && !self.cfg.dpop => Read::Foreign,
            r => r,
        }
    }

    // ---- commands ------------------------------------------------------

    /// Signs in with `tokens` (from [`Session::parse`]), as session `sid`
    /// (fresh and random: the driver makes it). `skew` is what the tokens
    /// showed of the clocks, if anything. A session that was live ends as a
    /// logout ends it: its refresh token is revoked (unless the new tokens
    /// carry it, or name the same user: revoking it could end the new
    /// sign-in too) and a write-back of it that crossed is undone.
    pub fn set_tokens(&mut self, mut tokens: TokenSet, skew: Option<Millis>, sid: String, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.tick(now);
        if let Some(s) = skew {
            self.skew = s;
        }
        match self.tokens.clone() {
            Some(c) if c.access_token == tokens.access_token => {
                // The same tokens again: the same session.
                tokens.sid = c.sid.clone();
                (tokens.born, tokens.gen) = (c.born, c.gen);
                tokens.jkt = tokens.jkt.or(c.jkt.clone());
                self.adopt(tokens.inherit_refresh_token(Some(&c)));
            }
            old => {
                tokens.sid = sid;
                // Whole ms: the record keeps whole numbers.
                tokens.born = self.now.max(self.seen_born + 1.0).round();
                self.seen_born = tokens.born;
                if let Some(old) = old {
                    self.end(old.sid.clone());
                    if self.cfg.revoke && (subject(&old).is_none() || subject(&old) != subject(&tokens)) {
                        match old.refresh_token {
                            Some(rt) if tokens.refresh_token.as_ref() != Some(&rt) => {
                                fx.push(Effect::Revoke { token: rt, hint: "refresh_token" });
                            }
                            Some(_) => {}
                            None => fx.push(Effect::Revoke { token: old.access_token, hint: "access_token" }),
                        }
                    }
                }
                self.begin(Some(tokens), &mut fx);
            }
        }
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
                if self.cfg.store.coordinated() && !self.disposed {
                    self.follow(read, &mut fx);
                }
            }
            Input::Heard { sid, born, gen } => {
                // A session heard of is one a sign-in here comes after, even
                // if this tab's copy never shows it (a clock stepped back).
                self.seen_born = self.seen_born.max(born);
                if (born, &sid) > (self.high.0, &self.high.1) {
                    self.high = (born, sid.clone());
                }
                let stale = self.heard.as_ref().is_some_and(|(_, _, _, at)| self.now - at > HEARD_FOR);
                if stale || self.heard.as_ref().is_none_or(|(b, s, g, _)| (born, &sid, gen) > (*b, s, *g)) {
                    self.heard = Some((born, sid, gen, self.now));
                }
            }
            Input::StorageFailed { first_copy, write } => self.storage_failed(first_copy, write, &mut fx),
            Input::TabChecked { copy } => self.tab_checked(copy, &mut fx),
            Input::KeyLost { jkt } => {
                if let Some(t) = self.tokens.as_ref().filter(|t| t.jkt.as_ref() == Some(&jkt)) {
                    let sid = t.sid.clone();
                    self.end(sid);
                    self.begin(None, &mut fx);
                    self.emit(Event::Logout(Reason::Remote), &mut fx);
                }
            }
            Input::ClockSeen { date, age, sent_at } => {
                if let Some(s) = schedule::skew_from_date(date, age, sent_at, self.now) {
                    self.skew = s;
                }
            }
        }
        if self.repair && self.flight.is_none() && self.tab_ok && !self.disposed && self.now >= self.repair_at {
            self.launch(Job::Repair, &mut fx);
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

    /// No refresh starts before this (timer or request): 5 s after tokens a
    /// refresh brought, doubled for each refresh in a row that brought
    /// tokens living under 10 s. A token endpoint answering `expires_in: 0`
    /// then makes a few token requests a minute, not one per request. (The
    /// tokens of a sign-in are the app's: refreshed when due at once.)
    fn floor(&self) -> Option<Millis> {
        let t = self.tokens.as_ref().filter(|t| t.gen > 0)?;
        Some(t.received_at + schedule::MIN_REFRESH_INTERVAL * f64::from(1u32 << t.brief.saturating_sub(1).min(6)))
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
        if let Some(t) = &tokens {
            self.saw(t);
        }
        self.tokens = tokens;
        self.orphan_flight(fx);
        self.refuse_waiters(Error::Superseded, fx);
    }

    /// The session the flight belonged to is over: release what it holds and
    /// keep it, if its request is on the wire, to deal with its answer.
    fn orphan_flight(&mut self, fx: &mut Vec<Effect>) {
        let Some(mut f) = self.flight.take() else { return };
        fx.push(Effect::Abort { flight: f.id });
        if f.stage == Stage::Sent {
            // The marker stays until the answer: another tab that has not
            // seen this change yet must not present the same refresh token.
            if f.locked {
                fx.push(Effect::Unlock);
            }
        } else {
            release(&f, fx);
            f.marked = false;
        }
        f.locked = false;
        if let Job::Apply(t, _) = &f.job {
            // A late rotation of the session that ended: it must not outlive it.
            self.revoke_rotated(t, None, fx);
        } else if f.stage == Stage::Sent {
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
        if self.cfg.store.coordinated() {
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

    /// Remembers a session seen (held or not): a sign-in here is born
    /// after it, and, signed out, no session born before it is adopted.
    fn saw(&mut self, t: &TokenSet) {
        self.seen_born = self.seen_born.max(t.born);
        if (t.born, &t.sid) > (self.high.0, &self.high.1) {
            self.high = (t.born, t.sid.clone());
        }
    }

    fn loaded(&mut self, read: Read, fx: &mut Vec<Effect>) {
        let read = self.view(read);
        if let Read::Tokens(t) = &read {
            self.saw(t);
        }
        if std::mem::replace(&mut self.loaded, true) || self.epoch != 0 || self.out_before_load {
            // Tokens set while an asynchronous store was still answering
            // win; a logout made meanwhile signs out of what it finds.
            if let (true, Read::Tokens(t)) = (self.out_before_load, read) {
                self.revoke_rotated(&t, None, fx);
            }
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
                self.start(false, fx);
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
        let idle = self.flight.is_none();
        let early = self.floor().is_some_and(|f| self.now < f);
        let mut refused = false;
        match &kind {
            Want::Refresh => {
                if !self.cfg.refreshable {
                    return answer(fx, self.epoch, Err(Error::CannotRefresh("no tokenEndpoint or refresh option was given")));
                }
                if t.refresh_token.is_none() {
                    return answer(fx, self.epoch, Err(Error::CannotRefresh("the server issued no refresh token")));
                }
            }
            Want::Replay(r) => {
                if *r != token {
                    // Someone already replaced the refused token: use the new one.
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
                if !self.can_refresh() {
                    return answer(fx, self.epoch, Err(if expired { Error::Expired } else { Error::CannotRefresh("no refresh token") }));
                }
                // A token refused soon after a refusal brought it is not
                // refreshed again: the server refuses for a reason a new
                // token does not fix. The refusal goes back to the caller.
                let floor = schedule::MIN_REFRESH_INTERVAL * f64::from(1u32 << t.refused.saturating_sub(1).min(6));
                if idle && t.refused > 0 && self.now - t.received_at < floor {
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
                refused = true;
            }
            Want::Fetch | Want::Token => {
                if !self.is_due(t, self.now) {
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
                if !self.can_refresh() {
                    return answer(fx, self.epoch, if expired { Err(Error::Expired) } else { Ok(Some(token)) });
                }
                if idle && early {
                    // Before the floor, the token that came last serves (it
                    // can only be this young and due if it lives under 10 s).
                    return answer(fx, self.epoch, Ok(Some(token)));
                }
            }
        }
        if idle && kind != Want::Refresh {
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
        if idle {
            self.start(refused, fx);
        }
    }

    /// Starts a refresh of the current session (`refused`: because a
    /// server refused its token).
    fn start(&mut self, refused: bool, fx: &mut Vec<Effect>) {
        self.launch(Job::Refresh, fx);
        if let Some(f) = &mut self.flight {
            f.refused = refused;
        }
    }

    /// Starts a flight: under the lock where other managers share the
    /// record, at once in memory.
    fn launch(&mut self, job: Job, fx: &mut Vec<Effect>) {
        if matches!(job, Job::Refresh | Job::Apply(..)) && self.tokens.is_none() {
            return;
        }
        self.flights = self.flights.wrapping_add(1);
        let (sid, from) = self.tokens.as_ref().map(|t| (t.sid.clone(), t.access_token.clone())).unwrap_or_default();
        let mut f = Flight {
            id: self.flights,
            sid,
            from,
            stage: Stage::Tab,
            base: Snap::Unreadable,
            sent: None,
            locked: false,
            marked: false,
            refused: false,
            job,
        };
        if self.tab_ok {
            if self.cfg.store.coordinated() {
                f.stage = Stage::Lock { stolen: false };
                f.locked = true;
                fx.push(Effect::Lock { steal: false });
            } else {
                return self.proceed(f, fx);
            }
        }
        self.flight = Some(f);
    }

    /// A flight may go ahead (under the lock, or alone in memory).
    fn proceed(&mut self, mut f: Flight, fx: &mut Vec<Effect>) {
        match std::mem::replace(&mut f.job, Job::Refresh) {
            Job::Refresh => {
                self.send(&mut f, fx);
                self.flight = Some(f);
            }
            Job::Repair => {
                self.repair = false;
                release(&f, fx);
            }
            Job::Apply(t, _) => self.apply(f, *t, fx),
        }
    }

    fn send(&self, f: &mut Flight, fx: &mut Vec<Effect>) {
        let Some(rt) = self.tokens.as_ref().and_then(|t| t.refresh_token.clone()) else { return };
        if self.cfg.store.coordinated() {
            f.marked = true;
            fx.push(Effect::Mark(self.cfg.timeout + 5_000.0));
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
            if self.cfg.store.coordinated() {
                f.stage = Stage::Lock { stolen: false };
                f.locked = true;
                fx.push(Effect::Lock { steal: false });
                self.flight = Some(f);
            } else {
                self.proceed(f, fx);
            }
        }
    }

    /// How a stored record stands against what this manager knows.
    fn age(&self, t: &TokenSet) -> Age {
        if self.ended.contains(&t.sid) {
            return Age::Older;
        }
        match &self.tokens {
            Some(c) if c.sid == t.sid => {
                if c.access_token == t.access_token && c.refresh_token == t.refresh_token {
                    Age::Same
                } else if t.gen < c.gen {
                    Age::Older
                } else {
                    Age::Newer
                }
            }
            // A session begun before this one (0: written by Tessera 0.1,
            // which knew no births: taken as before).
            Some(c) if t.born > 0.0 && (t.born, &t.sid) < (c.born, &c.sid) => Age::Stale,
            None if t.born > 0.0 && (t.born, &t.sid) < (self.high.0, &self.high.1) => Age::Stale,
            _ => Age::Newer,
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
        let stored = self.view(stored);
        if self.behind(&stored) {
            // This tab's copy of storage has not caught up with a write
            // another tab told of: acting on it could present a refresh
            // token already rotated. Try again shortly.
            if matches!(f.job, Job::Repair) && self.waiters.is_empty() {
                // Look again once the notice is old news.
                self.repair_at = self.now + HEARD_FOR;
                return release(&f, fx);
            }
            return self.failed(Some(f), Failure::Transient { cause: Transient::Busy, retry_after: None }, 0.0, fx);
        }
        let mut adopted = false;
        match &stored {
            Read::Corrupt => {}
            Read::Tokens(t) if self.age(t) == Age::Older => {
                // A write that crossed a change this manager knows of (a
                // session that ended, or this one before a refresh): the
                // record becomes what this manager holds, under the lock.
                self.bury(t, fx);
                self.persist(fx);
                self.notify(fx);
                self.repair = false;
                let ours = self.tokens.as_ref().is_some_and(|c| c.sid == t.sid);
                if !ours && matches!(f.job, Job::Refresh) {
                    // Another session's write replaced ours: it may have
                    // replaced a refresh of ours this tab never saw. A tab
                    // that holds that refresh sets storage right on this
                    // notice; this refresh tries again in a moment.
                    return self.failed(Some(f), Failure::Transient { cause: Transient::Busy, retry_after: None }, 0.0, fx);
                }
            }
            Read::Tokens(t) if self.age(t) == Age::Stale && self.tokens.is_some() && matches!(f.job, Job::Refresh) => {
                // Storage holds a session this manager cannot place: a tab
                // that knows sets it right; try again in a moment.
                return self.failed(Some(f), Failure::Transient { cause: Transient::Busy, retry_after: None }, 0.0, fx);
            }
            Read::Tokens(t) if matches!(self.age(t), Age::Same | Age::Stale) => {}
            Read::Tokens(t) if self.tokens.as_ref().is_some_and(|c| c.sid == t.sid) => {
                // Another tab refreshed while we waited: take its tokens.
                self.adopt(t.clone());
                adopted = true;
            }
            _ => {
                // Another tab logged out or signed in meanwhile: follow it.
                let epoch = self.epoch;
                self.flight = Some(f);
                self.follow(stored.clone(), fx);
                match self.flight.take() {
                    Some(g) if self.epoch == epoch => f = g,
                    g => {
                        self.flight = g;
                        return;
                    }
                }
            }
        }
        f.base = match &stored {
            Read::Corrupt => Snap::Unreadable,
            _ => snapshot(self.tokens.as_ref()),
        };
        match &f.job {
            Job::Refresh => {}
            // Requests that came meanwhile wanted a refresh: this one goes on to it.
            Job::Repair if !self.waiters.is_empty() && self.tokens.is_some() => f.job = Job::Refresh,
            Job::Repair => return self.proceed(f, fx),
            Job::Apply(_, sent) => {
                if self.tokens.as_ref().and_then(|t| t.refresh_token.as_ref()) == Some(sent) {
                    return self.proceed(f, fx);
                }
                // Refreshed since: the late answer is stale.
                release(&f, fx);
                return;
            }
        }
        // Replaced since this refresh set out (just now, or by a notice that
        // came while we waited) and fresh, or too young to refresh again:
        // that tab's refresh is ours.
        let early = self.floor().is_some_and(|at| self.now < at);
        let replaced = self.tokens.as_ref().is_some_and(|c| c.access_token != f.from && (early || !self.is_due(c, self.now)));
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
            self.failed(Some(f), Failure::Transient { cause: Transient::Busy, retry_after: None }, 0.5, fx);
        } else if timed_out {
            // The holder is stuck before sending (no marker): take the lock.
            f.stage = Stage::Lock { stolen: true };
            f.locked = true;
            fx.push(Effect::Lock { steal: true });
            self.flight = Some(f);
        } else {
            self.proceed(f, fx);
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

    /// A record of a session that ended here, found in storage: the refresh
    /// token it carries is revoked (it was rotated after the end, by a tab
    /// that had not seen it).
    fn bury(&mut self, t: &TokenSet, fx: &mut Vec<Effect>) {
        if self.ended.contains(&t.sid) && t.refresh_token != self.buried {
            self.revoke_rotated(t, None, fx);
            self.buried.clone_from(&t.refresh_token);
        }
    }

    /// Revokes the refresh token of tokens that must not outlive their
    /// session, unless it is one still in use here or `presented` (the one
    /// the answer was for, which the server already replaced).
    fn revoke_rotated(&self, t: &TokenSet, presented: Option<&String>, fx: &mut Vec<Effect>) {
        let ours = self.tokens.as_ref().and_then(|c| c.refresh_token.as_ref());
        if let Some(rt) = t.refresh_token.clone().filter(|rt| self.cfg.revoke && Some(rt) != ours && Some(rt) != presented) {
            fx.push(Effect::Revoke { token: rt, hint: "refresh_token" });
        }
    }

    /// Follows what another manager wrote.
    fn follow(&mut self, read: Read, fx: &mut Vec<Effect>) {
        match self.view(read) {
            Read::Tokens(t) => {
                let age = self.age(&t);
                self.saw(&t);
                match age {
                    Age::Same | Age::Stale => {}
                    Age::Older => {
                        // A write-back that crossed a change: never adopted.
                        // Storage gets what this manager knows, under the
                        // lock (a flight under way does it as it goes).
                        self.bury(&t, fx);
                        if self.cfg.store.coordinated() && !self.disposed {
                            self.repair = true;
                        }
                    }
                    Age::Newer if self.tokens.as_ref().is_some_and(|c| c.sid == t.sid) => {
                        self.adopt(t);
                        self.emit_tokens(fx);
                    }
                    Age::Newer => {
                        // Another tab signed in: the session held here is
                        // over for good (a write-back of it is undone).
                        if let Some(c) = &self.tokens {
                            let sid = c.sid.clone();
                            self.end(sid);
                        }
                        self.begin(Some(t), fx);
                        self.emit_tokens(fx);
                    }
                }
            }
            read @ (Read::Empty | Read::Foreign | Read::FutureVersion) => {
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
        let aborted = reply == Reply::Aborted;
        let outcome = self.classify(reply);
        if let Some(o) = take_first(&mut self.orphans, |o| o.id == id) {
            // The session ended while this request was on the wire. An
            // aborted one may still reach the server: its marker expires.
            // (Not one a refresh of the session held now has put up.)
            if o.marked && !aborted && !self.flight.as_ref().is_some_and(|f| f.marked) {
                fx.push(Effect::Unmark);
            }
            if let Ok(t) = &outcome {
                self.revoke_rotated(t, o.sent.as_ref(), fx);
            }
            return;
        }
        if let Some(d) = take_first(&mut self.doubt, |d| d.id == id) {
            return self.late(d, outcome, fx);
        }
        let Some(f) = self.flight.take_if(|f| f.id == id && f.stage == Stage::Sent) else { return };
        if self.disposed && stored.is_none() && self.cfg.store.coordinated() {
            // A disposed manager writes only over its base, and storage
            // could not be read: the next manager may have signed out.
            if let Ok(t) = &outcome {
                self.revoke_rotated(t, f.sent.as_ref(), fx);
            }
            release(&f, fx);
            return;
        }
        // Every branch writes storage before it releases the lock and the
        // marker: the next tab to take the lock must find the outcome there.
        if let Some(stored) = stored.map(|s| self.view(s)).filter(|s| self.cfg.store.coordinated() && !matches!(s, Read::Corrupt)) {
            let older = match &stored {
                // A disposed manager writes only where storage still holds
                // its base: it no longer hears what happened meanwhile.
                Read::Tokens(t) if self.disposed => snap_of(t) == f.base,
                Read::Tokens(t) => snap_of(t) == f.base || self.older_than(t, &f.base),
                Read::Empty => f.base == Snap::Empty,
                _ => false,
            };
            if let (true, Read::Tokens(t)) = (older, &stored) {
                // A write-back that crossed: this answer is newer.
                self.bury(t, fx);
            } else if !older {
                // Compare and swap failed: another tab logged out, signed
                // in or refreshed while this request was on the wire. Its
                // write wins; this answer is dropped.
                let waiters_epoch = self.epoch;
                // A disposed manager follows nothing: what storage holds
                // says whether its session lives on.
                let gone = self.disposed && !matches!(&stored, Read::Tokens(t) if t.sid == f.sid);
                self.follow(stored, fx);
                if gone || self.tokens.as_ref().is_none_or(|c| c.sid != f.sid) {
                    if let Ok(t) = &outcome {
                        self.revoke_rotated(t, f.sent.as_ref(), fx);
                    }
                }
                release(&f, fx);
                if self.epoch == waiters_epoch {
                    // The same session, refreshed by another tab: its token.
                    self.settle(Ok(()), fx);
                }
                return;
            }
        }
        match outcome {
            Ok(t) => self.apply(f, t, fx),
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
                self.repair = false;
                self.expired_said = true;
                self.emit(Event::RefreshError { error: e, retry_in: None }, fx);
                self.emit(Event::Expired, fx);
            }
            Err(failure) => {
                let doubt = matches!(failure, Failure::Transient { cause: Transient::Timeout, .. }).then(|| f.clone());
                self.failed(Some(f), failure, random, fx);
                if std::mem::take(&mut self.unsure) {
                    // The answer the refresh token was kept for did not
                    // come: other tabs may have moved on with it.
                    self.give_up_refresh_token(fx);
                }
                if let Some(mut d) = doubt {
                    // It may have reached the server: its answer still counts.
                    (d.marked, d.locked) = (false, false);
                    if self.doubt.len() >= DOUBT {
                        let _ = take_first(&mut self.doubt, |_| true);
                    }
                    self.doubt.push(d);
                }
            }
        }
    }

    /// Whether a stored record is older than the base a flight set out from.
    fn older_than(&self, t: &TokenSet, base: &Snap) -> bool {
        if self.ended.contains(&t.sid) {
            return true;
        }
        match base {
            Snap::Session { sid, gen, .. } if *sid == t.sid => t.gen < *gen,
            Snap::Session { sid, born, .. } => t.born > 0.0 && (t.born, &t.sid) < (*born, sid),
            _ => false,
        }
    }

    /// New tokens from this manager's refresh (its answer, or a late one in
    /// doubt): stored, told, handed to the waiters.
    fn apply(&mut self, f: Flight, mut t: TokenSet, fx: &mut Vec<Effect>) {
        // The answer came: its refresh token is this manager's alone now.
        self.unsure = false;
        let Some(c) = self.tokens.as_ref() else { return release(&f, fx) };
        let brief = t.expires_at.is_some_and(|e| e - t.received_at < 2.0 * schedule::MIN_REFRESH_INTERVAL);
        t.sid = c.sid.clone();
        (t.born, t.gen) = (c.born, c.gen.wrapping_add(1));
        t.jkt = t.jkt.or_else(|| c.jkt.clone());
        t.brief = if brief { c.brief.saturating_add(1) } else { 0 };
        t.refused = if f.refused { c.refused.saturating_add(1) } else { 0 };
        let t = t.inherit_refresh_token(Some(c));
        self.tokens = Some(t);
        self.version = self.version.wrapping_add(1);
        self.attempt = 0;
        self.retry_at = None;
        self.failure = None;
        self.expired_said = false;
        self.repair = false;
        self.persist_first(fx);
        self.notify(fx);
        release(&f, fx);
        self.settle(Ok(()), fx);
        self.emit_tokens(fx);
    }

    /// The answer of a request given up as timed out. Tokens are applied
    /// (under the lock) if the session is the same and nothing refreshed it
    /// since; a refresh token for a session that ended is revoked.
    fn late(&mut self, d: Flight, outcome: Result<TokenSet, Failure>, fx: &mut Vec<Effect>) {
        let Ok(t) = outcome else { return };
        let Some(sent) = d.sent.clone() else { return };
        let current = self.tokens.as_ref().filter(|c| c.sid == d.sid && !self.ended.contains(&c.sid));
        let Some(c) = current else { return self.revoke_rotated(&t, Some(&sent), fx) };
        if c.refresh_token.as_ref() != Some(&sent) {
            // Refreshed since (its retry, or another tab): stale.
            return;
        }
        match &mut self.flight {
            // Its retry (or a repair) has not gone out yet: apply this
            // answer instead, under the same lock.
            Some(f) if f.stage != Stage::Sent => f.job = Job::Apply(Box::new(t), sent),
            // Its retry is on the wire with the same refresh token: that
            // answer decides (the server saw the token twice).
            Some(_) => {}
            None => self.launch(Job::Apply(Box::new(t), sent), fx),
        }
    }

    /// A transient failure: keep the tokens, back off, tell the waiters and
    /// the listeners. The flight is over.
    fn failed(&mut self, f: Option<Flight>, failure: Failure, random: f64, fx: &mut Vec<Effect>) {
        if let Some(f) = f {
            release(&f, fx);
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
            Reply::Network | Reply::Aborted => return Err(net(Transient::Network)),
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
        if self.ended.contains(&sid) {
            return;
        }
        if self.ended.len() >= 8 {
            let _ = take_first(&mut self.ended, |_| true);
        }
        self.ended.push(sid);
    }

    fn logout(&mut self, fx: &mut Vec<Effect>) {
        if !self.loaded {
            // What a store still loading finds is signed out of.
            self.out_before_load = true;
        }
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
        self.repair = false;
        // A refresh on the wire is not aborted: its refresh token replaced
        // the stored one at the server, and the next manager needs what it
        // brings. It lands in storage under the lock it holds, if storage
        // still holds what it set out from. One that has not gone out stops.
        if self.flight.as_ref().is_some_and(|f| f.stage != Stage::Sent) {
            self.orphan_flight(fx);
        }
    }

    /// Other managers (tabs, or this page's) hold this same refresh token
    /// and this manager can no longer coordinate with them: it must never
    /// present it. The access token serves until it expires.
    fn give_up_refresh_token(&mut self, fx: &mut Vec<Effect>) {
        let Some(t) = self.tokens.as_mut() else { return };
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

    fn storage_failed(&mut self, first_copy: bool, write: bool, fx: &mut Vec<Effect>) {
        if self.cfg.store != Store::Memory {
            let sending = self.flight.as_ref().is_some_and(|f| f.stage == Stage::Sent);
            self.unsure = sending && !first_copy;
            if first_copy || sending {
                // This manager holds the only copy of its refresh token (or
                // will, once its request answers): fall back for real (F4).
                // A record a write left behind, or one whose refresh token
                // is on the wire from here, no longer follows the session:
                // remove it (best effort) rather than let any tab adopt an
                // older, already rotated refresh token from it. Otherwise a
                // read that failed wrote nothing, and what it could not
                // read stays (it may be the only copy of the session).
                if (write || sending) && !self.future_stored {
                    fx.push(Effect::Remove);
                }
            } else {
                self.give_up_refresh_token(fx);
            }
            self.cfg.store = Store::Memory;
            self.repair = false;
            fx.push(Effect::UseMemory);
            if let Some(f) = &mut self.flight {
                release(f, fx);
                f.marked = false;
                f.locked = false;
                f.base = Snap::Unreadable;
                if f.stage != Stage::Sent {
                    let f = f.clone();
                    self.flight = None;
                    self.proceed(f, fx);
                }
            }
        }
        if !std::mem::replace(&mut self.storage_said, true) {
            self.emit(Event::StorageError, fx);
        }
    }
}

/// The user the tokens name (`sub` of the access token, or of the ID
/// token), if either is a JWT that says.
fn subject(t: &TokenSet) -> Option<String> {
    let sub = |jwt: &str| super::jwt::decode(jwt).ok().and_then(|j| j.claims.sub);
    sub(&t.access_token).or_else(|| t.id_token.as_deref().and_then(sub))
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
#[derive(Clone, Debug)]
enum Snap {
    /// A session's record: its id, refresh token and refresh count (and
    /// its birth, to order it against another session: not compared).
    Session { sid: String, rt: Option<String>, gen: u32, born: f64 },
    /// Nothing stored.
    Empty,
    /// Something that is not a record of this client.
    Unreadable,
}

impl PartialEq for Snap {
    fn eq(&self, other: &Snap) -> bool {
        match (self, other) {
            (Snap::Session { sid: a, rt: r, gen: g, .. }, Snap::Session { sid: b, rt: s, gen: h, .. }) => a == b && r == s && g == h,
            (Snap::Empty, Snap::Empty) => true,
            (Snap::Unreadable, Snap::Unreadable) => true,
            _ => false,
        }
    }
}

fn snap_of(t: &TokenSet) -> Snap {
    Snap::Session { sid: t.sid.clone(), rt: t.refresh_token.clone(), gen: t.gen, born: t.born }
}

fn snapshot(t: Option<&TokenSet>) -> Snap {
    t.map_or(Snap::Empty, snap_of)
}
