//! One `ANALYZE` policy for every run (`dvault load`, `dvault rebuild`, the daemon's
//! cycles): after a run, analyze each table of the vault, the business vault and the
//! log of which more than a tenth of the rows changed since its last `ANALYZE` (the
//! server's own count, `n_mod_since_analyze`, and autovacuum's rule, applied at once
//! instead of within the next minute), or that was never analyzed; and the
//! materialized views the run refreshed. Before a run reads the log, the log by the
//! same rule ([`log_before_run`]). After a first load of millions of rows the
//! planner would otherwise believe the vault empty until autovacuum came by.

use std::time::Instant;

use tokio_postgres::GenericClient;

use crate::db::Doing;
use crate::db::quote_ident as ident;

/// The tables of `$1` (schemas) past the rule, qualified and quoted.
const CHANGED: &str = "
    SELECT format('%I.%I', s.schemaname, s.relname)
      FROM pg_stat_user_tables s
      JOIN pg_class c ON c.oid = s.relid
     WHERE s.schemaname = ANY($1)
       AND (c.reltuples < 0 OR s.n_mod_since_analyze > 0.1 * c.reltuples)
     ORDER BY 1";

/// `ANALYZE` what the run changed in the vault (`vault_schema`), the business vault
/// and the log, and the materialized views it refreshed (`schema.name`). With `url`,
/// half of the tables are analyzed on a second connection to it meanwhile (a table's
/// `ANALYZE` is one backend's work: two use both cores; 0.89 s → 0.5 s after the
/// demo's first load). Returns what it analyzed.
pub async fn after_run(
    client: &impl GenericClient,
    url: Option<&str>,
    vault_schema: &str,
    refreshed: &[String],
) -> Result<Vec<String>, crate::db::Failed> {
    let tables = changed(client, vault_schema, refreshed)
        .await
        .doing("finding the tables the run changed")?;
    if tables.is_empty() {
        return Ok(tables);
    }
    let started = Instant::now();
    let second = match url {
        Some(url) if tables.len() > 1 => crate::db::connect(url).await.ok(),
        _ => None,
    };
    // every other table from `first`: both halves get big and small tables alike
    let every_other = |first: usize| {
        let half: Vec<&str> = tables
            .iter()
            .skip(first)
            .step_by(2)
            .map(String::as_str)
            .collect();
        format!("ANALYZE {}", half.join(", "))
    };
    match &second {
        Some(other) => {
            let (mine, theirs) = (every_other(0), every_other(1));
            let (a, b) = tokio::join!(client.batch_execute(&mine), other.batch_execute(&theirs));
            a.and(b)
        }
        None => {
            client
                .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
                .await
        }
    }
    .doing("analyzing the tables the run changed")?;
    tracing::info!(
        tables = tables.len(),
        connections = if second.is_some() { 2 } else { 1 },
        ms = started.elapsed().as_millis() as u64,
        "analyzed the tables the run changed"
    );
    Ok(tables)
}

/// The log, qualified as [`CHANGED`] names it.
const LOG: &str = "event_log.events";

/// Before a run reads the log: `ANALYZE` it when it is past the same rule, so that
/// the run's reads are planned on what the log holds. After a bulk ingest into an
/// empty log (the demo's 307,490 events) the planner knew nothing of it and read every
/// batch with a bitmap scan and a sort, spilled to disk, of every event after the
/// checkpoint, on three processes: 190 ms a batch, where the index in order takes 30
/// ms (`EXPLAIN ANALYZE`; the `ANALYZE` itself 124 ms). Only the log's owner may
/// analyze it (the least-privilege loader of docs/security.md leaves it to autovacuum).
/// Returns whether it analyzed.
pub async fn log_before_run(client: &impl GenericClient) -> Result<bool, crate::db::Failed> {
    let stale = past_the_rule(client, &["event_log"])
        .await
        .doing("reading the log's statistics")?
        .iter()
        .any(|t| t == LOG)
        && crate::db::owns(client, LOG)
            .await
            .doing("checking who owns the log")?;
    if stale {
        let started = Instant::now();
        client
            .batch_execute(&format!("ANALYZE {LOG}"))
            .await
            .doing("analyzing the log before reading it")?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "analyzed the log before reading it"
        );
    }
    Ok(stale)
}

/// The tables [`after_run`] analyzes.
async fn changed(
    client: &impl GenericClient,
    vault_schema: &str,
    refreshed: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut tables = past_the_rule(client, &[vault_schema, "business_vault", "event_log"]).await?;
    for view in refreshed {
        if let Some((schema, name)) = view.split_once('.') {
            tables.push(format!("{}.{}", ident(schema), ident(name)));
        }
    }
    Ok(tables)
}

/// The tables of `schemas` past the rule ([`CHANGED`]).
async fn past_the_rule(
    client: &impl GenericClient,
    schemas: &[&str],
) -> Result<Vec<String>, tokio_postgres::Error> {
    // this connection's own counts reach the statistics views only when it goes idle
    // after a statement, at most once a second, unless asked to
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await?;
    client
        .query(CHANGED, &[&schemas])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}
