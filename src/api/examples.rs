//! What the OpenAPI document shows by example: parameter values that answer 2xx on
//! the demo's data (`dvault gen` with its defaults: a year of history ending with the
//! last month), one problem per error status that fits the operation, and the
//! request bodies POST /events accepts. Applied to the generated document as JSON
//! (see [`super::openapi::document`]); every example here is asked of a server on
//! generated data by `tests/schemathesis.sh`, and must answer 2xx.

use chrono::{Datelike, Months, NaiveDate};
use serde_json::{Map, Value, json};

use super::error::{ApiError, PROBLEM_JSON};
use super::{analytics, customer_orders, customers, events, pagination, products};

/// Business keys the generator always makes (its ids are numbered from 1).
pub const CUSTOMER: &str = "C000042";
pub const PRODUCT: &str = "P00042";
pub const ORDER: &str = "O0000042";

/// Where the generator's default data ends.
use crate::generate::default_end as last_month_end;

/// Example values, by operation and parameter, for data generated in the month
/// before `today` (see [`last_month_end`]).
fn parameter_example(path: &str, name: &str, today: NaiveDate) -> Option<Value> {
    let end = last_month_end(today);
    let month_start = end.with_day(1).unwrap_or(end);
    // a date a quarter back inside the year of history: everyone registered by then
    // is there, with a shorter past
    let quarter_back = last_month_end(month_start - Months::new(2));
    let half_year = (month_start - Months::new(5))
        .with_day(1)
        .unwrap_or(month_start);
    let v = match (path, name) {
        (_, "id") if path.starts_with("/customers/") => json!(CUSTOMER),
        ("/products/{id}", "id") => json!(PRODUCT),
        ("/orders/{id}", "id") => json!(ORDER),
        ("/segments/{name}/customers", "name") => json!("Champions"),
        ("/customers/{id}", "as_of") => json!(quarter_back.to_string()),
        ("/customers", "segment") => json!("Champions"),
        ("/customers" | "/segments/{name}/customers", "churn_risk") => json!("active"),
        ("/customers" | "/segments/{name}/customers", "min_total_spent") => json!("100.00"),
        ("/customers" | "/segments/{name}/customers", "sort") => json!("-total_spent"),
        ("/customers/{id}/orders", "sort") => json!("-ordered_at"),
        ("/products", "sort") => json!("-revenue"),
        ("/products", "category") => json!("Electronics"),
        ("/orders", "from") => json!(month_start.to_string()),
        ("/orders", "to") => json!(end.to_string()),
        ("/orders", "status") => json!("delivered"),
        ("/orders", "sort") => json!("-ordered_at"),
        ("/analytics/revenue", "period") => json!("month"),
        ("/analytics/revenue", "from") => json!(half_year.to_string()),
        ("/analytics/revenue", "to") => json!(end.to_string()),
        (_, "limit") => json!(10),
        _ => return None,
    };
    Some(v)
}

/// The error each operation shows for `status`: what this server would answer.
fn problem_example(path: &str, status: u16) -> Option<ApiError> {
    let error = match (status, path) {
        (400, _) => return bad_request_example(path),
        (401, _) => ApiError::Unauthorized("no API key"),
        (403, "/events") => ApiError::Forbidden(
            "this API key has scope `read`; this request needs scope `write`".into(),
        ),
        (403, _) => ApiError::Forbidden("forbidden".into()),
        (404, _) => not_found_example(path),
        (413, _) => ApiError::PayloadTooLarge {
            limit: 4 * 1024 * 1024,
        },
        (415, _) => ApiError::UnsupportedMediaType {
            got: "text/csv".into(),
            accepted: events::CONTENT_TYPES,
        },
        (422, _) => {
            let reason = "not a CloudEvent: missing required attribute \"type\"";
            let extensions = json!({
                "accepted": 0, "duplicates": 0, "rejected": 1,
                "rejections": [{"item": 1, "reason": reason}]
            });
            ApiError::Unprocessable {
                detail: format!("item 1: {reason}"),
                extensions: extensions.as_object().cloned().unwrap_or_default(),
            }
        }
        (503, "/ready") => {
            let expected = crate::db::latest_known_version();
            let extensions = json!({"schema_version": expected - 1,
                                    "expected_schema_version": expected});
            ApiError::NotReady {
                detail: format!(
                    "the database schema is at version {}, this server needs {expected}: run \
                     `dvault migrate`",
                    expected - 1
                ),
                extensions: extensions.as_object().cloned().unwrap_or_default(),
            }
        }
        (503, _) => ApiError::Unavailable(String::new()),
        _ => return None,
    };
    Some(error)
}

/// The 400 of an operation: a bad value of the parameter it is most often given
/// wrong, else an unknown parameter.
fn bad_request_example(path: &str) -> Option<ApiError> {
    let sorts = |sorts: &[pagination::Sort]| sorts.iter().map(|s| s.name).collect::<Vec<_>>();
    let error = match path {
        "/customers" | "/segments/{name}/customers" => {
            ApiError::bad_param("sort", "unknown sort \"price\"", &sorts(&customers::SORTS))
        }
        "/customers/{id}/orders" => ApiError::bad_param(
            "sort",
            "unknown sort \"amount\"",
            &sorts(&customer_orders::ORDER_SORTS),
        ),
        "/products" => {
            ApiError::bad_param("sort", "unknown sort \"name\"", &sorts(&products::SORTS))
        }
        "/orders" => ApiError::bad_param(
            "status",
            "unknown status \"lost\"",
            &crate::mapping::ORDER_STATUSES,
        ),
        "/customers/{id}" => match super::params::parse_as_of("as_of", "yesterday") {
            Err(e) => e,
            Ok(_) => return None,
        },
        "/analytics/revenue" => ApiError::bad_param(
            "period",
            "unknown period \"year\"",
            &analytics::PERIODS.map(|(n, _)| n),
        ),
        "/events" => ApiError::BadRequest("the batch is empty: no events".into()),
        _ => ApiError::BadParameter {
            name: "fields".into(),
            message: "unknown parameter".into(),
            allowed: Vec::new(),
        },
    };
    Some(error)
}

/// The 404 of an operation: an unknown id of what it reads, else no such route.
fn not_found_example(path: &str) -> ApiError {
    match path {
        "/customers/{id}" | "/customers/{id}/orders" | "/customers/{id}/history" => {
            ApiError::not_found("customer", "C999999")
        }
        "/products/{id}" => ApiError::not_found("product", "P99999"),
        "/orders/{id}" => ApiError::not_found("order", "O9999999"),
        "/segments/{name}/customers" => ApiError::NotFound {
            what: "segment",
            id: "Whales".into(),
            allowed: super::openapi::SEGMENTS.map(String::from).to_vec(),
            as_of: None,
        },
        _ => ApiError::NoRoute {
            method: "GET".into(),
            path: path.into(),
        },
    }
}

/// One CloudEvent that the demo's mappings load: a new customer.
pub fn cloud_event_example(today: NaiveDate) -> Value {
    let day = last_month_end(today);
    json!({
        "specversion": "1.0",
        "type": "customer_registered",
        "source": "crm",
        "id": "example-customer-registered-1",
        "time": format!("{day}T09:30:00Z"),
        "datacontenttype": "application/json",
        "data": {
            "customer_id": "C900001",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "city": "London",
            "country": "United Kingdom",
            "signup_date": day.to_string()
        }
    })
}

/// The JSON Schema of one CloudEvent as POST /events reads it (docs/events.md).
fn cloud_event_schema() -> Value {
    json!({
        "type": "object",
        "description": "A CloudEvent 1.0 in JSON (structured mode). Extension attributes \
            are allowed and ignored. `type` names an event type of the mappings \
            (docs/events.md); an event whose `data` does not fit its mapping is \
            quarantined when it is loaded.",
        "required": ["specversion", "type", "source", "data"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "type": {"type": "string", "minLength": 1, "maxLength": 256,
                     "examples": ["customer_registered", "order_placed"]},
            "source": {"type": "string", "minLength": 1, "maxLength": 1024},
            "id": {"type": ["string", "null"], "maxLength": 1024,
                   "description": "Unique per source; missing: derived from the event's content"},
            "time": {"type": ["string", "null"], "format": "date-time",
                     "description": "Business time (RFC 3339); missing: the time of receipt"},
            "data": {"type": "object", "description": "The payload: a JSON object"}
        }
    })
}

/// Rewrite `doc` (the generated OpenAPI document) with the examples and body schemas.
pub fn apply(doc: &mut Value, today: NaiveDate) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            for p in op
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let name = p["name"].as_str().unwrap_or_default().to_string();
                if let Some(example) = parameter_example(path, &name, today) {
                    p["example"] = example;
                }
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                let Some(content) = response
                    .get_mut("content")
                    .and_then(|c| c.get_mut(PROBLEM_JSON))
                else {
                    continue;
                };
                if let Some(error) = problem_example(path, code) {
                    content["example"] = serde_json::to_value(error.problem()).unwrap_or_default();
                }
            }
        }
    }
    if let Some(body) = doc.pointer_mut("/paths/~1events/post/requestBody/content") {
        events_bodies(body, today);
    }
    if let Some(post) = doc.pointer_mut("/paths/~1events/post") {
        post["parameters"] = binary_mode_headers();
    }
}

/// The `ce-*` headers of CloudEvents' HTTP binary mode. With `ce-specversion` (and a
/// JSON body that is not `application/cloudevents*`), the body is one event's data.
fn binary_mode_headers() -> Value {
    let header = |name: &str, required_in_binary: bool, what: &str| {
        json!({"name": name, "in": "header", "required": false,
            "description": format!("Binary mode: {what}{}",
                if required_in_binary { " (required in binary mode)" } else { "" }),
            "schema": {"type": "string"}})
    };
    json!([
        {"name": "ce-specversion", "in": "header", "required": false,
         "description": "Binary mode (CloudEvents HTTP binding): the event's attributes are \
             the `ce-*` headers (values percent-encoded where needed), the body \
             (`application/json` or another `+json` type) is its `data` object. Validated, \
             deduplicated and quarantined like the same event in structured mode.",
         "schema": {"type": "string"}},
        header("ce-type", true, "the event type, e.g. `customer_registered`"),
        header("ce-source", true, "the record source, e.g. `crm`"),
        header("ce-id", false, "unique per source; missing: derived from the content"),
        header("ce-time", false, "business time, RFC 3339; missing: the time of receipt"),
    ])
}

/// The three bodies of POST /events, by content type.
fn events_bodies(content: &mut Value, today: NaiveDate) {
    let event = cloud_event_example(today);
    let mut second = event.clone();
    second["id"] = json!("example-customer-registered-2");
    second["data"]["customer_id"] = json!("C900002");
    second["data"]["first_name"] = json!("Alan");
    second["data"]["last_name"] = json!("Turing");
    second["data"]["email"] = json!("alan@example.com");
    let one = json!({"$ref": "#/components/schemas/CloudEvent"});
    // the items are not held to the CloudEvent schema here: an item that is not a
    // CloudEvent is quarantined on its own and the rest of the batch stored (202), so
    // a batch with a bad item is a valid request
    let batch = json!({"type": "array", "minItems": 1,
        "items": {"type": "object",
                  "description": "A CloudEvent (see the CloudEvent schema); an item that \
                                  is not one is quarantined, the others are stored"},
        "description": "A CloudEvents JSON batch: every item is validated on its own; \
                        bad ones are quarantined, the good ones stored"});
    let ndjson = format!("{event}\n{second}\n");
    let mut bodies = Map::new();
    bodies.insert(
        "application/cloudevents+json".into(),
        json!({"schema": one, "example": event}),
    );
    bodies.insert(
        "application/cloudevents-batch+json".into(),
        json!({"schema": batch, "example": [event, second]}),
    );
    bodies.insert(
        "application/json".into(),
        json!({"schema": {"anyOf": [one, batch, {"type": "object",
            "description": "Binary mode (`ce-specversion` header): the event's data"}]},
            "example": event}),
    );
    bodies.insert(
        "application/x-ndjson".into(),
        json!({"schema": {"type": "string", "contentMediaType": "application/x-ndjson",
            "description": "One CloudEvent (JSON object) per line; blank lines are skipped"},
            "example": ndjson}),
    );
    *content = Value::Object(bodies);
}

/// The components [`apply`] refers to.
pub fn add_schemas(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("CloudEvent".into(), cloud_event_schema());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_fall_in_the_generators_default_year() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 15).expect("date");
        assert_eq!(last_month_end(today).to_string(), "2026-02-28");
        let as_of = parameter_example("/customers/{id}", "as_of", today).expect("as_of");
        assert_eq!(as_of, "2025-11-30");
        let from = parameter_example("/analytics/revenue", "from", today).expect("from");
        assert_eq!(from, "2025-09-01");
        let jan = NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
        assert_eq!(last_month_end(jan).to_string(), "2026-12-31");
    }

    #[test]
    fn every_error_status_has_its_own_problem() {
        for (path, status) in [
            ("/customers", 400),
            ("/events", 401),
            ("/events", 403),
            ("/orders/{id}", 404),
            ("/events", 413),
            ("/events", 415),
            ("/events", 422),
            ("/ready", 503),
            ("/customers", 503),
        ] {
            let problem = problem_example(path, status).expect("an example").problem();
            assert_eq!(problem.status, status, "{path}");
        }
    }
}
