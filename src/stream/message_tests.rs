//! Kafka records into events without a broker: the three shapes told apart,
//! structured and binary mode agreeing, plain values given their attributes, and
//! the reason each bad record is refused.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn spec(plain: Option<Plain>) -> Spec {
    Spec {
        plain,
        max_bytes: 200,
        range: TimeRange::default(),
    }
}

fn clicks(time_field: Option<&str>, id_field: Option<&str>) -> Plain {
    Plain {
        event_type: "page_viewed".into(),
        source: "web".into(),
        time_field: time_field.map(String::from),
        id_field: id_field.map(String::from),
    }
}

fn convert(
    value: Option<&str>,
    hdrs: &BTreeMap<String, Vec<u8>>,
    spec: &Spec,
) -> Result<NewEvent, Refusal> {
    let msg = Message {
        topic: "clicks",
        partition: 1,
        offset: 42,
        value: value.map(str::as_bytes),
        headers: hdrs,
        timestamp: at("2026-10-05T04:00:00Z"),
    };
    to_event(&msg, spec, at("2026-12-01T00:00:00Z"))
}

const STRUCTURED: &str = r#"{"specversion":"1.0","type":"t","source":"s","id":"e1","time":"2026-01-02T03:04:05Z","data":{"a":1}}"#;

#[test]
fn the_three_shapes_are_told_apart() {
    let none = headers(&[]);
    assert_eq!(shape(&none, false), Shape::Structured);
    assert_eq!(shape(&none, true), Shape::Plain);
    let ce = headers(&[(
        "content-type",
        "application/cloudevents+json; charset=UTF-8",
    )]);
    assert_eq!(shape(&ce, true), Shape::Structured);
    let bin = headers(&[
        ("ce_specversion", "1.0"),
        ("content-type", "application/json"),
    ]);
    assert_eq!(shape(&bin, false), Shape::Binary);
    assert_eq!(shape(&bin, true), Shape::Binary);
}

#[test]
fn structured_and_binary_give_the_same_event() {
    let structured = convert(Some(STRUCTURED), &headers(&[]), &spec(None)).expect("structured");
    let bin = headers(&[
        ("ce_specversion", "1.0"),
        ("ce_type", "t"),
        ("ce_source", "s"),
        ("ce_id", "e1"),
        ("ce_time", "2026-01-02T03:04:05Z"),
        ("content-type", "application/json"),
        ("traceparent", "00-abc"),
    ]);
    let binary = convert(Some(r#"{"a":1}"#), &bin, &spec(None)).expect("binary");
    assert_eq!(structured, binary);
    assert_eq!(binary.payload, r#"{"a":1}"#);
    assert_eq!(binary.occurred_at, at("2026-01-02T03:04:05Z"));
    // the plain setting does not change a record with CloudEvents headers
    let plain = Some(clicks(None, None));
    assert_eq!(
        convert(Some(r#"{"a":1}"#), &bin, &spec(plain)).expect("binary"),
        binary
    );
}

#[test]
fn binary_mode_refusals_name_the_problem() {
    let base = [
        ("ce_specversion", "1.0"),
        ("ce_source", "s"),
        ("ce_id", "1"),
    ];
    let err = convert(Some("{}"), &headers(&base), &spec(None)).expect_err("no type");
    assert!(
        err.reason.contains("missing required attribute \"type\""),
        "{err:?}"
    );
    let mut xml = base.to_vec();
    xml.extend([("ce_type", "t"), ("content-type", "application/xml")]);
    let err = convert(Some("<a/>"), &headers(&xml), &spec(None)).expect_err("xml");
    assert!(err.reason.contains("JSON data only"), "{err:?}");
    assert!(
        err.raw.contains("ce_type=t") && err.raw.contains("<a/>"),
        "{err:?}"
    );
    let mut ok = base.to_vec();
    ok.push(("ce_type", "t"));
    let err = convert(Some("{oops"), &headers(&ok), &spec(None)).expect_err("not json");
    assert!(err.reason.contains("not JSON"), "{err:?}");
}

#[test]
fn plain_values_take_their_attributes_from_the_command_line() {
    let none = headers(&[]);
    let value = r#"{"event_type":"page_view","customer_id":"CUST_00042","timestamp":"2026-10-05T04:53:59"}"#;
    let e = convert(
        Some(value),
        &none,
        &spec(Some(clicks(Some("timestamp"), None))),
    )
    .expect("plain");
    assert_eq!(e.event_type, "page_viewed");
    assert_eq!(e.source, "web");
    assert_eq!(e.event_id, "clicks/1/42");
    assert_eq!(e.occurred_at, at("2026-10-05T04:53:59Z"));
    assert_eq!(e.payload, value);
    // no time field: the record's timestamp; an id field: its value
    let e = convert(
        Some(r#"{"click_id": 7, "x": 1}"#),
        &none,
        &spec(Some(clicks(None, Some("click_id")))),
    )
    .expect("plain");
    assert_eq!(e.event_id, "7");
    assert_eq!(e.occurred_at, at("2026-10-05T04:00:00Z"));
}

#[test]
fn bad_records_say_what_is_wrong() {
    let none = headers(&[]);
    let timed = spec(Some(clicks(Some("timestamp"), Some("id"))));
    let cases: [(Option<&str>, &Spec, &str); 11] = [
        (None, &timed, "no value (a tombstone)"),
        (
            Some("not json"),
            &timed,
            "must be a JSON object, got not json",
        ),
        (Some("[1]"), &timed, "must be a JSON object"),
        (Some("{\"id\":1,"), &timed, "invalid JSON"),
        (Some(r#"{"id":"a"}"#), &timed, "no field \"timestamp\""),
        (
            Some(r#"{"id":"a","timestamp":5}"#),
            &timed,
            "expected an ISO 8601 date or timestamp string",
        ),
        (
            Some(r#"{"id":"a","timestamp":"soon"}"#),
            &timed,
            "\"soon\" is not an ISO 8601",
        ),
        (
            Some(r#"{"id":"a","timestamp":"1800-01-01"}"#),
            &timed,
            "time field \"timestamp\": \"1800-01-01\" is outside the range",
        ),
        (
            Some(r#"{"id":[1],"timestamp":"2026-01-01"}"#),
            &timed,
            "id field \"id\": expected a string or a number",
        ),
        (
            Some(r#"{"id":"a","timestamp":"2026-01-01","t":"\u0000"}"#),
            &timed,
            "NUL",
        ),
        (
            Some(r#"{"specversion":"1.0","type":"t","source":"s"}"#),
            &spec(None),
            "missing required attribute \"data\"",
        ),
    ];
    for (value, spec, expected) in cases {
        let err = convert(value, &none, spec).expect_err(expected);
        assert!(err.reason.contains(expected), "{value:?}: {err:?}");
    }
    let long = format!(r#"{{"id":"{}","timestamp":"2026-01-01"}}"#, "x".repeat(180));
    let err = convert(Some(&long), &none, &timed).expect_err("oversized");
    assert!(
        err.reason.contains("more than the limit of 200 bytes"),
        "{err:?}"
    );
    let long_id = Spec {
        max_bytes: 10_000,
        ..timed.clone()
    };
    let err = convert(
        Some(&format!(
            r#"{{"id":"{}","timestamp":"2026-01-01"}}"#,
            "x".repeat(300)
        )),
        &none,
        &long_id,
    )
    .expect_err("long id");
    assert!(
        err.reason.contains("attribute \"id\" is 300 bytes long"),
        "{err:?}"
    );
    let err = convert(Some("\u{0}\u{ff}"), &none, &spec(None)).expect_err("json");
    assert!(err.reason.contains("invalid JSON"), "{err:?}");
}

#[test]
fn plain_settings_are_checked() {
    assert!(clicks(None, None).check().is_ok());
    let mut p = clicks(None, None);
    p.event_type = String::new();
    assert_eq!(p.check().expect_err("empty"), "--type must not be empty");
    p.event_type = "t".repeat(limits::MAX_TYPE_BYTES + 1);
    assert!(
        p.check()
            .expect_err("long")
            .starts_with("--type is 129 bytes")
    );
}
