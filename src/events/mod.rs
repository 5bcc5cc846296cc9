//! The append-only event log: appending (single, batch, bulk `COPY`) and reading
//! committed events in order from a checkpoint.

pub mod bulk;
pub mod bundle;
pub mod cloudevents;
pub mod csv_records;
pub mod csv_rows;
#[cfg(test)]
mod fuzz;
pub mod horizon;
pub mod ingest;
pub mod limits;
pub mod snapshot;
mod sql_types;

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::pin_mut;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

pub use sql_types::{RawJson, Xid8};

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// CloudEvents id; unique per source.
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// The `data` object as JSON text.
    pub payload: String,
}

impl NewEvent {
    /// An id for an event that came without one: a digest of what it says, so the
    /// same input always gets the same id (and is stored once). The first 128 bits
    /// of a SHA-256, in hex: collisions are out of reach, and the log's unique index
    /// stays small (ingest is 40% faster than with the full 256 bits).
    pub fn derive_id(event_type: &str, source: &str, time: Option<&str>, payload: &str) -> String {
        let mut h = Sha256::new();
        for part in [event_type, source, time.unwrap_or(""), payload] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// An event's data as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// JSON text: an event stored alone, or a line of a bundle in the JSON format.
    Json(String),
    /// A line of a bundle in the fields format ([`bundle::Row`]): the row's fields,
    /// escaped and tab-separated, named by `names` (the file's header).
    Fields { names: Arc<[String]>, line: String },
}

/// A [`Payload`] borrowed, as the quality checks read a bundle's lines in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PayloadRef<'a> {
    Json(&'a str),
    Fields { names: &'a [String], line: &'a str },
}

impl Payload {
    pub fn as_ref(&self) -> PayloadRef<'_> {
        match self {
            Payload::Json(text) => PayloadRef::Json(text),
            Payload::Fields { names, line } => PayloadRef::Fields { names, line },
        }
    }

    /// The payload as JSON text: what the event would hold stored alone.
    pub fn json(&self) -> Cow<'_, str> {
        self.as_ref().json()
    }
}

impl<'a> PayloadRef<'a> {
    /// The payload as JSON text: a fields line as the object the ingest of its row
    /// alone stores (each field a string, an empty one `null`).
    pub fn json(self) -> Cow<'a, str> {
        match self {
            PayloadRef::Json(text) => Cow::Borrowed(text),
            PayloadRef::Fields { names, line } => Cow::Owned(bundle::fields_json(names, line)),
        }
    }
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub xid: Xid8,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub payload: Payload,
    /// A bundle that cannot be read as its events: one event standing for the whole
    /// bundle (its `payload` the start of the bundle's text), which the loader
    /// quarantines ([`bundle::read_rows`]).
    pub damaged: Option<bundle::Damaged>,
}

impl StoredEvent {
    /// The events of the log this one stands for: 1, or a damaged bundle's count.
    pub fn covers(&self) -> u64 {
        self.damaged.as_ref().map_or(1, |d| d.events)
    }

    pub fn position(&self) -> Checkpoint {
        Checkpoint {
            xid: self.xid,
            seq: self.seq,
        }
    }
}

/// A position in the log: everything at or before it has been consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Checkpoint {
    pub xid: Xid8,
    pub seq: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        xid: Xid8(0),
        seq: 0,
    };
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub inserted: u64,
    /// Events already in the log (same source and id): not stored again.
    pub duplicates: u64,
}

const INSERT_UNNEST: &str = "
    INSERT INTO event_log.events (event_id, event_type, record_source, occurred_at, payload)
    SELECT id, ty, src, ts, body::json
      FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
           AS t(id, ty, src, ts, body)
    ON CONFLICT (record_source, event_id) DO NOTHING";

/// [`INSERT_UNNEST`] with the `seq` of each event given ([`reserve_seqs`]).
const INSERT_UNNEST_AT: &str = "
    INSERT INTO event_log.events (seq, event_id, event_type, record_source, occurred_at, payload)
    OVERRIDING SYSTEM VALUE
    SELECT seq, id, ty, src, ts, body::json
      FROM unnest($6::bigint[], $1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
           AS t(seq, id, ty, src, ts, body)
    ON CONFLICT (record_source, event_id) DO NOTHING";

/// Append events; those already in the log are skipped. Runs in the caller's
/// transaction if it is one. Suits small batches (the API); `copy_in` is the bulk path.
pub async fn append(
    client: &impl GenericClient,
    events: &[NewEvent],
) -> Result<Appended, tokio_postgres::Error> {
    append_at(client, events, None).await
}

/// [`append`], each event at its `seq` when `seqs` are given ([`reserve_seqs`]).
pub async fn append_at(
    client: &impl GenericClient,
    events: &[NewEvent],
    seqs: Option<&[i64]>,
) -> Result<Appended, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Appended::default());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
    let inserted = match seqs {
        None => {
            client
                .execute(INSERT_UNNEST, &[&ids, &types, &sources, &times, &payloads])
                .await?
        }
        Some(seqs) => {
            client
                .execute(
                    INSERT_UNNEST_AT,
                    &[&ids, &types, &sources, &times, &payloads, &seqs],
                )
                .await?
        }
    };
    Ok(Appended {
        inserted,
        duplicates: events.len() as u64 - inserted,
    })
}

/// Which of `events` are in the log already (same source and id)? Their positions,
/// ascending. One round trip that sends only the ids: cheaper than a `COPY` that
/// fails at the first duplicate and the `ON CONFLICT` insert of every payload after it,
/// which is what a re-sent snapshot costs otherwise. Probes go in the batch's order,
/// which for a re-sent file is the order its rows were stored in.
pub async fn logged(
    client: &impl GenericClient,
    events: &[NewEvent],
) -> Result<Vec<usize>, tokio_postgres::Error> {
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let rows = client
        .query(
            "SELECT b.i
               FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS b(src, id, i)
              WHERE EXISTS (SELECT FROM event_log.events e
                             WHERE e.record_source = b.src AND e.event_id = b.id)
              ORDER BY b.i",
            &[&sources, &ids],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map(|i| (i - 1) as usize))
        .collect()
}

/// Take this transaction's place in the log for `n` events: its transaction id
/// (assigned now) and `n` increasing `seq` values. Readers consume in `(xid, seq)`
/// order, so batches whose places are reserved one after the other are read in that
/// order however their writes overlap: several connections can append one file and
/// the log still holds it in file order.
pub async fn reserve_seqs(
    tx: &tokio_postgres::Transaction<'_>,
    n: usize,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    // The sequence is looked up once (a materialized CTE: `pg_get_serial_sequence` per
    // row, a catalog lookup and a name parse each time, cost 7 µs an event), and the
    // places come back as one array rather than a row each.
    let row = tx
        .query_one(
            "WITH log AS MATERIALIZED (
                 SELECT pg_get_serial_sequence('event_log.events', 'seq')::regclass AS seq)
             SELECT pg_current_xact_id()::text, array_agg(s ORDER BY s)
               FROM (SELECT nextval(log.seq) AS s
                       FROM log, generate_series(1, $1::bigint)) n",
            &[&(n as i64)],
        )
        .await?;
    Ok(row.try_get::<_, Option<Vec<i64>>>(1)?.unwrap_or_default())
}

/// Did the database refuse the data itself (and not the request, the connection or
/// the server)? SQLSTATE class 22 (data exception), class 23 (integrity constraint
/// violation) except a unique violation, which is the duplicate path, and 54000
/// (program limit exceeded, e.g. an index row too large). Such an error is about one
/// event or a few: [`append_salvaging`] finds them.
pub fn is_data_error(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return false;
    };
    let code = code.code();
    code.starts_with("22")
        || (code.starts_with("23") && code != SqlState::UNIQUE_VIOLATION.code())
        || code == SqlState::PROGRAM_LIMIT_EXCEEDED.code()
}

/// An event of an append that the database refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Its position in the events given to [`append_salvaging`].
    pub index: usize,
    /// SQLSTATE of the refusal.
    pub code: String,
    /// The database's message, for `event_log.rejected`.
    pub reason: String,
}

/// [`append`], with a safety net for what no check at parse time foresaw: when the
/// database refuses the batch with a data error ([`is_data_error`]), the batch is
/// tried again in halves, each under a savepoint, down to the single events it
/// refuses; those come back as [`Refused`] (in order), the rest is appended. `k`
/// refused events among `n` cost about `2 k log2 n` statements; a batch the
/// database takes costs one, plus a savepoint. Must run inside a transaction; any
/// other error is returned (the caller's transaction is then aborted).
pub async fn append_salvaging(
    client: &impl GenericClient,
    events: &[NewEvent],
) -> Result<(Appended, Vec<Refused>), tokio_postgres::Error> {
    append_salvaging_at(client, events, None).await
}

/// [`append_salvaging`], each event at its `seq` when `seqs` are given.
pub async fn append_salvaging_at(
    client: &impl GenericClient,
    events: &[NewEvent],
    seqs: Option<&[i64]>,
) -> Result<(Appended, Vec<Refused>), tokio_postgres::Error> {
    let mut appended = Appended::default();
    let mut refused = Vec::new();
    // ranges still to write, the next one on top
    let mut todo = Vec::with_capacity(64);
    todo.push(0..events.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        client.batch_execute("SAVEPOINT dvault_append").await?;
        match append_at(
            client,
            &events[range.clone()],
            seqs.map(|s| &s[range.clone()]),
        )
        .await
        {
            Ok(a) => {
                client
                    .batch_execute("RELEASE SAVEPOINT dvault_append")
                    .await?;
                appended.inserted += a.inserted;
                appended.duplicates += a.duplicates;
            }
            Err(e) if is_data_error(&e) => {
                client
                    .batch_execute(
                        "ROLLBACK TO SAVEPOINT dvault_append; RELEASE SAVEPOINT dvault_append",
                    )
                    .await?;
                if range.len() == 1 {
                    refused.push(Refused {
                        index: range.start,
                        code: e.code().map(|c| c.code().to_string()).unwrap_or_default(),
                        reason: format!("the database refused this event: {}", refusal_message(&e)),
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
    Ok((appended, refused))
}

/// The database's message and SQLSTATE, without its detail (which can quote the
/// whole row: the payload is kept apart, in `raw`).
fn refusal_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// An event as a CloudEvent in JSON: what `event_log.rejected.raw` keeps of an
/// event the database refused after it was parsed.
pub fn render(e: &NewEvent) -> String {
    let attrs = serde_json::json!({
        "specversion": "1.0",
        "id": e.event_id,
        "source": e.source,
        "type": e.event_type,
        "time": e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    })
    .to_string();
    // the payload verbatim, as it would be stored
    match attrs.strip_suffix('}') {
        Some(head) => format!("{head},\"data\":{}}}", e.payload),
        None => attrs,
    }
}

/// How often an append is tried when PostgreSQL aborts it as a deadlock victim: two
/// writers inserting the same new events in opposite orders wait on each other's
/// unique index entries, and PostgreSQL cancels one of them. An append is one
/// transaction, all or nothing, so trying it again is safe.
pub const APPEND_ATTEMPTS: u32 = 5;

/// Was this append cancelled to break a deadlock (and may simply be tried again)?
pub fn is_deadlock(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

/// The pause before trying an append again: short and random, so two writers that
/// deadlocked do not meet again at once.
pub fn deadlock_pause(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(attempt) * (10 + rand::random::<u64>() % 40))
}

/// Bulk append with `COPY ... BINARY`. Fails with a unique violation if any event is
/// already in the log (the caller then rolls back and uses [`append`]).
pub async fn copy_in(
    client: &tokio_postgres::Transaction<'_>,
    events: &[NewEvent],
) -> Result<u64, tokio_postgres::Error> {
    copy_in_at(client, events, None).await
}

/// [`copy_in`], each event at its `seq` when `seqs` are given ([`reserve_seqs`];
/// `COPY` writes identity values given to it).
pub async fn copy_in_at(
    client: &tokio_postgres::Transaction<'_>,
    events: &[NewEvent],
    seqs: Option<&[i64]>,
) -> Result<u64, tokio_postgres::Error> {
    let columns = "event_id, event_type, record_source, occurred_at, payload";
    let mut types = vec![
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::JSON,
    ];
    let sql = match seqs {
        None => format!("COPY event_log.events ({columns}) FROM STDIN BINARY"),
        Some(_) => {
            types.insert(0, Type::INT8);
            format!("COPY event_log.events (seq, {columns}) FROM STDIN BINARY")
        }
    };
    let sink = client.copy_in(&sql).await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for (i, e) in events.iter().enumerate() {
        let payload = RawJson(&e.payload);
        let mut row: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(6);
        let seq = seqs.and_then(|s| s.get(i));
        if let Some(seq) = &seq {
            row.push(*seq);
        }
        row.extend([
            &e.event_id as &(dyn tokio_postgres::types::ToSql + Sync),
            &e.event_type,
            &e.source,
            &e.occurred_at,
            &payload,
        ]);
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await
}

/// The rows after a checkpoint up to the one that holds the `$3`th event (a bundle
/// is read whole, so a batch may hold up to a bundle more), then one row of NULLs
/// whose last column says whether the horizon was set by a transaction that had
/// already ended (see [`read_after`]). The first part's own `ORDER BY` (which the
/// index gives) lets the last one merge the two parts instead of sorting the batch;
/// the one row sorts last (NULLs do).
const READ_AFTER: &str = concat!(
    "WITH h AS MATERIALIZED (",
    horizon::horizon_row_sql!(beside "$4"),
    ")
    (SELECT seq, xid, event_id, event_type, record_source, occurred_at, recorded_at, payload, bundle, bundle_size,
            NULL::bool AS ended
       FROM (SELECT seq, xid, event_id, event_type, record_source, occurred_at, recorded_at,
                    payload, bundle, bundle_size, coalesce(bundle_size, 1) AS n,
                    sum(coalesce(bundle_size, 1)) OVER (ORDER BY xid, seq ROWS UNBOUNDED PRECEDING) AS upto
               FROM event_log.events
              WHERE (xid, seq) > ($1, $2)
                AND xid < (SELECT horizon FROM h)
              ORDER BY xid, seq
              LIMIT $3) w
      WHERE upto - n < $3
      ORDER BY xid, seq)
     UNION ALL
    (SELECT NULL::bigint, NULL::xid8, NULL::text, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz,
            NULL::json, NULL::text, NULL::integer, ended
       FROM h)
     ORDER BY xid, seq"
);

/// Up to `limit` committed events after `after`, in `(xid, seq)` order (a bundle's
/// events all or none, so up to a bundle more).
///
/// Only events below the [`horizon`] are returned: written by transactions older
/// than every transaction of this database still running (transactions of other
/// databases on the server cannot write to this log and do not count). So an event
/// committed late with a lower `seq` can never appear behind a checkpoint that has
/// moved past it: a reader may wait for a slow writer, but never skips its events.
/// Call it outside an explicit transaction (see [`horizon`]).
///
/// A transaction that ends between the read's snapshot and its look at
/// `pg_stat_activity` is in neither, so it counts as this database's and sets the
/// horizon: safe, but a read stopped there would take events committed long before
/// for not there yet (a transaction of another database, busy elsewhere, does this
/// to a few reads in a hundred). When the read came back short and its horizon was
/// such a transaction, it goes on from where it stopped, with a new snapshot.
pub async fn read_after(
    client: &impl GenericClient,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    read_after_beside(client, after, limit, None).await
}

/// [`read_after`] for a writer whose transaction `writer` is open meanwhile and
/// appends nothing to the log (a bulk run's: see [`horizon`]): its horizon passes
/// that transaction, which otherwise holds every event appended after it began.
pub async fn read_after_beside(
    client: &impl GenericClient,
    after: Checkpoint,
    limit: i64,
    writer: Option<Xid8>,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let mut events = Vec::new();
    let (mut at, mut left) = (after, limit);
    for _ in 0..=horizon::REREADS {
        let rows = client
            .query(READ_AFTER, &[&at.xid, &at.seq, &left, &writer])
            .await?;
        let Some((flag, rows)) = rows.split_last() else {
            break;
        };
        let ended: Option<bool> = flag.try_get(10)?;
        let read = bundle::read_rows(rows)?;
        left -= read.iter().map(|e| e.covers() as i64).sum::<i64>();
        if let Some(last) = read.last() {
            at = last.position();
        }
        events.extend(read);
        if left <= 0 || ended != Some(true) {
            break;
        }
        tracing::debug!(
            events = events.len(),
            "the horizon was a transaction that ended as the log was read; reading on"
        );
    }
    Ok(events)
}

/// What a consumer has yet to read: the events after its checkpoint (committed or
/// not: the writer's transaction may still be open) and how old the oldest is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub events: i64,
    /// When the oldest of them arrived; `None` when there is none.
    pub oldest_recorded_at: Option<DateTime<Utc>>,
    /// Its age in seconds on the server's clock.
    pub oldest_seconds: Option<f64>,
}

/// The [`Lag`] of `consumer` (the loader's: `load::CONSUMER`). The one lag query of
/// the daemon's metrics, `dvault status` and the API's `/ready`.
pub async fn lag(
    client: &impl GenericClient,
    consumer: &str,
) -> Result<Lag, tokio_postgres::Error> {
    let at = load_checkpoint(client, consumer).await?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(coalesce(bundle_size, 1)), 0)::bigint, min(recorded_at), extract(epoch FROM now() - min(recorded_at))::float8
               FROM event_log.events
              WHERE (xid, seq) > ($1, $2)",
            &[&at.xid, &at.seq],
        )
        .await?;
    Ok(Lag {
        events: row.try_get(0)?,
        oldest_recorded_at: row.try_get(1)?,
        oldest_seconds: row.try_get(2)?,
    })
}

/// The checkpoint stored for `consumer`, or [`Checkpoint::START`].
pub async fn load_checkpoint(
    client: &impl GenericClient,
    consumer: &str,
) -> Result<Checkpoint, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT xid, seq FROM ops.checkpoints WHERE consumer = $1",
            &[&consumer],
        )
        .await?;
    row.map_or(Ok(Checkpoint::START), |r| {
        Ok(Checkpoint {
            xid: r.try_get(0)?,
            seq: r.try_get(1)?,
        })
    })
}

/// Store `consumer`'s checkpoint; call it in the transaction that did the work.
pub async fn save_checkpoint(
    client: &impl GenericClient,
    consumer: &str,
    at: Checkpoint,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO ops.checkpoints (consumer, xid, seq) VALUES ($1, $2, $3)
             ON CONFLICT (consumer) DO UPDATE
                SET xid = excluded.xid, seq = excluded.seq, updated_at = now()",
            &[&consumer, &at.xid, &at.seq],
        )
        .await?;
    Ok(())
}
