//! What can stop a load, and which failures are the data's (a batch the database
//! refuses is written again range by range and the events responsible quarantined)
//! rather than the run's.

use crate::hash::HASH_VERSION;
use crate::mapping::MappingErrors;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Mappings(#[from] MappingErrors),
    #[error(
        "the vault was built with hash version {found}, this dvault hashes with version {HASH_VERSION}: run `dvault rebuild`"
    )]
    HashVersion { found: String },
    #[error(
        "another loader is running (it holds the loader lock); try again later or drop --no-wait"
    )]
    Busy,
    #[error("{0}")]
    Internal(String),
    /// A value PostgreSQL's column type cannot hold, found while encoding a row.
    #[error("{0}")]
    Encode(String),
    /// Building `table`'s indexes after a bulk load failed.
    #[error(
        "database error while building the indexes of {table} after a bulk load: {}",
        crate::db::Shown(source)
    )]
    BulkBuild {
        table: String,
        source: tokio_postgres::Error,
    },
    /// The unique index of a table the key memory forgot ([`super::known::Known`]'s
    /// `unchecked`) found a key written twice: the bulk run starts over, remembering
    /// every table.
    #[error(
        "a key came twice in {table}, whose keys the bulk run had stopped remembering: {}",
        crate::db::Shown(source)
    )]
    ForgottenRepeat {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("database error while {doing}: {}", crate::db::Shown(source))]
    Db {
        doing: &'static str,
        source: tokio_postgres::Error,
    },
}

impl LoadError {
    /// Did the database (or the encoder) refuse the data itself, so that the batch
    /// would fail the same way every time? SQLSTATE class 22 (data exception), 23
    /// (integrity constraint violation) and 54 (program limit exceeded, e.g. an index
    /// row too large). Such a batch is written again event range by event range to
    /// find and quarantine the events responsible (`Loader::write_isolating`).
    pub fn is_data(&self) -> bool {
        match self {
            LoadError::Encode(_) => true,
            LoadError::Db { source, .. } => refused_data(source),
            _ => false,
        }
    }

    /// Did the bulk path meet data the database refuses, in a batch or while
    /// building an index? Then the run goes batch by batch instead ([`bulk`]).
    pub(super) fn ends_bulk(&self) -> bool {
        match self {
            LoadError::BulkBuild { source, .. } => refused_data(source),
            other => other.is_data(),
        }
    }

    /// A failed index build of a table in `forgotten` on a unique violation is a
    /// [`LoadError::ForgottenRepeat`]; any other error stays as it is.
    pub(super) fn repeated_in(self, forgotten: &[String]) -> LoadError {
        match self {
            LoadError::BulkBuild { table, source }
                if forgotten.contains(&table)
                    && source.code()
                        == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                LoadError::ForgottenRepeat { table, source }
            }
            other => other,
        }
    }
}

fn refused_data(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(&c.code()[..2], "22" | "23" | "54"))
}

impl From<crate::db::Failed> for LoadError {
    fn from(crate::db::Failed { doing, source }: crate::db::Failed) -> Self {
        LoadError::Db { doing, source }
    }
}

/// The reason a refused event is quarantined with: the database's own words.
pub(super) fn refusal(e: &LoadError) -> String {
    match e {
        LoadError::Db { doing, source } => {
            let code = source.code().map(|c| c.code()).unwrap_or("?");
            format!(
                "the database refused its rows while {doing}: {} (SQLSTATE {code})",
                crate::db::Shown(source)
            )
        }
        other => format!("its rows cannot be written: {other}"),
    }
}
