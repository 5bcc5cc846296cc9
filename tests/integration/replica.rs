//! The API reading from a real streaming standby (`dvault serve --read-database-url`):
//! a private primary started by the test (initdb, small: a base backup of the shared
//! test server would copy every database on it, and its `pg_hba.conf` need not allow
//! replication) and its standby (`pg_basebackup -R`), both from the system's
//! PostgreSQL binaries, on free ports of 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use dvault::api::{ApiConfig, AppState};
use dvault::db::local::{self, LocalServer};
use dvault::events;

use crate::api::{
    READ_TOKEN, TestApp, WRITE_TOKEN, assert_problem, customer_event, data_set, expect_json,
    header, keyed_config, with_credentials,
};
use crate::harness;

/// The two servers' homes; stopped (standby first) and removed when the test ends,
/// kept for inspection when it fails.
struct Servers {
    root: PathBuf,
}

impl Servers {
    fn primary(&self) -> PathBuf {
        self.root.join("primary")
    }

    fn standby(&self) -> PathBuf {
        self.root.join("standby")
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = local::stop(&self.standby());
        let _ = local::stop(&self.primary());
        if std::thread::panicking() {
            eprintln!(
                "test failed: kept its servers' files in {}",
                self.root.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

async fn start(home: PathBuf) -> LocalServer {
    blocking(move || local::ensure_running(&home))
        .await
        .expect("start a private server")
}

async fn stop(home: PathBuf) {
    assert!(blocking(move || local::stop(&home)).await.expect("stop"));
}

/// Poll `path` until it answers `status` (or fail after 60 s); its body.
async fn until(app: &TestApp, path: &str, token: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = app.get_with(path, token).await;
        if resp.status().as_u16() == status {
            return expect_json(resp, status, path).await;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {} after 60 s: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    app.get_with("/metrics", READ_TOKEN)
        .await
        .text()
        .await
        .expect("metrics")
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["customer_id"].as_str().expect("id").to_string())
        .collect()
}

async fn append_and_load(url: &str, events: &[events::NewEvent]) {
    let mut client = dvault::db::connect(url).await.expect("connect");
    events::append(&client, events).await.expect("append");
    harness::load_all(&mut client).await;
}

fn new_customer(id: &str) -> events::NewEvent {
    events::NewEvent {
        event_id: format!("replica-{id}"),
        event_type: "customer_registered".into(),
        source: "crm".into(),
        occurred_at: chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z")
            .expect("time")
            .to_utc(),
        payload: serde_json::json!({"customer_id": id, "first_name": "Late", "country": "Italy"})
            .to_string(),
    }
}

#[tokio::test]
async fn the_api_reads_from_a_streaming_standby_and_answers_503_while_it_is_down() {
    let servers = Servers {
        root: std::env::temp_dir().join(format!("dvault-replica-{}", rand::random::<u64>())),
    };
    std::fs::create_dir_all(&servers.root).expect("root");
    let primary = start(servers.primary()).await;
    dvault::db::connect(&primary.url("postgres"))
        .await
        .expect("admin")
        .batch_execute("CREATE DATABASE replica_test")
        .await
        .expect("create");
    let url = primary.url("replica_test");
    {
        let mut client = dvault::db::connect(&url).await.expect("connect");
        dvault::db::migrate(&mut client).await.expect("migrate");
        // the API runs as the least-privilege role of docs/api.md, on both servers
        // (roles replicate): it needs no more to read the replica's replay state
        client
            .query_one("SELECT ops.grant_api('dvault_api')", &[])
            .await
            .expect("the API role");
    }
    let standby = {
        let (primary, home) = (primary.clone(), servers.standby());
        blocking(move || local::start_standby(&primary, &home))
            .await
            .expect("start the standby")
    };
    let standby_url = standby.url("replica_test");
    assert_ne!(standby.port, primary.port);
    // trust authentication: the password is not checked
    let api_url = with_credentials(&url, "dvault_api", "unused");
    let api_standby_url = with_credentials(&standby_url, "dvault_api", "unused");

    // events loaded on the primary after the base backup: only replay brings them
    append_and_load(&url, &data_set()).await;
    let state = AppState::new(keyed_config(), &api_url)
        .expect("state")
        .with_read_replica(&api_standby_url)
        .expect("replica");
    let app = TestApp::spawn_state(state).await;
    let c01 = until(&app, "/customers/C01", READ_TOKEN, 200).await;
    assert_eq!(c01["total_spent"], "55.50", "{c01}");
    assert_eq!(c01["city"], "Milan", "{c01}");

    // the reads came from the standby: its sessions, not the primary's
    let standby_client = dvault::db::connect(&standby_url).await.expect("standby");
    let in_recovery: bool = standby_client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("recovery")
        .get(0);
    assert!(in_recovery, "the standby is a standby");
    let api_sessions = |client: tokio_postgres::Client| async move {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = 'dvault-api' AND datname = current_database()",
                &[],
            )
            .await
            .expect("sessions")
            .get(0);
        n
    };
    assert!(api_sessions(standby_client).await > 0);
    let primary_client = dvault::db::connect(&url).await.expect("primary");
    assert_eq!(
        api_sessions(primary_client).await,
        0,
        "no read went to the primary"
    );

    // every read endpoint answers from the standby, the same as from the primary
    let on_primary = TestApp::spawn(&api_url, keyed_config()).await;
    for path in [
        "/customers?sort=-total_spent&limit=5",
        "/customers/C01?as_of=2024-04-01",
        "/customers/C01/orders",
        "/customers/C01/history",
        "/products",
        "/products/P1",
        "/orders?limit=3",
        "/orders/O01",
        "/segments",
        "/segments/Prospect/customers",
        "/analytics/revenue?period=month",
        "/analytics/churn",
        "/analytics/categories",
    ] {
        let from_standby = expect_json(app.get_with(path, READ_TOKEN).await, 200, path).await;
        let from_primary =
            expect_json(on_primary.get_with(path, READ_TOKEN).await, 200, path).await;
        assert_eq!(from_standby, from_primary, "{path}");
    }
    on_primary.stop().await;

    // /ready and /metrics tell the replica's replay lag
    let ready = until(&app, "/ready", READ_TOKEN, 200).await;
    assert_eq!(ready["replica"]["in_recovery"], true, "{ready}");
    let lag = ready["replica"]["replay_lag_seconds"]
        .as_f64()
        .expect("a lag");
    assert!((0.0..=30.0).contains(&lag), "{ready}");
    assert_eq!(ready["replica"]["max_replay_lag_seconds"], 30.0, "{ready}");
    let m = metrics(&app).await;
    for (name, value) in [
        ("dvault_replica_up", 1.0),
        ("dvault_replica_in_recovery", 1.0),
        ("dvault_replica_max_replay_lag_seconds", 30.0),
        ("dvault_database_up", 1.0),
    ] {
        // the value as a number: the encoder may write 30 as `30.0`
        let sample = m
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        assert_eq!(sample, Some(value), "{name} in\n{m}");
    }
    assert!(
        m.lines()
            .any(|l| l.starts_with("dvault_replica_replay_lag_seconds ")),
        "{m}"
    );
    crate::metrics::common(&m, "API with a replica");

    // writes go to the primary (a standby refuses them), and come back by replay
    let posted = app
        .post(
            "/events",
            "application/cloudevents+json",
            customer_event("replica-post", "C50"),
            Some(WRITE_TOKEN),
        )
        .await;
    let r = expect_json(posted, 202, "POST /events").await;
    assert_eq!(r["accepted"], 1, "{r}");

    // a cursor is a position (sort key, id), never a count of rows seen: pages read
    // while the replica replays a load neither skip nor repeat a row
    let first = expect_json(
        app.get_with("/customers?limit=5", READ_TOKEN).await,
        200,
        "page 1",
    )
    .await;
    let mut seen = ids(&first);
    assert_eq!(seen, ["C01", "C02", "C03", "C04", "C05"]);
    // C00 lands before the cursor, C99 after it
    append_and_load(&url, &[new_customer("C00"), new_customer("C99")]).await;
    until(&app, "/customers/C99", READ_TOKEN, 200).await;
    let mut next = first["next"].as_str().map(str::to_string);
    while let Some(path) = next {
        let page = expect_json(app.get_with(&path, READ_TOKEN).await, 200, &path).await;
        seen.extend(ids(&page));
        next = page["next"].as_str().map(str::to_string);
    }
    let mut expected: Vec<String> = (1..=12).map(|i| format!("C{i:02}")).collect();
    expected.push("C50".into());
    expected.push("C99".into());
    assert_eq!(
        seen, expected,
        "every row once, in order, none behind the cursor"
    );

    // the standby goes away: reads answer 503 problem+json, like a primary that is down
    stop(servers.standby()).await;
    for path in ["/customers/C01", "/customers", "/analytics/churn", "/ready"] {
        let resp = app.get_with(path, READ_TOKEN).await;
        assert_eq!(header(&resp, "retry-after"), "5", "{path}");
        let p = expect_json(resp, 503, path).await;
        assert_problem(&p, 503, "database-unavailable", "cannot be reached");
    }
    assert!(
        metrics(&app)
            .await
            .lines()
            .any(|l| l == "dvault_replica_up 0")
    );
    // and recovers without a restart, on the standby's port
    let restarted = start(servers.standby()).await;
    assert_eq!(restarted.port, standby.port);
    let c01 = until(&app, "/customers/C01", READ_TOKEN, 200).await;
    assert_eq!(c01["total_spent"], "55.50", "{c01}");
    until(&app, "/ready", READ_TOKEN, 200).await;

    // the primary goes away: reads go on from the standby, writes answer 503, and a
    // server allowing 1 s of lag turns unready once nobody can tell the standby is current
    let strict = TestApp::spawn_state(
        AppState::new(
            ApiConfig {
                max_replica_lag: Duration::from_secs(1),
                ..keyed_config()
            },
            &api_url,
        )
        .expect("state")
        .with_read_replica(&api_standby_url)
        .expect("replica"),
    )
    .await;
    // a transaction replayed since the standby's restart: its age is the lag to come
    append_and_load(&url, &[new_customer("C77")]).await;
    until(&app, "/customers/C77", READ_TOKEN, 200).await;
    until(&strict, "/ready", READ_TOKEN, 200).await;
    stop(servers.primary()).await;
    let c01 = expect_json(
        app.get_with("/customers/C50", READ_TOKEN).await,
        200,
        "a read with the primary down",
    )
    .await;
    assert_eq!(c01["first_name"], "New", "{c01}");
    let posted = app
        .post(
            "/events",
            "application/cloudevents+json",
            customer_event("replica-post-2", "C51"),
            Some(WRITE_TOKEN),
        )
        .await;
    let p = expect_json(posted, 503, "POST /events with the primary down").await;
    assert_problem(&p, 503, "database-unavailable", "cannot be reached");
    let p = until(&strict, "/ready", READ_TOKEN, 503).await;
    assert_problem(&p, 503, "not-ready", "behind the primary");
    assert!(
        p["replay_lag_seconds"].as_f64().is_some_and(|s| s > 1.0),
        "{p}"
    );
    assert_eq!(p["max_replay_lag_seconds"], 1.0, "{p}");

    start(servers.primary()).await;
    until(&strict, "/ready", READ_TOKEN, 200).await;
    strict.stop().await;
    app.stop().await;
}
