//! What projecting a batch produces: per hub, link and satellite of the model, the
//! rows its events state ([`Rows`]), each with the [`Origin`] of its event. The
//! writer (`load::apply`) decides which of them are new.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use smallvec::SmallVec;

use crate::hash::Hash;
use crate::mapping::{Mappings, PerHub, PerLink, PerSat, Value};

/// A business key's parts, trimmed.
pub type BusinessKey = SmallVec<[CompactString; 1]>;

/// What every row of one event shares.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The event's position in the log, `(xid, seq)`: the order events are decided in.
    pub xid: u64,
    pub seq: i64,
    pub load_dts: DateTime<Utc>,
    pub applied_dts: DateTime<Utc>,
    pub source: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct HubRow {
    pub hk: Hash,
    /// One part inline, of up to 24 bytes (most business keys): no allocation.
    pub business_key: BusinessKey,
    pub origin: Arc<Origin>,
}

#[derive(Debug, Clone)]
pub struct LinkRow {
    pub hk: Hash,
    pub hub_keys: Vec<Hash>,
    pub dependent: Vec<Value>,
    pub origin: Arc<Origin>,
}

/// A satellite row as the event states it: `None` columns were not given and carry
/// forward from the version before it.
#[derive(Debug, Clone)]
pub struct SatRow {
    pub parent: Hash,
    /// The hashdiff of `values` when they state every column (computed while the
    /// batch is projected, off the writer's path); `None` when some carry forward.
    pub hashdiff: Option<Hash>,
    pub values: Vec<Option<Value>>,
    pub origin: Arc<Origin>,
}

/// Rows of a batch, per target (indexed like [`Mappings`]' hubs, links, satellites).
#[derive(Debug, Default)]
pub struct Rows {
    pub hubs: PerHub<Vec<HubRow>>,
    pub links: PerLink<Vec<LinkRow>>,
    pub satellites: PerSat<Vec<SatRow>>,
    /// Rows a target gets room for at its first ([`room`]): the events projected,
    /// most of which state one row for each target their type maps to.
    pub(super) expected: usize,
}

/// Where the lengths of every target were ([`Rows::mark`]): no allocation per event
/// for models of up to 32 targets.
pub(super) type Mark = SmallVec<[usize; 32]>;

/// `rows`, with room for `expected` rows if it has none yet: growing by doubling
/// copied a batch's rows about once more (1% of the loader's instructions at TPC-H
/// scale, callgrind), and a target no event of the batch maps to stays unallocated.
pub(super) fn room<T>(rows: &mut Vec<T>, expected: usize) -> &mut Vec<T> {
    if rows.capacity() == 0 {
        rows.reserve(expected);
    }
    rows
}

impl Rows {
    pub fn new(m: &Mappings) -> Rows {
        Rows {
            hubs: m.hubs.map(|_| Vec::new()),
            links: m.links.map(|_| Vec::new()),
            satellites: m.satellites.map(|_| Vec::new()),
            expected: 0,
        }
    }

    /// Rows for a batch of `events` events.
    pub fn for_events(m: &Mappings, events: usize) -> Rows {
        Rows {
            expected: events,
            ..Rows::new(m)
        }
    }

    pub(super) fn mark(&self) -> Mark {
        self.hubs
            .iter()
            .map(Vec::len)
            .chain(self.links.iter().map(Vec::len))
            .chain(self.satellites.iter().map(Vec::len))
            .collect()
    }

    pub(super) fn truncate(&mut self, mark: &[usize]) {
        let mut lens = mark.iter();
        for v in &mut self.hubs {
            v.truncate(*lens.next().unwrap_or(&0));
        }
        for v in &mut self.links {
            v.truncate(*lens.next().unwrap_or(&0));
        }
        for v in &mut self.satellites {
            v.truncate(*lens.next().unwrap_or(&0));
        }
    }

    /// Rows in all targets.
    pub fn len(&self) -> usize {
        self.mark().iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
