//! Time arithmetic: when a token expires, when to refresh it, how long to
//! back off after a failure. Plain functions of data and `now`, so the host
//! tests drive them with any clock they like.
//!
//! All times are milliseconds since the Unix epoch as `f64`, the unit of
//! JavaScript's `Date.now()`, on the *device* clock.

/// Milliseconds since the Unix epoch (device clock), or a duration in ms.
pub type Millis = f64;

/// Longest delay `setTimeout` honours (2^31-1 ms, about 24.8 days); a larger
/// one fires at once, so longer waits are split.
pub const MAX_TIMER_DELAY: Millis = 2_147_483_647.0;

/// Automatic refreshes never come closer than this after the token was
/// received, so a server that hands out already-expired or tiny tokens cannot
/// drive a refresh loop.
pub const MIN_REFRESH_INTERVAL: Millis = 5_000.0;

/// First retry delay after a transient refresh failure.
pub const BACKOFF_BASE: Millis = 1_000.0;

/// Retry delays grow to this and stay there.
pub const BACKOFF_CAP: Millis = 300_000.0;

/// `expires_in` above this (about 100 years) is clamped: it is a server bug,
/// and arithmetic near f64's limits would be unsafe.
const MAX_EXPIRES_IN_SECONDS: f64 = 3_153_600_000.0;

/// When a token received at `received_at` expires on the device clock.
///
/// `expires_in` is relative to receipt (RFC 6749 s5.1) and needs no clock
/// agreement. A JWT `exp` is the server's clock: `skew` (server minus device,
/// ms) moves it onto the device clock. With both, the earlier wins; with
/// neither, the expiry is unknown.
pub fn expires_at(received_at: Millis, expires_in: Option<f64>, jwt_exp: Option<f64>, skew: Millis) -> Option<Millis> {
    let from_in = expires_in.map(|s| received_at + s.clamp(0.0, MAX_EXPIRES_IN_SECONDS) * 1000.0);
    let from_exp = jwt_exp.map(|s| s * 1000.0 - skew);
    match (from_in, from_exp) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a token expiring at `expires_at` is expired `within` ms from
/// `now`. `leeway` treats it as expired that much early, because the server
/// clock may run ahead of our estimate. Unknown expiry is never expired.
pub fn is_expired(expires_at: Option<Millis>, now: Millis, within: Millis, leeway: Millis) -> bool {
    match expires_at {
        Some(e) => now + within.max(0.0) + leeway.max(0.0) >= e,
        None => false,
    }
}

/// When to refresh a token: `margin` before expiry, but at most half its
/// lifetime before, so a short-lived token is not refreshed the moment it
/// arrives; and never sooner than [`MIN_REFRESH_INTERVAL`] after receipt.
pub fn next_refresh_at(expires_at: Millis, received_at: Millis, margin: Millis) -> Millis {
    let lifetime = (expires_at - received_at).max(0.0);
    let at = expires_at - margin.max(0.0).min(lifetime / 2.0);
    at.max(received_at + MIN_REFRESH_INTERVAL)
}

/// A `setTimeout` delay to reach `at` from `now`: never negative, never
/// beyond what the timer accepts (a longer wait re-arms when it fires).
pub fn timer_delay(at: Millis, now: Millis) -> Millis {
    let d = at - now;
    if d.is_nan() {
        return 0.0;
    }
    d.clamp(0.0, MAX_TIMER_DELAY)
}

/// Delay before retry number `attempt` (0 for the first) after a transient
/// failure: exponential from [`BACKOFF_BASE`] to [`BACKOFF_CAP`], with
/// jitter (`random` in 0..1) so many clients do not retry in step, and never
/// shorter than a server's `Retry-After`.
pub fn backoff_delay(attempt: u32, random: f64, retry_after: Option<Millis>) -> Millis {
    let exp = BACKOFF_BASE * f64::from(1u32 << attempt.min(20));
    let ceiling = exp.min(BACKOFF_CAP);
    let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.5 };
    // "Equal jitter": half fixed, half random, so the delay still grows.
    let d = ceiling / 2.0 + ceiling / 2.0 * r;
    match retry_after {
        Some(ra) if ra.is_finite() => d.max(ra.min(BACKOFF_CAP * 2.0)),
        _ => d,
    }
}

/// Clock differences below this are latency and rounding, not skew.
pub const SKEW_THRESHOLD: Millis = 60_000.0;

/// Infers server-minus-device clock skew from a token just received, from
/// its issue time `iat` (seconds, server clock):
/// - an `iat` in the device's future proves the device is slow;
/// - an `iat` in the past may just be an old token, unless `exp - expires_in`
///   (the issue time the response implies, as `expires_in` counts from now)
///   agrees with it: then the device is fast.
///
/// `None` when there is no evidence, or the difference is under [`SKEW_THRESHOLD`].
pub fn infer_skew(received_at: Millis, expires_in: Option<f64>, exp: Option<f64>, iat: Option<f64>) -> Option<Millis> {
    let d = iat? * 1000.0 - received_at;
    if d > SKEW_THRESHOLD {
        return Some(d);
    }
    let implied = exp? * 1000.0 - (received_at + expires_in? * 1000.0);
    (d < -SKEW_THRESHOLD && (implied - d).abs() < SKEW_THRESHOLD).then_some(implied)
}
