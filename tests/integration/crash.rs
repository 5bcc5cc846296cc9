//! Crash safety, the fast version of `bench/crash.sh`: the real `dvault load` binary
//! is killed with SIGKILL at random moments in the middle of a load, three times, and
//! restarted each time; at the end the vault equals an uninterrupted load (a rebuild
//! from the same log).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dvault::load::{self, Loader};
use dvault::mapping::Mappings;
use tokio_postgres::Client;

use crate::harness::{TestDb, load_all_with, vault_checksums, wait_visible};

/// Runs `dvault` with `args` against `url` and waits for it; panics with its output
/// when it fails.
fn run_dvault(url: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run dvault");
    assert!(
        out.status.success(),
        "dvault {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn_load(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["load", "--batch-size", "300"])
        .env("DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dvault load")
}

/// How many events of the log the loader's checkpoint covers.
async fn loaded(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM event_log.events e, ops.checkpoints c
              WHERE c.consumer = 'vault_loader' AND (e.xid, e.seq) <= (c.xid, c.seq)",
            &[],
        )
        .await
        .expect("checkpoint")
        .get(0)
}

#[tokio::test]
async fn a_load_killed_three_times_mid_load_ends_equal_to_an_uninterrupted_load() {
    let db = TestDb::new().await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}", db.name));
    let out = dir.to_str().expect("utf-8 path");
    run_dvault(
        &db.url,
        &[
            "gen",
            "--out",
            out,
            "--seed",
            "11",
            "--end",
            "2026-11-22",
            "--customers",
            "800",
            "--products",
            "300",
            "--orders",
            "3000",
        ],
    );
    run_dvault(&db.url, &["ingest", &format!("{out}/events.ndjson")]);
    let _ = std::fs::remove_dir_all(&dir);
    let mut client = db.client().await;
    let total: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert!(
        total > 20_000,
        "the log is too small to cut: {total} events"
    );
    wait_visible(&client, total).await;

    // Kill k lands after the checkpoint passed k/4 of the log (so every kill cuts a
    // running load, however fast the machine) plus a random delay (so it falls at a
    // random point of a batch: reading, writing or committing).
    for k in 1..=3 {
        let mut child = spawn_load(&db.url);
        let threshold = total * k / 4;
        let started = Instant::now();
        while loaded(&client).await < threshold {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "kill {k}: the load did not reach {threshold} of {total} events"
            );
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("kill {k}: the load exited before it was killed: {status}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 150)).await;
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {k}: the load was not running any more ({status})"
        );
        let at = loaded(&client).await;
        assert!(
            at < total,
            "kill {k}: the load had finished ({at} of {total})"
        );
    }

    // the fourth start finishes the job
    run_dvault(&db.url, &["load", "--batch-size", "300"]);
    assert_eq!(loaded(&client).await, total);
    let after_kills = vault_checksums(&client).await;

    let loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    load::rebuild(&mut client, &loader).await.expect("rebuild");
    load_all_with(&mut client, &loader).await;
    let uninterrupted = vault_checksums(&client).await;
    assert_eq!(after_kills, uninterrupted);
    assert_ne!(
        uninterrupted.get("hub_customer").map(String::as_str),
        Some("empty"),
        "the vault is empty"
    );
}
