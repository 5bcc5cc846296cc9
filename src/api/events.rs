//! POST /events: append CloudEvents to the log, validated like `dvault ingest`. One
//! event, a JSON array (a CloudEvents batch) or NDJSON, by content type. Events
//! already in the log are counted as duplicates; bad items are quarantined in
//! `event_log.rejected` (file `api`) and never stop the good ones.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Body, Json};
use super::state::AppState;
use crate::events::ingest::{Rejection, printable, store_rejections};
use crate::events::limits::TimeRange;
use crate::events::{
    APPEND_ATTEMPTS, NewEvent, append_salvaging, cloudevents, deadlock_pause, is_deadlock, render,
};

/// The content types POST /events accepts.
pub const CONTENT_TYPES: &[&str] = &[
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
];

/// How the body holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One CloudEvent object.
    Single,
    /// A JSON array of CloudEvent objects.
    Batch,
    /// One CloudEvent object per line.
    Lines,
    /// `application/json`: an object or an array, by its first character.
    ObjectOrArray,
    /// CloudEvents binary mode: attributes in `ce-*` headers, the data as the body.
    Binary,
}

fn shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/cloudevents+json" => Ok(Shape::Single),
        "application/cloudevents-batch+json" => Ok(Shape::Batch),
        "application/json" => Ok(Shape::ObjectOrArray),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Shape::Lines),
        _ => Err(ApiError::UnsupportedMediaType {
            got: raw.to_string(),
            accepted: CONTENT_TYPES,
        }),
    }
}

/// CloudEvents' HTTP binary mode: `ce-specversion` among the headers, and a JSON body
/// that is not a structured or batch CloudEvent. The attributes are the `ce-*` headers
/// (percent-decoded, CloudEvents HTTP binding 3.1.3), the body is the event's `data`.
/// `None` in structured and batch mode.
fn binary_mode(headers: &HeaderMap) -> Result<Option<Vec<(String, String)>>, ApiError> {
    if !headers.contains_key("ce-specversion") {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // a structured or batch body carries its own attributes, whatever the headers
    // say, and so do NDJSON lines; binary mode's data is JSON: `application/json` or
    // another `+json` type (no content type: JSON too)
    let structured = essence.starts_with("application/cloudevents");
    let json = essence.is_empty() || essence == "application/json" || essence.ends_with("+json");
    if structured || !json {
        return Ok(None);
    }
    let mut attributes = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = percent_decode(value.as_bytes()).ok_or_else(|| {
            ApiError::bad_param(
                name.as_str(),
                "not a CloudEvents attribute value: percent-encoded UTF-8 expected",
                &[],
            )
        })?;
        attributes.push((attribute.to_string(), value));
    }
    if !content_type.is_empty() {
        attributes.push(("datacontenttype".to_string(), content_type.to_string()));
    }
    Ok(Some(attributes))
}

/// A header value with `%XX` escapes decoded; `None` if it is not UTF-8 then.
fn percent_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What a POST /events did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "accepted": 2, "duplicates": 1, "rejected": 1,
    "rejections": [{"item": 3, "reason": "not a CloudEvent: missing required attribute \"type\""}]
}))]
pub struct Appended {
    /// Events newly stored in the log.
    pub accepted: u64,
    /// Events already in the log (same `source` and `id`), not stored again.
    pub duplicates: u64,
    /// Items that are not valid CloudEvents; kept in `event_log.rejected`.
    pub rejected: u64,
    /// Why each rejected item was refused.
    pub rejections: Vec<ItemRejection>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemRejection {
    /// 1-based position of the item in the request: its line (NDJSON), its element
    /// (JSON array), or 1 (a single event).
    pub item: u64,
    pub reason: String,
}

/// An event of the request and its 1-based position in it.
type Item = (u64, NewEvent);

/// Split the body into events and rejections, in request order.
fn parse(
    body: &[u8],
    shape: Shape,
    received_at: DateTime<Utc>,
    range: &TimeRange,
) -> Result<Vec<Result<Item, Rejection>>, ApiError> {
    let reject = |item: u64, reason: String, raw: &[u8]| Rejection {
        line: item,
        reason,
        raw: printable(raw),
    };
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let Some(first) = first else {
        return Err(ApiError::BadRequest(
            "the request body is empty: no events".into(),
        ));
    };
    let shape = match shape {
        Shape::ObjectOrArray if first == b'[' => Shape::Batch,
        Shape::ObjectOrArray => Shape::Single,
        other => other,
    };
    let one = |item: u64, raw: &[u8]| match std::str::from_utf8(raw) {
        Ok(text) => cloudevents::parse_within(text, received_at, range)
            .map(|e| (item, e))
            .map_err(|r| reject(item, r, raw)),
        Err(e) => Err(reject(
            item,
            format!("invalid UTF-8 (bad byte at offset {})", e.valid_up_to()),
            raw,
        )),
    };
    match shape {
        Shape::Single | Shape::Binary => Ok(vec![one(1, body)]),
        Shape::Batch => {
            let text = std::str::from_utf8(body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "the body is not UTF-8 (bad byte at offset {})",
                    e.valid_up_to()
                ))
            })?;
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
                ApiError::BadRequest(format!("the body is not a JSON array of CloudEvents: {e}"))
            })?;
            if items.is_empty() {
                return Err(ApiError::BadRequest("the batch is empty: no events".into()));
            }
            Ok(items
                .iter()
                .zip(1..)
                .map(|(raw, item)| one(item, raw.get().as_bytes()))
                .collect())
        }
        Shape::Lines | Shape::ObjectOrArray => Ok(body
            .split(|&b| b == b'\n')
            .zip(1..)
            .filter_map(|(line, item)| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (!line.iter().all(u8::is_ascii_whitespace)).then(|| one(item, line))
            })
            .collect()),
    }
}

/// Append CloudEvents to the event log.
#[utoipa::path(
    post,
    path = "/events",
    operation_id = "postEvents",
    tag = "events",
    request_body(
        description = "One CloudEvent (`application/cloudevents+json`, or `application/json` with an object), \
                       a JSON array of them (`application/cloudevents-batch+json`, or `application/json` with an array), \
                       or NDJSON, one per line (`application/x-ndjson`). See docs/events.md.",
        content(
            (serde_json::Value = "application/cloudevents+json"),
            (serde_json::Value = "application/cloudevents-batch+json"),
            (serde_json::Value = "application/json"),
            (String = "application/x-ndjson")
        )
    ),
    responses(
        (status = 202, description = "Stored (some items may have been rejected: see `rejections`)", body = Appended),
        (status = 400, description = "The body is empty or not a JSON array", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown API key", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key has no `write` scope, or no keys are configured", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every item was rejected; the problem lists why (`rejections`)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = super::error::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = ["write"]))
)]
pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let received_at = Utc::now();
    let request = read(&headers, body, received_at, &state.config.time_range)?;
    let (mut positions, mut events, mut parse_rejects) = (Vec::new(), Vec::new(), Vec::new());
    for item in request.items {
        match item {
            Ok((position, e)) => {
                positions.push(position);
                events.push(e);
            }
            Err(r) => parse_rejects.push(r),
        }
    }
    let digest = digest(request.shape, &request.text);
    let (appended, rejects) = store(&state, &positions, &events, &parse_rejects, &digest).await?;
    answer(appended, rejects)
}

/// A request read.
struct Request {
    shape: Shape,
    items: Vec<Result<Item, Rejection>>,
    /// The request as one text: in binary mode, the event in structured mode, so
    /// that it is validated, quarantined and deduplicated like one.
    text: bytes::Bytes,
}

/// Read the body by its content type (or `ce-*` headers: binary mode).
fn read(
    headers: &HeaderMap,
    body: bytes::Bytes,
    received_at: DateTime<Utc>,
    range: &TimeRange,
) -> Result<Request, ApiError> {
    let (shape, items, text) = match binary_mode(headers)? {
        Some(attributes) => match cloudevents::structured_from_binary(&attributes, &body) {
            Ok(event) => {
                let items = parse(event.as_bytes(), Shape::Single, received_at, range)?;
                (Shape::Binary, items, bytes::Bytes::from(event))
            }
            Err(reason) => {
                let rejection = Rejection {
                    line: 1,
                    reason,
                    raw: printable(&body),
                };
                (Shape::Binary, vec![Err(rejection)], body)
            }
        },
        None => {
            let shape = shape(headers)?;
            let items = parse(&body, shape, received_at, range)?;
            (shape, items, body)
        }
    };
    Ok(Request { shape, items, text })
}

/// The digest of the request: posting the same body twice quarantines its bad
/// items once.
fn digest(shape: Shape, text: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("{shape:?}").as_bytes());
    h.update([0]);
    h.update(text);
    h.finalize().into()
}

/// Append the events and quarantine the rejected items in one transaction, again
/// after a deadlock.
async fn store(
    state: &AppState,
    positions: &[u64],
    events: &[NewEvent],
    parse_rejects: &[Rejection],
    digest: &[u8; 32],
) -> Result<(crate::events::Appended, Vec<Rejection>), ApiError> {
    let mut client = state.primary().await?;
    let mut attempt = 1;
    loop {
        let written = async {
            let tx = client.transaction().await?;
            // the safety net: events the database refuses are quarantined at their
            // position, the others stored
            let (appended, refused) = append_salvaging(&*tx, events).await?;
            let mut rejects = parse_rejects.to_vec();
            for r in refused {
                let item = positions.get(r.index).copied().unwrap_or_default();
                tracing::warn!(item, sqlstate = %r.code, "the database refused an event: quarantined");
                rejects.push(Rejection {
                    line: item,
                    reason: r.reason,
                    raw: events.get(r.index).map(render).unwrap_or_default(),
                });
            }
            rejects.sort_by_key(|r| r.line);
            store_rejections(&*tx, &rejects, "api", digest).await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((appended, rejects))
        }
        .await;
        match written {
            // another writer inserted some of the same new events in another order
            Err(e) if is_deadlock(&e) && attempt < APPEND_ATTEMPTS => {
                tracing::warn!(attempt, "deadlock with another writer; appending again");
                tokio::time::sleep(deadlock_pause(attempt)).await;
                attempt += 1;
            }
            done => return Ok(done?),
        }
    }
}

/// 202 with the counts, or 422 when nothing was stored (every item rejected).
fn answer(
    appended: crate::events::Appended,
    rejects: Vec<Rejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let result = Appended {
        accepted: appended.inserted,
        duplicates: appended.duplicates,
        rejected: rejects.len() as u64,
        rejections: rejects
            .into_iter()
            .map(|r| ItemRejection {
                item: r.line,
                reason: r.reason,
            })
            .collect(),
    };
    tracing::info!(
        accepted = result.accepted,
        duplicates = result.duplicates,
        rejected = result.rejected,
        "events appended"
    );
    if appended.inserted + appended.duplicates == 0 {
        let detail = match result.rejections.as_slice() {
            [only] => format!("item {}: {}", only.item, only.reason),
            [first, ..] => format!(
                "all {} items were rejected; the first, item {}: {}",
                result.rejections.len(),
                first.item,
                first.reason
            ),
            [] => "no event was stored".to_string(),
        };
        let extensions = match serde_json::to_value(&result) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        return Err(ApiError::Unprocessable { detail, extensions });
    }
    Ok((StatusCode::ACCEPTED, Json(result)))
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
