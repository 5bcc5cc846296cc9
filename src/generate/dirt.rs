//! Lines broken on purpose (`--dirty`): how many, of which kinds, and what they
//! say. About `dirty × good` of them go into `events.ndjson` and `dirty × rows`
//! into `customers.csv`, evenly spread. Their randomness comes from an RNG of their
//! own, so the good lines are the same at every `dirty` level.

use std::io::{self, Write};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::GenOptions;
use super::calendar::Ts;
use super::format::{CustomerId, OrderId, ProductId, Rfc3339};
use super::ndjson::open_event;

/// The ways a line of `events.ndjson` is broken on purpose. Six are rejected by
/// ingest; four are valid CloudEvents the loader must reject
/// ([`Broken::rejected_at_load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
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

    /// True when the line is a valid CloudEvent, so ingest takes it and only the
    /// loader rejects it.
    pub(super) fn rejected_at_load(self) -> bool {
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
pub(super) fn broken_due(broken: u64, good: u64, share: f64) -> bool {
    broken < (good as f64 * share).floor() as u64
}

/// The broken lines of `events.ndjson`, and what they may refer to. Broken events
/// about new things use fresh keys (after the last generated one), so a loader
/// that wrongly accepts part of one shows up as an extra hub row.
pub(super) struct BrokenEvents {
    /// Drives broken lines only, so they do not disturb the good ones.
    rng: StdRng,
    share: f64,
    /// Customers and products that exist when the line is written.
    customers: usize,
    products: usize,
    next_customer: usize,
    next_product: usize,
    next_order: u64,
}

impl BrokenEvents {
    pub(super) fn new(opts: &GenOptions) -> BrokenEvents {
        BrokenEvents {
            rng: StdRng::seed_from_u64(opts.seed ^ 0x6272_6f6b_656e_0001),
            share: opts.dirty,
            customers: 0,
            products: 0,
            next_customer: opts.customers,
            next_product: opts.products,
            next_order: opts.orders as u64 + 1,
        }
    }

    /// From now on broken lines may refer to the customer `index` (0-based).
    pub(super) fn customer_exists(&mut self, index: usize) {
        self.customers = self.customers.max(index + 1);
    }

    /// From now on broken lines may refer to the product `index` (0-based).
    pub(super) fn product_exists(&mut self, index: usize) {
        self.products = self.products.max(index + 1);
    }

    /// Whether another broken line is due, with `broken` and `good` lines written.
    pub(super) fn due(&self, broken: u64, good: u64) -> bool {
        broken_due(broken, good, self.share)
    }

    /// Append broken line `number` (1-based, its id is `bad-{number}`), dated
    /// `time`, to `line` without the newline. The kind follows [`Broken::CYCLE`].
    pub(super) fn write(
        &mut self,
        line: &mut Vec<u8>,
        number: u64,
        time: Ts,
    ) -> io::Result<Broken> {
        let kind = Broken::CYCLE[(number as usize - 1) % Broken::CYCLE.len()];
        let customer = CustomerId(self.rng.random_range(0..self.customers.max(1)));
        let product = ProductId(self.rng.random_range(0..self.products.max(1)));
        let id = ("bad", number);
        let (v1_0, v0_3) = (Some("1.0"), Some("0.3"));
        match kind {
            Broken::TruncatedJson => {
                open_event(line, v1_0, Some("customer_registered"), "crm", id, time)?;
                write!(line, r#"{{"customer_id":"C0"#)?;
            }
            Broken::NoSpecversion => {
                open_event(line, None, Some("product_viewed"), "web", id, time)?;
                let time = Rfc3339(time);
                write!(
                    line,
                    r#"{{"session_id":"S00000000","customer_id":"{customer}","product_id":"{product}","viewed_at":"{time}"}}}}"#
                )?;
            }
            Broken::OldSpecversion => {
                open_event(line, v0_3, Some("order_status_changed"), "shop", id, time)?;
                write!(line, r#"{{"order_id":"O0000001","status":"paid"}}}}"#)?;
            }
            Broken::MissingType => {
                open_event(line, v1_0, None, "shop", id, time)?;
                write!(line, r#"{{"order_id":"O0000001","status":"shipped"}}}}"#)?;
            }
            Broken::DataNotObject => {
                open_event(line, v1_0, Some("customer_updated"), "crm", id, time)?;
                write!(line, r#""customer_id={customer};city=Berlin"}}"#)?;
            }
            Broken::InvalidUtf8 => {
                open_event(line, v1_0, Some("customer_updated"), "crm", id, time)?;
                write!(line, r#"{{"customer_id":"{customer}","city":"Ber"#)?;
                line.extend_from_slice(b"\xff\xfelin\"}}");
            }
            Broken::QuantityNotNumber => {
                let order = OrderId(self.next_order);
                self.next_order += 1;
                open_event(line, v1_0, Some("order_placed"), "shop", id, time)?;
                let time = Rfc3339(time);
                write!(
                    line,
                    r#"{{"order_id":"{order}","customer_id":"{customer}","ordered_at":"{time}","channel":"web","status":"placed","lines":[{{"line_no":1,"product_id":"{product}","quantity":"three","unit_price":9.99,"discount":0.00}}]}}}}"#
                )?;
            }
            Broken::BadSignupDate => {
                let fresh = CustomerId(self.next_customer);
                self.next_customer += 1;
                open_event(line, v1_0, Some("customer_registered"), "crm", id, time)?;
                write!(
                    line,
                    r#"{{"customer_id":"{fresh}","first_name":"Bad","last_name":"Date","email":"bad.date.{number}@example.com","phone":"+49 151 0000000","city":"Berlin","country":"Germany","signup_date":"2024-13-45"}}}}"#
                )?;
            }
            Broken::PriceNotNumber => {
                let fresh = ProductId(self.next_product);
                self.next_product += 1;
                open_event(line, v1_0, Some("product_listed"), "catalog", id, time)?;
                write!(
                    line,
                    r#"{{"product_id":"{fresh}","name":"Mystery Box","category":"Toys","brand":"Acme","price":"cheap"}}}}"#
                )?;
            }
            Broken::MissingCustomerId => {
                open_event(line, v1_0, Some("customer_updated"), "crm", id, time)?;
                write!(line, r#"{{"email":"nobody.{number}@example.com"}}}}"#)?;
            }
        }
        Ok(kind)
    }
}

/// Broken row `k` (0-based) of `customers.csv`, for the fresh key `customer`:
/// alternately too few columns and a first name that is not UTF-8. `signup` is the
/// date of the good row before it.
pub(super) fn write_broken_customer<W: io::Write>(
    out: &mut csv::Writer<W>,
    k: u64,
    customer: CustomerId,
    signup: &str,
) -> csv::Result<()> {
    let id = customer.to_string();
    if k.is_multiple_of(2) {
        out.write_record([id.as_str(), "Ragged"])
    } else {
        out.write_byte_record(&csv::ByteRecord::from(vec![
            id.as_bytes(),
            b"Jos\xff\xfe",
            b"Broken",
            b"jose.broken@example.com",
            b"+49 151 0000000",
            b"Berlin",
            b"Germany",
            signup.as_bytes(),
        ]))
    }
}
