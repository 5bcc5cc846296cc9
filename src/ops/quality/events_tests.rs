//! The event checks without a database: array fields counted per element,
//! duplicates per batch, types, domains and unknown event types.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn run(events: &[(&str, &str, &str)]) -> Vec<CheckResult> {
    let config = QualityConfig::default();
    let m = Mappings::builtin().expect("mappings");
    let mut checks = EventChecks::new(&config, &m);
    for (ty, recorded, payload) in events {
        checks.observe(Observed {
            event_type: ty,
            source: "test",
            recorded_at: at(recorded),
            payload: PayloadRef::Json(payload),
        });
    }
    checks.results()
}

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";

#[test]
fn array_fields_count_per_element() {
    let order = r#"{"order_id":"O1","customer_id":"C1","ordered_at":"2024-05-01T10:00:00Z",
            "lines":[{"product_id":"P1","quantity":1,"unit_price":2},{"product_id":" ","quantity":1,"unit_price":2}]}"#;
    let r = run(&[("order_placed", T1, order)]);
    assert_eq!(r[0].check, Check::Completeness);
    assert_eq!(
        r[0].worst.as_deref(),
        Some("order_placed.lines[].product_id")
    );
    assert_eq!(r[0].measured, Some(0.5));
    assert!(!r[0].passed);
}

#[test]
fn duplicates_count_per_batch_not_across_batches() {
    let c = r#"{"customer_id":"c1"}"#;
    let c_again = r#"{"customer_id":" C1 "}"#;
    // the same key in two batches: fine
    let r = run(&[
        ("customer_registered", T1, c),
        ("customer_registered", T2, c),
    ]);
    assert!(r[1].passed, "{:?}", r[1]);
    assert_eq!(r[1].measured, Some(1.0));
    // twice in one batch (after trimming and upper-casing): not fine
    let r = run(&[
        ("customer_registered", T1, c),
        ("customer_registered", T1, c_again),
    ]);
    assert!(!r[1].passed);
    assert_eq!(r[1].measured, Some(0.5));
    assert_eq!(r[1].failing, 1);
}

#[test]
fn types_domains_and_unknown_event_types_are_checked() {
    let ok = r#"{"order_id":"O1","status":"shipped"}"#;
    let bad = r#"{"order_id":"O1","status":"lost"}"#;
    let r = run(&[("order_status_changed", T1, ok)]);
    assert!(r[2].passed);
    let r = run(&[
        ("order_status_changed", T1, ok),
        ("order_status_changed", T1, bad),
    ]);
    assert!(!r[2].passed);
    assert!(
        r[2].detail.contains("\"lost\" is not one of"),
        "{}",
        r[2].detail
    );
    let r = run(&[("mystery", T1, "{}")]);
    assert!(
        r[2].detail.contains("no mapping for event type"),
        "{}",
        r[2].detail
    );
    let d = Domain {
        min: Some(1.0),
        ..Domain::default()
    };
    assert!(admits(&d, &Value::Int(0)).is_err());
    assert!(admits(&d, &Value::Int(1)).is_ok());
}
