//! The command line: argument types and one function per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::db::{self, Target};
use crate::events::ingest::{self, Format, IngestOptions};
use crate::generate;
use crate::load::{self, Loader};
use crate::mapping::Mappings;
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
    /// Directory for dvault's local state (the private server).
    #[arg(long, env = "DVAULT_HOME", global = true, default_value = ".dvault")]
    pub home: PathBuf,
    /// Log filter, e.g. `info`, `dvault=debug`.
    #[arg(long, env = "DVAULT_LOG", global = true, default_value = "warn")]
    pub log: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
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
    /// Create or update the schema (a no-op when it is current) and the views.
    Migrate,
    /// Append CSV or NDJSON (CloudEvents) files to the event log.
    Ingest(IngestArgs),
    /// Project new events of the log into the vault (hubs, links, satellites).
    Load(LoadArgs),
    /// Empty the vault and replay the whole log.
    Rebuild(LoadArgs),
    /// Write deterministic synthetic Customer 360 data (NDJSON events and flat CSVs).
    Gen(GenArgs),
    /// Show the database, schema version, events, rejections and the loader's position.
    Status,
    /// List quarantined input (most recent first).
    Rejected(RejectedArgs),
    /// Manage the private PostgreSQL server.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to ingest (.csv, .ndjson, .jsonl).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Format, when the file name does not tell.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// CSV: the event type of every row, e.g. customer_registered.
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    pub event_type: Option<String>,
    /// CSV: the record source of every row, e.g. crm.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// CSV: column holding the business time (ISO 8601); default: ingestion time.
    #[arg(long, value_name = "COLUMN")]
    pub time_field: Option<String>,
    /// Events per transaction.
    #[arg(long, default_value_t = 20_000)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Events per transaction.
    #[arg(long, default_value_t = 50_000)]
    pub batch_size: i64,
    /// Exit at once if another loader is running, instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Mapping files to use instead of the ones built in.
    #[arg(long, env = "DVAULT_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after loading instead of serving the API.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Directory to write into (created if missing).
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Same seed and options give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 10_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 5_000)]
    pub products: usize,
    /// Orders (about 2.5 lines each).
    #[arg(long, default_value_t = 40_000)]
    pub orders: usize,
    /// Days of history, ending at --end.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Last business day (YYYY-MM-DD); default: today (UTC).
    #[arg(long)]
    pub end: Option<chrono::NaiveDate>,
    /// Share of extra broken lines to inject (e.g. 0.01), to exercise quarantine.
    #[arg(long, default_value_t = 0.0)]
    pub dirty: f64,
}

#[derive(Debug, Args)]
pub struct RejectedArgs {
    /// How many to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Start the private server (if not running) and print its URL.
    Start,
    /// Stop the private server.
    Stop,
}

impl GlobalArgs {
    pub fn config(&self) -> Config {
        Config {
            database_url: self.database_url.clone().filter(|u| !u.is_empty()),
            home: self.home.clone(),
            ..Config::default()
        }
    }
}

pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Run one command; errors are printed with their whole cause chain.
pub async fn run(cli: Cli) -> ExitCode {
    let config = cli.global.config();
    match dispatch(cli.command, &config).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

async fn dispatch(command: Command, config: &Config) -> CliResult {
    match command {
        Command::Demo(args) => demo(config, args).await,
        Command::Migrate => migrate(config).await,
        Command::Ingest(args) => ingest(config, args).await,
        Command::Load(args) => load(config, args, false).await,
        Command::Gen(args) => gen_data(args).await,
        Command::Rebuild(args) => load(config, args, true).await,
        Command::Status => {
            let target = Target::resolve(config).await?;
            let client = db::connect_migrated(&target).await?;
            let report = status::collect(&client).await?;
            println!("database:   {}", target.describe());
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rejected(args) => {
            let target = Target::resolve(config).await?;
            let client = db::connect_migrated(&target).await?;
            print!("{}", status::rejected(&client, args.limit).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Local { action } => {
            let home = config.home.clone();
            match action {
                LocalAction::Start => {
                    let server =
                        tokio::task::spawn_blocking(move || db::local::ensure_running(&home))
                            .await??;
                    println!("{}", server.url(db::local::DATABASE));
                }
                LocalAction::Stop => {
                    let stopped =
                        tokio::task::spawn_blocking(move || db::local::stop(&home)).await??;
                    println!(
                        "{}",
                        if stopped {
                            "stopped the private server"
                        } else {
                            "the private server was not running"
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn migrate(config: &Config) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect(&target.url).await?;
    let done = db::migrate(&mut client).await?;
    println!("database: {}", target.describe());
    if done.applied.is_empty() {
        println!("schema is current");
    } else {
        for m in &done.applied {
            println!("applied {m}");
        }
    }
    println!(
        "schema version {}, {} view files applied",
        done.version.unwrap_or(0),
        done.views
    );
    Ok(ExitCode::SUCCESS)
}

async fn ingest(config: &Config, args: IngestArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let opts = IngestOptions {
        format: args.format,
        event_type: args.event_type,
        source: args.source,
        time_field: args.time_field,
        batch_size: args.batch_size,
        progress: true,
    };
    let mut failed = false;
    let (mut inserted, mut rejected) = (0, 0);
    for file in &args.files {
        match ingest::ingest_file(&mut client, file, &opts).await {
            Ok(summary) => {
                inserted += summary.inserted;
                rejected += summary.rejected;
                println!("{summary}");
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if args.files.len() > 1 {
        println!(
            "total: {} events ingested, {} rejected",
            ingest::thousands(inserted),
            ingest::thousands(rejected)
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn load(config: &Config, args: LoadArgs, rebuild: bool) -> CliResult {
    let mappings = match &args.mappings {
        Some(dir) => Mappings::from_dir(dir)?,
        None => Mappings::builtin()?,
    };
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    let mut loader = Loader::new(&client, mappings).await?;
    loader.batch_size = args.batch_size.max(1);
    Loader::lock(&client, !args.no_wait).await?;
    let summary = if rebuild {
        load::rebuild(&mut client, &loader).await
    } else {
        loader.run(&mut client).await
    };
    Loader::unlock(&client).await?;
    print!("{}", summary?);
    Ok(ExitCode::SUCCESS)
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
        end: args.end.unwrap_or_else(|| chrono::Utc::now().date_naive()),
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
            out.join(&f.path).display(),
            ingest::thousands(f.good)
        );
        if f.bad_at_ingest + f.bad_at_load > 0 {
            line.push_str(&format!(
                " + {} broken for ingest, {} for load",
                f.bad_at_ingest, f.bad_at_load
            ));
        }
        println!("{line}");
    }
    println!("generated in {:.2} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

async fn demo(config: &Config, _args: DemoArgs) -> CliResult {
    let opts = crate::demo::DemoOptions::new(config);
    let demo = crate::demo::prepare(config, &opts).await?;
    print!("{}", demo.tour);
    Ok(ExitCode::SUCCESS)
}
