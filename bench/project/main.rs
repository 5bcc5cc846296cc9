//! The loader's CPU per event, without a database: read events dumped from a log and
//! project them (JSON → keys, hashes, typed values, hashdiffs) and plan their
//! satellite versions, as `dvault load` does for a first load. Repeatable under
//! `valgrind --tool=callgrind` (instruction counts), see bench/README.md.
//!
//! ```sh
//! psql "$DATABASE_URL" -c "\copy (SELECT event_type, payload FROM event_log.events ORDER BY seq LIMIT 100000) TO 'events.csv' (FORMAT csv)"
//! cargo run --release --example project -- events.csv examples/tpch/mappings
//! cargo run --release --example project -- events.csv examples/tpch/mappings --fields
//! ```
//!
//! With `--fields` each flat payload is read as a bundle's fields line instead
//! (`dvault ingest --bundle`'s format: docs/events.md), the same events either way.

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;

use std::collections::HashMap;
use std::sync::Arc;

use dvault::events::bundle::push_fields;
use dvault::events::{Payload, StoredEvent, Xid8};
use dvault::load::{project, satellite};
use dvault::mapping::Mappings;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(mappings)) = (args.next(), args.next()) else {
        anyhow::bail!(
            "usage: project EVENTS.csv MAPPINGS_DIR [--fields] (EVENTS.csv: event_type,payload)"
        );
    };
    let as_fields = args.next().as_deref() == Some("--fields");
    let mut headers: HashMap<Vec<String>, Arc<[String]>> = HashMap::new();
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
            payload: match as_fields {
                false => Payload::Json(record[1].to_string()),
                true => fields(&record[1], &mut headers)?,
            },
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

/// A flat JSON object of strings and nulls (as `dvault ingest` makes of a CSV row) as
/// a bundle's fields line, its names shared by every payload with the same keys.
fn fields(
    json: &str,
    headers: &mut HashMap<Vec<String>, Arc<[String]>>,
) -> anyhow::Result<Payload> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
    let keys: Vec<String> = object.keys().cloned().collect();
    let names = headers
        .entry(keys.clone())
        .or_insert_with(|| keys.into())
        .clone();
    let values = (object.values())
        .map(|value| match value {
            serde_json::Value::Null => Ok(""),
            serde_json::Value::String(s) => Ok(s.as_str()),
            other => Err(anyhow::anyhow!("not a CSV row's payload: {other}")),
        })
        .collect::<anyhow::Result<Vec<&str>>>()?;
    let mut line = String::new();
    push_fields(&mut line, values);
    Ok(Payload::Fields { names, line })
}
