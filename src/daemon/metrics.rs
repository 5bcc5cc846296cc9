//! The daemon's Prometheus metrics (`--metrics-listen ADDR`, `GET /metrics`), in the
//! text exposition format 0.0.4, written by hand: events loaded, rows written, batch
//! and run durations, lag, last successful run per trigger, quality results, and the
//! database connection's state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};

use super::quality::Report;
use super::runs::{RunStatus, Trigger};
use crate::load::LoadSummary;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe_n(&mut self, secs: f64, n: u64) {
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i] += n;
        self.sum += secs * n as f64;
        self.count += n;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug, Default)]
struct State {
    events_loaded: BTreeMap<Trigger, u64>,
    rows_written: BTreeMap<String, u64>,
    rejected: u64,
    runs: BTreeMap<(Trigger, RunStatus), u64>,
    run_durations: BTreeMap<Trigger, Histogram>,
    batch_durations: Histogram,
    last_success: BTreeMap<String, f64>,
    lag_events: Option<i64>,
    lag_seconds: Option<f64>,
    /// `dvault stream`'s place in each Kafka partition, from `ops.stream_offsets`.
    stream_lags: Vec<crate::stream::offsets::Lag>,
    quality: Option<Report>,
    db_up: bool,
    db_failures: u64,
    following: bool,
    next_run: Option<f64>,
}

/// Shared between the daemon's loop and the HTTP listener.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// A run ended.
    pub fn run_ended(&self, trigger: Trigger, status: RunStatus, summary: Option<&LoadSummary>) {
        self.with(|s| {
            *s.runs.entry((trigger, status)).or_default() += 1;
            if let Some(sum) = summary {
                *s.events_loaded.entry(trigger).or_default() += sum.events;
                for (t, n) in &sum.rows {
                    *s.rows_written.entry(t.clone()).or_default() += n;
                }
                s.rejected += sum.rejected;
                let secs = sum.elapsed.as_secs_f64();
                s.run_durations
                    .entry(trigger)
                    .or_default()
                    .observe_n(secs, 1);
                if sum.batches > 0 {
                    s.batch_durations
                        .observe_n(secs / sum.batches as f64, sum.batches);
                }
            }
            if status == RunStatus::Succeeded {
                s.last_success
                    .insert(trigger.as_str().to_string(), Utc::now().timestamp() as f64);
            }
        })
    }

    /// Seed the last-success gauges from the run history (after a restart).
    pub fn set_last_success(&self, trigger: &str, at: DateTime<Utc>) {
        self.with(|s| {
            let v = s.last_success.entry(trigger.to_string()).or_insert(0.0);
            *v = v.max(at.timestamp() as f64);
        })
    }

    pub fn set_lag(&self, events: i64, oldest_seconds: Option<f64>) {
        self.with(|s| {
            s.lag_events = Some(events);
            s.lag_seconds = Some(oldest_seconds.unwrap_or(0.0));
        })
    }

    pub fn set_stream_lags(&self, lags: Vec<crate::stream::offsets::Lag>) {
        self.with(|s| s.stream_lags = lags)
    }

    pub fn set_quality(&self, report: &Report) {
        self.with(|s| s.quality = Some(report.clone()))
    }

    pub fn set_db_up(&self, up: bool) {
        self.with(|s| {
            if s.db_up && !up {
                s.db_failures += 1;
            }
            s.db_up = up;
        })
    }

    pub fn set_following(&self, following: bool) {
        self.with(|s| s.following = following)
    }

    pub fn set_next_run(&self, at: Option<DateTime<Utc>>) {
        self.with(|s| s.next_run = at.map(|t| t.timestamp() as f64))
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            let head = |out: &mut String, name: &str, kind: &str, help: &str| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
            };
            head(&mut out, "dvault_daemon_db_up", "gauge", "1 while the daemon is connected to the database and holds the daemon lock.");
            let _ = writeln!(out, "dvault_daemon_db_up {}", u8::from(s.db_up));
            head(&mut out, "dvault_daemon_db_connection_losses_total", "counter", "Times the daemon lost its database connection.");
            let _ = writeln!(out, "dvault_daemon_db_connection_losses_total {}", s.db_failures);
            head(&mut out, "dvault_daemon_following", "gauge", "1 while the daemon listens for appends (--follow).");
            let _ = writeln!(out, "dvault_daemon_following {}", u8::from(s.following));
            head(&mut out, "dvault_events_loaded_total", "counter", "Events read from the log and loaded into the vault, by trigger.");
            for t in Trigger::ALL {
                let n = s.events_loaded.get(&t).copied().unwrap_or(0);
                let _ = writeln!(out, "dvault_events_loaded_total{{trigger=\"{}\"}} {n}", t.as_str());
            }
            head(&mut out, "dvault_rows_written_total", "counter", "Vault rows inserted, by table.");
            for (t, n) in &s.rows_written {
                let _ = writeln!(out, "dvault_rows_written_total{{table=\"{t}\"}} {n}");
            }
            head(&mut out, "dvault_events_rejected_total", "counter", "Events the loader quarantined in event_log.rejected.");
            let _ = writeln!(out, "dvault_events_rejected_total {}", s.rejected);
            head(&mut out, "dvault_load_runs_total", "counter", "Load runs, by trigger and outcome.");
            for ((t, st), n) in &s.runs {
                let _ = writeln!(
                    out,
                    "dvault_load_runs_total{{trigger=\"{}\",status=\"{}\"}} {n}",
                    t.as_str(),
                    st.as_str()
                );
            }
            head(&mut out, "dvault_load_run_duration_seconds", "histogram", "Duration of load runs that finished their load, by trigger.");
            for (t, h) in &s.run_durations {
                h.write(&mut out, "dvault_load_run_duration_seconds", &format!("trigger=\"{}\"", t.as_str()));
            }
            head(&mut out, "dvault_batch_duration_seconds", "histogram", "Load batch durations (one transaction each); the batches of one run are counted at that run's mean batch duration, so sum and count are exact.");
            s.batch_durations.write(&mut out, "dvault_batch_duration_seconds", "");
            head(&mut out, "dvault_last_success_timestamp_seconds", "gauge", "Unix time of the last successful run, by trigger.");
            for (t, at) in &s.last_success {
                let _ = writeln!(out, "dvault_last_success_timestamp_seconds{{trigger=\"{t}\"}} {at}");
            }
            if let Some(next) = s.next_run {
                head(&mut out, "dvault_next_scheduled_run_timestamp_seconds", "gauge", "Unix time of the next nightly run.");
                let _ = writeln!(out, "dvault_next_scheduled_run_timestamp_seconds {next}");
            }
            if let (Some(events), Some(secs)) = (s.lag_events, s.lag_seconds) {
                head(&mut out, "dvault_loader_lag_events", "gauge", "Events in the log not yet loaded into the vault.");
                let _ = writeln!(out, "dvault_loader_lag_events {events}");
                head(&mut out, "dvault_loader_lag_seconds", "gauge", "Age of the oldest event not yet loaded (0 when none).");
                let _ = writeln!(out, "dvault_loader_lag_seconds {secs}");
            }
            if !s.stream_lags.is_empty() {
                head(&mut out, "dvault_stream_lag_records", "gauge", "Records of a Kafka partition not consumed yet by dvault stream, as of its last fetch, by group, topic and partition.");
                for l in &s.stream_lags {
                    let _ = writeln!(out, "dvault_stream_lag_records{{{}}} {}", stream_labels(l), l.records());
                }
                head(&mut out, "dvault_stream_offset", "gauge", "The next offset dvault stream consumes, by group, topic and partition.");
                for l in &s.stream_lags {
                    let _ = writeln!(out, "dvault_stream_offset{{{}}} {}", stream_labels(l), l.next_offset);
                }
                head(&mut out, "dvault_stream_updated_timestamp_seconds", "gauge", "Unix time of dvault stream's last batch or fetch of a partition, by group, topic and partition.");
                for l in &s.stream_lags {
                    let _ = writeln!(out, "dvault_stream_updated_timestamp_seconds{{{}}} {}", stream_labels(l), l.updated_at.timestamp());
                }
            }
            if let Some(q) = &s.quality {
                head(&mut out, "dvault_quality_gate_passed", "gauge", "1 if every check of the latest quality gate passed.");
                let _ = writeln!(out, "dvault_quality_gate_passed {}", u8::from(q.passed()));
                if let Some(at) = q.checked_at {
                    head(&mut out, "dvault_quality_gate_timestamp_seconds", "gauge", "Unix time of the latest quality gate.");
                    let _ = writeln!(out, "dvault_quality_gate_timestamp_seconds {}", at.timestamp());
                }
                head(&mut out, "dvault_quality_check_passed", "gauge", "1 if the check passed at the latest gate.");
                for r in &q.results {
                    let _ = writeln!(out, "dvault_quality_check_passed{{check=\"{}\"}} {}", r.check.as_str(), u8::from(r.passed));
                }
                head(&mut out, "dvault_quality_check_measured", "gauge", "Measured value at the latest gate: worst ratio, orphan count or age in hours.");
                for r in &q.results {
                    if let Some(m) = r.measured {
                        let _ = writeln!(out, "dvault_quality_check_measured{{check=\"{}\"}} {m}", r.check.as_str());
                    }
                }
                head(&mut out, "dvault_quality_check_threshold", "gauge", "Threshold of the check.");
                for r in &q.results {
                    let _ = writeln!(out, "dvault_quality_check_threshold{{check=\"{}\"}} {}", r.check.as_str(), r.threshold);
                }
            }
            crate::process_metrics::write(&mut out);
            out
        })
    }
}

/// A label value in the exposition format: backslash, double quote and line feed
/// escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn stream_labels(l: &crate::stream::offsets::Lag) -> String {
    format!(
        "group=\"{}\",topic=\"{}\",partition=\"{}\"",
        label_value(&l.group),
        label_value(&l.at.topic),
        l.at.partition
    )
}

async fn scrape(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Bind `addr` and serve `GET /metrics` in the background; the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn runs_show_up_as_counters_and_histograms() {
        let m = Metrics::default();
        let summary = LoadSummary {
            batches: 2,
            events: 10,
            rejected: 1,
            rows: [("hub_customer".to_string(), 9)].into_iter().collect(),
            elapsed: Duration::from_millis(40),
            ..LoadSummary::default()
        };
        m.run_ended(Trigger::Follow, RunStatus::Succeeded, Some(&summary));
        m.set_lag(3, Some(1.5));
        m.set_stream_lags(vec![crate::stream::offsets::Lag {
            group: "g\"1".into(),
            at: crate::stream::offsets::TopicPartition {
                topic: "clicks".into(),
                partition: 1,
            },
            next_offset: 40,
            high_watermark: 42,
            updated_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        }]);
        let text = m.render();
        for line in [
            "dvault_events_loaded_total{trigger=\"follow\"} 10",
            "dvault_events_loaded_total{trigger=\"schedule\"} 0",
            "dvault_rows_written_total{table=\"hub_customer\"} 9",
            "dvault_events_rejected_total 1",
            "dvault_load_runs_total{trigger=\"follow\",status=\"succeeded\"} 1",
            "dvault_batch_duration_seconds_bucket{le=\"0.025\"} 2",
            "dvault_batch_duration_seconds_count 2",
            "dvault_load_run_duration_seconds_bucket{trigger=\"follow\",le=\"+Inf\"} 1",
            "dvault_loader_lag_events 3",
            "dvault_loader_lag_seconds 1.5",
            "dvault_stream_lag_records{group=\"g\\\"1\",topic=\"clicks\",partition=\"1\"} 2",
            "dvault_stream_offset{group=\"g\\\"1\",topic=\"clicks\",partition=\"1\"} 40",
            "dvault_stream_updated_timestamp_seconds{group=\"g\\\"1\",topic=\"clicks\",partition=\"1\"} 1800000000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains("dvault_last_success_timestamp_seconds{trigger=\"follow\"}"));
    }
}
