//! When the database goes away: which errors are worth retrying, and how long to
//! wait between attempts (exponential backoff with jitter). Pure, apart from the
//! random draw in [`Backoff::next_delay`].

use std::error::Error as StdError;
use std::time::Duration;

/// How the daemon waits between attempts to reach the database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The ceiling for attempt `n` (0-based): `initial · 2ⁿ`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// "Equal jitter": half the ceiling is fixed, the other half random (`unit` in
/// `0..1`), so daemons that lost the database together do not come back together,
/// and no delay is shorter than half its ceiling.
pub fn with_jitter(ceiling: Duration, unit: f64) -> Duration {
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// Counts attempts since the last success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// Attempts that failed since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    /// Count a failed attempt; the delay to wait before the next one.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.policy.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        with_jitter(ceiling, rand::random::<f64>())
    }

    /// The database answered: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Is this database error worth retrying? Yes for a lost or refused connection, a
/// server shutting down or starting, too many connections, and serialization
/// failures or deadlocks; no for everything else (a bug or a bad schema will not heal
/// by waiting).
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("57P") // admin/crash shutdown, cannot connect now
                || c == "53300" // too many connections
                || c == "40001" // serialization failure
                || c == "40P01" // deadlock detected
        }
        // no SQLSTATE: the socket, not the server, failed
        None => has_io_cause(e),
    }
}

fn has_io_cause(e: &(dyn StdError + 'static)) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Was this statement cancelled (the daemon stopping cancels the batch in hand)?
pub fn is_cancelled(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        };
        let ceilings: Vec<u64> = (0..8).map(|n| p.ceiling(n).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        assert_eq!(p.ceiling(1000), Duration::from_secs(10));
    }

    #[test]
    fn jitter_keeps_half_the_delay_and_randomizes_the_rest() {
        let d = Duration::from_secs(4);
        assert_eq!(with_jitter(d, 0.0), Duration::from_secs(2));
        assert_eq!(with_jitter(d, 0.5), Duration::from_secs(3));
        assert_eq!(with_jitter(d, 1.0), Duration::from_secs(4));
        let mut b = Backoff::new(RetryPolicy::default());
        for n in 0..12 {
            let ceiling = RetryPolicy::default().ceiling(n);
            let got = b.next_delay();
            assert!(got >= ceiling / 2 && got <= ceiling, "attempt {n}: {got:?}");
        }
        assert_eq!(b.failures(), 12);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
