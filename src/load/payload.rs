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

use std::borrow::Cow;

use serde_json::Value as Json;

/// Parse a payload; numbers a double cannot hold come back as strings of their text.
pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
    serde_json::from_str(&exact_numbers(text))
}

/// `text` with every number token that does not survive `f64` quoted.
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

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
