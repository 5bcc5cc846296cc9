//! The active model lives in the warehouse: the user's mapping files registered in
//! `ops.model_files` (on top of the built-in mappings), so every command loads with
//! the same model, and a loader handed other mappings refuses instead of
//! quarantining what it does not know. See `docs/mappings.md` (The active model).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::{MappingErrors, Mappings, read_dir};
use crate::db::Doing;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Mappings(#[from] MappingErrors),
    #[error("{0}")]
    Differs(ModelDiff),
    #[error("database error while {doing}: {}", crate::db::Shown(source))]
    Db {
        doing: &'static str,
        source: tokio_postgres::Error,
    },
}

impl From<crate::db::Failed> for ModelError {
    fn from(crate::db::Failed { doing, source }: crate::db::Failed) -> Self {
        ModelError::Db { doing, source }
    }
}

/// User mapping files by file name (no directory): what is registered and compared.
pub type Files = BTreeMap<String, String>;

/// The files of `dir` by file name.
pub fn files_of(dir: &Path) -> Result<Files, MappingErrors> {
    Ok(read_dir(dir)?
        .into_iter()
        .map(|(path, text)| {
            let name = Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(path);
            (name, text)
        })
        .collect())
}

/// The registered user files; `None` when no model was ever registered.
pub async fn registered(client: &impl GenericClient) -> Result<Option<Files>, ModelError> {
    let ever: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM ops.model_registrations)", &[])
        .await
        .doing("reading the registered model")?
        .try_get(0)
        .doing("reading the registered model")?;
    if !ever {
        return Ok(None);
    }
    let rows = client
        .query("SELECT name, body FROM ops.model_files ORDER BY name", &[])
        .await
        .doing("reading the registered model")?;
    let files = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .doing("reading the registered model")?;
    Ok(Some(files))
}

/// A SHA-256 of names and texts, in hex.
pub fn digest(files: &Files) -> String {
    let mut h = Sha256::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Register `files` as the active model's user files (replacing the ones before),
/// recording `how`. The caller has checked them against the catalog.
pub async fn register(
    client: &mut tokio_postgres::Client,
    files: &Files,
    how: &str,
) -> Result<(), ModelError> {
    let tx = client
        .transaction()
        .await
        .doing("starting the registration")?;
    tx.execute("DELETE FROM ops.model_files", &[])
        .await
        .doing("registering the model")?;
    for (name, body) in files {
        tx.execute(
            "INSERT INTO ops.model_files (name, body) VALUES ($1, $2)",
            &[name, body],
        )
        .await
        .doing("registering the model")?;
    }
    let names: Vec<&String> = files.keys().collect();
    tx.execute(
        "INSERT INTO ops.model_registrations (files, digest, how) VALUES ($1, $2, $3)",
        &[&names, &digest(files), &how],
    )
    .await
    .doing("registering the model")?;
    Ok(tx.commit().await.doing("committing the registration")?)
}

/// A user migration beside the mapping files: `V<n>__<what>.sql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMigration {
    pub version: i32,
    pub name: String,
    pub sql: String,
}

impl UserMigration {
    pub fn checksum(&self) -> String {
        hex(&Sha256::digest(self.sql.as_bytes()))
    }
}

/// The `V<n>__<what>.sql` files of `dir`, by version (two files of one version, or
/// another `.sql` name, are mistakes).
pub fn user_migrations(dir: &Path) -> Result<Vec<UserMigration>, MappingErrors> {
    let fail = |file: String, problem: String| {
        MappingErrors(vec![super::MappingError {
            file,
            entry: "user migration".into(),
            problem,
        }])
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| fail(dir.display().to_string(), format!("cannot read: {e}")))?;
    let mut out: Vec<UserMigration> = Vec::new();
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    for p in paths {
        let file = p.display().to_string();
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = stem
            .strip_prefix('V')
            .and_then(|r| r.split_once("__"))
            .and_then(|(v, name)| Some((v.parse::<i32>().ok()?, name)))
            .filter(|(v, name)| *v > 0 && !name.is_empty());
        let Some((version, name)) = parsed else {
            return Err(fail(
                file,
                "name it V<n>__<what>.sql (n: its version, 1, 2, ...)".into(),
            ));
        };
        if let Some(other) = out.iter().find(|m| m.version == version) {
            return Err(fail(
                file,
                format!(
                    "version {version} is taken by V{version}__{}.sql",
                    other.name
                ),
            ));
        }
        let sql = std::fs::read_to_string(&p)
            .map_err(|e| fail(file.clone(), format!("cannot read: {e}")))?;
        out.push(UserMigration {
            version,
            name: name.to_string(),
            sql,
        });
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// User migrations applied now, as `V<n>__<what>`.
    pub migrations: Vec<String>,
    /// The registered files (names), and whether they changed.
    pub files: Vec<String>,
    pub changed: bool,
    /// Held-back events whose type the model now maps (the next load loads them).
    pub releasable: i64,
}

/// Apply the user migrations of `dir` not applied yet (each in its own transaction
/// with its record in `ops.model_migrations`; an applied one whose text changed is an
/// error), check the composed mappings against the catalog, and register them.
pub async fn apply(
    client: &mut tokio_postgres::Client,
    dir: &Path,
    how: &str,
) -> Result<Applied, ApplyError> {
    let files = files_of(dir)?;
    let mappings = Mappings::with_dir(dir)?;
    let mut done = Applied::default();
    let applied: BTreeMap<i32, (String, String)> = client
        .query(
            "SELECT version, name, checksum FROM ops.model_migrations",
            &[],
        )
        .await
        .doing("reading the user migrations applied")?
        .iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect::<Result<_, tokio_postgres::Error>>()
        .doing("reading the user migrations applied")?;
    for m in user_migrations(dir)? {
        match applied.get(&m.version) {
            Some((_, sum)) if *sum == m.checksum() => continue,
            Some((name, _)) => {
                return Err(ApplyError::Changed(format!(
                    "{}: V{}__{}.sql was applied (as V{}__{name}) with another text; an applied migration never changes: undo the edit and add V<n>__<what>.sql with a new version",
                    dir.display(),
                    m.version,
                    m.name,
                    m.version
                )));
            }
            None => {}
        }
        let label = format!("V{}__{}", m.version, m.name);
        let tx = client
            .transaction()
            .await
            .doing("starting a user migration")?;
        tx.batch_execute(&m.sql)
            .await
            .map_err(|source| ApplyError::Migration {
                file: format!("{}/{label}.sql", dir.display()),
                source,
            })?;
        tx.execute(
            "INSERT INTO ops.model_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .await
        .doing("recording a user migration")?;
        tx.commit().await.doing("committing a user migration")?;
        done.migrations.push(label);
    }
    super::catalog::check(&*client, &mappings)
        .await
        .doing("reading the catalog")??;
    let before = registered(&*client).await?;
    done.changed = before.as_ref() != Some(&files);
    if done.changed {
        register(client, &files, how).await?;
    }
    done.files = files.keys().cloned().collect();
    let mapped: Vec<&str> = mappings.events.keys().map(String::as_str).collect();
    done.releasable = client
        .query_one(
            "SELECT count(*) FROM ops.held_events WHERE event_type = ANY($1)",
            &[&mapped],
        )
        .await
        .doing("counting held-back events")?
        .try_get(0)
        .doing("counting held-back events")?;
    Ok(done)
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Changed(String),
    #[error("user migration {file} failed: {}", crate::db::Shown(source))]
    Migration {
        file: String,
        source: tokio_postgres::Error,
    },
}

impl From<crate::db::Failed> for ApplyError {
    fn from(e: crate::db::Failed) -> Self {
        ApplyError::Model(e.into())
    }
}

impl From<MappingErrors> for ApplyError {
    fn from(e: MappingErrors) -> Self {
        ApplyError::Model(ModelError::Mappings(e))
    }
}

/// The model a command works with.
#[derive(Debug)]
pub struct Active {
    pub mappings: Mappings,
    /// Files given by flag to a database where no model was ever registered: they
    /// are registered once the loader has checked them against the catalog.
    pub to_register: Option<Files>,
}

/// The active model: the registered one; with `dir` (`--mappings`), the files of
/// `dir`, which must be the registered ones (else [`ModelError::Differs`]) unless
/// nothing was ever registered.
pub async fn active(client: &impl GenericClient, dir: Option<&Path>) -> Result<Active, ModelError> {
    let registered = registered(client).await?;
    let skipped: Vec<String> = client
        .query("SELECT event_type FROM ops.skipped_event_types", &[])
        .await
        .doing("reading the skipped event types")?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .doing("reading the skipped event types")?;
    let (mut mappings, to_register) = match (dir, registered) {
        (None, None) => (Mappings::builtin()?, None),
        (None, Some(files)) => (compose(&files)?, None),
        (Some(dir), None) => {
            let files = files_of(dir)?;
            (Mappings::with_dir(dir)?, Some(files))
        }
        (Some(dir), Some(reg)) => {
            let given = files_of(dir)?;
            let diff = ModelDiff::between(&reg, &given, dir);
            if !diff.is_empty() {
                return Err(ModelError::Differs(diff));
            }
            (Mappings::with_dir(dir)?, None)
        }
    };
    mappings.skipped = skipped.into_iter().collect();
    Ok(Active {
        mappings,
        to_register,
    })
}

/// The built-in model with registered `files`.
pub fn compose(files: &Files) -> Result<Mappings, MappingErrors> {
    let list: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (format!("{n} (registered)"), t.clone()))
        .collect();
    Mappings::compose(&list)
}

/// How given mapping files differ from the registered ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDiff {
    dir: String,
    lines: Vec<String>,
}

impl ModelDiff {
    pub fn between(registered: &Files, given: &Files, dir: &Path) -> ModelDiff {
        let mut lines = Vec::new();
        for (name, text) in given {
            match registered.get(name) {
                None => lines.push(format!("+ {name}: given, not registered")),
                Some(r) if r != text => {
                    lines.push(format!("~ {name}: {}", first_difference(r, text)))
                }
                Some(_) => {}
            }
        }
        for name in registered.keys() {
            if !given.contains_key(name) {
                lines.push(format!("- {name}: registered, not given"));
            }
        }
        ModelDiff {
            dir: dir.display().to_string(),
            lines,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The first line where two texts differ, both sides shown.
fn first_difference(registered: &str, given: &str) -> String {
    let (mut r, mut g) = (registered.lines(), given.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (r.next(), g.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {n}: registered `{}`, given `{}`",
                    a.unwrap_or("(end of file)").trim(),
                    b.unwrap_or("(end of file)").trim()
                );
            }
        }
    }
}

impl fmt::Display for ModelDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the mappings in {} differ from the model registered in the database; nothing was loaded:",
            self.dir
        )?;
        for l in &self.lines {
            writeln!(f, "  {l}")?;
        }
        write!(
            f,
            "register them with `dvault model apply {}` (or `dvault migrate --mappings {}`), or run without --mappings / DVAULT_MAPPINGS to use the registered model",
            self.dir, self.dir
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_added_removed_and_changed_files() {
        let reg: Files = [
            ("a.toml".to_string(), "x = 1\ny = 2\n".to_string()),
            ("b.toml".to_string(), "z".to_string()),
        ]
        .into();
        let given: Files = [
            ("a.toml".to_string(), "x = 1\ny = 3\n".to_string()),
            ("c.toml".to_string(), "w".to_string()),
        ]
        .into();
        let d = ModelDiff::between(&reg, &given, Path::new("mine"));
        let text = d.to_string();
        assert!(
            text.contains("~ a.toml: line 2: registered `y = 2`, given `y = 3`"),
            "{text}"
        );
        assert!(text.contains("+ c.toml: given, not registered"), "{text}");
        assert!(text.contains("- b.toml: registered, not given"), "{text}");
        assert!(text.contains("dvault model apply mine"), "{text}");
        assert!(ModelDiff::between(&reg, &reg, Path::new("m")).is_empty());
        assert_ne!(digest(&reg), digest(&given));
    }
}
