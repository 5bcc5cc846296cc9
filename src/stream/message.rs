//! One Kafka record as an event. Three shapes, told apart per record: CloudEvents in
//! Kafka's protocol binding, binary mode (`ce_*` headers, the value is the data) and
//! structured mode (`content-type: application/cloudevents+json`, the value is the
//! whole event), and plain JSON values whose type and source come from the command
//! line (like a CSV file's rows). Every shape is turned into the text of a structured
//! CloudEvent and validated by [`cloudevents::parse_within`], as a line of NDJSON is:
//! one set of rules and messages for every way into the log. Pure functions, no I/O.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;

use crate::events::NewEvent;
use crate::events::cloudevents::{self, preview};
use crate::events::csv_rows::parse_time;
use crate::events::ingest::printable;
use crate::events::limits::{self, TimeRange};

/// Kafka's default largest record (`message.max.bytes`, about 1 MB): larger values are
/// quarantined (`--max-message-bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// How much of a refused value `event_log.rejected.raw` keeps when the value itself
/// is the problem (larger than the limit).
const RAW_KEPT: usize = 1024;

/// What a plain JSON value is, given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    pub event_type: String,
    pub source: String,
    /// Top-level field with the business time (ISO 8601); `None`: the record's timestamp.
    pub time_field: Option<String>,
    /// Top-level field with the event id; `None`: `topic/partition/offset`.
    pub id_field: Option<String>,
}

impl Plain {
    /// `--type` and `--source` within their limits (every event would carry them).
    pub fn check(&self) -> Result<(), String> {
        for (flag, value, limit) in [
            ("--type", &self.event_type, limits::MAX_TYPE_BYTES),
            ("--source", &self.source, limits::MAX_SOURCE_BYTES),
        ] {
            if value.is_empty() {
                return Err(format!("{flag} must not be empty"));
            }
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

/// How to read the records of one `dvault stream`.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Records with no CloudEvents header are plain JSON values of this kind; `None`:
    /// they must be structured CloudEvents (with or without a `content-type` header).
    pub plain: Option<Plain>,
    /// Larger values are quarantined.
    pub max_bytes: usize,
    pub range: TimeRange,
}

/// One record as fetched.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<&'a [u8]>,
    pub headers: &'a BTreeMap<String, Vec<u8>>,
    /// The record's timestamp (producer's create time, or the broker's append time).
    pub timestamp: DateTime<Utc>,
}

/// Which of the three shapes a record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `ce_*` headers: attributes in headers, data in the value.
    Binary,
    /// The value is a CloudEvent in JSON.
    Structured,
    /// The value is the data; attributes from [`Plain`].
    Plain,
}

/// A record that cannot become an event: why, and the input as text for
/// `event_log.rejected.raw`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub raw: String,
}

/// The binding's header for the content type.
const CONTENT_TYPE: &str = "content-type";
/// The binding's prefix of attribute headers.
const CE_PREFIX: &str = "ce_";

fn header<'a>(headers: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The record's shape: `ce_specversion` makes it binary mode (the binding's rule); a
/// `content-type` of `application/cloudevents+json` structured; otherwise plain JSON
/// when `--type` is given, else structured (producers often leave the header out).
pub fn shape(headers: &BTreeMap<String, Vec<u8>>, plain: bool) -> Shape {
    if header(headers, "ce_specversion").is_some() {
        return Shape::Binary;
    }
    let structured = header(headers, CONTENT_TYPE).is_some_and(|v| {
        v.len() >= 28 && v[..28].eq_ignore_ascii_case(b"application/cloudevents+json")
    });
    match (structured, plain) {
        (false, true) => Shape::Plain,
        _ => Shape::Structured,
    }
}

/// The event a record holds, or why it holds none. `now` stands in for the business
/// time of an event without one when the record's timestamp is outside the range.
pub fn to_event(msg: &Message<'_>, spec: &Spec, now: DateTime<Utc>) -> Result<NewEvent, Refusal> {
    let Some(value) = msg.value else {
        return Err(Refusal {
            reason: "the record has no value (a tombstone): no event".into(),
            raw: String::new(),
        });
    };
    if value.len() > spec.max_bytes {
        let kept = &value[..RAW_KEPT.min(value.len())];
        return Err(Refusal {
            reason: format!(
                "the value is {} bytes, more than the limit of {} bytes (--max-message-bytes)",
                value.len(),
                spec.max_bytes
            ),
            raw: format!("{}... ({} bytes)", printable(kept), value.len()),
        });
    }
    // a record without its own time gets the record's: what a replay reads again
    let received_at = if spec.range.contains(msg.timestamp) {
        msg.timestamp
    } else {
        now
    };
    let refuse = |reason: String, raw: String| Refusal { reason, raw };
    let text = match shape(msg.headers, spec.plain.is_some()) {
        Shape::Binary => binary(msg.headers, value).map_err(|reason| {
            let raw = format!("{} {}", show_headers(msg.headers), printable(value));
            refuse(reason, raw)
        })?,
        Shape::Structured => utf8(value)
            .map_err(|r| refuse(r, printable(value)))?
            .to_string(),
        Shape::Plain => {
            let plain = spec.plain.as_ref().ok_or_else(|| {
                refuse("no --type for a plain JSON value".into(), printable(value))
            })?;
            plain_event(msg, value, plain, &spec.range).map_err(|r| refuse(r, printable(value)))?
        }
    };
    cloudevents::parse_within(&text, received_at, &spec.range).map_err(|reason| Refusal {
        reason,
        raw: text.clone(),
    })
}

fn utf8(value: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(value).map_err(|e| {
        format!(
            "the value is not UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        )
    })
}

/// Binary mode: the `ce_*` headers (prefix removed) are the attributes, the value is
/// the data, which dvault keeps as JSON only.
fn binary(headers: &BTreeMap<String, Vec<u8>>, value: &[u8]) -> Result<String, String> {
    let mut attributes = Vec::new();
    for (name, raw) in headers {
        let lower = name.to_ascii_lowercase();
        let attribute = match lower.strip_prefix(CE_PREFIX) {
            Some(a) => a.to_string(),
            None if lower == CONTENT_TYPE => "datacontenttype".to_string(),
            None => continue,
        };
        let text = std::str::from_utf8(raw)
            .map_err(|_| format!("binary mode: header \"{name}\" is not UTF-8"))?;
        attributes.push((attribute, text.to_string()));
    }
    if let Some((_, ct)) = attributes.iter().find(|(a, _)| a == "datacontenttype") {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        let json = essence.eq_ignore_ascii_case("application/json")
            || essence.eq_ignore_ascii_case("text/json")
            || essence.to_ascii_lowercase().ends_with("+json");
        if !json {
            return Err(format!(
                "binary mode: the data's content type is \"{}\"; dvault stores JSON data only",
                preview(ct)
            ));
        }
    }
    cloudevents::structured_from_binary(&attributes, value)
}

/// A plain JSON value as a structured CloudEvent: type and source from the command
/// line, time and id from the named fields (else the record's timestamp and its
/// place, `topic/partition/offset`, which a replay of the same record gives again).
fn plain_event(
    msg: &Message<'_>,
    value: &[u8],
    plain: &Plain,
    range: &TimeRange,
) -> Result<String, String> {
    let text = utf8(value)?;
    let fields: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| {
        if text.trim_start().starts_with('{') {
            format!("invalid JSON: {e}")
        } else {
            format!(
                "the value must be a JSON object, got {}",
                preview(text.trim())
            )
        }
    })?;
    let field = |name: &str| -> Result<&RawValue, String> {
        fields
            .get(name)
            .copied()
            .filter(|v| v.get() != "null")
            .ok_or_else(|| format!("the value has no field \"{name}\""))
    };
    let time = match &plain.time_field {
        Some(name) => {
            let what = format!("time field \"{name}\"");
            let raw = field(name)?;
            let t: String = serde_json::from_str(raw.get()).map_err(|_| {
                format!(
                    "{what}: expected an ISO 8601 date or timestamp string, got {}",
                    preview(raw.get())
                )
            })?;
            let at = parse_time(&t).ok_or_else(|| {
                format!(
                    "{what}: \"{}\" is not an ISO 8601 date or timestamp",
                    preview(&t)
                )
            })?;
            range.check(&what, &t, at)?;
            Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
        None => None,
    };
    let id = match &plain.id_field {
        Some(name) => {
            let raw = field(name)?;
            match serde_json::from_str::<serde_json::Value>(raw.get()) {
                Ok(serde_json::Value::String(s)) if !s.is_empty() => s,
                Ok(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(format!(
                        "id field \"{name}\": expected a string or a number, got {}",
                        preview(raw.get())
                    ));
                }
            }
        }
        None => format!("{}/{}/{}", msg.topic, msg.partition, msg.offset),
    };
    let mut envelope = serde_json::Map::new();
    envelope.insert("specversion".into(), "1.0".into());
    envelope.insert("type".into(), plain.event_type.clone().into());
    envelope.insert("source".into(), plain.source.clone().into());
    envelope.insert("id".into(), id.into());
    if let Some(time) = time {
        envelope.insert("time".into(), time.into());
    }
    let mut out = serde_json::Value::Object(envelope).to_string();
    out.pop(); // the closing brace
    out.push_str(",\"data\":");
    out.push_str(text.trim());
    out.push('}');
    Ok(out)
}

/// The headers of a record, for a rejection's `raw`.
fn show_headers(headers: &BTreeMap<String, Vec<u8>>) -> String {
    let shown: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k}={}", printable(v)))
        .collect();
    format!("[{}]", shown.join(", "))
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
