//! What the binary writes where: colour only on a terminal, and with `--log-format
//! json` every line on stderr a JSON object (banner, warnings and errors included),
//! nothing on stdout. The server runs as a real process on a real socket.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::TestDb;

/// `dvault --log debug --log-format FORMAT serve` on a free port, with stdout and
/// stderr piped (not a terminal).
fn serve(db: &TestDb, format: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["--log", "debug", "--log-format", format, "serve"])
        .args(["--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env_remove("DVAULT_API_KEYS")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dvault serve")
}

/// Run the server until it has said where it listens, ask it once, stop it with
/// SIGTERM; its (stdout, stderr).
async fn run_once(db: &TestDb, format: &str) -> (String, String) {
    let mut child = serve(db, format);
    let (tx, rx) = mpsc::channel::<String>();
    let mut out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let lines = tx.clone();
    let stderr_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines() {
            let line = line.expect("stderr line");
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let stdout_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 256];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let _ = tx.send(chunk.clone());
                    all.push_str(&chunk);
                }
            }
        }
        all
    });
    // the address, from the banner (stdout in text mode, stderr in JSON mode)
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(text) => seen.push_str(&text),
            Err(_) => {
                let _ = child.kill();
                panic!("no banner within 30 s: {seen}");
            }
        }
        if let Some(rest) = seen.split("listening on http://").nth(1) {
            let addr: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            if addr.contains(':') && rest.len() > addr.len() {
                break addr;
            }
        }
    };
    let health = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("GET /health");
    assert_eq!(health.status().as_u16(), 200);
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "dvault serve exited with {status}");
    (
        stdout_reader.join().expect("stdout"),
        stderr_reader.join().expect("stderr"),
    )
}

#[tokio::test]
async fn text_logs_off_a_terminal_have_no_colour() {
    let db = TestDb::new().await;
    let (stdout, stderr) = run_once(&db, "text").await;
    assert!(stdout.contains("listening on http://"), "{stdout}");
    assert!(stdout.contains("dashboard at /dashboard"), "{stdout}");
    assert!(
        stderr.contains("warning: no API keys configured"),
        "{stderr}"
    );
    // tracing's own lines (the request answered, the shutdown) are there, plain
    assert!(stderr.contains("answered"), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'),
        "escape codes off a terminal: {stderr:?}"
    );
}

#[tokio::test]
async fn json_logs_are_all_json_on_stderr() {
    let db = TestDb::new().await;
    let (stdout, stderr) = run_once(&db, "json").await;
    assert_eq!(stdout, "", "nothing on stdout in JSON mode");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let find = |needle: &str| {
        lines
            .iter()
            .find(|v| message(v).contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {stderr}"))
    };
    assert_eq!(find("listening on http://")["level"], "INFO");
    assert_eq!(find("no API keys configured")["level"], "WARN");
    find("answered");
    find("shutting down");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn a_failed_command_in_json_mode_says_so_in_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["--log-format", "json", "status"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .output()
        .expect("run dvault");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let v: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(v["level"], "ERROR", "{v}");
    assert!(
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:1")),
        "{v}"
    );
}

/// A SIGTERM sent the moment the server says it listens stops it gracefully (exit 0),
/// not by the signal's default action: the handlers are in place before the banner.
#[tokio::test]
async fn a_sigterm_right_after_the_banner_stops_the_server_gracefully() {
    let db = TestDb::new().await;
    for attempt in 0..5 {
        let mut child = serve(&db, "text");
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let banner = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("listening on http://"));
        assert!(banner.is_some(), "attempt {attempt}: no banner");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "attempt {attempt}: dvault serve exited with {status}"
        );
    }
}

/// `dvault --log info --log-format json ARGS` on `db`: its stderr, one JSON value a line.
fn json_lines(db: &TestDb, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["--log", "info", "--log-format", "json"])
        .args(args)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run dvault");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// With `--log-format json` a load can be followed batch by batch: each batch's lines
/// carry a `batch` span with its events, rows and duration, inside a `run` span with
/// the id of its row in `dvault runs`.
#[tokio::test]
async fn each_batch_of_a_load_logs_in_its_span_inside_the_runs() {
    let db = TestDb::new().await;
    let dir = crate::ingest::tempdir::Dir::new();
    let out = dir.path().to_str().expect("a UTF-8 path");
    json_lines(
        &db,
        &[
            "gen",
            "--out",
            out,
            "--customers",
            "40",
            "--products",
            "10",
            "--orders",
            "80",
            "--days",
            "30",
        ],
    );
    let events = format!("{out}/events.ndjson");
    json_lines(&db, &["ingest", &events]);
    let lines = json_lines(&db, &["load", "--batch-size", "100", "--no-bulk"]);
    let batches: Vec<&Value> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == "batch loaded")
        .collect();
    assert!(batches.len() > 2, "{lines:#?}");
    let run_id = db
        .client()
        .await
        .query_one("SELECT max(id) FROM ops.load_runs", &[])
        .await
        .expect("the run's row")
        .get::<_, i64>(0);
    let mut events_in_batches = 0;
    for b in &batches {
        let span = &b["span"];
        assert_eq!(span["name"], "batch", "{b}");
        let n = span["events"].as_u64().expect("the batch's events");
        assert!((1..=100).contains(&n), "{b}");
        events_in_batches += n;
        assert!(span["rows"].as_u64().is_some_and(|r| r > 0), "{b}");
        assert!(span["ms"].as_u64().is_some(), "{b}");
        let run = &b["spans"][0];
        assert_eq!(run["name"], "run", "{b}");
        assert_eq!(run["run"].as_i64(), Some(run_id), "{b}");
        assert_eq!(run["trigger"], "manual", "{b}");
    }
    let logged: u64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get::<_, i64>(0) as u64;
    assert_eq!(events_in_batches, logged, "every event in one batch's span");
}
