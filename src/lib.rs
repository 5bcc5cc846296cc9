//! dvault: an event-sourced Data Vault 2.0 warehouse on PostgreSQL.
//!
//! Data flows one way: files and API calls append to the event log
//! ([`events`]), the loader projects the log into hubs, links and satellites, and
//! SQL views turn the vault into a Customer 360.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod events;
pub mod generate;
pub mod hash;
pub mod human;
pub mod load;
pub mod logging;
pub mod mapping;
pub mod ops;
pub mod process_metrics;
pub mod status;
pub mod stream;
