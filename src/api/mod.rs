//! The Customer 360 REST API (`dvault serve`): a thin layer over the `mart` views and
//! the event log. Handlers read views and append events; no business logic lives here.
//!
//! [`router`] builds the whole application (tests call it directly and bind port 0);
//! [`serve`] runs it until a shutdown signal, finishing requests in flight.

mod analytics;
pub mod auth;
pub mod config;
mod customer_orders;
mod customers;
mod dashboard;
pub mod error;
mod events;
mod examples;
mod extract;
mod health;
mod history;
mod metrics;
pub mod openapi;
mod orders;
mod pagination;
mod params;
mod products;
mod protocol;
mod replica;
mod segments;
mod server;
mod state;
mod values;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub use config::{ApiConfig, ApiKey, Cors, Scope};
pub use error::{ApiError, Problem};
pub use state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API: routes, auth, and the middleware every request goes through.
pub fn router(state: AppState) -> Router {
    let reads = Router::new()
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customers::one))
        .route("/customers/{id}/orders", get(customer_orders::orders))
        .route("/customers/{id}/history", get(history::customer_history))
        .route("/products", get(products::list))
        .route("/products/{id}", get(products::one))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::one))
        .route("/segments", get(segments::list))
        .route("/segments/{name}/customers", get(segments::members))
        .route("/analytics/revenue", get(analytics::revenue))
        .route("/analytics/churn", get(analytics::churn))
        .route("/analytics/categories", get(analytics::categories))
        .route("/analytics/top-products", get(analytics::top_products))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_read,
        ));
    let writes = Router::new()
        .route("/events", post(events::post))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_write,
        ));
    let operations = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::render));

    let config = &state.config;
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(record_response)
                // failures are logged once, where they are turned into a response
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(cors(&config.cors))
        .layer(CompressionLayer::new().gzip(true))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            problem_fallback,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(DefaultBodyLimit::max(config.body_limit));

    Router::new()
        .merge(reads)
        .merge(writes)
        .merge(operations)
        .merge(openapi::swagger_ui())
        .merge(dashboard::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` completes; requests in flight
/// are finished first. A client gets `--request-timeout` to send a request's headers
/// (also between requests on a kept-alive connection) and, through the timeout
/// middleware, its body.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.config.request_timeout;
    server::run(listener, router(state), header_timeout, shutdown).await
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: call it before the server says it is
/// listening, so that a signal sent right after that line stops it gracefully instead
/// of killing it (the default action) before `serve` got to wait for one.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let received = |handler: std::io::Result<tokio::signal::unix::Signal>| async move {
            match handler {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(interrupt) => {},
            () = received(terminate) => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}

/// One span per request: fields declared here, `status` recorded when it is answered.
fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        path = %req.uri().path(),
        request_id,
        status = tracing::field::Empty,
    )
}

fn record_response<B>(res: &axum::http::Response<B>, latency: Duration, span: &tracing::Span) {
    span.record("status", res.status().as_u16());
    tracing::debug!(latency_ms = latency.as_secs_f64() * 1000.0, "answered");
}

fn cors(config: &Cors) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER, header::LINK]);
    match config {
        Cors::Off => CorsLayer::new(),
        Cors::Any => layer.allow_origin(AllowOrigin::any()),
        Cors::Origins(origins) => layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| o.parse().ok()),
        )),
    }
}

/// Abandon a request that runs past the configured limit (its query is cancelled by
/// the database's own `statement_timeout`, set to the same limit).
/// A body still arriving when the time is up is the client's slowness: 408, and the
/// connection is closed (hyper does not keep a connection whose body was not read).
async fn timeout(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let progress = extract::BodyProgress::default();
    req.extensions_mut().insert(progress.clone());
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) if progress.reading() => ApiError::SlowClient {
            limit_secs: limit.as_secs_f64(),
        }
        .into_response(),
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}

/// Safety net: an error answered by something other than [`ApiError`] (a layer, an
/// extractor we did not wrap) still goes out as problem+json, with a generic detail.
async fn problem_fallback(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(error::PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NoRoute { method, path },
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed { method, path },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: state.config.body_limit,
        },
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized("not authenticated"),
        StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden".into()),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout,
        StatusCode::REQUEST_TIMEOUT => ApiError::SlowClient {
            limit_secs: state.config.request_timeout.as_secs_f64(),
        },
        s if s.is_client_error() => ApiError::BadRequest(format!(
            "the request was refused ({})",
            s.canonical_reason().unwrap_or("client error")
        )),
        s => ApiError::Internal(format!("{s} answered without a problem body")),
    };
    let mut problem = error.into_response();
    *problem.status_mut() = status;
    // keep the headers the original answer carried (Allow, CORS, ...), but our body
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}
