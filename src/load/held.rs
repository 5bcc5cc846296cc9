//! Events of a type no mapping knows are held back, not quarantined: the loader
//! moves past them (recording them in `ops.held_events`) and loads them once the
//! registered model maps their type. A forgotten `--mappings` flag can then never
//! throw a whole event type into quarantine.

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::{Client, Transaction};

use super::known::KnownKeys;
use super::{LoadError, LoadSummary, Loader, Reject, bulk, project};
use crate::db::Doing;
use crate::events::{StoredEvent, bundle};

/// Record held-back events (in the batch's transaction).
pub(super) async fn hold(tx: &Transaction<'_>, held: &[&Reject]) -> Result<(), LoadError> {
    if held.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = held.iter().map(|r| r.seq).collect();
    let types: Vec<&str> = held.iter().map(|r| r.event_type.as_str()).collect();
    tx.execute(
        "INSERT INTO ops.held_events (event_seq, event_type)
         SELECT * FROM unnest($1::bigint[], $2::text[])
         ON CONFLICT (event_seq) DO NOTHING",
        &[&seqs, &types],
    )
    .await
    .doing("holding back events of unmapped types")?;
    Ok(())
}

/// Held-back events now mapped, with the columns [`bundle::read_rows`] reads, up to
/// the row that holds the `$2`th event. A bundle's events are all held; its row is
/// found by its first event's `seq` (the row's own) and released whole.
const HELD_MAPPED: &str = "
    SELECT seq, xid, event_id, event_type, record_source, occurred_at, recorded_at, payload, bundle,
           bundle_size
      FROM (SELECT x.*, coalesce(x.bundle_size, 1) AS n,
                   sum(coalesce(x.bundle_size, 1)) OVER (ORDER BY x.xid, x.seq ROWS UNBOUNDED PRECEDING) AS upto
              FROM (SELECT e.seq, e.xid, e.event_id, e.event_type, e.record_source, e.occurred_at,
                           e.recorded_at, e.payload, e.bundle, e.bundle_size
                      FROM ops.held_events h
                      JOIN event_log.events e ON e.seq = h.event_seq
                     WHERE h.event_type = ANY($1)
                     ORDER BY e.xid, e.seq
                     LIMIT $2
                       FOR UPDATE OF h) x) w
     WHERE upto - n < $2
     ORDER BY xid, seq";

impl Loader {
    /// Load the held-back events whose type the model now maps, in log order, a
    /// batch per transaction (each also takes them off the held list); forget the
    /// ones of types the user skips.
    pub(super) async fn release_held(&self, client: &mut Client) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let mut total = LoadSummary::default();
        let skipped: Vec<&str> = self.mappings.skipped.iter().map(String::as_str).collect();
        if !skipped.is_empty() {
            client
                .execute(
                    "DELETE FROM ops.held_events WHERE event_type = ANY($1)",
                    &[&skipped],
                )
                .await
                .doing("forgetting held-back events of skipped types")?;
        }
        let mapped: Vec<&str> = self.mappings.events.keys().map(String::as_str).collect();
        let mut known = KnownKeys::none(&self.mappings);
        loop {
            let mut tx = client.transaction().await.doing("starting a batch")?;
            let rows = tx
                .query(HELD_MAPPED, &[&mapped, &self.batch_size])
                .await
                .doing("reading held-back events")?;
            let log: Vec<StoredEvent> =
                bundle::read_rows(&rows).doing("reading held-back events")?;
            if log.is_empty() {
                break;
            }
            let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
            let (rows, rejects) = project(&self.mappings, &log);
            let mut summary = match self
                .write_projected(
                    &tx,
                    None,
                    &rows,
                    &rejects,
                    &mut known,
                    &mut bulk::Bulk::default(),
                )
                .await
            {
                Ok(s) => s,
                Err(e) if e.is_data() => {
                    tx.rollback()
                        .await
                        .doing("rolling back the refused batch")?;
                    tx = client.transaction().await.doing("starting a batch")?;
                    let log = Arc::new(log);
                    self.write_isolating(&mut tx, &log, &mut known, &mut bulk::Bulk::default())
                        .await?
                }
                Err(e) => return Err(e),
            };
            tx.execute(
                "DELETE FROM ops.held_events WHERE event_seq = ANY($1)",
                &[&seqs],
            )
            .await
            .doing("releasing held-back events")?;
            tx.commit().await.doing("committing the batch")?;
            summary.events = seqs.len() as u64;
            summary.batches = 1;
            tracing::info!(
                events = summary.events,
                rows = summary.rows_total(),
                "held-back events loaded: their type is mapped now"
            );
            total.add(&summary);
            if (seqs.len() as i64) < self.batch_size {
                break;
            }
        }
        total.elapsed = started.elapsed();
        Ok(total)
    }
}
