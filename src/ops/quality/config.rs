//! Quality gate thresholds and rules: a TOML file (`--quality-config`, env
//! `DVAULT_QUALITY_CONFIG`); any section left out keeps its default.
//! `deploy/quality.toml` is the documented default, and a test keeps it equal to
//! [`QualityConfig::default`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::mapping::{Field, FieldPath, Mappings, Parent};

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    pub completeness: Completeness,
    pub uniqueness: Uniqueness,
    pub validity: Validity,
    pub referential: Referential,
    pub freshness: Freshness,
}

/// Required fields, per event type, present (not null, not blank) in at least
/// `min_ratio` of the events, field by field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Completeness {
    pub enabled: bool,
    pub min_ratio: f64,
    /// event type → field paths (`a`, `a.b`, `lines[].product_id`)
    pub required: BTreeMap<String, Vec<String>>,
}

/// Business keys unique within each source batch (the events one ingest
/// transaction appended from one source), batch by batch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Uniqueness {
    pub enabled: bool,
    pub min_ratio: f64,
    /// event type → the field holding the key that should appear once per batch
    pub keys: BTreeMap<String, String>,
}

/// Mapped values that parse as their declared types and lie in their domains, in
/// at least `min_ratio` of the events of each type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Validity {
    pub enabled: bool,
    pub min_ratio: f64,
    /// `satellite.column` → its domain
    pub domains: BTreeMap<String, Domain>,
}

/// Allowed values of a column: a list, and/or numeric bounds.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Domain {
    pub values: Option<Vec<String>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Links whose hub keys must be known: the hub row exists and, when `satellite` is
/// given, that hub has a row in it (it was registered by its own source, not only
/// referred to by another event).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Referential {
    pub enabled: bool,
    pub max_orphans: i64,
    pub rules: Vec<ReferenceRule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRule {
    pub link: String,
    pub hub: String,
    #[serde(default)]
    pub satellite: Option<String>,
}

/// The newest event in the log is at most `max_age_hours` old.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Freshness {
    pub enabled: bool,
    pub max_age_hours: f64,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for Completeness {
    fn default() -> Self {
        let required = [
            (
                "customer_registered",
                &[
                    "customer_id",
                    "first_name",
                    "last_name",
                    "email",
                    "country",
                    "signup_date",
                ][..],
            ),
            (
                "product_listed",
                &["product_id", "name", "category", "price"],
            ),
            (
                "order_placed",
                &[
                    "order_id",
                    "customer_id",
                    "ordered_at",
                    "lines[].product_id",
                    "lines[].quantity",
                    "lines[].unit_price",
                ],
            ),
            ("order_status_changed", &["order_id", "status"]),
            (
                "product_viewed",
                &["customer_id", "product_id", "session_id", "viewed_at"],
            ),
        ];
        Completeness {
            enabled: true,
            min_ratio: 0.95,
            required: required
                .iter()
                .map(|(t, f)| (t.to_string(), strings(f)))
                .collect(),
        }
    }
}

impl Default for Uniqueness {
    fn default() -> Self {
        Uniqueness {
            enabled: true,
            min_ratio: 0.99,
            keys: [
                ("customer_registered", "customer_id"),
                ("product_listed", "product_id"),
                ("order_placed", "order_id"),
            ]
            .iter()
            .map(|(t, k)| (t.to_string(), k.to_string()))
            .collect(),
        }
    }
}

impl Default for Validity {
    fn default() -> Self {
        let min = |m: f64| Domain {
            min: Some(m),
            ..Domain::default()
        };
        Validity {
            enabled: true,
            min_ratio: 0.90,
            domains: [
                (
                    "sat_order_status.status",
                    Domain {
                        values: Some(strings(&crate::mapping::ORDER_STATUSES)),
                        ..Domain::default()
                    },
                ),
                ("sat_order_line.quantity", min(1.0)),
                ("sat_order_line.unit_price", min(0.0)),
                ("sat_order_line.discount", min(0.0)),
                ("sat_product_details.price", min(0.0)),
            ]
            .into_iter()
            .map(|(k, d)| (k.to_string(), d))
            .collect(),
        }
    }
}

impl Default for Referential {
    fn default() -> Self {
        let rule = |link: &str, hub: &str, sat: &str| ReferenceRule {
            link: link.into(),
            hub: hub.into(),
            satellite: Some(sat.into()),
        };
        Referential {
            enabled: true,
            max_orphans: 0,
            rules: vec![
                rule(
                    "link_order_customer",
                    "hub_customer",
                    "sat_customer_profile",
                ),
                rule("link_order_product", "hub_product", "sat_product_details"),
            ],
        }
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            enabled: true,
            max_age_hours: 26.0,
        }
    }
}

impl QualityConfig {
    /// Parse a TOML text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<QualityConfig, String> {
        let config: QualityConfig =
            toml::from_str(text).map_err(|e| format!("{file}: {}", e.to_string().trim_end()))?;
        config.check_ratios().map_err(|e| format!("{file}: {e}"))?;
        Ok(config)
    }

    /// Read `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<QualityConfig, String> {
        match path {
            None => Ok(QualityConfig::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read the quality config {}: {e}", p.display()))?;
                QualityConfig::parse(&p.display().to_string(), &text)
            }
        }
    }

    fn check_ratios(&self) -> Result<(), String> {
        for (section, r) in [
            ("completeness", self.completeness.min_ratio),
            ("uniqueness", self.uniqueness.min_ratio),
            ("validity", self.validity.min_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!(
                    "[{section}] min_ratio must be between 0 and 1 (0.95 means 95 %), got {r}"
                ));
            }
        }
        if self.referential.max_orphans < 0 {
            return Err("[referential] max_orphans must be 0 or more".into());
        }
        if self.freshness.max_age_hours.is_nan() || self.freshness.max_age_hours <= 0.0 {
            return Err("[freshness] max_age_hours must be more than 0".into());
        }
        Ok(())
    }

    /// Fill in, from the model, what the config says nothing about (so the gate follows
    /// a user's mapping set, not a fixed list of built-in types; the built-in event
    /// types keep the documented defaults):
    ///
    /// - completeness: for each event type with no `required` entry, the fields of its
    ///   business keys;
    /// - uniqueness: for each event type with no `keys` entry that feeds one hub and no
    ///   link (an entity file: customers, products), that hub's key field;
    /// - validity: for each satellite column or link dependent key with no domain that
    ///   every event feeding it maps through a value map, the map's stored values.
    pub fn with_model_defaults(mut self, m: &Mappings) -> QualityConfig {
        // the built-in types keep exactly the documented defaults (deploy/quality.toml)
        let mut types: Vec<&String> = m
            .events
            .iter()
            .filter(|(_, em)| !em.is_builtin())
            .map(|(t, _)| t)
            .collect();
        types.sort();
        for t in types {
            let em = &m.events[t];
            if !self.completeness.required.contains_key(t) {
                let mut fields: Vec<String> = em
                    .hubs
                    .iter()
                    .flat_map(|(_, paths)| paths.iter().map(ToString::to_string))
                    .collect();
                fields.sort();
                fields.dedup();
                self.completeness.required.insert(t.clone(), fields);
            }
            if !self.uniqueness.keys.contains_key(t)
                && em.links.is_empty()
                && let [(_, paths)] = &em.hubs[..]
                && let [path @ FieldPath::Top(_)] = &paths[..]
            {
                self.uniqueness.keys.insert(t.clone(), path.to_string());
            }
        }
        // (target.column) → stored values of its maps; None once a plain source feeds it
        let mut vocab: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
        let mut note = |name: String, field: &Field| {
            let entry = vocab.entry(name).or_insert_with(|| Some(Vec::new()));
            match (field, entry.as_mut()) {
                (Field::Rule(r), Some(values)) if r.map.is_some() => {
                    if let Some(map) = &r.map {
                        values.extend(map.targets().map(|v| v.canonical()));
                    }
                }
                _ => *entry = None,
            }
        };
        for em in m.events.values() {
            for (s, cols) in &em.satellites {
                let sat = &m.satellites[*s];
                for ((col, _), field) in sat.columns.iter().zip(cols) {
                    if let Some(field) = field {
                        note(format!("{}.{col}", sat.name), field);
                    }
                }
            }
            for (l, deps) in &em.links {
                let link = &m.links[*l];
                for ((col, _), field) in link.dependent_keys.iter().zip(deps) {
                    note(format!("{}.{col}", link.name), field);
                }
            }
        }
        for (name, values) in vocab {
            if let Some(mut values) = values
                && !values.is_empty()
                && !self.validity.domains.contains_key(&name)
            {
                values.sort();
                values.dedup();
                self.validity.domains.insert(
                    name,
                    Domain {
                        values: Some(values),
                        ..Domain::default()
                    },
                );
            }
        }
        self
    }

    /// Every name must exist in the mappings: a misspelt rule would silently check
    /// nothing. All problems are reported together.
    pub fn check(&self, m: &Mappings) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.completeness.enabled {
            self.check_completeness(m, &mut problems);
        }
        if self.uniqueness.enabled {
            self.check_uniqueness(m, &mut problems);
        }
        if self.validity.enabled {
            self.check_validity(m, &mut problems);
        }
        if self.referential.enabled {
            self.check_referential(m, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the quality config has {} problem(s):\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ))
        }
    }

    /// `[completeness.required]`: known event types, field paths that parse.
    fn check_completeness(&self, m: &Mappings, problems: &mut Vec<String>) {
        for (t, fields) in &self.completeness.required {
            if !m.events.contains_key(t) {
                problems.push(format!(
                    "[completeness.required] unknown event type \"{t}\""
                ));
            }
            for f in fields {
                if let Err(e) = FieldPath::parse(f) {
                    problems.push(format!("[completeness.required] {t}: {e}"));
                }
            }
        }
    }

    /// `[uniqueness.keys]`: known event types, one top-level field per event.
    fn check_uniqueness(&self, m: &Mappings, problems: &mut Vec<String>) {
        for (t, key) in &self.uniqueness.keys {
            if !m.events.contains_key(t) {
                problems.push(format!("[uniqueness.keys] unknown event type \"{t}\""));
            }
            match FieldPath::parse(key) {
                Ok(FieldPath::Top(_)) => {}
                Ok(_) => problems.push(format!(
                    "[uniqueness.keys] {t}: \"{key}\" iterates an array; name one field per event"
                )),
                Err(e) => problems.push(format!("[uniqueness.keys] {t}: {e}")),
            }
        }
    }

    /// `[validity.domains]`: satellite columns (or link dependent keys) that exist,
    /// each with a domain to check.
    fn check_validity(&self, m: &Mappings, problems: &mut Vec<String>) {
        for (name, domain) in &self.validity.domains {
            let known = name.split_once('.').is_some_and(|(sat, col)| {
                m.satellite_id(sat)
                    .is_some_and(|s| m.satellites[s].columns.iter().any(|(c, _)| c == col))
                    || m.link_id(sat)
                        .is_some_and(|l| m.links[l].dependent_keys.iter().any(|(c, _)| c == col))
            });
            if !known {
                problems.push(format!(
                    "[validity.domains] \"{name}\" is no satellite column (or link dependent key) of the mappings; write \"<satellite>.<column>\""
                ));
            }
            if domain.values.is_none() && domain.min.is_none() && domain.max.is_none() {
                problems.push(format!(
                    "[validity.domains] \"{name}\": give values = [...], min or max"
                ));
            }
        }
    }

    /// `[[referential.rules]]`: a link that joins the hub, and a satellite of that
    /// hub.
    fn check_referential(&self, m: &Mappings, problems: &mut Vec<String>) {
        for r in &self.referential.rules {
            let at = format!("[[referential.rules]] link \"{}\"", r.link);
            let (Some(l), Some(h)) = (m.link_id(&r.link), m.hub_id(&r.hub)) else {
                problems.push(format!(
                    "{at}, hub \"{}\": no such link or hub in the mappings",
                    r.hub
                ));
                continue;
            };
            if !m.links[l].hubs.contains(&h) {
                problems.push(format!("{at} does not join hub \"{}\"", r.hub));
            }
            if let Some(sat) = &r.satellite
                && m.satellite_id(sat)
                    .is_none_or(|s| m.satellites[s].parent != Parent::Hub(h))
            {
                problems.push(format!(
                    "{at}: \"{sat}\" is no satellite of hub \"{}\"",
                    r.hub
                ));
            }
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
