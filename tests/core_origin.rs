//! Host tests: origin matching decides who may see a token.

#![cfg(not(target_arch = "wasm32"))]

use tessera::core::origin::{may_carry_token, of};

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
