//! `dvault ingest --check`: what the active model would do with a file, before a
//! single row is stored: rows the ingest or the loader would quarantine (with the
//! first reasons), events held back for want of a mapping, mapped columns the file
//! leaves NULL, and fields no mapping reads. Reads the file; writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{EventMapping, Field, FieldPath, Mappings};
use crate::events::csv_rows::{Header, RowSpec};
use crate::events::ingest::{self, Format, IngestOptions, Rejection};
use crate::events::{NewEvent, Payload, StoredEvent, Xid8};
use crate::human::thousands;
use crate::load::payload::Doc;

/// Reasons shown per kind of problem.
const SHOWN: usize = 3;

/// What the model would do with one file.
#[derive(Debug, Default)]
pub struct Preview {
    pub path: PathBuf,
    pub rows: u64,
    /// Rows the ingest itself refuses (bad CSV, bad JSON, bad time).
    pub refused: u64,
    /// Events the loader would quarantine.
    pub quarantined: u64,
    reasons: Vec<String>,
    /// Events held back per type: no mapping knows it.
    pub held: BTreeMap<String, u64>,
    /// (event type, `target.column`, field) → events that leave it NULL.
    pub nulls: BTreeMap<(String, String, String), u64>,
    /// Per event type: events, and top-level fields that no mapping reads.
    events: BTreeMap<String, u64>,
    unread: BTreeMap<String, BTreeSet<String>>,
}

impl Preview {
    /// Would everything load, as it is in the file?
    pub fn clean(&self) -> bool {
        self.refused == 0 && self.quarantined == 0 && self.held.is_empty()
    }

    fn observe(&mut self, m: &Mappings, line: u64, item: Result<NewEvent, Rejection>) {
        self.rows += 1;
        let e = match item {
            Ok(e) => e,
            Err(r) => {
                self.refused += 1;
                if self.reasons.len() < SHOWN {
                    self.reasons
                        .push(format!("line {}: refused at ingest: {}", r.line, r.reason));
                }
                return;
            }
        };
        *self.events.entry(e.event_type.clone()).or_default() += 1;
        let Some(em) = m.events.get(&e.event_type) else {
            if !m.skipped.contains(&e.event_type) {
                *self.held.entry(e.event_type).or_default() += 1;
            }
            return;
        };
        let stored = StoredEvent {
            seq: line as i64,
            xid: Xid8(0),
            event_id: e.event_id,
            event_type: e.event_type,
            source: e.source,
            occurred_at: e.occurred_at,
            recorded_at: Utc::now(),
            payload: Payload::Json(e.payload),
            damaged: None,
        };
        let (_, rejects) = crate::load::project(m, std::slice::from_ref(&stored));
        if let Some(r) = rejects.first() {
            self.quarantined += 1;
            if self.reasons.len() < SHOWN {
                self.reasons
                    .push(format!("line {line}: would be quarantined: {}", r.reason));
            }
            return;
        }
        let Ok(doc) = Doc::read(stored.payload.as_ref()) else {
            return;
        };
        self.note_fields(m, em, &stored.event_type, &doc);
    }

    /// Mapped columns the event leaves NULL (top-level fields, no default), and its
    /// top-level fields no mapping reads.
    fn note_fields(&mut self, m: &Mappings, em: &EventMapping, event_type: &str, doc: &Doc<'_>) {
        let mut read: BTreeSet<&str> = BTreeSet::new();
        for (_, paths) in &em.hubs {
            for p in paths {
                note_read(p, &mut read);
            }
        }
        for (target, f) in sources(m, em) {
            let Some(p) = f.path() else { continue };
            note_read(p, &mut read);
            let has_default = matches!(f, Field::Rule(r) if r.default.is_some());
            if let FieldPath::Top(parts) = p
                && !has_default
            {
                let mut v = Some(doc);
                for part in parts {
                    v = v.and_then(|d| d.get(part));
                }
                if matches!(v, None | Some(Doc::Null)) {
                    *self
                        .nulls
                        .entry((event_type.to_string(), target, p.to_string()))
                        .or_default() += 1;
                }
            }
        }
        if let Doc::Object(fields) = doc {
            let unread = self.unread.entry(event_type.to_string()).or_default();
            for (k, _) in fields {
                if !read.contains(k.as_ref()) {
                    unread.insert(k.to_string());
                }
            }
        }
    }
}

/// The top-level field a path reads (its first part), into `read`.
fn note_read<'a>(p: &'a FieldPath, read: &mut BTreeSet<&'a str>) {
    let (FieldPath::Top(parts) | FieldPath::Each { array: parts, .. }) = p;
    if let Some(first) = parts.first() {
        read.insert(first.as_str());
    }
}

/// Each mapped column of the event's satellites and links (`target.column`), with
/// its source.
fn sources<'a>(m: &Mappings, em: &'a EventMapping) -> Vec<(String, &'a Field)> {
    let mut sources: Vec<(String, &Field)> = Vec::new();
    for (s, cols) in &em.satellites {
        let sat = &m.satellites[*s];
        for ((col, _), f) in sat.columns.iter().zip(cols) {
            if let Some(f) = f {
                sources.push((format!("{}.{col}", sat.name), f));
            }
        }
    }
    for (l, deps) in &em.links {
        let link = &m.links[*l];
        for ((col, _), f) in link.dependent_keys.iter().zip(deps) {
            sources.push((format!("{}.{col}", link.name), f));
        }
    }
    sources
}

/// Read `path` as `dvault ingest` would (same options) and run every row through
/// the model `m`.
pub fn check_file(path: &Path, opts: &IngestOptions, m: &Mappings) -> Result<Preview, String> {
    let format = opts
        .format
        .or_else(|| Format::detect(path))
        .ok_or("cannot tell the format from the file name; use --format csv or --format ndjson")?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let input = BufReader::with_capacity(1 << 20, file);
    let mut preview = Preview {
        path: path.to_path_buf(),
        ..Preview::default()
    };
    let now = Utc::now();
    let mut observe = |line: u64, item: Result<NewEvent, Rejection>, _: u64| {
        preview.observe(m, line, item);
        true
    };
    match format {
        Format::Csv => {
            let spec = RowSpec {
                event_type: opts
                    .event_type_of(path)
                    .ok_or("a CSV file needs --type EVENT_TYPE (what each row is)")?,
                source: opts
                    .source
                    .clone()
                    .ok_or("a CSV file needs --source NAME (where it came from)")?,
                time_field: opts.time_field.clone(),
            };
            spec.check()?;
            let event = |header: &Header, fields: &[&[u8]]| {
                header.event(fields, &spec, now, &opts.time_range)
            };
            ingest::read_csv(input, &spec, event, &mut observe)?;
        }
        Format::Ndjson => {
            ingest::read_ndjson(input, now, &opts.time_range, &mut observe)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(preview)
}

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: u64 = self.held.values().sum();
        let loads = self.rows - self.refused - self.quarantined - held;
        writeln!(
            f,
            "{}: {} rows checked (nothing stored): {} would load, {} refused at ingest, {} quarantined at load, {} held back",
            self.path.display(),
            thousands(self.rows),
            thousands(loads),
            thousands(self.refused),
            thousands(self.quarantined),
            thousands(held)
        )?;
        for r in &self.reasons {
            writeln!(f, "  {r}")?;
        }
        for (ty, n) in &self.held {
            writeln!(
                f,
                "  held back: {} events of type \"{ty}\": no mapping knows it (add one: docs/mappings.md, Bring your own data)",
                thousands(*n)
            )?;
        }
        for ((ty, target, field), n) in &self.nulls {
            let of = self.events.get(ty).copied().unwrap_or(0);
            writeln!(
                f,
                "  would leave {target} NULL in {} of {} \"{ty}\" events (field \"{field}\" missing or empty)",
                thousands(*n),
                thousands(of)
            )?;
        }
        for (ty, fields) in &self.unread {
            if !fields.is_empty() && !self.held.contains_key(ty) {
                let list: Vec<&str> = fields.iter().map(String::as_str).collect();
                writeln!(
                    f,
                    "  fields of \"{ty}\" no mapping reads (kept in the log only): {}",
                    list.join(", ")
                )?;
            }
        }
        Ok(())
    }
}
