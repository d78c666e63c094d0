//! Sending a request again: which requests may be repeated, after which
//! failures, and when (`retries` and `idempotencyKeys`, for backends that
//! answer a lost order twice if asked twice).

use super::json;
use super::schedule::Millis;

/// First delay before a repeat; it doubles per attempt.
pub const RETRY_BASE: Millis = 500.0;

/// Delays grow to this and stay there.
pub const RETRY_CAP: Millis = 8_000.0;

/// A server's `Retry-After` is honoured up to this; a request waits no
/// longer than that for its answer.
pub const RETRY_AFTER_CAP: Millis = 30_000.0;

/// Whether repeating the request cannot do anything twice: the safe and
/// idempotent methods (RFC 9110 s9.2), or any request carrying an
/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header). A POST or
/// PATCH without one is never repeated.
pub fn may_repeat(method: &str, keyed: bool) -> bool {
    keyed || ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"].iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// Whether `method` gets an `Idempotency-Key` under `idempotencyKeys`: the
/// methods that change something.
pub fn wants_key(method: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"].iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// Whether an answer with this status is worth another try: too many
/// requests, or a gateway or server that could not answer this time.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The delay before repeat number `attempt` (0 for the first): exponential
/// with equal jitter (`random` in 0..1), and at least the server's
/// `Retry-After` in seconds (capped).
pub fn delay(attempt: u32, random: f64, retry_after: Option<&str>) -> Millis {
    let ceiling = (RETRY_BASE * f64::from(1u32 << attempt.min(16))).min(RETRY_CAP);
    let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.5 };
    let d = ceiling / 2.0 + ceiling / 2.0 * r;
    let asked = retry_after.and_then(json::parse_number).filter(|s| *s >= 0.0).map(|s| (s * 1000.0).min(RETRY_AFTER_CAP));
    asked.map_or(d, |a| d.max(a))
}

/// How one attempt of a `tm.fetch` request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The transport rejected (offline, DNS, CORS, interrupted).
    Network,
    /// An answer with this status; `refused` when it says the token was
    /// refused (a 401, or what `isUnauthorized` says).
    Answer {
        /// The status.
        status: u16,
        /// The token it carried was refused.
        refused: bool,
    },
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// Hand the caller what came back.
    Done,
    /// Refresh (once, shared) and send again with the new token.
    Replay,
    /// Send again after this delay.
    Retry(Millis),
}

/// The decision after attempt number `attempt` (0 for the first) of a request
/// that may be repeated `retries` times and replayed once if `may_replay`.
pub fn next(ended: Ended, attempt: u32, retries: u32, may_replay: bool, random: f64, retry_after: Option<&str>) -> Next {
    match ended {
        Ended::Answer { refused: true, .. } if may_replay => Next::Replay,
        Ended::Answer { status, refused: false } if attempt < retries && retryable_status(status) => {
            Next::Retry(delay(attempt, random, retry_after))
        }
        Ended::Network if attempt < retries => Next::Retry(delay(attempt, random, None)),
        _ => Next::Done,
    }
}

/// A version 4 UUID (RFC 9562 s5.4) from 16 random bytes (more are
/// ignored): an idempotency key.
pub fn uuid_v4(random: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, &byte) in random.iter().take(16).enumerate() {
        // The version (4) and variant (10) bits.
        let byte = match i {
            6 => (byte & 0x0f) | 0x40,
            8 => (byte & 0x3f) | 0x80,
            _ => byte,
        };
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(*HEX.get(usize::from(byte >> 4)).unwrap_or(&b'0')));
        out.push(char::from(*HEX.get(usize::from(byte & 15)).unwrap_or(&b'0')));
    }
    out
}
