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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            home: PathBuf::from(".dvault"),
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

/// `url` with `password` as its password (replacing any), for a password read from a
/// file. URL form: the password percent-encoded into the user info, which must name a
/// user; key=value form: a quoted `password=`.
pub fn with_password(url: &str, password: &str) -> Result<String, String> {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let Some(at) = authority.rfind('@') else {
            return Err(
                "DATABASE_URL names no user to give the password file's password to \
                 (postgres://USER@HOST/DB)"
                    .into(),
            );
        };
        let (userinfo, host) = authority.split_at(at);
        let user = userinfo.split(':').next().unwrap_or(userinfo);
        let encoded: String = password
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        return Ok(format!("{scheme}{user}:{encoded}{host}{tail}"));
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect();
    let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
    Ok(format!("{} password='{quoted}'", kept.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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

    #[test]
    fn a_password_from_a_file_goes_into_the_connection() {
        let url = with_password(
            "postgres://app@db:5432/dvault?sslmode=disable",
            "p@ss w:rd/%",
        )
        .expect("url");
        assert_eq!(
            url,
            "postgres://app:p%40ss%20w%3Ard%2F%25@db:5432/dvault?sslmode=disable"
        );
        let config = tokio_postgres::Config::from_str(&url).expect("parses");
        assert_eq!(config.get_password(), Some("p@ss w:rd/%".as_bytes()));
        assert_eq!(
            with_password("postgresql://app:old@db/d", "new").expect("url"),
            "postgresql://app:new@db/d"
        );
        assert!(with_password("postgres://db/d", "pw").is_err());
        let kv = with_password("host=db user=app password=old", "it's\\").expect("kv");
        let config = tokio_postgres::Config::from_str(&kv).expect("parses");
        assert_eq!(config.get_password(), Some("it's\\".as_bytes()));
    }
}
