//! Bundles (`dvault ingest --bundle`, `src/events/bundle.rs`): a CSV file's rows
//! stored many to a log row must load into exactly the vault that one row per event
//! gives (hub, link, satellite and business vault rows, `event_seq`s included), with
//! the same quarantine, in loader batches smaller than a bundle; a bundle is stored
//! once; every count of waiting or checked events counts the events inside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use dvault::events::bundle::Lines;
use dvault::events::ingest::{IngestOptions, IngestSummary, ingest_file};
use dvault::generate::{GenOptions, generate};
use dvault::mapping::Mappings;
use tokio_postgres::Client;

use crate::harness::{TestDb, builtin_loader, load_all_with, table_names};

/// The seed-style flat files of a generated shop, with broken lines among them
/// (refused at ingest) and a row refused at load.
fn flat_files() -> PathBuf {
    let out = std::env::temp_dir().join(format!("dvault-bundles-{}", rand::random::<u64>()));
    generate(&GenOptions {
        seed: 11,
        customers: 300,
        products: 120,
        orders: 900,
        days: 90,
        end: NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
        dirty: 0.02,
        out: out.clone(),
    })
    .expect("generate");
    // and a customer whose key no index can hold, refused at load
    let path = out.join("customers.csv");
    let mut csv = std::fs::read(&path).expect("customers.csv");
    let row = format!(
        "{},Ann,Lee,ann@example.com,,Rome,Italy,2026-04-01\n",
        "K".repeat(5000)
    );
    csv.extend_from_slice(row.as_bytes());
    std::fs::write(&path, csv).expect("customers.csv");
    out
}

const FLAT: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "customers.csv",
        "customer_registered",
        "crm",
        Some("signup_date"),
    ),
    ("products.csv", "product_listed", "catalog", None),
    (
        "transactions.csv",
        "order_line_recorded",
        "pos",
        Some("transaction_date"),
    ),
];

fn options(
    ty: &str,
    source: &str,
    time_field: Option<&str>,
    bundle: Option<usize>,
) -> IngestOptions {
    IngestOptions {
        event_type: Some(ty.into()),
        source: Some(source.into()),
        time_field: time_field.map(String::from),
        // the same business time for what carries none, in both databases
        time: dvault::events::csv_rows::parse_time("2026-03-01"),
        bundle,
        ..IngestOptions::default()
    }
}

async fn ingest_flat(client: &mut Client, dir: &Path, bundle: Option<usize>) -> Vec<IngestSummary> {
    let mut out = Vec::new();
    for (file, ty, source, time) in FLAT {
        let opts = options(ty, source, time, bundle);
        out.push(
            ingest_file(client, &dir.join(file), &opts)
                .await
                .expect("ingest"),
        );
    }
    out
}

/// Every row of the vault and the business vault, less the arrival times (two
/// databases ingest at two times: `load_dts`, a PIT's `*_load_dts`), per table.
async fn vault_rows(client: &Client) -> BTreeMap<String, String> {
    vault_rows_without(client, "%load_dts").await
}

/// [`vault_rows`] without the columns whose names are `LIKE` `also` either.
pub(crate) async fn vault_rows_without(client: &Client, also: &str) -> BTreeMap<String, String> {
    let mut tables: Vec<String> = table_names(client, "raw_vault")
        .await
        .into_iter()
        .map(|name| format!("raw_vault.{name}"))
        .collect();
    tables.extend(dvault::load::business::TABLES.iter().map(|t| t.to_string()));
    let mut out = BTreeMap::new();
    for t in tables {
        let sum: Option<String> = client
            .query_one(
                &format!(
                    "SELECT count(*) || ' ' || md5(string_agg(r, E'\\n' ORDER BY r))
                       FROM (SELECT (SELECT jsonb_object_agg(k, v)::text FROM jsonb_each(to_jsonb(t)) AS c(k, v)
                                WHERE k NOT LIKE '%load_dts' AND k NOT LIKE $1 AND k <> 'computed_at') AS r
                               FROM {t} t) x"
                ),
                &[&also],
            )
            .await
            .expect("vault rows")
            .get(0);
        out.insert(t, sum.unwrap_or_else(|| "empty".into()));
    }
    out
}

/// Load rejections: (event_seq, reason), in log order.
async fn quarantine(client: &Client) -> Vec<(i64, String)> {
    client
        .query(
            "SELECT event_seq, reason FROM event_log.rejected WHERE stage = 'load' ORDER BY event_seq",
            &[],
        )
        .await
        .expect("quarantine")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn one(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn bundled_flat_files_load_the_vault_one_event_per_row_loads() {
    let dir = flat_files();
    let rows = TestDb::new().await;
    let mut per_row = rows.client().await;
    let expected = ingest_flat(&mut per_row, &dir, None).await;
    let summary = {
        let l = builtin_loader(&per_row, 500).await;
        load_all_with(&mut per_row, &l).await
    };
    assert!(
        summary.rejected > 0,
        "the dirty files have rows refused at load"
    );

    let bundles = TestDb::new().await;
    let mut bundled = bundles.client().await;
    let got = ingest_flat(&mut bundled, &dir, Some(97)).await;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(
            (g.inserted, g.rejected),
            (e.inserted, e.rejected),
            "{}",
            g.path.display()
        );
    }
    let stored = one(&bundled, "SELECT count(*) FROM event_log.events").await;
    let events = one(
        &bundled,
        "SELECT sum(bundle_size)::bigint FROM event_log.events",
    )
    .await;
    assert_eq!(
        events as u64,
        expected.iter().map(|s| s.inserted).sum::<u64>()
    );
    assert!(stored * 50 < events, "{stored} rows hold {events} events");
    // the loader's lag counts events, not rows
    let lag = dvault::events::lag(&bundled, dvault::load::CONSUMER)
        .await
        .expect("lag");
    assert_eq!(lag.events, events);

    // batches smaller than a bundle: each bundle is read whole, and one run, on the
    // bulk path with a read-ahead connection as `dvault load` runs, reads on past
    // batches that a bundle made larger than asked
    let mut first = builtin_loader(&bundled, 40)
        .await
        .with_read_ahead(&bundles.url);
    first.bulk_min_events = Some(1);
    let loaded = first.run(&mut bundled).await.expect("load");
    assert!(!loaded.bulk.is_empty(), "the bulk path was taken");
    assert_eq!(
        (loaded.events, loaded.rejected),
        (summary.events, summary.rejected)
    );
    assert_eq!(vault_rows(&bundled).await, vault_rows(&per_row).await);
    assert_eq!(quarantine(&bundled).await, quarantine(&per_row).await);
    let lag = dvault::events::lag(&bundled, dvault::load::CONSUMER)
        .await
        .expect("lag");
    assert_eq!(lag.events, 0);

    // and a rebuild replays the bundles to the same vault
    let before = vault_rows(&bundled).await;
    let replay = builtin_loader(&bundled, 1000).await;
    dvault::load::rebuild(&mut bundled, &replay)
        .await
        .expect("rebuild");
    assert_eq!(vault_rows(&bundled).await, before);

    // a log whose bundles are in the JSON format, as ingest wrote them before the
    // fields format, loads the same vault
    let legacy = TestDb::new().await;
    let mut old = legacy.client().await;
    ingest_flat(&mut old, &dir, Some(97)).await;
    rewrite_in_json_format(&old).await;
    let l = builtin_loader(&old, 40).await;
    let loaded = load_all_with(&mut old, &l).await;
    assert_eq!(
        (loaded.events, loaded.rejected),
        (summary.events, summary.rejected)
    );
    assert_eq!(vault_rows(&old).await, vault_rows(&per_row).await);
    assert_eq!(quarantine(&old).await, quarantine(&per_row).await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrite every bundle of the log in the JSON format (`seq<TAB>micros<TAB>JSON` per
/// line, no names line), the events unchanged.
async fn rewrite_in_json_format(client: &Client) {
    let rows = client
        .query(
            "SELECT seq, bundle FROM event_log.events WHERE bundle IS NOT NULL",
            &[],
        )
        .await
        .expect("bundles");
    assert!(!rows.is_empty());
    // the log refuses updates by trigger; a test may step around it
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("triggers off");
    for r in rows {
        let seq: i64 = r.get(0);
        let Lines(Ok(bundle)) = r.get::<_, Lines<'_>>(1) else {
            panic!("bundle at {seq} does not read");
        };
        assert!(bundle.names.is_some(), "ingest writes the fields format");
        let mut text = String::new();
        for (line, payload) in bundle.lines.iter().zip(bundle.payloads()) {
            let micros = line.occurred_at.timestamp_micros();
            text.push_str(&format!("{}\t{micros}\t{}\n", line.seq, payload.json()));
        }
        assert!(text.starts_with(|c: char| c.is_ascii_digit()));
        client
            .execute(
                "UPDATE event_log.events SET bundle = $2 WHERE seq = $1",
                &[&seq, &text],
            )
            .await
            .expect("rewrite");
    }
    client
        .batch_execute("RESET session_replication_role")
        .await
        .expect("triggers on");
}

#[tokio::test]
async fn a_bundle_is_stored_once_and_a_changed_row_makes_only_its_bundle_new() {
    let dir = std::env::temp_dir().join(format!("dvault-bundle-once-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut csv = String::from("customer_id,first_name,email,city,signup_date\n");
    for i in 0..50 {
        csv.push_str(&format!(
            "C{i:03},Ann,ann{i}@example.com,Rome,2024-01-{:02}\n",
            1 + i % 28
        ));
    }
    let path = dir.join("customers.csv");
    std::fs::write(&path, &csv).expect("write");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let opts = options("customer_registered", "crm", Some("signup_date"), Some(20));
    let first = ingest_file(&mut client, &path, &opts)
        .await
        .expect("ingest");
    assert_eq!((first.inserted, first.duplicates), (50, 0));
    assert_eq!(
        one(&client, "SELECT count(*) FROM event_log.events").await,
        3
    );

    // a run that stopped before it recorded the file: its bundles are in the log
    client
        .execute("DELETE FROM ops.ingested_files", &[])
        .await
        .expect("forget the file");
    let again = ingest_file(&mut client, &path, &opts)
        .await
        .expect("ingest");
    assert_eq!((again.inserted, again.duplicates), (0, 50));
    assert_eq!(
        one(&client, "SELECT count(*) FROM event_log.events").await,
        3
    );

    // one row changed (in the second bundle): only that bundle is new
    let changed = csv.replace("ann25@example.com", "ann25@example.org");
    std::fs::write(&path, changed).expect("write");
    let third = ingest_file(&mut client, &path, &opts)
        .await
        .expect("ingest");
    assert_eq!((third.inserted, third.duplicates), (20, 30));
    assert_eq!(
        one(&client, "SELECT count(*) FROM event_log.events").await,
        4
    );

    // the vault holds the change once, and nothing twice
    let loaded = {
        let l = builtin_loader(&client, 1000).await;
        load_all_with(&mut client, &l).await
    };
    assert_eq!((loaded.events, loaded.rejected), (70, 0));
    assert_eq!(
        one(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        50
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM raw_vault.sat_customer_contact"
        )
        .await,
        51,
        "one version per customer and the changed e-mail"
    );
    // rows without a time field take the ingestion time, which differs each run: a
    // run stopped half way and run again still makes the same bundles
    let mut products = String::from("product_id,name,category,price\n");
    for i in 0..30 {
        products.push_str(&format!("P{i:03},Thing {i},Home,{}.50\n", 3 + i));
    }
    let path = dir.join("products.csv");
    std::fs::write(&path, &products).expect("write");
    let untimed = IngestOptions {
        time: None,
        ..options("product_listed", "catalog", None, Some(20))
    };
    let first = ingest_file(&mut client, &path, &untimed)
        .await
        .expect("ingest");
    assert_eq!((first.inserted, first.duplicates), (30, 0));
    client
        .execute("DELETE FROM ops.ingested_files", &[])
        .await
        .expect("forget the files");
    let again = ingest_file(&mut client, &path, &untimed)
        .await
        .expect("ingest");
    assert_eq!((again.inserted, again.duplicates), (0, 30));
    let loaded = {
        let l = builtin_loader(&client, 1000).await;
        load_all_with(&mut client, &l).await
    };
    assert_eq!((loaded.events, loaded.rejected), (30, 0));

    // the quality gate checks the events inside the bundles
    let report = dvault::ops::quality::run_gate(
        &mut client,
        &dvault::ops::quality::QualityConfig::default(),
        &Mappings::builtin().expect("mappings"),
        dvault::ops::quality::Scope::All,
        false,
        None,
    )
    .await
    .expect("gate");
    assert_eq!(report.scope_events, 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_damaged_bundle_is_quarantined_and_the_log_after_it_loads() {
    let dir = std::env::temp_dir().join(format!("dvault-bundle-damaged-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let file = |name: &str, from: usize| {
        let mut csv = String::from("customer_id,first_name,email,city,signup_date\n");
        for i in from..from + 30 {
            csv.push_str(&format!("C{i:03},Ann,ann{i}@example.com,Rome,2024-02-01\n"));
        }
        let path = dir.join(name);
        std::fs::write(&path, csv).expect("write");
        path
    };
    let opts = options("customer_registered", "crm", Some("signup_date"), Some(20));
    ingest_file(&mut client, &file("a.csv", 0), &opts)
        .await
        .expect("ingest");
    // a bundle row no ingest wrote: it says 5 events and holds one line, out of place
    client
        .batch_execute(
            "INSERT INTO event_log.events
                    (event_id, event_type, record_source, occurred_at, payload, bundle, bundle_size)
             VALUES ('bundle-damaged', 'customer_registered', 'crm', now(), '{}',
                     E'1\\t0\\t{\"customer_id\":\"X\"}\\n', 5)",
        )
        .await
        .expect("a damaged bundle");
    ingest_file(&mut client, &file("b.csv", 30), &opts)
        .await
        .expect("ingest");
    // a bundle in the fields format whose middle line has a field too few: that event
    // alone is quarantined, its neighbours load
    let seq: i64 = client
        .query_one("SELECT max(seq) + 100 FROM event_log.events", &[])
        .await
        .expect("a free place")
        .get(0);
    let text = format!(
        "#fields\tcustomer_id\tfirst_name\temail\tcity\tsignup_date\n\
         {}\t0\tY1\tAnn\ty1@example.com\tRome\t2024-02-01\n\
         {}\t0\tY2\tAnn\ty2@example.com\t2024-02-01\n\
         {}\t0\tY3\tAnn\ty3@example.com\tRome\t2024-02-01\n",
        seq,
        seq + 1,
        seq + 2
    );
    client
        .execute(
            "INSERT INTO event_log.events
                    (seq, event_id, event_type, record_source, occurred_at, payload, bundle, bundle_size)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, 'bundle-short-line', 'customer_registered', 'crm', now(), '{}', $2, 3)",
            &[&seq, &text],
        )
        .await
        .expect("a bundle with a short line");

    // one run reads on past a batch the damaged bundle made look short
    let loaded = builtin_loader(&client, 25)
        .await
        .run(&mut client)
        .await
        .expect("load");
    assert_eq!((loaded.events, loaded.rejected), (68, 2));
    assert_eq!(
        one(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        62
    );
    let reasons: Vec<(i64, String)> = quarantine(&client).await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let reason = &reasons[0].1;
    assert!(
        reason.contains("cannot be read as its events") && reason.contains("1 lines for 5 events"),
        "{reason}"
    );
    assert_eq!(reasons[1].0, seq + 1);
    assert!(
        reasons[1].1.contains("the line holds 4 fields for 5 names"),
        "{}",
        reasons[1].1
    );
    let lag = dvault::events::lag(&client, dvault::load::CONSUMER)
        .await
        .expect("lag");
    assert_eq!(lag.events, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
