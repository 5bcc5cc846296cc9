//! A run started by hand (`dvault load`, `dvault rebuild`, `dvault demo`), from the
//! loader lock to its row in `dvault runs`: lock → start the run's row → progress on a
//! terminal → the load (the caller's) → `ANALYZE` ([`super::analyze`]) and, beside
//! it, the past days' figures (`crate::load::business::past_days`) → the row's end →
//! unlock. The row and the unlock are every run's ([`super::run`]); the daemon's
//! cycles use them too, with their own scheduling, cancellation and quality gate
//! (`crate::daemon::cycle`).

use tokio_postgres::Client;
use tracing::Span;

use super::progress::{self, LoadProgress};
use super::run::{Run, RunError};
use super::runs::{Outcome, Trigger};
use crate::events::horizon::Waiting;
use crate::load::{LoadError, LoadSummary, Loader};

/// A run begun by [`ManualRun::begin`]: it holds the loader lock until [`ManualRun::end`].
pub struct ManualRun {
    run: Run,
    url: String,
    progress: LoadProgress,
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
        let run = Run::start(client, Trigger::Manual, rebuild).await?;
        let progress = progress::for_load(client, url, rebuild).await;
        Ok(ManualRun {
            run,
            url: url.to_string(),
            progress,
        })
    }

    /// The run's span, for its load to run in (`Instrument::instrument`).
    pub fn span(&self) -> Span {
        self.run.span()
    }

    /// End the run: analyze what a successful load changed (and keep the RFM
    /// boundaries and population figures of the past days it left missing), record how it ended
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
            Ok(_) => analyze_and_fill(client, &self.url, vault_schema).await,
            Err(_) => Ok(()),
        };
        let ended = self
            .run
            .finish(client, &Outcome::of_load(&summary, waiting))
            .await;
        let summary = summary?;
        ended?;
        analyzed?;
        Ok(summary)
    }
}

/// `ANALYZE` what the run changed, and keep the past days it left missing
/// ([`crate::load::business::past_days`]) on a connection of their own meanwhile:
/// neither waits for the other (the fill is its own repeatable-read transaction,
/// checked against the checkpoint), and the `ANALYZE`'s two connections and the
/// fill, one backend's read and then the loader's sweep, share the cores. After the
/// demo's first load 0.58 + 0.69 s one after the other, 1.0 s side by side; at ten
/// times its data 2.7 + 6.6–7.4 s against 7.7 s (bench/README.md). Without a second
/// connection, one after the other.
async fn analyze_and_fill(
    client: &Client,
    url: &str,
    vault_schema: &str,
) -> Result<(), crate::db::Failed> {
    let analyze = super::analyze::after_run(client, Some(url), vault_schema, &[]);
    let fill = crate::load::business::past_days::after_run;
    match crate::db::connect(url).await {
        Ok(other) => {
            let (analyzed, filled) = tokio::join!(analyze, fill(&other));
            analyzed?;
            filled?;
        }
        Err(e) => {
            tracing::debug!(error = %e, "no second connection: the past days after the ANALYZE");
            analyze.await?;
            fill(client).await?;
        }
    }
    Ok(())
}
