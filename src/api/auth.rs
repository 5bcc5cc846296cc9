//! API keys as bearer tokens. The server stores only each key's SHA-256 and compares
//! digests in constant time. With no key configured, reads are open and writes refused.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::{ApiKey, Scope};
use super::error::ApiError;
use super::state::AppState;

/// The scope of the key whose token this is, if any. Every configured key is
/// compared (no early exit), each comparison in constant time.
pub fn authenticate(keys: &[ApiKey], token: &str) -> Option<Scope> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for key in keys {
        if bool::from(key.sha256.ct_eq(&digest)) {
            found = found.max(Some(key.scope));
        }
    }
    found
}

/// Whether a request with these headers may do what needs `needed`.
pub fn check(keys: &[ApiKey], headers: &HeaderMap, needed: Scope) -> Result<(), ApiError> {
    if keys.is_empty() {
        return match needed {
            Scope::Read => Ok(()),
            Scope::Write => Err(ApiError::Forbidden(
                "writes are disabled: this server has no API keys configured \
                 (set DVAULT_API_KEYS or --api-key with a write key)"
                    .into(),
            )),
        };
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("no API key"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is not a bearer token",
        ))?;
    let scope = authenticate(keys, token).ok_or(ApiError::Unauthorized("unknown API key"))?;
    if scope < needed {
        return Err(ApiError::Forbidden(format!(
            "this API key has scope `{}`; this request needs scope `{}`",
            scope.as_str(),
            needed.as_str()
        )));
    }
    Ok(())
}

/// Middleware for the read endpoints.
pub async fn require_read(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(&state.config.keys, req.headers(), Scope::Read)?;
    Ok(next.run(req).await)
}

/// Middleware for the write endpoints.
pub async fn require_write(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(&state.config.keys, req.headers(), Scope::Write)?;
    Ok(next.run(req).await)
}

/// What the server says about its keys when it starts.
pub fn describe(keys: &[ApiKey]) -> String {
    if keys.is_empty() {
        return "no API keys configured: reads are open to anyone who can reach this address, \
                writes (POST /events) are refused"
            .into();
    }
    let writers = keys.iter().filter(|k| k.scope == Scope::Write).count();
    format!(
        "{} API key(s) configured ({} read, {writers} write): every data endpoint needs a bearer token",
        keys.len(),
        keys.len() - writers
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    #[test]
    fn scopes_and_tokens() {
        let keys = [
            ApiKey::for_token(Scope::Read, "r-token"),
            ApiKey::for_token(Scope::Write, "w-token"),
        ];
        assert_eq!(authenticate(&keys, "r-token"), Some(Scope::Read));
        assert_eq!(authenticate(&keys, "w-token"), Some(Scope::Write));
        assert_eq!(authenticate(&keys, "nope"), None);

        let status = |auth, needed| match check(&keys, &headers(auth), needed) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        };
        assert_eq!(status(None, Scope::Read), 401);
        assert_eq!(status(Some("Basic abc"), Scope::Read), 401);
        assert_eq!(status(Some("Bearer nope"), Scope::Read), 401);
        assert_eq!(status(Some("Bearer r-token"), Scope::Read), 200);
        assert_eq!(status(Some("bearer r-token"), Scope::Read), 200);
        assert_eq!(status(Some("Bearer r-token"), Scope::Write), 403);
        assert_eq!(status(Some("Bearer w-token"), Scope::Write), 200);
        assert_eq!(status(Some("Bearer w-token"), Scope::Read), 200);
    }

    #[test]
    fn without_keys_reads_are_open_and_writes_refused() {
        assert!(check(&[], &headers(None), Scope::Read).is_ok());
        let err = check(&[], &headers(Some("Bearer x")), Scope::Write).expect_err("refused");
        assert_eq!(err.status().as_u16(), 403);
        assert!(describe(&[]).contains("writes (POST /events) are refused"));
    }
}
