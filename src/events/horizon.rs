//! The reader's horizon: how far in `xid` order the log can be read without ever
//! skipping an event that commits later, and, when committed events lie beyond it,
//! which transaction they wait for.
//!
//! Events are read in `(xid, seq)` order, `xid` being the writer's top-level
//! transaction id. A reader may take the events of transaction `x` only once no
//! transaction with an id at or below `x` can still add rows to the log. In one
//! statement, with `s = pg_current_snapshot()` (the statement's own snapshot):
//!
//! ```text
//! horizon = least(xmax(s), min { x in xip(s) : x is not known to belong to another database })
//! ```
//!
//! - an id at or above `xmax(s)` was not yet assigned when the snapshot was taken;
//! - an id below `xmax(s)` that is not in `xip(s)` had ended: its rows are visible
//!   in this very snapshot if it committed, and it can add no more;
//! - an id in `xip(s)` was still running. A transaction can only write to the
//!   database its session is connected to, so one that runs in *another* database
//!   can never add rows to this log and does not hold the reader back. It is known
//!   to be foreign when `pg_stat_activity` shows a session of another database with
//!   that `backend_xid`, or `pg_prepared_xacts` a transaction of another database
//!   with that id. Which database an id belongs to never changes while it runs, so
//!   a row saying so is true whenever it was read. Anything not known (the
//!   transaction ended since the snapshot, a session without a database, no row at
//!   all) counts as this database's: that can only delay a read, never skip. The
//!   commonest such delay, a transaction that ended between the snapshot and the
//!   look at `pg_stat_activity`, is reported with the read, which then reads on with
//!   a new snapshot ([`horizon_row_sql`]).
//!
//! So every row with `xid < horizon` that will ever exist is committed and visible
//! to the statement's snapshot. The loader's own open batch is a transaction of
//! this database, so the read-ahead reader still stops below it; except beside a
//! bulk run ([`super::read_after_beside`]), whose one transaction lasts the run and
//! appends nothing to the log (its rejects go to `event_log.rejected`): a read for
//! it passes that transaction, so the run can follow a file being ingested.
//!
//! `pg_stat_activity` is read once per transaction and kept until it ends: run the
//! read in a transaction of its own (the loader does) so it is read after the
//! snapshot is taken. (A stale copy could only pair a backend slot's old database
//! with an id assigned between two reads of that slot, a window of a few
//! instructions; a fresh copy cannot, since such an id is newer than the snapshot.)

use std::fmt;

use tokio_postgres::GenericClient;

use super::Xid8;

/// The horizon as a scalar SQL expression (`xid8`), for a statement that reads the
/// log; see the module documentation.
macro_rules! horizon_sql {
    () => {
        $crate::events::horizon::horizon_sql!(beside "NULL")
    };
    // `writer`: an SQL expression (`xid8`) naming a transaction of this database that
    // never appends to the log (the loader's own, which a read beside it may pass)
    (beside $writer:literal) => {
        concat!(
        "(SELECT least(pg_snapshot_xmax(s.snap), (
             SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x
              WHERE x IS DISTINCT FROM ", $writer, "::xid8
                AND xid(x) NOT IN (
                    SELECT a.backend_xid FROM pg_stat_activity a
                     WHERE a.backend_xid IS NOT NULL
                       AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
                    UNION ALL
                    SELECT p.transaction FROM pg_prepared_xacts p
                     WHERE p.database <> current_database())))
            FROM (SELECT pg_current_snapshot() AS snap) AS s)")
    };
}

pub(crate) use horizon_sql;

/// One row: the horizon (`horizon`) and whether it was set by a transaction that had
/// ended by the time `pg_stat_activity` was read (`ended`): one found in no session
/// and no prepared transaction. Such a transaction counts as this database's, so no
/// event is skipped, but a new statement's snapshot no longer holds it: a reader
/// stopped there reads on with a new statement (see [`super::read_after`]).
macro_rules! horizon_row_sql {
    () => {
        $crate::events::horizon::horizon_row_sql!(beside "NULL")
    };
    (beside $writer:literal) => {
        concat!(
            "SELECT hz AS horizon,
                    hz < pg_snapshot_xmax(pg_current_snapshot())
                    AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_xid = xid(hz))
                    AND NOT EXISTS (SELECT FROM pg_prepared_xacts p WHERE p.transaction = xid(hz)) AS ended
               FROM (SELECT ",
            $crate::events::horizon::horizon_sql!(beside $writer),
            " AS hz) x"
        )
    };
}

pub(crate) use horizon_row_sql;

/// How often a reader reads again after a horizon set by a transaction that ended
/// as it read; each time, that transaction is behind the new horizon.
pub(crate) const REREADS: usize = 8;

/// Committed events after a checkpoint that the reader cannot take yet, and the
/// transaction they wait for.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// Committed events after the checkpoint, at or beyond the horizon.
    pub events: i64,
    /// The transaction at the horizon: the oldest one of this database still open.
    pub xid: Xid8,
    pub blocker: Option<Blocker>,
}

/// What is known of the transaction the reader waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub database: Option<String>,
    /// The session running it; `None` for a prepared transaction.
    pub pid: Option<i32>,
    /// The prepared transaction's name.
    pub prepared: Option<String>,
    /// Seconds since it started (or was prepared); `None` when the loader's role may
    /// not see it (needs `pg_read_all_stats` for other roles' sessions).
    pub open_secs: Option<f64>,
}

impl Waiting {
    /// Has the transaction been open at least `min` (or for a time the loader's
    /// role may not see)? A younger one is most likely an append in flight.
    pub fn stalled(&self, min: std::time::Duration) -> bool {
        match &self.blocker {
            Some(Blocker {
                open_secs: Some(secs),
                ..
            }) => *secs >= min.as_secs_f64(),
            Some(_) => true,
            None => false,
        }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "waiting for transaction {}", self.xid)?;
        match &self.blocker {
            Some(b) => {
                if let Some(db) = &b.database {
                    write!(f, " in database {db}")?;
                }
                let mut parts = Vec::new();
                if let Some(gid) = &b.prepared {
                    parts.push(format!("prepared as '{gid}'"));
                }
                if let Some(pid) = b.pid {
                    parts.push(format!("pid {pid}"));
                }
                if let Some(secs) = b.open_secs {
                    parts.push(format!("open for {secs:.0} s"));
                }
                if !parts.is_empty() {
                    write!(f, " ({})", parts.join(", "))?;
                }
            }
            None => write!(f, " (it ended just now)")?,
        }
        write!(
            f,
            ": {} committed event(s) after the checkpoint load once it ends",
            crate::human::thousands(self.events.max(0) as u64)
        )
    }
}

const WAITING: &str = concat!(
    "WITH h AS (SELECT ",
    horizon_sql!(),
    " AS horizon),
     c AS (SELECT coalesce((SELECT xid FROM ops.checkpoints WHERE consumer = $1), '0'::xid8) AS xid,
                  coalesce((SELECT seq FROM ops.checkpoints WHERE consumer = $1), 0) AS seq)
     SELECT h.horizon,
            (SELECT coalesce(sum(coalesce(e.bundle_size, 1)), 0)::bigint FROM event_log.events e
              WHERE (e.xid, e.seq) > (c.xid, c.seq) AND e.xid >= h.horizon) AS waiting,
            w.database, w.pid, w.prepared, w.open_secs, w.found
       FROM h CROSS JOIN c
       LEFT JOIN LATERAL (
            SELECT a.datname::text AS database, a.pid, NULL::text AS prepared,
                   extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS open_secs,
                   true AS found
              FROM pg_stat_activity a WHERE a.backend_xid = xid(h.horizon)
            UNION ALL
            SELECT p.database::text, NULL, p.gid,
                   extract(epoch FROM clock_timestamp() - p.prepared)::float8, true
              FROM pg_prepared_xacts p WHERE p.transaction = xid(h.horizon)
            LIMIT 1) AS w ON true"
);

/// Committed events after `consumer`'s checkpoint that the reader cannot take yet,
/// if any, and who holds them back. Run it outside a transaction (see the module
/// documentation).
pub async fn waiting(
    client: &impl GenericClient,
    consumer: &str,
) -> Result<Option<Waiting>, tokio_postgres::Error> {
    let row = client.query_one(WAITING, &[&consumer]).await?;
    let events: i64 = row.try_get(1)?;
    if events == 0 {
        return Ok(None);
    }
    let found: Option<bool> = row.try_get(6)?;
    let blocker = match found {
        Some(_) => Some(Blocker {
            database: row.try_get(2)?,
            pid: row.try_get(3)?,
            prepared: row.try_get(4)?,
            open_secs: row.try_get(5)?,
        }),
        None => None,
    };
    Ok(Some(Waiting {
        events,
        xid: row.try_get(0)?,
        blocker,
    }))
}

/// The horizon now (for tests and diagnostics), past a transaction that ended as it
/// was taken.
pub async fn horizon(client: &impl GenericClient) -> Result<Xid8, tokio_postgres::Error> {
    let mut tries = 0;
    loop {
        let row = client.query_one(horizon_row_sql!(), &[]).await?;
        tries += 1;
        if !row.try_get::<_, bool>(1)? || tries > REREADS {
            return row.try_get(0);
        }
    }
}
