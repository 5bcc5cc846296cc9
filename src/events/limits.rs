//! What an event may hold, in one place: the longest attributes the log stores and
//! indexes, and the range of business times. Checked when an event is parsed, so a
//! value the log's B-tree index cannot hold (PostgreSQL refuses an index entry over
//! about 2,704 bytes, and a whole `COPY` with it) is refused for its own line only.
//! Pure functions, no I/O.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

/// Longest CloudEvents `id`, in bytes (UTF-8). Derived ids are 32 bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest CloudEvents `source` (the record source), in bytes.
pub const MAX_SOURCE_BYTES: usize = 512;
/// Longest CloudEvents `type`, in bytes.
pub const MAX_TYPE_BYTES: usize = 128;

// the unique index on (record_source, event_id) must always be able to hold both
const _: () = assert!(MAX_ID_BYTES + MAX_SOURCE_BYTES + 64 < 2704);

/// The stored attributes and their limits, for messages and documentation.
pub const ATTRIBUTE_LIMITS: [(&str, usize); 3] = [
    ("id", MAX_ID_BYTES),
    ("source", MAX_SOURCE_BYTES),
    ("type", MAX_TYPE_BYTES),
];

/// Refuse an attribute longer than its limit; the reason names attribute, length
/// and limit, and quotes only the value's start.
pub fn check_attribute(name: &str, value: &str, limit: usize) -> Result<(), String> {
    if value.len() <= limit {
        return Ok(());
    }
    let start: String = value.chars().take(32).collect();
    Err(format!(
        "attribute \"{name}\" is {} bytes long, more than the limit of {limit} bytes (starts \"{start}...\")",
        value.len()
    ))
}

/// Check the stored attributes of an event against [`ATTRIBUTE_LIMITS`].
pub fn check_attributes(id: &str, source: &str, event_type: &str) -> Result<(), String> {
    check_attribute("id", id, MAX_ID_BYTES)?;
    check_attribute("source", source, MAX_SOURCE_BYTES)?;
    check_attribute("type", event_type, MAX_TYPE_BYTES)
}

/// The business times accepted at ingest: `from` included, `until` excluded. The
/// default, 1900-01-01 to 2200-01-01 (UTC), holds any business calendar and keeps
/// every time printable as RFC 3339 (four-digit years) and every series short
/// enough to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// The widest range that may be configured: years 0000 to 9999, what RFC 3339 can
/// write.
fn rfc3339_bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        midnight(0, 1, 1).unwrap_or(DateTime::<Utc>::MIN_UTC),
        midnight(9999, 12, 31).unwrap_or(DateTime::<Utc>::MAX_UTC) + chrono::Duration::days(1),
    )
}

fn midnight(y: i32, m: u32, d: u32) -> Option<DateTime<Utc>> {
    Some(
        NaiveDate::from_ymd_opt(y, m, d)?
            .and_hms_opt(0, 0, 0)?
            .and_utc(),
    )
}

impl Default for TimeRange {
    fn default() -> Self {
        let (lowest, highest) = rfc3339_bounds();
        TimeRange {
            from: midnight(1900, 1, 1).unwrap_or(lowest),
            until: midnight(2200, 1, 1).unwrap_or(highest),
        }
    }
}

impl TimeRange {
    /// A range from `from` (included) to `until` (excluded): not empty, and within
    /// years 0000 to 9999.
    pub fn new(from: DateTime<Utc>, until: DateTime<Utc>) -> Result<TimeRange, String> {
        let (lowest, highest) = rfc3339_bounds();
        if from >= until {
            return Err(format!(
                "the range of business times is empty: {} is not before {}",
                show(from),
                show(until)
            ));
        }
        if from < lowest || until > highest {
            return Err(format!(
                "the range of business times must lie within years 0000 to 9999 (RFC 3339), got {} to {}",
                show(from),
                show(until)
            ));
        }
        Ok(TimeRange { from, until })
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn until(&self) -> DateTime<Utc> {
        self.until
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.until
    }

    /// Refuse a business time outside the range; `what` names where it came from
    /// (`attribute "time"`, `time field "signup_date"`), `text` is the value as given.
    pub fn check(&self, what: &str, text: &str, t: DateTime<Utc>) -> Result<(), String> {
        if self.contains(t) {
            return Ok(());
        }
        Err(format!(
            "{what}: \"{text}\" is outside the range of business times, {self}"
        ))
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} (included) to {} (excluded)",
            show(self.from),
            show(self.until)
        )
    }
}

fn show(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn attributes_at_the_limit_pass_and_one_byte_more_is_named() {
        for (name, limit) in ATTRIBUTE_LIMITS {
            assert!(check_attribute(name, &"x".repeat(limit), limit).is_ok());
            let err = check_attribute(name, &"x".repeat(limit + 1), limit).expect_err(name);
            assert!(
                err.contains(&format!(
                    "\"{name}\" is {} bytes long, more than the limit of {limit} bytes",
                    limit + 1
                )),
                "{err}"
            );
            assert!(err.len() < 200, "{err}");
        }
        // bytes, not characters: 100 three-byte characters are 300 bytes
        let err = check_attributes("€".repeat(100).as_str(), "s", "t").expect_err("bytes");
        assert!(err.contains("300 bytes"), "{err}");
        assert!(check_attributes("id", "s", "t").is_ok());
    }

    #[test]
    fn the_default_range_includes_from_and_excludes_until() {
        let r = TimeRange::default();
        assert!(r.contains(at("1900-01-01T00:00:00Z")));
        assert!(r.contains(at("2199-12-31T23:59:59.999999Z")));
        assert!(!r.contains(at("2200-01-01T00:00:00Z")));
        assert!(!r.contains(at("1899-12-31T23:59:59Z")));
        let err = r
            .check(
                "attribute \"time\"",
                "0000-01-01T00:00:00Z",
                at("0000-01-01T00:00:00Z"),
            )
            .expect_err("year 0");
        assert_eq!(
            err,
            "attribute \"time\": \"0000-01-01T00:00:00Z\" is outside the range of business times, \
             from 1900-01-01T00:00:00Z (included) to 2200-01-01T00:00:00Z (excluded)"
        );
    }

    #[test]
    fn a_configured_range_is_not_empty_and_stays_rfc3339() {
        assert!(TimeRange::new(at("2000-01-01T00:00:00Z"), at("2000-01-01T00:00:00Z")).is_err());
        let err = TimeRange::new(
            at("2000-01-01T00:00:00Z"),
            at("9999-12-31T23:59:59Z") + chrono::Duration::days(2),
        )
        .expect_err("year 10000");
        assert!(err.contains("0000 to 9999"), "{err}");
        let widest = TimeRange::new(
            at("0000-01-01T00:00:00Z"),
            at("9999-12-31T00:00:00Z") + chrono::Duration::days(1),
        )
        .expect("the widest range");
        // every time inside the widest range prints as RFC 3339 and reads back
        for t in [
            widest.from(),
            widest.until() - chrono::Duration::microseconds(1),
            TimeRange::default().from(),
            TimeRange::default().until() - chrono::Duration::microseconds(1),
        ] {
            let text = show(t);
            assert_eq!(at(&text), t, "{text}");
            assert!(!text.starts_with('+') && !text.starts_with('-'), "{text}");
        }
    }
}
