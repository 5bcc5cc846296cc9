//! `dvault daemon`, run history and quality gates: the real binary where processes,
//! signals and a restarting server matter, the library for the checks themselves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::harness::{TestDb, load_all, load_all_with, vault_checksums, wait_visible};
use dvault::daemon::schedule::Schedule;
use dvault::events::{self, NewEvent};
use dvault::load::{self, Loader};
use dvault::mapping::Mappings;
use dvault::ops::quality::{self, Check, QualityConfig, Report, Scope};

// ---- events ---------------------------------------------------------------

fn event(ty: &str, source: &str, id: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: id.to_string(),
        event_type: ty.to_string(),
        source: source.to_string(),
        occurred_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
        payload: payload.to_string(),
    }
}

fn customer(id: &str) -> NewEvent {
    event(
        "customer_registered",
        "crm",
        &format!("reg-{id}"),
        serde_json::json!({
            "customer_id": id, "first_name": "Ann", "last_name": "Lee",
            "email": format!("{id}@example.com"), "phone": "+49 1", "city": "Rome",
            "country": "Italy", "signup_date": "2024-01-01"
        }),
    )
}

fn product(id: &str, price: serde_json::Value) -> NewEvent {
    event(
        "product_listed",
        "catalog",
        &format!("list-{id}-{price}"),
        serde_json::json!({"product_id": id, "name": "Mug", "category": "Home", "brand": "Acme", "price": price}),
    )
}

fn order(event_id: &str, order_id: &str, customer: &str, product: &str) -> NewEvent {
    event(
        "order_placed",
        "shop",
        event_id,
        serde_json::json!({
            "order_id": order_id, "customer_id": customer, "ordered_at": "2024-05-01T10:00:00Z",
            "channel": "web", "status": "placed",
            "lines": [{"line_no": 1, "product_id": product, "quantity": 2, "unit_price": 9.5, "discount": 0}]
        }),
    )
}

fn status_change(n: usize, status: &str) -> NewEvent {
    event(
        "order_status_changed",
        "shop",
        &format!("st-{n}-{status}"),
        serde_json::json!({"order_id": format!("O{n}"), "status": status}),
    )
}

async fn append(client: &Client, events: &[NewEvent]) {
    let done = events::append(client, events).await.expect("append");
    assert_eq!(
        done.inserted as usize,
        events.len(),
        "events already in the log"
    );
}

/// `n` customers `{prefix}{i}`, appended in transactions of 5,000.
async fn append_customers(client: &Client, prefix: &str, n: usize) {
    let all: Vec<NewEvent> = (0..n).map(|i| customer(&format!("{prefix}{i}"))).collect();
    for chunk in all.chunks(5_000) {
        append(client, chunk).await;
    }
}

// ---- the database ---------------------------------------------------------

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Events after the loader's checkpoint.
async fn pending(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM event_log.events e
          WHERE (e.xid, e.seq) > coalesce(
            (SELECT (c.xid, c.seq) FROM ops.checkpoints c WHERE c.consumer = 'vault_loader'),
            ('0'::xid8, 0::bigint))",
    )
    .await
}

/// Poll `what` every 10 ms until it holds or `limit` passes; how long it took.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// The vault equals a rebuild of the whole log: nothing lost, nothing twice.
async fn assert_equals_rebuild(client: &mut Client) {
    let incremental = vault_checksums(client).await;
    let loader = Loader::new(client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    load::rebuild(client, &loader).await.expect("rebuild");
    load_all_with(client, &loader).await;
    assert_eq!(incremental, vault_checksums(client).await);
}

// ---- the binary -----------------------------------------------------------

/// A `dvault` process whose log lines are collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(url: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dvault"))
            .args(["--log", "dvault=info"])
            .args(args)
            .env("DATABASE_URL", url)
            .env_remove("DVAULT_SCHEDULE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dvault");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Proc { child, log }
    }

    fn daemon(url: &str, args: &[&str]) -> Proc {
        let mut all = vec!["daemon"];
        all.extend_from_slice(args);
        Proc::spawn(url, &all)
    }

    fn output(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait until the output contains `needle` `times` times.
    async fn wait_for(&self, needle: &str, times: usize, limit: Duration) {
        let started = Instant::now();
        while self.output().matches(needle).count() < times {
            assert!(
                started.elapsed() < limit,
                "no \"{needle}\" (x{times}) after {limit:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // let the reader threads drain the pipes
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "still running after {limit:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and a clean exit.
    async fn stop(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "exit {status} after SIGTERM; output:\n{}",
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

const FOLLOW: [&str; 3] = ["--follow", "--schedule", "off"];

/// `--follow --schedule off` and `extra`.
fn following<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = FOLLOW.to_vec();
    all.extend_from_slice(extra);
    all
}

// ---- following ------------------------------------------------------------

#[tokio::test]
async fn a_following_daemon_loads_a_new_event_within_two_seconds_and_batches_bursts() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut daemon = Proc::daemon(&db.url, &following(&["--metrics-listen", listen.as_str()]));
    daemon
        .wait_for("following the event log", 1, Duration::from_secs(30))
        .await;

    append(&client, &[customer("C1")]).await;
    let took = wait_until(
        Duration::from_secs(10),
        "the event to be loaded",
        || async { count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await == 1 },
    )
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // a burst of 50 appends is loaded by a few runs, not 50
    for i in 0..50 {
        append(&client, &[customer(&format!("B{i}"))]).await;
    }
    wait_until(
        Duration::from_secs(10),
        "the burst to be loaded",
        || async { count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await == 51 },
    )
    .await;
    // the run row is finished right after the batch commits
    wait_until(
        Duration::from_secs(10),
        "the runs to be recorded",
        || async {
            count(
                &client,
                "SELECT coalesce(sum(events_read), 0)::bigint FROM ops.load_runs
              WHERE trigger = 'follow' AND status = 'succeeded'",
            )
            .await
                == 51
        },
    )
    .await;
    let runs = count(&client, "SELECT count(*) FROM ops.load_runs").await;
    assert!(runs <= 12, "{runs} follow runs for 51 events");

    // the gauges follow each run within moments
    let expected = [
        "dvault_events_loaded_total{trigger=\"follow\"} 51",
        "dvault_daemon_db_up 1",
        "dvault_daemon_following 1",
        "dvault_loader_lag_events 0",
        "dvault_rows_written_total{table=\"hub_customer\"} 51",
    ];
    let started = Instant::now();
    let metrics = loop {
        let metrics = reqwest::get(format!("http://{listen}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|line| !metrics.lines().any(|l| l == *line))
            .collect();
        if missing.is_empty() {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {missing:?} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("dvault_batch_duration_seconds_count"));
    assert!(metrics.contains("dvault_last_success_timestamp_seconds{trigger=\"follow\"}"));
    daemon.stop().await;
}

// ---- the lock ---------------------------------------------------------------

#[tokio::test]
async fn two_daemons_never_load_at_once_and_the_standby_takes_over() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append_customers(&client, "A", 2_000).await;
    let mut first = Proc::daemon(&db.url, &following(&["--batch-size", "100"]));
    first
        .wait_for("following the event log", 1, Duration::from_secs(30))
        .await;

    // a second one with --no-wait says who works and exits
    let mut refused = Proc::daemon(&db.url, &following(&["--no-wait"]));
    let status = refused.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let said = refused.output();
    assert!(
        said.contains("another dvault daemon is working on this database")
            && said.contains("dvault daemon"),
        "{said}"
    );

    // a third stands by
    let mut standby = Proc::daemon(&db.url, &following(&["--batch-size", "100"]));
    standby
        .wait_for("standing by", 1, Duration::from_secs(30))
        .await;
    append_customers(&client, "B", 500).await;
    wait_until(
        Duration::from_secs(30),
        "the first daemon to load",
        || async { pending(&client).await == 0 },
    )
    .await;
    assert!(!standby.output().contains("following the event log"));

    first.stop().await;
    standby
        .wait_for("following the event log", 1, Duration::from_secs(30))
        .await;
    append_customers(&client, "C", 500).await;
    wait_until(Duration::from_secs(30), "the standby to load", || async {
        pending(&client).await == 0
    })
    .await;
    standby.stop().await;

    // runs never overlap, came from both daemons, and read each event once
    let runs = client
        .query(
            "SELECT runner, started_at, finished_at, events_read FROM ops.load_runs
              ORDER BY started_at",
            &[],
        )
        .await
        .expect("runs");
    let mut runners = std::collections::BTreeSet::new();
    let mut previous_end: Option<DateTime<Utc>> = None;
    let mut events = 0;
    for r in &runs {
        let (runner, start, end, n): (String, DateTime<Utc>, DateTime<Utc>, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if let Some(prev) = previous_end {
            assert!(
                start >= prev,
                "a run started at {start} before another ended at {prev}"
            );
        }
        previous_end = Some(end);
        runners.insert(runner);
        events += n;
    }
    assert_eq!(runners.len(), 2, "{runners:?}");
    assert_eq!(events, 3_000);
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        3_000
    );
    assert_equals_rebuild(&mut client).await;
}

#[tokio::test]
async fn two_loaders_started_together_one_waits_for_the_other_and_the_vault_is_right() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append_customers(&client, "C", 3_000).await;
    wait_visible(&client, 3_000).await;
    // whichever takes the loader lock first is held up writing its first batch, so
    // the other certainly finds the lock taken
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE raw_vault.hub_customer IN SHARE MODE")
        .await
        .expect("lock the hub");
    let mut loaders = [
        Proc::spawn(&db.url, &["load", "--batch-size", "500"]),
        Proc::spawn(&db.url, &["load", "--batch-size", "500"]),
    ];
    let waiting = "another loader holds the lock; waiting for it to finish";
    wait_until(Duration::from_secs(30), "a loader to wait", || async {
        loaders.iter().any(|l| l.output().contains(waiting))
    })
    .await;
    blocker
        .batch_execute("COMMIT")
        .await
        .expect("unlock the hub");
    for l in &mut loaders {
        let status = l.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "{status}; output:\n{}", l.output());
    }
    let waited = loaders
        .iter()
        .filter(|l| l.output().contains(waiting))
        .count();
    assert_eq!(
        waited,
        1,
        "{}\n---\n{}",
        loaders[0].output(),
        loaders[1].output()
    );

    // one run loaded everything, the other started after it ended and found nothing
    let runs = client
        .query(
            "SELECT trigger || ' ' || status, events_read,
                    started_at >= lag(finished_at) OVER (ORDER BY started_at)
               FROM ops.load_runs ORDER BY started_at",
            &[],
        )
        .await
        .expect("runs");
    let runs: Vec<(String, i64, Option<bool>)> = runs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        runs,
        [
            ("manual succeeded".to_string(), 3_000, None),
            ("manual succeeded".to_string(), 0, Some(true))
        ],
        "(run, events read, started after the other ended)"
    );
    assert_eq!(pending(&client).await, 0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        3_000
    );
    assert_equals_rebuild(&mut client).await;
}

// ---- signals ----------------------------------------------------------------

#[tokio::test]
async fn sigterm_mid_load_rolls_back_the_batch_in_hand_and_the_next_run_completes_it() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append_customers(&client, "C", 20_000).await;
    wait_visible(&client, 20_000).await;
    let mut daemon = Proc::daemon(
        &db.url,
        &["--once", "--batch-size", "200", "--stop-grace-secs", "0"],
    );
    wait_until(Duration::from_secs(60), "the first batches", || async {
        count(
            &client,
            "SELECT count(*) FROM ops.checkpoints WHERE consumer = 'vault_loader'",
        )
        .await
            > 0
    })
    .await;
    daemon.stop().await;
    let said = daemon.output();
    assert!(said.contains("cancelling the batch in hand"), "{said}");

    // consistent: the vault holds exactly the events up to the checkpoint
    let loaded = 20_000 - pending(&client).await;
    assert!(loaded > 0 && loaded < 20_000, "loaded {loaded}");
    for table in [
        "hub_customer",
        "sat_customer_profile",
        "sat_customer_contact",
    ] {
        assert_eq!(
            count(&client, &format!("SELECT count(*) FROM raw_vault.{table}")).await,
            loaded,
            "{table}"
        );
    }
    let run = client
        .query_one(
            "SELECT trigger, status, error, events_read FROM ops.load_runs",
            &[],
        )
        .await
        .expect("the run");
    assert_eq!(run.get::<_, String>(0), "schedule");
    assert_eq!(run.get::<_, String>(1), "cancelled");
    // the stop lands in a batch (rolled back) or between two (none started after it)
    let error: String = run.get(2);
    assert!(
        error.contains("rolled back") || error.contains("no batch started after the stop"),
        "{error}"
    );
    assert_eq!(run.get::<_, i64>(3), loaded);

    // the next run (a manual load) completes it, and is recorded
    let mut manual = Proc::spawn(&db.url, &["load"]);
    assert!(manual.wait_exit(Duration::from_secs(60)).await.success());
    assert!(manual.output().contains("loaded"), "{}", manual.output());
    load_all(&mut client).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        20_000
    );
    let manual_run = client
        .query_one(
            "SELECT status, events_read FROM ops.load_runs WHERE trigger = 'manual'",
            &[],
        )
        .await
        .expect("the manual run");
    assert_eq!(manual_run.get::<_, String>(0), "succeeded");
    assert!(manual_run.get::<_, i64>(1) > 0);
    assert_equals_rebuild(&mut client).await;
}

// ---- the database going away -------------------------------------------------

#[tokio::test]
async fn the_daemon_rides_out_a_database_restart_and_loads_everything_once() {
    let home = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dvault-restart-{}", rand::random::<u32>()));
    let start = {
        let home = home.clone();
        move || {
            let home = home.clone();
            async move {
                tokio::task::spawn_blocking(move || dvault::db::local::ensure_running(&home))
                    .await
                    .expect("join")
                    .expect("start the private server")
            }
        }
    };
    let server = start().await;
    let admin = dvault::db::connect(&server.url("postgres"))
        .await
        .expect("admin");
    admin
        .batch_execute("CREATE DATABASE dvault")
        .await
        .expect("create");
    let url = server.url("dvault");
    let client = dvault::db::connect(&url).await.expect("connect");
    {
        let mut c = dvault::db::connect(&url).await.expect("connect");
        dvault::db::migrate(&mut c).await.expect("migrate");
    }
    append_customers(&client, "A", 2_000).await;
    let mut daemon = Proc::daemon(
        &url,
        &following(&["--batch-size", "250", "--retry-max-secs", "2"]),
    );
    daemon
        .wait_for("following the event log", 1, Duration::from_secs(30))
        .await;
    wait_until(Duration::from_secs(30), "the first load", || async {
        pending(&client).await == 0
    })
    .await;

    // stop the server in the middle of a load
    append_customers(&client, "B", 20_000).await;
    wait_until(Duration::from_secs(30), "the load to start", || async {
        pending(&client).await < 20_000
    })
    .await;
    let stop_home = home.clone();
    tokio::task::spawn_blocking(move || dvault::db::local::stop(&stop_home))
        .await
        .expect("join")
        .expect("stop the server");
    daemon
        .wait_for("database unavailable; retrying", 2, Duration::from_secs(30))
        .await;
    let again = start().await;
    assert_eq!(
        again.port, server.port,
        "the server came back on another port"
    );
    daemon
        .wait_for(
            "connected, holding the daemon lock",
            2,
            Duration::from_secs(60),
        )
        .await;

    let mut client = dvault::db::connect(&url).await.expect("reconnect");
    wait_until(Duration::from_secs(60), "the rest to load", || async {
        pending(&client).await == 0
    })
    .await;
    // still following after the reconnect
    append_customers(&client, "C", 10).await;
    wait_until(Duration::from_secs(10), "a new event", || async {
        pending(&client).await == 0
    })
    .await;
    daemon.stop().await;

    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        22_010
    );
    let failed = client
        .query(
            "SELECT error FROM ops.load_runs WHERE status = 'failed'",
            &[],
        )
        .await
        .expect("runs");
    assert!(
        failed
            .iter()
            .any(|r| r.get::<_, String>(0).contains("lost the database")),
        "no run recorded as cut off; output:\n{}",
        daemon.output()
    );
    assert_equals_rebuild(&mut client).await;
    drop(client);
    drop(admin);
    let stop_home = home.clone();
    let _ = tokio::task::spawn_blocking(move || dvault::db::local::stop(&stop_home)).await;
    let _ = std::fs::remove_dir_all(&home);
}

// ---- the schedule -------------------------------------------------------------

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut at = utc(from);
    (0..n)
        .map(|_| {
            at = s.next_fire(at).expect("fires");
            at.to_rfc3339()
        })
        .collect()
}

#[test]
fn the_default_schedule_fires_at_two_every_night_and_strictly_after_now() {
    let s = Schedule::parse("0 2 * * *", "UTC").expect("schedule");
    assert_eq!(
        s.next_fire(utc("2024-05-10T01:59:59Z")),
        Some(utc("2024-05-10T02:00:00Z"))
    );
    assert_eq!(
        s.next_fire(utc("2024-05-10T02:00:00Z")),
        Some(utc("2024-05-11T02:00:00Z"))
    );
    assert_eq!(
        fires(&s, "2024-12-30T12:00:00Z", 3),
        [
            "2024-12-31T02:00:00+00:00",
            "2025-01-01T02:00:00+00:00",
            "2025-01-02T02:00:00+00:00"
        ]
    );
}

#[test]
fn the_schedule_follows_its_time_zone_across_daylight_saving_changes() {
    let s = Schedule::parse("0 2 * * *", "Europe/Berlin").expect("schedule");
    // 02:00 CET is 01:00 UTC in winter, 02:00 CEST is 00:00 UTC in summer
    assert_eq!(
        s.next_fire(utc("2024-01-15T00:00:00Z")),
        Some(utc("2024-01-15T01:00:00Z"))
    );
    assert_eq!(
        s.next_fire(utc("2024-07-14T23:00:00Z")),
        Some(utc("2024-07-15T00:00:00Z"))
    );
    // 2024-03-31: 02:00 does not exist in Berlin; it runs once, right after the gap
    assert_eq!(
        fires(&s, "2024-03-30T12:00:00Z", 2),
        ["2024-03-31T01:00:00+00:00", "2024-04-01T00:00:00+00:00"]
    );
    // 2024-10-27: 02:00 happens twice in Berlin; it runs once
    let autumn = fires(&s, "2024-10-26T12:00:00Z", 2);
    assert_eq!(autumn.len(), 2);
    assert!(
        autumn[1] == "2024-10-28T01:00:00+00:00",
        "ran twice on the night the clocks went back: {autumn:?}"
    );
}

#[test]
fn other_schedules_fire_where_cron_says() {
    let weekdays = Schedule::parse("30 6 * * 1-5", "America/New_York").expect("schedule");
    // Friday noon UTC → Monday 06:30 EDT
    assert_eq!(
        weekdays.next_fire(utc("2024-05-10T12:00:00Z")),
        Some(utc("2024-05-13T10:30:00Z"))
    );
    let quarter = Schedule::parse("*/15 * * * *", "UTC").expect("schedule");
    assert_eq!(
        fires(&quarter, "2024-05-10T10:07:30Z", 3),
        [
            "2024-05-10T10:15:00+00:00",
            "2024-05-10T10:30:00+00:00",
            "2024-05-10T10:45:00+00:00"
        ]
    );
    assert!(Schedule::parse("61 2 * * *", "UTC").is_err());
}

// ---- quality gates --------------------------------------------------------------

async fn gate(client: &mut Client, config: &QualityConfig) -> Report {
    load_all(client).await;
    quality::run_gate(
        client,
        config,
        &Mappings::builtin().expect("mappings"),
        Scope::SinceLastGate,
        true,
        None,
    )
    .await
    .expect("gate")
}

fn result(report: &Report, check: Check) -> &quality::CheckResult {
    report
        .results
        .iter()
        .find(|r| r.check == check)
        .expect("the check ran")
}

#[tokio::test]
async fn completeness_passes_with_every_required_field_and_fails_when_emails_are_missing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let config = QualityConfig::default();
    append_customers(&client, "C", 20).await;
    let good = gate(&mut client, &config).await;
    let r = result(&good, Check::Completeness);
    assert!(r.passed, "{r:?}");
    assert_eq!(r.measured, Some(1.0));
    assert_eq!(r.scope_events, 20);

    // 10 new customers, 5 without an email (one of them blank): only they are gated
    let mut incomplete = Vec::new();
    for i in 0..10 {
        let mut e = customer(&format!("D{i}"));
        if i < 5 {
            let mut p: serde_json::Value = serde_json::from_str(&e.payload).expect("json");
            if i == 0 {
                p["email"] = " ".into();
            } else {
                p.as_object_mut().expect("object").remove("email");
            }
            e.payload = p.to_string();
        }
        incomplete.push(e);
    }
    append(&client, &incomplete).await;
    let bad = gate(&mut client, &config).await;
    let r = result(&bad, Check::Completeness);
    assert!(!r.passed);
    assert_eq!(r.measured, Some(0.5));
    assert_eq!(r.worst.as_deref(), Some("customer_registered.email"));
    assert_eq!(r.scope_events, 10);
    assert!(r.detail.contains("present in 50.0%"), "{}", r.detail);
    // the data is loaded all the same
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        30
    );
    let stored = count(
        &client,
        "SELECT count(*) FROM ops.quality_results
          WHERE check_name = 'completeness' AND NOT passed AND worst = 'customer_registered.email'",
    )
    .await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn uniqueness_passes_with_distinct_keys_and_fails_on_duplicates_in_one_batch() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let config = QualityConfig::default();
    let distinct: Vec<NewEvent> = (0..10)
        .map(|i| order(&format!("e{i}"), &format!("O{i}"), "C1", "P1"))
        .collect();
    append(&client, &distinct).await;
    let good = gate(&mut client, &config).await;
    assert!(result(&good, Check::Uniqueness).passed);

    // one batch of 10 orders naming 8 order ids: 80% unique
    let dup: Vec<NewEvent> = (0..10)
        .map(|i| order(&format!("f{i}"), &format!("N{}", i.min(7)), "C1", "P1"))
        .collect();
    append(&client, &dup).await;
    let bad = gate(&mut client, &config).await;
    let r = result(&bad, Check::Uniqueness);
    assert!(!r.passed);
    assert_eq!(r.measured, Some(0.8));
    assert_eq!(r.failing, 2);
    assert!(
        r.worst
            .as_deref()
            .unwrap_or("")
            .starts_with("order_placed from shop")
    );
}

#[tokio::test]
async fn validity_passes_with_typed_values_in_their_domains_and_fails_otherwise() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let config = QualityConfig::default();
    let statuses = ["paid", "shipped", "delivered", "cancelled", "returned"];
    let good: Vec<NewEvent> = (0..10).map(|i| status_change(i, statuses[i % 5])).collect();
    append(&client, &good).await;
    append(&client, &[product("P1", 9.99.into())]).await;
    let report = gate(&mut client, &config).await;
    assert!(result(&report, Check::Validity).passed);

    // statuses outside the domain (2 of 10), a price that is no number (1 of 4)
    let mut bad: Vec<NewEvent> = (10..18).map(|i| status_change(i, "paid")).collect();
    bad.push(status_change(18, "lost"));
    bad.push(status_change(19, "LOST"));
    append(&client, &bad).await;
    let prices: Vec<NewEvent> = [
        ("P2", serde_json::json!(1)),
        ("P3", serde_json::json!("2.50")),
        ("P4", serde_json::json!(3)),
        ("P5", serde_json::json!("cheap")),
    ]
    .into_iter()
    .map(|(id, price)| product(id, price))
    .collect();
    append(&client, &prices).await;
    let report = gate(&mut client, &config).await;
    let r = result(&report, Check::Validity);
    assert!(!r.passed);
    assert_eq!(r.measured, Some(0.75));
    assert_eq!(r.worst.as_deref(), Some("product_listed"));
    assert!(
        r.detail.contains("is not a valid numeric(12,2)"),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("\"lost\" is not one of"), "{}", r.detail);
    assert_eq!(r.failing, 3);
}

#[tokio::test]
async fn referential_integrity_counts_orders_of_unknown_customers_and_products() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let config = QualityConfig::default();
    append(&client, &[customer("C1"), product("P1", 5.into())]).await;
    append(&client, &[order("o1", "O1", "C1", "P1")]).await;
    let good = gate(&mut client, &config).await;
    let r = result(&good, Check::ReferentialIntegrity);
    assert!(r.passed, "{r:?}");
    assert_eq!(r.measured, Some(0.0));
    assert_eq!(r.examined, 2);

    // an order for a customer and a product that were never registered
    append(&client, &[order("o2", "O2", "C404", "P404")]).await;
    let bad = gate(&mut client, &config).await;
    let r = result(&bad, Check::ReferentialIntegrity);
    assert!(!r.passed);
    assert_eq!(r.measured, Some(2.0));
    assert!(
        r.detail.contains("C404") && r.detail.contains("P404"),
        "{}",
        r.detail
    );
    // a looser threshold lets it pass
    let mut lenient = config.clone();
    lenient.referential.max_orphans = 2;
    assert!(
        result(
            &gate(&mut client, &lenient).await,
            Check::ReferentialIntegrity
        )
        .passed
    );
}

#[tokio::test]
async fn freshness_passes_for_a_fresh_log_and_fails_when_the_newest_event_is_old() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let config = QualityConfig::default();
    let empty = gate(&mut client, &config).await;
    assert!(
        !result(&empty, Check::Freshness).passed,
        "an empty log is not fresh"
    );

    client
        .execute(
            "INSERT INTO event_log.events (event_id, event_type, record_source, occurred_at, recorded_at, payload)
             VALUES ('old', 'customer_registered', 'crm', now() - interval '3 days',
                     now() - interval '3 days', '{\"customer_id\": \"C0\"}')",
            &[],
        )
        .await
        .expect("old event");
    let stale = gate(&mut client, &config).await;
    let r = result(&stale, Check::Freshness);
    assert!(!r.passed);
    let hours = r.measured.expect("age");
    assert!((71.9..72.1).contains(&hours), "{hours}");

    append(&client, &[customer("C1")]).await;
    let fresh = gate(&mut client, &config).await;
    let r = result(&fresh, Check::Freshness);
    assert!(r.passed, "{r:?}");
    assert!(r.measured.expect("age") < 0.1);
}

// ---- the nightly cycle, run history and status through the CLI ---------------------

#[tokio::test]
async fn a_failed_gate_fails_the_nightly_run_keeps_the_data_and_shows_in_status_runs_and_check() {
    let db = TestDb::new().await;
    let client = db.client().await;
    append(&client, &[customer("C1"), product("P1", 5.into())]).await;
    append(
        &client,
        &[
            order("o1", "O1", "C1", "P1"),
            order("o2", "O2", "C404", "P1"),
        ],
    )
    .await;
    wait_visible(&client, 4).await;

    let mut nightly = Proc::daemon(&db.url, &["--once"]);
    let status = nightly.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(1), "{}", nightly.output());
    let run = client
        .query_one(
            "SELECT trigger, status, quality, error, events_read, rows_written->>'hub_order'
               FROM ops.load_runs",
            &[],
        )
        .await
        .expect("run");
    assert_eq!(run.get::<_, String>(0), "schedule");
    assert_eq!(run.get::<_, String>(1), "failed");
    assert_eq!(run.get::<_, String>(2), "failed");
    let error: String = run.get(3);
    assert!(
        error.contains("quality gate failed: referential_integrity"),
        "{error}"
    );
    assert_eq!(run.get::<_, i64>(4), 4);
    assert_eq!(run.get::<_, String>(5), "2");
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_order").await,
        2,
        "the data is loaded all the same"
    );
    // the nightly cycle analyzed what it touched
    let analyzed = count(
        &client,
        "SELECT count(*) FROM pg_stat_user_tables
          WHERE schemaname = 'raw_vault' AND relname = 'hub_order' AND last_analyze IS NOT NULL",
    )
    .await;
    assert_eq!(analyzed, 1);
    // and kept the RFM boundaries and the population figures of every day from the
    // orders' (2024-05-01) to yesterday
    let kept = count(
        &client,
        "SELECT count(*) - ((now() AT TIME ZONE 'UTC')::date - '2024-05-01'::date)
           FROM business_vault.rfm_cutpoints_as_of WHERE by_loader",
    )
    .await;
    assert_eq!(kept, 0);
    let kept = count(
        &client,
        "SELECT count(DISTINCT as_of) - ((now() AT TIME ZONE 'UTC')::date - '2024-05-01'::date)
           FROM business_vault.population_as_of WHERE by_loader",
    )
    .await;
    assert_eq!(kept, 0);

    let mut status = Proc::spawn(&db.url, &["status"]);
    assert!(status.wait_exit(Duration::from_secs(30)).await.success());
    let shown = status.output();
    assert!(shown.contains("last run:   #"), "{shown}");
    assert!(shown.contains("schedule failed"), "{shown}");
    assert!(shown.contains("quality:    FAILED"), "{shown}");
    assert!(shown.contains("referential_integrity"), "{shown}");

    let mut runs = Proc::spawn(&db.url, &["runs"]);
    assert!(runs.wait_exit(Duration::from_secs(30)).await.success());
    let listed = runs.output();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("schedule") && l.contains("failed")),
        "{listed}"
    );

    let mut check = Proc::spawn(&db.url, &["check"]);
    assert_eq!(
        check.wait_exit(Duration::from_secs(30)).await.code(),
        Some(1)
    );
    let checked = check.output();
    assert!(
        checked.contains("referential_integrity  FAILED"),
        "{checked}"
    );
    assert!(checked.contains("C404"), "{checked}");
    assert!(
        checked.contains("completeness           passed"),
        "{checked}"
    );
}

// ---- concurrent appenders -----------------------------------------------------

/// Appenders 0-3 run `dvault ingest`, 4-7 POST to `/events`.
const INGESTERS: usize = 4;
const POSTERS: usize = 4;
/// Events of each ingesting and each posting appender's own.
const INGESTED_OWN: usize = 800;
const POSTED_OWN: usize = 400;
/// Events of the slow appender (number 8), in transactions of 10.
const SLOW_OWN: usize = 200;
const CONCURRENT_WRITE_TOKEN: &str = "concurrent-writer-token";

/// Appender `a`'s `i`th own event, as a CloudEvent. Its customers, products and
/// orders are shared with the other appenders (the same customers registered and
/// updated by several, orders of one for customers and products of others, status
/// changes for another's orders), so that hubs, links and satellites interleave.
fn shared_event(a: usize, i: usize) -> serde_json::Value {
    let customer = |n: usize| format!("C{:03}", n % 60);
    let product = |n: usize| format!("P{:02}", n % 20);
    let time = format!(
        "2024-05-01T{:02}:{:02}:{:02}Z",
        8 + a,
        (i / 60) % 60,
        i % 60
    );
    let (ty, source, data) = match i % 5 {
        0 => (
            "customer_registered",
            "crm",
            serde_json::json!({
                "customer_id": customer(a * 13 + i), "first_name": format!("F{a}"),
                "last_name": format!("L{i}"), "email": format!("{a}.{i}@example.com"),
                "phone": "+49 1", "city": "Rome", "country": "Italy", "signup_date": "2024-01-01"
            }),
        ),
        1 => (
            "customer_updated",
            "crm",
            serde_json::json!({"customer_id": customer(a * 7 + i * 3), "city": format!("City{a}-{}", i % 4)}),
        ),
        2 => (
            if i % 10 == 2 {
                "product_listed"
            } else {
                "product_updated"
            },
            "catalog",
            serde_json::json!({
                "product_id": product(a + i), "name": format!("Mug {a}"), "category": "Home",
                "brand": "Acme", "price": (100 * (1 + i % 50) + a) as f64 / 100.0
            }),
        ),
        3 => (
            "order_placed",
            "shop",
            serde_json::json!({
                "order_id": format!("O{a}-{i}"), "customer_id": customer(i * 11 + a),
                "ordered_at": time, "channel": "web", "status": "placed",
                "lines": [
                    {"line_no": 1, "product_id": product(i * 3 + a), "quantity": 1 + i % 4,
                     "unit_price": 9.5, "discount": 0},
                    {"line_no": 2, "product_id": product(i + a + 7), "quantity": 2,
                     "unit_price": 4.25, "discount": 0.5}
                ]
            }),
        ),
        _ => {
            let status = ["paid", "shipped", "delivered", "cancelled"][(i / 5) % 4];
            (
                "order_status_changed",
                "shop",
                serde_json::json!({
                    "order_id": format!("O{}-{}", (a + 1) % 8, i - 1),
                    "status": status
                }),
            )
        }
    };
    serde_json::json!({"specversion": "1.0", "type": ty, "source": source,
                       "id": format!("a{a}-{i}"), "time": time, "data": data})
}

/// What appender `a` sends, in order: its own events, and some of a partner's again
/// (the same ids and content, in the partner's order), so the log's dedupe works
/// across both ways in. Ingesters 0 and 1 re-send posters 4's and 5's events,
/// posters 6 and 7 ingesters 2's and 3's.
fn appender_stream(a: usize) -> Vec<serde_json::Value> {
    let own = match a {
        _ if a < INGESTERS => INGESTED_OWN,
        _ if a < INGESTERS + POSTERS => POSTED_OWN,
        _ => SLOW_OWN,
    };
    let partner = match a {
        0 => Some(4),
        1 => Some(5),
        6 => Some(2),
        7 => Some(3),
        _ => None,
    };
    // 100 of the partner's events, spread evenly
    let (every, stride) = if a < INGESTERS {
        (INGESTED_OWN / 100, POSTED_OWN / 100)
    } else {
        (POSTED_OWN / 100, INGESTED_OWN / 100)
    };
    let mut out = Vec::new();
    for i in 0..own {
        out.push(shared_event(a, i));
        if let Some(p) = partner
            && i % every == every - 1
        {
            out.push(shared_event(p, (i / every) * stride));
        }
    }
    out
}

/// The business keys an event names: (hub, key).
fn business_keys(
    event: &serde_json::Value,
    into: &mut std::collections::BTreeSet<(String, String)>,
) {
    let data = &event["data"];
    let mut objects = vec![data];
    if let Some(lines) = data["lines"].as_array() {
        objects.extend(lines);
    }
    for o in objects {
        for (field, hub) in [
            ("customer_id", "hub_customer"),
            ("product_id", "hub_product"),
            ("order_id", "hub_order"),
        ] {
            if let Some(key) = o[field].as_str() {
                into.insert((hub.to_string(), key.to_string()));
            }
        }
    }
}

/// The number in "appender-0-2.ndjson: ingested 168 events (1 rejected: ...".
fn ingested(output: &str) -> u64 {
    output
        .split_once(": ingested ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no \"ingested N\" in\n{output}"))
}

/// One ingesting appender: its stream in 5 NDJSON files, ingested one after the
/// other (a `dvault ingest` each, in transactions of 60, a pause between), so that
/// the appends stretch over the daemon's loads; appender 0's third file has a
/// broken line. Returns how many events it says it stored.
async fn ingest_appender(url: &str, dir: &std::path::Path, a: usize) -> u64 {
    let stream = appender_stream(a);
    let mut stored = 0;
    for (f, chunk) in stream.chunks(stream.len().div_ceil(5)).enumerate() {
        let mut text: String = chunk.iter().map(|e| format!("{e}\n")).collect();
        if a == 0 && f == 2 {
            text.push_str(
                "{\"specversion\":\"1.0\",\"source\":\"crm\",\"id\":\"no-type\",\"data\":{}}\n",
            );
        }
        let path = dir.join(format!("appender-{a}-{f}.ndjson"));
        std::fs::write(&path, text).expect("write the file");
        let path = path.display().to_string();
        let mut ingest = Proc::spawn(url, &["ingest", "--batch-size", "60", &path]);
        let status = ingest.wait_exit(Duration::from_secs(60)).await;
        let said = ingest.output();
        assert!(status.success(), "ingest {a}: {status}\n{said}");
        stored += ingested(&said);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    stored
}

/// The kind of writer the reader's horizon is for: it appends through the library
/// in its own transaction and keeps it open a while (as an application writing
/// events with its business data would), while the others commit younger ones.
async fn slow_appender(url: &str) -> u64 {
    let mut client = dvault::db::connect(url).await.expect("connect");
    let events: Vec<NewEvent> = appender_stream(INGESTERS + POSTERS)
        .iter()
        .map(|e| events::cloudevents::parse(&e.to_string(), Utc::now()).expect("a CloudEvent"))
        .collect();
    let mut stored = 0;
    for chunk in events.chunks(10) {
        let tx = client.transaction().await.expect("begin");
        stored += events::append(&tx, chunk).await.expect("append").inserted;
        tokio::time::sleep(Duration::from_millis(250)).await;
        tx.commit().await.expect("commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stored
}

/// One posting appender: its stream in POSTs of 1 to 20 events (one alone as
/// `application/cloudevents+json`, some as a JSON array, most as NDJSON); every
/// ninth POST is sent twice, as a client retrying would. Appender 4's ninth POST
/// has a broken line. Returns how many events the server says it stored.
async fn post_appender(base: &str, a: usize) -> u64 {
    let http = reqwest::Client::new();
    let stream = appender_stream(a);
    let (mut at, mut k, mut accepted) = (0, 0, 0);
    while at < stream.len() {
        let size = (1 + (k * 7 + a) % 20).min(stream.len() - at);
        let events = &stream[at..at + size];
        at += size;
        let bad = a == 4 && k == 8;
        let (content_type, mut body) = if size == 1 && !bad {
            ("application/cloudevents+json", events[0].to_string())
        } else if k % 3 == 0 && !bad {
            (
                "application/cloudevents-batch+json",
                serde_json::Value::Array(events.to_vec()).to_string(),
            )
        } else {
            (
                "application/x-ndjson",
                events.iter().map(|e| format!("{e}\n")).collect(),
            )
        };
        if bad {
            body.push_str(
                "{\"specversion\":\"1.0\",\"source\":\"shop\",\"id\":\"no-type\",\"data\":{}}\n",
            );
        }
        let sends = if k % 9 == 8 { 2 } else { 1 };
        for send in 0..sends {
            let resp = http
                .post(format!("{base}/events"))
                .header("content-type", content_type)
                .bearer_auth(CONCURRENT_WRITE_TOKEN)
                .body(body.clone())
                .send()
                .await
                .expect("POST /events");
            let status = resp.status().as_u16();
            let text = resp.text().await.expect("body");
            assert_eq!(status, 202, "appender {a}, POST {k}: {text}");
            let r: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let (new, dup) = (
                r["accepted"].as_u64().expect("accepted"),
                r["duplicates"].as_u64().expect("duplicates"),
            );
            assert_eq!(new + dup, size as u64, "appender {a}, POST {k}: {r}");
            assert_eq!(r["rejected"], u64::from(bad), "appender {a}, POST {k}: {r}");
            if send == 1 {
                assert_eq!(new, 0, "a POST sent again stored events: {r}");
            }
            accepted += new;
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accepted
}

/// Eight appenders at once (four `dvault ingest`, four `POST /events` to a real
/// `dvault serve`) and a slow library writer, while `dvault daemon --follow` loads in
/// batches of 200 right behind them: the log holds each distinct event once, the runs
/// together read each event once (each starting where the last ended), every business
/// key has its hub row, only the two broken lines are quarantined, and the vault
/// equals a rebuild of the log.
#[tokio::test]
async fn eight_concurrent_appenders_while_the_daemon_follows_lose_nothing_and_load_nothing_twice() {
    let db = TestDb::new().await;
    let mut client = db.client().await;

    // what the appenders send: every distinct event, and every business key
    let mut expected = std::collections::BTreeSet::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut sent = 0;
    for a in 0..=INGESTERS + POSTERS {
        for e in appender_stream(a) {
            sent += 1;
            business_keys(&e, &mut keys);
            expected.insert((
                e["source"].as_str().expect("source").to_string(),
                e["id"].as_str().expect("id").to_string(),
            ));
        }
    }
    let distinct = (INGESTERS * INGESTED_OWN + POSTERS * POSTED_OWN + SLOW_OWN) as u64;
    assert_eq!(expected.len() as u64, distinct);
    assert_eq!(sent, distinct + 4 * 100, "400 events are sent twice");

    let started = Instant::now();
    let mut daemon = Proc::daemon(
        &db.url,
        &following(&[
            "--batch-size",
            "200",
            "--debounce-ms",
            "20",
            "--max-delay-ms",
            "100",
        ]),
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let key = format!(
        "write:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            CONCURRENT_WRITE_TOKEN.as_bytes()
        ))
    );
    let mut server = Proc::spawn(&db.url, &["serve", "--listen", &listen, "--api-key", &key]);
    let base = format!("http://{listen}");
    wait_until(Duration::from_secs(30), "the API server", || async {
        reqwest::get(format!("{base}/health")).await.is_ok()
    })
    .await;
    daemon
        .wait_for("following the event log", 1, Duration::from_secs(30))
        .await;

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dvault-appenders-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ingesters =
        futures_util::future::join_all((0..INGESTERS).map(|a| ingest_appender(&db.url, &dir, a)));
    let posters = futures_util::future::join_all(
        (INGESTERS..INGESTERS + POSTERS).map(|a| post_appender(&base, a)),
    );
    let (ingested, posted, slow) = tokio::join!(ingesters, posters, slow_appender(&db.url));
    let appended = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    // each event was stored by exactly one appender
    assert_eq!(
        ingested.iter().sum::<u64>() + posted.iter().sum::<u64>() + slow,
        distinct,
        "stored by the ingesters {ingested:?}, by the posters {posted:?}, by the slow one {slow}"
    );

    wait_until(
        Duration::from_secs(60),
        "the daemon to catch up",
        || async { pending(&client).await == 0 },
    )
    .await;
    let caught_up = started.elapsed();
    daemon.stop().await;
    server.stop().await;

    // the log holds exactly the distinct events sent
    let in_log: std::collections::BTreeSet<(String, String)> = client
        .query("SELECT record_source, event_id FROM event_log.events", &[])
        .await
        .expect("the log")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        distinct as i64
    );
    assert!(in_log == expected, "the log differs from what was sent");

    // the checkpoint is the log's last event, and the runs read every event once:
    // each starts where the one before ended
    let at_end = count(
        &client,
        "SELECT count(*) FROM ops.checkpoints c
          WHERE c.consumer = 'vault_loader'
            AND (c.xid, c.seq) = (SELECT xid, seq FROM event_log.events
                                   ORDER BY xid DESC, seq DESC LIMIT 1)",
    )
    .await;
    assert_eq!(at_end, 1, "the checkpoint is not at the log's end");
    let runs = client
        .query(
            // a run that found nothing (one SIGTERM cut short, say) reads no event
            "SELECT trigger, status, from_xid::text, from_seq, to_xid::text, to_seq, events_read
               FROM ops.load_runs WHERE events_read > 0 ORDER BY id",
            &[],
        )
        .await
        .expect("runs");
    let mut previous: Option<(Option<String>, Option<i64>)> = None;
    let mut read = 0;
    for r in &runs {
        assert_eq!(r.get::<_, String>(0), "follow");
        assert_eq!(r.get::<_, String>(1), "succeeded", "{r:?}");
        let from = (r.get::<_, Option<String>>(2), r.get::<_, Option<i64>>(3));
        if let Some(previous) = previous {
            assert_eq!(from, previous, "a run did not start where the last ended");
        }
        previous = Some((r.get(4), r.get(5)));
        read += r.get::<_, i64>(6);
    }
    assert_eq!(read, distinct as i64, "events read by {} runs", runs.len());

    // every business key has its hub row; only the two broken lines are quarantined
    for hub in ["hub_customer", "hub_product", "hub_order"] {
        let n = keys.iter().filter(|(h, _)| h == hub).count() as i64;
        assert_eq!(
            count(&client, &format!("SELECT count(*) FROM raw_vault.{hub}")).await,
            n,
            "{hub}"
        );
    }
    let rejected = client
        .query(
            "SELECT stage, file = 'api', count(*) FROM event_log.rejected GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("rejected");
    let rejected: Vec<(String, bool, i64)> = rejected
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rejected,
        [
            ("ingest".to_string(), false, 1),
            ("ingest".to_string(), true, 1)
        ]
    );

    assert_equals_rebuild(&mut client).await;
    eprintln!(
        "{distinct} events appended in {appended:?}, loaded by {} runs after {caught_up:?}, checked after {:?}",
        runs.len(),
        started.elapsed()
    );
}
