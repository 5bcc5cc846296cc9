//! CloudEvents 1.0 in JSON: one event per object. Pure functions, no I/O.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::NewEvent;
use super::limits::{self, TimeRange};

/// The attributes dvault reads; extension attributes are allowed and ignored. An
/// attribute given as `null` is kept (as the text `null`), so the error can say so.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    specversion: Option<&'a RawValue>,
    #[serde(rename = "type")]
    #[serde(borrow, default, deserialize_with = "present")]
    ty: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    source: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    time: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// An attribute that is there, `null` included (`Option` alone reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parse one CloudEvent from JSON text, with the default range of business times.
/// `received_at` stands in for a missing `time`. The error names what is wrong, for
/// `event_log.rejected`.
pub fn parse(text: &str, received_at: DateTime<Utc>) -> Result<NewEvent, String> {
    parse_within(text, received_at, &TimeRange::default())
}

/// [`parse`], refusing a `time` outside `range` and attributes over their limits
/// (see [`limits`]).
pub fn parse_within(
    text: &str,
    received_at: DateTime<Utc>,
    range: &TimeRange,
) -> Result<NewEvent, String> {
    check_depth(text)?;
    let value: &RawValue = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.get().starts_with('{') {
        return Err("not a CloudEvent: expected a JSON object".into());
    }
    let env: Envelope<'_> =
        serde_json::from_str(value.get()).map_err(|e| format!("invalid JSON: {e}"))?;
    from_envelope(env, received_at, range)
}

/// CloudEvents' HTTP binary mode: the attributes came as `ce-*` headers (names
/// without the prefix, values already percent-decoded), the data as the body. Gives
/// the same event in structured mode (JSON text), for [`parse_within`] to validate
/// like any other; the error says why the body cannot be an event's data.
pub fn structured_from_binary(
    attributes: &[(String, String)],
    data: &[u8],
) -> Result<String, String> {
    let mut envelope = serde_json::Map::new();
    for (name, value) in attributes {
        envelope.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    let text = std::str::from_utf8(data).map_err(|e| {
        format!(
            "binary mode: the body (the event's data) is not UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let mut out = serde_json::Value::Object(envelope).to_string();
    if !text.trim().is_empty() {
        check_depth(text)?;
        let data: &RawValue = serde_json::from_str(text)
            .map_err(|e| format!("binary mode: the body (the event's data) is not JSON: {e}"))?;
        out.pop(); // the closing brace
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str("\"data\":");
        out.push_str(data.get());
        out.push('}');
    }
    Ok(out)
}

fn string_attr(
    name: &str,
    raw: Option<&RawValue>,
    required: bool,
) -> Result<Option<String>, String> {
    let Some(raw) = raw else {
        return if required {
            Err(format!(
                "not a CloudEvent: missing required attribute \"{name}\""
            ))
        } else {
            Ok(None)
        };
    };
    if raw.get() == "null" && !required {
        return Ok(None);
    }
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) if s.is_empty() && required => Err(format!(
            "not a CloudEvent: attribute \"{name}\" must not be empty"
        )),
        Ok(s) if s.contains('\0') => Err(format!("attribute \"{name}\" contains a NUL character")),
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(format!(
            "not a CloudEvent: attribute \"{name}\" must be a string, got {}",
            preview(raw.get())
        )),
    }
}

fn from_envelope(
    env: Envelope<'_>,
    received_at: DateTime<Utc>,
    range: &TimeRange,
) -> Result<NewEvent, String> {
    let spec = string_attr("specversion", env.specversion, true)?.unwrap_or_default();
    if spec != "1.0" {
        return Err(format!(
            "not a CloudEvent: specversion must be \"1.0\", got \"{spec}\""
        ));
    }
    let event_type = string_attr("type", env.ty, true)?.unwrap_or_default();
    let source = string_attr("source", env.source, true)?.unwrap_or_default();
    limits::check_attribute("type", &event_type, limits::MAX_TYPE_BYTES)?;
    limits::check_attribute("source", &source, limits::MAX_SOURCE_BYTES)?;
    let time_text = string_attr("time", env.time, false)?;
    let occurred_at = match &time_text {
        Some(t) => {
            let at = DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    format!(
                        "attribute \"time\": \"{}\" is not an RFC 3339 timestamp ({e})",
                        preview(t)
                    )
                })?
                .with_timezone(&Utc);
            range.check("attribute \"time\"", t, at)?;
            at
        }
        None => received_at,
    };
    let data = env
        .data
        .ok_or_else(|| "missing required attribute \"data\" (the event payload)".to_string())?;
    if !data.get().starts_with('{') {
        return Err(format!(
            "attribute \"data\" must be a JSON object, got {}",
            preview(data.get())
        ));
    }
    check_escapes(data.get())?;
    let payload = data.get().to_string();
    let event_id = match string_attr("id", env.id, false)? {
        Some(id) if !id.is_empty() => id,
        _ => NewEvent::derive_id(&event_type, &source, time_text.as_deref(), &payload),
    };
    limits::check_attribute("id", &event_id, limits::MAX_ID_BYTES)?;
    Ok(NewEvent {
        event_id,
        event_type,
        source,
        occurred_at,
        payload,
    })
}

/// Refuse `\u` escapes PostgreSQL's `->>` and `jsonb` (and the loader's JSON parser)
/// cannot read back: NUL (`\u0000`) and a UTF-16 surrogate without its pair. The
/// `json` column would store them, and the event would fail later, far from here.
/// An escaped backslash followed by `u0000` is text, not an escape.
fn check_escapes(json: &str) -> Result<(), String> {
    let b = json.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = b.get(at..at + 6)?.strip_prefix(b"\\u")?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0) => {
                return Err("attribute \"data\" contains a NUL character (\\u0000)".into());
            }
            Some(hi @ 0xd800..=0xdbff) => match unit(i + 6) {
                Some(0xdc00..=0xdfff) => i += 12,
                _ => {
                    return Err(format!(
                        "attribute \"data\" contains \\u{hi:04x}, half a UTF-16 surrogate pair without its other half"
                    ));
                }
            },
            Some(lo @ 0xdc00..=0xdfff) => {
                return Err(format!(
                    "attribute \"data\" contains \\u{lo:04x}, half a UTF-16 surrogate pair without its other half"
                ));
            }
            _ => i += 2,
        }
    }
    Ok(())
}

/// Deepest nesting accepted in an event. Deeper documents are refused here, before
/// serde or PostgreSQL's JSON parser would give up on them.
pub const MAX_DEPTH: usize = 64;

/// Refuse JSON nested deeper than [`MAX_DEPTH`] (a linear scan, strings skipped).
fn check_depth(text: &str) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "JSON nested deeper than {MAX_DEPTH} levels: refused"
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The start of a JSON value, for messages.
pub fn preview(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_full_event_parses() {
        let e = parse(
            r#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"e1",
               "time":"2024-01-20T12:00:00+02:00","data":{"customer_id":"C1"},"ext":"x"}"#,
            now(),
        )
        .expect("valid event");
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_type, "customer_registered");
        assert_eq!(e.source, "crm");
        assert_eq!(e.occurred_at.to_rfc3339(), "2024-01-20T10:00:00+00:00");
        assert_eq!(e.payload, r#"{"customer_id":"C1"}"#);
    }

    #[test]
    fn missing_id_and_time_are_derived() {
        let line = r#"{"specversion":"1.0","type":"t","source":"s","data":{"a":1}}"#;
        let a = parse(line, now()).expect("valid");
        let b = parse(line, now()).expect("valid");
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id.len(), 32);
        assert_eq!(a.occurred_at, now());
        let nulls =
            r#"{"specversion":"1.0","type":"t","source":"s","id":null,"time":null,"data":{"a":1}}"#;
        assert_eq!(parse(nulls, now()).expect("null id and time"), a);
    }

    #[test]
    fn escapes_postgres_cannot_read_back_are_refused() {
        let text =
            r#"{"specversion":"1.0","type":"t","source":"s","data":{"path":"C:\\u0000\\\\u0000"}}"#;
        assert!(parse(text, now()).is_ok());
        let nul = r#"{"specversion":"1.0","type":"t","source":"s","data":{"path":"\\\u0000"}}"#;
        assert!(reason(nul).contains("NUL"));
        let emoji =
            r#"{"specversion":"1.0","type":"t","source":"s","data":{"e":"\ud83d\ude00\\ud800"}}"#;
        assert!(parse(emoji, now()).is_ok());
        for lone in [
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00\ud83d""#,
            r#""x\uDBFF""#,
        ] {
            let line =
                format!(r#"{{"specversion":"1.0","type":"t","source":"s","data":{{"e":{lone}}}}}"#);
            assert!(
                reason(&line).contains("half a UTF-16 surrogate pair"),
                "{lone}"
            );
        }
    }

    fn reason(line: &str) -> String {
        match parse(line, now()) {
            Ok(_) => panic!("accepted a bad event: {}", preview(line)),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        let cases = [
            ("{not json", "invalid JSON"),
            ("[1,2]", "expected a JSON object"),
            (
                r#"{"type":"t","source":"s","data":{}}"#,
                "missing required attribute \"specversion\"",
            ),
            (
                r#"{"specversion":"0.3","type":"t","source":"s","data":{}}"#,
                "specversion must be \"1.0\"",
            ),
            (
                r#"{"specversion":"1.0","source":"s","data":{}}"#,
                "missing required attribute \"type\"",
            ),
            (
                r#"{"specversion":"1.0","type":"","source":"s","data":{}}"#,
                "\"type\" must not be empty",
            ),
            (
                r#"{"specversion":"1.0","type":7,"source":"s","data":{}}"#,
                "\"type\" must be a string",
            ),
            (
                r#"{"specversion":"1.0","type":"t","data":{}}"#,
                "missing required attribute \"source\"",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s"}"#,
                "missing required attribute \"data\"",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s","data":[1]}"#,
                "must be a JSON object",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s","data":null}"#,
                "\"data\" must be a JSON object, got null",
            ),
            (
                r#"{"specversion":"1.0","type":null,"source":"s","data":{}}"#,
                "\"type\" must be a string, got null",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s","time":"yesterday","data":{}}"#,
                "not an RFC 3339 timestamp",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s","data":{"a":"\u0000"}}"#,
                "NUL",
            ),
        ];
        for (line, expected) in cases {
            let err = reason(line);
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn binary_mode_is_the_structured_event() {
        let attrs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let full = attrs(&[
            ("specversion", "1.0"),
            ("type", "customer_registered"),
            ("source", "crm"),
            ("id", "e1"),
            ("time", "2024-01-20T12:00:00+02:00"),
        ]);
        let text = structured_from_binary(&full, br#" {"customer_id":"C1"} "#).expect("json");
        let structured = r#"{"specversion":"1.0","type":"customer_registered","source":"crm",
            "id":"e1","time":"2024-01-20T12:00:00+02:00","data":{"customer_id":"C1"}}"#;
        assert_eq!(
            parse(&text, now()).expect("binary"),
            parse(structured, now()).expect("structured")
        );
        // the same refusals as structured mode
        let no_type = attrs(&[("specversion", "1.0"), ("source", "crm")]);
        let text = structured_from_binary(&no_type, b"{}").expect("json");
        assert!(reason(&text).contains("missing required attribute \"type\""));
        let text = structured_from_binary(&full, b"").expect("no data");
        assert!(reason(&text).contains("missing required attribute \"data\""));
        let text = structured_from_binary(&full, b"[1]").expect("json");
        assert!(reason(&text).contains("must be a JSON object"));
        let err = structured_from_binary(&full, b"{oops").expect_err("not json");
        assert!(err.contains("not JSON"), "{err}");
        let err = structured_from_binary(&full, b"\xff").expect_err("not utf-8");
        assert!(err.contains("not UTF-8"), "{err}");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = structured_from_binary(&full, deep.as_bytes()).expect_err("deep");
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_crash() {
        let deep = format!(
            r#"{{"specversion":"1.0","type":"t","source":"s","data":{{"a":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let err = reason(&deep);
        assert!(err.contains("nested deeper than 64"), "{err}");
        let ok = format!(
            r#"{{"specversion":"1.0","type":"t","source":"s","data":{{"a":{}1{},"s":"[[[[\\"}}}}"#,
            "[".repeat(60),
            "]".repeat(60)
        );
        assert!(
            parse(&ok, now()).is_ok(),
            "60 levels and brackets in strings are fine"
        );
    }
}
