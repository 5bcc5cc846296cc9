//! The categories and the top products at the end of every past day: what
//! `business_vault.sales_computed` gives per category and for the 100 products with the
//! most revenue (`mart.categories_as_of`, `mart.top_products_as_of`), from the order
//! lines the sweep holds.
//!
//! A product counts from when it is known: a details version in force, or a line in a
//! placed order; a product never listed, from its first view or the first order with a
//! line of it (any details version's time), or always when it has neither. Its category
//! and name are those of its details version in force (none before). Its units and
//! revenue are those of its lines in placed orders that count. A category's figures
//! change only on the days one of its products' do; the top 100 on most days with a
//! sale. Each version is kept once with the days it held, as the revenue series are
//! ([`super::revenue`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use tokio_postgres::Client;

use super::{Micros, each_row, get};
use crate::db::Failed;
use crate::hash::{Hash, KeyMap};

/// Every product of the hub (the sales count no other): its id, and for a product never
/// listed (no details version at all) when it became known otherwise: its first view or
/// the first time of an order with a line of it (`-infinity`: neither, always known).
pub const PRODUCTS: &str = "
SELECT h.hk_product, h.product_id,
       CASE WHEN NOT EXISTS (SELECT FROM raw_vault.sat_product_details x
                              WHERE x.hk_product = h.hk_product)
            THEN coalesce(least((SELECT min(v.viewed_at) FROM raw_vault.link_product_view v
                                  WHERE v.hk_product = h.hk_product),
                                (SELECT min(coalesce(o.ordered_at, o.applied_dts))
                                   FROM raw_vault.link_order_product l
                                   JOIN raw_vault.sat_order_details o ON o.hk_order = l.hk_order
                                  WHERE l.hk_product = h.hk_product)),
                          '-infinity')
       END
  FROM raw_vault.hub_product h";

/// Every details version of a product, as `business_vault.products_at` orders them.
pub const VERSIONS: &str = "
SELECT s.hk_product, s.applied_dts, s.event_seq, s.name, s.category
  FROM raw_vault.sat_product_details s";

/// A product's name and category of a details version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub name: Option<String>,
    pub category: Option<String>,
}

/// What one line adds to its product now: placed, and if it counts, units and amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSale {
    pub counted: bool,
    pub units: i64,
    pub amount: Decimal,
}

/// A product as the sweep has reached it.
struct Product {
    id: String,
    /// Never listed: known from this time on (µs); listed: `i64::MAX` (known by its
    /// details or a line).
    known_from: i64,
    details: Option<Details>,
    /// Its lines in placed orders, counted or not.
    placed_lines: u32,
    units: i64,
    revenue: Decimal,
    /// What it adds now: its category (an index of [`Catalog`]'s) and figures, if known.
    counts: Option<(usize, i64, Decimal)>,
    dirty: bool,
}

/// A category's figures: the columns of `business_vault.categories_kept`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Category {
    products: i64,
    units: i64,
    revenue: Decimal,
}

/// A category as the sweep has reached it: its figures, the version open since a day,
/// if any.
#[derive(Default)]
struct CategoryState {
    figures: Category,
    open: Option<(NaiveDate, Category)>,
    dirty: bool,
}

/// One row of the top products.
#[derive(Debug, Clone, PartialEq)]
struct Top {
    product: u32,
    units: i64,
    revenue: Decimal,
    details: Option<Details>,
}

/// Every product's and category's figures as the sweep moves, and the versions of the
/// categories and of the top 100.
#[derive(Default)]
pub struct Catalog {
    pub keys: KeyMap<u32>,
    products: Vec<Product>,
    /// The products never listed, by when they become known (µs), latest first.
    to_know: Vec<(i64, u32)>,
    dirty: Vec<u32>,
    category_names: Vec<Option<String>>,
    category_index: HashMap<Option<String>, usize>,
    categories: Vec<CategoryState>,
    dirty_categories: Vec<usize>,
    /// The products with revenue, best first (ties: product id).
    ranked: BTreeSet<(Reverse<Decimal>, String, u32)>,
    top: Option<(NaiveDate, Vec<Top>)>,
    held_categories: Vec<(usize, NaiveDate, NaiveDate, Category)>,
    held_top: Vec<(NaiveDate, NaiveDate, Vec<Top>)>,
}

/// How many products the top list holds (`sales_computed`'s).
const TOP: usize = 100;

impl Catalog {
    /// Read every product of the hub, or a time the sweep cannot hold.
    pub async fn read(client: &Client) -> Result<Result<Catalog, String>, Failed> {
        let mut catalog = Catalog::default();
        let read = each_row(client, PRODUCTS, "reading the products", |row| {
            let key: &[u8] = row.get(0);
            let Ok(key) = Hash::try_from(key) else {
                return Ok(());
            };
            let id: String = row.get(1);
            let known_from = get::<Option<Micros>>(row, 2)?.map_or(i64::MAX, |m| m.0);
            let at = catalog.products.len() as u32;
            catalog.keys.insert(key, at);
            if known_from != i64::MAX {
                catalog.to_know.push((known_from, at));
            }
            catalog.products.push(Product {
                id,
                known_from,
                details: None,
                placed_lines: 0,
                units: 0,
                revenue: Decimal::ZERO,
                counts: None,
                dirty: false,
            });
            Ok(())
        })
        .await?;
        catalog.to_know.sort_unstable_by_key(|&(at, _)| Reverse(at));
        Ok(read.map(|()| catalog))
    }

    /// A details version of `product` came in force.
    pub fn details(&mut self, product: u32, details: Details) {
        self.mark(product);
        if let Some(p) = self.products.get_mut(product as usize) {
            p.details = Some(details);
        }
    }

    /// A line of `product` went from adding `was` to adding `now` (none: not placed).
    pub fn line(&mut self, product: u32, was: Option<LineSale>, now: Option<LineSale>) {
        if was == now {
            return;
        }
        self.mark(product);
        let Some(p) = self.products.get_mut(product as usize) else {
            return;
        };
        for (s, sign) in [(was, -1i64), (now, 1)] {
            let Some(s) = s else { continue };
            p.placed_lines = p.placed_lines.wrapping_add_signed(sign as i32);
            if s.counted {
                p.units += sign * s.units;
                p.revenue += Decimal::from(sign) * s.amount;
            }
        }
    }

    fn mark(&mut self, product: u32) {
        if let Some(p) = self.products.get_mut(product as usize)
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(product);
        }
    }

    fn category(&mut self, name: &Option<String>) -> usize {
        if let Some(&at) = self.category_index.get(name) {
            return at;
        }
        let at = self.category_names.len();
        self.category_names.push(name.clone());
        self.category_index.insert(name.clone(), at);
        self.categories.push(CategoryState::default());
        at
    }

    /// The end of `day` (its last µs `end`): the products known by then count, the
    /// categories and the top 100 that changed close their open version and open one.
    pub fn day_end(&mut self, day: NaiveDate, end: i64) {
        while let Some(&(at, product)) = self.to_know.last() {
            if at > end {
                break;
            }
            self.to_know.pop();
            self.mark(product);
        }
        let changed = !self.dirty.is_empty();
        for product in std::mem::take(&mut self.dirty) {
            let p = &mut self.products[product as usize];
            p.dirty = false;
            let known = p.details.is_some() || p.placed_lines > 0 || p.known_from <= end;
            let category = p.details.as_ref().and_then(|d| d.category.clone());
            let (units, revenue) = (p.units, p.revenue);
            let was = p.counts.take();
            if let Some((_, _, r)) = was
                && r > Decimal::ZERO
            {
                self.ranked.remove(&(Reverse(r), p.id.clone(), product));
            }
            if known && revenue > Decimal::ZERO {
                self.ranked
                    .insert((Reverse(revenue), p.id.clone(), product));
            }
            let now = known.then(|| (self.category(&category), units, revenue));
            self.products[product as usize].counts = now;
            for (counts, sign) in [(was, -1i64), (now, 1)] {
                let Some((c, units, revenue)) = counts else {
                    continue;
                };
                let state = &mut self.categories[c];
                state.figures.products += sign;
                state.figures.units += sign * units;
                state.figures.revenue += Decimal::from(sign) * revenue;
                if !state.dirty {
                    state.dirty = true;
                    self.dirty_categories.push(c);
                }
            }
        }
        for c in std::mem::take(&mut self.dirty_categories) {
            let state = &mut self.categories[c];
            state.dirty = false;
            let now = (state.figures.products > 0).then(|| state.figures.clone());
            if state.open.as_ref().map(|(_, f)| f) == now.as_ref() {
                continue;
            }
            if let Some((from, f)) = state.open.take() {
                self.held_categories.push((c, from, day, f));
            }
            state.open = now.map(|f| (day, f));
        }
        if !changed {
            return;
        }
        let top: Vec<Top> = self
            .ranked
            .iter()
            .take(TOP)
            .map(|&(Reverse(revenue), _, product)| {
                let p = &self.products[product as usize];
                Top {
                    product,
                    units: p.units,
                    revenue,
                    details: p.details.clone(),
                }
            })
            .collect();
        if self.top.as_ref().map(|(_, t)| t) == Some(&top) {
            return;
        }
        if let Some((from, was)) = self.top.take() {
            self.held_top.push((from, day, was));
        }
        self.top = (!top.is_empty()).then_some((day, top));
    }

    /// Store every version, the open ones held to the end of `last`, in place of the
    /// versions kept before. (In the fill's transaction, which stores nothing unless the
    /// checkpoint is where it was when the history was read.)
    pub async fn store(mut self, client: &Client, last: NaiveDate) -> Result<(), Failed> {
        let to = last + Days::new(1);
        for (c, state) in self.categories.iter_mut().enumerate() {
            if let Some((from, f)) = state.open.take() {
                self.held_categories.push((c, from, to, f));
            }
        }
        if let Some((from, top)) = self.top.take() {
            self.held_top.push((from, to, top));
        }
        let h = &self.held_categories;
        let names: Vec<Option<&str>> = h
            .iter()
            .map(|v| self.category_names[v.0].as_deref())
            .collect();
        let froms: Vec<NaiveDate> = h.iter().map(|v| v.1).collect();
        let tos: Vec<NaiveDate> = h.iter().map(|v| v.2).collect();
        let products: Vec<i64> = h.iter().map(|v| v.3.products).collect();
        let units: Vec<i64> = h.iter().map(|v| v.3.units).collect();
        let revenue: Vec<Decimal> = h.iter().map(|v| v.3.revenue).collect();
        super::replace(
            client,
            "business_vault.categories_kept",
            STORE_CATEGORIES,
            &[&names, &froms, &tos, &products, &units, &revenue],
            "replacing the past days' categories",
        )
        .await?;
        let rows = self.held_top.iter().flat_map(|(from, to, top)| {
            top.iter()
                .enumerate()
                .map(move |(rank, t)| (*from, *to, rank as i32 + 1, t))
        });
        let (mut froms, mut tos, mut ranks, mut ids, mut names, mut categories) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut units, mut revenue) = (vec![], vec![]);
        for (from, to, rank, t) in rows {
            froms.push(from);
            tos.push(to);
            ranks.push(rank);
            ids.push(self.products[t.product as usize].id.as_str());
            names.push(t.details.as_ref().and_then(|d| d.name.as_deref()));
            categories.push(t.details.as_ref().and_then(|d| d.category.as_deref()));
            units.push(t.units);
            revenue.push(t.revenue);
        }
        super::replace(
            client,
            "business_vault.top_products_kept",
            STORE_TOP,
            &[
                &froms,
                &tos,
                &ranks,
                &ids,
                &names,
                &categories,
                &units,
                &revenue,
            ],
            "replacing the past days' top products",
        )
        .await?;
        Ok(())
    }
}

/// Store the categories' versions.
const STORE_CATEGORIES: &str = "
INSERT INTO business_vault.categories_kept (category, held, products, units_sold, revenue)
SELECT v.category, daterange(v.from_day, v.to_day), v.products, v.units, round(v.revenue, 2)
  FROM unnest($1::text[], $2::date[], $3::date[], $4::bigint[], $5::bigint[], $6::numeric[])
       AS v(category, from_day, to_day, products, units, revenue)
ON CONFLICT DO NOTHING";

/// Store the top products' versions: a row a version, its lists in rank order.
const STORE_TOP: &str = "
INSERT INTO business_vault.top_products_kept
       (held, product_id, name, category, units_sold, revenue)
SELECT daterange(v.from_day, min(v.to_day)), array_agg(v.product_id ORDER BY v.rank),
       array_agg(v.name ORDER BY v.rank), array_agg(v.category ORDER BY v.rank),
       array_agg(v.units ORDER BY v.rank), array_agg(round(v.revenue, 2) ORDER BY v.rank)
  FROM unnest($1::date[], $2::date[], $3::integer[], $4::text[], $5::text[], $6::text[],
              $7::bigint[], $8::numeric[])
       AS v(from_day, to_day, rank, product_id, name, category, units, revenue)
 GROUP BY v.from_day
ON CONFLICT DO NOTHING";

/// Read every details version into the sweep's versions, through `push` (product, at,
/// seq, details).
pub async fn read_versions(
    client: &Client,
    keys: &KeyMap<u32>,
    mut push: impl FnMut(u32, i64, i64, Details),
) -> Result<Result<(), String>, Failed> {
    each_row(client, VERSIONS, "reading the products' details", |row| {
        let key: &[u8] = row.get(0);
        let Some(&product) = Hash::try_from(key).ok().and_then(|k| keys.get(&k)) else {
            return Ok(());
        };
        let at = get::<Micros>(row, 1)?.0;
        let seq: Option<i64> = row.get(2);
        push(
            product,
            at,
            seq.unwrap_or(i64::MIN),
            Details {
                name: row.get(3),
                category: row.get(4),
            },
        );
        Ok(())
    })
    .await
}
