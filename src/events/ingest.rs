//! `dvault ingest`: stream CSV and NDJSON files into the event log.
//!
//! A blocking thread reads and parses the file in batches while the async side
//! writes the previous batch with `COPY ... BINARY`, so both cores work. Bad rows go
//! to `event_log.rejected` and never stop the good ones. A file already ingested
//! (same content, same options) is recognised by its digest and skipped.

use std::fmt;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tokio_postgres::{Client, GenericClient};

use super::csv_rows::RowSpec;
use super::limits::TimeRange;
use super::snapshot;
use crate::human::thousands;

mod append;
mod read;

pub use append::store_rejections;
pub(crate) use append::{Counts, StreamError};
use append::{Stream, write_stream};
pub(crate) use read::{Batch, Parsed};
use read::{BatchLimit, file_digest, start_reader};
pub use read::{Item, read_csv, read_ndjson};

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
    /// Each CSV file is a whole snapshot of its feed (`--snapshot`, with bundles): only
    /// rows that are not a row of the feed's last file are stored
    /// ([`super::snapshot`]).
    pub snapshot: bool,
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
            snapshot: false,
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
    /// Rows of a snapshot file not stored: its feed's last file held them.
    pub unchanged: u64,
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
        // every row of the file, stored or not: how fast the file went through
        let rows = self.inserted + self.duplicates + self.unchanged + self.rejected;
        let rate = rows as f64 / self.elapsed.as_secs_f64().max(1e-9);
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
        if self.unchanged > 0 {
            notes.push(format!(
                "{} unchanged since the last snapshot",
                thousands(self.unchanged)
            ));
        }
        if self.bulk {
            notes.push("bulk: the log was locked meanwhile".into());
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join("; "))?;
        }
        write!(
            f,
            " in {:.2} s, {} rows/s",
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

/// Held, shared, by each file ingest while it stores its file (on its first
/// connection): a first load into an empty vault that runs meanwhile follows the log
/// until no file ingest holds it ([`ingesting`]; `load::bulk`). Streams, which never
/// end, and the API's appends do not take it.
pub const INGEST_LOCK: i64 = 0x6476_6175_6c74_0004;

/// Is a file ingest storing a file in this database now ([`INGEST_LOCK`])?
pub async fn ingesting(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_locks l
                             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                               AND (l.classid::bigint << 32 | l.objid::bigint) = $1)",
            &[&INGEST_LOCK],
        )
        .await?
        .try_get(0)
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
    let Some(client) = clients.first() else {
        return Err(file_err(path, "no database connection to ingest with"));
    };
    // a first load running meanwhile follows the file until it is in (`load::bulk`)
    hold_ingest_lock(client, true)
        .await
        .map_err(|source| IngestError::Db {
            path: path.to_path_buf(),
            source,
        })?;
    let ingested = ingest_file_held(clients, path, opts).await;
    if let Some(client) = clients.first()
        && let Err(e) = hold_ingest_lock(client, false).await
    {
        tracing::warn!(file = %path.display(), error = %crate::db::Shown(&e), "releasing the ingest lock");
    }
    ingested
}

/// Take (`true`) or release [`INGEST_LOCK`] on `client`'s session. Taken twice, it
/// is released twice: `dvault ingest` holds it over all its files, each file over
/// itself.
pub async fn hold_ingest_lock(client: &Client, take: bool) -> Result<(), tokio_postgres::Error> {
    let sql = match take {
        true => "SELECT pg_advisory_lock_shared($1)",
        false => "SELECT pg_advisory_unlock_shared($1)",
    };
    client.execute(sql, &[&INGEST_LOCK]).await.map(drop)
}

async fn ingest_file_held(
    clients: &mut [Client],
    path: &Path,
    opts: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    let Some(client) = clients.first_mut() else {
        return Err(file_err(path, "no database connection to ingest with"));
    };
    let (format, spec) = what_file(path, opts)?;
    let (digest, lines) = digest(path, format, &spec, opts.time_range).await?;
    let db_err = |source| IngestError::Db {
        path: path.to_path_buf(),
        source,
    };
    if let Some(mut done) = already_ingested(client, &digest, path).await? {
        done.elapsed = started.elapsed();
        return Ok(done);
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let shown = path.display().to_string();
    let bundle = bundle(opts, &spec, &shown);
    let file = Ingest {
        snapshot: match (opts.snapshot, bundle, &spec) {
            (false, _, _) => None,
            (true, Some(_), Some(spec)) => Some(spec.clone()),
            (true, _, _) => {
                return Err(file_err(
                    path,
                    "--snapshot needs --bundle and a CSV file: it filters a bundled feed's rows (one row per event already stores a re-sent row once)",
                ));
            }
        },
        bundle,
        path,
        opts,
        spec,
        shown,
        digest,
        lines,
        progress: progress_bar(opts.progress, size, path),
    };
    if let Some(spec) = &file.snapshot {
        snapshot::lock(client, spec).await.map_err(db_err)?;
    }
    let stored = file.store(clients, format).await;
    if let (Some(spec), Some(client)) = (&file.snapshot, clients.first())
        && let Err(e) = snapshot::unlock(client, spec).await
    {
        tracing::warn!(file = %file.shown, error = %crate::db::Shown(&e), "releasing the snapshot feed's lock");
    }
    let mut summary = stored?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn file_err(path: &Path, message: impl Into<String>) -> IngestError {
    IngestError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The file's format, and for a CSV file what its rows are.
fn what_file(path: &Path, opts: &IngestOptions) -> Result<(Format, Option<RowSpec>), IngestError> {
    let format = opts
        .format
        .or_else(|| Format::detect(path))
        .ok_or_else(|| {
            file_err(
                path,
                "cannot tell the format from the file name; use --format csv or --format ndjson",
            )
        })?;
    let spec = match format {
        Format::Csv => Some(RowSpec {
            event_type: opts.event_type_of(path).ok_or_else(|| {
                file_err(
                    path,
                    "a CSV file needs --type EVENT_TYPE (what each row is)",
                )
            })?,
            source: opts.source.clone().ok_or_else(|| {
                file_err(path, "a CSV file needs --source NAME (where it came from)")
            })?,
            time_field: opts.time_field.clone(),
        }),
        Format::Ndjson => None,
    };
    if let Some(spec) = &spec {
        spec.check().map_err(|m| file_err(path, m))?;
    }
    Ok((format, spec))
}

/// The digest that recognises this file ingested with these options again, and how
/// many lines it has.
async fn digest(
    path: &Path,
    format: Format,
    spec: &Option<RowSpec>,
    range: TimeRange,
) -> Result<([u8; 32], u64), IngestError> {
    let owned = path.to_path_buf();
    let mut key = format!("{format:?}\u{1f}{spec:?}");
    // another range may accept other rows: not the same ingest (the default range
    // leaves the digests of earlier ingests as they were)
    if range != TimeRange::default() {
        key.push_str(&format!("\u{1f}{range}"));
    }
    tokio::task::spawn_blocking(move || file_digest(&owned, &key))
        .await
        .map_err(|e| file_err(path, e.to_string()))?
        .map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// What an earlier ingest of the very same file stored, if there was one.
async fn already_ingested(
    client: &Client,
    digest: &[u8; 32],
    path: &Path,
) -> Result<Option<IngestSummary>, IngestError> {
    let db_err = |source| IngestError::Db {
        path: path.to_path_buf(),
        source,
    };
    let Some(row) = client
        .query_opt(
            "SELECT ingested_at, events FROM ops.ingested_files WHERE digest = $1",
            &[&digest.as_slice()],
        )
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    Ok(Some(IngestSummary {
        path: path.to_path_buf(),
        inserted: row.try_get::<_, i64>(1).map_err(db_err)? as u64,
        already_ingested_at: Some(row.try_get(0).map_err(db_err)?),
        ..IngestSummary::default()
    }))
}

/// Events per bundle, if the file is stored in bundles: only a CSV file is.
fn bundle(opts: &IngestOptions, spec: &Option<RowSpec>, shown: &str) -> Option<usize> {
    let bundle = opts.bundle.filter(|_| spec.is_some());
    if opts.bundle.is_some() && bundle.is_none() {
        tracing::warn!(
            file = %shown,
            "--bundle applies to CSV files: the CloudEvents of an NDJSON file keep their own ids, one log row each"
        );
    }
    bundle
}

/// A file on its way into the log.
struct Ingest<'a> {
    path: &'a Path,
    opts: &'a IngestOptions,
    spec: Option<RowSpec>,
    /// Events per bundle, when stored in bundles.
    bundle: Option<usize>,
    /// The feed, when the file is a snapshot of it (`--snapshot`).
    snapshot: Option<RowSpec>,
    /// The path as messages and the quarantine show it.
    shown: String,
    digest: [u8; 32],
    lines: u64,
    progress: indicatif::ProgressBar,
}

impl Ingest<'_> {
    fn db_err(&self, source: tokio_postgres::Error) -> IngestError {
        IngestError::Db {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Store the file's events and record it as ingested (and, for a snapshot, its
    /// rows' digests as its feed's last), in one transaction after the last batch.
    async fn store(
        &self,
        clients: &mut [Client],
        format: Format,
    ) -> Result<IngestSummary, IngestError> {
        let first = clients
            .first_mut()
            .ok_or_else(|| file_err(self.path, "no database connection to ingest with"))?;
        let (mut summary, snapshot) = match self.in_bulk(first).await? {
            Some(summary) => (summary, None),
            None => self.in_batches(clients).await?,
        };
        self.progress.finish_and_clear();
        let client = clients
            .first_mut()
            .ok_or_else(|| file_err(self.path, "no database connection to ingest with"))?;
        let tx = client.transaction().await.map_err(|e| self.db_err(e))?;
        // The batches committed without waiting for the disk: this commit waits until
        // the log holds all of them (a commit record, flushed with everything before
        // it, even when the file was recorded already), so a file reported ingested
        // is on disk whole. A server crash before it loses at most the last batches'
        // commits, which the same ingest run again stores.
        tx.batch_execute("SET LOCAL synchronous_commit = on; SELECT pg_current_xact_id()")
            .await
            .map_err(|e| self.db_err(e))?;
        tx.execute(
            "INSERT INTO ops.ingested_files (digest, path, format, events, duplicates, rejected)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING",
            &[
                &self.digest.as_slice(),
                &self.shown,
                &format!("{format:?}").to_lowercase(),
                &(summary.inserted as i64),
                &(summary.duplicates as i64),
                &(summary.rejected as i64),
            ],
        )
        .await
        .map_err(|e| self.db_err(e))?;
        if let (Some(taken), Some(spec)) = (snapshot, &self.snapshot) {
            snapshot::record(&tx, spec, &self.shown, &taken)
                .await
                .map_err(|e| self.db_err(e))?;
            summary.unchanged = taken.unchanged;
        }
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok(summary)
    }

    /// The bulk path ([`super::bulk`]), when the file is large next to the log: what
    /// it stored, or `None` when it was not taken or gave way to batches.
    async fn in_bulk(&self, client: &mut Client) -> Result<Option<IngestSummary>, IngestError> {
        let Some(min) = self.opts.bulk_min_rows.filter(|_| self.bundle.is_none()) else {
            return Ok(None);
        };
        let log_rows = super::bulk::log_rows(client)
            .await
            .map_err(|e| self.db_err(e))?;
        if !super::bulk::chosen(self.lines, log_rows, min) {
            return Ok(None);
        }
        let limit = BatchLimit::rows(self.opts.batch_size);
        let (mut rx, reader) = start_reader(self.path, &self.spec, self.opts, limit, None)?;
        let source = self.spec.as_ref().map(|s| s.source.as_str());
        let outcome = super::bulk::ingest(
            client,
            &mut rx,
            source,
            self.lines,
            &self.shown,
            &self.digest,
            &self.progress,
        )
        .await;
        drop(rx);
        reader
            .await
            .map_err(|e| file_err(self.path, e.to_string()))?;
        match outcome {
            Ok(super::bulk::Outcome::Done(c)) => Ok(Some(IngestSummary {
                path: self.path.to_path_buf(),
                inserted: c.inserted,
                duplicates: c.duplicates,
                rejected: c.rejected,
                bulk: true,
                ..IngestSummary::default()
            })),
            Ok(super::bulk::Outcome::Fallback(why)) => {
                tracing::warn!(file = %self.shown, "{why}: ingesting the file batch by batch");
                self.progress.set_position(0);
                Ok(None)
            }
            Err(StreamError::Fatal(e)) => Err(e),
            Err(StreamError::Db(source)) => Err(self.db_err(source)),
        }
    }

    /// Batch by batch (or bundle by bundle), each its own transaction, on every
    /// connection at once; with what a snapshot filter found.
    async fn in_batches(
        &self,
        clients: &mut [Client],
    ) -> Result<(IngestSummary, Option<snapshot::Taken>), IngestError> {
        let limit = match self.bundle {
            Some(rows) => BatchLimit::bundle(rows),
            None => BatchLimit::rows(self.opts.batch_size),
        };
        let filter = match (&self.snapshot, clients.first()) {
            (Some(spec), Some(client)) => Some(
                snapshot::filter(client, spec)
                    .await
                    .map_err(|e| self.db_err(e))?,
            ),
            _ => None,
        };
        let (rx, reader) = start_reader(self.path, &self.spec, self.opts, limit, filter)?;
        let queue = tokio::sync::Mutex::new(rx);
        let stream = Stream {
            queue: &queue,
            file: &self.shown,
            digest: &self.digest,
            progress: &self.progress,
            bundle: self.bundle.and(self.spec.as_ref()),
        };
        let streams = clients
            .iter_mut()
            .map(|client| write_stream(client, &stream));
        let counts = futures_util::future::try_join_all(streams)
            .await
            .map_err(|e| match e {
                StreamError::Fatal(e) => e,
                StreamError::Db(source) => self.db_err(source),
            })?;
        drop(queue);
        let taken = reader
            .await
            .map_err(|e| file_err(self.path, e.to_string()))?;
        let mut summary = IngestSummary {
            path: self.path.to_path_buf(),
            ..IngestSummary::default()
        };
        for c in counts {
            summary.inserted += c.inserted;
            summary.duplicates += c.duplicates;
            summary.rejected += c.rejected;
        }
        Ok((summary, taken))
    }
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
    fn formats_from_extensions() {
        assert_eq!(Format::detect(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(Format::detect(Path::new("x.ndjson")), Some(Format::Ndjson));
        assert_eq!(Format::detect(Path::new("x.jsonl")), Some(Format::Ndjson));
        assert_eq!(Format::detect(Path::new("x.txt")), None);
    }
}
