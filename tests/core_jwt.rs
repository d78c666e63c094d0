//! Host tests: JWT decoding and the JSON reader under it.

#![cfg(not(target_arch = "wasm32"))]

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use tessera::core::json::Json;
use tessera::core::jwt::{decode, JwtError};

fn jwt(header: &str, payload: &str, padded: bool) -> String {
    let e = |s: &str| if padded { URL_SAFE.encode(s) } else { URL_SAFE_NO_PAD.encode(s) };
    [e(header), e(payload), "sig".into()].join(".")
}

#[test]
fn rfc7519_example_decodes() {
    // RFC 7519 section 3.1, verbatim.
    let t = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let j = decode(t).expect("RFC example must decode");
    assert_eq!(j.alg.as_deref(), Some("HS256"));
    assert_eq!(j.claims.iss.as_deref(), Some("joe"));
    assert_eq!(j.claims.exp, Some(1300819380.0));
    // The whole claims object is kept, private claims included.
    let whole = Json::parse(&j.payload).unwrap();
    assert_eq!(whole.get("http://example.com/is_root"), Some(&Json::Bool(true)));
}

#[test]
fn padding_is_optional() {
    // Payload lengths chosen so base64 needs one and two '=' characters.
    for payload in [r#"{"sub":"a"}"#, r#"{"sub":"ab"}"#, r#"{"sub":"abc"}"#] {
        for padded in [true, false] {
            let j = decode(&jwt(r#"{"alg":"HS256"}"#, payload, padded)).unwrap();
            assert!(j.claims.sub.is_some(), "{payload} padded={padded}");
        }
    }
}

#[test]
fn unicode_claims_survive() {
    let p = r#"{"sub":"Zoë","name":"山田太郎 🚀","esc":"\u00e9\ud83d\ude80"}"#;
    let j = decode(&jwt(r#"{"alg":"RS256"}"#, p, false)).unwrap();
    assert_eq!(j.claims.sub.as_deref(), Some("Zoë"));
    let v = Json::parse(&j.payload).unwrap();
    assert_eq!(v.get("name").and_then(Json::as_str), Some("山田太郎 🚀"));
    assert_eq!(v.get("esc").and_then(Json::as_str), Some("é🚀"));
}

#[test]
fn typed_claims() {
    let p =
        r#"{"exp":1700000000.5,"nbf":1600000000,"iat":1600000000,"sub":"u1","iss":"https://id","aud":["a","b",3],"scope":"read write"}"#;
    let c = decode(&jwt(r#"{"alg":"none"}"#, p, false)).unwrap().claims;
    assert_eq!(c.exp, Some(1700000000.5));
    assert_eq!(c.nbf, Some(1600000000.0));
    assert_eq!(c.aud, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(c.scope.as_deref(), Some("read write"));
    let single = decode(&jwt("{}", r#"{"aud":"api"}"#, false)).unwrap().claims;
    assert_eq!(single.aud, vec!["api".to_string()]);
}

#[test]
fn bad_numeric_dates_are_ignored_not_fatal() {
    let cases = [
        ("string", r#"{"exp":"1700000000"}"#),
        ("negative", r#"{"exp":-5}"#),
        ("zero", r#"{"exp":0}"#),
        ("huge", r#"{"exp":1e300}"#),
        ("past year 9999", r#"{"exp":253402300800}"#),
        ("null", r#"{"exp":null}"#),
        ("missing", r#"{"sub":"x"}"#),
    ];
    for (name, p) in cases {
        let j = decode(&jwt("{}", p, false)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(j.claims.exp, None, "{name}");
    }
}

#[test]
fn duplicate_claims_last_wins() {
    let j = decode(&jwt("{}", r#"{"sub":"first","sub":"last"}"#, false)).unwrap();
    assert_eq!(j.claims.sub.as_deref(), Some("last"));
}

#[test]
fn garbage_is_not_a_jwt() {
    let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let cases: Vec<(&str, String, JwtError)> = vec![
        ("opaque", "2YotnFZFEjr1zCsicMWpAA".into(), JwtError::Segments),
        ("two segments", [b("{}"), b("{}")].join("."), JwtError::Segments),
        ("four segments", [b("{}"), b("{}"), "s".into(), "x".into()].join("."), JwtError::Segments),
        ("JWE-like five", "a.b.c.d.e".into(), JwtError::Segments),
        ("empty", String::new(), JwtError::Segments),
        ("bad base64", "e30.!!!.sig".into(), JwtError::Base64),
        ("std alphabet", [b("{}"), "ab+/".into(), "s".into()].join("."), JwtError::Base64),
        ("not utf8", [b("{}"), URL_SAFE_NO_PAD.encode([0xff, 0xfe]), "s".into()].join("."), JwtError::Utf8),
        ("not json", [b("{}"), b("hello"), "s".into()].join("."), JwtError::NotObject),
        ("json array", [b("{}"), b("[1,2]"), "s".into()].join("."), JwtError::NotObject),
        ("json string", [b("{}"), b("\"x\""), "s".into()].join("."), JwtError::NotObject),
        ("header not object", [b("1"), b("{}"), "s".into()].join("."), JwtError::NotObject),
        ("trailing garbage", [b("{}"), b("{} x"), "s".into()].join("."), JwtError::NotObject),
    ];
    for (name, token, want) in cases {
        assert_eq!(decode(&token).err(), Some(want), "{name}");
    }
}

#[test]
fn json_reader_edge_cases() {
    let ok = [
        ("nested", r#"{"a":[1,{"b":null}],"c":-0.5e-3}"#),
        ("whitespace", " \t\n{ } \r\n"),
        ("escapes", r#""\"\\\/\b\f\n\r\t""#),
        ("lone surrogate", r#""\ud800x""#),
        ("big int", "123456789012345678901234567890"),
    ];
    for (name, text) in ok {
        assert!(Json::parse(text).is_some(), "{name} should parse");
    }
    let bad = [
        ("leading zero", "01"),
        ("bare minus", "-"),
        ("dot without digits", "1."),
        ("trailing comma", "[1,]"),
        ("single quotes", "{'a':1}"),
        ("raw newline in string", "\"a\nb\""),
        ("unterminated", "{\"a\":"),
        ("NaN", "NaN"),
        ("bad escape", r#""\x""#),
        ("two values", "1 2"),
    ];
    for (name, text) in bad {
        assert!(Json::parse(text).is_none(), "{name} should fail");
    }
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert!(Json::parse(&deep).is_none(), "deep nesting is refused, not a stack overflow");
}

#[test]
fn json_writer_round_trips() {
    use tessera::core::json::{write_num, write_str};
    for s in ["plain", "quote\" backslash\\ nl\n tab\t ctl\u{1}", "ünïcødé 🚀"] {
        let mut out = String::new();
        write_str(&mut out, s);
        assert_eq!(Json::parse(&out), Some(Json::Str(s.into())), "{s:?}");
    }
    for n in [0.0, -1.0, 1700000000123.0, 9007199254740991.0, -9007199254740991.0] {
        let mut out = String::new();
        write_num(&mut out, n);
        assert_eq!(Json::parse(&out), Some(Json::Num(n)), "{n}");
    }
    // Everything Tessera writes is a whole number: fractions round.
    for (n, want) in [(0.25, "0"), (1.5, "2"), (-2.5, "-3"), (1e300, "9007199254740991"), (f64::NAN, "null")] {
        let mut out = String::new();
        write_num(&mut out, n);
        assert_eq!(out, want, "{n}");
    }
}

#[test]
fn json_numbers_read_like_javascript() {
    // Exact wherever a token's numbers live: integers, times with fractions.
    let exact = [
        "0",
        "-0",
        "1",
        "-1",
        "42",
        "3600",
        "1300819380",
        "1700000000.5",
        "1795421560.123",
        "0.1",
        "0.25",
        "-3.5e-7",
        "1e3",
        "1E+3",
        "2.5e-3",
        "9007199254740991",
        "123456789012345",
        "0.000001",
        "1e22",
        "1e-22",
    ];
    for t in exact {
        let want: f64 = t.parse().unwrap();
        assert_eq!(Json::parse(t), Some(Json::Num(want)), "{t}");
    }
    // Beyond that, close (a few ulp) and never a failure.
    for t in ["123456789012345678901234567890", "1.5e300", "2.2250738585072014e-308", "0.1234567890123456789", "4.94e-300"] {
        let want: f64 = t.parse().unwrap();
        let got = Json::parse(t).and_then(|v| v.as_f64()).unwrap();
        assert!(((got - want) / want).abs() < 1e-14, "{t}: {got} vs {want}");
    }
    assert_eq!(Json::parse("1e400").and_then(|v| v.as_f64()), None, "infinite is not a usable number");
    use tessera::core::json::parse_number;
    assert_eq!(parse_number(" 3600 "), Some(3600.0));
    for bad in ["", "12abc", "0x10", "1e", "+1", ".5", "Infinity", "\"1\""] {
        assert_eq!(parse_number(bad), None, "{bad}");
    }
}

#[test]
fn base64url_decoder_agrees_with_the_base64_crate() {
    use base64::alphabet::URL_SAFE as ALPHABET;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use tessera::core::jwt::base64url;
    let reference = GeneralPurpose::new(&ALPHABET, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));
    // Every byte string up to 40 bytes of a deterministic sequence, both paddings.
    let mut x: u32 = 0x2545_F491;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for len in 0..40 {
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        for text in [URL_SAFE.encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes)] {
            assert_eq!(base64url(&text), Some(bytes.clone()), "{text}");
        }
    }
    // Random strings over an alphabet with padding and foreign characters:
    // both decoders accept and refuse the same ones.
    let chars = b"AQgw_-z9=+/ .";
    for _ in 0..20_000 {
        let n = (next() % 9) as usize;
        let s: String = (0..n).map(|_| char::from(chars[(next() % chars.len() as u32) as usize])).collect();
        assert_eq!(base64url(&s), reference.decode(&s).ok(), "{s:?}");
    }
}
