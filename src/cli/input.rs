//! `dvault ingest`, `dvault stream` and `dvault gen`: what goes into the log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use super::model::active_model;
use crate::config::Config;
use crate::db::{self, Target};
use crate::events;
use crate::events::csv_rows::parse_time;
use crate::events::ingest::{self, Format, IngestOptions};
use crate::events::limits::TimeRange;
use crate::generate;
use crate::logging::notice;

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
    /// CSV: store the rows in bundles of 10,000 events, one log row each, instead of
    /// one row per event: a warehouse feed goes in at the speed of a raw `COPY`. The
    /// file and each bundle are still stored once; a row re-sent in another file
    /// (a daily full snapshot) is stored again, unless --snapshot, and the vault
    /// still does not grow from it (docs/events.md, "Bundles").
    #[arg(long, env = "DVAULT_INGEST_BUNDLE", value_parser = clap::builder::FalseyValueParser::new())]
    pub bundle: bool,
    /// CSV with --bundle: each file is a whole snapshot of its feed (its type and
    /// source), such as a daily full export; only rows that are not a row of the
    /// feed's last file are stored (docs/events.md, "Snapshot feeds").
    #[arg(long, env = "DVAULT_INGEST_SNAPSHOT", requires = "bundle", value_parser = clap::builder::FalseyValueParser::new())]
    pub snapshot: bool,
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
            bundle: self.bundle.then_some(events::bundle::ROWS),
            snapshot: self.snapshot,
        })
    }
}

pub(super) async fn ingest(config: &Config, args: IngestArgs) -> CliResult {
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
    // over all the files: a first load beside them follows them all (`load::bulk`)
    ingest::hold_ingest_lock(&clients[0], true).await?;
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
pub(super) async fn stream(config: &Config, args: StreamArgs) -> CliResult {
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
pub(super) async fn ingest_check(config: &Config, args: IngestArgs) -> CliResult {
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

pub(super) async fn gen_data(args: GenArgs) -> CliResult {
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
