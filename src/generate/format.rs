//! How values are written: moments, amounts and ids. Every one is `Display`, so it
//! goes straight into a `write!` without an intermediate `String`.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike};

use super::calendar::Ts;

/// A moment as RFC 3339 UTC: `2024-03-01T10:15:00Z`.
pub(super) struct Rfc3339(pub(super) Ts);
/// A moment as `2024-03-01 10:15:00` (the CSV style).
pub(super) struct SqlTime(pub(super) Ts);
/// The date of a moment: `2024-03-01`.
pub(super) struct IsoDate(pub(super) Ts);

/// `2024-03-01`, then with `Some((separator, zone))` the time of day:
/// `2024-03-01T10:15:00Z` or `2024-03-01 10:15:00`.
fn write_moment(f: &mut fmt::Formatter<'_>, ts: Ts, time: Option<(char, &str)>) -> fmt::Result {
    let dt = DateTime::from_timestamp(ts, 0).ok_or(fmt::Error)?;
    write!(f, "{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day())?;
    if let Some((separator, zone)) = time {
        write!(
            f,
            "{separator}{:02}:{:02}:{:02}{zone}",
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
    }
    Ok(())
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_moment(f, self.0, Some(('T', "Z")))
    }
}

impl fmt::Display for SqlTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_moment(f, self.0, Some((' ', "")))
    }
}

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_moment(f, self.0, None)
    }
}

/// An amount in cents, written with two decimals: `19.90`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cents(pub(super) i64);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// `C000001`, from a customer's 0-based index.
pub(super) struct CustomerId(pub(super) usize);
/// `P00001`, from a product's 0-based index.
pub(super) struct ProductId(pub(super) usize);
/// `O0000001`, from a 1-based counter.
pub(super) struct OrderId(pub(super) u64);
/// `S00000001`, from a 1-based counter.
pub(super) struct SessionId(pub(super) u64);
/// `T00000001`, from a 1-based counter.
pub(super) struct TransactionId(pub(super) u64);

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{:06}", self.0 + 1)
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{:05}", self.0 + 1)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "O{:07}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{:08}", self.0)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{:08}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_as_promised() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(SqlTime(1_709_288_100).to_string(), "2024-03-01 10:15:00");
        assert_eq!(IsoDate(1_709_288_100).to_string(), "2024-03-01");
        assert_eq!(Cents(1990).to_string(), "19.90");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(CustomerId(0).to_string(), "C000001");
        assert_eq!(ProductId(41).to_string(), "P00042");
        assert_eq!(OrderId(7).to_string(), "O0000007");
    }
}
