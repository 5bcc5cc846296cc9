//! axum's extractors, wrapped so that malformed input answers problem+json like every
//! other error: `Query`, `Path`, `Json` and `Body` (raw bytes under the size limit).
//! `Json` also serializes responses.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::ApiError;
use super::state::AppState;

/// Query parameters; unknown names and duplicates are a 400 that names them.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(name) = parts.uri.query().and_then(nul_parameter) {
            return Err(ApiError::bad_param(
                &name,
                "a NUL character (%00) is not allowed in a value",
                &[],
            ));
        }
        if let Some(name) = parts.uri.query().and_then(empty_choice) {
            return Err(ApiError::bad_param(
                &name,
                "an empty value is not one of the values this parameter takes; leave the \
                 parameter out for its default",
                &[],
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let message = text.trim_start_matches("Failed to deserialize query string: ");
                Err(match unknown_field(message) {
                    Some((name, allowed)) => ApiError::BadParameter {
                        name,
                        message: "unknown parameter".into(),
                        allowed,
                    },
                    None => ApiError::BadRequest(format!("bad query string: {message}")),
                })
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The name of the first parameter whose value holds a NUL (`%00`): PostgreSQL text
/// cannot hold one, so it would fail in the database (500) instead of here.
fn nul_parameter(query: &str) -> Option<String> {
    query
        .split('&')
        .find(|pair| pair.to_ascii_lowercase().contains("%00"))
        .map(|pair| pair.split('=').next().unwrap_or(pair).to_string())
}

/// Parameters that take a value from a closed list or a date: the document says which,
/// and an empty value is none of them (free text, `cursor` and the like may be empty).
const NOT_EMPTY: &[&str] = &[
    "sort",
    "segment",
    "churn_risk",
    "status",
    "period",
    "as_of",
    "from",
    "to",
];

/// The name of the first parameter of [`NOT_EMPTY`] given with an empty value.
fn empty_choice(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(name, value)| value.is_empty() && NOT_EMPTY.contains(name))
        .map(|(name, _)| name.to_string())
}

/// The name and the expected names in serde's "unknown field `x`, expected one of
/// `a`, `b`" (or "expected `a`", or "there are no fields").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = &message[message.find("unknown field `")? + "unknown field `".len()..];
    let (name, rest) = rest.split_once('`')?;
    let allowed = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), allowed))
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::BadRequest(format!("bad path: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::Internal(e.body_text())),
        }
    }
}

/// A JSON request body, or a JSON response.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.body_limit;
        refuse_announced_too_large(&req, limit)?;
        let reading = ReadingBody::start(&req);
        let read = axum::Json::<T>::from_request(req, state).await;
        reading.done();
        match read {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType {
                got: String::new(),
                accepted: &["application/json"],
            }),
            Err(JsonRejection::BytesRejection(e)) => Err(body_error(e, limit)),
            Err(e) => Err(ApiError::BadRequest(format!(
                "bad JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The raw request body, at most the configured limit.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.body_limit;
        refuse_announced_too_large(&req, limit)?;
        let reading = ReadingBody::start(&req);
        let read = Bytes::from_request(req, state).await;
        reading.done();
        read.map(Body).map_err(|e| body_error(e, limit))
    }
}

/// Set in a request's extensions by the timeout middleware: true while a handler is
/// still receiving the request body, so that running out of time then is the
/// client's slowness (408), not ours (503).
#[derive(Clone, Default)]
pub struct BodyProgress(Arc<AtomicBool>);

impl BodyProgress {
    pub fn reading(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Marks the body as being read until [`ReadingBody::done`]. Not on drop: when the
/// timeout abandons the read, the mark must still be there for it to see.
struct ReadingBody(Option<BodyProgress>);

impl ReadingBody {
    fn start(req: &Request) -> ReadingBody {
        let progress = req.extensions().get::<BodyProgress>().cloned();
        if let Some(p) = &progress {
            p.0.store(true, Ordering::Relaxed);
        }
        ReadingBody(progress)
    }
}

impl ReadingBody {
    fn done(self) {
        if let Some(p) = &self.0 {
            p.0.store(false, Ordering::Relaxed);
        }
    }
}

/// A `Content-Length` over the limit is refused before waiting for the body (which
/// would otherwise run into the request timeout first).
fn refuse_announced_too_large(req: &Request, limit: usize) -> Result<(), ApiError> {
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_choice_is_named() {
        assert_eq!(empty_choice("sort=&limit=5").as_deref(), Some("sort"));
        assert_eq!(empty_choice("limit=5&as_of").as_deref(), Some("as_of"));
        assert_eq!(empty_choice("cursor=&country=&sort=-total_spent"), None);
        assert_eq!(empty_choice(""), None);
    }

    #[test]
    fn unknown_query_parameters_are_named() {
        assert_eq!(
            unknown_field("foo: unknown field `foo`, expected one of `segment`, `limit`"),
            Some((
                "foo".to_string(),
                vec!["segment".to_string(), "limit".to_string()]
            ))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `period`"),
            Some(("x".to_string(), vec!["period".to_string()]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, there are no fields"),
            Some(("x".to_string(), vec![]))
        );
        assert_eq!(unknown_field("invalid digit"), None);
        assert_eq!(
            nul_parameter("limit=5&country=a%00b"),
            Some("country".to_string())
        );
        assert_eq!(nul_parameter("country=Italy"), None);
    }
}
