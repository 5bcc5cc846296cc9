//! Tracing setup for every command: the `--log` filter, and what no filter lets through.
//!
//! The database driver (tokio-postgres) logs, at `debug`, every statement it executes
//! *with its parameters*: event payloads, e-mails and phones, quarantined raw lines. To
//! keep docs/security.md's promise that payloads are never logged, events of the
//! driver's target ([`DRIVER_TARGETS`]) more verbose than `info` are dropped at every
//! `--log` level (`debug`, `trace`, `[span]=trace` alike), unless the filter names the
//! driver's target itself (`--log info,tokio_postgres=debug`): that is an explicit
//! request for the statements and their values, and a warning at start says so.

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::cli::LogFormat;

/// Targets whose `debug` and `trace` events carry statement parameters.
pub const DRIVER_TARGETS: &[&str] = &["tokio_postgres"];

/// The filter used when `--log` cannot be parsed.
const FALLBACK: &str = "warn";

/// Install the global subscriber: `spec` is the `--log` filter (EnvFilter syntax), the
/// lines go to stderr. Called once, by `main`.
pub fn init(spec: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(FALLBACK));
    let driver_named = names_driver(spec);
    let cap = filter_fn(move |m| driver_named || !is_driver_detail(m));
    let layer = fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text => registry.with(layer.with_filter(filter.and(cap))).init(),
        LogFormat::Json => registry
            .with(layer.json().with_filter(filter.and(cap)))
            .init(),
    }
    if driver_named {
        tracing::warn!(
            "--log names the database driver: at debug it logs every statement with its \
             parameters (event payloads, e-mails, phones, quarantined lines)"
        );
    }
}

/// An event of the driver more verbose than `info`: a statement and its parameters.
fn is_driver_detail(meta: &Metadata<'_>) -> bool {
    *meta.level() > Level::INFO && DRIVER_TARGETS.iter().any(|t| is_under(meta.target(), t))
}

fn is_under(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Whether a directive of `spec` names one of [`DRIVER_TARGETS`] (or a module in it).
/// A bare level (`debug`) or a span directive (`[request]=trace`) names no target.
pub fn names_driver(spec: &str) -> bool {
    spec.split(',').any(|directive| {
        let target = directive
            .split(['[', '='])
            .next()
            .unwrap_or_default()
            .trim();
        DRIVER_TARGETS.iter().any(|t| is_under(target, t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_directive_naming_the_driver_lets_its_statements_through() {
        for spec in [
            "trace",
            "debug",
            "dvault=trace,debug",
            "[request]=trace",
            "tokio=trace",
            "tokio_postgresx=debug",
            "",
        ] {
            assert!(!names_driver(spec), "{spec:?}");
        }
        for spec in [
            "tokio_postgres=debug",
            "info,tokio_postgres::query=trace",
            "warn, tokio_postgres",
            "tokio_postgres[conn]=debug",
        ] {
            assert!(names_driver(spec), "{spec:?}");
        }
    }
}
