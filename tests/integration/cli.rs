//! The binary as a new user runs it: no DATABASE_URL, a private server.

use std::path::Path;
use std::process::{Command, Output};

fn dvault(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("DVAULT_HOME", home)
        .output()
        .expect("run dvault")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "dvault failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn migrate_ingest_load_status_on_a_private_server_with_no_setup() {
    let home = std::env::temp_dir().join(format!("dvault-cli-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&home).expect("home");
    let csv = home.join("customers.csv");
    std::fs::write(
        &csv,
        "customer_id,first_name,city,signup_date\nC1,Ann,Rome,2024-01-01\nC2,Bob,Oslo,2024-01-02\nC3,broken\n",
    )
    .expect("csv");
    let csv = csv.to_string_lossy().into_owned();

    let migrated = stdout(&dvault(&home, &["migrate"]));
    assert!(migrated.contains("private server"), "{migrated}");
    assert!(stdout(&dvault(&home, &["migrate"])).contains("schema is current"));

    let ingest = [
        "ingest",
        &csv,
        "--type",
        "customer_registered",
        "--source",
        "crm",
        "--time-field",
        "signup_date",
    ];
    let first = stdout(&dvault(&home, &ingest));
    assert!(
        first.contains("ingested 2 events (1 rejected: see dvault rejected)"),
        "{first}"
    );
    let second = stdout(&dvault(&home, &ingest));
    assert!(second.contains("nothing new"), "{second}");

    let loaded = stdout(&dvault(&home, &["load"]));
    assert!(loaded.contains("loaded 2 events"), "{loaded}");
    let status = stdout(&dvault(&home, &["status"]));
    assert!(status.contains("customer_registered"), "{status}");
    assert!(status.contains("0 events not loaded"), "{status}");
    let rejected = stdout(&dvault(&home, &["rejected"]));
    assert!(
        rejected.contains("customers.csv:4: wrong number of columns"),
        "{rejected}"
    );

    let bad = dvault(
        &home,
        &[
            "ingest",
            "/nonexistent/file.csv",
            "--type",
            "t",
            "--source",
            "s",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/file.csv"));

    assert!(stdout(&dvault(&home, &["local", "stop"])).contains("stopped"));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    // `dvault runs | head` closes the pipe early; here the reader is gone before the
    // first write, so every write fails with EPIPE
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::env::temp_dir().join(format!("dvault-pipe-{}", rand::random::<u64>()));
    let run = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args([
            "gen",
            "--customers",
            "20",
            "--products",
            "10",
            "--orders",
            "30",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(writer)
        .output()
        .expect("run dvault");
    let _ = std::fs::remove_dir_all(&out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}: {stderr}", run.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn demo_checks_its_port_before_any_work_and_names_listen() {
    let db = crate::harness::TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["demo", "--listen", &addr])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run dvault demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it failed only after {:?}",
        started.elapsed()
    );
    // and nothing was generated or ingested
    let events: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 0);
    drop(taken);
}
