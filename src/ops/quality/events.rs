//! The checks that look at events: completeness of required fields, uniqueness of
//! business keys per source batch, validity against the mappings' types and the
//! configured domains. Pure: events go in one at a time (the caller streams them
//! from the log), results come out.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::config::{Domain, QualityConfig};
use super::{Check, CheckResult, percent};
use crate::events::PayloadRef;
use crate::load::extract::{key_text, transformed, typed};
use crate::load::payload::Doc;
use crate::mapping::{ColumnType, Field, FieldPath, Mappings, Value};

/// Examined and failing items of one subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub examined: u64,
    pub failing: u64,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.examined += 1;
        if !ok {
            self.failing += 1;
        }
    }

    pub fn ratio(&self) -> f64 {
        if self.examined == 0 {
            1.0
        } else {
            (self.examined - self.failing) as f64 / self.examined as f64
        }
    }
}

/// One event of the log, as the checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub event_type: &'a str,
    pub source: &'a str,
    pub recorded_at: DateTime<Utc>,
    pub payload: PayloadRef<'a>,
}

/// A source batch: what one ingest transaction appended from one source.
type BatchId = (String, String, i64);

/// Tallies of the event checks over a stream of events.
pub struct EventChecks<'a> {
    config: &'a QualityConfig,
    mappings: &'a Mappings,
    required: HashMap<&'a str, Vec<(&'a str, FieldPath)>>,
    keys: HashMap<&'a str, FieldPath>,
    pub events: u64,
    completeness: BTreeMap<String, Tally>,
    batches: HashMap<BatchId, (u64, HashSet<u64>)>,
    validity: BTreeMap<String, Tally>,
    invalid_example: BTreeMap<String, String>,
}

impl<'a> EventChecks<'a> {
    /// Paths must already be checked ([`QualityConfig::check`]); bad ones are skipped.
    pub fn new(config: &'a QualityConfig, mappings: &'a Mappings) -> EventChecks<'a> {
        let required = config
            .completeness
            .required
            .iter()
            .map(|(t, fields)| {
                let paths = fields
                    .iter()
                    .filter_map(|f| Some((f.as_str(), FieldPath::parse(f).ok()?)))
                    .collect();
                (t.as_str(), paths)
            })
            .collect();
        let keys = config
            .uniqueness
            .keys
            .iter()
            .filter_map(|(t, k)| Some((t.as_str(), FieldPath::parse(k).ok()?)))
            .collect();
        EventChecks {
            config,
            mappings,
            required,
            keys,
            events: 0,
            completeness: BTreeMap::new(),
            batches: HashMap::new(),
            validity: BTreeMap::new(),
            invalid_example: BTreeMap::new(),
        }
    }

    pub fn observe(&mut self, e: Observed<'_>) {
        self.events += 1;
        // read as the loader reads it, so "present" and "valid" mean what loading means
        let payload: Option<Doc<'_>> = Doc::read(e.payload).ok();
        let null = Doc::Null;
        let p = payload.as_ref().unwrap_or(&null);
        if self.config.completeness.enabled
            && let Some(fields) = self.required.get(e.event_type)
        {
            for (name, path) in fields {
                let tally = self
                    .completeness
                    .entry(format!("{}.{name}", e.event_type))
                    .or_default();
                for present in cells(p, path) {
                    tally.add(present);
                }
            }
        }
        if self.config.uniqueness.enabled
            && let Some(path) = self.keys.get(e.event_type)
            && let Some(key) = key_digest(p, path)
        {
            let batch = (
                e.event_type.to_string(),
                e.source.to_string(),
                e.recorded_at.timestamp_micros(),
            );
            let (count, keys) = self.batches.entry(batch).or_default();
            *count += 1;
            keys.insert(key);
        }
        if self.config.validity.enabled {
            let problem = match &payload {
                None => Some("the payload is not JSON".to_string()),
                Some(p) => self.invalid(e.event_type, p),
            };
            self.validity
                .entry(e.event_type.to_string())
                .or_default()
                .add(problem.is_none());
            if let Some(problem) = problem {
                self.invalid_example
                    .entry(e.event_type.to_string())
                    .or_insert(problem);
            }
        }
    }

    /// Why an event is not valid against its mapping and the domains, if it is not.
    fn invalid(&self, event_type: &str, payload: &Doc<'_>) -> Option<String> {
        let m = self.mappings;
        let Some(em) = m.events.get(event_type) else {
            if m.skipped.contains(event_type) {
                // passed over on purpose (`dvault model skip`)
                return None;
            }
            return Some(format!(
                "no mapping for event type \"{event_type}\" (its events are held back)"
            ));
        };
        if !matches!(payload, Doc::Object(_)) {
            return Some("the payload is not a JSON object".into());
        }
        let check = |target: &str, col: &str, ty: ColumnType, field: &Field| {
            let domain = self.config.validity.domains.get(&format!("{target}.{col}"));
            let found = match field.path() {
                Some(path) => values(payload, path),
                None => Vec::new(),
            };
            let parsed = found
                .into_iter()
                .map(|v| match field {
                    Field::Path(_) => typed(Some(v), ty),
                    _ => transformed(field, Some(v), ty),
                })
                .chain(match field {
                    Field::Const(c) => Some(Ok(Some(c.clone()))),
                    _ => None,
                });
            for v in parsed {
                match v {
                    Err(e) => return Some(format!("{target}.{col} (field \"{field}\"): {e}")),
                    Ok(Some(value)) => {
                        if let Some(d) = domain
                            && let Err(e) = admits(d, &value)
                        {
                            return Some(format!("{target}.{col} (field \"{field}\"): {e}"));
                        }
                    }
                    Ok(None) => {}
                }
            }
            None
        };
        for (s, paths) in &em.satellites {
            let sat = &m.satellites[*s];
            for ((col, ty), path) in sat.columns.iter().zip(paths) {
                if let Some(field) = path
                    && let Some(problem) = check(&sat.name, col, *ty, field)
                {
                    return Some(problem);
                }
            }
        }
        for (l, paths) in &em.links {
            let link = &m.links[*l];
            for ((col, ty), path) in link.dependent_keys.iter().zip(paths) {
                if let Some(problem) = check(&link.name, col, *ty, path) {
                    return Some(problem);
                }
            }
        }
        None
    }

    /// The three results, in order: completeness, uniqueness, validity (disabled
    /// checks are left out).
    pub fn results(&self) -> Vec<CheckResult> {
        let c = self.config;
        let mut out = Vec::new();
        if c.completeness.enabled {
            out.push(ratio_result(
                Check::Completeness,
                c.completeness.min_ratio,
                &self.completeness,
                |subject, t| {
                    format!(
                        "{subject} present in {} of {} ({} missing)",
                        percent(t.ratio()),
                        t.examined,
                        t.failing
                    )
                },
            ));
        }
        if c.uniqueness.enabled {
            let tallies: BTreeMap<String, Tally> = self
                .batches
                .iter()
                .map(|((ty, source, at), (count, keys))| {
                    let at = DateTime::<Utc>::from_timestamp_micros(*at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                        .unwrap_or_default();
                    (
                        format!("{ty} from {source} recorded {at}"),
                        Tally {
                            examined: *count,
                            failing: count - keys.len() as u64,
                        },
                    )
                })
                .collect();
            out.push(ratio_result(
                Check::Uniqueness,
                c.uniqueness.min_ratio,
                &tallies,
                |subject, t| {
                    format!(
                        "{subject}: {} duplicate key(s) in {} events ({} unique)",
                        t.failing,
                        t.examined,
                        percent(t.ratio())
                    )
                },
            ));
        }
        if c.validity.enabled {
            out.push(ratio_result(
                Check::Validity,
                c.validity.min_ratio,
                &self.validity,
                |subject, t| {
                    let mut s = format!(
                        "{subject}: {} of {} events invalid ({} valid)",
                        t.failing,
                        t.examined,
                        percent(t.ratio())
                    );
                    if let Some(e) = self.invalid_example.get(subject) {
                        s.push_str(&format!(", e.g. {e}"));
                    }
                    s
                },
            ));
        }
        for r in &mut out {
            r.scope_events = self.events as i64;
        }
        out
    }
}

/// A ratio check: the worst subject decides; the detail names the subjects below
/// the threshold (at most 10), or the worst one when all pass.
fn ratio_result(
    check: Check,
    threshold: f64,
    tallies: &BTreeMap<String, Tally>,
    describe: impl Fn(&str, &Tally) -> String,
) -> CheckResult {
    let mut result = CheckResult::new(check, threshold);
    let mut ranked: Vec<(&String, &Tally)> =
        tallies.iter().filter(|(_, t)| t.examined > 0).collect();
    ranked.sort_by(|a, b| a.1.ratio().total_cmp(&b.1.ratio()).then(a.0.cmp(b.0)));
    result.examined = ranked.iter().map(|(_, t)| t.examined as i64).sum();
    result.failing = ranked.iter().map(|(_, t)| t.failing as i64).sum();
    let Some((worst, worst_tally)) = ranked.first() else {
        result.detail = "nothing to check: no events of the configured types in scope".into();
        return result;
    };
    result.measured = Some(worst_tally.ratio());
    result.worst = Some(worst.to_string());
    result.passed = worst_tally.ratio() >= threshold;
    let below: Vec<&(&String, &Tally)> = ranked
        .iter()
        .filter(|(_, t)| t.ratio() < threshold)
        .collect();
    result.detail = if below.is_empty() {
        format!("worst: {}", describe(worst, worst_tally))
    } else {
        let mut shown: Vec<String> = below.iter().take(10).map(|(s, t)| describe(s, t)).collect();
        if below.len() > 10 {
            shown.push(format!("and {} more", below.len() - 10));
        }
        shown.join("; ")
    };
    let breakdown: serde_json::Map<String, Json> = ranked
        .iter()
        .filter(|(_, t)| t.failing > 0)
        .take(50)
        .map(|(s, t)| {
            (
                s.to_string(),
                json!({"ratio": t.ratio(), "examined": t.examined, "failing": t.failing}),
            )
        })
        .collect();
    result.breakdown = Json::Object(breakdown);
    result
}

/// The non-null values `path` reaches: one at most, or one per array element.
fn values<'p, 'd>(payload: &'p Doc<'d>, path: &FieldPath) -> Vec<&'p Doc<'d>> {
    let given = |v: &&Doc<'_>| !matches!(v, Doc::Null);
    match path {
        FieldPath::Top(p) => payload.at(p).filter(given).into_iter().collect(),
        FieldPath::Each { array, field } => match payload.at(array) {
            Some(Doc::Array(items)) => items
                .iter()
                .filter_map(|item| item.at(field))
                .filter(given)
                .collect(),
            _ => Vec::new(),
        },
    }
}

fn present(v: Option<&Doc<'_>>) -> bool {
    match v {
        None | Some(Doc::Null) => false,
        Some(Doc::String(s)) => !s.trim_matches(' ').is_empty(),
        Some(_) => true,
    }
}

/// Whether the required field is present: one cell for a plain path, one per
/// element for an array path (a missing or empty array is one missing cell).
fn cells(payload: &Doc<'_>, path: &FieldPath) -> Vec<bool> {
    match path {
        FieldPath::Top(p) => vec![present(payload.at(p))],
        FieldPath::Each { array, field } => match payload.at(array) {
            Some(Doc::Array(items)) if !items.is_empty() => {
                items.iter().map(|item| present(item.at(field))).collect()
            }
            _ => vec![false],
        },
    }
}

/// A digest of the business key as the loader reads it ([`key_text`]) and the
/// hashing standard compares keys (upper-cased); `None` when the key is missing.
fn key_digest(payload: &Doc<'_>, path: &FieldPath) -> Option<u64> {
    let FieldPath::Top(p) = path else {
        return None;
    };
    let text = key_text(payload.at(p))?.to_uppercase();
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
}

/// Does `value` lie in `domain`?
pub fn admits(domain: &Domain, value: &Value) -> Result<(), String> {
    let text = value.canonical();
    if let Some(allowed) = &domain.values
        && !allowed.iter().any(|a| a == &text)
    {
        return Err(format!(
            "\"{text}\" is not one of {}",
            allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if domain.min.is_some() || domain.max.is_some() {
        let n: f64 = match value {
            Value::Int(i) => *i as f64,
            Value::Numeric(d) => d.to_string().parse().unwrap_or(f64::NAN),
            _ => return Err(format!("\"{text}\" is not a number")),
        };
        if let Some(min) = domain.min
            && n < min
        {
            return Err(format!("{text} is below the minimum {min}"));
        }
        if let Some(max) = domain.max
            && n > max
        {
            return Err(format!("{text} is above the maximum {max}"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
