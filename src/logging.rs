//! Tracing setup for every command: the `--log` filter, and what no filter lets through.
//!
//! The database driver (tokio-postgres) logs, at `debug`, every statement it executes
//! *with its parameters*: event payloads, e-mails and phones, quarantined raw lines. To
//! keep docs/security.md's promise that payloads are never logged, events of the
//! driver's target ([`DRIVER_TARGETS`]) more verbose than `info` are dropped at every
//! `--log` level (`debug`, `trace`, `[span]=trace` alike), unless the filter names the
//! driver's target itself (`--log info,tokio_postgres=debug`): that is an explicit
//! request for the statements and their values, and a warning at start says so.
//!
//! Colour (ANSI escapes) only when stderr is a terminal and `NO_COLOR` is unset: a
//! file, a pipe or journald gets plain text. With `--log-format json` everything a
//! command says in passing (the server's banner, warnings, the final error) is a JSON
//! line on stderr too, whatever the `--log` level: see [`notice`] and [`warning`].

use std::io::IsTerminal;
use std::sync::OnceLock;

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

/// The target of [`notice`] and [`warning`] events: let through at every `--log` level.
pub const NOTICE_TARGET: &str = "dvault::notice";

/// The format [`init`] installed (text until then).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn json_mode() -> bool {
    matches!(FORMAT.get(), Some(LogFormat::Json))
}

/// Whether log lines to stderr may carry colour: a terminal, and no `NO_COLOR`.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Something a command tells its user in passing (the server's address, whether API
/// keys are configured): a line on stdout in text mode, an `INFO` JSON line on stderr
/// in JSON mode.
pub fn notice(message: &str) -> std::io::Result<()> {
    if json_mode() {
        tracing::info!(target: "dvault::notice", "{message}");
        Ok(())
    } else {
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), "{message}")
    }
}

/// A warning: `warning: ...` on stderr in text mode, a `WARN` JSON line in JSON mode.
pub fn warning(message: &str) {
    if json_mode() {
        tracing::warn!(target: "dvault::notice", "{message}");
    } else {
        eprintln!("warning: {message}");
    }
}

/// The error that ends a command, with its causes: `error: ...` and `  caused by: ...`
/// lines on stderr in text mode, one `ERROR` JSON line (causes in `causes`) in JSON mode.
pub fn error(message: &str, causes: &[String]) {
    if json_mode() {
        if causes.is_empty() {
            tracing::error!(target: "dvault::notice", "{message}");
        } else {
            let causes = causes.join(": ");
            tracing::error!(target: "dvault::notice", causes, "{message}");
        }
    } else {
        eprintln!("error: {message}");
        for cause in causes {
            eprintln!("  caused by: {cause}");
        }
    }
}

/// Install the global subscriber: `spec` is the `--log` filter (EnvFilter syntax), the
/// lines go to stderr. Called once, by `main`.
pub fn init(spec: &str, format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(FALLBACK));
    let driver_named = names_driver(spec);
    let cap = filter_fn(move |m| driver_named || !is_driver_detail(m));
    let notices = filter_fn(|m| m.target() == NOTICE_TARGET);
    let filter = filter.or(notices).and(cap);
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour());
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text => registry.with(layer.with_filter(filter)).init(),
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).init(),
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
