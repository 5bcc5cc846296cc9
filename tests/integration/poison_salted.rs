//! Issue 13's acceptance run: a generated log of over 100,000 good events salted with
//! every poison class, through the real ingest, loader, rebuild and daemon. Exactly
//! the poison is quarantined (with reasons naming field and limit), every good event
//! loads, a rebuild gives the same vault and quarantine, and a following daemon on
//! the same log keeps running and reaches lag 0.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::json;
use tokio_postgres::Client;

use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::generate::{GenOptions, generate};
use dvault::load::{self, Loader};
use dvault::mapping::Mappings;

use crate::harness::{TestDb, load_all_with, vault_checksums};

fn cloudevent(id: &str, ty: &str, time: &str, data: serde_json::Value) -> String {
    json!({"specversion": "1.0", "id": id, "source": "salt", "type": ty, "time": time,
           "datacontenttype": "application/json", "data": data})
    .to_string()
}

fn long(n: usize) -> String {
    // incompressible: hex digits of a counter's hashes
    (0..n)
        .map(|i| char::from(b"0123456789abcdef"[(i * 7 + i / 3) % 16]))
        .collect()
}

/// The poison, one per line, with the stage that must stop each and why.
fn poison() -> Vec<(String, &'static str, &'static str)> {
    let order = |id: &str, lines: serde_json::Value| {
        json!({"order_id": id, "customer_id": "SALT-C", "ordered_at": "2026-06-01T10:00:00Z",
               "status": "placed", "channel": "web", "lines": lines})
    };
    let line = |no: serde_json::Value, product: &str| json!({"line_no": no, "product_id": product, "quantity": 1, "unit_price": "9.99", "discount": "0"});
    let t = "2026-06-01T10:00:00Z";
    vec![
        (
            cloudevent(
                "salt-long-customer",
                "customer_registered",
                t,
                json!({"customer_id": long(2_800), "email": "x@example.com"}),
            ),
            "load",
            "limit of 512 bytes",
        ),
        (
            cloudevent(
                "salt-long-product",
                "order_placed",
                t,
                order("SALT-O1", json!([line(json!(1), &long(2_800))])),
            ),
            "load",
            "limit of 512 bytes",
        ),
        (
            cloudevent(
                "salt-dup-line",
                "order_placed",
                t,
                order(
                    "SALT-O2",
                    json!([line(json!(1), "P1"), line(json!(1), "P1")]),
                ),
            ),
            "load",
            "have the same link \"link_order_product\" key",
        ),
        (
            cloudevent(
                "salt-norm-line",
                "order_placed",
                t,
                order(
                    "SALT-O3",
                    json!([line(json!(1), "p1"), line(json!("1"), " P1 ")]),
                ),
            ),
            "load",
            "have the same link \"link_order_product\" key",
        ),
        (
            cloudevent(
                "salt-null-marker",
                "customer_registered",
                t,
                json!({"customer_id": "^^"}),
            ),
            "load",
            "could collide with another key",
        ),
        (
            cloudevent(
                "salt-separator",
                "customer_registered",
                t,
                json!({"customer_id": "a||b"}),
            ),
            "load",
            "could collide with another key",
        ),
        (
            cloudevent(
                &long(3_000),
                "customer_registered",
                t,
                json!({"customer_id": "SALT-C2"}),
            ),
            "ingest",
            "limit of 256 bytes",
        ),
        (
            cloudevent(
                "salt-far-future",
                "order_status_changed",
                "9999-12-31T23:59:59-05:00",
                json!({"order_id": "SALT-O9", "status": "paid"}),
            ),
            "ingest",
            "2200-01-01",
        ),
    ]
}

/// Events after the loader's checkpoint: its lag.
const PENDING: &str = "
    SELECT count(*) FROM event_log.events e
     WHERE (e.xid, e.seq) > coalesce(
           (SELECT (c.xid, c.seq) FROM ops.checkpoints c WHERE c.consumer = 'vault_loader'),
           ('0'::xid8, 0::bigint))";

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// (stage, event id or line, reason) of every rejection, sorted.
async fn quarantine(client: &Client) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = client
        .query(
            "SELECT r.stage, coalesce(e.event_id, r.line::text), r.reason
               FROM event_log.rejected r LEFT JOIN event_log.events e ON e.seq = r.event_seq",
            &[],
        )
        .await
        .expect("quarantine")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    rows.sort();
    rows
}

/// Ingest the generated events and the poison file into `client`'s database.
async fn ingest_all(client: &mut Client, events: &Path, salt: &Path) -> u64 {
    let opts = IngestOptions {
        batch_size: 5_000,
        ..IngestOptions::default()
    };
    let mut stored = 0;
    for path in [events, salt] {
        stored += ingest_file(client, path, &opts)
            .await
            .expect("ingest")
            .inserted;
    }
    stored
}

#[tokio::test]
async fn a_log_salted_with_every_poison_class_loads_all_the_good_events() {
    let dir = std::env::temp_dir().join(format!("dvault-salted-{}", rand::random::<u64>()));
    let summary = generate(&GenOptions {
        seed: 13,
        customers: 4_000,
        products: 600,
        orders: 24_000,
        days: 120,
        end: NaiveDate::from_ymd_opt(2026, 6, 30).expect("date"),
        dirty: 0.0,
        out: dir.clone(),
    })
    .expect("generate");
    let good = summary
        .files
        .iter()
        .find(|f| f.path.ends_with("events.ndjson"))
        .expect("events file")
        .good as i64;
    assert!(good >= 100_000, "only {good} good events generated");
    let poison = poison();
    let salt = dir.join("salt.ndjson");
    let lines: Vec<&str> = poison.iter().map(|(l, _, _)| l.as_str()).collect();
    std::fs::write(&salt, lines.join("\n") + "\n").expect("salt file");
    let events = dir.join("events.ndjson");

    let db = TestDb::new().await;
    let mut client = db.client().await;
    let stored = ingest_all(&mut client, &events, &salt).await;
    let at_load = poison.iter().filter(|(_, s, _)| *s == "load").count() as i64;
    assert_eq!(stored as i64, good + at_load);

    let mut loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    loader.batch_size = 10_000;
    let loaded = load_all_with(&mut client, &loader).await;
    assert_eq!(loaded.events as i64, good + at_load);

    // exactly the poison, each at its stage with its reason
    let got = quarantine(&client).await;
    assert_eq!(got.len(), poison.len(), "{got:#?}");
    for (line, stage, reason) in &poison {
        let id = serde_json::from_str::<serde_json::Value>(line).expect("json")["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        let found = got.iter().any(|(s, key, r)| {
            s == stage && r.contains(reason) && (*stage == "ingest" || *key == id)
        });
        assert!(
            found,
            "{stage} rejection with {reason:?} for {}: {got:#?}",
            &id[..id.len().min(40)]
        );
    }
    // every good event loaded: nothing but the poison rejected, and a pass finds nothing
    assert_eq!(count(&client, PENDING).await, 0);

    // a rebuild: the same vault and the same quarantine
    let vault = vault_checksums(&client).await;
    load::rebuild(&mut client, &loader).await.expect("rebuild");
    assert_eq!(vault_checksums(&client).await, vault);
    assert_eq!(quarantine(&client).await, got);

    // the daemon on the same log, from an empty vault: keeps running, reaches lag 0
    let fresh = TestDb::new().await;
    let mut other = fresh.client().await;
    ingest_all(&mut other, &events, &salt).await;
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["daemon", "--follow", "--batch-size", "10000"])
        .env("DATABASE_URL", &fresh.url)
        .env_remove("DVAULT_SCHEDULE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let started = Instant::now();
    let lag_zero = loop {
        let lag = count(&other, PENDING).await;
        if lag == 0 {
            break true;
        }
        if started.elapsed() > Duration::from_secs(180) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let still_running = daemon.try_wait().expect("daemon status").is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    assert!(lag_zero, "the daemon did not reach lag 0 in 180 s");
    assert!(still_running, "the daemon stopped on its own");
    let strip = |q: Vec<(String, String, String)>| -> Vec<(String, String)> {
        q.into_iter().map(|(s, k, _)| (s, k)).collect()
    };
    assert_eq!(strip(quarantine(&other).await), strip(got));
    for table in ["hub_customer", "hub_order", "hub_product", "sat_order_line"] {
        let sql = format!("SELECT count(*) FROM raw_vault.{table}");
        assert_eq!(
            count(&other, &sql).await,
            count(&client, &sql).await,
            "{table}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
