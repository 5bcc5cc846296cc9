//! `/metrics` of the API and of the daemon: one naming scheme, build info and process
//! metrics in both, and `promtool check metrics` finds nothing to say about either.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::Utc;

use dvault::daemon::metrics::Metrics;
use dvault::ops::runs::{RunStatus, Trigger};

use crate::api::{TestApp, open_config};
use crate::harness::TestDb;

/// `promtool check metrics` on `text`: its complaints, or `None` when promtool is not
/// installed (CI installs it: .ci/run; there, missing is a failure).
fn promtool(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed (apt-get install prometheus)"
            );
            eprintln!("promtool is not installed: the exposition is not checked by it");
            return None;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() || !said.is_empty(), "promtool failed");
    Some(if out.status.success() {
        said
    } else {
        format!("exit {}: {said}", out.status)
    })
}

pub(crate) fn common(text: &str, what: &str) {
    for name in [
        "dvault_build_info{version=",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
        "dvault_loader_lag_events ",
        "dvault_loader_lag_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{what}: no {name}\n{text}"
        );
    }
    if let Some(said) = promtool(text) {
        assert_eq!(said.trim(), "", "{what}: promtool check metrics\n{text}");
    }
}

#[tokio::test]
async fn the_api_metrics_pass_promtool() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    for path in [
        "/health",
        "/customers?limit=1",
        "/customers/C404",
        "/nowhere",
    ] {
        app.get(path).await;
    }
    let text = app.get("/metrics").await.text().await.expect("metrics");
    assert!(text.contains("dvault_http_requests_total{"), "{text}");
    common(&text, "API");
    app.stop().await;
}

#[tokio::test]
async fn the_daemon_metrics_pass_promtool() {
    let metrics = Arc::new(Metrics::default());
    metrics.set_db_up(true);
    metrics.set_following(true);
    metrics.set_lag(3, Some(1.5));
    metrics.set_next_run(Some(Utc::now()));
    metrics.set_last_success("follow", Utc::now());
    metrics.run_ended(Trigger::Follow, RunStatus::Succeeded, None);
    metrics.run_ended(Trigger::Schedule, RunStatus::Failed, None);
    let addr = dvault::daemon::metrics::serve("127.0.0.1:0".parse().expect("addr"), metrics)
        .await
        .expect("serve");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("dvault_load_runs_total{"), "{text}");
    common(&text, "daemon");
}
