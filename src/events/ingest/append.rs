//! Writing a file's batches for `dvault ingest`: on each connection, a batch takes
//! its place in the log (transaction id and `seq`s) in file order, then goes in by
//! `COPY` (or `ON CONFLICT` when it meets events already there, quarantining what the
//! database refuses) or as one bundle, with its rejections, in one transaction.

use std::borrow::Cow;

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::read::{Batch, Parsed};
use super::{IngestError, Rejection};
use crate::events::csv_rows::RowSpec;
use crate::events::{self as log, NewEvent, append_salvaging_at, copy_in_at, is_data_error};

/// What one stream appended.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) inserted: u64,
    pub(crate) duplicates: u64,
    pub(crate) rejected: u64,
}

pub(crate) enum StreamError {
    Fatal(IngestError),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StreamError {
    fn from(e: tokio_postgres::Error) -> Self {
        StreamError::Db(e)
    }
}

/// What the writing connections of one file share.
pub(super) struct Stream<'a> {
    /// The parsed batches, in file order.
    pub(super) queue: &'a tokio::sync::Mutex<mpsc::Receiver<Parsed>>,
    pub(super) file: &'a str,
    pub(super) digest: &'a [u8; 32],
    pub(super) progress: &'a indicatif::ProgressBar,
    /// Each batch is one [`log::bundle`] of rows of this type and source.
    pub(super) bundle: Option<&'a RowSpec>,
}

/// One connection's share of a file: take the next batch and its place in the log
/// while holding the queue (so places are taken in file order), then write it.
pub(super) async fn write_stream(
    client: &mut Client,
    stream: &Stream<'_>,
) -> Result<Counts, StreamError> {
    let Stream {
        queue,
        file,
        digest,
        progress,
        bundle,
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
        let mut seqs = log::reserve_seqs(&tx, batch.len()).await?;
        drop(next);
        let (appended, rejected) = loop {
            // the batch's commit does not wait for the disk; the file's last
            // transaction does, for all of them (`Ingest::store`)
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
            let written = match bundle {
                Some(spec) => write_bundle(tx, &batch, &seqs, spec, file, digest).await,
                None => write_batch(tx, &batch, &seqs, check, file, digest).await,
            };
            match written {
                Err(e) if log::is_deadlock(&e) && attempt < log::APPEND_ATTEMPTS => {
                    // PostgreSQL cancelled this transaction to break a deadlock with
                    // another writer of the same new events: a new place, after the
                    // batches placed meanwhile (only a file that repeats its own rows
                    // can meet itself this way)
                    tracing::warn!(
                        file,
                        attempt,
                        "deadlock with another writer; writing the batch again"
                    );
                    tokio::time::sleep(log::deadlock_pause(attempt)).await;
                    attempt += 1;
                    tx = client.transaction().await?;
                    seqs = log::reserve_seqs(&tx, batch.len()).await?;
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
/// ([`log::logged`]); when the `COPY` meets an event already in the log, or the
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
) -> Result<(log::Appended, u64), tokio_postgres::Error> {
    let logged = match check {
        true => log::logged(&tx, &batch.events).await?,
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
            let appended = log::Appended {
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
                .map(log::render)
                .unwrap_or_default(),
        });
    }
    let rejected = store_rejections(&tx, &rejects, file, digest).await?;
    tx.commit().await?;
    Ok((appended, rejected))
}

/// Write a batch as one [`log::bundle`] at its place in the log (`seqs`, in `tx`)
/// and commit; a bundle already in the log (the same rows, from a run that stopped
/// after it) is not stored again. Rejections ride along.
async fn write_bundle(
    tx: tokio_postgres::Transaction<'_>,
    batch: &Batch,
    seqs: &[i64],
    spec: &RowSpec,
    file: &str,
    digest: &[u8; 32],
) -> Result<(log::Appended, u64), tokio_postgres::Error> {
    let mut appended = log::Appended::default();
    if let (false, Some(&line), Some(seq)) =
        (batch.rows.is_empty(), batch.lines.first(), seqs.first())
    {
        let (event_type, source) = (&spec.event_type, &spec.source);
        let b = log::bundle::encode(event_type, source, &batch.rows, seqs, file, line);
        let size = batch.rows.len() as i32;
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
                    event_type,
                    source,
                    &b.occurred_at,
                    &log::RawJson(&b.summary),
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
