//! `dvault status` and `dvault rejected`: what is in the log and where the loader is.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::events::{self, Checkpoint};
use crate::human::thousands;
use crate::load::CONSUMER;

#[derive(Debug)]
pub struct Status {
    pub schema_version: Option<i32>,
    pub events_by_type: Vec<(String, i64)>,
    pub rejected_by_stage: Vec<(String, i64)>,
    pub checkpoint: Checkpoint,
    pub pending: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Committed events after the checkpoint that the loader cannot read yet, and
    /// the open transaction of this database they wait for.
    pub waiting: Option<events::horizon::Waiting>,
    /// The latest load run (daemon or manual).
    pub last_run: Option<crate::ops::runs::Run>,
    /// The latest quality gate.
    pub quality: Option<crate::ops::quality::Report>,
    /// Events held back per type: no mapping knows their type yet.
    pub held: Vec<(String, i64)>,
    /// The registered user mapping files (none: the built-in model).
    pub model_files: Vec<String>,
    /// Where each `dvault stream` group stands in each Kafka partition.
    pub streams: Vec<crate::stream::offsets::Lag>,
}

pub async fn collect(client: &impl GenericClient) -> Result<Status, tokio_postgres::Error> {
    let events_by_type = counts(
        client,
        "SELECT event_type, sum(coalesce(bundle_size, 1))::bigint FROM event_log.events GROUP BY 1 ORDER BY 1",
    )
    .await?;
    let rejected_by_stage = counts(
        client,
        "SELECT stage, count(*) FROM event_log.rejected GROUP BY 1 ORDER BY 1",
    )
    .await?;
    let checkpoint = events::load_checkpoint(client, CONSUMER).await?;
    let lag = events::lag(client, CONSUMER).await?;
    let waiting = events::horizon::waiting(client, CONSUMER).await?;
    let schema_version = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .try_get(0)?;
    // run history and quality results exist from schema version 5 on
    let has_runs = flag(client, "SELECT to_regclass('ops.load_runs') IS NOT NULL").await?;
    let (last_run, quality) = if has_runs {
        (
            crate::ops::runs::last(client).await?,
            crate::ops::quality::latest(client).await?,
        )
    } else {
        (None, None)
    };
    let has_model = flag(client, "SELECT to_regclass('ops.held_events') IS NOT NULL").await?;
    let (held, model_files) = if has_model {
        (
            counts(
                client,
                "SELECT event_type, count(*) FROM ops.held_events GROUP BY 1 ORDER BY 1",
            )
            .await?,
            client
                .query("SELECT name FROM ops.model_files ORDER BY name", &[])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let has_streams = flag(
        client,
        "SELECT to_regclass('ops.stream_offsets') IS NOT NULL",
    )
    .await?;
    let streams = match has_streams {
        true => crate::stream::offsets::lags(client).await?,
        false => Vec::new(),
    };
    Ok(Status {
        streams,
        held,
        model_files,
        last_run,
        quality,
        schema_version,
        events_by_type,
        rejected_by_stage,
        checkpoint,
        pending: lag.events,
        oldest_pending: lag.oldest_recorded_at,
        waiting,
    })
}

/// The `(name, count)` rows of a `GROUP BY 1 ORDER BY 1` query.
async fn counts(
    client: &impl GenericClient,
    sql: &str,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    client
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The one boolean a query answers (whether a table exists).
async fn flag(client: &impl GenericClient, sql: &str) -> Result<bool, tokio_postgres::Error> {
    client.query_one(sql, &[]).await?.try_get(0)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_log(f)?;
        self.fmt_loader(f)?;
        self.fmt_quality(f)?;
        if let Some(w) = &self.waiting {
            writeln!(f, "waiting:    {w}")?;
        }
        self.fmt_streams(f)
    }
}

impl Status {
    /// The log: schema, events per type, rejections, events held back, the model.
    fn fmt_log(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schema:     version {}",
            self.schema_version.unwrap_or(0)
        )?;
        let total: i64 = self.events_by_type.iter().map(|(_, n)| n).sum();
        writeln!(f, "events:     {}", thousands(total as u64))?;
        for (ty, n) in &self.events_by_type {
            writeln!(f, "  {ty:<28} {:>12}", thousands(*n as u64))?;
        }
        let rejected: i64 = self.rejected_by_stage.iter().map(|(_, n)| n).sum();
        write!(f, "rejected:   {}", thousands(rejected as u64))?;
        if rejected > 0 {
            let parts: Vec<String> = self
                .rejected_by_stage
                .iter()
                .map(|(stage, n)| format!("{} at {stage}", thousands(*n as u64)))
                .collect();
            write!(f, " ({}; see dvault rejected)", parts.join(", "))?;
        }
        writeln!(f)?;
        if !self.held.is_empty() {
            let total: i64 = self.held.iter().map(|(_, n)| n).sum();
            writeln!(
                f,
                "held back:  {} events of types no mapping knows (register a mapping: dvault model apply DIR; or dvault model skip TYPE)",
                thousands(total as u64)
            )?;
            for (ty, n) in &self.held {
                writeln!(f, "  {ty:<28} {:>12}", thousands(*n as u64))?;
            }
        }
        if self.model_files.is_empty() {
            writeln!(f, "model:      the built-in mappings")?;
        } else {
            writeln!(
                f,
                "model:      built-in mappings + {} (dvault model show)",
                self.model_files.join(", ")
            )?;
        }
        Ok(())
    }

    /// The loader: its checkpoint, the lag, the latest run.
    fn fmt_loader(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.checkpoint == Checkpoint::START {
            writeln!(f, "loader:     nothing loaded yet")?;
        } else {
            writeln!(
                f,
                "loader:     checkpoint xid {} seq {}",
                self.checkpoint.xid, self.checkpoint.seq
            )?;
        }
        write!(
            f,
            "lag:        {} events not loaded",
            thousands(self.pending as u64)
        )?;
        if let Some(oldest) = self.oldest_pending {
            let age = Utc::now() - oldest;
            write!(f, ", oldest recorded {} s ago", age.num_seconds())?;
        }
        writeln!(f)?;
        match &self.last_run {
            Some(run) => writeln!(f, "last run:   {}", run.one_line())?,
            None => writeln!(f, "last run:   none yet")?,
        }
        Ok(())
    }

    /// The latest quality gate, with the checks that failed.
    fn fmt_quality(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.quality {
            Some(q) => {
                let at = q
                    .checked_at
                    .map(|t| t.format(" at %Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                if q.passed() {
                    writeln!(f, "quality:    passed ({} checks{at})", q.results.len())?;
                } else {
                    writeln!(f, "quality:    FAILED{at}")?;
                    for r in q.failed() {
                        writeln!(
                            f,
                            "  {:<22} {}: {}",
                            r.check.as_str(),
                            r.measure(),
                            r.detail
                        )?;
                    }
                }
            }
            None => writeln!(f, "quality:    not checked yet (dvault check)")?,
        }
        Ok(())
    }

    /// Where each `dvault stream` group stands.
    fn fmt_streams(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.streams.is_empty() {
            let behind: i64 = self.streams.iter().map(|l| l.records()).sum();
            writeln!(
                f,
                "streams:    {} records not consumed (dvault stream, per group and partition, as of its last fetch)",
                thousands(behind as u64)
            )?;
            for l in &self.streams {
                writeln!(
                    f,
                    "  {:<28} {:>12} behind (offset {} of {}, {})",
                    format!("{} {}", l.group, l.at),
                    thousands(l.records() as u64),
                    l.next_offset,
                    l.high_watermark,
                    l.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
                )?;
            }
        }
        Ok(())
    }
}

/// The most recent rejections, as a readable listing.
pub async fn rejected(
    client: &impl GenericClient,
    limit: i64,
) -> Result<String, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, rejected_at, stage, file, line, event_seq, reason, raw
               FROM event_log.rejected ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("nothing rejected\n");
    }
    for r in rows {
        let at: DateTime<Utc> = r.try_get(1)?;
        let stage: String = r.try_get(2)?;
        let place = match (
            r.try_get::<_, Option<String>>(3)?,
            r.try_get::<_, Option<i64>>(4)?,
        ) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            (Some(file), None) => file,
            _ => match r.try_get::<_, Option<i64>>(5)? {
                Some(seq) => format!("event seq {seq}"),
                None => "-".into(),
            },
        };
        let reason: String = r.try_get(6)?;
        let raw: Option<String> = r.try_get(7)?;
        let _ = writeln!(
            out,
            "#{} {} [{stage}] {place}: {reason}",
            r.try_get::<_, i64>(0)?,
            at.format("%Y-%m-%d %H:%M:%S")
        );
        if let Some(raw) = raw {
            let shown: String = raw.chars().take(120).collect();
            let more = if raw.chars().count() > 120 { "..." } else { "" };
            let _ = writeln!(out, "    {shown}{more}");
        }
    }
    Ok(out)
}

/// `dvault model show`: the registered files, the user migrations, held-back events.
pub async fn model(client: &impl GenericClient) -> Result<String, tokio_postgres::Error> {
    let mut out = String::new();
    let files = client
        .query(
            "SELECT name, registered_at, length(body) FROM ops.model_files ORDER BY name",
            &[],
        )
        .await?;
    if files.is_empty() {
        out.push_str("mapping files: the built-in ones only\n");
    } else {
        out.push_str("mapping files (on top of the built-in ones):\n");
        for r in files {
            let at: DateTime<Utc> = r.try_get(1)?;
            let _ = writeln!(
                out,
                "  {:<32} registered {}, {} bytes",
                r.try_get::<_, String>(0)?,
                at.format("%Y-%m-%d %H:%M:%S"),
                r.try_get::<_, i32>(2)?
            );
        }
    }
    let migrations = client
        .query(
            "SELECT version, name, applied_at FROM ops.model_migrations ORDER BY version",
            &[],
        )
        .await?;
    if !migrations.is_empty() {
        out.push_str("user migrations:\n");
        for r in migrations {
            let at: DateTime<Utc> = r.try_get(2)?;
            let _ = writeln!(
                out,
                "  V{}__{:<28} applied {}",
                r.try_get::<_, i32>(0)?,
                r.try_get::<_, String>(1)?,
                at.format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
    let held = client
        .query(
            "SELECT event_type, count(*) FROM ops.held_events GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    for r in held {
        let _ = writeln!(
            out,
            "held back: {} events of type \"{}\" (no mapping)",
            thousands(r.try_get::<_, i64>(1)? as u64),
            r.try_get::<_, String>(0)?
        );
    }
    Ok(out)
}
