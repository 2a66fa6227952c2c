//! A small JSON deserializer for serde whose floating-point numbers are correctly rounded.
//!
//! serde_json without its `float_roundtrip` feature (which this workspace cannot enable
//! without rebuilding Burn, whose crates share serde_json) converts numbers of 17 significant
//! digits with two roundings, so a value written by Python's `json` can come back one ulp off.
//! pycocotools reads the same text with Python's exact parser. Evaluation compares IoUs with
//! thresholds and sorts by score, so the inputs are read here with `str::parse::<f64>`, which
//! is exact. Values that the target type ignores (COCO's `segmentation` polygons, for
//! instance) are skipped without being built.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

const MAX_DEPTH: usize = 256;

/// A JSON syntax or data error, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    line: usize,
    column: usize,
}

impl Error {
    /// What went wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 1-based line of the error (0 when unknown).
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column of the error (0 when unknown).
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "{} at line {} column {}",
                self.message, self.line, self.column
            )
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            line: 0,
            column: 0,
        }
    }
}

/// Deserializes a value of type `T` from JSON bytes.
pub fn from_slice<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T, Error> {
    let mut de = Deserializer {
        input,
        pos: 0,
        depth: 0,
    };
    let result = T::deserialize(&mut de).and_then(|v| {
        de.skip_ws();
        if de.pos < de.input.len() {
            Err(de.error("trailing characters after the JSON value"))
        } else {
            Ok(v)
        }
    });
    result.map_err(|mut e| {
        if e.line == 0 {
            (e.line, e.column) = de.position();
        }
        e
    })
}

struct Deserializer<'de> {
    input: &'de [u8],
    pos: usize,
    depth: usize,
}

impl<'de> Deserializer<'de> {
    fn position(&self) -> (usize, usize) {
        let before = &self.input[..self.pos.min(self.input.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        (line, before.len() - line_start + 1)
    }

    fn error(&self, message: &str) -> Error {
        let (line, column) = self.position();
        Error {
            message: message.to_owned(),
            line,
            column,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, Error> {
        self.skip_ws();
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error("unexpected end of input"))
    }

    fn expect_literal(&mut self, lit: &[u8]) -> Result<(), Error> {
        if self.input[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("JSON nested too deeply"));
        }
        Ok(())
    }

    /// Scans a number token; returns its text.
    fn number_token(&mut self) -> Result<&'de str, Error> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
        }
        // Only ASCII bytes were scanned.
        std::str::from_utf8(&self.input[start..self.pos]).map_err(|_| self.error("invalid number"))
    }

    fn parse_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let start = self.pos;
        let tok = self.number_token()?;
        let bad = |de: &Self| {
            let mut e = de.error(&format!("invalid number `{tok}`"));
            (e.line, e.column) = {
                let saved = Deserializer {
                    input: de.input,
                    pos: start,
                    depth: 0,
                };
                saved.position()
            };
            e
        };
        let integral = !tok.contains(['.', 'e', 'E']);
        if integral {
            if let Some(rest) = tok.strip_prefix('-') {
                if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(v) = tok.parse::<i64>() {
                        return visitor.visit_i64(v);
                    }
                }
            } else if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(v) = tok.parse::<u64>() {
                    return visitor.visit_u64(v);
                }
            }
        }
        let body = tok.strip_prefix('-').unwrap_or(tok);
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(self));
        }
        match tok.parse::<f64>() {
            Ok(v) if v.is_finite() => visitor.visit_f64(v),
            Ok(_) => Err(self.error(&format!("number `{tok}` out of range"))),
            Err(_) => Err(bad(self)),
        }
    }

    /// Parses a string at `"`; borrowed when it has no escapes.
    fn parse_str(&mut self) -> Result<StrRef<'de>, Error> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        let mut run_start = start;
        loop {
            let Some(&b) = self.input.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            match b {
                b'"' => {
                    let bytes = &self.input[run_start..self.pos];
                    self.pos += 1;
                    return match owned {
                        None => std::str::from_utf8(bytes)
                            .map(StrRef::Borrowed)
                            .map_err(|_| self.error("invalid UTF-8 in string")),
                        Some(mut buf) => {
                            buf.extend_from_slice(bytes);
                            String::from_utf8(buf)
                                .map(StrRef::Owned)
                                .map_err(|_| self.error("invalid UTF-8 in string"))
                        }
                    };
                }
                b'\\' => {
                    let buf = owned.get_or_insert_with(Vec::new);
                    buf.extend_from_slice(&self.input[run_start..self.pos]);
                    let esc = *self
                        .input
                        .get(self.pos + 1)
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 2;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if !self.input[self.pos..].starts_with(b"\\u") {
                                    return Err(self.error("unpaired surrogate in string"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error("unpaired surrogate in string"));
                                }
                                let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(code)
                                    .ok_or_else(|| self.error("invalid \\u escape"))?
                            } else {
                                char::from_u32(hi)
                                    .ok_or_else(|| self.error("unpaired surrogate in string"))?
                            }
                        }
                        _ => return Err(self.error("invalid escape in string")),
                    };
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    run_start = self.pos;
                }
                _ => self.pos += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(digits)
    }

    /// Skips one value without building it.
    fn skip_value(&mut self) -> Result<(), Error> {
        match self.peek()? {
            b'"' => self.parse_str().map(|_| ()),
            b'[' | b'{' => {
                let close = if self.input[self.pos] == b'[' {
                    b']'
                } else {
                    b'}'
                };
                let is_obj = close == b'}';
                self.pos += 1;
                self.enter()?;
                let mut first = true;
                loop {
                    let b = self.peek()?;
                    if b == close {
                        self.pos += 1;
                        break;
                    }
                    if !first {
                        if b != b',' {
                            return Err(self.error("expected `,` or a closing bracket"));
                        }
                        self.pos += 1;
                    }
                    first = false;
                    if is_obj {
                        if self.peek()? != b'"' {
                            return Err(self.error("expected a string key"));
                        }
                        self.parse_str()?;
                        if self.peek()? != b':' {
                            return Err(self.error("expected `:`"));
                        }
                        self.pos += 1;
                    }
                    self.skip_value()?;
                }
                self.depth -= 1;
                Ok(())
            }
            b't' => self.expect_literal(b"true"),
            b'f' => self.expect_literal(b"false"),
            b'n' => self.expect_literal(b"null"),
            b'-' | b'0'..=b'9' => self.parse_number(de::IgnoredAny).map(|_| ()),
            _ => Err(self.error("expected a JSON value")),
        }
    }
}

enum StrRef<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'n' => {
                self.expect_literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.expect_literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.expect_literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'"' => match self.parse_str()? {
                StrRef::Borrowed(s) => visitor.visit_borrowed_str(s),
                StrRef::Owned(s) => visitor.visit_string(s),
            },
            b'[' => {
                self.pos += 1;
                self.enter()?;
                let v = visitor.visit_seq(Seq {
                    de: &mut *self,
                    first: true,
                })?;
                if self.peek()? != b']' {
                    return Err(self.error("expected `]` (array has more elements than expected)"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(v)
            }
            b'{' => {
                self.pos += 1;
                self.enter()?;
                let v = visitor.visit_map(Map {
                    de: &mut *self,
                    first: true,
                })?;
                if self.peek()? != b'}' {
                    return Err(self.error("expected `}`"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(v)
            }
            b'-' | b'0'..=b'9' => self.parse_number(visitor),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? == b'n' {
            self.expect_literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier
    }
}

struct Seq<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let b = self.de.peek()?;
        if b == b']' {
            return Ok(None);
        }
        if !self.first {
            if b != b',' {
                return Err(self.de.error("expected `,` or `]`"));
            }
            self.de.pos += 1;
        }
        self.first = false;
        seed.deserialize(&mut *self.de).map(Some)
    }
}

struct Map<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let b = self.de.peek()?;
        if b == b'}' {
            return Ok(None);
        }
        if !self.first {
            if b != b',' {
                return Err(self.de.error("expected `,` or `}`"));
            }
            self.de.pos += 1;
        }
        self.first = false;
        if self.de.peek()? != b'"' {
            return Err(self.de.error("expected a string key"));
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        if self.de.peek()? != b':' {
            return Err(self.de.error("expected `:`"));
        }
        self.de.pos += 1;
        seed.deserialize(&mut *self.de)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct S {
        a: u64,
        b: [f64; 2],
        #[serde(default)]
        c: Option<String>,
    }

    #[test]
    fn parses_structs_and_skips_unknown_fields() {
        let s: S = from_slice(
            br#" {"x": {"y": [1, 2, {"z": "\"q\\u00e9\ud83d\ude00"}]}, "a": 7, "b": [1e2, -0.5],
                "c": "h\u00e9", "d": null, "e": [true, false]} "#,
        )
        .unwrap();
        assert_eq!(
            s,
            S {
                a: 7,
                b: [100.0, -0.5],
                c: Some("hé".into())
            }
        );
    }

    #[test]
    fn floats_are_correctly_rounded() {
        for text in [
            "0.30000000000000004",
            "0.10000000149011612",
            "27718.476299999995",
            "1e-7",
            "123456789012345678901234567890",
            "5e-324",
            "0.1",
        ] {
            let v: f64 = from_slice(text.as_bytes()).unwrap();
            assert_eq!(v, text.parse::<f64>().unwrap(), "{text}");
        }
        let v: Vec<f64> = from_slice(b"[1, -2, 3.5]").unwrap();
        assert_eq!(v, [1.0, -2.0, 3.5]);
    }

    #[test]
    fn errors_have_positions() {
        let e = from_slice::<S>(b"{\"a\": 1,\n \"b\": [1, x]}").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 11), "{e}");
        let e = from_slice::<S>(b"{\"b\": [1, 2]}").unwrap_err();
        assert!(e.to_string().contains("missing field `a`"), "{e}");
        assert!(from_slice::<S>(b"{\"a\": 1, \"b\": [1, 2]} x").is_err());
        assert!(from_slice::<S>(b"{\"a\": 1.5, \"b\": [1, 2]}").is_err());
        assert!(from_slice::<S>(b"{\"a\": 1, \"b\": [1, 2, 3]}").is_err());
        assert!(from_slice::<f64>(b"1e999").is_err());
        assert!(from_slice::<f64>(b"-").is_err());
        assert!(from_slice::<Vec<u8>>(&[b'['; 1000]).is_err());
    }
}
