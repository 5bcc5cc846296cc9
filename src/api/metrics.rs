//! The API's Prometheus metrics, on the `prometheus-client` crate: request counts and
//! latency histograms per route template, kept between scrapes; and what is read at
//! each scrape (the pools, the loader's lag, with a read replica its pool and replay
//! lag), registered with them into a registry built for that scrape, so that a value
//! the database did not give is absent rather than stale.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::state::AppState;
use super::{health, replica};

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

fn request_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Request counters and latencies, by method and route template.
pub struct Metrics {
    started: Instant,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            requests: Family::default(),
            durations: Family::new_with_constructor(request_histogram),
        }
    }
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The request metrics and the uptime, into a scrape's `registry` (the families
    /// are shared handles: the registry reads the live counts).
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "dvault_http_requests",
            "HTTP requests answered, by route template and status",
            self.requests.clone(),
        );
        registry.register(
            "dvault_http_request_duration_seconds",
            "Time to answer, by route template",
            self.durations.clone(),
        );
        registry.register(
            "dvault_uptime_seconds",
            "Seconds since the API server started",
            ConstGauge::new(self.started.elapsed().as_secs_f64()),
        );
    }
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
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    register_pool(
        &mut registry,
        "db",
        "the API's pool (to the primary)",
        &state.pool,
    );

    let lag = match state.primary().await {
        Ok(client) => health::loader_lag(&client).await.ok(),
        Err(_) => None,
    };
    registry.register(
        "dvault_database_up",
        "Whether the database answered this scrape",
        ConstGauge::new(i64::from(lag.is_some())),
    );
    if let Some(lag) = lag {
        registry.register(
            "dvault_loader_lag_events",
            "Events in the log not yet loaded into the vault",
            ConstGauge::new(lag.pending_events),
        );
        registry.register(
            "dvault_loader_lag_seconds",
            "Age of the oldest event not yet loaded (0 when none)",
            ConstGauge::new(lag.oldest_pending_seconds.unwrap_or(0.0)),
        );
    }
    if let Some(read_pool) = &state.read_pool {
        register_pool(
            &mut registry,
            "replica",
            "the read replica's pool",
            read_pool,
        );
        register_replica(&mut registry, &state).await;
    }
    crate::process_metrics::register(&mut registry);
    crate::process_metrics::exposition(&registry)
}

/// `dvault_{prefix}_pool_*`: a pool's connections by state, its limit, its waiters.
fn register_pool(
    registry: &mut Registry,
    prefix: &str,
    what: &str,
    pool: &deadpool_postgres::Pool,
) {
    let status = pool.status();
    let connections = Family::<PoolLabels, Gauge>::default();
    connections
        .get_or_create(&PoolLabels { state: "in_use" })
        .set(status.size.saturating_sub(status.available) as i64);
    connections
        .get_or_create(&PoolLabels { state: "idle" })
        .set(status.available as i64);
    registry.register(
        format!("dvault_{prefix}_pool_connections"),
        format!("Database connections of {what}, by state"),
        connections,
    );
    registry.register(
        format!("dvault_{prefix}_pool_max_connections"),
        format!("The size limit of {what}"),
        ConstGauge::new(status.max_size),
    );
    registry.register(
        format!("dvault_{prefix}_pool_waiting"),
        format!("Requests waiting for a connection of {what}"),
        ConstGauge::new(status.waiting),
    );
}

/// `dvault_replica_*`: whether the replica answered this scrape, and its replay lag
/// (absent when it did not answer or cannot tell).
async fn register_replica(registry: &mut Registry, state: &AppState) {
    let max = state.config.max_replica_lag.as_secs_f64();
    let replica = match state.reads().await {
        Ok(client) => replica::state(&**client, max).await.ok(),
        Err(_) => None,
    };
    registry.register(
        "dvault_replica_up",
        "Whether the read replica answered this scrape",
        ConstGauge::new(i64::from(replica.is_some())),
    );
    registry.register(
        "dvault_replica_max_replay_lag_seconds",
        "The replay lag past which GET /ready answers 503 (--max-replica-lag)",
        ConstGauge::new(max),
    );
    let Some(replica) = replica else { return };
    registry.register(
        "dvault_replica_in_recovery",
        "Whether the read database is a standby (pg_is_in_recovery())",
        ConstGauge::new(i64::from(replica.in_recovery)),
    );
    if let Some(lag) = replica.replay_lag_seconds {
        registry.register(
            "dvault_replica_replay_lag_seconds",
            "How far the read replica's data is behind the primary",
            ConstGauge::new(lag),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("GET", "/customers/{id}", 200, Duration::from_micros(800));
        m.observe("GET", "/customers/{id}", 200, Duration::from_millis(20));
        m.observe("GET", "/customers/{id}", 404, Duration::from_secs(20));
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).expect("encodes");
        for line in [
            "# TYPE dvault_http_requests_total counter",
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
