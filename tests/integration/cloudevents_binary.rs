//! POST /events in CloudEvents' HTTP binary mode (attributes in `ce-*` headers, the data
//! as the body), over a real socket: stored like its structured twin, refused and
//! quarantined for the same reasons, under the same limits.

use serde_json::{Value, json};

use dvault::api::ApiConfig;

use crate::api::{TestApp, WRITE_TOKEN, assert_problem, expect_json, keyed_config};
use crate::harness::TestDb;

/// POST `body` with these `ce-*` headers and content type.
async fn post_binary(
    app: &TestApp,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/events"))
        .bearer_auth(WRITE_TOKEN)
        .body(body.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("POST")
}

const DATA: &str = r#"{"customer_id":"C501","first_name":"Bin","country":"Spain"}"#;

fn attributes(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce-specversion", "1.0".into()),
        ("ce-type", "customer_registered".into()),
        ("ce-source", "crm".into()),
        ("ce-id", id.into()),
        ("ce-time", "2024-02-02T10:00:00+01:00".into()),
    ]
}

fn borrowed<'a>(attrs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    attrs.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// (type, source, occurred_at, payload) of the stored event with this id.
async fn stored(db: &TestDb, id: &str) -> Option<(String, String, String, Value)> {
    let client = db.client().await;
    client
        .query_opt(
            "SELECT event_type, record_source, to_char(occurred_at AT TIME ZONE 'UTC',
                    'YYYY-MM-DD\"T\"HH24:MI:SS'), payload::jsonb
               FROM event_log.events WHERE event_id = $1",
            &[&id],
        )
        .await
        .expect("query")
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

#[tokio::test]
async fn a_binary_event_is_stored_like_its_structured_twin() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;

    // binary, then the same event in structured mode: a duplicate of it
    let attrs = attributes("bin-1");
    let r = expect_json(
        post_binary(&app, &borrowed(&attrs), Some("application/json"), DATA).await,
        202,
        "binary",
    )
    .await;
    assert_eq!(
        r,
        json!({"accepted": 1, "duplicates": 0, "rejected": 0, "rejections": []})
    );
    let structured = json!({"specversion": "1.0", "type": "customer_registered",
        "source": "crm", "id": "bin-1", "time": "2024-02-02T10:00:00+01:00",
        "data": serde_json::from_str::<Value>(DATA).expect("data")});
    let twin = app
        .post(
            "/events",
            "application/cloudevents+json",
            structured.to_string(),
            Some(WRITE_TOKEN),
        )
        .await;
    let r = expect_json(twin, 202, "structured twin").await;
    assert_eq!(
        (r["accepted"].clone(), r["duplicates"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(
        stored(&db, "bin-1").await,
        Some((
            "customer_registered".into(),
            "crm".into(),
            "2024-02-02T09:00:00".into(),
            serde_json::from_str(DATA).expect("data")
        ))
    );

    // without an id, both modes derive the same one from the content
    let mut no_id = attributes("");
    no_id.retain(|(n, _)| *n != "ce-id");
    let r = expect_json(
        post_binary(&app, &borrowed(&no_id), Some("application/json"), DATA).await,
        202,
        "binary without id",
    )
    .await;
    assert_eq!(r["accepted"], 1);
    let mut structured_no_id = structured.clone();
    structured_no_id
        .as_object_mut()
        .expect("object")
        .remove("id");
    let text = structured_no_id.to_string().replace(
        &serde_json::to_string(&structured["data"]).expect("data"),
        DATA,
    );
    let r = expect_json(
        app.post("/events", "application/json", text, Some(WRITE_TOKEN))
            .await,
        202,
        "structured without id",
    )
    .await;
    assert_eq!(r["duplicates"], 1, "{r}");

    // attribute values are percent-decoded; a `+json` type and a charset are fine
    let mut encoded = attributes("bin-2");
    encoded[2].1 = "shop%20eu%2F%C3%A9".into();
    let r = expect_json(
        post_binary(
            &app,
            &borrowed(&encoded),
            Some("application/vnd.crm+json; charset=utf-8"),
            DATA,
        )
        .await,
        202,
        "percent-encoded source",
    )
    .await;
    assert_eq!(r["accepted"], 1);
    let (_, source, _, _) = stored(&db, "bin-2").await.expect("stored");
    assert_eq!(source, "shop eu/é");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_binary_event_is_refused_and_quarantined_like_a_structured_one() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db.url,
        ApiConfig {
            body_limit: 2048,
            ..keyed_config()
        },
    )
    .await;

    // no type: 422, and the quarantine keeps the attributes with the data
    let mut no_type = attributes("bad-1");
    no_type.retain(|(n, _)| *n != "ce-type");
    let p = expect_json(
        post_binary(&app, &borrowed(&no_type), Some("application/json"), DATA).await,
        422,
        "no type",
    )
    .await;
    assert_problem(
        &p,
        422,
        "events-rejected",
        "missing required attribute \"type\"",
    );

    // data that is not JSON, not an object, or missing
    let attrs = attributes("bad-2");
    for (body, reason) in [
        ("{oops", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "missing required attribute \"data\""),
    ] {
        let p = expect_json(
            post_binary(&app, &borrowed(&attrs), Some("application/json"), body).await,
            422,
            body,
        )
        .await;
        assert_problem(&p, 422, "events-rejected", reason);
    }
    // a time outside the accepted range, as in structured mode
    let mut old = attributes("bad-3");
    old[4].1 = "1800-01-01T00:00:00Z".into();
    let p = expect_json(
        post_binary(&app, &borrowed(&old), Some("application/json"), DATA).await,
        422,
        "old time",
    )
    .await;
    assert_problem(&p, 422, "events-rejected", "attribute \"time\"");

    // data that is not JSON by its type: 415; over the body limit: 413
    let p = expect_json(
        post_binary(&app, &borrowed(&attrs), Some("text/plain"), "hello").await,
        415,
        "text",
    )
    .await;
    assert_problem(&p, 415, "unsupported-media-type", "application/json");
    let big = format!(r#"{{"customer_id":"C1","note":"{}"}}"#, "x".repeat(4096));
    let resp = post_binary(&app, &borrowed(&attrs), Some("application/json"), &big).await;
    assert_eq!(resp.status().as_u16(), 413);

    // what was quarantined: the rejected items, attributes included
    let client = db.client().await;
    let rows: Vec<(String, String)> = client
        .query("SELECT file, raw FROM event_log.rejected ORDER BY id", &[])
        .await
        .expect("rejected")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|(file, _)| file == "api"), "{rows:?}");
    assert!(rows[0].1.contains("\"source\":\"crm\""), "{rows:?}");
    assert!(rows[0].1.contains("C501"), "{rows:?}");
    assert_eq!(rows[1].1, "{oops");
    let events: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 0);
    app.stop().await;
}
