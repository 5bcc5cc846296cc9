//! The bulk ingest (`src/events/bulk.rs`): a file at least as large as the log goes in
//! without the log's indexes, built again at the end, in one transaction. It must store
//! exactly what the batch-by-batch path stores, give way to it when the database
//! refuses something, and leave the log as it was when killed.

use dvault::events::ingest::{IngestOptions, IngestSummary, ingest_file};
use tokio_postgres::Client;

use crate::harness::{TestDb, index_catalog, terminate_when_running};
use crate::ingest::{tempdir, write};

/// `n` customers, with dirt: every 50th row repeated exactly (same content, same
/// derived id: a duplicate), every 97th row without its date (rejected).
fn customers(n: usize) -> String {
    let mut csv = String::from("customer_id,name,signup_date\n");
    for i in 0..n {
        if i % 97 == 96 {
            csv.push_str(&format!("C{i},Name {i}\n"));
            continue;
        }
        let row = format!("C{i},Name {i},2024-01-{:02}\n", 1 + i % 28);
        csv.push_str(&row);
        if i % 50 == 0 {
            csv.push_str(&row);
        }
    }
    csv
}

fn opts(bulk_min_rows: Option<u64>) -> IngestOptions {
    IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        batch_size: 97,
        bulk_min_rows,
        ..IngestOptions::default()
    }
}

/// The log in order, and the quarantine.
async fn contents(client: &Client) -> (Vec<String>, Vec<String>) {
    let log = client
        .query(
            "SELECT format('%s|%s|%s|%s|%s', event_id, event_type, record_source,
                           occurred_at, payload::text)
               FROM event_log.events ORDER BY xid, seq",
            &[],
        )
        .await
        .expect("log")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rejected = client
        .query(
            "SELECT format('%s|%s|%s|%s', stage, line, reason, raw)
               FROM event_log.rejected ORDER BY line",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| r.get(0))
        .collect();
    (log, rejected)
}

/// Every index of the event log: name, definition, valid, constraint, comments.
async fn catalog(client: &Client) -> Vec<String> {
    index_catalog(client, "event_log", Some("events")).await
}

/// Ingest the first `first` lines of `csv` batch by batch, then all of it with
/// `bulk_min_rows`; the events the first ingest stored, the second's summary.
async fn ingest_twice(
    db: &TestDb,
    csv: &str,
    first: usize,
    bulk_min_rows: Option<u64>,
) -> (u64, IngestSummary, Client) {
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let head: String = csv
        .lines()
        .take(first + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let early = write(&dir, "early.csv", head.as_bytes());
    let early = ingest_file(&mut client, &early, &opts(None))
        .await
        .expect("early ingest");
    assert!(!early.bulk);
    let file = write(&dir, "customers.csv", csv.as_bytes());
    let summary = ingest_file(&mut client, &file, &opts(bulk_min_rows))
        .await
        .expect("ingest");
    (early.inserted, summary, client)
}

#[tokio::test]
async fn a_file_larger_than_the_log_takes_the_bulk_path_and_stores_what_batches_store() {
    let csv = customers(1_000);
    let bulk_db = TestDb::new().await;
    let batch_db = TestDb::new().await;
    let before = catalog(&bulk_db.client().await).await;

    let (early, bulk, bulk_client) = ingest_twice(&bulk_db, &csv, 120, Some(10)).await;
    let (_, batches, batch_client) = ingest_twice(&batch_db, &csv, 120, None).await;
    assert!(bulk.bulk, "a file larger than the log: bulk path");
    assert!(!batches.bulk);
    assert!(early > 100);
    assert_eq!(
        (bulk.inserted, bulk.duplicates, bulk.rejected),
        (batches.inserted, batches.duplicates, batches.rejected)
    );
    assert_eq!(bulk.rejected, 10, "every 97th row has no date");
    assert_eq!(
        bulk.duplicates,
        early + 20,
        "the early rows and the repeats"
    );
    assert_eq!(bulk.inserted, 1_000 - 10 - early, "the rest, each once");
    assert_eq!(contents(&bulk_client).await, contents(&batch_client).await);
    assert_eq!(
        catalog(&bulk_client).await,
        before,
        "every index back, valid"
    );

    // and the unique index is the one PostgreSQL enforces again
    let again = bulk_client
        .execute(
            "INSERT INTO event_log.events (event_id, event_type, record_source, occurred_at, payload)
             SELECT event_id, event_type, record_source, occurred_at, payload
               FROM event_log.events LIMIT 1",
            &[],
        )
        .await;
    assert!(again.is_err(), "a duplicate (source, id) is refused");
}

#[tokio::test]
async fn ndjson_on_the_bulk_path_knows_every_source_of_the_log() {
    let event = |source: &str, id: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"customer_registered","time":"2024-01-02T00:00:00Z","data":{{"customer_id":"C{id}"}}}}"#
        )
    };
    let early: String = (0..30)
        .map(|i| event("web", &i.to_string()) + "\n")
        .collect();
    // the same ids from web are duplicates; from app they are new events
    let file: String = (0..60)
        .flat_map(|i| [event("web", &i.to_string()), event("app", &i.to_string())])
        .map(|l| l + "\n")
        .collect();
    let mut results = Vec::new();
    for bulk_min_rows in [Some(10), None] {
        let db = TestDb::new().await;
        let mut client = db.client().await;
        let dir = tempdir::Dir::new();
        let opts = IngestOptions {
            bulk_min_rows,
            ..IngestOptions::default()
        };
        ingest_file(
            &mut client,
            &write(&dir, "early.ndjson", early.as_bytes()),
            &opts,
        )
        .await
        .expect("early");
        let s = ingest_file(
            &mut client,
            &write(&dir, "all.ndjson", file.as_bytes()),
            &opts,
        )
        .await
        .expect("ingest");
        assert_eq!(s.bulk, bulk_min_rows.is_some());
        results.push(((s.inserted, s.duplicates), contents(&client).await));
    }
    assert_eq!(results[0].0, (90, 30));
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn a_small_file_or_a_larger_log_goes_batch_by_batch() {
    let csv = customers(300);
    let db = TestDb::new().await;
    // 200 rows already in the log, a file of 300 rows: the log is not larger, bulk
    let (_, s, _) = ingest_twice(&db, &csv, 200, Some(10)).await;
    assert!(s.bulk);

    let db = TestDb::new().await;
    // the threshold is above the file's rows
    let (_, s, _) = ingest_twice(&db, &csv, 10, Some(1_000)).await;
    assert!(!s.bulk);

    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let big = write(&dir, "big.csv", customers(600).as_bytes());
    ingest_file(&mut client, &big, &opts(None))
        .await
        .expect("big");
    // 600 rows in the log, a file of 300 (a different one: not recognised by digest)
    let small = write(
        &dir,
        "small.csv",
        customers(300).replace("Name", "N").as_bytes(),
    );
    let s = ingest_file(&mut client, &small, &opts(Some(10)))
        .await
        .expect("small");
    assert!(!s.bulk, "the log is larger than the file");
}

#[tokio::test]
async fn a_refused_batch_ends_the_bulk_path_and_only_its_culprit_is_quarantined() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    // a sabotage no check at parse time knows about: the database refuses one event
    client
        .batch_execute(
            "CREATE FUNCTION event_log.refuse_c13() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.payload->>'customer_id' = 'C13' THEN
                     RAISE check_violation USING MESSAGE = 'C13 is refused here';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_c13 BEFORE INSERT ON event_log.events
                 FOR EACH ROW EXECUTE FUNCTION event_log.refuse_c13();",
        )
        .await
        .expect("sabotage");
    let before = catalog(&client).await;
    let dir = tempdir::Dir::new();
    let file = write(&dir, "customers.csv", customers(500).as_bytes());
    let s = ingest_file(&mut client, &file, &opts(Some(10)))
        .await
        .expect("ingest");
    assert!(!s.bulk, "the bulk run was rolled back");
    assert_eq!((s.inserted, s.rejected), (500 - 5 - 1, 5 + 1));
    let (log, rejected) = contents(&client).await;
    assert_eq!(log.len(), 494);
    assert!(log.iter().all(|e| !e.contains(r#""customer_id":"C13""#)));
    assert!(
        rejected.iter().any(|r| r.contains("C13 is refused here")),
        "{rejected:?}"
    );
    assert_eq!(catalog(&client).await, before);
}

#[tokio::test]
async fn an_ingest_killed_on_the_bulk_path_leaves_the_log_and_its_indexes_as_they_were() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let early = write(&dir, "early.csv", customers(20).as_bytes());
    ingest_file(&mut client, &early, &opts(None))
        .await
        .expect("early");
    // each row of the file takes a while to insert, so the kill lands in the COPY
    // (after the indexes were dropped)
    client
        .batch_execute(
            "CREATE FUNCTION event_log.slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_setting('dvault_test.slow', true) = 'on' THEN
                     PERFORM pg_sleep(0.01);
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER slow BEFORE INSERT ON event_log.events
                 FOR EACH ROW EXECUTE FUNCTION event_log.slow();
             SET dvault_test.slow = 'on';",
        )
        .await
        .expect("slow");
    let before_catalog = catalog(&client).await;
    let before = contents(&client).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let killer = terminate_when_running(db.client().await, pid, "COPY event_log.events%");
    let file = write(&dir, "customers.csv", customers(1_000).as_bytes());
    let result = ingest_file(&mut client, &file, &opts(Some(10))).await;
    assert!(killer.await.expect("killer"), "the COPY was never seen");
    assert!(result.is_err(), "the ingest was killed");

    let mut client = db.client().await;
    assert_eq!(
        catalog(&client).await,
        before_catalog,
        "every index in place"
    );
    assert_eq!(
        contents(&client).await,
        before,
        "nothing of the file stored"
    );
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM ops.ingested_files", &[])
        .await
        .expect("files")
        .get(0);
    assert_eq!(recorded, 1, "only the early file is recorded as ingested");

    // and the next ingest does it all
    let s = ingest_file(&mut client, &file, &opts(Some(10)))
        .await
        .expect("again");
    assert!(s.bulk);
    assert_eq!((s.inserted, s.duplicates), (1_000 - 10 - 20, 20 + 20));
    assert_eq!(catalog(&client).await, before_catalog);
}
