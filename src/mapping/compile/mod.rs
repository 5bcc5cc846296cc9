//! Compiling the parsed files ([`FileSpec`]) into the model ([`Mappings`]), with
//! every structural check: names defined once, references that resolve, types that
//! parse, and per event type sources that fit their targets ([`event`]).
//!
//! Mistakes are collected rather than returned at the first one: a user fixing a
//! mapping set sees all its problems in one run. A target with a mistake is left
//! out of the model, which can add follow-on mistakes about it, but the model is
//! only returned when there are none.

mod event;

use super::spec::{EventSpec, FileSpec, LinkSpec, SatSpec};
use super::{BusinessVault, ColumnType, Hub, Link, MappingError, Mappings, Parent, Satellite};

/// The model as it grows, step by step.
#[derive(Default)]
pub(super) struct Builder {
    model: Mappings,
}

impl Builder {
    /// Each step reads every file before the next one starts: a link may join a
    /// hub of a later file, an event may feed a satellite of any file.
    pub(super) fn build(
        mut self,
        specs: Vec<(String, FileSpec)>,
        errors: &mut Vec<MappingError>,
    ) -> Mappings {
        self.schema(&specs, errors);
        self.hubs(&specs, errors);
        self.links(&specs, errors);
        self.satellites(&specs, errors);
        self.events(&specs, errors);
        self.check_joined_hubs_fed(errors);
        self.business_vault(&specs, errors);
        self.model
    }

    /// The schema: named by no file (the default), or the same by all that name one.
    fn schema(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        let mut schema_from: Option<&str> = None;
        for (file, spec) in specs {
            let Some(schema) = &spec.schema else {
                continue;
            };
            if !is_plain_schema_name(schema) {
                mistake(
                    errors,
                    file,
                    "schema".into(),
                    format!(
                        "\"{schema}\" is not a plain schema name; use lower-case letters, digits and _"
                    ),
                );
            } else if let Some(first) = schema_from {
                if schema != &self.model.schema {
                    mistake(
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
    }

    /// The business vault the files register: one a file names, known, and whose
    /// tables the model has, in the schema it reads.
    fn business_vault(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        let entry = || "business_vault".to_string();
        // the first file's registration, and the file
        let mut first: Option<(BusinessVault, &str)> = None;
        for (file, spec) in specs {
            let Some(name) = &spec.business_vault else {
                continue;
            };
            let Some(bv) = BusinessVault::named(name) else {
                let known: Vec<&str> = BusinessVault::ALL.iter().map(|(n, _)| *n).collect();
                mistake(
                    errors,
                    file,
                    entry(),
                    format!(
                        "\"{name}\" is not a business vault dvault knows; known: {}",
                        known.join(", ")
                    ),
                );
                continue;
            };
            match first {
                Some((other, first_file)) if other != bv => mistake(
                    errors,
                    file,
                    entry(),
                    format!(
                        "\"{name}\" differs from \"{}\" in {first_file}; a model registers one business vault",
                        other.name()
                    ),
                ),
                Some(_) => {}
                None => first = Some((bv, file)),
            }
        }
        let Some((bv, file)) = first else {
            return;
        };
        self.model.business_vault = Some(bv);
        if self.model.schema != bv.schema() {
            mistake(
                errors,
                file,
                entry(),
                format!(
                    "\"{}\" reads the tables of schema \"{}\"; this mapping set loads \"{}\"",
                    bv.name(),
                    bv.schema(),
                    self.model.schema
                ),
            );
        }
        let m = &self.model;
        let missing: Vec<&str> = bv
            .reads()
            .iter()
            .copied()
            .filter(|t| {
                m.hub_id(t).is_none() && m.link_id(t).is_none() && m.satellite_id(t).is_none()
            })
            .collect();
        if !missing.is_empty() {
            mistake(
                errors,
                file,
                entry(),
                format!(
                    "\"{}\" reads {}, which this mapping set does not define",
                    bv.name(),
                    missing.join(", ")
                ),
            );
        }
    }

    fn hubs(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        for (file, spec) in specs {
            for (name, hub) in &spec.hubs {
                let entry = format!("hub \"{name}\"");
                if let Some(other) = self.model.hubs.iter().find(|h| &h.name == name) {
                    mistake(
                        errors,
                        file,
                        entry,
                        format!("defined again (first in {})", other.file),
                    );
                    continue;
                }
                if hub.business_key.is_empty() {
                    mistake(
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
    }

    fn links(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        for (file, spec) in specs {
            for (name, link) in &spec.links {
                if let Some(other) = self.model.links.iter().find(|l| &l.name == name) {
                    mistake(
                        errors,
                        file,
                        format!("link \"{name}\""),
                        format!("defined again (first in {})", other.file),
                    );
                    continue;
                }
                let link = self.link(file, name, link, errors);
                self.model.links.push(link);
            }
        }
    }

    /// One link, resolved against the hubs. It joins the model even with mistakes
    /// in its hubs or keys (they are reported), so events feeding it are still
    /// checked.
    fn link(
        &self,
        file: &str,
        name: &str,
        link: &LinkSpec,
        errors: &mut Vec<MappingError>,
    ) -> Link {
        let entry = format!("link \"{name}\"");
        let mut hubs = Vec::new();
        for hub in &link.hubs {
            match self.model.hub_id(hub) {
                Some(i) if hubs.contains(&i) => mistake(
                    errors,
                    file,
                    entry.clone(),
                    format!("names hub \"{hub}\" twice; a link joins distinct hubs"),
                ),
                Some(i) => hubs.push(i),
                None => mistake(
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
            mistake(
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
                Err(e) => mistake(
                    errors,
                    file,
                    format!("{entry}, dependent key \"{}\"", c.column),
                    e,
                ),
            }
        }
        Link {
            name: name.to_string(),
            file: file.to_string(),
            hash_key: link.hash_key.clone(),
            hubs,
            dependent_keys,
        }
    }

    fn satellites(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        for (file, spec) in specs {
            for (name, sat) in &spec.satellites {
                if let Some(satellite) = self.satellite(file, name, sat, errors) {
                    self.model.satellites.push(satellite);
                }
            }
        }
    }

    /// One satellite, with its parent resolved and its columns in hashdiff order;
    /// `None` (mistakes reported) when it cannot join the model.
    fn satellite(
        &self,
        file: &str,
        name: &str,
        sat: &SatSpec,
        errors: &mut Vec<MappingError>,
    ) -> Option<Satellite> {
        let entry = format!("satellite \"{name}\"");
        if let Some(other) = self.model.satellites.iter().find(|s| s.name == name) {
            mistake(
                errors,
                file,
                entry,
                format!("defined again (first in {})", other.file),
            );
            return None;
        }
        let parent = match (
            self.model.hub_id(&sat.parent),
            self.model.link_id(&sat.parent),
        ) {
            (Some(h), _) => Parent::Hub(h),
            (None, Some(l)) => Parent::Link(l),
            (None, None) => {
                mistake(
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
                return None;
            }
        };
        let mut columns = Vec::new();
        for (col, ty) in &sat.columns {
            match ty.parse::<ColumnType>() {
                Ok(t) => columns.push((col.clone(), t)),
                Err(e) => mistake(errors, file, format!("{entry}, column \"{col}\""), e),
            }
        }
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        if columns.is_empty() {
            mistake(errors, file, entry, "has no columns".into());
            return None;
        }
        Some(Satellite {
            name: name.to_string(),
            file: file.to_string(),
            parent,
            columns,
        })
    }

    /// The event types, in file order: a later file may override an earlier one's
    /// mapping of a type, once.
    fn events(&mut self, specs: &[(String, FileSpec)], errors: &mut Vec<MappingError>) {
        let mut overridden: Vec<String> = Vec::new();
        for (file, spec) in specs {
            for ev in &spec.events {
                let entry = format!("event \"{}\"", ev.event_type);
                if !self.may_map(file, &entry, ev, &mut overridden, errors) {
                    continue;
                }
                if let Some(m) = self.event(file, &entry, ev, errors) {
                    self.model.events.insert(ev.event_type.clone(), m);
                }
            }
        }
    }

    /// Whether `ev` may map its type: a first mapping, or the one override of an
    /// earlier one (remembered in `overridden`).
    fn may_map(
        &self,
        file: &str,
        entry: &str,
        ev: &EventSpec,
        overridden: &mut Vec<String>,
        errors: &mut Vec<MappingError>,
    ) -> bool {
        let problem = match (self.model.events.get(&ev.event_type), ev.overrides) {
            (Some(_), true) if !overridden.contains(&ev.event_type) => {
                overridden.push(ev.event_type.clone());
                return true;
            }
            (Some(other), true) => format!(
                "overridden twice (the other override is in {}); keep one",
                other.file
            ),
            (Some(other), false) => format!(
                "mapped again (first in {}); to replace that mapping, say `override = true` in this one",
                other.file
            ),
            (None, true) => "says `override = true`, but no earlier mapping of this event type exists to override; remove it".into(),
            (None, false) => return true,
        };
        mistake(errors, file, entry.to_string(), problem);
        false
    }

    /// A hub a link joins must be fed by some event, else no link row could ever
    /// be written.
    fn check_joined_hubs_fed(&self, errors: &mut Vec<MappingError>) {
        for link in &self.model.links {
            for &h in &link.hubs {
                let fed = self
                    .model
                    .events
                    .values()
                    .any(|e| e.hubs.iter().any(|(i, _)| *i == h));
                if !fed {
                    mistake(
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
    }
}

/// Lower-case letters, digits and `_`, not starting with a digit, at most 63 bytes
/// (PostgreSQL's identifier limit).
fn is_plain_schema_name(schema: &str) -> bool {
    schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Record a mistake and go on.
fn mistake(errors: &mut Vec<MappingError>, file: &str, entry: String, problem: String) {
    errors.push(MappingError {
        file: file.to_string(),
        entry,
        problem,
    });
}

/// The names a message lists as the defined ones.
fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
