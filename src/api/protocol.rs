//! Problem+json for the requests hyper refuses before any handler runs.
//!
//! hyper answers a request it cannot parse by itself, with an empty body: 400 (a control
//! character in a header, a space in the request target, a bad method or version), 414
//! (a target longer than [`MAX_URI`]) and 431 (more than [`MAX_HEADERS`] headers, or a
//! head larger than [`MAX_HEAD`]). hyper 1.x has no hook for these answers (they are
//! written by `proto::h1::Conn::on_parse_error` from a bare status, before a request
//! exists), so [`ProblemIo`] wraps the connection's socket and replaces them on their
//! way out with the problem document every other error of the API carries.
//!
//! hyper's automatic answer is recognisable exactly: it is written alone (a head with
//! `content-length: 0` and no `content-type`, no body) with one of the three statuses,
//! and the connection is closed after it. None of our own answers looks like that: every
//! 4xx of the router goes through `problem_fallback` and carries
//! `content-type: application/problem+json` and a body. HTTP/2 protocol errors are
//! answered with h2 error frames (no body exists there to fill).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::{ApiError, PROBLEM_JSON};

/// Longest request target hyper accepts, in bytes (`hyper::proto::h1::role::MAX_URI_LEN`);
/// longer: 414.
pub const MAX_URI: usize = 65_534;
/// Most headers a request may carry; more: 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request head (request line and headers) hyper buffers, in bytes; larger:
/// 431. hyper's default, set explicitly so that the documented figure is ours.
pub const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The problem hyper's automatic answer with `status` stands for, if it is one.
fn problem_for(status: &[u8]) -> Option<ApiError> {
    match status {
        b"400" => Some(ApiError::MalformedRequest),
        b"414" => Some(ApiError::UriTooLong { limit: MAX_URI }),
        b"431" => Some(ApiError::HeadersTooLarge {
            max_headers: MAX_HEADERS,
            max_bytes: MAX_HEAD,
        }),
        _ => None,
    }
}

/// If `out` is exactly one of hyper's automatic parse-error answers, the answer to
/// send instead.
fn replacement(out: &[u8]) -> Option<Vec<u8>> {
    let head = out.strip_suffix(b"\r\n\r\n")?;
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let error = problem_for(rest.get(..3)?)?;
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    // a head alone, announcing no body and no type: not one of ours
    let mut headers = head.split("\r\n").skip(1);
    let typed_or_body = |h: &str| {
        h.is_empty() || h.starts_with("content-type:") || h.starts_with("transfer-encoding:")
    };
    if headers.clone().any(typed_or_body) || !headers.any(|h| h == "content-length: 0") {
        return None;
    }
    let problem = serde_json::to_vec(&error.problem()).ok()?;
    let status = error.status();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        problem.len()
    )
    .into_bytes();
    answer.extend_from_slice(&problem);
    tracing::debug!(status = status.as_u16(), error = %error, "unparsable request");
    Some(answer)
}

/// A connection's socket that rewrites hyper's empty parse-error answers into
/// problem+json (see the module's documentation); everything else passes unchanged.
pub struct ProblemIo<S> {
    inner: S,
    /// A replacement answer still to be written, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<S> ProblemIo<S> {
    pub fn new(inner: S) -> Self {
        ProblemIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    /// Write out what is pending; ready when nothing is left.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            // taken whole: hyper sees its answer written, the client gets ours
            self.pending = answer;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(answer) = replacement(only)
        {
            self.pending = answer;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_parse_error_answers_are_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 06:00:00 GMT\r\n\r\n";
        let answer = replacement(hyper_400).expect("replaced");
        let text = String::from_utf8(answer).expect("utf-8");
        assert!(
            text.starts_with(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("urn:dvault:problem:malformed-request"),
            "{text}"
        );
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(hyper_431).is_some_and(|a| a.ends_with(b"}")));
        for ours in [
            // one of ours: typed, with a body
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            // another status
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // a head with a body after it, or a body alone
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"status\": 400}",
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(replacement(ours), None, "{}", String::from_utf8_lossy(ours));
        }
    }
}
