//! Reading a stored payload back as JSON, without losing a number to `f64`.
//!
//! The log keeps payloads verbatim, so `{"total": 1e400}` or a 30-digit id is stored
//! as written. `serde_json` (without `arbitrary_precision`) refuses the first as out
//! of range, which would throw away the whole event even when the mapping never reads
//! that field, and silently rounds the second. So before parsing, every number a
//! double cannot hold exactly (out of range, an integer past 64 bits, more than 15
//! significant digits) becomes a JSON string with the number's exact text: an
//! unmapped field is then harmless, a text column or business key keeps the digits as
//! written, and a numeric column judges the exact value (and names it when it does not
//! fit). Pure, linear, no recursion.
//!
//! The loader and the quality checks read payloads the same way, as a [`Doc`]
//! borrowed from the text, so what counts as present or valid in a check is what
//! loading finds; `parse` (tests only) is the `serde_json` reading it is held equal to.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
#[cfg(test)]
use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::events::PayloadRef;
use crate::events::bundle;

/// A payload read without copying, for the loader: strings borrow the stored text
/// where they hold no escape, numbers keep their exact text, objects their order.
/// It answers what `parse` answers (see [`Scalar`]), for a fraction of the
/// allocations: this runs once for every event a load reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    /// A valid JSON number, as written.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Doc<'a> {
    /// Read an event's payload: JSON text, or a bundle's fields line as the object its
    /// row alone would have been stored as ([`Doc::fields`]).
    pub fn read(payload: PayloadRef<'a>) -> Result<Doc<'a>, serde_json::Error> {
        match payload {
            PayloadRef::Json(text) => Doc::parse(text),
            PayloadRef::Fields { names, line } => {
                Doc::fields(names, line).map_err(<serde_json::Error as serde::de::Error>::custom)
            }
        }
    }

    /// A bundle's fields line ([`crate::events::bundle::Row`]) as an object of its
    /// fields under `names`: each a string, an empty one null; or why not (not one
    /// field per name). No JSON on the way: one pass over the line, and a field
    /// without an escape borrows it.
    pub fn fields(names: &'a [String], line: &'a str) -> Result<Doc<'a>, String> {
        let mismatch =
            |found: usize| format!("the line holds {found} fields for {} names", names.len());
        let mut values = bundle::split_fields(line);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(value) = values.next() else {
                return Err(mismatch(out.len()));
            };
            let value = value.map_or(Doc::Null, Doc::String);
            out.push((Cow::Borrowed(name.as_str()), value));
        }
        match values.count() {
            0 => Ok(Doc::Object(out)),
            more => Err(mismatch(names.len() + more)),
        }
    }

    /// Read `text` (validated by `serde_json`).
    pub fn parse(text: &'a str) -> Result<Doc<'a>, serde_json::Error> {
        if let Some(doc) = Doc::flat(text) {
            return Ok(doc);
        }
        Doc::parse_any(text)
    }

    /// The value at `path` (object keys, outermost first).
    pub fn at(&self, path: &[String]) -> Option<&Doc<'a>> {
        let mut v = self;
        for p in path {
            v = v.get(p)?;
        }
        Some(v)
    }

    /// The elements of the array at `path`; a missing or null array has none.
    pub fn elements(&self, path: &[String]) -> Result<&[Doc<'a>], String> {
        match self.at(path) {
            None | Some(Doc::Null) => Ok(&[]),
            Some(Doc::Array(items)) => Ok(items),
            Some(other) => Err(format!(
                "field \"{}\" must be an array, got {}",
                path.join("."),
                crate::events::cloudevents::preview(&other.to_string())
            )),
        }
    }

    /// Any JSON text, through `serde_json`.
    fn parse_any(text: &'a str) -> Result<Doc<'a>, serde_json::Error> {
        let raw: &'a RawValue = serde_json::from_str(text)?;
        Doc::from_raw(raw, 0)
    }

    /// The payload of a CSV row as `dvault ingest` writes it, read in one scan:
    /// `{"name":"value","other":null}`, no whitespace, no escape, every value a string
    /// or `null`. Most events a warehouse load reads are such rows, and `serde_json`'s
    /// general path (skipping each value once to find its end, then reading it) was
    /// a tenth of the projection's instructions. Anything else, valid or not, is left
    /// to [`Doc::parse_any`] (`None`), so both answer alike.
    fn flat(text: &'a str) -> Option<Doc<'a>> {
        let b = text.as_bytes();
        if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
            return None;
        }
        let mut fields = Vec::with_capacity(16);
        let mut i = 1;
        if b.len() == 2 {
            return Some(Doc::Object(fields));
        }
        // a string at `at` (its opening quote) holding no escape nor control character
        let string = |at: usize| -> Option<(&'a str, usize)> {
            if b.get(at) != Some(&b'"') {
                return None;
            }
            // one pass: the closing quote, unless an escape or a control comes first
            let rest = b.get(at + 1..)?;
            let len = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            if rest[len] != b'"' {
                return None;
            }
            Some((text.get(at + 1..at + 1 + len)?, at + len + 2))
        };
        loop {
            let (key, next) = string(i)?;
            if b.get(next) != Some(&b':') {
                return None;
            }
            i = next + 1;
            let value = match b.get(i)? {
                b'"' => {
                    let (v, next) = string(i)?;
                    i = next;
                    Doc::String(Cow::Borrowed(v))
                }
                b'n' if b[i..].starts_with(b"null") => {
                    i += 4;
                    Doc::Null
                }
                _ => return None,
            };
            fields.push((Cow::Borrowed(key), value));
            match b.get(i)? {
                b',' => i += 1,
                b'}' if i == b.len() - 1 => return Some(Doc::Object(fields)),
                _ => return None,
            }
        }
    }

    /// `depth`: arrays and objects around this value. From 128 levels on the payload
    /// is refused, as `serde_json` refuses it (skipping a raw value has no such limit, and the
    /// stack must not be what ends a deep one).
    fn from_raw(raw: &'a RawValue, depth: usize) -> Result<Doc<'a>, serde_json::Error> {
        const DEPTH: usize = 127;
        let t = raw.get();
        let nested = |depth: usize| {
            if depth >= DEPTH {
                Err(<serde_json::Error as serde::de::Error>::custom(
                    "recursion limit exceeded",
                ))
            } else {
                Ok(depth + 1)
            }
        };
        Ok(match t.as_bytes().first() {
            Some(b'{') => {
                let depth = nested(depth)?;
                let Fields(fields) = serde_json::from_str(t)?;
                Doc::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| Ok((k, Doc::from_raw(v, depth)?)))
                        .collect::<Result<_, serde_json::Error>>()?,
                )
            }
            Some(b'[') => {
                let depth = nested(depth)?;
                let items: Vec<&'a RawValue> = serde_json::from_str(t)?;
                Doc::Array(
                    items
                        .into_iter()
                        .map(|v| Doc::from_raw(v, depth))
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(b'"') if !t.contains('\\') => Doc::String(Cow::Borrowed(&t[1..t.len() - 1])),
            Some(b'"') => Doc::String(Cow::Owned(serde_json::from_str(t)?)),
            Some(b't') => Doc::Bool(true),
            Some(b'f') => Doc::Bool(false),
            Some(b'n') => Doc::Null,
            _ => Doc::Number(t),
        })
    }

    /// The value of `key` in an object (the last one, as `serde_json` keeps it).
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Doc::Object(_))
    }

    /// What the mappings see of this value, exactly as of the `serde_json` value
    /// `parse` gives.
    pub fn scalar(&self) -> Scalar<'_> {
        match self {
            Doc::Null => Scalar::Null,
            Doc::Bool(b) => Scalar::Bool(*b),
            Doc::Number(t) if survives_f64(t) => Scalar::Number(number_text(t)),
            // what `exact_numbers` turns into a string of its text
            Doc::Number(t) => Scalar::String(t),
            Doc::String(s) => Scalar::String(s),
            Doc::Array(_) => Scalar::Composite("array"),
            Doc::Object(_) => Scalar::Composite("object"),
        }
    }
}

/// A JSON value as a mapping reads it: text for keys and typed columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A number a double holds, as `serde_json` prints it.
    Number(Cow<'a, str>),
    String(&'a str),
    /// An array or an object (its kind).
    Composite(&'static str),
}

#[cfg(test)]
impl Scalar<'_> {
    /// Of a `serde_json` value (as `parse` gives it).
    pub fn of(json: &Json) -> Scalar<'_> {
        match json {
            Json::Null => Scalar::Null,
            Json::Bool(b) => Scalar::Bool(*b),
            Json::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
            Json::String(s) => Scalar::String(s),
            Json::Array(_) => Scalar::Composite("array"),
            Json::Object(_) => Scalar::Composite("object"),
        }
    }
}

/// A number `serde_json` reads without loss, printed as it prints it: digits stay as
/// they are, `1.50` becomes `1.5` and `1e2` becomes `100.0`.
fn number_text(t: &str) -> Cow<'_, str> {
    let plain = !t.is_empty()
        && t.len() <= 18
        && t.bytes().all(|b| b.is_ascii_digit())
        && (t == "0" || !t.starts_with('0'));
    if plain {
        return Cow::Borrowed(t);
    }
    match serde_json::from_str::<serde_json::Number>(t) {
        Ok(n) => Cow::Owned(n.to_string()),
        Err(_) => Cow::Borrowed(t),
    }
}

impl fmt::Display for Doc<'_> {
    /// Compact JSON, as `serde_json` writes the value `parse` gives (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |f: &mut fmt::Formatter<'_>, s: &str| match serde_json::to_string(s) {
            Ok(quoted) => f.write_str(&quoted),
            Err(_) => Err(fmt::Error),
        };
        match self {
            Doc::Null => f.write_str("null"),
            Doc::Bool(b) => write!(f, "{b}"),
            Doc::Number(t) if survives_f64(t) => f.write_str(&number_text(t)),
            Doc::Number(t) => text(f, t),
            Doc::String(s) => text(f, s),
            Doc::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Doc::Object(fields) => {
                // one entry per key, with its last value, in key order (serde_json's
                // map without `preserve_order`, as dvault is built)
                let mut keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
                keys.sort_unstable();
                keys.dedup();
                f.write_str("{")?;
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    text(f, k)?;
                    f.write_str(":")?;
                    if let Some(v) = self.get(k) {
                        write!(f, "{v}")?;
                    }
                }
                f.write_str("}")
            }
        }
    }
}

/// An object's fields in order, keys borrowed where they hold no escape.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Parse a payload; numbers a double cannot hold come back as strings of their text.
/// (The reference the borrowed reading, [`Doc`], is tested against.)
#[cfg(test)]
pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
    serde_json::from_str(&exact_numbers(text))
}

/// `text` with every number token that does not survive `f64` quoted.
#[cfg(test)]
pub fn exact_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                // the token is ASCII, so these are char boundaries
                let token = &text[start..i];
                if is_json_number(token) && !survives_f64(token) {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 8));
                    o.push_str(&text[copied..start]);
                    o.push('"');
                    o.push_str(token);
                    o.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
#[cfg(test)]
fn is_json_number(t: &str) -> bool {
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let mut s = t.strip_prefix('-').unwrap_or(t);
    let n = digits(s);
    if n == 0 || (n > 1 && s.starts_with('0')) {
        return false;
    }
    s = &s[n..];
    if let Some(rest) = s.strip_prefix('.') {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    if let Some(rest) = s.strip_prefix(['e', 'E']) {
        let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    s.is_empty()
}

/// Whether `serde_json` reads the (valid) number `t` without loss.
fn survives_f64(t: &str) -> bool {
    if !t.contains(['.', 'e', 'E']) {
        return t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok();
    }
    let Ok(f) = t.parse::<f64>() else {
        return false;
    };
    let mantissa = t.split(['e', 'E']).next().unwrap_or(t);
    let significant = mantissa
        .trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len();
    // out of range, rounded, or (1e-400) underflowed to zero
    f.is_finite() && significant <= 15 && (f != 0.0 || significant == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_fields_line_reads_as_its_row_stored_alone() {
        let names: Vec<String> = ["id", "note", "city"].map(String::from).into();
        let doc = Doc::fields(&names, "C1\ta\\tb\\\\c\t").expect("three fields");
        let alone = r#"{"id":"C1","note":"a\tb\\c","city":null}"#;
        assert_eq!(doc, Doc::parse(alone).expect("json"));
        assert!(matches!(
            doc.get("id"),
            Some(Doc::String(Cow::Borrowed("C1")))
        ));
        let err = Doc::fields(&names, "C1\tx").expect_err("two fields");
        assert_eq!(err, "the line holds 2 fields for 3 names");
        let err = Doc::fields(&names, "C1\tx\ty\tz").expect_err("four fields");
        assert_eq!(err, "the line holds 4 fields for 3 names");
        let one: Vec<String> = vec!["id".into()];
        assert_eq!(
            Doc::fields(&one, ""),
            Ok(Doc::Object(vec![("id".into(), Doc::Null)]))
        );
    }

    #[test]
    fn numbers_a_double_holds_stay_numbers() {
        let text = r#"{"a":1,"b":-2.5,"c":1e2,"d":18446744073709551615,"e":-9223372036854775808,"f":0.1,"g":[0,1.50,-0.0,0e5]}"#;
        assert!(matches!(exact_numbers(text), Cow::Borrowed(_)));
        assert_eq!(parse(text).expect("valid")["g"], json!([0, 1.5, -0.0, 0.0]));
    }

    #[test]
    fn others_keep_their_exact_text() {
        let v = parse(r#"{"a":1e400,"b":[-1E+400, 123456789012345678901234567890],"c":"1e400","d":0.12345678901234567891,"e":{"f":18446744073709551616},"g":1e-400}"#)
            .expect("valid");
        assert_eq!(
            v,
            json!({"a": "1e400", "b": ["-1E+400", "123456789012345678901234567890"], "c": "1e400",
                   "d": "0.12345678901234567891", "e": {"f": "18446744073709551616"}, "g": "1e-400"})
        );
    }

    /// Found by `numbers_are_kept_exactly`: serde_json's default float parser is off
    /// by one ulp here (hence its `float_roundtrip` feature).
    #[test]
    fn floats_are_read_correctly_rounded() {
        let v = parse(r#"{"n":0.090515432e-107}"#).expect("valid");
        assert_eq!(v["n"].as_f64(), Some(9.0515432e-109));
    }

    #[test]
    fn invalid_json_stays_invalid() {
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":1-2}"#,
            r#"{"a":1e400"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // strings and escapes are left alone
        let v = parse(r#"{"a\"1e400":"x\\","b":"\\"}"#).expect("valid");
        assert_eq!(v, json!({"a\"1e400": "x\\", "b": "\\"}));
    }

    /// `doc` answers what `json` (the same text read by `parse`) answers, everywhere.
    fn same(doc: &Doc<'_>, json: &Json) -> Result<(), String> {
        if doc.scalar() != Scalar::of(json) {
            return Err(format!("{doc:?} vs {json:?}"));
        }
        match (doc, json) {
            (Doc::Array(a), Json::Array(b)) if a.len() == b.len() => {
                a.iter().zip(b).try_for_each(|(x, y)| same(x, y))
            }
            (Doc::Object(_), Json::Object(fields)) => fields.iter().try_for_each(|(k, v)| {
                doc.get(k)
                    .ok_or_else(|| format!("no {k}"))
                    .and_then(|d| same(d, v))
            }),
            (Doc::Array(_) | Doc::Object(_), _) => Err(format!("{doc:?} vs {json:?}")),
            _ => Ok(()),
        }
    }

    fn check_doc(text: &str) -> Result<(), String> {
        let Ok(json) = parse(text) else {
            return match Doc::parse(text) {
                Err(_) => Ok(()),
                Ok(d) => Err(format!("{text}: parse failed, Doc read {d:?}")),
            };
        };
        let doc = Doc::parse(text).map_err(|e| format!("{text}: {e}"))?;
        same(&doc, &json).map_err(|e| format!("{text}: {e}"))?;
        // keys in order, as the release build (without serde_json's `preserve_order`,
        // which a dev-dependency turns on) prints them
        fn sorted(v: &mut Json) {
            match v {
                Json::Object(map) => {
                    map.sort_keys();
                    map.values_mut().for_each(sorted);
                }
                Json::Array(items) => items.iter_mut().for_each(sorted),
                _ => {}
            }
        }
        let mut json = json;
        sorted(&mut json);
        let (shown, expected) = (doc.to_string(), serde_json::to_string(&json).ok());
        if Some(&shown) != expected.as_ref() {
            return Err(format!("{text}: shown as {shown} vs {expected:?}"));
        }
        Ok(())
    }

    #[test]
    fn the_borrowed_reading_answers_what_serde_json_answers() {
        for text in [
            r#"{"l_orderkey":"1","l_quantity":"17","l_comment":"egular courts"}"#,
            r#"{"a":1,"b":-2.5,"c":1e2,"d":18446744073709551615,"e":-9223372036854775808,"f":0.1,"g":[0,1.50,-0.0,0e5]}"#,
            r#"{"a":1e400,"b":[-1E+400, 123456789012345678901234567890],"d":0.12345678901234567891,"e":{"f":18446744073709551616},"g":1e-400}"#,
            r#"{"a\"1e400":"x\\","b":"\\","c":"\u00e9\n","\u0041":true,"n":null}"#,
            r#"{"k":1,"k":"two","j":[{"x":"1"},{"x":2,"x":3}]}"#,
            r#" { "spaced" : [ 1 , { } , [ ] , "" ] } "#,
            r#"{"order_id":"O1","lines":[{"line_no":1,"product_id":" p1 ","quantity":2,"unit_price":"5.00"}]}"#,
            r#"[1,2]"#,
            r#""just text""#,
            r#"{"deep":{"er":{"est":[[["x"]]]}}}"#,
            r#"{"a":01}"#,
            r#"{"a":}"#,
        ] {
            check_doc(text).unwrap_or_else(|e| panic!("{e}"));
        }
        // as deep as serde_json reads, one more, and far more (not a stack overflow)
        for depth in [127, 128, 129, 100_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            check_doc(&text).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
        }
        assert!(Doc::parse(&format!("{}{}", "[".repeat(127), "]".repeat(127))).is_ok());
    }

    #[test]
    fn csv_rows_take_the_one_scan_path() {
        for text in [
            r#"{"l_orderkey":"1","l_quantity":"17","l_comment":"egular courts"}"#,
            r#"{"a":null,"b":"","c":"x y"}"#,
            "{}",
        ] {
            assert!(Doc::flat(text).is_some(), "{text}");
            check_doc(text).unwrap_or_else(|e| panic!("{e}"));
        }
        for text in [
            r#"{"a":"x\"y"}"#,
            r#"{"a":1}"#,
            r#"{"a": "b"}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"}}"#,
            r#"{"a":nul}"#,
            "{\"a\":\"b\tc\"}",
        ] {
            assert!(Doc::flat(text).is_none(), "{text}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Flat objects of strings, nulls and near misses: the one-scan reading, when
        /// it reads one, reads what `serde_json`'s path reads.
        #[test]
        fn the_one_scan_reading_agrees_with_serde_json(
            fields in proptest::collection::vec(
                ("[a-z\\\"\t ]{0,6}", proptest::option::of("[a-z0-9\\\"\t ,:{}]{0,8}")),
                0..6,
            ),
            tail in "[}, ]{0,2}",
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!("\"{k}\":"));
                match v {
                    Some(v) => text.push_str(&format!("\"{v}\"")),
                    None => text.push_str("null"),
                }
            }
            text.push('}');
            text.push_str(&tail);
            if let Some(flat) = Doc::flat(&text) {
                let any = Doc::parse_any(&text);
                proptest::prop_assert!(any.as_ref().is_ok_and(|d| *d == flat), "{text}: {any:?}");
            }
            let checked = check_doc(&text);
            proptest::prop_assert!(checked.is_ok(), "{:?}", checked);
        }

        /// Any text: the borrowed reading answers what `parse` answers.
        #[test]
        fn the_borrowed_reading_agrees_on_any_text(text in "[-{}\\[\\]\":,0-9.eE+ aku\\\\]{0,40}") {
            let checked = check_doc(&text);
            proptest::prop_assert!(checked.is_ok(), "{:?}", checked);
        }

        /// Valid JSON stays valid, and means the same where no number was at risk.
        #[test]
        fn valid_json_stays_valid(text in "[-{}\\[\\]\":,0-9.eE+ a\\\\]{0,40}") {
            let before = serde_json::from_str::<Json>(&text);
            let after = parse(&text);
            if let Ok(v) = &before {
                proptest::prop_assert!(after.is_ok(), "{text}");
                if matches!(exact_numbers(&text), Cow::Borrowed(_)) {
                    proptest::prop_assert!(after.is_ok_and(|a| a == *v), "{text}");
                }
            }
        }

        /// Any number token: a JSON number equal to it, or its exact text.
        #[test]
        fn numbers_are_kept_exactly(
            neg in proptest::bool::ANY,
            int in "0|[1-9][0-9]{0,40}",
            frac in proptest::option::of("[0-9]{1,30}"),
            exp in proptest::option::of(-500i32..500),
        ) {
            let mut t = format!("{}{int}", if neg { "-" } else { "" });
            if let Some(f) = frac {
                t = format!("{t}.{f}");
            }
            if let Some(e) = exp {
                t = format!("{t}e{e}");
            }
            let v = parse(&format!("{{\"n\":{t}}}")).map_err(|e| e.to_string());
            proptest::prop_assert!(v.is_ok(), "{t}: {v:?}");
            let n = v.map(|v| v["n"].clone()).unwrap_or_default();
            match &n {
                Json::String(s) => proptest::prop_assert_eq!(s, &t),
                Json::Number(_) => {
                    let exact = t.parse::<f64>().ok();
                    proptest::prop_assert_eq!(n.as_f64(), exact, "{}", t);
                    // integers keep their text (serde reads -0 as the float -0.0)
                    if !t.contains(['.', 'e']) && t != "-0" {
                        proptest::prop_assert_eq!(n.to_string(), t);
                    }
                }
                other => proptest::prop_assert!(false, "{t}: {other:?}"),
            }
        }
    }
}
