//! Operations: what the command line, the daemon, `dvault status` and the API share
//! about running the warehouse. The run history (`ops.load_runs`: [`runs`]), the
//! quality gate ([`quality`]), what a run analyzes ([`analyze`]), a load's progress
//! on a terminal ([`progress`]), what every run does from its row's start to the
//! unlock ([`run`]), a run started by hand from lock to unlock ([`manual`]) and the
//! process's stop signals ([`shutdown`]). The daemon (`crate::daemon`) keeps
//! what only a service does: the schedule, following the log, retries and its
//! metrics.

pub mod analyze;
pub mod manual;
pub mod progress;
pub mod quality;
pub mod run;
pub mod runs;
pub mod shutdown;
