//! `dvault stream` against a real broker (tansu, see `broker.rs`): the three shapes of
//! records, poison among good ones, two partitions resumed from the stored offsets,
//! a consumer killed with SIGKILL mid-batch that resumes with nothing lost and nothing
//! twice, the demo's clickstream through a topic, and a running stream beside a
//! following daemon (loaded within seconds, the lag in its `/metrics`). What happens
//! around a running stream (broker restart, partitions added, two consumers, TLS,
//! SASL) is in `stream_resilience.rs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::broker::{Broker, record};
use crate::harness::{TestDb, table_names};
use dvault::events::limits::TimeRange;
use dvault::ops::shutdown::Shutdown;
use dvault::stream::kafka::{FetchOptions, StartAt};
use dvault::stream::message::{Plain, Spec};
use dvault::stream::{self, StreamOptions, StreamSummary};

fn options(broker: &Broker, topics: &[&str], plain: Option<Plain>) -> StreamOptions {
    StreamOptions {
        brokers: vec![broker.addr.clone()],
        topics: topics.iter().map(|t| t.to_string()).collect(),
        group: "tests".into(),
        spec: Spec {
            plain,
            max_bytes: 1_000,
            range: TimeRange::default(),
        },
        start_at: StartAt::Earliest,
        batch_size: 1_000,
        fetch: FetchOptions {
            max_bytes: 1 << 20,
            max_wait: Duration::from_millis(100),
        },
        max_backoff: Duration::from_secs(1),
        refresh: Duration::from_secs(1),
        sasl: None,
        tls_ca: None,
        exit_at_end: true,
    }
}

fn clicks() -> Plain {
    Plain {
        event_type: "page_viewed".into(),
        source: "web".into(),
        time_field: Some("timestamp".into()),
        id_field: None,
    }
}

/// Consume to the end of every partition, in this process.
async fn stream_to_end(db: &TestDb, opts: &StreamOptions) -> StreamSummary {
    let mut client = db.client().await;
    let (_stopper, shutdown) = Shutdown::manual();
    tokio::time::timeout(
        Duration::from_secs(60),
        stream::run(&mut client, opts, shutdown),
    )
    .await
    .expect("the stream reached the end within 60 s")
    .expect("stream")
}

type Row = (String, String, String, DateTime<Utc>, String);

/// The log: id, type, source, business time, payload, in log order.
async fn log(client: &Client) -> Vec<Row> {
    client
        .query(
            "SELECT event_id, event_type, record_source, occurred_at, payload::text
               FROM event_log.events ORDER BY seq",
            &[],
        )
        .await
        .expect("log")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// `ops.stream_offsets` of the tests' group: (topic, partition, next, high watermark).
async fn offsets(client: &Client) -> Vec<(String, i32, i64, i64)> {
    client
        .query(
            "SELECT topic, partition, next_offset, high_watermark FROM ops.stream_offsets
              WHERE consumer_group = 'tests' ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("offsets")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn structured(id: &str, customer: &str) -> String {
    serde_json::json!({
        "specversion": "1.0", "type": "customer_registered", "source": "crm", "id": id,
        "time": "2026-03-01T10:00:00Z", "data": {"customer_id": customer, "city": "Rome"}
    })
    .to_string()
}

#[tokio::test]
async fn structured_cloudevents_are_appended_with_their_attributes() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("crm", 1).await;
    let ct = [(
        "content-type",
        "application/cloudevents+json; charset=UTF-8",
    )];
    let values = [structured("e1", "C1"), structured("e2", "C2")];
    broker
        .produce(
            "crm",
            0,
            vec![
                record(Some(values[0].as_bytes()), &ct),
                // no content-type: still read as a structured event (no --type given)
                record(Some(values[1].as_bytes()), &[]),
            ],
        )
        .await;
    let summary = stream_to_end(&db, &options(&broker, &["crm"], None)).await;
    assert_eq!(
        (summary.records, summary.inserted, summary.rejected),
        (2, 2, 0)
    );
    let client = db.client().await;
    let got = log(&client).await;
    let expected: Vec<Row> = [("e1", "C1"), ("e2", "C2")]
        .iter()
        .map(|(id, c)| {
            (
                id.to_string(),
                "customer_registered".into(),
                "crm".into(),
                at("2026-03-01T10:00:00Z"),
                format!(r#"{{"customer_id":"{c}","city":"Rome"}}"#),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(offsets(&client).await, [("crm".into(), 0, 2, 2)]);
}

#[tokio::test]
async fn binary_cloudevents_are_the_same_events_as_structured_ones() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("crm-binary", 1).await;
    let headers = |id: &'static str| {
        vec![
            ("ce_specversion", "1.0"),
            ("ce_type", "customer_registered"),
            ("ce_source", "crm"),
            ("ce_id", id),
            ("ce_time", "2026-03-01T10:00:00Z"),
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]
    };
    broker
        .produce(
            "crm-binary",
            0,
            vec![
                record(
                    Some(br#"{"customer_id":"C1","city":"Rome"}"#),
                    &headers("e1"),
                ),
                record(
                    Some(br#"{"customer_id":"C2","city":"Rome"}"#),
                    &headers("e2"),
                ),
            ],
        )
        .await;
    // with --type given: records with CloudEvents headers stay CloudEvents
    let summary = stream_to_end(&db, &options(&broker, &["crm-binary"], Some(clicks()))).await;
    assert_eq!((summary.inserted, summary.rejected), (2, 0));
    let binary = log(&db.client().await).await;

    let (db2, broker2) = (TestDb::new().await, Broker::start().await);
    broker2.create_topic("crm", 1).await;
    let values = [structured("e1", "C1"), structured("e2", "C2")];
    let ct = [("content-type", "application/cloudevents+json")];
    broker2
        .produce(
            "crm",
            0,
            values
                .iter()
                .map(|v| record(Some(v.as_bytes()), &ct))
                .collect(),
        )
        .await;
    stream_to_end(&db2, &options(&broker2, &["crm"], None)).await;
    assert_eq!(binary, log(&db2.client().await).await);
    assert_eq!(binary.len(), 2);
}

#[tokio::test]
async fn plain_json_values_take_type_source_and_time_from_the_options() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clickstream_events", 1).await;
    let values: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"event_type": "page_view", "customer_id": "CUST_0004{i}", "timestamp": "2026-10-05T04:53:5{i}"}}"#
            )
        })
        .collect();
    let produced = broker
        .produce(
            "clickstream_events",
            0,
            values
                .iter()
                .map(|v| record(Some(v.as_bytes()), &[]))
                .collect(),
        )
        .await;
    let summary = stream_to_end(
        &db,
        &options(&broker, &["clickstream_events"], Some(clicks())),
    )
    .await;
    assert_eq!((summary.inserted, summary.rejected), (5, 0));
    let client = db.client().await;
    let expected: Vec<Row> = values
        .iter()
        .zip(&produced)
        .enumerate()
        .map(|(i, (v, offset))| {
            (
                format!("clickstream_events/0/{offset}"),
                "page_viewed".into(),
                "web".into(),
                at(&format!("2026-10-05T04:53:5{i}Z")),
                v.clone(),
            )
        })
        .collect();
    assert_eq!(log(&client).await, expected);

    // consumed again from the start (another group): the same ids, nothing twice
    let mut again = options(&broker, &["clickstream_events"], Some(clicks()));
    again.group = "replay".into();
    let summary = stream_to_end(&db, &again).await;
    assert_eq!((summary.inserted, summary.duplicates), (0, 5));
    assert_eq!(log(&client).await, expected);
}

#[tokio::test]
async fn a_poison_record_among_good_ones_is_quarantined_and_the_rest_goes_on() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 1).await;
    let good = |i: u32| format!(r#"{{"customer_id":"C{i}","timestamp":"2026-10-05T04:53:59"}}"#);
    let oversized = format!(
        r#"{{"customer_id":"{}","timestamp":"2026-10-05"}}"#,
        "x".repeat(2_000)
    );
    let binary_without_type = [
        ("ce_specversion", "1.0"),
        ("ce_source", "s"),
        ("ce_id", "b1"),
    ];
    let records = vec![
        record(Some(good(1).as_bytes()), &[]),
        record(Some(b"not json at all"), &[]),
        record(Some(good(2).as_bytes()), &[]),
        record(Some(b"[1, 2, 3]"), &[]),
        record(Some(oversized.as_bytes()), &[]),
        record(None, &[]),
        record(
            Some(br#"{"customer_id":"C9","timestamp":"last tuesday"}"#),
            &[],
        ),
        record(Some(br#"{"a":1}"#), &binary_without_type),
        record(Some(&[0xff, 0xfe, b'{']), &[]),
        record(Some(good(3).as_bytes()), &[]),
    ];
    let offsets_of = broker.produce("clicks", 0, records).await;
    let summary = stream_to_end(&db, &options(&broker, &["clicks"], Some(clicks()))).await;
    assert_eq!(
        (summary.records, summary.inserted, summary.rejected),
        (10, 3, 7)
    );
    let client = db.client().await;
    let ids: Vec<String> = log(&client).await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        [0, 2, 9].map(|i| format!("clicks/0/{}", offsets_of[i]))
    );
    let rejected: Vec<(String, i64, String)> = client
        .query(
            "SELECT file, line, reason FROM event_log.rejected WHERE stage = 'ingest' ORDER BY line",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        (1, "the value must be a JSON object, got not json at all"),
        (3, "the value must be a JSON object, got [1, 2, 3]"),
        (
            4,
            &*format!(
                "is {} bytes, more than the limit of 1000 bytes",
                oversized.len()
            ),
        ),
        (5, "no value (a tombstone)"),
        (6, "\"last tuesday\" is not an ISO 8601 date or timestamp"),
        (7, "missing required attribute \"type\""),
        (8, "the value is not UTF-8"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
    for ((file, line, reason), (i, want)) in rejected.iter().zip(expected) {
        assert_eq!(file, "kafka:clicks/0");
        assert_eq!(*line, offsets_of[i]);
        assert!(reason.contains(want), "offset {line}: {reason}");
    }
    assert_eq!(offsets(&client).await, [("clicks".into(), 0, 10, 10)]);

    // dvault rejected shows where: topic/partition:offset
    let shown = dvault::status::rejected(&client, 10)
        .await
        .expect("rejected");
    assert!(
        shown.contains(&format!(
            "kafka:clicks/0:{}: the record has no value",
            offsets_of[5]
        )),
        "{shown}"
    );
}

#[tokio::test]
async fn two_partitions_are_consumed_and_resumed_from_the_stored_offsets() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 2).await;
    let batch = |p: i32, from: u32, n: u32| {
        (from..from + n)
            .map(|i| {
                let v =
                    format!(r#"{{"customer_id":"P{p}-{i}","timestamp":"2026-10-05T04:53:59"}}"#);
                record(Some(v.as_bytes()), &[])
            })
            .collect::<Vec<_>>()
    };
    broker.produce("clicks", 0, batch(0, 0, 30)).await;
    broker.produce("clicks", 1, batch(1, 0, 20)).await;
    let opts = options(&broker, &["clicks"], Some(clicks()));
    let first = stream_to_end(&db, &opts).await;
    assert_eq!(
        (first.partitions, first.records, first.inserted),
        (2, 50, 50)
    );
    let client = db.client().await;
    assert_eq!(
        offsets(&client).await,
        [("clicks".into(), 0, 30, 30), ("clicks".into(), 1, 20, 20)]
    );

    // dvault status shows each partition's place
    let status = dvault::status::collect(&client)
        .await
        .expect("status")
        .to_string();
    for line in [
        "streams:    0 records not consumed",
        "  tests clicks/0                          0 behind (offset 30 of 30, ",
        "  tests clicks/1                          0 behind (offset 20 of 20, ",
    ] {
        assert!(status.contains(line), "{line:?} not in\n{status}");
    }

    // more arrives; the next run starts where the first stopped
    broker.produce("clicks", 0, batch(0, 30, 5)).await;
    broker.produce("clicks", 1, batch(1, 20, 7)).await;
    let second = stream_to_end(&db, &opts).await;
    assert_eq!(
        (second.records, second.inserted, second.duplicates),
        (12, 12, 0)
    );
    assert_eq!(
        offsets(&client).await,
        [("clicks".into(), 0, 35, 35), ("clicks".into(), 1, 27, 27)]
    );
    let per_partition: Vec<(String, i64)> = client
        .query(
            "SELECT split_part(event_id, '/', 2), count(*) FROM event_log.events GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("count")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_partition, [("0".into(), 35), ("1".into(), 27)]);

    // a third run finds nothing new
    let third = stream_to_end(&db, &opts).await;
    assert_eq!(third.records, 0);
}

/// `dvault stream` as a process, on `topic`, to the end of every partition.
fn spawn_stream(
    db: &TestDb,
    broker: &Broker,
    topic: &str,
    batch_size: usize,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args([
            "stream",
            "--topic",
            topic,
            "--group",
            "tests",
            "--type",
            "page_viewed",
            "--source",
            "web",
            "--time-field",
            "timestamp",
            "--batch-size",
            &batch_size.to_string(),
            "--exit-at-end",
        ])
        .env("DATABASE_URL", &db.url)
        .env("DVAULT_KAFKA_BROKERS", &broker.addr)
        .env("DVAULT_STREAM_MAX_WAIT_MS", "100")
        // a fetch brings one record batch of the 500 produced at once: many batches
        .env("DVAULT_STREAM_FETCH_BYTES", "1024")
        .stdout(Stdio::null())
        .spawn()
        .expect("start dvault stream")
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn a_stream_killed_mid_batch_resumes_with_nothing_lost_and_nothing_twice() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 2).await;
    let per_partition = 6_000;
    for p in 0..2 {
        let records = (0..per_partition)
            .map(|i| {
                let v = format!(
                    r#"{{"customer_id":"C{p}-{i}","page":"/p/{i}","timestamp":"2026-10-05T04:53:59"}}"#
                );
                record(Some(v.as_bytes()), &[])
            })
            .collect();
        broker.produce("clicks", p, records).await;
    }
    let client = db.client().await;
    let total = 2 * per_partition;

    for kill in 1..=2 {
        let mut child = spawn_stream(&db, &broker, "clicks", 100);
        let threshold = total as i64 * kill / 3;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = count(&client, "SELECT count(*) FROM event_log.events").await;
            if n >= threshold {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("kill {kill}: the stream exited before it was killed: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: only {n} events after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "kill {kill}: it had finished ({status})");
        // the offsets and the log agree at the kill: per partition, the events
        // before the stored offset are in the log, and no other
        for (topic, partition, next, _) in offsets(&client).await {
            let in_log = count(
                &client,
                &format!(
                    "SELECT count(*) FROM event_log.events WHERE event_id LIKE '{topic}/{partition}/%'"
                ),
            )
            .await;
            assert_eq!(in_log, next, "kill {kill}: partition {partition}");
        }
    }

    let mut child = spawn_stream(&db, &broker, "clicks", 1_000);
    let status = child.wait().expect("wait");
    assert!(status.success(), "the last run failed: {status}");
    let events = count(&client, "SELECT count(*) FROM event_log.events").await;
    let distinct = count(
        &client,
        "SELECT count(DISTINCT payload::text) FROM event_log.events",
    )
    .await;
    assert_eq!((events, distinct), (total as i64, total as i64));
    assert_eq!(
        offsets(&client).await,
        [
            (
                "clicks".into(),
                0,
                per_partition as i64,
                per_partition as i64
            ),
            (
                "clicks".into(),
                1,
                per_partition as i64,
                per_partition as i64
            )
        ]
    );
    // every produced record once, at its place
    let expected_ids = count(
        &client,
        &format!(
            "SELECT count(*) FROM event_log.events e
               JOIN (SELECT p, o FROM generate_series(0, 1) p, generate_series(0, {}) o) g
                 ON e.event_id = format('clicks/%s/%s', g.p, g.o)",
            per_partition - 1
        ),
    )
    .await;
    assert_eq!(expected_ids, total as i64);
}

#[tokio::test]
async fn a_stored_offset_the_broker_does_not_have_stops_the_stream_naming_it() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 1).await;
    let v = br#"{"customer_id":"C1","timestamp":"2026-10-05"}"#;
    broker
        .produce(
            "clicks",
            0,
            vec![record(Some(v), &[]), record(Some(v), &[])],
        )
        .await;
    // the topic was created again since: the stored offset is past its end
    let mut client = db.client().await;
    client
        .execute(
            "INSERT INTO ops.stream_offsets (consumer_group, topic, partition, next_offset, high_watermark)
             VALUES ('tests', 'clicks', 0, 100, 100)",
            &[],
        )
        .await
        .expect("offset");
    let (_stopper, shutdown) = Shutdown::manual();
    let opts = options(&broker, &["clicks"], Some(clicks()));
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        stream::run(&mut client, &opts, shutdown),
    )
    .await
    .expect("in time")
    .expect_err("beyond the end");
    assert!(
        err.to_string().starts_with(
            "clicks/0: offset 100 is beyond the end of the partition (its next offset is 2)"
        ),
        "{err}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        0
    );
}

/// Each raw vault table's rows without `load_dts` and `event_seq` (the arrival time and
/// the place in the log, which differ between two logs filled at different moments and
/// in another order), as one md5 per table.
async fn vault_without_arrival_times(client: &Client) -> Vec<(String, String, i64)> {
    let tables = table_names(client, "raw_vault").await;
    let mut out = Vec::new();
    for t in tables {
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), 'empty'), count(*)
                       FROM (SELECT (to_jsonb(t) - 'load_dts' - 'event_seq')::text AS r FROM raw_vault.{t} t) x"
                ),
                &[],
            )
            .await
            .expect("checksum");
        out.push((t, row.get(0), row.get(1)));
    }
    out
}

#[tokio::test]
async fn the_demo_clickstream_streamed_through_a_topic_gives_the_vault_of_the_file_route() {
    use dvault::events::ingest::{IngestOptions, ingest_file};
    let dir = std::env::temp_dir().join(format!("dvault-stream-gen-{}", rand::random::<u64>()));
    dvault::generate::generate(&dvault::generate::GenOptions {
        seed: 7,
        customers: 300,
        products: 120,
        orders: 900,
        days: 90,
        end: chrono::NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
        dirty: 0.0,
        out: dir.clone(),
    })
    .expect("generate");
    let all = dir.join("events.ndjson");
    // the clickstream as the web shop would stream it: the plain JSON of each view
    let text = std::fs::read_to_string(&all).expect("events");
    let (mut views, mut rest) = (Vec::new(), String::new());
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("json");
        if event["type"] == "product_viewed" {
            views.push(event["data"].to_string());
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    assert!(views.len() > 1_000, "only {} views", views.len());
    let others = dir.join("others.ndjson");
    std::fs::write(&others, rest).expect("write");

    // the file route: every event from the file
    let file_db = TestDb::new().await;
    let mut client = file_db.client().await;
    ingest_file(&mut client, &all, &IngestOptions::default())
        .await
        .expect("ingest");
    crate::harness::load_all(&mut client).await;
    let by_file = vault_without_arrival_times(&client).await;

    // the stream route: the rest from the file, the views through two partitions
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    let mut client = db.client().await;
    ingest_file(&mut client, &others, &IngestOptions::default())
        .await
        .expect("ingest");
    broker.create_topic("clickstream_events", 2).await;
    for p in 0..2 {
        let records = views
            .iter()
            .skip(p)
            .step_by(2)
            .map(|v| record(Some(v.as_bytes()), &[]))
            .collect();
        broker
            .produce("clickstream_events", p as i32, records)
            .await;
    }
    let plain = Plain {
        event_type: "product_viewed".into(),
        source: "web".into(),
        time_field: Some("viewed_at".into()),
        id_field: None,
    };
    let summary = stream_to_end(&db, &options(&broker, &["clickstream_events"], Some(plain))).await;
    assert_eq!(
        (summary.inserted, summary.rejected),
        (views.len() as u64, 0)
    );
    crate::harness::load_all(&mut client).await;
    let by_stream = vault_without_arrival_times(&client).await;
    assert!(
        by_file
            .iter()
            .any(|(t, _, n)| t == "link_product_view" && *n > 1_000),
        "{by_file:?}"
    );
    assert_eq!(by_stream, by_file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_running_stream_and_a_following_daemon_load_new_records_within_seconds() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clickstream_events", 2).await;
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dvault"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env_remove("DVAULT_SCHEDULE")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start dvault")
    };
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let mut daemon = spawn(&[
        "daemon",
        "--follow",
        "--schedule",
        "off",
        "--metrics-listen",
        &metrics,
        "--poll-secs",
        "1",
    ]);
    let streaming = spawn(&[
        "stream",
        "--brokers",
        &broker.addr,
        "--topic",
        "clickstream_events",
        "--type",
        "product_viewed",
        "--source",
        "web",
        "--time-field",
        "viewed_at",
        "--max-wait-ms",
        "100",
    ]);
    let client = db.client().await;
    let views = |round: i64, p: i32, n: usize| {
        (0..n)
            .map(|i| {
                let v = format!(
                    r#"{{"session_id":"S{round}-{p}-{i}","customer_id":"C00000{i}","product_id":"P00000{p}","viewed_at":"2026-10-05T04:53:59Z"}}"#
                );
                record(Some(v.as_bytes()), &[])
            })
            .collect::<Vec<_>>()
    };
    for round in 1..=2 {
        let produced = Instant::now();
        broker
            .produce("clickstream_events", 0, views(round, 0, 5))
            .await;
        broker
            .produce("clickstream_events", 1, views(round, 1, 5))
            .await;
        loop {
            let loaded = count(&client, "SELECT count(*) FROM raw_vault.link_product_view").await;
            if loaded == 10 * round {
                break;
            }
            assert!(
                produced.elapsed() < Duration::from_secs(10),
                "round {round}: {loaded} views loaded 10 s after they were produced"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "round {round}: produced to loaded in {:?}",
            produced.elapsed()
        );
    }
    // the daemon's /metrics shows each partition's place and lag, as of the stream's
    // last fetch (read from the database every --poll-secs)
    let deadline = Instant::now() + Duration::from_secs(15);
    let wanted = |p: i32| {
        let labels = format!(r#"group="dvault",topic="clickstream_events",partition="{p}""#);
        [
            format!("dvault_stream_lag_records{{{labels}}} 0\n"),
            format!("dvault_stream_offset{{{labels}}} 10\n"),
        ]
    };
    loop {
        let text = match reqwest::get(format!("http://{metrics}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let missing: Vec<String> = (0..2)
            .flat_map(wanted)
            .filter(|line| !text.contains(line.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics lacks {missing:?} after 15 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGTERM: the stream stops cleanly and says what it did
    let ok = Command::new("kill")
        .args(["-TERM", &streaming.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let out = streaming.wait_with_output().expect("stream output");
    assert!(out.status.success(), "{}", out.status);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("consumed 20 records from 2 partitions: 20 events appended in "),
        "{said}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
