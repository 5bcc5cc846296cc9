//! The loader's CPU per event, without a database: read events dumped from a log and
//! project them (JSON → keys, hashes, typed values, hashdiffs) and plan their
//! satellite versions, as `dvault load` does for a first load. Repeatable under
//! `valgrind --tool=callgrind` (instruction counts), see bench/README.md.
//!
//! ```sh
//! psql "$DATABASE_URL" -c "\copy (SELECT event_type, payload FROM event_log.events ORDER BY seq LIMIT 100000) TO 'events.csv' (FORMAT csv)"
//! cargo run --release --example project -- events.csv examples/tpch/mappings
//! ```

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;

use dvault::events::{StoredEvent, Xid8};
use dvault::load::{project, satellite};
use dvault::mapping::Mappings;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(mappings)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: project EVENTS.csv MAPPINGS_DIR (EVENTS.csv: event_type,payload)");
    };
    let m = Mappings::from_dir(std::path::Path::new(&mappings))?;
    let now = Utc::now();
    let mut events = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(&file)
        .with_context(|| format!("reading {file}"))?;
    for (i, record) in reader.records().enumerate() {
        let record = record?;
        let seq = i as i64 + 1;
        events.push(StoredEvent {
            seq,
            xid: Xid8(1000),
            event_id: seq.to_string(),
            event_type: record[0].to_string(),
            source: "bench".into(),
            occurred_at: now,
            recorded_at: now,
            payload: record[1].to_string(),
            damaged: None,
        });
    }
    let started = Instant::now();
    let (mut rows, mut rejected, mut versions) = (0, 0, 0);
    for batch in events.chunks(50_000) {
        let (projected, rejects) = project(&m, batch);
        rows += projected.len();
        rejected += rejects.len();
        for staged in &projected.satellites {
            versions += satellite::plan(staged, &[]).len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} events, {rows} rows, {versions} satellite versions, {rejected} rejected: {:.3} s, {:.2} µs/event",
        events.len(),
        secs,
        secs * 1e6 / events.len().max(1) as f64
    );
    Ok(())
}
