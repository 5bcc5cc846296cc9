//! Declarative mappings: which hubs, links and satellites each event type feeds.
//!
//! `vault/mappings/*.toml` define the model (hubs, links, satellites with typed
//! columns) and, per event type, where each key and column comes from in the
//! payload. Parsing and structural checks are pure ([`Mappings::parse`]); the
//! check against the live catalog is in [`catalog`]. See `docs/mappings.md`.

pub mod catalog;
pub mod field;
pub mod preview;
pub mod registry;
pub mod types;

use crate::db::quote_ident;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

pub use field::{Field, FieldSpec};
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

// ---- the TOML shape --------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// The PostgreSQL schema of the vault tables (default `raw_vault`); every file
    /// of a mapping set that names one must name the same.
    schema: Option<String>,
    #[serde(default)]
    hubs: BTreeMap<String, HubSpec>,
    #[serde(default)]
    links: BTreeMap<String, LinkSpec>,
    #[serde(default)]
    satellites: BTreeMap<String, SatSpec>,
    #[serde(default)]
    events: Vec<EventSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubSpec {
    hash_key: String,
    business_key: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    hash_key: String,
    hubs: Vec<String>,
    #[serde(default)]
    dependent_keys: Vec<ColumnSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    column: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SatSpec {
    parent: String,
    columns: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    hubs: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    links: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    #[serde(default)]
    satellites: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    /// This mapping replaces one of the same type in an earlier file (a user's
    /// mapping of a built-in event type); without it, mapping a type twice is an error.
    #[serde(default, rename = "override")]
    overrides: bool,
}

// ---- the compiled model ----------------------------------------------------

/// Where a value comes from in the payload: `a.b` (nested objects) or
/// `lines[].b` (each element of an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Top(Vec<String>),
    Each {
        array: Vec<String>,
        field: Vec<String>,
    },
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let split = |s: &str| -> Result<Vec<String>, String> {
            let parts: Vec<String> = s.split('.').map(str::to_string).collect();
            if parts.iter().any(|p| p.is_empty() || p.contains("[]")) {
                return Err(format!(
                    "bad field path \"{text}\": use `field`, `a.b` or `array[].field`"
                ));
            }
            Ok(parts)
        };
        match text.split_once("[].") {
            Some((array, field)) => Ok(FieldPath::Each {
                array: split(array)?,
                field: split(field)?,
            }),
            None => Ok(FieldPath::Top(split(text)?)),
        }
    }

    /// The array this path iterates, if any.
    pub fn array(&self) -> Option<&[String]> {
        match self {
            FieldPath::Top(_) => None,
            FieldPath::Each { array, .. } => Some(array),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Top(p) => f.write_str(&p.join(".")),
            FieldPath::Each { array, field } => {
                write!(f, "{}[].{}", array.join("."), field.join("."))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hub {
    pub name: String,
    pub file: String,
    pub hash_key: String,
    pub business_key: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub file: String,
    pub hash_key: String,
    /// Indexes into [`Mappings::hubs`], in hashing order.
    pub hubs: Vec<usize>,
    pub dependent_keys: Vec<(String, ColumnType)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Hub(usize),
    Link(usize),
}

#[derive(Debug, Clone)]
pub struct Satellite {
    pub name: String,
    pub file: String,
    pub parent: Parent,
    /// Payload columns in alphabetical order (the hashdiff order).
    pub columns: Vec<(String, ColumnType)>,
}

/// What one event type feeds. Each target is emitted once per event, or once per
/// element of the array its paths iterate.
#[derive(Debug, Clone)]
pub struct EventMapping {
    pub event_type: String,
    pub file: String,
    /// hub index and the paths of its business key columns
    pub hubs: Vec<(usize, Vec<FieldPath>)>,
    /// link index and the sources of its dependent keys
    pub links: Vec<(usize, Vec<Field>)>,
    /// satellite index and, per column of the satellite, its source if mapped
    pub satellites: Vec<(usize, Vec<Option<Field>>)>,
}

/// The schema of the vault tables unless the mapping files name another.
pub const DEFAULT_SCHEMA: &str = "raw_vault";

/// The whole, validated model.
#[derive(Debug, Clone)]
pub struct Mappings {
    /// The PostgreSQL schema holding the hubs, links and satellites.
    pub schema: String,
    pub hubs: Vec<Hub>,
    pub links: Vec<Link>,
    pub satellites: Vec<Satellite>,
    pub events: HashMap<String, EventMapping>,
    /// Event types the loader passes over on purpose (`dvault model skip`): neither
    /// held back nor quarantined.
    pub skipped: HashSet<String>,
}

impl Default for Mappings {
    fn default() -> Self {
        Mappings {
            schema: DEFAULT_SCHEMA.into(),
            hubs: Vec::new(),
            links: Vec::new(),
            satellites: Vec::new(),
            events: HashMap::new(),
            skipped: HashSet::new(),
        }
    }
}

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
const BUILTIN_DIR: &str = "vault/mappings/";

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

impl Mappings {
    /// Parse and check `(file name, TOML text)` pairs.
    pub fn parse(files: &[(String, String)]) -> Result<Mappings, MappingErrors> {
        let mut errors = Vec::new();
        let mut specs = Vec::new();
        for (file, text) in files {
            match toml::from_str::<FileSpec>(text) {
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
        let model = Builder::default().build(specs, &mut errors);
        if errors.is_empty() {
            Ok(model)
        } else {
            Err(MappingErrors(errors))
        }
    }

    pub fn hub_index(&self, name: &str) -> Option<usize> {
        self.hubs.iter().position(|h| h.name == name)
    }
    pub fn link_index(&self, name: &str) -> Option<usize> {
        self.links.iter().position(|l| l.name == name)
    }
    pub fn satellite_index(&self, name: &str) -> Option<usize> {
        self.satellites.iter().position(|s| s.name == name)
    }

    /// `schema.table`, quoted, for a vault table of this model.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Whether this is the built-in Customer 360 model's schema (its business vault
    /// is maintained with it).
    pub fn is_customer_360(&self) -> bool {
        self.schema == DEFAULT_SCHEMA
    }

    /// The hash key column of a satellite's parent.
    pub fn parent_key(&self, parent: Parent) -> &str {
        match parent {
            Parent::Hub(h) => &self.hubs[h].hash_key,
            Parent::Link(l) => &self.links[l].hash_key,
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[derive(Default)]
struct Builder {
    model: Mappings,
}

impl Builder {
    fn build(mut self, specs: Vec<(String, FileSpec)>, errors: &mut Vec<MappingError>) -> Mappings {
        let err = |errors: &mut Vec<MappingError>, file: &str, entry: String, problem: String| {
            errors.push(MappingError {
                file: file.to_string(),
                entry,
                problem,
            })
        };
        // 0. the schema
        let mut schema_from: Option<&str> = None;
        for (file, spec) in &specs {
            let Some(schema) = &spec.schema else {
                continue;
            };
            let valid = schema.len() <= 63
                && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                err(
                    errors,
                    file,
                    "schema".into(),
                    format!(
                        "\"{schema}\" is not a plain schema name; use lower-case letters, digits and _"
                    ),
                );
            } else if let Some(first) = schema_from {
                if schema != &self.model.schema {
                    err(
                        errors,
                        file,
                        "schema".into(),
                        format!(
                            "\"{schema}\" differs from \"{}\" in {first}; one mapping set loads one schema",
                            self.model.schema
                        ),
                    );
                }
            } else {
                self.model.schema = schema.clone();
                schema_from = Some(file);
            }
        }
        // 1. hubs
        for (file, spec) in &specs {
            for (name, hub) in &spec.hubs {
                let entry = format!("hub \"{name}\"");
                if let Some(other) = self.model.hubs.iter().find(|h| &h.name == name) {
                    err(
                        errors,
                        file,
                        entry,
                        format!("defined again (first in {})", other.file),
                    );
                    continue;
                }
                if hub.business_key.is_empty() {
                    err(
                        errors,
                        file,
                        entry,
                        "business_key is empty: name its column(s)".into(),
                    );
                    continue;
                }
                self.model.hubs.push(Hub {
                    name: name.clone(),
                    file: file.clone(),
                    hash_key: hub.hash_key.clone(),
                    business_key: hub.business_key.clone(),
                });
            }
        }
        // 2. links
        for (file, spec) in &specs {
            for (name, link) in &spec.links {
                let entry = format!("link \"{name}\"");
                if let Some(other) = self.model.links.iter().find(|l| &l.name == name) {
                    err(
                        errors,
                        file,
                        entry,
                        format!("defined again (first in {})", other.file),
                    );
                    continue;
                }
                let mut hubs = Vec::new();
                for hub in &link.hubs {
                    match self.model.hub_index(hub) {
                        Some(i) if hubs.contains(&i) => err(
                            errors,
                            file,
                            entry.clone(),
                            format!("names hub \"{hub}\" twice; a link joins distinct hubs"),
                        ),
                        Some(i) => hubs.push(i),
                        None => err(
                            errors,
                            file,
                            entry.clone(),
                            format!(
                                "names hub \"{hub}\", which no mapping defines (defined hubs: {}); add [hubs.{hub}] or fix the name",
                                names(self.model.hubs.iter().map(|h| &h.name))
                            ),
                        ),
                    }
                }
                if link.hubs.len() < 2 {
                    err(
                        errors,
                        file,
                        entry.clone(),
                        "a link needs at least two hubs".into(),
                    );
                }
                let mut dependent_keys = Vec::new();
                for c in &link.dependent_keys {
                    match c.ty.parse::<ColumnType>() {
                        Ok(t) => dependent_keys.push((c.column.clone(), t)),
                        Err(e) => err(
                            errors,
                            file,
                            format!("{entry}, dependent key \"{}\"", c.column),
                            e,
                        ),
                    }
                }
                self.model.links.push(Link {
                    name: name.clone(),
                    file: file.clone(),
                    hash_key: link.hash_key.clone(),
                    hubs,
                    dependent_keys,
                });
            }
        }
        // 3. satellites
        for (file, spec) in &specs {
            for (name, sat) in &spec.satellites {
                let entry = format!("satellite \"{name}\"");
                if let Some(other) = self.model.satellites.iter().find(|s| &s.name == name) {
                    err(
                        errors,
                        file,
                        entry,
                        format!("defined again (first in {})", other.file),
                    );
                    continue;
                }
                let parent = match (
                    self.model.hub_index(&sat.parent),
                    self.model.link_index(&sat.parent),
                ) {
                    (Some(h), _) => Parent::Hub(h),
                    (None, Some(l)) => Parent::Link(l),
                    (None, None) => {
                        err(
                            errors,
                            file,
                            entry,
                            format!(
                                "parent \"{}\" is neither a hub nor a link (hubs: {}; links: {})",
                                sat.parent,
                                names(self.model.hubs.iter().map(|h| &h.name)),
                                names(self.model.links.iter().map(|l| &l.name))
                            ),
                        );
                        continue;
                    }
                };
                let mut columns = Vec::new();
                for (col, ty) in &sat.columns {
                    match ty.parse::<ColumnType>() {
                        Ok(t) => columns.push((col.clone(), t)),
                        Err(e) => err(errors, file, format!("{entry}, column \"{col}\""), e),
                    }
                }
                columns.sort_by(|a, b| a.0.cmp(&b.0));
                if columns.is_empty() {
                    err(errors, file, entry, "has no columns".into());
                    continue;
                }
                self.model.satellites.push(Satellite {
                    name: name.clone(),
                    file: file.clone(),
                    parent,
                    columns,
                });
            }
        }
        // 4. events (a later file may override an earlier one's mapping, once)
        let mut overridden: Vec<String> = Vec::new();
        for (file, spec) in &specs {
            for ev in &spec.events {
                let entry = format!("event \"{}\"", ev.event_type);
                match (self.model.events.get(&ev.event_type), ev.overrides) {
                    (Some(_), true) if !overridden.contains(&ev.event_type) => {
                        overridden.push(ev.event_type.clone());
                    }
                    (Some(other), true) => {
                        err(
                            errors,
                            file,
                            entry,
                            format!(
                                "overridden twice (the other override is in {}); keep one",
                                other.file
                            ),
                        );
                        continue;
                    }
                    (Some(other), false) => {
                        err(
                            errors,
                            file,
                            entry,
                            format!(
                                "mapped again (first in {}); to replace that mapping, say `override = true` in this one",
                                other.file
                            ),
                        );
                        continue;
                    }
                    (None, true) => {
                        err(
                            errors,
                            file,
                            entry,
                            "says `override = true`, but no earlier mapping of this event type exists to override; remove it".into(),
                        );
                        continue;
                    }
                    (None, false) => {}
                }
                if let Some(m) = self.event(file, &entry, ev, errors) {
                    self.model.events.insert(ev.event_type.clone(), m);
                }
            }
        }
        // 5. every hub a link joins must be fed by some event
        for link in &self.model.links {
            for &h in &link.hubs {
                let fed = self
                    .model
                    .events
                    .values()
                    .any(|e| e.hubs.iter().any(|(i, _)| *i == h));
                if !fed {
                    err(
                        errors,
                        &link.file,
                        format!("link \"{}\"", link.name),
                        format!(
                            "joins hub \"{}\", which no event mapping feeds; add it to the `hubs` of an event",
                            self.model.hubs[h].name
                        ),
                    );
                }
            }
        }
        self.model
    }

    fn event(
        &self,
        file: &str,
        entry: &str,
        ev: &EventSpec,
        errors: &mut Vec<MappingError>,
    ) -> Option<EventMapping> {
        let before = errors.len();
        let mut problem = |what: String| {
            errors.push(MappingError {
                file: file.to_string(),
                entry: entry.to_string(),
                problem: what,
            })
        };
        let m = &self.model;
        let paths = |texts: &[&String], problem: &mut dyn FnMut(String)| -> Vec<FieldPath> {
            texts
                .iter()
                .filter_map(|t| FieldPath::parse(t).map_err(&mut *problem).ok())
                .collect()
        };
        let mut hubs = Vec::new();
        for (name, fields) in &ev.hubs {
            let Some(h) = m.hub_index(name) else {
                problem(format!(
                    "unknown hub \"{name}\" (defined hubs: {})",
                    names(m.hubs.iter().map(|h| &h.name))
                ));
                continue;
            };
            if fields.len() != m.hubs[h].business_key.len() {
                problem(format!(
                    "hub \"{name}\" has {} business key column(s) ({}), the event gives {} field(s)",
                    m.hubs[h].business_key.len(),
                    m.hubs[h].business_key.join(", "),
                    fields.len()
                ));
                continue;
            }
            let refs: Vec<&String> = fields.iter().collect();
            hubs.push((h, paths(&refs, &mut problem)));
        }
        let mut links = Vec::new();
        for (name, deps) in &ev.links {
            let Some(l) = m.link_index(name) else {
                problem(format!(
                    "unknown link \"{name}\" (defined links: {})",
                    names(m.links.iter().map(|l| &l.name))
                ));
                continue;
            };
            let link = &m.links[l];
            for &h in &link.hubs {
                if !hubs.iter().any(|(i, _)| *i == h) {
                    problem(format!(
                        "feeds link \"{name}\", which needs the key of hub \"{}\": add it to this event's hubs",
                        m.hubs[h].name
                    ));
                }
            }
            let mut dep_fields = Vec::new();
            for (col, ty) in &link.dependent_keys {
                match deps.get(col) {
                    Some(spec) => match Field::compile(spec, *ty) {
                        Ok(f) => dep_fields.push(f),
                        Err(e) => problem(format!("link \"{name}\", dependent key \"{col}\": {e}")),
                    },
                    None => problem(format!(
                        "link \"{name}\" needs its dependent key \"{col}\": add {col} = \"<field>\" under [events.links.{name}]"
                    )),
                }
            }
            for col in deps.keys() {
                if !link.dependent_keys.iter().any(|(c, _)| c == col) {
                    problem(format!(
                        "link \"{name}\" has no dependent key \"{col}\" (it has: {})",
                        names(link.dependent_keys.iter().map(|(c, _)| c))
                    ));
                }
            }
            links.push((l, dep_fields));
        }
        let mut satellites = Vec::new();
        for (name, fields) in &ev.satellites {
            let Some(s) = m.satellite_index(name) else {
                problem(format!(
                    "unknown satellite \"{name}\" (defined satellites: {})",
                    names(m.satellites.iter().map(|s| &s.name))
                ));
                continue;
            };
            let sat = &m.satellites[s];
            match sat.parent {
                Parent::Hub(h) if !hubs.iter().any(|(i, _)| *i == h) => problem(format!(
                    "feeds satellite \"{name}\" of hub \"{}\": add that hub to this event's hubs",
                    m.hubs[h].name
                )),
                Parent::Link(l) if !links.iter().any(|(i, _)| *i == l) => problem(format!(
                    "feeds satellite \"{name}\" of link \"{}\": add that link to this event's links",
                    m.links[l].name
                )),
                _ => {}
            }
            for col in fields.keys() {
                if !sat.columns.iter().any(|(c, _)| c == col) {
                    problem(format!(
                        "satellite \"{name}\" has no column \"{col}\" (its columns: {})",
                        names(sat.columns.iter().map(|(c, _)| c))
                    ));
                }
            }
            let mut cols = Vec::new();
            for (col, ty) in &sat.columns {
                cols.push(match fields.get(col) {
                    Some(spec) => match Field::compile(spec, *ty) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            problem(match spec {
                                FieldSpec::Path(_) => e,
                                FieldSpec::Rule(_) => {
                                    format!("satellite \"{name}\", column \"{col}\": {e}")
                                }
                            });
                            None
                        }
                    },
                    None => None,
                });
            }
            satellites.push((s, cols));
        }
        if hubs.is_empty() && links.is_empty() && satellites.is_empty() {
            problem("feeds nothing: give it hubs, links or satellites".into());
        }
        let mapping = EventMapping {
            event_type: ev.event_type.clone(),
            file: file.to_string(),
            hubs,
            links,
            satellites,
        };
        if let Err(e) = mapping.check_arrays(m) {
            problem(e);
        }
        (errors.len() == before).then_some(mapping)
    }
}

impl EventMapping {
    /// Whether this mapping is one of the built-in model's (not a user's).
    pub fn is_builtin(&self) -> bool {
        self.file.starts_with(BUILTIN_DIR)
    }

    /// The array (if any) a hub of this event iterates.
    pub fn hub_array(&self, hub: usize) -> Option<&[String]> {
        self.hubs
            .iter()
            .find(|(h, _)| *h == hub)
            .and_then(|(_, paths)| paths.iter().find_map(FieldPath::array))
    }

    /// The array a link of this event iterates: its hubs' and its own paths'.
    pub fn link_array<'a>(&'a self, m: &Mappings, link: usize) -> Option<&'a [String]> {
        let own = self
            .links
            .iter()
            .find(|(l, _)| *l == link)
            .and_then(|(_, paths)| paths.iter().find_map(Field::array));
        own.or_else(|| m.links[link].hubs.iter().find_map(|&h| self.hub_array(h)))
    }

    /// At most one array per target, so rows are well defined.
    fn check_arrays(&self, m: &Mappings) -> Result<(), String> {
        let check = |what: &str, arrays: Vec<&[String]>| -> Result<(), String> {
            if let Some(first) = arrays.first()
                && let Some(other) = arrays.iter().find(|a| *a != first)
            {
                return Err(format!(
                    "{what} mixes fields of two arrays ({}[] and {}[]); a target can iterate one array",
                    first.join("."),
                    other.join(".")
                ));
            }
            Ok(())
        };
        for (h, paths) in &self.hubs {
            check(
                &format!("hub \"{}\"", m.hubs[*h].name),
                paths.iter().filter_map(FieldPath::array).collect(),
            )?;
        }
        for (l, paths) in &self.links {
            let mut arrays: Vec<&[String]> = paths.iter().filter_map(Field::array).collect();
            arrays.extend(m.links[*l].hubs.iter().filter_map(|&h| self.hub_array(h)));
            check(&format!("link \"{}\"", m.links[*l].name), arrays)?;
        }
        for (s, cols) in &self.satellites {
            let sat = &m.satellites[*s];
            let mut arrays: Vec<&[String]> =
                cols.iter().flatten().filter_map(Field::array).collect();
            arrays.extend(match sat.parent {
                Parent::Hub(h) => self.hub_array(h),
                Parent::Link(l) => self.link_array(m, l),
            });
            check(&format!("satellite \"{}\"", sat.name), arrays)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
