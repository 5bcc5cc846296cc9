//! Where mapping files come from: the built-in set compiled into the binary
//! (`vault/mappings/`, embedded by `build.rs` so a deployed binary needs no files
//! beside it), a directory of the user's, or both composed. Files are read here
//! and handed to [`Mappings::parse`] as `(name, text)` pairs, so parsing stays free
//! of I/O.

use std::path::Path;

use super::{DEFAULT_SCHEMA, MappingError, MappingErrors, Mappings};

impl Mappings {
    /// The mappings built into the binary (`vault/mappings/`).
    pub fn builtin() -> Result<Mappings, MappingErrors> {
        Mappings::parse(&builtin_files())
    }

    /// Every `*.toml` file of `dir`, in name order, as a model of its own.
    pub fn from_dir(dir: &Path) -> Result<Mappings, MappingErrors> {
        Mappings::parse(&read_dir(dir)?)
    }

    /// The built-in model with the user's mapping files of `dir` added to it
    /// (`--mappings DIR`); see [`compose`](Self::compose).
    pub fn with_dir(dir: &Path) -> Result<Mappings, MappingErrors> {
        Mappings::compose(&read_dir(dir)?)
    }

    /// The built-in model with `user` files added on top: they add hubs, links,
    /// satellites and event types, and may replace a built-in event type's mapping
    /// with `override = true`; anything defined twice otherwise is an error naming
    /// both files. A set whose files name a schema other than `raw_vault` is a model
    /// of its own (e.g. `examples/tpch`) and is taken alone.
    pub fn compose(user: &[(String, String)]) -> Result<Mappings, MappingErrors> {
        let standalone = user.iter().any(|(_, text)| {
            toml::from_str::<toml::Table>(text)
                .ok()
                .and_then(|t| t.get("schema").and_then(|s| s.as_str().map(str::to_string)))
                .is_some_and(|s| s != DEFAULT_SCHEMA)
        });
        if standalone {
            return Mappings::parse(user);
        }
        let mut files = builtin_files();
        files.extend(user.iter().cloned());
        Mappings::parse(&files)
    }
}

/// How the built-in mapping files are named (as in the source tree).
pub(super) const BUILTIN_DIR: &str = "vault/mappings/";

mod embedded {
    // `vault/mappings/*.toml` by file name, in name order (build.rs)
    include!(concat!(env!("OUT_DIR"), "/mappings.rs"));
}

/// The mapping files built into the binary, named as in the source tree.
pub fn builtin_files() -> Vec<(String, String)> {
    embedded::MAPPINGS
        .iter()
        .map(|(name, text)| (format!("{BUILTIN_DIR}{name}"), text.to_string()))
        .collect()
}

/// Every `*.toml` file of `dir`, in name order: `(path, text)`.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, MappingErrors> {
    let fail = |problem: String| {
        MappingErrors(vec![MappingError {
            file: dir.display().to_string(),
            entry: "directory".into(),
            problem,
        }])
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(fail("no *.toml mapping files".into()));
    }
    let mut files = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?;
        files.push((p.display().to_string(), text));
    }
    Ok(files)
}
