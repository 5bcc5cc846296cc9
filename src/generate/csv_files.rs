//! The CSV files: `transactions.csv`, written row by row during the run, and
//! `customers.csv` and `products.csv`, written from the final state of the world.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::calendar::Ts;
use super::dirt::{broken_due, write_broken_customer};
use super::format::{Cents, CustomerId, IsoDate, OrderId, ProductId, SqlTime, TransactionId};
use super::reference::{BRANDS, CATEGORIES};
use super::schedule::PlannedLine;
use super::world::{Customer, Product};
use super::{CUSTOMERS_FILE, GenFile, PRODUCTS_FILE, TRANSACTIONS_FILE, create_file};

/// `transactions.csv`: one row per order line. Every field is generated ASCII
/// without commas or quotes, so no CSV quoting is needed.
pub(super) struct TransactionsWriter {
    file: BufWriter<File>,
    counts: GenFile,
}

impl TransactionsWriter {
    pub(super) fn create(path: &Path) -> io::Result<TransactionsWriter> {
        let mut file = create_file(path)?;
        file.write_all(
            b"transaction_id,order_id,customer_id,product_id,quantity,unit_price,transaction_date\n",
        )?;
        Ok(TransactionsWriter {
            file,
            counts: GenFile::named(TRANSACTIONS_FILE),
        })
    }

    /// The row of `line` of order `order`, placed by `customer` at `at`.
    pub(super) fn row(
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

    pub(super) fn finish(mut self) -> io::Result<GenFile> {
        self.file.flush()?;
        Ok(self.counts)
    }
}

/// The header of `customers.csv`, also the fields of `customer_registered`.
pub(super) const CUSTOMER_COLUMNS: [&str; 8] = [
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
/// broken rows spread through it.
pub(super) fn write_customers(
    path: &Path,
    customers: &[Customer],
    dirty: f64,
) -> io::Result<GenFile> {
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(create_file(path)?);
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
            let fresh = CustomerId(customers.len() + counts.bad_at_ingest as usize);
            write_broken_customer(&mut out, counts.bad_at_ingest, fresh, &signup)?;
            counts.bad_at_ingest += 1;
        }
    }
    out.flush()?;
    Ok(counts)
}

/// `products.csv`: every product's current state.
pub(super) fn write_products(path: &Path, products: &[Product]) -> io::Result<GenFile> {
    let mut out = csv::Writer::from_writer(create_file(path)?);
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
