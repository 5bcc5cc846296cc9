//! The bulk path: a first load or a rebuild writes heap first and builds indexes after.
//!
//! What a large load into empty tables costs most is B-tree maintenance row by row:
//! every `COPY`ed row descends each index of its table once, on random hash keys,
//! and at warehouse scale those indexes outgrow shared buffers so that nearly every
//! descent reads a page. `CREATE INDEX` sorts instead. So when a run starts with vault
//! tables empty and many events to load, it drops the indexes (primary keys
//! included) of the empty tables, `COPY`s every batch into bare heaps, knowing the
//! keys it wrote from memory ([`super::known::Known`], trusted), and builds the
//! indexes at the end.
//!
//! All of it is one transaction, checkpoint included, and DDL is transactional in
//! PostgreSQL: a crash or a kill at any point, index builds included, leaves the
//! tables as they were (empty, every index and comment in place) and the checkpoint
//! unmoved; the next run starts over. The price: the run's tables are locked until it
//! commits (readers of those tables wait), and a crash loses the run's progress, not
//! just one batch.
//!
//! A table leaves the bulk path (its indexes are built at once, in the same
//! transaction) when the run must look into it: a satellite row whose parent existed
//! before its batch (its predecessor must be read), or a hub or link past the key
//! memory limit. Before that, a full key memory forgets the largest bare table none
//! of whose keys repeated so far ([`super::known`]): its keys are then written
//! unchecked, and its unique index, built at the end, proves that none came twice.
//! If one did, the index build fails with nothing committed and the run starts over
//! at once, remembering every table ([`LoadError::ForgottenRepeat`]).
//!
//! Data the database refuses (a batch, or an index build: a value too large for a
//! user's index, a duplicate under a user's unique index) ends the bulk run: it is
//! rolled back whole and the same run loads batch by batch instead, where the safety
//! net quarantines the events responsible ([`Loader::run_until`]). So no single event
//! can stop a first load either, and the bulk run holds no savepoints (a transaction
//! with more than 64 subtransactions slows every snapshot on the server).
//!
//! Only tables the loading role owns take the bulk path (dropping an index needs
//! ownership; the `dvault_loader` role of docs/security.md owns none).
//!
//! Each table is also emptied anew in the run's transaction (it is empty: `TRUNCATE`
//! only gives it a new file), which lets its `COPY`s write their rows frozen
//! (`COPY ... FREEZE`): committed once and for all, on pages marked all-visible. So
//! the first readers after the load (the closing `ANALYZE`, the next day's lookups,
//! an analyst's scan) set no hint bit on the pages, which would write the whole table
//! again, and no `VACUUM` has to freeze it later; index-only scans need no heap visit.
//! As with any `TRUNCATE` and `COPY FREEZE`, a transaction whose snapshot is older
//! than the run's commit and that never read the table before sees its rows (the run
//! holds the table locked until it commits, so none can read it meanwhile).

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::{Client, GenericClient, Transaction};

use super::known::KnownKeys;
use super::outbox::Outbox;
use super::{CONSUMER, LoadError, LoadSummary, Loader, Prepared, business};
use crate::db::Doing;
use crate::db::indexes;
use crate::events::{self, Checkpoint};

/// Events waiting, at least, for a run into empty tables to take the bulk path: below
/// it, dropping and building indexes is not worth locking the tables for the run.
pub const MIN_EVENTS: i64 = 100_000;

/// Events per batch on the bulk path, at most: a run holds about three batches at
/// once (one written, the next read and projected, the one before being freed), at
/// about 1.5 kB an event in memory. At TPC-H SF1, batches of 25,000 loaded as fast as
/// 50,000 or 100,000, with a peak of 470 MB instead of 535 and 760 (bench/README.md).
pub const MAX_BATCH: i64 = 25_000;

/// How long a run that has caught up with files being ingested waits before it reads
/// the log again (see `Loader::bulk_batches`).
const FOLLOW_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Memory PostgreSQL may use per index build (`SET LOCAL` in the run's transaction):
/// a sort that fits in memory is several times faster than one that spills.
const BUILD_MEMORY: &str = "256MB";

/// A table whose indexes this run dropped.
#[derive(Debug, Clone)]
struct Table {
    /// The vault name (`hub_customer`), for reports.
    name: String,
    /// Qualified and quoted.
    qualified: String,
    indexes: Vec<indexes::Dropped>,
    /// Still without its indexes.
    bare: bool,
    /// Emptied anew by the run's transaction: its `COPY`s may freeze their rows.
    frozen: bool,
}

/// The tables of a run on the bulk path. Empty (and a no-op) on other runs.
#[derive(Debug, Default)]
pub struct Bulk {
    tables: Vec<Table>,
    /// The Customer 360 business vault is built once at the run's end
    /// ([`super::business::build`]), not refreshed per batch.
    builds_business_vault: bool,
    /// Where the run's `COPY`s go, to run beside the writer ([`super::outbox`]).
    outbox: Option<Arc<Outbox>>,
}

impl Bulk {
    /// The run's outbox, if its `COPY`s run beside the writer.
    pub(super) fn outbox(&self) -> Option<Arc<Outbox>> {
        self.outbox.clone()
    }

    /// Wait until every `COPY` handed to the run's outbox is done: before a statement
    /// of the writer's own reads or changes a vault table ([`super::outbox`]).
    pub(super) async fn settle(&self) -> Result<(), LoadError> {
        match &self.outbox {
            Some(o) => o.settle().await,
            None => Ok(()),
        }
    }

    /// Drop the indexes of `tables` (vault name, qualified name), which must be empty
    /// and locked by the run's transaction. A table another table's foreign key
    /// refers to keeps its indexes (the key needs them).
    pub async fn start(
        tx: &impl GenericClient,
        tables: &[(String, String)],
    ) -> Result<Bulk, LoadError> {
        let started = Instant::now();
        let mut bulk = Bulk::default();
        for (name, qualified) in tables {
            let referenced: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint
                                     WHERE confrelid = $1::text::regclass AND contype = 'f')",
                    &[qualified],
                )
                .await
                .doing("reading foreign keys")?
                .try_get(0)
                .doing("reading foreign keys")?;
            if referenced {
                tracing::info!(table = %name, "a foreign key refers to it: keeps its indexes");
                continue;
            }
            let indexes = indexes::drop_all(tx, qualified)
                .await
                .doing("dropping a table's indexes for the bulk path")?;
            let frozen = truncate_if_empty(tx, qualified).await?;
            bulk.tables.push(Table {
                name: name.clone(),
                qualified: qualified.clone(),
                indexes,
                bare: true,
                frozen,
            });
        }
        tracing::info!(
            tables = bulk.tables.len(),
            ms = started.elapsed().as_millis() as u64,
            "bulk path: indexes dropped, built again at the end of the run"
        );
        Ok(bulk)
    }

    /// The tables (vault names) whose `COPY`s may freeze their rows (see the module's
    /// comment).
    pub fn frozen(&self) -> Vec<String> {
        self.names(|t| t.frozen)
    }

    /// The tables (vault names) still without their indexes: their rows are best
    /// written in the order they were projected (see `super::apply::write_rows`).
    pub fn bare(&self) -> Vec<String> {
        self.names(|t| t.bare)
    }

    fn names(&self, which: impl Fn(&Table) -> bool) -> Vec<String> {
        self.tables
            .iter()
            .filter(|t| which(t))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Does the run build the business vault at its end (so no batch refreshes it)?
    pub fn builds_business_vault(&self) -> bool {
        self.builds_business_vault
    }

    /// Is this run off the bulk path (no table of its own)?
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Is `qualified` without its indexes now?
    pub fn is_bare(&self, qualified: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.bare && t.qualified == qualified)
    }

    /// Build the indexes of `qualified` that are missing (none when it is not on the
    /// bulk path). Looks at the catalog, so an index build that a savepoint rolled
    /// back is built again.
    pub async fn restore(
        &mut self,
        tx: &impl GenericClient,
        qualified: &str,
    ) -> Result<(), LoadError> {
        // the run is about to look into the table: what it handed over comes first
        self.settle().await?;
        for t in self.tables.iter_mut().filter(|t| t.qualified == qualified) {
            build_missing(tx, t).await?;
        }
        Ok(())
    }

    /// Build every missing index of every table on the bulk path.
    pub async fn restore_all(&mut self, tx: &impl GenericClient) -> Result<(), LoadError> {
        for t in &mut self.tables {
            build_missing(tx, t).await?;
        }
        Ok(())
    }

    /// The vault tables loaded on the bulk path.
    pub fn tables(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }
}

/// Empty `qualified` anew if it is empty (its lock, taken when its indexes were
/// dropped, keeps it so): `COPY ... FREEZE` needs a table created or truncated in the
/// writing transaction. Whether it was.
async fn truncate_if_empty(tx: &impl GenericClient, qualified: &str) -> Result<bool, LoadError> {
    let empty: bool = tx
        .query_one(&format!("SELECT NOT EXISTS (SELECT FROM {qualified})"), &[])
        .await
        .doing("checking that a table of the bulk path is empty")?
        .try_get(0)
        .doing("checking that a table of the bulk path is empty")?;
    if empty {
        tx.batch_execute(&format!("TRUNCATE {qualified}"))
            .await
            .doing("emptying a table of the bulk path anew")?;
    }
    Ok(empty)
}

async fn build_missing(tx: &impl GenericClient, t: &mut Table) -> Result<(), LoadError> {
    let started = Instant::now();
    let mut built = 0;
    for index in &t.indexes {
        let was_built =
            indexes::build_missing(tx, index)
                .await
                .map_err(|source| LoadError::BulkBuild {
                    table: t.name.clone(),
                    source,
                })?;
        built += usize::from(was_built);
    }
    t.bare = false;
    if built > 0 {
        tracing::info!(
            table = %t.name,
            indexes = built,
            ms = started.elapsed().as_millis() as u64,
            "indexes built"
        );
    }
    Ok(())
}

impl Loader {
    /// The empty vault tables (vault name, qualified name) of a run that should take
    /// the bulk path, if it should: enough events wait, and, for the Customer 360
    /// model, its business vault is empty (then it is built once at the run's end;
    /// on a vault with history it is refreshed per batch, which reads the raw vault
    /// by key and so needs its indexes).
    pub(super) async fn bulk_tables(
        &self,
        client: &impl GenericClient,
    ) -> Result<Option<Vec<(String, String)>>, LoadError> {
        let m = &self.mappings;
        let Some(min) = self.bulk_min_events else {
            return Ok(None);
        };
        if m.is_customer_360() && !business::is_empty(client).await? {
            return Ok(None);
        }
        let at = events::load_checkpoint(client, CONSUMER)
            .await
            .doing("reading the checkpoint")?;
        let waiting: i64 = client
            .query_one(
                // in index order: the planner misjudges the row comparison and
                // otherwise reads the whole log (4.5 s at TPC-H SF1, 0.1 s so)
                "SELECT coalesce(sum(n), 0)::bigint FROM (SELECT coalesce(bundle_size, 1) AS n FROM event_log.events
                                        WHERE (xid, seq) > ($1, $2)
                                        ORDER BY xid, seq LIMIT $3) e",
                &[&at.xid, &at.seq, &min],
            )
            .await
            .doing("counting the events waiting")?
            .try_get(0)
            .doing("counting the events waiting")?;
        // a file being ingested into an empty vault is a first load however little
        // of it is in yet: a run that reads ahead follows it (see `bulk_batches`)
        if waiting < min
            && !(waiting > 0
                && self.read_ahead.is_some()
                && events::ingest::ingesting(client)
                    .await
                    .doing("looking for file ingests")?)
        {
            return Ok(None);
        }
        let names = m
            .hubs
            .iter()
            .map(|h| &h.name)
            .chain(m.links.iter().map(|l| &l.name))
            .chain(m.satellites.iter().map(|s| &s.name));
        let mut empty = Vec::new();
        for name in names {
            let qualified = m.table(name);
            let owned = crate::db::owns(client, &qualified)
                .await
                .doing("checking who owns the vault tables")?;
            if owned
                && super::known::is_empty(client, &qualified)
                    .await
                    .doing("checking which vault tables are empty")?
            {
                empty.push((name.clone(), qualified));
            }
        }
        Ok((!empty.is_empty()).then_some(empty))
    }

    /// The whole run in one transaction, with the indexes of `tables` dropped at the
    /// start and built at the end (see the module's comment). `stop` is asked before
    /// each batch: once it says yes, the indexes are built and what was written
    /// commits; the flag returned says whether the run stopped early. Batches hold
    /// at most [`MAX_BATCH`] events.
    pub(super) async fn run_bulk(
        &self,
        client: &mut Client,
        known: KnownKeys,
        tables: Vec<(String, String)>,
        stop: super::Stop<'_>,
    ) -> Result<(LoadSummary, bool), LoadError> {
        let bulk = Loader {
            batch_size: self.batch_size.min(MAX_BATCH),
            ..self.clone()
        };
        bulk.run_bulk_batches(client, known, tables, stop).await
    }

    async fn run_bulk_batches(
        &self,
        client: &mut Client,
        mut known: KnownKeys,
        tables: Vec<(String, String)>,
        stop: super::Stop<'_>,
    ) -> Result<(LoadSummary, bool), LoadError> {
        let started = Instant::now();
        let m = &self.mappings;
        let reader = match &self.read_ahead {
            Some(url) => Some(super::read_ahead(url).await?),
            None => None,
        };
        let tx = client.transaction().await.doing("starting the bulk run")?;
        tx.batch_execute(&format!(
            "SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"
        ))
        .await
        .doing("setting the index build memory")?;
        let mut at = events::load_checkpoint(&tx, CONSUMER)
            .await
            .doing("reading the checkpoint")?;
        super::lock_checkpoint(&tx, at).await?;
        // the read-ahead passes the run's transaction, which lasts the run and appends
        // nothing to the log: events appended meanwhile are the run's too
        let reader = match reader {
            Some(r) => {
                let run: events::Xid8 = tx
                    .query_one("SELECT pg_current_xact_id()", &[])
                    .await
                    .and_then(|row| row.try_get(0))
                    .doing("reading the run's transaction id")?;
                Some((r, run))
            }
            None => None,
        };
        let next = match &reader {
            Some((r, run)) => self.prepare(r, at, Some(*run)).await?,
            None => self.prepare_in(&tx, at).await?,
        };
        if next.is_none() {
            // the events waiting are not visible yet (their writers are still open)
            tx.rollback().await.doing("ending the bulk run")?;
            return Ok((
                LoadSummary {
                    elapsed: started.elapsed(),
                    ..LoadSummary::default()
                },
                false,
            ));
        }
        let mut bulk = Bulk::start(&tx, &tables).await?;
        bulk.builds_business_vault = m.is_customer_360();
        for (h, hub) in m.hubs.with_ids() {
            if let Some(k) = &mut known.hubs[h] {
                k.trusted = bulk.is_bare(&m.table(&hub.name));
            }
        }
        for (l, link) in m.links.with_ids() {
            if let Some(k) = &mut known.links[l] {
                k.trusted = bulk.is_bare(&m.table(&link.name));
            }
        }

        // the batches' COPYs run beside the writer, in the order it hands them over
        // (see `super::outbox`); all of them are done before the indexes are built
        let outbox = Arc::new(Outbox::new());
        bulk.outbox = Some(outbox.clone());
        let (drained, batches) = tokio::join!(outbox.drain(&tx), async {
            let batches = self
                .bulk_batches(
                    &tx,
                    reader.as_ref().map(|(r, run)| (r, *run)),
                    next,
                    &mut at,
                    &mut known,
                    &mut bulk,
                    stop,
                )
                .await;
            outbox.close();
            batches
        });
        bulk.outbox = None;
        // the database's own error first: the writer's is then only that it ended
        drained?;
        let (mut total, stopped) = batches?;

        let building = Instant::now();
        let forgotten = known.forgotten(m);
        bulk.restore_all(&tx)
            .await
            .map_err(|e| e.repeated_in(&forgotten))?;
        tracing::info!(
            ms = building.elapsed().as_millis() as u64,
            "bulk path: every index built"
        );
        if bulk.builds_business_vault {
            business::build(&tx).await?;
        }
        super::finish_batch(tx, at).await?;
        total.bulk = bulk.tables();
        total.forgotten = forgotten;
        total.elapsed = started.elapsed();
        Ok((total, stopped))
    }

    /// The batches of a bulk run, each written while the next is read (on `reader`,
    /// beside the run's transaction, or in `tx` after it), until the log has no more
    /// or `stop` says so (the flag returned); `at` follows the last batch written.
    ///
    /// With a reader, the run follows files being ingested: while the log has no more
    /// for now and some file ingest holds [`events::ingest::INGEST_LOCK`], it waits
    /// for their next events instead of ending, so a first load started beside the
    /// ingest of its files loads them all in one bulk run. Once no ingest holds the
    /// lock, one more read takes what the last one committed before letting go of it.
    /// (Without a reader the run reads in its own transaction, which would hold the
    /// log against a bulk ingest's lock while waiting for it: it does not follow.)
    #[allow(clippy::too_many_arguments)]
    async fn bulk_batches(
        &self,
        tx: &Transaction<'_>,
        reader: Option<(&Client, events::Xid8)>,
        mut next: Option<Prepared>,
        at: &mut Checkpoint,
        known: &mut KnownKeys,
        bulk: &mut Bulk,
        stop: super::Stop<'_>,
    ) -> Result<(LoadSummary, bool), LoadError> {
        let mut total = LoadSummary::default();
        loop {
            let Some(batch) = next.take() else {
                let Some((r, beside)) = reader else { break };
                let ingesting = events::ingest::ingesting(r)
                    .await
                    .doing("looking for file ingests")?;
                if stop() {
                    return Ok((total, true));
                }
                if ingesting {
                    tokio::time::sleep(FOLLOW_PAUSE).await;
                }
                next = self.prepare(r, *at, Some(beside)).await?;
                tracing::debug!(
                    ingesting,
                    events = next.as_ref().map_or(0, |b| b.events),
                    "following the files being ingested"
                );
                if next.is_none() && !ingesting {
                    break;
                }
                continue;
            };
            if stop() {
                return Ok((total, true));
            }
            let full = batch.events >= self.batch_size as u64;
            let last = batch.last;
            let (written, prepared) = match (reader, full) {
                (Some((r, beside)), true) => tokio::join!(
                    self.write_bulk_batch(tx, batch, known, bulk),
                    self.prepare(r, last, Some(beside))
                ),
                (None, true) => {
                    let written = self.write_bulk_batch(tx, batch, known, bulk).await;
                    (written, self.prepare_in(tx, last).await)
                }
                (_, false) => (
                    self.write_bulk_batch(tx, batch, known, bulk).await,
                    Ok(None),
                ),
            };
            total.add(&written?);
            next = prepared?;
            *at = last;
        }
        Ok((total, false))
    }

    /// One batch of a bulk run. An error ends the run (rolled back whole): see
    /// the module's comment for what happens to data the database refuses.
    #[tracing::instrument(name = "batch", skip_all, fields(
        events = batch.events, after_seq = batch.after.seq, bulk = true,
        rows = tracing::field::Empty, rejected = tracing::field::Empty,
        ms = tracing::field::Empty))]
    async fn write_bulk_batch(
        &self,
        tx: &Transaction<'_>,
        batch: Prepared,
        known: &mut KnownKeys,
        bulk: &mut Bulk,
    ) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let summary = self
            .write_projected(tx, None, &batch.rows, &batch.rejects, known, bulk)
            .await?;
        Ok(batch.written(
            summary,
            started,
            "batch written (bulk path, committed with the run)",
        ))
    }

    /// [`Loader::prepare`] inside the run's transaction: the reader's horizon reads
    /// `pg_stat_activity`, which PostgreSQL otherwise keeps as it was at the
    /// transaction's first look (see [`crate::events::horizon`]).
    async fn prepare_in(
        &self,
        tx: &Transaction<'_>,
        after: crate::events::Checkpoint,
    ) -> Result<Option<Prepared>, LoadError> {
        tx.batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .doing("refreshing the view of running transactions")?;
        self.prepare(tx, after, None).await
    }
}
