//! The simulated period, and how many of the orders fall on each of its days.

use std::io;

use chrono::{Datelike, Days, NaiveDate, NaiveTime};

use super::invalid;
use super::world::World;

/// Seconds since the Unix epoch, UTC.
pub(super) type Ts = i64;

pub(super) const DAY: Ts = 86_400;
pub(super) const HOUR: Ts = 3_600;
pub(super) const MINUTE: Ts = 60;

/// The simulated period: `days` whole UTC days.
#[derive(Debug, Clone, Copy)]
pub(super) struct Calendar {
    first_day: NaiveDate,
    /// The first second of the period.
    pub(super) start: Ts,
    pub(super) days: u32,
}

impl Calendar {
    /// The `days` days ending with `end`.
    pub(super) fn new(end: NaiveDate, days: u32) -> io::Result<Calendar> {
        let first_day = end
            .checked_sub_days(Days::new(u64::from(days) - 1))
            .ok_or_else(|| invalid(format!("{days} days before {end} is out of range")))?;
        Ok(Calendar {
            first_day,
            start: first_day.and_time(NaiveTime::MIN).and_utc().timestamp(),
            days,
        })
    }

    /// The first second of day `day` (0-based).
    pub(super) fn day_start(&self, day: usize) -> Ts {
        self.start + day as Ts * DAY
    }

    /// The first second after the period.
    pub(super) fn horizon(&self) -> Ts {
        self.day_start(self.days as usize)
    }

    /// The day a moment falls on, clamped to the period.
    pub(super) fn day_of(&self, ts: Ts) -> usize {
        ((ts - self.start).div_euclid(DAY)).clamp(0, Ts::from(self.days) - 1) as usize
    }

    fn dates(&self) -> impl Iterator<Item = NaiveDate> {
        self.first_day.iter_days().take(self.days as usize)
    }
}

/// Relative order volume of a date: month, week day, Black Friday week, Christmas.
fn demand(date: NaiveDate) -> f64 {
    const MONTH: [f64; 12] = [
        0.85, 0.8, 0.9, 0.9, 0.95, 0.9, 0.85, 0.85, 0.95, 1.0, 1.45, 1.7,
    ];
    const WEEKDAY: [f64; 7] = [1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2];
    let mut factor =
        MONTH[date.month0() as usize] * WEEKDAY[date.weekday().num_days_from_monday() as usize];
    match (date.month(), date.day()) {
        (11, 24..=30) => factor *= 1.4,
        (12, 24..=26) => factor *= 0.4,
        _ => {}
    }
    factor
}

/// How many of `total` orders fall on each day: proportional to demand times the
/// number of active (signed up, not churned) customers, rounded so they add up.
pub(super) fn daily_order_counts(world: &World, total: usize) -> Vec<usize> {
    let calendar = &world.calendar;
    let mut change = vec![0i64; calendar.days as usize];
    for c in &world.customers {
        change[calendar.day_of(c.registered_at)] += 1;
        if c.churns_at < calendar.horizon() {
            change[calendar.day_of(c.churns_at)] -= 1;
        }
    }
    let mut active = 0i64;
    let weights: Vec<f64> = calendar
        .dates()
        .zip(change)
        .map(|(date, delta)| {
            active += delta;
            demand(date) * (active.max(0) as f64 + 0.5)
        })
        .collect();
    spread(total, &weights)
}

/// `total` split in proportion to `weights`, rounding the running sum so the parts
/// add up exactly (the last part takes what rounding left over).
fn spread(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let mut running = 0.0;
    let mut given = 0usize;
    let mut parts: Vec<usize> = weights
        .iter()
        .map(|w| {
            running += w;
            let until = ((running / sum) * total as f64).round() as usize;
            let part = until.min(total).saturating_sub(given);
            given += part;
            part
        })
        .collect();
    if let Some(last) = parts.last_mut() {
        *last += total - given;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_counts_add_up() {
        let parts = spread(1000, &[1.0, 0.0, 2.5, 0.3, 7.0]);
        assert_eq!(parts.iter().sum::<usize>(), 1000);
        assert_eq!(parts[1], 0);
        assert!(spread(0, &[1.0, 2.0]).iter().all(|&p| p == 0));
    }
}
