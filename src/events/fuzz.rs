//! Property tests over the whole file → events path, in memory: whatever the bytes,
//! nothing panics and every line of input is accounted for, as an event or a
//! rejection. Cases are bounded so `cargo test` stays fast.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::Value as Json;

use postgres_types::{FromSql, Type};

use super::NewEvent;
use super::bundle::{Lines, push_fields};
use super::csv_rows::{Header, RowSpec};
use super::ingest::{Rejection, read_csv, read_ndjson};
use super::limits::TimeRange;
use crate::load::payload::Doc;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

type Item = Result<NewEvent, Rejection>;

fn run_csv(bytes: &[u8], time_field: Option<&str>) -> Result<Vec<Item>, String> {
    let spec = RowSpec {
        event_type: "t".into(),
        source: "s".into(),
        time_field: time_field.map(String::from),
    };
    let mut items = Vec::new();
    let range = TimeRange::default();
    // every row both ways: as an event stored alone and as a bundle's row, which the
    // loader must read as the same payload at the same time (or refuse the same way)
    let both = |header: &Header, fields: &[&[u8]]| {
        let event = header.event(fields, &spec, now(), &range);
        let row = header.row(fields, now(), &range);
        match (&event, &row) {
            (Ok(e), Ok(r)) => {
                let alone = Doc::parse(&e.payload).expect("the event's payload reads");
                assert_eq!(Ok(alone), Doc::fields(&r.names, &r.fields), "{e:?} {r:?}");
                let line = format!("1\t0\t{}", r.fields);
                let mut text = String::from("#fields\t");
                push_fields(&mut text, r.names.iter().map(String::as_str));
                text.push_str(&format!("\n{line}\n"));
                let Lines(Ok(bundle)) =
                    Lines::from_sql(&Type::TEXT, text.as_bytes()).expect("infallible")
                else {
                    panic!("a bundle of the row does not read: {text:?}");
                };
                let json: Vec<_> = bundle.payloads().map(|p| p.json().into_owned()).collect();
                assert_eq!(json, std::slice::from_ref(&e.payload));
                assert_eq!(e.occurred_at, r.occurred_at);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("an event and a bundle row disagree: {event:?} {row:?}"),
        }
        event
    };
    read_csv(bytes, &spec, both, |_, item, _| {
        items.push(item);
        true
    })?;
    Ok(items)
}

fn run_ndjson(bytes: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let read = read_ndjson(bytes, now(), &TimeRange::default(), |_, item, _| {
        items.push(item);
        true
    });
    assert!(read.is_ok(), "reading memory cannot fail");
    items
}

/// Physical lines: `\r\n`, `\n` and a lone `\r` each end one.
fn physical_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' | b'\r' => {
                lines.push(&bytes[start..i]);
                i += if bytes[i..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

fn breaks(text: &str) -> usize {
    physical_lines(text.as_bytes()).len().saturating_sub(1)
        + usize::from(text.ends_with(['\n', '\r']))
}

/// How many physical lines a CSV item spans.
fn span(item: &Item) -> usize {
    1 + match item {
        Ok(e) => match serde_json::from_str::<Json>(&e.payload) {
            Ok(Json::Object(fields)) => fields.values().filter_map(Json::as_str).map(breaks).sum(),
            other => panic!("payload is not an object: {other:?}"),
        },
        Err(r) => breaks(&r.raw),
    }
}

/// Every non-empty line after the header is in exactly one item. Events do not carry
/// their line, so they are placed in the first uncovered non-empty line.
fn assert_csv_accounted_for(bytes: &[u8], items: &[Item]) {
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let lines = physical_lines(body);
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let mut covered = vec![false; lines.len()];
    let mut next = first + 1;
    for item in items {
        while next < lines.len() && lines[next].is_empty() {
            next += 1;
        }
        let at = match item {
            Ok(_) => next,
            Err(r) => r.line as usize - 1,
        };
        assert_eq!(at, next, "item at line {} out of order: {item:?}", at + 1);
        let n = span(item);
        assert!(at + n <= lines.len(), "item runs past the end: {item:?}");
        for c in &mut covered[at..at + n] {
            assert!(!*c, "line covered twice");
            *c = true;
        }
        next = at + n;
    }
    for (i, l) in lines.iter().enumerate().skip(first + 1) {
        assert!(
            l.is_empty() || covered[i],
            "line {} ({:?}) is in no event and no rejection",
            i + 1,
            String::from_utf8_lossy(l)
        );
    }
}

/// A CSV field written by the rules: plain, or quoted with quotes doubled.
fn good_field() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-z0-9 ]{0,6}".prop_map(|v| (v.clone(), v)),
        "[a-z,\"\n\r ]{0,8}".prop_map(|v| (format!("\"{}\"", v.replace('"', "\"\"")), v)),
    ]
}

#[derive(Debug, Clone)]
enum CsvLine {
    Good(String, [String; 3]),
    Garbage(Vec<u8>),
}

fn csv_line(quotes_in_garbage: bool) -> impl Strategy<Value = CsvLine> {
    let garbage_byte = prop_oneof![
        Just(b','),
        Just(b'"'),
        Just(0u8),
        Just(0xffu8),
        Just(0xc3u8),
        Just(b' '),
        b'a'..=b'c',
    ]
    .prop_filter("quote-free", move |b| quotes_in_garbage || *b != b'"');
    prop_oneof![
        3 => (good_field(), good_field(), good_field()).prop_map(|(a, b, c)| {
            CsvLine::Good(format!("{},{},{}", a.0, b.0, c.0), [a.1, b.1, c.1])
        }),
        1 => prop::collection::vec(garbage_byte, 0..12).prop_map(CsvLine::Garbage),
    ]
}

fn terminator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

fn csv_file(quotes_in_garbage: bool) -> impl Strategy<Value = (Vec<u8>, Vec<CsvLine>)> {
    (
        any::<bool>(),
        prop::collection::vec((csv_line(quotes_in_garbage), terminator()), 0..16),
        any::<bool>(),
    )
        .prop_map(|(bom, lines, last_newline)| {
            let mut bytes = if bom {
                b"\xef\xbb\xbf".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend_from_slice(b"a,b,c\n");
            for (i, (line, end)) in lines.iter().enumerate() {
                match line {
                    CsvLine::Good(text, _) => bytes.extend_from_slice(text.as_bytes()),
                    CsvLine::Garbage(g) => bytes.extend_from_slice(g),
                }
                if last_newline || i + 1 < lines.len() {
                    bytes.extend_from_slice(end.as_bytes());
                }
            }
            (bytes, lines.into_iter().map(|(l, _)| l).collect())
        })
}

fn values(e: &NewEvent) -> Vec<Option<String>> {
    let v: Json = serde_json::from_str(&e.payload).unwrap_or(Json::Null);
    ["a", "b", "c"]
        .iter()
        .map(|k| v[k].as_str().map(String::from))
        .collect()
}

/// A CloudEvent line, valid by construction.
fn good_event() -> impl Strategy<Value = (String, String)> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        (-1e300f64..1e300).prop_map(Json::from),
        "[^\u{0}]{0,6}".prop_map(Json::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    });
    (
        "[a-z_]{1,8}",
        "[a-zA-Z0-9-]{1,12}",
        prop::collection::btree_map("[a-z]{1,4}", value, 0..5),
    )
        .prop_map(|(ty, id, data)| {
            let data = Json::Object(data.into_iter().collect());
            let line = serde_json::json!({
                "specversion": "1.0", "type": ty, "source": "s", "id": id, "data": data,
            });
            (line.to_string(), id)
        })
}

#[derive(Debug, Clone)]
enum NdLine {
    Good(String, String),
    Other(Vec<u8>),
}

fn nd_line() -> impl Strategy<Value = NdLine> {
    let jsonish = prop::collection::vec(
        prop_oneof![
            prop::sample::select(b"{}[]\":,0123456789.eE-+tfnul\\ \t".to_vec()),
            Just(0xffu8),
            Just(0u8),
        ],
        0..40,
    );
    prop_oneof![
        2 => good_event().prop_map(|(l, id)| NdLine::Good(l, id)),
        2 => jsonish.prop_map(NdLine::Other),
        // a good event cut short or with a byte changed
        1 => (good_event(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|((l, _), at, b)| {
            let mut bytes = l.into_bytes();
            let i = at.index(bytes.len());
            if b % 2 == 0 {
                bytes.truncate(i);
            } else if b != b'\n' && b != b'\r' {
                bytes[i] = b;
            }
            NdLine::Other(bytes)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary rows, stray quotes included: no panic, every line accounted for.
    #[test]
    fn csv_every_line_is_an_event_or_a_rejection((bytes, _) in csv_file(true), time in any::<bool>()) {
        let items = run_csv(&bytes, time.then_some("c")).expect("the header is fine");
        assert_csv_accounted_for(&bytes, &items);
    }

    /// With quote-free garbage, every good row is an event with exactly its values.
    #[test]
    fn csv_good_rows_around_bad_ones_are_kept((bytes, lines) in csv_file(false)) {
        let items = run_csv(&bytes, None).expect("the header is fine");
        assert_csv_accounted_for(&bytes, &items);
        let events: Vec<Vec<Option<String>>> =
            items.iter().filter_map(|i| i.as_ref().ok()).map(values).collect();
        let mut found = events.iter();
        for line in &lines {
            if let CsvLine::Good(_, want) = line {
                let want: Vec<Option<String>> = want
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.clone()))
                    .collect();
                prop_assert!(found.any(|e| *e == want), "lost {want:?} in {events:?}");
            }
        }
    }

    /// Arbitrary bytes after the header: no panic.
    #[test]
    fn csv_arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = b"a,b,c\n".to_vec();
        bytes.extend_from_slice(&body);
        let items = run_csv(&bytes, None).expect("the header is fine");
        assert_csv_accounted_for(&bytes, &items);
        let _ = run_csv(&body, Some("a"));
    }

    /// Every non-blank line is one item, at its line; every good event is stored.
    #[test]
    fn ndjson_every_line_is_an_event_or_a_rejection(
        bom in any::<bool>(),
        lines in prop::collection::vec((nd_line(), terminator()), 0..16),
        last_newline in any::<bool>(),
    ) {
        let mut bytes = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
        for (i, (line, end)) in lines.iter().enumerate() {
            match line {
                NdLine::Good(text, _) => bytes.extend_from_slice(text.as_bytes()),
                NdLine::Other(b) => bytes.extend_from_slice(b),
            }
            if last_newline || i + 1 < lines.len() {
                bytes.extend_from_slice(end.as_bytes());
            }
        }
        let items = run_ndjson(&bytes);
        let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
        let physical = physical_lines(body);
        let non_blank: Vec<u64> = physical
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        prop_assert_eq!(items.len(), non_blank.len());
        let good: std::collections::HashMap<&[u8], &str> = lines
            .iter()
            .filter_map(|(l, _)| match l {
                NdLine::Good(text, id) => Some((text.as_bytes(), id.as_str())),
                NdLine::Other(_) => None,
            })
            .collect();
        for (item, at) in items.iter().zip(&non_blank) {
            if let Err(r) = item {
                prop_assert_eq!(r.line, *at);
            }
            let text = physical[*at as usize - 1];
            if let Some(id) = good.get(text) {
                match item {
                    Ok(e) => prop_assert_eq!(&e.event_id, id),
                    Err(r) => prop_assert!(false, "good line {at} refused: {}", r.reason),
                }
            }
        }
    }

    /// Arbitrary bytes: no panic, and no more items than lines.
    #[test]
    fn ndjson_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let items = run_ndjson(&bytes);
        prop_assert!(items.len() <= physical_lines(&bytes).len());
    }
}
