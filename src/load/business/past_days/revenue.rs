//! The revenue series at the end of every past day: what `business_vault.sales_computed`
//! gives per day, ISO week and month (`mart.revenue_as_of`), from the orders the sweep
//! holds.
//!
//! A period's figures are those of the orders placed by then whose date falls in it:
//! counted (by their status then) for the orders, customers, units and revenue; not
//! counted for the orders cancelled or returned and the revenue lost. They change only
//! on the days one of those orders is placed or changes, so each version is kept once
//! with the days it held (`business_vault.revenue_kept`, migration 28).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_postgres::Client;

use crate::db::Failed;

/// The grains of the series, as `mart.revenue_as_of` names them.
const GRAINS: [&str; 3] = ["day", "week", "month"];

/// The first day of the period of `grain` (an index of [`GRAINS`]) holding `date`:
/// `date_trunc` of the day, the ISO week (from Monday) and the month.
fn period_start(grain: usize, date: NaiveDate) -> NaiveDate {
    match grain {
        0 => date,
        1 => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
        _ => date.with_day(1).unwrap_or(date),
    }
}

/// What one placed order adds to its periods: its date, customer (none: an order
/// without one, which no customer count sees), whether it counts, its amount (rounded
/// to the cent, as `order_summary` keeps it) and units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sale {
    pub date: NaiveDate,
    pub customer: Option<u32>,
    pub counted: bool,
    pub amount: Decimal,
    pub units: i64,
}

/// One period's figures: the columns of `business_vault.revenue_kept`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Figures {
    orders: i64,
    customers: i64,
    units: i64,
    revenue: Decimal,
    lost_orders: i64,
    revenue_lost: Decimal,
}

/// A period as the sweep has reached it.
#[derive(Default)]
struct Period {
    /// How many of its orders are placed (none: the period has no figures).
    placed: u64,
    figures: Figures,
    /// Its counted orders per customer.
    customers: HashMap<u32, u32>,
    /// The version open since a day, if any.
    open: Option<(NaiveDate, Figures)>,
    dirty: bool,
}

/// One version of a period's figures and the days it held, `[from, to)`.
struct Held {
    grain: usize,
    start: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
    figures: Figures,
}

/// Every period's figures as the sweep moves, and the versions they had.
#[derive(Default)]
pub struct Series {
    periods: HashMap<(usize, NaiveDate), Period>,
    dirty: Vec<(usize, NaiveDate)>,
    held: Vec<Held>,
}

impl Series {
    /// An order's sale changed from `was` to `now` (none: not placed).
    pub fn change(&mut self, was: Option<Sale>, now: Option<Sale>) {
        for grain in 0..GRAINS.len() {
            if let Some(s) = was {
                self.apply(grain, &s, -1);
            }
            if let Some(s) = now {
                self.apply(grain, &s, 1);
            }
        }
    }

    fn apply(&mut self, grain: usize, s: &Sale, sign: i64) {
        let key = (grain, period_start(grain, s.date));
        let p = self.periods.entry(key).or_default();
        if !p.dirty {
            p.dirty = true;
            self.dirty.push(key);
        }
        p.placed = p.placed.wrapping_add_signed(sign);
        let f = &mut p.figures;
        if !s.counted {
            f.lost_orders += sign;
            f.revenue_lost += Decimal::from(sign) * s.amount;
            return;
        }
        f.orders += sign;
        f.units += sign * s.units;
        f.revenue += Decimal::from(sign) * s.amount;
        if let Some(c) = s.customer {
            let n = p.customers.entry(c).or_default();
            *n = n.wrapping_add_signed(sign as i32);
            if *n == 0 {
                p.customers.remove(&c);
            }
            f.customers = p.customers.len() as i64;
        }
    }

    /// The end of `day`: the periods whose figures changed that day close their open
    /// version and open a new one (none when no order of theirs is placed).
    pub fn day_end(&mut self, day: NaiveDate) {
        for key in self.dirty.drain(..) {
            let Some(p) = self.periods.get_mut(&key) else {
                continue;
            };
            p.dirty = false;
            let now = (p.placed > 0).then(|| p.figures.clone());
            if p.open.as_ref().map(|(_, f)| f) == now.as_ref() {
                continue;
            }
            if let Some((from, figures)) = p.open.take() {
                self.held.push(Held {
                    grain: key.0,
                    start: key.1,
                    from,
                    to: day,
                    figures,
                });
            }
            p.open = now.map(|f| (day, f));
        }
    }

    /// Store every version, the open ones held to the end of `last`, in place of the
    /// versions kept before; how many were stored. (In the fill's transaction, which
    /// stores nothing unless the checkpoint is where it was when the history was read.)
    pub async fn store(mut self, client: &Client, last: NaiveDate) -> Result<u64, Failed> {
        let to = last + Days::new(1);
        for ((grain, start), p) in self.periods.drain() {
            if let Some((from, figures)) = p.open {
                self.held.push(Held {
                    grain,
                    start,
                    from,
                    to,
                    figures,
                });
            }
        }
        let h = &self.held;
        let grains: Vec<&str> = h.iter().map(|v| GRAINS[v.grain]).collect();
        let starts: Vec<NaiveDate> = h.iter().map(|v| v.start).collect();
        let froms: Vec<NaiveDate> = h.iter().map(|v| v.from).collect();
        let tos: Vec<NaiveDate> = h.iter().map(|v| v.to).collect();
        let orders: Vec<i64> = h.iter().map(|v| v.figures.orders).collect();
        let customers: Vec<i64> = h.iter().map(|v| v.figures.customers).collect();
        let units: Vec<i64> = h.iter().map(|v| v.figures.units).collect();
        let revenue: Vec<Decimal> = h.iter().map(|v| v.figures.revenue).collect();
        let lost: Vec<i64> = h.iter().map(|v| v.figures.lost_orders).collect();
        let revenue_lost: Vec<Decimal> = h.iter().map(|v| v.figures.revenue_lost).collect();
        super::replace(
            client,
            "business_vault.revenue_kept",
            STORE,
            &[
                &grains,
                &starts,
                &froms,
                &tos,
                &orders,
                &customers,
                &units,
                &revenue,
                &lost,
                &revenue_lost,
            ],
            "replacing the past days' revenue series",
        )
        .await
    }
}

/// Store the versions. (Money at two decimals, as the database sums it: the driver sends
/// a zero without its scale.)
const STORE: &str = "
INSERT INTO business_vault.revenue_kept
       (grain, period_start, held, orders, customers, units, revenue,
        orders_cancelled_or_returned, revenue_lost)
SELECT v.grain, v.start, daterange(v.from_day, v.to_day), v.orders, v.customers, v.units,
       round(v.revenue, 2), v.lost, round(v.revenue_lost, 2)
  FROM unnest($1::text[], $2::date[], $3::date[], $4::date[], $5::bigint[], $6::bigint[],
              $7::bigint[], $8::numeric[], $9::bigint[], $10::numeric[])
       AS v(grain, start, from_day, to_day, orders, customers, units, revenue, lost, revenue_lost)
ON CONFLICT DO NOTHING";

/// The day (UTC) of a time in µs since 1970, or what is wrong with it.
pub fn date_of(at: i64) -> Result<NaiveDate, String> {
    DateTime::<Utc>::from_timestamp_micros(at)
        .map(|t| t.date_naive())
        .ok_or_else(|| format!("an order placed at {at} µs from 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn periods_start_on_the_day_the_monday_and_the_first() {
        // 2024-03-01 was a Friday
        assert_eq!(period_start(0, date("2024-03-01")), date("2024-03-01"));
        assert_eq!(period_start(1, date("2024-03-01")), date("2024-02-26"));
        assert_eq!(period_start(1, date("2024-02-26")), date("2024-02-26"));
        assert_eq!(period_start(2, date("2024-03-31")), date("2024-03-01"));
        // an ISO week across a new year
        assert_eq!(period_start(1, date("2025-01-01")), date("2024-12-30"));
    }

    fn sale(day: &str, customer: u32, counted: bool, cents: i64) -> Sale {
        Sale {
            date: date(day),
            customer: Some(customer),
            counted,
            amount: Decimal::new(cents, 2),
            units: 1,
        }
    }

    #[test]
    fn a_period_keeps_a_version_per_change_and_none_while_nothing_is_placed() {
        let mut s = Series::default();
        let a = sale("2024-03-01", 1, true, 1000);
        s.change(None, Some(a));
        s.day_end(date("2024-03-01"));
        // nothing changes on the 2nd; on the 3rd the order is returned
        s.day_end(date("2024-03-02"));
        let returned = Sale {
            counted: false,
            ..a
        };
        s.change(Some(a), Some(returned));
        s.day_end(date("2024-03-03"));
        // on the 4th it is placed later than recorded: no longer placed
        s.change(Some(returned), None);
        s.day_end(date("2024-03-04"));
        let days: Vec<_> = s
            .held
            .iter()
            .filter(|h| h.grain == 0)
            .map(|h| (h.from, h.to, h.figures.orders, h.figures.lost_orders))
            .collect();
        assert_eq!(
            days,
            [
                (date("2024-03-01"), date("2024-03-03"), 1, 0),
                (date("2024-03-03"), date("2024-03-04"), 0, 1)
            ]
        );
        assert!(s.periods.values().all(|p| p.open.is_none()));
    }

    #[test]
    fn a_customer_counts_once_per_period_while_an_order_of_theirs_counts() {
        let mut s = Series::default();
        let (a, b) = (
            sale("2024-03-01", 7, true, 100),
            sale("2024-03-02", 7, true, 250),
        );
        s.change(None, Some(a));
        s.change(None, Some(b));
        s.change(None, Some(sale("2024-03-02", 8, false, 999)));
        s.day_end(date("2024-03-02"));
        let month = |s: &Series| {
            s.periods[&(2, date("2024-03-01"))]
                .open
                .clone()
                .map(|(_, f)| f)
        };
        let f = month(&s).expect("March has orders");
        assert_eq!((f.orders, f.customers, f.units), (2, 1, 2));
        assert_eq!(f.revenue, Decimal::new(350, 2));
        assert_eq!((f.lost_orders, f.revenue_lost), (1, Decimal::new(999, 2)));
        s.change(Some(a), None);
        s.day_end(date("2024-03-03"));
        let f = month(&s).expect("March has orders");
        assert_eq!((f.orders, f.customers), (1, 1));
        s.change(
            Some(b),
            Some(Sale {
                counted: false,
                ..b
            }),
        );
        s.day_end(date("2024-03-04"));
        let f = month(&s).expect("March has orders");
        assert_eq!((f.orders, f.customers, f.lost_orders), (0, 0, 2));
    }
}
