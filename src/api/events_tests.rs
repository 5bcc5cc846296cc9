//! POST /events without a database: each body shape split into items, problems of
//! the whole body, and the content types accepted.

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

const GOOD: &str = r#"{"specversion":"1.0","type":"t","source":"s","id":"1","data":{}}"#;
const BAD: &str = r#"{"specversion":"1.0","source":"s","data":{}}"#;

fn summary(items: &[Result<Item, Rejection>]) -> Vec<Result<String, (u64, String)>> {
    items
        .iter()
        .map(|i| match i {
            Ok((_, e)) => Ok(e.event_id.clone()),
            Err(r) => Err((r.line, r.reason.clone())),
        })
        .collect()
}

#[test]
fn each_shape_splits_into_items() {
    let single = parse(GOOD.as_bytes(), Shape::Single, now(), &TimeRange::default()).expect("ok");
    assert_eq!(summary(&single), [Ok("1".to_string())]);

    let batch = format!("[{GOOD}, {BAD}]");
    let batch = parse(
        batch.as_bytes(),
        Shape::ObjectOrArray,
        now(),
        &TimeRange::default(),
    )
    .expect("ok");
    assert!(batch[0].is_ok());
    let Err(r) = &batch[1] else {
        panic!("the second item is bad")
    };
    assert_eq!(r.line, 2);
    assert!(r.reason.contains("\"type\""), "{}", r.reason);

    let lines = format!("{GOOD}\r\n\n{BAD}\n{{oops\n");
    let lines = parse(lines.as_bytes(), Shape::Lines, now(), &TimeRange::default()).expect("ok");
    let got: Vec<_> = summary(&lines)
        .into_iter()
        .map(|i| i.map_err(|(line, _)| line))
        .collect();
    assert_eq!(got, [Ok("1".to_string()), Err(3), Err(4)]);
}

#[test]
fn whole_body_problems_are_errors_not_items() {
    for (body, shape) in [
        ("", Shape::Single),
        ("  \n", Shape::Lines),
        ("[]", Shape::Batch),
        ("[1, ", Shape::Batch),
        ("{}", Shape::Batch),
    ] {
        let err = parse(body.as_bytes(), shape, now(), &TimeRange::default()).expect_err(body);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[test]
fn content_types() {
    let with = |ct: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
        shape(&h)
    };
    assert_eq!(
        with("application/cloudevents+json; charset=utf-8").ok(),
        Some(Shape::Single)
    );
    assert_eq!(with("Application/X-NDJSON").ok(), Some(Shape::Lines));
    assert_eq!(with("application/json").ok(), Some(Shape::ObjectOrArray));
    let err = with("text/csv").expect_err("unsupported");
    assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(shape(&HeaderMap::new()).is_err());
}
