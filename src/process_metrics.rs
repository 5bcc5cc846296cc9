//! What every dvault exporter (the API's `/metrics`, the daemon's `--metrics-listen`)
//! shares, on the `prometheus-client` crate: `dvault_build_info` (the crate's info
//! metric), the standard `process_*` family of Prometheus' client libraries (a
//! collector reading `/proc/self` at each scrape, since the crate has none; elsewhere
//! than Linux only what can be known is written), and the one way both encode a
//! registry into the Prometheus text format 0.0.4 that `promtool` checks. Names and
//! units: docs/operations.md.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Register `dvault_build_info` and the `process_*` collector into `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        // the crate's info metric adds the `_info` suffix
        "dvault_build",
        "Always 1; the labels say which dvault runs",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "schema_version",
                crate::db::latest_known_version().to_string(),
            ),
        ]),
    );
    registry.register_collector(Box::new(ProcessCollector));
}

/// `registry` in the Prometheus text format, as an HTTP answer.
pub fn exposition(registry: &Registry) -> Response {
    let mut text = String::with_capacity(8192);
    if let Err(e) = prometheus_text::encode(&mut text, registry) {
        // writing into a String fails only if an encoder refuses a value
        tracing::error!(error = %e, "cannot encode the metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

/// `process_*`, read from `/proc/self` when scraped.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = Process::read() else {
            return Ok(());
        };
        // counters are named without `_total`: the encoder appends it
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let e = &mut encoder;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        )?;
        if let Some(start) = p.start_time_seconds {
            gauge(
                e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
        }
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        )?;
        if let Some(max) = p.max_fds {
            gauge(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        gauge(e, "process_threads", "Number of OS threads.", p.threads)
    }
}

/// A collector's unlabelled gauge. (A collector's help is written as given, where a
/// registered metric's gets a full stop appended.)
pub(crate) fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A collector's gauge family, a sample per label set.
pub(crate) fn gauges<S: EncodeLabelSet, N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (S, N)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: Option<f64>,
    open_fds: u64,
    max_fds: Option<u64>,
    threads: u64,
}

/// Clock ticks per second of `/proc/*/stat` (`sysconf(_SC_CLK_TCK)`: 100 on every
/// Linux architecture dvault builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Bytes per page for `rss` (4 KiB on x86_64 and most aarch64 kernels).
const PAGE_BYTES: u64 = 4096;

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s));
        let mut p = parse_stat(&stat, boot_time)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s));
        Some(p)
    }
}

/// The fields of `/proc/self/stat` (man 5 proc), after the command name in parentheses.
fn parse_stat(stat: &str, boot_time: Option<u64>) -> Option<Process> {
    let after = &stat[stat.rfind(')')? + 1..];
    // fields from the 3rd (state) on: index 0 here is field 3
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    let ticks = (field(14)? + field(15)?) as f64;
    Some(Process {
        cpu_seconds: ticks / TICKS_PER_SECOND,
        threads: field(20)?,
        start_time_seconds: boot_time
            .map(|b| b as f64 + field(22).unwrap_or(0) as f64 / TICKS_PER_SECOND),
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * PAGE_BYTES,
        open_fds: 0,
        max_fds: None,
    })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (dvault (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let p = parse_stat(stat, Some(1_700_000_000)).expect("parses");
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.threads, 7);
        let start = p.start_time_seconds.expect("start");
        assert!((start - 1_700_000_123.45).abs() < 1e-3, "{start}");
        assert_eq!(p.virtual_bytes, 104_857_600);
        assert_eq!(p.resident_bytes, 2560 * 4096);
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit  Soft Limit  Hard Limit  Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_is_described() {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).expect("encodes");
        assert!(out.contains("dvault_build_info{version=\""), "{out}");
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_start_time_seconds ",
                "process_open_fds ",
            ] {
                assert!(out.lines().any(|l| l.starts_with(name)), "{name}: {out}");
            }
        }
    }
}
