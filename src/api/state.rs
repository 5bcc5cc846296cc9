//! What every handler shares: the configuration, the connection pool and the metrics.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::config::ApiConfig;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::config::redact_url;
use crate::db::DbError;

/// How long a request waits for a connection, or for a new one to be made, before
/// the database counts as unreachable (503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ApiConfig>,
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// State for `config`, its pool pointed at `database_url`. Connects lazily: the
    /// server starts (and answers 503) while the database is away.
    pub fn new(config: ApiConfig, database_url: &str) -> Result<AppState, DbError> {
        let pool = api_pool(database_url, &config)?;
        Ok(AppState {
            config: Arc::new(config),
            pool,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// A connection from the pool; 503 when the database cannot be reached.
    pub async fn db(&self) -> Result<Object, ApiError> {
        Ok(self.pool.get().await?)
    }
}

/// The API's pool: fails fast while the database is down, and lets the database
/// cancel a statement that outlives the request it serves.
fn api_pool(url: &str, config: &ApiConfig) -> Result<Pool, DbError> {
    let mut pg = tokio_postgres::Config::from_str(url).map_err(|source| DbError::BadUrl {
        url: redact_url(url),
        source,
    })?;
    if pg.get_application_name().is_none() {
        pg.application_name("dvault-api");
    }
    let timeout_ms = config.request_timeout.as_millis().max(1);
    let options = format!(
        "{} -c statement_timeout={timeout_ms}",
        pg.get_options().unwrap_or_default()
    );
    pg.options(options.trim());
    pg.connect_timeout(CONNECT_TIMEOUT);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}
