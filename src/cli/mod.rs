//! The command line: the global arguments, the commands and their dispatch here; each
//! command group's arguments and function in its own file (`model`: migrate and the
//! registered model; `input`: ingest, stream, gen; `loading`: load, rebuild, daemon,
//! runs, check; `serve`: serve and demo). Output goes through `out!`/`outln!`, which
//! end quietly on a closed pipe.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::db::{self, Target};
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

mod input;
mod loading;
mod model;
mod serve;

pub use input::{GenArgs, IngestArgs, StreamArgs, TimeRangeArgs};
pub use loading::{CheckArgs, DaemonArgs, LoadArgs, ModelArgs, RunsArgs};
pub use model::{MigrateArgs, ModelAction};
pub use serve::{DemoArgs, ServeArgs};

use input::{gen_data, ingest, stream};
use loading::{check, list_runs, load, run_daemon};
use model::{migrate, model};
use serve::{demo, serve};

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
#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_demo_says_where_the_dashboard_is() {
        let addr = "127.0.0.1:8080".parse().expect("address");
        let banner = super::serve::demo_banner(addr, Some("C001814")).join("\n");
        // as the README quotes it
        assert!(banner.contains(
            "(docs: http://127.0.0.1:8080/docs); Ctrl-C stops.\n  Dashboard: http://127.0.0.1:8080/dashboard\n  curl http://127.0.0.1:8080/customers/C001814"
        ), "{banner}");
        let readme = include_str!("../../README.md");
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
