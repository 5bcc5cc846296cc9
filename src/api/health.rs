//! GET /health (liveness: the process answers) and GET /ready (readiness: the database
//! reads come from answers, its schema is the one this binary knows, how far the
//! loader lags, and with a read replica how far its replay lags).

use axum::extract::State;
use serde::Serialize;
use tokio_postgres::Client;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Json;
use super::replica::{self, Replica};
use super::state::AppState;
use crate::{db, events};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// How far the loader is behind the log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lag {
    /// Events in the log not yet loaded into the vault.
    pub pending_events: i64,
    /// Age of the oldest of them, seconds; null when none.
    pub oldest_pending_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub schema_version: i32,
    pub loader: Lag,
    /// The latest quality gate (`dvault check` or a nightly run); null when none has
    /// run or this role may not read `ops.quality_results`. A failed gate is
    /// reported here but does not make the server unready: the data is still served.
    pub quality: Option<Quality>,
    /// The read replica (`--read-database-url`), whose data the other fields describe;
    /// null when reads go to the primary.
    pub replica: Option<Replica>,
    /// The latest load run (`dvault load`, `rebuild` or the daemon's); null when none
    /// is recorded or this role may not read `ops.load_runs`.
    pub last_run: Option<LastRun>,
}

/// A load run, as `dvault runs` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastRun {
    /// `schedule`, `follow` or `manual`.
    pub trigger: String,
    /// `load` or `rebuild`.
    pub kind: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    pub status: String,
    /// RFC 3339 UTC.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// RFC 3339 UTC; null while running.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub events_read: Option<i64>,
}

/// The verdict of the latest quality gate.
#[derive(Debug, Serialize, ToSchema)]
pub struct Quality {
    pub passed: bool,
    /// RFC 3339 UTC.
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// One line: which checks failed and by how much.
    pub verdict: String,
}

/// Liveness: the process is up. Never touches the database.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "getHealth",
    tag = "operations",
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database reads come from answers, the schema is current, the views
/// exist and a read replica's replay lags no more than the configured limit.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "getReady",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Database unreachable, schema not current, views missing or the read replica lagging past the limit; `Retry-After` is set",
         body = super::error::Problem, content_type = "application/problem+json")
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    // what is checked is where the reads go: the replica when there is one (POST
    // /events answers 503 on its own while the primary is away)
    let client = state.reads().await?;
    let expected = db::latest_known_version();
    let version = db::schema_version(&client).await.map_err(|e| match e {
        db::DbError::Sql(e) => ApiError::from(e),
        other => ApiError::Internal(other.to_string()),
    })?;
    let not_ready = |detail: String| {
        let mut extensions = serde_json::Map::new();
        extensions.insert("schema_version".into(), version.into());
        extensions.insert("expected_schema_version".into(), expected.into());
        ApiError::NotReady { detail, extensions }
    };
    if version != Some(expected) {
        return Err(not_ready(format!(
            "the database schema is at version {}, this server needs {expected}: run `dvault migrate`",
            version.unwrap_or(0)
        )));
    }
    let views: bool = client
        .query_one("SELECT to_regclass('mart.customer_360') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !views {
        return Err(not_ready(
            "the business views (mart.*) are missing: run `dvault migrate`".into(),
        ));
    }
    let replica = match state.read_pool {
        Some(_) => {
            let max = state.config.max_replica_lag.as_secs_f64();
            let replica = replica::state(&**client, max).await?;
            replica.require_within_limit()?;
            Some(replica)
        }
        None => None,
    };
    let loader = loader_lag(&client).await?;
    let quality = crate::ops::quality::latest(&**client)
        .await
        .unwrap_or_else(|e| {
            tracing::debug!(error = %e, "no quality verdict for /ready");
            None
        })
        .map(|report| Quality {
            passed: report.passed(),
            checked_at: report.checked_at,
            verdict: report.verdict(),
        });
    let last_run = crate::ops::runs::recent(&**client, 1, None)
        .await
        .unwrap_or_else(|e| {
            tracing::debug!(error = %e, "no load run for /ready");
            Vec::new()
        })
        .into_iter()
        .next()
        .map(|run| LastRun {
            trigger: run.trigger,
            kind: run.kind,
            status: run.status,
            started_at: run.started_at,
            finished_at: run.finished_at,
            events_read: run.events_read,
        });
    Ok(Json(Ready {
        status: "ready",
        schema_version: expected,
        loader,
        quality,
        replica,
        last_run,
    }))
}

/// Events after the loader's checkpoint, and the age of the oldest.
pub async fn loader_lag(client: &Client) -> Result<Lag, tokio_postgres::Error> {
    let lag = events::lag(client, crate::load::CONSUMER).await?;
    Ok(Lag {
        pending_events: lag.events,
        oldest_pending_seconds: lag.oldest_seconds,
    })
}
