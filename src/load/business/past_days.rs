//! The RFM boundaries and the population figures of every past day, kept by the loader.
//!
//! One customer as of a past time (`GET /customers/{id}?as_of=`) is scored against the
//! quintile boundaries of the whole population at that time: every order as it was
//! then, grouped per customer (`business_vault.rfm_cuts_at`). Computed on request that
//! is half a second at ten times the demo data, and the first request of a date stalls
//! every request for it. Most as-of requests name a date, which means the end of that
//! UTC day, and a vault's past has few of those: [`fill`] computes the boundaries at
//! every day's end, from the day of the earliest order to yesterday, in one sweep of the
//! order history in business-time order, and stores them in
//! `business_vault.rfm_cutpoints_as_of` (`by_loader`), where `rfm_cuts_at` finds them.
//!
//! The rules stay in SQL: the sweep reads the versions of every order's details,
//! status and lines once (no more of them than the days need, see [`HISTORY`]), with
//! `is_counted` and `line_amount` already applied by the database, and does only the
//! bookkeeping of time that `business_vault.orders_at` does per request: an order exists from its details' `ordered_at` on, with the
//! status and lines in force. It keeps every customer's figures and the three
//! populations as sorted multisets, and takes each day's boundaries by rank, as
//! `business_vault.quintile_cuts` defines them.
//!
//! `GET /segments?as_of=` and `GET /analytics/churn?as_of=` need every customer known
//! at that time, scored: the same sweep keeps the figures per segment at the end of
//! every past day whose figures are missing (`population`, in
//! `business_vault.population_as_of`), scoring the customers as
//! `business_vault.customer_scores` does (`score`). The days whose figures were kept are
//! marked on their boundaries' row (`population_kept`): a day with nobody to count has
//! no figures to find.
//!
//! `GET /analytics/revenue|categories|top-products?as_of=` need the sales of then: the
//! same sweep keeps the revenue series (`revenue`), the categories and the top 100
//! products (`products`, from every order line and product details version) of every
//! past day, each version once with the days it held, rewritten whole by a fill that
//! finds a day without them (`sales_kept` on the day's boundaries).
//!
//! The rows are kept only if the loader's checkpoint has not moved since the history
//! was read: all in one repeatable-read transaction, whose last statement stores the
//! days' boundaries with the checkpoint row locked `FOR SHARE`, and which is rolled
//! back, with every figure stored before, when that stores nothing. A batch that writes
//! at or before a day forgets it (`forget_past.sql`): the next fill sweeps again. A
//! fill with every day present reads a minimum by index and the days kept. A value the
//! population figures cannot hold leaves them to be computed on request (with a
//! warning) and the boundaries are kept all the same.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use futures_util::{TryStreamExt, pin_mut};
use postgres_types::{FromSql, ToSql, Type, accepts};
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::db::{Doing, Failed};
use crate::hash::{Hash, KeyMap};
use population::{DayPopulation, Segments};
use products::{Catalog, LineSale};
use revenue::{Sale, Series};

mod population;
mod products;
mod revenue;
pub mod score;

/// What [`fill`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filled {
    /// No order, or no day of the vault has ended yet.
    Nothing,
    /// Every past day was there already.
    Present,
    /// The history was swept: this many days' boundaries stored (and the population
    /// figures of the days that had none).
    Stored(usize),
    /// The vault moved while the history was read: nothing stored.
    Moved,
    /// A value of the history the sweep cannot hold (the reason): nothing stored,
    /// and the days are computed on request as before.
    Unsweepable(String),
}

/// At most this many days are kept (a hundred years up to yesterday).
const MAX_DAYS: u64 = 36_600;

/// The span of days a fill covers (the earliest order's to yesterday, UTC; by the index
/// on `ordered_at`: a daemon asks after every run), the checkpoint, and what
/// `is_counted` says of an order without a status. (Which days are kept changes no
/// day's boundaries: the sweep applies every version before the first day too.)
const SPAN: &str = "
SELECT (min(o.ordered_at) AT TIME ZONE 'UTC')::date,
       (now() AT TIME ZONE 'UTC')::date - 1,
       (SELECT k.xid::text FROM ops.checkpoints k WHERE k.consumer = 'vault_loader'),
       (SELECT k.seq FROM ops.checkpoints k WHERE k.consumer = 'vault_loader'),
       business_vault.is_counted(NULL)
  FROM business_vault.order_summary o";

/// The span's days stored, and whether their population figures and sales were (UTC
/// dates).
const PRESENT: &str = "
SELECT (m.as_of AT TIME ZONE 'UTC')::date, m.population_kept, m.sales_kept
  FROM business_vault.rfm_cutpoints_as_of m
 WHERE m.by_loader AND m.as_of BETWEEN $1 AND $2";

/// The order history, with the rules applied, and no more of it than the days need:
///
/// - kind 0, one row per order of the summary: its customer (as `orders_at`), and
///   its details, when their current version began with the first (`details_since =
///   details_from`), which is most of them.
/// - kind 4: the lines of the orders whose lines' current versions began by their first
///   details (`lines_since <= details_from`; before its first details the order did not
///   exist), as they stand in the bridge, at the first details (without their key:
///   they have no other version).
/// - kind 1 and 3: every version of the details and lines that did change.
/// - kind 2: the status versions of the orders with a status that counts otherwise than
///   no status: whatever the others' statuses say, they count as no status does.
///
/// Lines come with their product (the categories and top products count them).
const HISTORY: &str = "
SELECT 0::smallint, o.hk_order, o.hk_customer, o.details_from,
       CASE WHEN o.details_since <= o.details_from THEN o.ordered_at END,
       NULL::numeric, NULL::boolean, NULL::bytea, NULL::bigint, NULL::bigint, NULL::bytea
  FROM business_vault.order_summary o
UNION ALL
SELECT 4::smallint, b.hk_order, NULL, o.details_from, NULL,
       business_vault.line_amount(b.quantity, b.unit_price, b.discount), NULL,
       NULL, NULL, b.quantity, b.hk_product
  FROM business_vault.bridge_customer_order_product b
  JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
 WHERE o.lines_since <= o.details_from
UNION ALL
SELECT 1::smallint, d.hk_order, NULL, d.applied_dts, coalesce(d.ordered_at, d.applied_dts),
       NULL, NULL, NULL, d.event_seq, NULL, NULL
  FROM raw_vault.sat_order_details d
 WHERE d.hk_order IN (SELECT o.hk_order FROM business_vault.order_summary o
                       WHERE o.details_since > o.details_from)
UNION ALL
SELECT 2::smallint, s.hk_order, NULL, s.applied_dts, NULL, NULL,
       business_vault.is_counted(s.status), NULL, s.event_seq, NULL, NULL
  FROM raw_vault.sat_order_status s
 WHERE s.hk_order = ANY (ARRAY(SELECT DISTINCT x.hk_order FROM raw_vault.sat_order_status x
                                WHERE business_vault.is_counted(x.status)
                                      IS DISTINCT FROM business_vault.is_counted(NULL)))
UNION ALL
SELECT 3::smallint, b.hk_order, NULL, s.applied_dts, NULL,
       business_vault.line_amount(s.quantity, s.unit_price, s.discount), NULL,
       b.hk_order_product, s.event_seq, s.quantity, b.hk_product
  FROM business_vault.bridge_customer_order_product b
  JOIN raw_vault.sat_order_line s ON s.hk_order_product = b.hk_order_product
 WHERE b.hk_order IN (SELECT o.hk_order FROM business_vault.order_summary o
                       WHERE o.lines_since > o.details_from)";

/// Every customer of the hub (the population counts no other), and when it became
/// known other than by an order (`business_vault.customers_at`): its first profile or
/// contact version or product view, if any.
const KNOWN: &str = "
SELECT h.hk_customer, k.at
  FROM raw_vault.hub_customer h
  LEFT JOIN (SELECT u.hk_customer, min(u.at) AS at
               FROM (SELECT s.hk_customer, min(s.applied_dts) AS at
                       FROM raw_vault.sat_customer_profile s GROUP BY s.hk_customer
                     UNION ALL
                     SELECT s.hk_customer, min(s.applied_dts)
                       FROM raw_vault.sat_customer_contact s GROUP BY s.hk_customer
                     UNION ALL
                     SELECT v.hk_customer, min(v.viewed_at)
                       FROM raw_vault.link_product_view v GROUP BY v.hk_customer) u
              GROUP BY u.hk_customer) k
    ON k.hk_customer = h.hk_customer";

/// Store the swept days, if the checkpoint is where it was when they were read, with
/// whether their population figures were stored too (`$17`); their sales are, every
/// day's (see [`fill`]). (Money at two decimals, as the database sums it: the
/// driver sends a zero without its scale.)
const STORE: &str = "
INSERT INTO business_vault.rfm_cutpoints_as_of AS m
       (as_of, population, recency, frequency, monetary, by_loader, population_kept,
        sales_kept)
SELECT d.as_of, d.population, ARRAY[d.r1, d.r2, d.r3, d.r4], ARRAY[d.f1, d.f2, d.f3, d.f4],
       ARRAY[round(d.m1, 2), round(d.m2, 2), round(d.m3, 2), round(d.m4, 2)], true, d.kept,
       true
  FROM unnest($3::timestamptz[], $4::integer[], $5::date[], $6::date[], $7::date[], $8::date[],
              $9::integer[], $10::integer[], $11::integer[], $12::integer[],
              $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[], $17::boolean[])
       AS d(as_of, population, r1, r2, r3, r4, f1, f2, f3, f4, m1, m2, m3, m4, kept)
 WHERE EXISTS (SELECT FROM ops.checkpoints k
                WHERE k.consumer = 'vault_loader' AND k.xid::text = $1 AND k.seq = $2
                  FOR SHARE)
ON CONFLICT (as_of) DO UPDATE
   SET by_loader = true, population_kept = m.population_kept OR EXCLUDED.population_kept,
       sales_kept = true";

/// The instant a date as of means: the end of that UTC day. (The API reads a date
/// `as_of` with it: the kept days are found by that very instant.)
pub fn day_end(day: NaiveDate) -> DateTime<Utc> {
    let end = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap_or(NaiveTime::MIN);
    day.and_time(end).and_utc()
}

/// Compute and store the RFM boundaries at the end of every past day that is not
/// stored yet (see the module's documentation), in a transaction of its own.
pub async fn fill(client: &Client) -> Result<Filled, Failed> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL jit = off")
        .await
        .doing("starting the sweep of past days")?;
    let filled = sweep_and_store(client).await;
    let end = match &filled {
        Ok(Filled::Stored(_)) => "COMMIT",
        _ => "ROLLBACK",
    };
    let ended = client
        .batch_execute(end)
        .await
        .doing("storing the past days' boundaries");
    match filled {
        Err(e) if e.source.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
            Ok(Filled::Moved)
        }
        filled => {
            let filled = filled?;
            ended?;
            Ok(filled)
        }
    }
}

async fn sweep_and_store(client: &Client) -> Result<Filled, Failed> {
    let span = client
        .query_one(SPAN, &[])
        .await
        .doing("reading the span of past days")?;
    let (Some(first), Some(last)) = (
        span.get::<_, Option<NaiveDate>>(0),
        span.get::<_, Option<NaiveDate>>(1),
    ) else {
        return Ok(Filled::Nothing);
    };
    let first = first.max(last - Days::new(MAX_DAYS - 1));
    if last < first {
        return Ok(Filled::Nothing);
    }
    // the days whose population figures are missing (the days not stored among them),
    // and how many days' sales are kept; when every day's are, every day is there
    let mut wanted = vec![true; (last - first).num_days() as usize + 1];
    let mut sales_kept = 0;
    for row in client
        .query(PRESENT, &[&day_end(first), &day_end(last)])
        .await
        .doing("reading the past days stored")?
    {
        let (day, kept, sales): (NaiveDate, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if let Ok(d) = usize::try_from((day - first).num_days())
            && d < wanted.len()
        {
            wanted[d] = !kept;
            sales_kept += usize::from(sales);
        }
    }
    let sales_wanted = sales_kept < wanted.len();
    if !wanted.contains(&true) && !sales_wanted {
        return Ok(Filled::Present);
    }
    let (xid, seq): (Option<String>, Option<i64>) = (span.get(2), span.get(3));
    let mut sweep = Sweep::new(span.get::<_, Option<bool>>(4).unwrap_or(true));
    let started = std::time::Instant::now();
    let mut population_failed = None;
    let segments = if wanted.contains(&true) {
        read_known(client, &mut sweep)
            .await?
            .map_err(|why| population_failed = Some(why))
            .ok()
    } else {
        None
    };
    if sales_wanted && let Err(why) = sweep.read_products(client).await? {
        return Ok(Filled::Unsweepable(why));
    }
    if let Err(why) = each_row(client, HISTORY, "reading the order history", |row| {
        sweep.read(row)
    })
    .await?
    {
        return Ok(Filled::Unsweepable(why));
    }
    let read_ms = started.elapsed().as_millis() as u64;
    let versions = sweep.versions.len();
    let wanted_days = segments.as_ref().map(|s| (&wanted[..], s));
    let swept = match sweep.run(first, last, wanted_days, sales_wanted) {
        Ok(swept) => swept,
        Err(why) => return Ok(Filled::Unsweepable(why)),
    };
    tracing::debug!(
        versions,
        read_ms,
        sweep_ms = started.elapsed().as_millis() as u64 - read_ms,
        population_days = swept.population.len(),
        "order history swept"
    );
    let mut population_failed = population_failed.or(swept.population_failed);
    if let Some(segments) = &segments
        && population_failed.is_none()
        && let Err(why) = population::store(client, &swept.population, segments).await?
    {
        population_failed = Some(why);
    }
    // the days whose population is stored now: every one wanted, unless it failed
    let mut kept = wanted;
    kept.truncate(swept.cuts.len());
    if let Some(why) = &population_failed {
        tracing::warn!(
            "population figures of the past days not kept (computed on request instead): {why}"
        );
        kept.fill(false);
    }
    // the sales of every day, replacing the versions kept before (which answer for
    // every day otherwise)
    if let Some(series) = swept.series {
        series.store(client, last).await?;
    }
    if let Some(catalog) = swept.catalog {
        catalog.store(client, last).await?;
    }
    Ok(match store(client, &xid, &seq, &swept.cuts, &kept).await? {
        0 => Filled::Moved,
        stored => Filled::Stored(stored),
    })
}

/// Read [`KNOWN`] into the sweep, and the segments; or a value there that the
/// population figures cannot hold.
async fn read_known(
    client: &Client,
    sweep: &mut Sweep,
) -> Result<Result<Segments, String>, Failed> {
    // every customer is read, also after one the figures cannot hold
    let mut unknowable = None;
    let read = each_row(
        client,
        KNOWN,
        "reading when the customers became known",
        |row| {
            if let Err(why) = sweep.know(row) {
                unknowable.get_or_insert(why);
            }
            Ok(())
        },
    )
    .await?;
    match unknowable.or(read.err()) {
        Some(why) => Ok(Err(why)),
        None => Segments::read(client).await,
    }
}

/// [`fill`] after a run, saying what it did in the log.
pub async fn after_run(client: &Client) -> Result<Filled, Failed> {
    let started = std::time::Instant::now();
    let filled = fill(client).await?;
    let ms = started.elapsed().as_millis() as u64;
    match &filled {
        Filled::Stored(days) => {
            tracing::info!(
                days,
                ms,
                "RFM boundaries and population of the past days stored"
            )
        }
        Filled::Moved => {
            tracing::info!(
                ms,
                "RFM boundaries of the past days not stored: the vault moved"
            )
        }
        Filled::Unsweepable(why) => tracing::warn!(
            "RFM boundaries of the past days not kept (computed on request instead): {why}"
        ),
        Filled::Nothing | Filled::Present => {}
    }
    Ok(filled)
}

async fn store(
    client: &Client,
    xid: &Option<String>,
    seq: &Option<i64>,
    cuts: &[DayCuts],
    population_kept: &[bool],
) -> Result<usize, Failed> {
    let as_of: Vec<DateTime<Utc>> = cuts.iter().map(|c| day_end(c.day)).collect();
    let population: Vec<i32> = cuts
        .iter()
        .map(|c| i32::try_from(c.population).unwrap_or(i32::MAX))
        .collect();
    let r: [Vec<Option<NaiveDate>>; 4] =
        std::array::from_fn(|k| cuts.iter().map(|c| c.recency[k]).collect());
    let f: [Vec<Option<i32>>; 4] = std::array::from_fn(|k| {
        cuts.iter()
            .map(|c| c.frequency[k].map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
            .collect()
    });
    let m: [Vec<Option<Decimal>>; 4] =
        std::array::from_fn(|k| cuts.iter().map(|c| c.monetary[k]).collect());
    let stored = client
        .execute(
            STORE,
            &[
                xid,
                seq,
                &as_of,
                &population,
                &r[0],
                &r[1],
                &r[2],
                &r[3],
                &f[0],
                &f[1],
                &f[2],
                &f[3],
                &m[0],
                &m[1],
                &m[2],
                &m[3],
                &population_kept,
            ],
        )
        .await
        .doing("storing the past days' boundaries")?;
    Ok(stored as usize)
}

/// The boundaries at the end of one day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCuts {
    pub day: NaiveDate,
    pub population: u64,
    pub recency: [Option<NaiveDate>; 4],
    pub frequency: [Option<u32>; 4],
    pub monetary: [Option<Decimal>; 4],
}

/// One version of an order's details, status or line, in business-time order.
struct Version {
    at: i64,
    seq: i64,
    order: u32,
    change: Change,
}

enum Change {
    Details {
        ordered_at: i64,
    },
    Status {
        counted: bool,
    },
    Line {
        line: u32,
        amount: Decimal,
        units: i64,
    },
    /// A product's details version (an index of [`Sweep`]'s `details`).
    Product {
        product: u32,
        details: u32,
    },
}

/// An order as the sweep has reached it.
#[derive(Default)]
struct Order {
    customer: u32,
    /// `ordered_at` of the details version in force (none: no details yet).
    ordered_at: Option<i64>,
    /// Whether the status in force counts (none: no status yet).
    counted: Option<bool>,
    /// The sums of the amounts and units of the line versions in force.
    amount: Decimal,
    units: i64,
    /// What it adds to its periods' sales now, if placed (and so to its customer's
    /// figures, if it counts).
    sale: Option<Sale>,
    /// Placed by now (its details in force say so).
    exists: bool,
    dirty: bool,
}

impl Order {
    /// Put this order (numbered `id`) on the day's list of orders to count again, once.
    fn mark(&mut self, id: u32, dirty: &mut Vec<u32>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(id);
        }
    }
}

/// A customer's figures over its counted orders, and whether it is known.
struct Customer {
    orders: u32,
    spent: Decimal,
    /// The days of its counted orders.
    dates: Multiset<NaiveDate>,
    /// A customer of the hub (not the missing customer of an order without a link).
    in_hub: bool,
    /// Its first profile or contact version or product view (µs; `i64::MAX`: none).
    known_from: i64,
    /// How many of its orders exist (are placed by now), counted or not.
    existing: u32,
    /// Its figures as the population counts them (kept when days' populations are
    /// swept).
    counted: Option<population::Counted>,
}

impl Customer {
    /// A customer with no order, not known to be of the hub (until [`KNOWN`] says so).
    fn new() -> Customer {
        Customer {
            orders: 0,
            spent: Decimal::ZERO,
            dates: Multiset::new(),
            in_hub: false,
            known_from: i64::MAX,
            existing: 0,
            counted: None,
        }
    }

    /// Recency, frequency and monetary value; none without a counted order.
    fn figures(&self) -> Option<(NaiveDate, u32, Decimal)> {
        let (_, last) = self.first_and_last()?;
        Some((last, self.orders, self.spent))
    }

    /// The days of its first and last counted orders.
    fn first_and_last(&self) -> Option<(NaiveDate, NaiveDate)> {
        let first = *self.dates.values.keys().next()?;
        let last = *self.dates.values.keys().next_back()?;
        Some((first, last))
    }
}

/// Values in order, each with how many times it is there: a customer's order days,
/// and each of the three populations.
struct Multiset<K> {
    values: BTreeMap<K, u64>,
}

impl<K: Ord + Copy> Multiset<K> {
    fn new() -> Self {
        Multiset {
            values: BTreeMap::new(),
        }
    }

    fn add(&mut self, v: K) {
        *self.values.entry(v).or_default() += 1;
    }

    fn remove(&mut self, v: K) {
        if let Some(n) = self.values.get_mut(&v) {
            *n -= 1;
            if *n == 0 {
                self.values.remove(&v);
            }
        }
    }

    /// `business_vault.quintile_cuts` of the `n` values: for k = 1..4, the smallest
    /// value greater than the one at rank ⌈k·n/5⌉ (none when there is none).
    fn cuts(&self, n: u64) -> [Option<K>; 4] {
        let mut cuts = [None; 4];
        if n == 0 {
            return cuts;
        }
        let mut k = 0;
        let mut below = 0;
        let mut entries = self.values.iter().peekable();
        while let Some((_, &count)) = entries.next() {
            below += count;
            // every boundary whose rank falls on this value is the next value
            while k < 4 && below >= ((k as u64 + 1) * n).div_ceil(5) {
                cuts[k] = entries.peek().map(|(v, _)| **v);
                k += 1;
            }
            if k == 4 {
                break;
            }
        }
        cuts
    }
}

/// The order history, and the state of every order, customer and population as the
/// sweep moves through it.
struct Sweep {
    /// What `business_vault.is_counted` says of an order without a status.
    counted_without_status: bool,
    orders: KeyMap<u32>,
    /// Each order's customer, as (order, customer).
    order_customers: Vec<(u32, u32)>,
    lines: KeyMap<u32>,
    /// Each line's order and product (`u32::MAX`: none of the hub), by line number.
    line_owners: Vec<(u32, u32)>,
    customers: BTreeMap<Option<Hash>, u32>,
    /// The customers of the hub, and when they became known other than by an order, as
    /// (customer, µs; `i64::MAX`: never).
    known: Vec<(u32, i64)>,
    versions: Vec<Version>,
    /// The products, and their details versions (by [`Change::Product`]).
    catalog: Catalog,
    details: Vec<products::Details>,
}

impl Sweep {
    fn new(counted_without_status: bool) -> Sweep {
        Sweep {
            counted_without_status,
            orders: KeyMap::default(),
            order_customers: Vec::new(),
            lines: KeyMap::default(),
            line_owners: Vec::new(),
            customers: BTreeMap::new(),
            known: Vec::new(),
            versions: Vec::new(),
            catalog: Catalog::default(),
            details: Vec::new(),
        }
    }

    /// Read the products and their details versions, or a time the sweep cannot hold.
    async fn read_products(&mut self, client: &Client) -> Result<Result<(), String>, Failed> {
        self.catalog = match Catalog::read(client).await? {
            Ok(catalog) => catalog,
            Err(why) => return Ok(Err(why)),
        };
        let (versions, details) = (&mut self.versions, &mut self.details);
        products::read_versions(client, &self.catalog.keys, |product, at, seq, d| {
            versions.push(Version {
                at,
                seq,
                order: 0,
                change: Change::Product {
                    product,
                    details: details.len() as u32,
                },
            });
            details.push(d);
        })
        .await
    }

    /// Take one row of [`KNOWN`]; an error names a time the sweep cannot hold.
    fn know(&mut self, row: &tokio_postgres::Row) -> Result<(), String> {
        let key: Option<&[u8]> = get(row, 0)?;
        let Some(key) = key.and_then(|b| Hash::try_from(b).ok()) else {
            return Ok(());
        };
        let from: Option<Micros> = get(row, 1)?;
        let next = self.customers.len() as u32;
        let customer = *self.customers.entry(Some(key)).or_insert(next);
        self.known.push((customer, from.map_or(i64::MAX, |m| m.0)));
        Ok(())
    }

    /// Take one row of [`HISTORY`]; an error names a value the sweep cannot hold.
    fn read(&mut self, row: &tokio_postgres::Row) -> Result<(), String> {
        let key = |i: usize| -> Result<Option<Hash>, String> {
            let bytes: Option<&[u8]> = get(row, i)?;
            Ok(bytes.and_then(|b| b.try_into().ok()))
        };
        let time = |i: usize| -> Result<Option<i64>, String> {
            let t: Option<Micros> = get(row, i)?;
            Ok(t.map(|m| m.0))
        };
        let Some(order) = key(1)? else {
            return Ok(());
        };
        let next = self.orders.len() as u32;
        let order = *self.orders.entry(order).or_insert(next);
        let at = time(3)?.unwrap_or(i64::MAX);
        let seq: Option<i64> = get(row, 8)?;
        let seq = seq.unwrap_or(i64::MIN);
        let mut push = |at: i64, change: Change| {
            self.versions.push(Version {
                at,
                seq,
                order,
                change,
            })
        };
        let kind = get::<i16>(row, 0)?;
        match kind {
            0 => {
                // what did not change: as versions at the order's first details
                let next = self.customers.len() as u32;
                let customer = *self.customers.entry(key(2)?).or_insert(next);
                self.order_customers.push((order, customer));
                if let Some(ordered_at) = time(4)? {
                    push(at, Change::Details { ordered_at });
                }
            }
            1 => push(
                at,
                Change::Details {
                    ordered_at: time(4)?.unwrap_or(i64::MAX),
                },
            ),
            2 => {
                let counted: Option<bool> = get(row, 6)?;
                let counted = counted.unwrap_or(self.counted_without_status);
                push(at, Change::Status { counted });
            }
            _ => {
                let next = self.line_owners.len() as u32;
                let line = match key(7)? {
                    Some(line) => *self.lines.entry(line).or_insert(next),
                    None if kind == 4 => next,
                    None => return Ok(()),
                };
                if line == next {
                    let product = key(10)?.and_then(|p| self.catalog.keys.get(&p).copied());
                    self.line_owners.push((order, product.unwrap_or(u32::MAX)));
                }
                let amount: Option<Decimal> =
                    get(row, 5).map_err(|e| format!("a line amount: {e}"))?;
                let quantity: Option<i64> = get(row, 9)?;
                push(
                    at,
                    Change::Line {
                        line,
                        amount: amount.unwrap_or_default(),
                        units: quantity.unwrap_or_default(),
                    },
                );
            }
        }
        Ok(())
    }

    /// The boundaries at the end of every day from `first` to `last`, the population
    /// at the end of those for which `population` says so (by the day's number from
    /// `first`; with the segments), and if `sales`, the sales of every day (the products
    /// read first); an error names a value the sweep cannot hold.
    fn run(
        mut self,
        first: NaiveDate,
        last: NaiveDate,
        mut population: Option<(&[bool], &Segments)>,
        sales: bool,
    ) -> Result<Swept, String> {
        self.versions.sort_unstable_by_key(|v| (v.at, v.seq));
        // the orders without a customer link share one customer, whom nobody counts
        let no_customer = self.customers.get(&None).copied();
        let mut orders: Vec<Order> = std::iter::repeat_with(Order::default)
            .take(self.orders.len())
            .collect();
        for &(order, customer) in &self.order_customers {
            orders[order as usize].customer = customer;
        }
        let mut lines: Vec<Option<(Decimal, i64)>> = vec![None; self.line_owners.len()];
        // what each line adds to its product now, and each order's lines of a product
        let mut line_sales: Vec<Option<LineSale>> = vec![None; self.line_owners.len()];
        let mut order_lines: Vec<Vec<u32>> = vec![Vec::new(); self.orders.len()];
        if sales {
            for (line, &(order, product)) in self.line_owners.iter().enumerate() {
                if product != u32::MAX {
                    order_lines[order as usize].push(line as u32);
                }
            }
        }
        let mut customers: Vec<Customer> = vec![];
        customers.resize_with(self.customers.len(), Customer::new);
        for &(customer, from) in &self.known {
            customers[customer as usize].in_hub = true;
            customers[customer as usize].known_from = from;
        }
        let (mut recency, mut frequency, mut monetary) =
            (Multiset::new(), Multiset::new(), Multiset::new());
        let mut scored = 0u64;
        // orders whose details place them after the version that said so
        let mut placed_later: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::new();
        let mut dirty: Vec<u32> = Vec::new();
        let mut next = 0;
        let mut swept = Swept {
            series: sales.then(Series::default),
            catalog: sales.then(|| std::mem::take(&mut self.catalog)),
            ..Swept::default()
        };
        let mut day = first;
        while day <= last {
            let end = day_end(day).timestamp_micros();
            while let Some(v) = self.versions.get(next).filter(|v| v.at <= end) {
                next += 1;
                if let Change::Product { product, details } = v.change {
                    if let Some(catalog) = &mut swept.catalog {
                        catalog.details(product, self.details[details as usize].clone());
                    }
                    continue;
                }
                let o = &mut orders[v.order as usize];
                match v.change {
                    Change::Details { ordered_at } => {
                        o.ordered_at = Some(ordered_at);
                        if ordered_at > end {
                            placed_later.push(Reverse((ordered_at, v.order)));
                        }
                    }
                    Change::Status { counted } => o.counted = Some(counted),
                    Change::Line {
                        line,
                        amount,
                        units,
                    } => {
                        let (was, was_units) = lines[line as usize]
                            .replace((amount, units))
                            .unwrap_or_default();
                        o.amount += amount - was;
                        o.units += units - was_units;
                    }
                    Change::Product { .. } => {}
                }
                o.mark(v.order, &mut dirty);
            }
            while let Some(&Reverse((at, order))) = placed_later.peek() {
                if at > end {
                    break;
                }
                placed_later.pop();
                orders[order as usize].mark(order, &mut dirty);
            }
            let changed = !dirty.is_empty();
            for order in dirty.drain(..) {
                let o = &mut orders[order as usize];
                o.dirty = false;
                let c = &mut customers[o.customer as usize];
                let exists = o.ordered_at.is_some_and(|at| at <= end);
                if exists != o.exists {
                    o.exists = exists;
                    if exists {
                        c.existing += 1;
                    } else {
                        c.existing -= 1;
                    }
                }
                let sale = match o.ordered_at {
                    Some(at) if exists => {
                        let mut amount = o.amount;
                        amount.rescale(2);
                        Some(Sale {
                            date: revenue::date_of(at)?,
                            customer: (Some(o.customer) != no_customer).then_some(o.customer),
                            counted: o.counted.unwrap_or(self.counted_without_status),
                            amount,
                            units: o.units,
                        })
                    }
                    _ => None,
                };
                if let Some(catalog) = &mut swept.catalog {
                    for &line in &order_lines[order as usize] {
                        let now =
                            sale.zip(lines[line as usize])
                                .map(|(s, (amount, units))| LineSale {
                                    counted: s.counted,
                                    units,
                                    amount,
                                });
                        let was = std::mem::replace(&mut line_sales[line as usize], now);
                        catalog.line(self.line_owners[line as usize].1, was, now);
                    }
                }
                let was = std::mem::replace(&mut o.sale, sale);
                if sale == was {
                    continue;
                }
                if let Some(series) = &mut swept.series {
                    series.change(was, sale);
                }
                let adds = |s: Option<Sale>| s.filter(|s| s.counted).map(|s| (s.date, s.amount));
                let (was_adding, adds) = (adds(was), adds(sale));
                if adds == was_adding {
                    continue;
                }
                if let Some((r, f, m)) = c.figures() {
                    recency.remove(r);
                    frequency.remove(f);
                    monetary.remove(m);
                    scored -= 1;
                }
                if let Some((date, amount)) = was_adding {
                    c.orders -= 1;
                    c.spent -= amount;
                    c.dates.remove(date);
                }
                if let Some((date, amount)) = adds {
                    c.orders += 1;
                    c.spent += amount;
                    c.dates.add(date);
                }
                if let Some((r, f, m)) = c.figures() {
                    recency.add(r);
                    frequency.add(f);
                    monetary.add(m);
                    scored += 1;
                }
                if population.is_some() {
                    match population::Counted::of(c) {
                        Ok(counted) => c.counted = counted,
                        Err(why) => {
                            swept.population_failed = Some(why);
                            population = None;
                        }
                    }
                }
            }
            let cuts = match swept.cuts.last() {
                Some(previous) if !changed => DayCuts {
                    day,
                    ..previous.clone()
                },
                _ => DayCuts {
                    day,
                    population: scored,
                    recency: recency.cuts(scored),
                    frequency: frequency.cuts(scored),
                    monetary: monetary.cuts(scored),
                },
            };
            if let Some((wanted, segments)) = population
                && wanted.get(swept.cuts.len()) == Some(&true)
            {
                match population::at_day_end(&customers, end, &cuts, segments) {
                    Ok(at_end) => swept.population.push(at_end),
                    Err(why) => {
                        swept.population_failed = Some(why);
                        population = None;
                    }
                }
            }
            swept.cuts.push(cuts);
            if let Some(series) = &mut swept.series {
                series.day_end(day);
            }
            if let Some(catalog) = &mut swept.catalog {
                catalog.day_end(day, end);
            }
            let Some(following) = day.checked_add_days(Days::new(1)) else {
                break;
            };
            day = following;
        }
        Ok(swept)
    }
}

/// What a sweep found: the boundaries of every day, the population of the days asked
/// (or why not: a value the figures cannot hold), the sales if asked.
#[derive(Default)]
struct Swept {
    cuts: Vec<DayCuts>,
    population: Vec<DayPopulation>,
    population_failed: Option<String>,
    series: Option<Series>,
    catalog: Option<Catalog>,
}

/// Each row of `sql`, in order, to `take`; the first value `take` cannot hold (its
/// error) ends the read.
async fn each_row(
    client: &Client,
    sql: &str,
    doing: &'static str,
    mut take: impl FnMut(&tokio_postgres::Row) -> Result<(), String>,
) -> Result<Result<(), String>, Failed> {
    let rows = client
        .query_raw(sql, std::iter::empty::<&str>())
        .await
        .doing(doing)?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await.doing(doing)? {
        if let Err(why) = take(&row) {
            return Ok(Err(why));
        }
    }
    Ok(Ok(()))
}

/// Replace every row of `table`, a table of kept versions that a fill rewrites whole,
/// by what `store` inserts from `params`; how many rows it inserted.
async fn replace(
    client: &Client,
    table: &str,
    store: &str,
    params: &[&(dyn ToSql + Sync)],
    doing: &'static str,
) -> Result<u64, Failed> {
    client
        .execute(&format!("DELETE FROM {table}"), &[])
        .await
        .doing(doing)?;
    client.execute(store, params).await.doing(doing)
}

/// Column `i` of `row`, or what is wrong with it.
fn get<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, i: usize) -> Result<T, String> {
    row.try_get(i).map_err(|e| e.to_string())
}

/// A `timestamptz` as microseconds since 1970, its infinities as `i64::MIN` and
/// `i64::MAX` (chrono's types refuse them).
struct Micros(i64);

/// 2000-01-01, PostgreSQL's epoch, in microseconds since 1970.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl<'a> FromSql<'a> for Micros {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Micros, Box<dyn std::error::Error + Sync + Send>> {
        let since_2000 = i64::from_be_bytes(raw.try_into()?);
        Ok(Micros(match since_2000 {
            i64::MIN | i64::MAX => since_2000,
            t => t.saturating_add(PG_EPOCH_MICROS),
        }))
    }

    accepts!(TIMESTAMPTZ);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers below a bound, the same for the same seed (a linear congruential
    /// generator): the sweep's tests and its scores' draw their cases from it.
    pub(super) fn random(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |below| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        }
    }

    /// `business_vault.quintile_cuts` by its definition: the smallest value greater
    /// than the one at rank ⌈k·n/5⌉ of the sorted values.
    fn by_definition(values: &[u32]) -> [Option<u32>; 4] {
        let mut s = values.to_vec();
        s.sort_unstable();
        let n = s.len();
        std::array::from_fn(|k| {
            if n == 0 {
                return None;
            }
            let at = s[((k + 1) * n).div_ceil(5) - 1];
            s.iter().copied().find(|&v| v > at)
        })
    }

    #[test]
    fn cuts_are_the_smallest_values_above_each_quintile_rank() {
        let mut random = random(7);
        for _ in 0..3_000 {
            let n = random(40) as usize;
            let spread = 1 + random(12);
            let values: Vec<u32> = (0..n).map(|_| random(spread) as u32).collect();
            let mut p = Multiset::new();
            for &v in &values {
                p.add(v);
            }
            assert_eq!(
                p.cuts(n as u64),
                by_definition(&values),
                "values {values:?}"
            );
        }
    }

    #[test]
    fn a_removed_value_leaves_the_population() {
        let mut p = Multiset::new();
        for v in [1, 2, 2, 3, 4, 5] {
            p.add(v);
        }
        p.remove(2);
        p.remove(5);
        assert_eq!(p.cuts(4), by_definition(&[1, 2, 3, 4]));
        assert_eq!(p.cuts(0), [None; 4]);
    }
}
