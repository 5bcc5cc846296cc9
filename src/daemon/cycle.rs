//! One run of the daemon, recorded in `ops.load_runs`: take the loader lock, load
//! from the checkpoint, and for the nightly cycle refresh materialized views, run the
//! quality gate and `ANALYZE` what changed; then record how it ended. The run's row
//! and the unlock are every run's ([`crate::ops::run::Run`], as for a run by hand);
//! waiting for the lock, cancelling on a stop and the nightly steps are the daemon's.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{CancelToken, Client, NoTls};
use tracing::Instrument;

use super::maintenance;
use super::metrics::Metrics;
use super::retry::is_cancelled;
use super::{DaemonError, DaemonOptions};
use crate::db::Doing;
use crate::db::chain;
use crate::events::horizon::{self, Waiting};
use crate::human::thousands;
use crate::load::{CONSUMER, LoadError, LoadSummary, Loader, Partial};
use crate::ops::progress::{self, LoadProgress};
use crate::ops::quality::{self, Report, Scope};
use crate::ops::run::Run;
use crate::ops::runs::{self, Outcome, RunId, RunStatus, Trigger};
use crate::ops::shutdown::Shutdown;

/// A run the connection was lost in: closed as failed once the daemon reconnects.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: RunId,
    pub trigger: Trigger,
    pub error: String,
}

/// How a run ended, for the daemon's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Cancelled,
    /// A stop came while it waited for the loader lock.
    NotStarted,
}

/// What a run needs; lives as long as one connection.
pub struct Cycle<'a> {
    pub client: &'a mut Client,
    pub loader: &'a Loader,
    pub opts: &'a DaemonOptions,
    pub shutdown: &'a Shutdown,
    pub metrics: &'a Metrics,
    pub token: &'a CancelToken,
    pub url: &'a str,
}

/// A step failed: the error, what the load committed, and whether a stop ended
/// it (with what to record).
struct StepError {
    error: DaemonError,
    summary: Option<LoadSummary>,
    cancelled: bool,
    /// The run's message when a stop ended it; else the error's chain is recorded.
    stopped: Option<String>,
}

impl From<DaemonError> for StepError {
    fn from(error: DaemonError) -> StepError {
        StepError {
            error,
            summary: None,
            cancelled: false,
            stopped: None,
        }
    }
}

/// How long a transaction holding committed events back may be open before a run
/// ends `blocked` rather than `succeeded`.
pub const STALLED: Duration = Duration::from_secs(5);

/// What a run stopped by SIGTERM/SIGINT records: what became of the batch in hand,
/// and what was committed before.
fn stopped_text(committed: &LoadSummary, rolled_back: bool) -> String {
    let hand = if rolled_back {
        "the batch in hand was cancelled after the grace period and rolled back"
    } else {
        "no batch started after the stop (the one in hand was finished)"
    };
    format!(
        "stopped by SIGTERM/SIGINT: {hand}; the {} batch(es) committed ({} events) stay loaded, \
         the rest waits for the next run",
        committed.batches,
        thousands(committed.events)
    )
}

/// Run `fut` (work on the daemon's connection). Once a stop is asked for, it gets
/// `grace` to finish (less if the stop is asked for again), then whatever runs on
/// the connection is cancelled, every 100 ms until `fut` returns: the batch in hand
/// rolls back. The flag says whether cancelling started.
pub async fn until_stopped<T>(
    fut: impl Future<Output = T>,
    token: &CancelToken,
    shutdown: &Shutdown,
    grace: Duration,
) -> (T, bool) {
    tokio::pin!(fut);
    tokio::select! {
        out = &mut fut => return (out, false),
        _ = shutdown.wait() => {}
    }
    if !grace.is_zero() {
        tokio::select! {
            out = &mut fut => return (out, false),
            _ = tokio::time::sleep(grace) => {}
            _ = shutdown.wait_again() => {}
        }
    }
    tracing::info!("cancelling the batch in hand");
    loop {
        if let Err(e) = token.cancel_query(NoTls).await {
            tracing::debug!(error = %e, "cancel request failed");
        }
        tokio::select! {
            out = &mut fut => return (out, true),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// The message a run that went through records: the quality gate's verdict if it
/// failed, and what holds events back, if anything.
fn end_message(verdict: Option<&str>, waiting: Option<&Waiting>) -> Option<String> {
    match (verdict, waiting) {
        (Some(verdict), Some(w)) => Some(format!("{verdict}; {w}")),
        (Some(verdict), None) => Some(verdict.to_string()),
        (None, Some(w)) => Some(w.to_string()),
        (None, None) => None,
    }
}

/// What a run loaded, on one line.
fn log_loaded(id: RunId, trigger: Trigger, summary: &LoadSummary) {
    tracing::info!(
        run = id.0,
        trigger = trigger.as_str(),
        events = summary.events,
        rows = summary.rows_total(),
        rejected = summary.rejected,
        batches = summary.batches,
        ms = summary.elapsed.as_millis() as u64,
        "loaded"
    );
}

/// After cancelling: a cancel request still on its way could hit the next
/// statement; a few no-ops take it instead of the run's bookkeeping.
async fn settle(client: &Client) {
    for _ in 0..3 {
        match client.simple_query("SELECT 1").await {
            Err(e) if is_cancelled(&e) => continue,
            _ => return,
        }
    }
}

impl Cycle<'_> {
    /// One run. Errors the daemon should reconnect for are returned (the run is
    /// remembered in `unfinished`); others end the run as failed, and the daemon
    /// goes on.
    pub async fn run(
        &mut self,
        trigger: Trigger,
        unfinished: &mut Option<Unfinished>,
    ) -> Result<Ended, DaemonError> {
        let Some(run) = self.start(trigger).await? else {
            return Ok(Ended::NotStarted);
        };
        match self.steps(trigger, run.id()).instrument(run.span()).await {
            Ok((summary, report)) => self.succeeded(trigger, run, summary, report).await,
            Err(e) => self.failed(trigger, run, e, unfinished).await,
        }
    }

    /// Take the loader lock and record the run's start; `None` when a stop came
    /// first (the lock is let go again).
    async fn start(&mut self, trigger: Trigger) -> Result<Option<Run>, DaemonError> {
        let (locked, cancelling) = until_stopped(
            Loader::lock(self.client, true),
            self.token,
            self.shutdown,
            Duration::ZERO,
        )
        .await;
        if cancelling {
            settle(self.client).await;
        }
        if self.shutdown.requested() {
            // either cancelled while waiting, or got the lock just now: do not start
            if locked.is_ok() {
                Loader::unlock(self.client).await?;
            }
            return Ok(None);
        }
        locked?;
        Ok(Some(Run::start(&*self.client, trigger, false).await?))
    }

    /// The steps went through: record the run (failed if the quality gate did not
    /// pass, blocked if an open transaction holds events back), unlock, report.
    async fn succeeded(
        &mut self,
        trigger: Trigger,
        run: Run,
        summary: LoadSummary,
        report: Option<Report>,
    ) -> Result<Ended, DaemonError> {
        let id = run.id();
        // a transaction open for a moment is an append in flight: the
        // follow loop's rechecks take its events
        let waiting = horizon::waiting(&*self.client, CONSUMER)
            .await
            .doing("looking for events the loader cannot read yet")?
            .filter(|w| w.stalled(STALLED));
        let passed = report.as_ref().map(Report::passed);
        let status = if passed == Some(false) {
            RunStatus::Failed
        } else if waiting.is_some() {
            RunStatus::Blocked
        } else {
            RunStatus::Succeeded
        };
        let error = report.as_ref().filter(|r| !r.passed()).map(Report::verdict);
        if trigger == Trigger::Follow
            && summary.events == 0
            && !self.worth_a_row(id, waiting.as_ref()).await?
        {
            // nothing was there (yet), or the run before said it waits for
            // the same transaction: not worth a row
            run.discard(&*self.client).await?;
        } else {
            if let Some(w) = &waiting {
                tracing::warn!(run = id.0, "{w}");
            }
            let outcome = Outcome {
                status,
                summary: Some(&summary),
                quality: passed,
                error: end_message(error.as_deref(), waiting.as_ref()),
            };
            run.finish(&*self.client, &outcome).await?;
        }
        self.metrics.run_ended(trigger, status, Some(&summary));
        if let Some(report) = &report {
            self.metrics.set_quality(report);
        }
        if summary.events > 0 || trigger == Trigger::Schedule {
            log_loaded(id, trigger, &summary);
        }
        match error {
            Some(verdict) => {
                tracing::warn!(run = id.0, "{verdict}");
                Ok(Ended::Failed)
            }
            None => Ok(Ended::Succeeded),
        }
    }

    /// A step failed: a transient error (not a stop) is returned for the daemon to
    /// reconnect, the run kept in `unfinished`; anything else ends the run as
    /// failed or cancelled.
    async fn failed(
        &mut self,
        trigger: Trigger,
        run: Run,
        StepError {
            error,
            summary,
            cancelled,
            stopped,
        }: StepError,
        unfinished: &mut Option<Unfinished>,
    ) -> Result<Ended, DaemonError> {
        let id = run.id();
        if error.is_transient() && !cancelled {
            // the lock went with the connection; the row is closed once reconnected
            *unfinished = Some(Unfinished {
                id,
                trigger,
                error: chain(&error),
            });
            return Err(error);
        }
        let status = if cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Failed
        };
        let text = match stopped {
            Some(text) if cancelled => text,
            _ if cancelled => error.to_string(),
            _ => chain(&error),
        };
        let outcome = Outcome {
            status,
            summary: summary.as_ref(),
            quality: None,
            error: Some(text.clone()),
        };
        run.finish(&*self.client, &outcome).await?;
        self.metrics.run_ended(trigger, status, summary.as_ref());
        if cancelled {
            tracing::info!(run = id.0, "run stopped: {text}");
            Ok(Ended::Cancelled)
        } else {
            tracing::error!(run = id.0, trigger = trigger.as_str(), error = %text, "run failed");
            Ok(Ended::Failed)
        }
    }

    /// The work of a run: the load; for the nightly cycle also refresh, quality gate
    /// and ANALYZE.
    async fn steps(
        &mut self,
        trigger: Trigger,
        id: RunId,
    ) -> Result<(LoadSummary, Option<Report>), StepError> {
        let summary = self.load(trigger).await?;
        if trigger != Trigger::Schedule {
            return Ok((summary, None));
        }
        let report = self.nightly(id, &summary).await?;
        Ok((summary, Some(report)))
    }

    /// Load from the checkpoint until the log is drained or a stop comes; a stop
    /// lets the batch in hand finish within the grace period, else cancels it.
    async fn load(&mut self, trigger: Trigger) -> Result<LoadSummary, StepError> {
        let bar = if trigger == Trigger::Schedule {
            progress::for_load(&*self.client, self.url, false).await
        } else {
            LoadProgress::hidden()
        };
        let shutdown = self.shutdown;
        let stop = move || shutdown.requested();
        let (loaded, cancelling) = until_stopped(
            self.loader.run_until(self.client, &stop),
            self.token,
            self.shutdown,
            self.opts.stop_grace,
        )
        .await;
        bar.finish();
        if cancelling {
            settle(self.client).await;
        }
        match loaded {
            Ok(s) => Ok(s),
            Err(Partial {
                committed,
                error: None,
            }) => Err(StepError {
                error: DaemonError::Stopped,
                stopped: Some(stopped_text(&committed, false)),
                summary: Some(committed),
                cancelled: true,
            }),
            Err(Partial {
                committed,
                error: Some(e),
            }) => {
                let cancelled = cancelling
                    || matches!(&e, LoadError::Db { source, .. } if is_cancelled(source));
                Err(StepError {
                    error: e.into(),
                    stopped: cancelled.then(|| stopped_text(&committed, true)),
                    summary: Some(committed),
                    cancelled,
                })
            }
        }
    }

    /// The nightly cycle after its load: refresh materialized views, the quality
    /// gate, ANALYZE. A failure here keeps what the load committed in the record.
    async fn nightly(&mut self, id: RunId, summary: &LoadSummary) -> Result<Report, StepError> {
        let with_summary = |error: DaemonError, cancelled: bool| StepError {
            error,
            summary: Some(summary.clone()),
            cancelled,
            stopped: None,
        };
        if self.shutdown.requested() {
            return Err(with_summary(DaemonError::Stopped, true));
        }
        let refreshed = maintenance::refresh_materialized_views(&*self.client)
            .await
            .doing("refreshing materialized views")
            .map_err(|e| with_summary(e.into(), false))?;
        let report = quality::run_gate(
            self.client,
            &self.opts.quality,
            self.loader.mappings(),
            Scope::SinceLastGate,
            true,
            Some(id.0),
        )
        .await
        .map_err(|e| with_summary(e.into(), false))?;
        tracing::info!(run = id.0, passed = report.passed(), "{}", report.verdict());
        let schema = &self.loader.mappings().schema;
        crate::ops::analyze::after_run(&*self.client, None, schema, &refreshed)
            .await
            .map_err(|e| with_summary(e.into(), false))?;
        crate::load::business::past_days::after_run(&*self.client)
            .await
            .map_err(|e| with_summary(e.into(), false))?;
        Ok(report)
    }

    /// Does a follow run that loaded nothing deserve a row? Only when it waits for
    /// a transaction the follow run before it did not already name.
    async fn worth_a_row(&self, id: RunId, waiting: Option<&Waiting>) -> Result<bool, DaemonError> {
        match waiting {
            None => Ok(false),
            Some(w) => Ok(!runs::already_waiting(&*self.client, id, w.xid)
                .await
                .doing("reading the run history")?),
        }
    }

    /// Close the run a lost connection left open, as failed. Its committed batches
    /// count from the checkpoint.
    pub async fn close_unfinished(&mut self, u: Unfinished) -> Result<(), DaemonError> {
        Loader::lock(self.client, true).await?;
        runs::finish(
            &*self.client,
            u.id,
            &Outcome {
                status: RunStatus::Failed,
                summary: None,
                quality: None,
                error: Some(format!(
                    "lost the database: {}; the batches committed before stay loaded, \
                     the next run went on from the checkpoint",
                    u.error
                )),
            },
        )
        .await
        .doing("recording the end of the interrupted run")?;
        Loader::unlock(self.client).await?;
        self.metrics.run_ended(u.trigger, RunStatus::Failed, None);
        Ok(())
    }
}
