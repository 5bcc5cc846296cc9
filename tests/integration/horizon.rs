//! The reader's horizon (only transactions of this database hold the loader back;
//! a run that cannot read committed events says what it waits for) and what a run
//! stopped mid-load records.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::harness::{TestDb, builtin_loader, with_dbname};
use dvault::events::{self, NewEvent, horizon};
use dvault::load::Partial;

fn customer(id: &str) -> NewEvent {
    NewEvent {
        event_id: format!("reg-{id}"),
        event_type: "customer_registered".into(),
        source: "crm".into(),
        occurred_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
        payload: serde_json::json!({
            "customer_id": id, "first_name": "Ann", "last_name": "Lee",
            "email": format!("{id}@example.com"), "phone": "+49 1", "city": "Rome",
            "country": "Italy", "signup_date": "2024-01-01"
        })
        .to_string(),
    }
}

/// `n` customers `{prefix}{i}`, appended (and committed) in transactions of 5,000.
async fn append_customers(client: &Client, prefix: &str, n: usize) {
    let all: Vec<NewEvent> = (0..n).map(|i| customer(&format!("{prefix}{i}"))).collect();
    for chunk in all.chunks(5_000) {
        let done = events::append(client, chunk).await.expect("append");
        assert_eq!(done.inserted as usize, chunk.len());
    }
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Run `dvault` against `url` and wait for it.
fn dvault(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("run dvault")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A database of its own on the same server, with a write transaction open in it
/// (it holds a transaction id) until dropped.
struct ForeignWriter {
    admin_url: String,
    name: String,
    client: Option<Client>,
    xid: i64,
}

impl ForeignWriter {
    async fn open(test_url: &str) -> ForeignWriter {
        let admin_url = with_dbname(test_url, "postgres");
        let admin = dvault::db::connect(&admin_url).await.expect("admin");
        let name = format!(
            "dvault_foreign_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the foreign database");
        let client = dvault::db::connect(&with_dbname(&admin_url, &name))
            .await
            .expect("connect to the foreign database");
        client
            .batch_execute("BEGIN; CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3);")
            .await
            .expect("open a write transaction");
        let xid: i64 = client
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .expect("its xid")
            .get(0);
        ForeignWriter {
            admin_url,
            name,
            client: Some(client),
            xid,
        }
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            c.batch_execute("ROLLBACK").await.expect("rollback");
        }
        let admin = dvault::db::connect(&self.admin_url).await.expect("admin");
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop the foreign database");
    }
}

/// Short write transactions in another database, on `sessions` connections, until
/// `stop` is set; how many committed.
async fn foreign_churn(url: String, sessions: usize, stop: Arc<AtomicBool>) -> u64 {
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (url, stop) = (url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = dvault::db::connect(&url).await.expect("foreign session");
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) {
                c.batch_execute("BEGIN; INSERT INTO t VALUES (1); SELECT pg_sleep(0.001); COMMIT")
                    .await
                    .expect("a foreign write");
                done += 1;
            }
            done
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("foreign session task");
    }
    done
}

#[tokio::test]
async fn an_event_just_committed_is_read_while_transactions_of_another_database_come_and_go() {
    // A transaction of another database that ends between the read's snapshot and
    // its look at pg_stat_activity is in neither: unknown, it bounds the horizon
    // like one of this database (safe), and a reader that took that for the end of
    // the log stopped short of events committed before it started.
    let db = TestDb::new().await;
    let other = TestDb::new().await;
    let client = db.client().await;
    other
        .client()
        .await
        .batch_execute("CREATE TABLE t (x int)")
        .await
        .expect("the foreign table");
    let stop = Arc::new(AtomicBool::new(false));
    let churn = tokio::spawn(foreign_churn(other.url.clone(), 4, stop.clone()));

    let mut at = events::Checkpoint::START;
    let (mut straddled, mut missed) = (0, Vec::new());
    for i in 0..500 {
        let id = format!("C{i}");
        events::append(&client, &[customer(&id)])
            .await
            .expect("append");
        // a foreign transaction older than the event is still running?
        let older_running: bool = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= max(xid) FROM event_log.events",
                &[],
            )
            .await
            .expect("xmin")
            .get(0);
        straddled += older_running as u32;
        let read = events::read_after(&client, at, 10).await.expect("read");
        match read.last() {
            Some(e) if e.event_id == format!("reg-{id}") => at = e.position(),
            _ => missed.push(i),
        }
        if !missed.is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let foreign = churn.await.expect("churn");
    assert!(
        missed.is_empty(),
        "event {missed:?} was committed and not read"
    );
    assert!(
        straddled > 0 && foreign > 0,
        "no foreign transaction was running across an append ({foreign} foreign commits)"
    );
}

#[tokio::test]
async fn a_write_transaction_in_another_database_does_not_hold_the_loader_back() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let foreign = ForeignWriter::open(&db.url).await;
    // every event is written after the foreign transaction took its id
    append_customers(&client, "C", 300).await;
    let newest: i64 = count(
        &client,
        "SELECT max(xid)::text::bigint FROM event_log.events",
    )
    .await;
    assert!(
        newest > foreign.xid,
        "the events are newer than the foreign transaction"
    );

    // the horizon is past the events, though the foreign transaction is still open
    let still_open: i64 = count(
        &client,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_xid::text = '{}'",
            foreign.xid
        ),
    )
    .await;
    assert_eq!(still_open, 1, "the foreign transaction is open");
    let h = horizon::horizon(&client).await.expect("horizon");
    assert!(
        h.0 as i64 > newest,
        "horizon {h} below the events ({newest})"
    );

    // one pass loads them all (the old cluster-wide horizon loaded none)
    let l = builtin_loader(&client, 50_000).await;
    let summary = l.run(&mut client).await.expect("load");
    assert_eq!(summary.events, 300);
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        300
    );
    assert_eq!(
        horizon::waiting(&client, dvault::load::CONSUMER)
            .await
            .expect("waiting"),
        None
    );

    // and `dvault load` of more events says it loaded them and records a success
    append_customers(&client, "D", 50).await;
    let out = dvault(&db.url, &["load"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("loaded 50 events"), "{said}");
    let run = client
        .query_one(
            "SELECT status, events_read FROM ops.load_runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the run");
    assert_eq!(run.get::<_, String>(0), "succeeded");
    assert_eq!(run.get::<_, i64>(1), 50);
    foreign.close().await;
}

#[tokio::test]
async fn an_open_write_transaction_in_this_database_holds_the_loader_back_and_the_run_says_so() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; CREATE TEMP TABLE held (x int);")
        .await
        .expect("open a write transaction");
    let row = blocker
        .query_one(
            "SELECT pg_current_xact_id()::text, pg_backend_pid(), current_database()::text",
            &[],
        )
        .await
        .expect("its xid");
    let (xid, pid, dbname): (String, i32, String) = (row.get(0), row.get(1), row.get(2));
    append_customers(&client, "C", 100).await;

    // the reader stops below the open transaction: it reads nothing
    let l = builtin_loader(&client, 50_000).await;
    assert_eq!(l.run(&mut client).await.expect("load").events, 0);
    let w = horizon::waiting(&client, dvault::load::CONSUMER)
        .await
        .expect("waiting")
        .expect("the events wait");
    assert_eq!(w.events, 100);
    assert_eq!(w.xid.to_string(), xid);
    let b = w.blocker.clone().expect("the blocker is known");
    assert_eq!(b.database.as_deref(), Some(dbname.as_str()));
    assert_eq!(b.pid, Some(pid));
    let expected =
        format!("waiting for transaction {xid} in database {dbname} (pid {pid}, open for ");
    assert!(w.to_string().starts_with(&expected), "{w}");

    // `dvault load` says so, exits 3 and records a blocked run, not a success
    let out = dvault(&db.url, &["load"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&expected), "{said}");
    assert!(said.contains("100 committed event(s)"), "{said}");
    let run = client
        .query_one(
            "SELECT status, events_read, error FROM ops.load_runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the run");
    assert_eq!(run.get::<_, String>(0), "blocked");
    assert_eq!(run.get::<_, i64>(1), 0);
    assert!(run.get::<_, String>(2).starts_with(&expected));
    let status = text(&dvault(&db.url, &["status"]));
    assert!(
        status.contains(&format!("waiting:    {expected}")),
        "{status}"
    );
    assert!(status.contains("blocked"), "{status}");

    // once it ends, everything loads
    blocker.batch_execute("COMMIT").await.expect("commit");
    let out = dvault(&db.url, &["load"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        100
    );
    assert_eq!(
        horizon::waiting(&client, dvault::load::CONSUMER)
            .await
            .expect("waiting"),
        None
    );
    assert!(!text(&dvault(&db.url, &["status"])).contains("waiting:"));
}

#[tokio::test]
async fn a_prepared_transaction_of_this_database_holds_the_loader_back() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let max: String = client
        .query_one("SHOW max_prepared_transactions", &[])
        .await
        .expect("setting")
        .get(0);
    let preparer = db.client().await;
    preparer
        .batch_execute("BEGIN; CREATE TABLE public.p (x int);")
        .await
        .expect("open a write transaction");
    let gid = format!("dvault_test_{}", rand::random::<u32>());
    let prepared = preparer
        .batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
        .await;
    if max == "0" {
        // what this server allows: no prepared transactions at all
        let e = prepared.expect_err("PREPARE TRANSACTION with max_prepared_transactions = 0");
        let said = e.as_db_error().map(|d| d.message().to_string());
        assert_eq!(
            said.as_deref(),
            Some("prepared transactions are disabled"),
            "{e:?}"
        );
        eprintln!(
            "SKIPPED the prepared-transaction case: this server has max_prepared_transactions = 0 \
             (PREPARE TRANSACTION is refused, checked above)"
        );
        return;
    }
    prepared.expect("prepare");
    append_customers(&client, "C", 10).await;
    let l = builtin_loader(&client, 50_000).await;
    assert_eq!(l.run(&mut client).await.expect("load").events, 0);
    let w = horizon::waiting(&client, dvault::load::CONSUMER)
        .await
        .expect("waiting")
        .expect("the events wait");
    assert_eq!(w.events, 10);
    assert!(
        w.to_string().contains(&format!("prepared as '{gid}'")),
        "{w}"
    );
    client
        .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
        .await
        .expect("rollback prepared");
    assert_eq!(l.run(&mut client).await.expect("load").events, 10);
}

#[tokio::test]
async fn a_load_asked_to_stop_starts_no_new_batch_and_counts_exactly_what_it_committed() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append_customers(&client, "C", 1_000).await;
    for read_ahead in [false, true] {
        let mut l = builtin_loader(&client, 100).await;
        if read_ahead {
            l = l.with_read_ahead(&db.url);
        }
        // asked before each batch: the third time, say stop
        let asked = AtomicU32::new(0);
        let stop = || asked.fetch_add(1, Ordering::SeqCst) >= 2;
        let before = count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await;
        let Err(Partial {
            committed,
            error: None,
        }) = l.run_until(&mut client, &stop).await
        else {
            panic!("the load did not stop (read ahead: {read_ahead})");
        };
        assert_eq!(asked.load(Ordering::SeqCst), 3, "asked once per batch");
        assert_eq!((committed.batches, committed.events), (2, 200));
        let hubs = count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await;
        assert_eq!(hubs - before, 200);
        assert_eq!(committed.rows.get("hub_customer"), Some(&200));
        let pending: i64 = count(
            &client,
            "SELECT count(*) FROM event_log.events e, ops.checkpoints c
              WHERE c.consumer = 'vault_loader' AND (e.xid, e.seq) > (c.xid, c.seq)",
        )
        .await;
        assert_eq!(pending, 1_000 - hubs);
    }
}

#[tokio::test]
async fn sigterm_mid_load_starts_no_new_batch_and_the_run_counts_what_was_committed() {
    let db = TestDb::new().await;
    let client = db.client().await;
    append_customers(&client, "C", 20_000).await;
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args([
            "--log",
            "dvault=info",
            "daemon",
            "--once",
            "--batch-size",
            "200",
        ])
        .args(["--stop-grace-secs", "30"])
        .env("DATABASE_URL", &db.url)
        .env_remove("DVAULT_SCHEDULE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let loaded = || async { count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await };
    let started = Instant::now();
    while loaded().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no batch within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ok = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let at_stop = loaded().await;
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "exit {status}");

    // the batch in hand finished, none started after it
    let after = loaded().await;
    assert!(after < 20_000, "the load ran to the end: {after}");
    assert!(
        after - at_stop <= 200,
        "{} events loaded after SIGTERM",
        after - at_stop
    );
    // the run counts exactly what the vault holds
    let run = client
        .query_one(
            "SELECT status, events_read, rows_written, rejected, error FROM ops.load_runs",
            &[],
        )
        .await
        .expect("the run");
    assert_eq!(run.get::<_, String>(0), "cancelled");
    assert_eq!(run.get::<_, i64>(1), after);
    let rows: serde_json::Value = run.get(2);
    let rows = rows.as_object().expect("rows_written is an object");
    assert!(!rows.is_empty(), "rows_written is empty");
    for (table, n) in rows {
        let held = count(&client, &format!("SELECT count(*) FROM raw_vault.{table}")).await;
        assert_eq!(n.as_i64(), Some(held), "{table}");
    }
    assert_eq!(
        rows.get("hub_customer").and_then(|n| n.as_i64()),
        Some(after)
    );
    let rejected = count(
        &client,
        "SELECT count(*) FROM event_log.rejected WHERE stage = 'load'",
    )
    .await;
    assert_eq!(run.get::<_, Option<i64>>(3), Some(rejected));
    let error: String = run.get(4);
    assert!(error.contains("no batch started after the stop"), "{error}");
    assert!(!error.contains("rolled back"), "{error}");
}
