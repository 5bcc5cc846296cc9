use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use rand::RngExt;

use dvault::events::{self, Checkpoint, NewEvent};

use crate::harness::{TestDb, read_at_least};

fn event(id: &str) -> NewEvent {
    NewEvent {
        event_id: id.to_string(),
        event_type: "customer_registered".into(),
        source: "test".into(),
        occurred_at: Utc::now(),
        payload: format!(r#"{{"customer_id":"{id}"}}"#),
    }
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let again = dvault::db::migrate(&mut client).await.expect("migrate");
    assert!(again.applied.is_empty(), "applied {:?}", again.applied);
    assert_eq!(again.version, Some(dvault::db::latest_known_version()));
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace
              WHERE nspname IN ('event_log','raw_vault','business_vault','mart','ops')
              ORDER BY 1",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        schemas,
        ["business_vault", "event_log", "mart", "ops", "raw_vault"]
    );
}

#[tokio::test]
async fn the_log_refuses_update_delete_and_truncate() {
    let db = TestDb::new().await;
    let client = db.client().await;
    events::append(&client, &[event("a")])
        .await
        .expect("append");
    for sql in [
        "UPDATE event_log.events SET event_type = 'x'",
        "DELETE FROM event_log.events",
        "TRUNCATE event_log.events",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let message = err.as_db_error().map(|e| e.message().to_string());
        let verb = sql.split_whitespace().next().unwrap_or_default();
        assert_eq!(
            message.as_deref(),
            Some(format!("event_log.events is append-only: {verb} is not allowed").as_str()),
            "{sql}"
        );
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn appending_the_same_event_twice_stores_it_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let first = events::append(&client, &[event("a"), event("b")])
        .await
        .expect("append");
    assert_eq!(first.inserted, 2);
    let second = events::append(&client, &[event("b"), event("c")])
        .await
        .expect("append");
    assert_eq!(second.inserted, 1);
    assert_eq!(second.duplicates, 1);
    let read = read_at_least(&client, Checkpoint::START, 3).await;
    let ids: Vec<&str> = read.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(read[0].payload.json(), r#"{"customer_id":"a"}"#);
}

#[tokio::test]
async fn checkpoints_round_trip() {
    let db = TestDb::new().await;
    let client = db.client().await;
    assert_eq!(
        events::load_checkpoint(&client, "x").await.expect("load"),
        Checkpoint::START
    );
    events::append(&client, &[event("a")])
        .await
        .expect("append");
    let read = read_at_least(&client, Checkpoint::START, 1).await;
    let e = &read[0];
    events::save_checkpoint(&client, "x", e.position())
        .await
        .expect("save");
    assert_eq!(
        events::load_checkpoint(&client, "x").await.expect("load"),
        e.position()
    );
    assert!(
        events::read_after(&client, e.position(), 10)
            .await
            .expect("read")
            .is_empty()
    );
}

/// The classic trap: sequence numbers are handed out at insert but become visible
/// at commit. Writers here hold their transactions open for random times (some
/// take their transaction id early, some roll back) while a reader consumes from
/// its checkpoint in small pages. The reader must see every committed event exactly
/// once, never a rolled-back one, in strictly increasing checkpoint order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_skips_events_that_commit_late() {
    const WRITERS: usize = 6;
    const TXS_PER_WRITER: usize = 25;
    let db = TestDb::new().await;
    let pool = db.pool(WRITERS + 2);

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            let mut rolled_back = Vec::new();
            for t in 0..TXS_PER_WRITER {
                let (early_xid, n, delay, rollback) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_bool(0.3),
                        rng.random_range(1..=4),
                        rng.random_range(0..25),
                        rng.random_bool(0.15),
                    )
                };
                let mut client = pool.get().await.expect("connection");
                let tx = client.transaction().await.expect("begin");
                if early_xid {
                    tx.execute("SELECT pg_current_xact_id()", &[])
                        .await
                        .expect("xid");
                    tokio::time::sleep(Duration::from_millis(delay / 2)).await;
                }
                let batch: Vec<NewEvent> =
                    (0..n).map(|i| event(&format!("w{w}-t{t}-e{i}"))).collect();
                events::append(&*tx, &batch).await.expect("append");
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let ids = batch.into_iter().map(|e| e.event_id);
                if rollback {
                    tx.rollback().await.expect("rollback");
                    rolled_back.extend(ids);
                } else {
                    tx.commit().await.expect("commit");
                    committed.extend(ids);
                }
            }
            (committed, rolled_back)
        }));
    }

    let reader_pool = pool.clone();
    // set to the number of committed events once every writer is done
    let expected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let reader_expected = expected.clone();
    let reader = tokio::spawn(async move {
        let client = reader_pool.get().await.expect("connection");
        let mut at = Checkpoint::START;
        let mut seen: Vec<(Checkpoint, String)> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let expected = reader_expected.load(std::sync::atomic::Ordering::SeqCst);
            // Stop once everything committed was read, or give up at the deadline
            // (the assertions below then say what is missing). Tests in other
            // databases may hold back the reader for a while: that is waiting, not loss.
            if seen.len() >= expected || std::time::Instant::now() > deadline {
                break;
            }
            let page = events::read_after(&**client, at, 7).await.expect("read");
            if page.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            for e in page {
                assert!(e.position() > at, "positions must increase");
                at = e.position();
                seen.push((at, e.event_id));
            }
        }
        seen
    });

    let mut committed = HashSet::new();
    let mut rolled_back = HashSet::new();
    for w in writers {
        let (c, r) = w.await.expect("writer");
        committed.extend(c);
        rolled_back.extend(r);
    }
    expected.store(committed.len(), std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.expect("reader");

    let seen_ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    let unique: HashSet<&String> = seen_ids.iter().copied().collect();
    assert_eq!(unique.len(), seen_ids.len(), "an event was read twice");
    let committed_refs: HashSet<&String> = committed.iter().collect();
    let missing: Vec<_> = committed_refs.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "skipped {} committed events, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let phantom: Vec<_> = unique.difference(&committed_refs).collect();
    assert!(
        phantom.is_empty(),
        "read {} events that were not committed, e.g. {:?}",
        phantom.len(),
        &phantom[..phantom.len().min(5)]
    );
    assert!(
        rolled_back.iter().all(|id| !unique.contains(id)),
        "read a rolled-back event"
    );
    assert!(committed.len() > WRITERS * TXS_PER_WRITER / 2);
}

/// A CloudEvent line; the same id and content give the same event.
fn cloud_event(id: &str) -> String {
    serde_json::json!({"specversion": "1.0", "id": id, "source": "crm",
        "type": "customer_registered", "time": "2026-01-01T00:00:00Z",
        "data": {"customer_id": id}})
    .to_string()
}

async fn deadlocks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("pg_stat_database")
        .get(0)
}

/// Waits until the statistics collector shows more than `before` deadlocks.
async fn wait_for_a_deadlock(client: &tokio_postgres::Client, before: i64) {
    for _ in 0..100 {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .expect("clear snapshot");
        if deadlocks(client).await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no deadlock happened: the test did not test what it says");
}

#[tokio::test]
async fn writers_deadlocked_on_the_same_new_events_both_get_through() {
    use dvault::api::{ApiConfig, ApiKey, Scope};
    use dvault::events::ingest::{IngestOptions, ingest_file};

    let db = TestDb::new().await;
    let client = db.client().await;
    // an event named pause-* holds its writer for half a second after the events
    // before it are in the unique index: two writers sending the same new events in
    // opposite orders then wait on each other, and PostgreSQL cancels one
    client
        .batch_execute(
            "CREATE FUNCTION public.pause() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN
                   IF NEW.event_id LIKE 'pause-%' THEN PERFORM pg_sleep(0.5); END IF;
                   RETURN NEW;
               END$$;
             CREATE TRIGGER pause BEFORE INSERT ON event_log.events
               FOR EACH ROW EXECUTE FUNCTION public.pause();",
        )
        .await
        .expect("trigger");

    // two files through `dvault ingest`'s code
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&db.name);
    std::fs::create_dir_all(&dir).expect("dir");
    let (one, two) = (dir.join("one.ndjson"), dir.join("two.ndjson"));
    let lines = |ids: [&str; 3]| ids.map(cloud_event).join("\n") + "\n";
    std::fs::write(&one, lines(["a", "pause-1", "b"])).expect("write");
    std::fs::write(&two, lines(["b", "pause-2", "a"])).expect("write");
    let before = deadlocks(&client).await;
    let (mut c1, mut c2) = (db.client().await, db.client().await);
    let opts = IngestOptions::default();
    let (r1, r2) = tokio::join!(
        ingest_file(&mut c1, &one, &opts),
        ingest_file(&mut c2, &two, &opts)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (r1, r2) = (r1.expect("first file"), r2.expect("second file"));
    assert_eq!(r1.inserted + r2.inserted, 4, "{r1:?} {r2:?}");
    assert_eq!(r1.rejected + r2.rejected, 0, "{r1:?} {r2:?}");
    wait_for_a_deadlock(&client, before).await;

    // two POST /events
    let app = crate::api::TestApp::spawn(
        &db.url,
        ApiConfig {
            keys: vec![ApiKey::for_token(Scope::Write, "deadlock-test-token")],
            ..crate::api::open_config()
        },
    )
    .await;
    let before = deadlocks(&client).await;
    let post = |ids: [&'static str; 3]| {
        app.post(
            "/events",
            "application/x-ndjson",
            lines(ids),
            Some("deadlock-test-token"),
        )
    };
    let (p1, p2) = tokio::join!(post(["c", "pause-3", "d"]), post(["d", "pause-4", "c"]));
    for p in [p1, p2] {
        let status = p.status();
        let body: serde_json::Value = p.json().await.expect("json");
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["rejected"], 0, "{body}");
    }
    wait_for_a_deadlock(&client, before).await;
    app.stop().await;

    let mut ids: Vec<String> = client
        .query("SELECT event_id FROM event_log.events ORDER BY 1", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "a", "b", "c", "d", "pause-1", "pause-2", "pause-3", "pause-4"
        ]
    );
}
