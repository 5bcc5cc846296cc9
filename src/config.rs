//! One typed configuration, read once (from flags and `DATABASE_URL` / `DVAULT_*`
//! environment variables by the CLI) and passed down. Tests build it directly.

use std::fmt;
use std::path::PathBuf;

/// Where dvault finds its database and its files.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: an existing PostgreSQL. When `None`, dvault starts (or reuses)
    /// a private server under `home`.
    pub database_url: Option<String>,
    /// Project-local state (`DVAULT_HOME`, default `.dvault`): the private server.
    pub home: PathBuf,
    /// Mapping files (`DVAULT_MAPPINGS`); `None` uses the mappings built into the binary.
    pub mappings_dir: Option<PathBuf>,
    /// Pool size for commands that use several connections.
    pub pool_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            home: PathBuf::from(".dvault"),
            mappings_dir: None,
            pool_size: 8,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("home", &self.home)
            .field("mappings_dir", &self.mappings_dir)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// A connection string fit for logs and terminals: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some(at) = authority.rfind('@') {
            let (userinfo, host) = authority.split_at(at);
            if let Some(colon) = userinfo.find(':') {
                return format!("{scheme}{}:***{host}{tail}", &userinfo[..colon]);
            }
        }
        return url.to_string();
    }
    // key=value form
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/dvault"),
            "postgres://app:***@db:5432/dvault"
        );
        assert_eq!(
            redact_url("postgres://app@db/dvault"),
            "postgres://app@db/dvault"
        );
        assert_eq!(
            redact_url("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
        let cfg = Config {
            database_url: Some("postgresql://u:pw@h/d".into()),
            ..Config::default()
        };
        assert!(!format!("{cfg:?}").contains("pw@"));
    }
}
