//! The one pass (`dvault ingest --load`): a first load fed by the ingest beside it.
//!
//! A first load otherwise waits for the ingest to end, then reads every event back
//! from the log and parses it again. Here the ingest hands each batch it stores,
//! as the rows a reader would read back ([`crate::events::feed`]), to a bulk run
//! ([`super::bulk`]) that writes it into the vault while the ingest goes on: the
//! ingest's `COPY` into the log and the loader's projection and `COPY` into the
//! vault run at the same time, on both cores, and nothing is read back.
//!
//! The log stays the source of truth, and the checkpoint its only measure:
//! - the run is one transaction (checkpoint included) that commits after every
//!   transaction that stored what it was fed (the feed ends when the last file's
//!   ingest returns), so a crash at any point leaves the vault as it was, or
//!   loaded with the checkpoint after everything it holds;
//! - it starts only when nothing waits in the log, and it commits only if nothing
//!   but the ingest wrote to the log meanwhile, under a lock that keeps writers out
//!   until it has committed: every writer takes its `seq`s from the log's sequence
//!   after its transaction id ([`crate::events::reserve`]), so the `seq`s handed
//!   out since the start must be exactly those the ingest reserved, and no event
//!   may sit between the checkpoint and the ingest's first transaction (a writer
//!   that took its place before the start and stored after it);
//! - the last event handed over of each of the ingest's transactions must be in
//!   the log (a transaction rolled back after handing its events over has none);
//! - where the ingest cannot say exactly what it stored, it gives up the pass.
//!
//! A run that gives up (or meets data the database refuses) rolls back whole, and
//! `dvault ingest --load` then loads from the log as `dvault load` would: the events
//! are there.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_postgres::{Client, Transaction};

use super::bulk::{Ended, Next, Source};
use super::write::KnownKeys;
use super::{CONSUMER, Doing, LoadError, Loader};
use crate::events::feed::Fed;
use crate::events::{self, Checkpoint, Xid8};

/// A one pass about to start: the tables it writes without indexes, and the log's
/// sequence at its start.
#[derive(Debug)]
pub struct Plan {
    tables: Vec<(String, String)>,
    handed_out: i64,
}

/// The run's side of the feed.
pub(super) struct Intake {
    rx: mpsc::Receiver<Fed>,
    /// The log's sequence at the start ([`events::seq_handed_out`]).
    handed_out: i64,
    /// `seq`s the ingest reserved so far.
    reserved: u64,
    /// The transaction id of the first event handed over.
    first_xid: Option<Xid8>,
    /// The last event handed over of each transaction: its writer committed if it
    /// is in the log.
    lasts: BTreeMap<Xid8, i64>,
}

impl Intake {
    pub(super) async fn next(
        &mut self,
        loader: &Loader,
        after: Checkpoint,
    ) -> Result<Next, LoadError> {
        loop {
            let (events, reserved) = match self.rx.recv().await {
                None => return Ok(Next::End),
                Some(Fed::GiveUp(why)) => return Ok(Next::GiveUp(why)),
                Some(Fed::Events { events, reserved }) => (events, reserved),
            };
            self.reserved += reserved;
            let Some(first) = events.first().map(events::StoredEvent::position) else {
                continue;
            };
            if first <= after {
                return Ok(Next::GiveUp(format!(
                    "events were handed over out of the log's order ({first:?} after {after:?})"
                )));
            }
            self.first_xid.get_or_insert(first.xid);
            for e in &events {
                self.lasts.insert(e.xid, e.seq);
            }
            let batch = loader.project_batch(events, after, Instant::now()).await?;
            return Ok(Next::Batch(batch));
        }
    }

    /// Before the run commits: did anyone but the ingest write to the log since the
    /// start? Takes a lock that keeps writers of the log out until the run commits
    /// (a few statements later), so that the answer holds.
    pub(super) async fn confirm(
        &mut self,
        tx: &Transaction<'_>,
        start: Checkpoint,
    ) -> Result<Result<(), String>, LoadError> {
        tx.batch_execute("LOCK TABLE event_log.events IN SHARE MODE")
            .await
            .doing("locking the event log against writers")?;
        let handed_out = events::seq_handed_out(tx)
            .await
            .doing("reading the event log's sequence")?;
        let others = handed_out - self.handed_out - self.reserved as i64;
        if others != 0 {
            return Ok(Err(format!(
                "other writers took {others} places in the event log meanwhile"
            )));
        }
        let (seqs, xids): (Vec<i64>, Vec<String>) =
            self.lasts.iter().map(|(x, s)| (*s, x.to_string())).unzip();
        let found: i64 = tx
            .query_one(
                "SELECT count(*) FROM event_log.events e
                   JOIN unnest($1::bigint[], $2::text[]) AS f(seq, xid)
                     ON e.seq = f.seq AND e.xid = f.xid::xid8",
                &[&seqs, &xids],
            )
            .await
            .doing("looking for the events handed over")?
            .try_get(0)
            .doing("looking for the events handed over")?;
        if found != seqs.len() as i64 {
            return Ok(Err(format!(
                "{} of the {} transactions that handed events over did not commit them",
                seqs.len() as i64 - found,
                seqs.len()
            )));
        }
        if let Some(first) = self.first_xid {
            let before: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM event_log.events
                                     WHERE (xid, seq) > ($1, $2) AND xid < $3)",
                    &[&start.xid, &start.seq, &first],
                )
                .await
                .doing("looking for events stored before the ingest's")?
                .try_get(0)
                .doing("looking for events stored before the ingest's")?;
            if before {
                return Ok(Err(
                    "another writer stored events before the ingest's meanwhile".into(),
                ));
            }
        }
        Ok(Ok(()))
    }
}

/// How a one pass ended.
#[derive(Debug)]
pub enum OnePass {
    /// Committed: everything handed over is in the vault.
    Loaded(super::LoadSummary),
    /// Rolled back: load from the log. Why, for the user.
    GaveUp(String),
}

impl Loader {
    /// Can a one pass start now? It needs the bulk path (not `--no-bulk`), empty
    /// vault tables the loader owns (and, for the Customer 360 model, an empty
    /// business vault), the event log's owner, and nothing waiting in the log.
    /// Call with the loader lock held.
    pub async fn one_pass_plan(&self, client: &mut Client) -> Result<Option<Plan>, LoadError> {
        if self.bulk_min_events.is_none() {
            return Ok(None);
        }
        if self.mappings.is_customer_360() && !super::business::is_empty(&*client).await? {
            return Ok(None);
        }
        let Some(tables) = self.empty_tables(&*client).await? else {
            return Ok(None);
        };
        let tx = client
            .transaction()
            .await
            .doing("starting to look at the event log")?;
        let owner: bool = tx
            .query_one(
                "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class
                  WHERE oid = 'event_log.events'::regclass",
                &[],
            )
            .await
            .doing("checking who owns the event log")?
            .try_get(0)
            .doing("checking who owns the event log")?;
        if !owner {
            return Ok(None);
        }
        // writers in flight finish first: what is in the log now is committed
        tx.batch_execute("LOCK TABLE event_log.events IN SHARE MODE")
            .await
            .doing("waiting for writers of the event log")?;
        let at = events::load_checkpoint(&tx, CONSUMER)
            .await
            .doing("reading the checkpoint")?;
        let waiting: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM event_log.events WHERE (xid, seq) > ($1, $2))",
                &[&at.xid, &at.seq],
            )
            .await
            .doing("looking for events waiting")?
            .try_get(0)
            .doing("looking for events waiting")?;
        let handed_out = events::seq_handed_out(&tx)
            .await
            .doing("reading the event log's sequence")?;
        tx.commit().await.doing("looking at the event log")?;
        Ok((!waiting).then_some(Plan { tables, handed_out }))
    }

    /// Load what `rx` hands over, as one bulk run (see the module's comment).
    pub async fn run_one_pass(
        &self,
        client: &mut Client,
        rx: mpsc::Receiver<Fed>,
        plan: Plan,
    ) -> Result<OnePass, LoadError> {
        let known = KnownKeys::at_start(&*client, &self.mappings)
            .await
            .doing("checking which vault tables are empty")?;
        let source = Source::Fed(Intake {
            rx,
            handed_out: plan.handed_out,
            reserved: 0,
            first_xid: None,
            lasts: BTreeMap::new(),
        });
        match self
            .bulk_run(client, known, plan.tables, &|| false, source)
            .await
        {
            Ok(Ended::Committed(s) | Ended::Stopped(s) | Ended::Nothing(s)) => {
                Ok(OnePass::Loaded(s))
            }
            Ok(Ended::GaveUp(why)) => Ok(OnePass::GaveUp(why)),
            // batch by batch from the log, where the events responsible are quarantined
            Err(e) if e.ends_bulk() => Ok(OnePass::GaveUp(format!(
                "the bulk path met data the database refuses ({e})"
            ))),
            Err(e) => Err(e),
        }
    }
}
