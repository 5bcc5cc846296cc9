//! The REST API over real HTTP: a server on 127.0.0.1:0 per test, against a fresh
//! database loaded with a small known data set.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use dvault::api::{self, ApiConfig, ApiKey, AppState, Cors, Scope};
use dvault::events::{self, NewEvent};

use crate::harness::{self, TestDb};

// ---------------------------------------------------------------------------------
// The app under test

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub(crate) async fn spawn(database_url: &str, config: ApiConfig) -> TestApp {
        TestApp::spawn_state(AppState::new(config, database_url).expect("state")).await
    }

    pub(crate) async fn spawn_state(state: AppState) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, state, async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub(crate) async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// GET, expecting `status` and JSON (problem+json for errors).
    pub(crate) async fn json(&self, path: &str, status: u16) -> Value {
        let resp = self.get(path).await;
        expect_json(resp, status, path).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("POST")
    }

    /// Stop the server gracefully and wait for it.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("graceful shutdown within 10 s")
                .expect("join")
                .expect("serve");
        }
    }
}

pub(crate) async fn expect_json(resp: reqwest::Response, status: u16, what: &str) -> Value {
    let got = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "{what}: {text}");
    let wanted_ct = if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    assert_eq!(ct, wanted_ct, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

pub(crate) fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Assert a problem document: status, type and that the detail mentions `needle`.
pub(crate) fn assert_problem(p: &Value, status: u16, kind: &str, needle: &str) {
    assert_eq!(p["status"], status, "{p}");
    assert_eq!(p["type"], format!("urn:dvault:problem:{kind}"), "{p}");
    assert!(p["title"].is_string(), "{p}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "detail lacks {needle:?}: {p}");
}

pub(crate) fn open_config() -> ApiConfig {
    ApiConfig {
        pool_size: 4,
        ..ApiConfig::default()
    }
}

pub(crate) const READ_TOKEN: &str = "reader-token-123";
pub(crate) const WRITE_TOKEN: &str = "writer-token-456";

pub(crate) fn keyed_config() -> ApiConfig {
    ApiConfig {
        keys: vec![
            ApiKey::for_token(Scope::Read, READ_TOKEN),
            ApiKey::for_token(Scope::Write, WRITE_TOKEN),
        ],
        ..open_config()
    }
}

// ---------------------------------------------------------------------------------
// The data set

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn event(n: &mut u32, ty: &str, source: &str, time: &str, data: Value) -> NewEvent {
    *n += 1;
    NewEvent {
        event_id: format!("test-{n}"),
        event_type: ty.into(),
        source: source.into(),
        occurred_at: at(time),
        payload: data.to_string(),
    }
}

/// 12 customers (C01 changes city and email; C02 only has a cancelled order; C03
/// none), 3 products, 12 orders, all in 2024.
pub(crate) fn data_set() -> Vec<NewEvent> {
    let mut n = 0;
    let mut out = Vec::new();
    let customer = |n: &mut u32, id: &str, first: &str, city: &str, country: &str, day: u32| {
        event(
            n,
            "customer_registered",
            "crm",
            &format!("2024-01-{day:02}T09:00:00Z"),
            json!({"customer_id": id, "first_name": first, "last_name": "Test",
                   "email": format!("{}@example.com", id.to_lowercase()), "phone": "+39 000",
                   "city": city, "country": country, "signup_date": format!("2024-01-{day:02}")}),
        )
    };
    out.push(customer(&mut n, "C01", "Ann", "Rome", "Italy", 10));
    out.push(customer(&mut n, "C02", "Bob", "Oslo", "Norway", 11));
    out.push(customer(&mut n, "C03", "Cid", "Paris", "France", 12));
    let countries = ["Italy", "Norway", "France"];
    for i in 4..=12u32 {
        out.push(customer(
            &mut n,
            &format!("C{i:02}"),
            &format!("Cust{i}"),
            "Town",
            countries[i as usize % 3],
            10 + i,
        ));
    }
    out.push(event(
        &mut n,
        "customer_updated",
        "crm",
        "2024-03-01T00:00:00Z",
        json!({"customer_id": "C01", "email": "ann@new.example"}),
    ));
    out.push(event(
        &mut n,
        "customer_updated",
        "crm",
        "2024-06-01T00:00:00Z",
        json!({"customer_id": "C01", "city": "Milan"}),
    ));
    for (id, name, category, price) in [
        ("P1", "Book A", "Books", "10.00"),
        ("P2", "Kite B", "Toys", "25.50"),
        ("P3", "Mug C", "Kitchen", "5.25"),
    ] {
        out.push(event(
            &mut n,
            "product_listed",
            "catalog",
            "2024-01-01T00:00:00Z",
            json!({"product_id": id, "name": name, "category": category, "brand": "X", "price": price}),
        ));
    }
    let order = |n: &mut u32,
                 id: &str,
                 customer: &str,
                 time: &str,
                 channel: &str,
                 status: &str,
                 lines: Value| {
        event(
            n,
            "order_placed",
            "shop",
            time,
            json!({"order_id": id, "customer_id": customer, "ordered_at": time,
                   "channel": channel, "status": status, "lines": lines}),
        )
    };
    out.push(order(
        &mut n,
        "O01",
        "C01",
        "2024-03-05T10:00:00Z",
        "web",
        "delivered",
        json!([{"line_no": 1, "product_id": "P1", "quantity": 2, "unit_price": "10.00", "discount": "0"}]),
    ));
    out.push(order(
        &mut n,
        "O02",
        "C01",
        "2024-07-01T10:00:00Z",
        "web",
        "delivered",
        json!([
            {"line_no": 1, "product_id": "P2", "quantity": 1, "unit_price": "25.50", "discount": "0.50"},
            {"line_no": 2, "product_id": "P3", "quantity": 2, "unit_price": "5.25", "discount": "0"}
        ]),
    ));
    out.push(order(
        &mut n,
        "O03",
        "C02",
        "2024-04-10T12:00:00Z",
        "mobile",
        "placed",
        json!([{"line_no": 1, "product_id": "P1", "quantity": 1, "unit_price": "10.00", "discount": "0"}]),
    ));
    out.push(event(
        &mut n,
        "order_status_changed",
        "shop",
        "2024-04-11T08:00:00Z",
        json!({"order_id": "O03", "status": "cancelled"}),
    ));
    for i in 4..=12u32 {
        out.push(order(
            &mut n,
            &format!("O{i:02}"),
            &format!("C{i:02}"),
            &format!("2024-05-{:02}T12:00:00Z", i - 3),
            "store",
            "delivered",
            json!([{"line_no": 1, "product_id": "P3", "quantity": i - 3, "unit_price": "5.25", "discount": "0"}]),
        ));
    }
    out
}

/// A fresh database with the data set appended and loaded.
pub(crate) async fn loaded_db() -> TestDb {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let appended = events::append(&client, &data_set()).await.expect("append");
    assert_eq!(appended.duplicates, 0);
    // load_all gives up after 30 s when a long transaction elsewhere on the server
    // hides our events from the loader; give it a few rounds
    let mut rejected = 0;
    for _ in 0..4 {
        rejected += harness::load_all(&mut client).await.rejected;
        let hubs: i64 = client
            .query_one("SELECT count(*) FROM raw_vault.hub_order", &[])
            .await
            .expect("count")
            .get(0);
        if hubs == 12 {
            assert_eq!(rejected, 0, "the data set loads cleanly");
            return db;
        }
    }
    panic!("the loader did not get to the data set within 2 minutes");
}

fn items_of(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i[field].as_str().expect("id").to_string())
        .collect()
}

/// Follow `next` links from `first`, returning every id in order and the page count.
async fn walk(app: &TestApp, first: &str, field: &str) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut path = Some(first.to_string());
    while let Some(p) = path {
        let page = app.json(&p, 200).await;
        pages += 1;
        assert!(pages < 100, "runaway paging at {p}");
        all.extend(ids(&page, field));
        path = page["next"].as_str().map(str::to_string);
    }
    (all, pages)
}

async fn column(db: &TestDb, sql: &str) -> Vec<String> {
    db.client()
        .await
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// ---------------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn customer_pages_cover_everyone_once_in_every_sort() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    for (sort, order_by) in [
        ("customer_id", "c.customer_id, c.customer_id"),
        ("-customer_id", "c.customer_id DESC, c.customer_id DESC"),
        ("-total_spent", "c.total_spent DESC, c.customer_id DESC"),
        ("total_spent", "c.total_spent, c.customer_id"),
        (
            "last_order_at",
            "coalesce(c.last_order_at, '-infinity'), c.customer_id",
        ),
        ("-signup_date", "c.signup_date DESC, c.customer_id DESC"),
        ("-orders_count", "c.orders_count DESC, c.customer_id DESC"),
    ] {
        let expected = column(
            &db,
            &format!("SELECT c.customer_id FROM mart.customer_360 c ORDER BY {order_by}"),
        )
        .await;
        assert_eq!(expected.len(), 12);
        let (got, pages) = walk(
            &app,
            &format!("/customers?sort={sort}&limit=5"),
            "customer_id",
        )
        .await;
        assert_eq!(got, expected, "sort={sort}");
        assert_eq!(pages, 3, "sort={sort}: 5 + 5 + 2");
    }
    // skip and offset give the same page as the cursor
    let by_cursor = app.json("/customers?limit=5", 200).await;
    let second = app
        .json(by_cursor["next"].as_str().expect("next"), 200)
        .await;
    for param in ["skip", "offset"] {
        let by_offset = app
            .json(&format!("/customers?limit=5&{param}=5"), 200)
            .await;
        assert_eq!(ids(&by_offset, "customer_id"), ids(&second, "customer_id"));
    }
    // the default page size is 50, and the last page has no next link
    let all = app.json("/customers", 200).await;
    assert_eq!(all["limit"], 50);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(12));
    assert!(all["next"].is_null());

    // filters, kept in the next link
    let (norway, _) = walk(&app, "/customers?country=NORWAY&limit=1", "customer_id").await;
    assert_eq!(
        norway,
        column(
            &db,
            "SELECT customer_id FROM mart.customer_360 WHERE country = 'Norway' ORDER BY 1"
        )
        .await
    );
    assert!(norway.len() >= 2);
    let first = app.json("/customers?country=Norway&limit=1", 200).await;
    assert!(
        first["next"]
            .as_str()
            .expect("next")
            .contains("country=Norway"),
        "{first}"
    );
    let rich = app.json("/customers?min_total_spent=50", 200).await;
    assert_eq!(ids(&rich, "customer_id"), ["C01"]);
    let rich = app
        .json("/customers?min_total_spent=36.75&sort=-total_spent", 200)
        .await;
    assert_eq!(ids(&rich, "customer_id"), ["C01", "C12", "C11", "C10"]);
    let churned = app
        .json("/customers?churn_risk=churned&limit=1000", 200)
        .await;
    assert_eq!(
        churned["items"].as_array().map(Vec::len),
        Some(10),
        "every buyer of 2024 has churned by now"
    );
    let segment = column(
        &db,
        "SELECT segment FROM mart.customer_360 WHERE customer_id = 'C01'",
    )
    .await;
    let members = app
        .json(
            &format!(
                "/customers?segment={}",
                segment[0].replace(' ', "%20").to_uppercase()
            ),
            200,
        )
        .await;
    assert_eq!(
        ids(&members, "customer_id"),
        column(
            &db,
            &format!(
                "SELECT customer_id FROM mart.customer_360 WHERE segment = '{}' ORDER BY 1",
                segment[0].replace('\'', "''")
            )
        )
        .await
    );
    app.stop().await;
}

/// The predicted-CLV sorts page the stored values by index on a day the loader has
/// scored (mart.customer_list_keys), and the computed ones on any other day: the same
/// order as the view's in both cases, with or without a segment.
#[tokio::test]
async fn clv_sorts_page_like_the_view_on_a_scored_day_and_on_any_other() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let segment = column(
        &db,
        "SELECT segment FROM mart.customer_360 GROUP BY segment ORDER BY count(*) DESC, segment LIMIT 1",
    )
    .await
    .remove(0);
    let check = |day: &'static str| {
        let (db, app, segment) = (&db, &app, segment.clone());
        async move {
            for (sort, dir) in [("-clv_predicted_12m", "DESC"), ("clv_predicted_12m", "ASC")] {
                let order = format!("coalesce(c.clv_predicted_12m, 0) {dir}, c.customer_id {dir}");
                let everyone = column(
                    db,
                    &format!("SELECT c.customer_id FROM mart.customer_360 c ORDER BY {order}"),
                )
                .await;
                assert_eq!(everyone.len(), 12);
                let (got, _) = walk(
                    app,
                    &format!("/customers?sort={sort}&limit=5"),
                    "customer_id",
                )
                .await;
                assert_eq!(got, everyone, "{day}: sort={sort}");
                let members = column(
                    db,
                    &format!(
                        "SELECT c.customer_id FROM mart.customer_360 c WHERE c.segment = '{segment}' ORDER BY {order}"
                    ),
                )
                .await;
                assert!(members.len() >= 2, "{segment}: {members:?}");
                let (got, _) = walk(
                    app,
                    &format!("/segments/{segment}/customers?sort={sort}&limit=1"),
                    "customer_id",
                )
                .await;
                assert_eq!(got, members, "{day}: {segment}, sort={sort}");
            }
            let top = app
                .json("/customers?sort=-clv_predicted_12m&limit=1", 200)
                .await;
            let expected = column(
                db,
                "SELECT c.clv_predicted_12m::text FROM mart.customer_360 c
                  ORDER BY coalesce(c.clv_predicted_12m, 0) DESC, c.customer_id DESC LIMIT 1",
            )
            .await;
            assert_eq!(
                top["items"][0]["clv_predicted_12m"].as_str(),
                Some(expected[0].as_str()),
                "{day}"
            );
        }
    };
    let scored: Vec<String> =
        column(&db, "SELECT is_today::text FROM mart.customer_scores_day").await;
    assert_eq!(scored, ["true"], "the load scored today");
    check("scored today").await;
    // a day passes without a load: the stored values (made garbage here) are not read
    db.client()
        .await
        .batch_execute(
            "UPDATE business_vault.customer_scores_day SET scored_on = scored_on - 1;
             UPDATE business_vault.customer_360_current
                SET clv_predicted_12m = -1 * length(customer_id) * (ascii(right(customer_id, 1)) % 7);",
        )
        .await
        .expect("age the stored day");
    assert_eq!(
        column(&db, "SELECT count(*)::text FROM mart.customer_list_keys").await,
        ["0"],
        "no keys on a day the loader has not scored"
    );
    check("scored yesterday").await;
}

#[tokio::test]
async fn a_customer_now_as_of_a_date_its_orders_and_its_history() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;

    let c = app.json("/customers/C01", 200).await;
    assert_eq!(c["customer_id"], "C01");
    assert_eq!(c["first_name"], "Ann");
    assert_eq!(c["city"], "Milan");
    assert_eq!(c["country"], "Italy");
    assert_eq!(c["signup_date"], "2024-01-10");
    assert_eq!(c["email"], "ann@new.example");
    assert_eq!(c["orders_count"], 2);
    assert_eq!(c["orders_cancelled_or_returned"], 0);
    assert_eq!(c["total_spent"], "55.50");
    assert_eq!(c["avg_order_value"], "27.75");
    assert_eq!(c["clv_historic"], "55.50");
    assert_eq!(c["first_order_at"], "2024-03-05T10:00:00Z");
    assert_eq!(c["last_order_at"], "2024-07-01T10:00:00Z");
    assert_eq!(
        c["favourite_category"], "Books",
        "2 units each; Books made more money"
    );
    assert_eq!(c["churn_risk"], "churned");
    assert!(c["segment"].is_string());
    // ids match like the vault's keys: trimmed, case-insensitive
    assert_eq!(
        app.json("/customers/%20c01%20", 200).await["customer_id"],
        "C01"
    );
    let c2 = app.json("/customers/C02", 200).await;
    assert_eq!(
        (
            c2["orders_count"].clone(),
            c2["orders_cancelled_or_returned"].clone()
        ),
        (json!(0), json!(1))
    );
    assert_eq!(c2["total_spent"], "0.00");
    assert!(c2["avg_order_value"].is_null());

    // as it was on 1 May 2024: Rome, one order, the first email; contact never shown
    let then = app.json("/customers/C01?as_of=2024-05-01", 200).await;
    assert_eq!(then["city"], "Rome");
    assert_eq!(then["orders_count"], 1);
    assert_eq!(then["total_spent"], "20.00");
    assert_eq!(then["last_order_at"], "2024-03-05T10:00:00Z");
    assert!(then["email"].is_null());
    let exact = app
        .json("/customers/C01?as_of=2024-06-01T00:00:00%2B00:00", 200)
        .await;
    assert_eq!(
        exact["city"], "Milan",
        "a version is in force from its valid_from"
    );
    let before = app
        .json("/customers/C01?as_of=2024-05-31T23:59:59Z", 200)
        .await;
    assert_eq!(before["city"], "Rome");
    let p = app.json("/customers/C01?as_of=2024-01-01", 404).await;
    assert_problem(
        &p,
        404,
        "not-found",
        "no customer \"C01\" as of 2024-01-01T23:59:59.999999Z",
    );
    let p = app.json("/customers/C01?as_of=last%20week", 400).await;
    assert_problem(&p, 400, "bad-parameter", "as_of");
    assert_eq!(p["parameter"], "as_of");

    // orders, newest first, paged
    let orders = app.json("/customers/C01/orders", 200).await;
    assert_eq!(ids(&orders, "order_id"), ["O02", "O01"]);
    let o = &orders["items"][0];
    assert_eq!(o["order_number"], 2);
    assert_eq!(o["amount"], "35.50");
    assert_eq!(o["cumulative_spent"], "55.50");
    assert_eq!(o["line_count"], 2);
    assert_eq!(o["units"], 3);
    assert_eq!(o["days_since_previous_order"], 118);
    assert_eq!(o["ordered_at"], "2024-07-01T10:00:00Z");
    let (paged, pages) = walk(&app, "/customers/C01/orders?limit=1", "order_id").await;
    assert_eq!(
        (paged, pages),
        (vec!["O02".to_string(), "O01".to_string()], 2)
    );
    let oldest_first = app.json("/customers/C01/orders?sort=ordered_at", 200).await;
    assert_eq!(ids(&oldest_first, "order_id"), ["O01", "O02"]);
    let none = app.json("/customers/C03/orders", 200).await;
    assert_eq!(none["items"], json!([]));
    assert!(none["next"].is_null());
    let p = app.json("/customers/NOPE/orders", 404).await;
    assert_problem(&p, 404, "not-found", "NOPE");

    // history: profile Rome -> Milan, contact old -> new email
    let h = app.json("/customers/C01/history", 200).await;
    assert_eq!(h["customer_id"], "C01");
    let profile = h["profile"].as_array().expect("profile");
    assert_eq!(profile.len(), 2, "{h}");
    assert_eq!(profile[0]["city"], "Rome");
    assert_eq!(profile[0]["valid_from"], "2024-01-10T09:00:00Z");
    assert_eq!(profile[0]["valid_to"], "2024-06-01T00:00:00Z");
    assert_eq!(profile[0]["is_current"], false);
    assert_eq!(profile[1]["city"], "Milan");
    assert_eq!(profile[1]["first_name"], "Ann", "carried forward");
    assert!(profile[1]["valid_to"].is_null());
    assert_eq!(profile[1]["record_source"], "crm");
    let contact = h["contact"].as_array().expect("contact");
    assert_eq!(contact.len(), 2, "{h}");
    assert_eq!(contact[0]["email"], "c01@example.com");
    assert_eq!(contact[1]["email"], "ann@new.example");
    assert_eq!(contact[1]["phone"], "+39 000");
    let single = app.json("/customers/C03/history", 200).await;
    assert_eq!(single["profile"].as_array().map(Vec::len), Some(1));
    let p = app.json("/customers/NOPE/history", 404).await;
    assert_problem(&p, 404, "not-found", "NOPE");
    let p = app.json("/customers/NOPE", 404).await;
    assert_problem(&p, 404, "not-found", "no customer \"NOPE\"");
    app.stop().await;
}

/// `search` finds a customer by id, or by the beginnings of first and last name words;
/// `%` and `_` are taken literally; the next link keeps the search; the keyed CLV sort
/// searches too.
#[tokio::test]
async fn customers_are_found_by_id_or_by_the_beginnings_of_their_names() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let found = |page: Value| {
        let mut got = ids(&page, "customer_id");
        got.sort();
        got
    };
    for (search, expected) in [
        ("ann", vec!["C01"]),
        ("Ann", vec!["C01"]),
        ("cust1", vec!["C10", "C11", "C12"]),
        ("CUST1%20te", vec!["C10", "C11", "C12"]),
        ("te%20cust1", vec!["C10", "C11", "C12"]),
        ("cust1%20x", vec![]),
        ("c05", vec!["C05"]),
        ("%20C05%20", vec!["C05"]),
        ("%25", vec![]),
        ("_ust", vec![]),
        ("zed", vec![]),
    ] {
        let page = app.json(&format!("/customers?search={search}"), 200).await;
        assert_eq!(found(page), expected, "search={search}");
    }
    let (all, pages) = walk(&app, "/customers?search=cust1&limit=1", "customer_id").await;
    assert_eq!(
        (all, pages),
        (vec!["C10".to_string(), "C11".into(), "C12".into()], 3)
    );
    let by_clv = app
        .json("/customers?search=cust1&sort=-clv_predicted_12m", 200)
        .await;
    assert_eq!(found(by_clv), ["C10", "C11", "C12"]);
    let p = app.json("/customers?search=a%20b%20c%20d%20e", 400).await;
    assert_problem(&p, 400, "bad-parameter", "at most 4");
    assert_eq!(p["parameter"], "search");
    app.stop().await;
}

/// GET /segments and /analytics/churn as of a date answer what mart.segments_as_of and
/// mart.churn_as_of do (every field), remembered or not, and refuse a time that is not one.
#[tokio::test]
async fn segments_and_churn_as_of_a_date() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let segment_row = |s: &Value| {
        format!(
            "({},{},{},{},{},{},{},{},{})",
            s["segment"].as_str().expect("segment"),
            s["customers"],
            s["customers_pct"]
                .as_f64()
                .map_or(String::new(), |v| format!("{v:.2}")),
            s["revenue"].as_str().expect("revenue"),
            s["revenue_pct"]
                .as_f64()
                .map_or(String::new(), |v| format!("{v:.2}")),
            s["avg_orders"]
                .as_f64()
                .map_or(String::new(), |v| format!("{v:.2}")),
            s["avg_total_spent"].as_str().unwrap_or(""),
            s["avg_days_since_last_order"]
                .as_f64()
                .map_or(String::new(), |v| format!("{v:.1}")),
            s["clv_predicted_12m"].as_str().expect("clv"),
        )
    };
    let expected_segments = |ts: &'static str| {
        let db = &db;
        async move {
            column(
                db,
                &format!(
                    "SELECT format('(%s,%s,%s,%s,%s,%s,%s,%s,%s)', segment, customers, customers_pct,
                                  revenue, revenue_pct, avg_orders, avg_total_spent,
                                  avg_days_since_last_order, clv_predicted_12m)
                       FROM mart.segments_as_of('{ts}')"
                ),
            )
            .await
        }
    };
    let got = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(segment_row)
            .collect()
    };
    // the end of 2024-05-10 (a date is its end, UTC), asked twice: computed, then read back
    let may = expected_segments("2024-05-10T23:59:59.999999Z").await;
    let first = app.json("/segments?as_of=2024-05-10", 200).await;
    assert_eq!(got(&first), may);
    assert_eq!(got(&app.json("/segments?as_of=2024-05-10", 200).await), may);
    let now = app.json("/segments", 200).await;
    assert_ne!(got(&now), may, "the segments moved since May 10");

    let churn = app
        .json("/analytics/churn?as_of=2024-05-10T23:59:59.999999Z", 200)
        .await;
    let expected = column(
        &db,
        "SELECT (customers, customers_with_orders, active, at_risk, churned, prospects)::text
           FROM mart.churn_as_of('2024-05-10T23:59:59.999999Z')",
    )
    .await;
    assert_eq!(
        format!(
            "({},{},{},{},{},{})",
            churn["customers"],
            churn["customers_with_orders"],
            churn["active"],
            churn["at_risk"],
            churn["churned"],
            churn["prospects"]
        ),
        expected[0]
    );
    assert!(churn["customers"].as_i64().expect("customers") > 0);
    let rate = column(
        &db,
        "SELECT coalesce(churn_rate::text, 'null') FROM mart.churn_as_of('2024-05-10T23:59:59.999999Z')",
    )
    .await;
    assert_eq!(churn["churn_rate"].as_f64(), rate[0].parse::<f64>().ok());

    for path in [
        "/segments?as_of=yesterday",
        "/analytics/churn?as_of=2024-13-01",
    ] {
        let p = app.json(path, 400).await;
        assert_problem(&p, 400, "bad-parameter", "as_of");
        assert_eq!(p["parameter"], "as_of", "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn products_orders_segments_and_analytics() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;

    // products
    let (all, _) = walk(&app, "/products?limit=2", "product_id").await;
    assert_eq!(all, ["P1", "P2", "P3"]);
    let books = app.json("/products?category=books", 200).await;
    assert_eq!(ids(&books, "product_id"), ["P1"]);
    let p1 = app.json("/products/p1", 200).await;
    assert_eq!(p1["name"], "Book A");
    assert_eq!(p1["price"], "10.00");
    assert_eq!(p1["units_sold"], 2, "the cancelled order does not count");
    assert_eq!(p1["revenue"], "20.00");
    assert_eq!(
        (p1["orders"].clone(), p1["buyers"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(p1["rank_in_category"], 1);
    let top = app.json("/products?sort=-revenue&limit=1", 200).await;
    assert_eq!(
        ids(&top, "product_id"),
        ["P3"],
        "P3: 45 units in May + 2 in July"
    );
    let p = app.json("/products/P9", 404).await;
    assert_problem(&p, 404, "not-found", "no product \"P9\"");

    // orders
    let (orders, pages) = walk(&app, "/orders?limit=4", "order_id").await;
    assert_eq!(pages, 3);
    assert_eq!(
        orders,
        column(
            &db,
            "SELECT order_id FROM mart.orders ORDER BY ordered_at DESC, order_id DESC"
        )
        .await
    );
    assert_eq!(orders.first().map(String::as_str), Some("O02"));
    let cancelled = app.json("/orders?status=CANCELLED", 200).await;
    assert_eq!(ids(&cancelled, "order_id"), ["O03"]);
    assert_eq!(cancelled["items"][0]["is_counted"], false);
    let may = app
        .json("/orders?from=2024-05-01&to=2024-05-31&sort=ordered_at", 200)
        .await;
    assert_eq!(
        ids(&may, "order_id"),
        (4..=12).map(|i| format!("O{i:02}")).collect::<Vec<_>>()
    );
    let window = app
        .json(
            "/orders?from=2024-05-02T12:00:00Z&to=2024-05-04T12:00:00Z&sort=ordered_at",
            200,
        )
        .await;
    assert_eq!(
        ids(&window, "order_id"),
        ["O05", "O06"],
        "from inclusive, to exclusive"
    );
    let o2 = app.json("/orders/O02", 200).await;
    assert_eq!(o2["customer_id"], "C01");
    assert_eq!(o2["channel"], "web");
    assert_eq!(o2["status"], "delivered");
    assert_eq!(o2["amount"], "35.50");
    assert_eq!(
        o2["lines"],
        json!([
            {"line_no": 1, "line_key": "1", "product_id": "P2", "product_name": "Kite B", "category": "Toys",
             "quantity": 1, "unit_price": "25.50", "discount": "0.50", "line_amount": "25.00"},
            {"line_no": 2, "line_key": "2", "product_id": "P3", "product_name": "Mug C", "category": "Kitchen",
             "quantity": 2, "unit_price": "5.25", "discount": "0.00", "line_amount": "10.50"}
        ])
    );
    let listed = app.json("/orders?limit=1", 200).await;
    assert_eq!(
        listed["items"][0]["lines"], o2["lines"],
        "lists carry lines too"
    );
    let p = app.json("/orders/O99", 404).await;
    assert_problem(&p, 404, "not-found", "no order \"O99\"");

    // segments
    let segments = app.json("/segments", 200).await;
    let items = segments["items"].as_array().expect("items");
    assert_eq!(items.len(), 12, "every segment, also the empty ones");
    let total: i64 = items
        .iter()
        .map(|s| s["customers"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 12);
    let prospects = items
        .iter()
        .find(|s| s["segment"] == "Prospect")
        .expect("Prospect");
    assert_eq!(prospects["customers"], 2, "C02 (cancelled only) and C03");
    assert_eq!(prospects["revenue"], "0.00");
    let members = app.json("/segments/prospect/customers", 200).await;
    assert_eq!(ids(&members, "customer_id"), ["C02", "C03"]);
    let paged = app.json("/segments/Prospect/customers?limit=1", 200).await;
    let next = paged["next"].as_str().expect("next");
    assert!(next.starts_with("/segments/Prospect/customers?"), "{next}");
    assert_eq!(ids(&app.json(next, 200).await, "customer_id"), ["C03"]);
    let p = app.json("/segments/Gold/customers", 404).await;
    assert_problem(&p, 404, "not-found", "allowed: Champions");
    assert!(p["allowed"].as_array().is_some_and(|a| a.len() == 12));

    // revenue
    let monthly = app.json("/analytics/revenue?period=month", 200).await;
    assert_eq!(monthly["period"], "month");
    let series: Vec<(String, String, i64, i64)> = monthly["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| {
            (
                p["period_start"].as_str().unwrap_or_default().to_string(),
                p["revenue"].as_str().unwrap_or_default().to_string(),
                p["orders"].as_i64().unwrap_or(-1),
                p["orders_cancelled_or_returned"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let s = |m: &str, r: &str, o: i64, c: i64| (m.to_string(), r.to_string(), o, c);
    assert_eq!(
        series,
        [
            s("2024-03-01", "20.00", 1, 0),
            s("2024-04-01", "0.00", 0, 1),
            s("2024-05-01", "236.25", 9, 0),
            s("2024-06-01", "0.00", 0, 0),
            s("2024-07-01", "35.50", 1, 0),
        ]
    );
    assert_eq!(monthly["series"][1]["revenue_lost"], "10.00");
    let day = app
        .json(
            "/analytics/revenue?period=day&from=2024-07-01&to=2024-07-01",
            200,
        )
        .await;
    assert_eq!(day["series"].as_array().map(Vec::len), Some(1));
    assert_eq!(day["series"][0]["units"], 3);
    let weeks = app
        .json(
            "/analytics/revenue?period=week&from=2024-05-01&to=2024-05-12",
            200,
        )
        .await;
    let starts: Vec<&str> = weeks["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|p| p["period_start"].as_str())
        .collect();
    assert_eq!(
        starts,
        ["2024-04-29", "2024-05-06"],
        "ISO weeks, the one holding `from` included"
    );

    // churn
    let churn = app.json("/analytics/churn", 200).await;
    assert_eq!(
        churn,
        json!({"customers": 12, "customers_with_orders": 10, "active": 0, "at_risk": 0,
               "churned": 10, "churn_rate": 1.0, "at_risk_rate": 0.0, "prospects": 2})
    );

    // categories: the products' figures added up per current category, by revenue
    let categories = app.json("/analytics/categories", 200).await;
    let got: Vec<String> = items_of(&categories)
        .iter()
        .map(|c| {
            format!(
                "{}|{}|{}|{}",
                c["category"].as_str().unwrap_or("(none)"),
                c["products"],
                c["units_sold"],
                c["revenue"].as_str().expect("revenue")
            )
        })
        .collect();
    let expected = column(
        &db,
        "SELECT format('%s|%s|%s|%s', coalesce(category, '(none)'), count(*), sum(units_sold), sum(revenue))
           FROM mart.products GROUP BY category ORDER BY sum(revenue) DESC, category NULLS LAST",
    )
    .await;
    assert_eq!(got, expected);
    assert!(expected.len() >= 2, "{expected:?}");
    let shares: f64 = items_of(&categories)
        .iter()
        .filter_map(|c| c["revenue_pct"].as_f64())
        .sum();
    assert!(
        (shares - 100.0).abs() < 0.05,
        "shares add up to 100: {shares}"
    );
    app.stop().await;
}

/// The figures of a revenue series, a category list or a top-products list, one
/// `a|b|c...` string per item, in the order answered.
fn figures(items: &[Value], fields: &[&str]) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            fields
                .iter()
                .map(|f| match &item[*f] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[tokio::test]
async fn revenue_categories_and_top_products_as_of_a_date() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    // a date is its end, UTC
    const THEN: &str = "2024-05-10T23:59:59.999999Z";
    let point = [
        "period_start",
        "orders",
        "customers",
        "units",
        "revenue",
        "orders_cancelled_or_returned",
        "revenue_lost",
    ];
    for period in ["day", "week", "month"] {
        let expected = column(
            &db,
            &format!(
                "SELECT concat_ws('|', period_start, orders, customers, units, revenue,
                                  orders_cancelled_or_returned, revenue_lost)
                   FROM mart.revenue_as_of('{THEN}', '{period}')"
            ),
        )
        .await;
        assert!(!expected.is_empty(), "{period}");
        // computed, then read back
        for _ in 0..2 {
            let got = app
                .json(
                    &format!("/analytics/revenue?period={period}&as_of=2024-05-10"),
                    200,
                )
                .await;
            assert_eq!(
                figures(&got["series"].as_array().expect("series")[..], &point),
                expected
            );
        }
        let now = app
            .json(&format!("/analytics/revenue?period={period}"), 200)
            .await;
        assert_ne!(
            figures(&now["series"].as_array().expect("series")[..], &point),
            expected,
            "{period}: orders were placed after May 10"
        );
    }
    // `from` and `to` narrow the series of then like today's
    let narrowed = app
        .json(
            "/analytics/revenue?period=day&from=2024-05-01&to=2024-05-03&as_of=2024-05-10",
            200,
        )
        .await;
    assert_eq!(
        figures(
            &narrowed["series"].as_array().expect("series")[..],
            &["period_start"]
        ),
        ["2024-05-01", "2024-05-02", "2024-05-03"]
    );

    // categories then, as the mart function has them
    let category = ["category", "products", "units_sold", "revenue"];
    let expected = column(
        &db,
        &format!(
            "SELECT concat_ws('|', coalesce(category, ''), products, units_sold, revenue)
               FROM mart.categories_as_of('{THEN}')"
        ),
    )
    .await;
    let then = app
        .json("/analytics/categories?as_of=2024-05-10", 200)
        .await;
    assert_eq!(figures(items_of(&then), &category), expected);
    let now = app.json("/analytics/categories", 200).await;
    assert_ne!(figures(items_of(&now), &category), expected);

    // top products: today the product summary by revenue, then the function's
    let product = [
        "rank",
        "product_id",
        "name",
        "category",
        "units_sold",
        "revenue",
    ];
    let today = column(
        &db,
        "SELECT concat_ws('|', row_number() OVER (ORDER BY revenue DESC, product_id), product_id,
                          coalesce(name, ''), coalesce(category, ''), units_sold, revenue)
           FROM mart.products WHERE revenue > 0 ORDER BY revenue DESC, product_id LIMIT 3",
    )
    .await;
    assert_eq!(today.len(), 3);
    let top = app.json("/analytics/top-products?limit=3", 200).await;
    assert_eq!(figures(items_of(&top), &product), today);
    let expected = column(
        &db,
        &format!(
            "SELECT concat_ws('|', rank, product_id, coalesce(name, ''), coalesce(category, ''),
                              units_sold, revenue)
               FROM mart.top_products_as_of('{THEN}')"
        ),
    )
    .await;
    assert!(!expected.is_empty());
    let then = app
        .json("/analytics/top-products?as_of=2024-05-10", 200)
        .await;
    assert_eq!(
        figures(items_of(&then), &product),
        expected[..expected.len().min(10)],
        "ten by default"
    );
    for limit in ["0", "101", "ten"] {
        let p = app
            .json(&format!("/analytics/top-products?limit={limit}"), 400)
            .await;
        assert_problem(&p, 400, "bad-parameter", "from 1 to 100");
    }
    let p = app.json("/analytics/categories?as_of=someday", 400).await;
    assert_problem(&p, 400, "bad-parameter", "as_of");
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_name_the_parameter_and_what_it_takes() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let cursor = app.json("/customers?limit=1", 200).await["next"]
        .as_str()
        .and_then(|n| n.split("cursor=").nth(1))
        .expect("cursor")
        .to_string();
    for (path, parameter, allowed_contains) in [
        ("/customers?limit=0", "limit", None),
        ("/customers?limit=1001", "limit", None),
        ("/customers?limit=many", "limit", None),
        ("/customers?sort=price", "sort", Some("-total_spent")),
        ("/customers?churn_risk=maybe", "churn_risk", Some("at_risk")),
        ("/customers?segment=Gold", "segment", Some("Champions")),
        ("/customers?min_total_spent=lots", "min_total_spent", None),
        ("/customers?skip=-1", "skip", None),
        ("/customers?cursor=garbage", "cursor", None),
        (
            &format!("/customers?sort=-total_spent&cursor={cursor}"),
            "cursor",
            None,
        ),
        ("/customers?segmnt=Loyal", "segmnt", Some("segment")),
        (
            "/customers/C01?as_of=soon",
            "as_of",
            Some("a date, e.g. 2025-06-30"),
        ),
        ("/customers/C01?when=now", "when", Some("as_of")),
        (
            "/customers/C01/orders?sort=amount",
            "sort",
            Some("-ordered_at"),
        ),
        ("/products?sort=name", "sort", Some("-revenue")),
        ("/orders?status=lost", "status", Some("delivered")),
        ("/orders?from=yesterday", "from", None),
        ("/orders?from=2024-06-01&to=2024-05-01", "to", None),
        ("/analytics/revenue", "period", Some("month")),
        ("/analytics/revenue?period=year", "period", Some("week")),
        ("/analytics/revenue?period=day&to=someday", "to", None),
    ] {
        let p = app.json(path, 400).await;
        assert_problem(&p, 400, "bad-parameter", &format!("`{parameter}`"));
        assert_eq!(p["parameter"], parameter, "{path}: {p}");
        if let Some(a) = allowed_contains {
            let allowed = p["allowed"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: {p}"));
            assert!(allowed.iter().any(|v| v == a), "{path}: {a} not in {p}");
            assert!(
                p["detail"].as_str().is_some_and(|d| d.contains(a)),
                "{path}: {p}"
            );
        }
    }
    // a tampered cursor (valid form, key that does not cast) is a 400, not a 500
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"s":"-total_spent","k":"not a number","i":"C01"}"#)
    };
    let p = app
        .json(
            &format!("/customers?sort=-total_spent&cursor={forged}"),
            400,
        )
        .await;
    assert_problem(&p, 400, "bad-parameter", "cursor");

    // other client mistakes: unknown route, method, never a 500
    let p = app.json("/nowhere", 404).await;
    assert_problem(&p, 404, "no-route", "GET /nowhere");
    let resp = app
        .http
        .delete(app.url("/customers"))
        .send()
        .await
        .expect("DELETE");
    let p = expect_json(resp, 405, "DELETE").await;
    assert_problem(&p, 405, "method-not-allowed", "DELETE");
    let p = app.json("/customers/%FF", 400).await;
    assert_problem(&p, 400, "bad-request", "Invalid UTF-8");
    app.stop().await;
}

// ---------------------------------------------------------------------------------
// Auth, writes, limits

#[tokio::test]
async fn reads_are_open_and_writes_refused_without_keys() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    app.json("/customers", 200).await;
    let resp = app
        .post("/events", "application/json", EVENT_C99, Some(WRITE_TOKEN))
        .await;
    let p = expect_json(resp, 403, "POST without keys").await;
    assert_problem(&p, 403, "forbidden", "no API keys configured");
    app.stop().await;
}

#[tokio::test]
async fn keys_guard_reads_and_writes() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;

    let resp = app.get("/customers").await;
    assert_eq!(header(&resp, "www-authenticate"), "Bearer realm=\"dvault\"");
    let p = expect_json(resp, 401, "no token").await;
    assert_problem(&p, 401, "unauthorized", "no API key");
    let p = expect_json(app.get_with("/customers", "wrong").await, 401, "bad token").await;
    assert_problem(&p, 401, "unauthorized", "unknown API key");
    let resp = app
        .http
        .get(app.url("/customers"))
        .header("authorization", format!("Basic {READ_TOKEN}"))
        .send()
        .await
        .expect("GET");
    expect_json(resp, 401, "basic auth").await;
    expect_json(
        app.get_with("/customers/C01", READ_TOKEN).await,
        200,
        "read key",
    )
    .await;
    expect_json(
        app.get_with("/customers/C01", WRITE_TOKEN).await,
        200,
        "write key reads",
    )
    .await;

    let resp = app
        .post("/events", "application/json", EVENT_C99, Some(READ_TOKEN))
        .await;
    let p = expect_json(resp, 403, "read key writes").await;
    assert_problem(&p, 403, "forbidden", "scope `read`");
    let resp = app
        .post("/events", "application/json", EVENT_C99, None)
        .await;
    expect_json(resp, 401, "no token writes").await;
    let resp = app
        .post("/events", "application/json", EVENT_C99, Some(WRITE_TOKEN))
        .await;
    let done = expect_json(resp, 202, "write key writes").await;
    assert_eq!(done["accepted"], 1);

    // operations and documentation stay open
    for path in ["/health", "/ready", "/openapi.json"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

const EVENT_C99: &str = r#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"api-c99",
    "time":"2024-02-01T00:00:00Z","data":{"customer_id":"C99","first_name":"Zed","city":"Bern","country":"Switzerland"}}"#;

pub(crate) fn customer_event(id: &str, customer: &str) -> String {
    json!({"specversion": "1.0", "type": "customer_registered", "source": "crm", "id": id,
           "time": "2024-02-02T00:00:00Z",
           "data": {"customer_id": customer, "first_name": "New", "country": "Spain"}})
    .to_string()
}

#[tokio::test]
async fn posted_events_land_in_the_log_and_bad_ones_in_quarantine() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let app_ref = &app;
    let post = |ct: &'static str, body: String| async move {
        app_ref.post("/events", ct, body, Some(WRITE_TOKEN)).await
    };

    // one event, then the same again
    let r = expect_json(
        post("application/cloudevents+json", EVENT_C99.into()).await,
        202,
        "single",
    )
    .await;
    assert_eq!(
        r,
        json!({"accepted": 1, "duplicates": 0, "rejected": 0, "rejections": []})
    );
    let r = expect_json(
        post("application/cloudevents+json", EVENT_C99.into()).await,
        202,
        "again",
    )
    .await;
    assert_eq!(
        (r["accepted"].clone(), r["duplicates"].clone()),
        (json!(0), json!(1))
    );

    // a batch: good, bad, duplicate
    let batch = format!(
        "[{}, {{\"specversion\":\"1.0\",\"source\":\"crm\",\"data\":{{}}}}, {EVENT_C99}]",
        customer_event("api-c98", "C98")
    );
    let r = expect_json(
        post("application/cloudevents-batch+json", batch.clone()).await,
        202,
        "batch",
    )
    .await;
    assert_eq!(
        (
            r["accepted"].clone(),
            r["duplicates"].clone(),
            r["rejected"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(r["rejections"][0]["item"], 2);
    assert!(
        r["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("\"type\"")),
        "{r}"
    );
    // the same batch posted as application/json: quarantined once only
    expect_json(
        post("application/cloudevents-batch+json", batch).await,
        202,
        "batch again",
    )
    .await;

    // NDJSON: a good line, a blank line, a broken line
    let ndjson = format!("{}\n\n{{oops\n", customer_event("api-c97", "C97"));
    let r = expect_json(post("application/x-ndjson", ndjson).await, 202, "ndjson").await;
    assert_eq!(
        (r["accepted"].clone(), r["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        r["rejections"][0]["item"], 3,
        "line numbers count blank lines"
    );
    assert!(
        r["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("invalid JSON")),
        "{r}"
    );

    // everything rejected: 422, the reasons in the problem
    let p = expect_json(
        post("application/x-ndjson", "{\"a\":1}\nnope\n".into()).await,
        422,
        "all bad",
    )
    .await;
    assert_problem(&p, 422, "events-rejected", "item 1");
    assert_eq!(p["rejected"], 2);
    assert_eq!(p["accepted"], 0);
    assert_eq!(p["rejections"].as_array().map(Vec::len), Some(2));

    // whole-body problems
    let p = expect_json(post("text/csv", "a,b\n".into()).await, 415, "csv").await;
    assert_problem(&p, 415, "unsupported-media-type", "application/x-ndjson");
    let p = expect_json(post("application/json", "  ".into()).await, 400, "empty").await;
    assert_problem(&p, 400, "bad-request", "empty");
    let p = expect_json(
        post("application/cloudevents-batch+json", "[1,".into()).await,
        400,
        "broken array",
    )
    .await;
    assert_problem(&p, 400, "bad-request", "not a JSON array");

    // what reached the database
    let client = db.client().await;
    let ids: Vec<String> = client
        .query(
            "SELECT event_id FROM event_log.events WHERE event_id LIKE 'api-%' ORDER BY seq",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["api-c99", "api-c98", "api-c97"]);
    let rejected: Vec<(String, String, i64)> = client
        .query(
            "SELECT stage, file, line FROM event_log.rejected ORDER BY id",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let api = |line| ("ingest".to_string(), "api".to_string(), line);
    assert_eq!(rejected, [api(2), api(3), api(1), api(2)]);

    // and once loaded, the new customers are served
    let mut client = db.client().await;
    harness::load_all(&mut client).await;
    let c = expect_json(app.get_with("/customers/C99", READ_TOKEN).await, 200, "C99").await;
    assert_eq!(
        (c["city"].clone(), c["segment"].clone()),
        (json!("Bern"), json!("Prospect"))
    );
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let db = TestDb::new().await;
    let config = ApiConfig {
        body_limit: 1024,
        ..keyed_config()
    };
    let app = TestApp::spawn(&db.url, config).await;
    let big = format!("{}\n", customer_event("x", "C1")).repeat(20);
    assert!(big.len() > 1024);
    let resp = app
        .post("/events", "application/x-ndjson", big, Some(WRITE_TOKEN))
        .await;
    let p = expect_json(resp, 413, "oversized").await;
    assert_problem(&p, 413, "payload-too-large", "1024 bytes");
    let small = app
        .post(
            "/events",
            "application/x-ndjson",
            customer_event("y", "C2"),
            Some(WRITE_TOKEN),
        )
        .await;
    assert_eq!(small.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

// ---------------------------------------------------------------------------------
// Operations

#[tokio::test]
async fn health_ready_and_metrics() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    assert_eq!(app.json("/health", 200).await, json!({"status": "ok"}));
    let ready = app.json("/ready", 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["schema_version"], dvault::db::latest_known_version());
    assert_eq!(ready["loader"]["pending_events"], 0);
    assert!(ready["loader"]["oldest_pending_seconds"].is_null());
    assert!(ready["quality"].is_null(), "no gate has run yet");

    // a failed quality gate is reported: here freshness with a zero-hour limit
    let config =
        std::env::temp_dir().join(format!("dvault-quality-{}.toml", rand::random::<u64>()));
    std::fs::write(&config, "[freshness]\nmax_age_hours = 0.000001\n").expect("config");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(["check", "--quality-config"])
        .arg(&config)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run dvault check");
    let _ = std::fs::remove_file(&config);
    assert!(
        !check.status.success(),
        "the freshness check fails: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let ready = app.json("/ready", 200).await;
    assert_eq!(ready["quality"]["passed"], false);
    assert!(
        ready["quality"]["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("freshness")),
        "{}",
        ready["quality"]
    );

    // an event not yet loaded shows as lag
    let client = db.client().await;
    events::append(
        &client,
        &[event(
            &mut 1000,
            "customer_updated",
            "crm",
            "2024-08-01T00:00:00Z",
            json!({"customer_id": "C02", "city": "Bergen"}),
        )],
    )
    .await
    .expect("append");
    let ready = app.json("/ready", 200).await;
    assert_eq!(ready["loader"]["pending_events"], 1);
    assert!(
        ready["loader"]["oldest_pending_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0)
    );

    app.json("/customers/C01", 200).await;
    app.json("/customers/NOPE", 404).await;
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "content-type").starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.expect("body");
    for line in [
        "dvault_http_requests_total{method=\"GET\",route=\"/customers/{id}\",status=\"200\"} 1",
        "dvault_http_requests_total{method=\"GET\",route=\"/customers/{id}\",status=\"404\"} 1",
        "dvault_http_requests_total{method=\"GET\",route=\"/ready\",status=\"200\"} 3",
        "dvault_http_request_duration_seconds_count{method=\"GET\",route=\"/customers/{id}\"} 2",
        "dvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/customers/{id}\",le=\"+Inf\"} 2",
        "dvault_db_pool_max_connections 4",
        "dvault_database_up 1",
        "dvault_loader_lag_events 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("# TYPE dvault_http_request_duration_seconds histogram"));
    assert!(text.contains("dvault_db_pool_connections{state=\"idle\"}"));
    app.stop().await;
}

#[tokio::test]
async fn gzip_request_ids_cors_and_timeouts() {
    let db = loaded_db().await;
    let config = ApiConfig {
        cors: Cors::Origins(vec!["https://app.example".into()]),
        ..open_config()
    };
    let app = TestApp::spawn(&db.url, config).await;
    let resp = app
        .http
        .get(app.url("/customers?limit=100"))
        .header("accept-encoding", "gzip")
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-encoding"), "gzip");
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(header(&resp, "x-request-id").len(), 36, "a UUID");
    let resp = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "my-trace-1")
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        header(&resp, "x-request-id"),
        "my-trace-1",
        "a client's id is kept"
    );
    assert_eq!(header(&resp, "access-control-allow-origin"), "");
    app.stop().await;

    // a request over the time limit is abandoned with a 503 problem
    let config = ApiConfig {
        request_timeout: Duration::from_millis(1),
        ..open_config()
    };
    let app = TestApp::spawn(&db.url, config).await;
    let resp = app.get("/analytics/revenue?period=day").await;
    assert_eq!(header(&resp, "retry-after"), "5");
    let p = expect_json(resp, 503, "timeout").await;
    assert_problem(&p, 503, "timeout", "too long");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_route() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("body");
    let spec = oas3::from_json(&text).expect("a valid OpenAPI document");
    assert_eq!(spec.openapi, "3.1.0");
    spec.validate_version().expect("a supported version");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let routes = [
        ("get", "/customers"),
        ("get", "/customers/{id}"),
        ("get", "/customers/{id}/orders"),
        ("get", "/customers/{id}/history"),
        ("get", "/products"),
        ("get", "/products/{id}"),
        ("get", "/orders"),
        ("get", "/orders/{id}"),
        ("get", "/segments"),
        ("get", "/segments/{name}/customers"),
        ("get", "/analytics/revenue"),
        ("get", "/analytics/churn"),
        ("get", "/analytics/categories"),
        ("get", "/analytics/top-products"),
        ("post", "/events"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    // every operation has its own meaningful id (generated clients name methods by it)
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().into_iter().flat_map(|m| m.values()))
        .map(|op| op["operationId"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), routes.len());
    for id in &ids {
        assert!(
            id.len() > 3
                && id.starts_with(|c: char| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "operationId {id:?}: lowerCamelCase, not a handler name"
        );
    }
    ids.sort_unstable();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids repeat: {ids:?}");
    assert_eq!(
        paths.len(),
        routes.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"]["200"].is_object() || op["responses"]["202"].is_object(),
            "{method} {path}"
        );
        // and the route exists on the server: anything but a 404 problem of kind no-route
        let resp = match method {
            "get" => {
                app.get(&path.replace("{id}", "X").replace("{name}", "Prospect"))
                    .await
            }
            _ => app.post(path, "application/json", "{}", None).await,
        };
        let kind = if header(&resp, "content-type") == "application/problem+json" {
            resp.json::<Value>().await.expect("problem")["type"].clone()
        } else {
            Value::Null
        };
        assert_ne!(
            kind, "urn:dvault:problem:no-route",
            "{method} {path} is not served"
        );
    }
    // every reference resolves
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "unresolved {r}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["components"]["schemas"]["Money"]["type"], "string");

    // the Swagger UI is served from the binary, not a CDN
    let resp = app.get("/docs/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.expect("html");
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no external assets"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let resp = app.get(asset).await;
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        if asset.ends_with("initializer.js") {
            assert!(resp.text().await.expect("js").contains("/openapi.json"));
        }
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------
// The database going away, and a least-privilege role

#[tokio::test]
async fn a_stopped_database_answers_503_and_service_resumes_without_a_restart() {
    use dvault::db::local;
    let home = std::env::temp_dir().join(format!("dvault-api-down-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&home).expect("home");
    let start = |home: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || local::ensure_running(&home))
            .await
            .expect("join")
            .expect("start the private server")
    };
    let server = start(home.clone()).await;
    let admin = dvault::db::connect(&server.url("postgres"))
        .await
        .expect("admin");
    admin
        .batch_execute("CREATE DATABASE api_down")
        .await
        .expect("create");
    let url = server.url("api_down");
    {
        let mut client = dvault::db::connect(&url).await.expect("connect");
        dvault::db::migrate(&mut client).await.expect("migrate");
        events::append(&client, &data_set()).await.expect("append");
        harness::load_all(&mut client).await;
    }
    drop(admin);
    let app = TestApp::spawn(&url, open_config()).await;
    app.json("/customers/C01", 200).await;
    app.json("/ready", 200).await;

    let stop_home = home.clone();
    let stopped = tokio::task::spawn_blocking(move || local::stop(&stop_home))
        .await
        .expect("join")
        .expect("stop");
    assert!(stopped);
    for path in ["/customers/C01", "/customers", "/ready", "/analytics/churn"] {
        let resp = app.get(path).await;
        assert_eq!(header(&resp, "retry-after"), "5", "{path}");
        let p = expect_json(resp, 503, path).await;
        assert_problem(&p, 503, "database-unavailable", "cannot be reached");
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains("127.0.0.1") && !detail.contains("refused"),
            "{p}"
        );
    }
    assert_eq!(
        app.json("/health", 200).await["status"],
        "ok",
        "liveness does not need the database"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "dvault_database_up 0"),
        "{metrics}"
    );

    let restarted = start(home.clone()).await;
    assert_eq!(
        restarted.port, server.port,
        "the private server comes back on its port"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = app.get("/customers/C01").await;
        if resp.status() == StatusCode::OK {
            let c = resp.json::<Value>().await.expect("json");
            assert_eq!(c["total_spent"], "55.50");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.json("/ready", 200).await;
    app.stop().await;
    let _ = tokio::task::spawn_blocking({
        let home = home.clone();
        move || local::stop(&home)
    })
    .await;
    let _ = std::fs::remove_dir_all(&home);
}

/// The role SQL from docs/api.md, for role `name`.
pub(crate) fn api_role_sql(name: &str, password: &str) -> String {
    let doc = include_str!("../../docs/api.md");
    let start = doc
        .find("```sql api-role")
        .expect("docs/api.md has the api-role SQL block");
    let body = &doc[start..];
    let body = &body[body.find('\n').expect("newline") + 1..];
    let end = body.find("```").expect("end of block");
    body[..end]
        .replace("dvault_api", name)
        .replace("change-me", password)
}

pub(crate) fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let rest = match rest.find('@') {
        Some(at) if at < rest.find('/').unwrap_or(rest.len()) => &rest[at + 1..],
        _ => rest,
    };
    format!("{scheme}://{user}:{password}@{rest}")
}

#[tokio::test]
async fn the_api_role_reads_mart_and_appends_events_only() {
    let db = loaded_db().await;
    let role = format!("dvault_api_test_{}", rand::random::<u32>());
    let owner = db.client().await;
    owner
        .batch_execute(&api_role_sql(&role, "s3cret-pw"))
        .await
        .expect("the documented role SQL runs");
    let url = with_credentials(&db.url, &role, "s3cret-pw");

    let app = TestApp::spawn(&url, keyed_config()).await;
    let read = |path: &'static str| app.get_with(path, READ_TOKEN);
    for path in [
        "/customers?limit=5",
        "/customers/C01/orders",
        "/customers/C01/history",
        "/products",
        "/orders/O02",
        "/segments",
        "/segments/Prospect/customers",
        "/analytics/revenue?period=month",
        "/analytics/churn",
        "/analytics/categories",
        "/ready",
    ] {
        expect_json(read(path).await, 200, path).await;
    }
    let c = expect_json(read("/customers/C01").await, 200, "C01").await;
    assert_eq!(c["total_spent"], "55.50");
    assert!(
        c["email"].is_null(),
        "no personal data without the optional grant"
    );
    let then = expect_json(read("/customers/C01?as_of=2024-05-01").await, 200, "as_of").await;
    assert_eq!(then["city"], "Rome");
    let resp = app
        .post(
            "/events",
            "application/x-ndjson",
            format!("{}\nbroken\n", customer_event("role-1", "C77")),
            Some(WRITE_TOKEN),
        )
        .await;
    let r = expect_json(resp, 202, "append as the API role").await;
    assert_eq!(
        (r["accepted"].clone(), r["rejected"].clone()),
        (json!(1), json!(1))
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "dvault_loader_lag_events 1"),
        "{metrics}"
    );
    app.stop().await;

    // and nothing else
    let api = dvault::db::connect(&url)
        .await
        .expect("connect as the API role");
    for sql in [
        "SELECT payload FROM event_log.events LIMIT 1",
        "SELECT * FROM raw_vault.hub_customer LIMIT 1",
        "SELECT email FROM raw_vault.sat_customer_contact LIMIT 1",
        "SELECT * FROM event_log.rejected LIMIT 1",
        "DELETE FROM event_log.events",
        "UPDATE event_log.events SET event_type = 'x'",
        "INSERT INTO ops.checkpoints (consumer, xid, seq) VALUES ('x', '1', 1)",
        "CREATE TABLE mart.sneaky (x int)",
    ] {
        let err = api.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    drop(api);
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
}
