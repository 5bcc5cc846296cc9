//! Whole-history checks: events follow cause and effect, and the CSV snapshots
//! are the events replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::contract::good_events;
use super::{
    CUSTOMERS_FILE, EVENTS_FILE, PRODUCTS_FILE, TRANSACTIONS_FILE, TempDir, options, read_lines,
    run,
};
use crate::generate::calendar::Calendar;

#[test]
fn the_history_is_causal() {
    let dir = TempDir::new("causal");
    let opts = options(&dir.0, 0.0);
    run(&opts);
    let horizon = Calendar::new(opts.end, opts.days)
        .expect("calendar")
        .horizon();
    let mut registered = BTreeMap::new();
    let mut prices = BTreeMap::new();
    let mut listed = BTreeMap::new();
    let mut placed = BTreeMap::new();
    let (mut lines, mut late, mut latest) = (0usize, 0usize, DateTime::<Utc>::MIN_UTC);
    let mut statuses = BTreeSet::new();
    let events = good_events(&dir.0.join(EVENTS_FILE));
    for e in &events {
        let d = &e.data;
        let key = |k: &str| d[k].as_str().expect("key").to_string();
        assert!(e.time.timestamp() < horizon, "an event after the end");
        if e.time < latest {
            late += 1;
            assert!(
                ["customer_updated", "order_status_changed"].contains(&e.ty.as_str()),
                "late {}",
                e.ty
            );
        }
        latest = latest.max(e.time);
        let exists = |map: &BTreeMap<String, DateTime<Utc>>, k: &str| {
            let since = map
                .get(&key(k))
                .unwrap_or_else(|| panic!("unknown {k} in {}", e.ty));
            assert!(*since < e.time, "{} before its {k} existed", e.ty);
        };
        match e.ty.as_str() {
            "customer_registered" => {
                registered.insert(key("customer_id"), e.time);
            }
            "product_listed" | "product_updated" => {
                listed.entry(key("product_id")).or_insert(e.time);
                if let Some(price) = d.get("price") {
                    prices.insert(key("product_id"), price.as_f64().expect("price"));
                }
            }
            "customer_updated" => exists(&registered, "customer_id"),
            "product_viewed" => {
                exists(&registered, "customer_id");
                exists(&listed, "product_id");
            }
            "order_placed" => {
                exists(&registered, "customer_id");
                for line in d["lines"].as_array().expect("lines") {
                    let product = line["product_id"].as_str().expect("product");
                    assert!(listed[product] < e.time, "sold before listed");
                    assert_eq!(line["unit_price"].as_f64(), Some(prices[product]));
                    lines += 1;
                }
                placed.insert(key("order_id"), e.time);
            }
            "order_status_changed" => {
                exists(&placed, "order_id");
                statuses.insert(key("status"));
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(placed.len(), opts.orders);
    let per_order = lines as f64 / opts.orders as f64;
    assert!(
        (2.3..=2.7).contains(&per_order),
        "{per_order} lines per order"
    );
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    let late_share = late as f64 / events.len() as f64;
    assert!((0.002..=0.03).contains(&late_share), "{late_share} late");
    let rows = read_lines(&dir.0.join(TRANSACTIONS_FILE)).len() - 1;
    assert_eq!(rows, lines, "one transaction row per order line");
}

/// Rows of a CSV file (header excluded) keyed by their first column.
fn csv_rows(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("open");
    let header = reader.headers().expect("header").clone();
    reader
        .records()
        .map(|row| {
            let row = row.expect("row");
            let fields: BTreeMap<String, String> = header
                .iter()
                .zip(row.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (row[0].to_string(), fields)
        })
        .collect()
}

/// A JSON scalar as the CSV writes it (amounts with two decimals).
fn as_csv(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{:.2}", n.as_f64().expect("number")),
        other => other.to_string(),
    }
}

#[test]
fn the_snapshots_are_the_events_replayed_in_business_time() {
    let dir = TempDir::new("snapshots");
    run(&options(&dir.0, 0.0));
    let mut events = good_events(&dir.0.join(EVENTS_FILE));
    // stable: events with the same time keep their file order
    events.sort_by_key(|e| e.time);
    let mut state: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for e in &events {
        let key = match e.ty.as_str() {
            "customer_registered" | "customer_updated" => "customer_id",
            "product_listed" | "product_updated" => "product_id",
            _ => continue,
        };
        let id = e.data[key].as_str().expect("key").to_string();
        let fields = state.entry(id).or_default();
        for (k, v) in e.data.as_object().expect("object") {
            fields.insert(k.clone(), as_csv(v));
        }
    }
    let mut snapshot = csv_rows(&dir.0.join(CUSTOMERS_FILE));
    snapshot.extend(csv_rows(&dir.0.join(PRODUCTS_FILE)));
    assert_eq!(snapshot.len(), state.len());
    for (id, row) in &snapshot {
        assert_eq!(Some(row), state.get(id), "{id}");
    }
}
