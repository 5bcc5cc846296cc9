//! Column types a mapping can declare, and typed values with their canonical text
//! (what PostgreSQL prints with `DateStyle=ISO`, `TimeZone=UTC`), the text that is
//! hashed. Pure functions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Timelike, Utc};
use compact_str::CompactString;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::events::csv_rows::parse_time;
use crate::load::payload::Scalar;

/// A column type of the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Bigint,
    /// `numeric(precision, scale)`
    Numeric(u32, u32),
    Date,
    Timestamptz,
    Boolean,
}

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "text" => ColumnType::Text,
            "integer" | "int" | "int4" => ColumnType::Integer,
            "bigint" | "int8" => ColumnType::Bigint,
            "date" => ColumnType::Date,
            "timestamptz" | "timestamp with time zone" => ColumnType::Timestamptz,
            "boolean" | "bool" => ColumnType::Boolean,
            _ => {
                let inner = t
                    .strip_prefix("numeric(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!(
                            "unknown type \"{s}\"; use text, integer, bigint, numeric(P,S), date, timestamptz or boolean"
                        )
                    })?;
                let (p, sc) = inner.split_once(',').ok_or_else(|| {
                    format!("type \"{s}\": numeric needs a scale, e.g. numeric(12,2)")
                })?;
                let p: u32 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("type \"{s}\": bad precision"))?;
                let sc: u32 = sc
                    .trim()
                    .parse()
                    .map_err(|_| format!("type \"{s}\": bad scale"))?;
                if p == 0 || p > 28 || sc > p {
                    return Err(format!(
                        "type \"{s}\": precision must be 1..=28 and scale at most the precision"
                    ));
                }
                ColumnType::Numeric(p, sc)
            }
        })
    }
}

impl fmt::Display for ColumnType {
    /// As PostgreSQL's `format_type` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Text => f.write_str("text"),
            ColumnType::Integer => f.write_str("integer"),
            ColumnType::Bigint => f.write_str("bigint"),
            ColumnType::Numeric(p, s) => write!(f, "numeric({p},{s})"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamptz => f.write_str("timestamp with time zone"),
            ColumnType::Boolean => f.write_str("boolean"),
        }
    }
}

/// A typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Inline up to 24 bytes: most values a warehouse load reads (codes, flags,
    /// names, short comments) cost no allocation of their own.
    Text(CompactString),
    Int(i64),
    Numeric(Decimal),
    Date(NaiveDate),
    Timestamptz(DateTime<Utc>),
    Bool(bool),
}

impl Value {
    /// The text PostgreSQL prints for this value (ISO dates, UTC, numeric at its
    /// declared scale): what is hashed.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        // writing into a String cannot fail
        let _ = self.write_canonical(&mut s);
        s
    }

    /// [`canonical`](Self::canonical), written to `out` (no allocation of its own
    /// but for fractions of a second).
    pub fn write_canonical(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Value::Text(s) => out.write_str(s),
            Value::Int(i) => out.write_str(itoa::Buffer::new().format(*i)),
            Value::Numeric(d) => write_numeric(out, d),
            Value::Date(d) => write_date(out, *d),
            Value::Timestamptz(t) => {
                write_date(out, t.date_naive())?;
                let time = t.time();
                let micros = t.timestamp_subsec_micros();
                // a leap second is second 60, as chrono's %S prints it
                let second = time.second() + u32::from(time.nanosecond() >= 1_000_000_000);
                out.write_char(' ')?;
                write_two(out, time.hour())?;
                out.write_char(':')?;
                write_two(out, time.minute())?;
                out.write_char(':')?;
                write_two(out, second)?;
                if micros > 0 {
                    let frac = format!("{micros:06}");
                    out.write_char('.')?;
                    out.write_str(frac.trim_end_matches('0'))?;
                }
                out.write_str("+00")
            }
            Value::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
        }
    }

    /// The canonical text lent to `f`: a text value as it is, any other written on
    /// the stack (the loader hashes every value of every row it reads).
    pub fn with_canonical<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        if let Value::Text(s) = self {
            return f(s);
        }
        // up to 64 bytes on the stack; writing more fails. (A buffer of bytes read
        // back as text was checked for UTF-8 each time: 1.5% of the loader's
        // instructions at TPC-H scale, callgrind.)
        let mut text = arrayvec::ArrayString::<64>::new();
        match self.write_canonical(&mut text) {
            Ok(()) => f(&text),
            // longer than the stack buffer
            Err(_) => f(&self.canonical()),
        }
    }
}

/// A numeric as `rust_decimal` displays it (every digit of its scale), from its
/// integer mantissa: the loader writes four per TPC-H line item for its hashdiff, where
/// the general formatter took 2.5% of the loader's CPU (`perf`, SF0.3).
fn write_numeric(out: &mut impl fmt::Write, d: &Decimal) -> fmt::Result {
    let mantissa = d.mantissa();
    if mantissa == 0 {
        // zero keeps its sign and scale as the formatter has them
        return write!(out, "{d}");
    }
    if mantissa < 0 {
        out.write_char('-')?;
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(mantissa.unsigned_abs());
    let scale = d.scale() as usize;
    match digits.len().checked_sub(scale) {
        Some(0) | None => {
            out.write_str("0.")?;
            for _ in digits.len()..scale {
                out.write_char('0')?;
            }
            out.write_str(digits)
        }
        Some(whole) if scale > 0 => {
            out.write_str(&digits[..whole])?;
            out.write_char('.')?;
            out.write_str(&digits[whole..])
        }
        Some(_) => out.write_str(digits),
    }
}

/// `n` (below 100) as two digits.
fn write_two(out: &mut impl fmt::Write, n: u32) -> fmt::Result {
    out.write_char(char::from(b'0' + (n / 10 % 10) as u8))?;
    out.write_char(char::from(b'0' + (n % 10) as u8))
}

/// `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes it (years outside 0..=9999 with a sign).
fn write_date(out: &mut impl fmt::Write, d: NaiveDate) -> fmt::Result {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return write!(out, "{}", d.format("%Y-%m-%d"));
    }
    write_two(out, year as u32 / 100)?;
    write_two(out, year as u32 % 100)?;
    out.write_char('-')?;
    write_two(out, d.month())?;
    out.write_char('-')?;
    write_two(out, d.day())
}

/// `YYYY-MM-DD` read without chrono's format parser (the common case, and the hot
/// one); `None` for any other shape, which then goes the general way.
fn parse_iso_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Convert a value as the loader reads it to `ty`. `Ok(None)` for null (absent). The
/// error says what was expected, without the field name (the caller adds it); `json`
/// renders the value for it.
pub fn parse_scalar(
    scalar: &Scalar<'_>,
    ty: ColumnType,
    json: &dyn Fn() -> String,
) -> Result<Option<Value>, String> {
    let text: &str = match scalar {
        Scalar::Null => return Ok(None),
        Scalar::String(s) => s,
        Scalar::Number(n) => n,
        Scalar::Bool(true) => "true",
        Scalar::Bool(false) => "false",
        Scalar::Composite(kind) => {
            return Err(format!("expected {}, got a JSON {kind}", ty_name(ty)));
        }
    };
    let shown = || crate::events::cloudevents::preview(&json());
    parse_text(text, ty, matches!(scalar, Scalar::String(_)), &shown).map(Some)
}

/// `text.trim()`, without its search when neither end is whitespace (nearly always:
/// every typed value of every row the loader reads comes through here).
fn trim(text: &str) -> &str {
    // ASCII that `char::is_whitespace` does not take
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !(b as char).is_whitespace());
    let bytes = text.as_bytes();
    if plain(bytes.first()) && plain(bytes.last()) {
        text
    } else {
        text.trim()
    }
}

fn ty_name(ty: ColumnType) -> String {
    match ty {
        ColumnType::Timestamptz => "timestamptz".into(),
        other => other.to_string(),
    }
}

fn parse_text(
    text: &str,
    ty: ColumnType,
    is_string: bool,
    shown: &dyn Fn() -> String,
) -> Result<Value, String> {
    let bad = || format!("{} is not a valid {}", shown(), ty_name(ty));
    let t = trim(text);
    match ty {
        ColumnType::Text => {
            if is_string {
                Ok(Value::Text(text.into()))
            } else {
                // numbers and booleans given for a text column keep their JSON text
                Ok(Value::Text(t.into()))
            }
        }
        ColumnType::Integer => {
            let v: i64 = t.parse().map_err(|_| bad())?;
            i32::try_from(v)
                .map(|_| Value::Int(v))
                .map_err(|_| format!("{} is out of range for integer", shown()))
        }
        ColumnType::Bigint => t.parse().map(Value::Int).map_err(|_| bad()),
        ColumnType::Numeric(precision, scale) => {
            let d = Decimal::from_str(t)
                .or_else(|_| Decimal::from_scientific(t))
                .map_err(|_| bad())?;
            let mut d = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
            d.rescale(scale);
            // more integer digits than precision - scale (at most 28: a Decimal holds 10^28)
            let limit = Decimal::from_i128_with_scale(10i128.pow(precision - scale), 0);
            if d.trunc().abs() >= limit {
                return Err(format!(
                    "{} is out of range for numeric({precision},{scale})",
                    shown()
                ));
            }
            Ok(Value::Numeric(d))
        }
        ColumnType::Date => {
            if let Some(d) = parse_iso_date(t) {
                return Ok(Value::Date(d));
            }
            if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
                return Ok(Value::Date(d));
            }
            parse_time(t)
                .map(|ts| Value::Date(ts.date_naive()))
                .ok_or_else(bad)
        }
        ColumnType::Timestamptz => parse_time(t)
            .map(|ts| Value::Timestamptz(ts.round_subsecs(6)))
            .ok_or_else(bad),
        ColumnType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn parse_value(json: &Json, ty: ColumnType) -> Result<Option<Value>, String> {
        parse_scalar(&Scalar::of(json), ty, &|| json.to_string())
    }

    #[test]
    fn the_quick_trim_equals_str_trim() {
        for text in [
            "",
            " ",
            "1",
            " 1",
            "1 ",
            "\t1\n",
            "\u{b}1",
            "1\u{c}",
            "\u{a0}1",
            "1\u{2003}",
            "é",
            "1 2",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn numerics_are_written_as_rust_decimal_displays_them(
            lo in proptest::prelude::any::<u32>(),
            mid in proptest::prelude::any::<u32>(),
            hi in proptest::prelude::any::<u32>(),
            width in 0u32..4,
            negative in proptest::prelude::any::<bool>(),
            scale in 0u32..=28,
        ) {
            // mantissas of every width, zero included
            let (mid, hi) = (if width > 1 { mid } else { 0 }, if width > 2 { hi } else { 0 });
            let lo = if width > 0 { lo } else { 0 };
            let d = Decimal::from_parts(lo, mid, hi, negative, scale);
            proptest::prop_assert_eq!(Value::Numeric(d).canonical(), d.to_string());
        }
    }

    #[test]
    fn dates_are_read_and_written_as_chrono_does() {
        for text in [
            "2024-02-29",
            "2023-02-29",
            "0000-01-01",
            "9999-12-31",
            "1996-13-01",
            "1996-00-10",
            "1996-1-1",
            "19960101",
            "2024-02-2x",
            "+2024-01-01",
        ] {
            assert_eq!(
                parse_iso_date(text).or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()),
                NaiveDate::parse_from_str(text, "%Y-%m-%d").ok(),
                "{text}"
            );
        }
        for (y, m, d) in [
            (2024, 2, 29),
            (7, 1, 2),
            (0, 1, 1),
            (9999, 12, 31),
            (10000, 1, 1),
            (-5, 3, 4),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).expect("date");
            assert_eq!(
                Value::Date(date).canonical(),
                date.format("%Y-%m-%d").to_string()
            );
            // what the text was before it was written without chrono's formatter
            let before = |t: DateTime<Utc>| {
                let micros = t.timestamp_subsec_micros();
                let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
                if micros > 0 {
                    s.push('.');
                    s.push_str(format!("{micros:06}").trim_end_matches('0'));
                }
                s + "+00"
            };
            for (h, mi, sec, micro) in [(1, 2, 3, 0), (23, 59, 59, 120), (23, 59, 59, 1_100_000)] {
                let ts = date
                    .and_hms_micro_opt(h, mi, sec, micro)
                    .expect("time (micro past a million: a leap second)")
                    .and_utc();
                assert_eq!(Value::Timestamptz(ts).canonical(), before(ts), "{ts:?}");
            }
        }
    }

    #[test]
    fn numeric_range_is_counted_in_integer_digits() {
        let ty: ColumnType = "numeric(5,2)".parse().expect("type");
        assert!(parse_value(&json!("999.994"), ty).is_ok());
        assert!(parse_value(&json!("-999.99"), ty).is_ok());
        assert!(
            parse_value(&json!("999.995"), ty).is_err(),
            "rounds to 1000.00"
        );
        assert!(parse_value(&json!("1000"), ty).is_err());
        assert!(parse_value(&json!("0.001"), ty).is_ok());
        let whole: ColumnType = "numeric(3,0)".parse().expect("type");
        assert!(parse_value(&json!(999), whole).is_ok());
        assert!(parse_value(&json!(1000), whole).is_err());
        let wide: ColumnType = "numeric(28,0)".parse().expect("type");
        assert!(parse_value(&json!("9999999999999999999999999999"), wide).is_ok());
    }

    fn canon(j: Json, ty: &str) -> String {
        let ty: ColumnType = ty.parse().expect("type");
        parse_value(&j, ty)
            .expect("valid")
            .expect("present")
            .canonical()
    }

    fn err(j: Json, ty: &str) -> String {
        let ty: ColumnType = ty.parse().expect("type");
        match parse_value(&j, ty) {
            Ok(v) => panic!("accepted {j} as {ty}: {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn numbers_in_any_spelling_give_one_canonical_text() {
        assert_eq!(canon(json!(10), "numeric(10,2)"), "10.00");
        assert_eq!(canon(json!(10.0), "numeric(10,2)"), "10.00");
        assert_eq!(canon(json!("10.00"), "numeric(10,2)"), "10.00");
        assert_eq!(canon(json!(" 10 "), "numeric(10,2)"), "10.00");
        assert_eq!(canon(json!(2.345), "numeric(10,2)"), "2.35");
        assert_eq!(canon(json!(-2.345), "numeric(10,2)"), "-2.35");
        assert_eq!(canon(json!("1e2"), "numeric(10,2)"), "100.00");
        assert_eq!(canon(json!(0), "numeric(5,2)"), "0.00");
        assert!(err(json!(1000), "numeric(5,2)").contains("out of range for numeric(5,2)"));
        assert!(
            err(json!("cheap"), "numeric(12,2)").contains("\"cheap\" is not a valid numeric(12,2)")
        );
    }

    #[test]
    fn integers_dates_times_booleans() {
        assert_eq!(canon(json!(3), "integer"), "3");
        assert_eq!(canon(json!("3"), "integer"), "3");
        assert!(err(json!("three"), "integer").contains("\"three\" is not a valid integer"));
        assert!(err(json!(3.5), "integer").contains("not a valid integer"));
        assert!(err(json!(3_000_000_000i64), "integer").contains("out of range"));
        assert_eq!(canon(json!(3_000_000_000i64), "bigint"), "3000000000");
        assert_eq!(canon(json!("2024-02-29"), "date"), "2024-02-29");
        assert!(err(json!("2024-13-45"), "date").contains("not a valid date"));
        assert_eq!(
            canon(json!("2024-01-20T14:00:00+02:00"), "timestamptz"),
            "2024-01-20 12:00:00+00"
        );
        assert_eq!(
            canon(json!("2024-01-20 12:00:00.250"), "timestamptz"),
            "2024-01-20 12:00:00.25+00"
        );
        assert_eq!(canon(json!(true), "boolean"), "true");
        assert_eq!(canon(json!("F"), "boolean"), "false");
        assert_eq!(canon(json!(" Ann "), "text"), " Ann ");
        assert_eq!(canon(json!(42), "text"), "42");
        assert!(err(json!({"a": 1}), "text").contains("got a JSON object"));
        assert_eq!(parse_value(&Json::Null, ColumnType::Text), Ok(None));
    }

    #[test]
    fn types_parse_and_print_like_postgres() {
        for (input, printed) in [
            ("text", "text"),
            ("integer", "integer"),
            ("numeric(12, 2)", "numeric(12,2)"),
            ("timestamptz", "timestamp with time zone"),
            ("DATE", "date"),
            ("boolean", "boolean"),
        ] {
            let ty: ColumnType = input.parse().expect(input);
            assert_eq!(ty.to_string(), printed);
        }
        assert!("numeric".parse::<ColumnType>().is_err());
        assert!(
            "varchar"
                .parse::<ColumnType>()
                .unwrap_err()
                .contains("unknown type")
        );
        assert!("numeric(2,5)".parse::<ColumnType>().is_err());
    }
}
