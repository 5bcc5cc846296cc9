//! Applying a projected batch in its transaction: new hub and link rows first (the
//! keys a satellite's parent needs), then each satellite's new versions planned
//! against the versions in force, then the quarantine and the held-back events.

use std::time::Instant;

use tokio_postgres::Transaction;

use super::known::KnownKeys;
use super::rows::Rows;
use super::{LoadError, LoadSummary, Reject, bulk, held, satellite, write};
use crate::db::Doing;
use crate::hash::KeySet;
use crate::mapping::{Mappings, Parent, PerLink};

/// What writing a batch's rows did, and the link keys it added (the business vault
/// counts new product views from them).
pub(super) async fn write_rows(
    tx: &Transaction<'_>,
    m: &Mappings,
    rows: &Rows,
    known: &mut KnownKeys,
    bulk: &mut bulk::Bulk,
) -> Result<(LoadSummary, PerLink<KeySet>), LoadError> {
    let mut summary = LoadSummary::default();
    // keys that did not exist before this batch: their satellites have no history
    let mut new_hubs = rows.hubs.map(|_| KeySet::default());
    for (h, hub_rows) in rows.hubs.with_ids() {
        let t = Instant::now();
        if known.hubs[h].is_none() {
            // past the key memory limit: lookups need the indexes
            bulk.restore(tx, &m.table(&m.hubs[h].name)).await?;
        }
        let written = write::hubs(tx, m, h, hub_rows, known.hubs[h].as_ref()).await?;
        known.add_hub(h, &written.keys, written.repeats);
        let fresh = written.keys;
        tracing::debug!(table = %m.hubs[h].name, ms = t.elapsed().as_millis() as u64, "hub");
        summary
            .rows
            .insert(m.hubs[h].name.clone(), fresh.len() as u64);
        new_hubs[h] = fresh;
    }
    let mut new_links = rows.links.map(|_| KeySet::default());
    for (l, link_rows) in rows.links.with_ids() {
        let t = Instant::now();
        if known.links[l].is_none() {
            bulk.restore(tx, &m.table(&m.links[l].name)).await?;
        }
        let written = write::links(tx, m, l, link_rows, known.links[l].as_ref(), &new_hubs).await?;
        known.add_link(l, &written.keys, written.repeats);
        let fresh = written.keys;
        tracing::debug!(table = %m.links[l].name, ms = t.elapsed().as_millis() as u64, "link");
        summary
            .rows
            .insert(m.links[l].name.clone(), fresh.len() as u64);
        new_links[l] = fresh;
    }
    for (s, staged) in rows.satellites.with_ids() {
        let sat = &m.satellites[s];
        let t = Instant::now();
        let fresh = match sat.parent {
            Parent::Hub(h) => &new_hubs[h],
            Parent::Link(l) => &new_links[l],
        };
        let mut since = satellite::earliest_per_parent(staged);
        since.retain(|(parent, _)| !fresh.contains(parent));
        if !since.is_empty() {
            // predecessors are read through the satellite's key
            bulk.restore(tx, &m.table(&sat.name)).await?;
        }
        let existing = write::existing_versions(tx, m, sat, &since)
            .await
            .doing("reading satellite versions")?;
        let t_existing = t.elapsed().as_millis() as u64;
        let versions = satellite::plan(staged, &existing);
        let t_plan = t.elapsed().as_millis() as u64;
        let n = write::satellite(tx, m, sat, &versions).await?;
        tracing::debug!(table = %sat.name, existing = t_existing, plan = t_plan, ms = t.elapsed().as_millis() as u64, "satellite");
        summary.rows.insert(sat.name.clone(), n);
    }
    Ok((summary, new_links))
}

pub(super) async fn store_rejects(
    tx: &Transaction<'_>,
    rejects: &[Reject],
) -> Result<u64, LoadError> {
    if rejects.is_empty() {
        return Ok(0);
    }
    let (held, rejects): (Vec<&Reject>, Vec<&Reject>) = rejects.iter().partition(|r| r.held);
    held::hold(tx, &held).await?;
    if rejects.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = rejects.iter().map(|r| r.seq).collect();
    let types: Vec<&str> = rejects.iter().map(|r| r.event_type.as_str()).collect();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
    let raws: Vec<&str> = rejects.iter().map(|r| r.payload.as_str()).collect();
    tx.execute(
        "INSERT INTO event_log.rejected (stage, event_seq, event_type, reason, raw)
         SELECT 'load', seq, ty, reason, raw
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS r(seq, ty, reason, raw)
         ON CONFLICT (event_seq) WHERE stage = 'load' DO NOTHING",
        &[&seqs, &types, &reasons, &raws],
    )
    .await
    .doing("quarantining rejected events")?;
    Ok(rejects.len() as u64)
}
