//! The business vault, kept current by the loader: `business_vault.pit_customer`,
//! `bridge_customer_order_product`, `order_summary`, `customer_order_summary`,
//! `rfm_cutpoints` (see `vault/schema/V4__business_vault.sql` and docs/analysts.md)
//! and `customer_360_current` (`V6__customer_current.sql`).
//!
//! [`refresh`] runs in the batch's transaction, after its vault rows are written and
//! before the checkpoint moves: the business vault is always exactly as current as the
//! raw vault. Its cost follows what the batch touched, not history: [`Touched`] lists
//! the orders, products and customers whose raw rows the batch staged, and each
//! statement reads and rewrites only what those keys reach. The one population-wide
//! figure, the RFM quintile boundaries, is a single row recomputed from the customer
//! summary (a sort of the customers with orders) when a customer changed.
//!
//! The current Customer 360 row of a customer is rewritten, last, when its PIT or its
//! order figures may have moved: it copies the PIT's current profile, the key of its
//! current contact version and its order summary, so that `mart.customer_360` reads
//! one row per customer and adds only what depends on today and the population.
//!
//! PIT rows are change-based daily snapshots: a customer gets a row for each UTC day
//! on which one of its satellites got a version, plus the current row. A batch
//! recomputes, per touched customer, the rows from the first day it touched on
//! (earlier days cannot change) and the current row.

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::extract::Rows;
use super::satellite::earliest_per_parent;
use super::{Doing, LoadError};
use crate::hash::Hash;
use crate::mapping::Mappings;

/// The business vault tables, emptied by `dvault rebuild` with the raw vault.
pub const TABLES: &[&str] = &[
    "business_vault.pit_customer",
    "business_vault.bridge_customer_order_product",
    "business_vault.order_summary",
    "business_vault.customer_order_summary",
    "business_vault.rfm_cutpoints",
    "business_vault.customer_360_current",
    "business_vault.product_summary",
    "business_vault.customer_scores_day",
    "business_vault.segment_summary",
    "business_vault.churn_calendar",
];

/// The keys a batch touched, by what they feed.
#[derive(Debug, Default, PartialEq)]
pub struct Touched {
    /// Orders whose customer link, lines, header or status the batch staged.
    pub orders: Vec<Hash>,
    /// Order lines (`hk_order_product`) whose measures it staged.
    pub order_lines: Vec<Hash>,
    /// Products whose details it staged (their category moves favourite categories).
    pub products: Vec<Hash>,
    /// Other products whose summary it may move: new hub rows and viewed products
    /// (the products of touched orders are found from the orders).
    pub product_facts: Vec<Hash>,
    /// Customers for the PIT, with the earliest business time staged in one of their
    /// satellites; `None`: only the hub (the current row must exist).
    pub customers: Vec<(Hash, Option<DateTime<Utc>>)>,
}

impl Touched {
    /// What `rows` touch, found by the vault's table names (a custom mapping without
    /// some of them simply touches less).
    pub fn of(m: &Mappings, rows: &Rows) -> Touched {
        let hub = |name: &str| m.hub_index(name);
        let sat = |name: &str| m.satellite_index(name).map(|s| &rows.satellites[s]);
        let mut t = Touched::default();
        let order_hub = hub("hub_order");
        for link in ["link_order_customer", "link_order_product"] {
            let Some(l) = m.link_index(link) else {
                continue;
            };
            let Some(pos) = m.links[l].hubs.iter().position(|&h| Some(h) == order_hub) else {
                continue;
            };
            t.orders
                .extend(rows.links[l].iter().map(|r| r.hub_keys[pos]));
        }
        for name in ["sat_order_details", "sat_order_status"] {
            t.orders
                .extend(sat(name).into_iter().flatten().map(|r| r.parent));
        }
        t.order_lines.extend(
            sat("sat_order_line")
                .into_iter()
                .flatten()
                .map(|r| r.parent),
        );
        t.products.extend(
            sat("sat_product_details")
                .into_iter()
                .flatten()
                .map(|r| r.parent),
        );
        if let Some(h) = hub("hub_product") {
            t.product_facts.extend(rows.hubs[h].iter().map(|r| r.hk));
        }
        if let Some(l) = m.link_index("link_product_view") {
            let product_hub = hub("hub_product");
            if let Some(pos) = m.links[l].hubs.iter().position(|&h| Some(h) == product_hub) {
                t.product_facts
                    .extend(rows.links[l].iter().map(|r| r.hub_keys[pos]));
            }
        }
        for name in ["sat_customer_profile", "sat_customer_contact"] {
            if let Some(staged) = sat(name) {
                t.customers.extend(
                    earliest_per_parent(staged)
                        .into_iter()
                        .map(|(hk, at)| (hk, Some(at))),
                );
            }
        }
        if let Some(h) = hub("hub_customer") {
            t.customers
                .extend(rows.hubs[h].iter().map(|r| (r.hk, None)));
        }
        for keys in [
            &mut t.orders,
            &mut t.order_lines,
            &mut t.products,
            &mut t.product_facts,
        ] {
            keys.sort_unstable();
            keys.dedup();
        }
        t.customers.sort_unstable();
        t.customers.dedup();
        t
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.order_lines.is_empty()
            && self.products.is_empty()
            && self.product_facts.is_empty()
            && self.customers.is_empty()
    }
}

/// The touched keys, one temporary table per kind, emptied at commit; and the
/// planner settings of the refresh, reset at its end.
const KEY_TABLES: &str = "
-- Every statement of the refresh is written as index lookups per touched key. The
-- statistics of the tables this very load is filling are stale, and with them the
-- planner may prefer to scan a whole table once per key: tell it not to.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
SET LOCAL jit = off;
SET LOCAL work_mem = '64MB';
CREATE TEMP TABLE IF NOT EXISTS bv_orders (hk_order bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_products (hk_product bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_pit (hk_customer bytea NOT NULL, since timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_customers (hk_customer bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_product_figures (hk_product bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_categories (category text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_old_cuts (recency date[], frequency integer[], monetary numeric[]) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_rescore (hk_customer bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
";

const STAGE_ORDERS: &str = "
INSERT INTO pg_temp.bv_orders (hk_order)
SELECT u.hk FROM unnest($1::bytea[]) AS u(hk)
UNION
SELECT l.hk_order
  FROM unnest($2::bytea[]) AS u(hk)
  JOIN raw_vault.link_order_product l ON l.hk_order_product = u.hk";

const STAGE_PRODUCTS: &str =
    "INSERT INTO pg_temp.bv_products (hk_product) SELECT u.hk FROM unnest($1::bytea[]) AS u(hk)";

const STAGE_PRODUCT_FIGURES: &str = "
INSERT INTO pg_temp.bv_product_figures (hk_product)
SELECT u.hk FROM unnest($1::bytea[]) AS u(hk)
UNION
SELECT u.hk FROM unnest($2::bytea[]) AS u(hk)";

const STAGE_PIT: &str = "INSERT INTO pg_temp.bv_pit (hk_customer, since)
SELECT u.hk, u.since FROM unnest($1::bytea[], $2::timestamptz[]) AS u(hk, since)";

/// The refresh itself. Every statement is driven by the key tables: the rows they
/// reach are found with index lookups per key (LATERAL ... LIMIT 1, OFFSET 0 fences
/// where the planner would otherwise hash a whole table), and written with
/// INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM, whose conflict check
/// is an index probe too: the cost follows the batch, not the size of the vault.
const REFRESH: &str = r#"
ANALYZE pg_temp.bv_orders;
ANALYZE pg_temp.bv_products;
ANALYZE pg_temp.bv_pit;

-- Bridge: every line of the touched orders, with its current measures.
INSERT INTO business_vault.bridge_customer_order_product AS b
    (hk_order, hk_order_product, hk_order_customer, hk_customer, hk_product, line_no,
     quantity, unit_price, discount, line_amount, load_dts)
SELECT t.hk_order, lop.hk_order_product, c.hk_order_customer, c.hk_customer, lop.hk_product,
       lop.line_no, v.quantity, v.unit_price, v.discount,
       business_vault.line_amount(v.quantity, v.unit_price, v.discount),
       greatest(lop.load_dts, c.load_dts)
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT loc.hk_order_customer, loc.hk_customer, loc.load_dts
         FROM raw_vault.link_order_customer loc
        WHERE loc.hk_order = t.hk_order
        ORDER BY loc.load_dts, loc.hk_order_customer LIMIT 1) c
 CROSS JOIN LATERAL (
       SELECT l.hk_order_product, l.hk_product, l.line_no, l.load_dts
         FROM raw_vault.link_order_product l
        WHERE l.hk_order = t.hk_order OFFSET 0) lop
  LEFT JOIN LATERAL (
       SELECT s.quantity, s.unit_price, s.discount
         FROM raw_vault.sat_order_line s
        WHERE s.hk_order_product = lop.hk_order_product
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) v ON true
ON CONFLICT (hk_order, hk_order_product) DO UPDATE SET
    hk_order_customer = excluded.hk_order_customer, hk_customer = excluded.hk_customer,
    quantity = excluded.quantity, unit_price = excluded.unit_price, discount = excluded.discount,
    line_amount = excluded.line_amount, load_dts = excluded.load_dts
WHERE (b.hk_order_customer, b.hk_customer, b.quantity, b.unit_price, b.discount, b.line_amount,
       b.load_dts)
      IS DISTINCT FROM
      (excluded.hk_order_customer, excluded.hk_customer, excluded.quantity, excluded.unit_price,
       excluded.discount, excluded.line_amount, excluded.load_dts);

-- The customers whose figures may change: those of the touched orders (before this
-- batch here, after it below) and the buyers of the touched products (their
-- favourite category).
INSERT INTO pg_temp.bv_customers (hk_customer)
SELECT o.hk_customer
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT s.hk_customer FROM business_vault.order_summary s
        WHERE s.hk_order = t.hk_order OFFSET 0) o
UNION
SELECT b.hk_customer
  FROM pg_temp.bv_products p
 CROSS JOIN LATERAL (
       SELECT l.hk_customer FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_product = p.hk_product OFFSET 0) b
ON CONFLICT DO NOTHING;

-- Orders: header, current status and totals of the touched orders.
INSERT INTO business_vault.order_summary AS o
    (hk_order, hk_customer, ordered_at, order_date, channel, status, status_known, is_counted,
     lines, units, amount)
SELECT t.hk_order, c.hk_customer, d.ordered_at, (d.ordered_at AT TIME ZONE 'UTC')::date,
       d.channel, business_vault.order_status(s.status), s.status IS NOT NULL,
       business_vault.is_counted(s.status), l.lines, coalesce(l.units, 0), coalesce(l.amount, 0)
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT loc.hk_customer FROM raw_vault.link_order_customer loc
        WHERE loc.hk_order = t.hk_order
        ORDER BY loc.load_dts, loc.hk_order_customer LIMIT 1) c
 CROSS JOIN LATERAL (
       SELECT coalesce(x.ordered_at, x.applied_dts) AS ordered_at, x.channel
         FROM raw_vault.sat_order_details x
        WHERE x.hk_order = t.hk_order
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) d
  LEFT JOIN LATERAL (
       SELECT x.status FROM raw_vault.sat_order_status x
        WHERE x.hk_order = t.hk_order
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) s ON true
 CROSS JOIN LATERAL (
       SELECT count(*) AS lines, sum(b.quantity) AS units, sum(b.line_amount) AS amount
         FROM business_vault.bridge_customer_order_product b
        WHERE b.hk_order = t.hk_order) l
ON CONFLICT (hk_order) DO UPDATE SET
    hk_customer = excluded.hk_customer, ordered_at = excluded.ordered_at,
    order_date = excluded.order_date, channel = excluded.channel, status = excluded.status,
    status_known = excluded.status_known, is_counted = excluded.is_counted,
    lines = excluded.lines, units = excluded.units, amount = excluded.amount
WHERE (o.hk_customer, o.ordered_at, o.channel, o.status, o.status_known, o.lines, o.units,
       o.amount)
      IS DISTINCT FROM
      (excluded.hk_customer, excluded.ordered_at, excluded.channel, excluded.status,
       excluded.status_known, excluded.lines, excluded.units, excluded.amount);

INSERT INTO pg_temp.bv_customers (hk_customer)
SELECT o.hk_customer
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT s.hk_customer FROM business_vault.order_summary s
        WHERE s.hk_order = t.hk_order OFFSET 0) o
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_customers;

-- Customers: counts and money over counted orders, favourite category.
INSERT INTO business_vault.customer_order_summary AS c
    (hk_customer, orders_placed, orders_count, orders_cancelled, orders_returned, units,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category)
SELECT t.hk_customer, a.orders_placed, a.orders_count, a.orders_cancelled, a.orders_returned,
       a.units, a.total_spent, a.first_order_at, a.last_order_at,
       (a.first_order_at AT TIME ZONE 'UTC')::date, (a.last_order_at AT TIME ZONE 'UTC')::date,
       f.category
  FROM pg_temp.bv_customers t
 CROSS JOIN LATERAL (
       SELECT count(*) AS orders_placed,
              count(*) FILTER (WHERE o.is_counted) AS orders_count,
              count(*) FILTER (WHERE o.status = 'cancelled') AS orders_cancelled,
              count(*) FILTER (WHERE o.status = 'returned') AS orders_returned,
              coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0) AS units,
              coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0) AS total_spent,
              min(o.ordered_at) FILTER (WHERE o.is_counted) AS first_order_at,
              max(o.ordered_at) FILTER (WHERE o.is_counted) AS last_order_at
         FROM business_vault.order_summary o
        WHERE o.hk_customer = t.hk_customer) a
  LEFT JOIN LATERAL (
       SELECT p.category
         FROM business_vault.order_summary o
        CROSS JOIN LATERAL (
              SELECT l.quantity, l.line_amount, l.hk_product
                FROM business_vault.bridge_customer_order_product l
               WHERE l.hk_order = o.hk_order OFFSET 0) b
        CROSS JOIN LATERAL (
              SELECT x.category FROM raw_vault.sat_product_details x
               WHERE x.hk_product = b.hk_product
               ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) p
        WHERE o.hk_customer = t.hk_customer AND o.is_counted AND p.category IS NOT NULL
        GROUP BY p.category
        ORDER BY sum(b.quantity) DESC NULLS LAST, sum(b.line_amount) DESC NULLS LAST, p.category
        LIMIT 1) f ON true
 WHERE a.orders_placed > 0
ON CONFLICT (hk_customer) DO UPDATE SET
    orders_placed = excluded.orders_placed, orders_count = excluded.orders_count,
    orders_cancelled = excluded.orders_cancelled, orders_returned = excluded.orders_returned,
    units = excluded.units, total_spent = excluded.total_spent,
    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
    first_order_date = excluded.first_order_date, last_order_date = excluded.last_order_date,
    favourite_category = excluded.favourite_category
WHERE (c.orders_placed, c.orders_count, c.orders_cancelled, c.orders_returned, c.units,
       c.total_spent, c.first_order_at, c.last_order_at, c.favourite_category)
      IS DISTINCT FROM
      (excluded.orders_placed, excluded.orders_count, excluded.orders_cancelled,
       excluded.orders_returned, excluded.units, excluded.total_spent, excluded.first_order_at,
       excluded.last_order_at, excluded.favourite_category);

-- A customer whose every order moved to another customer (bad input corrected).
DELETE FROM business_vault.customer_order_summary c
 WHERE c.hk_customer IN (
       SELECT t.hk_customer FROM pg_temp.bv_customers t
        WHERE NOT EXISTS (SELECT FROM business_vault.order_summary o
                           WHERE o.hk_customer = t.hk_customer));

-- RFM quintile boundaries: the one figure that needs the whole population, kept as
-- one row (a sort of the customers with orders), only when a customer changed. The
-- boundaries before the batch decide below which stored scores may have moved.
INSERT INTO pg_temp.bv_old_cuts (recency, frequency, monetary)
SELECT r.recency, r.frequency, r.monetary FROM business_vault.rfm_cutpoints r;
INSERT INTO business_vault.rfm_cutpoints AS r (singleton, population, recency, frequency, monetary)
SELECT true, count(*),
       business_vault.quintile_cuts(coalesce(array_agg(c.last_order_date), '{}')),
       business_vault.quintile_cuts(coalesce(array_agg(c.orders_count), '{}')),
       business_vault.quintile_cuts(coalesce(array_agg(c.total_spent::numeric), '{}'))
  FROM business_vault.customer_order_summary c
 WHERE c.orders_count > 0
HAVING EXISTS (SELECT FROM pg_temp.bv_customers)
ON CONFLICT (singleton) DO UPDATE SET
    population = excluded.population, recency = excluded.recency,
    frequency = excluded.frequency, monetary = excluded.monetary
WHERE (r.population, r.recency, r.frequency, r.monetary)
      IS DISTINCT FROM (excluded.population, excluded.recency, excluded.frequency, excluded.monetary);

-- PIT: for each touched customer, every snapshot from the first day the batch touched
-- (the days before it cannot change), and the current row.
INSERT INTO business_vault.pit_customer AS p
    (hk_customer, snapshot_date,
     sat_customer_profile_hk, sat_customer_profile_applied_dts,
     sat_customer_profile_event_seq, sat_customer_profile_load_dts,
     sat_customer_contact_hk, sat_customer_contact_applied_dts,
     sat_customer_contact_event_seq, sat_customer_contact_load_dts)
SELECT t.hk_customer, d.snapshot_date,
       coalesce(pr.hk_customer, business_vault.ghost_key()), coalesce(pr.applied_dts, '-infinity'),
       coalesce(pr.event_seq, 0), coalesce(pr.load_dts, '-infinity'),
       coalesce(co.hk_customer, business_vault.ghost_key()), coalesce(co.applied_dts, '-infinity'),
       coalesce(co.event_seq, 0), coalesce(co.load_dts, '-infinity')
  FROM (SELECT b.hk_customer,
               coalesce((min(b.since) AT TIME ZONE 'UTC')::date, 'infinity') AS since_date
          FROM pg_temp.bv_pit b
         GROUP BY b.hk_customer) t
 CROSS JOIN LATERAL (
       SELECT (s.applied_dts AT TIME ZONE 'UTC')::date FROM raw_vault.sat_customer_profile s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts >= t.since_date::timestamp AT TIME ZONE 'UTC'
       UNION
       SELECT (s.applied_dts AT TIME ZONE 'UTC')::date FROM raw_vault.sat_customer_contact s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts >= t.since_date::timestamp AT TIME ZONE 'UTC'
       UNION
       SELECT 'infinity'::date) AS d(snapshot_date)
  LEFT JOIN LATERAL (
       SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts
         FROM raw_vault.sat_customer_profile s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts < (d.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) pr ON true
  LEFT JOIN LATERAL (
       SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts
         FROM raw_vault.sat_customer_contact s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts < (d.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) co ON true
ON CONFLICT (hk_customer, snapshot_date) DO UPDATE SET
    sat_customer_profile_hk = excluded.sat_customer_profile_hk,
    sat_customer_profile_applied_dts = excluded.sat_customer_profile_applied_dts,
    sat_customer_profile_event_seq = excluded.sat_customer_profile_event_seq,
    sat_customer_profile_load_dts = excluded.sat_customer_profile_load_dts,
    sat_customer_contact_hk = excluded.sat_customer_contact_hk,
    sat_customer_contact_applied_dts = excluded.sat_customer_contact_applied_dts,
    sat_customer_contact_event_seq = excluded.sat_customer_contact_event_seq,
    sat_customer_contact_load_dts = excluded.sat_customer_contact_load_dts
WHERE (p.sat_customer_profile_hk, p.sat_customer_profile_applied_dts,
       p.sat_customer_profile_event_seq, p.sat_customer_profile_load_dts,
       p.sat_customer_contact_hk, p.sat_customer_contact_applied_dts,
       p.sat_customer_contact_event_seq, p.sat_customer_contact_load_dts)
      IS DISTINCT FROM
      (excluded.sat_customer_profile_hk, excluded.sat_customer_profile_applied_dts,
       excluded.sat_customer_profile_event_seq, excluded.sat_customer_profile_load_dts,
       excluded.sat_customer_contact_hk, excluded.sat_customer_contact_applied_dts,
       excluded.sat_customer_contact_event_seq, excluded.sat_customer_contact_load_dts);

-- Customer 360, current (after the PIT and the customer summary it reads): the
-- customers whose PIT the batch staged and those whose order figures may have moved.
-- With the figures, the scores against the boundaries of this batch and today (as
-- business_vault.score_customers writes them for the others below).
INSERT INTO business_vault.customer_360_current AS c
    (hk_customer, customer_id, first_name, last_name, city, country, signup_date,
     contact_applied_dts, contact_event_seq, orders_count, orders_cancelled, orders_returned,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category, avg_days_between_orders, recency_score, frequency_score,
     monetary_score, segment, at_risk_on, churned_on, clv_predicted_12m)
SELECT t.hk_customer, h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country,
       pr.signup_date, co.applied_dts, co.event_seq, m.orders_count, m.orders_cancelled,
       m.orders_returned, m.total_spent, m.first_order_at, m.last_order_at, m.first_order_date,
       m.last_order_date, m.favourite_category, sc.avg_days_between_orders, sc.recency_score,
       sc.frequency_score, sc.monetary_score, sc.segment,
       business_vault.at_risk_on(CASE WHEN m.orders_count > 0 THEN m.last_order_date END,
                                 sc.avg_days_between_orders),
       business_vault.churned_on(CASE WHEN m.orders_count > 0 THEN m.last_order_date END,
                                 sc.avg_days_between_orders),
       sc.clv_predicted_12m
  FROM (SELECT b.hk_customer FROM pg_temp.bv_pit b
        UNION
        SELECT b.hk_customer FROM pg_temp.bv_customers b) t
 CROSS JOIN LATERAL (
       SELECT x.customer_id FROM raw_vault.hub_customer x
        WHERE x.hk_customer = t.hk_customer OFFSET 0) h
 CROSS JOIN LATERAL (
       SELECT x.sat_customer_profile_hk, x.sat_customer_profile_applied_dts,
              x.sat_customer_profile_event_seq, x.sat_customer_contact_hk,
              x.sat_customer_contact_applied_dts, x.sat_customer_contact_event_seq
         FROM business_vault.pit_customer x
        WHERE x.hk_customer = t.hk_customer AND x.snapshot_date = 'infinity' OFFSET 0) pit
  LEFT JOIN LATERAL (
       SELECT x.first_name, x.last_name, x.city, x.country, x.signup_date
         FROM raw_vault.sat_customer_profile x
        WHERE x.hk_customer = pit.sat_customer_profile_hk
          AND x.applied_dts = pit.sat_customer_profile_applied_dts
          AND x.event_seq = pit.sat_customer_profile_event_seq OFFSET 0) pr ON true
  LEFT JOIN LATERAL (
       SELECT x.applied_dts, x.event_seq
         FROM raw_vault.sat_customer_contact x
        WHERE x.hk_customer = pit.sat_customer_contact_hk
          AND x.applied_dts = pit.sat_customer_contact_applied_dts
          AND x.event_seq = pit.sat_customer_contact_event_seq OFFSET 0) co ON true
  LEFT JOIN LATERAL (
       SELECT x.orders_count, x.orders_cancelled, x.orders_returned, x.total_spent,
              x.first_order_at, x.last_order_at, x.first_order_date, x.last_order_date,
              x.favourite_category
         FROM business_vault.customer_order_summary x
        WHERE x.hk_customer = t.hk_customer OFFSET 0) m ON true
  LEFT JOIN business_vault.rfm_cutpoints q ON true
 CROSS JOIN LATERAL business_vault.customer_scores(
       (now() AT TIME ZONE 'UTC')::date, m.first_order_date, m.last_order_date, m.orders_count,
       m.total_spent, q.recency, q.frequency, q.monetary) sc
ON CONFLICT (hk_customer) DO UPDATE SET
    customer_id = excluded.customer_id, first_name = excluded.first_name,
    last_name = excluded.last_name, city = excluded.city, country = excluded.country,
    signup_date = excluded.signup_date, contact_applied_dts = excluded.contact_applied_dts,
    contact_event_seq = excluded.contact_event_seq, orders_count = excluded.orders_count,
    orders_cancelled = excluded.orders_cancelled, orders_returned = excluded.orders_returned,
    total_spent = excluded.total_spent, first_order_at = excluded.first_order_at,
    last_order_at = excluded.last_order_at, first_order_date = excluded.first_order_date,
    last_order_date = excluded.last_order_date, favourite_category = excluded.favourite_category,
    avg_days_between_orders = excluded.avg_days_between_orders,
    recency_score = excluded.recency_score, frequency_score = excluded.frequency_score,
    monetary_score = excluded.monetary_score, segment = excluded.segment,
    at_risk_on = excluded.at_risk_on, churned_on = excluded.churned_on,
    clv_predicted_12m = excluded.clv_predicted_12m
WHERE (c.customer_id, c.first_name, c.last_name, c.city, c.country, c.signup_date,
       c.contact_applied_dts, c.contact_event_seq, c.orders_count, c.orders_cancelled,
       c.orders_returned, c.total_spent, c.first_order_at, c.last_order_at, c.favourite_category,
       c.avg_days_between_orders, c.recency_score, c.frequency_score, c.monetary_score,
       c.segment, c.at_risk_on, c.churned_on, c.clv_predicted_12m)
      IS DISTINCT FROM
      (excluded.customer_id, excluded.first_name, excluded.last_name, excluded.city,
       excluded.country, excluded.signup_date, excluded.contact_applied_dts,
       excluded.contact_event_seq, excluded.orders_count, excluded.orders_cancelled,
       excluded.orders_returned, excluded.total_spent, excluded.first_order_at,
       excluded.last_order_at, excluded.favourite_category, excluded.avg_days_between_orders,
       excluded.recency_score, excluded.frequency_score, excluded.monetary_score,
       excluded.segment, excluded.at_risk_on, excluded.churned_on, excluded.clv_predicted_12m);

-- Products: the summary of every product the batch reached (details, hub, views, the
-- lines of its orders), then the revenue ranks of their categories before and after.
INSERT INTO pg_temp.bv_product_figures (hk_product)
SELECT p.hk_product FROM pg_temp.bv_products p
UNION
SELECT b.hk_product
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT l.hk_product FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_order = t.hk_order OFFSET 0) b
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_product_figures;

INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;

-- (set-based, the planner free to hash: a batch often reaches most products, and then
-- one pass over their lines costs a tenth of a lookup per product; the same figures as
-- business_vault.product_figures)
SET LOCAL enable_seqscan TO DEFAULT;
SET LOCAL enable_hashjoin TO DEFAULT;
SET LOCAL enable_mergejoin TO DEFAULT;
INSERT INTO business_vault.product_summary AS p
    (hk_product, product_id, name, category, brand, price, units_sold, revenue, orders,
     buyers, views, viewers, viewers_who_bought, view_to_purchase_rate, rank_in_category)
SELECT t.hk_product, h.product_id, d.name, d.category, d.brand, d.price,
       coalesce(s.units_sold, 0), coalesce(s.revenue, 0.00), coalesce(s.orders, 0),
       coalesce(s.buyers, 0), coalesce(v.views, 0), coalesce(v.viewers, 0),
       coalesce(c.viewers_who_bought, 0),
       round(coalesce(c.viewers_who_bought, 0)::numeric / nullif(v.viewers, 0), 4), 0
  FROM pg_temp.bv_product_figures t
  JOIN raw_vault.hub_product h ON h.hk_product = t.hk_product
  LEFT JOIN LATERAL (
       SELECT x.name, x.category, x.brand, x.price
         FROM raw_vault.sat_product_details x
        WHERE x.hk_product = t.hk_product
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) d ON true
  LEFT JOIN (
       SELECT b.hk_product, sum(b.quantity) AS units_sold, sum(b.line_amount) AS revenue,
              count(DISTINCT b.hk_order) AS orders, count(DISTINCT b.hk_customer) AS buyers
         FROM pg_temp.bv_product_figures x
         JOIN business_vault.bridge_customer_order_product b ON b.hk_product = x.hk_product
         JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
        WHERE o.is_counted
        GROUP BY b.hk_product) s ON s.hk_product = t.hk_product
  LEFT JOIN (
       SELECT v.hk_product, count(*) AS views, count(DISTINCT v.hk_customer) AS viewers
         FROM pg_temp.bv_product_figures x
         JOIN raw_vault.link_product_view v ON v.hk_product = x.hk_product
        GROUP BY v.hk_product) v ON v.hk_product = t.hk_product
  LEFT JOIN (
       SELECT w.hk_product, count(*) AS viewers_who_bought
         FROM (SELECT DISTINCT v.hk_product, v.hk_customer
                 FROM pg_temp.bv_product_figures x
                 JOIN raw_vault.link_product_view v ON v.hk_product = x.hk_product) w
        WHERE EXISTS (SELECT FROM business_vault.bridge_customer_order_product b
                        JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
                       WHERE b.hk_product = w.hk_product AND b.hk_customer = w.hk_customer
                         AND o.is_counted)
        GROUP BY w.hk_product) c ON c.hk_product = t.hk_product
ON CONFLICT (hk_product) DO UPDATE SET
    product_id = excluded.product_id, name = excluded.name, category = excluded.category,
    brand = excluded.brand, price = excluded.price, units_sold = excluded.units_sold,
    revenue = excluded.revenue, orders = excluded.orders, buyers = excluded.buyers,
    views = excluded.views, viewers = excluded.viewers,
    viewers_who_bought = excluded.viewers_who_bought,
    view_to_purchase_rate = excluded.view_to_purchase_rate
WHERE (p.product_id, p.name, p.category, p.brand, p.price, p.units_sold, p.revenue, p.orders,
       p.buyers, p.views, p.viewers, p.viewers_who_bought, p.view_to_purchase_rate)
      IS DISTINCT FROM
      (excluded.product_id, excluded.name, excluded.category, excluded.brand, excluded.price,
       excluded.units_sold, excluded.revenue, excluded.orders, excluded.buyers, excluded.views,
       excluded.viewers, excluded.viewers_who_bought, excluded.view_to_purchase_rate);
SET LOCAL enable_seqscan = off;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;

INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;

-- (products without a category rank among themselves, as rank() partitions them)
UPDATE business_vault.product_summary p SET rank_in_category = r.rank
  FROM (SELECT x.hk_product, rank() OVER (PARTITION BY x.category ORDER BY x.revenue DESC) AS rank
          FROM (SELECT DISTINCT c.category FROM pg_temp.bv_categories c) c
         CROSS JOIN LATERAL (
               SELECT y.hk_product, y.category, y.revenue FROM business_vault.product_summary y
                WHERE y.category = c.category
               UNION ALL
               SELECT y.hk_product, y.category, y.revenue FROM business_vault.product_summary y
                WHERE y.category IS NULL AND c.category IS NULL) x) r
 WHERE p.hk_product = r.hk_product AND p.rank_in_category IS DISTINCT FROM r.rank;

-- Customer scores of the others (the rows rewritten above are scored): those whose
-- value lies between an old and a new RFM boundary (their score moved with the
-- boundary), and everybody on the first batch (no boundaries before) and on the first
-- batch of a day (the stored predicted CLV is of another day).
INSERT INTO pg_temp.bv_rescore (hk_customer)
SELECT c.hk_customer FROM business_vault.customer_360_current c
 WHERE NOT EXISTS (SELECT FROM pg_temp.bv_old_cuts)
    OR NOT EXISTS (SELECT FROM business_vault.customer_scores_day d
                    WHERE d.scored_on = (now() AT TIME ZONE 'UTC')::date)
ON CONFLICT DO NOTHING;

INSERT INTO pg_temp.bv_rescore (hk_customer)
SELECT x.hk_customer
  FROM pg_temp.bv_old_cuts o
 CROSS JOIN business_vault.rfm_cutpoints n
 CROSS JOIN generate_series(1, 4) AS k(k)
 CROSS JOIN LATERAL (
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.recency[k.k] IS DISTINCT FROM n.recency[k.k]
          AND y.last_order_date >= least(o.recency[k.k], n.recency[k.k])
          AND y.last_order_date < CASE WHEN o.recency[k.k] IS NULL OR n.recency[k.k] IS NULL
                                       THEN 'infinity'::date
                                       ELSE greatest(o.recency[k.k], n.recency[k.k]) END
       UNION ALL
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.frequency[k.k] IS DISTINCT FROM n.frequency[k.k]
          AND y.orders_count >= least(o.frequency[k.k], n.frequency[k.k])
          AND y.orders_count < CASE WHEN o.frequency[k.k] IS NULL OR n.frequency[k.k] IS NULL
                                    THEN 2147483647
                                    ELSE greatest(o.frequency[k.k], n.frequency[k.k]) END
       UNION ALL
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.monetary[k.k] IS DISTINCT FROM n.monetary[k.k]
          AND coalesce(y.total_spent, 0.00) >= least(o.monetary[k.k], n.monetary[k.k])
          AND coalesce(y.total_spent, 0.00) < CASE WHEN o.monetary[k.k] IS NULL OR n.monetary[k.k] IS NULL
                                                   THEN 'Infinity'::numeric
                                                   ELSE greatest(o.monetary[k.k], n.monetary[k.k]) END) x
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_rescore;

SELECT business_vault.score_customers(a.customers, (now() AT TIME ZONE 'UTC')::date)
  FROM (SELECT array_agg(r.hk_customer) AS customers FROM pg_temp.bv_rescore r) a
 WHERE a.customers IS NOT NULL;

SET LOCAL enable_seqscan TO DEFAULT;
SET LOCAL enable_hashjoin TO DEFAULT;
SET LOCAL enable_mergejoin TO DEFAULT;

-- Segment totals and churn calendar: population-wide, one pass over the customers,
-- when a stored score moved.
SELECT business_vault.summarise_customers((now() AT TIME ZONE 'UTC')::date)
 WHERE EXISTS (SELECT FROM pg_temp.bv_rescore) OR EXISTS (SELECT FROM pg_temp.bv_customers)
    OR EXISTS (SELECT FROM pg_temp.bv_pit);

SET LOCAL jit TO DEFAULT;
SET LOCAL work_mem TO DEFAULT;
"#;

fn bytes(keys: &[Hash]) -> Vec<&[u8]> {
    keys.iter().map(|k| &k[..]).collect()
}

/// Bring the business vault up to date with what this batch wrote.
pub async fn refresh(tx: &Transaction<'_>, m: &Mappings, rows: &Rows) -> Result<(), LoadError> {
    let touched = Touched::of(m, rows);
    if touched.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    tx.batch_execute(KEY_TABLES)
        .await
        .doing("creating the business vault key tables")?;
    tx.execute(
        STAGE_ORDERS,
        &[&bytes(&touched.orders), &bytes(&touched.order_lines)],
    )
    .await
    .doing("staging the orders the batch touched")?;
    tx.execute(STAGE_PRODUCTS, &[&bytes(&touched.products)])
        .await
        .doing("staging the products the batch touched")?;
    tx.execute(
        STAGE_PRODUCT_FIGURES,
        &[&bytes(&touched.products), &bytes(&touched.product_facts)],
    )
    .await
    .doing("staging the products whose figures the batch may move")?;
    let customers: Vec<&[u8]> = touched.customers.iter().map(|(k, _)| &k[..]).collect();
    let since: Vec<Option<DateTime<Utc>>> = touched.customers.iter().map(|(_, t)| *t).collect();
    tx.execute(STAGE_PIT, &[&customers, &since])
        .await
        .doing("staging the customers the batch touched")?;
    tx.batch_execute(REFRESH).await.doing(
        "refreshing the business vault (PIT, bridge, order and customer summaries, Customer 360)",
    )?;
    tracing::debug!(
        orders = touched.orders.len(),
        order_lines = touched.order_lines.len(),
        products = touched.products.len(),
        customers = touched.customers.len(),
        ms = started.elapsed().as_millis() as u64,
        "business vault refreshed"
    );
    Ok(())
}

/// Empty the business vault (for `dvault rebuild`, in its reset transaction).
pub async fn truncate(tx: &Transaction<'_>) -> Result<(), LoadError> {
    tx.batch_execute(&format!("TRUNCATE {}", TABLES.join(", ")))
        .await
        .doing("emptying the business vault")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{StoredEvent, Xid8};
    use crate::hash::{hash_key, hash_key_multi};
    use chrono::TimeZone;

    fn event(seq: i64, event_type: &str, day: u32, payload: &str) -> StoredEvent {
        let at = Utc
            .with_ymd_and_hms(2024, 3, day, 12, 0, 0)
            .single()
            .expect("valid time");
        StoredEvent {
            seq,
            xid: Xid8(1),
            event_id: seq.to_string(),
            event_type: event_type.into(),
            source: "test".into(),
            occurred_at: at,
            recorded_at: at,
            payload: payload.into(),
        }
    }

    fn key(k: &str) -> Hash {
        hash_key(k).expect("key")
    }

    #[test]
    fn a_batch_touches_the_keys_its_rows_reach() {
        let m = Mappings::builtin().expect("mappings");
        let batch = [
            event(
                1,
                "customer_registered",
                5,
                r#"{"customer_id":"C1","first_name":"Ann","city":"Rome"}"#,
            ),
            event(
                2,
                "customer_updated",
                3,
                r#"{"customer_id":"C1","city":"Oslo"}"#,
            ),
            event(
                3,
                "order_placed",
                6,
                r#"{"order_id":"O1","customer_id":"C2","ordered_at":"2024-03-06T12:00:00Z",
                    "channel":"web","status":"placed",
                    "lines":[{"line_no":1,"product_id":"P1","quantity":1,"unit_price":5,"discount":0}]}"#,
            ),
            event(
                4,
                "order_status_changed",
                7,
                r#"{"order_id":"O2","status":"paid"}"#,
            ),
            event(5, "product_updated", 7, r#"{"product_id":"P2","price":3}"#),
            event(
                6,
                "product_viewed",
                7,
                r#"{"session_id":"s","customer_id":"C3","product_id":"P3","viewed_at":"2024-03-07T12:00:00Z"}"#,
            ),
        ];
        let (rows, rejects) = super::super::project(&m, &batch);
        assert!(rejects.is_empty(), "{rejects:?}");
        let t = Touched::of(&m, &rows);
        let mut orders = vec![key("O1"), key("O2")];
        orders.sort_unstable();
        assert_eq!(t.orders, orders);
        assert_eq!(
            t.order_lines,
            [hash_key_multi([Some("O1"), Some("P1"), Some("1")]).expect("key")]
        );
        assert_eq!(t.products, [key("P2")]);
        // new product hubs and viewed products move product summaries
        let mut facts = vec![key("P1"), key("P2"), key("P3")];
        facts.sort_unstable();
        assert_eq!(t.product_facts, facts);
        let march = |day| Utc.with_ymd_and_hms(2024, 3, day, 12, 0, 0).single();
        let mut customers = vec![
            (key("C1"), march(3)), // the earliest business time staged for C1
            (key("C1"), None),
            (key("C2"), None), // hub only: its orders do not move its PIT
            (key("C3"), None),
        ];
        customers.sort_unstable();
        assert_eq!(t.customers, customers);
        assert!(!t.is_empty());
        assert!(Touched::of(&m, &Rows::new(&m)).is_empty());
    }
}
