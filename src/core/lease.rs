//! The refresh lease: where a host has no Web Locks, tabs sharing storage
//! take turns refreshing through a short-lived record in that storage.
//! Two tabs refreshing at once would present the same rotating refresh token
//! twice, which the server must treat as theft (RFC 9700 s4.14.2).

use super::json::{self, Json};
use super::schedule::Millis;

/// What a tab should do about the lease it found.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nobody holds it (or the holder's time ran out): take it.
    Take,
    /// We hold it already.
    Held,
    /// Another tab holds it until the given time: wait and look again.
    Wait(Millis),
}

/// Encodes a lease held by `owner` until `until`.
pub fn encode(owner: &str, until: Millis) -> String {
    let mut out = String::from("{\"owner\":");
    json::write_str(&mut out, owner);
    out.push_str(",\"until\":");
    json::write_num(&mut out, until);
    out.push('}');
    out
}

/// Reads a stored lease; anything unreadable counts as no lease, so a
/// corrupt record can never block refreshes.
pub fn decode(stored: Option<&str>) -> Option<(String, Millis)> {
    let v = Json::parse(stored?)?;
    let owner = v.get("owner")?.as_str()?.to_string();
    let until = v.get("until")?.as_f64()?;
    Some((owner, until))
}

/// Decides from the stored lease, our id and the time. A lease further in
/// the future than `max_hold` is treated as stale (a clock that jumped).
pub fn decide(stored: Option<&str>, me: &str, now: Millis, max_hold: Millis) -> Decision {
    match decode(stored) {
        Some((owner, until)) if until > now && until - now <= max_hold => {
            if owner == me {
                Decision::Held
            } else {
                Decision::Wait(until)
            }
        }
        _ => Decision::Take,
    }
}

/// Encodes the on-the-wire marker: `owner`'s refresh request went out at
/// `at` (wall clock) and may take until `until`.
pub fn encode_marker(owner: &str, at: Millis, until: Millis) -> String {
    let mut out = encode(owner, until);
    out.pop();
    out.push_str(",\"at\":");
    json::write_num(&mut out, at);
    out.push('}');
    out
}

/// Whether another manager's marker is live. It lasts what its writer said
/// (`until - at`), counted from when this reader first saw it (`seen`, on
/// its own clock, as `now`): a wall clock that steps meanwhile neither ends
/// it early nor keeps it forever. (A marker without `at`, from Tessera 0.1,
/// is judged by `until` against the wall clock.)
///
/// ```
/// use tessera::core::lease::{encode_marker, marker_live};
/// let m = encode_marker("tab-a", 1_000.0, 36_000.0);
/// assert!(marker_live(Some(&m), "tab-b", 500.0, 30_000.0, 9e12));
/// assert!(!marker_live(Some(&m), "tab-b", 500.0, 40_000.0, 0.0));
/// assert!(!marker_live(Some(&m), "tab-a", 500.0, 1_000.0, 0.0));
/// ```
pub fn marker_live(stored: Option<&str>, me: &str, seen: Millis, now: Millis, wall: Millis) -> bool {
    let Some(v) = stored.and_then(Json::parse) else { return false };
    let (Some(owner), Some(until)) = (v.get("owner").and_then(Json::as_str), v.get("until").and_then(Json::as_f64)) else { return false };
    if owner == me {
        return false;
    }
    match v.get("at").and_then(Json::as_f64) {
        Some(at) => now < seen + (until - at).clamp(0.0, 600_000.0),
        None => until > wall,
    }
}
