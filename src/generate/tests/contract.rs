//! What dvault makes of one line of `events.ndjson`: the CloudEvents envelope as
//! ingest parses it, and the payload contract of the loader's mappings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::{EVENTS_FILE, TempDir, file_counts, options, read_lines, run};
use crate::events::cloudevents;
use crate::generate::csv_files::CUSTOMER_COLUMNS;

/// What dvault would make of one NDJSON line.
pub(super) enum Verdict {
    Good(Event),
    RejectedAtIngest(String),
    /// A valid CloudEvent with a payload that breaks the contract.
    RejectedAtLoad(Event, String),
}

pub(super) struct Event {
    pub(super) ty: String,
    pub(super) source: String,
    pub(super) id: String,
    pub(super) time: DateTime<Utc>,
    pub(super) data: Value,
}

pub(super) fn judge(line: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(line) else {
        return Verdict::RejectedAtIngest("invalid UTF-8".into());
    };
    let parsed = match cloudevents::parse(text, Utc::now()) {
        Ok(e) => e,
        Err(reason) => return Verdict::RejectedAtIngest(reason),
    };
    let data: Value = serde_json::from_str(&parsed.payload).expect("payload is JSON");
    let event = Event {
        ty: parsed.event_type,
        source: parsed.source,
        id: parsed.event_id,
        time: parsed.occurred_at,
        data,
    };
    match check_payload(&event).and_then(|()| check_money(text)) {
        Ok(()) => Verdict::Good(event),
        Err(reason) => Verdict::RejectedAtLoad(event, reason),
    }
}

fn text<'a>(data: &'a Value, key: &str) -> Result<&'a str, String> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{key}: missing or not a string"))
}

fn same_time(data: &Value, key: &str, time: DateTime<Utc>) -> Result<(), String> {
    let at = DateTime::parse_from_rfc3339(text(data, key)?).map_err(|e| e.to_string())?;
    if at != time {
        return Err(format!("{key} differs from the event time"));
    }
    Ok(())
}

fn integer_in(
    data: &Value,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    data.get(key)
        .and_then(Value::as_u64)
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{key}: not an integer in {range:?}"))
}

fn number(data: &Value, key: &str) -> Result<f64, String> {
    data.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{key}: not a number"))
}

/// Updates carry the key and a non-empty subset of the allowed string fields.
fn subset(data: &Value, key: &str, fields: &[&str]) -> Result<(), String> {
    text(data, key)?;
    let object = data.as_object().ok_or("data is not an object")?;
    let others: Vec<&String> = object.keys().filter(|k| *k != key).collect();
    if others.is_empty() {
        return Err("an update that changes nothing".into());
    }
    for k in others {
        if k == "price" {
            number(data, k)?;
        } else if fields.contains(&k.as_str()) {
            text(data, k)?;
        } else {
            return Err(format!("unexpected field {k}"));
        }
    }
    Ok(())
}

/// The payload contract of the loader's mappings.
fn check_payload(e: &Event) -> Result<(), String> {
    let d = &e.data;
    let source = match e.ty.as_str() {
        "customer_registered" => {
            for key in CUSTOMER_COLUMNS {
                text(d, key)?;
            }
            NaiveDate::parse_from_str(text(d, "signup_date")?, "%Y-%m-%d")
                .map_err(|e| format!("signup_date: {e}"))?;
            "crm"
        }
        "customer_updated" => {
            let fields = [
                "first_name",
                "last_name",
                "email",
                "phone",
                "city",
                "country",
            ];
            subset(d, "customer_id", &fields)?;
            "crm"
        }
        "product_listed" => {
            for key in ["product_id", "name", "category", "brand"] {
                text(d, key)?;
            }
            number(d, "price")?;
            "catalog"
        }
        "product_updated" => {
            subset(d, "product_id", &["name", "category", "brand", "price"])?;
            "catalog"
        }
        "order_placed" => {
            text(d, "order_id")?;
            text(d, "customer_id")?;
            same_time(d, "ordered_at", e.time)?;
            if !["web", "mobile", "store"].contains(&text(d, "channel")?) {
                return Err("unknown channel".into());
            }
            if text(d, "status")? != "placed" {
                return Err("status is not placed".into());
            }
            let lines = d["lines"].as_array().ok_or("lines: not an array")?;
            if lines.is_empty() {
                return Err("no lines".into());
            }
            for (i, line) in lines.iter().enumerate() {
                let no = i as u64 + 1;
                integer_in(line, "line_no", no..=no)?;
                text(line, "product_id")?;
                integer_in(line, "quantity", 1..=5)?;
                number(line, "unit_price")?;
                number(line, "discount")?;
            }
            "shop"
        }
        "order_status_changed" => {
            text(d, "order_id")?;
            let statuses = ["paid", "shipped", "delivered", "cancelled", "returned"];
            if !statuses.contains(&text(d, "status")?) {
                return Err("unknown status".into());
            }
            "shop"
        }
        "product_viewed" => {
            for key in ["session_id", "customer_id", "product_id"] {
                text(d, key)?;
            }
            same_time(d, "viewed_at", e.time)?;
            "web"
        }
        other => return Err(format!("unknown type {other}")),
    };
    if e.source != source {
        return Err(format!("{} from source {}", e.ty, e.source));
    }
    Ok(())
}

/// Every amount is written with exactly two decimals.
fn check_money(line: &str) -> Result<(), String> {
    for key in ["\"price\":", "\"unit_price\":", "\"discount\":"] {
        for (at, _) in line.match_indices(key) {
            let value: String = line[at + key.len()..]
                .chars()
                .take_while(|c| *c != ',' && *c != '}')
                .collect();
            let two_decimals = value.split_once('.').is_some_and(|(units, cents)| {
                !units.is_empty()
                    && units.bytes().all(|b| b.is_ascii_digit())
                    && cents.len() == 2
                    && cents.bytes().all(|b| b.is_ascii_digit())
            });
            if !two_decimals {
                return Err(format!("{key} {value} is not an amount with two decimals"));
            }
        }
    }
    Ok(())
}

pub(super) fn good_events(path: &Path) -> Vec<Event> {
    read_lines(path)
        .iter()
        .map(|line| match judge(line) {
            Verdict::Good(e) => e,
            Verdict::RejectedAtIngest(r) | Verdict::RejectedAtLoad(_, r) => {
                panic!("{r}: {}", String::from_utf8_lossy(line))
            }
        })
        .collect()
}
#[test]
fn a_clean_run_follows_the_contract() {
    let dir = TempDir::new("clean");
    let summary = run(&options(&dir.0, 0.0));
    let events = good_events(&dir.0.join(EVENTS_FILE));
    let mut ids = BTreeSet::new();
    let mut types = BTreeMap::new();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.id, format!("gen-{}", n + 1));
        assert!(ids.insert(e.id.clone()));
        *types.entry(e.ty.as_str()).or_insert(0usize) += 1;
    }
    assert_eq!(types.len(), 7, "every event type occurs: {types:?}");
    // about 3 views per order
    let views = types["product_viewed"] as f64 / types["order_placed"] as f64;
    assert!((2.5..=3.5).contains(&views), "{views} views per order");
    // raw attributes as written
    for line in read_lines(&dir.0.join(EVENTS_FILE)).iter().take(50) {
        let v: Value = serde_json::from_slice(line).expect("JSON");
        assert_eq!(v["specversion"], "1.0");
        let time = v["time"].as_str().expect("time");
        assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
    }
    for file in &summary.files {
        assert_eq!(file.bad_at_ingest + file.bad_at_load, 0, "{file:?}");
    }
    assert_eq!(file_counts(&summary, EVENTS_FILE).good, events.len() as u64);
}
