//! Prometheus metrics in the text exposition format (version 0.0.4), written by hand:
//! request counts and latency histograms per route template, pool usage, loader lag,
//! and with a read replica its pool and replay lag.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use super::{health, replica};

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// Request counters, by (method, route template).
pub struct Metrics {
    started: Instant,
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            routes: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let stats = routes
            .entry((method.to_string(), route.to_string()))
            .or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.buckets[bucket] += 1;
        stats.sum += secs;
        stats.count += 1;
    }

    /// The request metrics in exposition format.
    fn write_requests(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP dvault_http_requests_total HTTP requests answered, by route template and status.\n");
        out.push_str("# TYPE dvault_http_requests_total counter\n");
        for ((method, route), stats) in routes.iter() {
            for (status, n) in &stats.by_status {
                let _ = writeln!(
                    out,
                    "dvault_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP dvault_http_request_duration_seconds Time to answer, by route template.\n",
        );
        out.push_str("# TYPE dvault_http_request_duration_seconds histogram\n");
        for ((method, route), stats) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += stats.buckets[i];
                let _ = writeln!(
                    out,
                    "dvault_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "dvault_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "dvault_http_request_duration_seconds_sum{{{labels}}} {}",
                stats.sum
            );
            let _ = writeln!(
                out,
                "dvault_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: count and time every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// GET /metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(8192);
    state.metrics.write_requests(&mut out);

    write_pool(
        &mut out,
        "db",
        "the API's pool (to the primary)",
        &state.pool,
    );

    let lag = match state.primary().await {
        Ok(client) => health::loader_lag(&client).await.ok(),
        Err(_) => None,
    };
    out.push_str("# HELP dvault_database_up Whether the database answered this scrape.\n");
    out.push_str("# TYPE dvault_database_up gauge\n");
    let _ = writeln!(out, "dvault_database_up {}", u8::from(lag.is_some()));
    if let Some(lag) = lag {
        out.push_str(
            "# HELP dvault_loader_lag_events Events in the log not yet loaded into the vault.\n",
        );
        out.push_str("# TYPE dvault_loader_lag_events gauge\n");
        let _ = writeln!(out, "dvault_loader_lag_events {}", lag.pending_events);
        out.push_str("# HELP dvault_loader_lag_seconds Age of the oldest event not yet loaded (0 when none).\n");
        out.push_str("# TYPE dvault_loader_lag_seconds gauge\n");
        let _ = writeln!(
            out,
            "dvault_loader_lag_seconds {}",
            lag.oldest_pending_seconds.unwrap_or(0.0)
        );
    }
    if let Some(read_pool) = &state.read_pool {
        write_pool(&mut out, "replica", "the read replica's pool", read_pool);
        write_replica(&mut out, &state).await;
    }
    out.push_str("# HELP dvault_uptime_seconds Seconds since the API server started.\n");
    out.push_str("# TYPE dvault_uptime_seconds gauge\n");
    let _ = writeln!(
        out,
        "dvault_uptime_seconds {}",
        state.metrics.started.elapsed().as_secs_f64()
    );
    crate::process_metrics::write(&mut out);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `dvault_{prefix}_pool_*`: a pool's connections by state, its limit, its waiters.
fn write_pool(out: &mut String, prefix: &str, what: &str, pool: &deadpool_postgres::Pool) {
    let status = pool.status();
    let _ = writeln!(
        out,
        "# HELP dvault_{prefix}_pool_connections Database connections of {what}, by state."
    );
    let _ = writeln!(out, "# TYPE dvault_{prefix}_pool_connections gauge");
    let _ = writeln!(
        out,
        "dvault_{prefix}_pool_connections{{state=\"in_use\"}} {}",
        status.size.saturating_sub(status.available)
    );
    let _ = writeln!(
        out,
        "dvault_{prefix}_pool_connections{{state=\"idle\"}} {}",
        status.available
    );
    let _ = writeln!(
        out,
        "# HELP dvault_{prefix}_pool_max_connections The size limit of {what}."
    );
    let _ = writeln!(out, "# TYPE dvault_{prefix}_pool_max_connections gauge");
    let _ = writeln!(
        out,
        "dvault_{prefix}_pool_max_connections {}",
        status.max_size
    );
    let _ = writeln!(
        out,
        "# HELP dvault_{prefix}_pool_waiting Requests waiting for a connection of {what}."
    );
    let _ = writeln!(out, "# TYPE dvault_{prefix}_pool_waiting gauge");
    let _ = writeln!(out, "dvault_{prefix}_pool_waiting {}", status.waiting);
}

/// `dvault_replica_*`: whether the replica answered this scrape, and its replay lag
/// (absent when it did not answer or cannot tell).
async fn write_replica(out: &mut String, state: &AppState) {
    let max = state.config.max_replica_lag.as_secs_f64();
    let replica = match state.reads().await {
        Ok(client) => replica::state(&**client, max).await.ok(),
        Err(_) => None,
    };
    out.push_str("# HELP dvault_replica_up Whether the read replica answered this scrape.\n");
    out.push_str("# TYPE dvault_replica_up gauge\n");
    let _ = writeln!(out, "dvault_replica_up {}", u8::from(replica.is_some()));
    out.push_str("# HELP dvault_replica_max_replay_lag_seconds The replay lag past which GET /ready answers 503 (--max-replica-lag).\n");
    out.push_str("# TYPE dvault_replica_max_replay_lag_seconds gauge\n");
    let _ = writeln!(out, "dvault_replica_max_replay_lag_seconds {max}");
    let Some(replica) = replica else { return };
    out.push_str("# HELP dvault_replica_in_recovery Whether the read database is a standby (pg_is_in_recovery()).\n");
    out.push_str("# TYPE dvault_replica_in_recovery gauge\n");
    let _ = writeln!(
        out,
        "dvault_replica_in_recovery {}",
        u8::from(replica.in_recovery)
    );
    if let Some(lag) = replica.replay_lag_seconds {
        out.push_str("# HELP dvault_replica_replay_lag_seconds How far the read replica's data is behind the primary.\n");
        out.push_str("# TYPE dvault_replica_replay_lag_seconds gauge\n");
        let _ = writeln!(out, "dvault_replica_replay_lag_seconds {lag}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("GET", "/customers/{id}", 200, Duration::from_micros(800));
        m.observe("GET", "/customers/{id}", 200, Duration::from_millis(20));
        m.observe("GET", "/customers/{id}", 404, Duration::from_secs(20));
        let mut out = String::new();
        m.write_requests(&mut out);
        for line in [
            "dvault_http_requests_total{method=\"GET\",route=\"/customers/{id}\",status=\"200\"} 2",
            "dvault_http_requests_total{method=\"GET\",route=\"/customers/{id}\",status=\"404\"} 1",
            "dvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/customers/{id}\",le=\"0.001\"} 1",
            "dvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/customers/{id}\",le=\"0.025\"} 2",
            "dvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/customers/{id}\",le=\"10\"} 2",
            "dvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/customers/{id}\",le=\"+Inf\"} 3",
            "dvault_http_request_duration_seconds_count{method=\"GET\",route=\"/customers/{id}\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }
}
