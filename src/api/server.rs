//! The HTTP server loop: accepts connections and serves [`super::router`] on each, with
//! limits a slow or idle client cannot outlast.
//!
//! `axum::serve` sets no timer on hyper, so a client that sends its headers a byte at a
//! time (or opens a connection and says nothing) holds a connection and a task forever.
//! Here every HTTP/1 connection must deliver a request's headers within the request
//! timeout (this also closes idle keep-alive connections), HTTP/2 connections are
//! pinged and dropped when they stop answering, and a body that arrives too slowly is
//! cut off by the request timeout middleware (408). Requests hyper cannot parse are
//! answered problem+json by [`ProblemIo`] (see [`super::protocol`]).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use super::protocol::{self, ProblemIo};

/// How long connections in flight get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `shutdown` completes; requests in flight are
/// finished first (for at most [`DRAIN`]). `header_timeout` bounds the wait for a
/// request's headers, on a new connection and between requests on a kept-alive one.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(protocol::MAX_HEADERS)
        .max_buf_size(protocol::MAX_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // out of file descriptors and the like: back off, keep serving
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: axum::http::Request<Incoming>| req.map(axum::body::Body::new)),
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's protocol detection (HTTP/1 or 2) waits for the first bytes with
            // no timer of its own: a connection that says nothing is dropped here
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(ProblemIo::new(stream)), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                // a client that went away or was too slow: nothing to answer
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after the shutdown signal: closing them",
            DRAIN.as_secs()
        );
    }
    Ok(())
}
