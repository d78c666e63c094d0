//! Token endpoint responses (status, Retry-After, body). Invariants: fuzz/checks.rs.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::token_response(data));
