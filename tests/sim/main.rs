//! A deterministic simulation of many managers on one key, over the real
//! session core, in the manner of FoundationDB's simulator and TigerBeetle's
//! VOPR: one seed draws the whole world (how it is set up, every action,
//! delay, loss and fault), there is no clock, thread or IO, and the same
//! seed replays the same run. The model is in `world.rs`, with what it
//! simplifies.
//!
//! Checked after every step:
//! - a request goes to the API only with a token of the session current in
//!   its manager when it is sent (never another user's);
//! - no refresh token is presented after the server rotated it, unless that
//!   rotation's answer never reached the client (timed out, lost, or its tab
//!   closed): the in-doubt case the README documents;
//! - no manager goes back to a session it left (a logout or a sign-in is
//!   never undone), and at the end storage holds none of them;
//! - no more than `RATE_MAX` token requests in any minute;
//! - the timer never loops;
//!
//! and at the end, once every event is delivered: every call settled, and
//! no lock is held.
//!
//! `cargo test --release --test sim` runs `TESSERA_SIM_SCHEDULES` schedules
//! (1,000 by default; `./dev test` runs 100,000, `./dev fuzz` runs
//! for `TESSERA_SIM_SECONDS`). A failure prints its seed, the shortest
//! schedule that still fails, and the trace of that schedule; replay it with
//! `TESSERA_SIM_REPLAY=<seed> [TESSERA_SIM_KEEP=<ops>] cargo test --release
//! --test sim -- --nocapture`.

#![cfg(not(target_arch = "wasm32"))]

mod rng;
mod world;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rng::Rng;
use world::{Op, Seen, Setup, World};

/// The schedule a seed draws.
fn schedule(seed: u64) -> Vec<Op> {
    let mut r = Rng::new(seed);
    let n = 40 + r.below(220) as usize;
    (0..n).map(|_| Op { what: r.below(100) as u8, who: r.below(256) as u8, r: r.next() }).collect()
}

/// Runs `ops` in the world of `seed`; the failure, if any, and what it saw.
fn run(seed: u64, ops: &[Op], trace: bool) -> (Option<world::Broken>, Seen, Vec<String>) {
    let mut w = World::new(Setup::draw(seed), trace);
    for op in ops {
        w.op(*op);
        if w.broken().is_some() {
            break;
        }
    }
    if w.broken().is_none() {
        w.quiesce();
    }
    let b = w.broken().cloned();
    (b, w.seen.clone(), w.trace.take().unwrap_or_default())
}

/// The failure's kind, so shrinking keeps the same failure.
fn kind(what: &str) -> String {
    what.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Removes ops while the same failure still happens (delta debugging).
fn shrink(seed: u64, ops: Vec<Op>, want: &str) -> Vec<(usize, Op)> {
    let mut keep: Vec<(usize, Op)> = ops.into_iter().enumerate().collect();
    let fails = |k: &[(usize, Op)]| {
        let ops: Vec<Op> = k.iter().map(|(_, o)| *o).collect();
        run(seed, &ops, false).0.is_some_and(|b| kind(&b.what) == want)
    };
    let mut chunk = keep.len() / 2;
    let mut tries = 0;
    while chunk >= 1 && tries < 3_000 {
        let mut i = 0;
        let mut removed = false;
        while i < keep.len() && tries < 3_000 {
            let mut candidate = keep.clone();
            candidate.drain(i..(i + chunk).min(keep.len()));
            tries += 1;
            if fails(&candidate) {
                keep = candidate;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if !removed {
            chunk /= 2;
        }
    }
    keep
}

fn report(seed: u64) -> String {
    let ops = schedule(seed);
    let (b, _, _) = run(seed, &ops, false);
    let Some(b) = b else { return format!("seed {seed}: no failure on replay") };
    let kept = shrink(seed, ops, &kind(&b.what));
    let ops: Vec<Op> = kept.iter().map(|(_, o)| *o).collect();
    let (b2, _, trace) = run(seed, &ops, true);
    let list: Vec<String> = kept.iter().map(|(i, _)| i.to_string()).collect();
    let mut out = format!(
        "\nsimulation failure, seed {seed}, {:?}\n  {}\n  shortest schedule ({} of {} ops): TESSERA_SIM_KEEP={}\n  replay: TESSERA_SIM_REPLAY={seed} TESSERA_SIM_KEEP={} cargo test --release --test sim -- --nocapture\n  world: {:?}\n",
        b.step,
        b2.as_ref().map_or(b.what.clone(), |b| b.what.clone()),
        kept.len(),
        schedule(seed).len(),
        list.join(","),
        list.join(","),
        Setup::draw(seed),
    );
    for (i, o) in &kept {
        out.push_str(&format!("  op {i}: {o:?}\n"));
    }
    out.push_str("trace of the shortest schedule:\n");
    for line in trace.iter().rev().take(400).collect::<Vec<_>>().into_iter().rev() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs seeds from `first` on two threads until `count` seeds ran or the
/// time is up; the first failing seed, if any, and what the runs saw.
fn explore(first: u64, count: u64, budget: Option<Duration>) -> (u64, Option<u64>, Seen) {
    let next = Arc::new(AtomicU64::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(None::<u64>));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ran = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (next, stop, failed, seen, ran) = (next.clone(), stop.clone(), failed.clone(), seen.clone(), ran.clone());
            std::thread::spawn(move || {
                let mut mine = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first.saturating_add(count) || budget.is_some_and(|b| start.elapsed() > b) {
                        break;
                    }
                    let (b, s, _) = run(seed, &schedule(seed), false);
                    mine.add(&s);
                    ran.fetch_add(1, Ordering::Relaxed);
                    if b.is_some() {
                        let mut f = failed.lock().unwrap();
                        if f.is_none_or(|x| seed < x) {
                            *f = Some(seed);
                        }
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                seen.lock().unwrap().add(&mine);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let f = *failed.lock().unwrap();
    let s = seen.lock().unwrap().clone();
    (ran.load(Ordering::Relaxed), f, s)
}

/// How many schedules the default run (`cargo test`) explores; the edges
/// check below holds from there on.
const DEFAULT_SCHEDULES: u64 = 1_000;

/// The simulation: `TESSERA_SIM_SCHEDULES` seeds from `TESSERA_SIM_SEED`
/// (or, with `TESSERA_SIM_SECONDS`, as many as fit in that time). Two other
/// modes, for finding out what it catches: `TESSERA_SIM_REPLAY=<seed>`
/// replays one seed with its trace (`TESSERA_SIM_KEEP=<i,j,...>` keeps only
/// those ops), `TESSERA_SIM_CENSUS=1` runs every seed of the range and counts
/// the failures by kind, with the first seed of each. Each fails when a
/// schedule does.
#[test]
fn simulate() {
    if let Some(seed) = env_u64("TESSERA_SIM_REPLAY") {
        return replay(seed);
    }
    let first = env_u64("TESSERA_SIM_SEED").unwrap_or(1);
    if std::env::var_os("TESSERA_SIM_CENSUS").is_some() {
        return census(first, env_u64("TESSERA_SIM_SCHEDULES").unwrap_or(10_000));
    }
    let budget = env_u64("TESSERA_SIM_SECONDS").map(Duration::from_secs);
    let count = env_u64("TESSERA_SIM_SCHEDULES").unwrap_or(if budget.is_some() { u64::MAX / 2 } else { DEFAULT_SCHEDULES });
    let start = Instant::now();
    let (ran, failed, seen) = explore(first, count, budget);
    println!("simulation: {ran} schedules from seed {first} in {:.1} s; {seen:?}", start.elapsed().as_secs_f64());
    if let Some(seed) = failed {
        panic!("{}", report(seed));
    }
    if ran >= DEFAULT_SCHEDULES {
        // A simulation that stopped reaching an edge would pass without
        // testing it: each one must come up.
        let missed = seen.missed();
        assert!(missed.is_empty(), "{ran} schedules never reached: {missed:?} (the world's draws changed?)");
    }
}

fn census(first: u64, count: u64) {
    let mut kinds: std::collections::BTreeMap<String, (u64, u64, String)> = Default::default();
    for seed in first..first + count {
        if let (Some(b), _, _) = run(seed, &schedule(seed), false) {
            let e = kinds.entry(kind(&b.what)).or_insert((0, seed, b.what.clone()));
            e.0 += 1;
        }
    }
    for (n, seed, what) in kinds.values() {
        println!("{n:>6} x first seed {seed:>6} ({:?}): {what}", Setup::draw(*seed).kind);
    }
    assert!(kinds.is_empty(), "{} kinds of failure in {count} schedules from seed {first}", kinds.len());
}

fn replay(seed: u64) {
    let mut ops = schedule(seed);
    if let Ok(keep) = std::env::var("TESSERA_SIM_KEEP") {
        let keep: Vec<usize> = keep.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        ops = keep.iter().filter_map(|i| ops.get(*i).copied()).collect();
    }
    let (b, seen, trace) = run(seed, &ops, true);
    for line in &trace {
        println!("{line}");
    }
    println!("world: {:?}\nseen: {seen:?}\nresult: {b:?}", Setup::draw(seed));
    assert!(b.is_none(), "seed {seed} fails: {b:?}");
}
