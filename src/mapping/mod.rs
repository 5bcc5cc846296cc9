//! Declarative mappings: which hubs, links and satellites each event type feeds.
//!
//! `vault/mappings/*.toml` define the model (hubs, links, satellites with typed
//! columns) and, per event type, where each key and column comes from in the
//! payload. Parsing and structural checks are pure ([`Mappings::parse`]); the
//! check against the live catalog is in [`catalog`]. See `docs/mappings.md`.
//!
//! The way through: `files.rs` reads the mapping files, `spec.rs` is their TOML
//! shape, `compile/` checks them and builds the model (`model.rs`, its types
//! re-exported here, the typed indexes into it in `id.rs`), which the loader, the
//! catalog check and the preview then only read.

pub mod catalog;
mod compile;
pub mod field;
mod files;
mod id;
mod model;
pub mod preview;
pub mod registry;
mod spec;
pub mod types;

use std::fmt;

pub use field::{Field, FieldSpec};
pub use files::{builtin_files, read_dir};
pub use id::{HubId, IdVec, LinkId, PerHub, PerLink, PerSat, SatId};
pub use model::{
    BusinessVault, DEFAULT_SCHEMA, EventMapping, FieldPath, Hub, Link, Mappings, ORDER_STATUSES,
    Parent, Satellite,
};
pub use types::{ColumnType, Value};

/// A mapping mistake: the file, the entry, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct MappingError {
    pub file: String,
    pub entry: String,
    pub problem: String,
}

/// All mistakes found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingErrors(pub Vec<MappingError>);

impl fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the mappings have {} problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MappingErrors {}

impl Mappings {
    /// Parse and check `(file name, TOML text)` pairs.
    pub fn parse(files: &[(String, String)]) -> Result<Mappings, MappingErrors> {
        let mut errors = Vec::new();
        let mut specs = Vec::new();
        for (file, text) in files {
            match toml::from_str::<spec::FileSpec>(text) {
                Ok(spec) => specs.push((file.clone(), spec)),
                Err(e) => errors.push(MappingError {
                    file: file.clone(),
                    entry: match e.span() {
                        Some(span) => format!("line {}", line_of(text, span.start)),
                        None => "file".into(),
                    },
                    problem: e.message().to_string(),
                }),
            }
        }
        let model = compile::Builder::default().build(specs, &mut errors);
        if errors.is_empty() {
            Ok(model)
        } else {
            Err(MappingErrors(errors))
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests;
