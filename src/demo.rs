//! `dvault demo`: the whole product in one command. Generates a seed-sized Customer
//! 360 data set, ingests it, loads the vault, refreshes the views, prints a short
//! tour, then serves the API until Ctrl-C.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use tokio_postgres::Client;
use tracing::Instrument;

use crate::config::Config;
use crate::db::{self, Doing, Target};
use crate::events::ingest::{self, IngestOptions};
use crate::generate::{self, GenOptions};
use crate::human::thousands;
use crate::load::{LoadSummary, Loader};
use crate::mapping::Mappings;
use crate::ops::manual::ManualRun;

/// The database the demo (re)creates on the private server.
pub const DEMO_DATABASE: &str = "dvault_demo";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the generated files go.
    pub data_dir: PathBuf,
    pub customers: usize,
    pub products: usize,
    pub orders: usize,
}

impl DemoOptions {
    pub fn new(config: &Config) -> DemoOptions {
        DemoOptions {
            data_dir: config.home.join("demo-data"),
            customers: 10_000,
            products: 5_000,
            orders: 40_000,
        }
    }
}

/// A loaded demo: where it is, and what to print.
pub struct Demo {
    pub target: Target,
    pub tour: String,
}

type DemoResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Generate, ingest, load and describe. On the private server the demo gets a
/// fresh database each run; with `DATABASE_URL` it uses that database, and running
/// twice adds nothing (ingest and load are idempotent).
pub async fn prepare(config: &Config, opts: &DemoOptions) -> DemoResult<Demo> {
    // the data set is written (on a thread of its own) while the server makes the
    // database and its schema: neither waits for the other
    let generated = async {
        let started = Instant::now();
        let lines = generate_files(opts).await?;
        Ok::<_, Box<dyn Error + Send + Sync>>((lines, started.elapsed()))
    };
    let prepared = async {
        let target = database(config).await?;
        eprintln!("database: {}", target.describe());
        let client = db::connect_migrated(&target).await?;
        Ok::<_, Box<dyn Error + Send + Sync>>((target, client))
    };
    let ((lines, gen_time), (target, mut client)) = tokio::try_join!(generated, prepared)?;
    let events_file = opts.data_dir.join("events.ndjson");

    let t = Instant::now();
    let ingested = ingest::ingest_file(
        &mut client,
        &events_file,
        &IngestOptions {
            progress: true,
            ..IngestOptions::default()
        },
    )
    .await?;
    let ingest_time = t.elapsed();

    let t = Instant::now();
    let loaded = load(&mut client, &target.url).await?;
    let load_time = t.elapsed();

    let mut tour = String::new();
    let _ = writeln!(
        tour,
        "\nGenerated {} customers, {} products, {} orders with {} order lines ({} events) in {:.2} s",
        thousands(opts.customers as u64),
        thousands(opts.products as u64),
        thousands(opts.orders as u64),
        thousands(lines),
        thousands(ingested.inserted.max(loaded.events)),
        gen_time.as_secs_f64()
    );
    let _ = writeln!(
        tour,
        "Ingested in {:.2} s, loaded the vault in {:.2} s ({} rows)\n",
        ingest_time.as_secs_f64(),
        load_time.as_secs_f64(),
        thousands(loaded.rows_total())
    );
    tour.push_str(&table_counts(&client).await?);
    let _ = writeln!(tour, "\nTry it in psql:\n  psql \"{}\"", target.url);
    for q in SAMPLE_QUERIES {
        let _ = writeln!(tour, "  {q}");
    }
    Ok(Demo { target, tour })
}

/// The database the demo loads: on the private server a fresh one each run, else
/// `DATABASE_URL`'s as it is.
async fn database(config: &Config) -> DemoResult<Target> {
    let mut target = Target::resolve(config).await?;
    if let Some(server) = &target.local {
        let admin = db::connect(&server.url("postgres")).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"
            ))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {DEMO_DATABASE}"))
            .await?;
        target.url = server.url(DEMO_DATABASE);
    }
    Ok(target)
}

/// Write the demo's data set (always the same: seed 42) into `opts.data_dir`; the
/// number of order lines.
async fn generate_files(opts: &DemoOptions) -> DemoResult<u64> {
    let gen_opts = GenOptions {
        seed: 42,
        customers: opts.customers,
        products: opts.products,
        orders: opts.orders,
        days: 365,
        end: generate::default_end(Utc::now().date_naive()),
        dirty: 0.0,
        out: opts.data_dir.clone(),
    };
    let gen_for_thread = gen_opts.clone();
    let generated = tokio::task::spawn_blocking(move || generate::generate(&gen_for_thread))
        .await?
        .map_err(|e| format!("writing {}: {e}", gen_opts.out.display()))?;
    Ok(generated
        .files
        .iter()
        .filter(|f| f.path.ends_with("transactions.csv"))
        .map(|f| f.good)
        .sum())
}

/// Load the vault from the log.
async fn load(client: &mut Client, url: &str) -> DemoResult<LoadSummary> {
    let loader = Loader::new(client, Mappings::builtin()?)
        .await?
        .with_read_ahead(url);
    // a load like `dvault load`'s: recorded in `dvault runs` and `status`, with a
    // progress bar on a terminal, analyzed at its end
    let run = ManualRun::begin(client, url, false, true).await?;
    let loaded = loader.run(client).instrument(run.span()).await;
    let loaded = run
        .end(client, &loader.mappings().schema, loaded, None)
        .await?;
    Ok(loaded)
}

/// The queries the tour suggests (a test runs them on a demo).
pub const SAMPLE_QUERIES: &[&str] = &[
    "SELECT segment, count(*), round(avg(total_spent), 2) AS avg_spent FROM mart.customer_360 GROUP BY 1 ORDER BY 2 DESC;",
    "SELECT customer_id, first_name, last_name, orders_count, total_spent, churn_risk, clv_predicted_12m FROM mart.customer_360 ORDER BY total_spent DESC LIMIT 5;",
    "SELECT event_type, sum(coalesce(bundle_size, 1)) AS count FROM event_log.events GROUP BY 1 ORDER BY 2 DESC;",
];

/// Row counts of every vault and business vault table.
async fn table_counts(client: &Client) -> DemoResult<String> {
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
              WHERE table_schema IN ('raw_vault', 'business_vault') AND table_type = 'BASE TABLE'
              ORDER BY table_schema DESC, table_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .doing("listing the vault tables")?;
    let mut out = String::from("Rows per table:\n");
    for t in tables {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await?
            .try_get(0)
            .doing("counting a vault table's rows")?;
        let _ = writeln!(out, "  {t:<44} {:>10}", thousands(n as u64));
    }
    Ok(out)
}
