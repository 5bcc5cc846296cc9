//! Integration tests against a real PostgreSQL; one fresh database per test.

mod harness;

mod api;
mod api_hostile;
mod bulk_load;
mod byod;
mod cli;
mod crash;
mod daemon;
mod event_log;
mod generated;
mod hardening;
mod horizon;
mod hostile_input;
mod ingest;
mod loader;
mod loader_robustness;
mod oracle;
mod poison_ingest;
mod poison_load;
mod poison_salted;
mod security;
mod tpch;
mod views;
