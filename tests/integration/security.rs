//! Security: the loader and API roles of views/95_roles.sql (append-only log, no
//! personal data for the API), API keys kept as digests, and logs free of secrets and
//! personal data.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::error::SqlState;

use dvault::api::{ApiConfig, ApiKey, Scope};
use dvault::events;

use crate::api::{
    READ_TOKEN, TestApp, WRITE_TOKEN, customer_event, data_set, expect_json, keyed_config,
    loaded_db, with_credentials,
};
use crate::harness::{self, TestDb};

/// A fresh role name and its password, set by the owner.
async fn service_role(
    owner: &tokio_postgres::Client,
    grant: &str,
    prefix: &str,
) -> (String, String) {
    let role = format!("{prefix}_{}", rand::random::<u32>());
    let password = format!("pw-{}", rand::random::<u64>());
    let said: String = owner
        .query_one(&format!("SELECT ops.{grant}($1)"), &[&role])
        .await
        .unwrap_or_else(|e| panic!("ops.{grant}: {e}"))
        .get(0);
    assert!(said.starts_with("created"), "{said}");
    // idempotent: again, same rights, says so
    let again: String = owner
        .query_one(&format!("SELECT ops.{grant}($1)"), &[&role])
        .await
        .expect("again")
        .get(0);
    assert!(again.starts_with("granted"), "{again}");
    owner
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{password}'"))
        .await
        .expect("password");
    (role, password)
}

async fn drop_role(owner: &tokio_postgres::Client, role: &str) {
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
}

async fn refused(client: &tokio_postgres::Client, sql: &str) {
    let err = client.batch_execute(sql).await.expect_err(sql);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {err}"
    );
}

/// UPDATE, DELETE and TRUNCATE of the log, also with the owner's maintenance switch.
async fn log_is_append_only_for(client: &tokio_postgres::Client) {
    for sql in [
        "UPDATE event_log.events SET event_type = 'x'",
        "DELETE FROM event_log.events",
        "TRUNCATE event_log.events",
        "BEGIN; SET LOCAL dvault.log_maintenance = 'on'; DELETE FROM event_log.events; COMMIT",
        "BEGIN; SET LOCAL dvault.log_maintenance = 'on'; TRUNCATE event_log.events; COMMIT",
        "ALTER TABLE event_log.events DISABLE TRIGGER events_append_only",
        "DROP TRIGGER events_append_only ON event_log.events",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        // a failed transaction block: roll it back for the next statement
        let _ = client.batch_execute("ROLLBACK").await;
        let code = err.code().cloned();
        assert!(
            code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
                || code == Some(SqlState::from_code("42501")),
            "{sql}: {err}"
        );
    }
}

#[tokio::test]
async fn the_loader_role_loads_and_cannot_change_the_log() {
    let db = TestDb::new().await;
    let owner = db.client().await;
    let (role, password) = service_role(&owner, "grant_loader", "dvault_loader_test").await;
    let url = with_credentials(&db.url, &role, &password);
    let mut loader = dvault::db::connect(&url).await.expect("connect as loader");

    // it appends (ingest) and loads (the whole vault and business vault)
    let appended = events::append(&loader, &data_set()).await.expect("append");
    assert_eq!(appended.duplicates, 0);
    // the log is not its own: a run leaves analyzing it to autovacuum
    assert!(
        !dvault::ops::analyze::log_before_run(&loader)
            .await
            .expect("checking the log's statistics")
    );
    let summary = harness::load_all(&mut loader).await;
    assert_eq!(summary.rejected, 0);
    let orders: i64 = owner
        .query_one("SELECT count(*) FROM raw_vault.hub_order", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(orders, 12, "the loader role loaded the data set");

    // the nightly cycle (load, refresh, quality gate, ANALYZE) runs as this role too
    let once = tokio::process::Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["daemon", "--once"])
        .env("DATABASE_URL", &url)
        .output()
        .await
        .expect("run dvault daemon --once");
    assert!(
        once.status.success(),
        "daemon --once as the loader role: {}",
        String::from_utf8_lossy(&once.stderr)
    );

    // but the log is append-only for it
    log_is_append_only_for(&loader).await;
    let events: i64 = owner
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, data_set().len() as i64, "nothing was removed");
    // and it cannot change the schema
    refused(&loader, "CREATE TABLE raw_vault.sneaky (x int)").await;
    refused(&loader, "DROP TABLE raw_vault.hub_customer").await;
    drop(loader);
    drop_role(&owner, &role).await;
}

#[tokio::test]
async fn the_api_role_serves_but_reads_no_raw_vault_and_writes_no_vault() {
    let db = loaded_db().await;
    let owner = db.client().await;
    let (role, password) = service_role(&owner, "grant_api", "dvault_api_role_test").await;
    let url = with_credentials(&db.url, &role, &password);

    // the server works with it: reads, history, readiness, appends
    let app = TestApp::spawn(&url, keyed_config()).await;
    for path in [
        "/customers?limit=5",
        "/customers/C01/history",
        "/orders/O02",
        "/segments",
        "/analytics/churn",
        "/analytics/categories",
        "/ready",
    ] {
        expect_json(app.get_with(path, READ_TOKEN).await, 200, path).await;
    }
    let c = expect_json(app.get_with("/customers/C01", READ_TOKEN).await, 200, "C01").await;
    assert!(c["email"].is_null() && c["phone"].is_null(), "{c}");
    let resp = app
        .post(
            "/events",
            "application/x-ndjson",
            customer_event("role-api-1", "C88"),
            Some(WRITE_TOKEN),
        )
        .await;
    assert_eq!(expect_json(resp, 202, "append").await["accepted"], 1);
    app.stop().await;

    let api = dvault::db::connect(&url)
        .await
        .expect("connect as the API role");
    log_is_append_only_for(&api).await;
    // no table of raw_vault can be read or written
    let tables = harness::table_names(&owner, "raw_vault").await;
    assert!(tables.len() >= 10, "{tables:?}");
    for t in &tables {
        refused(&api, &format!("SELECT * FROM raw_vault.{t} LIMIT 1")).await;
        refused(&api, &format!("DELETE FROM raw_vault.{t}")).await;
    }
    for sql in [
        "SELECT payload FROM event_log.events LIMIT 1",
        "SELECT raw FROM event_log.rejected LIMIT 1",
        "INSERT INTO raw_vault.hub_customer SELECT * FROM raw_vault.hub_customer",
        "TRUNCATE business_vault.customer_order_summary",
        "DELETE FROM ops.checkpoints",
        "UPDATE ops.checkpoints SET seq = 0",
        "CREATE TABLE mart.sneaky (x int)",
        "SELECT ops.grant_api('someone_else')",
        "SELECT ops.grant_loader('someone_else')",
    ] {
        refused(&api, sql).await;
    }
    drop(api);
    drop_role(&owner, &role).await;
}

#[tokio::test]
async fn service_roles_refuse_superusers_and_empty_names() {
    let db = TestDb::new().await;
    let owner = db.client().await;
    for grant in ["grant_api", "grant_loader"] {
        let err = owner
            .query_one(&format!("SELECT ops.{grant}('')"), &[])
            .await
            .expect_err("empty name");
        assert!(
            err.to_string().contains("a role name is required")
                || format!("{err:?}").contains("a role name is required"),
            "{err:?}"
        );
        let err = owner
            .query_one(
                &format!("SELECT ops.{grant}(rolname) FROM pg_roles WHERE rolsuper LIMIT 1"),
                &[],
            )
            .await
            .expect_err("a superuser");
        assert!(format!("{err:?}").contains("superuser"), "{err:?}");
    }
}

#[test]
fn api_keys_are_kept_as_digests_and_the_digest_is_no_token() {
    let key = ApiKey::for_token(Scope::Write, WRITE_TOKEN);
    // what the server holds is the SHA-256, and its Debug form shows 8 hex digits of it
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(WRITE_TOKEN.as_bytes()).into();
    assert_eq!(key.sha256, digest);
    let config = ApiConfig {
        keys: vec![key.clone()],
        ..ApiConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains(WRITE_TOKEN), "{shown}");
    assert!(!shown.contains(&hex::encode(digest)), "{shown}");
    // a stolen digest is not a credential
    let keys = [key];
    assert_eq!(
        dvault::api::auth::authenticate(&keys, &hex::encode(digest)),
        None
    );
    assert_eq!(
        dvault::api::auth::authenticate(&keys, WRITE_TOKEN),
        Some(Scope::Write)
    );
    // the comparison is subtle's constant-time equality over every key (no early exit)
    let source = include_str!("../../src/api/auth.rs");
    assert!(source.contains("ct_eq(&digest)"));
    assert!(!source.contains("sha256 == digest") && !source.contains("== &digest"));
}

/// The real binary at `--log info`: a request flow with personal data in answers and
/// posted events, a password in DATABASE_URL and bearer tokens; none of them reaches
/// the log.
#[tokio::test]
async fn info_logs_hold_no_secret_and_no_personal_data() {
    let db = loaded_db().await;
    let owner = db.client().await;
    let (role, password) = service_role(&owner, "grant_api", "dvault_log_test").await;
    // this role may show contact details, so answers carry them
    owner
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA raw_vault TO {role}; GRANT SELECT ON raw_vault.sat_customer_contact TO {role}"
        ))
        .await
        .expect("grant contact");
    let url = with_credentials(&db.url, &role, &password);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let write_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        WRITE_TOKEN.as_bytes(),
    ));
    let read_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        READ_TOKEN.as_bytes(),
    ));
    let log_path = std::env::temp_dir().join(format!("dvault-log-{}.txt", rand::random::<u64>()));
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log",
            "info",
        ])
        .args(["--api-key", &format!("read:{read_digest}")])
        .args(["--api-key", &format!("write:{write_digest}")])
        .env("DATABASE_URL", &url)
        .stdout(log_file.try_clone().expect("clone"))
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("start dvault serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the flow: reads with personal data in the answer, a bad token, a write with
    // personal data, a rejected write, a not-found, a bad parameter
    let c: serde_json::Value = http
        .get(format!("{base}/customers/C01"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        c["email"], "ann@new.example",
        "the answer does carry the email"
    );
    let personal_email = "secret.person@private.example";
    let personal_phone = "+41 79 555 12 34";
    let event = json!({"specversion": "1.0", "type": "customer_registered", "source": "crm",
        "id": "log-1", "time": "2024-02-02T00:00:00Z",
        "data": {"customer_id": "C55", "first_name": "Pat", "email": personal_email,
                 "phone": personal_phone, "country": "Switzerland"}});
    let bad_event = json!({"specversion": "1.0", "source": "crm", "id": "log-2",
        "data": {"email": personal_email, "phone": personal_phone}});
    for (path, token, body) in [
        ("/customers?limit=100", READ_TOKEN, None),
        ("/customers/C01/history", READ_TOKEN, None),
        ("/customers", "not-a-real-token-xyz", None),
        ("/customers/NOPE", READ_TOKEN, None),
        ("/customers?country=%00", READ_TOKEN, None),
        (
            "/events",
            WRITE_TOKEN,
            Some(format!("{event}\n{bad_event}\n")),
        ),
        ("/events", WRITE_TOKEN, Some(format!("{bad_event}\n"))),
    ] {
        let req = match &body {
            Some(b) => http
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-ndjson")
                .body(b.clone()),
            None => http.get(format!("{base}{path}")),
        };
        let resp = req.bearer_auth(token).send().await.expect("request");
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
    }
    // stop it gracefully so every line is written
    if let Some(pid) = server.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
    let log = std::fs::read_to_string(&log_path).expect("read the log");
    let _ = std::fs::remove_file(&log_path);
    assert!(
        log.contains("API key"),
        "the log was captured (startup lines): {log}"
    );
    for secret in [
        password.as_str(),
        READ_TOKEN,
        WRITE_TOKEN,
        "not-a-real-token-xyz",
        &write_digest,
        &read_digest,
        "ann@new.example",
        "c01@example.com",
        "+39 000",
        personal_email,
        personal_phone,
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
    drop_role(&owner, &role).await;
}
