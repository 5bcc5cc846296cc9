//! The population figures at the end of a past day, per RFM segment: what
//! `business_vault.population_computed` counts over every customer known then
//! (`mart.segments_as_of`, `mart.churn_as_of`), from the figures the sweep holds.
//!
//! A customer is known at a time from their first profile or contact version or product
//! view on, or while an order of theirs exists. With counted orders they are scored
//! ([`score`]) against the day's boundaries; without, they are the segment
//! `business_vault.rfm_segment` gives no scores (a prospect), with no figures.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use tokio_postgres::Client;

use super::score::{self, Churn};
use super::{Customer, DayCuts};
use crate::db::{Doing, Failed};

/// The segment of every score triple, read from `business_vault.rfm_segment` (so the
/// rule table stays in SQL), and of no scores.
pub const SEGMENTS: &str = "
SELECT r, f, m, business_vault.rfm_segment(r, f, m)
  FROM generate_series(1, 5) r, generate_series(1, 5) f, generate_series(1, 5) m
UNION ALL
SELECT NULL, NULL, NULL, business_vault.rfm_segment(NULL, NULL, NULL)";

/// The segments by name, and which one every score triple falls in.
pub struct Segments {
    pub names: Vec<String>,
    by_scores: [usize; 125],
    prospect: usize,
}

impl Segments {
    /// The segments, or the score triple without one.
    pub async fn read(client: &Client) -> Result<Result<Segments, String>, Failed> {
        let rows = client
            .query(SEGMENTS, &[])
            .await
            .doing("reading the RFM segment rules")?;
        let mut names: Vec<String> = Vec::new();
        let mut by_scores = [0; 125];
        let mut prospect = 0;
        for row in rows {
            let triple: [Option<i32>; 3] = [row.get(0), row.get(1), row.get(2)];
            let Some(name) = row.get::<_, Option<String>>(3) else {
                return Ok(Err(format!("rfm_segment{triple:?} is NULL")));
            };
            let at = match names.iter().position(|n| *n == name) {
                Some(at) => at,
                None => {
                    names.push(name);
                    names.len() - 1
                }
            };
            match triple {
                // (each of 1 to 5: SEGMENTS' series)
                [Some(r), Some(f), Some(m)] => {
                    let score = |s: i32| usize::try_from(s).unwrap_or(1);
                    by_scores[index((score(r), score(f), score(m)))] = at;
                }
                _ => prospect = at,
            }
        }
        Ok(Ok(Segments {
            names,
            by_scores,
            prospect,
        }))
    }
}

/// The place of scores (r, f, m), each 1 to 5, in [`Segments`]'s table.
fn index((r, f, m): (usize, usize, usize)) -> usize {
    (r - 1) * 25 + (f - 1) * 5 + (m - 1)
}

/// One segment's figures at a day's end (the columns of `business_vault.population_as_of`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub customers: i64,
    pub with_orders: i64,
    pub orders: i64,
    pub revenue_cents: i128,
    pub with_days: i64,
    pub days_sum: i64,
    pub clv_cents: i128,
    pub active: i64,
    pub at_risk: i64,
    pub churned: i64,
}

/// The population at the end of one day: the figures of every segment with customers.
pub struct DayPopulation {
    pub day: NaiveDate,
    pub segments: Vec<(usize, Figures)>,
}

/// What the population counts of a customer with counted orders, kept by the sweep as
/// they change: the days (from the common era) of the first and last, how many, the
/// money, the average gap in tenths of a day.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    first: i32,
    last: i32,
    orders: u32,
    spent_cents: i128,
    gap_tenths: Option<i64>,
}

impl Counted {
    /// A customer's figures as the population counts them; none without a counted order.
    pub fn of(c: &Customer) -> Result<Option<Counted>, String> {
        let Some((first, last)) = c.first_and_last() else {
            return Ok(None);
        };
        let gap_tenths = score::gap_tenths(first, last, c.orders).map_err(|_| {
            format!(
                "the average gap of {} orders from {first} to {last}",
                c.orders
            )
        })?;
        Ok(Some(Counted {
            first: first.num_days_from_ce(),
            last: last.num_days_from_ce(),
            orders: c.orders,
            spent_cents: cents(c.spent),
            gap_tenths,
        }))
    }
}

/// An amount of money in cents (at two decimals, as every amount of the history is).
fn cents(mut amount: Decimal) -> i128 {
    amount.rescale(2);
    amount.mantissa()
}

/// `business_vault.quintile_score`: 1 + the number of boundaries `x` reaches.
fn quintile<T: PartialOrd>(x: T, cuts: &[Option<T>; 4]) -> usize {
    1 + cuts
        .iter()
        .filter(|c| c.as_ref().is_some_and(|c| x >= *c))
        .count()
}

/// The population at the end of `cuts.day` (`end`, in µs since 1970) of `customers`.
pub fn at_day_end(
    customers: &[Customer],
    end: i64,
    cuts: &DayCuts,
    segments: &Segments,
) -> Result<DayPopulation, String> {
    let today = cuts.day.num_days_from_ce();
    let recency = cuts.recency.map(|c| c.map(|d| d.num_days_from_ce()));
    let monetary = cuts.monetary.map(|c| c.map(cents));
    let mut figures = vec![Figures::default(); segments.names.len()];
    for c in customers {
        if !c.in_hub || !(c.known_from <= end || c.existing > 0) {
            continue;
        }
        let Some(k) = &c.counted else {
            figures[segments.prospect].customers += 1;
            continue;
        };
        let days = today - k.last;
        let churn = score::churn_risk(days.into(), k.gap_tenths);
        let clv_cents = score::clv_cents(k.spent_cents, (today - k.first).into(), churn)
            .map_err(|_| format!("a predicted value of {} cents spent", k.spent_cents))?;
        let scores = (
            quintile(k.last, &recency),
            quintile(k.orders, &cuts.frequency),
            quintile(k.spent_cents, &monetary),
        );
        let f = &mut figures[segments.by_scores[index(scores)]];
        f.customers += 1;
        f.with_orders += 1;
        f.orders += i64::from(k.orders);
        f.revenue_cents += k.spent_cents;
        f.with_days += 1;
        f.days_sum += i64::from(days);
        f.clv_cents += clv_cents;
        match churn {
            Churn::Active => f.active += 1,
            Churn::AtRisk => f.at_risk += 1,
            Churn::Churned => f.churned += 1,
        }
    }
    Ok(DayPopulation {
        day: cuts.day,
        segments: figures
            .into_iter()
            .enumerate()
            .filter(|(_, f)| f.customers > 0)
            .collect(),
    })
}

/// Store the swept days' populations (in the fill's transaction, which stores nothing
/// unless the checkpoint is where it was when they were read). (Money at two decimals,
/// as the database sums it: the driver sends a zero without its scale.)
const STORE: &str = "
INSERT INTO business_vault.population_as_of AS m
       (as_of, segment, customers, with_orders, orders, revenue, with_days, days_sum,
        clv_predicted_12m, active, at_risk, churned, by_loader)
SELECT d.as_of, d.segment, d.customers, d.with_orders, d.orders, round(d.revenue, 2),
       d.with_days, d.days_sum, round(d.clv, 2), d.active, d.at_risk, d.churned, true
  FROM unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
              $6::numeric[], $7::bigint[], $8::bigint[], $9::numeric[], $10::bigint[],
              $11::bigint[], $12::bigint[])
       AS d(as_of, segment, customers, with_orders, orders, revenue, with_days, days_sum,
            clv, active, at_risk, churned)
ON CONFLICT (as_of, segment) DO UPDATE SET by_loader = true";

/// Store `days`; how many rows were stored, or the figure too large for `numeric`.
pub async fn store(
    client: &Client,
    days: &[DayPopulation],
    segments: &Segments,
) -> Result<Result<u64, String>, Failed> {
    let rows = days
        .iter()
        .flat_map(|d| d.segments.iter().map(move |(s, f)| (d.day, *s, f)));
    let mut columns = Columns::default();
    for (day, segment, f) in rows {
        let money = |cents: i128| {
            Decimal::try_from_i128_with_scale(cents, 2)
                .map_err(|_| format!("a sum of {cents} cents beyond numeric's 96 bits"))
        };
        columns.as_of.push(super::day_end(day));
        columns.segment.push(&segments.names[segment]);
        columns.customers.push(f.customers);
        columns.with_orders.push(f.with_orders);
        columns.orders.push(f.orders);
        match (money(f.revenue_cents), money(f.clv_cents)) {
            (Ok(revenue), Ok(clv)) => {
                columns.revenue.push(revenue);
                columns.clv.push(clv);
            }
            (Err(why), _) | (_, Err(why)) => return Ok(Err(why)),
        }
        columns.with_days.push(f.with_days);
        columns.days_sum.push(f.days_sum);
        columns.active.push(f.active);
        columns.at_risk.push(f.at_risk);
        columns.churned.push(f.churned);
    }
    let c = &columns;
    let stored = client
        .execute(
            STORE,
            &[
                &c.as_of,
                &c.segment,
                &c.customers,
                &c.with_orders,
                &c.orders,
                &c.revenue,
                &c.with_days,
                &c.days_sum,
                &c.clv,
                &c.active,
                &c.at_risk,
                &c.churned,
            ],
        )
        .await
        .doing("storing the past days' population figures")?;
    Ok(Ok(stored))
}

/// [`STORE`]'s arrays.
#[derive(Default)]
struct Columns<'a> {
    as_of: Vec<chrono::DateTime<chrono::Utc>>,
    segment: Vec<&'a str>,
    customers: Vec<i64>,
    with_orders: Vec<i64>,
    orders: Vec<i64>,
    revenue: Vec<Decimal>,
    with_days: Vec<i64>,
    days_sum: Vec<i64>,
    clv: Vec<Decimal>,
    active: Vec<i64>,
    at_risk: Vec<i64>,
    churned: Vec<i64>,
}
