//! Quality gates: `dvault check`, and a step of every nightly run.
//!
//! Five checks, thresholds in [`config`]: completeness, uniqueness and validity look
//! at the events loaded since the previous gate ([`events`], streamed from the log,
//! so a gate costs in proportion to the new events), referential integrity and
//! freshness look at the vault and the log as a whole ([`vault`]). A gate records one
//! row per check in `ops.quality_results` and moves the `quality_gate` checkpoint to
//! the loader's, in one transaction: every loaded event is gated once. A failed gate
//! changes nothing in the vault.

pub mod config;
pub mod events;
pub mod vault;

use std::fmt;

use chrono::{DateTime, Utc};
use futures_util::{TryStreamExt, pin_mut};
use serde_json::Value as Json;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};

pub use config::QualityConfig;

use crate::db::Doing;
use crate::events::{Checkpoint, PayloadRef, RawJson, bundle, load_checkpoint, save_checkpoint};
use crate::load::CONSUMER;
use crate::mapping::Mappings;
use events::{EventChecks, Observed};

/// The checkpoint consumer of the quality gate: events up to it have been gated.
pub const GATE_CONSUMER: &str = "quality_gate";

/// The checks, in the order they run and print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Completeness,
    Uniqueness,
    Validity,
    ReferentialIntegrity,
    Freshness,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Completeness,
        Check::Uniqueness,
        Check::Validity,
        Check::ReferentialIntegrity,
        Check::Freshness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Completeness => "completeness",
            Check::Uniqueness => "uniqueness",
            Check::Validity => "validity",
            Check::ReferentialIntegrity => "referential_integrity",
            Check::Freshness => "freshness",
        }
    }

    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// How `measured` and the threshold read.
    fn show(self, v: f64) -> String {
        match self {
            Check::Completeness | Check::Uniqueness | Check::Validity => percent(v),
            Check::ReferentialIntegrity => format!("{v:.0} orphan(s)"),
            Check::Freshness => format!("{v:.1} h"),
        }
    }

    fn comparison(self) -> &'static str {
        match self {
            Check::Completeness | Check::Uniqueness | Check::Validity => ">=",
            Check::ReferentialIntegrity | Check::Freshness => "<=",
        }
    }
}

/// `0.953` → `95.3%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub check: Check,
    pub passed: bool,
    /// Worst ratio, orphan count or age in hours; `None` when there was nothing to
    /// measure.
    pub measured: Option<f64>,
    pub threshold: f64,
    /// The subject with the worst measure.
    pub worst: Option<String>,
    pub examined: i64,
    pub failing: i64,
    pub scope_events: i64,
    pub detail: String,
    pub breakdown: Json,
}

impl CheckResult {
    /// A passing result with nothing measured yet.
    pub fn new(check: Check, threshold: f64) -> CheckResult {
        CheckResult {
            check,
            passed: true,
            measured: None,
            threshold,
            worst: None,
            examined: 0,
            failing: 0,
            scope_events: 0,
            detail: String::new(),
            breakdown: Json::Object(Default::default()),
        }
    }

    /// `validity 80.0% >= 90.0%` style: what was measured against what.
    pub fn measure(&self) -> String {
        let measured = self
            .measured
            .map_or("-".to_string(), |m| self.check.show(m));
        format!(
            "{measured} {} {}",
            self.check.comparison(),
            self.check.show(self.threshold)
        )
    }
}

/// Which events the event checks look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Loaded since the previous gate (the default, and the nightly gate's).
    SinceLastGate,
    /// Every loaded event.
    All,
}

/// What a gate found.
#[derive(Debug, Clone)]
pub struct Report {
    pub results: Vec<CheckResult>,
    pub scope_events: i64,
    pub checked_at: Option<DateTime<Utc>>,
    pub run_id: Option<i64>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| !r.passed)
    }

    /// One line for a run's error text and logs.
    pub fn verdict(&self) -> String {
        let failed: Vec<String> = self
            .failed()
            .map(|r| match &r.worst {
                Some(w) => format!("{} ({w}: {})", r.check.as_str(), r.measure()),
                None => format!("{} ({})", r.check.as_str(), r.measure()),
            })
            .collect();
        if failed.is_empty() {
            format!("quality gate passed ({} checks)", self.results.len())
        } else {
            format!("quality gate failed: {}", failed.join("; "))
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "quality gate over {} event(s) loaded since the previous gate, and the whole vault:",
            crate::human::thousands(self.scope_events.max(0) as u64)
        )?;
        for r in &self.results {
            writeln!(
                f,
                "  {:<22} {:<7} {}",
                r.check.as_str(),
                if r.passed { "passed" } else { "FAILED" },
                r.measure()
            )?;
            if !r.detail.is_empty() {
                writeln!(f, "  {:<22} {:<7} {}", "", "", r.detail)?;
            }
        }
        writeln!(f, "{}", self.verdict())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("{0}")]
    Config(String),
    #[error("database error while {doing}: {}", crate::db::Shown(source))]
    Db {
        doing: &'static str,
        source: tokio_postgres::Error,
    },
}

impl QualityError {
    pub fn db_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            QualityError::Db { source, .. } => Some(source),
            QualityError::Config(_) => None,
        }
    }
}

impl From<crate::db::Failed> for QualityError {
    fn from(crate::db::Failed { doing, source }: crate::db::Failed) -> Self {
        QualityError::Db { doing, source }
    }
}

const SCOPE: &str = "
    SELECT event_type, record_source, recorded_at, payload, bundle
      FROM event_log.events
     WHERE (xid, seq) > ($1, $2) AND (xid, seq) <= ($3, $4)
     ORDER BY xid, seq";

/// Run every enabled check; with `record`, store the results (tied to `run_id`) and
/// move the gate's checkpoint, in one transaction.
pub async fn run_gate(
    client: &mut Client,
    config: &QualityConfig,
    mappings: &Mappings,
    scope: Scope,
    record: bool,
    run_id: Option<i64>,
) -> Result<Report, QualityError> {
    config.check(mappings).map_err(QualityError::Config)?;
    let tx = client
        .transaction()
        .await
        .doing("starting the quality gate")?;
    let to = load_checkpoint(&tx, CONSUMER)
        .await
        .doing("reading the loader's checkpoint")?;
    let gated = load_checkpoint(&tx, GATE_CONSUMER)
        .await
        .doing("reading the gate's checkpoint")?;
    // after a rebuild the loader starts again from the beginning: what it reloads was
    // gated already
    let from = match scope {
        Scope::All => Checkpoint::START,
        Scope::SinceLastGate => gated.min(to),
    };
    let mut checks = EventChecks::new(config, mappings);
    observe_events(&tx, from, to, &mut checks).await?;
    let mut results = checks.results();
    let scope_events = checks.events as i64;
    if config.referential.enabled {
        let mut r = vault::referential(&tx, &config.referential, mappings).await?;
        r.scope_events = scope_events;
        results.push(r);
    }
    if config.freshness.enabled {
        let mut r = vault::freshness(&tx, &config.freshness).await?;
        r.scope_events = scope_events;
        results.push(r);
    }
    let mut report = Report {
        results,
        scope_events,
        checked_at: None,
        run_id,
    };
    if record {
        report.checked_at = Some(record_results(&tx, &report, gated.max(to)).await?);
    }
    tx.commit().await.doing("committing the quality results")?;
    Ok(report)
}

/// Feed `checks` every event of the log after `from` up to `to`, a bundle's events
/// one by one.
async fn observe_events(
    tx: &Transaction<'_>,
    from: Checkpoint,
    to: Checkpoint,
    checks: &mut EventChecks<'_>,
) -> Result<(), QualityError> {
    let params: [&(dyn ToSql + Sync); 4] = [&from.xid, &from.seq, &to.xid, &to.seq];
    let rows = tx
        .query_raw(SCOPE, params.iter().copied())
        .await
        .doing("reading the events to check")?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await.doing("reading the events to check")? {
        const DOING: &str = "reading the events to check";
        let event_type = row.try_get(0).doing(DOING)?;
        let source = row.try_get(1).doing(DOING)?;
        let recorded_at = row.try_get(2).doing(DOING)?;
        let mut observe = |payload| {
            checks.observe(Observed {
                event_type,
                source,
                recorded_at,
                payload,
            })
        };
        match row
            .try_get::<_, Option<bundle::Lines<'_>>>(4)
            .doing(DOING)?
        {
            // a bundle: each of its events
            Some(bundle::Lines(Ok(bundle))) => bundle.payloads().for_each(observe),
            // a damaged bundle: the loader quarantines it
            Some(bundle::Lines(Err(_))) => {}
            None => observe(PayloadRef::Json(
                row.try_get::<_, RawJson<'_>>(3).doing(DOING)?.0,
            )),
        }
    }
    Ok(())
}

/// Store the report's results and move the gate's checkpoint to `gated`; the time
/// of the gate (the transaction's).
async fn record_results(
    tx: &Transaction<'_>,
    report: &Report,
    gated: Checkpoint,
) -> Result<DateTime<Utc>, QualityError> {
    let at: DateTime<Utc> = tx
        .query_one("SELECT now()", &[])
        .await
        .doing("reading the time")?
        .try_get(0)
        .doing("reading the time")?;
    for r in &report.results {
        store(tx, report.run_id, r).await?;
    }
    save_checkpoint(tx, GATE_CONSUMER, gated)
        .await
        .doing("moving the gate's checkpoint")?;
    Ok(at)
}

async fn store(
    client: &impl GenericClient,
    run_id: Option<i64>,
    r: &CheckResult,
) -> Result<(), QualityError> {
    client
        .execute(
            "INSERT INTO ops.quality_results
                    (run_id, check_name, passed, measured, threshold, worst, examined,
                     failing, scope_events, detail, breakdown)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &run_id,
                &r.check.as_str(),
                &r.passed,
                &r.measured,
                &r.threshold,
                &r.worst,
                &r.examined,
                &r.failing,
                &r.scope_events,
                &r.detail,
                &r.breakdown,
            ],
        )
        .await
        .doing("recording a quality result")?;
    Ok(())
}

/// The latest gate's results, if any gate ran (for `dvault status` and the metrics).
pub async fn latest(client: &impl GenericClient) -> Result<Option<Report>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT check_name, passed, measured, threshold, worst, examined, failing,
                    scope_events, detail, breakdown, checked_at, run_id
               FROM ops.quality_results
              WHERE checked_at = (SELECT max(checked_at) FROM ops.quality_results)
              ORDER BY id",
            &[],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let checked_at: DateTime<Utc> = first.try_get(10)?;
    let run_id: Option<i64> = first.try_get(11)?;
    let mut results = Vec::with_capacity(rows.len());
    for r in &rows {
        // (a check this build does not know, recorded by a newer one, is left out)
        let Some(check) = Check::from_name(r.try_get(0)?) else {
            continue;
        };
        results.push(CheckResult {
            check,
            passed: r.try_get(1)?,
            measured: r.try_get(2)?,
            threshold: r.try_get(3)?,
            worst: r.try_get(4)?,
            examined: r.try_get(5)?,
            failing: r.try_get(6)?,
            scope_events: r.try_get(7)?,
            detail: r.try_get(8)?,
            breakdown: r.try_get(9)?,
        });
    }
    Ok(Some(Report {
        scope_events: results.first().map_or(0, |r| r.scope_events),
        results,
        checked_at: Some(checked_at),
        run_id,
    }))
}
