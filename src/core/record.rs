//! The storage record: one versioned JSON value per manager, stored under
//! its `storageKey`. Read back tolerantly: anything that is not a record of a
//! version we understand is ignored, never a crash.
//!
//! A record is bound to the client that wrote it (client id and how it
//! refreshes): a manager for another client on the same origin and key reads
//! it as [`Read::Foreign`] and never adopts its tokens, so it can never send
//! them to its own origins or present the refresh token at its own endpoint.

use super::json::{self, Json};
use super::token::{is_b64token, TokenSet};

/// The record format this build writes and reads. Version 1 records carried
/// no client binding: they are [`Read::Foreign`] to this version.
pub const VERSION: f64 = 2.0;

/// What was found under the storage key.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// Nothing stored.
    Empty,
    /// A valid record of this client.
    Tokens(TokenSet),
    /// Not JSON, not a record, or a field of the wrong type: drop it.
    Corrupt,
    /// A record of another client (or of version 1, which was not bound to
    /// one): not ours to read, nor to delete.
    Foreign,
    /// Written by a newer Tessera (another tab after an upgrade): leave it
    /// alone rather than destroy it, and start signed out here.
    FutureVersion,
}

/// Encodes tokens as a record bound to `client`.
pub fn encode(t: &TokenSet, client: &str) -> String {
    let mut out = String::from("{\"v\":2,\"client\":");
    json::write_str(&mut out, client);
    out.push_str(",\"sid\":");
    json::write_str(&mut out, &t.sid);
    out.push_str(",\"access_token\":");
    json::write_str(&mut out, &t.access_token);
    if t.dpop {
        out.push_str(",\"token_type\":\"DPoP\"");
    }
    let opt_str = |out: &mut String, name: &str, v: &Option<String>| {
        if let Some(s) = v {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            json::write_str(out, s);
        }
    };
    opt_str(&mut out, "refresh_token", &t.refresh_token);
    opt_str(&mut out, "scope", &t.scope);
    opt_str(&mut out, "id_token", &t.id_token);
    opt_str(&mut out, "jkt", &t.jkt);
    if let Some(e) = t.expires_at {
        out.push_str(",\"expires_at\":");
        json::write_num(&mut out, e);
    }
    out.push_str(",\"received_at\":");
    json::write_num(&mut out, t.received_at);
    out.push_str(",\"born\":");
    json::write_num(&mut out, t.born);
    out.push_str(",\"gen\":");
    json::write_num(&mut out, f64::from(t.gen));
    for (name, n) in [(",\"brief\":", t.brief), (",\"refused\":", t.refused)] {
        if n > 0 {
            out.push_str(name);
            json::write_num(&mut out, f64::from(n));
        }
    }
    out.push('}');
    out
}

/// An optional string field: absent is `Ok(None)`; present but not a
/// non-empty string is `Err` (a tampered or foreign record, not a session
/// without that field).
fn opt_str(v: &Json, name: &str) -> Result<Option<String>, ()> {
    match v.get(name) {
        None => Ok(None),
        Some(Json::Str(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// Decodes whatever was stored for a manager of `client`; `None` means
/// nothing was stored.
pub fn decode(stored: Option<&str>, client: &str) -> Read {
    let Some(text) = stored else { return Read::Empty };
    let Some(v) = Json::parse(text) else { return Read::Corrupt };
    match v.get("v").and_then(Json::as_f64) {
        Some(n) if n == VERSION => {}
        Some(1.0) => return Read::Foreign,
        Some(n) if n > VERSION && n.fract() == 0.0 => return Read::FutureVersion,
        _ => return Read::Corrupt,
    }
    match v.get("client") {
        Some(Json::Str(c)) if c == client => {}
        Some(Json::Str(_)) => return Read::Foreign,
        _ => return Read::Corrupt,
    }
    let fields = (|| {
        let sid = opt_str(&v, "sid")?.ok_or(())?;
        let access_token = opt_str(&v, "access_token")?.filter(|a| is_b64token(a)).ok_or(())?;
        let received_at = v.get("received_at").and_then(Json::as_f64).ok_or(())?;
        let expires_at = match v.get("expires_at") {
            None => None,
            Some(e) => Some(e.as_f64().ok_or(())?),
        };
        // Written since 0.2; a record of 0.1 has neither (born 0, gen 0:
        // older than any session begun since).
        let number = |name| match v.get(name) {
            None => Ok(0.0),
            Some(n) => n.as_f64().filter(|n| n.is_finite() && *n >= 0.0).ok_or(()),
        };
        let born = number("born")?;
        let count = |name| number(name).map(|n| n.min(f64::from(u32::MAX)) as u32);
        let (gen, brief, refused) = (count("gen")?, count("brief")?, count("refused")?);
        Ok::<_, ()>(TokenSet {
            access_token,
            refresh_token: opt_str(&v, "refresh_token")?,
            expires_at,
            received_at,
            scope: opt_str(&v, "scope")?,
            id_token: opt_str(&v, "id_token")?,
            dpop: opt_str(&v, "token_type")?.is_some_and(|t| t == "DPoP"),
            sid,
            born,
            gen,
            jkt: opt_str(&v, "jkt")?,
            brief,
            refused,
        })
    })();
    match fields {
        Ok(t) => Read::Tokens(t),
        Err(()) => Read::Corrupt,
    }
}

/// What a notice to other managers says of the record its sender holds:
/// the session's id, birth and refresh count ("" signed out). No token:
/// a receiver whose copy of storage shows an older record knows it lags.
///
/// ```
/// use tessera::core::record::{notice, notice_of};
/// assert_eq!(notice(None), "");
/// assert_eq!(notice_of("s1 1750000000000 3"), Some(("s1".into(), 1_750_000_000_000.0, 3)));
/// ```
pub fn notice(t: Option<&TokenSet>) -> String {
    let Some(t) = t else { return String::new() };
    let mut out = t.sid.clone();
    out.push(' ');
    json::write_num(&mut out, t.born);
    out.push(' ');
    json::write_num(&mut out, f64::from(t.gen));
    out
}

/// Reads a [`notice`]; `None` for anything else (an older Tessera's
/// "changed", a signed-out notice).
pub fn notice_of(text: &str) -> Option<(String, f64, u32)> {
    let mut parts = text.split(' ');
    let sid = parts.next().filter(|s| !s.is_empty())?;
    let born = json::parse_number(parts.next()?)?;
    let gen = json::parse_number(parts.next()?).filter(|g| (0.0..=f64::from(u32::MAX)).contains(g))?;
    Some((sid.into(), born, gen as u32))
}
