use std::io::Write;
use std::path::PathBuf;

use dvault::events::ingest::{Format, IngestOptions, ingest_file};

use crate::harness::TestDb;

pub(crate) fn write(dir: &tempdir::Dir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(bytes).expect("write");
    path
}

/// A scratch directory removed on drop.
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "dvault-test-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn csv_opts() -> IngestOptions {
    IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        batch_size: 3,
        ..IngestOptions::default()
    }
}

pub(crate) async fn rejected(client: &tokio_postgres::Client) -> Vec<(i64, String, String)> {
    client
        .query(
            "SELECT line, reason, raw FROM event_log.rejected ORDER BY line",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn good_rows_land_bad_rows_are_quarantined_and_a_second_ingest_adds_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let file = write(
        &dir,
        "customers.csv",
        b"\xef\xbb\xbfcustomer_id,name,signup_date\r\n\
          C1,Ann,2024-01-02\r\n\
          C2,\"Bob \"\"the\"\" builder, jr\",2024-01-03\n\
          C3,short\n\
          C4,\xff\xfe,2024-01-05\n\
          C5,Eve,yesterday\n\
          C6,\"multi\nline\",2024-01-06T10:00:00+02:00\n\
          C7,Nul\0Byte,2024-01-07\n\
          \n\
          C8,Ok,2024-01-08\n",
    );
    let first = ingest_file(&mut client, &file, &csv_opts())
        .await
        .expect("ingest");
    assert_eq!(
        (first.inserted, first.rejected, first.duplicates),
        (4, 4, 0)
    );

    let rows = client
        .query(
            "SELECT payload->>'customer_id', payload->>'name', occurred_at::text
               FROM event_log.events ORDER BY seq",
            &[],
        )
        .await
        .expect("events");
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("C1".into(), "Ann".into(), "2024-01-02 00:00:00+00".into()),
            (
                "C2".into(),
                "Bob \"the\" builder, jr".into(),
                "2024-01-03 00:00:00+00".into()
            ),
            (
                "C6".into(),
                "multi\nline".into(),
                "2024-01-06 08:00:00+00".into()
            ),
            ("C8".into(), "Ok".into(), "2024-01-08 00:00:00+00".into()),
        ]
    );
    let bad = rejected(&client).await;
    assert_eq!(bad.len(), 4);
    assert_eq!(bad[0].0, 4);
    assert_eq!(bad[0].1, "wrong number of columns: expected 3, found 2");
    assert_eq!(bad[0].2, "C3,short");
    assert_eq!(bad[1].0, 5);
    assert!(
        bad[1].1.contains("column \"name\" is not valid UTF-8"),
        "{}",
        bad[1].1
    );
    assert_eq!(bad[2].0, 6);
    assert!(
        bad[2].1.contains("\"yesterday\" is not an ISO 8601"),
        "{}",
        bad[2].1
    );
    assert_eq!(bad[3].0, 9);
    assert!(bad[3].1.contains("NUL byte"), "{}", bad[3].1);
    assert_eq!(bad[3].2, "C7,Nul\\0Byte,2024-01-07");

    let again = ingest_file(&mut client, &file, &csv_opts())
        .await
        .expect("re-ingest");
    assert!(again.already_ingested_at.is_some());
    assert!(again.to_string().contains("nothing new"), "{again}");

    // The same rows in another file (and a new one) store only the new one,
    // and quarantine nothing twice.
    let copy = write(
        &dir,
        "customers2.csv",
        b"customer_id,name,signup_date\nC1,Ann,2024-01-02\nC9,New,2024-01-09\nC3,short\n",
    );
    let third = ingest_file(&mut client, &copy, &csv_opts())
        .await
        .expect("ingest copy");
    assert_eq!(
        (third.inserted, third.duplicates, third.rejected),
        (1, 1, 1)
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 5);
}

#[tokio::test]
async fn csv_file_level_problems_stop_that_file_with_a_clear_message() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let dup = write(&dir, "dup.csv", b"id,name,id\n1,a,1\n");
    let err = ingest_file(&mut client, &dup, &csv_opts())
        .await
        .expect_err("duplicate header");
    let msg = err.to_string();
    assert!(
        msg.contains("dup.csv: line 1: header names \"id\" twice"),
        "{msg}"
    );

    let no_time = write(&dir, "t.csv", b"customer_id,name\n1,a\n");
    let err = ingest_file(&mut client, &no_time, &csv_opts())
        .await
        .expect_err("missing time column");
    assert!(
        err.to_string()
            .contains("--time-field \"signup_date\" is not a column")
    );

    let untyped = IngestOptions {
        event_type: None,
        ..csv_opts()
    };
    let err = ingest_file(&mut client, &no_time, &untyped)
        .await
        .expect_err("no --type");
    assert!(err.to_string().contains("needs --type"), "{err}");

    let missing = dir.path().join("nope.csv");
    let err = ingest_file(&mut client, &missing, &csv_opts())
        .await
        .expect_err("missing file");
    assert!(err.to_string().contains("nope.csv"), "{err}");

    let n: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn ndjson_mixes_types_and_quarantines_every_kind_of_bad_line() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let deep = format!(
        r#"{{"specversion":"1.0","type":"t","source":"s","id":"deep","data":{{"a":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut body = String::new();
    body.push_str(r#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"1","time":"2024-01-01T00:00:00Z","data":{"customer_id":"C1"}}"#);
    body.push('\n');
    body.push_str(r#"{"specversion":"1.0","type":"order_placed","source":"shop","id":"2","data":{"order_id":"O1","total":1e400}}"#);
    body.push_str("\r\n");
    body.push_str("{\"specversion\":\"1.0\",\"type\":\"x\"\n"); // line 3: broken JSON
    body.push_str(r#"{"type":"x","source":"s","data":{}}"#); // 4: no specversion
    body.push('\n');
    body.push_str(&deep); // 5
    body.push('\n');
    body.push_str(r#"{"specversion":"1.0","type":"t","source":"s","data":"text"}"#); // 6
    body.push('\n');
    body.push('\n'); // 7: blank, skipped
    let mut bytes = body.into_bytes();
    bytes.extend_from_slice(b"{\"specversion\":\"1.0\",\"type\":\"\xff\"}\n"); // 8: bad UTF-8
    bytes.extend_from_slice(br#"{"specversion":"1.0","type":"t","source":"s","id":"3","data":{"#); // 9: truncated
    let file = write(&dir, "events.ndjson", &bytes);
    let summary = ingest_file(&mut client, &file, &IngestOptions::default())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (2, 6), "{summary}");
    let bad = rejected(&client).await;
    let lines: Vec<i64> = bad.iter().map(|b| b.0).collect();
    assert_eq!(lines, [3, 4, 5, 6, 8, 9]);
    assert!(bad[0].1.starts_with("invalid JSON"), "{}", bad[0].1);
    assert!(bad[1].1.contains("specversion"), "{}", bad[1].1);
    assert!(bad[2].1.contains("nested deeper than"), "{}", bad[2].1);
    assert!(
        bad[3].1.contains("\"data\" must be a JSON object"),
        "{}",
        bad[3].1
    );
    assert!(bad[4].1.contains("invalid UTF-8"), "{}", bad[4].1);
    assert!(bad[5].1.contains("truncated"), "{}", bad[5].1);
    let stored: String = client
        .query_one(
            "SELECT payload::text FROM event_log.events WHERE event_id = '2'",
            &[],
        )
        .await
        .expect("payload")
        .get(0);
    assert_eq!(
        stored, r#"{"order_id":"O1","total":1e400}"#,
        "kept verbatim"
    );

    // --format overrides the extension
    let txt = write(
        &dir,
        "more.txt",
        br#"{"specversion":"1.0","type":"t","source":"s","id":"x","data":{}}"#,
    );
    let opts = IngestOptions {
        format: Some(Format::Ndjson),
        ..IngestOptions::default()
    };
    let s = ingest_file(&mut client, &txt, &opts).await.expect("ingest");
    assert_eq!(s.inserted, 1);
}

/// The `n` of each event in the log, in the order the loader reads it, and in `seq` order.
async fn log_order(client: &tokio_postgres::Client) -> (Vec<i64>, Vec<i64>) {
    let read = |sql: &'static str| async move {
        client
            .query(sql, &[])
            .await
            .expect("log")
            .iter()
            .map(|r| r.get::<_, String>(0).parse::<i64>().expect("n"))
            .collect::<Vec<i64>>()
    };
    (
        read("SELECT payload->>'n' FROM event_log.events ORDER BY xid, seq").await,
        read("SELECT payload->>'n' FROM event_log.events ORDER BY seq").await,
    )
}

#[tokio::test]
async fn a_file_written_on_several_streams_is_in_the_log_in_file_order() {
    let dir = tempdir::Dir::new();
    let db = TestDb::new().await;
    let mut clients = vec![db.client().await, db.client().await, db.client().await];
    // rows that repeat keys: their order is what decides a satellite's last version
    let rows = |n: i64| -> String {
        let mut text = String::from("customer_id,city,n\n");
        for i in 0..n {
            text.push_str(&format!("C{},city{},{i}\n", i % 7, i % 5));
        }
        text
    };
    let opts = IngestOptions {
        event_type: Some("customer_updated".into()),
        source: Some("crm".into()),
        batch_size: 37,
        ..IngestOptions::default()
    };
    let first = write(&dir, "a.csv", rows(2_000).as_bytes());
    let s = dvault::events::ingest::ingest_file_streams(&mut clients, &first, &opts)
        .await
        .expect("ingest");
    assert_eq!((s.inserted, s.duplicates, s.rejected), (2_000, 0, 0));
    let (by_xid, by_seq) = log_order(&clients[0]).await;
    let expected: Vec<i64> = (0..2_000).collect();
    assert_eq!(by_xid, expected, "the reader's order is the file's");
    assert_eq!(by_seq, expected, "seq order is the file's");

    // a longer copy: its first 2,000 rows are in the log (the ON CONFLICT path, at
    // the places reserved), the rest follow in order
    let longer = write(&dir, "b.csv", rows(3_000).as_bytes());
    let s = dvault::events::ingest::ingest_file_streams(&mut clients, &longer, &opts)
        .await
        .expect("ingest");
    assert_eq!((s.inserted, s.duplicates), (1_000, 2_000));
    let (by_xid, by_seq) = log_order(&clients[0]).await;
    let expected: Vec<i64> = (0..3_000).collect();
    assert_eq!(by_xid, expected);
    assert_eq!(by_seq, expected);
}

/// A daily full snapshot re-sends every row: after its first batch (the `ON CONFLICT`
/// way), the rows already in the log are found by one probe per id before the `COPY`
/// (not by a `COPY` that fails at the first of them), and what is stored is exactly
/// what the `ON CONFLICT` path would store, at the file's places in the log: the
/// changed and new rows, once each, in file order.
#[tokio::test]
async fn a_resent_snapshot_stores_only_its_changed_and_new_rows_in_file_order() {
    let dir = tempdir::Dir::new();
    let db = TestDb::new().await;
    let mut clients = vec![db.client().await, db.client().await];
    // row i of day `day`: every tenth row changes its city on day 2
    let row = |i: i64, day: i64| {
        let city = if day == 2 && i % 10 == 3 { 99 } else { i % 5 };
        format!(
            "C{i},city{city},{}\n",
            i + 10_000 * (day - 1) * i64::from(i % 10 == 3)
        )
    };
    let opts = IngestOptions {
        event_type: Some("customer_updated".into()),
        source: Some("crm".into()),
        batch_size: 64,
        ..IngestOptions::default()
    };
    let mut day1 = String::from("customer_id,city,n\n");
    (0..2_000).for_each(|i| day1.push_str(&row(i, 1)));
    let first = write(&dir, "day1.csv", day1.as_bytes());
    let s = dvault::events::ingest::ingest_file_streams(&mut clients, &first, &opts)
        .await
        .expect("day 1");
    assert_eq!((s.inserted, s.duplicates, s.rejected), (2_000, 0, 0));

    // day 2: the same 2,000 customers (200 changed), one of them twice in a row, and
    // 300 new ones; batches of 64 are all-old, mixed and all-new
    let mut day2 = String::from("customer_id,city,n\n");
    (0..2_000).for_each(|i| day2.push_str(&row(i, 2)));
    day2.push_str(&row(1_999, 2));
    (2_000..2_300).for_each(|i| day2.push_str(&row(i, 2)));
    let second = write(&dir, "day2.csv", day2.as_bytes());
    let s = dvault::events::ingest::ingest_file_streams(&mut clients, &second, &opts)
        .await
        .expect("day 2");
    assert_eq!(
        (s.inserted, s.duplicates, s.rejected),
        (200 + 300, 1_800 + 1, 0),
        "changed and new rows stored, unchanged and repeated ones counted as duplicates"
    );
    let (by_xid, by_seq) = log_order(&clients[0]).await;
    let mut expected: Vec<i64> = (0..2_000).collect();
    expected.extend((0..2_000).filter(|i| i % 10 == 3).map(|i| i + 10_000));
    expected.extend((2_000..2_300).map(|i| if i % 10 == 3 { i + 10_000 } else { i }));
    assert_eq!(by_xid, expected, "the reader's order is the file's");
    assert_eq!(by_seq, expected, "seq order is the file's");

    // the snapshot again without the repeated row (another file, the same rows):
    // nothing new, every row found by the probes
    let again = write(
        &dir,
        "day2-again.csv",
        day2.replacen(&row(1_999, 2), "", 1).as_bytes(),
    );
    let s = dvault::events::ingest::ingest_file_streams(&mut clients, &again, &opts)
        .await
        .expect("day 2 again");
    assert_eq!((s.inserted, s.duplicates), (0, 2_300));
    let (by_xid, _) = log_order(&clients[0]).await;
    assert_eq!(by_xid, expected, "the log did not change");
}

/// A file's batches commit without waiting for the disk, its last transaction (the
/// one that records the file) waits for all of them: what each transaction that
/// wrote to the log or recorded the file had as `synchronous_commit`, seen by
/// triggers, in both storage forms (rows and bundles).
#[tokio::test]
async fn a_files_batches_commit_unsynced_and_its_record_waits_for_them() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE public.commit_modes (what text, mode text);
             CREATE FUNCTION public.note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO public.commit_modes VALUES (TG_TABLE_NAME, current_setting('synchronous_commit'));
                 RETURN NULL;
             END $$;
             CREATE TRIGGER note_commit_mode AFTER INSERT ON event_log.events
                 FOR EACH STATEMENT EXECUTE FUNCTION public.note_commit_mode();
             CREATE TRIGGER note_commit_mode AFTER INSERT ON ops.ingested_files
                 FOR EACH STATEMENT EXECUTE FUNCTION public.note_commit_mode();",
        )
        .await
        .expect("triggers");
    let dir = tempdir::Dir::new();
    let mut csv = String::from("customer_id,first_name,email,city,signup_date\n");
    for i in 0..25 {
        csv.push_str(&format!("C{i:03},Ann,ann{i}@example.com,Rome,2024-01-02\n"));
    }
    let path = write(&dir, "c.csv", csv.as_bytes());
    for bundle in [None, Some(10)] {
        client
            .execute("TRUNCATE public.commit_modes", &[])
            .await
            .expect("truncate");
        let opts = IngestOptions {
            event_type: Some(format!("customer_registered_{}", bundle.is_some())),
            source: Some("crm".into()),
            time_field: Some("signup_date".into()),
            batch_size: 10,
            bundle,
            bulk_min_rows: None,
            ..IngestOptions::default()
        };
        let s = ingest_file(&mut client, &path, &opts)
            .await
            .expect("ingest");
        assert_eq!(s.inserted, 25);
        let modes: Vec<(String, String)> = client
            .query("SELECT what, mode FROM public.commit_modes", &[])
            .await
            .expect("modes")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let of = |what: &str| -> Vec<&str> {
            modes
                .iter()
                .filter(|(w, _)| w == what)
                .map(|(_, m)| m.as_str())
                .collect()
        };
        assert_eq!(
            of("events"),
            ["off", "off", "off"],
            "{bundle:?}: three batches"
        );
        assert_eq!(of("ingested_files"), ["on"], "{bundle:?}");
    }
}
