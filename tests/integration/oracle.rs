//! The population oracle (issue 15): every documented Customer 360 rule of
//! docs/analysts.md implemented a second time, here, from the raw events, and compared
//! with `mart.customer_360`, `mart.segments`, `mart.churn` and their `_as_of` forms (one
//! customer at a time too, as `GET /customers/{id}?as_of=` asks) for
//! every customer, at today and at two earlier business times.
//!
//! The world is `dvault::generate`'s (300 customers, 150 days up to yesterday) plus
//! hand-built customers: for each reference date, customers whose last order is on
//! both sides of every churn threshold (one order: 60 and 90 days; two orders whose gap
//! makes the 14-day floor, 1.5 × gap, the 60-day cap, 90 days or 3 × gap the binding
//! threshold; 21 orders whose gap rounds up to the next tenth), and customers with a
//! late partial update (docs/mappings.md: it does not rewrite what later versions
//! carried forward).
//!
//! Nothing here reads a view to compute an expectation: the oracle sees the events the
//! test appended, in log order, and the mapping of docs/mappings.md (satellites
//! insert-only, unstated columns carried forward from the version before in business
//! time, a row only when a value changes).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;

use dvault::events::{self, NewEvent};
use dvault::generate::{GenOptions, generate};
use dvault::load::business::past_days;

use crate::harness::{TestDb, load_all_with};

// ----------------------------------------------------------------------------------
// The events

fn at(day: NaiveDate, hms: (u32, u32, u32)) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hms.0, hms.1, hms.2).expect("time of day");
    day.and_time(time).and_utc()
}

fn ev(id: String, ty: &str, time: DateTime<Utc>, data: Value) -> NewEvent {
    NewEvent {
        event_id: id,
        event_type: ty.into(),
        source: "oracle".into(),
        occurred_at: time,
        payload: data.to_string(),
    }
}

/// `events.ndjson` of a generated world ending yesterday, as the log will hold it.
pub(crate) fn generated_world(end: NaiveDate) -> Vec<NewEvent> {
    generated_world_of(end, 300, 900, 150)
}

/// `dvault gen`'s world (seed 15, 120 products) of this size, as events to append.
pub(crate) fn generated_world_of(
    end: NaiveDate,
    customers: usize,
    orders: usize,
    days: u32,
) -> Vec<NewEvent> {
    let out = std::env::temp_dir().join(format!("dvault-oracle-{}", rand::random::<u64>()));
    generate(&GenOptions {
        seed: 15,
        customers,
        products: 120,
        orders,
        days,
        end,
        dirty: 0.0,
        out: out.clone(),
    })
    .expect("generate");
    let text = std::fs::read_to_string(out.join("events.ndjson")).expect("events.ndjson");
    let _ = std::fs::remove_dir_all(&out);
    text.lines()
        .map(|line| {
            let e: Value = serde_json::from_str(line).expect("generated CloudEvent");
            let time = DateTime::parse_from_rfc3339(e["time"].as_str().expect("time"))
                .expect("time")
                .with_timezone(&Utc);
            NewEvent {
                event_id: e["id"].as_str().expect("id").into(),
                event_type: e["type"].as_str().expect("type").into(),
                source: e["source"].as_str().expect("source").into(),
                occurred_at: time,
                payload: e["data"].to_string(),
            }
        })
        .collect()
}

/// Order offsets (days before the last order) and the days since the last order at
/// the reference date, on both sides of each threshold of the documented rule.
fn threshold_customers() -> Vec<(&'static str, Vec<i64>, Vec<i64>)> {
    vec![
        // one order: at risk after 60 days, churned after 90 (the old function said
        // at risk after 14)
        ("one", vec![0], vec![13, 14, 15, 22, 59, 60, 61, 89, 90, 91]),
        // gap 4: the 14-day floor, then 90 days
        ("g4", vec![4, 0], vec![14, 15, 90, 91]),
        // gap 20: 1.5 × gap = 30, then 90 days
        ("g20", vec![20, 0], vec![30, 31, 90, 91]),
        // gap 35: 1.5 × gap = 52.5, then 3 × gap = 105
        ("g35", vec![35, 0], vec![52, 53, 105, 106]),
        // gap 50: the 60-day cap, then 3 × gap = 150
        ("g50", vec![50, 0], vec![60, 61, 150, 151]),
        // 21 orders over 199 days: gap 9.95, shown (and used) as 10.0, so 15 days
        // is not past max(14, 15.0)
        (
            "g9.95",
            std::iter::once(199)
                .chain((1..20).map(|i| 200 - 10 * i))
                .chain(std::iter::once(0))
                .collect(),
            vec![14, 15, 16],
        ),
    ]
}

/// The hand-built part of the world: threshold customers for each reference date, a
/// product they buy, and two customers with a late partial update (the late events
/// come last in the log).
fn hand_built(today: NaiveDate, references: &[NaiveDate]) -> (Vec<NewEvent>, Vec<NewEvent>) {
    let start = today - Duration::days(400);
    let mut events = vec![ev(
        "oracle-product".into(),
        "product_listed",
        at(start, (0, 0, 0)),
        json!({"product_id": "TP1", "name": "Oracle", "category": "Oracle", "brand": "Test", "price": "19.99"}),
    )];
    for (k, reference) in references.iter().enumerate() {
        for (label, offsets, days) in threshold_customers() {
            for d in days {
                let customer = format!("T{k}-{label}-{d:03}");
                for (i, offset) in offsets.iter().enumerate() {
                    let day = *reference - Duration::days(d + offset);
                    let order = format!("{customer}-{i}");
                    events.push(ev(
                        format!("placed-{order}"),
                        "order_placed",
                        at(day, (6, 0, 0)),
                        json!({"order_id": order, "customer_id": customer,
                               "ordered_at": at(day, (6, 0, 0)).to_rfc3339(), "channel": "web",
                               "status": "placed",
                               "lines": [{"line_no": 1, "product_id": "TP1", "quantity": 1 + i % 3,
                                          "unit_price": format!("{}.99", 10 + d), "discount": "0.50"}]}),
                    ));
                }
            }
        }
    }
    // Late partial updates: registered 100 days ago, a partial change 60 days ago, and
    // (arriving last) a partial change dated 90 days ago of another column. The
    // version of 60 days ago, already written, carried the old value forward.
    let mut late = Vec::new();
    for (customer, city) in [("TL1", "Rome"), ("TL2", "Oslo")] {
        let day = |n| at(today - Duration::days(n), (9, 0, 0));
        events.push(ev(
            format!("registered-{customer}"),
            "customer_registered",
            day(100),
            json!({"customer_id": customer, "first_name": "Late", "last_name": "Partial",
                   "email": format!("{customer}@old.example"), "phone": "111", "city": city,
                   "country": "IT", "signup_date": (today - Duration::days(100)).to_string()}),
        ));
        events.push(ev(
            format!("updated-{customer}"),
            "customer_updated",
            day(60),
            json!({"customer_id": customer, "last_name": "Partial-Two", "phone": "222"}),
        ));
        late.push(ev(
            format!("late-{customer}"),
            "customer_updated",
            day(90),
            json!({"customer_id": customer, "city": "Milan", "email": format!("{customer}@new.example")}),
        ));
    }
    (events, late)
}

// ----------------------------------------------------------------------------------
// The oracle's vault: satellites as docs/mappings.md says the loader writes them

type Values = BTreeMap<&'static str, String>;

/// One satellite's versions for one key, in business time (applied, log position).
#[derive(Default)]
struct Timeline(Vec<(DateTime<Utc>, usize, Values)>);

impl Timeline {
    /// Insert-only: the new row takes what it does not state from the version before
    /// it in business time and is written only when that changes a value.
    fn write(&mut self, applied: DateTime<Utc>, seq: usize, stated: Values) {
        if stated.is_empty() {
            return;
        }
        let pos = self
            .0
            .partition_point(|(a, s, _)| (*a, *s) < (applied, seq));
        let mut values = pos
            .checked_sub(1)
            .map(|p| self.0[p].2.clone())
            .unwrap_or_default();
        let before = values.clone();
        values.extend(stated);
        if pos == 0 || values != before {
            self.0.insert(pos, (applied, seq, values));
        }
    }

    /// The version in force at `ts` (`None`: the current one), with its business time.
    fn at(&self, ts: Option<DateTime<Utc>>) -> Option<(DateTime<Utc>, &Values)> {
        self.0
            .iter()
            .rev()
            .find(|(a, _, _)| ts.is_none_or(|ts| *a <= ts))
            .map(|(a, _, v)| (*a, v))
    }
}

#[derive(Default)]
struct Vault {
    customers: BTreeSet<String>,
    profile: HashMap<String, Timeline>,
    contact: HashMap<String, Timeline>,
    product: HashMap<String, Timeline>,
    /// order → customer (the first link)
    order_customer: BTreeMap<String, String>,
    order_details: HashMap<String, Timeline>,
    order_status: HashMap<String, Timeline>,
    /// order → (line_no, product) → line versions
    lines: HashMap<String, BTreeMap<(String, String), Timeline>>,
    /// customer, viewed_at
    views: Vec<(String, DateTime<Utc>)>,
}

/// A payload value as the canonical text of its column type (numbers as written,
/// money in cents); absent and null state nothing.
fn text(data: &Value, field: &str) -> Option<String> {
    match data.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn stated(data: &Value, columns: &[&'static str]) -> Values {
    columns
        .iter()
        .filter_map(|c| {
            let v = text(data, c)?;
            let v = match *c {
                "unit_price" | "discount" | "price" => cents(&v).to_string(),
                "ordered_at" => timestamp(&v).to_rfc3339(),
                _ => v,
            };
            Some((*c, v))
        })
        .collect()
}

/// A decimal as hundredths, rounded half away from zero (numeric(12,2)).
fn cents(s: &str) -> i64 {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits: Vec<u32> = frac
        .chars()
        .map(|c| c.to_digit(10).expect("digit"))
        .collect();
    let mut v = int.parse::<i64>().expect("integer part") * 100
        + i64::from(*digits.first().unwrap_or(&0)) * 10
        + i64::from(*digits.get(1).unwrap_or(&0));
    if *digits.get(2).unwrap_or(&0) >= 5 {
        v += 1;
    }
    if neg { -v } else { v }
}

fn timestamp(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("timestamp")
        .with_timezone(&Utc)
}

impl Vault {
    fn replay(log: &[NewEvent]) -> Vault {
        let mut v = Vault::default();
        for (seq, e) in log.iter().enumerate() {
            let d: Value = serde_json::from_str(&e.payload).expect("payload");
            let t = e.occurred_at;
            let key = |f: &str| text(&d, f).expect("business key");
            match e.event_type.as_str() {
                "customer_registered" | "customer_updated" => {
                    let c = key("customer_id");
                    let mut profile = vec!["first_name", "last_name", "city", "country"];
                    if e.event_type == "customer_registered" {
                        profile.push("signup_date");
                    }
                    v.profile
                        .entry(c.clone())
                        .or_default()
                        .write(t, seq, stated(&d, &profile));
                    v.contact.entry(c.clone()).or_default().write(
                        t,
                        seq,
                        stated(&d, &["email", "phone"]),
                    );
                    v.customers.insert(c);
                }
                "product_listed" | "product_updated" => {
                    v.product.entry(key("product_id")).or_default().write(
                        t,
                        seq,
                        stated(&d, &["name", "category", "brand", "price"]),
                    );
                }
                "order_placed" => {
                    let (o, c) = (key("order_id"), key("customer_id"));
                    v.order_customer.entry(o.clone()).or_insert(c.clone());
                    v.customers.insert(c);
                    v.order_details.entry(o.clone()).or_default().write(
                        t,
                        seq,
                        stated(&d, &["ordered_at", "channel"]),
                    );
                    v.order_status.entry(o.clone()).or_default().write(
                        t,
                        seq,
                        stated(&d, &["status"]),
                    );
                    for line in d["lines"].as_array().expect("lines") {
                        v.lines
                            .entry(o.clone())
                            .or_default()
                            .entry((
                                text(line, "line_no").expect("line_no"),
                                text(line, "product_id").expect("product_id"),
                            ))
                            .or_default()
                            .write(
                                t,
                                seq,
                                stated(line, &["quantity", "unit_price", "discount"]),
                            );
                    }
                }
                "order_status_changed" => {
                    v.order_status.entry(key("order_id")).or_default().write(
                        t,
                        seq,
                        stated(&d, &["status"]),
                    );
                }
                "product_viewed" => {
                    let c = key("customer_id");
                    v.views.push((c.clone(), timestamp(&key("viewed_at"))));
                    v.customers.insert(c);
                }
                other => panic!("the oracle does not know event type {other}"),
            }
        }
        v
    }
}

// ----------------------------------------------------------------------------------
// The documented rules (docs/analysts.md, "How the figures are defined")

/// `num / den` rounded half away from zero to `scale` decimals, as PostgreSQL prints it.
fn decimal(num: i128, den: i128, scale: u32) -> String {
    assert!(den != 0);
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    let scaled = num.abs() * 10i128.pow(scale);
    let q = (2 * scaled + den) / (2 * den);
    let sign = if num < 0 && q != 0 { "-" } else { "" };
    let p = 10i128.pow(scale);
    if scale == 0 {
        format!("{sign}{q}")
    } else {
        format!("{sign}{}.{:0width$}", q / p, q % p, width = scale as usize)
    }
}

fn money(c: i64) -> String {
    decimal(i128::from(c), 100, 2)
}

fn ts_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

/// "Churn risk": `gap_tenths` is the average gap as avg_days_between_orders shows it.
fn churn_risk(days: i64, gap_tenths: Option<i64>) -> &'static str {
    let churned = 10 * days > gap_tenths.map_or(900, |g| (3 * g).max(900));
    let at_risk = match gap_tenths {
        Some(g) => 100 * days > (15 * g).clamp(1400, 6000),
        None => days > 60,
    };
    if churned {
        "churned"
    } else if at_risk {
        "at risk"
    } else {
        "active"
    }
}

/// The segment table, first match wins; `FM = round((F + M) / 2)`, halves up.
fn segment(r: i64, f: i64, m: i64) -> &'static str {
    let fm = (f + m + 1) / 2;
    // segment, R from..to, FM from..to
    type Rule = (&'static str, (i64, i64), (i64, i64));
    let table: [Rule; 11] = [
        ("Champions", (5, 5), (4, 5)),
        ("Loyal", (3, 4), (4, 5)),
        ("Potential Loyalist", (4, 5), (2, 3)),
        ("New", (5, 5), (1, 1)),
        ("Promising", (4, 4), (1, 1)),
        ("Need Attention", (3, 3), (3, 3)),
        ("About to Sleep", (3, 3), (1, 2)),
        ("Can't Lose Them", (1, 2), (5, 5)),
        ("At Risk", (1, 2), (3, 4)),
        ("Lost", (1, 1), (1, 1)),
        ("Hibernating", (1, 2), (1, 2)),
    ];
    table
        .iter()
        .find(|(_, rr, fr)| (rr.0..=rr.1).contains(&r) && (fr.0..=fr.1).contains(&fm))
        .map(|(s, _, _)| *s)
        .expect("every R and FM has a segment")
}

const SEGMENTS: [&str; 12] = [
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "Can't Lose Them",
    "At Risk",
    "Hibernating",
    "Lost",
    "Prospect",
];

/// `1 + floor(5 × b / n)`, b = how many of the population are strictly smaller.
fn quintile<T: Ord>(sorted: &[T], x: &T) -> i64 {
    let below = sorted.partition_point(|v| v < x) as i64;
    1 + 5 * below / sorted.len() as i64
}

struct Order {
    customer: String,
    at: DateTime<Utc>,
    counted: bool,
    cents: i64,
    /// product, quantity, amount in cents
    lines: Vec<(String, i64, i64)>,
}

#[derive(Default)]
struct Figures {
    counted: i64,
    lost: i64,
    cents: i64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    /// category → (units, cents)
    categories: BTreeMap<String, (i64, i64)>,
}

/// One customer's row: the columns the test compares, by name.
type Row = BTreeMap<&'static str, Option<String>>;

/// The Customer 360 at business time `ts` (`None`: the current state), measured
/// against `reference`: customer id → row.
fn customer_360(
    v: &Vault,
    ts: Option<DateTime<Utc>>,
    reference: NaiveDate,
) -> BTreeMap<String, Row> {
    // orders placed by ts, with the status and lines they had then
    let mut orders = Vec::new();
    for (o, customer) in &v.order_customer {
        let Some((applied, details)) = v.order_details.get(o).and_then(|t| t.at(ts)) else {
            continue;
        };
        let placed = details.get("ordered_at").map_or(applied, |s| timestamp(s));
        if ts.is_some_and(|ts| placed > ts) {
            continue;
        }
        let status = v
            .order_status
            .get(o)
            .and_then(|t| t.at(ts))
            .and_then(|(_, s)| s.get("status").cloned())
            .unwrap_or_else(|| "placed".into());
        let mut lines = Vec::new();
        for ((_, product), t) in v.lines.get(o).into_iter().flatten() {
            if let Some((_, l)) = t.at(ts) {
                let q: i64 = l["quantity"].parse().expect("quantity");
                let amount = q * l["unit_price"].parse::<i64>().expect("price")
                    - l.get("discount")
                        .map_or(0, |d| d.parse::<i64>().expect("discount"));
                lines.push((product.clone(), q, amount));
            }
        }
        orders.push(Order {
            customer: customer.clone(),
            at: placed,
            counted: status != "cancelled" && status != "returned",
            cents: lines.iter().map(|l| l.2).sum(),
            lines,
        });
    }
    let mut figures: BTreeMap<&str, Figures> = BTreeMap::new();
    for o in &orders {
        let f = figures.entry(&o.customer).or_default();
        if !o.counted {
            f.lost += 1;
            continue;
        }
        f.counted += 1;
        f.cents += o.cents;
        f.first = Some(f.first.map_or(o.at, |a| a.min(o.at)));
        f.last = f.last.max(Some(o.at));
        for (product, q, amount) in &o.lines {
            let category = v
                .product
                .get(product)
                .and_then(|t| t.at(ts))
                .and_then(|(_, p)| p.get("category").cloned());
            if let Some(c) = category {
                let e = f.categories.entry(c).or_default();
                e.0 += q;
                e.1 += amount;
            }
        }
    }
    // who existed at ts
    let known: BTreeSet<&String> = match ts {
        None => v.customers.iter().collect(),
        Some(ts) => v
            .customers
            .iter()
            .filter(|c| {
                let has = |m: &HashMap<String, Timeline>| {
                    m.get(*c).is_some_and(|t| t.at(Some(ts)).is_some())
                };
                has(&v.profile)
                    || has(&v.contact)
                    || figures.contains_key(c.as_str())
                    || v.views.iter().any(|(vc, at)| vc == *c && *at <= ts)
            })
            .collect(),
    };
    // RFM population: customers with a counted order
    let scored: Vec<&Figures> = figures.values().filter(|f| f.counted > 0).collect();
    let mut recency: Vec<NaiveDate> = scored
        .iter()
        .map(|f| f.last.expect("last").date_naive())
        .collect();
    let mut frequency: Vec<i64> = scored.iter().map(|f| f.counted).collect();
    let mut monetary: Vec<i64> = scored.iter().map(|f| f.cents).collect();
    recency.sort();
    frequency.sort();
    monetary.sort();

    let mut out = BTreeMap::new();
    for c in known {
        let mut row = Row::new();
        let profile = v.profile.get(c).and_then(|t| t.at(ts)).map(|(_, p)| p);
        for col in ["first_name", "last_name", "city", "country", "signup_date"] {
            row.insert(col, profile.and_then(|p| p.get(col).cloned()));
        }
        if ts.is_none() {
            let contact = v.contact.get(c).and_then(|t| t.at(None)).map(|(_, p)| p);
            for col in ["email", "phone"] {
                row.insert(col, contact.and_then(|p| p.get(col).cloned()));
            }
        }
        let none = Figures::default();
        let f = figures.get(c.as_str()).unwrap_or(&none);
        row.insert("orders_count", Some(f.counted.to_string()));
        row.insert("orders_cancelled_or_returned", Some(f.lost.to_string()));
        row.insert("total_spent", Some(money(f.cents)));
        row.insert("clv_historic", Some(money(f.cents)));
        row.insert(
            "avg_order_value",
            (f.counted > 0).then(|| decimal(f.cents.into(), i128::from(f.counted) * 100, 2)),
        );
        row.insert("first_order_at", f.first.map(ts_text));
        row.insert("last_order_at", f.last.map(ts_text));
        // most units, then more money, then the category name
        row.insert(
            "favourite_category",
            f.categories
                .iter()
                .max_by(|a, b| {
                    (a.1.0, a.1.1)
                        .cmp(&(b.1.0, b.1.1))
                        .then_with(|| b.0.cmp(a.0))
                })
                .map(|(c, _)| c.clone()),
        );
        let (first, last) = match (f.first, f.last) {
            (Some(a), Some(b)) if f.counted > 0 => (a.date_naive(), b.date_naive()),
            _ => {
                for col in [
                    "days_since_last_order",
                    "avg_days_between_orders",
                    "recency_score",
                    "frequency_score",
                    "monetary_score",
                    "rfm_cell",
                    "churn_risk",
                ] {
                    row.insert(col, None);
                }
                row.insert("segment", Some("Prospect".into()));
                row.insert("clv_predicted_12m", Some("0.00".into()));
                row.insert("is_churned", Some("false".into()));
                out.insert(c.clone(), row);
                continue;
            }
        };
        let days = (reference - last).num_days();
        let span = (last - first).num_days();
        let gap_tenths = (f.counted > 1).then(|| {
            decimal(i128::from(span) * 10, i128::from(f.counted - 1), 0)
                .parse::<i64>()
                .expect("tenths")
        });
        let (r, fr, m) = (
            quintile(&recency, &last),
            quintile(&frequency, &f.counted),
            quintile(&monetary, &f.cents),
        );
        let risk = churn_risk(days, gap_tenths);
        let (keep, of) = match risk {
            "active" => (1, 1),
            "at risk" => (1, 2),
            _ => (0, 1),
        };
        let since_first = (reference - first).num_days().max(90);
        row.insert("days_since_last_order", Some(days.to_string()));
        row.insert(
            "avg_days_between_orders",
            (f.counted > 1).then(|| decimal(span.into(), (f.counted - 1).into(), 1)),
        );
        row.insert("recency_score", Some(r.to_string()));
        row.insert("frequency_score", Some(fr.to_string()));
        row.insert("monetary_score", Some(m.to_string()));
        row.insert("rfm_cell", Some(format!("{r}{fr}{m}")));
        row.insert("segment", Some(segment(r, fr, m).into()));
        row.insert(
            "clv_predicted_12m",
            Some(decimal(
                i128::from(f.cents) * 365 * keep,
                100 * i128::from(since_first) * of,
                2,
            )),
        );
        row.insert("churn_risk", Some(risk.into()));
        row.insert("is_churned", Some((risk == "churned").to_string()));
        out.insert(c.clone(), row);
    }
    out
}

fn get<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col).and_then(|v| v.as_deref())
}

fn count(rows: &[&Row], pred: impl Fn(&Row) -> bool) -> i128 {
    rows.iter().filter(|r| pred(r)).count() as i128
}

/// `mart.segments` over these customers: per segment, in the table's order.
fn segments(customers: &BTreeMap<String, Row>) -> Vec<Row> {
    let all: Vec<&Row> = customers.values().collect();
    let spent_of = |r: &Row| cents(get(r, "total_spent").expect("total_spent"));
    let total = all.len() as i128;
    let revenue: i128 = all.iter().map(|r| i128::from(spent_of(r))).sum();
    SEGMENTS
        .iter()
        .map(|s| {
            let rows: Vec<&Row> = all
                .iter()
                .copied()
                .filter(|r| get(r, "segment") == Some(s))
                .collect();
            let n = rows.len() as i128;
            let sum = |col: &str, scale: fn(&str) -> i128| -> (i128, i128) {
                let vals: Vec<i128> = rows.iter().filter_map(|r| get(r, col)).map(scale).collect();
                (vals.iter().sum(), vals.len() as i128)
            };
            let spent: i128 = rows.iter().map(|r| i128::from(spent_of(r))).sum();
            let (orders, _) = sum("orders_count", |v| v.parse().expect("int"));
            let (days, with_days) = sum("days_since_last_order", |v| v.parse().expect("int"));
            let (clv, _) = sum("clv_predicted_12m", |v| cents(v).into());
            let mut row = Row::new();
            row.insert("segment", Some(s.to_string()));
            row.insert("customers", Some(n.to_string()));
            row.insert(
                "customers_pct",
                (total > 0).then(|| decimal(100 * n, total, 2)),
            );
            row.insert("revenue", Some(decimal(spent, 100, 2)));
            row.insert(
                "revenue_pct",
                (n > 0 && revenue != 0).then(|| decimal(100 * spent, revenue, 2)),
            );
            row.insert("avg_orders", (n > 0).then(|| decimal(orders, n, 2)));
            row.insert(
                "avg_total_spent",
                (n > 0).then(|| decimal(spent, 100 * n, 2)),
            );
            row.insert(
                "avg_days_since_last_order",
                (with_days > 0).then(|| decimal(days, with_days, 1)),
            );
            row.insert("clv_predicted_12m", Some(decimal(clv, 100, 2)));
            row
        })
        .collect()
}

/// `mart.churn` over these customers.
fn churn(customers: &BTreeMap<String, Row>) -> Row {
    let all: Vec<&Row> = customers.values().collect();
    let buyers = count(&all, |r| get(r, "orders_count") != Some("0"));
    let risk = |k: &'static str| count(&all, move |r| get(r, "churn_risk") == Some(k));
    let rate = |n: i128| (buyers > 0).then(|| decimal(n, buyers, 4));
    let mut row = Row::new();
    row.insert("customers_with_orders", Some(buyers.to_string()));
    row.insert("active", Some(risk("active").to_string()));
    row.insert("at_risk", Some(risk("at risk").to_string()));
    row.insert("churned", Some(risk("churned").to_string()));
    row.insert("churn_rate", rate(risk("churned")));
    row.insert("at_risk_rate", rate(risk("at risk")));
    row.insert(
        "prospects",
        Some(count(&all, |r| get(r, "orders_count") == Some("0")).to_string()),
    );
    row.insert("customers", Some(all.len().to_string()));
    row
}

// ----------------------------------------------------------------------------------
// Comparing with the database

const CUSTOMER_COLUMNS: [&str; 26] = [
    "customer_id",
    "first_name",
    "last_name",
    "city",
    "country",
    "signup_date",
    "email",
    "phone",
    "orders_count",
    "orders_cancelled_or_returned",
    "total_spent",
    "avg_order_value",
    "first_order_at",
    "last_order_at",
    "days_since_last_order",
    "avg_days_between_orders",
    "favourite_category",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "rfm_cell",
    "segment",
    "clv_historic",
    "clv_predicted_12m",
    "churn_risk",
    "is_churned",
];

const SEGMENT_COLUMNS: [&str; 9] = [
    "segment",
    "customers",
    "customers_pct",
    "revenue",
    "revenue_pct",
    "avg_orders",
    "avg_total_spent",
    "avg_days_since_last_order",
    "clv_predicted_12m",
];

const CHURN_COLUMNS: [&str; 8] = [
    "customers_with_orders",
    "active",
    "at_risk",
    "churned",
    "churn_rate",
    "at_risk_rate",
    "prospects",
    "customers",
];

/// `columns` of `from`, each as PostgreSQL's text, in the relation's row order.
async fn select(client: &Client, columns: &[&'static str], from: &str) -> Vec<Row> {
    let list: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let sql = format!("SELECT {} FROM {from}", list.join(", "));
    client
        .query(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, r.get::<_, Option<String>>(i)))
                .collect()
        })
        .collect()
}

/// Every difference between the oracle's rows and the database's, one line each.
fn differences(what: &str, expected: &[(String, Row)], got: &[(String, Row)]) -> Vec<String> {
    let expected: BTreeMap<&String, &Row> = expected.iter().map(|(k, r)| (k, r)).collect();
    let got: BTreeMap<&String, &Row> = got.iter().map(|(k, r)| (k, r)).collect();
    let mut out = Vec::new();
    for k in expected.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        match (expected.get(k), got.get(k)) {
            (Some(e), Some(g)) => {
                assert!(
                    e.keys().eq(g.keys()),
                    "{what}: the oracle computes {:?}, the test selects {:?}",
                    e.keys().collect::<Vec<_>>(),
                    g.keys().collect::<Vec<_>>()
                );
                for (col, want) in e.iter() {
                    let have = g.get(col).expect("column selected");
                    if want != have {
                        out.push(format!("{what} {k} {col}: oracle {want:?}, view {have:?}"));
                    }
                }
            }
            (Some(_), None) => out.push(format!("{what}: {k} missing")),
            (None, _) => out.push(format!("{what}: {k} not expected")),
        }
    }
    out
}

fn keyed(rows: Vec<Row>, key: &str) -> Vec<(String, Row)> {
    rows.into_iter()
        .map(|r| (get(&r, key).expect("key").to_string(), r))
        .collect()
}

/// Compare the views at one business time (`None`: the current views, in one
/// transaction so that today is one day throughout) with the oracle.
async fn compare(
    client: &Client,
    v: &Vault,
    ts: Option<DateTime<Utc>>,
) -> (Vec<String>, BTreeMap<String, Row>) {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("begin");
    let (reference, sources) = match ts {
        None => {
            let today: NaiveDate = client
                .query_one("SELECT (now() AT TIME ZONE 'UTC')::date", &[])
                .await
                .expect("today")
                .get(0);
            let s = [
                "mart.customer_360".to_string(),
                "mart.segments".into(),
                "mart.churn".into(),
            ];
            (today, s)
        }
        Some(ts) => {
            let t = ts.to_rfc3339();
            let s = [
                format!("mart.customer_360_as_of('{t}')"),
                format!("mart.segments_as_of('{t}')"),
                format!("mart.churn_as_of('{t}')"),
            ];
            (ts.date_naive(), s)
        }
    };
    let columns: Vec<&str> = CUSTOMER_COLUMNS
        .iter()
        .copied()
        .filter(|c| ts.is_none() || !matches!(*c, "email" | "phone"))
        .collect();
    let got_customers = select(client, &columns, &sources[0]).await;
    let got_segments = select(client, &SEGMENT_COLUMNS, &sources[1]).await;
    let got_churn = select(client, &CHURN_COLUMNS, &sources[2]).await;
    // the one-customer path of GET /customers/{id}?as_of=, asked for every customer
    // (twice: the second answer scores against the remembered RFM boundaries)
    let mut got_one_by_one = Vec::new();
    if let Some(ts) = ts {
        let one_by_one = format!(
            "(SELECT c.* FROM raw_vault.hub_customer h
               CROSS JOIN LATERAL mart.customer_360_as_of('{}', h.hk_customer) c) one",
            ts.to_rfc3339()
        );
        for _ in 0..2 {
            got_one_by_one.push(select(client, &columns, &one_by_one).await);
        }
    }
    client.batch_execute("COMMIT").await.expect("commit");

    let expected = customer_360(v, ts, reference);
    let when = ts.map_or("today".to_string(), |t| t.to_rfc3339());
    let expected_customers: Vec<(String, Row)> = expected
        .iter()
        .map(|(k, r)| {
            let mut r = r.clone();
            r.insert("customer_id", Some(k.clone()));
            (k.clone(), r)
        })
        .collect();
    let mut diffs = differences(
        &format!("{} at {when}", sources[0]),
        &expected_customers,
        &keyed(got_customers, "customer_id"),
    );
    for got in got_one_by_one {
        diffs.extend(differences(
            &format!("mart.customer_360_as_of(ts, customer) at {when}"),
            &expected_customers,
            &keyed(got, "customer_id"),
        ));
    }
    let segments_expected = segments(&expected);
    let order: Vec<Option<&str>> = got_segments.iter().map(|r| get(r, "segment")).collect();
    let order_expected: Vec<Option<&str>> = segments_expected
        .iter()
        .map(|r| get(r, "segment"))
        .collect();
    if order != order_expected {
        diffs.push(format!(
            "{} rows in order {order:?}, not {order_expected:?}",
            sources[1]
        ));
    }
    diffs.extend(differences(
        &format!("{} at {when}", sources[1]),
        &keyed(segments_expected, "segment"),
        &keyed(got_segments, "segment"),
    ));
    diffs.extend(differences(
        &format!("{} at {when}", sources[2]),
        &[("churn".into(), churn(&expected))],
        &got_churn
            .into_iter()
            .map(|r| ("churn".to_string(), r))
            .collect::<Vec<_>>(),
    ));
    (diffs, expected)
}

// ----------------------------------------------------------------------------------
// Late partial updates: the query docs/analysts.md gives to spot them

const ANALYSTS_MD: &str = include_str!("../../docs/analysts.md");

/// The first SQL block of docs/analysts.md that reads `sat_customer_profile_history`
/// with `next_event_seq`: the query analysts are told to run.
fn late_partial_query() -> &'static str {
    ANALYSTS_MD
        .split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(sql, _)| sql))
        .find(|sql| sql.contains("next_event_seq"))
        .expect("docs/analysts.md has the late partial query")
}

/// Customers and columns whose current value differs from what the events give when
/// folded in business-time order (what a late partial event leaves behind).
fn stale(
    insert_only: &HashMap<String, Timeline>,
    folded: &HashMap<String, Timeline>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (c, t) in insert_only {
        let now = t.at(None).map(|(_, v)| v);
        let truth = folded.get(c).and_then(|t| t.at(None)).map(|(_, v)| v);
        for col in [
            "first_name",
            "last_name",
            "city",
            "country",
            "email",
            "phone",
        ] {
            if now.and_then(|v| v.get(col)) != truth.and_then(|v| v.get(col)) {
                out.insert((c.clone(), col.to_string()));
            }
        }
    }
    out
}

/// The documented query finds every late partial change the oracle knows of, in the
/// profile and (with the columns swapped) in the contact satellite.
async fn late_partials_are_found(client: &Client, log: &[NewEvent], vault: &Vault) {
    let mut in_business_order: Vec<NewEvent> = log.to_vec();
    in_business_order.sort_by_key(|e| e.occurred_at);
    let folded = Vault::replay(&in_business_order);
    let mut expected = stale(&vault.profile, &folded.profile);
    expected.extend(stale(&vault.contact, &folded.contact));
    let profile = late_partial_query();
    let contact = profile
        .replace("first_name, last_name, city, country", "email, phone")
        .replace(
            "sat_customer_profile_history",
            "sat_customer_contact_history",
        )
        .replace(
            "(1, 'first_name'), (2, 'last_name'), (3, 'city'), (4, 'country')",
            "(1, 'email'), (2, 'phone')",
        );
    let mut found = BTreeSet::new();
    for sql in [profile.to_string(), contact] {
        for r in client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        {
            found.insert((r.get::<_, String>(0), r.get::<_, String>(1)));
        }
    }
    for hand_built in ["TL1", "TL2"] {
        for col in ["city", "email"] {
            assert!(
                expected.contains(&(hand_built.to_string(), col.to_string())),
                "the oracle sees {hand_built}'s stale {col}"
            );
        }
    }
    let missed: Vec<_> = expected.difference(&found).collect();
    assert!(missed.is_empty(), "the documented query misses {missed:?}");
}

/// How the test loads the log: batch by batch (a refresh of the business vault per
/// batch) or on the bulk path (the business vault built once, at the end).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Batches,
    Bulk,
}

#[tokio::test]
async fn every_customer_360_figure_equals_an_independent_implementation_of_the_documented_rules() {
    the_oracle_holds(Path::Batches).await;
}

#[tokio::test]
async fn every_customer_360_figure_of_a_bulk_first_load_equals_the_oracle_too() {
    the_oracle_holds(Path::Bulk).await;
}

async fn the_oracle_holds(path: Path) {
    let today = Utc::now().date_naive();
    // a time of day, computed on request, and a day's end, kept by the loader
    let as_of = [
        at(today - Duration::days(30), (13, 37, 0)),
        past_days::day_end(today - Duration::days(80)),
    ];
    let references = [today, as_of[0].date_naive(), as_of[1].date_naive()];
    let mut log = generated_world(today - Duration::days(1));
    let (hand, late) = hand_built(today, &references);
    log.extend(hand);
    log.extend(late);

    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("time zone");
    events::append(&client, &log).await.expect("append");
    let mut loader = dvault::load::Loader::new(
        &client,
        dvault::mapping::Mappings::builtin().expect("mappings"),
    )
    .await
    .expect("loader");
    match path {
        Path::Batches => {
            loader.batch_size = 2_000;
            loader.bulk_min_events = None;
        }
        Path::Bulk => loader.bulk_min_events = Some(1),
    }
    let loaded = load_all_with(&mut client, &loader).await;
    assert_eq!((loaded.events, loaded.rejected), (log.len() as u64, 0));
    assert_eq!(!loaded.bulk.is_empty(), path == Path::Bulk, "{path:?}");
    // what a run's end does: keep every past day's figures, which the as-of day's end
    // then reads
    assert!(matches!(
        past_days::fill(&client).await.expect("fill"),
        past_days::Filled::Stored(_)
    ));
    let kept = client
        .query_one(
            "SELECT count(*) FROM business_vault.population_as_of WHERE by_loader AND as_of = $1",
            &[&as_of[1]],
        )
        .await
        .expect("kept");
    assert!(kept.get::<_, i64>(0) > 5, "the day's segments kept");

    let vault = Vault::replay(&log);
    let mut failures = Vec::new();
    for ts in [None, Some(as_of[0]), Some(as_of[1])] {
        let (diffs, expected) = compare(&client, &vault, ts).await;
        failures.extend(diffs);
        // the world covers what it is meant to: every churn class, and one-order
        // customers active past 14 days and at risk past 60
        let rows: Vec<&Row> = expected.values().collect();
        for risk in ["active", "at risk", "churned"] {
            assert!(
                count(&rows, |r| get(r, "churn_risk") == Some(risk)) > 0,
                "{risk} at {ts:?}"
            );
        }
        let one_order = |lo: i64, hi: i64, risk: &str| {
            count(&rows, |r| {
                get(r, "orders_count") == Some("1")
                    && get(r, "days_since_last_order")
                        .and_then(|d| d.parse::<i64>().ok())
                        .is_some_and(|d| (lo..=hi).contains(&d))
                    && get(r, "churn_risk") == Some(risk)
            })
        };
        assert!(one_order(15, 60, "active") > 0, "at {ts:?}");
        assert!(one_order(61, 90, "at risk") > 0, "at {ts:?}");
        assert!(expected.len() > 200, "at {ts:?}: {}", expected.len());
    }
    // a day without a load: the predicted CLVs the loader stores (V9) are of another
    // day, and the views compute them from the stored figures (garbage would show)
    client
        .batch_execute(
            "UPDATE business_vault.customer_scores_day SET scored_on = scored_on - 1;
             UPDATE business_vault.customer_360_current SET clv_predicted_12m = -1;
             UPDATE business_vault.segment_summary SET clv_predicted_12m = -1;",
        )
        .await
        .expect("age the stored day");
    failures.extend(compare(&client, &vault, None).await.0);
    late_partials_are_found(&client, &log, &vault).await;
    // the late partial updates: the current city and e-mail are the ones the version
    // of 60 days ago carried forward, the late values show between them
    let late_city =
        |t: Option<DateTime<Utc>>| customer_360(&vault, t, today)["TL1"]["city"].clone();
    assert_eq!(late_city(None).as_deref(), Some("Rome"));
    assert_eq!(late_city(Some(as_of[1])).as_deref(), Some("Milan"));
    assert!(
        failures.is_empty(),
        "{} differences, the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
