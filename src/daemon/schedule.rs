//! When the nightly cycle runs: a cron expression read in a time zone. Pure
//! functions over a given instant, so tests use a fixed clock.
//!
//! Expressions are Vixie-cron's five fields (`minute hour day-of-month month
//! day-of-week`), with an optional leading seconds field and the usual extensions
//! (`*/15`, `1-5`, `MON-FRI`, `L`, `#`), parsed by the `croner` crate. Times are
//! wall-clock times in the zone: `0 2 * * *` in `Europe/Berlin` is 02:00 Berlin time
//! all year. On the night the clocks go forward, a time that does not exist runs at
//! the first instant after the gap; on the night they go back, a time that happens
//! twice runs once.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The documented default: every night at 02:00.
pub const DEFAULT_SCHEDULE: &str = "0 2 * * *";
/// The default time zone of the schedule.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// A cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parse `expr` (cron) and `tz` (an IANA name such as `Europe/Berlin`, or `UTC`).
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, String> {
        let cron = Cron::from_str(expr.trim()).map_err(|e| {
            format!(
                "bad --schedule \"{expr}\": {e}; expected five cron fields \
                 (minute hour day-of-month month day-of-week), e.g. \"{DEFAULT_SCHEDULE}\""
            )
        })?;
        let tz = Tz::from_str(tz.trim()).map_err(|_| {
            format!(
                "unknown time zone \"{tz}\": use an IANA name such as UTC, Europe/Berlin or America/New_York"
            )
        })?;
        Ok(Schedule {
            expr: expr.trim().to_string(),
            cron,
            tz,
        })
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first instant strictly after `now` at which the schedule fires.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last instant at or before `now` at which the schedule fired.
    pub fn previous_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether a run that last started at `last` (if ever) missed a firing before
    /// `now` (for `--catch-up`).
    pub fn missed(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match (self.previous_fire(now), last) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(prev), Some(last)) => last < prev,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" ({})", self.expr, self.tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_expected() {
        let e = Schedule::parse("0 2 * *", "UTC").unwrap_err();
        assert!(e.contains("five cron fields"), "{e}");
        let e = Schedule::parse("0 2 * * *", "Mars/Olympus").unwrap_err();
        assert!(e.contains("unknown time zone \"Mars/Olympus\""), "{e}");
    }

    #[test]
    fn missed_runs_are_noticed() {
        let s = Schedule::parse(DEFAULT_SCHEDULE, "UTC").expect("schedule");
        let now = utc("2024-05-10T09:00:00Z");
        assert!(s.missed(None, now));
        assert!(s.missed(Some(utc("2024-05-09T02:00:00Z")), now));
        assert!(!s.missed(Some(utc("2024-05-10T02:00:00Z")), now));
    }
}
