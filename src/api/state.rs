//! What every handler shares: the configuration, the connection pools and the metrics.
//!
//! Two pools when the API reads from a streaming replica (`--read-database-url`):
//! handlers that only read take [`AppState::reads`], those that write (POST /events)
//! take [`AppState::primary`]. With no replica both are the same pool.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::config::ApiConfig;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::db::DbError;

/// How long a request waits for a connection, or for a new one to be made, before
/// the database counts as unreachable (503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ApiConfig>,
    /// The primary: writes, and reads when there is no replica.
    pub pool: Pool,
    /// The read replica's pool (`--read-database-url`), if any.
    pub read_pool: Option<Pool>,
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
            read_pool: None,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The same state, its reads served by the replica at `read_database_url` (a hot
    /// standby of the primary, or any server with the same data). Connects lazily,
    /// like the primary's pool.
    pub fn with_read_replica(mut self, read_database_url: &str) -> Result<AppState, DbError> {
        self.read_pool = Some(api_pool(read_database_url, &self.config)?);
        Ok(self)
    }

    /// A connection to the primary, for writes; 503 when it cannot be reached.
    pub async fn primary(&self) -> Result<Object, ApiError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for reads: the replica's when there is one, else the primary's;
    /// 503 when it cannot be reached.
    pub async fn reads(&self) -> Result<Object, ApiError> {
        Ok(self.read_pool.as_ref().unwrap_or(&self.pool).get().await?)
    }
}

/// The API's pool: fails fast while the database is down, and lets the database
/// cancel a statement that outlives the request it serves.
fn api_pool(url: &str, config: &ApiConfig) -> Result<Pool, DbError> {
    let mut pg = crate::db::pg_config(url, "dvault-api")?;
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
