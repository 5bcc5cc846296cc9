//! The API's one error type and its one `IntoResponse`: every error answers
//! `application/problem+json` (RFC 9457) with one status per variant. Client mistakes
//! say precisely what is wrong; server faults say nothing of their cause (it is
//! logged once, in the request's span). No SQL text or stack trace ever reaches a body.

use std::error::Error as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::PoolError;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

use crate::db::chain;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying when the database is unreachable.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter (or path segment) has a value the API cannot use.
    #[error("parameter `{name}`: {message}")]
    BadParameter {
        name: String,
        message: String,
        /// The values (or forms) that would be accepted.
        allowed: Vec<String>,
    },
    /// The request as a whole is malformed (unparsable body, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// A series would hold more points than one answer may: narrow it.
    #[error("the {period} series has {points} points, more than {limit}")]
    SeriesTooLong {
        /// `day`, `week` or `month`.
        period: String,
        first: chrono::NaiveDate,
        last: chrono::NaiveDate,
        points: i64,
        limit: usize,
    },
    #[error("unsupported content type {got:?}")]
    UnsupportedMediaType {
        got: String,
        accepted: &'static [&'static str],
    },
    #[error("no {what} {id:?}")]
    NotFound {
        what: &'static str,
        id: String,
        /// The ids that exist, when they are few (segment names).
        allowed: Vec<String>,
        /// The business time asked for (`as_of`): none then, maybe some now.
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    #[error("no route {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Not HTTP/1.1 that hyper can parse (answered by `protocol::ProblemIo`).
    #[error("the request could not be parsed")]
    MalformedRequest,
    /// A request target longer than hyper accepts (answered by `protocol::ProblemIo`).
    #[error("request target longer than {limit} bytes")]
    UriTooLong { limit: usize },
    /// Too many headers, or a head too large (answered by `protocol::ProblemIo`).
    #[error("more than {max_headers} headers or {max_bytes} bytes of head")]
    HeadersTooLarge {
        max_headers: usize,
        max_bytes: usize,
    },
    /// Every item of a write was refused; the body says why, item by item.
    #[error("every event was rejected")]
    Unprocessable {
        detail: String,
        extensions: serde_json::Map<String, serde_json::Value>,
    },
    /// The database cannot be reached or is shutting down. The cause is logged only.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database is reachable but cannot serve: schema behind, views missing.
    #[error("not ready: {detail}")]
    NotReady {
        detail: String,
        extensions: serde_json::Map<String, serde_json::Value>,
    },
    /// The request ran past the server's time limit (or the database cancelled it).
    #[error("request timed out")]
    Timeout,
    /// The client did not send its request body within the time limit.
    #[error("the request body arrived too slowly")]
    SlowClient { limit_secs: f64 },
    /// A fault of ours. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:dvault:problem:bad-parameter",
    "title": "Bad parameter",
    "status": 400,
    "detail": "parameter `sort`: unknown sort \"price\"; allowed: customer_id, -customer_id, total_spent, -total_spent",
    "parameter": "sort",
    "allowed": ["customer_id", "-customer_id", "total_spent", "-total_spent"]
}))]
pub struct Problem {
    /// A URN naming the kind of problem; stable, documented in docs/api.md.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, precisely.
    pub detail: String,
    /// The offending query or path parameter, for `bad-parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The values the parameter accepts, for `bad-parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// Extension members of some problems (e.g. the per-event reasons of a rejected write).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// A bad parameter value, with the values that would be accepted.
    pub fn bad_param(name: &str, message: impl Into<String>, allowed: &[&str]) -> ApiError {
        ApiError::BadParameter {
            name: name.to_string(),
            message: message.into(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn not_found(what: &'static str, id: &str) -> ApiError {
        ApiError::not_found_at(what, id, None)
    }

    /// [`ApiError::not_found`] at the business time `as_of`, when one was asked for.
    pub fn not_found_at(
        what: &'static str,
        id: &str,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ApiError {
        ApiError::NotFound {
            what,
            id: id.to_string(),
            allowed: Vec::new(),
            as_of,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. }
            | ApiError::BadRequest(_)
            | ApiError::MalformedRequest
            | ApiError::SeriesTooLong { .. } => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::SlowClient { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::NotReady { .. } | ApiError::Timeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let (parameter, allowed) = match self {
            ApiError::BadParameter { name, allowed, .. } => (
                Some(name.clone()),
                (!allowed.is_empty()).then(|| allowed.clone()),
            ),
            ApiError::NotFound { allowed, .. } if !allowed.is_empty() => {
                (None, Some(allowed.clone()))
            }
            _ => (None, None),
        };
        Problem {
            problem_type: format!("urn:dvault:problem:{slug}"),
            title: title.to_string(),
            status: self.status().as_u16(),
            detail: self.detail(),
            parameter,
            allowed,
            extensions: self.extensions(),
        }
    }

    /// The problem type's slug (`urn:dvault:problem:<slug>`) and its title: one
    /// per variant, the same for every instance.
    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadParameter { .. } => ("bad-parameter", "Bad parameter"),
            ApiError::BadRequest(_) => ("bad-request", "Malformed request"),
            ApiError::SeriesTooLong { .. } => ("series-too-long", "Series too long"),
            ApiError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported content type")
            }
            ApiError::NotFound { .. } => ("not-found", "Not found"),
            ApiError::NoRoute { .. } => ("no-route", "No such endpoint"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Unauthorized(_) => ("unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Request body too large"),
            ApiError::MalformedRequest => ("malformed-request", "Malformed HTTP request"),
            ApiError::UriTooLong { .. } => ("uri-too-long", "Request target too long"),
            ApiError::HeadersTooLarge { .. } => ("headers-too-large", "Request headers too large"),
            ApiError::Unprocessable { .. } => ("events-rejected", "Every event was rejected"),
            ApiError::Unavailable(_) => ("database-unavailable", "Database unavailable"),
            ApiError::NotReady { .. } => ("not-ready", "Not ready"),
            ApiError::Timeout => ("timeout", "Request timed out"),
            ApiError::SlowClient { .. } => ("request-timeout", "Request sent too slowly"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }

    /// What went wrong in this instance, and what to do about it.
    fn detail(&self) -> String {
        match self {
            ApiError::BadParameter {
                name,
                message,
                allowed,
            } if !allowed.is_empty() => {
                format!(
                    "parameter `{name}`: {message}; allowed: {}",
                    allowed.join(", ")
                )
            }
            ApiError::BadParameter { name, message, .. } => {
                format!("parameter `{name}`: {message}")
            }
            ApiError::BadRequest(message) => message.clone(),
            ApiError::SeriesTooLong {
                period,
                first,
                last,
                points,
                limit,
            } => format!(
                "the {period} series from {first} to {last} has {points} {period}s, more than \
                 the limit of {limit} points per answer; narrow it with `from` and `to`, or \
                 ask for a longer period"
            ),
            ApiError::UnsupportedMediaType { got, accepted } => format!(
                "content type {got:?} is not accepted here; use one of: {}",
                accepted.join(", ")
            ),
            ApiError::NotFound {
                what, id, allowed, ..
            } if !allowed.is_empty() => {
                format!("no {what} {id:?}; allowed: {}", allowed.join(", "))
            }
            ApiError::NotFound {
                what,
                id,
                as_of: Some(t),
                ..
            } => format!(
                "no {what} {id:?} as of {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            ApiError::NotFound { what, id, .. } => format!("no {what} {id:?}"),
            ApiError::NoRoute { method, path } => format!(
                "no endpoint {method} {path}; the endpoints are listed at /openapi.json and /docs"
            ),
            ApiError::MethodNotAllowed { method, path } => {
                format!("{method} is not allowed on {path}")
            }
            ApiError::Unauthorized(reason) => {
                format!("{reason}: send an API key as `Authorization: Bearer <key>`")
            }
            ApiError::Forbidden(reason) => reason.clone(),
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body is larger than the limit of {limit} bytes")
            }
            ApiError::MalformedRequest => "the request is not valid HTTP/1.1: a control character \
                in a header, a space or another character not allowed in the request target \
                (percent-encode it), or a bad method, header name or version; the connection is closed"
                .to_string(),
            ApiError::UriTooLong { limit } => format!(
                "the request target (path and query) is longer than {limit} bytes; the connection is closed"
            ),
            ApiError::HeadersTooLarge {
                max_headers,
                max_bytes,
            } => format!(
                "the request has more than {max_headers} headers, or its request line and headers \
                 are larger than {max_bytes} bytes; the connection is closed"
            ),
            ApiError::Unprocessable { detail, .. } | ApiError::NotReady { detail, .. } => {
                detail.clone()
            }
            ApiError::Unavailable(_) => {
                format!("the database cannot be reached right now; retry in {RETRY_AFTER_SECS} s")
            }
            ApiError::Timeout => {
                "the request took too long and was abandoned; retry later or narrow it".to_string()
            }
            ApiError::SlowClient { limit_secs } => format!(
                "the request body did not arrive within {limit_secs} s; the connection is closed"
            ),
            ApiError::Internal(_) => {
                "something went wrong on our side; it has been logged".to_string()
            }
        }
    }

    /// Machine-readable members beside the detail (RFC 9457 extension members).
    fn extensions(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            ApiError::Unprocessable { extensions, .. } | ApiError::NotReady { extensions, .. } => {
                extensions.clone()
            }
            ApiError::SeriesTooLong {
                first,
                last,
                points,
                limit,
                ..
            } => serde_json::Map::from_iter([
                ("first".to_string(), serde_json::json!(first)),
                ("last".to_string(), serde_json::json!(last)),
                ("points".to_string(), serde_json::json!(points)),
                ("limit".to_string(), serde_json::json!(limit)),
            ]),
            _ => serde_json::Map::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            ApiError::Timeout => tracing::warn!("request timed out"),
            ApiError::SlowClient { .. } => tracing::info!("request body too slow: cut off"),
            _ => tracing::debug!(error = %self, "client error"),
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dvault\""),
            );
        }
        response
    }
}

/// SQLSTATEs that mean "the database is not there right now", not "your query is wrong".
/// On a hot standby a query can also be cancelled by a conflict with the WAL it
/// replays (40001, 40P01): the same query a moment later succeeds.
fn is_unavailable(code: &SqlState) -> bool {
    code.code().starts_with("08") // connection exceptions
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::DATABASE_DROPPED
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = e
            .source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        match e.code() {
            _ if e.is_closed() || io => ApiError::Unavailable(chain(&e)),
            Some(code) if is_unavailable(code) => ApiError::Unavailable(chain(&e)),
            Some(code) if *code == SqlState::QUERY_CANCELED => ApiError::Timeout,
            _ => ApiError::Internal(chain(&e)),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            // waiting for a free connection: the pool is busy, or the server is away
            PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed => {
                ApiError::Unavailable(chain(&e))
            }
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                ApiError::Internal(chain(&e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameter_names_the_parameter_and_the_allowed_values() {
        let e = ApiError::bad_param(
            "period",
            "unknown period \"year\"",
            &["day", "week", "month"],
        );
        let p = e.problem();
        assert_eq!(p.status, 400);
        assert_eq!(p.parameter.as_deref(), Some("period"));
        assert_eq!(
            p.detail,
            "parameter `period`: unknown period \"year\"; allowed: day, week, month"
        );
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["type"], "urn:dvault:problem:bad-parameter");
        assert_eq!(json["allowed"][2], "month");
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let p =
            ApiError::Internal("SELECT secret FROM t: relation does not exist".into()).problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("SELECT"));
        let p = ApiError::Unavailable("connection refused (127.0.0.1:5432)".into()).problem();
        assert_eq!(p.status, 503);
        assert!(!p.detail.contains("127.0.0.1"));
    }
}
