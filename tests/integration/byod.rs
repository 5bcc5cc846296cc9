//! Bring your own data (issue 16): the old Customer 360 platform's three files, with
//! a user mapping set added to the built-in model, registered in the warehouse, with
//! its own DDL; held-back events of unmapped types; value maps that refuse what they
//! do not name. The worked example of docs/mappings.md is run here as written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use crate::api::{TestApp, WRITE_TOKEN, keyed_config};
use crate::harness::TestDb;

const STATUSES: [&str; 4] = ["Completed", "Shipped", "Processing", "Cancelled"];

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let p = std::env::temp_dir().join(format!("dvault-byod-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&p).expect("mkdir");
        Scratch(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn c360_mappings() -> PathBuf {
    repo().join("examples/c360/mappings")
}

/// The old platform's files, shaped like its generator's (same columns and
/// vocabularies), deterministic: 30 customers, 12 products, 120 transactions.
struct OldFiles {
    dir: Scratch,
    transactions: usize,
    shipped: Vec<String>,
}

fn old_platform_files() -> OldFiles {
    let dir = Scratch::new();
    let mut customers = String::from(
        "customer_id,first_name,last_name,email,phone,signup_date,country,state,city,customer_segment\n",
    );
    let segments = ["Premium", "Regular", "Budget"];
    let states = ["CA", "NY", "TX", "WA"];
    for i in 1..=30 {
        customers.push_str(&format!(
            "CUST{i:05},Ann{i},Lee{i},ann{i}@example.com,555-01{i:02},2025-0{}-1{},USA,{},City{},{}\n",
            1 + i % 9,
            i % 10,
            states[i % states.len()],
            i % 7,
            segments[i % segments.len()]
        ));
    }
    let mut products = String::from("product_id,product_name,category,price,cost,supplier\n");
    let categories = ["Electronics", "Books", "Home & Garden"];
    for i in 1..=12 {
        products.push_str(&format!(
            "PROD{i:04},Widget \"{i}\",{},{}.99,{}.50,Supplier {}\n",
            categories[i % categories.len()],
            10 + i,
            5 + i,
            i % 4
        ));
    }
    let mut transactions = String::from(
        "transaction_id,customer_id,order_date,product_id,quantity,unit_price,total_amount,payment_method,order_status\n",
    );
    let payments = ["Credit Card", "PayPal", "Debit Card", "Cash"];
    let mut shipped = Vec::new();
    let n = 120;
    for i in 1..=n {
        let status = STATUSES[i % STATUSES.len()];
        let id = format!("TXN{i:07}");
        if status == "Shipped" {
            shipped.push(id.clone());
        }
        let (qty, price) = (1 + i % 3, 10 + i % 12);
        transactions.push_str(&format!(
            "{id},CUST{:05},2026-0{}-{:02} 1{}:15:00,PROD{:04},{qty},{price}.99,{}.{:02},{},{status}\n",
            1 + i % 30,
            1 + i % 9,
            1 + i % 28,
            i % 10,
            1 + i % 12,
            (qty * price) + qty * 99 / 100,
            (qty * 99) % 100,
            payments[i % payments.len()],
        ));
    }
    for (name, text) in [
        ("customers.csv", customers),
        ("products.csv", products),
        ("transactions.csv", transactions),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    shipped.sort();
    OldFiles {
        dir,
        transactions: n,
        shipped,
    }
}

/// Run the binary against `db`, from the repository's root.
fn dvault(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args(args)
        .current_dir(repo())
        .env("DATABASE_URL", &db.url)
        .env_remove("DVAULT_MAPPINGS")
        .output()
        .expect("run dvault")
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "dvault failed: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn failed(o: Output) -> String {
    assert!(
        !o.status.success(),
        "dvault succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The shell block after the worked-example marker of docs/mappings.md.
fn worked_example() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/mappings.md")).expect("docs");
    let after = doc
        .split_once("<!-- doc-test: elsewhere: tests/integration/byod.rs")
        .expect("docs/mappings.md has the worked example's marker")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("a sh block after the marker")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

#[tokio::test]
async fn the_old_platforms_files_load_into_the_built_in_model_as_the_docs_say() {
    let db = TestDb::new().await;
    let files = old_platform_files();

    // the worked example of docs/mappings.md, as written, by bash
    let script = worked_example();
    assert!(script.contains("dvault migrate --mappings examples/c360/mappings"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dvault"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo())
        .env("PATH", path)
        .env("DATABASE_URL", &db.url)
        .env("DATA", files.dir.path())
        .env_remove("DVAULT_MAPPINGS")
        .output()
        .expect("bash");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "the worked example failed: {out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("applied user migration V1__c360_satellites"),
        "{out}"
    );
    assert!(
        out.contains("model: built-in mappings + c360.toml (registered)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("loaded {} events", 30 + 12 + files.transactions)),
        "{out}"
    );
    assert!(
        !out.contains("events rejected"),
        "nothing quarantined: {out}"
    );
    assert!(out.contains("rejected:   0\n"), "{out}");

    // no row quarantined, at ingest or load; no product without its name
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_log.rejected").await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) FROM ops.held_events").await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM raw_vault.sat_product_details WHERE name IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM mart.orders").await,
        files.transactions as i64
    );
    // the extra satellites have their rows; the user DDL is in the migration history
    assert_eq!(
        count(&db, "SELECT count(*) FROM raw_vault.sat_order_payment").await,
        files.transactions as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM raw_vault.sat_customer_segment WHERE customer_segment IS NOT NULL"
        )
        .await,
        30
    );
    let history: Vec<(i32, String)> = db
        .client()
        .await
        .query("SELECT version, name FROM ops.model_migrations", &[])
        .await
        .expect("history")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(history, [(1, "c360_satellites".to_string())]);
    // the quality gate passed (`dvault check` exits 1 otherwise, and bash -e stops)
    let passed: bool = db
        .client()
        .await
        .query_one(
            "SELECT bool_and(passed) FROM ops.quality_results
              WHERE checked_at = (SELECT max(checked_at) FROM ops.quality_results)",
            &[],
        )
        .await
        .expect("quality")
        .get(0);
    assert!(passed);

    // the API answers with dvault's vocabulary
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let token = WRITE_TOKEN;
    let shipped = app
        .http
        .get(app.url("/orders?status=shipped&limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    assert_eq!(shipped.status(), 200);
    let body: serde_json::Value = shipped.json().await.expect("json");
    let mut ids: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["order_id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids, files.shipped,
        "every Shipped transaction, and only them"
    );
    assert!(!files.shipped.is_empty());

    // built-in events posted to /events still load, next to the user's
    let posted = app
        .post(
            "/events",
            "application/json",
            json!({
                "specversion": "1.0", "type": "order_placed", "source": "web", "id": "w1",
                "time": "2026-11-30T10:00:00Z",
                "data": {"order_id": "W1", "customer_id": "CUST00001", "ordered_at": "2026-11-30T10:00:00Z",
                         "channel": "web", "status": "paid",
                         "lines": [{"line_no": 1, "product_id": "PROD0001", "quantity": 2, "unit_price": "11.99", "discount": 0}]}
            })
            .to_string(),
            Some(token),
        )
        .await;
    assert!(posted.status().is_success(), "{}", posted.status());
    let loaded = ok(dvault(&db, &["load"]));
    assert!(loaded.contains("loaded 1 events"), "{loaded}");
    let w1 = app
        .http
        .get(app.url("/orders/W1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    assert_eq!(w1.status(), 200);
    let w1: serde_json::Value = w1.json().await.expect("json");
    assert_eq!(w1["status"], "paid", "{w1}");
    app.stop().await;
}

#[tokio::test]
async fn a_load_without_the_users_mappings_holds_their_events_back_until_registered() {
    let db = TestDb::new().await;
    let files = old_platform_files();
    let data = |f: &str| files.dir.path().join(f).display().to_string();
    for (file, ty, time) in [
        ("customers.csv", "c360_customer", Some("signup_date")),
        ("products.csv", "c360_product", None),
        ("transactions.csv", "c360_transaction", Some("order_date")),
    ] {
        let mut args = vec!["ingest", "", "--type", ty, "--source", "c360"];
        let path = data(file);
        args[1] = &path;
        if let Some(t) = time {
            args.extend(["--time-field", t]);
        }
        ok(dvault(&db, &args));
    }
    let total = 30 + 12 + files.transactions;

    // no model registered: the loader knows none of these types and holds them back
    let first = ok(dvault(&db, &["load"]));
    assert!(
        first.contains(&format!("{total} events held back")),
        "{first}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_log.rejected").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ops.held_events").await,
        total as i64
    );
    let status = ok(dvault(&db, &["status"]));
    assert!(status.contains("held back:"), "{status}");
    assert!(status.contains("c360_transaction"), "{status}");

    // registering the mappings (and their DDL) loads them with the next load
    let migrated = ok(dvault(
        &db,
        &["migrate", "--mappings", "examples/c360/mappings"],
    ));
    assert!(
        migrated.contains(&format!("{total} held-back events are mapped now")),
        "{migrated}"
    );
    let second = ok(dvault(&db, &["load"]));
    assert!(
        second.contains(&format!("loaded {total} events")),
        "{second}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM ops.held_events").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_log.rejected").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM mart.orders").await,
        files.transactions as i64
    );

    // a loader handed other mappings refuses, with the diff, and quarantines nothing
    let other = Scratch::new();
    for entry in std::fs::read_dir(c360_mappings()).expect("dir").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        std::fs::write(
            other.path().join(entry.file_name()),
            text.replace("Shipped = \"shipped\"", "Shipped = \"delivered\""),
        )
        .expect("write");
    }
    std::fs::write(other.path().join("extra.toml"), "").expect("write");
    let other_dir = other.path().display().to_string();
    let refused = failed(dvault(&db, &["load", "--mappings", &other_dir]));
    assert!(
        refused.contains("differ from the model registered in the database"),
        "{refused}"
    );
    assert!(
        refused.contains("~ c360.toml: line 49: registered `map = { Pending = \"placed\", Processing = \"paid\", Shipped = \"shipped\""),
        "{refused}"
    );
    assert!(
        refused.contains("+ extra.toml: given, not registered"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("dvault model apply {other_dir}")),
        "{refused}"
    );
    let same = ok(dvault(
        &db,
        &["load", "--mappings", "examples/c360/mappings"],
    ));
    assert!(same.contains("nothing new"), "{same}");

    // a status the value map does not name rejects the event, naming the value
    let extra = files.dir.path().join("late.csv");
    std::fs::write(
        &extra,
        "transaction_id,customer_id,order_date,product_id,quantity,unit_price,total_amount,payment_method,order_status\n\
         TXN9999999,CUST00001,2026-11-01 10:00:00,PROD0001,1,10.00,10.00,Cash,Lost\n",
    )
    .expect("write");
    let extra = extra.display().to_string();
    ok(dvault(
        &db,
        &[
            "ingest",
            &extra,
            "--type",
            "c360_transaction",
            "--source",
            "c360",
            "--time-field",
            "order_date",
        ],
    ));
    let third = ok(dvault(&db, &["load"]));
    assert!(third.contains("1 events rejected"), "{third}");
    let reason: String = db
        .client()
        .await
        .query_one("SELECT reason FROM event_log.rejected", &[])
        .await
        .expect("reason")
        .get(0);
    assert!(
        reason.contains("satellite \"sat_order_status\", column \"status\", field \"order_status\": value \"Lost\" is not in the value map (it maps: Cancelled, Completed, Pending, Processing, Returned, Shipped)"),
        "{reason}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM raw_vault.hub_order WHERE order_id = 'TXN9999999'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn user_ddl_is_applied_once_recorded_and_never_changed() {
    let db = TestDb::new().await;
    let dir = Scratch::new();
    for entry in std::fs::read_dir(c360_mappings()).expect("dir").flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    let d = dir.path().display().to_string();
    let first = ok(dvault(&db, &["model", "apply", &d]));
    assert!(
        first.contains("applied user migration V1__c360_satellites"),
        "{first}"
    );
    let again = ok(dvault(&db, &["migrate", "--mappings", &d]));
    assert!(!again.contains("applied user migration"), "{again}");
    assert!(again.contains("already registered"), "{again}");

    // a second migration is applied and recorded after the first
    std::fs::write(
        dir.path().join("V2__segment_index.sql"),
        "CREATE INDEX sat_customer_segment_by_segment ON raw_vault.sat_customer_segment (customer_segment);\n",
    )
    .expect("write");
    let second = ok(dvault(&db, &["migrate", "--mappings", &d]));
    assert!(
        second.contains("applied user migration V2__segment_index"),
        "{second}"
    );
    let history: Vec<(i32, String)> = db
        .client()
        .await
        .query(
            "SELECT version, name FROM ops.model_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        history,
        [
            (1, "c360_satellites".to_string()),
            (2, "segment_index".to_string())
        ]
    );
    let shown = ok(dvault(&db, &["model", "show"]));
    assert!(shown.contains("V2__segment_index"), "{shown}");
    assert!(shown.contains("c360.toml"), "{shown}");

    // an applied migration that changed is refused, nothing applied
    let v1 = dir.path().join("V1__c360_satellites.sql");
    let text = std::fs::read_to_string(&v1).expect("read");
    std::fs::write(&v1, format!("{text}\n-- edited\n")).expect("write");
    let refused = failed(dvault(&db, &["migrate", "--mappings", &d]));
    assert!(
        refused.contains("V1__c360_satellites.sql was applied") && refused.contains("another text"),
        "{refused}"
    );

    // a mapping that redefines a built-in table names both files
    std::fs::write(&v1, text).expect("write");
    std::fs::write(
        dir.path().join("zz.toml"),
        "[hubs.hub_customer]\nhash_key = \"hk_customer\"\nbusiness_key = [\"id\"]\n",
    )
    .expect("write");
    let conflict = failed(dvault(&db, &["model", "apply", &d]));
    assert!(
        conflict.contains(
            "zz.toml: hub \"hub_customer\": defined again (first in vault/mappings/customer.toml)"
        ),
        "{conflict}"
    );
}

#[tokio::test]
async fn ingest_check_tells_what_the_model_would_do_before_anything_is_stored() {
    let db = TestDb::new().await;
    let files = old_platform_files();
    let data = |f: &str| files.dir.path().join(f).display().to_string();
    let (products, transactions) = (data("products.csv"), data("transactions.csv"));

    // the issue's first surprise: the old products file as built-in product_listed
    let o = dvault(
        &db,
        &[
            "ingest",
            "--check",
            &products,
            "--type",
            "product_listed",
            "--source",
            "c360",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "every row would load: {out}");
    assert!(
        out.contains("12 rows checked (nothing stored): 12 would load"),
        "{out}"
    );
    assert!(
        out.contains("would leave sat_product_details.name NULL in 12 of 12 \"product_listed\" events (field \"name\" missing or empty)"),
        "{out}"
    );
    assert!(
        out.contains("fields of \"product_listed\" no mapping reads (kept in the log only): cost, product_name, supplier"),
        "{out}"
    );
    // a type no mapping knows would be held back
    let held = failed_out(dvault(
        &db,
        &[
            "ingest",
            "--check",
            &transactions,
            "--type",
            "c360_transaction",
            "--source",
            "c360",
            "--time-field",
            "order_date",
        ],
    ));
    assert!(
        held.contains(&format!(
            "held back: {} events of type \"c360_transaction\"",
            files.transactions
        )),
        "{held}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM event_log.events").await, 0);

    // with the c360 model registered: everything would load; a status the map does
    // not name would be quarantined, naming it
    ok(dvault(
        &db,
        &["migrate", "--mappings", "examples/c360/mappings"],
    ));
    let clean = ok(dvault(
        &db,
        &[
            "ingest",
            "--check",
            &transactions,
            "--type",
            "c360_transaction",
            "--source",
            "c360",
            "--time-field",
            "order_date",
        ],
    ));
    assert!(
        clean.contains(&format!(
            "{0} rows checked (nothing stored): {0} would load, 0 refused at ingest, 0 quarantined at load, 0 held back",
            files.transactions
        )),
        "{clean}"
    );
    let lost = files.dir.path().join("lost.csv");
    std::fs::write(
        &lost,
        "transaction_id,customer_id,order_date,product_id,quantity,unit_price,total_amount,payment_method,order_status\n\
         TXN1,CUST00001,2026-11-01 10:00:00,PROD0001,1,10.00,10.00,Cash,Lost\n",
    )
    .expect("write");
    let lost = lost.display().to_string();
    let out = failed_out(dvault(
        &db,
        &[
            "ingest",
            "--check",
            &lost,
            "--type",
            "c360_transaction",
            "--source",
            "c360",
        ],
    ));
    assert!(
        out.contains("line 2: would be quarantined: ")
            && out.contains("value \"Lost\" is not in the value map"),
        "{out}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM event_log.events").await, 0);
}

fn failed_out(o: Output) -> String {
    assert!(
        !o.status.success(),
        "dvault succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn a_skipped_type_is_neither_held_back_nor_quarantined() {
    let db = TestDb::new().await;
    let files = old_platform_files();
    let products = files.dir.path().join("products.csv").display().to_string();
    let ingest = [
        "ingest",
        &products,
        "--type",
        "c360_product",
        "--source",
        "c360",
    ];
    ok(dvault(&db, &ingest));
    let first = ok(dvault(&db, &["load"]));
    assert!(first.contains("12 events held back"), "{first}");
    let skipped = ok(dvault(&db, &["model", "skip", "c360_product"]));
    assert!(
        skipped.contains(
            "events of type \"c360_product\" are passed over from now on (12 held back forgotten)"
        ),
        "{skipped}"
    );
    // the same rows from another source: new events of the skipped type
    let again = [
        "ingest",
        &products,
        "--type",
        "c360_product",
        "--source",
        "c360-b",
    ];
    ok(dvault(&db, &again));
    let second = ok(dvault(&db, &["load"]));
    assert!(second.contains("loaded 12 events"), "{second}");
    assert!(!second.contains("held back"), "{second}");
    assert_eq!(count(&db, "SELECT count(*) FROM ops.held_events").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM event_log.rejected").await,
        0
    );
    let status = ok(dvault(&db, &["status"]));
    assert!(!status.contains("held back:"), "{status}");
}
