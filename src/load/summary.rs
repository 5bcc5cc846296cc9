//! What a load did ([`LoadSummary`], printed by `dvault load`) and what a load that
//! ended early had committed ([`Partial`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::LoadError;
use crate::human::thousands;

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub batches: u64,
    pub events: u64,
    pub rejected: u64,
    /// Events of a type no mapping knows, held back (`ops.held_events`), not quarantined.
    pub held: u64,
    /// rows inserted per vault table
    pub rows: BTreeMap<String, u64>,
    /// The tables written on the bulk path (indexes built after): see `load::bulk`.
    pub bulk: Vec<String>,
    /// Bulk-path tables whose keys the run stopped remembering (none ever repeated):
    /// their unique indexes checked them at the end (`load::known`).
    pub forgotten: Vec<String>,
    /// The bulk run started over, remembering every table, after a forgotten table's
    /// key came twice.
    pub started_over: bool,
    pub elapsed: Duration,
}

impl LoadSummary {
    pub fn rows_total(&self) -> u64 {
        self.rows.values().sum()
    }

    pub(super) fn add(&mut self, other: &LoadSummary) {
        self.batches += other.batches;
        self.events += other.events;
        self.rejected += other.rejected;
        self.held += other.held;
        for (t, n) in &other.rows {
            *self.rows.entry(t.clone()).or_default() += n;
        }
    }
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events == 0 {
            return writeln!(
                f,
                "nothing new to load ({:.3} s)",
                self.elapsed.as_secs_f64()
            );
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "loaded {} events in {:.2} s ({} events/s, {} vault rows/s), {} batch(es)",
            thousands(self.events),
            secs,
            thousands((self.events as f64 / secs) as u64),
            thousands((self.rows_total() as f64 / secs) as u64),
            self.batches
        )?;
        for (table, n) in &self.rows {
            writeln!(f, "  {table:<28} {:>12}", thousands(*n))?;
        }
        if !self.bulk.is_empty() {
            writeln!(
                f,
                "  bulk path (indexes built after the load): {}",
                self.bulk.join(", ")
            )?;
        }
        if self.started_over {
            writeln!(
                f,
                "  the bulk run started over: a table whose keys it had stopped remembering held a key twice"
            )?;
        }
        if !self.forgotten.is_empty() {
            writeln!(
                f,
                "  keys not remembered (no key repeated; checked by the unique index): {}",
                self.forgotten.join(", ")
            )?;
        }
        if self.rejected > 0 {
            writeln!(
                f,
                "  {} events rejected: see dvault rejected",
                thousands(self.rejected)
            )?;
        }
        if self.held > 0 {
            writeln!(
                f,
                "  {} events held back: no mapping for their type yet (see dvault status)",
                thousands(self.held)
            )?;
        }
        Ok(())
    }
}

/// Asked before each batch of `Loader::run_until`: `true` stops the load.
pub type Stop<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// A load that ended before the log was read to the end: what its committed
/// batches did (counted exactly: a batch counts once its commit returned), and the
/// error that ended it, `None` when it was asked to stop.
#[derive(Debug)]
pub struct Partial {
    pub committed: LoadSummary,
    pub error: Option<LoadError>,
}

impl Partial {
    pub(super) fn nothing(error: impl Into<LoadError>) -> Partial {
        Partial {
            committed: LoadSummary::default(),
            error: Some(error.into()),
        }
    }
}

impl LoadSummary {
    pub(super) fn ended(mut self, started: Instant, error: Option<LoadError>) -> Partial {
        self.elapsed = started.elapsed();
        Partial {
            committed: self,
            error,
        }
    }
}
