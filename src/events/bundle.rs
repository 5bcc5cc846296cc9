//! Bundles: many events of one flat file in one log row (`dvault ingest --bundle`).
//!
//! A warehouse feed is millions of rows, and one log row per row costs a heap tuple,
//! three index entries, a JSON validation and their WAL each: more than the rest of
//! the load. A bundle stores up to [`ROWS`] events of one CSV file (one type, one
//! source) as lines of text in one row (`event_log.events.bundle`, compressed out of
//! line by TOAST), so the log's per-row costs are paid once per bundle. The lines hold
//! the rows' fields under one line of names ([`encode`]), not a JSON object per row:
//! a reader turns a line into the payload its row alone would have had
//! ([`crate::events::PayloadRef::json`], and the loader's `Doc::fields`). Bundles of
//! the JSON format an earlier ingest wrote (a JSON payload per line) read as before.
//!
//! Every event of a bundle keeps its own place in the log. The writer reserves one
//! `seq` per event ([`super::reserve_seqs`]), the bundle row takes the first and
//! each line carries its own; readers expand a bundle into the events it holds
//! ([`read_rows`]), in order, each at its `(xid, seq)`. So the loader decides them
//! exactly as if they had been stored one per row: a checkpoint at the last event
//! of a bundle is past the bundle (its row's `seq` is its first event's), and the
//! next row of the same transaction has reserved its `seq`s after them.
//!
//! What a bundle gives up is the per-event idempotency of re-sent rows: a file is
//! recognised whole by its digest and a bundle by its content ([`Encoded::id`]), so
//! a crashed ingest run again stores nothing twice, but the unchanged rows of a daily
//! full snapshot are stored again each day, unless their whole bundle is unchanged
//! (the vault does not grow from them: a satellite writes a version only when the
//! hashdiff changes). docs/events.md, "Bundles", has the storage this costs.

use std::borrow::Cow;
use std::error::Error;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use postgres_types::{FromSql, Type};
use sha2::{Digest, Sha256};
use tokio_postgres::Row as LogRow;

use super::{Payload, PayloadRef, RawJson, StoredEvent, Xid8};

/// Events per bundle: big enough that a bundle's row costs nothing per event, small
/// enough that a bundle is a fraction of a load batch.
pub const ROWS: usize = 10_000;

/// A bundle is closed earlier once its payloads hold this many bytes: a value must
/// stay far below PostgreSQL's 1 GB, and every reader holds a bundle whole (rows of
/// 3 KB or more make bundles of fewer than 10,000 events).
pub const MAX_BYTES: usize = 32 << 20;

/// The first field of a bundle's first line in the fields format ([`encode`]). A bundle
/// of the JSON format (what ingest wrote before) starts with a `seq`, a number.
const FIELDS: &str = "#fields";

/// A CSV row as a bundle holds it: no JSON, no id of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The file's header: the name of each field.
    pub names: Arc<[String]>,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// The row's fields, each escaped ([`push_field`]), tab-separated; an empty field
    /// is a null (as an empty CSV field is).
    pub fields: String,
}

/// The events of a bundle as the log stores them.
#[derive(Debug)]
pub struct Encoded {
    /// Unique per source like every event id: a digest of the events' type, source,
    /// field names and rows (not of their `seq`s or times, which differ each time a
    /// file is ingested without a time field), so the same rows make the same bundle.
    pub id: String,
    pub text: String,
    /// The earliest business time of its events (the row's `occurred_at`).
    pub occurred_at: DateTime<Utc>,
    /// A small JSON object describing it (the row's `payload`).
    pub summary: String,
}

/// Encode `rows` (of one file: one type, source and header; at least one) at the
/// places `seqs`, in the fields format:
///
/// ```text
/// #fields<TAB>name<TAB>name...
/// seq<TAB>micros<TAB>field<TAB>field...
/// ```
///
/// one line per row after the names, `micros` its business time in microseconds since
/// 1970 (UTC). A row costs its CSV bytes and a few more: no field names, quotes or
/// JSON escapes per row, which is what the log's compression, the server's reads and
/// the loader's parse would otherwise pay for every event.
pub fn encode(
    event_type: &str,
    source: &str,
    rows: &[Row],
    seqs: &[i64],
    file: &str,
    first_line: u64,
) -> Encoded {
    let names: &[String] = rows.first().map(|r| &r.names[..]).unwrap_or_default();
    let mut text = String::with_capacity(
        names.iter().map(|n| n.len() + 1).sum::<usize>()
            + rows.iter().map(|r| r.fields.len() + 28).sum::<usize>()
            + FIELDS.len()
            + 1,
    );
    text.push_str(FIELDS);
    if !names.is_empty() {
        text.push('\t');
        push_fields(&mut text, names.iter().map(String::as_str));
    }
    text.push('\n');
    let mut id = Sha256::new();
    for part in [event_type, source] {
        id.update(part.as_bytes());
        id.update([0x1f]);
    }
    // the names as the text holds them, then each row's fields (not its place or time:
    // a time that is the ingestion time differs each run, and a run stopped half way
    // must make the same bundles again)
    id.update(text.as_bytes());
    let mut occurred_at = rows.first().map(|r| r.occurred_at).unwrap_or_default();
    let mut number = itoa::Buffer::new();
    for (r, seq) in rows.iter().zip(seqs) {
        occurred_at = occurred_at.min(r.occurred_at);
        text.push_str(number.format(*seq));
        text.push('\t');
        text.push_str(number.format(micros(r.occurred_at)));
        text.push('\t');
        text.push_str(&r.fields);
        text.push('\n');
        id.update(r.fields.as_bytes());
        id.update([0x1e]);
    }
    let summary = serde_json::json!({
        "bundle": {
            "events": rows.len(),
            "file": file,
            "first_line": first_line,
            "last_seq": seqs.get(rows.len().saturating_sub(1)),
        }
    })
    .to_string();
    Encoded {
        id: format!("bundle-{}", hex::encode(&id.finalize()[..16])),
        text,
        occurred_at,
        summary,
    }
}

/// Append `value` as one field of a fields line: backslash, tab, line feed and
/// carriage return escaped (`\\`, `\t`, `\n`, `\r`), so that a field never holds a
/// separator.
pub fn push_field(out: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Append `values` as fields ([`push_field`]), tab-separated.
pub fn push_fields<'v>(out: &mut String, values: impl IntoIterator<Item = &'v str>) {
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        push_field(out, value);
    }
}

/// The fields of a fields line, in order, each as its text ([`push_field`] undone),
/// `None` for an empty field (a null). One pass over the line: a field without an
/// escape borrows it.
pub fn split_fields(line: &str) -> impl Iterator<Item = Option<Cow<'_, str>>> {
    let bytes = line.as_bytes();
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let mut escaped = false;
        let mut end = from;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'\\' => escaped = true,
                b'\t' => break,
                _ => {}
            }
            end += 1;
        }
        start = (end < bytes.len()).then_some(end + 1);
        let raw = &line[from..end];
        Some(match (raw.is_empty(), escaped) {
            (true, _) => None,
            (false, false) => Some(Cow::Borrowed(raw)),
            (false, true) => Some(Cow::Owned(unescape(raw))),
        })
    })
}

/// A field's text with its escapes ([`push_field`]) undone.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A fields line as the JSON object the ingest of its row alone stores: each field a
/// string under its name, an empty one `null`.
pub fn fields_json(names: &[String], line: &str) -> String {
    let mut json =
        String::with_capacity(line.len() + names.iter().map(|n| n.len() + 6).sum::<usize>());
    json.push('{');
    for (i, (name, value)) in names.iter().zip(split_fields(line)).enumerate() {
        if i > 0 {
            json.push(',');
        }
        super::csv_rows::push_json_string(&mut json, name);
        json.push(':');
        match value {
            None => json.push_str("null"),
            Some(value) => super::csv_rows::push_json_string(&mut json, &value),
        }
    }
    json.push('}');
    json
}

/// Microseconds since 1970 of `t` as PostgreSQL stores it from the binary protocol
/// (the driver truncates towards 2000-01-01, PostgreSQL's epoch): an event read back
/// from a bundle has the time it would have had stored alone, to the microsecond.
fn micros(t: DateTime<Utc>) -> i64 {
    const Y2000: i64 = 946_684_800_000_000;
    let epoch = DateTime::from_timestamp_micros(Y2000).unwrap_or_default();
    match t.signed_duration_since(epoch).num_microseconds() {
        Some(since) => Y2000 + since,
        None => t.timestamp_micros(),
    }
}

/// One line of a bundle, borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    /// JSON text, or in the fields format the row's fields ([`Row::fields`]).
    pub payload: &'a str,
}

/// A bundle's lines, and the field names they are under when it is in the fields
/// format (`None`: each line's payload is JSON). A line with more or fewer fields than
/// names is not damage to the bundle: that one event's payload cannot be read, and
/// the loader quarantines it alone (`Doc::fields`).
#[derive(Debug)]
pub struct Bundle<'a> {
    pub names: Option<Arc<[String]>>,
    pub lines: Vec<Line<'a>>,
}

impl<'a> Bundle<'a> {
    /// The payload of each line, in order.
    pub fn payloads(&self) -> impl Iterator<Item = PayloadRef<'_>> {
        self.lines.iter().map(|l| match &self.names {
            None => PayloadRef::Json(l.payload),
            Some(names) => PayloadRef::Fields {
                names,
                line: l.payload,
            },
        })
    }
}

/// A bundle's text read as its lines, or why it cannot be: as a column type it
/// never fails, so a damaged bundle is one event to quarantine ([`read_rows`]), never
/// an error that stops every reader at the same row, nor a panic or a skipped event.
#[derive(Debug)]
pub struct Lines<'a>(pub Result<Bundle<'a>, String>);

impl<'a> FromSql<'a> for Lines<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Lines(read_text(raw)))
    }
    postgres_types::accepts!(TEXT);
}

fn read_text(raw: &[u8]) -> Result<Bundle<'_>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "the bundle is not valid UTF-8".to_string())?;
    let (names, body, first) = match text.strip_prefix(FIELDS) {
        Some(rest) if rest.starts_with(['\t', '\n']) => {
            let (head, body) = rest.split_once('\n').unwrap_or((rest, ""));
            let names: Arc<[String]> = match head.strip_prefix('\t') {
                Some(head) => split_fields(head)
                    .map(|n| n.unwrap_or_default().into_owned())
                    .collect(),
                None => Arc::new([]),
            };
            (Some(names), body, 2)
        }
        _ => (None, text, 1),
    };
    let mut lines = Vec::with_capacity(body.len() / 128);
    for (i, line) in body.lines().enumerate() {
        let number = i + first;
        let Some(line) = parse_line(line) else {
            let shown: String = line.chars().take(80).collect();
            return Err(format!(
                "line {number} is not `seq<TAB>micros<TAB>payload`: {shown:?}"
            ));
        };
        lines.push(line);
    }
    Ok(Bundle { names, lines })
}

/// Why the `lines` of the bundle row at `seq` holding `size` events cannot be its
/// events, if they cannot: as many lines as events, the first at the row's own `seq`,
/// each after the one before.
fn damage(seq: i64, size: i32, lines: &[Line<'_>]) -> Option<String> {
    if lines.len() != size.max(0) as usize {
        return Some(format!("it holds {} lines for {size} events", lines.len()));
    }
    if lines.first().is_some_and(|l| l.seq != seq) {
        return Some(format!(
            "its first line is at seq {}, the row at {seq}",
            lines[0].seq
        ));
    }
    let back = lines.windows(2).position(|w| w[1].seq <= w[0].seq);
    back.map(|i| format!("line {} is not after line {}", i + 2, i + 1))
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let (seq, rest) = line.split_once('\t')?;
    let (micros, payload) = rest.split_once('\t')?;
    Some(Line {
        seq: seq.parse().ok()?,
        occurred_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        payload,
    })
}

/// The events of rows with the columns `seq, xid, event_id, event_type,
/// record_source, occurred_at, recorded_at, payload, bundle, bundle_size` (`bundle`
/// NULL for one event), a bundle expanded into its events, in order. A damaged bundle (not as many well-formed lines as it says, or
/// out of place) is one event at the row's own `seq`, marked [`StoredEvent::damaged`]:
/// the loader quarantines it with its text and goes on.
pub fn read_rows(rows: &[LogRow]) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let xid: Xid8 = r.try_get(1)?;
        let event_id: String = r.try_get(2)?;
        let event_type: String = r.try_get(3)?;
        let source: String = r.try_get(4)?;
        let occurred_at: DateTime<Utc> = r.try_get(5)?;
        let recorded_at: DateTime<Utc> = r.try_get(6)?;
        let one = |payload: String, damaged: Option<Damaged>| StoredEvent {
            seq,
            xid,
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            source: source.clone(),
            occurred_at,
            recorded_at,
            payload: Payload::Json(payload),
            damaged,
        };
        let Some(Lines(bundle)) = r.try_get::<_, Option<Lines<'_>>>(8)? else {
            let payload = r.try_get::<_, RawJson<'_>>(7)?.0.to_string();
            out.push(one(payload, None));
            continue;
        };
        let size: i32 = r.try_get::<_, Option<i32>>(9)?.unwrap_or(0);
        let bundle = match bundle.and_then(|b| match damage(seq, size, &b.lines) {
            None => Ok(b),
            Some(why) => Err(why),
        }) {
            Ok(bundle) => bundle,
            Err(why) => {
                let events = size.max(1) as u64;
                out.push(one(raw_text(r), Some(Damaged { why, events })));
                continue;
            }
        };
        out.reserve(bundle.lines.len());
        for (i, line) in bundle.lines.iter().enumerate() {
            // `{event_id}/{i}`, without `format!`'s machinery: this runs per event
            let mut id = String::with_capacity(event_id.len() + 8);
            id.push_str(&event_id);
            id.push('/');
            id.push_str(itoa::Buffer::new().format(i));
            let payload = match &bundle.names {
                None => Payload::Json(line.payload.to_string()),
                Some(names) => Payload::Fields {
                    names: names.clone(),
                    line: line.payload.to_string(),
                },
            };
            out.push(StoredEvent {
                seq: line.seq,
                xid,
                event_id: id,
                event_type: event_type.clone(),
                source: source.clone(),
                occurred_at: line.occurred_at,
                recorded_at,
                payload,
                damaged: None,
            });
        }
    }
    Ok(out)
}

/// Why a bundle cannot be read as its events, and how many it says it holds (what
/// the log's counts and the loader's batches count it as).
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    pub why: String,
    pub events: u64,
}

/// The start of a damaged bundle's text, for the quarantine (the row stays in the log).
fn raw_text(r: &LogRow) -> String {
    let raw: Option<&[u8]> = r.try_get::<_, Option<&[u8]>>(8).ok().flatten();
    let raw = raw.unwrap_or_default();
    super::ingest::printable(&raw[..raw.len().min(4096)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn names(names: &[&str]) -> Arc<[String]> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn row(names: &Arc<[String]>, day: u32, fields: &[&str]) -> Row {
        let mut line = String::new();
        push_fields(&mut line, fields.iter().copied());
        Row {
            names: names.clone(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0).unwrap(),
            fields: line,
        }
    }

    fn read(text: &str) -> Result<Bundle<'_>, String> {
        let Lines(read) = Lines::from_sql(&Type::TEXT, text.as_bytes()).unwrap();
        read
    }

    #[test]
    fn lines_read_back_what_was_encoded() {
        let n = names(&["a", "b\tc"]);
        let rows = [row(&n, 3, &["x\ty\nz\\", ""]), row(&n, 1, &["2", "q"])];
        let e = encode("orders", "erp", &rows, &[41, 43], "orders.csv", 2);
        let bundle = read(&e.text).expect("readable");
        assert_eq!(bundle.names.as_deref(), Some(&n[..]));
        assert_eq!(bundle.lines.len(), 2);
        let lines = &bundle.lines;
        assert_eq!((lines[0].seq, lines[1].seq), (41, 43));
        assert_eq!(lines[1].occurred_at, rows[1].occurred_at);
        let json: Vec<String> = bundle.payloads().map(|p| p.json().into_owned()).collect();
        assert_eq!(
            json,
            [
                r#"{"a":"x\ty\nz\\","b\tc":null}"#,
                r#"{"a":"2","b\tc":"q"}"#
            ]
        );
        assert_eq!(e.occurred_at, rows[1].occurred_at, "the earliest time");
        assert!(e.summary.contains(r#""last_seq":43"#), "{}", e.summary);
    }

    #[test]
    fn the_id_is_the_content_not_the_places_or_the_ingestion_time() {
        let n = names(&["a"]);
        let rows = [row(&n, 3, &["1"]), row(&n, 4, &["2"])];
        let a = encode("t", "s", &rows, &[1, 2], "f.csv", 2);
        let b = encode("t", "s", &rows, &[7, 9], "g.csv", 2);
        assert_eq!(a.id, b.id);
        let changed = [row(&n, 3, &["1"]), row(&n, 4, &["3"])];
        assert_ne!(a.id, encode("t", "s", &changed, &[1, 2], "f.csv", 2).id);
        let renamed = names(&["b"]);
        let other = [row(&renamed, 3, &["1"]), row(&renamed, 4, &["2"])];
        assert_ne!(a.id, encode("t", "s", &other, &[1, 2], "f.csv", 2).id);
        assert_ne!(a.id, encode("u", "s", &rows, &[1, 2], "f.csv", 2).id);
        // a run again the next day: rows without a time field get another time
        let rerun = [row(&n, 5, &["1"]), row(&n, 5, &["2"])];
        assert_eq!(a.id, encode("t", "s", &rerun, &[1, 2], "f.csv", 2).id);
    }

    #[test]
    fn a_bundle_of_the_json_format_still_reads() {
        // what ingest stored before the fields format: `seq, micros, JSON` per line
        let bundle = read("5\t0\t{\"a\":\"x\\ty\"}\n7\t1000000\t{\"a\":2}\n").expect("readable");
        assert_eq!(bundle.names, None);
        let json: Vec<_> = bundle.payloads().map(|p| p.json().into_owned()).collect();
        assert_eq!(json, [r#"{"a":"x\ty"}"#, r#"{"a":2}"#]);
        assert_eq!(bundle.lines[1].occurred_at.timestamp(), 1);
    }

    #[test]
    fn times_before_2000_keep_the_microsecond_postgresql_stores() {
        // the driver sends microseconds since 2000 truncated towards 2000
        let t = DateTime::parse_from_rfc3339("1999-06-01T12:00:00.1234567Z")
            .unwrap()
            .to_utc();
        let back = DateTime::from_timestamp_micros(micros(t)).unwrap();
        assert_eq!(back.to_rfc3339(), "1999-06-01T12:00:00.123457+00:00");
        let t = DateTime::parse_from_rfc3339("2001-06-01T12:00:00.1234567Z")
            .unwrap()
            .to_utc();
        let back = DateTime::from_timestamp_micros(micros(t)).unwrap();
        assert_eq!(back.to_rfc3339(), "2001-06-01T12:00:00.123456+00:00");
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_it() {
        let err = read("1\t0\t{}\n2\tnoon\t{}\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(read("1\t0\n").is_err());
        let err = read("#fields\ta\tb\n1\t0\tx\ty\n2\tnoon\tx\n").unwrap_err();
        assert!(err.starts_with("line 3 is not"), "{err}");
        let lines = read("5\t0\t{}\n7\t0\t{}\n").expect("readable").lines;
        assert_eq!(damage(5, 2, &lines), None);
        assert!(
            damage(5, 3, &lines)
                .unwrap()
                .contains("2 lines for 3 events")
        );
        assert!(
            damage(4, 2, &lines)
                .unwrap()
                .contains("first line is at seq 5")
        );
        let back = read("5\t0\t{}\n5\t0\t{}\n").expect("readable").lines;
        assert!(
            damage(5, 2, &back)
                .unwrap()
                .contains("line 2 is not after line 1")
        );
    }

    proptest! {
        #[test]
        fn fields_read_back_as_written(values in prop::collection::vec("[a-z\\\\\t\n\r\"é]{0,12}", 1..5)) {
            let mut line = String::new();
            push_fields(&mut line, values.iter().map(String::as_str));
            prop_assert!(!line.contains(['\n', '\r']));
            let back: Vec<Option<String>> = split_fields(&line).map(|f| f.map(Cow::into_owned)).collect();
            let want: Vec<Option<String>> =
                values.iter().map(|v| Some(v.clone()).filter(|v| !v.is_empty())).collect();
            prop_assert_eq!(back, want);
        }
    }
}
