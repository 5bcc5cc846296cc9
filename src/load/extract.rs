//! Event → vault rows, following the mappings. Pure: no I/O.
//!
//! An event is all or nothing: if any key or value does not fit, none of its rows
//! are kept and the reason names the mapping, the target, the field and the value.

use std::sync::Arc;

use compact_str::CompactString;

use super::payload::{Doc, Scalar};
use crate::hash::{self, Hash, KeyMap};
use crate::mapping::types::parse_scalar;
use crate::mapping::{
    ColumnType, EventMapping, Field, FieldPath, LinkId, Mappings, Parent, PerHub, PerLink, Value,
};

use super::rows::{BusinessKey, HubRow, LinkRow, Origin, Rows, SatRow, room};

/// A hub key of one event: once, or per element of the array its key iterates. With
/// each key, where its row is in the batch's rows of the hub (its business key).
enum Keys {
    One(Hash, usize),
    Each(Vec<(Hash, usize)>),
}

impl Keys {
    fn get(&self, i: usize) -> (&Hash, usize) {
        match self {
            Keys::One(h, row) => (h, *row),
            Keys::Each(v) => (&v[i].0, v[i].1),
        }
    }
}

/// The value at `path`, for row `i` of its array (ignored for top-level paths).
fn lookup<'a, 'd>(
    payload: &'a Doc<'d>,
    path: &FieldPath,
    items: &'a [Doc<'d>],
    i: usize,
) -> Option<&'a Doc<'d>> {
    match path {
        FieldPath::Top(p) => payload.at(p),
        FieldPath::Each { field, .. } => items.get(i).and_then(|item| item.at(field)),
    }
}

/// A field's value as `ty`; a missing field is null.
pub(crate) fn typed(v: Option<&Doc<'_>>, ty: ColumnType) -> Result<Option<Value>, String> {
    match v {
        None => Ok(None),
        Some(doc) => parse_scalar(&doc.scalar(), ty, &|| doc.to_string()),
    }
}

/// A column's value from its source, for row `i`: a plain path as [`typed`] (inlined:
/// the common case costs what it did before transformations existed); a constant,
/// value map or default as compiled in the mapping.
#[inline(always)]
fn sourced<'a, 'd>(
    field: &Field,
    payload: &'a Doc<'d>,
    items: &'a [Doc<'d>],
    i: usize,
    ty: ColumnType,
) -> Result<Option<Value>, String> {
    match field {
        Field::Path(p) => typed(lookup(payload, p, items, i), ty),
        _ => derived(field, payload, items, i, ty),
    }
}

#[inline(never)]
fn derived<'a, 'd>(
    field: &Field,
    payload: &'a Doc<'d>,
    items: &'a [Doc<'d>],
    i: usize,
    ty: ColumnType,
) -> Result<Option<Value>, String> {
    transformed(
        field,
        field.path().and_then(|p| lookup(payload, p, items, i)),
        ty,
    )
}

/// The value of a field that is not a plain path (a constant, value map or default,
/// as compiled in the mapping) from what its path found, if it has one.
pub(crate) fn transformed(
    field: &Field,
    raw: Option<&Doc<'_>>,
    ty: ColumnType,
) -> Result<Option<Value>, String> {
    match raw {
        None => field.value(None, ty, &String::new),
        Some(doc) => field.value(Some(&doc.scalar()), ty, &|| doc.to_string()),
    }
}

/// The longest business-key part or dependent-key value, in bytes of UTF-8.
///
/// Key columns are indexed, and a PostgreSQL B-tree entry holds at most 2,704 bytes
/// (a third of a page): one oversized key would fail every load that meets it. 512
/// bytes keeps a key of five such parts under that limit; an identifier longer than
/// a few hundred characters is a mistake in the source, not a key.
pub const MAX_KEY_BYTES: usize = 512;

/// Why a key part is refused, if it is: too long, or text that could make two
/// different keys hash alike (see [`crate::hash`]).
fn key_part_problem(text: &str) -> Option<String> {
    if text.len() > MAX_KEY_BYTES {
        return Some(format!(
            "the key is {} bytes long, more than the limit of {MAX_KEY_BYTES} bytes",
            text.len()
        ));
    }
    hash::check_part(text).err().map(|e| e.to_string())
}

/// A business key part: strings and numbers; trimmed.
pub(crate) fn key_text(v: Option<&Doc<'_>>) -> Option<CompactString> {
    match v?.scalar() {
        Scalar::String(s) => Some(crate::hash::trim_spaces(s).into()),
        Scalar::Number(n) => Some(n.as_ref().into()),
        Scalar::Bool(b) => Some(if b { "true" } else { "false" }.into()),
        Scalar::Null | Scalar::Composite(_) => None,
    }
    .filter(|s: &CompactString| !s.is_empty())
}

/// Project one event into `out`. `Err` is the reason to reject it; then `out` is
/// left as it was.
pub fn extract(
    m: &Mappings,
    em: &EventMapping,
    payload: &Doc<'_>,
    origin: Arc<Origin>,
    out: &mut Rows,
) -> Result<(), String> {
    let mark = out.mark();
    let result = extract_into(m, em, payload, origin, out);
    if result.is_err() {
        out.truncate(&mark);
    }
    result
}

fn extract_into(
    m: &Mappings,
    em: &EventMapping,
    payload: &Doc<'_>,
    origin: Arc<Origin>,
    rows: &mut Rows,
) -> Result<(), String> {
    if !payload.is_object() {
        return Err("the payload is not a JSON object".into());
    }
    let event = Event {
        m,
        em,
        payload,
        origin,
    };
    let keys = event.hubs(rows)?;
    let link_keys = event.links(rows, &keys)?;
    event.satellites(rows, &keys, &link_keys)
}

/// A satellite's parent keys in this event: its hub's key(s), or its link's.
fn parent_keys(
    parent: Parent,
    keys: &PerHub<Option<Keys>>,
    link_keys: &PerLink<Option<Vec<Hash>>>,
) -> Vec<Hash> {
    match parent {
        Parent::Hub(h) => match &keys[h] {
            Some(Keys::One(hk, _)) => vec![*hk],
            Some(Keys::Each(v)) => v.iter().map(|(hk, _)| *hk).collect(),
            None => Vec::new(),
        },
        Parent::Link(l) => link_keys[l].clone().unwrap_or_default(),
    }
}

/// One event being extracted: hub keys first, then the links that join them, then
/// the satellites of both.
struct Event<'e, 'p> {
    m: &'e Mappings,
    em: &'e EventMapping,
    payload: &'e Doc<'p>,
    origin: Arc<Origin>,
}

impl Event<'_, '_> {
    /// Where a problem is: the mapping file, the event type, the target, the field and
    /// the element of an array.
    fn at(&self, target: &str, path: &dyn std::fmt::Display, i: Option<usize>) -> String {
        let row = i
            .map(|i| format!(" (element {})", i + 1))
            .unwrap_or_default();
        format!(
            "{}, event \"{}\", {target}, field \"{path}\"{row}",
            self.em.file, self.em.event_type
        )
    }

    /// Each mapped hub's key (or keys, one per element of its array).
    fn hubs(&self, rows: &mut Rows) -> Result<PerHub<Option<Keys>>, String> {
        let Event {
            m,
            em,
            payload,
            ref origin,
        } = *self;
        let at =
            |target: &str, path: &dyn std::fmt::Display, i: Option<usize>| self.at(target, path, i);
        let mut keys = m.hubs.map(|_| None);
        for (h, paths) in &em.hubs {
            let hub = &m.hubs[*h];
            let target = || format!("hub \"{}\"", hub.name);
            let array = em.hub_array(*h);
            let items = match array {
                Some(a) => payload
                    .elements(a)
                    .map_err(|e| format!("{}: {e}", at(&target(), &paths[0], None)))?,
                None => &[],
            };
            let key_at = |i: usize| -> Result<(Hash, BusinessKey), String> {
                let mut parts = BusinessKey::with_capacity(paths.len());
                for p in paths {
                    let text = key_text(lookup(payload, p, items, i)).ok_or_else(|| {
                        format!(
                            "{}: the business key is missing or empty",
                            at(&target(), p, array.map(|_| i))
                        )
                    })?;
                    if let Some(problem) = key_part_problem(&text) {
                        return Err(format!("{}: {problem}", at(&target(), p, array.map(|_| i))));
                    }
                    parts.push(text);
                }
                let hk = if parts.len() == 1 {
                    hash::hash_key(&parts[0])
                } else {
                    hash::hash_key_multi(parts.iter().map(|p| Some(p.as_str())))
                }
                .map_err(|e| format!("{}: {e}", at(&target(), &paths[0], array.map(|_| i))))?;
                Ok((hk, parts))
            };
            let hub_rows = room(&mut rows.hubs[*h], rows.expected);
            let mut row = |(hk, business_key): (Hash, BusinessKey)| {
                hub_rows.push(HubRow {
                    hk,
                    business_key,
                    origin: origin.clone(),
                });
                (hk, hub_rows.len() - 1)
            };
            keys[*h] = Some(match array {
                None => {
                    let (hk, at) = row(key_at(0)?);
                    Keys::One(hk, at)
                }
                Some(_) => Keys::Each(
                    (0..items.len())
                        .map(|i| key_at(i).map(&mut row))
                        .collect::<Result<_, _>>()?,
                ),
            });
        }
        Ok(keys)
    }

    /// Each mapped link's keys, per row of its scope.
    fn links(
        &self,
        rows: &mut Rows,
        keys: &PerHub<Option<Keys>>,
    ) -> Result<PerLink<Option<Vec<Hash>>>, String> {
        let Event { m, em, payload, .. } = *self;
        let at =
            |target: &str, path: &dyn std::fmt::Display, i: Option<usize>| self.at(target, path, i);
        let mut link_keys = m.links.map(|_| None);
        for (l, dep_paths) in &em.links {
            let link = &m.links[*l];
            let target = || format!("link \"{}\"", link.name);
            let array = em.link_array(m, *l);
            let (n, items) = match array {
                Some(a) => {
                    let items = payload.elements(a).map_err(|e| {
                        format!("{}: {e}", at(&target(), &FieldPath::Top(a.to_vec()), None))
                    })?;
                    (items.len(), items)
                }
                None => (1, &[][..]),
            };
            let mut hks = Vec::with_capacity(n);
            for i in 0..n {
                let row = self.link_row(*l, dep_paths, keys, &rows.hubs, items, array, i)?;
                hks.push(row.hk);
                room(&mut rows.links[*l], rows.expected).push(row);
            }
            link_keys[*l] = Some(hks);
        }
        Ok(link_keys)
    }

    /// Link `l`'s row for element `i` of its scope (`items`, the elements of `array`):
    /// its hubs' keys and its dependent keys, hashed together.
    #[allow(clippy::too_many_arguments)]
    fn link_row(
        &self,
        l: LinkId,
        dep_paths: &[Field],
        keys: &PerHub<Option<Keys>>,
        hub_rows: &PerHub<Vec<HubRow>>,
        items: &[Doc<'_>],
        array: Option<&[String]>,
        i: usize,
    ) -> Result<LinkRow, String> {
        let Event { m, em, payload, .. } = *self;
        let link = &m.links[l];
        let target = || format!("link \"{}\"", link.name);
        // where a link row is, when no single field is to blame
        let link_at = |i: Option<usize>| {
            let row = match (array, i) {
                (Some(a), Some(i)) => format!(", element {} of \"{}\"", i + 1, a.join(".")),
                _ => String::new(),
            };
            format!(
                "{}, event \"{}\", {}{row}",
                em.file,
                em.event_type,
                target()
            )
        };
        let mut joined = hash::Joined::default();
        // every part was checked when read; this can only fail on a bug
        let bug = |e: hash::KeyError| format!("{}: {e}", link_at(array.map(|_| i)));
        let mut hub_hks = Vec::with_capacity(link.hubs.len());
        for &h in &link.hubs {
            let Some(k) = &keys[h] else {
                return Err(format!(
                    "{}: the key of hub \"{}\" is not mapped for this event",
                    link_at(None),
                    m.hubs[h].name
                ));
            };
            let (hk, row) = k.get(if matches!(k, Keys::Each(_)) { i } else { 0 });
            hub_hks.push(*hk);
            for part in &hub_rows[h][row].business_key {
                joined.part(Some(part), true).map_err(bug)?;
            }
        }
        let mut dependent = Vec::with_capacity(dep_paths.len());
        for (p, (col, ty)) in dep_paths.iter().zip(&link.dependent_keys) {
            let where_ = || {
                self.at(
                    &format!("{}, dependent key \"{col}\"", target()),
                    p,
                    array.map(|_| i),
                )
            };
            let v = sourced(p, payload, items, i, *ty)
                .map_err(|e| format!("{}: {e}", where_()))?
                .ok_or_else(|| format!("{}: missing", where_()))?;
            v.with_canonical(|text| match key_part_problem(text) {
                Some(problem) => Err(format!("{}: {problem}", where_())),
                None => joined.part(Some(text), true).map_err(bug),
            })?;
            dependent.push(v);
        }
        if !joined.any() {
            return Err(bug(hash::KeyError::Empty));
        }
        let hk = joined.finish();
        Ok(LinkRow {
            hk,
            hub_keys: hub_hks,
            dependent,
            origin: self.origin.clone(),
        })
    }

    /// The values of `sat`'s columns for element `i` (of `items`, the elements of
    /// `array`), each read from its field (`paths`; `None`: not mapped here).
    fn sat_values(
        &self,
        sat: &crate::mapping::Satellite,
        paths: &[Option<Field>],
        items: &[Doc<'_>],
        array: Option<&[String]>,
        i: usize,
    ) -> Result<Vec<Option<Value>>, String> {
        let mut values = Vec::with_capacity(paths.len());
        for (path, (col, ty)) in paths.iter().zip(&sat.columns) {
            let v = match path {
                None => None,
                Some(p) => sourced(p, self.payload, items, i, *ty).map_err(|e| {
                    let target = format!("satellite \"{}\", column \"{col}\"", sat.name);
                    format!("{}: {e}", self.at(&target, p, array.map(|_| i)))
                })?,
            };
            values.push(v);
        }
        Ok(values)
    }

    /// Elements `first` and `i` of `array` give `sat` the same parent key.
    fn same_key_twice(
        &self,
        sat: &crate::mapping::Satellite,
        array: Option<&[String]>,
        first: usize,
        i: usize,
    ) -> String {
        let key = match sat.parent {
            Parent::Hub(h) => format!("hub \"{}\"", self.m.hubs[h].name),
            Parent::Link(l) => format!("link \"{}\"", self.m.links[l].name),
        };
        format!(
            "{}, event \"{}\", satellite \"{}\": elements {} and {} of \"{}\" have the same {key} key \
             (keys are compared trimmed, upper-cased and as text); \
             an event may state each key once",
            self.em.file,
            self.em.event_type,
            sat.name,
            first + 1,
            i + 1,
            array.map(|a| a.join(".")).unwrap_or_default(),
        )
    }

    /// Each mapped satellite's rows, one per parent key.
    fn satellites(
        &self,
        rows: &mut Rows,
        keys: &PerHub<Option<Keys>>,
        link_keys: &PerLink<Option<Vec<Hash>>>,
    ) -> Result<(), String> {
        let Event {
            m,
            em,
            payload,
            ref origin,
        } = *self;
        for (s, paths) in &em.satellites {
            let sat = &m.satellites[*s];
            let parents = parent_keys(sat.parent, keys, link_keys);
            let array = paths
                .iter()
                .flatten()
                .find_map(Field::array)
                .or(match sat.parent {
                    Parent::Hub(h) => em.hub_array(h),
                    Parent::Link(l) => em.link_array(m, l),
                });
            let items = match array {
                Some(a) => payload.elements(a).map_err(|e| {
                    format!(
                        "{}: {e}",
                        self.at(
                            &format!("satellite \"{}\"", sat.name),
                            &FieldPath::Top(a.to_vec()),
                            None
                        )
                    )
                })?,
                None => &[],
            };
            let n = if array.is_some() { items.len() } else { 1 };
            // which element first gave each parent key: an event states a key once
            let mut first_at: KeyMap<usize> = KeyMap::default();
            for i in 0..n {
                let parent = match parents.len() {
                    1 => parents[0],
                    _ => match parents.get(i) {
                        Some(p) => *p,
                        None => continue,
                    },
                };
                let values = self.sat_values(sat, paths, items, array, i)?;
                if values.iter().any(Option::is_some) {
                    if n > 1
                        && let Some(first) = first_at.insert(parent, i)
                    {
                        return Err(self.same_key_twice(sat, array, first, i));
                    }
                    let hashdiff = values
                        .iter()
                        .all(Option::is_some)
                        .then(|| super::satellite::hashdiff(&values));
                    room(&mut rows.satellites[*s], rows.expected).push(SatRow {
                        parent,
                        hashdiff,
                        values,
                        origin: origin.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn c360() -> Mappings {
        let files = [(
            "c360.toml".to_string(),
            include_str!("../../examples/c360/mappings/c360.toml").to_string(),
        )];
        Mappings::compose(&files).expect("c360 composes")
    }

    fn origin() -> Arc<Origin> {
        Arc::new(Origin {
            xid: 1,
            seq: 1,
            load_dts: Utc::now(),
            applied_dts: Utc::now(),
            source: Arc::from("c360"),
        })
    }

    fn column<'a>(m: &Mappings, rows: &'a Rows, sat: &str, col: &str) -> &'a Option<Value> {
        let s = m.satellite_id(sat).expect("satellite");
        let c = m.satellites[s]
            .columns
            .iter()
            .position(|(c, _)| c == col)
            .expect("column");
        &rows.satellites[s][0].values[c]
    }

    #[test]
    fn constants_value_maps_and_defaults_shape_the_rows() {
        let m = c360();
        let em = &m.events["c360_transaction"];
        let text = r#"{"transaction_id":"TXN1","customer_id":"C1","order_date":"2026-01-02 10:00:00",
            "product_id":"P1","quantity":"2","unit_price":"9.99","total_amount":"19.98",
            "payment_method":"Cash","order_status":"Shipped"}"#;
        let doc = Doc::parse(text).expect("json");
        let mut rows = Rows::new(&m);
        extract(&m, em, &doc, origin(), &mut rows).expect("extracts");
        let line = m.link_id("link_order_product").expect("link");
        assert_eq!(
            rows.links[line][0].dependent,
            [Value::Text("1".into())],
            "line_no is the constant"
        );
        assert_eq!(
            column(&m, &rows, "sat_order_status", "status"),
            &Some(Value::Text("shipped".into()))
        );
        assert_eq!(
            column(&m, &rows, "sat_order_details", "channel"),
            &Some(Value::Text("store".into())),
            "the default fills the missing field"
        );
        assert_eq!(
            column(&m, &rows, "sat_order_line", "discount"),
            &Some(Value::Numeric(rust_decimal::Decimal::new(0, 2)))
        );

        let lost = text.replace("Shipped", "Lost");
        let doc = Doc::parse(&lost).expect("json");
        let before = rows.len();
        let e = extract(&m, em, &doc, origin(), &mut rows).expect_err("unmapped value");
        assert!(
            e.contains("satellite \"sat_order_status\", column \"status\", field \"order_status\": value \"Lost\" is not in the value map"),
            "{e}"
        );
        assert_eq!(rows.len(), before, "nothing of the event is kept");
    }
}
