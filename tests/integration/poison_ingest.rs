//! Poison at the append (issue 13, sections 2 and 3): one oversized attribute, one
//! event the database refuses, one business time far outside any calendar must cost
//! only itself, through `dvault ingest` (`ingest_file`) and through `POST /events`
//! over a real socket; and a series answer stays bounded.

use serde_json::{Value, json};

use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::events::limits::TimeRange;
use dvault::events::{self, NewEvent};

use crate::api::{TestApp, WRITE_TOKEN, assert_problem, expect_json, keyed_config, open_config};
use crate::harness::{self, TestDb};
use crate::ingest::{tempdir, write};

/// `n` random characters from 62 letters and digits: text PostgreSQL cannot
/// compress, so an index entry holding it is really that long.
fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| ALPHABET[(rand::random::<u64>() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn cloud_event(id: &str, source: &str, ty: &str, n: usize) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": source, "type": ty,
        "time": "2024-05-01T12:00:00Z",
        "data": {"customer_id": format!("C{n}"), "first_name": "Ann"}
    })
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// (line, reason) of every quarantined row of `file`, by line.
async fn quarantined(client: &tokio_postgres::Client, file: &str) -> Vec<(i64, String)> {
    client
        .query(
            "SELECT line, reason FROM event_log.rejected
              WHERE stage = 'ingest' AND file = $1 ORDER BY line, id",
            &[&file],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn an_oversized_attribute_in_a_file_costs_only_its_own_line() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let long_id = random_text(3_000);
    let long_source = random_text(3_000);
    let long_type = random_text(300);
    let events: Vec<Value> = (1..=1_000)
        .map(|n| match n {
            400 => cloud_event(&long_id, "crm", "customer_registered", n),
            600 => cloud_event(&format!("e{n}"), &long_source, "customer_registered", n),
            800 => cloud_event(&format!("e{n}"), "crm", &long_type, n),
            _ => cloud_event(&format!("e{n}"), "crm", "customer_registered", n),
        })
        .collect();
    let dir = tempdir::Dir::new();
    let path = write(&dir, "long.ndjson", ndjson(&events).as_bytes());
    let opts = IngestOptions {
        batch_size: 250,
        ..IngestOptions::default()
    };
    let summary = ingest_file(&mut client, &path, &opts)
        .await
        .expect("one long attribute must not stop the file");
    assert_eq!((summary.inserted, summary.rejected), (997, 3), "{summary}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        997
    );
    let rejected = quarantined(&client, &path.display().to_string()).await;
    let lines: Vec<i64> = rejected.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [400, 600, 800]);
    for ((_, reason), (attr, len, limit)) in rejected.iter().zip([
        ("id", 3_000, events::limits::MAX_ID_BYTES),
        ("source", 3_000, events::limits::MAX_SOURCE_BYTES),
        ("type", 300, events::limits::MAX_TYPE_BYTES),
    ]) {
        assert!(
            reason.contains(&format!("attribute \"{attr}\" is {len} bytes"))
                && reason.contains(&format!("limit of {limit} bytes")),
            "{reason}"
        );
        assert!(
            reason.len() < 300,
            "the reason quotes a preview only: {reason}"
        );
    }
}

#[tokio::test]
async fn a_csv_source_or_type_over_the_limit_stops_the_file_before_anything_is_stored() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let path = write(&dir, "c.csv", b"customer_id,name\nC1,Ann\nC2,Bob\n");
    for (source, ty, flag) in [
        (
            random_text(600),
            "customer_registered".to_string(),
            "--source",
        ),
        ("crm".to_string(), random_text(200), "--type"),
    ] {
        let opts = IngestOptions {
            event_type: Some(ty),
            source: Some(source),
            ..IngestOptions::default()
        };
        let err = match ingest_file(&mut client, &path, &opts).await {
            Ok(s) => panic!("{flag} over the limit was accepted: {s}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(flag) && err.contains("bytes") && err.contains("limit"),
            "{err}"
        );
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        0
    );
}

#[tokio::test]
async fn post_events_with_one_oversized_id_stores_the_five_good_ones() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let mut batch: Vec<Value> = (1..=5)
        .map(|n| cloud_event(&format!("api-{n}"), "crm", "customer_registered", n))
        .collect();
    batch.insert(
        3,
        cloud_event(&random_text(3_000), "crm", "customer_registered", 9),
    );
    let resp = app
        .post(
            "/events",
            "application/cloudevents-batch+json",
            Value::Array(batch).to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let body = expect_json(resp, 202, "5 good events and one long id").await;
    assert_eq!(body["accepted"], 5, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["rejections"][0]["item"], 4, "{body}");
    let reason = body["rejections"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"id\"") && reason.contains("limit of 256 bytes"),
        "{reason}"
    );
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        5
    );
    assert_eq!(quarantined(&client, "api").await.len(), 1);
    app.stop().await;
}

/// A trigger that refuses, as a data exception, every event whose id starts with
/// `poison`: what no check at parse time can foresee.
async fn sabotage(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE FUNCTION public.sabotage() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id LIKE 'poison%' THEN
                     RAISE EXCEPTION 'sabotaged event %', NEW.event_id
                         USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER sabotage BEFORE INSERT ON event_log.events
                 FOR EACH ROW EXECUTE FUNCTION public.sabotage();",
        )
        .await
        .expect("sabotage trigger");
}

#[tokio::test]
async fn the_append_net_quarantines_what_the_database_refuses_and_commits_the_rest() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    sabotage(&client).await;
    // 50 events in batches of 10: two poisoned in the second batch, one in the last
    let poison = [13, 17, 50];
    let events: Vec<Value> = (1..=50)
        .map(|n| {
            let id = if poison.contains(&n) {
                format!("poison-{n}")
            } else {
                format!("e{n}")
            };
            cloud_event(&id, "crm", "customer_registered", n as usize)
        })
        .collect();
    let dir = tempdir::Dir::new();
    let text = ndjson(&events);
    let path = write(&dir, "sabotaged.ndjson", text.as_bytes());
    let opts = IngestOptions {
        batch_size: 10,
        ..IngestOptions::default()
    };
    // the COPY path: a fresh log
    let first = ingest_file(&mut client, &path, &opts)
        .await
        .expect("the net keeps the file going");
    assert_eq!((first.inserted, first.rejected), (47, 3), "{first}");
    let file = path.display().to_string();
    let rejected = quarantined(&client, &file).await;
    assert_eq!(
        rejected.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [13, 17, 50]
    );
    for (line, reason) in &rejected {
        assert!(
            reason.contains(&format!("sabotaged event poison-{line}")) && reason.contains("23514"),
            "{reason}"
        );
    }
    let raw: String = client
        .query_one(
            "SELECT raw FROM event_log.rejected WHERE file = $1 AND line = 13",
            &[&file],
        )
        .await
        .expect("raw")
        .get(0);
    assert!(raw.contains("poison-13") && raw.contains("C13"), "{raw}");

    // the same content again, plus one new line: the duplicates path (ON CONFLICT)
    // meets the same poison, and the file again does not die at it
    let again = write(
        &dir,
        "again.ndjson",
        format!(
            "{text}{}\n",
            cloud_event("e51", "crm", "customer_registered", 51)
        )
        .as_bytes(),
    );
    let second = ingest_file(&mut client, &again, &opts)
        .await
        .expect("a re-ingest passes the poison again");
    assert_eq!(
        (second.inserted, second.duplicates, second.rejected),
        (1, 47, 3),
        "{second}"
    );
    // and the very same file is recognised, not read again
    let third = ingest_file(&mut client, &path, &opts).await.expect("again");
    assert!(third.already_ingested_at.is_some(), "{third}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        48
    );
}

#[tokio::test]
async fn the_append_net_also_serves_post_events() {
    let db = TestDb::new().await;
    let client = db.client().await;
    sabotage(&client).await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let lines: Vec<Value> = (1..=6)
        .map(|n| {
            let id = if n == 3 {
                "poison-api".to_string()
            } else {
                format!("api-{n}")
            };
            cloud_event(&id, "crm", "customer_registered", n)
        })
        .collect();
    let resp = app
        .post(
            "/events",
            "application/x-ndjson",
            ndjson(&lines),
            Some(WRITE_TOKEN),
        )
        .await;
    let body = expect_json(resp, 202, "one sabotaged event among six").await;
    assert_eq!(body["accepted"], 5, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["rejections"][0]["item"], 3, "{body}");
    let reason = body["rejections"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sabotaged event poison-api"), "{reason}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        5
    );
    assert_eq!(quarantined(&client, "api").await, [(3, reason.to_string())]);

    // a request of nothing but poison: every item refused, 422 with the reasons
    let only = cloud_event("poison-alone", "crm", "customer_registered", 7);
    let resp = app
        .post(
            "/events",
            "application/json",
            only.to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let p = expect_json(resp, 422, "a lone sabotaged event").await;
    assert_problem(&p, 422, "events-rejected", "sabotaged event poison-alone");
    assert_eq!(
        count(&client, "SELECT count(*) FROM event_log.events").await,
        5
    );
    app.stop().await;
}

#[tokio::test]
async fn business_times_outside_the_range_are_refused_at_ingest_naming_value_and_range() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempdir::Dir::new();
    let timed = |id: &str, time: &str| {
        json!({"specversion": "1.0", "id": id, "source": "crm", "type": "customer_registered",
               "time": time, "data": {"customer_id": id}})
    };
    let path = write(
        &dir,
        "times.ndjson",
        ndjson(&[
            timed("a", "1900-01-01T00:00:00Z"),
            timed("b", "9999-12-31T23:59:59-05:00"),
            timed("c", "0000-01-01T00:00:00Z"),
            timed("d", "2199-12-31T23:59:59.999999Z"),
            timed("e", "2200-01-01T00:00:00Z"),
            timed("f", "1899-12-31T23:59:59+00:00"),
        ])
        .as_bytes(),
    );
    let s = ingest_file(&mut client, &path, &IngestOptions::default())
        .await
        .expect("ingest");
    assert_eq!((s.inserted, s.rejected), (2, 4), "{s}");
    let rejected = quarantined(&client, &path.display().to_string()).await;
    assert_eq!(
        rejected.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [2, 3, 5, 6]
    );
    for ((_, reason), value) in rejected.iter().zip([
        "9999-12-31T23:59:59-05:00",
        "0000-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
        "1899-12-31T23:59:59+00:00",
    ]) {
        assert!(
            reason.contains("\"time\"")
                && reason.contains(value)
                && reason.contains("1900-01-01T00:00:00Z")
                && reason.contains("2200-01-01T00:00:00Z"),
            "{reason}"
        );
    }

    let csv = write(
        &dir,
        "c.csv",
        b"customer_id,signup_date\nC1,2024-01-01\nC2,0001-01-01\nC3,2200-01-01\nC4,10000-01-01\n",
    );
    let opts = IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        ..IngestOptions::default()
    };
    let s = ingest_file(&mut client, &csv, &opts).await.expect("csv");
    assert_eq!((s.inserted, s.rejected), (1, 3), "{s}");
    let rejected = quarantined(&client, &csv.display().to_string()).await;
    assert_eq!(rejected[0].0, 3);
    assert!(
        rejected[0].1.contains("\"signup_date\"")
            && rejected[0].1.contains("0001-01-01")
            && rejected[0].1.contains("2200-01-01T00:00:00Z"),
        "{}",
        rejected[0].1
    );
    assert_eq!(rejected[1].0, 4);
    assert_eq!(rejected[2].0, 5);
}

#[tokio::test]
async fn post_events_refuses_a_time_outside_the_range_and_accepted_times_print_as_rfc3339() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let customer = |id: &str, time: &str| {
        json!({"specversion": "1.0", "id": id, "source": "crm", "type": "customer_registered",
               "time": time,
               "data": {"customer_id": id, "first_name": "Ann", "last_name": "T",
                        "email": "a@example.com", "phone": "1", "city": "Rome",
                        "country": "Italy", "signup_date": "2024-01-01"}})
    };
    let resp = app
        .post(
            "/events",
            "application/json",
            customer("CFAR", "9999-12-31T23:59:59-05:00").to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let p = expect_json(resp, 422, "a time in year 10000").await;
    assert_problem(&p, 422, "events-rejected", "9999-12-31T23:59:59-05:00");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("2200-01-01T00:00:00Z"),
        "{p}"
    );

    // the extremes of the range are stored, loaded and printed as RFC 3339
    let edges = [
        ("CLOW", "1900-01-01T00:00:00Z"),
        ("CHIGH", "2199-12-31T23:59:59.999Z"),
    ];
    let batch: Vec<Value> = edges.iter().map(|(id, t)| customer(id, t)).collect();
    let resp = app
        .post(
            "/events",
            "application/json",
            Value::Array(batch).to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let body = expect_json(resp, 202, "the extremes of the range").await;
    assert_eq!(body["accepted"], 2, "{body}");
    let mut client = db.client().await;
    harness::load_all(&mut client).await;
    let reader = TestApp::spawn(&db.url, open_config()).await;
    for (id, time) in edges {
        let history = reader
            .json(&format!("/customers/{id}/history"), 200)
            .await
            .to_string();
        assert!(
            history.contains(&format!("\"{time}\"")),
            "{id}: {time} not printed as such in {history}"
        );
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok());
    }
    reader.stop().await;
    app.stop().await;
}

/// The most points a series answer may have: the contract documented in docs/api.md.
const MAX_SERIES_POINTS: usize = 10_000;

fn order(id: &str, customer: &str, at: &str) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        event_type: "order_placed".into(),
        source: "shop".into(),
        occurred_at: chrono::DateTime::parse_from_rfc3339(at)
            .expect("time")
            .with_timezone(&chrono::Utc),
        payload: json!({"order_id": id, "customer_id": customer, "ordered_at": at,
                        "channel": "web", "status": "placed",
                        "lines": [{"line_no": 1, "product_id": "P1", "quantity": 1,
                                   "unit_price": "10.00", "discount": "0"}]})
        .to_string(),
    }
}

#[tokio::test]
async fn a_revenue_series_spanning_centuries_is_a_400_naming_the_limit_not_a_huge_body() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    events::append(
        &client,
        &[
            order("O1", "C1", "1950-01-02T10:00:00Z"),
            order("O2", "C1", "2024-06-01T10:00:00Z"),
            order("O3", "C1", "2150-12-30T10:00:00Z"),
        ],
    )
    .await
    .expect("append");
    harness::load_all(&mut client).await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let limit = MAX_SERIES_POINTS;

    let p = app.json("/analytics/revenue?period=day", 400).await;
    assert_problem(&p, 400, "series-too-long", &format!("limit of {limit}"));
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("1950-01-02") && detail.contains("2150-12-30"),
        "{detail}"
    );
    assert_eq!(p["limit"], limit, "{p}");
    // weeks over two centuries are too many as well; months are not
    app.json("/analytics/revenue?period=week", 400).await;
    let months = app.json("/analytics/revenue?period=month", 200).await;
    let series = months["series"].as_array().map_or(0, Vec::len);
    assert_eq!(series, 201 * 12, "January 1950 to December 2150");
    // a range narrowed to what fits answers
    let year = app
        .json(
            "/analytics/revenue?period=day&from=2024-01-01&to=2024-12-31",
            200,
        )
        .await;
    assert_eq!(year["series"].as_array().map_or(0, Vec::len), 366);
    let revenue: f64 = year["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["revenue"].as_str()?.parse::<f64>().ok())
        .sum();
    assert_eq!(revenue, 10.0);
    // just past the limit from one side only
    let p = app
        .json(
            &format!(
                "/analytics/revenue?period=day&from={}",
                (chrono::NaiveDate::from_ymd_opt(2150, 12, 30).expect("date")
                    - chrono::Days::new(limit as u64))
                .format("%Y-%m-%d")
            ),
            400,
        )
        .await;
    assert_problem(&p, 400, "series-too-long", &format!("{} days", limit + 1));
    // and exactly at the limit, the whole series
    let last = chrono::NaiveDate::from_ymd_opt(2150, 12, 30).expect("date");
    let from = last - chrono::Days::new(limit as u64 - 1);
    let full = app
        .json(
            &format!(
                "/analytics/revenue?period=day&from={}",
                from.format("%Y-%m-%d")
            ),
            200,
        )
        .await;
    assert_eq!(full["series"].as_array().map_or(0, Vec::len), limit);
    app.stop().await;
}

#[tokio::test]
async fn the_range_of_business_times_is_configurable_for_files_and_the_api() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&chrono::Utc)
    };
    let range =
        TimeRange::new(at("2000-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z")).expect("range");
    let dir = tempdir::Dir::new();
    let csv = write(
        &dir,
        "c.csv",
        b"customer_id,signup_date\nC1,1999-12-31\nC2,2000-01-01\nC3,2150-01-01\n",
    );
    let opts = |time_range| IngestOptions {
        event_type: Some("customer_registered".into()),
        source: Some("crm".into()),
        time_field: Some("signup_date".into()),
        time_range,
        ..IngestOptions::default()
    };
    let narrow = ingest_file(&mut client, &csv, &opts(range))
        .await
        .expect("narrow");
    assert_eq!((narrow.inserted, narrow.rejected), (1, 2), "{narrow}");
    let rejected = quarantined(&client, &csv.display().to_string()).await;
    assert!(
        rejected[0]
            .1
            .contains("2000-01-01T00:00:00Z (included) to 2100-01-01T00:00:00Z (excluded)"),
        "{rejected:?}"
    );
    // the default range is another ingest of the same file: it takes the 2150 row
    let wide = ingest_file(&mut client, &csv, &opts(TimeRange::default()))
        .await
        .expect("default");
    assert!(wide.already_ingested_at.is_none(), "{wide}");
    assert_eq!(
        (wide.inserted, wide.duplicates, wide.rejected),
        (2, 1, 0),
        "{wide}"
    );

    let app = TestApp::spawn(
        &db.url,
        dvault::api::ApiConfig {
            time_range: range,
            ..keyed_config()
        },
    )
    .await;
    let event = |id: &str, time: &str| {
        json!({"specversion": "1.0", "id": id, "source": "crm", "type": "customer_registered",
               "time": time, "data": {"customer_id": id}})
    };
    let body = Value::Array(vec![
        event("in", "2050-01-01T00:00:00Z"),
        event("out", "2150-01-01T00:00:00Z"),
    ]);
    let resp = app
        .post(
            "/events",
            "application/json",
            body.to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let body = expect_json(resp, 202, "a configured range").await;
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(body["rejections"][0]["item"], 2, "{body}");
    app.stop().await;
}
