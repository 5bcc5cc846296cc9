//! Poison events at load: no single event can stop the loader or lose its
//! neighbours. The checks before writing (key length, keys that could collide, a key
//! stated twice in one event) and the safety net for what no check foresaw (a batch
//! the database refuses is written again range by range, the events responsible
//! quarantined with the database's message).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use dvault::events::{self, NewEvent};
use dvault::load;

use crate::harness::{TestDb, builtin_loader, load_all_with, vault_checksums, wait_visible};

fn ev(id: &str, ty: &str, data: Value) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        event_type: ty.into(),
        source: "test".into(),
        occurred_at: chrono::DateTime::parse_from_rfc3339("2024-03-01T10:00:00Z")
            .expect("time")
            .to_utc(),
        payload: data.to_string(),
    }
}

fn registered(id: &str, customer: &str) -> NewEvent {
    ev(
        id,
        "customer_registered",
        json!({"customer_id": customer, "first_name": "Ann", "email": "ann@example.com",
               "city": "Rome", "signup_date": "2024-01-01"}),
    )
}

fn order(id: &str, order_id: &str, lines: Value) -> NewEvent {
    ev(
        id,
        "order_placed",
        json!({"order_id": order_id, "customer_id": "C1", "ordered_at": "2024-03-01T10:00:00Z",
               "status": "placed", "lines": lines}),
    )
}

fn line(no: Value, product: &str, quantity: i64) -> Value {
    json!({"line_no": no, "product_id": product, "quantity": quantity, "unit_price": 5, "discount": 0})
}

/// `n` characters that do not compress (hex of a SHA-256 chain), so PostgreSQL
/// cannot shrink them under its index row limit.
fn incompressible(n: usize) -> String {
    let mut out = String::new();
    let mut h: [u8; 32] = Sha256::digest(b"poison").into();
    while out.len() < n {
        out.push_str(&hex::encode(h));
        h = Sha256::digest(h).into();
    }
    out.truncate(n);
    out
}

/// (event id, reason) of every load rejection, in log order.
async fn quarantined(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT e.event_id, r.reason FROM event_log.rejected r
               JOIN event_log.events e ON e.seq = r.event_seq
              WHERE r.stage = 'load' ORDER BY r.event_seq",
            &[],
        )
        .await
        .expect("rejections")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn ids(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn append(client: &Client, log: &[NewEvent]) {
    events::append(client, log).await.expect("append");
    wait_visible(client, log.len() as i64).await;
}

#[tokio::test]
async fn an_oversized_business_key_is_quarantined_and_its_neighbours_load() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let long = incompressible(2_800);
    append(
        &client,
        &[
            registered("e1", "C1"),
            registered("e2", &long),
            registered("e3", "C2"),
            order("e4", "O1", json!([line(json!(1), &long, 1)])),
            order("e5", "O2", json!([line(json!(1), "P1", 1)])),
        ],
    )
    .await;
    let loader = builtin_loader(&client, 50_000).await;
    let summary = load_all_with(&mut client, &loader).await;
    assert_eq!(summary.rejected, 2);

    let got = quarantined(&client).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "e2");
    assert!(
        got[0]
            .1
            .contains("hub \"hub_customer\", field \"customer_id\"")
            && got[0]
                .1
                .contains("2800 bytes long, more than the limit of 512 bytes"),
        "{}",
        got[0].1
    );
    assert_eq!(got[1].0, "e4");
    assert!(
        got[1]
            .1
            .contains("field \"lines[].product_id\" (element 1)")
            && got[1].1.contains("limit of 512 bytes"),
        "{}",
        got[1].1
    );
    assert_eq!(
        ids(
            &client,
            "SELECT customer_id FROM raw_vault.hub_customer ORDER BY 1"
        )
        .await,
        ["C1", "C2"]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT order_id FROM raw_vault.hub_order ORDER BY 1"
        )
        .await,
        ["O2"]
    );
    // nothing left behind the checkpoint: the next run has nothing to do
    assert_eq!(loader.run(&mut client).await.expect("load").events, 0);
}

#[tokio::test]
async fn a_key_stated_twice_in_one_event_rejects_that_event_only() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("e0", "C1"),
            // the same line twice
            order(
                "dup",
                "O1",
                json!([line(json!(1), "P1", 1), line(json!(1), "P1", 1)]),
            ),
            // the same key once normalized: case and spaces of the product, a number sent as text
            order(
                "norm",
                "O2",
                json!([line(json!(1), "p1", 1), line(json!("1"), " P1 ", 2)]),
            ),
            // two lines, two keys: fine
            order(
                "good",
                "O3",
                json!([line(json!(1), "P1", 1), line(json!(2), "P1", 2)]),
            ),
        ],
    )
    .await;
    let loader = builtin_loader(&client, 50_000).await;
    load_all_with(&mut client, &loader).await;

    let got = quarantined(&client).await;
    let rejected: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(rejected, ["dup", "norm"], "{got:?}");
    for (_, reason) in &got {
        assert!(
            reason.contains("satellite \"sat_order_line\": elements 1 and 2 of \"lines\" have the same link \"link_order_product\" key"),
            "{reason}"
        );
    }
    assert_eq!(
        ids(
            &client,
            "SELECT order_id FROM raw_vault.hub_order ORDER BY 1"
        )
        .await,
        ["O3"]
    );
    let lines: i64 = client
        .query_one("SELECT count(*) FROM raw_vault.sat_order_line", &[])
        .await
        .expect("lines")
        .get(0);
    assert_eq!(lines, 2);
}

#[tokio::test]
async fn key_parts_that_could_collide_are_refused_with_their_field() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("e1", "^^"),
            registered("e2", "a||b"),
            registered("e3", "C1"),
            order("e4", "O1", json!([line(json!("1||2"), "P1", 1)])),
        ],
    )
    .await;
    let loader = builtin_loader(&client, 50_000).await;
    load_all_with(&mut client, &loader).await;

    let got = quarantined(&client).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for (_, reason) in &got[..2] {
        assert!(
            reason.contains("hub \"hub_customer\", field \"customer_id\"")
                && reason.contains("could collide with another key"),
            "{reason}"
        );
    }
    assert!(
        got[2]
            .1
            .contains("dependent key \"line_no\", field \"lines[].line_no\" (element 1)")
            && got[2].1.contains("could collide"),
        "{}",
        got[2].1
    );
    assert_eq!(
        ids(&client, "SELECT customer_id FROM raw_vault.hub_customer").await,
        ["C1"]
    );
}

/// The safety net on its own: a trigger refuses one chosen customer, something no
/// check before writing knows about.
const SABOTAGE: &str = "
    CREATE FUNCTION raw_vault.sabotage() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.customer_id = 'C_POISON' THEN
            RAISE EXCEPTION 'sabotage: customer % refused', NEW.customer_id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER sabotage BEFORE INSERT ON raw_vault.hub_customer
        FOR EACH ROW EXECUTE FUNCTION raw_vault.sabotage();";

#[tokio::test]
async fn a_batch_the_database_refuses_quarantines_only_the_events_responsible() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client.batch_execute(SABOTAGE).await.expect("sabotage");
    let mut log: Vec<NewEvent> = (0..60)
        .map(|i| registered(&format!("e{i:02}"), &format!("C{i:02}")))
        .collect();
    log[23] = registered("e23", "C_POISON");
    // a later event of the same customer is refused too: it would create the key
    log[41] = ev(
        "e41",
        "customer_updated",
        json!({"customer_id": "C_POISON", "city": "Oslo"}),
    );
    append(&client, &log).await;

    let loader = builtin_loader(&client, 16).await;
    let summary = load_all_with(&mut client, &loader).await;
    assert_eq!(summary.events, 60);
    assert_eq!(summary.rejected, 2);
    let got = quarantined(&client).await;
    let rejected: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(rejected, ["e23", "e41"], "{got:?}");
    assert!(
        got[0]
            .1
            .contains("sabotage: customer C_POISON refused (SQLSTATE 23514)"),
        "{}",
        got[0].1
    );
    let customers: i64 = client
        .query_one("SELECT count(*) FROM raw_vault.hub_customer", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        customers, 58,
        "every other event of the refused batches loaded"
    );
    // no retry storm: the checkpoint is past the poison, the next run has nothing to do
    assert_eq!(loader.run(&mut client).await.expect("load").events, 0);

    // a rebuild makes the same decisions, in any batch size
    let before = vault_checksums(&client).await;
    let mut loader = loader;
    loader.batch_size = 7;
    load::rebuild(&mut client, &loader).await.expect("rebuild");
    assert_eq!(vault_checksums(&client).await, before);
    assert_eq!(quarantined(&client).await, got);
}

#[tokio::test]
async fn a_failure_that_is_not_the_data_still_stops_the_batch() {
    // the net is for data errors only: a broken vault table fails the load as before,
    // and nothing is quarantined or skipped
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(&client, &[registered("e1", "C1")]).await;
    client
        .batch_execute(
            "CREATE FUNCTION raw_vault.broken() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'disk on fire' USING ERRCODE = 'XX000'; END $$;
             CREATE TRIGGER broken BEFORE INSERT ON raw_vault.hub_customer
                 FOR EACH ROW EXECUTE FUNCTION raw_vault.broken();",
        )
        .await
        .expect("break");
    let loader = builtin_loader(&client, 50_000).await;
    let err = loader.run(&mut client).await.expect_err("load must fail");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert!(quarantined(&client).await.is_empty());
    let at = events::load_checkpoint(&client, load::CONSUMER)
        .await
        .expect("checkpoint");
    assert_eq!(at, events::Checkpoint::START);
}
