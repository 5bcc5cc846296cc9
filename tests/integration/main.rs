//! Integration tests against a real PostgreSQL; one fresh database per test.

mod broker;
mod harness;

mod api;
mod api_hostile;
mod bulk_ingest;
mod bulk_load;
mod byod;
mod cli;
mod cloudevents_binary;
mod crash;
mod daemon;
mod dashboard;
mod demo;
mod doc_commands;
mod event_log;
mod generated;
mod hardening;
mod horizon;
mod hostile_input;
mod ingest;
mod loader;
mod loader_robustness;
mod logs;
mod metrics;
mod oracle;
mod poison_ingest;
mod poison_load;
mod poison_salted;
mod replica;
mod scaling;
mod security;
mod stream;
mod stream_resilience;
mod tpch;
mod views;
