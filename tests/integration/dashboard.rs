//! The dashboard (`/dashboard`) in a real browser: a server on a loaded test database,
//! Debian's chromium driven by playwright-core (tests/dashboard/run.mjs, which reports
//! what the pages show as JSON), and the numbers compared here with the API's JSON.
//!
//! The browser, node and the npm package are required, not optional: without them the
//! test fails and says how to install them (`.ci/run` does). The screenshots it takes
//! are the ones docs/dashboard.md and the README show (docs/dashboard/*.png).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::api::{
    READ_TOKEN, TestApp, api_role_sql, header, keyed_config, loaded_db, open_config,
    with_credentials,
};
use crate::harness::TestDb;

const INSTALL: &str = "the dashboard tests need node, Debian's chromium and playwright-core: \
    `apt-get install -y chromium nodejs npm && (cd tests/dashboard && npm ci)` (.ci/run does this)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// Fail (never skip) with the install command when a tool is missing.
fn require_tools() {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "no `node` on PATH: {INSTALL}"
    );
    assert!(
        chromium().exists(),
        "no chromium at {}: {INSTALL}",
        chromium().display()
    );
    assert!(
        root()
            .join("tests/dashboard/node_modules/playwright-core")
            .exists(),
        "tests/dashboard/node_modules has no playwright-core: {INSTALL}"
    );
}

/// Run the browser script against `base` and return its report.
/// `screenshots`: write docs/dashboard/*.png (one test does, on realistic data).
/// `extra`: what else the script does, as its environment: `AS_OF` (a date to pick
/// in the overview's as-of picker), `SEARCH` (words to type in the search box),
/// `SEGMENT` (a segment to open from the overview, page, sort and look back at).
async fn browse(
    base: &str,
    customer: &str,
    key: Option<&str>,
    screenshots: bool,
    extra: &[(&str, &str)],
) -> Value {
    require_tools();
    let shots = if screenshots {
        let dir = root().join("docs/dashboard");
        std::fs::create_dir_all(&dir).expect("docs/dashboard");
        dir
    } else {
        PathBuf::from("-")
    };
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root().join("tests/dashboard/run.mjs"))
        .arg(base)
        .arg(customer)
        .arg(&shots)
        .args(key)
        .env("CHROMIUM", chromium())
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser script finishes within 240 s")
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the browser script's report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn get_json(app: &TestApp, path: &str, key: Option<&str>) -> Value {
    let resp = match key {
        Some(k) => app.get_with(path, k).await,
        None => app.get(path).await,
    };
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.json().await.expect("json")
}

/// `1234567` -> `1,234,567`, as the pages group digits.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The API's money string as the pages show it: `"1234.50"` -> `1,234.50`.
fn money(v: &Value) -> String {
    let Some(s) = v.as_str() else {
        return "—".into();
    };
    let (int, frac) = s.split_once('.').expect("money has two decimals");
    let n: i64 = int.parse().expect("money");
    let sign = if int.starts_with('-') && n == 0 {
        "-"
    } else {
        ""
    };
    format!("{sign}{}.{frac}", grouped(n))
}

fn count(v: &Value) -> String {
    v.as_i64().map_or_else(|| "—".into(), grouped)
}

fn text(v: &Value) -> String {
    v.as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| "—".into(), str::to_string)
}

/// `2024-07-01T10:00:00Z` -> `2024-07-01 10:00` (UTC, minutes).
fn minute(v: &Value) -> String {
    v.as_str()
        .map_or_else(|| "—".into(), |s| s[..16].replace('T', " "))
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().expect("items")
}

fn rows(v: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(v.clone()).expect("rows of strings")
}

/// What a page must not have done: log an error, throw, fail a request or reach
/// another origin.
fn assert_clean(report: &Value, allowed_console: &[&str]) {
    let errors: Vec<&str> = report["console_errors"]
        .as_array()
        .expect("console_errors")
        .iter()
        .filter_map(Value::as_str)
        .filter(|e| !allowed_console.iter().any(|a| e.contains(a)))
        .collect();
    assert!(
        errors.is_empty(),
        "console errors: {errors:?}; answers >= 400: {}",
        report["error_responses"]
    );
    for what in ["page_errors", "failed_requests", "foreign_requests"] {
        assert_eq!(report[what], Value::Array(vec![]), "{what}");
    }
    assert!(
        report["requests"].as_array().is_some_and(|r| r.len() > 10),
        "the pages called the API: {}",
        report["requests"]
    );
}

/// Revenue per month as the API answers it, today's or at the end of `as_of`:
/// (month, orders, revenue) each.
async fn months(app: &TestApp, as_of: Option<&str>) -> Vec<(String, i64, Decimal)> {
    let at = as_of.map_or(String::new(), |day| format!("&as_of={day}"));
    let revenue = get_json(app, &format!("/analytics/revenue?period=month{at}"), None).await;
    revenue["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| {
            let amount: Decimal = p["revenue"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("revenue");
            (
                p["period_start"].as_str().expect("period")[..7].to_string(),
                p["orders"].as_i64().expect("orders"),
                amount,
            )
        })
        .collect()
}

/// The overview shows what the API answers, figure by figure: today's, or with
/// `as_of` those of the end of that day (data freshness is today's).
async fn check_overview(app: &TestApp, o: &Value, as_of: Option<&str>) {
    assert_eq!(o["state"], "ready", "{o}");
    let at = as_of.map_or(String::new(), |day| format!("?as_of={day}"));
    let churn = get_json(app, &format!("/analytics/churn{at}"), None).await;
    let series = months(app, as_of).await;
    let total: Decimal = series.iter().map(|m| m.2).sum();
    let orders: i64 = series.iter().map(|m| m.1).sum();
    assert_eq!(o["headline"]["customers"], count(&churn["customers"]));
    assert_eq!(o["headline"]["revenue"], money(&total.to_string().into()));
    assert_eq!(o["headline"]["orders"], grouped(orders));
    let rate = churn["churn_rate"].as_f64().expect("churn_rate");
    assert_eq!(o["headline"]["churn_rate"], format!("{:.2}%", rate * 100.0));
    let expected: Vec<Vec<String>> = series
        .iter()
        .map(|(month, orders, amount)| {
            vec![
                month.clone(),
                grouped(*orders),
                money(&format!("{amount:.2}").into()),
            ]
        })
        .collect();
    assert_eq!(rows(&o["revenue"]), expected);
    assert_eq!(o["chart_canvases"], 1, "the revenue chart is drawn");

    let segments = get_json(app, &format!("/segments{at}"), None).await;
    let expected: Vec<Vec<String>> = items(&segments)
        .iter()
        .map(|s| {
            vec![
                text(&s["segment"]),
                count(&s["customers"]),
                s["customers_pct"]
                    .as_f64()
                    .map_or_else(|| "—".into(), |p| format!("{p:.2}%")),
                money(&s["revenue"]),
                money(&s["clv_predicted_12m"]),
            ]
        })
        .collect();
    assert_eq!(rows(&o["segments"]), expected);
    assert_eq!(expected.len(), 12, "every segment, also empty ones");

    for (key, field) in [
        ("active", "active"),
        ("at-risk", "at_risk"),
        ("churned", "churned"),
        ("prospect", "prospects"),
    ] {
        assert_eq!(o["churn"][key], count(&churn[field]), "{key}");
    }

    let categories = get_json(app, &format!("/analytics/categories{at}"), None).await;
    let expected: Vec<Vec<String>> = items(&categories)
        .iter()
        .take(10)
        .map(|c| {
            vec![
                c["category"]
                    .as_str()
                    .map_or_else(|| "(no category)".into(), str::to_string),
                count(&c["products"]),
                count(&c["units_sold"]),
                money(&c["revenue"]),
                c["revenue_pct"]
                    .as_f64()
                    .map_or_else(|| "—".into(), |p| format!("{p:.2}%")),
            ]
        })
        .collect();
    assert_eq!(rows(&o["categories"]), expected);
    assert!(!expected.is_empty(), "the data has categories");

    let top = match as_of {
        None => "/analytics/top-products?limit=10".to_string(),
        Some(day) => format!("/analytics/top-products?limit=10&as_of={day}"),
    };
    let products = get_json(app, &top, None).await;
    let expected: Vec<Vec<String>> = items(&products)
        .iter()
        .map(|p| {
            vec![
                text(&p["product_id"]),
                text(&p["name"]),
                text(&p["category"]),
                count(&p["units_sold"]),
                money(&p["revenue"]),
            ]
        })
        .collect();
    assert_eq!(rows(&o["products"]), expected);

    let ready = get_json(app, "/ready", None).await;
    assert_eq!(o["freshness"]["status"], "ready");
    assert_eq!(
        o["freshness"]["pending-events"],
        count(&ready["loader"]["pending_events"])
    );
    assert_eq!(
        o["freshness"]["schema-version"],
        ready["schema_version"].to_string()
    );
    let run = &ready["last_run"];
    let expected = if run.is_null() {
        "none recorded".to_string()
    } else {
        let mut line = format!(
            "{} ({}, {}), started {}",
            text(&run["status"]),
            text(&run["kind"]),
            text(&run["trigger"]),
            minute(&run["started_at"])
        );
        if !run["finished_at"].is_null() {
            line.push_str(&format!(", finished {}", minute(&run["finished_at"])));
        }
        if !run["events_read"].is_null() {
            line.push_str(&format!(", {} events", count(&run["events_read"])));
        }
        line
    };
    assert_eq!(o["freshness"]["last-run"], expected);
}

/// The customer page shows what the API answers for `id`; its timeline has one row
/// per value an attribute held (consecutive versions with the same value merged).
async fn check_customer(app: &TestApp, c: &Value, id: &str) {
    assert_eq!(c["state"], "ready", "{c}");
    let path = format!("/customers/{id}");
    let customer = get_json(app, &path, None).await;
    let name = format!(
        "{} {} ({})",
        text(&customer["first_name"]),
        text(&customer["last_name"]),
        text(&customer["customer_id"])
    );
    assert_eq!(c["name"], name);
    assert_eq!(c["facts"]["city"], text(&customer["city"]));
    assert_eq!(c["facts"]["country"], text(&customer["country"]));
    assert_eq!(c["facts"]["orders-count"], count(&customer["orders_count"]));
    let email = customer["email"].as_str().unwrap_or("hidden or none");
    assert_eq!(c["facts"]["email"], email);
    assert_eq!(c["segment"], text(&customer["segment"]));
    assert_eq!(c["rfm_cell"], text(&customer["rfm_cell"]));
    assert_eq!(c["clv_historic"], money(&customer["clv_historic"]));
    assert_eq!(c["clv_predicted"], money(&customer["clv_predicted_12m"]));
    let risk = customer["churn_risk"]
        .as_str()
        .map_or("—".to_string(), |r| r.replace('_', " "));
    assert_eq!(c["churn_risk"], risk);

    let orders = get_json(app, &format!("{path}/orders?limit=100"), None).await;
    let expected: Vec<Vec<String>> = items(&orders)
        .iter()
        .map(|o| {
            vec![
                text(&o["order_id"]),
                minute(&o["ordered_at"]),
                text(&o["channel"]),
                text(&o["status"]),
                count(&o["units"]),
                money(&o["amount"]),
                money(&o["cumulative_spent"]),
            ]
        })
        .collect();
    assert_eq!(rows(&c["orders"]), expected);

    let history = get_json(app, &format!("{path}/history"), None).await;
    let timeline = rows(&c["timeline"]);
    let versions = |part: &str, field: &str| -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for v in history[part].as_array().expect("versions") {
            let value = text(&v[field]);
            let to = if v["valid_to"].is_null() {
                "now".to_string()
            } else {
                minute(&v["valid_to"])
            };
            match out.last_mut() {
                Some(last) if last[1] == value && last[3] == minute(&v["valid_from"]) => {
                    last[3] = to;
                }
                _ => out.push(vec![
                    field.replace('_', " "),
                    value,
                    minute(&v["valid_from"]),
                    to,
                ]),
            }
        }
        out
    };
    let mut expected = Vec::new();
    for field in ["city", "country", "first_name", "last_name"] {
        expected.extend(versions("profile", field));
    }
    for field in ["email", "phone"] {
        expected.extend(versions("contact", field));
    }
    let shown: Vec<Vec<String>> = timeline.iter().map(|r| r[..4].to_vec()).collect();
    assert_eq!(shown, expected);
}

/// A segment's rows as the segment page shows them (customer, name, city, orders,
/// total spent, last order, predicted value, churn risk).
fn member_rows(page: &Value) -> Vec<Vec<String>> {
    items(page)
        .iter()
        .map(|c| {
            let names: Vec<&str> = [&c["first_name"], &c["last_name"]]
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .collect();
            vec![
                text(&c["customer_id"]),
                if names.is_empty() {
                    "—".into()
                } else {
                    names.join(" ")
                },
                text(&c["city"]),
                count(&c["orders_count"]),
                money(&c["total_spent"]),
                minute(&c["last_order_at"]),
                money(&c["clv_predicted_12m"]),
                c["churn_risk"]
                    .as_str()
                    .map_or("—".to_string(), |r| r.replace('_', " ")),
            ]
        })
        .collect()
}

/// The segment page shows what the API answers for `name`: its figures, its
/// customers page by page and in another sort, and its six month ends.
async fn check_segment(app: &TestApp, s: &Value, name: &str) {
    assert_eq!(s["state"], "ready", "{s}");
    let encoded = name.replace(' ', "%20");
    assert_eq!(s["path"], format!("/dashboard/segments/{encoded}"));
    assert_eq!(s["name"], name);
    let segments = get_json(app, "/segments", None).await;
    let row = items(&segments)
        .iter()
        .find(|x| x["segment"] == name)
        .expect("the segment");
    let pct = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "—".into(), |p| format!("{p:.2}%"))
    };
    assert_eq!(s["figures"]["customers"], count(&row["customers"]));
    assert_eq!(s["figures"]["customers_pct"], pct(&row["customers_pct"]));
    assert_eq!(s["figures"]["revenue"], money(&row["revenue"]));
    assert_eq!(s["figures"]["revenue_pct"], pct(&row["revenue_pct"]));
    assert_eq!(s["figures"]["clv"], money(&row["clv_predicted_12m"]));

    let base = format!("/segments/{encoded}/customers?limit=25");
    let first = get_json(app, &format!("{base}&sort=-clv_predicted_12m"), None).await;
    assert_eq!(rows(&s["members"]), member_rows(&first));
    match first["next"].as_str() {
        Some(next) => {
            let second = get_json(app, next, None).await;
            assert_eq!(rows(&s["members_page_2"]), member_rows(&second));
            assert_ne!(s["members_page_2"], s["members"]);
        }
        None => {
            assert!(
                s["members_page_2"].is_null(),
                "no next page, no next button"
            );
            assert!(rows(&s["members"]).len() <= 25);
        }
    }
    let by_spent = get_json(app, &format!("{base}&sort=-total_spent"), None).await;
    assert_eq!(rows(&s["members_by_total_spent"]), member_rows(&by_spent));

    assert_eq!(s["history_state"], "ready");
    let history = rows(&s["history"]);
    assert_eq!(history.len(), 6, "six month ends");
    for shown in &history {
        let day = &shown[0];
        let then = get_json(app, &format!("/segments?as_of={day}"), None).await;
        let row = items(&then)
            .iter()
            .find(|x| x["segment"] == name)
            .expect("the segment then");
        assert_eq!(shown[1], count(&row["customers"]), "{day}");
        assert_eq!(shown[2], pct(&row["customers_pct"]), "{day}");
        assert_eq!(shown[3], money(&row["revenue"]), "{day}");
        assert_eq!(shown[4], pct(&row["revenue_pct"]), "{day}");
    }
}

/// The rows of the timeline for one attribute: value, from, to.
fn timeline_of(c: &Value, attribute: &str) -> Vec<Vec<String>> {
    rows(&c["timeline"])
        .into_iter()
        .filter(|r| r[0] == attribute)
        .map(|r| r[1..4].to_vec())
        .collect()
}

#[tokio::test]
async fn overview_and_customer_pages_show_the_apis_numbers() {
    let db = loaded_db().await;
    // a finished manual load, as `dvault load` records it
    db.client()
        .await
        .batch_execute(
            "INSERT INTO ops.load_runs (trigger, kind, status, started_at, finished_at, runner, events_read)
             VALUES ('manual', 'load', 'succeeded', '2024-07-02 10:00:05Z', '2024-07-02 10:01:10Z', 'test', 1234)",
        )
        .await
        .expect("a run");
    let app = TestApp::spawn(&db.url, open_config()).await;
    // the id as a user types it: lower case (the API matches it like the vault does)
    let report = browse(
        &app.base,
        "c01",
        None,
        false,
        &[("AS_OF", "2024-05-10"), ("SEARCH", "cust1")],
    )
    .await;
    assert_clean(&report, &[]);
    let o = &report["overview"];
    check_overview(&app, o, None).await;
    // what the data set says, beyond agreeing with the API
    assert_eq!(o["headline"]["customers"], "12");
    assert_eq!(o["headline"]["orders"], "11", "O03 was cancelled");
    assert_eq!(rows(&o["revenue"]).len(), 5, "orders from March to July");
    assert_eq!(rows(&o["products"])[0][0], "P3", "the best seller first");
    assert_eq!(
        o["freshness"]["last-run"],
        "succeeded (load, manual), started 2024-07-02 10:00, finished 2024-07-02 10:01, 1,234 events"
    );

    // the as-of picker: the end of 10 May, before most of May's orders
    let then = &report["overview_as_of"];
    assert_eq!(then["query"], "?as_of=2024-05-10", "the picker's form");
    assert_eq!(then["picked"], "2024-05-10");
    assert_eq!(then["back_to_today_shown"], true);
    assert!(
        then["note"]
            .as_str()
            .is_some_and(|n| n.contains("2024-05-10")),
        "{then}"
    );
    check_overview(&app, then, Some("2024-05-10")).await;
    assert_ne!(then["segments"], o["segments"], "the segments moved since");
    assert_ne!(then["headline"]["orders"], o["headline"]["orders"]);
    assert_ne!(then["churn"], o["churn"], "the churn split moved since");
    assert_ne!(then["categories"], o["categories"], "so did the categories");
    assert_ne!(then["products"], o["products"], "and the top products");

    let c = &report["customer"];
    assert_eq!(
        c["path"], "/dashboard/customers/C01",
        "the search box found c01 and led here"
    );
    // several customers whose names begin with the words are listed, as the API finds them
    let found = get_json(&app, "/customers?search=cust1&limit=20", None).await;
    let expected: Vec<String> = items(&found)
        .iter()
        .map(|c| text(&c["customer_id"]))
        .collect();
    assert_eq!(expected, ["C10", "C11", "C12"]);
    assert_eq!(report["search"]["customers"], serde_json::json!(expected));
    assert_eq!(report["search"]["message"], "3 customers for “cust1”:");
    check_customer(&app, c, "C01").await;
    assert_eq!(c["name"], "Ann Test (C01)");
    assert_eq!(c["clv_historic"], "55.50", "20.00 + 25.00 + 10.50");
    assert_eq!(rows(&c["orders"]).len(), 2);
    // Ann moved from Rome to Milan on 1 June and changed her e-mail on 1 March
    assert_eq!(
        timeline_of(c, "city"),
        [
            ["Rome", "2024-01-10 09:00", "2024-06-01 00:00"],
            ["Milan", "2024-06-01 00:00", "now"]
        ]
    );
    assert_eq!(
        timeline_of(c, "email"),
        [
            ["c01@example.com", "2024-01-10 09:00", "2024-03-01 00:00"],
            ["ann@new.example", "2024-03-01 00:00", "now"]
        ]
    );
    assert_eq!(
        timeline_of(c, "country"),
        [["Italy", "2024-01-10 09:00", "now"]]
    );

    // an unknown id is said so, in the API's words
    let u = &report["unknown"];
    assert_eq!(u["state"], "error", "{u}");
    assert_eq!(u["name"], "No customer NO-SUCH-CUSTOMER");
    let problem = app.get("/customers/NO-SUCH-CUSTOMER").await;
    assert_eq!(problem.status(), StatusCode::NOT_FOUND);
    let problem: Value = problem.json().await.expect("problem");
    assert_eq!(u["error"], problem["detail"], "{u}");
    assert!(
        u["console_errors"].as_array().is_some_and(|e| e
            .iter()
            .all(|e| e.as_str().is_some_and(|e| e.contains("404")))),
        "{u}"
    );
    app.stop().await;
}

/// A generated world of a year up to last month (300 customers, 1,500 orders): the
/// same checks on more data (thousands separators, a year of months, customers whose
/// attributes changed), and the screenshots docs/dashboard.md and the README show.
#[tokio::test]
async fn a_generated_world_looks_right_and_is_photographed() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let end = dvault::generate::default_end(chrono::Utc::now().date_naive());
    let world = crate::oracle::generated_world_of(end, 300, 1_500, 365);
    dvault::events::append(&client, &world)
        .await
        .expect("append");
    let loaded = crate::harness::load_all(&mut client).await;
    assert_eq!(loaded.rejected, 0);
    // the customer whose attributes changed most, with orders
    let id: String = client
        .query_one(
            "SELECT h.customer_id
               FROM business_vault.sat_customer_profile_history h
               JOIN mart.customer_360 c USING (customer_id)
              WHERE c.orders_count > 1
              GROUP BY h.customer_id
              ORDER BY count(*) DESC, h.customer_id
              LIMIT 1",
            &[],
        )
        .await
        .expect("a customer with versions")
        .get(0);
    let app = TestApp::spawn(&db.url, open_config()).await;
    let half_way = (end - chrono::Days::new(180)).to_string();
    // the largest segment of customers with orders (usually more than a page)
    let segments = get_json(&app, "/segments", None).await;
    let largest = items(&segments)
        .iter()
        .filter(|s| s["segment"] != "Prospect")
        .max_by_key(|s| s["customers"].as_i64())
        .and_then(|s| s["segment"].as_str())
        .expect("a segment")
        .to_string();
    let report = browse(
        &app.base,
        &id,
        None,
        true,
        &[("AS_OF", &half_way), ("SEGMENT", &largest)],
    )
    .await;
    assert_clean(&report, &[]);
    check_overview(&app, &report["overview"], None).await;
    check_overview(&app, &report["overview_as_of"], Some(&half_way)).await;
    check_segment(&app, &report["segment"], &largest).await;
    assert!(
        rows(&report["overview"]["revenue"]).len() >= 12,
        "a year of months"
    );
    check_customer(&app, &report["customer"], &id).await;
    assert!(
        timeline_of(&report["customer"], "city").len()
            + timeline_of(&report["customer"], "email").len()
            > 2,
        "{id} changed city or e-mail: {}",
        report["customer"]["timeline"]
    );
    app.stop().await;
}

/// Served by the least-privilege role of docs/api.md, which may not read contact
/// details: the API answers null for them, and so does the page, in the profile and
/// in the timeline.
#[tokio::test]
async fn contact_details_are_hidden_where_the_api_hides_them() {
    let db = loaded_db().await;
    let role = format!("dvault_dash_test_{}", rand::random::<u32>());
    let owner = db.client().await;
    owner
        .batch_execute(&api_role_sql(&role, "dash-pw"))
        .await
        .expect("the documented role SQL runs");
    let app = TestApp::spawn(&with_credentials(&db.url, &role, "dash-pw"), open_config()).await;
    let report = browse(&app.base, "C01", None, false, &[]).await;
    assert_clean(&report, &[]);
    let c = &report["customer"];
    check_customer(&app, c, "C01").await;
    assert_eq!(c["facts"]["email"], "hidden or none");
    assert_eq!(c["facts"]["phone"], "hidden or none");
    // the versions are there, their values are not
    let emails = timeline_of(c, "email");
    assert!(!emails.is_empty(), "{}", c["timeline"]);
    assert!(emails.iter().all(|r| r[0] == "—"), "{emails:?}");
    assert_eq!(
        timeline_of(c, "city").len(),
        2,
        "the profile is not personal data"
    );
    app.stop().await;
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
}

#[tokio::test]
async fn with_api_keys_the_page_asks_for_a_read_key_once() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    // the page itself needs no key (it holds no data), the API does
    assert_eq!(app.get("/dashboard").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/segments").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let report = browse(&app.base, "C02", Some(READ_TOKEN), true, &[]).await;
    // the first calls, before the key was typed, were refused: chromium logs each
    assert_clean(&report, &["status of 401"]);
    assert_eq!(report["key_form_shown"], true);
    assert_eq!(report["key_message"], "This server requires an API key.");
    assert_eq!(
        report["key_message_after_wrong_key"],
        "The server refused that key."
    );
    assert_eq!(report["stored_key"], READ_TOKEN, "kept in sessionStorage");
    let o = &report["overview"];
    assert_eq!(o["state"], "ready", "{o}");
    let churn = get_json(&app, "/analytics/churn", Some(READ_TOKEN)).await;
    assert_eq!(o["headline"]["customers"], count(&churn["customers"]));
    // the next page uses the kept key without asking again
    let c = &report["customer"];
    assert_eq!(c["state"], "ready", "{c}");
    assert_eq!(report["key_form_hidden_on_customer"], true);
    assert_eq!(c["name"], "Bob Test (C02)");
    let orders = get_json(&app, "/customers/C02/orders", Some(READ_TOKEN)).await;
    let shown = rows(&c["orders"]);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0][0], "O03");
    assert_eq!(shown[0][3], "cancelled");
    assert_eq!(shown[0][5], money(&items(&orders)[0]["amount"]));
    app.stop().await;
}

#[tokio::test]
async fn pages_and_assets_come_from_the_binary_with_a_strict_csp() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    for path in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/customers/C01",
        "/dashboard/segments/Champions",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
        let csp = header(&resp, "content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        let html = resp.text().await.expect("html");
        assert!(!html.contains("https://") && !html.contains("http://"));
        // every asset a page names is served
        for asset in html
            .split("\"/dashboard/assets/")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            let resp = app.get(&format!("/dashboard/assets/{asset}")).await;
            assert_eq!(resp.status(), StatusCode::OK, "{asset}");
            assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
            // read to the end: an unread body keeps its connection busy at shutdown
            assert!(!resp.bytes().await.expect(asset).is_empty(), "{asset}");
        }
    }
    let resp = app.get("/dashboard/assets/uPlot-LICENSE.txt").await;
    assert!(resp.text().await.expect("text").contains("MIT License"));
    let resp = app.get("/dashboard/assets/nope.js").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/dashboard/vendor/uplot/LICENSE")
            .exists(),
        "the vendored library keeps its license file"
    );
    app.stop().await;
}
