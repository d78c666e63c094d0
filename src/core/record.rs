//! The storage record: one versioned JSON value per manager, stored under
//! its `storageKey`. Read back tolerantly: anything that is not a record of a
//! version we understand is ignored, never a crash.

use super::json::{self, Json};
use super::token::{is_b64token, TokenSet};

/// The record format this build writes and reads.
pub const VERSION: f64 = 1.0;

/// What was found under the storage key.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Nothing stored.
    Empty,
    /// A valid record.
    Tokens(TokenSet),
    /// Not JSON, not ours, or missing required fields: drop it.
    Corrupt,
    /// Written by a newer Tessera (another tab after an upgrade): leave it
    /// alone rather than destroy it, and start signed out here.
    FutureVersion,
}

/// Encodes tokens as a record.
pub fn encode(t: &TokenSet) -> String {
    let mut out = String::from("{\"v\":1,\"access_token\":");
    json::write_str(&mut out, &t.access_token);
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
    if let Some(e) = t.expires_at {
        out.push_str(",\"expires_at\":");
        json::write_num(&mut out, e);
    }
    out.push_str(",\"received_at\":");
    json::write_num(&mut out, t.received_at);
    out.push('}');
    out
}

fn opt(v: &Json, name: &str) -> Option<String> {
    v.get(name).and_then(Json::as_str).filter(|s| !s.is_empty()).map(String::from)
}

/// Decodes whatever was stored; `None` means nothing was stored.
pub fn decode(stored: Option<&str>) -> Read {
    let Some(text) = stored else { return Read::Empty };
    let Some(v) = Json::parse(text) else { return Read::Corrupt };
    match v.get("v").and_then(Json::as_f64) {
        Some(n) if n == VERSION => {}
        Some(n) if n > VERSION && n.fract() == 0.0 => return Read::FutureVersion,
        _ => return Read::Corrupt,
    }
    let Some(access_token) = opt(&v, "access_token").filter(|a| is_b64token(a)) else {
        return Read::Corrupt;
    };
    let Some(received_at) = v.get("received_at").and_then(Json::as_f64) else {
        return Read::Corrupt;
    };
    Read::Tokens(TokenSet {
        access_token,
        refresh_token: opt(&v, "refresh_token"),
        expires_at: v.get("expires_at").and_then(Json::as_f64),
        received_at,
        scope: opt(&v, "scope"),
        id_token: opt(&v, "id_token"),
    })
}
