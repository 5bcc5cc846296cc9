//! The read replica (`dvault serve --read-database-url`): how far its replay lags
//! behind the primary, for GET /ready (not ready past `--max-replica-lag`) and
//! /metrics.
//!
//! `now() - pg_last_xact_replay_timestamp()` alone is the age of the last transaction
//! replayed: on a quiet primary it grows while the standby is fully caught up. So a
//! standby that streams and has replayed all the WAL it received lags 0; otherwise
//! (WAL received but not yet replayed, or no WAL receiver: the primary is away and
//! nobody can tell what the standby misses) its lag is that age.

use serde::Serialize;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use super::error::ApiError;

/// What the replica's own functions tell (executable by any role, on a primary too).
const REPLAY_STATE: &str = "SELECT pg_is_in_recovery(),
        EXISTS (SELECT 1 FROM pg_stat_wal_receiver),
        pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
        extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8";

/// The read replica as /ready shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Replica {
    /// Whether the read database is a standby (`pg_is_in_recovery()`); false when it
    /// was promoted or is a primary itself (then it lags 0).
    pub in_recovery: bool,
    /// How far its data is behind the primary, seconds; null when it cannot tell (a
    /// standby that has replayed nothing since it started and does not stream).
    pub replay_lag_seconds: Option<f64>,
    /// The limit past which the server is not ready (`--max-replica-lag`), seconds.
    pub max_replay_lag_seconds: f64,
}

impl Replica {
    /// Whether reads from it are fresh enough to serve.
    pub fn within_limit(&self) -> bool {
        self.replay_lag_seconds
            .is_some_and(|lag| lag <= self.max_replay_lag_seconds)
    }

    /// 503 `not-ready` past the limit, the lag and the limit as extension members.
    pub fn require_within_limit(&self) -> Result<(), ApiError> {
        if self.within_limit() {
            return Ok(());
        }
        let max = self.max_replay_lag_seconds;
        let lag = match self.replay_lag_seconds {
            Some(s) => format!("{s:.1} s"),
            None => {
                "an unknown time (it does not stream and has replayed nothing since it started)"
                    .to_string()
            }
        };
        let mut extensions = serde_json::Map::new();
        extensions.insert("replay_lag_seconds".into(), self.replay_lag_seconds.into());
        extensions.insert("max_replay_lag_seconds".into(), max.into());
        Err(ApiError::NotReady {
            detail: format!(
                "the read replica is {lag} behind the primary, more than the {max} s allowed \
                 (--max-replica-lag)"
            ),
            extensions,
        })
    }
}

/// The replay state of the server `client` is connected to.
pub async fn state(
    client: &impl GenericClient,
    max_replay_lag_seconds: f64,
) -> Result<Replica, tokio_postgres::Error> {
    let row = client.query_one(REPLAY_STATE, &[]).await?;
    let in_recovery: bool = row.try_get(0)?;
    let receiving: bool = row.try_get(1)?;
    let replayed_all_received: bool = row.try_get(2)?;
    let since_last_replay: Option<f64> = row.try_get(3)?;
    Ok(Replica {
        in_recovery,
        replay_lag_seconds: lag(
            in_recovery,
            receiving,
            replayed_all_received,
            since_last_replay,
        ),
        max_replay_lag_seconds,
    })
}

/// The lag, from what the standby tells (see the module's comment).
fn lag(
    in_recovery: bool,
    receiving: bool,
    replayed_all_received: bool,
    since_last_replay: Option<f64>,
) -> Option<f64> {
    if !in_recovery || (receiving && replayed_all_received) {
        Some(0.0)
    } else {
        // a clock a little ahead on the standby must not read as negative lag
        since_last_replay.map(|s| s.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_zero_only_when_caught_up_and_streaming() {
        assert_eq!(lag(false, false, true, None), Some(0.0));
        assert_eq!(lag(true, true, true, Some(900.0)), Some(0.0));
        assert_eq!(lag(true, true, false, Some(12.5)), Some(12.5));
        // the primary is away: the standby cannot know what it misses
        assert_eq!(lag(true, false, true, Some(40.0)), Some(40.0));
        assert_eq!(lag(true, false, true, None), None);
        assert_eq!(lag(true, true, false, Some(-0.2)), Some(0.0));
        let r = |lag| Replica {
            in_recovery: true,
            replay_lag_seconds: lag,
            max_replay_lag_seconds: 30.0,
        };
        assert!(r(Some(30.0)).within_limit());
        assert!(!r(Some(30.5)).within_limit());
        assert!(!r(None).within_limit());
        let p = r(Some(42.0))
            .require_within_limit()
            .expect_err("past the limit")
            .problem();
        assert_eq!(p.status, 503);
        assert_eq!(
            p.detail,
            "the read replica is 42.0 s behind the primary, more than the 30 s allowed (--max-replica-lag)"
        );
    }
}
