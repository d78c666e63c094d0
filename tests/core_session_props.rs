//! Properties of the session state machine over random interleavings, in a
//! simulated world: two tabs (two sessions) sharing one storage record, a
//! cross-tab lock that can time out and be stolen, on-the-wire markers,
//! storage notices and refresh answers delivered in any order and at any
//! time, and a server that rotates refresh tokens and records any reuse.
//!
//! Invariants checked after every step:
//! - no refresh token is presented twice (the server would revoke the family);
//! - no two requests with the same refresh token are on the wire at once;
//! - a request never gets a token of another session or epoch than the one it
//!   started in;
//! - after logout, a tab's effects never carry the old tokens, except a
//!   revocation;
//! - at most one refresh of the current epoch per tab is on the wire;
//! - the timer is never armed in the past, and firing it never re-arms it at
//!   once (no loop);
//! - once every pending event is delivered, every request has its answer.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use tessera::core::error::Error;
use tessera::core::record::{self, Read};
use tessera::core::refresh::{Failure, Transient};
use tessera::core::session::*;

const T0: f64 = 1_750_000_000_000.0;
const CLIENT: &str = "spa|https://auth.example.com/token";
const TIMEOUT: f64 = 30_000.0;

fn cfg(store: Store) -> Config {
    Config {
        refreshable: true,
        auto_refresh: true,
        margin: 60_000.0,
        leeway: 5_000.0,
        timeout: TIMEOUT,
        revoke: true,
        client: CLIENT.into(),
        store,
        check_tab: false,
        dpop: false,
    }
}

/// Tokens are "at-<family>-<n>" and "rt-<family>-<n>": the family is the
/// session id, so any token says which session it belongs to.
fn family(token: &str) -> &str {
    token.split('-').nth(1).unwrap_or("")
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// The server sees the request and answers with new tokens.
    Rotated,
    /// The server sees it and answers 503.
    Unavailable,
    /// The request never reaches the server (network, timeout).
    Lost,
}

#[derive(Debug)]
enum Pending {
    Notice(usize),
    Grant(usize),
    LockTimeout { tab: usize, at: f64 },
    Reply { tab: usize, flight: u32, rt: String, outcome: Outcome, deadline: f64 },
}

struct Fam {
    current: String,
    n: u32,
    revoked: bool,
}

struct Req {
    tab: usize,
    epoch: u32,
    sid: Option<String>,
}

struct Tab {
    s: Session,
    dead: Vec<String>,
    memory: bool,
    /// The next write throws (a quota error).
    broken: bool,
}

struct World {
    now: f64,
    tabs: Vec<Tab>,
    storage: Option<String>,
    marker: Option<(usize, f64)>,
    holder: Option<usize>,
    queue: Vec<usize>,
    pending: Vec<Pending>,
    fams: HashMap<String, Fam>,
    on_wire: HashSet<String>,
    next_fam: u32,
    next_req: u32,
    reqs: HashMap<u32, Req>,
    answered: HashSet<u32>,
    seen: Coverage,
}

/// What a run exercised, so a test can show the properties are not vacuous.
#[derive(Default, Debug)]
struct Coverage {
    rotations: u32,
    steals: u32,
    busy: u32,
    dropped_by_cas: u32,
    rotated_revoked: u32,
    adopted_under_lock: u32,
    tokens_answered: u32,
    storage_failures: u32,
}

impl World {
    fn new(tabs: usize, store: Store) -> World {
        let mut w = World {
            now: T0,
            tabs: Vec::new(),
            storage: None,
            marker: None,
            holder: None,
            queue: Vec::new(),
            pending: Vec::new(),
            fams: HashMap::new(),
            on_wire: HashSet::new(),
            next_fam: 0,
            next_req: 0,
            reqs: HashMap::new(),
            answered: HashSet::new(),
            seen: Coverage::default(),
        };
        for _ in 0..tabs {
            let mut s = Session::new(cfg(store));
            let fx = s.handle(Input::Loaded(Read::Empty), T0);
            assert!(fx.is_empty());
            w.tabs.push(Tab { s, dead: Vec::new(), memory: store == Store::Memory, broken: false });
        }
        w
    }

    fn stored(&self) -> Read {
        record::decode(self.storage.as_deref(), CLIENT)
    }

    fn marked_for(&self, tab: usize) -> bool {
        self.marker.is_some_and(|(owner, until)| owner != tab && until > self.now)
    }

    fn shared(&self, tab: usize) -> bool {
        self.tabs[tab].s.store().coordinated()
    }

    fn feed(&mut self, tab: usize, input: Input) {
        let before = self.tabs[tab].s.poll_timeout();
        let is_timer = matches!(input, Input::Timer);
        let fx = self.tabs[tab].s.handle(input, self.now);
        self.run(tab, fx);
        let after = self.tabs[tab].s.poll_timeout();
        if let Some(t) = after {
            assert!(t >= self.now, "timer armed in the past: {t} < {}", self.now);
        }
        if is_timer && before.is_some_and(|b| b <= self.now) {
            assert!(after.is_none_or(|t| t > self.now), "the timer fired and was re-armed at once (a loop)");
        }
    }

    fn run(&mut self, tab: usize, fx: Vec<Effect>) {
        let mut failed = None;
        if std::env::var_os("TESSERA_TRACE").is_some() {
            for e in &fx {
                eprintln!("    tab {tab} @{}: {e:?}", self.now - T0);
            }
        }
        for e in fx {
            let dead = self.tabs[tab].dead.clone();
            let carries_dead = |text: &str| dead.iter().any(|d| text.contains(&format!("\"{d}\"")) || text == d);
            match e {
                Effect::Write { record: text, first } => {
                    assert!(!carries_dead(&text), "tab {tab} wrote tokens it logged out of");
                    assert!(!self.tabs[tab].memory);
                    if std::mem::take(&mut self.tabs[tab].broken) {
                        // As the driver does: the write threw, so the record
                        // no longer follows the session; remove it at once
                        // (before the lock is released), then tell the session.
                        self.storage = None;
                        failed = Some(first);
                    } else {
                        self.storage = Some(text);
                    }
                }
                Effect::Remove => {
                    assert!(!self.tabs[tab].memory);
                    self.storage = None;
                }
                Effect::Notify => {
                    for other in 0..self.tabs.len() {
                        if other != tab {
                            self.pending.push(Pending::Notice(other));
                        }
                    }
                }
                Effect::Lock { steal } => {
                    assert!(self.shared(tab));
                    if steal {
                        self.seen.steals += 1;
                        self.holder = Some(tab);
                        self.queue.retain(|t| *t != tab);
                        self.pending.push(Pending::Grant(tab));
                    } else {
                        self.queue.push(tab);
                        self.pending.push(Pending::LockTimeout { tab, at: self.now + TIMEOUT });
                        self.pump_lock();
                    }
                }
                Effect::Unlock => {
                    if self.holder == Some(tab) {
                        self.holder = None;
                    }
                    self.queue.retain(|t| *t != tab);
                    self.pending.retain(|p| !matches!(p, Pending::Grant(t) | Pending::LockTimeout { tab: t, .. } if *t == tab));
                    self.pump_lock();
                }
                Effect::Mark(hold) => {
                    assert!(hold > 0.0);
                    self.marker = Some((tab, self.now + hold));
                }
                Effect::Unmark => {
                    if self.marker.is_some_and(|(o, _)| o == tab) {
                        self.marker = None;
                    }
                }
                Effect::Send { flight, refresh_token } => {
                    assert!(!carries_dead(&refresh_token), "tab {tab} presented a refresh token it logged out of");
                    assert!(self.on_wire.insert(refresh_token.clone()), "two requests with {refresh_token} on the wire at once");
                    let epoch_sends = self
                        .pending
                        .iter()
                        .filter(|p| matches!(p, Pending::Reply { tab: t, rt, .. } if *t == tab && self.tabs[tab].s.access_token().is_some_and(|a| family(a) == family(rt))))
                        .count();
                    assert!(epoch_sends == 0, "tab {tab} has two refreshes of one session on the wire");
                    let outcome = match (flight + self.next_req) % 5 {
                        0 => Outcome::Unavailable,
                        1 => Outcome::Lost,
                        _ => Outcome::Rotated,
                    };
                    self.pending.push(Pending::Reply { tab, flight, rt: refresh_token, outcome, deadline: self.now + TIMEOUT });
                }
                Effect::Emit(Event::RefreshError { error: Error::Refresh(Failure::Transient { cause: Transient::Busy, .. }), .. }) => {
                    self.seen.busy += 1;
                }
                Effect::Abort { .. } | Effect::Emit(_) => {}
                Effect::Revoke { token, .. } => {
                    // A refresh token that is not a family's first was rotated
                    // by a refresh: revoked at a logout, or from a dropped answer.
                    if token.starts_with("rt-") && !token.ends_with("-0") {
                        self.seen.rotated_revoked += 1;
                    }
                    if let Some(f) = self.fams.get_mut(family(&token)) {
                        f.revoked = true;
                    }
                }
                Effect::Answer { request, epoch, result } => self.answer(request, epoch, result.ok().flatten()),
                Effect::UseMemory => {
                    self.tabs[tab].memory = true;
                    self.queue.retain(|t| *t != tab);
                    if self.holder == Some(tab) {
                        self.holder = None;
                    }
                }
            }
        }
        if let Some(first_copy) = failed {
            self.seen.storage_failures += 1;
            self.feed(tab, Input::StorageFailed { first_copy, write: true });
        }
    }

    fn answer(&mut self, request: u32, epoch: u32, token: Option<String>) {
        assert!(self.answered.insert(request), "request {request} answered twice");
        let r = &self.reqs[&request];
        if let Some(t) = token {
            self.seen.tokens_answered += 1;
            assert_eq!(epoch, r.epoch, "request {request} got a token of another epoch");
            assert_eq!(Some(family(&t)), r.sid.as_deref(), "request {request} got another session's token");
            assert!(!self.tabs[r.tab].dead.contains(&t), "request {request} got a token its tab logged out of");
        }
    }

    fn pump_lock(&mut self) {
        if self.holder.is_none() && !self.queue.is_empty() {
            let t = self.queue.remove(0);
            self.holder = Some(t);
            self.pending.retain(|p| !matches!(p, Pending::LockTimeout { tab, .. } if *tab == t));
            self.pending.push(Pending::Grant(t));
        }
    }

    fn sign_in(&mut self, tab: usize, ttl: u32) {
        self.next_fam += 1;
        let f = format!("f{}", self.next_fam);
        self.fams.insert(f.clone(), Fam { current: format!("rt-{f}-0"), n: 0, revoked: false });
        let body = format!(r#"{{"access_token":"at-{f}-0","token_type":"Bearer","expires_in":{ttl},"refresh_token":"rt-{f}-0"}}"#);
        let (t, skew) = self.tabs[tab].s.parse(&body, self.now).unwrap();
        let fx = self.tabs[tab].s.set_tokens(t, skew, f, self.now);
        self.run(tab, fx);
    }

    fn want(&mut self, tab: usize, kind: u8) {
        self.next_req += 1;
        let request = self.next_req;
        let s = &self.tabs[tab].s;
        let sid = s.tokens().map(|t| t.sid.clone());
        self.reqs.insert(request, Req { tab, epoch: s.epoch(), sid: sid.clone() });
        let kind = match kind % 4 {
            0 => Want::Fetch,
            1 => Want::Token,
            2 => Want::Refresh,
            _ => Want::Replay(s.access_token().unwrap_or("at-none-0").to_string()),
        };
        if matches!(kind, Want::Fetch | Want::Token) {
            if let Some(r) = s.token_now(self.now) {
                let (epoch, token) = (s.epoch(), r.ok().flatten().map(String::from));
                return self.answer(request, epoch, token);
            }
        }
        let epoch = matches!(kind, Want::Replay(_)).then(|| s.epoch());
        self.feed(tab, Input::Want { request, kind, epoch });
    }

    fn logout(&mut self, tab: usize) {
        if let Some(t) = self.tabs[tab].s.tokens() {
            let (at, rt) = (t.access_token.clone(), t.refresh_token.clone());
            self.tabs[tab].dead.push(at);
            self.tabs[tab].dead.extend(rt);
        }
        let fx = self.tabs[tab].s.handle(Input::Logout, self.now);
        // The revocation of the old refresh token is the one effect allowed
        // to carry it.
        let (revokes, rest): (Vec<_>, Vec<_>) = fx.into_iter().partition(|e| matches!(e, Effect::Revoke { .. }));
        self.run(tab, revokes);
        self.run(tab, rest);
    }

    /// Delivers pending event `i`.
    fn deliver(&mut self, i: usize) {
        let p = self.pending.swap_remove(i);
        if std::env::var_os("TESSERA_TRACE").is_some() {
            eprintln!("  deliver {p:?}");
        }
        match p {
            Pending::Notice(tab) => {
                if !self.tabs[tab].memory {
                    let read = self.stored();
                    self.feed(tab, Input::StorageSaw(read));
                }
            }
            Pending::Grant(tab) => {
                let (stored, marked) = (self.stored(), self.marked_for(tab));
                let before = self.tabs[tab].s.access_token().map(String::from);
                self.feed(tab, Input::LockGranted { stored, marked });
                if before.is_some() && self.tabs[tab].s.access_token().map(String::from) != before {
                    self.seen.adopted_under_lock += 1;
                }
            }
            Pending::LockTimeout { tab, at } => {
                if self.queue.contains(&tab) {
                    self.now = self.now.max(at);
                    self.queue.retain(|t| *t != tab);
                    let (stored, marked) = (self.stored(), self.marked_for(tab));
                    self.feed(tab, Input::LockTimedOut { stored, marked });
                }
            }
            Pending::Reply { tab, flight, rt, outcome, deadline } => {
                self.on_wire.remove(&rt);
                let late = self.now > deadline;
                let reply = match outcome {
                    Outcome::Lost => Reply::Timeout,
                    _ if late => Reply::Timeout,
                    Outcome::Unavailable | Outcome::Rotated => {
                        let fam = self.fams.get_mut(family(&rt)).expect("a known family");
                        assert_eq!(fam.current, rt, "refresh token {rt} presented again after it rotated: the server revokes the session");
                        if fam.revoked {
                            Reply::Http {
                                status: 400,
                                body: r#"{"error":"invalid_grant"}"#.into(),
                                retry_after: None,
                                date: None,
                                age: None,
                                sent_at: self.now,
                            }
                        } else if let Outcome::Rotated = outcome {
                            fam.n += 1;
                            self.seen.rotations += 1;
                            let f = family(&rt).to_string();
                            fam.current = format!("rt-{f}-{}", fam.n);
                            let body = format!(
                                r#"{{"access_token":"at-{f}-{n}","token_type":"Bearer","expires_in":60,"refresh_token":"rt-{f}-{n}"}}"#,
                                n = fam.n
                            );
                            Reply::Http { status: 200, body, retry_after: None, date: None, age: None, sent_at: self.now }
                        } else {
                            Reply::Http { status: 503, body: String::new(), retry_after: None, date: None, age: None, sent_at: self.now }
                        }
                    }
                };
                let stored = self.shared(tab).then(|| self.stored());
                let before = self.tabs[tab].s.version();
                let wrote = self.storage.clone();
                self.feed(tab, Input::Answered { flight, reply, stored, random: 0.5 });
                if self.storage == wrote && self.tabs[tab].s.version() != before && self.shared(tab) {
                    self.seen.dropped_by_cas += 1;
                }
            }
        }
    }

    /// Delivers pending event `i`; one that happens at a later time (a lock
    /// timeout) moves the clock there, delivering what is due before it.
    fn deliver_in_order(&mut self, i: usize) {
        match self.pending[i] {
            Pending::LockTimeout { at, .. } if at > self.now => self.advance(at - self.now),
            _ => self.deliver(i),
        }
    }

    /// Moves the clock, delivering what must happen before then (timeouts).
    fn advance(&mut self, by: f64) {
        let target = self.now + by;
        loop {
            let due = self
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| match p {
                    Pending::LockTimeout { at, .. } if *at <= target => Some((i, *at)),
                    Pending::Reply { deadline, .. } if *deadline <= target => Some((i, *deadline)),
                    _ => None,
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let Some((i, at)) = due else { break };
            self.now = self.now.max(at);
            self.deliver(i);
        }
        self.now = target;
    }

    fn step(&mut self, op: (u8, u8, u16, u32)) {
        let (what, tab, pick, n) = op;
        let tab = usize::from(tab) % self.tabs.len();
        if std::env::var_os("TESSERA_TRACE").is_some() {
            eprintln!("step {} tab {tab} pick {pick} n {n}; pending {:?}", what % 16, self.pending);
        }
        match what % 16 {
            0 => self.sign_in(tab, [10, 60, 600][n as usize % 3]),
            1..=4 => self.want(tab, (n % 251) as u8),
            5 => self.logout(tab),
            6 | 7 => {
                if self.tabs[tab].s.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.feed(tab, Input::Timer);
                }
            }
            8 | 9 => self.advance(f64::from(n % 20_000)),
            10..=13 => {
                if !self.pending.is_empty() {
                    let i = usize::from(pick) % self.pending.len();
                    self.deliver_in_order(i);
                }
            }
            14 => self.feed(tab, Input::Wake { online: n % 2 == 0 }),
            _ => match n % 9 {
                0 => self.feed(tab, Input::StorageFailed { first_copy: false, write: false }), // a read threw
                1 | 2 => self.tabs[tab].broken = true,
                _ => {}
            },
        }
    }

    /// Delivers everything still pending; every request must be answered.
    fn quiesce(&mut self) {
        for round in 0.. {
            assert!(round < 10_000, "the world does not settle");
            if self.pending.is_empty() {
                break;
            }
            self.deliver_in_order(round % self.pending.len());
        }
        for id in self.reqs.keys() {
            assert!(self.answered.contains(id), "request {id} was never answered");
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<(u8, u8, u16, u32)>> {
    prop::collection::vec(any::<(u8, u8, u16, u32)>(), 1..160)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Two tabs on one shared record.
    #[test]
    fn two_tabs_sharing_storage(ops in ops()) {
        let mut w = World::new(2, Store::Shared);
        for op in ops {
            w.step(op);
        }
        w.quiesce();
    }

    /// Three managers on one record (two tabs and a second manager in one
    /// of them, as React Strict Mode or hot module reload make).
    #[test]
    fn three_managers_sharing_storage(ops in ops()) {
        let mut w = World::new(3, Store::Shared);
        for op in ops {
            w.step(op);
        }
        w.quiesce();
    }

    /// One manager with private storage, and one in memory.
    #[test]
    fn one_manager_alone(ops in ops(), memory in any::<bool>()) {
        let mut w = World::new(1, if memory { Store::Memory } else { Store::Private });
        for op in ops {
            w.step(op);
        }
        w.quiesce();
    }
}

/// The random worlds reach the interesting cases: rotations, stolen locks,
/// busy refusals, answers dropped by the compare and swap and revoked,
/// tokens adopted under the lock, storage failures. (A deterministic
/// generator, so this is the same run every time.)
#[test]
fn the_random_worlds_reach_the_races() {
    let mut total = Coverage::default();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..400 {
        let mut w = World::new(2 + (next() % 2) as usize, Store::Shared);
        for _ in 0..160 {
            let r = next();
            w.step((r as u8, (r >> 8) as u8, (r >> 16) as u16, (r >> 32) as u32));
        }
        w.quiesce();
        let c = w.seen;
        total.rotations += c.rotations;
        total.steals += c.steals;
        total.busy += c.busy;
        total.dropped_by_cas += c.dropped_by_cas;
        total.rotated_revoked += c.rotated_revoked;
        total.adopted_under_lock += c.adopted_under_lock;
        total.tokens_answered += c.tokens_answered;
        total.storage_failures += c.storage_failures;
    }
    eprintln!("{total:?}");
    let t = &total;
    for (what, n) in [
        ("rotations", t.rotations),
        ("steals", t.steals),
        ("busy", t.busy),
        ("dropped_by_cas", t.dropped_by_cas),
        ("rotated_revoked", t.rotated_revoked),
        ("adopted_under_lock", t.adopted_under_lock),
        ("tokens_answered", t.tokens_answered),
        ("storage_failures", t.storage_failures),
    ] {
        assert!(n >= 5, "{what}: only {n} in 400 worlds");
    }
}

/// Replays an interleaving proptest reported, with every effect printed:
/// `TESSERA_OPS='[(80,0,0,1),...]' TESSERA_TABS=2 TESSERA_TRACE=1 cargo test --test core_session_props replay`.
#[test]
fn replay() {
    let Ok(text) = std::env::var("TESSERA_OPS") else { return };
    let nums: Vec<u64> = text.split(|c: char| !c.is_ascii_digit()).filter(|x| !x.is_empty()).map(|x| x.parse().unwrap()).collect();
    let ops: Vec<(u8, u8, u16, u32)> = nums.chunks(4).map(|c| (c[0] as u8, c[1] as u8, c[2] as u16, c[3] as u32)).collect();
    let tabs = std::env::var("TESSERA_TABS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let mut w = World::new(tabs, Store::Shared);
    for op in ops {
        w.step(op);
    }
    w.quiesce();
}
