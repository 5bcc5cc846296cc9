//! SCD2 for insert-only satellites: which staged rows become new versions.
//!
//! Each staged row is placed, in log order, into its parent's timeline (existing
//! versions plus the ones this batch already accepted), ordered by business time
//! (`applied_dts`, then `event_seq`). It takes the values it does not state from
//! the version before it (carry forward) and is written only when its hashdiff
//! differs from that version's. So several changes to one key in one batch all land
//! in order, a late event lands in its place in the timeline, and a repeat of the
//! version before it is not written.
//!
//! Because rows are decided in log order, each decision depends only on the events
//! before it in the log: how the log is split into batches cannot change the
//! result, and an incremental load equals a rebuild. Versions already written are
//! never changed (insert-only): a late event does not rewrite the values that later
//! versions carried forward before it arrived.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::rows::{Origin, SatRow};
use crate::hash::{self, Hash, KeyMap};
use crate::mapping::Value;

/// A version already in the satellite.
#[derive(Debug, Clone)]
pub struct Existing {
    pub parent: Hash,
    pub applied_dts: DateTime<Utc>,
    pub seq: i64,
    pub hashdiff: Hash,
    pub values: Vec<Option<Value>>,
}

/// A version to insert, borrowing from the staged row it comes from: its values
/// are that row's unless some were carried forward from the version before. (A
/// copy of every satellite row's values was 3% of the writer's time at TPC-H SF1.)
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// The staged row it comes from (its index in the batch's rows).
    pub row: usize,
    pub parent: Hash,
    pub hashdiff: Hash,
    pub values: Cow<'a, [Option<Value>]>,
    pub origin: &'a Origin,
}

/// Hashdiff of a full row (values in the satellite's alphabetical column order).
///
/// Equal to [`hash::hashdiff`] over the values' canonical texts, fed to the digest
/// without building them: this runs for every satellite row of a load.
pub fn hashdiff(values: &[Option<Value>]) -> Hash {
    let mut joined = hash::Joined::default();
    for v in values {
        // without the key check nothing is refused
        let _ = match v {
            Some(v) => v.with_canonical(|text| joined.part(Some(text), false)),
            None => joined.part(None, false),
        };
    }
    joined.finish()
}

/// The earliest business time staged per parent: where to look for predecessors.
pub fn earliest_per_parent(staged: &[SatRow]) -> Vec<(Hash, DateTime<Utc>)> {
    let mut first: KeyMap<DateTime<Utc>> = KeyMap::default();
    for r in staged {
        first
            .entry(r.parent)
            .and_modify(|t| *t = (*t).min(r.origin.applied_dts))
            .or_insert(r.origin.applied_dts);
    }
    let mut v: Vec<_> = first.into_iter().collect();
    v.sort();
    v
}

/// Where a version's full values live while a batch is planned.
#[derive(Clone, Copy)]
enum Source {
    /// `existing[i]`
    Existing(usize),
    /// the `i`th new version of the plan
    New(usize),
}

/// One version in a parent's timeline while a batch is planned.
struct Version {
    at: (DateTime<Utc>, i64),
    hashdiff: Hash,
    values: Source,
}

/// Decide the new versions. `existing` holds, per staged parent, the version in
/// force at its earliest staged time and every version after it.
///
/// Parents are independent of each other, so rows are taken parent by parent (in
/// hash key order, which is also the order that suits the satellite's index best),
/// and within a parent in log order. A row's hashdiff is the one precomputed when it
/// states every column (nothing to carry forward), else computed here.
pub fn plan<'a>(staged: &'a [SatRow], existing: &[Existing]) -> Vec<NewVersion<'a>> {
    let mut order: Vec<(usize, &'a SatRow)> = staged.iter().enumerate().collect();
    // the origins (another allocation each) are read only for rows of one parent
    order.sort_unstable_by(|(_, a), (_, b)| {
        a.parent
            .cmp(&b.parent)
            .then_with(|| (a.origin.xid, a.origin.seq).cmp(&(b.origin.xid, b.origin.seq)))
    });
    let mut old: Vec<usize> = (0..existing.len()).collect();
    old.sort_unstable_by_key(|&i| (existing[i].parent, existing[i].applied_dts, existing[i].seq));
    let mut old = old.into_iter().peekable();
    let mut out: Vec<NewVersion> = Vec::with_capacity(staged.len());
    let mut timeline: Vec<Version> = Vec::new();
    for group in order.chunk_by(|(_, a), (_, b)| a.parent == b.parent) {
        let parent = group[0].1.parent;
        timeline.clear();
        while let Some(&i) = old.peek() {
            let e = &existing[i];
            if e.parent > parent {
                break;
            }
            old.next();
            if e.parent == parent {
                timeline.push(Version {
                    at: (e.applied_dts, e.seq),
                    hashdiff: e.hashdiff,
                    values: Source::Existing(i),
                });
            }
        }
        for &(row, r) in group {
            let at = (r.origin.applied_dts, r.origin.seq);
            let pos = timeline.partition_point(|v| v.at < at);
            let before = pos.checked_sub(1).map(|i| &timeline[i]);
            let (values, hd) = match (before, r.hashdiff) {
                (_, Some(_)) | (None, None) => {
                    let hd = r.hashdiff.unwrap_or_else(|| hashdiff(&r.values));
                    (None, hd)
                }
                (Some(prev), None) => {
                    let prev = match prev.values {
                        Source::Existing(i) => &existing[i].values[..],
                        Source::New(i) => &out[i].values[..],
                    };
                    let values: Vec<Option<Value>> = r
                        .values
                        .iter()
                        .zip(prev)
                        .map(|(new, old)| new.as_ref().or(old.as_ref()).cloned())
                        .collect();
                    let hd = hashdiff(&values);
                    (Some(values), hd)
                }
            };
            if before.is_some_and(|prev| prev.hashdiff == hd) {
                continue;
            }
            out.push(NewVersion {
                row,
                parent,
                hashdiff: hd,
                values: values.map_or(Cow::Borrowed(&r.values[..]), Cow::Owned),
                origin: &r.origin,
            });
            timeline.insert(
                pos,
                Version {
                    at,
                    hashdiff: hd,
                    values: Source::New(out.len() - 1),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::Arc;

    #[test]
    fn the_one_buffer_hashdiff_equals_the_standard_one() {
        let micro = Utc
            .with_ymd_and_hms(2024, 2, 29, 23, 59, 58)
            .single()
            .expect("time")
            + chrono::Duration::microseconds(120);
        let rows: Vec<Vec<Option<Value>>> = vec![
            vec![
                Some(Value::Text("  Oslo ".into())),
                None,
                Some(Value::Int(-7)),
            ],
            vec![
                Some(Value::Text("   ".into())),
                Some(Value::Text("straße é".into())),
            ],
            vec![
                Some(Value::Numeric("12.50".parse().expect("decimal"))),
                Some(Value::Date(
                    chrono::NaiveDate::from_ymd_opt(33, 1, 9).expect("date"),
                )),
                Some(Value::Date(
                    chrono::NaiveDate::from_ymd_opt(12345, 1, 9).expect("date"),
                )),
                Some(Value::Timestamptz(micro)),
                Some(Value::Timestamptz(t(3))),
                Some(Value::Bool(false)),
            ],
            vec![None, None],
        ];
        for values in rows {
            let texts: Vec<Option<String>> = values
                .iter()
                .map(|v| v.as_ref().map(Value::canonical))
                .collect();
            assert_eq!(
                hashdiff(&values),
                hash::hashdiff(texts.iter().map(Option::as_deref)),
                "{values:?}"
            );
        }
    }

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    fn row(parent: u8, day: u32, seq: i64, city: Option<&str>, name: Option<&str>) -> SatRow {
        SatRow {
            parent: [parent; 32],
            hashdiff: None,
            values: vec![
                city.map(|c| Value::Text(c.into())),
                name.map(|n| Value::Text(n.into())),
            ],
            origin: Arc::new(Origin {
                xid: 1,
                seq,
                load_dts: t(28),
                applied_dts: t(day),
                source: "test".into(),
            }),
        }
    }

    fn cities(v: &[NewVersion]) -> Vec<(u32, String)> {
        use chrono::Datelike;
        v.iter()
            .map(|n| {
                let city = match &n.values[0] {
                    Some(Value::Text(c)) => c.to_string(),
                    _ => "-".into(),
                };
                (n.origin.applied_dts.day(), city)
            })
            .collect()
    }

    #[test]
    fn changes_in_one_batch_all_land_in_order_and_repeats_do_not() {
        let staged = [
            row(1, 3, 3, Some("Oslo"), Some("Ann")),
            row(1, 1, 1, Some("Rome"), Some("Ann")),
            row(1, 2, 2, Some("Rome"), Some("Ann")), // repeat of day 1
            row(1, 4, 4, Some("Rome"), Some("Ann")), // A -> B -> A: kept
        ];
        let plan = plan(&staged, &[]);
        assert_eq!(
            cities(&plan),
            [(1, "Rome".into()), (3, "Oslo".into()), (4, "Rome".into())]
        );
    }

    #[test]
    fn partial_rows_carry_the_other_fields_forward() {
        let staged = [
            row(1, 1, 1, Some("Rome"), Some("Ann")),
            row(1, 2, 2, Some("Oslo"), None),
        ];
        let plan = plan(&staged, &[]);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].values[1], Some(Value::Text("Ann".into())));
    }

    #[test]
    fn a_late_row_lands_between_existing_versions() {
        let old = |day, seq, city: &str| {
            let values = vec![
                Some(Value::Text(city.into())),
                Some(Value::Text("Ann".into())),
            ];
            Existing {
                parent: [1; 32],
                applied_dts: t(day),
                seq,
                hashdiff: hashdiff(&values),
                values,
            }
        };
        let existing = [old(1, 1, "Rome"), old(5, 2, "Oslo")];
        // late: day 3 says Paris (lands), day 4 repeats day 1's predecessor? no: repeats Paris
        let staged = [
            row(1, 3, 10, Some("Paris"), None),
            row(1, 4, 11, Some("Paris"), None),
            row(1, 6, 12, Some("Oslo"), None),
        ];
        let plan = plan(&staged, &existing);
        assert_eq!(
            cities(&plan),
            [(3, "Paris".into())],
            "day 4 and day 6 repeat their predecessor"
        );
        assert_eq!(
            plan[0].values[1],
            Some(Value::Text("Ann".into())),
            "name carried from day 1"
        );
    }
}
