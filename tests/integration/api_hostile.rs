//! Hostile clients over a real socket: injection strings in every parameter and path
//! segment, forged and truncated cursors, bad JSON, oversized bodies, clients that
//! send their headers or body too slowly. Every answer is a 4xx problem (or a 200 for
//! a harmless filter that matches nothing), never a 5xx, never SQL text or a trace.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use dvault::api::ApiConfig;

use crate::api::{
    TestApp, WRITE_TOKEN, customer_event, header, keyed_config, loaded_db, open_config,
};
use crate::harness::TestDb;

/// Strings a hostile client puts anywhere it can.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "' OR '1'='1",
        "1' OR 1=1 --",
        "'; DROP TABLE raw_vault.hub_customer; --",
        "\"; SELECT pg_sleep(10); --",
        "1; SELECT * FROM event_log.events",
        "C01' UNION SELECT email FROM raw_vault.sat_customer_contact --",
        "$1",
        "%",
        "_",
        "\\",
        "\u{202e}C01",
        "../../../etc/passwd",
        "<script>alert(1)</script>",
        "${jndi:ldap://x/a}",
        "-1",
        "0",
        "1e400",
        "NaN",
        "-infinity",
        "99999999999999999999999999999999999999",
        "2024-13-45",
        "-5000-01-01",
        "0000-01-01T00:00:00Z",
        "",
        " ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("A".repeat(8000));
    v
}

/// Every GET endpoint with the parameters it takes.
const ENDPOINTS: &[(&str, &[&str])] = &[
    (
        "/customers",
        &[
            "segment",
            "country",
            "churn_risk",
            "min_total_spent",
            "sort",
            "limit",
            "cursor",
            "skip",
            "offset",
        ],
    ),
    ("/customers/C01", &["as_of"]),
    (
        "/customers/C01/orders",
        &["sort", "limit", "cursor", "skip", "offset"],
    ),
    ("/customers/C01/history", &[]),
    (
        "/products",
        &["category", "sort", "limit", "cursor", "skip"],
    ),
    ("/products/P1", &[]),
    (
        "/orders",
        &["from", "to", "status", "sort", "limit", "cursor", "skip"],
    ),
    ("/orders/O01", &[]),
    ("/segments", &[]),
    (
        "/segments/Prospect/customers",
        &["country", "sort", "limit", "cursor"],
    ),
    ("/analytics/revenue?period=day", &["from", "to"]),
    ("/analytics/churn", &[]),
    ("/analytics/categories", &[]),
];

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Not a 5xx; a 4xx is problem+json; no body gives away SQL or internals.
async fn assert_harmless(resp: reqwest::Response, what: &str) -> u16 {
    harmless(resp, what, what).await
}

/// As [`assert_harmless`]; words the client itself sent (in `input`) may be echoed.
async fn harmless(resp: reqwest::Response, what: &str, input: &str) -> u16 {
    let input = input.to_lowercase();
    let status = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let text = resp.text().await.unwrap_or_default();
    assert!(status < 500, "{what}: {status} {text}");
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{what}: {text}");
        let p: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p["status"], status, "{what}: {text}");
    }
    let lower = text.to_lowercase();
    for leak in [
        "select ",
        "error:",
        "sqlstate",
        "panicked",
        "stack backtrace",
        "src/",
        "tokio_postgres",
        "db error",
    ] {
        if input.contains(leak.trim()) {
            continue;
        }
        assert!(
            !lower.contains(leak),
            "{what}: the body leaks {leak:?}: {text}"
        );
    }
    status
}

async fn vault_is_intact(db: &TestDb) {
    let client = db.client().await;
    let customers: i64 = client
        .query_one("SELECT count(*) FROM raw_vault.hub_customer", &[])
        .await
        .expect("hub_customer is still there")
        .get(0);
    assert_eq!(customers, 12);
}

#[tokio::test]
async fn injection_strings_in_every_parameter_and_path_segment_are_refused_or_harmless() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let mut requests = 0;
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for value in hostile_values() {
        let v = encode(&value);
        // query parameters, each endpoint, each of its parameters
        for (path, params) in ENDPOINTS {
            let sep = if path.contains('?') { '&' } else { '?' };
            for name in params.iter().copied().chain(["unknown_param"]) {
                let url = format!("{path}{sep}{name}={v}");
                let status = harmless(app.get(&url).await, &url, &value).await;
                *statuses.entry(status).or_default() += 1;
                requests += 1;
            }
        }
        // path segments
        if value.is_empty() {
            continue;
        }
        for template in [
            "/customers/{}",
            "/customers/{}/orders",
            "/customers/{}/history",
            "/products/{}",
            "/orders/{}",
            "/segments/{}/customers",
        ] {
            let url = template.replace("{}", &v);
            let status = harmless(app.get(&url).await, &url, &value).await;
            assert!(
                [400, 404].contains(&status),
                "{url}: {status}, expected no such thing"
            );
            requests += 1;
        }
    }
    // bytes that are not UTF-8, a NUL, raw percent signs
    for url in [
        "/customers/%FF%FE",
        "/customers?country=%FF",
        "/customers?country=a%00b",
        "/products?category=%00",
        "/customers/C01?as_of=2024-01-01%00",
        "/orders/%00",
        "/customers?%00=1",
        "/customers?country=%",
        "/customers?country=%zz",
        "/customers?=x",
        "/customers?&&&",
        "/customers?limit=5&limit=6",
    ] {
        let status = assert_harmless(app.get(url).await, url).await;
        *statuses.entry(status).or_default() += 1;
        requests += 1;
    }
    assert!(requests > 1000, "{requests} requests");
    assert!(statuses.contains_key(&400), "{statuses:?}");
    eprintln!("{requests} hostile requests: statuses {statuses:?}");
    vault_is_intact(&db).await;
    app.stop().await;
}

#[tokio::test]
async fn forged_truncated_and_foreign_cursors_are_400() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let next = |page: &Value| {
        page["next"]
            .as_str()
            .and_then(|n| n.split("cursor=").nth(1))
            .expect("a next cursor")
            .to_string()
    };
    let real = next(&app.json("/customers?limit=2&sort=-total_spent", 200).await);
    let mut cursors: Vec<String> = vec![
        real[..real.len() / 2].to_string(),
        real[..real.len() - 1].to_string(),
        format!("{real}AAAA"),
        real.replace('e', "x"),
        "x".repeat(10_000),
        "%00".into(),
        "====".into(),
        "eyJ9".into(),
    ];
    // well-formed JSON with hostile content, for every sort of every list
    for (list, sorts) in [
        (
            "/customers",
            &[
                "customer_id",
                "-total_spent",
                "orders_count",
                "-last_order_at",
                "signup_date",
                "-clv_predicted_12m",
            ][..],
        ),
        (
            "/products",
            &["product_id", "-revenue", "units_sold", "price"][..],
        ),
        ("/orders", &["-ordered_at", "amount"][..]),
        ("/customers/C01/orders", &["-ordered_at", "ordered_at"][..]),
    ] {
        for sort in sorts {
            for (k, i) in [
                ("' OR 1=1 --", "C01"),
                ("1); DROP TABLE raw_vault.hub_customer; --", "x"),
                ("99999999999999999999999999999999999999999", "x"),
                ("-infinity", "x"),
                ("294277-01-01", "x"),
                ("NaN", "x"),
                ("", ""),
                ("1", "\u{0}"),
            ] {
                let forged = URL_SAFE_NO_PAD
                    .encode(serde_json::json!({"s": sort, "k": k, "i": i}).to_string());
                let url = format!("{list}?sort={}&cursor={forged}", encode(sort));
                let status = harmless(app.get(&url).await, &url, k).await;
                assert!([200, 400].contains(&status), "{url}: {status}");
            }
            // missing fields, wrong types
            for body in [
                serde_json::json!({"s": sort}),
                serde_json::json!({"s": sort, "k": 1, "i": 2}),
                serde_json::json!(null),
            ] {
                let forged = URL_SAFE_NO_PAD.encode(body.to_string());
                let url = format!("{list}?sort={}&cursor={forged}", encode(sort));
                let resp = app.get(&url).await;
                assert_eq!(assert_harmless(resp, &url).await, 400, "{url}");
            }
        }
    }
    // a cursor of one list (or sort) used on another
    cursors.push(next(&app.json("/products?limit=1", 200).await));
    for c in &cursors {
        for list in ["/customers?sort=-total_spent", "/orders", "/products"] {
            let url = format!("{list}&cursor={}", encode(c)).replacen(
                '&',
                "?",
                usize::from(!list.contains('?')),
            );
            let resp = app.get(&url).await;
            let status = assert_harmless(resp, &url).await;
            assert!([200, 400].contains(&status), "{url}: {status}");
        }
    }
    // the real cursor still works
    app.json(
        &format!("/customers?sort=-total_spent&limit=2&cursor={real}"),
        200,
    )
    .await;
    vault_is_intact(&db).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_json_to_post_events_is_a_4xx_problem() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db.url, keyed_config()).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        "{{\"specversion\":\"1.0\",\"type\":\"t\",\"source\":\"s\",\"id\":\"deep\",\"data\":{}{}}}",
        "{\"a\":".repeat(50_000),
        "1".to_string() + &"}".repeat(50_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[".to_vec()),
        ("application/json", b"[{]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"123".to_vec()),
        ("application/json", b"\"a string\"".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"{}".to_vec()),
        ("application/json", b"[1, \"x\", null, {}]".to_vec()),
        ("application/json", b"\xef\xbb\xbf".to_vec()),
        ("application/json", b"\xff\xfe{\"a\":1}".to_vec()),
        ("application/json", b"{\"id\":\"\xc3\x28\"}".to_vec()),
        ("application/json", deep.clone().into_bytes()),
        ("application/json", deep_object.into_bytes()),
        ("application/cloudevents-batch+json", deep.into_bytes()),
        ("application/cloudevents-batch+json", b"{\"not\":\"an array\"}".to_vec()),
        ("application/cloudevents-batch+json", b"[]".to_vec()),
        ("application/cloudevents+json", b"[1,2]".to_vec()),
        (
            "application/json",
            br#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"a\u0000b","data":{}}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"x","time":"-5000-01-01T00:00:00Z","data":{}}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"specversion":"1.0","type":"customer_registered","source":"crm","id":"y","data":{"customer_id":"' OR 1=1 --","email":"x@y.z'; DROP TABLE event_log.events; --"},"data":{}}"#.to_vec(),
        ),
        ("application/x-ndjson", b"\n\n\n".to_vec()),
        ("application/x-ndjson", b"{\n}\n{".to_vec()),
        ("application/x-ndjson", vec![0u8; 1000]),
        ("application/json; charset=latin1", b"{}".to_vec()),
        ("text/plain", b"{}".to_vec()),
        ("", b"{}".to_vec()),
        ("application/json", b"".to_vec()),
    ];
    let count = bodies.len();
    for (ct, body) in bodies {
        let what = format!(
            "POST {ct} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        let mut req = app
            .http
            .post(app.url("/events"))
            .bearer_auth(WRITE_TOKEN)
            .body(body);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("POST");
        let status = assert_harmless(resp, &what).await;
        assert!(
            status == 202 || (400..500).contains(&status),
            "{what}: {status}"
        );
    }
    assert!(count > 25);
    // the log holds only the events that were valid, and is still append-only
    let client = db.client().await;
    let events: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert!(events <= 1, "{events} events from bad bodies");
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_also_when_only_announced() {
    let db = TestDb::new().await;
    let config = ApiConfig {
        body_limit: 4096,
        ..keyed_config()
    };
    let app = TestApp::spawn(&db.url, config).await;
    // streamed (chunked) past the limit
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    // read concurrently: the server answers and closes while data is still coming,
    // and a reset would discard an answer not yet read
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    for _ in 0..8 {
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        if wr.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = reader.await.expect("reader");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:dvault:problem:payload-too-large"),
        "{answer}"
    );

    // announced: a Content-Length of 10 GB, no body sent; answered at once
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let answer = read_answer(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    app.stop().await;
}

/// Read what the server sends until it closes the connection or `within` passes.
async fn read_answer(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // a complete problem body is enough
                if out.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed the connection within `within` (read gives EOF or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an answer (e.g. 408); keep reading until closed
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_request_timeout() {
    let db = TestDb::new().await;
    let timeout = Duration::from_millis(1500);
    let config = ApiConfig {
        request_timeout: timeout,
        ..keyed_config()
    };
    let app = TestApp::spawn(&db.url, config).await;
    let addr = app.base.trim_start_matches("http://").to_string();

    // 1. headers a byte at a time (slowloris): the connection is closed
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > timeout * 4 {
            break;
        }
    }
    if !cut {
        cut = closed_within(&mut s, timeout * 2).await;
    }
    assert!(cut, "a client sending headers slowly was not cut off");
    assert!(
        started.elapsed() < timeout * 4,
        "cut off after {:?}",
        started.elapsed()
    );

    // 2. a connection that says nothing at all is closed
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    assert!(
        closed_within(&mut s, timeout * 3).await,
        "an idle connection stays open"
    );

    // 3. a kept-alive connection going idle after a request is closed too
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, timeout * 3).await,
        "an idle kept-alive connection stays open"
    );

    // 4. a body that trickles in: 408 problem, connection closed
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let event = customer_event("slow-1", "C1");
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        event.len() + 1
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&event.as_bytes()[..10]).await.expect("write");
    let answer = read_answer(&mut s, timeout * 3).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("urn:dvault:problem:request-timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    assert!(closed_within(&mut s, timeout * 2).await, "connection kept");

    // and the server still serves everyone else, and stored nothing half-read
    assert_eq!(app.get("/health").await.status(), 200);
    let client = db.client().await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM event_log.events WHERE event_id = 'slow-1'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.stop().await;
}

/// Many slow connections at once do not starve normal requests.
#[tokio::test]
async fn a_crowd_of_slow_connections_does_not_block_others() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(
        &db.url,
        ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..open_config()
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut crowd = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        crowd.push(s);
    }
    let started = Instant::now();
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // the crowd is dropped by the server after the timeout
    let mut closed = 0;
    for s in crowd.iter_mut() {
        if closed_within(s, Duration::from_secs(5)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 200);
    app.stop().await;
}

/// The OpenAPI document lists the segments as an enum (so that a client following it
/// gets no 400); they must be the ones the database serves.
#[tokio::test]
async fn the_documented_segments_are_the_served_ones() {
    let db = loaded_db().await;
    let app = TestApp::spawn(&db.url, open_config()).await;
    let served: Vec<String> = app.json("/segments", 200).await["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["segment"].as_str().map(str::to_string))
        .collect();
    let doc = app.json("/openapi.json", 200).await;
    let documented: Vec<String> = doc["paths"]["/segments/{name}/customers"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "name"))
        .and_then(|p| p["schema"]["enum"].as_array())
        .expect("an enum of segment names")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(served, documented);
    app.stop().await;
}
