//! The daemon's advisory lock: one daemon per database works, any other stands by.
//!
//! Two session-level advisory locks are involved. The daemon lock (here) is held by
//! the working daemon for as long as its connection lives: a second daemon exits
//! (`--no-wait`) or stands by and takes over when the first one stops or loses its
//! connection. The loader lock ([`crate::load::LOADER_LOCK`]) is held by whoever
//! writes the vault, for one run: the daemon takes it per run, so a manual
//! `dvault load` waits only for the run in progress (or exits with `--no-wait`).

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::ops::shutdown::Shutdown;

/// Advisory lock held by the one working daemon.
pub const DAEMON_LOCK: i64 = 0x6476_6175_6c74_0003;

/// How often a standby daemon tries the lock.
pub const STANDBY_POLL: Duration = Duration::from_secs(1);

pub async fn try_lock(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&DAEMON_LOCK])
        .await?
        .try_get(0)
}

/// Who holds advisory lock `key` in this database: `pid 123, "dvault daemon host:77",
/// from 10.0.0.5, connected 2024-05-10 02:00:00+00`.
pub async fn holder(
    client: &impl GenericClient,
    key: i64,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.classid = ($1::bigint >> 32)::oid
                AND l.objid = ($1::bigint & 4294967295)::oid
                AND l.objsubid = 1
              LIMIT 1",
            &[&key],
        )
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let (pid, app, from, since): (i32, String, String, String) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    Ok(Some(format!(
        "server pid {pid}, \"{app}\", from {from}, connected {since} UTC"
    )))
}

/// What taking the lock came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Yes,
    /// Someone else holds it and `--no-wait` was given: who.
    Busy(String),
    /// A stop was asked for while standing by.
    Stopped,
}

/// Take the daemon lock, standing by until it is free unless `no_wait`.
pub async fn take(
    client: &impl GenericClient,
    no_wait: bool,
    shutdown: &Shutdown,
) -> Result<Taken, tokio_postgres::Error> {
    if try_lock(client).await? {
        return Ok(Taken::Yes);
    }
    let who = holder(client, DAEMON_LOCK)
        .await?
        .unwrap_or_else(|| "holder unknown".into());
    if no_wait {
        return Ok(Taken::Busy(who));
    }
    tracing::warn!(holder = %who, "another dvault daemon is working on this database; standing by to take over when it stops");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_POLL) => {
                if try_lock(client).await? {
                    tracing::info!("the other daemon stopped: taking over");
                    return Ok(Taken::Yes);
                }
            }
            _ = shutdown.wait() => return Ok(Taken::Stopped),
        }
    }
}
