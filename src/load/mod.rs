//! `dvault load`: project committed events after the checkpoint into the vault.
//!
//! One transaction per batch: read events after the checkpoint, extract rows per
//! mapping and hash them in Rust, stage them with `COPY ... BINARY`, insert new hub
//! and link rows and changed satellite versions with set-based SQL, quarantine the
//! events that do not fit, and move the checkpoint — all or nothing. A crash at any
//! point loses nothing and duplicates nothing.

pub mod bulk;
pub mod business;
pub mod extract;
mod held;
pub mod payload;
pub mod satellite;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db::Doing;
use crate::events::{self, Checkpoint, StoredEvent};
use crate::hash::HASH_VERSION;
use crate::human::thousands;
use crate::mapping::{MappingErrors, Mappings, Parent, catalog};
use extract::{Origin, Rows};

/// The checkpoint consumer name of the vault loader.
pub const CONSUMER: &str = "vault_loader";
/// Advisory lock held by the one loader allowed to write.
pub const LOADER_LOCK: i64 = 0x6476_6175_6c74_0002;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Mappings(#[from] MappingErrors),
    #[error(
        "the vault was built with hash version {found}, this dvault hashes with version {HASH_VERSION}: run `dvault rebuild`"
    )]
    HashVersion { found: String },
    #[error(
        "another loader is running (it holds the loader lock); try again later or drop --no-wait"
    )]
    Busy,
    #[error("{0}")]
    Internal(String),
    /// A value PostgreSQL's column type cannot hold, found while encoding a row.
    #[error("{0}")]
    Encode(String),
    /// Building `table`'s indexes after a bulk load failed.
    #[error(
        "database error while building the indexes of {table} after a bulk load: {}",
        crate::db::Shown(source)
    )]
    BulkBuild {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("database error while {doing}: {}", crate::db::Shown(source))]
    Db {
        doing: &'static str,
        source: tokio_postgres::Error,
    },
}

impl LoadError {
    /// Did the database (or the encoder) refuse the data itself, so that the batch
    /// would fail the same way every time? SQLSTATE class 22 (data exception), 23
    /// (integrity constraint violation) and 54 (program limit exceeded, e.g. an index
    /// row too large). Such a batch is written again event range by event range to
    /// find and quarantine the events responsible ([`Loader::write_isolating`]).
    pub fn is_data(&self) -> bool {
        match self {
            LoadError::Encode(_) => true,
            LoadError::Db { source, .. } => refused_data(source),
            _ => false,
        }
    }

    /// Did the bulk path meet data the database refuses, in a batch or while
    /// building an index? Then the run goes batch by batch instead ([`bulk`]).
    fn ends_bulk(&self) -> bool {
        match self {
            LoadError::BulkBuild { source, .. } => refused_data(source),
            other => other.is_data(),
        }
    }
}

fn refused_data(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(&c.code()[..2], "22" | "23" | "54"))
}

impl From<crate::db::Failed> for LoadError {
    fn from(crate::db::Failed { doing, source }: crate::db::Failed) -> Self {
        LoadError::Db { doing, source }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub batches: u64,
    pub events: u64,
    pub rejected: u64,
    /// Events of a type no mapping knows, held back (`ops.held_events`), not quarantined.
    pub held: u64,
    /// rows inserted per vault table
    pub rows: BTreeMap<String, u64>,
    /// The tables written on the bulk path (indexes built after): see [`bulk`].
    pub bulk: Vec<String>,
    pub elapsed: Duration,
}

impl LoadSummary {
    pub fn rows_total(&self) -> u64 {
        self.rows.values().sum()
    }

    fn add(&mut self, other: &LoadSummary) {
        self.batches += other.batches;
        self.events += other.events;
        self.rejected += other.rejected;
        self.held += other.held;
        for (t, n) in &other.rows {
            *self.rows.entry(t.clone()).or_default() += n;
        }
    }
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events == 0 {
            return writeln!(
                f,
                "nothing new to load ({:.3} s)",
                self.elapsed.as_secs_f64()
            );
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "loaded {} events in {:.2} s ({} events/s, {} vault rows/s), {} batch(es)",
            thousands(self.events),
            secs,
            thousands((self.events as f64 / secs) as u64),
            thousands((self.rows_total() as f64 / secs) as u64),
            self.batches
        )?;
        for (table, n) in &self.rows {
            writeln!(f, "  {table:<28} {:>12}", thousands(*n))?;
        }
        if !self.bulk.is_empty() {
            writeln!(
                f,
                "  bulk path (indexes built after the load): {}",
                self.bulk.join(", ")
            )?;
        }
        if self.rejected > 0 {
            writeln!(
                f,
                "  {} events rejected: see dvault rejected",
                thousands(self.rejected)
            )?;
        }
        if self.held > 0 {
            writeln!(
                f,
                "  {} events held back: no mapping for their type yet (see dvault status)",
                thousands(self.held)
            )?;
        }
        Ok(())
    }
}

/// Asked before each batch of [`Loader::run_until`]: `true` stops the load.
pub type Stop<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// A load that ended before the log was read to the end: what its committed
/// batches did (counted exactly: a batch counts once its commit returned), and the
/// error that ended it, `None` when it was asked to stop.
#[derive(Debug)]
pub struct Partial {
    pub committed: LoadSummary,
    pub error: Option<LoadError>,
}

impl Partial {
    fn nothing(error: impl Into<LoadError>) -> Partial {
        Partial {
            committed: LoadSummary::default(),
            error: Some(error.into()),
        }
    }
}

impl LoadSummary {
    fn ended(mut self, started: Instant, error: Option<LoadError>) -> Partial {
        self.elapsed = started.elapsed();
        Partial {
            committed: self,
            error,
        }
    }
}

/// The loader: mappings checked against the database, ready to run batches.
#[derive(Clone)]
pub struct Loader {
    mappings: Arc<Mappings>,
    pub batch_size: i64,
    /// Take the bulk path ([`bulk`]) when some vault tables are empty and at least
    /// this many events wait; `None`: never.
    pub bulk_min_events: Option<i64>,
    read_ahead: Option<String>,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("batch_size", &self.batch_size)
            .field(
                "read_ahead",
                &self.read_ahead.as_deref().map(crate::config::redact_url),
            )
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// Check `mappings` against the catalog and the vault's hash version.
    pub async fn new(client: &Client, mappings: Mappings) -> Result<Loader, LoadError> {
        catalog::check(client, &mappings)
            .await
            .doing("reading the catalog")??;
        let found: Option<String> = client
            .query_opt(
                "SELECT value FROM ops.settings WHERE name = 'hash_version'",
                &[],
            )
            .await
            .doing("reading the hash version")?
            .map(|r| r.try_get(0))
            .transpose()
            .doing("reading the hash version")?;
        match found {
            Some(v) if v != HASH_VERSION => return Err(LoadError::HashVersion { found: v }),
            _ => {}
        }
        Ok(Loader {
            mappings: Arc::new(mappings),
            batch_size: 50_000,
            bulk_min_events: Some(bulk::MIN_EVENTS),
            read_ahead: None,
        })
    }

    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// Take the loader lock: wait for it, or fail with [`LoadError::Busy`].
    pub async fn lock(client: &Client, wait: bool) -> Result<(), LoadError> {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOADER_LOCK])
            .await
            .doing("taking the loader lock")?
            .try_get(0)
            .doing("taking the loader lock")?;
        if got {
            return Ok(());
        }
        if !wait {
            return Err(LoadError::Busy);
        }
        tracing::warn!("another loader holds the lock; waiting for it to finish");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOADER_LOCK])
            .await
            .doing("waiting for the loader lock")?;
        Ok(())
    }

    pub async fn unlock(client: &Client) -> Result<(), LoadError> {
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOADER_LOCK])
            .await
            .doing("releasing the loader lock")?;
        Ok(())
    }

    /// Read ahead on a second connection to `url`: while one batch is written, the
    /// next is read and projected, so both cores work. Without it, batches run one
    /// after the other on the caller's connection.
    pub fn with_read_ahead(mut self, url: &str) -> Loader {
        self.read_ahead = Some(url.to_string());
        self
    }

    /// Load batches until the log has nothing committed after the checkpoint.
    pub async fn run(&self, client: &mut Client) -> Result<LoadSummary, LoadError> {
        match self.run_until(client, &|| false).await {
            Ok(summary)
            | Err(Partial {
                committed: summary,
                error: None,
            }) => Ok(summary),
            Err(Partial { error: Some(e), .. }) => Err(e),
        }
    }

    /// [`run`](Self::run), asking `stop` before each batch: once it says yes, no
    /// new batch starts (the one in hand is finished). A load that ends early, by
    /// `stop` or an error, says what its committed batches did.
    pub async fn run_until(
        &self,
        client: &mut Client,
        stop: Stop<'_>,
    ) -> Result<LoadSummary, Partial> {
        // events held back for want of a mapping that the model now has
        let released = self.release_held(client).await.map_err(Partial::nothing)?;
        match self.run_log(client, stop).await {
            Ok(mut summary) => {
                summary.add(&released);
                Ok(summary)
            }
            Err(mut partial) => {
                partial.committed.add(&released);
                Err(partial)
            }
        }
    }

    async fn run_log(&self, client: &mut Client, stop: Stop<'_>) -> Result<LoadSummary, Partial> {
        let mut known = write::KnownKeys::at_start(&*client, &self.mappings)
            .await
            .doing("checking which vault tables are empty")
            .map_err(Partial::nothing)?;
        if let Some(tables) = self.bulk_tables(&*client).await.map_err(Partial::nothing)? {
            // one transaction: on an error nothing of the run is committed
            match self.run_bulk(client, known, tables, stop).await {
                Ok((summary, false)) => return Ok(summary),
                Ok((summary, true)) => {
                    return Err(Partial {
                        committed: summary,
                        error: None,
                    });
                }
                Err(e) if e.ends_bulk() => {
                    tracing::warn!(
                        error = %e,
                        "the bulk path met data the database refuses; loading batch by batch instead, where such events are quarantined"
                    );
                }
                Err(e) => return Err(Partial::nothing(e)),
            }
            known = write::KnownKeys::at_start(&*client, &self.mappings)
                .await
                .doing("checking which vault tables are empty")
                .map_err(Partial::nothing)?;
        }
        match &self.read_ahead {
            Some(url) => {
                let reader = crate::db::connect(url).await.map_err(|e| {
                    Partial::nothing(LoadError::Internal(format!(
                        "opening the read-ahead connection: {e}"
                    )))
                })?;
                self.run_pipelined(client, &reader, &mut known, stop).await
            }
            None => self.run_sequential(client, &mut known, stop).await,
        }
    }

    async fn run_sequential(
        &self,
        client: &mut Client,
        known: &mut write::KnownKeys,
        stop: Stop<'_>,
    ) -> Result<LoadSummary, Partial> {
        let started = Instant::now();
        let mut total = LoadSummary::default();
        loop {
            if stop() {
                return Err(total.ended(started, None));
            }
            match self.load_batch_with(client, known).await {
                Ok(Some(batch)) => {
                    total.add(&batch);
                    if batch.events < self.batch_size as u64 {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(total.ended(started, Some(e))),
            }
        }
        total.elapsed = started.elapsed();
        Ok(total)
    }

    /// Write batch N on `writer` while batch N+1 is read and projected on `reader`.
    ///
    /// Reading ahead is safe: the loader lock keeps other loaders out, each write
    /// checks that the checkpoint is where the batch starts, and the reader only
    /// sees events below the oldest running transaction of this database (this
    /// loader's own open batch included), so an event appended meanwhile waits for
    /// the next pass.
    async fn run_pipelined(
        &self,
        writer: &mut Client,
        reader: &Client,
        known: &mut write::KnownKeys,
        stop: Stop<'_>,
    ) -> Result<LoadSummary, Partial> {
        let started = Instant::now();
        let mut total = LoadSummary::default();
        let at = events::load_checkpoint(writer, CONSUMER)
            .await
            .doing("reading the checkpoint")
            .map_err(Partial::nothing)?;
        let mut next = self.prepare(reader, at).await.map_err(Partial::nothing)?;
        while let Some(batch) = next.take() {
            if stop() {
                return Err(total.ended(started, None));
            }
            let full = batch.events >= self.batch_size as u64;
            let last = batch.last;
            let (written, prepared) = if full {
                tokio::join!(
                    self.write_batch(writer, batch, known),
                    self.prepare(reader, last)
                )
            } else {
                (self.write_batch(writer, batch, known).await, Ok(None))
            };
            match written {
                Ok(written) => total.add(&written),
                Err(e) => return Err(total.ended(started, Some(e))),
            }
            next = prepared.map_err(|e| total.clone().ended(started, Some(e)))?;
        }
        total.elapsed = started.elapsed();
        Ok(total)
    }

    /// One batch in one transaction; `None` when there was nothing to load.
    async fn load_batch_with(
        &self,
        client: &mut Client,
        known: &mut write::KnownKeys,
    ) -> Result<Option<LoadSummary>, LoadError> {
        let at = events::load_checkpoint(client, CONSUMER)
            .await
            .doing("reading the checkpoint")?;
        match self.prepare(client, at).await? {
            Some(batch) => self.write_batch(client, batch, known).await.map(Some),
            None => Ok(None),
        }
    }

    /// Read up to a batch of events after `after` and project them.
    async fn prepare(
        &self,
        client: &impl GenericClient,
        after: Checkpoint,
    ) -> Result<Option<Prepared>, LoadError> {
        let started = Instant::now();
        let batch = events::read_after(client, after, self.batch_size)
            .await
            .doing("reading events")?;
        let Some(last) = batch.last().map(StoredEvent::position) else {
            return Ok(None);
        };
        let read_ms = started.elapsed().as_millis() as u64;
        // project in a few slices on blocking threads, joined back in log order
        let batch = Arc::new(batch);
        let slices = PROJECT_THREADS.min(batch.len().div_ceil(10_000)).max(1);
        let per = batch.len().div_ceil(slices);
        let tasks: Vec<_> = (0..slices)
            .map(|i| {
                let (mappings, batch) = (self.mappings.clone(), batch.clone());
                tokio::task::spawn_blocking(move || {
                    let from = (i * per).min(batch.len());
                    let to = (from + per).min(batch.len());
                    project(&mappings, &batch[from..to])
                })
            })
            .collect();
        let mut rows = Projected {
            rows: Rows::new(&self.mappings),
            events: 0,
        };
        let mut rejects = Vec::new();
        for task in tasks {
            let (part, part_rejects) = task
                .await
                .map_err(|e| LoadError::Internal(format!("projecting the batch failed: {e}")))?;
            rows.append(part);
            rejects.extend(part_rejects);
        }
        tracing::debug!(
            read_ms,
            ms = started.elapsed().as_millis() as u64,
            "batch prepared"
        );
        Ok(Some(Prepared {
            after,
            last,
            events: rows.events,
            rows,
            rejects,
            log: batch,
            started,
        }))
    }

    /// Write a prepared batch and move the checkpoint, in one transaction.
    ///
    /// When the database refuses the batch's data ([`LoadError::is_data`]), the
    /// transaction is rolled back and the batch written again in event ranges under
    /// savepoints, so the events responsible are quarantined with the database's
    /// message and the rest commits: no single event can stop the loader.
    #[tracing::instrument(name = "batch", skip_all, fields(
        events = batch.events, after_seq = batch.after.seq, rows = tracing::field::Empty,
        rejected = tracing::field::Empty, ms = tracing::field::Empty))]
    async fn write_batch(
        &self,
        client: &mut Client,
        batch: Prepared,
        known: &mut write::KnownKeys,
    ) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let tx = client.transaction().await.doing("starting a batch")?;
        lock_checkpoint(&tx, batch.after).await?;
        let summary = match self
            .write_projected(
                &tx,
                &batch.rows,
                &batch.rejects,
                known,
                &mut bulk::Bulk::default(),
            )
            .await
        {
            Ok(summary) => {
                finish_batch(tx, batch.last).await?;
                summary
            }
            Err(e) if e.is_data() => {
                tracing::warn!(
                    error = %e,
                    "the database refused the batch; writing it again range by range to quarantine the events responsible"
                );
                tx.rollback()
                    .await
                    .doing("rolling back the refused batch")?;
                let mut tx = client.transaction().await.doing("starting a batch")?;
                lock_checkpoint(&tx, batch.after).await?;
                let summary = self
                    .write_isolating(&mut tx, &batch.log, known, &mut bulk::Bulk::default())
                    .await?;
                finish_batch(tx, batch.last).await?;
                summary
            }
            Err(e) => return Err(e),
        };
        Ok(batch.written(summary, started, "batch loaded"))
    }

    /// The vault rows, the business vault and the quarantine of one projected batch.
    async fn write_projected(
        &self,
        tx: &Transaction<'_>,
        rows: &Rows,
        rejects: &[Reject],
        known: &mut write::KnownKeys,
        bulk: &mut bulk::Bulk,
    ) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let mut summary = write_rows(tx, &self.mappings, rows, known, bulk).await?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "written");
        if self.mappings.is_customer_360() && !bulk.builds_business_vault() {
            business::refresh(tx, &self.mappings, rows).await?;
        }
        summary.rejected = store_rejects(tx, rejects).await?;
        summary.held = rejects.iter().filter(|r| r.held).count() as u64;
        Ok(summary)
    }

    /// Write `log` in ranges, each under a savepoint, in log order: a range the
    /// database refuses is rolled back to its savepoint and split in halves, down to
    /// single events, which are quarantined with the database's message. Every
    /// range is decided after the ones before it, as in a normal load, so the result
    /// is the one an event-by-event load would give (and a rebuild gives it again).
    /// For k bad events among n this writes about 2·k·log₂(n) ranges.
    async fn write_isolating(
        &self,
        tx: &mut Transaction<'_>,
        log: &[StoredEvent],
        known: &mut write::KnownKeys,
        bulk: &mut bulk::Bulk,
    ) -> Result<LoadSummary, LoadError> {
        let mut summary = LoadSummary::default();
        let mut refused = Vec::new();
        // ranges still to write, the next one last
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..log.len());
        while let Some(range) = todo.pop() {
            let (rows, rejects) = project(&self.mappings, &log[range.clone()]);
            let sp = tx
                .savepoint("dvault_range")
                .await
                .doing("starting a savepoint")?;
            match self
                .write_projected(&sp, &rows, &rejects, known, bulk)
                .await
            {
                Ok(part) => {
                    sp.commit().await.doing("releasing a savepoint")?;
                    summary.add(&part);
                }
                Err(e) if e.is_data() => {
                    sp.rollback().await.doing("rolling back to a savepoint")?;
                    // ROLLBACK TO keeps the savepoint: release it, or they nest
                    tx.batch_execute("RELEASE SAVEPOINT dvault_range")
                        .await
                        .doing("releasing a savepoint")?;
                    if range.len() == 1 {
                        let e_ = &log[range.start];
                        tracing::warn!(seq = e_.seq, error = %e, "event quarantined: the database refused its rows");
                        refused.push(Reject {
                            held: false,
                            seq: e_.seq,
                            event_type: e_.event_type.clone(),
                            reason: refusal(&e),
                            payload: e_.payload.clone(),
                        });
                    } else {
                        let mid = range.start + range.len() / 2;
                        todo.push(mid..range.end);
                        todo.push(range.start..mid);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        summary.rejected += store_rejects(tx, &refused).await?;
        Ok(summary)
    }
}

/// The reason a refused event is quarantined with: the database's own words.
fn refusal(e: &LoadError) -> String {
    match e {
        LoadError::Db { doing, source } => {
            let code = source.code().map(|c| c.code()).unwrap_or("?");
            format!(
                "the database refused its rows while {doing}: {} (SQLSTATE {code})",
                crate::db::Shown(source)
            )
        }
        other => format!("its rows cannot be written: {other}"),
    }
}

/// Lock the loader's checkpoint row and check that it is where the batch starts.
async fn lock_checkpoint(tx: &Transaction<'_>, after: Checkpoint) -> Result<(), LoadError> {
    let at = tx
        .query_opt(
            "SELECT xid, seq FROM ops.checkpoints WHERE consumer = $1 FOR UPDATE",
            &[&CONSUMER],
        )
        .await
        .doing("locking the checkpoint")?
        .map_or(Ok(Checkpoint::START), |r| {
            Ok(Checkpoint {
                xid: r.try_get(0)?,
                seq: r.try_get(1)?,
            })
        })
        .doing("locking the checkpoint")?;
    if at != after {
        return Err(LoadError::Internal(
            "the checkpoint moved while this batch was prepared (another loader ran without the lock); load again".into(),
        ));
    }
    Ok(())
}

/// Move the checkpoint to the batch's last event and commit.
async fn finish_batch(tx: Transaction<'_>, last: Checkpoint) -> Result<(), LoadError> {
    events::save_checkpoint(&tx, CONSUMER, last)
        .await
        .doing("saving the checkpoint")?;
    Ok(tx.commit().await.doing("committing the batch")?)
}

/// A batch read and projected, waiting to be written.
struct Prepared {
    /// The checkpoint it starts after, and its last event.
    after: Checkpoint,
    last: Checkpoint,
    events: u64,
    rows: Projected,
    rejects: Vec<Reject>,
    /// The events themselves, for when the database refuses the batch.
    log: Arc<Vec<StoredEvent>>,
    started: Instant,
}

impl Prepared {
    /// What writing this batch did, once written (`started`: when its write began).
    fn written(&self, mut summary: LoadSummary, started: Instant, what: &str) -> LoadSummary {
        summary.events = self.events;
        summary.batches = 1;
        summary.elapsed = self.started.elapsed();
        // the batch's span (`write_batch`, `write_bulk_batch`) gets its outcome
        tracing::Span::current()
            .record("rows", summary.rows_total())
            .record("rejected", summary.rejected)
            .record("ms", summary.elapsed.as_millis() as u64);
        tracing::info!(
            events = summary.events,
            rows = summary.rows_total(),
            rejected = summary.rejected,
            write_ms = started.elapsed().as_millis() as u64,
            "{what}"
        );
        summary
    }
}

/// Rows of a batch plus how many events it had.
pub struct Projected {
    pub rows: Rows,
    pub events: u64,
}

/// Blocking threads a batch is projected on (the writer and PostgreSQL use the rest).
const PROJECT_THREADS: usize = 2;

impl Projected {
    /// Add the rows of the events that follow this one's in the log.
    fn append(&mut self, next: Projected) {
        for (to, from) in self.rows.hubs.iter_mut().zip(next.rows.hubs) {
            to.extend(from);
        }
        for (to, from) in self.rows.links.iter_mut().zip(next.rows.links) {
            to.extend(from);
        }
        for (to, from) in self.rows.satellites.iter_mut().zip(next.rows.satellites) {
            to.extend(from);
        }
        self.events += next.events;
    }
}

impl std::ops::Deref for Projected {
    type Target = Rows;
    fn deref(&self) -> &Rows {
        &self.rows
    }
}

/// An event the loader could not project.
#[derive(Debug, Clone)]
pub struct Reject {
    /// Held back (no mapping for its type yet), not quarantined.
    pub held: bool,
    pub seq: i64,
    pub event_type: String,
    pub reason: String,
    pub payload: String,
}

/// Extract every event of a batch (pure CPU work).
pub fn project(m: &Mappings, batch: &[StoredEvent]) -> (Projected, Vec<Reject>) {
    let mut rows = Rows::new(m);
    let mut rejects = Vec::new();
    let mut sources: HashMap<&str, Arc<str>> = HashMap::new();
    for e in batch {
        let reject = |reason: String| Reject {
            held: false,
            seq: e.seq,
            event_type: e.event_type.clone(),
            reason,
            payload: e.payload.clone(),
        };
        if let Some(d) = &e.damaged {
            rejects.push(reject(format!(
                "a bundle that cannot be read as its events: {}; it stays in the log at seq {}, none of its {} events is loaded",
                d.why, e.seq, d.events
            )));
            continue;
        }
        let Some(em) = m.events.get(&e.event_type) else {
            if !m.skipped.contains(&e.event_type) {
                rejects.push(Reject {
                    held: true,
                    seq: e.seq,
                    event_type: e.event_type.clone(),
                    reason: String::new(),
                    payload: String::new(),
                });
            }
            continue;
        };
        let payload = match payload::Doc::parse(&e.payload) {
            Ok(p) => p,
            Err(err) => {
                rejects.push(reject(format!("the payload cannot be read: {err}")));
                continue;
            }
        };
        let source = sources
            .entry(e.source.as_str())
            .or_insert_with(|| Arc::from(e.source.as_str()))
            .clone();
        let origin = Arc::new(Origin {
            xid: e.xid.0,
            seq: e.seq,
            load_dts: e.recorded_at,
            applied_dts: e.occurred_at,
            source,
        });
        if let Err(reason) = extract::extract(m, em, &payload, origin, &mut rows) {
            rejects.push(reject(reason));
        }
    }
    (
        Projected {
            rows,
            // a damaged bundle counts as the events it says it holds, as the read did
            events: batch.iter().map(StoredEvent::covers).sum(),
        },
        rejects,
    )
}

async fn write_rows(
    tx: &Transaction<'_>,
    m: &Mappings,
    rows: &Rows,
    known: &mut write::KnownKeys,
    bulk: &mut bulk::Bulk,
) -> Result<LoadSummary, LoadError> {
    let mut summary = LoadSummary::default();
    // keys that did not exist before this batch: their satellites have no history
    let mut new_hubs = Vec::with_capacity(rows.hubs.len());
    for (h, hub_rows) in rows.hubs.iter().enumerate() {
        let t = Instant::now();
        if known.hubs[h].is_none() {
            // past the key memory limit: lookups need the indexes
            bulk.restore(tx, &m.table(&m.hubs[h].name)).await?;
        }
        let fresh = write::hubs(tx, m, h, hub_rows, known.hubs[h].as_ref()).await?;
        known.add_hub(h, &fresh);
        tracing::debug!(table = %m.hubs[h].name, ms = t.elapsed().as_millis() as u64, "hub");
        summary
            .rows
            .insert(m.hubs[h].name.clone(), fresh.len() as u64);
        new_hubs.push(fresh);
    }
    let mut new_links = Vec::with_capacity(rows.links.len());
    for (l, link_rows) in rows.links.iter().enumerate() {
        let t = Instant::now();
        if known.links[l].is_none() {
            bulk.restore(tx, &m.table(&m.links[l].name)).await?;
        }
        let fresh = write::links(tx, m, l, link_rows, known.links[l].as_ref()).await?;
        known.add_link(l, &fresh);
        tracing::debug!(table = %m.links[l].name, ms = t.elapsed().as_millis() as u64, "link");
        summary
            .rows
            .insert(m.links[l].name.clone(), fresh.len() as u64);
        new_links.push(fresh);
    }
    for (s, staged) in rows.satellites.iter().enumerate() {
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
    Ok(summary)
}

async fn store_rejects(tx: &Transaction<'_>, rejects: &[Reject]) -> Result<u64, LoadError> {
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

/// Empty the vault and the loader's checkpoint, then replay the whole log.
pub async fn rebuild(client: &mut Client, loader: &Loader) -> Result<LoadSummary, LoadError> {
    let m = loader.mappings();
    let mut tables: Vec<String> = m.hubs.iter().map(|h| h.name.clone()).collect();
    tables.extend(m.links.iter().map(|l| l.name.clone()));
    tables.extend(m.satellites.iter().map(|s| s.name.clone()));
    let list: Vec<String> = tables.iter().map(|t| m.table(t)).collect();
    let tx = client.transaction().await.doing("starting the rebuild")?;
    tx.batch_execute(&format!("TRUNCATE {}", list.join(", ")))
        .await
        .doing("emptying the vault")?;
    if m.is_customer_360() {
        business::truncate(&tx).await?;
    }
    tx.execute("DELETE FROM event_log.rejected WHERE stage = 'load'", &[])
        .await
        .doing("clearing load rejections")?;
    tx.execute("DELETE FROM ops.held_events", &[])
        .await
        .doing("clearing held-back events")?;
    tx.execute(
        "DELETE FROM ops.checkpoints WHERE consumer = $1",
        &[&CONSUMER],
    )
    .await
    .doing("resetting the checkpoint")?;
    tx.execute(
        "INSERT INTO ops.settings (name, value) VALUES ('hash_version', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[&HASH_VERSION],
    )
    .await
    .doing("recording the hash version")?;
    tx.commit().await.doing("committing the rebuild's reset")?;
    loader.run(client).await
}
