//! `dvault load`: project committed events after the checkpoint into the vault.
//!
//! One transaction per batch: read events after the checkpoint, extract rows per
//! mapping and hash them in Rust, stage them with `COPY ... BINARY`, insert new hub
//! and link rows and changed satellite versions with set-based SQL, quarantine the
//! events that do not fit, and move the checkpoint — all or nothing. A crash at any
//! point loses nothing and duplicates nothing.

mod apply;
pub mod bulk;
pub mod business;
mod checkpoint;
mod error;
pub mod extract;
mod held;
pub mod known;
pub mod outbox;
pub mod payload;
mod project;
mod rebuild;
pub mod rows;
pub mod satellite;
mod summary;
pub mod write;

pub use error::LoadError;
pub use project::{Projected, Reject, project};
pub use rebuild::rebuild;
pub use summary::{LoadSummary, Partial, Stop};

use apply::{store_rejects, write_rows};
use checkpoint::{finish_batch, lock_checkpoint};
use error::refusal;
use project::{PROJECT_THREADS, Prepared};

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db::Doing;
use crate::events::{self, Checkpoint, StoredEvent};
use crate::hash::HASH_VERSION;
use crate::mapping::{Mappings, catalog};
use rows::Rows;

/// Switch JIT off for a loader's session. Its statements are key lookups whose
/// estimated costs pass the server's JIT thresholds on large batches: on the stock
/// configuration, compiling one took about 95 ms and never paid (bench/README.md,
/// 2026-12-05).
async fn without_jit(client: &Client) -> Result<(), LoadError> {
    client
        .batch_execute("SET jit = off")
        .await
        .doing("switching JIT off for the loader's session")?;
    Ok(())
}

/// A connection that reads the next batch while one is written.
async fn read_ahead(url: &str) -> Result<Client, LoadError> {
    let reader = crate::db::connect(url)
        .await
        .map_err(|e| LoadError::Internal(format!("opening the read-ahead connection: {e}")))?;
    without_jit(&reader).await?;
    Ok(reader)
}

/// The checkpoint consumer name of the vault loader.
pub const CONSUMER: &str = "vault_loader";
/// Advisory lock held by the one loader allowed to write.
pub const LOADER_LOCK: i64 = 0x6476_6175_6c74_0002;

/// The loader: mappings checked against the database, ready to run batches.
#[derive(Clone)]
pub struct Loader {
    mappings: Arc<Mappings>,
    pub batch_size: i64,
    /// Take the bulk path ([`bulk`]) when some vault tables are empty and at least
    /// this many events wait; `None`: never.
    pub bulk_min_events: Option<i64>,
    /// At most this many hub and link keys are remembered in a run
    /// ([`known::KnownKeys`]).
    pub key_memory: usize,
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
            key_memory: known::KnownKeys::LIMIT,
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
        without_jit(client).await.map_err(Partial::nothing)?;
        crate::ops::analyze::log_before_run(&*client)
            .await
            .map_err(|e| Partial::nothing(LoadError::from(e)))?;
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
        let mut known = self.known_at_start(client).await?;
        if let Some(tables) = self.bulk_tables(&*client).await.map_err(Partial::nothing)? {
            // one transaction: on an error nothing of the run is committed
            let mut run = self.run_bulk(client, known, tables.clone(), stop).await;
            if let Err(e @ LoadError::ForgottenRepeat { .. }) = &run {
                tracing::warn!(error = %e, "starting the bulk run over, remembering every table");
                let mut again = self.known_at_start(client).await?;
                again.may_forget = false;
                run = self.run_bulk(client, again, tables, stop).await;
                if let Ok((summary, _)) = &mut run {
                    summary.started_over = true;
                }
            }
            match run {
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
            known = self.known_at_start(client).await?;
        }
        match &self.read_ahead {
            Some(url) => {
                let reader = read_ahead(url).await.map_err(Partial::nothing)?;
                self.run_pipelined(client, &reader, &mut known, stop).await
            }
            None => self.run_sequential(client, &mut known, stop).await,
        }
    }

    async fn known_at_start(&self, client: &Client) -> Result<known::KnownKeys, Partial> {
        known::KnownKeys::at_start(client, &self.mappings, self.key_memory)
            .await
            .doing("checking which vault tables are empty")
            .map_err(Partial::nothing)
    }

    async fn run_sequential(
        &self,
        client: &mut Client,
        known: &mut known::KnownKeys,
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
        known: &mut known::KnownKeys,
        stop: Stop<'_>,
    ) -> Result<LoadSummary, Partial> {
        let started = Instant::now();
        let mut total = LoadSummary::default();
        let at = events::load_checkpoint(writer, CONSUMER)
            .await
            .doing("reading the checkpoint")
            .map_err(Partial::nothing)?;
        let mut next = self
            .prepare(reader, at, None)
            .await
            .map_err(Partial::nothing)?;
        while let Some(batch) = next.take() {
            if stop() {
                return Err(total.ended(started, None));
            }
            let full = batch.events >= self.batch_size as u64;
            let last = batch.last;
            let (written, prepared) = if full {
                tokio::join!(
                    self.write_batch(writer, Some(reader), batch, known),
                    self.prepare(reader, last, None)
                )
            } else {
                (
                    self.write_batch(writer, Some(reader), batch, known).await,
                    Ok(None),
                )
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
        known: &mut known::KnownKeys,
    ) -> Result<Option<LoadSummary>, LoadError> {
        let at = events::load_checkpoint(client, CONSUMER)
            .await
            .doing("reading the checkpoint")?;
        match self.prepare(client, at, None).await? {
            Some(batch) => self.write_batch(client, None, batch, known).await.map(Some),
            None => Ok(None),
        }
    }

    /// Read up to a batch of events after `after` and project them; `beside`: the
    /// bulk run's transaction, which the read passes ([`events::read_after_beside`]).
    async fn prepare(
        &self,
        client: &impl GenericClient,
        after: Checkpoint,
        beside: Option<events::Xid8>,
    ) -> Result<Option<Prepared>, LoadError> {
        let started = Instant::now();
        let batch = events::read_after_beside(client, after, self.batch_size, beside)
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
    ///
    /// `reader`: the read-ahead connection, where the batch's keys and versions are
    /// looked up while its rows are written ([`apply`]).
    #[tracing::instrument(name = "batch", skip_all, fields(
        events = batch.events, after_seq = batch.after.seq, rows = tracing::field::Empty,
        rejected = tracing::field::Empty, ms = tracing::field::Empty))]
    async fn write_batch(
        &self,
        client: &mut Client,
        reader: Option<&Client>,
        batch: Prepared,
        known: &mut known::KnownKeys,
    ) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let tx = client.transaction().await.doing("starting a batch")?;
        lock_checkpoint(&tx, batch.after).await?;
        let summary = match self
            .write_projected(
                &tx,
                reader,
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

    /// The vault rows, the business vault and the quarantine of one projected batch;
    /// keys and versions looked up on `lookups` if given (see [`apply`]).
    async fn write_projected(
        &self,
        tx: &Transaction<'_>,
        lookups: Option<&Client>,
        rows: &Rows,
        rejects: &[Reject],
        known: &mut known::KnownKeys,
        bulk: &mut bulk::Bulk,
    ) -> Result<LoadSummary, LoadError> {
        let started = Instant::now();
        let (mut summary, new_links) =
            write_rows(tx, lookups, &self.mappings, rows, known, bulk).await?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "written");
        if self.mappings.is_customer_360() && !bulk.builds_business_vault() {
            business::refresh(tx, &self.mappings, rows, &new_links).await?;
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
        known: &mut known::KnownKeys,
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
                .write_projected(&sp, None, &rows, &rejects, known, bulk)
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
                            payload: e_.payload.json().into_owned(),
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
