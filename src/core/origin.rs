//! Origins: which requests may carry the Bearer token (RFC 6750 s5.3).
//!
//! Parsing fails closed: anything this reader does not understand is not an
//! origin, and a request to it gets no token.

/// The origin (`scheme://host[:port]`, lowercase, default port dropped) of an
/// absolute http(s) URL; `None` for anything else.
pub fn of(url: &str) -> Option<String> {
    let url = url.trim();
    let colon = url.find(':')?;
    let (scheme, rest) = (url.get(..colon)?, url.get(colon + 1..)?.strip_prefix("//")?);
    let scheme = scheme.to_ascii_lowercase();
    let default_port: u16 = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        let host = host_port.get(..=close)?;
        match host_port.get(close + 1..)? {
            "" => (host, ""),
            p => (host, p.strip_prefix(':')?),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (host_port, ""),
        }
    };
    // Hosts as browsers serialize them: letters, digits, "-", ".", "_", "~"
    // (IDNs arrive as punycode), or a bracketed IPv6 address. Anything else
    // is not an origin Tessera will send a token to.
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        None => !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')),
    };
    if !valid {
        return None;
    }
    // The port is a number: "0443" is 443 and dropped as the default; 0 and
    // anything past 65535 is no port a token may go to.
    let port = match port {
        "" => None,
        p if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return None,
            Ok(n) => Some(n).filter(|n| *n != default_port),
        },
        _ => return None,
    };
    let mut out = scheme;
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if let Some(p) = port {
        out.push(':');
        super::json::write_num(&mut out, f64::from(p));
    }
    Some(out)
}

/// Whether a raw URL string, sent as is by a transport that parses it in its
/// own way (a mini-program's `wx.request`, a native bridge), is certainly on
/// `origin`: it starts with exactly that origin, followed by `/`, `?`, `#` or
/// its end. Any other spelling (`\`, `@`, whitespace, upper case, an explicit
/// default port) fails closed: parsers that follow RFC 3986 read
/// `https://api.example.com\@evil.test/` as a request to `evil.test`.
pub fn raw_url_is_on(url: &str, origin: &str) -> bool {
    url.strip_prefix(origin).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
}

/// Whether `host` is this machine: `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "[::1]"
        || (h.starts_with("127.") && h.split('.').count() == 4 && h.split('.').all(|o| o.parse::<u8>().is_ok()))
}

/// Whether an origin may ever receive a token: https, or plain http only
/// to loopback, where nothing crosses a network.
pub fn may_carry_token(origin: &str) -> bool {
    if origin.starts_with("https://") {
        return true;
    }
    let Some(rest) = origin.strip_prefix("http://") else { return false };
    let host = if rest.starts_with('[') {
        rest.find(']').and_then(|i| rest.get(..=i)).unwrap_or(rest)
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    is_loopback_host(host)
}

/// Whether `url` is written the way a URL parser serializes it (WHATWG URL
/// `href`), for hosts without one (mini-programs hand the string to their
/// transport as it is): a lowercase http(s) scheme and host, no user info,
/// no default port, a path, and nothing a parser may read another way
/// (backslashes, spaces, control characters). Conservative: some canonical
/// URLs (an IPv6 host) are refused here and accepted where the host has a
/// URL parser.
///
/// ```
/// use tessera::core::origin::canonical;
/// assert!(canonical("https://auth.example.com/oauth/token"));
/// assert!(!canonical("https://auth.example.com\\@evil.test/token"));
/// assert!(!canonical("https://Auth.example.com/token"));
/// ```
pub fn canonical(url: &str) -> bool {
    let Some(o) = of(url) else { return false };
    let Some(rest) = url.strip_prefix(&o) else { return false };
    rest.starts_with('/') && url.bytes().all(|b| b > 0x20 && b < 0x7f && b != b'\\' && b != b'@')
}
