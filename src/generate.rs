//! `dvault gen`: deterministic synthetic Customer 360 data.
//!
//! [`generate`] simulates a small web shop over `days` days and writes what its
//! systems would have emitted:
//!
//! - `events.ndjson`: CloudEvents 1.0, one per line, in business-time order except
//!   for a few late arrivals. Sources: `crm` (customers), `catalog` (products),
//!   `shop` (orders) and `web` (clickstream).
//! - `customers.csv`, `products.csv`, `transactions.csv`: flat snapshots of the same
//!   world (current customer and product state, one row per order line). They are
//!   an alternative input to the NDJSON, not more history.
//! - `manifest.json`: per file, how many lines are good and how many are broken on
//!   purpose (`dirty`), and at which stage dvault must reject them.
//!
//! The output depends only on [`GenOptions`]. One seeded RNG drives the simulation
//! and a second one the broken lines, so the good lines are the same at every
//! `dirty` level.
//!
//! How the simulation runs: customers and products get their registration and
//! listing times up front (their ids follow that order), and their later updates
//! are bucketed by day. Each day the orders and browsing sessions are planned, then
//! everything due that day leaves a priority queue keyed by emission time; emitting
//! an order schedules its status changes. A late event keeps its business `time`
//! but is queued a few days later.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Timelike};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Same seed, same options: byte-identical files.
    pub seed: u64,
    /// How many customers sign up over the period.
    pub customers: usize,
    /// How many products are listed over the period.
    pub products: usize,
    /// How many orders are placed (exactly); about 2.5 lines each.
    pub orders: usize,
    /// Length of the history in days, ending at `end` (inclusive).
    pub days: u32,
    /// Last business day of the data set (deterministic output needs a fixed value; the CLI passes today by default).
    pub end: chrono::NaiveDate,
    /// Share (0.0..=1.0) of extra broken lines/rows to inject.
    pub dirty: f64,
    /// The directory to write into (created if missing).
    pub out: std::path::PathBuf,
}

/// What [`generate`] wrote. `manifest.json` holds the same, with each path relative
/// to the manifest's directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenSummary {
    pub files: Vec<GenFile>,
}

/// One written file and what its lines are.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenFile {
    pub path: std::path::PathBuf,
    /// Lines/rows that are valid events.
    pub good: u64,
    /// Broken lines/rows the ingest step must reject (bad JSON, not a CloudEvent, invalid UTF-8, ragged CSV row, bad CSV time field, ...).
    pub bad_at_ingest: u64,
    /// Lines that ingest fine (valid CloudEvent) but whose payload the loader must reject (value that does not fit its type, missing business key).
    pub bad_at_load: u64,
}

impl GenFile {
    fn named(name: &str) -> GenFile {
        GenFile {
            path: PathBuf::from(name),
            good: 0,
            bad_at_ingest: 0,
            bad_at_load: 0,
        }
    }
}

const EVENTS_FILE: &str = "events.ndjson";
const CUSTOMERS_FILE: &str = "customers.csv";
const PRODUCTS_FILE: &str = "products.csv";
const TRANSACTIONS_FILE: &str = "transactions.csv";
const MANIFEST_FILE: &str = "manifest.json";

/// Generate the data set into `opts.out` (created if missing) and describe it.
///
/// About `dirty × good` broken lines are added to `events.ndjson` and
/// `dirty × rows` broken rows to `customers.csv` (both rounded down); the other
/// files are always clean.
pub fn generate(opts: &GenOptions) -> io::Result<GenSummary> {
    validate(opts)?;
    let calendar = Calendar::new(opts.end, opts.days)?;
    fs::create_dir_all(&opts.out)?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let world = World::build(&mut rng, calendar, opts.customers, opts.products);
    let Outcome {
        world,
        events,
        transactions,
    } = Simulation::new(rng, world, opts)?.run(opts.orders)?;
    let customers = write_customers(&opts.out.join(CUSTOMERS_FILE), &world.customers, opts.dirty)?;
    let products = write_products(&opts.out.join(PRODUCTS_FILE), &world.products)?;
    let files = vec![events, customers, products, transactions];
    write_manifest(&opts.out.join(MANIFEST_FILE), &files)?;
    Ok(GenSummary {
        files: files
            .into_iter()
            .map(|f| GenFile {
                path: opts.out.join(&f.path),
                ..f
            })
            .collect(),
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn validate(opts: &GenOptions) -> io::Result<()> {
    if opts.days == 0 {
        return Err(invalid("days must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&opts.dirty) {
        return Err(invalid(format!(
            "dirty must be between 0.0 and 1.0, got {}",
            opts.dirty
        )));
    }
    if opts.orders > 0 && (opts.customers == 0 || opts.products == 0) {
        return Err(invalid(
            "orders need at least one customer and one product".into(),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ reference data

struct Country {
    name: &'static str,
    dial_code: &'static str,
    /// Relative share of customers living there.
    weight: u32,
    cities: &'static [&'static str],
}

const fn country(
    name: &'static str,
    dial_code: &'static str,
    weight: u32,
    cities: &'static [&'static str],
) -> Country {
    Country {
        name,
        dial_code,
        weight,
        cities,
    }
}

#[rustfmt::skip]
const COUNTRIES: &[Country] = &[
    country("Germany", "+49", 18, &["Berlin", "Hamburg", "München", "Köln"]),
    country("France", "+33", 12, &["Paris", "Lyon", "Marseille", "Toulouse"]),
    country("Spain", "+34", 10, &["Madrid", "Barcelona", "Sevilla", "Valencia"]),
    country("Italy", "+39", 9, &["Roma", "Milano", "Napoli", "Torino"]),
    country("Poland", "+48", 8, &["Warszawa", "Kraków", "Łódź", "Gdańsk"]),
    country("Netherlands", "+31", 7, &["Amsterdam", "Rotterdam", "Utrecht"]),
    country("Sweden", "+46", 5, &["Stockholm", "Göteborg", "Malmö"]),
    country("United Kingdom", "+44", 12, &["London", "Manchester", "Edinburgh"]),
    country("United States", "+1", 14, &["New York", "Chicago", "San Francisco", "Austin"]),
    country("Brazil", "+55", 5, &["São Paulo", "Rio de Janeiro", "Curitiba"]),
];

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
    "Katarzyna", "Liam", "Maria", "Noah", "Olivia", "Paul", "Sofia", "Tom", "Lena", "Marco",
    "Sara", "Lucas", "Julia", "Erik", "José", "Zoë", "Łukasz", "Søren", "Chloé", "Björn",
];

#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Smith", "Schmidt", "Martin", "Rossi", "Nowak", "de Jong", "Johansson", "Brown", "Silva",
    "García", "Müller", "Dubois", "Bianchi", "Kowalski", "Jansen", "Andersson", "Taylor",
    "Santos", "Fernández", "Weber", "Lefèvre", "Wiśniewski", "O'Brien", "Meyer", "Costa",
    "Larsen", "Moreau", "Romano", "Becker", "Novak",
];

const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "mail.example",
    "inbox.example",
    "example.org",
];

struct Category {
    name: &'static str,
    nouns: &'static [&'static str],
    /// Price range in whole currency units.
    price: (i64, i64),
}

const fn category(
    name: &'static str,
    nouns: &'static [&'static str],
    price: (i64, i64),
) -> Category {
    Category { name, nouns, price }
}

#[rustfmt::skip]
const CATEGORIES: &[Category] = &[
    category("Electronics", &["Headphones", "Speaker", "Charger", "Keyboard", "Monitor", "Webcam"], (15, 400)),
    category("Home", &["Lamp", "Cushion", "Rug", "Curtain", "Mirror", "Vase"], (8, 150)),
    category("Kitchen", &["Blender", "Kettle", "Pan", "Knife Set", "Toaster", "Coffee Grinder"], (10, 200)),
    category("Books", &["Novel", "Cookbook", "Travel Guide", "Biography", "Atlas"], (6, 45)),
    category("Toys", &["Puzzle", "Board Game", "Building Set", "Plush Bear", "Kite"], (5, 80)),
    category("Sports", &["Yoga Mat", "Running Shoes", "Dumbbell Set", "Water Bottle", "Tennis Racket"], (8, 180)),
    category("Beauty", &["Face Cream", "Shampoo", "Perfume", "Lip Balm"], (4, 90)),
    category("Garden", &["Hose", "Planter", "Pruning Shears", "Bird Feeder"], (6, 120)),
];

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Classic", "Compact", "Deluxe", "Eco", "Smart", "Premium", "Nordic", "Urban", "Vintage",
    "Essential", "Ultra", "Pro",
];

#[rustfmt::skip]
const BRANDS: &[&str] = &[
    "Acme", "Nordlys", "Brühl & Söhne", "Casa Bella", "Zenith", "Sol y Mar", "Polar", "Vértice",
    "Oakridge", "Lumière", "Trekka", "Fjällgård",
];

/// Relative activity per hour of day (UTC): quiet nights, an evening peak.
const HOUR_WEIGHTS: [u32; 24] = [
    2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 11, 12, 11, 10, 10, 11, 12, 14, 16, 17, 15, 10, 5,
];
/// Lines per order, 1..=6: mean about 2.5.
const LINE_COUNT_WEIGHTS: [u32; 6] = [32, 26, 19, 12, 7, 4];
/// Quantity per line, 1..=5.
const QUANTITY_WEIGHTS: [u32; 5] = [60, 22, 10, 5, 3];
/// Discount percentages a discounted line gets.
const DISCOUNT_PERCENTS: [i64; 4] = [5, 10, 15, 20];

// ------------------------------------------------------------------ simulation knobs

const DAY: Ts = 86_400;
const HOUR: Ts = 3_600;
const MINUTE: Ts = 60;
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
/// Average changes per customer (moves, new email or phone) and per product (mostly
/// price changes) over a year of their life.
const CUSTOMER_CHANGES_PER_YEAR: f64 = 1.2;
const PRODUCT_CHANGES_PER_YEAR: f64 = 2.0;
/// Late arrivals: share of status changes and customer updates queued 1 to 4 days
/// after their business time (about 1 % of all events).
const LATE_STATUS_SHARE: f64 = 0.02;
const LATE_CUSTOMER_UPDATE_SHARE: f64 = 0.05;
/// Before an online order: share of bought products viewed twice, and chance of a
/// view of a product that is not bought. With the browse-only sessions below this
/// makes about 3 views per order.
const REPEAT_VIEW_SHARE: f64 = 0.1;
const EXTRA_VIEW_SHARE: f64 = 0.3;
/// Browse-only sessions (1 to 3 views) per order.
const BROWSE_SESSIONS_PER_ORDER: f64 = 0.15;
/// Share of order lines with a discount.
const DISCOUNTED_LINE_SHARE: f64 = 0.1;
/// Tries to find a customer who has not churned before settling for one who has.
const CHURN_RETRIES: usize = 8;

// ------------------------------------------------------------------ time and ids

/// Seconds since the Unix epoch, UTC.
type Ts = i64;

/// The simulated period: `days` whole UTC days.
#[derive(Debug, Clone, Copy)]
struct Calendar {
    first_day: NaiveDate,
    start: Ts,
    days: u32,
}

impl Calendar {
    fn new(end: NaiveDate, days: u32) -> io::Result<Calendar> {
        let first_day = end
            .checked_sub_days(Days::new(u64::from(days) - 1))
            .ok_or_else(|| invalid(format!("{days} days before {end} is out of range")))?;
        Ok(Calendar {
            first_day,
            start: first_day.and_time(NaiveTime::MIN).and_utc().timestamp(),
            days,
        })
    }

    fn day_start(&self, day: usize) -> Ts {
        self.start + day as Ts * DAY
    }

    /// The first second after the period.
    fn horizon(&self) -> Ts {
        self.day_start(self.days as usize)
    }

    /// The day a moment falls on, clamped to the period.
    fn day_of(&self, ts: Ts) -> usize {
        ((ts - self.start).div_euclid(DAY)).clamp(0, Ts::from(self.days) - 1) as usize
    }

    fn dates(&self) -> impl Iterator<Item = NaiveDate> {
        self.first_day.iter_days().take(self.days as usize)
    }
}

/// `2024-03-01`, `2024-03-01T10:15:00Z` or `2024-03-01 10:15:00`.
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

/// A moment as RFC 3339 UTC: `2024-03-01T10:15:00Z`.
struct Rfc3339(Ts);
/// A moment as `2024-03-01 10:15:00` (the CSV style).
struct SqlTime(Ts);
/// The date of a moment: `2024-03-01`.
struct IsoDate(Ts);

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
struct Cents(i64);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// `C000001`, from a customer's 0-based index.
struct CustomerId(usize);
/// `P00001`, from a product's 0-based index.
struct ProductId(usize);
/// `O0000001`, from a 1-based counter.
struct OrderId(u64);
/// `S00000001`, from a 1-based counter.
struct SessionId(u64);
/// `T00000001`, from a 1-based counter.
struct TransactionId(u64);

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

// ------------------------------------------------------------------ random helpers

/// An index into `items`, drawn with the relative weights `weight` gives them.
fn weighted_pick<T>(rng: &mut StdRng, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    let mut x = rng.random_range(0..total);
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if x < w {
            return i;
        }
        x -= w;
    }
    items.len() - 1
}

/// An index drawn with the given relative weights.
fn weighted_index(rng: &mut StdRng, weights: &[u32]) -> usize {
    weighted_pick(rng, weights, |&w| w)
}

/// A time of day in seconds, following [`HOUR_WEIGHTS`].
fn time_of_day(rng: &mut StdRng) -> Ts {
    weighted_index(rng, &HOUR_WEIGHTS) as Ts * HOUR + rng.random_range(0..HOUR)
}

/// How many times something happens when it happens `mean` times on average:
/// geometric, so mostly 0 or 1 and now and then several.
fn geometric_count(rng: &mut StdRng, mean: f64) -> usize {
    let p = mean / (1.0 + mean);
    let mut n = 0;
    while n < 12 && rng.random_bool(p) {
        n += 1;
    }
    n
}

/// Random moments of the changes to something that exists from `from` on.
fn change_times(rng: &mut StdRng, from: Ts, horizon: Ts, per_year: f64) -> Vec<Ts> {
    if from + 1 >= horizon {
        return Vec::new();
    }
    let mean = per_year * (horizon - from) as f64 / (365.0 * DAY as f64);
    (0..geometric_count(rng, mean))
        .map(|_| rng.random_range(from + 1..horizon))
        .collect()
}

/// When an event that happened at `time` reaches the file: usually right away,
/// with probability `share` one to four days later.
fn arrival(rng: &mut StdRng, time: Ts, share: f64) -> Ts {
    if rng.random_bool(share) {
        time + rng.random_range(DAY..=4 * DAY)
    } else {
        time
    }
}

/// A plausible shop price in cents: mostly `x.99`, some `x.49` and round ones.
fn shop_price(rng: &mut StdRng, units: i64) -> i64 {
    let units = units.max(1);
    match rng.random_range(0..10) {
        0..7 => units * 100 - 1,
        7..9 => units * 100 - 51,
        _ => units * 100,
    }
    .max(99)
}

/// Lower-case ASCII for an email address: accents dropped, `ł` → `l`, `ß` → `ss`,
/// anything but letters and digits removed.
fn ascii_fold(name: &str, out: &mut String) {
    for c in name.chars().flat_map(char::to_lowercase) {
        let folded = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ł' => 'l',
            'ñ' | 'ń' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ś' => 's',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ź' | 'ż' => 'z',
            'ß' => {
                out.push_str("ss");
                continue;
            }
            c if c.is_ascii_alphanumeric() => c,
            _ => continue,
        };
        out.push(folded);
    }
}

fn email_address(first: &str, last: &str, customer: usize, domain: usize) -> String {
    let mut email = String::with_capacity(40);
    ascii_fold(first, &mut email);
    email.push('.');
    ascii_fold(last, &mut email);
    email.push_str(&format!(".{}@{}", customer + 1, EMAIL_DOMAINS[domain]));
    email
}

fn phone_number(rng: &mut StdRng, country: usize) -> String {
    format!(
        "{} {} {:07}",
        COUNTRIES[country].dial_code,
        rng.random_range(100..1000),
        rng.random_range(0..10_000_000)
    )
}

/// A different index in `0..len` (the same one if there is no other).
fn other_index(rng: &mut StdRng, current: usize, len: usize) -> usize {
    if len < 2 {
        return current;
    }
    (current + rng.random_range(1..len)) % len
}

// ------------------------------------------------------------------ the world

/// Field groups a customer update can change; late updates only win over older ones.
#[derive(Debug, Clone, Copy)]
enum CustomerField {
    Name,
    Email,
    Phone,
    Address,
}

struct Customer {
    registered_at: Ts,
    /// After this the customer no longer orders (`Ts::MAX`: never churns).
    churns_at: Ts,
    /// Relative order frequency.
    weight: f64,
    first_name: &'static str,
    last_name: &'static str,
    email: String,
    email_domain: usize,
    phone: String,
    country: usize,
    city: usize,
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
    fn accepts(&mut self, field: CustomerField, time: Ts) -> bool {
        let shown = &mut self.changed_at[field as usize];
        if time >= *shown {
            *shown = time;
            true
        } else {
            false
        }
    }

    fn city_name(&self) -> &'static str {
        COUNTRIES[self.country].cities[self.city]
    }

    fn country_name(&self) -> &'static str {
        COUNTRIES[self.country].name
    }
}

struct Product {
    listed_at: Ts,
    name: String,
    category: usize,
    brand: usize,
    price: i64,
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
    fn repriced(&self, rng: &mut StdRng) -> i64 {
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

fn product_name(rng: &mut StdRng, category: usize) -> String {
    let nouns = CATEGORIES[category].nouns;
    format!(
        "{} {} {}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        nouns[rng.random_range(0..nouns.len())],
        rng.random_range(100..1000)
    )
}

/// Weighted choice among items that exist at a given moment. The items are sorted
/// by the moment they start to exist, so those that exist form a prefix.
struct Sampler {
    starts: Vec<Ts>,
    /// Running sums of the weights.
    cumulative: Vec<f64>,
}

impl Sampler {
    fn new(starts: Vec<Ts>, weights: impl IntoIterator<Item = f64>) -> Sampler {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Sampler { starts, cumulative }
    }

    /// An item that started strictly before `at`, if any.
    fn pick(&self, rng: &mut StdRng, at: Ts) -> Option<usize> {
        let available = self.starts.partition_point(|&s| s < at);
        let total = *self.cumulative[..available].last()?;
        let x = rng.random::<f64>() * total;
        let index = self.cumulative[..available].partition_point(|&c| c <= x);
        Some(index.min(available - 1))
    }
}

/// Customers and products with their current state, and who can be picked when.
struct World {
    calendar: Calendar,
    customers: Vec<Customer>,
    products: Vec<Product>,
    customer_picker: Sampler,
    product_picker: Sampler,
    /// No order before this: the first customer and the first product exist.
    first_order_at: Ts,
}

impl World {
    fn build(rng: &mut StdRng, calendar: Calendar, customers: usize, products: usize) -> World {
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
fn daily_order_counts(world: &World, total: usize) -> Vec<usize> {
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

// ------------------------------------------------------------------ the schedule

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Web,
    Mobile,
    Store,
}

impl Channel {
    fn random(rng: &mut StdRng) -> Channel {
        [Channel::Web, Channel::Mobile, Channel::Store][weighted_index(rng, &[55, 35, 10])]
    }

    fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Store => "store",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
            Status::Returned => "returned",
        }
    }
}

/// What happens to an order after it is placed: about 5 % are cancelled (half
/// before, half after payment), about 3 % returned after delivery.
fn status_chain(rng: &mut StdRng, placed: Ts) -> Vec<(Ts, Status)> {
    let fate = rng.random::<f64>();
    let paid = placed + rng.random_range(MINUTE..=2 * HOUR);
    if fate < 0.025 {
        return vec![(
            placed + rng.random_range(10 * MINUTE..=12 * HOUR),
            Status::Cancelled,
        )];
    }
    if fate < 0.05 {
        let cancelled = paid + rng.random_range(HOUR..=DAY);
        return vec![(paid, Status::Paid), (cancelled, Status::Cancelled)];
    }
    let shipped = paid + rng.random_range(6 * HOUR..=2 * DAY);
    let delivered = shipped + rng.random_range(DAY..=5 * DAY);
    let mut chain = vec![
        (paid, Status::Paid),
        (shipped, Status::Shipped),
        (delivered, Status::Delivered),
    ];
    if fate < 0.08 {
        chain.push((
            delivered + rng.random_range(2 * DAY..=21 * DAY),
            Status::Returned,
        ));
    }
    chain
}

struct PlannedLine {
    product: usize,
    quantity: i64,
    discount_percent: i64,
}

struct PlannedOrder {
    customer: usize,
    channel: Channel,
    lines: Vec<PlannedLine>,
}

/// An event waiting to be written. Prices and changed values are decided when it
/// is written, so they follow the state at that moment.
enum Planned {
    Register(usize),
    List(usize),
    CustomerUpdate(usize),
    ProductUpdate(usize),
    Order(Box<PlannedOrder>),
    Status {
        order: u64,
        status: Status,
    },
    View {
        session: u64,
        customer: usize,
        product: usize,
    },
}

struct Pending {
    /// Business time: the event's `time`.
    time: Ts,
    /// When it reaches the file; later than `time` for late arrivals.
    emit_at: Ts,
    event: Planned,
}

impl Pending {
    fn on_time(time: Ts, event: Planned) -> Pending {
        Pending {
            time,
            emit_at: time,
            event,
        }
    }
}

/// A pending event in the queue; ties are broken by insertion order.
struct Queued {
    key: (Ts, u64),
    pending: Pending,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed, so the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// Pending events in emission order.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    pushed: u64,
}

impl Queue {
    fn push(&mut self, pending: Pending) {
        self.pushed += 1;
        self.heap.push(Queued {
            key: (pending.emit_at, self.pushed),
            pending,
        });
    }

    /// The next event due before `until`.
    fn pop_before(&mut self, until: Ts) -> Option<Pending> {
        if self.heap.peek()?.key.0 >= until {
            return None;
        }
        self.heap.pop().map(|q| q.pending)
    }
}

// ------------------------------------------------------------------ JSON writing

/// Append `s` as a JSON string.
fn push_json_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Writes one JSON object's members, in call order, into a byte buffer.
struct JsonObject<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    fn open(buf: &'a mut Vec<u8>) -> JsonObject<'a> {
        buf.push(b'{');
        JsonObject { buf, empty: true }
    }

    /// Writes `"key":` and hands back the buffer for the value.
    fn member(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        push_json_string(self.buf, key);
        self.buf.push(b':');
        self.buf
    }

    /// A string member, escaped.
    fn str(&mut self, key: &str, value: &str) {
        push_json_string(self.member(key), value);
    }

    /// A string member whose value is generated ASCII (an id, a timestamp) that
    /// needs no escaping.
    fn token(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.member(key), "\"{value}\"")
    }

    /// A number member.
    fn number(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.member(key), "{value}")
    }

    fn close(self) {
        self.buf.push(b'}');
    }
}

// ------------------------------------------------------------------ broken lines

/// The ways a line of `events.ndjson` is broken on purpose. Six are rejected by
/// ingest; four are valid CloudEvents the loader must reject ([`Broken::ingests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// An object cut off in the middle.
    TruncatedJson,
    /// An order line with `"quantity":"three"`.
    QuantityNotNumber,
    /// No `specversion`.
    NoSpecversion,
    /// A `customer_registered` with `"signup_date":"2024-13-45"`.
    BadSignupDate,
    /// `"specversion":"0.3"`.
    OldSpecversion,
    /// A `product_listed` with `"price":"cheap"`.
    PriceNotNumber,
    /// No `type`.
    MissingType,
    /// A `customer_updated` without `customer_id`.
    MissingCustomerId,
    /// `data` is a string.
    DataNotObject,
    /// Bytes 0xFF 0xFE inside a string.
    InvalidUtf8,
}

impl Broken {
    /// The injection order: both stages early on, so few broken lines cover both.
    const CYCLE: [Broken; 10] = [
        Broken::TruncatedJson,
        Broken::QuantityNotNumber,
        Broken::NoSpecversion,
        Broken::BadSignupDate,
        Broken::OldSpecversion,
        Broken::PriceNotNumber,
        Broken::MissingType,
        Broken::MissingCustomerId,
        Broken::DataNotObject,
        Broken::InvalidUtf8,
    ];

    /// True when the line is a valid CloudEvent (so only the loader rejects it).
    fn ingests(self) -> bool {
        matches!(
            self,
            Broken::QuantityNotNumber
                | Broken::BadSignupDate
                | Broken::PriceNotNumber
                | Broken::MissingCustomerId
        )
    }
}

/// Whether another broken line is due after `good` good ones, aiming at
/// `floor(good × share)` in all, evenly spread.
fn broken_due(broken: u64, good: u64, share: f64) -> bool {
    broken < (good as f64 * share).floor() as u64
}

/// What a broken line may refer to. Broken events about new things use fresh keys
/// (after the last generated one), so a loader that wrongly accepts part of one
/// shows up as an extra hub row.
struct BrokenRefs {
    /// Customers and products that exist when the line is written.
    customers: usize,
    products: usize,
    next_customer: usize,
    next_product: usize,
    next_order: u64,
}

// ------------------------------------------------------------------ outputs

/// `events.ndjson` while it is written.
struct EventsOut {
    file: BufWriter<File>,
    /// The line being built (reused).
    line: Vec<u8>,
    counts: GenFile,
    /// Business time of the last good event, also used for broken lines.
    last_time: Ts,
    dirty: f64,
    /// Drives broken lines only, so they do not disturb the good ones.
    rng: StdRng,
    refs: BrokenRefs,
}

impl EventsOut {
    fn create(path: &Path, opts: &GenOptions) -> io::Result<EventsOut> {
        Ok(EventsOut {
            file: BufWriter::with_capacity(1 << 20, File::create(path)?),
            line: Vec::with_capacity(1024),
            counts: GenFile::named(EVENTS_FILE),
            last_time: 0,
            dirty: opts.dirty,
            rng: StdRng::seed_from_u64(opts.seed ^ 0x6272_6f6b_656e_0001),
            refs: BrokenRefs {
                customers: 0,
                products: 0,
                next_customer: opts.customers,
                next_product: opts.products,
                next_order: opts.orders as u64 + 1,
            },
        })
    }

    /// Start a good event: the envelope is written, the returned object is `data`.
    /// Close it, then [`EventsOut::commit`].
    fn event(&mut self, ty: &str, source: &str, time: Ts) -> io::Result<JsonObject<'_>> {
        self.line.clear();
        write!(
            self.line,
            r#"{{"specversion":"1.0","type":"{ty}","source":"{source}","id":"gen-{}","time":"{}","data":"#,
            self.counts.good + 1,
            Rfc3339(time)
        )?;
        self.last_time = time;
        Ok(JsonObject::open(&mut self.line))
    }

    /// Write the event started with [`EventsOut::event`], then any broken lines due.
    fn commit(&mut self) -> io::Result<()> {
        self.line.extend_from_slice(b"}\n");
        self.file.write_all(&self.line)?;
        self.counts.good += 1;
        while broken_due(self.broken(), self.counts.good, self.dirty) {
            self.write_broken()?;
        }
        Ok(())
    }

    fn broken(&self) -> u64 {
        self.counts.bad_at_ingest + self.counts.bad_at_load
    }

    fn write_broken(&mut self) -> io::Result<()> {
        let n = self.broken() + 1;
        let kind = Broken::CYCLE[(n as usize - 1) % Broken::CYCLE.len()];
        let customer = CustomerId(self.rng.random_range(0..self.refs.customers.max(1)));
        let product = ProductId(self.rng.random_range(0..self.refs.products.max(1)));
        let time = Rfc3339(self.last_time);
        let line = &mut self.line;
        line.clear();
        match kind {
            Broken::TruncatedJson => write!(
                line,
                r#"{{"specversion":"1.0","type":"customer_registered","source":"crm","id":"bad-{n}","time":"{time}","data":{{"customer_id":"C0"#
            )?,
            Broken::NoSpecversion => write!(
                line,
                r#"{{"type":"product_viewed","source":"web","id":"bad-{n}","time":"{time}","data":{{"session_id":"S00000000","customer_id":"{customer}","product_id":"{product}","viewed_at":"{time}"}}}}"#
            )?,
            Broken::OldSpecversion => write!(
                line,
                r#"{{"specversion":"0.3","type":"order_status_changed","source":"shop","id":"bad-{n}","time":"{time}","data":{{"order_id":"O0000001","status":"paid"}}}}"#
            )?,
            Broken::MissingType => write!(
                line,
                r#"{{"specversion":"1.0","source":"shop","id":"bad-{n}","time":"{time}","data":{{"order_id":"O0000001","status":"shipped"}}}}"#
            )?,
            Broken::DataNotObject => write!(
                line,
                r#"{{"specversion":"1.0","type":"customer_updated","source":"crm","id":"bad-{n}","time":"{time}","data":"customer_id={customer};city=Berlin"}}"#
            )?,
            Broken::InvalidUtf8 => {
                write!(
                    line,
                    r#"{{"specversion":"1.0","type":"customer_updated","source":"crm","id":"bad-{n}","time":"{time}","data":{{"customer_id":"{customer}","city":"Ber"#
                )?;
                line.extend_from_slice(b"\xff\xfelin\"}}");
            }
            Broken::QuantityNotNumber => {
                let order = OrderId(self.refs.next_order);
                self.refs.next_order += 1;
                write!(
                    line,
                    r#"{{"specversion":"1.0","type":"order_placed","source":"shop","id":"bad-{n}","time":"{time}","data":{{"order_id":"{order}","customer_id":"{customer}","ordered_at":"{time}","channel":"web","status":"placed","lines":[{{"line_no":1,"product_id":"{product}","quantity":"three","unit_price":9.99,"discount":0.00}}]}}}}"#
                )?;
            }
            Broken::BadSignupDate => {
                let fresh = CustomerId(self.refs.next_customer);
                self.refs.next_customer += 1;
                write!(
                    line,
                    r#"{{"specversion":"1.0","type":"customer_registered","source":"crm","id":"bad-{n}","time":"{time}","data":{{"customer_id":"{fresh}","first_name":"Bad","last_name":"Date","email":"bad.date.{n}@example.com","phone":"+49 151 0000000","city":"Berlin","country":"Germany","signup_date":"2024-13-45"}}}}"#
                )?;
            }
            Broken::PriceNotNumber => {
                let fresh = ProductId(self.refs.next_product);
                self.refs.next_product += 1;
                write!(
                    line,
                    r#"{{"specversion":"1.0","type":"product_listed","source":"catalog","id":"bad-{n}","time":"{time}","data":{{"product_id":"{fresh}","name":"Mystery Box","category":"Toys","brand":"Acme","price":"cheap"}}}}"#
                )?;
            }
            Broken::MissingCustomerId => write!(
                line,
                r#"{{"specversion":"1.0","type":"customer_updated","source":"crm","id":"bad-{n}","time":"{time}","data":{{"email":"nobody.{n}@example.com"}}}}"#
            )?,
        }
        line.push(b'\n');
        self.file.write_all(line)?;
        if kind.ingests() {
            self.counts.bad_at_load += 1;
        } else {
            self.counts.bad_at_ingest += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<GenFile> {
        self.file.flush()?;
        Ok(self.counts)
    }
}

/// `transactions.csv`: one row per order line. Every field is generated ASCII
/// without commas or quotes, so no CSV quoting is needed.
struct TransactionsOut {
    file: BufWriter<File>,
    counts: GenFile,
}

impl TransactionsOut {
    fn create(path: &Path) -> io::Result<TransactionsOut> {
        let mut file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        file.write_all(
            b"transaction_id,order_id,customer_id,product_id,quantity,unit_price,transaction_date\n",
        )?;
        Ok(TransactionsOut {
            file,
            counts: GenFile::named(TRANSACTIONS_FILE),
        })
    }

    fn row(
        &mut self,
        order: &OrderId,
        customer: usize,
        line: &PlannedLine,
        unit_price: i64,
        at: Ts,
    ) -> io::Result<()> {
        self.counts.good += 1;
        writeln!(
            self.file,
            "{},{order},{},{},{},{},{}",
            TransactionId(self.counts.good),
            CustomerId(customer),
            ProductId(line.product),
            line.quantity,
            Cents(unit_price),
            SqlTime(at)
        )
    }

    fn finish(mut self) -> io::Result<GenFile> {
        self.file.flush()?;
        Ok(self.counts)
    }
}

const CUSTOMER_COLUMNS: [&str; 8] = [
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "city",
    "country",
    "signup_date",
];

/// `customers.csv`: every customer's current state, with about `dirty × rows`
/// broken rows (alternately too few columns and invalid UTF-8) spread through it.
fn write_customers(path: &Path, customers: &[Customer], dirty: f64) -> io::Result<GenFile> {
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::new(File::create(path)?));
    out.write_record(CUSTOMER_COLUMNS)?;
    let mut counts = GenFile::named(CUSTOMERS_FILE);
    for (index, c) in customers.iter().enumerate() {
        let id = CustomerId(index).to_string();
        let signup = IsoDate(c.registered_at).to_string();
        out.write_record([
            id.as_str(),
            c.first_name,
            c.last_name,
            &c.email,
            &c.phone,
            c.city_name(),
            c.country_name(),
            &signup,
        ])?;
        counts.good += 1;
        while broken_due(counts.bad_at_ingest, counts.good, dirty) {
            let fresh = CustomerId(customers.len() + counts.bad_at_ingest as usize).to_string();
            if counts.bad_at_ingest.is_multiple_of(2) {
                out.write_record([fresh.as_str(), "Ragged"])?;
            } else {
                out.write_byte_record(&csv::ByteRecord::from(vec![
                    fresh.as_bytes(),
                    b"Jos\xff\xfe",
                    b"Broken",
                    b"jose.broken@example.com",
                    b"+49 151 0000000",
                    b"Berlin",
                    b"Germany",
                    signup.as_bytes(),
                ]))?;
            }
            counts.bad_at_ingest += 1;
        }
    }
    out.flush()?;
    Ok(counts)
}

/// `products.csv`: every product's current state.
fn write_products(path: &Path, products: &[Product]) -> io::Result<GenFile> {
    let mut out = csv::Writer::from_writer(BufWriter::new(File::create(path)?));
    out.write_record(["product_id", "name", "category", "brand", "price"])?;
    let mut counts = GenFile::named(PRODUCTS_FILE);
    for (index, p) in products.iter().enumerate() {
        out.write_record([
            ProductId(index).to_string().as_str(),
            &p.name,
            CATEGORIES[p.category].name,
            BRANDS[p.brand],
            Cents(p.price).to_string().as_str(),
        ])?;
        counts.good += 1;
    }
    out.flush()?;
    Ok(counts)
}

/// `manifest.json`: the summary, paths relative to the manifest's directory.
fn write_manifest(path: &Path, files: &[GenFile]) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let summary = GenSummary {
        files: files.to_vec(),
    };
    serde_json::to_writer_pretty(&mut out, &summary)?;
    out.write_all(b"\n")?;
    out.flush()
}

// ------------------------------------------------------------------ the run

/// What a finished run leaves: the final state of the world and two written files.
struct Outcome {
    world: World,
    events: GenFile,
    transactions: GenFile,
}

/// The simulation: plans each day, then writes the events in emission order.
struct Simulation {
    rng: StdRng,
    world: World,
    queue: Queue,
    events: EventsOut,
    transactions: TransactionsOut,
    orders_placed: u64,
    sessions: u64,
}

impl Simulation {
    fn new(rng: StdRng, world: World, opts: &GenOptions) -> io::Result<Simulation> {
        Ok(Simulation {
            rng,
            world,
            queue: Queue::default(),
            events: EventsOut::create(&opts.out.join(EVENTS_FILE), opts)?,
            transactions: TransactionsOut::create(&opts.out.join(TRANSACTIONS_FILE))?,
            orders_placed: 0,
            sessions: 0,
        })
    }

    /// Simulate every day, writing `events.ndjson` and `transactions.csv`.
    fn run(mut self, orders: usize) -> io::Result<Outcome> {
        let calendar = self.world.calendar;
        let lifecycle = self.plan_lifecycles();
        let per_day = daily_order_counts(&self.world, orders);
        for (day, (due, order_count)) in lifecycle.into_iter().zip(per_day).enumerate() {
            for pending in due {
                self.queue.push(pending);
            }
            for _ in 0..order_count {
                self.plan_order(day);
                if self.rng.random_bool(BROWSE_SESSIONS_PER_ORDER) {
                    self.plan_browsing(day);
                }
            }
            let until = calendar.day_start(day + 1);
            while let Some(pending) = self.queue.pop_before(until) {
                self.emit(pending)?;
            }
        }
        // late arrivals due after the last day
        while let Some(pending) = self.queue.pop_before(Ts::MAX) {
            self.emit(pending)?;
        }
        Ok(Outcome {
            events: self.events.finish()?,
            transactions: self.transactions.finish()?,
            world: self.world,
        })
    }

    /// Registrations, listings and their later updates, bucketed by the day they
    /// reach the file.
    fn plan_lifecycles(&mut self) -> Vec<Vec<Pending>> {
        let calendar = self.world.calendar;
        let horizon = calendar.horizon();
        let mut by_day: Vec<Vec<Pending>> = (0..calendar.days).map(|_| Vec::new()).collect();
        let mut add = |pending: Pending| by_day[calendar.day_of(pending.emit_at)].push(pending);
        for (index, c) in self.world.customers.iter().enumerate() {
            add(Pending::on_time(c.registered_at, Planned::Register(index)));
            let rng = &mut self.rng;
            for time in change_times(rng, c.registered_at, horizon, CUSTOMER_CHANGES_PER_YEAR) {
                add(Pending {
                    time,
                    emit_at: arrival(rng, time, LATE_CUSTOMER_UPDATE_SHARE),
                    event: Planned::CustomerUpdate(index),
                });
            }
        }
        for (index, p) in self.world.products.iter().enumerate() {
            add(Pending::on_time(p.listed_at, Planned::List(index)));
            for time in change_times(
                &mut self.rng,
                p.listed_at,
                horizon,
                PRODUCT_CHANGES_PER_YEAR,
            ) {
                add(Pending::on_time(time, Planned::ProductUpdate(index)));
            }
        }
        by_day
    }

    /// A customer who has signed up before `at`, preferably one who has not churned.
    fn pick_customer(&mut self, at: Ts) -> Option<usize> {
        let mut last = None;
        for _ in 0..CHURN_RETRIES {
            let index = self.world.customer_picker.pick(&mut self.rng, at)?;
            if self.world.customers[index].churns_at > at {
                return Some(index);
            }
            last = Some(index);
        }
        last
    }

    /// Up to `count` different products listed before `at`.
    fn pick_products(&mut self, at: Ts, count: usize) -> Vec<usize> {
        let mut chosen = Vec::with_capacity(count);
        for _ in 0..count * 4 {
            if chosen.len() == count {
                break;
            }
            match self.world.product_picker.pick(&mut self.rng, at) {
                Some(p) if !chosen.contains(&p) => chosen.push(p),
                Some(_) => {}
                None => break,
            }
        }
        chosen
    }

    /// One order on `day`; online orders come with a browsing session just before.
    fn plan_order(&mut self, day: usize) {
        let day_start = self.world.calendar.day_start(day);
        let first_order_at = self.world.first_order_at;
        let at = (day_start + time_of_day(&mut self.rng)).max(first_order_at);
        let channel = Channel::random(&mut self.rng);
        let lead = if channel == Channel::Store {
            0
        } else {
            self.rng.random_range(3 * MINUTE..=40 * MINUTE)
        };
        // the session starts on the same day, after the first signup and listing;
        // customer and products are picked among those that exist by then
        let browse_from = (at - lead).max(day_start).max(first_order_at - 30);
        let Some(customer) = self.pick_customer(browse_from) else {
            return;
        };
        let line_count = weighted_index(&mut self.rng, &LINE_COUNT_WEIGHTS) + 1;
        let lines: Vec<PlannedLine> = self
            .pick_products(browse_from, line_count)
            .into_iter()
            .map(|product| PlannedLine {
                product,
                quantity: weighted_index(&mut self.rng, &QUANTITY_WEIGHTS) as i64 + 1,
                discount_percent: if self.rng.random_bool(DISCOUNTED_LINE_SHARE) {
                    DISCOUNT_PERCENTS[self.rng.random_range(0..DISCOUNT_PERCENTS.len())]
                } else {
                    0
                },
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        if browse_from < at {
            self.plan_order_views(customer, &lines, browse_from, at);
        }
        let order = PlannedOrder {
            customer,
            channel,
            lines,
        };
        self.queue
            .push(Pending::on_time(at, Planned::Order(Box::new(order))));
    }

    /// The views before an order: each bought product (some twice) and now and then
    /// one that was not bought, at times in `from..until`.
    fn plan_order_views(&mut self, customer: usize, lines: &[PlannedLine], from: Ts, until: Ts) {
        let mut products = Vec::with_capacity(lines.len() + 2);
        for line in lines {
            products.push(line.product);
            if self.rng.random_bool(REPEAT_VIEW_SHARE) {
                products.push(line.product);
            }
        }
        if self.rng.random_bool(EXTRA_VIEW_SHARE)
            && let Some(extra) = self.world.product_picker.pick(&mut self.rng, from)
        {
            products.push(extra);
        }
        products.shuffle(&mut self.rng);
        let mut times: Vec<Ts> = products
            .iter()
            .map(|_| self.rng.random_range(from..until))
            .collect();
        times.sort_unstable();
        self.sessions += 1;
        for (product, time) in products.into_iter().zip(times) {
            self.queue.push(Pending::on_time(
                time,
                Planned::View {
                    session: self.sessions,
                    customer,
                    product,
                },
            ));
        }
    }

    /// A browsing session without an order: one to three views.
    fn plan_browsing(&mut self, day: usize) {
        let day_start = self.world.calendar.day_start(day);
        let at = (day_start + time_of_day(&mut self.rng)).max(self.world.first_order_at);
        let Some(customer) = self.pick_customer(at) else {
            return;
        };
        self.sessions += 1;
        let mut time = at;
        for _ in 0..self.rng.random_range(1..=3) {
            let Some(product) = self.world.product_picker.pick(&mut self.rng, at) else {
                return;
            };
            self.queue.push(Pending::on_time(
                time,
                Planned::View {
                    session: self.sessions,
                    customer,
                    product,
                },
            ));
            time += self.rng.random_range(20..=300);
        }
    }

    fn emit(&mut self, pending: Pending) -> io::Result<()> {
        let time = pending.time;
        match pending.event {
            Planned::Register(c) => self.emit_registration(c, time),
            Planned::List(p) => self.emit_listing(p, time),
            Planned::CustomerUpdate(c) => self.emit_customer_update(c, time),
            Planned::ProductUpdate(p) => self.emit_product_update(p, time),
            Planned::Order(order) => self.emit_order(&order, time),
            Planned::Status { order, status } => self.emit_status(order, status, time),
            Planned::View {
                session,
                customer,
                product,
            } => self.emit_view(session, customer, product, time),
        }
    }

    fn emit_registration(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let c = &self.world.customers[index];
        let mut data = self.events.event("customer_registered", "crm", time)?;
        data.token("customer_id", CustomerId(index))?;
        data.str("first_name", c.first_name);
        data.str("last_name", c.last_name);
        data.str("email", &c.email);
        data.str("phone", &c.phone);
        data.str("city", c.city_name());
        data.str("country", c.country_name());
        data.token("signup_date", IsoDate(c.registered_at))?;
        data.close();
        self.events.refs.customers = self.events.refs.customers.max(index + 1);
        self.events.commit()
    }

    fn emit_listing(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let p = &self.world.products[index];
        let mut data = self.events.event("product_listed", "catalog", time)?;
        data.token("product_id", ProductId(index))?;
        data.str("name", &p.name);
        data.str("category", CATEGORIES[p.category].name);
        data.str("brand", BRANDS[p.brand]);
        data.number("price", Cents(p.price))?;
        data.close();
        self.events.refs.products = self.events.refs.products.max(index + 1);
        self.events.commit()
    }

    /// A move (sometimes abroad, then with a new phone), a new email, a new phone or
    /// a new last name. A late update does not overwrite a newer one in the state.
    fn emit_customer_update(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let rng = &mut self.rng;
        let c = &mut self.world.customers[index];
        let mut data = self.events.event("customer_updated", "crm", time)?;
        data.token("customer_id", CustomerId(index))?;
        match weighted_index(rng, &[40, 30, 22, 8]) {
            0 => {
                let abroad = rng.random_bool(0.3);
                let country = if abroad {
                    other_index(rng, c.country, COUNTRIES.len())
                } else {
                    c.country
                };
                let cities = COUNTRIES[country].cities.len();
                let city = if abroad {
                    rng.random_range(0..cities)
                } else {
                    other_index(rng, c.city, cities)
                };
                data.str("city", COUNTRIES[country].cities[city]);
                data.str("country", COUNTRIES[country].name);
                if abroad {
                    let phone = phone_number(rng, country);
                    data.str("phone", &phone);
                    if c.accepts(CustomerField::Phone, time) {
                        c.phone = phone;
                    }
                }
                if c.accepts(CustomerField::Address, time) {
                    c.country = country;
                    c.city = city;
                }
            }
            1 => {
                let domain = other_index(rng, c.email_domain, EMAIL_DOMAINS.len());
                let email = email_address(c.first_name, c.last_name, index, domain);
                data.str("email", &email);
                if c.accepts(CustomerField::Email, time) {
                    c.email = email;
                    c.email_domain = domain;
                }
            }
            2 => {
                let phone = phone_number(rng, c.country);
                data.str("phone", &phone);
                if c.accepts(CustomerField::Phone, time) {
                    c.phone = phone;
                }
            }
            _ => {
                let current = LAST_NAMES.iter().position(|&n| n == c.last_name);
                let last_name =
                    LAST_NAMES[other_index(rng, current.unwrap_or(0), LAST_NAMES.len())];
                data.str("last_name", last_name);
                if c.accepts(CustomerField::Name, time) {
                    c.last_name = last_name;
                }
            }
        }
        data.close();
        self.events.commit()
    }

    /// Mostly a price change; sometimes a new name (with or without a new price), a
    /// new brand, or a new category (with a name that fits it).
    fn emit_product_update(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let rng = &mut self.rng;
        let p = &mut self.world.products[index];
        let mut data = self.events.event("product_updated", "catalog", time)?;
        data.token("product_id", ProductId(index))?;
        let kind = weighted_index(rng, &[80, 8, 5, 4, 3]);
        if kind == 4 {
            p.category = other_index(rng, p.category, CATEGORIES.len());
        }
        if kind == 1 || kind == 2 || kind == 4 {
            p.name = product_name(rng, p.category);
            data.str("name", &p.name);
        }
        if kind == 4 {
            data.str("category", CATEGORIES[p.category].name);
        }
        if kind == 3 {
            p.brand = other_index(rng, p.brand, BRANDS.len());
            data.str("brand", BRANDS[p.brand]);
        }
        if kind == 0 || kind == 2 {
            p.price = p.repriced(rng);
            data.number("price", Cents(p.price))?;
        }
        data.close();
        self.events.commit()
    }

    /// The order at current prices, its `transactions.csv` rows, and its future
    /// status changes (none after the last day).
    fn emit_order(&mut self, order: &PlannedOrder, time: Ts) -> io::Result<()> {
        self.orders_placed += 1;
        let id = OrderId(self.orders_placed);
        let mut data = self.events.event("order_placed", "shop", time)?;
        data.token("order_id", &id)?;
        data.token("customer_id", CustomerId(order.customer))?;
        data.token("ordered_at", Rfc3339(time))?;
        data.token("channel", order.channel.as_str())?;
        data.token("status", "placed")?;
        let lines = data.member("lines");
        lines.push(b'[');
        for (i, line) in order.lines.iter().enumerate() {
            if i > 0 {
                lines.push(b',');
            }
            let unit_price = self.world.products[line.product].price;
            let discount = unit_price * line.quantity * line.discount_percent / 100;
            let mut json = JsonObject::open(lines);
            json.number("line_no", i + 1)?;
            json.token("product_id", ProductId(line.product))?;
            json.number("quantity", line.quantity)?;
            json.number("unit_price", Cents(unit_price))?;
            json.number("discount", Cents(discount))?;
            json.close();
            self.transactions
                .row(&id, order.customer, line, unit_price, time)?;
        }
        lines.push(b']');
        data.close();
        self.events.commit()?;
        self.schedule_statuses(id.0, time);
        Ok(())
    }

    fn schedule_statuses(&mut self, order: u64, placed: Ts) {
        let horizon = self.world.calendar.horizon();
        for (time, status) in status_chain(&mut self.rng, placed) {
            if time >= horizon {
                break;
            }
            self.queue.push(Pending {
                time,
                emit_at: arrival(&mut self.rng, time, LATE_STATUS_SHARE),
                event: Planned::Status { order, status },
            });
        }
    }

    fn emit_status(&mut self, order: u64, status: Status, time: Ts) -> io::Result<()> {
        let mut data = self.events.event("order_status_changed", "shop", time)?;
        data.token("order_id", OrderId(order))?;
        data.token("status", status.as_str())?;
        data.close();
        self.events.commit()
    }

    fn emit_view(
        &mut self,
        session: u64,
        customer: usize,
        product: usize,
        time: Ts,
    ) -> io::Result<()> {
        let mut data = self.events.event("product_viewed", "web", time)?;
        data.token("session_id", SessionId(session))?;
        data.token("customer_id", CustomerId(customer))?;
        data.token("product_id", ProductId(product))?;
        data.token("viewed_at", Rfc3339(time))?;
        data.close();
        self.events.commit()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::Utc;
    use serde_json::Value;

    use super::*;
    use crate::events::cloudevents;
    use crate::events::csv_rows::{Header, RowSpec};

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("dvault-gen-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn options(out: &Path, dirty: f64) -> GenOptions {
        GenOptions {
            seed: 7,
            customers: 300,
            products: 60,
            orders: 1500,
            days: 150,
            end: NaiveDate::from_ymd_opt(2024, 12, 31).expect("valid date"),
            dirty,
            out: out.to_path_buf(),
        }
    }

    fn run(opts: &GenOptions) -> GenSummary {
        generate(opts).expect("generate")
    }

    fn file_counts<'a>(summary: &'a GenSummary, name: &str) -> &'a GenFile {
        summary
            .files
            .iter()
            .find(|f| f.path.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("{name} not in the summary"))
    }

    fn read_lines(path: &Path) -> Vec<Vec<u8>> {
        let bytes = fs::read(path).expect("read file");
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// What dvault would make of one NDJSON line.
    enum Verdict {
        Good(Event),
        RejectedAtIngest(String),
        /// A valid CloudEvent with a payload that breaks the contract.
        RejectedAtLoad(Event, String),
    }

    struct Event {
        ty: String,
        source: String,
        id: String,
        time: DateTime<Utc>,
        data: Value,
    }

    fn judge(line: &[u8]) -> Verdict {
        let Ok(text) = std::str::from_utf8(line) else {
            return Verdict::RejectedAtIngest("invalid UTF-8".into());
        };
        let parsed = match cloudevents::parse(text, Utc::now()) {
            Ok(e) => e,
            Err(reason) => return Verdict::RejectedAtIngest(reason),
        };
        let data: Value = serde_json::from_str(&parsed.payload).expect("payload is JSON");
        let event = Event {
            ty: parsed.event_type,
            source: parsed.source,
            id: parsed.event_id,
            time: parsed.occurred_at,
            data,
        };
        match check_payload(&event).and_then(|()| check_money(text)) {
            Ok(()) => Verdict::Good(event),
            Err(reason) => Verdict::RejectedAtLoad(event, reason),
        }
    }

    fn text<'a>(data: &'a Value, key: &str) -> Result<&'a str, String> {
        data.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{key}: missing or not a string"))
    }

    fn same_time(data: &Value, key: &str, time: DateTime<Utc>) -> Result<(), String> {
        let at = DateTime::parse_from_rfc3339(text(data, key)?).map_err(|e| e.to_string())?;
        if at != time {
            return Err(format!("{key} differs from the event time"));
        }
        Ok(())
    }

    fn integer_in(
        data: &Value,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, String> {
        data.get(key)
            .and_then(Value::as_u64)
            .filter(|n| range.contains(n))
            .ok_or_else(|| format!("{key}: not an integer in {range:?}"))
    }

    fn number(data: &Value, key: &str) -> Result<f64, String> {
        data.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{key}: not a number"))
    }

    /// Updates carry the key and a non-empty subset of the allowed string fields.
    fn subset(data: &Value, key: &str, fields: &[&str]) -> Result<(), String> {
        text(data, key)?;
        let object = data.as_object().ok_or("data is not an object")?;
        let others: Vec<&String> = object.keys().filter(|k| *k != key).collect();
        if others.is_empty() {
            return Err("an update that changes nothing".into());
        }
        for k in others {
            if k == "price" {
                number(data, k)?;
            } else if fields.contains(&k.as_str()) {
                text(data, k)?;
            } else {
                return Err(format!("unexpected field {k}"));
            }
        }
        Ok(())
    }

    /// The payload contract of the loader's mappings.
    fn check_payload(e: &Event) -> Result<(), String> {
        let d = &e.data;
        let source = match e.ty.as_str() {
            "customer_registered" => {
                for key in CUSTOMER_COLUMNS {
                    text(d, key)?;
                }
                NaiveDate::parse_from_str(text(d, "signup_date")?, "%Y-%m-%d")
                    .map_err(|e| format!("signup_date: {e}"))?;
                "crm"
            }
            "customer_updated" => {
                let fields = [
                    "first_name",
                    "last_name",
                    "email",
                    "phone",
                    "city",
                    "country",
                ];
                subset(d, "customer_id", &fields)?;
                "crm"
            }
            "product_listed" => {
                for key in ["product_id", "name", "category", "brand"] {
                    text(d, key)?;
                }
                number(d, "price")?;
                "catalog"
            }
            "product_updated" => {
                subset(d, "product_id", &["name", "category", "brand", "price"])?;
                "catalog"
            }
            "order_placed" => {
                text(d, "order_id")?;
                text(d, "customer_id")?;
                same_time(d, "ordered_at", e.time)?;
                if !["web", "mobile", "store"].contains(&text(d, "channel")?) {
                    return Err("unknown channel".into());
                }
                if text(d, "status")? != "placed" {
                    return Err("status is not placed".into());
                }
                let lines = d["lines"].as_array().ok_or("lines: not an array")?;
                if lines.is_empty() {
                    return Err("no lines".into());
                }
                for (i, line) in lines.iter().enumerate() {
                    let no = i as u64 + 1;
                    integer_in(line, "line_no", no..=no)?;
                    text(line, "product_id")?;
                    integer_in(line, "quantity", 1..=5)?;
                    number(line, "unit_price")?;
                    number(line, "discount")?;
                }
                "shop"
            }
            "order_status_changed" => {
                text(d, "order_id")?;
                let statuses = ["paid", "shipped", "delivered", "cancelled", "returned"];
                if !statuses.contains(&text(d, "status")?) {
                    return Err("unknown status".into());
                }
                "shop"
            }
            "product_viewed" => {
                for key in ["session_id", "customer_id", "product_id"] {
                    text(d, key)?;
                }
                same_time(d, "viewed_at", e.time)?;
                "web"
            }
            other => return Err(format!("unknown type {other}")),
        };
        if e.source != source {
            return Err(format!("{} from source {}", e.ty, e.source));
        }
        Ok(())
    }

    /// Every amount is written with exactly two decimals.
    fn check_money(line: &str) -> Result<(), String> {
        for key in ["\"price\":", "\"unit_price\":", "\"discount\":"] {
            for (at, _) in line.match_indices(key) {
                let value: String = line[at + key.len()..]
                    .chars()
                    .take_while(|c| *c != ',' && *c != '}')
                    .collect();
                let two_decimals = value.split_once('.').is_some_and(|(units, cents)| {
                    !units.is_empty()
                        && units.bytes().all(|b| b.is_ascii_digit())
                        && cents.len() == 2
                        && cents.bytes().all(|b| b.is_ascii_digit())
                });
                if !two_decimals {
                    return Err(format!("{key} {value} is not an amount with two decimals"));
                }
            }
        }
        Ok(())
    }

    fn good_events(path: &Path) -> Vec<Event> {
        read_lines(path)
            .iter()
            .map(|line| match judge(line) {
                Verdict::Good(e) => e,
                Verdict::RejectedAtIngest(r) | Verdict::RejectedAtLoad(_, r) => {
                    panic!("{r}: {}", String::from_utf8_lossy(line))
                }
            })
            .collect()
    }

    #[test]
    fn same_options_give_the_same_bytes() {
        let (a, b, c) = (
            TempDir::new("det-a"),
            TempDir::new("det-b"),
            TempDir::new("det-c"),
        );
        run(&options(&a.0, 0.05));
        run(&options(&b.0, 0.05));
        for name in [
            EVENTS_FILE,
            CUSTOMERS_FILE,
            PRODUCTS_FILE,
            TRANSACTIONS_FILE,
            MANIFEST_FILE,
        ] {
            let left = fs::read(a.0.join(name)).expect("read");
            let right = fs::read(b.0.join(name)).expect("read");
            assert!(left == right, "{name} differs between two runs");
        }
        run(&GenOptions {
            seed: 8,
            ..options(&c.0, 0.05)
        });
        let other = fs::read(c.0.join(EVENTS_FILE)).expect("read");
        assert!(other != fs::read(a.0.join(EVENTS_FILE)).expect("read"));
    }

    #[test]
    fn a_clean_run_follows_the_contract() {
        let dir = TempDir::new("clean");
        let summary = run(&options(&dir.0, 0.0));
        let events = good_events(&dir.0.join(EVENTS_FILE));
        let mut ids = BTreeSet::new();
        let mut types = BTreeMap::new();
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.id, format!("gen-{}", n + 1));
            assert!(ids.insert(e.id.clone()));
            *types.entry(e.ty.as_str()).or_insert(0usize) += 1;
        }
        assert_eq!(types.len(), 7, "every event type occurs: {types:?}");
        // about 3 views per order
        let views = types["product_viewed"] as f64 / types["order_placed"] as f64;
        assert!((2.5..=3.5).contains(&views), "{views} views per order");
        // raw attributes as written
        for line in read_lines(&dir.0.join(EVENTS_FILE)).iter().take(50) {
            let v: Value = serde_json::from_slice(line).expect("JSON");
            assert_eq!(v["specversion"], "1.0");
            let time = v["time"].as_str().expect("time");
            assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
        }
        for file in &summary.files {
            assert_eq!(file.bad_at_ingest + file.bad_at_load, 0, "{file:?}");
        }
        assert_eq!(file_counts(&summary, EVENTS_FILE).good, events.len() as u64);
    }

    #[test]
    fn the_history_is_causal() {
        let dir = TempDir::new("causal");
        let opts = options(&dir.0, 0.0);
        run(&opts);
        let horizon = Calendar::new(opts.end, opts.days)
            .expect("calendar")
            .horizon();
        let mut registered = BTreeMap::new();
        let mut prices = BTreeMap::new();
        let mut listed = BTreeMap::new();
        let mut placed = BTreeMap::new();
        let (mut lines, mut late, mut latest) = (0usize, 0usize, DateTime::<Utc>::MIN_UTC);
        let mut statuses = BTreeSet::new();
        let events = good_events(&dir.0.join(EVENTS_FILE));
        for e in &events {
            let d = &e.data;
            let key = |k: &str| d[k].as_str().expect("key").to_string();
            assert!(e.time.timestamp() < horizon, "an event after the end");
            if e.time < latest {
                late += 1;
                assert!(
                    ["customer_updated", "order_status_changed"].contains(&e.ty.as_str()),
                    "late {}",
                    e.ty
                );
            }
            latest = latest.max(e.time);
            let exists = |map: &BTreeMap<String, DateTime<Utc>>, k: &str| {
                let since = map
                    .get(&key(k))
                    .unwrap_or_else(|| panic!("unknown {k} in {}", e.ty));
                assert!(*since < e.time, "{} before its {k} existed", e.ty);
            };
            match e.ty.as_str() {
                "customer_registered" => {
                    registered.insert(key("customer_id"), e.time);
                }
                "product_listed" | "product_updated" => {
                    listed.entry(key("product_id")).or_insert(e.time);
                    if let Some(price) = d.get("price") {
                        prices.insert(key("product_id"), price.as_f64().expect("price"));
                    }
                }
                "customer_updated" => exists(&registered, "customer_id"),
                "product_viewed" => {
                    exists(&registered, "customer_id");
                    exists(&listed, "product_id");
                }
                "order_placed" => {
                    exists(&registered, "customer_id");
                    for line in d["lines"].as_array().expect("lines") {
                        let product = line["product_id"].as_str().expect("product");
                        assert!(listed[product] < e.time, "sold before listed");
                        assert_eq!(line["unit_price"].as_f64(), Some(prices[product]));
                        lines += 1;
                    }
                    placed.insert(key("order_id"), e.time);
                }
                "order_status_changed" => {
                    exists(&placed, "order_id");
                    statuses.insert(key("status"));
                }
                _ => unreachable!(),
            }
        }
        assert_eq!(placed.len(), opts.orders);
        let per_order = lines as f64 / opts.orders as f64;
        assert!(
            (2.3..=2.7).contains(&per_order),
            "{per_order} lines per order"
        );
        assert_eq!(statuses.len(), 5, "{statuses:?}");
        let late_share = late as f64 / events.len() as f64;
        assert!((0.002..=0.03).contains(&late_share), "{late_share} late");
        let rows = read_lines(&dir.0.join(TRANSACTIONS_FILE)).len() - 1;
        assert_eq!(rows, lines, "one transaction row per order line");
    }

    /// Rows of a CSV file (header excluded) keyed by their first column.
    fn csv_rows(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut reader = csv::Reader::from_path(path).expect("open");
        let header = reader.headers().expect("header").clone();
        reader
            .records()
            .map(|row| {
                let row = row.expect("row");
                let fields: BTreeMap<String, String> = header
                    .iter()
                    .zip(row.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (row[0].to_string(), fields)
            })
            .collect()
    }

    /// A JSON scalar as the CSV writes it (amounts with two decimals).
    fn as_csv(value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => format!("{:.2}", n.as_f64().expect("number")),
            other => other.to_string(),
        }
    }

    #[test]
    fn the_snapshots_are_the_events_replayed_in_business_time() {
        let dir = TempDir::new("snapshots");
        run(&options(&dir.0, 0.0));
        let mut events = good_events(&dir.0.join(EVENTS_FILE));
        // stable: events with the same time keep their file order
        events.sort_by_key(|e| e.time);
        let mut state: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for e in &events {
            let key = match e.ty.as_str() {
                "customer_registered" | "customer_updated" => "customer_id",
                "product_listed" | "product_updated" => "product_id",
                _ => continue,
            };
            let id = e.data[key].as_str().expect("key").to_string();
            let fields = state.entry(id).or_default();
            for (k, v) in e.data.as_object().expect("object") {
                fields.insert(k.clone(), as_csv(v));
            }
        }
        let mut snapshot = csv_rows(&dir.0.join(CUSTOMERS_FILE));
        snapshot.extend(csv_rows(&dir.0.join(PRODUCTS_FILE)));
        assert_eq!(snapshot.len(), state.len());
        for (id, row) in &snapshot {
            assert_eq!(Some(row), state.get(id), "{id}");
        }
    }

    #[test]
    fn the_manifest_matches_the_files() {
        let dir = TempDir::new("manifest");
        let summary = run(&options(&dir.0, 0.1));
        let manifest: Value =
            serde_json::from_slice(&fs::read(dir.0.join(MANIFEST_FILE)).expect("manifest"))
                .expect("JSON");
        let listed = manifest["files"].as_array().expect("files");
        assert_eq!(listed.len(), 4);
        for (entry, file) in listed.iter().zip(&summary.files) {
            let name = entry["path"].as_str().expect("path");
            assert_eq!(file.path, dir.0.join(name));
            for (key, value) in [
                ("good", file.good),
                ("bad_at_ingest", file.bad_at_ingest),
                ("bad_at_load", file.bad_at_load),
            ] {
                assert_eq!(entry[key].as_u64(), Some(value), "{name} {key}");
            }
            let header = u64::from(name.ends_with(".csv"));
            let lines = read_lines(&file.path).len() as u64 - header;
            assert_eq!(
                lines,
                file.good + file.bad_at_ingest + file.bad_at_load,
                "{name}"
            );
        }
    }

    #[test]
    fn broken_lines_are_rejected_where_announced() {
        let dir = TempDir::new("dirty");
        let opts = options(&dir.0, 0.1);
        let summary = run(&opts);
        let counts = file_counts(&summary, EVENTS_FILE);
        let (mut good, mut at_ingest, mut at_load) = (0u64, 0u64, 0u64);
        // every event that reaches the log has its own id, so none is deduplicated away
        let mut ids = BTreeSet::new();
        let mut unique_id = |e: Event| assert!(ids.insert((e.source, e.id)), "duplicate id");
        for line in read_lines(&dir.0.join(EVENTS_FILE)) {
            match judge(&line) {
                Verdict::Good(e) => {
                    unique_id(e);
                    good += 1;
                }
                Verdict::RejectedAtIngest(_) => at_ingest += 1,
                Verdict::RejectedAtLoad(e, _) => {
                    unique_id(e);
                    at_load += 1;
                }
            }
        }
        assert_eq!(good, counts.good);
        assert_eq!(at_ingest, counts.bad_at_ingest);
        assert_eq!(at_load, counts.bad_at_load);
        let broken = counts.bad_at_ingest + counts.bad_at_load;
        assert_eq!(broken, (counts.good as f64 * opts.dirty).floor() as u64);
        // the cycle of ten kinds: six for ingest, four for the loader
        assert!(broken >= 100);
        assert!(counts.bad_at_ingest.abs_diff(broken * 6 / 10) <= 1);

        let customers = file_counts(&summary, CUSTOMERS_FILE);
        let (good_rows, rejected_rows) = judge_customer_rows(&dir.0.join(CUSTOMERS_FILE));
        assert_eq!(good_rows, customers.good);
        assert_eq!(rejected_rows, customers.bad_at_ingest);
        assert_eq!(customers.good, opts.customers as u64);
        assert_eq!(
            customers.bad_at_ingest,
            (opts.customers as f64 * opts.dirty).floor() as u64
        );
    }

    /// Good and rejected rows of `customers.csv`, as `dvault ingest` sees them.
    fn judge_customer_rows(path: &Path) -> (u64, u64) {
        let spec = RowSpec {
            event_type: "customer_registered".into(),
            source: "crm".into(),
            time_field: Some("signup_date".into()),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .expect("open");
        let mut rows = reader.byte_records();
        let first = rows.next().expect("header").expect("header");
        let header = Header::parse(&first.iter().collect::<Vec<_>>(), &spec).expect("header");
        let (mut good, mut rejected) = (0, 0);
        for row in rows {
            let row = row.expect("row");
            match header.event(&row.iter().collect::<Vec<_>>(), &spec, Utc::now()) {
                Ok(_) => good += 1,
                Err(_) => rejected += 1,
            }
        }
        (good, rejected)
    }

    #[test]
    fn dirt_leaves_the_good_lines_alone() {
        let (clean, dirty) = (TempDir::new("same-clean"), TempDir::new("same-dirty"));
        run(&options(&clean.0, 0.0));
        run(&options(&dirty.0, 0.2));
        let kept: Vec<Vec<u8>> = read_lines(&dirty.0.join(EVENTS_FILE))
            .into_iter()
            .filter(|l| !String::from_utf8_lossy(l).contains("\"id\":\"bad-"))
            .collect();
        assert!(kept == read_lines(&clean.0.join(EVENTS_FILE)));
        for name in [PRODUCTS_FILE, TRANSACTIONS_FILE] {
            assert!(
                fs::read(clean.0.join(name)).expect("read")
                    == fs::read(dirty.0.join(name)).expect("read")
            );
        }
    }

    #[test]
    fn bad_options_are_refused() {
        let dir = TempDir::new("refused");
        let base = options(&dir.0, 0.0);
        for opts in [
            GenOptions {
                days: 0,
                ..base.clone()
            },
            GenOptions {
                dirty: 1.5,
                ..base.clone()
            },
            GenOptions {
                dirty: f64::NAN,
                ..base.clone()
            },
            GenOptions {
                customers: 0,
                ..base.clone()
            },
            GenOptions {
                days: u32::MAX,
                ..base.clone()
            },
        ] {
            let err = generate(&opts).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
        assert!(!dir.0.exists(), "nothing written for bad options");
    }

    #[test]
    fn tiny_worlds_work() {
        let dir = TempDir::new("tiny");
        let summary = run(&GenOptions {
            customers: 1,
            products: 1,
            orders: 3,
            days: 1,
            ..options(&dir.0, 0.0)
        });
        assert!(file_counts(&summary, EVENTS_FILE).good >= 5);
        good_events(&dir.0.join(EVENTS_FILE));
        let empty = TempDir::new("empty");
        let summary = run(&GenOptions {
            customers: 0,
            products: 0,
            orders: 0,
            ..options(&empty.0, 0.5)
        });
        assert!(summary.files.iter().all(|f| f.good + f.bad_at_ingest == 0));
    }

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
        let mut folded = String::new();
        ascii_fold("Łukasz Zoë O'Brien-Müller Søren Weiß", &mut folded);
        assert_eq!(folded, "lukaszzoeobrienmullersorenweiss");
        let mut json = Vec::new();
        push_json_string(&mut json, "a\"b\\c\n\u{1}é");
        assert_eq!(json, "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
    }

    #[test]
    fn order_counts_add_up() {
        let parts = spread(1000, &[1.0, 0.0, 2.5, 0.3, 7.0]);
        assert_eq!(parts.iter().sum::<usize>(), 1000);
        assert_eq!(parts[1], 0);
        assert!(spread(0, &[1.0, 2.0]).iter().all(|&p| p == 0));
    }
}
