//! Run history in `ops.load_runs`: written by the daemon and by manual loads, read by
//! `dvault runs` and `dvault status`.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::events::horizon::Waiting;
use crate::human::thousands;
use crate::load::{CONSUMER, LoadError, LoadSummary};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    Schedule,
    Follow,
    Manual,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Follow, Trigger::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Follow => "follow",
            Trigger::Manual => "manual",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    Succeeded,
    /// An error, or a failed quality gate.
    Failed,
    /// Stopped by SIGTERM/SIGINT: no batch started after the stop; the batch in
    /// hand was finished, or rolled back when the grace period ran out.
    Cancelled,
    /// Loaded what it could, but committed events wait behind a transaction of
    /// this database still open (its error says which).
    Blocked,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Blocked => "blocked",
        }
    }
}

/// A run's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(pub i64);

/// How a run ended, for its row.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub status: RunStatus,
    /// `None` when the load did not finish (its committed batches are counted from
    /// the checkpoint).
    pub summary: Option<&'a LoadSummary>,
    /// The quality gate's verdict, when the run had one.
    pub quality: Option<bool>,
    pub error: Option<String>,
}

impl<'a> Outcome<'a> {
    /// How a manual load or rebuild ended; `waiting`: committed events it could
    /// not read yet (see [`crate::events::horizon`]).
    pub fn of_load(
        result: &'a Result<LoadSummary, LoadError>,
        waiting: Option<&Waiting>,
    ) -> Outcome<'a> {
        match result {
            Ok(summary) => Outcome {
                status: if waiting.is_some() {
                    RunStatus::Blocked
                } else {
                    RunStatus::Succeeded
                },
                summary: Some(summary),
                quality: None,
                error: waiting.map(ToString::to_string),
            },
            Err(e) => Outcome {
                status: RunStatus::Failed,
                summary: None,
                quality: None,
                error: Some(crate::db::chain(e)),
            },
        }
    }
}

/// `host:pid` of this process.
pub fn runner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

const MARK_INTERRUPTED: &str = "
    UPDATE ops.load_runs
       SET status = 'interrupted', finished_at = clock_timestamp(),
           error = coalesce(error || '; ', '') ||
                   'its process stopped before the run ended (killed, or lost its database connection); '
                   'the batches it committed stay loaded, the one in hand was rolled back'
     WHERE status = 'running'";

const START: &str = "
    INSERT INTO ops.load_runs (trigger, kind, runner, from_xid, from_seq)
    SELECT $1, $2, $3,
           CASE WHEN $2 = 'rebuild' THEN '0'::xid8 ELSE coalesce(c.xid, '0'::xid8) END,
           CASE WHEN $2 = 'rebuild' THEN 0 ELSE coalesce(c.seq, 0) END
      FROM (SELECT 1) AS one
      LEFT JOIN ops.checkpoints c ON c.consumer = $4
    RETURNING id";

/// Record a run starting. Call it holding the loader lock: any other run still
/// marked running lost its runner, and is marked interrupted.
pub async fn start(
    client: &impl GenericClient,
    trigger: Trigger,
    rebuild: bool,
) -> Result<RunId, tokio_postgres::Error> {
    let interrupted = client.execute(MARK_INTERRUPTED, &[]).await?;
    if interrupted > 0 {
        tracing::warn!(
            runs = interrupted,
            "marked run(s) whose process went away as interrupted"
        );
    }
    let kind = if rebuild { "rebuild" } else { "load" };
    let row = client
        .query_one(START, &[&trigger.as_str(), &kind, &runner(), &CONSUMER])
        .await?;
    Ok(RunId(row.try_get(0)?))
}

const FINISH: &str = "
    WITH c AS (
        SELECT coalesce((SELECT xid FROM ops.checkpoints WHERE consumer = $8), '0'::xid8) AS xid,
               coalesce((SELECT seq FROM ops.checkpoints WHERE consumer = $8), 0) AS seq
    )
    UPDATE ops.load_runs r
       SET status = $2, finished_at = clock_timestamp(),
           to_xid = c.xid, to_seq = c.seq,
           events_read = coalesce($3, (
               SELECT coalesce(sum(coalesce(e.bundle_size, 1)), 0)::bigint FROM event_log.events e
                WHERE (e.xid, e.seq) > (r.from_xid, r.from_seq)
                  AND (e.xid, e.seq) <= (c.xid, c.seq))),
           rows_written = coalesce($4, r.rows_written),
           rejected = $5,
           quality = $6,
           error = $7
      FROM c
     WHERE r.id = $1 AND r.status = 'running'";

/// Record how a run started with [`start`] ended.
pub async fn finish(
    client: &impl GenericClient,
    id: RunId,
    outcome: &Outcome<'_>,
) -> Result<(), tokio_postgres::Error> {
    let events = outcome.summary.map(|s| s.events as i64);
    let rows = outcome.summary.map(rows_json);
    let rejected = outcome.summary.map(|s| s.rejected as i64);
    let quality = outcome.quality.map(verdict);
    client
        .execute(
            FINISH,
            &[
                &id.0,
                &outcome.status.as_str(),
                &events,
                &rows,
                &rejected,
                &quality,
                &outcome.error,
                &CONSUMER,
            ],
        )
        .await?;
    Ok(())
}

/// Forget a run that turned out to have nothing to do (a follow run woken by events
/// not yet visible).
pub async fn discard(client: &impl GenericClient, id: RunId) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM ops.load_runs WHERE id = $1 AND status = 'running'",
            &[&id.0],
        )
        .await?;
    Ok(())
}

/// Did the follow run before `id` already say it waits for `xid`? (A follow run
/// that loaded nothing and waits for the same transaction adds no row.)
pub async fn already_waiting(
    client: &impl GenericClient,
    id: RunId,
    xid: crate::events::Xid8,
) -> Result<bool, tokio_postgres::Error> {
    let prefix = format!("waiting for transaction {xid} %");
    Ok(client
        .query_opt(
            "SELECT 1 FROM ops.load_runs
              WHERE id = (SELECT max(id) FROM ops.load_runs WHERE trigger = 'follow' AND id < $1)
                AND status = 'blocked' AND error LIKE $2",
            &[&id.0, &prefix],
        )
        .await?
        .is_some())
}

fn verdict(passed: bool) -> &'static str {
    if passed { "passed" } else { "failed" }
}

fn rows_json(s: &LoadSummary) -> serde_json::Value {
    serde_json::Value::Object(
        s.rows
            .iter()
            .map(|(t, n)| (t.clone(), serde_json::Value::from(*n)))
            .collect(),
    )
}

/// A row of `ops.load_runs`.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub trigger: String,
    pub kind: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub runner: String,
    pub events_read: Option<i64>,
    pub rows_written: serde_json::Value,
    pub rejected: Option<i64>,
    pub quality: Option<String>,
    pub error: Option<String>,
}

impl Run {
    pub fn rows_total(&self) -> i64 {
        self.rows_written
            .as_object()
            .map(|o| o.values().filter_map(serde_json::Value::as_i64).sum())
            .unwrap_or(0)
    }

    pub fn seconds(&self) -> Option<f64> {
        self.finished_at
            .map(|end| (end - self.started_at).num_milliseconds() as f64 / 1000.0)
    }

    /// One line: `#12 schedule succeeded 2024-05-10 02:00:03 (3.2 s, 1,234 events, ...)`.
    pub fn one_line(&self) -> String {
        let mut s = format!(
            "#{} {}{} {} {}",
            self.id,
            self.trigger,
            if self.kind == "rebuild" {
                " rebuild"
            } else {
                ""
            },
            self.status,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let mut parts = Vec::new();
        if let Some(secs) = self.seconds() {
            parts.push(format!("{secs:.1} s"));
        }
        if let Some(n) = self.events_read {
            parts.push(format!("{} events", thousands(n as u64)));
        }
        parts.push(format!("{} rows", thousands(self.rows_total() as u64)));
        if let Some(r) = self.rejected.filter(|r| *r > 0) {
            parts.push(format!("{} rejected", thousands(r as u64)));
        }
        if let Some(q) = &self.quality {
            parts.push(format!("quality {q}"));
        }
        let _ = write!(s, " ({})", parts.join(", "));
        if let Some(e) = &self.error {
            let _ = write!(s, ": {e}");
        }
        s
    }
}

const SELECT_RUNS: &str = "
    SELECT id, trigger, kind, status, started_at, finished_at, runner, events_read,
           rows_written, rejected, quality, error
      FROM ops.load_runs";

/// A row of [`SELECT_RUNS`]; an unexpected type or NULL is an error, not a panic.
fn run_from(r: &tokio_postgres::Row) -> Result<Run, tokio_postgres::Error> {
    Ok(Run {
        id: r.try_get(0)?,
        trigger: r.try_get(1)?,
        kind: r.try_get(2)?,
        status: r.try_get(3)?,
        started_at: r.try_get(4)?,
        finished_at: r.try_get(5)?,
        runner: r.try_get(6)?,
        events_read: r.try_get(7)?,
        rows_written: r.try_get(8)?,
        rejected: r.try_get(9)?,
        quality: r.try_get(10)?,
        error: r.try_get(11)?,
    })
}

/// The most recent runs, newest first; `trigger` filters.
pub async fn recent(
    client: &impl GenericClient,
    limit: i64,
    trigger: Option<Trigger>,
) -> Result<Vec<Run>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "{SELECT_RUNS} WHERE $2::text IS NULL OR trigger = $2
                  ORDER BY started_at DESC, id DESC LIMIT $1"
            ),
            &[&limit, &trigger.map(Trigger::as_str)],
        )
        .await?;
    rows.iter().map(run_from).collect()
}

/// The latest run, if any.
pub async fn last(client: &impl GenericClient) -> Result<Option<Run>, tokio_postgres::Error> {
    Ok(recent(client, 1, None).await?.into_iter().next())
}

/// When each trigger last succeeded (for the metrics after a restart).
pub async fn last_success(
    client: &impl GenericClient,
) -> Result<Vec<(String, DateTime<Utc>)>, tokio_postgres::Error> {
    client
        .query(
            "SELECT trigger, max(finished_at) FROM ops.load_runs
              WHERE status = 'succeeded' AND finished_at IS NOT NULL GROUP BY trigger",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// When the schedule last started a run (for `--catch-up`).
pub async fn last_scheduled_start(
    client: &impl GenericClient,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT max(started_at) FROM ops.load_runs WHERE trigger = 'schedule'",
            &[],
        )
        .await?
        .try_get(0)
}

/// `dvault runs`: a table of runs.
pub struct Listing<'a>(pub &'a [Run]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no load runs yet");
        }
        writeln!(
            f,
            "{:>6}  {:<19}  {:<8}  {:<11}  {:>9}  {:>10}  {:>11}  {:>8}  {:<7}  error",
            "run",
            "started (UTC)",
            "trigger",
            "status",
            "seconds",
            "events",
            "rows",
            "rejected",
            "quality"
        )?;
        for r in self.0 {
            let trigger = if r.kind == "rebuild" {
                "rebuild".to_string()
            } else {
                r.trigger.clone()
            };
            writeln!(
                f,
                "{:>6}  {:<19}  {:<8}  {:<11}  {:>9}  {:>10}  {:>11}  {:>8}  {:<7}  {}",
                r.id,
                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                trigger,
                r.status,
                r.seconds().map_or("-".into(), |s| format!("{s:.2}")),
                r.events_read.map_or("-".into(), |n| thousands(n as u64)),
                thousands(r.rows_total() as u64),
                r.rejected.map_or("-".into(), |n| thousands(n as u64)),
                r.quality.as_deref().unwrap_or("-"),
                r.error.as_deref().map(shorten).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

fn shorten(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 100 {
        format!("{}...", first.chars().take(100).collect::<String>())
    } else {
        first.to_string()
    }
}
