//! The command line: argument types and one function per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tracing::Instrument;

use crate::api::{self, ApiConfig, ApiKey, Cors};
use crate::config::Config;
use crate::daemon::{self, DaemonExit, DaemonOptions};
use crate::db::{self, Target};
use crate::events;
use crate::events::csv_rows::parse_time;
use crate::events::ingest::{self, Format, IngestOptions};
use crate::events::limits::TimeRange;
use crate::generate;
use crate::load::{self, Loader};
use crate::logging::{notice, warning};
use crate::mapping::{Mappings, registry};
use crate::ops::manual::ManualRun;
use crate::ops::quality::{self, QualityConfig};
use crate::ops::runs::{self, Trigger};
use crate::status;

#[derive(Debug, Parser)]
#[command(
    name = "dvault",
    version,
    about = "Event-sourced Data Vault 2.0 warehouse on PostgreSQL",
    long_about = "Event-sourced Data Vault 2.0 warehouse on PostgreSQL.\n\n\
        Without DATABASE_URL, dvault starts (or reuses) a private PostgreSQL server \
        under .dvault/ from the system's server binaries."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL connection URL; unset: a private server under --home.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// A file holding the database password (a Docker or systemd secret), put into
    /// --database-url's connection; keeps the password out of the environment.
    #[arg(
        long,
        env = "DVAULT_DATABASE_PASSWORD_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub database_password_file: Option<PathBuf>,
    /// Directory for dvault's local state (the private server).
    #[arg(long, env = "DVAULT_HOME", global = true, default_value = ".dvault")]
    pub home: PathBuf,
    /// Log filter, e.g. `info`, `dvault=debug`.
    #[arg(long, env = "DVAULT_LOG", global = true, default_value = "warn")]
    pub log: String,
    /// Log format: `text` (colour only on a terminal) or `json` (every line a JSON
    /// object on stderr, banner and warnings included).
    #[arg(
        long,
        env = "DVAULT_LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole thing in one command: generate seed-sized data, ingest, load, tour.
    Demo(DemoArgs),
    /// Create or update the schema (a no-op when it is current) and the views; with
    /// --mappings DIR, also apply the user migrations beside the mappings and register
    /// the mappings as the warehouse's model.
    Migrate(MigrateArgs),
    /// The model registered in the warehouse: the user mapping files every command uses.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Append CSV or NDJSON (CloudEvents) files to the event log.
    Ingest(IngestArgs),
    /// Consume Kafka topics into the event log, exactly once (the offsets are stored
    /// with the events), until stopped.
    Stream(StreamArgs),
    /// Project new events of the log into the vault (hubs, links, satellites).
    Load(LoadArgs),
    /// Empty the vault and replay the whole log.
    Rebuild(LoadArgs),
    /// Write deterministic synthetic Customer 360 data (NDJSON events and flat CSVs).
    Gen(GenArgs),
    /// Run the loader as a service: the nightly cycle on a schedule, and with --follow
    /// new events within a second or two.
    Daemon(DaemonArgs),
    /// List recent load runs (nightly, follow and manual).
    Runs(RunsArgs),
    /// Run the quality gates on the events loaded since the last gate, and the vault.
    Check(CheckArgs),
    /// Show the database, schema version, events, rejections, the loader's position,
    /// the last run and the quality state.
    Status,
    /// Serve the Customer 360 REST API (OpenAPI at /openapi.json, Swagger UI at /docs).
    Serve(ServeArgs),
    /// List quarantined input (most recent first).
    Rejected(RejectedArgs),
    /// Manage the private PostgreSQL server.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// A directory of user mapping files (*.toml, added to the built-in ones) and user
    /// migrations (V<n>__<what>.sql): apply the migrations, register the mappings.
    #[arg(long = "mappings", env = "DVAULT_MIGRATE_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Apply the user migrations of DIR and register its mapping files as the model.
    Apply {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Show the registered model: files, user migrations, held-back events.
    Show,
    /// Stop holding back events of a type no mapping knows: pass them over.
    Skip {
        #[arg(value_name = "EVENT_TYPE")]
        event_type: String,
    },
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to ingest (.csv, .ndjson, .jsonl).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Format, when the file name does not tell.
    #[arg(long, env = "DVAULT_INGEST_FORMAT", value_enum)]
    pub format: Option<Format>,
    /// CSV: the event type of every row, e.g. customer_registered; `{name}` stands
    /// for the file's name without extension (`erp_{name}`: one call, many tables).
    #[arg(long = "type", env = "DVAULT_INGEST_TYPE", value_name = "EVENT_TYPE")]
    pub event_type: Option<String>,
    /// CSV: the record source of every row, e.g. crm.
    #[arg(long, env = "DVAULT_INGEST_SOURCE", value_name = "NAME")]
    pub source: Option<String>,
    /// CSV: column holding the business time (ISO 8601); default: ingestion time.
    #[arg(long, env = "DVAULT_INGEST_TIME_FIELD", value_name = "COLUMN")]
    pub time_field: Option<String>,
    /// The business time of rows without a --time-field and of CloudEvents without
    /// `time` (ISO 8601), e.g. the day from which a catalogue file holds; default:
    /// ingestion time.
    #[arg(long, env = "DVAULT_INGEST_TIME", value_name = "WHEN")]
    pub time: Option<String>,
    /// Events per transaction.
    #[arg(long, env = "DVAULT_INGEST_BATCH_SIZE", default_value_t = 20_000)]
    pub batch_size: usize,
    /// Connections writing a file's batches at once (the log keeps file order).
    #[arg(long, env = "DVAULT_INGEST_STREAMS", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub streams: u8,
    /// A file of at least this many rows, and at least as many as the event log
    /// holds, goes in on the bulk path: one transaction, the log's indexes built
    /// again at the end (writers to the log wait meanwhile).
    #[arg(long, env = "DVAULT_INGEST_BULK_MIN_ROWS", value_name = "ROWS", default_value_t = events::bulk::MIN_ROWS)]
    pub bulk_min_rows: u64,
    /// Never take the bulk path: batch by batch, each batch its own transaction.
    #[arg(long = "no-bulk", env = "DVAULT_INGEST_NO_BULK", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_bulk: bool,
    #[command(flatten)]
    pub time_range: TimeRangeArgs,
    /// Store nothing: tell what the model registered in the database would do with
    /// each file (rows refused, quarantined, held back, columns left NULL, fields no
    /// mapping reads). Exit status 1 when a row would not load.
    #[arg(long, env = "DVAULT_INGEST_CHECK", value_parser = clap::builder::FalseyValueParser::new())]
    pub check: bool,
}

/// The range of business times accepted at ingest (files and POST /events).
#[derive(Debug, Args)]
pub struct TimeRangeArgs {
    /// Earliest business time accepted (included), ISO 8601 date or timestamp.
    #[arg(long, env = "DVAULT_BUSINESS_TIME_FROM", default_value = "1900-01-01")]
    pub business_time_from: String,
    /// Business times from this one on are refused (excluded), ISO 8601.
    #[arg(long, env = "DVAULT_BUSINESS_TIME_UNTIL", default_value = "2200-01-01")]
    pub business_time_until: String,
}

impl TimeRangeArgs {
    pub fn range(&self) -> Result<TimeRange, String> {
        let at = |flag: &str, text: &str| {
            parse_time(text)
                .ok_or_else(|| format!("{flag}: {text:?} is not an ISO 8601 date or timestamp"))
        };
        TimeRange::new(
            at("--business-time-from", &self.business_time_from)?,
            at("--business-time-until", &self.business_time_until)?,
        )
        .map_err(|e| format!("--business-time-from / --business-time-until: {e}"))
    }
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Kafka bootstrap brokers, HOST:PORT; repeat, or separate with commas.
    #[arg(
        long = "brokers",
        env = "DVAULT_KAFKA_BROKERS",
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT"
    )]
    pub brokers: Vec<String>,
    /// Topics to consume, every partition; repeat, or separate with commas.
    #[arg(
        long = "topic",
        env = "DVAULT_STREAM_TOPICS",
        value_delimiter = ',',
        required = true,
        value_name = "TOPIC"
    )]
    pub topics: Vec<String>,
    /// The consumer group: the name the consumed offsets are stored under in the
    /// database (ops.stream_offsets). The dvault stream processes of one group share
    /// its partitions (those given the same topics; see docs/events.md).
    #[arg(long, env = "DVAULT_STREAM_GROUP", default_value = "dvault")]
    pub group: String,
    /// Records without CloudEvents headers are plain JSON objects, each an event of
    /// this type (else they must be structured CloudEvents).
    #[arg(
        long = "type",
        env = "DVAULT_STREAM_TYPE",
        value_name = "EVENT_TYPE",
        requires = "source"
    )]
    pub event_type: Option<String>,
    /// Plain JSON: the record source of every event, e.g. web.
    #[arg(
        long,
        env = "DVAULT_STREAM_SOURCE",
        value_name = "NAME",
        requires = "event_type"
    )]
    pub source: Option<String>,
    /// Plain JSON: top-level field holding the business time (ISO 8601); default:
    /// the record's timestamp.
    #[arg(
        long,
        env = "DVAULT_STREAM_TIME_FIELD",
        value_name = "FIELD",
        requires = "event_type"
    )]
    pub time_field: Option<String>,
    /// Plain JSON: top-level field holding the event id; default: TOPIC/PARTITION/OFFSET.
    #[arg(
        long,
        env = "DVAULT_STREAM_ID_FIELD",
        value_name = "FIELD",
        requires = "event_type"
    )]
    pub id_field: Option<String>,
    /// Where a partition without a stored offset starts.
    #[arg(
        long,
        env = "DVAULT_STREAM_START_AT",
        value_enum,
        default_value = "earliest"
    )]
    pub start_at: crate::stream::kafka::StartAt,
    /// Records per transaction, about: fetches in hand are added while the batch
    /// holds fewer (a fetch is never split; --fetch-bytes bounds one).
    #[arg(long, env = "DVAULT_STREAM_BATCH_SIZE", default_value_t = 10_000)]
    pub batch_size: usize,
    /// Records with a larger value are quarantined.
    #[arg(long, env = "DVAULT_STREAM_MAX_MESSAGE_BYTES", value_name = "BYTES", default_value_t = crate::stream::message::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Most bytes one fetch of a partition brings (at least one record batch comes,
    /// whatever its size).
    #[arg(long, env = "DVAULT_STREAM_FETCH_BYTES", value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub fetch_bytes: i32,
    /// How long the broker may hold a fetch while a partition has nothing new.
    #[arg(
        long,
        env = "DVAULT_STREAM_MAX_WAIT_MS",
        value_name = "MS",
        default_value_t = 500
    )]
    pub max_wait_ms: u64,
    /// Longest pause between attempts to reach a lost broker.
    #[arg(
        long,
        env = "DVAULT_STREAM_RETRY_MAX_SECS",
        value_name = "SECONDS",
        default_value_t = 5
    )]
    pub retry_max_secs: u64,
    /// Look again this often at the topics' partitions (one added is consumed from
    /// then on) and at the group's other processes (sharing the partitions with them).
    #[arg(
        long,
        env = "DVAULT_STREAM_REFRESH_SECS",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub refresh_secs: u64,
    /// TLS to the brokers, trusting the CA certificates in this PEM file (for brokers
    /// with certificates of a public CA: /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "DVAULT_KAFKA_TLS_CA", value_name = "PEM_FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// SASL PLAIN user name for the brokers (with --sasl-password).
    #[arg(
        long,
        env = "DVAULT_KAFKA_SASL_USER",
        value_name = "USER",
        requires = "sasl_password"
    )]
    pub sasl_user: Option<String>,
    /// SASL PLAIN password (better from the environment or an env file than on the
    /// command line, where ps shows it).
    #[arg(
        long,
        env = "DVAULT_KAFKA_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "sasl_user"
    )]
    pub sasl_password: Option<String>,
    /// Stop once every partition is consumed up to its end, instead of waiting for more.
    #[arg(long, env = "DVAULT_STREAM_EXIT_AT_END", value_parser = clap::builder::FalseyValueParser::new())]
    pub exit_at_end: bool,
    #[command(flatten)]
    pub time_range: TimeRangeArgs,
}

impl StreamArgs {
    /// The options of `dvault stream`, checked.
    pub fn options(&self) -> Result<crate::stream::StreamOptions, String> {
        use crate::stream::{kafka::FetchOptions, message};
        // an empty variable (a compose file's `${DVAULT_STREAM_TYPE:-}`) is not given
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let plain = match (given(&self.event_type), given(&self.source)) {
            (Some(event_type), Some(source)) => {
                let plain = message::Plain {
                    event_type,
                    source,
                    time_field: given(&self.time_field),
                    id_field: given(&self.id_field),
                };
                plain.check()?;
                Some(plain)
            }
            (None, None) => None,
            _ => return Err("plain JSON values need both --type and --source".into()),
        };
        if self.group.is_empty() {
            return Err("--group must not be empty".into());
        }
        if self.fetch_bytes < 1024 {
            return Err("--fetch-bytes must be at least 1024".into());
        }
        Ok(crate::stream::StreamOptions {
            brokers: self.brokers.clone(),
            topics: self.topics.clone(),
            group: self.group.clone(),
            spec: message::Spec {
                plain,
                max_bytes: self.max_message_bytes,
                range: self.time_range.range()?,
            },
            start_at: self.start_at,
            batch_size: self.batch_size.max(1),
            fetch: FetchOptions {
                max_bytes: self.fetch_bytes,
                max_wait: Duration::from_millis(self.max_wait_ms.max(1)),
            },
            max_backoff: Duration::from_secs(self.retry_max_secs.max(1)),
            refresh: Duration::from_secs(self.refresh_secs.max(1)),
            // an empty variable (a compose file's `${DVAULT_KAFKA_TLS_CA:-}`): no TLS
            tls_ca: self.tls_ca.clone().filter(|p| !p.as_os_str().is_empty()),
            sasl: match (given(&self.sasl_user), self.sasl_password.clone()) {
                (Some(user), Some(password)) => {
                    Some(crate::stream::kafka::SaslPlain { user, password })
                }
                _ => None,
            },
            exit_at_end: self.exit_at_end,
        })
    }
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
    /// User mapping files (added to the built-in ones; a set naming another schema
    /// stands alone). They must be the model registered in the database (`dvault
    /// model apply DIR`); a database with no model registered yet registers them.
    #[arg(long, env = "DVAULT_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
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
    /// User mapping files (added to the built-in ones; a set naming another schema
    /// stands alone). They must be the model registered in the database (`dvault
    /// model apply DIR`); a database with no model registered yet registers them.
    #[arg(long, env = "DVAULT_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
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
    /// User mapping files (added to the built-in ones; a set naming another schema
    /// stands alone). They must be the model registered in the database (`dvault
    /// model apply DIR`); a database with no model registered yet registers them.
    #[arg(long, env = "DVAULT_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after loading instead of serving the API.
    #[arg(long, env = "DVAULT_DEMO_NO_SERVE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_serve: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Directory to write into (created if missing).
    #[arg(long, env = "DVAULT_GEN_OUT", default_value = "data")]
    pub out: PathBuf,
    /// Same seed and options give byte-identical files.
    #[arg(long, env = "DVAULT_GEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Customers who sign up over the period.
    #[arg(long, env = "DVAULT_GEN_CUSTOMERS", default_value_t = 10_000)]
    pub customers: usize,
    /// Products listed over the period.
    #[arg(long, env = "DVAULT_GEN_PRODUCTS", default_value_t = 5_000)]
    pub products: usize,
    /// Orders (about 2.5 lines each).
    #[arg(long, env = "DVAULT_GEN_ORDERS", default_value_t = 40_000)]
    pub orders: usize,
    /// Days of history, ending at --end.
    #[arg(long, env = "DVAULT_GEN_DAYS", default_value_t = 365)]
    pub days: u32,
    /// Last business day (YYYY-MM-DD); default: the last day of the previous month
    /// (UTC), so that no event lies in the future and every month is whole.
    #[arg(long, env = "DVAULT_GEN_END")]
    pub end: Option<chrono::NaiveDate>,
    /// Share of extra broken lines to inject (e.g. 0.01), to exercise quarantine.
    #[arg(long, env = "DVAULT_GEN_DIRTY", default_value_t = 0.0)]
    pub dirty: f64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DVAULT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// An API key: SCOPE:SHA256HEX, scope `read` or `write`, and the SHA-256 of the
    /// bearer token (`printf %s "$TOKEN" | sha256sum`). Repeat, or separate with commas.
    /// None: reads are open, writes refused.
    #[arg(
        long = "api-key",
        env = "DVAULT_API_KEYS",
        value_delimiter = ',',
        value_name = "SCOPE:SHA256",
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Seconds before a request is abandoned (answered 503, its query cancelled).
    #[arg(long, env = "DVAULT_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "DVAULT_MAX_BODY", default_value_t = 4 * 1024 * 1024)]
    pub max_body: usize,
    /// Origins allowed to call the API from a browser (CORS), `*` for any. Repeat, or
    /// separate with commas. None: no CORS headers.
    #[arg(
        long = "cors-origin",
        env = "DVAULT_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Database connections (per pool: the primary's, and the replica's if any).
    #[arg(long, env = "DVAULT_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,
    #[command(flatten)]
    pub time_range: TimeRangeArgs,
    /// A read replica of the database (a streaming standby): every GET goes there,
    /// POST /events to the primary (--database-url). See docs/operations.md.
    #[arg(
        long,
        env = "DVAULT_READ_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub read_database_url: Option<String>,
    /// With --read-database-url: GET /ready answers 503 while the replica's replay lags
    /// more than this many seconds behind the primary.
    #[arg(
        long,
        env = "DVAULT_MAX_REPLICA_LAG",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub max_replica_lag: u64,
}

impl ServeArgs {
    pub fn api_config(&self) -> Result<ApiConfig, String> {
        let keys = self
            .api_keys
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                k.parse::<ApiKey>()
                    .map_err(|e| format!("--api-key / DVAULT_API_KEYS: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.request_timeout == 0 {
            return Err("--request-timeout must be at least 1 second".into());
        }
        Ok(ApiConfig {
            listen: self.listen,
            keys,
            request_timeout: std::time::Duration::from_secs(self.request_timeout),
            body_limit: self.max_body,
            cors: Cors::from_origins(&self.cors_origins),
            pool_size: self.pool_size.max(1),
            time_range: self.time_range.range()?,
            max_replica_lag: Duration::from_secs(self.max_replica_lag),
        })
    }

    /// The API's state on `database_url`, reading from `--read-database-url` if given.
    fn state(
        &self,
        api_config: ApiConfig,
        database_url: &str,
    ) -> Result<api::AppState, crate::db::DbError> {
        let state = api::AppState::new(api_config, database_url)?;
        match self.read_database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => state.with_read_replica(url),
            None => Ok(state),
        }
    }
}

#[derive(Debug, Args)]
pub struct RejectedArgs {
    /// How many to show.
    #[arg(long, env = "DVAULT_REJECTED_LIMIT", default_value_t = 20)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Start the private server (if not running) and print its URL.
    Start {
        /// The database the URL names: `dvault_demo` for the demo's.
        #[arg(long, env = "DVAULT_LOCAL_DATABASE", default_value = db::local::DATABASE)]
        database: String,
    },
    /// Stop the private server.
    Stop,
}

impl GlobalArgs {
    pub fn config(&self) -> Result<Config, String> {
        let mut database_url = self.database_url.clone().filter(|u| !u.is_empty());
        if let Some(file) = &self.database_password_file {
            let url = database_url.as_deref().ok_or(
                "--database-password-file / DVAULT_DATABASE_PASSWORD_FILE needs DATABASE_URL",
            )?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--database-password-file {}: {e}", file.display()))?;
            let password = text.strip_suffix('\n').unwrap_or(&text);
            let password = password.strip_suffix('\r').unwrap_or(password);
            database_url = Some(crate::config::with_password(url, password)?);
        }
        Ok(Config {
            database_url,
            home: self.home.clone(),
        })
    }
}

/// Start tracing with `--log` and `--log-format` (see [`crate::logging`]).
pub fn init_tracing(cli: &Cli) {
    crate::logging::init(&cli.global.log, cli.global.log_format);
}

/// `print!` that returns the write error instead of panicking, so that a closed pipe
/// (`dvault runs | head`) ends the command quietly (see [`run`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` that returns the write error instead of panicking (see [`out!`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Run one command; errors are printed with their whole cause chain.
pub async fn run(cli: Cli) -> ExitCode {
    let config = match cli.global.config() {
        Ok(config) => config,
        Err(e) => {
            crate::logging::error(&e, &[]);
            return ExitCode::FAILURE;
        }
    };
    match dispatch(cli.command, &config).await {
        Ok(code) => code,
        // the reader went away (`dvault runs | head`): what it wanted, it has
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            let causes: Vec<String> = db::causes(e.as_ref()).map(|c| c.to_string()).collect();
            crate::logging::error(&e.to_string(), &causes);
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

async fn dispatch(command: Command, config: &Config) -> CliResult {
    match command {
        Command::Demo(args) => demo(config, args).await,
        Command::Migrate(args) => migrate(config, args).await,
        Command::Model { action } => model(config, action).await,
        Command::Ingest(args) => ingest(config, args).await,
        Command::Stream(args) => stream(config, args).await,
        Command::Load(args) => load(config, args, false).await,
        Command::Gen(args) => gen_data(args).await,
        Command::Rebuild(args) => load(config, args, true).await,
        Command::Daemon(args) => run_daemon(config, args).await,
        Command::Runs(args) => list_runs(config, args).await,
        Command::Check(args) => check(config, args).await,
        Command::Status => {
            let target = Target::resolve(config).await?;
            let client = db::connect_migrated(&target).await?;
            let report = status::collect(&client).await?;
            outln!("database:   {}", target.describe())?;
            out!("{report}")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(config, args).await,
        Command::Rejected(args) => {
            let target = Target::resolve(config).await?;
            let client = db::connect_migrated(&target).await?;
            out!("{}", status::rejected(&client, args.limit).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Local { action } => {
            let home = config.home.clone();
            match action {
                LocalAction::Start { database } => {
                    let server =
                        tokio::task::spawn_blocking(move || db::local::ensure_running(&home))
                            .await??;
                    outln!("{}", server.url(&database))?;
                }
                LocalAction::Stop => {
                    let stopped =
                        tokio::task::spawn_blocking(move || db::local::stop(&home)).await??;
                    outln!(
                        "{}",
                        if stopped {
                            "stopped the private server"
                        } else {
                            "the private server was not running"
                        }
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn migrate(config: &Config, args: MigrateArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect(&target.url).await?;
    let done = db::migrate(&mut client).await?;
    if let Some(dir) = &args.mappings {
        let applied = registry::apply(&mut client, dir, "dvault migrate --mappings").await?;
        print_applied(&applied)?;
    }
    outln!("database: {}", target.describe())?;
    if done.applied.is_empty() {
        outln!("schema is current")?;
    } else {
        for m in &done.applied {
            outln!("applied {m}")?;
        }
    }
    outln!(
        "schema version {}, {} view files applied",
        done.version.unwrap_or(0),
        done.views
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Bind the API's address; a taken port says how to choose another.
async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "; another program holds the port: stop it, or choose another address \
                 with --listen (env DVAULT_LISTEN), e.g. --listen {}:{}",
                addr.ip(),
                addr.port().wrapping_add(1).max(1)
            ),
            _ => "; choose another address with --listen (env DVAULT_LISTEN)".to_string(),
        };
        format!("cannot listen on {addr}: {e}{hint}")
    })
}

/// Whether API keys are configured: a warning when none is (reads open to all).
fn keys_notice(keys: &[ApiKey]) -> std::io::Result<()> {
    let described = api::auth::describe(keys);
    if keys.is_empty() {
        warning(&described);
        Ok(())
    } else {
        notice(&described)
    }
}

fn print_applied(a: &registry::Applied) -> Result<(), std::io::Error> {
    for m in &a.migrations {
        outln!("applied user migration {m}")?;
    }
    outln!(
        "model: {} ({})",
        if a.files.is_empty() {
            "the built-in mappings only".to_string()
        } else {
            format!("built-in mappings + {}", a.files.join(", "))
        },
        if a.changed {
            "registered"
        } else {
            "already registered"
        }
    )?;
    if a.releasable > 0 {
        outln!(
            "{} held-back events are mapped now: the next load loads them",
            crate::human::thousands(a.releasable as u64)
        )?;
    }
    Ok(())
}

async fn model(config: &Config, action: ModelAction) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    match action {
        ModelAction::Apply { dir } => {
            let applied = registry::apply(&mut client, &dir, "dvault model apply").await?;
            print_applied(&applied)?;
        }
        ModelAction::Show => out!("{}", status::model(&client).await?)?,
        ModelAction::Skip { event_type } => {
            client
                .execute(
                    "INSERT INTO ops.skipped_event_types (event_type) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&event_type],
                )
                .await?;
            let n = client
                .execute(
                    "DELETE FROM ops.held_events WHERE event_type = $1",
                    &[&event_type],
                )
                .await?;
            outln!(
                "events of type \"{event_type}\" are passed over from now on ({} held back forgotten)",
                crate::human::thousands(n)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The model registered in the database; `dir` (`--mappings`) must be the same files.
/// A database that never had a model registered registers `dir` on first use, once
/// its mappings fit the catalog.
async fn active_model(
    client: &mut tokio_postgres::Client,
    dir: Option<&std::path::Path>,
) -> Result<Mappings, Box<dyn std::error::Error + Send + Sync>> {
    let active = registry::active(&*client, dir).await?;
    if let Some(files) = &active.to_register {
        crate::mapping::catalog::check(&*client, &active.mappings).await??;
        registry::register(client, files, "first use of --mappings").await?;
    }
    Ok(active.mappings)
}

async fn serve(config: &Config, args: ServeArgs) -> CliResult {
    let api_config = args.api_config()?;
    let target = Target::resolve(config).await?;
    // bring the schema up to date when this role may; a least-privilege API role
    // cannot and need not (GET /ready tells whether the schema is current)
    match db::connect(&target.url).await {
        Ok(mut client) => {
            let current = db::schema_version(&client).await.ok().flatten();
            if current != Some(db::latest_known_version())
                && let Err(e) = db::migrate(&mut client).await
            {
                warning(&format!(
                    "the schema is not current and migrating failed: {e}"
                ));
            }
        }
        Err(e) => warning(&format!(
            "{e}; answering 503 until the database is reachable"
        )),
    }
    let listener = listen(api_config.listen).await?;
    let shutdown = api::shutdown_signal();
    notice(&format!(
        "listening on http://{} (API docs at /docs, dashboard at /dashboard), database {}",
        listener.local_addr()?,
        target.describe()
    ))?;
    keys_notice(&api_config.keys)?;
    if let Some(url) = args.read_database_url.as_deref().filter(|u| !u.is_empty()) {
        notice(&format!(
            "reads from the replica {}",
            crate::config::redact_url(url)
        ))?;
    }
    let state = args.state(api_config, &target.url)?;
    api::serve(listener, state, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

impl IngestArgs {
    /// The options of `dvault ingest` (and `--check`), checked.
    fn options(&self) -> Result<IngestOptions, Box<dyn std::error::Error + Send + Sync>> {
        let time_range = self.time_range.range()?;
        let time = match self.time.as_deref() {
            Some(text) => {
                let at = parse_time(text).ok_or_else(|| {
                    format!("--time: {text:?} is not an ISO 8601 date or timestamp")
                })?;
                time_range.check("--time", text, at)?;
                Some(at)
            }
            None => None,
        };
        Ok(IngestOptions {
            format: self.format,
            event_type: self.event_type.clone(),
            source: self.source.clone(),
            time_field: self.time_field.clone(),
            time,
            batch_size: self.batch_size,
            progress: !self.check,
            time_range,
            bulk_min_rows: (!self.no_bulk && !self.check).then_some(self.bulk_min_rows),
        })
    }
}

async fn ingest(config: &Config, args: IngestArgs) -> CliResult {
    if args.check {
        return ingest_check(config, args).await;
    }
    let opts = args.options()?;
    let target = Target::resolve(config).await?;
    let mut clients = vec![db::connect_migrated(&target).await?];
    for _ in 1..args.streams {
        clients.push(db::connect(&target.url).await?);
    }
    let mut failed = false;
    let (mut inserted, mut rejected) = (0, 0);
    for file in &args.files {
        match ingest::ingest_file_streams(&mut clients, file, &opts).await {
            Ok(summary) => {
                inserted += summary.inserted;
                rejected += summary.rejected;
                outln!("{summary}")?;
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if args.files.len() > 1 {
        outln!(
            "total: {} events ingested, {} rejected",
            crate::human::thousands(inserted),
            crate::human::thousands(rejected)
        )?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `dvault stream`: consume until SIGTERM/SIGINT (or, with --exit-at-end, the end).
async fn stream(config: &Config, args: StreamArgs) -> CliResult {
    let opts = args.options()?;
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let shutdown = crate::ops::shutdown::Shutdown::on_signals()?;
    notice(&format!(
        "consuming {} from {} into {} (group \"{}\"); SIGTERM or Ctrl-C stops",
        opts.topics.join(", "),
        opts.brokers.join(","),
        target.describe(),
        opts.group
    ))?;
    let summary = crate::stream::run(&mut client, &opts, shutdown).await?;
    outln!("{summary}")?;
    Ok(ExitCode::SUCCESS)
}

/// `dvault ingest --check`: each file through the active model, nothing stored.
async fn ingest_check(config: &Config, args: IngestArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mappings = active_model(&mut client, None).await?;
    let opts = args.options()?;
    let mut clean = true;
    for file in args.files {
        let (opts, m) = (opts.clone(), mappings.clone());
        let preview = tokio::task::spawn_blocking(move || {
            crate::mapping::preview::check_file(&file, &opts, &m)
        })
        .await?;
        match preview {
            Ok(p) => {
                clean &= p.clean();
                out!("{p}")?;
            }
            Err(e) => {
                clean = false;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn load(config: &Config, args: LoadArgs, rebuild: bool) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mappings = active_model(&mut client, args.mappings.as_deref()).await?;
    let mut loader = Loader::new(&client, mappings)
        .await?
        .with_read_ahead(&target.url);
    loader.batch_size = args.batch_size.max(1);
    loader.bulk_min_events = (!args.no_bulk).then_some(args.bulk_min_events.max(1));
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
        waiting = events::horizon::waiting(&client, load::CONSUMER).await?;
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
const WAIT_FOR_BLOCKER: Duration = Duration::from_secs(2);

/// `dvault load`'s exit status when committed events wait behind an open transaction.
const BLOCKED_EXIT: u8 = 3;

fn add_summary(total: &mut load::LoadSummary, more: load::LoadSummary) {
    total.batches += more.batches;
    total.events += more.events;
    total.rejected += more.rejected;
    total.elapsed += more.elapsed;
    for (t, n) in more.rows {
        *total.rows.entry(t).or_default() += n;
    }
}

async fn run_daemon(config: &Config, args: DaemonArgs) -> CliResult {
    let mappings = {
        let target = Target::resolve(config).await?;
        let mut client = db::connect_migrated(&target).await?;
        active_model(&mut client, args.mappings.as_deref()).await?
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

async fn list_runs(config: &Config, args: RunsArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let client = db::connect_migrated(&target).await?;
    let trigger = Trigger::ALL
        .into_iter()
        .find(|t| Some(t.as_str()) == args.trigger.as_deref());
    let list = runs::recent(&client, args.limit.max(1), trigger).await?;
    out!("{}", runs::Listing(&list))?;
    Ok(ExitCode::SUCCESS)
}

async fn check(config: &Config, args: CheckArgs) -> CliResult {
    let qc = QualityConfig::load(args.quality_config.as_deref())?;
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mappings = active_model(&mut client, args.mappings.as_deref()).await?;
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

async fn gen_data(args: GenArgs) -> CliResult {
    if !(0.0..=1.0).contains(&args.dirty) {
        return Err(format!("--dirty must be between 0 and 1, got {}", args.dirty).into());
    }
    let opts = generate::GenOptions {
        seed: args.seed,
        customers: args.customers,
        products: args.products,
        orders: args.orders,
        days: args.days,
        end: args
            .end
            .unwrap_or_else(|| generate::default_end(chrono::Utc::now().date_naive())),
        dirty: args.dirty,
        out: args.out,
    };
    let started = std::time::Instant::now();
    let out = opts.out.clone();
    let summary = tokio::task::spawn_blocking(move || generate::generate(&opts))
        .await?
        .map_err(|e| format!("writing to {}: {e}", out.display()))?;
    for f in &summary.files {
        let mut line = format!(
            "{}: {} events",
            f.path.display(),
            crate::human::thousands(f.good)
        );
        if f.bad_at_ingest + f.bad_at_load > 0 {
            line.push_str(&format!(
                " + {} broken for ingest, {} for load",
                f.bad_at_ingest, f.bad_at_load
            ));
        }
        outln!("{line}")?;
    }
    outln!("generated in {:.2} s", started.elapsed().as_secs_f64())?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(config: &Config, args: DemoArgs) -> CliResult {
    let api_config = args.serve.api_config()?;
    // the port first: a taken one fails now, not after the whole demo's work
    let listener = match args.no_serve {
        true => None,
        false => Some(listen(api_config.listen).await?),
    };
    let opts = crate::demo::DemoOptions::new(config);
    let demo = crate::demo::prepare(config, &opts).await?;
    out!("{}", demo.tour)?;
    let Some(listener) = listener else {
        return Ok(ExitCode::SUCCESS);
    };
    let addr = listener.local_addr()?;
    let some_customer: Option<String> = db::connect(&demo.target.url)
        .await?
        .query_opt(
            "SELECT customer_id FROM mart.customer_360 ORDER BY total_spent DESC NULLS LAST LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let shutdown = api::shutdown_signal();
    for line in demo_banner(addr, some_customer.as_deref()) {
        notice(&line)?;
    }
    keys_notice(&api_config.keys)?;
    let state = args.serve.state(api_config, &demo.target.url)?;
    api::serve(listener, state, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// What the demo says when it starts serving: where the API, its docs and the
/// dashboard are, and requests to try.
fn demo_banner(addr: std::net::SocketAddr, some_customer: Option<&str>) -> Vec<String> {
    let mut lines = vec![
        format!(
            "\nServing the Customer 360 API on http://{addr} (docs: http://{addr}/docs); Ctrl-C stops."
        ),
        format!("  Dashboard: http://{addr}/dashboard"),
    ];
    if let Some(id) = some_customer {
        lines.push(format!("  curl http://{addr}/customers/{id}"));
    }
    lines.push(format!(
        "  curl 'http://{addr}/customers?segment=Champions&limit=5'"
    ));
    lines
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_demo_says_where_the_dashboard_is() {
        let addr = "127.0.0.1:8080".parse().expect("address");
        let banner = super::demo_banner(addr, Some("C001814")).join("\n");
        // as the README quotes it
        assert!(banner.contains(
            "(docs: http://127.0.0.1:8080/docs); Ctrl-C stops.\n  Dashboard: http://127.0.0.1:8080/dashboard\n  curl http://127.0.0.1:8080/customers/C001814"
        ), "{banner}");
        let readme = include_str!("../README.md");
        assert!(readme.contains("  Dashboard: http://127.0.0.1:8080/dashboard\n"));
    }

    use super::Cli;

    /// Every flag of every command can be set from the environment (12-factor), and
    /// `--help` says which variable.
    #[test]
    fn every_flag_has_an_environment_variable_in_help() {
        fn walk(cmd: &mut clap::Command, path: &str, seen: &mut usize) {
            let help = cmd.render_long_help().to_string();
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || id == "help" || id == "version" {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{path} --{id} has no environment variable"));
                let env = env.to_string_lossy();
                assert!(
                    help.contains(&format!("[env: {env}")),
                    "{path} --help does not show {env}"
                );
                *seen += 1;
            }
            for sub in cmd.get_subcommands_mut() {
                let name = format!("{path} {}", sub.get_name());
                walk(sub, &name, seen);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut seen = 0;
        walk(&mut cmd, "dvault", &mut seen);
        assert!(seen > 50, "only {seen} flags checked");
    }

    #[test]
    fn boolean_flags_still_work_without_a_value() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["dvault", "daemon", "--follow"]).expect("parse");
        assert!(matches!(cli.command, super::Command::Daemon(a) if a.follow));
    }
}
