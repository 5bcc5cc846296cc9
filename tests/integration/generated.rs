//! `dvault gen` output through ingest and load: clean data loads with nothing
//! rejected; with --dirty, exactly the broken lines are rejected, at the stage the
//! generator announced, and every good one lands.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::generate::{GenOptions, GenSummary, generate};

use crate::harness::{TestDb, load_all};

fn generated(dirty: f64) -> (PathBuf, GenSummary) {
    let out = std::env::temp_dir().join(format!("dvault-gen-{}", rand::random::<u64>()));
    let summary = generate(&GenOptions {
        seed: 7,
        customers: 300,
        products: 120,
        orders: 900,
        days: 90,
        end: NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
        dirty,
        out: out.clone(),
    })
    .expect("generate");
    (out, summary)
}

fn file<'a>(s: &'a GenSummary, name: &str) -> &'a dvault::generate::GenFile {
    s.files
        .iter()
        .find(|f| f.path.file_name().is_some_and(|n| n == name))
        .expect("file in summary")
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn ingest(
    client: &mut tokio_postgres::Client,
    path: &Path,
    opts: &IngestOptions,
) -> (u64, u64) {
    let s = ingest_file(client, path, opts).await.expect("ingest");
    (s.inserted, s.rejected)
}

#[tokio::test]
async fn clean_events_load_with_nothing_rejected() {
    let (dir, summary) = generated(0.0);
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let events = file(&summary, "events.ndjson");
    let (inserted, rejected) = ingest(
        &mut client,
        &dir.join("events.ndjson"),
        &IngestOptions::default(),
    )
    .await;
    assert_eq!((inserted, rejected), (events.good, 0));
    let loaded = load_all(&mut client).await;
    assert_eq!((loaded.events, loaded.rejected), (events.good, 0));
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        300
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_order").await,
        900
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.link_order_product").await,
        count(&client, "SELECT count(*) FROM event_log.events e, json_array_elements(e.payload->'lines') WHERE e.event_type = 'order_placed'").await
    );
    // customers who moved have more than one profile version
    assert!(
        count(
            &client,
            "SELECT count(*) FROM raw_vault.sat_customer_profile"
        )
        .await
            > 300
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dirty_lines_are_rejected_at_the_announced_stage_and_good_ones_land() {
    let (dir, summary) = generated(0.02);
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let events = file(&summary, "events.ndjson");
    assert!(
        events.bad_at_ingest > 0 && events.bad_at_load > 0,
        "{events:?}"
    );
    let (inserted, rejected) = ingest(
        &mut client,
        &dir.join("events.ndjson"),
        &IngestOptions::default(),
    )
    .await;
    assert_eq!(inserted, events.good + events.bad_at_load);
    assert_eq!(rejected, events.bad_at_ingest);
    let loaded = load_all(&mut client).await;
    assert_eq!(loaded.rejected, events.bad_at_load);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM event_log.rejected WHERE reason = '' OR reason IS NULL"
        )
        .await,
        0,
        "every rejection has a reason"
    );

    // the flat files, in a second database
    let flat = TestDb::new().await;
    let mut client = flat.client().await;
    let csv = |ty: &str, source: &str, time: Option<&str>| IngestOptions {
        event_type: Some(ty.into()),
        source: Some(source.into()),
        time_field: time.map(String::from),
        ..IngestOptions::default()
    };
    let customers = file(&summary, "customers.csv");
    assert!(customers.bad_at_ingest > 0);
    let got = ingest(
        &mut client,
        &dir.join("customers.csv"),
        &csv("customer_registered", "crm", Some("signup_date")),
    )
    .await;
    assert_eq!(got, (customers.good, customers.bad_at_ingest));
    let products = file(&summary, "products.csv");
    let got = ingest(
        &mut client,
        &dir.join("products.csv"),
        &csv("product_listed", "catalog", None),
    )
    .await;
    assert_eq!(got, (products.good, 0));
    let lines = file(&summary, "transactions.csv");
    let got = ingest(
        &mut client,
        &dir.join("transactions.csv"),
        &csv("order_line_recorded", "pos", Some("transaction_date")),
    )
    .await;
    assert_eq!(got, (lines.good, 0));
    let loaded = load_all(&mut client).await;
    assert_eq!(loaded.rejected, 0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        300
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_order").await,
        900
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.link_order_product").await,
        lines.good as i64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Customers with a counted order at `ts`, and how many of them have no favourite
/// category then.
async fn favourites_at(client: &tokio_postgres::Client, ts: &str) -> (i64, i64) {
    let r = client
        .query_one(
            "SELECT count(*) FILTER (WHERE orders_count > 0),
                    count(*) FILTER (WHERE orders_count > 0 AND favourite_category IS NULL)
               FROM mart.customer_360_as_of($1::text::timestamptz)",
            &[&ts],
        )
        .await
        .expect("as of");
    (r.get(0), r.get(1))
}

/// The flat files, products.csv with the business time `products_time` (`--time`).
async fn load_flat(dir: &Path, products_time: Option<&str>) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let csv = |ty: &str, source: &str, time_field: Option<&str>| IngestOptions {
        event_type: Some(ty.into()),
        source: Some(source.into()),
        time_field: time_field.map(String::from),
        ..IngestOptions::default()
    };
    ingest(
        &mut client,
        &dir.join("customers.csv"),
        &csv("customer_registered", "crm", Some("signup_date")),
    )
    .await;
    let products = IngestOptions {
        time: products_time.map(|t| dvault::events::csv_rows::parse_time(t).expect("time")),
        ..csv("product_listed", "catalog", None)
    };
    ingest(&mut client, &dir.join("products.csv"), &products).await;
    ingest(
        &mut client,
        &dir.join("transactions.csv"),
        &csv("order_line_recorded", "pos", Some("transaction_date")),
    )
    .await;
    assert_eq!(load_all(&mut client).await.rejected, 0);
    (db, client)
}

#[tokio::test]
async fn flat_products_with_a_business_time_give_as_of_favourite_categories() {
    let (dir, _) = generated(0.0);
    // the catalogue file has no time column: as ingested (business time now), its
    // products have no category before the load, so no one has a favourite then
    let (_db, client) = load_flat(&dir, None).await;
    let (buyers, without) = favourites_at(&client, "2026-05-15T12:00:00Z").await;
    assert!(buyers > 50, "{buyers}");
    assert_eq!(without, buyers);
    // given the day from which the catalogue holds (docs/events.md: the first day of
    // the transactions), as-of answers have the favourites the current view has
    let (_db, client) = load_flat(&dir, Some("2026-04-01")).await;
    assert_eq!(
        favourites_at(&client, "2026-05-15T12:00:00Z").await,
        (buyers, 0)
    );
    let today: (i64, i64) = {
        let r = client
            .query_one(
                "SELECT count(*) FILTER (WHERE orders_count > 0),
                        count(*) FILTER (WHERE orders_count > 0 AND favourite_category IS NULL)
                   FROM mart.customer_360",
                &[],
            )
            .await
            .expect("today");
        (r.get(0), r.get(1))
    };
    assert_eq!(today.1, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
