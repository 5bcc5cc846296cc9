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
    pub seed: u64,
    pub customers: usize,
    pub products: usize,
    pub orders: usize,
    /// Length of the history in days, ending at `end` (inclusive).
    pub days: u32,
    /// Last business day of the data set (deterministic output needs a fixed value; the CLI passes today by default).
    pub end: chrono::NaiveDate,
    /// Share (0.0..=1.0) of extra broken lines/rows to inject.
    pub dirty: f64,
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

const COUNTRIES: &[Country] = &[
    Country {
        name: "Germany",
        dial_code: "+49",
        weight: 18,
        cities: &["Berlin", "Hamburg", "München", "Köln"],
    },
    Country {
        name: "France",
        dial_code: "+33",
        weight: 12,
        cities: &["Paris", "Lyon", "Marseille", "Toulouse"],
    },
    Country {
        name: "Spain",
        dial_code: "+34",
        weight: 10,
        cities: &["Madrid", "Barcelona", "Sevilla", "Valencia"],
    },
    Country {
        name: "Italy",
        dial_code: "+39",
        weight: 9,
        cities: &["Roma", "Milano", "Napoli", "Torino"],
    },
    Country {
        name: "Poland",
        dial_code: "+48",
        weight: 8,
        cities: &["Warszawa", "Kraków", "Łódź", "Gdańsk"],
    },
    Country {
        name: "Netherlands",
        dial_code: "+31",
        weight: 7,
        cities: &["Amsterdam", "Rotterdam", "Utrecht"],
    },
    Country {
        name: "Sweden",
        dial_code: "+46",
        weight: 5,
        cities: &["Stockholm", "Göteborg", "Malmö"],
    },
    Country {
        name: "United Kingdom",
        dial_code: "+44",
        weight: 12,
        cities: &["London", "Manchester", "Edinburgh"],
    },
    Country {
        name: "United States",
        dial_code: "+1",
        weight: 14,
        cities: &["New York", "Chicago", "San Francisco", "Austin"],
    },
    Country {
        name: "Brazil",
        dial_code: "+55",
        weight: 5,
        cities: &["São Paulo", "Rio de Janeiro", "Curitiba"],
    },
];

const FIRST_NAMES: &[&str] = &[
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Katarzyna",
    "Liam",
    "Maria",
    "Noah",
    "Olivia",
    "Paul",
    "Sofia",
    "Tom",
    "Lena",
    "Marco",
    "Sara",
    "Lucas",
    "Julia",
    "Erik",
    "José",
    "Zoë",
    "Łukasz",
    "Søren",
    "Chloé",
    "Björn",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Schmidt",
    "Martin",
    "Rossi",
    "Nowak",
    "de Jong",
    "Johansson",
    "Brown",
    "Silva",
    "García",
    "Müller",
    "Dubois",
    "Bianchi",
    "Kowalski",
    "Jansen",
    "Andersson",
    "Taylor",
    "Santos",
    "Fernández",
    "Weber",
    "Lefèvre",
    "Wiśniewski",
    "O'Brien",
    "Meyer",
    "Costa",
    "Larsen",
    "Moreau",
    "Romano",
    "Becker",
    "Novak",
];

const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "mail.example",
    "inbox.example",
    "post.example",
    "example.org",
];

struct Category {
    name: &'static str,
    nouns: &'static [&'static str],
    /// Price range in whole currency units.
    price: (i64, i64),
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "Electronics",
        nouns: &[
            "Headphones",
            "Speaker",
            "Charger",
            "Keyboard",
            "Monitor",
            "Webcam",
        ],
        price: (15, 400),
    },
    Category {
        name: "Home",
        nouns: &["Lamp", "Cushion", "Rug", "Curtain", "Mirror", "Vase"],
        price: (8, 150),
    },
    Category {
        name: "Kitchen",
        nouns: &[
            "Blender",
            "Kettle",
            "Pan",
            "Knife Set",
            "Toaster",
            "Coffee Grinder",
        ],
        price: (10, 200),
    },
    Category {
        name: "Books",
        nouns: &["Novel", "Cookbook", "Travel Guide", "Biography", "Atlas"],
        price: (6, 45),
    },
    Category {
        name: "Toys",
        nouns: &["Puzzle", "Board Game", "Building Set", "Plush Bear", "Kite"],
        price: (5, 80),
    },
    Category {
        name: "Sports",
        nouns: &[
            "Yoga Mat",
            "Running Shoes",
            "Dumbbell Set",
            "Water Bottle",
            "Tennis Racket",
        ],
        price: (8, 180),
    },
    Category {
        name: "Beauty",
        nouns: &["Face Cream", "Shampoo", "Perfume", "Lip Balm"],
        price: (4, 90),
    },
    Category {
        name: "Garden",
        nouns: &["Hose", "Planter", "Pruning Shears", "Bird Feeder"],
        price: (6, 120),
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Smart",
    "Premium",
    "Nordic",
    "Urban",
    "Vintage",
    "Essential",
    "Ultra",
    "Pro",
];

const BRANDS: &[&str] = &[
    "Acme",
    "Nordlys",
    "Brühl & Söhne",
    "Casa Bella",
    "Zenith",
    "Sol y Mar",
    "Polar",
    "Vértice",
    "Oakridge",
    "Lumière",
    "Trekka",
    "Fjällgård",
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
const ZIPF_EXPONENT: f64 = 1.1;
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

/// Business keys. Customers and products are numbered from their 0-based index;
/// orders, sessions and transactions from a 1-based counter.
struct CustomerId(usize);
struct ProductId(usize);
struct OrderId(u64);
struct SessionId(u64);
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

/// An index drawn with the given relative weights.
fn weighted_index(rng: &mut StdRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
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
        let weights: Vec<u32> = COUNTRIES.iter().map(|c| c.weight).collect();
        let country = weighted_index(rng, &weights);
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
/// add up exactly.
fn spread(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let mut running = 0.0;
    let mut given = 0usize;
    weights
        .iter()
        .map(|w| {
            running += w;
            let until = ((running / sum) * total as f64).round() as usize;
            let part = until.min(total).saturating_sub(given);
            given += part;
            part
        })
        .collect()
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

/// The ways a line of `events.ndjson` is broken on purpose, in the order they are
/// injected. The first six are rejected by ingest, the last four by the loader.
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
            if counts.bad_at_ingest % 2 == 0 {
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
        let mut lifecycle = self.plan_lifecycles();
        let per_day = daily_order_counts(&self.world, orders);
        for (day, (due, order_count)) in lifecycle.iter_mut().zip(per_day).enumerate() {
            for pending in due.drain(..) {
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
        // customer and products must exist when the session starts
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
            if self.rng.random_bool(0.25) {
                products.push(line.product);
            }
        }
        if self.rng.random_bool(0.5)
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
    /// new brand or a new category.
    fn emit_product_update(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let rng = &mut self.rng;
        let p = &mut self.world.products[index];
        let mut data = self.events.event("product_updated", "catalog", time)?;
        data.token("product_id", ProductId(index))?;
        let kind = weighted_index(rng, &[80, 8, 5, 4, 3]);
        if kind == 1 || kind == 2 {
            p.name = product_name(rng, p.category);
            data.str("name", &p.name);
        }
        if kind == 3 {
            p.brand = other_index(rng, p.brand, BRANDS.len());
            data.str("brand", BRANDS[p.brand]);
        }
        if kind == 4 {
            p.category = other_index(rng, p.category, CATEGORIES.len());
            data.str("category", CATEGORIES[p.category].name);
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
