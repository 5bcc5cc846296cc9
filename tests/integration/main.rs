//! Integration tests against a real PostgreSQL; one fresh database per test.

mod harness;

mod cli;
mod event_log;
mod generated;
mod ingest;
mod loader;
mod loader_robustness;
