//! Connections, pools, migrations and the business views.

pub mod indexes;
pub mod local;

use std::str::FromStr;

use tokio_postgres::{Client, NoTls};

use crate::config::{Config, redact_url};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/views.rs"));
}
pub use embedded::VIEWS;

mod migrations {
    refinery::embed_migrations!("vault/schema");
}

/// Does this role own `qualified` (or belong to its owner's role)? Only an owner may
/// drop its indexes or analyze it: the least-privilege loader of docs/security.md owns
/// no table.
pub async fn owns(
    client: &impl tokio_postgres::GenericClient,
    qualified: &str,
) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class
              WHERE oid = $1::text::regclass",
            &[&qualified],
        )
        .await?
        .try_get(0)
}

/// A double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A statement that failed, with what it was doing: what every module's database
/// error carries (`LoadError::Db`, `DaemonError::Sql`, ...), each converting it with
/// `From`. Made by [`Doing`].
#[derive(Debug, thiserror::Error)]
#[error("database error while {doing}: {}", Shown(source))]
pub struct Failed {
    pub doing: &'static str,
    pub source: tokio_postgres::Error,
}

/// `.doing("reading the checkpoint")?` on a `tokio_postgres` result: its error with
/// what the call was doing, which `?` turns into the caller's error.
pub trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, Failed>;
}

impl<T> Doing<T> for Result<T, tokio_postgres::Error> {
    fn doing(self, doing: &'static str) -> Result<T, Failed> {
        self.map_err(|source| Failed { doing, source })
    }
}

/// A `tokio_postgres` error as a person needs it: the server's message with its
/// detail and hint, or a client-side failure with its cause. (`tokio_postgres` shows
/// every server error as just "db error" and keeps the message in its source.)
pub struct Shown<'a>(pub &'a tokio_postgres::Error);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                f.write_str(db.message())?;
                if let Some(detail) = db.detail() {
                    write!(f, " ({detail})")?;
                }
                if let Some(hint) = db.hint() {
                    write!(f, "; hint: {hint}")?;
                }
                Ok(())
            }
            None => match std::error::Error::source(self.0) {
                Some(cause) => write!(f, "{}: {cause}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

/// The causes of `e` worth showing after its own text: its source chain up to a
/// `tokio_postgres` error, whose message our errors already show with [`Shown`].
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |c| c.source())
        .take_while(|c| !c.is::<tokio_postgres::Error>())
}

/// An error with its causes, `a: b: c`, for one log line or one database column.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = match e.downcast_ref::<tokio_postgres::Error>() {
        Some(pg) => return Shown(pg).to_string(),
        None => e.to_string(),
    };
    for cause in causes(e) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error("invalid DATABASE_URL {url}: {}", Shown(source))]
    BadUrl {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to {target}: {}", Shown(source))]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
    #[error("view file views/{file} failed: {}", Shown(source))]
    View {
        file: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("{}", Shown(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Failed(#[from] Failed),
}

/// Where the database is, resolved once per process.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// `Some` when dvault runs its private server.
    pub local: Option<local::LocalServer>,
}

impl Target {
    /// The `DATABASE_URL` if given; else the private server, started if needed.
    pub async fn resolve(config: &Config) -> Result<Target, DbError> {
        if let Some(url) = &config.database_url {
            return Ok(Target {
                url: url.clone(),
                local: None,
            });
        }
        let home = config.home.clone();
        let server = tokio::task::spawn_blocking(move || local::ensure_running(&home))
            .await
            .map_err(|e| DbError::Pool(e.to_string()))??;
        let target = Target {
            url: server.url(local::DATABASE),
            local: Some(server.clone()),
        };
        // The private cluster starts with only `postgres`; make ours.
        let admin = connect(&server.url("postgres")).await?;
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&local::DATABASE],
            )
            .await?
            .is_some();
        if !exists {
            let created = admin
                .batch_execute(&format!("CREATE DATABASE {}", local::DATABASE))
                .await;
            if let Err(e) = created {
                // another process may have won the race
                if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                    return Err(e.into());
                }
            }
        }
        Ok(target)
    }

    /// What to show a user: the redacted URL, and the data directory if private.
    pub fn describe(&self) -> String {
        match &self.local {
            Some(server) => format!(
                "{} (private server, data in {})",
                self.url,
                server.data_dir.display()
            ),
            None => redact_url(&self.url),
        }
    }
}

/// `url` parsed, named `application` in `pg_stat_activity` unless it names itself.
pub fn pg_config(url: &str, application: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|source| DbError::BadUrl {
        url: redact_url(url),
        source,
    })?;
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    Ok(config)
}

/// One connection, its driver spawned on the runtime.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let config = pg_config(url, "dvault")?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect {
            target: redact_url(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// What `migrate` did.
#[derive(Debug, Default)]
pub struct Migrated {
    pub applied: Vec<String>,
    pub version: Option<i32>,
    pub views: usize,
}

/// Bring the schema up to date (a no-op when it is), then (re)apply the views.
/// Serialized by an advisory lock, so concurrent callers do not collide.
pub async fn migrate(client: &mut Client) -> Result<Migrated, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
        .await?;
    result
}

const MIGRATE_LOCK: i64 = 0x6476_6175_6c74_0001; // "dvault" + 1

async fn migrate_locked(client: &mut Client) -> Result<Migrated, DbError> {
    let report = migrations::migrations::runner()
        .set_abort_divergent(true)
        .run_async(client)
        .await?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    let views = apply_views(client).await?;
    Ok(Migrated {
        applied,
        version: schema_version(client).await?,
        views,
    })
}

/// Re-create every view, in file-name order, in one transaction.
async fn apply_views(client: &mut Client) -> Result<usize, DbError> {
    let tx = client.transaction().await?;
    for (file, sql) in VIEWS {
        tx.batch_execute(sql)
            .await
            .map_err(|source| DbError::View {
                file: file.to_string(),
                source,
            })?;
    }
    tx.commit().await?;
    Ok(VIEWS.len())
}

/// The latest migration applied, if any.
pub async fn schema_version(client: &Client) -> Result<Option<i32>, DbError> {
    let exists = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .try_get::<_, bool>(0)
        .doing("looking for the migration history")?;
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .try_get(0)
        .doing("reading the schema version")?)
}

/// The newest migration this binary knows.
pub fn latest_known_version() -> i32 {
    migrations::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Connect and make sure the schema is current: what every command needing the
/// schema does first.
pub async fn connect_migrated(target: &Target) -> Result<Client, DbError> {
    let mut client = connect(&target.url).await?;
    if schema_version(&client).await? != Some(latest_known_version()) {
        migrate(&mut client).await?;
    }
    Ok(client)
}
