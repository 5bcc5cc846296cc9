//! `dvault load`, `rebuild`, `daemon`, `runs` and `check`: projecting the log and its runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tracing::Instrument;

use super::CliResult;
use super::model::active_model;
use crate::config::Config;
use crate::daemon::{self, DaemonExit, DaemonOptions};
use crate::db::{self, Doing, Target};
use crate::events;
use crate::load::{self, Loader};
use crate::ops::manual::ManualRun;
use crate::ops::quality::{self, QualityConfig};
use crate::ops::runs::{self, Trigger};

/// `--mappings`: the model a command loads with (load, rebuild, daemon, check).
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// User mapping files (added to the built-in ones; a set naming another schema
    /// stands alone). They must be the model registered in the database (`dvault
    /// model apply DIR`); a database with no model registered yet registers them.
    #[arg(long, env = "DVAULT_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Events per transaction.
    #[arg(long, env = "DVAULT_LOAD_BATCH_SIZE", default_value_t = 50_000)]
    pub batch_size: i64,
    /// Exit at once if another loader is running, instead of waiting for it.
    #[arg(long, env = "DVAULT_NO_WAIT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_wait: bool,
    /// Into empty vault tables with at least this many events waiting, drop their
    /// indexes and build them after the load, in one transaction (see docs/operations.md).
    #[arg(long, env = "DVAULT_BULK_MIN_EVENTS", value_name = "EVENTS", default_value_t = load::bulk::MIN_EVENTS)]
    pub bulk_min_events: i64,
    /// Never take the bulk path: load batch by batch, each batch its own transaction.
    #[arg(long, env = "DVAULT_NO_BULK", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_bulk: bool,
    /// Hub and link keys a first load or a rebuild remembers, 16 bytes each; past it,
    /// tables none of whose keys repeated are forgotten and checked by their unique
    /// indexes at the end (docs/operations.md, "Key memory").
    #[arg(long, env = "DVAULT_LOAD_KEY_MEMORY", value_name = "KEYS", default_value_t = load::known::KnownKeys::LIMIT)]
    pub key_memory: usize,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// When to run the nightly cycle (load, refresh, quality gate, ANALYZE): cron
    /// fields `minute hour day-of-month month day-of-week`; `off` for none.
    #[arg(long, env = "DVAULT_SCHEDULE", default_value = daemon::schedule::DEFAULT_SCHEDULE)]
    pub schedule: String,
    /// Time zone of the schedule (IANA name, e.g. Europe/Berlin).
    #[arg(long, env = "DVAULT_TIME_ZONE", default_value = daemon::schedule::DEFAULT_TIME_ZONE)]
    pub time_zone: String,
    /// Also load new events as they arrive (LISTEN on the log's append notifications).
    #[arg(long, env = "DVAULT_FOLLOW", value_parser = clap::builder::FalseyValueParser::new())]
    pub follow: bool,
    /// Follow: load once the log has been quiet this many milliseconds...
    #[arg(
        long,
        env = "DVAULT_DEBOUNCE_MS",
        default_value_t = 200,
        value_name = "MS"
    )]
    pub debounce_ms: u64,
    /// ...or at the latest this many milliseconds after the first event of a burst.
    #[arg(
        long,
        env = "DVAULT_MAX_DELAY_MS",
        default_value_t = 1000,
        value_name = "MS"
    )]
    pub max_delay_ms: u64,
    /// Refresh the lag metrics (and, following, look for missed events) this often.
    #[arg(
        long,
        env = "DVAULT_POLL_SECS",
        default_value_t = 15,
        value_name = "SECONDS"
    )]
    pub poll_secs: u64,
    /// Exit at once if another daemon works on the database, instead of standing by.
    #[arg(long, env = "DVAULT_NO_WAIT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_wait: bool,
    /// Run the nightly cycle once, now, and exit (status 1 if it failed).
    #[arg(long, env = "DVAULT_ONCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub once: bool,
    /// At start, run the nightly cycle if the schedule fired while no daemon ran.
    #[arg(long, env = "DVAULT_CATCH_UP", value_parser = clap::builder::FalseyValueParser::new())]
    pub catch_up: bool,
    /// Events per transaction.
    #[arg(long, env = "DVAULT_LOAD_BATCH_SIZE", default_value_t = 50_000)]
    pub batch_size: i64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Quality gate thresholds (TOML; default: deploy/quality.toml's values).
    #[arg(long, env = "DVAULT_QUALITY_CONFIG", value_name = "FILE")]
    pub quality_config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9187.
    #[arg(long, env = "DVAULT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// After SIGTERM/SIGINT, seconds the batch in hand may take to finish before it
    /// is rolled back.
    #[arg(
        long,
        env = "DVAULT_STOP_GRACE_SECS",
        default_value_t = 5,
        value_name = "SECONDS"
    )]
    pub stop_grace_secs: u64,
    /// Longest wait between attempts to reach a lost database.
    #[arg(
        long,
        env = "DVAULT_RETRY_MAX_SECS",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub retry_max_secs: u64,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many to show.
    #[arg(long, env = "DVAULT_RUNS_LIMIT", default_value_t = 20)]
    pub limit: i64,
    /// Only runs started by this trigger.
    #[arg(long, env = "DVAULT_RUNS_TRIGGER", value_parser = ["schedule", "follow", "manual"])]
    pub trigger: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check every loaded event, not only those loaded since the last gate.
    #[arg(long, env = "DVAULT_CHECK_ALL", value_parser = clap::builder::FalseyValueParser::new())]
    pub all: bool,
    /// Do not record the results nor move the gate's checkpoint.
    #[arg(long, env = "DVAULT_CHECK_DRY_RUN", value_parser = clap::builder::FalseyValueParser::new())]
    pub dry_run: bool,
    /// Quality gate thresholds (TOML; default: deploy/quality.toml's values).
    #[arg(long, env = "DVAULT_QUALITY_CONFIG", value_name = "FILE")]
    pub quality_config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub(super) async fn load(config: &Config, args: LoadArgs, rebuild: bool) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mappings = active_model(&mut client, args.model.mappings.as_deref()).await?;
    let mut loader = Loader::new(&client, mappings)
        .await?
        .with_read_ahead(&target.url);
    loader.batch_size = args.batch_size.max(1);
    loader.bulk_min_events = (!args.no_bulk).then_some(args.bulk_min_events.max(1));
    loader.key_memory = args.key_memory;
    let run = ManualRun::begin(&client, &target.url, rebuild, !args.no_wait).await?;
    let span = run.span();
    let mut summary = if rebuild {
        load::rebuild(&mut client, &loader)
            .instrument(span.clone())
            .await
    } else {
        loader.run(&mut client).instrument(span.clone()).await
    };
    // committed events behind an open transaction of this database: give a short
    // one (an append in flight) a moment, then say what the rest waits for
    let mut waiting = None;
    let deadline = Instant::now() + WAIT_FOR_BLOCKER;
    while let Ok(total) = &mut summary {
        // (an error ends the run like a load's: recorded, and the lock released)
        waiting = match events::horizon::waiting(&client, load::CONSUMER)
            .await
            .doing("looking for events the loader cannot read yet")
        {
            Ok(waiting) => waiting,
            Err(e) => {
                summary = Err(e.into());
                break;
            }
        };
        if waiting.is_none() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        match loader.run(&mut client).instrument(span.clone()).await {
            Ok(more) => add_summary(total, more),
            Err(e) => summary = Err(e),
        }
    }
    let schema = &loader.mappings().schema;
    let summary = run.end(&client, schema, summary, waiting.as_ref()).await?;
    out!("{summary}")?;
    match waiting {
        Some(w) => {
            outln!("{w}")?;
            Ok(ExitCode::from(BLOCKED_EXIT))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// How long `dvault load` waits for the transaction that holds committed events
/// back before it ends `blocked`.
pub(super) const WAIT_FOR_BLOCKER: Duration = Duration::from_secs(2);

/// `dvault load`'s exit status when committed events wait behind an open transaction.
pub(super) const BLOCKED_EXIT: u8 = 3;

pub(super) fn add_summary(total: &mut load::LoadSummary, more: load::LoadSummary) {
    total.batches += more.batches;
    total.events += more.events;
    total.rejected += more.rejected;
    total.elapsed += more.elapsed;
    for (t, n) in more.rows {
        *total.rows.entry(t).or_default() += n;
    }
}

pub(super) async fn run_daemon(config: &Config, args: DaemonArgs) -> CliResult {
    let mappings = {
        let target = Target::resolve(config).await?;
        let mut client = db::connect_migrated(&target).await?;
        active_model(&mut client, args.model.mappings.as_deref()).await?
    };
    let schedule = match args.schedule.trim() {
        "off" | "none" | "" => None,
        expr => Some(daemon::schedule::Schedule::parse(expr, &args.time_zone)?),
    };
    if schedule.is_none() && !args.follow && !args.once {
        return Err("nothing to do: --schedule off needs --follow or --once".into());
    }
    let opts = DaemonOptions {
        schedule,
        follow: args.follow,
        debounce: Duration::from_millis(args.debounce_ms),
        max_delay: Duration::from_millis(args.max_delay_ms),
        poll_interval: Duration::from_secs(args.poll_secs.max(1)),
        no_wait: args.no_wait,
        once: args.once,
        catch_up: args.catch_up,
        batch_size: args.batch_size.max(1),
        quality: QualityConfig::load(args.quality_config.as_deref())?
            .with_model_defaults(&mappings),
        metrics_listen: args.metrics_listen,
        stop_grace: Duration::from_secs(args.stop_grace_secs),
        retry: daemon::retry::RetryPolicy {
            max: Duration::from_secs(args.retry_max_secs.max(1)),
            ..Default::default()
        },
    };
    let shutdown = crate::ops::shutdown::Shutdown::on_signals()?;
    match daemon::run(config, mappings, opts, shutdown).await? {
        DaemonExit::Stopped | DaemonExit::Once { succeeded: true } => Ok(ExitCode::SUCCESS),
        DaemonExit::Once { succeeded: false } => Ok(ExitCode::FAILURE),
    }
}

pub(super) async fn list_runs(config: &Config, args: RunsArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let client = db::connect_migrated(&target).await?;
    let trigger = Trigger::ALL
        .into_iter()
        .find(|t| Some(t.as_str()) == args.trigger.as_deref());
    let list = runs::recent(&client, args.limit.max(1), trigger).await?;
    out!("{}", runs::Listing(&list))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn check(config: &Config, args: CheckArgs) -> CliResult {
    let qc = QualityConfig::load(args.quality_config.as_deref())?;
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mappings = active_model(&mut client, args.model.mappings.as_deref()).await?;
    let qc = qc.with_model_defaults(&mappings);
    let scope = if args.all {
        quality::Scope::All
    } else {
        quality::Scope::SinceLastGate
    };
    let report = quality::run_gate(&mut client, &qc, &mappings, scope, !args.dry_run, None).await?;
    out!("{report}")?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
