//! Hostile input, file side (issue #8): every bad row, line or mapping is answered
//! with an error naming where and what, and the good input around it is kept.
//! Everything goes through the real ingest and load code into a fresh database.

use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::load::{LoadError, Loader};
use dvault::mapping::Mappings;
use tokio_postgres::Client;

use crate::harness::{TestDb, load_all};
use crate::ingest::{rejected, tempdir, write};

fn customers() -> IngestOptions {
    IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        batch_size: 2,
        ..IngestOptions::default()
    }
}

/// `(customer_id, first_name)` of every stored event, in log order.
async fn stored(client: &Client) -> Vec<(String, Option<String>)> {
    client
        .query(
            "SELECT payload->>'customer_id', payload->>'first_name' FROM event_log.events ORDER BY seq",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn pairs(rows: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    rows.iter()
        .map(|(id, name)| (id.to_string(), Some(name.to_string())))
        .collect()
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Assert the rejections are exactly these lines, each reason containing its text.
fn assert_rejected(got: &[(i64, String, String)], want: &[(i64, &str)]) {
    let lines: Vec<i64> = got.iter().map(|r| r.0).collect();
    let want_lines: Vec<i64> = want.iter().map(|w| w.0).collect();
    assert_eq!(lines, want_lines, "rejected lines: {got:#?}");
    for ((line, reason, _), (_, text)) in got.iter().zip(want) {
        assert!(
            reason.contains(text),
            "line {line}: {reason:?} lacks {text:?}"
        );
    }
}

#[tokio::test]
async fn csv_line_endings_bom_quotes_ragged_rows_nul_and_bad_utf8() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let file = write(
        &dir,
        "customers.csv",
        b"\xef\xbb\xbfcustomer_id,first_name,signup_date\r\n\
          C01,Ann,2024-01-01\r\
          C02,\"Bob \"\"the\"\" builder\",2024-01-02\n\
          C03,\"Cy \"the\" sly\",2024-01-03\n\
          C04,Dee,2024-01-04\r\n\
          C05,too few\n\
          C06,Eve,2024-01-06,extra\n\
          C07,\"Fay,2024-01-07\n\
          C08,Gus,2024-01-08\n\
          C09,\"multi\nline\",2024-01-09\n\
          C10,Nul\0Byte,2024-01-10\n\
          C11,\xff\xfe,2024-01-11\n\
          \n\
          \r\n\
          C12,Hal,2024-01-12",
    );
    let summary = ingest_file(&mut client, &file, &customers())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (6, 6), "{summary}");
    assert_eq!(
        stored(&client).await,
        pairs(&[
            ("C01", "Ann"),
            ("C02", "Bob \"the\" builder"),
            ("C04", "Dee"),
            ("C08", "Gus"),
            ("C09", "multi\nline"),
            ("C12", "Hal"),
        ])
    );
    let bad = rejected(&client).await;
    assert_rejected(
        &bad,
        &[
            (4, "column 2: a quote inside a quoted field must be doubled"),
            (6, "wrong number of columns: expected 3, found 2"),
            (7, "wrong number of columns: expected 3, found 4"),
            (8, "column 2: a quote inside a quoted field must be doubled"),
            (12, "column \"first_name\" contains a NUL byte"),
            (13, "column \"first_name\" is not valid UTF-8"),
        ],
    );
    // the raw text of each refused line, and only that line
    assert_eq!(bad[0].2, "C03,\"Cy \"the\" sly\",2024-01-03");
    assert_eq!(bad[3].2, "C07,\"Fay,2024-01-07");
    assert_eq!(bad[4].2, "C10,Nul\\0Byte,2024-01-10");
}

#[tokio::test]
async fn csv_an_unclosed_quote_costs_one_line_not_the_rest_of_the_file() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let file = write(
        &dir,
        "unclosed.csv",
        b"customer_id,first_name,signup_date\n\
          C1,Ann,2024-01-01\n\
          C2,\"Bob,2024-01-02\n\
          C3,Cy,2024-01-03\n\
          C4,Dee,2024-01-04\n",
    );
    let summary = ingest_file(&mut client, &file, &customers())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (3, 1), "{summary}");
    assert_eq!(
        stored(&client).await,
        pairs(&[("C1", "Ann"), ("C3", "Cy"), ("C4", "Dee")])
    );
    let bad = rejected(&client).await;
    assert_rejected(
        &bad,
        &[(
            3,
            "column 2: the quoted field opened on this line is never closed",
        )],
    );
    assert_eq!(bad[0].2, "C2,\"Bob,2024-01-02");
}

#[tokio::test]
async fn csv_a_10_mb_field_is_kept_whole() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    // quoted, with commas, doubled quotes and line breaks inside
    let chunk = "lorem, \"\"ipsum\"\"\r\n";
    let big = chunk.repeat(10 * 1024 * 1024 / chunk.len() + 1);
    let value_len = big.replace("\"\"", "\"").len() as i32;
    let mut bytes = b"customer_id,first_name,signup_date\nC1,Ann,2024-01-01\nC2,\"".to_vec();
    bytes.extend_from_slice(big.as_bytes());
    bytes.extend_from_slice(b"\",2024-01-02\nC3,Cy,2024-01-03\n");
    // the same field unquoted with a NUL byte: refused, and the row after it kept
    bytes.extend_from_slice(b"C4,");
    bytes.extend_from_slice("x".repeat(10 * 1024 * 1024).as_bytes());
    bytes.extend_from_slice(b"\0,2024-01-04\nC5,Eve,2024-01-05\n");
    let file = write(&dir, "big.csv", &bytes);
    let summary = ingest_file(&mut client, &file, &customers())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (4, 1), "{summary}");
    let len: i32 = client
        .query_one(
            "SELECT length(payload->>'first_name') FROM event_log.events
              WHERE payload->>'customer_id' = 'C2'",
            &[],
        )
        .await
        .expect("big field")
        .get(0);
    assert_eq!(len, value_len);
    let ids: Vec<String> = stored(&client).await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, ["C1", "C2", "C3", "C5"]);
    let line_of_c4 = 5 + big.matches("\r\n").count() as i64;
    assert_rejected(
        &rejected(&client).await,
        &[(line_of_c4, "column \"first_name\" contains a NUL byte")],
    );
}

#[tokio::test]
async fn csv_whole_file_problems_stop_the_file_and_name_it() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let cases: [(&str, &[u8], &str); 6] = [
        ("empty.csv", b"", "the file is empty"),
        ("bom.csv", b"\xef\xbb\xbf", "the file is empty"),
        ("blank.csv", b"\r\n\n\r", "the file is empty"),
        (
            "dup.csv",
            b"customer_id,signup_date,customer_id\nC1,2024-01-01,C1\n",
            "line 1: header names \"customer_id\" twice (columns 1 and 3)",
        ),
        (
            "nul.csv",
            b"customer_id,first\0name,signup_date\nC1,Ann,2024-01-01\n",
            "line 1: header column 2 contains a NUL byte",
        ),
        (
            "quote.csv",
            b"customer_id,\"first_name,signup_date\nC1,Ann,2024-01-01\n",
            "line 1: the header: column 2: the quoted field opened on this line is never closed",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = write(&dir, name, bytes);
        let err = ingest_file(&mut client, &file, &customers())
            .await
            .expect_err(name)
            .to_string();
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
    // a header and nothing else is a file with no rows, not an error
    let file = write(
        &dir,
        "header.csv",
        b"customer_id,first_name,signup_date\r\n",
    );
    let summary = ingest_file(&mut client, &file, &customers())
        .await
        .expect("header only");
    assert_eq!((summary.inserted, summary.rejected), (0, 0));
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.rejected").await,
        0
    );
}

fn event(ty: &str, id: &str, data: &str) -> String {
    format!(r#"{{"specversion":"1.0","type":"{ty}","source":"s","id":"{id}","data":{data}}}"#)
}

#[tokio::test]
async fn ndjson_hostile_lines_are_quarantined_and_huge_numbers_survive_the_loader() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let deep = format!(
        r#"{{"specversion":"1.0","type":"customer_registered","source":"s","id":"deep","data":{{"customer_id":"D","x":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let lines: [&str; 17] = [
        &event(
            "customer_registered",
            "1",
            r#"{"customer_id":"C1","first_name":"Ann"}"#,
        ),
        r#"{"specversion":"1.0","type":"customer_registered","source":"s","id":"2","data":{"customer_id":"C2""#,
        &deep,
        &event(
            "product_listed",
            "4",
            r#"{"product_id":"P1","price":9.99,"weight":1e400,"serial":123456789012345678901234567890}"#,
        ),
        &event(
            "product_listed",
            "5",
            r#"{"product_id":"P2","price":1e400}"#,
        ),
        &event(
            "customer_registered",
            "6",
            r#"{"customer_id":123456789012345678901234567890}"#,
        ),
        r#"{"specversion":1.0,"type":"t","source":"s","data":{}}"#,
        r#"{"specversion":"1.0","type":["t"],"source":"s","data":{}}"#,
        r#"{"specversion":"1.0","type":"t","source":"s","time":20240101,"data":{}}"#,
        r#"{"specversion":"1.0","type":"t","source":"s","data":null}"#,
        r#"{"specversion":"1.0","type":"t","source":"s","id":5,"data":{}}"#,
        r#"{"specversion":"1.0","type":"t","source":{},"data":{}}"#,
        &event("customer_teleported", "13", r#"{"customer_id":"C1"}"#),
        "  \t ",
        "",
        &event("customer_registered", "16", r#"{"customer_id":"C3"}"#),
        &event("customer_registered", "17", r#"{"customer_id":"C4"}"#),
    ];
    // every line ending, and the last line without one
    let endings = ["\n", "\r\n", "\r"];
    let mut body = String::new();
    for (i, line) in lines.iter().enumerate() {
        body.push_str(line);
        if i + 1 < lines.len() {
            body.push_str(endings[i % 3]);
        }
    }
    let file = write(&dir, "events.ndjson", body.as_bytes());
    let summary = ingest_file(&mut client, &file, &IngestOptions::default())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (7, 8), "{summary}");
    assert_rejected(
        &rejected(&client).await,
        &[
            (2, "invalid JSON: EOF while parsing"),
            (3, "JSON nested deeper than 64 levels"),
            (7, "attribute \"specversion\" must be a string, got 1.0"),
            (8, "attribute \"type\" must be a string"),
            (9, "attribute \"time\" must be a string, got 20240101"),
            (10, "attribute \"data\" must be a JSON object, got null"),
            (11, "attribute \"id\" must be a string, got 5"),
            (12, "attribute \"source\" must be a string"),
        ],
    );
    let ids: Vec<String> = client
        .query("SELECT event_id FROM event_log.events ORDER BY seq", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["1", "4", "5", "6", "13", "16", "17"]);

    // The loader: an unmapped huge number is harmless, a mapped one is named, a
    // 30-digit key keeps its digits, an unknown type is quarantined.
    let loaded = load_all(&mut client).await;
    assert_eq!((loaded.events, loaded.rejected, loaded.held), (7, 1, 1));
    let at_load: Vec<(String, String)> = client
        .query(
            "SELECT event_type, reason FROM event_log.rejected WHERE stage = 'load' ORDER BY event_seq",
            &[],
        )
        .await
        .expect("load rejections")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(at_load.len(), 1, "{at_load:#?}");
    assert_eq!(at_load[0].0, "product_listed");
    assert!(
        at_load[0]
            .1
            .contains("column \"price\", field \"price\": \"1e400\" is not a valid numeric(12,2)"),
        "{}",
        at_load[0].1
    );
    let held: Vec<String> = client
        .query("SELECT event_type FROM ops.held_events", &[])
        .await
        .expect("held")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, ["customer_teleported"], "held back, not quarantined");
    let customers: Vec<String> = client
        .query(
            "SELECT customer_id FROM raw_vault.hub_customer ORDER BY customer_id",
            &[],
        )
        .await
        .expect("hub")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        customers,
        ["123456789012345678901234567890", "C1", "C3", "C4"]
    );
    let price: String = client
        .query_one(
            "SELECT s.price::text FROM raw_vault.sat_product_details s
               JOIN raw_vault.hub_product h USING (hk_product) WHERE h.product_id = 'P1'",
            &[],
        )
        .await
        .expect("P1 loaded")
        .get(0);
    assert_eq!(price, "9.99");
}

#[tokio::test]
async fn the_loader_refuses_deep_payloads_that_bypassed_ingest_without_overflowing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    // Written straight into the log, past ingest's depth check (as an older
    // version, a restore or a hand-made INSERT could). PostgreSQL's own JSON parser
    // takes this depth.
    const DEPTH: usize = 10_000;
    let deep = format!(
        r#"{{"customer_id":"D","x":{}1{}}}"#,
        "[".repeat(DEPTH),
        "]".repeat(DEPTH)
    );
    for (id, payload) in [
        ("a", r#"{"customer_id":"C1"}"#.to_string()),
        ("deep", deep),
        ("b", r#"{"customer_id":"C2"}"#.to_string()),
    ] {
        client
            .execute(
                "INSERT INTO event_log.events (event_id, event_type, record_source, occurred_at, payload)
                 VALUES ($1, 'customer_registered', 'crm', now(), $2::text::json)",
                &[&id, &payload],
            )
            .await
            .expect("insert");
    }
    let loaded = load_all(&mut client).await;
    assert_eq!((loaded.events, loaded.rejected), (3, 1));
    let reason: String = client
        .query_one(
            "SELECT reason FROM event_log.rejected WHERE stage = 'load'",
            &[],
        )
        .await
        .expect("rejection")
        .get(0);
    assert!(
        reason.contains("the payload cannot be read: recursion limit exceeded"),
        "{reason}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        2
    );
}

/// (case, edits to product.toml, the entry named, the problem)
type CatalogCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

/// The built-in product mapping with every `from` replaced by `to`, alone in a
/// directory.
fn product_mapping(dir: &tempdir::Dir, name: &str, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = dvault::mapping::builtin_files()
        .into_iter()
        .find(|(file, _)| file.ends_with("/product.toml"))
        .map(|(_, text)| text)
        .expect("product.toml is built in");
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in product.toml");
        text = text.replace(from, to);
    }
    let sub = dir.path().join(name.replace(' ', "_"));
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(sub.join("product.toml"), text).expect("write");
    sub
}

#[tokio::test]
async fn mapping_typos_name_the_file_and_the_entry() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let dir = tempdir::Dir::new();
    // (case, replace, with, the entry named, the problem)
    let cases = [
        (
            "unknown key",
            "business_key",
            "bussiness_key",
            "line 5",
            "unknown field `bussiness_key`",
        ),
        (
            "misspelled section",
            "[hubs.hub_product]",
            "[hub.hub_product]",
            "line 3",
            "unknown field `hub`",
        ),
        (
            "wrong type",
            r#"business_key = ["product_id"]"#,
            r#"business_key = "product_id""#,
            "line 5",
            "invalid type: string \"product_id\", expected a sequence",
        ),
        (
            "not TOML",
            "[satellites.sat_product_details]",
            "[satellites.sat_product_details",
            "line 7",
            "unclosed table, expected `]`",
        ),
        (
            "unknown column type",
            r#"price = "numeric(12,2)""#,
            r#"price = "money""#,
            "satellite \"sat_product_details\", column \"price\"",
            "unknown type \"money\"",
        ),
        (
            "misspelled parent",
            r#"parent = "hub_product""#,
            r#"parent = "hub_prodcut""#,
            "satellite \"sat_product_details\"",
            "parent \"hub_prodcut\" is neither a hub nor a link (hubs: hub_product; links: none)",
        ),
        (
            "misspelled hub in an event",
            "hubs = { hub_product",
            "hubs = { hub_prodcut",
            "event \"product_listed\"",
            "unknown hub \"hub_prodcut\" (defined hubs: hub_product)",
        ),
        (
            "misspelled column in an event",
            "price = \"price\"",
            "prise = \"price\"",
            "event \"product_listed\"",
            "satellite \"sat_product_details\" has no column \"prise\"",
        ),
        (
            "bad path",
            "price = \"price\"",
            "price = \"prices[]\"",
            "event \"product_listed\"",
            "bad field path \"prices[]\"",
        ),
        (
            "path with a hole",
            "brand = \"brand\"",
            "brand = \"brand..name\"",
            "event \"product_listed\"",
            "bad field path \"brand..name\"",
        ),
    ];
    for (case, from, to, entry, problem) in cases {
        let sub = product_mapping(&dir, case, &[(from, to)]);
        let file = sub.join("product.toml").display().to_string();
        let err = Mappings::from_dir(&sub).expect_err(case).to_string();
        assert!(
            err.contains(&format!("{file}: {entry}")) && err.contains(problem),
            "{case}: {err}"
        );
    }

    // Typos only the live catalog can tell: checked before the loader reads a thing.
    let catalog_cases: [CatalogCase; 4] = [
        (
            "misspelled table",
            &[("sat_product_details", "sat_product_detail")],
            "satellite \"sat_product_detail\"",
            "table raw_vault.sat_product_detail does not exist",
        ),
        (
            "misspelled column",
            &[("brand = \"", "brnd = \"")],
            "satellite \"sat_product_details\"",
            "column \"brnd\" does not exist in raw_vault.sat_product_details",
        ),
        (
            "wrong column type",
            &[("numeric(12,2)", "numeric(10,2)")],
            "satellite \"sat_product_details\"",
            "is numeric(12,2), the mapping says numeric(10,2)",
        ),
        (
            "misspelled hash key",
            &[("hk_product", "hk_prodcut")],
            "hub \"hub_product\"",
            "column \"hk_prodcut\" does not exist in raw_vault.hub_product",
        ),
    ];
    for (case, edits, entry, problem) in catalog_cases {
        let sub = product_mapping(&dir, case, edits);
        let file = sub.join("product.toml").display().to_string();
        let mappings = Mappings::from_dir(&sub).unwrap_or_else(|e| panic!("{case}: {e}"));
        match Loader::new(&client, mappings).await {
            Err(LoadError::Mappings(e)) => {
                let err = e.to_string();
                assert!(
                    err.contains(&format!("{file}: {entry}")) && err.contains(problem),
                    "{case}: {err}"
                );
            }
            Err(other) => panic!("{case}: {other}"),
            Ok(_) => panic!("{case}: the loader took the mapping"),
        }
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = Mappings::from_dir(&empty).expect_err("empty").to_string();
    assert!(err.contains("no *.toml mapping files"), "{err}");
    let err = Mappings::from_dir(&dir.path().join("missing"))
        .expect_err("missing")
        .to_string();
    assert!(err.contains("missing: directory: cannot read"), "{err}");
}

#[tokio::test]
async fn ndjson_escapes_postgres_cannot_read_back_are_refused_at_ingest() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let body = [
        event(
            "customer_registered",
            "1",
            r#"{"customer_id":"C1","first_name":"\ud83d\ude00"}"#,
        ),
        event(
            "customer_registered",
            "2",
            r#"{"customer_id":"C2","x":"\ud800"}"#,
        ),
        event(
            "customer_registered",
            "3",
            r#"{"customer_id":"C3","x":"\u0000"}"#,
        ),
        event(
            "customer_registered",
            "4",
            r#"{"customer_id":"C4","x":"C:\\u0000"}"#,
        ),
    ]
    .join("\n");
    let file = write(&dir, "escapes.ndjson", body.as_bytes());
    let summary = ingest_file(&mut client, &file, &IngestOptions::default())
        .await
        .expect("ingest");
    assert_eq!((summary.inserted, summary.rejected), (2, 2), "{summary}");
    assert_rejected(
        &rejected(&client).await,
        &[
            (2, "contains \\ud800, half a UTF-16 surrogate pair"),
            (3, "contains a NUL character"),
        ],
    );
    // what was stored, PostgreSQL and the loader read back
    let loaded = load_all(&mut client).await;
    assert_eq!((loaded.events, loaded.rejected), (2, 0));
    assert_eq!(
        stored(&client).await,
        vec![
            ("C1".to_string(), Some("\u{1f600}".to_string())),
            ("C4".to_string(), None)
        ]
    );
}
