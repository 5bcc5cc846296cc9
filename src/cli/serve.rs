//! `dvault serve` and `dvault demo`: the API (and the demo that ends serving it).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use super::input::TimeRangeArgs;
use crate::api::{self, ApiConfig, ApiKey, Cors};
use crate::config::Config;
use crate::db::{self, Doing, Target};
use crate::logging::{notice, warning};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after loading instead of serving the API.
    #[arg(long, env = "DVAULT_DEMO_NO_SERVE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_serve: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
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

/// Bind the API's address; a taken port says how to choose another.
pub(super) async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
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
pub(super) fn keys_notice(keys: &[ApiKey]) -> std::io::Result<()> {
    let described = api::auth::describe(keys);
    if keys.is_empty() {
        warning(&described);
        Ok(())
    } else {
        notice(&described)
    }
}

pub(super) async fn serve(config: &Config, args: ServeArgs) -> CliResult {
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
    let mut banner = vec![format!(
        "listening on http://{} (API docs at /docs, dashboard at /dashboard), database {}",
        listener.local_addr()?,
        target.describe()
    )];
    if let Some(url) = args.read_database_url.as_deref().filter(|u| !u.is_empty()) {
        banner.push(format!(
            "reads from the replica {}",
            crate::config::redact_url(url)
        ));
    }
    serve_on(listener, &args, api_config, &target.url, banner).await
}

/// Serve the API on `listener` until a stop signal: the signal handlers first (a
/// SIGTERM right after the banner stops the server gracefully), then the banner's
/// lines and the API keys' notice.
async fn serve_on(
    listener: tokio::net::TcpListener,
    args: &ServeArgs,
    api_config: ApiConfig,
    database_url: &str,
    banner: Vec<String>,
) -> CliResult {
    let shutdown = api::shutdown_signal();
    for line in banner {
        notice(&line)?;
    }
    keys_notice(&api_config.keys)?;
    let state = args.state(api_config, database_url)?;
    api::serve(listener, state, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn demo(config: &Config, args: DemoArgs) -> CliResult {
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
        .map(|r| r.try_get(0))
        .transpose()
        .doing("picking a customer for the demo's banner")?;
    let banner = demo_banner(addr, some_customer.as_deref());
    serve_on(listener, &args.serve, api_config, &demo.target.url, banner).await
}

/// What the demo says when it starts serving: where the API, its docs and the
/// dashboard are, and requests to try.
pub(super) fn demo_banner(addr: std::net::SocketAddr, some_customer: Option<&str>) -> Vec<String> {
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
