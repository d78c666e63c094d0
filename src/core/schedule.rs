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
/// `expires_in` is relative to receipt (RFC 6749 s5.1), needs no clock
/// agreement, and is what the server tells the client: when present it
/// decides (RFC 9068 s6: a client does not rely on the token's contents).
/// Without it, a JWT `exp` (the server's clock) moved onto the device clock
/// by `skew` (server minus device, ms); with neither, the expiry is unknown.
pub fn expires_at(received_at: Millis, expires_in: Option<f64>, jwt_exp: Option<f64>, skew: Millis) -> Option<Millis> {
    match expires_in {
        Some(s) => Some(received_at + s.clamp(0.0, MAX_EXPIRES_IN_SECONDS) * 1000.0),
        None => jwt_exp.map(|s| s * 1000.0 - skew),
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

/// No estimate of the clock difference is believed beyond a day either way:
/// a token or a `Date` header claiming more is a server bug, not a clock.
pub const MAX_SKEW: Millis = 86_400_000.0;

/// Infers server-minus-device clock skew from a token just received, from
/// its issue time `iat` (seconds, server clock):
/// - an `iat` within [`SKEW_THRESHOLD`] of the device clock shows the clocks
///   agree: `Some(0)`, which also clears an older estimate (after an NTP fix);
/// - an `iat` in the device's future proves the device is slow;
/// - an `iat` in the past may just be an old token, unless `exp - expires_in`
///   (the issue time the response implies, as `expires_in` counts from now)
///   agrees with it: then the device is fast.
///
/// `None` when there is no evidence, or it claims more than [`MAX_SKEW`].
pub fn infer_skew(received_at: Millis, expires_in: Option<f64>, exp: Option<f64>, iat: Option<f64>) -> Option<Millis> {
    let d = iat? * 1000.0 - received_at;
    let skew = if d > SKEW_THRESHOLD {
        d
    } else if d >= -SKEW_THRESHOLD {
        0.0
    } else {
        let implied = exp? * 1000.0 - (received_at + expires_in? * 1000.0);
        if (implied - d).abs() >= SKEW_THRESHOLD {
            return None;
        }
        implied
    };
    plausible_skew(skew)
}

/// The skew shown by a server's `Date` header (1 s resolution, so half a
/// second is added) against the midpoint of the request on the device clock;
/// `age` is the `Age` header in ms (a cached answer's `Date` is that old).
/// Differences within 1.5 s are rounding and latency: `Some(0)`.
pub fn skew_from_date(date: Millis, age: Millis, sent_at: Millis, received_at: Millis) -> Option<Millis> {
    let estimate = date + age.max(0.0) + 500.0 - (sent_at + received_at) / 2.0;
    plausible_skew(if estimate.abs() > 1_500.0 { estimate } else { 0.0 })
}

fn plausible_skew(s: Millis) -> Option<Millis> {
    (s.is_finite() && s.abs() <= MAX_SKEW).then_some(s)
}
