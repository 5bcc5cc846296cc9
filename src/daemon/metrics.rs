//! The daemon's Prometheus metrics (`--metrics-listen ADDR`, `GET /metrics`), on the
//! `prometheus-client` crate: events loaded, rows written, batch and run durations,
//! the last successful run per trigger, the database connection's state (the crate's
//! counters, gauges and histograms, updated by the daemon's loop); and what is absent
//! until the loop has learnt it (the lag, the streams' places, the latest quality
//! gate, the next nightly run), written at each scrape by a collector from the latest
//! values.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::load::LoadSummary;
use crate::ops::quality::Report;
use crate::ops::runs::{RunStatus, Trigger};
use crate::process_metrics::{gauge, gauges};
use crate::stream::offsets::Lag;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

impl TriggerLabel {
    fn of(trigger: &str) -> TriggerLabel {
        TriggerLabel {
            trigger: trigger.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    trigger: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    group: String,
    topic: String,
    partition: i32,
}

impl StreamLabels {
    fn of(l: &Lag) -> StreamLabels {
        StreamLabels {
            group: l.group.clone(),
            topic: l.at.topic.clone(),
            partition: l.at.partition,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

/// Shared between the daemon's loop and the HTTP listener.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    db_up: Gauge,
    db_losses: Counter,
    following: Gauge,
    events_loaded: Family<TriggerLabel, Counter>,
    rows_written: Family<TableLabel, Counter>,
    rejected: Counter,
    runs: Family<RunLabels, Counter>,
    run_durations: Family<TriggerLabel, Histogram, fn() -> Histogram>,
    batch_durations: Histogram,
    last_success: Family<TriggerLabel, Gauge>,
    latest: Arc<Mutex<Latest>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            db_up: Gauge::default(),
            db_losses: Counter::default(),
            following: Gauge::default(),
            events_loaded: Family::default(),
            rows_written: Family::default(),
            rejected: Counter::default(),
            runs: Family::default(),
            run_durations: Family::new_with_constructor(duration_histogram),
            batch_durations: duration_histogram(),
            last_success: Family::default(),
            latest: Arc::default(),
        };
        // every trigger from the start, at 0, so that rate() has a first sample
        for t in Trigger::ALL {
            let _ = m.events_loaded.get_or_create(&TriggerLabel::of(t.as_str()));
        }
        m.registered()
    }
}

impl Metrics {
    /// `self` with its metrics registered (the registry holds shared handles).
    fn registered(mut self) -> Metrics {
        // (counters are registered without `_total`: the encoder appends it)
        let r = &mut self.registry;
        r.register(
            "dvault_daemon_db_up",
            "1 while the daemon is connected to the database and holds the daemon lock",
            self.db_up.clone(),
        );
        r.register(
            "dvault_daemon_db_connection_losses",
            "Times the daemon lost its database connection",
            self.db_losses.clone(),
        );
        r.register(
            "dvault_daemon_following",
            "1 while the daemon listens for appends (--follow)",
            self.following.clone(),
        );
        r.register(
            "dvault_events_loaded",
            "Events read from the log and loaded into the vault, by trigger",
            self.events_loaded.clone(),
        );
        r.register(
            "dvault_rows_written",
            "Vault rows inserted, by table",
            self.rows_written.clone(),
        );
        r.register(
            "dvault_events_rejected",
            "Events the loader quarantined in event_log.rejected",
            self.rejected.clone(),
        );
        r.register(
            "dvault_load_runs",
            "Load runs, by trigger and outcome",
            self.runs.clone(),
        );
        r.register(
            "dvault_load_run_duration_seconds",
            "Duration of load runs that finished their load, by trigger",
            self.run_durations.clone(),
        );
        r.register(
            "dvault_batch_duration_seconds",
            "Load batch durations (one transaction each); the batches of one run are \
             counted at that run's mean batch duration, so sum and count are exact",
            self.batch_durations.clone(),
        );
        r.register(
            "dvault_last_success_timestamp_seconds",
            "Unix time of the last successful run, by trigger",
            self.last_success.clone(),
        );
        r.register_collector(Box::new(LatestCollector(self.latest.clone())));
        crate::process_metrics::register(r);
        self
    }

    fn latest(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run ended.
    pub fn run_ended(&self, trigger: Trigger, status: RunStatus, summary: Option<&LoadSummary>) {
        self.runs
            .get_or_create(&RunLabels {
                trigger: trigger.as_str(),
                status: status.as_str(),
            })
            .inc();
        let label = TriggerLabel::of(trigger.as_str());
        if let Some(sum) = summary {
            self.events_loaded.get_or_create(&label).inc_by(sum.events);
            for (table, n) in &sum.rows {
                self.rows_written
                    .get_or_create(&TableLabel {
                        table: table.clone(),
                    })
                    .inc_by(*n);
            }
            self.rejected.inc_by(sum.rejected);
            let secs = sum.elapsed.as_secs_f64();
            self.run_durations.get_or_create(&label).observe(secs);
            if sum.batches > 0 {
                // the loader reports a run, not each batch: its batches at their mean
                let mean = secs / sum.batches as f64;
                for _ in 0..sum.batches {
                    self.batch_durations.observe(mean);
                }
            }
        }
        if status == RunStatus::Succeeded {
            self.set_last_success(trigger.as_str(), Utc::now());
        }
    }

    /// Seed the last-success gauges from the run history (after a restart); a gauge
    /// only moves forward.
    pub fn set_last_success(&self, trigger: &str, at: DateTime<Utc>) {
        let gauge = self.last_success.get_or_create(&TriggerLabel::of(trigger));
        gauge.set(gauge.get().max(at.timestamp()));
    }

    pub fn set_lag(&self, events: i64, oldest_seconds: Option<f64>) {
        self.latest().lag = Some((events, oldest_seconds.unwrap_or(0.0)));
    }

    pub fn set_stream_lags(&self, lags: Vec<Lag>) {
        self.latest().stream_lags = lags;
    }

    pub fn set_quality(&self, report: &Report) {
        self.latest().quality = Some(report.clone());
    }

    pub fn set_db_up(&self, up: bool) {
        let was = self.db_up.set(i64::from(up));
        if was == 1 && !up {
            self.db_losses.inc();
        }
    }

    pub fn set_following(&self, following: bool) {
        self.following.set(i64::from(following));
    }

    pub fn set_next_run(&self, at: Option<DateTime<Utc>>) {
        self.latest().next_run = at.map(|t| t.timestamp());
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the daemon's loop learnt last; `None` (or empty) until it has.
#[derive(Debug, Default)]
struct Latest {
    next_run: Option<i64>,
    /// Events not loaded yet, and the age of the oldest (0 when none).
    lag: Option<(i64, f64)>,
    /// `dvault stream`'s place in each Kafka partition, from `ops.stream_offsets`.
    stream_lags: Vec<Lag>,
    quality: Option<Report>,
}

/// Writes [`Latest`] at each scrape: only what is known, so a gauge never shows a
/// made-up 0.
#[derive(Debug)]
struct LatestCollector(Arc<Mutex<Latest>>);

impl Collector for LatestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = &mut encoder;
        if let Some(next) = latest.next_run {
            gauge(
                e,
                "dvault_next_scheduled_run_timestamp_seconds",
                "Unix time of the next nightly run.",
                next,
            )?;
        }
        if let Some((events, seconds)) = latest.lag {
            gauge(
                e,
                "dvault_loader_lag_events",
                "Events in the log not yet loaded into the vault.",
                events,
            )?;
            gauge(
                e,
                "dvault_loader_lag_seconds",
                "Age of the oldest event not yet loaded (0 when none).",
                seconds,
            )?;
        }
        if !latest.stream_lags.is_empty() {
            encode_streams(e, &latest.stream_lags)?;
        }
        if let Some(q) = &latest.quality {
            encode_quality(e, q)?;
        }
        Ok(())
    }
}

/// Where `dvault stream` stands in each Kafka partition.
fn encode_streams(e: &mut DescriptorEncoder, streams: &[Lag]) -> Result<(), std::fmt::Error> {
    gauges(
        e,
        "dvault_stream_lag_records",
        "Records of a Kafka partition not consumed yet by dvault stream, as of its \
         last fetch, by group, topic and partition.",
        streams.iter().map(|l| (StreamLabels::of(l), l.records())),
    )?;
    gauges(
        e,
        "dvault_stream_offset",
        "The next offset dvault stream consumes, by group, topic and partition.",
        streams.iter().map(|l| (StreamLabels::of(l), l.next_offset)),
    )?;
    gauges(
        e,
        "dvault_stream_updated_timestamp_seconds",
        "Unix time of dvault stream's last batch or fetch of a partition, by group, \
         topic and partition.",
        streams
            .iter()
            .map(|l| (StreamLabels::of(l), l.updated_at.timestamp())),
    )?;
    Ok(())
}

/// The latest quality gate, and each of its checks.
fn encode_quality(e: &mut DescriptorEncoder, q: &Report) -> Result<(), std::fmt::Error> {
    gauge(
        e,
        "dvault_quality_gate_passed",
        "1 if every check of the latest quality gate passed.",
        i64::from(q.passed()),
    )?;
    if let Some(at) = q.checked_at {
        gauge(
            e,
            "dvault_quality_gate_timestamp_seconds",
            "Unix time of the latest quality gate.",
            at.timestamp(),
        )?;
    }
    let check = |r: &crate::ops::quality::CheckResult| CheckLabel {
        check: r.check.as_str(),
    };
    gauges(
        e,
        "dvault_quality_check_passed",
        "1 if the check passed at the latest gate.",
        q.results.iter().map(|r| (check(r), i64::from(r.passed))),
    )?;
    gauges(
        e,
        "dvault_quality_check_measured",
        "Measured value at the latest gate: worst ratio, orphan count or age in hours.",
        q.results
            .iter()
            .filter_map(|r| Some((check(r), r.measured?))),
    )?;
    gauges(
        e,
        "dvault_quality_check_threshold",
        "Threshold of the check.",
        q.results.iter().map(|r| (check(r), r.threshold)),
    )?;
    Ok(())
}

async fn scrape(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
) -> axum::response::Response {
    crate::process_metrics::exposition(&metrics.registry)
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
    fn what_is_not_known_yet_is_absent_and_a_lost_connection_counts() {
        let m = Metrics::default();
        let text = m.render().expect("encodes");
        for absent in [
            "dvault_loader_lag_events",
            "dvault_next_scheduled_run_timestamp_seconds",
            "dvault_stream_lag_records",
            "dvault_quality_gate_passed",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert!(text.lines().any(|l| l == "dvault_daemon_db_up 0"), "{text}");
        m.set_db_up(true);
        m.set_db_up(false);
        m.set_db_up(false);
        m.set_last_success(
            "schedule",
            DateTime::from_timestamp(2_000, 0).unwrap_or_default(),
        );
        m.set_last_success(
            "schedule",
            DateTime::from_timestamp(1_000, 0).unwrap_or_default(),
        );
        m.set_next_run(DateTime::from_timestamp(3_000, 0));
        let text = m.render().expect("encodes");
        for line in [
            "dvault_daemon_db_connection_losses_total 1",
            "dvault_last_success_timestamp_seconds{trigger=\"schedule\"} 2000",
            "dvault_next_scheduled_run_timestamp_seconds 3000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

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
        let text = m.render().expect("encodes");
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
