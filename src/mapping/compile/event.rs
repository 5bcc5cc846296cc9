//! Compiling one event type's mapping against the model: which hubs it keys (and
//! from which payload paths), which links and satellites it feeds, and the source
//! of each dependent key and column. A target the event feeds must have its
//! parents fed by the same event, since a row needs its parent's hash key from the
//! same payload; and a target iterates at most one array, so its rows are well
//! defined.

use std::collections::BTreeMap;

use super::{Builder, names};
use crate::mapping::spec::EventSpec;
use crate::mapping::{
    EventMapping, Field, FieldPath, FieldSpec, HubId, LinkId, MappingError, Mappings, Parent, SatId,
};

/// Where a mistake goes: the event's file and entry are already known.
type Problem<'a> = dyn FnMut(String) + 'a;

impl Builder {
    /// The mapping of `ev`, or `None` (with every mistake in `errors`).
    pub(super) fn event(
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
        let hubs: Vec<_> = ev
            .hubs
            .iter()
            .filter_map(|(name, fields)| hub(m, name, fields, &mut problem))
            .collect();
        let links: Vec<_> = ev
            .links
            .iter()
            .filter_map(|(name, deps)| link(m, name, deps, &hubs, &mut problem))
            .collect();
        let satellites: Vec<_> = ev
            .satellites
            .iter()
            .filter_map(|(name, fields)| satellite(m, name, fields, &hubs, &links, &mut problem))
            .collect();
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

/// A hub the event keys, with the paths of its business key columns; `None` when
/// the hub is unknown or the event gives the wrong number of fields.
fn hub(
    m: &Mappings,
    name: &str,
    fields: &[String],
    problem: &mut Problem<'_>,
) -> Option<(HubId, Vec<FieldPath>)> {
    let Some(h) = m.hub_id(name) else {
        problem(format!(
            "unknown hub \"{name}\" (defined hubs: {})",
            names(m.hubs.iter().map(|h| &h.name))
        ));
        return None;
    };
    if fields.len() != m.hubs[h].business_key.len() {
        problem(format!(
            "hub \"{name}\" has {} business key column(s) ({}), the event gives {} field(s)",
            m.hubs[h].business_key.len(),
            m.hubs[h].business_key.join(", "),
            fields.len()
        ));
        return None;
    }
    let paths = fields
        .iter()
        .filter_map(|t| FieldPath::parse(t).map_err(&mut *problem).ok())
        .collect();
    Some((h, paths))
}

/// A link the event feeds, with the sources of its dependent keys; `None` only
/// when the link is unknown (other mistakes are reported, the link kept).
fn link(
    m: &Mappings,
    name: &str,
    deps: &BTreeMap<String, FieldSpec>,
    hubs: &[(HubId, Vec<FieldPath>)],
    problem: &mut Problem<'_>,
) -> Option<(LinkId, Vec<Field>)> {
    let Some(l) = m.link_id(name) else {
        problem(format!(
            "unknown link \"{name}\" (defined links: {})",
            names(m.links.iter().map(|l| &l.name))
        ));
        return None;
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
    Some((l, dep_fields))
}

/// A satellite the event feeds, with the source of each of its columns the event
/// maps; `None` only when the satellite is unknown (other mistakes are reported,
/// the satellite kept).
fn satellite(
    m: &Mappings,
    name: &str,
    fields: &BTreeMap<String, FieldSpec>,
    hubs: &[(HubId, Vec<FieldPath>)],
    links: &[(LinkId, Vec<Field>)],
    problem: &mut Problem<'_>,
) -> Option<(SatId, Vec<Option<Field>>)> {
    let Some(s) = m.satellite_id(name) else {
        problem(format!(
            "unknown satellite \"{name}\" (defined satellites: {})",
            names(m.satellites.iter().map(|s| &s.name))
        ));
        return None;
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
    Some((s, cols))
}

impl EventMapping {
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
