//! `dvault ingest`: stream CSV and NDJSON files into the event log.
//!
//! A blocking thread reads and parses the file in batches while the async side
//! writes the previous batch with `COPY ... BINARY`, so both cores work. Bad rows go
//! to `event_log.rejected` and never stop the good ones. A file already ingested
//! (same content, same options) is recognised by its digest and skipped.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::csv_records::{Record, Records};
use super::csv_rows::{Header, RowSpec};
use super::limits::TimeRange;
use super::{NewEvent, append_salvaging_at, cloudevents, copy_in_at, is_data_error};
use crate::human::thousands;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Header row, RFC 4180 quoting, UTF-8; one event per row.
    Csv,
    /// One CloudEvents 1.0 JSON object per line.
    Ndjson,
}

impl Format {
    /// From the file name: `.csv`, `.ndjson` / `.jsonl`.
    pub fn detect(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// How to read the files of one `ingest` call.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Overrides detection by extension.
    pub format: Option<Format>,
    /// For CSV: what each row is. `None` is an error for CSV files.
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub time_field: Option<String>,
    /// The business time of what carries none (CSV rows without `time_field`,
    /// CloudEvents without `time`); `None`: the ingestion time (`--time`).
    pub time: Option<DateTime<Utc>>,
    pub batch_size: usize,
    /// Show a progress bar (only ever on a terminal).
    pub progress: bool,
    /// Business times outside it are refused (`--business-time-from` / `-until`).
    pub time_range: TimeRange,
    /// A file of at least this many rows, and at least as many as the log holds,
    /// takes the bulk path ([`super::bulk`]); `None` never (`--no-bulk`).
    pub bulk_min_rows: Option<u64>,
    /// CSV: store rows in [`super::bundle`]s of this many events (`--bundle`:
    /// [`super::bundle::ROWS`]), one log row each; no bulk path, a bundle's row costs
    /// nothing per event. `None`: one row per event.
    pub bundle: Option<usize>,
}

impl IngestOptions {
    /// The event type of the rows of a CSV file at `path`: `--type`, where `{name}`
    /// stands for the file's name without its extension (`tpch_{name}` makes
    /// `orders.csv` rows `tpch_orders`), so one call can ingest a folder of tables.
    pub fn event_type_of(&self, path: &Path) -> Option<String> {
        let name = path.file_stem().map(|s| s.to_string_lossy());
        let ty = self.event_type.as_deref()?;
        Some(ty.replace("{name}", name.as_deref().unwrap_or_default()))
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            format: None,
            event_type: None,
            source: None,
            time_field: None,
            time: None,
            batch_size: 20_000,
            progress: false,
            time_range: TimeRange::default(),
            bulk_min_rows: Some(super::bulk::MIN_ROWS),
            bundle: None,
        }
    }
}

/// A problem with a whole file: nothing of it was ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{path}: writing to the event log failed: {}",
        crate::db::Shown(source)
    )]
    Db {
        path: PathBuf,
        source: tokio_postgres::Error,
    },
}

/// What one file's ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub path: PathBuf,
    pub inserted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The very same file (content and options) was ingested before: nothing read.
    pub already_ingested_at: Option<DateTime<Utc>>,
    /// Written on the bulk path ([`super::bulk`]).
    pub bulk: bool,
    pub elapsed: Duration,
}

impl fmt::Display for IngestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.already_ingested_at {
            return write!(
                f,
                "{}: nothing new, this file was ingested at {} ({} events)",
                self.path.display(),
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                thousands(self.inserted)
            );
        }
        let rate = self.inserted as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{}: ingested {} events",
            self.path.display(),
            thousands(self.inserted)
        )?;
        let mut notes = Vec::new();
        if self.rejected > 0 {
            notes.push(format!(
                "{} rejected: see dvault rejected",
                thousands(self.rejected)
            ));
        }
        if self.duplicates > 0 {
            notes.push(format!("{} already in the log", thousands(self.duplicates)));
        }
        if self.bulk {
            notes.push("bulk: the log was locked meanwhile".into());
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join("; "))?;
        }
        write!(
            f,
            " in {:.2} s, {} events/s",
            self.elapsed.as_secs_f64(),
            thousands(rate as u64)
        )
    }
}

/// A row or line that could not become an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

/// Text safe for a `text` column: invalid UTF-8 replaced, NUL shown as `\0`.
pub fn printable(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\0', "\\0")
}

/// One parsed slice of the file.
pub(super) struct Batch {
    pub(super) events: Vec<NewEvent>,
    /// The line of each event, for a quarantine by the database (see [`write_batch`]).
    pub(super) lines: Vec<u64>,
    pub(super) rejects: Vec<Rejection>,
    /// Bytes of the file read so far.
    pub(super) position: u64,
}

pub(super) enum Parsed {
    Batch(Batch),
    /// The file cannot be read at all (I/O error, unusable header).
    Fatal(IngestError),
}

/// Ingest one file. `client` must not be inside a transaction.
pub async fn ingest_file(
    client: &mut Client,
    path: &Path,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    ingest_file_streams(std::slice::from_mut(client), path, opts).await
}

/// [`ingest_file`] on several connections at once (none inside a transaction): the
/// batches of the file are written concurrently, one transaction each, while the
/// PostgreSQL side of an append (a single backend's work per connection) takes
/// more than one core. The log still holds the file in file order: each batch
/// takes its place in the log ([`super::reserve_seqs`]: transaction id and `seq`s)
/// in turn, before it is written.
pub async fn ingest_file_streams(
    clients: &mut [Client],
    path: &Path,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let Some(client) = clients.first_mut() else {
        return Err(IngestError::File {
            path: path.to_path_buf(),
            message: "no database connection to ingest with".into(),
        });
    };
    let started = Instant::now();
    let file_err = |message: String| IngestError::File {
        path: path.to_path_buf(),
        message,
    };
    let format = opts
        .format
        .or_else(|| Format::detect(path))
        .ok_or_else(|| {
            file_err(
                "cannot tell the format from the file name; use --format csv or --format ndjson"
                    .into(),
            )
        })?;
    let spec = match format {
        Format::Csv => Some(RowSpec {
            event_type: opts.event_type_of(path).ok_or_else(|| {
                file_err("a CSV file needs --type EVENT_TYPE (what each row is)".into())
            })?,
            source: opts.source.clone().ok_or_else(|| {
                file_err("a CSV file needs --source NAME (where it came from)".into())
            })?,
            time_field: opts.time_field.clone(),
        }),
        Format::Ndjson => None,
    };
    if let Some(spec) = &spec {
        spec.check().map_err(file_err)?;
    }
    let range = opts.time_range;
    let (digest, lines) = {
        let owned = path.to_path_buf();
        let mut key = format!("{format:?}\u{1f}{spec:?}");
        // another range may accept other rows: not the same ingest (the default
        // range leaves the digests of earlier ingests as they were)
        if range != TimeRange::default() {
            key.push_str(&format!("\u{1f}{range}"));
        }
        tokio::task::spawn_blocking(move || file_digest(&owned, &key))
            .await
            .map_err(|e| file_err(e.to_string()))?
            .map_err(|source| IngestError::Io {
                path: path.to_path_buf(),
                source,
            })?
    };
    let db_err = |source| IngestError::Db {
        path: path.to_path_buf(),
        source,
    };
    if let Some(row) = client
        .query_opt(
            "SELECT ingested_at, events FROM ops.ingested_files WHERE digest = $1",
            &[&digest.as_slice()],
        )
        .await
        .map_err(db_err)?
    {
        return Ok(IngestSummary {
            path: path.to_path_buf(),
            inserted: row.try_get::<_, i64>(1).map_err(db_err)? as u64,
            already_ingested_at: Some(row.try_get(0).map_err(db_err)?),
            elapsed: started.elapsed(),
            ..IngestSummary::default()
        });
    }

    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let progress = progress_bar(opts.progress, size, path);
    let display_path = path.display().to_string();
    let mut summary = IngestSummary {
        path: path.to_path_buf(),
        ..IngestSummary::default()
    };
    let bundled = opts.bundle.filter(|_| spec.is_some());
    if opts.bundle.is_some() && bundled.is_none() {
        tracing::warn!(
            file = %display_path,
            "--bundle applies to CSV files: the CloudEvents of an NDJSON file keep their own ids, one log row each"
        );
    }
    let bulk = match opts.bulk_min_rows {
        Some(_) if bundled.is_some() => false,
        Some(min) => {
            let log_rows = super::bulk::log_rows(client).await.map_err(db_err)?;
            super::bulk::chosen(lines, log_rows, min)
        }
        None => false,
    };
    if bulk {
        let (mut rx, reader) = start_reader(path, &spec, opts, BatchLimit::rows(opts.batch_size))?;
        let source = spec.as_ref().map(|s| s.source.as_str());
        let outcome = super::bulk::ingest(
            client,
            &mut rx,
            source,
            lines,
            &display_path,
            &digest,
            &progress,
        )
        .await;
        drop(rx);
        reader.await.map_err(|e| file_err(e.to_string()))?;
        match outcome {
            Ok(super::bulk::Outcome::Done(c)) => {
                summary.inserted = c.inserted;
                summary.duplicates = c.duplicates;
                summary.rejected = c.rejected;
                summary.bulk = true;
            }
            Ok(super::bulk::Outcome::Fallback(why)) => {
                tracing::warn!(file = %display_path, "{why}: ingesting the file batch by batch");
                progress.set_position(0);
            }
            Err(StreamError::Fatal(e)) => return Err(e),
            Err(StreamError::Db(source)) => return Err(db_err(source)),
        }
    }
    if !summary.bulk {
        let limit = match bundled {
            // a bundle is closed at its rows or its bytes, whichever comes first
            Some(rows) => BatchLimit {
                rows,
                bytes: super::bundle::MAX_BYTES,
            },
            None => BatchLimit::rows(opts.batch_size),
        };
        let (rx, reader) = start_reader(path, &spec, opts, limit)?;
        let queue = tokio::sync::Mutex::new(rx);
        let stream = Stream {
            queue: &queue,
            file: &display_path,
            digest: &digest,
            progress: &progress,
            bundled: bundled.is_some(),
        };
        let streams = clients
            .iter_mut()
            .map(|client| write_stream(client, &stream));
        let counts = futures_util::future::try_join_all(streams)
            .await
            .map_err(|e| match e {
                StreamError::Fatal(e) => e,
                StreamError::Db(source) => db_err(source),
            })?;
        for c in counts {
            summary.inserted += c.inserted;
            summary.duplicates += c.duplicates;
            summary.rejected += c.rejected;
        }
        drop(queue);
        reader.await.map_err(|e| file_err(e.to_string()))?;
    }
    let client = clients
        .first_mut()
        .ok_or_else(|| file_err("no connection".into()))?;
    progress.finish_and_clear();

    client
        .execute(
            "INSERT INTO ops.ingested_files (digest, path, format, events, duplicates, rejected)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING",
            &[
                &digest.as_slice(),
                &display_path,
                &format!("{format:?}").to_lowercase(),
                &(summary.inserted as i64),
                &(summary.duplicates as i64),
                &(summary.rejected as i64),
            ],
        )
        .await
        .map_err(db_err)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Open the file and parse it on a blocking thread, handing batches to the channel.
fn start_reader(
    path: &Path,
    spec: &Option<RowSpec>,
    opts: &IngestOptions,
    limit: BatchLimit,
) -> Result<(mpsc::Receiver<Parsed>, tokio::task::JoinHandle<()>), IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<Parsed>(2);
    let path = path.to_path_buf();
    let spec = spec.clone();
    let range = opts.time_range;
    let received_at = opts.time.unwrap_or_else(Utc::now);
    let reader = tokio::task::spawn_blocking(move || match spec {
        Some(spec) => parse_csv(file, &path, &spec, limit, received_at, &range, &tx),
        None => parse_ndjson(file, &path, limit, received_at, &range, &tx),
    });
    Ok((rx, reader))
}

fn progress_bar(wanted: bool, size: u64, path: &Path) -> indicatif::ProgressBar {
    if !wanted || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(path.display().to_string());
    bar
}

/// What one stream appended.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) inserted: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
}

pub(super) enum StreamError {
    Fatal(IngestError),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StreamError {
    fn from(e: tokio_postgres::Error) -> Self {
        StreamError::Db(e)
    }
}

/// What the writing connections of one file share.
struct Stream<'a> {
    /// The parsed batches, in file order.
    queue: &'a tokio::sync::Mutex<mpsc::Receiver<Parsed>>,
    file: &'a str,
    digest: &'a [u8; 32],
    progress: &'a indicatif::ProgressBar,
    /// Each batch is one [`super::bundle`].
    bundled: bool,
}

/// One connection's share of a file: take the next batch and its place in the log
/// while holding the queue (so places are taken in file order), then write it.
async fn write_stream(client: &mut Client, stream: &Stream<'_>) -> Result<Counts, StreamError> {
    let Stream {
        queue,
        file,
        digest,
        progress,
        bundled,
    } = *stream;
    let mut counts = Counts::default();
    // After a batch that met events already in the log, look for them before the
    // next one: the rest of a re-sent snapshot then costs one probe per id instead
    // of a failed `COPY` and an `ON CONFLICT` insert of every payload. A file of new
    // events pays nothing (probing its first batch cost 30% more on TPC-H's deltas).
    let mut check = false;
    loop {
        let mut next = queue.lock().await;
        let batch = match next.recv().await {
            None => return Ok(counts),
            Some(Parsed::Fatal(e)) => return Err(StreamError::Fatal(e)),
            Some(Parsed::Batch(batch)) => batch,
        };
        let mut attempt = 1;
        let mut tx = client.transaction().await?;
        let mut seqs = super::reserve_seqs(&tx, batch.events.len()).await?;
        drop(next);
        let (appended, rejected) = loop {
            let written = match bundled {
                true => write_bundle(tx, &batch, &seqs, file, digest).await,
                false => write_batch(tx, &batch, &seqs, check, file, digest).await,
            };
            match written {
                Err(e) if super::is_deadlock(&e) && attempt < super::APPEND_ATTEMPTS => {
                    // PostgreSQL cancelled this transaction to break a deadlock with
                    // another writer of the same new events: a new place, after the
                    // batches placed meanwhile (only a file that repeats its own rows
                    // can meet itself this way)
                    tracing::warn!(
                        file,
                        attempt,
                        "deadlock with another writer; writing the batch again"
                    );
                    tokio::time::sleep(super::deadlock_pause(attempt)).await;
                    attempt += 1;
                    tx = client.transaction().await?;
                    seqs = super::reserve_seqs(&tx, batch.events.len()).await?;
                }
                done => break done?,
            }
        };
        check = appended.duplicates > 0;
        counts.inserted += appended.inserted;
        counts.duplicates += appended.duplicates;
        counts.rejected += rejected;
        progress.set_position(progress.position().max(batch.position));
    }
}

/// Write a batch at its place in the log (`seqs`, in `tx`) and commit: the fast
/// `COPY` path, of the events not in the log yet when `check` asks to look first
/// ([`super::logged`]); when the `COPY` meets an event already in the log, or the
/// database refuses one (a data error: see [`is_data_error`]), the `ON CONFLICT DO
/// NOTHING` path in the same transaction (so at the same place), which quarantines
/// each refused event at its line and stores the rest. Rejections ride along.
async fn write_batch(
    tx: tokio_postgres::Transaction<'_>,
    batch: &Batch,
    seqs: &[i64],
    check: bool,
    file: &str,
    digest: &[u8; 32],
) -> Result<(super::Appended, u64), tokio_postgres::Error> {
    let logged = match check {
        true => super::logged(&tx, &batch.events).await?,
        false => Vec::new(),
    };
    let (events, at): (Cow<[NewEvent]>, Cow<[i64]>) = if logged.is_empty() {
        (Cow::Borrowed(&batch.events), Cow::Borrowed(seqs))
    } else {
        let mut skip = logged.iter().copied().peekable();
        let (events, at) = (batch.events.iter().zip(seqs).enumerate())
            .filter(|(i, _)| skip.next_if_eq(i).is_none())
            .map(|(_, (e, seq))| (e.clone(), *seq))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        (Cow::Owned(events), Cow::Owned(at))
    };
    tx.batch_execute("SAVEPOINT dvault_copy").await?;
    match copy_in_at(&tx, &events, Some(&at)).await {
        Ok(n) => {
            tx.batch_execute("RELEASE SAVEPOINT dvault_copy").await?;
            let rejected = store_rejections(&tx, &batch.rejects, file, digest).await?;
            tx.commit().await?;
            let appended = super::Appended {
                inserted: n,
                duplicates: logged.len() as u64,
            };
            return Ok((appended, rejected));
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) || is_data_error(&e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT dvault_copy; RELEASE SAVEPOINT dvault_copy")
                .await?;
        }
        Err(e) => return Err(e),
    }
    let (appended, refused) = append_salvaging_at(&tx, &batch.events, Some(seqs)).await?;
    let mut rejects = batch.rejects.clone();
    for r in refused {
        let line = batch.lines.get(r.index).copied().unwrap_or_default();
        tracing::warn!(file, line, sqlstate = %r.code, "the database refused an event: quarantined");
        rejects.push(Rejection {
            line,
            reason: r.reason,
            raw: batch
                .events
                .get(r.index)
                .map(super::render)
                .unwrap_or_default(),
        });
    }
    let rejected = store_rejections(&tx, &rejects, file, digest).await?;
    tx.commit().await?;
    Ok((appended, rejected))
}

/// Write a batch as one [`super::bundle`] at its place in the log (`seqs`, in `tx`)
/// and commit; a bundle already in the log (the same rows, from a run that stopped
/// after it) is not stored again. Rejections ride along.
async fn write_bundle(
    tx: tokio_postgres::Transaction<'_>,
    batch: &Batch,
    seqs: &[i64],
    file: &str,
    digest: &[u8; 32],
) -> Result<(super::Appended, u64), tokio_postgres::Error> {
    let mut appended = super::Appended::default();
    if let (Some(first), Some(&line), Some(seq)) =
        (batch.events.first(), batch.lines.first(), seqs.first())
    {
        let b = super::bundle::encode(&batch.events, seqs, file, line);
        let size = batch.events.len() as i32;
        let stored = tx
            .execute(
                "INSERT INTO event_log.events
                        (seq, event_id, event_type, record_source, occurred_at, payload, bundle, bundle_size)
                 OVERRIDING SYSTEM VALUE
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (record_source, event_id) DO NOTHING",
                &[
                    seq,
                    &b.id,
                    &first.event_type,
                    &first.source,
                    &b.occurred_at,
                    &super::RawJson(&b.summary),
                    &b.text,
                    &size,
                ],
            )
            .await?;
        match stored {
            1 => appended.inserted = size as u64,
            _ => appended.duplicates = size as u64,
        }
    }
    let rejected = store_rejections(&tx, &batch.rejects, file, digest).await?;
    tx.commit().await?;
    Ok((appended, rejected))
}

/// Quarantine rejected input; a line already quarantined from the same input is
/// not stored twice. Returns how many rejections the batch had.
pub async fn store_rejections(
    client: &impl GenericClient,
    rejects: &[Rejection],
    file: &str,
    digest: &[u8; 32],
) -> Result<u64, tokio_postgres::Error> {
    if rejects.is_empty() {
        return Ok(0);
    }
    let lines: Vec<i64> = rejects.iter().map(|r| r.line as i64).collect();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
    let raws: Vec<&str> = rejects.iter().map(|r| r.raw.as_str()).collect();
    client
        .execute(
            "INSERT INTO event_log.rejected (stage, file, line, input_digest, reason, raw)
             SELECT 'ingest', $1, line, $2, reason, raw
               FROM unnest($3::bigint[], $4::text[], $5::text[]) AS r(line, reason, raw)
             ON CONFLICT (input_digest, line) WHERE stage = 'ingest' DO NOTHING",
            &[&file, &digest.as_slice(), &lines, &reasons, &raws],
        )
        .await?;
    Ok(rejects.len() as u64)
}

/// SHA-256 of the ingest options and the file's bytes, and how many lines it has
/// (about its rows: quoted fields may hold line breaks).
fn file_digest(path: &Path, options: &str) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    h.update(options.as_bytes());
    h.update([0]);
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok((h.finalize().into(), lines))
}

/// When the reader hands a batch on: at `rows` rows (events and rejections) or once
/// its payloads hold `bytes`, whichever comes first.
#[derive(Debug, Clone, Copy)]
struct BatchLimit {
    rows: usize,
    bytes: usize,
}

impl BatchLimit {
    fn rows(rows: usize) -> BatchLimit {
        BatchLimit {
            rows: rows.max(1),
            bytes: usize::MAX,
        }
    }
}

/// Collects parsed rows and hands full batches to the writer.
struct Batcher<'a> {
    batch: Batch,
    /// Payload bytes in `batch`.
    bytes: usize,
    limit: BatchLimit,
    tx: &'a mpsc::Sender<Parsed>,
}

impl<'a> Batcher<'a> {
    fn new(limit: BatchLimit, tx: &'a mpsc::Sender<Parsed>) -> Self {
        let size = limit.rows.min(100_000);
        Batcher {
            batch: Batch {
                events: Vec::with_capacity(size),
                lines: Vec::with_capacity(size),
                rejects: Vec::new(),
                position: 0,
            },
            bytes: 0,
            limit,
            tx,
        }
    }

    /// Returns false when the writer has gone away (it failed): stop reading.
    fn push(&mut self, line: u64, item: Result<NewEvent, Rejection>, position: u64) -> bool {
        match item {
            Ok(e) => {
                self.bytes += e.payload.len();
                self.batch.events.push(e);
                self.batch.lines.push(line);
            }
            Err(r) => self.batch.rejects.push(r),
        }
        self.batch.position = position;
        if self.batch.events.len() + self.batch.rejects.len() >= self.limit.rows
            || self.bytes >= self.limit.bytes
        {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        let position = self.batch.position;
        let size = self.limit.rows.min(100_000);
        self.bytes = 0;
        let full = std::mem::replace(
            &mut self.batch,
            Batch {
                events: Vec::with_capacity(size),
                lines: Vec::with_capacity(size),
                rejects: Vec::new(),
                position,
            },
        );
        if full.events.is_empty() && full.rejects.is_empty() {
            return true;
        }
        self.tx.blocking_send(Parsed::Batch(full)).is_ok()
    }
}

fn parse_csv(
    file: File,
    path: &Path,
    spec: &RowSpec,
    limit: BatchLimit,
    received_at: DateTime<Utc>,
    range: &TimeRange,
    tx: &mpsc::Sender<Parsed>,
) {
    let mut batcher = Batcher::new(limit, tx);
    let mut open = true;
    let input = BufReader::with_capacity(1 << 20, file);
    let read = read_csv(input, spec, received_at, range, |line, item, position| {
        open = batcher.push(line, item, position);
        open
    });
    match read {
        Err(message) => {
            let _ = tx.blocking_send(Parsed::Fatal(IngestError::File {
                path: path.to_path_buf(),
                message,
            }));
        }
        Ok(()) if open => {
            batcher.flush();
        }
        Ok(()) => {}
    }
}

/// Every row of a CSV file, in order, as an event or a rejection, handed to `emit`
/// with its line and the bytes read so far; `emit` returns false to stop. `Err` is a
/// problem with the whole file (empty, unusable header, unreadable).
pub fn read_csv(
    input: impl BufRead,
    spec: &RowSpec,
    received_at: DateTime<Utc>,
    range: &TimeRange,
    mut emit: impl FnMut(u64, Result<NewEvent, Rejection>, u64) -> bool,
) -> Result<(), String> {
    let mut records = Records::new(input);
    let mut record = Record::default();
    let header = match records.next_record(&mut record) {
        Ok(Some(Ok(()))) => Header::parse(&record.fields(), spec)
            .map_err(|message| format!("line {}: {message}", record.line))?,
        Ok(Some(Err(m))) => return Err(format!("line {}: the header: {}", m.line, m.reason)),
        Ok(None) => return Err("the file is empty: a CSV file needs a header row".into()),
        Err(e) => return Err(format!("cannot read the header: {e}")),
    };
    records.expect_fields(header.len());
    loop {
        let item = match records.next_record(&mut record) {
            Ok(Some(Ok(()))) => header
                .event(&record.fields(), spec, received_at, range)
                .map_err(|reason| Rejection {
                    line: record.line,
                    reason,
                    raw: printable(record.raw()),
                }),
            Ok(Some(Err(m))) => Err(Rejection {
                line: m.line,
                reason: m.reason,
                raw: printable(&m.raw),
            }),
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("line {}: cannot read: {e}", record.line)),
        };
        let line = match &item {
            Ok(_) => record.line,
            Err(r) => r.line,
        };
        if !emit(line, item, records.position()) {
            return Ok(());
        }
    }
}

fn parse_ndjson(
    file: File,
    path: &Path,
    limit: BatchLimit,
    received_at: DateTime<Utc>,
    range: &TimeRange,
    tx: &mpsc::Sender<Parsed>,
) {
    let mut batcher = Batcher::new(limit, tx);
    let mut open = true;
    let input = BufReader::with_capacity(1 << 20, file);
    let read = read_ndjson(input, received_at, range, |line, item, position| {
        open = batcher.push(line, item, position);
        open
    });
    match read {
        Err(source) => {
            let _ = tx.blocking_send(Parsed::Fatal(IngestError::Io {
                path: path.to_path_buf(),
                source,
            }));
        }
        Ok(()) if open => {
            batcher.flush();
        }
        Ok(()) => {}
    }
}

/// Every line of an NDJSON file, in order, as an event or a rejection, handed to
/// `emit` with its line and the bytes read so far; `emit` returns false to stop.
/// Lines end with `\n`, `\r\n` or a lone `\r` (raw CRs cannot be inside a JSON
/// string); blank lines are skipped.
pub fn read_ndjson(
    mut input: impl BufRead,
    received_at: DateTime<Utc>,
    range: &TimeRange,
    mut emit: impl FnMut(u64, Result<NewEvent, Rejection>, u64) -> bool,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut position = 0u64;
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf)? {
            0 => return Ok(()),
            n => position += n as u64,
        }
        let mut chunk = buf.as_slice();
        if line_no == 0 {
            chunk = chunk.strip_prefix(b"\xef\xbb\xbf").unwrap_or(chunk);
        }
        let ended = chunk.ends_with(b"\n") || chunk.ends_with(b"\r");
        chunk = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        chunk = chunk.strip_suffix(b"\r").unwrap_or(chunk);
        let mut lines = chunk.split(|&b| b == b'\r').peekable();
        while let Some(line) = lines.next() {
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let truncated = !ended && lines.peek().is_none();
            let item = match std::str::from_utf8(line) {
                Err(e) => Err(format!(
                    "invalid UTF-8 (bad byte at offset {})",
                    e.valid_up_to()
                )),
                Ok(text) => cloudevents::parse_within(text, received_at, range).map_err(|reason| {
                    if truncated {
                        format!("{reason} (the last line has no newline: truncated file?)")
                    } else {
                        reason
                    }
                }),
            }
            .map_err(|reason| Rejection {
                line: line_no,
                reason,
                raw: printable(line),
            });
            if !emit(line_no, item, position) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_may_name_each_file() {
        let opts = IngestOptions {
            event_type: Some("tpch_{name}".into()),
            ..IngestOptions::default()
        };
        let of = |p: &str| opts.event_type_of(Path::new(p));
        assert_eq!(of("data/orders.csv").as_deref(), Some("tpch_orders"));
        assert_eq!(
            of("lineitem.2024.csv").as_deref(),
            Some("tpch_lineitem.2024")
        );
        let plain = IngestOptions {
            event_type: Some("customer_registered".into()),
            ..IngestOptions::default()
        };
        assert_eq!(
            plain.event_type_of(Path::new("x.csv")).as_deref(),
            Some("customer_registered")
        );
        assert_eq!(
            IngestOptions::default().event_type_of(Path::new("x.csv")),
            None
        );
    }

    #[test]
    fn a_batch_closes_at_its_rows_or_its_bytes() {
        let (tx, mut rx) = mpsc::channel::<Parsed>(16);
        let mut batcher = Batcher::new(BatchLimit { rows: 3, bytes: 10 }, &tx);
        let event = |payload: &str| {
            Ok(NewEvent {
                event_id: payload.into(),
                event_type: "t".into(),
                source: "s".into(),
                occurred_at: Utc::now(),
                payload: payload.into(),
            })
        };
        for (line, p) in ["{\"a\"}", "{\"b\"}", "{\"c\"}", "{}", "{}", "{}"]
            .into_iter()
            .enumerate()
        {
            assert!(batcher.push(line as u64 + 2, event(p), 0));
        }
        assert!(batcher.flush());
        drop(tx);
        let mut sizes = Vec::new();
        while let Ok(Parsed::Batch(b)) = rx.try_recv() {
            sizes.push(b.events.len());
        }
        // 5 + 5 bytes reach 10: a batch of 2; then three rows of 2 bytes: the rows
        // close it; the last one is flushed alone
        assert_eq!(sizes, vec![2, 3, 1]);
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(Format::detect(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(Format::detect(Path::new("x.ndjson")), Some(Format::Ndjson));
        assert_eq!(Format::detect(Path::new("x.jsonl")), Some(Format::Ndjson));
        assert_eq!(Format::detect(Path::new("x.txt")), None);
    }
}
