//! The bulk ingest: a file at least as large as the log goes in without the log's
//! indexes, built again once at the end.
//!
//! What a large ingest costs most is index maintenance. The unique `(record_source,
//! event_id)` index is on random ids (content digests, or the producer's), so every
//! row descends the B-tree to a random leaf, and once the index outgrows shared
//! buffers nearly every descent reads a page and dirties it (measured at TPC-H SF1:
//! line items went in at 0.73 of the rate of orders, which arrive into a smaller
//! log). The other two (`seq`, `(xid, seq)`) grow at their right edge, yet still take
//! a quarter of the backend's time in `COPY` (`perf`). `CREATE INDEX` sorts instead.
//!
//! So when a file has at least [`MIN_ROWS`] rows and at least as many as the log
//! already holds, one transaction locks the log, reads the keys the file could
//! repeat (the ids of its source for a CSV file, every key for NDJSON) into memory,
//! drops the log's indexes, `COPY`s the file's new events (those already in the log
//! or earlier in the file are counted as duplicates and skipped, as the unique index
//! would skip them) and builds the indexes again. DDL is transactional: a crash or
//! kill at any point leaves the log as it was, indexes included, and nothing of the
//! file stored. Should anything be refused (a data error in a batch, or a duplicate
//! the keys in memory missed, at the index build) the transaction is rolled back and
//! the file goes in batch by batch, where the safety net quarantines the culprits.
//!
//! The price: writers to the log (other ingests, `POST /events`) and the loader's
//! reads wait for the lock until the file is in; the file's events are committed all
//! at once.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use futures_util::{StreamExt, pin_mut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::db::indexes;

use super::ingest::{Batch, Counts, Parsed, StreamError, store_rejections};
use super::{NewEvent, copy_in, is_data_error};

/// Rows a file needs, at least, to take the bulk path: below it, building the log's
/// indexes again costs more than it saves.
pub const MIN_ROWS: u64 = 100_000;

/// Keys held in memory at most (file rows plus the log's keys it could repeat):
/// the log's in a sorted array (16 bytes a key), the file's in a hash set (17 to 34
/// bytes a key), so at most about 350 MB. Larger files go in batch by batch.
pub const MAX_KEYS: u64 = 12_000_000;

/// Memory PostgreSQL may use for the index build (`SET LOCAL`).
const BUILD_MEMORY: &str = "256MB";

/// Should a file of about `rows` rows take the bulk path into a log of about
/// `log_rows` rows? `min_rows` is [`MIN_ROWS`] unless the user says otherwise.
pub fn chosen(rows: u64, log_rows: u64, min_rows: u64) -> bool {
    rows >= min_rows.max(1) && rows >= log_rows && rows.saturating_add(log_rows) <= MAX_KEYS
}

/// About how many rows the log holds: the highest `seq` handed out (an upper bound:
/// rolled-back and skipped events leave gaps). Read from the primary key, at once.
pub async fn log_rows(client: &Client) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT coalesce(max(seq), 0) FROM event_log.events", &[])
        .await?;
    Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
}

/// How a bulk ingest ended.
pub(super) enum Outcome {
    /// Committed: the file is in the log.
    Done(Counts),
    /// Rolled back, nothing stored: ingest the file batch by batch. Why, for the log.
    Fallback(String),
}

/// A set of 128-bit key digests; they are uniform already, so the hasher just takes
/// 64 of their bits.
type Keys = HashSet<u128, BuildHasherDefault<Prehashed>>;

#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // not used for u128 keys (`write_u128`); a plain fold keeps it correct anyway
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// The digest of an event's identity, `(source, id)`: 128 bits of a SHA-256. The
/// source goes in with its length, so no choice of bytes in either can make two
/// identities one.
fn key(source: &str, id: &str) -> u128 {
    let mut h = Sha256::new();
    h.update((source.len() as u64).to_le_bytes());
    h.update(source.as_bytes());
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

/// The keys ([`key`]) of the events in the log the file could repeat, sorted: those
/// of its `source`, or every one when its events name their own.
async fn logged_keys(
    tx: &tokio_postgres::Transaction<'_>,
    source: Option<&str>,
) -> Result<Vec<u128>, tokio_postgres::Error> {
    let existing = match source {
        Some(source) => {
            tx.query_raw(
                "SELECT record_source, event_id FROM event_log.events WHERE record_source = $1",
                [source],
            )
            .await?
        }
        None => {
            tx.query_raw(
                "SELECT record_source, event_id FROM event_log.events",
                std::iter::empty::<&str>(),
            )
            .await?
        }
    };
    pin_mut!(existing);
    let mut logged = Vec::new();
    while let Some(row) = existing.next().await {
        let row = row?;
        logged.push(key(row.try_get(0)?, row.try_get(1)?));
    }
    logged.sort_unstable();
    Ok(logged)
}

/// Ingest the batches of `rx` in one transaction without the log's indexes. `source`
/// is the one record source of every event (a CSV file), `None` when events name
/// their own (NDJSON); `rows` the file's rows, about.
pub(super) async fn ingest(
    client: &mut Client,
    rx: &mut mpsc::Receiver<Parsed>,
    source: Option<&str>,
    rows: u64,
    file: &str,
    digest: &[u8; 32],
    progress: &indicatif::ProgressBar,
) -> Result<Outcome, StreamError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "LOCK TABLE event_log.events IN ACCESS EXCLUSIVE MODE;
         SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"
    ))
    .await?;
    let logged = logged_keys(&tx, source).await?;
    let mut keys = Keys::default();
    keys.reserve(rows as usize);
    let indexes = indexes::drop_all(&tx, "event_log.events").await?;

    let mut counts = Counts::default();
    let mut fresh: Vec<NewEvent> = Vec::new();
    while let Some(parsed) = rx.recv().await {
        let Batch {
            events,
            rejects,
            position,
            ..
        } = match parsed {
            Parsed::Fatal(e) => return Err(StreamError::Fatal(e)),
            Parsed::Batch(batch) => batch,
        };
        fresh.clear();
        for e in events {
            let k = key(&e.source, &e.event_id);
            if logged.binary_search(&k).is_err() && keys.insert(k) {
                fresh.push(e);
            } else {
                counts.duplicates += 1;
            }
        }
        match copy_in(&tx, &fresh).await {
            Ok(n) => counts.inserted += n,
            Err(e) if is_data_error(&e) => {
                return Ok(Outcome::Fallback(format!(
                    "the database refused a batch ({})",
                    crate::db::Shown(&e)
                )));
            }
            Err(e) => return Err(e.into()),
        }
        counts.rejected += store_rejections(&tx, &rejects, file, digest).await?;
        progress.set_position(progress.position().max(position));
    }
    drop((keys, logged));

    for index in &indexes {
        match indexes::build_missing(&tx, index).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) || is_data_error(&e) => {
                return Ok(Outcome::Fallback(format!(
                    "the index {} could not be built again ({})",
                    index.name,
                    crate::db::Shown(&e)
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    Ok(Outcome::Done(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_for_a_file_at_least_as_large_as_the_log() {
        assert!(chosen(100_000, 0, MIN_ROWS));
        assert!(chosen(6_000_000, 1_860_000, MIN_ROWS));
        assert!(!chosen(99_999, 0, MIN_ROWS), "too small");
        assert!(!chosen(200_000, 200_001, MIN_ROWS), "the log is larger");
        assert!(
            !chosen(18_000_000, 0, MIN_ROWS),
            "more keys than memory allows"
        );
        assert!(chosen(10, 3, 10), "the user's threshold");
        assert!(!chosen(0, 0, 0), "nothing to write");
    }

    #[test]
    fn keys_tell_source_and_id_apart() {
        assert_eq!(key("crm", "1"), key("crm", "1"));
        assert_ne!(key("crm", "1"), key("crm", "2"));
        assert_ne!(key("crm", "12"), key("crm1", "2"));
        assert_ne!(key("a\u{1f}b", "c"), key("a", "b\u{1f}c"));
    }
}
