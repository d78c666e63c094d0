//! The pure-Rust core: token parsing, claims, expiry, scheduling and backoff
//! decisions, the storage record format. Nothing here touches web-sys or reads
//! a clock: callers pass `now`, so `cargo test` on the host covers it all.

pub mod dpop;
pub mod error;
pub mod json;
pub mod jwt;
pub mod lease;
pub mod origin;
pub mod record;
pub mod refresh;
pub mod retry;
pub mod schedule;
pub mod session;
pub mod token;
