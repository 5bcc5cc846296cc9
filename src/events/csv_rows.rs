//! Flat CSV files: one event per row, the header naming the payload fields.
//! Pure functions, no I/O.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use std::sync::Arc;

use super::limits::{self, TimeRange};
use super::{NewEvent, bundle};

/// What every row of one CSV file is.
#[derive(Debug, Clone)]
pub struct RowSpec {
    pub event_type: String,
    pub source: String,
    /// Column holding the business time; `None`: the ingestion time.
    pub time_field: Option<String>,
}

impl RowSpec {
    /// `--type` and `--source` within their limits (every row would carry them).
    pub fn check(&self) -> Result<(), String> {
        for (flag, value, limit) in [
            ("--type", &self.event_type, limits::MAX_TYPE_BYTES),
            ("--source", &self.source, limits::MAX_SOURCE_BYTES),
        ] {
            if value.len() > limit {
                return Err(format!(
                    "{flag} is {} bytes long, more than the limit of {limit} bytes",
                    value.len()
                ));
            }
        }
        Ok(())
    }
}

/// A validated header: names, and the position of the time column.
#[derive(Debug, Clone)]
pub struct Header {
    names: Arc<[String]>,
    /// Each name already encoded as a JSON string, with its comma/colon.
    keys: Vec<String>,
    time_index: Option<usize>,
}

impl Header {
    /// Check the header row: present, UTF-8, names unique and not empty, the time
    /// column present. The error is about the whole file.
    pub fn parse(fields: &[&[u8]], spec: &RowSpec) -> Result<Header, String> {
        let mut names = Vec::with_capacity(fields.len());
        for (i, raw) in fields.iter().enumerate() {
            let name = std::str::from_utf8(raw)
                .map_err(|_| format!("header column {} is not valid UTF-8", i + 1))?
                .trim_matches(|c| c == ' ' || c == '\u{feff}')
                .to_string();
            if name.is_empty() {
                return Err(format!("header column {} has no name", i + 1));
            }
            if name.contains('\0') {
                return Err(format!("header column {} contains a NUL byte", i + 1));
            }
            if let Some(first) = names.iter().position(|n| *n == name) {
                return Err(format!(
                    "header names \"{name}\" twice (columns {} and {})",
                    first + 1,
                    i + 1
                ));
            }
            names.push(name);
        }
        if names.is_empty() {
            return Err("the header row is empty".into());
        }
        let time_index = match &spec.time_field {
            Some(field) => Some(names.iter().position(|n| n == field).ok_or_else(|| {
                format!(
                    "--time-field \"{field}\" is not a column; the header has: {}",
                    names.join(", ")
                )
            })?),
            None => None,
        };
        let keys = names
            .iter()
            .map(|n| serde_json::to_string(n).unwrap_or_default())
            .collect();
        Ok(Header {
            names: names.into(),
            keys,
            time_index,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Turn one data row into an event. Empty fields become JSON `null`; a business
    /// time outside `range` is refused.
    pub fn event(
        &self,
        fields: &[&[u8]],
        spec: &RowSpec,
        received_at: DateTime<Utc>,
        range: &TimeRange,
    ) -> Result<NewEvent, String> {
        let mut payload = String::with_capacity(16 * fields.len() + 2);
        payload.push('{');
        self.each_text(fields, |i, value| {
            if i > 0 {
                payload.push(',');
            }
            payload.push_str(&self.keys[i]);
            payload.push(':');
            if value.is_empty() {
                payload.push_str("null");
            } else {
                push_json_string(&mut payload, value);
            }
        })?;
        payload.push('}');
        let occurred_at = self.time(fields, received_at, range)?;
        let event_id = NewEvent::derive_id(&spec.event_type, &spec.source, None, &payload);
        limits::check_attributes(&event_id, &spec.source, &spec.event_type)?;
        Ok(NewEvent {
            event_id,
            event_type: spec.event_type.clone(),
            source: spec.source.clone(),
            occurred_at,
            payload,
        })
    }

    /// Turn one data row into a [`bundle::Row`]: the same checks and business time as
    /// [`Header::event`], the fields kept as they are (escaped for the bundle's line)
    /// instead of written as JSON under their names.
    pub fn row(
        &self,
        fields: &[&[u8]],
        received_at: DateTime<Utc>,
        range: &TimeRange,
    ) -> Result<bundle::Row, String> {
        let mut line = String::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
        self.each_text(fields, |i, value| {
            if i > 0 {
                line.push('\t');
            }
            bundle::push_field(&mut line, value);
        })?;
        Ok(bundle::Row {
            names: self.names.clone(),
            occurred_at: self.time(fields, received_at, range)?,
            fields: line,
        })
    }

    /// Hand each field of a data row to `each` as text, or say why the row cannot be an
    /// event: the wrong number of columns, a field not UTF-8 or holding a NUL byte.
    fn each_text<'f>(
        &self,
        fields: &[&'f [u8]],
        mut each: impl FnMut(usize, &'f str),
    ) -> Result<(), String> {
        if fields.len() != self.names.len() {
            return Err(format!(
                "wrong number of columns: expected {}, found {}",
                self.names.len(),
                fields.len()
            ));
        }
        for (i, raw) in fields.iter().enumerate() {
            let value = std::str::from_utf8(raw).map_err(|e| {
                format!(
                    "column \"{}\" is not valid UTF-8 (bad byte at offset {})",
                    self.names[i],
                    e.valid_up_to()
                )
            })?;
            if value.contains('\0') {
                return Err(format!("column \"{}\" contains a NUL byte", self.names[i]));
            }
            each(i, value);
        }
        Ok(())
    }

    /// A data row's business time: its time field, or `received_at` without one.
    fn time(
        &self,
        fields: &[&[u8]],
        received_at: DateTime<Utc>,
        range: &TimeRange,
    ) -> Result<DateTime<Utc>, String> {
        let Some(i) = self.time_index else {
            return Ok(received_at);
        };
        let text = std::str::from_utf8(fields[i]).unwrap_or_default();
        let what = format!("time field \"{}\"", self.names[i]);
        let at = parse_time(text).ok_or_else(|| {
            let cut: String = text.chars().take(40).collect();
            format!("{what}: \"{cut}\" is not an ISO 8601 date or timestamp")
        })?;
        range.check(&what, text, at)?;
        Ok(at)
    }
}

pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // most fields need no escape: one scan of the bytes, one copy
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ISO 8601 date or timestamp, with or without zone; no zone means UTC, a bare date
/// means its midnight UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(time: Option<&str>) -> RowSpec {
        RowSpec {
            event_type: "customer_registered".into(),
            source: "crm".into(),
            time_field: time.map(String::from),
        }
    }

    #[test]
    fn times_in_every_iso_shape() {
        let expect = |text: &str, want: &str| {
            let got = parse_time(text).unwrap_or_else(|| panic!("{text} should parse"));
            assert_eq!(got.to_rfc3339(), want, "{text}");
        };
        expect("2024-01-20", "2024-01-20T00:00:00+00:00");
        expect("2024-01-20T12:30:00", "2024-01-20T12:30:00+00:00");
        expect("2024-01-20 12:30:00.5", "2024-01-20T12:30:00.500+00:00");
        expect("2024-01-20T12:30:00Z", "2024-01-20T12:30:00+00:00");
        expect("2024-01-20T12:30:00+02:00", "2024-01-20T10:30:00+00:00");
        expect("2024-01-20 12:30:00+02", "2024-01-20T10:30:00+00:00");
        expect("2024-01-20T12:30", "2024-01-20T12:30:00+00:00");
        assert!(parse_time("20/01/2024").is_none());
        assert!(parse_time("").is_none());
        assert!(parse_time("2024-02-30").is_none());
    }

    #[test]
    fn header_problems_are_named() {
        let s = spec(None);
        let err = Header::parse(&[b"id", b"name", b"id"], &s).expect_err("dup");
        assert!(err.contains("\"id\" twice (columns 1 and 3)"), "{err}");
        let err = Header::parse(&[b"id", b"n\0"], &s).expect_err("nul");
        assert!(err.contains("column 2 contains a NUL byte"), "{err}");
        let err = Header::parse(&[b"id", b""], &s).expect_err("empty");
        assert!(err.contains("column 2 has no name"), "{err}");
        let err = Header::parse(&[b"id"], &spec(Some("signup_date"))).expect_err("time");
        assert!(err.contains("\"signup_date\" is not a column"), "{err}");
    }

    #[test]
    fn rows_become_events() {
        let s = spec(Some("signup_date"));
        let h = Header::parse(&[b"\xef\xbb\xbfcustomer_id", b"name", b"signup_date"], &s)
            .expect("header");
        let now = Utc::now();
        let e = h
            .event(
                &[b"C1", b"Ann \"A\"\n", b"2024-03-01"],
                &s,
                now,
                &TimeRange::default(),
            )
            .expect("row");
        assert_eq!(
            e.payload,
            r#"{"customer_id":"C1","name":"Ann \"A\"\n","signup_date":"2024-03-01"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&e.payload).expect("valid JSON");
        assert_eq!(parsed["name"], "Ann \"A\"\n");
        assert_eq!(e.occurred_at.to_rfc3339(), "2024-03-01T00:00:00+00:00");
        let empty = h
            .event(&[b"C2", b"", b"2024-03-01"], &s, now, &TimeRange::default())
            .expect("row");
        assert!(empty.payload.contains(r#""name":null"#));

        let err = h
            .event(&[b"C1", b"x"], &s, now, &TimeRange::default())
            .expect_err("ragged");
        assert_eq!(err, "wrong number of columns: expected 3, found 2");
        let err = h
            .event(
                &[b"C1", b"\xff", b"2024-03-01"],
                &s,
                now,
                &TimeRange::default(),
            )
            .expect_err("utf8");
        assert!(err.contains("column \"name\" is not valid UTF-8"), "{err}");
        let err = h
            .event(
                &[b"C1", b"a\0b", b"2024-03-01"],
                &s,
                now,
                &TimeRange::default(),
            )
            .expect_err("nul");
        assert!(err.contains("NUL"), "{err}");
        let err = h
            .event(&[b"C1", b"x", b"soon"], &s, now, &TimeRange::default())
            .expect_err("time");
        assert!(err.contains("\"soon\" is not an ISO 8601"), "{err}");
        let err = h
            .event(
                &[b"C1", b"x", b"1899-12-31"],
                &s,
                now,
                &TimeRange::default(),
            )
            .expect_err("too early");
        assert!(
            err.starts_with("time field \"signup_date\": \"1899-12-31\" is outside the range"),
            "{err}"
        );
    }

    #[test]
    fn type_and_source_over_their_limits_are_named() {
        let mut s = spec(None);
        assert!(s.check().is_ok());
        s.source = "s".repeat(limits::MAX_SOURCE_BYTES + 1);
        let err = s.check().expect_err("source");
        assert!(err.starts_with("--source is 513 bytes long"), "{err}");
        s.source = "crm".into();
        s.event_type = "t".repeat(limits::MAX_TYPE_BYTES + 1);
        assert!(
            s.check()
                .expect_err("type")
                .starts_with("--type is 129 bytes")
        );
    }
}
