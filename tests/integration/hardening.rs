//! Hardening of issue 13, section 6: no payload in the logs at any level, an audit
//! trail the loader role cannot erase, and protocol-level errors answered as
//! problem+json.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

use crate::api::{TestApp, open_config, with_credentials};
use crate::harness::TestDb;

const GOOD_EMAIL: &str = "good.person@trace-test.example";
const GOOD_PHONE: &str = "+41 79 123 45 67";
const INGEST_REJECTED_EMAIL: &str = "quarantined.line@trace-test.example";
const LOAD_REJECTED_EMAIL: &str = "load.rejected@trace-test.example";

/// An NDJSON file of three CloudEvents: one that loads (an e-mail and a phone in the
/// contact satellite), one that ingest quarantines (no `type`), one that the loader
/// quarantines (an impossible signup date). Each carries its own e-mail.
fn personal_events_file() -> std::path::PathBuf {
    let good = json!({"specversion": "1.0", "type": "customer_registered", "source": "crm",
        "id": "h-1", "time": "2024-01-01T00:00:00Z",
        "data": {"customer_id": "H1", "first_name": "Pat", "email": GOOD_EMAIL,
                 "phone": GOOD_PHONE, "country": "Switzerland", "signup_date": "2024-01-01"}});
    let no_type = json!({"specversion": "1.0", "source": "crm", "id": "h-2",
        "data": {"customer_id": "H2", "email": INGEST_REJECTED_EMAIL}});
    let bad_date = json!({"specversion": "1.0", "type": "customer_registered", "source": "crm",
        "id": "h-3", "time": "2024-01-02T00:00:00Z",
        "data": {"customer_id": "H3", "email": LOAD_REJECTED_EMAIL, "signup_date": "2024-13-45"}});
    let path =
        std::env::temp_dir().join(format!("dvault-personal-{}.ndjson", rand::random::<u64>()));
    std::fs::write(&path, format!("{good}\n{no_type}\n{bad_date}\n")).expect("write the events");
    path
}

/// Run the real binary against `url`; its stdout and stderr together.
async fn dvault(url: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("DVAULT_LOG")
        .output()
        .await
        .expect("run dvault");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dvault {args:?} failed:\n{text}");
    text
}

/// `dvault load` (after `first`, e.g. `rebuild`) until every event of the log is
/// loaded: a load sees only events older than every transaction still running on the
/// server, and tests in other databases write concurrently. Returns the output.
async fn load_all(url: &str, client: &tokio_postgres::Client, first: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut out = dvault(url, first).await;
    let mut again: Vec<&str> = first
        .iter()
        .take_while(|a| !["load", "rebuild"].contains(a))
        .copied()
        .collect();
    again.push("load");
    loop {
        let pending: i64 = client
            .query_one(
                "SELECT count(*) FROM event_log.events e
                  WHERE (e.xid, e.seq) > coalesce(
                    (SELECT (c.xid, c.seq) FROM ops.checkpoints c WHERE c.consumer = 'vault_loader'),
                    ('0'::xid8, 0::bigint))",
                &[],
            )
            .await
            .expect("pending")
            .get(0);
        if pending == 0 {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} events not loaded after 60 s:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        out.push_str(&dvault(url, &again).await);
    }
}

async fn rejections(client: &tokio_postgres::Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE stage = 'ingest'), count(*) FILTER (WHERE stage = 'load')
               FROM event_log.rejected",
            &[],
        )
        .await
        .expect("count rejections");
    (row.get(0), row.get(1))
}

/// `--log trace` over an ingest and a load of events with e-mails and phones: the
/// driver's statement logging (statements with their parameters) stays out; naming
/// the driver's target explicitly lets it in, which also proves the check can see a
/// leak.
#[tokio::test]
async fn trace_logs_hold_no_payload() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let file = personal_events_file();
    let file_arg = file.to_string_lossy().into_owned();
    let mut log = dvault(&db.url, &["--log", "trace", "ingest", &file_arg]).await;
    log.push_str(&load_all(&db.url, &client, &["--log", "trace", "load"]).await);
    log.push_str(&load_all(&db.url, &client, &["--log", "debug", "rebuild"]).await);

    // what the e-mails went through: the quarantine (ingest and load) and the vault
    assert_eq!(rejections(&client).await, (1, 1));
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM raw_vault.sat_customer_contact WHERE email = $1",
            &[&GOOD_EMAIL],
        )
        .await
        .expect("contact")
        .get(0);
    assert_eq!(stored, 1, "the good event loaded its contact details");
    // the log was verbose: the loader's debug lines are there
    assert!(
        log.contains("DEBUG") && log.contains("dvault::load"),
        "{log}"
    );
    for personal in [
        GOOD_EMAIL,
        GOOD_PHONE,
        INGEST_REJECTED_EMAIL,
        LOAD_REJECTED_EMAIL,
    ] {
        assert!(
            !log.contains(personal),
            "the log holds {personal:?}:\n{log}"
        );
    }

    // the explicit opt-in: the driver's statements with their parameters, and a warning
    let optin = dvault(&db.url, &["--log", "warn,tokio_postgres=debug", "rebuild"]).await;
    assert!(optin.contains("--log names the database driver"), "{optin}");
    assert!(optin.contains(LOAD_REJECTED_EMAIL), "{optin}");
    let _ = std::fs::remove_file(&file);
}

/// Run `sql` and expect the refusal of a missing privilege (42501).
async fn refused(client: &tokio_postgres::Client, sql: &str) {
    let err = client.batch_execute(sql).await.expect_err(sql);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {err}"
    );
}

async fn affected(client: &tokio_postgres::Client, sql: &str) -> u64 {
    client
        .execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The loader role deletes only load rejections and moves only its own checkpoints
/// (vault_loader, quality_gate); `dvault load` and `rebuild` still work as that role,
/// and the owner keeps its maintenance rights.
#[tokio::test]
async fn the_loader_role_cannot_erase_the_audit_trail() {
    let db = TestDb::new().await;
    let owner = db.client().await;
    let role = format!("dvault_audit_{}", rand::random::<u32>());
    let password = format!("pw-{}", rand::random::<u64>());
    owner
        .query_one("SELECT ops.grant_loader($1)", &[&role])
        .await
        .expect("grant_loader");
    owner
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{password}'"))
        .await
        .expect("password");
    let url = with_credentials(&db.url, &role, &password);
    let file = personal_events_file();
    let file_arg = file.to_string_lossy().into_owned();
    dvault(&url, &["ingest", &file_arg]).await;
    load_all(&url, &owner, &["load"]).await;
    assert_eq!(rejections(&owner).await, (1, 1));
    owner
        .batch_execute(
            "INSERT INTO ops.checkpoints (consumer, xid, seq) VALUES ('quality_gate', '1', 1), ('crm_export', '7', 7)",
        )
        .await
        .expect("checkpoints");

    let session = db.client().await;
    session
        .batch_execute(&format!("SET ROLE {role}"))
        .await
        .expect("SET ROLE");
    for sql in [
        "DELETE FROM event_log.rejected WHERE stage = 'ingest'",
        "DELETE FROM event_log.rejected",
        "UPDATE event_log.rejected SET reason = 'nothing to see'",
        "TRUNCATE event_log.rejected",
        "UPDATE ops.checkpoints SET seq = 0 WHERE consumer = 'crm_export'",
        "DELETE FROM ops.checkpoints WHERE consumer = 'crm_export'",
        "DELETE FROM ops.checkpoints",
        "UPDATE ops.checkpoints SET consumer = 'crm_export2' WHERE consumer = 'vault_loader'",
        "INSERT INTO ops.checkpoints (consumer, xid, seq) VALUES ('someone_else', '1', 1)",
        "TRUNCATE ops.checkpoints",
        "ALTER TABLE event_log.rejected DISABLE TRIGGER USER",
        "ALTER TABLE ops.checkpoints DISABLE TRIGGER USER",
        "SET session_replication_role = replica",
    ] {
        refused(&session, sql).await;
    }
    assert_eq!(rejections(&owner).await, (1, 1), "nothing was erased");
    let other: i64 = owner
        .query_one(
            "SELECT seq FROM ops.checkpoints WHERE consumer = 'crm_export'",
            &[],
        )
        .await
        .expect("the other consumer's checkpoint")
        .get(0);
    assert_eq!(other, 7, "the other consumer's checkpoint did not move");

    // what the loader needs stays allowed: its own checkpoints, its own rejections
    assert_eq!(
        affected(&session, "UPDATE ops.checkpoints SET seq = seq WHERE consumer IN ('vault_loader', 'quality_gate')").await,
        2
    );
    assert_eq!(
        affected(
            &session,
            "DELETE FROM ops.checkpoints WHERE consumer = 'quality_gate'"
        )
        .await,
        1
    );
    assert_eq!(
        affected(
            &session,
            "DELETE FROM event_log.rejected WHERE stage = 'load'"
        )
        .await,
        1
    );
    assert_eq!(rejections(&owner).await, (1, 0));
    drop(session);
    // and so do rebuild (clears load rejections and the checkpoint) and load
    load_all(&url, &owner, &["rebuild"]).await;
    assert_eq!(
        rejections(&owner).await,
        (1, 1),
        "rebuild quarantined again"
    );

    // the owner keeps its maintenance rights
    assert_eq!(
        affected(
            &owner,
            "DELETE FROM ops.checkpoints WHERE consumer = 'crm_export'"
        )
        .await,
        1
    );
    assert_eq!(
        affected(
            &owner,
            "DELETE FROM event_log.rejected WHERE stage = 'ingest'"
        )
        .await,
        1
    );
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
    let _ = std::fs::remove_file(&file);
}

/// Send `request` on a fresh connection and read until the server closes it.
async fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// Check a raw answer: `status`, problem+json with a Content-Length that matches its
/// body, the problem's `type`; returns the problem.
fn problem(answer: &[u8], status: u16, slug: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head: {text:?}"));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status}: {text}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-type: application/problem+json\r\n"),
        "{text}"
    );
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{text}"
    );
    assert!(head.contains("\r\nconnection: close"), "{text}");
    let problem: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(
        problem["type"],
        format!("urn:dvault:problem:{slug}"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    problem
}

/// What hyper refuses before any handler runs (a request it cannot parse) is answered
/// like every other error: problem+json.
#[tokio::test]
async fn protocol_errors_answer_problem_json() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let addr = app.base.trim_start_matches("http://").to_string();

    // 414: a request target longer than hyper's 65,534 bytes
    let long = format!(
        "GET /customers/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let p = problem(
        &raw_exchange(&addr, long.as_bytes()).await,
        414,
        "uri-too-long",
    );
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("65534")),
        "{p}"
    );

    // 431: more headers than allowed
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    problem(
        &raw_exchange(&addr, many.as_bytes()).await,
        431,
        "headers-too-large",
    );

    // 400: a control character in a header value, a space in the path, a bad method
    for bad in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\nX-Test: a\x01b\r\n\r\n"[..],
        b"GET /customers/C 01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
    ] {
        problem(&raw_exchange(&addr, bad).await, 400, "malformed-request");
    }

    // well-formed requests on a kept-alive connection are untouched, and so are the
    // API's own 400s and 404s
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /customers?limit=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text.contains("HTTP/1.1 400 ") && text.contains("urn:dvault:problem:bad-parameter"),
        "{text}"
    );
    assert!(
        text.contains("HTTP/1.1 404 ") && text.contains("urn:dvault:problem:no-route"),
        "{text}"
    );
    app.stop().await;
}
