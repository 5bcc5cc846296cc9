//! The simulated world: customers and products with their current state, and who
//! can be picked when. Everyone who will ever exist is made up front, in the order
//! they appear (their ids follow it); the simulation then changes their state.

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::calendar::{Calendar, DAY, HOUR, MINUTE, Ts};
use super::random::{Sampler, time_of_day, weighted_pick};
use super::reference::{
    BRANDS, CATEGORIES, COUNTRIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, email_address,
    phone_number, product_name, shop_price,
};

/// Share of customers who stop ordering 30 to 300 days after signing up.
const CHURN_SHARE: f64 = 0.25;
/// Share of heavy customers, and how much more often they order.
const HEAVY_SHARE: f64 = 0.03;
const HEAVY_WEIGHT: f64 = 12.0;
/// Product popularity: weight `1 / rank^ZIPF_EXPONENT`.
const ZIPF_EXPONENT: f64 = 0.8;
/// Share of the catalog listed in the first hours of the first day.
const INITIAL_CATALOG_SHARE: f64 = 0.5;
/// Signup day = `days × u^SIGNUP_SKEW`: more signups early on.
const SIGNUP_SKEW: f64 = 1.6;
/// Tries to find a customer who has not churned before settling for one who has.
const CHURN_RETRIES: usize = 8;

/// Field groups a customer update can change; late updates only win over older ones.
#[derive(Debug, Clone, Copy)]
pub(super) enum CustomerField {
    Name,
    Email,
    Phone,
    Address,
}

pub(super) struct Customer {
    pub(super) registered_at: Ts,
    /// After this the customer no longer orders (`Ts::MAX`: never churns).
    pub(super) churns_at: Ts,
    /// Relative order frequency.
    weight: f64,
    pub(super) first_name: &'static str,
    pub(super) last_name: &'static str,
    pub(super) email: String,
    pub(super) email_domain: usize,
    pub(super) phone: String,
    /// Index into [`COUNTRIES`].
    pub(super) country: usize,
    /// Index into the country's cities.
    pub(super) city: usize,
    /// Business time of the change currently shown, per [`CustomerField`].
    changed_at: [Ts; 4],
}

impl Customer {
    fn new(rng: &mut StdRng, index: usize, registered_at: Ts) -> Customer {
        let first_name = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last_name = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let email_domain = rng.random_range(0..EMAIL_DOMAINS.len());
        let country = weighted_pick(rng, COUNTRIES, |c| c.weight);
        let city = rng.random_range(0..COUNTRIES[country].cities.len());
        let churns_at = if rng.random_bool(CHURN_SHARE) {
            registered_at + rng.random_range(30 * DAY..=300 * DAY)
        } else {
            Ts::MAX
        };
        let weight = if rng.random_bool(HEAVY_SHARE) {
            HEAVY_WEIGHT
        } else {
            rng.random_range(0.4..1.6)
        };
        Customer {
            registered_at,
            churns_at,
            weight,
            first_name,
            last_name,
            email: email_address(first_name, last_name, index, email_domain),
            email_domain,
            phone: phone_number(rng, country),
            country,
            city,
            changed_at: [registered_at; 4],
        }
    }

    /// Whether a change of `field` made at `time` is newer than what is shown;
    /// if so it is recorded as shown.
    pub(super) fn accepts(&mut self, field: CustomerField, time: Ts) -> bool {
        let shown = &mut self.changed_at[field as usize];
        if time >= *shown {
            *shown = time;
            true
        } else {
            false
        }
    }

    pub(super) fn city_name(&self) -> &'static str {
        COUNTRIES[self.country].cities[self.city]
    }

    pub(super) fn country_name(&self) -> &'static str {
        COUNTRIES[self.country].name
    }
}

pub(super) struct Product {
    pub(super) listed_at: Ts,
    pub(super) name: String,
    /// Index into [`CATEGORIES`].
    pub(super) category: usize,
    /// Index into [`BRANDS`].
    pub(super) brand: usize,
    /// In cents.
    pub(super) price: i64,
}

impl Product {
    fn new(rng: &mut StdRng, listed_at: Ts) -> Product {
        let category = rng.random_range(0..CATEGORIES.len());
        let (low, high) = CATEGORIES[category].price;
        let units = rng.random_range(low..=high);
        Product {
            listed_at,
            name: product_name(rng, category),
            category,
            brand: rng.random_range(0..BRANDS.len()),
            price: shop_price(rng, units),
        }
    }

    /// A new price 20 % below to 25 % above the current one, never the same.
    pub(super) fn repriced(&self, rng: &mut StdRng) -> i64 {
        let factor = rng.random_range(0.8..1.25);
        let units = (self.price as f64 * factor / 100.0).round() as i64;
        let price = shop_price(rng, units);
        if price == self.price {
            price + 100
        } else {
            price
        }
    }
}

/// Customers and products with their current state, and who can be picked when.
pub(super) struct World {
    pub(super) calendar: Calendar,
    pub(super) customers: Vec<Customer>,
    pub(super) products: Vec<Product>,
    customer_picker: Sampler,
    product_picker: Sampler,
    /// No order before this: the first customer and the first product exist.
    pub(super) first_order_at: Ts,
}

impl World {
    pub(super) fn build(
        rng: &mut StdRng,
        calendar: Calendar,
        customers: usize,
        products: usize,
    ) -> World {
        let customers = build_customers(rng, &calendar, customers);
        let products = build_products(rng, &calendar, products);
        let customer_picker = Sampler::new(
            customers.iter().map(|c| c.registered_at).collect(),
            customers.iter().map(|c| c.weight),
        );
        let mut ranks: Vec<usize> = (1..=products.len()).collect();
        ranks.shuffle(rng);
        let product_picker = Sampler::new(
            products.iter().map(|p| p.listed_at).collect(),
            ranks
                .iter()
                .map(|&rank| 1.0 / (rank as f64).powf(ZIPF_EXPONENT)),
        );
        let first_customer = customers
            .first()
            .map_or(calendar.start, |c| c.registered_at);
        let first_product = products.first().map_or(calendar.start, |p| p.listed_at);
        World {
            calendar,
            first_order_at: first_customer.max(first_product) + MINUTE,
            customers,
            products,
            customer_picker,
            product_picker,
        }
    }

    /// A customer who has signed up before `at`, preferably one who has not churned.
    pub(super) fn pick_customer(&self, rng: &mut StdRng, at: Ts) -> Option<usize> {
        let mut last = None;
        for _ in 0..CHURN_RETRIES {
            let index = self.customer_picker.pick(rng, at)?;
            if self.customers[index].churns_at > at {
                return Some(index);
            }
            last = Some(index);
        }
        last
    }

    /// A product listed before `at`, popular ones more often.
    pub(super) fn pick_product(&self, rng: &mut StdRng, at: Ts) -> Option<usize> {
        self.product_picker.pick(rng, at)
    }

    /// Up to `count` different products listed before `at`.
    pub(super) fn pick_products(&self, rng: &mut StdRng, at: Ts, count: usize) -> Vec<usize> {
        let mut chosen = Vec::with_capacity(count);
        for _ in 0..count * 4 {
            if chosen.len() == count {
                break;
            }
            match self.pick_product(rng, at) {
                Some(p) if !chosen.contains(&p) => chosen.push(p),
                Some(_) => {}
                None => break,
            }
        }
        chosen
    }
}

/// Customers in signup order (their ids follow it). The first signs up in the
/// first hour; the rest spread over the period, more of them early on.
fn build_customers(rng: &mut StdRng, calendar: &Calendar, count: usize) -> Vec<Customer> {
    let days = f64::from(calendar.days);
    let mut signups: Vec<Ts> = (0..count)
        .map(|i| {
            if i == 0 {
                return calendar.start + rng.random_range(0..HOUR);
            }
            let day = (days * rng.random::<f64>().powf(SIGNUP_SKEW)) as usize;
            calendar.day_start(day.min(calendar.days as usize - 1)) + time_of_day(rng)
        })
        .collect();
    signups.sort_unstable();
    signups
        .into_iter()
        .enumerate()
        .map(|(index, at)| Customer::new(rng, index, at))
        .collect()
}

/// Products in listing order (their ids follow it): half the catalog in the first
/// hours, the rest over the period.
fn build_products(rng: &mut StdRng, calendar: &Calendar, count: usize) -> Vec<Product> {
    let mut listings: Vec<Ts> = (0..count)
        .map(|i| {
            if i == 0 {
                calendar.start + rng.random_range(0..HOUR)
            } else if rng.random_bool(INITIAL_CATALOG_SHARE) {
                calendar.start + rng.random_range(0..6 * HOUR)
            } else {
                calendar.start + rng.random_range(0..Ts::from(calendar.days) * DAY)
            }
        })
        .collect();
    listings.sort_unstable();
    listings
        .into_iter()
        .map(|at| Product::new(rng, at))
        .collect()
}
