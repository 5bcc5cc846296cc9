//! Bundles: many events of one flat file in one log row (`dvault ingest --bundle`).
//!
//! A warehouse feed is millions of rows, and one log row per row costs a heap tuple,
//! three index entries, a JSON validation and their WAL each: more than the rest of
//! the load. A bundle stores up to [`ROWS`] events of one CSV file (one type, one
//! source) as lines of text in one row (`event_log.events.bundle`, compressed out of
//! line by TOAST), so the log's per-row costs are paid once per bundle.
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

use std::error::Error;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use postgres_types::{FromSql, Type};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use super::{NewEvent, RawJson, StoredEvent, Xid8};

/// Events per bundle: big enough that a bundle's row costs nothing per event, small
/// enough that a bundle is a fraction of a load batch.
pub const ROWS: usize = 10_000;

/// A bundle is closed earlier once its payloads hold this many bytes: a value must
/// stay far below PostgreSQL's 1 GB, and every reader holds a bundle whole (rows of
/// 3 KB or more make bundles of fewer than 10,000 events).
pub const MAX_BYTES: usize = 32 << 20;

/// The events of a bundle as the log stores them.
#[derive(Debug)]
pub struct Encoded {
    /// Unique per source like every event id: a digest of the events' type, source
    /// and ids (the ids of a file's rows are digests of their content; not of their
    /// `seq`s or times, which differ each time a file is ingested without a time
    /// field), so the same rows make the same bundle.
    pub id: String,
    pub text: String,
    /// The earliest business time of its events (the row's `occurred_at`).
    pub occurred_at: DateTime<Utc>,
    /// A small JSON object describing it (the row's `payload`).
    pub summary: String,
}

/// Encode `events` (of one type and source, at least one) at the places `seqs`.
///
/// Each line is `seq`, a tab, the business time in microseconds since 1970 (UTC), a
/// tab and the payload: JSON text from the ingest's own encoder, in which a tab or a
/// line break can only appear escaped.
pub fn encode(events: &[NewEvent], seqs: &[i64], file: &str, first_line: u64) -> Encoded {
    let mut text = String::with_capacity(events.iter().map(|e| e.payload.len() + 28).sum());
    let mut id = Sha256::new();
    for part in [&events[0].event_type, &events[0].source] {
        id.update(part.as_bytes());
        id.update([0x1f]);
    }
    let mut occurred_at = events[0].occurred_at;
    for (e, seq) in events.iter().zip(seqs) {
        let micros = micros(e.occurred_at);
        occurred_at = occurred_at.min(e.occurred_at);
        let _ = write!(text, "{seq}\t{micros}\t");
        text.push_str(&e.payload);
        text.push('\n');
        // The event's id is already a digest of its type, source and payload: no
        // second pass over the payload. Not of its time, as for an event stored alone:
        // a time that is the ingestion time differs each run, and a run stopped half
        // way must make the same bundles again.
        id.update(e.event_id.as_bytes());
        id.update([0x1e]);
    }
    let summary = serde_json::json!({
        "bundle": {
            "events": events.len(),
            "file": file,
            "first_line": first_line,
            "last_seq": seqs.get(events.len() - 1),
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
    pub payload: &'a str,
}

/// A bundle's text read as its lines, or why it cannot be: as a column type it
/// never fails, so a damaged bundle is one event to quarantine ([`read_rows`]), never
/// an error that stops every reader at the same row, nor a panic or a skipped event.
#[derive(Debug)]
pub struct Lines<'a>(pub Result<Vec<Line<'a>>, String>);

impl<'a> FromSql<'a> for Lines<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let Ok(text) = std::str::from_utf8(raw) else {
            return Ok(Lines(Err("the bundle is not valid UTF-8".into())));
        };
        let mut lines = Vec::with_capacity(text.len() / 128);
        for (i, line) in text.lines().enumerate() {
            let Some(line) = parse_line(line) else {
                let shown: String = line.chars().take(80).collect();
                return Ok(Lines(Err(format!(
                    "line {} is not `seq<TAB>micros<TAB>payload`: {shown:?}",
                    i + 1
                ))));
            };
            lines.push(line);
        }
        Ok(Lines(Ok(lines)))
    }
    postgres_types::accepts!(TEXT);
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
pub fn read_rows(rows: &[Row]) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
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
            payload,
            damaged,
        };
        let Some(Lines(lines)) = r.try_get::<_, Option<Lines<'_>>>(8)? else {
            let payload = r.try_get::<_, RawJson<'_>>(7)?.0.to_string();
            out.push(one(payload, None));
            continue;
        };
        let size: i32 = r.try_get::<_, Option<i32>>(9)?.unwrap_or(0);
        let lines = match lines.and_then(|lines| match damage(seq, size, &lines) {
            None => Ok(lines),
            Some(why) => Err(why),
        }) {
            Ok(lines) => lines,
            Err(why) => {
                let events = size.max(1) as u64;
                out.push(one(raw_text(r), Some(Damaged { why, events })));
                continue;
            }
        };
        out.reserve(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            // `{event_id}/{i}`, without `format!`'s machinery: this runs per event
            let mut id = String::with_capacity(event_id.len() + 8);
            id.push_str(&event_id);
            id.push('/');
            id.push_str(itoa::Buffer::new().format(i));
            out.push(StoredEvent {
                seq: line.seq,
                xid,
                event_id: id,
                event_type: event_type.clone(),
                source: source.clone(),
                occurred_at: line.occurred_at,
                recorded_at,
                payload: line.payload.to_string(),
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
fn raw_text(r: &Row) -> String {
    let raw: Option<&[u8]> = r.try_get::<_, Option<&[u8]>>(8).ok().flatten();
    let raw = raw.unwrap_or_default();
    super::ingest::printable(&raw[..raw.len().min(4096)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(day: u32, payload: &str) -> NewEvent {
        NewEvent {
            event_id: NewEvent::derive_id("orders", "erp", None, payload),
            event_type: "orders".into(),
            source: "erp".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0).unwrap(),
            payload: payload.into(),
        }
    }

    #[test]
    fn lines_read_back_what_was_encoded() {
        let events = [event(3, r#"{"a":"x\ty\nz"}"#), event(1, r#"{"a":2}"#)];
        let e = encode(&events, &[41, 43], "orders.csv", 2);
        let Lines(Ok(lines)) = Lines::from_sql(&Type::TEXT, e.text.as_bytes()).unwrap() else {
            panic!("readable");
        };
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].seq, lines[1].seq), (41, 43));
        assert_eq!(lines[0].payload, events[0].payload);
        assert_eq!(lines[1].occurred_at, events[1].occurred_at);
        assert_eq!(e.occurred_at, events[1].occurred_at, "the earliest time");
        assert!(e.summary.contains(r#""last_seq":43"#), "{}", e.summary);
    }

    #[test]
    fn the_id_is_the_content_not_the_places_or_the_ingestion_time() {
        let events = [event(3, r#"{"a":1}"#), event(4, r#"{"a":2}"#)];
        let a = encode(&events, &[1, 2], "f.csv", 2);
        let b = encode(&events, &[7, 9], "g.csv", 2);
        assert_eq!(a.id, b.id);
        let changed = [event(3, r#"{"a":1}"#), event(4, r#"{"a":3}"#)];
        assert_ne!(a.id, encode(&changed, &[1, 2], "f.csv", 2).id);
        // a run again the next day: rows without a time field get another time
        let rerun = [event(5, r#"{"a":1}"#), event(5, r#"{"a":2}"#)];
        assert_eq!(a.id, encode(&rerun, &[1, 2], "f.csv", 2).id);
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
        let Lines(read) = Lines::from_sql(&Type::TEXT, b"1\t0\t{}\n2\tnoon\t{}\n").unwrap();
        let err = read.unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(Lines::from_sql(&Type::TEXT, b"1\t0\n").unwrap().0.is_err());
        let Lines(Ok(lines)) = Lines::from_sql(&Type::TEXT, b"5\t0\t{}\n7\t0\t{}\n").unwrap()
        else {
            panic!("readable");
        };
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
        let Lines(Ok(back)) = Lines::from_sql(&Type::TEXT, b"5\t0\t{}\n5\t0\t{}\n").unwrap() else {
            panic!("readable");
        };
        assert!(
            damage(5, 2, &back)
                .unwrap()
                .contains("line 2 is not after line 1")
        );
    }
}
