//! A recorded run, from its row's start in `ops.load_runs` ([`super::runs`]) to its
//! end and the release of the loader lock: what every run shares, whatever started
//! it. A run by hand ([`super::manual`]) and the daemon's cycles
//! (`crate::daemon::cycle`) both go through [`Run`]; what differs stays with them:
//! how the lock is waited for (a run by hand may refuse to wait, the daemon's wait
//! gives way to a stop), the progress bar, and what follows the load (`ANALYZE` by
//! hand; refresh, quality gate and `ANALYZE` in the nightly cycle).

use tokio_postgres::Client;
use tracing::Span;

use super::runs::{self, Outcome, RunId, Trigger};
use crate::db::{Doing, Failed};
use crate::load::{LoadError, Loader};

/// Why a run's bookkeeping (or a run by hand's load) failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Db(#[from] Failed),
}

/// A run begun by [`Run::start`]: its row says `running` and it holds the loader
/// lock until [`Run::finish`] or [`Run::discard`].
pub struct Run {
    id: RunId,
    span: Span,
}

impl Run {
    /// Record the start of a run of `trigger`; the caller holds the loader lock. On
    /// an error the lock is released again (the start's error is the one returned).
    pub async fn start(client: &Client, trigger: Trigger, rebuild: bool) -> Result<Run, RunError> {
        let id = match runs::start(client, trigger, rebuild)
            .await
            .doing("recording the run's start")
        {
            Ok(id) => id,
            Err(e) => {
                if let Err(unlock) = Loader::unlock(client).await {
                    tracing::debug!(error = %unlock, "releasing the loader lock after a failed start");
                }
                return Err(e.into());
            }
        };
        tracing::debug!(run = id.0, trigger = trigger.as_str(), "run started");
        // every line the run logs carries its id (`--log-format json`: `spans`)
        let span = tracing::info_span!(
            "run",
            run = id.0,
            trigger = trigger.as_str(),
            kind = if rebuild { "rebuild" } else { "load" }
        );
        Ok(Run { id, span })
    }

    pub fn id(&self) -> RunId {
        self.id
    }

    /// The run's span, for its work to run in (`Instrument::instrument`).
    pub fn span(&self) -> Span {
        self.span.clone()
    }

    /// Record how the run ended and release the lock, whether or not the record
    /// was written; the record's error comes first.
    pub async fn finish(self, client: &Client, outcome: &Outcome<'_>) -> Result<(), RunError> {
        let recorded = runs::finish(client, self.id, outcome).await;
        release(client, recorded).await
    }

    /// Drop the run's row (it did nothing worth a row) and release the lock, whether
    /// or not the row was dropped; the drop's error comes first.
    pub async fn discard(self, client: &Client) -> Result<(), RunError> {
        let discarded = runs::discard(client, self.id).await;
        release(client, discarded).await
    }
}

/// Release the loader lock after the run's row was ended (`ended`), whether or not
/// that worked; the row's error comes first.
async fn release(
    client: &Client,
    ended: Result<(), tokio_postgres::Error>,
) -> Result<(), RunError> {
    let ended = ended.doing("recording the run's end");
    let unlocked = Loader::unlock(client).await;
    ended?;
    unlocked?;
    Ok(())
}
