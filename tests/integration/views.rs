//! The business vault and the analyst views, against a small hand-made shop whose
//! every figure is computed by hand below.
//!
//! The shop (all times UTC, noon unless said otherwise; ts = 2024-07-01 00:00):
//!
//! | customer | orders (counted)                          | money  | last order |
//! | -------- | ----------------------------------------- | ------ | ---------- |
//! | C1 Rome  | 02-01 03-01 04-01 05-01 06-20 (+06-25 cancelled) | 480.00 | 06-20 |
//! | C2 Oslo  | 03-10 04-10 05-10 06-10                   | 320.00 | 06-10      |
//! | C3 Lima  | 02-15 03-15 05-01 (+06-01 returned 06-15) | 180.00 | 05-01      |
//! | C4 Paris | 02-20 03-01 (03-01 returned late: batch 2) | 20.00 | 03-01      |
//! | C5 Kyiv  | 01-15                                     | 1000.00 | 01-15     |
//! | C6 Rome  | none                                      |        |            |
//! | C7 Oslo  | 03-01 cancelled 03-02                     |        |            |
//! | C8       | 07-05, flat transaction file (no profile) | 30.00  | 07-05      |
//! | C9       | only a product view on 08-01              |        |            |
//!
//! RFM at ts (five scored customers; score = 1 + floor(5 × smaller / n)):
//! R by last order day C5 < C4 < C3 < C2 < C1 gives 1..5; F (order count) 1..5 in
//! the order C5 C4 C3 C2 C1; M C4 20 < C3 180 < C2 320 < C1 480 < C5 1000 gives 1..5.
//! FM = round((F + M) / 2): C1 R5 FM5 Champions, C2 R4 FM4 Loyal, C3 R3 FM3 Need
//! Attention, C4 R2 FM2 Hibernating, C5 R1 FM3 At Risk.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use dvault::events::{self, NewEvent};
use dvault::load::Loader;
use dvault::mapping::Mappings;

use crate::harness::{TestDb, load_all, load_all_with};

const TS: &str = "2024-07-01T00:00:00Z";

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn ev(id: &str, ty: &str, time: &str, data: Value) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        event_type: ty.into(),
        source: "test".into(),
        occurred_at: at(time),
        payload: data.to_string(),
    }
}

fn noon(day: &str) -> String {
    format!("{day}T12:00:00Z")
}

fn product(id: &str, name: &str, category: &str, price: &str) -> NewEvent {
    ev(
        &format!("listed-{id}"),
        "product_listed",
        "2024-01-01T00:00:00Z",
        json!({"product_id": id, "name": name, "category": category, "brand": "Acme", "price": price}),
    )
}

fn customer(id: &str, first_name: &str, city: &str, country: &str) -> NewEvent {
    ev(
        &format!("registered-{id}"),
        "customer_registered",
        "2024-01-01T09:00:00Z",
        json!({"customer_id": id, "first_name": first_name, "last_name": "Test",
               "email": format!("{}@example.com", first_name.to_lowercase()), "phone": "555",
               "city": city, "country": country, "signup_date": "2024-01-01"}),
    )
}

/// An order placed at noon of `day`, lines (product, quantity, unit price, discount).
fn order(id: &str, customer: &str, day: &str, lines: &[(&str, i64, &str, &str)]) -> NewEvent {
    let lines: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (p, q, price, discount))| {
            json!({"line_no": i + 1, "product_id": p, "quantity": q, "unit_price": price, "discount": discount})
        })
        .collect();
    ev(
        &format!("placed-{id}"),
        "order_placed",
        &noon(day),
        json!({"order_id": id, "customer_id": customer, "ordered_at": noon(day),
               "channel": "web", "status": "placed", "lines": lines}),
    )
}

/// An `order_placed` event `id` of (order, customer), recorded at noon of one day for an
/// order placed at noon of another (recorded, ordered), with its (channel, status) and
/// one line (product, quantity, unit price).
fn placed(
    id: &str,
    (order, customer): (&str, &str),
    (recorded, ordered): (&str, &str),
    (channel, status): (&str, &str),
    (product, quantity, price): (&str, i64, &str),
) -> NewEvent {
    ev(
        id,
        "order_placed",
        &noon(recorded),
        json!({"order_id": order, "customer_id": customer, "ordered_at": noon(ordered),
               "channel": channel, "status": status,
               "lines": [{"line_no": 1, "product_id": product, "quantity": quantity,
                          "unit_price": price, "discount": "0"}]}),
    )
}

fn status(order: &str, day: &str, status: &str) -> NewEvent {
    ev(
        &format!("{status}-{order}"),
        "order_status_changed",
        &noon(day),
        json!({"order_id": order, "status": status}),
    )
}

fn viewed(n: u32, customer: &str, product: &str, day: &str) -> NewEvent {
    ev(
        &format!("view-{n}"),
        "product_viewed",
        &noon(day),
        json!({"session_id": format!("s{n}"), "customer_id": customer, "product_id": product,
               "viewed_at": noon(day)}),
    )
}

/// Product `id` moved to `category` at noon of `day`.
fn recategorised(id: &str, day: &str, category: &str) -> NewEvent {
    ev(
        &format!("recategorised-{id}-{day}"),
        "product_updated",
        &noon(day),
        json!({"product_id": id, "category": category}),
    )
}

fn moved(id: &str, customer: &str, day: &str, city: &str) -> NewEvent {
    ev(
        id,
        "customer_updated",
        &noon(day),
        json!({"customer_id": customer, "city": city}),
    )
}

/// Everything but the late events.
fn shop() -> Vec<NewEvent> {
    let one = |p, q, price| [(p, q, price, "0")];
    vec![
        product("P1", "Novel", "Books", "50.00"),
        product("P2", "Robot", "Toys", "80"),
        product("P3", "Comic", "Books", "20"),
        product("P4", "Rake", "Garden", "10"),
        product("P5", "Castle", "Toys", "1000"),
        ev(
            "p3-recategorised",
            "product_updated",
            "2024-06-15T00:00:00Z",
            json!({"product_id": "P3", "category": "Comics"}),
        ),
        customer("C1", "Ann", "Rome", "IT"),
        customer("C2", "Bob", "Oslo", "NO"),
        customer("C3", "Cid", "Lima", "PE"),
        customer("C4", "Dan", "Paris", "FR"),
        customer("C5", "Eve", "Kyiv", "UA"),
        customer("C6", "Fay", "Rome", "IT"),
        customer("C7", "Gus", "Oslo", "NO"),
        moved("c1-milan", "C1", "2024-05-01", "Milan"),
        ev(
            "c1-email",
            "customer_updated",
            &noon("2024-06-01"),
            json!({"customer_id": "C1", "email": "ann2@example.com"}),
        ),
        order("O11", "C1", "2024-02-01", &one("P1", 2, "50")),
        order("O12", "C1", "2024-03-01", &one("P1", 2, "50")),
        order("O13", "C1", "2024-04-01", &one("P1", 2, "50")),
        order("O14", "C1", "2024-05-01", &one("P1", 2, "50")),
        order(
            "O15",
            "C1",
            "2024-06-20",
            &[("P1", 1, "50", "10.00"), ("P3", 2, "20", "0")],
        ),
        order("O16", "C1", "2024-06-25", &one("P5", 1, "999")),
        status("O16", "2024-06-26", "cancelled"),
        status("O11", "2024-02-02", "paid"),
        status("O11", "2024-02-04", "delivered"),
        order("O21", "C2", "2024-03-10", &one("P2", 1, "80")),
        order("O22", "C2", "2024-04-10", &one("P2", 1, "80")),
        order("O23", "C2", "2024-05-10", &one("P2", 1, "80")),
        order("O24", "C2", "2024-06-10", &one("P2", 1, "80")),
        order("O31", "C3", "2024-02-15", &one("P3", 3, "20")),
        order("O32", "C3", "2024-03-15", &one("P3", 3, "20")),
        order("O33", "C3", "2024-05-01", &one("P3", 3, "20")),
        order("O34", "C3", "2024-06-01", &one("P2", 4, "25")),
        status("O34", "2024-06-05", "delivered"),
        status("O34", "2024-06-15", "returned"),
        order("O41", "C4", "2024-02-20", &one("P4", 1, "10")),
        order("O42", "C4", "2024-03-01", &one("P4", 1, "10")),
        order("O51", "C5", "2024-01-15", &one("P5", 1, "1000")),
        order("O71", "C7", "2024-03-01", &one("P5", 1, "1000")),
        status("O71", "2024-03-02", "cancelled"),
        ev(
            "pos-1",
            "order_line_recorded",
            &noon("2024-07-05"),
            json!({"transaction_id": "T1", "order_id": "O81", "customer_id": "C8",
                   "product_id": "P4", "quantity": "3", "unit_price": "10.00",
                   "transaction_date": noon("2024-07-05")}),
        ),
        viewed(1, "C1", "P1", "2024-01-30"),
        viewed(2, "C2", "P1", "2024-03-09"),
        viewed(3, "C6", "P1", "2024-05-01"),
        viewed(4, "C6", "P1", "2024-05-02"),
        viewed(5, "C9", "P2", "2024-08-01"),
    ]
}

/// Events that arrive after the shop was loaded, with earlier business times: C1
/// lived in Turin from 03-01 and in Milan from 04-15 (so the 05-01 move to Milan
/// now repeats its predecessor), C4's order of 03-01 was returned on 03-05, and P4
/// (bought by C4 and C8) moves to Outdoor on 09-01, after ts.
fn late() -> Vec<NewEvent> {
    vec![
        moved("c1-turin", "C1", "2024-03-01", "Turin"),
        moved("c1-milan-early", "C1", "2024-04-15", "Milan"),
        status("O42", "2024-03-05", "returned"),
        ev(
            "p4-recategorised",
            "product_updated",
            "2024-09-01T00:00:00Z",
            json!({"product_id": "P4", "category": "Outdoor"}),
        ),
    ]
}

async fn setup(events: &[NewEvent]) -> (TestDb, Client) {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("time zone");
    append(&client, events).await;
    load_all(&mut client).await;
    (db, client)
}

/// A fresh database in UTC, and a loader of the built-in mappings that loads
/// `batch_size` events a batch.
async fn small_batches(batch_size: i64) -> (TestDb, Client, Loader) {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("time zone");
    let mut loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    loader.batch_size = batch_size;
    (db, client, loader)
}

async fn append(client: &Client, events: &[NewEvent]) {
    events::append(client, events).await.expect("append");
}

/// Each row of `sql` as PostgreSQL's text of the row, e.g. `(C1,5,480.00,,t)`.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(&format!("SELECT q::text FROM ({sql}) q"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// [`rows`] in sorted order: for comparing two queries' rows as sets.
async fn sorted_rows(client: &Client, sql: &str) -> Vec<String> {
    let mut rows = rows(client, sql).await;
    rows.sort();
    rows
}

const METRICS: &str = "customer_id, city, orders_count, orders_cancelled_or_returned, total_spent,
    avg_order_value, days_since_last_order, avg_days_between_orders, favourite_category,
    recency_score, frequency_score, monetary_score, rfm_cell, segment, clv_historic,
    clv_predicted_12m, churn_risk, is_churned";

async fn customer_360_as_of(client: &Client, ts: &str) -> Vec<String> {
    rows(
        client,
        &format!("SELECT {METRICS} FROM mart.customer_360_as_of('{ts}') ORDER BY customer_id"),
    )
    .await
}

#[tokio::test]
async fn customer_360_as_of_gives_the_hand_computed_rfm_clv_and_churn() {
    let (_db, client) = setup(&shop()).await;
    // days since last order: 11, 21, 61, 122, 168 (2024 is a leap year).
    // average gap: C1 140 days / 4 = 35.0, C2 92 / 3 = 30.7, C3 76 / 2 = 38.0, C4 10.
    // churn: C3 61 > min(60, max(14, 1.5 × 38)) = 57: at risk; C4 122 > max(90, 30)
    // and C5 168 > 90: churned.
    // predicted 12 months: C1 480 × 365 / 151 days = 1160.26; C2 320 × 365 / 113 =
    // 1033.63; C3 180 × 365 / 137 × 0.5 = 239.78; churned: 0.
    assert_eq!(
        customer_360_as_of(&client, TS).await,
        [
            "(C1,Milan,5,1,480.00,96.00,11,35.0,Books,5,5,4,554,Champions,480.00,1160.26,active,f)",
            "(C2,Oslo,4,0,320.00,80.00,21,30.7,Toys,4,4,3,443,Loyal,320.00,1033.63,active,f)",
            "(C3,Lima,3,1,180.00,60.00,61,38.0,Comics,3,3,2,332,\"Need Attention\",180.00,239.78,\"at risk\",f)",
            "(C4,Paris,2,0,20.00,10.00,122,10.0,Garden,2,2,1,221,Hibernating,20.00,0.00,churned,t)",
            "(C5,Kyiv,1,0,1000.00,1000.00,168,,Toys,1,1,5,115,\"At Risk\",1000.00,0.00,churned,t)",
            "(C6,Rome,0,0,0.00,,,,,,,,,Prospect,0.00,0.00,,f)",
            "(C7,Oslo,0,1,0.00,,,,,,,,,Prospect,0.00,0.00,,f)",
        ],
        "C8 (first order 07-05) and C9 (first seen 08-01) did not exist yet"
    );
    assert_eq!(
        rows(
            &client,
            &format!(
                "SELECT segment, customers, customers_pct, revenue FROM mart.segments_as_of('{TS}')"
            )
        )
        .await,
        [
            "(Champions,1,14.29,480.00)",
            "(Loyal,1,14.29,320.00)",
            "(\"Potential Loyalist\",0,0.00,0.00)",
            "(New,0,0.00,0.00)",
            "(Promising,0,0.00,0.00)",
            "(\"Need Attention\",1,14.29,180.00)",
            "(\"About to Sleep\",0,0.00,0.00)",
            "(\"Can't Lose Them\",0,0.00,0.00)",
            "(\"At Risk\",1,14.29,1000.00)",
            "(Hibernating,1,14.29,20.00)",
            "(Lost,0,0.00,0.00)",
            "(Prospect,2,28.57,0.00)",
        ]
    );
    assert_eq!(
        rows(&client, &format!("SELECT * FROM mart.churn_as_of('{TS}')")).await,
        ["(5,2,1,2,0.4000,0.2000,2,7)"]
    );
}

#[tokio::test]
async fn the_current_customer_360_reads_the_business_vault_and_equals_time_travel_to_now() {
    let (_db, mut client) = setup(&shop()).await;
    append(&client, &late()).await;
    load_all(&mut client).await;
    // Six scored customers now (C8 bought on 07-05; C4 has one counted order left):
    // R: C5 < C4 < C3 < C2 < C1 < C8 gives 1 1 2 3 4 5 (1 + floor(5 × smaller / 6));
    // F: C4 = C5 = C8 = 1 order share score 1, C3 3, C2 4, C1 5;
    // M: C4 10, C8 30, C3 180, C2 320, C1 480, C5 1000 give 1 1 2 3 4 5.
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, first_name, city, email, orders_count,
                    orders_cancelled_or_returned, total_spent, favourite_category, rfm_cell,
                    segment, clv_historic
               FROM mart.customer_360 ORDER BY customer_id"
        )
        .await,
        [
            "(C1,Ann,Milan,ann2@example.com,5,1,480.00,Books,454,Loyal,480.00)",
            "(C2,Bob,Oslo,bob@example.com,4,0,320.00,Toys,343,Loyal,320.00)",
            "(C3,Cid,Lima,cid@example.com,3,1,180.00,Comics,232,\"At Risk\",180.00)",
            "(C4,Dan,Paris,dan@example.com,1,1,10.00,Outdoor,111,Lost,10.00)",
            "(C5,Eve,Kyiv,eve@example.com,1,0,1000.00,Toys,115,\"At Risk\",1000.00)",
            "(C6,Fay,Rome,fay@example.com,0,0,0.00,,,Prospect,0.00)",
            "(C7,Gus,Oslo,gus@example.com,0,1,0.00,,,Prospect,0.00)",
            "(C8,,,,1,0,30.00,Outdoor,511,New,30.00)",
            "(C9,,,,0,0,0.00,,,Prospect,0.00)",
        ],
        "C8 and C9 have no profile: their PIT rows point at the ghost records"
    );
    // The materialized path (PIT, summaries, RFM boundaries) and the time-travel path
    // (satellite history) agree on every column, every customer, order and line.
    let columns = format!(
        "{METRICS}, first_name, last_name, country, signup_date, first_order_at, last_order_at, hk_customer"
    );
    for (current, as_of) in [
        (
            format!("SELECT {columns} FROM mart.customer_360"),
            format!("SELECT {columns} FROM mart.customer_360_as_of(now())"),
        ),
        (
            "SELECT * FROM mart.orders".to_string(),
            "SELECT * FROM mart.orders_as_of(now())".to_string(),
        ),
        (
            "SELECT * FROM mart.order_lines".to_string(),
            "SELECT * FROM mart.order_lines_as_of(now())".to_string(),
        ),
        (
            "SELECT * FROM mart.segments".to_string(),
            "SELECT * FROM mart.segments_as_of(now())".to_string(),
        ),
        (
            "SELECT * FROM mart.churn".to_string(),
            "SELECT * FROM mart.churn_as_of(now())".to_string(),
        ),
    ] {
        let a = sorted_rows(&client, &current).await;
        let b = sorted_rows(&client, &as_of).await;
        assert_eq!(a, b, "{current}");
        assert!(!a.is_empty());
    }
}

/// C1's city at `ts`.
async fn c1_city(client: &Client, ts: &str) -> Vec<String> {
    rows(
        client,
        &format!("SELECT city FROM mart.customer_360_as_of('{ts}') WHERE customer_id = 'C1'"),
    )
    .await
}

/// C3's orders, money and favourite category at `ts`.
async fn c3(client: &Client, ts: &str) -> Vec<String> {
    rows(
        client,
        &format!(
            "SELECT orders_count, total_spent, favourite_category
               FROM mart.customer_360_as_of('{ts}') WHERE customer_id = 'C3'"
        ),
    )
    .await
}

#[tokio::test]
async fn time_travel_before_and_after_a_change_and_a_late_correction() {
    let (_db, mut client) = setup(&shop()).await;
    assert_eq!(c1_city(&client, "2024-04-01T00:00:00Z").await, ["(Rome)"]);
    assert_eq!(c1_city(&client, "2024-04-20T00:00:00Z").await, ["(Rome)"]);
    assert_eq!(c1_city(&client, "2024-05-02T00:00:00Z").await, ["(Milan)"]);
    // C3 on 06-10: the order of 06-01 is delivered and counts; P3 is still in Books
    assert_eq!(
        c3(&client, "2024-06-10T00:00:00Z").await,
        ["(4,280.00,Books)"]
    );
    assert_eq!(c3(&client, TS).await, ["(3,180.00,Comics)"]);
    let revenue_0301 = "SELECT * FROM mart.revenue_daily WHERE day = '2024-03-01'";
    // C1 100.00 and C4 10.00 count; C7's 1000.00 was cancelled
    assert_eq!(
        rows(&client, revenue_0301).await,
        ["(2024-03-01,2,2,3,110.00,55.00,1,1000.00)"]
    );

    append(&client, &late()).await;
    load_all(&mut client).await;

    assert_eq!(c1_city(&client, "2024-04-01T00:00:00Z").await, ["(Turin)"]);
    assert_eq!(c1_city(&client, "2024-04-20T00:00:00Z").await, ["(Milan)"]);
    assert_eq!(
        rows(&client, revenue_0301).await,
        ["(2024-03-01,1,1,2,100.00,100.00,2,1010.00)"],
        "C4's order of that day was returned"
    );
    // On 03-03 the return had not happened yet (business time), though it is loaded.
    assert_eq!(
        rows(
            &client,
            "SELECT orders_count, total_spent FROM mart.customer_360_as_of('2024-03-03T00:00:00Z')
              WHERE customer_id = 'C4'"
        )
        .await,
        ["(2,20.00)"]
    );
    // At ts C4 has one counted order left: F 1 (tied with C5), R 2, M 1: Hibernating.
    assert_eq!(
        customer_360_as_of(&client, TS).await[3],
        "(C4,Paris,1,1,10.00,10.00,132,,Garden,2,1,1,211,Hibernating,10.00,0.00,churned,t)"
    );
    // Four rows in the satellite, three versions: the late Milan of 04-15 makes the
    // Milan of 05-01 a repeat, which the history folds.
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FROM raw_vault.sat_customer_profile s
               JOIN raw_vault.hub_customer h USING (hk_customer) WHERE h.customer_id = 'C1'"
        )
        .await,
        ["(4)"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT city, valid_from, valid_to, is_current
               FROM business_vault.sat_customer_profile_history
              WHERE customer_id = 'C1' ORDER BY valid_from"
        )
        .await,
        [
            "(Rome,\"2024-01-01 09:00:00+00\",\"2024-03-01 12:00:00+00\",f)",
            "(Turin,\"2024-03-01 12:00:00+00\",\"2024-04-15 12:00:00+00\",f)",
            "(Milan,\"2024-04-15 12:00:00+00\",infinity,t)",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, city, valid_from FROM business_vault.sat_customer_profile_current
              WHERE customer_id IN ('C1', 'C2') ORDER BY 1"
        )
        .await,
        [
            "(C1,Milan,\"2024-04-15 12:00:00+00\")",
            "(C2,Oslo,\"2024-01-01 09:00:00+00\")",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT status, valid_from, valid_to FROM business_vault.sat_order_status_history
              WHERE order_id = 'O34' ORDER BY valid_from"
        )
        .await,
        [
            "(placed,\"2024-06-01 12:00:00+00\",\"2024-06-05 12:00:00+00\")",
            "(delivered,\"2024-06-05 12:00:00+00\",\"2024-06-15 12:00:00+00\")",
            "(returned,\"2024-06-15 12:00:00+00\",infinity)",
        ]
    );
}

/// Orders that change after they were placed: a line of O81 (placed 07-05 by the flat
/// route, T1: 3 at 10.00) recorded again with 5 on 07-10 and a line T2 added on 07-20;
/// O21 (placed 03-10 on the web) re-sent on 04-01 as placed in the shop (its details
/// change, its status and line do not), and paid on 07-25 (the shop already has O11
/// paid and delivered, O16 cancelled, O34 delivered then returned, O71 cancelled).
fn orders_changed() -> Vec<NewEvent> {
    let line = |id: &str, day: &str, tx: &str, product: &str, quantity: &str| {
        ev(
            id,
            "order_line_recorded",
            &noon(day),
            json!({"transaction_id": tx, "order_id": "O81", "customer_id": "C8",
                   "product_id": product, "quantity": quantity, "unit_price": "10.00",
                   "transaction_date": noon("2024-07-05")}),
        )
    };
    vec![
        line("pos-1-corrected", "2024-07-10", "T1", "P4", "5"),
        line("pos-2", "2024-07-20", "T2", "P2", "1"),
        placed(
            "placed-O21-again",
            ("O21", "C2"),
            ("2024-04-01", "2024-03-10"),
            ("shop", "placed"),
            ("P2", 1, "80"),
        ),
        status("O21", "2024-07-25", "paid"),
    ]
}

/// `business_vault.orders_at` takes an order as it stands in `order_summary` from the
/// time its details, status and lines last changed (`details_since`, `status_since`,
/// `lines_since`), reads its versions of then before that, and none before its first
/// details version (`details_from`): all three equal, at every
/// time, the order assembled from the versions in force then (each satellite's latest
/// version by then), which is how the function computed every order before. So does
/// `business_vault.lines_at`, which takes a line as the bridge holds it from the time
/// its current version began and looks for its version of then only before that.
#[tokio::test]
async fn orders_as_of_a_time_before_they_changed_are_their_versions_of_then() {
    let (_db, mut client) = setup(&shop()).await;
    append(&client, &orders_changed()).await;
    load_all(&mut client).await;

    let since = |order: &str| {
        format!(
            "SELECT o.details_from, o.details_since, o.status_since, o.lines_since
               FROM business_vault.order_summary o
               JOIN raw_vault.hub_order h USING (hk_order) WHERE h.order_id = '{order}'"
        )
    };
    assert_eq!(
        rows(&client, &since("O81")).await,
        [
            "(\"2024-07-05 12:00:00+00\",\"2024-07-05 12:00:00+00\",-infinity,\"2024-07-20 12:00:00+00\")"
        ]
    );
    assert_eq!(
        rows(&client, &since("O21")).await,
        [
            "(\"2024-03-10 12:00:00+00\",\"2024-04-01 12:00:00+00\",\"2024-07-25 12:00:00+00\",\"2024-03-10 12:00:00+00\")"
        ]
    );
    let order = |order: &str, ts: &str| {
        format!(
            "SELECT channel, status, lines, units, amount FROM mart.orders_as_of('{ts}')
              WHERE order_id = '{order}'"
        )
    };
    assert_eq!(
        rows(&client, &order("O81", "2024-07-01T00:00:00Z")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&client, &order("O81", "2024-07-06T00:00:00Z")).await,
        ["(,placed,1,3,30.00)"]
    );
    assert_eq!(
        rows(&client, &order("O81", "2024-07-15T00:00:00Z")).await,
        ["(,placed,1,5,50.00)"]
    );
    assert_eq!(
        rows(&client, &order("O81", "2024-08-01T00:00:00Z")).await,
        ["(,placed,2,6,60.00)"]
    );
    assert_eq!(
        rows(&client, &order("O21", "2024-03-20T00:00:00Z")).await,
        ["(web,placed,1,1,80.00)"]
    );
    assert_eq!(
        rows(&client, &order("O21", "2024-05-01T00:00:00Z")).await,
        ["(shop,placed,1,1,80.00)"]
    );
    assert_eq!(
        rows(&client, &order("O21", "2024-08-01T00:00:00Z")).await,
        ["(shop,paid,1,1,80.00)"]
    );

    // every line at every time: its latest version by then, whatever its version now
    let lines_by_versions = |ts: &str| {
        format!(
            "SELECT b.hk_order, b.hk_order_product, b.hk_product, b.line_no, v.quantity,
                    v.unit_price, v.discount
               FROM business_vault.bridge_customer_order_product b
               JOIN (SELECT DISTINCT ON (s.hk_order_product) s.*
                       FROM raw_vault.sat_order_line s WHERE s.applied_dts <= '{ts}'
                      ORDER BY s.hk_order_product, s.applied_dts DESC, s.event_seq DESC) v
                 ON v.hk_order_product = b.hk_order_product"
        )
    };
    // every order at every time: assembled from the versions in force then
    let by_versions = |ts: &str| {
        format!(
            "SELECT c.hk_order, c.hk_customer, d.ordered_at, (d.ordered_at AT TIME ZONE 'UTC')::date,
                    d.channel, business_vault.order_status(st.status), st.status IS NOT NULL,
                    business_vault.is_counted(st.status), coalesce(l.lines, 0)::integer,
                    coalesce(l.units, 0)::bigint, coalesce(l.amount, 0)::numeric(14,2)
               FROM business_vault.order_summary c
               JOIN (SELECT DISTINCT ON (s.hk_order) s.hk_order, s.channel,
                            coalesce(s.ordered_at, s.applied_dts) AS ordered_at
                       FROM raw_vault.sat_order_details s WHERE s.applied_dts <= '{ts}'
                      ORDER BY s.hk_order, s.applied_dts DESC, s.event_seq DESC) d
                 ON d.hk_order = c.hk_order AND d.ordered_at <= '{ts}'
               LEFT JOIN (SELECT DISTINCT ON (s.hk_order) s.hk_order, s.status
                            FROM raw_vault.sat_order_status s WHERE s.applied_dts <= '{ts}'
                           ORDER BY s.hk_order, s.applied_dts DESC, s.event_seq DESC) st
                 ON st.hk_order = c.hk_order
               LEFT JOIN (SELECT v.hk_order, count(*) AS lines, sum(v.quantity) AS units,
                                 sum(business_vault.line_amount(v.quantity, v.unit_price, v.discount)) AS amount
                            FROM ({}) v
                           GROUP BY v.hk_order) l ON l.hk_order = c.hk_order",
            lines_by_versions(ts)
        )
    };
    let times = [
        "2024-01-01T00:00:00Z",
        "2024-02-01T12:00:00Z",
        "2024-02-03T00:00:00Z",
        "2024-03-01T00:00:00Z",
        "2024-03-20T00:00:00Z",
        "2024-04-01T12:00:00Z",
        "2024-06-10T00:00:00Z",
        "2024-06-20T12:00:00Z",
        "2024-07-05T12:00:00Z",
        "2024-07-10T11:59:59Z",
        "2024-07-10T12:00:00Z",
        "2024-07-20T11:59:59Z",
        "2024-07-20T12:00:00Z",
        "2024-08-01T00:00:00Z",
        TS,
    ];
    for ts in times {
        assert_eq!(
            sorted_rows(
                &client,
                &format!("SELECT * FROM business_vault.orders_at('{ts}')")
            )
            .await,
            sorted_rows(&client, &by_versions(ts)).await,
            "orders at {ts}"
        );
        assert_eq!(
            sorted_rows(
                &client,
                &format!("SELECT * FROM business_vault.lines_at('{ts}')")
            )
            .await,
            sorted_rows(&client, &lines_by_versions(ts)).await,
            "lines at {ts}"
        );
    }
}

/// Every customer's row at `ts` from the one-customer path of
/// `GET /customers/{id}?as_of=`, in customer order.
async fn one_by_one(client: &Client, ts: &str) -> Vec<String> {
    rows(
        client,
        &format!(
            "SELECT {METRICS} FROM (SELECT c.* FROM raw_vault.hub_customer h
               CROSS JOIN LATERAL mart.customer_360_as_of('{ts}', h.hk_customer) c) one
              ORDER BY customer_id"
        ),
    )
    .await
}

/// The business times whose RFM boundaries are remembered (V13).
async fn remembered(client: &Client) -> Vec<String> {
    rows(
        client,
        "SELECT as_of FROM business_vault.rfm_cutpoints_as_of ORDER BY as_of",
    )
    .await
}

#[tokio::test]
async fn remembered_rfm_boundaries_are_forgotten_by_the_load_that_changes_their_past() {
    let (_db, mut client) = setup(&shop()).await;
    const BEFORE_THE_LATE_EVENTS: &str = "2024-02-25T00:00:00Z";
    assert_eq!(
        one_by_one(&client, TS).await,
        customer_360_as_of(&client, TS).await
    );
    assert_eq!(
        one_by_one(&client, BEFORE_THE_LATE_EVENTS).await,
        customer_360_as_of(&client, BEFORE_THE_LATE_EVENTS).await
    );
    assert_eq!(
        remembered(&client).await,
        [
            "(\"2024-02-25 00:00:00+00\")",
            "(\"2024-07-01 00:00:00+00\")"
        ]
    );

    // the late events reach back to 03-01: TS's boundaries go, 02-25's stay
    append(&client, &late()).await;
    load_all(&mut client).await;
    assert_eq!(remembered(&client).await, ["(\"2024-02-25 00:00:00+00\")"]);
    let after = one_by_one(&client, TS).await;
    assert_eq!(after, customer_360_as_of(&client, TS).await);
    assert_eq!(
        after[3],
        "(C4,Paris,1,1,10.00,10.00,132,,Garden,2,1,1,211,Hibernating,10.00,0.00,churned,t)",
        "C4 against the boundaries after its return"
    );
    assert_eq!(remembered(&client).await.len(), 2);
}

/// Whether the backend `pid` comes to wait on a lock of one of these kinds
/// (`pg_stat_activity`'s `wait_event`: `advisory`, `tuple`, `transactionid`) within
/// 5 s, as `observer` sees it.
async fn waits_on(observer: &Client, pid: i32, events: &[&str]) -> bool {
    for _ in 0..200 {
        let waiting: bool = observer
            .query_one(
                "SELECT coalesce(wait_event_type = 'Lock' AND wait_event = ANY($2), false)
                   FROM pg_stat_activity WHERE pid = $1",
                &[&pid, &events],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// The business times whose population figures are remembered (V15).
async fn population_remembered(client: &Client) -> Vec<String> {
    rows(
        client,
        "SELECT DISTINCT as_of FROM business_vault.population_as_of ORDER BY as_of",
    )
    .await
}

#[tokio::test]
async fn remembered_population_figures_are_forgotten_by_the_load_that_changes_their_past() {
    let (_db, mut client) = setup(&shop()).await;
    const BEFORE_THE_LATE_EVENTS: &str = "2024-02-25T00:00:00Z";
    let answers = |ts: &str| {
        [
            format!("SELECT * FROM mart.segments_as_of('{ts}')"),
            format!("SELECT * FROM mart.churn_as_of('{ts}')"),
        ]
    };
    let computed = |ts: &str| {
        format!("SELECT * FROM business_vault.population_computed('{ts}') ORDER BY segment")
    };
    let kept = |ts: &str| {
        format!(
            "SELECT segment, customers, with_orders, orders, revenue, with_days, days_sum,
                    clv_predicted_12m, active, at_risk, churned
               FROM business_vault.population_as_of WHERE as_of = '{ts}' ORDER BY segment"
        )
    };
    let mut first = Vec::new();
    for ts in [TS, BEFORE_THE_LATE_EVENTS] {
        for sql in answers(ts) {
            let answer = rows(&client, &sql).await;
            assert!(!answer.is_empty(), "{sql}");
            assert_eq!(rows(&client, &sql).await, answer, "{sql}: read back");
            first.push(answer);
        }
        assert_eq!(
            rows(&client, &kept(ts)).await,
            rows(&client, &computed(ts)).await
        );
    }
    assert_eq!(
        population_remembered(&client).await,
        [
            "(\"2024-02-25 00:00:00+00\")",
            "(\"2024-07-01 00:00:00+00\")"
        ]
    );

    // the late events reach back to 03-01: TS's figures go, 02-25's stay
    append(&client, &late()).await;
    load_all(&mut client).await;
    assert_eq!(
        population_remembered(&client).await,
        ["(\"2024-02-25 00:00:00+00\")"]
    );
    let segments = rows(&client, &answers(TS)[0]).await;
    assert_ne!(segments, first[0], "the late events move TS's segments");
    assert_eq!(
        rows(&client, &kept(TS)).await,
        rows(&client, &computed(TS)).await
    );
    assert_eq!(
        rows(&client, &answers(BEFORE_THE_LATE_EVENTS)[0]).await,
        first[2],
        "02-25 is as it was"
    );
    assert_eq!(population_remembered(&client).await.len(), 2);
}

/// The business times whose sales are remembered (V18).
async fn sales_remembered(client: &Client) -> Vec<String> {
    rows(
        client,
        "SELECT as_of FROM business_vault.sales_as_of ORDER BY as_of",
    )
    .await
}

#[tokio::test]
async fn sales_as_of_a_time_count_orders_by_their_status_then_in_the_categories_of_then() {
    let (_db, mut client) = setup(&shop()).await;
    append(&client, &late()).await;
    load_all(&mut client).await;
    // the end of 06-10: O34 (C3, 4 × P2 at 25) delivered on 06-05 is returned only on
    // 06-15, O15 and O16 are not placed yet, P3 (Comic) is still in Books; O42 was
    // returned on 03-05 (a late event) and O71 cancelled on 03-02
    const THEN: &str = "2024-06-10T23:59:59Z";
    const APRIL_20: &str = "2024-04-20T23:59:59Z";
    let revenue = |period: &str| format!("SELECT * FROM mart.revenue_as_of('{THEN}', '{period}')");
    let months = [
        "(2024-01-01,1,1,1,1000.00,1000.00,0,0.00)",
        "(2024-02-01,3,3,6,170.00,56.67,0,0.00)",
        "(2024-03-01,3,3,6,240.00,80.00,2,1010.00)",
        "(2024-04-01,2,2,3,180.00,90.00,0,0.00)",
        "(2024-05-01,3,3,6,240.00,80.00,0,0.00)",
        "(2024-06-01,2,2,5,180.00,90.00,0,0.00)",
    ];
    assert_eq!(
        rows(&client, &revenue("month")).await,
        months,
        "June: O24 and O34, counted then; today O34 is returned and O15 counts"
    );
    let days = rows(&client, &revenue("day")).await;
    assert_eq!(days.len(), 148, "every day from 01-15 to 06-10");
    assert_eq!(days[0], "(2024-01-15,1,1,1,1000.00,1000.00,0,0.00)");
    assert_eq!(
        days[1], "(2024-01-16,0,0,0,0.00,,0,0.00)",
        "a day without orders"
    );
    for period in ["day", "week", "month"] {
        assert_eq!(
            rows(
                &client,
                &format!(
                    "SELECT sum(revenue), sum(orders), sum(revenue_lost)
                       FROM mart.revenue_as_of('{THEN}', '{period}')"
                )
            )
            .await,
            ["(2010.00,14,1010.00)"],
            "{period}: the same orders"
        );
    }
    assert_eq!(
        rows(
            &client,
            &format!("SELECT * FROM mart.categories_as_of('{THEN}')")
        )
        .await,
        [
            "(Toys,2,9,1420.00,70.65)",
            "(Books,2,17,580.00,28.86)",
            "(Garden,1,1,10.00,0.50)",
        ],
        "Toys: P2 4 × 80 + 4 × 25, P5 1000 (O71 cancelled); Books: P1 8 × 50 and P3 \
         9 × 20 (Comics from 06-15); Garden: P4 in O41 (O42 returned)"
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT * FROM mart.top_products_as_of('{THEN}')")
        )
        .await,
        [
            "(1,P5,Castle,Toys,1,1000.00)",
            "(2,P2,Robot,Toys,8,420.00)",
            "(3,P1,Novel,Books,8,400.00)",
            "(4,P3,Comic,Books,9,180.00)",
            "(5,P4,Rake,Garden,1,10.00)",
        ]
    );
    // remembered, and read back the same
    assert_eq!(
        sales_remembered(&client).await,
        ["(\"2024-06-10 23:59:59+00\")"]
    );
    assert_eq!(rows(&client, &revenue("month")).await, months);
    let april_20 = rows(
        &client,
        &format!("SELECT * FROM mart.revenue_as_of('{APRIL_20}', 'month')"),
    )
    .await;
    assert_eq!(sales_remembered(&client).await.len(), 2);

    // O33 (05-01) returned on 06-01, learnt now: every time from the order's placing
    // on is forgotten (06-10), earlier ones stay (04-20). And P9, never listed, is
    // viewed on 08-01: a product of no category from then on, not before.
    append(
        &client,
        &[
            status("O33", "2024-06-01", "returned"),
            viewed(9, "C1", "P9", "2024-08-01"),
        ],
    )
    .await;
    load_all(&mut client).await;
    assert_eq!(
        sales_remembered(&client).await,
        ["(\"2024-04-20 23:59:59+00\")"]
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT * FROM mart.revenue_as_of('{APRIL_20}', 'month')")
        )
        .await,
        april_20
    );
    let after = rows(&client, &revenue("month")).await;
    assert_eq!(after[4], "(2024-05-01,2,2,3,180.00,90.00,1,60.00)");
    assert_eq!(after[..4], months[..4]);
    let categories = |ts: &str| format!("SELECT * FROM mart.categories_as_of('{ts}')");
    assert_eq!(
        rows(&client, &categories(THEN)).await.len(),
        3,
        "P9 is not known on 06-10"
    );
    assert!(
        rows(&client, &categories("2024-08-02T00:00:00Z"))
            .await
            .contains(&"(,1,0,0.00,0.00)".to_string()),
        "P9, known from 08-01 by a view, in no category"
    );

    // at the end of time, each equals today's view
    for (today, then) in [
        (
            "SELECT * FROM mart.revenue_daily",
            "mart.revenue_as_of('infinity', 'day')",
        ),
        (
            "SELECT * FROM mart.revenue_weekly",
            "mart.revenue_as_of('infinity', 'week')",
        ),
        (
            "SELECT * FROM mart.revenue_monthly",
            "mart.revenue_as_of('infinity', 'month')",
        ),
        (
            "SELECT * FROM mart.categories",
            "mart.categories_as_of('infinity')",
        ),
        (
            "SELECT row_number() OVER (ORDER BY revenue DESC, product_id)::integer, product_id,
                    name, category, units_sold, revenue
               FROM mart.products WHERE revenue > 0 ORDER BY revenue DESC, product_id",
            "mart.top_products_as_of('infinity')",
        ),
    ] {
        assert_eq!(
            rows(&client, today).await,
            rows(&client, &format!("SELECT * FROM {then}")).await,
            "{then}"
        );
    }
}

/// Ask `ask` (one text value, the business time as `$1`) while a batch holds the
/// loader's checkpoint, let the batch move it and commit: the request is answered
/// (`answer`), and `kept` (a count of remembered rows) stays 0; asked again with
/// nothing in flight, the answer is kept.
async fn not_remembered_while_a_batch_is_in_flight(
    ask: &'static str,
    kept: &'static str,
    answer: &str,
) {
    let (db, client) = setup(&shop()).await;
    // a batch in flight holds the loader's checkpoint row from its start
    let batch = db.client().await;
    batch
        .batch_execute(
            "BEGIN; SELECT FROM ops.checkpoints WHERE consumer = 'vault_loader' FOR UPDATE",
        )
        .await
        .expect("lock the checkpoint");
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let request = tokio::spawn(async move {
        client
            .query_one(ask, &[&at(TS)])
            .await
            .map(|r| r.get::<_, String>(0))
            .map(|answer| (answer, client))
    });
    // the request has computed its answer and waits to store it
    assert!(
        waits_on(&batch, pid, &["tuple", "transactionid"]).await,
        "the request never waited for the checkpoint row"
    );
    // the batch moves the checkpoint and commits
    batch
        .batch_execute(
            "UPDATE ops.checkpoints SET seq = seq + 1 WHERE consumer = 'vault_loader'; COMMIT",
        )
        .await
        .expect("move the checkpoint");
    let (got, client) = request.await.expect("join").expect(ask);
    assert_eq!(got, answer, "the request is still answered");
    assert_eq!(
        rows(&client, kept).await,
        ["(0)"],
        "an answer of a vault that changed meanwhile was kept"
    );
    // asked again with nothing in flight, it is kept
    client.query_one(ask, &[&at(TS)]).await.expect(ask);
    assert_ne!(rows(&client, kept).await, ["(0)"]);
}

/// While a first request computes `ask` (one text value, the business time as `$1`) in
/// a transaction, a second request for the same time waits for it (an advisory lock)
/// rather than computing it too, and answers what the first stored.
async fn a_second_request_waits_for_the_first_ones_answer(ask: &'static str) {
    let (db, client) = setup(&shop()).await;
    let first = db.client().await;
    first.batch_execute("BEGIN").await.expect("begin");
    let answer: String = first.query_one(ask, &[&at(TS)]).await.expect(ask).get(0);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let second = tokio::spawn(async move {
        client
            .query_one(ask, &[&at(TS)])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    assert!(
        waits_on(&first, pid, &["advisory"]).await,
        "the second request did not wait for the first"
    );
    first.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(second.await.expect("join").expect(ask), answer);
}

#[tokio::test]
async fn a_second_request_for_new_rfm_boundaries_waits_for_the_first() {
    a_second_request_waits_for_the_first_ones_answer(
        "SELECT population::text FROM business_vault.rfm_cuts_at($1)",
    )
    .await;
}

#[tokio::test]
async fn a_second_request_for_new_population_figures_waits_for_the_first() {
    a_second_request_waits_for_the_first_ones_answer(
        "SELECT sum(customers)::text FROM business_vault.population_at($1)",
    )
    .await;
}

#[tokio::test]
async fn rfm_boundaries_computed_while_a_batch_is_in_flight_are_not_remembered() {
    not_remembered_while_a_batch_is_in_flight(
        "SELECT population::text FROM business_vault.rfm_cuts_at($1)",
        "SELECT count(*) FROM business_vault.rfm_cutpoints_as_of",
        "5",
    )
    .await;
}

#[tokio::test]
async fn population_figures_computed_while_a_batch_is_in_flight_are_not_remembered() {
    not_remembered_while_a_batch_is_in_flight(
        "SELECT sum(customers)::text FROM business_vault.population_at($1)",
        "SELECT count(*) FROM business_vault.population_as_of",
        "7",
    )
    .await;
}

#[tokio::test]
async fn a_second_request_for_new_sales_waits_for_the_first() {
    a_second_request_waits_for_the_first_ones_answer(
        "SELECT sum(revenue)::text FROM mart.revenue_as_of($1, 'month')",
    )
    .await;
}

#[tokio::test]
async fn sales_computed_while_a_batch_is_in_flight_are_not_remembered() {
    not_remembered_while_a_batch_is_in_flight(
        "SELECT sum(revenue)::text FROM mart.revenue_as_of($1, 'month')",
        "SELECT count(*) FROM business_vault.sales_as_of",
        // every order placed by 07-01 but O16 (cancelled) and O34 (returned) and O71
        "2000.00",
    )
    .await;
}

#[tokio::test]
async fn revenue_by_day_week_and_month_counts_orders_by_their_current_status() {
    let (_db, mut client) = setup(&shop()).await;
    append(&client, &late()).await;
    load_all(&mut client).await;
    let daily = rows(&client, "SELECT * FROM mart.revenue_daily ORDER BY day").await;
    assert_eq!(daily.len(), 173, "every day from 01-15 to 07-05");
    assert_eq!(daily[0], "(2024-01-15,1,1,1,1000.00,1000.00,0,0.00)");
    assert_eq!(
        daily[1], "(2024-01-16,0,0,0,0.00,,0,0.00)",
        "a day without orders"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM mart.revenue_daily
              WHERE day IN ('2024-06-01', '2024-06-20', '2024-06-25', '2024-07-05') ORDER BY day"
        )
        .await,
        [
            "(2024-06-01,0,0,0,0.00,,1,100.00)",
            "(2024-06-20,1,1,3,80.00,80.00,0,0.00)",
            "(2024-06-25,0,0,0,0.00,,1,999.00)",
            "(2024-07-05,1,1,3,30.00,30.00,0,0.00)",
        ],
        "O15: 1 × 50 − 10 + 2 × 20; the POS order of C8 counts (status placed)"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM mart.revenue_weekly WHERE week = '2024-02-26'"
        )
        .await,
        ["(2024-02-26,1,1,2,100.00,100.00,2,1010.00)"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM mart.revenue_monthly WHERE month IN ('2024-03-01', '2024-06-01') ORDER BY 1"
        )
        .await,
        [
            "(2024-03-01,3,3,6,240.00,80.00,2,1010.00)",
            "(2024-06-01,2,2,4,160.00,80.00,2,1099.00)",
        ]
    );
    let total = "SELECT sum(revenue) FROM mart.revenue_daily";
    assert_eq!(rows(&client, total).await, ["(2020.00)"]);
    assert_eq!(
        rows(&client, "SELECT sum(revenue) FROM mart.revenue_monthly").await,
        ["(2020.00)"]
    );
    assert_eq!(
        rows(&client, "SELECT sum(total_spent) FROM mart.customer_360").await,
        ["(2020.00)"]
    );
}

#[tokio::test]
async fn orders_lines_and_products_show_current_state_and_sales() {
    let (_db, mut client) = setup(&shop()).await;
    append(&client, &late()).await;
    load_all(&mut client).await;
    assert_eq!(
        rows(
            &client,
            "SELECT order_id, customer_id, order_date, channel, status, status_known, is_counted,
                    lines, units, amount
               FROM mart.orders WHERE order_id IN ('O11', 'O15', 'O16', 'O34', 'O42', 'O81')
              ORDER BY order_id"
        )
        .await,
        [
            "(O11,C1,2024-02-01,web,delivered,t,t,1,2,100.00)",
            "(O15,C1,2024-06-20,web,placed,t,t,2,3,80.00)",
            "(O16,C1,2024-06-25,web,cancelled,t,f,1,1,999.00)",
            "(O34,C3,2024-06-01,web,returned,t,f,1,4,100.00)",
            "(O42,C4,2024-03-01,web,returned,t,f,1,1,10.00)",
            "(O81,C8,2024-07-05,,placed,f,t,1,3,30.00)",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT order_id, line_no, product_id, product_name, category, quantity, unit_price,
                    discount, line_amount
               FROM mart.order_lines WHERE order_id IN ('O15', 'O81') ORDER BY 1, 2"
        )
        .await,
        [
            "(O15,1,P1,Novel,Books,1,50.00,10.00,40.00)",
            "(O15,2,P3,Comic,Comics,2,20.00,0.00,40.00)",
            "(O81,T1,P4,Rake,Outdoor,3,10.00,,30.00)",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT order_id, order_number, days_since_previous_order, cumulative_spent
               FROM mart.customer_orders WHERE customer_id = 'C1' ORDER BY order_number"
        )
        .await,
        [
            "(O11,1,,100.00)",
            "(O12,2,29,200.00)",
            "(O13,3,31,300.00)",
            "(O14,4,30,400.00)",
            "(O15,5,50,480.00)",
            "(O16,6,5,480.00)",
        ]
    );
    // P1: C1's 4 × 2 units at 50 and 1 at 50 − 10; viewed 4 times by C1, C2 and C6,
    // of whom C1 bought it. P4: C4's unreturned order and C8's 3 units.
    assert_eq!(
        rows(
            &client,
            "SELECT product_id, category, price, units_sold, revenue, orders, buyers, views,
                    viewers, viewers_who_bought, view_to_purchase_rate, rank_in_category
               FROM mart.products ORDER BY product_id"
        )
        .await,
        [
            "(P1,Books,50.00,9,440.00,5,1,4,3,1,0.3333,1)",
            "(P2,Toys,80.00,4,320.00,4,1,1,1,0,0.0000,2)",
            "(P3,Comics,20.00,11,220.00,4,2,0,0,0,,1)",
            "(P4,Outdoor,10.00,4,40.00,2,2,0,0,0,,1)",
            "(P5,Toys,1000.00,1,1000.00,1,1,0,0,0,,1)",
        ]
    );
    // Time travel sees P3 in Books before 06-15.
    assert_eq!(
        rows(
            &client,
            "SELECT order_id, line_no, category FROM mart.order_lines_as_of('2024-06-14T00:00:00Z')
              WHERE product_id = 'P3' ORDER BY 1"
        )
        .await,
        ["(O31,1,Books)", "(O32,1,Books)", "(O33,1,Books)"]
    );
}

/// A digest of every business vault table, by table.
async fn business_checksums(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for table in dvault::load::business::TABLES {
        let sum = rows(
            client,
            &format!(
                "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {table} t"
            ),
        )
        .await;
        out.push(format!("{table} {}", sum[0]));
    }
    out
}

#[tokio::test]
async fn pit_and_bridge_after_small_incremental_batches_equal_a_rebuild() {
    let (_db, mut client, mut loader) = small_batches(3).await;
    let shop = shop();
    for chunk in shop.chunks(7) {
        append(&client, chunk).await;
        load_all_with(&mut client, &loader).await;
    }
    append(&client, &late()).await;
    load_all_with(&mut client, &loader).await;
    let incremental = business_checksums(&client).await;

    // C1: a row per day a profile or contact version took effect, and the current one
    assert_eq!(
        rows(
            &client,
            "SELECT p.snapshot_date, p.is_current, s.city, c.email
               FROM business_vault.pit_customer p
               JOIN raw_vault.hub_customer h USING (hk_customer)
               JOIN business_vault.sat_customer_profile_with_ghost s
                 ON (s.hk_customer, s.applied_dts, s.event_seq)
                  = (p.sat_customer_profile_hk, p.sat_customer_profile_applied_dts, p.sat_customer_profile_event_seq)
               JOIN business_vault.sat_customer_contact_with_ghost c
                 ON (c.hk_customer, c.applied_dts, c.event_seq)
                  = (p.sat_customer_contact_hk, p.sat_customer_contact_applied_dts, p.sat_customer_contact_event_seq)
              WHERE h.customer_id = 'C1' ORDER BY p.snapshot_date"
        )
        .await,
        [
            "(2024-01-01,f,Rome,ann@example.com)",
            "(2024-03-01,f,Turin,ann@example.com)",
            "(2024-04-15,f,Milan,ann@example.com)",
            "(2024-05-01,f,Milan,ann@example.com)",
            "(2024-06-01,f,Milan,ann2@example.com)",
            "(infinity,t,Milan,ann2@example.com)",
        ]
    );
    // C8 and C9 have no satellite row: only a current row, on the ghost records
    assert_eq!(
        rows(
            &client,
            "SELECT h.customer_id, p.snapshot_date, p.sat_customer_profile_hk = business_vault.ghost_key(),
                    p.sat_customer_profile_applied_dts, p.sat_customer_contact_event_seq
               FROM business_vault.pit_customer p JOIN raw_vault.hub_customer h USING (hk_customer)
              WHERE h.customer_id IN ('C8', 'C9') ORDER BY 1"
        )
        .await,
        ["(C8,infinity,t,-infinity,0)", "(C9,infinity,t,-infinity,0)"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT p.snapshot_date, p.changed_on FROM business_vault.pit_customer_on('2024-04-20') p
               JOIN raw_vault.hub_customer h USING (hk_customer) WHERE h.customer_id = 'C1'"
        )
        .await,
        ["(2024-04-20,2024-04-15)"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), min(snapshot_date), max(snapshot_date) FROM business_vault.pit_customer_daily d
               JOIN raw_vault.hub_customer h USING (hk_customer)
              WHERE h.customer_id = 'C6' AND snapshot_date < '2024-02-01'"
        )
        .await,
        ["(31,2024-01-01,2024-01-31)"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(DISTINCT hk_order), sum(line_amount)
               FROM business_vault.bridge_customer_order_product"
        )
        .await,
        ["(20,19,4129.00)"],
        "every line of every order, with its current amount"
    );

    loader.batch_size = 10_000;
    dvault::load::rebuild(&mut client, &loader)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &loader).await;
    assert_eq!(business_checksums(&client).await, incremental);
}

/// `business_vault.customer_360_current` by its definition (what V6 fills an existing
/// database with): hub, PIT current row, profile, contact key, customer summary.
const CUSTOMER_360_CURRENT_DEFINED: &str = "
SELECT h.hk_customer, h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country,
       pr.signup_date, co.applied_dts, co.event_seq, m.orders_count, m.orders_cancelled,
       m.orders_returned, m.total_spent, m.first_order_at, m.last_order_at, m.first_order_date,
       m.last_order_date, m.favourite_category
  FROM raw_vault.hub_customer h
  JOIN business_vault.pit_customer pit
    ON pit.hk_customer = h.hk_customer AND pit.snapshot_date = 'infinity'
  LEFT JOIN raw_vault.sat_customer_profile pr
    ON (pr.hk_customer, pr.applied_dts, pr.event_seq)
     = (pit.sat_customer_profile_hk, pit.sat_customer_profile_applied_dts, pit.sat_customer_profile_event_seq)
  LEFT JOIN raw_vault.sat_customer_contact co
    ON (co.hk_customer, co.applied_dts, co.event_seq)
     = (pit.sat_customer_contact_hk, pit.sat_customer_contact_applied_dts, pit.sat_customer_contact_event_seq)
  LEFT JOIN business_vault.customer_order_summary m ON m.hk_customer = h.hk_customer
 ORDER BY h.customer_id";

#[tokio::test]
async fn the_current_customer_360_table_kept_by_small_batches_equals_its_definition() {
    let (_db, mut client, loader) = small_batches(2).await;
    let stored = "SELECT hk_customer, customer_id, first_name, last_name, city, country,
                         signup_date, contact_applied_dts, contact_event_seq, orders_count,
                         orders_cancelled, orders_returned, total_spent, first_order_at,
                         last_order_at, first_order_date, last_order_date, favourite_category
                    FROM business_vault.customer_360_current ORDER BY customer_id";
    // after every small load: profile moves, orders, status changes, late events and
    // recategorised products each reach the rows of the customers they concern
    for chunk in shop().chunks(5).chain([&late()[..]]) {
        append(&client, chunk).await;
        load_all_with(&mut client, &loader).await;
        assert_eq!(
            rows(&client, stored).await,
            rows(&client, CUSTOMER_360_CURRENT_DEFINED).await
        );
    }
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, city, contact_event_seq IS NOT NULL, orders_count,
                    orders_returned, total_spent, favourite_category
               FROM business_vault.customer_360_current
              WHERE customer_id IN ('C1', 'C4', 'C8', 'C9') ORDER BY customer_id"
        )
        .await,
        [
            "(C1,Milan,t,5,0,480.00,Books)",
            "(C4,Paris,t,1,1,10.00,Outdoor)",
            "(C8,,f,1,0,30.00,Outdoor)",
            "(C9,,f,,,,)",
        ],
        "late move, late return, late recategorisation; no profile; no order"
    );
}

/// The revenue series as defined (docs/analysts.md), from every order: what
/// `business_vault.revenue_period`, kept per batch, must give through the views.
const REVENUE_DEFINED: &str = "
SELECT p.period::date, coalesce(a.orders, 0), coalesce(a.customers, 0), coalesce(a.units, 0),
       coalesce(a.revenue, 0.00), a.avg_order_value,
       coalesce(a.orders_cancelled_or_returned, 0), coalesce(a.revenue_lost, 0.00)
  FROM (SELECT generate_series(date_trunc($1, min(order_date)::timestamp),
                               max(order_date)::timestamp, ('1 ' || $1)::interval) AS period
          FROM business_vault.order_summary) p
  LEFT JOIN (SELECT date_trunc($1, o.order_date::timestamp)::date AS period,
                    count(*) FILTER (WHERE o.is_counted) AS orders,
                    count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted) AS customers,
                    sum(o.units) FILTER (WHERE o.is_counted) AS units,
                    sum(o.amount) FILTER (WHERE o.is_counted) AS revenue,
                    round(avg(o.amount) FILTER (WHERE o.is_counted), 2) AS avg_order_value,
                    count(*) FILTER (WHERE NOT o.is_counted) AS orders_cancelled_or_returned,
                    sum(o.amount) FILTER (WHERE NOT o.is_counted) AS revenue_lost
               FROM business_vault.order_summary o
              GROUP BY 1) a ON a.period = p.period::date
 ORDER BY 1";

async fn revenue_rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<String> {
    client
        .query(&format!("SELECT t::text FROM ({sql}) t"), params)
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_analyst_role_reads_marts_but_no_personal_data() {
    let (_db, client) = setup(&shop()).await;
    let role = format!("dvault_test_analyst_{}", rand::random::<u32>());
    let said: String = client
        .query_one("SELECT ops.grant_analyst($1)", &[&role])
        .await
        .expect("grant")
        .get(0);
    assert!(said.starts_with("created read-only analyst"), "{said}");
    client
        .batch_execute(&format!("SET ROLE {role}"))
        .await
        .expect("set role");
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, first_name, email, phone, segment FROM mart.customer_360
              WHERE customer_id = 'C2'"
        )
        .await,
        ["(C2,Bob,,,Loyal)"],
        "contact details are masked"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), count(email) FROM business_vault.sat_customer_contact_history"
        )
        .await,
        ["(8,0)"]
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT count(*) FROM mart.customer_360_as_of('{TS}')")
        )
        .await,
        ["(7)"]
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM business_vault.pit_customer").await,
        ["(18)"]
    );
    for forbidden in [
        "SELECT count(*) FROM event_log.events",
        "SELECT count(*) FROM raw_vault.sat_customer_contact",
        "SELECT count(*) FROM raw_vault.hub_customer",
        "SELECT count(*) FROM ops.checkpoints",
    ] {
        let err = client.query(forbidden, &[]).await.expect_err(forbidden);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{forbidden}: {err:?}"
        );
    }
    client.batch_execute("RESET ROLE").await.expect("reset");
    assert_eq!(
        rows(
            &client,
            "SELECT email FROM mart.customer_360 WHERE customer_id = 'C2'"
        )
        .await,
        ["(bob@example.com)"],
        "the owner sees them"
    );
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
}

/// What the API is given: USAGE on mart and SELECT on its views, nothing else. Every
/// view and function must work with that (views run with their owner's rights, the
/// functions they inline must need none on business_vault).
#[tokio::test]
async fn a_role_that_may_read_only_mart_can_use_every_mart_view_and_function() {
    let (_db, client) = setup(&shop()).await;
    let views: Vec<String> = client
        .query(
            "SELECT 'mart.' || quote_ident(viewname) FROM pg_views WHERE schemaname = 'mart' ORDER BY 1",
            &[],
        )
        .await
        .expect("views")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(views.len(), 15, "{views:?}");
    let role = format!("dvault_test_mart_reader_{}", rand::random::<u32>());
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} NOLOGIN; GRANT USAGE ON SCHEMA mart TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA mart TO {role}; SET ROLE {role}"
        ))
        .await
        .expect("role");
    let mut queries: Vec<String> = views
        .iter()
        .map(|v| format!("SELECT count(*) FROM {v}"))
        .collect();
    for f in [
        "customer_360_as_of",
        "orders_as_of",
        "order_lines_as_of",
        "segments_as_of",
        "churn_as_of",
    ] {
        queries.push(format!("SELECT count(*) FROM mart.{f}('{TS}')"));
    }
    let mut failed = Vec::new();
    for q in &queries {
        if let Err(e) = client.query(q.as_str(), &[]).await {
            failed.push(format!(
                "{q}: {}",
                e.as_db_error()
                    .map_or(e.to_string(), |d| d.message().to_string())
            ));
        }
    }
    client
        .batch_execute(&format!(
            "RESET ROLE; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await
        .expect("drop the role");
    assert!(failed.is_empty(), "{failed:#?}");
}

#[tokio::test]
async fn segment_rules_table_matches_the_segment_function() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let rules = client
        .query(
            "SELECT segment, recency_scores, fm_scores FROM mart.rfm_segment_rules
              WHERE recency_scores IS NOT NULL",
            &[],
        )
        .await
        .expect("rules");
    let covers = |range: &str, v: i32| {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        lo.parse::<i32>().expect("lo") <= v && v <= hi.parse::<i32>().expect("hi")
    };
    for r in 1..=5 {
        for f in 1..=5 {
            for m in 1..=5 {
                let fm = (f + m + 1) / 2;
                let matching: Vec<String> = rules
                    .iter()
                    .filter(|row| covers(row.get(1), r) && covers(row.get(2), fm))
                    .map(|row| row.get(0))
                    .collect();
                // Hibernating's range includes R 1 FM 1, which is Lost
                let expected = match matching.as_slice() {
                    [one] => one.clone(),
                    [a, b] if a == "Hibernating" && b == "Lost" => b.clone(),
                    other => panic!("R{r} F{f} M{m}: rules {other:?}"),
                };
                let got: String = client
                    .query_one(
                        "SELECT business_vault.rfm_segment($1, $2, $3)",
                        &[&r, &f, &m],
                    )
                    .await
                    .expect("segment")
                    .get(0);
                assert_eq!(got, expected, "R{r} F{f} M{m}");
            }
        }
    }
}

/// docs/analysts.md, "Churn risk", in tenths of a day: `gap` is the average gap as
/// `avg_days_between_orders` shows it (1 decimal), NULL with one order.
fn documented_churn_risk(days: i32, gap_tenths: Option<i64>) -> &'static str {
    let days = i64::from(days);
    match gap_tenths {
        // churned: days > max(90, 3 × gap); at risk: days > min(60, max(14, 1.5 × gap))
        Some(g) if 10 * days > (3 * g).max(900) => "churned",
        Some(g) if 100 * days > (15 * g).clamp(1400, 6000) => "at risk",
        Some(_) => "active",
        // one order: churned after 90 days, at risk after 60
        None if days > 90 => "churned",
        None if days > 60 => "at risk",
        None => "active",
    }
}

#[tokio::test]
async fn churn_risk_follows_the_documented_rule_on_both_sides_of_every_threshold() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // issue 15: one order 22 days ago is active, not at risk
    let one_order: String = client
        .query_one("SELECT business_vault.churn_risk(22, NULL)", &[])
        .await
        .expect("churn_risk")
        .get(0);
    assert_eq!(one_order, "active");
    // one order; a gap below 9.4 days (the 14-day floor binds), 20 (1.5 × gap binds),
    // 35 (1.5 × gap and 3 × gap bind), 50 (the 60-day cap binds, 3 × gap = 150)
    for gap in [None, Some(40), Some(200), Some(350), Some(367), Some(500)] {
        for days in 0..=160 {
            // and the first days of each state the loader stores (V9), seen from the
            // day `days` after a last order on 2024-01-01
            let r = client
                .query_one(
                    "SELECT business_vault.churn_risk($1, $2::text::numeric),
                            CASE WHEN DATE '2024-01-01' + $1 >= business_vault.churned_on('2024-01-01', $2::text::numeric)
                                 THEN 'churned'
                                 WHEN DATE '2024-01-01' + $1 >= business_vault.at_risk_on('2024-01-01', $2::text::numeric)
                                 THEN 'at risk'
                                 ELSE 'active' END",
                    &[&days, &gap.map(|g: i64| format!("{}.{}", g / 10, g % 10))],
                )
                .await
                .expect("churn_risk");
            let (got, by_dates): (String, String) = (r.get(0), r.get(1));
            assert_eq!(
                got,
                documented_churn_risk(days, gap),
                "churn_risk({days}, {gap:?} tenths)"
            );
            assert_eq!(
                by_dates,
                documented_churn_risk(days, gap),
                "at_risk_on / churned_on ({days}, {gap:?} tenths)"
            );
        }
    }
}

#[tokio::test]
async fn every_view_table_and_function_for_analysts_is_commented() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let missing = rows(
        &client,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname IN ('mart', 'business_vault') AND c.relkind IN ('r', 'v', 'm')
            AND obj_description(c.oid, 'pg_class') IS NULL
         UNION ALL
         SELECT p.oid::regprocedure::text FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname IN ('mart', 'business_vault', 'ops') AND p.prokind = 'f'
            AND obj_description(p.oid, 'pg_proc') IS NULL
          ORDER BY 1",
    )
    .await;
    assert!(missing.is_empty(), "no COMMENT ON: {missing:?}");
    // and the columns a reader of mart.customer_360 would ask about
    let undocumented = rows(
        &client,
        "SELECT a.attname FROM pg_attribute a
          WHERE a.attrelid = 'mart.customer_360'::regclass AND a.attnum > 0
            AND col_description(a.attrelid, a.attnum) IS NULL
            AND a.attname NOT IN ('first_name', 'last_name', 'city', 'country', 'signup_date')",
    )
    .await;
    assert!(undocumented.is_empty(), "{undocumented:?}");
}

/// mart.products as it was defined before the loader kept it (V9): every figure
/// computed from the bridge, the order summary and the clickstream at query time.
const PRODUCTS_DEFINED: &str = "
WITH sales AS (
    SELECT b.hk_product, sum(b.quantity) AS units_sold, sum(b.line_amount) AS revenue,
           count(DISTINCT b.hk_order) AS orders, count(DISTINCT b.hk_customer) AS buyers
      FROM business_vault.bridge_customer_order_product b
      JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
     WHERE o.is_counted
     GROUP BY b.hk_product
), viewed AS (
    SELECT v.hk_product, count(*) AS views, count(DISTINCT v.hk_customer) AS viewers
      FROM raw_vault.link_product_view v
     GROUP BY v.hk_product
), converted AS (
    SELECT v.hk_product, count(*) AS viewers_who_bought
      FROM (SELECT DISTINCT hk_product, hk_customer FROM raw_vault.link_product_view) v
     WHERE EXISTS (SELECT FROM business_vault.bridge_customer_order_product b
                     JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
                    WHERE b.hk_product = v.hk_product AND b.hk_customer = v.hk_customer
                      AND o.is_counted)
     GROUP BY v.hk_product
)
SELECT hp.product_id, d.name, d.category, d.brand, d.price,
       coalesce(s.units_sold, 0) AS units_sold,
       coalesce(s.revenue, 0.00) AS revenue,
       coalesce(s.orders, 0) AS orders,
       coalesce(s.buyers, 0) AS buyers,
       coalesce(v.views, 0) AS views,
       coalesce(v.viewers, 0) AS viewers,
       coalesce(c.viewers_who_bought, 0) AS viewers_who_bought,
       round(coalesce(c.viewers_who_bought, 0)::numeric / nullif(v.viewers, 0), 4) AS view_to_purchase_rate,
       rank() OVER (PARTITION BY d.category ORDER BY coalesce(s.revenue, 0) DESC) AS rank_in_category,
       hp.hk_product
  FROM raw_vault.hub_product hp
  LEFT JOIN business_vault.sat_product_details_current d ON d.hk_product = hp.hk_product
  LEFT JOIN sales s ON s.hk_product = hp.hk_product
  LEFT JOIN viewed v ON v.hk_product = hp.hk_product
  LEFT JOIN converted c ON c.hk_product = hp.hk_product
 ORDER BY hp.product_id";

/// mart.customer_360's scores as they were defined before the loader stored them (V9):
/// every customer scored against the RFM boundaries at query time.
const SCORED_DEFINED: &str = "
SELECT t.customer_id, s.days_since_last_order, s.avg_days_between_orders, s.recency_score,
       s.frequency_score, s.monetary_score, s.rfm_cell, s.segment, s.clv_predicted_12m,
       s.churn_risk, coalesce(t.orders_count, 0) AS orders_count,
       coalesce(t.total_spent, 0.00) AS total_spent
  FROM business_vault.customer_360_current t
  LEFT JOIN business_vault.rfm_cutpoints q ON true
 CROSS JOIN LATERAL business_vault.customer_scores(
       (now() AT TIME ZONE 'UTC')::date, t.first_order_date, t.last_order_date,
       t.orders_count, t.total_spent, q.recency, q.frequency, q.monetary) s";

const SCORED_VIEW: &str = "
SELECT customer_id, days_since_last_order, avg_days_between_orders, recency_score,
       frequency_score, monetary_score, rfm_cell, segment, clv_predicted_12m, churn_risk
  FROM mart.customer_360 ORDER BY customer_id";

fn segments_defined() -> String {
    format!(
        "WITH c AS ({SCORED_DEFINED})
         SELECT r.segment, count(c.customer_id) AS customers,
                round(100.0 * count(c.customer_id) / nullif(sum(count(c.customer_id)) OVER (), 0), 2),
                coalesce(sum(c.total_spent), 0.00),
                round(100.0 * sum(c.total_spent) / nullif(sum(sum(c.total_spent)) OVER (), 0), 2),
                round(avg(c.orders_count), 2),
                round(avg(c.total_spent), 2),
                round(avg(c.days_since_last_order), 1),
                coalesce(sum(c.clv_predicted_12m), 0.00), r.description
           FROM mart.rfm_segment_rules r
           LEFT JOIN c ON c.segment = r.segment
          GROUP BY r.sort_order, r.segment, r.description
          ORDER BY r.sort_order"
    )
}

fn churn_defined() -> String {
    format!(
        "WITH c AS ({SCORED_DEFINED})
         SELECT count(*) FILTER (WHERE c.orders_count > 0),
                count(*) FILTER (WHERE c.churn_risk = 'active'),
                count(*) FILTER (WHERE c.churn_risk = 'at risk'),
                count(*) FILTER (WHERE c.churn_risk = 'churned'),
                round(count(*) FILTER (WHERE c.churn_risk = 'churned')::numeric
                      / nullif(count(*) FILTER (WHERE c.orders_count > 0), 0), 4),
                round(count(*) FILTER (WHERE c.churn_risk = 'at risk')::numeric
                      / nullif(count(*) FILTER (WHERE c.orders_count > 0), 0), 4),
                count(*) FILTER (WHERE c.orders_count = 0), count(*)
           FROM c"
    )
}

const SEGMENTS_VIEW: &str = "SELECT segment, customers, customers_pct, revenue, revenue_pct,
    avg_orders, avg_total_spent, avg_days_since_last_order, clv_predicted_12m, description
    FROM mart.segments";
const CHURN_VIEW: &str = "SELECT customers_with_orders, active, at_risk, churned, churn_rate,
    at_risk_rate, prospects, customers FROM mart.churn";

/// Products, scores, segments and churn as the views give them now.
async fn population_answers(client: &Client) -> Vec<Vec<String>> {
    vec![
        rows(client, "SELECT * FROM mart.products ORDER BY product_id").await,
        rows(client, SCORED_VIEW).await,
        rows(client, SEGMENTS_VIEW).await,
        rows(client, CHURN_VIEW).await,
    ]
}

/// `business_vault.product_customer` from scratch: what the loader keeps per pair.
const PAIRS_DEFINED: &str = "
SELECT coalesce(b.hk_product, v.hk_product) AS hk_product,
       coalesce(b.hk_customer, v.hk_customer) AS hk_customer,
       coalesce(b.orders, 0) AS orders, coalesce(b.units, 0) AS units,
       coalesce(b.revenue, 0.00) AS revenue, coalesce(v.views, 0) AS views
  FROM (SELECT l.hk_product, l.hk_customer, count(DISTINCT l.hk_order) AS orders,
               sum(l.quantity) AS units, sum(l.line_amount) AS revenue
          FROM business_vault.bridge_customer_order_product l
          JOIN business_vault.order_summary o ON o.hk_order = l.hk_order
         WHERE o.is_counted
         GROUP BY 1, 2) b
  FULL JOIN (SELECT hk_product, hk_customer, count(*) AS views
               FROM raw_vault.link_product_view GROUP BY 1, 2) v
    ON (v.hk_product, v.hk_customer) = (b.hk_product, b.hk_customer)
 ORDER BY 1, 2";

/// `business_vault.customer_category` from scratch: every counted line in its product's
/// current category.
const CATEGORIES_DEFINED: &str = "
SELECT o.hk_customer, p.category, count(*) AS lines, coalesce(sum(b.quantity), 0) AS units,
       count(b.quantity) AS units_known, coalesce(sum(b.line_amount), 0.00) AS revenue,
       count(b.line_amount) AS revenue_known
  FROM business_vault.order_summary o
  JOIN business_vault.bridge_customer_order_product b ON b.hk_order = o.hk_order
  JOIN LATERAL (SELECT x.category FROM raw_vault.sat_product_details x
                 WHERE x.hk_product = b.hk_product
                 ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) p ON true
 WHERE o.is_counted AND p.category IS NOT NULL
 GROUP BY 1, 2
 ORDER BY 1, 2";

/// Each customer's favourite category as docs/analysts.md defines it, from all their
/// counted lines (the sums as SQL gives them: unknown when no line states one).
const FAVOURITES_DEFINED: &str = "
SELECT c.hk_customer,
       (SELECT p.category
          FROM business_vault.order_summary o
          JOIN business_vault.bridge_customer_order_product b ON b.hk_order = o.hk_order
          JOIN LATERAL (SELECT x.category FROM raw_vault.sat_product_details x
                         WHERE x.hk_product = b.hk_product
                         ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) p ON true
         WHERE o.hk_customer = c.hk_customer AND o.is_counted AND p.category IS NOT NULL
         GROUP BY p.category
         ORDER BY sum(b.quantity) DESC NULLS LAST, sum(b.line_amount) DESC NULLS LAST, p.category
         LIMIT 1)
  FROM business_vault.customer_order_summary c
 ORDER BY 1";

#[tokio::test]
async fn product_figures_moved_by_difference_equal_their_definition_after_every_batch() {
    let (_db, mut client, loader) = small_batches(1).await;
    let mut corrected = order(
        "O1",
        "C1",
        "2024-02-03",
        &[("P1", 5, "10.00", "0"), ("P2", 1, "3.50", "0")],
    );
    corrected.event_id = "placed-O1-corrected".into();
    let mut view_again = viewed(1, "C1", "P1", "2024-02-01");
    view_again.event_id = "view-1-resent".into();
    let steps = [
        vec![
            product("P1", "Pen", "Office", "10.00"),
            product("P2", "Ink", "Office", "3.50"),
        ],
        vec![
            customer("C1", "Ann", "Rome", "IT"),
            customer("C2", "Bob", "Oslo", "NO"),
        ],
        // two views by one customer, one by another, and one of a product never bought
        vec![
            viewed(1, "C1", "P1", "2024-02-01"),
            viewed(2, "C1", "P1", "2024-02-02"),
        ],
        vec![
            viewed(3, "C2", "P1", "2024-02-02"),
            viewed(4, "C2", "P2", "2024-02-02"),
        ],
        // two orders of one customer with the same product, one order of another
        vec![order(
            "O1",
            "C1",
            "2024-02-03",
            &[("P1", 2, "10.00", "0"), ("P2", 1, "3.50", "0")],
        )],
        vec![order(
            "O2",
            "C1",
            "2024-02-04",
            &[("P1", 1, "10.00", "1.00")],
        )],
        vec![order("O3", "C2", "2024-02-05", &[("P2", 4, "3.50", "0")])],
        // a view sent again is the same view: nothing moves
        vec![view_again],
        // a line corrected, then an order that stops counting and counts again
        vec![corrected],
        vec![status("O2", "2024-02-06", "cancelled")],
        vec![status("O1", "2024-02-07", "returned")],
        vec![status("O1", "2024-02-08", "delivered")],
        // a view and a sale of a new product in one batch
        vec![
            product("P3", "Pad", "Paper", "2.00"),
            viewed(5, "C2", "P3", "2024-02-09"),
            order("O4", "C2", "2024-02-09", &[("P3", 3, "2.00", "0")]),
        ],
        // a product bought by both customers moves to another category, and a late
        // version of it (an earlier business time) leaves it there
        vec![recategorised("P2", "2024-02-10", "Ink")],
        vec![recategorised("P2", "2024-01-20", "Stationery")],
        // a line without a quantity (its units and money unknown), of a product sold
        // before in another category, and a product without a category, then with one
        vec![ev(
            "placed-O5",
            "order_placed",
            &noon("2024-02-11"),
            json!({"order_id": "O5", "customer_id": "C1", "ordered_at": noon("2024-02-11"),
                   "status": "placed", "channel": "web",
                   "lines": [{"line_no": 1, "product_id": "P3", "unit_price": "2.00"},
                             {"line_no": 2, "product_id": "P4", "quantity": 7, "unit_price": "1.00"}]}),
        )],
        vec![recategorised("P4", "2024-02-12", "Paper")],
        vec![status("O4", "2024-02-13", "cancelled")],
    ];
    for (i, step) in steps.iter().enumerate() {
        append(&client, step).await;
        load_all_with(&mut client, &loader).await;
        assert_eq!(
            rows(&client, "SELECT * FROM mart.products ORDER BY product_id").await,
            rows(&client, PRODUCTS_DEFINED).await,
            "the product summary after step {i}"
        );
        assert_eq!(
            rows(
                &client,
                "SELECT * FROM business_vault.product_customer ORDER BY 1, 2"
            )
            .await,
            rows(&client, PAIRS_DEFINED).await,
            "the pairs after step {i}"
        );
        assert_eq!(
            rows(
                &client,
                "SELECT * FROM business_vault.customer_category ORDER BY 1, 2"
            )
            .await,
            rows(&client, CATEGORIES_DEFINED).await,
            "the category totals after step {i}"
        );
        assert_eq!(
            rows(
                &client,
                "SELECT hk_customer, favourite_category FROM business_vault.customer_order_summary ORDER BY 1"
            )
            .await,
            rows(&client, FAVOURITES_DEFINED).await,
            "the favourite categories after step {i}"
        );
    }
    // by hand: C1 bought 5 pens (Office) and 1 ink (Ink), then 7 of P4 (Paper, once it
    // had a category) and a pad of unknown quantity (Paper); C2 bought 4 inks, and 3
    // pads in an order since cancelled
    assert_eq!(
        rows(
            &client,
            "SELECT h.customer_id, c.category, c.lines, c.units, c.units_known, c.revenue,
                    c.revenue_known
               FROM business_vault.customer_category c
               JOIN raw_vault.hub_customer h USING (hk_customer)
              ORDER BY 1, 2"
        )
        .await,
        [
            "(C1,Ink,1,1,1,3.50,1)",
            "(C1,Office,1,5,1,50.00,1)",
            "(C1,Paper,2,7,1,7.00,1)",
            "(C2,Ink,1,4,1,14.00,1)",
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, favourite_category FROM mart.customer_360 ORDER BY 1"
        )
        .await,
        ["(C1,Paper)", "(C2,Ink)"]
    );
    // the figures by hand: P1 bought by C1 in O1 (5 after the correction, counted again)
    // and O2 (cancelled); P2 by C1 in O1 and C2 in O3; P3 by C2 in O4 (cancelled) and by
    // C1 in O5 (quantity unknown); P4 by C1 in O5
    assert_eq!(
        rows(
            &client,
            "SELECT product_id, units_sold, revenue, orders, buyers, views, viewers, viewers_who_bought
               FROM mart.products ORDER BY product_id"
        )
        .await,
        [
            "(P1,5,50.00,1,1,3,2,1)",
            "(P2,5,17.50,2,2,1,1,1)",
            "(P3,0,0.00,1,1,1,1,0)",
            "(P4,7,7.00,1,1,0,0,0)",
        ]
    );
    // a pair with neither a counted order nor a view has no row: C1 and P1 keep theirs
    // (views), C2 and P3 too (a view, its order cancelled), and nothing was left
    // behind by the cancelled order
    let pairs: i64 = client
        .query_one("SELECT count(*) FROM business_vault.product_customer", &[])
        .await
        .expect("pairs")
        .get(0);
    assert_eq!(pairs, 7);
}

/// `business_vault.revenue_period` as defined: every order grouped by day, week and
/// month (a period has a row while it has an order).
const REVENUE_PERIODS_DEFINED: &str = "
SELECT g.grain, date_trunc(g.grain, o.order_date::timestamp)::date, count(*),
       count(*) FILTER (WHERE o.is_counted),
       count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted),
       coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0),
       coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00),
       count(*) FILTER (WHERE NOT o.is_counted),
       coalesce(sum(o.amount) FILTER (WHERE NOT o.is_counted), 0.00)
  FROM business_vault.order_summary o
 CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
 GROUP BY 1, 2 ORDER BY 1, 2";

const REVENUE_PERIODS_STORED: &str = "
SELECT grain, period_start, orders_placed, orders, customers, units, revenue,
       orders_cancelled_or_returned, revenue_lost
  FROM business_vault.revenue_period ORDER BY 1, 2";

/// Order `id` of `customer` placed again at noon of `event_day`, saying it was
/// placed at noon of `placed` (a corrected order time), with one line of `product`.
fn replaced(id: &str, customer: &str, event_day: &str, placed: &str, product: &str) -> NewEvent {
    ev(
        &format!("placed-{id}-again-{event_day}"),
        "order_placed",
        &noon(event_day),
        // no status: the order keeps the one it has
        json!({"order_id": id, "customer_id": customer, "ordered_at": noon(placed),
               "channel": "web", "lines": [{"line_no": 1, "product_id": product,
               "quantity": 1, "unit_price": "10", "discount": "0"}]}),
    )
}

#[tokio::test]
async fn revenue_periods_moved_by_difference_equal_their_definition_after_every_batch() {
    let (_db, mut client, loader) = small_batches(1).await;
    let line = |p| [(p, 1, "10", "0")];
    // one batch each: two orders of C1 and one of C2 on one day; then C1's second order
    // cancelled (C1 still a customer of the day), the first returned (no longer),
    // moved to another month (the day and month lose an order, another gains one), an
    // order's line changed and a line added (units and money), the last order of the
    // first day moved away (the day's row goes), and back
    let steps = vec![
        vec![
            product("P1", "Pen", "Office", "10"),
            customer("C1", "Ann", "Rome", "IT"),
        ],
        vec![customer("C2", "Bob", "Oslo", "NO")],
        vec![order("O1", "C1", "2024-03-04", &line("P1"))],
        vec![order("O2", "C1", "2024-03-04", &line("P1"))],
        vec![order("O3", "C2", "2024-03-04", &line("P1"))],
        vec![status("O2", "2024-03-05", "cancelled")],
        vec![status("O1", "2024-03-06", "returned")],
        vec![replaced("O1", "C1", "2024-03-07", "2024-04-02", "P1")],
        vec![order("O4", "C1", "2024-04-03", &line("P1"))],
        vec![ev(
            "placed-O4-again",
            "order_placed",
            &noon("2024-04-04"),
            json!({"order_id": "O4", "customer_id": "C1", "ordered_at": noon("2024-04-03"),
                   "channel": "web", "status": "placed", "lines": [
                       {"line_no": 1, "product_id": "P1", "quantity": 2, "unit_price": "10", "discount": "0"},
                       {"line_no": 2, "product_id": "P1", "quantity": 3, "unit_price": "10", "discount": "1.50"}]}),
        )],
        vec![replaced("O3", "C2", "2024-04-04", "2024-04-01", "P1")],
        vec![replaced("O2", "C1", "2024-04-05", "2024-03-11", "P1")],
        vec![replaced("O3", "C2", "2024-04-06", "2024-03-04", "P1")],
    ];
    for (i, step) in steps.iter().enumerate() {
        append(&client, step).await;
        load_all_with(&mut client, &loader).await;
        assert_eq!(
            rows(&client, REVENUE_PERIODS_STORED).await,
            rows(&client, REVENUE_PERIODS_DEFINED).await,
            "after step {i}"
        );
    }
    let rejected: i64 = client
        .query_one("SELECT count(*) FROM event_log.rejected", &[])
        .await
        .expect("rejected")
        .get(0);
    assert_eq!(rejected, 0, "every step loaded");
    // the steps did what they say: the first day lost its row and got it back
    assert_eq!(
        rows(
            &client,
            "SELECT grain, period_start, orders_placed, orders, customers FROM
               business_vault.revenue_period WHERE grain = 'day' ORDER BY 2"
        )
        .await,
        [
            "(day,2024-03-04,1,1,1)",
            "(day,2024-03-11,1,0,0)",
            "(day,2024-04-02,1,0,0)",
            "(day,2024-04-03,1,1,1)",
        ]
    );
}

#[tokio::test]
async fn population_figures_kept_by_small_batches_equal_their_definition() {
    let (_db, mut client, loader) = small_batches(2).await;
    // after every small load: new products, sales, returns, views and a late
    // recategorisation reach product rows and ranks; new orders move RFM boundaries,
    // and every stored score, segment total, churn count and revenue period follows
    for chunk in shop().chunks(5).chain([&late()[..]]) {
        append(&client, chunk).await;
        load_all_with(&mut client, &loader).await;
        assert_eq!(
            rows(&client, "SELECT * FROM mart.products ORDER BY product_id").await,
            rows(&client, PRODUCTS_DEFINED).await
        );
        assert_eq!(
            rows(&client, SCORED_VIEW).await,
            rows(
                &client,
                &format!(
                    "SELECT customer_id, days_since_last_order, avg_days_between_orders,
                            recency_score, frequency_score, monetary_score, rfm_cell, segment,
                            clv_predicted_12m, churn_risk
                       FROM ({SCORED_DEFINED}) d ORDER BY customer_id"
                )
            )
            .await
        );
        assert_eq!(
            rows(&client, SEGMENTS_VIEW).await,
            rows(&client, &segments_defined()).await
        );
        assert_eq!(
            rows(&client, CHURN_VIEW).await,
            rows(&client, &churn_defined()).await
        );
        // the revenue periods of the orders each batch touched, before and after
        for (grain, view) in [
            ("day", "SELECT * FROM mart.revenue_daily ORDER BY 1"),
            ("week", "SELECT * FROM mart.revenue_weekly ORDER BY 1"),
            ("month", "SELECT * FROM mart.revenue_monthly ORDER BY 1"),
        ] {
            assert_eq!(
                revenue_rows(&client, view, &[]).await,
                revenue_rows(&client, REVENUE_DEFINED, &[&grain]).await,
                "{grain}"
            );
        }
    }
    let months: i64 = client
        .query_one(
            "SELECT count(*) FROM business_vault.revenue_period WHERE grain = 'month'",
            &[],
        )
        .await
        .expect("months")
        .get(0);
    assert!(months >= 2, "the shop spans months: {months}");
    assert_eq!(
        rows(
            &client,
            "SELECT product_id, category, revenue, rank_in_category FROM mart.products
              WHERE category = 'Outdoor' ORDER BY product_id"
        )
        .await,
        ["(P4,Outdoor,40.00,1)"],
        "P4 moved to Outdoor late, and ranks there"
    );
    let answers = population_answers(&client).await;
    // a day passes without a load: the stored predicted CLVs are of another day, and
    // the views compute them (garbage stored values would show)
    client
        .batch_execute(
            "UPDATE business_vault.customer_scores_day SET scored_on = scored_on - 1;
             UPDATE business_vault.customer_360_current SET clv_predicted_12m = -1;
             UPDATE business_vault.segment_summary SET clv_predicted_12m = -1;",
        )
        .await
        .expect("age the stored day");
    assert_eq!(population_answers(&client).await, answers);
    // the first batch of the new day scores everybody again
    append(&client, &[viewed(90, "C6", "P1", "2024-09-02")]).await;
    load_all_with(&mut client, &loader).await;
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FILTER (WHERE clv_predicted_12m < 0),
                    (SELECT scored_on = (now() AT TIME ZONE 'UTC')::date FROM business_vault.customer_scores_day)
               FROM business_vault.customer_360_current"
        )
        .await,
        ["(0,t)"]
    );
    let mut after = population_answers(&client).await;
    assert_ne!(after[0], answers[0], "one more view of P1");
    after[0] = answers[0].clone();
    assert_eq!(after, answers);
}

/// The loader's sweep of past days scores a customer (`past_days::score`: days since the
/// last order, average gap, churn risk, predicted value) as `business_vault.customer_scores`
/// does, for 6,000 random customers: one to forty orders over up to three years, on both
/// sides of every churn threshold, spending from nothing to ten trillion (where the
/// division keeps fewer decimals), a few negative.
#[tokio::test]
async fn the_sweep_of_past_days_scores_a_customer_as_the_sql_rules_do() {
    use chrono::{Days, NaiveDate};
    use dvault::load::business::past_days::score::{self, Churn};

    let db = TestDb::new().await;
    let client = db.client().await;
    let mut seed = 5u64;
    let mut random = move |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below.max(1)
    };
    let start = NaiveDate::from_ymd_opt(2023, 1, 1).expect("date");
    let mut customers = Vec::new();
    for i in 0..6_000u64 {
        let first = start + Days::new(random(800));
        let last = first + Days::new(random(400));
        let day = last + Days::new(random(200));
        let orders = 1 + random(40) as u32;
        let sign = if i % 23 == 0 { -1 } else { 1 };
        let cents = sign * i128::from(random(10u64.pow(1 + (i % 15) as u32)));
        customers.push((day, first, last, orders, cents));
    }
    let money = |cents: i128| {
        let sign = if cents < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
    };
    type Customer = (NaiveDate, NaiveDate, NaiveDate, u32, i128);
    let column = |f: &dyn Fn(&Customer) -> String| customers.iter().map(f).collect::<Vec<String>>();
    let sql = client
        .query(
            "SELECT s.days_since_last_order, s.avg_days_between_orders::text, s.churn_risk,
                    s.clv_predicted_12m::text
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                    WITH ORDINALITY AS u(day, first, last, orders, spent, n)
              CROSS JOIN LATERAL business_vault.customer_scores(
                    u.day::date, u.first::date, u.last::date, u.orders::integer,
                    u.spent::numeric, '{}', '{}', '{}') s
              ORDER BY u.n",
            &[
                &column(&|c| c.0.to_string()),
                &column(&|c| c.1.to_string()),
                &column(&|c| c.2.to_string()),
                &column(&|c| c.3.to_string()),
                &column(&|c| money(c.4)),
            ],
        )
        .await
        .expect("customer_scores");
    assert_eq!(sql.len(), customers.len());
    let mut risks = std::collections::BTreeMap::new();
    for (&(day, first, last, orders, cents), row) in customers.iter().zip(&sql) {
        let scored = score::score(day, first, last, orders, cents).expect("score");
        let ours = (
            i32::try_from(scored.days_since_last_order).expect("days"),
            scored.gap_tenths.map(|g| format!("{}.{}", g / 10, g % 10)),
            match scored.churn {
                Churn::Active => "active",
                Churn::AtRisk => "at risk",
                Churn::Churned => "churned",
            }
            .to_string(),
            money(scored.clv_cents),
        );
        let theirs: (i32, Option<String>, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            ours, theirs,
            "{orders} orders from {first} to {last} for {} cents, at {day}",
            cents
        );
        *risks.entry(theirs.2).or_insert(0) += 1;
    }
    assert!(
        risks.values().all(|&n| n > 500) && risks.len() == 3,
        "every churn risk, often: {risks:?}"
    );
}

/// `business_vault.quintile_cuts` (one sort and a binary search per boundary) gives
/// what its definition says, computed here by rank: for k = 1..4 the smallest value
/// with 5 × (values strictly below it) ≥ k × n. Populations of 0 to 40 values, with
/// ties (few distinct values) and nulls, of integers, dates and numerics.
#[tokio::test]
async fn quintile_cuts_are_the_smallest_values_with_enough_below_them() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let by_rank = |values: &str| {
        format!(
            "SELECT ARRAY[min(r.x) FILTER (WHERE 5 * r.below >= 1 * r.n),
                          min(r.x) FILTER (WHERE 5 * r.below >= 2 * r.n),
                          min(r.x) FILTER (WHERE 5 * r.below >= 3 * r.n),
                          min(r.x) FILTER (WHERE 5 * r.below >= 4 * r.n)]
               FROM (SELECT u.x, (SELECT count(*) FROM unnest({values}) AS w(y) WHERE w.y < u.x) AS below,
                            (SELECT count(y) FROM unnest({values}) AS w(y)) AS n
                       FROM unnest({values}) AS u(x)
                      WHERE u.x IS NOT NULL) r"
        )
    };
    for (ty, value) in [
        ("integer", "floor(random() * (1 + p.i % 7))::integer"),
        (
            "date",
            "date '2024-01-01' + floor(random() * (1 + p.i % 11))::integer",
        ),
        ("numeric", "round((random() * (1 + p.i % 5))::numeric, 1)"),
    ] {
        let differ = client
            .query_one(
                &format!(
                    "WITH p AS (SELECT p.i, ARRAY(SELECT CASE WHEN random() < 0.1 THEN NULL ELSE {value} END
                                                    FROM generate_series(1, p.i % 41)) AS a
                                  FROM generate_series(0, 1999) AS p(i))
                     SELECT count(*) FILTER (WHERE business_vault.quintile_cuts(p.a)::text
                                                   IS DISTINCT FROM ({})::text),
                            count(*) FILTER (WHERE cardinality(array_remove(business_vault.quintile_cuts(p.a), NULL)) = 4),
                            count(*) FILTER (WHERE cardinality(array_remove(business_vault.quintile_cuts(p.a), NULL)) < 4
                                               AND cardinality(array_remove(p.a, NULL)) > 0)
                       FROM p",
                    by_rank("p.a")
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{ty}: {e}"));
        let (wrong, four, fewer): (i64, i64, i64) = (differ.get(0), differ.get(1), differ.get(2));
        assert_eq!(
            wrong, 0,
            "{ty}: populations whose boundaries differ from the definition"
        );
        // both kinds were tried: four boundaries, and fewer (ties at the top)
        assert!(
            four > 100 && fewer > 100,
            "{ty}: {four} with four boundaries, {fewer} with fewer"
        );
    }
    let edge = client
        .query_one(
            "SELECT business_vault.quintile_cuts('{}'::integer[])::text,
                    business_vault.quintile_cuts('{NULL,NULL}'::integer[])::text,
                    business_vault.quintile_cuts('{7}'::integer[])::text,
                    business_vault.quintile_cuts('{1,2}'::integer[])::text,
                    business_vault.quintile_cuts('{3,1,2,5,4}'::integer[])::text",
            &[],
        )
        .await
        .expect("edge cases");
    let edge: Vec<String> = (0..5).map(|i| edge.get(i)).collect();
    assert_eq!(
        edge,
        [
            "{NULL,NULL,NULL,NULL}",
            "{NULL,NULL,NULL,NULL}",
            "{NULL,NULL,NULL,NULL}",
            "{2,2,NULL,NULL}",
            "{2,3,4,5}"
        ]
    );
}

/// How many past days the loader keeps from `first` (a date) to yesterday (UTC).
async fn days_to_yesterday(client: &Client, first: &str) -> i64 {
    client
        .query_one(
            "SELECT ((now() AT TIME ZONE 'UTC')::date - $1::text::date)::bigint",
            &[&first],
        )
        .await
        .expect("days")
        .get(0)
}

/// Orders whose life shows every kind of change the RFM boundaries of past days must
/// follow: one placed (ordered_at) days after the event that recorded it, one that
/// counts again after it was cancelled, one placed as cancelled.
fn orders_turning() -> Vec<NewEvent> {
    vec![
        placed(
            "placed-O91",
            ("O91", "C6"),
            ("2024-05-20", "2024-05-25"),
            ("web", "placed"),
            ("P3", 2, "20"),
        ),
        status("O71", "2024-04-01", "paid"),
        placed(
            "placed-O92",
            ("O92", "C4"),
            ("2024-03-03", "2024-03-03"),
            ("shop", "cancelled"),
            ("P5", 1, "700"),
        ),
        // products never listed: P8 known from its view (04-10), P9 from the order with
        // a line of it (09-10)
        viewed(90, "C1", "P8", "2024-04-10"),
        placed(
            "placed-O93",
            ("O93", "C5"),
            ("2024-09-10", "2024-09-10"),
            ("web", "placed"),
            ("P9", 1, "30"),
        ),
    ]
}

/// The RFM boundaries the loader keeps for the end of every past day equal, day by day,
/// the boundaries of the orders as they were then (`business_vault.orders_at`, as a
/// request computes them), and its population figures those of every customer known
/// then (`business_vault.population_computed`): with orders whose details, lines and
/// status changed after they were placed, customers known by an order or a view alone,
/// and again after late events, which make the batch forget the days from theirs on
/// (and only those) until the next fill sweeps again.
#[tokio::test]
async fn the_boundaries_and_population_kept_for_every_past_day_are_those_of_then() {
    use dvault::load::business::past_days::{self, Filled};

    let (_db, mut client) = setup(&shop()).await;
    append(&client, &[orders_changed(), orders_turning()].concat()).await;
    load_all(&mut client).await;

    let days = days_to_yesterday(&client, "2024-01-15").await;
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Stored(days as usize),
        "every day from the first order's (O51, 2024-01-15) to yesterday"
    );
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Present
    );

    // each kept day (the year of the events, and the last) against the boundaries of
    // the orders of then
    let differing = "
        SELECT m.as_of, m.population, m.recency, m.frequency, m.monetary, r.*
          FROM business_vault.rfm_cutpoints_as_of m
         CROSS JOIN LATERAL (
               SELECT count(*)::integer AS population,
                      business_vault.quintile_cuts(coalesce(array_agg(a.last_order_date), '{}')) AS recency,
                      business_vault.quintile_cuts(coalesce(array_agg(a.orders_count), '{}')) AS frequency,
                      business_vault.quintile_cuts(coalesce(array_agg(a.total_spent), '{}')) AS monetary
                 FROM (SELECT max(o.order_date) AS last_order_date,
                              count(*)::integer AS orders_count, sum(o.amount) AS total_spent
                         FROM business_vault.orders_at(m.as_of) o
                        WHERE o.is_counted
                        GROUP BY o.hk_customer) a) r
         WHERE m.by_loader
           AND (m.as_of < '2025-01-01' OR m.as_of > now() - interval '2 days')
           AND (m.population, m.recency::text, m.frequency::text, m.monetary::text)
               IS DISTINCT FROM (r.population, r.recency::text, r.frequency::text, r.monetary::text)";
    assert_eq!(rows(&client, differing).await, Vec::<String>::new());
    // and they are what a request for the end of such a day reads
    let kept = "SELECT population, recency, frequency, monetary
                  FROM business_vault.rfm_cutpoints_as_of
                 WHERE as_of = '2024-05-25 23:59:59.999999+00'";
    let asked = "SELECT population, recency, frequency, monetary
                   FROM business_vault.rfm_cuts_at('2024-05-25 23:59:59.999999+00')";
    assert_eq!(rows(&client, asked).await, rows(&client, kept).await);
    assert_eq!(
        rows(&client, kept).await,
        [
            "(7,\"{2024-05-01,2024-05-01,2024-05-10,2024-05-25}\",\"{2,2,4,4}\",\"{180.00,240.00,1000.00,NULL}\")"
        ],
        "last order, orders and spent: C1 05-01 4 400, C2 05-10 3 240, C3 05-01 3 180, \
         C4 03-01 2 20 (not O92, placed cancelled), C5 01-15 1 1000, C6 05-25 1 40 (O91, \
         placed that day), C7 03-01 1 1000 (O71, paid again)"
    );

    // the population per segment of each kept day against every customer of then, and
    // every day's kept
    assert_eq!(
        rows(&client, POPULATION_DIFFERING).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&client, POPULATION_DAYS).await,
        [format!("({days},{days})")]
    );
    // customers are counted from when they became known: C1 to C7 registered, C8 by
    // its first order (07-05, a till's line), C9 by a product view alone (08-01)
    let known = "SELECT (as_of AT TIME ZONE 'UTC')::date, sum(customers)
                   FROM business_vault.population_as_of
                  WHERE by_loader AND as_of::date IN ('2024-07-04', '2024-07-05', '2024-07-31', '2024-08-01')
                  GROUP BY as_of ORDER BY as_of";
    assert_eq!(
        rows(&client, known).await,
        [
            "(2024-07-04,7)",
            "(2024-07-05,8)",
            "(2024-07-31,8)",
            "(2024-08-01,9)"
        ]
    );
    // a request for the end of a kept day reads the kept figures (marked here: each
    // segment's count 100 more)
    let mark = |by: i64| {
        format!(
            "UPDATE business_vault.population_as_of SET customers = customers + {by}
              WHERE as_of = '2024-05-25 23:59:59.999999+00'"
        )
    };
    client.batch_execute(&mark(100)).await.expect("mark");
    let asked = "SELECT sum(customers) FROM mart.segments_as_of('2024-05-25 23:59:59.999999+00')
                  UNION ALL
                 SELECT sum(customers) - 100 * count(*) FROM business_vault.population_as_of
                  WHERE as_of = '2024-05-25 23:59:59.999999+00'";
    let asked = rows(&client, asked).await;
    assert_eq!(asked[1], "(7)", "C1 to C7 known on 05-25");
    assert_ne!(asked[0], asked[1], "the marked figures read");
    client.batch_execute(&mark(-100)).await.expect("unmark");

    // the revenue series of each kept day against the orders of then, and a request for
    // the end of a kept day reads them (marked here: each version's orders 100 more)
    assert_eq!(
        rows(&client, &sales_differing(DAYS_COMPARED)).await,
        Vec::<String>::new()
    );
    let may = "SELECT period_start, orders, customers, units, revenue,
                      orders_cancelled_or_returned, revenue_lost
                 FROM mart.revenue_as_of('2024-05-25 23:59:59.999999+00', 'month')";
    assert_eq!(
        rows(&client, may).await,
        [
            "(2024-01-01,1,1,1,1000.00,0,0.00)",
            "(2024-02-01,3,3,6,170.00,0,0.00)",
            "(2024-03-01,5,5,8,1250.00,1,700.00)",
            "(2024-04-01,2,2,3,180.00,0,0.00)",
            "(2024-05-01,4,4,8,280.00,0,0.00)"
        ],
        "by 05-25: January O51; February O11, O31, O41; March O12, O21, O32, O42 and O71 \
         (paid again), O92 placed cancelled (700); April O13, O22; May O14, O23, O33 and \
         O91 (2 units, placed that day)"
    );
    let mark = |by: i64| {
        format!(
            "UPDATE business_vault.revenue_kept SET orders = orders + {by}
              WHERE held @> '2024-05-25'::date AND grain = 'month'"
        )
    };
    client.batch_execute(&mark(100)).await.expect("mark");
    let marked =
        "SELECT sum(orders) FROM mart.revenue_as_of('2024-05-25 23:59:59.999999+00', 'month')";
    assert_eq!(
        rows(&client, marked).await,
        ["(515)"],
        "15 orders, 100 more a month"
    );
    client.batch_execute(&mark(-100)).await.expect("unmark");
    // and so are its categories and top products (known then: P8 by a view, without a
    // category; P9 not yet)
    let categories = "SELECT category, products, units_sold, revenue
                        FROM mart.categories_as_of('2024-05-25 23:59:59.999999+00')";
    assert_eq!(
        rows(&client, categories).await,
        [
            "(Toys,2,5,2240.00)",
            "(Books,2,19,620.00)",
            "(Garden,1,2,20.00)",
            "(,1,0,0.00)"
        ],
        "Toys: P5 1+1 for 2000 (O51, O71; not O92, cancelled) and P2 3 for 240 (O21, O22, \
         O23); Books: P1 8 for 400 (O11 to O14) and P3 3+3+3+2 for 220 (O31, O32, O33, \
         O91); Garden: P4 1+1 for 20 (O41, O42); P8 never listed, viewed"
    );
    client
        .batch_execute(
            "UPDATE business_vault.categories_kept SET products = products + 10
              WHERE held @> '2024-05-25'::date;
             UPDATE business_vault.top_products_kept
                SET units_sold = ARRAY(SELECT u + 10 FROM unnest(units_sold) u)
              WHERE held @> '2024-05-25'::date",
        )
        .await
        .expect("mark");
    let marked = "SELECT (SELECT sum(products) FROM mart.categories_as_of('2024-05-25 23:59:59.999999+00')),
                         (SELECT sum(units_sold) FROM mart.top_products_as_of('2024-05-25 23:59:59.999999+00'))";
    assert_eq!(
        rows(&client, marked).await,
        ["(46,76)"],
        "6 products and 26 units, 10 more on each of 4 categories and 5 products"
    );
    client
        .batch_execute(
            "UPDATE business_vault.categories_kept SET products = products - 10
              WHERE held @> '2024-05-25'::date;
             UPDATE business_vault.top_products_kept
                SET units_sold = ARRAY(SELECT u - 10 FROM unnest(units_sold) u)
              WHERE held @> '2024-05-25'::date",
        )
        .await
        .expect("unmark");

    // late events (the earliest at noon of 2024-03-01) forget that day and the ones after
    append(&client, &late()).await;
    load_all(&mut client).await;
    let kept_days = "SELECT count(*), max(as_of) FROM business_vault.rfm_cutpoints_as_of WHERE by_loader
                     UNION ALL
                     SELECT count(DISTINCT as_of), max(as_of) FROM business_vault.population_as_of WHERE by_loader";
    assert_eq!(
        rows(&client, kept_days).await,
        [
            "(46,\"2024-02-29 23:59:59.999999+00\")",
            "(46,\"2024-02-29 23:59:59.999999+00\")"
        ]
    );
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Stored(days as usize)
    );
    assert_eq!(rows(&client, differing).await, Vec::<String>::new());
    assert_eq!(
        rows(&client, POPULATION_DIFFERING).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&client, &sales_differing(DAYS_COMPARED)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&client, POPULATION_DAYS).await,
        [format!("({days},{days})")]
    );
}

/// Days with nobody to count (an order placed days before the event that recorded it,
/// of a customer known by nothing else) keep no population figures, yet count as swept:
/// the next fill finds every day present instead of sweeping again.
#[tokio::test]
async fn days_with_nobody_to_count_are_swept_once() {
    use dvault::load::business::past_days::{self, Filled};

    let (_db, client) = setup(&[
        product("P1", "Novel", "Books", "50.00"),
        placed(
            "placed-O1",
            ("O1", "C1"),
            ("2024-05-20", "2024-05-15"),
            ("web", "placed"),
            ("P1", 1, "50"),
        ),
    ])
    .await;
    let days = days_to_yesterday(&client, "2024-05-15").await;
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Stored(days as usize)
    );
    // 05-15 to 05-19: C1's order is not recorded yet, so nobody is known
    assert_eq!(
        rows(&client, POPULATION_DAYS).await,
        [format!("({days},{})", days - 5)]
    );
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Present
    );
    assert_eq!(
        rows(&client, POPULATION_DIFFERING).await,
        Vec::<String>::new()
    );
}

/// The sales the sweep kept (revenue series, categories, top products) for the days
/// `days` picks (a condition on `as_of`, the day's end) that differ from what a request
/// computes for them (`business_vault.sales_computed`), both ways, as text rows; and the
/// days of the span not marked kept.
pub fn sales_differing(days: &str) -> String {
    format!(
        "
    SELECT d.as_of, x.side, x.r
      FROM (SELECT as_of, (as_of AT TIME ZONE 'UTC')::date AS day
              FROM business_vault.rfm_cutpoints_as_of
             WHERE by_loader AND ({days})) d
     CROSS JOIN LATERAL (
           WITH kept AS (
                SELECT 'revenue ' || ROW(k.grain, k.period_start, k.orders, k.customers, k.units,
                                         k.revenue, k.orders_cancelled_or_returned,
                                         k.revenue_lost)::text AS r
                  FROM business_vault.revenue_kept k WHERE k.held @> d.day
                UNION ALL
                SELECT 'category ' || ROW(k.category, k.products, k.units_sold, k.revenue)::text
                  FROM business_vault.categories_kept k WHERE k.held @> d.day
                UNION ALL
                SELECT 'product ' || ROW(t.rank::integer, t.product_id, t.name, t.category,
                                         t.units_sold, t.revenue)::text
                  FROM business_vault.top_products_kept k
                 CROSS JOIN LATERAL unnest(k.product_id, k.name, k.category, k.units_sold,
                                           k.revenue)
                       WITH ORDINALITY AS t(product_id, name, category, units_sold, revenue, rank)
                 WHERE k.held @> d.day
           ), computed AS (
                SELECT c.part || ' ' || CASE c.part
                         WHEN 'revenue' THEN ROW(c.grain, c.period_start, c.orders, c.customers,
                                                 c.units, c.revenue, c.orders_cancelled_or_returned,
                                                 c.revenue_lost)::text
                         WHEN 'category' THEN ROW(c.category, c.products, c.units::bigint,
                                                  c.revenue)::text
                         ELSE ROW(c.rank, c.product_id, c.name, c.category, c.units::bigint,
                                  c.revenue)::text END AS r
                  FROM business_vault.sales_computed(d.as_of) c
           )
           (SELECT 'kept' AS side, r FROM kept EXCEPT SELECT 'kept', r FROM computed)
           UNION ALL
           (SELECT 'computed', r FROM computed EXCEPT SELECT 'computed', r FROM kept)) x
    UNION ALL
    SELECT m.as_of, 'not kept', NULL
      FROM business_vault.rfm_cutpoints_as_of m
     WHERE m.by_loader AND NOT m.sales_kept"
    )
}

/// The days of 2024 and the last two.
const DAYS_COMPARED: &str = "as_of < '2025-01-01' OR as_of > now() - interval '2 days'";

/// The days whose population the sweep marks kept, and the days with kept figures.
const POPULATION_DAYS: &str = "
    SELECT (SELECT count(*) FROM business_vault.rfm_cutpoints_as_of
             WHERE by_loader AND population_kept),
           (SELECT count(DISTINCT as_of) FROM business_vault.population_as_of WHERE by_loader)";

/// The kept population figures of the days of 2024 and of the last two days that differ
/// from what a request computes for them (`business_vault.population_computed`: every
/// customer of then, scored by the SQL rules), both ways.
const POPULATION_DIFFERING: &str = "
    SELECT d.as_of, x.*
      FROM (SELECT DISTINCT as_of FROM business_vault.population_as_of
             WHERE by_loader AND (as_of < '2025-01-01' OR as_of > now() - interval '2 days')) d
     CROSS JOIN LATERAL (
           (SELECT 'kept' AS side, p.segment, p.customers, p.with_orders, p.orders, p.revenue,
                   p.with_days, p.days_sum, p.clv_predicted_12m, p.active, p.at_risk, p.churned
              FROM business_vault.population_as_of p WHERE p.as_of = d.as_of
            EXCEPT
            SELECT 'kept', c.* FROM business_vault.population_computed(d.as_of) c)
           UNION ALL
           (SELECT 'computed', c.* FROM business_vault.population_computed(d.as_of) c
            EXCEPT
            SELECT 'computed', p.segment, p.customers, p.with_orders, p.orders, p.revenue,
                   p.with_days, p.days_sum, p.clv_predicted_12m, p.active, p.at_risk, p.churned
              FROM business_vault.population_as_of p WHERE p.as_of = d.as_of)) x";

/// A fill that finds the vault moved while it swept keeps nothing of what it swept: the
/// loader committed a batch after the fill read when it began (here while it waits for
/// the order lines, by a lock), so the days' boundaries, which it stores last, find the
/// checkpoint moved, and everything it stored before them (the population figures, the
/// revenue series, the categories and the top products) goes with its transaction.
#[tokio::test]
async fn a_fill_that_finds_the_vault_moved_keeps_nothing_it_swept() {
    use dvault::load::business::past_days::{self, Filled};

    let (db, mut client) = setup(&shop()).await;
    append(&client, &orders_turning()).await;
    load_all(&mut client).await;
    let days = days_to_yesterday(&client, "2024-01-15").await;
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Stored(days as usize)
    );
    // every day to sweep again, as after late events; what is kept now
    client
        .batch_execute(
            "UPDATE business_vault.rfm_cutpoints_as_of
                SET population_kept = false, sales_kept = false",
        )
        .await
        .expect("unkeep");
    let kept = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (
                  SELECT 'cuts', c::text FROM business_vault.rfm_cutpoints_as_of c
                  UNION ALL SELECT 'population', p::text FROM business_vault.population_as_of p
                  UNION ALL SELECT 'revenue', r::text FROM business_vault.revenue_kept r
                  UNION ALL SELECT 'categories', k::text FROM business_vault.categories_kept k
                  UNION ALL SELECT 'top', o::text FROM business_vault.top_products_kept o) t";
    let before = rows(&client, kept).await;
    append(
        &client,
        &[ev(
            "unknown-1",
            "no_such_type",
            "2024-06-01T00:00:00Z",
            json!({}),
        )],
    )
    .await;

    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE raw_vault.sat_order_line IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let filler = db.client().await;
    let fill = tokio::spawn(async move { past_days::fill(&filler).await });
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rows(&client, waiting).await != ["(1)"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the fill never reached the order lines"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // the loader moves on meanwhile (an event no mapping knows, appended before the
    // lock: held back, the vault untouched, the checkpoint past it)
    let loaded = load_all(&mut client).await;
    assert_eq!((loaded.events, loaded.held), (1, 1));
    blocker.batch_execute("COMMIT").await.expect("unlock");

    assert_eq!(
        fill.await.expect("the fill's task").expect("fill"),
        Filled::Moved
    );
    assert_eq!(
        rows(&client, kept).await,
        before,
        "nothing kept of that sweep"
    );
    // the next fill sweeps again, and keeps every day
    assert_eq!(
        past_days::fill(&client).await.expect("fill"),
        Filled::Stored(days as usize)
    );
    assert_eq!(
        rows(&client, POPULATION_DAYS).await,
        [format!("({days},{days})")]
    );
}
