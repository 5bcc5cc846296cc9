//! Broken lines: rejected at the stage the manifest announces, and without effect
//! on the good ones.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chrono::Utc;

use super::contract::{Event, Verdict, judge};
use super::{
    CUSTOMERS_FILE, EVENTS_FILE, PRODUCTS_FILE, TRANSACTIONS_FILE, TempDir, file_counts, options,
    read_lines, run,
};
use crate::events::csv_rows::{Header, RowSpec};

#[test]
fn broken_lines_are_rejected_where_announced() {
    let dir = TempDir::new("dirty");
    let opts = options(&dir.0, 0.1);
    let summary = run(&opts);
    let counts = file_counts(&summary, EVENTS_FILE);
    let (mut good, mut at_ingest, mut at_load) = (0u64, 0u64, 0u64);
    // every event that reaches the log has its own id, so none is deduplicated away
    let mut ids = BTreeSet::new();
    let mut unique_id = |e: Event| assert!(ids.insert((e.source, e.id)), "duplicate id");
    for line in read_lines(&dir.0.join(EVENTS_FILE)) {
        match judge(&line) {
            Verdict::Good(e) => {
                unique_id(e);
                good += 1;
            }
            Verdict::RejectedAtIngest(_) => at_ingest += 1,
            Verdict::RejectedAtLoad(e, _) => {
                unique_id(e);
                at_load += 1;
            }
        }
    }
    assert_eq!(good, counts.good);
    assert_eq!(at_ingest, counts.bad_at_ingest);
    assert_eq!(at_load, counts.bad_at_load);
    let broken = counts.bad_at_ingest + counts.bad_at_load;
    assert_eq!(broken, (counts.good as f64 * opts.dirty).floor() as u64);
    // the cycle of ten kinds: six for ingest, four for the loader
    assert!(broken >= 100);
    assert!(counts.bad_at_ingest.abs_diff(broken * 6 / 10) <= 1);

    let customers = file_counts(&summary, CUSTOMERS_FILE);
    let (good_rows, rejected_rows) = judge_customer_rows(&dir.0.join(CUSTOMERS_FILE));
    assert_eq!(good_rows, customers.good);
    assert_eq!(rejected_rows, customers.bad_at_ingest);
    assert_eq!(customers.good, opts.customers as u64);
    assert_eq!(
        customers.bad_at_ingest,
        (opts.customers as f64 * opts.dirty).floor() as u64
    );
}

/// Good and rejected rows of `customers.csv`, as `dvault ingest` sees them.
fn judge_customer_rows(path: &Path) -> (u64, u64) {
    let spec = RowSpec {
        event_type: "customer_registered".into(),
        source: "crm".into(),
        time_field: Some("signup_date".into()),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .expect("open");
    let mut rows = reader.byte_records();
    let first = rows.next().expect("header").expect("header");
    let header = Header::parse(&first.iter().collect::<Vec<_>>(), &spec).expect("header");
    let (mut good, mut rejected) = (0, 0);
    for row in rows {
        let row = row.expect("row");
        match header.event(
            &row.iter().collect::<Vec<_>>(),
            &spec,
            Utc::now(),
            &crate::events::limits::TimeRange::default(),
        ) {
            Ok(_) => good += 1,
            Err(_) => rejected += 1,
        }
    }
    (good, rejected)
}

#[test]
fn dirt_leaves_the_good_lines_alone() {
    let (clean, dirty) = (TempDir::new("same-clean"), TempDir::new("same-dirty"));
    run(&options(&clean.0, 0.0));
    run(&options(&dirty.0, 0.2));
    let kept: Vec<Vec<u8>> = read_lines(&dirty.0.join(EVENTS_FILE))
        .into_iter()
        .filter(|l| !String::from_utf8_lossy(l).contains("\"id\":\"bad-"))
        .collect();
    assert!(kept == read_lines(&clean.0.join(EVENTS_FILE)));
    for name in [PRODUCTS_FILE, TRANSACTIONS_FILE] {
        assert!(
            fs::read(clean.0.join(name)).expect("read")
                == fs::read(dirty.0.join(name)).expect("read")
        );
    }
}
