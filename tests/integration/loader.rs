use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;

use dvault::events::{self, NewEvent};
use dvault::load::Loader;
use dvault::mapping::Mappings;

use crate::harness::{TestDb, load_all, load_all_with, vault_checksums, wait_visible};

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

fn registered(id: &str, customer: &str, time: &str, city: &str) -> NewEvent {
    ev(
        id,
        "customer_registered",
        time,
        json!({"customer_id": customer, "first_name": "Ann", "last_name": "Lee",
               "email": "ann@example.com", "phone": "555", "city": city,
               "country": "IT", "signup_date": "2024-01-01"}),
    )
}

/// Customers `r{i}`/`C{i}` for `i` in `ids`, registered at `time` in `city`.
fn registered_many(ids: std::ops::Range<usize>, time: &str, city: &str) -> Vec<NewEvent> {
    ids.map(|i| registered(&format!("r{i}"), &format!("C{i}"), time, city))
        .collect()
}

fn moved(id: &str, customer: &str, time: &str, city: &str) -> NewEvent {
    ev(
        id,
        "customer_updated",
        time,
        json!({"customer_id": customer, "city": city}),
    )
}

async fn append(client: &Client, events: &[NewEvent]) {
    events::append(client, events).await.expect("append");
}

/// (customer_id, applied date, city, first_name) of every profile version.
async fn profile_versions(client: &Client) -> Vec<(String, String, String, String)> {
    client
        .query(
            "SELECT h.customer_id, s.applied_dts::date::text, s.city, s.first_name
               FROM raw_vault.sat_customer_profile s JOIN raw_vault.hub_customer h USING (hk_customer)
              ORDER BY 1, s.applied_dts, s.event_seq",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

fn v(c: &str, d: &str, city: &str) -> (String, String, String, String) {
    (c.into(), d.into(), city.into(), "Ann".into())
}

#[tokio::test]
async fn first_load_then_only_new_events_then_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[registered("1", "C1", "2024-01-01T00:00:00Z", "Rome")],
    )
    .await;
    let first = load_all(&mut client).await;
    assert_eq!(first.events, 1);
    assert_eq!(first.rows["hub_customer"], 1);
    assert_eq!(first.rows["sat_customer_profile"], 1);
    assert_eq!(first.rows["sat_customer_contact"], 1);

    append(&client, &[moved("2", "C1", "2024-02-01T00:00:00Z", "Oslo")]).await;
    let second = load_all(&mut client).await;
    assert_eq!(second.events, 1, "only the new event is read");
    assert_eq!(second.rows["hub_customer"], 0);
    assert_eq!(second.rows["sat_customer_profile"], 1);
    assert_eq!(
        second.rows["sat_customer_contact"], 0,
        "contact unchanged: no row"
    );

    let again = load_all(&mut client).await;
    assert_eq!(again.events, 0);
    assert_eq!(again.rows_total(), 0);
    assert_eq!(
        profile_versions(&client).await,
        [v("C1", "2024-01-01", "Rome"), v("C1", "2024-02-01", "Oslo")]
    );
}

#[tokio::test]
async fn scd2_new_rows_no_rows_reversals_and_partial_updates_in_one_batch() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", "C1", "2024-01-01T00:00:00Z", "Rome"),
            moved("2", "C1", "2024-02-01T00:00:00Z", "Rome"), // no change: no row
            moved("3", "C1", "2024-03-01T00:00:00Z", "Oslo"), // B
            moved("4", "C1", "2024-04-01T00:00:00Z", "Rome"), // back to A: kept
            moved("5", "C1", "2024-04-02T00:00:00Z", "Paris"),
            moved("6", "C1", "2024-04-03T00:00:00Z", "Lima"),
        ],
    )
    .await;
    load_all(&mut client).await;
    assert_eq!(
        profile_versions(&client).await,
        [
            v("C1", "2024-01-01", "Rome"),
            v("C1", "2024-03-01", "Oslo"),
            v("C1", "2024-04-01", "Rome"),
            v("C1", "2024-04-02", "Paris"),
            v("C1", "2024-04-03", "Lima"),
        ],
        "first_name carried forward into every partial update"
    );
    let (country, signup): (String, String) = {
        let r = client
            .query_one(
                "SELECT country, signup_date::text FROM raw_vault.sat_customer_profile
                  ORDER BY applied_dts DESC LIMIT 1",
                &[],
            )
            .await
            .expect("latest");
        (r.get(0), r.get(1))
    };
    assert_eq!((country.as_str(), signup.as_str()), ("IT", "2024-01-01"));
}

#[tokio::test]
async fn a_late_event_lands_in_its_place_without_duplicating_its_neighbour() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", "C1", "2024-01-01T00:00:00Z", "Rome"),
            moved("2", "C1", "2024-03-01T00:00:00Z", "Oslo"),
        ],
    )
    .await;
    load_all(&mut client).await;
    append(
        &client,
        &[
            moved("3", "C1", "2024-02-01T00:00:00Z", "Paris"), // late, between the two
            moved("4", "C1", "2024-01-15T00:00:00Z", "Rome"),  // late, repeats its predecessor
            moved("5", "C1", "2024-03-05T00:00:00Z", "Oslo"),  // repeats its predecessor
        ],
    )
    .await;
    let s = load_all(&mut client).await;
    assert_eq!(s.rows["sat_customer_profile"], 1);
    assert_eq!(
        profile_versions(&client).await,
        [
            v("C1", "2024-01-01", "Rome"),
            v("C1", "2024-02-01", "Paris"),
            v("C1", "2024-03-01", "Oslo"),
        ]
    );
}

/// The loader asks each parent's latest version first and the rest only of parents
/// with a version after the batch's rows: one batch holding both kinds must get each
/// parent's right predecessor.
#[tokio::test]
async fn a_batch_of_late_and_in_order_events_finds_each_predecessor() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", "C1", "2024-01-01T00:00:00Z", "Rome"),
            moved("2", "C1", "2024-03-01T00:00:00Z", "Oslo"),
            registered("3", "C2", "2024-01-01T00:00:00Z", "Rome"),
        ],
    )
    .await;
    load_all(&mut client).await;
    append(
        &client,
        &[
            moved("4", "C1", "2024-02-01T00:00:00Z", "Oslo"), // late: before C1's latest
            moved("5", "C2", "2024-02-01T00:00:00Z", "Rome"), // in order, repeats C2's latest
            moved("6", "C2", "2024-04-01T00:00:00Z", "Oslo"), // in order, a change
        ],
    )
    .await;
    let s = load_all(&mut client).await;
    assert_eq!(s.rows["sat_customer_profile"], 2);
    assert_eq!(
        profile_versions(&client).await,
        [
            v("C1", "2024-01-01", "Rome"),
            v("C1", "2024-02-01", "Oslo"),
            v("C1", "2024-03-01", "Oslo"),
            v("C2", "2024-01-01", "Rome"),
            v("C2", "2024-04-01", "Oslo"),
        ]
    );
}

/// A batch of keys as many as the table's rows (a re-sent snapshot) is probed by a
/// plain join once the table has statistics; before, and for small batches, by one
/// index descent per key. Both ways only new keys are written.
#[tokio::test]
async fn a_snapshot_sized_batch_writes_only_its_new_keys() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let first: Vec<_> = (1..=3)
        .map(|i| {
            registered(
                &i.to_string(),
                &format!("C{i}"),
                "2024-01-01T00:00:00Z",
                "Rome",
            )
        })
        .collect();
    append(&client, &first).await;
    load_all(&mut client).await;
    client
        .batch_execute("ANALYZE raw_vault.hub_customer")
        .await
        .expect("analyze");
    let rows: f32 = client
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = 'raw_vault.hub_customer'::regclass",
            &[],
        )
        .await
        .expect("reltuples")
        .get(0);
    assert_eq!(rows, 3.0, "the probe below must see the table's size");
    let snapshot: Vec<_> = (1..=4)
        .map(|i| {
            moved(
                &(10 + i).to_string(),
                &format!("C{i}"),
                "2024-02-01T00:00:00Z",
                "Rome",
            )
        })
        .collect();
    append(&client, &snapshot).await;
    let s = load_all(&mut client).await;
    assert_eq!(s.rows["hub_customer"], 1, "only C4 is new");
    assert_eq!(count(&client, "raw_vault.hub_customer").await, 4);
}

#[tokio::test]
async fn business_keys_are_trimmed_and_case_folded_into_one_hub_row() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", " c001 ", "2024-01-01T00:00:00Z", "Rome"),
            moved("2", "C001", "2024-02-01T00:00:00Z", "Oslo"),
        ],
    )
    .await;
    load_all(&mut client).await;
    let hubs = client
        .query(
            "SELECT customer_id, hk_customer FROM raw_vault.hub_customer",
            &[],
        )
        .await
        .expect("hub");
    assert_eq!(hubs.len(), 1);
    assert_eq!(
        hubs[0].get::<_, String>(0),
        "c001",
        "the first spelling is kept, trimmed"
    );
    let hk: Vec<u8> = hubs[0].get(1);
    assert_eq!(hk, dvault::hash::hash_key("C001").expect("key").to_vec());
    assert_eq!(count(&client, "raw_vault.sat_customer_profile").await, 2);
}

#[tokio::test]
async fn a_bad_value_is_quarantined_while_the_good_events_of_its_batch_load() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", "C1", "2024-01-01T00:00:00Z", "Rome"),
            ev("2", "order_placed", "2024-01-02T00:00:00Z", json!({
                "order_id": "O1", "customer_id": "C1", "ordered_at": "2024-01-02T00:00:00Z",
                "channel": "web", "status": "placed",
                "lines": [{"line_no": 1, "product_id": "P1", "quantity": "three", "unit_price": 1, "discount": 0}]})),
            ev("3", "customer_registered", "2024-01-03T00:00:00Z", json!({"customer_id": "C2", "signup_date": "2024-13-45"})),
            ev("4", "customer_updated", "2024-01-03T00:00:00Z", json!({"city": "Nowhere"})),
            ev("5", "no_such_type", "2024-01-03T00:00:00Z", json!({})),
            registered("6", "C3", "2024-01-04T00:00:00Z", "Oslo"),
        ],
    )
    .await;
    let s = load_all(&mut client).await;
    assert_eq!((s.events, s.rejected, s.held), (6, 3, 1));
    assert_eq!(count(&client, "raw_vault.hub_customer").await, 2);
    assert_eq!(
        count(&client, "raw_vault.hub_order").await,
        0,
        "the bad order left nothing behind"
    );
    let reasons: Vec<String> = client
        .query(
            "SELECT reason FROM event_log.rejected WHERE stage = 'load' ORDER BY event_seq",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        reasons[0],
        "vault/mappings/order.toml, event \"order_placed\", satellite \"sat_order_line\", column \"quantity\", field \"lines[].quantity\" (element 1): \"three\" is not a valid integer"
    );
    assert_eq!(
        reasons[1],
        "vault/mappings/customer.toml, event \"customer_registered\", satellite \"sat_customer_profile\", column \"signup_date\", field \"signup_date\": \"2024-13-45\" is not a valid date"
    );
    assert_eq!(
        reasons[2],
        "vault/mappings/customer.toml, event \"customer_updated\", hub \"hub_customer\", field \"customer_id\": the business key is missing or empty"
    );
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    // an event of a type no mapping knows is held back, not quarantined
    let held: Vec<String> = client
        .query("SELECT event_type FROM ops.held_events", &[])
        .await
        .expect("held")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, ["no_such_type"]);
    // the checkpoint moved past them: nothing is retried
    assert_eq!(load_all(&mut client).await.events, 0);
}

#[tokio::test]
async fn order_lines_use_the_line_number_as_dependent_child_key() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let order = |id: &str, time: &str, qty: i64| {
        ev(
            id,
            "order_placed",
            time,
            json!({
            "order_id": "O1", "customer_id": "C1", "ordered_at": time, "channel": "web", "status": "placed",
            "lines": [
                {"line_no": 1, "product_id": "P1", "quantity": qty, "unit_price": "10", "discount": 0},
                {"line_no": 2, "product_id": "P1", "quantity": 1, "unit_price": 10.0, "discount": "0.00"},
            ]}),
        )
    };
    append(&client, &[order("1", "2024-01-02T00:00:00Z", 2)]).await;
    load_all(&mut client).await;
    assert_eq!(count(&client, "raw_vault.hub_product").await, 1);
    assert_eq!(
        count(&client, "raw_vault.link_order_product").await,
        2,
        "same product twice: two lines"
    );
    assert_eq!(count(&client, "raw_vault.link_order_customer").await, 1);
    let hk: Vec<u8> = client
        .query_one(
            "SELECT hk_order_product FROM raw_vault.link_order_product WHERE line_no = '2'",
            &[],
        )
        .await
        .expect("line 2")
        .get(0);
    assert_eq!(
        hk,
        dvault::hash::hash_key_multi([Some("O1"), Some("P1"), Some("2")])
            .expect("key")
            .to_vec()
    );
    // The same order again with one quantity changed: one new line version.
    append(&client, &[order("2", "2024-01-03T00:00:00Z", 3)]).await;
    let s = load_all(&mut client).await;
    assert_eq!(s.rows["sat_order_line"], 1);
    assert_eq!(s.rows["link_order_product"], 0);
    let prices: Vec<String> = client
        .query(
            "SELECT unit_price::text || '/' || discount::text FROM raw_vault.sat_order_line",
            &[],
        )
        .await
        .expect("prices")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(prices.iter().all(|p| p == "10.00/0.00"), "{prices:?}");
}

#[tokio::test]
async fn rust_hashes_equal_postgres_sha256_of_upper_trim() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let corpus = [
        "C001",
        " c001 ",
        "josé",
        "Straße",
        "ÆØÅ æøå",
        "İstanbul",
        "ǆemal",
        "tab\there",
        "new\nline",
        "emoji 😀🎉",
        "日本語",
        "Ελληνικά ς",
        "ﬁ ligature",
        "  ",
        "",
        "0",
        "10.00",
        "2024-01-20 12:00:00+00",
        "a||b",
        "^^",
        "Ωmega µ",
        "ŉ",
    ];
    for text in corpus {
        let pg: Option<Vec<u8>> = client
            .query_one(
                "SELECT sha256(convert_to(upper(nullif(trim(both ' ' from $1::text), '')), 'UTF8'))",
                &[&text],
            )
            .await
            .expect("sha256")
            .get(0);
        let ours = dvault::hash::hash_key(text).ok().map(|h| h.to_vec());
        assert_eq!(ours, pg, "hash of {text:?}");
    }
    // multi-part keys and hashdiffs: AutomateDV's concat_ws('||', coalesce(..., '^^'))
    let parts = [Some("o1"), None, Some(" ß ")];
    let pg: Vec<u8> = client
        .query_one(
            "SELECT sha256(convert_to(concat_ws('||',
                coalesce(nullif(upper(trim(both ' ' from $1::text)), ''), '^^'),
                coalesce(nullif(upper(trim(both ' ' from $2::text)), ''), '^^'),
                coalesce(nullif(upper(trim(both ' ' from $3::text)), ''), '^^')), 'UTF8'))",
            &[&parts[0], &parts[1], &parts[2]],
        )
        .await
        .expect("sha256")
        .get(0);
    assert_eq!(
        dvault::hash::hash_key_multi(parts).expect("key").to_vec(),
        pg
    );
}

#[tokio::test]
async fn typed_values_in_any_spelling_give_one_hashdiff() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let listed = |id: &str, time: &str, price: Value| {
        ev(
            id,
            "product_listed",
            time,
            json!({"product_id": "P1", "name": "Mug", "category": "Home", "brand": "Acme", "price": price}),
        )
    };
    append(
        &client,
        &[
            listed("1", "2024-01-01T00:00:00Z", json!(10)),
            listed("2", "2024-01-02T00:00:00Z", json!(10.0)),
            listed("3", "2024-01-03T00:00:00Z", json!("10.00")),
            listed("4", "2024-01-04T00:00:00Z", json!(" 10.001 ")),
        ],
    )
    .await;
    load_all(&mut client).await;
    assert_eq!(count(&client, "raw_vault.sat_product_details").await, 1);
    // and the hashdiff is PostgreSQL's over the canonical text, columns alphabetical
    let same: bool = client
        .query_one(
            "SELECT hashdiff = sha256(convert_to(concat_ws('||',
                    upper(brand), upper(category), upper(name), upper(price::text)), 'UTF8'))
               FROM raw_vault.sat_product_details",
            &[],
        )
        .await
        .expect("hashdiff")
        .get(0);
    assert!(same);
}

#[tokio::test]
async fn rebuilds_are_byte_identical_and_equal_the_incremental_load() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    append(
        &client,
        &[
            registered("1", "C1", "2024-01-01T00:00:00Z", "Rome"),
            registered("2", "C2", "2024-01-02T00:00:00Z", "Oslo"),
        ],
    )
    .await;
    load_all(&mut client).await;
    append(
        &client,
        &[
            moved("3", "C1", "2024-01-05T00:00:00Z", "Lima"),
            moved("4", "C2", "2023-12-01T00:00:00Z", "Kyiv"),
        ],
    )
    .await;
    load_all(&mut client).await;
    let incremental = vault_checksums(&client).await;
    let loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    dvault::load::rebuild(&mut client, &loader)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &loader).await;
    let first = vault_checksums(&client).await;
    dvault::load::rebuild(&mut client, &loader)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &loader).await;
    let second = vault_checksums(&client).await;
    assert_eq!(first, second);
    assert_eq!(incremental, first);
    assert_ne!(first["sat_customer_profile"], "empty");
}

async fn catalog_problems(client: &Client, edit: impl Fn(&str, &str) -> String) -> Vec<String> {
    let files: Vec<(String, String)> = dvault::mapping::builtin_files()
        .into_iter()
        .map(|(n, t)| {
            let t = edit(&n, &t);
            (n, t)
        })
        .collect();
    let m = Mappings::parse(&files).expect("structurally valid");
    match Loader::new(client, m).await {
        Ok(_) => panic!("the loader accepted mappings that do not fit the catalog"),
        Err(dvault::load::LoadError::Mappings(e)) => e.0.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn mappings_that_do_not_fit_the_catalog_fail_fast_with_the_fix() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // a missing table (one the Customer 360 business vault reads: unregistered
    // here, or the mappings would name it missing before the catalog could)
    let p = catalog_problems(&client, |n, t| {
        if n.ends_with("product.toml") {
            t.replace("sat_product_details", "sat_product_detail")
        } else {
            t.replace("business_vault = \"customer_360\"", "")
        }
    })
    .await;
    assert_eq!(
        p,
        [
            "vault/mappings/product.toml: satellite \"sat_product_detail\": table raw_vault.sat_product_detail does not exist; create it (for the built-in model: a migration vault/schema/V<n>__<what>.sql) or fix the name"
        ]
    );
    // a missing column
    let p = catalog_problems(&client, |n, t| {
        if n.ends_with("order.toml") {
            t.replace(
                "channel = \"text\"",
                "channel = \"text\", coupon = \"text\"",
            )
        } else {
            t.to_string()
        }
    })
    .await;
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("vault/mappings/order.toml: satellite \"sat_order_details\": column \"coupon\" does not exist in raw_vault.sat_order_details (its columns: applied_dts, channel,"),
        "{}",
        p[0]
    );
    // a type that does not fit
    let p = catalog_problems(&client, |n, t| {
        if n.ends_with("product.toml") {
            t.replace("price = \"numeric(12,2)\"", "price = \"numeric(10,2)\"")
        } else {
            t.to_string()
        }
    })
    .await;
    assert_eq!(
        p,
        [
            "vault/mappings/product.toml: satellite \"sat_product_details\": column \"price\" of raw_vault.sat_product_details is numeric(12,2), the mapping says numeric(10,2); make them agree"
        ]
    );
}

#[tokio::test]
async fn a_new_event_type_and_satellite_need_only_sql_and_toml() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE raw_vault.sat_customer_loyalty (
                hk_customer bytea NOT NULL, applied_dts timestamptz NOT NULL, event_seq bigint NOT NULL,
                load_dts timestamptz NOT NULL, hashdiff bytea NOT NULL, record_source text NOT NULL,
                tier text, points integer, PRIMARY KEY (hk_customer, applied_dts, event_seq))",
        )
        .await
        .expect("ddl");
    let mut files = dvault::mapping::builtin_files();
    files.push((
        "loyalty.toml".into(),
        r#"
[satellites.sat_customer_loyalty]
parent = "hub_customer"
columns = { tier = "text", points = "integer" }

[[events]]
type = "loyalty_changed"
hubs = { hub_customer = ["member.id"] }
satellites.sat_customer_loyalty = { tier = "member.tier", points = "member.points" }
"#
        .into(),
    ));
    let loader = Loader::new(&client, Mappings::parse(&files).expect("valid"))
        .await
        .expect("fits the catalog");
    append(
        &client,
        &[ev(
            "1",
            "loyalty_changed",
            "2024-01-01T00:00:00Z",
            json!({"member": {"id": "C9", "tier": "gold", "points": "120"}}),
        )],
    )
    .await;
    load_all_with(&mut client, &loader).await;
    let row = client
        .query_one(
            "SELECT h.customer_id, s.tier, s.points FROM raw_vault.sat_customer_loyalty s JOIN raw_vault.hub_customer h USING (hk_customer)",
            &[],
        )
        .await
        .expect("loyalty row");
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2)
        ),
        ("C9".to_string(), "gold".to_string(), 120)
    );
}

#[tokio::test]
async fn a_failed_load_names_the_servers_message_on_stderr_and_in_the_runs() {
    let db = TestDb::new().await;
    let client = db.client().await;
    append(
        &client,
        &[registered("e1", "C1", "2026-01-01T00:00:00Z", "Rome")],
    )
    .await;
    client
        .batch_execute(
            "CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'no hubs today' USING DETAIL = 'a test trigger'; END$$;
             CREATE TRIGGER boom BEFORE INSERT ON raw_vault.hub_customer
               FOR EACH STATEMENT EXECUTE FUNCTION public.boom();",
        )
        .await
        .expect("trigger");
    wait_visible(&client, 1).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvault"))
        .arg("load")
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run dvault load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // what the loader was doing (a lookup or the COPY into the hub), then the server's
    // message with its detail
    let error = stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.starts_with("database error while ")
            && error.ends_with(": no hubs today (a test trigger)"),
        "{stderr}"
    );
    assert!(!stderr.contains("db error"), "{stderr}");
    let recorded: String = client
        .query_one(
            "SELECT error FROM ops.load_runs WHERE status = 'failed'",
            &[],
        )
        .await
        .expect("the failed run")
        .get(0);
    assert_eq!(recorded, error);
}

/// A run analyzes the log before reading it when the log is past the same rule: after
/// an ingest the planner would otherwise read every batch with a sort of every event
/// after the checkpoint. Asked again with nothing appended, it does not analyze.
#[tokio::test]
async fn a_run_analyzes_the_log_before_reading_it_when_it_grew_by_more_than_a_tenth() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let analyses = |row: tokio_postgres::Row| row.get::<_, i64>(0);
    let count = "SELECT analyze_count FROM pg_stat_user_tables
                  WHERE schemaname = 'event_log' AND relname = 'events'";
    let customers: Vec<NewEvent> = registered_many(0..20, "2024-01-01T00:00:00Z", "Rome");
    append(&client, &customers).await;
    assert_eq!(
        analyses(client.query_one(count, &[]).await.expect("stats")),
        0
    );
    load_all(&mut client).await;
    assert_eq!(
        analyses(client.query_one(count, &[]).await.expect("stats")),
        1,
        "the run analyzed the log it had not seen analyzed"
    );
    assert!(
        !dvault::ops::analyze::log_before_run(&client)
            .await
            .expect("analyze"),
        "nothing appended since"
    );
    append(
        &client,
        &[registered("r20", "C20", "2024-01-02T00:00:00Z", "Oslo")],
    )
    .await;
    assert!(
        !dvault::ops::analyze::log_before_run(&client)
            .await
            .expect("analyze"),
        "one event in 21 is not a tenth"
    );
    let more: Vec<NewEvent> = registered_many(21..30, "2024-01-02T00:00:00Z", "Oslo");
    append(&client, &more).await;
    assert!(
        dvault::ops::analyze::log_before_run(&client)
            .await
            .expect("analyze"),
        "ten more events since the last analyze of 20"
    );
    assert_eq!(
        analyses(client.query_one(count, &[]).await.expect("stats")),
        2
    );
}

/// One ANALYZE policy after every run (`ops::analyze`): after a first load every
/// table of the vault and the business vault it filled is analyzed, right
/// away; asked again with nothing changed, nothing is; a change of more than a tenth
/// of a table's rows brings that table back.
#[tokio::test]
async fn a_run_analyzes_the_tables_it_changed_by_more_than_a_tenth() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let customers: Vec<NewEvent> = registered_many(0..20, "2024-01-01T00:00:00Z", "Rome");
    append(&client, &customers).await;
    load_all(&mut client).await;
    // on two connections (the second to the same database)
    let first = dvault::ops::analyze::after_run(&client, Some(&db.url), "raw_vault", &[])
        .await
        .expect("analyze");
    for table in [
        "raw_vault.hub_customer",
        "raw_vault.sat_customer_profile",
        "business_vault.customer_360_current",
    ] {
        assert!(first.iter().any(|t| t == table), "{table} not in {first:?}");
    }
    // the run analyzed the log before reading it, and the log did not change since
    assert!(!first.iter().any(|t| t == "event_log.events"), "{first:?}");
    let analyzed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_user_tables
              WHERE relname = 'hub_customer' AND last_analyze IS NOT NULL",
            &[],
        )
        .await
        .expect("stats")
        .get(0);
    assert_eq!(analyzed, 1);
    assert_eq!(
        dvault::ops::analyze::after_run(&client, None, "raw_vault", &[])
            .await
            .expect("analyze"),
        Vec::<String>::new(),
        "nothing changed since"
    );
    // five more customers: a quarter of hub_customer's rows
    let more: Vec<NewEvent> = registered_many(20..25, "2024-01-02T00:00:00Z", "Oslo");
    append(&client, &more).await;
    load_all(&mut client).await;
    let again = dvault::ops::analyze::after_run(&client, None, "raw_vault", &[])
        .await
        .expect("analyze");
    assert!(
        again.iter().any(|t| t == "raw_vault.hub_customer"),
        "{again:?}"
    );
    assert!(
        !again.iter().any(|t| t.starts_with("raw_vault.hub_order")),
        "no order was loaded: {again:?}"
    );
}
