//! Snapshot feeds (`dvault ingest --bundle --snapshot`): a CSV file that holds a whole
//! table each time it is sent, such as a daily full export of customers.
//!
//! Bundles are recognised whole ([`super::bundle`]), so without this a re-sent
//! snapshot is stored again, and the loader reads every unchanged row of it again to
//! find that its satellite version is the same. A snapshot feed instead keeps a digest
//! of every row of its last file (`ops.snapshot_feeds`, one row per event type and
//! source, 16 bytes a row): the next file of the feed stores only the rows that are
//! not byte for byte a row of the last one. That is a change since the last snapshot
//! (a new row, a changed one, or one that went back to an older value), so the log
//! holds what per-event ids would have stored, and a value that returns is stored
//! again, which per-event ids cannot do.
//!
//! The filter runs on the reader thread, before rows become bundles, so a run that
//! stopped half way and is run again filters against the same last snapshot, makes
//! the same bundles, and stores nothing twice. The feed's digests are replaced in the
//! transaction that records the file as ingested, after all its bundles committed.
//! One file of a feed is ingested at a time ([`lock`]), so each compares with the
//! last one recorded. Rows missing from a snapshot are not events: a feed that
//! deletes sends that itself.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::bundle;
use super::csv_rows::RowSpec;

/// A row's digest: the first 16 bytes of SHA-256 of the file's column names and the
/// row's fields (as a bundle holds them), as event ids are.
type RowDigest = [u8; DIGEST_LEN];
const DIGEST_LEN: usize = 16;

/// Decides, row by row on the reader thread, which rows of a snapshot are new, and
/// collects the digests of all of them for the next file of the feed.
#[derive(Debug)]
pub struct Filter {
    /// The last snapshot's row digests, sorted.
    last: Vec<RowDigest>,
    /// This file's, in file order.
    seen: Vec<RowDigest>,
    /// The hash of the file's column names, once the first row showed them.
    names: Option<(Arc<[String]>, Sha256)>,
    unchanged: u64,
}

/// What a snapshot file's filter found.
#[derive(Debug, Default)]
pub struct Taken {
    /// Every row's digest, sorted, without repeats: the feed's next "last snapshot".
    digests: Vec<RowDigest>,
    /// Rows not stored: byte for byte a row of the last snapshot.
    pub unchanged: u64,
}

impl Filter {
    /// A filter against the feed's last snapshot (`last`: its digests in any order).
    pub fn new(mut last: Vec<RowDigest>) -> Filter {
        last.sort_unstable();
        Filter {
            last,
            seen: Vec::new(),
            names: None,
            unchanged: 0,
        }
    }

    /// Whether `row` must be stored: it is not a row of the last snapshot.
    pub fn is_new(&mut self, row: &bundle::Row) -> bool {
        let digest = self.digest(row);
        self.seen.push(digest);
        let new = self.last.binary_search(&digest).is_err();
        if !new {
            self.unchanged += 1;
        }
        new
    }

    fn digest(&mut self, row: &bundle::Row) -> RowDigest {
        if !matches!(&self.names, Some((names, _)) if Arc::ptr_eq(names, &row.names)) {
            self.names = None;
        }
        let (_, prefix) = self.names.get_or_insert_with(|| {
            let mut h = Sha256::new();
            for name in row.names.iter() {
                h.update(name.as_bytes());
                h.update([0x1f]);
            }
            h.update([0x1e]);
            (row.names.clone(), h)
        });
        let full = prefix
            .clone()
            .chain_update(row.fields.as_bytes())
            .finalize();
        let mut digest = RowDigest::default();
        digest.copy_from_slice(&full[..DIGEST_LEN]);
        digest
    }

    pub fn finish(mut self) -> Taken {
        self.seen.sort_unstable();
        self.seen.dedup();
        Taken {
            digests: self.seen,
            unchanged: self.unchanged,
        }
    }
}

/// Wait until no other ingest works on the feed of `spec`, then hold it for this
/// session: one file of a feed at a time, each compared with the last one recorded
/// (a session-level advisory lock, so no transaction stays open meanwhile; a
/// connection that ends releases it). Released by [`unlock`].
pub async fn lock(
    client: &impl GenericClient,
    spec: &RowSpec,
) -> Result<(), tokio_postgres::Error> {
    advisory(client, "pg_advisory_lock", spec).await
}

pub async fn unlock(
    client: &impl GenericClient,
    spec: &RowSpec,
) -> Result<(), tokio_postgres::Error> {
    advisory(client, "pg_advisory_unlock", spec).await
}

/// `function` (`pg_advisory_lock` or `_unlock`) of the feed's lock.
async fn advisory(
    client: &impl GenericClient,
    function: &str,
    spec: &RowSpec,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!("SELECT {function}(hashtextextended($1, 0))"),
            &[&lock_name(spec)],
        )
        .await?;
    Ok(())
}

fn lock_name(spec: &RowSpec) -> String {
    format!(
        "dvault snapshot feed\u{1f}{}\u{1f}{}",
        spec.event_type, spec.source
    )
}

/// The filter for the next file of the feed of `spec`: against its last snapshot, or
/// against nothing when this is its first.
pub async fn filter(
    client: &impl GenericClient,
    spec: &RowSpec,
) -> Result<Filter, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT row_digests FROM ops.snapshot_feeds WHERE event_type = $1 AND source = $2",
            &[&spec.event_type, &spec.source],
        )
        .await?;
    let bytes: Vec<u8> = match row {
        Some(row) => row.try_get(0)?,
        None => Vec::new(),
    };
    let last = bytes
        .chunks_exact(DIGEST_LEN)
        .map(|c| {
            let mut d = RowDigest::default();
            d.copy_from_slice(c);
            d
        })
        .collect();
    Ok(Filter::new(last))
}

/// Make `taken` the feed's last snapshot (in the transaction that records `file` as
/// ingested).
pub async fn record(
    client: &impl GenericClient,
    spec: &RowSpec,
    file: &str,
    taken: &Taken,
) -> Result<(), tokio_postgres::Error> {
    let bytes: Vec<u8> = taken.digests.concat();
    client
        .execute(
            "INSERT INTO ops.snapshot_feeds (event_type, source, file, rows, row_digests)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (event_type, source) DO UPDATE
             SET file = EXCLUDED.file, rows = EXCLUDED.rows,
                 row_digests = EXCLUDED.row_digests, ingested_at = now()",
            &[
                &spec.event_type,
                &spec.source,
                &file,
                &(taken.digests.len() as i64),
                &bytes,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(names: &Arc<[String]>, fields: &str) -> bundle::Row {
        bundle::Row {
            names: names.clone(),
            occurred_at: Utc::now(),
            fields: fields.into(),
        }
    }

    #[test]
    fn only_rows_not_in_the_last_snapshot_are_new() {
        let names: Arc<[String]> = vec!["id".to_string(), "name".to_string()].into();
        let mut day1 = Filter::new(Vec::new());
        for fields in ["1\tAda", "2\tBob", "3\tCy"] {
            assert!(day1.is_new(&row(&names, fields)), "{fields}");
        }
        let day1 = day1.finish();
        assert_eq!((day1.digests.len(), day1.unchanged), (3, 0));

        let mut day2 = Filter::new(day1.digests);
        let new: Vec<bool> = ["1\tAda", "2\tBea", "3\tCy", "4\tDi"]
            .iter()
            .map(|f| day2.is_new(&row(&names, f)))
            .collect();
        assert_eq!(new, [false, true, false, true]);
        let day2 = day2.finish();
        assert_eq!((day2.digests.len(), day2.unchanged), (4, 2));

        // day 3 goes back to day 1's value of row 2: a change since day 2, stored
        let mut day3 = Filter::new(day2.digests);
        assert!(day3.is_new(&row(&names, "2\tBob")));
        assert!(!day3.is_new(&row(&names, "4\tDi")));
    }

    #[test]
    fn other_column_names_make_every_row_new() {
        let before: Arc<[String]> = vec!["id".to_string(), "name".to_string()].into();
        let after: Arc<[String]> = vec!["id".to_string(), "full_name".to_string()].into();
        let mut day1 = Filter::new(Vec::new());
        day1.is_new(&row(&before, "1\tAda"));
        let mut day2 = Filter::new(day1.finish().digests);
        assert!(day2.is_new(&row(&after, "1\tAda")));
    }
}
