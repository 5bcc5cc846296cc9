//! Projecting events into vault rows (pure CPU work, on blocking threads): each
//! event's mapping extracts its business keys and columns, hashed in Rust; what
//! cannot be projected becomes a [`Reject`]. A [`Prepared`] batch waits to be
//! written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::LoadSummary;
use super::extract;
use super::payload;
use super::rows::{Origin, Rows};
use crate::events::{Checkpoint, StoredEvent};
use crate::mapping::Mappings;

/// A batch read and projected, waiting to be written.
pub(super) struct Prepared {
    /// The checkpoint it starts after, and its last event.
    pub(super) after: Checkpoint,
    pub(super) last: Checkpoint,
    pub(super) events: u64,
    pub(super) rows: Projected,
    pub(super) rejects: Vec<Reject>,
    /// The events themselves, for when the database refuses the batch.
    pub(super) log: Arc<Vec<StoredEvent>>,
    pub(super) started: Instant,
}

impl Prepared {
    /// What writing this batch did, once written (`started`: when its write began).
    pub(super) fn written(
        self,
        mut summary: LoadSummary,
        started: Instant,
        what: &str,
    ) -> LoadSummary {
        summary.events = self.events;
        summary.batches = 1;
        summary.elapsed = self.started.elapsed();
        // the batch's span (`write_batch`, `write_bulk_batch`) gets its outcome
        tracing::Span::current()
            .record("rows", summary.rows_total())
            .record("rejected", summary.rejected)
            .record("ms", summary.elapsed.as_millis() as u64);
        tracing::info!(
            events = summary.events,
            rows = summary.rows_total(),
            rejected = summary.rejected,
            write_ms = started.elapsed().as_millis() as u64,
            "{what}"
        );
        // Freeing a batch's millions of small allocations took 7% of the writer's
        // time at TPC-H SF1 (`perf`): a blocking thread does it, off the writer's path.
        tokio::task::spawn_blocking(move || drop(self));
        summary
    }
}

/// Rows of a batch plus how many events it had.
pub struct Projected {
    pub rows: Rows,
    pub events: u64,
}

/// Blocking threads a batch is projected on (the writer and PostgreSQL use the rest).
pub(super) const PROJECT_THREADS: usize = 2;

impl Projected {
    /// Add the rows of the events that follow this one's in the log.
    pub(super) fn append(&mut self, next: Projected) {
        for (to, from) in self.rows.hubs.iter_mut().zip(next.rows.hubs) {
            to.extend(from);
        }
        for (to, from) in self.rows.links.iter_mut().zip(next.rows.links) {
            to.extend(from);
        }
        for (to, from) in self.rows.satellites.iter_mut().zip(next.rows.satellites) {
            to.extend(from);
        }
        self.events += next.events;
    }
}

impl std::ops::Deref for Projected {
    type Target = Rows;
    fn deref(&self) -> &Rows {
        &self.rows
    }
}

/// An event the loader could not project.
#[derive(Debug, Clone)]
pub struct Reject {
    /// Held back (no mapping for its type yet), not quarantined.
    pub held: bool,
    pub seq: i64,
    pub event_type: String,
    pub reason: String,
    pub payload: String,
}

/// Extract every event of a batch (pure CPU work).
pub fn project(m: &Mappings, batch: &[StoredEvent]) -> (Projected, Vec<Reject>) {
    let mut rows = Rows::for_events(m, batch.len());
    let mut rejects = Vec::new();
    let mut sources: HashMap<&str, Arc<str>> = HashMap::new();
    // events come in runs of one source: the last one is asked first
    let mut last_source: Option<Arc<str>> = None;
    for e in batch {
        let reject = |reason: String| Reject {
            held: false,
            seq: e.seq,
            event_type: e.event_type.clone(),
            reason,
            payload: e.payload.json().into_owned(),
        };
        if let Some(d) = &e.damaged {
            rejects.push(reject(format!(
                "a bundle that cannot be read as its events: {}; it stays in the log at seq {}, none of its {} events is loaded",
                d.why, e.seq, d.events
            )));
            continue;
        }
        let Some(em) = m.events.get(&e.event_type) else {
            if !m.skipped.contains(&e.event_type) {
                rejects.push(Reject {
                    held: true,
                    seq: e.seq,
                    event_type: e.event_type.clone(),
                    reason: String::new(),
                    payload: String::new(),
                });
            }
            continue;
        };
        let payload = match payload::Doc::read(e.payload.as_ref()) {
            Ok(p) => p,
            Err(err) => {
                rejects.push(reject(format!("the payload cannot be read: {err}")));
                continue;
            }
        };
        let source = match &last_source {
            Some(s) if **s == *e.source => s.clone(),
            _ => {
                let s = sources
                    .entry(e.source.as_str())
                    .or_insert_with(|| Arc::from(e.source.as_str()))
                    .clone();
                last_source = Some(s.clone());
                s
            }
        };
        let origin = Arc::new(Origin {
            xid: e.xid.0,
            seq: e.seq,
            load_dts: e.recorded_at,
            applied_dts: e.occurred_at,
            source,
        });
        if let Err(reason) = extract::extract(m, em, &payload, origin, &mut rows) {
            rejects.push(reject(reason));
        }
    }
    (
        Projected {
            rows,
            // a damaged bundle counts as the events it says it holds, as the read did
            events: batch.iter().map(StoredEvent::covers).sum(),
        },
        rejects,
    )
}
