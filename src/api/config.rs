//! The API server's typed configuration: built once by `dvault serve` from flags and
//! `DVAULT_*` variables, edited directly by tests.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// What an API key may do. `Write` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// An API key as configured: its scope and the SHA-256 of the token (never the token).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub scope: Scope,
    pub sha256: [u8; 32],
}

impl ApiKey {
    /// The key for a token, as a client would present it (tests, `--help` examples).
    pub fn for_token(scope: Scope, token: &str) -> ApiKey {
        use sha2::Digest;
        ApiKey {
            scope,
            sha256: sha2::Sha256::digest(token.as_bytes()).into(),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // enough to tell keys apart in a log, not enough to look one up
        write!(
            f,
            "{}:{}…",
            self.scope.as_str(),
            &hex::encode(self.sha256)[..8]
        )
    }
}

impl FromStr for ApiKey {
    type Err = String;

    /// `read:<sha256 hex>` or `write:<sha256 hex>`.
    fn from_str(s: &str) -> Result<ApiKey, String> {
        let (scope, digest) = s.trim().split_once(':').ok_or_else(|| {
            "an API key is SCOPE:SHA256HEX, e.g. read:<64 hex digits> (the SHA-256 of the token)"
                .to_string()
        })?;
        let scope = match scope {
            "read" => Scope::Read,
            "write" => Scope::Write,
            other => return Err(format!("unknown scope {other:?}: use read or write")),
        };
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(digest, &mut sha256).map_err(|_| {
            format!(
                "the {} key's digest must be 64 hex digits (the SHA-256 of the token, e.g. \
                 `printf %s \"$TOKEN\" | sha256sum`), not the token itself",
                scope.as_str()
            )
        })?;
        Ok(ApiKey { scope, sha256 })
    }
}

/// Cross-origin requests allowed from browsers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS headers: browsers on other origins cannot call the API.
    #[default]
    Off,
    /// Any origin (`*`).
    Any,
    /// These origins, e.g. `https://app.example.com`.
    Origins(Vec<String>),
}

impl Cors {
    /// From a list of origins; `*` alone means any, none means off.
    pub fn from_origins(origins: &[String]) -> Cors {
        let origins: Vec<String> = origins
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            Cors::Off
        } else if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::Origins(origins)
        }
    }
}

/// How the API server runs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `--listen` / `DVAULT_LISTEN`.
    pub listen: SocketAddr,
    /// With none, reads are open and writes refused.
    pub keys: Vec<ApiKey>,
    /// A request running longer is abandoned with a 503 (and its query cancelled).
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    pub cors: Cors,
    /// Database connections.
    pub pool_size: usize,
    /// Business times accepted by POST /events (`--business-time-from` / `-until`).
    pub time_range: crate::events::limits::TimeRange,
    /// With a read replica: GET /ready answers 503 while its replay lags more than
    /// this (`--max-replica-lag`).
    pub max_replica_lag: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            keys: Vec::new(),
            request_timeout: Duration::from_secs(30),
            body_limit: 4 * 1024 * 1024,
            cors: Cors::Off,
            pool_size: 8,
            time_range: crate::events::limits::TimeRange::default(),
            max_replica_lag: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_scope_and_digest() {
        let digest = "a".repeat(64);
        let key: ApiKey = format!("read:{digest}").parse().expect("valid");
        assert_eq!(key.scope, Scope::Read);
        assert_eq!(key.sha256, [0xaa; 32]);
        assert_eq!(format!("{key:?}"), "read:aaaaaaaa…");
        let key: ApiKey = format!(" write:{digest} ").parse().expect("valid");
        assert_eq!(key.scope, Scope::Write);

        let err = "admin:00".parse::<ApiKey>().expect_err("bad scope");
        assert!(err.contains("unknown scope \"admin\""), "{err}");
        let err = "read:s3cret-token"
            .parse::<ApiKey>()
            .expect_err("not a digest");
        assert!(err.contains("64 hex digits"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the token must not be echoed: {err}"
        );
        assert!("justatoken".parse::<ApiKey>().is_err());
    }

    #[test]
    fn cors_from_origins() {
        assert_eq!(Cors::from_origins(&[]), Cors::Off);
        assert_eq!(Cors::from_origins(&["".into()]), Cors::Off);
        assert_eq!(Cors::from_origins(&["*".into()]), Cors::Any);
        assert_eq!(
            Cors::from_origins(&["https://a.example".into()]),
            Cors::Origins(vec!["https://a.example".into()])
        );
    }
}
