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
//! A first load on the bulk path ([`super::bulk`]) does not refresh per batch: the raw
//! vault has no indexes until the run's end. [`build`] then stages every key and runs
//! the same refresh once, except that the bridge and the order and customer summaries
//! are written set-based (`*_build.sql`). The SQL is in `src/load/business/*.sql`, one file per
//! part, in order.
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

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Transaction};

pub mod past_days;

use super::LoadError;
use super::rows::Rows;
use super::satellite::earliest_per_parent;
use crate::db::{Doing, indexes};
use crate::hash::{Hash, KeySet};
use crate::mapping::{Mappings, PerLink};

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
    "business_vault.revenue_period",
    "business_vault.category_summary",
    "business_vault.product_customer",
    "business_vault.customer_category",
];

/// Answers the business vault remembers rather than derives from the log (the RFM
/// boundaries, the population figures and the sales of past times,
/// `V13__rfm_cutpoints_as_of.sql`, `V15__population_as_of.sql`, `V18__sales_as_of.sql`,
/// and the sales of past days, `V28__revenue_every_day.sql`):
/// emptied with it, not part of what a rebuild must reproduce. The sales' figures hang
/// from `sales_as_of` by a foreign key, so they are listed too (TRUNCATE wants them).
pub const CACHES: &[&str] = &[
    "business_vault.rfm_cutpoints_as_of",
    "business_vault.population_as_of",
    "business_vault.sales_as_of",
    "business_vault.revenue_as_of",
    "business_vault.categories_as_of",
    "business_vault.top_products_as_of",
    "business_vault.revenue_kept",
    "business_vault.categories_kept",
    "business_vault.top_products_kept",
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
    /// New product hub rows: each gets a summary (the products whose figures move are
    /// found from the touched orders and views).
    pub product_facts: Vec<Hash>,
    /// Product views the batch added (new link rows), as (product, customer), once
    /// per view: what they add to the pairs' view counts
    /// (`business_vault.product_customer`).
    pub views: Vec<(Hash, Hash)>,
    /// Customers for the PIT, with the earliest business time staged in one of their
    /// satellites; `None`: only the hub (the current row must exist).
    pub customers: Vec<(Hash, Option<DateTime<Utc>>)>,
}

impl Touched {
    /// What `rows` touch, found by the vault's table names (a custom mapping without
    /// some of them simply touches less).
    pub fn of(m: &Mappings, rows: &Rows, new_links: &PerLink<KeySet>) -> Touched {
        let hub = |name: &str| m.hub_id(name);
        let sat = |name: &str| m.satellite_id(name).map(|s| &rows.satellites[s]);
        let mut t = Touched::default();
        let order_hub = hub("hub_order");
        for link in ["link_order_customer", "link_order_product"] {
            let Some(l) = m.link_id(link) else {
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
        if let Some(l) = m.link_id("link_product_view") {
            let at = |name: &str| {
                let id = hub(name);
                m.links[l].hubs.iter().position(|&h| Some(h) == id)
            };
            if let (Some(product), Some(customer)) = (at("hub_product"), at("hub_customer")) {
                // a view staged twice in one batch is one row: once per new key
                let mut seen = KeySet::default();
                t.views.extend(
                    rows.links[l]
                        .iter()
                        .filter(|r| new_links[l].contains(&r.hk) && seen.insert(r.hk))
                        .map(|r| (r.hub_keys[product], r.hub_keys[customer])),
                );
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
        t.views.sort_unstable();
        t
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.order_lines.is_empty()
            && self.products.is_empty()
            && self.product_facts.is_empty()
            && self.views.is_empty()
            && self.customers.is_empty()
    }
}

/// The touched keys, one temporary table per kind, emptied at commit; and the
/// settings of the refresh, reset at its end (`RESET`).
pub const KEY_TABLES: &str = include_str!("business/key_tables.sql");

/// The keyed parts of a batch's refresh are written as index lookups per touched
/// key. The statistics of the tables this very load is filling are stale, and with
/// them the planner may prefer to scan a whole table once per key: tell it not to.
const INDEX_PLANS: &str = "
SET LOCAL enable_seqscan = off;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;";

/// The planner free again, for the set-based parts.
const FREE_PLANS: &str = "
SET LOCAL enable_seqscan TO DEFAULT;
SET LOCAL enable_hashjoin TO DEFAULT;
SET LOCAL enable_mergejoin TO DEFAULT;";

const RESET: &str = "
SET LOCAL jit TO DEFAULT;
SET LOCAL work_mem TO DEFAULT;
SET LOCAL client_min_messages TO DEFAULT;";

/// How a part of the refresh is planned.
#[derive(Clone, Copy, PartialEq)]
enum Plans {
    Keyed,
    Free,
}

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

/// The product views the batch added, as (product, customer) pairs, once per view.
const STAGE_NEW_VIEWS: &str = "
INSERT INTO pg_temp.bv_new_views (hk_product, hk_customer)
SELECT u.p, u.c FROM unnest($1::bytea[], $2::bytea[]) AS u(p, c)";

const STAGE_PIT: &str = "INSERT INTO pg_temp.bv_pit (hk_customer, since)
SELECT u.hk, u.since FROM unnest($1::bytea[], $2::timestamptz[]) AS u(hk, since)";

/// Forget the remembered RFM boundaries, population figures and sales of the business
/// times this batch may have changed (V13, V15, V18; the sales' figures go with their
/// `sales_as_of` row): every time from the earliest business time
/// it wrote on. An order counts from its placing, and a link or a line of an order
/// written now can change its past: so also from the earliest version of any order the
/// batch touched (its first version: one index probe per order, whatever the planner
/// knows of the key table). Runs after the checkpoint row is locked, so that an answer
/// computed meanwhile is either seen here or never stored (`business_vault.rfm_cuts_at`,
/// `business_vault.population_at`, `business_vault.sales_remembered`).
const FORGET_PAST: &str = include_str!("business/forget_past.sql");

/// Every order, product and customer of the raw vault as touched, each customer from
/// its first day: what a first load on the bulk path stages once, after its last batch.
const STAGE_EVERYTHING: &str = include_str!("business/stage_everything.sql");

/// The refresh itself, in order (`src/load/business/*.sql`). Every statement is
/// driven by the key tables. In the keyed parts the rows they reach are found with
/// index lookups per key (LATERAL ... LIMIT 1, OFFSET 0 fences where the planner
/// would otherwise hash a whole table), and written with INSERT ... ON CONFLICT DO
/// UPDATE ... WHERE IS DISTINCT FROM, whose conflict check is an index probe too: the
/// cost follows the batch, not the size of the vault.
type Part = (&'static str, Plans);

/// The touched orders' counted lines before the batch changes them (a batch only: a
/// build starts from an empty business vault).
const PRODUCT_LINES_WAS: Part = (include_str!("business/product_lines_was.sql"), Plans::Keyed);
const BRIDGE: Part = (include_str!("business/bridge.sql"), Plans::Keyed);
const ORDERS: Part = (include_str!("business/orders.sql"), Plans::Keyed);
/// Each touched customer's totals per product category, moved by the difference.
const CUSTOMER_CATEGORIES: Part = (
    include_str!("business/customer_categories.sql"),
    Plans::Keyed,
);
const CUSTOMER_SUMMARY: Part = (include_str!("business/customer_summary.sql"), Plans::Keyed);
/// The parts after the bridge and the order and customer summaries, the same in a
/// batch and a build but for the revenue periods and the product figures: a batch
/// moves the periods of the orders it touched ([`REVENUE`]), and the figures of the
/// (product, customer) pairs it touched and their products ([`PRODUCT_PAIRS`]), by the
/// difference; a build groups every order once ([`REVENUE_BUILD`]) and sums every pair
/// once ([`PRODUCT_PAIRS_BUILD`]).
const CUSTOMERS: Part = (include_str!("business/customers.sql"), Plans::Keyed);
const REVENUE: Part = (include_str!("business/revenue.sql"), Plans::Keyed);
const PRODUCT_PAIRS: Part = (include_str!("business/product_keys.sql"), Plans::Keyed);
const PRODUCT_PAIRS_BUILD: Part = (include_str!("business/product_keys_build.sql"), Plans::Free);
const PRODUCTS_AND_SCORES: [Part; 3] = [
    (include_str!("business/product_summary.sql"), Plans::Keyed),
    (include_str!("business/scores.sql"), Plans::Keyed),
    (include_str!("business/population.sql"), Plans::Free),
];

/// A build (every key touched, the business vault empty) writes the bridge and the
/// order and customer summaries set-based: hash joins and groupings over whole tables
/// instead of lookups per order or customer (`*_build.sql`, the same rows:
/// tests/integration/bulk_load.rs compares a build with the batches, the oracle test
/// both with its own model). The other parts run
/// as in a batch: with the planner free, their correlated subqueries met tables
/// without statistics (the bulk path just filled them) and one of them hashed a whole
/// table per customer (170 s instead of 1.3 s for the favourite categories of 10,000
/// customers, on the old platform's files).
const BRIDGE_BUILD: Part = (include_str!("business/bridge_build.sql"), Plans::Free);
const ORDERS_BUILD: Part = (include_str!("business/orders_build.sql"), Plans::Free);
/// Every period grouped once: an index range per period took 0.6 s and the check
/// for periods left without orders 0.3 s on the old platform's 100,000 orders.
const REVENUE_BUILD: Part = (include_str!("business/revenue_build.sql"), Plans::Free);
const CUSTOMER_CATEGORIES_BUILD: Part = (
    include_str!("business/customer_categories_build.sql"),
    Plans::Free,
);
const CUSTOMER_SUMMARY_BUILD: Part = (
    include_str!("business/customer_summary_build.sql"),
    Plans::Free,
);

/// The refresh of a batch, and of a build, as one script each, assembled once.
/// A build runs its set-based parts, builds the indexes they went without
/// ([`FILLED_BARE`]), then the rest, and last the key of the pairs ([`PAIRS`]) and the
/// other indexes of the tables the rest filled with their keys only ([`FILLED_KEYED`]).
static SCRIPT: LazyLock<String> = LazyLock::new(|| {
    let rest = [
        &[CUSTOMERS, REVENUE, PRODUCT_PAIRS],
        PRODUCTS_AND_SCORES.as_slice(),
    ]
    .concat();
    script(
        &[
            PRODUCT_LINES_WAS,
            BRIDGE,
            ORDERS,
            CUSTOMER_CATEGORIES,
            CUSTOMER_SUMMARY,
        ],
        &rest,
    ) + RESET
});
/// (Without [`RESET`]: the rest runs with the refresh's settings, JIT off above all.)
static BUILD_HEAD: LazyLock<String> = LazyLock::new(|| {
    script(
        &[
            BRIDGE_BUILD,
            ORDERS_BUILD,
            CUSTOMER_CATEGORIES_BUILD,
            CUSTOMER_SUMMARY_BUILD,
        ],
        &[],
    )
});
static BUILD_REST: LazyLock<String> = LazyLock::new(|| {
    let rest = [
        &[CUSTOMERS, REVENUE_BUILD, PRODUCT_PAIRS_BUILD],
        PRODUCTS_AND_SCORES.as_slice(),
    ]
    .concat();
    script(&[], &rest) + RESET
});

/// The tables a build's set-based parts fill from empty. Their indexes are dropped
/// before and built after (a sort each) rather than kept row by row: on the demo's
/// 100,000 lines the bridge took 0.93 s with its two indexes and 0.58 s without them,
/// index builds included (`psql \timing`). Nothing reads them before the rest of the
/// build, whose keyed plans and `ON CONFLICT` clauses need the indexes back.
const FILLED_BARE: [&str; 5] = [
    "business_vault.bridge_customer_order_product",
    "business_vault.order_summary",
    "business_vault.customer_category",
    "business_vault.customer_order_summary",
    PAIRS,
];

/// The tables the rest of the build fills from empty with their keys only: their other
/// indexes (eleven and five, for the API's sorts and searches) are dropped before and
/// built after the rest, as the pairs' key. The keys stay: the rest looks rows up by
/// them and writes through `ON CONFLICT` on them. At ten times the demo's data,
/// inserting the 100,000 Customer 360 rows through their eleven indexes took 4.8 of
/// the statement's 9.7 s (`auto_explain`).
const FILLED_KEYED: [&str; 2] = [
    "business_vault.customer_360_current",
    "business_vault.product_summary",
];

/// The (product, customer) pairs, filled bare too, by the rest of the build, which
/// reads them only by a scan: their key is built at the build's end. On the demo's
/// data, 115,000 pairs written through their key took 0.5 to 0.9 s (`auto_explain`).
const PAIRS: &str = "business_vault.product_customer";

/// `first`, then `then`, each part with its plans.
fn script(first: &[Part], then: &[Part]) -> String {
    let mut sql = String::new();
    let mut keyed = false;
    for &(part, plans) in first.iter().chain(then) {
        let wants_keyed = plans == Plans::Keyed;
        if wants_keyed != keyed {
            sql.push_str(if wants_keyed { INDEX_PLANS } else { FREE_PLANS });
            keyed = wants_keyed;
        }
        sql.push('\n');
        sql.push_str(part);
    }
    if keyed {
        sql.push_str(FREE_PLANS);
    }
    sql
}

/// The earliest business time of any row of the batch.
fn earliest_applied(rows: &Rows) -> Option<DateTime<Utc>> {
    let hubs = rows.hubs.iter().flatten().map(|r| &r.origin);
    let links = rows.links.iter().flatten().map(|r| &r.origin);
    let sats = rows.satellites.iter().flatten().map(|r| &r.origin);
    hubs.chain(links).chain(sats).map(|o| o.applied_dts).min()
}

fn bytes(keys: &[Hash]) -> Vec<&[u8]> {
    keys.iter().map(|k| &k[..]).collect()
}

/// Bring the business vault up to date with what this batch wrote.
pub async fn refresh(
    tx: &Transaction<'_>,
    m: &Mappings,
    rows: &Rows,
    new_links: &PerLink<KeySet>,
) -> Result<(), LoadError> {
    let touched = Touched::of(m, rows, new_links);
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
    let (viewed, viewers): (Vec<&[u8]>, Vec<&[u8]>) =
        touched.views.iter().map(|(p, c)| (&p[..], &c[..])).unzip();
    tx.execute(STAGE_NEW_VIEWS, &[&viewed, &viewers])
        .await
        .doing("staging the product views the batch touched")?;
    let customers: Vec<&[u8]> = touched.customers.iter().map(|(k, _)| &k[..]).collect();
    let since: Vec<Option<DateTime<Utc>>> = touched.customers.iter().map(|(_, t)| *t).collect();
    tx.execute(STAGE_PIT, &[&customers, &since])
        .await
        .doing("staging the customers the batch touched")?;
    tx.execute(FORGET_PAST, &[&earliest_applied(rows)])
        .await
        .doing("forgetting the remembered answers of the past the batch changed")?;
    tx.batch_execute(&SCRIPT).await.doing(
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

/// Build the business vault from the whole raw vault, once: the refresh of a first
/// load on the bulk path ([`super::bulk`]), which skips the refresh of each batch
/// (the raw vault has no indexes to look into until the run's end). With every key
/// touched, the refresh recomputes every figure from the raw vault, as the refreshes
/// of each batch would have: rebuild = incremental. Its cost is that of one batch
/// holding the whole log, not that of every batch's population-wide figures.
pub async fn build(tx: &Transaction<'_>) -> Result<(), LoadError> {
    let started = std::time::Instant::now();
    tx.batch_execute(KEY_TABLES)
        .await
        .doing("creating the business vault key tables")?;
    tx.batch_execute(STAGE_EVERYTHING)
        .await
        .doing("staging every order, product and customer")?;
    tx.batch_execute(
        &CACHES
            .iter()
            .map(|t| format!("DELETE FROM {t};"))
            .collect::<String>(),
    )
    .await
    .doing("forgetting the remembered answers of past times")?;
    let (mut dropped, mut last) = (Vec::new(), Vec::new());
    if bare_to_fill(tx).await? {
        for table in FILLED_BARE {
            let indexes = indexes::drop_all(tx, table)
                .await
                .doing("dropping the indexes of a business vault table to fill it")?;
            if table == PAIRS {
                last.extend(indexes);
            } else {
                dropped.extend(indexes);
            }
        }
        for table in FILLED_KEYED {
            last.extend(
                indexes::drop_secondary(tx, table)
                    .await
                    .doing("dropping the secondary indexes of a business vault table to fill it")?,
            );
        }
    }
    tx.batch_execute(&BUILD_HEAD)
        .await
        .doing("building the bridge and the order and customer summaries")?;
    for index in &dropped {
        indexes::build_missing(tx, index)
            .await
            .doing("building the indexes of the bridge and the order and customer summaries")?;
    }
    tx.batch_execute(&BUILD_REST).await.doing(
        "building the business vault (PIT, product summary, Customer 360, population figures)",
    )?;
    for index in &last {
        indexes::build_missing(tx, index).await.doing(
            "building the key of the product and customer pairs and the indexes of the Customer 360 and product summaries",
        )?;
    }
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "business vault built from the whole raw vault"
    );
    Ok(())
}

/// May the build fill [`FILLED_BARE`] without their indexes, and [`FILLED_KEYED`] with
/// their keys only? Only their owner may drop them (not the loader role of
/// docs/security.md), and only if no reader holds them now: the run has held the raw
/// vault's tables since its start, so waiting here for a reader of `mart.orders` that
/// waits for `hub_order` would be a deadlock, and the whole run would be lost to it.
/// So the tables are locked without waiting, under a savepoint; when they cannot be,
/// they are filled with their indexes.
async fn bare_to_fill(tx: &Transaction<'_>) -> Result<bool, LoadError> {
    for table in FILLED_BARE.iter().chain(&FILLED_KEYED) {
        if !crate::db::owns(tx, table)
            .await
            .doing("checking who owns the business vault tables")?
        {
            return Ok(false);
        }
    }
    tx.batch_execute("SAVEPOINT bare_to_fill")
        .await
        .doing("locking the business vault tables to fill")?;
    let lock = format!(
        "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE NOWAIT",
        FILLED_BARE.join(", "),
        FILLED_KEYED.join(", ")
    );
    match tx.batch_execute(&lock).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT bare_to_fill")
                .await
                .doing("locking the business vault tables to fill")?;
            Ok(true)
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            tracing::info!("readers hold the business vault's tables: filled with their indexes");
            tx.batch_execute("ROLLBACK TO SAVEPOINT bare_to_fill")
                .await
                .doing("locking the business vault tables to fill")?;
            Ok(false)
        }
        Err(source) => Err(crate::db::Failed {
            doing: "locking the business vault tables to fill",
            source,
        }
        .into()),
    }
}

/// Is the business vault empty (a first load, or one after `dvault rebuild`)?
pub async fn is_empty(client: &impl GenericClient) -> Result<bool, LoadError> {
    let empty: bool = client
        .query_one(
            "SELECT NOT EXISTS (SELECT FROM business_vault.order_summary)
                AND NOT EXISTS (SELECT FROM business_vault.customer_360_current)
                AND NOT EXISTS (SELECT FROM business_vault.product_summary)",
            &[],
        )
        .await
        .doing("checking whether the business vault is empty")?
        .try_get(0)
        .doing("checking whether the business vault is empty")?;
    Ok(empty)
}

/// Empty the business vault (for `dvault rebuild`, in its reset transaction).
pub async fn truncate(tx: &Transaction<'_>) -> Result<(), LoadError> {
    let tables: Vec<&str> = TABLES.iter().chain(CACHES).copied().collect();
    tx.batch_execute(&format!("TRUNCATE {}", tables.join(", ")))
        .await
        .doing("emptying the business vault")?;
    Ok(())
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
            payload: crate::events::Payload::Json(payload.into()),
            damaged: None,
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
        // every link row of this batch is new
        let mut new_links = m.links.map(|_| KeySet::default());
        for (l, link_rows) in rows.links.with_ids() {
            new_links[l].extend(link_rows.iter().map(|r| r.hk));
        }
        let t = Touched::of(&m, &rows, &new_links);
        let mut orders = vec![key("O1"), key("O2")];
        orders.sort_unstable();
        assert_eq!(t.orders, orders);
        assert_eq!(
            t.order_lines,
            [hash_key_multi([Some("O1"), Some("P1"), Some("1")]).expect("key")]
        );
        assert_eq!(t.products, [key("P2")]);
        // new product hubs get a summary; a view moves its product and customer's pair
        let mut facts = vec![key("P1"), key("P2"), key("P3")];
        facts.sort_unstable();
        assert_eq!(t.product_facts, facts);
        assert_eq!(t.views, [(key("P3"), key("C3"))]);
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
        assert!(Touched::of(&m, &Rows::new(&m), &m.links.map(|_| KeySet::default())).is_empty());
        // a view the vault already had adds nothing
        let old = Touched::of(&m, &rows, &m.links.map(|_| KeySet::default()));
        assert!(old.views.is_empty());
    }
}
