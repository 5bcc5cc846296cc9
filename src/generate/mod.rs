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
//!
//! How the pieces fit, in the order [`generate`] uses them:
//!
//! - `calendar`: the simulated period in seconds (`Ts`), and how many of the orders
//!   fall on each day.
//! - `reference`: countries, names, categories and brands, and the values made
//!   from them (emails, phone numbers, product names, prices).
//! - `random`: weighted choices, times of day, change and arrival times.
//! - `world`: the customers and products with their current state, built up front,
//!   and who can be picked when.
//! - `schedule`: events planned but not yet written, and the queue that releases
//!   them in emission order.
//! - `simulation`: the day-by-day run; plans registrations, updates, orders,
//!   browsing sessions and status changes.
//! - `emit`: writes one planned event and applies its change to the world.
//! - `ndjson`: `events.ndjson` and the JSON writing behind it.
//! - `dirt`: the lines broken on purpose, in `events.ndjson` and `customers.csv`.
//! - `csv_files`: `transactions.csv` (written during the run), `customers.csv` and
//!   `products.csv` (written from the final state).
//! - `format`: how moments, amounts and ids are written.

mod calendar;
mod csv_files;
mod dirt;
mod emit;
mod format;
mod ndjson;
mod random;
mod reference;
mod schedule;
mod simulation;
mod world;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;

use calendar::Calendar;
use csv_files::{write_customers, write_products};
use simulation::{Outcome, Simulation};
use world::World;

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
    /// Last business day of the data set (deterministic output needs a fixed value; the
    /// CLI passes [`default_end`] by default).
    pub end: chrono::NaiveDate,
    /// Share (0.0..=1.0) of extra broken lines/rows to inject.
    pub dirty: f64,
    /// The directory to write into (created if missing).
    pub out: std::path::PathBuf,
}

/// The default last day of generated data: the end of the last whole month before
/// `today`, so that nothing generated lies in the future (the last day is filled to
/// its end) and every month of the revenue series is complete.
pub fn default_end(today: chrono::NaiveDate) -> chrono::NaiveDate {
    use chrono::Datelike;
    today.with_day(1).unwrap_or(today) - chrono::Days::new(1)
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
    /// Counts for the file `name` (relative to the output directory), all zero.
    fn named(name: &str) -> GenFile {
        GenFile {
            path: PathBuf::from(name),
            good: 0,
            bad_at_ingest: 0,
            bad_at_load: 0,
        }
    }

    /// Broken lines so far, whichever stage rejects them.
    fn broken(&self) -> u64 {
        self.bad_at_ingest + self.bad_at_load
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

/// A new file at `path` (replacing any), behind a 1 MiB buffer.
fn create_file(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(path)?))
}

/// `manifest.json`: the summary, paths relative to the manifest's directory.
fn write_manifest(path: &Path, files: &[GenFile]) -> io::Result<()> {
    let mut out = create_file(path)?;
    let summary = GenSummary {
        files: files.to_vec(),
    };
    serde_json::to_writer_pretty(&mut out, &summary)?;
    out.write_all(b"\n")?;
    out.flush()
}
