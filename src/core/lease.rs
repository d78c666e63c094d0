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
