//! Snapshot feeds (`dvault ingest --bundle --snapshot`, `src/events/snapshot.rs`): a
//! file that holds its whole table each day stores only the rows that are not a row
//! of the feed's last file, and the vault it loads is the one that storing every row
//! gives; a run stopped before it recorded the file stores nothing twice; one file of
//! a feed goes in at a time.

use std::path::{Path, PathBuf};

use dvault::events::csv_rows::RowSpec;
use dvault::events::ingest::{IngestOptions, IngestSummary, ingest_file};
use dvault::events::snapshot;
use tokio_postgres::Client;

use crate::bundles::vault_rows_without;
use crate::harness::{TestDb, builtin_loader, load_all_with};

/// A customers file: `(id, e-mail domain)` per row, in the order given.
fn customers(dir: &Path, name: &str, rows: &[(usize, &str)]) -> PathBuf {
    let mut csv = String::from("customer_id,first_name,email,city,signup_date\n");
    for (i, domain) in rows {
        csv.push_str(&format!(
            "C{i:03},Ann,ann{i}@{domain},Rome,2024-01-{:02}\n",
            1 + i % 28
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).expect("write");
    path
}

fn options(snapshot: bool) -> IngestOptions {
    IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        bundle: Some(20),
        snapshot,
        ..IngestOptions::default()
    }
}

async fn ingest(client: &mut Client, path: &Path, snapshot: bool) -> IngestSummary {
    ingest_file(client, path, &options(snapshot))
        .await
        .expect("ingest")
}

async fn load(client: &mut Client) -> u64 {
    let loader = builtin_loader(client, 1000).await;
    let loaded = load_all_with(client, &loader).await;
    assert_eq!(loaded.rejected, 0);
    loaded.events
}

async fn one(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn a_snapshot_feed_stores_the_changes_since_its_last_file_and_loads_the_same_vault() {
    let dir = std::env::temp_dir().join(format!("dvault-snapshots-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let day1: Vec<(usize, &str)> = (0..50).map(|i| (i, "example.com")).collect();
    // day 2: sent in another order, customer 7 left out, 3 and 25 changed, 50 new
    let mut day2: Vec<(usize, &str)> = day1.iter().rev().copied().filter(|r| r.0 != 7).collect();
    for row in day2.iter_mut().filter(|r| r.0 == 3 || r.0 == 25) {
        row.1 = "example.org";
    }
    day2.push((50, "example.com"));
    // day 3: 3 and 25 back to their day-1 e-mail
    let day3: Vec<(usize, &str)> = day2.iter().map(|r| (r.0, "example.com")).collect();
    let files = [
        customers(&dir, "day1.csv", &day1),
        customers(&dir, "day2.csv", &day2),
        customers(&dir, "day3.csv", &day3),
    ];

    let snap_db = TestDb::new().await;
    let mut snap = snap_db.client().await;
    let every_db = TestDb::new().await;
    let mut every = every_db.client().await;
    let contact = "SELECT count(*) FROM raw_vault.sat_customer_contact";
    // (stored, unchanged) per day, and the contact versions after it
    let expected = [(50, 0, 50), (3, 47, 53), (2, 48, 55)];
    for (day, (file, (stored, unchanged, versions))) in files.iter().zip(expected).enumerate() {
        let s = ingest(&mut snap, file, true).await;
        assert_eq!(
            (s.inserted, s.unchanged),
            (stored, unchanged),
            "day {}",
            day + 1
        );
        let e = ingest(&mut every, file, false).await;
        assert_eq!(e.unchanged, 0);
        assert_eq!(load(&mut snap).await, stored);
        load(&mut every).await;
        assert_eq!(one(&snap, contact).await, versions, "day {}", day + 1);
        // the vault storing every row gives, less the log positions (fewer events)
        assert_eq!(
            vault_rows_without(&snap, "%seq").await,
            vault_rows_without(&every, "%seq").await,
            "day {}",
            day + 1
        );
    }
    assert_eq!(
        one(&every, "SELECT sum(bundle_size) FROM event_log.events").await,
        50 + 50 + 30,
        "without --snapshot the other two days are stored again, but for day 3's first \
         bundle of 20 rows, which is day 2's"
    );
    assert_eq!(
        one(
            &snap,
            "SELECT rows FROM ops.snapshot_feeds WHERE event_type = 'customer_registered' AND source = 'crm'"
        )
        .await,
        50
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_snapshot_run_stopped_before_it_recorded_its_file_stores_nothing_twice() {
    let dir = std::env::temp_dir().join(format!("dvault-snapshot-rerun-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let day1: Vec<(usize, &str)> = (0..60).map(|i| (i, "example.com")).collect();
    let mut day2 = day1.clone();
    for row in day2.iter_mut().filter(|r| r.0 % 10 == 4) {
        row.1 = "example.org";
    }
    let db = TestDb::new().await;
    let mut client = db.client().await;
    ingest(&mut client, &customers(&dir, "day1.csv", &day1), true).await;
    let last: Vec<u8> = client
        .query_one("SELECT row_digests FROM ops.snapshot_feeds", &[])
        .await
        .expect("digests")
        .get(0);
    let day2 = customers(&dir, "day2.csv", &day2);
    let first = ingest(&mut client, &day2, true).await;
    assert_eq!((first.inserted, first.unchanged), (6, 54));

    // as if the run had stopped after its bundles and before the transaction that
    // records the file and the feed's new digests
    client
        .execute(
            "DELETE FROM ops.ingested_files WHERE path LIKE '%day2.csv'",
            &[],
        )
        .await
        .expect("forget the file");
    client
        .execute("UPDATE ops.snapshot_feeds SET row_digests = $1", &[&last])
        .await
        .expect("the day-1 digests");
    let again = ingest(&mut client, &day2, true).await;
    assert_eq!(
        (again.inserted, again.duplicates, again.unchanged),
        (0, 6, 54),
        "the same rows kept back make the same bundle"
    );
    assert_eq!(load(&mut client).await, 66);
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM raw_vault.sat_customer_contact"
        )
        .await,
        66
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_snapshot_needs_bundles_of_a_csv_file() {
    let dir =
        std::env::temp_dir().join(format!("dvault-snapshot-refused-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let csv = customers(&dir, "c.csv", &[(1, "example.com")]);
    let unbundled = IngestOptions {
        bundle: None,
        ..options(true)
    };
    let err = ingest_file(&mut client, &csv, &unbundled)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("c.csv: --snapshot needs --bundle"),
        "{err}"
    );
    let ndjson = dir.join("e.ndjson");
    std::fs::write(
        &ndjson,
        r#"{"specversion":"1.0","id":"1","source":"crm","type":"customer_registered","data":{"customer_id":"C1"}}"#,
    )
    .expect("write");
    let err = ingest_file(&mut client, &ndjson, &options(true))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("e.ndjson: --snapshot needs"),
        "{err}"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM event_log.events").await,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_file_of_a_feed_is_ingested_at_a_time() {
    let dir = std::env::temp_dir().join(format!("dvault-snapshot-lock-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = TestDb::new().await;
    // another ingest of the feed holds it (a session of its own)
    let other = db.client().await;
    let feed = RowSpec {
        event_type: "customer_registered".into(),
        source: "crm".into(),
        time_field: Some("signup_date".into()),
    };
    snapshot::lock(&other, &feed).await.expect("lock");
    let path = customers(&dir, "c.csv", &[(1, "example.com"), (2, "example.com")]);
    let mut client = db.client().await;
    let waiting = tokio::spawn(async move { ingest(&mut client, &path, true).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the ingest waits for the feed");
    assert_eq!(
        one(&other, "SELECT count(*) FROM event_log.events").await,
        0
    );
    // a file of another feed does not wait
    let mut third = db.client().await;
    let products = dir.join("p.csv");
    std::fs::write(
        &products,
        "product_id,name,category,price\nP1,Pen,Office,1.50\n",
    )
    .expect("write");
    let other_feed = IngestOptions {
        event_type: Some("product_listed".into()),
        source: Some("catalog".into()),
        time_field: None,
        ..options(true)
    };
    let p = ingest_file(&mut third, &products, &other_feed)
        .await
        .expect("ingest");
    assert_eq!(p.inserted, 1);
    snapshot::unlock(&other, &feed).await.expect("unlock");
    let s = waiting.await.expect("the ingest");
    assert_eq!((s.inserted, s.unchanged), (2, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
