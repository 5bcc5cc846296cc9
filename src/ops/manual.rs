//! A run started by hand (`dvault load`, `dvault rebuild`, `dvault demo`), from the
//! loader lock to its row in `dvault runs`: lock → start the run's row → progress on a
//! terminal → the load (the caller's) → `ANALYZE` ([`super::analyze`]) → the row's
//! end → unlock. The daemon's cycles go through the same parts with its own
//! scheduling, cancellation and quality gate (`crate::daemon::cycle`).

use tokio_postgres::Client;
use tracing::Span;

use super::progress::{self, LoadProgress};
use super::runs::{self, Outcome, RunId, Trigger};
use crate::db::{Doing, Failed};
use crate::events::horizon::Waiting;
use crate::load::{LoadError, LoadSummary, Loader};

/// A run begun by [`ManualRun::begin`]: it holds the loader lock until [`ManualRun::end`].
pub struct ManualRun {
    id: RunId,
    url: String,
    span: Span,
    progress: LoadProgress,
}

/// Why a manual run failed: its load, or its bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Db(#[from] Failed),
}

impl ManualRun {
    /// Take the loader lock (`wait`: for another loader to finish; else fail
    /// [`LoadError::Busy`]), record the run's start, show its progress on a terminal.
    /// On an error the lock is released again.
    pub async fn begin(
        client: &Client,
        url: &str,
        rebuild: bool,
        wait: bool,
    ) -> Result<ManualRun, RunError> {
        Loader::lock(client, wait).await?;
        let id = match runs::start(client, Trigger::Manual, rebuild)
            .await
            .doing("recording the run's start")
        {
            Ok(id) => id,
            Err(e) => {
                Loader::unlock(client).await?;
                return Err(e.into());
            }
        };
        // every line the run logs carries its id (`--log-format json`: `spans`)
        let span = tracing::info_span!(
            "run",
            run = id.0,
            trigger = Trigger::Manual.as_str(),
            kind = if rebuild { "rebuild" } else { "load" }
        );
        let progress = progress::for_load(client, url, rebuild).await;
        Ok(ManualRun {
            id,
            url: url.to_string(),
            span,
            progress,
        })
    }

    /// The run's span, for its load to run in (`Instrument::instrument`).
    pub fn span(&self) -> Span {
        self.span.clone()
    }

    /// End the run: analyze what a successful load changed, record how it ended
    /// (`waiting`: the transaction holding events back, if any), and release the lock
    /// whatever happened before. The load's own error comes first, then the
    /// bookkeeping's.
    pub async fn end(
        self,
        client: &Client,
        vault_schema: &str,
        summary: Result<LoadSummary, LoadError>,
        waiting: Option<&Waiting>,
    ) -> Result<LoadSummary, RunError> {
        self.progress.finish();
        let analyzed = match &summary {
            Ok(_) => super::analyze::after_run(client, Some(&self.url), vault_schema, &[])
                .await
                .map(|_| ()),
            Err(_) => Ok(()),
        };
        let recorded = runs::finish(client, self.id, &Outcome::of_load(&summary, waiting))
            .await
            .doing("recording the run's end");
        let unlocked = Loader::unlock(client).await;
        let summary = summary?;
        recorded?;
        analyzed?;
        unlocked?;
        Ok(summary)
    }
}
