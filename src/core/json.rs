//! A small, strict JSON reader and string writer.
//!
//! Why not serde_json: it costs tens of kilobytes of wasm in every user's
//! page, and the core only needs to read a handful of top-level fields from
//! token responses, JWT payloads and stored records. The JS side hands whole
//! objects (claims) to the browser's own `JSON.parse`.

/// A parsed JSON value. Objects keep their members in source order.
///
/// ```
/// let v = tessera::Json::parse(r#"{"name":"Ada","roles":["admin"]}"#).unwrap();
/// assert_eq!(v.get("name").and_then(|n| n.as_str()), Some("Ada"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Any JSON number, as JavaScript would read it.
    Num(f64),
    /// A string with escapes resolved.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object; duplicate names are kept, [`Json::get`] returns the last.
    Obj(Vec<(String, Json)>),
}

/// Nesting deeper than this is refused: recursion in wasm has a small stack,
/// and overflowing it traps the whole instance.
pub const MAX_DEPTH: usize = 64;

impl Json {
    /// Parses a complete JSON text; `None` when it is not valid JSON.
    pub fn parse(text: &str) -> Option<Json> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i == p.s.len() {
            Some(v)
        } else {
            None
        }
    }

    /// The member `name` of an object; the last one wins on duplicates,
    /// as with `JSON.parse` (RFC 7519 s4 lets us pick; we pin this).
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside, if this is a finite number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) if n.is_finite() => Some(*n),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8], v: Json) -> Option<Json> {
        if self.s.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(v)
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'n' => self.lit(b"null", Json::Null),
            b't' => self.lit(b"true", Json::Bool(true)),
            b'f' => self.lit(b"false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.bump()? {
                        b',' => continue,
                        b']' => return Some(Json::Arr(items)),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.bump()? != b':' {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    match self.bump()? {
                        b',' => continue,
                        b'}' => return Some(Json::Obj(members)),
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        // JSON forbids leading zeros ("01") and bare signs.
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if self.digits() == 0 {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        number_value(self.s.get(start..self.i)?).map(Json::Num)
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = char::from(self.bump()?).to_digit(16)?;
            n = n * 16 + d;
        }
        Some(n)
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes at once; the input is already UTF-8.
            let start = self.i;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(self.s.get(start..self.i)?).ok()?);
            match self.bump()? {
                b'"' => return Some(out),
                b'\\' => {
                    let c = match self.bump()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    out.push(c);
                }
                _ => return None, // raw control character
            }
        }
    }

    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            // A high surrogate should be followed by an escaped low one.
            let save = self.i;
            if self.bump() == Some(b'\\') && self.bump() == Some(b'u') {
                if let Some(lo) = self.hex4() {
                    if (0xDC00..0xE000).contains(&lo) {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return char::from_u32(c);
                    }
                }
            }
            self.i = save;
            return Some(char::REPLACEMENT_CHARACTER);
        }
        // Lone low surrogates cannot live in a Rust string.
        Some(char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

/// Appends `s` to `out` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                let n = c as usize;
                out.push(char::from(*HEX.get(n >> 4).unwrap_or(&b'0')));
                out.push(char::from(*HEX.get(n & 15).unwrap_or(&b'0')));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a number rounded to an integer (times in whole ms, counts):
/// everything Tessera writes is one, and leaving out float formatting saves
/// about 14 KB of wasm. Non-finite numbers are written as `null`.
pub fn write_num(out: &mut String, n: f64) {
    if n.is_finite() {
        write_int(out, n.round().clamp(-9_007_199_254_740_991.0, 9_007_199_254_740_991.0) as i64);
    } else {
        out.push_str("null");
    }
}

/// Reads a JSON number (the grammar is the caller's to check, or see
/// [`parse_number`]). Exact for integers below 2^53 and for decimals with up
/// to 15 significant digits and exponents within ±22 (Clinger's fast path),
/// within a few ulp beyond; Rust's correctly-rounded parser costs about 15 KB
/// of wasm (code and a table of powers of five) for digits no token carries.
fn number_value(text: &[u8]) -> Option<f64> {
    let (neg, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut exp10: i32 = 0;
    let mut i = 0;
    let mut seen_digit = false;
    let mut after_point = false;
    while let Some(&c) = body.get(i) {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    if after_point {
                        exp10 -= 1;
                    }
                } else if !after_point {
                    exp10 += 1; // digits beyond 19 only scale
                }
            }
            b'.' if !after_point => after_point = true,
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    if let Some(exp) = body.get(i + 1..) {
        let (eneg, digits) = match exp.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, exp),
        };
        if digits.is_empty() {
            return None;
        }
        let mut e: i32 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            e = e.saturating_mul(10).saturating_add(i32::from(d - b'0')).min(100_000);
        }
        exp10 = exp10.saturating_add(if eneg { -e } else { e });
    }
    let m = mantissa as f64;
    let v = if m == 0.0 {
        0.0
    } else if exp10 >= 0 {
        m * pow10(exp10)
    } else if exp10 >= -308 {
        m / pow10(-exp10)
    } else {
        // Below f64's normal range: scale in two steps to keep precision.
        m / pow10(308) / pow10(-exp10 - 308)
    };
    Some(if neg { -v } else { v })
}

fn pow10(e: i32) -> f64 {
    if e > 330 {
        return f64::INFINITY;
    }
    10f64.powi(e)
}

/// Parses a whole string as a JSON number (surrounding spaces allowed);
/// `None` for anything else, so "12abc" or "0x10" never become numbers.
pub fn parse_number(s: &str) -> Option<f64> {
    match Json::parse(s)? {
        Json::Num(n) => Some(n),
        _ => None,
    }
}

fn write_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut v = n.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    if let Some(digits) = buf.get(i..) {
        for &d in digits {
            out.push(char::from(d));
        }
    }
}
