//! Host tests: origin matching decides who may see a token.

#![cfg(not(target_arch = "wasm32"))]

use tessera::core::origin::{may_carry_token, of, raw_url_is_on};

#[test]
fn origins_are_normalised() {
    let cases = [
        ("https://API.Example.com/v1/me?x=1", Some("https://api.example.com")),
        ("https://api.example.com:443/", Some("https://api.example.com")),
        ("https://api.example.com:8443", Some("https://api.example.com:8443")),
        ("http://127.0.0.1:8080/api", Some("http://127.0.0.1:8080")),
        ("http://localhost:80/", Some("http://localhost")),
        ("https://user:pw@api.example.com/", Some("https://api.example.com")),
        ("https://evil.com\\@api.example.com/", Some("https://evil.com")),
        ("https://api.example.com@evil.com/", Some("https://evil.com")),
        ("https://[::1]:3000/x", Some("https://[::1]:3000")),
        ("HTTPS://api.example.com#frag", Some("https://api.example.com")),
        ("ftp://api.example.com", None),
        ("javascript:alert(1)", None),
        ("/relative/path", None),
        ("https://", None),
        ("https://host:99999/", None),
        ("https://host:12a/", None),
        ("https://ho st/", None),
        ("http://a!b:/x", None),
        ("http://host\u{0}name/", None),
        ("https://a:b:c/", None),
        ("https://[::1:/", None),
        ("https://[zz::1]/", None),
        ("https://_dmarc.example.com/", Some("https://_dmarc.example.com")),
        ("https://xn--bcher-kva.example/", Some("https://xn--bcher-kva.example")),
        // F10: the port is a number. 0 is no port a token may go to; a
        // default port is dropped only by value, leading zeros included.
        ("https://api.example.com:0/x", None),
        ("https://api.example.com:00000/x", None),
        ("https://api.example.com:0443/", Some("https://api.example.com")),
        ("https://api.example.com:08443/", Some("https://api.example.com:8443")),
        ("http://localhost:00080/", Some("http://localhost")),
        ("https://api.example.com:65535/", Some("https://api.example.com:65535")),
        ("https://api.example.com:65536/", None),
    ];
    for (url, want) in cases {
        assert_eq!(of(url).as_deref(), want, "{url}");
    }
}

#[test]
fn only_https_or_loopback_http_carry_tokens() {
    let cases = [
        ("https://api.example.com", true),
        ("http://api.example.com", false),
        ("http://localhost:5173", true),
        ("http://app.localhost", true),
        ("http://127.0.0.1:8787", true),
        ("http://127.1.2.3", true),
        ("http://127.0.0.1.evil.com", false),
        ("http://[::1]:8080", true),
        ("http://localhost.evil.com", false),
        ("http://192.168.1.10", false),
    ];
    for (origin, want) in cases {
        assert_eq!(may_carry_token(origin), want, "{origin}");
    }
}

/// F3: hosts without `Request` hand the raw string to a transport that may
/// parse it the RFC 3986 way; the token goes only to a URL that spells the
/// allowed origin exactly, followed by the path, query, fragment or nothing.
#[test]
fn raw_urls_carry_a_token_only_when_they_spell_the_origin_exactly() {
    let api = "https://api.example.com";
    let cases = [
        ("https://api.example.com", true),
        ("https://api.example.com/", true),
        ("https://api.example.com/v1/me?x=1#f", true),
        ("https://api.example.com?x", true),
        ("https://api.example.com#f", true),
        ("https://api.example.com\\@evil.test/steal", false),
        ("https://api.example.com@evil.test/", false),
        ("https://api.example.com.evil.test/", false),
        ("https://api.example.com:443/", false),
        ("https://API.example.com/", false),
        (" https://api.example.com/", false),
        ("https://api.example.com\t/", false),
        ("https://api.example.com:8443/", false),
        ("http://api.example.com/", false),
    ];
    for (url, want) in cases {
        assert_eq!(raw_url_is_on(url, api), want, "{url}");
    }
    // What the review pinned: the WHATWG reading of the same string is the
    // allowed origin, which is why the raw check must not use it.
    assert_eq!(of("https://api.example.com\\@evil.test/").as_deref(), Some(api));
}
