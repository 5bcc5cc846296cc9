//! Applying a projected batch in its transaction: new hub and link rows first (the
//! keys a satellite's parent needs), then each satellite's new versions planned
//! against the versions in force, then the quarantine and the held-back events.
//!
//! What a batch must look up (which of its keys a table holds, the satellite
//! versions it follows) depends only on the vault before the batch, never on what
//! the batch writes: so the lookups run as one sequence and the writes as another,
//! each table's `COPY` as soon as its lookup is done. On a connection of their own
//! (the loader's read-ahead connection, which sees every batch committed before
//! this one and nothing else, since the loader lock keeps other writers out), the
//! lookups of one table run on the server while the rows of the one before are
//! written: two backends, two cores.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio_postgres::{Client, GenericClient, Transaction};

use super::known::KnownKeys;
use super::rows::{HubRow, LinkRow, Rows};
use super::satellite::{self, Existing};
use super::write::{self, CopyTo, Fresh};
use super::{LoadError, LoadSummary, Reject, bulk, held};
use crate::db::Doing;
use crate::hash::{Hash, KeySet};
use crate::mapping::{HubId, LinkId, Mappings, Parent, PerHub, PerLink, PerSat, SatId};

/// What a batch's lookups found for one table, in the order the writes need them.
enum Found<'a> {
    Hub(HubId, Fresh<'a, HubRow>),
    Link(LinkId, Fresh<'a, LinkRow>),
    /// The versions a satellite's staged rows follow.
    Sat(SatId, Vec<Existing>),
}

/// What writing a batch's rows did, and the link keys it added (the business vault
/// counts new product views from them).
///
/// `lookups`: where to look keys and versions up, when not in the batch's own
/// transaction: a connection that sees the vault as it was before the batch (see
/// the module's comment). Runs on the bulk path look up in their transaction, which
/// alone sees their uncommitted batches.
pub(super) async fn write_rows(
    tx: &Transaction<'_>,
    lookups: Option<&Client>,
    m: &Mappings,
    rows: &Rows,
    known: &mut KnownKeys,
    bulk: &mut bulk::Bulk,
) -> Result<(LoadSummary, PerLink<KeySet>), LoadError> {
    let (found, mut next) = mpsc::unbounded_channel();
    // a bulk run's COPYs run beside the writer (see `super::outbox`)
    let outbox = bulk.outbox();
    let outbox = outbox.as_deref();
    let to = outbox.map_or(CopyTo::Now(tx), CopyTo::Outbox);
    let remembered: &KnownKeys = known;
    let frozen = bulk.frozen();
    let freeze = |name: &str| frozen.iter().any(|t| t == name);
    // a table without indexes takes its rows in the order they were projected, read
    // front to back while they are encoded: in key order, each row was a cache miss
    // (`perf`: 9% of the writer's time in the copy of the keys at TPC-H SF1)
    let bare = bulk.bare();
    let look = async {
        match lookups {
            Some(reader) if bulk.is_empty() => {
                look_up(reader, tx, m, rows, remembered, bulk, found).await
            }
            _ => look_up(tx, tx, m, rows, remembered, bulk, found).await,
        }
    };
    let write = async {
        let mut summary = LoadSummary::default();
        let mut new_hubs = Vec::new();
        let mut new_links = Vec::new();
        while let Some(found) = next.recv().await {
            let t = Instant::now();
            match found {
                Found::Hub(h, fresh) => {
                    let name = &m.hubs[h].name;
                    write::hubs(to, m, h, &fresh.rows, freeze(name)).await?;
                    tracing::debug!(table = %name, ms = t.elapsed().as_millis() as u64, "hub");
                    summary.rows.insert(name.clone(), fresh.rows.len() as u64);
                    new_hubs.push((h, fresh.keys(|r| r.hk), fresh.repeats, fresh.mostly_known()));
                }
                Found::Link(l, fresh) => {
                    let name = &m.links[l].name;
                    write::links(to, m, l, &fresh.rows, freeze(name)).await?;
                    tracing::debug!(table = %name, ms = t.elapsed().as_millis() as u64, "link");
                    summary.rows.insert(name.clone(), fresh.rows.len() as u64);
                    new_links.push((l, fresh.keys(|r| r.hk), fresh.repeats, fresh.mostly_known()));
                }
                Found::Sat(s, existing) => {
                    let sat = &m.satellites[s];
                    let mut versions = satellite::plan(&rows.satellites[s], &existing);
                    if bare.contains(&sat.name) {
                        versions.sort_unstable_by_key(|v| v.row);
                    }
                    let n = write::satellite(to, m, sat, &versions, freeze(&sat.name)).await?;
                    tracing::debug!(table = %sat.name, ms = t.elapsed().as_millis() as u64, "satellite");
                    summary.rows.insert(sat.name.clone(), n);
                }
            }
        }
        Ok::<_, LoadError>((summary, new_hubs, new_links))
    };
    let (looked, written) = tokio::join!(look, write);
    // a failed write ends the lookups (they have nowhere to go): its error first
    let (summary, new_hubs, written_links) = written?;
    let new_links = looked?;
    // the key memory learns the batch's keys once it is written: its lookups read
    // it as it was before the batch, which is all they need (keys repeated within
    // the batch are found by the batch itself)
    for (h, keys, repeats, mostly_known) in new_hubs {
        known.add_hub(h, &keys, repeats);
        if mostly_known.is_some() {
            known.mostly_known_hubs[h] = mostly_known;
        }
    }
    for (l, keys, repeats, mostly_known) in written_links {
        known.add_link(l, &keys, repeats);
        if mostly_known.is_some() {
            known.mostly_known_links[l] = mostly_known;
        }
    }
    Ok((summary, new_links))
}

/// The lookups of a batch, table by table in the order the writes go (hubs, links,
/// satellites), each sent to the writes as soon as it is done; returns the keys
/// new to each link table. `tx` is the batch's transaction, for the bulk path's
/// index builds: a table the run must look into gets its indexes first.
///
/// A hub's or link's satellites are read before its keys are probed: the versions
/// in force are needed anyway, and a key with a version is in its hub or link (the
/// loader writes a satellite row only with its parent's row), so only the others
/// are probed. A daily snapshot of customers, most of them unchanged, then costs
/// one lookup per customer instead of two. A new key pays a version lookup that
/// finds nothing, though, so a table most of whose keys were new in the run's last
/// batch (new orders, their line items) is probed first, and only the keys found
/// are asked for versions: TPC-H SF1's day 2 read versions of 40,175 new line items
/// for 172 ms before.
async fn look_up<'a>(
    lookups: &impl GenericClient,
    tx: &Transaction<'_>,
    m: &Mappings,
    rows: &'a Rows,
    known: &KnownKeys,
    bulk: &mut bulk::Bulk,
    found: mpsc::UnboundedSender<Found<'a>>,
) -> Result<PerLink<KeySet>, LoadError> {
    // keys that did not exist before this batch: their satellites have no history
    let mut new_hubs: PerHub<KeySet> = rows.hubs.map(|_| KeySet::default());
    let mut new_links: PerLink<KeySet> = rows.links.map(|_| KeySet::default());
    let mut versions: PerSat<Vec<Existing>> = rows.satellites.map(|_| Vec::new());
    for (h, hub_rows) in rows.hubs.with_ids() {
        let remembered = known.hubs[h].as_ref();
        if remembered.is_none() {
            // past the key memory limit: lookups need the indexes
            bulk.restore(tx, &m.table(&m.hubs[h].name)).await?;
        }
        let may_exist = |k: &Hash| remembered.is_none_or(|r| r.contains(k));
        // in the order the run's last batch suggests (see above)
        let versions_first = known.mostly_known_hubs[h].unwrap_or(true);
        let mut present = KeySet::default();
        if versions_first {
            let parent = Parent::Hub(h);
            present = read_versions(
                lookups,
                tx,
                m,
                rows,
                bulk,
                parent,
                &may_exist,
                &mut versions,
            )
            .await?;
        }
        if remembered.is_none_or(|r| !r.trusted) {
            // keys are looked up in the table
            bulk.settle().await?;
        }
        let fresh = write::new_hub_rows(lookups, m, h, hub_rows, remembered, &present).await?;
        if !versions_first {
            let new = fresh.keys(|r| r.hk);
            let may_exist = |k: &Hash| !new.contains(k) && may_exist(k);
            let parent = Parent::Hub(h);
            read_versions(lookups, tx, m, rows, bulk, parent, may_exist, &mut versions).await?;
        }
        new_hubs[h] = fresh.keys(|r| r.hk);
        if found.send(Found::Hub(h, fresh)).is_err() {
            // the writes failed; their error is the batch's
            return Ok(new_links);
        }
    }
    for (l, link_rows) in rows.links.with_ids() {
        let remembered = known.links[l].as_ref();
        if remembered.is_none() {
            bulk.restore(tx, &m.table(&m.links[l].name)).await?;
        }
        let surely_new: KeySet = link_rows
            .iter()
            .filter(|r| write::names_a_new_hub_key(m, l, &r.hub_keys, &new_hubs))
            .map(|r| r.hk)
            .collect();
        let may_exist =
            |k: &Hash| !surely_new.contains(k) && remembered.is_none_or(|r| r.contains(k));
        let versions_first = known.mostly_known_links[l].unwrap_or(true);
        let mut present = KeySet::default();
        if versions_first {
            let parent = Parent::Link(l);
            present = read_versions(
                lookups,
                tx,
                m,
                rows,
                bulk,
                parent,
                &may_exist,
                &mut versions,
            )
            .await?;
        }
        if remembered.is_none_or(|r| !r.trusted) {
            bulk.settle().await?;
        }
        let fresh =
            write::new_link_rows(lookups, m, l, link_rows, remembered, &surely_new, &present)
                .await?;
        if !versions_first {
            let new = fresh.keys(|r| r.hk);
            let may_exist = |k: &Hash| !new.contains(k) && may_exist(k);
            let parent = Parent::Link(l);
            read_versions(lookups, tx, m, rows, bulk, parent, may_exist, &mut versions).await?;
        }
        new_links[l] = fresh.keys(|r| r.hk);
        if found.send(Found::Link(l, fresh)).is_err() {
            return Ok(new_links);
        }
    }
    for (s, existing) in versions.into_with_ids() {
        if found.send(Found::Sat(s, existing)).is_err() {
            break;
        }
    }
    Ok(new_links)
}

/// Read the versions in force of the satellites of `parent` for the batch's parents
/// that `may_exist`, into `versions`; returns the parents that have one.
#[allow(clippy::too_many_arguments)]
async fn read_versions(
    lookups: &impl GenericClient,
    tx: &Transaction<'_>,
    m: &Mappings,
    rows: &Rows,
    bulk: &mut bulk::Bulk,
    parent: Parent,
    may_exist: impl Fn(&Hash) -> bool,
    versions: &mut PerSat<Vec<Existing>>,
) -> Result<KeySet, LoadError> {
    let mut present = KeySet::default();
    for (s, staged) in rows.satellites.with_ids() {
        let sat = &m.satellites[s];
        if sat.parent != parent || staged.is_empty() {
            continue;
        }
        let t = Instant::now();
        let mut since = satellite::earliest_per_parent(staged);
        since.retain(|(parent, _)| may_exist(parent));
        if since.is_empty() {
            continue;
        }
        // predecessors are read through the satellite's key
        bulk.restore(tx, &m.table(&sat.name)).await?;
        let existing = write::existing_versions(lookups, m, sat, &since)
            .await
            .doing("reading satellite versions")?;
        tracing::debug!(table = %sat.name, parents = since.len(), found = existing.len(), ms = t.elapsed().as_millis() as u64, "satellite versions");
        present.extend(existing.iter().map(|v| v.parent));
        versions[s] = existing;
    }
    Ok(present)
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
